//! The message codec: exactly the seed's JSON out, a typed record or a reasoned reject in.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::avro::{Field, WriterSchema};
use crate::record::Transaction;
use crate::time::{parse_rfc3339_micros, TimestampError};

/// Why a message is not a valid transaction. Its `Display` is the `reason` column of quarantine:
/// a stable code, then a colon and the detail where there is one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reject {
    #[error("empty_value: the message has no value")]
    EmptyValue,
    #[error("not_utf8: invalid UTF-8 at byte {0}")]
    NotUtf8(usize),
    #[error("malformed_json: {0}")]
    MalformedJson(String),
    #[error("not_an_object: the message is JSON but not an object")]
    NotAnObject,
    #[error("missing_txn_id: txn_id is missing, null or empty")]
    MissingTxnId,
    #[error("missing_event_ts: event_ts is missing or null")]
    MissingEventTs,
    #[error("bad_event_ts: {value:?} is not an RFC 3339 timestamp: {why}")]
    BadEventTs { value: String, why: TimestampError },
    #[error("wrong_type: {field}: {detail}")]
    WrongType { field: &'static str, detail: String },
    #[error("out_of_range: {field} = {value} is outside [{min}, {max}]")]
    OutOfRange {
        field: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("duplicate_field: {0} appears more than once")]
    DuplicateField(&'static str),
    #[error("missing_field: {0} is missing or null")]
    MissingField(&'static str),
    #[error("avro_without_registry: the value is Avro of schema id {0} (Confluent framing) and SCHEMA_REGISTRY_URL is not set")]
    AvroWithoutRegistry(u32),
    #[error("unknown_schema_id: the schema registry has no schema id {0}")]
    UnknownSchemaId(u32),
    #[error("bad_schema: schema id {id} is not a usable Avro schema: {detail}")]
    BadSchema { id: u32, detail: String },
    #[error("bad_avro: the value does not match its writer schema (id {id}): {detail}")]
    BadAvro { id: u32, detail: String },
    #[error("bad_timestamp: {field}: {value:?} is not an RFC 3339 timestamp: {why}")]
    BadTimestamp {
        field: &'static str,
        value: String,
        why: TimestampError,
    },
}

impl Reject {
    /// The stable code before the colon, for counting rejects by kind.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::EmptyValue => "empty_value",
            Reject::NotUtf8(_) => "not_utf8",
            Reject::MalformedJson(_) => "malformed_json",
            Reject::NotAnObject => "not_an_object",
            Reject::MissingTxnId => "missing_txn_id",
            Reject::MissingEventTs => "missing_event_ts",
            Reject::BadEventTs { .. } => "bad_event_ts",
            Reject::WrongType { .. } => "wrong_type",
            Reject::OutOfRange { .. } => "out_of_range",
            Reject::DuplicateField(_) => "duplicate_field",
            Reject::MissingField(_) => "missing_field",
            Reject::BadTimestamp { .. } => "bad_timestamp",
            Reject::AvroWithoutRegistry(_) => "avro_without_registry",
            Reject::UnknownSchemaId(_) => "unknown_schema_id",
            Reject::BadSchema { .. } => "bad_schema",
            Reject::BadAvro { .. } => "bad_avro",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Appends `txn` as the seed's Python producer writes it (`json.dumps` defaults: `", "` and `": "`
/// separators, ASCII-only strings, floats as Python's `repr`), fields in [`crate::FIELDS`] order.
pub fn encode(txn: &Transaction<'_>, out: &mut Vec<u8>) {
    out.push(b'{');
    field_str(out, "txn_id", Some(&txn.txn_id), true);
    field_str(out, "event_ts", Some(&txn.event_ts), false);
    field_str(out, "user_id", txn.user_id.as_deref(), false);
    field_str(out, "card_id", txn.card_id.as_deref(), false);
    field_str(out, "merchant", txn.merchant.as_deref(), false);
    field_str(out, "category", txn.category.as_deref(), false);
    field_f64(out, "amount", txn.amount);
    field_str(out, "currency", txn.currency.as_deref(), false);
    field_str(out, "status", txn.status.as_deref(), false);
    field_str(out, "city", txn.city.as_deref(), false);
    field_str(out, "country", txn.country.as_deref(), false);
    field_f64(out, "lat", txn.lat);
    field_f64(out, "lon", txn.lon);
    out.push(b'}');
}

fn key(out: &mut Vec<u8>, name: &str, first: bool) {
    if !first {
        out.extend_from_slice(b", ");
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\": ");
}

fn field_str(out: &mut Vec<u8>, name: &str, value: Option<&str>, first: bool) {
    key(out, name, first);
    match value {
        Some(v) => write_json_string(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn field_f64(out: &mut Vec<u8>, name: &str, value: Option<f64>) {
    key(out, name, false);
    match value {
        Some(v) => write_python_float(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string as Python's `json.dumps` writes it with `ensure_ascii=True`.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    // Runs of printable ASCII other than the quote and the backslash are copied whole; the
    // first non-ASCII byte (a character's first byte) hands the rest to the character loop.
    /// The bytes copied as they are.
    const PLAIN: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0x20;
        while b < 0x7f {
            t[b] = b != b'"' as usize && b != b'\\' as usize;
            b += 1;
        }
        t
    };
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if PLAIN[b as usize] {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if b >= 0x80 {
            write_escaped_chars(out, &s[i..]);
            out.push(b'"');
            return;
        }
        write_escaped_chars(out, &s[i..i + 1]);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// [`write_json_string`]'s escapes, character by character, without the quotes.
fn write_escaped_chars(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            ' '..='~' => out.push(c as u8),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                }
            }
        }
    }
}

/// A float as Python's `repr`: shortest round-trip digits, `.0` on whole numbers, and exponents
/// written `e-05` / `e+16`. Non-finite values cannot occur in JSON and are written as `null`.
pub fn write_python_float(out: &mut Vec<u8>, v: f64) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    if !write_short_decimal(out, v) {
        write_python_float_general(out, v);
    }
}

/// Powers of ten exact in an f64 (up to 10^22 are; the decoder and the float writer need 15).
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The common case of [`write_python_float`] without ryu: `1e-4 <= |v| < 1e9` with a round-trip
/// decimal of at most 6 fraction digits (amounts, coordinates). Returns false, writing nothing,
/// otherwise.
///
/// `m = round(|v| * 10^6)` is the integer of the nearest 6-digit decimal (a decimal that
/// round-trips lies within half an ulp of `v`, so the product is far from a .5 tie, and adding
/// 0.5 then truncating rounds it); `m < 2^53` and `10^6` are exact, so `m / 10^6` is correctly
/// rounded, and when it equals `|v|` the text round-trips. At most one 6-digit decimal lies
/// within half an ulp (`10^-6` > ulp below 2^30), and a shorter decimal that round-trips is that
/// one with trailing zeros: so `m` without its trailing zeros (one fraction digit at least) is the
/// shortest, Python's repr.
fn write_short_decimal(out: &mut Vec<u8>, v: f64) -> bool {
    const SCALE: u64 = 1_000_000;
    let abs = v.abs();
    if !(1e-4..1e9).contains(&abs) {
        return false;
    }
    let m = (abs * SCALE as f64 + 0.5) as u64;
    if m as f64 / SCALE as f64 != abs {
        return false;
    }
    // Right to left into a small buffer, copied out once: `-`, the integer, `.`, the fraction
    // without its trailing zeros (one digit at least).
    let mut buf = [0u8; 24];
    let mut at = buf.len();
    let mut fraction = m % SCALE;
    let mut digits = 6;
    while digits > 1 && fraction.is_multiple_of(10) {
        fraction /= 10;
        digits -= 1;
    }
    for _ in 0..digits {
        at -= 1;
        buf[at] = b'0' + (fraction % 10) as u8;
        fraction /= 10;
    }
    at -= 1;
    buf[at] = b'.';
    let mut int = m / SCALE;
    loop {
        at -= 1;
        buf[at] = b'0' + (int % 10) as u8;
        int /= 10;
        if int == 0 {
            break;
        }
    }
    if v < 0.0 {
        at -= 1;
        buf[at] = b'-';
    }
    out.extend_from_slice(&buf[at..]);
    true
}

/// A finite double as a decoder reads it back from [`write_python_float`]'s text: itself when
/// the text is short (read exactly), else what serde_json's parse of the text gives (serde_json
/// is built without `float_roundtrip`: an ulp off now and then). A direct Avro read gives the
/// number its rendered JSON would.
#[inline]
pub(crate) fn as_read_back(v: f64) -> f64 {
    let abs = v.abs();
    if (1e-4..1e9).contains(&abs) && ((abs * 1e6 + 0.5) as u64) as f64 / 1e6 == abs {
        return v;
    }
    let mut text = Vec::with_capacity(32);
    write_python_float(&mut text, v);
    serde_json::from_slice::<f64>(&text).unwrap_or(v)
}

/// [`write_python_float`] for every finite value, through ryu.
fn write_python_float_general(out: &mut Vec<u8>, v: f64) {
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(v);
    let abs = v.abs();
    let scientific = abs != 0.0 && !(1e-4..1e16).contains(&abs);
    if !scientific {
        if text.contains('e') {
            // ryu chose an exponent where Python does not: spell the digits out.
            out.extend_from_slice(format!("{v:?}").as_bytes());
        } else {
            out.extend_from_slice(text.as_bytes());
        }
        return;
    }
    // Scientific: mantissa from Rust's shortest form, exponent padded to two digits with a sign.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    out.extend_from_slice(mantissa.as_bytes());
    out.extend_from_slice(
        format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs()).as_bytes(),
    );
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decodes a message value into a transaction borrowing from `bytes`, or the reason it is not one.
///
/// Messages of the producer's shape take [`scan`], a single pass written for this schema; anything
/// else (escapes, unknown or repeated fields, exponents, long numbers, wrong types, bad JSON) goes
/// through serde_json, which also words the reject. Both give the same result on what `scan` takes.
pub fn decode(bytes: Option<&[u8]>) -> Result<Transaction<'_>, Reject> {
    decode_text(payload_text(bytes)?)
}

/// [`decode`] of a value already checked by [`payload_text`] (so a caller can keep the text).
pub fn decode_text(text: &str) -> Result<Transaction<'_>, Reject> {
    let raw = match scan(text) {
        Some(raw) => raw,
        None => parse_general(text)?,
    };
    finish(raw)
}

/// The fields in [`Raw`]'s order, at one address ([`WriterSchema::read_record`] keeps its
/// binding by it).
static AVRO_FIELDS: [&str; 13] = crate::FIELDS;

/// Decodes an Avro body (Confluent's frame removed) of writer schema `id` into the transaction
/// its rendered JSON would give ([`decode_text`] of [`WriterSchema::to_json`]'s text), without
/// rendering it: strings are borrowed from the body, then the same checks as the JSON's. What
/// the JSON would hold in another form than the record's (a timestamp or decimal type, a number
/// in a string field, NaN, a root that is not a record) takes the rendered path.
pub fn decode_avro<'a>(
    schema: &WriterSchema,
    id: u32,
    body: &'a [u8],
) -> Result<Transaction<'a>, Reject> {
    let mut raw = Raw::default();
    let mut direct = true;
    let record = schema
        .read_record(body, &AVRO_FIELDS, |slot, value| match (slot, value) {
            (_, Field::Null) => {}
            (6 | 11 | 12, Field::Double(v)) if v.is_finite() => {
                *raw.number(slot) = Some(as_read_back(v))
            }
            (6 | 11 | 12, Field::Long(v)) => *raw.number(slot) = Some(v as f64),
            (6 | 11 | 12, _) => direct = false,
            (_, Field::Str(v)) => *raw.string(slot) = Some(Cow::Borrowed(v)),
            _ => direct = false,
        })
        .map_err(|detail| Reject::BadAvro { id, detail })?;
    if record && direct {
        finish(raw)
    } else {
        schema.decode_rendered(id, body, |text| {
            decode_text(text).map(Transaction::into_owned)
        })
    }
}

