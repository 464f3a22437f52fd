//! Seeds 003/004's anomaly detection, per user, over `transactionTime`:
//! - `HIGH_FREQUENCY`: more than `max_per_minute` transactions of a user in a tumbling 1-minute
//!   window (`[k·60 s, k·60 s + 60 s)`), raised once per window, by the transaction that goes over;
//! - `UNUSUAL_AMOUNT`: an amount more than `zscore` standard deviations from the mean of the
//!   user's earlier usual amounts, once the user has [`MIN_HISTORY`] of them (a running mean and
//!   variance, Welford's; an unusual amount does not join them, so a fraudster's amounts do not
//!   shift the baseline). The standard deviation is taken as at least 1 % of the mean's size, so
//!   a user whose amounts never vary is not flagged for a cent more, yet is for ten times more.
//!
//! Transactions are taken in the batch's order (by partition, then offset; a user's transactions
//! are in one partition, keyed by `userId`, so in the order they were sent), and a re-run batch
//! meets the state its first attempt met: the anomalies are the same, each once. The windows
//! follow a watermark (the largest `transactionTime` seen, less [`WATERMARK_DELAY_MICROS`], as of
//! the batch's start): a transaction older than it is late, counted and not evaluated, and the
//! windows it has passed are dropped. Each user's amount statistics (three numbers) are kept for
//! the life of the checkpoint.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::engine::operator::Operator;

pub const WINDOW_MICROS: i64 = 60_000_000;
pub const WATERMARK_DELAY_MICROS: i64 = 60_000_000;
/// Usual amounts a user needs before the amount rule judges theirs.
pub const MIN_HISTORY: u64 = 20;

/// What the rules need of a transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Txn<'a> {
    pub user_id: &'a str,
    pub transaction_id: &'a str,
    pub merchant_id: &'a str,
    pub amount: f64,
    /// UTC microseconds.
    pub time: i64,
}

/// One anomaly and the figures behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub anomaly_type: &'static str,
    pub user_id: String,
    pub transaction_id: String,
    pub merchant_id: String,
    pub amount: f64,
    pub transaction_time: i64,
    /// `HIGH_FREQUENCY`: the window and the count reached.
    pub window_start: Option<i64>,
    pub window_end: Option<i64>,
    pub count: Option<u32>,
    /// `UNUSUAL_AMOUNT`: the user's usual amounts before it, and how far off this one is.
    pub usual_mean: Option<f64>,
    pub usual_stddev: Option<f64>,
    pub zscore: Option<f64>,
    /// The threshold crossed (transactions a minute, or standard deviations).
    pub threshold: f64,
}

/// A user's amounts (running mean and sum of squared deviations) and open windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct UserState {
    n: u64,
    mean: f64,
    m2: f64,
    /// Transactions per window start.
    windows: BTreeMap<i64, u32>,
}

/// The standard deviation's floor, as a share of the mean's size.
pub const MIN_STDDEV_SHARE: f64 = 0.01;

impl UserState {
    /// The sample standard deviation, at least [`MIN_STDDEV_SHARE`] of the mean's size.
    fn stddev(&self) -> f64 {
        let sample = if self.n < 2 {
            0.0
        } else {
            (self.m2 / (self.n - 1) as f64).sqrt()
        };
        sample.max(self.mean.abs() * MIN_STDDEV_SHARE)
    }

    fn add(&mut self, amount: f64) {
        self.n += 1;
        let delta = amount - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (amount - self.mean);
    }
}

/// The anomaly rules' state; saved with every batch commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomalies {
    max_per_minute: u32,
    zscore: f64,
    watermark: Option<i64>,
    max_time: Option<i64>,
    users: HashMap<String, UserState, ahash::RandomState>,
    /// Late transactions over the life of the checkpoint.
    pub late_total: u64,
}

/// What one batch did to the rules.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AnomalyBatch {
    pub anomalies: Vec<Anomaly>,
    pub late: u64,
}

type Snapshot = (
    u32,
    f64,
    Option<i64>,
    Option<i64>,
    BTreeMap<String, UserState>,
    u64,
);

impl Anomalies {
    /// More than `max_per_minute` transactions a minute, or amounts more than `zscore` standard
    /// deviations off, are anomalies.
    pub fn new(max_per_minute: u32, zscore: f64) -> Self {
        Anomalies {
            max_per_minute,
            zscore,
            watermark: None,
            max_time: None,
            users: HashMap::default(),
            late_total: 0,
        }
    }

