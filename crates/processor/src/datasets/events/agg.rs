//! The window aggregates the batch changed (update mode, as Spark's `outputMode("update")`):
//! `window_start`, `window_end`, `id`, `avg_value`, `event_count`, `min_value`, `max_value`, to
//! `events_agg/` and printed like Spark's console sink.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};

use super::{spark_time, Events};
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::{Error, Result};
use crate::operators::windows::WindowRow;
use crate::outputs::columns::{field, timestamp_type, timestamps};
use crate::outputs::console::spark_table;
use crate::sinks::files::FileLayer;

pub const LAYER: FileLayer =
    FileLayer::parquet("events_agg").upserted_on(&["id", "window_start", "window_end"]);

pub struct Aggregates;

impl Output<Events> for Aggregates {
    fn target(&self) -> Target {
        Target::Files(LAYER)
    }

    fn stage(&self, input: &StageInput<'_, '_, Events>) -> Result<Staged> {
        let rows = &input.derived()?.rows;
        if rows.is_empty() {
            return Ok(Staged::nothing());
        }
        let mut sorted: Vec<&WindowRow> = rows.iter().collect();
        sorted.sort_by_key(|r| (r.window_start, id_of(r).unwrap_or(i64::MIN)));
        let table: Vec<Vec<String>> = sorted
            .iter()
            .map(|r| {
                vec![
                    spark_time(r.window_start),
                    spark_time(r.window_end),
                    r.key.clone().unwrap_or_default(),
                    r.agg.avg().map_or("null".into(), |v| format!("{v:.3}")),
                ]
            })
            .collect();
        // The seed's console sink, on stdout as Spark prints it (one JSON object with
        // LOG_FORMAT=json).
        let text = spark_table(
            input.plan.batch,
            &["window_start", "window_end", "id", "avg_value"],
            &table,
        );
        crate::engine::progress::print_block(
            "console table events_agg",
            input.plan.batch,
            text.trim_end_matches('\n'),
        );
        let records = build(&sorted)?;
        input.parquet(LAYER, &records)
    }
}

fn id_of(row: &WindowRow) -> Option<i64> {
    row.key.as_deref().and_then(|k| k.parse().ok())
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("window_start", timestamp_type(), false),
        field("window_end", timestamp_type(), false),
        field("id", DataType::Int64, false),
        field("avg_value", DataType::Float64, true),
        field("event_count", DataType::Int64, false),
        field("min_value", DataType::Float64, true),
        field("max_value", DataType::Float64, true),
    ]))
}

pub fn build(rows: &[&WindowRow]) -> Result<RecordBatch> {
    let ids = rows
        .iter()
        .map(|r| {
            id_of(r).ok_or_else(|| Error::Internal(format!("window key {:?} is not an id", r.key)))
        })
        .collect::<Result<Vec<i64>>>()?;
    let columns: Vec<ArrayRef> = vec![
        timestamps(rows.iter().map(|r| Some(r.window_start))),
        timestamps(rows.iter().map(|r| Some(r.window_end))),
        Arc::new(Int64Array::from(ids)),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.agg.avg()))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.agg.count as i64),
        )),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.agg.min()))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.agg.max()))),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}
