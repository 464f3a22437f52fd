//! Seed 001's events: `{"id", "ts", "value", "source"}` on the topic `events`, to Parquet
//! partitioned by id (`events/id=<id>/`), 10-second tumbling windows per id with a 30-second
//! watermark in update mode (`events_agg/`, and printed like Spark's console sink), and the
//! rejects to `events_quarantine/`.

pub mod agg;
pub mod parsed;

use txn_core::event::{decode_event, Event};
use txn_core::Reject;

use crate::config::ProcessorConfig;
use crate::engine::dataset::{Batch, Dataset};
use crate::engine::operator::Operator;
use crate::engine::output::Output;
use crate::operators::windows::{OutputMode, TumblingWindows, WindowBatch};
use crate::outputs::console::spark_table;
use crate::outputs::quarantine::Quarantine;
use crate::sinks::files::FileLayer;

/// The seed's window and watermark delay.
pub const WINDOW_MICROS: i64 = 10_000_000;
pub const WATERMARK_DELAY_MICROS: i64 = 30_000_000;

/// A decoded batch of events.
pub type EventBatch<'a> = Batch<'a, Events>;

/// The events dataset: per-id windows are its operator.
pub struct Events {
    windows: TumblingWindows,
}

impl Events {
    pub fn new(config: &ProcessorConfig) -> Self {
        let windows = TumblingWindows::new(
            "events_agg",
            WINDOW_MICROS,
            WATERMARK_DELAY_MICROS,
            OutputMode::Update,
        );
        Events {
            // Scale-out: ids are the topic's key, so an id's windows are in one partition.
            windows: if config.scale_out {
                windows.by_partition()
            } else {
                windows
            },
        }
    }
}

impl Dataset for Events {
    type Record<'a> = Event<'a>;
    type Derived = WindowBatch;

    fn decode(text: &str) -> Result<Event<'_>, Reject> {
        decode_event(text)
    }

    fn decode_avro<'a>(
        schema: &txn_core::avro::WriterSchema,
        id: u32,
        body: &'a [u8],
    ) -> Result<Event<'a>, Reject> {
        txn_core::event::decode_event_avro(schema, id, body)
    }

    fn operate(&mut self, batch: &EventBatch<'_>) -> WindowBatch {
        // The windows are keyed by text; ids are small integers.
        let ids: Vec<String> = batch.valid.iter().map(|(_, e)| e.id.to_string()).collect();
        let messages = &batch.raw.messages;
        self.windows
            .apply_from(batch.valid.iter().zip(&ids).map(|((i, e), id)| {
                (
                    messages[*i as usize].partition,
                    e.ts,
                    Some(id.as_str()),
                    Some(e.value),
                )
            }))
    }

    fn operators(&mut self) -> Vec<&mut dyn Operator> {
        vec![&mut self.windows]
    }

    fn outputs(&self) -> Vec<Box<dyn Output<Self>>> {
        vec![
            Box::new(parsed::Parsed),
            Box::new(agg::Aggregates),
            Box::new(Quarantine(
                FileLayer::parquet("events_quarantine").dated_by("bad_ingest_ts"),
            )),
        ]
    }

    /// The parsed rows, as the seed's console sink showed them.
    fn preview(&self, batch: &EventBatch<'_>) -> String {
        let rows: Vec<Vec<String>> = batch
            .valid
            .iter()
            .map(|(_, e)| {
                vec![
                    e.id.to_string(),
                    spark_time(e.ts),
                    e.value.to_string(),
                    e.source.as_deref().unwrap_or("null").to_string(),
                ]
            })
            .collect();
        spark_table(0, &["id", "ts", "value", "source"], &rows)
    }
}

/// A timestamp as Spark's `show()` prints it: `2025-11-06 07:00:10` (and the fraction if any).
pub fn spark_time(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros).map_or_else(
        || micros.to_string(),
        |t| {
            if micros % 1_000_000 == 0 {
                t.format("%Y-%m-%d %H:%M:%S").to_string()
            } else {
                t.format("%Y-%m-%d %H:%M:%S%.f").to_string()
            }
        },
    )
}
