//! The Kafka outputs, in the batch's transaction (exactly once for a `read_committed` consumer):
//! - `AGGREGATES_TOPIC` (`transaction_aggregates`): per merchant changed in the batch, key
//!   `merchantId`, value `{"merchantId": "merchant_2", "totalAmount": 1234567.89,
//!   "transactionCount": 17}` (the seed's update-mode rows); the last message of a key is the
//!   merchant's current total;
//! - `ANOMALIES_TOPIC` (`transaction_anomalies`): per anomaly, key `userId`, value
//!   `{"anomalyType", "userId", "transactionId", "merchantId", "amount", "transactionTime" (epoch
//!   seconds, as the input), "windowStart", "windowEnd", "count", "usualMean", "usualStddev",
//!   "zScore", "threshold"}` (figures that do not apply are null).

use serde::Serialize;

use super::Financial;
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::Result;
use crate::operators::anomalies::Anomaly;
use crate::operators::merchant_totals::MerchantTotal;
use crate::sinks::kafka::TopicRecord;

pub struct AggregatesTopic(pub String);
pub struct AnomaliesTopic(pub String);

/// The Avro schemas (`OUTPUT_TOPIC_FORMAT=avro`): the JSON messages' fields.
pub const AGGREGATE_AVRO_SCHEMA: &str = r#"{"type": "record", "name": "MerchantAggregate", "namespace": "pipeline", "fields": [
 {"name": "merchantId", "type": "string"},
 {"name": "totalAmount", "type": "double"},
 {"name": "transactionCount", "type": "long"}]}"#;

pub const ANOMALY_AVRO_SCHEMA: &str = r#"{"type": "record", "name": "Anomaly", "namespace": "pipeline", "fields": [
 {"name": "anomalyType", "type": "string"},
 {"name": "userId", "type": "string"},
 {"name": "transactionId", "type": "string"},
 {"name": "merchantId", "type": "string"},
 {"name": "amount", "type": "double"},
 {"name": "transactionTime", "type": "double"},
 {"name": "windowStart", "type": ["null", "double"], "default": null},
 {"name": "windowEnd", "type": ["null", "double"], "default": null},
 {"name": "count", "type": ["null", "long"], "default": null},
 {"name": "usualMean", "type": ["null", "double"], "default": null},
 {"name": "usualStddev", "type": ["null", "double"], "default": null},
 {"name": "zScore", "type": ["null", "double"], "default": null},
 {"name": "threshold", "type": "double"}]}"#;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Aggregate<'a> {
    merchant_id: &'a str,
    total_amount: f64,
    transaction_count: u64,
}

pub fn aggregate_message(t: &MerchantTotal) -> Vec<u8> {
    // Strings, an integer and a float (finite: amounts are within ±10¹², the decoder's range).
    serde_json::to_vec(&Aggregate {
        merchant_id: &t.merchant_id,
        total_amount: t.total_amount,
        transaction_count: t.transaction_count,
    })
    .unwrap_or_default()
}

/// Epoch seconds (with the fraction when there is one), as the input's `transactionTime`.
fn seconds(micros: i64) -> f64 {
    micros as f64 / 1e6
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AnomalyMessage<'a> {
    anomaly_type: &'a str,
    user_id: &'a str,
    transaction_id: &'a str,
    merchant_id: &'a str,
    amount: f64,
    transaction_time: f64,
    window_start: Option<f64>,
    window_end: Option<f64>,
    count: Option<u32>,
    usual_mean: Option<f64>,
    usual_stddev: Option<f64>,
    z_score: Option<f64>,
    threshold: f64,
}

pub fn anomaly_message(a: &Anomaly) -> Vec<u8> {
    serde_json::to_vec(&AnomalyMessage {
        anomaly_type: a.anomaly_type,
        user_id: &a.user_id,
        transaction_id: &a.transaction_id,
        merchant_id: &a.merchant_id,
        amount: a.amount,
        transaction_time: seconds(a.transaction_time),
        window_start: a.window_start.map(seconds),
        window_end: a.window_end.map(seconds),
        count: a.count,
        usual_mean: a.usual_mean,
        usual_stddev: a.usual_stddev,
        z_score: a.zscore,
        threshold: a.threshold,
    })
    .unwrap_or_default()
}

impl Output<Financial> for AggregatesTopic {
    fn target(&self) -> Target {
        Target::Topic(self.0.clone())
    }

    fn stage(&self, input: &StageInput<'_, '_, Financial>) -> Result<Staged> {
        let records = input
            .derived()?
            .totals
            .iter()
            .map(|t| TopicRecord {
                topic: self.0.clone(),
                key: Some(t.merchant_id.as_bytes().to_vec()),
                value: aggregate_message(t),
                avro_schema: AGGREGATE_AVRO_SCHEMA,
                partition: None,
            })
            .collect();
        Ok(Staged::records(records))
    }
}

impl Output<Financial> for AnomaliesTopic {
    fn target(&self) -> Target {
        Target::Topic(self.0.clone())
    }

    fn stage(&self, input: &StageInput<'_, '_, Financial>) -> Result<Staged> {
        let records = input
            .derived()?
            .anomalies
            .iter()
            .map(|a| TopicRecord {
                topic: self.0.clone(),
                key: Some(a.user_id.as_bytes().to_vec()),
                value: anomaly_message(a),
                avro_schema: ANOMALY_AVRO_SCHEMA,
                partition: None,
            })
            .collect();
        Ok(Staged::records(records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_seeds_fields() {
        let t = MerchantTotal {
            merchant_id: "merchant_2".into(),
            total_amount: 150000.5,
            transaction_count: 2,
        };
        assert_eq!(
            String::from_utf8(aggregate_message(&t)).unwrap(),
            r#"{"merchantId":"merchant_2","totalAmount":150000.5,"transactionCount":2}"#
        );
        let a = Anomaly {
            anomaly_type: "HIGH_FREQUENCY",
            user_id: "user_7".into(),
            transaction_id: "t".into(),
            merchant_id: "merchant_1".into(),
            amount: 60000.0,
            transaction_time: 1_762_500_030_000_000,
            window_start: Some(1_762_500_000_000_000),
            window_end: Some(1_762_500_060_000_000),
            count: Some(11),
            usual_mean: None,
            usual_stddev: None,
            zscore: None,
            threshold: 10.0,
        };
        let v: serde_json::Value = serde_json::from_slice(&anomaly_message(&a)).unwrap();
        assert_eq!(v["anomalyType"], "HIGH_FREQUENCY");
        assert_eq!(v["transactionTime"], 1_762_500_030.0);
        assert_eq!(v["windowStart"], 1_762_500_000.0);
        assert_eq!(v["count"], 11);
        assert!(v["zScore"].is_null());
        // OUTPUT_TOPIC_FORMAT=avro: each message fits its schema and reads back the same.
        for (json, schema) in [
            (aggregate_message(&t), AGGREGATE_AVRO_SCHEMA),
            (anomaly_message(&a), ANOMALY_AVRO_SCHEMA),
        ] {
            let schema = txn_core::avro::WriterSchema::parse(schema).unwrap();
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
