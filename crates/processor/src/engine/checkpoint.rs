//! The checkpoint (`_chk/`): the write-ahead plan of each batch, then its commit.
//!
//! ```text
//! _chk/metadata            {"topic": ...}                      which topic this checkpoint follows
//! _chk/offsets/<batch>     {"batch", "planned_at", "ranges"}   written before any data file leaves staging
//! _chk/commits/<batch>     {"batch", "rows", "late_rows", ...} written after every data file
//! _chk/state/<batch>       gold window state and watermark as of that commit
//! _chk/lock                who holds the checkpoint (pid, host, since): one writer at a time
//! ```
//! A batch with a plan and no commit is re-run with the same ranges and the same planned time, so
//! it writes the same file names: files are overwritten, never duplicated.
//!
//! The checkpoint may be on object storage (`CHECKPOINT_DIR=s3://bucket/prefix`, or
//! following an `s3://` OUTPUT_PATH): the same entries as objects, each written whole. There is
//! no lock file there; instead a batch's plan and commit are written with a conditional put (only
//! if no entry of that name exists), so that of two processors on one checkpoint the second is
//! refused at its first plan.
//!
//! Every file carries a CRC-32 of its content (`PCK1`, the checksum, then the content), checked on
//! read: a damaged or missing file of the last commit stops the processor with the path and the
//! way out (`--recover-from-batch N`, the newest intact commit), never a wrong result. Checkpoints
//! made before checksums (no `checksums` in their metadata) are read as they are.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::source::OffsetRange;
use crate::config::Location;
use crate::error::{Error, IoContext, Result};
pub use crate::os::sync_dir;
use crate::storage::Remote;

/// How many batches of history to keep (as Spark's `minBatchesToRetain`).
const RETAIN_BATCHES: u64 = 100;

/// The write-ahead entry of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPlan {
    pub batch: u64,
    /// Wall-clock time of planning in UTC microseconds: the time in the batch's file names.
    pub planned_at: i64,
    pub ranges: Vec<OffsetRange>,
    /// Kafka's id of the topic the ranges were planned on: after a restart, the offsets are
    /// taken only from the same topic (a topic deleted and created again has another id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
}

impl BatchPlan {
    pub fn rows(&self) -> u64 {
        self.ranges.iter().map(OffsetRange::len).sum()
    }

    /// The next offset of each partition once this batch is done.
    pub fn ends(&self) -> BTreeMap<i32, i64> {
        self.ranges.iter().map(|r| (r.partition, r.end)).collect()
    }
}

/// What a committed batch wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCommit {
    pub batch: u64,
    pub rows: u64,
    /// Rows per layer.
    pub layers: BTreeMap<String, u64>,
    /// Valid rows dropped from gold because their window had closed.
    pub late_rows: u64,
    /// Offsets planned but found deleted (FAIL_ON_DATA_LOSS=false).
    pub lost_offsets: u64,
    /// The gold watermark after this batch, UTC microseconds.
    pub watermark: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Metadata {
    topic: String,
    /// Kafka's id of the topic when the broker told it: a topic deleted and created again under
    /// the same name has another, and offsets of the old one mean nothing in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic_id: Option<String>,
    /// This checkpoint's own id (random, made with it): Kafka transactions of topic outputs
    /// name it beside the batch, so that offsets someone else committed to the group are
    /// never taken for this checkpoint's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// Every file of this checkpoint carries a checksum (made since checksums exist).
    #[serde(default)]
    checksums: bool,
}

/// Where the checkpoint stands at start.
#[derive(Debug, Default)]
pub struct Recovery {
    /// The last committed batch, if any.
    pub last_commit: Option<BatchCommit>,
    /// A planned batch without a commit: re-run it exactly.
    pub pending: Option<BatchPlan>,
    /// Where the next new batch starts (end of the last planned batch).
    pub next_offsets: Option<BTreeMap<i32, i64>>,
    pub next_batch: u64,
    /// The topic id the last plan was made on, when it recorded one.
    pub last_plan_topic_id: Option<String>,
    /// When the last batch was planned (UTC µs): the next plan's time is later, even if the
    /// clock went back.
    pub last_planned_at: Option<i64>,
}

