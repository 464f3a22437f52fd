//! The datasets, one folder each. A dataset implements [`crate::engine::Dataset`]: its record
//! decoder, its operators and its outputs; registering it is one arm in [`run`].

pub mod events;
pub mod financial;
pub mod transactions;

use std::sync::atomic::AtomicBool;

use crate::config::ProcessorConfig;
use crate::engine;
use crate::error::Result;
use crate::RunSummary;

/// Runs the configured dataset until `stop` (or, with `drain`, until what is in the topic when it
/// is set is processed).
pub fn run(
    config: &ProcessorConfig,
    stop: &AtomicBool,
    drain: Option<&AtomicBool>,
) -> Result<RunSummary> {
    match config.dataset.as_str() {
        "events" => engine::run_with_drain(events::Events::new(config), config, stop, drain),
        "financial" => {
            engine::run_with_drain(financial::Financial::new(config), config, stop, drain)
        }
        _ => engine::run_with_drain(transactions::Transactions::new(config), config, stop, drain),
    }
}
