//! Tumbling event-time windows per key with a watermark, as Spark's
//! `withWatermark(delay).groupBy(window(event_time, size), key)`: count, sum, average, min and
//! max of one value.
//!
//! - Windows are aligned to the epoch, `[start, start + size)`.
//! - The watermark is the largest event time seen minus the delay, advanced at the end of a batch,
//!   never backwards.
//! - A row whose window ended at or before the watermark in force when its batch started is late:
//!   dropped from gold and counted (it is still in silver).
//! - Append mode writes a window once, in the batch at whose end the watermark passes the window's
//!   end (Spark needs an extra no-data batch for that; the rows are the same), then drops its state.
//!   Update mode writes, each batch, the windows that batch changed.
//! - Sums are kept in exact fixed point (micro-units) while amounts allow it, so a window's sum does
//!   not depend on how rows were split into batches, and a replay after a crash gives the same bits.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::engine::dataset::Derived;
use crate::engine::operator::Operator;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    Append,
    Update,
}

impl FromStr for OutputMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "append" => Ok(OutputMode::Append),
            "update" => Ok(OutputMode::Update),
            other => Err(format!(
                "{other:?} is not an output mode (use append or update)"
            )),
        }
    }
}

/// Micro-units per amount unit in the exact sum.
const FIXED_SCALE: f64 = 1e6;
/// Amounts beyond this magnitude make a window's sum fall back to floating point.
const FIXED_LIMIT: f64 = 1e15;

/// The running aggregate of one window and key.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Rows in the window.
    pub count: u64,
    /// Rows with a non-null amount.
    pub amounts: u64,
    /// Exact sum in micro-units, while every amount fitted.
    pub fixed_sum: Option<i128>,
    pub float_sum: f64,
    pub max: f64,
    pub min: f64,
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate {
            count: 0,
            amounts: 0,
            fixed_sum: Some(0),
            float_sum: 0.0,
            max: f64::NEG_INFINITY,
            min: f64::INFINITY,
        }
    }
}

impl Aggregate {
    pub(crate) fn add(&mut self, amount: Option<f64>) {
        self.count += 1;
        let Some(a) = amount else { return };
        self.amounts += 1;
        self.float_sum += a;
        self.max = self.max.max(a);
        self.min = self.min.min(a);
        self.fixed_sum = match self.fixed_sum {
            Some(s) if a.abs() < FIXED_LIMIT => Some(s + (a * FIXED_SCALE).round() as i128),
            _ => None,
        };
    }

    pub fn sum(&self) -> Option<f64> {
        (self.amounts > 0).then(|| {
            self.fixed_sum
                .map_or(self.float_sum, |s| s as f64 / FIXED_SCALE)
        })
    }

    pub fn avg(&self) -> Option<f64> {
        self.sum().map(|s| s / self.amounts as f64)
    }

    pub fn max(&self) -> Option<f64> {
        (self.amounts > 0).then_some(self.max)
    }

    pub fn min(&self) -> Option<f64> {
        (self.amounts > 0).then_some(self.min)
    }
}

/// The aggregates of one window, per card (rows without a card_id aggregate under `None`).
/// Looked up by `&str`, so a row costs no allocation once its card has been seen in the window.
#[derive(Debug, Clone, Default, PartialEq)]
struct Cards {
    unnamed: Option<Aggregate>,
    /// Hashed (aHash: SipHash, std's default, was the larger part of a lookup on these short
    /// keys): one lookup per row is gold's hot path; [`Cards::iter`] sorts.
    named: HashMap<String, Aggregate, ahash::RandomState>,
}

impl Cards {
    /// Adds a row to its card's aggregate: one hash lookup when the card is known.
    fn add(&mut self, card: Option<&str>, amount: Option<f64>) {
        match card {
            None => self
                .unnamed
                .get_or_insert_with(Aggregate::default)
                .add(amount),
            Some(c) => match self.named.get_mut(c) {
                Some(aggregate) => aggregate.add(amount),
                None => self.named.entry(c.to_owned()).or_default().add(amount),
            },
        }
    }

    fn set(&mut self, card: Option<String>, aggregate: Aggregate) {
        match card {
            None => self.unnamed = Some(aggregate),
            Some(c) => {
                self.named.insert(c, aggregate);
            }
        }
    }

    fn get(&self, card: Option<&str>) -> Option<&Aggregate> {
        match card {
            None => self.unnamed.as_ref(),
            Some(c) => self.named.get(c),
        }
    }

