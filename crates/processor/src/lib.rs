//! The streaming processor of SPEC §2–§4. One data flow per batch:
//!
//! ```text
//! plan ──► read ──► decode ──► layers ──► write ──► commit
//! ```
//! [`source`] plans and reads, [`layers`] and [`gold`] turn a batch into rows, [`writer`] puts one
//! file per layer in place, [`checkpoint`] makes it exactly once, [`progress`] reports.

pub mod checkpoint;
pub mod chunk;
pub mod config;
pub mod error;
pub mod gold;
pub mod layers;
pub mod metrics;
pub mod progress;
pub mod source;
pub mod writer;

use std::collections::BTreeMap;
use std::fmt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tracing::{error, info, warn};

pub use config::{ProcessorConfig, Trigger};
pub use error::{Error, Result};

use checkpoint::{BatchCommit, BatchPlan, Checkpoint};
use gold::GoldState;
use layers::{DecodedBatch, Layer};
use progress::BatchReport;
use source::{KafkaSource, OffsetRange, RawBatch, StartingOffsets, Watermarks};
use writer::CompactWriter;

/// What a run of the processor did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub batches: u64,
    pub rows: u64,
    pub late: u64,
    /// Payload bytes (keys and values) read.
    pub bytes: u64,
    pub read: Duration,
    pub decode: Duration,
    pub write: Duration,
    pub commit: Duration,
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batches={} rows={} late={}",
            self.batches, self.rows, self.late
        )?;
        let busy = self.read + self.decode + self.write + self.commit;
        if self.rows > 0 {
            write!(
                f,
                " | {:.0} rows/s, {:.1} MB/s over {:.2} s of batches (waiting for reads {:.2} s, decode {:.2} s, write {:.2} s, waiting for commits {:.2} s)",
                self.rows as f64 / busy.as_secs_f64().max(1e-9),
                self.bytes as f64 / 1e6 / busy.as_secs_f64().max(1e-9),
                busy.as_secs_f64(),
                self.read.as_secs_f64(),
                self.decode.as_secs_f64(),
                self.write.as_secs_f64(),
                self.commit.as_secs_f64()
            )?;
        }
        if let Some(kib) = peak_rss_kib() {
            write!(f, " peak_rss={} MiB", kib / 1024)?;
        }
        Ok(())
    }
}

/// The stages after the read: decode → layers → write → commit. Fed from Kafka by [`run`], or from
/// memory by the benchmark.
///
/// A batch is first staged ([`BatchSink::stage`]: decoded, gold updated, every layer file written
/// into staging), then committed ([`Committer::commit`]: plan, files synced and renamed, gold
/// state, commit). The commit only touches files and the checkpoint, so it can run beside the
/// next batch's stages; the checkpoint still sees one batch at a time, because a batch's plan is
/// written by its own commit, after the previous commit.
pub struct BatchSink {
    topic: String,
    writer: CompactWriter,
    committer: Committer,
    gold: GoldState,
    show_previews: bool,
}

