//! `bench`: throughput figures against the embedded broker, or any Kafka broker given with
//! `--bootstrap-servers` (Apache Kafka from `scripts/kafka.sh`). A command that prints numbers,
//! not a test. Run it with `cargo run --release --bin bench -- <producer|processor|read|stages|...>`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::{Parser, Subcommand};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use pipeline::broker::EmbeddedBroker;
use processor::checkpoint::BatchPlan;
use processor::source::{OffsetRange, RawBatch};
use producer::events::EventGenerator;
use producer::financial::FinancialGenerator;
use producer::generator::{Generator, MessageGenerator};
use producer::realistic::RealisticGenerator;
use txn_core::Dataset;

#[derive(Parser)]
#[command(
    name = "bench",
    version,
    about = "Throughput figures against the embedded broker or a Kafka broker (not a test)"
)]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Producer at unlimited rate, then the rate hold at --rate msg/s for --seconds
    Producer {
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[command(flatten)]
        broker: BrokerChoice,
        /// The messages: `transactions`, `events` or `financial`
        #[arg(long, default_value = "transactions", ignore_case = true)]
        dataset: Dataset,
    },
    /// Fill the broker, then the processor (its own process) with available-now
    Processor {
        #[command(flatten)]
        filled: Filled,
    },
    /// Fill the broker, then only read it in batches (the processor's reader, nothing else)
    Read {
        #[command(flatten)]
        filled: Filled,
    },
    /// The stages after the read (decode → layers → write → commit), fed from memory
    Stages {
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        #[arg(long, default_value_t = 200_000)]
        batch: u64,
        /// With seed 002's fraud rules and user windows
        #[arg(long)]
        fraud_detection: bool,
        /// The producer's profile of the generated transactions: `seed` or `realistic` (2,000
        /// users buying near home, 2 % fraud patterns)
        #[arg(long, default_value = "seed", value_parser = ["seed", "realistic"])]
        profile: String,
        /// The messages and the stages' dataset: `transactions`, `events` (seed 001's) or
        /// `financial` (seeds 003/004's)
        #[arg(long, default_value = "transactions", ignore_case = true)]
        dataset: Dataset,
    },
    /// What the stages cannot go below: decoding alone, and Snappy of the payloads alone, on
    /// every core, from memory
    Floor {
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        #[arg(long, default_value_t = 200_000)]
        batch: u64,
    },
    /// Fraud alerts' latency: realistic transactions at a steady rate with planted frauds (a
    /// purchase above 10,000, alerted `LARGE_AMOUNT`), the processor with fraud detection (its
    /// own process), and a read_committed consumer of the alerts; prints the delay from each
    /// planted purchase's append time to its alert being read (p50, p99, max)
    Latency {
        /// Messages a second
        #[arg(long, default_value_t = 5000.0)]
        rate: f64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// One planted fraud every this many messages
        #[arg(long, default_value_t = 500)]
        fraud_every: u64,
        /// The processor's TRIGGER_INTERVAL
        #[arg(long, default_value = "0")]
        trigger: String,
        /// Planted purchases sent in the first seconds (the processor's first transaction and
        /// its first files) are reported apart
        #[arg(long, default_value_t = 5.0)]
        warmup: f64,
        #[command(flatten)]
        broker: BrokerChoice,
    },
    /// Decoding alone, one thread: the fast path and serde_json, per message
    Decode {
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
    },
    /// The producer's generators alone, one thread, no Kafka: per message, each dataset and
    /// profile (best of 3)
    Generate {
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
    },
}

/// The embedded broker (default), or a Kafka broker where the bench creates its topic.
#[derive(clap::Args)]
struct BrokerChoice {
    /// A Kafka broker to use instead of the embedded one (e.g. `scripts/kafka.sh start kraft
    /// DIR`); the bench creates its topic there, which must not exist yet
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// With --bootstrap-servers: a Kafka client property for every client of the bench
    /// (repeatable), e.g. --kafka-config security.protocol=SASL_SSL
    #[arg(long = "kafka-config", value_name = "KEY=VALUE", value_parser = txn_core::kafka::parse_key_value)]
    kafka_config: Vec<(String, String)>,
    /// With --bootstrap-servers: a Java-style client.properties for every client of the bench
    #[arg(long, value_name = "PATH")]
    kafka_config_file: Option<std::path::PathBuf>,
    /// Partitions of the topic (default: 12 for `producer`; 100 for `processor` and `read`,
    /// which keeps the embedded broker under its 5 MiB per partition)
    #[arg(long)]
    partitions: Option<i32>,
}

impl BrokerChoice {
    /// The clients' connection settings at `bootstrap`: the user's properties for a broker of
    /// theirs, none for the embedded one.
    fn kafka(&self, bootstrap: &str) -> txn_core::kafka::KafkaArgs {
        let mut args = producer::ProducerConfig::try_parse_from(["producer"])
            .map(|c| c.kafka)
            .unwrap_or_else(|e| e.exit());
        args.plaintext_at(bootstrap);
        if self.bootstrap_servers.is_some() {
            args.kafka_config.clone_from(&self.kafka_config);
            args.kafka_config_file.clone_from(&self.kafka_config_file);
        }
        args
    }

    /// The same as flags of the `processor` binary.
    fn kafka_flags(&self) -> Vec<String> {
        if self.bootstrap_servers.is_none() {
            return Vec::new();
        }
        let mut flags: Vec<String> = self
            .kafka_config
            .iter()
            .flat_map(|(k, v)| ["--kafka-config".to_string(), format!("{k}={v}")])
            .collect();
        if let Some(file) = &self.kafka_config_file {
            flags.extend([
                "--kafka-config-file".to_string(),
                file.display().to_string(),
            ]);
        }
        flags
    }

