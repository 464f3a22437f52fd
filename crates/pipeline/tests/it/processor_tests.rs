//! The processor end to end: layers, quarantine reasons, triggers, and bad settings.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::*;

#[test]
fn end_to_end_layer_row_counts_equal_what_was_produced_and_every_reject_has_a_reason() {
    let broker = Broker::start(3);
    let out = Scratch::new("e2e");
    let produced = run_producer(
        &broker.bootstrap,
        out.path(),
        &[
            "--count",
            "3000",
            "--msgs-per-sec",
            "0",
            "--seed",
            "5",
            "--bad-ratio",
            "0.05",
            "--late-ratio",
            "0.05",
        ],
    );
    let bad = summary_field(&produced.stderr, "bad") as usize;
    let log = process_all(
        &broker.bootstrap,
        out.path(),
        &["--max-offsets-per-trigger", "1000", "--show-previews", "1"],
    );
    let previews = String::from_utf8_lossy(&log.stdout).into_owned();
    assert_eq!(
        previews.matches("event_time").count(),
        3,
        "a preview per batch: {previews}"
    );
    assert!(previews.contains("| card_1"), "{previews}");
    assert_eq!(
        previews.matches("(10 of ").count(),
        3,
        "ten rows of each batch: {previews}"
    );
    let log = String::from_utf8_lossy(&log.stderr);
    assert!(
        log.contains("batch 2: rows=1000"),
        "three batches of 1000: {log}"
    );
    assert!(log.contains("available-now: everything present at start is processed"));

    let bronze = read_layer(out.path(), "bronze");
    let silver = read_layer(out.path(), "silver");
    let quarantine = read_layer(out.path(), "quarantine");
    assert_eq!(rows(&bronze), 3000);
    assert_eq!(
        rows(&quarantine),
        bad,
        "every malformed message, and only those, in quarantine"
    );
    assert_eq!(rows(&silver), 3000 - bad);
    assert_eq!(csv_rows(out.path()), 3000 - bad, "raw CSV mirrors silver");
    for layer in ["bronze", "silver", "quarantine", "raw_csv"] {
        assert_eq!(
            layer_files(out.path(), layer).len(),
            3,
            "one file per layer per batch: {layer}"
        );
    }

    // Bronze holds each offset once, with the payload as produced.
    let topic = consume_all(&broker.bootstrap);
    let coordinates: BTreeSet<(i64, i64)> = i64s(&bronze, "partition")
        .into_iter()
        .zip(i64s(&bronze, "offset"))
        .collect();
    assert_eq!(coordinates.len(), 3000);
    assert_eq!(
        coordinates,
        topic
            .iter()
            .map(|m| (i64::from(m.partition), m.offset))
            .collect()
    );

    // Quarantine keeps the reason and the coordinates of each reject.
    let reasons = strings(&quarantine, "reason");
    let codes = [
        "malformed_json",
        "not_utf8",
        "not_an_object",
        "missing_txn_id",
        "bad_event_ts",
        "wrong_type",
        "out_of_range",
    ];
    for reason in reasons
        .iter()
        .map(|r| r.as_deref().expect("reason is never null"))
    {
        assert!(
            codes.iter().any(|c| reason.starts_with(&format!("{c}: "))),
            "{reason}"
        );
    }
    assert!(
        reasons
            .iter()
            .flatten()
            .map(|r| r.split(':').next().unwrap())
            .collect::<BTreeSet<_>>()
            .len()
            >= 5
    );
    for (p, o) in i64s(&quarantine, "partition")
        .into_iter()
        .zip(i64s(&quarantine, "offset"))
    {
        let m = topic
            .iter()
            .find(|m| i64::from(m.partition) == p && m.offset == o)
            .expect("quarantined offset exists");
        assert!(txn_core::decode(m.value.as_deref()).is_err());
    }

    // Silver rows are the valid records with their parsed event time.
    let ids = strings(&silver, "txn_id");
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        3000 - bad,
        "each valid record once"
    );
    let event_times = i64s(&silver, "event_time");
    // Each row's json_str is its own record's (bronze's pages of valid rows, copied).
    let json = strings(&silver, "json_str");
    assert_eq!(json.len(), ids.len());
    for ((j, t), id) in json.iter().zip(&event_times).zip(&ids) {
        let txn = txn_core::decode(j.as_deref().map(str::as_bytes)).unwrap();
        assert_eq!(
            (txn.event_time, Some(txn.txn_id.as_ref())),
            (*t, id.as_deref())
        );
    }
}

#[test]
fn an_idle_topic_makes_no_batches_and_no_files_and_sigterm_exits_zero() {
    let broker = Broker::start(3);
    let out = Scratch::new("idle");
    let p = Processor::spawn(&broker.bootstrap, out.path(), &["--trigger", "200 ms"], &[]);
    assert!(p
        .wait_for("no checkpoint: starting at", Duration::from_secs(30))
        .is_some());
    std::thread::sleep(Duration::from_millis(1500));
    p.signal(libc::SIGTERM);
    assert!(p.wait().success());
    for layer in ["bronze", "silver", "gold", "quarantine", "raw_csv"] {
        assert!(
            layer_files(out.path(), layer).is_empty(),
            "{layer} has no files"
        );
    }
    assert_eq!(
        std::fs::read_dir(out.path().join("_chk/offsets"))
            .unwrap()
            .count(),
        0,
        "no batch planned"
    );
}

