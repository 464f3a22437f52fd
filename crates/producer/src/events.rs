//! Seed 001's events, deterministic for a given seed: `id` cycles 0..9 (`i % 10`, the key is
//! `str(id)`), `value` is uniform in [0, 100) with 3 decimals, `source` is `sim-producer`.

use txn_core::event::encode_event;

use crate::generator::{break_common, Kind, MessageGenerator, Rng};

/// Late events lie this far in the past: beyond the events dataset's 30-second watermark delay
/// plus its 10-second window, so the processor counts them as late.
pub const LATE_SECONDS: (f64, f64) = (60.0, 300.0);

/// Ways a malformed event can be broken, one per quarantine reason.
pub const BAD_KINDS: [&str; 6] = [
    "not_json",
    "truncated",
    "missing_field",
    "bad_timestamp",
    "wrong_type",
    "not_an_object",
];

pub struct EventGenerator {
    rng: Rng,
    bad_ratio: f64,
    late_ratio: f64,
    sequence: u64,
    key: String,
    payload: Vec<u8>,
}

impl EventGenerator {
    pub fn new(seed: u64, bad_ratio: f64, late_ratio: f64) -> Self {
        EventGenerator {
            rng: Rng::new(seed),
            bad_ratio,
            late_ratio,
            sequence: 0,
            key: String::with_capacity(4),
            payload: Vec::with_capacity(128),
        }
    }
}

impl MessageGenerator for EventGenerator {
    fn next(&mut self, now_micros: i64) -> Kind {
        let rng = &mut self.rng;
        let (bad, late) = rng.bad_or_late(self.bad_ratio, self.late_ratio, &BAD_KINDS);
        let ts = if late {
            now_micros - (rng.uniform(LATE_SECONDS.0, LATE_SECONDS.1) * 1e6) as i64
        } else {
            now_micros
        };
        let id = (self.sequence % 10) as i64;
        self.sequence += 1;
        let value = (rng.uniform(0.0, 100.0) * 1000.0).round() / 1000.0;
        let detail = rng.next_u64();
        self.key.clear();
        self.key.push_str(&id.to_string());
        self.payload.clear();
        encode_event(id, ts, value, "sim-producer", &mut self.payload);
        if let Some(kind) = bad {
            self.break_payload(kind, detail);
        }
        Kind::of(bad, late)
    }

    fn key(&self) -> &str {
        &self.key
    }

    fn payload(&self) -> &[u8] {
        &self.payload
    }
}

impl EventGenerator {
    /// Turns the encoded event into a malformed message of the given kind.
    fn break_payload(&mut self, kind: &str, detail: u64) {
        if break_common(kind, &mut self.payload, detail, "value", "sensor offline") {
            return;
        }
        let text = String::from_utf8_lossy(&self.payload).into_owned();
        let broken = match kind {
            "missing_field" => text.replacen(r#""ts": "#, r#""time": "#, 1),
            _ => {
                // bad_timestamp
                let start = text.find(r#""ts": ""#).map_or(0, |at| at + 7);
                let end = start + text[start..].find('"').unwrap_or(0);
                format!("{}yesterday{}", &text[..start], &text[end..])
            }
        };
        self.payload = broken.into_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use txn_core::event::decode_event;

    #[test]
    fn ids_cycle_and_every_kind_of_message_decodes_as_it_claims() {
        let mut g = EventGenerator::new(3, 0.3, 0.2);
        let now = 1_762_412_472_122_000;
        let (mut bad, mut late) = (0, 0);
        for i in 0..2000u64 {
            let kind = g.next(now);
            assert_eq!(g.key(), (i % 10).to_string());
            let text = std::str::from_utf8(g.payload()).unwrap();
            match (kind, decode_event(text)) {
                (Kind::Bad(why), Err(reject)) => {
                    bad += 1;
                    let code = reject.code();
                    let expected = match why {
                        "not_json" | "truncated" => "malformed_json",
                        other => other,
                    };
                    assert_eq!(code, expected, "{text}");
                }
                (Kind::Late, Ok(e)) => {
                    late += 1;
                    assert!(now - e.ts >= 60_000_000, "{text}");
                }
                (Kind::Valid, Ok(e)) => {
                    assert_eq!((e.id, e.ts), ((i % 10) as i64, now));
                    assert!((0.0..100.0).contains(&e.value));
                    assert_eq!(e.source.as_deref(), Some("sim-producer"));
                }
                (kind, decoded) => panic!("{kind:?} but {decoded:?}: {text}"),
            }
        }
        assert!((500..700).contains(&bad), "{bad}");
        assert!((200..350).contains(&late), "{late}");
    }
}