/// The checkpoint's writer lock: an exclusive `flock` on `_chk/lock`, taken before anything of
/// the run touches the outputs, held until the process ends. The kernel releases it when the
/// process dies, SIGKILL included, so a restart never waits for a lease to expire; a second
/// processor on the same checkpoint is refused with the holder's pid, host and start time.
pub struct CheckpointLock {
    _file: Option<File>,
}

impl CheckpointLock {
    /// No lock: a scale-out member shares the checkpoint with the other members of its group,
    /// its commits fenced by its group generation instead.
    pub fn none() -> Self {
        CheckpointLock { _file: None }
    }

    /// On object storage there is no lock to take: a second writer is refused by the
    /// conditional writes of the plans and commits.
    pub fn acquire(root: &Location) -> Result<Self> {
        match root {
            Location::Local(root) => Self::acquire_local(root),
            Location::S3(_) => Ok(CheckpointLock { _file: None }),
        }
    }

    fn acquire_local(root: &Path) -> Result<Self> {
        use std::os::fd::AsRawFd as _;
        fs::create_dir_all(root).io_context(|| {
            format!(
                "cannot create checkpoint folder {} (OUTPUT_PATH, or CHECKPOINT_DIR)",
                root.display()
            )
        })?;
        let path = root.join("lock");
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .io_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns (the file outlives the call).
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                // The holder writes who it is right after it takes the lock: give it a moment.
                let mut holder = String::new();
                for _ in 0..40 {
                    holder = fs::read_to_string(&path).unwrap_or_default();
                    if !holder.trim().is_empty() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                if holder.trim().is_empty() {
                    holder = "it has not said who it is yet".into();
                }
                return Err(Error::Locked(format!(
                    "checkpoint {} is in use by another processor ({}): one processor per checkpoint; stop that one, or give this one another OUTPUT_PATH or CHECKPOINT_DIR",
                    root.display(),
                    holder.trim()
                )));
            }
            return Err(Error::Io {
                context: format!("cannot lock {}", path.display()),
                source: err,
            });
        }
        let host = fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown host".into());
        let mut since = String::new();
        txn_core::time::write_python_isoformat(&mut since, txn_core::time::now_micros());
        let holder = format!("pid {} on {host} since {since} UTC", std::process::id());
        let written = file
            .set_len(0)
            .and_then(|()| file.write_all(holder.as_bytes()))
            .and_then(|()| file.sync_all());
        written.io_context(|| format!("cannot write {}", path.display()))?;
        Ok(CheckpointLock { _file: Some(file) })
    }
}

/// Where the checkpoint's entries are: a local folder or an object store's prefix.
#[derive(Clone)]
enum Store {
    Local(PathBuf),
    Remote(Arc<Remote>),
}

impl Store {
    /// An entry's place, for messages.
    fn shown(&self, relative: &str) -> PathBuf {
        match self {
            Store::Local(root) => root.join(relative),
            Store::Remote(remote) => PathBuf::from(remote.shown(relative)),
        }
    }

