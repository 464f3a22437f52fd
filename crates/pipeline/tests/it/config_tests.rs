//! Every variable the binaries read is in `.env` and in the README's configuration table, and
//! neither names a variable the binaries do not read.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::CommandFactory;

/// Variables read outside clap: the log level and the log format, and the object store client's
/// settings (OUTPUT_PATH=s3://...).
const READ_DIRECTLY: [&str; 8] = [
    "RUST_LOG",
    "LOG_FORMAT",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ALLOW_HTTP",
];

/// Variables only `pipeline` (the local stack on the embedded broker) reads.
const PIPELINE_ONLY: [&str; 2] = ["KAFKA_TOPIC_PARTITIONS", "EXTRA_TOPICS"];

/// Variables of `.env` and of the README's table that docker compose reads and the binaries do
/// not (the project name, the containers' user, where the broker's external port is published);
/// compose_tests checks that these are exactly the ones the compose files use.
pub(crate) const COMPOSE_ONLY: [&str; 5] = [
    "COMPOSE_PROJECT_NAME",
    "APP_UID",
    "APP_GID",
    "KAFKA_EXTERNAL_BIND",
    "KAFKA_EXTERNAL_HOST",
];

fn without_compose_only(names: BTreeSet<String>) -> BTreeSet<String> {
    names
        .into_iter()
        .filter(|n| !COMPOSE_ONLY.contains(&n.as_str()))
        .collect()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn variables_the_binaries_read() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = READ_DIRECTLY.iter().map(|s| s.to_string()).collect();
    // The local stack's own (`pipeline --help`: every_help_names_each_flag_as_its_env...).
    names.extend(PIPELINE_ONLY.iter().map(|s| s.to_string()));
    // The old names still read for a setting (SPARK_CHECKPOINT_DIR, MSGS_PER_SEC).
    names.extend(
        txn_core::settings::ENV_ALIASES
            .iter()
            .map(|(alias, _)| alias.to_string()),
    );
    for command in [
        producer::ProducerConfig::command(),
        processor::ProcessorConfig::command(),
    ] {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                names.insert(env.to_string_lossy().into_owned());
            }
        }
    }
    names
}

/// `NAME=` lines of .env, set or commented out (`# NAME=`).
fn dotenv_names() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join(".env")).unwrap();
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start_matches('#').trim();
            let (name, _) = l.split_once('=')?;
            (!name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .then(|| name.to_string())
        })
        .collect()
}

/// First-column names of the README's configuration table: rows like "| `NAME` | ...".
fn readme_names() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let table = text
        .split("## Configuration")
        .nth(1)
        .expect("a Configuration section");
    let table = table.split("\n## ").next().unwrap();
    table
        .lines()
        .filter_map(|l| {
            l.strip_prefix("| `")?
                .split_once('`')
                .map(|(name, _)| name.to_string())
        })
        .collect()
}

#[test]
fn every_variable_the_binaries_read_is_in_dotenv_and_the_readme_and_nothing_else_is() {
    let read = variables_the_binaries_read();
    assert!(
        read.contains("PRODUCER_MSGS_PER_SEC") && read.contains("TRIGGER_INTERVAL"),
        "{read:?}"
    );
    let dotenv = without_compose_only(dotenv_names());
    let readme = without_compose_only(readme_names());
    assert_eq!(
        read.difference(&dotenv).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "read by the binaries but missing from .env"
    );
    assert_eq!(
        dotenv.difference(&read).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in .env but read by nothing"
    );
    assert_eq!(
        read.difference(&readme).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "read by the binaries but missing from the README's configuration table"
    );
    assert_eq!(
        readme.difference(&read).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in the README's table but read by nothing"
    );
}

