//! Table upkeep: compaction (OPTIMIZE) and VACUUM, every `DELTA_OPTIMIZE_EVERY` batches.
//!
//! A batch adds a file per table (a 30 s trigger: ~2,900 a day). Compaction reads the small
//! files of each partition and writes their rows as files of up to [`TARGET_SIZE`], committed as
//! one log entry of `remove` + `add` actions with `dataChange=false` (an `OPTIMIZE`): a reader
//! sees the version before or the one after, the same rows. The files it removed stay until the
//! vacuum finds them older than `DELTA_VACUUM_RETENTION`, so that readers of older versions (and
//! time travel within the retention) still find them; the vacuum also deletes files no version
//! names (a batch killed between writing its files and committing them).

use std::collections::BTreeMap;
use std::future::IntoFuture as _;
use std::time::Duration;

use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Remove};
use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::protocol::DeltaOperation;
use std::sync::PoisonError;
use tracing::info;

use super::{merge, read_footer, DeltaSink, Partition};
use crate::error::{DeltaContext as _, Result};
use crate::sinks::files::{AppendedFile, CompactWriter, FileLayer};

/// The size compaction aims for: files this large or larger are left alone.
pub const TARGET_SIZE: u64 = 128 << 20;

pub(super) struct Schedule {
    /// Compact and vacuum every this many batches (0: never).
    pub every: u64,
    pub retention: Duration,
}

/// An active file of a table, as compaction sees it.
struct Small {
    path: String,
    size: u64,
    remove: Remove,
}

impl DeltaSink {
    /// After batch `batch`'s commit: compacts and vacuums every table when the schedule says so.
    pub(super) fn upkeep(&self, batch: u64) -> Result<()> {
        let every = self.upkeep.every;
        if every == 0 || !(batch + 1).is_multiple_of(every) {
            return Ok(());
        }
        let layers: Vec<FileLayer> = {
            let tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
            self.layers
                .iter()
                .copied()
                .filter(|l| tables.contains_key(l.folder()))
                .collect()
        };
        for layer in layers {
            self.refresh_for_member(layer)?;
            self.compact(layer, batch)?;
            // Compaction may have left the table as it was: the vacuum must see its latest
            // version (a full vacuum deletes what its version does not name).
            self.refresh_for_member(layer)?;
            self.vacuum(layer)?;
        }
        Ok(())
    }

    /// Scale-out: the table as other processors left it (a member's view moves only with its
    /// own commits otherwise).
    fn refresh_for_member(&self, layer: FileLayer) -> Result<()> {
        if self.member.is_none() {
            return Ok(());
        }
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(table) = tables.get_mut(layer.folder()) {
            self.runtime
                .block_on(table.delta.update_state())
                .delta_context(|| format!("cannot read Delta table {}", layer.folder()))?;
        }
        Ok(())
    }

