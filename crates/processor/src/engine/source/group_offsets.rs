//! The consumer group's offsets: not what decides where a batch starts (the checkpoint does),
//! but what lag tools read, what a transaction commits, and what tells a re-run batch whose
//! transaction committed before a crash.

use std::time::Duration;

use super::*;

impl KafkaSource {
    /// Reads the group's committed offsets once: a user without access to the consumer group
    /// (ACL READ on group KAFKA_GROUP_ID) is refused now, before any batch is written.
    pub fn check_group_access(&self, timeout: Duration) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, 0);
        let group_denied = || {
            Error::Access(denied(
                &self.consumer.context().who,
                "READ",
                &format!("consumer group {}", self.group_id),
            ))
        };
        match self.consumer.committed_offsets(tpl, timeout) {
            Err(e)
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::GroupAuthorizationFailed) =>
            {
                Err(group_denied())
            }
            Err(e)
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::TopicAuthorizationFailed) =>
            {
                Err(self.topic_denied("DESCRIBE"))
            }
            Ok(got) => {
                for e in got.elements() {
                    match e.error() {
                        Err(e)
                            if e.rdkafka_error_code()
                                == Some(RDKafkaErrorCode::GroupAuthorizationFailed) =>
                        {
                            return Err(group_denied())
                        }
                        Err(e)
                            if e.rdkafka_error_code()
                                == Some(RDKafkaErrorCode::TopicAuthorizationFailed) =>
                        {
                            return Err(self.topic_denied("DESCRIBE"))
                        }
                        _ => {}
                    }
                }
                self.fatal()
            }
            // Anything else (a broker still loading its offsets topic) is met again later.
            Err(e) => {
                self.fatal()?;
                debug!("[processor] reading the group's offsets at start: {e}");
                Ok(())
            }
        }
    }

    /// Commits the batch's end offsets to the consumer group so lag tools see progress. Failure
    /// is only a warning: the checkpoint is the source of truth.
    pub fn commit_group_offsets(&self, ranges: &[OffsetRange]) {
        let mut tpl = TopicPartitionList::new();
        for r in ranges {
            if tpl
                .add_partition_offset(&self.topic, r.partition, Offset::Offset(r.end))
                .is_err()
            {
                return;
            }
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            warn!("[processor] cannot commit offsets to group (progress is safe in the checkpoint): {e}");
        }
    }

    /// Waits up to `timeout` until the group's committed offsets reach the ends of `ranges`,
    /// committing them again while they do not. Per batch the group commit is asynchronous and
    /// only a warning when it fails: on a fresh broker the first ones fail while Kafka creates its
    /// offsets topic, and a process that exits right after its last batch would leave lag tools
    /// without the group (CI saw `kafka-consumer-groups` report it not found).
    pub fn confirm_group_offsets(&self, ranges: &[OffsetRange], timeout: Duration) {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.group_offsets_reach(ranges, left.max(Duration::from_millis(100))) {
                Ok(true) => return,
                _ if Instant::now() >= until => {
                    warn!("[processor] the consumer group's offsets were not confirmed within {timeout:?} (progress is safe in the checkpoint; lag tools may show older offsets)");
                    return;
                }
                _ => {
                    self.commit_group_offsets(ranges);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// The group's committed offset and its metadata for each of `partitions` (stable ones: an
    /// open transaction's are waited for, up to `timeout`); `None` where nothing is committed.
    pub fn committed_with_metadata(
        &self,
        partitions: &[i32],
        timeout: Duration,
    ) -> Result<Vec<(i32, Option<i64>, String)>> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(&self.topic, p);
        }
        let got = self
            .consumer
            .committed_offsets(tpl, timeout)
            .kafka_context(|| "cannot read the consumer group's offsets".into())?;
        partitions
            .iter()
            .map(|&p| {
                let e = got.find_partition(&self.topic, p).ok_or_else(|| {
                    Error::Internal(format!("no committed offset answer for partition {p}"))
                })?;
                e.error().kafka_context(|| {
                    format!("cannot read the consumer group's offset of partition {p}")
                })?;
                let offset = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                Ok((p, offset, e.metadata().to_string()))
            })
            .collect()
    }

    /// Whether the group's committed offsets (stable ones: a pending transaction's are waited
    /// for) reach the end of every non-empty range.
    pub fn group_offsets_reach(&self, ranges: &[OffsetRange], timeout: Duration) -> Result<bool> {
        self.group_offsets_match(
            ranges,
            timeout,
            |r, offset, _| matches!(offset, Offset::Offset(o) if o >= r.end),
        )
    }

    /// Whether the group's committed offsets (stable ones) are exactly the ends of every
    /// non-empty range, each with `metadata`: what a batch's Kafka transaction commits.
    pub fn group_offsets_are(
        &self,
        ranges: &[OffsetRange],
        metadata: &str,
        timeout: Duration,
    ) -> Result<bool> {
        let any = ranges.iter().any(|r| !r.is_empty());
        Ok(any
            && self.group_offsets_match(ranges, timeout, |r, offset, meta| {
                offset == Offset::Offset(r.end) && meta == metadata
            })?)
    }

    /// Whether `matches(range, offset, metadata)` holds for the group's committed offset of every
    /// non-empty range (true when there is none).
    fn group_offsets_match(
        &self,
        ranges: &[OffsetRange],
        timeout: Duration,
        matches: impl Fn(&OffsetRange, Offset, &str) -> bool,
    ) -> Result<bool> {
        let mut tpl = TopicPartitionList::new();
        for r in ranges.iter().filter(|r| !r.is_empty()) {
            tpl.add_partition(&self.topic, r.partition);
        }
        if tpl.count() == 0 {
            return Ok(true);
        }
        let got = self
            .consumer
            .committed_offsets(tpl, timeout)
            .kafka_context(|| "cannot read the consumer group's offsets".into())?;
        Ok(ranges.iter().filter(|r| !r.is_empty()).all(|r| {
            got.find_partition(&self.topic, r.partition)
                .is_some_and(|e| e.error().is_ok() && matches(r, e.offset(), e.metadata()))
        }))
    }

    /// The consumer group's identity, for a transaction that commits input offsets.
    pub fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }
}

impl crate::sinks::InputGroup for KafkaSource {
    fn metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        self.group_metadata()
    }

    fn offsets_are(
        &self,
        ranges: &[OffsetRange],
        metadata: &str,
        timeout: Duration,
    ) -> Result<bool> {
        self.group_offsets_are(ranges, metadata, timeout)
    }

    fn topic_exists(&self, topic: &str) -> Result<Option<bool>> {
        KafkaSource::topic_exists(self, topic)
    }
}