/// What one batch's stages after the read produced.
pub struct BatchOutcome {
    pub commit: BatchCommit,
    /// When the batch was planned (UTC microseconds): its commit latency starts there.
    pub planned_at: i64,
    pub layers: Vec<(Layer, u64)>,
    /// Quarantined rows by reason code.
    pub rejects: Vec<(&'static str, u64)>,
    pub decode: Duration,
    /// Layers and files, gold's window update included.
    pub write: Duration,
    /// Gold's window update alone (part of `write`).
    pub gold: Duration,
    /// The commit: plan, files synced and put in place, gold state, commit entry, retention.
    pub commit_time: Duration,
}

/// A batch whose files are written into staging: what its commit needs.
#[must_use = "a staged batch is only visible once committed"]
pub struct StagedBatch {
    plan: BatchPlan,
    /// A new batch's plan is written by its commit; a re-run's plan is on disk already.
    write_plan: bool,
    files: Vec<writer::StagedFile>,
    commit: BatchCommit,
    gold_state: Vec<u8>,
    layers: Vec<(Layer, u64)>,
    rejects: Vec<(&'static str, u64)>,
    decode: Duration,
    write: Duration,
    gold: Duration,
}

/// Commits staged batches, one at a time and in order. Holds only paths: cheap to clone into the
/// thread that commits beside the next batch's stages.
#[derive(Clone)]
pub struct Committer {
    writer: CompactWriter,
    checkpoint: Checkpoint,
    test_pause_before_commit: Option<Duration>,
}

impl Committer {
    /// Makes a staged batch durable and visible: its plan (when new) before any of its files
    /// leaves staging, the files synced and renamed, then gold's state and the commit entry, then
    /// retention. The caller commits batches in order, each after the previous one's commit.
    pub fn commit(&self, staged: StagedBatch) -> Result<BatchOutcome> {
        let t = Instant::now();
        let plan = &staged.plan;
        if staged.write_plan {
            // The write-ahead entry: before any file of the batch is visible.
            self.checkpoint.write_plan(plan)?;
        }
        self.writer.publish(staged.files)?;
        if let Some(pause) = self.test_pause_before_commit {
            info!(
                "[processor] test pause before the commit of batch {} ({pause:?})",
                plan.batch
            );
            std::thread::sleep(pause);
        }
        self.checkpoint
            .write_state(plan.batch, &staged.gold_state)?;
        self.checkpoint.write_commit(&staged.commit)?;
        for layer in Layer::ALL {
            self.writer.apply_retention(layer, plan.batch)?;
        }
        Ok(BatchOutcome {
            commit: staged.commit,
            planned_at: plan.planned_at,
            layers: staged.layers,
            rejects: staged.rejects,
            decode: staged.decode,
            write: staged.write,
            gold: staged.gold,
            commit_time: t.elapsed(),
        })
    }
}

impl BatchSink {
    /// Opens the output and checkpoint folders and restores gold state of the last commit.
    pub fn open(config: &ProcessorConfig) -> Result<(Self, checkpoint::Recovery)> {
        let writer = CompactWriter::open(&config.output_path, config.max_files_per_sink)?;
        let checkpoint = Checkpoint::open(&config.checkpoint_path(), &config.kafka.topic)?;
        let recovery = checkpoint.recover()?;
        let mut gold = GoldState::new(
            micros(config.gold_window),
            micros(config.gold_watermark_delay),
            config.gold_output_mode,
        );
        if let Some(commit) = &recovery.last_commit {
            if let Some(bytes) = checkpoint.read_state(commit.batch)? {
                gold.restore(&bytes).map_err(|detail| Error::Checkpoint {
                    path: checkpoint
                        .root()
                        .join("state")
                        .join(commit.batch.to_string()),
                    detail,
                })?;
            }
        }
        let sink = BatchSink {
            topic: config.kafka.topic.clone(),
            committer: Committer {
                writer: writer.clone(),
                checkpoint,
                test_pause_before_commit: config.test_pause_before_commit,
            },
            writer,
            gold,
            show_previews: config.show_previews,
        };
        Ok((sink, recovery))
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.committer.checkpoint
    }

    /// What commits this sink's batches.
    pub fn committer(&self) -> Committer {
        self.committer.clone()
    }

    /// Decodes, builds and writes every layer of a planned batch into staging. `new`: the plan
    /// is not on disk yet (its commit writes it).
    pub fn stage(
        &mut self,
        plan: BatchPlan,
        new: bool,
        mut raw: RawBatch,
        lost: u64,
    ) -> Result<StagedBatch> {
        // Arrival order across partitions varies; (partition, offset) order makes every file of a
        // re-run identical to the first attempt.
        raw.messages
            .sort_unstable_by_key(|m| (m.partition, m.offset));
        let t = Instant::now();
        let decoded = DecodedBatch::decode(&raw);
        let decode = t.elapsed();
        tracing::debug!(
            "[processor] batch {}: sorted and decoded in {decode:?}",
            plan.batch
        );

        let t = Instant::now();
        let staged = write_layers(
            &self.writer,
            &raw,
            &decoded,
            &mut self.gold,
            &self.topic,
            &plan,
        )?;
        let write = t.elapsed();
        let (files, layers, gold_out, gold) =
            (staged.files, staged.layers, staged.gold, staged.gold_time);
        if self.show_previews {
            println!("{}", progress::silver_preview(&decoded));
        }
        let mut rejects: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (_, reason) in &decoded.rejects {
            *rejects.entry(reason.code()).or_default() += 1;
        }
        let commit = BatchCommit {
            batch: plan.batch,
            rows: raw.messages.len() as u64,
            layers: layers
                .iter()
                .map(|(l, n)| (l.folder().to_string(), *n))
                .collect(),
            late_rows: gold_out.late,
            lost_offsets: lost,
            watermark: gold_out.watermark,
        };
        Ok(StagedBatch {
            plan,
            write_plan: new,
            files,
            commit,
            gold_state: self.gold.to_bytes(),
            layers,
            rejects: rejects.into_iter().collect(),
            decode,
            write,
            gold,
        })
    }