    /// In card order, the missing card first (as Spark sorts nulls first): output files and
    /// snapshots are the same whatever order the rows came in.
    fn iter(&self) -> impl Iterator<Item = (Option<&str>, &Aggregate)> {
        let mut named: Vec<(&String, &Aggregate)> = self.named.iter().collect();
        named.sort_unstable_by_key(|(c, _)| *c);
        self.unnamed
            .iter()
            .map(|a| (None, a))
            .chain(named.into_iter().map(|(c, a)| (Some(c.as_str()), a)))
    }

    fn len(&self) -> usize {
        usize::from(self.unnamed.is_some()) + self.named.len()
    }
}

/// One window's aggregate for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    pub window_start: i64,
    pub window_end: i64,
    pub key: Option<String>,
    pub agg: Aggregate,
}

/// What one batch did to the windows.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WindowBatch {
    /// The operator's name.
    pub name: &'static str,
    pub rows: Vec<WindowRow>,
    /// Valid rows dropped because their window had closed.
    pub late: u64,
    pub watermark: Option<i64>,
}

/// Window state and watermark; saved with every batch commit.
#[derive(Debug, Clone, PartialEq)]
pub struct TumblingWindows {
    name: &'static str,
    window: i64,
    delay: i64,
    mode: OutputMode,
    /// Open windows by start (UTC microseconds).
    windows: BTreeMap<i64, Cards>,
    max_event_time: Option<i64>,
    watermark: Option<i64>,
    /// Late rows over the life of the checkpoint.
    pub late_total: u64,
    /// Scale-out (`SCALE_OUT`): the state of each input partition apart, with its own watermark
    /// ([`TumblingWindows::by_partition`]); the fields above are then unused.
    parts: Option<BTreeMap<i32, Part>>,
    /// `Some`: the watermark follows this largest event time of the input upstream (the
    /// smallest of its partitions', scale-out's second stage), not the rows' own; `Some(None)`
    /// until every upstream partition has one. Not in the snapshot (set before each batch).
    upstream: Option<Option<i64>>,
}

/// The windows of one input partition, in scale-out: everything a partition's records did, and
/// nothing else, so that the state moves with the partition and does not depend on which
/// processor read which partition, nor on how the partition was cut into batches.
#[derive(Debug, Clone, Default, PartialEq)]
struct Part {
    windows: BTreeMap<i64, Cards>,
    /// The largest event time of the partition's records so far.
    max_event_time: Option<i64>,
    late_total: u64,
}

impl Part {
    /// The partition's watermark: its largest event time minus the delay (never backwards, as
    /// the largest event time only grows).
    fn watermark(&self, delay: i64) -> Option<i64> {
        self.max_event_time.map(|m| m - delay)
    }
}

impl TumblingWindows {
    /// Windows of `window_micros`, watermark `delay_micros` behind the largest event time;
    /// `name` is the operator's name in the checkpoint.
    pub fn new(
        name: &'static str,
        window_micros: i64,
        delay_micros: i64,
        mode: OutputMode,
    ) -> Self {
        TumblingWindows {
            name,
            window: window_micros.max(1),
            delay: delay_micros.max(0),
            mode,
            windows: BTreeMap::new(),
            max_event_time: None,
            watermark: None,
            late_total: 0,
            parts: None,
            upstream: None,
        }
    }

    /// The watermark follows `max` (less the delay) from now on, not the rows' event times: the
    /// largest event time of every upstream partition, the smallest of them (`None` while one
    /// has none).
    pub fn follow_upstream(&mut self, max: Option<i64>) {
        self.upstream = Some(max);
    }

    /// Scale-out: the largest event time of input partition `partition`'s records so far.
    pub fn partition_max(&self, partition: i32) -> Option<i64> {
        self.parts
            .as_ref()
            .and_then(|parts| parts.get(&partition))
            .and_then(|p| p.max_event_time)
    }

    /// The same windows kept per input partition (scale-out): a row is late when its window
    /// ended at or before its partition's watermark as it stood when the row was read (the
    /// partition's largest earlier event time minus the delay), and a partition's windows close
    /// when its own watermark passes them. The rows written therefore depend only on each
    /// partition's records in offset order, not on batches nor on who read the partition.
    pub fn by_partition(mut self) -> Self {
        self.parts = Some(BTreeMap::new());
        self
    }

    /// Whether the state is kept per input partition.
    pub fn is_by_partition(&self) -> bool {
        self.parts.is_some()
    }

