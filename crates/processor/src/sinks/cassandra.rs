//! Cassandra tables (`CASSANDRA_HOSTS`): seed 002's windowed aggregates (and gold, with
//! `CASSANDRA_GOLD_TABLE`) upserted for real-time queries.
//!
//! Cassandra has no transaction to join, so the sink is exactly once *in effect*: every row of a
//! batch is written with the batch's planned time as its cell timestamp (`USING TIMESTAMP`, the
//! same in every attempt of the batch), by primary key. A re-run batch writes the same cells with
//! the same timestamp again, which changes nothing; a later batch's row for the same window has
//! a later timestamp and wins, so an old replay can never overwrite a newer value. The list of
//! merchants is a `frozen<list<text>>`: one cell (a non-frozen list would append its elements
//! again on a replay). The rows are written in the sink's pre-commit, before the batch's Kafka
//! transaction opens, and the batch goes on only once Cassandra acknowledged every row at
//! `CASSANDRA_CONSISTENCY`; until then it waits, retrying with backoff (a warning names the
//! hosts, `pipeline_cassandra_retries_total` counts), and nothing after it is committed.
//!
//! Rows whose partition key has a null part (a transaction without user_id or category) cannot
//! be stored in Cassandra: they stay in the Parquet/Delta layer only, counted in a warning.
//!
//! The driver (the `scylla` crate, which speaks CQL to Apache Cassandra) is asynchronous: it
//! runs on a tokio runtime driven by a thread of its own, which keeps its connection pools
//! refilled while the engine does other work.

use std::time::{Duration, Instant};

use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, ListArray, RecordBatch, StringArray};
use arrow_schema::{DataType, SchemaRef};
use futures::stream::{self, StreamExt};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, PrepareError, RequestAttemptError};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, CqlValue};
use tracing::{info, warn};

use super::{wrong_piece, Piece, PreCommit, Sink, SinkBatch, Start, Target};
use crate::config::ProcessorConfig;
use crate::error::{Error, Result};

/// Writes in flight at once (the driver routes each to a replica of its partition).
const CONCURRENCY: usize = 128;
/// The longest wait between two attempts of a batch's writes.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often a batch that keeps failing is warned about.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// How long one write may take before it counts as failed (and is tried again).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A Cassandra table an output is upserted into: its columns are the output's Arrow schema.
#[derive(Debug, Clone)]
pub struct CassandraTable {
    /// The table's name (in `CASSANDRA_KEYSPACE`).
    pub name: String,
    pub schema: SchemaRef,
    /// The partition key's columns, then the clustering columns.
    pub partition_key: &'static [&'static str],
    pub clustering: &'static [&'static str],
}

impl PartialEq for CassandraTable {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for CassandraTable {}

impl CassandraTable {
    /// `CREATE TABLE IF NOT EXISTS`, with each Arrow column's CQL type.
    fn create(&self, keyspace: &str) -> Result<String> {
        let mut columns = Vec::new();
        for field in self.schema.fields() {
            columns.push(format!("{} {}", field.name(), cql_type(field.data_type())?));
        }
        Ok(format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.{} ({}, PRIMARY KEY (({}){}))",
            self.name,
            columns.join(", "),
            self.partition_key.join(", "),
            self.clustering
                .iter()
                .map(|c| format!(", {c}"))
                .collect::<String>()
        ))
    }

    fn insert(&self, keyspace: &str) -> String {
        let names: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let marks = vec!["?"; names.len()].join(", ");
        format!(
            "INSERT INTO {keyspace}.{} ({}) VALUES ({marks}) USING TIMESTAMP ?",
            self.name,
            names.join(", ")
        )
    }

    /// The columns of the primary key, by index in the schema.
    fn key_columns(&self) -> Vec<usize> {
        self.partition_key
            .iter()
            .chain(self.clustering)
            .filter_map(|k| self.schema.index_of(k).ok())
            .collect()
    }
}

