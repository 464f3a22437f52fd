//! The compose files, the Dockerfile and `.env` as a user runs them (issue 20): the brokers' state
//! survives `down` then `up`, the image is built once and runs as the host user, everything
//! restarts, producer and processor get the time to stop cleanly, the broker keeps the seed's
//! retention and listens on loopback, the image ships stripped producer and processor only, `.env`
//! suits a local run, and the KRaft file runs the same pipeline on Kafka 4. This workplace has no
//! Docker engine, so these read the files (and run `docker-compose config` where it is installed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use clap::{CommandFactory, Parser};

const DEFAULT_FILE: &str = "docker-compose.yml";
const KRAFT_FILE: &str = "docker-compose.kraft.yml";
const CLUSTER_FILE: &str = "docker-compose.cluster.yml";
const COMPOSE_FILES: [&str; 3] = [DEFAULT_FILE, KRAFT_FILE, CLUSTER_FILE];
const DOCKERFILE: &str = "docker/Dockerfile";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

// ------------------------------------------------------------------------------------------------
// YAML, read by yaml-rust2 (a test-only dependency) into the shape these tests ask about: every
// scalar as the text compose would see (numbers and booleans as written, `null` and `~` empty),
// maps in the file's order.

#[derive(Debug, Clone, PartialEq)]
enum Yaml {
    Scalar(String),
    List(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    fn parse(text: &str) -> Yaml {
        let docs =
            yaml_rust2::YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}"));
        docs.first()
            .map(Yaml::from_node)
            .unwrap_or(Yaml::Map(Vec::new()))
    }

    fn from_node(node: &yaml_rust2::Yaml) -> Yaml {
        use yaml_rust2::Yaml as Node;
        match node {
            Node::Array(items) => Yaml::List(items.iter().map(Yaml::from_node).collect()),
            Node::Hash(entries) => Yaml::Map(
                entries
                    .iter()
                    .map(|(k, v)| (Yaml::scalar_text(k), Yaml::from_node(v)))
                    .collect(),
            ),
            scalar => Yaml::Scalar(Yaml::scalar_text(scalar)),
        }
    }

    fn scalar_text(node: &yaml_rust2::Yaml) -> String {
        use yaml_rust2::Yaml as Node;
        match node {
            Node::String(s) | Node::Real(s) => s.clone(),
            Node::Integer(i) => i.to_string(),
            Node::Boolean(b) => b.to_string(),
            Node::Null => String::new(),
            other => panic!("a key or scalar that is not one: {other:?}"),
        }
    }

    fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Yaml::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The entries of a map (none for anything else).
    fn entries(&self) -> &[(String, Yaml)] {
        match self {
            Yaml::Map(entries) => entries,
            _ => &[],
        }
    }

