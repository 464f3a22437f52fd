//! The compact writer: exactly one file per non-empty layer per batch, never seen half-written.
//!
//! A file is written into the layer's hidden `_staging/` folder (names starting with `_` are
//! skipped by pandas, DuckDB, pyarrow and Spark), fsynced, then renamed to its final name
//! `<prefix>_<YYYYmmdd_HHMMSS>_<batch>.<ext>`. The time is the batch's planned time from the
//! checkpoint, so a re-run of the batch writes the same name and replaces the file.

pub mod chunk;

use std::fs::{self, File};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema};
use bytes::Bytes;
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::types::ColumnDescPtr;
use parquet::schema::types::ColumnPath;
use txn_core::time::compact_utc;

use super::{wrong_piece, Piece, PreCommit, Sink, SinkBatch, Staged, Target};
use crate::error::{Error, IoContext, Result};
use crate::os::sync_dir;

const STAGING: &str = "_staging";

/// The staging folder of `layer` under the staging root (emptied by [`CompactWriter::open`]).
pub fn staging_dir(root: &Path, layer: FileLayer) -> PathBuf {
    root.join(layer.folder()).join(STAGING)
}

/// Files synced at once by a commit (a batch of a partitioned layer may have many).
const SYNC_THREADS: usize = 16;

/// A folder of files, one per batch: `<folder>/<prefix>_<YYYYmmdd_HHMMSS>_<batch>.<extension>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileLayer {
    pub folder: &'static str,
    pub prefix: &'static str,
    pub extension: &'static str,
    /// The UTC timestamp column whose date partitions the layer as a Delta table
    /// (`date=YYYY-MM-DD`); `None`: not partitioned by date.
    pub date_column: Option<&'static str>,
    /// Files in Hive partition folders (`id=3/`); as a Delta table, the folder's column is a
    /// partition column (after `date`).
    pub hive: bool,
    /// The columns that identify a row of an update-mode layer (a window and its key): as a
    /// Delta table, a batch's rows replace the rows of the same key (MERGE). Empty: append.
    pub keys: &'static [&'static str],
}

impl FileLayer {
    /// A Parquet layer whose files are named after its folder.
    pub const fn parquet(folder: &'static str) -> Self {
        FileLayer {
            folder,
            prefix: folder,
            extension: "parquet",
            date_column: None,
            hive: false,
            keys: &[],
        }
    }

    /// The layer, written in Hive partition folders.
    pub const fn hive_partitioned(self) -> Self {
        FileLayer { hive: true, ..self }
    }

    /// The layer, in update mode on `keys`: a batch's row replaces the row of the same key.
    pub const fn upserted_on(self, keys: &'static [&'static str]) -> Self {
        FileLayer { keys, ..self }
    }

    /// The layer, partitioned by the UTC date of `column` as a Delta table.
    pub const fn dated_by(self, column: &'static str) -> Self {
        FileLayer {
            date_column: Some(column),
            ..self
        }
    }

    pub fn folder(self) -> &'static str {
        self.folder
    }

    pub fn prefix(self) -> &'static str {
        self.prefix
    }

    pub fn extension(self) -> &'static str {
        self.extension
    }
}

/// Columns holding whole payloads or ids: dictionary encoding only costs time there.
const NO_DICTIONARY: [&str; 4] = ["value", "json_str", "bad_json", "txn_id"];

/// Columns of (nearly) unique numbers: no dictionary either (it would hold every value, and cost
/// a hash-table insert a row). Offsets and event times rise through a batch, so they are
/// delta-encoded (`DELTA_BINARY_PACKED`: a few bits a row); coordinates are random, and the
/// windows' sums, averages and extremes of amounts nearly so (a window mostly holds one or two
/// transactions), so plain.
const DELTA: [&str; 2] = ["offset", "event_time"];
const PLAIN_NUMBERS: [&str; 7] = [
    "lat",
    "lon",
    "sum_amount",
    "total_amount",
    "avg_amount",
    "max_amount",
    "min_amount",
];

/// The writer settings of a Parquet layer of this schema.
///
/// Statistics are kept per column chunk, not per page, and no page index is written: a file
/// holds one batch, whose row groups readers skip by their statistics, and a column chunk copied
/// from another file (`Shared`) has no page index for the footer to hold (parquet 59 panics on a
/// file where some chunks have one and others not).
///
/// String columns carry no min/max statistics. A file holds one batch, so its time columns are
/// narrow and their statistics let readers skip files by time; a string column (ids, merchant,
/// city, status, payloads) spans nearly its whole range in every file, so its min/max would skip
/// nothing, and computing them is a comparison per value (a tenth of silver's encoding time).
fn properties(schema: &Schema) -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_offset_index_disabled(true)
        .set_created_by(
            concat!("transaction-pipeline processor ", env!("CARGO_PKG_VERSION")).into(),
        );
    for column in NO_DICTIONARY.into_iter().chain(PLAIN_NUMBERS).chain(DELTA) {
        props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    for column in DELTA {
        props = props.set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED);
    }
    for field in schema.fields() {
        if field.data_type() == &DataType::Utf8 {
            props = props.set_column_statistics_enabled(
                ColumnPath::from(field.name().as_str()),
                EnabledStatistics::None,
            );
        }
    }
    props.build()
}

/// One column chunk of a Parquet file held in memory: copied into another file of the batch
/// that holds the same values, instead of encoding and compressing them twice.
#[derive(Clone)]
pub struct SharedChunk {
    file: Bytes,
    chunk: ColumnChunkMetaData,
    rows: i64,
    /// Its pages, when known ([`chunk::encode_text`]'s).
    pages: Vec<chunk::PageSpan>,
}

impl SharedChunk {
    /// A chunk of `rows` rows whose pages are in `file` at the offsets `chunk` gives.
    pub fn new(file: Bytes, chunk: ColumnChunkMetaData, rows: i64) -> Self {
        SharedChunk {
            file,
            chunk,
            rows,
            pages: Vec::new(),
        }
    }

    fn with_pages(mut self, pages: Vec<chunk::PageSpan>) -> Self {
        self.pages = pages;
        self
    }

    /// The rows this chunk holds.
    pub fn rows(&self) -> usize {
        self.rows as usize
    }

