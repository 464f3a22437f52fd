//! The brokers (the embedded one, Apache Kafka by `scripts/kafka.sh`), consumers of their
//! topics, and Kafka's partitioner.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::*;

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
    // A producer's commit returns before the broker has written its commit markers: until
    // then the partition's last stable offset (the read_committed high watermark) stays behind
    // the log's end. Wait (a few seconds at most: a transaction left open by a killed process
    // ends only at its timeout) so that what was just committed is read.
    let uncommitted: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "it-reader")
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    let settled = Instant::now() + Duration::from_secs(5);
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for &p in &partitions {
        let watermarks = |c: &BaseConsumer| {
            c.fetch_watermarks(topic_name, p, Duration::from_secs(10))
                .unwrap()
        };
        let (mut low, mut high) = watermarks(&consumer);
        while high < watermarks(&uncommitted).1 && Instant::now() < settled {
            std::thread::sleep(Duration::from_millis(20));
            (low, high) = watermarks(&consumer);
        }
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