    /// [`Self::stage`] and [`Committer::commit`] one after the other.
    pub fn process(
        &mut self,
        plan: BatchPlan,
        new: bool,
        raw: RawBatch,
        lost: u64,
    ) -> Result<BatchOutcome> {
        let staged = self.stage(plan, new, raw, lost)?;
        self.committer.commit(staged)
    }
}

/// The sink and the run's counters.
struct Engine {
    sink: BatchSink,
    last_batch_start: Option<Instant>,
    summary: RunSummary,
}

/// Runs until `stop` is set (finishing the batch in flight), or until everything present at start
/// is processed with the available-now trigger.
pub fn run(config: &ProcessorConfig, stop: &AtomicBool) -> Result<RunSummary> {
    run_with_drain(config, stop, None)
}

/// [`run`], and when `drain` is set: process everything in the topic at that moment, then return
/// (the local stack uses it on Ctrl-C, once its producer has flushed, so nothing sent is left out).
pub fn run_with_drain(
    config: &ProcessorConfig,
    stop: &AtomicBool,
    drain: Option<&AtomicBool>,
) -> Result<RunSummary> {
    config.validate()?;
    tune_allocator();
    let starting = StartingOffsets::parse(&config.starting_offsets, &config.kafka.topic)?;
    let (sink, mut recovery) = BatchSink::open(config)?;

    info!(
        "[processor] Connecting to {}, topic={}, output={}, checkpoint={}, trigger={:?}",
        config.kafka.bootstrap_servers,
        config.kafka.topic,
        config.output_path.display(),
        sink.checkpoint().root().display(),
        config.trigger
    );
    let source = KafkaSource::new(
        &config.kafka.bootstrap_servers,
        &config.kafka.topic,
        &config.group_id,
    )?;
    let watermarks = source.wait_ready(config.connect_timeout)?;
    check_topic_identity(
        config,
        &source,
        sink.checkpoint(),
        &mut recovery,
        &watermarks,
    )?;
    let mut next_offsets = match recovery.next_offsets {
        Some(n) => {
            info!(
                "[processor] resuming from the checkpoint: next batch {}, offsets {n:?}",
                recovery.next_batch
            );
            n
        }
        None => {
            let n = starting.resolve(&watermarks)?;
            info!(
                "[processor] no checkpoint: starting at {n:?} (STARTING_OFFSETS={})",
                config.starting_offsets
            );
            n
        }
    };
    let mut next_batch = recovery.next_batch;
    let mut engine = Engine {
        sink,
        last_batch_start: None,
        summary: RunSummary::default(),
    };

    // The available-now target: what is in the topic now.
    let target: BTreeMap<i32, i64> = match config.trigger {
        Trigger::AvailableNow => highs(&watermarks),
        Trigger::Interval(_) => BTreeMap::new(),
    };
    let interval = match config.trigger {
        Trigger::Interval(d) => d,
        Trigger::AvailableNow => Duration::ZERO,
    };
    metrics::record_start(interval);

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
            let mut in_flight: Option<InFlight<'_>> = recovery.pending.map(|plan| {
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
                        if drain.is_some_and(|d| d.load(Ordering::Relaxed))
                            && !planner.available_now
                        {
                            info!("[processor] draining: processing what is in the topic now, then stopping");
                            planner.target = highs(&watermarks);
                            planner.available_now = true;
                        }
                        let (ranges, lost) = planner.plan(&next_offsets, &watermarks)?;
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
                    planned_at: txn_core::time::now_micros(),
                    ranges: next.ranges,
                });
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
                    warn!(
                        "[processor] batch {} is re-run with its planned offsets {:?}, though Kafka now ends some of them earlier ({read_ranges:?})",
                        plan.batch, plan.ranges
                    );
                }
                next_offsets = plan.ends();
                next_batch = plan.batch + 1;
                // When the next batch follows at once, its read overlaps this batch's processing.
                let back_to_back = interval.is_zero() || planner.available_now;
                if back_to_back {
                    // Read the next batch while this one is decoded and written. Its plan is
                    // written only after this batch commits; reading has no side effects.
                    if let Ok(watermarks) = source.watermarks() {
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
                let committer = engine.sink.committer();
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
    info!("[processor] stopped: {}", engine.summary);
    Ok(engine.summary)
}

/// A topic deleted and created again under the checkpoint's feet has another topic id: its
/// offsets are not the old topic's, so resuming at the checkpoint's offsets would skip or mix
/// records. With FAIL_ON_DATA_LOSS, stop and say so; without, read the new topic from its
/// beginning. The id is recorded the first time the broker tells it.
fn check_topic_identity(
    config: &ProcessorConfig,
    source: &KafkaSource,
    checkpoint: &checkpoint::Checkpoint,
    recovery: &mut checkpoint::Recovery,
    watermarks: &Watermarks,
) -> Result<()> {
    let Some(now) = source.topic_id() else {
        return Ok(());
    };
    let topic = &config.kafka.topic;
    match checkpoint.topic_id()? {
        Some(recorded) if recorded == now => return Ok(()),
        Some(recorded) if recovery.next_offsets.is_some() => {
            let what = format!(
                "topic {topic} was deleted and created again: the checkpoint {} follows topic id {recorded}, the topic now has id {now}, and its offsets are not the old topic's",
                checkpoint.root().display()
            );
            if config.fail_on_data_loss || recovery.pending.is_some() {
                return Err(Error::DataLoss(format!(
                    "{what}; to start over, remove the checkpoint folder"
                )));
            }
            warn!("[processor] {what}: reading the new topic from its earliest offsets (FAIL_ON_DATA_LOSS=false)");
            recovery.next_offsets =
                Some(watermarks.iter().map(|(&p, &(low, _))| (p, low)).collect());
        }
        _ => {}
    }
    checkpoint.record_topic_id(topic, &now)
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

/// Plans batches: ranges from the next offsets towards the target, and offsets lost on the way.
struct Planner<'a> {
    config: &'a ProcessorConfig,
    /// Where to stop (available-now, or draining); empty: follow the topic.
    target: BTreeMap<i32, i64>,
    available_now: bool,
}

impl Planner<'_> {
    fn plan(
        &self,
        next: &BTreeMap<i32, i64>,
        watermarks: &Watermarks,
    ) -> Result<(Vec<OffsetRange>, u64)> {
        let (ranges, notes) = source::plan(
            next,
            watermarks,
            &self.target,
            self.config.max_offsets_per_trigger,
            self.config.fail_on_data_loss,
        )?;
        for (p, from, to) in &notes.lost {
            warn!("[processor] data loss: partition {p} offsets {from}..{to} are gone (FAIL_ON_DATA_LOSS=false)");
        }
        Ok((
            ranges,
            notes
                .lost
                .iter()
                .map(|(_, from, to)| (to - from).max(0) as u64)
                .sum(),
        ))
    }
}

