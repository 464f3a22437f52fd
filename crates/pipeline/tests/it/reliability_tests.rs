//! The reliability findings of issue #31, each on the broker of the run (the embedded one, and
//! Apache Kafka in `scripts/test.sh`'s Kafka pass): one writer per checkpoint, and checksummed
//! checkpoint files with a way out.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::*;

/// Runs the processor over everything in the topic, from the earliest offsets; its output,
/// whatever the exit.
fn process_once(bootstrap: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--starting-offsets", "earliest"];
    args.extend_from_slice(extra);
    process_unchecked(bootstrap, out, &args)
}

/// Waits until one of `processors` exits; its index, exit code and error line.
fn first_to_exit(processors: &mut [Processor], timeout: Duration) -> (usize, i32, String) {
    let deadline = Instant::now() + timeout;
    loop {
        for (i, p) in processors.iter_mut().enumerate() {
            if let Some(status) = p.child.try_wait().unwrap() {
                let line = p
                    .wait_for("ERROR", Duration::from_secs(5))
                    .unwrap_or_default();
                return (i, status.code().unwrap_or(-1), line);
            }
        }
        assert!(Instant::now() < deadline, "no processor exited");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_second_processor_on_one_checkpoint_is_refused_with_exit_2_naming_the_holder_and_nothing_doubles(
) {
    let broker = Broker::start(3);
    let out = Scratch::new("one-writer");
    run_producer(
        &broker.bootstrap,
        out.path(),
        &["--count", "30000", "--msgs-per-sec", "0", "--seed", "31"],
    );
    let args = ["--trigger", "500 ms", "--max-offsets-per-trigger", "2000"];
    let spawn = || Processor::spawn(&broker.bootstrap, out.path(), &args, &[]);
    // Started at the same instant: exactly one runs.
    let mut both = vec![spawn(), spawn()];
    let (refused, code, log) = first_to_exit(&mut both, Duration::from_secs(30));
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("is in use by another processor"), "{log}");
    let running = both.remove(1 - refused);
    assert!(
        log.contains(&format!("pid {}", running.child.id())),
        "the refusal names the holder: {log}"
    );
    // Started 0.3 s later, and once the first batches are in: refused too.
    std::thread::sleep(Duration::from_millis(300));
    let late = process_once(&broker.bootstrap, out.path(), &[]);
    assert_eq!(late.status.code(), Some(2));
    assert_eq!(
        wait_for_bronze(out.path(), 30000, Duration::from_secs(120)),
        30000
    );
    running.signal(libc::SIGTERM);
    assert!(running.wait().success());
    assert_each_offset_once(&broker.bootstrap, out.path(), 30000);
}

#[test]
fn a_damaged_or_missing_checkpoint_file_stops_the_run_and_recovering_from_the_named_batch_gives_the_same_output(
) {
    let broker = Broker::start(3);
    let out = Scratch::new("damaged-checkpoint");
    let produce = [
        "--count",
        "6000",
        "--msgs-per-sec",
        "0",
        "--seed",
        "32",
        "--bad-ratio",
        "0.02",
        "--event-time-start",
        "2026-01-01T00:00:00Z",
    ];
    run_producer(&broker.bootstrap, out.path(), &produce);
    let batches = [
        "--max-offsets-per-trigger",
        "1000",
        "--gold-output-mode",
        "update",
    ];
    process_all(&broker.bootstrap, out.path(), &batches);
    let gold = gold_rows(out.path());
    assert!(!gold.is_empty());
    let chk = out.path().join("_chk");
    let last = std::fs::read_dir(chk.join("commits"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    assert!(last >= 5, "six batches or more");

    let state = chk.join("state").join(last.to_string());
    let original = std::fs::read(&state).unwrap();
    let mut flipped = original.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x01;
    flipped[at + 1] ^= 0x80;
    std::fs::write(&state, &flipped).unwrap();
    let run = process_once(&broker.bootstrap, out.path(), &batches);
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{log}");
    assert!(log.contains("checksum does not match"), "{log}");
    let way_out = format!("--recover-from-batch {}", last - 1);
    assert!(log.contains(&way_out), "{log}");

    std::fs::remove_file(&state).unwrap();
    let run = process_once(&broker.bootstrap, out.path(), &batches);
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{log}");
    assert!(
        log.contains("is missing") && log.contains(&way_out),
        "{log}"
    );

    // An end offset edited in the newest plan: refused as well.
    std::fs::write(&state, &original).unwrap();
    let plan = chk.join("offsets").join(last.to_string());
    let sealed = std::fs::read(&plan).unwrap();
    let (envelope, json) = sealed.split_at(8);
    assert_eq!(&envelope[..4], b"PCK1");
    let edited = String::from_utf8(json.to_vec())
        .unwrap()
        .replacen("\"end\":", "\"end\":1", 1);
    std::fs::write(&plan, [envelope, edited.as_bytes()].concat()).unwrap();
    let run = process_once(&broker.bootstrap, out.path(), &batches);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("checksum does not match"));

    // The way out: replay from the intact batch before; the output is as if nothing happened.
    let run = process_once(
        &broker.bootstrap,
        out.path(),
        &[
            &batches[..],
            &["--recover-from-batch", &(last - 1).to_string()],
        ]
        .concat(),
    );
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}");
    assert!(
        log.contains(&format!("recovering from batch {}", last - 1)),
        "{log}"
    );
    assert_each_offset_once(&broker.bootstrap, out.path(), 6000);
    // The replayed batch has the same range as the one set aside: gold's rows are the same.
    let mut after = gold_rows(out.path());
    let mut before = gold;
    after.sort();
    before.sort();
    assert_eq!(after, before);
}

#[test]
fn settings_that_would_silence_or_misdirect_the_processor_are_refused_or_warned_about() {
    let dir = Scratch::new("silencing-settings");
    let out = dir.path().join("out");
    let run = |envs: &[(&str, &str)]| {
        let output = command("processor", dir.path())
            .args([
                "--bootstrap-servers",
                "127.0.0.1:1",
                "--connect-timeout",
                "1 s",
            ])
            .arg("--output-path")
            .arg(&out)
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // A filter naming nothing of ours: a warning, info level, and the error still shows.
    let (code, log) = run(&[("RUST_LOG", "nonsense")]);
    assert_ne!(code, Some(0));
    assert!(
        log.contains("RUST_LOG=\"nonsense\" names no level"),
        "{log}"
    );
    assert!(log.contains("cannot reach Kafka at 127.0.0.1:1"), "{log}");
    for (name, value, expected) in [
        ("KAFKA_TOPIC", "", "KAFKA_TOPIC is empty"),
        ("KAFKA_GROUP_ID", "", "KAFKA_GROUP_ID is empty"),
        (
            "KAFKA_CONNECT_TIMEOUT",
            "0",
            "KAFKA_CONNECT_TIMEOUT must be longer than 0",
        ),
    ] {
        let output = command("processor", dir.path())
            .args(["--bootstrap-servers", "127.0.0.1:1"])
            .arg("--output-path")
            .arg(&out)
            .env(name, value)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}={value:?}: {log}");
        assert!(log.contains(expected), "{name}={value:?}: {log}");
    }
    let producer = command("producer", dir.path())
        .args(["--bootstrap-servers", "127.0.0.1:1"])
        .env("KAFKA_TOPIC", "")
        .output()
        .unwrap();
    assert!(!producer.status.success());
    assert!(String::from_utf8_lossy(&producer.stderr).contains("KAFKA_TOPIC is empty"));
}

#[test]
fn a_batch_mostly_quarantined_warns_with_its_top_reasons() {
    let broker = Broker::start(3);
    let out = Scratch::new("wrong-dataset");
    run_producer(
        &broker.bootstrap,
        out.path(),
        &["--count", "500", "--msgs-per-sec", "0"],
    );
    // The events dataset's processor on the transactions topic.
    let run = process_all(
        &broker.bootstrap,
        out.path(),
        &["--dataset", "events", "--topic", TOPIC],
    );
    let log = String::from_utf8_lossy(&run.stderr);
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("records quarantined"))
        .unwrap_or_else(|| panic!("no warning: {log}"));
    assert!(
        warning.contains("500 of 500 records quarantined"),
        "{warning}"
    );
    assert!(warning.contains("the events dataset"), "{warning}");
}

