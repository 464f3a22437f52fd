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

use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{info, warn};
use txn_core::avro::WriterSchema;
use txn_core::kafka::{denied, explain, ClientSettings, Fatal, Names};

use super::{wrong_piece, Piece, PreCommit, Sink, SinkBatch, Staged, Start, Target};
use crate::engine::source::membership::Membership;
use crate::error::{Error, KafkaContext, Result};

/// One record of a topic output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    /// The JSON value.
    pub value: Vec<u8>,
    /// The Avro schema of the value's fields, for `OUTPUT_TOPIC_FORMAT=avro`; empty: the value
    /// is written as it is in either format (an internal topic of the pipeline's own).
    pub avro_schema: &'static str,
    /// The partition, when not the partitioner's choice by key.
    pub partition: Option<i32>,
}

/// `OUTPUT_TOPIC_FORMAT=avro`: the registry, and each topic's registered schema and id.
struct AvroOutputs {
    registry: txn_core::registry::Registry,
    topics: std::sync::Mutex<std::collections::HashMap<String, Arc<(u32, WriterSchema)>>>,
}

impl AvroOutputs {
    /// The schema id and parsed schema of `topic`'s values: registered under `<topic>-value` at
    /// the first record (waiting while the registry cannot answer).
    fn schema(&self, topic: &str, text: &'static str) -> Result<Arc<(u32, WriterSchema)>> {
        if let Some(known) = self.topics.lock().ok().and_then(|t| t.get(topic).cloned()) {
            return Ok(known);
        }
        let schema = WriterSchema::parse(text).map_err(Error::Internal)?;
        let subject = format!("{topic}-value");
        let id = self
            .registry
            .register_waiting(
                &subject,
                text,
                "processor",
                &txn_core::settings::stop_requested,
            )
            .map_err(Error::Registry)?;
        info!(
            "[processor] topic {topic}: Avro values, schema id {id} (subject {subject}) at {}",
            self.registry.describe()
        );
        let entry = Arc::new((id, schema));
        if let Ok(mut topics) = self.topics.lock() {
            topics.insert(topic.to_string(), entry.clone());
        }
        Ok(entry)
    }

    /// Every record's JSON value as a framed Avro value of its topic's schema.
    fn encode(&self, records: &mut [TopicRecord]) -> Result<()> {
        for r in records.iter_mut().filter(|r| !r.avro_schema.is_empty()) {
            let entry = self.schema(&r.topic, r.avro_schema)?;
            let (id, schema) = &*entry;
            let mut value = Vec::with_capacity(r.value.len());
            txn_core::avro::frame(*id, &mut value);
            txn_core::avro::encode_json_text(schema.schema(), &r.value, &mut value).map_err(
                |e| {
                    Error::Internal(format!(
                        "a record for topic {} does not fit its Avro schema: {e}",
                        r.topic
                    ))
                },
            )?;
            r.value = value;
        }
        Ok(())
    }
}

/// How long a transaction step may take before the batch fails (and is re-run at the next start).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// How much longer than its own timeout adding the offsets to a transaction may take before it
/// is taken for stuck ([`KafkaTransactions::send_offsets`]).
const SEND_OFFSETS_MARGIN: Duration = Duration::from_secs(10);

/// How long a scale-out member's offsets may take to join its transaction (which the
/// coordinator aborts 20 s after it began: `transaction.timeout.ms`).
const MEMBER_SEND_OFFSETS_TIMEOUT: Duration = Duration::from_secs(20);

/// The output producer's librdkafka context: the first error no retry fixes, and the first
/// record the broker refused in the open transaction.
pub struct OutputsContext {
    fatal: Fatal,
    /// The first refusal, and its error code.
    refused: Mutex<Option<(String, Option<RDKafkaErrorCode>)>>,
}

impl ClientContext for OutputsContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.fatal.error(error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, line: &str) {
        self.fatal.log(level, fac, line);
    }
}

impl ProducerContext for OutputsContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            use rdkafka::message::Message as _;
            let topic = m.topic();
            let message = match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::TopicAuthorizationFailed) => {
                    denied(&self.fatal.who, "WRITE", &format!("output topic {topic}"))
                }
                _ => format!("a record for topic {topic} was refused: {e}"),
            };
            let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
            refused.get_or_insert((message, e.rdkafka_error_code()));
        }
    }
}

