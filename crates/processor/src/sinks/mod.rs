//! The sinks, below the engine: where the outputs' staged pieces go and how they become visible.
//!
//! A sink is a two-phase committer (Arroyo's `TwoPhaseCommitter`, Kafka Streams' transactional
//! producer): the outputs stage pieces while a batch runs (nothing visible), then the engine's
//! commit hands each sink its pieces ([`Sink::pre_commit`]: everything made durable or sent, still
//! invisible, and anything the sink can refuse refused now), then commits the sinks one after the
//! other in the list's order ([`Sink::commit`]). A sink that committed a batch before a crash
//! recognises its re-run and changes nothing; [`Sink::start`] is where it looks.
//!
//! - [`files`]: compact Parquet and CSV files, one per layer per batch, renamed into place;
//! - [`delta`]: Delta Lake tables (`OUTPUT_FORMAT=delta`), the batch's input offsets in each
//!   table's log;
//! - [`kafka`]: topic records, in one Kafka transaction per batch that also commits the input
//!   offsets to the consumer group.
//!
//! [`open`] is the sink list: the only place that knows which sinks exist.

pub mod cassandra;
pub mod delta;
pub mod files;
pub mod kafka;

use std::any::Any;
use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use serde::{Deserialize, Serialize};
use txn_core::kafka::ClientSettings;

use crate::config::{OutputFormat, ProcessorConfig};
use crate::error::{Error, Result};
use delta::DeltaSink;
use files::{CompactWriter, FileLayer, FileSink};
use kafka::TopicSink;

/// Offsets [start, end) of one partition in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRange {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

impl OffsetRange {
    pub fn len(&self) -> u64 {
        (self.end - self.start).max(0) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What an output writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A layer of `OUTPUT_PATH`.
    Files(FileLayer),
    /// Records of a Kafka topic.
    Topic(String),
    /// Rows upserted into a Cassandra table.
    Cassandra(cassandra::CassandraTable),
}

impl Target {
    /// The output's name in logs, metrics and the checkpoint: its folder, or `topic:<name>`.
    pub fn name(&self) -> String {
        match self {
            Target::Files(layer) => layer.folder.to_string(),
            Target::Topic(topic) => format!("topic:{topic}"),
            Target::Cassandra(table) => format!("cassandra:{}", table.name),
        }
    }
}

/// A batch as its sinks see it.
#[derive(Debug, Clone, Copy)]
pub struct SinkBatch<'a> {
    pub batch: u64,
    /// When the batch was planned (UTC microseconds): the same in every attempt.
    pub planned_at: i64,
    /// Its input offsets.
    pub ranges: &'a [OffsetRange],
    /// The input topic's id when the broker tells it: offsets are only the same offsets within
    /// one topic id (a topic deleted and created again starts over).
    pub topic_id: Option<&'a str>,
}

/// A piece of one output for one batch, in the type its sink takes.
pub type Piece = Box<dyn Any + Send>;

/// What a sink's pre-commit leaves for its commit.
pub type PreCommit = Box<dyn Any + Send>;

/// A staged piece of one output, and the rows it holds.
#[must_use = "a staged piece is only visible once committed"]
pub struct Staged {
    pub rows: u64,
    /// `None`: nothing this batch (no file is written for no rows).
    pub piece: Option<Piece>,
}

impl Staged {
    pub fn nothing() -> Self {
        Staged {
            rows: 0,
            piece: None,
        }
    }

    pub fn new<P: Any + Send>(rows: u64, piece: P) -> Self {
        Staged {
            rows,
            piece: Some(Box::new(piece)),
        }
    }
}

/// The input's consumer group, as the sinks that commit input offsets need it at start.
pub trait InputGroup {
    /// The group's metadata for transactions (`None`: no group).
    fn metadata(&self) -> Option<ConsumerGroupMetadata>;
    /// Whether the group's committed offsets are the ends of `ranges` with this metadata.
    fn offsets_are(
        &self,
        ranges: &[OffsetRange],
        metadata: &str,
        timeout: Duration,
    ) -> Result<bool>;
    /// Whether a topic exists (`None`: the broker cannot say).
    fn topic_exists(&self, topic: &str) -> Result<Option<bool>>;
}

