//! The local stack's back-pressure: the embedded broker (librdkafka's mock) keeps about 5 MiB
//! per partition in memory and silently drops the oldest records beyond that, so a processor
//! that falls behind would lose data. The stack sizes the topic for the rate and trigger, and
//! holds the producer back while what the processor settled trails the topic's end by more than
//! half of what the broker keeps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tracing::{info, warn};

/// What the mock keeps of a partition (librdkafka's `rdkafka_mock.c`: 5 MiB or 100,000 records).
const PARTITION_BYTES: f64 = 5.0 * 1024.0 * 1024.0;
const PARTITION_RECORDS: f64 = 100_000.0;
/// A generous size of one message (seed-shaped transactions are about 300 bytes).
const MESSAGE_BYTES: f64 = 400.0;
/// The most partitions the stack creates for rate (each may hold 5 MiB of memory).
const MOST_PARTITIONS: i32 = 32;

/// Records one partition holds before the mock drops the oldest.
fn records_per_partition() -> f64 {
    (PARTITION_BYTES / MESSAGE_BYTES).min(PARTITION_RECORDS)
}

/// Partitions that hold, at half their room, what `rate` msg/s brings in a trigger interval and
/// two seconds more: at least `asked`, at most [`MOST_PARTITIONS`].
pub fn partitions_for(asked: i32, rate: f64, trigger: Duration) -> i32 {
    if rate <= 0.0 {
        return asked;
    }
    let seconds = trigger.as_secs_f64() + 2.0;
    let needed = (rate * seconds * 2.0 / records_per_partition()).ceil() as i32;
    needed.clamp(asked, MOST_PARTITIONS.max(asked))
}

/// How far the processor may trail the topic before the producer waits: half the room.
pub fn budget(partitions: i32) -> u64 {
    (records_per_partition() * f64::from(partitions) / 2.0) as u64
}

/// Watches the processor's committed position against the topic's end.
pub struct Backpressure {
    consumer: BaseConsumer,
    topic: String,
    budget: u64,
    held_since: Option<Instant>,
}

impl Backpressure {
    pub fn new(bootstrap: &str, topic: &str, budget: u64) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()?;
        Ok(Backpressure {
            consumer,
            topic: topic.into(),
            budget,
            held_since: None,
        })
    }

    /// Offsets in the topic that the processor has not settled yet (`None`: cannot tell now).
    /// The topic is the stack's own, new: its offsets start at 0, and the processor of this
    /// process counts what it settles ([`processor::metrics::SETTLED_OFFSETS`]), which works
    /// whether its group offsets go through a transaction (that the mock does not keep) or not.
    pub fn backlog(&self) -> Option<u64> {
        let timeout = Duration::from_secs(2);
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), timeout)
            .ok()?;
        let mut end = 0;
        for p in metadata.topics().first()?.partitions() {
            let (_, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p.id(), timeout)
                .ok()?;
            end += high.max(0) as u64;
        }
        let settled = processor::metrics::SETTLED_OFFSETS.load(Ordering::Relaxed);
        Some(end.saturating_sub(settled))
    }

    /// Holds the producer (`hold`) while the backlog is above the budget, and lets it go once
    /// the backlog is below half of it; says so when it starts and ends.
    pub fn tick(&mut self, hold: &AtomicBool) {
        let Some(backlog) = self.backlog() else {
            return;
        };
        match self.held_since {
            None if backlog > self.budget => {
                warn!(
                    "[pipeline] the processor is {backlog} messages behind (the embedded broker keeps about {} in memory): the producer waits until it catches up",
                    self.budget * 2
                );
                hold.store(true, Ordering::Relaxed);
                self.held_since = Some(Instant::now());
            }
            Some(since) if backlog <= self.budget / 2 => {
                info!(
                    "[pipeline] the processor caught up ({backlog} behind): the producer goes on after {:.1} s",
                    since.elapsed().as_secs_f64()
                );
                hold.store(false, Ordering::Relaxed);
                self.held_since = None;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topic_is_sized_for_the_rate_and_the_trigger() {
        let two = Duration::from_secs(2);
        assert_eq!(partitions_for(3, 10.0, Duration::from_secs(30)), 3);
        assert_eq!(partitions_for(3, 0.0, two), 3, "unlimited: as asked");
        let fast = partitions_for(3, 20_000.0, two);
        assert!((12..=14).contains(&fast), "{fast}");
        assert_eq!(partitions_for(3, 1e9, two), MOST_PARTITIONS);
        assert_eq!(partitions_for(40, 1e9, two), 40, "never fewer than asked");
        // At 20,000 msg/s, half the room holds more than a 2 s trigger and 2 s of work.
        assert!(budget(fast) as f64 > 20_000.0 * 4.0, "{}", budget(fast));
    }
}
