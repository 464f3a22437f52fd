//! A batch's stages after the read, for any dataset: decode → operators → outputs staged → commit.
//!
//! A batch is first staged ([`Stages::stage`]: decoded, run through the operators, every output
//! staged; nothing visible), then committed ([`Committer::commit`]: plan, every sink's pre-commit,
//! then each sink's commit in the sink list's order, operator state, commit entry, upkeep). The
//! commit touches only the sinks and the checkpoint, so it runs beside the next batch's stages; the checkpoint
//! still sees one batch at a time, because a batch's plan is written by its own commit, after the
//! previous commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::checkpoint::{BatchCommit, BatchPlan, Checkpoint, CheckpointLock, Recovery};
use super::dataset::{Batch, Dataset, Derived};
use super::group::{GroupCheckpoint, Intent, Rolled};
use super::operator;
use super::output::{Output, StageInput, Staged};
use super::progress::{self, OperatorFigures};
use super::source::RawBatch;
use crate::config::ProcessorConfig;
use crate::error::{Error, Result};
use crate::sinks::files::CompactWriter;
use crate::sinks::{self, Piece, PreCommit, Sink, SinkBatch, Start};
use crate::{spawn, thread_cpu};

/// Each output's staged piece, by output name.
type NamedPieces = Vec<(String, Staged)>;

/// A dataset with its file writer and committer: stages batches and hands them to the commit.
pub struct Stages<D: Dataset> {
    dataset: D,
    /// The dataset's outputs (declared once, at start).
    outputs: Vec<Box<dyn Output<D>>>,
    /// The sink (its index in the committer's list) of each output.
    routes: Vec<usize>,
    topic: String,
    writer: CompactWriter,
    committer: Committer,
    show_previews: bool,
    /// The writer schemas of Avro values, and the registry they come from.
    schemas: super::schemas::Schemas,
    /// Held for as long as the stages live (the run).
    _lock: Arc<CheckpointLock>,
}

/// What one batch's stages after the read produced.
pub struct BatchOutcome {
    pub commit: BatchCommit,
    /// When the batch was planned (UTC microseconds): its commit latency starts there.
    pub planned_at: i64,
    /// Rows per output, in the dataset's order.
    pub outputs: Vec<(String, u64)>,
    /// Quarantined rows by reason code.
    pub rejects: Vec<(&'static str, u64)>,
    pub decode: Duration,
    /// Operators and outputs staged.
    pub write: Duration,
    /// The operators alone (part of `write`).
    pub operators: Duration,
    /// The commit: plan, the sinks' pre-commits and commits, operator state, commit entry.
    pub commit_time: Duration,
    /// Each operator's late rows and watermark.
    pub operator_figures: Vec<OperatorFigures>,
}

/// A batch whose outputs are staged: what its commit needs.
#[must_use = "a staged batch is only visible once committed"]
pub struct StagedBatch {
    plan: BatchPlan,
    /// A new batch's plan is written by its commit; a re-run's plan is on disk already.
    write_plan: bool,
    /// Each output's piece, with the index of its sink.
    pieces: Vec<(usize, Piece)>,
    commit: BatchCommit,
    state: Vec<u8>,
    outputs: Vec<(String, u64)>,
    rejects: Vec<(&'static str, u64)>,
    decode: Duration,
    write: Duration,
    operators: Duration,
    operator_figures: Vec<OperatorFigures>,
}

/// Commits staged batches, one at a time and in order. Cheap to clone into the thread that
/// commits beside the next batch's stages.
#[derive(Clone)]
pub struct Committer {
    /// `None` for a scale-out member, whose batches are in the group checkpoint.
    checkpoint: Option<Checkpoint>,
    /// The sinks, in commit order.
    sinks: Arc<Vec<Box<dyn Sink>>>,
    test_pause_before_commit: Option<Duration>,
}

impl Committer {
    /// Makes a staged batch durable and visible: its plan (when new) before any of its outputs
    /// is visible; every sink's pre-commit (a refusal there leaves nothing visible); each sink's
    /// commit in the list's order; then the operators' state and the commit entry; then the
    /// sinks' upkeep. The caller commits batches in order, each after the previous one's commit.
    pub fn commit(&self, mut staged: StagedBatch) -> Result<BatchOutcome> {
        let t = Instant::now();
        let checkpoint = self.checkpoint.as_ref().ok_or_else(|| {
            Error::Internal("a scale-out member's batch committed as a lone processor's".into())
        })?;
        if staged.write_plan {
            // The write-ahead entry: before any output of the batch is visible.
            checkpoint.write_plan(&staged.plan)?;
        }
        let plan = &staged.plan;
        let batch = sink_batch(plan);
        let pre = self.pre_commit_all(&batch, std::mem::take(&mut staged.pieces))?;
        // A failed commit leaves the later sinks uncommitted; the batch is re-run at the next
        // start, and the sinks that committed it recognise it.
        self.commit_all(&batch, pre)?;
        if let Some(pause) = self.test_pause_before_commit {
            info!(
                "[processor] test pause before the commit of batch {} ({pause:?})",
                plan.batch
            );
            std::thread::sleep(pause);
        }
        checkpoint.write_state(plan.batch, &staged.state)?;
        checkpoint.write_commit(&staged.commit)?;
        for sink in self.sinks.iter() {
            sink.after_commit(plan.batch)?;
        }
        Ok(staged.outcome(t.elapsed()))
    }

