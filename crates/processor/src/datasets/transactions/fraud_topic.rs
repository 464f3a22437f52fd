//! The fraud rules' alerts to the Kafka topic `FRAUD_ALERTS_TOPIC` (default `fraud-alerts`), one
//! JSON message per alert, key `user_id`, exactly once for a `read_committed` consumer.

use serde::Serialize;
use txn_core::time::write_python_isoformat;

use super::Transactions;
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::Result;
use crate::operators::fraud::Alert;
use crate::sinks::kafka::TopicRecord;

pub struct FraudTopic(pub String);

fn iso(micros: i64) -> String {
    let mut s = String::new();
    write_python_isoformat(&mut s, micros);
    s
}

/// One message's value: the rule, the transaction's fields and the figures behind the alert.
#[derive(Serialize)]
struct Message<'a> {
    alert_type: &'a str,
    user_id: &'a str,
    alert_time: String,
    txn_id: Option<&'a str>,
    event_time: Option<String>,
    amount: Option<f64>,
    currency: Option<&'a str>,
    merchant: Option<&'a str>,
    category: Option<&'a str>,
    lat: Option<f64>,
    lon: Option<f64>,
    distance_km: Option<f64>,
    time_diff_seconds: Option<f64>,
    velocity_kmh: Option<f64>,
    count_in_window: Option<u32>,
    window_start: Option<String>,
    window_end: Option<String>,
    large_count: Option<u32>,
    message: &'a str,
}

pub fn message(a: &Alert) -> Vec<u8> {
    let t = a.txn.as_ref();
    let m = Message {
        alert_type: a.alert_type,
        user_id: &a.user_id,
        alert_time: iso(a.alert_time),
        txn_id: t.map(|t| t.txn_id.as_str()),
        event_time: t.map(|t| iso(t.event_time)),
        amount: t.and_then(|t| t.amount),
        currency: t.and_then(|t| t.currency.as_deref()),
        merchant: t.and_then(|t| t.merchant.as_deref()),
        category: t.and_then(|t| t.category.as_deref()),
        lat: t.and_then(|t| t.lat),
        lon: t.and_then(|t| t.lon),
        distance_km: a.distance_km,
        time_diff_seconds: a.time_diff_seconds,
        velocity_kmh: a.velocity_kmh,
        count_in_window: a.count_in_window,
        window_start: a.window_start.map(iso),
        window_end: a.window_end.map(iso),
        large_count: a.large_count,
        message: &a.message,
    };
    // Strings, integers and finite floats: encoding cannot fail.
    serde_json::to_vec(&m).unwrap_or_default()
}

impl Output<Transactions> for FraudTopic {
    fn target(&self) -> Target {
        Target::Topic(self.0.clone())
    }

    fn stage(&self, input: &StageInput<'_, '_, Transactions>) -> Result<Staged> {
        let records = input
            .derived()?
            .alerts
            .iter()
            .map(|a| TopicRecord {
                topic: self.0.clone(),
                key: Some(a.user_id.as_bytes().to_vec()),
                value: message(a),
            })
            .collect();
        Ok(Staged::records(records))
    }
}
