//! An operator kept once per input partition: each partition of the input has its own copy of
//! the operator (its own state and watermark), fed only that partition's records, so that the
//! state of a partition can move to another processor with it (scale-out). Scale-out's second
//! stage reads a repartition topic keyed by the operator's own key (fraud rules and user windows
//! by `user_id`): a key's records are all in one partition there, and this wrapper gives each
//! partition its copy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::operator::Operator;

/// One operator per partition, made on first use.
pub struct Partitioned<O> {
    name: &'static str,
    make: Box<dyn Fn() -> O + Send>,
    parts: BTreeMap<i32, O>,
}

/// The snapshot of every partition (not used by scale-out, which snapshots partition by
/// partition; kept so that [`Operator::snapshot`] is whole).
#[derive(Serialize, Deserialize)]
struct Whole {
    parts: Vec<(i32, Vec<u8>)>,
}

impl<O: Operator> Partitioned<O> {
    pub fn new(make: impl Fn() -> O + Send + 'static) -> Self {
        Partitioned {
            name: make().name(),
            make: Box::new(make),
            parts: BTreeMap::new(),
        }
    }

    /// Partition `partition`'s operator (a fresh one the first time).
    pub fn part(&mut self, partition: i32) -> &mut O {
        self.parts.entry(partition).or_insert_with(|| (self.make)())
    }

    /// Runs `apply` on each partition's operator with that partition's items, partition by
    /// partition in ascending order (items keep their order within a partition), and returns
    /// each partition's result in that order.
    pub fn apply_by_partition<T, R>(
        &mut self,
        items: impl IntoIterator<Item = (i32, T)>,
        mut apply: impl FnMut(&mut O, Vec<T>) -> R,
    ) -> Vec<R> {
        let mut by: BTreeMap<i32, Vec<T>> = BTreeMap::new();
        for (p, item) in items {
            by.entry(p).or_default().push(item);
        }
        by.into_iter()
            .map(|(p, items)| apply(self.part(p), items))
            .collect()
    }
}

impl<O: Operator> Operator for Partitioned<O> {
    fn name(&self) -> &'static str {
        self.name
    }

    /// The smallest partition watermark (as Flink and Spark combine their inputs'), `None`
    /// while a partition has none.
    fn watermark(&self) -> Option<i64> {
        let mut min: Option<i64> = None;
        for part in self.parts.values() {
            let w = part.watermark()?;
            min = Some(min.map_or(w, |m| m.min(w)));
        }
        min
    }

    fn snapshot(&self) -> Vec<u8> {
        let whole = Whole {
            parts: self.parts.iter().map(|(p, o)| (*p, o.snapshot())).collect(),
        };
        postcard::to_allocvec(&whole).unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let whole: Whole = postcard::from_bytes(bytes)
            .map_err(|e| format!("not a snapshot of per-partition state: {e}"))?;
        self.parts.clear();
        for (p, snap) in whole.parts {
            self.restore_partition(p, &snap)?;
        }
        Ok(())
    }

    fn by_partition(&self) -> bool {
        true
    }

    fn snapshot_partition(&self, partition: i32) -> Vec<u8> {
        match self.parts.get(&partition) {
            Some(o) => o.snapshot(),
            None => (self.make)().snapshot(),
        }
    }

    fn restore_partition(&mut self, partition: i32, bytes: &[u8]) -> Result<(), String> {
        let mut fresh = (self.make)();
        fresh
            .restore(bytes)
            .map_err(|e| format!("partition {partition}: {e}"))?;
        self.parts.insert(partition, fresh);
        Ok(())
    }

    fn drop_partition(&mut self, partition: i32) {
        self.parts.remove(&partition);
    }
}

/// Scale-out's second stage: what a partition of the repartition topic knows of the input
/// topic's progress, the largest event time of each input partition, as the first stage sends
/// it after each batch to every partition of the repartition topic. The watermark of the
/// operators downstream follows the smallest of them ([`SourceClocks::upstream`]), as Flink's
/// operators take the smallest watermark of their inputs: a transaction from an input partition
/// that lags behind the others is not late for having been read after theirs.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceClocks {
    max: BTreeMap<i32, i64>,
}

impl SourceClocks {
    /// Input partition `source` has read records up to event time `max`.
    pub fn advance(&mut self, source: i32, max: i64) {
        let m = self.max.entry(source).or_insert(max);
        *m = (*m).max(max);
    }

    /// The smallest largest event time of input partitions `0..sources`, `None` while one of
    /// them has none (an input partition with no record holds the watermark back, as an idle
    /// input does in Flink without an idleness timeout).
    pub fn upstream(&self, sources: i32) -> Option<i64> {
        (0..sources)
            .map(|p| self.max.get(&p).copied())
            .min()
            .flatten()
    }
}

impl Operator for SourceClocks {
    fn name(&self) -> &'static str {
        "source_clocks"
    }

    fn watermark(&self) -> Option<i64> {
        None
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        *self = postcard::from_bytes(bytes).map_err(|e| format!("not a clocks snapshot: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::fraud::{FraudRules, Txn};

    fn txn(partition: i32, offset: i64, user: &str, seconds: i64, amount: f64) -> Txn {
        Txn {
            event_time: 1_762_500_000_000_000 + seconds * 1_000_000,
            partition,
            offset,
            user_id: user.into(),
            txn_id: format!("{user}-{offset}"),
            amount: Some(amount),
            currency: None,
            merchant: None,
            category: None,
            lat: None,
            lon: None,
        }
    }

    /// Each partition's rules see only its records; a partition's snapshot restores it alone,
    /// elsewhere; the watermark is the smallest partition's.
    #[test]
    fn each_partition_keeps_its_own_state_and_moves_alone() {
        let make = || FraudRules::new(60_000_000);
        let mut a = Partitioned::new(make);
        let feed = |p: &mut Partitioned<FraudRules>, txns: Vec<Txn>| {
            p.apply_by_partition(txns.into_iter().map(|t| (t.partition, t)), |r, t| {
                r.apply(t).alerts.len()
            })
        };
        // User u0 in partition 0 makes three risky purchases (FRAUD_RISK on the third); u1 in
        // partition 1 makes two.
        let first = vec![
            txn(0, 0, "u0", 0, 6000.0),
            txn(1, 0, "u1", 0, 6000.0),
            txn(0, 1, "u0", 10, 6000.0),
            txn(1, 1, "u1", 500, 6000.0),
        ];
        assert_eq!(feed(&mut a, first), vec![0, 0]);
        assert_eq!(
            a.watermark(),
            Some(1_762_500_000_000_000 + 10_000_000 - 60_000_000)
        );
        // Partition 1 moves to another processor.
        let moved = a.snapshot_partition(1);
        a.drop_partition(1);
        let mut b = Partitioned::new(make);
        b.restore_partition(1, &moved).unwrap();
        assert_eq!(feed(&mut b, vec![txn(1, 2, "u1", 510, 6000.0)]), vec![1]);
        assert_eq!(feed(&mut a, vec![txn(0, 2, "u0", 20, 6000.0)]), vec![1]);
        // A partition never seen snapshots as a fresh operator; whole snapshots round-trip.
        assert_eq!(a.snapshot_partition(7), make().snapshot());
        let mut c = Partitioned::new(make);
        c.restore(&b.snapshot()).unwrap();
        assert_eq!(c.snapshot_partition(1), b.snapshot_partition(1));
        assert!(c
            .restore_partition(2, b"junk")
            .unwrap_err()
            .starts_with("partition 2: "));
    }
}