    /// The watermark; kept per partition, the smallest of them (Flink's and Spark's rule for
    /// several inputs), over the partitions that have had a record.
    pub fn watermark(&self) -> Option<i64> {
        match &self.parts {
            None => self.watermark,
            Some(parts) => parts.values().filter_map(|p| p.watermark(self.delay)).min(),
        }
    }

    /// Open (window, card) aggregates: what the state holds.
    pub fn open_windows(&self) -> usize {
        match &self.parts {
            None => self.windows.values().map(Cards::len).sum(),
            Some(parts) => parts
                .values()
                .flat_map(|p| p.windows.values())
                .map(Cards::len)
                .sum(),
        }
    }

    /// Folds one batch of (partition, event_time, card_id, amount) rows in: per partition when
    /// the state is ([`Self::by_partition`]), otherwise as [`Self::apply`] (the partition unused).
    pub fn apply_from<'a>(
        &mut self,
        rows: impl IntoIterator<Item = (i32, i64, Option<&'a str>, Option<f64>)>,
    ) -> WindowBatch {
        if self.parts.is_none() {
            return self.apply(rows.into_iter().map(|(_, t, c, a)| (t, c, a)));
        }
        let (window, delay, mode) = (self.window, self.delay, self.mode);
        let parts = self.parts.get_or_insert_with(BTreeMap::new);
        let mut late = 0;
        let mut changed: BTreeSet<(i32, i64, Option<&'a str>)> = BTreeSet::new();
        let mut touched: BTreeSet<i32> = BTreeSet::new();
        // Rows come in (partition, offset) order: one map lookup per partition, not per row.
        let mut current: Option<(i32, &mut Part)> = None;
        for (partition, event_time, card, amount) in rows {
            if current.as_ref().is_none_or(|(p, _)| *p != partition) {
                touched.insert(partition);
                current = Some((partition, parts.entry(partition).or_default()));
            }
            let Some((_, part)) = current.as_mut() else {
                continue;
            };
            let start = event_time.div_euclid(window) * window;
            if part
                .max_event_time
                .is_some_and(|m| start + window <= m - delay)
            {
                late += 1;
                part.late_total += 1;
                continue;
            }
            part.max_event_time = Some(
                part.max_event_time
                    .map_or(event_time, |m| m.max(event_time)),
            );
            part.windows.entry(start).or_default().add(card, amount);
            if mode == OutputMode::Update {
                changed.insert((partition, start, card));
            }
        }
        self.late_total += late;
        let row = |start: i64, card: Option<&str>, agg: &Aggregate| WindowRow {
            window_start: start,
            window_end: start + window,
            key: card.map(str::to_owned),
            agg: *agg,
        };
        let mut out = Vec::new();
        for &(partition, start, card) in &changed {
            if let Some(agg) = parts
                .get(&partition)
                .and_then(|p| p.windows.get(&start))
                .and_then(|w| w.get(card))
            {
                out.push(row(start, card, agg));
            }
        }
        for partition in touched {
            let Some(part) = parts.get_mut(&partition) else {
                continue;
            };
            let Some(wm) = part.watermark(delay) else {
                continue;
            };
            let open = part.windows.split_off(&(wm - window + 1));
            let closed = std::mem::replace(&mut part.windows, open);
            if mode == OutputMode::Append {
                for (start, cards) in &closed {
                    out.extend(cards.iter().map(|(card, agg)| row(*start, card, agg)));
                }
            }
        }
        WindowBatch {
            name: self.name,
            rows: out,
            late,
            watermark: self.watermark(),
        }
    }

    /// Folds one batch of (event_time, card_id, amount) rows in, advances the watermark, and
    /// returns the rows to write for this batch.
    pub fn apply<'a>(
        &mut self,
        rows: impl IntoIterator<Item = (i64, Option<&'a str>, Option<f64>)>,
    ) -> WindowBatch {
        let in_force = self.watermark;
        let mut late = 0;
        let mut changed: BTreeSet<(i64, Option<&'a str>)> = BTreeSet::new();
        let mut max_seen = self.max_event_time;
        // Consecutive rows mostly fall in the same window: one lookup for a run.
        let mut current: Option<(i64, &mut Cards)> = None;
        for (event_time, card, amount) in rows {
            max_seen = Some(max_seen.map_or(event_time, |m| m.max(event_time)));
            let start = event_time.div_euclid(self.window) * self.window;
            if in_force.is_some_and(|wm| start + self.window <= wm) {
                late += 1;
                continue;
            }
            if current.as_ref().is_none_or(|(s, _)| *s != start) {
                current = Some((start, self.windows.entry(start).or_default()));
            }
            if let Some((_, cards)) = current.as_mut() {
                cards.add(card, amount);
            }
            if self.mode == OutputMode::Update {
                changed.insert((start, card));
            }
        }
        self.max_event_time = max_seen;
        let basis = self.upstream.unwrap_or(max_seen);
        if let Some(candidate) = basis.map(|m| m - self.delay) {
            self.watermark = Some(self.watermark.map_or(candidate, |w| w.max(candidate)));
        }
        self.late_total += late;

        let row = |start: i64, card: Option<&str>, agg: &Aggregate| WindowRow {
            window_start: start,
            window_end: start + self.window,
            key: card.map(str::to_owned),
            agg: *agg,
        };
        let mut out = Vec::new();
        if self.mode == OutputMode::Update {
            for &(start, card) in &changed {
                if let Some(agg) = self.windows.get(&start).and_then(|w| w.get(card)) {
                    out.push(row(start, card, agg));
                }
            }
        }
        if let Some(wm) = self.watermark {
            // Windows are ordered by start: the closed ones (end <= watermark) are a prefix.
            let open = self.windows.split_off(&(wm - self.window + 1));
            let closed = std::mem::replace(&mut self.windows, open);
            if self.mode == OutputMode::Append {
                for (start, cards) in &closed {
                    out.extend(cards.iter().map(|(card, agg)| row(*start, card, agg)));
                }
            }
            if !closed.is_empty() {
                crate::os::drop_aside(closed);
            }
        }
        WindowBatch {
            name: self.name,
            rows: out,
            late,
            watermark: self.watermark,
        }
    }

    /// The state as a snapshot (postcard): windows in start then key order, so the bytes do not
    /// depend on the order rows came in.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode(
            &self.windows,
            self.max_event_time,
            self.watermark,
            self.late_total,
        )
    }

