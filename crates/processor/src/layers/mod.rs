//! The layers: pure functions from a decoded batch to Arrow record batches (or CSV bytes).
//! They know nothing of files or Kafka, which is what makes them easy to test.

pub mod bronze;
pub mod quarantine;
pub mod raw_csv;
pub mod silver;

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, TimeUnit};
use txn_core::json::{decode_text, payload_text};
use txn_core::{Reject, Transaction};

use crate::source::{RawBatch, RawMessage};

/// A batch after decoding: every message is either a record or a reject, by index into `raw`.
pub struct DecodedBatch<'a> {
    pub raw: &'a RawBatch,
    pub valid: Vec<(u32, Transaction<'a>)>,
    pub rejects: Vec<(u32, Reject)>,
    /// Each message's value as text, by index; `None` when it is absent or not UTF-8. Checked
    /// once, while decoding, and used again by the payload columns.
    pub texts: Vec<Option<&'a str>>,
}

impl<'a> DecodedBatch<'a> {
    /// Decodes every message of `raw` once, in parallel chunks on large batches.
    pub fn decode(raw: &'a RawBatch) -> Self {
        const CHUNK: usize = 16_384;
        let n = raw.messages.len();
        let threads = std::thread::available_parallelism()
            .map_or(1, |p| p.get())
            .min(n.div_ceil(CHUNK))
            .max(1);
        if threads == 1 {
            return Self::decode_range(raw, 0, n, n);
        }
        let per = n.div_ceil(threads);
        // The first part is allocated for the whole batch and the others appended to it: the
        // first part's rows are never copied (a merge into a new vector copied them all).
        let capacity = |t: usize| if t == 0 { n } else { per };
        let range = |t: usize| (t * per, ((t + 1) * per).min(n));
        let mut parts = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    crate::spawn(s, "decode", move || {
                        let (from, to) = range(t);
                        Self::decode_range(raw, from, to, capacity(t))
                    })
                })
                .collect();
            // A decode thread cannot panic on any input (decode returns a reject instead); should
            // one die anyway, decode its part here rather than lose it.
            handles
                .into_iter()
                .enumerate()
                .map(|(t, h)| {
                    h.join().unwrap_or_else(|_| {
                        let (from, to) = range(t);
                        Self::decode_range(raw, from, to, capacity(t))
                    })
                })
                .collect::<Vec<_>>()
        })
        .into_iter();
        let Some(mut out) = parts.next() else {
            return Self::decode_range(raw, 0, n, n);
        };
        for part in parts {
            out.valid.extend(part.valid);
            out.rejects.extend(part.rejects);
            out.texts.extend(part.texts);
        }
        out
    }

    /// Messages `from..to` of `raw`, into vectors with room for `capacity` messages.
    fn decode_range(raw: &'a RawBatch, from: usize, to: usize, capacity: usize) -> Self {
        let mut valid = Vec::with_capacity(capacity);
        let mut rejects = Vec::new();
        let mut texts = Vec::with_capacity(capacity);
        for (i, m) in raw.messages[from..to].iter().enumerate() {
            let index = (from + i) as u32;
            let text = payload_text(raw.value(m));
            texts.push(text.as_ref().ok().copied());
            match text.and_then(decode_text) {
                Ok(txn) => valid.push((index, txn)),
                Err(reason) => rejects.push((index, reason)),
            }
        }
        DecodedBatch {
            raw,
            valid,
            rejects,
            texts,
        }
    }

    /// The values of the messages at `indices` as a string column, from the texts the decoder
    /// checked (no second UTF-8 check); an absent value is null, one that is not UTF-8 has its
    /// invalid sequences replaced (U+FFFD; its reject says where).
    pub fn value_column(&self, indices: impl ExactSizeIterator<Item = u32>) -> ArrayRef {
        let mut b = StringBuilder::with_capacity(indices.len(), self.raw.bytes());
        for i in indices {
            b.append_option(self.text(i));
        }
        Arc::new(b.finish())
    }

    /// The value of message `index` as text: the one the decoder checked, else (not UTF-8) with
    /// its invalid sequences replaced; `None` when absent.
    pub fn text(&self, index: u32) -> Option<Cow<'a, str>> {
        match self.texts[index as usize] {
            Some(text) => Some(Cow::Borrowed(text)),
            None => lossy(self.raw.value(self.message(index))),
        }
    }

    pub fn message(&self, index: u32) -> &'a RawMessage {
        &self.raw.messages[index as usize]
    }
}

/// A stand-in string column (all null) of `rows` rows for a payload column (`value`,
/// `json_str`) whose chunks are encoded apart ([`crate::chunk`]) and copied into the file
/// ([`crate::writer::Shared`]); never written itself.
pub fn placeholder(rows: usize) -> ArrayRef {
    arrow_array::new_null_array(&DataType::Utf8, rows)
}

