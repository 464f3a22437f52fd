//! Quarantine: every message that is not a valid record, with the reason and where it came from.
//! The same for any dataset.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Schema, SchemaRef};

use super::columns::{field, lossy, strings, timestamp_type, timestamps};
use crate::engine::dataset::{Batch, Dataset};
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::Result;
use crate::sinks::files::FileLayer;

/// The quarantine output: one Parquet file of the batch's rejects.
pub struct Quarantine(pub FileLayer);

impl Default for Quarantine {
    /// In the folder `quarantine/`.
    fn default() -> Self {
        Quarantine(FileLayer::parquet("quarantine").dated_by("bad_ingest_ts"))
    }
}

impl<D: Dataset> Output<D> for Quarantine {
    fn target(&self) -> Target {
        Target::Files(self.0)
    }

    fn stage(&self, input: &StageInput<'_, '_, D>) -> Result<Staged> {
        let n = input.batch.rejects.len();
        if n == 0 {
            return Ok(Staged::nothing());
        }
        let rows = build(input.batch, input.topic, input.plan.planned_at)?;
        input.parquet(self.0, &rows)
    }
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("bad_json", DataType::Utf8, true),
        field("bad_ingest_ts", timestamp_type(), false),
        field("reason", DataType::Utf8, false),
        field("topic", DataType::Utf8, false),
        field("partition", DataType::Int32, false),
        field("offset", DataType::Int64, false),
        field("key", DataType::Utf8, true),
    ]))
}

/// `ingest_ts` is the batch's planned time, so a re-run writes identical rows.
pub fn build<D: Dataset>(batch: &Batch<'_, D>, topic: &str, ingest_ts: i64) -> Result<RecordBatch> {
    let rows = &batch.rejects;
    let n = rows.len();
    let msg = |i: &u32| batch.message(*i);
    let values: Vec<_> = rows.iter().map(|(i, _)| batch.text_alone(*i)).collect();
    let keys: Vec<_> = rows
        .iter()
        .map(|(i, _)| lossy(batch.raw.key(msg(i))))
        .collect();
    let reasons: Vec<String> = rows.iter().map(|(_, r)| r.to_string()).collect();
    let columns: Vec<ArrayRef> = vec![
        strings(
            n,
            values
                .iter()
                .map(|v| v.as_ref().map_or(0, |s| s.len()))
                .sum(),
            values.iter().map(|v| v.as_deref()),
        ),
        timestamps(std::iter::repeat_n(Some(ingest_ts), n)),
        Arc::new(StringArray::from_iter_values(reasons.iter())),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(topic, n))),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|(i, _)| msg(i).partition),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(i, _)| msg(i).offset),
        )),
        strings(n, n * 8, keys.iter().map(|k| k.as_deref())),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}
