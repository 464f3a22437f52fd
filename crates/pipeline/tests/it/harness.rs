//! Processes, the broker, and readers for the tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

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

pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

/// The broker of a test, chosen by `PIPELINE_TEST_BROKER`:
/// - `mock` (default): `pipeline broker`, the embedded mock cluster;
/// - `kafka`: Apache Kafka 4.x, one combined KRaft node (`scripts/kafka.sh start kraft`);
/// - `kafka-zk`: Apache Kafka 3.9 in ZooKeeper mode, with ZooKeeper (the seed's topology);
/// - `kafka-cluster`: three KRaft nodes, replication factor 3, `min.insync.replicas=2`.
///
/// The Kafka ones run in a scratch folder and are killed on drop.
pub struct Broker {
    /// The mock's process (the Kafka nodes are `scripts/kafka.sh`'s).
    child: Option<Child>,
    pub bootstrap: String,
    /// The folder of a Kafka cluster (configuration, data, logs, pids).
    kafka: Option<Scratch>,
}

/// Which broker `Broker::start` runs.
pub fn broker_kind() -> String {
    std::env::var("PIPELINE_TEST_BROKER").unwrap_or_else(|_| "mock".into())
}

/// Whether the broker of this run is Apache Kafka (kept on disk, so it can be restarted).
pub fn is_kafka() -> bool {
    broker_kind().starts_with("kafka")
}

/// `scripts/kafka.sh`: starts, kills and restarts Apache Kafka nodes, and runs its CLI tools.
pub fn kafka_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka.sh")
}