    fn read(&self, relative: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Store::Local(root) => {
                let path = root.join(relative);
                match fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::Io {
                        context: format!("cannot read {}", path.display()),
                        source: e,
                    }),
                }
            }
            Store::Remote(remote) => Ok(remote.read(relative)?.map(|b| b.to_vec())),
        }
    }

    /// Writes an entry whole, replacing one of the same name.
    fn write(&self, relative: &str, bytes: Vec<u8>) -> Result<()> {
        match self {
            Store::Local(root) => write_atomic(&root.join(relative), &bytes),
            Store::Remote(remote) => remote.put(relative, bytes),
        }
    }

    /// Writes an entry no other writer may have written (a plan, a commit): on object storage a
    /// conditional put, and an entry of that name with other content means a second processor
    /// on this checkpoint. (A local checkpoint has its lock for that.)
    fn write_new(&self, relative: &str, bytes: Vec<u8>) -> Result<()> {
        let Store::Remote(remote) = self else {
            return self.write(relative, bytes);
        };
        if remote.put_new(relative, bytes.clone())? {
            return Ok(());
        }
        if remote.read(relative)?.is_some_and(|there| there == bytes) {
            return Ok(());
        }
        Err(Error::Locked(format!(
            "checkpoint entry {} was written by another processor: one processor per checkpoint; stop that one, or give this one another CHECKPOINT_DIR",
            remote.shown(relative)
        )))
    }

    fn remove(&self, relative: &str) -> Result<()> {
        match self {
            Store::Local(root) => {
                let _ = fs::remove_file(root.join(relative));
                Ok(())
            }
            Store::Remote(remote) => remote.delete(relative),
        }
    }

    /// The batch ids of the entries of folder `kind`.
    fn ids(&self, kind: &str) -> Result<Vec<u64>> {
        match self {
            Store::Local(root) => ids(&root.join(kind)),
            Store::Remote(remote) => Ok(remote
                .list(kind)?
                .iter()
                .filter_map(|name| name.parse::<u64>().ok())
                .collect()),
        }
    }

    fn last_id(&self, kind: &str) -> Result<Option<u64>> {
        Ok(self.ids(kind)?.into_iter().max())
    }

    /// Moves an entry (`--recover-from-batch`'s set-aside).
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        match self {
            Store::Local(root) => {
                let (from, to) = (root.join(from), root.join(to));
                if let Some(folder) = to.parent() {
                    fs::create_dir_all(folder)
                        .io_context(|| format!("cannot create {}", folder.display()))?;
                }
                fs::rename(&from, &to)
                    .io_context(|| format!("cannot move {} aside", from.display()))
            }
            Store::Remote(remote) => {
                if let Some(bytes) = remote.read(from)? {
                    remote.put(to, bytes.to_vec())?;
                }
                remote.delete(from)
            }
        }
    }

    fn sync(&self, kind: &str) -> Result<()> {
        match self {
            Store::Local(root) => sync_dir(&root.join(kind)),
            Store::Remote(_) => Ok(()),
        }
    }

    /// A sealed entry's content (`None` when there is none), its checksum checked.
    fn read_sealed(&self, relative: &str, strict: bool) -> Result<Option<Vec<u8>>> {
        match self.read(relative)? {
            Some(bytes) => unseal(&self.shown(relative), bytes, strict).map(Some),
            None => Ok(None),
        }
    }

    fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        relative: &str,
        strict: bool,
    ) -> Result<Option<T>> {
        let Some(bytes) = self.read_sealed(relative, strict)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Checkpoint {
                path: self.shown(relative),
                detail: format!("unreadable: {e}"),
            })
    }
}

#[derive(Clone)]
pub struct Checkpoint {
    store: Store,
    /// Where it is, for messages.
    root: PathBuf,
    /// Files without a checksum are refused (every checkpoint made since checksums exist).
    strict: bool,
}

impl Checkpoint {
    /// Opens (creating if needed) the checkpoint folder for `topic`.
    pub fn open(location: &Location, topic: &str) -> Result<Self> {
        let store = match location {
            Location::Local(root) => {
                for dir in ["offsets", "commits", "state"] {
                    fs::create_dir_all(root.join(dir)).io_context(|| {
                        format!(
                            "cannot create checkpoint folder {}",
                            root.join(dir).display()
                        )
                    })?;
                }
                Store::Local(root.clone())
            }
            Location::S3(url) => Store::Remote(Arc::new(Remote::open(url)?)),
        };
        let root = match location {
            Location::Local(root) => root.clone(),
            Location::S3(url) => PathBuf::from(url.as_str()),
        };
        let meta_path = store.shown("metadata");
        let strict = match store.read_json::<Metadata>("metadata", false)? {
            Some(m) if m.topic != topic => {
                return Err(Error::Checkpoint {
                    path: meta_path,
                    detail: format!(
                        "belongs to topic {:?}, not {topic:?}; use another checkpoint folder or remove this one",
                        m.topic
                    ),
                })
            }
            Some(m) if m.id.is_some() => m.checksums,
            // Made before checkpoints had an id: it gets one now.
            Some(m) => {
                let checksums = m.checksums;
                store.write(
                    "metadata",
                    seal(&to_json(&Metadata {
                        id: Some(new_id()),
                        ..m
                    })),
                )?;
                checksums
            }
            None => {
                store.write(
                    "metadata",
                    seal(&to_json(&Metadata {
                        topic: topic.into(),
                        topic_id: None,
                        id: Some(new_id()),
                        checksums: true,
                    })),
                )?;
                true
            }
        };
        Ok(Checkpoint {
            store,
            root,
            strict,
        })
    }

