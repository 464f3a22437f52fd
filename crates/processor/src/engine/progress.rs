//! The per-batch report: one log line an operator can read, and the optional silver preview.

use std::fmt::{self, Write as _};
use std::time::Duration;

use txn_core::time::write_python_isoformat;

use super::source::OffsetRange;

/// Everything the progress line says about one batch.
#[derive(Debug, Default, Clone)]
pub struct BatchReport {
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
        let input = self
            .since_previous
            .map(|d| self.rows as f64 / d.as_secs_f64().max(1e-9));
        match input {
            Some(rate) => write!(f, " | input {rate:.0} rows/s")?,
            None => write!(f, " | input -")?,
        }
        write!(
            f,
            ", processed {:.0} rows/s, {:.1} MB/s | read {:.0} ms, decode {:.0} ms, write {:.0} ms, commit {:.0} ms | offsets",
            self.processed_rate(),
            self.bytes as f64 / 1e6 / self.total().as_secs_f64().max(1e-9),
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
            let mut s = String::new();
            write_python_isoformat(&mut s, wm);
            write!(f, " | watermark {s}")?;
        }
        Ok(())
    }
}

/// Logs the batch's line: as text (`batch 7: rows=…`), or, with `LOG_FORMAT=json`, one JSON
/// object with the same text as its message and the report's figures as fields, each output's
/// rows under the output's name (the layout of the tracing JSON lines around it).
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
    let mut quarantine_reasons = String::new();
    for (reason, n) in &report.rejects {
        let _ = write!(quarantine_reasons, "{reason}={n} ");
    }
    let watermark = report.watermark.map(|wm| {
        let mut s = String::new();
        write_python_isoformat(&mut s, wm);
        s
    });
    let mut fields = serde_json::Map::new();
    fields.insert("message".into(), format!("[processor] {report}").into());
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
        "processed_rows_per_s".into(),
        report.processed_rate().round().into(),
    );
    fields.insert("lag".into(), report.lag().into());
    fields.insert("offsets".into(), offsets.trim_end().into());
    fields.insert(
        "quarantine_reasons".into(),
        quarantine_reasons.trim_end().into(),
    );
    fields.insert("watermark".into(), watermark.into());
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
