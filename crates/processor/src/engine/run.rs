//! The loop: plan, read (the next batch's read overlapping this batch's work), stage, commit
//! beside the next batch's stages, settle (group offsets, report, metrics), wait for the trigger.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::batch::{BatchOutcome, StagedBatch, Stages};
use super::checkpoint::BatchPlan;
use super::plan::{highs, lag, Planner};
use super::progress::{self, BatchReport};
use super::source::{self, KafkaSource, OffsetRange, RawBatch};
use super::startup::Started;
use super::{metrics, Dataset};
use crate::config::{ProcessorConfig, Trigger};
use crate::error::{Error, Result};
use crate::{spawn, RunSummary};

/// How long a stopping run waits for the broker to confirm its last group offsets.
const GROUP_CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);

/// The dataset's stages and the run's counters.
pub(super) struct Engine<D: Dataset> {
    pub stages: Stages<D>,
    pub last_batch_start: Option<Instant>,
    pub summary: RunSummary,
    /// The ranges of the last batch settled (its group offsets are confirmed at the end).
    pub last_settled: Vec<OffsetRange>,
    /// The dataset's name and the input topic, for the batch reports.
    pub dataset: txn_core::Dataset,
    pub topic: String,
}

/// Runs batches until `stop` is set (finishing the batch in flight), until everything present
/// at start is processed with the available-now trigger, or, once `drain` is set, until what is
/// in the topic then is processed.
pub(super) fn batches<D: Dataset>(
    started: Started<D>,
    config: &ProcessorConfig,
    stop: &AtomicBool,
    drain: Option<&AtomicBool>,
) -> Result<RunSummary> {
    let Started {
        mut engine,
        source,
        watermarks,
        pending,
        mut next_offsets,
        mut next_batch,
        mut last_planned_at,
        mut identity,
        target,
        interval,
    } = started;
    let cancel = AtomicBool::new(false);
    // Stop or drain requested: end a wait early.
    let interrupted =
        || stop.load(Ordering::Relaxed) || drain.is_some_and(|d| d.load(Ordering::Relaxed));
    let give_up = |stalled: Duration| {
        cancel.load(Ordering::Relaxed)
            || (stop.load(Ordering::Relaxed) && stalled >= source::STALL_WARNING)
    };
    let source = &source;
    let mut planner = Planner {
        config,
        target,
        available_now: config.trigger == Trigger::AvailableNow,
    };

    std::thread::scope(|s| -> Result<()> {
        let read =
            |ranges: Vec<OffsetRange>| spawn(s, "read", move || source.read(&ranges, &give_up));
        let mut committing: Option<Committing<'_>> = None;
        let result = (|| -> Result<()> {
            // A batch planned but not committed by the last run goes first, with its own plan.
            let mut in_flight: Option<InFlight<'_>> = pending.map(|plan| {
                info!(
                    "[processor] batch {} was planned but not committed: re-running it with the same offsets",
                    plan.batch
                );
                let lag = lag(&watermarks, &plan.ranges);
                InFlight { handle: read(plan.ranges.clone()), lost: 0, lag, existing: Some(plan), ranges: Vec::new() }
            });
            let started = Instant::now();
            let mut ticks: u32 = 0;
            let mut broker_trouble: Option<Instant> = None;
            while !stop.load(Ordering::Relaxed) {
                let next = match in_flight.take() {
                    Some(next) => next,
                    None => {
                        let watermarks = match source.watermarks() {
                            Ok(w) => {
                                if broker_trouble.take().is_some() {
                                    info!("[processor] Kafka answers again");
                                }
                                w
                            }
                            Err(e) => {
                                // Warn once per minute of trouble, not on every retry.
                                if broker_trouble
                                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
                                {
                                    warn!("[processor] cannot read the topic's offsets, retrying: {e}");
                                    broker_trouble = Some(Instant::now());
                                }
                                sleep_unless(&interrupted, Duration::from_secs(1));
                                continue;
                            }
                        };
                        let renewed = identity.check(source, &mut next_offsets, &watermarks)?;
                        if drain.is_some_and(|d| d.load(Ordering::Relaxed))
                            && !planner.available_now
                        {
                            info!("[processor] draining: processing what is in the topic now, then stopping");
                            planner.target = highs(&watermarks);
                            planner.available_now = true;
                        }
                        let (ranges, lost) = planner.plan(&next_offsets, &watermarks)?;
                        let lost = lost + renewed;
                        // Nothing to read and nothing lost: no batch. Offsets lost with nothing
                        // after them still make a batch, with no files, so that the checkpoint
                        // records the loss and the new position.
                        if ranges.iter().all(OffsetRange::is_empty) && lost == 0 {
                            if planner.available_now {
                                info!("[processor] available-now: everything present at start is processed");
                                break;
                            }
                            // Nothing new: no batch, no files. Wait for the next tick.
                            ticks = wait_for_tick(&interrupted, started, interval, ticks);
                            continue;
                        }
                        let lag = lag(&watermarks, &ranges);
                        InFlight {
                            handle: read(ranges.clone()),
                            lost,
                            lag,
                            existing: None,
                            ranges,
                        }
                    }
                };
                let rerun = next.existing.is_some();
                let mut plan = next.existing.unwrap_or_else(|| BatchPlan {
                    batch: next_batch,
                    // Later than the last plan's, even after the clock went back: sinks order
                    // versions by it (Cassandra's cell timestamps).
                    planned_at: later_than(last_planned_at, txn_core::time::now_micros()),
                    ranges: next.ranges,
                    topic_id: identity.recorded.clone(),
                });
                last_planned_at = Some(plan.planned_at);
                let waited = Instant::now();
                let read_result = next.handle.join().unwrap_or_else(|_| {
                    Err(Error::Internal("the Kafka reader thread panicked".into()))
                })?;
                let read_time = waited.elapsed();
                let Some((raw, read_ranges)) = read_result else {
                    warn!(
                        "[processor] stop requested while Kafka was unreachable: batch {} is left for the next start",
                        plan.batch
                    );
                    break;
                };
                if !rerun {
                    // A partition's range may end early, at the last stable offset.
                    plan.ranges = read_ranges;
                } else if read_ranges != plan.ranges {
                    return Err(Error::DataLoss(format!(
                        "batch {} must be re-run with its planned offsets {:?}, but Kafka now ends some of them earlier ({read_ranges:?}): those records are gone (retention, a truncated log, or a topic created again); the checkpoint cannot be completed exactly",
                        plan.batch, plan.ranges
                    )));
                }
                next_offsets = plan.ends();
                next_batch = plan.batch + 1;
                // When the next batch follows at once, its read overlaps this batch's processing.
                let back_to_back = interval.is_zero() || planner.available_now;
                if back_to_back {
                    // Read the next batch while this one is decoded and written. Its plan is
                    // written only after this batch commits; reading has no side effects.
                    // Not when the topic's identity changed: the next plan handles that.
                    let same_topic = identity.unchanged(source);
                    if let (Ok(watermarks), true) = (source.watermarks(), same_topic) {
                        if let Ok((ranges, lost)) = planner.plan(&next_offsets, &watermarks) {
                            if !ranges.iter().all(OffsetRange::is_empty) {
                                let lag = lag(&watermarks, &ranges);
                                in_flight = Some(InFlight {
                                    handle: read(ranges.clone()),
                                    lost,
                                    lag,
                                    existing: None,
                                    ranges,
                                });
                            }
                        }
                    }
                }
                let (staged, report) = engine.stage(
                    plan,
                    raw,
                    BatchContext {
                        read: read_time,
                        lag: next.lag,
                        lost_in_plan: next.lost,
                        rerun,
                    },
                )?;
                // One commit at a time, in order: the previous batch's before this one's.
                if let Some(previous) = committing.take() {
                    engine.settle(source, previous)?;
                }
                let committer = engine.stages.committer();
                let this = Committing {
                    handle: spawn(s, "commit", move || committer.commit(staged)),
                    report,
                };
                if back_to_back {
                    // Committed beside the next batch's stages.
                    committing = Some(this);
                } else {
                    engine.settle(source, this)?;
                    ticks = wait_for_tick(&interrupted, started, interval, ticks);
                }
            }
            Ok(())
        })();
        // Release a read still in flight (a prefetch, or one abandoned by an error).
        cancel.store(true, Ordering::Relaxed);
        // The last batch's commit (also after an error in the next batch: it is complete).
        let settled = committing.map_or(Ok(()), |c| engine.settle(source, c));
        result.and(settled)
    })?;
    if !engine.stages.committer().sinks_commit_group_offsets() {
        source.confirm_group_offsets(&engine.last_settled, GROUP_CONFIRM_TIMEOUT);
    }
    info!("[processor] stopped: {}", engine.summary);
    Ok(engine.summary)
}