/// The CQL type of an Arrow column of the outputs.
fn cql_type(t: &DataType) -> Result<&'static str> {
    Ok(match t {
        DataType::Utf8 => "text",
        DataType::Int64 => "bigint",
        DataType::Float64 => "double",
        DataType::Timestamp(..) => "timestamp",
        DataType::List(item) if item.data_type() == &DataType::Utf8 => "frozen<list<text>>",
        other => {
            return Err(Error::Internal(format!(
                "no CQL type for the Arrow type {other}"
            )))
        }
    })
}

/// One batch's rows for one table.
pub struct TableRows {
    pub table: String,
    pub rows: RecordBatch,
}

/// The connection settings (the password is never logged).
#[derive(Clone)]
struct Settings {
    hosts: Vec<String>,
    keyspace: String,
    replication: String,
    consistency: scylla::statement::Consistency,
    user: Option<(String, String)>,
}

/// The upserts of the outputs into Cassandra tables.
pub struct CassandraSink {
    settings: Settings,
    tables: Vec<CassandraTable>,
    connection: Option<Connection>,
}

/// A session, the prepared upsert of each table, and the runtime the driver runs on.
struct Connection {
    session: Session,
    inserts: Vec<(String, PreparedStatement)>,
    handle: tokio::runtime::Handle,
    /// Dropped (ending the driver's thread) after the session.
    _driver: Driver,
}

/// The thread that drives the driver's runtime (its I/O and timers) until dropped.
struct Driver {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn driver() -> Result<(tokio::runtime::Handle, Driver)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Error::Internal(format!("cannot start the Cassandra driver's runtime: {e}"))
        })?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("cassandra".into())
        .spawn(move || {
            let _ = runtime.block_on(stopped);
        })
        .map_err(|e| Error::Internal(format!("cannot start the Cassandra driver's thread: {e}")))?;
    Ok((
        handle,
        Driver {
            stop: Some(stop),
            thread: Some(thread),
        },
    ))
}

impl CassandraSink {
    /// The sink of `tables`, with the settings of `config` (connected at [`Sink::start`]).
    pub fn new(config: &ProcessorConfig, tables: Vec<CassandraTable>) -> Result<Self> {
        let hosts = config
            .cassandra_hosts()
            .ok_or_else(|| Error::Internal("the Cassandra sink without CASSANDRA_HOSTS".into()))?;
        let user = match (&config.cassandra_username, &config.cassandra_password) {
            (Some(u), Some(p)) => Some((u.clone(), p.0.clone())),
            _ => None,
        };
        Ok(CassandraSink {
            settings: Settings {
                hosts,
                keyspace: config.cassandra_keyspace.clone(),
                replication: config.cassandra_replication.clone(),
                consistency: config.cassandra_consistency,
                user,
            },
            tables,
            connection: None,
        })
    }

    fn hosts(&self) -> String {
        self.settings.hosts.join(", ")
    }

