//! Every Kafka client of the project (the producer, the processor's consumer and transactional
//! producer, `pipeline`, `bench`) gets its connection settings here: the bootstrap servers, a
//! Java-style `client.properties` file (`KAFKA_CONFIG_FILE`, the file Kafka's own tools take with
//! `--command-config`), the common security settings as env variables, and `--kafka-config
//! key=value` flags. Precedence: flag > env > file > the client's default.
//!
//! Java clients and librdkafka name most properties alike; the few Java-only ones that secured
//! clusters' sample files carry (`sasl.jaas.config`, PEM/PKCS12 trust and key stores, an empty
//! `ssl.endpoint.identification.algorithm`) are translated, serializer and registry entries are
//! skipped, and anything librdkafka does not know is an error at start. Secrets are never
//! printed: [`KafkaArgs::describe`] masks them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// A secret setting (a password): printed as `***` by `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// Where Kafka is and how to connect to it: the settings every binary shares.
#[derive(clap::Args, Clone, PartialEq, Eq)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port, comma separated) [default: localhost:9094, or the
    /// config file's bootstrap.servers]
    #[arg(
        long = "kafka-bootstrap-servers",
        visible_alias = "bootstrap-servers",
        env = "KAFKA_BOOTSTRAP_SERVERS"
    )]
    pub bootstrap_servers: Option<String>,
    /// The dataset's topic, which the producer writes and the processor reads (by default the
    /// dataset's: transactions, events or financial_transactions)
    #[arg(
        long = "kafka-topic",
        visible_alias = "topic",
        env = "KAFKA_TOPIC",
        default_value = "transactions"
    )]
    pub topic: String,
    /// A Java-style client.properties file (as Kafka's tools take with --command-config): every
    /// entry goes to every Kafka client
    #[arg(long, env = "KAFKA_CONFIG_FILE", value_name = "PATH")]
    pub kafka_config_file: Option<PathBuf>,
    /// A Kafka client property, e.g. --kafka-config security.protocol=SASL_SSL (repeatable;
    /// wins over the env variables and the file)
    #[arg(long = "kafka-config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub kafka_config: Vec<(String, String)>,
    /// security.protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL")]
    pub kafka_security_protocol: Option<String>,
    /// sasl.mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER
    #[arg(long, env = "KAFKA_SASL_MECHANISM")]
    pub kafka_sasl_mechanism: Option<String>,
    /// sasl.username
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// sasl.password (never printed; prefer the env variable or the file to a flag)
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<Secret>,
    /// ssl.ca.location: the PEM file of the CA that signed the brokers' certificates
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION", value_name = "PATH")]
    pub kafka_ssl_ca_location: Option<String>,
}

impl fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags: Vec<String> = self
            .kafka_config
            .iter()
            .map(|(k, v)| format!("{k}={}", if is_secret(k) { "***" } else { v }))
            .collect();
        f.debug_struct("KafkaArgs")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topic", &self.topic)
            .field("kafka_config_file", &self.kafka_config_file)
            .field("kafka_config", &flags)
            .field("kafka_security_protocol", &self.kafka_security_protocol)
            .field("kafka_sasl_mechanism", &self.kafka_sasl_mechanism)
            .field("kafka_sasl_username", &self.kafka_sasl_username)
            .field("kafka_sasl_password", &self.kafka_sasl_password)
            .field("kafka_ssl_ca_location", &self.kafka_ssl_ca_location)
            .finish()
    }
}

/// `KEY=VALUE`, as `--kafka-config` takes it.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{text:?}: use KEY=VALUE")),
    }
}

/// The default bootstrap servers (the seed's compose file publishes Kafka there).
pub const DEFAULT_BOOTSTRAP: &str = "localhost:9094";

