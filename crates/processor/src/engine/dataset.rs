//! What a dataset declares to the engine: how a message becomes a record (or a reject with a
//! reason), the operators a batch goes through, and the outputs it is written to. The engine
//! knows nothing else of it.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use arrow_array::builder::StringBuilder;
use arrow_array::ArrayRef;

use txn_core::avro::WriterSchema;
use txn_core::json::payload_text;
use txn_core::Reject;

use super::operator::Operator;
use super::output::Output;
use super::source::{RawBatch, RawMessage};
use crate::sinks::files::{self, SharedChunk};

/// A dataset: one message schema, its operators and its outputs. Registered in
/// [`crate::datasets`].
pub trait Dataset: Send + Sized + 'static {
    /// A decoded record, borrowing the message it came from.
    type Record<'a>: Send + Sync;
    /// Whether an output holds the valid records' payloads too (transactions' silver
    /// `json_str`): then bronze's `value` is encoded with the rejects' rows in pages of their
    /// own, and that output copies the other pages ([`Batch::valid_value_chunks`]).
    const PAYLOADS_OF_VALID: bool = false;
    /// What the operators derive from a batch (window rows, alerts), for the outputs after them.
    type Derived: Derived + Send + Sync + 'static;

    /// Decodes a message's value (valid UTF-8) into a record, or rejects it with a reason.
    fn decode(text: &str) -> Result<Self::Record<'_>, Reject>;

    /// Decodes an Avro body (Confluent's frame removed) of writer schema `id` into the record
    /// [`Dataset::decode`] gives of the JSON the schema renders, or the same reject.
    fn decode_avro<'a>(
        schema: &WriterSchema,
        id: u32,
        body: &'a [u8],
    ) -> Result<Self::Record<'a>, Reject>;

    /// Takes the batch's control records out before decoding (records of the pipeline's own,
    /// not data: scale-out's clocks in a repartition topic). None by default.
    fn take_control(&mut self, _raw: &mut RawBatch) {}

    /// Runs the batch's valid records (in (partition, offset) order) through the operators.
    fn operate(&mut self, batch: &Batch<'_, Self>) -> Self::Derived;

    /// The stateful operators: snapshotted with every commit, restored at start.
    fn operators(&mut self) -> Vec<&mut dyn Operator>;

    /// The outputs, in the order their rows are reported (asked once, at start).
    fn outputs(&self) -> Vec<Box<dyn Output<Self>>>;

    /// A few rows of the batch as a table (`SHOW_PREVIEWS=1`).
    fn preview(&self, batch: &Batch<'_, Self>) -> String;
}

/// What the engine reads of a batch's operator results.
pub trait Derived {
    /// Valid rows an operator dropped as late (older than its watermark): the progress line's
    /// `late` (gold's, for transactions).
    fn late(&self) -> u64;
    /// Late rows of each operator (by [`super::operator::Operator::name`]), for the metrics and
    /// the JSON log.
    fn late_by_operator(&self) -> Vec<(&'static str, u64)>;
    /// The event-time watermark after the batch (UTC microseconds).
    fn watermark(&self) -> Option<i64>;
}

/// A batch after decoding: every message is either a record or a reject, by index into `raw`.
pub struct Batch<'a, D: Dataset> {
    pub raw: &'a RawBatch,
    pub valid: Vec<(u32, D::Record<'a>)>,
    pub rejects: Vec<(u32, Reject)>,
    /// Each message's value as text, by index; `None` when it is absent, not UTF-8, or Avro.
    /// Checked once, while decoding, and used again by the payload columns.
    pub texts: Vec<Option<&'a str>>,
    /// Every message's value encoded once as Parquet column chunks ([`Batch::value_chunks`]).
    value_chunks: OnceLock<Result<Vec<SharedChunk>, String>>,
    /// The JSON of the Avro values, rendered when an output first asks ([`Batch::text`]).
    rendered: OnceLock<Rendered>,
}

/// The JSON that Avro values render, in parts (one per rendering thread), and where each
/// message's lies: (part, start, end), `None` for a value that is not Avro or does not render.
#[derive(Default)]
struct Rendered {
    parts: Vec<String>,
    at: Vec<Place>,
}

/// Where a message's rendered JSON lies: (part, start, end).
type Place = Option<(u32, u32, u32)>;

/// Batches with fewer messages than this are rendered on one thread.
const RENDER_PARALLEL_FROM: usize = 16_384;

/// The JSON of an Avro message rendered by its writer schema; `None` when it is not Avro or its
/// body does not match the schema (the reject says why).
fn render(raw: &RawBatch, m: &RawMessage, out: &mut Vec<u8>) -> bool {
    let (Some(k), Some(value)) = (m.avro, raw.value(m)) else {
        return false;
    };
    let start = out.len();
    let ok = raw.schemas[k as usize].1.to_json(&value[5..], out).is_ok();
    if !ok {
        out.truncate(start);
    }
    ok
}

impl Rendered {
    /// Renders the Avro values of messages `from..to` into one part.
    fn part(raw: &RawBatch, from: usize, to: usize, part: u32) -> (String, Vec<Place>) {
        // Room for twice the Avro bytes: the stock schemas' JSON is about that (keys, quotes).
        let avro: usize = raw.messages[from..to]
            .iter()
            .filter(|m| m.avro.is_some())
            .filter_map(|m| m.value.map(|(s, e)| e - s))
            .sum();
        let mut json = Vec::with_capacity(2 * avro);
        let mut at = Vec::with_capacity(to - from);
        for m in &raw.messages[from..to] {
            let start = json.len();
            at.push(render(raw, m, &mut json).then_some((part, start as u32, json.len() as u32)));
        }
        // The renderer writes UTF-8 only (strings are checked, bytes written as code points).
        match String::from_utf8(json) {
            Ok(json) => (json, at),
            Err(_) => (String::new(), vec![None; to - from]),
        }
    }

    fn of(raw: &RawBatch) -> Rendered {
        let n = raw.messages.len();
        let threads = if n < RENDER_PARALLEL_FROM {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |p| p.get())
        };
        let per = n.div_ceil(threads).max(1);
        let ranges: Vec<(usize, usize)> =
            (0..n).step_by(per).map(|s| (s, (s + per).min(n))).collect();
        let parts: Vec<_> = if ranges.len() <= 1 {
            vec![Self::part(raw, 0, n, 0)]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = ranges
                    .iter()
                    .enumerate()
                    .map(|(p, &(from, to))| {
                        crate::spawn(s, "avro-json", move || Self::part(raw, from, to, p as u32))
                    })
                    .collect();
                handles
                    .into_iter()
                    .zip(&ranges)
                    .enumerate()
                    .map(|(p, (h, &(from, to)))| {
                        h.join()
                            .unwrap_or_else(|_| Self::part(raw, from, to, p as u32))
                    })
                    .collect()
            })
        };
        let mut rendered = Rendered::default();
        for (json, at) in parts {
            rendered.parts.push(json);
            rendered.at.extend(at);
        }
        rendered
    }

    fn get(&self, index: u32) -> Option<&str> {
        let (part, start, end) = self.at.get(index as usize).copied().flatten()?;
        self.parts[part as usize].get(start as usize..end as usize)
    }
}

