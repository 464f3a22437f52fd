//! Gold: the per-card window aggregates the gold operator emitted this batch (closed windows in
//! append mode, changed ones in update mode).

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};

use super::Transactions;
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::Result;
use crate::operators::windows::WindowRow;
use crate::outputs::columns::{field, strings, timestamp_type, timestamps};
use crate::sinks::files::FileLayer;

pub const LAYER: FileLayer =
    FileLayer::parquet("gold").upserted_on(&["card_id", "window_start", "window_end"]);

pub struct Gold;

impl Output<Transactions> for Gold {
    fn target(&self) -> Target {
        Target::Files(LAYER)
    }

    fn stage(&self, input: &StageInput<'_, '_, Transactions>) -> Result<Staged> {
        let rows = &input.derived()?.gold.rows;
        if rows.is_empty() {
            return Ok(Staged::nothing());
        }
        let batch = build(rows)?;
        input.parquet(LAYER, &batch)
    }
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("card_id", DataType::Utf8, true),
        field("window_start", timestamp_type(), false),
        field("window_end", timestamp_type(), false),
        field("txn_count", DataType::Int64, false),
        field("sum_amount", DataType::Float64, true),
        field("avg_amount", DataType::Float64, true),
        field("max_amount", DataType::Float64, true),
    ]))
}

pub fn build(rows: &[WindowRow]) -> Result<RecordBatch> {
    let n = rows.len();
    let columns: Vec<ArrayRef> = vec![
        strings(n, n * 8, rows.iter().map(|r| r.key.as_deref())),
        timestamps(rows.iter().map(|r| Some(r.window_start))),
        timestamps(rows.iter().map(|r| Some(r.window_end))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.agg.count as i64),
        )),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.agg.sum()))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.agg.avg()))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.agg.max()))),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}