/// Keeps freed batch buffers in the heap for the next batch instead of returning them to the
/// kernel: glibc otherwise maps every large buffer anew, and the page faults of touching fresh
/// memory cost more than the work done in it. Peak memory is unchanged (the next batch needs it),
/// as long as all threads share few arenas.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        const M_TRIM_THRESHOLD: libc::c_int = -1;
        const M_MMAP_THRESHOLD: libc::c_int = -3;
        const M_ARENA_MAX: libc::c_int = -8;
        libc::mallopt(M_MMAP_THRESHOLD, 512 << 20);
        // Every batch spawns its layer and commit threads anew; with glibc's default of up to
        // 8 arenas per core each would keep its own batch-sized free memory (peak RSS 550–620
        // MiB end to end instead of ~300).
        libc::mallopt(M_ARENA_MAX, 2);
        libc::mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// CPU time of the calling thread (for debug timings).
pub fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of the whole process, every thread, user and system (for benchmarks).
pub fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Peak resident memory of this process (Linux `VmHWM`), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The latest offset of each partition.
fn highs(watermarks: &Watermarks) -> BTreeMap<i32, i64> {
    watermarks
        .iter()
        .map(|(&p, &(_, high))| (p, high))
        .collect()
}

/// Offsets left in the topic after this batch.
/// What is left in each partition after `ranges` (the input lag, in offsets).
fn lag(watermarks: &Watermarks, ranges: &[OffsetRange]) -> Vec<(i32, u64)> {
    ranges
        .iter()
        .map(|r| {
            let left = watermarks
                .get(&r.partition)
                .map_or(0, |&(_, high)| (high - r.end).max(0) as u64);
            (r.partition, left)
        })
        .collect()
}

