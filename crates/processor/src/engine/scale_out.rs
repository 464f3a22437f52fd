//! Scale-out (`SCALE_OUT=true`): one processor among several sharing the input topic's
//! partitions through Kafka's consumer group ([`Membership`]), each batch over the partitions
//! this processor owns, decided by a Kafka transaction fenced by its group generation, with the
//! [`GroupCheckpoint`] holding each partition's state and each decided batch's intent.
//!
//! The loop, batch after batch:
//! 1. take the changes of ownership: a partition taken away is forgotten (its state is in the
//!    group checkpoint as of its last committed batch); a partition given is taken up: its
//!    committed offset is read (waiting for an open transaction on it to end), the batch its
//!    metadata names is rolled forward (its files put in place if its member died first), and
//!    its state restored from that batch;
//! 2. plan, read, decode, run the operators, stage the outputs, as a lone processor does;
//! 3. commit ([`super::batch::Committer::commit_member`]) while no rebalance may take the
//!    batch's partitions away ([`Membership::begin_commit`]); a commit refused because the
//!    partitions moved ([`Error::Fenced`]) drops every partition's state, and the loop takes up
//!    what the processor owns then.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::batch::Stages;
use super::checkpoint::BatchPlan;
use super::group::{new_member_id, parse_offset_metadata, GroupCheckpoint, Rolled};
use super::operator;
use super::plan::{highs, lag, Planner, StartingOffsets, Watermarks};
use super::progress::BatchReport;
use super::run::{later_than, record_outcome, sleep_unless, wait_for_tick};
use super::source::membership::Membership;
use super::source::{self, KafkaSource, OffsetRange};
use super::{metrics, Dataset};
use crate::config::{Location, ProcessorConfig, Trigger};
use crate::error::{Error, Result};
use crate::os::tune_allocator;
use crate::sinks::Start;
use crate::RunSummary;

/// How long taking up a partition waits for its committed offset (an open transaction of a
/// member that died holds it until the transaction times out: 20 s).
const TAKE_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// A member with no batch for this long is gone: what it left undecided is removed at start.
const SWEEP_IDLE: Duration = Duration::from_secs(3600);