    /// The embedded broker, started with `topic`, or the given broker with `topic` created, of
    /// `partitions` partitions; `extra` topics (name, partitions) too.
    fn start(
        &self,
        topic: &str,
        partitions: i32,
        extra: &[(String, i32)],
    ) -> anyhow::Result<(Option<EmbeddedBroker>, String)> {
        let mut topics = vec![(topic.to_string(), partitions)];
        topics.extend(extra.iter().cloned());
        match &self.bootstrap_servers {
            Some(bootstrap) => {
                let settings = self.kafka(bootstrap).resolve().map_err(|e| anyhow!(e))?;
                for (name, n) in &topics {
                    pipeline::admin::create_topic_as(&settings, name, *n, &[])?;
                }
                Ok((None, bootstrap.clone()))
            }
            None => {
                let broker = EmbeddedBroker::start_with(&topics)?;
                let bootstrap = broker.bootstrap_servers().to_string();
                Ok((Some(broker), bootstrap))
            }
        }
    }
}

/// A filled broker and the batches to take from it (`processor` and `read`).
#[derive(clap::Args)]
struct Filled {
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[command(flatten)]
    broker: BrokerChoice,
    /// 100,000 keeps peak RSS under 512 MiB (the next batch is read while one is written)
    #[arg(long, default_value_t = 100_000)]
    max_offsets_per_trigger: u64,
    /// The messages and the processor's dataset: `transactions`, `events` (seed 001's) or
    /// `financial` (seeds 003/004's)
    #[arg(long, default_value = "transactions", ignore_case = true)]
    dataset: Dataset,
    #[command(flatten)]
    fill: Fill,
}

