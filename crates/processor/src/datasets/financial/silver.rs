//! Financial silver: each valid transaction, typed, with its Kafka coordinates. Columns keep the
//! seeds' field names: `transactionId`, `userId`, `amount`, `transactionTime` (TIMESTAMP UTC,
//! from epoch seconds or milliseconds), `merchantId`, `transactionType`, `location`,
//! `paymentMethod` (`credit-card` read as `credit_card`), `isInternational`, `currency`, then
//! `partition`, `offset`.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};

use super::{Financial, FinancialBatch};
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::Result;
use crate::outputs::columns::{field, strings, timestamp_type, timestamps};
use crate::sinks::files::FileLayer;

pub const LAYER: FileLayer = FileLayer::parquet("financial_silver").dated_by("transactionTime");

pub struct Silver;

impl Output<Financial> for Silver {
    fn target(&self) -> Target {
        Target::Files(LAYER)
    }

    fn own_thread(&self) -> bool {
        true
    }

    fn stage(&self, input: &StageInput<'_, '_, Financial>) -> Result<Staged> {
        input.parquet(LAYER, &build(input.batch)?)
    }
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("transactionId", DataType::Utf8, false),
        field("userId", DataType::Utf8, false),
        field("amount", DataType::Float64, false),
        field("transactionTime", timestamp_type(), false),
        field("merchantId", DataType::Utf8, false),
        field("transactionType", DataType::Utf8, true),
        field("location", DataType::Utf8, true),
        field("paymentMethod", DataType::Utf8, true),
        field("isInternational", DataType::Boolean, true),
        field("currency", DataType::Utf8, true),
        field("partition", DataType::Int32, false),
        field("offset", DataType::Int64, false),
    ]))
}

pub fn build(batch: &FinancialBatch<'_>) -> Result<RecordBatch> {
    let n = batch.valid.len();
    let rows = || batch.valid.iter().map(|(_, t)| t);
    let columns: Vec<ArrayRef> = vec![
        strings(n, n * 36, rows().map(|t| Some(t.transaction_id.as_ref()))),
        strings(n, n * 8, rows().map(|t| Some(t.user_id.as_ref()))),
        Arc::new(Float64Array::from_iter_values(rows().map(|t| t.amount))),
        timestamps(rows().map(|t| Some(t.transaction_time))),
        strings(n, n * 10, rows().map(|t| Some(t.merchant_id.as_ref()))),
        strings(n, n * 8, rows().map(|t| t.transaction_type.as_deref())),
        strings(n, n * 11, rows().map(|t| t.location.as_deref())),
        strings(n, n * 12, rows().map(|t| t.payment_method.as_deref())),
        Arc::new(BooleanArray::from_iter(rows().map(|t| t.is_international))),
        strings(n, n * 3, rows().map(|t| t.currency.as_deref())),
        Arc::new(Int32Array::from_iter_values(
            batch.valid.iter().map(|(i, _)| batch.message(*i).partition),
        )),
        Arc::new(Int64Array::from_iter_values(
            batch.valid.iter().map(|(i, _)| batch.message(*i).offset),
        )),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}
