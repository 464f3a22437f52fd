//! `pipeline`: the local stack without Docker.
//!
//! - `pipeline` — embedded broker + producer + processor in one process, output in ./data/output/parquet;
//! - `pipeline broker` — only the embedded broker and the topic; prints `bootstrap=HOST:PORT`;
//! - `pipeline producer …` / `pipeline processor …` — the same programs as the `producer` and
//!   `processor` binaries, so one executable carries the whole stack (tests and images use this).

use pipeline::{backpressure, broker};

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing::{error, info, warn};

use broker::EmbeddedBroker;

#[derive(Parser, Debug)]
#[command(
    name = "pipeline",
    version,
    about = "The transaction pipeline on an embedded Kafka-protocol broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    topic: TopicArgs,
    /// Where the processor writes its layers: a folder, a file:// URL, or s3://bucket/prefix
    /// (with OUTPUT_FORMAT=delta), as the processor's OUTPUT_PATH
    #[arg(long, env = "OUTPUT_PATH", default_value = "./data/output/parquet", value_parser = processor::config::parse_output_path)]
    output_path: processor::config::Location,
}

#[derive(clap::Args, Debug)]
struct TopicArgs {
    /// Topic to create on the embedded broker
    #[arg(
        long = "kafka-topic",
        visible_alias = "topic",
        env = "KAFKA_TOPIC",
        default_value = "transactions"
    )]
    topic: String,
    /// Partitions of the topic (the mock broker keeps about 5 MiB per partition; the local stack
    /// raises this for a high PRODUCER_MSGS_PER_SEC)
    #[arg(
        long = "kafka-topic-partitions",
        visible_alias = "partitions",
        env = "KAFKA_TOPIC_PARTITIONS",
        default_value_t = 3
    )]
    partitions: i32,
    /// More topics to create, NAME:PARTITIONS (repeatable, or comma separated; the local stack
    /// also creates the topics its processor writes to)
    #[arg(
        long = "extra-topics",
        visible_alias = "extra-topic",
        env = "EXTRA_TOPICS",
        value_delimiter = ',',
        value_parser = parse_topic
    )]
    extra_topics: Vec<(String, i32)>,
}

fn parse_topic(text: &str) -> Result<(String, i32), String> {
    let (name, partitions) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?}: use NAME:PARTITIONS"))?;
    match partitions.parse::<i32>() {
        Ok(n) if n > 0 && !name.is_empty() => Ok((name.to_string(), n)),
        _ => Err(format!(
            "{text:?}: use NAME:PARTITIONS, PARTITIONS a number above 0"
        )),
    }
}

impl TopicArgs {
    fn all(&self) -> Vec<(String, i32)> {
        let mut topics = vec![(self.topic.clone(), self.partitions)];
        topics.extend(self.extra_topics.iter().cloned());
        topics
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start only the embedded broker and the topic, print `bootstrap=HOST:PORT`, serve until
    /// stopped. Faults can be injected by lines on stdin: `down`, `up`, `rtt <ms>`,
    /// `errors <produce|fetch|offset_commit> <n>`, `clear`; each is answered `ok <line>` on stdout.
    Broker {
        #[command(flatten)]
        topic: TopicArgs,
    },
    /// Run the producer (same flags as the `producer` binary)
    Producer,
    /// Run the processor (same flags as the `processor` binary)
    Processor,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("producer") => return producer::main_with_args(args[1..].iter().cloned()),
        Some("processor") => return processor::main_with_args(args[1..].iter().cloned()),
        _ => {}
    }
    let Some(stop) = txn_core::settings::startup("pipeline", &args) else {
        return ExitCode::from(2);
    };
    // DATASET=events runs seed 001's pipeline (the local stack has no --dataset flag).
    txn_core::settings::apply_dataset_defaults(&[]);
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Some(Command::Broker { topic }) => serve_broker(&topic, &stop),
        _ => local_stack(&cli.topic, &cli.output_path, &stop),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            error!("[pipeline] {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve_broker(topic: &TopicArgs, stop: &AtomicBool) -> anyhow::Result<ExitCode> {
    let broker = EmbeddedBroker::start_with(&topic.all())?;
    // On stdout, on its own line, for scripts and tests to read.
    println!("bootstrap={}", broker.bootstrap_servers());
    info!(
        "[broker] serving topic {} ({} partitions) at {}; Ctrl-C to stop",
        topic.topic,
        topic.partitions,
        broker.bootstrap_servers()
    );
    // Fault injection from stdin, for outage tests and manual experiments.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    while !stop.load(Ordering::Relaxed) {
        match lines_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.trim().is_empty() => {}
            Ok(line) => match broker::Fault::parse(&line).and_then(|f| broker.inject(f)) {
                Ok(()) => {
                    info!("[broker] fault: {}", line.trim());
                    answer(&format!("ok {}", line.trim()));
                }
                Err(e) => {
                    warn!("[broker] {e:#}");
                    answer(&format!("error {e:#}"));
                }
            },
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            // stdin closed (started in the background): just serve.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(100))
            }
        }
    }
    info!("[broker] stopping");
    broker.stop();
    Ok(ExitCode::SUCCESS)
}

