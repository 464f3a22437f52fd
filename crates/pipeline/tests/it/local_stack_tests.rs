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
