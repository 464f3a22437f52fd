//! Scale-out with fraud detection (`SCALE_OUT=true FRAUD_DETECTION=true`): the fraud rules and
//! the user windows are keyed by `user_id`, the topic by card, so a user's state cannot move with
//! an input partition. As Kafka Streams splits such a topology in two sub-topologies joined by a
//! repartition topic, a processor runs two scale-out members, each exactly once on its own:
//!
//! 1. group `KAFKA_GROUP_ID` over the input topic: bronze, silver, quarantine, raw CSV and gold
//!    (keyed by card, the topic's key), and every valid transaction to the repartition topic
//!    `<KAFKA_GROUP_ID>-transactions-by-user-repartition`, keyed by user, in the same Kafka
//!    transaction as the batch's input offsets ([`super::by_user`]);
//! 2. group `<KAFKA_GROUP_ID>-by-user` over the repartition topic: the fraud rules and user
//!    windows, with their state per partition of that topic (a user's transactions are all in
//!    one), to `fraud_alerts/`, `user_aggregates/` and the alerts topic.
//!
//! The repartition topic is created at start with the input topic's partition count (a topic
//! that exists with another count is refused: a user's partition would change). Its records are
//! read from the earliest offset: nothing written to it is skipped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use tracing::info;

use super::{by_user, Transactions};
use crate::config::{ProcessorConfig, Stage, Trigger};
use crate::engine;
use crate::engine::source::KafkaSource;
use crate::error::{Error, KafkaContext, Result};
use crate::RunSummary;

/// The two members' settings: the first over the input topic, the second over the repartition
/// topic (its own group, checkpoint folder `<checkpoint>/by_user`, from the earliest offset).
pub fn configs(config: &ProcessorConfig, partitions: i32) -> (ProcessorConfig, ProcessorConfig) {
    let topic = by_user::repartition_topic(&config.group_id);
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
    rekeyed.group_id = format!("{}-by-user", config.group_id);
    rekeyed.checkpoint_dir = Some(config.checkpoint_path().join("by_user"));
    rekeyed.starting_offsets = "earliest".into();
    (keyed, rekeyed)
}

/// Runs the two members until `stop`; with `drain`, the first drains the input topic, then the
/// second what the first wrote. With the available-now trigger, the first runs to the end, then
/// the second.
pub fn run(
    config: &ProcessorConfig,
    stop: &AtomicBool,
    drain: Option<&AtomicBool>,
) -> Result<RunSummary> {
    config.validate()?;
    let partitions =
        ensure_repartition_topic(config, &by_user::repartition_topic(&config.group_id))?;
    let (keyed, rekeyed) = configs(config, partitions);
    info!(
        "[processor] fraud detection in scale-out: gold and the layers by card from {} (group {}), the fraud rules and user windows by user from {} (group {})",
        keyed.kafka.topic, keyed.group_id, rekeyed.kafka.topic, rekeyed.group_id
    );
    if config.trigger == Trigger::AvailableNow {
        let summary = engine::run_with_drain(Transactions::new(&keyed), &keyed, stop, drain)?;
        let second = engine::run_with_drain(Transactions::new(&rekeyed), &rekeyed, stop, drain)?;
        info!("[processor] the fraud stage: {second}");
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
            .name("fraud-stage".into())
            .spawn_scoped(s, || {
                let r = engine::run_with_drain(
                    Transactions::new(&rekeyed),
                    &rekeyed,
                    &second_stop,
                    Some(&second_drain),
                );
                // The first cannot go on alone: its records would wait for no one.
                first_stop.store(true, Ordering::Relaxed);
                r
            })
            .map_err(|e| Error::Internal(format!("cannot start the fraud stage's thread: {e}")));
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
            Ok(_) => engine::run_with_drain(Transactions::new(&keyed), &keyed, &first_stop, drain),
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
                .unwrap_or_else(|_| Err(Error::Internal("the fraud stage panicked".into()))),
            Err(e) => Err(e),
        };
        let summary = first?;
        let second = second?;
        info!("[processor] the fraud stage: {second}");
        Ok(summary)
    })
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
                "the repartition topic {topic} has {have} partitions, the input topic {} has {}: a user's transactions would move between partitions; delete it (with the group's offsets) or use another KAFKA_GROUP_ID",
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
        let (keyed, rekeyed) = configs(&config, 6);
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
