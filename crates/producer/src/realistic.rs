//! `PRODUCER_PROFILE=realistic`: transactions as people make them, for seed 002's fraud rules.
//!
//! Each user lives in a city and buys within 0.5 km of home every 20 to 300 s of event time (one
//! time in 20 after a break of 15 to 60 minutes, which ends the session), amounts of 1 to 500:
//! clean traffic that none of the rules flags (at most 1 km in 20 s is 180 km/h; at most 3
//! purchases in a minute; no amount above 5000). With
//! `PRODUCER_FRAUD_RATIO`, that share of purchases is replaced by one of the patterns the rules
//! look for, taking turns: a purchase in a far city (impossible travel), an amount above 10,000,
//! a purchase 60 to 200 km away 10 to 40 s after one at home (rapid location change), six
//! purchases in 25 s (burst), three amounts of 5,001 to 9,999 a minute apart (repeated large
//! amounts). A pattern's later purchases are sent at once, up to 2 minutes ahead of the others'
//! event times: out of order, but always within the 5-minute watermark, so none is late. Event
//! times follow the users' schedule from the first clock reading on; with a seed, the stream and
//! its frauds are the same every run.
//!
//! So that each injection is found, and is the only thing found: a pattern is injected only into
//! a live session (the user's previous purchase less than 10 minutes earlier, when the rules still
//! know where they were); a pattern's purchases are never malformed or late; and after a purchase
//! far from home the user pauses 30 to 60 minutes, so their next purchase at home opens a new
//! session instead of looking like travel back.
//! [`RealisticGenerator::injection`] tells which injection the last message belongs to.
//!
//! A late message (`late_ratio`) is a purchase sent 7 to 20 minutes of stream time after it was
//! made, with the time and place it was made (a terminal that was offline): late for the
//! watermark, yet part of a history that holds together. (Moving a purchase's time back instead
//! would put the user 1 km away from themselves a few seconds apart now and then: impossible
//! travel on clean traffic.)

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use txn_core::json::encode;
use txn_core::time::write_python_isoformat;
use txn_core::Transaction;

use crate::generator::{
    break_payload, Kind, MessageGenerator, Rng, BAD_KINDS, CATEGORIES, LATE_MINUTES, MERCHANTS,
};

/// Cities: name, country, currency, latitude, longitude.
const CITIES: [(&str, &str, &str, f64, f64); 12] = [
    ("Paris", "FR", "EUR", 48.8566, 2.3522),
    ("Berlin", "DE", "EUR", 52.52, 13.405),
    ("Madrid", "ES", "EUR", 40.4168, -3.7038),
    ("Mumbai", "IN", "INR", 19.076, 72.8777),
    ("Delhi", "IN", "INR", 28.6139, 77.209),
    ("Bengaluru", "IN", "INR", 12.9716, 77.5946),
    ("New York", "US", "USD", 40.7128, -74.006),
    ("Chicago", "US", "USD", 41.8781, -87.6298),
    ("San Francisco", "US", "USD", 37.7749, -122.4194),
    ("London", "GB", "GBP", 51.5074, -0.1278),
    ("Tokyo", "JP", "JPY", 35.6762, 139.6503),
    ("Sydney", "AU", "AUD", -33.8688, 151.2093),
];

/// The injected patterns, in the order they take turns.
pub const PATTERNS: [&str; 5] = [
    "impossible_travel",
    "large_amount",
    "rapid_location_change",
    "burst",
    "repeated_large",
];

const SECOND: i64 = 1_000_000;
/// The rules' session: a purchase less than this after the user's previous one continues it.
const SESSION_MICROS: i64 = 600 * SECOND;

struct User {
    id: String,
    card: String,
    city: usize,
    home: (f64, f64),
    last_time: i64,
}

/// A purchase to send: whose, when, where, how much.
#[derive(Debug)]
struct Purchase {
    user: usize,
    at: i64,
    place: (f64, f64),
    city: usize,
    amount: f64,
    /// The injected pattern it belongs to: (pattern, injection number).
    injection: Option<(usize, u64)>,
}

pub struct RealisticGenerator {
    rng: Rng,
    bad_ratio: f64,
    late_ratio: f64,
    fraud_ratio: f64,
    users: Vec<User>,
    /// Each user's next purchase time.
    schedule: BinaryHeap<Reverse<(i64, usize)>>,
    /// Purchases of an injected pattern still to send.
    queued: VecDeque<Purchase>,
    /// Late purchases held back until the stream's time passes their release time.
    held: BinaryHeap<Reverse<Held>>,
    held_count: u64,
    /// The stream's time: the latest scheduled purchase taken.
    clock: i64,
    started: bool,
    next_pattern: usize,
    /// Patterns injected so far, by name.
    pub injected: [u64; 5],
    /// The injection the last message belongs to.
    current: Option<(usize, u64)>,
    key: String,
    payload: Vec<u8>,
}

