//! Seed 001's events dataset end to end: the producer's `--dataset events` into the broker, the
//! processor's Hive-partitioned Parquet, windows and quarantine, and its exactly-once under
//! SIGKILL. (The events go to the harness's topic: the embedded broker creates no other.)

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::*;

const DATASET: [&str; 4] = ["--dataset", "events", "--topic", TOPIC];

/// Each row of `events/id=<id>/*.parquet`: (id from the folder, ts, value).
pub(crate) fn partitioned_rows(out: &Path) -> Vec<(i64, i64, f64)> {
    let mut rows = Vec::new();
    let Ok(dirs) = std::fs::read_dir(out.join("events")) else {
        return rows;
    };
    for dir in dirs {
        let dir = dir.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let Some(id) = name.strip_prefix("id=") else {
            continue;
        };
        let id: i64 = id.parse().unwrap();
        let relative = format!("events/{name}");
        let batches = read_layer(out, &relative);
        for (ts, value) in i64s(&batches, "ts")
            .into_iter()
            .zip(f64s(&batches, "value"))
        {
            rows.push((id, ts, value.unwrap()));
        }
    }
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rows
}

/// The topic's valid events by id (id, ts, value), and how many messages are invalid.
pub(crate) fn produced(bootstrap: &str) -> (Vec<(i64, i64, f64)>, usize) {
    let topic = consume_all(bootstrap);
    let mut valid = Vec::new();
    let mut invalid = 0;
    for m in &topic {
        let text = std::str::from_utf8(m.value.as_deref().unwrap_or_default()).unwrap_or("");
        match txn_core::event::decode_event(text) {
            Ok(e) => valid.push((e.id, e.ts, e.value)),
            Err(_) => invalid += 1,
        }
    }
    valid.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (valid, invalid)
}

fn counts_by_id(rows: &[(i64, i64, f64)]) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for (id, _, _) in rows {
        *counts.entry(*id).or_default() += 1;
    }
    counts
}

#[test]
fn events_end_to_end_per_id_counts_equal_what_was_produced_and_rejects_have_reasons() {
    let broker = Broker::start(3);
    let out = Scratch::new("events-e2e");
    run_producer(
        &broker.bootstrap,
        out.path(),
        &[
            &DATASET[..],
            &[
                "--msgs-per-sec",
                "0",
                "--count",
                "30000",
                "--seed",
                "31",
                "--bad-ratio",
                "0.03",
                "--event-time-start",
                "2025-11-06T07:00:00Z",
            ],
        ]
        .concat(),
    );
    let run = process_all(
        &broker.bootstrap,
        out.path(),
        &[&DATASET[..], &["--max-offsets-per-trigger", "7500"]].concat(),
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("events="), "{stderr}");

    let (valid, invalid) = produced(&broker.bootstrap);
    assert!(invalid > 500, "rejects were produced: {invalid}");
    let files = partitioned_rows(out.path());
    assert_eq!(counts_by_id(&files), counts_by_id(&valid), "rows per id");
    assert_eq!(counts_by_id(&files).len(), 10, "ids 0..9");
    assert_eq!(files, valid, "the same events, each once");

    // One file per id per batch, named after the batch.
    let id3 = layer_files(out.path(), "events/id=3");
    assert!((2..=4).contains(&id3.len()), "{id3:?}");
    assert!(id3.iter().all(|p| p
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("events_")));

    let quarantine = read_layer(out.path(), "events_quarantine");
    assert_eq!(rows(&quarantine), invalid);
    let reasons = strings(&quarantine, "reason");
    for code in [
        "malformed_json",
        "missing_field",
        "bad_timestamp",
        "wrong_type",
        "not_an_object",
    ] {
        assert!(
            reasons
                .iter()
                .flatten()
                .any(|r| r.starts_with(&format!("{code}: "))),
            "a {code} reject: {reasons:?}"
        );
    }

    // The windows: the last update of each (id, window) counts that window's events.
    let agg = read_layer(out.path(), "events_agg");
    let mut last: BTreeMap<(i64, i64), (i64, f64)> = BTreeMap::new();
    for (((start, id), n), avg) in i64s(&agg, "window_start")
        .into_iter()
        .zip(i64s(&agg, "id"))
        .zip(i64s(&agg, "event_count"))
        .zip(f64s(&agg, "avg_value"))
    {
        // Files are read in batch order: a later update replaces an earlier one.
        last.insert((id, start), (n, avg.unwrap()));
    }
    let mut expected: BTreeMap<(i64, i64), (i64, f64)> = BTreeMap::new();
    for (id, ts, value) in &files {
        let e = expected
            .entry((*id, ts.div_euclid(10_000_000) * 10_000_000))
            .or_default();
        e.0 += 1;
        e.1 += value;
    }
    assert_eq!(last.len(), expected.len(), "a window per id and 10 s");
    for (key, (n, sum)) in expected {
        let (got_n, got_avg) = last[&key];
        assert_eq!(got_n, n, "{key:?}");
        assert!((got_avg - sum / n as f64).abs() < 1e-9, "{key:?}");
    }
}

#[test]
fn events_every_message_lands_exactly_once_after_repeated_sigkills() {
    let broker = Broker::start(3);
    let out = Scratch::new("events-crash");
    let mut producer = spawn_producer(
        &broker.bootstrap,
        out.path(),
        &[
            &DATASET[..],
            &[
                "--msgs-per-sec",
                "1000",
                "--count",
                "12000",
                "--seed",
                "37",
                "--bad-ratio",
                "0.03",
                "--event-time-start",
                "2025-11-06T07:00:00Z",
            ],
        ]
        .concat(),
    );
    let args = [
        &DATASET[..],
        &["--trigger", "0", "--max-offsets-per-trigger", "400"],
    ]
    .concat();
    let (kills_before_commit, _) =
        kill_repeatedly(&broker.bootstrap, out.path(), &args, &[], Kills::runs(12));
    assert!(producer.wait().unwrap().success());
    assert!(kills_before_commit >= 4, "{kills_before_commit}");
    process_all(
        &broker.bootstrap,
        out.path(),
        &[&DATASET[..], &["--max-offsets-per-trigger", "400"]].concat(),
    );

    // Event times are unique (a synthetic clock, 1 ms apart): each valid event once in the
    // partitions, each invalid message once in quarantine, nothing half-written in staging.
    let (valid, invalid) = produced(&broker.bootstrap);
    assert_eq!(valid.len() + invalid, 12000);
    assert_eq!(partitioned_rows(out.path()), valid);
    let quarantine = read_layer(out.path(), "events_quarantine");
    let mut offsets: Vec<(i64, i64)> = i64s(&quarantine, "partition")
        .into_iter()
        .zip(i64s(&quarantine, "offset"))
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(offsets.len(), invalid, "each reject once");
    assert_eq!(rows(&quarantine), invalid);
    for layer in ["events", "events_agg", "events_quarantine"] {
        let staging = out.path().join(layer).join("_staging");
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0, "{layer}");
    }
}