    /// The chunk of only the kept rows (encoded with `kept`, [`chunk::encode_text`]): its kept
    /// pages, copied as they are, in order. `None` when its pages are not known or none is kept.
    pub fn kept(&self) -> Result<Option<SharedChunk>> {
        let kept: Vec<_> = self.pages.iter().filter(|p| p.kept).collect();
        if self.pages.is_empty() || kept.is_empty() {
            return Ok(None);
        }
        if kept.len() == self.pages.len() {
            return Ok(Some(self.clone()));
        }
        let size: u64 = kept.iter().map(|p| p.bytes.1 - p.bytes.0).sum();
        let mut file = Vec::with_capacity(size as usize);
        let mut pages = Vec::with_capacity(kept.len());
        for p in &kept {
            let at = file.len() as u64;
            file.extend_from_slice(&self.file[p.bytes.0 as usize..p.bytes.1 as usize]);
            pages.push(chunk::PageSpan {
                bytes: (at, file.len() as u64),
                ..(*p).clone()
            });
        }
        let rows: u64 = kept.iter().map(|p| p.rows).sum();
        let c = &self.chunk;
        let meta = ColumnChunkMetaData::builder(c.column_descr_ptr())
            .set_compression_codec(c.compression_codec())
            .set_encodings_mask(*c.encodings_mask())
            .set_total_compressed_size(kept.iter().map(|p| p.compressed).sum::<u64>() as i64)
            .set_total_uncompressed_size(kept.iter().map(|p| p.uncompressed).sum::<u64>() as i64)
            .set_num_values(rows as i64)
            .set_data_page_offset(0)
            .build()?;
        Ok(Some(
            SharedChunk::new(Bytes::from(file), meta, rows as i64).with_pages(pages),
        ))
    }

    /// The chunk as column `descr` of a file of `rows` rows: its bytes and its close result
    /// (offsets still those of the source file; `append_column` maps them). `None` when it does
    /// not fit: other rows, or another physical type or level structure (nullability), which
    /// would make its pages unreadable there.
    fn close_as(
        &self,
        descr: &ColumnDescPtr,
        rows: usize,
    ) -> Result<Option<(Bytes, ColumnCloseResult)>> {
        let c = &self.chunk;
        let source = c.column_descr();
        if self.rows != rows as i64
            || source.physical_type() != descr.physical_type()
            || source.max_def_level() != descr.max_def_level()
            || source.max_rep_level() != descr.max_rep_level()
        {
            return Ok(None);
        }
        let mut meta = ColumnChunkMetaData::builder(descr.clone())
            .set_compression_codec(c.compression_codec())
            .set_encodings_mask(*c.encodings_mask())
            .set_total_compressed_size(c.compressed_size())
            .set_total_uncompressed_size(c.uncompressed_size())
            .set_num_values(c.num_values())
            .set_data_page_offset(c.data_page_offset())
            .set_dictionary_page_offset(c.dictionary_page_offset())
            .set_unencoded_byte_array_data_bytes(c.unencoded_byte_array_data_bytes());
        if let Some(h) = c.definition_level_histogram() {
            meta = meta.set_definition_level_histogram(Some(h.clone()));
        }
        if let Some(stats) = c.page_encoding_stats() {
            meta = meta.set_page_encoding_stats(stats.clone());
        }
        let close = ColumnCloseResult {
            bytes_written: c.compressed_size() as u64,
            rows_written: self.rows as u64,
            metadata: meta.build()?,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        };
        Ok(Some((self.file.clone(), close)))
    }
}

/// A column of a file taken already encoded from another file of the batch
/// ([`CompactWriter::write_parquet_with`]).
pub struct Shared<'f> {
    /// Its index in the file's schema.
    pub column: usize,
    /// The encoded chunks (one per row group), waited for once the other columns are encoded.
    pub wait: &'f dyn Fn() -> Result<Option<Vec<SharedChunk>>>,
    /// Its values, encoded here when there is no chunk or it does not fit.
    pub values: &'f dyn Fn() -> ArrayRef,
    /// The file's row groups (start, length), when they are not [`row_groups`]'s: the chunks'.
    pub groups: Option<Vec<(usize, usize)>>,
}

#[derive(Clone)]
pub struct CompactWriter {
    root: PathBuf,
    max_files: usize,
    /// Scale-out: this processor's member id, in its file names and its staging folder (other
    /// processors stage beside it, and may roll its decided batches forward).
    member: Option<String>,
}

impl CompactWriter {
    /// Creates the layer folders, removes staging leftovers of a crash, and checks that `root` is
    /// writable, so a bad OUTPUT_PATH fails at start with one line.
    pub fn open(root: &Path, max_files: usize, layers: &[FileLayer]) -> Result<Self> {
        Self::open_as(root, max_files, layers, None)
    }

    /// [`Self::open`] for a member of a group of processors (scale-out): it stages in
    /// `<layer>/_staging/<member>/` and names its files after itself; it never removes what
    /// other members staged (a decided batch of theirs is rolled forward from there).
    pub fn open_as(
        root: &Path,
        max_files: usize,
        layers: &[FileLayer],
        member: Option<&str>,
    ) -> Result<Self> {
        for layer in layers {
            let mut staging = root.join(layer.folder()).join(STAGING);
            if let Some(member) = member {
                staging = staging.join(member);
            }
            fs::create_dir_all(&staging).io_context(|| {
                format!(
                    "cannot create output folder {} (OUTPUT_PATH)",
                    staging.display()
                )
            })?;
            for entry in fs::read_dir(&staging)
                .io_context(|| format!("cannot list {}", staging.display()))?
            {
                let path = entry
                    .io_context(|| format!("cannot list {}", staging.display()))?
                    .path();
                if path.is_dir() {
                    // A scale-out member's staging: its batches are rolled forward from there.
                    continue;
                }
                fs::remove_file(&path)
                    .io_context(|| format!("cannot remove staging leftover {}", path.display()))?;
            }
        }
        // Named after the process and the member: processors of other datasets share an
        // OUTPUT_PATH and start together, and a scale-out processor in two stages opens two
        // writers at once.
        let probe = root.join(format!(
            ".write-probe-{}{}",
            std::process::id(),
            member.map(|m| format!("-{m}")).unwrap_or_default()
        ));
        File::create(&probe)
            .and_then(|mut f| f.write_all(b"ok"))
            .and_then(|()| fs::remove_file(&probe))
            .io_context(|| {
                format!(
                    "cannot write to output folder {} (OUTPUT_PATH)",
                    root.display()
                )
            })?;
        Ok(CompactWriter {
            root: root.to_path_buf(),
            max_files,
            member: member.map(str::to_string),
        })
    }

    /// The staging folder of a layer (this member's, in scale-out).
    fn staging(&self, layer: FileLayer) -> PathBuf {
        let staging = self.root.join(layer.folder()).join(STAGING);
        match &self.member {
            Some(member) => staging.join(member),
            None => staging,
        }
    }

    /// A batch's file name: [`Self::file_name`], or in scale-out with the member id before the
    /// batch number (`bronze_<time>_<member>-<batch>.parquet`), so that no two processors'
    /// names collide.
    fn name_of(&self, layer: FileLayer, planned_at: i64, batch: u64) -> String {
        match &self.member {
            None => Self::file_name(layer, planned_at, batch),
            Some(member) => format!(
                "{}_{}_{member}-{batch}.{}",
                layer.prefix(),
                compact_utc(planned_at),
                layer.extension()
            ),
        }
    }

