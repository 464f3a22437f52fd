//! Scale-out of a dataset whose operators are keyed by something other than the topic's
//! message key (`SCALE_OUT=true` with `FRAUD_DETECTION=true`, or `DATASET=financial`): their
//! state cannot move with an input partition. As Kafka Streams splits such a topology in two
//! sub-topologies joined by a repartition topic, a processor runs two scale-out members, each
//! exactly once on its own ([`Split`]):
//!
//! 1. group `KAFKA_GROUP_ID` over the input topic: the layers and the operators keyed by the
//!    topic's key, and every valid record to the repartition topic
//!    `<KAFKA_GROUP_ID>-<split>-repartition`, keyed by the other operators' key, in the same
//!    Kafka transaction as the batch's input offsets;
//! 2. group `<KAFKA_GROUP_ID>-<by>` over the repartition topic: those operators, with their
//!    state per partition of that topic (a key's records are all in one), and their outputs.
//!
//! The repartition topic is created at start with the input topic's partition count (a topic
//! that exists with another count is refused: a key's partition would change). Its records are
//! read from the earliest offset: nothing written to it is skipped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use tracing::info;

use crate::config::{ProcessorConfig, Stage, Trigger};
use crate::engine;
use crate::engine::dataset::Batch;
use crate::engine::source::KafkaSource;
use crate::engine::Dataset;
use crate::error::{Error, KafkaContext, Result};
use crate::sinks::kafka::TopicRecord;
use crate::RunSummary;

/// How a dataset splits in two stages.
pub struct Split {
    /// The repartition topic is `<KAFKA_GROUP_ID>-<topic>-repartition`.
    pub topic: &'static str,
    /// The second member's group is `<KAFKA_GROUP_ID>-<by>`, its checkpoint folder
    /// `<checkpoint>/<by>` (`-` as `_`).
    pub by: &'static str,
    /// What each stage runs, for the start line.
    pub first: &'static str,
    pub second: &'static str,
}

/// Fraud detection: the rules and user windows by user.
pub const FRAUD: Split = Split {
    topic: "transactions-by-user",
    by: "by-user",
    first: "gold and the layers by card",
    second: "the fraud rules and user windows by user",
};

/// The financial dataset: the merchant totals by merchant.
pub const MERCHANT_TOTALS: Split = Split {
    topic: "financial-by-merchant",
    by: "by-merchant",
    first: "the layers and the anomaly rules by user",
    second: "the merchant totals by merchant",
};

/// The repartition topic of a consumer group.
pub fn repartition_topic(group_id: &str, split: &Split) -> String {
    format!("{group_id}-{}-repartition", split.topic)
}

/// Every valid record of a batch to the repartition topic `topic`, keyed by `key`: its text as
/// read (an Avro value rendered as JSON), so the second stage decodes what the first one did.
pub fn repartition<'a, D: Dataset>(
    topic: &str,
    batch: &Batch<'a, D>,
    key: impl Fn(&D::Record<'a>) -> Vec<u8>,
) -> Result<Vec<TopicRecord>> {
    let mut records = Vec::with_capacity(batch.valid.len());
    for (i, r) in &batch.valid {
        let text = batch.text(*i).ok_or_else(|| {
            let m = batch.message(*i);
            Error::Internal(format!(
                "the record at partition {} offset {} has no text to repartition",
                m.partition, m.offset
            ))
        })?;
        records.push(TopicRecord {
            topic: topic.to_string(),
            key: Some(key(r)),
            value: text.into_owned().into_bytes(),
            avro_schema: "",
            partition: None,
        });
    }
    Ok(records)
}

/// The two members' settings: the first over the input topic, the second over the repartition
/// topic (its own group, checkpoint folder and the earliest offset).
pub fn configs(
    config: &ProcessorConfig,
    split: &Split,
    partitions: i32,
) -> (ProcessorConfig, ProcessorConfig) {
    let topic = repartition_topic(&config.group_id, split);
    let mut keyed = config.clone();
    keyed.stage = Stage::Keyed {
        repartition: topic.clone(),
        partitions,
    };
    let mut rekeyed = config.clone();
    rekeyed.stage = Stage::Rekeyed {
        sources: partitions,
    };
    rekeyed.kafka.topic = topic;
    rekeyed.group_id = format!("{}-{}", config.group_id, split.by);
    rekeyed.checkpoint_dir = Some(config.checkpoint_path().join(&split.by.replace('-', "_")));
    rekeyed.starting_offsets = "earliest".into();
    (keyed, rekeyed)
}

