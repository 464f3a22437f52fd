//! Seed 002's windowed aggregates: 5-minute tumbling windows per (user_id, category) with count,
//! sum, average, max and min amount and the list of merchants (Spark's `collect_list`), in update
//! mode: every batch emits the windows it changed. The aggregates are [`TumblingWindows`]'; this
//! operator adds the merchants of each open window.

use std::collections::{BTreeMap, HashMap};

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
    pub merchants: Vec<Option<String>>,
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
    merchants: BTreeMap<i64, HashMap<String, Vec<Option<String>>, ahash::RandomState>>,
}

/// The snapshot: keys sorted, so that the bytes do not depend on hash order.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    windows: Vec<u8>,
    merchants: BTreeMap<(i64, String), Vec<Option<String>>>,
}

fn key(user: Option<&str>, category: Option<&str>) -> String {
    // `None` and "" differ: a leading marker says which parts are present.
    let part = |p: Option<&str>| p.map_or("0".to_string(), |v| format!("1{v}"));
    format!("{}{SEP}{}", part(user), part(category))
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
        }
    }

    /// Folds a batch in; returns the windows it changed, and the rows dropped as late.
    pub fn apply<'a>(
        &mut self,
        txns: impl IntoIterator<Item = UserTxn<'a>>,
    ) -> (Vec<UserWindowRow>, u64) {
        let in_force = self.windows.watermark();
        let txns: Vec<UserTxn<'a>> = txns.into_iter().collect();
        let keys: Vec<String> = txns.iter().map(|t| key(t.user_id, t.category)).collect();
        for (t, k) in txns.iter().zip(&keys) {
            let start = t.event_time.div_euclid(self.window) * self.window;
            if in_force.is_some_and(|wm| start + self.window <= wm) {
                continue;
            }
            let open = self.merchants.entry(start).or_default();
            let merchant = t.merchant.map(str::to_string);
            match open.get_mut(k.as_str()) {
                Some(list) => list.push(merchant),
                None => {
                    open.insert(k.clone(), vec![merchant]);
                }
            }
        }
        let batch = self.windows.apply(
            txns.iter()
                .zip(&keys)
                .map(|(t, k)| (t.event_time, Some(k.as_str()), t.amount)),
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
        (rows, batch.late)
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
                open.iter()
                    .map(move |(k, v)| ((*start, k.clone()), v.clone()))
            })
            .collect();
        let snapshot = Snapshot {
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
        for ((start, k), list) in snapshot.merchants {
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
    fn keys_keep_missing_and_empty_parts_apart() {
        assert_eq!(unkey(&key(None, Some(""))), (None, Some(String::new())));
        assert_eq!(unkey(&key(Some("u"), None)), (Some("u".into()), None));
    }
}