    /// The items of a list (none for anything else).
    fn items(&self) -> &[Yaml] {
        match self {
            Yaml::List(items) => items,
            _ => &[],
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Compose: services, variables, volumes.

struct Compose {
    file: &'static str,
    root: Yaml,
}

impl Compose {
    fn load(file: &'static str) -> Compose {
        Compose {
            file,
            root: Yaml::parse(&read(file)),
        }
    }

    fn all() -> Vec<Compose> {
        COMPOSE_FILES.into_iter().map(Compose::load).collect()
    }

    /// The Kafka nodes (brokers and controllers; not the one-shot kafka-init).
    fn kafka_nodes(&self) -> Vec<&str> {
        self.services()
            .iter()
            .filter(|(n, s)| {
                let image = s.get("image").and_then(Yaml::str).unwrap_or("");
                n != "kafka-init"
                    && (image.starts_with("apache/kafka")
                        || image.starts_with("confluentinc/cp-kafka"))
            })
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// The brokers clients reach from the host (the Kafka nodes that publish a port).
    fn external_brokers(&self) -> Vec<&str> {
        self.kafka_nodes()
            .into_iter()
            .filter(|n| self.service(n).get("ports").is_some())
            .collect()
    }

    /// What the app services set as KAFKA_BOOTSTRAP_SERVERS: the brokers' internal listeners.
    fn internal_bootstrap(&self) -> &'static str {
        if self.file == CLUSTER_FILE {
            "kafka-broker-1:19092,kafka-broker-2:19092,kafka-broker-3:19092"
        } else {
            "kafka:9092"
        }
    }

    /// The services that run the project's image (the producer builds it), profiles included.
    fn app_services(&self) -> Vec<&str> {
        let image = self.field("producer", "image");
        self.services()
            .iter()
            .filter(|(_, s)| s.get("image").and_then(Yaml::str) == Some(image))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    fn services(&self) -> &[(String, Yaml)] {
        self.root
            .get("services")
            .unwrap_or_else(|| panic!("{}: no services", self.file))
            .entries()
    }

    fn has_service(&self, name: &str) -> bool {
        self.services().iter().any(|(n, _)| n == name)
    }

    fn service(&self, name: &str) -> &Yaml {
        self.services()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("{}: no service {name}", self.file))
    }

    fn field(&self, service: &str, key: &str) -> &str {
        self.service(service)
            .get(key)
            .and_then(Yaml::str)
            .unwrap_or_else(|| panic!("{}: {service} has no {key}", self.file))
    }

    /// A service's `environment:`, in map or `NAME=value` list form.
    fn environment(&self, service: &str) -> BTreeMap<String, String> {
        match self.service(service).get("environment") {
            Some(Yaml::Map(entries)) => entries
                .iter()
                .map(|(k, v)| (k.clone(), v.str().unwrap_or_default().to_string()))
                .collect(),
            Some(Yaml::List(items)) => items
                .iter()
                .filter_map(|i| i.str()?.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    fn env(&self, service: &str, name: &str) -> String {
        self.environment(service)
            .remove(name)
            .unwrap_or_else(|| panic!("{}: {service} does not set {name}", self.file))
    }

    /// A service's mounts as (source, target), from the short (`src:target[:mode]`) or the long
    /// syntax.
    fn mounts(&self, service: &str) -> Vec<(String, String)> {
        let volumes = self.service(service).get("volumes");
        volumes
            .map(Yaml::items)
            .unwrap_or_default()
            .iter()
            .map(|v| match v {
                Yaml::Scalar(s) => {
                    let mut parts = s.splitn(3, ':');
                    let source = parts.next().unwrap_or_default().to_string();
                    let target = parts.next().unwrap_or_default().to_string();
                    (source, target)
                }
                long => (
                    long.get("source")
                        .and_then(Yaml::str)
                        .unwrap_or_default()
                        .to_string(),
                    long.get("target")
                        .and_then(Yaml::str)
                        .unwrap_or_default()
                        .to_string(),
                ),
            })
            .collect()
    }

    /// Mounts of named volumes (declared under the top-level `volumes:`): target -> volume.
    fn named_volume_mounts(&self, service: &str) -> BTreeMap<String, String> {
        let declared: BTreeSet<&str> = self
            .root
            .get("volumes")
            .map(Yaml::entries)
            .unwrap_or_default()
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        self.mounts(service)
            .into_iter()
            .filter(|(source, _)| declared.contains(source.as_str()))
            .map(|(source, target)| (target, source))
            .collect()
    }

    /// Every `${NAME...}` or `$NAME` the file interpolates (`$$` is a literal `$`).
    fn variables(&self) -> BTreeSet<String> {
        variables_in(&read(self.file))
    }
}

fn variables_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
            continue;
        }
        let name_part = rest.strip_prefix('{').unwrap_or(rest);
        let name: String = name_part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            names.insert(name);
        }
    }
    names
}

/// What compose makes of `${NAME:-default}`, `${NAME-default}`, `${NAME}`, `$NAME` and `$$`.
fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix('{') {
            let end = after.find('}').expect("an unclosed ${");
            let expr = &after[..end];
            rest = &after[end + 1..];
            let value = if let Some((name, default)) = expr.split_once(":-") {
                vars.get(name)
                    .filter(|v| !v.is_empty())
                    .map_or(default, String::as_str)
            } else if let Some((name, default)) = expr.split_once('-') {
                vars.get(name).map_or(default, String::as_str)
            } else {
                vars.get(expr).map_or("", String::as_str)
            };
            out.push_str(value);
        } else {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push_str(vars.get(&rest[..len]).map_or("", String::as_str));
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    out
}

/// `.env` as docker compose reads it, with `overrides` from the shell on top.
fn compose_vars(overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = dotenv().into_iter().collect();
    for (name, value) in overrides {
        vars.insert(name.to_string(), value.to_string());
    }
    vars
}

fn dotenv() -> Vec<(String, String)> {
    txn_core::settings::parse_dotenv(&read(".env")).expect(".env parses")
}

/// `NAME=` lines of .env, set or commented out (`# NAME=`), as config_tests reads them.
fn dotenv_names() -> BTreeSet<String> {
    read(".env")
        .lines()
        .filter_map(|l| {
            let (name, _) = l.trim_start_matches('#').trim().split_once('=')?;
            let plain = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            plain.then(|| name.to_string())
        })
        .collect()
}

/// First-column names of the README's configuration table, as config_tests reads them.
fn readme_table_names() -> BTreeSet<String> {
    let text = read("README.md");
    let section = text
        .split("## Configuration")
        .nth(1)
        .expect("a Configuration section");
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter_map(|l| {
            l.strip_prefix("| `")?
                .split_once('`')
                .map(|(n, _)| n.to_string())
        })
        .collect()
}

/// Variables the producer and the processor read through clap.
fn binary_env_names() -> BTreeSet<String> {
    [
        producer::ProducerConfig::command(),
        processor::ProcessorConfig::command(),
    ]
    .iter()
    .flat_map(|c| c.get_arguments().filter_map(|a| a.get_env()))
    .map(|e| e.to_string_lossy().into_owned())
    .collect()
}

/// Compose durations: `75s`, `1m30s`, `500ms`, `2h`.
fn compose_duration(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or_else(|| panic!("{text:?}: a number without unit"));
        let value: f64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("{text:?}: not a duration"));
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" => 1e-6,
            unit => panic!("{text:?}: unknown unit {unit:?}"),
        };
        total += Duration::from_secs_f64(value * seconds);
        rest = &rest[unit_len..];
    }
    total
}

// ------------------------------------------------------------------------------------------------
// Dockerfile: instructions with continuation lines joined, grouped by stage.

struct Instruction {
    keyword: String,
    args: String,
}

fn dockerfile_stages() -> Vec<Vec<Instruction>> {
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    let mut current = String::new();
    for line in read(DOCKERFILE).lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let text = std::mem::take(&mut current);
                let (keyword, args) = text.split_once(' ').unwrap_or((&text, ""));
                let keyword = keyword.to_ascii_uppercase();
                if keyword == "FROM" {
                    stages.push(Vec::new());
                }
                let stage = stages.last_mut().expect("FROM first");
                stage.push(Instruction {
                    keyword,
                    args: args.trim().to_string(),
                });
            }
        }
    }
    stages
}

/// A stage by its name (`FROM image AS name`).
fn dockerfile_stage(name: &str) -> Vec<Instruction> {
    dockerfile_stages()
        .into_iter()
        .find(|s| {
            let from = s[0].args.to_ascii_lowercase();
            from.ends_with(&format!(" as {name}"))
        })
        .unwrap_or_else(|| panic!("{DOCKERFILE}: no stage {name}"))
}

/// `ENV A=1 B=2` values of a stage.
fn stage_env(stage: &[Instruction]) -> BTreeMap<String, String> {
    stage
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| i.args.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// Whether .dockerignore leaves `path` in the build context: the last pattern that matches the
/// path or one of its parent folders decides, as in Docker.
fn in_build_context(path: &str, dockerignore: &str) -> bool {
    let mut included = true;
    for line in dockerignore.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (exception, pattern) = match line.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, line),
        };
        let pattern: Vec<&str> = pattern.trim_matches('/').split('/').collect();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let matches = (1..=parts.len()).any(|n| glob_parts(&pattern, &parts[..n]));
        if matches {
            included = exception;
        }
    }
    included
}

fn glob_parts(pattern: &[&str], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(&"**"), _) => {
            glob_parts(&pattern[1..], path) || (!path.is_empty() && glob_parts(pattern, &path[1..]))
        }
        (Some(p), Some(s)) => {
            glob(p.as_bytes(), s.as_bytes()) && glob_parts(&pattern[1..], &path[1..])
        }
        _ => false,
    }
}

/// `*` and `?` within one path component.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) => p == t && glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

// ------------------------------------------------------------------------------------------------
// 1. State survives `down` then `up`.