/// `now`, or just after `last` when the clock is not past it.
pub(super) fn later_than(last: Option<i64>, now: i64) -> i64 {
    last.map_or(now, |last| now.max(last + 1))
}

/// A batch whose read is under way: a new one (planned, plan not yet written) or the re-run of
/// a batch the last run planned but did not commit.
struct InFlight<'scope> {
    handle: std::thread::ScopedJoinHandle<'scope, source::ReadResult>,
    ranges: Vec<OffsetRange>,
    existing: Option<BatchPlan>,
    lost: u64,
    lag: Vec<(i32, u64)>,
}

/// Sleeps until the next multiple of `interval` since `started` (Spark's processing-time trigger:
/// a batch that overran its slot is followed at once). Returns the tick count reached.
pub(super) fn wait_for_tick(
    stop: &dyn Fn() -> bool,
    started: Instant,
    interval: Duration,
    ticks: u32,
) -> u32 {
    if interval.is_zero() {
        // Back to back; when idle, look again shortly.
        sleep_unless(stop, Duration::from_millis(100));
        return ticks;
    }
    let elapsed = started.elapsed();
    let next = (elapsed.as_nanos() / interval.as_nanos()) as u32 + 1;
    let due = started + interval * next.max(ticks + 1);
    sleep_unless(stop, due.saturating_duration_since(Instant::now()));
    next
}

