//! Settings of the processor: flags, env variables (the seed's names) and `.env`, in one struct.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use txn_core::duration::parse_duration;
use txn_core::settings::parse_bool;
use txn_core::Dataset;

use crate::error::{Error, Result};
use crate::operators::windows::OutputMode;

/// How batches are triggered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A batch every interval (back to back when zero), as Spark's `ProcessingTime`.
    Interval(Duration),
    /// Everything present at start, in batches bounded by MAX_OFFSETS_PER_TRIGGER, then exit.
    AvailableNow,
}

fn parse_trigger(text: &str) -> Result<Trigger, String> {
    let t = text.trim().to_ascii_lowercase().replace(['_', ' '], "-");
    if t == "available-now" || t == "availablenow" || t == "once" {
        return Ok(Trigger::AvailableNow);
    }
    parse_duration(text)
        .map(Trigger::Interval)
        .map_err(|e| format!("{e}, or available-now"))
}

/// Which part of a dataset's work a member runs (scale-out with operators keyed by something
/// other than the topic's message key: two stages joined by a repartition topic, as Kafka
/// Streams' sub-topologies are). Not a setting: scale-out sets it for each of its two members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Stage {
    /// All of it (a lone processor, or scale-out where every operator is keyed by the message key).
    #[default]
    Whole,
    /// What is keyed by the input topic's key (the layers, gold), and every valid record to the
    /// repartition topic `repartition` (of `partitions` partitions), keyed by the other
    /// operators' key, with each input partition's clock after every batch.
    Keyed {
        repartition: String,
        partitions: i32,
    },
    /// Reads the repartition topic: the operators keyed by its key, and their outputs; their
    /// watermark follows the input topic's `sources` partitions.
    Rekeyed { sources: i32 },
}

/// How the Parquet layers are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One compact Parquet file per layer per batch.
    Parquet,
    /// Each layer a Delta Lake table (its log holds the input offsets of every batch).
    Delta,
}

/// Where the output goes: a local folder, or a bucket and prefix of an S3-compatible object
/// store (`s3://bucket/prefix`, configured by the `AWS_*` variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(url::Url),
}

impl Location {
    /// The local folder, if the output is one.
    pub fn local(&self) -> Option<&Path> {
        match self {
            Location::Local(path) => Some(path),
            Location::S3(_) => None,
        }
    }

    /// The folder `name` in this one.
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Local(path) => Location::Local(path.join(name)),
            Location::S3(url) => Location::S3(
                url.join(&format!("{name}/"))
                    .unwrap_or_else(|_| url.clone()),
            ),
        }
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Location::Local(path)
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Self {
        Location::Local(path.to_path_buf())
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::S3(url) => write!(f, "{url}"),
        }
    }
}

/// A local folder (a path or a `file://` URL) or `s3://bucket/prefix` (`s3a://` too). Other
/// schemes are refused by name, so that `gs://bucket/x` never becomes a local folder named `gs:`.
pub fn parse_output_path(text: &str) -> Result<Location, String> {
    match text.split_once("://") {
        Some(("s3" | "s3a", rest)) => {
            let bucket = rest.split('/').next().unwrap_or_default();
            if bucket.len() < 3 {
                return Err(format!(
                    "{text}: an S3 location needs a bucket name (s3://bucket/prefix)"
                ));
            }
            // One form for both schemes, with the prefix as a folder (a trailing slash), so
            // that joining a layer's name keeps the prefix.
            let mut url = url::Url::parse(&format!("s3://{}/", rest.trim_end_matches('/')))
                .map_err(|e| format!("{text}: {e}"))?;
            url.set_query(None);
            Ok(Location::S3(url))
        }
        _ => parse_local_path(text).map(Location::Local),
    }
}

/// A local folder, given as a path or a `file://` URL.
fn parse_local_path(text: &str) -> Result<PathBuf, String> {
    match text.split_once("://") {
        None => Ok(PathBuf::from(text)),
        Some(("file", path)) if path.starts_with('/') => Ok(PathBuf::from(path)),
        Some(("file", _)) => Err(format!(
            "{text}: a file:// URL needs an absolute path (file:///data/out)"
        )),
        Some((scheme, _)) => Err(format!(
            "{text}: {scheme}:// is not a storage this processor writes to; use a local path, file:// or s3://"
        )),
    }
}

