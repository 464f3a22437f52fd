//! Delta Lake tables (`OUTPUT_FORMAT=delta`): each Parquet layer is a table at
//! `OUTPUT_PATH/<layer>`, exactly once through the table's own log, as kafka-delta-ingest does.
//!
//! The outputs stage their Parquet files as for the file sink (same writer, same names). The
//! pre-commit syncs them and moves them into the table's folder (`date=YYYY-MM-DD/` when the
//! layer is partitioned by date; a file whose rows span several dates is split), where no reader
//! sees them: a Delta reader reads only the files the log names. The commit then writes one log
//! entry per table with an `add` action per file and a `txn` action per input partition
//! (`appId` = `kafka:<topic>:<partition>`, `version` = the batch's end offset). A batch whose
//! offsets the table's log already holds is recognised from the table alone, whichever process
//! replays it, and is not added again.

mod merge;
mod upkeep;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use arrow_array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{
    Action, Add, DataType as DeltaType, PrimitiveType, StructField, StructType, Transaction,
};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use tracing::info;

use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::files::{staging_dir, write_file, CompactWriter, FileLayer, StagedFile};
use super::{wrong_piece, Piece, PreCommit, Sink, SinkBatch, Target};
use crate::config::Location;
use crate::error::{DeltaContext as _, Error, IoContext as _, Result};
use crate::os::sync_dir;
use crate::storage::{register_s3, Remote};

/// The partition column of a layer partitioned by date.
const DATE: &str = "date";
const MICROS_A_DAY: i64 = 86_400_000_000;

/// The first entry of a table's log.
const FIRST_ENTRY: &str = "00000000000000000000.json";

/// Where the tables are.
enum Storage {
    /// A local folder: a synced file is renamed into its table.
    Local(PathBuf),
    /// A bucket and prefix: a file is uploaded into its table.
    Remote(Remote),
}

/// The Delta sink: one table per Parquet layer.
pub struct DeltaSink {
    /// The tables' parent, as a folder URL (`file:///data/out/`, `s3://bucket/prefix/`).
    root: url::Url,
    storage: Storage,
    layers: Vec<FileLayer>,
    /// The input topic: the `txn` actions' application ids are named after it.
    topic: String,
    /// The tables opened so far (a table is created by its first commit).
    tables: Mutex<BTreeMap<&'static str, Table>>,
    runtime: tokio::runtime::Runtime,
    /// The local root of the layers' staging folders, where the sink writes its own files
    /// (compaction) too: the writer empties them at start, so a killed run leaves nothing.
    staging_root: PathBuf,
    upkeep: upkeep::Schedule,
    /// Scale-out: the member whose batches this sink commits. Its commit then writes nothing:
    /// the tables' log entries are recorded in the batch's intent
    /// ([`Sink::deferred`]) and committed once the batch is decided ([`Sink::roll_forward`]).
    member: Option<String>,
}

/// An open table, and the `txn` versions of the input partitions as far as this sink knows them
/// (read from the log once per partition, then what its own commits wrote: reading them from the
/// log replays it, which costs more as the log grows, on every batch).
struct Table {
    delta: DeltaTable,
    txns: BTreeMap<String, Option<i64>>,
}

impl Table {
    fn new(delta: DeltaTable) -> Self {
        Table {
            delta,
            txns: BTreeMap::new(),
        }
    }
}

/// A table's part of a batch, between the pre-commit and the commit: its new files, and for an
/// update-mode layer the files its rows replace.
struct TableCommit {
    layer: FileLayer,
    actions: Vec<Action>,
}

/// Scale-out: a batch's log entries, recorded in its intent between its pre-commit and its
/// decision (the files are in their tables already, named by no log entry yet).
#[derive(Serialize, Deserialize)]
struct Deferred {
    /// The member whose batch it is (in the names of the files it rewrites).
    member: String,
    batch: u64,
    planned_at: i64,
    /// The `txn` action of each input partition of the batch.
    txns: Vec<Transaction>,
    /// Each table's `add` actions (an upserted table's replaced rows are found when the entry
    /// is committed, in the table as it stands then).
    tables: Vec<(String, Vec<Action>)>,
}

/// How many times a deferred log entry is tried against a table that others commit to.
const ROLL_FORWARD_ATTEMPTS: usize = 40;

/// Scale-out: the vacuum keeps files no log entry names for at least this long (a decided
/// batch's files wait for its roll forward, by the next owner of its partitions when its member
/// died: seconds; what members gone for an hour left is swept).
const MEMBER_VACUUM_FLOOR: Duration = Duration::from_secs(3600);

impl DeltaSink {
    pub fn new(config: &crate::ProcessorConfig, layers: Vec<FileLayer>) -> Result<Self> {
        let (location, topic) = (&config.output_path, &config.kafka.topic);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .io_context(|| "cannot start the Delta Lake sink's runtime".into())?;
        let (root, storage) = match location {
            Location::Local(root) => {
                let root = std::path::absolute(root)
                    .io_context(|| format!("cannot resolve OUTPUT_PATH {}", root.display()))?;
                (folder_url(&root)?, Storage::Local(root))
            }
            Location::S3(url) => {
                register_s3();
                (url.clone(), Storage::Remote(Remote::open(url)?))
            }
        };
        if let Some(layer) = layers
            .iter()
            .find(|l| !l.keys.is_empty() && l.date_column.is_some())
        {
            return Err(Error::Internal(format!(
                "layer {}: an upserted layer is not partitioned by date",
                layer.folder()
            )));
        }
        let staging_root = config.staging_root()?;
        Ok(DeltaSink {
            root,
            storage,
            layers,
            topic: topic.clone(),
            tables: Mutex::new(BTreeMap::new()),
            runtime,
            staging_root,
            upkeep: upkeep::Schedule {
                every: config.delta_optimize_every,
                retention: config.delta_vacuum_retention,
            },
            member: None,
        })
    }

    /// The sink of a scale-out member: its commit leaves the tables' log entries to the roll
    /// forward, and its vacuum keeps unnamed files for at least [`MEMBER_VACUUM_FLOOR`].
    pub fn rolled_forward(mut self, member: &str) -> Self {
        if self.upkeep.every > 0 && self.upkeep.retention < MEMBER_VACUUM_FLOOR {
            tracing::warn!(
                "[processor] DELTA_VACUUM_RETENTION={:?} is raised to {MEMBER_VACUUM_FLOOR:?} with SCALE_OUT=true: files another processor put in a table are named by its log entry only once their batch is rolled forward",
                self.upkeep.retention
            );
            self.upkeep.retention = MEMBER_VACUUM_FLOOR;
        }
        self.member = Some(member.to_string());
        self
    }

