//! The fraud rules' alerts (`FRAUD_DETECTION=true`) as Parquet, `fraud_alerts/`: the same alerts
//! as the `fraud-alerts` topic, one row each.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};

use super::Transactions;
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::Result;
use crate::operators::fraud::Alert;
use crate::outputs::columns::{field, strings, timestamp_type, timestamps};
use crate::sinks::files::FileLayer;

pub const LAYER: FileLayer = FileLayer::parquet("fraud_alerts").dated_by("event_time");

pub struct FraudAlerts;

impl Output<Transactions> for FraudAlerts {
    fn target(&self) -> Target {
        Target::Files(LAYER)
    }

    fn stage(&self, input: &StageInput<'_, '_, Transactions>) -> Result<Staged> {
        let alerts = &input.derived()?.alerts;
        if alerts.is_empty() {
            return Ok(Staged::nothing());
        }
        let rows = build(alerts)?;
        input.parquet(LAYER, &rows)
    }
}

pub fn schema() -> SchemaRef {
    let s = |name| field(name, DataType::Utf8, true);
    let f = |name| field(name, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        field("alert_type", DataType::Utf8, false),
        field("user_id", DataType::Utf8, false),
        field("alert_time", timestamp_type(), false),
        s("txn_id"),
        field("event_time", timestamp_type(), true),
        f("amount"),
        s("currency"),
        s("merchant"),
        s("category"),
        f("lat"),
        f("lon"),
        f("distance_km"),
        f("time_diff_seconds"),
        f("velocity_kmh"),
        field("count_in_window", DataType::Int64, true),
        field("window_start", timestamp_type(), true),
        field("window_end", timestamp_type(), true),
        field("large_count", DataType::Int64, true),
        field("message", DataType::Utf8, false),
    ]))
}

pub fn build(alerts: &[Alert]) -> Result<RecordBatch> {
    let n = alerts.len();
    let txn = || alerts.iter().map(|a| a.txn.as_ref());
    let text = |f: &dyn Fn(&Alert) -> Option<&str>| strings(n, n * 12, alerts.iter().map(f));
    let num = |f: &dyn Fn(&Alert) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from_iter(alerts.iter().map(f)))
    };
    let int = |f: &dyn Fn(&Alert) -> Option<i64>| -> ArrayRef {
        Arc::new(Int64Array::from_iter(alerts.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|a| Some(a.alert_type)),
        text(&|a| Some(a.user_id.as_str())),
        timestamps(alerts.iter().map(|a| Some(a.alert_time))),
        text(&|a| a.txn.as_ref().map(|t| t.txn_id.as_str())),
        timestamps(txn().map(|t| t.map(|t| t.event_time))),
        num(&|a| a.txn.as_ref().and_then(|t| t.amount)),
        text(&|a| a.txn.as_ref().and_then(|t| t.currency.as_deref())),
        text(&|a| a.txn.as_ref().and_then(|t| t.merchant.as_deref())),
        text(&|a| a.txn.as_ref().and_then(|t| t.category.as_deref())),
        num(&|a| a.txn.as_ref().and_then(|t| t.lat)),
        num(&|a| a.txn.as_ref().and_then(|t| t.lon)),
        num(&|a| a.distance_km),
        num(&|a| a.time_diff_seconds),
        num(&|a| a.velocity_kmh),
        int(&|a| a.count_in_window.map(i64::from)),
        timestamps(alerts.iter().map(|a| a.window_start)),
        timestamps(alerts.iter().map(|a| a.window_end)),
        int(&|a| a.large_count.map(i64::from)),
        text(&|a| Some(a.message.as_str())),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}
