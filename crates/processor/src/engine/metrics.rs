//! The processor's Prometheus metrics, recorded once per committed batch (a few dozen counter and
//! gauge updates a batch: nothing on the per-record path). Without `METRICS_ADDR` no recorder is
//! installed and each call does nothing. `dataset` and `topic` are labels of every series (set
//! when the exporter is installed, [`txn_core::telemetry`]).
//! [`NAMES`] lists each with its description (its `# HELP` line); the README's metrics table
//! documents them with their labels.

/// Input offsets this process has settled (committed batches' ranges, and offsets found lost),
/// over every run in the process: the local stack's back-pressure compares it with the topic's
/// end, in-process, whatever the consumer group or the broker keeps.
pub static SETTLED_OFFSETS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

use metrics::{counter, gauge, histogram};
use txn_core::telemetry::Metric;

use super::progress::BatchReport;

/// Every metric the processor exports, with its description: the `# HELP` lines, and the
/// checks of dashboards and alert rules.
pub const NAMES: [Metric; 19] = [
    Metric::counter("pipeline_batches_total", "Committed batches."),
    Metric::counter(
        "pipeline_input_rows_total",
        "Kafka records read and committed.",
    ),
    Metric::counter(
        "pipeline_input_bytes_total",
        "Key and value bytes of the Kafka records read and committed.",
    ),
    Metric::counter(
        "pipeline_output_rows_total",
        "Rows written per output (its folder or table, or topic:<name>).",
    ),
    Metric::counter(
        "pipeline_quarantined_rows_total",
        "Quarantined rows by reason code.",
    ),
    Metric::counter(
        "pipeline_late_rows_total",
        "Rows dropped from gold's windows as late (kept in silver).",
    ),
    Metric::counter(
        "pipeline_lost_offsets_total",
        "Offsets Kafka deleted before they were read (FAIL_ON_DATA_LOSS=false): in no layer.",
    ),
    Metric::histogram(
        "pipeline_batch_stage_seconds",
        "Time of each stage of a batch: read, decode, write, commit.",
    ),
    Metric::histogram(
        "pipeline_batch_duration_seconds",
        "Time of a batch's four stages together.",
    ),
    Metric::histogram(
        "pipeline_commit_latency_seconds",
        "From a batch's plan to its commit.",
    ),
    Metric::gauge(
        "pipeline_last_commit_timestamp_seconds",
        "When the last batch was committed, Unix time.",
    ),
    Metric::gauge(
        "pipeline_last_committed_batch",
        "The last committed batch's id.",
    ),
    Metric::gauge(
        "pipeline_watermark_timestamp_seconds",
        "Gold's event-time watermark (the windows' for events), Unix time.",
    ),
    Metric::counter(
        "pipeline_operator_late_rows_total",
        "Rows each operator found late.",
    ),
    Metric::gauge(
        "pipeline_operator_watermark_timestamp_seconds",
        "Each operator's event-time watermark, Unix time.",
    ),
    Metric::gauge(
        "pipeline_input_lag_offsets",
        "Offsets left in the partition after the last batch.",
    ),
    Metric::gauge(
        "pipeline_trigger_interval_seconds",
        "TRIGGER_INTERVAL in seconds (0: back to back, or available-now).",
    ),
    Metric::counter(
        "pipeline_cassandra_rows_total",
        "Rows upserted into each Cassandra table.",
    ),
    Metric::counter(
        "pipeline_cassandra_retries_total",
        "Rounds of Cassandra writes tried again (Cassandra down or refusing them).",
    ),
];

/// Records the settings that alert rules compare with (set once, at start).
pub fn record_start(trigger_interval: std::time::Duration) {
    gauge!("pipeline_trigger_interval_seconds").set(trigger_interval.as_secs_f64());
}

/// Records rows a Cassandra table acknowledged.
pub fn record_cassandra_rows(table: &str, rows: u64) {
    counter!("pipeline_cassandra_rows_total", "table" => table.to_string()).increment(rows);
}

/// Records a round of Cassandra writes tried again.
pub fn record_cassandra_retry() {
    counter!("pipeline_cassandra_retries_total").increment(1);
}

/// Records a committed batch. `planned_at`: the batch's planned time, UTC microseconds.
pub fn record_batch(report: &BatchReport, planned_at: i64) {
    counter!("pipeline_batches_total").increment(1);
    counter!("pipeline_input_rows_total").increment(report.rows);
    counter!("pipeline_input_bytes_total").increment(report.bytes);
    for (output, rows) in &report.outputs {
        counter!("pipeline_output_rows_total", "output" => output.clone()).increment(*rows);
    }
    for (reason, rows) in &report.rejects {
        counter!("pipeline_quarantined_rows_total", "reason" => *reason).increment(*rows);
    }
    counter!("pipeline_late_rows_total").increment(report.late);
    counter!("pipeline_lost_offsets_total").increment(report.lost);
    for (stage, time) in [
        ("read", report.read),
        ("decode", report.decode),
        ("write", report.write),
        ("commit", report.commit),
    ] {
        histogram!("pipeline_batch_stage_seconds", "stage" => stage).record(time.as_secs_f64());
    }
    histogram!("pipeline_batch_duration_seconds").record(report.total().as_secs_f64());
    let now = txn_core::time::now_micros();
    histogram!("pipeline_commit_latency_seconds").record((now - planned_at).max(0) as f64 / 1e6);
    gauge!("pipeline_last_commit_timestamp_seconds").set(now as f64 / 1e6);
    gauge!("pipeline_last_committed_batch").set(report.batch as f64);
    if let Some(watermark) = report.watermark {
        gauge!("pipeline_watermark_timestamp_seconds").set(watermark as f64 / 1e6);
    }
    for op in &report.operators {
        counter!("pipeline_operator_late_rows_total", "operator" => op.name).increment(op.late);
        if let Some(watermark) = op.watermark {
            gauge!("pipeline_operator_watermark_timestamp_seconds", "operator" => op.name)
                .set(watermark as f64 / 1e6);
        }
    }
    for (partition, left) in &report.lags {
        gauge!("pipeline_input_lag_offsets", "partition" => partition.to_string())
            .set(*left as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::NAMES;

    /// The names in `counter!("…")`, `gauge!("…")` and `histogram!("…")` calls of `source`.
    fn recorded_names(source: &str) -> std::collections::BTreeSet<&str> {
        ["counter!(\"", "gauge!(\"", "histogram!(\""]
            .iter()
            .flat_map(|call| source.split(call).skip(1))
            .filter_map(|rest| rest.split('"').next())
            .collect()
    }

    #[test]
    fn names_lists_exactly_the_metrics_recorded_each_described() {
        let source = include_str!("metrics.rs");
        let recorded = recorded_names(source.split("#[cfg(test)]").next().unwrap());
        let listed: std::collections::BTreeSet<&str> = NAMES.iter().map(|m| m.name).collect();
        assert_eq!(recorded, listed);
        assert!(NAMES.iter().all(|m| m.help.ends_with('.')));
    }
}