    /// Where this sink writes its own files of a layer (rewritten, compacted) before they go
    /// into the table: the layer's staging folder, a member's own in scale-out.
    fn own_staging(&self, layer: FileLayer) -> PathBuf {
        let dir = staging_dir(&self.staging_root, layer);
        match &self.member {
            Some(member) => dir.join(member),
            None => dir,
        }
    }

    /// A batch's commit to a layer's table: an append, or an update for an upserted layer.
    fn streaming_update(&self, layer: FileLayer, batch: u64) -> DeltaOperation {
        DeltaOperation::StreamingUpdate {
            output_mode: if layer.keys.is_empty() {
                OutputMode::Append
            } else {
                OutputMode::Update
            },
            query_id: format!("kafka:{}", self.topic),
            epoch_id: batch as i64,
        }
    }

    /// The `txn` action of each input partition of the batch: its end offset.
    fn txns(&self, batch: &SinkBatch<'_>) -> Vec<Transaction> {
        batch
            .ranges
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| Transaction::new(self.app_id(batch.topic_id, r.partition), r.end))
            .collect()
    }

    /// Scale-out: one table's part of a decided batch. Against the table's latest version: its
    /// `txn` actions say whether it holds the batch already; an upserted table's rows of the
    /// batch's keys are replaced as they stand now. A commit that another processor's beat (it
    /// appended, compacted, or committed this batch) is tried again from the table's new version.
    fn roll_forward_table(
        &self,
        layer: FileLayer,
        adds: &[Action],
        deferred: &Deferred,
    ) -> Result<bool> {
        let shown = self.show(layer);
        if !self.open_table(layer)? {
            return Err(Error::DataLoss(format!(
                "batch {} was decided with files in Delta table {shown}, which does not exist",
                deferred.batch
            )));
        }
        let upsert = if layer.keys.is_empty() {
            None
        } else {
            let mut rows = Vec::new();
            for add in adds {
                if let Action::Add(add) = add {
                    rows.extend(merge::read_rows(self.read_table_file(layer, &add.path)?)?);
                }
            }
            Some(merge::Upsert::of(layer.keys, &rows)?)
        };
        let context = || {
            format!(
                "batch {}: cannot commit to Delta table {shown}",
                deferred.batch
            )
        };
        let operation = self.streaming_update(layer, deferred.batch);
        // What the batch's rows replace, found again only when a file it removes is gone.
        let mut replaced: Option<Vec<Action>> = None;
        for attempt in 1..=ROLL_FORWARD_ATTEMPTS {
            if self
                .table_holds(layer, &deferred.txns)
                .delta_context(context)?
            {
                return Ok(false);
            }
            let mut actions = adds.to_vec();
            if let Some(upsert) = &upsert {
                if replaced.is_none() {
                    let batch = SinkBatch {
                        batch: deferred.batch,
                        planned_at: deferred.planned_at,
                        ranges: &[],
                        topic_id: None,
                    };
                    let staging = self.own_staging(layer);
                    std::fs::create_dir_all(&staging)
                        .io_context(|| format!("cannot create {}", staging.display()))?;
                    let owner = Some(deferred.member.as_str());
                    replaced = Some(self.replaced(layer, upsert, &batch, &staging, owner)?);
                }
                actions.extend(replaced.iter().flatten().cloned());
            }
            let properties = CommitProperties::default()
                .with_application_transactions(deferred.txns.clone())
                .with_create_checkpoint(true);
            match self.commit_exactly(layer, actions, operation.clone(), properties) {
                Ok(Some(())) => {
                    let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(table) = tables.get_mut(layer.folder()) {
                        for txn in &deferred.txns {
                            table.txns.insert(txn.app_id.clone(), Some(txn.version));
                        }
                    }
                    return Ok(true);
                }
                // A file it replaces was rewritten meanwhile (compacted): found again.
                Ok(None) => replaced = None,
                Err(e) if is_conflict(&e) && attempt < ROLL_FORWARD_ATTEMPTS => {
                    tracing::debug!("[processor] batch {}: Delta table {shown} changed meanwhile ({e}): trying again from its new version", deferred.batch);
                }
                Err(e) => return Err(e).delta_context(context),
            }
            // Processors committing to one table at once: the next try a little later.
            std::thread::sleep(Duration::from_millis(attempt as u64 * 5));
        }
        Err(Error::Internal(format!(
            "batch {}: Delta table {shown}: other processors committed before each of {ROLL_FORWARD_ATTEMPTS} tries",
            deferred.batch
        )))
    }

    /// Whether the table's latest version holds these `txn` actions (each partition at or past
    /// its version); holding some only is an error.
    fn table_holds(
        &self,
        layer: FileLayer,
        txns: &[Transaction],
    ) -> std::result::Result<bool, deltalake_core::DeltaTableError> {
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(table) = tables.get_mut(layer.folder()) else {
            return Ok(false);
        };
        self.runtime.block_on(table.delta.update_state())?;
        let state = table.delta.snapshot()?;
        let mut held = Vec::new();
        for txn in txns {
            let version = self.runtime.block_on(
                state.transaction_version(table.delta.log_store().as_ref(), txn.app_id.clone()),
            )?;
            table.txns.insert(txn.app_id.clone(), version);
            held.push(version.is_some_and(|v| v >= txn.version));
        }
        if held.iter().any(|&h| h) && !held.iter().all(|&h| h) {
            return Err(deltalake_core::DeltaTableError::Generic(format!(
                "it holds some of the batch's partitions at their offsets and not the others ({txns:?}): it was written with other batch bounds"
            )));
        }
        Ok(!held.is_empty() && held.iter().all(|&h| h))
    }

    /// Commits `actions` to a table that other processors commit to as well. Actions that
    /// remove files are committed at exactly the next version after the latest, once it is
    /// checked that those files are still in it (delta-rs's conflict check does not see a file
    /// removed twice when the first removal was a compaction's, `dataChange=false`: two
    /// compactions of the same files would both commit, and their rows be doubled). Appends
    /// alone go through delta-rs's conflict check (a concurrent commit of the same `txn`
    /// application ids is one). `Ok(None)`: a file to remove is gone, nothing was committed.
    fn commit_exactly(
        &self,
        layer: FileLayer,
        actions: Vec<Action>,
        operation: DeltaOperation,
        properties: CommitProperties,
    ) -> std::result::Result<Option<()>, deltalake_core::DeltaTableError> {
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(table) = tables.get_mut(layer.folder()) else {
            return Err(deltalake_core::DeltaTableError::Generic(format!(
                "Delta table {} is not open",
                layer.folder()
            )));
        };
        let removes: Vec<&str> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Remove(r) => Some(r.path.as_str()),
                _ => None,
            })
            .collect();
        let properties = if removes.is_empty() {
            properties
        } else {
            self.runtime.block_on(table.delta.update_state())?;
            let state = table.delta.snapshot()?;
            let active: std::collections::HashSet<String> = state
                .log_data()
                .iter()
                .map(|f| f.path().into_owned())
                .collect();
            if removes.iter().any(|r| !active.contains(*r)) {
                return Ok(None);
            }
            properties.with_max_retries(0)
        };
        let committed = self.runtime.block_on(async {
            let state = table.delta.snapshot()?;
            CommitBuilder::from(properties)
                .with_actions(actions)
                .build(Some(state), table.delta.log_store(), operation)
                .await
        })?;
        table.delta.state = Some(committed.snapshot());
        Ok(Some(()))
    }

    fn table_url(&self, layer: FileLayer) -> Result<url::Url> {
        self.root
            .join(&format!("{}/", layer.folder()))
            .map_err(|e| Error::Config(format!("{}: {e}", self.root)))
    }

    /// The table's place, for messages.
    fn show(&self, layer: FileLayer) -> String {
        match &self.storage {
            Storage::Local(root) => root.join(layer.folder()).display().to_string(),
            Storage::Remote(remote) => format!("{}{}", remote.url(), layer.folder()),
        }
    }

    /// Whether the table's log has begun: its first entry is there (or, once old entries are
    /// cleaned up, a log checkpoint). A kill while a table was being created leaves
    /// `_delta_log/` without either, and the next commit creates the table again.
    fn table_exists(&self, layer: FileLayer) -> Result<bool> {
        let log = format!("{}/_delta_log", layer.folder());
        match &self.storage {
            Storage::Local(root) => {
                let log = root.join(log);
                Ok(log.join(FIRST_ENTRY).is_file() || log.join("_last_checkpoint").is_file())
            }
            Storage::Remote(remote) => Ok(remote.exists(&format!("{log}/{FIRST_ENTRY}"))?
                || remote.exists(&format!("{log}/_last_checkpoint"))?),
        }
    }

    /// The `txn` application id of an input partition: of the topic's id too, when the broker
    /// tells it, so that a topic deleted and created again (its offsets start over) is not taken
    /// for the old one.
    fn app_id(&self, topic_id: Option<&str>, partition: i32) -> String {
        match topic_id {
            Some(id) => format!("kafka:{}:{id}:{partition}", self.topic),
            None => format!("kafka:{}:{partition}", self.topic),
        }
    }

    /// Opens the layer's table if it exists (and is not open yet).
    fn open_table(&self, layer: FileLayer) -> Result<bool> {
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        if tables.contains_key(layer.folder()) {
            return Ok(true);
        }
        if !self.table_exists(layer)? {
            return Ok(false);
        }
        let (url, shown) = (self.table_url(layer)?, self.show(layer));
        let table = self.runtime.block_on(async {
            DeltaTableBuilder::from_url(url)
                .delta_context(|| format!("cannot open Delta table {shown}"))?
                .load()
                .await
                .delta_context(|| format!("cannot read Delta table {shown}"))
        })?;
        info!(
            "[processor] Delta table {shown} at version {}",
            table.version().map_or("none".into(), |v| v.to_string())
        );
        tables.insert(layer.folder(), Table::new(table));
        Ok(true)
    }

    /// Whether the table already holds this batch: every input partition's `txn` version at or
    /// past the batch's end. A table that holds part of it only (another checkpoint, with other
    /// batch bounds, wrote it) is an error: appending would duplicate, skipping would lose.
    fn holds(&self, layer: FileLayer, batch: &SinkBatch<'_>) -> Result<bool> {
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(table) = tables.get_mut(layer.folder()) else {
            return Ok(false);
        };
        let (mut held, mut fresh) = (Vec::new(), Vec::new());
        for range in batch.ranges.iter().filter(|r| !r.is_empty()) {
            let app_id = self.app_id(batch.topic_id, range.partition);
            let version = match table.txns.get(&app_id) {
                Some(&known) => known,
                None => {
                    let state = table
                        .delta
                        .snapshot()
                        .delta_context(|| format!("Delta table {}", layer.folder()))?;
                    let read =
                        self.runtime
                            .block_on(state.transaction_version(
                                table.delta.log_store().as_ref(),
                                app_id.clone(),
                            ))
                            .delta_context(|| {
                                format!(
                                    "Delta table {}: cannot read its txn actions",
                                    layer.folder()
                                )
                            })?;
                    table.txns.insert(app_id, read);
                    read
                }
            };
            match version {
                Some(v) if v >= range.end => held.push(range.partition),
                Some(v) if v > range.start => {
                    return Err(Error::DataLoss(format!(
                        "Delta table {} holds partition {} up to offset {v}, inside the batch's range {}..{}: it was written with other batch bounds (another checkpoint); remove the table or the checkpoint so that one decides",
                        self.show(layer),
                        range.partition,
                        range.start,
                        range.end
                    )))
                }
                _ => fresh.push(range.partition),
            }
        }
        if !held.is_empty() && !fresh.is_empty() {
            return Err(Error::DataLoss(format!(
                "Delta table {} holds this batch's partitions {held:?} but not {fresh:?}: it was written with other batch bounds (another checkpoint)",
                self.show(layer)
            )));
        }
        Ok(!held.is_empty())
    }

    /// Moves a synced staged file into the table's folder (its date partition, split by date
    /// when its rows span several), and returns its `add` actions.
    fn place(&self, file: StagedFile) -> Result<Vec<Add>> {
        let layer = file.layer();
        let staged = file.staged_path().to_path_buf();
        let name = file
            .final_path()
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Internal(format!("{}: no file name", staged.display())))?
            .to_string();
        let hive = hive_partition(&file);
        drop(file);
        let footer = read_footer(&staged)?;
        let day = match layer.date_column {
            Some(column) if footer.metadata().file_metadata().num_rows() > 0 => {
                match single_day(&footer, column)? {
                    Some(day) => Some(day),
                    None => {
                        return self.split_by_day(&staged, layer, column, hive.as_deref(), &name)
                    }
                }
            }
            _ => None,
        };
        let partition = Partition::of(layer, day, hive.as_deref());
        Ok(vec![
            self.publish(&staged, layer, &partition, &name, &footer)?
        ])
    }

    /// Puts a synced file into the layer's table (its partition): renamed there on a local
    /// disk, uploaded to object storage. Returns its `add` action.
    fn publish(
        &self,
        staged: &Path,
        layer: FileLayer,
        partition: &Partition,
        name: &str,
        footer: &ArrowReaderMetadata,
    ) -> Result<Add> {
        let (relative, values) = (partition.relative(name), partition.values());
        let size = match &self.storage {
            Storage::Local(root) => {
                let table = root.join(layer.folder());
                let fin = table.join(&relative);
                let folder = fin.parent().unwrap_or(&table);
                if !folder.exists() {
                    // New partition folders (`date=…/id=…/`): each one's entry made durable.
                    std::fs::create_dir_all(folder)
                        .io_context(|| format!("cannot create {}", folder.display()))?;
                    let mut dir = folder;
                    while let Some(parent) = dir.parent().filter(|_| dir != table) {
                        sync_dir(parent)?;
                        dir = parent;
                    }
                }
                std::fs::rename(staged, &fin)
                    .io_context(|| format!("cannot move {} into its table", staged.display()))?;
                sync_dir(folder)?;
                std::fs::metadata(&fin)
                    .io_context(|| format!("cannot read the size of {}", fin.display()))?
                    .len()
            }
            Storage::Remote(remote) => {
                let size = remote.put_file(staged, &format!("{}/{relative}", layer.folder()))?;
                std::fs::remove_file(staged)
                    .io_context(|| format!("cannot remove {}", staged.display()))?;
                size
            }
        };
        Ok(add_action(relative, values, size, footer))
    }

    /// A file whose rows span several dates, rewritten as one file per date.
    fn split_by_day(
        &self,
        staged: &Path,
        layer: FileLayer,
        column: &str,
        hive: Option<&str>,
        name: &str,
    ) -> Result<Vec<Add>> {
        let mut adds = Vec::new();
        for (day, rows) in rows_by_day(staged, column)? {
            let part = staged.with_extension(match day {
                Some(day) => format!("day{day}"),
                None => "undated".into(),
            });
            write_file(&part, &rows)?;
            let footer = read_footer(&part)?;
            let partition = Partition::of(layer, day, hive);
            adds.push(self.publish(&part, layer, &partition, name, &footer)?);
        }
        std::fs::remove_file(staged)
            .io_context(|| format!("cannot remove {}", staged.display()))?;
        Ok(adds)
    }

    /// The actions that take the rows of the upsert's keys out of the table: each file holding
    /// some is removed, and rewritten (into `staging`, then the table) with its other rows.
    fn replaced(
        &self,
        layer: FileLayer,
        upsert: &merge::Upsert,
        batch: &SinkBatch<'_>,
        staging: &Path,
        owner: Option<&str>,
    ) -> Result<Vec<Action>> {
        let candidates: Vec<(String, Partition, deltalake_core::kernel::Remove)> = {
            let tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(table) = tables.get(layer.folder()) else {
                return Ok(Vec::new());
            };
            let state = table
                .delta
                .snapshot()
                .delta_context(|| format!("Delta table {}", layer.folder()))?;
            state
                .log_data()
                .iter()
                .filter(|file| upsert.may_touch(file.stats().as_deref()))
                .map(|file| {
                    let partition = Partition::from_values(file.partition_values_map());
                    (
                        file.path().into_owned(),
                        partition,
                        file.remove_action(true),
                    )
                })
                .collect()
        };
        let (read, mut replaced, mut actions) = (candidates.len(), 0, Vec::new());
        let stem = CompactWriter::file_name(layer, batch.planned_at, batch.batch);
        let stem = stem.trim_end_matches(".parquet");
        for (path, partition, remove) in candidates {
            let rows = merge::read_rows(self.read_table_file(layer, &path)?)?;
            let mut kept = Vec::with_capacity(rows.len());
            let mut touched = false;
            for part in rows {
                match upsert.keep(&part)? {
                    Some(keep) => {
                        touched = true;
                        replaced += part.num_rows() - keep.true_count();
                        kept.push(arrow_select::filter::filter_record_batch(&part, &keep)?);
                    }
                    None => kept.push(part),
                }
            }
            if !touched {
                continue;
            }
            actions.push(Action::Remove(remove));
            let Some(schema) = kept.first().map(RecordBatch::schema) else {
                continue;
            };
            let kept = arrow_select::concat::concat_batches(&schema, &kept)?;
            if kept.num_rows() > 0 {
                // Named after the file it replaces, not after an order of the log's files that
                // another process replaying the batch might list differently; in scale-out after
                // the batch's member too (members number their batches alike: two rewriting one
                // file at once must not write one name).
                let owner = owner.map_or(String::new(), |m| format!("_{m}"));
                let name = format!(
                    "{stem}{owner}_r{:08x}.parquet",
                    crc32fast::hash(path.as_bytes())
                );
                let file = staging.join(&name);
                write_file(&file, &kept)?;
                let footer = read_footer(&file)?;
                actions.push(Action::Add(
                    self.publish(&file, layer, &partition, &name, &footer)?,
                ));
            }
        }
        info!(
            "[processor] batch {}: Delta table {}: {} rows upserted, replacing {replaced} rows ({read} files read)",
            batch.batch,
            layer.folder(),
            upsert.rows()
        );
        Ok(actions)
    }

    /// A file of the layer's table, by its path in the table.
    fn read_table_file(&self, layer: FileLayer, path: &str) -> Result<bytes::Bytes> {
        match &self.storage {
            Storage::Local(root) => read_local(&root.join(layer.folder()).join(path)),
            Storage::Remote(remote) => remote.get(&format!("{}/{path}", layer.folder())),
        }
    }

    /// Creates the layer's table with the schema of its first file (and the date partition).
    fn create_table(&self, layer: FileLayer, schema: &SchemaRef, hive: Option<&str>) -> Result<()> {
        let (url, shown) = (self.table_url(layer)?, self.show(layer));
        let mut fields: Vec<StructField> = {
            let structure: StructType = schema.as_ref().try_into_kernel().map_err(|e| {
                Error::Internal(format!("{}: schema not Delta's: {e}", layer.folder()))
            })?;
            structure.fields().cloned().collect()
        };
        let mut partitions = Vec::new();
        if layer.date_column.is_some() {
            fields.push(StructField::new(
                DATE,
                DeltaType::Primitive(PrimitiveType::Date),
                true,
            ));
            partitions.push(DATE.to_string());
        }
        // A Hive-partitioned layer (`id=3/`): the folder's column, a number if its value is one.
        if let Some((column, value)) = hive.and_then(|h| h.split_once('=')) {
            let kind = if value.parse::<i64>().is_ok() {
                PrimitiveType::Long
            } else {
                PrimitiveType::String
            };
            fields.push(StructField::new(column, DeltaType::Primitive(kind), true));
            partitions.push(column.to_string());
        }
        let created = self.runtime.block_on(async {
            CreateBuilder::new()
                .with_location(url.to_string())
                .with_table_name(layer.folder())
                .with_columns(fields)
                .with_partition_columns(partitions)
                .with_save_mode(SaveMode::Ignore)
                // Another processor creating it at the same moment: no second version 0.
                .with_commit_properties(CommitProperties::default().with_max_retries(0))
                .await
        });
        let table = match created {
            Ok(table) => table,
            // Another processor of the group created it at the same moment.
            Err(e) if is_conflict(&e) && self.open_table(layer)? => {
                info!("[processor] Delta table {shown} was created by another processor meanwhile");
                return Ok(());
            }
            Err(e) => return Err(e).delta_context(|| format!("cannot create Delta table {shown}")),
        };
        info!("[processor] Delta table {shown} created");
        self.tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(layer.folder(), Table::new(table));
        Ok(())
    }
}

