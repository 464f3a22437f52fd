//! Seed 002's fraud rules, per user, with state across batches, judging each transaction in the
//! batch that reads it (as seed 002's `mapGroupsWithState` does).
//!
//! A batch's transactions are judged in the order of its plan: partition by partition, each in
//! offset order. A user's purchases share a key (their card) and so a partition, so a user's are
//! judged in the order Kafka holds them, whatever the batches' cuts: a re-run batch, or a run cut
//! into other batches after a crash, raises the same alerts. A transaction at or before the
//! watermark in force when its batch started (the largest event time seen, less the delay) is
//! late: counted, not judged (its session may have ended already).
//!
//! A transaction older than the user's latest (out of event-time order, within the watermark) is
//! judged against the user's state as it stands: the travel rules compare it with the latest
//! purchase (`time_diff_seconds` is then negative, the speed taken over its absolute value); it
//! counts in the burst windows that are still open (those ending after the latest purchase); it
//! counts towards `FRAUD_RISK` in the session; the latest purchase stays the user's last time and
//! place.
//!
//! The rules, for a user's transaction after their previous one in the same session (`dt`
//! seconds, `d` km apart by haversine on a 6,371 km sphere):
//! - `IMPOSSIBLE_TRAVEL`: `|dt| > 0` and `d / |dt| * 3600 > 800` km/h;
//! - `LARGE_AMOUNT`: `amount > 10000`;
//! - `RAPID_LOCATION_CHANGE`: `|dt| < 60` and `d > 50`;
//! - `BURST`: the sixth transaction of the user in a sliding window of 1 minute sliding by 30 s
//!   (windows `[k·30 s, k·30 s + 60 s)`), once per window, on the transaction that makes it six;
//! - `FRAUD_RISK`: the user's third and each later transaction above 5000 in their session;
//! - `SESSION_TIMEOUT`: no transaction of the user for 10 minutes of event time ends the session
//!   and drops its state (when the user's next transaction comes 10 minutes or more after their
//!   latest, or when the watermark passes the latest by 10 minutes); raised when the session had
//!   a transaction above 5000 (a clean session ends silently, so clean traffic raises nothing).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::engine::operator::Operator;

pub const EARTH_RADIUS_KM: f64 = 6371.0;
pub const MAX_SPEED_KMH: f64 = 800.0;
pub const LARGE_AMOUNT: f64 = 10_000.0;
pub const RAPID_SECONDS: f64 = 60.0;
pub const RAPID_KM: f64 = 50.0;
pub const BURST_WINDOW_MICROS: i64 = 60_000_000;
pub const BURST_SLIDE_MICROS: i64 = 30_000_000;
/// More than this many transactions in a burst window raise `BURST`.
pub const BURST_LIMIT: u32 = 5;
pub const RISKY_AMOUNT: f64 = 5_000.0;
/// The `RISKY_AMOUNT` transactions of a session from which `FRAUD_RISK` is raised.
pub const RISKY_COUNT: u32 = 3;
pub const SESSION_GAP_MICROS: i64 = 600_000_000;

/// What a rule needs of a transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Txn {
    pub event_time: i64,
    /// Kafka coordinates: the tie-break of equal event times.
    pub partition: i32,
    pub offset: i64,
    pub user_id: String,
    pub txn_id: String,
    pub amount: Option<f64>,
    pub currency: Option<String>,
    pub merchant: Option<String>,
    pub category: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

/// [`Txn`] borrowed from the batch's records: the rules judge these, and copy one into a
/// [`Txn`] only for an alert (five strings a transaction were most of the rules' allocations).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TxnRef<'a> {
    pub event_time: i64,
    pub partition: i32,
    pub offset: i64,
    pub user_id: &'a str,
    pub txn_id: &'a str,
    pub amount: Option<f64>,
    pub currency: Option<&'a str>,
    pub merchant: Option<&'a str>,
    pub category: Option<&'a str>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

