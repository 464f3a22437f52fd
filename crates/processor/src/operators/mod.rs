//! Stateful operators a dataset runs its records through. Each owns its state and implements
//! [`crate::engine::operator::Operator`], so the engine snapshots it with every commit.

pub mod anomalies;
pub mod fraud;
pub mod merchant_totals;
pub mod partitioned;
pub mod user_windows;
pub mod windows;