/// The producer's promise: with `--count`, every message in the topic once and exit 0, through
/// a broker outage mid-run; `kind` is a `PIPELINE_TEST_BROKER` value.
fn producer_survives_an_outage(kind: &str, down: Duration) {
    let mut broker = Broker::start_as(kind, 3);
    let dir = Scratch::new("producer-outage");
    let producer = spawn_producer(
        &broker.bootstrap,
        dir.path(),
        &["--count", "20000", "--msgs-per-sec", "1000", "--seed", "35"],
    );
    std::thread::sleep(Duration::from_secs(5));
    broker.restart_after(down);
    let out = producer.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(summary_field(&out.stderr, "sent"), 20000, "{log}");
    assert_eq!(summary_field(&out.stderr, "failed"), 0, "{log}");
    assert_eq!(summary_field(&out.stderr, "unknown"), 0, "{log}");
    let messages = consume_all(&broker.bootstrap);
    let ids: std::collections::BTreeSet<String> = messages
        .iter()
        .map(|m| {
            txn_core::decode(m.value.as_deref())
                .unwrap()
                .txn_id
                .to_string()
        })
        .collect();
    assert_eq!(messages.len(), 20000, "no message twice");
    assert_eq!(ids.len(), 20000, "every message");
}

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn kafka_the_producer_waits_out_a_25_s_broker_outage_and_delivers_every_message_once() {
    producer_survives_an_outage("kafka", Duration::from_secs(25));
}

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn kafka_zookeeper_mode_the_producer_resends_what_a_broker_and_zookeeper_restart_refused() {
    producer_survives_an_outage("kafka-zk", Duration::from_secs(5));
}

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn kafka_an_unreachable_broker_or_a_missing_topic_is_named_within_10_s_while_the_producer_retries()
{
    let broker = Broker::start_as("kafka", 3);
    let dir = Scratch::new("producer-silence");
    for (bootstrap, topic, expected) in [
        ("127.0.0.1:1", TOPIC, "Kafka does not answer"),
        (
            broker.bootstrap.as_str(),
            "no-such-topic",
            "topic no-such-topic does not exist",
        ),
    ] {
        let started = Instant::now();
        let mut child = command("producer", dir.path())
            .args(["--bootstrap-servers", bootstrap, "--topic", topic])
            .args(["--count", "10", "--msgs-per-sec", "0"])
            .env("PRODUCER_DELIVERY_TIMEOUT", "60 s")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let line = loop {
            match rx.recv_timeout(Duration::from_secs(12)) {
                Ok(l) if l.contains(expected) => break l,
                Ok(_) => {}
                Err(_) => panic!("{expected:?} not said within 12 s"),
            }
        };
        assert!(started.elapsed() < Duration::from_secs(10), "{line}");
        assert!(child.try_wait().unwrap().is_none(), "it keeps trying");
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// SIGTERM (docker compose stop) while the processor waits for Kafka at start ends the wait at
/// once, with the reason, instead of after KAFKA_CONNECT_TIMEOUT.
#[test]
fn a_stop_during_the_wait_for_kafka_at_start_ends_it_at_once() {
    let out = Scratch::new("stop-while-waiting");
    let p = Processor::spawn(
        "127.0.0.1:1",
        out.path(),
        &[],
        &[("KAFKA_CONNECT_TIMEOUT", "60 seconds")],
    );
    assert!(
        p.wait_for("waiting for Kafka at", Duration::from_secs(20))
            .is_some(),
        "the processor waits for the broker"
    );
    let asked = Instant::now();
    p.signal(libc::SIGTERM);
    let stopped = p.wait_for("stopped as asked", Duration::from_secs(10));
    let status = p.wait();
    assert!(stopped.is_some(), "the last line says why it stopped");
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "stopped {:?} after SIGTERM (the broker's request timeout is 5 s)",
        asked.elapsed()
    );
    assert!(!status.success());
}
