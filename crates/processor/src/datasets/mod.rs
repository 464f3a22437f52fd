//! The datasets, one folder each. A dataset implements [`crate::engine::Dataset`]: its record
//! decoder, its operators and its outputs; registering it is one arm in [`run`].

pub mod transactions;

use std::sync::atomic::AtomicBool;

use crate::config::ProcessorConfig;
use crate::engine;
use crate::error::Result;
use crate::RunSummary;

/// The dataset this processor serves (the `dataset` label of its metrics).
pub const NAME: &str = "transactions";

/// Runs the configured dataset until `stop` (or, with `drain`, until what is in the topic when it
/// is set is processed).
pub fn run(
    config: &ProcessorConfig,
    stop: &AtomicBool,
    drain: Option<&AtomicBool>,
) -> Result<RunSummary> {
    engine::run_with_drain(transactions::Transactions::new(config), config, stop, drain)
}
