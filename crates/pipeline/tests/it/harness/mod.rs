//! Processes, the broker, and readers for the tests, by concern: `kafka.rs` (the brokers,
//! consumers, the partitioner), `process.rs` (the binaries run as processes, the SIGKILL loop),
//! `layers.rs` (the output folders and the checks on them), `services.rs` (Cassandra, the schema
//! registry, the S3 server).

#![allow(dead_code)]

mod kafka;
mod layers;
mod process;
mod services;

pub use kafka::*;
pub use layers::*;
pub use process::*;
pub use services::*;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub const TOPIC: &str = "transactions";

pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_pipeline")
}

/// A fresh folder under the system temp dir, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "pipeline-it-{name}-{}-{}",
            std::process::id(),
            rand_u64()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    /// Removes the folder, unless PIPELINE_KEEP_SCRATCH is set (to look at a failed test's).
    fn drop(&mut self) {
        if std::env::var_os("PIPELINE_KEEP_SCRATCH").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}
