//! Seeds 003/004's financial transactions (`DATASET=financial`): the topic
//! `financial_transactions` (camelCase JSON, key `userId`) to `financial_bronze/`,
//! `financial_silver/` and `financial_quarantine/`; per-merchant running totals in update mode to
//! the topic `transaction_aggregates` (key `merchantId`); anomalies (too many transactions of a
//! user in a minute, amounts far from the user's usual ones) to the topic `transaction_anomalies`
//! (key `userId`) and to `financial_anomalies/`. Both topics are written in the batch's Kafka
//! transaction: exactly once for a `read_committed` consumer.

pub mod anomalies;
pub mod by_merchant;
pub mod silver;
pub mod topics;

use txn_core::financial::{decode_financial, FinancialTxn};
use txn_core::Reject;

use crate::config::{ProcessorConfig, Stage};
use crate::engine::dataset::{Batch, Dataset, Derived};
use crate::engine::operator::Operator;
use crate::engine::output::Output;
use crate::operators::anomalies::{Anomalies, Anomaly, Txn};
use crate::operators::merchant_totals::{MerchantTotal, MerchantTotals};
use crate::operators::partitioned::Partitioned;
use crate::outputs::bronze::Bronze;
use crate::outputs::console::spark_table;
use crate::outputs::quarantine::Quarantine;
use crate::sinks::files::FileLayer;

/// A decoded batch of financial transactions.
pub type FinancialBatch<'a> = Batch<'a, Financial>;

/// The financial dataset: merchant totals and anomaly rules are its operators. In scale-out, a
/// member runs one of two stages ([`Stage`], [`crate::datasets::stages`]): the layers and the
/// anomaly rules (by user, the topic's key: their state per input partition), sending every
/// valid transaction to a repartition topic keyed by merchant ([`by_merchant`]); or the
/// merchant totals over that topic.
pub struct Financial {
    /// `None` in scale-out's first stage.
    totals: Option<Totals>,
    /// `None` in scale-out's second stage.
    anomalies: Option<Rules>,
    /// Scale-out's first stage: the repartition topic.
    by_merchant: Option<String>,
    aggregates_topic: String,
    anomalies_topic: String,
}

/// The merchant totals: one state, or one per partition of the repartition topic.
enum Totals {
    Whole(MerchantTotals),
    ByPartition(Partitioned<MerchantTotals>),
}

/// The anomaly rules: one state, or one per input partition (scale-out).
enum Rules {
    Whole(Anomalies),
    ByPartition(Partitioned<Anomalies>),
}

