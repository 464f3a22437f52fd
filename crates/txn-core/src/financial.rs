//! The one definition of seeds 003/004's financial transaction: `{"transactionId": uuid,
//! "userId": "user_12", "amount": 73512.25, "transactionTime": 1762500000, "merchantId":
//! "merchant_2", "transactionType": "purchase", "location": "location_7", "paymentMethod":
//! "credit_card", "isInternational": false, "currency": "USD"}`, keyed by `userId` on the topic
//! `financial_transactions`. Encoded by the producer, decoded by the processor (a valid record,
//! or a reject with the reason).
//!
//! The decoder also takes what the seeds' other producers wrote: `transactionTime` in
//! milliseconds (told apart by magnitude: 100,000,000,000 and above is milliseconds, i.e. after
//! 1973 in ms, before the year 5138 in seconds) or as a string of digits, `isInternational` as
//! the strings `"True"`/`"False"` (Python's `str(bool)`, any case), and `paymentMethod`
//! `"credit-card"` (read as `credit_card`). A `transactionTime` before 1970 or from 2100 on, or
//! an `amount` beyond ±10¹², is out of range.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::avro::{Field, WriterSchema};
use crate::fields::{object, optional, present, text, wrong};
use crate::json::Reject;

/// Epoch values at or above this are milliseconds, below it seconds.
pub const MILLIS_FROM: f64 = 1e11;
/// The latest `transactionTime` taken (2100-01-01T00:00:00Z, in seconds): one absurd time would
/// otherwise carry the anomaly rules' watermark past every later transaction.
pub const MAX_SECONDS: f64 = 4_102_444_800.0;
/// The largest `amount` taken, either sign: beyond it running totals lose their cents, and a
/// sum can overflow.
pub const MAX_AMOUNT: f64 = 1e12;

/// A decoded financial transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct FinancialTxn<'a> {
    pub transaction_id: Cow<'a, str>,
    pub user_id: Cow<'a, str>,
    pub amount: f64,
    /// `transactionTime` as UTC microseconds.
    pub transaction_time: i64,
    pub merchant_id: Cow<'a, str>,
    pub transaction_type: Option<Cow<'a, str>>,
    pub location: Option<Cow<'a, str>>,
    /// `credit-card` is read as `credit_card`.
    pub payment_method: Option<Cow<'a, str>>,
    pub is_international: Option<bool>,
    pub currency: Option<Cow<'a, str>>,
}

/// The fields as they came, each decoded on its own so that a reject names the field.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    #[serde(borrow)]
    transaction_id: Option<&'a RawValue>,
    #[serde(borrow)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    amount: Option<&'a RawValue>,
    #[serde(borrow)]
    transaction_time: Option<&'a RawValue>,
    #[serde(borrow)]
    merchant_id: Option<&'a RawValue>,
    #[serde(borrow)]
    transaction_type: Option<&'a RawValue>,
    #[serde(borrow)]
    location: Option<&'a RawValue>,
    #[serde(borrow)]
    payment_method: Option<&'a RawValue>,
    #[serde(borrow)]
    is_international: Option<&'a RawValue>,
    #[serde(borrow)]
    currency: Option<&'a RawValue>,
}

const FIELD_NAMES: [&str; 10] = [
    "transactionId",
    "userId",
    "amount",
    "transactionTime",
    "merchantId",
    "transactionType",
    "location",
    "paymentMethod",
    "isInternational",
    "currency",
];

/// A required string field, not empty.
fn required<'a>(field: &'static str, raw: Option<&'a RawValue>) -> Result<Cow<'a, str>, Reject> {
    let s = text(field, present(field, raw)?)?;
    if s.is_empty() {
        return Err(Reject::MissingField(field));
    }
    Ok(s)
}

