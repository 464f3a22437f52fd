//! Seed 002's windowed aggregates (`FRAUD_DETECTION=true`), `user_aggregates/`: 5-minute windows
//! per (user_id, category), update mode, with the merchants as a list column.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::Transactions;
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::Result;
use crate::operators::user_windows::UserWindowRow;
use crate::outputs::columns::{field, strings, timestamp_type, timestamps};
use crate::sinks::files::FileLayer;

pub const LAYER: FileLayer = FileLayer::parquet("user_aggregates").upserted_on(&[
    "user_id",
    "category",
    "window_start",
    "window_end",
]);

pub struct UserAggregates;

impl Output<Transactions> for UserAggregates {
    fn target(&self) -> Target {
        Target::Files(LAYER)
    }

    fn stage(&self, input: &StageInput<'_, '_, Transactions>) -> Result<Staged> {
        let rows = &input.derived()?.user_windows;
        if rows.is_empty() {
            return Ok(Staged::nothing());
        }
        let batch = build(rows)?;
        input.parquet(LAYER, &batch)
    }
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("window_start", timestamp_type(), false),
        field("window_end", timestamp_type(), false),
        field("user_id", DataType::Utf8, true),
        field("category", DataType::Utf8, true),
        field("transaction_count", DataType::Int64, false),
        field("total_amount", DataType::Float64, true),
        field("avg_amount", DataType::Float64, true),
        field("max_amount", DataType::Float64, true),
        field("min_amount", DataType::Float64, true),
        field(
            "merchants",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
    ]))
}

pub fn build(rows: &[UserWindowRow]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut merchants = ListBuilder::new(StringBuilder::new());
    for r in rows {
        for m in &r.merchants {
            merchants.values().append_option(m.as_deref());
        }
        merchants.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        timestamps(rows.iter().map(|r| Some(r.window_start))),
        timestamps(rows.iter().map(|r| Some(r.window_end))),
        strings(n, n * 9, rows.iter().map(|r| r.user_id())),
        strings(n, n * 10, rows.iter().map(|r| r.category())),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.agg.count as i64),
        )),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.agg.sum()))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.agg.avg()))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.agg.max()))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.agg.min()))),
        Arc::new(merchants.finish()),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}
