//! The streaming processor of SPEC §2–§4, as an engine and the datasets it runs:
//!
//! ```text
//! plan ──► read ──► decode ──► operators ──► outputs (staged) ──► commit
//! ```
//! - [`engine`]: the run loop, the Kafka source, the checkpoint, and the traits a dataset
//!   implements ([`engine::dataset::Dataset`], [`engine::operator::Operator`],
//!   [`engine::output::Output`]);
//! - [`datasets`]: one folder per dataset (its decoder, operators and outputs);
//! - [`operators`]: stateful operators a dataset can use (tumbling windows);
//! - [`outputs`]: the outputs every dataset shares (bronze, quarantine, console) and the Arrow
//!   column helpers outputs build their rows with;
//! - [`sinks`]: below the engine, where staged outputs go and how they become visible (compact
//!   Parquet and CSV files, Kafka topics in transactions), each a two-phase committer;
//! - [`config`], [`error`], [`os`]: settings, the error type, allocator and CPU/memory probes.

pub mod config;
pub mod datasets;
pub mod engine;
pub mod error;
pub mod operators;
pub mod os;
pub mod outputs;
pub mod sinks;
pub mod storage;

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use tracing::{error, info};

pub use config::{OutputFormat, ProcessorConfig, Trigger};
pub use engine::batch::{BatchOutcome, Committer, StagedBatch, Stages};
pub use engine::{checkpoint, metrics, progress, source};
pub use error::{Error, Result};
pub use os::{peak_rss_kib, process_cpu, thread_cpu, tune_allocator};

/// What a run of the processor did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub batches: u64,
    pub rows: u64,
    pub late: u64,
    /// Payload bytes (keys and values) read.
    pub bytes: u64,
    pub read: Duration,
    pub decode: Duration,
    pub write: Duration,
    pub commit: Duration,
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batches={} rows={} late={}",
            self.batches, self.rows, self.late
        )?;
        let busy = self.read + self.decode + self.write + self.commit;
        if self.rows > 0 {
            write!(
                f,
                " | {:.0} rows/s, {:.1} MB/s over {:.2} s of batches (waiting for reads {:.2} s, decode {:.2} s, write {:.2} s, waiting for commits {:.2} s)",
                self.rows as f64 / busy.as_secs_f64().max(1e-9),
                self.bytes as f64 / 1e6 / busy.as_secs_f64().max(1e-9),
                busy.as_secs_f64(),
                self.read.as_secs_f64(),
                self.decode.as_secs_f64(),
                self.write.as_secs_f64(),
                self.commit.as_secs_f64()
            )?;
        }
        if let Some(kib) = peak_rss_kib() {
            write!(f, " peak_rss={} MiB", kib / 1024)?;
        }
        Ok(())
    }
}

/// A scoped thread with a name (seen in `top -H`, perf and panic messages). Like
/// `Scope::spawn`, panics only when the system cannot create a thread.
pub(crate) fn spawn<'s, 'e, T: Send + 's>(
    s: &'s std::thread::Scope<'s, 'e>,
    name: &str,
    f: impl FnOnce() -> T + Send + 's,
) -> std::thread::ScopedJoinHandle<'s, T> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn_scoped(s, f)
        .expect("failed to spawn thread")
}

/// A scoped thread's result; its panic goes on in the joining thread.
pub(crate) fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Entry point of the `processor` binary (and of `pipeline processor`): bad settings exit 2 with
/// one line, a failure exits 1 with one line, a stop (SIGINT/SIGTERM) finishes the batch in
/// flight and exits 0.
pub fn main_with_args(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args: Vec<String> = args.into_iter().collect();
    let Some(stop) = txn_core::settings::startup("processor", &args) else {
        return ExitCode::from(2);
    };
    txn_core::settings::apply_dataset_defaults(&args);
    let (config, sources) = txn_core::settings::parse::<ProcessorConfig>(&args);
    // A bad setting gives its one line, and the settings line comes only with settings in use.
    if let Err(e) = config.validate() {
        error!("[processor] {e}");
        return ExitCode::from(2);
    }
    info!("[processor] settings: {sources}");
    if let Some(addr) = &config.metrics_addr {
        let served = txn_core::telemetry::serve_metrics(
            addr,
            "processor",
            &metrics::NAMES,
            config.dataset.name(),
            &config.kafka.topic,
        );
        match served {
            Ok(served) => info!("[processor] metrics at http://{served}/metrics"),
            Err(e) => {
                error!("[processor] invalid setting: {e}");
                return ExitCode::from(2);
            }
        }
    }
    match datasets::run(&config, &stop, None) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e @ (Error::Config(_) | Error::Access(_) | Error::Locked(_))) => {
            error!("[processor] {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            error!("[processor] {e}");
            ExitCode::FAILURE
        }
    }
}