    /// The output folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn file_name(layer: FileLayer, planned_at: i64, batch: u64) -> String {
        format!(
            "{}_{}_{}.{}",
            layer.prefix(),
            compact_utc(planned_at),
            batch,
            layer.extension()
        )
    }

    fn paths(&self, layer: FileLayer, planned_at: i64, batch: u64) -> (PathBuf, PathBuf) {
        let name = self.name_of(layer, planned_at, batch);
        let dir = self.root.join(layer.folder());
        (self.staging(layer).join(&name), dir.join(name))
    }

    /// Writes one Parquet file of a Hive partition (`<folder>/<partition>/<name>`, e.g.
    /// `events/id=3/…`) into the layer's staging folder; publishing creates the partition folder.
    pub fn write_parquet_partition(
        &self,
        layer: FileLayer,
        partition: &str,
        rows: &RecordBatch,
        planned_at: i64,
        batch: u64,
    ) -> Result<StagedFile> {
        let name = self.name_of(layer, planned_at, batch);
        let dir = self.root.join(layer.folder());
        // `=` cannot start a final name of ours, so staged partition files never collide.
        let staged = self.staging(layer).join(format!("{partition}={name}"));
        let fin = dir.join(partition).join(name);
        let file =
            File::create(&staged).io_context(|| format!("cannot create {}", staged.display()))?;
        let out = BufWriter::with_capacity(1 << 20, file);
        let file_writer = encode_file(out, rows)?;
        staged_file(file_writer.into_inner()?, layer, staged, fin)?.synced()
    }

    /// Writes one Parquet file for the layer's rows of this batch into staging.
    pub fn write_parquet(
        &self,
        layer: FileLayer,
        rows: &RecordBatch,
        planned_at: i64,
        batch: u64,
    ) -> Result<StagedFile> {
        let (staged, fin, out) = self.create_staged(layer, planned_at, batch)?;
        let file_writer = encode_file(out, rows)?;
        staged_file(file_writer.into_inner()?, layer, staged, fin)
    }

    /// Writes one Parquet file (into staging) whose column `shared.column` is copied, already
    /// encoded, from another file of the batch (same values, same row groups, same type and
    /// nullability), the other columns encoded here. The chunks are waited for after the other
    /// columns are encoded; when there are none (or one does not fit), `shared.values` are
    /// encoded here instead (`rows` may hold a stand-in for that column). Returns the file and
    /// whether the column was copied.
    pub fn write_parquet_with(
        &self,
        layer: FileLayer,
        rows: &RecordBatch,
        planned_at: i64,
        batch: u64,
        shared: Shared<'_>,
    ) -> Result<(StagedFile, bool)> {
        let column = shared.column;
        let (staged, fin, out) = self.create_staged(layer, planned_at, batch)?;
        let (mut file_writer, factory) = parquet_writer(out, rows)?;
        let groups = match shared.groups {
            Some(groups)
                if groups.iter().map(|g| g.1).sum::<usize>() == rows.num_rows()
                    && groups.iter().all(|g| g.1 > 0) =>
            {
                groups
            }
            _ => row_groups(rows.num_rows()),
        };
        let encoded = encode_groups(&factory, rows, &groups, Some(column))?;
        let descr = file_writer.schema_descr().column(column);
        // Every group's chunk must fit, or none is used.
        let copied = match (shared.wait)()? {
            Some(chunks) if chunks.len() == groups.len() => chunks
                .iter()
                .zip(&groups)
                .map(|(chunk, &(_, len))| chunk.close_as(&descr, len))
                .collect::<Result<Option<Vec<_>>>>()?,
            _ => None,
        };
        let was_copied = copied.is_some();
        let mut copied = copied.map(Vec::into_iter);
        let values = if was_copied {
            None
        } else {
            let values = (shared.values)();
            if values.len() != rows.num_rows() {
                return Err(Error::Internal(format!(
                    "{}: column {column} has {} values for {} rows",
                    layer.folder(),
                    values.len(),
                    rows.num_rows()
                )));
            }
            Some(values)
        };
        append_groups(&mut file_writer, encoded, Some(column), |g, group| {
            if let Some((file, close)) = copied.as_mut().and_then(Iterator::next) {
                group.append_column(&file, close)?;
            } else if let Some(values) = &values {
                let (start, len) = groups[g];
                let mut w = factory.create_column_writers(g)?.swap_remove(column);
                for leaf in compute_leaves(rows.schema().field(column), &values.slice(start, len))?
                {
                    w.write(&leaf)?;
                }
                w.close()?.append_to_row_group(group)?;
            }
            Ok(())
        })?;
        let file = staged_file(file_writer.into_inner()?, layer, staged, fin)?;
        tracing::debug!("{}: column {column} copied: {was_copied}", layer.folder());
        Ok((file, was_copied))
    }

    /// The batch's staging file of the layer, created and buffered; the staging and final paths.
    fn create_staged(
        &self,
        layer: FileLayer,
        planned_at: i64,
        batch: u64,
    ) -> Result<(PathBuf, PathBuf, BufWriter<File>)> {
        let (staged, fin) = self.paths(layer, planned_at, batch);
        let file =
            File::create(&staged).io_context(|| format!("cannot create {}", staged.display()))?;
        Ok((staged, fin, BufWriter::with_capacity(1 << 20, file)))
    }

    /// Writes one file of raw bytes (the CSV layer) into staging, piece by piece: `fill` hands
    /// each piece to the sink it is given as soon as it is made, so a piece is written while it
    /// is still in the cache (and the whole file is never held in memory).
    pub fn write_pieces(
        &self,
        layer: FileLayer,
        planned_at: i64,
        batch: u64,
        fill: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
    ) -> Result<StagedFile> {
        let (staged, fin) = self.paths(layer, planned_at, batch);
        let mut file =
            File::create(&staged).io_context(|| format!("cannot create {}", staged.display()))?;
        fill(&mut |piece: &[u8]| {
            file.write_all(piece)
                .io_context(|| format!("cannot write {}", staged.display()))
        })?;
        Ok(StagedFile::start_writeback(file, layer, staged, fin))
    }

    /// Puts a batch's staged files in place: [`Self::sync`], then [`Self::place`]. Returns the
    /// final paths.
    pub fn publish(&self, files: Vec<StagedFile>) -> Result<Vec<PathBuf>> {
        Self::sync(&files)?;
        Self::place(files)
    }

    /// Makes every staged file durable (in parallel: the disk works on all of them at once);
    /// nothing is visible yet.
    pub fn sync(files: &[StagedFile]) -> Result<()> {
        let open: Vec<&StagedFile> = files.iter().filter(|f| f.file.is_some()).collect();
        for group in open.chunks(SYNC_THREADS) {
            std::thread::scope(|s| {
                let syncs: Vec<_> = group
                    .iter()
                    .map(|f| crate::spawn(s, "sync", move || f.sync()))
                    .collect();
                syncs.into_iter().try_for_each(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Internal("a file sync thread panicked".into()))
                    })
                })
            })?;
        }
        Ok(())
    }

    /// Renames synced staged files to their final names, then syncs each folder. Returns the
    /// final paths.
    pub fn place(files: Vec<StagedFile>) -> Result<Vec<PathBuf>> {
        let mut folders: Vec<&Path> = Vec::new();
        for f in &files {
            let folder = f.fin.parent().unwrap_or(Path::new("."));
            if !folder.exists() {
                // A new Hive partition: its folder, then the entry in its parent, made durable.
                fs::create_dir_all(folder)
                    .io_context(|| format!("cannot create {}", folder.display()))?;
                if let Some(parent) = folder.parent() {
                    sync_dir(parent)?;
                }
            }
            fs::rename(&f.staged, &f.fin)
                .io_context(|| format!("cannot move {} into place", f.staged.display()))?;
            if !folders.contains(&folder) {
                folders.push(folder);
            }
        }
        folders.into_iter().try_for_each(sync_dir)?;
        Ok(files.into_iter().map(|f| f.fin).collect())
    }

    /// Moves the layer's files of batches after `batch` (a recovery replays those batches) into
    /// `<layer>/_set_aside_<name>/`, which readers skip (a leading `_`). Returns how many.
    pub fn set_aside_after(&self, layer: FileLayer, batch: u64, name: &str) -> Result<usize> {
        let dir = self.root.join(layer.folder());
        let aside = dir.join(format!("_set_aside_{name}"));
        let mut folders = vec![(dir.clone(), aside.clone())];
        for entry in fs::read_dir(&dir).io_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry
                .io_context(|| format!("cannot list {}", dir.display()))?
                .path();
            let part = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if part.contains('=') && !part.starts_with('_') && path.is_dir() {
                folders.push((path.clone(), aside.join(part)));
            }
        }
        let mut moved = 0;
        for (from, to) in folders {
            for entry in
                fs::read_dir(&from).io_context(|| format!("cannot list {}", from.display()))?
            {
                let path = entry
                    .io_context(|| format!("cannot list {}", from.display()))?
                    .path();
                let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if batch_of(layer, file).is_some_and(|b| b > batch) {
                    fs::create_dir_all(&to)
                        .io_context(|| format!("cannot create {}", to.display()))?;
                    fs::rename(&path, to.join(file))
                        .io_context(|| format!("cannot move {} aside", path.display()))?;
                    moved += 1;
                }
            }
        }
        Ok(moved)
    }

    /// Keeps the newest `max_files` files of the layer, deleting older ones; only files of batches
    /// up to `last_committed` are ever candidates. Returns how many were deleted.
    pub fn apply_retention(&self, layer: FileLayer, last_committed: u64) -> Result<usize> {
        if self.max_files == 0 {
            return Ok(0);
        }
        let dir = self.root.join(layer.folder());
        let mut deleted = self.retain_in(&dir, layer, last_committed)?;
        // Hive partitions (`id=3/`): the newest files of each are kept.
        for entry in fs::read_dir(&dir).io_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry
                .io_context(|| format!("cannot list {}", dir.display()))?
                .path();
            let partition = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains('=') && !n.starts_with('_'));
            if partition && path.is_dir() {
                deleted += self.retain_in(&path, layer, last_committed)?;
            }
        }
        Ok(deleted)
    }

    /// Retention in one folder.
    fn retain_in(&self, dir: &Path, layer: FileLayer, last_committed: u64) -> Result<usize> {
        let mut files: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).io_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry
                .io_context(|| format!("cannot list {}", dir.display()))?
                .path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(batch) = batch_of(layer, name).filter(|&b| b <= last_committed) {
                files.push((batch, path));
            }
        }
        if files.len() <= self.max_files {
            return Ok(0);
        }
        files.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
        let mut deleted = 0;
        for (_, path) in &files[self.max_files..] {
            match fs::remove_file(path) {
                Ok(()) => deleted += 1,
                // Removed by someone else meanwhile: what retention wanted.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::Io {
                        context: format!("cannot delete old file {}", path.display()),
                        source: e,
                    })
                }
            }
        }
        Ok(deleted)
    }
}