    /// Commits a scale-out member's batch: every sink's pre-commit (the Kafka transaction opened,
    /// its records and the input offsets sent with the member's group generation; the files
    /// synced in staging), then the batch's intent and each of its partitions' state, then the
    /// sinks' commits, the Kafka transaction's being the decision, then the roll forward that
    /// puts the files in place (which the next owner of a partition would do, were this
    /// processor to die first).
    pub fn commit_member(
        &self,
        mut staged: StagedBatch,
        group: &GroupCheckpoint,
        sections: &BTreeMap<i32, Vec<u8>>,
    ) -> Result<BatchOutcome> {
        let t = Instant::now();
        let plan = &staged.plan;
        let batch = sink_batch(plan);
        let pre = self.pre_commit_all(&batch, std::mem::take(&mut staged.pieces))?;
        let (mut moves, mut deferred) = (Vec::new(), Vec::new());
        let recorded = self.sinks.iter().zip(&pre).try_for_each(|(sink, p)| {
            moves.extend(sink.moves(p)?);
            if let Some(d) = sink.deferred(p)? {
                deferred.push((sink.name().to_string(), d));
            }
            Ok(())
        });
        let intent = recorded.and_then(|()| {
            let intent = Intent {
                batch: plan.batch,
                planned_at: plan.planned_at,
                ranges: plan.ranges.clone(),
                moves,
                sections: sections.keys().copied().collect(),
                commit: staged.commit.clone(),
                deferred,
            };
            group
                .write_intent(&intent, sections)
                .inspect_err(|_| group.discard(&intent))
                .map(|()| intent)
        });
        let intent = match intent {
            Ok(intent) => intent,
            Err(e) => {
                self.abort_all(&batch, pre);
                return Err(e);
            }
        };
        // From here a failed commit may still have decided the batch (a commit whose answer was
        // lost): its intent stays, for whoever finds its offsets to roll forward. A transaction
        // aborted for certain (fenced: its partitions or its producer) decided nothing.
        if let Err(e) = self.commit_all(&batch, pre) {
            if matches!(e, Error::Fenced(_)) {
                group.discard(&intent);
            }
            return Err(e);
        }
        if let Some(pause) = self.test_pause_before_commit {
            info!(
                "[processor] test pause before the roll forward of batch {} ({pause:?})",
                plan.batch
            );
            std::thread::sleep(pause);
        }
        self.roll_forward(group, group.member(), plan.batch)?;
        for sink in self.sinks.iter() {
            sink.after_commit(plan.batch)?;
        }
        Ok(staged.outcome(t.elapsed()))
    }

