//! Seed 002's windowed aggregates: 5-minute tumbling windows per (user_id, category) with count,
//! sum, average, max and min amount and the list of merchants (Spark's `collect_list`), in update
//! mode: every batch emits the windows it changed. The windows follow [`TumblingWindows`]' rules
//! (watermark, lateness, snapshot layout) but keep each window's aggregate and merchants in one
//! slot: a transaction costs one lookup, and a changed window is listed once, not per row.
//!
//! [`TumblingWindows`]: super::windows::TumblingWindows

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::windows::{decode_windows, encode_windows, Aggregate, Clock};
use crate::engine::operator::Operator;

/// The separator of user and category in the windows' key (a control character: not in ids).
const SEP: char = '\u{1f}';

/// One output row: a (user, category) window as of this batch.
#[derive(Debug, Clone, PartialEq)]
pub struct UserWindowRow {
    pub window_start: i64,
    pub window_end: i64,
    /// The window's key ([`push_key`]), shared with the operator's state: the user and the
    /// category are read from it ([`UserWindowRow::user_id`], [`UserWindowRow::category`]).
    key: Arc<str>,
    /// Where the key's separator is ([`split`]).
    split: u32,
    pub agg: Aggregate,
    /// Shared with the operator's state (one copy of each merchant's name).
    pub merchants: Merchants,
}

impl UserWindowRow {
    pub fn new(
        window_start: i64,
        window_end: i64,
        user_id: Option<&str>,
        category: Option<&str>,
        agg: Aggregate,
        merchants: Merchants,
    ) -> Self {
        let mut key = String::new();
        push_key(&mut key, user_id, category);
        UserWindowRow {
            window_start,
            window_end,
            split: split(&key),
            key: key.into(),
            agg,
            merchants,
        }
    }

    pub fn user_id(&self) -> Option<&str> {
        unkey(&self.key, self.split).0
    }

    pub fn category(&self) -> Option<&str> {
        unkey(&self.key, self.split).1
    }
}

/// One transaction as the windows see it.
pub struct UserTxn<'a> {
    pub event_time: i64,
    pub user_id: Option<&'a str>,
    pub category: Option<&'a str>,
    pub merchant: Option<&'a str>,
    pub amount: Option<f64>,
}

/// A window's merchants, in processing order.
pub type Merchants = Vec<Option<Arc<str>>>;

/// One open (window, user, category): its aggregate and merchants.
struct Slot {
    /// The key again, shared: what a changed window's row and the batch's list of changes hold.
    key: Arc<str>,
    split: u32,
    agg: Aggregate,
    merchants: Merchants,
    /// Listed in the batch's changes already.
    changed: bool,
}

type Slots = HashMap<Arc<str>, Slot, ahash::RandomState>;

pub struct UserWindows {
    window: i64,
    delay: i64,
    clock: Clock,
    /// The open windows by start, then key (looked up by `&str`: no key is copied for a window
    /// already open).
    open: BTreeMap<i64, Slots>,
    /// Each merchant's name once, shared by the windows' lists and the rows (a name per
    /// transaction was most of this operator's allocations).
    names: HashSet<Arc<str>, ahash::RandomState>,
    /// `Some`: the watermark follows this largest event time upstream, not the rows' own
    /// ([`UserWindows::follow_upstream`]); not in the snapshot (set before each batch).
    upstream: Option<Option<i64>>,
}

/// The snapshot: keys sorted, so that the bytes do not depend on hash order. `windows` is the
/// layout of [`TumblingWindows`](super::windows::TumblingWindows)' snapshot, which this
/// operator's state was before its windows and merchants shared a slot.
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

/// Where a key's user part ends: its first separator (the key's length when it has none).
fn split(key: &str) -> u32 {
    let at = key
        .bytes()
        .position(|b| b == SEP as u8)
        .unwrap_or(key.len());
    u32::try_from(at).unwrap_or(u32::MAX)
}