    /// Connects, creates the keyspace and tables when missing, prepares the upserts. Waits for
    /// a cluster that is down (warning every WARN_EVERY); an error no wait fixes (a refused
    /// login, a bad replication map) stops the start.
    fn connect(&self) -> Result<Connection> {
        let (handle, driver) = driver()?;
        let s = &self.settings;
        let profile = ExecutionProfile::builder()
            .consistency(s.consistency)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&s.hosts)
            .connection_timeout(Duration::from_secs(5))
            .default_execution_profile_handle(profile.into_handle());
        if let Some((user, password)) = &s.user {
            builder = builder.user(user, password);
        }
        let mut retry = Retry::new(self.hosts());
        let session = loop {
            match handle.block_on(builder.build()) {
                Ok(session) => break session,
                Err(e) => {
                    let text = e.to_string();
                    // Authentication and configuration errors do not go away by waiting.
                    let lasting = text.contains("Authentication")
                        || text.contains("authentication")
                        || matches!(
                            e,
                            scylla::errors::NewSessionError::EmptyKnownNodesList
                                | scylla::errors::NewSessionError::FailedToResolveAnyHostname(_)
                        );
                    if lasting {
                        return Err(Error::Access(format!(
                            "cannot connect to Cassandra at {}: {text} (check CASSANDRA_HOSTS, CASSANDRA_USERNAME and CASSANDRA_PASSWORD)",
                            self.hosts()
                        )));
                    }
                    retry.failed("connect", &text)?;
                }
            }
        };
        let keyspace = &s.keyspace;
        let mut ddl = vec![format!(
            "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {}",
            s.replication
        )];
        for table in &self.tables {
            ddl.push(table.create(keyspace)?);
        }
        for statement in &ddl {
            let mut retry = Retry::new(self.hosts());
            loop {
                match handle.block_on(session.query_unpaged(statement.as_str(), &[])) {
                    Ok(_) => break,
                    Err(e) if retryable(&e) => retry.failed("create the schema", &e.to_string())?,
                    Err(e) => {
                        return Err(Error::Config(format!(
                            "Cassandra refused `{statement}`: {e} (check CASSANDRA_KEYSPACE, CASSANDRA_REPLICATION and the user's permissions)"
                        )))
                    }
                }
            }
        }
        let mut inserts = Vec::new();
        for table in &self.tables {
            let text = table.insert(keyspace);
            let mut retry = Retry::new(self.hosts());
            let mut prepared = loop {
                match handle.block_on(session.prepare(text.as_str())) {
                    Ok(p) => break p,
                    Err(e) if prepare_retryable(&e) => retry.failed("prepare", &e.to_string())?,
                    Err(e) => {
                        return Err(Error::Config(format!(
                            "Cassandra cannot prepare `{text}`: {e} (a table {keyspace}.{} made elsewhere with other columns?)",
                            table.name
                        )))
                    }
                }
            };
            prepared.set_is_idempotent(true);
            prepared.set_consistency(s.consistency);
            inserts.push((table.name.clone(), prepared));
        }
        info!(
            "[processor] Cassandra at {}: upserting into {}",
            self.hosts(),
            self.tables
                .iter()
                .map(|t| format!("{keyspace}.{}", t.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(Connection {
            session,
            inserts,
            handle,
            _driver: driver,
        })
    }

    /// Upserts one table's rows with cell timestamp `timestamp` (µs), every row acknowledged at
    /// the consistency level before it returns; failed writes are tried again until they pass.
    fn upsert(
        &self,
        conn: &Connection,
        rows: &TableRows,
        timestamp: i64,
        batch: u64,
    ) -> Result<u64> {
        let Some(table) = self.tables.iter().find(|t| t.name == rows.table) else {
            return Err(Error::Internal(format!(
                "no Cassandra table {}",
                rows.table
            )));
        };
        let Some((_, insert)) = conn.inserts.iter().find(|(n, _)| *n == rows.table) else {
            return Err(Error::Internal(format!(
                "no upsert prepared for {}",
                rows.table
            )));
        };
        let (mut pending, keyless) = values(table, &rows.rows, timestamp)?;
        if keyless > 0 {
            warn!(
                "[processor] batch {batch}: {keyless} rows of {} have a null key column ({}) and are not in Cassandra (they are in the files)",
                table.name,
                table.partition_key.join(", ")
            );
        }
        let written = pending.len() as u64;
        let mut retry = Retry::new(self.hosts());
        while !pending.is_empty() {
            let session = &conn.session;
            let results: Vec<(usize, std::result::Result<(), ExecutionError>)> =
                conn.handle.block_on(
                    stream::iter(pending.iter().enumerate())
                        .map(|(i, row)| async move {
                            (i, session.execute_unpaged(insert, row).await.map(|_| ()))
                        })
                        .buffer_unordered(CONCURRENCY)
                        .collect(),
                );
            let mut failed = Vec::new();
            let mut first_error = None;
            for (i, result) in results {
                if let Err(e) = result {
                    if !retryable(&e) {
                        return Err(Error::Cassandra(format!(
                            "Cassandra refused a row of {}.{}: {e}",
                            self.settings.keyspace, table.name
                        )));
                    }
                    first_error.get_or_insert_with(|| e.to_string());
                    failed.push(i);
                }
            }
            if failed.is_empty() {
                break;
            }
            failed.sort_unstable();
            let mut kept = Vec::with_capacity(failed.len());
            for (i, row) in pending.into_iter().enumerate() {
                if failed.binary_search(&i).is_ok() {
                    kept.push(row);
                }
            }
            pending = kept;
            crate::engine::metrics::record_cassandra_retry();
            retry.failed(
                &format!(
                    "upsert {} of batch {batch}'s rows into {}",
                    pending.len(),
                    table.name
                ),
                first_error.as_deref().unwrap_or_default(),
            )?;
        }
        if retry.attempts > 0 {
            info!(
                "[processor] Cassandra at {} acknowledged batch {batch}'s rows of {} after {} retries",
                self.hosts(),
                table.name,
                retry.attempts
            );
        }
        crate::engine::metrics::record_cassandra_rows(&table.name, written);
        Ok(written)
    }
}

/// Backoff between attempts (0.5 s doubling up to MAX_BACKOFF), with a warning naming the hosts
/// at the first failure and every WARN_EVERY after.
struct Retry {
    hosts: String,
    attempts: u32,
    wait: Duration,
    warned: Option<Instant>,
}

impl Retry {
    fn new(hosts: String) -> Self {
        Retry {
            hosts,
            attempts: 0,
            wait: Duration::from_millis(500),
            warned: None,
        }
    }

    /// Counts a failed attempt, warns, and waits before the next; an error when the process
    /// was asked to stop meanwhile (the batch stays planned: the next start re-runs it).
    fn failed(&mut self, what: &str, error: &str) -> Result<()> {
        if txn_core::settings::stop_requested() {
            return Err(Error::Cassandra(format!(
                "stop requested while Cassandra at {} could not {what} ({error}): the batch stays planned and the next start writes it again (the same cells, the same timestamps)",
                self.hosts
            )));
        }
        self.attempts += 1;
        if self.warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            warn!(
                "[processor] Cassandra at {} cannot {what} ({error}); waiting and trying again (attempt {})",
                self.hosts, self.attempts
            );
            self.warned = Some(Instant::now());
        }
        let until = Instant::now() + self.wait;
        while Instant::now() < until && !txn_core::settings::stop_requested() {
            std::thread::sleep(Duration::from_millis(100).min(self.wait));
        }
        self.wait = (self.wait * 2).min(MAX_BACKOFF);
        Ok(())
    }
}

/// Whether waiting may fix a failed write: nodes down or refusing, timeouts, overload.
fn retryable(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::ConnectionPoolError(_)
        | ExecutionError::RequestTimeout(_)
        | ExecutionError::EmptyPlan
        | ExecutionError::SchemaAgreementError(_)
        | ExecutionError::MetadataError(_) => true,
        ExecutionError::PrepareError(p) => prepare_retryable(p),
        ExecutionError::LastAttemptError(a) => attempt_retryable(a),
        _ => false,
    }
}

