//! The producer of SPEC §1: seed-shaped card transactions into Kafka, keyed by `card_id`; with
//! `DATASET=events`, seed 001's events keyed by `id` ([`events`]).

pub mod events;
pub mod financial;
pub mod generator;
pub mod pacer;
pub mod realistic;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use tracing::{error, info, warn};
use txn_core::telemetry::Metric;

use generator::{Generator, Kind, MessageGenerator};
use pacer::Pacer;
use txn_core::kafka::{denied, explain, ClientSettings, Fatal, Names};
use txn_core::settings::parse_bool;
use txn_core::time::{now_micros, parse_rfc3339_micros};
use txn_core::Dataset;

/// Settings of the producer: each flag can also be given by the env variable named beside it,
/// or in a `.env` file in the working directory.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "producer",
    version,
    about = "Generates seed-shaped card transactions (or seed 001's events) into Kafka"
)]
pub struct ProducerConfig {
    #[command(flatten)]
    pub kafka: txn_core::settings::KafkaArgs,
    #[command(flatten)]
    pub registry: txn_core::registry::RegistryArgs,
    /// The values' format: `json` (the seeds' JSON) or `avro` (Confluent's wire format: the
    /// dataset's schema registered at SCHEMA_REGISTRY_URL under `<topic>-value` at start, its id
    /// before each Avro body; a malformed record that Avro cannot carry is sent as JSON)
    #[arg(long = "producer-format", visible_alias = "format", env = "PRODUCER_FORMAT", default_value = "json", value_parser = ["json", "avro"])]
    pub format: String,
    /// The env file read at start (default: `.env` in the working folder, when there is one);
    /// the start line names it and where each setting came from
    #[arg(long, env = "ENV_FILE", value_name = "PATH")]
    pub env_file: Option<std::path::PathBuf>,
    /// What to generate: `transactions` (seed 000's card payments; seed 002's with
    /// `--profile realistic`), `events` (seed 001's sensor events) or `financial` (seeds
    /// 003/004's); for the last two KAFKA_TOPIC defaults to the dataset's topic (`events`,
    /// `financial_transactions`) and PRODUCER_MSGS_PER_SEC to 5
    #[arg(
        long,
        env = "DATASET",
        default_value = "transactions",
        ignore_case = true
    )]
    pub dataset: txn_core::Dataset,
    /// Target rate in messages per second; 0 or less sends as fast as possible (the seeds'
    /// MSGS_PER_SEC is read when this is unset)
    #[arg(
        long = "producer-msgs-per-sec",
        visible_alias = "msgs-per-sec",
        env = "PRODUCER_MSGS_PER_SEC",
        default_value_t = 10.0,
        allow_negative_numbers = true
    )]
    pub msgs_per_sec: f64,
    /// Stop after this many messages (0 = no limit)
    #[arg(
        long = "producer-count",
        visible_alias = "count",
        env = "PRODUCER_COUNT",
        default_value_t = 0
    )]
    pub count: u64,
    /// Random seed: the same seed gives the same records (random by default)
    #[arg(long = "producer-seed", visible_alias = "seed", env = "PRODUCER_SEED")]
    pub seed: Option<u64>,
    /// Share of malformed messages (0..1), of several kinds, to exercise quarantine
    #[arg(
        long = "producer-bad-ratio",
        visible_alias = "bad-ratio",
        env = "PRODUCER_BAD_RATIO",
        default_value_t = 0.0
    )]
    pub bad_ratio: f64,
    /// Share of late messages (0..1): event_ts 7 to 20 minutes in the past, to exercise the watermark
    #[arg(
        long = "producer-late-ratio",
        visible_alias = "late-ratio",
        env = "PRODUCER_LATE_RATIO",
        default_value_t = 0.0
    )]
    pub late_ratio: f64,
    /// Log `sent N messages` every this many delivered messages
    #[arg(
        long = "producer-log-every",
        visible_alias = "log-every",
        env = "PRODUCER_LOG_EVERY",
        default_value_t = 50
    )]
    pub log_every: u64,
    /// Idempotent delivery (acks=all, no duplicates on retry)
    #[arg(long = "producer-idempotence", visible_alias = "idempotence", env = "PRODUCER_IDEMPOTENCE", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub idempotence: bool,
    /// Produce requests in flight per broker connection (librdkafka's `max.in.flight`); at most 5
    /// with idempotence, 1 keeps order without idempotence too
    #[arg(
        long = "producer-max-in-flight",
        visible_alias = "max-in-flight",
        env = "PRODUCER_MAX_IN_FLIGHT",
        default_value_t = 5
    )]
    pub max_in_flight: u32,
    /// Event times from a synthetic clock starting here (RFC 3339) and advancing 1/rate per message
    /// (1 ms when unlimited) instead of the wall clock: with --seed, runs are byte-for-byte identical
    #[arg(
        long = "producer-event-time-start",
        visible_alias = "event-time-start",
        env = "PRODUCER_EVENT_TIME_START"
    )]
    pub event_time_start: Option<String>,
    /// Transactions: `seed` (seed 000's random records) or `realistic` (users buying near home at
    /// plausible intervals, for the fraud rules; see PRODUCER_FRAUD_RATIO)
    #[arg(long = "producer-profile", visible_alias = "profile", env = "PRODUCER_PROFILE", default_value = "seed", value_parser = ["seed", "realistic"])]
    pub profile: String,
    /// With the realistic profile: the share of purchases replaced by a fraud pattern (impossible
    /// travel, large amount, rapid location change, burst, repeated large amounts, in turn); with
    /// the financial dataset: the share of transactions with an unusual amount (1,000,000 to
    /// 3,000,000, 6.7 to 60 times a usual one)
    #[arg(
        long = "producer-fraud-ratio",
        visible_alias = "fraud-ratio",
        env = "PRODUCER_FRAUD_RATIO",
        default_value_t = 0.0
    )]
    pub fraud_ratio: f64,
    /// With the realistic profile: how many users (0: enough for PRODUCER_MSGS_PER_SEC at one purchase
    /// per user every 160 s of event time on average, so event time keeps pace with the clock)
    #[arg(
        long = "producer-users",
        visible_alias = "users",
        env = "PRODUCER_USERS",
        default_value_t = 0
    )]
    pub users: usize,
    /// Serve Prometheus metrics at http://METRICS_ADDR/metrics (e.g. 0.0.0.0:9464; unset = off)
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Compression of the produced batches: none, gzip, snappy, lz4 or zstd [default: lz4, or
    /// the config file's compression.type]
    #[arg(long = "producer-compression", visible_alias = "compression", env = "PRODUCER_COMPRESSION", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    pub compression: Option<String>,
    /// How long a message may wait for the broker's acknowledgement, retries included
    /// (librdkafka's message.timeout.ms, Java's delivery.timeout.ms); the producer waits that
    /// long for what is in flight when it stops
    #[arg(long = "producer-delivery-timeout", visible_alias = "delivery-timeout", env = "PRODUCER_DELIVERY_TIMEOUT", default_value = "5 minutes", value_parser = parse_delivery_timeout)]
    pub delivery_timeout: Duration,
}

