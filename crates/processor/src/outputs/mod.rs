//! The outputs' implementations: files (compact Parquet and CSV, one per batch, staged then
//! renamed) and Kafka topics (one transaction per batch), and the Arrow column helpers the
//! datasets' outputs build their rows with.

pub mod bronze;
pub mod columns;
pub mod console;
pub mod files;
pub mod kafka;
pub mod quarantine;
