//! Scale-out's membership in the consumer group: a consumer that subscribes to the input topic
//! with cooperative rebalancing (`cooperative-sticky`), so that the processors sharing a
//! `KAFKA_GROUP_ID` share the topic's partitions through Kafka's own group protocol, and that
//! never reads a message (the assign-only reader of [`super::KafkaSource`] reads the planned
//! ranges). Its own thread polls it every 100 ms, which keeps the member in the group and serves
//! the rebalance callbacks; the partitions it is given are paused at once.
//!
//! It says which partitions this processor owns ([`Membership::owned`], with the changes since
//! the last look) and gives the group's metadata ([`Membership::group_metadata`]: generation and
//! member id) for the transaction that commits a batch's offsets: the group coordinator refuses
//! that commit from a member of an older generation (`ILLEGAL_GENERATION`, `UNKNOWN_MEMBER_ID`),
//! so a processor that was paused while its partitions moved (a zombie) cannot commit them, as
//! in Kafka's exactly-once consume-transform-produce (KIP-447). The metadata is only given once
//! the member has joined (generation 0 or more): a commit without a generation is not fenced.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
};
use rdkafka::error::KafkaError;
use rdkafka::TopicPartitionList;
use tracing::{info, warn};
use txn_core::kafka::{ClientSettings, Fatal, Names};

use crate::error::{Error, KafkaContext, Result};

/// How often the member is polled (rebalance callbacks, heartbeats are librdkafka's own).
const POLL: Duration = Duration::from_millis(100);

/// The partitions this member owns, and what changed since the last [`Membership::changes`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ownership {
    pub owned: BTreeSet<i32>,
    /// Given to this member since the last look.
    pub assigned: BTreeSet<i32>,
    /// Taken from it since the last look (also when the member lost them without a handover).
    pub revoked: BTreeSet<i32>,
    /// Rebalances this member took part in.
    pub rebalances: u64,
}

/// What the member owns, and the partitions of the batch being committed if one is: a
/// rebalance that takes one of them away waits until that commit is over (as Kafka Streams
/// commits in its revocation callback). The generation alone would not do: a member of the next
/// generation that lost a partition still commits with a valid generation, and the coordinator
/// does not check who owns what. One lock for both: a partition is taken away and a commit
/// checks ownership one after the other, never both at once.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    commit_done: Condvar,
}

