//! What every binary does before it reads its settings: `.env`, logging, and shared value parsers.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use crate::Dataset;

/// Loads the env file when present (variables already set in the process environment win, as
/// with docker compose), then treats every empty variable as unset: compose passes a `NAME=` line
/// of `.env` to the container as an empty string, which means "default". The file is `named`
/// (`--env-file PATH` or `ENV_FILE`), which must exist, else `.env` in the working directory, if
/// there is one. Call it at start, before any thread is spawned. Returns the file's path when one
/// was read.
pub fn load_dotenv(named: Option<&str>) -> Result<Option<std::path::PathBuf>, String> {
    let path = Path::new(named.unwrap_or(".env"));
    let loaded = match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut from_file = FROM_DOTENV.lock().unwrap_or_else(PoisonError::into_inner);
            for (name, value) in
                parse_dotenv(&text).map_err(|e| format!("{}: {e}", path.display()))?
            {
                if std::env::var_os(&name).is_none() && !value.is_empty() {
                    std::env::set_var(&name, value);
                    from_file.insert(name);
                }
            }
            Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && named.is_none() => None,
        Err(e) => {
            return Err(format!(
                "--env-file/ENV_FILE {}: cannot read it: {e}",
                path.display()
            ))
        }
    };
    let _ = ENV_FILE.set(loaded.clone());
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(k, v)| v.is_empty() && !NEVER_EMPTY.iter().any(|n| k == n))
        .map(|(k, _)| k)
        .collect();
    for name in empty {
        std::env::remove_var(name);
    }
    Ok(loaded)
}

/// Settings that have no meaning empty: an empty value is kept, so the binaries refuse it with
/// a line, instead of taking it for "default" (which would send to another topic or group).
const NEVER_EMPTY: [&str; 3] = ["KAFKA_TOPIC", "KAFKA_GROUP_ID", "KAFKA_BOOTSTRAP_SERVERS"];

/// The variables `.env` set (a dataset's defaults replace them; the environment's stay).
static FROM_DOTENV: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// The variables a dataset's defaults set.
static FROM_DATASET: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// The variables set from an alias: (name, alias).
static FROM_ALIAS: Mutex<Vec<(String, &'static str)>> = Mutex::new(Vec::new());

/// Names still read for a setting whose variable has another name: (alias, name). The alias is
/// used where the name is unset. Each flag has the env variable of its name; these are the
/// Spark original's `SPARK_CHECKPOINT_DIR` and the seeds' `MSGS_PER_SEC`.
pub const ENV_ALIASES: [(&str, &str); 2] = [
    ("SPARK_CHECKPOINT_DIR", "CHECKPOINT_DIR"),
    ("MSGS_PER_SEC", "PRODUCER_MSGS_PER_SEC"),
];

/// Sets each [`ENV_ALIASES`] name that is unset from its alias (a value the env file gave the
/// alias counts as the file's).
fn apply_env_aliases() {
    let mut from_file = FROM_DOTENV.lock().unwrap_or_else(PoisonError::into_inner);
    let mut from_alias = FROM_ALIAS.lock().unwrap_or_else(PoisonError::into_inner);
    for (alias, name) in ENV_ALIASES {
        let Some(value) = std::env::var_os(alias) else {
            continue;
        };
        // The environment wins over the env file: an alias set in the environment replaces the
        // file's value of the name; otherwise the name wins over its alias.
        let name_from_file = from_file.contains(name);
        let alias_from_file = from_file.contains(alias);
        let unset = std::env::var_os(name).is_none();
        if unset || (name_from_file && !alias_from_file) {
            std::env::set_var(name, value);
            if alias_from_file {
                from_file.insert(name.to_string());
            } else {
                from_file.remove(name);
            }
            from_alias.push((name.to_string(), alias));
        }
    }
}

/// The env file read at start, if any.
static ENV_FILE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();

/// The value of a flag among command-line arguments (`--name value` or `--name=value`).
fn flag_value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix(&prefix).or_else(|| {
            (a == name)
                .then(|| args.get(i + 1).map(String::as_str))
                .flatten()
        })
    })
}

/// Parses a binary's settings from `args` (and the environment), exiting as clap does on a bad
/// one (code 2, with the reason); returns them with [`sources`]' description.
pub fn parse<T: clap::Parser>(args: &[String]) -> (T, String) {
    let command = T::command();
    let matches = command
        .clone()
        .try_get_matches_from(args)
        .unwrap_or_else(|e| e.exit());
    let settings = T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (settings, sources(&command, &matches))
}