/// What a sink is given at start, before the first batch.
pub struct Start<'a> {
    pub config: &'a ProcessorConfig,
    pub client: &'a ClientSettings,
    /// The checkpoint's id (stable for the checkpoint's life).
    pub checkpoint_id: &'a str,
    /// The batch the last run planned and did not commit: it is re-run first, with this plan.
    pub pending: Option<SinkBatch<'a>>,
    pub group: &'a dyn InputGroup,
}

/// A two-phase committer of one kind of output.
pub trait Sink: Send + Sync {
    /// Its name in logs and errors.
    fn name(&self) -> &'static str;

    /// Whether outputs of this target are committed by this sink.
    fn takes(&self, target: &Target) -> bool;

    /// Before the first batch: connects, fences an earlier run's writer, and finds out whether
    /// the pending batch (if any) was committed here already.
    fn start(&mut self, _start: &Start<'_>) -> Result<()> {
        Ok(())
    }

    /// Phase one, for every batch (also one without pieces for this sink): the pieces are made
    /// durable or sent, still invisible. An error here leaves nothing of the batch visible.
    fn pre_commit(&self, batch: &SinkBatch<'_>, pieces: Vec<Piece>) -> Result<PreCommit>;

    /// Phase two: the batch becomes visible. Committing a batch committed before changes nothing.
    fn commit(&self, batch: &SinkBatch<'_>, pre: PreCommit) -> Result<()>;

    /// Undoes a pre-commit whose batch will not be committed now (it is re-run later).
    fn abort(&self, _batch: &SinkBatch<'_>, _pre: PreCommit) {}

    /// Drops the pieces of a batch that will not be committed (nothing of it was pre-committed):
    /// what they staged is removed.
    fn discard(&self, _pieces: Vec<Piece>) {}

    /// Scale-out: the moves (staged file, final file, relative to the output folder) that put
    /// this sink's part of the batch in place; written in the batch's intent, so that any
    /// processor can finish a decided batch.
    fn moves(&self, _pre: &PreCommit) -> Result<Vec<(std::path::PathBuf, std::path::PathBuf)>> {
        Ok(Vec::new())
    }

    /// Scale-out: what this sink's part of the batch commits once the batch is decided, beyond
    /// its files' moves (a Delta table's log entry); written in the batch's intent.
    fn deferred(&self, _pre: &PreCommit) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }

    /// Scale-out: commits what [`Sink::deferred`] recorded for a decided batch (its member does,
    /// or the next owner of one of its partitions). Twice, even by two processors at once, it
    /// commits once. Returns whether it committed now.
    fn roll_forward(&self, _deferred: &serde_json::Value) -> Result<bool> {
        Ok(false)
    }

    /// After the batch's checkpoint commit: upkeep (retention, compaction).
    fn after_commit(&self, _batch: u64) -> Result<()> {
        Ok(())
    }

    /// `--recover-from-batch`: moves what batches after `batch` wrote out of readers' sight,
    /// into `_set_aside_<name>`. Returns how many pieces were moved.
    fn set_aside_after(&self, _batch: u64, _name: &str) -> Result<usize> {
        Ok(0)
    }

    /// Whether this sink's commit also commits the batch's input offsets to the consumer group
    /// (the engine then does not).
    fn commits_group_offsets(&self) -> bool {
        false
    }

    /// For benchmarks of the stages, which have no broker: pieces that would need one are dropped.
    fn without_broker(&mut self) {}
}

/// The writer the outputs stage their files with, and the sinks that commit the outputs of
/// `targets`, in commit order.
pub struct Sinks {
    pub writer: CompactWriter,
    pub list: Vec<Box<dyn Sink>>,
}

/// The sink list: files first (renamed into place), then Delta tables (with
/// `OUTPUT_FORMAT=delta`, the Parquet layers; CSV stays files), then Kafka topics, whose
/// transaction commits last, once everything else of the batch is visible.
/// Removes the staging folders (`<parent>/<pid>`) of processes that are gone: what a killed
/// processor staged for object storage and never uploaded.
fn remove_dead_staging(parent: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let gone = pid != std::process::id() as i32
            && unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub fn open(config: &ProcessorConfig, targets: &[Target]) -> Result<Sinks> {
    open_as(config, targets, None)
}

/// A scale-out member's sinks: files staged in its own staging folder under its own names and
/// put in place by the batch's roll forward; every batch a Kafka transaction fenced by the
/// member's group generation (the batch's decision), topic outputs or not.
pub fn open_member(
    config: &ProcessorConfig,
    targets: &[Target],
    member: &str,
    membership: std::sync::Arc<crate::engine::source::membership::Membership>,
) -> Result<Sinks> {
    open_as(config, targets, Some((member, membership)))
}

fn open_as(
    config: &ProcessorConfig,
    targets: &[Target],
    member: Option<(
        &str,
        std::sync::Arc<crate::engine::source::membership::Membership>,
    )>,
) -> Result<Sinks> {
    let layers: Vec<FileLayer> = targets
        .iter()
        .filter_map(|t| match t {
            Target::Files(layer) => Some(*layer),
            _ => None,
        })
        .collect();
    let topics: Vec<String> = targets
        .iter()
        .filter_map(|t| match t {
            Target::Topic(topic) => Some(topic.clone()),
            _ => None,
        })
        .collect();
    let cassandra_tables: Vec<cassandra::CassandraTable> = targets
        .iter()
        .filter_map(|t| match t {
            Target::Cassandra(table) => Some(table.clone()),
            _ => None,
        })
        .collect();
    let staging = config.staging_root()?;
    if config.output_path.local().is_none() {
        if let Some(parent) = staging.parent() {
            remove_dead_staging(parent);
        }
    }
    let writer = CompactWriter::open_as(
        &staging,
        config.max_files_per_sink,
        &layers,
        member.as_ref().map(|(m, _)| *m),
    )?;
    let (tables, files): (Vec<FileLayer>, Vec<FileLayer>) = layers
        .into_iter()
        .partition(|l| config.output_format == OutputFormat::Delta && l.extension == "parquet");
    let mut list: Vec<Box<dyn Sink>> = Vec::new();
    if !files.is_empty() {
        let remote = match &config.output_path {
            crate::config::Location::S3(url) => {
                if config.max_files_per_sink > 0 {
                    tracing::warn!("[processor] MAX_FILES_PER_SINK is not applied on object storage: the files of {} are kept", files.iter().map(|l| l.folder).collect::<Vec<_>>().join(", "));
                }
                Some(crate::storage::Remote::open(url)?)
            }
            crate::config::Location::Local(_) => None,
        };
        let sink = FileSink::new(writer.clone(), files, remote);
        list.push(Box::new(match member {
            Some(_) => sink.rolled_forward(),
            None => sink,
        }));
    }
    if !tables.is_empty() {
        let sink = DeltaSink::new(config, tables)?;
        list.push(Box::new(match &member {
            Some((member, _)) => sink.rolled_forward(member),
            None => sink,
        }));
    }
    // Before the topics: the Kafka transaction commits last, once every other output holds the
    // batch.
    if !cassandra_tables.is_empty() {
        list.push(Box::new(cassandra::CassandraSink::new(
            config,
            cassandra_tables,
        )?));
    }
    match member {
        Some((member, membership)) => {
            list.push(Box::new(TopicSink::for_member(topics, membership, member)));
        }
        None if !topics.is_empty() => list.push(Box::new(TopicSink::new(topics))),
        None => {}
    }
    for target in targets {
        if !list.iter().any(|s| s.takes(target)) {
            return Err(Error::Internal(format!(
                "no sink takes output {}",
                target.name()
            )));
        }
    }
    Ok(Sinks { writer, list })
}

/// A piece handed to the wrong sink: a bug, not bad input.
pub(crate) fn wrong_piece(sink: &str) -> Error {
    Error::Internal(format!(
        "the {sink} sink was handed a piece of another sink"
    ))
}