fn parse_delivery_timeout(text: &str) -> Result<Duration, String> {
    match txn_core::duration::parse_duration(text) {
        Ok(d) if d >= Duration::from_secs(1) => Ok(d),
        Ok(_) => Err(format!("{text:?}: at least 1 second")),
        Err(e) => Err(e.to_string()),
    }
}

/// The producer's compression when neither PRODUCER_COMPRESSION nor the client properties set
/// one (BENCHMARKS.md: the producer's codecs).
pub const DEFAULT_COMPRESSION: &str = "lz4";

impl ProducerConfig {
    /// The Kafka connection settings, checked (a property the producer owns is refused).
    pub fn kafka_client(&self) -> anyhow::Result<ClientSettings> {
        let settings = self.kafka.resolve().map_err(|e| anyhow::anyhow!(e))?;
        settings
            .refuse_owned(&txn_core::kafka::OWNED_BY_THE_PIPELINE)
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<Option<i64>> {
        for (name, v) in [
            ("--bad-ratio", self.bad_ratio),
            ("--late-ratio", self.late_ratio),
            ("--fraud-ratio", self.fraud_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("{name} must be between 0 and 1, got {v}");
            }
        }
        if self.kafka.topic.trim().is_empty() {
            bail!("KAFKA_TOPIC is empty");
        }
        if self.format == "avro"
            && self
                .registry
                .schema_registry_url
                .as_deref()
                .is_none_or(str::is_empty)
        {
            bail!(
                "PRODUCER_FORMAT=avro needs SCHEMA_REGISTRY_URL (where the schema is registered)"
            );
        }
        if self.log_every == 0 {
            bail!("--log-every must be at least 1");
        }
        let most = if self.idempotence { 5 } else { 1_000_000 };
        if !(1..=most).contains(&self.max_in_flight) {
            bail!(
                "--max-in-flight must be between 1 and {most}{}, got {}",
                if self.idempotence {
                    " with idempotence"
                } else {
                    ""
                },
                self.max_in_flight
            );
        }
        self.event_time_start
            .as_deref()
            .map(|s| {
                parse_rfc3339_micros(s)
                    .map_err(|e| anyhow::anyhow!("--event-time-start {s:?}: {e}"))
            })
            .transpose()
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages the broker acknowledged.
    pub sent: u64,
    /// Messages that were certainly not written (refused, or never sent).
    pub failed: u64,
    /// Messages that may or may not be in the topic: sent, then timed out or cut off at
    /// shutdown without an answer. Sending them again may duplicate them.
    pub unknown: u64,
    /// Messages sent again after the broker did not know their partition (a broker restart).
    pub retried: u64,
    pub bad: u64,
    pub late: u64,
    /// Key and payload bytes enqueued.
    pub bytes: u64,
    pub elapsed: Duration,
    /// What the generator adds (e.g. `injected: burst=3 …` with the realistic profile).
    pub extra: String,
}

impl Summary {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Counts deliveries on librdkafka's callback, and logs progress and failures.
struct Deliveries {
    sent: AtomicU64,
    failed: AtomicU64,
    unknown: AtomicU64,
    retried: AtomicU64,
    /// Messages never sent because their partition or topic was unknown for a moment (a
    /// broker restarting, ZooKeeper-mode metadata catching up): the run sends them again.
    resend: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
    /// Whether a message may still be sent again (until nothing was acknowledged for the
    /// delivery timeout).
    may_resend: AtomicBool,
    log_every: u64,
    /// When the broker last answered a message (acknowledged or failed), UTC microseconds.
    last_answer: AtomicU64,
    metrics: ProducerMetrics,
    /// The first error no retry fixes (credentials, certificates, ACLs): the run stops with it.
    fatal: Fatal,
    topic: String,
}

/// The producer's Prometheus series (no-ops without `METRICS_ADDR`), registered once: a
/// delivery costs an atomic add and a histogram sample, no lookup.
struct ProducerMetrics {
    sent: metrics::Counter,
    failed: metrics::Counter,
    /// From the send call (the message's CreateTime) to the broker's acknowledgement.
    latency: metrics::Histogram,
    in_flight: metrics::Gauge,
}

impl ProducerMetrics {
    fn new() -> Self {
        ProducerMetrics {
            sent: metrics::counter!("pipeline_producer_messages_sent_total"),
            failed: metrics::counter!("pipeline_producer_messages_failed_total"),
            latency: metrics::histogram!("pipeline_producer_send_latency_seconds"),
            in_flight: metrics::gauge!("pipeline_producer_messages_in_flight"),
        }
    }
}

/// Every metric name the producer exports, for checks of dashboards and alert rules.
pub const METRIC_NAMES: [Metric; 4] = [
    Metric::counter(
        "pipeline_producer_messages_sent_total",
        "Messages the broker acknowledged.",
    ),
    Metric::counter(
        "pipeline_producer_messages_failed_total",
        "Messages that finally failed, after every retry: not in Kafka.",
    ),
    Metric::histogram(
        "pipeline_producer_send_latency_seconds",
        "From a message's CreateTime to its acknowledgement.",
    ),
    Metric::gauge(
        "pipeline_producer_messages_in_flight",
        "Messages sent and not yet acknowledged.",
    ),
];

impl ClientContext for Deliveries {
    fn error(&self, error: KafkaError, reason: &str) {
        self.fatal.error(error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, line: &str) {
        self.fatal.log(level, fac, line);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let now = now_micros();
        self.last_answer.store(now as u64, Ordering::Relaxed);
        match result {
            Ok(message) => {
                self.metrics.sent.increment(1);
                // The message's CreateTime, set when it was sent. A topic with LogAppendTime
                // (and librdkafka's mock, which answers 1234) gives the broker's time instead.
                if let rdkafka::Timestamp::CreateTime(created_ms) = message.timestamp() {
                    self.metrics
                        .latency
                        .record((now / 1000 - created_ms).max(0) as f64 / 1e3);
                }
                let sent = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
                if sent.is_multiple_of(self.log_every) {
                    info!("[producer] sent {sent} messages");
                }
            }
            Err((e, message)) => {
                let code = e.rdkafka_error_code();
                if code == Some(RDKafkaErrorCode::TopicAuthorizationFailed) {
                    self.fatal.keep(denied(
                        &self.fatal.who,
                        "WRITE and DESCRIBE",
                        &format!("topic {}", self.topic),
                    ));
                }
                // SAFETY: `message` is the delivery report's message, alive for this call.
                let status = unsafe { rdkafka::bindings::rd_kafka_message_status(message.ptr()) };
                let never_sent = status
                    == rdkafka::bindings::rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_NOT_PERSISTED;
                let unknown_partition = matches!(
                    code,
                    Some(
                        RDKafkaErrorCode::UnknownPartition
                            | RDKafkaErrorCode::UnknownTopic
                            | RDKafkaErrorCode::UnknownTopicOrPartition
                    )
                );
                if never_sent && unknown_partition && self.may_resend.load(Ordering::Relaxed) {
                    let retried = self.retried.fetch_add(1, Ordering::Relaxed) + 1;
                    if retried == 1 || retried.is_multiple_of(10_000) {
                        warn!("[producer] {retried} messages refused for an unknown partition or topic ({e}): sending them again");
                    }
                    let key = message.key().unwrap_or_default().to_vec();
                    let payload = message.payload().unwrap_or_default().to_vec();
                    self.resend
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((key, payload));
                    return;
                }
                self.metrics.failed.increment(1);
                let counter = if never_sent {
                    &self.failed
                } else {
                    &self.unknown
                };
                let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                let what = if never_sent {
                    "delivery failed, not written"
                } else {
                    "delivery unknown (sent, no answer: it may be in the topic)"
                };
                // The first failures each, then one line per thousand: enough to see, not a flood.
                if n <= 10 || n.is_multiple_of(1000) {
                    error!("[producer] {what} ({n} so far): {e}");
                }
            }
        }
    }
}

/// Kafka settings of the producer: its defaults, the user's client properties, then what it
/// owns. Idempotence implies acks=all and ordered retries.
pub fn client_config(config: &ProducerConfig, client: &ClientSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("client.id", "producer")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("compression.type", DEFAULT_COMPRESSION)
        .set("max.in.flight", config.max_in_flight.to_string());
    client.apply(&mut c);
    if let Some(codec) = &config.compression {
        c.set("compression.type", codec);
    }
    c.set("acks", "all")
        .set("enable.idempotence", config.idempotence.to_string())
        .set(
            "message.timeout.ms",
            config.delivery_timeout.as_millis().to_string(),
        );
    c
}

/// Sends until `count` messages went out or `stop` is set, then flushes everything in flight.
pub fn run(config: &ProducerConfig, stop: &AtomicBool) -> anyhow::Result<Summary> {
    run_gated(config, stop, None)
}

/// [`run`], holding back while `hold` is set: the local stack's back-pressure, when its
/// processor is too far behind for the embedded broker's memory.
pub fn run_gated(
    config: &ProducerConfig,
    stop: &AtomicBool,
    hold: Option<&AtomicBool>,
) -> anyhow::Result<Summary> {
    let synthetic_start = config.validate()?;
    let client = config.kafka_client()?;
    let context = Deliveries {
        sent: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        unknown: AtomicU64::new(0),
        retried: AtomicU64::new(0),
        resend: Mutex::new(Vec::new()),
        may_resend: AtomicBool::new(true),
        log_every: config.log_every,
        last_answer: AtomicU64::new(now_micros() as u64),
        metrics: ProducerMetrics::new(),
        fatal: Fatal::new("producer", client.principal(), Names::default()),
        topic: config.kafka.topic.clone(),
    };
    let producer: BaseProducer<Deliveries> = client_config(config, &client)
        .create_with_context(context)
        .context("cannot create the Kafka producer")?;
    info!(
        "[producer] Connecting to {}, topic={}",
        client.bootstrap, config.kafka.topic
    );
    info!("[producer] Kafka client: {}", client.describe());

    let mut avro = match config.format.as_str() {
        "avro" => Some(AvroValues::register(config, stop)?),
        _ => None,
    };

    let seed = config
        .seed
        .unwrap_or_else(|| now_micros() as u64 ^ u64::from(std::process::id()) << 32);
    let mut generator: Box<dyn MessageGenerator> = match (config.dataset, config.profile.as_str()) {
        (Dataset::Events, _) => Box::new(events::EventGenerator::new(
            seed,
            config.bad_ratio,
            config.late_ratio,
        )),
        (Dataset::Financial, _) => Box::new(financial::FinancialGenerator::new(
            seed,
            config.bad_ratio,
            config.late_ratio,
            config.fraud_ratio,
        )),
        (Dataset::Transactions, "realistic") => Box::new(realistic::RealisticGenerator::new(
            seed,
            config.bad_ratio,
            config.late_ratio,
            config.fraud_ratio,
            match config.users {
                0 => realistic::RealisticGenerator::users_for_rate(config.msgs_per_sec),
                n => n,
            },
        )),
        (Dataset::Transactions, _) => {
            Box::new(Generator::new(seed, config.bad_ratio, config.late_ratio))
        }
    };
    let step_micros = if config.msgs_per_sec > 0.0 {
        1e6 / config.msgs_per_sec
    } else {
        1e3
    };
    let mut pacer = Pacer::new(config.msgs_per_sec);
    let started = Instant::now();
    let (mut issued, mut bad, mut late, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut stall = StallWatch::default();

    while !stop.load(Ordering::Relaxed) && (config.count == 0 || issued < config.count) {
        if hold.is_some_and(|h| h.load(Ordering::Relaxed)) {
            producer.poll(Duration::from_millis(50));
            stall.check(&producer);
            refused(&producer)?;
            pacer.restart();
            continue;
        }
        let wait = pacer.wait();
        if !wait.is_zero() {
            producer.poll(wait.min(Duration::from_millis(100)));
            stall.check(&producer);
            refused(&producer)?;
            continue;
        }
        let now = match synthetic_start {
            Some(start) => start + (issued as f64 * step_micros) as i64,
            None => now_micros(),
        };
        match generator.next(now) {
            Kind::Bad(_) => bad += 1,
            Kind::Late => late += 1,
            Kind::Valid => {}
        }
        let payload = match &mut avro {
            Some(avro) => avro.encode(generator.payload()),
            None => generator.payload(),
        };
        enqueue(
            &producer,
            &config.kafka.topic,
            generator.key().as_bytes(),
            payload,
            stop,
        )?;
        bytes += (generator.key().len() + generator.payload().len()) as u64;
        pacer.issue();
        issued += 1;
        if issued.is_multiple_of(1024) {
            producer.poll(Duration::ZERO);
            stall.check(&producer);
            refused(&producer)?;
            resend(&producer, &config.kafka.topic, stop)?;
        }
    }

    info!(
        "[producer] stopping: waiting for {} messages in flight (up to PRODUCER_DELIVERY_TIMEOUT, {:?})",
        producer.in_flight_count(),
        config.delivery_timeout
    );
    // Everything in flight is answered within the delivery timeout (librdkafka fails what is
    // still unanswered then); messages sent again restart theirs. A little margin on top.
    let deadline = Instant::now() + config.delivery_timeout + Duration::from_secs(5);
    loop {
        resend(&producer, &config.kafka.topic, stop)?;
        let _ = producer.flush(Duration::from_millis(200));
        stall.check(&producer);
        refused(&producer)?;
        let resends = producer
            .context()
            .resend
            .lock()
            .map(|r| r.len())
            .unwrap_or(0);
        if producer.in_flight_count() == 0 && resends == 0 {
            break;
        }
        if Instant::now() >= deadline {
            warn!(
                "[producer] {} messages still unanswered after the delivery timeout: counted as unknown",
                producer.in_flight_count()
            );
            break;
        }
    }
    let ctx = producer.context();
    ctx.may_resend.store(false, Ordering::Relaxed);
    // Whatever is left is cut off: its delivery reports say whether it was ever sent.
    producer.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
    producer.poll(Duration::ZERO);
    let never_answered = u64::try_from(producer.in_flight_count()).unwrap_or(0);
    let unresent = ctx.resend.lock().map(|r| r.len() as u64).unwrap_or(0);
    Ok(Summary {
        sent: ctx.sent.load(Ordering::Relaxed),
        failed: ctx.failed.load(Ordering::Relaxed) + unresent,
        unknown: ctx.unknown.load(Ordering::Relaxed) + never_answered,
        retried: ctx.retried.load(Ordering::Relaxed),
        bad,
        late,
        bytes,
        elapsed: started.elapsed(),
        extra: generator.summary(),
    })
}

/// Sends again the messages the broker refused for an unknown partition or topic.
fn resend(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let pending = std::mem::take(
        &mut *producer
            .context()
            .resend
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    for (key, payload) in pending {
        enqueue(producer, topic, &key, &payload, stop)?;
    }
    Ok(())
}

/// Stops the run on an error no retry fixes: wrong credentials, an untrusted certificate, a
/// missing ACL (librdkafka would retry them until the delivery timeout). Messages queued are
/// purged, so nothing more is written.
fn refused(producer: &BaseProducer<Deliveries>) -> anyhow::Result<()> {
    let context = producer.context();
    let message = context.fatal.get().or_else(|| {
        let (code, reason) = producer.client().fatal_error()?;
        Some(explain(Some(code), &reason, &context.fatal.who, &Names::default()).unwrap_or(reason))
    });
    match message {
        Some(m) => {
            producer.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
            bail!("{m}")
        }
        None => Ok(()),
    }
}

/// Warns when messages wait and the broker has answered none of them for a while (brokers
/// down, or too few replicas in sync for acks=all): once, then every 30 s while it lasts, and
/// says when answers come back. librdkafka retries meanwhile, until `message.timeout.ms`.
#[derive(Default)]
struct StallWatch {
    warned_at: Option<Instant>,
    checked_at: Option<Instant>,
}

/// How long without any answer while messages wait before it is worth a warning.
const STALL_WARNING: Duration = Duration::from_secs(5);

impl StallWatch {
    fn check(&mut self, producer: &BaseProducer<Deliveries>) {
        let now = Instant::now();
        if self
            .checked_at
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(500))
        {
            return;
        }
        self.checked_at = Some(now);
        producer
            .context()
            .metrics
            .in_flight
            .set(producer.in_flight_count() as f64);
        let silent_us = (now_micros() as u64)
            .saturating_sub(producer.context().last_answer.load(Ordering::Relaxed));
        let silent = Duration::from_micros(silent_us);
        let waiting = producer.in_flight_count();
        if waiting > 0 && silent >= STALL_WARNING {
            if self
                .warned_at
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(30))
            {
                warn!(
                    "[producer] no acknowledgement from Kafka for {} s, {waiting} messages waiting: {}; retrying until PRODUCER_DELIVERY_TIMEOUT",
                    silent.as_secs(),
                    diagnose(producer)
                );
                self.warned_at = Some(now);
            }
        } else if silent < STALL_WARNING && self.warned_at.take().is_some() {
            info!("[producer] Kafka acknowledges messages again");
        }
    }
}

/// Why nothing is acknowledged, as far as one metadata request tells: the broker unreachable,
/// the topic missing, or (when both look fine) too few replicas in sync for acks=all.
fn diagnose(producer: &BaseProducer<Deliveries>) -> String {
    let topic = &producer.context().topic;
    match producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(2))
    {
        Err(e) => format!(
            "Kafka does not answer ({e}): is the broker up and KAFKA_BOOTSTRAP_SERVERS right?"
        ),
        Ok(m) => match m.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                format!("topic {topic} exists: are enough replicas in sync for acks=all?")
            }
            _ => {
                format!("topic {topic} does not exist (create it, e.g. with kafka-topics --create)")
            }
        },
    }
}

/// `PRODUCER_FORMAT=avro`: the dataset's schema, its registry id, and the framed value of the
/// current message.
struct AvroValues {
    schema: txn_core::avro::WriterSchema,
    id: u32,
    value: Vec<u8>,
}

impl AvroValues {
    /// Registers the dataset's schema under `<topic>-value`, waiting while the registry cannot
    /// answer (a warning every 10 s) until it does or a stop is requested.
    fn register(config: &ProducerConfig, stop: &AtomicBool) -> anyhow::Result<Self> {
        let registry = txn_core::registry::Registry::from_args(&config.registry)
            .map_err(|e| anyhow::anyhow!(e))?
            .context("PRODUCER_FORMAT=avro needs SCHEMA_REGISTRY_URL")?;
        let text = txn_core::avro::dataset_schema(config.dataset);
        let schema = txn_core::avro::WriterSchema::parse(text).map_err(|e| anyhow::anyhow!(e))?;
        let subject = format!("{}-value", config.kafka.topic);
        let id = registry
            .register_waiting(&subject, text, "producer", &|| stop.load(Ordering::Relaxed))
            .map_err(|e| anyhow::anyhow!(e))?;
        info!(
            "[producer] Avro values: schema id {id} (subject {subject}) at {}",
            registry.describe()
        );
        Ok(AvroValues {
            schema,
            id,
            value: Vec::new(),
        })
    }