    fn encode(
        &self,
        windows: &BTreeMap<i64, Cards>,
        max_event_time: Option<i64>,
        watermark: Option<i64>,
        late_total: u64,
    ) -> Vec<u8> {
        let clock = Clock {
            max_event_time,
            watermark,
            late_total,
        };
        let entries = windows
            .iter()
            .flat_map(|(start, cards)| cards.iter().map(move |(c, a)| (*start, c, *a)))
            .collect();
        encode_windows(self.window, self.delay, clock, entries)
    }

    /// Reads a snapshot of windows of these settings.
    fn decode(&self, bytes: &[u8]) -> Result<(Part, Option<i64>), String> {
        let (clock, entries) = decode_windows(bytes, self.window, self.delay)?;
        let mut windows: BTreeMap<i64, Cards> = BTreeMap::new();
        for (start, key, agg) in entries {
            windows
                .entry(start)
                .or_default()
                .set(key.map(str::to_owned), agg);
        }
        let part = Part {
            windows,
            max_event_time: clock.max_event_time,
            late_total: clock.late_total,
        };
        Ok((part, clock.watermark))
    }

    /// Restores a snapshot written by [`TumblingWindows::to_bytes`] into windows of these settings.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let (part, watermark) = self.decode(bytes)?;
        self.max_event_time = part.max_event_time;
        self.watermark = watermark;
        self.late_total = part.late_total;
        self.windows = part.windows;
        Ok(())
    }

    /// One input partition's state, as a snapshot (scale-out).
    pub fn partition_bytes(&self, partition: i32) -> Vec<u8> {
        let empty = Part::default();
        let part = self
            .parts
            .as_ref()
            .and_then(|parts| parts.get(&partition))
            .unwrap_or(&empty);
        self.encode(
            &part.windows,
            part.max_event_time,
            part.watermark(self.delay),
            part.late_total,
        )
    }
}

impl Derived for WindowBatch {
    fn late(&self) -> u64 {
        self.late
    }

    fn late_by_operator(&self) -> Vec<(&'static str, u64)> {
        vec![(self.name, self.late)]
    }

    fn watermark(&self) -> Option<i64> {
        self.watermark
    }
}

