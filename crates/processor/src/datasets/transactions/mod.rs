//! Seed 000's transactions: card payments as JSON, to bronze, silver, quarantine, raw CSV and
//! gold (per-card tumbling windows), and optionally gold's rows to a Kafka topic. With
//! `FRAUD_DETECTION=true`, seed 002's fraud rules and windowed aggregates too: alerts to the
//! topic `fraud-alerts` and to `fraud_alerts/`, aggregates to `user_aggregates/`.

pub mod by_user;
pub mod cassandra;
pub mod fraud_alerts;
pub mod fraud_topic;
pub mod gold;
pub mod gold_topic;
pub mod raw_csv;
pub mod silver;
pub mod user_aggregates;

use std::fmt::Write as _;
use std::time::Duration;

use txn_core::time::write_python_isoformat;
use txn_core::{Reject, Transaction};

use crate::config::{ProcessorConfig, Stage};
use crate::engine::dataset::{Batch, Dataset, Derived};
use crate::engine::operator::Operator;
use crate::engine::output::Output;
use crate::engine::source::RawBatch;
use crate::operators::fraud::{Alert, FraudBatch, FraudRules, TxnRef};
use crate::operators::partitioned::{Partitioned, SourceClocks};
use crate::operators::user_windows::{UserTxn, UserWindowRow, UserWindows};
use crate::operators::windows::{TumblingWindows, WindowBatch};
use crate::outputs::bronze::Bronze;
use crate::outputs::quarantine::Quarantine;
use crate::sinks;
use crate::{join, spawn};

/// A decoded batch of transactions.
pub type TxnBatch<'a> = Batch<'a, Transactions>;

/// Seed 002's user windows: 5 minutes.
pub const USER_WINDOW_MICROS: i64 = 300_000_000;

/// The transactions dataset: gold's windows are its operator; with fraud detection, the fraud
/// rules and the user windows too. In scale-out with fraud detection, a member runs one of two
/// stages ([`Stage`]): gold and the layers, sending every valid transaction to a repartition
/// topic keyed by user ([`by_user`]); or the fraud rules and user windows over that topic.
pub struct Transactions {
    /// `None` in the second stage.
    gold: Option<TumblingWindows>,
    gold_topic: Option<String>,
    fraud: Option<Fraud>,
    /// The first stage's repartition topic and its partition count.
    by_user: Option<(String, i32)>,
    /// The second stage: the clock records of the batch being staged, (partition of the
    /// repartition topic, input partition, largest event time).
    clocks: Vec<(i32, i32, i64)>,
    /// With CASSANDRA_HOSTS: the tables of gold (CASSANDRA_GOLD_TABLE) and of the user
    /// aggregates (with fraud detection).
    cassandra_gold: Option<sinks::cassandra::CassandraTable>,
    cassandra_user_aggregates: Option<sinks::cassandra::CassandraTable>,
}

/// The operators and the alerts topic of fraud detection.
struct Fraud {
    rules: UserKeyed,
    topic: String,
}

/// The operators keyed by user: one state for a lone processor, or one per partition of the
/// repartition topic (scale-out's second stage, where a user's transactions are in one
/// partition).
// One per dataset, made once: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum UserKeyed {
    Whole(FraudRules, UserWindows),
    ByPartition {
        rules: Partitioned<FraudRules>,
        windows: Partitioned<UserWindows>,
        clocks: Partitioned<SourceClocks>,
        /// The input topic's partition count.
        sources: i32,
    },
}

/// What the operators derived from a batch.
pub struct TxnDerived {
    pub gold: WindowBatch,
    pub alerts: Vec<Alert>,
    pub user_windows: Vec<UserWindowRow>,
    /// Transactions the fraud rules found late (not evaluated).
    pub fraud_late: u64,
    /// Rows the user windows found late.
    pub user_windows_late: u64,
    pub fraud: bool,
    /// Whether gold ran (not in scale-out's second stage).
    pub has_gold: bool,
    /// The fraud rules' watermark, the batch's when gold did not run.
    pub rules_watermark: Option<i64>,
    /// Scale-out's first stage: each input partition the batch read, and the largest event
    /// time of its records so far (sent on to the repartition topic).
    pub clocks: Vec<(i32, i64)>,
}

