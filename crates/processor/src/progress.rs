//! The per-batch report: one log line an operator can read, and the optional silver preview.

use std::fmt::{self, Write as _};
use std::time::Duration;

use txn_core::time::write_python_isoformat;

use crate::layers::{DecodedBatch, Layer};
use crate::source::OffsetRange;

/// Everything the progress line says about one batch.
#[derive(Debug, Default, Clone)]
pub struct BatchReport {
    pub batch: u64,
    pub rows: u64,
    pub bytes: u64,
    pub layers: Vec<(Layer, u64)>,
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
        for (layer, n) in &self.layers {
            write!(f, " {}={n}", layer.folder())?;
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

/// Logs the batch's line: as text (`batch 7: rows=…`), or, with `LOG_FORMAT=json`, the same
/// text as the message and the report's figures as fields of the JSON object.
pub fn log_batch(report: &BatchReport) {
    if !txn_core::telemetry::json_logs() {
        tracing::info!("[processor] {report}");
        return;
    }
    let rows_of = |layer: Layer| {
        report
            .layers
            .iter()
            .find(|(l, _)| *l == layer)
            .map_or(0, |(_, n)| *n)
    };
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
    tracing::info!(
        batch = report.batch,
        rerun = report.rerun,
        rows = report.rows,
        bytes = report.bytes,
        bronze = rows_of(Layer::Bronze),
        silver = rows_of(Layer::Silver),
        quarantine = rows_of(Layer::Quarantine),
        raw_csv = rows_of(Layer::RawCsv),
        gold = rows_of(Layer::Gold),
        late = report.late,
        lost = report.lost,
        read_ms = ms(report.read),
        decode_ms = ms(report.decode),
        write_ms = ms(report.write),
        commit_ms = ms(report.commit),
        processed_rows_per_s = report.processed_rate().round(),
        lag = report.lag(),
        offsets = offsets.trim_end(),
        quarantine_reasons = quarantine_reasons.trim_end(),
        watermark = watermark.as_deref(),
        "[processor] {report}"
    );
}

/// A 10-row table of silver: event_time, card_id, amount, merchant, status.
pub fn silver_preview(batch: &DecodedBatch<'_>) -> String {
    let mut out = String::from(
        "event_time                       | card_id  |     amount | merchant      | status\n",
    );
    for (_, t) in batch.valid.iter().take(10) {
        let mut ts = String::new();
        write_python_isoformat(&mut ts, t.event_time);
        let amount = t
            .amount
            .map_or_else(|| "null".to_string(), |a| format!("{a:.2}"));
        let _ = writeln!(
            out,
            "{ts:<32} | {:<8} | {amount:>10} | {:<13} | {}",
            t.card_id.as_deref().unwrap_or("null"),
            t.merchant.as_deref().unwrap_or("null"),
            t.status.as_deref().unwrap_or("null"),
        );
    }
    let _ = write!(
        out,
        "({} of {} rows)",
        batch.valid.len().min(10),
        batch.valid.len()
    );
    out
}
