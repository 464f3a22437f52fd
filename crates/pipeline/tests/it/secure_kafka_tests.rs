//! Secured Kafka, on Apache Kafka with a SASL_SSL listener (a CA and broker certificate made by
//! `scripts/kafka.sh start secure`), SCRAM and PLAIN users and ACLs enforced by StandardAuthorizer
//! with `allow.everyone.if.no.acl.found=false`: the README's ACLs are enough for the producer,
//! the processor and its transactional outputs, each one missing is a clear error with nothing
//! written, wrong credentials and an untrusted certificate fail within seconds, and no password
//! reaches a log line. Ignored in a plain run (they need Java: `scripts/test.sh` runs them).

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::harness::*;

const GROUP: &str = "transactions-processor";
const TXN_ID: &str = "transactions-processor-outputs";
const GOLD: &str = "gold-updates";

/// The README's ACLs for the user `app`: (operation, resource flag, resource name).
const ACLS: [(&str, &str, &str); 5] = [
    ("Write", "--topic", TOPIC),
    ("Read", "--topic", TOPIC),
    ("Read", "--group", GROUP),
    ("Write", "--transactional-id", TXN_ID),
    ("Write", "--topic", GOLD),
];

fn acl(kafka: &Secured, action: &str, (operation, flag, name): (&str, &str, &str)) {
    let mut args = vec![action];
    if action == "--remove" {
        args.push("--force");
    }
    args.extend([
        "--allow-principal",
        "User:app",
        "--operation",
        operation,
        flag,
        name,
    ]);
    kafka.acls(&args);
}

/// Connection flags for `user` over SASL_SSL with `mechanism`, trusting `ca`.
fn sasl(kafka: &Secured, user: &str, password: &str, mechanism: &str, ca: &Path) -> Vec<String> {
    [
        "--bootstrap-servers",
        &kafka.secure_bootstrap,
        "--kafka-security-protocol",
        "SASL_SSL",
        "--kafka-sasl-mechanism",
        mechanism,
        "--kafka-sasl-username",
        user,
        "--kafka-ssl-ca-location",
        ca.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["--kafka-config".into(), format!("sasl.password={password}")])
    .collect()
}

/// Runs `pipeline SUB` in `cwd` with `args`; its output and how long it took.
fn run(sub: &str, cwd: &Path, args: &[String], envs: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let out = command(sub, cwd)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run");
    (out, started.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A processor run over everything in the topic (available-now, from the earliest offsets),
/// with gold in update mode to the transactional GOLD topic.
fn processor_args(out: &Path, connection: Vec<String>) -> Vec<String> {
    let mut args = connection;
    args.extend(
        [
            "--trigger",
            "available-now",
            "--starting-offsets",
            "earliest",
            "--gold-output-mode",
            "update",
            "--gold-topic",
            GOLD,
            "--output-path",
            out.to_str().unwrap(),
        ]
        .map(String::from),
    );
    args
}

fn high_watermarks(bootstrap: &str, topic: &str) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    (0..3)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map(|(_, high)| high)
                .unwrap_or(-1)
        })
        .collect()
}