/// Where a property's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(&'static str),
    File(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("--kafka-config"),
            Source::Env(name) => f.write_str(name),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// The resolved connection settings: the bootstrap servers and the user's client properties (in
/// librdkafka's names), each with where it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub bootstrap: String,
    bootstrap_source: Source,
    properties: BTreeMap<String, (String, Source)>,
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Whether a property holds a secret (its value is never printed).
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "token",
        "oauthbearer.config",
        "key.pem",
        "user.info",
    ]
    .iter()
    .any(|s| k.contains(s))
}

impl ClientSettings {
    /// Sets the bootstrap servers and the user's properties on `c`: over the client's tunable
    /// defaults set before, under the properties it owns set after (see [`Self::refuse_owned`]).
    pub fn apply<'c>(&self, c: &'c mut ClientConfig) -> &'c mut ClientConfig {
        c.set("bootstrap.servers", &self.bootstrap);
        for (k, (v, _)) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// Settings for a plaintext broker at `bootstrap` with no property of the user's (the
    /// embedded broker, benchmarks).
    pub fn plain(bootstrap: &str) -> Self {
        ClientSettings {
            bootstrap: bootstrap.to_string(),
            bootstrap_source: Source::Default,
            properties: BTreeMap::new(),
        }
    }

    /// Whether the user set any connection property (the embedded broker takes none).
    pub fn has_properties(&self) -> bool {
        !self.properties.is_empty()
    }

    /// A property the user set (librdkafka's name).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(|(v, _)| v.as_str())
    }

    /// The settings and their sources on one line, secrets as `***`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!(
            "bootstrap.servers={} ({})",
            self.bootstrap, self.bootstrap_source
        )];
        for (k, (v, source)) in &self.properties {
            let shown = if is_secret(k) { "***" } else { v.as_str() };
            parts.push(format!("{k}={shown} ({source})"));
        }
        parts.join(", ")
    }

    /// Who connects, for error messages: `user X with mechanism Y`, or the protocol.
    pub fn principal(&self) -> String {
        let protocol = self.get("security.protocol").unwrap_or("PLAINTEXT");
        match (self.get("sasl.username"), self.get("sasl.mechanisms")) {
            (Some(user), mechanism) => format!(
                "user {user} with mechanism {}",
                mechanism.unwrap_or("GSSAPI")
            ),
            (None, Some(m)) => format!("mechanism {m}"),
            (None, None) => format!("security.protocol {protocol}"),
        }
    }

    /// Refuses a user property that a client sets itself because exactly-once depends on it,
    /// naming the setting that controls it instead.
    pub fn refuse_owned(&self, owned: &[(&str, &str)]) -> Result<(), String> {
        for (key, instead) in owned {
            if let Some((_, source)) = self.properties.get(*key) {
                return Err(format!(
                    "{key} (from {source}) is set by the pipeline itself: {instead}"
                ));
            }
        }
        Ok(())
    }
}

/// Properties that belong to the client, not to the user: the key and what to use instead.
pub const OWNED_BY_THE_PIPELINE: [(&str, &str); 11] = [
    ("group.id", "use KAFKA_GROUP_ID"),
    (
        "transactional.id",
        "the processor derives it from KAFKA_GROUP_ID",
    ),
    ("enable.idempotence", "use PRODUCER_IDEMPOTENCE"),
    (
        "isolation.level",
        "the processor always reads read_committed",
    ),
    (
        "enable.auto.commit",
        "the processor commits offsets with its batches",
    ),
    (
        "enable.auto.offset.store",
        "the processor commits offsets with its batches",
    ),
    ("auto.offset.reset", "use STARTING_OFFSETS"),
    ("acks", "the producer always waits for acks=all"),
    (
        "transaction.timeout.ms",
        "the processor sets it for its batches",
    ),
    ("message.timeout.ms", "use PRODUCER_DELIVERY_TIMEOUT"),
    ("delivery.timeout.ms", "use PRODUCER_DELIVERY_TIMEOUT"),
];

