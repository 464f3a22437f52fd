//! Seeds 003/004's aggregation: per merchant, the running `totalAmount` (sum of `amount`) and
//! `transactionCount` over every valid transaction since the checkpoint began, in update mode
//! (each batch emits the merchants it changed, with their new totals).
//!
//! Refunds are counted as the seeds count them: the seeds' Spark job groups by `merchantId` and
//! sums `amount` without looking at `transactionType`, so a refund adds its (positive) amount and
//! one to the count like a purchase. No watermark: a running total has no window to close, so
//! late transactions count too.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::engine::operator::Operator;

/// A merchant's totals after a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MerchantTotal {
    pub merchant_id: String,
    pub total_amount: f64,
    pub transaction_count: u64,
}

/// Every merchant's running totals; saved with every batch commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MerchantTotals {
    /// By merchant: (sum of amounts, count). Sorted, so snapshots and updates come in one order.
    totals: BTreeMap<String, (f64, u64)>,
}

impl MerchantTotals {
    /// Adds a batch's (merchant, amount) pairs in order; returns the merchants changed, with
    /// their new totals, by merchant.
    pub fn apply<'a>(
        &mut self,
        txns: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> Vec<MerchantTotal> {
        let mut changed: BTreeSet<&str> = BTreeSet::new();
        for (merchant, amount) in txns {
            match self.totals.get_mut(merchant) {
                Some((sum, count)) => {
                    *sum += amount;
                    *count += 1;
                }
                None => {
                    self.totals.insert(merchant.to_string(), (amount, 1));
                }
            }
            changed.insert(merchant);
        }
        changed
            .into_iter()
            .filter_map(|m| {
                self.totals.get(m).map(|&(sum, count)| MerchantTotal {
                    merchant_id: m.to_string(),
                    total_amount: sum,
                    transaction_count: count,
                })
            })
            .collect()
    }
}

impl Operator for MerchantTotals {
    fn name(&self) -> &'static str {
        "merchant_totals"
    }

    fn watermark(&self) -> Option<i64> {
        None
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(&self.totals).unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.totals =
            postcard::from_bytes(bytes).map_err(|e| format!("merchant totals state: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_run_across_batches_and_a_batch_emits_only_the_merchants_it_changed() {
        let mut t = MerchantTotals::default();
        let first = t.apply([
            ("merchant_2", 10.5),
            ("merchant_1", 1.0),
            ("merchant_2", 4.5),
        ]);
        assert_eq!(
            first,
            [
                MerchantTotal {
                    merchant_id: "merchant_1".into(),
                    total_amount: 1.0,
                    transaction_count: 1
                },
                MerchantTotal {
                    merchant_id: "merchant_2".into(),
                    total_amount: 15.0,
                    transaction_count: 2
                },
            ]
        );
        let second = t.apply([("merchant_2", 5.0)]);
        assert_eq!(second.len(), 1);
        assert_eq!(
            (second[0].total_amount, second[0].transaction_count),
            (20.0, 3)
        );
        assert!(t.apply(std::iter::empty()).is_empty());

        // The state survives a snapshot: the next batch continues the totals.
        let mut restored = MerchantTotals::default();
        restored.restore(&t.snapshot()).unwrap();
        assert_eq!(restored, t);
        let third = restored.apply([("merchant_1", 2.0)]);
        assert_eq!(
            (third[0].total_amount, third[0].transaction_count),
            (3.0, 2)
        );
        assert!(restored.restore(b"\xff\xff").is_err());
    }
}