/// [`decode`] without the fast path: serde_json for everything (the reference `scan` is tested
/// against).
pub fn decode_general(bytes: Option<&[u8]>) -> Result<Transaction<'_>, Reject> {
    finish(parse_general(payload_text(bytes)?)?)
}

/// A message value as text: the first check of [`decode`] (an absent value, or bytes that are
/// not UTF-8, are rejects).
pub fn payload_text(bytes: Option<&[u8]>) -> Result<&str, Reject> {
    let bytes = bytes.ok_or(Reject::EmptyValue)?;
    std::str::from_utf8(bytes).map_err(|e| Reject::NotUtf8(e.valid_up_to()))
}

fn parse_general(text: &str) -> Result<Raw<'_>, Reject> {
    match text.trim_start().as_bytes().first() {
        Some(b'{') => {}
        None => {
            return Err(Reject::MalformedJson(
                "the message is empty or blank".into(),
            ))
        }
        Some(_) => {
            // Valid JSON of another kind, or not JSON at all?
            return Err(match serde_json::from_str::<IgnoredAny>(text) {
                Ok(_) => Reject::NotAnObject,
                Err(e) => Reject::MalformedJson(e.to_string()),
            });
        }
    }

    let field = Cell::new("");
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = RawSeed { field: &field }
        .deserialize(&mut de)
        .and_then(|raw| de.end().map(|()| raw));
    match raw {
        Ok(raw) => raw,
        Err(e) if e.is_data() && !field.get().is_empty() => Err(Reject::WrongType {
            field: field.get(),
            detail: e.to_string(),
        }),
        Err(e) => Err(Reject::MalformedJson(e.to_string())),
    }
}