/// A CQL consistency level by its name (`LOCAL_QUORUM`, `local-quorum`, `quorum`...).
fn parse_consistency(text: &str) -> Result<scylla::statement::Consistency, String> {
    use scylla::statement::Consistency as C;
    let levels = [
        ("ANY", C::Any),
        ("ONE", C::One),
        ("TWO", C::Two),
        ("THREE", C::Three),
        ("QUORUM", C::Quorum),
        ("ALL", C::All),
        ("LOCAL_QUORUM", C::LocalQuorum),
        ("EACH_QUORUM", C::EachQuorum),
        ("LOCAL_ONE", C::LocalOne),
    ];
    let name = text.trim().to_ascii_uppercase().replace('-', "_");
    levels
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            let names: Vec<&str> = levels.iter().map(|(n, _)| *n).collect();
            format!(
                "{text:?} is not a consistency level; use one of {}",
                names.join(", ")
            )
        })
}

fn parse_spark_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

/// Settings of the processor: each flag can also be given by the env variable named beside it,
/// or in a `.env` file in the working directory.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "processor",
    version,
    about = "Reads Kafka in micro-batches and writes the layers exactly once"
)]
pub struct ProcessorConfig {
    #[command(flatten)]
    pub kafka: txn_core::settings::KafkaArgs,
    #[command(flatten)]
    pub registry: txn_core::registry::RegistryArgs,
    /// The env file read at start (default: `.env` in the working folder, when there is one);
    /// the start line names it and where each setting came from
    #[arg(long, env = "ENV_FILE", value_name = "PATH")]
    pub env_file: Option<std::path::PathBuf>,
    /// What to process: `transactions` (seeds 000/002), `events` (seed 001) or `financial`
    /// (seeds 003/004); for the last two KAFKA_TOPIC defaults to the dataset's topic (`events`,
    /// `financial_transactions`), STARTING_OFFSETS to `earliest` and KAFKA_GROUP_ID to
    /// `<dataset>-processor`
    #[arg(
        long,
        env = "DATASET",
        default_value = "transactions",
        ignore_case = true
    )]
    pub dataset: txn_core::Dataset,
    /// Root of the layers (bronze/, silver/, gold/, quarantine/, raw_csv/, _chk/): a path, a
    /// file:// URL, or s3://bucket/prefix (with OUTPUT_FORMAT=delta; the AWS_* variables say
    /// where and how)
    #[arg(long, env = "OUTPUT_PATH", default_value = "./data/output/parquet", value_parser = parse_output_path)]
    pub output_path: Location,
    /// How the Parquet layers are kept: `parquet` (one file per layer per batch) or `delta` (each
    /// layer a Delta Lake table; raw_csv stays CSV files)
    #[arg(long, env = "OUTPUT_FORMAT", default_value = "parquet", value_enum)]
    pub output_format: OutputFormat,
    /// Checkpoint folder (default: OUTPUT_PATH/_chk): a path, a file:// URL or
    /// s3://bucket/prefix; the Spark original's SPARK_CHECKPOINT_DIR is read when this is unset
    #[arg(long, env = "CHECKPOINT_DIR", value_parser = parse_output_path)]
    pub checkpoint_dir: Option<Location>,
    /// Where to start when there is no checkpoint: latest, earliest, or Spark's JSON
    /// {"topic":{"0":42,"1":-2}} (-2 = earliest, -1 = latest)
    #[arg(long, env = "STARTING_OFFSETS", default_value = "latest")]
    pub starting_offsets: String,
    /// Stop when planned offsets were deleted by retention (true), or log the loss and go on (false)
    #[arg(long, env = "FAIL_ON_DATA_LOSS", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub fail_on_data_loss: bool,
    /// Print a 10-row preview of silver after each batch
    #[arg(long, env = "SHOW_PREVIEWS", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub show_previews: bool,
    /// "30 seconds", "500 ms", 0 (back to back), or available-now (process what is there, then exit)
    #[arg(long = "trigger-interval", visible_alias = "trigger", env = "TRIGGER_INTERVAL", default_value = "30 seconds", value_parser = parse_trigger)]
    pub trigger: Trigger,
    /// Keep the newest N files of each layer (0 = keep all); Parquet files only (Delta tables
    /// are compacted and vacuumed instead)
    #[arg(long, env = "MAX_FILES_PER_SINK", default_value_t = 0)]
    pub max_files_per_sink: usize,
    /// OUTPUT_FORMAT=delta: compact each table's small files (OPTIMIZE, per date partition)
    /// every N batches, then vacuum it (0 = never)
    #[arg(long, env = "DELTA_OPTIMIZE_EVERY", default_value_t = 100)]
    pub delta_optimize_every: u64,
    /// OUTPUT_FORMAT=delta: how long a file the tables no longer use (compacted, replaced) is
    /// kept for readers of older versions before the vacuum deletes it
    #[arg(long, env = "DELTA_VACUUM_RETENTION", default_value = "7 days", value_parser = parse_spark_duration)]
    pub delta_vacuum_retention: Duration,
    /// Most offsets read per batch, over all partitions (0 = no limit)
    #[arg(long, env = "MAX_OFFSETS_PER_TRIGGER", default_value_t = 5000)]
    pub max_offsets_per_trigger: u64,
    /// Consumer group whose offsets are committed after each batch, for lag tools (progress only)
    #[arg(
        long = "kafka-group-id",
        visible_alias = "group-id",
        env = "KAFKA_GROUP_ID",
        default_value = "transactions-processor"
    )]
    pub group_id: String,
    /// Serve Prometheus metrics at http://METRICS_ADDR/metrics (e.g. 0.0.0.0:9464; unset = off)
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// How long to wait for the broker at start before giving up
    #[arg(long = "kafka-connect-timeout", visible_alias = "connect-timeout", env = "KAFKA_CONNECT_TIMEOUT", default_value = "60 seconds", value_parser = parse_spark_duration)]
    pub connect_timeout: Duration,
    /// Gold: tumbling window size on event_time
    #[arg(long, env = "GOLD_WINDOW", default_value = "1 minute", value_parser = parse_spark_duration)]
    pub gold_window: Duration,
    /// Gold: watermark delay (how late an event may be and still count)
    #[arg(long, env = "GOLD_WATERMARK_DELAY", default_value = "5 minutes", value_parser = parse_spark_duration)]
    pub gold_watermark_delay: Duration,
    /// Gold: append (a window once, when the watermark passes its end) or update (changed windows each batch)
    #[arg(long, env = "GOLD_OUTPUT_MODE", default_value = "append")]
    pub gold_output_mode: OutputMode,
    /// A Kafka topic that also receives gold's rows, one JSON message each, exactly once for
    /// a `read_committed` consumer (empty: none)
    #[arg(long, env = "GOLD_TOPIC")]
    pub gold_topic: Option<String>,
    /// The Kafka topic outputs' values (fraud alerts, gold, merchant aggregates, anomalies):
    /// `json`, or `avro` in Confluent's wire format, each output's schema registered at
    /// SCHEMA_REGISTRY_URL under `<topic>-value`
    #[arg(long, env = "OUTPUT_TOPIC_FORMAT", default_value = "json", value_parser = ["json", "avro"])]
    pub output_topic_format: String,
    /// Scale-out: processors with the same KAFKA_GROUP_ID and OUTPUT_PATH share the topic's
    /// partitions through Kafka's consumer group (cooperative rebalancing), exactly once
    #[arg(long, env = "SCALE_OUT", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub scale_out: bool,
    /// Seed 002's fraud rules and windowed aggregates over the transactions: alerts to
    /// FRAUD_ALERTS_TOPIC and fraud_alerts/, aggregates to user_aggregates/
    #[arg(long, env = "FRAUD_DETECTION", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub fraud_detection: bool,
    /// The Kafka topic of the fraud alerts
    #[arg(long, env = "FRAUD_ALERTS_TOPIC", default_value = "fraud-alerts")]
    pub fraud_alerts_topic: String,
    /// How far the fraud rules' watermark trails the largest event time: sessions end when it
    /// passes them by 10 minutes; a transaction older than it is late (counted, not judged)
    #[arg(long, env = "FRAUD_WATERMARK_DELAY", default_value = "5 minutes", value_parser = parse_spark_duration)]
    pub fraud_watermark_delay: Duration,
    /// Financial dataset: a user with more than this many transactions in a minute of
    /// transactionTime is an anomaly (HIGH_FREQUENCY)
    #[arg(long, env = "ANOMALY_TXN_PER_MINUTE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub anomaly_txn_per_minute: u32,
    /// Financial dataset: an amount more than this many standard deviations from the user's
    /// usual amounts is an anomaly (UNUSUAL_AMOUNT)
    #[arg(long, env = "ANOMALY_AMOUNT_ZSCORE", default_value_t = 4.0, value_parser = parse_positive)]
    pub anomaly_amount_zscore: f64,
    /// Financial dataset: the Kafka topic of the per-merchant totals
    #[arg(
        long,
        env = "AGGREGATES_TOPIC",
        default_value = "transaction_aggregates"
    )]
    pub aggregates_topic: String,
    /// Financial dataset: the Kafka topic of the anomalies
    #[arg(long, env = "ANOMALIES_TOPIC", default_value = "transaction_anomalies")]
    pub anomalies_topic: String,
    /// Cassandra contact points (host:port, comma separated; port 9042 by default): the fraud
    /// run's user aggregates are upserted into CASSANDRA_KEYSPACE.CASSANDRA_TABLE (unset = off)
    #[arg(long, env = "CASSANDRA_HOSTS")]
    pub cassandra_hosts: Option<String>,
    /// The Cassandra keyspace (created when missing, with CASSANDRA_REPLICATION)
    #[arg(long, env = "CASSANDRA_KEYSPACE", default_value = "realtime_analytics")]
    pub cassandra_keyspace: String,
    /// The table of the user aggregates (seed 002's columns; created when missing)
    #[arg(
        long,
        env = "CASSANDRA_TABLE",
        default_value = "transaction_aggregates"
    )]
    pub cassandra_table: String,
    /// A table that receives gold's rows too (created when missing; unset = none)
    #[arg(long, env = "CASSANDRA_GOLD_TABLE")]
    pub cassandra_gold_table: Option<String>,
    /// The keyspace's replication, as CQL's map, when the processor creates it
    #[arg(
        long,
        env = "CASSANDRA_REPLICATION",
        default_value = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )]
    pub cassandra_replication: String,
    /// The consistency level of the upserts: a batch is committed once Cassandra acknowledged
    /// every row at this level (ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, EACH_QUORUM, LOCAL_ONE)
    #[arg(long, env = "CASSANDRA_CONSISTENCY", default_value = "LOCAL_QUORUM", value_parser = parse_consistency)]
    pub cassandra_consistency: scylla::statement::Consistency,
    /// Cassandra user (PasswordAuthenticator; unset: no authentication)
    #[arg(long, env = "CASSANDRA_USERNAME")]
    pub cassandra_username: Option<String>,
    /// Its password (never logged)
    #[arg(long, env = "CASSANDRA_PASSWORD", hide_env_values = true)]
    pub cassandra_password: Option<txn_core::kafka::Secret>,
    /// After a damaged checkpoint: make committed batch N the last one and replay from it. The
    /// later batches' checkpoint entries and output files are moved aside (`_set_aside_*`), and
    /// their Kafka topic records may be sent again. The error that stops the run names N.
    #[arg(long, value_name = "N")]
    pub recover_from_batch: Option<u64>,
    /// Test-only: pause this long after a batch's files are in place and before its commit
    #[arg(long, env = "TEST_PAUSE_BEFORE_COMMIT", value_parser = parse_spark_duration, hide = true)]
    pub test_pause_before_commit: Option<Duration>,
    /// The stage this member runs (scale-out sets it; not a flag).
    #[arg(skip)]
    pub stage: Stage,
}

