//! Seed 000's transactions: card payments as JSON, to bronze, silver, quarantine, raw CSV and
//! gold (per-card tumbling windows), and optionally gold's rows to a Kafka topic.

pub mod gold;
pub mod gold_topic;
pub mod raw_csv;
pub mod silver;

use std::fmt::Write as _;
use std::time::Duration;

use txn_core::time::write_python_isoformat;
use txn_core::{Reject, Transaction};

use crate::config::ProcessorConfig;
use crate::engine::dataset::{Batch, Dataset};
use crate::engine::operator::Operator;
use crate::engine::output::Output;
use crate::operators::windows::{TumblingWindows, WindowBatch};
use crate::outputs::bronze::Bronze;
use crate::outputs::quarantine::Quarantine;

/// A decoded batch of transactions.
pub type TxnBatch<'a> = Batch<'a, Transactions>;

/// The transactions dataset: gold's windows are its operator.
pub struct Transactions {
    gold: TumblingWindows,
    gold_topic: Option<String>,
}

impl Transactions {
    pub fn new(config: &ProcessorConfig) -> Self {
        Transactions {
            gold: TumblingWindows::new(
                "gold",
                micros(config.gold_window),
                micros(config.gold_watermark_delay),
                config.gold_output_mode,
            ),
            gold_topic: config.gold_topic.clone().filter(|t| !t.is_empty()),
        }
    }
}

impl Dataset for Transactions {
    type Record<'a> = Transaction<'a>;
    type Derived = WindowBatch;

    fn decode(text: &str) -> Result<Transaction<'_>, Reject> {
        txn_core::json::decode_text(text)
    }

    fn operate(&mut self, batch: &TxnBatch<'_>) -> WindowBatch {
        self.gold.apply(
            batch
                .valid
                .iter()
                .map(|(_, t)| (t.event_time, t.card_id.as_deref(), t.amount)),
        )
    }

    fn operators(&mut self) -> Vec<&mut dyn Operator> {
        vec![&mut self.gold]
    }

    fn outputs(&self) -> Vec<Box<dyn Output<Self>>> {
        let mut outputs: Vec<Box<dyn Output<Self>>> = vec![
            Box::new(Bronze::default()),
            Box::new(silver::Silver),
            Box::new(Quarantine::default()),
            Box::new(raw_csv::RawCsv),
            Box::new(gold::Gold),
        ];
        if let Some(topic) = &self.gold_topic {
            outputs.push(Box::new(gold_topic::GoldTopic(topic.clone())));
        }
        outputs
    }

    fn preview(&self, batch: &TxnBatch<'_>) -> String {
        silver_preview(batch)
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A 10-row table of silver: event_time, card_id, amount, merchant, status.
pub fn silver_preview(batch: &TxnBatch<'_>) -> String {
    let mut out = String::from(
        "event_time                       | card_id  |     amount | merchant      | status\n",
    );
    for (_, t) in batch.valid.iter().take(10) {
        let mut ts = String::new();
        write_python_isoformat(&mut ts, t.event_time);
        let amount = t
            .amount
            .map_or_else(|| "null".to_string(), |a| format!("{a:.2}"));
        let _ = writeln!(
            out,
            "{ts:<32} | {:<8} | {amount:>10} | {:<13} | {}",
            t.card_id.as_deref().unwrap_or("null"),
            t.merchant.as_deref().unwrap_or("null"),
            t.status.as_deref().unwrap_or("null"),
        );
    }
    let _ = write!(
        out,
        "({} of {} rows)",
        batch.valid.len().min(10),
        batch.valid.len()
    );
    out
}
