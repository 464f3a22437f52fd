//! Avro with a schema registry (seeds 002 and 004) on Apache Kafka and a real registry
//! (`scripts/schema-registry.sh`): one topic holding our producer's Avro (v1), Avro the test
//! writes with the Apache Avro crate under a v2 schema (a new optional field) and a v3 schema
//! (`event_ts` a timestamp-micros, `amount` a decimal, `status` removed, fields reordered),
//! plain JSON, values of an unknown schema id and bodies cut short. The processor, through
//! SIGKILLs and a registry that stops answering, must give every good record the silver row the
//! same record in JSON gives (a reference topic of the JSON, processed apart), every bad one a
//! quarantine row with its reason, each offset once; and Confluent's Python AvroDeserializer must
//! read what our producer wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use apache_avro::types::Value as A;
use apache_avro::Schema;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use txn_core::avro::{frame, TRANSACTION_SCHEMA};
use txn_core::registry::{Registry, RegistryArgs};

use crate::harness::*;

const REFERENCE: &str = "reference";
const UNKNOWN_ID: u32 = 999_999;
/// Gold's rows as Avro (OUTPUT_TOPIC_FORMAT=avro).
const GOLD: &str = "gold-avro";

/// v1 with one more optional field: compatible, registered under the topic's subject.
fn v2_schema() -> String {
    TRANSACTION_SCHEMA.replace(
        r#"{"name": "lon", "type": ["null", "double"], "default": null}]"#,
        r#"{"name": "lon", "type": ["null", "double"], "default": null},
 {"name": "device", "type": ["null", "string"], "default": null}]"#,
    )
}

/// Logical types, another field order, `status` gone, `channel` new.
const V3_SCHEMA: &str = r#"{"type": "record", "name": "Payment", "namespace": "other.team", "fields": [
 {"name": "amount", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 14, "scale": 2}], "default": null},
 {"name": "txn_id", "type": "string"},
 {"name": "channel", "type": {"type": "enum", "name": "Channel", "symbols": ["WEB", "POS"]}},
 {"name": "event_ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
 {"name": "user_id", "type": ["null", "string"]},
 {"name": "card_id", "type": ["null", "string"]},
 {"name": "merchant", "type": ["null", "string"]},
 {"name": "category", "type": ["null", "string"]},
 {"name": "currency", "type": ["null", "string"]},
 {"name": "city", "type": ["null", "string"]},
 {"name": "country", "type": ["null", "string"]},
 {"name": "lat", "type": ["null", "double"]},
 {"name": "lon", "type": ["null", "double"]}]}"#;

/// A JSON record as an Avro value of `schema` (a record of nullable strings and doubles, and
/// v3's logical types).
fn avro_value(schema: &Schema, json: &serde_json::Value) -> A {
    let Schema::Record(rec) = schema else {
        panic!("a record schema")
    };
    let optional = |v: &serde_json::Value| match v {
        serde_json::Value::Null => A::Union(0, Box::new(A::Null)),
        serde_json::Value::String(s) => A::Union(1, Box::new(A::String(s.clone()))),
        serde_json::Value::Number(n) => A::Union(1, Box::new(A::Double(n.as_f64().unwrap()))),
        other => panic!("{other}"),
    };
    A::Record(
        rec.fields
            .iter()
            .map(|f| {
                let v = &json[f.name.as_str()];
                let value = match (f.name.as_str(), &f.schema) {
                    ("txn_id", _) => A::String(v.as_str().unwrap().to_string()),
                    ("event_ts", Schema::String) => A::String(v.as_str().unwrap().to_string()),
                    ("event_ts", _) => A::TimestampMicros(
                        txn_core::time::parse_rfc3339_micros(v.as_str().unwrap()).unwrap(),
                    ),
                    ("channel", _) => A::Enum(1, "POS".into()),
                    ("device", _) => A::Union(1, Box::new(A::String("phone".into()))),
                    ("amount", Schema::Union(u))
                        if matches!(u.variants()[1], Schema::Decimal(_)) =>
                    {
                        match v.as_f64() {
                            None => A::Union(0, Box::new(A::Null)),
                            Some(a) => {
                                let cents = (a * 100.0).round() as i64;
                                A::Union(
                                    1,
                                    Box::new(A::Decimal(apache_avro::Decimal::from(
                                        cents.to_be_bytes().to_vec(),
                                    ))),
                                )
                            }
                        }
                    }
                    _ => optional(v),
                };
                (f.name.clone(), value)
            })
            .collect(),
    )
}

fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    frame(id, &mut v);
    v.extend_from_slice(body);
    v
}

/// Silver's rows by txn_id: every column a JSON record gives (not the Kafka coordinates, not
/// json_str, which holds the writer's rendering).
type Row = (i64, Vec<Option<String>>, Vec<Option<f64>>);

fn silver_rows(out: &Path) -> BTreeMap<String, Row> {
    let silver = read_layer(out, "silver");
    let ids = strings(&silver, "txn_id");
    let times = i64s(&silver, "event_time");
    let text: Vec<_> = [
        "user_id", "card_id", "merchant", "category", "currency", "status", "city", "country",
    ]
    .iter()
    .map(|c| strings(&silver, c))
    .collect();
    let numbers: Vec<_> = ["amount", "lat", "lon"]
        .iter()
        .map(|c| f64s(&silver, c))
        .collect();
    let mut rows = BTreeMap::new();
    for (i, id) in ids.into_iter().enumerate() {
        let row = (
            times[i],
            text.iter().map(|c| c[i].clone()).collect(),
            numbers.iter().map(|c| c[i]).collect(),
        );
        assert!(
            rows.insert(id.expect("txn_id"), row).is_none(),
            "a txn_id twice in silver"
        );
    }
    rows
}

/// Quarantine's reasons, counted by reason.
fn reasons(out: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in strings(&read_layer(out, "quarantine"), "reason") {
        *counts.entry(r.unwrap()).or_default() += 1;
    }
    counts
}