/// The topic sink: a batch's records, and its input offsets for the consumer group, in one Kafka
/// transaction, sent and flushed at the pre-commit and committed at the commit.
pub struct TopicSink {
    /// Scale-out: the group member whose generation fences this processor's commits, and its id.
    member: Option<(Arc<Membership>, String)>,
    topics: Vec<String>,
    /// Opened at start.
    transactions: Option<KafkaTransactions>,
    /// A re-run batch whose transaction committed before the last run stopped.
    done: Option<u64>,
    /// Records are dropped (benchmarks of the stages, which have no broker).
    discard: bool,
    /// With OUTPUT_TOPIC_FORMAT=avro.
    avro: Option<AvroOutputs>,
}

impl TopicSink {
    pub fn new(topics: Vec<String>) -> Self {
        TopicSink {
            member: None,
            topics,
            transactions: None,
            done: None,
            discard: false,
            avro: None,
        }
    }

    /// The sink of a scale-out member: every batch is a Kafka transaction (also without topic
    /// outputs) that commits the batch's input offsets with the member's group generation, each
    /// naming the batch (`grp1 <member> <batch>`): the decision of the batch.
    pub fn for_member(topics: Vec<String>, membership: Arc<Membership>, member: &str) -> Self {
        TopicSink {
            member: Some((membership, member.to_string())),
            ..TopicSink::new(topics)
        }
    }
}

impl TopicSink {
    fn warn_missing_topics(&self, start: &Start<'_>) -> Result<()> {
        if self.topics.is_empty() {
            return Ok(());
        }
        info!("[processor] Kafka outputs: {}", self.topics.join(", "));
        for topic in &self.topics {
            if start.group.topic_exists(topic)? == Some(false) {
                warn!("[processor] output topic {topic} does not exist: the first batch with records for it fails unless the broker creates topics on first use (create it with kafka-topics; compose's kafka-init does)");
            }
        }
        Ok(())
    }
}

impl Staged {
    /// Records for Kafka topics.
    pub fn records(records: Vec<TopicRecord>) -> Self {
        Staged::new(records.len() as u64, records)
    }
}

impl Sink for TopicSink {
    fn name(&self) -> &'static str {
        "Kafka topics"
    }

    fn takes(&self, target: &Target) -> bool {
        matches!(target, Target::Topic(topic) if self.topics.contains(topic))
    }

    /// Fences the last run's producer first: its open transaction is aborted, and one it was
    /// committing is finished, before the group's offsets are read.
    fn start(&mut self, start: &Start<'_>) -> Result<()> {
        let config = start.config;
        if config.output_topic_format == "avro" && !self.topics.is_empty() {
            let registry = txn_core::registry::Registry::from_args(&config.registry)
                .map_err(Error::Config)?
                .ok_or_else(|| {
                    Error::Config("OUTPUT_TOPIC_FORMAT=avro needs SCHEMA_REGISTRY_URL".into())
                })?;
            self.avro = Some(AvroOutputs {
                registry,
                topics: Default::default(),
            });
        }
        if let Some((membership, member)) = &self.member {
            // A new member id per start: nothing of an earlier run to recognise here (its
            // decided batches are rolled forward by whoever takes their partitions).
            self.transactions = Some(KafkaTransactions::open(
                start.client,
                &format!("{}-outputs-{member}", config.group_id),
                &config.kafka.topic,
                (GroupSource::Member(membership.clone()), &config.group_id),
                member.clone(),
            )?);
            self.warn_missing_topics(start)?;
            return Ok(());
        }
        let group = start.group.metadata().ok_or_else(|| {
            Error::Config("KAFKA_GROUP_ID is needed for Kafka topic outputs".into())
        })?;
        let kafka = KafkaTransactions::open(
            start.client,
            &format!("{}-outputs", config.group_id),
            &config.kafka.topic,
            (GroupSource::Fixed(Arc::new(group)), &config.group_id),
            start.checkpoint_id.to_string(),
        )?;
        self.done = match start.pending {
            Some(pending)
                if start.group.offsets_are(
                    pending.ranges,
                    &offsets_metadata(start.checkpoint_id, pending.batch),
                    config.connect_timeout,
                )? =>
            {
                Some(pending.batch)
            }
            _ => None,
        };
        self.warn_missing_topics(start)?;
        self.transactions = Some(kafka);
        Ok(())
    }

    /// The records go out first, in a transaction left open: a refused one fails the batch
    /// before any file is visible. The transaction commits after the files are in place.
    fn pre_commit(&self, batch: &SinkBatch<'_>, pieces: Vec<Piece>) -> Result<PreCommit> {
        let mut records = Vec::new();
        for piece in pieces {
            records.extend(
                *piece
                    .downcast::<Vec<TopicRecord>>()
                    .map_err(|_| wrong_piece(self.name()))?,
            );
        }
        if self.done == Some(batch.batch) {
            info!(
                "[processor] batch {}: its Kafka transaction committed before the last stop: not produced again",
                batch.batch
            );
            return Ok(Box::new(false));
        }
        if let Some(avro) = &self.avro {
            if !self.discard {
                avro.encode(&mut records)?;
            }
        }
        match &self.transactions {
            Some(kafka) => {
                kafka.prepare(batch, &records)?;
                Ok(Box::new(true))
            }
            None if records.is_empty() || self.discard => Ok(Box::new(false)),
            None => Err(Error::Internal(format!(
                "batch {}: {} records for Kafka topics and no Kafka transactions to send them in",
                batch.batch,
                records.len()
            ))),
        }
    }

    fn commit(&self, batch: &SinkBatch<'_>, pre: PreCommit) -> Result<()> {
        let open = *pre
            .downcast::<bool>()
            .map_err(|_| wrong_piece(self.name()))?;
        match (&self.transactions, open) {
            (Some(kafka), true) => kafka.commit(batch),
            _ => Ok(()),
        }
    }

    fn abort(&self, _batch: &SinkBatch<'_>, pre: PreCommit) {
        if let (Some(kafka), Ok(open)) = (&self.transactions, pre.downcast::<bool>()) {
            if *open {
                kafka.abort();
            }
        }
    }

    fn commits_group_offsets(&self) -> bool {
        !self.discard
    }

    fn without_broker(&mut self) {
        self.discard = true;
    }
}

