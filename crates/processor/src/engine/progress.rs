//! The per-batch report: one log line an operator can read, and the optional silver preview.

use std::fmt::{self, Write as _};
use std::time::Duration;

use txn_core::time::write_python_isoformat;

use super::source::OffsetRange;

/// An operator after a batch: the rows it found late in the batch, and its watermark.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorFigures {
    pub name: &'static str,
    pub late: u64,
    pub watermark: Option<i64>,
}

/// Everything the progress line says about one batch.
#[derive(Debug, Default, Clone)]
pub struct BatchReport {
    pub dataset: txn_core::Dataset,
    pub topic: String,
    pub batch: u64,
    pub rows: u64,
    pub bytes: u64,
    /// Rows per output, in the dataset's order.
    pub outputs: Vec<(String, u64)>,
    pub late: u64,
    pub lost: u64,
    pub read: Duration,
    pub decode: Duration,
    pub write: Duration,
    pub commit: Duration,
    /// Time since the previous batch started (Spark's input rate denominator).
    pub since_previous: Option<Duration>,
    pub ranges: Vec<OffsetRange>,
    /// Offsets left in each partition after the batch.
    pub lags: Vec<(i32, u64)>,
    /// Quarantined rows by reason code.
    pub rejects: Vec<(&'static str, u64)>,
    pub watermark: Option<i64>,
    /// Every operator's late rows and watermark.
    pub operators: Vec<OperatorFigures>,
    pub rerun: bool,
}

impl BatchReport {
    pub fn total(&self) -> Duration {
        self.read + self.decode + self.write + self.commit
    }

    /// Offsets left in the topic after the batch, over all partitions.
    pub fn lag(&self) -> u64 {
        self.lags.iter().map(|(_, n)| n).sum()
    }

    pub fn processed_rate(&self) -> f64 {
        self.rows as f64 / self.total().as_secs_f64().max(1e-9)
    }

    /// Rows arrived per second since the previous batch started (Spark's input rate).
    pub fn input_rate(&self) -> Option<f64> {
        self.since_previous
            .map(|d| self.rows as f64 / d.as_secs_f64().max(1e-9))
    }

    pub fn processed_mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.total().as_secs_f64().max(1e-9)
    }
}

/// When a batch sent more than half its records to quarantine, a line with the top reasons: the
/// input is likely another dataset or format than the processor was told (DATASET, the topic).
pub fn mostly_quarantined(report: &BatchReport) -> Option<String> {
    let rejected: u64 = report.rejects.iter().map(|(_, n)| n).sum();
    if report.rows == 0 || rejected * 2 <= report.rows {
        return None;
    }
    let mut reasons = report.rejects.clone();
    reasons.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    let top: Vec<String> = reasons
        .iter()
        .take(3)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    Some(format!(
        "batch {}: {rejected} of {} records quarantined ({}): is topic {} really the {} dataset's (DATASET)?",
        report.batch,
        report.rows,
        top.join(", "),
        report.topic,
        report.dataset
    ))
}

fn isoformat(micros: i64) -> String {
    let mut s = String::new();
    write_python_isoformat(&mut s, micros);
    s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl fmt::Display for BatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batch {}{}: rows={}",
            self.batch,
            if self.rerun { " (re-run)" } else { "" },
            self.rows
        )?;
        for (output, n) in &self.outputs {
            write!(f, " {output}={n}")?;
        }
        write!(f, " late={}", self.late)?;
        if self.lost > 0 {
            write!(f, " lost={}", self.lost)?;
        }
        match self.input_rate() {
            Some(rate) => write!(f, " | input {rate:.0} rows/s")?,
            None => write!(f, " | input -")?,
        }
        write!(
            f,
            ", processed {:.0} rows/s, {:.1} MB/s | read {:.0} ms, decode {:.0} ms, write {:.0} ms, commit {:.0} ms | offsets",
            self.processed_rate(),
            self.processed_mb_per_s(),
            ms(self.read),
            ms(self.decode),
            ms(self.write),
            ms(self.commit)
        )?;
        for r in self.ranges.iter().filter(|r| !r.is_empty()) {
            write!(f, " {}:[{},{})", r.partition, r.start, r.end)?;
        }
        write!(f, " | lag {}", self.lag())?;
        if let Some(wm) = self.watermark {
            write!(f, " | watermark {}", isoformat(wm))?;
        }
        Ok(())
    }
}