/// The fast path of [`decode`]: one pass over an object whose keys are the schema's, each at most
/// once, with strings free of escapes and control characters, `null`s, and numbers written
/// `-?(0|[1-9][0-9]*).[0-9]+` with at most 15 digits. Returns `None` on anything else, and the
/// general path decides. (With at most 15 digits, the mantissa and the power of ten are exact in
/// an f64, so one division is correctly rounded: the value serde_json and `str::parse` give.)
fn scan(text: &str) -> Option<Raw<'_>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut raw = Raw::default();
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        let mut seen = 0u16;
        let mut expected = 0;
        loop {
            // Keys mostly come in the producer's order: the next one is checked as one literal
            // (`"card_id":`) before any scanning.
            let slot = match KEY_LITERALS.get(expected) {
                Some(literal) if starts_with_key(&b[i..], expected) => {
                    i = skip_ws(b, i + literal.len());
                    expected
                }
                _ => {
                    let (key, next) = scan_string(text, i)?;
                    i = skip_ws(b, next);
                    if b.get(i) != Some(&b':') {
                        return None;
                    }
                    i = skip_ws(b, i + 1);
                    slot_of(key)?
                }
            };
            expected = slot + 1;
            if seen & (1 << slot) != 0 {
                return None;
            }
            seen |= 1 << slot;
            let null = b[i..].starts_with(b"null");
            macro_rules! string {
                ($slot:expr) => {{
                    if null {
                        i += 4;
                    } else {
                        let (v, next) = scan_string(text, i)?;
                        $slot = Some(Cow::Borrowed(v));
                        i = next;
                    }
                }};
            }
            macro_rules! number {
                ($slot:expr) => {{
                    if null {
                        i += 4;
                    } else {
                        let (v, next) = scan_number(b, i)?;
                        $slot = Some(v);
                        i = next;
                    }
                }};
            }
            match slot {
                0 => string!(raw.txn_id),
                1 => string!(raw.event_ts),
                2 => string!(raw.user_id),
                3 => string!(raw.card_id),
                4 => string!(raw.merchant),
                5 => string!(raw.category),
                6 => number!(raw.amount),
                7 => string!(raw.currency),
                8 => string!(raw.status),
                9 => string!(raw.city),
                10 => string!(raw.country),
                11 => number!(raw.lat),
                _ => number!(raw.lon),
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
    }
    (skip_ws(b, i) == b.len()).then_some(raw)
}

/// Each schema key as it starts a member: `"txn_id":`.
const KEY_LITERALS: [&str; 13] = [
    "\"txn_id\":",
    "\"event_ts\":",
    "\"user_id\":",
    "\"card_id\":",
    "\"merchant\":",
    "\"category\":",
    "\"amount\":",
    "\"currency\":",
    "\"status\":",
    "\"city\":",
    "\"country\":",
    "\"lat\":",
    "\"lon\":",
];

/// Each of [`KEY_LITERALS`] as the 16 little-endian bytes it fills (zero padded) and the mask of
/// those bytes: a member's start is compared in one 16-byte load instead of a `memcmp` call.
const KEY_WORDS: [(u128, u128); 13] = {
    let mut words = [(0u128, 0u128); 13];
    let mut k = 0;
    while k < words.len() {
        let bytes = KEY_LITERALS[k].as_bytes();
        assert!(bytes.len() <= 16);
        let mut i = 0;
        while i < bytes.len() {
            words[k].0 |= (bytes[i] as u128) << (8 * i);
            words[k].1 |= 0xff << (8 * i);
            i += 1;
        }
        k += 1;
    }
    words
};