/// A Parquet writer of the layer settings for `rows`' schema into `out`, and the factory of its
/// column writers.
fn parquet_writer<W: std::io::Write + Send>(
    out: W,
    rows: &RecordBatch,
) -> Result<(SerializedFileWriter<W>, ArrowRowGroupWriterFactory)> {
    let schema = rows.schema();
    let props = properties(&schema);
    Ok(ArrowWriter::try_new(out, schema, Some(props))?.into_serialized_writer()?)
}

/// `rows` as a Parquet file into `out`, every column encoded (row groups in parallel); the
/// footer is written by `finish` or `into_inner`.
fn encode_file<W: std::io::Write + Send>(
    out: W,
    rows: &RecordBatch,
) -> Result<SerializedFileWriter<W>> {
    let (mut file_writer, factory) = parquet_writer(out, rows)?;
    let groups = row_groups(rows.num_rows());
    let encoded = encode_groups(&factory, rows, &groups, None)?;
    append_groups(&mut file_writer, encoded, None, |_, _| Ok(()))?;
    Ok(file_writer)
}

/// Writes `rows` as one Parquet file at `path`, with the layers' settings, and syncs it.
pub(crate) fn write_file(path: &Path, rows: &RecordBatch) -> Result<()> {
    let file = File::create(path).io_context(|| format!("cannot create {}", path.display()))?;
    let out = BufWriter::with_capacity(1 << 20, file);
    flush_and_sync(encode_file(out, rows)?.into_inner()?, path)
}

/// Writes out a finished file's buffer and syncs the file.
fn flush_and_sync(buffered: BufWriter<File>, path: &Path) -> Result<()> {
    let file = buffered.into_inner().map_err(|e| Error::Io {
        context: format!("cannot write {}", path.display()),
        source: e.into_error(),
    })?;
    file.sync_all()
        .io_context(|| format!("cannot sync {}", path.display()))
}

/// A Parquet file written piece by piece, with the layers' settings (the Delta tables'
/// compaction: the rows of many small files, appended as they are read).
pub(crate) struct AppendedFile {
    writer: ArrowWriter<BufWriter<File>>,
    path: PathBuf,
}

impl AppendedFile {
    pub fn create(path: &Path, schema: arrow_schema::SchemaRef) -> Result<Self> {
        let file = File::create(path).io_context(|| format!("cannot create {}", path.display()))?;
        let props = properties(&schema);
        let writer =
            ArrowWriter::try_new(BufWriter::with_capacity(1 << 20, file), schema, Some(props))?;
        Ok(AppendedFile {
            writer,
            path: path.to_path_buf(),
        })
    }

    pub fn write(&mut self, rows: &RecordBatch) -> Result<()> {
        Ok(self.writer.write(rows)?)
    }

    /// Closes and syncs the file.
    pub fn finish(self) -> Result<()> {
        flush_and_sync(self.writer.into_inner()?, &self.path)
    }
}

