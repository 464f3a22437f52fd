//! Scale-out's checkpoint (`SCALE_OUT=true`): processors sharing a `KAFKA_GROUP_ID` and an
//! `OUTPUT_PATH` each commit their own batches over the partitions they own, and a partition's
//! state moves with it.
//!
//! ```text
//! _chk/group/members/<member>/intents/<n>   batch n of a member: its ranges, the moves of its staged files
//! _chk/group/members/<member>/done/<n>      batch n's files are in place
//! _chk/group/partitions/<p>/<member>-<n>    partition p's operator state after that batch
//! ```
//! A batch is decided by the Kafka transaction that commits its input offsets with the member's
//! group generation (fenced: a member whose partitions moved cannot commit them), each offset
//! carrying `<member> <n>` as its metadata. Before that transaction, everything the batch needs
//! is durable: its staged files, its intent, each partition's state. After it, anyone can finish
//! the batch ([`GroupCheckpoint::roll_forward`]: rename the staged files, idempotently): the
//! member itself at once, or the next owner of one of its partitions, which reads the offset's
//! metadata when it takes the partition over and rolls that batch forward before reading on.
//! A batch whose transaction did not commit is never referred to by an offset: nothing of it is
//! visible, and its leftovers are removed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checkpoint::{seal, sync_dir, unseal, write_atomic, BatchCommit};
use super::source::OffsetRange;
use crate::error::{Error, IoContext, Result};

/// The prefix of the offset metadata that names a member's batch.
const METADATA_PREFIX: &str = "grp1";

/// What a member's batch will have done once decided: written before its Kafka transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub batch: u64,
    pub planned_at: i64,
    pub ranges: Vec<OffsetRange>,
    /// Staged file -> final file, relative to the output folder.
    pub moves: Vec<(PathBuf, PathBuf)>,
    /// The partitions whose state this batch wrote.
    pub sections: Vec<i32>,
    pub commit: BatchCommit,
    /// What sinks commit once the batch is decided, by sink name (a Delta table's log entries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred: Vec<(String, serde_json::Value)>,
}

/// Commits a decided batch's deferred part of a sink (its name, what it recorded): see
/// [`GroupCheckpoint::roll_forward`].
pub type Finish<'a> = &'a dyn Fn(&str, &serde_json::Value) -> Result<bool>;

/// The offset metadata of a member's batch.
pub fn offset_metadata(member: &str, batch: u64) -> String {
    format!("{METADATA_PREFIX} {member} {batch}")
}

/// The member and batch an offset's metadata names (`None`: not ours, or none).
pub fn parse_offset_metadata(metadata: &str) -> Option<(String, u64)> {
    let mut parts = metadata.split(' ');
    (parts.next()? == METADATA_PREFIX).then_some(())?;
    let member = parts.next()?;
    let batch = parts.next()?.parse().ok()?;
    (parts.next().is_none() && is_member_id(member)).then(|| (member.to_string(), batch))
}

/// A new member id: 48 random bits (the standard library's OS-seeded hasher keys) as 12 hex
/// digits, in file names and offset metadata.
pub fn new_member_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{:012x}", bits & 0xffff_ffff_ffff)
}

fn is_member_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A member's view of the group checkpoint.
pub struct GroupCheckpoint {
    /// `_chk/group`.
    root: PathBuf,
    /// The output folder the moves are relative to.
    output: PathBuf,
    member: String,
}

/// What [`GroupCheckpoint::roll_forward`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Rolled {
    /// The batch's files were put in place now.
    Now(usize),
    /// It was done before.
    Already,
}

