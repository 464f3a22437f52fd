//! Observability as a user runs it: a real Prometheus server (Debian's `prometheus`) scrapes a
//! running producer and processor, and the series read back through its HTTP API equal what the
//! files and the producer say; `promtool` accepts the configuration and the alert rules, and its
//! rule tests make each alert fire; the Grafana dashboard and the alert rules use only metric names
//! the binaries really export. Without Prometheus installed these say so and pass, except in CI
//! (`CI` set), where `.ci/run` installs it.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `tool` is installed; in CI its absence fails the test.
fn installed(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is not installed (apt-get install prometheus)"
        );
        eprintln!("SKIPPED: {tool} is not installed (apt-get install prometheus)");
    }
    found
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port; the body, when the answer is 200.
pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of a PromQL query that gives one sample, if it gives one.
fn query(port: u16, promql: &str) -> Option<f64> {
    let body = http_get(port, &format!("/api/v1/query?query={}", url_encode(promql)))?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    let [sample] = result.as_slice() else {
        return None;
    };
    sample["value"][1].as_str()?.parse().ok()
}

/// Waits until `promql` gives `want`, and returns the last value seen.
fn wait_for_value(port: u16, promql: &str, want: f64, timeout: Duration) -> Option<f64> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = query(port, promql);
        if got == Some(want) || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Metric names a PromQL expression uses (`pipeline_…`), histogram series reduced to the metric.
fn names_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("pipeline_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let metric = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(metric.to_string());
        rest = &tail[end..];
    }
    names
}

/// Every PromQL expression of the Grafana dashboard.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("monitoring/grafana/dashboards/pipeline.json"))
        .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        exprs.push(var["definition"].as_str().unwrap().to_string());
    }
    exprs
}

/// Every `expr:` of the alert rules (folded `>-` blocks joined).
fn alert_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("monitoring/alerts.yml")).unwrap();
    let mut exprs = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(expr) = line.trim().strip_prefix("expr:") else {
            continue;
        };
        let mut expr = expr.trim().trim_start_matches(">-").to_string();
        let indent = line.len() - line.trim_start().len();
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || next.len() - next.trim_start().len() <= indent {
                break;
            }
            expr.push(' ');
            expr.push_str(next.trim());
            lines.next();
        }
        exprs.push(expr);
    }
    exprs
}

/// Every metric name the producer and the processor export.
fn exported_names() -> BTreeSet<&'static str> {
    processor::metrics::NAMES
        .iter()
        .chain(producer::METRIC_NAMES.iter())
        .chain(txn_core::telemetry::COMMON.iter())
        .map(|m| m.name)
        .collect()
}

#[test]
fn the_dashboard_and_the_alert_rules_use_only_metrics_the_binaries_export() {
    let exported = exported_names();
    let exprs: Vec<String> = dashboard_exprs().into_iter().chain(alert_exprs()).collect();
    assert!(exprs.len() >= 20, "{exprs:#?}");
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| names_in(e)).collect();
    for name in &used {
        assert!(
            exported.contains(name.as_str()),
            "{name} is used by the dashboard or an alert but not exported"
        );
    }
    // Each panel of the dashboard the issue asks for is there.
    for wanted in [
        "pipeline_input_rows_total",
        "pipeline_input_lag_offsets",
        "pipeline_batch_stage_seconds",
        "pipeline_quarantined_rows_total",
        "pipeline_late_rows_total",
        "pipeline_watermark_timestamp_seconds",
    ] {
        assert!(used.contains(wanted), "the dashboard shows {wanted}");
    }
}

#[test]
fn the_readme_metrics_table_lists_exactly_the_metrics_the_binaries_export() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let table: BTreeSet<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("pipeline_") || n.starts_with("process_"))
        .collect();
    let exported = exported_names();
    assert_eq!(
        table, exported,
        "README's metrics table and the binaries' metrics"
    );
}