/// Whether `b` starts with `KEY_LITERALS[slot]`.
fn starts_with_key(b: &[u8], slot: usize) -> bool {
    match b.first_chunk::<16>() {
        Some(chunk) => {
            let (word, mask) = KEY_WORDS[slot];
            u128::from_le_bytes(*chunk) & mask == word
        }
        // The last few bytes of a value (a member there is malformed or the last one).
        None => b.starts_with(KEY_LITERALS[slot].as_bytes()),
    }
}

/// The slot of a schema key in [`crate::FIELDS`] order (the order `scan` fills [`Raw`] in).
/// Every key fits in eight bytes: a key is compared as one integer (zero padded; a key holding a
/// NUL never gets here, `scan_string` stops at control characters).
fn slot_of(key: &str) -> Option<usize> {
    const fn pack(b: &[u8]) -> u64 {
        let mut w = 0u64;
        let mut i = 0;
        while i < b.len() {
            w |= (b[i] as u64) << (8 * i);
            i += 1;
        }
        w
    }
    const KEYS: [u64; 13] = {
        let mut keys = [0u64; 13];
        let mut i = 0;
        while i < keys.len() {
            assert!(crate::FIELDS[i].len() <= 8);
            keys[i] = pack(crate::FIELDS[i].as_bytes());
            i += 1;
        }
        keys
    };
    let key = key.as_bytes();
    if key.is_empty() || key.len() > 8 {
        return None;
    }
    let packed = pack(key);
    KEYS.iter().position(|&k| k == packed)
}

pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// Bytes that end the fast scan of a string: the closing quote, and what needs the general path.
const STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The index of the first byte of `b` in [`STRING_STOP`], eight bytes at a time.
///
/// Per byte lane: `(x - 0x01) & !x & 0x80` flags a zero byte (here `x` is the byte xor `"` or
/// `\\`), `(x - 0x20) & !x & 0x80` a byte below 0x20. A borrow can flag a lane above a real match
/// but never below one, so the lowest flag is the first match.
fn string_stop(b: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().ok()?);
        let quote = w ^ (LO * u64::from(b'"'));
        let backslash = w ^ (LO * u64::from(b'\\'));
        let flags = ((quote.wrapping_sub(LO) & !quote)
            | (backslash.wrapping_sub(LO) & !backslash)
            | (w.wrapping_sub(LO * 0x20) & !w))
            & HI;
        if flags != 0 {
            return Some(i + (flags.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| STRING_STOP[usize::from(c)])
        .map(|p| i + p)
}

/// A string starting at `i` (its opening quote) without escapes or control characters: its
/// contents and the index after the closing quote.
pub(crate) fn scan_string(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let len = string_stop(&b[i + 1..])?;
    let end = i + 1 + len;
    if b[end] != b'"' {
        return None;
    }
    Some((text.get(i + 1..end)?, end + 1))
}

/// A number `-?(0|[1-9][0-9]*).[0-9]+` of at most 15 digits starting at `i`: its value and the
/// index after it.
/// Reads the run of decimal digits at `i` into `mantissa` (times ten for each digit); its end,
/// or `None` past `max` digits (a double holds 15 decimal digits exactly).
#[inline]
pub(crate) fn scan_digits(b: &[u8], mut i: usize, mantissa: &mut u64, max: usize) -> Option<usize> {
    let start = i;
    while let Some(d @ b'0'..=b'9') = b.get(i) {
        *mantissa = *mantissa * 10 + u64::from(d - b'0');
        i += 1;
        if i - start > max {
            return None;
        }
    }
    Some(i)
}

pub(crate) fn scan_number(b: &[u8], mut i: usize) -> Option<(f64, usize)> {
    let negative = b.get(i) == Some(&b'-');
    i += usize::from(negative);
    let int_start = i;
    let mut mantissa: u64 = 0;
    i = scan_digits(b, i, &mut mantissa, 15)?;
    let int_digits = i - int_start;
    if int_digits == 0 || (int_digits > 1 && b[int_start] == b'0') || b.get(i) != Some(&b'.') {
        return None;
    }
    i += 1;
    let frac_start = i;
    i = scan_digits(b, i, &mut mantissa, 15 - int_digits)?;
    let frac_digits = i - frac_start;
    if frac_digits == 0 || matches!(b.get(i), Some(b'e' | b'E')) {
        return None;
    }
    let value = mantissa as f64 / POW10[frac_digits];
    Some((if negative { -value } else { value }, i))
}

/// The checks after the JSON: required fields, the timestamp, coordinate ranges.
fn finish(raw: Raw<'_>) -> Result<Transaction<'_>, Reject> {
    let txn_id = raw
        .txn_id
        .filter(|s| !s.is_empty())
        .ok_or(Reject::MissingTxnId)?;
    let event_ts = raw.event_ts.ok_or(Reject::MissingEventTs)?;
    let event_time = parse_rfc3339_micros(&event_ts).map_err(|why| Reject::BadEventTs {
        value: event_ts.to_string(),
        why,
    })?;
    check_range("lat", raw.lat, 90.0)?;
    check_range("lon", raw.lon, 180.0)?;
    Ok(Transaction {
        txn_id,
        event_ts,
        event_time,
        user_id: raw.user_id,
        card_id: raw.card_id,
        merchant: raw.merchant,
        category: raw.category,
        amount: raw.amount,
        currency: raw.currency,
        status: raw.status,
        city: raw.city,
        country: raw.country,
        lat: raw.lat,
        lon: raw.lon,
    })
}

fn check_range(field: &'static str, value: Option<f64>, limit: f64) -> Result<(), Reject> {
    match value {
        Some(v) if !(-limit..=limit).contains(&v) => Err(Reject::OutOfRange {
            field,
            value: v,
            min: -limit,
            max: limit,
        }),
        _ => Ok(()),
    }
}

/// Fields as they come out of the JSON, before the required ones are checked.
#[derive(Default)]
struct Raw<'a> {
    txn_id: Option<Cow<'a, str>>,
    event_ts: Option<Cow<'a, str>>,
    user_id: Option<Cow<'a, str>>,
    card_id: Option<Cow<'a, str>>,
    merchant: Option<Cow<'a, str>>,
    category: Option<Cow<'a, str>>,
    amount: Option<f64>,
    currency: Option<Cow<'a, str>>,
    status: Option<Cow<'a, str>>,
    city: Option<Cow<'a, str>>,
    country: Option<Cow<'a, str>>,
    lat: Option<f64>,
    lon: Option<f64>,
}

impl<'a> Raw<'a> {
    /// The string field at `slot` of [`crate::FIELDS`] (not a number's slot).
    fn string(&mut self, slot: usize) -> &mut Option<Cow<'a, str>> {
        match slot {
            0 => &mut self.txn_id,
            1 => &mut self.event_ts,
            2 => &mut self.user_id,
            3 => &mut self.card_id,
            4 => &mut self.merchant,
            5 => &mut self.category,
            7 => &mut self.currency,
            8 => &mut self.status,
            9 => &mut self.city,
            _ => &mut self.country,
        }
    }

    /// The number field at `slot` of [`crate::FIELDS`] (6, 11 or 12).
    fn number(&mut self, slot: usize) -> &mut Option<f64> {
        match slot {
            6 => &mut self.amount,
            11 => &mut self.lat,
            _ => &mut self.lon,
        }
    }
}

