//! What librdkafka's mock hides, proven on Apache Kafka (`scripts/kafka.sh`): a broker restart on
//! the same data, the loss of a partition leader and of the quorum in a 3-node cluster,
//! transactional input (markers, aborted and open transactions), offset gaps after compaction,
//! retention deleting planned offsets, a topic deleted and created again under a checkpoint, and
//! the README's Kafka CLI commands. Each runs on the broker of `PIPELINE_TEST_BROKER` when that is
//! an Apache Kafka one, else on a single KRaft node; they are ignored in a plain run (they need
//! Java and the jars: `scripts/test.sh` runs them with `--run-ignored all`).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::harness::*;

/// The broker of this run if it is Apache Kafka, else a single KRaft node.
fn kafka(partitions: i32) -> Broker {
    if is_kafka() {
        Broker::start(partitions)
    } else {
        Broker::start_as("kafka", partitions)
    }
}

/// Like [`kafka`], with no topic yet.
fn kafka_without_topic() -> Broker {
    let kind = if is_kafka() {
        broker_kind()
    } else {
        "kafka".into()
    };
    Broker::start_empty(&kind, 0)
}

fn no_errors(log: &[String]) {
    assert!(
        !log.iter()
            .any(|l| l.contains("ERROR") || l.contains("panicked")),
        "{log:#?}"
    );
}

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn kafka_broker_killed_and_restarted_mid_run_is_survived_without_loss_or_duplicates() {
    let mut broker = kafka(3);
    let out = Scratch::new("restart");
    let producer = spawn_producer(
        &broker.bootstrap,
        out.path(),
        &[
            "--msgs-per-sec",
            "400",
            "--count",
            "8000",
            "--seed",
            "31",
            "--bad-ratio",
            "0.02",
        ],
    );
    let processor = Processor::spawn(&broker.bootstrap, out.path(), &["--trigger", "500 ms"], &[]);
    assert!(
        processor
            .wait_for("batch 1:", Duration::from_secs(60))
            .is_some(),
        "batches before the restart"
    );

    // kill -9 every node (and ZooKeeper), 10 s down, then the same data and ports again.
    broker.restart_after(Duration::from_secs(10));

    let produced = producer.wait_with_output().unwrap();
    assert!(
        produced.status.success(),
        "producer: {}",
        String::from_utf8_lossy(&produced.stderr)
    );
    assert_eq!(summary_field(&produced.stderr, "sent"), 8000);
    assert_eq!(summary_field(&produced.stderr, "failed"), 0);
    assert_eq!(
        wait_for_bronze(out.path(), 8000, Duration::from_secs(120)),
        8000
    );
    processor.signal(libc::SIGTERM);
    let log: Vec<String> = processor.lines.try_iter().collect();
    assert!(processor.wait().success(), "exit 0");

    assert_each_offset_once(&broker.bootstrap, out.path(), 8000);
    no_errors(&log);
}

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn kafka_cluster_leader_loss_and_lost_quorum_stall_but_lose_and_duplicate_nothing() {
    let broker = Broker::start_as("kafka-cluster", 3);
    let out = Scratch::new("cluster");
    let producer = spawn_producer(
        &broker.bootstrap,
        out.path(),
        &[
            "--msgs-per-sec",
            "300",
            "--count",
            "22500",
            "--seed",
            "41",
            "--bad-ratio",
            "0.02",
        ],
    );
    let processor = Processor::spawn(&broker.bootstrap, out.path(), &["--trigger", "500 ms"], &[]);
    assert!(
        processor
            .wait_for("batch 1:", Duration::from_secs(60))
            .is_some(),
        "batches before the leader is lost"
    );

    // The leader of partition 0 dies: another replica in sync takes over.
    let leader = broker.leader(TOPIC, 0);
    broker.kill_node(&leader);
    std::thread::sleep(Duration::from_secs(12));
    let before = rows(&read_layer(out.path(), "bronze"));
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        rows(&read_layer(out.path(), "bronze")) > before,
        "the processor goes on without node {leader}"
    );
    broker.restart_node(&leader);

    // Two of three down: no quorum, no in-sync pair (min.insync.replicas=2). Everything stalls.
    let others: Vec<String> = ["1", "2", "3"]
        .iter()
        .filter(|n| **n != leader)
        .map(|n| n.to_string())
        .collect();
    broker.kill_node(&others[0]);
    broker.kill_node(&leader);
    // What was acknowledged before is read; after that nothing moves.
    std::thread::sleep(Duration::from_secs(10));
    let stalled = rows(&read_layer(out.path(), "bronze"));
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        rows(&read_layer(out.path(), "bronze")),
        stalled,
        "nothing is written while two of three nodes are down"
    );
    // One node back: a quorum and an in-sync pair again, so both resume before the third returns.
    broker.restart_node(&others[0]);
    let deadline = Instant::now() + Duration::from_secs(90);
    while rows(&read_layer(out.path(), "bronze")) == stalled {
        assert!(
            Instant::now() < deadline,
            "the pipeline resumes when one of the two nodes returns"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    broker.restart_node(&leader);

    let produced = producer.wait_with_output().unwrap();
    let producer_log = String::from_utf8_lossy(&produced.stderr).into_owned();
    assert!(produced.status.success(), "producer: {producer_log}");
    assert_eq!(summary_field(&produced.stderr, "sent"), 22500);
    assert_eq!(summary_field(&produced.stderr, "failed"), 0);
    let in_bronze = wait_for_bronze(out.path(), 22500, Duration::from_secs(120));
    let mut log: Vec<String> = processor.lines.try_iter().collect();
    assert_eq!(
        in_bronze,
        22500,
        "processor log: {:#?}",
        &log[log.len().saturating_sub(40)..]
    );
    processor.signal(libc::SIGTERM);
    log.extend(processor.lines.try_iter());
    assert!(processor.wait().success(), "exit 0");
    assert_each_offset_once(&broker.bootstrap, out.path(), 22500);

    // Both said what was wrong while the quorum was gone, a few times, not on every retry.
    let producer_warnings: Vec<&str> = producer_log
        .lines()
        .filter(|l| l.contains("WARN"))
        .collect();
    assert!(
        producer_warnings
            .iter()
            .any(|l| l.contains("no acknowledgement")),
        "the producer warned of the stall: {producer_log}"
    );
    assert!(
        producer_warnings.len() <= 10,
        "no flood: {producer_warnings:#?}"
    );
    let warnings: Vec<&String> = log.iter().filter(|l| l.contains("WARN")).collect();
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("no data from Kafka")
                || l.contains("cannot read the topic's offsets")),
        "the processor warned of the stall: {log:#?}"
    );
    assert!(warnings.len() <= 12, "no flood: {warnings:#?}");
    no_errors(&log);
}

