//! Arrow column helpers shared by the outputs of every dataset: typed timestamps, string
//! columns from message bytes, and the stand-in for a payload column encoded apart.

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, StringBuilder};
use arrow_array::{ArrayRef, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, TimeUnit};

use crate::engine::source::{RawBatch, RawMessage};

/// A stand-in string column (all null) of `rows` rows for a payload column (`value`,
/// `json_str`) whose chunks are encoded apart ([`crate::sinks::files::chunk`]) and copied into the file
/// ([`crate::sinks::files::Shared`]); never written itself.
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

pub use crate::engine::dataset::lossy;

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
    // The keys' bytes checked as UTF-8 at once, in one buffer (a check per key was most of the
    // column's time); a batch with a key that is not UTF-8 is built again key by key.
    let mut keys = BinaryBuilder::with_capacity(raw.messages.len(), raw.messages.len() * 16);
    for m in &raw.messages {
        keys.append_option(raw.key(m));
    }
    if let Ok(keys) = StringArray::try_from_binary(keys.finish()) {
        return Arc::new(keys);
    }
    let mut b = StringBuilder::with_capacity(raw.messages.len(), raw.messages.len() * 16);
    for m in &raw.messages {
        b.append_option(lossy(raw.key(m)));
    }
    Arc::new(b.finish())
}

/// Kafka's millisecond timestamp as microseconds.
pub fn kafka_ts(m: &RawMessage) -> Option<i64> {
    // A producer may set any CreateTime: one beyond the microsecond range is left out (null).
    m.timestamp_ms.and_then(|ms| ms.checked_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, StringArray};

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
}
