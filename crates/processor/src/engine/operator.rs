//! A stateful operator owns its state: the engine snapshots every operator of a dataset into the
//! batch's checkpoint entry with its commit, and restores them from the last commit at start, so
//! a re-run batch meets the state its first attempt met. What an operator consumes and produces
//! is typed by the operator itself (the dataset calls it, [`super::Dataset::operate`]).

use serde::{Deserialize, Serialize};

/// The state-keeping part of an operator, as the engine sees it.
pub trait Operator: Send {
    /// Its name in the checkpoint (unique within a dataset).
    fn name(&self) -> &'static str;
    /// Its event-time watermark (UTC microseconds), if it keeps one.
    fn watermark(&self) -> Option<i64>;
    /// Its whole state, as bytes.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces its state with a snapshot taken by [`Operator::snapshot`].
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String>;

    /// Whether it keeps its state per input partition, each partition's state depending only on
    /// that partition's records (scale-out: the state moves with its partition). Operators keyed
    /// by something other than the message key cannot.
    fn by_partition(&self) -> bool {
        false
    }
    /// One partition's state, as bytes (when [`Operator::by_partition`]).
    fn snapshot_partition(&self, _partition: i32) -> Vec<u8> {
        Vec::new()
    }
    /// Replaces one partition's state with a snapshot of [`Operator::snapshot_partition`].
    fn restore_partition(&mut self, _partition: i32, _bytes: &[u8]) -> Result<(), String> {
        Err(format!(
            "{} does not keep its state per partition",
            self.name()
        ))
    }
    /// Forgets one partition's state (the partition went to another processor).
    fn drop_partition(&mut self, _partition: i32) {}
}

/// The state file of a commit: every operator's snapshot by name.
#[derive(Serialize, Deserialize)]
struct Snapshots<'a> {
    #[serde(borrow)]
    operators: Vec<(&'a str, &'a [u8])>,
}

/// The first bytes of a state file (a format change gets a new one).
const MAGIC: &[u8] = b"OPSTATE1";

/// Every operator's snapshot, in one file's bytes.
pub fn snapshot_all(operators: &[&mut dyn Operator]) -> Vec<u8> {
    encode(operators, |o| o.snapshot())
}

/// Every operator's state of one input partition (scale-out), in one file's bytes.
pub fn snapshot_partition_all(operators: &[&mut dyn Operator], partition: i32) -> Vec<u8> {
    encode(operators, |o| o.snapshot_partition(partition))
}

fn encode(operators: &[&mut dyn Operator], snapshot: impl Fn(&dyn Operator) -> Vec<u8>) -> Vec<u8> {
    let snaps: Vec<(&'static str, Vec<u8>)> = operators
        .iter()
        .map(|o| (o.name(), snapshot(&**o)))
        .collect();
    let file = Snapshots {
        operators: snaps.iter().map(|(n, b)| (*n, b.as_slice())).collect(),
    };
    let mut out = MAGIC.to_vec();
    // Names and byte strings: encoding them cannot fail.
    out.extend(postcard::to_allocvec(&file).unwrap_or_default());
    out
}

/// Restores each operator from its snapshot in `bytes`; an operator with no snapshot there keeps
/// its initial state (an operator added since that commit).
pub fn restore_all(operators: &mut [&mut dyn Operator], bytes: &[u8]) -> Result<(), String> {
    decode(operators, bytes, |o, snap| o.restore(snap))
}

/// Restores one input partition's state of each operator from [`snapshot_partition_all`]'s bytes.
pub fn restore_partition_all(
    operators: &mut [&mut dyn Operator],
    partition: i32,
    bytes: &[u8],
) -> Result<(), String> {
    decode(operators, bytes, |o, snap| {
        o.restore_partition(partition, snap)
    })
}

fn decode(
    operators: &mut [&mut dyn Operator],
    bytes: &[u8],
    restore: impl Fn(&mut dyn Operator, &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let Some(body) = bytes.strip_prefix(MAGIC) else {
        if bytes.starts_with(b"GOLDSTATE1") {
            return Err("gold's state is in the format of an earlier version; remove the checkpoint folder to start over".into());
        }
        return Err("not an operator snapshot file".into());
    };
    let file: Snapshots<'_> =
        postcard::from_bytes(body).map_err(|e| format!("not an operator snapshot file: {e}"))?;
    for op in operators.iter_mut() {
        if let Some((_, snap)) = file.operators.iter().find(|(n, _)| *n == op.name()) {
            restore(&mut **op, snap).map_err(|e| format!("operator {}: {e}", op.name()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(&'static str, u64);

    impl Operator for Counter {
        fn name(&self) -> &'static str {
            self.0
        }
        fn watermark(&self) -> Option<i64> {
            None
        }
        fn snapshot(&self) -> Vec<u8> {
            self.1.to_le_bytes().to_vec()
        }
        fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
            self.1 = u64::from_le_bytes(bytes.try_into().map_err(|_| "not 8 bytes")?);
            Ok(())
        }
    }

    #[test]
    fn every_operator_gets_back_its_own_snapshot_and_a_new_one_keeps_its_start() {
        let (mut a, mut b) = (Counter("a", 7), Counter("b", 9));
        let bytes = snapshot_all(&[&mut a, &mut b]);
        let (mut a2, mut b2, mut c2) = (Counter("a", 0), Counter("b", 0), Counter("c", 3));
        restore_all(&mut [&mut b2, &mut c2, &mut a2], &bytes).unwrap();
        assert_eq!((a2.1, b2.1, c2.1), (7, 9, 3));
        let err = restore_all(&mut [&mut a2], b"junk").unwrap_err();
        assert!(err.starts_with("not an operator snapshot file"), "{err}");
    }
}
