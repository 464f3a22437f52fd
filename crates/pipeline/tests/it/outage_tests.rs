//! Broker outages and request errors (librdkafka's mock fault API) stall the pipeline, never
//! lose or duplicate data, and it resumes by itself.

use std::time::Duration;

use crate::harness::*;

#[test]
fn an_outage_and_request_errors_stall_the_pipeline_but_lose_and_duplicate_nothing() {
    let mut broker = ControlledBroker::start(3);
    let out = Scratch::new("outage");
    // One Produce request in flight: the mock checks the sequence numbers of transactional
    // producers only. When request N fails with an injected error while N+1 is in flight, Kafka
    // rejects N+1 as out of order and the producer resends both; the mock appends N+1, and
    // librdkafka, seeing a later batch persisted, takes N's messages as persisted too (an
    // implicit acknowledgement, with no offset) — they were not. Measured (an error on one
    // Produce request every 50 ms, 12,000 messages at 3,000/s): 7 of 14 runs lost 3–8 messages
    // acknowledged that way; 0 of 13 with one request in flight. CI saw it here as 11,998 of
    // 12,000 under the whole suite's load.
    let producer = spawn_producer(
        &broker.bootstrap,
        out.path(),
        &[
            "--max-in-flight",
            "1",
            "--msgs-per-sec",
            "1000",
            "--count",
            "12000",
            "--seed",
            "21",
            "--bad-ratio",
            "0.02",
        ],
    );
    let processor = Processor::spawn(&broker.bootstrap, out.path(), &["--trigger", "300 ms"], &[]);
    assert!(
        processor
            .wait_for("batch 1:", Duration::from_secs(30))
            .is_some(),
        "batches before the outage"
    );

    broker.inject("down");
    std::thread::sleep(Duration::from_secs(8));
    broker.inject("up");
    std::thread::sleep(Duration::from_secs(1));
    broker.inject("errors produce 20");
    broker.inject("errors fetch 20");
    broker.inject("errors offset_commit 20");
    broker.inject("rtt 500");
    std::thread::sleep(Duration::from_secs(3));
    broker.inject("clear");

    let produced = producer.wait_with_output().unwrap();
    assert!(
        produced.status.success(),
        "producer: {}",
        String::from_utf8_lossy(&produced.stderr)
    );
    assert_eq!(
        summary_field(&produced.stderr, "failed"),
        0,
        "the producer retried through the outage"
    );
    assert_eq!(summary_field(&produced.stderr, "sent"), 12000);

    // The processor catches up by itself.
    wait_for_bronze(out.path(), 12000, Duration::from_secs(90));
    processor.signal(libc::SIGTERM);
    let log: Vec<String> = processor.lines.try_iter().collect();
    assert!(processor.wait().success(), "exit 0");

    assert_each_offset_once(&broker.bootstrap, out.path(), 12000);

    // It said what was wrong, once in a while, not on every retry.
    let warnings: Vec<&String> = log.iter().filter(|l| l.contains("WARN")).collect();
    assert!(!warnings.is_empty(), "the outage was reported: {log:?}");
    assert!(warnings.len() <= 12, "no flood of warnings: {warnings:#?}");
    assert!(
        !log.iter()
            .any(|l| l.contains("ERROR") || l.contains("panicked")),
        "{log:#?}"
    );
}
