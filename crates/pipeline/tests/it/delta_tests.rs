//! Delta Lake tables (`OUTPUT_FORMAT=delta`): the input offsets in each table's log make every
//! offset land once in the table's current version across SIGKILLs, including a kill after the
//! tables committed a batch and before the checkpoint did; three independent readers (the
//! deltalake package, polars, DuckDB's delta_scan) read the same tables.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::harness::*;

/// What one reader saw of the tables at `output` (a folder or `s3://...`).
pub(crate) fn read_tables(
    output: &str,
    reader: &str,
    tables: &[&str],
    envs: &[(&str, &str)],
) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut cmd = Command::new("python3");
    cmd.arg(root.join("tests/python/check_delta.py"))
        .arg(output)
        .arg(reader)
        .args(tables)
        .envs(envs.iter().copied());
    // DuckDB's delta extension comes in a package for duckdb 1.5, and Spark with delta-spark,
    // each installed in a folder of its own (scripts/test.sh).
    let home = std::env::var("HOME").unwrap_or_default();
    match reader {
        "duckdb" => {
            cmd.env(
                "PYTHONPATH",
                format!("{home}/.cache/pipeline-py/duckdb-delta"),
            );
        }
        "spark" => {
            cmd.env("PYTHONPATH", format!("{home}/.cache/pipeline-py/spark"));
        }
        _ => {}
    }
    let output = cmd.output().expect("run python3");
    assert!(
        output.status.success(),
        "{reader}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from check_delta.py")
}

/// 12,000 transactions (3 % malformed, event times crossing midnight) processed by processors
/// SIGKILLed 12 times, half of them after their tables committed a batch and before the
/// checkpoint did, then by one that runs to the end; then three readers check the tables at
/// `output` (the local folder when `None`).
fn sigkilled_delta_run(place: &Place) {
    let envs = &place.envs()[..];
    let broker = Broker::start(3);
    let out = Scratch::new("delta");
    // Event times cross midnight after 5,000 messages: silver's batches around it hold two dates
    // and are split into both partitions.
    let mut producer = spawn_producer(
        &broker.bootstrap,
        out.path(),
        &[
            "--msgs-per-sec",
            "1000",
            "--count",
            "12000",
            "--seed",
            "11",
            "--bad-ratio",
            "0.03",
            "--event-time-start",
            "2025-11-07T23:59:55Z",
        ],
    );
    // Gold in update mode: every batch upserts the windows it changed, so that the table holds
    // one row per window and card, whatever the kills; nothing is late within a day.
    let mut args = vec![
        "--max-offsets-per-trigger",
        "700",
        "--output-format",
        "delta",
        "--gold-output-mode",
        "update",
        "--gold-watermark-delay",
        "1 day",
        // Compaction and vacuum every 3 batches, killed in the middle of it too.
        "--delta-optimize-every",
        "3",
        "--delta-vacuum-retention",
        "0",
    ];
    args.extend(place.args());
    // Every other run pauses after its tables committed a batch, before the checkpoint did: the
    // next run re-runs that batch, and the tables' txn actions say they hold it.
    let run_args = [&["--trigger", "0"][..], &args].concat();
    let (kills_before_commit, lines) = kill_repeatedly(
        &broker.bootstrap,
        out.path(),
        &run_args,
        envs,
        Kills::runs(12),
    );
    let holds = "holds it already: not added again";
    let mut held = lines.iter().filter(|l| l.contains(holds)).count();
    assert!(producer.wait().unwrap().success());
    assert!(
        kills_before_commit >= 4,
        "kills after the tables' commit: {kills_before_commit}"
    );
    let last = process_all_with(&broker.bootstrap, out.path(), &args, envs);
    let log = String::from_utf8_lossy(&last.stderr);
    held += log.lines().filter(|l| l.contains(holds)).count();
    assert!(
        log.contains("compacted"),
        "no compaction in the last run:\n{log}"
    );
    // A batch the tables committed before a kill is re-run and recognised from their logs.
    assert!(held >= 1, "no re-run found its batch in the tables");

    let topic = consume_all(&broker.bootstrap);
    assert_eq!(topic.len(), 12000, "messages in the topic");
    let valid = topic
        .iter()
        .filter(|m| txn_core::decode(m.value.as_deref()).is_ok())
        .count() as u64;
    assert!(valid > 11000 && valid < 12000, "valid: {valid}");

    let location = place.location(out.path());
    let tables = ["bronze", "silver", "quarantine", "gold", "windows"];
    let mut gold_seen = Vec::new();
    for reader in ["deltalake", "polars", "duckdb"] {
        let tables = read_tables(&location, reader, &tables, envs);
        // Gold: one row per window and card, equal to the windows recomputed from silver.
        let windows = &tables["windows"];
        let gold = windows["gold"].as_array().unwrap();
        assert!(gold.len() > 100, "{reader}: gold windows: {}", gold.len());
        assert_eq!(
            tables["gold"]["rows"],
            gold.len(),
            "{reader}: gold's rows are its windows"
        );
        assert!(
            windows["gold"] == windows["recomputed"],
            "{reader}: gold differs from the windows recomputed from silver"
        );
        gold_seen.push(windows["gold"].clone());
        let bronze = &tables["bronze"];
        assert_eq!(bronze["rows"], 12000, "{reader}: bronze rows\n{log}");
        assert_eq!(
            bronze["distinct_offsets"], 12000,
            "{reader}: each offset once"
        );
        let silver = &tables["silver"];
        assert_eq!(silver["rows"], valid, "{reader}: silver rows");
        assert_eq!(silver["distinct_ids"], valid, "{reader}: each record once");
        assert_eq!(
            silver["dates"],
            serde_json::json!(["2025-11-07", "2025-11-08"]),
            "{reader}: silver's date partitions"
        );
        assert_eq!(
            tables["quarantine"]["rows"],
            12000 - valid,
            "{reader}: silver + quarantine = bronze"
        );
        assert!(
            bronze["columns"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("date")),
            "{reader}: bronze's date column"
        );
    }
    assert!(
        gold_seen.windows(2).all(|w| w[0] == w[1]),
        "the readers see the same gold"
    );
    if place.s3.is_none() {
        // Spark with delta-spark reads the same (local tables: s3a:// needs hadoop-aws).
        let spark = read_tables(
            &location,
            "spark",
            &["bronze", "silver", "quarantine", "gold"],
            envs,
        );
        assert_eq!(spark["bronze"]["distinct_offsets"], 12000, "spark: bronze");
        assert_eq!(spark["silver"]["distinct_ids"], valid, "spark: silver");
        assert_eq!(
            spark["quarantine"]["rows"],
            12000 - valid,
            "spark: quarantine"
        );
        assert_eq!(
            spark["gold"]["rows"],
            gold_seen[0].as_array().unwrap().len(),
            "spark: gold"
        );
    }
}