/// A late purchase and when to send it (ordered by that, then by when it was held).
#[derive(Debug)]
struct Held {
    release: i64,
    seq: u64,
    purchase: Purchase,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.release, self.seq) == (other.release, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.release, self.seq).cmp(&(other.release, other.seq))
    }
}

/// A point about `km` from `from`, towards `bearing` degrees (flat-earth offset: enough here).
fn offset(from: (f64, f64), km: f64, bearing: f64) -> (f64, f64) {
    let b = bearing.to_radians();
    let dlat = km * b.cos() / 111.32;
    let dlon = km * b.sin() / (111.32 * from.0.to_radians().cos().max(0.01));
    (from.0 + dlat, from.1 + dlon)
}

impl RealisticGenerator {
    /// `users` users (`user_1000`, …), each with a home city.
    pub fn new(seed: u64, bad_ratio: f64, late_ratio: f64, fraud_ratio: f64, users: usize) -> Self {
        let mut rng = Rng::new(seed);
        let users: Vec<User> = (0..users.max(1))
            .map(|i| {
                let city = rng.below(CITIES.len());
                let centre = (CITIES[city].3, CITIES[city].4);
                let home = offset(centre, rng.uniform(0.0, 0.5), rng.uniform(0.0, 360.0));
                User {
                    id: format!("user_{}", 1000 + i),
                    card: format!("card_{}", 1000 + i),
                    city,
                    home,
                    last_time: i64::MIN,
                }
            })
            .collect();
        RealisticGenerator {
            rng,
            bad_ratio,
            late_ratio,
            fraud_ratio,
            users,
            schedule: BinaryHeap::new(),
            queued: VecDeque::new(),
            held: BinaryHeap::new(),
            held_count: 0,
            clock: i64::MIN,
            started: false,
            next_pattern: 0,
            injected: [0; 5],
            current: None,
            key: String::new(),
            payload: Vec::with_capacity(512),
        }
    }

    /// How many users make `rate` purchases a second when each buys every 160 s on average.
    pub fn users_for_rate(rate: f64) -> usize {
        if rate > 0.0 {
            ((rate * 160.0) as usize).clamp(50, 20_000)
        } else {
            2_000
        }
    }

    fn near_home(&mut self, user: usize) -> (f64, f64) {
        let home = self.users[user].home;
        offset(
            home,
            self.rng.uniform(0.0, 0.5),
            self.rng.uniform(0.0, 360.0),
        )
    }

    fn next_purchase(&mut self, now_micros: i64) -> Purchase {
        if !self.started {
            self.started = true;
            for u in 0..self.users.len() {
                let first = now_micros + (self.rng.uniform(0.0, 160.0) * 1e6) as i64;
                self.schedule.push(Reverse((first, u)));
            }
        }
        if let Some(p) = self.queued.pop_front() {
            return p;
        }
        let Some(Reverse((at, user))) = self.schedule.pop() else {
            unreachable!("every user is always scheduled");
        };
        self.clock = self.clock.max(at);
        // Mostly every 20 to 300 s; one time in 20 a break of 15 to 60 minutes (a session ends).
        let gap = if self.rng.chance(0.05) {
            (self.rng.uniform(900.0, 3600.0) * 1e6) as i64
        } else {
            (self.rng.uniform(20.0, 300.0) * 1e6) as i64
        };
        let home = self.near_home(user);
        let city = self.users[user].city;
        let mut p = Purchase {
            user,
            at,
            place: home,
            city,
            amount: (self.rng.uniform(1.0, 500.0) * 100.0).round() / 100.0,
            injection: None,
        };
        let last = self.users[user].last_time;
        let in_session = last != i64::MIN && at - last < SESSION_MICROS;
        let inject = in_session && self.rng.chance(self.fraud_ratio);
        let mut next = at + gap;
        if inject {
            let pattern = self.next_pattern;
            self.next_pattern = (self.next_pattern + 1) % PATTERNS.len();
            self.injected[pattern] += 1;
            let injection = Some((pattern, self.injected.iter().sum::<u64>()));
            p.injection = injection;
            // After a purchase far from home, a pause that ends the session.
            let pause = (self.rng.uniform(1800.0, 3600.0) * 1e6) as i64;
            match PATTERNS[pattern] {
                "impossible_travel" => {
                    let far = (city + 1 + self.rng.below(CITIES.len() - 1)) % CITIES.len();
                    p.city = far;
                    p.place = (CITIES[far].3, CITIES[far].4);
                    next = at + pause;
                }
                "large_amount" => {
                    p.amount = (self.rng.uniform(10_001.0, 50_000.0) * 100.0).round() / 100.0
                }
                "rapid_location_change" => {
                    // This purchase at home, then one 60 to 200 km away 10 to 40 s later.
                    let home = self.users[user].home;
                    let place = offset(
                        home,
                        self.rng.uniform(60.0, 200.0),
                        self.rng.uniform(0.0, 360.0),
                    );
                    let after = (self.rng.uniform(10.0, 40.0) * 1e6) as i64;
                    self.queued.push_back(Purchase {
                        user,
                        at: at + after,
                        place,
                        city,
                        amount: (self.rng.uniform(1.0, 500.0) * 100.0).round() / 100.0,
                        injection,
                    });
                    next = at + after + pause;
                }
                "burst" => {
                    // Six within 25 s: inside one of the sliding minutes, whatever the alignment.
                    for k in 1..6 {
                        let place = self.near_home(user);
                        self.queued.push_back(Purchase {
                            user,
                            at: at + k * 5 * SECOND,
                            place,
                            city,
                            amount: (self.rng.uniform(1.0, 500.0) * 100.0).round() / 100.0,
                            injection,
                        });
                    }
                    next = at + 25 * SECOND + gap;
                }
                _ => {
                    p.amount = (self.rng.uniform(5_001.0, 9_999.0) * 100.0).round() / 100.0;
                    for k in 1..3 {
                        let place = self.near_home(user);
                        self.queued.push_back(Purchase {
                            user,
                            at: at + k * 60 * SECOND,
                            place,
                            city,
                            amount: (self.rng.uniform(5_001.0, 9_999.0) * 100.0).round() / 100.0,
                            injection,
                        });
                    }
                    next = at + 120 * SECOND + gap;
                }
            }
        }
        self.schedule.push(Reverse((next, user)));
        p
    }

