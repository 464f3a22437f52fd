//! Gold's rows to a Kafka topic (`GOLD_TOPIC`), one JSON message per window and card, keyed by
//! card: the same rows as the gold files of the batch, exactly once for a `read_committed`
//! consumer.

use serde::Serialize;
use txn_core::time::write_python_isoformat;

use super::Transactions;
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::Result;
use crate::sinks::kafka::TopicRecord;

/// The output: the topic's name.
pub struct GoldTopic(pub String);

/// Gold's Avro schema (`OUTPUT_TOPIC_FORMAT=avro`): the JSON message's fields.
pub const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "GoldWindow", "namespace": "pipeline", "fields": [
 {"name": "card_id", "type": ["null", "string"], "default": null},
 {"name": "window_start", "type": "string"},
 {"name": "window_end", "type": "string"},
 {"name": "txn_count", "type": "long"},
 {"name": "sum_amount", "type": ["null", "double"], "default": null},
 {"name": "avg_amount", "type": ["null", "double"], "default": null},
 {"name": "max_amount", "type": ["null", "double"], "default": null}]}"#;

/// One message's value.
#[derive(Serialize)]
struct GoldMessage<'a> {
    card_id: Option<&'a str>,
    window_start: String,
    window_end: String,
    txn_count: u64,
    sum_amount: Option<f64>,
    avg_amount: Option<f64>,
    max_amount: Option<f64>,
}

fn iso(micros: i64) -> String {
    let mut s = String::new();
    write_python_isoformat(&mut s, micros);
    s
}

impl Output<Transactions> for GoldTopic {
    fn target(&self) -> Target {
        Target::Topic(self.0.clone())
    }

    fn stage(&self, input: &StageInput<'_, '_, Transactions>) -> Result<Staged> {
        let rows = &input.derived()?.gold.rows;
        let records = rows
            .iter()
            .map(|r| {
                let message = GoldMessage {
                    card_id: r.key.as_deref(),
                    window_start: iso(r.window_start),
                    window_end: iso(r.window_end),
                    txn_count: r.agg.count,
                    sum_amount: r.agg.sum(),
                    avg_amount: r.agg.avg(),
                    max_amount: r.agg.max(),
                };
                TopicRecord {
                    topic: self.0.clone(),
                    key: r.key.as_ref().map(|k| k.as_bytes().to_vec()),
                    // Strings, integers and finite floats: encoding cannot fail.
                    value: serde_json::to_vec(&message).unwrap_or_default(),
                    avro_schema: AVRO_SCHEMA,
                    partition: None,
                }
            })
            .collect();
        Ok(Staged::records(records))
    }
}