#[test]
fn sigterm_finishes_and_commits_the_batch_in_flight() {
    let broker = Broker::start(3);
    let out = Scratch::new("sigterm");
    run_producer(
        &broker.bootstrap,
        out.path(),
        &["--count", "500", "--msgs-per-sec", "0"],
    );
    let p = Processor::spawn(
        &broker.bootstrap,
        out.path(),
        &["--trigger", "0"],
        &[("TEST_PAUSE_BEFORE_COMMIT", "1 second")],
    );
    assert!(p
        .wait_for(
            "test pause before the commit of batch 0",
            Duration::from_secs(30)
        )
        .is_some());
    p.signal(libc::SIGTERM);
    assert!(p.wait().success(), "exit 0");
    assert!(
        out.path().join("_chk/commits/0").exists(),
        "the batch in flight was committed"
    );
    assert_eq!(rows(&read_layer(out.path(), "bronze")), 500);
}

#[test]
fn max_files_per_sink_keeps_the_newest_files() {
    let broker = Broker::start(3);
    let out = Scratch::new("retention");
    run_producer(
        &broker.bootstrap,
        out.path(),
        &["--count", "500", "--msgs-per-sec", "0"],
    );
    process_all(
        &broker.bootstrap,
        out.path(),
        &[
            "--max-offsets-per-trigger",
            "100",
            "--max-files-per-sink",
            "2",
        ],
    );
    let names: Vec<String> = layer_files(out.path(), "bronze")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.iter().any(|n| n.ends_with("_4.parquet"))
            && names.iter().any(|n| n.ends_with("_3.parquet")),
        "{names:?}"
    );
}

#[test]
fn starting_offsets_json_and_latest_choose_where_to_begin() {
    let broker = Broker::start(1);
    let out = Scratch::new("starting");
    run_producer(
        &broker.bootstrap,
        out.path(),
        &["--count", "100", "--msgs-per-sec", "0"],
    );
    let json = r#"{"transactions":{"0":60}}"#;
    process_all(&broker.bootstrap, out.path(), &["--starting-offsets", json]);
    assert_eq!(
        i64s(&read_layer(out.path(), "bronze"), "offset"),
        (60..100).collect::<Vec<_>>()
    );

    let latest = Scratch::new("starting-latest");
    let log = command("processor", latest.path())
        .args([
            "--bootstrap-servers",
            &broker.bootstrap,
            "--trigger",
            "available-now",
            "--starting-offsets",
            "latest",
        ])
        .arg("--output-path")
        .arg(latest.path())
        .output()
        .unwrap();
    assert!(log.status.success());
    assert!(
        layer_files(latest.path(), "bronze").is_empty(),
        "latest skips what is there"
    );
}

/// Each bad setting: a non-zero exit and one readable error line, no panic.
#[test]
fn bad_settings_give_one_readable_line_and_a_nonzero_exit() {
    let dir = Scratch::new("bad-settings");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let unwritable = file.join("output");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--starting-offsets".into(), "newest".into()],
            "STARTING_OFFSETS=\"newest\"",
        ),
        (
            vec!["--trigger".into(), "every now and then".into()],
            "every now and then",
        ),
        (
            vec!["--output-path".into(), unwritable.display().to_string()],
            "OUTPUT_PATH",
        ),
        (
            vec![
                "--connect-timeout".into(),
                "2 s".into(),
                "--bootstrap-servers".into(),
                "127.0.0.1:1".into(),
            ],
            "cannot reach Kafka at 127.0.0.1:1 within 2 s",
        ),
    ];
    for (args, expected) in cases {
        let mut cmd = command("processor", dir.path());
        if !args.iter().any(|a| a == "--output-path") {
            cmd.arg("--output-path").arg(dir.path().join("out"));
        }
        let out = cmd.args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("ERROR") || l.starts_with("error"))
            .collect();
        assert_eq!(errors.len(), 1, "{args:?}: one error line: {stderr}");
    }
}

#[test]
fn a_missing_output_topic_is_named_at_start() {
    let broker = Broker::start(3);
    let out = Scratch::new("missing-output-topic");
    let p = Processor::spawn(
        &broker.bootstrap,
        out.path(),
        &[
            "--gold-topic",
            "no-such-topic",
            "--trigger",
            "available-now",
        ],
        &[],
    );
    let line = p.wait_for(
        "output topic no-such-topic does not exist",
        Duration::from_secs(30),
    );
    assert!(line.is_some_and(|l| l.contains("WARN")));
    assert!(p.wait().success());
}