/// The Parquet description of column `column` of a layer schema (flat: one leaf per column).
pub fn column_descr(schema: &Schema, column: usize) -> Result<ColumnDescPtr> {
    let descr = parquet::arrow::ArrowSchemaConverter::new().convert(schema)?;
    if column >= descr.num_columns() {
        return Err(Error::Internal(format!("no column {column} in the schema")));
    }
    Ok(descr.column(column))
}

/// A string column of `rows` rows encoded by [`chunk::encode_text`] as the chunks of the
/// row groups [`row_groups`] gives (in parallel, one thread per group): ready for
/// Payloads (whole messages) as the chunks of a nullable string column, one per row group of a
/// file of `rows` rows: encoded once and copied into every file of the batch that holds them.
/// With `kept`, the kept rows' pages are apart from the others' ([`SharedChunk::kept`]).
pub fn encode_payloads<'v>(
    rows: usize,
    value: &(dyn Fn(usize) -> Option<std::borrow::Cow<'v, str>> + Sync),
    kept: Option<&(dyn Fn(usize) -> bool + Sync)>,
) -> Result<Vec<SharedChunk>> {
    let schema = Schema::new(vec![arrow_schema::Field::new(
        "value",
        DataType::Utf8,
        true,
    )]);
    encode_text_in(&column_descr(&schema, 0)?, &row_groups(rows), value, kept)
}

/// [`Shared::wait`] of any file of the batch with that column and that many rows.
pub fn encode_text_groups<'v>(
    descr: &ColumnDescPtr,
    rows: usize,
    value: &(dyn Fn(usize) -> Option<std::borrow::Cow<'v, str>> + Sync),
) -> Result<Vec<SharedChunk>> {
    encode_text_in(descr, &row_groups(rows), value, None)
}

/// A string column encoded as the chunks of row groups `groups` (in parallel, one thread per
/// group); with `kept`, no page mixes kept rows and others ([`SharedChunk::kept`]).
pub fn encode_text_in<'v>(
    descr: &ColumnDescPtr,
    groups: &[(usize, usize)],
    value: &(dyn Fn(usize) -> Option<std::borrow::Cow<'v, str>> + Sync),
    kept: Option<&(dyn Fn(usize) -> bool + Sync)>,
) -> Result<Vec<SharedChunk>> {
    per_group(groups.len(), |g| {
        let (start, len) = groups[g];
        let kept_here = |row: usize| kept.is_none_or(|k| k(start + row));
        chunk::encode_text(
            descr,
            len,
            |row| value(start + row),
            kept.map(|_| &kept_here as &dyn Fn(usize) -> bool),
        )
    })
}

/// `encode(g)` for each of `groups` row groups, one thread per group when there are several:
/// the results in group order.
fn per_group<T: Send>(groups: usize, encode: impl Fn(usize) -> Result<T> + Sync) -> Result<Vec<T>> {
    if groups == 1 {
        return Ok(vec![encode(0)?]);
    }
    let encode = &encode;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..groups)
            .map(|g| crate::spawn(s, "encode", move || encode(g)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Internal("a Parquet encoding thread panicked".into()))
                })
            })
            .collect()
    })
}

/// Rows a row group gets at least: below this, one group (small batches stay one group).
const MIN_GROUP_ROWS: usize = 32_768;

/// The row groups (start, length) of a file of `rows` rows: one per core, so that they are
/// encoded in parallel, each of at least [`MIN_GROUP_ROWS`]; the same for the same row count,
/// so two files of a batch with the same rows have the same groups.
pub fn row_groups(rows: usize) -> Vec<(usize, usize)> {
    let cores = std::thread::available_parallelism().map_or(1, |p| p.get());
    let groups = (rows / MIN_GROUP_ROWS).clamp(1, cores);
    let per = rows.div_ceil(groups);
    (0..groups)
        .map(|g| {
            let start = (g * per).min(rows);
            (start, per.min(rows - start))
        })
        .collect()
}

/// Encodes each row group's columns (all but `skip`) on a thread of its own; returns each
/// group's column writers, in order (`skip`'s unused).
fn encode_groups(
    factory: &ArrowRowGroupWriterFactory,
    rows: &RecordBatch,
    groups: &[(usize, usize)],
    skip: Option<usize>,
) -> Result<Vec<Vec<ArrowColumnWriter>>> {
    let encode = |g: usize| -> Result<Vec<ArrowColumnWriter>> {
        let (start, len) = groups[g];
        let part = rows.slice(start, len);
        let mut writers = factory.create_column_writers(g)?;
        for (i, (w, field)) in writers.iter_mut().zip(part.schema().fields()).enumerate() {
            if Some(i) != skip {
                for leaf in compute_leaves(field, part.column(i))? {
                    w.write(&leaf)?;
                }
            }
        }
        Ok(writers)
    };
    per_group(groups.len(), encode)
}