fn prepare_retryable(e: &PrepareError) -> bool {
    match e {
        PrepareError::ConnectionPoolError(_) => true,
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_retryable(first_attempt),
        _ => false,
    }
}

fn attempt_retryable(a: &RequestAttemptError) -> bool {
    match a {
        RequestAttemptError::BrokenConnectionError(_)
        | RequestAttemptError::UnableToAllocStreamId => true,
        RequestAttemptError::DbError(db, _) => matches!(
            db,
            DbError::Unavailable { .. }
                | DbError::WriteTimeout { .. }
                | DbError::ReadTimeout { .. }
                | DbError::WriteFailure { .. }
                | DbError::Overloaded
                | DbError::IsBootstrapping
                | DbError::ServerError
                | DbError::RateLimitReached { .. }
        ),
        _ => false,
    }
}

/// Each row's bound values (the columns, then the cell timestamp), and how many rows were left
/// out for a null key column.
fn values(
    table: &CassandraTable,
    rows: &RecordBatch,
    timestamp: i64,
) -> Result<(Vec<Vec<Option<CqlValue>>>, usize)> {
    let columns: Vec<&ArrayRef> = rows.columns().iter().collect();
    let keys = table.key_columns();
    let mut out = Vec::with_capacity(rows.num_rows());
    let mut keyless = 0;
    for row in 0..rows.num_rows() {
        if keys.iter().any(|&k| columns[k].is_null(row)) {
            keyless += 1;
            continue;
        }
        let mut values = Vec::with_capacity(columns.len() + 1);
        for column in &columns {
            values.push(cql_value(column, row)?);
        }
        values.push(Some(CqlValue::BigInt(timestamp)));
        out.push(values);
    }
    Ok((out, keyless))
}