/// A line on stdout for whoever drives the broker; nobody listening is fine.
fn answer(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn local_stack(
    topic: &TopicArgs,
    output_path: &processor::config::Location,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<ExitCode> {
    use clap::Parser as _;
    let mut producer_config =
        producer::ProducerConfig::try_parse_from(["producer"]).context("producer settings")?;
    let mut processor_config =
        processor::ProcessorConfig::try_parse_from(["processor"]).context("processor settings")?;
    // The embedded broker keeps about 5 MiB a partition in memory: enough partitions for the
    // rate and the trigger, and a batch size that lets the processor take what arrives.
    let trigger = match processor_config.trigger {
        processor::Trigger::Interval(d) => d,
        processor::Trigger::AvailableNow => Duration::ZERO,
    };
    let partitions =
        backpressure::partitions_for(topic.partitions, producer_config.msgs_per_sec, trigger);
    let budget = backpressure::budget(partitions);
    let cap = &mut processor_config.max_offsets_per_trigger;
    if *cap != 0 && *cap < budget {
        *cap = budget;
    }
    info!(
        "[pipeline] topic {} gets {partitions} partitions for {} msg/s and a {trigger:?} trigger; batches up to {} offsets; the producer waits while the processor is more than {budget} messages behind",
        topic.topic,
        producer_config.msgs_per_sec,
        processor_config.max_offsets_per_trigger
    );
    // The topics the processor writes to (the alerts, the aggregates, ...): the mock creates
    // none on first use.
    let mut topics = topic.all();
    topics[0].1 = partitions;
    for output in processor::datasets::output_topics(&processor_config) {
        if !topics.iter().any(|(name, _)| *name == output) {
            topics.push((output, 3));
        }
    }
    let broker = EmbeddedBroker::start_with(&topics)?;
    let bootstrap = broker.bootstrap_servers().to_owned();
    println!("bootstrap={bootstrap}");
    info!(
        "[pipeline] embedded broker at {bootstrap}, topics {}",
        topics
            .iter()
            .map(|(name, n)| format!("{name} ({n} partitions)"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let had_properties = producer_config.kafka.plaintext_at(&bootstrap)
        | processor_config.kafka.plaintext_at(&bootstrap);
    if had_properties {
        warn!("[pipeline] the embedded broker is plaintext: KAFKA_CONFIG_FILE, --kafka-config and the KAFKA_SECURITY/SASL/SSL settings are ignored");
    }
    producer_config.kafka.topic.clone_from(&topic.topic);
    processor_config.kafka.topic.clone_from(&topic.topic);
    processor_config.output_path = output_path.clone();
    processor_config.checkpoint_dir = None;
    // The topic is new (the broker is ours): everything in it is to be processed.
    processor_config.starting_offsets = "earliest".into();

    // Ctrl-C stops the producer (it flushes); then the processor drains what the broker holds,
    // since the embedded broker and its data end with this process.
    let producer_stop = Arc::clone(stop);
    let hold = Arc::new(AtomicBool::new(false));
    let producer_hold = Arc::clone(&hold);
    let mut pressure = backpressure::Backpressure::new(&bootstrap, &topic.topic, budget)?;
    let producer = std::thread::Builder::new()
        .name("producer".into())
        .spawn(move || {
            producer::run_gated(&producer_config, &producer_stop, Some(&producer_hold))
        })?;
    let drain = Arc::new(AtomicBool::new(false));
    let processor_drain = Arc::clone(&drain);
    let processor = std::thread::Builder::new()
        .name("processor".into())
        .spawn(move || {
            processor::datasets::run(
                &processor_config,
                &AtomicBool::new(false),
                Some(&processor_drain),
            )
        })?;

    while !producer.is_finished() {
        if stop.load(Ordering::Relaxed) {
            // The producer stops and flushes: nothing holds it back any more.
            hold.store(false, Ordering::Relaxed);
        } else {
            pressure.tick(&hold);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let produced = producer
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))?;
    // The producer ends on its own only with PRODUCER_COUNT; keep processing until Ctrl-C.
    while !stop.load(Ordering::Relaxed) && !processor.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    drain.store(true, Ordering::Relaxed);
    let processed = processor
        .join()
        .map_err(|_| anyhow::anyhow!("the processor thread panicked"))?;
    broker.stop();
    let produced = produced?;
    info!(
        "[pipeline] producer: sent={} failed={} unknown={}",
        produced.sent, produced.failed, produced.unknown
    );
    let processed = processed?;
    info!("[pipeline] processor: {processed}");
    Ok(if produced.failed > 0 || produced.unknown > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