/// Appends the encoded row groups to the file in order; column `skip` of group `g` (not
/// encoded by [`encode_groups`]) is appended by `fill(g, row group)`.
fn append_groups<W: std::io::Write + Send>(
    file_writer: &mut SerializedFileWriter<W>,
    encoded: Vec<Vec<ArrowColumnWriter>>,
    skip: Option<usize>,
    mut fill: impl FnMut(usize, &mut SerializedRowGroupWriter<'_, W>) -> Result<()>,
) -> Result<()> {
    for (g, writers) in encoded.into_iter().enumerate() {
        let mut group = file_writer.next_row_group()?;
        for (i, w) in writers.into_iter().enumerate() {
            if Some(i) == skip {
                fill(g, &mut group)?;
            } else {
                w.close()?.append_to_row_group(&mut group)?;
            }
        }
        group.close()?;
    }
    Ok(())
}

/// A layer file written into its staging folder: neither synced nor visible yet
/// ([`CompactWriter::publish`] does both).
#[must_use = "a staged file is only visible once published"]
pub struct StagedFile {
    /// Open until the commit syncs it; `None` once synced (a batch's many partition files are
    /// synced as they are written, so that no batch holds an open file per partition).
    file: Option<File>,
    layer: FileLayer,
    staged: PathBuf,
    fin: PathBuf,
}

impl StagedFile {
    /// Asks the kernel to start writing the file's pages to disk now (Linux; no wait), so that
    /// the commit's fsync finds most of them written.
    fn start_writeback(file: File, layer: FileLayer, staged: PathBuf, fin: PathBuf) -> Self {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd as _;
            // SAFETY: a plain syscall on an open descriptor; a failure only means no head start.
            unsafe {
                libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
        StagedFile {
            file: Some(file),
            layer,
            staged,
            fin,
        }
    }

    fn sync(&self) -> Result<()> {
        match &self.file {
            Some(file) => file
                .sync_all()
                .io_context(|| format!("cannot sync {}", self.staged.display())),
            None => Ok(()),
        }
    }

    /// Syncs the file now and closes it (the commit then only renames it).
    fn synced(mut self) -> Result<Self> {
        self.sync()?;
        self.file = None;
        Ok(self)
    }

    /// Where the file will be once published.
    pub fn final_path(&self) -> &Path {
        &self.fin
    }

    /// Where the file is until it is published.
    pub fn staged_path(&self) -> &Path {
        &self.staged
    }

    pub fn layer(&self) -> FileLayer {
        self.layer
    }
}

fn staged_file(
    buffered: BufWriter<File>,
    layer: FileLayer,
    staged: PathBuf,
    fin: PathBuf,
) -> Result<StagedFile> {
    let file = buffered.into_inner().map_err(|e| Error::Io {
        context: format!("cannot write {}", staged.display()),
        source: e.into_error(),
    })?;
    Ok(StagedFile::start_writeback(file, layer, staged, fin))
}

/// The batch id in a final file name of `layer`, if the name is one of ours.
fn batch_of(layer: FileLayer, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(layer.prefix())?.strip_prefix('_')?;
    let rest = rest.strip_suffix(layer.extension())?.strip_suffix('.')?;
    let (time, batch) = rest.rsplit_once('_')?;
    let valid_time = time.len() == 15 && time.as_bytes()[8] == b'_';
    valid_time.then(|| batch.parse().ok()).flatten()
}

/// The file sink: a batch's files are synced at the pre-commit and renamed into place at the
/// commit (a re-run writes the same names, so placing them again replaces them); old files are
/// deleted after the checkpoint commit (`MAX_FILES_PER_SINK`). With the output on object
/// storage, the commit uploads each file to its name instead (one PUT: the whole file or none).
pub struct FileSink {
    writer: CompactWriter,
    layers: Vec<FileLayer>,
    remote: Option<crate::storage::Remote>,
    /// Scale-out: the files are put in place by the batch's roll forward (from its intent, once
    /// its Kafka transaction decided it), not by this sink's commit.
    rolled_forward: bool,
}

impl FileSink {
    pub fn new(
        writer: CompactWriter,
        layers: Vec<FileLayer>,
        remote: Option<crate::storage::Remote>,
    ) -> Self {
        FileSink {
            writer,
            layers,
            remote,
            rolled_forward: false,
        }
    }

    /// The sink of a scale-out member: its commit leaves the files staged for the roll forward.
    pub fn rolled_forward(mut self) -> Self {
        self.rolled_forward = true;
        self
    }

    /// A pre-commit's files: (staged, final), relative to the staging root.
    fn relative_files(&self, pre: &PreCommit) -> Result<Vec<(PathBuf, PathBuf)>> {
        let files = pre
            .downcast_ref::<Vec<StagedFile>>()
            .ok_or_else(|| wrong_piece(self.name()))?;
        let relative = |path: &Path| {
            path.strip_prefix(&self.writer.root)
                .map(Path::to_path_buf)
                .map_err(|_| {
                    Error::Internal(format!("{}: not in the output folder", path.display()))
                })
        };
        files
            .iter()
            .map(|f| Ok((relative(&f.staged)?, relative(&f.fin)?)))
            .collect()
    }

    /// Uploads the batch's files under their names (relative to the staging root), then drops
    /// the local copies.
    fn upload(&self, remote: &crate::storage::Remote, files: Vec<StagedFile>) -> Result<()> {
        for file in files {
            let relative = file
                .fin
                .strip_prefix(&self.writer.root)
                .ok()
                .and_then(|p| p.to_str())
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "{}: not under the staging root",
                        file.fin.display()
                    ))
                })?
                .to_string();
            remote.put_file(&file.staged, &relative)?;
            fs::remove_file(&file.staged)
                .io_context(|| format!("cannot remove {}", file.staged.display()))?;
        }
        Ok(())
    }
}

impl Staged {
    /// One staged file of `rows` rows.
    pub fn file(rows: u64, file: StagedFile) -> Self {
        Staged::new(rows, vec![file])
    }

