//! Start-up: the stages and the checkpoint opened (the lock taken, the operators' state
//! restored), the consumer connected, the topic's identity checked, the sinks started (fencing an
//! earlier run's writer), and the offsets the first batch starts at.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::info;

use super::batch::Stages;
use super::checkpoint::BatchPlan;
use super::identity::{check_topic_identity, TopicIdentity};
use super::plan::{highs, StartingOffsets, Watermarks};
use super::run::Engine;
use super::source::KafkaSource;
use super::{metrics, Dataset};
use crate::config::{ProcessorConfig, Trigger};
use crate::error::Result;
use crate::os::tune_allocator;
use crate::sinks::{SinkBatch, Start};
use crate::RunSummary;

/// A run ready for its first batch.
pub(super) struct Started<D: Dataset> {
    pub engine: Engine<D>,
    pub source: KafkaSource,
    pub watermarks: Watermarks,
    /// A batch the last run planned and did not commit: re-run first, with its own plan.
    pub pending: Option<BatchPlan>,
    pub next_offsets: BTreeMap<i32, i64>,
    pub next_batch: u64,
    /// When the last batch was planned (UTC µs), if there was one.
    pub last_planned_at: Option<i64>,
    pub identity: TopicIdentity,
    /// Where an available-now run stops (empty: follow the topic).
    pub target: BTreeMap<i32, i64>,
    /// The trigger's interval (zero: back to back).
    pub interval: Duration,
}

pub(super) fn start<D: Dataset>(dataset: D, config: &ProcessorConfig) -> Result<Started<D>> {
    config.validate()?;
    tune_allocator();
    let starting = StartingOffsets::parse(&config.starting_offsets, &config.kafka.topic)?;
    let (mut stages, mut recovery) = Stages::open(dataset, config)?;

    let client = config.kafka_client()?;
    info!(
        "[processor] Connecting to {}, topic={}, output={}, checkpoint={}, trigger={:?}",
        client.bootstrap,
        config.kafka.topic,
        config.output_path,
        stages.checkpoint()?.root().display(),
        config.trigger
    );
    info!("[processor] Kafka client: {}", client.describe());
    let t = std::time::Instant::now();
    let source = KafkaSource::new(&client, &config.kafka.topic, &config.group_id)?;
    let watermarks = source.wait_ready(config.connect_timeout)?;
    let ready = t.elapsed();
    check_topic_identity(
        config,
        &source,
        stages.checkpoint()?,
        &mut recovery,
        &watermarks,
    )?;
    let identified = t.elapsed();
    // The sinks connect, and fence and recognise what the last run left (a Kafka transaction).
    let checkpoint_id = stages.checkpoint()?.id()?;
    stages.start_sinks(&Start {
        config,
        client: &client,
        checkpoint_id: &checkpoint_id,
        pending: recovery.pending.as_ref().map(|plan| SinkBatch {
            batch: plan.batch,
            planned_at: plan.planned_at,
            ranges: &plan.ranges,
            topic_id: plan.topic_id.as_deref(),
        }),
        group: &source,
    })?;
    // A missing group ACL is found now, before anything is written; after the fencing above, so
    // that a killed run's open transaction (its offsets not yet stable) does not hold the read.
    let sinks = t.elapsed();
    source.check_group_access(config.connect_timeout.min(Duration::from_secs(15)))?;
    tracing::debug!(
        "[processor] start: the topic's offsets known after {ready:?}, its identity checked after {identified:?}, the sinks started after {sinks:?}, the group's access checked after {:?}",
        t.elapsed()
    );
    let next_offsets = match recovery.next_offsets {
        Some(n) => {
            info!(
                "[processor] resuming from the checkpoint: next batch {}, offsets {n:?}",
                recovery.next_batch
            );
            n
        }
        None => {
            let n = starting.resolve(&watermarks)?;
            info!(
                "[processor] no checkpoint: starting at {n:?} (STARTING_OFFSETS={})",
                config.starting_offsets
            );
            n
        }
    };
    let next_batch = recovery.next_batch;
    let identity = TopicIdentity {
        recorded: source.topic_id(),
        fail_on_data_loss: config.fail_on_data_loss,
        topic: config.kafka.topic.clone(),
        last_highs: highs(&watermarks),
    };
    let engine = Engine {
        stages,
        last_batch_start: None,
        summary: RunSummary::default(),
        last_settled: Vec::new(),
        dataset: config.dataset,
        topic: config.kafka.topic.clone(),
    };

    // The available-now target: what is in the topic now.
    let target: BTreeMap<i32, i64> = match config.trigger {
        Trigger::AvailableNow => highs(&watermarks),
        Trigger::Interval(_) => BTreeMap::new(),
    };
    let interval = match config.trigger {
        Trigger::Interval(d) => d,
        Trigger::AvailableNow => Duration::ZERO,
    };
    metrics::record_start(interval);
    Ok(Started {
        engine,
        source,
        watermarks,
        pending: recovery.pending,
        next_offsets,
        next_batch,
        last_planned_at: recovery.last_planned_at,
        identity,
        target,
        interval,
    })
}
