//! Seed 002's windowed aggregates: 5-minute tumbling windows per (user_id, category) with count,
//! sum, average, max and min amount and the list of merchants (Spark's `collect_list`), in update
//! mode: every batch emits the windows it changed. The aggregates are [`TumblingWindows`]'; this
//! operator adds the merchants of each open window.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::windows::{Aggregate, OutputMode, TumblingWindows};
use crate::engine::operator::Operator;

/// The separator of user and category in the windows' key (a control character: not in ids).
const SEP: char = '\u{1f}';

/// One output row: a (user, category) window as of this batch.
#[derive(Debug, Clone, PartialEq)]
pub struct UserWindowRow {
    pub window_start: i64,
    pub window_end: i64,
    pub user_id: Option<String>,
    pub category: Option<String>,
    pub agg: Aggregate,
    /// Shared with the operator's state (one copy of each merchant's name).
    pub merchants: Merchants,
}

/// One transaction as the windows see it.
pub struct UserTxn<'a> {
    pub event_time: i64,
    pub user_id: Option<&'a str>,
    pub category: Option<&'a str>,
    pub merchant: Option<&'a str>,
    pub amount: Option<f64>,
}

pub struct UserWindows {
    windows: TumblingWindows,
    window: i64,
    /// The merchants of each open window, in processing order, by start then key (looked up by
    /// `&str`: no key is copied for a window already open).
    merchants: BTreeMap<i64, HashMap<String, Merchants, ahash::RandomState>>,
    /// Each merchant's name once, shared by the windows' lists and the rows (a name per
    /// transaction was most of this operator's allocations).
    names: HashSet<Arc<str>, ahash::RandomState>,
}

/// A window's merchants, in processing order.
pub type Merchants = Vec<Option<Arc<str>>>;

/// The snapshot: keys sorted, so that the bytes do not depend on hash order.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    windows: Vec<u8>,
    merchants: BTreeMap<(i64, String), Vec<Option<String>>>,
}

/// [`Snapshot`] as written: the same bytes, borrowed from the state.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    windows: Vec<u8>,
    merchants: BTreeMap<(i64, &'a str), Vec<Option<&'a str>>>,
}

/// Interned names beyond this many (and beyond twice those the open windows hold) are
/// forgotten: a stream of ever new merchants does not grow the set without end.
const NAMES_KEPT: usize = 100_000;

#[cfg(test)]
fn key(user: Option<&str>, category: Option<&str>) -> String {
    let mut k = String::new();
    push_key(&mut k, user, category);
    k
}

/// Appends the windows' key of (user, category) to `out`. `None` and "" differ: a leading
/// marker says which parts are present.
fn push_key(out: &mut String, user: Option<&str>, category: Option<&str>) {
    fn part(out: &mut String, p: Option<&str>) {
        match p {
            Some(v) => {
                out.push('1');
                out.push_str(v);
            }
            None => out.push('0'),
        }
    }
    part(out, user);
    out.push(SEP);
    part(out, category);
}

fn unkey(key: &str) -> (Option<String>, Option<String>) {
    let part = |p: &str| p.strip_prefix('1').map(str::to_string);
    match key.split_once(SEP) {
        Some((u, c)) => (part(u), part(c)),
        None => (None, None),
    }
}

impl UserWindows {
    pub fn new(window_micros: i64, delay_micros: i64) -> Self {
        UserWindows {
            windows: TumblingWindows::new(
                "user_aggregates",
                window_micros,
                delay_micros,
                OutputMode::Update,
            ),
            window: window_micros.max(1),
            merchants: BTreeMap::new(),
            names: HashSet::default(),
        }
    }

