//! The one definition of the transaction record, shared by the producer, the processor and the tests.
//!
//! - [`dataset`]: the datasets (`DATASET`), one enum;
//! - [`record`]: the record and the seed's field order;
//! - [`event`]: seed 001's event (the events dataset), encoded and decoded;
//! - [`financial`]: seeds 003/004's financial transaction (the financial dataset), encoded and decoded;
//! - [`json`]: encoding to exactly the seed's JSON, and decoding bytes into a record or a [`json::Reject`];
//! - [`avro`]: Avro values in Confluent's wire format, rendered as the JSON the decoders read;
//! - [`registry`]: the schema registry client (Confluent's REST API);
//! - [`time`]: RFC 3339 timestamps to and from UTC microseconds;
//! - [`duration`]: Spark-style durations (`"30 seconds"`, `"500 ms"`);
//! - [`kafka`]: every Kafka client's connection settings (client.properties, security, secrets);
//! - [`settings`]: `.env` loading, logging, and value parsers shared by the binaries;
//! - [`telemetry`]: the Prometheus endpoint (`METRICS_ADDR`) and `LOG_FORMAT`.

pub mod avro;
pub mod dataset;
pub mod duration;
pub mod event;
pub mod fields;
pub mod financial;
pub mod json;
pub mod kafka;
pub mod record;
pub mod registry;
pub mod settings;
pub mod telemetry;
pub mod time;

pub use dataset::Dataset;
pub use json::{decode, encode, Reject};
pub use record::{Transaction, FIELDS};
