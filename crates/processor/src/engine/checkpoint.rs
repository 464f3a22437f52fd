//! The checkpoint (`_chk/`): the write-ahead plan of each batch, then its commit.
//!
//! ```text
//! _chk/metadata            {"topic": ...}                      which topic this checkpoint follows
//! _chk/offsets/<batch>     {"batch", "planned_at", "ranges"}   written before any data file leaves staging
//! _chk/commits/<batch>     {"batch", "rows", "late_rows", ...} written after every data file
//! _chk/state/<batch>       gold window state and watermark as of that commit
//! ```
//! A batch with a plan and no commit is re-run with the same ranges and the same planned time, so
//! it writes the same file names: files are overwritten, never duplicated.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::source::OffsetRange;
use crate::error::{Error, IoContext, Result};

/// How many batches of history to keep (as Spark's `minBatchesToRetain`).
const RETAIN_BATCHES: u64 = 100;

/// The write-ahead entry of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPlan {
    pub batch: u64,
    /// Wall-clock time of planning in UTC microseconds: the time in the batch's file names.
    pub planned_at: i64,
    pub ranges: Vec<OffsetRange>,
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
}

#[derive(Clone)]
pub struct Checkpoint {
    root: PathBuf,
}

impl Checkpoint {
    /// Opens (creating if needed) the checkpoint folder for `topic`.
    pub fn open(root: &Path, topic: &str) -> Result<Self> {
        for dir in ["offsets", "commits", "state"] {
            fs::create_dir_all(root.join(dir)).io_context(|| {
                format!(
                    "cannot create checkpoint folder {}",
                    root.join(dir).display()
                )
            })?;
        }
        let cp = Checkpoint {
            root: root.to_path_buf(),
        };
        let meta_path = root.join("metadata");
        match read_json::<Metadata>(&meta_path)? {
            Some(m) if m.topic != topic => {
                return Err(Error::Checkpoint {
                    path: meta_path,
                    detail: format!(
                        "belongs to topic {:?}, not {topic:?}; use another checkpoint folder or remove this one",
                        m.topic
                    ),
                })
            }
            Some(m) if m.id.is_some() => {}
            // Made before checkpoints had an id: it gets one now.
            Some(m) => write_atomic(
                &meta_path,
                &to_json(&Metadata {
                    id: Some(new_id()),
                    ..m
                }),
            )?,
            None => write_atomic(
                &meta_path,
                &to_json(&Metadata {
                    topic: topic.into(),
                    topic_id: None,
                    id: Some(new_id()),
                }),
            )?,
        }
        Ok(cp)
    }

    /// This checkpoint's id.
    pub fn id(&self) -> Result<String> {
        let path = self.root.join("metadata");
        read_json::<Metadata>(&path)?
            .and_then(|m| m.id)
            .ok_or_else(|| Error::Checkpoint {
                path,
                detail: "has no id".into(),
            })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The topic id this checkpoint follows, when one was recorded.
    pub fn topic_id(&self) -> Result<Option<String>> {
        Ok(read_json::<Metadata>(&self.root.join("metadata"))?.and_then(|m| m.topic_id))
    }

    /// Records the id of the topic this checkpoint follows.
    pub fn record_topic_id(&self, topic: &str, id: &str) -> Result<()> {
        let meta = Metadata {
            topic: topic.into(),
            topic_id: Some(id.into()),
            id: Some(self.id()?),
        };
        write_atomic(&self.root.join("metadata"), &to_json(&meta))
    }

    fn entry(&self, kind: &str, batch: u64) -> PathBuf {
        self.root.join(kind).join(batch.to_string())
    }

    /// Reads where the last run stopped.
    pub fn recover(&self) -> Result<Recovery> {
        let last_plan = last_id(&self.root.join("offsets"))?;
        let last_commit_id = last_id(&self.root.join("commits"))?;
        let mut rec = Recovery::default();
        if let Some(id) = last_commit_id {
            rec.last_commit = read_json(&self.entry("commits", id))?;
        }
        let Some(plan_id) = last_plan else {
            if let Some(id) = last_commit_id {
                return Err(self.corrupt("commits", id, "a commit without its plan"));
            }
            return Ok(rec);
        };
        let plan: BatchPlan = read_json(&self.entry("offsets", plan_id))?
            .ok_or_else(|| self.corrupt("offsets", plan_id, "vanished while reading"))?;
        rec.next_offsets = Some(plan.ends());
        rec.next_batch = plan_id + 1;
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

    fn corrupt(&self, kind: &str, batch: u64, detail: &str) -> Error {
        Error::Checkpoint {
            path: self.entry(kind, batch),
            detail: detail.into(),
        }
    }

    /// Writes the plan of a batch; must happen before any of its files leaves staging.
    pub fn write_plan(&self, plan: &BatchPlan) -> Result<()> {
        write_atomic(&self.entry("offsets", plan.batch), &to_json(plan))
    }

    /// Writes the commit of a batch, after all its files (and its gold state) are in place, then
    /// forgets batches older than the retention.
    pub fn write_commit(&self, commit: &BatchCommit) -> Result<()> {
        write_atomic(&self.entry("commits", commit.batch), &to_json(commit))?;
        if commit.batch >= RETAIN_BATCHES {
            let horizon = commit.batch - RETAIN_BATCHES;
            for kind in ["offsets", "commits", "state"] {
                for id in ids(&self.root.join(kind))?
                    .into_iter()
                    .filter(|&id| id < horizon)
                {
                    let _ = fs::remove_file(self.entry(kind, id));
                }
            }
        }
        Ok(())
    }

    /// Saves gold state as of the batch's commit (written before the commit itself).
    pub fn write_state(&self, batch: u64, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.entry("state", batch), bytes)
    }

    /// The gold state saved with the commit of `batch`, if any.
    pub fn read_state(&self, batch: u64) -> Result<Option<Vec<u8>>> {
        let path = self.entry("state", batch);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io {
                context: format!("cannot read {}", path.display()),
                source: e,
            }),
        }
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

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Checkpoint {
                path: path.into(),
                detail: format!("unreadable: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io {
            context: format!("cannot read {}", path.display()),
            source: e,
        }),
    }
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

fn last_id(dir: &Path) -> Result<Option<u64>> {
    Ok(ids(dir)?.into_iter().max())
}

/// Writes `bytes` to `path` so that a reader (or a restart after a crash) sees either the old
/// content or the new, never a part: temp file, fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let tmp = dir.join(format!(".{name}.tmp"));
    let ctx = || format!("cannot write {}", path.display());
    let mut f = File::create(&tmp).io_context(ctx)?;
    f.write_all(bytes).io_context(ctx)?;
    f.sync_all().io_context(ctx)?;
    drop(f);
    fs::rename(&tmp, path).io_context(ctx)?;
    sync_dir(dir)
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .io_context(|| format!("cannot sync folder {}", dir.display()))
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
        let cp = Checkpoint::open(&dir, "t").unwrap();
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

    #[test]
    fn a_checkpoint_of_another_topic_is_refused() {
        let dir = tempdir();
        Checkpoint::open(&dir, "a").unwrap();
        let e = Checkpoint::open(&dir, "b").err().unwrap().to_string();
        assert!(e.contains("belongs to topic \"a\""), "{e}");
    }

    #[test]
    fn history_beyond_retention_is_forgotten() {
        let dir = tempdir();
        let cp = Checkpoint::open(&dir, "t").unwrap();
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