/// Where each setting came from, for the start line: `NAME=value (flag|env|file|dataset|default)`
/// for every setting that has a value (` as ALIAS` after `env` or `file` when the value was the
/// alias's), secrets masked, after the env file read (or none).
pub fn sources(command: &clap::Command, matches: &clap::ArgMatches) -> String {
    use clap::parser::ValueSource;
    let from_file = FROM_DOTENV.lock().unwrap_or_else(PoisonError::into_inner);
    let from_dataset = FROM_DATASET.lock().unwrap_or_else(PoisonError::into_inner);
    let from_alias = FROM_ALIAS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut parts = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(source) = matches
            .try_get_raw(id)
            .ok()
            .flatten()
            .and(matches.value_source(id))
        else {
            continue;
        };
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        let name = env
            .clone()
            .or_else(|| arg.get_long().map(|l| format!("--{l}")))
            .unwrap_or_else(|| id.to_string());
        let values: Vec<String> = matches
            .get_raw(id)
            .into_iter()
            .flatten()
            .map(|v| {
                let v = v.to_string_lossy();
                // `key=value` properties: a secret key's value is masked.
                match v.split_once('=') {
                    Some((k, _)) if crate::kafka::is_secret(k) => format!("{k}=***"),
                    // A URL's user info (a registry's basic auth) is masked too.
                    _ if v.contains("://") && v.contains('@') => {
                        crate::registry::strip_credentials(&v)
                    }
                    _ => v.into_owned(),
                }
            })
            .collect();
        let secret = arg.is_hide_env_values_set() || crate::kafka::is_secret(&name);
        let value = if secret {
            "***".to_string()
        } else {
            values.join(",")
        };
        let from = match source {
            ValueSource::CommandLine => "flag",
            ValueSource::EnvVariable => match env.as_deref() {
                Some(e) if from_dataset.contains(e) => "dataset",
                Some(e) if from_file.contains(e) => "file",
                _ => "env",
            },
            ValueSource::DefaultValue => "default",
            _ => "?",
        };
        let alias = from_alias
            .iter()
            .find(|(n, _)| Some(n) == env.as_ref() && (from == "env" || from == "file"))
            .map(|(_, alias)| format!(" as {alias}"))
            .unwrap_or_default();
        parts.push(format!("{name}={value} ({from}{alias})"));
    }
    let file = match ENV_FILE.get().cloned().flatten() {
        Some(path) => format!("env file {}", path.display()),
        None => "no env file (no .env in the working folder)".to_string(),
    };
    format!("{file}; {}", parts.join(", "))
}

/// The settings whose defaults depend on the dataset: for a dataset other than `transactions`,
/// these replace `.env`'s values (which are the transactions'), unless the environment or a flag
/// sets them.
pub fn dataset_defaults(dataset: Dataset) -> &'static [(&'static str, &'static str)] {
    match dataset {
        // Seed 001: topic `events`, 5 messages a second, read from the beginning.
        Dataset::Events => &[
            ("KAFKA_TOPIC", "events"),
            ("PRODUCER_MSGS_PER_SEC", "5"),
            ("STARTING_OFFSETS", "earliest"),
            ("KAFKA_GROUP_ID", "events-processor"),
        ],
        // Seeds 003/004: topic `financial_transactions`, read from the beginning. 5 a second
        // rather than the seed's 30: with its 100 users, 30 a second is 18 a minute per user,
        // above the default anomaly threshold (more than 10 a minute), so every user would be
        // flagged; at 5 a user averages 3 a minute and goes over 10 in about 0.03 % of their
        // minutes (Poisson): about two HIGH_FREQUENCY anomalies an hour over the 100 users.
        Dataset::Financial => &[
            ("KAFKA_TOPIC", "financial_transactions"),
            ("PRODUCER_MSGS_PER_SEC", "5"),
            ("STARTING_OFFSETS", "earliest"),
            ("KAFKA_GROUP_ID", "financial-processor"),
        ],
        Dataset::Transactions => &[],
    }
}

/// Sets each unset variable that has an alias set ([`ENV_ALIASES`]), then the defaults of the
/// dataset that `--dataset` among `args`, else `DATASET`, selects, where the environment does not
/// set them (a value `.env` gave is replaced; flags win anyway). Call after `.env` is loaded,
/// before the settings are parsed.
pub fn apply_dataset_defaults(args: &[String]) {
    apply_env_aliases();
    let from_env = std::env::var("DATASET").ok();
    // An unknown name has no defaults: the settings' parser refuses it with the list.
    let Ok(dataset) = dataset_flag(args)
        .or(from_env.as_deref())
        .unwrap_or("transactions")
        .parse::<Dataset>()
    else {
        return;
    };
    let from_file = FROM_DOTENV.lock().unwrap_or_else(PoisonError::into_inner);
    let mut from_dataset = FROM_DATASET.lock().unwrap_or_else(PoisonError::into_inner);
    for (name, value) in dataset_defaults(dataset) {
        if std::env::var_os(name).is_none() || from_file.contains(*name) {
            std::env::set_var(name, value);
            from_dataset.insert(name.to_string());
        }
    }
}