impl ProcessorConfig {
    /// The checkpoint folder: CHECKPOINT_DIR (or SPARK_CHECKPOINT_DIR), else OUTPUT_PATH/_chk
    /// (`_chk_<dataset>` for the other datasets, so that they can share an OUTPUT_PATH).
    pub fn checkpoint_path(&self) -> Location {
        if let Some(dir) = self.checkpoint_dir.clone() {
            return dir;
        }
        match self.dataset {
            Dataset::Transactions => self.output_path.join("_chk"),
            other => self.output_path.join(&format!("_chk_{other}")),
        }
    }

    /// Where layer files are written before they are published: in their layer's folder when
    /// the output is local (a rename publishes them), else beside a local checkpoint, or in the
    /// system's temporary folder (they are uploaded, then removed).
    pub fn staging_root(&self) -> Result<PathBuf> {
        match (&self.output_path, self.checkpoint_path()) {
            (Location::Local(path), _) => Ok(path.clone()),
            (Location::S3(_), Location::Local(checkpoint)) => {
                Ok(checkpoint.join("_output_staging"))
            }
            (Location::S3(url), Location::S3(_)) => {
                let name: String = format!("{url}{}", self.dataset)
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                // One folder per process: two processors of one output on a host must not empty
                // each other's staging (sinks::open removes those of processes that are gone).
                Ok(std::env::temp_dir()
                    .join("pipeline-staging")
                    .join(name)
                    .join(std::process::id().to_string()))
            }
        }
    }