    /// The generator's JSON as a framed Avro value; the JSON itself when it is not a record of
    /// the schema (the generator's malformed records stay malformed).
    fn encode<'a>(&'a mut self, json: &'a [u8]) -> &'a [u8] {
        self.value.clear();
        txn_core::avro::frame(self.id, &mut self.value);
        match txn_core::avro::encode_json_text(self.schema.schema(), json, &mut self.value) {
            Ok(()) => &self.value,
            Err(_) => json,
        }
    }
}

/// Enqueues one message, waiting while librdkafka's queue is full.
fn enqueue(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut full_since: Option<Instant> = None;
    let mut unknown_since: Option<Instant> = None;
    loop {
        let record = BaseRecord::to(topic).key(key).payload(payload);
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(10) {
                    warn!("[producer] local queue full for 10 s: is the broker reachable?");
                    full_since = Some(Instant::now());
                }
                producer.poll(Duration::from_millis(5));
                refused(producer)?;
                if stop.load(Ordering::Relaxed) && since.elapsed() > Duration::from_secs(30) {
                    bail!("the local queue stayed full for 30 s after a stop was requested");
                }
            }
            Err((
                KafkaError::MessageProduction(
                    code @ (RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownPartition),
                ),
                _,
            )) => {
                // A broker that just restarted (ZooKeeper mode especially) may answer a metadata
                // request before it knows its topics again: wait for it, up to a minute.
                let since = *unknown_since.get_or_insert_with(|| {
                    warn!("[producer] Kafka says topic {topic} is unknown ({code:?}): waiting up to {}s for its metadata", UNKNOWN_TOPIC_WAIT.as_secs());
                    Instant::now()
                });
                if since.elapsed() > UNKNOWN_TOPIC_WAIT || stop.load(Ordering::Relaxed) {
                    bail!(
                        "cannot enqueue a message to topic {topic}: {code:?} for {} s; {}",
                        since.elapsed().as_secs(),
                        diagnose(producer)
                    );
                }
                producer.poll(Duration::from_millis(100));
                refused(producer)?;
            }
            Err((e, _)) => bail!("cannot enqueue a message to topic {topic}: {e}"),
        }
    }
}