#[test]
fn zookeeper_keeps_its_data_and_log_in_named_volumes() {
    let compose = Compose::load(DEFAULT_FILE);
    let named = compose.named_volume_mounts("zookeeper");
    for target in ["/var/lib/zookeeper/data", "/var/lib/zookeeper/log"] {
        assert!(
            named.contains_key(target),
            "{target} is not in a named volume (the image's anonymous volume is not reattached \
             after `down`): {named:?}"
        );
    }
}

#[test]
fn each_broker_keeps_its_log_in_a_named_volume_of_its_own() {
    let mut volumes = BTreeMap::new();
    for compose in Compose::all() {
        let nodes = compose.kafka_nodes();
        assert!(!nodes.is_empty(), "{}", compose.file);
        for node in nodes {
            let image = compose.field(node, "image");
            let log_dir = match compose.environment(node).get("KAFKA_LOG_DIRS") {
                Some(dir) => dir.clone(),
                // cp-kafka's default; apache/kafka's (/tmp/kraft-combined-logs) is no place for data.
                None if image.starts_with("confluentinc/cp-kafka") => "/var/lib/kafka/data".into(),
                None => panic!("{}: {node}: {image} needs KAFKA_LOG_DIRS", compose.file),
            };
            let named = compose.named_volume_mounts(node);
            let volume = named.get(&log_dir).unwrap_or_else(|| {
                panic!(
                    "{}: {node}'s log dir {log_dir} is not in a named volume: {named:?}",
                    compose.file
                )
            });
            volumes.insert((compose.file, node.to_string()), volume.clone());
        }
    }
    // One project name for every file: a ZooKeeper-mode log dir must not be handed to KRaft, nor
    // one node's to another.
    assert_eq!(
        volumes.values().collect::<BTreeSet<_>>().len(),
        volumes.len(),
        "the brokers share a volume: {volumes:?}"
    );
}

// 2. One image, built once.

#[test]
fn the_image_is_built_by_the_producer_service_only_and_reused_by_the_processor() {
    for compose in Compose::all() {
        let builders: Vec<&str> = compose
            .services()
            .iter()
            .filter(|(_, s)| s.get("build").is_some())
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(
            builders,
            ["producer"],
            "{}: services that build",
            compose.file
        );
        let image = compose.field("producer", "image");
        let users: Vec<&str> = compose
            .services()
            .iter()
            .filter(|(n, s)| n != "producer" && s.get("image").and_then(Yaml::str) == Some(image))
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(
            users.first(),
            Some(&"processor"),
            "{}: other services on {image}",
            compose.file
        );
        let position = |name: &str| compose.services().iter().position(|(n, _)| n == name);
        for user in &users {
            // Compose v2 builds before it creates any container; `never` keeps it from pulling
            // an image that exists nowhere but here. Compose v1 builds in file order: builder
            // first.
            assert_eq!(
                compose.field(user, "pull_policy"),
                "never",
                "{}: {user}",
                compose.file
            );
            assert!(
                position("producer") < position(user),
                "{}: the producer (which builds) must come before {user}",
                compose.file
            );
        }
        let build = compose.service("producer").get("build").unwrap();
        let (context, dockerfile) = match build {
            Yaml::Scalar(context) => (context.as_str(), "Dockerfile"),
            map => (
                map.get("context").and_then(Yaml::str).unwrap_or("."),
                map.get("dockerfile")
                    .and_then(Yaml::str)
                    .unwrap_or("Dockerfile"),
            ),
        };
        assert!(
            repo().join(context).join(dockerfile).is_file(),
            "{}: {context}/{dockerfile} does not exist",
            compose.file
        );
    }
}

// 3. The host user.

#[test]
fn producer_and_processor_run_as_the_user_app_uid_and_app_gid_name() {
    for compose in Compose::all() {
        let services = compose.app_services();
        assert!(services.len() >= 2, "{}: {services:?}", compose.file);
        for service in services {
            let user = compose.field(service, "user");
            assert_eq!(
                interpolate(
                    user,
                    &compose_vars(&[("APP_UID", "1234"), ("APP_GID", "5678")])
                ),
                "1234:5678",
                "{}: {service} does not run as APP_UID:APP_GID ({user:?})",
                compose.file
            );
            assert_eq!(
                interpolate(user, &compose_vars(&[("APP_UID", ""), ("APP_GID", "")])),
                "1000:1000",
                "{}: {service}'s default user is the image's (uid 1000)",
                compose.file
            );
        }
    }
}

#[test]
fn the_image_runs_as_any_uid_without_a_home_and_can_write_its_default_output() {
    let runtime = dockerfile_stage("runtime");
    let workdir = runtime
        .iter()
        .rev()
        .find(|i| i.keyword == "WORKDIR")
        .map(|i| i.args.as_str())
        .unwrap_or("/");
    assert!(
        !workdir.starts_with("/home"),
        "WORKDIR {workdir} is a home folder, owned by one uid"
    );
    let world_writable = runtime
        .iter()
        .filter(|i| i.keyword == "RUN")
        .flat_map(|i| i.args.split("&&"))
        .any(|command| {
            let words: Vec<&str> = command.split_whitespace().collect();
            words.first() == Some(&"chmod")
                && words.contains(&"/data/output")
                && words.get(1).is_some_and(|mode| {
                    let symbolic_for_all = mode.starts_with("a+") || mode.starts_with("o+");
                    mode.ends_with("777") || (symbolic_for_all && mode.contains('w'))
                })
        });
    assert!(
        world_writable,
        "/data/output must be writable by any uid (chmod 1777) in the runtime stage"
    );
}

// 4. Restarts and stop grace periods.

#[test]
fn every_long_running_service_restarts_unless_stopped() {
    for compose in Compose::all() {
        let mut long_running = Vec::new();
        for (name, service) in compose.services() {
            let restart = service.get("restart").and_then(Yaml::str).unwrap_or("no");
            if name.ends_with("-init") {
                assert_eq!(restart, "no", "{}: {name} runs once", compose.file);
                continue;
            }
            assert!(
                restart == "unless-stopped" || restart == "always",
                "{}: {name} has restart {restart:?}: after a reboot it stays down",
                compose.file
            );
            long_running.push(name.as_str());
        }
        for name in ["producer", "processor"]
            .into_iter()
            .chain(compose.kafka_nodes())
        {
            assert!(long_running.contains(&name), "{}: no {name}", compose.file);
        }
        for name in [
            "events-producer",
            "events-processor",
            "fraud-producer",
            "fraud-processor",
        ] {
            assert!(
                !compose.has_service(name) || long_running.contains(&name),
                "{}: {name} does not restart",
                compose.file
            );
        }
    }
    assert!(Compose::load(DEFAULT_FILE).has_service("zookeeper"));
}

