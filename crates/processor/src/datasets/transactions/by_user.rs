//! Scale-out with fraud detection, first stage: every valid transaction to the repartition topic
//! (`<KAFKA_GROUP_ID>-transactions-by-user-repartition`), keyed by its `user_id` (`""` when it
//! has none), in the batch's Kafka transaction. The output producer's `murmur2_random`
//! partitioner hashes the key (Kafka's Java partitioner), so a user's transactions are all in one
//! partition there, in the order they were read: the second stage keeps the fraud rules' and the
//! user windows' state per partition of that topic, and it moves with the partition.
//!
//! The value is the transaction's JSON text as read (Avro values rendered as JSON), so the
//! second stage decodes exactly what the first one did.

use super::Transactions;
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::{Error, Result};
use crate::sinks::kafka::TopicRecord;

/// The repartition topic of a consumer group.
pub fn repartition_topic(group_id: &str) -> String {
    format!("{group_id}-transactions-by-user-repartition")
}

pub struct ByUser(pub String);

impl Output<Transactions> for ByUser {
    fn target(&self) -> Target {
        Target::Topic(self.0.clone())
    }

    fn own_thread(&self) -> bool {
        true
    }

    fn stage(&self, input: &StageInput<'_, '_, Transactions>) -> Result<Staged> {
        let batch = input.batch;
        let mut records = Vec::with_capacity(batch.valid.len());
        for (i, t) in &batch.valid {
            let text = batch.text(*i).ok_or_else(|| {
                Error::Internal(format!(
                    "transaction {} has no text to repartition",
                    t.txn_id
                ))
            })?;
            records.push(TopicRecord {
                topic: self.0.clone(),
                key: Some(t.user_id.as_deref().unwrap_or_default().as_bytes().to_vec()),
                value: text.into_owned().into_bytes(),
                avro_schema: "",
            });
        }
        Ok(Staged::records(records))
    }
}