impl KafkaArgs {
    /// Reads the file, the env settings and the flags into one set of librdkafka properties,
    /// and checks that librdkafka knows every one of them.
    pub fn resolve(&self) -> Result<ClientSettings, String> {
        let mut properties: BTreeMap<String, (String, Source)> = BTreeMap::new();
        let mut bootstrap = None;
        if let Some(path) = &self.kafka_config_file {
            let source = Source::File(path.clone());
            for (k, v) in read_properties(path)? {
                for (k, v) in translate(&k, &v).map_err(|e| format!("{}: {e}", path.display()))? {
                    if k == "bootstrap.servers" {
                        bootstrap = Some((v, source.clone()));
                    } else {
                        properties.insert(k, (v, source.clone()));
                    }
                }
            }
        }
        let env = [
            (
                "security.protocol",
                "KAFKA_SECURITY_PROTOCOL",
                self.kafka_security_protocol.clone(),
            ),
            (
                "sasl.mechanisms",
                "KAFKA_SASL_MECHANISM",
                self.kafka_sasl_mechanism.clone(),
            ),
            (
                "sasl.username",
                "KAFKA_SASL_USERNAME",
                self.kafka_sasl_username.clone(),
            ),
            (
                "sasl.password",
                "KAFKA_SASL_PASSWORD",
                self.kafka_sasl_password.clone().map(|s| s.0),
            ),
            (
                "ssl.ca.location",
                "KAFKA_SSL_CA_LOCATION",
                self.kafka_ssl_ca_location.clone(),
            ),
        ];
        for (key, name, value) in env {
            if let Some(v) = value {
                properties.insert(key.to_string(), (v, Source::Env(name)));
            }
        }
        for (k, v) in &self.kafka_config {
            for (k, v) in translate(k, v).map_err(|e| format!("--kafka-config {k}: {e}"))? {
                if k == "bootstrap.servers" {
                    bootstrap = Some((v, Source::Flag));
                } else {
                    properties.insert(k, (v, Source::Flag));
                }
            }
        }
        let (bootstrap, bootstrap_source) = match &self.bootstrap_servers {
            Some(b) => (b.clone(), Source::Env("KAFKA_BOOTSTRAP_SERVERS")),
            None => bootstrap.unwrap_or((DEFAULT_BOOTSTRAP.to_string(), Source::Default)),
        };
        if bootstrap.trim().is_empty() {
            return Err("KAFKA_BOOTSTRAP_SERVERS is empty".into());
        }
        let settings = ClientSettings {
            bootstrap,
            bootstrap_source,
            properties,
        };
        // librdkafka itself says which property it does not know or which value it refuses.
        for (k, (v, source)) in &settings.properties {
            let mut one = ClientConfig::new();
            one.set(k, v);
            if let Err(e) = one.create_native_config() {
                let detail = match e {
                    KafkaError::ClientConfig(_, desc, _, _) => desc,
                    other => other.to_string(),
                };
                let detail = if is_secret(k) {
                    "invalid value".into()
                } else {
                    detail
                };
                return Err(format!(
                    "Kafka client property {k} (from {source}): {detail}"
                ));
            }
        }
        Ok(settings)
    }

    /// Points the clients at a plaintext broker (the embedded one), dropping every connection
    /// property; returns whether any was set (the caller says they are ignored).
    pub fn plaintext_at(&mut self, bootstrap: &str) -> bool {
        let had = self.kafka_config_file.is_some()
            || !self.kafka_config.is_empty()
            || self.kafka_security_protocol.is_some()
            || self.kafka_sasl_mechanism.is_some()
            || self.kafka_sasl_username.is_some()
            || self.kafka_sasl_password.is_some()
            || self.kafka_ssl_ca_location.is_some();
        self.bootstrap_servers = Some(bootstrap.to_string());
        self.kafka_config_file = None;
        self.kafka_config.clear();
        self.kafka_security_protocol = None;
        self.kafka_sasl_mechanism = None;
        self.kafka_sasl_username = None;
        self.kafka_sasl_password = None;
        self.kafka_ssl_ca_location = None;
        had
    }

    /// The resolved settings on one line for the start-up log, secrets masked.
    pub fn describe(&self) -> String {
        match self.resolve() {
            Ok(s) => s.describe(),
            Err(e) => e,
        }
    }
}

