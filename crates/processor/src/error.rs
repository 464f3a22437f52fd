//! The processor's error type: each variant is something an operator can act on.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid setting: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Kafka {
        context: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot reach Kafka at {bootstrap} within {waited_s} s: {last_error}")]
    BrokerUnreachable {
        bootstrap: String,
        waited_s: u64,
        last_error: String,
    },
    /// Credentials, certificates or ACLs that no retry will fix (exits 2, as a bad setting).
    #[error("{0}")]
    Access(String),
    /// Another processor holds the checkpoint (exits 2: nothing was touched).
    #[error("{0}")]
    Locked(String),
    /// Scale-out: this processor's partitions moved to another (its group generation is gone);
    /// the batch in hand is not committed, and the processor takes up what it owns now.
    #[error("{0}")]
    Fenced(String),
    #[error("data loss: {0} (set FAIL_ON_DATA_LOSS=false to log it and continue)")]
    DataLoss(String),
    #[error("checkpoint {path}: {detail}")]
    Checkpoint { path: PathBuf, detail: String },
    #[error("cannot write parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("cannot build a record batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("{context}: {source}")]
    Delta {
        context: String,
        source: Box<deltalake_core::DeltaTableError>,
    },
    #[error("{context}: {source}")]
    Storage {
        context: String,
        source: Box<object_store::Error>,
    },
    /// Cassandra refused a write no retry fixes.
    #[error("{0}")]
    Cassandra(String),
    /// The schema registry could not answer and the process was asked to stop meanwhile (the
    /// batch stays planned).
    #[error("{0}")]
    Registry(String),
    /// A bug, not a setting: a worker thread panicked (exits 1, where a setting exits 2).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Adds what was being done to an I/O error.
pub trait IoContext<T> {
    fn io_context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

/// Adds what was being done to a Kafka error.
pub trait KafkaContext<T> {
    fn kafka_context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> KafkaContext<T> for rdkafka::error::KafkaResult<T> {
    fn kafka_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Kafka {
            context: context(),
            source,
        })
    }
}

/// Adds what was being done to a Delta Lake error.
pub trait DeltaContext<T> {
    fn delta_context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> DeltaContext<T> for Result<T, deltalake_core::DeltaTableError> {
    fn delta_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Delta {
            context: context(),
            source: Box::new(source),
        })
    }
}

/// Adds what was being done to an object storage error.
pub trait StorageContext<T> {
    fn storage_context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> StorageContext<T> for Result<T, object_store::Error> {
    fn storage_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Storage {
            context: context(),
            source: Box::new(source),
        })
    }
}