    /// Rewrites the small files of each partition of the layer's table as few large ones.
    fn compact(&self, layer: FileLayer, batch: u64) -> Result<()> {
        let partitions: BTreeMap<Partition, Vec<Small>> = {
            let tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(table) = tables.get(layer.folder()) else {
                return Ok(());
            };
            let state = table
                .delta
                .snapshot()
                .delta_context(|| format!("Delta table {}", layer.folder()))?;
            let mut partitions: BTreeMap<Partition, Vec<Small>> = BTreeMap::new();
            for file in state.log_data().iter() {
                let size = file.size().max(0) as u64;
                if size >= TARGET_SIZE {
                    continue;
                }
                let partition = Partition::from_values(file.partition_values_map());
                partitions.entry(partition).or_default().push(Small {
                    path: file.path().into_owned(),
                    size,
                    remove: file.remove_action(false),
                });
            }
            partitions
        };
        let (mut actions, mut before, mut after) = (Vec::new(), 0, 0);
        for (partition, mut files) in partitions {
            files.sort_by(|a, b| a.path.cmp(&b.path));
            // Bins of consecutive files up to the target size; a bin of one file stays as it is.
            let mut bins: Vec<Vec<Small>> = vec![Vec::new()];
            let mut filled = 0;
            for file in files {
                if filled + file.size > TARGET_SIZE && !bins.last().is_some_and(Vec::is_empty) {
                    bins.push(Vec::new());
                    filled = 0;
                }
                filled += file.size;
                bins.last_mut().expect("a bin").push(file);
            }
            for (index, bin) in bins.into_iter().filter(|b| b.len() > 1).enumerate() {
                let stem = CompactWriter::file_name(layer, txn_core::time::now_micros(), batch);
                // A member's own name: two processors compacting at once must not write one file.
                let owner = self
                    .member
                    .as_deref()
                    .map_or(String::new(), |m| format!("_{m}"));
                let name = format!(
                    "{}{owner}_c{index}.parquet",
                    stem.trim_end_matches(".parquet")
                );
                let local = self.own_staging(layer).join(&name);
                let mut out: Option<AppendedFile> = None;
                for file in &bin {
                    for rows in merge::read_rows(self.read_table_file(layer, &file.path)?)? {
                        let writer = match &mut out {
                            Some(writer) => writer,
                            None => out.insert(AppendedFile::create(&local, rows.schema())?),
                        };
                        writer.write(&rows)?;
                    }
                }
                before += bin.len();
                actions.extend(bin.into_iter().map(|f| Action::Remove(f.remove)));
                if let Some(out) = out {
                    out.finish()?;
                    let footer = read_footer(&local)?;
                    let mut add = self.publish(&local, layer, &partition, &name, &footer)?;
                    add.data_change = false;
                    actions.push(Action::Add(add));
                    after += 1;
                }
            }
        }
        if actions.is_empty() {
            return Ok(());
        }
        if self.member.is_some() {
            // Other processors commit to the table meanwhile: committed only where every file it
            // removes is still there.
            let operation = DeltaOperation::Optimize {
                predicate: None,
                target_size: TARGET_SIZE as i64,
            };
            let shown = layer.folder();
            match self.commit_exactly(layer, actions, operation, CommitProperties::default()) {
                Ok(Some(())) => {
                    info!("[processor] Delta table {shown}: compacted {before} files into {after}")
                }
                Ok(None) => info!("[processor] Delta table {shown}: compaction left for later: another processor compacted some of its files first"),
                Err(e) if super::is_conflict(&e) => info!("[processor] Delta table {shown}: compaction left for later: another processor committed first"),
                Err(e) => {
                    return Err(e)
                        .delta_context(|| format!("cannot commit the compaction of Delta table {shown}"))
                }
            }
            return Ok(());
        }
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(table) = tables.get_mut(layer.folder()) else {
            return Ok(());
        };
        let context = || {
            format!(
                "cannot commit the compaction of Delta table {}",
                layer.folder()
            )
        };
        let committed = self.runtime.block_on(async {
            let state = table.delta.snapshot().delta_context(context)?;
            CommitBuilder::from(CommitProperties::default())
                .with_actions(actions)
                .build(
                    Some(state),
                    table.delta.log_store(),
                    DeltaOperation::Optimize {
                        predicate: None,
                        target_size: TARGET_SIZE as i64,
                    },
                )
                .await
                .delta_context(context)
        })?;
        table.delta.state = Some(committed.snapshot());
        info!(
            "[processor] Delta table {}: compacted {before} files into {after} (version {})",
            layer.folder(),
            committed.version()
        );
        Ok(())
    }

    /// Deletes the files no version within the retention names.
    fn vacuum(&self, layer: FileLayer) -> Result<()> {
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(table) = tables.get_mut(layer.folder()) else {
            return Ok(());
        };
        let retention =
            chrono::Duration::from_std(self.upkeep.retention).unwrap_or(chrono::Duration::MAX);
        let (vacuumed, metrics) = self
            .runtime
            .block_on(
                table
                    .delta
                    .clone()
                    .vacuum()
                    .with_retention_period(retention)
                    .with_enforce_retention_duration(false)
                    .with_mode(VacuumMode::Full)
                    .into_future(),
            )
            .delta_context(|| format!("cannot vacuum Delta table {}", layer.folder()))?;
        table.delta = vacuumed;
        if !metrics.files_deleted.is_empty() {
            info!(
                "[processor] Delta table {}: vacuum deleted {} files",
                layer.folder(),
                metrics.files_deleted.len()
            );
        }
        Ok(())
    }
}