#[derive(Default)]
struct State {
    ownership: Ownership,
    committing: Option<BTreeSet<i32>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The longest a rebalance waits for a commit of a partition it takes away (well under
/// `max.poll.interval.ms`; the Kafka transaction's own timeout is 20 s).
const COMMIT_WAIT: Duration = Duration::from_secs(60);

/// The rebalance callbacks: record the assignment, pause what is assigned.
struct MemberContext {
    fatal: Fatal,
    topic: String,
    group: String,
    shared: Arc<Shared>,
}

impl rdkafka::ClientContext for MemberContext {
    fn error(&self, error: KafkaError, reason: &str) {
        rdkafka::ClientContext::error(&self.fatal, error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, line: &str) {
        rdkafka::ClientContext::log(&self.fatal, level, fac, line);
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        if consumer.assignment_lost() {
            // Gone already (the session expired): the commit in hand is refused anyway.
            return;
        }
        let revoked: BTreeSet<i32> = tpl
            .elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect();
        let started = Instant::now();
        let mut state = self.shared.lock();
        while state
            .committing
            .as_ref()
            .is_some_and(|c| !c.is_disjoint(&revoked))
            && started.elapsed() < COMMIT_WAIT
        {
            state = self
                .shared
                .commit_done
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        // No commit of them from now on (post_rebalance records the change).
        for p in &revoked {
            state.ownership.owned.remove(p);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |tpl: &TopicPartitionList| -> BTreeSet<i32> {
            tpl.elements()
                .iter()
                .filter(|e| e.topic() == self.topic)
                .map(|e| e.partition())
                .collect()
        };
        let mut state = self.shared.lock();
        let ownership = &mut state.ownership;
        ownership.rebalances += 1;
        match rebalance {
            Rebalance::Assign(tpl) => {
                // Never fetch: the reader reads the planned ranges. (A pause survives later
                // rebalances; paused again each time anyway.)
                if let Err(e) = consumer.pause(tpl) {
                    warn!("[processor] cannot pause the group member's partitions: {e}");
                }
                let added = partitions(tpl);
                for p in &added {
                    ownership.revoked.remove(p);
                    if ownership.owned.insert(*p) {
                        ownership.assigned.insert(*p);
                    }
                }
                info!(
                    "[processor] group {}: assigned partitions {:?} of {}; owns {:?}",
                    self.group, added, self.topic, ownership.owned
                );
            }
            Rebalance::Revoke(tpl) => {
                let removed = partitions(tpl);
                let lost = consumer.assignment_lost();
                for p in &removed {
                    ownership.assigned.remove(p);
                    // Taken out of `owned` by pre_rebalance already, unless it was lost.
                    ownership.owned.remove(p);
                    ownership.revoked.insert(*p);
                }
                info!(
                    "[processor] group {}: {} partitions {:?} of {}; owns {:?}",
                    self.group,
                    if lost { "lost" } else { "gave up" },
                    removed,
                    self.topic,
                    ownership.owned
                );
            }
            Rebalance::Error(e) => warn!("[processor] group {}: rebalance error: {e}", self.group),
        }
    }
}

/// This processor's membership in the consumer group (scale-out). Leaves the group when dropped.
pub struct Membership {
    consumer: Arc<BaseConsumer<MemberContext>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    group: String,
}

impl Membership {
    /// Joins `group` for `topic` and starts polling.
    pub fn join(client: &ClientSettings, topic: &str, group: &str) -> Result<Self> {
        let shared = Arc::new(Shared::default());
        let mut config = ClientConfig::new();
        config
            .set("client.id", "processor-member")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("max.poll.interval.ms", "300000");
        let consumer: BaseConsumer<MemberContext> = client
            .apply(&mut config)
            .set("group.id", group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .create_with_context(MemberContext {
                fatal: Fatal::new(
                    "processor",
                    client.principal(),
                    Names {
                        group: Some(group.into()),
                        transactional_id: None,
                    },
                ),
                topic: topic.into(),
                group: group.into(),
                shared: shared.clone(),
            })
            .kafka_context(|| "cannot create the consumer group member".into())?;
        consumer
            .subscribe(&[topic])
            .kafka_context(|| format!("cannot join consumer group {group} for topic {topic}"))?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (consumer, stop) = (consumer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("member".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        // Every partition is paused: nothing but callbacks and errors comes.
                        if let Some(Err(e)) = consumer.poll(POLL) {
                            tracing::debug!("[processor] group member: {e}");
                        }
                    }
                })
                .map_err(|e| {
                    Error::Internal(format!("cannot start the group member's thread: {e}"))
                })?
        };
        info!("[processor] joining consumer group {group} for topic {topic} (cooperative rebalancing)");
        Ok(Membership {
            consumer,
            shared,
            stop,
            thread: Some(thread),
            group: group.into(),
        })
    }

    /// What this member owns now, and what changed since the last call (then cleared).
    pub fn changes(&self) -> Ownership {
        let mut state = self.shared.lock();
        let now = state.ownership.clone();
        state.ownership.assigned.clear();
        state.ownership.revoked.clear();
        now
    }

    /// The partitions owned now.
    pub fn owned(&self) -> BTreeSet<i32> {
        self.shared.lock().ownership.owned.clone()
    }

    /// The member's generation in the group (-1 before it joined, or after it was dropped from
    /// the group until it joins again).
    pub fn generation(&self) -> i32 {
        // SAFETY: the consumer's handle lives as long as `self.consumer`; the metadata returned
        // is owned here and destroyed after reading its generation.
        unsafe {
            let ptr = self.consumer.client().native_ptr();
            let meta = rdkafka::bindings::rd_kafka_consumer_group_metadata(ptr);
            if meta.is_null() {
                return -1;
            }
            let generation =
                rdkafka::bindings::rd_kafka_consumer_group_metadata_generation_id(meta);
            rdkafka::bindings::rd_kafka_consumer_group_metadata_destroy(meta);
            generation
        }
    }

    /// The group's metadata as of now, for a transaction that commits offsets of owned
    /// partitions; `None` while the member is not in the group (no generation): such a commit
    /// would not be fenced.
    pub fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        (self.generation() >= 0)
            .then(|| self.consumer.group_metadata())
            .flatten()
    }

    /// Starts the commit of a batch of `partitions`: refused (naming them) when one of them is
    /// not owned now; else, until the guard is dropped, a rebalance that takes one of them away
    /// waits (so that no other member reads a partition's committed offset while this member
    /// may still commit it).
    pub fn begin_commit(
        &self,
        partitions: &BTreeSet<i32>,
    ) -> std::result::Result<CommitGuard<'_>, BTreeSet<i32>> {
        let mut state = self.shared.lock();
        let gone: BTreeSet<i32> = partitions
            .difference(&state.ownership.owned)
            .copied()
            .collect();
        if !gone.is_empty() {
            return Err(gone);
        }
        state.committing = Some(partitions.clone());
        Ok(CommitGuard { membership: self })
    }

    /// Waits until the member is in the group with at least one partition, or `timeout`.
    pub fn wait_for_partitions(&self, timeout: Duration, stop: &dyn Fn() -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout && !stop() {
            if !self.owned().is_empty() && self.generation() >= 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// An error of the member that no retry fixes (authorization), as an error to stop with.
    pub fn fatal(&self) -> Result<()> {
        match self.consumer.context().fatal.get() {
            Some(message) => Err(Error::Access(message)),
            None => Ok(()),
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }
}

/// A commit under way ([`Membership::begin_commit`]); dropping it lets rebalances go on.
pub struct CommitGuard<'a> {
    membership: &'a Membership,
}

impl Drop for CommitGuard<'_> {
    fn drop(&mut self) {
        let shared = &self.membership.shared;
        shared.lock().committing = None;
        shared.commit_done.notify_all();
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Leaves the group now (a handover to the others), rather than at the session timeout.
        self.consumer.unsubscribe();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !self.owned().is_empty() {
            let _ = self.consumer.poll(POLL);
        }
    }
}