    /// The shared copy of a merchant's name.
    fn intern(names: &mut HashSet<Arc<str>, ahash::RandomState>, name: &str) -> Arc<str> {
        match names.get(name) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = Arc::from(name);
                names.insert(shared.clone());
                shared
            }
        }
    }

    /// The watermark follows `max` from now on ([`TumblingWindows::follow_upstream`]).
    pub fn follow_upstream(&mut self, max: Option<i64>) {
        self.windows.follow_upstream(max);
    }

    /// Folds a batch in; returns the windows it changed, and the rows dropped as late.
    pub fn apply<'a>(
        &mut self,
        txns: impl IntoIterator<Item = UserTxn<'a>>,
    ) -> (Vec<UserWindowRow>, u64) {
        let in_force = self.windows.watermark();
        let txns: Vec<UserTxn<'a>> = txns.into_iter().collect();
        // Every key in one buffer: no allocation per transaction.
        let mut buffer = String::with_capacity(txns.len() * 24);
        let mut ends = Vec::with_capacity(txns.len());
        for t in &txns {
            push_key(&mut buffer, t.user_id, t.category);
            ends.push(buffer.len());
        }
        let keys: Vec<&str> = std::iter::once(0)
            .chain(ends.iter().copied())
            .zip(&ends)
            .map(|(from, &to)| &buffer[from..to])
            .collect();
        let mut open: Option<(i64, &mut HashMap<_, _, _>)> = None;
        for (t, &k) in txns.iter().zip(&keys) {
            let start = t.event_time.div_euclid(self.window) * self.window;
            if in_force.is_some_and(|wm| start + self.window <= wm) {
                continue;
            }
            // Consecutive transactions mostly fall in the same window: one lookup for a run.
            if open.as_ref().is_none_or(|(s, _)| *s != start) {
                open = Some((start, self.merchants.entry(start).or_default()));
            }
            let Some((_, lists)) = open.as_mut() else {
                continue;
            };
            let merchant = t.merchant.map(|m| Self::intern(&mut self.names, m));
            match lists.get_mut(k) {
                Some(list) => list.push(merchant),
                None => {
                    lists.insert(k.to_string(), vec![merchant]);
                }
            }
        }
        let batch = self.windows.apply(
            txns.iter()
                .zip(&keys)
                .map(|(t, k)| (t.event_time, Some(*k), t.amount)),
        );
        let rows = batch
            .rows
            .into_iter()
            .map(|r| {
                let k = r.key.clone().unwrap_or_default();
                let (user_id, category) = unkey(&k);
                UserWindowRow {
                    window_start: r.window_start,
                    window_end: r.window_end,
                    user_id,
                    category,
                    agg: r.agg,
                    merchants: self
                        .merchants
                        .get(&r.window_start)
                        .and_then(|open| open.get(&k))
                        .cloned()
                        .unwrap_or_default(),
                }
            })
            .collect();
        // Windows the watermark closed: their merchants go with their aggregates.
        if let Some(wm) = self.windows.watermark() {
            // Windows are ordered by start: the closed ones (end <= watermark) are a prefix.
            let open = self.merchants.split_off(&(wm - self.window + 1));
            self.merchants = open;
        }
        if self.names.len() > NAMES_KEPT {
            self.forget_unused_names();
        }
        (rows, batch.late)
    }
}

impl UserWindows {
    /// Keeps the names the open windows hold, when they are fewer than half of those kept.
    fn forget_unused_names(&mut self) {
        let used: HashSet<&Arc<str>> = self
            .merchants
            .values()
            .flat_map(|open| open.values().flatten().flatten())
            .collect();
        if used.len() * 2 < self.names.len() {
            let used: HashSet<Arc<str>, ahash::RandomState> = used.into_iter().cloned().collect();
            self.names = used;
        }
    }
}