/// No file in any layer of `out`.
fn nothing_written(out: &Path) -> bool {
    ["bronze", "silver", "quarantine", "gold", "raw_csv"]
        .iter()
        .all(|layer| layer_files(out, layer).is_empty())
}

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn secured_kafka_with_the_readme_acls_runs_producer_processor_and_topic_outputs_each_offset_once() {
    let kafka = Broker::start_secure();
    let plain = kafka.broker.bootstrap.clone();
    // The broker stores the input topic zstd-compressed, whatever the producer sends.
    kafka
        .broker
        .create_topic(TOPIC, 3, &[("compression.type", "zstd")]);
    kafka.broker.create_topic(GOLD, 3, &[]);
    for a in ACLS {
        acl(&kafka, "--add", a);
    }
    let dir = Scratch::new("secure-e2e");
    let app = kafka.password("app").to_string();

    // The producer: SCRAM-SHA-512 from the env variables, zstd batches.
    let (produced, _) = run(
        "producer",
        dir.path(),
        &[
            "--bootstrap-servers",
            &kafka.secure_bootstrap,
            "--count",
            "3000",
            "--msgs-per-sec",
            "0",
            "--seed",
            "24",
            "--bad-ratio",
            "0.02",
            "--event-time-start",
            "2026-01-01T00:00:00Z",
            "--compression",
            "zstd",
            "--log-every",
            "1000",
        ]
        .map(String::from),
        &[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "app"),
            ("KAFKA_SASL_PASSWORD", &app),
            ("KAFKA_SSL_CA_LOCATION", kafka.ca.to_str().unwrap()),
            ("RUST_LOG", "debug"),
        ],
    );
    let producer_log = stderr(&produced);
    assert!(produced.status.success(), "{producer_log}");
    assert_eq!(
        summary_field(&produced.stderr, "sent"),
        3000,
        "{producer_log}"
    );

    // The processor: SCRAM-SHA-256 from a Java client.properties, as Kafka's tools take it.
    let properties = dir.path().join("client.properties");
    std::fs::write(
        &properties,
        format!(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n    username=\"app\" password=\"{app}\";\n\
             ssl.truststore.type=PEM\nssl.truststore.location={}\nclient.dns.lookup=use_all_dns_ips\n",
            kafka.ca.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let (processed, _) = run(
        "processor",
        dir.path(),
        &processor_args(
            &out,
            vec!["--bootstrap-servers".into(), kafka.secure_bootstrap.clone()],
        ),
        &[
            ("KAFKA_CONFIG_FILE", properties.to_str().unwrap()),
            ("RUST_LOG", "debug"),
        ],
    );
    let processor_log = stderr(&processed);
    assert!(processed.status.success(), "{processor_log}");
    assert!(
        processor_log.contains("sasl.password=***"),
        "the settings line shows the password masked: {processor_log}"
    );

    // Every offset once in bronze, silver + quarantine = bronze (read over PLAINTEXT).
    assert_each_offset_once(&plain, &out, 3000);
    // Gold's updates: once in the topic for each row in the files.
    let gold_files = rows(&read_layer(&out, "gold"));
    assert!(gold_files > 0);
    assert_eq!(consume_topic(&plain, GOLD).len(), gold_files);

    for password in kafka.passwords.values() {
        for (who, log) in [("producer", &producer_log), ("processor", &processor_log)] {
            assert!(
                !log.contains(password.as_str()),
                "a password in the {who}'s log"
            );
        }
    }
}

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn secured_kafka_refuses_a_wrong_password_an_untrusted_ca_and_each_missing_acl_quickly_writing_nothing(
) {
    let kafka = Broker::start_secure();
    let plain = kafka.broker.bootstrap.clone();
    kafka.broker.create_topic(TOPIC, 3, &[]);
    kafka.broker.create_topic(GOLD, 3, &[]);
    for a in ACLS {
        acl(&kafka, "--add", a);
    }
    let dir = Scratch::new("secure-refusals");
    // Records for the processors to (not) read, through the super user's PLAINTEXT listener.
    run_producer(
        &plain,
        dir.path(),
        &["--count", "300", "--msgs-per-sec", "0"],
    );
    let app = kafka.password("app").to_string();
    let producer_args = |connection: Vec<String>| {
        let mut args = connection;
        args.extend(["--count", "200", "--msgs-per-sec", "0", "--seed", "3"].map(String::from));
        args
    };
    let mut logs = Vec::new();
    let mut runs = 0;
    let mut expect_refusal =
        |sub: &str, args: Vec<String>, needle: &str, logs: &mut Vec<String>| {
            runs += 1;
            let out = dir.path().join(format!("out-{runs}"));
            let args = if sub == "processor" {
                processor_args(&out, args)
            } else {
                args
            };
            let before = high_watermarks(&plain, TOPIC);
            let gold_before = high_watermarks(&plain, GOLD);
            let (result, took) = run(sub, dir.path(), &args, &[("RUST_LOG", "debug")]);
            let log = stderr(&result);
            assert!(!result.status.success(), "{sub} should fail: {log}");
            assert!(
                log.lines()
                    .any(|l| l.contains("ERROR") && l.contains(needle)),
                "{sub}: expected an error with {needle:?}: {log}"
            );
            assert!(took < Duration::from_secs(15), "{sub} took {took:?}: {log}");
            assert!(nothing_written(&out), "{sub} wrote files: {log}");
            assert_eq!(high_watermarks(&plain, GOLD), gold_before, "{log}");
            if sub == "producer" {
                assert_eq!(high_watermarks(&plain, TOPIC), before, "{log}");
            }
            logs.push(log);
        };

    // A wrong password, for both binaries and both SCRAM mechanisms, and PLAIN.
    for (sub, mechanism) in [
        ("producer", "SCRAM-SHA-512"),
        ("processor", "SCRAM-SHA-256"),
        ("processor", "PLAIN"),
    ] {
        let args = sasl(&kafka, "app", "not-the-password", mechanism, &kafka.ca);
        let args = if sub == "producer" {
            producer_args(args)
        } else {
            args
        };
        expect_refusal(
            sub,
            args,
            &format!("authentication failed for user app with mechanism {mechanism}"),
            &mut logs,
        );
    }
    // A CA that did not sign the broker's certificate.
    expect_refusal(
        "processor",
        sasl(&kafka, "app", &app, "SCRAM-SHA-512", &kafka.other_ca),
        "TLS connection failed",
        &mut logs,
    );
    // Each of the README's ACLs missing in turn.
    let wanted = [
        ("producer", "lacks WRITE and DESCRIBE on topic transactions"),
        ("processor", "lacks READ on topic transactions"),
        (
            "processor",
            "lacks READ on consumer group transactions-processor",
        ),
        (
            "processor",
            "lacks WRITE on transactional id transactions-processor-outputs",
        ),
        (
            "processor",
            "lacks DESCRIBE and WRITE on output topic gold-updates",
        ),
    ];
    for (a, (sub, needle)) in ACLS.into_iter().zip(wanted) {
        acl(&kafka, "--remove", a);
        let args = sasl(&kafka, "app", &app, "SCRAM-SHA-512", &kafka.ca);
        let args = if sub == "producer" {
            producer_args(args)
        } else {
            args
        };
        expect_refusal(sub, args, needle, &mut logs);
        acl(&kafka, "--add", a);
    }
    // The user `nobody`, without any ACL, is told what it lacks (the topic or the group, which
    // ever the broker refuses first).
    let nobody = kafka.password("nobody").to_string();
    expect_refusal(
        "processor",
        sasl(&kafka, "nobody", &nobody, "SCRAM-SHA-512", &kafka.ca),
        "not authorized: user nobody with mechanism SCRAM-SHA-512 lacks",
        &mut logs,
    );

    for log in &logs {
        for password in kafka.passwords.values() {
            assert!(
                !log.contains(password.as_str()),
                "a password in a log: {log}"
            );
        }
    }
}
