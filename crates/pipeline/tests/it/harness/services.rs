//! The other real services the tests start as local processes: Cassandra, a schema registry,
//! an S3 server (each by its `scripts/*.sh`, stopped when dropped).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

/// A Cassandra node (Apache Cassandra 5.0 from Maven Central's jars) started by
/// `scripts/cassandra.sh`; killed when dropped.
pub struct Cassandra {
    dir: Scratch,
    /// Its CQL contact point, host:port.
    pub contact: String,
}

fn cassandra_sh(command: &str, dir: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cassandra.sh");
    let output = Command::new(script)
        .arg(command)
        .arg(dir)
        .output()
        .expect("run scripts/cassandra.sh");
    assert!(
        output.status.success(),
        "scripts/cassandra.sh {command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Cassandra {
    pub fn start() -> Self {
        let dir = Scratch::new("cassandra");
        let printed = cassandra_sh("start", dir.path());
        let contact = printed
            .lines()
            .find_map(|l| l.strip_prefix("contact="))
            .expect("contact= from scripts/cassandra.sh")
            .to_string();
        Cassandra { dir, contact }
    }

    /// Stops the node (SIGTERM: a clean shutdown).
    pub fn stop(&self) {
        cassandra_sh("stop", self.dir.path());
    }

    /// Starts the stopped node again, on its data and port.
    pub fn start_again(&self) {
        cassandra_sh("start", self.dir.path());
    }
}

impl Drop for Cassandra {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cassandra.sh");
        let _ = Command::new(script)
            .arg("kill")
            .arg(self.dir.path())
            .status();
    }
}

/// A Confluent-compatible schema registry started by `scripts/schema-registry.sh` (schemas in
/// memory); killed when dropped.
pub struct SchemaRegistry {
    dir: Scratch,
    pub url: String,
}

fn registry_sh(command: &str, dir: &Path) -> String {
    registry_sh_with(command, dir, &[])
}

fn registry_sh_with(command: &str, dir: &Path, envs: &[(&str, &str)]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/schema-registry.sh");
    let output = Command::new(script)
        .arg(command)
        .arg(dir)
        .envs(envs.iter().copied())
        .output()
        .expect("run scripts/schema-registry.sh");
    assert!(
        output.status.success(),
        "scripts/schema-registry.sh {command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl SchemaRegistry {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Over https only (SCHEMA_REGISTRY_TLS=1): its CA's PEM file is `DIR/tls/ca.pem`.
    pub fn start_tls() -> Self {
        Self::start_with(&[("SCHEMA_REGISTRY_TLS", "1")])
    }

    /// Behind nginx requiring `user:password` (SCHEMA_REGISTRY_BASIC_AUTH).
    pub fn start_with_login(login: &str) -> Self {
        Self::start_with(&[("SCHEMA_REGISTRY_BASIC_AUTH", login)])
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    fn start_with(envs: &[(&str, &str)]) -> Self {
        let dir = Scratch::new("registry");
        let printed = registry_sh_with("start", dir.path(), envs);
        let url = printed
            .lines()
            .find_map(|l| l.strip_prefix("url="))
            .expect("url= from scripts/schema-registry.sh")
            .to_string();
        SchemaRegistry { dir, url }
    }

    /// SIGSTOP: the port stays open and nothing answers.
    pub fn pause(&self) {
        registry_sh("pause", self.dir.path());
    }

    pub fn resume(&self) {
        registry_sh("resume", self.dir.path());
    }
}

impl Drop for SchemaRegistry {
    fn drop(&mut self) {
        let _ = registry_sh("stop", self.dir.path());
    }
}

/// An S3-compatible server (moto's, from PyPI) started by `scripts/s3.sh`, with one bucket;
/// stopped when dropped.
pub struct S3Server {
    dir: Scratch,
    pub endpoint: String,
    pub bucket: String,
}

impl S3Server {
    pub fn start(bucket: &str) -> Self {
        let dir = Scratch::new("s3");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3.sh");
        let output = Command::new(script)
            .arg("start")
            .arg(dir.path())
            .arg(bucket)
            .output()
            .expect("run scripts/s3.sh");
        assert!(
            output.status.success(),
            "scripts/s3.sh start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let endpoint = String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("endpoint=").map(str::to_string))
            .expect("endpoint= from scripts/s3.sh");
        S3Server {
            dir,
            endpoint,
            bucket: bucket.into(),
        }
    }

    /// The variables a client of this server needs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3.sh");
        let _ = Command::new(script)
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}
