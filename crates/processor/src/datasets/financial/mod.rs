//! Seeds 003/004's financial transactions (`DATASET=financial`): the topic
//! `financial_transactions` (camelCase JSON, key `userId`) to `financial_bronze/`,
//! `financial_silver/` and `financial_quarantine/`; per-merchant running totals in update mode to
//! the topic `transaction_aggregates` (key `merchantId`); anomalies (too many transactions of a
//! user in a minute, amounts far from the user's usual ones) to the topic `transaction_anomalies`
//! (key `userId`) and to `financial_anomalies/`. Both topics are written in the batch's Kafka
//! transaction: exactly once for a `read_committed` consumer.

pub mod anomalies;
pub mod silver;
pub mod topics;

use txn_core::financial::{decode_financial, FinancialTxn};
use txn_core::Reject;

use crate::config::ProcessorConfig;
use crate::engine::dataset::{Batch, Dataset, Derived};
use crate::engine::operator::Operator;
use crate::engine::output::Output;
use crate::operators::anomalies::{Anomalies, Anomaly, Txn};
use crate::operators::merchant_totals::{MerchantTotal, MerchantTotals};
use crate::outputs::bronze::Bronze;
use crate::outputs::console::spark_table;
use crate::outputs::quarantine::Quarantine;
use crate::sinks::files::FileLayer;

/// A decoded batch of financial transactions.
pub type FinancialBatch<'a> = Batch<'a, Financial>;

/// The financial dataset: merchant totals and anomaly rules are its operators.
pub struct Financial {
    totals: MerchantTotals,
    anomalies: Anomalies,
    aggregates_topic: String,
    anomalies_topic: String,
}

/// What the operators derived from a batch.
pub struct FinancialDerived {
    /// The merchants the batch changed, with their new totals.
    pub totals: Vec<MerchantTotal>,
    pub anomalies: Vec<Anomaly>,
    /// Transactions the anomaly rules found late.
    pub late: u64,
    pub watermark: Option<i64>,
}

impl Derived for FinancialDerived {
    fn late(&self) -> u64 {
        self.late
    }

    fn late_by_operator(&self) -> Vec<(&'static str, u64)> {
        vec![("anomalies", self.late)]
    }

    fn watermark(&self) -> Option<i64> {
        self.watermark
    }
}

impl Financial {
    pub fn new(config: &ProcessorConfig) -> Self {
        Financial {
            totals: MerchantTotals::default(),
            anomalies: Anomalies::new(config.anomaly_txn_per_minute, config.anomaly_amount_zscore),
            aggregates_topic: config.aggregates_topic.clone(),
            anomalies_topic: config.anomalies_topic.clone(),
        }
    }
}

impl Dataset for Financial {
    type Record<'a> = FinancialTxn<'a>;
    type Derived = FinancialDerived;

    fn decode(text: &str) -> Result<FinancialTxn<'_>, Reject> {
        decode_financial(text)
    }

    fn decode_avro<'a>(
        schema: &txn_core::avro::WriterSchema,
        id: u32,
        body: &'a [u8],
    ) -> Result<FinancialTxn<'a>, Reject> {
        txn_core::financial::decode_financial_avro(schema, id, body)
    }

    fn operate(&mut self, batch: &FinancialBatch<'_>) -> FinancialDerived {
        let totals = self.totals.apply(
            batch
                .valid
                .iter()
                .map(|(_, t)| (t.merchant_id.as_ref(), t.amount)),
        );
        let found = self.anomalies.apply(batch.valid.iter().map(|(_, t)| Txn {
            user_id: &t.user_id,
            transaction_id: &t.transaction_id,
            merchant_id: &t.merchant_id,
            amount: t.amount,
            time: t.transaction_time,
        }));
        if found.late > 0 {
            tracing::info!(
                "[processor] anomaly rules: {} late transactions not evaluated (older than the watermark)",
                found.late
            );
        }
        FinancialDerived {
            totals,
            anomalies: found.anomalies,
            late: found.late,
            watermark: self.anomalies.watermark(),
        }
    }

    fn operators(&mut self) -> Vec<&mut dyn Operator> {
        vec![&mut self.totals, &mut self.anomalies]
    }

    fn outputs(&self) -> Vec<Box<dyn Output<Self>>> {
        vec![
            Box::new(Bronze(
                FileLayer::parquet("financial_bronze").dated_by("kafka_ts"),
            )),
            Box::new(silver::Silver),
            Box::new(Quarantine(
                FileLayer::parquet("financial_quarantine").dated_by("bad_ingest_ts"),
            )),
            Box::new(anomalies::AnomalyFiles),
            Box::new(topics::AggregatesTopic(self.aggregates_topic.clone())),
            Box::new(topics::AnomaliesTopic(self.anomalies_topic.clone())),
        ]
    }

    /// The parsed rows, as a console sink would show them.
    fn preview(&self, batch: &FinancialBatch<'_>) -> String {
        let rows: Vec<Vec<String>> = batch
            .valid
            .iter()
            .take(10)
            .map(|(_, t)| {
                vec![
                    t.transaction_id.to_string(),
                    t.user_id.to_string(),
                    format!("{:.2}", t.amount),
                    crate::datasets::events::spark_time(t.transaction_time),
                    t.merchant_id.to_string(),
                    t.transaction_type.as_deref().unwrap_or("null").to_string(),
                ]
            })
            .collect();
        spark_table(
            0,
            &[
                "transactionId",
                "userId",
                "amount",
                "transactionTime",
                "merchantId",
                "transactionType",
            ],
            &rows,
        )
    }
}