/// The longest a producer stop can take, read from the producer's code: the wait for room in a
/// full queue after a stop request, then the flush.
fn producer_stop_bound() -> Duration {
    let source = read("crates/producer/src/lib.rs");
    let seconds_on = |what: &str, line_has: &[&str]| -> u64 {
        let line = source
            .lines()
            .find(|l| line_has.iter().all(|p| l.contains(p)))
            .unwrap_or_else(|| {
                panic!("the producer's {what} is no longer where this test reads it")
            });
        let (_, after) = line.split_once("Duration::from_secs(").unwrap();
        after[..after.find(')').unwrap()].parse().unwrap()
    };
    // The wait for answers: the delivery timeout's default, plus a margin.
    let timeout_line = source
        .lines()
        .find(|l| l.contains("env = \"PRODUCER_DELIVERY_TIMEOUT\""))
        .expect("the producer's PRODUCER_DELIVERY_TIMEOUT setting");
    let default = timeout_line
        .split("default_value = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a default delivery timeout");
    let delivery = txn_core::duration::parse_duration(default)
        .unwrap()
        .as_secs();
    let flush = delivery
        + seconds_on(
            "margin after the delivery timeout",
            &["config.delivery_timeout + Duration::from_secs("],
        );
    let full_queue = seconds_on(
        "full-queue wait after a stop",
        &["stop.load", "elapsed() > Duration::from_secs("],
    );
    Duration::from_secs(flush + full_queue)
}

#[test]
fn producer_and_processor_are_given_longer_to_stop_than_their_flush_and_commit() {
    let producer_bound = producer_stop_bound();
    // The processor finishes and commits the batch in flight (5000 offsets by default); a minute,
    // as it always had, leaves room for a slow disk and for reads that time out during an outage.
    let processor_bound = Duration::from_secs(60);
    for compose in Compose::all() {
        let grace = |service: &str| compose_duration(compose.field(service, "stop_grace_period"));
        assert!(
            grace("producer") > producer_bound,
            "{}: the producer's grace period {:?} is not longer than its flush ({producer_bound:?})",
            compose.file,
            grace("producer")
        );
        assert!(
            grace("processor") >= processor_bound,
            "{}: the processor's grace period {:?} is shorter than {processor_bound:?}",
            compose.file,
            grace("processor")
        );
        for (service, bound) in [
            ("events-producer", producer_bound),
            ("events-processor", processor_bound),
            ("fraud-producer", producer_bound),
            ("fraud-processor", processor_bound),
        ] {
            if compose.has_service(service) {
                assert!(grace(service) >= bound, "{}: {service}", compose.file);
            }
        }
    }
}

// 5. The seed's versions, retention and project name.

#[test]
fn zookeeper_and_kafka_run_confluent_7_9_3_as_in_the_seed() {
    let compose = Compose::load(DEFAULT_FILE);
    for service in ["zookeeper", "kafka", "kafka-init"] {
        let image = compose.field(service, "image");
        assert!(
            image.starts_with("confluentinc/cp-") && image.ends_with(":7.9.3"),
            "{service}: {image}"
        );
    }
}

#[test]
fn the_broker_keeps_four_hours_or_256_mib_per_partition_and_rolls_segments_for_it() {
    for compose in Compose::all() {
        for broker in compose.external_brokers() {
            let env = compose.environment(broker);
            let get = |name: &str| -> u64 {
                env.get(name)
                    .unwrap_or_else(|| panic!("{}: {broker} does not set {name}", compose.file))
                    .parse()
                    .unwrap()
            };
            // Seed 000's broker: 4 hours or 256 MiB; seeds 003/004's topics: 7 days (1 GiB).
            let (hours, bytes) = if compose.file == CLUSTER_FILE {
                (168, 1 << 30)
            } else {
                (4, 256 << 20)
            };
            assert_eq!(get("KAFKA_LOG_RETENTION_HOURS"), hours, "{}", compose.file);
            assert_eq!(get("KAFKA_LOG_RETENTION_BYTES"), bytes, "{}", compose.file);
            // Only closed segments are deleted: with Kafka's 1 GiB / 7-day segments a steady stream
            // would keep everything for a week whatever the retention says.
            assert!(
                get("KAFKA_LOG_SEGMENT_BYTES") < get("KAFKA_LOG_RETENTION_BYTES"),
                "{}: segments as large as the retention are never deleted by size",
                compose.file
            );
            assert!(
                get("KAFKA_LOG_ROLL_HOURS") < get("KAFKA_LOG_RETENTION_HOURS"),
                "{}: segments must roll before they are due for deletion",
                compose.file
            );
        }
    }
}

#[test]
fn dotenv_names_the_compose_project_as_the_seed_did() {
    let project = dotenv()
        .into_iter()
        .find(|(name, _)| name == "COMPOSE_PROJECT_NAME")
        .map(|(_, value)| value);
    // The seed's volumes were spark_kafka_pipeline_kafka-data and so on.
    assert_eq!(project.as_deref(), Some("spark_kafka_pipeline"));
}

// 6. The broker's external port.

