//! The Kafka side of a batch: reading exactly a planned range with an assigned consumer. The
//! checkpoint, not the consumer group, decides what has been processed; [`group_offsets`] keeps
//! the group informed (and, for transactions, says what it holds).

mod group_offsets;
pub mod membership;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};
use txn_core::kafka::{denied, ClientSettings, Fatal, Names};

use crate::error::{Error, KafkaContext, Result};

pub use super::plan::Watermarks;
pub use crate::sinks::OffsetRange;

/// One message of a batch: coordinates, and where its key and value lie in the batch's arena.
#[derive(Debug, Clone)]
pub struct RawMessage {
    pub partition: i32,
    pub offset: i64,
    /// Kafka timestamp in milliseconds, when the message has one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<(usize, usize)>,
    pub value: Option<(usize, usize)>,
    /// An Avro value's writer schema: its index in [`RawBatch::schemas`] (set by
    /// [`super::schemas::Schemas::unframe`]).
    pub avro: Option<u32>,
}

/// The messages of a batch, copied into one contiguous buffer (one allocation for the batch, and
/// something that can cross threads, unlike librdkafka's borrowed messages).
#[derive(Debug, Default)]
pub struct RawBatch {
    pub arena: Vec<u8>,
    pub messages: Vec<RawMessage>,
    /// Messages rejected before the dataset's decoder (Avro that cannot be read: see
    /// [`super::schemas`]), by index, in index order.
    pub rejected: Vec<(u32, txn_core::Reject)>,
    /// The writer schemas of the batch's Avro values, with their registry ids.
    pub schemas: Vec<(u32, std::sync::Arc<txn_core::avro::WriterSchema>)>,
}

impl RawBatch {
    pub fn push(
        &mut self,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) {
        let mut put = |bytes: Option<&[u8]>| {
            bytes.map(|b| {
                let start = self.arena.len();
                self.arena.extend_from_slice(b);
                (start, self.arena.len())
            })
        };
        let key = put(key);
        let value = put(value);
        self.messages.push(RawMessage {
            partition,
            offset,
            timestamp_ms,
            key,
            value,
            avro: None,
        });
    }

    pub fn key(&self, m: &RawMessage) -> Option<&[u8]> {
        m.key.map(|(s, e)| &self.arena[s..e])
    }

    pub fn value(&self, m: &RawMessage) -> Option<&[u8]> {
        m.value.map(|(s, e)| &self.arena[s..e])
    }

    pub fn bytes(&self) -> usize {
        self.arena.len()
    }
}

/// What a read gives: the batch and its ranges as read, or `None` when the read was abandoned.
pub type ReadResult = Result<Option<(RawBatch, Vec<OffsetRange>)>>;

/// The processor's Kafka consumer: assign + seek per batch, no auto commit, no offset store.
pub struct KafkaSource {
    consumer: BaseConsumer<Fatal>,
    /// The partitions assigned to `consumer`; between reads all of them are paused.
    assigned: Mutex<BTreeSet<i32>>,
    topic: String,
    group_id: String,
    bootstrap: String,
}

/// How long one metadata or watermark request may take before it is retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A read that makes no progress for this long is logged (once per period), not abandoned.
pub const STALL_WARNING: Duration = Duration::from_secs(10);

impl Drop for KafkaSource {
    /// Closes the consumer polling every millisecond. rdkafka's own drop closes it polling in
    /// steps of 100 ms, and the close's end does not cut a step short: every processor's exit
    /// waited 100 ms for it. Closed here, that drop finds the consumer closed and only frees it.
    fn drop(&mut self) {
        if self.consumer.close_queue().is_err() {
            return;
        }
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        while !self.consumer.closed() && Instant::now() < deadline {
            let _ = self.consumer.poll(Duration::from_millis(1));
        }
    }
}