impl TxnRef<'_> {
    pub fn to_txn(&self) -> Txn {
        Txn {
            event_time: self.event_time,
            partition: self.partition,
            offset: self.offset,
            user_id: self.user_id.to_string(),
            txn_id: self.txn_id.to_string(),
            amount: self.amount,
            currency: self.currency.map(str::to_string),
            merchant: self.merchant.map(str::to_string),
            category: self.category.map(str::to_string),
            lat: self.lat,
            lon: self.lon,
        }
    }
}

/// What [`FraudRules::apply`] judges: a transaction, owned or borrowed.
pub trait Judged {
    fn judged(&self) -> TxnRef<'_>;
}

impl Judged for Txn {
    fn judged(&self) -> TxnRef<'_> {
        TxnRef {
            event_time: self.event_time,
            partition: self.partition,
            offset: self.offset,
            user_id: &self.user_id,
            txn_id: &self.txn_id,
            amount: self.amount,
            currency: self.currency.as_deref(),
            merchant: self.merchant.as_deref(),
            category: self.category.as_deref(),
            lat: self.lat,
            lon: self.lon,
        }
    }
}

impl Judged for TxnRef<'_> {
    fn judged(&self) -> TxnRef<'_> {
        *self
    }
}

/// One alert: the rule, the transaction (absent for `SESSION_TIMEOUT`) and the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub alert_type: &'static str,
    pub user_id: String,
    /// When the rule fired, in event time: the transaction's, or the session's end.
    pub alert_time: i64,
    pub txn: Option<Txn>,
    pub distance_km: Option<f64>,
    pub time_diff_seconds: Option<f64>,
    pub velocity_kmh: Option<f64>,
    pub count_in_window: Option<u32>,
    pub window_start: Option<i64>,
    pub window_end: Option<i64>,
    pub large_count: Option<u32>,
    pub message: String,
}

impl Alert {
    fn new(alert_type: &'static str, user_id: &str, alert_time: i64, message: String) -> Self {
        Alert {
            alert_type,
            user_id: user_id.to_string(),
            alert_time,
            txn: None,
            distance_km: None,
            time_diff_seconds: None,
            velocity_kmh: None,
            count_in_window: None,
            window_start: None,
            window_end: None,
            large_count: None,
            message,
        }
    }
}

/// A user's session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct UserState {
    /// The previous transaction: event time, and where, when it said.
    last_time: i64,
    last_place: Option<(f64, f64)>,
    /// Transactions above `RISKY_AMOUNT` in the session.
    large_count: u32,
    /// Transactions per burst window (by start, ascending) that can still grow: two or three
    /// at a time, in a vector (a map's node per user cost more than the rule); written as the
    /// map it was.
    #[serde(with = "burst_windows")]
    windows: Vec<(i64, u32)>,
}