#[test]
fn the_external_port_is_on_loopback_unless_kafka_external_bind_says_otherwise() {
    for compose in Compose::all() {
        for (name, service) in compose.services() {
            if [
                "prometheus",
                "grafana",
                "s3",
                "cassandra",
                "schema-registry",
            ]
            .contains(&name.as_str())
            {
                for port in service.get("ports").expect("its web port").items() {
                    let Yaml::Scalar(port) = port else {
                        panic!("{}: {name}: {port:?}", compose.file)
                    };
                    assert!(
                        port.starts_with("127.0.0.1:"),
                        "{}: {name} is published on this machine only: {port}",
                        compose.file
                    );
                }
            } else if !compose.external_brokers().contains(&name.as_str()) {
                assert!(
                    service.get("ports").is_none(),
                    "{}: {name} publishes ports",
                    compose.file
                );
            }
        }
        // One broker on 9094 (seed 000's), or the seeds 003/004 cluster's three.
        let expected: &[&str] = if compose.file == CLUSTER_FILE {
            &["29092", "39092", "49092"]
        } else {
            &["9094"]
        };
        let brokers = compose.external_brokers();
        assert_eq!(
            brokers.len(),
            expected.len(),
            "{}: {brokers:?}",
            compose.file
        );
        for (broker, p) in brokers.into_iter().zip(expected) {
            let ports = compose.service(broker).get("ports").unwrap();
            let [Yaml::Scalar(port)] = ports.items() else {
                panic!(
                    "{}: {broker} should publish one port: {ports:?}",
                    compose.file
                );
            };
            assert_eq!(
                interpolate(port, &compose_vars(&[])),
                format!("127.0.0.1:{p}:{p}"),
                "{}: by default only this machine reaches {broker}",
                compose.file
            );
            assert_eq!(
                interpolate(port, &compose_vars(&[("KAFKA_EXTERNAL_BIND", "0.0.0.0")])),
                format!("0.0.0.0:{p}:{p}"),
                "{}: KAFKA_EXTERNAL_BIND chooses the interface",
                compose.file
            );
            let advertised = compose.env(broker, "KAFKA_ADVERTISED_LISTENERS");
            assert!(
                interpolate(&advertised, &compose_vars(&[]))
                    .contains(&format!("EXTERNAL://localhost:{p}")),
                "{}: {advertised}",
                compose.file
            );
            let elsewhere = compose_vars(&[("KAFKA_EXTERNAL_HOST", "broker.example")]);
            assert!(
                interpolate(&advertised, &elsewhere)
                    .contains(&format!("EXTERNAL://broker.example:{p}")),
                "{}: KAFKA_EXTERNAL_HOST names the host clients reach: {advertised}",
                compose.file
            );
        }
    }
}

// 7. What the image ships.

#[test]
fn the_image_ships_only_the_producer_and_the_processor_stripped() {
    let runtime = dockerfile_stage("runtime");
    let shipped: BTreeSet<&str> = runtime
        .iter()
        .filter(|i| i.keyword == "COPY" && i.args.starts_with("--from="))
        .flat_map(|i| {
            let words: Vec<&str> = i.args.split_whitespace().skip(1).collect();
            words[..words.len() - 1].to_vec()
        })
        .map(|source| source.rsplit('/').next().unwrap_or(source))
        .collect();
    assert_eq!(shipped, BTreeSet::from(["producer", "processor"]));

    let builder = dockerfile_stage("builder");
    for build in builder
        .iter()
        .filter(|i| i.keyword == "RUN")
        .flat_map(|i| i.args.split("&&"))
        .filter(|c| c.contains("cargo build"))
    {
        assert!(
            !build.contains("--workspace") && !build.contains("pipeline"),
            "builds more than compose runs: {build}"
        );
    }
    let env = stage_env(&builder);
    let strip = env.get("CARGO_PROFILE_RELEASE_STRIP").map(String::as_str);
    let stripped_by_tool = builder
        .iter()
        .any(|i| i.keyword == "RUN" && i.args.contains("strip ") && i.args.contains("producer"));
    assert!(
        matches!(strip, Some("symbols" | "true")) || stripped_by_tool,
        "the binaries are not stripped (CARGO_PROFILE_RELEASE_STRIP={strip:?})"
    );
}

#[test]
fn the_build_context_holds_what_the_dockerfile_copies() {
    let dockerignore = read(".dockerignore");
    for stage in dockerfile_stages() {
        for copy in stage
            .iter()
            .filter(|i| i.keyword == "COPY" || i.keyword == "ADD")
        {
            if copy.args.starts_with("--from=") {
                continue;
            }
            let words: Vec<&str> = copy
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            for source in &words[..words.len() - 1] {
                assert!(
                    in_build_context(source, &dockerignore),
                    ".dockerignore leaves {source} out of the build context"
                );
            }
        }
    }
    for private in [
        ".env",
        "data/output/parquet/bronze/x.parquet",
        "target/release/processor",
    ] {
        assert!(
            !in_build_context(private, &dockerignore),
            "{private} is sent to the builder"
        );
    }
}

// 8. `.env` is for a local run; the containers' values are in the compose files.

#[test]
fn dotenv_holds_values_for_a_local_run_and_compose_sets_the_containers_own() {
    let dotenv: BTreeMap<String, String> = dotenv().into_iter().collect();
    assert_eq!(
        dotenv.get("KAFKA_BOOTSTRAP_SERVERS").map(String::as_str),
        Some("localhost:9094")
    );
    let output = dotenv.get("OUTPUT_PATH").expect("OUTPUT_PATH in .env");
    assert!(
        !output.starts_with('/'),
        ".env's OUTPUT_PATH is a container path: {output}"
    );
    for name in ["SPARK_CHECKPOINT_DIR", "CHECKPOINT_DIR"] {
        assert!(
            dotenv.get(name).is_none_or(|v| v.is_empty()),
            ".env sets {name}: the checkpoint would not follow OUTPUT_PATH"
        );
    }
    for (name, value) in &dotenv {
        assert!(
            !value.starts_with("/data") && !value.contains("kafka:9092"),
            ".env's {name}={value} is for the containers only"
        );
    }

    for compose in Compose::all() {
        for service in compose.app_services() {
            assert_eq!(
                compose.env(service, "KAFKA_BOOTSTRAP_SERVERS"),
                compose.internal_bootstrap(),
                "{}: {service}",
                compose.file
            );
        }
        let processors: Vec<&str> = compose
            .app_services()
            .into_iter()
            .filter(|s| s.ends_with("processor"))
            .collect();
        assert!(processors.contains(&"processor"), "{processors:?}");
        for service in processors {
            let env = compose.environment(service);
            let output = compose.env(service, "OUTPUT_PATH");
            // `_chk`, or `_chk_<dataset>` for another dataset: under OUTPUT_PATH either way.
            let checkpoint = env
                .get("CHECKPOINT_DIR")
                .or_else(|| env.get("SPARK_CHECKPOINT_DIR"))
                .cloned()
                .unwrap_or_else(|| format!("{output}/_chk"));
            let mounts = compose.mounts(service);
            // A processor writing to object storage keeps its checkpoint there too.
            if output.starts_with("s3://") {
                assert!(
                    checkpoint.starts_with(&output),
                    "{}: {service}'s checkpoint {checkpoint} is not beside its output {output}",
                    compose.file
                );
                continue;
            }
            let local = output.clone();
            let (source, target) = mounts
                .iter()
                .find(|(_, target)| local.starts_with(&format!("{target}/")))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: {service}'s OUTPUT_PATH {local} is in no mount: {mounts:?}",
                        compose.file
                    )
                });
            assert!(
                source.starts_with("./"),
                "{}: {service}'s output goes to {source}, not to a folder of the host",
                compose.file
            );
            assert!(
                checkpoint.starts_with(&format!("{target}/")),
                "{}: {service}'s checkpoint {checkpoint} is outside the output mount",
                compose.file
            );
        }
    }
}