/// Runs `scripts/kafka.sh` with `args`; panics with its output when it fails.
pub fn kafka_sh(args: &[&str]) -> String {
    try_kafka_sh(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `scripts/kafka.sh` with `args`: its stdout, or what it printed when it failed.
pub fn try_kafka_sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(kafka_script())
        .args(args)
        .output()
        .expect("run scripts/kafka.sh");
    if !out.status.success() {
        return Err(format!(
            "scripts/kafka.sh {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Broker {
    /// A broker with topic `transactions` of `partitions` partitions.
    pub fn start(partitions: i32) -> Self {
        Self::start_as(&broker_kind(), partitions)
    }

    /// [`Broker::start`], with `extra` topics (name, partitions) too: created at the mock's
    /// start (it has no CreateTopics), by the admin API on Kafka.
    pub fn start_with_topics(partitions: i32, extra: &[(&str, i32)]) -> Self {
        let kind = broker_kind();
        if kind == "mock" {
            return Self::start_mock(partitions, extra);
        }
        let broker = Self::start_as(&kind, partitions);
        for (name, n) in extra {
            broker.create_topic(name, *n, &[]);
        }
        broker
    }

    /// A broker of `kind` (a `PIPELINE_TEST_BROKER` value) with topic `transactions`.
    pub fn start_as(kind: &str, partitions: i32) -> Self {
        let broker = Self::start_empty(kind, partitions);
        if broker.kafka.is_some() {
            broker.create_topic(TOPIC, partitions, &[]);
        }
        broker
    }

    /// A broker of `kind` with no topic (the mock always has `transactions`: it has no
    /// CreateTopics).
    pub fn start_empty(kind: &str, partitions: i32) -> Self {
        let mode = match kind {
            "mock" => return Self::start_mock(partitions, &[]),
            "kafka" => "kraft",
            "kafka-zk" => "zk",
            "kafka-cluster" => "cluster",
            other => {
                panic!("PIPELINE_TEST_BROKER={other}: use mock, kafka, kafka-zk or kafka-cluster")
            }
        };
        let dir = Scratch::new(kind);
        let dir_arg = dir.path().join("kafka");
        // Retention and the log cleaner look every second, not every 5 minutes and 15 s, so
        // the retention and compaction tests see them act.
        let started = Command::new(kafka_script())
            .args(["start", mode, dir_arg.to_str().unwrap()])
            .env(
                "KAFKA_EXTRA_CONFIG",
                "log.retention.check.interval.ms=1000 log.cleaner.backoff.ms=1000",
            )
            .output()
            .expect("run scripts/kafka.sh");
        let printed = String::from_utf8_lossy(&started.stdout).into_owned();
        assert!(
            started.status.success(),
            "scripts/kafka.sh start {mode} failed: {printed}{}",
            String::from_utf8_lossy(&started.stderr)
        );
        let bootstrap = printed
            .lines()
            .find_map(|l| l.strip_prefix("bootstrap="))
            .expect("bootstrap= line")
            .to_string();
        Broker {
            child: None,
            bootstrap,
            kafka: Some(dir),
        }
    }

    /// A single KRaft node with a SASL_SSL listener, SCRAM and PLAIN users and ACLs enforced
    /// (`scripts/kafka.sh start secure`); `bootstrap` is its PLAINTEXT listener, where the test
    /// is super user. No topic.
    pub fn start_secure() -> Secured {
        let dir = Scratch::new("secure");
        let dir_arg = dir.path().join("kafka");
        let printed = kafka_sh(&["start", "secure", dir_arg.to_str().unwrap()]);
        let line = |key: &str| {
            printed
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("{key} line in {printed}"))
                .to_string()
        };
        let users = std::fs::read_to_string(dir_arg.join("users.env")).unwrap();
        let passwords = users
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        Secured {
            secure_bootstrap: line("secure_bootstrap="),
            ca: dir_arg.join("tls/ca.pem"),
            other_ca: dir_arg.join("tls/other-ca.pem"),
            passwords,
            broker: Broker {
                child: None,
                bootstrap: line("bootstrap="),
                kafka: Some(dir),
            },
        }
    }

    fn start_mock(partitions: i32, extra: &[(&str, i32)]) -> Self {
        let mut child = Command::new(exe())
            .args(["broker", "--partitions", &partitions.to_string()])
            .args(
                extra
                    .iter()
                    .flat_map(|(name, n)| ["--extra-topic".to_string(), format!("{name}:{n}")]),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pipeline broker");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let bootstrap = line
            .trim()
            .strip_prefix("bootstrap=")
            .expect("bootstrap= line")
            .to_string();
        Broker {
            child: Some(child),
            bootstrap,
            kafka: None,
        }
    }

    fn kafka_dir(&self) -> String {
        let dir = self.kafka.as_ref().expect(
            "an Apache Kafka broker (PIPELINE_TEST_BROKER=kafka, kafka-zk or kafka-cluster)",
        );
        dir.path().join("kafka").to_str().unwrap().to_string()
    }

    /// Creates a topic (replication factor: the broker's default) with topic-level `config`.
    pub fn create_topic(&self, name: &str, partitions: i32, config: &[(&str, &str)]) {
        pipeline::admin::create_topic(&self.bootstrap, name, partitions, config)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Sets topic-level configuration of an existing topic.
    pub fn alter_topic(&self, name: &str, config: &[(&str, &str)]) {
        pipeline::admin::alter_topic(&self.bootstrap, name, config)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Deletes a topic.
    pub fn delete_topic(&self, name: &str) {
        pipeline::admin::delete_topic(&self.bootstrap, name).unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Kills (SIGKILL) node `node` (`1`, `2`, `3`, or `zk`) of a Kafka cluster.
    pub fn kill_node(&self, node: &str) {
        kafka_sh(&["kill", &self.kafka_dir(), node]);
    }

    /// Starts a killed node again on its data and port, and waits until it serves.
    pub fn restart_node(&self, node: &str) {
        kafka_sh(&["restart", &self.kafka_dir(), node]);
    }

    /// The node id leading a partition, as the cluster reports it.
    pub fn leader(&self, topic: &str, partition: i32) -> String {
        kafka_sh(&["leader", &self.kafka_dir(), topic, &partition.to_string()])
            .trim()
            .to_string()
    }

    /// The folder of a Kafka cluster (for `scripts/kafka.sh` commands).
    pub fn dir(&self) -> String {
        self.kafka_dir()
    }

    /// Kills the broker (every node, and ZooKeeper in ZooKeeper mode), keeps it down for
    /// `down`, and starts it again on the same data and ports. Apache Kafka only: the mock keeps
    /// nothing once its process is gone.
    pub fn restart_after(&mut self, down: Duration) {
        let dir = self.kafka_dir();
        kafka_sh(&["kill", &dir, "all"]);
        std::thread::sleep(down);
        let cluster = std::fs::read_to_string(Path::new(&dir).join("cluster.env")).unwrap();
        if cluster.contains("MODE=zk") {
            kafka_sh(&["restart", &dir, "zk"]);
            // ZooKeeper keeps the dead broker's registration until its session expires (18 s,
            // Kafka's zookeeper.session.timeout.ms): until then the broker refuses to start
            // (NodeExists). Try again until it is gone.
            let until = Instant::now() + Duration::from_secs(60);
            loop {
                match try_kafka_sh(&["restart", &dir, "1"]) {
                    Ok(_) => return,
                    Err(e) if e.contains("NodeExists") && Instant::now() < until => {
                        std::thread::sleep(Duration::from_secs(3));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        let nodes: Vec<&str> = if cluster.contains("MODE=cluster") {
            vec!["1", "2", "3"]
        } else {
            vec!["1"]
        };
        // KRaft nodes of a cluster wait for each other's quorum: start them together.
        let handles: Vec<_> = nodes
            .into_iter()
            .map(|n| {
                let dir = dir.clone();
                std::thread::spawn(move || kafka_sh(&["restart", &dir, n]))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}

/// A secured Kafka node ([`Broker::start_secure`]).
pub struct Secured {
    /// The PLAINTEXT listener (super user) is `broker.bootstrap`.
    pub broker: Broker,
    pub secure_bootstrap: String,
    /// The CA that signed the broker's certificate, and one that did not.
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    /// Password of each user (admin, app, nobody).
    pub passwords: BTreeMap<String, String>,
}

impl Secured {
    /// Runs Kafka's ACL tool (`kafka-acls`) on the PLAINTEXT listener with `args`.
    pub fn acls(&self, args: &[&str]) {
        let mut all = vec!["kafka-acls", "--bootstrap-server", &self.broker.bootstrap];
        all.extend_from_slice(args);
        kafka_sh(&all);
    }

    pub fn password(&self, user: &str) -> &str {
        &self.passwords[user]
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.kafka {
            let _ = Command::new(kafka_script())
                .args(["kill", dir.path().join("kafka").to_str().unwrap(), "all"])
                .output();
        }
    }
}

/// A command for a subcommand of `pipeline`, run in `cwd` so that no `.env` is picked up.
pub fn command(sub: &str, cwd: &Path) -> Command {
    let mut c = Command::new(exe());
    c.arg(sub).current_dir(cwd).env_remove("RUST_LOG");
    for var in [
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_TOPIC",
        "MSGS_PER_SEC",
        "PRODUCER_MSGS_PER_SEC",
        "KAFKA_TOPIC_PARTITIONS",
        "EXTRA_TOPICS",
        "OUTPUT_PATH",
        "OUTPUT_FORMAT",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ALLOW_HTTP",
        "STARTING_OFFSETS",
        "FAIL_ON_DATA_LOSS",
        "SHOW_PREVIEWS",
        "TRIGGER_INTERVAL",
        "MAX_FILES_PER_SINK",
        "MAX_OFFSETS_PER_TRIGGER",
        "SPARK_CHECKPOINT_DIR",
        "CHECKPOINT_DIR",
        "METRICS_ADDR",
        "LOG_FORMAT",
        "KAFKA_CONFIG_FILE",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CA_LOCATION",
        "PRODUCER_COMPRESSION",
        "ENV_FILE",
    ] {
        c.env_remove(var);
    }
    c
}

pub fn run_producer(bootstrap: &str, cwd: &Path, args: &[&str]) -> Output {
    let out = command("producer", cwd)
        .args(["--bootstrap-servers", bootstrap, "--log-every", "100000"])
        .args(args)
        .output()
        .expect("run producer");
    assert!(
        out.status.success(),
        "producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A producer running in the background, its stderr piped (for [`summary_field`]).
pub fn spawn_producer(bootstrap: &str, cwd: &Path, args: &[&str]) -> Child {
    command("producer", cwd)
        .args(["--bootstrap-servers", bootstrap, "--log-every", "100000"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn producer")
}

/// The value of `name=` in the producer's summary line.
pub fn summary_field(stderr: &[u8], name: &str) -> u64 {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .find(|l| l.contains("[producer] done:"))
        .expect("summary line");
    let key = format!("{name}=");
    let at = line.find(&key).expect("field in summary") + key.len();
    line[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Runs the processor with available-now from the earliest offsets until it exits.
pub fn process_all(bootstrap: &str, out: &Path, extra: &[&str]) -> Output {
    process_all_with(bootstrap, out, extra, &[])
}

/// [`process_all`] with env variables.
pub fn process_all_with(
    bootstrap: &str,
    out: &Path,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Output {
    let mut cmd = command("processor", out);
    cmd.args([
        "--bootstrap-servers",
        bootstrap,
        "--trigger",
        "available-now",
    ]);
    if !extra.contains(&"--starting-offsets") {
        cmd.args(["--starting-offsets", "earliest"]);
    }
    if !extra.contains(&"--output-path") {
        cmd.arg("--output-path").arg(out);
    }
    let output = cmd
        .args(extra)
        .envs(envs.iter().copied())
        .output()
        .expect("run processor");
    assert!(
        output.status.success(),
        "processor failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The processor with available-now (from the checkpoint, else `extra`'s or the latest offsets),
/// whatever its exit: for the runs expected to fail.
pub fn process_unchecked(bootstrap: &str, out: &Path, extra: &[&str]) -> Output {
    command("processor", out)
        .args([
            "--bootstrap-servers",
            bootstrap,
            "--trigger",
            "available-now",
        ])
        .arg("--output-path")
        .arg(out)
        .args(extra)
        .output()
        .expect("run processor")
}

/// The processor started `runs` times on `out`, each run SIGKILLed: every other run right after
/// its sinks committed a batch and before its checkpoint did (TEST_PAUSE_BEFORE_COMMIT),
/// the others at a random moment of their first seconds. Returns how many were killed at that
/// pause, and the stderr lines of every run.
pub fn kill_repeatedly(
    bootstrap: &str,
    out: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    runs: usize,
) -> (usize, Vec<String>) {
    let (mut at_pause, mut lines) = (0, Vec::new());
    for run in 0..runs {
        let pause = run % 2 == 1;
        let mut run_envs = envs.to_vec();
        if pause {
            run_envs.push(("TEST_PAUSE_BEFORE_COMMIT", "400 ms"));
        }
        let p = Processor::spawn(bootstrap, out, args, &run_envs);
        if pause {
            if let Some(line) = p.wait_for("test pause before the commit", Duration::from_secs(30))
            {
                at_pause += 1;
                lines.push(line);
            }
        } else {
            p.wait_for("Connecting to", Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(50 + rand_u64() % 1200));
        }
        p.signal(libc::SIGKILL);
        std::thread::sleep(Duration::from_millis(200));
        lines.extend(p.lines.try_iter());
        p.wait();
    }
    (at_pause, lines)
}

/// A processor child whose stderr lines arrive on a channel.
pub struct Processor {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Processor {
    /// A processor writing to `out`, unless `args` name another `--output-path`.
    pub fn spawn(bootstrap: &str, out: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = command("processor", out);
        cmd.args([
            "--bootstrap-servers",
            bootstrap,
            "--starting-offsets",
            "earliest",
        ]);
        if !args.contains(&"--output-path") {
            cmd.arg("--output-path").arg(out);
        }
        let mut child = cmd
            .args(args)
            .envs(envs.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn processor");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Processor { child, lines: rx }
    }

    /// Waits up to `timeout` for a stderr line containing `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    pub fn signal(&self, signal: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    pub fn wait(mut self) -> ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Processor {
    /// A test that failed half-way leaves no processor behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A consumed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Every message of the topic, in (partition, offset) order.
pub fn consume_all(bootstrap: &str) -> Vec<Consumed> {
    consume_topic(bootstrap, TOPIC)
}

/// Every committed message of `topic` (read_committed), in (partition, offset) order.
pub fn consume_topic(bootstrap: &str, topic_name: &str) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "it-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic_name), Duration::from_secs(10))
        .unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic_name, p, Duration::from_secs(10))
            .unwrap();
        if high > low {
            tpl.add_partition_offset(topic_name, p, Offset::Offset(low))
                .unwrap();
            ends.insert(p, high);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(Consumed {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                });
                if ends
                    .get(&m.partition())
                    .is_some_and(|&end| m.offset() + 1 >= end)
                {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                ends.remove(&p);
            }
            _ => {}
        }
    }
    assert!(ends.is_empty(), "could not read the whole topic");
    out.sort_by_key(|m| (m.partition, m.offset));
    out
}

/// Kafka's murmur2 partitioner (the Java client's `Utils.murmur2`, `toPositive(h) % n`).
pub fn murmur2_partition(key: &[u8], partitions: u32) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ key.len() as u32;
    let chunks = key.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    ((h & 0x7fff_ffff) % partitions) as i32
}

/// The final files of a layer (what `<layer>/*.<ext>` globs see), sorted by name.
pub fn layer_files(out: &Path, layer: &str) -> Vec<PathBuf> {
    let dir = out.join(layer);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .starts_with(['_', '.'])
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Waits until bronze holds `n` rows (or the time is up), and returns how many it holds.
pub fn wait_for_bronze(out: &Path, n: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let have = rows(&read_layer(out, "bronze"));
        if have >= n || Instant::now() >= deadline {
            return have;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Every row of a Parquet layer, as record batches.
pub fn read_layer(out: &Path, layer: &str) -> Vec<RecordBatch> {
    layer_files(out, layer)
        .iter()
        .flat_map(|path| {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
                .unwrap_or_else(|e| panic!("{} is not readable parquet: {e}", path.display()))
                .build()
                .unwrap();
            reader.map(|b| b.unwrap()).collect::<Vec<_>>()
        })
        .collect()
}

pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

pub fn strings(batches: &[RecordBatch], column: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(column).unwrap().as_string::<i32>().clone();
            (0..a.len()).map(move |i| a.is_valid(i).then(|| a.value(i).to_string()))
        })
        .collect()
}

pub fn i64s(batches: &[RecordBatch], column: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name(column).unwrap();
            let v: Vec<i64> = match c.data_type() {
                arrow_schema::DataType::Int32 => c
                    .as_primitive::<Int32Type>()
                    .values()
                    .iter()
                    .map(|&x| i64::from(x))
                    .collect(),
                arrow_schema::DataType::Int64 => c.as_primitive::<Int64Type>().values().to_vec(),
                _ => c
                    .as_primitive::<TimestampMicrosecondType>()
                    .values()
                    .to_vec(),
            };
            v
        })
        .collect()
}

pub fn f64s(batches: &[RecordBatch], column: &str) -> Vec<Option<f64>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column_by_name(column)
                .unwrap()
                .as_primitive::<Float64Type>()
                .clone();
            (0..a.len()).map(move |i| a.is_valid(i).then(|| a.value(i)))
        })
        .collect()
}

/// Rows of the CSV layer (header excluded).
pub fn csv_rows(out: &Path) -> usize {
    layer_files(out, "raw_csv")
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(
                text.starts_with("txn_id,event_ts,"),
                "{} has the header",
                p.display()
            );
            text.lines().count() - 1
        })
        .sum()
}

/// `pipeline broker` driven through its stdin: faults are injected by command lines.
pub struct ControlledBroker {
    child: Child,
    pub bootstrap: String,
    stdin: std::process::ChildStdin,
    answers: mpsc::Receiver<String>,
}

impl ControlledBroker {
    pub fn start(partitions: i32) -> Self {
        let mut child = Command::new(exe())
            .args(["broker", "--partitions", &partitions.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pipeline broker");
        let stdin = child.stdin.take().unwrap();
        let (tx, answers) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = answers
            .recv_timeout(Duration::from_secs(10))
            .expect("bootstrap line");
        let bootstrap = first
            .strip_prefix("bootstrap=")
            .expect("bootstrap= line")
            .to_string();
        ControlledBroker {
            child,
            bootstrap,
            stdin,
            answers,
        }
    }

    /// Sends a fault command and waits for the broker to confirm it.
    pub fn inject(&mut self, command: &str) {
        use std::io::Write as _;
        writeln!(self.stdin, "{command}").unwrap();
        let answer = self
            .answers
            .recv_timeout(Duration::from_secs(10))
            .expect("an answer");
        assert_eq!(answer, format!("ok {command}"));
    }
}

impl Drop for ControlledBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SPEC §4 on what a run left behind: the topic holds `expected` messages; each of its offsets is
/// in bronze exactly once; each valid record is in silver exactly once (by txn_id) and each
/// invalid one in quarantine exactly once (by offset). Returns the topic's messages.
pub fn assert_each_offset_once(bootstrap: &str, out: &Path, expected: usize) -> Vec<Consumed> {
    use std::collections::BTreeSet;
    let topic = consume_all(bootstrap);
    assert_eq!(
        topic.len(),
        expected,
        "messages in the topic (none lost or duplicated by the producer)"
    );
    let all: BTreeSet<(i64, i64)> = topic
        .iter()
        .map(|m| (i64::from(m.partition), m.offset))
        .collect();

    let bronze = read_layer(out, "bronze");
    let in_bronze: BTreeSet<(i64, i64)> = i64s(&bronze, "partition")
        .into_iter()
        .zip(i64s(&bronze, "offset"))
        .collect();
    assert_eq!(rows(&bronze), in_bronze.len(), "no offset twice in bronze");
    assert_eq!(in_bronze, all, "every offset in bronze");

    let (valid, invalid): (Vec<&Consumed>, Vec<&Consumed>) = topic
        .iter()
        .partition(|m| txn_core::decode(m.value.as_deref()).is_ok());
    let valid_ids: BTreeSet<String> = valid
        .iter()
        .map(|m| {
            txn_core::decode(m.value.as_deref())
                .unwrap()
                .txn_id
                .to_string()
        })
        .collect();
    let silver_ids: Vec<String> = strings(&read_layer(out, "silver"), "txn_id")
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        silver_ids.len(),
        valid_ids.len(),
        "no valid record twice in silver"
    );
    assert_eq!(
        silver_ids.into_iter().collect::<BTreeSet<_>>(),
        valid_ids,
        "every valid record in silver"
    );

    let quarantine = read_layer(out, "quarantine");
    let rejected: BTreeSet<(i64, i64)> = i64s(&quarantine, "partition")
        .into_iter()
        .zip(i64s(&quarantine, "offset"))
        .collect();
    assert_eq!(rows(&quarantine), rejected.len(), "no reject twice");
    assert_eq!(
        rejected,
        invalid
            .iter()
            .map(|m| (i64::from(m.partition), m.offset))
            .collect(),
        "every invalid message in quarantine"
    );
    topic
}

/// A JSON file of the checkpoint (`_chk/commits/N`, `offsets/N`, `metadata`), without the
/// checksum envelope its files carry (`PCK1`, CRC-32, then the JSON).
pub fn checkpoint_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let body = match bytes.strip_prefix(b"PCK1") {
        Some(rest) => &rest[4..],
        None => &bytes[..],
    };
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (card_id, window_start, window_end, txn_count, and the bits of sum, avg, max)
pub type GoldRow = (String, i64, i64, i64, Option<u64>, Option<u64>, Option<u64>);

pub fn gold_rows(out: &Path) -> Vec<GoldRow> {
    let gold = read_layer(out, "gold");
    let mut rows: Vec<_> = strings(&gold, "card_id")
        .into_iter()
        .zip(i64s(&gold, "window_start"))
        .zip(i64s(&gold, "window_end"))
        .zip(i64s(&gold, "txn_count"))
        .zip(f64s(&gold, "sum_amount"))
        .zip(f64s(&gold, "avg_amount"))
        .zip(f64s(&gold, "max_amount"))
        .map(|((((((c, s), e), n), sum), avg), max)| {
            (
                c.unwrap_or_default(),
                s,
                e,
                n,
                sum.map(f64::to_bits),
                avg.map(f64::to_bits),
                max.map(f64::to_bits),
            )
        })
        .collect();
    rows.sort();
    rows
}