/// [`UserState::windows`] in the snapshot: a map of start to count, as when it was one.
mod burst_windows {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(windows: &[(i64, u32)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(windows.iter().map(|(start, n)| (start, n)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(i64, u32)>, D::Error> {
        Ok(BTreeMap::<i64, u32>::deserialize(d)?.into_iter().collect())
    }
}

/// The rules' state and watermark; saved with every batch commit.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FraudRules {
    delay: i64,
    watermark: Option<i64>,
    max_event_time: Option<i64>,
    /// Transactions a checkpoint of the earlier rules (which waited for the watermark) left
    /// waiting, by (event time, partition, offset): judged first at the next batch. Kept so that
    /// the snapshot's layout, and so those checkpoints, stay readable.
    pending: BTreeMap<(i64, i32, i64), Txn>,
    /// aHash: SipHash was a visible share of a profile of the rules.
    users: HashMap<String, UserState, ahash::RandomState>,
    /// Late transactions over the life of the checkpoint.
    pub late_total: u64,
    /// `Some`: the watermark follows this largest event time upstream (scale-out's second
    /// stage: the smallest of the input partitions'), not the transactions' own; `Some(None)`
    /// until every input partition has one. Not in the snapshot (set before each batch).
    #[serde(skip)]
    upstream: Option<Option<i64>>,
}

/// What one batch did to the rules.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FraudBatch {
    pub alerts: Vec<Alert>,
    pub late: u64,
}

/// Great-circle distance in km (haversine, radius 6,371 km).
pub fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

impl FraudRules {
    /// Rules whose watermark trails the largest event time by `delay_micros`.
    pub fn new(delay_micros: i64) -> Self {
        FraudRules {
            delay: delay_micros.max(0),
            ..FraudRules::default()
        }
    }

    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// The watermark follows `max` (less the delay) from now on, not the transactions' event
    /// times (`None`: it stays where it is).
    pub fn follow_upstream(&mut self, max: Option<i64>) {
        self.upstream = Some(max);
    }

    /// Judges a batch's transactions in the order of its plan (sorted here by partition and
    /// offset), then advances the watermark and ends the sessions it has passed. Returns the
    /// alerts in the order they were raised.
    pub fn apply<T: Judged>(&mut self, txns: impl IntoIterator<Item = T>) -> FraudBatch {
        let in_force = self.watermark;
        let mut alerts = Vec::new();
        for (_, t) in std::mem::take(&mut self.pending) {
            self.evaluate(t.judged(), &mut alerts);
        }
        let mut txns: Vec<T> = txns.into_iter().collect();
        txns.sort_by_key(|t| {
            let t = t.judged();
            (t.partition, t.offset)
        });
        let mut late = 0;
        for t in &txns {
            let t = t.judged();
            self.max_event_time = Some(
                self.max_event_time
                    .map_or(t.event_time, |m| m.max(t.event_time)),
            );
            if in_force.is_some_and(|wm| t.event_time <= wm) {
                late += 1;
                continue;
            }
            self.evaluate(t, &mut alerts);
        }
        self.late_total += late;
        let basis = self.upstream.unwrap_or(self.max_event_time);
        if let Some(candidate) = basis.map(|m| m - self.delay) {
            self.watermark = Some(self.watermark.map_or(candidate, |w| w.max(candidate)));
        }
        let Some(wm) = self.watermark else {
            return FraudBatch { alerts, late };
        };
        // Sessions the watermark has ended, in the order they ended.
        let mut ended: Vec<(i64, String)> = self
            .users
            .iter()
            .filter(|(_, s)| s.last_time + SESSION_GAP_MICROS <= wm)
            .map(|(u, s)| (s.last_time + SESSION_GAP_MICROS, u.clone()))
            .collect();
        ended.sort();
        for (_, user) in ended {
            if let Some(state) = self.users.remove(&user) {
                end_session(&user, &state, &mut alerts);
            }
        }
        FraudBatch { alerts, late }
    }

    fn evaluate(&mut self, t: TxnRef<'_>, alerts: &mut Vec<Alert>) {
        let user = t.user_id;
        // Two lookups (a map entry would copy the name for every transaction).
        let mut fresh = !self.users.contains_key(user);
        if fresh {
            self.users.insert(user.to_string(), UserState::default());
        }
        let Some(state) = self.users.get_mut(user) else {
            return;
        };
        // A gap of 10 minutes or more ends the previous session first.
        if !fresh && t.event_time - state.last_time >= SESSION_GAP_MICROS {
            end_session(user, state, alerts);
            *state = UserState::default();
            fresh = true;
        }
        let place = t.lat.zip(t.lon);
        // Only the previous transaction's time and place are needed (not a copy of the state).
        let previous = (!fresh).then_some((state.last_time, state.last_place));
        let alert = |kind: &'static str, message: String| {
            let mut a = Alert::new(kind, user, t.event_time, message);
            a.txn = Some(t.to_txn());
            a
        };

        if let Some((prev_time, prev_place)) = previous {
            // Negative for a transaction older than the user's latest.
            let dt = (t.event_time - prev_time) as f64 / 1e6;
            if let (Some(here), Some(there)) = (place, prev_place) {
                let d = haversine_km(there, here);
                let v = if dt != 0.0 {
                    d / dt.abs() * 3600.0
                } else {
                    0.0
                };
                let figures = |mut a: Alert| {
                    a.distance_km = Some(d);
                    a.time_diff_seconds = Some(dt);
                    a.velocity_kmh = Some(v);
                    a
                };
                if dt != 0.0 && v > MAX_SPEED_KMH {
                    alerts.push(figures(alert(
                        "IMPOSSIBLE_TRAVEL",
                        format!("{d:.1} km in {:.0} s = {v:.0} km/h", dt.abs()),
                    )));
                }
                if dt.abs() < RAPID_SECONDS && d > RAPID_KM {
                    alerts.push(figures(alert(
                        "RAPID_LOCATION_CHANGE",
                        format!("{d:.1} km in {:.0} s", dt.abs()),
                    )));
                }
            }
        }
        if let Some(amount) = t.amount {
            if amount > LARGE_AMOUNT {
                alerts.push(alert(
                    "LARGE_AMOUNT",
                    format!("amount {amount} > {LARGE_AMOUNT}"),
                ));
            }
            if amount > RISKY_AMOUNT {
                state.large_count += 1;
                if state.large_count >= RISKY_COUNT {
                    let mut a = alert(
                        "FRAUD_RISK",
                        format!("Multiple large transactions: {}", state.large_count),
                    );
                    a.large_count = Some(state.large_count);
                    alerts.push(a);
                }
            }
        }
        // The two sliding windows holding this transaction, those still open: windows that ended
        // before the user's latest transaction are dropped (an older transaction counts in none).
        let latest = previous.map_or(t.event_time, |(prev, _)| prev.max(t.event_time));
        let own = t.event_time.div_euclid(BURST_SLIDE_MICROS) * BURST_SLIDE_MICROS;
        state
            .windows
            .retain(|&(start, _)| start + BURST_WINDOW_MICROS > latest);
        for start in [own - BURST_SLIDE_MICROS, own] {
            if start + BURST_WINDOW_MICROS <= latest {
                continue;
            }
            let at = match state.windows.binary_search_by_key(&start, |(s, _)| *s) {
                Ok(at) => at,
                Err(at) => {
                    state.windows.insert(at, (start, 0));
                    at
                }
            };
            let n = &mut state.windows[at].1;
            *n += 1;
            if *n == BURST_LIMIT + 1 {
                let mut a = alert("BURST", format!("{n} transactions in 1 minute"));
                a.count_in_window = Some(*n);
                a.window_start = Some(start);
                a.window_end = Some(start + BURST_WINDOW_MICROS);
                alerts.push(a);
            }
        }
        if previous.is_none_or(|(prev, _)| t.event_time >= prev) {
            state.last_time = t.event_time;
            state.last_place = place;
        }
    }
}

/// A session's end: an alert when it had a transaction above `RISKY_AMOUNT`.
fn end_session(user: &str, state: &UserState, alerts: &mut Vec<Alert>) {
    if state.large_count > 0 {
        let end = state.last_time + SESSION_GAP_MICROS;
        let mut a = Alert::new(
            "SESSION_TIMEOUT",
            user,
            end,
            format!(
                "session ended after 10 minutes without a transaction; {} above {RISKY_AMOUNT}",
                state.large_count
            ),
        );
        a.large_count = Some(state.large_count);
        alerts.push(a);
    }
}

impl Operator for FraudRules {
    fn name(&self) -> &'static str {
        "fraud_rules"
    }

    fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    fn snapshot(&self) -> Vec<u8> {
        // Maps are sorted before encoding, so the bytes do not depend on hash order.
        let users: BTreeMap<&String, &UserState> = self.users.iter().collect();
        let snapshot = (
            self.delay,
            self.watermark,
            self.max_event_time,
            &self.pending,
            users,
            self.late_total,
        );
        postcard::to_allocvec(&snapshot).unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        type Snapshot = (
            i64,
            Option<i64>,
            Option<i64>,
            BTreeMap<(i64, i32, i64), Txn>,
            BTreeMap<String, UserState>,
            u64,
        );
        let (snapshot, rest): (Snapshot, _) = postcard::take_from_bytes(bytes)
            .map_err(|e| format!("not a fraud rules snapshot: {e}"))?;
        if !rest.is_empty() {
            return Err("trailing bytes after the snapshot".into());
        }
        let (delay, watermark, max_event_time, pending, users, late_total) = snapshot;
        if delay != self.delay {
            return Err(format!(
                "its watermark delay is {} s, the settings now say {} s; use the old setting or a new checkpoint folder",
                delay as f64 / 1e6,
                self.delay as f64 / 1e6
            ));
        }
        self.watermark = watermark;
        self.max_event_time = max_event_time;
        self.pending = pending;
        self.users = users.into_iter().collect();
        self.late_total = late_total;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    const T: i64 = 1_762_500_600 * S; // 2025-11-07T07:30:00Z
    const DELAY: i64 = 300 * S;

    fn txn(user: &str, at: i64, amount: f64, place: (f64, f64)) -> Txn {
        // Offsets are unique, as Kafka's are: two transactions at one instant both count.
        static NEXT_OFFSET: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
        Txn {
            event_time: at,
            partition: 0,
            offset: NEXT_OFFSET.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            user_id: user.into(),
            txn_id: format!("t{at}"),
            amount: Some(amount),
            currency: Some("EUR".into()),
            merchant: Some("Shop".into()),
            category: Some("food".into()),
            lat: Some(place.0),
            lon: Some(place.1),
        }
    }

    /// Runs `txns` through rules and flushes them with a far later transaction of another user.
    fn alerts(txns: Vec<Txn>) -> Vec<(&'static str, String, i64)> {
        let mut rules = FraudRules::new(DELAY);
        let mut out = rules.apply(txns).alerts;
        out.extend(
            rules
                .apply([txn("zz-flush", T + 10_000 * S, 1.0, (0.0, 0.0))])
                .alerts,
        );
        out.into_iter()
            .filter(|a| a.user_id != "zz-flush")
            .map(|a| (a.alert_type, a.user_id, (a.alert_time - T) / S))
            .collect()
    }

    const PARIS: (f64, f64) = (48.8566, 2.3522);

    /// A point `km` east of Paris along its parallel... approximately: found by bisection on
    /// the haversine distance, so the test's distances are exact to the metre.
    fn east_of_paris(km: f64) -> (f64, f64) {
        let (mut lo, mut hi) = (0.0, 90.0);
        for _ in 0..200 {
            let mid = (lo + hi) / 2.0;
            if haversine_km(PARIS, (PARIS.0, PARIS.1 + mid)) < km {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        (PARIS.0, PARIS.1 + lo)
    }

    #[test]
    fn haversine_matches_known_distances() {
        // Paris to London, about 343.5 km on a 6,371 km sphere.
        let d = haversine_km(PARIS, (51.5074, -0.1278));
        assert!((d - 343.5).abs() < 1.0, "{d}");
        assert_eq!(haversine_km(PARIS, PARIS), 0.0);
    }

    #[test]
    fn impossible_travel_fires_above_800_kmh_only() {
        // 120 km in 540 s is exactly 800 km/h: no alert; ten seconds less is faster. (Within
        // the 10-minute session: a longer gap ends the session and drops the previous place.)
        let far = east_of_paris(120.0);
        assert!(alerts(vec![
            txn("u", T, 1.0, PARIS),
            txn("u", T + 540 * S, 1.0, far)
        ])
        .is_empty());
        assert_eq!(
            alerts(vec![
                txn("u", T, 1.0, PARIS),
                txn("u", T + 530 * S, 1.0, far)
            ]),
            vec![("IMPOSSIBLE_TRAVEL", "u".into(), 530)]
        );
        let very_far = east_of_paris(5000.0);
        assert!(
            alerts(vec![
                txn("u", T, 1.0, PARIS),
                txn("u", T + 600 * S, 1.0, very_far)
            ])
            .is_empty(),
            "a new session has no previous transaction"
        );
        // No previous transaction, or the same instant: no alert.
        assert!(alerts(vec![txn("u", T, 1.0, far)]).is_empty());
        assert_eq!(
            alerts(vec![txn("u", T, 1.0, PARIS), txn("u", T, 1.0, far)]),
            vec![("RAPID_LOCATION_CHANGE", "u".into(), 0)],
            "dt = 0: rapid change, but no speed"
        );
    }

    #[test]
    fn large_amount_is_strictly_above_10000() {
        assert!(alerts(vec![txn("u", T, 10_000.0, PARIS)])
            .iter()
            .all(|a| a.0 != "LARGE_AMOUNT"));
        assert_eq!(
            alerts(vec![txn("u", T, 10_000.01, PARIS)])[0],
            ("LARGE_AMOUNT", "u".into(), 0)
        );
    }

    #[test]
    fn rapid_location_change_needs_under_60_s_and_over_50_km() {
        let km51 = east_of_paris(51.0);
        let km49 = east_of_paris(49.0);
        // 51 km in 59 s is also faster than 800 km/h.
        assert_eq!(
            alerts(vec![
                txn("u", T, 1.0, PARIS),
                txn("u", T + 59 * S, 1.0, km51)
            ]),
            vec![
                ("IMPOSSIBLE_TRAVEL", "u".into(), 59),
                ("RAPID_LOCATION_CHANGE", "u".into(), 59)
            ]
        );
        // 60 s is not under 60 s; 49 km is not over 50 km (49 km in 300 s is 588 km/h).
        assert_eq!(
            alerts(vec![
                txn("u", T, 1.0, PARIS),
                txn("u", T + 60 * S, 1.0, km51)
            ]),
            vec![("IMPOSSIBLE_TRAVEL", "u".into(), 60)]
        );
        assert!(alerts(vec![
            txn("u", T, 1.0, PARIS),
            txn("u", T + 300 * S, 1.0, km49)
        ])
        .is_empty());
    }

    #[test]
    fn burst_fires_on_the_sixth_transaction_of_a_sliding_minute_once_per_window() {
        // Five in one window: nothing.
        let five: Vec<Txn> = (0..5)
            .map(|i| txn("u", T + i * 10 * S, 1.0, PARIS))
            .collect();
        assert!(alerts(five.clone()).is_empty());
        // A sixth at 50 s: windows [T-30 s, T+30 s) holds 3, [T, T+60 s) holds 6.
        let mut six = five.clone();
        six.push(txn("u", T + 50 * S, 1.0, PARIS));
        assert_eq!(alerts(six.clone()), vec![("BURST", "u".into(), 50)]);
        // A seventh in the same window does not fire again; one at 75 s makes [T+30 s, T+90 s)
        // hold 4: nothing.
        let mut seven = six;
        seven.push(txn("u", T + 55 * S, 1.0, PARIS));
        seven.push(txn("u", T + 75 * S, 1.0, PARIS));
        assert_eq!(alerts(seven), vec![("BURST", "u".into(), 50)]);
    }

    #[test]
    fn fraud_risk_from_the_third_large_amount_of_a_session_and_the_session_ends_after_10_minutes() {
        let risky = |at: i64| txn("u", T + at * S, 6000.0, PARIS);
        assert_eq!(
            alerts(vec![risky(0), risky(60), risky(120), risky(180)]),
            vec![
                ("FRAUD_RISK", "u".into(), 120),
                ("FRAUD_RISK", "u".into(), 180),
                ("SESSION_TIMEOUT", "u".into(), 780)
            ]
        );
        // A gap of exactly 10 minutes ends the session: the count starts again.
        assert_eq!(
            alerts(vec![risky(0), risky(60), risky(660), risky(700)]),
            vec![
                ("SESSION_TIMEOUT", "u".into(), 660),
                ("SESSION_TIMEOUT", "u".into(), 1300)
            ]
        );
        // 9 min 59 s does not.
        assert_eq!(
            alerts(vec![risky(0), risky(60), risky(659)]),
            vec![
                ("FRAUD_RISK", "u".into(), 659),
                ("SESSION_TIMEOUT", "u".into(), 1259)
            ]
        );
        // A clean session ends silently.
        assert!(alerts(vec![txn("u", T, 10.0, PARIS)]).is_empty());
    }

    #[test]
    fn a_transaction_is_judged_in_the_batch_that_reads_it() {
        let mut rules = FraudRules::new(DELAY);
        let far = east_of_paris(2000.0);
        let out = rules.apply([
            txn("u", T, 1.0, PARIS),
            txn("u", T + 100 * S, 20_000.0, far),
        ]);
        let kinds: Vec<_> = out.alerts.iter().map(|a| a.alert_type).collect();
        assert_eq!(kinds, ["IMPOSSIBLE_TRAVEL", "LARGE_AMOUNT"]);
        // The last purchase of a stream: alerted at once, no later traffic needed.
        let out = rules.apply([txn("u", T + 130 * S, 1.0, PARIS)]);
        assert_eq!(out.alerts.len(), 2, "{:?}", out.alerts);
        assert_eq!(out.alerts[0].alert_type, "IMPOSSIBLE_TRAVEL");
        assert_eq!(out.alerts[1].alert_type, "RAPID_LOCATION_CHANGE");
    }

    #[test]
    fn an_older_transaction_is_judged_against_the_latest_purchase_which_stays_the_latest() {
        let far = east_of_paris(2000.0);
        let mut rules = FraudRules::new(DELAY);
        assert!(rules
            .apply([txn("u", T + 250 * S, 1.0, PARIS)])
            .alerts
            .is_empty());
        // 150 s older and 2000 km away: impossible travel, with a negative time difference.
        let out = rules.apply([txn("u", T + 100 * S, 1.0, far)]).alerts;
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].alert_type, "IMPOSSIBLE_TRAVEL");
        assert_eq!(out[0].time_diff_seconds, Some(-150.0));
        assert!((out[0].velocity_kmh.unwrap() - 48_000.0).abs() < 1.0);
        // The latest purchase is still the one in Paris: a purchase there raises nothing.
        assert!(rules
            .apply([txn("u", T + 260 * S, 1.0, PARIS)])
            .alerts
            .is_empty());
        assert_eq!(rules.late_total, 0);
    }

    #[test]
    fn an_older_transaction_counts_only_in_burst_windows_still_open() {
        let mut rules = FraudRules::new(DELAY);
        // Five in [T, T+60 s), then one at T+200 s: the windows before T+150 s are closed.
        let five: Vec<Txn> = (0..5)
            .map(|i| txn("u", T + i * 10 * S, 1.0, PARIS))
            .collect();
        assert!(rules.apply(five).alerts.is_empty());
        assert!(rules
            .apply([txn("u", T + 200 * S, 1.0, PARIS)])
            .alerts
            .is_empty());
        // A sixth of [T, T+60 s) arriving now counts in no window: no burst.
        assert!(rules
            .apply([txn("u", T + 50 * S, 1.0, PARIS)])
            .alerts
            .is_empty());
        // Within the windows still open it counts: five more around T+200 s make six.
        let more: Vec<Txn> = (1..=4)
            .map(|i| txn("u", T + 200 * S + i * S, 1.0, PARIS))
            .collect();
        assert!(rules.apply(more).alerts.is_empty());
        // T+195 s is in [T+150 s, T+210 s) and [T+180 s, T+240 s), both open and both at six.
        let out = rules.apply([txn("u", T + 195 * S, 1.0, PARIS)]).alerts;
        let fired: Vec<_> = out
            .iter()
            .map(|a| {
                (
                    a.alert_type,
                    a.alert_time,
                    a.window_start.map(|w| (w - T) / S),
                )
            })
            .collect();
        assert_eq!(
            fired,
            [
                ("BURST", T + 195 * S, Some(150)),
                ("BURST", T + 195 * S, Some(180))
            ]
        );
    }

    #[test]
    fn a_users_alerts_do_not_depend_on_where_batches_are_cut() {
        // Six users, each in one partition (their key), buying at jittered times, some out of
        // order, some far away, some large: the same alerts whatever the batches.
        let mut state = 7u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut offsets = [0i64; 3];
        let mut clock = [T; 6];
        let mut stream = Vec::new();
        for _ in 0..600 {
            let u = (next() % 6) as usize;
            let p = (u % 3) as i32;
            clock[u] += (next() % 90) as i64 * S;
            let back = if next() % 10 == 0 {
                (next() % 120) as i64 * S
            } else {
                0
            };
            let place = if next() % 15 == 0 {
                east_of_paris(1500.0)
            } else {
                PARIS
            };
            let amount = if next() % 12 == 0 { 7_000.0 } else { 20.0 };
            let mut t = txn(&format!("u{u}"), clock[u] - back, amount, place);
            t.partition = p;
            t.offset = offsets[p as usize];
            offsets[p as usize] += 1;
            stream.push(t);
        }
        let run = |cut: &mut dyn FnMut() -> usize| {
            let mut rules = FraudRules::new(DELAY * 100);
            let mut got = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let n = cut().clamp(1, rest.len());
                got.extend(rules.apply(rest[..n].to_vec()).alerts);
                rest = &rest[n..];
            }
            got.extend(rules.apply([txn("zz", T + 100_000 * S, 1.0, PARIS)]).alerts);
            let mut keys: Vec<_> = got
                .into_iter()
                .map(|a| {
                    (
                        a.alert_type,
                        a.user_id,
                        a.alert_time,
                        a.txn.map(|t| t.offset),
                    )
                })
                .collect();
            keys.sort();
            keys
        };
        let whole = run(&mut || usize::MAX);
        let kinds: std::collections::BTreeSet<_> = whole.iter().map(|k| k.0).collect();
        assert!(
            kinds.len() >= 4,
            "the stream raises several kinds: {kinds:?}"
        );
        assert_eq!(run(&mut || 1), whole);
        let mut seed = 99u64;
        assert_eq!(
            run(&mut || {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (seed >> 33) as usize % 40
            }),
            whole
        );
    }

