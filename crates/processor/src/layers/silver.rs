//! Silver: the valid transactions, typed, with `event_time` and the original JSON.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};

use super::{field, kafka_ts, strings, timestamp_type, timestamps, DecodedBatch};
use crate::error::Result;

pub fn schema() -> SchemaRef {
    let s = |name| field(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        field("txn_id", DataType::Utf8, false),
        s("user_id"),
        s("card_id"),
        s("merchant"),
        s("category"),
        field("amount", DataType::Float64, true),
        s("currency"),
        s("status"),
        s("city"),
        s("country"),
        field("lat", DataType::Float64, true),
        field("lon", DataType::Float64, true),
        field("kafka_ts", timestamp_type(), true),
        field("json_str", DataType::Utf8, false),
        field("event_time", timestamp_type(), false),
    ]))
}

pub fn build(batch: &DecodedBatch<'_>) -> Result<RecordBatch> {
    let rows = &batch.valid;
    let n = rows.len();
    macro_rules! text {
        ($f:ident, $avg:expr) => {
            strings(n, n * $avg, rows.iter().map(|(_, t)| t.$f.as_deref()))
        };
    }
    let floats = |f: fn(&txn_core::Transaction<'_>) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from_iter(rows.iter().map(|(_, t)| f(t))))
    };
    let json_bytes: usize = rows
        .iter()
        .map(|(i, _)| batch.raw.value(batch.message(*i)).map_or(0, <[u8]>::len))
        .sum();
    let columns: Vec<ArrayRef> = vec![
        strings(n, n * 36, rows.iter().map(|(_, t)| Some(t.txn_id.as_ref()))),
        text!(user_id, 9),
        text!(card_id, 8),
        text!(merchant, 8),
        text!(category, 10),
        floats(|t| t.amount),
        text!(currency, 3),
        text!(status, 8),
        text!(city, 14),
        text!(country, 2),
        floats(|t| t.lat),
        floats(|t| t.lon),
        timestamps(rows.iter().map(|(i, _)| kafka_ts(batch.message(*i)))),
        // A valid record was valid UTF-8, so its payload is the JSON text as it came.
        strings(
            n,
            json_bytes,
            rows.iter().map(|(i, _)| {
                batch
                    .raw
                    .value(batch.message(*i))
                    .and_then(|b| std::str::from_utf8(b).ok())
            }),
        ),
        timestamps(rows.iter().map(|(_, t)| Some(t.event_time))),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}