    /// Finishes a decided batch of a member (this one's, or one whose partitions this one took
    /// up): its files put in place, then what its sinks deferred committed ([`Sink::roll_forward`]).
    pub fn roll_forward(
        &self,
        group: &GroupCheckpoint,
        member: &str,
        batch: u64,
    ) -> Result<Rolled> {
        group.roll_forward(member, batch, &|name, deferred| {
            let sink = self.sinks.iter().find(|s| s.name() == name).ok_or_else(|| {
                Error::Config(format!(
                    "batch {batch} of processor {member} has outputs of the {name} sink, which this processor does not have: do the processors of the group run with the same outputs (OUTPUT_FORMAT)?"
                ))
            })?;
            sink.roll_forward(deferred)
        })
    }

    /// Drops a staged batch that will not be committed: each sink removes what it staged.
    pub fn discard(&self, staged: StagedBatch) {
        for (sink, pieces) in self.sinks.iter().zip(self.by_sink(staged.pieces)) {
            sink.discard(pieces);
        }
    }

    /// The batch's pieces, grouped by sink in the sink list's order.
    fn by_sink(&self, pieces: Vec<(usize, Piece)>) -> Vec<Vec<Piece>> {
        let mut by_sink: Vec<Vec<Piece>> = self.sinks.iter().map(|_| Vec::new()).collect();
        for (sink, piece) in pieces {
            by_sink[sink].push(piece);
        }
        by_sink
    }

    /// Every sink's pre-commit, in order; on a refusal the sinks pre-committed so far are
    /// aborted and nothing of the batch is visible.
    fn pre_commit_all(
        &self,
        batch: &SinkBatch<'_>,
        pieces: Vec<(usize, Piece)>,
    ) -> Result<Vec<PreCommit>> {
        let mut pre: Vec<PreCommit> = Vec::with_capacity(self.sinks.len());
        for (sink, pieces) in self.sinks.iter().zip(self.by_sink(pieces)) {
            match sink.pre_commit(batch, pieces) {
                Ok(p) => pre.push(p),
                Err(e) => {
                    self.abort_all(batch, pre);
                    return Err(e);
                }
            }
        }
        Ok(pre)
    }