impl Sink for DeltaSink {
    fn name(&self) -> &'static str {
        "Delta tables"
    }

    fn takes(&self, target: &Target) -> bool {
        matches!(target, Target::Files(layer) if self.layers.contains(layer))
    }

    /// Syncs the batch's files and moves them into their tables' folders, unless a table holds
    /// the batch already (then its files are dropped): nothing is visible until the commit.
    fn pre_commit(&self, batch: &SinkBatch<'_>, pieces: Vec<Piece>) -> Result<PreCommit> {
        let mut by_layer: BTreeMap<FileLayer, Vec<StagedFile>> = BTreeMap::new();
        for piece in pieces {
            for file in *piece
                .downcast::<Vec<StagedFile>>()
                .map_err(|_| wrong_piece(self.name()))?
            {
                by_layer.entry(file.layer()).or_default().push(file);
            }
        }
        let mut commits = Vec::new();
        for (layer, files) in by_layer {
            // A member's batch starts where Kafka's committed offsets say: the tables cannot hold
            // it (its roll forward checks them anyway).
            if self.member.is_none() && self.open_table(layer)? && self.holds(layer, batch)? {
                info!(
                    "[processor] batch {}: Delta table {} holds it already: not added again",
                    batch.batch,
                    layer.folder()
                );
                for file in files {
                    let _ = std::fs::remove_file(file.staged_path());
                }
                continue;
            }
            CompactWriter::sync(&files)?;
            let schema = match files.first() {
                Some(file) => Some((
                    read_footer(file.staged_path())?.schema().clone(),
                    hive_partition(file),
                )),
                None => None,
            };
            // A member's upsert is found at the roll forward, in the table as it stands then.
            let upsert = if layer.keys.is_empty() || self.member.is_some() {
                None
            } else {
                let mut rows = Vec::new();
                for file in &files {
                    rows.extend(merge::read_rows(read_local(file.staged_path())?)?);
                }
                Some(merge::Upsert::of(layer.keys, &rows)?)
            };
            let staging = files
                .first()
                .and_then(|f| f.staged_path().parent())
                .map(Path::to_path_buf);
            let mut actions = Vec::new();
            for file in files {
                actions.extend(self.place(file)?.into_iter().map(Action::Add));
            }
            if let (Some(upsert), Some(staging)) = (upsert, staging) {
                actions.extend(self.replaced(layer, &upsert, batch, &staging, None)?);
            }
            if let Some((schema, hive)) = schema {
                if !self.open_table(layer)? {
                    self.create_table(layer, &schema, hive.as_deref())?;
                }
            }
            commits.push(TableCommit { layer, actions });
        }
        if let Some(member) = &self.member {
            return Ok(Box::new(Deferred {
                member: member.clone(),
                batch: batch.batch,
                planned_at: batch.planned_at,
                txns: self.txns(batch),
                tables: commits
                    .into_iter()
                    .map(|c| (c.layer.folder().to_string(), c.actions))
                    .collect(),
            }));
        }
        Ok(Box::new(commits))
    }

    /// One log entry per table: its files and the batch's input offsets, atomically. A scale-out
    /// member's entries wait for the batch's decision: [`Sink::roll_forward`].
    fn commit(&self, batch: &SinkBatch<'_>, pre: PreCommit) -> Result<()> {
        if self.member.is_some() {
            return Ok(());
        }
        let commits = pre
            .downcast::<Vec<TableCommit>>()
            .map_err(|_| wrong_piece(self.name()))?;
        let txns = self.txns(batch);
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        for TableCommit { layer, actions } in *commits {
            let table = tables.get_mut(layer.folder()).ok_or_else(|| {
                Error::Internal(format!("Delta table {} is not open", layer.folder()))
            })?;
            let operation = self.streaming_update(layer, batch.batch);
            let context = || {
                format!(
                    "batch {}: cannot commit to Delta table {}",
                    batch.batch,
                    layer.folder()
                )
            };
            // The txn actions go in as the commit's application transactions, so that the
            // conflict check refuses a concurrent writer of the same input partitions.
            let properties = CommitProperties::default()
                .with_application_transactions(txns.clone())
                .with_create_checkpoint(true);
            let committed = self.runtime.block_on(async {
                let state = table.delta.snapshot().delta_context(context)?;
                CommitBuilder::from(properties)
                    .with_actions(actions)
                    .build(Some(state), table.delta.log_store(), operation)
                    .await
                    .delta_context(context)
            })?;
            table.delta.state = Some(committed.snapshot());
            for txn in &txns {
                table.txns.insert(txn.app_id.clone(), Some(txn.version));
            }
        }
        Ok(())
    }

    fn deferred(&self, pre: &PreCommit) -> Result<Option<serde_json::Value>> {
        let deferred = pre
            .downcast_ref::<Deferred>()
            .ok_or_else(|| wrong_piece(self.name()))?;
        serde_json::to_value(deferred)
            .map(Some)
            .map_err(|e| Error::Internal(format!("cannot record a batch's Delta commits: {e}")))
    }

    /// Commits a decided batch's log entry to each of its tables, unless the table holds it
    /// already (its `txn` actions say so: committed before, perhaps by another processor at the
    /// same time, whose commit then made this one's conflict).
    fn roll_forward(&self, deferred: &serde_json::Value) -> Result<bool> {
        let deferred: Deferred = serde_json::from_value(deferred.clone()).map_err(|e| {
            Error::Internal(format!(
                "a batch's recorded Delta commits are unreadable: {e}"
            ))
        })?;
        let mut committed = false;
        for (folder, adds) in &deferred.tables {
            let layer = *self
                .layers
                .iter()
                .find(|l| l.folder() == folder)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "batch {} names Delta table {folder}, which this processor does not write: do the processors of the group run the same DATASET and outputs?",
                        deferred.batch
                    ))
                })?;
            committed |= self.roll_forward_table(layer, adds, &deferred)?;
        }
        Ok(committed)
    }

    /// Compaction and vacuum, on their schedule (`DELTA_OPTIMIZE_EVERY`). The batch is committed
    /// already: a failure here (object storage unavailable a moment, a delete refused) is logged,
    /// and the next schedule tries again; no row depends on it.
    fn after_commit(&self, batch: u64) -> Result<()> {
        if let Err(e) = self.upkeep(batch) {
            tracing::warn!("[processor] Delta table upkeep after batch {batch} failed, to be tried again at the next: {e}");
        }
        Ok(())
    }

    fn set_aside_after(&self, _batch: u64, _name: &str) -> Result<usize> {
        Err(Error::Config(
            "--recover-from-batch is not supported with OUTPUT_FORMAT=delta yet: a Delta table keeps its history (read an earlier version with time travel)".into(),
        ))
    }
}

