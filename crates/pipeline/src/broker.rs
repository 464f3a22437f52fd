//! The embedded Kafka-protocol broker: librdkafka's mock cluster, owned by a thread of its own
//! because `MockCluster` is neither `Send` nor `Sync`.

use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Context as _};
use rdkafka::mocking::MockCluster;

/// A running embedded broker; dropping it (or calling [`EmbeddedBroker::stop`]) destroys the cluster.
pub struct EmbeddedBroker {
    bootstrap: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a one-broker mock cluster with `topic` created with `partitions` partitions.
    pub fn start(topic: &str, partitions: i32) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let topic = topic.to_owned();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1)
                    .context("cannot start the mock cluster")
                    .and_then(|c| {
                        c.create_topic(&topic, partitions, 1)
                            .with_context(|| format!("cannot create topic {topic}"))?;
                        Ok(c)
                    }) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Serve until told to stop (or until the owner is gone).
                let _ = stop_rx.recv();
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
