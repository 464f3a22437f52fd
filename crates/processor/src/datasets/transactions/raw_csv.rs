//! Raw CSV: the valid transactions' payload fields, readable with `head`. `event_ts` is the raw
//! string from the message; numbers are written as the producer wrote them; a null is empty.

use txn_core::json::write_python_float;
use txn_core::Transaction;

use super::{Transactions, TxnBatch};
use crate::engine::output::{Output, StageInput, Staged, Target};
use crate::error::Result;
use crate::sinks::files::FileLayer;

pub const LAYER: FileLayer = FileLayer {
    folder: "raw_csv",
    prefix: "raw",
    extension: "csv",
    date_column: None,
    hive: false,
    keys: &[],
};

/// The raw CSV output: one CSV file of the valid transactions per batch.
pub struct RawCsv;

impl Output<Transactions> for RawCsv {
    fn target(&self) -> Target {
        Target::Files(LAYER)
    }

    fn stage(&self, input: &StageInput<'_, '_, Transactions>) -> Result<Staged> {
        let batch = input.batch;
        if batch.valid.is_empty() {
            return Ok(Staged::nothing());
        }
        let file =
            input
                .files
                .write_pieces(LAYER, input.plan.planned_at, input.plan.batch, |sink| {
                    write(batch, sink)
                })?;
        Ok(Staged::file(batch.valid.len() as u64, file))
    }
}

pub const HEADER: &str = "txn_id,event_ts,user_id,card_id,merchant,category,amount,currency,status,city,country,lat,lon\n";

/// Bytes of CSV after which a piece is handed over: small enough to be still in the cache when it
/// is written out (a batch's CSV built whole, ~20 MB, was written from memory: 6 % of the CPU).
const PIECE: usize = 128 << 10;

/// The CSV of the batch's valid rows, header first, handed to `sink` in pieces of about
/// [`PIECE`] bytes, each ending with a whole row.
pub fn write(batch: &TxnBatch<'_>, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut out = Vec::with_capacity(PIECE + 4096);
    out.extend_from_slice(HEADER.as_bytes());
    for (_, t) in &batch.valid {
        row(&mut out, t);
        if out.len() >= PIECE {
            sink(&out)?;
            out.clear();
        }
    }
    if !out.is_empty() {
        sink(&out)?;
    }
    Ok(())
}

fn row(out: &mut Vec<u8>, t: &Transaction<'_>) {
    text(out, Some(&t.txn_id));
    out.push(b',');
    text(out, Some(&t.event_ts));
    for s in [&t.user_id, &t.card_id, &t.merchant, &t.category] {
        out.push(b',');
        text(out, s.as_deref());
    }
    out.push(b',');
    number(out, t.amount);
    for s in [&t.currency, &t.status, &t.city, &t.country] {
        out.push(b',');
        text(out, s.as_deref());
    }
    out.push(b',');
    number(out, t.lat);
    out.push(b',');
    number(out, t.lon);
    out.push(b'\n');
}

/// RFC 4180: quoted when it holds a comma, quote, or line break; quotes doubled.
fn text(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(v) = value else { return };
    if needs_quotes(v.as_bytes()) {
        out.push(b'"');
        for b in v.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(v.as_bytes());
    }
}

/// Whether `v` holds a byte that makes a CSV field quoted (`,` `"` LF CR), eight bytes at a
/// time: per byte lane, `(x - 0x01) & !x & 0x80` is set in some lane exactly when some byte of
/// `x` (the word xor the byte sought) is zero.
fn needs_quotes(v: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let holds = |w: u64, c: u8| {
        let x = w ^ (LO * u64::from(c));
        x.wrapping_sub(LO) & !x & HI
    };
    let mut words = v.chunks_exact(8);
    for chunk in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let w = u64::from_le_bytes(bytes);
        if holds(w, b',') | holds(w, b'"') | holds(w, b'\n') | holds(w, b'\r') != 0 {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
}

fn number(out: &mut Vec<u8>, value: Option<f64>) {
    if let Some(v) = value {
        write_python_float(out, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::source::RawBatch;

    #[test]
    fn the_csv_comes_in_pieces_of_whole_rows_that_join_into_the_file() {
        let mut raw = RawBatch::default();
        for offset in 0..3000 {
            raw.push(0, offset, None, None, Some(line(offset).as_bytes()));
        }
        raw.push(0, 3000, None, None, Some(b"not json"));
        let decoded = TxnBatch::decode(&raw);
        assert_eq!(decoded.valid.len(), 3000);
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        write(&decoded, &mut |piece| {
            pieces.push(piece.to_vec());
            Ok(())
        })
        .unwrap();
        assert!(pieces.len() > 1, "{} pieces", pieces.len());
        for piece in &pieces {
            assert!(piece.len() < PIECE + 4096, "{}", piece.len());
            assert_eq!(piece.last(), Some(&b'\n'), "a piece ends with a whole row");
        }
        let file = String::from_utf8(pieces.concat()).unwrap();
        let lines: Vec<&str> = file.lines().collect();
        assert_eq!(lines[0], HEADER.trim_end());
        assert_eq!(lines.len(), 3001);
        assert_eq!(
            lines[1],
            "t-0,2024-05-01T12:00:00Z,u_1,card_0,\"Shop, Inc.\",food,12.5,EUR,ok,Paris,FR,48.85,2.35"
        );
        assert_eq!(
            lines[3000],
            "t-2999,2024-05-01T12:00:00Z,u_1,card_2999,\"Shop, Inc.\",food,12.5,EUR,ok,Paris,FR,48.85,2.35"
        );

        // A sink's error stops the writing and comes back.
        let mut calls = 0;
        let err = write(&decoded, &mut |_| {
            calls += 1;
            Err(crate::error::Error::Internal("disk full".into()))
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(err.to_string().contains("disk full"), "{err}");
    }

    #[test]
    fn a_field_is_quoted_exactly_when_it_holds_a_comma_quote_or_line_break() {
        let naive = |v: &[u8]| v.iter().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
        for len in 0..20 {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut v = vec![b'a'; len];
                    v[at] = byte;
                    assert_eq!(needs_quotes(&v), naive(&v), "{len} {at} {byte:#x}");
                }
            }
        }
        let mut out = Vec::new();
        text(&mut out, Some("Shop, Inc. \"best\""));
        text(&mut out, Some("São Paulo"));
        text(&mut out, None);
        assert_eq!(out, "\"Shop, Inc. \"\"best\"\"\"São Paulo".as_bytes());
    }

    /// A message of the producer's shape (a comma in `merchant`, to be quoted).
    fn line(i: i64) -> String {
        format!(
            r#"{{"txn_id": "t-{i}", "event_ts": "2024-05-01T12:00:00Z", "user_id": "u_1", "card_id": "card_{i}", "merchant": "Shop, Inc.", "category": "food", "amount": 12.5, "currency": "EUR", "status": "ok", "city": "Paris", "country": "FR", "lat": 48.85, "lon": 2.35}}"#
        )
    }
}
