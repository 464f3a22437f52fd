//! Raw CSV: the valid transactions' payload fields, readable with `head`. `event_ts` is the raw
//! string from the message; numbers are written as the producer wrote them; a null is empty.

use txn_core::json::write_python_float;
use txn_core::Transaction;

use super::DecodedBatch;
use crate::error::Result;

pub const HEADER: &str = "txn_id,event_ts,user_id,card_id,merchant,category,amount,currency,status,city,country,lat,lon\n";

/// Bytes of CSV after which a piece is handed over: small enough to be still in the cache when it
/// is written out (a batch's CSV built whole, ~20 MB, was written from memory: 6 % of the CPU).
const PIECE: usize = 128 << 10;

/// The CSV of the batch's valid rows, header first, handed to `sink` in pieces of about
/// [`PIECE`] bytes, each ending with a whole row.
pub fn write(batch: &DecodedBatch<'_>, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
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
    if v.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
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

fn number(out: &mut Vec<u8>, value: Option<f64>) {
    if let Some(v) = value {
        write_python_float(out, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::RawBatch;

    #[test]
    fn the_csv_comes_in_pieces_of_whole_rows_that_join_into_the_file() {
        let mut raw = RawBatch::default();
        for offset in 0..3000 {
            raw.push(0, offset, None, None, Some(line(offset).as_bytes()));
        }
        raw.push(0, 3000, None, None, Some(b"not json"));
        let decoded = DecodedBatch::decode(&raw);
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

    /// A message of the producer's shape (a comma in `merchant`, to be quoted).
    fn line(i: i64) -> String {
        format!(
            r#"{{"txn_id": "t-{i}", "event_ts": "2024-05-01T12:00:00Z", "user_id": "u_1", "card_id": "card_{i}", "merchant": "Shop, Inc.", "category": "food", "amount": 12.5, "currency": "EUR", "status": "ok", "city": "Paris", "country": "FR", "lat": 48.85, "lon": 2.35}}"#
        )
    }
}