/// The value of `--dataset` among command-line arguments (`--dataset events` or
/// `--dataset=events`), which selects the dataset's defaults as `DATASET` does.
pub fn dataset_flag(args: &[String]) -> Option<&str> {
    flag_value(args, "--dataset")
}

/// Parses an env file the way docker compose reads `.env` and `env_file`: `NAME=value` lines,
/// the value taken to the end of the line (so `TRIGGER_INTERVAL=30 seconds` works unquoted, as in
/// the seed), surrounding quotes removed, `#` lines and blank lines skipped, `export ` allowed.
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!(
                ".env line {}: expected NAME=value, got {line:?}",
                n + 1
            ));
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                ".env line {}: {name:?} is not a variable name",
                n + 1
            ));
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|&q| value.strip_prefix(q).and_then(|v| v.strip_suffix(q)))
            .unwrap_or(value);
        out.push((name.to_string(), unquoted.to_string()));
    }
    Ok(out)
}

pub use crate::kafka::KafkaArgs;

/// What every binary does first: logging, the env file (`--env-file` among `args`, else
/// `ENV_FILE`, else `.env` when present), and a flag that SIGINT and SIGTERM set. `None` when
/// that failed: one line was logged, and the caller exits with code 2.
pub fn startup(
    name: &str,
    args: &[String],
) -> Option<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    // The env file first: it may set RUST_LOG and LOG_FORMAT.
    let named = flag_value(args, "--env-file")
        .map(str::to_string)
        .or_else(|| std::env::var("ENV_FILE").ok().filter(|v| !v.is_empty()));
    let dotenv = load_dotenv(named.as_deref());
    let format = crate::telemetry::log_format_from_env();
    init_logging();
    if let Err(e) = dotenv.map(|_| ()).and(format.map(|_| ())) {
        tracing::error!("[{name}] {e}");
        return None;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, std::sync::Arc::clone(&stop)) {
            tracing::error!("[{name}] cannot install the signal handler: {e}");
            return None;
        }
    }
    let _ = STOP.set(std::sync::Arc::clone(&stop));
    Some(stop)
}

/// The stop flag of [`startup`], for code far from the loop that owns it (a sink waiting for a
/// store that is down gives up its wait when asked to stop).
static STOP: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::OnceLock::new();

/// Whether SIGINT or SIGTERM asked this process to stop (false before [`startup`]).
pub fn stop_requested() -> bool {
    STOP.get()
        .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
}