impl Operator for TumblingWindows {
    fn name(&self) -> &'static str {
        self.name
    }

    fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    fn snapshot(&self) -> Vec<u8> {
        self.to_bytes()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        TumblingWindows::restore(self, bytes)
    }

    fn by_partition(&self) -> bool {
        self.is_by_partition()
    }

    fn snapshot_partition(&self, partition: i32) -> Vec<u8> {
        self.partition_bytes(partition)
    }

    fn restore_partition(&mut self, partition: i32, bytes: &[u8]) -> Result<(), String> {
        let (part, _) = self.decode(bytes)?;
        self.parts
            .get_or_insert_with(BTreeMap::new)
            .insert(partition, part);
        Ok(())
    }

    fn drop_partition(&mut self, partition: i32) {
        if let Some(parts) = &mut self.parts {
            parts.remove(&partition);
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot<'a> {
    /// The settings the state was built with (microseconds).
    window: i64,
    delay: i64,
    max_event_time: Option<i64>,
    watermark: Option<i64>,
    late_total: u64,
    #[serde(borrow)]
    entries: Vec<(i64, Option<&'a str>, Aggregate)>,
}

/// One (window start, key, aggregate) of a snapshot.
pub(crate) type Entry<'a> = (i64, Option<&'a str>, Aggregate);

/// Where windows' event time stands, as their snapshot keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Clock {
    /// The largest event time so far.
    pub max_event_time: Option<i64>,
    pub watermark: Option<i64>,
    /// Late rows over the life of the checkpoint.
    pub late_total: u64,
}

/// Windows of `window` microseconds with a watermark `delay` behind, as a snapshot (postcard);
/// `entries` (start, key, aggregate) in start then key order, so the bytes do not depend on the
/// order rows came in. Shared by the operators that keep such windows.
pub(crate) fn encode_windows(
    window: i64,
    delay: i64,
    clock: Clock,
    entries: Vec<Entry<'_>>,
) -> Vec<u8> {
    let snapshot = Snapshot {
        window,
        delay,
        max_event_time: clock.max_event_time,
        watermark: clock.watermark,
        late_total: clock.late_total,
        entries,
    };
    // Numbers, strings and options: encoding them cannot fail.
    postcard::to_allocvec(&snapshot).unwrap_or_default()
}

