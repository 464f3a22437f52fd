//! The datasets, one folder each. A dataset implements [`crate::engine::Dataset`]: its record
//! decoder, its operators and its outputs; registering it is one arm in [`run`].

pub mod events;
pub mod financial;
pub mod stages;
pub mod transactions;

use std::sync::atomic::AtomicBool;

use crate::config::ProcessorConfig;
use crate::engine;
use crate::engine::dataset::Dataset;
use crate::engine::output::Target;
use crate::error::Result;
use crate::RunSummary;
use txn_core::Dataset as Kind;

/// The Kafka topics the configured dataset writes to (its topic outputs).
pub fn output_topics(config: &ProcessorConfig) -> Vec<String> {
    fn topics<D: Dataset>(dataset: D) -> Vec<String> {
        dataset
            .outputs()
            .iter()
            .filter_map(|o| match o.target() {
                Target::Topic(topic) => Some(topic),
                _ => None,
            })
            .collect()
    }
    match config.dataset {
        Kind::Events => topics(events::Events::new(config)),
        Kind::Financial => topics(financial::Financial::new(config)),
        Kind::Transactions => topics(transactions::Transactions::new(config)),
    }
}

/// Runs the configured dataset until `stop` (or, with `drain`, until what is in the topic when it
/// is set is processed).
pub fn run(
    config: &ProcessorConfig,
    stop: &AtomicBool,
    drain: Option<&AtomicBool>,
) -> Result<RunSummary> {
    match config.dataset {
        Kind::Events => engine::run_with_drain(events::Events::new(config), config, stop, drain),
        Kind::Financial if config.scale_out => stages::run(
            financial::Financial::new,
            &stages::MERCHANT_TOTALS,
            config,
            stop,
            drain,
        ),
        Kind::Financial => {
            engine::run_with_drain(financial::Financial::new(config), config, stop, drain)
        }
        Kind::Transactions if config.scale_out && config.fraud_detection => stages::run(
            transactions::Transactions::new,
            &stages::FRAUD,
            config,
            stop,
            drain,
        ),
        Kind::Transactions => {
            engine::run_with_drain(transactions::Transactions::new(config), config, stop, drain)
        }
    }
}