/// The processor's settings as when run from the repository root with `environment` set: the
/// environment, then `.env` (empty values are unset), then the defaults.
fn processor_config_from_the_repository_root(
    environment: &[(&str, &str)],
) -> processor::ProcessorConfig {
    let mut values: BTreeMap<String, String> = dotenv()
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    for (name, value) in environment {
        values.insert(name.to_string(), value.to_string());
    }
    let mut args = vec!["processor".to_string()];
    for arg in processor::ProcessorConfig::command().get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        if let Some(value) = values.get(&*env.to_string_lossy()) {
            args.push(format!("--{long}={value}"));
        }
    }
    processor::ProcessorConfig::try_parse_from(args.iter())
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn a_processor_run_from_the_repository_root_keeps_its_checkpoint_under_its_own_output() {
    let config = processor_config_from_the_repository_root(&[("OUTPUT_PATH", "/tmp/x")]);
    assert_eq!(
        config.checkpoint_path(),
        PathBuf::from("/tmp/x/_chk").into()
    );

    let config = processor_config_from_the_repository_root(&[]);
    let output = config.output_path.local().expect("a local output");
    assert!(output.is_relative(), "{output:?}");
    assert_eq!(config.checkpoint_path(), output.join("_chk").into());
    assert_eq!(config.kafka.resolve().unwrap().bootstrap, "localhost:9094");
}

// 9. The KRaft alternative; ZooKeeper stays the default.

#[test]
fn zookeeper_and_kafka_stay_the_default() {
    let compose = Compose::load(DEFAULT_FILE);
    assert!(compose.has_service("zookeeper"));
    let env = compose.environment("kafka");
    assert_eq!(
        env.get("KAFKA_ZOOKEEPER_CONNECT").map(String::as_str),
        Some("zookeeper:2181")
    );
    assert!(!env.contains_key("KAFKA_PROCESS_ROLES"));
}

#[test]
fn the_kraft_file_runs_one_kafka_4_node_as_broker_and_controller_without_zookeeper() {
    let compose = Compose::load(KRAFT_FILE);
    assert!(!compose.has_service("zookeeper"));
    for (name, _) in compose.services() {
        let env = compose.environment(name);
        assert!(
            env.keys().all(|k| !k.contains("ZOOKEEPER")),
            "{name} is configured for ZooKeeper: {env:?}"
        );
    }
    let image = compose.field("kafka", "image");
    assert!(image.starts_with("apache/kafka:4."), "{image}");
    assert_eq!(compose.field("kafka-init", "image"), image);

    let env = compose.environment("kafka");
    let get = |name: &str| {
        env.get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("kafka does not set {name}"))
    };
    let roles: BTreeSet<&str> = get("KAFKA_PROCESS_ROLES").split(',').collect();
    assert_eq!(roles, BTreeSet::from(["broker", "controller"]));
    let voters: Vec<&str> = get("KAFKA_CONTROLLER_QUORUM_VOTERS").split(',').collect();
    assert_eq!(voters.len(), 1, "{voters:?}");
    assert!(voters[0].starts_with(&format!("{}@", get("KAFKA_NODE_ID"))));
    assert!(!get("CLUSTER_ID").is_empty());
    // One node: every internal topic with one replica, or groups and transactions hang.
    for name in [
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
    ] {
        assert_eq!(get(name), "1", "{name}");
    }
}

#[test]
fn the_kraft_file_runs_the_same_producer_and_processor() {
    let default = Compose::load(DEFAULT_FILE);
    let kraft = Compose::load(KRAFT_FILE);
    for service in ["producer", "processor"] {
        assert_eq!(
            default.service(service),
            kraft.service(service),
            "{service} differs between {DEFAULT_FILE} and {KRAFT_FILE}"
        );
    }
}

// Every file and variable.

