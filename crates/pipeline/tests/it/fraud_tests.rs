//! Seed 002's fraud detection on real Kafka: the alerts of a seeded realistic stream with
//! injected frauds, after SIGKILLs at random moments, are exactly those of the same rules run
//! once over the whole topic, each once in `fraud-alerts` (read_committed) and in
//! `fraud_alerts/`; every injection is found and every alert is one an injection explains
//! (the truth: the same seeded stream generated again here); clean traffic raises none.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use processor::operators::fraud::{FraudRules, Txn};

use crate::harness::*;

pub(crate) const ALERTS: &str = "fraud-alerts";
/// The rules' watermark delay in these tests: an hour. The synthetic stream packs about a second
/// of event time into each message, so partitions read unevenly by a batch of 400 offsets can be
/// minutes of event time apart; with the default 5 minutes some records would be late, and which
/// ones would depend on the batches (and so on the kills).
pub(crate) const DELAY_MICROS: i64 = 3_600_000_000;

/// (alert_type, user_id, alert_time µs, txn_id)
pub(crate) type AlertKey = (String, String, i64, String);

/// The producer's stream settings, which [`injections`] repeats.
const USERS: usize = 150;
const BAD_RATIO: f64 = 0.02;
const LATE_RATIO: f64 = 0.02;

