//! Bronze: every message of the batch as it came, with its Kafka coordinates.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Schema, SchemaRef};

use super::{field, kafka_ts, key_column, placeholder, timestamp_type, timestamps};
use crate::error::Result;
use crate::source::RawBatch;

/// The index of `value` in [`schema`].
pub const VALUE: usize = 1;

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("key", DataType::Utf8, true),
        field("value", DataType::Utf8, true),
        field("kafka_ts", timestamp_type(), true),
        field("topic", DataType::Utf8, false),
        field("partition", DataType::Int32, false),
        field("offset", DataType::Int64, false),
    ]))
}

/// Every message's coordinates; `value` is a [`placeholder`]: its chunks are encoded apart
/// ([`crate::chunk`]), and [`super::DecodedBatch::value_column`] is the writer's fallback.
pub fn build(raw: &RawBatch, topic: &str) -> Result<RecordBatch> {
    let n = raw.messages.len();
    let columns: Vec<ArrayRef> = vec![
        key_column(raw),
        placeholder(n),
        timestamps(raw.messages.iter().map(kafka_ts)),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(topic, n))),
        Arc::new(Int32Array::from_iter_values(
            raw.messages.iter().map(|m| m.partition),
        )),
        Arc::new(Int64Array::from_iter_values(
            raw.messages.iter().map(|m| m.offset),
        )),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}
