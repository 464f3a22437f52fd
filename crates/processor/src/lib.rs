//! The streaming processor of SPEC §2–§4. One data flow per batch:
//!
//! ```text
//! plan ──► read ──► decode ──► layers ──► write ──► commit
//! ```
//! [`source`] plans and reads, [`layers`] and [`gold`] turn a batch into rows, [`writer`] puts one
//! file per layer in place, [`checkpoint`] makes it exactly once, [`progress`] reports.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod gold;
pub mod layers;
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
                " | {:.0} rows/s, {:.1} MB/s over {:.2} s of batches (waiting for reads {:.2} s, decode {:.2} s, write {:.2} s, commit {:.2} s)",
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
pub struct BatchSink {
    topic: String,
    writer: CompactWriter,
    checkpoint: Checkpoint,
    gold: GoldState,
    show_previews: bool,
    test_pause_before_commit: Option<Duration>,
}

/// What one batch's stages after the read produced.
pub struct BatchOutcome {
    pub commit: BatchCommit,
    pub layers: Vec<(Layer, u64)>,
    pub decode: Duration,
    /// Layers and files, gold's window update included.
    pub write: Duration,
    /// Gold's window update alone (part of `write`).
    pub gold: Duration,
    pub commit_time: Duration,
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
            writer,
            checkpoint,
            gold,
            show_previews: config.show_previews,
            test_pause_before_commit: config.test_pause_before_commit,
        };
        Ok((sink, recovery))
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Decodes, builds and writes every layer of a planned batch, then commits it.
    pub fn process(
        &mut self,
        plan: &BatchPlan,
        mut raw: RawBatch,
        lost: u64,
    ) -> Result<BatchOutcome> {
        // Arrival order across partitions varies; (partition, offset) order makes every file of a
        // re-run identical to the first attempt.
        raw.messages
            .sort_unstable_by_key(|m| (m.partition, m.offset));
        let t = Instant::now();
        let decoded = DecodedBatch::decode(&raw);
        let decode = t.elapsed();

        let t = Instant::now();
        let gold_out = self.gold.apply_batch(&decoded);
        let gold = t.elapsed();
        let layers = write_layers(
            &self.writer,
            &raw,
            &decoded,
            &gold_out.rows,
            &self.topic,
            plan,
        )?;
        let write = t.elapsed();

        if let Some(pause) = self.test_pause_before_commit {
            info!(
                "[processor] test pause before the commit of batch {} ({pause:?})",
                plan.batch
            );
            std::thread::sleep(pause);
        }

        let t = Instant::now();
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
        self.checkpoint
            .write_state(plan.batch, &self.gold.to_bytes())?;
        self.checkpoint.write_commit(&commit)?;
        for layer in Layer::ALL {
            self.writer.apply_retention(layer, plan.batch)?;
        }
        let commit_time = t.elapsed();
        if self.show_previews {
            println!("{}", progress::silver_preview(&decoded));
        }
        Ok(BatchOutcome {
            commit,
            layers,
            decode,
            write,
            gold,
            commit_time,
        })
    }
}

/// The sink and the run's counters.
struct Engine {
    sink: BatchSink,
    fail_on_data_loss: bool,
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
    let (sink, recovery) = BatchSink::open(config)?;

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
        fail_on_data_loss: config.fail_on_data_loss,
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
        let read = |ranges: Vec<OffsetRange>| s.spawn(move || source.read(&ranges, &give_up));
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
                        if ranges.iter().all(OffsetRange::is_empty) {
                            if lost > 0 {
                                next_offsets =
                                    ranges.iter().map(|r| (r.partition, r.end)).collect();
                            }
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
                let plan = match next.existing {
                    Some(plan) => plan,
                    None => {
                        let plan = BatchPlan {
                            batch: next_batch,
                            planned_at: txn_core::time::now_micros(),
                            ranges: next.ranges,
                        };
                        // The write-ahead entry: before any file of the batch.
                        engine.sink.checkpoint().write_plan(&plan)?;
                        plan
                    }
                };
                let waited = Instant::now();
                let read_result = next.handle.join().unwrap_or_else(|_| {
                    Err(Error::Config("the Kafka reader thread panicked".into()))
                })?;
                let read_time = waited.elapsed();
                let Some((raw, lost_in_read)) = read_result else {
                    warn!(
                        "[processor] stop requested while Kafka was unreachable: batch {} will be re-run on restart",
                        plan.batch
                    );
                    break;
                };
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
                engine.execute(
                    source,
                    &plan,
                    raw,
                    lost_in_read,
                    read_time,
                    next.lag,
                    next.lost,
                    rerun,
                )?;
                if !back_to_back {
                    ticks = wait_for_tick(&interrupted, started, interval, ticks);
                }
            }
            Ok(())
        })();
        // Release a read still in flight (a prefetch, or one abandoned by an error).
        cancel.store(true, Ordering::Relaxed);
        result
    })?;
    info!("[processor] stopped: {}", engine.summary);
    Ok(engine.summary)
}