/// Reads a Java properties file (`key=value`, `key: value` or `key value`, `#`/`!` comments,
/// `\` continuations and escapes), as Kafka's tools read `--command-config`.
fn read_properties(path: &PathBuf) -> Result<Vec<(String, String)>, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read KAFKA_CONFIG_FILE {}: {e}", path.display()))?;
    let mut out = Vec::new();
    java_properties::PropertiesIter::new(std::io::BufReader::new(file))
        .read_into(|k, v| out.push((k, v)))
        .map_err(|e| format!("KAFKA_CONFIG_FILE {}: {e}", path.display()))?;
    Ok(out)
}

/// Java client properties that mean nothing to librdkafka and change nothing here (serializers,
/// the schema registry's settings, DNS lookup strategy, Java's TLS protocol lists).
const JAVA_ONLY: [&str; 11] = [
    "key.serializer",
    "value.serializer",
    "key.deserializer",
    "value.deserializer",
    "client.dns.lookup",
    "ssl.protocol",
    "ssl.enabled.protocols",
    "default.api.timeout.ms",
    "ssl.truststore.type",
    "ssl.keystore.type",
    "ssl.truststore.password",
];

/// A Java client property in librdkafka's terms: the same, translated, or nothing.
fn translate(key: &str, value: &str) -> Result<Vec<(String, String)>, String> {
    let one = |k: &str, v: &str| Ok(vec![(k.to_string(), v.to_string())]);
    let key = key.trim();
    if JAVA_ONLY.contains(&key)
        || key.starts_with("schema.registry.")
        || key.starts_with("basic.auth.")
    {
        return Ok(Vec::new());
    }
    match key {
        "sasl.jaas.config" => jaas(value),
        "sasl.mechanism" => one("sasl.mechanisms", value),
        "ssl.endpoint.identification.algorithm" if value.trim().is_empty() => {
            one(key, "none")
        }
        // librdkafka reads PEM trust stores (ssl.ca.location) and PKCS#12 key stores.
        "ssl.truststore.location" => {
            if is_pem(value)? {
                one("ssl.ca.location", value)
            } else {
                Err(format!("{value} is a Java key store: librdkafka reads the CA as PEM; convert it with `keytool -exportcert -rfc -keystore {value} -alias CARoot -file ca.pem` and set ssl.ca.location=ca.pem"))
            }
        }
        "ssl.keystore.location" => {
            if is_pem(value)? {
                Ok(vec![
                    ("ssl.certificate.location".into(), value.into()),
                    ("ssl.key.location".into(), value.into()),
                ])
            } else if value.ends_with(".jks") {
                Err(format!("{value} is a JKS key store: librdkafka reads PKCS#12; convert it with `keytool -importkeystore -srckeystore {value} -destkeystore client.p12 -deststoretype PKCS12`"))
            } else {
                one(key, value)
            }
        }
        "sasl.login.callback.handler.class" | "sasl.client.callback.handler.class" => Err(
            "Java callback classes cannot run here: for OAUTHBEARER use librdkafka's sasl.oauthbearer.* properties".into(),
        ),
        _ => one(key, value),
    }
}

/// Whether a store file is PEM (text starting with `-----BEGIN`), else a binary key store.
fn is_pem(path: &str) -> Result<bool, String> {
    let bytes = std::fs::read(path.trim()).map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).contains("-----BEGIN"))
}

