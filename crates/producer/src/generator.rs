//! Seed-shaped transactions, deterministic for a given seed: the same seed gives the same records.

use std::borrow::Cow;

use txn_core::json::encode;
use txn_core::time::write_python_isoformat;
use txn_core::Transaction;

pub(crate) const MERCHANTS: [&str; 10] = [
    "Amazon",
    "Flipkart",
    "Swiggy",
    "Zomato",
    "Apple",
    "Myntra",
    "Uber",
    "Rapido",
    "Shell",
    "RelianceFresh",
];
pub(crate) const CATEGORIES: [&str; 6] = [
    "grocery",
    "fuel",
    "food_delivery",
    "ride_hailing",
    "electronics",
    "fashion",
];
const CURRENCIES: [&str; 3] = ["INR", "USD", "EUR"];
const COUNTRIES: [&str; 40] = [
    "IN", "US", "GB", "DE", "FR", "JP", "CN", "BR", "CA", "AU", "SG", "AE", "NL", "ES", "IT", "SE",
    "CH", "KR", "MX", "ZA", "NG", "KE", "EG", "AR", "CL", "CO", "PE", "ID", "MY", "TH", "VN", "PH",
    "PK", "BD", "LK", "NP", "NZ", "IE", "PL", "TR",
];
/// Ways a malformed message can be broken, one per quarantine reason the processor knows.
pub const BAD_KINDS: [&str; 8] = [
    "not_json",
    "truncated",
    "missing_txn_id",
    "bad_event_ts",
    "wrong_type",
    "not_an_object",
    "out_of_range",
    "not_utf8",
];

/// SplitMix64: tiny, fast, and stable across versions (unlike a library RNG whose stream may change).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// Whether the next message is broken (and which of `kinds`) or else late: the draws every
    /// generator makes first, in this order.
    pub fn bad_or_late(
        &mut self,
        bad_ratio: f64,
        late_ratio: f64,
        kinds: &[&'static str],
    ) -> (Option<&'static str>, bool) {
        let bad = self
            .chance(bad_ratio)
            .then(|| kinds[self.below(kinds.len())]);
        let late = bad.is_none() && self.chance(late_ratio);
        (bad, late)
    }

    /// A random UUID (v4 layout) as lowercase hyphenated text, written into `buf`.
    pub fn uuid<'b>(&mut self, buf: &'b mut [u8; uuid::fmt::Hyphenated::LENGTH]) -> &'b str {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .encode_lower(buf)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

fn round_to(v: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (v * scale).round() / scale
}

/// What kind of message was generated, so callers can count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Valid,
    Late,
    Bad(&'static str),
}

impl Kind {
    /// The kind of a message broken as `bad` (if so), else late or not.
    pub fn of(bad: Option<&'static str>, late: bool) -> Kind {
        match (bad, late) {
            (Some(kind), _) => Kind::Bad(kind),
            (None, true) => Kind::Late,
            (None, false) => Kind::Valid,
        }
    }
}

/// A dataset's message generator: `next` makes a message into reused buffers, `key()` and
/// `payload()` hold the last one.
pub trait MessageGenerator: Send {
    /// Generates the next message with event time `now_micros` (or before it, if late).
    fn next(&mut self, now_micros: i64) -> Kind;
    fn key(&self) -> &str;
    fn payload(&self) -> &[u8];
    /// What the summary line adds for this generator (e.g. the frauds it injected).
    fn summary(&self) -> String {
        String::new()
    }
}

impl MessageGenerator for Generator {
    fn next(&mut self, now_micros: i64) -> Kind {
        Generator::next(self, now_micros)
    }

    fn key(&self) -> &str {
        Generator::key(self)
    }

    fn payload(&self) -> &[u8] {
        Generator::payload(self)
    }
}

/// Generates seed-000 transactions into reused buffers: `key()` and `payload()` hold the last one.
pub struct Generator {
    rng: Rng,
    bad_ratio: f64,
    late_ratio: f64,
    key: String,
    payload: Vec<u8>,
    scratch: String,
}

/// Event times of late messages lie this far in the past: beyond the default 5-minute watermark
/// delay plus a 1-minute window, so the processor counts them as late.
pub const LATE_MINUTES: (f64, f64) = (7.0, 20.0);

