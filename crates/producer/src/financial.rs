//! Seeds 003/004's financial transactions, deterministic for a given seed: `userId` `user_1` to
//! `user_100` (the key), `amount` uniform in [50,000, 150,000) with 2 decimals, `transactionTime`
//! in epoch seconds, `merchantId` `merchant_1` to `merchant_3`, `transactionType` purchase or
//! refund, `location` `location_1` to `location_50`, `paymentMethod` credit_card, paypal or
//! bank_transfer, `isInternational` true or false, `currency` USD, EUR or GBP — each uniform, as
//! the seeds' producers draw them.
//!
//! With `fraud_ratio`, that share of transactions gets an unusual amount (1,000,000 to 3,000,000:
//! 6.7 to 60 times a usual one), which the processor's amount rule flags; late messages
//! (`late_ratio`) carry a `transactionTime` 2 to 10 minutes in the past.

use std::fmt::Write as _;

use txn_core::financial::encode_financial;

use crate::generator::{break_common, Kind, MessageGenerator, Rng};

/// Late transactions lie this far in the past (seconds): beyond the processor's 1-minute windows
/// and their 1-minute watermark delay.
pub const LATE_SECONDS: (f64, f64) = (120.0, 600.0);

/// The unusual amounts injected with `fraud_ratio`.
pub const UNUSUAL_AMOUNT: (f64, f64) = (1_000_000.0, 3_000_000.0);

/// Ways a malformed transaction can be broken, one per quarantine reason.
pub const BAD_KINDS: [&str; 6] = [
    "not_json",
    "truncated",
    "missing_field",
    "bad_time",
    "wrong_type",
    "not_an_object",
];

const TYPES: [&str; 2] = ["purchase", "refund"];
const METHODS: [&str; 3] = ["credit_card", "paypal", "bank_transfer"];
const CURRENCIES: [&str; 3] = ["USD", "EUR", "GBP"];

pub struct FinancialGenerator {
    rng: Rng,
    bad_ratio: f64,
    late_ratio: f64,
    fraud_ratio: f64,
    /// Unusual amounts injected so far.
    pub injected: u64,
    key: String,
    payload: Vec<u8>,
}

impl FinancialGenerator {
    pub fn new(seed: u64, bad_ratio: f64, late_ratio: f64, fraud_ratio: f64) -> Self {
        FinancialGenerator {
            rng: Rng::new(seed),
            bad_ratio,
            late_ratio,
            fraud_ratio,
            injected: 0,
            key: String::with_capacity(8),
            payload: Vec::with_capacity(300),
        }
    }
}

