//! Bronze: every message of the batch as it came, with its Kafka coordinates. The same for any
//! dataset.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Schema, SchemaRef};

use super::columns::{field, kafka_ts, key_column, placeholder, timestamp_type, timestamps};
use crate::engine::dataset::Dataset;
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::engine::source::RawBatch;
use crate::error::Result;
use crate::sinks::files::{FileLayer, Shared};

/// The bronze output: one Parquet file of every message per batch.
pub struct Bronze(pub FileLayer);

impl Default for Bronze {
    /// In the folder `bronze/`.
    fn default() -> Self {
        Bronze(FileLayer::parquet("bronze").dated_by("kafka_ts"))
    }
}

impl<D: Dataset> Output<D> for Bronze {
    fn target(&self) -> Target {
        Target::Files(self.0)
    }

    fn own_thread(&self) -> bool {
        true
    }

    fn stage(&self, input: &StageInput<'_, '_, D>) -> Result<Staged> {
        let (raw, batch) = (input.raw, input.batch);
        let n = raw.messages.len();
        if n == 0 {
            // A batch that only records lost offsets: no file.
            return Ok(Staged::nothing());
        }
        // Encoded once for the batch: silver may copy them (the same bytes) into its file.
        let chunks = batch.value_chunks()?;
        let rows = build(raw, input.topic)?;
        let wait = || Ok(Some(chunks.clone()));
        let values = || batch.value_column(0..n as u32);
        let (file, _) = input.files.write_parquet_with(
            self.0,
            &rows,
            input.plan.planned_at,
            input.plan.batch,
            Shared {
                column: VALUE,
                wait: &wait,
                values: &values,
                groups: None,
            },
        )?;
        Ok(Staged::file(n as u64, file))
    }
}

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
/// ([`crate::sinks::files::chunk`]), and [`crate::engine::dataset::Batch::value_column`] is the writer's
/// fallback.
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