impl Generator {
    pub fn new(seed: u64, bad_ratio: f64, late_ratio: f64) -> Self {
        Generator {
            rng: Rng::new(seed),
            bad_ratio,
            late_ratio,
            key: String::with_capacity(16),
            payload: Vec::with_capacity(512),
            scratch: String::with_capacity(64),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Generates the next message with event time `now_micros` (or minutes before it, if late).
    pub fn next(&mut self, now_micros: i64) -> Kind {
        let rng = &mut self.rng;
        let (bad, late) = rng.bad_or_late(self.bad_ratio, self.late_ratio, &BAD_KINDS);
        let event_time = if late {
            now_micros - (rng.uniform(LATE_MINUTES.0, LATE_MINUTES.1) * 60e6) as i64
        } else {
            now_micros
        };

        let mut uuid_text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let txn_id = rng.uuid(&mut uuid_text);

        let user_id = format!("user_{}", 1000 + rng.below(9000));
        self.key.clear();
        self.key.push_str("card_");
        self.key.push_str(&(100 + rng.below(100)).to_string());
        let merchant = rng.pick(&MERCHANTS);
        let category = rng.pick(&CATEGORIES);
        let currency = rng.pick(&CURRENCIES);
        let base = if currency == "INR" {
            rng.uniform(50.0, 4000.0)
        } else {
            rng.uniform(1.0, 200.0)
        };
        let amount = round_to(base * rng.uniform(0.9, 1.1), 2);
        let status = if rng.unit() < 0.75 {
            "APPROVED"
        } else {
            "DECLINED"
        };
        let city = fake_city(rng);
        let country = rng.pick(&COUNTRIES);
        let lat = round_to(rng.uniform(-90.0, 90.0), 6);
        let lon = round_to(rng.uniform(-180.0, 180.0), 6);
        let bad_detail = rng.next_u64();

        self.scratch.clear();
        write_python_isoformat(&mut self.scratch, event_time);
        let mut txn = Transaction {
            txn_id: Cow::Borrowed(txn_id),
            event_ts: Cow::Borrowed(&self.scratch),
            event_time,
            user_id: Some(Cow::Owned(user_id)),
            card_id: Some(Cow::Borrowed(&self.key)),
            merchant: Some(Cow::Borrowed(merchant)),
            category: Some(Cow::Borrowed(category)),
            amount: Some(amount),
            currency: Some(Cow::Borrowed(currency)),
            status: Some(Cow::Borrowed(status)),
            city: Some(Cow::Owned(city)),
            country: Some(Cow::Borrowed(country)),
            lat: Some(lat),
            lon: Some(lon),
        };
        match bad {
            Some("bad_event_ts") => txn.event_ts = Cow::Borrowed("yesterday at noon"),
            Some("out_of_range") => txn.lat = Some(90.0 + 1.0 + (bad_detail % 89) as f64),
            _ => {}
        }
        self.payload.clear();
        encode(&txn, &mut self.payload);
        if let Some(kind) = bad {
            break_payload(kind, &mut self.payload, bad_detail);
        }
        Kind::of(bad, late)
    }
}

/// Turns a valid encoded line into a malformed message of the given kind.
pub(crate) fn break_payload(kind: &str, line: &mut Vec<u8>, detail: u64) {
    match kind {
        "missing_txn_id" => {
            // {"txn_id": "<36 chars>", "event_ts": ...  →  {"event_ts": ...
            let field = br#""txn_id": ""#.len() + 36 + br#"", "#.len();
            line.drain(1..1 + field);
        }
        "not_utf8" => {
            let at = line.len() / 2;
            line.insert(at, 0xFF);
        }
        // bad_event_ts and out_of_range were set on the record before encoding
        _ => {
            break_common(kind, line, detail, "amount", "this is not json");
        }
    }
}

/// The malformations every dataset's generator makes the same way, on an encoded JSON object:
/// `not_json` (`noise` and a number), `truncated`, `wrong_type` (the number of `number_field` in
/// quotes: `"amount": 12.5` → `"amount": "12.5"`) and `not_an_object` (an array holding the
/// object). Returns whether `kind` was one of them.
pub(crate) fn break_common(
    kind: &str,
    line: &mut Vec<u8>,
    detail: u64,
    number_field: &str,
    noise: &str,
) -> bool {
    match kind {
        "not_json" => {
            line.clear();
            line.extend_from_slice(format!("{noise} #{detail}").as_bytes());
        }
        "truncated" => {
            let keep = 1 + (detail as usize % (line.len() - 2));
            line.truncate(keep);
        }
        "wrong_type" => {
            let key = format!("\"{number_field}\": ");
            let found = line.windows(key.len()).position(|w| w == key.as_bytes());
            if let Some(at) = found {
                let start = at + key.len();
                let end = start
                    + line[start..]
                        .iter()
                        .position(|&c| c == b',' || c == b'}')
                        .unwrap_or(0);
                line.insert(end, b'"');
                line.insert(start, b'"');
            }
        }
        "not_an_object" => {
            line.insert(0, b'[');
            line.push(b']');
        }
        _ => return false,
    }
    true
}

/// A city name as Python's Faker (the original producer's) makes them, in its four English
/// forms: "{prefix} {first name}{suffix}", "{prefix} {first name}", "{first name}{suffix}",
/// "{last name}{suffix}" ("North Ednaside", "South Hubert", "Lebsackburgh"), from the `fake`
/// crate's English lists (Faker's). Put together here rather than by `fake`'s `CityName`, which
/// costs about 8 times as much (`bench generate`: 250 against 30 ns).
pub fn fake_city(rng: &mut Rng) -> String {
    use fake::locales::{Data, EN};
    let mut city = String::with_capacity(24);
    let form = rng.below(4);
    if form < 2 {
        city.push_str(rng.pick(EN::ADDRESS_CITY_PREFIX));
        city.push(' ');
    }
    let names = if form == 3 {
        EN::NAME_LAST_NAME
    } else {
        EN::NAME_FIRST_NAME
    };
    city.push_str(rng.pick(names));
    if form != 1 {
        city.push_str(rng.pick(EN::ADDRESS_CITY_SUFFIX));
    }
    city
}

#[cfg(test)]
mod tests {
    use super::*;
    use txn_core::decode;

    const NOW: i64 = 1_762_500_638_730_729;

    #[test]
    fn cities_are_fakes_names_the_same_for_the_same_seed() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..2000).map(|_| fake_city(&mut rng)).collect::<Vec<_>>()
        };
        let cities = draw(11);
        assert_eq!(cities, draw(11));
        assert_ne!(cities, draw(12));
        let distinct: std::collections::BTreeSet<&String> = cities.iter().collect();
        assert!(distinct.len() > 1000, "{} distinct", distinct.len());
        // Faker's English forms, from its lists: a name in every city.
        use fake::locales::{Data, EN};
        for city in &cities {
            assert!(
                city.starts_with(|c: char| c.is_ascii_uppercase())
                    && EN::NAME_FIRST_NAME
                        .iter()
                        .chain(EN::NAME_LAST_NAME)
                        .any(|n| city.contains(n)),
                "{city:?}"
            );
        }
        assert!(cities.iter().any(|c| c.contains(' ')), "a prefixed name");
        assert!(cities.iter().any(|c| !c.contains(' ')), "a bare name");
    }

    #[test]
    fn valid_messages_decode_with_seed_shaped_fields() {
        let mut g = Generator::new(7, 0.0, 0.0);
        for _ in 0..2_000 {
            assert_eq!(g.next(NOW), Kind::Valid);
            let txn = decode(Some(g.payload())).expect("valid message");
            assert_eq!(txn.event_time, NOW);
            assert_eq!(txn.card_id.as_deref(), Some(g.key()));
            let card: usize = g.key()["card_".len()..].parse().unwrap();
            assert!((100..=199).contains(&card));
            let user: usize = txn.user_id.as_deref().unwrap()["user_".len()..]
                .parse()
                .unwrap();
            assert!((1000..=9999).contains(&user));
            let amount = txn.amount.unwrap();
            match txn.currency.as_deref().unwrap() {
                "INR" => assert!((45.0..=4400.0).contains(&amount), "{amount}"),
                _ => assert!((0.9..=220.0).contains(&amount), "{amount}"),
            }
            assert_eq!(amount, round_to(amount, 2));
            assert!(MERCHANTS.contains(&txn.merchant.as_deref().unwrap()));
            assert!(CATEGORIES.contains(&txn.category.as_deref().unwrap()));
            assert!(["APPROVED", "DECLINED"].contains(&txn.status.as_deref().unwrap()));
            assert_eq!(txn.txn_id.len(), 36);
            assert_eq!(&txn.txn_id[14..15], "4", "uuid v4");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_records() {
        let run = |seed| {
            let mut g = Generator::new(seed, 0.1, 0.1);
            (0..500)
                .map(|i| (g.next(NOW + i), g.key().to_owned(), g.payload().to_vec()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn every_bad_kind_is_rejected_for_the_reason_it_names() {
        let mut g = Generator::new(1, 1.0, 0.0);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let Kind::Bad(kind) = g.next(NOW) else {
                panic!("bad ratio 1.0 makes only bad messages")
            };
            let reject = decode(Some(g.payload())).expect_err(kind);
            let expected = if kind == "not_json" || kind == "truncated" {
                "malformed_json"
            } else {
                kind
            };
            // A truncation can cut exactly after a complete value and still be malformed JSON.
            assert_eq!(reject.code(), expected, "{kind}: {reject}");
            seen.insert(kind);
        }
        assert_eq!(seen.len(), BAD_KINDS.len());
    }

    #[test]
    fn late_messages_are_minutes_in_the_past_and_ratios_hold() {
        let mut g = Generator::new(3, 0.05, 0.2);
        let (mut late, mut bad) = (0, 0);
        for _ in 0..20_000 {
            match g.next(NOW) {
                Kind::Late => {
                    late += 1;
                    let txn = decode(Some(g.payload())).unwrap();
                    let minutes = (NOW - txn.event_time) as f64 / 60e6;
                    assert!(
                        (LATE_MINUTES.0..=LATE_MINUTES.1).contains(&minutes),
                        "{minutes}"
                    );
                }
                Kind::Bad(_) => bad += 1,
                Kind::Valid => {}
            }
        }
        assert!((900..1100).contains(&bad), "{bad}");
        assert!((3500..4100).contains(&late), "{late}"); // 0.2 of the 95 % that are not bad
    }
}