#[test]
#[ignore = "needs Python with deltalake, polars and DuckDB's delta extension (scripts/test.sh installs them); runs in the Apache Kafka pass"]
fn delta_tables_hold_every_offset_once_after_sigkills_and_three_readers_agree() {
    sigkilled_delta_run(&Place::local());
}

#[test]
#[ignore = "needs moto's S3 server and the Delta readers (scripts/test.sh installs them); runs in the Apache Kafka pass"]
fn delta_tables_on_an_s3_server_hold_every_offset_once_after_sigkills() {
    sigkilled_delta_run(&Place::s3());
}

/// A table's rows as one reader sees them: `columns`, sorted (see check_delta.py --rows).
fn table_rows(
    output: &str,
    reader: &str,
    table: &str,
    columns: &[&str],
    envs: &[(&str, &str)],
) -> Vec<Vec<serde_json::Value>> {
    let rows = read_tables(output, reader, &["--rows", table, &columns.join(",")], envs);
    serde_json::from_value(rows).expect("rows from check_delta.py")
}

const READERS: [&str; 3] = ["deltalake", "polars", "duckdb"];

/// The Delta settings of the datasets' tests: compaction and vacuum every 4 batches, so that
/// kills land in the middle of them too.
const DELTA_UPKEEP: [&str; 6] = [
    "--output-format",
    "delta",
    "--delta-optimize-every",
    "4",
    "--delta-vacuum-retention",
    "0",
];