impl<'a, D: Dataset> Batch<'a, D> {
    /// Decodes every message of `raw` once, in parallel parts on large batches.
    pub fn decode(raw: &'a RawBatch) -> Self {
        const CHUNK: usize = 16_384;
        let n = raw.messages.len();
        let threads = std::thread::available_parallelism()
            .map_or(1, |p| p.get())
            .min(n.div_ceil(CHUNK))
            .max(1);
        if threads == 1 {
            return Self::decode_range(raw, 0, n, n);
        }
        let per = n.div_ceil(threads);
        // The first part is allocated for the whole batch and the others appended to it: the
        // first part's rows are never copied (a merge into a new vector copied them all).
        let capacity = |t: usize| if t == 0 { n } else { per };
        let range = |t: usize| (t * per, ((t + 1) * per).min(n));
        let mut parts = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    crate::spawn(s, "decode", move || {
                        let (from, to) = range(t);
                        Self::decode_range(raw, from, to, capacity(t))
                    })
                })
                .collect();
            // A decode thread cannot panic on any input (decode returns a reject instead); should
            // one die anyway, decode its part here rather than lose it.
            handles
                .into_iter()
                .enumerate()
                .map(|(t, h)| {
                    h.join().unwrap_or_else(|_| {
                        let (from, to) = range(t);
                        Self::decode_range(raw, from, to, capacity(t))
                    })
                })
                .collect::<Vec<_>>()
        })
        .into_iter();
        let Some(mut out) = parts.next() else {
            return Self::decode_range(raw, 0, n, n);
        };
        for part in parts {
            out.valid.extend(part.valid);
            out.rejects.extend(part.rejects);
            out.texts.extend(part.texts);
        }
        out
    }

    /// Messages `from..to` of `raw`, into vectors with room for `capacity` messages.
    pub fn decode_range(raw: &'a RawBatch, from: usize, to: usize, capacity: usize) -> Self {
        let mut valid = Vec::with_capacity(capacity);
        let mut rejects = Vec::new();
        let mut texts = Vec::with_capacity(capacity);
        for (i, m) in raw.messages[from..to].iter().enumerate() {
            let index = (from + i) as u32;
            if let Some(k) = m.avro {
                // Avro: read from the body by its writer schema (no text to check or keep).
                texts.push(None);
                let (id, schema) = &raw.schemas[k as usize];
                let body = raw.value(m).map_or(&[][..], |v| &v[5..]);
                match D::decode_avro(schema, *id, body) {
                    Ok(record) => valid.push((index, record)),
                    Err(reason) => rejects.push((index, reason)),
                }
                continue;
            }
            let text = payload_text(raw.value(m));
            texts.push(text.as_ref().ok().copied());
            if !raw.rejected.is_empty() {
                if let Ok(k) = raw.rejected.binary_search_by_key(&index, |(i, _)| *i) {
                    rejects.push((index, raw.rejected[k].1.clone()));
                    continue;
                }
            }
            match text.and_then(D::decode) {
                Ok(record) => valid.push((index, record)),
                Err(reason) => rejects.push((index, reason)),
            }
        }
        Batch {
            raw,
            valid,
            rejects,
            texts,
            value_chunks: OnceLock::new(),
            rendered: OnceLock::new(),
        }
    }

    /// The value of message `index` as text: the one the decoder checked; for Avro, the JSON its
    /// writer schema renders (every Avro value of the batch rendered at the first ask); else (not
    /// UTF-8, an Avro body that does not render) with its invalid sequences replaced; `None`
    /// when absent.
    pub fn text(&self, index: u32) -> Option<Cow<'_, str>> {
        let m = self.message(index);
        if m.avro.is_some() {
            if let Some(json) = self
                .rendered
                .get_or_init(|| Rendered::of(self.raw))
                .get(index)
            {
                return Some(Cow::Borrowed(json));
            }
        } else if let Some(text) = self.texts[index as usize] {
            return Some(Cow::Borrowed(text));
        }
        lossy(self.raw.value(m))
    }

    /// [`Batch::text`] of one message (a reject's, for quarantine): an Avro value rendered on
    /// its own unless the batch's have been.
    pub fn text_alone(&self, index: u32) -> Option<Cow<'_, str>> {
        let m = self.message(index);
        if m.avro.is_none() || self.rendered.get().is_some() {
            return self.text(index);
        }
        let mut json = Vec::new();
        if render(self.raw, m, &mut json) {
            if let Ok(json) = String::from_utf8(json) {
                return Some(Cow::Owned(json));
            }
        }
        lossy(self.raw.value(m))
    }

    /// The values of the messages at `indices` as a string column, from the texts the decoder
    /// checked (no second UTF-8 check); an absent value is null, one that is not UTF-8 has its
    /// invalid sequences replaced (U+FFFD; its reject says where).
    pub fn value_column(&self, indices: impl ExactSizeIterator<Item = u32>) -> ArrayRef {
        let mut b = StringBuilder::with_capacity(indices.len(), self.raw.bytes());
        for i in indices {
            b.append_option(self.text(i));
        }
        Arc::new(b.finish())
    }

    pub fn message(&self, index: u32) -> &'a RawMessage {
        &self.raw.messages[index as usize]
    }

    /// Every message's value as the encoded chunks (one per row group) of a nullable string
    /// column: encoded by the first file output that asks, while any other waits. Bronze's
    /// `value` and, in a batch without rejects, silver's `json_str` hold the same bytes.
    pub fn value_chunks(&self) -> crate::Result<Vec<SharedChunk>> {
        self.value_chunks
            .get_or_init(|| {
                let n = self.raw.messages.len();
                let value = |row: usize| self.text(row as u32);
                if D::PAYLOADS_OF_VALID && !self.rejects.is_empty() {
                    let mut valid = vec![false; n];
                    for (i, _) in &self.valid {
                        valid[*i as usize] = true;
                    }
                    let kept = |row: usize| valid[row];
                    files::encode_payloads(n, &value, Some(&kept))
                } else {
                    files::encode_payloads(n, &value, None)
                }
                .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(crate::Error::Internal)
    }

    /// The row groups of a file of the valid records that [`Batch::valid_value_chunks`] fit:
    /// the valid rows of each of bronze's row groups. `None` when one would be empty.
    pub fn valid_groups(&self) -> Option<Vec<(usize, usize)>> {
        let mut groups = Vec::new();
        let mut at = 0;
        let mut start = 0;
        for (from, len) in files::row_groups(self.raw.messages.len()) {
            let end = (from + len) as u32;
            let first = at;
            while at < self.valid.len() && self.valid[at].0 < end {
                at += 1;
            }
            if at == first {
                return None;
            }
            groups.push((start, at - first));
            start += at - first;
        }
        Some(groups)
    }

    /// The valid records' payloads as the chunks of [`Batch::valid_groups`]: bronze's pages of
    /// valid rows, copied (no second encoding). `None` when they cannot be had that way.
    pub fn valid_value_chunks(&self) -> crate::Result<Option<Vec<SharedChunk>>> {
        if !D::PAYLOADS_OF_VALID {
            return Ok(None);
        }
        let Some(groups) = self.valid_groups() else {
            return Ok(None);
        };
        let mut kept = Vec::with_capacity(groups.len());
        for (chunk, (_, rows)) in self.value_chunks()?.iter().zip(&groups) {
            match chunk.kept()? {
                Some(chunk) if chunk.rows() == *rows => kept.push(chunk),
                _ => return Ok(None),
            }
        }
        Ok(Some(kept))
    }

    /// Rejected messages by reason code.
    pub fn reject_counts(&self) -> Vec<(&'static str, u64)> {
        let mut counts: std::collections::BTreeMap<&'static str, u64> = Default::default();
        for (_, reason) in &self.rejects {
            *counts.entry(reason.code()).or_default() += 1;
        }
        counts.into_iter().collect()
    }
}

/// Bytes as a string column value; invalid UTF-8 is replaced (U+FFFD), the reject says where.
/// (The strict check first: it is several times faster than the lossy one on valid input.)
pub fn lossy(bytes: Option<&[u8]>) -> Option<Cow<'_, str>> {
    bytes.map(|b| match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::transactions::TxnBatch;
    use arrow_array::{Array, StringArray};

    #[test]
    fn a_batch_decoded_in_parallel_parts_equals_it_decoded_whole() {
        let mut raw = RawBatch::default();
        for i in 0..40_000i64 {
            let value = if i % 997 == 0 {
                "not json".to_string()
            } else {
                format!(
                    r#"{{"txn_id": "t-{i}", "event_ts": "2024-05-01T12:00:00Z", "amount": 1.5}}"#
                )
            };
            raw.push(0, i, None, None, Some(value.as_bytes()));
        }
        let parallel = TxnBatch::decode(&raw);
        let whole = TxnBatch::decode_range(&raw, 0, 40_000, 40_000);
        assert_eq!(parallel.valid, whole.valid);
        assert_eq!(
            parallel.rejects.iter().map(|r| r.0).collect::<Vec<_>>(),
            whole.rejects.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        assert_eq!(parallel.rejects.len(), 41);
        assert_eq!(parallel.texts, whole.texts);
        assert_eq!(parallel.valid[39_000].1.txn_id, "t-39040");
    }

    #[test]
    fn the_value_column_takes_the_decoders_checked_text_and_replaces_what_is_not_utf8() {
        let mut raw = RawBatch::default();
        raw.push(0, 0, None, None, Some(b"not json"));
        raw.push(0, 1, None, None, None);
        raw.push(0, 2, None, None, Some(b"bad \xff byte"));
        let decoded = TxnBatch::decode(&raw);
        assert_eq!(decoded.texts, vec![Some("not json"), None, None]);
        assert_eq!(decoded.rejects.len(), 3);
        let column = decoded.value_column(0..3);
        let column = column.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(column.value(0), "not json");
        assert!(column.is_null(1));
        assert_eq!(column.value(2), "bad \u{FFFD} byte");
        let picked = decoded.value_column([2, 0].into_iter());
        let picked = picked.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(picked.len(), 2);
        assert_eq!(picked.value(1), "not json");
    }
}