fn cql_value(column: &ArrayRef, row: usize) -> Result<Option<CqlValue>> {
    if column.is_null(row) {
        return Ok(None);
    }
    let any = column.as_any();
    let value = match column.data_type() {
        DataType::Utf8 => CqlValue::Text(downcast::<StringArray>(any)?.value(row).to_string()),
        DataType::Int64 => CqlValue::BigInt(downcast::<Int64Array>(any)?.value(row)),
        DataType::Float64 => CqlValue::Double(downcast::<Float64Array>(any)?.value(row)),
        DataType::Timestamp(..) => {
            let micros =
                downcast::<arrow_array::PrimitiveArray<TimestampMicrosecondType>>(any)?.value(row);
            CqlValue::Timestamp(CqlTimestamp(micros.div_euclid(1000)))
        }
        DataType::List(_) => {
            let list = downcast::<ListArray>(any)?.value(row);
            let items = downcast::<StringArray>(list.as_any())?;
            CqlValue::List(
                (0..items.len())
                    .filter(|&i| !items.is_null(i))
                    .map(|i| CqlValue::Text(items.value(i).to_string()))
                    .collect(),
            )
        }
        other => {
            return Err(Error::Internal(format!(
                "no CQL value for the Arrow type {other}"
            )))
        }
    };
    Ok(Some(value))
}

fn downcast<T: 'static>(any: &dyn std::any::Any) -> Result<&T> {
    any.downcast_ref::<T>()
        .ok_or_else(|| Error::Internal("an output column of an unexpected Arrow type".into()))
}

impl Sink for CassandraSink {
    fn name(&self) -> &'static str {
        "cassandra"
    }

    fn takes(&self, target: &Target) -> bool {
        matches!(target, Target::Cassandra(table) if self.tables.contains(table))
    }

    fn start(&mut self, _start: &Start<'_>) -> Result<()> {
        self.connection = Some(self.connect()?);
        Ok(())
    }

    /// Upserts every row with the batch's planned time as cell timestamp and returns once all
    /// are acknowledged (waiting through outages). In the pre-commit, so before the batch's
    /// Kafka transaction opens (the topic sink's pre-commit comes after this one): an outage
    /// longer than `transaction.timeout.ms` cannot have the broker abort a transaction left
    /// open meanwhile. The rows are visible before the batch commits; a re-run writes the same
    /// cells with the same timestamp, so that is exactly once in effect too.
    fn pre_commit(&self, batch: &SinkBatch<'_>, pieces: Vec<Piece>) -> Result<PreCommit> {
        if pieces.is_empty() {
            return Ok(Box::new(()));
        }
        let conn = self
            .connection
            .as_ref()
            .ok_or_else(|| Error::Internal("the Cassandra sink was not started".into()))?;
        for piece in pieces {
            let rows = piece
                .downcast::<TableRows>()
                .map_err(|_| wrong_piece("cassandra"))?;
            self.upsert(conn, &rows, batch.planned_at, batch.batch)?;
        }
        Ok(Box::new(()))
    }

    /// Nothing left to do: Cassandra acknowledged the rows in the pre-commit.
    fn commit(&self, _batch: &SinkBatch<'_>, _pre: PreCommit) -> Result<()> {
        Ok(())
    }
}