/// `transactionTime`: epoch seconds or milliseconds (by magnitude), a number or a string of
/// digits, to UTC microseconds.
fn epoch_micros(raw: &RawValue) -> Result<i64, Reject> {
    let field = "transactionTime";
    let value: f64 = match serde_json::from_str::<f64>(raw.get()) {
        Ok(v) => v,
        Err(e) => {
            let s = serde_json::from_str::<&str>(raw.get()).map_err(|_| Reject::WrongType {
                field,
                detail: e.to_string(),
            })?;
            s.trim().parse::<f64>().map_err(|_| Reject::WrongType {
                field,
                detail: format!("{s:?} is not a number of seconds or milliseconds"),
            })?
        }
    };
    let seconds = if value.abs() >= MILLIS_FROM {
        value / 1e3
    } else {
        value
    };
    if !(0.0..=MAX_SECONDS).contains(&seconds) {
        // In seconds, whichever unit it came in.
        return Err(Reject::OutOfRange {
            field,
            value: seconds,
            min: 0.0,
            max: MAX_SECONDS,
        });
    }
    Ok((seconds * 1e6).round() as i64)
}

/// `isInternational`: a JSON boolean, or the strings `True`/`False` (any case).
fn boolean(raw: &RawValue) -> Result<bool, Reject> {
    let field = "isInternational";
    match serde_json::from_str::<bool>(raw.get()) {
        Ok(b) => Ok(b),
        Err(e) => match serde_json::from_str::<&str>(raw.get()).map(str::to_ascii_lowercase) {
            Ok(s) if s == "true" => Ok(true),
            Ok(s) if s == "false" => Ok(false),
            _ => Err(Reject::WrongType {
                field,
                detail: e.to_string(),
            }),
        },
    }
}

/// Decodes one message's text into a financial transaction. `transactionId`, `userId`,
/// `merchantId` (non-empty strings), `amount` (a number) and `transactionTime` are required; the
/// other fields may be missing or null. Other fields are ignored.
pub fn decode_financial(text_in: &str) -> Result<FinancialTxn<'_>, Reject> {
    match scan(text_in) {
        Some(txn) => Ok(txn),
        None => decode_general(text_in),
    }
}

static AVRO_FIELDS: [&str; 10] = FIELD_NAMES;

/// Decodes an Avro body (Confluent's frame removed) of writer schema `id` into the transaction
/// its rendered JSON would give ([`decode_financial`] of [`WriterSchema::to_json`]'s text),
/// without rendering it. Only what the JSON fast path takes is read directly (strings,
/// `amount` a number, `transactionTime` whole epoch seconds or milliseconds, `isInternational` a
/// boolean, every value in range); anything else takes the rendered path, which words the reject.
pub fn decode_financial_avro<'a>(
    schema: &WriterSchema,
    id: u32,
    body: &'a [u8],
) -> Result<FinancialTxn<'a>, Reject> {
    let mut strings: [Option<&str>; 10] = [None; 10];
    let (mut amount, mut seconds, mut international) = (None, None, None);
    let mut direct = true;
    let record = schema
        .read_record(body, &AVRO_FIELDS, |slot, field| match (slot, field) {
            (_, Field::Null) => {}
            (2, Field::Double(v)) if v.is_finite() => amount = Some(crate::json::as_read_back(v)),
            (2, Field::Long(v)) => amount = Some(v as f64),
            (3, Field::Long(v)) if v >= 0 => {
                let v = v as f64;
                seconds = Some(if v >= MILLIS_FROM { v / 1e3 } else { v });
            }
            (8, Field::Bool(v)) => international = Some(v),
            (2 | 3 | 8, _) => direct = false,
            (_, Field::Str(v)) => strings[slot] = Some(v),
            _ => direct = false,
        })
        .map_err(|detail| Reject::BadAvro { id, detail })?;
    match assemble(strings, amount, seconds, international) {
        Some(txn) if record && direct => Ok(txn),
        _ => schema.decode_rendered(id, body, |text| {
            decode_financial(text).map(FinancialTxn::into_owned)
        }),
    }
}

impl FinancialTxn<'_> {
    /// The same transaction owning its strings.
    pub fn into_owned(self) -> FinancialTxn<'static> {
        let own = |s: Option<Cow<'_, str>>| s.map(|s| Cow::Owned(s.into_owned()));
        FinancialTxn {
            transaction_id: Cow::Owned(self.transaction_id.into_owned()),
            user_id: Cow::Owned(self.user_id.into_owned()),
            amount: self.amount,
            transaction_time: self.transaction_time,
            merchant_id: Cow::Owned(self.merchant_id.into_owned()),
            transaction_type: own(self.transaction_type),
            location: own(self.location),
            payment_method: own(self.payment_method),
            is_international: self.is_international,
            currency: own(self.currency),
        }
    }
}