/// Deserializes [`Raw`], recording in `field` the field whose value is being read, so that a type
/// error can name it. A duplicate field is a `Reject` (the inner result), not a JSON error.
struct RawSeed<'c> {
    field: &'c Cell<&'static str>,
}

impl<'de> DeserializeSeed<'de> for RawSeed<'_> {
    type Value = Result<Raw<'de>, Reject>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RawSeed<'_> {
    type Value = Result<Raw<'de>, Reject>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a transaction object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = Raw::default();
        let mut duplicate = None;
        let mut seen = 0u16;
        macro_rules! read {
            ($slot:expr, $name:literal, $bit:literal, $ty:ty) => {{
                self.field.set($name);
                let value = map.next_value::<Option<$ty>>()?;
                self.field.set("");
                if seen & (1 << $bit) != 0 {
                    duplicate.get_or_insert($name);
                }
                seen |= 1 << $bit;
                $slot = value.map(Into::into);
            }};
        }
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::TxnId => read!(raw.txn_id, "txn_id", 0, Str),
                Key::EventTs => read!(raw.event_ts, "event_ts", 1, Str),
                Key::UserId => read!(raw.user_id, "user_id", 2, Str),
                Key::CardId => read!(raw.card_id, "card_id", 3, Str),
                Key::Merchant => read!(raw.merchant, "merchant", 4, Str),
                Key::Category => read!(raw.category, "category", 5, Str),
                Key::Amount => read!(raw.amount, "amount", 6, f64),
                Key::Currency => read!(raw.currency, "currency", 7, Str),
                Key::Status => read!(raw.status, "status", 8, Str),
                Key::City => read!(raw.city, "city", 9, Str),
                Key::Country => read!(raw.country, "country", 10, Str),
                Key::Lat => read!(raw.lat, "lat", 11, f64),
                Key::Lon => read!(raw.lon, "lon", 12, f64),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match duplicate {
            Some(name) => Err(Reject::DuplicateField(name)),
            None => Ok(raw),
        })
    }
}

/// A JSON string, borrowed from the input unless it holds escapes.
struct Str<'a>(Cow<'a, str>);

impl<'a> From<Str<'a>> for Cow<'a, str> {
    fn from(s: Str<'a>) -> Self {
        s.0
    }
}

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        de.deserialize_str(V)
    }
}