/// Whether a commit failed because another writer committed first and conflicts with it.
fn is_conflict(e: &deltalake_core::DeltaTableError) -> bool {
    use deltalake_core::kernel::transaction::TransactionError;
    matches!(
        e,
        deltalake_core::DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_)
        } | deltalake_core::DeltaTableError::VersionAlreadyExists(_)
    )
}

fn folder_url(dir: &Path) -> Result<url::Url> {
    url::Url::from_directory_path(dir)
        .map_err(|()| Error::Config(format!("{}: not an absolute path", dir.display())))
}

fn read_local(path: &Path) -> Result<bytes::Bytes> {
    Ok(std::fs::read(path)
        .io_context(|| format!("cannot read {}", path.display()))?
        .into())
}

fn read_footer(path: &Path) -> Result<ArrowReaderMetadata> {
    let file =
        std::fs::File::open(path).io_context(|| format!("cannot open {}", path.display()))?;
    Ok(ArrowReaderMetadata::load(&file, Default::default())?)
}

/// The UTC day (since 1970-01-01) of every value of `column`, from the file's statistics, when
/// they show one day and no null; `None` otherwise (the file is then split by reading it).
fn single_day(footer: &ArrowReaderMetadata, column: &str) -> Result<Option<i64>> {
    let meta: &ParquetMetaData = footer.metadata();
    let Some(index) = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == column)
    else {
        return Err(Error::Internal(format!(
            "no column {column} to partition by"
        )));
    };
    let mut day = None;
    for group in meta.row_groups() {
        let Some(Statistics::Int64(s)) = group.column(index).statistics() else {
            return Ok(None);
        };
        let (Some(&min), Some(&max), Some(0)) = (s.min_opt(), s.max_opt(), s.null_count_opt())
        else {
            return Ok(None);
        };
        let (first, last) = (min.div_euclid(MICROS_A_DAY), max.div_euclid(MICROS_A_DAY));
        if first != last || day.is_some_and(|d| d != first) {
            return Ok(None);
        }
        day = Some(first);
    }
    Ok(day)
}