/// [`decode_financial`] without the fast path: serde_json for everything (the reference `scan`
/// is tested against).
pub fn decode_general(text_in: &str) -> Result<FinancialTxn<'_>, Reject> {
    let wire: Wire<'_> = object(text_in, &FIELD_NAMES)?;
    let transaction_id = required("transactionId", wire.transaction_id)?;
    let user_id = required("userId", wire.user_id)?;
    let amount = serde_json::from_str::<f64>(present("amount", wire.amount)?.get())
        .map_err(wrong("amount"))?;
    if !(-MAX_AMOUNT..=MAX_AMOUNT).contains(&amount) {
        return Err(Reject::OutOfRange {
            field: "amount",
            value: amount,
            min: -MAX_AMOUNT,
            max: MAX_AMOUNT,
        });
    }
    let transaction_time = epoch_micros(present("transactionTime", wire.transaction_time)?)?;
    let merchant_id = required("merchantId", wire.merchant_id)?;
    let payment_method = optional("paymentMethod", wire.payment_method)?.map(|m| {
        if m == "credit-card" {
            Cow::Borrowed("credit_card")
        } else {
            m
        }
    });
    let is_international = match wire.is_international.filter(|r| r.get() != "null") {
        None => None,
        Some(r) => Some(boolean(r)?),
    };
    Ok(FinancialTxn {
        transaction_id,
        user_id,
        amount,
        transaction_time,
        merchant_id,
        transaction_type: optional("transactionType", wire.transaction_type)?,
        location: optional("location", wire.location)?,
        payment_method,
        is_international,
        currency: optional("currency", wire.currency)?,
    })
}

/// The fast path of [`decode_financial`]: one pass over an object of the schema's keys, each at
/// most once, strings free of escapes and control characters, `amount` written
/// `-?(0|[1-9][0-9]*).[0-9]+` in at most 15 digits, `transactionTime` as whole epoch seconds or
/// milliseconds (at most 15 digits), `isInternational` a JSON boolean, the optional fields maybe
/// `null`, every value in range. `None` on anything else (an unknown key, a reject to word, ...):
/// the general path decides, and both give the same transaction on what this takes.
fn scan(text: &str) -> Option<FinancialTxn<'_>> {
    use crate::json::{scan_number, scan_string, skip_ws};
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut strings: [Option<&str>; 10] = [None; 10];
    let (mut amount, mut seconds, mut international) = (None, None, None);
    let mut seen = 0u16;
    if b.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        let (key, next) = scan_string(text, i)?;
        i = skip_ws(b, next);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let slot = FIELD_NAMES.iter().position(|&name| name == key)?;
        if seen & (1 << slot) != 0 {
            return None;
        }
        seen |= 1 << slot;
        if b[i..].starts_with(b"null") {
            // Only the optional fields may be null here.
            if matches!(slot, 0..=4) {
                return None;
            }
            i += 4;
        } else {
            match slot {
                2 => {
                    let (v, next) = scan_number(b, i)?;
                    amount = Some(v);
                    i = next;
                }
                3 => {
                    let (v, next) = scan_integer(b, i)?;
                    seconds = Some(if v >= MILLIS_FROM { v / 1e3 } else { v });
                    i = next;
                }
                8 => {
                    let v = if b[i..].starts_with(b"true") {
                        true
                    } else if b[i..].starts_with(b"false") {
                        false
                    } else {
                        return None;
                    };
                    international = Some(v);
                    i += if v { 4 } else { 5 };
                }
                _ => {
                    let (v, next) = scan_string(text, i)?;
                    strings[slot] = Some(v);
                    i = next;
                }
            }
        }
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => {
                i += 1;
                break;
            }
            _ => return None,
        }
    }
    if skip_ws(b, i) != b.len() {
        return None;
    }
    assemble(strings, amount, seconds, international)
}