impl Operator for UserWindows {
    fn name(&self) -> &'static str {
        "user_aggregates"
    }

    fn watermark(&self) -> Option<i64> {
        self.windows.watermark()
    }

    fn snapshot(&self) -> Vec<u8> {
        let merchants = self
            .merchants
            .iter()
            .flat_map(|(start, open)| {
                open.iter().map(move |(k, v)| {
                    let list = v.iter().map(|m| m.as_deref()).collect();
                    ((*start, k.as_str()), list)
                })
            })
            .collect();
        let snapshot = SnapshotRef {
            windows: self.windows.to_bytes(),
            merchants,
        };
        postcard::to_allocvec(&snapshot).unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let snapshot: Snapshot =
            postcard::from_bytes(bytes).map_err(|e| format!("not a user windows snapshot: {e}"))?;
        self.windows.restore(&snapshot.windows)?;
        self.merchants = BTreeMap::new();
        self.names = HashSet::default();
        for ((start, k), list) in snapshot.merchants {
            let list = list
                .iter()
                .map(|m| m.as_deref().map(|m| Self::intern(&mut self.names, m)))
                .collect();
            self.merchants.entry(start).or_default().insert(k, list);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;
    const T: i64 = 1_762_500_600_000_000;

    fn t<'a>(
        at: i64,
        user: &'a str,
        category: &'a str,
        merchant: &'a str,
        amount: f64,
    ) -> UserTxn<'a> {
        UserTxn {
            event_time: at,
            user_id: Some(user),
            category: Some(category),
            merchant: Some(merchant),
            amount: Some(amount),
        }
    }

    #[test]
    fn windows_per_user_and_category_list_their_merchants_and_update_each_batch() {
        let mut w = UserWindows::new(5 * MIN, 5 * MIN);
        let (rows, _) = w.apply([
            t(T, "u1", "food", "A", 10.0),
            t(T + MIN, "u1", "food", "B", 30.0),
            t(T + MIN, "u1", "fuel", "C", 5.0),
        ]);
        assert_eq!(rows.len(), 2);
        let food = rows
            .iter()
            .find(|r| r.category.as_deref() == Some("food"))
            .unwrap();
        assert_eq!(food.user_id.as_deref(), Some("u1"));
        assert_eq!(food.agg.count, 2);
        assert_eq!(
            (food.agg.sum(), food.agg.min(), food.agg.max()),
            (Some(40.0), Some(10.0), Some(30.0))
        );
        assert_eq!(food.merchants, vec![Some("A".into()), Some("B".into())]);
        assert_eq!(food.window_end - food.window_start, 5 * MIN);
        // The next batch changes one window: only it comes out, with every merchant so far.
        let bytes = w.snapshot();
        let (rows, _) = w.apply([t(T + 2 * MIN, "u1", "food", "D", 1.0)]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].merchants.len(), 3);
        // Restored from the snapshot, the same batch gives the same rows.
        let mut back = UserWindows::new(5 * MIN, 5 * MIN);
        back.restore(&bytes).unwrap();
        let (again, _) = back.apply([t(T + 2 * MIN, "u1", "food", "D", 1.0)]);
        assert_eq!(again, rows);
    }

    #[test]
    fn the_snapshot_keeps_the_layout_of_owned_names_and_shares_them_when_restored() {
        let mut w = UserWindows::new(5 * MIN, 5 * MIN);
        w.apply([
            t(T, "u1", "food", "A", 10.0),
            t(T + MIN, "u2", "food", "A", 30.0),
        ]);
        w.apply([UserTxn {
            merchant: None,
            ..t(T + MIN, "u1", "food", "B", 1.0)
        }]);
        // The layout written before the names were shared: owned strings.
        let owned = Snapshot {
            windows: w.windows.to_bytes(),
            merchants: BTreeMap::from([
                (
                    (T, key(Some("u1"), Some("food"))),
                    vec![Some("A".into()), None],
                ),
                ((T, key(Some("u2"), Some("food"))), vec![Some("A".into())]),
            ]),
        };
        let bytes = postcard::to_allocvec(&owned).unwrap();
        assert_eq!(w.snapshot(), bytes);
        let mut back = UserWindows::new(5 * MIN, 5 * MIN);
        back.restore(&bytes).unwrap();
        assert_eq!(back.snapshot(), bytes);
        assert_eq!(back.names.len(), 1, "one copy of merchant A");
    }

    #[test]
    fn keys_keep_missing_and_empty_parts_apart() {
        assert_eq!(unkey(&key(None, Some(""))), (None, Some(String::new())));
        assert_eq!(unkey(&key(Some("u"), None)), (Some("u".into()), None));
    }
}