impl GroupCheckpoint {
    /// Opens the group checkpoint under `checkpoint` (creating it), for a new member id.
    pub fn open(checkpoint: &Path, output: &Path, member: String) -> Result<Self> {
        if !is_member_id(&member) {
            return Err(Error::Internal(format!("{member:?} is not a member id")));
        }
        let root = checkpoint.join("group");
        let gc = GroupCheckpoint {
            root,
            output: output.to_path_buf(),
            member,
        };
        for dir in [
            gc.member_dir(&gc.member).join("intents"),
            gc.member_dir(&gc.member).join("done"),
        ] {
            fs::create_dir_all(&dir).io_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(gc)
    }

    pub fn member(&self) -> &str {
        &self.member
    }

    fn member_dir(&self, member: &str) -> PathBuf {
        self.root.join("members").join(member)
    }

    fn intent_path(&self, member: &str, batch: u64) -> PathBuf {
        self.member_dir(member)
            .join("intents")
            .join(batch.to_string())
    }

    fn done_path(&self, member: &str, batch: u64) -> PathBuf {
        self.member_dir(member).join("done").join(batch.to_string())
    }

    fn section_path(&self, partition: i32, member: &str, batch: u64) -> PathBuf {
        self.root
            .join("partitions")
            .join(partition.to_string())
            .join(format!("{member}-{batch}"))
    }

    /// Makes a batch durable before its Kafka transaction: each partition's state, then the
    /// intent (the files it names are synced in staging already).
    pub fn write_intent(&self, intent: &Intent, sections: &BTreeMap<i32, Vec<u8>>) -> Result<()> {
        for (&partition, bytes) in sections {
            let path = self.section_path(partition, &self.member, intent.batch);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)
                    .io_context(|| format!("cannot create {}", dir.display()))?;
            }
            write_atomic(&path, &seal(bytes))?;
        }
        let json = serde_json::to_vec(intent)
            .map_err(|e| Error::Internal(format!("cannot encode an intent: {e}")))?;
        write_atomic(&self.intent_path(&self.member, intent.batch), &seal(&json))
    }

    /// A member's intent, if it is still there.
    pub fn read_intent(&self, member: &str, batch: u64) -> Result<Option<Intent>> {
        let path = self.intent_path(member, batch);
        let Some(bytes) = read_optional(&path)? else {
            return Ok(None);
        };
        let json = unseal(&path, bytes, true)?;
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| Error::Checkpoint {
                path,
                detail: format!("unreadable: {e}"),
            })
    }

    /// Puts a decided batch's files in place (any member may, any number of times, at once): a
    /// staged file still there is renamed; one already gone must be in place. Then the sinks
    /// commit what they deferred (`finish`: idempotent too), and the batch is marked done.
    pub fn roll_forward(&self, member: &str, batch: u64, finish: Finish<'_>) -> Result<Rolled> {
        let done = self.done_path(member, batch);
        if done.exists() {
            return Ok(Rolled::Already);
        }
        let Some(intent) = self.read_intent(member, batch)? else {
            if done.exists() {
                // Finished meanwhile by another member, which removed the intent.
                return Ok(Rolled::Already);
            }
            return Err(Error::Checkpoint {
                path: self.intent_path(member, batch),
                detail: format!(
                    "is missing: Kafka's committed offsets name batch {batch} of processor {member}, but neither its intent nor its done mark is in the checkpoint (was the checkpoint folder changed?)"
                ),
            });
        };
        let mut moved = 0;
        let mut folders: Vec<PathBuf> = Vec::new();
        for (staged, fin) in &intent.moves {
            let (staged, fin) = (self.output.join(staged), self.output.join(fin));
            let folder = fin.parent().unwrap_or(Path::new(".")).to_path_buf();
            if !folder.exists() {
                fs::create_dir_all(&folder)
                    .io_context(|| format!("cannot create {}", folder.display()))?;
            }
            match fs::rename(&staged, &fin) {
                Ok(()) => moved += 1,
                // Someone else rolled this file forward.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && fin.exists() => {}
                Err(e) => {
                    return Err(Error::Io {
                        context: format!(
                            "cannot move {} into place (batch {batch} of processor {member})",
                            staged.display()
                        ),
                        source: e,
                    })
                }
            }
            if !folders.contains(&folder) {
                folders.push(folder);
            }
        }
        folders.iter().try_for_each(|f| sync_dir(f))?;
        for (sink, deferred) in &intent.deferred {
            if finish(sink, deferred)? {
                moved += 1;
            }
        }
        let json = serde_json::to_vec(&intent.commit)
            .map_err(|e| Error::Internal(format!("cannot encode a commit: {e}")))?;
        if let Some(dir) = done.parent() {
            fs::create_dir_all(dir).io_context(|| format!("cannot create {}", dir.display()))?;
        }
        write_atomic(&done, &seal(&json))?;
        // Done: the mark says so from now on.
        let _ = fs::remove_file(self.intent_path(member, batch));
        Ok(Rolled::Now(moved))
    }

    /// A partition's state after a member's batch is no longer its latest (a later batch
    /// committed the partition): removed, and the batch's done mark with its last state (no
    /// committed offset can name the batch then).
    pub fn release_section(&self, partition: i32, member: &str, batch: u64) {
        let _ = fs::remove_file(self.section_path(partition, member, batch));
        let name = format!("{member}-{batch}");
        let referenced = fs::read_dir(self.root.join("partitions"))
            .is_ok_and(|dirs| dirs.flatten().any(|d| d.path().join(&name).exists()));
        if !referenced {
            let _ = fs::remove_file(self.done_path(member, batch));
            let _ = fs::remove_file(self.intent_path(member, batch));
        }
    }

    /// Removes what members that stopped long ago (no intent or done mark for `idle`) left
    /// undecided: staged files, the intents no committed offset names (a decided one was
    /// finished when its partitions were taken up, seconds after its member died), and their
    /// partition states. The states of decided batches stay: they are partitions' latest.
    /// Returns how many members were swept.
    pub fn sweep(&self, idle: std::time::Duration) -> usize {
        let Ok(members) = fs::read_dir(self.root.join("members")) else {
            return 0;
        };
        let mut swept = 0;
        for entry in members.flatten() {
            let Some(member) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if member == self.member || !is_member_id(&member) {
                continue;
            }
            let dir = entry.path();
            let last_active = ["intents", "done"]
                .iter()
                .filter_map(|d| fs::metadata(dir.join(d)).and_then(|m| m.modified()).ok())
                .max();
            if last_active.is_none_or(|t| t.elapsed().unwrap_or_default() < idle) {
                continue;
            }
            if let Ok(intents) = fs::read_dir(dir.join("intents")) {
                for batch in intents
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()))
                {
                    if self.done_path(&member, batch).exists() {
                        let _ = fs::remove_file(self.intent_path(&member, batch));
                        continue;
                    }
                    if let Ok(Some(intent)) = self.read_intent(&member, batch) {
                        for &p in &intent.sections {
                            let _ = fs::remove_file(self.section_path(p, &member, batch));
                        }
                    }
                    let _ = fs::remove_file(self.intent_path(&member, batch));
                }
            }
            // Its staging folders, in every layer (files staged before an intent existed too).
            if let Ok(layers) = fs::read_dir(&self.output) {
                for layer in layers.flatten() {
                    let _ = fs::remove_dir_all(layer.path().join("_staging").join(&member));
                }
            }
            let _ = fs::remove_dir(dir.join("intents"));
            let _ = fs::remove_dir(dir.join("done"));
            let _ = fs::remove_dir(&dir);
            swept += 1;
        }
        swept
    }

    /// A partition's state after a member's batch.
    pub fn read_section(&self, partition: i32, member: &str, batch: u64) -> Result<Vec<u8>> {
        let path = self.section_path(partition, member, batch);
        match read_optional(&path)? {
            Some(bytes) => unseal(&path, bytes, true),
            None => Err(Error::Checkpoint {
                path,
                detail: format!(
                    "is missing: partition {partition}'s state after batch {batch} of processor {member}, which Kafka's committed offset names"
                ),
            }),
        }
    }

    /// Removes what a batch that will not be committed wrote: its intent, its states and its
    /// staged files.
    pub fn discard(&self, intent: &Intent) {
        for (staged, _) in &intent.moves {
            let _ = fs::remove_file(self.output.join(staged));
        }
        for &p in &intent.sections {
            let _ = fs::remove_file(self.section_path(p, &self.member, intent.batch));
        }
        let _ = fs::remove_file(self.intent_path(&self.member, intent.batch));
    }
}