impl MessageGenerator for FinancialGenerator {
    fn next(&mut self, now_micros: i64) -> Kind {
        let rng = &mut self.rng;
        let (bad, late) = rng.bad_or_late(self.bad_ratio, self.late_ratio, &BAD_KINDS);
        let time = if late {
            now_micros - (rng.uniform(LATE_SECONDS.0, LATE_SECONDS.1) * 1e6) as i64
        } else {
            now_micros
        };
        let mut uuid_text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = rng.uuid(&mut uuid_text);
        let user = 1 + rng.below(100);
        let unusual = bad.is_none() && rng.chance(self.fraud_ratio);
        let (low, high) = if unusual {
            self.injected += 1;
            UNUSUAL_AMOUNT
        } else {
            (50_000.0, 150_000.0)
        };
        let amount = (rng.uniform(low, high) * 100.0).floor() / 100.0;
        let merchant = 1 + rng.below(3);
        let kind = rng.pick(&TYPES);
        let location = 1 + rng.below(50);
        let method = rng.pick(&METHODS);
        let international = rng.chance(0.5);
        let currency = rng.pick(&CURRENCIES);
        let detail = rng.next_u64();
        self.key.clear();
        let _ = write!(self.key, "user_{user}");
        self.payload.clear();
        encode_financial(
            id,
            &self.key,
            amount,
            time,
            &format!("merchant_{merchant}"),
            kind,
            &format!("location_{location}"),
            method,
            international,
            currency,
            &mut self.payload,
        );
        if let Some(kind) = bad {
            self.break_payload(kind, detail);
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
        format!("injected: unusual_amount={}", self.injected)
    }
}

impl FinancialGenerator {
    /// Turns the encoded transaction into a malformed message of the given kind.
    fn break_payload(&mut self, kind: &str, detail: u64) {
        if break_common(kind, &mut self.payload, detail, "amount", "gateway timeout") {
            return;
        }
        let text = String::from_utf8_lossy(&self.payload).into_owned();
        let broken = match kind {
            "missing_field" => {
                // {"transactionId": "…", "userId": …  →  {"userId": …
                let end = text.find(r#""userId""#).unwrap_or(1);
                format!("{{{}", &text[end..])
            }
            _ => {
                // bad_time: "transactionTime": 1762500000  →  "transactionTime": "yesterday"
                let start = text.find(r#""transactionTime": "#).map_or(0, |at| at + 19);
                let end = start + text[start..].find(',').unwrap_or(0);
                format!("{}\"yesterday\"{}", &text[..start], &text[end..])
            }
        };
        self.payload = broken.into_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use txn_core::financial::decode_financial;

    const NOW: i64 = 1_762_500_600_000_000;

    #[test]
    fn valid_transactions_have_the_seeds_fields_and_ranges() {
        let mut g = FinancialGenerator::new(3, 0.0, 0.0, 0.0);
        let mut users = std::collections::BTreeSet::new();
        for _ in 0..5000 {
            assert_eq!(g.next(NOW), Kind::Valid);
            let text = std::str::from_utf8(g.payload()).unwrap();
            let t = decode_financial(text).unwrap();
            assert_eq!(g.key(), t.user_id);
            users.insert(t.user_id.to_string());
            assert!((50_000.0..150_000.0).contains(&t.amount), "{}", t.amount);
            assert_eq!(t.amount, (t.amount * 100.0).round() / 100.0);
            assert_eq!(t.transaction_time, NOW / 1_000_000 * 1_000_000);
            let merchant: u32 = t
                .merchant_id
                .strip_prefix("merchant_")
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=3).contains(&merchant));
            assert!(TYPES.contains(&t.transaction_type.as_deref().unwrap()));
            assert!(METHODS.contains(&t.payment_method.as_deref().unwrap()));
            assert!(CURRENCIES.contains(&t.currency.as_deref().unwrap()));
            assert!(t.is_international.is_some());
        }
        assert_eq!(users.len(), 100);
        assert_eq!(users.first().map(String::as_str), Some("user_1"));
    }

    #[test]
    fn bad_late_and_unusual_transactions_are_what_they_claim() {
        let mut g = FinancialGenerator::new(9, 0.2, 0.1, 0.05);
        let mut reasons = std::collections::BTreeSet::new();
        let (mut late, mut unusual) = (0, 0);
        for _ in 0..10_000 {
            let kind = g.next(NOW);
            let decoded = std::str::from_utf8(g.payload())
                .map_err(|_| ())
                .and_then(|text| {
                    decode_financial(text)
                        .map_err(|e| reasons.insert(e.code()))
                        .map_err(|_| ())
                });
            match kind {
                Kind::Bad(_) => assert!(decoded.is_err()),
                Kind::Late => {
                    let t = decoded.unwrap();
                    let seconds = (NOW - t.transaction_time) as f64 / 1e6;
                    assert!((LATE_SECONDS.0 - 1.0..=LATE_SECONDS.1).contains(&seconds));
                    late += 1;
                    if t.amount >= UNUSUAL_AMOUNT.0 {
                        unusual += 1;
                    }
                }
                Kind::Valid => {
                    let t = decoded.unwrap();
                    if t.amount >= UNUSUAL_AMOUNT.0 {
                        unusual += 1;
                    }
                }
            }
        }
        assert_eq!(
            reasons.into_iter().collect::<Vec<_>>(),
            [
                "malformed_json",
                "missing_field",
                "not_an_object",
                "wrong_type"
            ]
        );
        assert!((600..1000).contains(&late), "{late}");
        assert_eq!(unusual, g.injected);
        assert!((300..500).contains(&unusual), "{unusual}");
    }
}
