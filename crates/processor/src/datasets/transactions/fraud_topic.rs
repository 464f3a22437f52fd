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

/// The alerts' Avro schema (`OUTPUT_TOPIC_FORMAT=avro`): the JSON message's fields.
pub const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "FraudAlert", "namespace": "pipeline", "fields": [
 {"name": "alert_type", "type": "string"},
 {"name": "user_id", "type": "string"},
 {"name": "alert_time", "type": "string"},
 {"name": "txn_id", "type": ["null", "string"], "default": null},
 {"name": "event_time", "type": ["null", "string"], "default": null},
 {"name": "amount", "type": ["null", "double"], "default": null},
 {"name": "currency", "type": ["null", "string"], "default": null},
 {"name": "merchant", "type": ["null", "string"], "default": null},
 {"name": "category", "type": ["null", "string"], "default": null},
 {"name": "lat", "type": ["null", "double"], "default": null},
 {"name": "lon", "type": ["null", "double"], "default": null},
 {"name": "distance_km", "type": ["null", "double"], "default": null},
 {"name": "time_diff_seconds", "type": ["null", "double"], "default": null},
 {"name": "velocity_kmh", "type": ["null", "double"], "default": null},
 {"name": "count_in_window", "type": ["null", "long"], "default": null},
 {"name": "window_start", "type": ["null", "string"], "default": null},
 {"name": "window_end", "type": ["null", "string"], "default": null},
 {"name": "large_count", "type": ["null", "long"], "default": null},
 {"name": "message", "type": "string"}]}"#;

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
                avro_schema: AVRO_SCHEMA,
                partition: None,
            })
            .collect();
        Ok(Staged::records(records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::fraud::Txn;

    /// OUTPUT_TOPIC_FORMAT=avro: an alert with every figure, and one with none, fit the schema
    /// and read back as the JSON message.
    #[test]
    fn alerts_fit_their_avro_schema() {
        let full = Alert {
            alert_type: "IMPOSSIBLE_TRAVEL",
            user_id: "user_1".into(),
            alert_time: 1_762_500_000_000_000,
            txn: Some(Txn {
                event_time: 1_762_500_000_000_000,
                partition: 0,
                offset: 5,
                user_id: "user_1".into(),
                txn_id: "t-1".into(),
                amount: Some(12.5),
                currency: Some("EUR".into()),
                merchant: None,
                category: Some("food".into()),
                lat: Some(48.85),
                lon: Some(2.35),
            }),
            distance_km: Some(880.0),
            time_diff_seconds: Some(-30.0),
            velocity_kmh: Some(105_600.0),
            count_in_window: Some(6),
            window_start: Some(1_762_499_700_000_000),
            window_end: Some(1_762_500_000_000_000),
            large_count: Some(3),
            message: "travel".into(),
        };
        let bare = Alert {
            txn: None,
            distance_km: None,
            time_diff_seconds: None,
            velocity_kmh: None,
            count_in_window: None,
            window_start: None,
            window_end: None,
            large_count: None,
            ..full.clone()
        };
        let schema = txn_core::avro::WriterSchema::parse(AVRO_SCHEMA).unwrap();
        for alert in [full, bare] {
            let json = message(&alert);
            let mut avro = Vec::new();
            txn_core::avro::encode_json_text(schema.schema(), &json, &mut avro).unwrap();
            let mut back = Vec::new();
            schema.to_json(&avro, &mut back).unwrap();
            let back: serde_json::Value = serde_json::from_slice(&back).unwrap();
            assert_eq!(
                back,
                serde_json::from_slice::<serde_json::Value>(&json).unwrap()
            );
        }
    }
}
