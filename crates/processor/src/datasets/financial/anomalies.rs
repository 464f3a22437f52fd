//! The anomalies of each batch as Parquet (`financial_anomalies/`), the same as the messages of
//! the anomalies topic: `anomalyType`, `userId`, `transactionId`, `merchantId`, `amount`,
//! `transactionTime`, and the figures (`windowStart`, `windowEnd`, `count` for HIGH_FREQUENCY;
//! `usualMean`, `usualStddev`, `zScore` for UNUSUAL_AMOUNT; `threshold`).

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};

use super::Financial;
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::Result;
use crate::operators::anomalies::Anomaly;
use crate::outputs::columns::{field, strings, timestamp_type, timestamps};
use crate::sinks::files::FileLayer;

pub const LAYER: FileLayer = FileLayer::parquet("financial_anomalies").dated_by("transactionTime");

pub struct AnomalyFiles;

impl Output<Financial> for AnomalyFiles {
    fn target(&self) -> Target {
        Target::Files(LAYER)
    }

    fn stage(&self, input: &StageInput<'_, '_, Financial>) -> Result<Staged> {
        input.parquet(LAYER, &build(&input.derived()?.anomalies)?)
    }
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("anomalyType", DataType::Utf8, false),
        field("userId", DataType::Utf8, false),
        field("transactionId", DataType::Utf8, false),
        field("merchantId", DataType::Utf8, false),
        field("amount", DataType::Float64, false),
        field("transactionTime", timestamp_type(), false),
        field("windowStart", timestamp_type(), true),
        field("windowEnd", timestamp_type(), true),
        field("count", DataType::Int64, true),
        field("usualMean", DataType::Float64, true),
        field("usualStddev", DataType::Float64, true),
        field("zScore", DataType::Float64, true),
        field("threshold", DataType::Float64, false),
    ]))
}

pub fn build(rows: &[Anomaly]) -> Result<RecordBatch> {
    let n = rows.len();
    let columns: Vec<ArrayRef> = vec![
        strings(n, n * 14, rows.iter().map(|a| Some(a.anomaly_type))),
        strings(n, n * 8, rows.iter().map(|a| Some(a.user_id.as_str()))),
        strings(
            n,
            n * 36,
            rows.iter().map(|a| Some(a.transaction_id.as_str())),
        ),
        strings(n, n * 10, rows.iter().map(|a| Some(a.merchant_id.as_str()))),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|a| a.amount),
        )),
        timestamps(rows.iter().map(|a| Some(a.transaction_time))),
        timestamps(rows.iter().map(|a| a.window_start)),
        timestamps(rows.iter().map(|a| a.window_end)),
        Arc::new(Int64Array::from_iter(
            rows.iter().map(|a| a.count.map(i64::from)),
        )),
        Arc::new(Float64Array::from_iter(rows.iter().map(|a| a.usual_mean))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|a| a.usual_stddev))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|a| a.zscore))),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|a| a.threshold),
        )),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}