/// Reads [`encode_windows`]' bytes, refusing those of other settings (windows of two sizes would
/// mix).
pub(crate) fn decode_windows(
    bytes: &[u8],
    window: i64,
    delay: i64,
) -> Result<(Clock, Vec<Entry<'_>>), String> {
    let (snapshot, rest): (Snapshot<'_>, _) =
        postcard::take_from_bytes(bytes).map_err(|e| format!("not a window snapshot: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the snapshot".into());
    }
    if (snapshot.window, snapshot.delay) != (window, delay) {
        return Err(format!(
            "its windows are {} s with a watermark delay of {} s, the settings now say {} s and {} s: windows of two sizes would mix; use the old settings or a new checkpoint folder",
            snapshot.window as f64 / 1e6,
            snapshot.delay as f64 / 1e6,
            window as f64 / 1e6,
            delay as f64 / 1e6
        ));
    }
    let clock = Clock {
        max_event_time: snapshot.max_event_time,
        watermark: snapshot.watermark,
        late_total: snapshot.late_total,
    };
    Ok((clock, snapshot.entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;
    const T: i64 = 1_762_500_600_000_000; // 2025-11-07T07:30:00Z, a minute boundary

    fn state(mode: OutputMode) -> TumblingWindows {
        TumblingWindows::new("gold", MIN, 5 * MIN, mode)
    }

    /// (window index from T, card, count, sum, max)
    type Summary<'a> = (i64, &'a str, u64, Option<f64>, Option<f64>);

    fn summary(rows: &[WindowRow]) -> Vec<Summary<'_>> {
        rows.iter()
            .map(|r| {
                (
                    (r.window_start - T) / MIN,
                    r.key.as_deref().unwrap_or("-"),
                    r.agg.count,
                    r.agg.sum(),
                    r.agg.max(),
                )
            })
            .collect()
    }

    #[test]
    fn a_row_on_a_boundary_belongs_to_the_window_it_starts() {
        let mut g = state(OutputMode::Append);
        g.apply([
            (T + MIN - 1, Some("a"), Some(1.0)),
            (T + MIN, Some("a"), Some(2.0)),
        ]);
        let out = g.apply([(T + 20 * MIN, Some("a"), Some(0.0))]);
        assert_eq!(
            summary(&out.rows),
            vec![
                (0, "a", 1, Some(1.0), Some(1.0)),
                (1, "a", 1, Some(2.0), Some(2.0))
            ]
        );
        assert_eq!(out.rows[0].window_end, T + MIN);
    }

    #[test]
    fn a_window_is_emitted_once_only_after_the_watermark_passes_its_end() {
        let mut g = state(OutputMode::Append);
        // Window [0,1) min. Max event 5:59 → watermark 0:59: not yet closed.
        let out = g.apply([
            (T + 30_000_000, Some("a"), Some(10.0)),
            (T + 6 * MIN - 1, Some("b"), Some(1.0)),
        ]);
        assert!(out.rows.is_empty());
        assert_eq!(out.watermark, Some(T + MIN - 1));
        // Max event 6:00 → watermark 1:00 = the window's end: emitted now.
        let out = g.apply([(T + 6 * MIN, Some("b"), Some(1.0))]);
        assert_eq!(
            summary(&out.rows),
            vec![(0, "a", 1, Some(10.0), Some(10.0))]
        );
        // And never again.
        let out = g.apply([(T + 6 * MIN + 1, Some("b"), Some(1.0))]);
        assert!(out.rows.is_empty());
        assert_eq!(g.open_windows(), 2);
    }

    #[test]
    fn out_of_order_rows_within_the_delay_count_and_a_late_row_is_dropped_and_counted() {
        let mut g = state(OutputMode::Append);
        g.apply([(T + 10 * MIN, Some("a"), Some(1.0))]); // watermark 5:00
                                                         // 5:30 is behind the max but within the delay: counts. 4:59 ends at 5:00 <= 5:00: late.
        let out = g.apply([
            (T + 5 * MIN + 30_000_000, Some("a"), Some(2.0)),
            (T + 4 * MIN + 59_000_000, Some("a"), Some(3.0)),
        ]);
        assert_eq!(out.late, 1);
        assert_eq!(g.late_total, 1);
        let out = g.apply([(T + 30 * MIN, Some("z"), None)]);
        assert_eq!(
            summary(&out.rows),
            vec![
                (5, "a", 1, Some(2.0), Some(2.0)),
                (10, "a", 1, Some(1.0), Some(1.0))
            ]
        );
    }

    #[test]
    fn the_watermark_never_moves_backwards() {
        let mut g = state(OutputMode::Append);
        g.apply([(T + 20 * MIN, Some("a"), Some(1.0))]);
        assert_eq!(g.watermark(), Some(T + 15 * MIN));
        let out = g.apply([(T + 16 * MIN, Some("a"), Some(1.0))]);
        assert_eq!(out.watermark, Some(T + 15 * MIN));
        assert_eq!(out.late, 0, "16:00 ends after the 15:00 watermark");
    }

    #[test]
    fn several_cards_with_null_amounts_aggregate_separately() {
        let mut g = state(OutputMode::Append);
        g.apply([
            (T, Some("a"), Some(10.0)),
            (T + 1, Some("a"), Some(20.5)),
            (T + 2, Some("a"), None),
            (T + 3, Some("b"), None),
            (T + 4, None, Some(7.0)),
        ]);
        let out = g.apply([(T + 7 * MIN, Some("c"), Some(1.0))]);
        assert_eq!(
            summary(&out.rows),
            vec![
                (0, "-", 1, Some(7.0), Some(7.0)),
                (0, "a", 3, Some(30.5), Some(20.5)),
                (0, "b", 1, None, None)
            ]
        );
        assert_eq!(out.rows[1].agg.avg(), Some(15.25));
    }

    #[test]
    fn update_mode_writes_changed_windows_each_batch() {
        let mut g = state(OutputMode::Update);
        let out = g.apply([(T, Some("a"), Some(1.0)), (T + MIN, Some("b"), Some(2.0))]);
        assert_eq!(
            summary(&out.rows),
            vec![
                (0, "a", 1, Some(1.0), Some(1.0)),
                (1, "b", 1, Some(2.0), Some(2.0))
            ]
        );
        let out = g.apply([(T + 1, Some("a"), Some(3.0))]);
        assert_eq!(summary(&out.rows), vec![(0, "a", 2, Some(4.0), Some(3.0))]);
    }

    #[test]
    fn sums_do_not_depend_on_how_rows_are_split_into_batches() {
        let amounts: Vec<f64> = (0..1000)
            .map(|i| (i as f64 * 37.13) % 4000.0 / 3.0)
            .map(|a| (a * 100.0).round() / 100.0)
            .collect();
        let run = |split: usize| {
            let mut g = state(OutputMode::Append);
            for chunk in amounts.chunks(split) {
                g.apply(chunk.iter().map(|&a| (T, Some("a"), Some(a))));
            }
            g.apply([(T + 10 * MIN, Some("x"), None)]).rows[0]
                .agg
                .sum()
                .unwrap()
        };
        assert_eq!(run(1000).to_bits(), run(7).to_bits());
        assert_eq!(run(1).to_bits(), run(333).to_bits());
    }

    #[test]
    fn state_stays_bounded_by_the_watermark_over_a_long_steady_run() {
        // 100 cards, 10 rows a second of event time, for 6 hours: 360 one-minute windows pass through.
        let mut g = state(OutputMode::Append);
        let cards: Vec<String> = (100..200).map(|c| format!("card_{c}")).collect();
        let (mut emitted, mut peak) = (0, 0);
        for second in 0..6 * 3600i64 {
            let rows = (0..10).map(|i| {
                (
                    T + second * 1_000_000 + i * 100_000,
                    Some(cards[(second * 10 + i) as usize % 100].as_str()),
                    Some(1.0),
                )
            });
            emitted += g.apply(rows).rows.len();
            peak = peak.max(g.open_windows());
        }
        // At most delay/window + 1 windows of 100 cards are open at any time.
        assert!(peak <= 7 * 100, "peak open aggregates {peak}");
        assert!(emitted >= 350 * 100, "{emitted}");
        assert!(
            g.to_bytes().len() < 7 * 100 * 80,
            "snapshot stays small: {}",
            g.to_bytes().len()
        );
    }

    #[test]
    fn rows_and_snapshots_are_in_card_order_whatever_the_arrival_order() {
        let cards: Vec<String> = (0..200).map(|i| format!("card_{i}")).collect();
        let (mut forward, mut backward) = (state(OutputMode::Append), state(OutputMode::Append));
        forward.apply(cards.iter().map(|c| (T, Some(c.as_str()), Some(1.0))));
        backward.apply(cards.iter().rev().map(|c| (T, Some(c.as_str()), Some(1.0))));
        assert_eq!(forward.to_bytes(), backward.to_bytes());
        let out = backward.apply([(T + 7 * MIN, None, None)]);
        let order: Vec<&str> = out.rows.iter().filter_map(|r| r.key.as_deref()).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order.len(), 200);
        assert_eq!(order, sorted);
    }

    #[test]
    fn a_snapshot_restores_the_same_state() {
        let mut g = state(OutputMode::Append);
        g.apply([
            (T, Some("a"), Some(1.25)),
            (T + 2 * MIN, None, None),
            (T + 3 * MIN, Some("b"), Some(1e300)),
        ]);
        let bytes = g.to_bytes();
        let mut back = state(OutputMode::Append);
        back.restore(&bytes).unwrap();
        assert_eq!(back, g);
        assert!(back.restore(&bytes[..bytes.len() - 1]).is_err());
        assert!(back.restore(b"nonsense").is_err());
        let mut other = TumblingWindows::new("gold", 2 * MIN, 5 * MIN, OutputMode::Append);
        let err = other.restore(&bytes).unwrap_err();
        assert!(err.contains("windows are 60 s"), "{err}");
    }

    /// A small deterministic generator for the tests below (no dependency needed).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    type Rows = Vec<(i32, i64, String, f64)>;

    /// Three partitions of out-of-order rows (some late by any rule), cards per partition.
    fn partitions_of_rows(seed: u64) -> Vec<Rows> {
        let mut rng = Rng(seed);
        (0..3)
            .map(|p| {
                let mut t = T;
                (0..400)
                    .map(|_| {
                        t += rng.below(20) as i64 * 1_000_000;
                        // Now and then a row from well before: within the delay or late.
                        let event = t - rng.below(12) as i64 * rng.below(2) as i64 * MIN;
                        let card = format!("p{p}c{}", rng.below(5));
                        (p, event, card, rng.below(10_000) as f64 / 100.0)
                    })
                    .collect()
            })
            .collect()
    }

    /// Feeds `parts` through windows in batches cut at random and interleaved at random, the
    /// partitions moving between two instances (snapshot, drop, restore) now and then. Returns
    /// every row written (append mode: each window once) sorted, and the late count.
    fn run_by_partition(parts: &[Rows], seed: u64) -> (Vec<(i64, String, u64, i128)>, u64) {
        let mut rng = Rng(seed);
        let fresh = || state(OutputMode::Append).by_partition();
        let mut instances = [fresh(), fresh()];
        let mut owner: Vec<usize> = (0..parts.len()).map(|p| p % 2).collect();
        let mut next = vec![0usize; parts.len()];
        let (mut out, mut late) = (Vec::new(), 0);
        while next.iter().zip(parts).any(|(n, rows)| *n < rows.len()) {
            // A partition moves: its state goes with it.
            let p = rng.below(parts.len() as u64) as usize;
            if rng.below(4) == 0 {
                let (from, to) = (owner[p], 1 - owner[p]);
                let bytes = instances[from].snapshot_partition(p as i32);
                instances[from].drop_partition(p as i32);
                instances[to].restore_partition(p as i32, &bytes).unwrap();
                owner[p] = to;
            }
            for (i, instance) in instances.iter_mut().enumerate() {
                // A batch: a random cut of each partition this instance owns, in partition order.
                let mut batch = Vec::new();
                for (p, rows) in parts.iter().enumerate().filter(|(p, _)| owner[*p] == i) {
                    let take = (rng.below(60) as usize).min(rows.len() - next[p]);
                    batch.extend(&rows[next[p]..next[p] + take]);
                    next[p] += take;
                }
                let result = instance.apply_from(
                    batch
                        .iter()
                        .map(|(p, t, c, a)| (*p, *t, Some(c.as_str()), Some(*a))),
                );
                late += result.late;
                out.extend(result.rows.into_iter().map(|r| {
                    (
                        r.window_start,
                        r.key.unwrap_or_default(),
                        r.agg.count,
                        r.agg.fixed_sum.unwrap_or(0),
                    )
                }));
            }
        }
        out.sort();
        (out, late)
    }

    #[test]
    fn by_partition_the_rows_written_depend_only_on_each_partitions_records() {
        let parts = partitions_of_rows(0x9e37_79b9_7f4a_7c15);
        let (reference, late) = run_by_partition(&parts, 1);
        assert!(late > 0, "the data has late rows");
        assert!(
            reference.len() > 50,
            "windows were closed and written: {}",
            reference.len()
        );
        for seed in 2..30 {
            assert_eq!(
                run_by_partition(&parts, seed),
                (reference.clone(), late),
                "cut and moved differently (seed {seed})"
            );
        }
        // The same rows through one instance owning everything, in one batch per partition.
        let mut one = state(OutputMode::Append).by_partition();
        let mut rows = Vec::new();
        let mut late_one = 0;
        for part in &parts {
            let r = one.apply_from(
                part.iter()
                    .map(|(p, t, c, a)| (*p, *t, Some(c.as_str()), Some(*a))),
            );
            late_one += r.late;
            rows.extend(r.rows.into_iter().map(|r| {
                (
                    r.window_start,
                    r.key.unwrap_or_default(),
                    r.agg.count,
                    r.agg.fixed_sum.unwrap_or(0),
                )
            }));
        }
        rows.sort();
        assert_eq!((rows, late_one), (reference, late));
    }

    #[test]
    fn by_partition_a_row_is_late_against_its_own_partition_and_the_watermark_is_the_smallest() {
        let mut g = state(OutputMode::Append).by_partition();
        // Partition 0 is 20 minutes ahead of partition 1.
        g.apply_from([
            (0, T + 20 * MIN, Some("a"), Some(1.0)),
            (1, T, Some("b"), Some(1.0)),
        ]);
        assert_eq!(
            g.watermark(),
            Some(T - 5 * MIN),
            "the smallest partition watermark"
        );
        // A row of partition 1 at T+1 s is on time there; the same time in partition 0 is late.
        let out = g.apply_from([
            (0, T + 1_000_000, Some("a"), Some(1.0)),
            (1, T + 1_000_000, Some("b"), Some(1.0)),
        ]);
        assert_eq!(out.late, 1);
        // Partition 1's window closes only when partition 1 moves on.
        assert!(out.rows.is_empty(), "{:?}", out.rows);
        let out = g.apply_from([(1, T + 7 * MIN, Some("b"), Some(1.0))]);
        assert_eq!(summary(&out.rows), vec![(0, "b", 2, Some(2.0), Some(1.0))]);
        // Within one partition, lateness follows the rows' order, not the batch's start.
        let out = g.apply_from([
            (1, T + 30 * MIN, Some("b"), Some(1.0)),
            (1, T + 20 * MIN, Some("b"), Some(1.0)),
        ]);
        assert_eq!(
            out.late, 1,
            "late against the row before it in the same batch"
        );
        let bytes = g.snapshot_partition(1);
        let mut moved = state(OutputMode::Append).by_partition();
        moved.restore_partition(1, &bytes).unwrap();
        assert_eq!(moved.watermark(), Some(T + 25 * MIN));
        assert_eq!(moved.open_windows(), 1);
    }
}
