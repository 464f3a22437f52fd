//! Scale-out on Apache Kafka (`scripts/kafka.sh`): processors sharing a `KAFKA_GROUP_ID` share
//! the input topic's partitions through Kafka's group protocol with cooperative rebalancing, and
//! a member whose generation is gone cannot commit offsets in a transaction (the zombie fence of
//! Kafka's exactly-once consume-transform-produce). Ignored in a plain run: `scripts/test.sh`
//! runs them on Apache Kafka.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use processor::engine::source::membership::Membership;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use txn_core::kafka::ClientSettings;

use crate::harness::*;

/// The broker of this run if it is Apache Kafka, else a single KRaft node.
fn kafka(partitions: i32) -> Broker {
    if is_kafka() {
        Broker::start(partitions)
    } else {
        Broker::start_as("kafka", partitions)
    }
}

/// Waits until `done` holds, or panics with `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "{what}: not after {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A transaction that commits offset 0 of `partition` for the group of `metadata`.
fn commit_offsets(
    producer: &BaseProducer,
    partition: i32,
    metadata: &rdkafka::consumer::ConsumerGroupMetadata,
) -> Result<(), KafkaError> {
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(TOPIC, partition, Offset::Offset(0))
        .expect("offset");
    producer.begin_transaction()?;
    let sent = producer
        .send_offsets_to_transaction(&offsets, metadata, Duration::from_secs(30))
        .and_then(|()| producer.commit_transaction(Duration::from_secs(30)));
    if sent.is_err() {
        producer
            .abort_transaction(Duration::from_secs(30))
            .expect("abort");
    }
    sent
}

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn members_share_the_partitions_cooperatively_and_a_stale_generation_cannot_commit() {
    let broker = kafka(6);
    let client = ClientSettings::plain(&broker.bootstrap);
    let all: BTreeSet<i32> = (0..6).collect();
    let group = format!("scale-out-{}", rand_u64());

    let a = Membership::join(&client, TOPIC, &group).expect("join");
    assert!(
        a.wait_for_partitions(Duration::from_secs(60), &|| false),
        "the first member gets partitions"
    );
    wait_until(
        "the first member owns every partition",
        Duration::from_secs(30),
        || a.owned() == all,
    );
    let first = a.changes();
    assert_eq!(first.assigned, all);
    let stale = a
        .group_metadata()
        .expect("a member in the group has its metadata");
    let generation = a.generation();
    assert!(generation >= 0, "joined: generation {generation}");

    let b = Membership::join(&client, TOPIC, &group).expect("join");
    wait_until(
        "two members split the partitions",
        Duration::from_secs(60),
        || {
            let (oa, ob) = (a.owned(), b.owned());
            !oa.is_empty() && !ob.is_empty() && oa.is_disjoint(&ob) && &oa | &ob == all
        },
    );
    let (oa, ob) = (a.owned(), b.owned());
    assert!(oa.len() == 3 && ob.len() == 3, "balanced: {oa:?} {ob:?}");
    // Cooperative: the first member gave up only what moved, and kept the rest throughout (an
    // eager rebalance takes everything away and gives the kept ones back).
    let changes = a.changes();
    assert_eq!(changes.revoked, ob, "{changes:?}");
    assert!(
        changes.assigned.is_empty(),
        "nothing given back: {changes:?}"
    );
    assert!(
        a.generation() > generation,
        "a new generation: {}",
        a.generation()
    );

    // The fence: offsets committed in a transaction with the metadata of the old generation are
    // refused; with the member's metadata of now they are taken.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("transactional.id", format!("fence-{}", rand_u64()))
        .create()
        .expect("producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init transactions");
    let kept = *oa.iter().next().unwrap();
    let refused =
        commit_offsets(&producer, kept, &stale).expect_err("a stale generation is fenced");
    let code = match &refused {
        KafkaError::Transaction(e) => e.code(),
        other => other
            .rdkafka_error_code()
            .unwrap_or(RDKafkaErrorCode::Unknown),
    };
    assert!(
        matches!(
            code,
            RDKafkaErrorCode::IllegalGeneration | RDKafkaErrorCode::UnknownMemberId
        ),
        "refused as a stale generation: {refused}"
    );
    let now = a.group_metadata().expect("metadata");
    commit_offsets(&producer, kept, &now).expect("the current generation commits");

    // A member that leaves hands its partitions over.
    drop(b);
    wait_until(
        "the remaining member gets everything back",
        Duration::from_secs(60),
        || a.owned() == all,
    );
    assert_eq!(a.changes().assigned, ob);
}
