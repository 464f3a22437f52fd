//! The producer against the embedded broker: what lands in the topic.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::*;

#[test]
fn count_delivers_exactly_n_valid_records_keyed_by_card_on_murmur2_partitions() {
    let broker = Broker::start(3);
    let dir = Scratch::new("producer-count");
    let out = run_producer(
        &broker.bootstrap,
        dir.path(),
        &["--count", "700", "--msgs-per-sec", "0", "--seed", "11"],
    );
    assert_eq!(summary_field(&out.stderr, "sent"), 700);
    assert_eq!(summary_field(&out.stderr, "failed"), 0);

    let messages = consume_all(&broker.bootstrap);
    assert_eq!(messages.len(), 700, "exactly --count messages");
    let mut ids = BTreeSet::new();
    let mut per_partition = [0usize; 3];
    for m in &messages {
        let txn = txn_core::decode(m.value.as_deref()).expect("a valid record");
        let key = m.key.as_deref().expect("keyed");
        assert_eq!(
            txn.card_id.as_deref().map(str::as_bytes),
            Some(key),
            "key is card_id"
        );
        assert_eq!(
            m.partition,
            murmur2_partition(key, 3),
            "murmur2 partition of {:?}",
            txn.card_id
        );
        assert!(ids.insert(txn.txn_id.to_string()), "no duplicate txn_id");
        per_partition[m.partition as usize] += 1;
    }
    assert!(
        per_partition.iter().all(|&n| n > 0),
        "keys spread over partitions: {per_partition:?}"
    );
}

#[test]
fn the_same_seed_and_clock_reproduce_the_same_records() {
    let args = [
        "--count",
        "300",
        "--msgs-per-sec",
        "0",
        "--seed",
        "42",
        "--event-time-start",
        "2025-11-07T07:30:00Z",
        "--bad-ratio",
        "0.1",
        "--late-ratio",
        "0.1",
    ];
    let dir = Scratch::new("producer-seed");
    let run = || {
        let broker = Broker::start(3);
        run_producer(&broker.bootstrap, dir.path(), &args);
        consume_all(&broker.bootstrap)
    };
    let first = run();
    let second = run();
    assert_eq!(first.len(), 300);
    assert_eq!(
        first, second,
        "same seed, same records on the same partitions"
    );
    let other = {
        let broker = Broker::start(3);
        let mut args = args.to_vec();
        args[5] = "43";
        run_producer(&broker.bootstrap, dir.path(), &args);
        consume_all(&broker.bootstrap)
    };
    assert_ne!(first, other, "another seed, other records");
}

#[test]
fn sigterm_mid_run_flushes_and_loses_nothing_reported_as_sent() {
    let broker = Broker::start(3);
    let dir = Scratch::new("producer-sigterm");
    let child = command("producer", dir.path())
        .args([
            "--bootstrap-servers",
            &broker.bootstrap,
            "--msgs-per-sec",
            "3000",
            "--log-every",
            "500",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "exit 0 after SIGTERM: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = summary_field(&out.stderr, "sent");
    assert!(sent > 1000, "it was running: sent={sent}");
    assert_eq!(summary_field(&out.stderr, "failed"), 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[producer] sent 500 messages"),
        "seed-style progress lines"
    );
    assert!(stderr.contains("[producer] Goodbye"));
    assert_eq!(
        consume_all(&broker.bootstrap).len() as u64,
        sent,
        "every message reported as sent is in the topic"
    );
}

#[test]
fn bad_ratio_and_late_ratio_are_counted_and_land_in_the_topic() {
    let broker = Broker::start(3);
    let dir = Scratch::new("producer-bad");
    let out = run_producer(
        &broker.bootstrap,
        dir.path(),
        &[
            "--count",
            "1000",
            "--msgs-per-sec",
            "0",
            "--seed",
            "3",
            "--bad-ratio",
            "0.2",
            "--late-ratio",
            "0.2",
        ],
    );
    let bad = summary_field(&out.stderr, "bad");
    let late = summary_field(&out.stderr, "late");
    let messages = consume_all(&broker.bootstrap);
    let rejected = messages
        .iter()
        .filter(|m| txn_core::decode(m.value.as_deref()).is_err())
        .count() as u64;
    assert_eq!(
        rejected, bad,
        "every bad message is rejected by the decoder, every other one is valid"
    );
    assert!((150..250).contains(&bad), "{bad}");
    assert!((100..220).contains(&late), "{late}");
}

#[test]
fn bad_producer_settings_give_one_line_and_a_nonzero_exit() {
    let dir = Scratch::new("producer-bad-settings");
    for (args, expected) in [
        (
            &["--bad-ratio", "1.5"][..],
            "--bad-ratio must be between 0 and 1",
        ),
        (
            &["--max-in-flight", "6"][..],
            "--max-in-flight must be between 1 and 5 with idempotence, got 6",
        ),
        (
            &["--max-in-flight", "0", "--idempotence", "false"][..],
            "--max-in-flight must be between 1 and 1000000, got 0",
        ),
    ] {
        let out = command("producer", dir.path()).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
    }
}