    /// What scale-out supports so far; the rest is refused at start with the reason.
    fn validate_scale_out(&self) -> Result<()> {
        if !self.scale_out {
            return Ok(());
        }
        let refuse = |what: &str| {
            Err(Error::Config(format!(
                "SCALE_OUT=true does not support {what} yet: run one processor (SCALE_OUT=false)"
            )))
        };
        if matches!(self.checkpoint_path(), Location::S3(_)) {
            return refuse("a checkpoint on object storage (the processors share it in a folder: NFS or a shared volume; with OUTPUT_PATH on object storage, set CHECKPOINT_DIR to such a folder)");
        }
        if self.cassandra_hosts().is_some() {
            return refuse("CASSANDRA_HOSTS");
        }
        if self.recover_from_batch.is_some() {
            return refuse("--recover-from-batch");
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        if self.kafka.topic.trim().is_empty() {
            return Err(Error::Config("KAFKA_TOPIC is empty".into()));
        }
        if self.group_id.trim().is_empty() {
            return Err(Error::Config(
                "KAFKA_GROUP_ID is empty (the consumer group of the offsets and transactions)"
                    .into(),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::Config(
                "KAFKA_CONNECT_TIMEOUT must be longer than 0 (how long to wait for Kafka at start)"
                    .into(),
            ));
        }
        self.kafka_client()?;
        if self.output_topic_format == "avro"
            && self
                .registry
                .schema_registry_url
                .as_deref()
                .is_none_or(str::is_empty)
        {
            return Err(Error::Config(
                "OUTPUT_TOPIC_FORMAT=avro needs SCHEMA_REGISTRY_URL (where the outputs' schemas are registered)".into(),
            ));
        }
        txn_core::registry::Registry::from_args(&self.registry).map_err(Error::Config)?;
        if self.gold_window.is_zero() {
            return Err(Error::Config("GOLD_WINDOW must be longer than 0".into()));
        }
        crate::engine::plan::StartingOffsets::parse(&self.starting_offsets, &self.kafka.topic)?;
        // Refused before anything moves: the checkpoint's set-aside would be done, the outputs'
        // not (a Delta table keeps its history; object storage has no rename).
        if self.recover_from_batch.is_some()
            && (self.output_format == OutputFormat::Delta
                || matches!(self.output_path, Location::S3(_)))
        {
            return Err(Error::Config(
                "--recover-from-batch is not supported with OUTPUT_FORMAT=delta or an OUTPUT_PATH on object storage: a Delta table keeps its history (read an earlier version with time travel); remove the checkpoint to start again from the tables' own offsets".into(),
            ));
        }
        self.validate_cassandra()?;
        self.validate_scale_out()?;
        if let Location::S3(url) = &self.output_path {
            if self.output_format != OutputFormat::Delta {
                return Err(Error::Config(format!(
                    "OUTPUT_PATH is {url}: object storage holds Delta tables; set OUTPUT_FORMAT=delta"
                )));
            }
        }
        Ok(())
    }
}

impl ProcessorConfig {
    /// The Cassandra contact points, when the Cassandra sink is on (CASSANDRA_HOSTS set and not
    /// empty).
    pub fn cassandra_hosts(&self) -> Option<Vec<String>> {
        let hosts: Vec<String> = self
            .cassandra_hosts
            .as_deref()?
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                {
                    h.to_string()
                } else {
                    format!("{h}:9042")
                }
            })
            .collect();
        (!hosts.is_empty()).then_some(hosts)
    }

