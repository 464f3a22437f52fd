//! How the binaries report beyond their text log lines: Prometheus metrics on `METRICS_ADDR`
//! (metrics-exporter-prometheus, which serves `/metrics` from a thread of its own running a small
//! tokio runtime), and `LOG_FORMAT=json` (one JSON object per line, for Filebeat and ELK).

use std::net::SocketAddr;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

static JSON_LOGS: OnceLock<bool> = OnceLock::new();

/// Whether log lines are JSON objects (`LOG_FORMAT=json`), as set up by [`crate::settings::startup`].
pub fn json_logs() -> bool {
    JSON_LOGS.get().copied().unwrap_or(false)
}

/// Reads `LOG_FORMAT`: `text` (default) or `json`.
pub(crate) fn log_format_from_env() -> Result<bool, String> {
    let json = match std::env::var("LOG_FORMAT") {
        Err(_) => false,
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "text" => false,
            "json" => true,
            other => return Err(format!("LOG_FORMAT={other:?}: use text or json")),
        },
    };
    let _ = JSON_LOGS.set(json);
    Ok(json)
}

/// Histogram buckets of every `_seconds` histogram: from a millisecond to two minutes.
const SECONDS_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0,
];

/// `METRICS_ADDR` as a socket: `host:port`, or a bare port (`9464`, `:9464`) on loopback only,
/// so that the endpoint is exposed beyond this machine only when an address says so.
pub fn metrics_socket(addr: &str) -> Result<SocketAddr, String> {
    let text = addr.trim();
    let port = text.strip_prefix(':').unwrap_or(text);
    if let Ok(port) = port.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|e| {
        format!(
            "METRICS_ADDR={addr:?}: not a port or host:port address such as 127.0.0.1:9464 ({e})"
        )
    })
}

/// What kind of series a metric is (its `# TYPE` line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric a binary exports: its name, kind and description (its `# HELP` line).
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

impl Metric {
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Metric {
            name,
            kind: Kind::Counter,
            help,
        }
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        Metric {
            name,
            kind: Kind::Gauge,
            help,
        }
    }

    pub const fn histogram(name: &'static str, help: &'static str) -> Self {
        Metric {
            name,
            kind: Kind::Histogram,
            help,
        }
    }
}

/// The metrics every binary exports beside its own: which build it is, and the process's
/// resources under Prometheus's usual `process_*` names, read from `/proc` every 5 seconds.
pub const COMMON: [Metric; 8] = [
    Metric::gauge(
        "pipeline_build_info",
        "Always 1; its labels name the binary and its version.",
    ),
    Metric::counter(
        "process_cpu_seconds_total",
        "User and system CPU time of the process, in whole seconds.",
    ),
    Metric::gauge(
        "process_resident_memory_bytes",
        "Resident memory of the process.",
    ),
    Metric::gauge(
        "process_virtual_memory_bytes",
        "Virtual memory of the process.",
    ),
    Metric::gauge("process_open_fds", "Open file descriptors of the process."),
    Metric::gauge(
        "process_max_fds",
        "The process's limit of open file descriptors.",
    ),
    Metric::gauge("process_threads", "Threads of the process."),
    Metric::gauge(
        "process_start_time_seconds",
        "When the process started, Unix time in seconds.",
    ),
];

/// Serves the metrics recorded by this process on `addr` (`host:port`) at `/metrics`, every
/// series labelled with `dataset` and `topic`: `own` (the binary's, described by their `# HELP`
/// lines) and [`COMMON`]. Returns the address served, or a one-line error.
pub fn serve_metrics(
    addr: &str,
    binary: &'static str,
    own: &[Metric],
    dataset: &str,
    topic: &str,
) -> Result<SocketAddr, String> {
    let socket = metrics_socket(addr)?;
    PrometheusBuilder::new()
        .with_http_listener(socket)
        .add_global_label("dataset", dataset)
        .add_global_label("topic", topic)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
        .and_then(|b| b.install())
        .map_err(|e| format!("METRICS_ADDR={addr}: cannot serve metrics there: {e}"))?;
    for m in COMMON.iter().chain(own) {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
    metrics::gauge!("pipeline_build_info", "binary" => binary, "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
    let _ = std::thread::Builder::new()
        .name("process-metrics".into())
        .spawn(|| loop {
            record_process();
            std::thread::sleep(std::time::Duration::from_secs(5));
        });
    Ok(socket)
}

/// The process's resources from `/proc/self` (Linux; elsewhere nothing is recorded).
fn record_process() {
    use metrics::{counter, gauge};
    // SAFETY: sysconf and getrlimit only read system values into locals.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // The fields after the command name (in parentheses, which may hold spaces), from the
        // third (state): utime 14, stime 15, num_threads 20, starttime 22, vsize 23, rss 24.
        let fields: Vec<&str> = stat
            .rfind(')')
            .map(|end| stat[end + 1..].split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        if let (Some(utime), Some(stime), true) = (field(14), field(15), ticks > 0) {
            counter!("process_cpu_seconds_total").absolute((utime + stime) / ticks as u64);
        }
        if let Some(threads) = field(20) {
            gauge!("process_threads").set(threads as f64);
        }
        if let Some(vsize) = field(23) {
            gauge!("process_virtual_memory_bytes").set(vsize as f64);
        }
        if let (Some(rss), true) = (field(24), page > 0) {
            gauge!("process_resident_memory_bytes").set((rss * page as u64) as f64);
        }
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|b| b.trim().parse::<u64>().ok())
        });
        if let (Some(start), Some(boot), true) = (field(22), boot, ticks > 0) {
            gauge!("process_start_time_seconds").set(boot as f64 + start as f64 / ticks as f64);
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge!("process_open_fds").set(fds.count() as f64);
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        gauge!("process_max_fds").set(limit.rlim_cur as f64);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bare_metrics_port_binds_loopback_only() {
        use super::metrics_socket;
        assert_eq!(
            metrics_socket("9464").unwrap().to_string(),
            "127.0.0.1:9464"
        );
        assert_eq!(
            metrics_socket(":9464").unwrap().to_string(),
            "127.0.0.1:9464"
        );
        assert_eq!(
            metrics_socket("0.0.0.0:9").unwrap().to_string(),
            "0.0.0.0:9"
        );
        assert!(metrics_socket("everywhere")
            .unwrap_err()
            .contains("METRICS_ADDR"));
    }
}
