//! The exactly-once guarantee of SPEC §4 under SIGKILL at random moments, including between a
//! batch's file renames and its commit.

use std::path::Path;

use crate::harness::*;

const GOLD: [&str; 4] = [
    "--gold-window",
    "1 second",
    "--gold-watermark-delay",
    "2 seconds",
];

/// Late rows over the committed batches.
fn late_rows(out: &Path) -> u64 {
    commit_files(out)
        .iter()
        .map(|p| checkpoint_json(p)["late_rows"].as_u64().unwrap())
        .sum()
}

#[test]
fn every_offset_lands_exactly_once_after_repeated_sigkills() {
    let broker = Broker::start(3);
    let out = Scratch::new("crash");
    // Produced over ~24 s, about as long as the kills below take: a processor started late in
    // the loop still finds new offsets to stage, so the kills that wait for the pause before a
    // commit have a batch to pause in (at 3,000 msg/s the topic ran dry after ~8 s and a fast
    // processor left later runs nothing to do).
    let producer = spawn_producer(
        &broker.bootstrap,
        out.path(),
        &[
            "--msgs-per-sec",
            "1000",
            "--count",
            "24000",
            "--seed",
            "9",
            "--bad-ratio",
            "0.03",
            "--event-time-start",
            "2025-11-07T07:30:00Z",
        ],
    );
    let mut producer = producer;

    let args = [
        &["--trigger", "0", "--max-offsets-per-trigger", "700"][..],
        &GOLD[..],
    ]
    .concat();
    // Every other run is killed when the files of its batch are in place and its commit is not
    // written yet.
    let kills = 24;
    let (kills_before_commit, _) = kill_repeatedly(
        &broker.bootstrap,
        out.path(),
        &args,
        &[],
        Kills::runs(kills),
    );
    assert!(producer.wait().unwrap().success());
    assert!(
        kills_before_commit >= 8,
        "kills between rename and commit: {kills_before_commit}"
    );
    // A last run, undisturbed, finishes what is left.
    process_all(
        &broker.bootstrap,
        out.path(),
        &[&["--max-offsets-per-trigger", "700"][..], &GOLD[..]].concat(),
    );

    let topic = assert_each_offset_once(&broker.bootstrap, out.path(), 24000);
    let valid = topic
        .iter()
        .filter(|m| txn_core::decode(m.value.as_deref()).is_ok())
        .count();

    // Nothing half-written is visible, and staging is empty once the last run ended cleanly.
    for layer in ["bronze", "silver", "gold", "quarantine", "raw_csv"] {
        let staging = out.path().join(layer).join("_staging");
        assert_eq!(
            std::fs::read_dir(&staging).unwrap().count(),
            0,
            "{layer}/_staging is empty"
        );
    }
    assert_eq!(csv_rows(out.path()), valid, "raw CSV mirrors silver");

    // Gold equals an uninterrupted run over the same data.
    let reference = Scratch::new("crash-reference");
    process_all(
        &broker.bootstrap,
        reference.path(),
        &[&["--max-offsets-per-trigger", "700"][..], &GOLD[..]].concat(),
    );
    assert_eq!(late_rows(out.path()), 0);
    assert_eq!(late_rows(reference.path()), 0);
    let (crashed, clean) = (gold_rows(out.path()), gold_rows(reference.path()));
    assert!(clean.len() > 100, "windows were closed: {}", clean.len());
    assert_eq!(
        crashed, clean,
        "gold after {kills} SIGKILLs equals gold of an uninterrupted run"
    );
}