/// Logs to stderr, one line per event, level from `RUST_LOG` (default `info`). No colours when
/// stderr is not a terminal, so `docker logs` stays readable.
/// With `LOG_FORMAT=json`, one JSON object per line instead (`timestamp`, `level`, `fields` with
/// `message` and the event's own fields), for Filebeat and ELK.
pub fn init_logging() {
    use std::io::IsTerminal;
    let (filter, refused) = match std::env::var("RUST_LOG") {
        Err(_) => (
            quiet_chatty(tracing_subscriber::EnvFilter::new("info"), ""),
            None,
        ),
        Ok(text) => match log_filter(&text) {
            Ok(filter) => (filter, None),
            Err(why) => (
                quiet_chatty(tracing_subscriber::EnvFilter::new("info"), ""),
                Some(why),
            ),
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if crate::telemetry::json_logs() {
        builder.json().try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    if let Some(why) = refused {
        tracing::warn!("{why}; logging at info");
    }
}

/// The crates whose log lines the binaries print (tracing targets are module paths).
const OUR_TARGETS: [&str; 6] = [
    "producer",
    "processor",
    "pipeline",
    "txn_core",
    "bench",
    "it",
];

/// `RUST_LOG` as a filter, refused when it would silence the program: unparseable, or naming
/// neither a level for everything nor one of the program's crates (`RUST_LOG=nonsense` names a
/// crate that does not exist, which silences every line, errors included).
pub fn log_filter(text: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let filter = tracing_subscriber::EnvFilter::try_new(text)
        .map_err(|e| format!("RUST_LOG={text:?} is not a log filter ({e})"))?;
    let filter = quiet_chatty(filter, text);
    let useful = text.split(',').map(str::trim).any(|d| {
        let target = d.split(['=', '[']).next().unwrap_or("").trim();
        LEVELS.contains(&target.to_ascii_lowercase().as_str())
            || OUR_TARGETS
                .iter()
                .any(|t| target == *t || target.starts_with(&format!("{t}::")))
    });
    if useful {
        Ok(filter)
    } else {
        Err(format!(
            "RUST_LOG={text:?} names no level and none of this program's crates ({}), so it would silence every line",
            OUR_TARGETS.join(", ")
        ))
    }
}

/// The Delta Lake kernel logs every snapshot it builds at info: kept to warnings unless the
/// filter `text` names it. The Cassandra driver logs each reconnection attempt of an outage at
/// error level, every second: off unless named (the Cassandra sink logs what it acts on, with
/// the driver's error, every 10 s). rdkafka's consumer logs an error when it is dropped closed
/// (the processor's source closes its consumer itself, faster): off unless named.
fn quiet_chatty(
    mut filter: tracing_subscriber::EnvFilter,
    text: &str,
) -> tracing_subscriber::EnvFilter {
    for (chatty, level) in [
        ("buoyant_kernel", "warn"),
        ("buoyant_kernel_engine", "warn"),
        ("deltalake_core", "warn"),
        ("scylla", "off"),
        ("rdkafka::consumer::base_consumer", "off"),
    ] {
        if !text.contains(chatty) {
            if let Ok(directive) = format!("{chatty}={level}").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    filter
}

/// A boolean the way the seed's `.env` writes them: true/false, 1/0, yes/no, on/off.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        other => Err(format!("{other:?} is not a boolean (use true or false)")),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_bool, parse_dotenv};

    #[test]
    fn the_dataset_flag_is_found_in_both_spellings_and_events_has_its_own_defaults() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        use super::{dataset_defaults, dataset_flag, Dataset};
        assert_eq!(
            dataset_flag(&args(&["processor", "--dataset", "events"])),
            Some("events")
        );
        assert_eq!(
            dataset_flag(&args(&["processor", "--dataset=events", "-x"])),
            Some("events")
        );
        assert_eq!(dataset_flag(&args(&["processor", "--dataset"])), None);
        assert_eq!(dataset_flag(&args(&["processor", "--topic", "x"])), None);
        assert!(dataset_defaults(Dataset::Transactions).is_empty());
        assert!(dataset_defaults(Dataset::Events).contains(&("KAFKA_TOPIC", "events")));
    }

    #[test]
    fn dotenv_lines_as_docker_compose_reads_them() {
        let text = "# comment\n\nTRIGGER_INTERVAL=30 seconds\nexport A=1\nB=\"quoted value\"\nC='x'\nEMPTY=\nJSON={\"t\":{\"0\":-2}}\n";
        let parsed = parse_dotenv(text).unwrap();
        let want = [
            ("TRIGGER_INTERVAL", "30 seconds"),
            ("A", "1"),
            ("B", "quoted value"),
            ("C", "x"),
            ("EMPTY", ""),
            ("JSON", r#"{"t":{"0":-2}}"#),
        ];
        assert_eq!(parsed, want.map(|(a, b)| (a.to_string(), b.to_string())));
        assert!(parse_dotenv("NOT A LINE").unwrap_err().contains("line 1"));
        assert!(parse_dotenv("BAD NAME=1")
            .unwrap_err()
            .contains("not a variable name"));
    }

    #[test]
    fn the_repository_dotenv_parses() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.env")).unwrap();
        let parsed = parse_dotenv(&text).unwrap();
        assert!(parsed
            .iter()
            .any(|(k, v)| k == "TRIGGER_INTERVAL" && v == "30 seconds"));
    }

    #[test]
    fn a_log_filter_that_would_silence_everything_is_refused() {
        use super::log_filter;
        for good in [
            "info",
            "debug",
            "processor=debug,warn",
            "producer::x=trace",
            "WARN",
        ] {
            assert!(log_filter(good).is_ok(), "{good}");
        }
        for bad in ["nonsense", "rdkafka=debug", "info=debug=x"] {
            let e = log_filter(bad).err().unwrap_or_default();
            assert!(e.contains("RUST_LOG="), "{bad}: {e}");
        }
    }

    #[test]
    fn booleans_in_the_seed_forms() {
        for t in ["true", "TRUE", "1", "yes", "on"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["false", "0", "no", "off", ""] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        assert!(parse_bool("maybe").unwrap_err().contains("\"maybe\""));
    }
}