/// The transactional producer of a processor's topic outputs.
/// Whose group generation fences a transaction's offsets.
pub enum GroupSource {
    /// The reader's (one processor per checkpoint; the checkpoint's lock keeps it alone).
    Fixed(Arc<ConsumerGroupMetadata>),
    /// A scale-out member's, as of the commit.
    Member(Arc<Membership>),
}

pub struct KafkaTransactions {
    /// Replaced when a scale-out member's producer is fenced ([`Self::member_lost`]).
    producer: std::sync::RwLock<Arc<BaseProducer<OutputsContext>>>,
    /// What a new producer is made of.
    client: ClientSettings,
    transactional_id: String,
    group: GroupSource,
    group_id: String,
    input_topic: String,
    /// The checkpoint's id: with the batch, the metadata of the offsets a transaction commits.
    checkpoint_id: String,
}

/// Whether an error says the producer itself is gone: fenced by a newer producer of its
/// transactional id (or the coordinator's abort of a transaction that timed out), or failed
/// fatally; its records in flight then fail as purged.
fn producer_lost(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::InvalidTransactionalState
            | RDKafkaErrorCode::TransactionCoordinatorFenced
            | RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::PurgeQueue
            | RDKafkaErrorCode::PurgeInflight
    )
}

/// Whether a refused record's error is one that the next attempt of its batch may not meet:
/// a broker node down or moving its leadership, a request or the record timed out, or the
/// record purged by the batch's own abort. Any other refusal (a missing WRITE ACL, a record too
/// large, a topic that does not exist) stops the processor with it.
fn transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::TimedOutQueue
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::NotEnoughReplicas
            | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
            | RDKafkaErrorCode::KafkaStorageError
            | RDKafkaErrorCode::Retry
            | RDKafkaErrorCode::PurgeQueue
            | RDKafkaErrorCode::PurgeInflight
    )
}

/// The metadata of the group offsets that batch `batch` of checkpoint `checkpoint_id` commits.
/// Whether a transaction error says this member's generation is gone (its partitions moved).
fn fenced(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::FencedInstanceId
                | RDKafkaErrorCode::RebalanceInProgress
        )
    )
}

pub fn offsets_metadata(checkpoint_id: &str, batch: u64) -> String {
    format!("checkpoint {checkpoint_id} batch {batch}")
}