impl Derived for TxnDerived {
    fn late(&self) -> u64 {
        if self.has_gold {
            self.gold.late
        } else {
            self.fraud_late
        }
    }

    fn late_by_operator(&self) -> Vec<(&'static str, u64)> {
        let mut late = if self.has_gold {
            self.gold.late_by_operator()
        } else {
            Vec::new()
        };
        if self.fraud {
            late.push(("fraud_rules", self.fraud_late));
            late.push(("user_aggregates", self.user_windows_late));
        }
        late
    }

    fn watermark(&self) -> Option<i64> {
        if self.has_gold {
            self.gold.watermark
        } else {
            self.rules_watermark
        }
    }
}

impl Transactions {
    pub fn new(config: &ProcessorConfig) -> Self {
        let rekeyed = matches!(config.stage, Stage::Rekeyed { .. });
        Transactions {
            gold: (!rekeyed).then(|| {
                let gold = TumblingWindows::new(
                    "gold",
                    micros(config.gold_window),
                    micros(config.gold_watermark_delay),
                    config.gold_output_mode,
                );
                // Scale-out: cards are the topic's key, so a card's windows are in one partition.
                if config.scale_out {
                    gold.by_partition()
                } else {
                    gold
                }
            }),
            gold_topic: config
                .gold_topic
                .clone()
                .filter(|t| !t.is_empty() && !rekeyed),
            by_user: match &config.stage {
                Stage::Keyed {
                    repartition,
                    partitions,
                } => Some((repartition.clone(), *partitions)),
                _ => None,
            },
            clocks: Vec::new(),
            cassandra_gold: config
                .cassandra_hosts()
                .and(config.cassandra_gold_table.as_deref())
                .map(cassandra::gold_table),
            cassandra_user_aggregates: (config.cassandra_hosts().is_some()
                && config.fraud_detection)
                .then(|| cassandra::user_aggregates_table(config)),
            fraud: (config.fraud_detection && !matches!(config.stage, Stage::Keyed { .. })).then(
                || {
                    let delay = micros(config.fraud_watermark_delay);
                    let rules = if let Stage::Rekeyed { sources } = config.stage {
                        UserKeyed::ByPartition {
                            rules: Partitioned::new(move || FraudRules::new(delay)),
                            windows: Partitioned::new(move || {
                                UserWindows::new(USER_WINDOW_MICROS, delay)
                            }),
                            clocks: Partitioned::new(SourceClocks::default),
                            sources,
                        }
                    } else {
                        UserKeyed::Whole(
                            FraudRules::new(delay),
                            UserWindows::new(USER_WINDOW_MICROS, delay),
                        )
                    };
                    Fraud {
                        rules,
                        topic: config.fraud_alerts_topic.clone(),
                    }
                },
            ),
        }
    }
}

impl Dataset for Transactions {
    type Record<'a> = Transaction<'a>;
    const PAYLOADS_OF_VALID: bool = true;
    type Derived = TxnDerived;