enum Key {
    TxnId,
    EventTs,
    UserId,
    CardId,
    Merchant,
    Category,
    Amount,
    Currency,
    Status,
    City,
    Country,
    Lat,
    Lon,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "txn_id" => Key::TxnId,
                    "event_ts" => Key::EventTs,
                    "user_id" => Key::UserId,
                    "card_id" => Key::CardId,
                    "merchant" => Key::Merchant,
                    "category" => Key::Category,
                    "amount" => Key::Amount,
                    "currency" => Key::Currency,
                    "status" => Key::Status,
                    "city" => Key::City,
                    "country" => Key::Country,
                    "lat" => Key::Lat,
                    "lon" => Key::Lon,
                    _ => Key::Other,
                })
            }
        }
        de.deserialize_identifier(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_copied_in_runs_equal_them_escaped_character_by_character() {
        for s in [
            "",
            "plain",
            "a\"b\\c",
            "tab\there\n",
            "\u{1}x",
            "K\u{f6}ln",
            "x\u{1f600}y\"",
            "\u{7f}del",
            "end\\",
            "\u{e9}t\u{e9} \"quoted\"",
        ] {
            let mut fast = Vec::new();
            write_json_string(&mut fast, s);
            let mut slow = vec![b'"'];
            write_escaped_chars(&mut slow, s);
            slow.push(b'"');
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(slow).unwrap()
            );
            let mut again = Vec::new();
            write_json_string(&mut again, s);
            assert_eq!(serde_json::from_slice::<String>(&again).unwrap(), s);
        }
    }

    const SEED_LINE: &str = r#"{"txn_id": "6f1c1f0e-8a51-4d43-9e55-0c3f0b6f7d21", "event_ts": "2025-11-07T07:30:38.730729+00:00", "user_id": "user_1001", "card_id": "card_190", "merchant": "Amazon", "category": "fuel", "amount": 1029.27, "currency": "INR", "status": "APPROVED", "city": "Lake Jennifer", "country": "IN", "lat": 19.07, "lon": 72.87}"#;

    fn sample() -> Transaction<'static> {
        Transaction {
            txn_id: "6f1c1f0e-8a51-4d43-9e55-0c3f0b6f7d21".into(),
            event_ts: "2025-11-07T07:30:38.730729+00:00".into(),
            event_time: 1_762_500_638_730_729,
            user_id: Some("user_1001".into()),
            card_id: Some("card_190".into()),
            merchant: Some("Amazon".into()),
            category: Some("fuel".into()),
            amount: Some(1029.27),
            currency: Some("INR".into()),
            status: Some("APPROVED".into()),
            city: Some("Lake Jennifer".into()),
            country: Some("IN".into()),
            lat: Some(19.07),
            lon: Some(72.87),
        }
    }

    fn encoded(txn: &Transaction<'_>) -> String {
        let mut out = Vec::new();
        encode(txn, &mut out);
        String::from_utf8(out).expect("encoder writes ASCII")
    }

    #[test]
    fn encodes_exactly_the_seed_line() {
        assert_eq!(encoded(&sample()), SEED_LINE);
    }

    #[test]
    fn decodes_the_seed_line_borrowing_strings() {
        let txn = decode(Some(SEED_LINE.as_bytes())).expect("valid");
        assert_eq!(txn, sample());
        assert!(matches!(txn.txn_id, Cow::Borrowed(_)));
        assert!(matches!(txn.city, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn round_trips_escapes_nulls_and_unicode() {
        let mut txn = sample();
        txn.city = Some("São \"Paulo\"\\\n\u{1F600}".into());
        txn.merchant = None;
        txn.amount = None;
        txn.lat = Some(-0.000012);
        txn.lon = Some(180.0);
        let line = encoded(&txn);
        assert!(
            line.contains(r#""city": "S\u00e3o \"Paulo\"\\\n\ud83d\ude00""#),
            "{line}"
        );
        assert!(line.contains(r#""merchant": null"#), "{line}");
        assert!(line.contains(r#""lat": -1.2e-05, "lon": 180.0}"#), "{line}");
        let back = decode(Some(line.as_bytes())).expect("valid");
        assert_eq!(back, txn);
        assert!(
            matches!(back.city, Some(Cow::Owned(_))),
            "escaped strings are unescaped into an owned copy"
        );
    }

    #[test]
    fn floats_are_written_as_python_repr() {
        let cases: &[(f64, &str)] = &[
            (124.7, "124.7"),
            (100.0, "100.0"),
            (0.0, "0.0"),
            (-0.5, "-0.5"),
            (4000.0, "4000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (-179.999999, "-179.999999"),
        ];
        for (v, want) in cases {
            let mut out = Vec::new();
            write_python_float(&mut out, *v);
            assert_eq!(std::str::from_utf8(&out).unwrap(), *want, "{v}");
        }
    }

    #[test]
    fn seed_timestamp_forms_decode() {
        let with = |ts: &str| SEED_LINE.replace("2025-11-07T07:30:38.730729+00:00", ts);
        let cases: &[(&str, i64)] = &[
            ("2025-11-07T07:30:38+00:00", 1_762_500_638_000_000),
            ("2025-11-07T04:16:53.653Z", 1_762_489_013_653_000),
            ("2025-11-07T09:30:38.730729+02:00", 1_762_500_638_730_729),
        ];
        for (ts, micros) in cases {
            let line = with(ts);
            let txn = decode(Some(line.as_bytes())).expect(ts);
            assert_eq!(txn.event_time, *micros, "{ts}");
            assert_eq!(txn.event_ts, *ts, "the raw string is kept");
        }
    }

    #[test]
    fn missing_optional_fields_and_unknown_fields_are_accepted() {
        let txn = decode(Some(
            br#"{"txn_id": "t1", "event_ts": "2025-11-07T07:30:38Z", "extra": {"a": [1, 2]}}"#,
        ))
        .expect("valid");
        assert_eq!(txn.txn_id, "t1");
        assert_eq!((txn.card_id, txn.amount, txn.lat), (None, None, None));
    }

    #[test]
    fn every_reject_reason() {
        let with = |from: &str, to: &str| SEED_LINE.replace(from, to);
        let cases: Vec<(Option<Vec<u8>>, &str)> = vec![
            (None, "empty_value"),
            (Some(b"\xff\xfe{}".to_vec()), "not_utf8"),
            (Some(b"".to_vec()), "malformed_json"),
            (Some(b"   ".to_vec()), "malformed_json"),
            (Some(b"garbage".to_vec()), "malformed_json"),
            (Some(SEED_LINE.as_bytes()[..40].to_vec()), "malformed_json"),
            (
                Some(format!("{SEED_LINE} trailing").into_bytes()),
                "malformed_json",
            ),
            (Some(b"[1, 2]".to_vec()), "not_an_object"),
            (Some(b"42".to_vec()), "not_an_object"),
            (Some(b"null".to_vec()), "not_an_object"),
            (Some(b"\"a string\"".to_vec()), "not_an_object"),
            (
                Some(
                    with(r#""txn_id": "6f1c1f0e-8a51-4d43-9e55-0c3f0b6f7d21", "#, "").into_bytes(),
                ),
                "missing_txn_id",
            ),
            (
                Some(with(r#""6f1c1f0e-8a51-4d43-9e55-0c3f0b6f7d21""#, "null").into_bytes()),
                "missing_txn_id",
            ),
            (
                Some(with(r#""6f1c1f0e-8a51-4d43-9e55-0c3f0b6f7d21""#, r#""""#).into_bytes()),
                "missing_txn_id",
            ),
            (
                Some(with(r#""event_ts": "2025-11-07T07:30:38.730729+00:00", "#, "").into_bytes()),
                "missing_event_ts",
            ),
            (
                Some(with(r#""2025-11-07T07:30:38.730729+00:00""#, "null").into_bytes()),
                "missing_event_ts",
            ),
            (
                Some(with("2025-11-07T07:30:38.730729+00:00", "yesterday").into_bytes()),
                "bad_event_ts",
            ),
            (
                Some(with("2025-11-07T07:30:38.730729+00:00", "2025-02-30T00:00:00Z").into_bytes()),
                "bad_event_ts",
            ),
            (
                Some(with(r#""2025-11-07T07:30:38.730729+00:00""#, "1762500638").into_bytes()),
                "wrong_type",
            ),
            (
                Some(with("1029.27", r#""1029.27""#).into_bytes()),
                "wrong_type",
            ),
            (
                Some(with(r#""card_190""#, "190").into_bytes()),
                "wrong_type",
            ),
            (Some(with("19.07", "true").into_bytes()), "wrong_type"),
            (
                Some(with(r#""6f1c1f0e-8a51-4d43-9e55-0c3f0b6f7d21""#, "[1]").into_bytes()),
                "wrong_type",
            ),
            (Some(with("19.07", "91.5").into_bytes()), "out_of_range"),
            (
                Some(with("72.87", "-180.000001").into_bytes()),
                "out_of_range",
            ),
            (
                Some(
                    with(
                        r#""user_id": "user_1001""#,
                        r#""card_id": null, "card_id": "x""#,
                    )
                    .into_bytes(),
                ),
                "duplicate_field",
            ),
        ];
        for (input, code) in cases {
            let shown = input.as_deref().map(String::from_utf8_lossy);
            let reject =
                decode(input.as_deref()).expect_err(&format!("{shown:?} must be rejected"));
            assert_eq!(reject.code(), code, "{shown:?} gave {reject}");
            assert!(
                reject.to_string().starts_with(&format!("{code}: ")),
                "{reject}"
            );
        }
    }

    #[test]
    fn wrong_type_names_the_field() {
        let line = SEED_LINE.replace("1029.27", r#""1029.27""#);
        let reject = decode(Some(line.as_bytes())).unwrap_err();
        assert!(
            matches!(
                reject,
                Reject::WrongType {
                    field: "amount",
                    ..
                }
            ),
            "{reject}"
        );
        assert!(
            reject
                .to_string()
                .starts_with("wrong_type: amount: invalid type: string"),
            "{reject}"
        );
    }

    /// A seeded SplitMix64 stream for the randomised tests.
    fn splitmix64(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    /// Both paths, compared bit for bit on the floats (`-0.0 == 0.0` would hide a sign).
    fn assert_same_on_both_paths(line: &[u8]) {
        let (fast, general) = (decode(Some(line)), decode_general(Some(line)));
        let bits = |t: &Result<Transaction<'_>, Reject>| {
            t.as_ref()
                .ok()
                .map(|t| [t.amount, t.lat, t.lon].map(|v| v.map(f64::to_bits)))
        };
        assert_eq!(fast, general, "{:?}", String::from_utf8_lossy(line));
        assert_eq!(
            bits(&fast),
            bits(&general),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }

    #[test]
    fn the_fast_path_takes_the_producer_shape_and_only_what_it_can_decode_exactly() {
        let taken = |line: &str| scan(line).is_some();
        assert!(taken(SEED_LINE));
        assert!(taken(
            r#" { "txn_id" : "t" ,"event_ts":null,"amount":-0.0,"lat":90.0 } "#
        ));
        assert!(taken("{}"));
        for (slot, name) in crate::FIELDS.iter().enumerate() {
            assert_eq!(slot_of(name), Some(slot), "{name}");
        }
        for other in ["", "txn_i", "txn_idx", "lat ", "category1", "Lat"] {
            assert_eq!(slot_of(other), None, "{other:?}");
        }
        for general in [
            SEED_LINE.replace("Amazon", r"Ama\u007aon"), // escape
            SEED_LINE.replace("\"lon\"", "\"extra\": 1, \"lon\""), // unknown field
            SEED_LINE.replace("1029.27", "1029"),        // integer
            SEED_LINE.replace("1029.27", "1.02927e3"),   // exponent
            SEED_LINE.replace("1029.27", "1029.2700000000001"), // 17 digits
            SEED_LINE.replace("1029.27", "01029.27"),    // leading zero
            SEED_LINE.replace("1029.27", "\"1029.27\""), // wrong type
            SEED_LINE.replace("\"INR\"", "7.5"),         // wrong type
            format!("{SEED_LINE}, "),
        ] {
            assert!(!taken(&general), "{general}");
        }
    }

    #[test]
    fn the_fast_path_agrees_with_serde_json_on_every_single_byte_edit_of_a_message() {
        let lines = [
            SEED_LINE.to_string(),
            SEED_LINE
                .replace("1029.27", "-0.05")
                .replace("19.07", "null"),
            r#"{"txn_id":"a","event_ts":"2025-11-07T07:30:38Z","lat":-90.0,"lon":180.5}"#
                .to_string(),
        ];
        let mut edits = 0;
        for line in &lines {
            let b = line.as_bytes();
            assert_same_on_both_paths(b);
            for i in 0..=b.len() {
                assert_same_on_both_paths(&b[..i]);
                for &c in b"\"\\,:{}[] .-+0159eEnul\x01\xc3" {
                    let mut replaced = b.to_vec();
                    let mut inserted = b.to_vec();
                    inserted.insert(i, c);
                    assert_same_on_both_paths(&inserted);
                    if i < b.len() {
                        replaced[i] = c;
                        assert_same_on_both_paths(&replaced);
                        let mut deleted = b.to_vec();
                        deleted.remove(i);
                        assert_same_on_both_paths(&deleted);
                    }
                    edits += 3;
                }
            }
        }
        assert!(edits > 10_000, "{edits}");
    }

    #[test]
    fn short_decimals_are_written_exactly_as_the_general_python_repr() {
        let mut next = splitmix64(42);
        let mut values = vec![
            0.0001,
            0.00011,
            1e9 - 0.5,
            999_999_999.999_999,
            0.1,
            0.2,
            0.3,
            1.0,
            12.5,
            -0.0001,
            1029.27,
            19.07,
            72.87,
            -33.8688,
            151.2093,
            0.000_099_999,
            1e9,
            123_456_789.123_456,
        ];
        for _ in 0..200_000 {
            let r = next();
            values.push(match r % 4 {
                // decimals of 0..8 fraction digits, any sign, up to 1e10
                0 | 1 => {
                    let digits = (next() % 9) as i32;
                    let m = (next() % 10_000_000_000_000) as f64;
                    let v = m / 10f64.powi(digits) / 10f64.powi((next() % 5) as i32);
                    if r % 8 < 4 {
                        v
                    } else {
                        -v
                    }
                }
                // any double in and around the fast path's range
                2 => f64::from_bits(
                    next() % (0x41E0_0000_0000_0000 - 0x3F00_0000_0000_0000)
                        + 0x3F00_0000_0000_0000,
                ),
                // results of arithmetic (0.1 + 0.2 and the like)
                _ => (next() % 100_000) as f64 * 0.01 + (next() % 1000) as f64 * 0.001,
            });
        }
        let mut taken = 0;
        for v in values {
            let (mut fast, mut general) = (Vec::new(), Vec::new());
            write_python_float(&mut fast, v);
            write_python_float_general(&mut general, v);
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&general),
                "{v:e}"
            );
            taken += usize::from(write_short_decimal(&mut Vec::new(), v));
        }
        assert!(taken > 50_000, "{taken}");
    }

    #[test]
    fn the_key_literals_are_the_schema_keys_in_order() {
        for (literal, field) in KEY_LITERALS.iter().zip(crate::FIELDS) {
            assert_eq!(*literal, format!("\"{field}\":"));
        }
        assert_eq!(KEY_LITERALS.len(), crate::FIELDS.len());
    }

    #[test]
    fn a_key_literal_matches_in_one_load_and_near_the_end_alike() {
        for (slot, literal) in KEY_LITERALS.iter().enumerate() {
            let long = format!("{literal} \"some value that is long\"");
            let short = literal.to_string();
            for text in [&long, &short] {
                assert!(starts_with_key(text.as_bytes(), slot), "{text}");
                // Any byte of the literal changed, or the literal cut short: no match.
                for at in 0..literal.len() {
                    let mut edited = text.clone().into_bytes();
                    edited[at] ^= 0x20;
                    assert!(!starts_with_key(&edited, slot), "{slot} {at}");
                    assert!(
                        !starts_with_key(&text.as_bytes()[..at], slot),
                        "{slot} {at}"
                    );
                }
            }
            // The other keys do not match it.
            for other in (0..KEY_LITERALS.len()).filter(|&o| o != slot) {
                assert!(!starts_with_key(long.as_bytes(), other), "{slot} {other}");
            }
        }
    }

    #[test]
    fn the_word_at_a_time_string_scan_finds_the_first_stop_byte() {
        let naive = |b: &[u8]| b.iter().position(|&c| STRING_STOP[usize::from(c)]);
        let mut text: Vec<u8> = "abcdefgh São Paulo 1234567890 zyxwvut".bytes().collect();
        assert_eq!(string_stop(&text), None);
        for at in 0..text.len() {
            for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                let saved = text[at];
                text[at] = stop;
                for from in 0..=at {
                    assert_eq!(
                        string_stop(&text[from..]),
                        naive(&text[from..]),
                        "{at} {from}"
                    );
                }
                // A second stop further on does not hide the first.
                if at + 3 < text.len() {
                    let later = text[at + 3];
                    text[at + 3] = 0x01;
                    assert_eq!(string_stop(&text), Some(at));
                    text[at + 3] = later;
                }
                text[at] = saved;
            }
        }
        for byte in 0..=255u8 {
            let b = [b'a', b'b', byte, b'c', b'd', b'e', b'f', b'g', b'h'];
            assert_eq!(string_stop(&b), naive(&b), "{byte:#x}");
        }
    }

    #[test]
    fn the_fast_path_agrees_with_serde_json_on_numbers() {
        // Pseudo-random decimals of every digit count the fast path takes, plus its edges.
        let mut next = splitmix64(0x9E37_79B9_7F4A_7C15);
        let mut numbers = vec![
            "0.0".to_string(),
            "-0.0".into(),
            "0.1".into(),
            "99999999999999.9".into(),
            "0.00000000000001".into(),
            "89.999999999999".into(),
        ];
        for _ in 0..20_000 {
            let digits = 2 + (next() % 14) as usize;
            let point = 1 + (next() % (digits as u64 - 1)) as usize;
            let mut text: String = (0..digits)
                .map(|_| char::from(b'0' + (next() % 10) as u8))
                .collect();
            if point > 1 && text.starts_with('0') {
                text.replace_range(..1, "7");
            }
            text.insert(point, '.');
            if next().is_multiple_of(2) {
                text.insert(0, '-');
            }
            numbers.push(text);
        }
        for n in &numbers {
            let line =
                format!(r#"{{"txn_id": "t", "event_ts": "2025-11-07T07:30:38Z", "amount": {n}}}"#);
            assert!(scan(&line).is_some(), "{line}");
            assert_same_on_both_paths(line.as_bytes());
        }
    }
}