/// A transaction from the fields a fast path read (by [`FIELD_NAMES`] slot; `seconds` the
/// epoch time in seconds), when every one is present and in range; `None` otherwise.
fn assemble(
    strings: [Option<&str>; 10],
    amount: Option<f64>,
    seconds: Option<f64>,
    international: Option<bool>,
) -> Option<FinancialTxn<'_>> {
    let required = |slot: usize| strings[slot].filter(|s| !s.is_empty()).map(Cow::Borrowed);
    let amount = amount.filter(|a| (-MAX_AMOUNT..=MAX_AMOUNT).contains(a))?;
    let seconds = seconds.filter(|s| (0.0..=MAX_SECONDS).contains(s))?;
    let payment_method =
        strings[7].map(|m| Cow::Borrowed(if m == "credit-card" { "credit_card" } else { m }));
    Some(FinancialTxn {
        transaction_id: required(0)?,
        user_id: required(1)?,
        amount,
        transaction_time: (seconds * 1e6).round() as i64,
        merchant_id: required(4)?,
        transaction_type: strings[5].map(Cow::Borrowed),
        location: strings[6].map(Cow::Borrowed),
        payment_method,
        is_international: international,
        currency: strings[9].map(Cow::Borrowed),
    })
}

/// A non-negative integer `0|[1-9][0-9]*` of at most 15 digits (no fraction, no
/// exponent) starting at `start`: its value and the index after it.
fn scan_integer(b: &[u8], start: usize) -> Option<(f64, usize)> {
    let mut value: u64 = 0;
    let i = crate::json::scan_digits(b, start, &mut value, 15)?;
    let digits = i - start;
    if digits == 0
        || (digits > 1 && b[start] == b'0')
        || matches!(b.get(i), Some(b'.' | b'e' | b'E'))
    {
        return None;
    }
    Some((value as f64, i))
}

