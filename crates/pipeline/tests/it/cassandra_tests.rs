//! Seed 002's Cassandra sink on a real Cassandra (Apache Cassandra 5.0 run by
//! `scripts/cassandra.sh`) and Apache Kafka: the user aggregates of a fraud run, upserted across
//! SIGKILLs at random moments (some after Cassandra acknowledged a batch and before the
//! checkpoint committed it) and across a Cassandra outage of 20 s, equal DuckDB's recomputation
//! of every window from silver (`tests/python/check_cassandra.py`, which reads the table with the
//! DataStax Python driver), and gold's table (`CASSANDRA_GOLD_TABLE`) holds gold's files.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fraud_tests::{producer_args, ALERTS};
use crate::harness::*;

/// What check_cassandra.py found: the table against DuckDB over silver.
fn check(out: &Path, contact: &str) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new("python3")
        .arg(root.join("tests/python/check_cassandra.py"))
        .arg(out)
        .arg(contact)
        .args([
            "realtime_analytics",
            "transaction_aggregates",
            "gold_windows",
        ])
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "check_cassandra.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from check_cassandra.py")
}

#[test]
#[ignore = "needs Apache Kafka and Cassandra (scripts/kafka.sh, scripts/cassandra.sh; scripts/test.sh runs it)"]
fn cassandra_windows_equal_duckdb_over_silver_after_sigkills_and_a_20_s_outage() {
    let broker = if is_kafka() {
        Broker::start(3)
    } else {
        Broker::start_as("kafka", 3)
    };
    broker.create_topic(ALERTS, 3, &[]);
    let cassandra = Cassandra::start();
    let out = Scratch::new("cassandra");
    // 9,000 realistic transactions (2 % malformed, 2 % out of order) over about 30 s.
    let args = producer_args("9000", "0.05", "7", "300");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let producer = spawn_producer(&broker.bootstrap, out.path(), &args);
    // No window closes within the run, so no row is late and silver holds exactly what the
    // windows counted.
    let processor = [
        "--fraud-detection",
        "true",
        "--fraud-watermark-delay",
        "30 days",
        "--max-offsets-per-trigger",
        "300",
    ];
    let live = [&processor[..], &["--trigger", "0"]].concat();
    let envs = [
        ("CASSANDRA_HOSTS", cassandra.contact.as_str()),
        ("CASSANDRA_GOLD_TABLE", "gold_windows"),
    ];

    let (at_pause, _) =
        kill_repeatedly(&broker.bootstrap, out.path(), &live, &envs, Kills::runs(6));
    assert!(
        at_pause >= 1,
        "a kill after Cassandra acknowledged a batch and before its checkpoint commit"
    );

    // The outage: Cassandra stopped for 20 s under a running processor, then started again.
    let metrics_port = crate::monitoring_tests::free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let outage_envs = [envs[0], envs[1], ("METRICS_ADDR", metrics_addr.as_str())];
    let p = Processor::spawn(&broker.bootstrap, out.path(), &live, &outage_envs);
    p.wait_for("upserting into", Duration::from_secs(60))
        .expect("the processor connects to Cassandra");
    p.wait_for("[processor] batch", Duration::from_secs(60))
        .expect("a batch committed before the outage");
    cassandra.stop();
    let stopped = Instant::now();
    let warning = p
        .wait_for("waiting and trying again", Duration::from_secs(20))
        .expect("a warning that names the hosts while Cassandra is down");
    assert!(warning.contains(&cassandra.contact), "{warning}");
    std::thread::sleep(Duration::from_secs(20).saturating_sub(stopped.elapsed()));
    cassandra.start_again();
    let resumed = p
        .wait_for("acknowledged batch", Duration::from_secs(120))
        .expect("the stalled batch is acknowledged once Cassandra is back");
    assert!(resumed.contains("retries"), "{resumed}");
    assert!(
        p.wait_for("[processor] batch", Duration::from_secs(60))
            .is_some(),
        "batches go on after the outage"
    );
    // The retries and the rows, as Prometheus would scrape them.
    let scrape = crate::monitoring_tests::http_get(metrics_port, "/metrics").expect("/metrics");
    let value = |prefix: &str| -> f64 {
        scrape
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{prefix} in the scrape: {scrape}"))
    };
    assert!(value("pipeline_cassandra_retries_total") >= 1.0);
    assert!(value("pipeline_cassandra_rows_total{") >= 1.0);
    p.signal(libc::SIGTERM);
    assert!(p.wait().success(), "a stop after the outage is clean");

    let produced = producer.wait_with_output().unwrap();
    assert!(produced.status.success());
    let last = process_all_with(&broker.bootstrap, out.path(), &processor, &envs);
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );

    let report = check(out.path(), &cassandra.contact);
    eprintln!("check_cassandra.py: {report}");
    assert!(
        report["windows"].as_u64().unwrap() > 500,
        "enough windows to compare: {report}"
    );
    assert!(
        report["transactions"].as_u64().unwrap() > 8000,
        "the recomputation covers the run: {report}"
    );
    for key in ["missing_count", "extra_count", "different_count"] {
        assert_eq!(report[key], 0, "{key}: {report}");
    }
    assert_eq!(report["rows"], report["windows"], "{report}");
    // Gold's table holds gold's files: every closed card window once, with the same figures.
    let gold = &report["gold"];
    assert!(gold["windows"].as_u64().unwrap() > 100, "{gold}");
    assert_eq!(
        gold["file_rows"], gold["windows"],
        "one gold row per window: {gold}"
    );
    for key in ["missing_count", "extra_count", "different_count"] {
        assert_eq!(gold[key], 0, "gold {key}: {gold}");
    }
}
