//! `pipeline` with no argument: broker, producer and processor in one process.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

#[test]
fn the_local_stack_prints_its_address_and_ctrl_c_leaves_every_sent_message_in_bronze() {
    let dir = Scratch::new("local-stack");
    let out = dir.path().join("data/output/parquet");
    let mut child = Command::new(exe())
        .current_dir(dir.path())
        .env("MSGS_PER_SEC", "400")
        .env("TRIGGER_INTERVAL", "1 minute")
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env_remove("OUTPUT_PATH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("bootstrap=127.0.0.1:"), "{line}");
    std::thread::sleep(Duration::from_secs(2));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit 0 on Ctrl-C: {log}");
    assert!(log.contains("[producer] sent 50 messages"), "{log}");
    assert!(log.contains("[processor] draining"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("[pipeline] producer: sent="))
        .expect("summary");
    let sent: usize = line
        .split("sent=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent > 300, "{sent}");
    // With a one-minute trigger only the first batch ran before Ctrl-C: the rest is the drain.
    assert_eq!(
        rows(&read_layer(&out, "bronze")),
        sent,
        "every message sent is in bronze"
    );
    assert_eq!(rows(&read_layer(&out, "silver")), sent);
}

/// Runs the local stack for `seconds` at `rate` msg/s with a 2-second trigger (and `envs`), then
/// Ctrl-C: every message sent is in bronze once, nothing was lost, and the backlog stayed within
/// what the embedded broker holds.
fn the_local_stack_keeps_up_at(rate: &str, seconds: u64, envs: &[(&str, &str)]) {
    use std::collections::BTreeSet;
    let dir = Scratch::new("local-stack-fast");
    let out = dir.path().join("data/output/parquet");
    let mut child = Command::new(exe())
        .current_dir(dir.path())
        .env("PRODUCER_MSGS_PER_SEC", rate)
        .env("TRIGGER_INTERVAL", "2 seconds")
        .env("MAX_OFFSETS_PER_TRIGGER", "5000")
        .env("FAIL_ON_DATA_LOSS", "false")
        .envs(envs.iter().copied())
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env_remove("OUTPUT_PATH")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    std::thread::sleep(Duration::from_secs(seconds));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    let log = lines.join().unwrap();
    let text = log.join("\n");
    assert!(status.success(), "exit 0 on Ctrl-C: {text}");
    assert!(
        !text.contains("data loss"),
        "nothing deleted before it was read: {text}"
    );
    let sent: usize = log
        .iter()
        .find_map(|l| l.split("[pipeline] producer: sent=").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("summary");
    let batches = log
        .iter()
        .filter(|l| l.contains("[processor] batch "))
        .count();
    assert!(
        sent as f64 > seconds as f64 * 1000.0,
        "{sent} messages in {seconds} s: the producer was held back for good"
    );
    assert!(
        batches as u64 >= seconds / 10,
        "batches keep coming: {batches}"
    );
    // The lag stays below what the embedded broker holds: the producer waits before it.
    for line in log
        .iter()
        .filter(|l| l.contains("messages behind (the embedded broker keeps about"))
    {
        let number = |after: &str| -> u64 {
            line.split(after)
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let (behind, room) = (number("the processor is "), number("keeps about "));
        assert!(behind < room, "{line}");
    }
    let bronze = read_layer(&out, "bronze");
    let offsets: BTreeSet<(i64, i64)> = i64s(&bronze, "partition")
        .into_iter()
        .zip(i64s(&bronze, "offset"))
        .collect();
    assert_eq!(
        rows(&bronze),
        sent,
        "every message sent is in bronze: {}",
        log.iter()
            .rev()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(offsets.len(), sent, "each once");
}

#[test]
fn the_local_stack_at_20000_msg_s_processes_every_message_once() {
    the_local_stack_keeps_up_at("20000", 60, &[]);
}

#[test]
fn the_local_stack_at_20000_msg_s_with_fraud_detection_processes_every_message_once() {
    the_local_stack_keeps_up_at(
        "20000",
        60,
        &[
            ("FRAUD_DETECTION", "true"),
            ("PRODUCER_PROFILE", "realistic"),
        ],
    );
}