/// How long an enqueue waits for a topic the broker says it does not know (a restarted broker).
const UNKNOWN_TOPIC_WAIT: Duration = Duration::from_secs(60);

/// Entry point of the `producer` binary (and of `pipeline producer`): parses settings from `args`,
/// stops on SIGINT/SIGTERM, prints the summary; exit code 1 when a message finally failed.
pub fn main_with_args(args: impl IntoIterator<Item = String>) -> std::process::ExitCode {
    let args: Vec<String> = args.into_iter().collect();
    let Some(stop) = txn_core::settings::startup("producer", &args) else {
        return std::process::ExitCode::from(2);
    };
    txn_core::settings::apply_dataset_defaults(&args);
    let (config, sources) = txn_core::settings::parse::<ProducerConfig>(&args);
    // A bad setting gives its one line, and the settings line comes only with settings in use.
    if let Err(e) = config.validate() {
        error!("[producer] {e:#}");
        return std::process::ExitCode::from(2);
    }
    info!("[producer] settings: {sources}");
    if let Some(addr) = &config.metrics_addr {
        let served = txn_core::telemetry::serve_metrics(
            addr,
            "producer",
            &METRIC_NAMES,
            config.dataset.name(),
            &config.kafka.topic,
        );
        match served {
            Ok(served) => info!("[producer] metrics at http://{served}/metrics"),
            Err(e) => {
                error!("[producer] invalid setting: {e}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    match run(&config, &stop) {
        Ok(summary) => {
            info!(
                "[producer] done: sent={} failed={} unknown={} retried={} bad={} late={} elapsed={:.1}s rate={:.0} msg/s{}",
                summary.sent,
                summary.failed,
                summary.unknown,
                summary.retried,
                summary.bad,
                summary.late,
                summary.elapsed.as_secs_f64(),
                summary.rate(),
                if summary.extra.is_empty() {
                    String::new()
                } else {
                    format!(" {}", summary.extra)
                }
            );
            info!("[producer] Goodbye");
            if summary.failed > 0 || summary.unknown > 0 {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        Err(e) => {
            error!("[producer] {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_names_lists_exactly_the_metrics_recorded() {
        let source = include_str!("lib.rs");
        let source = source.split("#[cfg(test)]").next().unwrap();
        let recorded: std::collections::BTreeSet<&str> =
            ["counter!(\"", "gauge!(\"", "histogram!(\""]
                .iter()
                .flat_map(|call| source.split(call).skip(1))
                .filter_map(|rest| rest.split('"').next())
                .collect();
        let listed: std::collections::BTreeSet<&str> =
            super::METRIC_NAMES.iter().map(|m| m.name).collect();
        assert_eq!(recorded, listed);
    }
}

#[cfg(test)]
mod avro_tests {
    use super::*;

    /// Every dataset's generator, as the producer's `avro` format writes it: each record that
    /// fits the dataset's schema reads back, rendered by the processor's renderer and read
    /// directly by the processor's decoder, as the same record its JSON gives; the malformed
    /// ones that do not fit stay JSON.
    #[test]
    fn each_datasets_records_in_avro_decode_as_their_json_does() {
        use txn_core::avro::WriterSchema;
        use txn_core::{event, financial as fin, json};
        type Same = fn(&str, &str) -> bool;
        type Direct = fn(&WriterSchema, &[u8], &str) -> bool;
        type Case = (Dataset, Box<dyn MessageGenerator>, (Same, Direct));
        let transactions: (Same, Direct) = (
            |a, b| json::decode_text(a) == json::decode_text(b),
            |s, body, b| json::decode_avro(s, 1, body) == json::decode_text(b),
        );
        let cases: [Case; 4] = [
            (
                Dataset::Transactions,
                Box::new(Generator::new(3, 0.1, 0.1)),
                transactions,
            ),
            (
                Dataset::Transactions,
                Box::new(realistic::RealisticGenerator::new(3, 0.1, 0.1, 0.05, 50)),
                transactions,
            ),
            (
                Dataset::Events,
                Box::new(events::EventGenerator::new(3, 0.1, 0.1)),
                (
                    |a, b| event::decode_event(a) == event::decode_event(b),
                    |s, body, b| event::decode_event_avro(s, 1, body) == event::decode_event(b),
                ),
            ),
            (
                Dataset::Financial,
                Box::new(financial::FinancialGenerator::new(3, 0.1, 0.1, 0.05)),
                (
                    |a, b| fin::decode_financial(a) == fin::decode_financial(b),
                    |s, body, b| fin::decode_financial_avro(s, 1, body) == fin::decode_financial(b),
                ),
            ),
        ];
        for (dataset, mut generator, (same, direct)) in cases {
            let text = txn_core::avro::dataset_schema(dataset);
            let schema = txn_core::avro::WriterSchema::parse(text).unwrap();
            let (mut avro, mut fits) = (0, 0);
            for i in 0..3000 {
                let kind = generator.next(1_762_500_000_000_000 + i * 1000);
                let json = generator.payload();
                let mut body = Vec::new();
                if txn_core::avro::encode_json_text(schema.schema(), json, &mut body).is_err() {
                    assert!(
                        matches!(kind, Kind::Bad(_)),
                        "{dataset}: a valid record did not fit"
                    );
                    continue;
                }
                avro += 1;
                let mut rendered = Vec::new();
                schema.to_json(&body, &mut rendered).unwrap();
                let (a, b) = (
                    std::str::from_utf8(&rendered).unwrap(),
                    std::str::from_utf8(json).unwrap(),
                );
                assert!(same(a, b), "{dataset}: {a} read apart from {b}");
                assert!(
                    direct(&schema, &body, b),
                    "{dataset}: {a} read directly apart from {b}"
                );
                fits += usize::from(!matches!(kind, Kind::Bad(_)));
            }
            assert!(
                avro > 2500 && fits > 2400,
                "{dataset}: {avro} in Avro, {fits} valid"
            );
        }
    }
}
