//! Silver: the valid transactions, typed, with `event_time` and the original JSON.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};

use super::{Transactions, TxnBatch};
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::Result;
use crate::outputs::columns::{field, kafka_ts as kafka_ts_of, placeholder, timestamp_type};
use crate::sinks::files::{column_descr, encode_text_in, row_groups, FileLayer, Shared};

pub const LAYER: FileLayer = FileLayer::parquet("silver").dated_by("event_time");

/// The silver output: one Parquet file of the valid transactions per batch.
pub struct Silver;

impl Output<Transactions> for Silver {
    fn target(&self) -> Target {
        Target::Files(LAYER)
    }

    fn own_thread(&self) -> bool {
        true
    }

    fn stage(&self, input: &StageInput<'_, '_, Transactions>) -> Result<Staged> {
        let batch = input.batch;
        let n = batch.valid.len();
        if n == 0 {
            return Ok(Staged::nothing());
        }
        let rows = build(batch)?;
        // Without rejects, `json_str` is bronze's `value`: the same encoded chunks. Otherwise
        // bronze's pages of valid rows (its rejects are in pages of their own), in row groups of
        // the valid rows of bronze's; the valid rows' payloads are encoded here only when those
        // cannot be had (a row group of bronze's without a valid row).
        let groups = (!batch.rejects.is_empty())
            .then(|| batch.valid_groups())
            .flatten();
        let wait = || -> Result<Option<Vec<_>>> {
            if batch.rejects.is_empty() {
                return batch.value_chunks().map(Some);
            }
            if groups.is_some() {
                if let Some(chunks) = batch.valid_value_chunks()? {
                    return Ok(Some(chunks));
                }
            }
            let descr = column_descr(&rows.schema(), JSON_STR)?;
            let valid = &batch.valid;
            let in_groups = groups.clone().unwrap_or_else(|| row_groups(n));
            encode_text_in(&descr, &in_groups, &|row| batch.text(valid[row].0), None).map(Some)
        };
        let json = || json_column(batch);
        let (file, _) = input.files.write_parquet_with(
            LAYER,
            &rows,
            input.plan.planned_at,
            input.plan.batch,
            Shared {
                column: JSON_STR,
                wait: &wait,
                values: &json,
                groups: groups.clone(),
            },
        )?;
        Ok(Staged::file(n as u64, file))
    }
}

/// The index of `json_str` in [`schema`].
pub const JSON_STR: usize = 13;

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
        // Nullable like bronze's `value` (it never holds a null): then a batch without rejects
        // copies bronze's encoded `value` chunk instead of compressing the same bytes again.
        field("json_str", DataType::Utf8, true),
        field("event_time", timestamp_type(), false),
    ]))
}

/// The `json_str` column: each valid row's payload.
pub fn json_column(batch: &TxnBatch<'_>) -> ArrayRef {
    batch.value_column(batch.valid.iter().map(|(i, _)| *i))
}

/// One pass over the rows, appending to every column; `json_str` is a [`placeholder`]: its
/// chunks are encoded apart ([`crate::sinks::files::chunk`]) or copied from bronze, and [`json_column`] is the
/// writer's fallback.
pub fn build(batch: &TxnBatch<'_>) -> Result<RecordBatch> {
    let rows = &batch.valid;
    let n = rows.len();
    let text = |avg: usize| StringBuilder::with_capacity(n, n * avg);
    let (mut txn_id, mut user_id, mut card_id, mut merchant, mut category) =
        (text(36), text(9), text(8), text(8), text(12));
    let (mut currency, mut status, mut city, mut country) = (text(3), text(8), text(14), text(2));
    let (mut amount, mut lat, mut lon) = (
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
    );
    let (mut kafka_ts, mut event_time) = (
        TimestampMicrosecondBuilder::with_capacity(n),
        TimestampMicrosecondBuilder::with_capacity(n),
    );
    for (i, t) in rows {
        txn_id.append_value(&t.txn_id);
        user_id.append_option(t.user_id.as_deref());
        card_id.append_option(t.card_id.as_deref());
        merchant.append_option(t.merchant.as_deref());
        category.append_option(t.category.as_deref());
        amount.append_option(t.amount);
        currency.append_option(t.currency.as_deref());
        status.append_option(t.status.as_deref());
        city.append_option(t.city.as_deref());
        country.append_option(t.country.as_deref());
        lat.append_option(t.lat);
        lon.append_option(t.lon);
        kafka_ts.append_option(kafka_ts_of(batch.message(*i)));
        event_time.append_value(t.event_time);
    }
    let utc = |b: &mut TimestampMicrosecondBuilder| -> ArrayRef {
        Arc::new(b.finish().with_timezone("UTC"))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(txn_id.finish()),
        Arc::new(user_id.finish()),
        Arc::new(card_id.finish()),
        Arc::new(merchant.finish()),
        Arc::new(category.finish()),
        Arc::new(amount.finish()),
        Arc::new(currency.finish()),
        Arc::new(status.finish()),
        Arc::new(city.finish()),
        Arc::new(country.finish()),
        Arc::new(lat.finish()),
        Arc::new(lon.finish()),
        utc(&mut kafka_ts),
        placeholder(n),
        utc(&mut event_time),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}