/// Valid seed-shaped records (key, payload), made by the producer into a side topic.
fn records(broker: &Broker, cwd: &Path, count: usize, seed: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let topic = format!("records-{seed}");
    broker.create_topic(&topic, 1, &[]);
    run_producer(
        &broker.bootstrap,
        cwd,
        &[
            "--msgs-per-sec",
            "0",
            "--topic",
            &topic,
            "--count",
            &count.to_string(),
            "--seed",
            seed,
        ],
    );
    consume_topic(&broker.bootstrap, &topic)
        .into_iter()
        .map(|m| (m.key.unwrap(), m.value.unwrap()))
        .collect()
}

fn send_all(producer: &BaseProducer, records: &[(Vec<u8>, Vec<u8>)]) {
    for (k, v) in records {
        producer
            .send(BaseRecord::to(TOPIC).key(k).payload(v))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn silver_ids(out: &Path) -> BTreeSet<String> {
    strings(&read_layer(out, "silver"), "txn_id")
        .into_iter()
        .flatten()
        .collect()
}

fn ids(records: &[(Vec<u8>, Vec<u8>)]) -> BTreeSet<String> {
    records
        .iter()
        .filter_map(|(_, v)| txn_id(Some(v)))
        .collect()
}

/// The txn_id of a valid transaction.
fn txn_id(payload: Option<&[u8]>) -> Option<String> {
    txn_core::decode(payload).ok().map(|t| t.txn_id.to_string())
}

/// Offsets the checkpoint's commits count as lost.
fn lost_offsets(out: &Path) -> u64 {
    commit_files(out)
        .iter()
        .map(|p| checkpoint_json(p)["lost_offsets"].as_u64().unwrap())
        .sum()
}

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn kafka_aborted_and_open_transactions_never_reach_a_layer_and_never_hang_the_processor() {
    let broker = kafka(3);
    let out = Scratch::new("txn-input");
    let all = records(&broker, out.path(), 1000, "51");
    let (committed, rest) = all.split_at(300);
    let (aborted, rest) = rest.split_at(300);
    let (open, plain) = rest.split_at(300);

    let txn: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("transactional.id", "it-input-writer")
        .set("transaction.timeout.ms", "120000")
        .create()
        .unwrap();
    let t = Duration::from_secs(30);
    txn.init_transactions(t).unwrap();
    txn.begin_transaction().unwrap();
    send_all(&txn, committed);
    txn.commit_transaction(t).unwrap();
    txn.begin_transaction().unwrap();
    send_all(&txn, aborted);
    txn.abort_transaction(t).unwrap();
    // Left open: the last stable offset stays at its first record until it commits.
    txn.begin_transaction().unwrap();
    send_all(&txn, open);
    // Records written after the open transaction wait behind it for a read_committed reader.
    let plain_producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    send_all(&plain_producer, plain);

    // The first run, available-now, ends at the last stable offset instead of waiting.
    let started = Instant::now();
    process_all(&broker.bootstrap, out.path(), &[]);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "available-now did not wait for the open transaction"
    );
    assert_eq!(
        silver_ids(out.path()),
        ids(committed),
        "only the committed transaction, and none of the aborted one"
    );

    // A running processor picks up the rest once the transaction commits.
    let processor = Processor::spawn(&broker.bootstrap, out.path(), &["--trigger", "300 ms"], &[]);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        rows(&read_layer(out.path(), "bronze")),
        300,
        "nothing past the open transaction"
    );
    txn.commit_transaction(t).unwrap();
    assert_eq!(
        wait_for_bronze(out.path(), 700, Duration::from_secs(60)),
        700
    );
    std::thread::sleep(Duration::from_secs(2));
    processor.signal(libc::SIGTERM);
    let log: Vec<String> = processor.lines.try_iter().collect();
    assert!(processor.wait().success(), "exit 0");
    no_errors(&log);

    assert_each_offset_once(&broker.bootstrap, out.path(), 700);
    let expected: BTreeSet<String> = ids(committed)
        .into_iter()
        .chain(ids(open))
        .chain(ids(plain))
        .collect();
    assert_eq!(silver_ids(out.path()), expected);
    assert!(silver_ids(out.path()).is_disjoint(&ids(aborted)));
    // Bronze (every message as it came) and the raw CSV (first column txn_id) hold the same.
    let bronze: BTreeSet<String> = strings(&read_layer(out.path(), "bronze"), "value")
        .into_iter()
        .filter_map(|v| txn_id(v.as_deref().map(str::as_bytes)))
        .collect();
    assert_eq!(bronze, expected, "bronze: only committed records");
    let csv: BTreeSet<String> = layer_files(out.path(), "raw_csv")
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.lines()
                .skip(1)
                .map(|l| l.split(',').next().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(csv, expected, "raw_csv: only committed records");
    let lost = lost_offsets(out.path());
    assert_eq!(lost, 0, "markers and aborted records are not data loss");
}

/// Per-partition (low, high) offsets of the transactions topic.
fn watermarks(bootstrap: &str) -> Vec<(i64, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    (0..3)
        .map(|p| {
            consumer
                .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
                .unwrap()
        })
        .collect()
}

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn kafka_a_compacted_topic_with_offset_gaps_is_read_without_a_data_loss_alarm() {
    let broker = kafka_without_topic();
    // Short segments, cleaned as soon as possible: most records of a card are compacted away.
    broker.create_topic(
        TOPIC,
        3,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "200"),
            ("min.cleanable.dirty.ratio", "0.001"),
            ("min.compaction.lag.ms", "0"),
            ("delete.retention.ms", "100"),
        ],
    );
    let out = Scratch::new("compacted");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut round = 0;
    // Keep writing (a segment only rolls on a write) until the cleaner has made gaps.
    let remaining = loop {
        round += 1;
        run_producer(
            &broker.bootstrap,
            out.path(),
            &[
                "--msgs-per-sec",
                "0",
                "--count",
                "1000",
                "--seed",
                &round.to_string(),
            ],
        );
        std::thread::sleep(Duration::from_secs(2));
        let left = consume_all(&broker.bootstrap).len();
        if left < round * 1000 / 2 {
            break left;
        }
        assert!(Instant::now() < deadline, "the topic was not compacted");
    };
    let topic = consume_all(&broker.bootstrap);
    let span: i64 = watermarks(&broker.bootstrap)
        .iter()
        .map(|(low, high)| high - low)
        .sum();
    assert!(
        span > remaining as i64,
        "offsets have gaps: {remaining} records over {span} offsets"
    );

    // FAIL_ON_DATA_LOSS=true (the default): gaps are not loss.
    let run = process_all(&broker.bootstrap, out.path(), &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!stderr.contains("data loss"), "{stderr}");
    assert_each_offset_once(&broker.bootstrap, out.path(), topic.len());
}

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn kafka_offsets_deleted_by_retention_before_they_are_read_follow_fail_on_data_loss() {
    let broker = kafka_without_topic();
    broker.create_topic(TOPIC, 3, &[("segment.ms", "300")]);
    let out = Scratch::new("retention");
    run_producer(
        &broker.bootstrap,
        out.path(),
        &["--msgs-per-sec", "0", "--count", "600", "--seed", "61"],
    );
    process_all(&broker.bootstrap, out.path(), &[]);
    assert_eq!(rows(&read_layer(out.path(), "bronze")), 600);
    let processed: Vec<i64> = watermarks(&broker.bootstrap).iter().map(|w| w.1).collect();

    // More records, then retention deletes everything but the newest segments.
    broker.alter_topic(TOPIC, &[("segment.ms", "300"), ("retention.ms", "1500")]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut round = 0;
    loop {
        round += 1;
        run_producer(
            &broker.bootstrap,
            out.path(),
            &[
                "--msgs-per-sec",
                "0",
                "--count",
                "300",
                "--seed",
                &(100 + round).to_string(),
            ],
        );
        std::thread::sleep(Duration::from_millis(1500));
        let w = watermarks(&broker.bootstrap);
        if round >= 3 && w.iter().zip(&processed).all(|((low, _), done)| low > done) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention deleted nothing: {w:?}"
        );
    }
    let w = watermarks(&broker.bootstrap);
    let deleted: i64 = w
        .iter()
        .zip(&processed)
        .map(|((low, _), done)| low - done)
        .sum();

    // FAIL_ON_DATA_LOSS=true: a clear error, nothing written.
    let failed = process_unchecked(&broker.bootstrap, out.path(), &[]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{stderr}");
    assert!(
        stderr.contains("were deleted before they were processed")
            && stderr.contains("FAIL_ON_DATA_LOSS=false"),
        "{stderr}"
    );
    assert_eq!(rows(&read_layer(out.path(), "bronze")), 600);

    // FAIL_ON_DATA_LOSS=false: the loss is logged and counted, the rest is processed.
    let run = process_all(
        &broker.bootstrap,
        out.path(),
        &["--fail-on-data-loss", "false"],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("data loss: partition"), "{stderr}");
    let lost = lost_offsets(out.path()) as i64;
    // Every offset of the topic is either in bronze or counted as lost in the checkpoint.
    let offsets: i64 = watermarks(&broker.bootstrap).iter().map(|w| w.1).sum();
    assert_eq!(
        rows(&read_layer(out.path(), "bronze")) as i64 + lost,
        offsets,
        "{stderr}"
    );
    assert!(
        lost >= deleted,
        "counted {lost}, deleted at least {deleted}: {stderr}"
    );
}

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn kafka_a_topic_deleted_and_created_again_under_a_checkpoint_is_reported() {
    let broker = kafka(3);
    let out = Scratch::new("recreated");
    run_producer(
        &broker.bootstrap,
        out.path(),
        &["--msgs-per-sec", "0", "--count", "300", "--seed", "71"],
    );
    process_all(&broker.bootstrap, out.path(), &[]);
    assert_eq!(rows(&read_layer(out.path(), "bronze")), 300);

    broker.delete_topic(TOPIC);
    // Deletion is asynchronous: creation fails until the old topic is gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = std::panic::catch_unwind(|| broker.create_topic(TOPIC, 3, &[]));
        if attempt.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the topic could not be created again"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // More records than before, so the old offsets all exist in the new topic.
    run_producer(
        &broker.bootstrap,
        out.path(),
        &["--msgs-per-sec", "0", "--count", "900", "--seed", "72"],
    );

    let failed = process_unchecked(&broker.bootstrap, out.path(), &[]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{stderr}");
    assert!(
        stderr.contains("was deleted and created again") && stderr.contains("topic id"),
        "{stderr}"
    );
    assert_eq!(
        rows(&read_layer(out.path(), "bronze")),
        300,
        "nothing written"
    );

    // FAIL_ON_DATA_LOSS=false: the new topic is read from its beginning, every record of it.
    let run = process_all(
        &broker.bootstrap,
        out.path(),
        &["--fail-on-data-loss", "false"],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("reading the new topic from its earliest offsets"),
        "{stderr}"
    );
    let new_ids: BTreeSet<String> = consume_all(&broker.bootstrap)
        .iter()
        .filter_map(|m| txn_id(m.value.as_deref()))
        .collect();
    assert_eq!(new_ids.len(), 900);
    let silver = silver_ids(out.path());
    assert_eq!(silver.len(), 1200);
    assert!(new_ids.is_subset(&silver));
}

/// Deletes the topic and creates it again (deletion is asynchronous: creation fails until the
/// old topic is gone).
fn recreate_topic(broker: &Broker) {
    broker.delete_topic(TOPIC);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::panic::catch_unwind(|| broker.create_topic(TOPIC, 3, &[])).is_err() {
        assert!(
            Instant::now() < deadline,
            "the topic could not be created again"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn kafka_a_topic_created_again_while_the_processor_runs_is_caught_at_the_next_plan() {
    let broker = kafka(3);
    for fail_on_data_loss in ["true", "false"] {
        let out = Scratch::new("recreated-live");
        run_producer(
            &broker.bootstrap,
            out.path(),
            &["--msgs-per-sec", "0", "--count", "3000", "--seed", "73"],
        );
        let processor = Processor::spawn(
            &broker.bootstrap,
            out.path(),
            &[
                "--trigger",
                "2 seconds",
                "--fail-on-data-loss",
                fail_on_data_loss,
            ],
            &[],
        );
        assert_eq!(
            wait_for_bronze(out.path(), 3000, Duration::from_secs(60)),
            3000
        );
        // The new topic grows past the old positions before the next plan.
        recreate_topic(&broker);
        run_producer(
            &broker.bootstrap,
            out.path(),
            &["--msgs-per-sec", "0", "--count", "6000", "--seed", "74"],
        );
        if fail_on_data_loss == "true" {
            let line = processor.wait_for("ERROR", Duration::from_secs(30));
            let line = line.expect("the processor stops");
            assert!(line.contains("deleted and created again"), "{line}");
            assert!(!processor.wait().success());
            assert_eq!(
                rows(&read_layer(out.path(), "bronze")),
                3000,
                "nothing read from old positions"
            );
        } else {
            let line = processor
                .wait_for("reading the new topic", Duration::from_secs(30))
                .expect("the warning");
            assert!(
                line.contains("0 offsets of the old topic were never processed"),
                "{line}"
            );
            assert_eq!(
                wait_for_bronze(out.path(), 9000, Duration::from_secs(60)),
                9000
            );
            processor.signal(libc::SIGTERM);
            assert!(processor.wait().success());
            let new_ids: BTreeSet<String> = consume_all(&broker.bootstrap)
                .iter()
                .filter_map(|m| txn_id(m.value.as_deref()))
                .collect();
            assert_eq!(new_ids.len(), 6000);
            let silver = silver_ids(out.path());
            assert_eq!(silver.len(), 9000, "each record of both topics once");
            assert!(new_ids.is_subset(&silver));
            let lost = lost_offsets(out.path());
            assert_eq!(lost, 0, "what was processed is not counted as lost");
        }
        recreate_topic(&broker);
    }
}

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn kafka_readme_cli_commands_show_lag_zero_and_the_messages() {
    let broker = kafka(3);
    let out = Scratch::new("cli");
    run_producer(
        &broker.bootstrap,
        out.path(),
        &["--msgs-per-sec", "0", "--count", "500", "--seed", "81"],
    );
    let run = process_all(&broker.bootstrap, out.path(), &[]);
    let log = String::from_utf8_lossy(&run.stderr).into_owned();

    // The README's commands, as written there, with this broker's address.
    let groups = kafka_sh(&[
        "kafka-consumer-groups",
        "--bootstrap-server",
        &broker.bootstrap,
        "--describe",
        "--group",
        "transactions-processor",
    ]);
    let rows_of_topic: Vec<&str> = groups
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(TOPIC))
        .collect();
    assert_eq!(
        rows_of_topic.len(),
        3,
        "one row per partition: {groups}\nthe processor's log:\n{log}"
    );
    for row in rows_of_topic {
        // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[3], cols[4], "caught up: {row}");
        assert_eq!(cols[5], "0", "lag 0: {row}");
    }

    let messages = kafka_sh(&[
        "kafka-console-consumer",
        "--bootstrap-server",
        &broker.bootstrap,
        "--topic",
        TOPIC,
        "--from-beginning",
        "--max-messages",
        "5",
    ]);
    let lines: Vec<&str> = messages.lines().collect();
    assert_eq!(lines.len(), 5, "{messages}");
    for l in lines {
        assert!(txn_core::decode(Some(l.as_bytes())).is_ok(), "{l}");
    }
}

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn kafka_a_topic_output_is_exactly_once_for_read_committed_across_sigkills_at_random_moments() {
    const GOLD_TOPIC: &str = "gold-updates";
    let broker = kafka(3);
    broker.create_topic(GOLD_TOPIC, 3, &[]);
    let out = Scratch::new("gold-topic");
    let mut producer = spawn_producer(
        &broker.bootstrap,
        out.path(),
        &[
            "--msgs-per-sec",
            "1000",
            "--count",
            "15000",
            "--seed",
            "23",
            "--bad-ratio",
            "0.02",
            "--event-time-start",
            "2025-11-07T07:30:00Z",
        ],
    );
    // Update mode: every batch sends the windows it changed, so nearly every batch has records.
    let args = [
        "--trigger",
        "0",
        "--max-offsets-per-trigger",
        "500",
        "--gold-window",
        "1 second",
        "--gold-watermark-delay",
        "2 seconds",
        "--gold-output-mode",
        "update",
        "--gold-topic",
        GOLD_TOPIC,
    ];
    // Every third run is killed after its Kafka transaction committed and before its checkpoint
    // commit: the next run must not send that batch again.
    let kills = 12;
    let plan = Kills::runs(kills)
        .pause_every(3, "400 ms")
        .after_connecting(300, 1500);
    let (kills_after_kafka_commit, _) =
        kill_repeatedly(&broker.bootstrap, out.path(), &args, &[], plan);
    assert!(producer.wait().unwrap().success());
    assert!(
        kills_after_kafka_commit >= 3,
        "kills between the Kafka commit and the checkpoint commit: {kills_after_kafka_commit}"
    );
    // The last run, undisturbed, with the same settings (available-now: process_all's trigger).
    let last = process_all(&broker.bootstrap, out.path(), &args[2..]);
    assert!(last.status.success());
    assert_each_offset_once(&broker.bootstrap, out.path(), 15000);

    // The topic holds exactly the rows of the gold files (themselves exactly once): each once.
    let files = gold_rows(out.path());
    assert!(files.len() > 500, "gold rows: {}", files.len());
    let micros =
        |v: &serde_json::Value| txn_core::time::parse_rfc3339_micros(v.as_str().unwrap()).unwrap();
    let bits = |v: &serde_json::Value| v.as_f64().map(f64::to_bits);
    let mut topic: Vec<GoldRow> = consume_topic(&broker.bootstrap, GOLD_TOPIC)
        .iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_slice(m.value.as_deref().unwrap()).unwrap();
            let card = v["card_id"].as_str().unwrap_or_default().to_string();
            assert_eq!(m.key.as_deref(), Some(card.as_bytes()), "keyed by card");
            (
                card,
                micros(&v["window_start"]),
                micros(&v["window_end"]),
                v["txn_count"].as_i64().unwrap(),
                bits(&v["sum_amount"]),
                bits(&v["avg_amount"]),
                bits(&v["max_amount"]),
            )
        })
        .collect();
    topic.sort();
    assert_eq!(
        topic.len(),
        files.len(),
        "as many messages as gold rows after {kills} SIGKILLs"
    );
    // serde_json reads a float back to within an ulp of what was written (exact round trips
    // need its float_roundtrip feature), so the figures are compared to 1e-12.
    let close = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => {
            let (a, b) = (f64::from_bits(a), f64::from_bits(b));
            (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
        }
        (a, b) => a == b,
    };
    for (t, f) in topic.iter().zip(&files) {
        assert_eq!(
            (&t.0, t.1, t.2, t.3),
            (&f.0, f.1, f.2, f.3),
            "the same windows"
        );
        assert!(
            close(t.4, f.4) && close(t.5, f.5) && close(t.6, f.6),
            "the same figures: {t:?} / {f:?}"
        );
    }
}