/// Parquet TIMESTAMP(MICROS, UTC): read as tz-aware values by pandas, DuckDB, polars and Spark.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub fn field(name: &str, data_type: DataType, nullable: bool) -> Field {
    Field::new(name, data_type, nullable)
}

pub fn timestamps(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter(values).with_timezone("UTC"))
}

/// Bytes as a string column value; invalid UTF-8 is replaced (U+FFFD), the reject says where.
/// (The strict check first: it is several times faster than the lossy one on valid input.)
pub fn lossy(bytes: Option<&[u8]>) -> Option<Cow<'_, str>> {
    bytes.map(|b| match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    })
}

pub fn strings<'s>(
    len: usize,
    bytes: usize,
    values: impl Iterator<Item = Option<&'s str>>,
) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(len, bytes);
    for v in values {
        b.append_option(v);
    }
    Arc::new(b.finish())
}

/// The message keys as a string column: one copy of each into one buffer. Invalid UTF-8 is
/// replaced (U+FFFD) so the column stays a valid string column.
pub fn key_column(raw: &RawBatch) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(raw.messages.len(), raw.messages.len() * 16);
    for m in &raw.messages {
        b.append_option(lossy(raw.key(m)));
    }
    Arc::new(b.finish())
}

/// Kafka's millisecond timestamp as microseconds.
pub fn kafka_ts(m: &RawMessage) -> Option<i64> {
    m.timestamp_ms.map(|ms| ms * 1000)
}

/// The output layers: folder, file prefix and extension of each, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    Bronze,
    Silver,
    Gold,
    Quarantine,
    RawCsv,
}

impl Layer {
    pub const ALL: [Layer; 5] = [
        Layer::Bronze,
        Layer::Silver,
        Layer::Gold,
        Layer::Quarantine,
        Layer::RawCsv,
    ];

    pub fn folder(self) -> &'static str {
        match self {
            Layer::Bronze => "bronze",
            Layer::Silver => "silver",
            Layer::Gold => "gold",
            Layer::Quarantine => "quarantine",
            Layer::RawCsv => "raw_csv",
        }
    }

    pub fn prefix(self) -> &'static str {
        match self {
            Layer::RawCsv => "raw",
            other => other.folder(),
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Layer::RawCsv => "csv",
            _ => "parquet",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, StringArray};

    #[test]
    fn a_batch_decoded_in_parallel_parts_equals_it_decoded_whole() {
        let mut raw = RawBatch::default();
        for i in 0..40_000i64 {
            let value = if i % 997 == 0 {
                "not json".to_string()
            } else {
                format!(
                    r#"{{"txn_id": "t-{i}", "event_ts": "2024-05-01T12:00:00Z", "amount": 1.5}}"#
                )
            };
            raw.push(0, i, None, None, Some(value.as_bytes()));
        }
        let parallel = DecodedBatch::decode(&raw);
        let whole = DecodedBatch::decode_range(&raw, 0, 40_000, 40_000);
        assert_eq!(parallel.valid, whole.valid);
        assert_eq!(
            parallel.rejects.iter().map(|r| r.0).collect::<Vec<_>>(),
            whole.rejects.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        assert_eq!(parallel.rejects.len(), 41);
        assert_eq!(parallel.texts, whole.texts);
        assert_eq!(parallel.valid[39_000].1.txn_id, "t-39040");
    }

    #[test]
    fn the_key_column_keeps_every_key_and_replaces_what_is_not_utf8() {
        let mut raw = RawBatch::default();
        raw.push(0, 0, None, Some(b"card_1"), None);
        raw.push(0, 1, None, None, None);
        raw.push(0, 2, None, Some("São".as_bytes()), None);
        let keys = key_column(&raw);
        let keys = keys.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(keys.value(0), "card_1");
        assert!(keys.is_null(1));
        assert_eq!(keys.value(2), "São");
        raw.push(0, 3, None, Some(b"bad \xff key"), None);
        let keys = key_column(&raw);
        let keys = keys.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(keys.len(), 4);
        assert_eq!(keys.value(0), "card_1");
        assert!(keys.is_null(1));
        assert_eq!(keys.value(3), "bad \u{FFFD} key");
    }

    #[test]
    fn the_value_column_takes_the_decoders_checked_text_and_replaces_what_is_not_utf8() {
        let mut raw = RawBatch::default();
        raw.push(0, 0, None, None, Some(b"not json"));
        raw.push(0, 1, None, None, None);
        raw.push(0, 2, None, None, Some(b"bad \xff byte"));
        let decoded = DecodedBatch::decode(&raw);
        assert_eq!(decoded.texts, vec![Some("not json"), None, None]);
        assert_eq!(decoded.rejects.len(), 3);
        let column = decoded.value_column(0..3);
        let column = column.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(column.value(0), "not json");
        assert!(column.is_null(1));
        assert_eq!(column.value(2), "bad \u{FFFD} byte");
        let picked = decoded.value_column([2, 0].into_iter());
        let picked = picked.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(picked.len(), 2);
        assert_eq!(picked.value(1), "not json");
    }
}