/// Runs one member of the group until `stop` (or `drain`) is set, or with the available-now
/// trigger until the partitions it owns are read to where the topic ended at start.
pub fn run<D: Dataset>(
    dataset: D,
    config: &ProcessorConfig,
    stop: &AtomicBool,
    drain: Option<&AtomicBool>,
) -> Result<RunSummary> {
    config.validate()?;
    let mut dataset = dataset;
    if let Some(op) = dataset.operators().iter().find(|op| !op.by_partition()) {
        return Err(Error::Config(format!(
            "SCALE_OUT=true: operator {} of dataset {} keeps its state by a key other than the topic's message key, so its state cannot move with a partition; run one processor (SCALE_OUT=false)",
            op.name(),
            config.dataset
        )));
    }
    if config.max_files_per_sink > 0 {
        warn!("[processor] MAX_FILES_PER_SINK={} is not applied with SCALE_OUT=true: every file is kept", config.max_files_per_sink);
    }
    tune_allocator();
    let starting = StartingOffsets::parse(&config.starting_offsets, &config.kafka.topic)?;
    let Location::Local(checkpoint_root) = config.checkpoint_path() else {
        return Err(Error::Config(
            "SCALE_OUT=true needs a checkpoint on a shared folder".into(),
        ));
    };
    let output_root = config.staging_root()?;
    let member = new_member_id();
    let client = config.kafka_client()?;
    info!(
        "[processor] Connecting to {}, topic={}, output={}, checkpoint={}, trigger={:?}, scale-out member {member} of group {}",
        client.bootstrap,
        config.kafka.topic,
        config.output_path,
        checkpoint_root.display(),
        config.trigger,
        config.group_id
    );
    info!("[processor] Kafka client: {}", client.describe());
    let source = KafkaSource::new(&client, &config.kafka.topic, &config.group_id)?;
    let watermarks = source.wait_ready(config.connect_timeout)?;
    if source
        .cluster_id(Duration::from_secs(10))
        .is_some_and(|id| id.starts_with("mockCluster"))
    {
        return Err(Error::Config(
            "SCALE_OUT=true needs a broker that keeps transactional offsets (Apache Kafka, or any Kafka-compatible broker that does): this is the embedded broker (librdkafka's mock), which does not, so a partition moving between processors would be read twice".into(),
        ));
    }
    let membership = Arc::new(Membership::join(
        &client,
        &config.kafka.topic,
        &config.group_id,
    )?);
    let group = GroupCheckpoint::open(&checkpoint_root, &output_root, member.clone())?;
    let swept = group.sweep(SWEEP_IDLE);
    if swept > 0 {
        info!("[processor] removed what {swept} processors gone for over {SWEEP_IDLE:?} left undecided (staged files, intents)");
    }
    let mut stages = Stages::open_member(dataset, config, &member, membership.clone())?;
    stages.start_sinks(&Start {
        config,
        client: &client,
        checkpoint_id: &member,
        pending: None,
        group: &source,
    })?;
    source.check_group_access(config.connect_timeout.min(Duration::from_secs(15)))?;

    let interval = match config.trigger {
        Trigger::Interval(d) => d,
        Trigger::AvailableNow => Duration::ZERO,
    };
    let available_now = config.trigger == Trigger::AvailableNow;
    metrics::record_start(interval);
    let mut member_loop = MemberLoop {
        config,
        source: &source,
        membership: &membership,
        group: &group,
        starting,
        planner: Planner {
            config,
            target: if available_now {
                highs(&watermarks)
            } else {
                BTreeMap::new()
            },
            available_now,
        },
        next: BTreeMap::new(),
        held: BTreeMap::new(),
        batch: 0,
        last_planned_at: None,
        summary: RunSummary::default(),
        last_batch_start: None,
    };
    let interrupted =
        || stop.load(Ordering::Relaxed) || drain.is_some_and(|d| d.load(Ordering::Relaxed));
    member_loop.run(&mut stages, interval, &interrupted)?;
    info!("[processor] stopped: {}", member_loop.summary);
    Ok(member_loop.summary)
}

struct MemberLoop<'a> {
    config: &'a ProcessorConfig,
    source: &'a KafkaSource,
    membership: &'a Membership,
    group: &'a GroupCheckpoint,
    starting: StartingOffsets,
    planner: Planner<'a>,
    /// The partitions taken up, and the next offset of each.
    next: BTreeMap<i32, i64>,
    /// The batch (member, number) whose state each partition taken up stands on: released once
    /// a batch of this member commits the partition again.
    held: BTreeMap<i32, (String, u64)>,
    /// This member's next batch number.
    batch: u64,
    last_planned_at: Option<i64>,
    summary: RunSummary,
    last_batch_start: Option<Instant>,
}