/// `docker-compose` (v1, Debian's) or `docker compose` (v2), whichever answers.
fn compose_command() -> Option<&'static [&'static str]> {
    const CANDIDATES: [&[&str]; 2] = [&["docker-compose"], &["docker", "compose"]];
    CANDIDATES.into_iter().find(|cmd| {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn every_compose_file_and_profile_passes_docker_compose_config() {
    let Some(cmd) = compose_command() else {
        // CI installs docker-compose (.ci/run); elsewhere the check needs it on the PATH.
        assert!(
            std::env::var_os("CI").is_none(),
            "docker-compose is not installed"
        );
        eprintln!("SKIPPED: neither docker-compose nor docker compose is installed");
        return;
    };
    for compose in Compose::all() {
        let profiles: BTreeSet<String> = compose
            .services()
            .iter()
            .flat_map(|(_, s)| s.get("profiles").map(Yaml::items).unwrap_or_default())
            .filter_map(|p| p.str().map(str::to_string))
            .collect();
        let runs = std::iter::once(None).chain(profiles.iter().map(Some));
        for profile in runs {
            let mut command = Command::new(cmd[0]);
            command
                .args(&cmd[1..])
                .current_dir(repo())
                .args(["-f", compose.file]);
            if let Some(profile) = profile {
                command.args(["--profile", profile.as_str()]);
            }
            let output = command.args(["config", "-q"]).output().unwrap();
            assert!(
                output.status.success(),
                "{cmd:?} -f {} config (profile {profile:?}): {}",
                compose.file,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

#[test]
fn every_variable_compose_reads_is_in_dotenv_and_the_readme() {
    let mut used: BTreeSet<String> = Compose::all().iter().flat_map(Compose::variables).collect();
    for name in [
        "APP_UID",
        "APP_GID",
        "KAFKA_EXTERNAL_BIND",
        "KAFKA_EXTERNAL_HOST",
    ] {
        assert!(used.contains(name), "the compose files do not use {name}");
    }
    // Read by compose itself, not interpolated.
    used.insert("COMPOSE_PROJECT_NAME".into());
    let (dotenv, readme) = (dotenv_names(), readme_table_names());
    let missing = |names: &BTreeSet<String>| used.difference(names).cloned().collect::<Vec<_>>();
    assert_eq!(missing(&dotenv), Vec::<String>::new(), "not in .env");
    assert_eq!(
        missing(&readme),
        Vec::<String>::new(),
        "not in the README's table"
    );
    // config_tests lets exactly these through as read by compose and not by the binaries.
    let compose_only: BTreeSet<String> = used.difference(&binary_env_names()).cloned().collect();
    let allowed: BTreeSet<String> = crate::config_tests::COMPOSE_ONLY
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(compose_only, allowed);
}

#[test]
fn the_readme_tells_how_to_stop_restart_start_clean_choose_the_user_and_run_kraft() {
    let readme = read("README.md");
    let section = readme
        .split("## Quick start with Docker")
        .nth(1)
        .expect("a Quick start with Docker section");
    let section = section.split("\n## ").next().unwrap_or_default();
    for needle in [
        "docker compose up -d --build",
        "docker compose stop",
        "docker compose down",
        "docker compose down -v",
        "docker compose restart",
        "APP_UID=$(id -u)",
        "APP_GID=$(id -g)",
        "KAFKA_EXTERNAL_BIND",
        KRAFT_FILE,
    ] {
        assert!(
            section.contains(needle),
            "the Docker quick start does not mention {needle}"
        );
    }
}

// The readers above, on made-up input: a reader that reads nothing would pass the tests above
// vacuously only where they look for absence.

#[test]
fn the_readers_read_the_forms_the_compose_files_use() {
    let yaml = Yaml::parse(
        "a:\n  b: \"x # y\" # comment\n  c: [\"p\", q]\n  d:\n  - one\n  - k: v\n    l: w\n  e: >-\n    folded\n    text\n  f: 'it''s'\nz:\n",
    );
    let a = yaml.get("a").unwrap();
    assert_eq!(a.get("b").and_then(Yaml::str), Some("x # y"));
    assert_eq!(
        a.get("c").unwrap().items(),
        [Yaml::Scalar("p".into()), Yaml::Scalar("q".into())]
    );
    let d = a.get("d").unwrap().items();
    assert_eq!(d[0], Yaml::Scalar("one".into()));
    assert_eq!(d[1].get("l").and_then(Yaml::str), Some("w"));
    assert_eq!(a.get("e").and_then(Yaml::str), Some("folded text"));
    assert_eq!(a.get("f").and_then(Yaml::str), Some("it's"));
    assert_eq!(yaml.get("z"), Some(&Yaml::Scalar(String::new())));

    let vars = BTreeMap::from([
        ("A".to_string(), "1".to_string()),
        ("E".into(), String::new()),
    ]);
    assert_eq!(
        interpolate("${A:-9}:${B:-2}:${E:-3}:${E-4}:$A:$$A", &vars),
        "1:2:3::1:$A"
    );
    assert_eq!(
        variables_in("${A:-9} $$B $C"),
        BTreeSet::from(["A".to_string(), "C".to_string()])
    );
    assert_eq!(compose_duration("1m15s"), Duration::from_secs(75));
    assert!(in_build_context(
        "crates/x/Cargo.toml",
        "*\n!crates/\n**/target/"
    ));
    assert!(!in_build_context(
        "crates/x/target/y",
        "*\n!crates/\n**/target/"
    ));
    assert!(!in_build_context(".env", "*\n!crates/"));
}

#[test]
fn the_events_profile_runs_seed_001_on_its_own_topic_group_and_folders() {
    let compose = Compose::load(DEFAULT_FILE);
    for service in ["events-producer", "events-processor"] {
        let s = compose.service(service);
        let profiles: Vec<&str> = s
            .get("profiles")
            .map(Yaml::items)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.str())
            .collect();
        assert_eq!(
            profiles,
            ["events"],
            "{service}: only in the events profile"
        );
        let env = s.get("environment").unwrap();
        let var = |name: &str| env.get(name).and_then(Yaml::str).unwrap_or_default();
        assert_eq!(var("DATASET"), "events", "{service}");
        // .env's KAFKA_TOPIC is the transactions': the service must set its own.
        assert_eq!(var("KAFKA_TOPIC"), "events", "{service}");
    }
    let processor = compose
        .service("events-processor")
        .get("environment")
        .unwrap();
    assert_eq!(
        processor.get("KAFKA_GROUP_ID").and_then(Yaml::str),
        Some("events-processor"),
        "a group of its own"
    );
    assert_eq!(
        processor.get("STARTING_OFFSETS").and_then(Yaml::str),
        Some("earliest"),
        "as the seed"
    );
    let init = compose.service("kafka-init").get("command").unwrap();
    let script: String = init.items().iter().filter_map(|c| c.str()).collect();
    assert!(
        script.contains("events") && script.contains("--create"),
        "kafka-init creates the events topic: {script}"
    );
}

#[test]
fn the_fraud_profile_runs_a_realistic_producer_and_a_processor_with_the_rules_on_their_own_topic() {
    let compose = Compose::load(DEFAULT_FILE);
    let env = |service: &str, name: &str| -> String {
        compose
            .service(service)
            .get("environment")
            .and_then(|e| e.get(name))
            .and_then(Yaml::str)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(env("fraud-producer", "PRODUCER_PROFILE"), "realistic");
    assert!(
        env("fraud-producer", "PRODUCER_FRAUD_RATIO")
            .parse::<f64>()
            .unwrap()
            > 0.0
    );
    assert_eq!(env("fraud-processor", "FRAUD_DETECTION"), "true");
    let topic = env("fraud-producer", "KAFKA_TOPIC");
    assert_eq!(
        env("fraud-processor", "KAFKA_TOPIC"),
        topic,
        "the processor reads the producer's topic"
    );
    assert_ne!(topic, "transactions", "apart from the default producer's");
    assert_ne!(
        env("fraud-processor", "KAFKA_GROUP_ID"),
        "transactions-processor"
    );
    assert_ne!(
        env("fraud-processor", "OUTPUT_PATH"),
        "/data/output/parquet"
    );
    let init = compose.service("kafka-init").get("command").unwrap();
    let script: String = init.items().iter().filter_map(|c| c.str()).collect();
    let alerts = env("fraud-processor", "FRAUD_ALERTS_TOPIC");
    for t in [topic.as_str(), alerts.as_str()] {
        assert!(
            script.contains(t),
            "kafka-init creates {t} (the broker does not auto-create): {script}"
        );
    }
}

#[test]
fn the_monitoring_profile_is_the_same_in_every_compose_file() {
    let zk = Compose::load(DEFAULT_FILE);
    for other in [KRAFT_FILE, CLUSTER_FILE].map(Compose::load) {
        for service in ["prometheus", "grafana"] {
            assert!(other.has_service(service), "{} has {service}", other.file);
            assert_eq!(
                other.service(service),
                zk.service(service),
                "{service} differs between {DEFAULT_FILE} and {}",
                other.file
            );
        }
    }
}

#[test]
fn the_cluster_file_runs_three_controllers_three_brokers_and_the_financial_pipeline() {
    let compose = Compose::load(CLUSTER_FILE);
    let nodes = compose.kafka_nodes();
    let role = |n: &str| compose.env(n, "KAFKA_PROCESS_ROLES");
    let controllers: Vec<&str> = nodes
        .iter()
        .copied()
        .filter(|n| role(n) == "controller")
        .collect();
    let brokers: Vec<&str> = nodes
        .iter()
        .copied()
        .filter(|n| role(n) == "broker")
        .collect();
    assert_eq!(controllers.len(), 3, "{nodes:?}");
    assert_eq!(brokers.len(), 3, "{nodes:?}");
    assert_eq!(brokers, compose.external_brokers());
    let ids: BTreeSet<String> = nodes
        .iter()
        .map(|n| compose.env(n, "KAFKA_NODE_ID"))
        .collect();
    assert_eq!(ids.len(), 6, "node ids are unique: {ids:?}");
    let voters = compose.env(controllers[0], "KAFKA_CONTROLLER_QUORUM_VOTERS");
    for n in &nodes {
        assert_eq!(
            compose.env(n, "KAFKA_CONTROLLER_QUORUM_VOTERS"),
            voters,
            "{n}"
        );
        assert_eq!(
            compose.env(n, "CLUSTER_ID"),
            compose.env(controllers[0], "CLUSTER_ID")
        );
        assert!(
            compose.field(n, "image").starts_with("apache/kafka:4."),
            "{n}"
        );
    }
    for c in &controllers {
        assert!(voters.contains(&format!("@{c}:9093")), "{voters} names {c}");
    }
    for b in &brokers {
        let env = compose.environment(b);
        for (name, value) in [
            ("KAFKA_DEFAULT_REPLICATION_FACTOR", "3"),
            ("KAFKA_MIN_INSYNC_REPLICAS", "2"),
            ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3"),
            ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "3"),
            ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "2"),
            ("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false"),
        ] {
            assert_eq!(
                env.get(name).map(String::as_str),
                Some(value),
                "{b}: {name}"
            );
        }
        assert!(
            compose.internal_bootstrap().contains(&format!("{b}:19092")),
            "the apps reach {b}"
        );
    }
    // kafka-init: the seeds' three topics, 3 replicas, 2 in sync.
    let init = compose
        .service("kafka-init")
        .get("command")
        .unwrap()
        .items()[0]
        .str()
        .unwrap()
        .to_string();
    for topic in [
        "financial_transactions:5",
        "transaction_aggregates:3",
        "transaction_anomalies:3",
    ] {
        assert!(init.contains(topic), "kafka-init creates {topic}: {init}");
    }
    assert!(init.contains("--replication-factor 3") && init.contains("min.insync.replicas=2"));
    // The producer and processor run the financial dataset, whose topics kafka-init creates.
    for app in ["producer", "processor"] {
        assert_eq!(compose.env(app, "DATASET"), "financial", "{app}");
    }
    let defaults = txn_core::settings::dataset_defaults(txn_core::Dataset::Financial);
    assert!(defaults.contains(&("KAFKA_TOPIC", "financial_transactions")));
}

#[test]
fn prometheus_scrapes_every_service_that_serves_metrics() {
    let config = read("monitoring/prometheus.yml");
    let config = Yaml::parse(&config);
    let jobs = config.get("scrape_configs").map(Yaml::items).unwrap_or(&[]);
    assert!(!jobs.is_empty());
    // Every target Prometheus may scrape: static `host:port`, and DNS names with the job's port.
    let mut targets = BTreeSet::new();
    for job in jobs {
        for group in job.get("static_configs").map(Yaml::items).unwrap_or(&[]) {
            for target in group.get("targets").map(Yaml::items).unwrap_or(&[]) {
                targets.insert(target.str().unwrap().to_string());
            }
        }
        for group in job.get("dns_sd_configs").map(Yaml::items).unwrap_or(&[]) {
            let port = group.get("port").and_then(Yaml::str).unwrap();
            for name in group.get("names").map(Yaml::items).unwrap_or(&[]) {
                targets.insert(format!("{}:{port}", name.str().unwrap()));
            }
        }
    }
    let mut serving = 0;
    for compose in Compose::all() {
        for (name, _) in compose.services() {
            let addr = compose.environment(name).get("METRICS_ADDR").cloned();
            let Some(addr) = addr.filter(|a| !a.is_empty()) else {
                continue;
            };
            let port = addr.rsplit(':').next().unwrap();
            assert!(
                targets.contains(&format!("{name}:{port}")),
                "{}: {name} serves metrics on {addr}, which monitoring/prometheus.yml does not scrape ({targets:?})",
                compose.file
            );
            serving += 1;
        }
    }
    assert!(serving >= 6, "{serving} services serve metrics");
}

#[test]
fn a_service_of_another_dataset_sets_the_dataset_defaults_that_env_file_would_override() {
    // In a container, env_file's values (.env's: the transactions') are environment variables,
    // which win over a dataset's defaults: each service sets those its binary reads.
    let mut checked = 0;
    for compose in Compose::all() {
        for service in compose.app_services() {
            let env = compose.environment(service);
            let Some(dataset) = env.get("DATASET").filter(|d| *d != "transactions") else {
                continue;
            };
            let reads: &[&str] = if service.ends_with("producer") {
                &["KAFKA_TOPIC", "PRODUCER_MSGS_PER_SEC"]
            } else {
                &["KAFKA_TOPIC", "STARTING_OFFSETS", "KAFKA_GROUP_ID"]
            };
            let parsed = dataset.parse().unwrap_or_else(|e| panic!("{service}: {e}"));
            for (name, value) in txn_core::settings::dataset_defaults(parsed) {
                if reads.contains(name) {
                    assert_eq!(
                        env.get(*name).map(String::as_str),
                        Some(*value),
                        "{}: {service} ({dataset}) must set {name}",
                        compose.file
                    );
                    checked += 1;
                }
            }
        }
    }
    // events-producer, events-processor, and the cluster file's producer and processor.
    assert!(checked >= 10, "{checked}");
}
