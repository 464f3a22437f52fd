//! Raw CSV: the valid transactions' payload fields, readable with `head`. `event_ts` is the raw
//! string from the message; numbers are written as the producer wrote them; a null is empty.

use txn_core::json::write_python_float;

use super::DecodedBatch;

pub const HEADER: &str = "txn_id,event_ts,user_id,card_id,merchant,category,amount,currency,status,city,country,lat,lon\n";

pub fn build(batch: &DecodedBatch<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER.len() + batch.valid.len() * 180);
    out.extend_from_slice(HEADER.as_bytes());
    for (_, t) in &batch.valid {
        text(&mut out, Some(&t.txn_id));
        out.push(b',');
        text(&mut out, Some(&t.event_ts));
        for s in [&t.user_id, &t.card_id, &t.merchant, &t.category] {
            out.push(b',');
            text(&mut out, s.as_deref());
        }
        out.push(b',');
        number(&mut out, t.amount);
        for s in [&t.currency, &t.status, &t.city, &t.country] {
            out.push(b',');
            text(&mut out, s.as_deref());
        }
        out.push(b',');
        number(&mut out, t.lat);
        out.push(b',');
        number(&mut out, t.lon);
        out.push(b'\n');
    }
    out
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
