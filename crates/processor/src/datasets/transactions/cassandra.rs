//! Seed 002's Cassandra sink (`CASSANDRA_HOSTS`): the user aggregates upserted into
//! `CASSANDRA_KEYSPACE.CASSANDRA_TABLE` (seed 002's `realtime_analytics.transaction_aggregates`,
//! primary key ((user_id, category), window_start)), and gold into `CASSANDRA_GOLD_TABLE`
//! (primary key ((card_id), window_start)) when set. The rows are those of `user_aggregates/` and
//! `gold/`, with the same columns.

use super::{gold, user_aggregates, Transactions};
use crate::config::ProcessorConfig;
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::Result;
use crate::sinks::cassandra::{piece, CassandraTable};

/// The user aggregates' table.
pub fn user_aggregates_table(config: &ProcessorConfig) -> CassandraTable {
    CassandraTable {
        name: config.cassandra_table.clone(),
        schema: user_aggregates::schema(),
        partition_key: &["user_id", "category"],
        clustering: &["window_start"],
    }
}

/// Gold's table.
pub fn gold_table(name: &str) -> CassandraTable {
    CassandraTable {
        name: name.to_string(),
        schema: gold::schema(),
        partition_key: &["card_id"],
        clustering: &["window_start"],
    }
}

/// The user aggregates, to Cassandra.
pub struct UserAggregatesRows(pub CassandraTable);

impl Output<Transactions> for UserAggregatesRows {
    fn target(&self) -> Target {
        Target::Cassandra(self.0.clone())
    }

    fn stage(&self, input: &StageInput<'_, '_, Transactions>) -> Result<Staged> {
        let rows = &input.derived()?.user_windows;
        if rows.is_empty() {
            return Ok(Staged::nothing());
        }
        Ok(Staged::new(
            rows.len() as u64,
            piece(&self.0, user_aggregates::build(rows)?),
        ))
    }
}

/// Gold, to Cassandra.
pub struct GoldRows(pub CassandraTable);

impl Output<Transactions> for GoldRows {
    fn target(&self) -> Target {
        Target::Cassandra(self.0.clone())
    }

    fn stage(&self, input: &StageInput<'_, '_, Transactions>) -> Result<Staged> {
        let rows = &input.derived()?.gold.rows;
        if rows.is_empty() {
            return Ok(Staged::nothing());
        }
        Ok(Staged::new(
            rows.len() as u64,
            piece(&self.0, gold::build(rows)?),
        ))
    }
}
