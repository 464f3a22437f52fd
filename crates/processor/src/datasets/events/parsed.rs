//! The parsed events, one Parquet file per id per batch under the Hive partition `id=<id>`
//! (`events/id=3/events_<time>_<batch>.parquet`): readers with Hive partitioning get `id` from
//! the folder, as with Spark's `partitionBy("id")`. Columns: `key`, `ts`, `value`, `source`.
//! As a Delta table (`OUTPUT_FORMAT=delta`): partitioned by the date of `ts`, then by `id`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};

use super::{EventBatch, Events};
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::Result;
use crate::outputs::columns::{field, lossy, strings, timestamp_type, timestamps};
use crate::sinks::files::FileLayer;

pub const LAYER: FileLayer = FileLayer::parquet("events")
    .hive_partitioned()
    .dated_by("ts");

pub struct Parsed;

impl Output<Events> for Parsed {
    fn target(&self) -> Target {
        Target::Files(LAYER)
    }

    fn own_thread(&self) -> bool {
        true
    }

    fn stage(&self, input: &StageInput<'_, '_, Events>) -> Result<Staged> {
        let batch = input.batch;
        let mut by_id: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (row, (_, e)) in batch.valid.iter().enumerate() {
            by_id.entry(e.id).or_default().push(row);
        }
        let mut files = Vec::with_capacity(by_id.len());
        for (id, rows) in &by_id {
            let records = build(batch, rows)?;
            files.push(input.files.write_parquet_partition(
                LAYER,
                &format!("id={id}"),
                &records,
                input.plan.planned_at,
                input.plan.batch,
            )?);
        }
        Ok(Staged::files(batch.valid.len() as u64, files))
    }
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("key", DataType::Utf8, true),
        field("ts", timestamp_type(), false),
        field("value", DataType::Float64, false),
        field("source", DataType::Utf8, true),
    ]))
}

/// The rows `rows` (indices into the batch's valid events) of one id.
pub fn build(batch: &EventBatch<'_>, rows: &[usize]) -> Result<RecordBatch> {
    let n = rows.len();
    let events = || rows.iter().map(|&r| &batch.valid[r]);
    let keys: Vec<_> = events()
        .map(|(i, _)| lossy(batch.raw.key(batch.message(*i))))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        strings(n, n * 2, keys.iter().map(|k| k.as_deref())),
        timestamps(events().map(|(_, e)| Some(e.ts))),
        Arc::new(Float64Array::from_iter_values(
            events().map(|(_, e)| e.value),
        )),
        strings(n, n * 12, events().map(|(_, e)| e.source.as_deref())),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}