/// Appends a transaction as the seeds' Python producer writes it (`json.dumps`: `", "` and `": "`
/// separators; `transactionTime` in whole epoch seconds, `isInternational` a JSON boolean).
/// `transaction_time` is in UTC microseconds. The strings are the producer's own (no escaping
/// needed: ids, names and codes of ASCII letters, digits, `_` and `-`).
#[allow(clippy::too_many_arguments)]
pub fn encode_financial(
    transaction_id: &str,
    user_id: &str,
    amount: f64,
    transaction_time: i64,
    merchant_id: &str,
    transaction_type: &str,
    location: &str,
    payment_method: &str,
    is_international: bool,
    currency: &str,
    out: &mut Vec<u8>,
) {
    use std::io::Write as _;
    let _ = write!(
        out,
        r#"{{"transactionId": "{transaction_id}", "userId": "{user_id}", "amount": "#
    );
    crate::json::write_python_float(out, amount);
    let _ = write!(
        out,
        r#", "transactionTime": {}, "merchantId": "{merchant_id}", "transactionType": "{transaction_type}", "location": "{location}", "paymentMethod": "{payment_method}", "isInternational": {is_international}, "currency": "{currency}"}}"#,
        transaction_time.div_euclid(1_000_000)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_762_500_000;

    /// The encoded transaction with `from` replaced by `to`, decoded (the text lives on).
    fn with(from: &str, to: &str) -> FinancialTxn<'static> {
        let text: &'static str = Box::leak(encoded().replace(from, to).into_boxed_str());
        decode_financial(text).unwrap()
    }

    fn encoded() -> String {
        let mut out = Vec::new();
        encode_financial(
            "0b6b2a63-3c1e-4b8e-9d65-2f7b1a7c9e10",
            "user_12",
            73512.25,
            T * 1_000_000 + 999_999,
            "merchant_2",
            "purchase",
            "location_7",
            "paypal",
            false,
            "USD",
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_encoded_transaction_decodes_to_the_same_fields() {
        let text = encoded();
        assert_eq!(
            text,
            r#"{"transactionId": "0b6b2a63-3c1e-4b8e-9d65-2f7b1a7c9e10", "userId": "user_12", "amount": 73512.25, "transactionTime": 1762500000, "merchantId": "merchant_2", "transactionType": "purchase", "location": "location_7", "paymentMethod": "paypal", "isInternational": false, "currency": "USD"}"#
        );
        let t = decode_financial(&text).unwrap();
        assert_eq!(
            t,
            FinancialTxn {
                transaction_id: Cow::Borrowed("0b6b2a63-3c1e-4b8e-9d65-2f7b1a7c9e10"),
                user_id: Cow::Borrowed("user_12"),
                amount: 73512.25,
                transaction_time: T * 1_000_000,
                merchant_id: Cow::Borrowed("merchant_2"),
                transaction_type: Some(Cow::Borrowed("purchase")),
                location: Some(Cow::Borrowed("location_7")),
                payment_method: Some(Cow::Borrowed("paypal")),
                is_international: Some(false),
                currency: Some(Cow::Borrowed("USD")),
            }
        );
    }

    #[test]
    fn the_other_producers_forms_are_read_milliseconds_string_booleans_and_credit_card() {
        let text = encoded()
            .replace("1762500000", "1762500000123")
            .replace("false", "\"True\"")
            .replace("paypal", "credit-card");
        let t = decode_financial(&text).unwrap();
        assert_eq!(t.transaction_time, T * 1_000_000 + 123_000);
        assert_eq!(t.is_international, Some(true));
        assert_eq!(t.payment_method.as_deref(), Some("credit_card"));
        let t = with("false", "\"false\"");
        assert_eq!(t.is_international, Some(false));
        // Fractional seconds (Python's time.time()) and a string of digits.
        let t = with("1762500000", "1762500000.25");
        assert_eq!(t.transaction_time, T * 1_000_000 + 250_000);
        let t = with("1762500000", "\"1762500000\"");
        assert_eq!(t.transaction_time, T * 1_000_000);
        // The boundary: at it milliseconds (1973); below it seconds, up to 2100.
        let t = with("1762500000", "100000000000");
        assert_eq!(t.transaction_time, 100_000_000 * 1_000_000);
        let t = with("1762500000", "4102444800");
        assert_eq!(t.transaction_time, 4_102_444_800 * 1_000_000);
    }

    #[test]
    fn every_bad_transaction_is_rejected_with_the_field_and_the_reason() {
        let reason = |text: &str| decode_financial(text).unwrap_err().to_string();
        let good = encoded();
        assert!(reason("nope").starts_with("malformed_json: "));
        assert!(reason(&good[..40]).starts_with("malformed_json: "));
        assert_eq!(
            reason(&format!("[{good}]")),
            "not_an_object: the message is JSON but not an object"
        );
        assert_eq!(
            reason(&good.replace(
                r#""transactionId": "0b6b2a63-3c1e-4b8e-9d65-2f7b1a7c9e10", "#,
                ""
            )),
            "missing_field: transactionId is missing or null"
        );
        assert_eq!(
            reason(&good.replace(r#""user_12""#, r#""""#)),
            "missing_field: userId is missing or null"
        );
        assert_eq!(
            reason(&good.replace(r#""merchant_2""#, "null")),
            "missing_field: merchantId is missing or null"
        );
        assert!(
            reason(&good.replace("73512.25", r#""73512.25""#)).starts_with("wrong_type: amount: ")
        );
        assert!(reason(&good.replace("1762500000", r#""yesterday""#))
            .starts_with("wrong_type: transactionTime: "));
        assert!(
            reason(&good.replace("1762500000", "-5")).starts_with("out_of_range: transactionTime")
        );
        // After 2100 (in seconds, as 99999999999 would be the year 5138), and an absurd amount.
        assert!(reason(&good.replace("1762500000", "4102444801"))
            .starts_with("out_of_range: transactionTime"));
        assert!(reason(&good.replace("1762500000", "99999999999"))
            .starts_with("out_of_range: transactionTime"));
        assert!(reason(&good.replace("73512.25", "1e308")).starts_with("out_of_range: amount"));
        assert!(reason(&good.replace("73512.25", "-2e12")).starts_with("out_of_range: amount"));
        assert!(reason(&good.replace("false", r#""maybe""#))
            .starts_with("wrong_type: isInternational: "));
        assert!(reason(&good.replace(r#""USD""#, "3")).starts_with("wrong_type: currency: "));
        assert_eq!(
            reason(&good.replace(r#""currency": "USD""#, r#""currency": "USD", "amount": 1"#)),
            "duplicate_field: amount appears more than once"
        );
        // Optional fields may be missing or null; extra fields are ignored.
        let t = decode_financial(
            r#"{"transactionId": "a", "userId": "u", "amount": 1, "transactionTime": 1762500000, "merchantId": "m", "location": null, "extra": [1]}"#,
        )
        .unwrap();
        assert_eq!(
            (t.location, t.currency, t.is_international),
            (None, None, None)
        );
    }

    #[test]
    fn the_fast_path_takes_the_producers_messages_and_agrees_with_serde_json_everywhere() {
        // The producer's messages: taken by the fast path, as serde_json reads them.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2_000 {
            let r = next();
            let mut out = Vec::new();
            encode_financial(
                &format!("id-{r:x}"),
                &format!("user_{}", r % 1000),
                ((r % 10_000_000) as f64 - 5_000_000.0) / 100.0,
                1_700_000_000_000_000 + (r % 100_000_000_000) as i64 * 1000,
                &format!("merchant_{}", r % 50),
                "purchase",
                "location_7",
                ["credit_card", "paypal", "debit_card"][(r % 3) as usize],
                r % 2 == 0,
                "USD",
                &mut out,
            );
            let text = String::from_utf8(out).unwrap();
            let fast = scan(&text).unwrap_or_else(|| panic!("not on the fast path: {text}"));
            assert_eq!(Ok(fast), decode_general(&text), "{text}");
        }
        // Every other shape: the fast path declines or agrees; decode_financial is the general
        // path's answer either way.
        let base = encoded();
        let variants = [
            ("\"amount\": 73512.25", "\"amount\": 73512"),
            ("\"amount\": 73512.25", "\"amount\": 7.351225e4"),
            ("\"amount\": 73512.25", "\"amount\": 1e13"),
            ("\"amount\": 73512.25", "\"amount\": -73512.25"),
            ("\"amount\": 73512.25", "\"amount\": \"73512.25\""),
            ("\"amount\": 73512.25", "\"amount\": null"),
            (
                "\"transactionTime\": 1762500000",
                "\"transactionTime\": 1762500000123",
            ),
            (
                "\"transactionTime\": 1762500000",
                "\"transactionTime\": \"1762500000\"",
            ),
            (
                "\"transactionTime\": 1762500000",
                "\"transactionTime\": 1762500000.5",
            ),
            ("\"transactionTime\": 1762500000", "\"transactionTime\": -5"),
            (
                "\"transactionTime\": 1762500000",
                "\"transactionTime\": 9999999999",
            ),
            (
                "\"transactionTime\": 1762500000",
                "\"transactionTime\": 01762500000",
            ),
            (
                "\"isInternational\": false",
                "\"isInternational\": \"True\"",
            ),
            ("\"isInternational\": false", "\"isInternational\": null"),
            ("\"isInternational\": false", "\"isInternational\": falsey"),
            (
                "\"paymentMethod\": \"paypal\"",
                "\"paymentMethod\": \"credit-card\"",
            ),
            ("\"paymentMethod\": \"paypal\"", "\"paymentMethod\": null"),
            ("\"location\": \"location_7\"", "\"location\": \"\""),
            (
                "\"location\": \"location_7\"",
                "\"location\": \"loc\\u00e9\"",
            ),
            ("\"userId\": \"user_12\"", "\"userId\": \"\""),
            ("\"userId\": \"user_12\"", "\"userId\": null"),
            ("\"userId\": \"user_12\"", "\"userId\": 12"),
            ("\"userId\": \"user_12\", ", ""),
            (
                "\"currency\": \"USD\"",
                "\"currency\": \"USD\", \"extra\": [1]",
            ),
            (
                "\"currency\": \"USD\"",
                "\"currency\": \"USD\", \"currency\": \"EUR\"",
            ),
            ("{", "  {  "),
            ("}", "} x"),
            ("}", ""),
        ];
        for (from, to) in variants {
            assert!(base.contains(from), "{from}");
            let text = base.replacen(from, to, 1);
            if let Some(fast) = scan(&text) {
                assert_eq!(Ok(fast), decode_general(&text), "{text}");
            }
            assert_eq!(decode_financial(&text), decode_general(&text), "{text}");
        }
        for text in ["", "[]", "{}", "null", "{\"transactionId\": \"a\"}"] {
            assert!(scan(text).is_none(), "{text}");
        }
    }
}