/// A batch whose read is under way: a new one (planned, plan not yet written) or the re-run of
/// a batch the last run planned but did not commit.
struct InFlight<'scope> {
    handle: std::thread::ScopedJoinHandle<'scope, Result<Option<(RawBatch, u64)>>>,
    ranges: Vec<OffsetRange>,
    existing: Option<BatchPlan>,
    lost: u64,
    lag: u64,
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
/// memory cost more than the work done in it. Peak memory is unchanged (the next batch needs it).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        const M_TRIM_THRESHOLD: libc::c_int = -1;
        const M_MMAP_THRESHOLD: libc::c_int = -3;
        libc::mallopt(M_MMAP_THRESHOLD, 512 << 20);
        libc::mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
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
fn lag(watermarks: &Watermarks, ranges: &[OffsetRange]) -> u64 {
    ranges
        .iter()
        .map(|r| {
            watermarks
                .get(&r.partition)
                .map_or(0, |&(_, high)| (high - r.end).max(0) as u64)
        })
        .sum()
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

impl Engine {
    /// Runs one planned batch to its commit. Returns false when a stop request abandoned it
    /// before any file was written (it is planned, so the next start re-runs it).
    /// Processes a batch whose messages were read, commits it, and reports it.
    #[allow(clippy::too_many_arguments)]
    fn execute(
        &mut self,
        source: &KafkaSource,
        plan: &BatchPlan,
        raw: RawBatch,
        lost_in_read: u64,
        read: Duration,
        lag: u64,
        lost_in_plan: u64,
        rerun: bool,
    ) -> Result<()> {
        let batch_start = Instant::now();
        let since_previous = self.last_batch_start.map(|t| batch_start.duration_since(t));
        self.last_batch_start = Some(batch_start);
        if lost_in_read > 0 {
            if self.fail_on_data_loss {
                return Err(Error::DataLoss(format!(
                    "{lost_in_read} offsets of batch {} were not delivered by the broker",
                    plan.batch
                )));
            }
            warn!("[processor] data loss: {lost_in_read} offsets of batch {} are gone (FAIL_ON_DATA_LOSS=false)", plan.batch);
        }
        let bytes = raw.bytes() as u64;
        let outcome = self.sink.process(plan, raw, lost_in_plan + lost_in_read)?;
        source.commit_group_offsets(&plan.ranges);
        let commit = &outcome.commit;

        let report = BatchReport {
            batch: plan.batch,
            rows: commit.rows,
            bytes,
            layers: outcome.layers.clone(),
            late: commit.late_rows,
            lost: commit.lost_offsets,
            read,
            decode: outcome.decode,
            write: outcome.write,
            commit: outcome.commit_time,
            since_previous,
            ranges: plan.ranges.clone(),
            lag,
            watermark: commit.watermark,
            rerun,
        };
        info!("[processor] {report}");
        self.summary.batches += 1;
        self.summary.rows += commit.rows;
        self.summary.late += commit.late_rows;
        self.summary.bytes += bytes;
        self.summary.read += read;
        self.summary.decode += outcome.decode;
        self.summary.write += outcome.write;
        self.summary.commit += outcome.commit_time;
        Ok(())
    }
}

/// Builds and writes every non-empty layer of the batch, the big ones in parallel. Returns the
/// rows per layer.
fn write_layers(
    writer: &CompactWriter,
    raw: &RawBatch,
    decoded: &DecodedBatch<'_>,
    gold_rows: &[gold::GoldRow],
    topic: &str,
    plan: &BatchPlan,
) -> Result<Vec<(Layer, u64)>> {
    let (at, id) = (plan.planned_at, plan.batch);
    let timed = |layer: Layer, f: &dyn Fn() -> Result<()>| -> Result<()> {
        let t = Instant::now();
        f()?;
        tracing::debug!(
            "[processor] batch {id}: {} built and written in {:?}",
            layer.folder(),
            t.elapsed()
        );
        Ok(())
    };
    // The payloads, copied once: bronze's `value`, and silver's `json_str` too when every
    // message of the batch is valid.
    let values = layers::payload_column(raw, raw.messages.iter(), |m| m.value);
    let shared_json = decoded.rejects.is_empty().then(|| values.clone());
    // Without rejects, silver's `json_str` is bronze's `value`: bronze's encoded chunk is copied
    // into the silver file instead of compressing the same bytes twice.
    // (The sender moves into bronze's thread: if bronze fails, silver's wait ends.)
    let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel::<Option<writer::SharedChunk>>(1);
    let sharing = shared_json.is_some();
    let values = &values;
    std::thread::scope(|s| {
        let bronze = s.spawn(move || {
            timed(Layer::Bronze, &|| {
                let rows = layers::bronze::build(raw, topic, values.clone())?;
                if sharing {
                    let (_, chunk) = writer.write_parquet_sharing(
                        Layer::Bronze,
                        &rows,
                        at,
                        id,
                        layers::bronze::VALUE,
                    )?;
                    let _ = chunk_tx.send(chunk);
                    Ok(())
                } else {
                    writer.write_parquet(Layer::Bronze, &rows, at, id).map(drop)
                }
            })
        });
        let shared = shared_json.clone();
        let silver = s.spawn(move || {
            timed(Layer::Silver, &|| {
                if decoded.valid.is_empty() {
                    return Ok(());
                }
                let rows = layers::silver::build(decoded, shared.clone())?;
                if sharing {
                    let wait = || chunk_rx.recv().ok().flatten();
                    writer.write_parquet_with(
                        Layer::Silver,
                        &rows,
                        at,
                        id,
                        (layers::silver::JSON_STR, &wait),
                    )?;
                } else {
                    writer.write_parquet(Layer::Silver, &rows, at, id)?;
                }
                Ok(())
            })
        });
        let rest = timed(Layer::RawCsv, &|| {
            if !decoded.valid.is_empty() {
                writer.write_bytes(Layer::RawCsv, &layers::raw_csv::build(decoded), at, id)?;
            }
            Ok(())
        })
        .and_then(|()| {
            timed(Layer::Quarantine, &|| {
                if !decoded.rejects.is_empty() {
                    writer.write_parquet(
                        Layer::Quarantine,
                        &layers::quarantine::build(decoded, topic, at)?,
                        at,
                        id,
                    )?;
                }
                Ok(())
            })
        })
        .and_then(|()| {
            timed(Layer::Gold, &|| {
                if !gold_rows.is_empty() {
                    writer.write_parquet(Layer::Gold, &gold::build(gold_rows)?, at, id)?;
                }
                Ok(())
            })
        });
        let join = |h: std::thread::ScopedJoinHandle<'_, Result<()>>| {
            h.join()
                .unwrap_or_else(|_| Err(Error::Config("a layer writer thread panicked".into())))
        };
        join(bronze)?;
        join(silver)?;
        rest
    })?;
    let valid = decoded.valid.len() as u64;
    Ok(vec![
        (Layer::Bronze, raw.messages.len() as u64),
        (Layer::Silver, valid),
        (Layer::Quarantine, decoded.rejects.len() as u64),
        (Layer::RawCsv, valid),
        (Layer::Gold, gold_rows.len() as u64),
    ])
}

/// Entry point of the `processor` binary (and of `pipeline processor`): bad settings exit 2 with
/// one line, a failure exits 1 with one line, a stop (SIGINT/SIGTERM) finishes the batch in
/// flight and exits 0.
pub fn main_with_args(args: impl IntoIterator<Item = String>) -> ExitCode {
    let Some(stop) = txn_core::settings::startup("processor") else {
        return ExitCode::from(2);
    };
    let config = ProcessorConfig::try_parse_from(args).unwrap_or_else(|e| e.exit());
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