    /// Evaluates a batch's transactions in order, then advances the watermark.
    pub fn apply<'a>(&mut self, txns: impl IntoIterator<Item = Txn<'a>>) -> AnomalyBatch {
        let in_force = self.watermark;
        let mut out = AnomalyBatch::default();
        for t in txns {
            self.max_time = Some(self.max_time.map_or(t.time, |m| m.max(t.time)));
            if in_force.is_some_and(|wm| t.time < wm) {
                out.late += 1;
                continue;
            }
            let state = match self.users.get_mut(t.user_id) {
                Some(s) => s,
                None => self.users.entry(t.user_id.to_string()).or_default(),
            };
            let anomaly = |kind: &'static str, threshold: f64| Anomaly {
                anomaly_type: kind,
                user_id: t.user_id.to_string(),
                transaction_id: t.transaction_id.to_string(),
                merchant_id: t.merchant_id.to_string(),
                amount: t.amount,
                transaction_time: t.time,
                window_start: None,
                window_end: None,
                count: None,
                usual_mean: None,
                usual_stddev: None,
                zscore: None,
                threshold,
            };
            let start = t.time.div_euclid(WINDOW_MICROS) * WINDOW_MICROS;
            let count = state.windows.entry(start).or_default();
            *count += 1;
            if *count == self.max_per_minute + 1 {
                let mut a = anomaly("HIGH_FREQUENCY", f64::from(self.max_per_minute));
                a.window_start = Some(start);
                a.window_end = Some(start + WINDOW_MICROS);
                a.count = Some(*count);
                out.anomalies.push(a);
            }
            let stddev = state.stddev();
            let z = if stddev > 0.0 {
                (t.amount - state.mean) / stddev
            } else {
                0.0
            };
            if state.n >= MIN_HISTORY && z.abs() > self.zscore {
                let mut a = anomaly("UNUSUAL_AMOUNT", self.zscore);
                a.usual_mean = Some(state.mean);
                a.usual_stddev = Some(stddev);
                a.zscore = Some(z);
                out.anomalies.push(a);
            } else {
                state.add(t.amount);
            }
        }
        self.late_total += out.late;
        if let Some(candidate) = self.max_time.map(|m| m - WATERMARK_DELAY_MICROS) {
            let wm = self.watermark.map_or(candidate, |w| w.max(candidate));
            self.watermark = Some(wm);
            for state in self.users.values_mut() {
                state.windows.retain(|&start, _| start + WINDOW_MICROS > wm);
            }
        }
        out
    }
}