    /// This checkpoint's id.
    pub fn id(&self) -> Result<String> {
        self.store
            .read_json::<Metadata>("metadata", self.strict)?
            .and_then(|m| m.id)
            .ok_or_else(|| Error::Checkpoint {
                path: self.store.shown("metadata"),
                detail: "has no id".into(),
            })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The topic id this checkpoint follows, when one was recorded.
    pub fn topic_id(&self) -> Result<Option<String>> {
        Ok(self
            .store
            .read_json::<Metadata>("metadata", self.strict)?
            .and_then(|m| m.topic_id))
    }

    /// Records the id of the topic this checkpoint follows.
    pub fn record_topic_id(&self, topic: &str, id: &str) -> Result<()> {
        let meta = Metadata {
            topic: topic.into(),
            topic_id: Some(id.into()),
            id: Some(self.id()?),
            checksums: self.strict,
        };
        self.store.write("metadata", seal(&to_json(&meta)))
    }

    /// An entry's name in the store.
    fn entry(kind: &str, batch: u64) -> String {
        format!("{kind}/{batch}")
    }

    /// An entry's place, for messages.
    fn entry_path(&self, kind: &str, batch: u64) -> PathBuf {
        self.store.shown(&Self::entry(kind, batch))
    }

    /// Reads where the last run stopped.
    pub fn recover(&self) -> Result<Recovery> {
        let last_plan = self.store.last_id("offsets")?;
        let last_commit_id = self.store.last_id("commits")?;
        let mut rec = Recovery::default();
        if let Some(id) = last_commit_id {
            rec.last_commit = self.read_entry("commits", id)?;
        }
        let Some(plan_id) = last_plan else {
            if let Some(id) = last_commit_id {
                return Err(self.corrupt("commits", id, "a commit without its plan"));
            }
            return Ok(rec);
        };
        let plan: BatchPlan = self
            .read_entry("offsets", plan_id)?
            .ok_or_else(|| self.corrupt("offsets", plan_id, "vanished while reading"))?;
        rec.next_offsets = Some(plan.ends());
        rec.next_batch = plan_id + 1;
        rec.last_plan_topic_id.clone_from(&plan.topic_id);
        rec.last_planned_at = Some(plan.planned_at);
        match last_commit_id {
            Some(c) if c == plan_id => {}
            Some(c) if c + 1 == plan_id => rec.pending = Some(plan),
            None if plan_id == 0 => rec.pending = Some(plan),
            other => {
                return Err(self.corrupt(
                    "offsets",
                    plan_id,
                    &format!("planned batch {plan_id} but last commit is {other:?}; a checkpoint plans one batch at a time"),
                ))
            }
        }
        Ok(rec)
    }

    /// A JSON entry of the checkpoint, its checksum checked; a damaged one names the way out.
    fn read_entry<T: for<'de> Deserialize<'de>>(
        &self,
        kind: &str,
        batch: u64,
    ) -> Result<Option<T>> {
        self.store
            .read_json(&Self::entry(kind, batch), self.strict)
            .map_err(|e| self.with_way_out(e, batch))
    }

    /// Adds to a damaged-file error the newest commit before `batch` that is intact, to recover
    /// from.
    fn with_way_out(&self, e: Error, batch: u64) -> Error {
        let Error::Checkpoint { path, detail } = e else {
            return e;
        };
        let way_out = match self.newest_intact_before(batch) {
            Some(n) => format!(
                "; the newest intact commit is batch {n}: `processor --recover-from-batch {n}` replays from it (README, Exactly once: a damaged checkpoint)"
            ),
            None => "; no intact commit is left: remove the checkpoint folder and the outputs to start again".into(),
        };
        Error::Checkpoint {
            path,
            detail: format!("{detail}{way_out}"),
        }
    }

    /// Makes committed batch `batch` the last one: every plan, commit and state of a later
    /// batch is moved to `_chk/set_aside_<time>/`, so the run replays from `batch`'s end. The
    /// caller sets aside those batches' output files too. Refused unless `batch` is intact.
    pub fn recover_from(&self, batch: u64) -> Result<Vec<u64>> {
        if !self.intact(batch) {
            return Err(Error::Checkpoint {
                path: self.entry_path("commits", batch),
                detail: format!(
                    "batch {batch} is not an intact commit (plan, commit and state with good checksums){}",
                    match self.newest_intact_before(u64::MAX) {
                        Some(n) => format!("; the newest intact one is {n}"),
                        None => String::new(),
                    }
                ),
            });
        }
        let aside = format!(
            "set_aside_{}",
            txn_core::time::compact_utc(txn_core::time::now_micros())
        );
        let mut moved = std::collections::BTreeSet::new();
        for kind in ["offsets", "commits", "state"] {
            for id in self.store.ids(kind)?.into_iter().filter(|&id| id > batch) {
                let entry = Self::entry(kind, id);
                self.store.rename(&entry, &format!("{aside}/{entry}"))?;
                moved.insert(id);
            }
            self.store.sync(kind)?;
        }
        Ok(moved.into_iter().collect())
    }

    /// The newest committed batch below `batch` whose plan, commit and state are all intact.
    pub fn newest_intact_before(&self, batch: u64) -> Option<u64> {
        let mut commits = self.store.ids("commits").ok()?;
        commits.sort_unstable();
        commits
            .into_iter()
            .rev()
            .filter(|&c| c < batch)
            .find(|&c| self.intact(c))
    }

    /// Whether batch `batch`'s plan, commit and state are present with good checksums.
    fn intact(&self, batch: u64) -> bool {
        matches!(
            self.store
                .read_json::<BatchPlan>(&Self::entry("offsets", batch), self.strict),
            Ok(Some(_))
        ) && matches!(
            self.store
                .read_json::<BatchCommit>(&Self::entry("commits", batch), self.strict),
            Ok(Some(_))
        ) && matches!(
            self.store
                .read_sealed(&Self::entry("state", batch), self.strict),
            Ok(Some(_))
        )
    }

    fn corrupt(&self, kind: &str, batch: u64, detail: &str) -> Error {
        Error::Checkpoint {
            path: self.entry_path(kind, batch),
            detail: detail.into(),
        }
    }

    /// Writes the plan of a batch; must happen before any of its files leaves staging.
    pub fn write_plan(&self, plan: &BatchPlan) -> Result<()> {
        self.store
            .write_new(&Self::entry("offsets", plan.batch), seal(&to_json(plan)))
    }

    /// Writes the commit of a batch, after all its files (and its gold state) are in place, then
    /// forgets batches older than the retention.
    pub fn write_commit(&self, commit: &BatchCommit) -> Result<()> {
        self.store.write_new(
            &Self::entry("commits", commit.batch),
            seal(&to_json(commit)),
        )?;
        if commit.batch >= RETAIN_BATCHES {
            let horizon = commit.batch - RETAIN_BATCHES;
            for kind in ["offsets", "commits", "state"] {
                for id in self.store.ids(kind)?.into_iter().filter(|&id| id < horizon) {
                    self.store.remove(&Self::entry(kind, id))?;
                }
            }
        }
        Ok(())
    }

    /// Saves gold state as of the batch's commit (written before the commit itself).
    pub fn write_state(&self, batch: u64, bytes: &[u8]) -> Result<()> {
        self.store.write(&Self::entry("state", batch), seal(bytes))
    }

    /// The operators' state saved with the commit of `batch`. Every commit writes one: a missing
    /// or damaged one stops the run (an empty state would count windows from zero).
    pub fn read_state(&self, batch: u64) -> Result<Vec<u8>> {
        let path = self.entry_path("state", batch);
        match self
            .store
            .read_sealed(&Self::entry("state", batch), self.strict)
        {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(self.with_way_out(
                Error::Checkpoint {
                    path,
                    detail: format!("is missing: the operators' state of committed batch {batch}"),
                },
                batch,
            )),
            Err(e) => Err(self.with_way_out(e, batch)),
        }
    }
}

/// The checksum envelope of every checkpoint file: magic, CRC-32 (little endian), content.
const MAGIC: &[u8; 4] = b"PCK1";

pub(crate) fn seal(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// The content of a sealed file, its checksum checked; a file without the envelope is taken as
/// it is unless `strict`.
pub(crate) fn unseal(path: &Path, bytes: Vec<u8>, strict: bool) -> Result<Vec<u8>> {
    let damaged = |detail: &str| Error::Checkpoint {
        path: path.into(),
        detail: detail.into(),
    };
    match bytes.strip_prefix(MAGIC.as_slice()) {
        Some(rest) if rest.len() >= 4 => {
            let (sum, content) = rest.split_at(4);
            if crc32fast::hash(content).to_le_bytes() != sum {
                return Err(damaged(
                    "is damaged: its checksum does not match its content",
                ));
            }
            Ok(content.to_vec())
        }
        _ if strict => Err(damaged("is damaged: it has no checksum")),
        _ => Ok(bytes),
    }
}

/// A random id: 128 bits from the standard library's OS-seeded hasher keys.
fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let half = || {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    format!("{:016x}{:016x}", half(), half())
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of numbers and strings: serialising them cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn ids(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).io_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.io_context(|| format!("cannot list {}", dir.display()))?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(id);
        }
    }
    Ok(out)
}

