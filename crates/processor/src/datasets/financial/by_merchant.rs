//! Scale-out of the financial dataset, first stage: every valid transaction to the repartition
//! topic (`<KAFKA_GROUP_ID>-financial-by-merchant-repartition`), keyed by its `merchantId`, in
//! the batch's Kafka transaction (the output producer's `murmur2_random` partitioner: a
//! merchant's transactions all land in one partition). The second stage keeps the merchant
//! totals per partition of that topic. The value is the transaction's JSON text as read (Avro
//! values rendered as JSON).
//!
//! The anomaly rules stay in the first stage, their state per input partition: they are keyed
//! by `userId`, the topic's message key (the seeds' producer and ours key by it), so a user's
//! transactions are in one input partition. A valid record whose key is not its `userId` fails
//! the batch with the reason (its user's state would be split between partitions).

use super::Financial;
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::{Error, Result};

pub struct ByMerchant(pub String);

impl Output<Financial> for ByMerchant {
    fn target(&self) -> Target {
        Target::Topic(self.0.clone())
    }

    fn stage(&self, input: &StageInput<'_, '_, Financial>) -> Result<Staged> {
        if let Some(why) = &input.derived()?.key_mismatch {
            return Err(Error::Config(why.clone()));
        }
        let records = crate::datasets::stages::repartition(&self.0, input.batch, |t| {
            t.merchant_id.as_bytes().to_vec()
        })?;
        Ok(Staged::records(records))
    }
}
