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

/// Serves the metrics recorded by this process on `addr` (`host:port`) at `/metrics`, every
/// series labelled with `dataset` and `topic`. Returns the address served, or a one-line error.
pub fn serve_metrics(addr: &str, dataset: &str, topic: &str) -> Result<SocketAddr, String> {
    let socket = metrics_socket(addr)?;
    PrometheusBuilder::new()
        .with_http_listener(socket)
        .add_global_label("dataset", dataset)
        .add_global_label("topic", topic)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
        .and_then(|b| b.install())
        .map_err(|e| format!("METRICS_ADDR={addr}: cannot serve metrics there: {e}"))?;
    Ok(socket)
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