/// One table's rows of a batch: the piece a Cassandra output stages.
pub fn piece(table: &CassandraTable, rows: RecordBatch) -> TableRows {
    TableRows {
        table: table.name.clone(),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::transactions::{cassandra, user_aggregates};
    use crate::operators::user_windows::UserWindowRow;
    use crate::operators::windows::Aggregate;
    use clap::Parser;

    fn config(args: &[&str]) -> ProcessorConfig {
        ProcessorConfig::try_parse_from(std::iter::once("processor").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn the_table_has_seed_002s_columns_and_key_and_each_row_the_batchs_timestamp() {
        let table = cassandra::user_aggregates_table(&config(&[]));
        assert_eq!(
            table.create("realtime_analytics").unwrap(),
            "CREATE TABLE IF NOT EXISTS realtime_analytics.transaction_aggregates (window_start timestamp, window_end timestamp, user_id text, category text, transaction_count bigint, total_amount double, avg_amount double, max_amount double, min_amount double, merchants frozen<list<text>>, PRIMARY KEY ((user_id, category), window_start))"
        );
        assert_eq!(
            table.insert("ks"),
            "INSERT INTO ks.transaction_aggregates (window_start, window_end, user_id, category, transaction_count, total_amount, avg_amount, max_amount, min_amount, merchants) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
        );
        let row = |user: Option<&str>, merchants: Vec<Option<std::sync::Arc<str>>>| {
            UserWindowRow::new(
                1_762_500_600_000_000,
                1_762_500_900_000_000,
                user,
                Some("food"),
                Aggregate::default(),
                merchants,
            )
        };
        let rows = user_aggregates::build(&[
            row(Some("u1"), vec![Some("A".into()), None, Some("B".into())]),
            row(None, vec![]),
        ])
        .unwrap();
        let (values, keyless) = values(&table, &rows, 1_796_000_000_123_456).unwrap();
        assert_eq!(keyless, 1, "the row without a user is left out");
        assert_eq!(values.len(), 1);
        let v = &values[0];
        assert_eq!(
            v[0],
            Some(CqlValue::Timestamp(CqlTimestamp(1_762_500_600_000)))
        );
        assert_eq!(v[2], Some(CqlValue::Text("u1".into())));
        assert_eq!(v[4], Some(CqlValue::BigInt(0)));
        assert_eq!(v[5], None, "no amount: a null sum");
        assert_eq!(
            v[9],
            Some(CqlValue::List(vec![
                CqlValue::Text("A".into()),
                CqlValue::Text("B".into())
            ])),
            "a list holds no null"
        );
        assert_eq!(v[10], Some(CqlValue::BigInt(1_796_000_000_123_456)));
    }

    #[test]
    fn cassandra_settings_are_checked_at_start() {
        let err = |args: &[&str]| config(args).validate().unwrap_err().to_string();
        assert!(err(&["--cassandra-hosts", "h:9042"]).contains("nothing goes there"));
        assert!(err(&[
            "--cassandra-hosts",
            "h",
            "--fraud-detection",
            "true",
            "--cassandra-table",
            "bad-name"
        ])
        .contains("CASSANDRA_TABLE=\"bad-name\""));
        assert!(err(&[
            "--cassandra-hosts",
            "h",
            "--cassandra-gold-table",
            "g",
            "--cassandra-username",
            "u"
        ])
        .contains("go together"));
        let ok = config(&[
            "--cassandra-hosts",
            "a, b:9043,",
            "--fraud-detection",
            "true",
            "--cassandra-consistency",
            "local-one",
            "--cassandra-password",
            "sekret",
            "--cassandra-username",
            "u",
        ]);
        ok.validate().unwrap();
        assert_eq!(
            ok.cassandra_hosts().unwrap(),
            vec!["a:9042".to_string(), "b:9043".to_string()]
        );
        assert_eq!(
            ok.cassandra_consistency,
            scylla::statement::Consistency::LocalOne
        );
        assert!(
            !format!("{ok:?}").contains("sekret"),
            "the password is never printed"
        );
        assert!(
            ProcessorConfig::try_parse_from(["processor", "--cassandra-consistency", "most"])
                .unwrap_err()
                .to_string()
                .contains("not a consistency level")
        );
        assert!(config(&["--cassandra-hosts", " "])
            .cassandra_hosts()
            .is_none());
    }
}
