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
use txn_core::{decode, Reject, Transaction};

use crate::source::{RawBatch, RawMessage};

/// A batch after decoding: every message is either a record or a reject, by index into `raw`.
pub struct DecodedBatch<'a> {
    pub raw: &'a RawBatch,
    pub valid: Vec<(u32, Transaction<'a>)>,
    pub rejects: Vec<(u32, Reject)>,
}

impl<'a> DecodedBatch<'a> {
    /// Decodes every message of `raw` once.
    pub fn decode(raw: &'a RawBatch) -> Self {
        let mut valid = Vec::with_capacity(raw.messages.len());
        let mut rejects = Vec::new();
        for (i, m) in raw.messages.iter().enumerate() {
            match decode(raw.value(m)) {
                Ok(txn) => valid.push((i as u32, txn)),
                Err(reason) => rejects.push((i as u32, reason)),
            }
        }
        DecodedBatch { raw, valid, rejects }
    }

    pub fn message(&self, index: u32) -> &'a RawMessage {
        &self.raw.messages[index as usize]
    }
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
pub fn lossy(bytes: Option<&[u8]>) -> Option<Cow<'_, str>> {
    bytes.map(String::from_utf8_lossy)
}

pub fn strings<'s>(len: usize, bytes: usize, values: impl Iterator<Item = Option<&'s str>>) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(len, bytes);
    for v in values {
        b.append_option(v);
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
    pub const ALL: [Layer; 5] = [Layer::Bronze, Layer::Silver, Layer::Gold, Layer::Quarantine, Layer::RawCsv];

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