/// Sleeps until the next multiple of `interval` since `started` (Spark's processing-time trigger:
/// a batch that overran its slot is followed at once). Returns the tick count reached.
fn wait_for_tick(stop: &dyn Fn() -> bool, started: Instant, interval: Duration, ticks: u32) -> u32 {
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

fn sleep_unless(stop: &dyn Fn() -> bool, total: Duration) {
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

impl Engine {
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
            batch: plan.batch,
            bytes: raw.bytes() as u64,
            read: ctx.read,
            since_previous,
            ranges: plan.ranges.clone(),
            lag: ctx.lag.iter().map(|(_, n)| n).sum(),
            lags: ctx.lag,
            rerun: ctx.rerun,
            ..BatchReport::default()
        };
        let new = !ctx.rerun;
        let staged = self.sink.stage(plan, new, raw, ctx.lost_in_plan)?;
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
        let mut report = committing.report;
        source.commit_group_offsets(&report.ranges);
        let commit = &outcome.commit;
        report.rows = commit.rows;
        report.layers = outcome.layers;
        report.rejects = outcome.rejects;
        report.late = commit.late_rows;
        report.lost = commit.lost_offsets;
        report.decode = outcome.decode;
        report.write = outcome.write;
        report.commit = outcome.commit_time;
        report.watermark = commit.watermark;
        metrics::record_batch(&report, outcome.planned_at);
        progress::log_batch(&report);
        self.summary.batches += 1;
        self.summary.rows += commit.rows;
        self.summary.late += commit.late_rows;
        self.summary.bytes += report.bytes;
        self.summary.read += report.read;
        self.summary.decode += report.decode;
        self.summary.write += report.write;
        self.summary.commit += waited;
        Ok(())
    }
}

/// A scoped thread with a name (seen in `top -H`, perf and panic messages). Like
/// `Scope::spawn`, panics only when the system cannot create a thread.
pub(crate) fn spawn<'s, 'e, T: Send + 's>(
    s: &'s std::thread::Scope<'s, 'e>,
    name: &str,
    f: impl FnOnce() -> T + Send + 's,
) -> std::thread::ScopedJoinHandle<'s, T> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn_scoped(s, f)
        .expect("failed to spawn thread")
}

/// Rows written per layer.
type LayerRows = Vec<(Layer, u64)>;

/// Runs `f`, logging (debug) how long it took and how much CPU its thread spent.
fn timed<T>(batch: u64, layer: Layer, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let cpu = thread_cpu();
    let out = f()?;
    tracing::debug!(
        "[processor] batch {batch}: {} built and staged in {:?} ({:?} of CPU)",
        layer.folder(),
        t.elapsed(),
        thread_cpu().saturating_sub(cpu)
    );
    Ok(out)
}

/// What [`write_layers`] did: the staged files, the rows per layer, and gold's update.
struct StagedLayers {
    files: Vec<writer::StagedFile>,
    layers: LayerRows,
    gold: gold::GoldBatch,
    gold_time: Duration,
}