pub(super) fn sleep_unless(stop: &dyn Fn() -> bool, total: Duration) {
    let until = Instant::now() + total;
    while !stop() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// What the loop knows of a batch besides its messages.
struct BatchContext {
    lost_in_plan: u64,
    /// Time spent waiting for the read.
    read: Duration,
    lag: Vec<(i32, u64)>,
    rerun: bool,
}

/// A batch being committed (beside the next batch's stages), and its report so far.
struct Committing<'scope> {
    handle: std::thread::ScopedJoinHandle<'scope, Result<BatchOutcome>>,
    report: BatchReport,
}

impl<D: Dataset> Engine<D> {
    /// Stages a read batch: every layer file written into staging, nothing visible yet.
    fn stage(
        &mut self,
        plan: BatchPlan,
        raw: RawBatch,
        ctx: BatchContext,
    ) -> Result<(StagedBatch, BatchReport)> {
        let batch_start = Instant::now();
        let since_previous = self.last_batch_start.map(|t| batch_start.duration_since(t));
        self.last_batch_start = Some(batch_start);
        let report = BatchReport {
            dataset: self.dataset,
            topic: self.topic.clone(),
            batch: plan.batch,
            bytes: raw.bytes() as u64,
            read: ctx.read,
            since_previous,
            ranges: plan.ranges.clone(),
            lags: ctx.lag,
            rerun: ctx.rerun,
            ..BatchReport::default()
        };
        let new = !ctx.rerun;
        let staged = self.stages.stage(plan, new, raw, ctx.lost_in_plan)?;
        Ok((staged, report))
    }

    /// Waits for a batch's commit, then commits its offsets to the consumer group and reports it.
    fn settle(&mut self, source: &KafkaSource, committing: Committing<'_>) -> Result<()> {
        let t = Instant::now();
        let outcome = committing
            .handle
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("the commit thread panicked".into())))?;
        let waited = t.elapsed();
        let report = committing.report;
        if !self.stages.committer().sinks_commit_group_offsets() {
            // Otherwise the sink's commit (a Kafka transaction) committed them.
            source.commit_group_offsets(&report.ranges);
        }
        self.last_settled.clone_from(&report.ranges);
        record_outcome(&mut self.summary, report, outcome, waited);
        Ok(())
    }
}

/// Completes a committed batch's report with its outcome, logs it, records its metrics and adds
/// it to the run's summary (`waited`: how long the loop waited for the commit).
pub(super) fn record_outcome(
    summary: &mut RunSummary,
    mut report: BatchReport,
    outcome: BatchOutcome,
    waited: Duration,
) {
    let commit = &outcome.commit;
    report.rows = commit.rows;
    report.outputs = outcome.outputs;
    report.rejects = outcome.rejects;
    report.late = commit.late_rows;
    report.lost = commit.lost_offsets;
    report.decode = outcome.decode;
    report.write = outcome.write;
    report.commit = outcome.commit_time;
    report.watermark = commit.watermark;
    report.operators = outcome.operator_figures;
    let settled: u64 = report.ranges.iter().map(OffsetRange::len).sum::<u64>() + report.lost;
    metrics::SETTLED_OFFSETS.fetch_add(settled, Ordering::Relaxed);
    metrics::record_batch(&report, outcome.planned_at);
    progress::log_batch(&report);
    if let Some(line) = progress::mostly_quarantined(&report) {
        warn!("[processor] {line}");
    }
    summary.batches += 1;
    summary.rows += commit.rows;
    summary.late += commit.late_rows;
    summary.bytes += report.bytes;
    summary.read += report.read;
    summary.decode += report.decode;
    summary.write += report.write;
    summary.commit += waited;
}

#[cfg(test)]
mod tests {
    use super::later_than;

    #[test]
    fn a_plan_is_later_than_the_last_one_even_when_the_clock_went_back() {
        assert_eq!(later_than(None, 5_000), 5_000);
        assert_eq!(later_than(Some(3_000), 5_000), 5_000);
        assert_eq!(later_than(Some(9_000), 5_000), 9_001, "the clock went back");
        assert_eq!(
            later_than(Some(5_000), 5_000),
            5_001,
            "the same microsecond"
        );
    }
}
