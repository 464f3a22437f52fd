//! The streaming processor of SPEC §2–§4. One data flow per batch:
//!
//! ```text
//! plan ──► read ──► decode ──► layers ──► write ──► commit
//! ```
//! [`engine`] runs the loop (trigger, plan, read ahead, stage, commit, report); [`source`] plans
//! and reads, [`layers`] and [`gold`] turn a batch into rows, [`writer`] puts one file per layer
//! in place, [`checkpoint`] makes it exactly once, [`progress`] and [`metrics`] report, [`os`]
//! holds the allocator tuning and the CPU and memory probes. This file: the batch sink (a
//! batch's stages and its commit) and the binary's entry point.

pub mod checkpoint;
pub mod config;
pub mod engine;
pub mod error;
pub mod gold;
pub mod layers;
pub mod metrics;
pub mod os;
pub mod progress;
pub mod source;
pub mod writer;

use std::collections::BTreeMap;
use std::fmt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use tracing::{error, info};

pub use config::{ProcessorConfig, Trigger};
pub use engine::{run, run_with_drain};
pub use error::{Error, Result};
pub use os::{peak_rss_kib, process_cpu, thread_cpu, tune_allocator};

use checkpoint::{BatchCommit, BatchPlan, Checkpoint};
use gold::GoldState;
use layers::{DecodedBatch, Layer};
use source::RawBatch;
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

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
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

/// The dataset this processor serves (the `dataset` label of its metrics).
pub const DATASET: &str = "transactions";

/// Entry point of the `processor` binary (and of `pipeline processor`): bad settings exit 2 with
/// one line, a failure exits 1 with one line, a stop (SIGINT/SIGTERM) finishes the batch in
/// flight and exits 0.
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
    use crate::source::OffsetRange;

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