    fn validate_cassandra(&self) -> Result<()> {
        let Some(_) = self.cassandra_hosts() else {
            return Ok(());
        };
        if self.dataset != Dataset::Transactions {
            return Err(Error::Config(format!(
                "CASSANDRA_HOSTS is set, but the {} dataset has no output for Cassandra (the transactions dataset's user aggregates and gold have)",
                self.dataset
            )));
        }
        if !self.fraud_detection && self.cassandra_gold_table.is_none() {
            return Err(Error::Config(
                "CASSANDRA_HOSTS is set, but nothing goes there: the user aggregates need FRAUD_DETECTION=true, gold needs CASSANDRA_GOLD_TABLE".into(),
            ));
        }
        let names = [
            ("CASSANDRA_KEYSPACE", Some(&self.cassandra_keyspace)),
            ("CASSANDRA_TABLE", Some(&self.cassandra_table)),
            ("CASSANDRA_GOLD_TABLE", self.cassandra_gold_table.as_ref()),
        ];
        for (setting, name) in names {
            let Some(name) = name else { continue };
            let valid = name.len() <= 48
                && name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(Error::Config(format!(
                    "{setting}={name:?}: a Cassandra name is a letter then up to 47 letters, digits or underscores"
                )));
            }
        }
        if self.cassandra_gold_table.as_ref() == Some(&self.cassandra_table) && self.fraud_detection
        {
            return Err(Error::Config(
                "CASSANDRA_GOLD_TABLE and CASSANDRA_TABLE name the same table; gold and the user aggregates have different columns".into(),
            ));
        }
        if self.cassandra_password.is_some() != self.cassandra_username.is_some() {
            return Err(Error::Config(
                "CASSANDRA_USERNAME and CASSANDRA_PASSWORD go together: set both or neither".into(),
            ));
        }
        Ok(())
    }

    /// The Kafka connection settings (file, env, flags), checked: a property the processor owns
    /// is refused, naming the setting that controls it.
    pub fn kafka_client(&self) -> Result<txn_core::kafka::ClientSettings> {
        let settings = self.kafka.resolve().map_err(Error::Config)?;
        settings
            .refuse_owned(&txn_core::kafka::OWNED_BY_THE_PIPELINE)
            .map_err(Error::Config)?;
        Ok(settings)
    }
}