impl Filled {
    /// Starts or names the broker and fills it; returns the embedded broker (kept alive by the
    /// caller), the bootstrap address and the payload bytes sent.
    fn start(&self) -> anyhow::Result<(Option<EmbeddedBroker>, String, u64)> {
        let (messages, partitions) = (self.messages, self.broker.partitions.unwrap_or(100));
        let per_partition = messages as f64 / f64::from(partitions) * 360.0 / 1048576.0;
        if self.broker.bootstrap_servers.is_none() && per_partition > 4.8 {
            bail!(
                "{per_partition:.1} MiB per partition: the mock keeps 5 MiB; use more --partitions"
            );
        }
        // The topics the dataset's processor writes to, beside its input.
        let mut config = processor::ProcessorConfig::try_parse_from(["processor"])?;
        config.dataset = self.dataset;
        let outputs: Vec<(String, i32)> = processor::datasets::output_topics(&config)
            .into_iter()
            .map(|t| (t, 3))
            .collect();
        let (broker, bootstrap) = self.broker.start("transactions", partitions, &outputs)?;
        let t = Instant::now();
        let settings = self
            .broker
            .kafka(&bootstrap)
            .resolve()
            .map_err(|e| anyhow!(e))?;
        let bytes = fill(&settings, messages, partitions, &self.fill, self.dataset)?;
        let filled_in = t.elapsed().as_secs_f64();
        if self.broker.bootstrap_servers.is_some() {
            // A new broker creates its offsets log (__consumer_offsets, 50 partitions) at the
            // first group coordinator lookup: the processor's group check at start waited ~1 s
            // for it in 3 runs of 10. A broker in service has it. The processor's own group: its
            // partition of the log is then ready too.
            let t = Instant::now();
            let mut config = ClientConfig::new();
            settings.apply(&mut config);
            let warm: rdkafka::consumer::BaseConsumer =
                config.set("group.id", BENCH_GROUP).create()?;
            let mut partition = rdkafka::TopicPartitionList::new();
            partition.add_partition("transactions", 0);
            // Asked again while the broker answers that no coordinator is ready yet.
            while let Err(e) = rdkafka::consumer::Consumer::committed_offsets(
                &warm,
                partition.clone(),
                Duration::from_secs(10),
            ) {
                if t.elapsed() > Duration::from_secs(60) {
                    bail!("no group coordinator after 60 s: {e}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            println!(
                "the broker's offsets log created before the clock: {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
        if !outputs.is_empty() && self.broker.bootstrap_servers.is_some() {
            // A new broker creates its transaction log (__transaction_state, 50 partitions) at
            // the first transactional producer: ~1.6 s that a broker in service has behind it.
            // The processor's own transactional id: its partition of the log is then ready too,
            // as on a broker in service. (Not what made financial's start wait 0.45 s in half of
            // the runs: that was librdkafka's 500 ms coordinator retry, see the Kafka outputs.)
            let t = Instant::now();
            let mut config = ClientConfig::new();
            settings.apply(&mut config);
            let warm: BaseProducer = config
                .set("transactional.id", format!("{BENCH_GROUP}-outputs"))
                .create()?;
            warm.init_transactions(Duration::from_secs(60))?;
            println!(
                "the broker's transaction log created before the clock: {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
        println!(
            "filled {messages} messages ({:.0} MB, {:.1} % malformed) over {partitions} partitions in {:.1} s ({:.0} msg/s), producer batches of up to {} bytes, linger {} ms, broker {}",
            bytes as f64 / 1e6,
            self.fill.malformed * 100.0,
            filled_in,
            messages as f64 / filled_in,
            self.fill.bytes,
            self.fill.linger_ms,
            if broker.is_some() { "embedded" } else { bootstrap.as_str() }
        );
        Ok((broker, bootstrap, bytes))
    }
}

/// How the benchmark's producer batches the fill.
#[derive(clap::Args)]
struct Fill {
    /// Producer batch size of the fill, bytes (16 KiB: the Kafka producer's default batch.size)
    #[arg(long = "fill-batch-bytes", default_value_t = 16_384)]
    bytes: u32,
    /// Producer linger of the fill, ms (long enough for the batches to fill)
    #[arg(long = "fill-linger-ms", default_value_t = 100)]
    linger_ms: u32,
    /// Share of the fill's messages that are malformed, as the producer's `--bad-ratio` makes
    /// them (they go to quarantine): 1 % by default, as the speed targets are stated
    #[arg(long, default_value_t = 0.01)]
    malformed: f64,
}

fn main() -> anyhow::Result<()> {
    txn_core::settings::init_logging();
    match Cli::parse().what {
        What::Producer {
            count,
            rate,
            seconds,
            broker,
            dataset,
        } => bench_producer(count, rate, seconds, &broker, dataset),
        What::Processor { filled } => bench_processor(&filled),
        What::Read { filled } => bench_read(&filled),
        What::Stages {
            messages,
            batch,
            fraud_detection,
            profile,
            dataset,
        } => bench_stages(messages, batch, fraud_detection, &profile, dataset),
        What::Floor { messages, batch } => bench_floor(messages, batch),
        What::Decode { messages } => bench_decode(messages),
        What::Generate { messages } => bench_generate(messages),
        What::Latency {
            rate,
            seconds,
            fraud_every,
            trigger,
            warmup,
            broker,
        } => bench_latency(rate, seconds, fraud_every, &trigger, warmup, &broker),
    }
}

fn producer_config(
    kafka: txn_core::kafka::KafkaArgs,
    topic: &str,
    rate: f64,
    count: u64,
    dataset: Dataset,
) -> anyhow::Result<producer::ProducerConfig> {
    let mut c = producer::ProducerConfig::try_parse_from(["producer"])?;
    c.dataset = dataset;
    c.kafka = kafka;
    c.kafka.topic = topic.into();
    c.msgs_per_sec = rate;
    c.count = count;
    c.seed = Some(1);
    c.log_every = u64::MAX;
    Ok(c)
}

fn bench_producer(
    count: u64,
    rate: f64,
    seconds: u64,
    choice: &BrokerChoice,
    dataset: Dataset,
) -> anyhow::Result<()> {
    // Keyed by card_id like the real producer; the mock evicts old data past 5 MiB a partition,
    // which does not slow the producer. On a Kafka broker the topic is the bench's own.
    let topic = "bench-producer";
    let (_embedded, bootstrap) = choice.start(topic, choice.partitions.unwrap_or(12), &[])?;
    let stop = AtomicBool::new(false);
    let cpu = children_and_self_cpu();
    let s = producer::run(
        &producer_config(choice.kafka(&bootstrap), topic, 0.0, count, dataset)?,
        &stop,
    )?;
    let cpu = children_and_self_cpu() - cpu;
    println!(
        "producer unlimited: {} msgs in {:.2} s = {:.0} msg/s, {:.1} MB/s, failed {}, CPU {:.2} s ({:.2} s per million; the embedded broker's included when there is one)",
        s.sent,
        s.elapsed.as_secs_f64(),
        s.rate(),
        s.bytes as f64 / 1e6 / s.elapsed.as_secs_f64(),
        s.failed,
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / s.sent.max(1) as f64
    );
    let target = (rate * seconds as f64) as u64;
    if target == 0 {
        return Ok(());
    }
    let s = producer::run(
        &producer_config(choice.kafka(&bootstrap), topic, rate, target, dataset)?,
        &stop,
    )?;
    let achieved = s.sent as f64 / s.elapsed.as_secs_f64();
    println!(
        "producer at {rate} msg/s for {target} msgs: {:.2} s, achieved {achieved:.1} msg/s ({:+.2} % from target)",
        s.elapsed.as_secs_f64(),
        (achieved / rate - 1.0) * 100.0
    );
    Ok(())
}

/// Fills `partitions` round-robin (so no partition passes the mock's 5 MiB) with seed-shaped
/// messages, in producer batches of up to `fill.bytes`, each sent after at most `fill.linger_ms`
/// (100 ms lets 16 KiB batches fill).
///
/// The batch size matters to the mock only: it finds a fetch's batch by walking the partition's
/// batches from the first, so its cost grows with the square of their number, where a Kafka
/// broker looks the offset up in an index.
fn fill(
    settings: &txn_core::kafka::ClientSettings,
    messages: u64,
    partitions: i32,
    fill: &Fill,
    dataset: Dataset,
) -> anyhow::Result<u64> {
    let producer: BaseProducer = settings
        .apply(&mut ClientConfig::new())
        .set("linger.ms", fill.linger_ms.to_string())
        .set("batch.size", fill.bytes.to_string())
        .set("queue.buffering.max.messages", "500000")
        .create()?;
    let mut g: Box<dyn MessageGenerator> = match dataset {
        Dataset::Events => Box::new(EventGenerator::new(7, fill.malformed, 0.0)),
        Dataset::Financial => Box::new(FinancialGenerator::new(7, fill.malformed, 0.0, 0.0)),
        Dataset::Transactions => Box::new(Generator::new(7, fill.malformed, 0.0)),
    };
    let mut bytes = 0u64;
    let now = txn_core::time::now_micros();
    for i in 0..messages {
        g.next(now + i as i64);
        bytes += (g.payload().len() + g.key().len()) as u64;
        let mut record = BaseRecord::to("transactions")
            .key(g.key())
            .payload(g.payload())
            .partition((i % partitions as u64) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(bytes)
}

/// The processor's consumer group in `bench processor` (its Kafka outputs' transactional id is
/// this with `-outputs`).
const BENCH_GROUP: &str = "bench-processor";

fn bench_processor(filled: &Filled) -> anyhow::Result<()> {
    let (_embedded, bootstrap, _) = filled.start()?;
    let out = scratch("bench-processor")?;
    let t = Instant::now();
    let max_offsets = filled.max_offsets_per_trigger.to_string();
    let mut child = spawn_processor(
        &bootstrap,
        &filled.broker,
        &out,
        &[
            "--trigger",
            "available-now",
            "--max-offsets-per-trigger",
            &max_offsets,
            "--dataset",
            filled.dataset.name(),
        ],
    )?;
    let mut summary = String::new();
    // When the first line came (the process started), the first batch was read and the summary
    // was written (the batches done): start-up and shutdown apart from the batches.
    let (mut first_line, mut first_batch, mut stopped) = (None, None, None);
    for line in BufReader::new(child.stderr.take().context("no stderr")?).lines() {
        let line = line?;
        if std::env::var_os("BENCH_SHOW_LOG").is_some() {
            eprintln!("{line}");
        }
        first_line.get_or_insert_with(|| t.elapsed());
        if line.contains("starting at") || line.contains("restarting at") {
            first_batch.get_or_insert_with(|| t.elapsed());
        }
        if line.contains("stopped:") {
            summary = line;
            stopped = Some(t.elapsed());
        }
    }
    let cpu = children_cpu();
    let status = child.wait()?;
    let wall = t.elapsed();
    let at =
        |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
    println!(
        "timeline: first log line {}, offsets known (reading begins) {}, summary {}, exit {:.2} s",
        at(first_line),
        at(first_batch),
        at(stopped),
        wall.as_secs_f64()
    );
    let cpu = children_cpu() - cpu;
    if !status.success() {
        bail!("the processor failed: {status}");
    }
    println!(
        "processor end to end (its own process, available-now): wall {:.2} s including start = {:.0} records/s; its CPU {:.2} s = {:.2} s per million records",
        wall.as_secs_f64(),
        filled.messages as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / filled.messages.max(1) as f64
    );
    println!(
        "{}",
        summary.split("[processor] ").nth(1).unwrap_or(&summary)
    );
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}

/// The `processor` binary beside this one, in its own process, reading topic `transactions` of
/// `bootstrap` from the earliest offsets into `out`, with `args`; its stderr piped.
fn spawn_processor(
    bootstrap: &str,
    broker: &BrokerChoice,
    out: &std::path::Path,
    args: &[&str],
) -> anyhow::Result<std::process::Child> {
    let exe = std::env::current_exe()?.with_file_name("pipeline");
    Command::new(&exe)
        .args([
            "processor",
            "--starting-offsets",
            "earliest",
            "--topic",
            "transactions",
            "--kafka-group-id",
            BENCH_GROUP,
        ])
        .args(["--bootstrap-servers", bootstrap])
        .args(broker.kafka_flags())
        .arg("--output-path")
        .arg(out)
        .args(args)
        .current_dir(out)
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))
}

fn bench_read(filled: &Filled) -> anyhow::Result<()> {
    let (_embedded, bootstrap, bytes) = filled.start()?;
    let settings = filled
        .broker
        .kafka(&bootstrap)
        .resolve()
        .map_err(|e| anyhow!(e))?;
    let source = processor::source::KafkaSource::new(&settings, "transactions", "bench-read")?;
    let watermarks = source.wait_ready(Duration::from_secs(30))?;
    let mut next: std::collections::BTreeMap<i32, i64> =
        watermarks.iter().map(|(&p, &(low, _))| (p, low)).collect();
    let target = watermarks
        .iter()
        .map(|(&p, &(_, high))| (p, high))
        .collect();
    let t = Instant::now();
    let (mut rows, mut batches) = (0usize, 0);
    loop {
        let (ranges, _) = processor::engine::plan::plan(
            &next,
            &watermarks,
            &target,
            filled.max_offsets_per_trigger,
            true,
        )?;
        if ranges.iter().all(OffsetRange::is_empty) {
            break;
        }
        let (raw, _) = source
            .read(&ranges, &|_| false)?
            .context("the read gave up")?;
        rows += raw.messages.len();
        batches += 1;
        next = ranges.iter().map(|r| (r.partition, r.end)).collect();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "read alone: {rows} rows in {batches} batches, {secs:.2} s = {:.0} rows/s, {:.1} MB/s (peak RSS {} MiB, broker included)",
        rows as f64 / secs,
        bytes as f64 / 1e6 / secs,
        processor::peak_rss_kib().unwrap_or(0) / 1024
    );
    Ok(())
}

/// User + system CPU of the children waited for so far.
fn children_cpu() -> Duration {
    rusage(libc::RUSAGE_CHILDREN)
}

/// User + system CPU of this process and of the children waited for.
fn children_and_self_cpu() -> Duration {
    rusage(libc::RUSAGE_SELF) + rusage(libc::RUSAGE_CHILDREN)
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes into the zeroed struct it is given, nothing else.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn bench_generate(messages: u64) -> anyhow::Result<()> {
    type Make = fn() -> Box<dyn MessageGenerator>;
    let generators: [(&str, Make); 4] = [
        ("transactions (seed 000)", || {
            Box::new(Generator::new(7, 0.0, 0.0))
        }),
        ("transactions, realistic (seed 002)", || {
            Box::new(RealisticGenerator::new(7, 0.0, 0.0, 0.0, 10_000))
        }),
        ("events (seed 001)", || {
            Box::new(EventGenerator::new(7, 0.0, 0.0))
        }),
        ("financial (seeds 003/004)", || {
            Box::new(FinancialGenerator::new(7, 0.0, 0.0, 0.0))
        }),
    ];
    let now = txn_core::time::now_micros();
    for (name, make) in generators {
        let (mut best, mut bytes) = (Duration::MAX, 0);
        for _ in 0..3 {
            let mut g = make();
            bytes = 0;
            let t = Instant::now();
            for i in 0..messages as i64 {
                g.next(now + i * 1000);
                bytes += std::hint::black_box(g.payload()).len() + g.key().len();
            }
            best = best.min(t.elapsed());
        }
        println!(
            "generate {name}: {:.0} ns/message, {:.0} bytes/message ({messages} messages, best of 3)",
            best.as_nanos() as f64 / messages as f64,
            bytes as f64 / messages as f64
        );
    }
    // The seed generator's city: fake's English lists put together by the producer, against
    // fake's own CityName (three template replaces), each with a fast seeded generator.
    use fake::rand::SeedableRng as _;
    use fake::Fake as _;
    let cities = messages.min(1_000_000);
    let (mut ours, mut fakes) = (Duration::MAX, Duration::MAX);
    for round in 0..3 {
        let mut rng = producer::generator::Rng::new(round);
        let t = Instant::now();
        for _ in 0..cities {
            std::hint::black_box(producer::generator::fake_city(&mut rng));
        }
        ours = ours.min(t.elapsed());
        let mut rng = fake::rand::rngs::SmallRng::seed_from_u64(round);
        let t = Instant::now();
        for _ in 0..cities {
            let city: String = fake::faker::address::en::CityName().fake_with_rng(&mut rng);
            std::hint::black_box(city);
        }
        fakes = fakes.min(t.elapsed());
    }
    let per = |d: Duration| d.as_nanos() as f64 / cities as f64;
    println!(
        "city: {:.0} ns from fake's lists (the producer's), {:.0} ns by fake's CityName ({cities} cities, best of 3)",
        per(ours),
        per(fakes)
    );
    Ok(())
}

fn bench_decode(messages: u64) -> anyhow::Result<()> {
    let mut g = Generator::new(7, 0.0, 0.0);
    let now = txn_core::time::now_micros();
    let payloads: Vec<Vec<u8>> = (0..messages as i64)
        .map(|i| {
            g.next(now + i * 1000);
            g.payload().to_vec()
        })
        .collect();
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    type Decoder =
        for<'a> fn(Option<&'a [u8]>) -> Result<txn_core::Transaction<'a>, txn_core::Reject>;
    let paths: [(&str, Decoder); 2] = [
        ("fast path", txn_core::json::decode),
        ("serde_json", txn_core::json::decode_general),
    ];
    for (name, decode) in paths {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let valid = payloads
                .iter()
                .filter(|p| std::hint::black_box(decode(Some(p))).is_ok())
                .count();
            best = best.min(t.elapsed());
            anyhow::ensure!(
                valid == payloads.len(),
                "{name}: {valid} of {} valid",
                payloads.len()
            );
        }
        println!(
            "decode, {name}: {messages} messages in {:.0} ms = {:.0} ns/message, {:.0} MB/s (best of 3, one thread)",
            best.as_secs_f64() * 1e3,
            best.as_nanos() as f64 / messages as f64,
            bytes as f64 / 1e6 / best.as_secs_f64()
        );
    }
    bench_decode_avro(&payloads)
}

/// The same records as Avro bodies (the producer's encoding): read directly as the processor
/// decodes them, rendered as JSON (what bronze's `value` holds), and the old render-then-JSON
/// path; beside them the Apache Avro crate's own reader (a value tree), for scale.
fn bench_decode_avro(payloads: &[Vec<u8>]) -> anyhow::Result<()> {
    use txn_core::avro::{encode_json_text, WriterSchema, TRANSACTION_SCHEMA};
    let schema = WriterSchema::parse(TRANSACTION_SCHEMA).map_err(|e| anyhow::anyhow!(e))?;
    let bodies: Vec<Vec<u8>> = payloads
        .iter()
        .map(|p| {
            let mut body = Vec::new();
            encode_json_text(schema.schema(), p, &mut body).map(|()| body)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!(e))?;
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    let n = bodies.len();
    let mut json = Vec::with_capacity(1024);
    let time = |name: &str, one: &mut dyn FnMut(&[u8]) -> bool| -> anyhow::Result<()> {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let valid = bodies.iter().filter(|b| one(b)).count();
            best = best.min(t.elapsed());
            anyhow::ensure!(valid == n, "{name}: {valid} of {n} valid");
        }
        println!(
            "decode, {name}: {n} messages in {:.0} ms = {:.0} ns/message, {:.0} MB/s of Avro (best of 3, one thread)",
            best.as_secs_f64() * 1e3,
            best.as_nanos() as f64 / n as f64,
            bytes as f64 / 1e6 / best.as_secs_f64()
        );
        Ok(())
    };
    time("avro rendered as JSON", &mut |b| {
        json.clear();
        schema.to_json(b, &mut json).is_ok()
    })?;
    let mut json = Vec::with_capacity(1024);
    time(
        "avro rendered, then the JSON fast path (how the processor read Avro before session 20, today's renderer)",
        &mut |b| {
            json.clear();
            schema.to_json(b, &mut json).is_ok()
                && std::str::from_utf8(&json)
                    .ok()
                    .is_some_and(|t| std::hint::black_box(txn_core::json::decode_text(t)).is_ok())
        },
    )?;
    time("avro read directly (the processor's decode)", &mut |b| {
        std::hint::black_box(txn_core::json::decode_avro(&schema, 1, b)).is_ok()
    })?;
    let mut json = Vec::with_capacity(1024);
    time(
        "avro read directly + rendered as JSON (decode and bronze's value together)",
        &mut |b| {
            json.clear();
            std::hint::black_box(txn_core::json::decode_avro(&schema, 1, b)).is_ok()
                && schema.to_json(b, &mut json).is_ok()
        },
    )?;
    time(
        "avro, the Apache Avro crate's reader (value tree)",
        &mut |b| {
            std::hint::black_box(apache_avro::from_avro_datum(
                schema.schema(),
                &mut &b[..],
                None,
            ))
            .is_ok()
        },
    )?;
    println!(
        "avro bodies: {:.0} bytes/message on average, JSON {:.0}",
        bytes as f64 / n as f64,
        payloads.iter().map(Vec::len).sum::<usize>() as f64 / n as f64
    );
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |p| p.get())
}

fn bench_stages(
    messages: u64,
    batch: u64,
    fraud_detection: bool,
    profile: &str,
    dataset: Dataset,
) -> anyhow::Result<()> {
    use processor::datasets::{events::Events, financial::Financial, transactions::Transactions};
    let out = scratch("bench-stages")?;
    let mut config = processor::ProcessorConfig::try_parse_from(["processor"])?;
    config.output_path = out.clone().into();
    config.checkpoint_dir = None;
    config.fraud_detection = fraud_detection;
    config.dataset = dataset;
    processor::tune_allocator();
    // The input is generated before the clock starts: the generator would otherwise run while a
    // batch commits beside the next one and hide the commit's cost. All valid.
    let generator: Box<dyn MessageGenerator> = match (dataset, profile) {
        (Dataset::Events, _) => Box::new(EventGenerator::new(7, 0.0, 0.0)),
        (Dataset::Financial, _) => Box::new(FinancialGenerator::new(7, 0.0, 0.0, 0.02)),
        (Dataset::Transactions, "realistic") => {
            Box::new(RealisticGenerator::new(7, 0.0, 0.0, 0.02, 2_000))
        }
        (Dataset::Transactions, _) => Box::new(Generator::new(7, 0.0, 0.0)),
    };
    let input = generate_with(messages, batch, generator);
    let result = match dataset {
        Dataset::Transactions => stages_of(Transactions::new(&config), &config, input, messages),
        Dataset::Events => stages_of(Events::new(&config), &config, input, messages),
        Dataset::Financial => stages_of(Financial::new(&config), &config, input, messages),
    };
    let _ = std::fs::remove_dir_all(&out);
    result
}

/// [`bench_stages`] for one dataset, on the generated `input`.
fn stages_of<D: processor::engine::dataset::Dataset>(
    dataset: D,
    config: &processor::ProcessorConfig,
    (input, bytes): (Vec<(BatchPlan, RawBatch)>, u64),
    messages: u64,
) -> anyhow::Result<()> {
    let (mut sink, _) = processor::Stages::open(dataset, config)?;
    // The topics' records are built and counted, not sent: this measures the stages.
    sink.discard_topic_records()?;
    let input_mib = processor::peak_rss_kib().unwrap_or(0) / 1024;

    // As the processor runs back to back: each batch committed beside the next one's stages.
    let (mut decode, mut write, mut commit, mut gold) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let (t, cpu) = (Instant::now(), processor::process_cpu());
    std::thread::scope(|s| -> anyhow::Result<()> {
        let mut committing: Option<std::thread::ScopedJoinHandle<'_, _>> = None;
        let mut settle = |h: std::thread::ScopedJoinHandle<
            '_,
            processor::Result<processor::BatchOutcome>,
        >|
         -> anyhow::Result<()> {
            let o = h
                .join()
                .map_err(|_| anyhow::anyhow!("commit thread panicked"))??;
            decode += o.decode;
            write += o.write;
            commit += o.commit_time;
            gold += o.operators;
            Ok(())
        };
        for (plan, raw) in input {
            let staged = sink.stage(plan, true, raw, 0)?;
            if let Some(previous) = committing.take() {
                settle(previous)?;
            }
            let committer = sink.committer();
            committing = Some(s.spawn(move || committer.commit(staged)));
        }
        committing.map_or(Ok(()), settle)
    })?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = (processor::process_cpu() - cpu).as_secs_f64();
    println!(
        "stages after the read, from memory: {messages} records in {secs:.2} s = {:.0} records/s, {:.1} MB/s, CPU {cpu:.2} s ({:.2} µs a record, {:.0} % of {} cores) | decode {:.0} ms, operators+outputs {:.0} ms (operators {:.0} ms), commit {:.0} ms beside the next batch | peak RSS {} MiB, of which {input_mib} MiB is the generated input",
        messages as f64 / secs,
        bytes as f64 / 1e6 / secs,
        cpu * 1e6 / messages as f64,
        cpu / secs / cores() as f64 * 100.0,
        cores(),
        decode.as_secs_f64() * 1e3,
        write.as_secs_f64() * 1e3,
        gold.as_secs_f64() * 1e3,
        commit.as_secs_f64() * 1e3,
        processor::peak_rss_kib().unwrap_or(0) / 1024
    );
    Ok(())
}

/// `messages` seed-shaped messages (seed 7, all valid) in batches of `batch`, with their plans,
/// and their bytes.
fn generate(messages: u64, batch: u64) -> (Vec<(BatchPlan, RawBatch)>, u64) {
    generate_with(messages, batch, Box::new(Generator::new(7, 0.0, 0.0)))
}

/// [`generate`] with another generator.
fn generate_with(
    messages: u64,
    batch: u64,
    mut g: Box<dyn MessageGenerator>,
) -> (Vec<(BatchPlan, RawBatch)>, u64) {
    let now = txn_core::time::now_micros();
    let mut input = Vec::new();
    let mut bytes = 0u64;
    let mut offset = 0i64;
    for id in 0..messages.div_ceil(batch) {
        let n = batch.min(messages - id * batch);
        let mut raw = RawBatch::default();
        for i in 0..n {
            g.next(now + (offset + i as i64) * 1000);
            raw.push(
                0,
                offset + i as i64,
                Some(now / 1000),
                Some(g.key().as_bytes()),
                Some(g.payload()),
            );
        }
        bytes += raw.bytes() as u64;
        let plan = BatchPlan {
            batch: id,
            planned_at: now,
            ranges: vec![OffsetRange {
                partition: 0,
                start: offset,
                end: offset + n as i64,
            }],
            topic_id: None,
        };
        offset += n as i64;
        input.push((plan, raw));
    }
    (input, bytes)
}

/// Per batch, decoding alone (`Batch::decode`, parallel chunks) and then the payload
/// column encoded alone (`outputs::files::encode_payloads`: PLAIN pages, Snappy, a row group per core),
/// both as the processor does them: two costs every batch pays before it builds, encodes and
/// writes anything else.
fn bench_floor(messages: u64, batch: u64) -> anyhow::Result<()> {
    use processor::datasets::transactions::TxnBatch;
    use processor::sinks::files::encode_payloads;
    processor::tune_allocator();
    let (input, _) = generate(messages, batch);
    let (mut decode, mut decode_cpu) = (Duration::ZERO, Duration::ZERO);
    let (mut payload, mut payload_cpu, mut payload_bytes) = (Duration::ZERO, Duration::ZERO, 0);
    for (_, raw) in &input {
        let (t, cpu) = (Instant::now(), processor::process_cpu());
        let decoded = TxnBatch::decode(raw);
        (decode, decode_cpu) = (
            decode + t.elapsed(),
            decode_cpu + (processor::process_cpu() - cpu),
        );
        anyhow::ensure!(
            decoded.rejects.is_empty(),
            "the generated input is all valid"
        );
        let (t, cpu) = (Instant::now(), processor::process_cpu());
        let chunks = encode_payloads(raw.messages.len(), &|row| decoded.text(row as u32), None)?;
        (payload, payload_cpu) = (
            payload + t.elapsed(),
            payload_cpu + (processor::process_cpu() - cpu),
        );
        anyhow::ensure!(!chunks.is_empty(), "a chunk per row group");
        payload_bytes += decoded
            .texts
            .iter()
            .flatten()
            .map(|t| t.len())
            .sum::<usize>();
    }
    let rate = |d: Duration| messages as f64 / d.as_secs_f64();
    let micros = |d: Duration| d.as_secs_f64() * 1e6 / messages as f64;
    println!(
        "floor, from memory, {} cores: decode alone {:.0} records/s ({:.0} ms, {:.2} µs of CPU a record); the payload column alone {:.0} records/s ({:.0} ms, {:.0} MB/s of payload, {:.2} µs of CPU a record); the two together {:.0} records/s",
        cores(),
        rate(decode),
        decode.as_secs_f64() * 1e3,
        micros(decode_cpu),
        rate(payload),
        payload.as_secs_f64() * 1e3,
        payload_bytes as f64 / 1e6 / payload.as_secs_f64(),
        micros(payload_cpu),
        rate(decode + payload),
    );
    Ok(())
}

fn scratch(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The append time (ms since the epoch) of each planted purchase, by its number, from the
/// delivery reports: the broker's clock on a topic with LogAppendTime, else the time the
/// acknowledgement arrived.
#[derive(Default)]
struct Appended {
    planted: std::sync::Mutex<std::collections::HashMap<u64, i64>>,
}

impl rdkafka::ClientContext for Appended {}

impl rdkafka::producer::ProducerContext for Appended {
    /// The planted purchase's number plus one; 0 for the background traffic.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, planted: usize) {
        use rdkafka::message::Message as _;
        let (Some(n), Ok(m)) = ((planted as u64).checked_sub(1), result) else {
            return;
        };
        // (The embedded broker stamps LogAppendTime from another clock: not the epoch's.)
        let now = txn_core::time::now_micros() / 1000;
        let at = match m.timestamp() {
            rdkafka::Timestamp::LogAppendTime(ms) if (ms - now).abs() < 60_000 => ms,
            _ => now,
        };
        if let Ok(mut planted) = self.planted.lock() {
            planted.insert(n, at);
        }
    }
}

fn bench_latency(
    rate: f64,
    seconds: u64,
    fraud_every: u64,
    trigger: &str,
    warmup: f64,
    choice: &BrokerChoice,
) -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::message::Message as _;
    use rdkafka::producer::ThreadedProducer;

    let partitions = choice.partitions.unwrap_or(3);
    let alerts_topic = "fraud-alerts";
    // On a Kafka broker the input topic stamps messages with the broker's append time.
    let (_embedded, bootstrap) = match &choice.bootstrap_servers {
        Some(bootstrap) => {
            let settings = choice.kafka(bootstrap).resolve().map_err(|e| anyhow!(e))?;
            pipeline::admin::create_topic_as(
                &settings,
                "transactions",
                partitions,
                &[("message.timestamp.type", "LogAppendTime")],
            )?;
            pipeline::admin::create_topic_as(&settings, alerts_topic, 3, &[])?;
            (None, bootstrap.clone())
        }
        None => choice.start("transactions", partitions, &[(alerts_topic.into(), 3)])?,
    };
    let settings = choice.kafka(&bootstrap).resolve().map_err(|e| anyhow!(e))?;
    let out = scratch("bench-latency")?;
    let mut processor = spawn_processor(
        &bootstrap,
        choice,
        &out,
        &[
            "--fraud-detection",
            "true",
            "--trigger",
            trigger,
            "--fraud-alerts-topic",
            alerts_topic,
        ],
    )?;
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let stderr = processor.stderr.take().context("no stderr")?;
    let log = std::thread::spawn(move || {
        let mut batches = 0u64;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if std::env::var_os("BENCH_SHOW_LOG").is_some() {
                eprintln!("{line}");
            }
            if line.contains("Connecting to") {
                let _ = ready_tx.send(());
            }
            if line.contains("] batch ") {
                batches += 1;
            }
        }
        batches
    });
    ready
        .recv_timeout(Duration::from_secs(60))
        .context("the processor did not start")?;

    // The alerts, as a read_committed consumer reads them: txn_id -> when (ms).
    let consumer: BaseConsumer = settings
        .apply(&mut ClientConfig::new())
        .set("group.id", "bench-latency")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..3 {
        assignment.add_partition_offset(alerts_topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let found = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = {
        let (stop, found) = (stop.clone(), found.clone());
        std::thread::spawn(move || {
            let mut seen: std::collections::HashMap<String, i64> = Default::default();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) else {
                    continue;
                };
                let now = txn_core::time::now_micros() / 1000;
                let alert: serde_json::Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
                if let (Some("LARGE_AMOUNT"), Some(id)) =
                    (alert["alert_type"].as_str(), alert["txn_id"].as_str())
                {
                    if id.starts_with("planted-") && !seen.contains_key(id) {
                        seen.insert(id.to_string(), now);
                        found.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            seen
        })
    };

    // Realistic traffic (clean: it raises no alert) at a steady rate, a planted purchase every
    // `fraud_every` messages, stamped with the event time of the traffic around it.
    let producer: ThreadedProducer<Appended> = settings
        .apply(&mut ClientConfig::new())
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create_with_context(Appended::default())?;
    let mut g = RealisticGenerator::new(1, 0.0, 0.0, 0.0, 2000);
    let total = (rate * seconds as f64) as u64;
    let (start, mut planted, mut event_time) = (Instant::now(), 0u64, 0i64);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let sent = if i % fraud_every == fraud_every - 1 {
            let mut ts = String::new();
            txn_core::time::write_python_isoformat(&mut ts, event_time);
            let (id, card) = (
                format!("planted-{planted}"),
                format!("card_planted_{planted}"),
            );
            let value = format!(
                r#"{{"txn_id": "{id}", "event_ts": "{ts}", "user_id": "planted_{planted}", "card_id": "{card}", "merchant": "Jeweller", "category": "shopping", "amount": 25000.0, "currency": "EUR", "status": "APPROVED", "city": "Paris", "country": "FR", "lat": 48.8566, "lon": 2.3522}}"#
            );
            let record = BaseRecord::with_opaque_to("transactions", planted as usize + 1)
                .key(&card)
                .payload(&value);
            planted += 1;
            producer.send(record).map_err(|(e, _)| e)
        } else {
            g.next(txn_core::time::now_micros());
            if let Ok(t) = txn_core::decode(Some(g.payload())) {
                event_time = t.event_time;
            }
            let record = BaseRecord::with_opaque_to("transactions", 0)
                .key(g.key())
                .payload(g.payload());
            producer.send(record).map_err(|(e, _)| e)
        };
        sent.context("the producer refused a message")?;
    }
    producer.flush(Duration::from_secs(30))?;
    let produced_in = start.elapsed();
    // Every planted purchase's alert, or 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    while found.load(std::sync::atomic::Ordering::Relaxed) < planted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reader
        .join()
        .map_err(|_| anyhow!("the alert reader panicked"))?;
    unsafe {
        libc::kill(processor.id() as i32, libc::SIGTERM);
    }
    processor.wait()?;
    let batches = log.join().unwrap_or(0);
    let appended = producer
        .context()
        .planted
        .lock()
        .map_err(|_| anyhow!("poisoned"))?
        .clone();
    // When each planted purchase was sent, in seconds from the first message.
    let sent_at = |n: u64| (n + 1) as f64 * fraud_every as f64 / rate;
    let delays = |warm: bool| -> Vec<(u64, i64)> {
        let mut d: Vec<(u64, i64)> = (0..planted)
            .filter(|&n| (sent_at(n) < warmup) == warm)
            .filter_map(|n| Some((n, seen.get(&format!("planted-{n}"))? - appended.get(&n)?)))
            .collect();
        d.sort_by_key(|&(n, d)| (d, n));
        d
    };
    let (measured, warming) = (delays(false), delays(true));
    let missing = planted as usize - measured.len() - warming.len();
    println!(
        "latency: {total} messages at {rate} msg/s in {:.1} s ({:.0} msg/s achieved), {planted} planted LARGE_AMOUNT frauds, processor TRIGGER_INTERVAL={trigger} ({batches} batches), broker {}",
        produced_in.as_secs_f64(),
        total as f64 / produced_in.as_secs_f64(),
        if choice.bootstrap_servers.is_some() { bootstrap.as_str() } else { "embedded" }
    );
    let from = if choice.bootstrap_servers.is_some() {
        "append time (LogAppendTime)"
    } else {
        "acknowledgement"
    };
    let at = |d: &[(u64, i64)], q: f64| {
        d[((d.len() as f64 * q).ceil() as usize).clamp(1, d.len()) - 1].1
    };
    if measured.is_empty() {
        bail!("no planted purchase after the {warmup} s warm-up was alerted ({planted} planted, {missing} never alerted)");
    }
    println!(
        "after the first {warmup} s: alerts read (read_committed) for {} planted purchases: from the purchase's {from} to its alert read: p50 {} ms, p99 {} ms, max {} ms; never alerted: {missing}",
        measured.len(),
        at(&measured, 0.50),
        at(&measured, 0.99),
        measured[measured.len() - 1].1
    );
    if !warming.is_empty() {
        println!(
            "the first {warmup} s (the processor's first transaction and files): {} planted, p50 {} ms, max {} ms",
            warming.len(),
            at(&warming, 0.50),
            warming[warming.len() - 1].1
        );
    }
    let slowest: Vec<String> = measured
        .iter()
        .rev()
        .take(3)
        .map(|&(n, d)| format!("{d} ms (sent at {:.1} s)", sent_at(n)))
        .collect();
    println!("slowest after the warm-up: {}", slowest.join(", "));
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}