    #[test]
    fn transactions_an_earlier_checkpoint_left_waiting_are_judged_at_the_next_batch() {
        let mut rules = FraudRules::new(DELAY);
        let waiting = txn("u", T, 20_000.0, PARIS);
        rules.pending.insert(
            (waiting.event_time, waiting.partition, waiting.offset),
            waiting,
        );
        let mut back = FraudRules::new(DELAY);
        Operator::restore(&mut back, &rules.snapshot()).unwrap();
        let out = back.apply([txn("v", T + S, 1.0, PARIS)]).alerts;
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].alert_type, out[0].user_id.as_str()),
            ("LARGE_AMOUNT", "u")
        );
        assert!(back.pending.is_empty());
    }

    #[test]
    fn a_record_older_than_the_watermark_is_late_counted_and_not_evaluated() {
        let mut rules = FraudRules::new(DELAY);
        rules.apply([txn("a", T + 1000 * S, 1.0, PARIS)]); // watermark T+700 s
        let out = rules.apply([txn("u", T + 700 * S, 20_000.0, PARIS)]);
        assert_eq!(out.late, 1);
        assert!(out.alerts.is_empty());
        let out = rules.apply([txn("u", T + 701 * S, 20_000.0, PARIS)]);
        assert_eq!(out.late, 0);
    }

    #[test]
    fn a_snapshot_restores_the_same_rules_and_refuses_another_delay() {
        let mut rules = FraudRules::new(DELAY);
        rules.apply([
            txn("a", T, 6000.0, PARIS),
            txn("b", T + 400 * S, 1.0, PARIS),
            txn("a", T + 500 * S, 6000.0, PARIS),
        ]);
        let bytes = rules.snapshot();
        let mut back = FraudRules::new(DELAY);
        Operator::restore(&mut back, &bytes).unwrap();
        assert_eq!(back, rules);
        assert_eq!(back.snapshot(), bytes);
        let mut other = FraudRules::new(DELAY * 2);
        assert!(Operator::restore(&mut other, &bytes)
            .unwrap_err()
            .contains("delay"));
    }
}