/// `YYYY-MM-DD` of a day since 1970-01-01; `None` outside the calendar's range.
fn date_text(day: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(day.checked_mul(86_400)?, 0)
        .map(|t| t.date_naive().to_string())
}

/// The folder of a null partition value, as Hive and Spark name it.
const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// The Hive partition folder of a staged file of a Hive-partitioned layer (`id=3`).
fn hive_partition(file: &StagedFile) -> Option<String> {
    if !file.layer().hive {
        return None;
    }
    let folder = file.final_path().parent()?.file_name()?.to_str()?;
    folder.contains('=').then(|| folder.to_string())
}

/// Where a file goes in its table: its partition columns and values, in the table's order
/// (`date` first, then a Hive partition's column); a value may be null.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Partition(Vec<(String, Option<String>)>);

impl Partition {
    /// A file of `layer`: on `day` when the layer is partitioned by date (null when the rows
    /// have no date, or one outside the calendar), in Hive partition `hive` (`id=3`).
    fn of(layer: FileLayer, day: Option<i64>, hive: Option<&str>) -> Self {
        let mut values = Vec::new();
        if layer.date_column.is_some() {
            values.push((DATE.to_string(), day.and_then(date_text)));
        }
        if let Some((column, value)) = hive.and_then(|h| h.split_once('=')) {
            values.push((column.to_string(), Some(value.to_string())));
        }
        Partition(values)
    }

