//! Every variable the binaries read is in `.env` and in the README's configuration table, and
//! neither names a variable the binaries do not read.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::CommandFactory;

/// Variables read outside clap: the checkpoint alias, the log level and the log format, and the
/// object store client's settings (OUTPUT_PATH=s3://...).
const READ_DIRECTLY: [&str; 9] = [
    "CHECKPOINT_DIR",
    "RUST_LOG",
    "LOG_FORMAT",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ALLOW_HTTP",
];

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
        read.contains("MSGS_PER_SEC") && read.contains("TRIGGER_INTERVAL"),
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
        "GOLD_WINDOW=2 minutes\nKAFKA_SASL_PASSWORD=hunter2\nMAX_OFFSETS_PER_TRIGGER=777\n",
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