/// A file's bytes, `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io {
            context: format!("cannot read {}", path.display()),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("group-chk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn no_sinks(_: &str, _: &serde_json::Value) -> Result<bool> {
        Ok(false)
    }

    fn intent(batch: u64, moves: &[(&str, &str)]) -> Intent {
        Intent {
            batch,
            planned_at: 1,
            ranges: vec![OffsetRange {
                partition: 2,
                start: 0,
                end: 10,
            }],
            moves: moves
                .iter()
                .map(|(a, b)| (PathBuf::from(a), PathBuf::from(b)))
                .collect(),
            sections: vec![2],
            commit: BatchCommit {
                batch,
                rows: 10,
                ..BatchCommit::default()
            },
            deferred: Vec::new(),
        }
    }

    #[test]
    fn offset_metadata_names_a_member_and_batch_and_nothing_else_is_taken_for_one() {
        let m = offset_metadata("00ff", 7);
        assert_eq!(parse_offset_metadata(&m), Some(("00ff".into(), 7)));
        for other in [
            "",
            "chk abc b 3",
            "grp1 00ff",
            "grp1 zz 3",
            "grp1 00ff 3 x",
            "grp1 00ff -1",
        ] {
            assert_eq!(parse_offset_metadata(other), None, "{other:?}");
        }
    }

    #[test]
    fn a_decided_batch_is_rolled_forward_by_anyone_once_and_its_state_read_back() {
        let out = tempdir("roll");
        let chk = out.join("_chk");
        let a = GroupCheckpoint::open(&chk, &out, "aa".into()).unwrap();
        let b = GroupCheckpoint::open(&chk, &out, "bb".into()).unwrap();
        fs::create_dir_all(out.join("bronze/_staging")).unwrap();
        fs::write(out.join("bronze/_staging/x"), b"rows").unwrap();
        fs::write(out.join("bronze/_staging/y"), b"more").unwrap();
        let mut i = intent(
            3,
            &[
                ("bronze/_staging/x", "bronze/x.parquet"),
                ("bronze/_staging/y", "bronze/date=1/y.parquet"),
            ],
        );
        i.deferred = vec![("Delta tables".into(), serde_json::json!({"entry": 1}))];
        a.write_intent(&i, &BTreeMap::from([(2, b"state".to_vec())]))
            .unwrap();
        assert_eq!(b.read_intent("aa", 3).unwrap(), Some(i.clone()));
        // One file moved by its member before it stopped; the next owner finishes the batch.
        fs::rename(out.join("bronze/_staging/x"), out.join("bronze/x.parquet")).unwrap();
        // The sinks' deferred commits come after the moves, once the batch is done.
        let finished = std::cell::RefCell::new(Vec::new());
        let finish = |sink: &str, what: &serde_json::Value| {
            assert!(out.join("bronze/date=1/y.parquet").exists(), "moved first");
            finished.borrow_mut().push((sink.to_string(), what.clone()));
            Ok(true)
        };
        assert_eq!(b.roll_forward("aa", 3, &finish).unwrap(), Rolled::Now(2));
        assert_eq!(
            finished.take(),
            [("Delta tables".to_string(), serde_json::json!({"entry": 1}))]
        );
        assert_eq!(
            fs::read(out.join("bronze/date=1/y.parquet")).unwrap(),
            b"more"
        );
        assert_eq!(fs::read(out.join("bronze/x.parquet")).unwrap(), b"rows");
        // Again, by either: nothing changes.
        assert_eq!(a.roll_forward("aa", 3, &finish).unwrap(), Rolled::Already);
        assert!(
            finished.take().is_empty(),
            "a done batch commits nothing again"
        );
        assert_eq!(b.read_section(2, "aa", 3).unwrap(), b"state");
        let missing = b.read_section(1, "aa", 3).unwrap_err().to_string();
        assert!(missing.contains("partition 1's state"), "{missing}");
        // A batch no intent describes cannot be rolled forward: an error, not a silent skip.
        let err = b.roll_forward("aa", 4, &no_sinks).unwrap_err().to_string();
        assert!(
            err.contains("neither its intent nor its done mark"),
            "{err}"
        );
        // A staged file gone with nothing in place is data missing.
        fs::write(out.join("bronze/_staging/z"), b"z").unwrap();
        a.write_intent(
            &intent(5, &[("bronze/_staging/gone", "bronze/gone.parquet")]),
            &BTreeMap::new(),
        )
        .unwrap();
        let err = b.roll_forward("aa", 5, &no_sinks).unwrap_err().to_string();
        assert!(err.contains("cannot move"), "{err}");
        fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn a_state_no_longer_latest_is_released_with_its_done_mark_once_no_partition_needs_it() {
        let out = tempdir("release");
        let chk = out.join("_chk");
        let a = GroupCheckpoint::open(&chk, &out, "aa".into()).unwrap();
        let mut i = intent(1, &[]);
        i.sections = vec![0, 1];
        let states = BTreeMap::from([(0, b"p0".to_vec()), (1, b"p1".to_vec())]);
        a.write_intent(&i, &states).unwrap();
        assert_eq!(a.roll_forward("aa", 1, &no_sinks).unwrap(), Rolled::Now(0));
        assert_eq!(
            a.read_intent("aa", 1).unwrap(),
            None,
            "the done mark replaces the intent"
        );
        assert_eq!(a.roll_forward("aa", 1, &no_sinks).unwrap(), Rolled::Already);
        a.release_section(0, "aa", 1);
        assert!(a.read_section(0, "aa", 1).is_err());
        assert_eq!(
            a.read_section(1, "aa", 1).unwrap(),
            b"p1",
            "partition 1 still needs it"
        );
        assert_eq!(a.roll_forward("aa", 1, &no_sinks).unwrap(), Rolled::Already);
        a.release_section(1, "aa", 1);
        assert!(
            !a.done_path("aa", 1).exists(),
            "no partition names batch 1 now"
        );
        fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn a_member_gone_long_ago_is_swept_of_what_it_left_undecided_not_of_decided_states() {
        let out = tempdir("sweep");
        let chk = out.join("_chk");
        let dead = GroupCheckpoint::open(&chk, &out, "dd".into()).unwrap();
        fs::create_dir_all(out.join("bronze/_staging/dd")).unwrap();
        fs::write(out.join("bronze/_staging/dd/undecided"), b"x").unwrap();
        fs::write(out.join("bronze/_staging/dd/no-intent-yet"), b"x").unwrap();
        let mut decided = intent(1, &[]);
        decided.sections = vec![0];
        dead.write_intent(&decided, &BTreeMap::from([(0, b"latest".to_vec())]))
            .unwrap();
        dead.roll_forward("dd", 1, &no_sinks).unwrap();
        let mut undecided = intent(2, &[("bronze/_staging/dd/undecided", "bronze/u.parquet")]);
        undecided.sections = vec![0];
        dead.write_intent(&undecided, &BTreeMap::from([(0, b"never".to_vec())]))
            .unwrap();
        let me = GroupCheckpoint::open(&chk, &out, "ee".into()).unwrap();
        assert_eq!(
            me.sweep(std::time::Duration::from_secs(3600)),
            0,
            "not idle long enough"
        );
        assert_eq!(me.sweep(std::time::Duration::ZERO), 1);
        assert!(!out.join("bronze/_staging/dd").exists());
        assert!(
            me.read_section(0, "dd", 2).is_err(),
            "the undecided state is gone"
        );
        assert_eq!(
            me.read_section(0, "dd", 1).unwrap(),
            b"latest",
            "the decided one stays"
        );
        assert_eq!(
            me.roll_forward("dd", 1, &no_sinks).unwrap(),
            Rolled::Already
        );
        assert!(!out.join("bronze/u.parquet").exists());
        fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn an_undecided_batch_is_discarded_whole() {
        let out = tempdir("discard");
        let chk = out.join("_chk");
        let a = GroupCheckpoint::open(&chk, &out, "aa".into()).unwrap();
        fs::create_dir_all(out.join("silver/_staging")).unwrap();
        fs::write(out.join("silver/_staging/s"), b"rows").unwrap();
        let i = intent(1, &[("silver/_staging/s", "silver/s.parquet")]);
        a.write_intent(&i, &BTreeMap::from([(2, b"state".to_vec())]))
            .unwrap();
        a.discard(&i);
        assert!(!out.join("silver/_staging/s").exists());
        assert_eq!(a.read_intent("aa", 1).unwrap(), None);
        assert!(a.read_section(2, "aa", 1).is_err());
        assert!(!out.join("silver/s.parquet").exists());
        fs::remove_dir_all(&out).unwrap();
    }
}