    /// Several staged files (Hive partitions) of `rows` rows in all.
    pub fn files(rows: u64, files: Vec<StagedFile>) -> Self {
        Staged::new(rows, files)
    }
}

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "files"
    }

    fn takes(&self, target: &Target) -> bool {
        matches!(target, Target::Files(layer) if self.layers.contains(layer))
    }

    fn pre_commit(&self, _batch: &SinkBatch<'_>, pieces: Vec<Piece>) -> Result<PreCommit> {
        let mut files = Vec::new();
        for piece in pieces {
            files.extend(
                *piece
                    .downcast::<Vec<StagedFile>>()
                    .map_err(|_| wrong_piece(self.name()))?,
            );
        }
        CompactWriter::sync(&files)?;
        Ok(Box::new(files))
    }

    fn commit(&self, _batch: &SinkBatch<'_>, pre: PreCommit) -> Result<()> {
        let files = pre
            .downcast::<Vec<StagedFile>>()
            .map_err(|_| wrong_piece(self.name()))?;
        if self.rolled_forward {
            return Ok(());
        }
        match &self.remote {
            Some(remote) => self.upload(remote, *files),
            None => CompactWriter::place(*files).map(drop),
        }
    }

    fn abort(&self, _batch: &SinkBatch<'_>, pre: PreCommit) {
        // Not placed: the batch is staged again when it is re-run.
        if let Ok(files) = pre.downcast::<Vec<StagedFile>>() {
            for file in *files {
                let _ = fs::remove_file(&file.staged);
            }
        }
    }

    fn discard(&self, pieces: Vec<Piece>) {
        for piece in pieces {
            if let Ok(files) = piece.downcast::<Vec<StagedFile>>() {
                for file in *files {
                    let _ = fs::remove_file(&file.staged);
                }
            }
        }
    }

    /// The renames that put a member's files in place (a local output folder; on object storage
    /// they are uploads: [`Sink::deferred`]).
    fn moves(&self, pre: &PreCommit) -> Result<Vec<(PathBuf, PathBuf)>> {
        if self.remote.is_some() {
            return Ok(Vec::new());
        }
        self.relative_files(pre)
    }

    /// On object storage, a member's uploads: each staged file (in the shared staging folder)
    /// and its key, relative to the output.
    fn deferred(&self, pre: &PreCommit) -> Result<Option<serde_json::Value>> {
        if self.remote.is_none() || !self.rolled_forward {
            return Ok(None);
        }
        let files = self.relative_files(pre)?;
        if files.is_empty() {
            return Ok(None);
        }
        serde_json::to_value(files)
            .map(Some)
            .map_err(|e| Error::Internal(format!("cannot record a batch's uploads: {e}")))
    }

    /// Uploads a decided batch's staged files, idempotently: a staged file already gone was
    /// uploaded (by this processor or another at the same time) if its object is there.
    fn roll_forward(&self, deferred: &serde_json::Value) -> Result<bool> {
        let Some(remote) = &self.remote else {
            return Ok(false);
        };
        let files: Vec<(PathBuf, PathBuf)> =
            serde_json::from_value(deferred.clone()).map_err(|e| {
                Error::Internal(format!("a batch's recorded uploads are unreadable: {e}"))
            })?;
        let mut uploaded = false;
        for (staged, key) in files {
            let staged = self.writer.root.join(staged);
            let key = key
                .to_str()
                .ok_or_else(|| Error::Internal(format!("{}: not a key", key.display())))?;
            let put = if staged.exists() {
                remote.put_file(&staged, key).and_then(|_| {
                    fs::remove_file(&staged)
                        .or_else(|e| if staged.exists() { Err(e) } else { Ok(()) })
                        .io_context(|| format!("cannot remove {}", staged.display()))
                })
            } else {
                Err(Error::DataLoss(format!(
                    "{}: a decided batch's file is neither staged nor in object storage",
                    staged.display()
                )))
            };
            match put {
                Ok(()) => uploaded = true,
                // Uploaded and removed by another processor meanwhile.
                Err(_) if !staged.exists() && remote.exists(key)? => {}
                Err(e) => return Err(e),
            }
        }
        Ok(uploaded)
    }

    fn after_commit(&self, batch: u64) -> Result<()> {
        if self.rolled_forward {
            return Ok(());
        }
        for &layer in &self.layers {
            self.writer.apply_retention(layer, batch)?;
        }
        Ok(())
    }

    fn set_aside_after(&self, batch: u64, name: &str) -> Result<usize> {
        if let Some(remote) = &self.remote {
            return Err(Error::Config(format!(
                "--recover-from-batch is not supported with OUTPUT_PATH on object storage ({})",
                remote.url()
            )));
        }
        let mut moved = 0;
        for &layer in &self.layers {
            moved += self.writer.set_aside_after(layer, batch, name)?;
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const BRONZE: FileLayer = FileLayer::parquet("bronze");
    const SILVER: FileLayer = FileLayer::parquet("silver");
    const RAW_CSV: FileLayer = FileLayer {
        folder: "raw_csv",
        prefix: "raw",
        extension: "csv",
        date_column: None,
        hive: false,
        keys: &[],
    };
    pub(crate) const TEST_LAYERS: [FileLayer; 3] = [BRONZE, SILVER, RAW_CSV];
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn placed(writer: &CompactWriter, file: StagedFile) -> PathBuf {
        writer.publish(vec![file]).unwrap().remove(0)
    }

    fn read_back(path: &Path) -> RecordBatch {
        let file = File::open(path).unwrap();
        let mut reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .with_batch_size(1 << 20)
            .build()
            .unwrap();
        let batch = reader.next().unwrap().unwrap();
        assert!(reader.next().is_none());
        batch
    }

    #[test]
    fn a_column_copied_from_another_file_reads_back_equal_and_a_missing_or_unfit_one_is_encoded() {
        check_sharing(5000);
    }

    #[test]
    fn large_files_are_row_groups_encoded_in_parallel_and_shared_group_by_group() {
        let rows = 2 * MIN_GROUP_ROWS + 1000;
        let cores = std::thread::available_parallelism().map_or(1, |p| p.get());
        assert_eq!(row_groups(rows).len(), cores.min(2));
        assert_eq!(row_groups(rows).iter().map(|g| g.1).sum::<usize>(), rows);
        assert_eq!(row_groups(MIN_GROUP_ROWS - 1).len(), 1);
        check_sharing(rows);
    }

    /// Files of `n` rows: a column encoded apart (as the payload columns are) and copied into
    /// two files, or encoded by the writer when it cannot be.
    fn check_sharing(n: usize) {
        let dir = std::env::temp_dir().join(format!("writer-share-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let writer = CompactWriter::open(&dir, 0, &TEST_LAYERS).unwrap();
        let texts: Vec<String> = (0..n)
            .map(|i| format!("{{\"n\": {i}, \"pad\": \"{}\"}}", "x".repeat(i % 50)))
            .collect();
        let text: ArrayRef = Arc::new(StringArray::from_iter_values(&texts));
        let numbers = |k: i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| i * k)))
        };
        let values = || text.clone();
        // A file with column `column` copied from `chunks`, or encoded from `values`; the
        // published file and whether it was copied.
        let with =
            |rows: &RecordBatch, column: usize, batch: u64, chunks: Option<Vec<SharedChunk>>| {
                let wait = || Ok(chunks.clone());
                let shared = Shared {
                    column,
                    wait: &wait,
                    values: &values,
                    groups: None,
                };
                let (file, copied) = writer
                    .write_parquet_with(SILVER, rows, 0, batch, shared)
                    .unwrap();
                (placed(&writer, file), copied)
            };
        let stand_in = |rows: &RecordBatch, column: usize| {
            let mut columns = rows.columns().to_vec();
            columns[column] = arrow_array::new_null_array(&DataType::Utf8, n);
            RecordBatch::try_new(rows.schema(), columns).unwrap()
        };

        // The source file: the text column second, as in bronze.
        let source_schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("value", DataType::Utf8, true),
        ]));
        let source =
            RecordBatch::try_new(source_schema.clone(), vec![numbers(1), text.clone()]).unwrap();
        let descr = column_descr(&source_schema, 1).unwrap();
        let chunks =
            encode_text_groups(&descr, n, &|row| Some(texts[row].as_str().into())).unwrap();
        assert_eq!(chunks.len(), row_groups(n).len(), "a chunk per row group");
        let (path, was_copied) = with(&stand_in(&source, 1), 1, 1, Some(chunks.clone()));
        assert!(was_copied);
        assert_eq!(read_back(&path), source);
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), row_groups(n).len());

        // The target: another name and position for the same values, as silver's json_str.
        let target_schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Int64, false),
            Field::new("json_str", DataType::Utf8, true),
        ]));
        let target = RecordBatch::try_new(
            target_schema.clone(),
            vec![numbers(2), numbers(3), text.clone()],
        )
        .unwrap();
        let (copied, was_copied) = with(&stand_in(&target, 2), 2, 2, Some(chunks.clone()));
        assert!(was_copied);
        assert_eq!(read_back(&copied), target);

        // Nothing to copy: encoded here.
        let (encoded, was_copied) = with(&stand_in(&target, 2), 2, 3, None);
        assert!(!was_copied);
        assert_eq!(read_back(&encoded), target);

        // A chunk for a required (non-nullable) column is not used: its pages carry levels.
        let required = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Int64, false),
            Field::new("json_str", DataType::Utf8, false),
        ]));
        let strict =
            RecordBatch::try_new(required, vec![numbers(2), numbers(3), text.clone()]).unwrap();
        let (file, was_copied) = with(&strict, 2, 4, Some(chunks.clone()));
        assert!(!was_copied);
        assert_eq!(read_back(&file), strict);

        // A chunk of other rows is not used.
        let short =
            encode_text_groups(&descr, 100, &|row| Some(texts[row].as_str().into())).unwrap();
        let (checked, was_copied) = with(&stand_in(&target, 2), 2, 5, Some(short));
        assert!(!was_copied);
        assert_eq!(read_back(&checked), target);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_kept_rows_pages_of_a_chunk_make_the_column_of_a_file_of_those_rows() {
        let dir = std::env::temp_dir().join(format!("writer-kept-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let writer = CompactWriter::open(&dir, 0, &TEST_LAYERS).unwrap();
        // Three MiB of payloads over 2 * MIN_GROUP_ROWS rows (several pages a group), a row in
        // 97 dropped, with runs of dropped rows, and one absent value among them.
        let n = 2 * MIN_GROUP_ROWS + 500;
        let texts: Vec<String> = (0..n)
            .map(|i| format!("{{\"n\": {i}, \"pad\": \"{}\"}}", "y".repeat(i % 80)))
            .collect();
        let kept = |row: usize| row % 97 != 3 && !(1000..1010).contains(&row);
        let value = |row: usize| (row != 3).then(|| texts[row].as_str().into());
        let schema = Schema::new(vec![Field::new("value", DataType::Utf8, true)]);
        let descr = column_descr(&schema, 0).unwrap();
        let all = encode_text_in(&descr, &row_groups(n), &value, Some(&kept)).unwrap();
        assert!(
            all.iter().all(|c| c.pages.len() > 3),
            "pages cut at every change of kind"
        );
        let groups: Vec<(usize, usize)> = {
            let mut start = 0;
            row_groups(n)
                .iter()
                .map(|&(from, len)| {
                    let k = (from..from + len).filter(|&r| kept(r)).count();
                    start += k;
                    (start - k, k)
                })
                .collect()
        };
        let chunks: Vec<SharedChunk> = all.iter().map(|c| c.kept().unwrap().unwrap()).collect();
        assert_eq!(
            chunks.iter().map(SharedChunk::rows).collect::<Vec<_>>(),
            groups.iter().map(|g| g.1).collect::<Vec<_>>()
        );
        let kept_texts: Vec<&str> = (0..n)
            .filter(|&r| kept(r))
            .map(|r| texts[r].as_str())
            .collect();
        let m = kept_texts.len();
        let target_schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("json_str", DataType::Utf8, true),
        ]));
        let numbers: ArrayRef = Arc::new(Int64Array::from_iter_values(0..m as i64));
        let text: ArrayRef = Arc::new(StringArray::from_iter_values(&kept_texts));
        let want =
            RecordBatch::try_new(target_schema.clone(), vec![numbers.clone(), text]).unwrap();
        let stand_in = RecordBatch::try_new(
            target_schema,
            vec![numbers, arrow_array::new_null_array(&DataType::Utf8, m)],
        )
        .unwrap();
        let wait = || Ok(Some(chunks.clone()));
        let fallback = || -> ArrayRef { unreachable!("the kept pages fit") };
        let (file, copied) = writer
            .write_parquet_with(
                SILVER,
                &stand_in,
                0,
                1,
                Shared {
                    column: 1,
                    wait: &wait,
                    values: &fallback,
                    groups: Some(groups.clone()),
                },
            )
            .unwrap();
        assert!(copied);
        let path = placed(&writer, file);
        assert_eq!(read_back(&path), want);
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let sizes: Vec<usize> = (0..reader.metadata().num_row_groups())
            .map(|g| reader.metadata().row_group(g).num_rows() as usize)
            .collect();
        assert_eq!(sizes, groups.iter().map(|g| g.1).collect::<Vec<_>>());
        // Without `kept` every page is of the kept kind: the chunk is its own kept chunk.
        let plain = encode_text_in(&descr, &row_groups(n), &value, None).unwrap();
        assert!(plain[0]
            .kept()
            .unwrap()
            .is_some_and(|c| c.rows() == plain[0].rows()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unique_numbers_get_no_dictionary_and_rising_ones_are_delta_encoded() {
        let dir = std::env::temp_dir().join(format!("writer-enc-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let writer = CompactWriter::open(&dir, 0, &TEST_LAYERS).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("card_id", DataType::Utf8, true),
            Field::new("offset", DataType::Int64, false),
            Field::new("lat", DataType::Float64, true),
        ]));
        let n = 5000;
        let rows = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("card_{}", i % 7)),
                )),
                Arc::new(Int64Array::from_iter_values(1_000..1_000 + n)),
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| i as f64 * 0.017 - 40.0),
                )),
            ],
        )
        .unwrap();
        let staged = writer.write_parquet(BRONZE, &rows, 0, 1).unwrap();
        let path = placed(&writer, staged);
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let group = reader.metadata().row_group(0);
        let encodings = |c: usize| group.column(c).encodings().collect::<Vec<_>>();
        assert!(
            group.column(0).dictionary_page_offset().is_some(),
            "short strings keep their dictionary: {:?}",
            encodings(0)
        );
        assert!(group.column(1).dictionary_page_offset().is_none());
        assert!(
            encodings(1).contains(&Encoding::DELTA_BINARY_PACKED),
            "{:?}",
            encodings(1)
        );
        assert!(group.column(2).dictionary_page_offset().is_none());
        assert!(
            encodings(2).contains(&Encoding::PLAIN),
            "{:?}",
            encodings(2)
        );
        // The values read back equal.
        let back = read_back(&path);
        assert_eq!(back.column(1).as_ref(), rows.column(1).as_ref());
        assert_eq!(back.column(2).as_ref(), rows.column(2).as_ref());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn numbers_and_times_carry_min_max_statistics_and_strings_none() {
        let dir = std::env::temp_dir().join(format!("writer-stats-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let writer = CompactWriter::open(&dir, 0, &TEST_LAYERS).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("card_id", DataType::Utf8, true),
            Field::new("offset", DataType::Int64, false),
        ]));
        let rows = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["card_9", "card_1", "card_5"])),
                Arc::new(Int64Array::from(vec![30, 10, 20])),
            ],
        )
        .unwrap();
        let staged = writer.write_parquet(BRONZE, &rows, 0, 1).unwrap();
        let path = placed(&writer, staged);
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let group = reader.metadata().row_group(0);
        assert!(
            group.column(0).statistics().is_none(),
            "no statistics on strings"
        );
        let offsets = group.column(1).statistics().expect("statistics on numbers");
        assert_eq!(offsets.min_bytes_opt(), Some(&10i64.to_le_bytes()[..]));
        assert_eq!(offsets.max_bytes_opt(), Some(&30i64.to_le_bytes()[..]));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_are_deterministic_per_batch_and_recognised_for_retention() {
        let name = CompactWriter::file_name(RAW_CSV, 1_762_500_638_730_729, 12);
        assert_eq!(name, "raw_20251107_073038_12.csv");
        assert_eq!(batch_of(RAW_CSV, &name), Some(12));
        assert_eq!(
            batch_of(SILVER, "silver_20251107_073038_7.parquet"),
            Some(7)
        );
        assert_eq!(batch_of(SILVER, "bronze_20251107_073038_7.parquet"), None);
        assert_eq!(batch_of(SILVER, "silver_notes.parquet"), None);
    }
}
