//! The one definition of seed 001's event: `{"id": 3, "ts": "2025-11-06T07:01:12.122Z",
//! "value": 53.122, "source": "sim-producer"}`, keyed by `str(id)` on the topic `events`. Encoded
//! by the producer, decoded by the processor (a valid event, or a reject with the reason).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::avro::{Field, WriterSchema};
use crate::fields::{object, optional, present, wrong};
use crate::json::Reject;
use crate::time::parse_rfc3339_micros;

/// A decoded event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub id: i64,
    /// `ts` as UTC microseconds.
    pub ts: i64,
    pub value: f64,
    pub source: Option<Cow<'a, str>>,
}

/// The fields as they came, each decoded on its own so that a reject names the field.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    ts: Option<&'a RawValue>,
    #[serde(borrow)]
    value: Option<&'a RawValue>,
    #[serde(borrow)]
    source: Option<&'a RawValue>,
}

/// Decodes one message's text into an event. `id` must be an integer, `ts` an RFC 3339 string,
/// `value` a number; `source` may be missing or null. Other fields are ignored.
pub fn decode_event(text: &str) -> Result<Event<'_>, Reject> {
    let wire: Wire<'_> = object(text, &["id", "ts", "value", "source"])?;
    let id = serde_json::from_str::<i64>(present("id", wire.id)?.get()).map_err(wrong("id"))?;
    let ts_text = crate::fields::text("ts", present("ts", wire.ts)?)?;
    let ts = parse_rfc3339_micros(&ts_text).map_err(|why| Reject::BadTimestamp {
        field: "ts",
        value: ts_text.to_string(),
        why,
    })?;
    let value =
        serde_json::from_str::<f64>(present("value", wire.value)?.get()).map_err(wrong("value"))?;
    let source = optional("source", wire.source)?;
    Ok(Event {
        id,
        ts,
        value,
        source,
    })
}

static AVRO_FIELDS: [&str; 4] = ["id", "ts", "value", "source"];

/// Decodes an Avro body (Confluent's frame removed) of writer schema `id` into the event its
/// rendered JSON would give ([`decode_event`] of [`WriterSchema::to_json`]'s text), without
/// rendering it; anything else than a valid event of the plain types (an integer `id`, a
/// string `ts`, a finite number `value`) takes the rendered path, which words the reject.
pub fn decode_event_avro<'a>(
    schema: &WriterSchema,
    id: u32,
    body: &'a [u8],
) -> Result<Event<'a>, Reject> {
    let (mut event_id, mut ts, mut value, mut source) = (None, None, None, None);
    let mut direct = true;
    let record = schema
        .read_record(body, &AVRO_FIELDS, |slot, field| match (slot, field) {
            (0, Field::Long(v)) => event_id = Some(v),
            (1, Field::Str(v)) => ts = parse_rfc3339_micros(v).ok(),
            (2, Field::Double(v)) if v.is_finite() => value = Some(crate::json::as_read_back(v)),
            (2, Field::Long(v)) => value = Some(v as f64),
            (3, Field::Str(v)) => source = Some(Cow::Borrowed(v)),
            (3, Field::Null) => {}
            _ => direct = false,
        })
        .map_err(|detail| Reject::BadAvro { id, detail })?;
    match (event_id, ts, value) {
        (Some(event_id), Some(ts), Some(value)) if record && direct => Ok(Event {
            id: event_id,
            ts,
            value,
            source,
        }),
        _ => schema.decode_rendered(id, body, |text| decode_event(text).map(Event::into_owned)),
    }
}

impl Event<'_> {
    /// The same event owning its strings.
    pub fn into_owned(self) -> Event<'static> {
        Event {
            id: self.id,
            ts: self.ts,
            value: self.value,
            source: self.source.map(|s| Cow::Owned(s.into_owned())),
        }
    }
}

/// Appends an event as seed 001's Python producer writes it (`json.dumps`: `", "` and `": "`
/// separators; `ts` with milliseconds and `Z`).
pub fn encode_event(id: i64, ts_micros: i64, value: f64, source: &str, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let ts = chrono::DateTime::from_timestamp_micros(ts_micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    let _ = write!(out, r#"{{"id": {id}, "ts": "{ts}", "value": "#);
    crate::json::write_python_float(out, value);
    out.extend_from_slice(br#", "source": ""#);
    out.extend_from_slice(source.as_bytes());
    out.extend_from_slice(b"\"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_event_decodes_to_the_same_fields() {
        let mut out = Vec::new();
        encode_event(5, 1_762_412_472_122_000, 53.122, "sim-producer", &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            r#"{"id": 5, "ts": "2025-11-06T07:01:12.122Z", "value": 53.122, "source": "sim-producer"}"#
        );
        let e = decode_event(text).unwrap();
        assert_eq!(
            e,
            Event {
                id: 5,
                ts: 1_762_412_472_122_000,
                value: 53.122,
                source: Some(Cow::Borrowed("sim-producer")),
            }
        );
    }

    #[test]
    fn every_bad_event_is_rejected_with_the_field_and_the_reason() {
        let code = |text: &str| decode_event(text).unwrap_err().to_string();
        assert!(code("nope").starts_with("malformed_json: "));
        assert_eq!(
            code("[1]"),
            "not_an_object: the message is JSON but not an object"
        );
        assert_eq!(
            code(r#"{"ts": "2025-11-06T07:01:12Z", "value": 1}"#),
            "missing_field: id is missing or null"
        );
        assert_eq!(
            code(r#"{"id": 1, "ts": null, "value": 1}"#),
            "missing_field: ts is missing or null"
        );
        assert!(
            code(r#"{"id": "1", "ts": "2025-11-06T07:01:12Z", "value": 1}"#)
                .starts_with("wrong_type: id: ")
        );
        assert!(
            code(r#"{"id": 1.5, "ts": "2025-11-06T07:01:12Z", "value": 1}"#)
                .starts_with("wrong_type: id: ")
        );
        assert!(
            code(r#"{"id": 1, "ts": "2025-11-06T07:01:12Z", "value": "1"}"#)
                .starts_with("wrong_type: value: ")
        );
        assert!(code(r#"{"id": 1, "ts": 17, "value": 1}"#).starts_with("wrong_type: ts: "));
        assert!(code(r#"{"id": 1, "ts": "yesterday", "value": 1}"#)
            .starts_with("bad_timestamp: ts: \"yesterday\""));
        assert!(
            code(r#"{"id": 1, "ts": "2025-11-06T07:01:12Z", "value": 1, "source": 3}"#)
                .starts_with("wrong_type: source: ")
        );
        // Escapes, a missing source and extra fields are fine.
        let e =
            decode_event(r#"{"id": 1, "ts": "2025-11-06T07:01:12\u005a", "value": -0.5, "x": []}"#)
                .unwrap();
        assert_eq!((e.id, e.value, e.source), (1, -0.5, None));
    }
}
