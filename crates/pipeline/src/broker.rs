//! The embedded Kafka-protocol broker: librdkafka's mock cluster, owned by a thread of its own
//! because `MockCluster` is neither `Send` nor `Sync`.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// A fault to inject into the embedded broker (librdkafka's mock API), for outage tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The broker closes its connections and refuses new ones.
    Down,
    Up,
    /// Round-trip time added to every request.
    RoundTrip(Duration),
    /// The next `count` requests of a kind fail with a retriable error.
    Errors {
        api: Api,
        count: usize,
    },
    /// Forget queued request errors and the added round-trip time.
    Clear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Produce,
    Fetch,
    OffsetCommit,
}

impl Fault {
    /// Parses a control line: `down`, `up`, `rtt <ms>`, `errors <produce|fetch|offset_commit> <n>`, `clear`.
    pub fn parse(line: &str) -> anyhow::Result<Fault> {
        let words: Vec<&str> = line.split_whitespace().collect();
        Ok(match words.as_slice() {
            ["down"] => Fault::Down,
            ["up"] => Fault::Up,
            ["clear"] => Fault::Clear,
            ["rtt", ms] => Fault::RoundTrip(Duration::from_millis(ms.parse().context("rtt takes milliseconds")?)),
            ["errors", api, n] => Fault::Errors {
                api: match *api {
                    "produce" => Api::Produce,
                    "fetch" => Api::Fetch,
                    "offset_commit" => Api::OffsetCommit,
                    other => bail!("unknown request kind {other:?} (produce, fetch, offset_commit)"),
                },
                count: n.parse().context("errors takes a count")?,
            },
            _ => bail!("unknown command {line:?}: down, up, rtt <ms>, errors <produce|fetch|offset_commit> <n>, clear"),
        })
    }
}

const BROKER_ID: i32 = 1;

fn apply(
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    fault: &Fault,
) -> anyhow::Result<()> {
    let key = |api: Api| match api {
        Api::Produce => RDKafkaApiKey::Produce,
        Api::Fetch => RDKafkaApiKey::Fetch,
        Api::OffsetCommit => RDKafkaApiKey::OffsetCommit,
    };
    match fault {
        Fault::Down => cluster.broker_down(BROKER_ID)?,
        Fault::Up => cluster.broker_up(BROKER_ID)?,
        Fault::RoundTrip(d) => cluster.broker_round_trip_time(BROKER_ID, *d)?,
        Fault::Errors { api, count } => {
            let error = match api {
                Api::OffsetCommit => RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
                _ => RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            };
            cluster.request_errors(key(*api), &vec![error; *count]);
        }
        Fault::Clear => {
            for api in [Api::Produce, Api::Fetch, Api::OffsetCommit] {
                cluster.clear_request_errors(key(api));
            }
            cluster.broker_round_trip_time(BROKER_ID, Duration::ZERO)?;
        }
    }
    Ok(())
}

enum Control {
    Fault(Fault, mpsc::Sender<anyhow::Result<()>>),
}

/// A running embedded broker; dropping it (or calling [`EmbeddedBroker::stop`]) destroys the cluster.
pub struct EmbeddedBroker {
    bootstrap: String,
    stop: Option<mpsc::Sender<Control>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a one-broker mock cluster with `topic` created with `partitions` partitions.
    pub fn start(topic: &str, partitions: i32) -> anyhow::Result<Self> {
        Self::start_with(&[(topic.to_owned(), partitions)])
    }

    /// Starts a one-broker mock cluster with `topics` (name, partitions) created: the mock has
    /// no CreateTopics, so every topic a run uses is made here.
    pub fn start_with(topics: &[(String, i32)]) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<Control>();
        let topics = topics.to_vec();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1)
                    .context("cannot start the mock cluster")
                    .and_then(|c| {
                        for (topic, partitions) in &topics {
                            c.create_topic(topic, *partitions, 1)
                                .with_context(|| format!("cannot create topic {topic}"))?;
                        }
                        Ok(c)
                    }) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Serve faults until the owner is gone.
                while let Ok(Control::Fault(fault, reply)) = stop_rx.recv() {
                    let _ = reply.send(apply(&cluster, &fault));
                }
                drop(cluster);
            })
            .context("cannot spawn the broker thread")?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| anyhow!("the broker thread ended before starting"))??;
        Ok(EmbeddedBroker {
            bootstrap,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Injects a fault; returns once the broker applied it.
    pub fn inject(&self, fault: Fault) -> anyhow::Result<()> {
        let (tx, rx) = mpsc::channel();
        self.stop
            .as_ref()
            .ok_or_else(|| anyhow!("the broker is stopped"))?
            .send(Control::Fault(fault, tx))
            .map_err(|_| anyhow!("the broker thread is gone"))?;
        rx.recv()
            .map_err(|_| anyhow!("the broker thread is gone"))?
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.shutdown();
    }
}
