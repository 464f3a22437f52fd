//! An output is two-phase: staging a batch makes nothing visible, the commit makes it visible,
//! and committing a re-run batch again changes nothing.
//!
//! An output only builds what a batch gives it ([`Output::stage`]): a file in staging, or the
//! records of a Kafka topic. Where the staged pieces go and how they become visible belongs to
//! the sink that takes the output's [`Target`] ([`crate::sinks`]).

use super::checkpoint::BatchPlan;
use super::dataset::{Batch, Dataset};
use super::source::RawBatch;
use crate::error::Result;
use crate::sinks::files::{CompactWriter, FileLayer};
pub use crate::sinks::{Staged, Target};

/// One output of a dataset.
pub trait Output<D: Dataset>: Send + Sync {
    /// Where it writes: a folder of files, or a Kafka topic.
    fn target(&self) -> Target;

    /// Whether it is staged beside the operators (it does not read their results); the others
    /// are staged once the operators are done, each on a thread of its own too.
    fn own_thread(&self) -> bool {
        false
    }

    /// Builds the batch's piece: nothing is visible until the engine commits it.
    fn stage(&self, input: &StageInput<'_, '_, D>) -> Result<Staged>;
}

/// What an output is given to stage a batch.
pub struct StageInput<'s, 'a, D: Dataset> {
    pub raw: &'a RawBatch,
    pub batch: &'s Batch<'a, D>,
    /// The operators' results; `None` for outputs on their own thread (staged beside them).
    pub derived: Option<&'s D::Derived>,
    pub plan: &'s BatchPlan,
    /// The input topic.
    pub topic: &'s str,
    pub files: &'s CompactWriter,
}

// Only references: copied for each output's thread (a derive would ask `D: Copy`).
impl<D: Dataset> Clone for StageInput<'_, '_, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D: Dataset> Copy for StageInput<'_, '_, D> {}

impl<D: Dataset> StageInput<'_, '_, D> {
    /// One Parquet file of `rows` in `layer`, named after this batch (nothing for no rows).
    pub fn parquet(&self, layer: FileLayer, rows: &arrow_array::RecordBatch) -> Result<Staged> {
        if rows.num_rows() == 0 {
            return Ok(Staged::nothing());
        }
        let file = self
            .files
            .write_parquet(layer, rows, self.plan.planned_at, self.plan.batch)?;
        Ok(Staged::file(rows.num_rows() as u64, file))
    }

    /// The operators' results, for an output staged after them.
    pub fn derived(&self) -> Result<&D::Derived> {
        self.derived.ok_or_else(|| {
            crate::Error::Internal(
                "an output on its own thread cannot read the operators' results".into(),
            )
        })
    }
}
