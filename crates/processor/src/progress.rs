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
    pub lag: u64,
    pub watermark: Option<i64>,
    pub rerun: bool,
}

impl BatchReport {
    pub fn total(&self) -> Duration {
        self.read + self.decode + self.write + self.commit
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
        write!(f, " | lag {}", self.lag)?;
        if let Some(wm) = self.watermark {
            let mut s = String::new();
            write_python_isoformat(&mut s, wm);
            write!(f, " | watermark {s}")?;
        }
        Ok(())
    }
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