    /// From an `add` action's partition values.
    fn from_values(values: HashMap<String, Option<String>>) -> Self {
        let mut values: Vec<(String, Option<String>)> = values.into_iter().collect();
        values.sort_by_key(|(column, _)| (column != DATE, column.clone()));
        Partition(values)
    }

    /// The file's path in the table: `date=2025-11-07/id=3/<name>`.
    fn relative(&self, name: &str) -> String {
        let mut path: String = self
            .0
            .iter()
            .map(|(c, v)| format!("{c}={}/", v.as_deref().unwrap_or(NULL_PARTITION)))
            .collect();
        path.push_str(name);
        path
    }

    fn values(&self) -> HashMap<String, Option<String>> {
        self.0.iter().cloned().collect()
    }
}

/// A file's rows, grouped by the UTC day of `column` (`None`: a null there, no date).
fn rows_by_day(staged: &Path, column: &str) -> Result<BTreeMap<Option<i64>, RecordBatch>> {
    let file =
        std::fs::File::open(staged).io_context(|| format!("cannot open {}", staged.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut by_day: BTreeMap<Option<i64>, Vec<RecordBatch>> = BTreeMap::new();
    for rows in reader {
        let rows = rows?;
        let index = rows.schema().index_of(column)?;
        let times = rows
            .column(index)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| Error::Internal(format!("{column} is not a timestamp column")))?;
        let days: Vec<Option<i64>> = times
            .iter()
            .map(|t| t.map(|t| t.div_euclid(MICROS_A_DAY)))
            .collect();
        let mut distinct = days.clone();
        distinct.sort_unstable();
        distinct.dedup();
        for day in distinct {
            let keep: BooleanArray = days.iter().map(|d| Some(*d == day)).collect();
            by_day
                .entry(day)
                .or_default()
                .push(arrow_select::filter::filter_record_batch(&rows, &keep)?);
        }
    }
    by_day
        .into_iter()
        .map(|(day, parts)| {
            let schema = parts[0].schema();
            Ok((day, arrow_select::concat::concat_batches(&schema, &parts)?))
        })
        .collect()
}

/// The `add` action of a file in place: its size, and statistics from its footer (rows, nulls,
/// and the min/max of numbers and times, which let readers skip files).
fn add_action(
    relative: String,
    partition_values: HashMap<String, Option<String>>,
    size: u64,
    footer: &ArrowReaderMetadata,
) -> Add {
    Add {
        path: relative,
        partition_values,
        size: size as i64,
        modification_time: txn_core::time::now_micros() / 1000,
        data_change: true,
        stats: Some(stats(footer).to_string()),
        ..Default::default()
    }
}

/// Delta's per-file statistics JSON.
fn stats(footer: &ArrowReaderMetadata) -> serde_json::Value {
    let meta = footer.metadata();
    let schema = footer.schema();
    let (mut mins, mut maxs, mut nulls) = (
        serde_json::Map::new(),
        serde_json::Map::new(),
        serde_json::Map::new(),
    );
    for (index, field) in schema.fields().iter().enumerate() {
        let mut null_count = 0u64;
        let mut ints: Option<(i64, i64)> = None;
        let mut floats: Option<(f64, f64)> = None;
        let mut times: Option<(i64, i64)> = None;
        let mut complete = true;
        for group in meta.row_groups() {
            let Some(column) = group.columns().get(index) else {
                complete = false;
                continue;
            };
            let Some(s) = column.statistics() else {
                complete = false;
                continue;
            };
            // An unknown count is not a zero (a reader would skip the file for IS NULL).
            match s.null_count_opt() {
                Some(n) => null_count += n,
                None => complete = false,
            }
            match (s, field.data_type()) {
                (Statistics::Int64(v), DataType::Timestamp(TimeUnit::Microsecond, _)) => {
                    if let (Some(&a), Some(&b)) = (v.min_opt(), v.max_opt()) {
                        times = Some(times.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
                    }
                }
                (Statistics::Int64(v), DataType::Int64) => {
                    if let (Some(&a), Some(&b)) = (v.min_opt(), v.max_opt()) {
                        ints = Some(ints.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
                    }
                }
                (Statistics::Int32(v), DataType::Int32) => {
                    if let (Some(&a), Some(&b)) = (v.min_opt(), v.max_opt()) {
                        let (a, b) = (i64::from(a), i64::from(b));
                        ints = Some(ints.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
                    }
                }
                (Statistics::Double(v), DataType::Float64) => {
                    if let (Some(&a), Some(&b)) = (v.min_opt(), v.max_opt()) {
                        floats = Some(floats.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
                    }
                }
                _ => {}
            }
        }
        let name = field.name().clone();
        if !complete || field.data_type().is_nested() {
            continue;
        }
        nulls.insert(name.clone(), null_count.into());
        if let Some((a, b)) = ints {
            mins.insert(name.clone(), a.into());
            maxs.insert(name.clone(), b.into());
        }
        if let Some((a, b)) = floats.filter(|(a, b)| a.is_finite() && b.is_finite()) {
            mins.insert(name.clone(), a.into());
            maxs.insert(name.clone(), b.into());
        }
        if let Some((a, b)) = times {
            // Millisecond precision, as Delta's statistics: the minimum rounded down and the
            // maximum up, so that the range always holds every value.
            if let (Some(min), Some(max)) = (
                millis_text(a.div_euclid(1000)),
                millis_text(b.saturating_add(999).div_euclid(1000)),
            ) {
                mins.insert(name.clone(), min.into());
                maxs.insert(name, max.into());
            }
        }
    }
    serde_json::json!({
        "numRecords": meta.file_metadata().num_rows(),
        "minValues": mins,
        "maxValues": maxs,
        "nullCount": nulls,
    })
}

/// A time in Delta's statistics form; `None` out of chrono's range (no statistic then).
fn millis_text(millis: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::checkpoint::BatchPlan;
    use crate::datasets::transactions::Transactions;
    use crate::engine::source::RawBatch;
    use crate::sinks::OffsetRange;
    use crate::{OutputFormat, ProcessorConfig, Stages};

    use super::*;

    fn config(root: &Path, checkpoint: &str) -> ProcessorConfig {
        let mut config = ProcessorConfig::try_parse_from(["processor"]).unwrap();
        config.output_path = root.into();
        config.checkpoint_dir = Some(root.join(checkpoint).into());
        config.output_format = OutputFormat::Delta;
        config
    }

    /// Two records on 2025-11-07, one on the 8th, and one that is not JSON.
    fn raw() -> RawBatch {
        raw_of(0..4)
    }

    /// The offsets `offsets` of [`raw`].
    fn raw_of(offsets: std::ops::Range<usize>) -> RawBatch {
        let record = |id: &str, ts: &str| {
            format!(r#"{{"txn_id": "{id}", "event_ts": "{ts}", "card_id": "c1", "amount": 12.5}}"#)
        };
        let mut raw = RawBatch::default();
        for (offset, value) in [
            record("t1", "2025-11-07T23:59:58+00:00"),
            record("t2", "2025-11-07T23:59:59+00:00"),
            record("t3", "2025-11-08T00:00:01+00:00"),
            "not json".to_string(),
        ]
        .iter()
        .enumerate()
        .filter(|(offset, _)| offsets.contains(offset))
        {
            raw.push(
                0,
                offset as i64,
                Some(0),
                Some(b"c1"),
                Some(value.as_bytes()),
            );
        }
        raw
    }

    fn plan(start: i64, end: i64) -> BatchPlan {
        plan_of(0, start, end)
    }

    fn plan_of(batch: u64, start: i64, end: i64) -> BatchPlan {
        BatchPlan {
            batch,
            planned_at: 1_762_559_999_000_000,
            ranges: vec![OffsetRange {
                partition: 0,
                start,
                end,
            }],
            topic_id: None,
        }
    }

    /// Each table's rows (the `add` actions' numRecords) and log entries.
    fn table(root: &Path, layer: &str) -> (u64, usize, Vec<String>) {
        let log = root.join(layer).join("_delta_log");
        let (mut rows, mut entries, mut paths) = (0, 0, Vec::new());
        for entry in std::fs::read_dir(&log).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                entries += 1;
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    let action: serde_json::Value = serde_json::from_str(line).unwrap();
                    if let Some(add) = action.get("add") {
                        let stats: serde_json::Value =
                            serde_json::from_str(add["stats"].as_str().unwrap()).unwrap();
                        rows += stats["numRecords"].as_u64().unwrap();
                        paths.push(add["path"].as_str().unwrap().to_string());
                    }
                }
            }
        }
        paths.sort();
        (rows, entries, paths)
    }

    /// The rows of the table's current version, read as a reader does: the files its log names.
    fn current_rows(root: &Path, layer: &str) -> RecordBatch {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = root.join(layer);
        let table = runtime
            .block_on(
                DeltaTableBuilder::from_url(folder_url(&dir).unwrap())
                    .unwrap()
                    .load(),
            )
            .unwrap();
        let mut parts = Vec::new();
        for file in table.snapshot().unwrap().log_data().iter() {
            parts.extend(
                merge::read_rows(read_local(&dir.join(file.path().as_ref())).unwrap()).unwrap(),
            );
        }
        arrow_select::concat::concat_batches(&parts[0].schema(), &parts).unwrap()
    }

    #[test]
    fn update_mode_rows_replace_the_rows_of_their_window_and_key() {
        let root = std::env::temp_dir().join(format!("delta-merge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut config = config(&root, "_chk");
        config.gold_output_mode = crate::operators::windows::OutputMode::Update;
        let (mut stages, _) = Stages::open(Transactions::new(&config), &config).unwrap();
        // t1 opens the 23:59 window; t2 updates it, t3 opens 00:00.
        for (batch, offsets) in [(0, 0..1), (1, 1..3), (2, 3..4)] {
            let plan = plan_of(batch, offsets.start as i64, offsets.end as i64);
            let staged = stages.stage(plan, true, raw_of(offsets), 0).unwrap();
            stages.committer().commit(staged).unwrap();
        }
        let gold = current_rows(&root, "gold");
        let counts: BTreeMap<i64, i64> = {
            use arrow_array::cast::AsArray as _;
            let starts = gold
                .column(gold.schema().index_of("window_start").unwrap())
                .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
            let counts = gold
                .column(gold.schema().index_of("txn_count").unwrap())
                .as_primitive::<arrow_array::types::Int64Type>();
            starts
                .values()
                .iter()
                .copied()
                .zip(counts.values().iter().copied())
                .collect()
        };
        assert_eq!(gold.num_rows(), 2, "one row per window and card: {gold:?}");
        let minute = 60_000_000;
        let first = 1_762_559_940_000_000; // 2025-11-07T23:59:00Z
        assert_eq!(counts, BTreeMap::from([(first, 2), (first + minute, 1)]));
        // The second batch removed the first batch's file (it held only the updated window).
        let log = std::fs::read_to_string(root.join("gold/_delta_log/00000000000000000002.json"))
            .unwrap();
        assert!(log.contains(r#""remove":"#), "{log}");
        assert!(log.contains(r#""outputMode":"Update""#), "{log}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// The Parquet files in a table's folder (its partitions included), whether the log names
    /// them or not.
    fn files_on_disk(dir: &Path) -> usize {
        let mut count = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() && !name.starts_with('_') {
                count += files_on_disk(&path);
            } else if name.ends_with(".parquet") {
                count += 1;
            }
        }
        count
    }

    #[test]
    fn compaction_rewrites_each_partitions_small_files_as_one_and_the_vacuum_deletes_the_old() {
        let root = std::env::temp_dir().join(format!("delta-optimize-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut config = config(&root, "_chk");
        config.delta_optimize_every = 4;
        config.delta_vacuum_retention = std::time::Duration::ZERO;
        let (mut stages, _) = Stages::open(Transactions::new(&config), &config).unwrap();
        for batch in 0..4 {
            let offsets = batch as usize..batch as usize + 1;
            let plan = plan_of(batch, batch as i64, batch as i64 + 1);
            let staged = stages.stage(plan, true, raw_of(offsets), 0).unwrap();
            stages.committer().commit(staged).unwrap();
        }
        // Bronze: four one-row files of one date, now one file of four rows.
        let bronze = current_rows(&root, "bronze");
        assert_eq!(bronze.num_rows(), 4);
        assert_eq!(
            files_on_disk(&root.join("bronze")),
            1,
            "the vacuum left only the compacted file"
        );
        // Silver: 2025-11-07's two files became one; 2025-11-08's single file stayed.
        assert_eq!(current_rows(&root, "silver").num_rows(), 3);
        let (_, _, paths) = table(&root, "silver");
        let log: Vec<String> = std::fs::read_dir(root.join("silver/_delta_log"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
            .collect();
        let optimize = log
            .iter()
            .find(|e| e.contains(r#""operation":"OPTIMIZE""#))
            .expect("an OPTIMIZE entry");
        assert_eq!(optimize.matches(r#""remove":"#).count(), 2, "{optimize}");
        assert_eq!(optimize.matches(r#""add":"#).count(), 1, "{optimize}");
        assert!(optimize.contains(r#""dataChange":false"#), "{optimize}");
        assert_eq!(files_on_disk(&root.join("silver")), 2, "{paths:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn rows_without_a_date_go_to_the_null_partition_and_the_others_to_their_day() {
        let root = std::env::temp_dir().join(format!("delta-undated-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let config = config(&root, "_chk");
        let (mut stages, _) = Stages::open(Transactions::new(&config), &config).unwrap();
        // Bronze is dated by the Kafka timestamp: one message has none, one is beyond the
        // microsecond range (both null in kafka_ts), two are on 2025-11-07.
        let mut raw = RawBatch::default();
        let value = br#"{"txn_id": "t1", "event_ts": "2025-11-07T10:00:00+00:00", "card_id": "c1", "amount": 1.0}"#;
        for (offset, ts) in [
            Some(1_762_509_600_000),
            None,
            Some(i64::MAX),
            Some(1_762_509_600_001),
        ]
        .into_iter()
        .enumerate()
        {
            raw.push(0, offset as i64, ts, Some(b"c1"), Some(value.as_slice()));
        }
        let staged = stages.stage(plan(0, 4), true, raw, 0).unwrap();
        stages.committer().commit(staged).unwrap();
        let (rows, _, paths) = table(&root, "bronze");
        assert_eq!(rows, 4);
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert!(paths[0].starts_with("date=2025-11-07/"), "{paths:?}");
        assert!(
            paths[1].starts_with("date=__HIVE_DEFAULT_PARTITION__/"),
            "{paths:?}"
        );
        assert_eq!(current_rows(&root, "bronze").num_rows(), 4);
        let log = std::fs::read_to_string(root.join("bronze/_delta_log/00000000000000000001.json"))
            .unwrap();
        assert!(log.contains(r#""partitionValues":{"date":null}"#), "{log}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_batch_a_table_holds_is_not_added_again_whichever_checkpoint_replays_it() {
        let root = std::env::temp_dir().join(format!("delta-sink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let first = config(&root, "_chk");
        let (mut stages, _) = Stages::open(Transactions::new(&first), &first).unwrap();
        let staged = stages.stage(plan(0, 4), true, raw(), 0).unwrap();
        stages.committer().commit(staged).unwrap();
        drop(stages);

        let (rows, entries, paths) = table(&root, "silver");
        assert_eq!(rows, 3);
        // Created, then the batch's commit.
        assert_eq!(entries, 2);
        // The batch's file, split by event date.
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert!(paths[0].starts_with("date=2025-11-07/"), "{paths:?}");
        assert!(paths[1].starts_with("date=2025-11-08/"), "{paths:?}");
        assert_eq!(table(&root, "quarantine").0, 1);
        assert_eq!(table(&root, "bronze").0, 4);
        let log = std::fs::read_to_string(root.join("bronze/_delta_log/00000000000000000001.json"))
            .unwrap();
        assert!(
            log.contains(r#""txn":{"appId":"kafka:transactions:0","version":4"#),
            "{log}"
        );

        // Another checkpoint (or none) replays the same offsets: the tables say they hold them.
        let second = config(&root, "_chk_other");
        let (mut stages, _) = Stages::open(Transactions::new(&second), &second).unwrap();
        let staged = stages.stage(plan(0, 4), true, raw(), 0).unwrap();
        stages.committer().commit(staged).unwrap();
        assert_eq!(table(&root, "silver"), (rows, entries, paths));
        assert_eq!(table(&root, "bronze").0, 4);

        // Other bounds over the same offsets: neither appended nor skipped.
        let staged = stages.stage(plan(2, 6), true, raw(), 0).unwrap();
        let error = stages.committer().commit(staged).err().unwrap().to_string();
        assert!(error.contains("other batch bounds"), "{error}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