/// Applies the batch to gold's windows, builds every non-empty layer and writes it into
/// staging. Bronze and silver have a thread each; this thread updates gold (serial: it is the
/// windows' state), then writes raw CSV, quarantine and gold.
fn write_layers(
    writer: &CompactWriter,
    raw: &RawBatch,
    decoded: &DecodedBatch<'_>,
    gold_state: &mut GoldState,
    topic: &str,
    plan: &BatchPlan,
) -> Result<StagedLayers> {
    let (at, id) = (plan.planned_at, plan.batch);
    // The payload columns are encoded straight from the messages ([`chunk`]). Without rejects,
    // silver's `json_str` is bronze's `value`: bronze's encoded chunks go to silver as soon as
    // they are ready, instead of compressing the same bytes twice.
    // (The sender moves into bronze's thread: if bronze fails, silver's wait ends.)
    let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel::<Vec<writer::SharedChunk>>(1);
    let sharing = decoded.rejects.is_empty();
    let mut gold_out = gold::GoldBatch::default();
    let mut gold_time = Duration::ZERO;
    let files = std::thread::scope(|s| {
        let bronze = spawn(s, "bronze", move || {
            timed(id, Layer::Bronze, || {
                let n = raw.messages.len();
                if n == 0 {
                    // A batch that only records lost offsets: no file.
                    return Ok(None);
                }
                let schema = layers::bronze::schema();
                let descr = writer::column_descr(&schema, layers::bronze::VALUE)?;
                let chunks =
                    writer::encode_text_groups(&descr, n, &|row| decoded.text(row as u32))?;
                if sharing {
                    let _ = chunk_tx.send(chunks.clone());
                }
                drop(chunk_tx);
                let rows = layers::bronze::build(raw, topic)?;
                let wait = || Ok(Some(chunks.clone()));
                let values = || decoded.value_column(0..n as u32);
                let (file, _) = writer.write_parquet_with(
                    Layer::Bronze,
                    &rows,
                    at,
                    id,
                    writer::Shared {
                        column: layers::bronze::VALUE,
                        wait: &wait,
                        values: &values,
                    },
                )?;
                Ok(Some(file))
            })
        });
        let silver = spawn(s, "silver", move || {
            timed(id, Layer::Silver, || {
                let n = decoded.valid.len();
                if n == 0 {
                    return Ok(None);
                }
                // `json_str` comes encoded from bronze, or is encoded here from the valid rows.
                let rows = layers::silver::build(decoded)?;
                let wait = || -> Result<Option<Vec<writer::SharedChunk>>> {
                    if sharing {
                        return Ok(chunk_rx.recv().ok());
                    }
                    let descr = writer::column_descr(&rows.schema(), layers::silver::JSON_STR)?;
                    let valid = &decoded.valid;
                    writer::encode_text_groups(&descr, n, &|row| decoded.text(valid[row].0))
                        .map(Some)
                };
                let json = || layers::silver::json_column(decoded);
                let (file, _) = writer.write_parquet_with(
                    Layer::Silver,
                    &rows,
                    at,
                    id,
                    writer::Shared {
                        column: layers::silver::JSON_STR,
                        wait: &wait,
                        values: &json,
                    },
                )?;
                Ok(Some(file))
            })
        });
        let mut rest = Vec::new();
        let t = Instant::now();
        gold_out = gold_state.apply_batch(decoded);
        gold_time = t.elapsed();
        let gold_rows = &gold_out.rows;
        let staged = timed(id, Layer::RawCsv, || {
            if decoded.valid.is_empty() {
                return Ok(None);
            }
            writer
                .write_pieces(Layer::RawCsv, at, id, |sink| {
                    layers::raw_csv::write(decoded, sink)
                })
                .map(Some)
        })
        .and_then(|csv| {
            rest.extend(csv);
            timed(id, Layer::Quarantine, || {
                if decoded.rejects.is_empty() {
                    return Ok(None);
                }
                let rows = layers::quarantine::build(decoded, topic, at)?;
                writer
                    .write_parquet(Layer::Quarantine, &rows, at, id)
                    .map(Some)
            })
        })
        .and_then(|quarantine| {
            rest.extend(quarantine);
            timed(id, Layer::Gold, || {
                if gold_rows.is_empty() {
                    return Ok(None);
                }
                let rows = gold::build(gold_rows)?;
                writer.write_parquet(Layer::Gold, &rows, at, id).map(Some)
            })
        })
        .map(|gold| rest.extend(gold));
        let panicked = || Error::Internal("a layer writer thread panicked".into());
        let bronze = bronze.join().map_err(|_| panicked())??;
        let silver = silver.join().map_err(|_| panicked())??;
        staged?;
        let mut files: Vec<_> = bronze.into_iter().collect();
        files.extend(silver);
        files.extend(rest);
        Ok::<_, Error>(files)
    })?;
    let valid = decoded.valid.len() as u64;
    let layers = vec![
        (Layer::Bronze, raw.messages.len() as u64),
        (Layer::Silver, valid),
        (Layer::Quarantine, decoded.rejects.len() as u64),
        (Layer::RawCsv, valid),
        (Layer::Gold, gold_out.rows.len() as u64),
    ];
    Ok(StagedLayers {
        files,
        layers,
        gold: gold_out,
        gold_time,
    })
}