    fn decode(text: &str) -> Result<Transaction<'_>, Reject> {
        txn_core::json::decode_text(text)
    }

    fn decode_avro<'a>(
        schema: &txn_core::avro::WriterSchema,
        id: u32,
        body: &'a [u8],
    ) -> Result<Transaction<'a>, Reject> {
        txn_core::json::decode_avro(schema, id, body)
    }

    fn take_control(&mut self, raw: &mut RawBatch) {
        let Some(Fraud {
            rules: UserKeyed::ByPartition { .. },
            ..
        }) = &self.fraud
        else {
            return;
        };
        let clocks = &mut self.clocks;
        clocks.clear();
        let arena = &raw.arena;
        let bytes = |at: Option<(usize, usize)>| at.map_or(&[][..], |(a, b)| &arena[a..b]);
        raw.messages.retain(
            |m| match by_user::parse_clock(bytes(m.key), bytes(m.value)) {
                Some((source, max)) => {
                    clocks.push((m.partition, source, max));
                    false
                }
                None => true,
            },
        );
    }

    fn operate(&mut self, batch: &TxnBatch<'_>) -> TxnDerived {
        let messages = &batch.raw.messages;
        let gold_input = batch.valid.iter().map(|(i, t)| {
            (
                messages[*i as usize].partition,
                t.event_time,
                t.card_id.as_deref(),
                t.amount,
            )
        });
        let mut derived = TxnDerived {
            gold: WindowBatch::default(),
            alerts: Vec::new(),
            user_windows: Vec::new(),
            fraud_late: 0,
            user_windows_late: 0,
            fraud: self.fraud.is_some(),
            has_gold: self.gold.is_some(),
            rules_watermark: None,
            clocks: Vec::new(),
        };
        let Some(fraud) = &mut self.fraud else {
            if let Some(gold) = &mut self.gold {
                derived.gold = gold.apply_from(gold_input);
                if self.by_user.is_some() {
                    let mut read: Vec<i32> = messages.iter().map(|m| m.partition).collect();
                    read.dedup();
                    derived.clocks = read
                        .into_iter()
                        .filter_map(|p| Some((p, gold.partition_max(p)?)))
                        .collect();
                }
            }
            return derived;
        };
        // A transaction without a user cannot be followed: the rules skip it (the windows keep
        // it, under a null user_id).
        let txns = batch.valid.iter().filter_map(|(i, t)| {
            let m = batch.message(*i);
            Some(TxnRef {
                event_time: t.event_time,
                partition: m.partition,
                offset: m.offset,
                user_id: t.user_id.as_deref()?,
                txn_id: &t.txn_id,
                amount: t.amount,
                currency: t.currency.as_deref(),
                merchant: t.merchant.as_deref(),
                category: t.category.as_deref(),
                lat: t.lat,
                lon: t.lon,
            })
        });
        let user_txns = batch.valid.iter().map(|(i, t)| {
            (
                messages[*i as usize].partition,
                UserTxn {
                    event_time: t.event_time,
                    user_id: t.user_id.as_deref(),
                    category: t.category.as_deref(),
                    merchant: t.merchant.as_deref(),
                    amount: t.amount,
                },
            )
        });
        // The three operators keep states of their own: each on a thread (their outputs wait
        // for all three; bronze, silver and the raw CSV run beside them).
        let gold_windows = &mut self.gold;
        let pending_clocks = &mut self.clocks;
        let (gold, rules, (user_windows, user_windows_late)) = std::thread::scope(|s| {
            let gold = gold_windows
                .as_mut()
                .map(|g| spawn(s, "gold", || g.apply_from(gold_input)));
            let (rules, windows) = match &mut fraud.rules {
                UserKeyed::Whole(rules, windows) => {
                    let w = spawn(s, "user_windows", || {
                        windows.apply(user_txns.map(|(_, t)| t))
                    });
                    (rules.apply(txns), join(w))
                }
                // Each partition of the repartition topic on its own state, in partition order,
                // its watermark following the input partitions' clocks as they stand after
                // the batch's records.
                UserKeyed::ByPartition {
                    rules,
                    windows,
                    clocks,
                    sources,
                } => {
                    let mut touched = std::collections::BTreeSet::new();
                    for (q, source, max) in pending_clocks.drain(..) {
                        clocks.part(q).advance(source, max);
                        touched.insert(q);
                    }
                    let mut user_txns: Vec<(i32, UserTxn<'_>)> = user_txns.collect();
                    let txns: Vec<(i32, TxnRef<'_>)> = txns.map(|t| (t.partition, t)).collect();
                    touched.extend(user_txns.iter().map(|(q, _)| *q));
                    for &q in &touched {
                        let upstream = clocks.part(q).upstream(*sources);
                        rules.part(q).follow_upstream(upstream);
                        windows.part(q).follow_upstream(upstream);
                    }
                    let partitions = touched.clone();
                    let w = spawn(s, "user_windows", move || {
                        let (mut rows, mut late) = (Vec::new(), 0);
                        for q in partitions {
                            let mine = user_txns.iter().take_while(|(p, _)| *p == q).count();
                            let (r, l) = windows
                                .part(q)
                                .apply(user_txns.drain(..mine).map(|(_, t)| t));
                            rows.extend(r);
                            late += l;
                        }
                        (rows, late)
                    });
                    let mut all = FraudBatch::default();
                    let mut txns = txns.into_iter().peekable();
                    for q in touched {
                        let mut mine = Vec::new();
                        while let Some((_, t)) = txns.next_if(|(p, _)| *p == q) {
                            mine.push(t);
                        }
                        let b = rules.part(q).apply(mine);
                        all.alerts.extend(b.alerts);
                        all.late += b.late;
                    }
                    (all, join(w))
                }
            };
            (gold.map(join), rules, windows)
        });
        if rules.late > 0 {
            tracing::info!(
                "[processor] fraud rules: {} late transactions not evaluated (older than the watermark)",
                rules.late
            );
        }
        derived.rules_watermark = match &fraud.rules {
            UserKeyed::Whole(rules, _) => rules.watermark(),
            UserKeyed::ByPartition { rules, .. } => Operator::watermark(rules),
        };
        derived.gold = gold.unwrap_or_default();
        derived.alerts = rules.alerts;
        derived.user_windows = user_windows;
        derived.fraud_late = rules.late;
        derived.user_windows_late = user_windows_late;
        derived
    }

    fn operators(&mut self) -> Vec<&mut dyn Operator> {
        let mut operators: Vec<&mut dyn Operator> = Vec::new();
        if let Some(gold) = &mut self.gold {
            operators.push(gold);
        }
        if let Some(fraud) = &mut self.fraud {
            match &mut fraud.rules {
                UserKeyed::Whole(rules, windows) => {
                    operators.push(rules);
                    operators.push(windows);
                }
                UserKeyed::ByPartition {
                    rules,
                    windows,
                    clocks,
                    ..
                } => {
                    operators.push(rules);
                    operators.push(windows);
                    operators.push(clocks);
                }
            }
        }
        operators
    }

    fn outputs(&self) -> Vec<Box<dyn Output<Self>>> {
        if self.gold.is_none() {
            // Scale-out's second stage: the repartition topic's records were checked by the
            // first (a reject here would still be kept, in quarantine).
            let mut outputs: Vec<Box<dyn Output<Self>>> = vec![Box::new(Quarantine::default())];
            if let Some(fraud) = &self.fraud {
                outputs.push(Box::new(fraud_alerts::FraudAlerts));
                outputs.push(Box::new(fraud_topic::FraudTopic(fraud.topic.clone())));
                outputs.push(Box::new(user_aggregates::UserAggregates));
            }
            return outputs;
        }
        let mut outputs: Vec<Box<dyn Output<Self>>> = vec![
            Box::new(Bronze::default()),
            Box::new(silver::Silver),
            Box::new(Quarantine::default()),
            Box::new(raw_csv::RawCsv),
            Box::new(gold::Gold),
        ];
        if let Some(topic) = &self.gold_topic {
            outputs.push(Box::new(gold_topic::GoldTopic(topic.clone())));
        }
        if let Some(table) = &self.cassandra_gold {
            outputs.push(Box::new(cassandra::GoldRows(table.clone())));
        }
        if let Some((topic, partitions)) = &self.by_user {
            outputs.push(Box::new(by_user::ByUser(topic.clone(), *partitions)));
        }
        if let Some(fraud) = &self.fraud {
            outputs.push(Box::new(fraud_alerts::FraudAlerts));
            outputs.push(Box::new(fraud_topic::FraudTopic(fraud.topic.clone())));
            outputs.push(Box::new(user_aggregates::UserAggregates));
            if let Some(table) = &self.cassandra_user_aggregates {
                outputs.push(Box::new(cassandra::UserAggregatesRows(table.clone())));
            }
        }
        outputs
    }

    fn preview(&self, batch: &TxnBatch<'_>) -> String {
        silver_preview(batch)
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A 10-row table of silver: event_time, card_id, amount, merchant, status.
pub fn silver_preview(batch: &TxnBatch<'_>) -> String {
    let mut out = String::from(
        "event_time                       | card_id  |     amount | merchant      | status\n",
    );
    for (_, t) in batch.valid.iter().take(10) {
        let mut ts = String::new();
        write_python_isoformat(&mut ts, t.event_time);
        let amount = t
            .amount
            .map_or_else(|| "null".to_string(), |a| format!("{a:.2}"));
        let _ = writeln!(
            out,
            "{ts:<32} | {:<8} | {amount:>10} | {:<13} | {}",
            t.card_id.as_deref().unwrap_or("null"),
            t.merchant.as_deref().unwrap_or("null"),
            t.status.as_deref().unwrap_or("null"),
        );
    }
    let _ = write!(
        out,
        "({} of {} rows)",
        batch.valid.len().min(10),
        batch.valid.len()
    );
    out
}