/// `sasl.jaas.config` of the PLAIN and SCRAM login modules as librdkafka's username and
/// password; OAUTHBEARER's unsecured options as `sasl.oauthbearer.config`.
fn jaas(value: &str) -> Result<Vec<(String, String)>, String> {
    let value = value.trim().trim_end_matches(';').trim();
    let (module, rest) = value
        .split_once(char::is_whitespace)
        .ok_or("sasl.jaas.config: expected `<LoginModule> required key=\"value\" ...;`")?;
    let rest = rest.trim_start();
    let rest = ["required", "requisite", "sufficient", "optional"]
        .iter()
        .find_map(|flag| rest.strip_prefix(flag))
        .ok_or("sasl.jaas.config: expected a control flag (required) after the login module")?;
    let options = jaas_options(rest)?;
    let module = module.rsplit('.').next().unwrap_or(module);
    match module {
        "PlainLoginModule" | "ScramLoginModule" => {
            let mut out = Vec::new();
            for (k, name) in [("username", "sasl.username"), ("password", "sasl.password")] {
                let v = options
                    .get(k)
                    .ok_or(format!("sasl.jaas.config: {module} needs {k}=\"...\""))?;
                out.push((name.to_string(), v.clone()));
            }
            Ok(out)
        }
        "OAuthBearerLoginModule" => {
            let config: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v}")).collect();
            Ok(vec![("sasl.oauthbearer.config".into(), config.join(" "))])
        }
        other => Err(format!(
            "sasl.jaas.config: login module {other} is not supported (PlainLoginModule, ScramLoginModule, OAuthBearerLoginModule)"
        )),
    }
}

/// `key="value" key2='v' key3=v` (JAAS option syntax).
fn jaas_options(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let key = key.trim().to_string();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err("sasl.jaas.config: options must be key=\"value\"".into());
        }
        let value = match chars.peek() {
            Some(&q @ ('"' | '\'')) => {
                chars.next();
                let mut v = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => v.extend(chars.next()),
                        Some(c) if c == q => break,
                        Some(c) => v.push(c),
                        None => return Err(format!("sasl.jaas.config: unclosed quote in {key}")),
                    }
                }
                v
            }
            _ => chars.by_ref().take_while(|c| !c.is_whitespace()).collect(),
        };
        out.insert(key, value);
    }
}

/// What librdkafka reported that no retry will fix: wrong credentials, a certificate that is not
/// trusted, a missing ACL. Clients keep the first one; callers stop with it within seconds
/// instead of waiting out their timeouts. It is the consumer's librdkafka context as it is, and
/// the part of the producers' contexts that sees errors and log lines.
pub struct Fatal {
    first: Mutex<Option<String>>,
    /// The client's consumer group and transactional id, named in refusals.
    names: Names,
    /// Who connects (user and mechanism), for the messages.
    pub who: String,
    /// The client, in debug lines (`processor`, `producer`, ...).
    client: &'static str,
}

/// The resources a client uses beside topics, for error messages.
#[derive(Default, Clone)]
pub struct Names {
    pub group: Option<String>,
    pub transactional_id: Option<String>,
}

impl Fatal {
    /// For `client`, connecting as `who`, with a consumer group or a transactional id.
    pub fn new(client: &'static str, who: String, names: Names) -> Self {
        Fatal {
            first: Mutex::new(None),
            names,
            who,
            client,
        }
    }

    /// Records `error` when it is one of those.
    pub fn record(&self, error: &KafkaError, reason: &str) {
        if let Some(message) = explain(error.rdkafka_error_code(), reason, &self.who, &self.names) {
            self.keep(message);
        }
    }

    /// Keeps `message` unless an earlier one is kept.
    pub fn keep(&self, message: String) {
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(message);
    }

    /// Records a librdkafka log line when it tells of such an error. Log lines come straight
    /// from librdkafka's threads, where a consumer's error events wait for its next poll; they
    /// also carry the broker's own words.
    pub fn record_log(&self, level: rdkafka::config::RDKafkaLogLevel, line: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        if !matches!(level, L::Emerg | L::Alert | L::Critical | L::Error) {
            return;
        }
        let code = if line.contains("SASL authentication error") {
            RDKafkaErrorCode::Authentication
        } else if line.contains("SSL handshake failed") {
            RDKafkaErrorCode::SSL
        } else {
            return;
        };
        self.record(&KafkaError::Global(code), line);
    }

