//! Scale-out with fraud detection, first stage: every valid transaction to the repartition topic
//! (`<KAFKA_GROUP_ID>-transactions-by-user-repartition`), keyed by its `user_id` (`""` when it
//! has none), in the batch's Kafka transaction. The output producer's `murmur2_random`
//! partitioner hashes the key (Kafka's Java partitioner), so a user's transactions are all in one
//! partition there, in the order they were read: the second stage keeps the fraud rules' and the
//! user windows' state per partition of that topic, and it moves with the partition.
//!
//! The value is the transaction's JSON text as read (Avro values rendered as JSON), so the
//! second stage decodes exactly what the first one did.
//!
//! After a batch's transactions, each input partition it read sends its clock (the largest
//! event time of its records so far) to every partition of the repartition topic: a control
//! record, key `CLOCK_PREFIX <partition> <micros>` and an empty value, that the second stage
//! takes out before decoding ([`parse_clock`]). Its operators' watermark follows the smallest
//! clock of the input partitions ([`crate::operators::partitioned::SourceClocks`]).

use super::Transactions;
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::Result;
use crate::sinks::kafka::TopicRecord;

/// The key prefix of a clock record (a control character first: not a user id).
pub const CLOCK_PREFIX: &str = "\u{1f}clock ";

/// The (input partition, largest event time) of a clock record's key and value.
pub fn parse_clock(key: &[u8], value: &[u8]) -> Option<(i32, i64)> {
    if !value.is_empty() {
        return None;
    }
    let rest = std::str::from_utf8(key.strip_prefix(CLOCK_PREFIX.as_bytes())?).ok()?;
    let (p, max) = rest.split_once(' ')?;
    Some((p.parse().ok()?, max.parse().ok()?))
}

/// The repartition topic and its partition count.
pub struct ByUser(pub String, pub i32);

impl Output<Transactions> for ByUser {
    fn target(&self) -> Target {
        Target::Topic(self.0.clone())
    }

    fn stage(&self, input: &StageInput<'_, '_, Transactions>) -> Result<Staged> {
        let mut records = crate::datasets::stages::repartition(&self.0, input.batch, |t| {
            t.user_id.as_deref().unwrap_or_default().as_bytes().to_vec()
        })?;
        for &(source, max) in &input.derived()?.clocks {
            for partition in 0..self.1 {
                records.push(TopicRecord {
                    topic: self.0.clone(),
                    key: Some(format!("{CLOCK_PREFIX}{source} {max}").into_bytes()),
                    value: Vec::new(),
                    avro_schema: "",
                    partition: Some(partition),
                });
            }
        }
        Ok(Staged::records(records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_record_reads_back_and_nothing_else_is_one() {
        let key = format!("{CLOCK_PREFIX}3 1762500000000000");
        assert_eq!(
            parse_clock(key.as_bytes(), b""),
            Some((3, 1_762_500_000_000_000))
        );
        assert_eq!(parse_clock(key.as_bytes(), b"{}"), None, "a value: data");
        assert_eq!(parse_clock(b"user_1", b""), None);
        assert_eq!(
            parse_clock(format!("{CLOCK_PREFIX}x 1").as_bytes(), b""),
            None
        );
    }
}