impl KafkaSource {
    pub fn new(client: &ClientSettings, topic: &str, group_id: &str) -> Result<Self> {
        let mut config = ClientConfig::new();
        config
            .set("client.id", "processor")
            .set("fetch.max.bytes", "52428800")
            .set("max.partition.fetch.bytes", "8388608")
            .set("queued.min.messages", "200000")
            // A read stops at the end it asked for, and then every partition is paused: a fetch
            // the broker holds (500 ms by default, when a partition has nothing new) only
            // delays the watermark and offset requests queued behind it on the same connection
            // (seen as ~500 ms stalls at the last batches of a read). The user can raise it.
            .set("fetch.wait.max.ms", "10")
            .set("session.timeout.ms", "6000");
        // The user's properties, then the ones exactly-once depends on.
        let consumer: BaseConsumer<Fatal> = client
            .apply(&mut config)
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            // Records of aborted or open transactions never reach a layer; the end of what can
            // be read (the watermarks' high) is then the last stable offset.
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "error")
            .create_with_context(Fatal::new(
                "processor",
                client.principal(),
                Names {
                    group: Some(group_id.into()),
                    transactional_id: None,
                },
            ))
            .kafka_context(|| "cannot create the Kafka consumer".into())?;
        Ok(KafkaSource {
            consumer,
            assigned: Mutex::new(BTreeSet::new()),
            topic: topic.into(),
            group_id: group_id.into(),
            bootstrap: client.bootstrap.clone(),
        })
    }

    /// The first error that no retry fixes, as an error to stop with. Serves the consumer's
    /// queue first (its error events arrive there), when no partition is assigned (between
    /// reads nothing is, so no message can be taken from a batch).
    fn fatal(&self) -> Result<()> {
        if self
            .assigned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
        {
            if let Some(Ok(m)) = self.consumer.poll(Duration::ZERO) {
                debug!(
                    "[processor] unexpected message at offset {} outside a read",
                    m.offset()
                );
            }
        }
        match self.consumer.context().get() {
            Some(message) => Err(Error::Access(message)),
            None => Ok(()),
        }
    }

    /// An authorization error on the input topic, as an error to stop with.
    fn topic_denied(&self, operation: &str) -> Error {
        Error::Access(denied(
            &self.consumer.context().who,
            operation,
            &format!("topic {}", self.topic),
        ))
    }

    /// The cluster's id, when the broker tells it.
    pub fn cluster_id(&self, timeout: Duration) -> Option<String> {
        self.consumer.client().fetch_cluster_id(timeout)
    }

    /// Waits up to `timeout` for the broker to answer and the topic to exist (a bounded wait at start).
    pub fn wait_ready(&self, timeout: Duration) -> Result<Watermarks> {
        let started = Instant::now();
        let mut warned = false;
        loop {
            let watermarks = self.watermarks();
            self.fatal()?;
            let last_error = match watermarks {
                Ok(w) if !w.is_empty() => return Ok(w),
                Err(e @ Error::Access(_)) => return Err(e),
                Ok(_) => format!("topic {} does not exist or has no partitions", self.topic),
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= timeout {
                return Err(Error::BrokerUnreachable {
                    bootstrap: self.bootstrap.clone(),
                    waited_s: timeout.as_secs(),
                    last_error,
                });
            }
            // SIGINT or SIGTERM (docker compose stop) ends the wait: nothing was started.
            if txn_core::settings::stop_requested() {
                return Err(Error::BrokerUnreachable {
                    bootstrap: self.bootstrap.clone(),
                    waited_s: started.elapsed().as_secs(),
                    last_error: format!("{last_error}; stopped as asked (SIGINT or SIGTERM)"),
                });
            }
            if !warned {
                info!(
                    "[processor] waiting for Kafka at {} ({last_error})",
                    self.bootstrap
                );
                warned = true;
            }
            for _ in 0..5 {
                if !txn_core::settings::stop_requested() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Whether `topic` exists, as far as the broker says within the request timeout (`None`: it
    /// did not answer). Asks without creating it.
    /// An output topic the user may not see is refused (ACL DESCRIBE and WRITE on it).
    pub fn topic_exists(&self, topic: &str) -> Result<Option<bool>> {
        let Ok(metadata) = self.consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT) else {
            return Ok(None);
        };
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        if t.error().map(RDKafkaErrorCode::from) == Some(RDKafkaErrorCode::TopicAuthorizationFailed)
        {
            return Err(Error::Access(denied(
                &self.consumer.context().who,
                "DESCRIBE and WRITE",
                &format!("output topic {topic}"),
            )));
        }
        Ok(Some(t.error().is_none() && !t.partitions().is_empty()))
    }

    /// The partitions of the topic now, with their earliest and latest offsets.
    pub fn watermarks(&self) -> Result<Watermarks> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)
            .kafka_context(|| format!("cannot read metadata of topic {}", self.topic))?;
        let mut out = Watermarks::new();
        for t in metadata.topics().iter().filter(|t| t.name() == self.topic) {
            if let Some(e) = t.error() {
                let code = RDKafkaErrorCode::from(e);
                if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                    return Ok(out);
                }
                if code == RDKafkaErrorCode::TopicAuthorizationFailed {
                    return Err(self.topic_denied("DESCRIBE and READ"));
                }
                return Err(Error::Kafka {
                    context: format!("metadata of topic {}", self.topic),
                    source: KafkaError::MetadataFetch(code),
                });
            }
            for p in t.partitions() {
                let w = self
                    .consumer
                    .fetch_watermarks(&self.topic, p.id(), REQUEST_TIMEOUT)
                    .kafka_context(|| format!("cannot read offsets of partition {}", p.id()))?;
                out.insert(p.id(), w);
            }
        }
        Ok(out)
    }

    /// Reads the messages of `ranges` into a batch, and returns the ranges as read. Offsets inside a
    /// range that are never delivered are not data: transaction markers, records of aborted
    /// transactions (the consumer reads committed records only), and records removed by
    /// compaction. A partition whose end arrives before its range's end (the last stable offset
    /// did not move past an open transaction, or the log was truncated) has its range cut there,
    /// so the rest comes in a later batch instead of being waited for or skipped. Offsets deleted
    /// by retention while the batch is read stop it with a data-loss error. A broker outage stalls
    /// the read with a warning every few seconds. `give_up`, asked with the time since the last
    /// message, abandons the read (`None`): a stop request during an outage, or a read ahead
    /// that is no longer wanted. An abandoned batch is re-run with the same ranges on next start.
    pub fn read(&self, ranges: &[OffsetRange], give_up: &dyn Fn(Duration) -> bool) -> ReadResult {
        let pending: Vec<&OffsetRange> = ranges.iter().filter(|r| !r.is_empty()).collect();
        let mut batch = RawBatch::default();
        let mut read_ranges = ranges.to_vec();
        if pending.is_empty() {
            return Ok(Some((batch, read_ranges)));
        }
        let expected: u64 = pending.iter().map(|r| r.len()).sum();
        batch.messages.reserve(expected as usize);
        batch.arena.reserve(expected as usize * 400);

        let mut tpl = TopicPartitionList::new();
        for r in &pending {
            tpl.add_partition_offset(&self.topic, r.partition, Offset::Offset(r.start))
                .kafka_context(|| "cannot build the assignment".into())?;
        }
        self.position(&tpl, &pending)?;
        let mut open: BTreeMap<i32, OffsetRange> =
            pending.iter().map(|r| (r.partition, **r)).collect();
        let mut last_progress = Instant::now();
        // Partitions whose end was reached, waiting to be settled.
        let mut at_end: BTreeSet<i32> = BTreeSet::new();
        let (mut errors, mut last_error) = (0u64, None::<String>);
        let mut received: BTreeMap<i32, u64> = BTreeMap::new();
        // The clock is read on every empty poll or error and every 1024 messages, not per
        // message: two clock reads per message cost more than copying it.
        let (mut polls, mut progressed) = (0u32, false);
        let started = Instant::now();
        let mut first: Option<Duration> = None;
        let result = loop {
            if open.is_empty() {
                debug!(
                    "[processor] read {} messages: first after {first:?}, all after {:?}",
                    batch.messages.len(),
                    started.elapsed()
                );
                break Ok(Some((batch, read_ranges)));
            }
            polls = polls.wrapping_add(1);
            let mut check_clock = polls % 1024 == 0;
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    progressed = true;
                    if first.is_none() {
                        first = Some(started.elapsed());
                    }
                    let p = m.partition();
                    at_end.remove(&p);
                    // Messages of partitions already closed (fetched before the pause) are dropped.
                    if let Some(r) = open.get(&p) {
                        let offset = m.offset();
                        if offset >= r.start && offset < r.end {
                            let ts = m.timestamp().to_millis();
                            batch.push(p, offset, ts, m.key(), m.payload());
                            *received.entry(p).or_default() += 1;
                        }
                        if offset + 1 >= r.end {
                            self.close(&mut open, p)?;
                        }
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    // The partition's end (its last stable offset) was reached: settled below,
                    // once the broker says where that end is.
                    if open.contains_key(&p) {
                        at_end.insert(p);
                        check_clock = true;
                    }
                }
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange))) => {
                    return Err(Error::DataLoss(format!(
                        "an offset of the batch was deleted while it was read ({:?})",
                        open.values().collect::<Vec<_>>()
                    )));
                }
                Some(Err(e))
                    if e.rdkafka_error_code()
                        == Some(RDKafkaErrorCode::TopicAuthorizationFailed) =>
                {
                    break Err(self.topic_denied("READ"));
                }
                Some(Err(e)) => {
                    // Transport errors come in bursts while a broker is away: one debug line each,
                    // and a summary in the stall warning below.
                    debug!("[processor] Kafka reports while reading: {e}");
                    errors += 1;
                    last_error = Some(e.to_string());
                    check_clock = true;
                }
                None => check_clock = true,
            }
            if !check_clock {
                continue;
            }
            // Partitions at their end: what the range held below the end and was not delivered
            // are markers, aborted or compacted records; a range past the end (an open
            // transaction, a truncated log) is cut there, and the rest comes in a later batch.
            // A broker that cannot say now is asked again at the next check.
            for p in std::mem::take(&mut at_end) {
                let Some(r) = open.get(&p).copied() else {
                    continue;
                };
                let end = match self
                    .consumer
                    .fetch_watermarks(&self.topic, p, REQUEST_TIMEOUT)
                {
                    Ok((_, high)) => high,
                    Err(e) => {
                        debug!("[processor] partition {p}: where does it end? {e}; asking again");
                        errors += 1;
                        last_error = Some(e.to_string());
                        at_end.insert(p);
                        continue;
                    }
                };
                // Where this consumer stands: its end, unless the last stable offset moved on
                // (a transaction committed) between the end and this question. Markers move the
                // position too (librdkafka stores their offsets), so at the end it is the end.
                // (A position below the range is an older read's: a seek does not move it.)
                let end = match self.position_of(p) {
                    Some(position) if position >= r.start => end.min(position),
                    _ => end,
                };
                if end < r.end {
                    let cut = end.max(r.start);
                    info!(
                        "[processor] partition {p}: readable up to offset {cut} (an open transaction, or a truncated log); offsets {cut}..{} follow in a later batch",
                        r.end
                    );
                    if let Some(rr) = read_ranges.iter_mut().find(|rr| rr.partition == p) {
                        rr.end = cut;
                    }
                }
                let skipped = r
                    .len()
                    .saturating_sub(received.get(&p).copied().unwrap_or(0));
                debug!("[processor] partition {p}: {skipped} offsets of {}..{} held no record to read (markers, aborted or compacted)", r.start, r.end);
                self.close(&mut open, p)?;
            }
            if std::mem::take(&mut progressed) {
                last_progress = Instant::now();
            }
            let stalled = last_progress.elapsed();
            if give_up(stalled) {
                break Ok(None);
            }
            if stalled >= STALL_WARNING {
                if let Err(e) = self.fatal() {
                    break Err(e);
                }
                warn!(
                    "[processor] no data from Kafka at {} for {} s, waiting (partitions still open: {:?}; {} errors, last: {})",
                    self.bootstrap,
                    STALL_WARNING.as_secs(),
                    open.keys().collect::<Vec<_>>(),
                    errors,
                    last_error.take().unwrap_or_else(|| "none".into())
                );
                errors = 0;
                last_progress = Instant::now();
            }
        };
        if !matches!(result, Ok(Some(_))) {
            // Abandoned or failed: partitions may still be fetching. Release them all.
            self.assigned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            self.consumer
                .unassign()
                .kafka_context(|| "cannot release the batch's partitions".into())?;
        }
        result
    }

    /// Puts the batch's partitions at their start offsets and resumes them. After a complete
    /// read every assigned partition is paused at its range's end, so when the batch's partitions
    /// are all assigned already they are resumed and moved: the resume is asynchronous, and the
    /// seek that follows (synchronous, served after it by the same fetcher thread) makes sure the
    /// fetcher has seen it. Without that barrier the fetcher slept through the resume one read in
    /// three and the batch's first message came 1 s late. Otherwise they are assigned anew.
    fn position(&self, tpl: &TopicPartitionList, pending: &[&OffsetRange]) -> Result<()> {
        let mut assigned = self.assigned.lock().unwrap_or_else(PoisonError::into_inner);
        let resume = || {
            // A partition paused at the end of an earlier batch stays paused across assignments.
            self.consumer
                .resume(tpl)
                .kafka_context(|| "cannot resume the batch's partitions".into())
        };
        if pending.iter().all(|r| assigned.contains(&r.partition)) {
            resume()?;
            let sought = self
                .consumer
                .seek_partitions(tpl.clone(), REQUEST_TIMEOUT)
                .kafka_context(|| "cannot move the batch's partitions to their start".into())?;
            if sought.elements().iter().all(|e| e.error().is_ok()) {
                return Ok(());
            }
            debug!("[processor] seek refused, assigning the batch's partitions anew");
        }
        assigned.clear();
        self.consumer
            .assign(tpl)
            .kafka_context(|| "cannot assign the batch's partitions".into())?;
        assigned.extend(pending.iter().map(|r| r.partition));
        resume()
    }

    /// The consumer's position in a partition (the offset after the last record or marker it
    /// went past), when it has one.
    fn position_of(&self, partition: i32) -> Option<i64> {
        let positions = self.consumer.position().ok()?;
        match positions.find_partition(&self.topic, partition)?.offset() {
            Offset::Offset(o) if o >= 0 => Some(o),
            _ => None,
        }
    }

    /// Kafka's id of the topic (base64, as `kafka-topics --describe` prints it): a topic deleted
    /// and created again under the same name gets a new one. `None` when the broker does not
    /// say (brokers before Kafka 2.8) or cannot be asked now.
    pub fn topic_id(&self) -> Option<String> {
        use rdkafka::bindings as rd;
        use std::ffi::{CStr, CString};
        let name = CString::new(self.topic.as_str()).ok()?;
        let mut names = [name.as_ptr()];
        // Admin requests go to the controller by default; any broker answers this one (a
        // Metadata request), and librdkafka's mock names no controller, so ask a broker.
        let broker = self
            .consumer
            .fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)
            .ok()?
            .brokers()
            .first()?
            .id();
        // SAFETY: every pointer passed comes from librdkafka (the client handle, which outlives
        // this call, and the options, queue, collection and event created here) or is `names`
        // or `errstr`, alive until the end of the function; the result's strings are copied
        // before the event that owns them is destroyed, and each object created here is
        // destroyed once.
        unsafe {
            let rk = self.consumer.client().native_ptr();
            let options = rd::rd_kafka_AdminOptions_new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
            );
            let mut errstr = [0 as std::ffi::c_char; 256];
            rd::rd_kafka_AdminOptions_set_broker(
                options,
                broker,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            let queue = rd::rd_kafka_queue_new(rk);
            let topics = rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1);
            rd::rd_kafka_DescribeTopics(rk, topics, options, queue);
            let event = rd::rd_kafka_queue_poll(queue, REQUEST_TIMEOUT.as_millis() as i32);
            let mut id = None;
            if !event.is_null() {
                let result = rd::rd_kafka_event_DescribeTopics_result(event);
                if !result.is_null() && rd::rd_kafka_event_error(event) as i32 == 0 {
                    let mut n = 0usize;
                    let descriptions = rd::rd_kafka_DescribeTopics_result_topics(result, &mut n);
                    for i in 0..n {
                        let d = *descriptions.add(i);
                        let error = rd::rd_kafka_TopicDescription_error(d);
                        if !error.is_null() && rd::rd_kafka_error_code(error) as i32 != 0 {
                            continue;
                        }
                        let uuid = rd::rd_kafka_TopicDescription_topic_id(d);
                        if uuid.is_null()
                            || (rd::rd_kafka_Uuid_most_significant_bits(uuid) == 0
                                && rd::rd_kafka_Uuid_least_significant_bits(uuid) == 0)
                        {
                            continue;
                        }
                        let text = rd::rd_kafka_Uuid_base64str(uuid);
                        if !text.is_null() {
                            id = Some(CStr::from_ptr(text).to_string_lossy().into_owned());
                        }
                    }
                }
                rd::rd_kafka_event_destroy(event);
            }
            rd::rd_kafka_TopicCollection_destroy(topics);
            rd::rd_kafka_queue_destroy(queue);
            rd::rd_kafka_AdminOptions_destroy(options);
            id
        }
    }

    fn close(&self, open: &mut BTreeMap<i32, OffsetRange>, partition: i32) -> Result<()> {
        open.remove(&partition);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition);
        // Stop fetching what the batch does not need.
        self.consumer
            .pause(&tpl)
            .kafka_context(|| format!("cannot pause partition {partition}"))
    }
}