/// Logs the batch's line: as text (`batch 7: rows=…`), or, with `LOG_FORMAT=json`, one JSON
/// object with the same text as its message and the report's figures as fields, each output's
/// rows under the output's name (the layout of the tracing JSON lines around it).
///
/// JSON fields: `message`, `dataset`, `topic`, `batch`, `rerun`, `rows`, `bytes`, one per output
/// (its rows), `late`, `lost`, `read_ms`, `decode_ms`, `write_ms`, `commit_ms`,
/// `input_rows_per_s` (null for a run's first batch), `processed_rows_per_s`,
/// `processed_mb_per_s`, `lag`, `lag_by_partition` (`{"0": 12, …}`), `offsets`,
/// `quarantine_reasons` (`{"BAD_JSON": 3, …}`), `watermark`, `operators`
/// (`{"gold": {"late": 0, "watermark": "…"}, …}`).
pub fn log_batch(report: &BatchReport) {
    if !txn_core::telemetry::json_logs() {
        tracing::info!("[processor] {report}");
        return;
    }
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let mut offsets = String::new();
    for r in report.ranges.iter().filter(|r| !r.is_empty()) {
        let _ = write!(offsets, "{}:[{},{}) ", r.partition, r.start, r.end);
    }
    let quarantine_reasons: serde_json::Map<String, serde_json::Value> = report
        .rejects
        .iter()
        .map(|(reason, n)| (reason.to_string(), (*n).into()))
        .collect();
    let lag_by_partition: serde_json::Map<String, serde_json::Value> = report
        .lags
        .iter()
        .map(|(p, n)| (p.to_string(), (*n).into()))
        .collect();
    let operators: serde_json::Map<String, serde_json::Value> = report
        .operators
        .iter()
        .map(|o| {
            let figures = serde_json::json!({
                "late": o.late,
                "watermark": o.watermark.map(isoformat),
            });
            (o.name.to_string(), figures)
        })
        .collect();
    let mut fields = serde_json::Map::new();
    fields.insert("message".into(), format!("[processor] {report}").into());
    fields.insert("dataset".into(), report.dataset.name().into());
    fields.insert("topic".into(), report.topic.clone().into());
    fields.insert("batch".into(), report.batch.into());
    fields.insert("rerun".into(), report.rerun.into());
    fields.insert("rows".into(), report.rows.into());
    fields.insert("bytes".into(), report.bytes.into());
    for (output, n) in &report.outputs {
        fields.insert(output.clone(), (*n).into());
    }
    fields.insert("late".into(), report.late.into());
    fields.insert("lost".into(), report.lost.into());
    fields.insert("read_ms".into(), ms(report.read).into());
    fields.insert("decode_ms".into(), ms(report.decode).into());
    fields.insert("write_ms".into(), ms(report.write).into());
    fields.insert("commit_ms".into(), ms(report.commit).into());
    fields.insert(
        "input_rows_per_s".into(),
        report.input_rate().map(f64::round).into(),
    );
    fields.insert(
        "processed_rows_per_s".into(),
        report.processed_rate().round().into(),
    );
    fields.insert(
        "processed_mb_per_s".into(),
        ((report.processed_mb_per_s() * 100.0).round() / 100.0).into(),
    );
    fields.insert("lag".into(), report.lag().into());
    fields.insert("lag_by_partition".into(), lag_by_partition.into());
    fields.insert("offsets".into(), offsets.trim_end().into());
    fields.insert("quarantine_reasons".into(), quarantine_reasons.into());
    fields.insert("watermark".into(), report.watermark.map(isoformat).into());
    fields.insert("operators".into(), operators.into());
    let line = serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": "INFO",
        "fields": fields,
    });
    let mut text = line.to_string();
    text.push('\n');
    // One write of the whole line: it is not interleaved with other log lines.
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
}

/// Prints a block of text meant for people (a console table, a preview) on stdout; with
/// `LOG_FORMAT=json`, as one JSON object (`fields.message` names it, `fields.text` holds it), so
/// that every line a log shipper reads is JSON.
pub fn print_block(what: &str, batch: u64, text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if !txn_core::telemetry::json_logs() {
        let _ = writeln!(out, "{text}");
        return;
    }
    let line = serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": "INFO",
        "fields": {
            "message": format!("[processor] {what} of batch {batch}"),
            "batch": batch,
            "text": text,
        },
    });
    let _ = writeln!(out, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_mostly_quarantined_is_named_with_its_top_reasons() {
        let mut report = BatchReport {
            dataset: txn_core::Dataset::Events,
            topic: "transactions".into(),
            batch: 3,
            rows: 100,
            rejects: vec![("missing_field", 60), ("bad_json", 1)],
            ..BatchReport::default()
        };
        let line = mostly_quarantined(&report).unwrap();
        assert!(
            line.contains("61 of 100 records quarantined (missing_field 60, bad_json 1)"),
            "{line}"
        );
        assert!(line.contains("events dataset"), "{line}");
        report.rejects = vec![("bad_json", 50)];
        assert_eq!(
            mostly_quarantined(&report),
            None,
            "half is not more than half"
        );
    }
}