#[test]
fn promtool_accepts_the_configuration_and_every_alert_fires_on_its_test_series() {
    if !installed("promtool") {
        return;
    }
    let monitoring = repo().join("monitoring");
    let check = |args: &[&str]| {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&monitoring)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let rules = check(&["check", "rules", "alerts.yml"]);
    assert!(rules.contains("8 rules found"), "{rules}");
    let tested = check(&["test", "rules", "alerts_test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // The compose configuration names the rules where the container mounts them; check it with
    // that path pointed at the repository's file.
    let scratch = Scratch::new("promtool");
    let config = std::fs::read_to_string(monitoring.join("prometheus.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/alerts.yml",
            monitoring.join("alerts.yml").to_str().unwrap(),
        );
    let path = scratch.path().join("prometheus.yml");
    std::fs::write(&path, config).unwrap();
    let checked = check(&["check", "config", path.to_str().unwrap()]);
    assert!(checked.contains("SUCCESS"), "{checked}");
}

/// A Prometheus server scraping the given ports every second, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: Scratch,
}

impl Prometheus {
    fn start(targets: &[(&str, u16)]) -> Self {
        let dir = Scratch::new("prometheus");
        let mut config = String::from("global:\n  scrape_interval: 1s\nscrape_configs:\n");
        for (job, port) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
            ));
        }
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(port, "/-/ready").is_none() {
            assert!(Instant::now() < deadline, "prometheus did not get ready");
            std::thread::sleep(Duration::from_millis(200));
        }
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_the_producer_and_the_processor_and_their_series_match_the_files() {
    if !installed("prometheus") {
        return;
    }
    let broker = Broker::start(3);
    let out = Scratch::new("metrics");
    let (producer_port, processor_port) = (free_port(), free_port());
    let prometheus =
        Prometheus::start(&[("producer", producer_port), ("processor", processor_port)]);

    let processor = Processor::spawn(
        &broker.bootstrap,
        out.path(),
        &[
            "--trigger",
            "500 ms",
            "--metrics-addr",
            &format!("127.0.0.1:{processor_port}"),
        ],
        &[],
    );
    let producer = spawn_producer(
        &broker.bootstrap,
        out.path(),
        &[
            "--msgs-per-sec",
            "500",
            "--count",
            "3000",
            "--seed",
            "91",
            "--bad-ratio",
            "0.1",
            "--metrics-addr",
            &format!("127.0.0.1:{producer_port}"),
        ],
    );
    // The producer exits when done, taking its endpoint with it: what Prometheus kept of its
    // counter is the last scrape before that, most of the 3,000.
    let deadline = Instant::now() + Duration::from_secs(30);
    let sent = loop {
        let sent = query(
            prometheus.port,
            r#"max_over_time(pipeline_producer_messages_sent_total{job="producer", dataset="transactions", topic="transactions"}[5m])"#,
        );
        if sent.is_some_and(|s| s >= 2000.0) || Instant::now() >= deadline {
            break sent;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let produced = producer.wait_with_output().unwrap();
    assert!(produced.status.success());
    wait_for_bronze(out.path(), 3000, Duration::from_secs(60));
    let p = prometheus.port;
    let input = wait_for_value(
        p,
        r#"pipeline_input_rows_total{job="processor"}"#,
        3000.0,
        Duration::from_secs(20),
    );
    assert!(
        sent.is_some_and(|s| s >= 2000.0),
        "the producer's sent counter was scraped: {sent:?}"
    );
    assert_eq!(input, Some(3000.0), "rows in, as Prometheus read them");

    let quarantine = rows(&read_layer(out.path(), "quarantine")) as f64;
    let silver = rows(&read_layer(out.path(), "silver")) as f64;
    assert!(quarantine > 100.0);
    let q = |promql: &str| query(p, promql);
    assert_eq!(
        q(r#"pipeline_output_rows_total{output="bronze"}"#),
        Some(3000.0)
    );
    assert_eq!(
        q(r#"pipeline_output_rows_total{output="silver"}"#),
        Some(silver)
    );
    assert_eq!(
        q(r#"pipeline_output_rows_total{output="quarantine"}"#),
        Some(quarantine)
    );
    assert_eq!(q("sum(pipeline_quarantined_rows_total)"), Some(quarantine));
    assert!(
        q(r#"pipeline_quarantined_rows_total{reason="malformed_json"}"#).is_some(),
        "quarantined rows are counted by reason"
    );
    assert_eq!(q("sum(pipeline_input_lag_offsets)"), Some(0.0), "caught up");
    assert_eq!(q("pipeline_trigger_interval_seconds"), Some(0.5));
    assert!(q("pipeline_batches_total").is_some_and(|n| n >= 1.0));
    assert!(q("time() - pipeline_last_commit_timestamp_seconds").is_some_and(|s| s < 60.0));
    assert!(q(r#"histogram_quantile(0.5, sum by (le) (rate(pipeline_batch_stage_seconds_bucket{stage="write"}[1m])))"#).is_some());

    // Every name the dashboard and the alerts use is a series Prometheus really scraped.
    let body = http_get(p, "/api/v1/label/__name__/values").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let scraped: BTreeSet<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let used: BTreeSet<String> = dashboard_exprs()
        .iter()
        .chain(alert_exprs().iter())
        .flat_map(|e| names_in(e))
        .collect();
    for name in used {
        // Exported with CASSANDRA_HOSTS only: cassandra_tests.rs scrapes them.
        if name.starts_with("pipeline_cassandra_") {
            continue;
        }
        let present = scraped.contains(&name)
            || scraped.contains(&format!("{name}_bucket"))
            || scraped.contains(&format!("{name}_count"));
        assert!(present, "{name} was never scraped; scraped: {scraped:#?}");
    }

    // The processor's own page: every series described, the build and the process's resources.
    let page = http_get(processor_port, "/metrics").unwrap();
    let typed: Vec<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(typed.len() >= 20, "{page}");
    for name in &typed {
        assert!(
            page.lines()
                .any(|l| l.starts_with(&format!("# HELP {name} "))),
            "{name} has no # HELP line:\n{page}"
        );
    }
    let value = |prefix: &str| -> f64 {
        page.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{page}"))
    };
    assert!(
        page.lines().any(|l| l.starts_with("pipeline_build_info{")
            && l.contains("binary=\"processor\"")
            && l.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && l.ends_with(" 1")),
        "{page}"
    );
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_open_fds") >= 3.0);
    assert!(value("process_threads") >= 2.0);
    let started = value("process_start_time_seconds");
    let now = txn_core::time::now_micros() as f64 / 1e6;
    assert!(
        started <= now && started > now - 600.0,
        "started {started}, now {now}"
    );

    processor.signal(libc::SIGTERM);
    assert!(processor.wait().success());
}

#[test]
fn log_format_json_makes_the_events_console_tables_json_too() {
    let broker = Broker::start(3);
    let out = Scratch::new("json-events");
    let events = ["--dataset", "events", "--topic", TOPIC];
    run_producer(
        &broker.bootstrap,
        out.path(),
        &[
            &events[..],
            &["--msgs-per-sec", "0", "--count", "300", "--seed", "5"],
        ]
        .concat(),
    );
    let run = command("processor", out.path())
        .env("LOG_FORMAT", "json")
        .args(events)
        .args(["--bootstrap-servers", &broker.bootstrap])
        .args([
            "--trigger",
            "available-now",
            "--max-offsets-per-trigger",
            "100",
        ])
        .arg("--output-path")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(run.status.success());
    // stdout and stderr, as `docker logs` shows them: every line a JSON object.
    let mut objects = Vec::new();
    for stream in [&run.stdout, &run.stderr] {
        for line in String::from_utf8_lossy(stream).lines() {
            let o: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            objects.push(o);
        }
    }
    let tables: Vec<&str> = objects
        .iter()
        .filter_map(|o| o["fields"]["text"].as_str())
        .collect();
    assert!(
        tables.len() >= 3 && tables.iter().all(|t| t.contains("window_start")),
        "{tables:#?}"
    );
    let batch = objects
        .iter()
        .find(|o| o["fields"]["batch"] == 1 && o["fields"]["rows"].is_u64())
        .unwrap();
    assert_eq!(batch["fields"]["dataset"], "events");
    assert!(
        batch["fields"]["operators"]["events_agg"]["watermark"].is_string(),
        "{batch}"
    );
}

#[test]
fn log_format_json_gives_one_object_per_line_with_the_batch_figures_as_fields() {
    let broker = Broker::start(3);
    let out = Scratch::new("json-logs");
    run_producer(
        &broker.bootstrap,
        out.path(),
        &[
            "--msgs-per-sec",
            "0",
            "--count",
            "500",
            "--seed",
            "92",
            "--bad-ratio",
            "0.1",
        ],
    );
    let run = command("processor", out.path())
        .env("LOG_FORMAT", "json")
        .args([
            "--bootstrap-servers",
            &broker.bootstrap,
            "--trigger",
            "available-now",
            "--starting-offsets",
            "earliest",
        ])
        .arg("--output-path")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    let objects: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let batches: Vec<&serde_json::Value> = objects
        .iter()
        .filter(|o| o["fields"]["batch"].is_u64())
        .collect();
    assert!(!batches.is_empty(), "{stderr}");
    let sum = |field: &str| -> u64 {
        batches
            .iter()
            .map(|o| o["fields"][field].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum("rows"), 500);
    assert_eq!(sum("bronze"), 500);
    assert_eq!(
        sum("quarantine") as usize,
        rows(&read_layer(out.path(), "quarantine"))
    );
    assert_eq!(
        sum("silver") as usize,
        rows(&read_layer(out.path(), "silver"))
    );
    let first = batches[0];
    assert_eq!(first["level"], "INFO");
    assert!(first["timestamp"].is_string());
    assert!(first["fields"]["message"]
        .as_str()
        .unwrap()
        .contains("batch 0:"));
    let f = &first["fields"];
    assert_eq!(f["dataset"], "transactions");
    assert_eq!(f["topic"], TOPIC);
    let by_reason: u64 = batches
        .iter()
        .flat_map(|o| {
            o["fields"]["quarantine_reasons"]
                .as_object()
                .unwrap()
                .values()
        })
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(by_reason, sum("quarantine"), "quarantine_reasons add up");
    let lags = f["lag_by_partition"].as_object().unwrap();
    assert_eq!(lags.len(), 3, "{f}");
    assert_eq!(
        lags.values().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        f["lag"].as_u64().unwrap()
    );
    assert!(f["processed_mb_per_s"].as_f64().unwrap() > 0.0, "{f}");
    assert!(
        f["input_rows_per_s"].is_null(),
        "the run's first batch has no input rate"
    );
    assert_eq!(f["operators"]["gold"]["late"], 0, "{f}");
    assert!(f["operators"]["gold"]["watermark"].is_string(), "{f}");

    // A bad value is one line and exit 2.
    let bad = command("processor", out.path())
        .env("LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("LOG_FORMAT=\"xml\": use text or json"));
}