    /// The injected pattern the last message belongs to, and which injection of the stream it
    /// is (numbered from 1; all the purchases of one injection share it): a test's truth.
    pub fn injection(&self) -> Option<(&'static str, u64)> {
        self.current.map(|(pattern, n)| (PATTERNS[pattern], n))
    }

    /// The injected patterns so far, for the producer's summary.
    pub fn injected_summary(&self) -> String {
        PATTERNS
            .iter()
            .zip(self.injected)
            .map(|(name, n)| format!("{name}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl MessageGenerator for RealisticGenerator {
    fn next(&mut self, now_micros: i64) -> Kind {
        let (p, bad, late) = loop {
            if self
                .held
                .peek()
                .is_some_and(|Reverse(h)| h.release <= self.clock)
            {
                if let Some(Reverse(h)) = self.held.pop() {
                    break (h.purchase, None, true);
                }
            }
            let p = self.next_purchase(now_micros);
            if p.injection.is_some() {
                break (p, None, false);
            }
            let (bad, late) = self
                .rng
                .bad_or_late(self.bad_ratio, self.late_ratio, &BAD_KINDS);
            if !late {
                break (p, bad, false);
            }
            let release = p.at + (self.rng.uniform(LATE_MINUTES.0, LATE_MINUTES.1) * 60e6) as i64;
            self.held_count += 1;
            self.held.push(Reverse(Held {
                release,
                seq: self.held_count,
                purchase: p,
            }));
        };
        self.current = p.injection;
        let event_time = p.at;
        let rng = &mut self.rng;
        let mut uuid_text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let txn_id = rng.uuid(&mut uuid_text);
        let merchant = rng.pick(&MERCHANTS);
        let category = rng.pick(&CATEGORIES);
        let detail = rng.next_u64();
        let (name, country, currency, _, _) = CITIES[p.city];
        let user = &mut self.users[p.user];
        if !late && bad.is_none() {
            user.last_time = user.last_time.max(p.at);
        }
        self.key.clear();
        self.key.push_str(&user.card);
        let mut ts = String::new();
        write_python_isoformat(&mut ts, event_time);
        let round6 = |v: f64| (v * 1e6).round() / 1e6;
        let txn = Transaction {
            txn_id: Cow::Borrowed(txn_id),
            event_ts: Cow::Borrowed(&ts),
            event_time,
            user_id: Some(Cow::Borrowed(&user.id)),
            card_id: Some(Cow::Borrowed(&user.card)),
            merchant: Some(Cow::Borrowed(merchant)),
            category: Some(Cow::Borrowed(category)),
            amount: Some(p.amount),
            currency: Some(Cow::Borrowed(currency)),
            status: Some(Cow::Borrowed("APPROVED")),
            city: Some(Cow::Borrowed(name)),
            country: Some(Cow::Borrowed(country)),
            lat: Some(round6(p.place.0)),
            lon: Some(round6(p.place.1)),
        };
        self.payload.clear();
        encode(&txn, &mut self.payload);
        if let Some(kind) = bad {
            break_payload(kind, &mut self.payload, detail);
        }
        Kind::of(bad, late)
    }

    fn key(&self) -> &str {
        &self.key
    }

    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn summary(&self) -> String {
        format!("injected: {}", self.injected_summary())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use txn_core::decode;

    #[test]
    fn clean_users_buy_near_home_at_plausible_intervals_and_patterns_take_turns() {
        let mut g = RealisticGenerator::new(5, 0.0, 0.0, 0.0, 50);
        let mut last: std::collections::HashMap<String, (i64, f64, f64)> = Default::default();
        for _ in 0..5000 {
            assert_eq!(g.next(1_762_500_600_000_000), Kind::Valid);
            let t = decode(Some(g.payload())).unwrap();
            let user = t.user_id.unwrap().to_string();
            let (lat, lon) = (t.lat.unwrap(), t.lon.unwrap());
            assert!(t.amount.unwrap() <= 500.0);
            if let Some((at, plat, plon)) = last.get(&user) {
                let dt = (t.event_time - at) as f64 / 1e6;
                assert!(dt >= 20.0, "{dt}");
                let km = ((lat - plat).powi(2) + ((lon - plon) * lat.to_radians().cos()).powi(2))
                    .sqrt()
                    * 111.32;
                assert!(km < 1.1, "{km}");
            }
            last.insert(user, (t.event_time, lat, lon));
        }
        let mut g = RealisticGenerator::new(5, 0.0, 0.0, 0.5, 50);
        for _ in 0..2000 {
            g.next(1_762_500_600_000_000);
        }
        assert!(g.injected.iter().all(|&n| n > 20), "{:?}", g.injected);
        let spread = g.injected.iter().max().unwrap() - g.injected.iter().min().unwrap();
        assert!(spread <= 1, "{:?}", g.injected);
    }

    #[test]
    fn injections_are_valid_in_a_live_session_and_a_far_purchase_is_followed_by_a_pause() {
        let mut g = RealisticGenerator::new(11, 0.2, 0.2, 0.3, 40);
        // Per user: the last valid purchase (time, injected far away?).
        let mut last: std::collections::HashMap<String, (i64, bool)> = Default::default();
        let mut numbers = std::collections::BTreeSet::new();
        let (mut far_checked, mut first_checked, mut late) = (0, 0, 0);
        let mut newest = i64::MIN;
        for _ in 0..20_000 {
            let kind = g.next(1_762_500_600_000_000);
            let injection = g.injection();
            if kind == Kind::Late {
                // Sent 7 to 20 minutes of stream time after it was made (the newest purchase
                // sent may be an injected one up to 2 minutes ahead).
                let t = decode(Some(g.payload())).unwrap();
                let minutes = (newest - t.event_time) as f64 / 60e6;
                assert!((5.0..=22.5).contains(&minutes), "{minutes}");
                late += 1;
            } else if kind == Kind::Valid {
                newest = newest.max(decode(Some(g.payload())).unwrap().event_time);
            }
            if kind != Kind::Valid {
                assert_eq!(injection, None, "an injected purchase is never bad or late");
                continue;
            }
            let t = decode(Some(g.payload())).unwrap();
            let user = t.user_id.unwrap().to_string();
            let previous = last.get(&user).copied();
            let first = injection.is_some_and(|(_, n)| numbers.insert(n));
            if let Some((pattern, _)) = injection {
                if first {
                    // The first purchase of an injection: the user's session is live.
                    let (at, _) = previous.expect("a session to inject into");
                    assert!(t.event_time - at < SESSION_MICROS, "{pattern}");
                    first_checked += 1;
                }
            } else if let Some((at, true)) = previous {
                assert!(
                    t.event_time - at >= 30 * 60 * SECOND,
                    "a pause after a far purchase"
                );
                far_checked += 1;
            }
            // Far from home: a travel purchase, or the second purchase of a rapid change.
            let far = match injection {
                Some(("impossible_travel", _)) => true,
                Some(("rapid_location_change", _)) => !first,
                _ => false,
            };
            let entry = last.entry(user).or_insert((i64::MIN, false));
            if t.event_time >= entry.0 {
                *entry = (t.event_time, far);
            }
        }
        assert!(
            first_checked > 100 && far_checked > 20,
            "{first_checked} {far_checked}"
        );
        assert!((1000..5000).contains(&late), "{late}");
        assert_eq!(numbers.len() as u64, g.injected.iter().sum::<u64>());
    }
}