    /// The first such error, if any.
    pub fn get(&self) -> Option<String> {
        self.first.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A client's error callback and log lines: what no retry fixes is kept, everything is logged at
/// debug level (librdkafka retries the rest by itself).
impl rdkafka::ClientContext for Fatal {
    fn error(&self, error: KafkaError, reason: &str) {
        self.record(&error, reason);
        tracing::debug!("[{}] Kafka: {error}: {reason}", self.client);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, line: &str) {
        self.record_log(level, line);
        tracing::debug!("[{}] librdkafka {fac}: {line}", self.client);
    }
}

impl rdkafka::consumer::ConsumerContext for Fatal {}

/// A readable line for an error that retrying will not fix, else `None`.
pub fn explain(
    code: Option<RDKafkaErrorCode>,
    reason: &str,
    who: &str,
    names: &Names,
) -> Option<String> {
    use RDKafkaErrorCode as C;
    let tls = reason.contains("SSL handshake failed")
        || reason.contains("certificate verify failed")
        || reason.contains("ssl.ca.location");
    match code {
        Some(C::Authentication | C::SaslAuthenticationFailed) => Some(format!(
            "authentication failed for {who}: {reason} (check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM)"
        )),
        _ if code == Some(C::SSL) || tls => Some(format!(
            "TLS connection failed: {reason} (check KAFKA_SSL_CA_LOCATION: the CA that signed the brokers' certificates, and that the certificate names the host in KAFKA_BOOTSTRAP_SERVERS)"
        )),
        Some(C::ClusterAuthorizationFailed) => Some(format!(
            "not authorized: {who} lacks idempotent write on the cluster (grant WRITE on the topic, or IDEMPOTENT_WRITE on the cluster for brokers before 3.0): {reason}"
        )),
        Some(C::TransactionalIdAuthorizationFailed) => Some(format!(
            "{}: {reason}",
            denied(who, "WRITE", &format!("transactional id {}", names.transactional_id.as_deref().unwrap_or("?")))
        )),
        Some(C::TopicAuthorizationFailed) => Some(format!(
            "not authorized: {who} lacks access to a topic: {reason}"
        )),
        Some(C::GroupAuthorizationFailed) => Some(format!(
            "{}: {reason}",
            denied(who, "READ", &format!("consumer group {}", names.group.as_deref().unwrap_or("?")))
        )),
        _ => None,
    }
}

/// The message for an authorization error on a named resource, with the ACL that grants it.
pub fn denied(who: &str, operation: &str, resource: &str) -> String {
    format!("not authorized: {who} lacks {operation} on {resource} (see the README, Secured Kafka: the ACLs each service needs)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    fn args(a: &[&str]) -> KafkaArgs {
        Cli::try_parse_from(std::iter::once("x").chain(a.iter().copied()))
            .unwrap()
            .kafka
    }

    #[test]
    fn a_confluent_style_properties_file_becomes_librdkafka_properties() {
        let dir = std::env::temp_dir().join(format!("kafka-props-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("client.properties");
        std::fs::write(
            &file,
            "# Confluent Cloud\nbootstrap.servers=pkc-1.example.com:9092\nsecurity.protocol=SASL_SSL\n\
             sasl.mechanism=PLAIN\nsasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \\\n  required username='KEY' password='p@ss \"word\"';\n\
             client.dns.lookup=use_all_dns_ips\nsession.timeout.ms=45000\nacks=all\n\
             schema.registry.url=https://x\nbasic.auth.user.info=a:b\n",
        )
        .unwrap();
        let mut a = args(&["--kafka-config-file", file.to_str().unwrap()]);
        // acks is the pipeline's own: refused by the clients that own it, not here.
        let s = a.resolve().unwrap();
        assert_eq!(s.bootstrap, "pkc-1.example.com:9092");
        assert_eq!(s.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(s.get("sasl.mechanisms"), Some("PLAIN"));
        assert_eq!(s.get("sasl.username"), Some("KEY"));
        assert_eq!(s.get("sasl.password"), Some("p@ss \"word\""));
        assert_eq!(s.get("client.dns.lookup"), None);
        assert_eq!(s.get("basic.auth.user.info"), None);
        assert!(s
            .refuse_owned(&OWNED_BY_THE_PIPELINE)
            .unwrap_err()
            .contains("acks"));
        let shown = s.describe();
        assert!(shown.contains("sasl.password=***"), "{shown}");
        assert!(!shown.contains("p@ss"), "{shown}");
        // env beats the file, a flag beats both, and an explicit bootstrap beats the file's.
        a.kafka_sasl_username = Some("ENV".into());
        a.kafka_config = vec![("sasl.username".into(), "FLAG".into())];
        a.bootstrap_servers = Some("b:1".into());
        let s = a.resolve().unwrap();
        assert_eq!(s.get("sasl.username"), Some("FLAG"));
        assert_eq!(s.bootstrap, "b:1");
        a.kafka_config.clear();
        assert_eq!(a.resolve().unwrap().get("sasl.username"), Some("ENV"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unknown_property_or_value_is_an_error_naming_it_and_its_source() {
        let e = args(&["--kafka-config", "no.such.property=1"])
            .resolve()
            .unwrap_err();
        assert!(
            e.contains("no.such.property") && e.contains("--kafka-config"),
            "{e}"
        );
        let e = args(&["--kafka-config", "security.protocol=SASL_TLS"])
            .resolve()
            .unwrap_err();
        assert!(e.contains("security.protocol"), "{e}");
        let e = args(&["--kafka-config-file", "/nonexistent/client.properties"])
            .resolve()
            .unwrap_err();
        assert!(e.contains("cannot read KAFKA_CONFIG_FILE"), "{e}");
        assert!(Cli::try_parse_from(["x", "--kafka-config", "oops"]).is_err());
    }

    #[test]
    fn jaas_options_and_login_modules() {
        let o = jaas_options(r#"username="a b" password='c\'d' other=e"#).unwrap();
        assert_eq!(o["username"], "a b");
        assert_eq!(o["password"], "c'd");
        assert_eq!(o["other"], "e");
        let scram = jaas(
            "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"u\" password=\"p\";",
        )
        .unwrap();
        assert_eq!(scram[0], ("sasl.username".into(), "u".into()));
        assert!(
            jaas("com.sun.security.auth.module.Krb5LoginModule required;")
                .unwrap_err()
                .contains("Krb5LoginModule")
        );
        assert!(jaas("PlainLoginModule required username=\"u\";")
            .unwrap_err()
            .contains("password"));
    }

    #[test]
    fn secrets_are_never_shown() {
        let a = args(&[
            "--kafka-sasl-password",
            "hunter2",
            "--kafka-config",
            "ssl.key.password=hunter3",
        ]);
        let shown = format!("{a:?} {}", a.describe());
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
        assert!(is_secret("sasl.oauthbearer.config") && is_secret("sasl.jaas.config"));
        assert!(!is_secret("sasl.username"));
    }

    #[test]
    fn errors_that_no_retry_fixes_are_explained() {
        let who = "user app with mechanism SCRAM-SHA-512";
        let auth = explain(
            Some(RDKafkaErrorCode::Authentication),
            "SASL authentication error: Authentication failed",
            who,
            &Names::default(),
        )
        .unwrap();
        assert!(auth.starts_with("authentication failed for user app with mechanism SCRAM-SHA-512"));
        let tls = explain(
            Some(RDKafkaErrorCode::SSL),
            "SSL handshake failed: certificate verify failed",
            who,
            &Names::default(),
        )
        .unwrap();
        assert!(tls.contains("KAFKA_SSL_CA_LOCATION"));
        assert!(explain(
            Some(RDKafkaErrorCode::AllBrokersDown),
            "down",
            who,
            &Names::default()
        )
        .is_none());
        let group = explain(
            Some(RDKafkaErrorCode::GroupAuthorizationFailed),
            "FindCoordinator response error",
            who,
            &Names {
                group: Some("g1".into()),
                transactional_id: None,
            },
        )
        .unwrap();
        assert!(group.contains("lacks READ on consumer group g1"), "{group}");
    }
}