/// A finite number above zero.
fn parse_positive(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a number above zero")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ProcessorConfig {
        ProcessorConfig::try_parse_from(std::iter::once("processor").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn scale_out_on_object_storage_needs_the_checkpoint_in_a_shared_folder() {
        let s3 = [
            "--scale-out",
            "true",
            "--output-path",
            "s3://lake/out",
            "--output-format",
            "delta",
        ];
        let e = parse(&s3).validate().unwrap_err().to_string();
        assert!(
            e.contains("a checkpoint on object storage") && e.contains("CHECKPOINT_DIR"),
            "{e}"
        );
        let shared = [&s3[..], &["--checkpoint-dir", "/shared/chk"]].concat();
        parse(&shared)
            .validate()
            .expect("a shared checkpoint folder");
        for format in ["parquet", "delta"] {
            let local = ["--scale-out", "true", "--output-format", format];
            parse(&local).validate().expect("a shared output folder");
        }
    }

    #[test]
    fn a_boolean_flag_alone_is_true_and_still_takes_a_value() {
        let c = parse(&[
            "--fraud-detection",
            "--show-previews",
            "--scale-out",
            "false",
        ]);
        assert!(c.fraud_detection && c.show_previews && !c.scale_out);
        let c = parse(&["--fail-on-data-loss", "no", "--fraud-detection"]);
        assert!(!c.fail_on_data_loss && c.fraud_detection);
        assert!(
            ProcessorConfig::try_parse_from(["processor", "--fraud-detection", "maybe"]).is_err()
        );
    }

    #[test]
    fn an_output_path_is_a_folder_a_file_url_or_an_s3_location_and_other_schemes_are_refused() {
        assert_eq!(
            parse(&["--output-path", "out/x"]).output_path,
            Location::Local(PathBuf::from("out/x"))
        );
        assert_eq!(
            parse(&["--output-path", "file:///data/out"]).output_path,
            Location::Local(PathBuf::from("/data/out"))
        );
        for (given, url) in [
            ("s3://lake/pipeline", "s3://lake/pipeline/"),
            ("s3a://lake/a/b/", "s3://lake/a/b/"),
            ("s3://lake", "s3://lake/"),
        ] {
            assert_eq!(
                parse(&["--output-path", given]).output_path,
                Location::S3(url::Url::parse(url).unwrap()),
                "{given}"
            );
        }
        for (bad, says) in [
            (
                "gs://bucket/x",
                "gs:// is not a storage this processor writes to",
            ),
            ("s3:///x", "needs a bucket name"),
            ("file://data", "needs an absolute path"),
        ] {
            let e = ProcessorConfig::try_parse_from(["processor", "--output-path", bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        // The checkpoint follows the output onto object storage, unless told otherwise; object
        // storage holds Delta tables only.
        let on_s3 = parse(&["--output-path", "s3://lake/p", "--output-format", "delta"]);
        on_s3.validate().unwrap();
        assert_eq!(
            on_s3.checkpoint_path(),
            Location::S3(url::Url::parse("s3://lake/p/_chk/").unwrap())
        );
        let staging = on_s3.staging_root().unwrap();
        assert!(staging.starts_with(std::env::temp_dir()), "{staging:?}");
        assert!(
            staging.ends_with(std::process::id().to_string()),
            "{staging:?}"
        );
        let e = parse(&["--output-path", "s3://lake/p", "--checkpoint-dir", "/tmp/c"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("set OUTPUT_FORMAT=delta"), "{e}");
        let fine = parse(&[
            "--output-path",
            "s3://lake/p",
            "--output-format",
            "delta",
            "--checkpoint-dir",
            "/tmp/c",
        ]);
        fine.validate().unwrap();
        // Nothing set aside that the tables could not set aside too.
        let e = parse(&["--output-format", "delta", "--recover-from-batch", "3"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--recover-from-batch is not supported"), "{e}");
        assert_eq!(
            fine.staging_root().unwrap(),
            PathBuf::from("/tmp/c/_output_staging")
        );
    }

    #[test]
    fn booleans_take_a_value_as_in_the_seed_env() {
        let default = parse(&[]);
        assert!(default.fail_on_data_loss, "Spark's default");
        assert!(!default.show_previews);
        let set = parse(&["--fail-on-data-loss", "false", "--show-previews", "1"]);
        assert!(!set.fail_on_data_loss);
        assert!(set.show_previews);
        assert!(
            ProcessorConfig::try_parse_from(["processor", "--show-previews", "maybe"]).is_err()
        );
    }

    #[test]
    fn triggers_in_spark_forms() {
        assert_eq!(
            parse(&[]).trigger,
            Trigger::Interval(Duration::from_secs(30))
        );
        assert_eq!(
            parse(&["--trigger", "0"]).trigger,
            Trigger::Interval(Duration::ZERO)
        );
        assert_eq!(
            parse(&["--trigger", "available-now"]).trigger,
            Trigger::AvailableNow
        );
        assert_eq!(
            parse(&["--trigger", "AvailableNow"]).trigger,
            Trigger::AvailableNow
        );
        assert!(ProcessorConfig::try_parse_from(["processor", "--trigger", "soon"]).is_err());
    }
}