/// The start line names the env file read and where each setting came from (flag, env, file,
/// default), secrets masked; a named env file that is not there is refused with exit 2.
#[test]
fn the_start_line_names_the_env_file_and_each_settings_source_with_secrets_masked() {
    use crate::harness::{command, Scratch};
    let dir = Scratch::new("env-file");
    let env_file = dir.path().join("site.env");
    std::fs::write(
        &env_file,
        format!(
            "GOLD_WINDOW=2 minutes\nKAFKA_SASL_PASSWORD=hunter2\nMAX_OFFSETS_PER_TRIGGER=777\nCHECKPOINT_DIR={}\n",
            dir.path().join("from-file").display()
        ),
    )
    .unwrap();
    let run = command("processor", dir.path())
        .args(["--env-file", env_file.to_str().unwrap()])
        .args([
            "--bootstrap-servers",
            "127.0.0.1:1",
            "--trigger",
            "available-now",
        ])
        .args(["--kafka-config", "ssl.key.password=x"])
        .env("KAFKA_CONNECT_TIMEOUT", "1 second")
        .env("FRAUD_ALERTS_TOPIC", "alerts-from-env")
        .env("MAX_OFFSETS_PER_TRIGGER", "888")
        .env("SPARK_CHECKPOINT_DIR", dir.path().join("chk"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("[processor] settings: "))
        .unwrap_or_else(|| panic!("no settings line: {stderr}"));
    let named = format!("env file {}", env_file.display());
    for wanted in [
        named.as_str(),
        "GOLD_WINDOW=2 minutes (file)",
        "KAFKA_SASL_PASSWORD=*** (file)",
        "FRAUD_ALERTS_TOPIC=alerts-from-env (env)",
        "MAX_OFFSETS_PER_TRIGGER=888 (env)",
        "TRIGGER_INTERVAL=available-now (flag)",
        "--kafka-config=ssl.key.password=*** (flag)",
        "GOLD_WATERMARK_DELAY=5 minutes (default)",
        "CHECKPOINT_DIR=",
        "/chk (env as SPARK_CHECKPOINT_DIR)",
    ] {
        assert!(line.contains(wanted), "{wanted:?} in {line}");
    }
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let missing = command("processor", dir.path())
        .args(["--env-file", "no-such.env"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no-such.env: cannot read it"), "{stderr}");
}

/// The settings each `--help` lists: (flag, its env variable when it has one, its aliases).
fn help_settings(help: &str) -> Vec<(String, Option<String>, Vec<String>)> {
    let mut settings: Vec<(String, Option<String>, Vec<String>)> = Vec::new();
    for line in help.lines() {
        let t = line.trim();
        // An argument's first line: "--name <NAME>", "-x, --name", "--name".
        let flag = t
            .strip_prefix("--")
            .or_else(|| t.split_once(", --").map(|(_, f)| f))
            .filter(|_| line.starts_with("  ") && !line.starts_with("          "));
        if let Some(flag) = flag {
            let name = flag.split([' ', '[', '=']).next().unwrap_or_default();
            settings.push((name.to_string(), None, Vec::new()));
            continue;
        }
        // Its help text, on the next lines: "[env: NAME=value]", "[alias: --a]", "[aliases: ...]".
        let Some(last) = settings.last_mut() else {
            continue;
        };
        if let Some((_, env)) = t.split_once("[env: ") {
            last.1 = env.split(['=', ']']).next().map(str::to_string);
        }
        if let Some((_, aliases)) = t
            .split_once("[alias: ")
            .or_else(|| t.split_once("[aliases: "))
        {
            last.2 = aliases
                .split(']')
                .next()
                .unwrap_or_default()
                .split(", ")
                .map(|a| a.trim_start_matches("--").to_string())
                .collect();
        }
    }
    settings
}

/// Flags that have no env variable, each for its reason (README, Configuration).
const FLAGS_WITHOUT_ENV: [&str; 4] = [
    "help",
    "version",
    // Repeatable KEY=VALUE properties: KAFKA_CONFIG_FILE is their env form.
    "kafka-config",
    // A one-off repair: an env variable would repeat it at every restart.
    "recover-from-batch",
];

/// Every binary's `--help`, run for real: each flag has the env variable of its name (old names
/// only as aliases), and the env variables of all the helps are the README's configuration table,
/// both ways (apart from the variables read outside the flags, aliases and compose's own).
#[test]
fn every_help_names_each_flag_as_its_env_and_the_readme_table_lists_them_all_both_ways() {
    use crate::harness::{command, Scratch};
    let dir = Scratch::new("help");
    let mut from_help = BTreeSet::new();
    for sub in ["producer", "processor", "broker", "--no-subcommand"] {
        let mut c = if sub == "--no-subcommand" {
            command("--help", dir.path())
        } else {
            let mut c = command(sub, dir.path());
            c.arg("--help");
            c
        };
        let run = c.env_remove("DATASET").output().unwrap();
        let help = String::from_utf8_lossy(&run.stdout);
        assert_eq!(run.status.code(), Some(0), "{sub} --help: {help}");
        let settings = help_settings(&help);
        assert!(settings.len() > 3, "{sub}: {settings:?} from {help}");
        for (flag, env, aliases) in settings {
            match env {
                Some(env) => {
                    assert_eq!(
                        flag.replace('-', "_").to_uppercase(),
                        env,
                        "{sub}: --{flag} reads {env}"
                    );
                    for alias in aliases {
                        // An old, shorter name: `--topic` of `--kafka-topic`.
                        assert!(
                            flag.contains(&alias) && flag != alias,
                            "{sub}: --{flag}'s alias --{alias} is not a shorter form of it"
                        );
                    }
                    from_help.insert(env);
                }
                None => assert!(
                    FLAGS_WITHOUT_ENV.contains(&flag.as_str()),
                    "{sub}: --{flag} has no env variable"
                ),
            }
        }
    }
    for name in [
        "KAFKA_TOPIC_PARTITIONS",
        "EXTRA_TOPICS",
        "OUTPUT_PATH",
        "DATASET",
    ] {
        assert!(from_help.contains(name), "{name} in {from_help:?}");
    }
    let readme = without_compose_only(readme_names());
    let help_missing: Vec<&String> = from_help.difference(&readme).collect();
    assert_eq!(
        help_missing,
        Vec::<&String>::new(),
        "in a --help but not in the README's table"
    );
    let not_flags: BTreeSet<String> = READ_DIRECTLY
        .iter()
        .chain(
            txn_core::settings::ENV_ALIASES
                .iter()
                .map(|(alias, _)| alias),
        )
        // Hidden from the help: the crash tests' pause.
        .chain(["TEST_PAUSE_BEFORE_COMMIT"].iter())
        .map(|s| s.to_string())
        .collect();
    let readme_only: Vec<&String> = readme
        .difference(&from_help)
        .filter(|n| !not_flags.contains(*n))
        .collect();
    assert_eq!(
        readme_only,
        Vec::<&String>::new(),
        "in the README's table but in no --help"
    );
}

/// An unknown dataset, by flag or by env variable, stops each binary with exit 2 and the list.
#[test]
fn an_unknown_dataset_exits_2_with_the_list_of_datasets() {
    use crate::harness::{command, Scratch};
    let dir = Scratch::new("dataset");
    for sub in ["processor", "producer"] {
        for by_env in [false, true] {
            let mut c = command(sub, dir.path());
            if by_env {
                c.env("DATASET", "nonsense");
            } else {
                c.args(["--dataset", "nonsense"]);
            }
            let run = c.output().unwrap();
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(2), "{sub} ({by_env}): {stderr}");
            assert!(
                stderr.contains("nonsense")
                    && stderr.contains("[possible values: transactions, events, financial]"),
                "{sub} ({by_env}): {stderr}"
            );
        }
        // Any case works, as compose files and shells spell it.
        let run = command(sub, dir.path())
            .args(["--dataset", "Events", "--version"])
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(0), "{sub}: {run:?}");
    }
}
