//! Decoding a JSON object field by field, so that a reject names the field: what the event and
//! financial decoders share (the transactions' decoder has its own fast path in [`crate::json`]).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json::Reject;

/// Parses `text` into `W` (a struct of `Option<&RawValue>` fields): only a JSON object (serde
/// fills a struct from an array too), and a field twice is `DuplicateField` if it is one of
/// `names` (the struct's fields as they are spelled in JSON).
pub fn object<'a, W: Deserialize<'a>>(text: &'a str, names: &[&'static str]) -> Result<W, Reject> {
    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => Reject::NotAnObject,
            Err(e) => Reject::MalformedJson(e.to_string()),
        });
    }
    serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        match names
            .iter()
            .find(|f| message.starts_with(&format!("duplicate field `{f}`")))
        {
            Some(field) => Reject::DuplicateField(field),
            None => Reject::MalformedJson(message),
        }
    })
}

/// A `WrongType` reject of `field`, from serde's error.
pub fn wrong(field: &'static str) -> impl Fn(serde_json::Error) -> Reject {
    move |e| Reject::WrongType {
        field,
        detail: e.to_string(),
    }
}

/// A field that must be there and not null.
pub fn present<'r>(field: &'static str, raw: Option<&'r RawValue>) -> Result<&'r RawValue, Reject> {
    raw.filter(|r| r.get() != "null")
        .ok_or(Reject::MissingField(field))
}

/// A JSON string, borrowed when it has no escapes.
pub fn text<'a>(field: &'static str, raw: &'a RawValue) -> Result<Cow<'a, str>, Reject> {
    match serde_json::from_str::<&str>(raw.get()) {
        Ok(s) => Ok(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(raw.get())
            .map(Cow::Owned)
            .map_err(wrong(field)),
    }
}

/// An optional string field: absent or null is `None`.
pub fn optional<'a>(
    field: &'static str,
    raw: Option<&'a RawValue>,
) -> Result<Option<Cow<'a, str>>, Reject> {
    match raw.filter(|r| r.get() != "null") {
        None => Ok(None),
        Some(r) => text(field, r).map(Some),
    }
}