impl MemberLoop<'_> {
    fn run<D: Dataset>(
        &mut self,
        stages: &mut Stages<D>,
        interval: Duration,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<()> {
        let started = Instant::now();
        let mut ticks = 0;
        let mut waiting_since: Option<Instant> = None;
        let give_up = |stalled: Duration| interrupted() && stalled >= source::STALL_WARNING;
        while !interrupted() {
            self.membership.fatal()?;
            self.take_changes(stages)?;
            if self.next.is_empty() {
                let since = *waiting_since.get_or_insert_with(|| {
                    info!(
                        "[processor] waiting for partitions of {} from consumer group {}",
                        self.config.kafka.topic, self.config.group_id
                    );
                    Instant::now()
                });
                if self.planner.available_now && since.elapsed() > Duration::from_secs(30) {
                    info!("[processor] available-now: no partition came to this processor");
                    break;
                }
                sleep_unless(interrupted, Duration::from_millis(100));
                continue;
            }
            waiting_since = None;
            let watermarks: Watermarks = match self.source.watermarks() {
                Ok(w) => w
                    .into_iter()
                    .filter(|(p, _)| self.next.contains_key(p))
                    .collect(),
                Err(e) => {
                    warn!("[processor] cannot read the topic's offsets, retrying: {e}");
                    sleep_unless(interrupted, Duration::from_secs(1));
                    continue;
                }
            };
            let (ranges, lost) = self.planner.plan(&self.next, &watermarks)?;
            if ranges.iter().all(OffsetRange::is_empty) && lost == 0 {
                if self.planner.available_now {
                    info!("[processor] available-now: the partitions of this processor are processed to where the topic ended at start");
                    break;
                }
                ticks = wait_for_tick(interrupted, started, interval, ticks);
                continue;
            }
            let lags = lag(&watermarks, &ranges);
            let mut plan = BatchPlan {
                batch: self.batch,
                planned_at: later_than(self.last_planned_at, txn_core::time::now_micros()),
                ranges,
                topic_id: self.source.topic_id(),
            };
            self.last_planned_at = Some(plan.planned_at);
            let t = Instant::now();
            let Some((raw, read_ranges)) = self.source.read(&plan.ranges, &give_up)? else {
                break;
            };
            let read = t.elapsed();
            plan.ranges = read_ranges;
            self.batch += 1;
            let batch_start = Instant::now();
            let report = BatchReport {
                dataset: self.config.dataset,
                topic: self.config.kafka.topic.clone(),
                batch: plan.batch,
                bytes: raw.bytes() as u64,
                read,
                since_previous: self.last_batch_start.map(|t| batch_start.duration_since(t)),
                ranges: plan.ranges.clone(),
                lags,
                ..BatchReport::default()
            };
            self.last_batch_start = Some(batch_start);
            let read_partitions: BTreeSet<i32> = plan
                .ranges
                .iter()
                .filter(|r| !r.is_empty())
                .map(|r| r.partition)
                .collect();
            let ends = plan.ends();
            let staged = stages.stage(plan, false, raw, lost)?;
            let sections: BTreeMap<i32, Vec<u8>> = read_partitions
                .iter()
                .map(|&p| (p, operator::snapshot_partition_all(&stages.operators(), p)))
                .collect();
            let t = Instant::now();
            let committer = stages.committer();
            let committed = match self.membership.begin_commit(&read_partitions) {
                Ok(_guard) => committer.commit_member(staged, self.group, &sections),
                Err(gone) => {
                    committer.discard(staged);
                    Err(Error::Fenced(format!(
                        "batch {}: partitions {gone:?} moved to another processor while it ran: it is not committed",
                        report.batch
                    )))
                }
            };
            match committed {
                Ok(outcome) => {
                    self.next.extend(ends);
                    for &p in &read_partitions {
                        let now = (self.group.member().to_string(), report.batch);
                        if let Some((member, batch)) = self.held.insert(p, now) {
                            self.group.release_section(p, &member, batch);
                        }
                    }
                    record_outcome(&mut self.summary, report, outcome, t.elapsed());
                }
                Err(Error::Fenced(why)) => {
                    warn!(
                        "[processor] {why}; taking up again the partitions this processor owns now"
                    );
                    self.forget_all(stages);
                }
                Err(e) => return Err(e),
            }
            if !interval.is_zero() && !self.planner.available_now {
                ticks = wait_for_tick(interrupted, started, interval, ticks);
            }
        }
        Ok(())
    }

    /// Forgets the partitions taken away, and takes up the partitions given.
    fn take_changes<D: Dataset>(&mut self, stages: &mut Stages<D>) -> Result<()> {
        let changes = self.membership.changes();
        for p in &changes.revoked {
            self.held.remove(p);
            if self.next.remove(p).is_some() {
                for op in stages.operators() {
                    op.drop_partition(*p);
                }
            }
        }
        // Given since the last look (perhaps taken away and given back: its state may have
        // moved on elsewhere meanwhile), or owned and not taken up yet.
        let mut take_up: Vec<i32> = changes
            .owned
            .iter()
            .filter(|p| changes.assigned.contains(p) || !self.next.contains_key(p))
            .copied()
            .collect();
        take_up.sort_unstable();
        if take_up.is_empty() {
            return Ok(());
        }
        for p in &take_up {
            self.next.remove(p);
            self.held.remove(p);
            for op in stages.operators() {
                op.drop_partition(*p);
            }
        }
        // A request that times out (after a pause of the process, a broker's failover) is asked
        // again at the next turn of the loop: the partitions stay owned and not taken up.
        let retry_later = |e: Error| match e {
            Error::Access(_) => Err(e),
            e => {
                warn!("[processor] cannot take up partitions {take_up:?} yet, retrying: {e}");
                Ok(())
            }
        };
        let watermarks = match self.source.watermarks() {
            Ok(w) => w,
            Err(e) => return retry_later(e),
        };
        let committed = match self
            .source
            .committed_with_metadata(&take_up, TAKE_UP_TIMEOUT)
        {
            Ok(c) => c,
            Err(e) => return retry_later(e),
        };
        for (p, offset, metadata) in committed {
            let start = match (offset, parse_offset_metadata(&metadata)) {
                (Some(offset), Some((member, batch))) => {
                    // A roll forward that failed for a moment (object storage, a Delta table
                    // others kept committing to) is tried again at the next turn.
                    let rolled = match stages.committer().roll_forward(self.group, &member, batch) {
                        Ok(rolled) => rolled,
                        Err(
                            e @ (Error::Access(_)
                            | Error::DataLoss(_)
                            | Error::Config(_)
                            | Error::Checkpoint { .. }),
                        ) => return Err(e),
                        Err(e) => return retry_later(e),
                    };
                    if let Rolled::Now(pieces) = rolled {
                        info!("[processor] partition {p}: batch {batch} of processor {member} was committed in Kafka but not finished: its {pieces} files and table commits are put in place now");
                    }
                    let bytes = self.group.read_section(p, &member, batch)?;
                    operator::restore_partition_all(&mut stages.operators(), p, &bytes).map_err(
                        |detail| Error::Checkpoint {
                            path: format!("group/partitions/{p}/{member}-{batch}").into(),
                            detail,
                        },
                    )?;
                    info!("[processor] partition {p}: taken up at offset {offset}, with its state as of batch {batch} of processor {member}");
                    self.held.insert(p, (member, batch));
                    offset
                }
                (Some(offset), None) => {
                    info!("[processor] partition {p}: taken up at the group's committed offset {offset} (no scale-out state recorded with it: its windows start empty)");
                    offset
                }
                (None, _) => {
                    let one: Watermarks = watermarks.get(&p).map(|w| (p, *w)).into_iter().collect();
                    let offset =
                        self.starting
                            .resolve(&one)?
                            .get(&p)
                            .copied()
                            .ok_or_else(|| {
                                Error::Internal(format!(
                                    "partition {p} is not in the topic's offsets"
                                ))
                            })?;
                    info!("[processor] partition {p}: nothing committed yet: starting at offset {offset} (STARTING_OFFSETS={})", self.config.starting_offsets);
                    offset
                }
            };
            self.next.insert(p, start);
        }
        Ok(())
    }

    /// Drops every partition's state: they are taken up again from the group checkpoint.
    fn forget_all<D: Dataset>(&mut self, stages: &mut Stages<D>) {
        self.held.clear();
        for p in std::mem::take(&mut self.next).into_keys() {
            for op in stages.operators() {
                op.drop_partition(p);
            }
        }
    }
}