/// Writes `bytes` to `path` so that a reader (or a restart after a crash) sees either the old
/// content or the new, never a part: temp file, fsync, rename, fsync of the folder. The temp file
/// is named after the process, so that two processes writing the same entry at once (scale-out's
/// done marks, with the same content) do not write one temp file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let ctx = || format!("cannot write {}", path.display());
    let mut f = File::create(&tmp).io_context(ctx)?;
    f.write_all(bytes).io_context(ctx)?;
    f.sync_all().io_context(ctx)?;
    drop(f);
    fs::rename(&tmp, path).io_context(ctx)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(batch: u64) -> BatchPlan {
        BatchPlan {
            batch,
            planned_at: 1_762_500_638_000_000 + batch as i64,
            ranges: vec![OffsetRange {
                partition: 0,
                start: batch as i64 * 10,
                end: batch as i64 * 10 + 10,
            }],
            topic_id: None,
        }
    }

    fn commit(batch: u64) -> BatchCommit {
        BatchCommit {
            batch,
            rows: 10,
            ..Default::default()
        }
    }

    #[test]
    fn a_planned_batch_without_commit_is_pending_with_the_same_ranges() {
        let dir = tempdir();
        let cp = Checkpoint::open(&Location::from(dir.as_path()), "t").unwrap();
        assert!(cp.recover().unwrap().next_offsets.is_none());
        cp.write_plan(&plan(0)).unwrap();
        let rec = cp.recover().unwrap();
        assert_eq!(rec.pending, Some(plan(0)));
        assert_eq!(rec.next_batch, 1);
        cp.write_commit(&commit(0)).unwrap();
        cp.write_plan(&plan(1)).unwrap();
        let rec = cp.recover().unwrap();
        assert_eq!(rec.pending, Some(plan(1)));
        assert_eq!(rec.last_commit, Some(commit(0)));
        cp.write_commit(&commit(1)).unwrap();
        let rec = cp.recover().unwrap();
        assert_eq!(rec.pending, None);
        assert_eq!(rec.next_offsets, Some(BTreeMap::from([(0, 20)])));
        assert_eq!(rec.next_batch, 2);
    }

    fn flip_a_byte(path: &Path) {
        let mut bytes = fs::read(path).unwrap();
        let at = bytes.len() - 2;
        bytes[at] ^= 0x20;
        fs::write(path, bytes).unwrap();
    }

    fn committed(dir: &Path, batches: u64) -> Checkpoint {
        let cp = Checkpoint::open(&Location::from(dir), "t").unwrap();
        for b in 0..batches {
            cp.write_plan(&plan(b)).unwrap();
            cp.write_state(b, format!("state of {b}").as_bytes())
                .unwrap();
            cp.write_commit(&commit(b)).unwrap();
        }
        cp
    }

    #[test]
    fn a_damaged_plan_commit_or_state_is_refused_naming_the_file_and_the_newest_intact_commit() {
        for kind in ["offsets", "commits", "state"] {
            let dir = tempdir();
            let cp = committed(&dir, 3);
            assert_eq!(cp.read_state(2).unwrap(), b"state of 2");
            flip_a_byte(&dir.join(kind).join("2"));
            let e = match kind {
                "state" => cp.read_state(2).err().unwrap(),
                _ => cp.recover().err().unwrap(),
            }
            .to_string();
            assert!(e.contains(&format!("{kind}/2")), "{e}");
            assert!(e.contains("checksum does not match"), "{e}");
            assert!(e.contains("--recover-from-batch 1"), "{e}");
        }
    }

    #[test]
    fn a_missing_state_of_the_last_commit_is_an_error_not_an_empty_state() {
        let dir = tempdir();
        let cp = committed(&dir, 2);
        fs::remove_file(dir.join("state/1")).unwrap();
        let e = cp.read_state(1).err().unwrap().to_string();
        assert!(
            e.contains("is missing") && e.contains("--recover-from-batch 0"),
            "{e}"
        );
    }

    #[test]
    fn recovering_from_an_intact_batch_sets_the_later_ones_aside_and_replays_from_it() {
        let dir = tempdir();
        let cp = committed(&dir, 4);
        flip_a_byte(&dir.join("state/3"));
        assert!(
            cp.recover_from(3).is_err(),
            "a damaged batch is no place to start"
        );
        assert_eq!(cp.recover_from(1).unwrap(), vec![2, 3]);
        let rec = cp.recover().unwrap();
        assert_eq!(rec.last_commit, Some(commit(1)));
        assert_eq!(rec.pending, None);
        assert_eq!(rec.next_batch, 2);
        assert_eq!(cp.read_state(1).unwrap(), b"state of 1");
    }

    #[test]
    fn a_checkpoint_made_before_checksums_is_read_as_it_is() {
        let dir = tempdir();
        fs::create_dir_all(dir.join("offsets")).unwrap();
        fs::write(dir.join("metadata"), br#"{"topic":"t","id":"x"}"#).unwrap();
        fs::write(dir.join("offsets/0"), to_json(&plan(0))).unwrap();
        let cp = Checkpoint::open(&Location::from(dir.as_path()), "t").unwrap();
        assert_eq!(cp.recover().unwrap().pending, Some(plan(0)));
    }

    #[test]
    fn a_second_writer_of_a_checkpoint_is_refused_naming_the_holder() {
        let dir = tempdir();
        let held = CheckpointLock::acquire(&Location::from(dir.as_path())).unwrap();
        let e = CheckpointLock::acquire(&Location::from(dir.as_path()))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("in use by another processor"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(held);
        CheckpointLock::acquire(&Location::from(dir.as_path()))
            .expect("free once the holder is gone");
    }

    #[test]
    fn a_checkpoint_of_another_topic_is_refused() {
        let dir = tempdir();
        Checkpoint::open(&Location::from(dir.as_path()), "a").unwrap();
        let e = Checkpoint::open(&Location::from(dir.as_path()), "b")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("belongs to topic \"a\""), "{e}");
    }

    #[test]
    fn history_beyond_retention_is_forgotten() {
        let dir = tempdir();
        let cp = Checkpoint::open(&Location::from(dir.as_path()), "t").unwrap();
        for b in 0..=RETAIN_BATCHES + 5 {
            cp.write_plan(&plan(b)).unwrap();
            cp.write_commit(&commit(b)).unwrap();
        }
        let kept = ids(&dir.join("offsets")).unwrap();
        assert_eq!(kept.iter().min(), Some(&5));
        assert_eq!(cp.recover().unwrap().next_batch, RETAIN_BATCHES + 6);
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "chk-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