impl Operator for Anomalies {
    fn name(&self) -> &'static str {
        "anomalies"
    }

    fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    fn snapshot(&self) -> Vec<u8> {
        // Sorted before encoding, so the bytes do not depend on hash order.
        let users: BTreeMap<&String, &UserState> = self.users.iter().collect();
        let snapshot = (
            self.max_per_minute,
            self.zscore,
            self.watermark,
            self.max_time,
            users,
            self.late_total,
        );
        postcard::to_allocvec(&snapshot).unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let (max_per_minute, zscore, watermark, max_time, users, late_total): Snapshot =
            postcard::from_bytes(bytes).map_err(|e| format!("anomaly state: {e}"))?;
        if (max_per_minute, zscore) != (self.max_per_minute, self.zscore) {
            return Err(format!(
                "the checkpoint's anomaly settings ({max_per_minute} a minute, {zscore} standard deviations) differ from these ({} a minute, {} standard deviations); use a new checkpoint to change them",
                self.max_per_minute, self.zscore
            ));
        }
        self.watermark = watermark;
        self.max_time = max_time;
        self.users = users.into_iter().collect();
        self.late_total = late_total;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;
    const T0: i64 = 1_762_500_000 * 1_000_000;

    fn txn(user: &'static str, id: &'static str, amount: f64, time: i64) -> Txn<'static> {
        Txn {
            user_id: user,
            transaction_id: id,
            merchant_id: "merchant_1",
            amount,
            time,
        }
    }

    fn kinds(batch: &AnomalyBatch) -> Vec<(&str, &str)> {
        batch
            .anomalies
            .iter()
            .map(|a| (a.anomaly_type, a.transaction_id.as_str()))
            .collect()
    }

    #[test]
    fn more_than_n_in_a_minute_is_flagged_once_by_the_transaction_that_goes_over() {
        let mut a = Anomalies::new(3, 4.0);
        // Exactly 3 in the window [T0, T0 + 1 min): nothing; a fourth: flagged; a fifth: not again.
        let ids = ["a", "b", "c", "d", "e"];
        let batch: Vec<Txn> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| txn("user_1", id, 100.0, T0 + i as i64 * 10_000_000))
            .collect();
        let out = a.apply(batch[..3].iter().copied());
        assert!(out.anomalies.is_empty());
        let out = a.apply(batch[3..].iter().copied());
        assert_eq!(kinds(&out), [("HIGH_FREQUENCY", "d")]);
        let hf = &out.anomalies[0];
        assert_eq!(
            (hf.window_start, hf.window_end, hf.count),
            (Some(T0), Some(T0 + MIN), Some(4))
        );
        // Another user, and the next minute: counted apart.
        let out = a.apply([
            txn("user_2", "f", 100.0, T0 + 1),
            txn("user_1", "g", 100.0, T0 + MIN),
        ]);
        assert!(out.anomalies.is_empty());
    }

    #[test]
    fn an_amount_far_from_the_users_usual_ones_is_flagged_and_not_learned() {
        let mut a = Anomalies::new(1000, 4.0);
        // 20 usual amounts alternating 90 and 110: mean 100, standard deviation ~10.26.
        let usual: Vec<Txn> = (0..20)
            .map(|i| txn("user_1", "u", if i % 2 == 0 { 90.0 } else { 110.0 }, T0 + i))
            .collect();
        // Before the 20th, nothing is judged, however odd.
        let mut early = usual[..19].to_vec();
        early.push(txn("user_1", "early", 1e9, T0 + 19));
        let mut fresh = Anomalies::new(1000, 4.0);
        assert!(fresh.apply(early).anomalies.is_empty());

        assert!(a.apply(usual).anomalies.is_empty());
        let out = a.apply([
            txn("user_1", "high", 100.0 + 10.26 * 4.5, T0 + 100),
            txn("user_1", "edge", 140.0, T0 + 101), // z ≈ 3.9: usual
            txn("user_1", "low", 40.0, T0 + 102),   // z ≈ -4.7 (after "edge" joined)
            txn("user_2", "other", 1e6, T0 + 103),  // no history
        ]);
        assert_eq!(
            kinds(&out),
            [("UNUSUAL_AMOUNT", "high"), ("UNUSUAL_AMOUNT", "low")]
        );
        let z = out.anomalies[1].zscore.unwrap();
        assert!(z < -4.0, "{z}");
        // "high" and "low" did not join the baseline; "edge" did.
        let state = &a.users["user_1"];
        assert_eq!(state.n, 21);

        // Amounts that never vary: a cent more is usual, ten times more is not.
        let mut same = Anomalies::new(1000, 4.0);
        same.apply((0..20).map(|i| txn("user_3", "s", 100.0, T0 + i)));
        let out = same.apply([
            txn("user_3", "cent", 100.01, T0 + 30),
            txn("user_3", "tenfold", 1000.0, T0 + 31),
        ]);
        assert_eq!(kinds(&out), [("UNUSUAL_AMOUNT", "tenfold")]);
    }

    #[test]
    fn late_transactions_are_counted_not_evaluated_and_state_survives_a_snapshot() {
        let mut a = Anomalies::new(1, 4.0);
        a.apply([txn("user_1", "a", 1.0, T0 + 10 * MIN)]);
        assert_eq!(a.watermark(), Some(T0 + 9 * MIN));
        // Older than the watermark: late. At it: evaluated.
        let out = a.apply([
            txn("user_1", "late", 1.0, T0 + 9 * MIN - 1),
            txn("user_1", "b", 1.0, T0 + 9 * MIN),
            txn("user_1", "c", 1.0, T0 + 9 * MIN + 1),
        ]);
        assert_eq!(out.late, 1);
        assert_eq!(kinds(&out), [("HIGH_FREQUENCY", "c")]);
        assert_eq!(a.late_total, 1);

        let mut restored = Anomalies::new(1, 4.0);
        restored.restore(&a.snapshot()).unwrap();
        assert_eq!(restored, a);
        let err = Anomalies::new(2, 4.0).restore(&a.snapshot()).unwrap_err();
        assert!(err.contains("differ"), "{err}");
    }
}
