//! The engine, for any [`Dataset`]: plan → read → decode → operators → outputs → commit, batch
//! after batch, with the checkpoint protocol (a batch's plan written by its commit, a planned
//! batch re-run with its own ranges), the trigger, reads ahead and commits beside the next
//! batch's stages, and the per-batch report and metrics. The sinks the outputs go to are a layer
//! below ([`crate::sinks`]).
//!
//! A run is [`startup`] (open the stages and the checkpoint, connect, check the topic's
//! identity, start the sinks, decide where to begin), then [`run`] (the loop: plan, read, stage,
//! commit beside the next batch, report).
//!
//! - [`plan`]: where a batch starts and ends; [`identity`]: the input topic's id across restarts;
//! - [`source`]: reads a planned range from Kafka, and keeps the consumer group's offsets;
//! - [`batch`]: a batch's stages (decode, operators, outputs staged) and its commit;
//! - [`checkpoint`]: the plan / state / commit entries that make every output exactly once;
//! - [`schemas`]: Avro values (Confluent framing) rendered as JSON by their writer schema;
//! - [`dataset`], [`operator`], [`output`]: what a dataset declares and the engine runs;
//! - [`progress`], [`metrics`]: the batch's log line and its Prometheus series.

pub mod batch;
pub mod checkpoint;
pub mod dataset;
pub mod group;
mod identity;
pub mod metrics;
pub mod operator;
pub mod output;
pub mod plan;
pub mod progress;
mod run;
mod scale_out;
pub mod schemas;
pub mod source;
mod startup;

use std::sync::atomic::AtomicBool;

use crate::config::ProcessorConfig;
use crate::error::Result;
use crate::RunSummary;
pub use dataset::Dataset;

/// Runs until `stop` is set (finishing the batch in flight), or until everything present at start
/// is processed with the available-now trigger.
pub fn run<D: Dataset>(
    dataset: D,
    config: &ProcessorConfig,
    stop: &AtomicBool,
) -> Result<RunSummary> {
    run_with_drain(dataset, config, stop, None)
}

/// [`run`], and when `drain` is set: process everything in the topic at that moment, then return
/// (the local stack uses it on Ctrl-C, once its producer has flushed, so nothing sent is left out).
pub fn run_with_drain<D: Dataset>(
    dataset: D,
    config: &ProcessorConfig,
    stop: &AtomicBool,
    drain: Option<&AtomicBool>,
) -> Result<RunSummary> {
    if config.scale_out {
        return scale_out::run(dataset, config, stop, drain);
    }
    let started = startup::start(dataset, config)?;
    run::batches(started, config, stop, drain)
}