    /// Each sink's commit in order; after a failure the later sinks are aborted.
    fn commit_all(&self, batch: &SinkBatch<'_>, pre: Vec<PreCommit>) -> Result<()> {
        let mut sinks = self.sinks.iter().zip(pre);
        while let Some((sink, p)) = sinks.next() {
            if let Err(e) = sink.commit(batch, p) {
                for (later, p) in sinks {
                    later.abort(batch, p);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn abort_all(&self, batch: &SinkBatch<'_>, pre: Vec<PreCommit>) {
        for (sink, p) in self.sinks.iter().zip(pre) {
            sink.abort(batch, p);
        }
    }

    /// Whether a sink commits the batch's input offsets to the consumer group in its own commit
    /// (then the engine does not).
    pub fn sinks_commit_group_offsets(&self) -> bool {
        self.sinks.iter().any(|s| s.commits_group_offsets())
    }
}

/// A batch as its sinks see it.
fn sink_batch(plan: &BatchPlan) -> SinkBatch<'_> {
    SinkBatch {
        batch: plan.batch,
        planned_at: plan.planned_at,
        ranges: &plan.ranges,
        topic_id: plan.topic_id.as_deref(),
    }
}

impl StagedBatch {
    /// What the batch's commit reports, once it took `commit_time`.
    fn outcome(self, commit_time: Duration) -> BatchOutcome {
        BatchOutcome {
            commit: self.commit,
            planned_at: self.plan.planned_at,
            outputs: self.outputs,
            rejects: self.rejects,
            decode: self.decode,
            write: self.write,
            operators: self.operators,
            commit_time,
            operator_figures: self.operator_figures,
        }
    }
}

impl<D: Dataset> Stages<D> {
    /// Opens the output folders and the checkpoint, and restores the operators' state of the
    /// last commit.
    pub fn open(mut dataset: D, config: &ProcessorConfig) -> Result<(Self, Recovery)> {
        let outputs = dataset.outputs();
        let targets: Vec<_> = outputs.iter().map(|o| o.target()).collect();
        // Before anything touches the outputs: one writer per checkpoint.
        let lock = Arc::new(CheckpointLock::acquire(&config.checkpoint_path())?);
        let sinks::Sinks {
            writer,
            list: sinks,
        } = sinks::open(config, &targets)?;
        let routes = targets
            .iter()
            .map(|t| sinks.iter().position(|s| s.takes(t)).unwrap_or(0))
            .collect();
        let checkpoint = Checkpoint::open(&config.checkpoint_path(), &config.kafka.topic)?;
        if let Some(n) = config.recover_from_batch {
            let replayed = checkpoint.recover_from(n)?;
            let name = txn_core::time::compact_utc(txn_core::time::now_micros());
            let mut files = 0;
            for sink in &sinks {
                files += sink.set_aside_after(n, &name)?;
            }
            warn!(
                "[processor] recovering from batch {n}: batches {replayed:?} are replayed; their checkpoint entries and {files} output files were moved aside (_set_aside_{name}); their Kafka topic records, if any, may be sent again"
            );
        }
        let recovery = checkpoint.recover()?;
        if let Some(commit) = &recovery.last_commit {
            let bytes = checkpoint.read_state(commit.batch)?;
            operator::restore_all(&mut dataset.operators(), &bytes).map_err(|detail| {
                Error::Checkpoint {
                    path: checkpoint
                        .root()
                        .join("state")
                        .join(commit.batch.to_string()),
                    detail,
                }
            })?;
        }
        let stages = Stages {
            dataset,
            outputs,
            routes,
            topic: config.kafka.topic.clone(),
            committer: Committer {
                checkpoint: Some(checkpoint),
                sinks: Arc::new(sinks),
                test_pause_before_commit: config.test_pause_before_commit,
            },
            writer,
            show_previews: config.show_previews,
            schemas: super::schemas::Schemas::from_config(config)?,
            _lock: lock,
        };
        Ok((stages, recovery))
    }

    /// The stages of a scale-out member: no lock and no checkpoint of its own (the group
    /// checkpoint holds its batches), its sinks [`sinks::open_member`]'s. The operators start
    /// empty: each partition's state is restored when the partition is taken up.
    pub fn open_member(
        dataset: D,
        config: &ProcessorConfig,
        member: &str,
        membership: Arc<crate::engine::source::membership::Membership>,
    ) -> Result<Self> {
        let outputs = dataset.outputs();
        let targets: Vec<_> = outputs.iter().map(|o| o.target()).collect();
        let sinks::Sinks {
            writer,
            list: sinks,
        } = sinks::open_member(config, &targets, member, membership)?;
        let routes = targets
            .iter()
            .map(|t| sinks.iter().position(|s| s.takes(t)).unwrap_or(0))
            .collect();
        Ok(Stages {
            dataset,
            outputs,
            routes,
            topic: config.kafka.topic.clone(),
            committer: Committer {
                checkpoint: None,
                sinks: Arc::new(sinks),
                test_pause_before_commit: config.test_pause_before_commit,
            },
            writer,
            show_previews: config.show_previews,
            schemas: super::schemas::Schemas::from_config(config)?,
            _lock: Arc::new(CheckpointLock::none()),
        })
    }

    /// The dataset's stateful operators.
    pub fn operators(&mut self) -> Vec<&mut dyn super::operator::Operator> {
        self.dataset.operators()
    }

    /// Starts every sink, before the first batch (see [`Sink::start`]).
    pub fn start_sinks(&mut self, start: &Start<'_>) -> Result<()> {
        for sink in self.sinks_mut()? {
            sink.start(start)?;
        }
        Ok(())
    }

    fn sinks_mut(&mut self) -> Result<&mut Vec<Box<dyn Sink>>> {
        Arc::get_mut(&mut self.committer.sinks).ok_or_else(|| {
            Error::Internal("the sinks are changed once a batch is committing".into())
        })
    }

    pub fn checkpoint(&self) -> Result<&Checkpoint> {
        self.committer.checkpoint.as_ref().ok_or_else(|| {
            Error::Internal("a scale-out member has no checkpoint of its own".into())
        })
    }

    /// Drops what would need a broker at the commit (topic records) instead of sending it (for
    /// benchmarks of the stages, which have no broker).
    pub fn discard_topic_records(&mut self) -> Result<()> {
        for sink in self.sinks_mut()? {
            sink.without_broker();
        }
        Ok(())
    }

    /// What commits this dataset's batches.
    pub fn committer(&self) -> Committer {
        self.committer.clone()
    }

    /// Decodes a planned batch, runs it through the operators and stages every output. `new`:
    /// the plan is not on disk yet (its commit writes it).
    pub fn stage(
        &mut self,
        plan: BatchPlan,
        new: bool,
        mut raw: RawBatch,
        lost: u64,
    ) -> Result<StagedBatch> {
        // Arrival order across partitions varies; (partition, offset) order makes every output of
        // a re-run identical to the first attempt.
        raw.messages
            .sort_unstable_by_key(|m| (m.partition, m.offset));
        self.dataset.take_control(&mut raw);
        let t = Instant::now();
        self.schemas.unframe(&mut raw)?;
        let batch = Batch::<D>::decode(&raw);
        let decode = t.elapsed();
        tracing::debug!(
            "[processor] batch {}: sorted and decoded in {decode:?}",
            plan.batch
        );

        let t = Instant::now();
        let (derived, staged, operators) = self.stage_outputs(&raw, &batch, &plan)?;
        let write = t.elapsed();
        if self.show_previews {
            progress::print_block("preview", plan.batch, &self.dataset.preview(&batch));
        }
        let mut pieces = Vec::new();
        let mut outputs = Vec::with_capacity(staged.len());
        for ((name, s), &sink) in staged.into_iter().zip(&self.routes) {
            outputs.push((name, s.rows));
            if let Some(piece) = s.piece {
                pieces.push((sink, piece));
            }
        }
        let late = derived.late_by_operator();
        let operator_figures = self
            .dataset
            .operators()
            .iter()
            .map(|op| OperatorFigures {
                name: op.name(),
                late: late
                    .iter()
                    .find(|(name, _)| *name == op.name())
                    .map_or(0, |(_, n)| *n),
                watermark: op.watermark(),
            })
            .collect();
        let commit = BatchCommit {
            batch: plan.batch,
            rows: raw.messages.len() as u64,
            layers: outputs.iter().cloned().collect(),
            late_rows: derived.late(),
            lost_offsets: lost,
            watermark: derived.watermark(),
        };
        crate::os::drop_aside(derived);
        Ok(StagedBatch {
            plan,
            write_plan: new,
            pieces,
            commit,
            state: operator::snapshot_all(&self.dataset.operators()),
            outputs,
            rejects: batch.reject_counts(),
            decode,
            write,
            operators,
            operator_figures,
        })
    }

    /// Stages the outputs: those on their own thread beside the operators, then the others, each
    /// on a thread too, with the operators' results. Returns the results, each output's piece (in
    /// the dataset's order) and the operators' time.
    fn stage_outputs<'a>(
        &mut self,
        raw: &'a RawBatch,
        batch: &Batch<'a, D>,
        plan: &BatchPlan,
    ) -> Result<(D::Derived, NamedPieces, Duration)> {
        let Stages {
            dataset,
            outputs,
            topic,
            writer,
            ..
        } = self;
        let (topic, files): (&str, &CompactWriter) = (topic, writer);
        let outputs: Vec<&dyn Output<D>> = outputs.iter().map(|o| &**o).collect();
        let input = StageInput {
            raw,
            batch,
            derived: None,
            plan,
            topic,
            files,
        };
        std::thread::scope(|s| {
            let threads = spawn_stages(s, &outputs, true, input);
            let t = Instant::now();
            let derived = dataset.operate(batch);
            let operators = t.elapsed();
            let mut staged: Vec<Option<Result<Staged>>> = outputs.iter().map(|_| None).collect();
            // The outputs of the operators' results, each on a thread of its own too.
            std::thread::scope(|s| {
                let input = StageInput {
                    derived: Some(&derived),
                    ..input
                };
                join_stages(&mut staged, spawn_stages(s, &outputs, false, input));
            });
            join_stages(&mut staged, threads);
            let staged = outputs
                .iter()
                .zip(staged)
                .filter_map(|(o, s)| s.map(|s| s.map(|s| (o.target().name(), s))))
                .collect::<Result<Vec<_>>>()?;
            Ok((derived, staged, operators))
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

/// A staging output's thread, with the output's index.
type StageThread<'s> = (usize, std::thread::ScopedJoinHandle<'s, Result<Staged>>);

/// Starts the stage of each output whose `own_thread()` is `own_thread`, each on a thread of its
/// own in `s`, named after the output.
fn spawn_stages<'s, 'e, 'a: 'e, D: Dataset>(
    s: &'s std::thread::Scope<'s, 'e>,
    outputs: &'e [&'e dyn Output<D>],
    own_thread: bool,
    input: StageInput<'e, 'a, D>,
) -> Vec<StageThread<'s>> {
    outputs
        .iter()
        .enumerate()
        .filter(|(_, o)| o.own_thread() == own_thread)
        .map(|(i, o)| {
            let name = o.target().name();
            let thread = spawn(s, &name.clone(), move || {
                timed(input.plan.batch, &name, || o.stage(&input))
            });
            (i, thread)
        })
        .collect()
}

/// Waits for each thread of `threads` and puts its result in its output's slot of `staged`.
fn join_stages(staged: &mut [Option<Result<Staged>>], threads: Vec<StageThread<'_>>) {
    for (i, handle) in threads {
        staged[i] = Some(
            handle
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("an output thread panicked".into()))),
        );
    }
}

/// Runs `f`, logging (debug) how long it took and how much CPU its thread spent.
fn timed<T>(batch: u64, output: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let cpu = thread_cpu();
    let out = f()?;
    tracing::debug!(
        "[processor] batch {batch}: {output} staged in {:?} ({:?} of CPU)",
        t.elapsed(),
        thread_cpu().saturating_sub(cpu)
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::transactions::Transactions;
    use crate::engine::source::OffsetRange;
    use crate::ProcessorConfig;
    use clap::Parser;

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
        config.output_path = root.clone().into();
        config.checkpoint_dir = Some(root.join("_chk").into());
        let (mut sink, _) = Stages::open(Transactions::new(&config), &config).unwrap();

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
            topic_id: None,
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
        assert!(sink
            .checkpoint()
            .unwrap()
            .recover()
            .unwrap()
            .pending
            .is_none());

        let outcome = sink.committer().commit(staged).unwrap();
        assert_eq!(outcome.commit.rows, 2);
        for layer in ["bronze", "silver", "quarantine", "raw_csv"] {
            assert_eq!(files_in(&root.join(layer)).len(), 1, "{layer} in place");
            assert!(files_in(&root.join(layer).join("_staging")).is_empty());
        }
        assert_eq!(files_in(&root.join("_chk/offsets")), vec!["0".to_string()]);
        assert_eq!(files_in(&root.join("_chk/commits")), vec!["0".to_string()]);
        let recovery = sink.checkpoint().unwrap().recover().unwrap();
        assert!(recovery.pending.is_none());
        assert_eq!(recovery.next_batch, 1);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