impl KafkaTransactions {
    /// A transactional producer of `transactional_id`, its transactions initialised (which
    /// fences an earlier producer of the id: its open transaction is aborted).
    fn new_producer(
        client: &ClientSettings,
        transactional_id: &str,
        (group_id, input_topic): (&str, &str),
        member: bool,
    ) -> Result<BaseProducer<OutputsContext>> {
        // A scale-out member's transaction is fenced by its generation, and a killed member's
        // open transaction holds its partitions' offsets until it times out: short.
        let timeout = if member { "20000" } else { "120000" };
        let mut config = ClientConfig::new();
        config
            .set("client.id", "processor-outputs")
            // Keyed records land where Java clients (and the seeds) would put them.
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("compression.type", "lz4");
        let who = client.principal();
        let producer: BaseProducer<OutputsContext> = client
            .apply(&mut config)
            .set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", timeout)
            .create_with_context(OutputsContext {
                fatal: Fatal::new(
                    "processor outputs",
                    who.clone(),
                    Names {
                        group: Some(group_id.into()),
                        transactional_id: Some(transactional_id.into()),
                    },
                ),
                refused: Mutex::new(None),
            })
            .kafka_context(|| "cannot create the Kafka output producer".into())?;
        // A broker connection first: librdkafka looks the transaction coordinator up when
        // transactions are initialised, and without a connected broker yet it asks again only
        // after 500 ms (half of the financial runs' starts waited so). A metadata request is a
        // round trip on a connection it then has; if it fails, the init below says why.
        let _ = producer
            .client()
            .fetch_metadata(Some(input_topic), Duration::from_secs(10));
        if let Err(e) = producer.init_transactions(STEP_TIMEOUT) {
            if let Some(message) = producer.context().fatal.get() {
                return Err(Error::Access(message));
            }
            let code = e.rdkafka_error_code();
            if code == Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed) {
                return Err(Error::Access(denied(
                    &who,
                    "WRITE",
                    &format!("transactional id {transactional_id}"),
                )));
            }
            if let Some(message) = explain(code, &e.to_string(), &who, &Names::default()) {
                return Err(Error::Access(message));
            }
            return Err(Error::Kafka {
                context: format!(
                    "cannot start Kafka transactions (transactional.id {transactional_id})"
                ),
                source: e,
            });
        }
        Ok(producer)
    }

    /// Creates the producer and fences any earlier producer of `transactional_id` (its open
    /// transaction is aborted).
    pub fn open(
        client: &ClientSettings,
        transactional_id: &str,
        input_topic: &str,
        (group, group_id): (GroupSource, &str),
        checkpoint_id: String,
    ) -> Result<Self> {
        let member = matches!(group, GroupSource::Member(_));
        let producer =
            Self::new_producer(client, transactional_id, (group_id, input_topic), member)?;
        info!("[processor] Kafka outputs are transactional (transactional.id {transactional_id})");
        Ok(KafkaTransactions {
            producer: std::sync::RwLock::new(Arc::new(producer)),
            client: client.clone(),
            transactional_id: transactional_id.to_string(),
            group_id: group_id.to_string(),
            group,
            input_topic: input_topic.into(),
            checkpoint_id,
        })
    }

    /// The producer (a read lock: replaced only by [`Self::member_lost`], between batches).
    fn producer(&self) -> std::sync::RwLockReadGuard<'_, Arc<BaseProducer<OutputsContext>>> {
        self.producer.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A scale-out member's transaction that failed for its producer's sake (the coordinator
    /// aborted it on its timeout while the process was paused, or the producer was fenced):
    /// the batch is not committed, as when the group refuses its offsets, and a fatal producer
    /// is replaced by a new one of the same transactional id (as Kafka Streams does on a task
    /// migrated), so that the member goes on with the partitions it owns. `None`: another error.
    fn member_lost(&self, batch: u64, e: &KafkaError) -> Option<Error> {
        if !matches!(self.group, GroupSource::Member(_)) {
            return None;
        }
        let (fatal, abortable) = match e {
            KafkaError::Transaction(t) => (t.is_fatal(), t.txn_requires_abort()),
            _ => (false, false),
        };
        let code = e.rdkafka_error_code();
        let producer_lost = code.is_some_and(producer_lost);
        // A record not delivered (timed out while a broker node was down): the transaction is
        // aborted, and the batch runs again.
        let undelivered = matches!(e, KafkaError::MessageProduction(c) if transient(*c));
        if !(fatal || abortable || producer_lost || undelivered) {
            return None;
        }
        let _ = self.producer().abort_transaction(STEP_TIMEOUT);
        // The refusal is this transaction's: the next one starts clean, once the delivery
        // reports of the records the abort purged are served.
        let _ = self.flush();
        *self
            .producer()
            .context()
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        if fatal || producer_lost {
            match Self::new_producer(
                &self.client,
                &self.transactional_id,
                (&self.group_id, &self.input_topic),
                true,
            ) {
                Ok(fresh) => {
                    *self.producer.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
                    warn!("[processor] batch {batch}: the Kafka output producer was fenced or its transaction timed out ({e}): a new producer of transactional.id {} replaces it", self.transactional_id);
                }
                Err(again) => return Some(again),
            }
        }
        Some(Error::Fenced(format!(
            "batch {batch}: its Kafka transaction was aborted ({e}): the batch is not committed"
        )))
    }

    /// Opens the batch's transaction, produces its records and adds its input offsets, and waits
    /// until the broker has every record: a refused record (a missing WRITE ACL, say) fails the
    /// batch here, before any of its files is in place. [`Self::commit`] ends it.
    pub fn prepare(&self, plan: &SinkBatch<'_>, records: &[TopicRecord]) -> Result<()> {
        // Bound first: the read guard must be gone before member_lost may replace the producer.
        let begun = self.producer().begin_transaction();
        if let Err(e) = begun {
            if let Some(lost) = self.member_lost(plan.batch, &e) {
                return Err(lost);
            }
            return Err(Error::Kafka {
                context: format!("batch {}: cannot begin its Kafka transaction", plan.batch),
                source: e,
            });
        }
        let result = self.produce(plan, records);
        if let Err(Error::Kafka { source, .. }) = &result {
            if let Some(lost) = self.member_lost(plan.batch, source) {
                return Err(lost);
            }
        }
        if result.is_err() {
            self.abort();
        }
        result
    }

    /// Adds the batch's input offsets to its transaction. librdkafka's call can wait forever
    /// past its timeout for a group coordinator that died (librdkafka issues 5456 and 5511: the
    /// coordinator request's timeout is not checked, and a coordinator dropped from the metadata
    /// is not looked up again; seen here with a broker node killed on a 3-node cluster), so it
    /// runs on a thread of its own, given its timeout ([`STEP_TIMEOUT`], a member's
    /// [`MEMBER_SEND_OFFSETS_TIMEOUT`]) and a margin. A call still waiting
    /// then is left behind with its producer: a scale-out member fences it with a new producer
    /// of its transactional id and goes on without the batch (nothing of it was decided); a lone
    /// processor stops with the reason, and its next start re-runs the batch.
    fn send_offsets(
        &self,
        batch: u64,
        offsets: TopicPartitionList,
        group: Arc<ConsumerGroupMetadata>,
    ) -> Result<rdkafka::error::KafkaResult<()>> {
        let member = matches!(self.group, GroupSource::Member(_));
        // A member's transaction times out after 20 s at the coordinator: waiting longer for
        // its offsets is waiting for an aborted transaction.
        let timeout = if member {
            MEMBER_SEND_OFFSETS_TIMEOUT
        } else {
            STEP_TIMEOUT
        };
        let producer = Arc::clone(&self.producer());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("send-offsets".into())
            .spawn(move || {
                let _ = tx.send(producer.send_offsets_to_transaction(&offsets, &group, timeout));
            })
            .map_err(|e| Error::Io {
                context: "cannot start a thread".into(),
                source: e,
            })?;
        let waited = timeout + SEND_OFFSETS_MARGIN;
        if let Ok(sent) = rx.recv_timeout(waited) {
            return Ok(sent);
        }
        let stuck = format!(
            "batch {batch}: adding its input offsets to its Kafka transaction did not return in {waited:?} (the consumer group's coordinator was lost: librdkafka does not look for the new one)"
        );
        if !member {
            return Err(Error::Kafka {
                context: stuck,
                source: KafkaError::MessageProduction(RDKafkaErrorCode::OperationTimedOut),
            });
        }
        let fresh = Self::new_producer(
            &self.client,
            &self.transactional_id,
            (&self.group_id, &self.input_topic),
            true,
        )?;
        *self.producer.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        warn!(
            "[processor] {stuck}: a new producer of transactional.id {} replaces its producer",
            self.transactional_id
        );
        Err(Error::Fenced(format!(
            "{stuck}: the batch is not committed"
        )))
    }

    /// Waits until the broker has acknowledged every record sent. rdkafka's `flush` (which
    /// `commit_transaction` calls first) serves the delivery reports in polls of up to 100 ms,
    /// which a batch whose records are acknowledged in a few milliseconds would wait out: a
    /// tenth of a second on every alert's way to its reader. Polled here in steps of 1 ms.
    fn flush(&self) -> rdkafka::error::KafkaResult<()> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while self.producer().in_flight_count() > 0 {
            if Instant::now() >= deadline {
                return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
            }
            self.producer().poll(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Commits the transaction that [`Self::prepare`] opened.
    pub fn commit(&self, plan: &SinkBatch<'_>) -> Result<()> {
        // Every record is acknowledged already (prepare flushed them), so commit_transaction's
        // own flush returns at once; it fails if any could not be delivered.
        let result = self.producer().commit_transaction(STEP_TIMEOUT);
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(lost) = self.member_lost(plan.batch, &e) {
                    return Err(lost);
                }
                self.abort();
                Err(Error::Kafka {
                    context: format!("batch {}: cannot commit its Kafka transaction", plan.batch),
                    source: e,
                })
            }
        }
    }

    /// Leaves nothing visible and no transaction open for read_committed readers to wait on; the
    /// batch is re-run at the next start. (After a fatal error the abort fails too, and the next
    /// start's fencing ends the transaction.)
    fn abort(&self) {
        let _ = self.producer().abort_transaction(STEP_TIMEOUT);
    }

    /// The first refusal or fatal error of this producer: an error to stop with, or to fail the
    /// batch with when it is [`transient`].
    fn refused(&self) -> Result<()> {
        let producer = self.producer();
        let context = producer.context();
        let refused = context
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(message) = context.fatal.get() {
            return Err(Error::Access(message));
        }
        let member = matches!(self.group, GroupSource::Member(_));
        match refused {
            // A member's producer fenced: [`Self::member_lost`] replaces it; a record that a
            // retry may deliver (timed out while a broker node was down) fails the batch only.
            Some((message, Some(code))) if (member && producer_lost(code)) || transient(code) => {
                Err(Error::Kafka {
                    context: message,
                    source: KafkaError::MessageProduction(code),
                })
            }
            Some((message, _)) => Err(Error::Access(message)),
            None => Ok(()),
        }
    }

    fn produce(&self, plan: &SinkBatch<'_>, records: &[TopicRecord]) -> Result<()> {
        for r in records {
            let mut record = BaseRecord::to(&r.topic).payload(&r.value);
            if let Some(key) = &r.key {
                record = record.key(key);
            }
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            let mut pending = record;
            loop {
                let sent = self.producer().send(pending);
                match sent {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: serve deliveries, then try again.
                        self.producer().poll(Duration::from_millis(50));
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
        let member = matches!(self.group, GroupSource::Member(_));
        let metadata = if member {
            crate::engine::group::offset_metadata(&self.checkpoint_id, plan.batch)
        } else {
            offsets_metadata(&self.checkpoint_id, plan.batch)
        };
        // A member commits the partitions the batch read: the others' offsets keep naming the
        // batch that holds their state.
        for range in plan.ranges.iter().filter(|r| !member || !r.is_empty()) {
            let mut entry = offsets.add_partition(&self.input_topic, range.partition);
            entry
                .set_offset(Offset::Offset(range.end))
                .kafka_context(|| format!("batch {}: bad offset", plan.batch))?;
            entry.set_metadata(metadata.as_str());
        }
        let flushed = self.flush();
        self.refused()?;
        flushed.kafka_context(|| {
            format!("batch {}: cannot deliver its records to Kafka", plan.batch)
        })?;
        let group = match &self.group {
            GroupSource::Fixed(group) => group.clone(),
            GroupSource::Member(membership) => {
                Arc::new(membership.group_metadata().ok_or_else(|| {
                    Error::Fenced(format!(
                        "batch {}: this processor is not in consumer group {} now (a rebalance, or it was dropped from the group): its batch is not committed",
                        plan.batch, self.group_id
                    ))
                })?)
            }
        };
        let sent = self.send_offsets(plan.batch, offsets, group)?;
        if let Err(e) = sent {
            self.refused()?;
            if member && fenced(&e) {
                return Err(Error::Fenced(format!(
                    "batch {}: the consumer group refused its offsets ({e}): its partitions moved to another processor; the batch is not committed",
                    plan.batch
                )));
            }
            if e.rdkafka_error_code() == Some(RDKafkaErrorCode::GroupAuthorizationFailed) {
                return Err(Error::Access(denied(
                    &self.producer().context().fatal.who,
                    "READ",
                    &format!("consumer group {}", self.group_id),
                )));
            }
            return Err(Error::Kafka {
                context: format!(
                    "batch {}: cannot add its input offsets to its Kafka transaction",
                    plan.batch
                ),
                source: e,
            });
        }
        Ok(())
    }
}