pub(crate) fn producer_args(count: &str, fraud_ratio: &str, seed: &str, rate: &str) -> Vec<String> {
    [
        "--profile",
        "realistic",
        "--users",
        &USERS.to_string(),
        "--bad-ratio",
        &BAD_RATIO.to_string(),
        "--late-ratio",
        &LATE_RATIO.to_string(),
        "--fraud-ratio",
        fraud_ratio,
        "--msgs-per-sec",
        rate,
        "--count",
        count,
        "--seed",
        seed,
        "--event-time-start",
        "2025-11-07T07:30:00Z",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One injected pattern: its user and purchases (txn_id, event time), in the order sent.
#[derive(Debug)]
struct Injection {
    pattern: &'static str,
    user: String,
    txns: Vec<(String, i64)>,
}

/// The truth: the injections of the producer's seeded stream, generated again (the realistic
/// profile reads the clock once, at its first message: the test's `--event-time-start`).
fn injections(count: usize, fraud_ratio: f64, seed: u64) -> Vec<Injection> {
    use producer::generator::MessageGenerator;
    let start = txn_core::time::parse_rfc3339_micros("2025-11-07T07:30:00Z").unwrap();
    let mut g = producer::realistic::RealisticGenerator::new(
        seed,
        BAD_RATIO,
        LATE_RATIO,
        fraud_ratio,
        USERS,
    );
    let mut found: BTreeMap<u64, Injection> = BTreeMap::new();
    for _ in 0..count {
        g.next(start);
        if let Some((pattern, n)) = g.injection() {
            let t = txn_core::decode(Some(g.payload())).expect("an injected purchase is valid");
            let i = found.entry(n).or_insert_with(|| Injection {
                pattern,
                user: t.user_id.as_deref().unwrap_or_default().to_string(),
                txns: Vec::new(),
            });
            i.txns.push((t.txn_id.to_string(), t.event_time));
        }
    }
    found.into_values().collect()
}

/// Every injection raised its alert (its session's end too, where the final watermark passed
/// it), and every alert is explained by an injection. `times`: each user's valid event times,
/// sorted; `latest_of`: for a purchase read after a later one of its user (a late message), the
/// user's latest purchase then.
fn assert_alerts_match_the_injections(
    alerts: &[AlertKey],
    injected: &[Injection],
    times: &HashMap<String, Vec<i64>>,
    latest_of: &HashMap<String, String>,
    trail: &HashMap<String, Vec<String>>,
    wm: i64,
) {
    const TEN_MINUTES: i64 = 600_000_000;
    // Where the session holding `at` ends: 10 minutes after its last transaction.
    let session_end = |user: &str, at: i64| {
        let times = &times[user];
        let mut last = at;
        for &t in times.iter().filter(|&&t| t > at) {
            if t - last >= TEN_MINUTES {
                break;
            }
            last = t;
        }
        last + TEN_MINUTES
    };
    let on = |kind: &str, txn: &str| alerts.iter().any(|a| a.0 == kind && a.3 == txn);
    let mut checked: BTreeMap<&str, usize> = BTreeMap::new();
    for i in injected {
        // An injection the stream's end cut short is not checked (its alerts are explained
        // below all the same).
        let size = match i.pattern {
            "rapid_location_change" => 2,
            "burst" => 6,
            "repeated_large" => 3,
            _ => 1,
        };
        if i.txns.len() < size {
            continue;
        }
        // Judged in the batch that read it: every injection raised its alert by the end.
        let last = i.txns.iter().map(|t| t.1).max().unwrap();
        *checked.entry(i.pattern).or_default() += 1;
        let txn = |k: usize| i.txns[k].0.as_str();
        let found = match i.pattern {
            "impossible_travel" => on("IMPOSSIBLE_TRAVEL", txn(0)),
            "large_amount" => on("LARGE_AMOUNT", txn(0)),
            "rapid_location_change" => on("RAPID_LOCATION_CHANGE", txn(1)),
            "burst" => alerts
                .iter()
                .any(|a| a.0 == "BURST" && a.1 == i.user && (i.txns[0].1..=last).contains(&a.2)),
            "repeated_large" => on("FRAUD_RISK", txn(2)),
            other => panic!("unknown pattern {other}"),
        };
        assert!(found, "injection not found: {i:?}");
        let risky = matches!(i.pattern, "large_amount" | "repeated_large");
        let end = session_end(&i.user, last);
        if risky && end <= wm {
            assert!(
                alerts
                    .iter()
                    .any(|a| a.0 == "SESSION_TIMEOUT" && a.1 == i.user && a.2 == end),
                "the session with {i:?} ends with SESSION_TIMEOUT at {end}"
            );
        }
    }
    for pattern in producer::realistic::PATTERNS {
        assert!(
            checked.get(pattern).is_some_and(|&n| n >= 10),
            "each pattern injected and evaluated at least 10 times: {checked:?}"
        );
    }
    let of = |patterns: &[&str], k: Option<usize>| -> Vec<&str> {
        injected
            .iter()
            .filter(|i| patterns.contains(&i.pattern))
            .flat_map(|i| match k {
                Some(k) => i
                    .txns
                    .get(k)
                    .map(|t| t.0.as_str())
                    .into_iter()
                    .collect::<Vec<_>>(),
                None => i.txns.iter().map(|t| t.0.as_str()).collect(),
            })
            .collect()
    };
    let far = [
        of(&["impossible_travel"], Some(0)),
        of(&["rapid_location_change"], Some(1)),
    ]
    .concat();
    let large = of(&["large_amount"], None);
    let risky = of(&["large_amount", "repeated_large"], None);
    for a in alerts {
        let (kind, user, at, txn) = (a.0.as_str(), &a.1, a.2, a.3.as_str());
        let explained = match kind {
            "IMPOSSIBLE_TRAVEL" | "RAPID_LOCATION_CHANGE" => {
                // A late purchase is judged against its user's latest one: when that is an
                // injection's far purchase, the travel rules fire on the late one too.
                far.contains(&txn)
                    || latest_of
                        .get(txn)
                        .is_some_and(|latest| far.contains(&latest.as_str()))
            }
            "LARGE_AMOUNT" => large.contains(&txn),
            "FRAUD_RISK" => risky.contains(&txn),
            // Outside a burst a user's purchases are 20 s or more apart (a rapid change's pair
            // apart): a window cannot reach six without some of the burst, so it fires from the
            // burst's first purchase to less than a minute after its last.
            // (A late purchase within a minute before the burst may be the one that makes six.)
            "BURST" => injected.iter().any(|i| {
                i.pattern == "burst"
                    && &i.user == user
                    && (i.txns[0].1 - 60_000_000..i.txns[i.txns.len() - 1].1 + 60_000_000)
                        .contains(&at)
            }),
            "SESSION_TIMEOUT" => injected.iter().any(|i| {
                matches!(i.pattern, "large_amount" | "repeated_large")
                    && &i.user == user
                    && session_end(user, i.txns[0].1) == at
            }),
            other => panic!("unknown alert type {other}"),
        };
        assert!(
            explained,
            "an alert no injection explains: {a:?}; the user's purchases in offset order: {:#?}; injections: {:#?}",
            trail.get(user),
            injected.iter().filter(|i| &i.user == user).collect::<Vec<_>>()
        );
    }
}

/// The alerts of the rules run once over every transaction of the topic.
pub(crate) fn oracle(bootstrap: &str) -> Vec<AlertKey> {
    let txns: Vec<Txn> = consume_all(bootstrap)
        .iter()
        .filter_map(|m| {
            let t = txn_core::decode(m.value.as_deref()).ok()?;
            Some(Txn {
                event_time: t.event_time,
                partition: m.partition,
                offset: m.offset,
                user_id: t.user_id?.to_string(),
                txn_id: t.txn_id.to_string(),
                amount: t.amount,
                currency: t.currency.map(|c| c.to_string()),
                merchant: t.merchant.map(|c| c.to_string()),
                category: t.category.map(|c| c.to_string()),
                lat: t.lat,
                lon: t.lon,
            })
        })
        .collect();
    let mut keys: Vec<AlertKey> = FraudRules::new(DELAY_MICROS)
        .apply(txns)
        .alerts
        .into_iter()
        .map(|a| {
            (
                a.alert_type.to_string(),
                a.user_id,
                a.alert_time,
                a.txn.map(|t| t.txn_id).unwrap_or_default(),
            )
        })
        .collect();
    keys.sort();
    keys
}

pub(crate) fn topic_alerts(bootstrap: &str) -> Vec<AlertKey> {
    let mut keys: Vec<AlertKey> = consume_topic(bootstrap, ALERTS)
        .iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_slice(m.value.as_deref().unwrap()).unwrap();
            let user = v["user_id"].as_str().unwrap().to_string();
            assert_eq!(m.key.as_deref(), Some(user.as_bytes()), "keyed by user");
            (
                v["alert_type"].as_str().unwrap().to_string(),
                user,
                txn_core::time::parse_rfc3339_micros(v["alert_time"].as_str().unwrap()).unwrap(),
                v["txn_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    keys.sort();
    keys
}

pub(crate) fn file_alerts(out: &std::path::Path) -> Vec<AlertKey> {
    let files = read_layer(out, "fraud_alerts");
    let mut keys: Vec<AlertKey> = strings(&files, "alert_type")
        .into_iter()
        .zip(strings(&files, "user_id"))
        .zip(i64s(&files, "alert_time"))
        .zip(strings(&files, "txn_id"))
        .map(|(((k, u), t), id)| (k.unwrap(), u.unwrap(), t, id.unwrap_or_default()))
        .collect();
    keys.sort();
    keys
}

/// The processor's settings (the trigger apart: back to back, or available-now at the end).
pub(crate) const FRAUD_PROCESSOR: [&str; 6] = [
    "--fraud-detection",
    "true",
    "--fraud-watermark-delay",
    "60 minutes",
    "--max-offsets-per-trigger",
    "400",
];

#[test]
#[ignore = "needs Apache Kafka (scripts/kafka.sh; scripts/test.sh runs it)"]
fn kafka_fraud_alerts_equal_the_rules_run_once_each_once_after_ten_sigkills() {
    let broker = if is_kafka() {
        Broker::start(3)
    } else {
        Broker::start_as("kafka", 3)
    };
    broker.create_topic(ALERTS, 3, &[]);
    let out = Scratch::new("fraud");
    let args = producer_args("12000", "0.05", "42", "800");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let producer = spawn_producer(&broker.bootstrap, out.path(), &args);
    let processor_args = [&FRAUD_PROCESSOR[..], &["--trigger", "0"]].concat();
    let kills = 11;
    let plan = Kills::runs(kills)
        .pause_every(3, "300 ms")
        .after_connecting(300, 1500);
    kill_repeatedly(&broker.bootstrap, out.path(), &processor_args, &[], plan);
    let produced = producer.wait_with_output().unwrap();
    assert!(produced.status.success());
    let truth = injections(12_000, 0.05, 42);
    let summary = String::from_utf8_lossy(&produced.stderr);
    let injected = summary
        .lines()
        .find(|l| l.contains("[producer] done:"))
        .and_then(|l| l.split("injected: ").nth(1))
        .unwrap_or_default()
        .to_string();
    process_all(&broker.bootstrap, out.path(), &FRAUD_PROCESSOR);

    let expected = oracle(&broker.bootstrap);
    let mut in_topic = std::collections::HashSet::new();
    let mut times: HashMap<String, Vec<i64>> = HashMap::new();
    // Purchases read after a later one of their user (a user's card keys one partition), and
    // that user's latest purchase then.
    let mut latest_of: HashMap<String, String> = HashMap::new();
    let mut latest: HashMap<String, (i64, String)> = HashMap::new();
    let mut trail: HashMap<String, Vec<String>> = HashMap::new();
    let mut messages = consume_all(&broker.bootstrap);
    messages.sort_by_key(|m| (m.partition, m.offset));
    for m in messages {
        if let Ok(t) = txn_core::decode(m.value.as_deref()) {
            in_topic.insert(t.txn_id.to_string());
            let user = t.user_id.as_deref().unwrap_or_default().to_string();
            let seen = times.entry(user.clone()).or_default();
            seen.push(t.event_time);
            let newest = latest
                .entry(user.clone())
                .or_insert((t.event_time, t.txn_id.to_string()));
            if newest.0 > t.event_time {
                latest_of.insert(t.txn_id.to_string(), newest.1.clone());
            } else {
                *newest = (t.event_time, t.txn_id.to_string());
            }
            trail.entry(user).or_default().push(format!(
                "{}@{} {} {} {:?} {:?} {:?}",
                m.partition, m.offset, t.event_time, t.txn_id, t.amount, t.lat, t.lon
            ));
        }
    }
    times.values_mut().for_each(|t| t.sort());
    assert!(
        truth
            .iter()
            .flat_map(|i| &i.txns)
            .all(|t| in_topic.contains(&t.0)),
        "the truth is the producer's stream"
    );
    // The final watermark: the largest event time in the topic less the delay.
    let max_event_time = times.values().filter_map(|t| t.last()).max().unwrap();
    assert_alerts_match_the_injections(
        &expected,
        &truth,
        &times,
        &latest_of,
        &trail,
        max_event_time - DELAY_MICROS,
    );
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for (kind, ..) in &expected {
        *by_type.entry(kind.as_str()).or_default() += 1;
    }
    for kind in [
        "IMPOSSIBLE_TRAVEL",
        "LARGE_AMOUNT",
        "RAPID_LOCATION_CHANGE",
        "BURST",
        "FRAUD_RISK",
        "SESSION_TIMEOUT",
    ] {
        assert!(
            by_type.get(kind).is_some_and(|&n| n > 0),
            "every injected pattern is found: {by_type:?} (injected: {injected})"
        );
    }
    let topic = topic_alerts(&broker.bootstrap);
    let missing: Vec<_> = expected
        .iter()
        .filter(|a| !topic.contains(a))
        .take(5)
        .collect();
    let extra: Vec<_> = topic
        .iter()
        .filter(|a| !expected.contains(a))
        .take(5)
        .collect();
    assert_eq!(
        topic.len(),
        expected.len(),
        "alerts in the topic after {kills} SIGKILLs ({by_type:?}); missing {missing:?}; extra {extra:?}"
    );
    assert_eq!(
        topic, expected,
        "the topic holds exactly the expected alerts, each once"
    );
    assert_eq!(
        file_alerts(out.path()),
        expected,
        "fraud_alerts/ holds the same"
    );

    // The windows: every (user, category) window lists as many merchants as it counts.
    let aggs = read_layer(out.path(), "user_aggregates");
    assert!(rows(&aggs) > 100);
    for batch in &aggs {
        use arrow_array::Array;
        let counts = batch
            .column_by_name("transaction_count")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .unwrap();
        let merchants = batch
            .column_by_name("merchants")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::ListArray>()
            .unwrap();
        for row in 0..batch.num_rows() {
            assert_eq!(merchants.value(row).len() as i64, counts.value(row));
        }
    }
}

#[test]
fn fraud_detection_on_clean_realistic_traffic_raises_no_alert() {
    let broker = Broker::start(3);
    let out = Scratch::new("fraud-clean");
    let args = producer_args("6000", "0", "7", "0");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_producer(&broker.bootstrap, out.path(), &args);
    let run = process_all(&broker.bootstrap, out.path(), &FRAUD_PROCESSOR);
    assert!(run.status.success());
    assert_eq!(oracle(&broker.bootstrap), Vec::<AlertKey>::new());
    assert_eq!(file_alerts(out.path()), Vec::<AlertKey>::new());
    let aggs = read_layer(out.path(), "user_aggregates");
    assert!(
        rows(&aggs) > 100,
        "the windows are written: {}",
        rows(&aggs)
    );
}

/// Each rule's fraud planted on the last transaction of the topic, round after round: an
/// available-now run alerts it, with no later traffic to move a watermark.
#[test]
fn a_fraud_on_the_last_transaction_of_a_topic_is_alerted_by_an_available_now_run() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let broker = Broker::start_with_topics(3, &[(ALERTS, 3)]);
    let out = Scratch::new("fraud-planted");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    const PARIS: (f64, f64) = (48.8566, 2.3522);
    const TOKYO: (f64, f64) = (35.6762, 139.6503);
    // 100 km east of Paris.
    const MEAUX_AND_BEYOND: (f64, f64) = (48.8566, 3.7152);
    // A purchase: seconds after the round's start, amount, place.
    type Purchase = (i64, f64, (f64, f64));
    // Each rule and its round's purchases; the last is planted.
    let rounds: [(&str, Vec<Purchase>); 5] = [
        (
            "IMPOSSIBLE_TRAVEL",
            vec![(0, 20.0, PARIS), (300, 20.0, TOKYO)],
        ),
        (
            "LARGE_AMOUNT",
            vec![(0, 20.0, PARIS), (120, 25_000.0, PARIS)],
        ),
        (
            "RAPID_LOCATION_CHANGE",
            vec![(0, 20.0, PARIS), (30, 20.0, MEAUX_AND_BEYOND)],
        ),
        ("BURST", (0..6).map(|i| (i * 10, 20.0, PARIS)).collect()),
        (
            "FRAUD_RISK",
            vec![
                (0, 6_000.0, PARIS),
                (60, 6_000.0, PARIS),
                (120, 6_000.0, PARIS),
            ],
        ),
    ];
    let start = txn_core::time::parse_rfc3339_micros("2025-11-07T07:30:00Z").unwrap();
    for (round, (rule, purchases)) in rounds.iter().enumerate() {
        let user = format!("planted_{round}");
        let card = format!("card_planted_{round}");
        let mut last_id = String::new();
        for (i, (at, amount, (lat, lon))) in purchases.iter().enumerate() {
            let micros = start + round as i64 * 3_600_000_000 + at * 1_000_000;
            let mut ts = String::new();
            txn_core::time::write_python_isoformat(&mut ts, micros);
            last_id = format!("{user}-{i}");
            let value = format!(
                r#"{{"txn_id": "{last_id}", "event_ts": "{ts}", "user_id": "{user}", "card_id": "{card}", "merchant": "Shop", "category": "food", "amount": {amount}, "currency": "EUR", "status": "APPROVED", "city": "Paris", "country": "FR", "lat": {lat}, "lon": {lon}}}"#
            );
            producer
                .send(BaseRecord::to(TOPIC).key(&card).payload(&value))
                .map_err(|(e, _)| e)
                .unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        process_all(
            &broker.bootstrap,
            out.path(),
            &["--fraud-detection", "true"],
        );
        let planted = |alerts: &[AlertKey]| {
            alerts
                .iter()
                .filter(|a| a.0 == *rule && a.3 == last_id)
                .count()
        };
        let in_topic = topic_alerts(&broker.bootstrap);
        assert_eq!(
            planted(&in_topic),
            1,
            "{rule} on the topic's last transaction {last_id}, once in the topic: {in_topic:?}"
        );
        assert_eq!(planted(&file_alerts(out.path())), 1, "and in fraud_alerts/");
    }
}
