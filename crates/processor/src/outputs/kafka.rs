//! Kafka topic outputs, exactly once: Kafka Streams' consume-transform-produce.
//!
//! Every batch's records, for every topic output of the dataset, are produced in one Kafka
//! transaction that also commits the batch's input offsets to the processor's consumer group
//! (`send_offsets_to_transaction`). A `read_committed` consumer sees all of a batch's records or
//! none. The transaction is the batch's Kafka commit, made after its files are in place and before
//! its checkpoint commit; a SIGKILL can fall between the two. At start:
//!
//! 1. `init_transactions` with the processor's fixed `transactional.id` fences the killed run's
//!    producer and aborts its open transaction (a batch killed before its Kafka commit leaves
//!    nothing visible);
//! 2. a batch planned but not committed in the checkpoint is re-run; if the group's committed
//!    offsets (read with RequireStable) are its ends and carry its checkpoint id and batch number
//!    as metadata, its transaction committed before the kill: the re-run produces nothing.
//!    Otherwise it is produced again, in a new transaction. (Offsets that anything else
//!    committed to the group never match. Kafka expires a group's offsets after
//!    `offsets.retention.minutes`, 7 days by default: a processor killed at that moment and
//!    down longer would send that one batch again.)
//!
//! The group's offsets are then only ever committed by these transactions.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tracing::info;

use crate::engine::checkpoint::BatchPlan;
use crate::error::{Error, KafkaContext, Result};

/// One record of a topic output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// How long a transaction step may take before the batch fails (and is re-run at the next start).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// The transactional producer of a processor's topic outputs.
pub struct KafkaTransactions {
    producer: BaseProducer,
    group: ConsumerGroupMetadata,
    input_topic: String,
    /// The checkpoint's id: with the batch, the metadata of the offsets a transaction commits.
    checkpoint_id: String,
}

/// The metadata of the group offsets that batch `batch` of checkpoint `checkpoint_id` commits.
pub fn offsets_metadata(checkpoint_id: &str, batch: u64) -> String {
    format!("checkpoint {checkpoint_id} batch {batch}")
}

impl KafkaTransactions {
    /// Creates the producer and fences any earlier producer of `transactional_id` (its open
    /// transaction is aborted).
    pub fn open(
        bootstrap: &str,
        transactional_id: &str,
        input_topic: &str,
        group: ConsumerGroupMetadata,
        checkpoint_id: String,
    ) -> Result<Self> {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("client.id", "processor-outputs")
            .set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", "120000")
            // Keyed records land where Java clients (and the seeds) would put them.
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .create()
            .kafka_context(|| "cannot create the Kafka output producer".into())?;
        producer.init_transactions(STEP_TIMEOUT).kafka_context(|| {
            format!("cannot start Kafka transactions (transactional.id {transactional_id})")
        })?;
        info!("[processor] Kafka outputs are transactional (transactional.id {transactional_id})");
        Ok(KafkaTransactions {
            producer,
            group,
            input_topic: input_topic.into(),
            checkpoint_id,
        })
    }

    /// Produces a batch's records and commits its input offsets, in one transaction.
    pub fn commit(&self, plan: &BatchPlan, records: &[TopicRecord]) -> Result<()> {
        let context =
            |what: &str| format!("batch {}: cannot {what} its Kafka transaction", plan.batch);
        self.producer
            .begin_transaction()
            .kafka_context(|| context("begin"))?;
        let result = self.produce_and_commit(plan, records);
        if result.is_err() {
            // Leaves nothing visible and no transaction open for read_committed readers to wait
            // on; the batch is re-run at the next start. (After a fatal error the abort fails
            // too, and the next start's fencing ends the transaction.)
            let _ = self.producer.abort_transaction(STEP_TIMEOUT);
        }
        result
    }

    fn produce_and_commit(&self, plan: &BatchPlan, records: &[TopicRecord]) -> Result<()> {
        for r in records {
            let mut record = BaseRecord::to(&r.topic).payload(&r.value);
            if let Some(key) = &r.key {
                record = record.key(key);
            }
            let mut pending = record;
            loop {
                match self.producer.send(pending) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: serve deliveries, then try again.
                        self.producer.poll(Duration::from_millis(50));
                        pending = back;
                    }
                    Err((e, _)) => {
                        return Err(Error::Kafka {
                            context: format!(
                                "batch {}: cannot produce to topic {}",
                                plan.batch, r.topic
                            ),
                            source: e,
                        })
                    }
                }
            }
        }
        let mut offsets = TopicPartitionList::new();
        let metadata = offsets_metadata(&self.checkpoint_id, plan.batch);
        for range in &plan.ranges {
            let mut entry = offsets.add_partition(&self.input_topic, range.partition);
            entry
                .set_offset(Offset::Offset(range.end))
                .kafka_context(|| format!("batch {}: bad offset", plan.batch))?;
            entry.set_metadata(metadata.as_str());
        }
        self.producer
            .send_offsets_to_transaction(&offsets, &self.group, STEP_TIMEOUT)
            .kafka_context(|| {
                format!(
                    "batch {}: cannot add its input offsets to its Kafka transaction",
                    plan.batch
                )
            })?;
        // Flushes every record first; fails if any could not be delivered.
        self.producer
            .commit_transaction(STEP_TIMEOUT)
            .kafka_context(|| format!("batch {}: cannot commit its Kafka transaction", plan.batch))
    }
}