/// What the operators derived from a batch.
pub struct FinancialDerived {
    /// The merchants the batch changed, with their new totals.
    pub totals: Vec<MerchantTotal>,
    pub anomalies: Vec<Anomaly>,
    /// Transactions the anomaly rules found late.
    pub late: u64,
    pub watermark: Option<i64>,
    /// Scale-out's first stage: a valid record whose key is not its userId (the batch fails).
    pub key_mismatch: Option<String>,
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
        let (per_minute, zscore) = (config.anomaly_txn_per_minute, config.anomaly_amount_zscore);
        let (totals, anomalies, by_merchant) = match &config.stage {
            Stage::Whole => (
                Some(Totals::Whole(MerchantTotals::default())),
                Some(Rules::Whole(Anomalies::new(per_minute, zscore))),
                None,
            ),
            Stage::Keyed { repartition, .. } => (
                None,
                Some(Rules::ByPartition(Partitioned::new(move || {
                    Anomalies::new(per_minute, zscore)
                }))),
                Some(repartition.clone()),
            ),
            Stage::Rekeyed { .. } => (
                Some(Totals::ByPartition(Partitioned::new(
                    MerchantTotals::default,
                ))),
                None,
                None,
            ),
        };
        Financial {
            totals,
            anomalies,
            by_merchant,
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
        let partition_of = |i: &u32| batch.message(*i).partition;
        let totals = match &mut self.totals {
            None => Vec::new(),
            Some(Totals::Whole(totals)) => totals.apply(
                batch
                    .valid
                    .iter()
                    .map(|(_, t)| (t.merchant_id.as_ref(), t.amount)),
            ),
            // Each partition of the repartition topic on its own totals, in partition order.
            Some(Totals::ByPartition(totals)) => totals
                .apply_by_partition(
                    batch
                        .valid
                        .iter()
                        .map(|(i, t)| (partition_of(i), (t.merchant_id.as_ref(), t.amount))),
                    |totals, txns| totals.apply(txns),
                )
                .into_iter()
                .flatten()
                .collect(),
        };
        let (found, watermark) = match &mut self.anomalies {
            None => (Default::default(), None),
            Some(Rules::Whole(rules)) => (
                rules.apply(batch.valid.iter().map(|(_, t)| rule_txn(t))),
                rules.watermark(),
            ),
            // Each input partition on its own state (a user's transactions are in one).
            Some(Rules::ByPartition(rules)) => {
                let mut all = crate::operators::anomalies::AnomalyBatch::default();
                let by = batch
                    .valid
                    .iter()
                    .map(|(i, t)| (partition_of(i), rule_txn(t)));
                for b in rules.apply_by_partition(by, |rules, txns| rules.apply(txns)) {
                    all.anomalies.extend(b.anomalies);
                    all.late += b.late;
                }
                (all, Operator::watermark(rules))
            }
        };
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
            watermark,
            key_mismatch: self.by_merchant.as_ref().and_then(|_| key_mismatch(batch)),
        }
    }

    fn operators(&mut self) -> Vec<&mut dyn Operator> {
        let mut operators: Vec<&mut dyn Operator> = Vec::new();
        match &mut self.totals {
            Some(Totals::Whole(t)) => operators.push(t),
            Some(Totals::ByPartition(t)) => operators.push(t),
            None => {}
        }
        match &mut self.anomalies {
            Some(Rules::Whole(r)) => operators.push(r),
            Some(Rules::ByPartition(r)) => operators.push(r),
            None => {}
        }
        operators
    }

    fn outputs(&self) -> Vec<Box<dyn Output<Self>>> {
        let quarantine = || -> Box<dyn Output<Self>> {
            Box::new(Quarantine(
                FileLayer::parquet("financial_quarantine").dated_by("bad_ingest_ts"),
            ))
        };
        if self.anomalies.is_none() {
            // Scale-out's second stage: the repartition topic's records were checked by the
            // first (a reject here would still be kept, in quarantine).
            return vec![
                quarantine(),
                Box::new(topics::AggregatesTopic(self.aggregates_topic.clone())),
            ];
        }
        let mut outputs: Vec<Box<dyn Output<Self>>> = vec![
            Box::new(Bronze(
                FileLayer::parquet("financial_bronze").dated_by("kafka_ts"),
            )),
            Box::new(silver::Silver),
            quarantine(),
            Box::new(anomalies::AnomalyFiles),
        ];
        if self.totals.is_some() {
            outputs.push(Box::new(topics::AggregatesTopic(
                self.aggregates_topic.clone(),
            )));
        }
        outputs.push(Box::new(topics::AnomaliesTopic(
            self.anomalies_topic.clone(),
        )));
        if let Some(topic) = &self.by_merchant {
            outputs.push(Box::new(by_merchant::ByMerchant(topic.clone())));
        }
        outputs
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

/// What the anomaly rules read of a transaction.
fn rule_txn<'a>(t: &'a FinancialTxn<'_>) -> Txn<'a> {
    Txn {
        user_id: &t.user_id,
        transaction_id: &t.transaction_id,
        merchant_id: &t.merchant_id,
        amount: t.amount,
        time: t.transaction_time,
    }
}

/// The first valid record whose Kafka key is not its userId, as the reason scale-out refuses it.
fn key_mismatch(batch: &FinancialBatch<'_>) -> Option<String> {
    batch.valid.iter().find_map(|(i, t)| {
        let m = batch.message(*i);
        let key = m.key.map(|(a, b)| &batch.raw.arena[a..b]);
        (key != Some(t.user_id.as_bytes())).then(|| {
            format!(
                "SCALE_OUT=true keeps the anomaly rules' state (by userId) with the input partitions, so the topic must be keyed by userId (as the seeds' producer keys it): partition {} offset {} has key {:?} and userId {:?}; run one processor (SCALE_OUT=false) for this topic",
                m.partition,
                m.offset,
                key.map(String::from_utf8_lossy),
                t.user_id
            )
        })
    })
}