/// The (user, category) of a key whose separator is at `split`.
fn unkey(key: &str, split: u32) -> (Option<&str>, Option<&str>) {
    fn part(p: &str) -> Option<&str> {
        p.strip_prefix('1')
    }
    match key.split_at_checked(split as usize) {
        Some((u, c)) if c.starts_with(SEP) => (part(u), part(&c[SEP.len_utf8()..])),
        _ => (None, None),
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

impl Slot {
    /// Adds a transaction; lists the window in `changed` the first time in a batch.
    fn add(
        &mut self,
        start: i64,
        amount: Option<f64>,
        merchant: Option<Arc<str>>,
        changed: &mut Vec<(i64, Arc<str>)>,
    ) {
        self.agg.add(amount);
        self.merchants.push(merchant);
        if !self.changed {
            self.changed = true;
            changed.push((start, self.key.clone()));
        }
    }
}

impl UserWindows {
    pub fn new(window_micros: i64, delay_micros: i64) -> Self {
        UserWindows {
            window: window_micros.max(1),
            delay: delay_micros.max(0),
            clock: Clock::default(),
            open: BTreeMap::new(),
            names: HashSet::default(),
            upstream: None,
        }
    }

    /// The watermark follows `max` (less the delay) from now on, not the rows' event times: the
    /// largest event time upstream (scale-out's second stage), `None` while it has none.
    pub fn follow_upstream(&mut self, max: Option<i64>) {
        self.upstream = Some(max);
    }

    /// Folds a batch in; returns the windows it changed (in start then key order), and the rows
    /// dropped as late (their window had ended at the watermark in force at the batch's start).
    pub fn apply<'a>(
        &mut self,
        txns: impl IntoIterator<Item = UserTxn<'a>>,
    ) -> (Vec<UserWindowRow>, u64) {
        let (window, in_force) = (self.window, self.clock.watermark);
        let mut late = 0;
        let mut max_seen = self.clock.max_event_time;
        let mut changed: Vec<(i64, Arc<str>)> = Vec::new();
        let mut key = String::with_capacity(64);
        let names = &mut self.names;
        // Consecutive transactions mostly fall in the same window: one lookup for a run.
        let mut current: Option<(i64, &mut Slots)> = None;
        for t in txns {
            max_seen = Some(max_seen.map_or(t.event_time, |m| m.max(t.event_time)));
            let start = t.event_time.div_euclid(window) * window;
            if in_force.is_some_and(|wm| start + window <= wm) {
                late += 1;
                continue;
            }
            if current.as_ref().is_none_or(|(s, _)| *s != start) {
                // A new window is sized as the largest open one: few rehashes as it fills.
                let hint = self.open.values().map(HashMap::len).max().unwrap_or(0);
                current = Some((
                    start,
                    self.open.entry(start).or_insert_with(|| {
                        HashMap::with_capacity_and_hasher(hint, Default::default())
                    }),
                ));
            }
            let Some((_, slots)) = current.as_mut() else {
                continue;
            };
            key.clear();
            push_key(&mut key, t.user_id, t.category);
            let merchant = t.merchant.map(|m| intern(names, m));
            match slots.get_mut(key.as_str()) {
                Some(slot) => slot.add(start, t.amount, merchant, &mut changed),
                None => {
                    let key: Arc<str> = Arc::from(key.as_str());
                    let mut slot = Slot {
                        split: split(&key),
                        key: key.clone(),
                        agg: Aggregate::default(),
                        merchants: Vec::with_capacity(1),
                        changed: false,
                    };
                    slot.add(start, t.amount, merchant, &mut changed);
                    slots.insert(key, slot);
                }
            }
        }
        self.clock.max_event_time = max_seen;
        self.clock.late_total += late;
        let basis = self.upstream.unwrap_or(max_seen);
        if let Some(candidate) = basis.map(|m| m - self.delay) {
            self.clock.watermark =
                Some(self.clock.watermark.map_or(candidate, |w| w.max(candidate)));
        }
        changed.sort_unstable_by(|a, b| (a.0, &*a.1).cmp(&(b.0, &*b.1)));
        let mut rows = Vec::with_capacity(changed.len());
        let mut current: Option<(i64, &mut Slots)> = None;
        for (start, key) in changed {
            if current.as_ref().is_none_or(|(s, _)| *s != start) {
                current = self.open.get_mut(&start).map(|slots| (start, slots));
            }
            let Some(slot) = current.as_mut().and_then(|(_, slots)| slots.get_mut(&*key)) else {
                continue;
            };
            slot.changed = false;
            rows.push(UserWindowRow {
                window_start: start,
                window_end: start + window,
                key,
                split: slot.split,
                agg: slot.agg,
                merchants: slot.merchants.clone(),
            });
        }
        // Windows the watermark closed (end <= watermark): ordered by start, they are a prefix.
        if let Some(wm) = self.clock.watermark {
            let open = self.open.split_off(&(wm - window + 1));
            let closed = std::mem::replace(&mut self.open, open);
            if !closed.is_empty() {
                crate::os::drop_aside(closed);
            }
        }
        if self.names.len() > NAMES_KEPT {
            self.forget_unused_names();
        }
        (rows, late)
    }

    /// The open windows in start then key order.
    fn sorted(&self) -> Vec<(i64, &Slot)> {
        let mut all = Vec::new();
        for (start, slots) in &self.open {
            let from = all.len();
            all.extend(slots.values().map(|slot| (*start, slot)));
            all[from..].sort_unstable_by(|a: &(i64, &Slot), b| a.1.key.cmp(&b.1.key));
        }
        all
    }

    /// Keeps the names the open windows hold, when they are fewer than half of those kept.
    fn forget_unused_names(&mut self) {
        let used: HashSet<&Arc<str>> = self
            .open
            .values()
            .flat_map(|slots| slots.values())
            .flat_map(|slot| slot.merchants.iter().flatten())
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
        self.clock.watermark
    }

    fn snapshot(&self) -> Vec<u8> {
        let sorted = self.sorted();
        let entries = sorted
            .iter()
            .map(|(start, slot)| (*start, Some(&*slot.key), slot.agg))
            .collect();
        let merchants = sorted
            .iter()
            .map(|(start, slot)| {
                let list = slot.merchants.iter().map(|m| m.as_deref()).collect();
                ((*start, &*slot.key), list)
            })
            .collect();
        let snapshot = SnapshotRef {
            windows: encode_windows(self.window, self.delay, self.clock, entries),
            merchants,
        };
        postcard::to_allocvec(&snapshot).unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let snapshot: Snapshot =
            postcard::from_bytes(bytes).map_err(|e| format!("not a user windows snapshot: {e}"))?;
        let (clock, entries) = decode_windows(&snapshot.windows, self.window, self.delay)?;
        let mut merchants = snapshot.merchants;
        self.clock = clock;
        self.open = BTreeMap::new();
        self.names = HashSet::default();
        for (start, key, agg) in entries {
            // Every key of these windows is one (written by `apply`, which always gives one).
            let key: Arc<str> = Arc::from(key.unwrap_or_default());
            let list = merchants
                .remove(&(start, key.to_string()))
                .unwrap_or_default()
                .iter()
                .map(|m| m.as_deref().map(|m| intern(&mut self.names, m)))
                .collect();
            let slot = Slot {
                split: split(&key),
                key: key.clone(),
                agg,
                merchants: list,
                changed: false,
            };
            self.open.entry(start).or_default().insert(key, slot);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::windows::TumblingWindows;

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
        let food = rows.iter().find(|r| r.category() == Some("food")).unwrap();
        assert_eq!(food.user_id(), Some("u1"));
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
        let mut windows = TumblingWindows::new(
            "user_aggregates",
            5 * MIN,
            5 * MIN,
            crate::operators::windows::OutputMode::Update,
        );
        windows.apply([
            (T, Some(key(Some("u1"), Some("food")).as_str()), Some(10.0)),
            (
                T + MIN,
                Some(key(Some("u2"), Some("food")).as_str()),
                Some(30.0),
            ),
        ]);
        windows.apply([(
            T + MIN,
            Some(key(Some("u1"), Some("food")).as_str()),
            Some(1.0),
        )]);
        let owned = Snapshot {
            windows: windows.to_bytes(),
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

    /// The windows' rows, lateness and snapshot are those of [`TumblingWindows`] keyed the same
    /// way (what this operator was built on before its slots), over batches of shuffled times.
    #[test]
    fn rows_late_counts_and_snapshots_agree_with_tumbling_windows_over_random_batches() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let (users, categories) = (["u1", "u2", "u3"], ["food", "fuel"]);
        let mut w = UserWindows::new(5 * MIN, 2 * MIN);
        let mut reference = TumblingWindows::new(
            "user_aggregates",
            5 * MIN,
            2 * MIN,
            crate::operators::windows::OutputMode::Update,
        );
        let mut clock = T;
        let mut late_seen = 0;
        for _ in 0..40 {
            let batch: Vec<(i64, &str, &str, f64)> = (0..next(30))
                .map(|_| {
                    clock += next(20) as i64 * 1_000_000;
                    // Some a few minutes back: in an open window, or late.
                    let at = clock - next(4) as i64 * next(3) as i64 * MIN;
                    let user = users[next(3) as usize];
                    (
                        at,
                        user,
                        categories[next(2) as usize],
                        next(1000) as f64 / 4.0,
                    )
                })
                .collect();
            let keys: Vec<String> = batch
                .iter()
                .map(|(_, u, c, _)| key(Some(u), Some(c)))
                .collect();
            let expected = reference.apply(
                batch
                    .iter()
                    .zip(&keys)
                    .map(|((at, _, _, a), k)| (*at, Some(k.as_str()), Some(*a))),
            );
            let (rows, late) = w.apply(batch.iter().map(|&(at, u, c, a)| t(at, u, c, u, a)));
            late_seen += late;
            assert_eq!(late, expected.late);
            let got: Vec<(i64, String, Aggregate, usize)> = rows
                .iter()
                .map(|r| (r.window_start, r.key.to_string(), r.agg, r.merchants.len()))
                .collect();
            let want: Vec<(i64, String, Aggregate, usize)> = expected
                .rows
                .iter()
                .map(|r| {
                    (
                        r.window_start,
                        r.key.clone().unwrap(),
                        r.agg,
                        r.agg.count as usize,
                    )
                })
                .collect();
            assert_eq!(got, want);
            let snapshot: Snapshot = postcard::from_bytes(&w.snapshot()).unwrap();
            assert_eq!(snapshot.windows, reference.to_bytes());
        }
        assert!(late_seen > 0, "the batches had late rows");
    }

    #[test]
    fn keys_keep_missing_and_empty_parts_apart() {
        fn unkey(k: &str) -> (Option<&str>, Option<&str>) {
            super::unkey(k, split(k))
        }
        assert_eq!(unkey(&key(None, Some(""))), (None, Some("")));
        assert_eq!(unkey(&key(Some("u"), None)), (Some("u"), None));
        assert_eq!(unkey(&key(Some(""), Some("c"))), (Some(""), Some("c")));
        assert_eq!(unkey(""), (None, None));
    }
}
