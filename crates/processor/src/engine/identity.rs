//! The input topic's identity: a topic deleted and created again has a new id, and its offsets
//! are not the old topic's.

use std::collections::BTreeMap;

use tracing::warn;

use super::checkpoint::{Checkpoint, Recovery};
use super::plan::{highs, Watermarks};
use super::source::KafkaSource;
use crate::config::ProcessorConfig;
use crate::error::{Error, Result};

/// A topic deleted and created again under the checkpoint's feet has another topic id: its
/// offsets are not the old topic's, so resuming at the checkpoint's offsets would skip or mix
/// records. With FAIL_ON_DATA_LOSS, stop and say so; without, read the new topic from its
/// beginning. The id is recorded the first time the broker tells it.
pub(super) fn check_topic_identity(
    config: &ProcessorConfig,
    source: &KafkaSource,
    checkpoint: &Checkpoint,
    recovery: &mut Recovery,
    watermarks: &Watermarks,
) -> Result<()> {
    let Some(now) = source.topic_id() else {
        return Ok(());
    };
    let topic = &config.kafka.topic;
    // The last plan's topic id says which topic its offsets are of; older checkpoints only
    // recorded one in the metadata.
    let recorded = match recovery.last_plan_topic_id.clone() {
        Some(id) => Some(id),
        None => checkpoint.topic_id()?,
    };
    match recorded {
        Some(recorded) if recorded == now => return Ok(()),
        Some(recorded) if recovery.next_offsets.is_some() => {
            let what = format!(
                "topic {topic} was deleted and created again: the checkpoint {} follows topic id {recorded}, the topic now has id {now}, and its offsets are not the old topic's",
                checkpoint.root().display()
            );
            if config.fail_on_data_loss || recovery.pending.is_some() {
                return Err(Error::DataLoss(format!(
                    "{what}; to start over, remove the checkpoint folder"
                )));
            }
            warn!("[processor] {what}: reading the new topic from its earliest offsets (FAIL_ON_DATA_LOSS=false)");
            recovery.next_offsets =
                Some(watermarks.iter().map(|(&p, &(low, _))| (p, low)).collect());
        }
        _ => {}
    }
    checkpoint.record_topic_id(topic, &now)
}

/// The input topic's identity, checked at every batch plan: a topic deleted and created again
/// while the processor runs has a new id, and the old offsets mean nothing in it.
pub(super) struct TopicIdentity {
    pub recorded: Option<String>,
    pub fail_on_data_loss: bool,
    pub topic: String,
    /// The partitions' latest offsets at the last plan (what the old topic held, at least).
    pub last_highs: BTreeMap<i32, i64>,
}

impl TopicIdentity {
    /// Whether the topic still has the recorded id (or the broker cannot say).
    pub fn unchanged(&self, source: &KafkaSource) -> bool {
        match (&self.recorded, source.topic_id()) {
            (Some(recorded), Some(now)) => *recorded == now,
            _ => true,
        }
    }

    /// Before a plan: a new id stops the run (FAIL_ON_DATA_LOSS=true) or moves `next` to the
    /// new topic's start and returns what of the old topic was never processed (lost).
    pub fn check(
        &mut self,
        source: &KafkaSource,
        next: &mut BTreeMap<i32, i64>,
        watermarks: &Watermarks,
    ) -> Result<u64> {
        let (Some(recorded), Some(now)) = (self.recorded.clone(), source.topic_id()) else {
            self.last_highs = highs(watermarks);
            return Ok(0);
        };
        if recorded == now {
            self.last_highs = highs(watermarks);
            return Ok(0);
        }
        let what = format!(
            "topic {} was deleted and created again while the processor ran (id {recorded}, now {now}): its offsets are not the old topic's",
            self.topic
        );
        if self.fail_on_data_loss {
            return Err(Error::DataLoss(format!(
                "{what}; to start over on the new topic, remove the checkpoint folder"
            )));
        }
        let never_processed: u64 = self
            .last_highs
            .iter()
            .map(|(p, &high)| (high - next.get(p).copied().unwrap_or(high)).max(0) as u64)
            .sum();
        warn!(
            "[processor] {what}: reading the new topic from its earliest offsets; {never_processed} offsets of the old topic were never processed (FAIL_ON_DATA_LOSS=false)"
        );
        *next = watermarks.iter().map(|(&p, &(low, _))| (p, low)).collect();
        // The next plan carries the new id (with the new topic's offsets): a restart before it
        // is written sees the old id and the new topic, and decides again.
        self.recorded = Some(now);
        self.last_highs = highs(watermarks);
        Ok(never_processed)
    }
}