/// Runs the two members until `stop`; with `drain`, the first drains the input topic, then the
/// second what the first wrote. With the available-now trigger, the first runs to the end, then
/// the second.
pub fn run<D: Dataset>(
    make: fn(&ProcessorConfig) -> D,
    split: &Split,
    config: &ProcessorConfig,
    stop: &AtomicBool,
    drain: Option<&AtomicBool>,
) -> Result<RunSummary> {
    config.validate()?;
    let partitions = ensure_repartition_topic(config, &repartition_topic(&config.group_id, split))?;
    let (keyed, rekeyed) = configs(config, split, partitions);
    info!(
        "[processor] scale-out in two stages: {} from {} (group {}), {} from {} (group {})",
        split.first,
        keyed.kafka.topic,
        keyed.group_id,
        split.second,
        rekeyed.kafka.topic,
        rekeyed.group_id
    );
    if config.trigger == Trigger::AvailableNow {
        let summary = engine::run_with_drain(make(&keyed), &keyed, stop, drain)?;
        let _stage = second_stage_span(split).entered();
        let second = engine::run_with_drain(make(&rekeyed), &rekeyed, stop, drain)?;
        info!("[processor] the second stage: {second}");
        return Ok(summary);
    }
    let (first_stop, second_stop, second_drain) = (
        AtomicBool::new(false),
        AtomicBool::new(false),
        AtomicBool::new(false),
    );
    let first_done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let second = std::thread::Builder::new()
            .name("second-stage".into())
            .spawn_scoped(s, || {
                let _stage = second_stage_span(split).entered();
                let r = engine::run_with_drain(
                    make(&rekeyed),
                    &rekeyed,
                    &second_stop,
                    Some(&second_drain),
                );
                // The first cannot go on alone: its records would wait for no one.
                first_stop.store(true, Ordering::Relaxed);
                r
            })
            .map_err(|e| Error::Internal(format!("cannot start the second stage's thread: {e}")));
        // The user's stop reaches both; the first's drain is its own.
        let watcher = s.spawn(|| {
            while !first_done.load(Ordering::Relaxed) {
                if stop.load(Ordering::Relaxed) {
                    first_stop.store(true, Ordering::Relaxed);
                    second_stop.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let first = match &second {
            Ok(_) => engine::run_with_drain(make(&keyed), &keyed, &first_stop, drain),
            Err(e) => Err(Error::Internal(e.to_string())),
        };
        first_done.store(true, Ordering::Relaxed);
        let _ = watcher.join();
        // Drained or stopped: the second drains what the first wrote, unless the user stopped
        // both or the first failed.
        if first.is_ok() && !stop.load(Ordering::Relaxed) {
            second_drain.store(true, Ordering::Relaxed);
        } else {
            second_stop.store(true, Ordering::Relaxed);
        }
        let second = match second {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("the second stage panicked".into()))),
            Err(e) => Err(e),
        };
        let summary = first?;
        let second = second?;
        info!("[processor] the second stage: {second}");
        Ok(summary)
    })
}

/// The second stage's log lines carry `stage2{by=...}:` before their message.
fn second_stage_span(split: &Split) -> tracing::Span {
    tracing::info_span!("stage2", by = %split.by)
}

/// Creates the repartition topic with the input topic's partition count, or checks the count of
/// the one there; returns the count.
fn ensure_repartition_topic(config: &ProcessorConfig, topic: &str) -> Result<i32> {
    let client = config.kafka_client()?;
    let input = KafkaSource::new(&client, &config.kafka.topic, &config.group_id)?
        .wait_ready(config.connect_timeout)?;
    let partitions =
        i32::try_from(input.len()).map_err(|_| Error::Internal("too many partitions".into()))?;
    let admin: AdminClient<DefaultClientContext> = client
        .apply(&mut ClientConfig::new())
        .create()
        .kafka_context(|| "cannot create a Kafka admin client".into())?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.create_topics([&new], &options))
        .kafka_context(|| format!("cannot create the repartition topic {topic}"))?;
    for r in results {
        match r {
            Ok(_) => info!(
                "[processor] created the repartition topic {topic} ({partitions} partitions, as {})",
                config.kafka.topic
            ),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(Error::Config(format!(
                    "cannot create the repartition topic {topic} ({code}): create it with {partitions} partitions (as {}), or grant this client CREATE on it",
                    config.kafka.topic
                )))
            }
        }
    }
    let source = KafkaSource::new(&client, topic, &config.group_id)?;
    let deadline = std::time::Instant::now() + config.connect_timeout.max(Duration::from_secs(30));
    loop {
        // A topic just created answers "not leader" for a moment: asked again until the deadline.
        let have = match source.watermarks() {
            Ok(w) => w.len(),
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            Err(_) => 0,
        };
        if have == input.len() {
            return Ok(partitions);
        }
        if have > 0 {
            return Err(Error::Config(format!(
                "the repartition topic {topic} has {have} partitions, the input topic {} has {}: a key's records would move between partitions; delete it (with the group's offsets) or use another KAFKA_GROUP_ID",
                config.kafka.topic,
                input.len()
            )));
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Config(format!(
                "the repartition topic {topic} has no partitions after {:?}",
                config.connect_timeout.max(Duration::from_secs(30))
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_second_member_reads_the_repartition_topic_in_a_group_and_folder_of_its_own() {
        let config = ProcessorConfig::try_parse_from([
            "processor",
            "--scale-out",
            "true",
            "--fraud-detection",
            "true",
            "--group-id",
            "g1",
            "--output-path",
            "/data/out",
        ])
        .unwrap();
        let (keyed, rekeyed) = configs(&config, &FRAUD, 6);
        assert_eq!(
            keyed.stage,
            Stage::Keyed {
                repartition: "g1-transactions-by-user-repartition".into(),
                partitions: 6
            }
        );
        assert_eq!(keyed.kafka.topic, config.kafka.topic);
        assert_eq!(rekeyed.stage, Stage::Rekeyed { sources: 6 });
        assert_eq!(rekeyed.kafka.topic, "g1-transactions-by-user-repartition");
        assert_eq!(rekeyed.group_id, "g1-by-user");
        assert_eq!(
            rekeyed.checkpoint_path(),
            crate::config::Location::Local("/data/out/_chk/by_user".into())
        );
        assert_eq!(rekeyed.starting_offsets, "earliest");
    }
}
