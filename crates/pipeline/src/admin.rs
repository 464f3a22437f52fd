//! Topic administration on a Kafka broker (CreateTopics, AlterConfigs, DeleteTopics), for the
//! benchmarks and the tests against Apache Kafka. The admin client's calls are futures; the
//! binaries have no async runtime, so each call is driven to completion on the calling thread.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use txn_core::kafka::ClientSettings;

/// How long the broker may take over one admin operation.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How long a topic's creation is tried again while the cluster answers that it is not ready.
const CREATE_TIMEOUT: Duration = Duration::from_secs(120);

/// Errors of a cluster still starting or electing a controller, worth another try.
fn transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::NotController
            | RDKafkaErrorCode::BrokerNotAvailable
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
    )
}

/// Runs a future to completion on this thread, parked between wake-ups (librdkafka's background
/// thread completes the admin futures).
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

fn client(settings: &ClientSettings) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    settings
        .apply(&mut ClientConfig::new())
        .create()
        .context("cannot create a Kafka admin client")
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(TIMEOUT))
}

/// Creates a topic with the broker's default replication factor and topic-level `config`, then
/// waits until every partition has a leader.
pub fn create_topic(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    config: &[(&str, &str)],
) -> anyhow::Result<()> {
    create_topic_as(&ClientSettings::plain(bootstrap), name, partitions, config)
}

/// [`create_topic`] with the user's client settings (a secured cluster).
pub fn create_topic_as(
    settings: &ClientSettings,
    name: &str,
    partitions: i32,
    config: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin = client(settings)?;
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
    for (k, v) in config {
        topic = topic.set(k, v);
    }
    // A cluster that has just started (three JVMs on two cores) may let a CreateTopics time out
    // while its controller settles: it is tried again until CREATE_TIMEOUT, and on a retry the
    // topic may already exist (the timed-out request went through).
    let deadline = Instant::now() + CREATE_TIMEOUT;
    let mut retry = false;
    loop {
        let outcome = match block_on(admin.create_topics([&topic], &options())) {
            Ok(results) => results.into_iter().next().map_or(Ok(()), |r| r.map(|_| ())),
            Err(KafkaError::AdminOp(code)) => Err((name.to_string(), code)),
            Err(e) => return Err(e).context(format!("cannot create topic {name}")),
        };
        match outcome {
            Ok(()) => break,
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) if retry => break,
            Err((_, code)) if transient(code) && Instant::now() < deadline => {
                tracing::debug!(topic = name, error = %code, "CreateTopics failed; trying again");
                retry = true;
                std::thread::sleep(Duration::from_millis(500));
            }
            Err((t, e)) => bail!("cannot create topic {t}: {e}"),
        }
    }
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Ok(md) = admin
            .inner()
            .fetch_metadata(Some(name), Duration::from_secs(5))
        {
            let led = md.topics().iter().any(|t| {
                t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions()
                        .iter()
                        .all(|p| p.leader() >= 0 && p.error().is_none())
            });
            if led {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!("topic {name} has no leader for every partition after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sets topic-level configuration (AlterConfigs: the keys given are set, the others return to
/// their defaults).
pub fn alter_topic(bootstrap: &str, name: &str, config: &[(&str, &str)]) -> anyhow::Result<()> {
    let admin = client(&ClientSettings::plain(bootstrap))?;
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
    for (k, v) in config {
        alter = alter.set(k, v);
    }
    for r in block_on(admin.alter_configs([&alter], &options()))? {
        r.map_err(|(t, e)| anyhow!("cannot configure {t:?}: {e}"))?;
    }
    Ok(())
}

/// Deletes a topic (the broker finishes the deletion asynchronously).
pub fn delete_topic(bootstrap: &str, name: &str) -> anyhow::Result<()> {
    let admin = client(&ClientSettings::plain(bootstrap))?;
    for r in block_on(admin.delete_topics(&[name], &options()))? {
        r.map_err(|(t, e)| anyhow!("cannot delete topic {t}: {e}"))?;
    }
    Ok(())
}