/// Entry point of the `processor` binary (and of `pipeline processor`): bad settings exit 2 with
/// one line, a failure exits 1 with one line, a stop (SIGINT/SIGTERM) finishes the batch in
/// flight and exits 0.
/// The dataset this processor serves (the `dataset` label of its metrics).
pub const DATASET: &str = "transactions";

pub fn main_with_args(args: impl IntoIterator<Item = String>) -> ExitCode {
    let Some(stop) = txn_core::settings::startup("processor") else {
        return ExitCode::from(2);
    };
    let config = ProcessorConfig::try_parse_from(args).unwrap_or_else(|e| e.exit());
    if let Some(addr) = &config.metrics_addr {
        match txn_core::telemetry::serve_metrics(addr, DATASET, &config.kafka.topic) {
            Ok(served) => info!("[processor] metrics at http://{served}/metrics"),
            Err(e) => {
                error!("[processor] invalid setting: {e}");
                return ExitCode::from(2);
            }
        }
    }
    match run(&config, &stop) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e @ Error::Config(_)) => {
            error!("[processor] {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            error!("[processor] {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_in(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn a_staged_batch_is_invisible_and_unplanned_until_its_commit() {
        let root = std::env::temp_dir().join(format!("staged-batch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut config = ProcessorConfig::try_parse_from(["processor"]).unwrap();
        config.output_path = root.clone();
        config.checkpoint_dir = Some(root.join("_chk"));
        let (mut sink, _) = BatchSink::open(&config).unwrap();

        let good = br#"{"txn_id": "t1", "event_ts": "2025-11-07T07:30:38.730729+00:00", "card_id": "c1", "amount": 12.5}"#;
        let mut raw = RawBatch::default();
        raw.push(0, 0, Some(0), Some(b"c1"), Some(good));
        raw.push(0, 1, Some(0), Some(b"c1"), Some(b"not json"));
        let plan = BatchPlan {
            batch: 0,
            planned_at: 1_762_500_638_730_729,
            ranges: vec![OffsetRange {
                partition: 0,
                start: 0,
                end: 2,
            }],
        };
        let staged = sink.stage(plan, true, raw, 0).unwrap();
        // Written, but only in staging; no plan and no commit yet.
        for layer in ["bronze", "silver", "quarantine", "raw_csv"] {
            assert!(files_in(&root.join(layer)).is_empty(), "{layer} is empty");
            assert_eq!(
                files_in(&root.join(layer).join("_staging")).len(),
                1,
                "{layer} staged"
            );
        }
        assert!(files_in(&root.join("_chk/offsets")).is_empty());
        assert!(sink.checkpoint().recover().unwrap().pending.is_none());

        let outcome = sink.committer().commit(staged).unwrap();
        assert_eq!(outcome.commit.rows, 2);
        for layer in ["bronze", "silver", "quarantine", "raw_csv"] {
            assert_eq!(files_in(&root.join(layer)).len(), 1, "{layer} in place");
            assert!(files_in(&root.join(layer).join("_staging")).is_empty());
        }
        assert_eq!(files_in(&root.join("_chk/offsets")), vec!["0".to_string()]);
        assert_eq!(files_in(&root.join("_chk/commits")), vec!["0".to_string()]);
        let recovery = sink.checkpoint().recover().unwrap();
        assert!(recovery.pending.is_none());
        assert_eq!(recovery.next_batch, 1);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
