//! Seed 002's fraud rules, per user, in event-time order, with state across batches.
//!
//! A transaction waits in a buffer until the watermark (the largest event time seen minus the
//! delay) passes its event time; then the buffered transactions are evaluated in event-time order
//! (ties by Kafka partition and offset). So the alerts do not depend on arrival order or on how
//! records were split into batches, and a re-run batch raises exactly the alerts of its first
//! attempt. A transaction at or before the watermark in force when its batch started is late:
//! counted, not evaluated.
//!
//! The rules, for a user's transaction after their previous one in the same session (`dt`
//! seconds, `d` km apart by haversine on a 6,371 km sphere):
//! - `IMPOSSIBLE_TRAVEL`: `dt > 0` and `d / dt * 3600 > 800` km/h;
//! - `LARGE_AMOUNT`: `amount > 10000`;
//! - `RAPID_LOCATION_CHANGE`: `dt < 60` and `d > 50`;
//! - `BURST`: the sixth transaction of the user in a sliding window of 1 minute sliding by 30 s
//!   (windows `[k·30 s, k·30 s + 60 s)`), once per window;
//! - `FRAUD_RISK`: the user's third and each later transaction above 5000 in their session;
//! - `SESSION_TIMEOUT`: no transaction of the user for 10 minutes of event time ends the session
//!   and drops its state; raised when the session had a transaction above 5000 (a clean session
//!   ends silently, so clean traffic raises nothing).

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
    /// Transactions per burst window (by start) that can still grow.
    windows: BTreeMap<i64, u32>,
}

/// The rules' state and watermark; saved with every batch commit.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FraudRules {
    delay: i64,
    watermark: Option<i64>,
    max_event_time: Option<i64>,
    /// Transactions waiting for the watermark, by (event time, partition, offset).
    pending: BTreeMap<(i64, i32, i64), Txn>,
    /// aHash: SipHash was a visible share of a profile of the rules.
    users: HashMap<String, UserState, ahash::RandomState>,
    /// Late transactions over the life of the checkpoint.
    pub late_total: u64,
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

    /// Users with a session and transactions waiting: what the state holds.
    pub fn sizes(&self) -> (usize, usize) {
        (self.users.len(), self.pending.len())
    }

    /// Takes a batch's transactions, advances the watermark, and evaluates every transaction the
    /// watermark has passed, in event-time order. Returns the alerts, in that order.
    pub fn apply(&mut self, txns: impl IntoIterator<Item = Txn>) -> FraudBatch {
        let in_force = self.watermark;
        let mut late = 0;
        for t in txns {
            self.max_event_time = Some(
                self.max_event_time
                    .map_or(t.event_time, |m| m.max(t.event_time)),
            );
            if in_force.is_some_and(|wm| t.event_time <= wm) {
                late += 1;
                continue;
            }
            self.pending
                .insert((t.event_time, t.partition, t.offset), t);
        }
        self.late_total += late;
        if let Some(candidate) = self.max_event_time.map(|m| m - self.delay) {
            self.watermark = Some(self.watermark.map_or(candidate, |w| w.max(candidate)));
        }
        let mut alerts = Vec::new();
        let Some(wm) = self.watermark else {
            return FraudBatch { alerts, late };
        };
        let waiting = self.pending.split_off(&(wm + 1, i32::MIN, i64::MIN));
        let ready = std::mem::replace(&mut self.pending, waiting);
        for (_, t) in ready {
            self.evaluate(t, &mut alerts);
        }
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

    fn evaluate(&mut self, t: Txn, alerts: &mut Vec<Alert>) {
        let user = t.user_id.clone();
        // A gap of 10 minutes or more ends the previous session first.
        if let Some(state) = self.users.get(&user) {
            if t.event_time - state.last_time >= SESSION_GAP_MICROS {
                let state = self.users.remove(&user).unwrap_or_default();
                end_session(&user, &state, alerts);
            }
        }
        let place = t.lat.zip(t.lon);
        // Only the previous transaction's time and place are needed (not a copy of the state).
        let previous = self.users.get(&user).map(|s| (s.last_time, s.last_place));
        if !self.users.contains_key(&user) {
            self.users.insert(user.clone(), UserState::default());
        }
        let Some(state) = self.users.get_mut(&user) else {
            return;
        };
        let alert = |kind: &'static str, message: String| {
            let mut a = Alert::new(kind, &user, t.event_time, message);
            a.txn = Some(t.clone());
            a
        };

        if let Some((prev_time, prev_place)) = previous {
            let dt = (t.event_time - prev_time) as f64 / 1e6;
            if let (Some(here), Some(there)) = (place, prev_place) {
                let d = haversine_km(there, here);
                let v = if dt > 0.0 { d / dt * 3600.0 } else { 0.0 };
                let figures = |mut a: Alert| {
                    a.distance_km = Some(d);
                    a.time_diff_seconds = Some(dt);
                    a.velocity_kmh = Some(v);
                    a
                };
                if dt > 0.0 && v > MAX_SPEED_KMH {
                    alerts.push(figures(alert(
                        "IMPOSSIBLE_TRAVEL",
                        format!("{d:.1} km in {dt:.0} s = {v:.0} km/h"),
                    )));
                }
                if dt < RAPID_SECONDS && d > RAPID_KM {
                    alerts.push(figures(alert(
                        "RAPID_LOCATION_CHANGE",
                        format!("{d:.1} km in {dt:.0} s"),
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
        // The two sliding windows holding this transaction; those ended before it are dropped.
        let newest = t.event_time.div_euclid(BURST_SLIDE_MICROS) * BURST_SLIDE_MICROS;
        state
            .windows
            .retain(|&start, _| start + BURST_WINDOW_MICROS > t.event_time);
        for start in [newest - BURST_SLIDE_MICROS, newest] {
            let n = state.windows.entry(start).or_default();
            *n += 1;
            if *n == BURST_LIMIT + 1 {
                let mut a = alert("BURST", format!("{n} transactions in 1 minute"));
                a.count_in_window = Some(*n);
                a.window_start = Some(start);
                a.window_end = Some(start + BURST_WINDOW_MICROS);
                alerts.push(a);
            }
        }
        state.last_time = t.event_time;
        state.last_place = place;
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
    fn out_of_order_records_within_the_watermark_give_the_alerts_of_the_ordered_stream() {
        let far = east_of_paris(2000.0);
        // Within the 300 s delay of each other: none is late whatever the arrival order.
        let ordered = vec![
            txn("u", T, 1.0, PARIS),
            txn("u", T + 100 * S, 1.0, far),
            txn("u", T + 250 * S, 1.0, PARIS),
        ];
        let expected = alerts(ordered.clone());
        assert_eq!(expected.len(), 2, "{expected:?}");
        // The same records in three batches, in reverse order, each within the delay.
        let mut rules = FraudRules::new(DELAY);
        let mut got = Vec::new();
        for t in ordered.iter().rev() {
            got.extend(rules.apply([t.clone()]).alerts);
        }
        got.extend(
            rules
                .apply([txn("zz-flush", T + 10_000 * S, 1.0, (0.0, 0.0))])
                .alerts,
        );
        let got: Vec<_> = got
            .into_iter()
            .filter(|a| a.user_id != "zz-flush")
            .map(|a| (a.alert_type, a.user_id, (a.alert_time - T) / S))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(rules.late_total, 0);
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