/// The processor with `args` (and the Delta settings, and the place's) SIGKILLed 12 times while
/// `producer` writes, half of the kills after the tables' commit, then run to the end.
fn killed_then_run_to_the_end(
    broker: &Broker,
    out: &Path,
    place: &Place,
    args: &[&str],
    producer: std::process::Child,
) {
    let envs = place.envs();
    let args = [args, &DELTA_UPKEEP[..], &place.args()].concat();
    let run_args = [&["--trigger", "0"][..], &args].concat();
    let (at_pause, _) = kill_repeatedly(&broker.bootstrap, out, &run_args, &envs, Kills::runs(12));
    assert!(producer.wait_with_output().unwrap().status.success());
    assert!(at_pause >= 4, "kills after the tables' commit: {at_pause}");
    process_all_with(&broker.bootstrap, out, &args, &envs);
}

/// Where a test's tables go: its scratch folder, or a bucket of an S3 server started for it
/// (the checkpoint then follows them there: nothing stays on the processor's disk).
pub(crate) struct Place {
    pub(crate) s3: Option<S3Server>,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
}

impl Place {
    pub(crate) fn local() -> Self {
        Place {
            s3: None,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub(crate) fn s3() -> Self {
        let server = S3Server::start("lake");
        let env = server.env();
        Place {
            s3: Some(server),
            args: vec!["--output-path".into(), "s3://lake/pipeline".into()],
            env,
        }
    }

    /// The processor's arguments that say where.
    pub(crate) fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }

    pub(crate) fn envs(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// Where the readers find the tables.
    pub(crate) fn location(&self, out: &Path) -> String {
        match &self.s3 {
            Some(_) => "s3://lake/pipeline".into(),
            None => out.display().to_string(),
        }
    }
}

#[test]
#[ignore = "needs Python with the Delta readers (scripts/test.sh installs them); runs in the Apache Kafka pass"]
fn delta_events_tables_hold_each_event_once_and_one_row_per_window_after_sigkills() {
    events_tables_after_sigkills(&Place::local());
}

#[test]
#[ignore = "needs moto's S3 server, Apache Kafka and the Delta readers (scripts/test.sh); runs in the Apache Kafka pass"]
fn delta_events_tables_hold_each_event_once_and_one_row_per_window_after_sigkills_on_s3() {
    events_tables_after_sigkills(&Place::s3());
}

fn events_tables_after_sigkills(place: &Place) {
    let envs = place.envs();
    let broker = Broker::start(3);
    let out = Scratch::new("delta-events");
    let dataset = ["--dataset", "events", "--topic", TOPIC];
    let producer = spawn_producer(
        &broker.bootstrap,
        out.path(),
        &[
            &dataset[..],
            &[
                "--msgs-per-sec",
                "1000",
                "--count",
                "12000",
                "--seed",
                "37",
                "--bad-ratio",
                "0.03",
                "--event-time-start",
                "2025-11-06T23:59:57Z",
            ],
        ]
        .concat(),
    );
    let args = [&dataset[..], &["--max-offsets-per-trigger", "400"]].concat();
    killed_then_run_to_the_end(&broker, out.path(), place, &args, producer);

    // The truth: the topic's valid events, and their 10-second windows per id.
    let (valid, invalid) = crate::events_tests::produced(&broker.bootstrap);
    assert_eq!(valid.len() + invalid, 12000);
    let mut windows: BTreeMap<(i64, i64), (i64, f64, f64, f64)> = BTreeMap::new();
    for &(id, ts, value) in &valid {
        let start = ts.div_euclid(10_000_000) * 10_000_000;
        let w = windows
            .entry((id, start))
            .or_insert((0, f64::MAX, f64::MIN, 0.0));
        *w = (w.0 + 1, w.1.min(value), w.2.max(value), w.3 + value);
    }
    let location = place.location(out.path());
    for reader in READERS {
        let events = table_rows(&location, reader, "events", &["id", "ts", "value"], &envs);
        let seen: Vec<(i64, i64, f64)> = events
            .iter()
            .map(|r| {
                (
                    r[0].as_i64().unwrap(),
                    r[1].as_i64().unwrap(),
                    r[2].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(seen.len(), valid.len(), "{reader}: events rows");
        assert!(
            seen == valid,
            "{reader}: each valid event once, as produced"
        );
        let dates = table_rows(&location, reader, "events", &["date"], &envs);
        assert_eq!(dates.first().unwrap()[0], "2025-11-06", "{reader}");
        assert_eq!(dates.last().unwrap()[0], "2025-11-07", "{reader}");

        let rejects = table_rows(
            &location,
            reader,
            "events_quarantine",
            &["partition", "offset"],
            &envs,
        );
        let mut distinct = rejects.clone();
        distinct.dedup();
        assert_eq!(
            (rejects.len(), distinct.len()),
            (invalid, invalid),
            "{reader}: each reject once"
        );

        let agg = table_rows(
            &location,
            reader,
            "events_agg",
            &[
                "id",
                "window_start",
                "event_count",
                "min_value",
                "max_value",
                "avg_value",
            ],
            &envs,
        );
        assert_eq!(
            agg.len(),
            windows.len(),
            "{reader}: one row per window and id"
        );
        for row in &agg {
            let key = (row[0].as_i64().unwrap(), row[1].as_i64().unwrap());
            let (count, min, max, sum) = windows[&key];
            assert_eq!(row[2].as_i64().unwrap(), count, "{reader}: {key:?}");
            assert_eq!(row[3].as_f64().unwrap(), min, "{reader}: {key:?}");
            assert_eq!(row[4].as_f64().unwrap(), max, "{reader}: {key:?}");
            let avg = row[5].as_f64().unwrap();
            assert!(
                (avg - sum / count as f64).abs() < 1e-6,
                "{reader}: {key:?} avg {avg}"
            );
        }
    }
    if place.s3.is_none() {
        let spark = read_tables(
            &location,
            "spark",
            &["events", "events_quarantine", "events_agg"],
            &envs,
        );
        assert_eq!(spark["events"]["rows"], valid.len(), "spark: events");
        assert_eq!(
            spark["events_quarantine"]["distinct_offsets"], invalid,
            "spark"
        );
        assert_eq!(
            spark["events_agg"]["rows"],
            windows.len(),
            "spark: events_agg"
        );
    }
}

#[test]
#[ignore = "needs Apache Kafka and the Delta readers (scripts/test.sh); runs in the Apache Kafka pass"]
fn delta_fraud_tables_hold_each_alert_once_and_one_row_per_user_window_after_sigkills() {
    fraud_tables_after_sigkills(&Place::local());
}

#[test]
#[ignore = "needs moto's S3 server, Apache Kafka and the Delta readers (scripts/test.sh); runs in the Apache Kafka pass"]
fn delta_fraud_tables_hold_each_alert_once_and_one_row_per_user_window_after_sigkills_on_s3() {
    fraud_tables_after_sigkills(&Place::s3());
}

fn fraud_tables_after_sigkills(place: &Place) {
    let envs = place.envs();
    use crate::fraud_tests::{oracle, producer_args, topic_alerts, ALERTS, FRAUD_PROCESSOR};
    let broker = Broker::start(3);
    broker.create_topic(ALERTS, 3, &[]);
    let out = Scratch::new("delta-fraud");
    let produce = producer_args("8000", "0.05", "42", "800");
    let produce: Vec<&str> = produce.iter().map(String::as_str).collect();
    let producer = spawn_producer(&broker.bootstrap, out.path(), &produce);
    killed_then_run_to_the_end(&broker, out.path(), place, &FRAUD_PROCESSOR, producer);

    let expected = oracle(&broker.bootstrap);
    assert!(expected.len() > 20, "alerts: {}", expected.len());
    assert_eq!(
        topic_alerts(&broker.bootstrap),
        expected,
        "the topic's alerts, each once"
    );
    let location = place.location(out.path());
    for reader in READERS {
        let rows = table_rows(
            &location,
            reader,
            "fraud_alerts",
            &["alert_type", "user_id", "alert_time", "txn_id"],
            &envs,
        );
        let mut alerts: Vec<crate::fraud_tests::AlertKey> = rows
            .iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap().to_string(),
                    r[1].as_str().unwrap().to_string(),
                    r[2].as_i64().unwrap(),
                    r[3].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        alerts.sort();
        assert_eq!(
            alerts, expected,
            "{reader}: fraud_alerts holds each alert once"
        );

        // The users' windows: one row per (user, category, window), listing as many merchants
        // as it counts.
        let windows = table_rows(
            &location,
            reader,
            "user_aggregates",
            &[
                "user_id",
                "category",
                "window_start",
                "transaction_count",
                "merchants",
            ],
            &envs,
        );
        assert!(windows.len() > 100, "{reader}: {} windows", windows.len());
        let mut keys: Vec<&[serde_json::Value]> = windows.iter().map(|w| &w[..3]).collect();
        keys.dedup();
        assert_eq!(
            keys.len(),
            windows.len(),
            "{reader}: one row per user window"
        );
        for w in &windows {
            assert_eq!(
                w[3], w[4],
                "{reader}: merchants listed per transaction: {w:?}"
            );
        }
    }
    if place.s3.is_none() {
        let spark = read_tables(
            &location,
            "spark",
            &["fraud_alerts", "user_aggregates"],
            &envs,
        );
        assert_eq!(
            spark["fraud_alerts"]["rows"],
            expected.len(),
            "spark: fraud_alerts"
        );
        assert!(
            spark["user_aggregates"]["rows"].as_u64().unwrap() > 100,
            "spark: user_aggregates"
        );
    }
}

#[test]
#[ignore = "needs Apache Kafka and the Delta readers (scripts/test.sh); runs in the Apache Kafka pass"]
fn delta_financial_tables_hold_each_offset_once_and_each_anomaly_once_after_sigkills() {
    financial_tables_after_sigkills(&Place::local());
}

#[test]
#[ignore = "needs moto's S3 server, Apache Kafka and the Delta readers (scripts/test.sh); runs in the Apache Kafka pass"]
fn delta_financial_tables_hold_each_offset_once_and_each_anomaly_once_after_sigkills_on_s3() {
    financial_tables_after_sigkills(&Place::s3());
}

fn financial_tables_after_sigkills(place: &Place) {
    let envs = place.envs();
    use crate::financial_tests::{
        final_aggregates, oracle, producer_args, topic_anomalies, AnomalyKey, DATASET,
        OUTPUT_TOPICS,
    };
    let broker = Broker::start(5);
    for (name, n) in OUTPUT_TOPICS {
        broker.create_topic(name, n, &[]);
    }
    let out = Scratch::new("delta-financial");
    let producer = spawn_producer(
        &broker.bootstrap,
        out.path(),
        &producer_args("10000", "800", "23", "0"),
    );
    let args = [&DATASET[..], &["--max-offsets-per-trigger", "500"]].concat();
    killed_then_run_to_the_end(&broker, out.path(), place, &args, producer);

    let topic = consume_all(&broker.bootstrap);
    let all: Vec<serde_json::Value> = {
        let mut all: Vec<(i64, i64)> = topic
            .iter()
            .map(|m| (i64::from(m.partition), m.offset))
            .collect();
        all.sort_unstable();
        all.iter()
            .map(|&(p, o)| serde_json::json!([p, o]))
            .collect()
    };
    let expected = oracle(&broker.bootstrap);
    assert!(!expected.is_empty());
    assert_eq!(
        topic_anomalies(&broker.bootstrap),
        expected,
        "the topic's anomalies, each once"
    );
    let totals = final_aggregates(&broker.bootstrap);
    let location = place.location(out.path());
    for reader in READERS {
        let offsets = |table: &str| -> Vec<serde_json::Value> {
            table_rows(&location, reader, table, &["partition", "offset"], &envs)
                .into_iter()
                .map(serde_json::Value::from)
                .collect()
        };
        assert_eq!(
            offsets("financial_bronze"),
            all,
            "{reader}: each offset once in bronze"
        );
        let mut split = offsets("financial_silver");
        split.extend(offsets("financial_quarantine"));
        split.sort_by_key(|v| (v[0].as_i64(), v[1].as_i64()));
        assert_eq!(
            split, all,
            "{reader}: silver + quarantine = bronze, each offset once"
        );

        let mut anomalies: Vec<AnomalyKey> = table_rows(
            &location,
            reader,
            "financial_anomalies",
            &["anomalyType", "userId", "transactionId"],
            &envs,
        )
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_str().unwrap().to_string(),
                r[2].as_str().unwrap().to_string(),
            )
        })
        .collect();
        anomalies.sort();
        assert_eq!(
            anomalies, expected,
            "{reader}: each anomaly once in the table"
        );

        // The merchants' totals in the topic equal the sums over the silver table.
        let mut sums: BTreeMap<String, (f64, u64)> = BTreeMap::new();
        for r in table_rows(
            &location,
            reader,
            "financial_silver",
            &["merchantId", "amount"],
            &envs,
        ) {
            let entry = sums.entry(r[0].as_str().unwrap().to_string()).or_default();
            *entry = (entry.0 + r[1].as_f64().unwrap(), entry.1 + 1);
        }
        assert_eq!(sums.len(), totals.len(), "{reader}: merchants");
        for (merchant, (sum, count)) in &sums {
            let (total, n) = totals[merchant];
            assert_eq!(*count, n, "{reader}: {merchant}");
            assert!(
                (sum - total).abs() < 1e-6 * total.abs().max(1.0),
                "{reader}: {merchant} {sum} vs {total}"
            );
        }
    }
    if place.s3.is_none() {
        let spark = read_tables(
            &location,
            "spark",
            &[
                "financial_bronze",
                "financial_silver",
                "financial_quarantine",
                "financial_anomalies",
            ],
            &envs,
        );
        assert_eq!(
            spark["financial_bronze"]["distinct_offsets"],
            all.len(),
            "spark: bronze"
        );
        let split = spark["financial_silver"]["rows"].as_u64().unwrap()
            + spark["financial_quarantine"]["rows"].as_u64().unwrap();
        assert_eq!(split, all.len() as u64, "spark: silver + quarantine");
        assert_eq!(
            spark["financial_anomalies"]["rows"],
            expected.len(),
            "spark: anomalies"
        );
    }
}

#[test]
#[ignore = "needs moto's S3 server and Apache Kafka (scripts/test.sh); runs in the Apache Kafka pass"]
fn a_second_processor_on_a_checkpoint_on_s3_is_refused_and_every_offset_lands_once() {
    let place = Place::s3();
    let envs = place.envs();
    let broker = Broker::start(3);
    let out = Scratch::new("delta-two");
    run_producer(
        &broker.bootstrap,
        out.path(),
        &["--count", "6000", "--seed", "5", "--msgs-per-sec", "0"],
    );
    // Two processors of one checkpoint on object storage, started together: there is no lock
    // file there, and the conditional write of a batch's plan lets one of them go on.
    let args = [
        &[
            "--trigger",
            "0",
            "--max-offsets-per-trigger",
            "300",
            "--output-format",
            "delta",
        ][..],
        &place.args(),
    ]
    .concat();
    let mut first = Processor::spawn(&broker.bootstrap, out.path(), &args, &envs);
    let mut second = Processor::spawn(&broker.bootstrap, out.path(), &args, &envs);
    // One of them stops, refused: at the plan it writes second ("was written by another
    // processor"), or, having re-run a batch the other had planned, at that batch's Delta commit
    // (the other committed it first); the other goes on.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut stopped = Vec::new();
    while stopped.is_empty() && std::time::Instant::now() < until {
        for (name, p) in [("first", &mut first), ("second", &mut second)] {
            if let Ok(Some(status)) = p.child.try_wait() {
                stopped.push((name, status));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let lines: Vec<String> = first
        .lines
        .try_iter()
        .chain(second.lines.try_iter())
        .collect();
    assert_eq!(
        stopped.len(),
        1,
        "one of the two stops:\n{}",
        lines.join("\n")
    );
    assert!(!stopped[0].1.success(), "{stopped:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("was written by another processor")
                || (l.contains("ERROR") && l.contains("Delta table"))),
        "the refusal is said:\n{}",
        lines.join("\n")
    );
    for p in [first, second] {
        p.signal(libc::SIGTERM);
        p.wait();
    }
    let last = process_all_with(
        &broker.bootstrap,
        out.path(),
        &[&["--output-format", "delta"][..], &place.args()].concat(),
        &envs,
    );
    assert!(last.status.success());
    let location = place.location(out.path());
    let bronze = table_rows(
        &location,
        "deltalake",
        "bronze",
        &["partition", "offset"],
        &envs,
    );
    let mut distinct = bronze.clone();
    distinct.dedup();
    assert_eq!(
        (bronze.len(), distinct.len()),
        (6000, 6000),
        "each offset once"
    );
}