#[test]
#[ignore = "needs Apache Kafka and a schema registry (scripts/kafka.sh, scripts/schema-registry.sh; scripts/test.sh runs it)"]
fn avro_of_three_schemas_json_and_unknown_ids_in_one_topic_read_as_json_would_each_offset_once() {
    let broker = if is_kafka() {
        Broker::start(3)
    } else {
        Broker::start_as("kafka", 3)
    };
    broker.create_topic(REFERENCE, 3, &[]);
    broker.create_topic("json13", 1, &[]);
    broker.create_topic(GOLD, 3, &[]);
    let registry = SchemaRegistry::start();
    let url = registry.url.as_str();
    let out = Scratch::new("avro");
    let reference_out = Scratch::new("avro-reference");
    let b = broker.bootstrap.as_str();

    // Our producer: the same records as Avro (v1) into the topic and as JSON into the
    // reference; seed 12 as JSON into both.
    let produce = |format: &str, topic: &str, seed: &str, count: &str, start: &str| {
        run_producer(
            b,
            out.path(),
            &[
                "--format",
                format,
                "--schema-registry-url",
                url,
                "--topic",
                topic,
                "--seed",
                seed,
                "--count",
                count,
                "--msgs-per-sec",
                "0",
                "--bad-ratio",
                "0.03",
                "--event-time-start",
                start,
            ],
        )
    };
    let avro_run = produce("avro", TOPIC, "11", "3000", "2026-01-01T00:00:00Z");
    let v1 = String::from_utf8_lossy(&avro_run.stderr)
        .lines()
        .find_map(|l| {
            let at = l.find("schema id ")? + "schema id ".len();
            l[at..].split_whitespace().next()?.parse::<u32>().ok()
        })
        .expect("the producer names its schema id");
    produce("json", REFERENCE, "11", "3000", "2026-01-01T00:00:00Z");
    produce("json", TOPIC, "12", "600", "2026-01-01T00:10:00Z");
    produce("json", REFERENCE, "12", "600", "2026-01-01T00:10:00Z");

    // v2 and v3 records written by the Apache Avro crate, from our producer's JSON.
    run_producer(
        b,
        out.path(),
        &[
            "--topic",
            "json13",
            "--seed",
            "13",
            "--count",
            "600",
            "--msgs-per-sec",
            "0",
            "--event-time-start",
            "2026-01-01T00:20:00Z",
        ],
    );
    let client = Registry::from_args(&RegistryArgs {
        schema_registry_url: Some(url.to_string()),
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    let v2_text = v2_schema();
    let v2 = client.register("transactions-value", &v2_text).unwrap();
    let v3 = client.register("payments-value", V3_SCHEMA).unwrap();
    assert!(v1 != v2 && v2 != v3);
    let v2_schema = Schema::parse_str(&v2_text).unwrap();
    let v3_schema = Schema::parse_str(V3_SCHEMA).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", b)
        .create()
        .unwrap();
    let send = |topic: &str, key: &[u8], value: &[u8]| loop {
        match producer.send(BaseRecord::to(topic).key(key).payload(value)) {
            Ok(()) => break,
            Err(_) => {
                producer.poll(Duration::from_millis(10));
            }
        }
    };
    let mut v3_ids = BTreeSet::new();
    let json13 = consume_topic(b, "json13");
    for (i, m) in json13.iter().enumerate() {
        let text = m.value.as_deref().unwrap();
        let json: serde_json::Value = serde_json::from_slice(text).unwrap();
        let (id, schema) = if i % 2 == 0 {
            (v2, &v2_schema)
        } else {
            v3_ids.insert(json["txn_id"].as_str().unwrap().to_string());
            (v3, &v3_schema)
        };
        let body = apache_avro::to_avro_datum(schema, avro_value(schema, &json)).unwrap();
        let key = m.key.as_deref().unwrap();
        send(TOPIC, key, &framed(id, &body));
        send(REFERENCE, key, text);
    }
    // 40 values of an id the registry never gave, 20 v1 bodies cut short.
    let some_body = {
        let json: serde_json::Value =
            serde_json::from_slice(json13[0].value.as_deref().unwrap()).unwrap();
        let mut body = Vec::new();
        txn_core::avro::encode_json(
            &Schema::parse_str(TRANSACTION_SCHEMA).unwrap(),
            &json,
            &mut body,
        )
        .unwrap();
        body
    };
    for i in 0..60 {
        if i < 40 {
            send(TOPIC, b"k", &framed(UNKNOWN_ID, &some_body));
        } else {
            send(TOPIC, b"k", &framed(v1, &some_body[..some_body.len() - 9]));
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    // SIGKILLs at random moments and right after the sinks committed, before the checkpoint.
    let live = [
        "--schema-registry-url",
        url,
        "--trigger",
        "0",
        "--max-offsets-per-trigger",
        "400",
        "--gold-topic",
        GOLD,
        "--output-topic-format",
        "avro",
    ];
    let (at_pause, _) = kill_repeatedly(b, out.path(), &live, &[], Kills::runs(4));
    assert!(
        at_pause >= 1,
        "a kill between the sinks' and the checkpoint's commits"
    );

    // More Avro, then a registry that stops answering (SIGSTOP: connections hang) under a
    // processor whose cache is empty: the batch waits, nothing goes to quarantine, and it goes
    // on once the registry answers again.
    produce("avro", TOPIC, "14", "500", "2026-01-01T00:30:00Z");
    produce("json", REFERENCE, "14", "500", "2026-01-01T00:30:00Z");
    registry.pause();
    let p = Processor::spawn(b, out.path(), &live, &[]);
    let warning = p.wait_for("schema registry cannot answer", Duration::from_secs(60));
    registry.resume();
    let warning = warning.expect("a warning while the registry does not answer");
    assert!(warning.contains("the batch waits"), "{warning}");
    p.wait_for("answered after", Duration::from_secs(60))
        .expect("the batch goes on once the registry answers");
    p.signal(libc::SIGTERM);
    assert!(p.wait().success(), "a clean stop");

    let finish = process_all(
        b,
        out.path(),
        &[
            "--schema-registry-url",
            url,
            "--gold-topic",
            GOLD,
            "--output-topic-format",
            "avro",
        ],
    );
    assert!(finish.status.success());
    process_all(
        b,
        reference_out.path(),
        &["--topic", REFERENCE, "--group-id", "reference"],
    );

    // Each offset once in bronze.
    let topic = consume_topic(b, TOPIC);
    assert_eq!(topic.len(), 3000 + 600 + 600 + 60 + 500);
    let bronze = read_layer(out.path(), "bronze");
    let in_bronze: BTreeSet<(i64, i64)> = i64s(&bronze, "partition")
        .into_iter()
        .zip(i64s(&bronze, "offset"))
        .collect();
    assert_eq!(rows(&bronze), topic.len(), "no offset twice in bronze");
    assert_eq!(
        in_bronze,
        topic
            .iter()
            .map(|m| (i64::from(m.partition), m.offset))
            .collect(),
        "every offset in bronze"
    );

    // Bronze's value holds the JSON a writer schema renders (the framed bytes only for the
    // values that cannot be read: the unknown id's and the cut bodies), and silver's json_str
    // the JSON of each row's own record.
    let values = strings(&bronze, "value");
    let framed = values
        .iter()
        .filter(|v| v.as_deref().is_some_and(|v| v.starts_with('\0')))
        .count();
    assert_eq!(framed, 60, "values left framed in bronze");
    let silver = read_layer(out.path(), "silver");
    for (id, json) in strings(&silver, "txn_id")
        .into_iter()
        .zip(strings(&silver, "json_str"))
    {
        let json: serde_json::Value = serde_json::from_str(&json.unwrap()).unwrap();
        assert_eq!(json["txn_id"].as_str(), id.as_deref(), "json_str of {id:?}");
    }

    // Silver: the rows the JSON gives, v3's without a status (its schema has none).
    let got = silver_rows(out.path());
    let mut want = silver_rows(reference_out.path());
    for id in &v3_ids {
        want.get_mut(id).unwrap().1[5] = None;
    }
    assert!(want.len() > 4000, "{} valid records", want.len());
    let differ: Vec<_> = want
        .iter()
        .filter(|(id, row)| got.get(*id) != Some(row))
        .take(3)
        .map(|(id, row)| format!("{id}: want {row:?}, got {:?}", got.get(id)))
        .collect();
    assert!(
        differ.is_empty(),
        "silver differs from the JSON path: {differ:?}"
    );
    assert_eq!(got.len(), want.len(), "no extra row in silver");
    let silver_ids: BTreeSet<String> = got.into_keys().collect();

    // Quarantine: the JSON path's rejects, and the Avro ones with the schema id in the reason.
    let mut expected = reasons(reference_out.path());
    *expected
        .entry(format!(
            "unknown_schema_id: the schema registry has no schema id {UNKNOWN_ID}"
        ))
        .or_default() += 40;
    let got = reasons(out.path());
    let cut_short: usize = got
        .iter()
        .filter(|(r, _)| {
            r.starts_with(&format!(
                "bad_avro: the value does not match its writer schema (id {v1}): "
            ))
        })
        .map(|(_, n)| n)
        .sum();
    assert_eq!(cut_short, 20, "{got:#?}");
    let other: BTreeMap<_, _> = got
        .into_iter()
        .filter(|(r, _)| !r.starts_with("bad_avro"))
        .collect();
    assert_eq!(other, expected);
    // Quarantine's bad_json of an Avro value its decoder rejects is the JSON it renders.
    let quarantine = read_layer(out.path(), "quarantine");
    let rendered_rejects = strings(&quarantine, "bad_json")
        .into_iter()
        .zip(strings(&quarantine, "reason"))
        .filter(|(v, r)| {
            r.as_deref().is_some_and(|r| r.starts_with("out_of_range"))
                && v.as_deref().is_some_and(|v| v.starts_with("{\"txn_id\": "))
        })
        .count();
    assert!(
        rendered_rejects > 0,
        "no rendered out_of_range reject in quarantine"
    );

    // Confluent's own deserializer reads our producer's Avro and the test's.
    let check = check_avro(b, url, TOPIC, "txn_id");
    assert_eq!(check["messages"], topic.len());
    let read: BTreeSet<String> = check["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    // Everything framed but the unknown id's and the cut bodies.
    assert_eq!(check["errors"], 60, "{}", check["first_errors"]);
    let framed_good = check["framed"].as_u64().unwrap() - 60;
    assert_eq!(check["read"], framed_good);
    assert!(framed_good >= 3000 + 500 + 600 - 200, "{framed_good}");
    // What it read and silver does not hold is what the JSON path quarantines too (an
    // out-of-range latitude is valid Avro).
    let rejected_ids: BTreeSet<String> =
        strings(&read_layer(reference_out.path(), "quarantine"), "bad_json")
            .into_iter()
            .flatten()
            .filter_map(|v| {
                let json: serde_json::Value = serde_json::from_str(&v).ok()?;
                Some(json.get("txn_id")?.as_str()?.to_string())
            })
            .collect();
    let missing: Vec<_> = read
        .iter()
        .filter(|id| !silver_ids.contains(*id) && !rejected_ids.contains(*id))
        .take(3)
        .collect();
    assert!(
        missing.is_empty(),
        "read by Confluent's client, in neither silver nor the JSON path's quarantine: {missing:?}"
    );
    assert!(
        read.intersection(&silver_ids).count() >= 3000,
        "the good Avro records read"
    );

    // Gold's rows as Avro, exactly once: Confluent's deserializer reads every message of the
    // topic (read_committed), one per row of gold's files.
    let gold = check_avro(b, url, GOLD, "card_id");
    let gold_files = gold_rows(out.path()).len();
    assert!(gold_files > 50, "{gold_files} gold rows");
    assert_eq!(gold["messages"], gold_files, "one message per gold row");
    assert_eq!(gold["framed"], gold_files, "every message Avro");
    assert_eq!(gold["errors"], 0, "{}", gold["first_errors"]);
    assert_eq!(gold["read"], gold_files);
}

/// What check_avro.py found on `topic`.
fn check_avro(bootstrap: &str, url: &str, topic: &str, id_field: &str) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new("python3")
        .arg(root.join("tests/python/check_avro.py"))
        .args([bootstrap, url, topic, id_field])
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "check_avro.py {topic}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
#[ignore = "needs Apache Kafka and a schema registry (scripts/kafka.sh, scripts/schema-registry.sh; scripts/test.sh runs it)"]
fn a_registry_over_https_or_behind_a_login_needs_its_ca_or_the_login_never_printed() {
    let broker = if is_kafka() {
        Broker::start(3)
    } else {
        Broker::start_as("kafka", 3)
    };
    let registry = SchemaRegistry::start_tls();
    assert!(registry.url.starts_with("https://"), "{}", registry.url);
    let ca = registry.ca();
    let ca = ca.to_str().unwrap();
    let out = Scratch::new("avro-tls");
    let b = broker.bootstrap.as_str();
    let secret_url = registry.url.replacen("https://", "https://ann:s3cret@", 1);

    // Without the CA: one line naming the setting, at once, not a wait.
    let refused = command("producer", out.path())
        .args([
            "--bootstrap-servers",
            b,
            "--format",
            "avro",
            "--count",
            "10",
        ])
        .args(["--schema-registry-url", &registry.url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("SCHEMA_REGISTRY_SSL_CA_LOCATION") && !stderr.contains("waiting"),
        "{stderr}"
    );

    // With it, and credentials in the URL and in their setting: Avro goes through, and neither
    // password appears in anything the binaries print.
    let produced = command("producer", out.path())
        .args([
            "--bootstrap-servers",
            b,
            "--format",
            "avro",
            "--count",
            "500",
        ])
        .args(["--msgs-per-sec", "0", "--log-every", "100000"])
        .args(["--schema-registry-url", &secret_url])
        .args(["--schema-registry-ssl-ca-location", ca])
        .env("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "bob:hunter2")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&produced.stderr);
    assert!(produced.status.success(), "{stderr}");
    assert!(stderr.contains("schema id"), "{stderr}");
    assert!(
        stderr.contains("https://***@127.0.0.1")
            && stderr.contains("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=***"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cret") && !stderr.contains("hunter2"),
        "{stderr}"
    );

    let read = process_all_with(
        b,
        out.path(),
        &[
            "--schema-registry-url",
            &secret_url,
            "--schema-registry-ssl-ca-location",
            ca,
        ],
        &[("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "bob:hunter2")],
    );
    let stderr = String::from_utf8_lossy(&read.stderr);
    assert!(
        !stderr.contains("s3cret") && !stderr.contains("hunter2"),
        "{stderr}"
    );
    assert_eq!(rows(&read_layer(out.path(), "silver")), 500);

    // A processor without the CA stops with one line (exit 2) instead of waiting.
    let other = Scratch::new("avro-tls-no-ca");
    let refused = process_unchecked(
        b,
        other.path(),
        &[
            "--starting-offsets",
            "earliest",
            "--schema-registry-url",
            &registry.url,
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("SCHEMA_REGISTRY_SSL_CA_LOCATION"),
        "{stderr}"
    );

    // Basic auth, enforced by nginx in front of the registry: without the login the producer
    // stops with one line; with it (the setting) Avro goes through; the processor with the
    // login in the URL reads it, with a wrong one it stops (exit 2).
    let guarded = SchemaRegistry::start_with_login("carol:pa55word");
    broker.create_topic("guarded", 3, &[]);
    let produce = |envs: &[(&str, &str)]| {
        command("producer", out.path())
            .args([
                "--bootstrap-servers",
                b,
                "--topic",
                "guarded",
                "--format",
                "avro",
            ])
            .args([
                "--count",
                "300",
                "--msgs-per-sec",
                "0",
                "--log-every",
                "100000",
            ])
            .args(["--schema-registry-url", &guarded.url])
            .envs(envs.iter().copied())
            .output()
            .unwrap()
    };
    let refused = produce(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("refused the login: HTTP 401"), "{stderr}");
    let produced = produce(&[("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "carol:pa55word")]);
    let stderr = String::from_utf8_lossy(&produced.stderr);
    assert!(produced.status.success(), "{stderr}");
    assert!(!stderr.contains("pa55word"), "{stderr}");
    let with_login = |login: &str, out: &Path| {
        let url = guarded
            .url
            .replacen("http://", &format!("http://{login}@"), 1);
        process_unchecked(
            b,
            out,
            &[
                "--topic",
                "guarded",
                "--group-id",
                "guarded",
                "--starting-offsets",
                "earliest",
            ]
            .into_iter()
            .chain(["--schema-registry-url", url.as_str()])
            .collect::<Vec<_>>(),
        )
    };
    let good = Scratch::new("avro-login");
    let read = with_login("carol:pa55word", good.path());
    let stderr = String::from_utf8_lossy(&read.stderr);
    assert!(read.status.success(), "{stderr}");
    assert!(!stderr.contains("pa55word"), "{stderr}");
    assert_eq!(rows(&read_layer(good.path(), "silver")), 300);
    let bad = Scratch::new("avro-bad-login");
    let refused = with_login("carol:nope", bad.path());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refused the login: HTTP 401"), "{stderr}");
}
