//! Avro in Confluent's wire format: a value is the magic byte 0, the writer schema's registry id
//! (4 bytes, big-endian), then the record in Avro's binary encoding
//! (<https://avro.apache.org/docs/1.12.0/specification/#binary-encoding>).
//!
//! An Avro value gives the same row as the JSON object its writer schema renders
//! ([`WriterSchema::to_json`]) would give through the dataset's JSON decoder, whatever the writer
//! schema's version (fields added, removed, reordered; `event_ts` a string or a timestamp;
//! `amount` a double or a decimal). The processor reads it without that JSON:
//! [`WriterSchema::read_record`] hands the dataset's decoder each top-level field (strings
//! borrowed from the body), and the decoder applies the JSON's checks to them; a field of
//! another form than the plain types (a timestamp, a decimal, a number in a string field, NaN)
//! sends the record through the rendered JSON ([`WriterSchema::decode_rendered`]), so both give
//! the same record or the same reject (tested on every dataset, on cut and changed bodies).
//! Bronze's `value` and silver's `json_str` hold the rendered JSON, every writer field in it,
//! rendered when those outputs are written.
//!
//! Schemas are parsed by the Apache Avro crate; the binary walk is this module's (it reads the
//! message bytes straight into fields or JSON, with no value tree in between).

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::OnceLock;

use apache_avro::schema::{Name, Schema};

use crate::json::{write_json_string, write_python_float};

/// Confluent's magic byte.
pub const MAGIC: u8 = 0;

/// The schema id of a Confluent-framed value (magic byte 0 and 4 id bytes), `None` for anything
/// else: JSON never starts with a NUL byte.
pub fn framed_id(value: &[u8]) -> Option<u32> {
    match value {
        [MAGIC, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// Appends the frame (magic byte and schema id) that precedes an Avro body.
pub fn frame(id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
}

/// The writer schema registered for each dataset's values by the producer (subject
/// `<topic>-value`). Every field but the required ones is a union with null, as in the JSON.
pub fn dataset_schema(dataset: crate::Dataset) -> &'static str {
    match dataset {
        crate::Dataset::Transactions => TRANSACTION_SCHEMA,
        crate::Dataset::Events => EVENT_SCHEMA,
        crate::Dataset::Financial => FINANCIAL_SCHEMA,
    }
}

pub const TRANSACTION_SCHEMA: &str = r#"{"type": "record", "name": "Transaction", "namespace": "pipeline", "fields": [
 {"name": "txn_id", "type": "string"},
 {"name": "event_ts", "type": "string"},
 {"name": "user_id", "type": ["null", "string"], "default": null},
 {"name": "card_id", "type": ["null", "string"], "default": null},
 {"name": "merchant", "type": ["null", "string"], "default": null},
 {"name": "category", "type": ["null", "string"], "default": null},
 {"name": "amount", "type": ["null", "double"], "default": null},
 {"name": "currency", "type": ["null", "string"], "default": null},
 {"name": "status", "type": ["null", "string"], "default": null},
 {"name": "city", "type": ["null", "string"], "default": null},
 {"name": "country", "type": ["null", "string"], "default": null},
 {"name": "lat", "type": ["null", "double"], "default": null},
 {"name": "lon", "type": ["null", "double"], "default": null}]}"#;

pub const EVENT_SCHEMA: &str = r#"{"type": "record", "name": "Event", "namespace": "pipeline", "fields": [
 {"name": "id", "type": "long"},
 {"name": "ts", "type": "string"},
 {"name": "value", "type": "double"},
 {"name": "source", "type": ["null", "string"], "default": null}]}"#;

pub const FINANCIAL_SCHEMA: &str = r#"{"type": "record", "name": "FinancialTransaction", "namespace": "pipeline", "fields": [
 {"name": "transactionId", "type": "string"},
 {"name": "userId", "type": "string"},
 {"name": "amount", "type": "double"},
 {"name": "transactionTime", "type": "long"},
 {"name": "merchantId", "type": "string"},
 {"name": "transactionType", "type": ["null", "string"], "default": null},
 {"name": "location", "type": ["null", "string"], "default": null},
 {"name": "paymentMethod", "type": ["null", "string"], "default": null},
 {"name": "isInternational", "type": ["null", "boolean"], "default": null},
 {"name": "currency", "type": ["null", "string"], "default": null}]}"#;

/// Deeper nesting than this is refused (a recursive schema could otherwise exhaust the stack).
const MAX_DEPTH: usize = 64;
/// Array and map items a value may hold over all its arrays and maps, beyond one per byte of
/// the body: items of type null (or records of nulls) take no bytes, so nested arrays of them
/// could otherwise render gigabytes from a few bytes.
const SPARE_ITEMS: u64 = 1024;

/// A writer schema: parsed by the Apache Avro crate, then compiled into the plan the renderer
/// walks (each record's keys written once, named types by index).
#[derive(Debug)]
pub struct WriterSchema {
    root: Schema,
    plan: Node,
    /// Named records, enums and fixed types, for [`Node::Named`].
    named: Vec<Node>,
    /// The last [`WriterSchema::read_record`] binding: the dataset's names (by address) and,
    /// for each top-level field, the position of its name among them.
    binding: OnceLock<(usize, Option<Vec<Option<u8>>>)>,
}

/// One top-level field of a record value as [`WriterSchema::read_record`] reads it (the branch
/// of a union already taken).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    Null,
    Bool(bool),
    /// An int or a long (also `time-millis`/`time-micros`, which render as integers).
    Long(i64),
    /// A double, or a float widened to one.
    Double(f64),
    Str(&'a str),
    /// Anything else (a timestamp, a date, a decimal, bytes, an enum, a record, an array, a
    /// map): the rendered JSON decides how the dataset reads it.
    Other,
}

/// What to read and write for one schema node.
#[derive(Debug, Clone)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Str,
    Bytes,
    Fixed(usize),
    /// The symbols, as JSON strings.
    Enum(Vec<Vec<u8>>),
    Union(Vec<Node>),
    /// Each field's `"name": ` (after `, ` from the second on) and its node.
    Record(Vec<(Vec<u8>, Node, String)>),
    Array(Box<Node>),
    Map(Box<Node>),
    /// The unscaled value's fixed size (bytes when `None`), and the scale.
    Decimal(Option<usize>, usize),
    Date,
    /// The fraction's format and whether the time is UTC (`Z`).
    TimestampMillis(bool),
    TimestampMicros(bool),
    TimestampNanos(bool),
    Named(usize),
}

impl WriterSchema {
    pub fn parse(text: &str) -> Result<Self, String> {
        // A `fixed` with the uuid or duration logical type is read as the plain fixed it is
        // (16 or 12 bytes, its name kept for references): the Avro crate would read the uuid
        // as a string and lose both names.
        let mut json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not an Avro schema: {e}"))?;
        plain_fixed(&mut json);
        let root = Schema::parse(&json).map_err(|e| format!("not an Avro schema: {e}"))?;
        let mut names = HashMap::new();
        let mut named = Vec::new();
        let plan = compile(&root, &mut names, &mut named)?;
        Ok(WriterSchema {
            root,
            plan,
            named,
            binding: OnceLock::new(),
        })
    }

    pub fn schema(&self) -> &Schema {
        &self.root
    }

    /// Renders an Avro body (without its frame) as JSON into `out`; an error says what did not
    /// match the schema. Every byte must be read: trailing bytes are an error too.
    pub fn to_json(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let mut r = Reader {
            buf: body,
            pos: 0,
            items: body.len() as u64 + SPARE_ITEMS,
        };
        match self.root_fields() {
            // A record (every dataset's): its fields in one loop, the plain ones written here.
            Some(fields) => {
                out.reserve(2 * body.len() + 16 * fields.len());
                out.push(b'{');
                for (key, node, name) in fields {
                    out.extend_from_slice(key);
                    let value = self
                        .field(node, &mut r, out, 2)
                        .map_err(|e| format!("{name}: {e}"))?;
                    match value {
                        Field::Null => out.extend_from_slice(b"null"),
                        Field::Bool(false) => out.extend_from_slice(b"false"),
                        Field::Bool(true) => out.extend_from_slice(b"true"),
                        Field::Long(v) => integer(out, v),
                        Field::Double(v) => number(out, v),
                        Field::Str(v) => write_json_string(out, v),
                        Field::Other => {} // rendered by `field`
                    }
                }
                out.push(b'}');
            }
            None => self.render(&self.plan, &mut r, out, 0)?,
        }
        if r.pos != body.len() {
            return Err(format!(
                "{} bytes left after the record ({} bytes read)",
                body.len() - r.pos,
                r.pos
            ));
        }
        Ok(())
    }

    /// Reads a record body without rendering it: `field(slot, value)` for each top-level field
    /// whose name is `names[slot]`, in the writer's order. Every other field is read and checked
    /// all the same, so an error is the one [`WriterSchema::to_json`] gives, word for word.
    /// `Ok(false)` (nothing read) when the root is not a record. `names` should be a `static`:
    /// the binding of fields to names is kept for the last one, by its address.
    pub fn read_record<'a>(
        &self,
        body: &'a [u8],
        names: &'static [&'static str],
        mut field: impl FnMut(usize, Field<'a>),
    ) -> Result<bool, String> {
        let key = names.as_ptr() as usize;
        let computed;
        let slots = match self.binding.get_or_init(|| (key, self.bind(names))) {
            (k, slots) if *k == key => slots,
            _ => {
                computed = self.bind(names);
                &computed
            }
        };
        let (Some(slots), Some(fields)) = (slots, self.root_fields()) else {
            return Ok(false);
        };
        let mut r = Reader {
            buf: body,
            pos: 0,
            items: body.len() as u64 + SPARE_ITEMS,
        };
        let mut scratch = Vec::new();
        for ((_, node, name), slot) in fields.iter().zip(slots) {
            // Depths as `render` counts them: the root 0, its record 1, a field 2.
            scratch.clear();
            let value = self
                .field(node, &mut r, &mut scratch, 2)
                .map_err(|e| format!("{name}: {e}"))?;
            if let Some(slot) = slot {
                field(usize::from(*slot), value);
            }
        }
        if r.pos != body.len() {
            return Err(format!(
                "{} bytes left after the record ({} bytes read)",
                body.len() - r.pos,
                r.pos
            ));
        }
        Ok(true)
    }

    /// The fields of the root record: key, node, name; `None` when the root is not a record.
    fn root_fields(&self) -> Option<&[(Vec<u8>, Node, String)]> {
        match &self.plan {
            Node::Named(root) => match &self.named[*root] {
                Node::Record(fields) => Some(fields),
                _ => None,
            },
            _ => None,
        }
    }

    /// For each top-level field of a record schema, the position of its name in `names`;
    /// `None` when the root is not a record.
    fn bind(&self, names: &[&str]) -> Option<Vec<Option<u8>>> {
        Some(
            self.root_fields()?
                .iter()
                .map(|(_, _, name)| {
                    names
                        .iter()
                        .position(|n| n == name)
                        .and_then(|p| u8::try_from(p).ok())
                })
                .collect(),
        )
    }

    /// One field's value (a union's branch taken); anything not a primitive is rendered into
    /// `out` (checked, for a direct read) and read as [`Field::Other`].
    #[inline(always)]
    fn field<'a>(
        &self,
        node: &Node,
        r: &mut Reader<'a>,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<Field<'a>, String> {
        let (node, depth) = match node {
            Node::Union(branches) => {
                let i = r.long()?;
                let branch = usize::try_from(i)
                    .ok()
                    .and_then(|i| branches.get(i))
                    .ok_or_else(|| format!("union branch {i} of {} branches", branches.len()))?;
                (branch, depth + 1)
            }
            _ => (node, depth),
        };
        Ok(match node {
            Node::Null => Field::Null,
            Node::Boolean => match r.byte()? {
                0 => Field::Bool(false),
                1 => Field::Bool(true),
                b => return Err(format!("boolean byte {b} at {}", r.pos - 1)),
            },
            Node::Int => {
                let v = r.long()?;
                if i32::try_from(v).is_err() {
                    return Err(format!("int {v} out of range"));
                }
                Field::Long(v)
            }
            Node::Long => Field::Long(r.long()?),
            Node::Float => Field::Double(f64::from(f32::from_le_bytes(r.array()?))),
            Node::Double => Field::Double(f64::from_le_bytes(r.array()?)),
            Node::Str => Field::Str(utf8(r.bytes()?)?),
            other => {
                self.render(other, r, out, depth)?;
                Field::Other
            }
        })
    }

    /// Decodes a body the slow way: rendered as JSON, then `decode` of that text (which must not
    /// borrow it). For what a direct read does not cover; a body that does not match its schema
    /// is a `bad_avro` reject.
    pub fn decode_rendered<T>(
        &self,
        id: u32,
        body: &[u8],
        decode: impl FnOnce(&str) -> Result<T, crate::Reject>,
    ) -> Result<T, crate::Reject> {
        let mut json = Vec::with_capacity(2 * body.len() + 64);
        self.to_json(body, &mut json)
            .map_err(|detail| crate::Reject::BadAvro { id, detail })?;
        decode(crate::json::payload_text(Some(&json))?)
    }

    fn render(
        &self,
        node: &Node,
        r: &mut Reader<'_>,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        match node {
            Node::Null => out.extend_from_slice(b"null"),
            Node::Boolean => match r.byte()? {
                0 => out.extend_from_slice(b"false"),
                1 => out.extend_from_slice(b"true"),
                b => return Err(format!("boolean byte {b} at {}", r.pos - 1)),
            },
            Node::Int => {
                let v = r.long()?;
                if i32::try_from(v).is_err() {
                    return Err(format!("int {v} out of range"));
                }
                integer(out, v);
            }
            Node::Long => integer(out, r.long()?),
            Node::Float => number(out, f64::from(f32::from_le_bytes(r.array()?))),
            Node::Double => number(out, f64::from_le_bytes(r.array()?)),
            Node::Str => write_json_string(out, utf8(r.bytes()?)?),
            Node::Bytes => latin1(out, r.bytes()?),
            Node::Fixed(size) => latin1(out, r.take(*size)?),
            Node::Enum(symbols) => {
                let i = r.long()?;
                let symbol = usize::try_from(i)
                    .ok()
                    .and_then(|i| symbols.get(i))
                    .ok_or_else(|| format!("enum index {i} of {} symbols", symbols.len()))?;
                out.extend_from_slice(symbol);
            }
            Node::Union(branches) => {
                let i = r.long()?;
                let branch = usize::try_from(i)
                    .ok()
                    .and_then(|i| branches.get(i))
                    .ok_or_else(|| format!("union branch {i} of {} branches", branches.len()))?;
                self.render(branch, r, out, depth + 1)?;
            }
            Node::Record(fields) => {
                out.push(b'{');
                for (key, field, name) in fields {
                    out.extend_from_slice(key);
                    self.render(field, r, out, depth + 1)
                        .map_err(|e| format!("{name}: {e}"))?;
                }
                out.push(b'}');
            }
            Node::Array(items) => {
                out.push(b'[');
                let mut first = true;
                self.blocks(r, |r| {
                    if !std::mem::take(&mut first) {
                        out.extend_from_slice(b", ");
                    }
                    self.render(items, r, out, depth + 1)
                })?;
                out.push(b']');
            }
            Node::Map(values) => {
                out.push(b'{');
                let mut first = true;
                self.blocks(r, |r| {
                    if !std::mem::take(&mut first) {
                        out.extend_from_slice(b", ");
                    }
                    let key = std::str::from_utf8(r.bytes()?)
                        .map_err(|_| "map key not UTF-8".to_string())?;
                    write_json_string(out, key);
                    out.extend_from_slice(b": ");
                    self.render(values, r, out, depth + 1)
                })?;
                out.push(b'}');
            }
            Node::Decimal(fixed, scale) => {
                let unscaled = match fixed {
                    Some(size) => r.take(*size)?,
                    None => r.bytes()?,
                };
                decimal(out, unscaled, *scale)?;
            }
            Node::Date => {
                let days = r.long()?;
                let date = chrono::DateTime::from_timestamp(days.saturating_mul(86_400), 0)
                    .ok_or_else(|| format!("date {days} days out of range"))?;
                let _ = write!(out, "\"{}\"", date.format("%Y-%m-%d"));
            }
            Node::TimestampMillis(utc) => {
                let v = r.long()?;
                let t = chrono::DateTime::from_timestamp_millis(v)
                    .ok_or_else(|| format!("timestamp {v} ms out of range"))?;
                timestamp(out, t, "%.3f", *utc);
            }
            Node::TimestampMicros(utc) => {
                let v = r.long()?;
                let t = chrono::DateTime::from_timestamp_micros(v)
                    .ok_or_else(|| format!("timestamp {v} µs out of range"))?;
                timestamp(out, t, "%.6f", *utc);
            }
            Node::TimestampNanos(utc) => {
                let t = chrono::DateTime::from_timestamp_nanos(r.long()?);
                timestamp(out, t, "%.9f", *utc);
            }
            Node::Named(i) => self.render(&self.named[*i], r, out, depth + 1)?,
        }
        Ok(())
    }

    /// Reads the blocks of an array or map, calling `item` for each item.
    fn blocks(
        &self,
        r: &mut Reader<'_>,
        mut item: impl FnMut(&mut Reader<'_>) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let count = r.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                r.long()?; // the block's size in bytes
            }
            // One budget for the whole value (nested arrays share it).
            r.items = r.items.checked_sub(count.unsigned_abs()).ok_or_else(|| {
                format!(
                    "more array or map items than bytes in the value ({} + {SPARE_ITEMS})",
                    r.buf.len()
                )
            })?;
            for _ in 0..count.unsigned_abs() {
                item(r)?;
            }
        }
    }
}

/// The plan of `schema`; named types go to `named` (a record's index is taken before its fields
/// are compiled, so that it may refer to itself).
fn compile(
    schema: &Schema,
    names: &mut HashMap<String, usize>,
    named: &mut Vec<Node>,
) -> Result<Node, String> {
    let define = |name: &Name, names: &mut HashMap<String, usize>, named: &mut Vec<Node>| {
        let i = named.len();
        named.push(Node::Null);
        names.insert(name.fullname(None), i);
        i
    };
    Ok(match schema {
        Schema::Null => Node::Null,
        Schema::Boolean => Node::Boolean,
        Schema::Int => Node::Int,
        Schema::Long | Schema::TimeMillis | Schema::TimeMicros => Node::Long,
        Schema::Float => Node::Float,
        Schema::Double => Node::Double,
        Schema::String | Schema::Uuid => Node::Str,
        Schema::Bytes | Schema::BigDecimal => Node::Bytes,
        Schema::Duration => Node::Fixed(12),
        Schema::Fixed(f) => {
            let i = define(&f.name, names, named);
            named[i] = Node::Fixed(f.size);
            Node::Named(i)
        }
        Schema::Enum(e) => {
            let i = define(&e.name, names, named);
            named[i] = Node::Enum(
                e.symbols
                    .iter()
                    .map(|s| {
                        let mut j = Vec::new();
                        write_json_string(&mut j, s);
                        j
                    })
                    .collect(),
            );
            Node::Named(i)
        }
        Schema::Union(u) => Node::Union(
            u.variants()
                .iter()
                .map(|v| compile(v, names, named))
                .collect::<Result<_, _>>()?,
        ),
        Schema::Record(rec) => {
            let i = define(&rec.name, names, named);
            let mut fields = Vec::with_capacity(rec.fields.len());
            for (n, f) in rec.fields.iter().enumerate() {
                let mut key = Vec::new();
                if n > 0 {
                    key.extend_from_slice(b", ");
                }
                write_json_string(&mut key, &f.name);
                key.extend_from_slice(b": ");
                fields.push((key, compile(&f.schema, names, named)?, f.name.clone()));
            }
            named[i] = Node::Record(fields);
            Node::Named(i)
        }
        Schema::Array(a) => Node::Array(Box::new(compile(&a.items, names, named)?)),
        Schema::Map(m) => Node::Map(Box::new(compile(&m.types, names, named)?)),
        Schema::Decimal(d) => {
            let fixed = match &*d.inner {
                Schema::Fixed(f) => {
                    // A named fixed type: defined for later references too.
                    compile(&d.inner, names, named)?;
                    Some(f.size)
                }
                _ => None,
            };
            Node::Decimal(fixed, d.scale)
        }
        Schema::Date => Node::Date,
        Schema::TimestampMillis => Node::TimestampMillis(true),
        Schema::LocalTimestampMillis => Node::TimestampMillis(false),
        Schema::TimestampMicros => Node::TimestampMicros(true),
        Schema::LocalTimestampMicros => Node::TimestampMicros(false),
        Schema::TimestampNanos => Node::TimestampNanos(true),
        Schema::LocalTimestampNanos => Node::TimestampNanos(false),
        Schema::Ref { name } => Node::Named(
            *names
                .get(&name.fullname(None))
                .ok_or_else(|| format!("unknown type {}", name.fullname(None)))?,
        ),
    })
}

/// Drops the logical type of every `fixed` type marked uuid or duration.
fn plain_fixed(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            if o.get("type").and_then(|t| t.as_str()) == Some("fixed")
                && matches!(
                    o.get("logicalType").and_then(|t| t.as_str()),
                    Some("uuid" | "duration")
                )
            {
                o.remove("logicalType");
            }
            o.values_mut().for_each(plain_fixed);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(plain_fixed),
        _ => {}
    }
}

/// A string's bytes as text, or where they stop being UTF-8. (Most are ASCII: checked a word at
/// a time, inline, rather than by a call per string.)
#[inline]
fn utf8(bytes: &[u8]) -> Result<&str, String> {
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|e| format!("string not UTF-8 at byte {}", e.valid_up_to()))
}

/// An integer as JSON.
fn integer(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[at..]);
}

/// A double as JSON: Python's repr, as the JSON producers write it; NaN and infinities (which
/// JSON cannot hold) as strings, which the decoders refuse with the field's name.
fn number(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        write_python_float(out, v);
    } else {
        let _ = write!(out, "\"{v}\"");
    }
}

/// Bytes as a JSON string of code points 0 to 255 (Avro's JSON encoding of bytes).
fn latin1(out: &mut Vec<u8>, bytes: &[u8]) {
    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
    write_json_string(out, &text);
}

/// A decimal (big-endian two's complement unscaled value, and the scale) as an exact JSON number.
fn decimal(out: &mut Vec<u8>, mut unscaled: &[u8], scale: usize) -> Result<(), String> {
    // Leading bytes that only extend the sign (a fixed type wider than the value) carry nothing.
    while unscaled.len() > 16 && matches!((unscaled[0], unscaled[1] & 0x80), (0, 0) | (0xff, 0x80))
    {
        unscaled = &unscaled[1..];
    }
    if unscaled.is_empty() || unscaled.len() > 16 {
        return Err(format!(
            "decimal of {} bytes (1 to 16 are read)",
            unscaled.len()
        ));
    }
    let fill = if unscaled[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut be = [fill; 16];
    be[16 - unscaled.len()..].copy_from_slice(unscaled);
    let v = i128::from_be_bytes(be);
    let digits = v.unsigned_abs().to_string();
    if v < 0 {
        out.push(b'-');
    }
    if scale == 0 {
        out.extend_from_slice(digits.as_bytes());
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        let _ = write!(out, "{int}.{frac}");
    } else {
        let _ = write!(out, "0.{}{digits}", "0".repeat(scale - digits.len()));
    }
    Ok(())
}

fn timestamp(out: &mut Vec<u8>, t: chrono::DateTime<chrono::Utc>, fraction: &str, utc: bool) {
    let _ = write!(
        out,
        "\"{}{}\"",
        t.format(&format!("%Y-%m-%dT%H:%M:%S{fraction}")),
        if utc { "Z" } else { "" }
    );
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Array and map items the value may still hold.
    items: u64,
}

impl<'a> Reader<'a> {
    #[inline]
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| format!("ends at byte {}", self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    /// A zigzag varint (Avro's int and long).
    #[inline(always)]
    fn long(&mut self) -> Result<i64, String> {
        // One byte: union branches, short lengths, small numbers.
        if let Some(&b) = self.buf.get(self.pos) {
            if b & 0x80 == 0 {
                self.pos += 1;
                let v = u64::from(b);
                return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
            }
        }
        self.long_varint()
    }

    /// [`Reader::long`] of more than one byte.
    #[inline(never)]
    fn long_varint(&mut self) -> Result<i64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
            }
        }
        Err(format!("varint longer than 10 bytes at {}", self.pos))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "{n} bytes wanted at byte {}, {} left",
                    self.pos,
                    self.buf.len() - self.pos
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// A length-prefixed byte string.
    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| format!("negative length {n}"))?;
        self.take(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding (the producer): a JSON object, as the generators write it, into Avro by a schema.

/// Appends `json` (an object) encoded by `schema`'s record; an error when a field's value does
/// not fit its type (the producer then sends that message as JSON: a bad record stays bad).
pub fn encode_json(
    schema: &Schema,
    json: &serde_json::Value,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let Schema::Record(rec) = schema else {
        return Err("the writer schema is not a record".into());
    };
    let serde_json::Value::Object(fields) = json else {
        return Err("the value is not a JSON object".into());
    };
    for field in &rec.fields {
        let value = fields.get(&field.name).unwrap_or(&serde_json::Value::Null);
        encode_value(&field.schema, value, out).map_err(|e| format!("{}: {e}", field.name))?;
    }
    Ok(())
}

/// [`encode_json`] of a JSON text.
pub fn encode_json_text(schema: &Schema, json: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
    encode_json(schema, &value, out)
}

fn encode_value(schema: &Schema, v: &serde_json::Value, out: &mut Vec<u8>) -> Result<(), String> {
    use serde_json::Value as J;
    match (schema, v) {
        (Schema::Null, J::Null) => {}
        (Schema::Boolean, J::Bool(b)) => out.push(u8::from(*b)),
        (Schema::Long, J::Number(n)) if n.is_i64() => put_long(out, n.as_i64().unwrap_or_default()),
        (Schema::Int, J::Number(n)) if n.as_i64().and_then(|v| i32::try_from(v).ok()).is_some() => {
            put_long(out, n.as_i64().unwrap_or_default())
        }
        (Schema::Double, J::Number(n)) => {
            out.extend_from_slice(&n.as_f64().unwrap_or_default().to_le_bytes())
        }
        (Schema::Float, J::Number(n)) => {
            out.extend_from_slice(&(n.as_f64().unwrap_or_default() as f32).to_le_bytes())
        }
        (Schema::String, J::String(s)) => {
            put_long(out, s.len() as i64);
            out.extend_from_slice(s.as_bytes());
        }
        (Schema::Union(u), _) => {
            let mut last = String::from("no branch");
            for (i, branch) in u.variants().iter().enumerate() {
                let mark = out.len();
                put_long(out, i as i64);
                match encode_value(branch, v, out) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        out.truncate(mark);
                        last = e;
                    }
                }
            }
            return Err(last);
        }
        _ => return Err(format!("{v} does not fit {schema:?}")),
    }
    Ok(())
}

/// Appends a zigzag varint.
pub fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value as A;

    fn render(schema: &WriterSchema, body: &[u8]) -> Result<String, String> {
        let mut out = Vec::new();
        schema.to_json(body, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_record_the_avro_crate_wrote_renders_as_the_json_the_producer_writes() {
        let schema = WriterSchema::parse(TRANSACTION_SCHEMA).unwrap();
        let json = r#"{"txn_id": "t-1", "event_ts": "2024-05-01T12:00:00.123456+00:00", "user_id": "u_7", "card_id": "c\"1", "merchant": null, "category": "food", "amount": 12.5, "currency": "EUR", "status": "approved", "city": "K\u00f6ln", "country": "DE", "lat": 50.94, "lon": -6.96}"#;
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        let mut ours = Vec::new();
        encode_json(schema.schema(), &value, &mut ours).unwrap();
        // The Avro crate reads what we wrote...
        let read = apache_avro::from_avro_datum(schema.schema(), &mut &ours[..], None).unwrap();
        let A::Record(fields) = read else {
            panic!("{read:?}")
        };
        assert_eq!(
            fields[3],
            (
                "card_id".into(),
                A::Union(1, Box::new(A::String("c\"1".into())))
            )
        );
        assert_eq!(
            fields[4],
            ("merchant".into(), A::Union(0, Box::new(A::Null)))
        );
        // ... and we render it back to the same JSON, byte for byte.
        assert_eq!(render(&schema, &ours).unwrap(), json);
    }

    #[test]
    fn logical_types_nested_records_enums_arrays_and_maps_render_as_json() {
        let schema = WriterSchema::parse(
            r#"{"type": "record", "name": "R", "fields": [
              {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
              {"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
              {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
              {"name": "small", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 3}},
              {"name": "day", "type": {"type": "int", "logicalType": "date"}},
              {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
              {"name": "tags", "type": {"type": "array", "items": "string"}},
              {"name": "extra", "type": {"type": "map", "values": "long"}},
              {"name": "inner", "type": {"type": "record", "name": "In", "fields": [{"name": "x", "type": "float"}]}},
              {"name": "again", "type": ["null", "In"]}]}"#,
        )
        .unwrap();
        let value = A::Record(vec![
            ("ts".into(), A::TimestampMillis(1_714_564_800_123)),
            ("us".into(), A::TimestampMicros(1_714_564_800_000_001)),
            (
                "amount".into(),
                A::Decimal(apache_avro::Decimal::from(vec![0xff, 0x85])),
            ), // -123
            (
                "small".into(),
                A::Decimal(apache_avro::Decimal::from(vec![0x07])),
            ),
            ("day".into(), A::Date(19_844)),
            ("kind".into(), A::Enum(1, "B".into())),
            (
                "tags".into(),
                A::Array(vec![A::String("x".into()), A::String("y".into())]),
            ),
            (
                "extra".into(),
                A::Map([("k".to_string(), A::Long(-3))].into_iter().collect()),
            ),
            ("inner".into(), A::Record(vec![("x".into(), A::Float(0.5))])),
            (
                "again".into(),
                A::Union(1, Box::new(A::Record(vec![("x".into(), A::Float(2.0))]))),
            ),
        ]);
        let body = apache_avro::to_avro_datum(schema.schema(), value).unwrap();
        assert_eq!(
            render(&schema, &body).unwrap(),
            r#"{"ts": "2024-05-01T12:00:00.123Z", "us": "2024-05-01T12:00:00.000001Z", "amount": -1.23, "small": 0.007, "day": "2024-05-01", "kind": "B", "tags": ["x", "y"], "extra": {"k": -3}, "inner": {"x": 0.5}, "again": {"x": 2.0}}"#
        );
    }

    #[test]
    fn a_body_that_does_not_match_its_schema_is_an_error_never_a_panic() {
        let schema = WriterSchema::parse(TRANSACTION_SCHEMA).unwrap();
        let value: serde_json::Value =
            serde_json::from_str(r#"{"txn_id": "t-1", "event_ts": "2024-05-01T12:00:00Z"}"#)
                .unwrap();
        let mut body = Vec::new();
        encode_json(schema.schema(), &value, &mut body).unwrap();
        assert!(render(&schema, &body[..body.len() - 1])
            .unwrap_err()
            .contains("lon"));
        let mut longer = body.clone();
        longer.push(0);
        assert!(render(&schema, &longer)
            .unwrap_err()
            .contains("1 bytes left"));
        assert!(render(&schema, &[0x7f]).unwrap_err().contains("txn_id"));
        assert!(render(&schema, &[0xff; 12]).unwrap_err().contains("varint"));
        // Every prefix and every single-byte change of a valid body: an answer, no panic.
        for cut in 0..body.len() {
            let _ = render(&schema, &body[..cut]);
            let mut changed = body.clone();
            changed[cut] ^= 0xa5;
            let _ = render(&schema, &changed);
        }
        // Items of type null take no bytes: a huge count is refused, not looped over, and
        // nested arrays share one budget (a few bytes cannot render megabytes).
        let nulls = WriterSchema::parse(r#"{"type": "array", "items": "null"}"#).unwrap();
        let mut huge = Vec::new();
        put_long(&mut huge, i64::MAX);
        assert!(render(&nulls, &huge).unwrap_err().contains("items"));
        let nested = WriterSchema::parse(
            r#"{"type": "array", "items": {"type": "array", "items": "null"}}"#,
        )
        .unwrap();
        let mut body = Vec::new();
        put_long(&mut body, 1000);
        for _ in 0..1000 {
            put_long(&mut body, 1000);
            put_long(&mut body, 0);
        }
        put_long(&mut body, 0);
        assert!(render(&nested, &body).unwrap_err().contains("items"));
        let mut small = Vec::new();
        put_long(&mut small, 2);
        for _ in 0..2 {
            put_long(&mut small, 3);
            put_long(&mut small, 0);
        }
        put_long(&mut small, 0);
        assert_eq!(
            render(&nested, &small).unwrap(),
            "[[null, null, null], [null, null, null]]"
        );
    }

    #[test]
    fn a_value_that_does_not_fit_the_schema_is_not_encoded() {
        let schema = WriterSchema::parse(TRANSACTION_SCHEMA).unwrap();
        let value: serde_json::Value =
            serde_json::from_str(r#"{"txn_id": "t-1", "event_ts": "x", "amount": "abc"}"#).unwrap();
        let err = encode_json(schema.schema(), &value, &mut Vec::new()).unwrap_err();
        assert!(err.starts_with("amount:"), "{err}");
        assert!(encode_json(
            schema.schema(),
            &serde_json::json!({"event_ts": "x"}),
            &mut Vec::new()
        )
        .unwrap_err()
        .starts_with("txn_id"));
    }

    #[test]
    fn a_record_that_refers_to_itself_renders_to_its_depth_and_no_further() {
        let schema = WriterSchema::parse(
            r#"{"type": "record", "name": "Cell", "fields": [
              {"name": "v", "type": "long"}, {"name": "next", "type": ["null", "Cell"]}]}"#,
        )
        .unwrap();
        let cell =
            |v: i64, next: A| A::Record(vec![("v".into(), A::Long(v)), ("next".into(), next)]);
        let list = cell(
            1,
            A::Union(1, Box::new(cell(-2, A::Union(0, Box::new(A::Null))))),
        );
        let body = apache_avro::to_avro_datum(schema.schema(), list).unwrap();
        assert_eq!(
            render(&schema, &body).unwrap(),
            r#"{"v": 1, "next": {"v": -2, "next": null}}"#
        );
        // A chain longer than the depth limit is an error, not a stack overflow.
        let mut deep = Vec::new();
        for _ in 0..10_000 {
            deep.extend_from_slice(&[2, 2]); // v = 1, branch 1 (another cell)
        }
        assert!(render(&schema, &deep).unwrap_err().contains("deeper"));
    }

    #[test]
    fn a_uuid_or_duration_in_a_fixed_is_read_as_its_bytes_and_wide_decimals_are_read() {
        let schema = WriterSchema::parse(
            r#"{"type": "record", "name": "R", "fields": [
              {"name": "id", "type": {"type": "fixed", "name": "Id", "size": 16, "logicalType": "uuid"}},
              {"name": "again", "type": "Id"},
              {"name": "d", "type": {"type": "fixed", "name": "D20", "size": 20, "logicalType": "decimal", "precision": 40, "scale": 2}}]}"#,
        )
        .unwrap();
        let mut body = vec![0x41; 16];
        body.extend_from_slice(&[0x42; 16]);
        let mut wide = vec![0xff; 20];
        wide[19] = 0x85; // -123
        body.extend_from_slice(&wide);
        assert_eq!(
            render(&schema, &body).unwrap(),
            format!(
                r#"{{"id": "{}", "again": "{}", "d": -1.23}}"#,
                "A".repeat(16),
                "B".repeat(16)
            )
        );
    }

    #[test]
    fn framing_is_the_magic_byte_and_a_big_endian_id() {
        let mut out = Vec::new();
        frame(258, &mut out);
        assert_eq!(out, [0, 0, 0, 1, 2]);
        assert_eq!(framed_id(&out), Some(258));
        assert_eq!(framed_id(b"{\"a\": 1}"), None);
        assert_eq!(framed_id(&[0, 0, 1]), None);
    }

    /// Each dataset's direct read of `body` gives what its decoder gives of the rendered JSON:
    /// the same record (strings equal, borrowed or not) or the same reject, word for word.
    fn agree(schema: &WriterSchema, body: &[u8]) {
        use crate::{event, financial, json, Transaction};
        let direct = json::decode_avro(schema, 9, body);
        let rendered = schema.decode_rendered(9, body, |t| {
            json::decode_text(t).map(Transaction::into_owned)
        });
        assert_eq!(direct, rendered, "transactions, body {body:?}");
        let direct = event::decode_event_avro(schema, 9, body);
        let rendered = schema.decode_rendered(9, body, |t| {
            event::decode_event(t).map(event::Event::into_owned)
        });
        assert_eq!(direct, rendered, "events, body {body:?}");
        let direct = financial::decode_financial_avro(schema, 9, body);
        let rendered = schema.decode_rendered(9, body, |t| {
            financial::decode_financial(t).map(financial::FinancialTxn::into_owned)
        });
        assert_eq!(direct, rendered, "financial, body {body:?}");
    }

    /// [`agree`] on `body`, on every prefix of it and on every single-byte change of it.
    fn agree_around(schema: &WriterSchema, body: &[u8]) {
        agree(schema, body);
        for at in 0..body.len() {
            agree(schema, &body[..at]);
            for flip in [0x01, 0x80, 0xa5] {
                let mut changed = body.to_vec();
                changed[at] ^= flip;
                agree(schema, &changed);
            }
        }
    }

    fn encoded(schema: &WriterSchema, json: &str) -> Vec<u8> {
        let mut body = Vec::new();
        encode_json_text(schema.schema(), json.as_bytes(), &mut body).unwrap();
        body
    }

    #[test]
    fn the_direct_read_of_each_dataset_gives_what_its_rendered_json_gives() {
        let txn = WriterSchema::parse(TRANSACTION_SCHEMA).unwrap();
        let body = encoded(
            &txn,
            r#"{"txn_id": "t-1", "event_ts": "2024-05-01T12:00:00.123456+02:00", "user_id": "u_7", "card_id": "c\"1", "merchant": null, "category": "food", "amount": 12.5, "currency": "EUR", "status": "approved", "city": "K\u00f6ln", "country": "DE", "lat": 50.94, "lon": -6.96}"#,
        );
        let t = crate::json::decode_avro(&txn, 1, &body).unwrap();
        assert!(matches!(t.txn_id, std::borrow::Cow::Borrowed("t-1")));
        assert_eq!(
            (t.city.as_deref(), t.amount, t.merchant),
            (Some("Köln"), Some(12.5), None)
        );
        assert_eq!(t.event_time, 1_714_557_600_123_456);
        agree_around(&txn, &body);
        // Rejects the checks after the JSON give: no txn_id, a bad time, a latitude out of range.
        for json in [
            r#"{"txn_id": "", "event_ts": "2024-05-01T12:00:00Z"}"#,
            r#"{"txn_id": "t-2", "event_ts": "yesterday"}"#,
            r#"{"txn_id": "t-3", "event_ts": "2024-05-01T12:00:00Z", "lat": 91.5}"#,
        ] {
            let body = encoded(&txn, json);
            assert!(crate::json::decode_avro(&txn, 1, &body).is_err());
            agree(&txn, &body);
        }
        let events = WriterSchema::parse(EVENT_SCHEMA).unwrap();
        let body = encoded(
            &events,
            r#"{"id": 3, "ts": "2025-11-06T07:01:12.122Z", "value": 53.122, "source": "sim"}"#,
        );
        let e = crate::event::decode_event_avro(&events, 1, &body).unwrap();
        assert_eq!(
            (e.id, e.value, e.source.as_deref()),
            (3, 53.122, Some("sim"))
        );
        agree_around(&events, &body);
        let financial = WriterSchema::parse(FINANCIAL_SCHEMA).unwrap();
        let body = encoded(
            &financial,
            r#"{"transactionId": "f-1", "userId": "u1", "amount": 99.99, "transactionTime": 1730000000123, "merchantId": "m9", "transactionType": "purchase", "location": null, "paymentMethod": "credit-card", "isInternational": true, "currency": "USD"}"#,
        );
        let f = crate::financial::decode_financial_avro(&financial, 1, &body).unwrap();
        assert_eq!(
            (f.transaction_time, f.payment_method.as_deref()),
            (1_730_000_000_123_000, Some("credit_card"))
        );
        agree_around(&financial, &body);
    }

    #[test]
    fn evolved_schemas_and_other_types_read_directly_or_rendered_give_the_same() {
        // Fields reordered, added (of every complex kind) and retyped: timestamps and decimals
        // (rendered), ints and floats in number fields, an enum and a long in string fields.
        let schema = WriterSchema::parse(
            r#"{"type": "record", "name": "V9", "fields": [
              {"name": "tags", "type": {"type": "array", "items": {"type": "record", "name": "T", "fields": [{"name": "k", "type": "string"}]}}},
              {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
              {"name": "event_ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
              {"name": "txn_id", "type": "string"},
              {"name": "lat", "type": "float"},
              {"name": "lon", "type": ["null", "int"]},
              {"name": "city", "type": {"type": "enum", "name": "City", "symbols": ["Oslo", "Rome"]}},
              {"name": "status", "type": "long"},
              {"name": "extra", "type": {"type": "map", "values": "double"}},
              {"name": "id", "type": "int"},
              {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
              {"name": "value", "type": "float"},
              {"name": "transactionTime", "type": {"type": "long", "logicalType": "timestamp-millis"}},
              {"name": "isInternational", "type": ["null", "string"]}]}"#,
        )
        .unwrap();
        let value = A::Record(vec![
            (
                "tags".into(),
                A::Array(vec![A::Record(vec![("k".into(), A::String("x".into()))])]),
            ),
            (
                "amount".into(),
                A::Decimal(apache_avro::Decimal::from(vec![0x04, 0xd2])),
            ),
            ("event_ts".into(), A::TimestampMillis(1_714_564_800_123)),
            ("txn_id".into(), A::String("t-9".into())),
            ("lat".into(), A::Float(0.1)),
            ("lon".into(), A::Union(1, Box::new(A::Int(-7)))),
            ("city".into(), A::Enum(1, "Rome".into())),
            ("status".into(), A::Long(4)),
            (
                "extra".into(),
                A::Map(
                    [("k".to_string(), A::Double(f64::NAN))]
                        .into_iter()
                        .collect(),
                ),
            ),
            ("id".into(), A::Int(12)),
            ("ts".into(), A::TimestampMicros(1_714_564_800_000_001)),
            ("value".into(), A::Float(2.5)),
            (
                "transactionTime".into(),
                A::TimestampMillis(1_714_564_800_123),
            ),
            (
                "isInternational".into(),
                A::Union(1, Box::new(A::String("TRUE".into()))),
            ),
        ]);
        let body = apache_avro::to_avro_datum(schema.schema(), value).unwrap();
        agree_around(&schema, &body);
        // The plain fields read directly, the rest rendered: a transaction all the same.
        let t = crate::json::decode_avro(&schema, 1, &body);
        assert!(t.is_err(), "status is a long: {t:?}"); // the JSON's wrong_type, as rendered
                                                        // NaN, infinities and 17-digit doubles; a non-record root; a record without the fields.
        for text in [
            r#"{"type": "record", "name": "N", "fields": [{"name": "txn_id", "type": "string"}, {"name": "event_ts", "type": "string"}, {"name": "amount", "type": "double"}, {"name": "value", "type": "double"}, {"name": "id", "type": "long"}, {"name": "ts", "type": "string"}]}"#,
            r#"{"type": "map", "values": "string"}"#,
            r#""string""#,
            r#"{"type": "record", "name": "E", "fields": []}"#,
        ] {
            let schema = WriterSchema::parse(text).unwrap();
            for v in [f64::NAN, f64::INFINITY, 0.1 + 0.2, 1e300, -0.0, 12.5] {
                let value = match schema.schema() {
                    Schema::Record(r) if !r.fields.is_empty() => A::Record(vec![
                        ("txn_id".into(), A::String("t".into())),
                        ("event_ts".into(), A::String("2024-05-01T12:00:00Z".into())),
                        ("amount".into(), A::Double(v)),
                        ("value".into(), A::Double(v)),
                        ("id".into(), A::Long(1)),
                        ("ts".into(), A::String("2024-05-01T12:00:00Z".into())),
                    ]),
                    Schema::Record(_) => A::Record(vec![]),
                    Schema::Map(_) => A::Map(
                        [("txn_id".to_string(), A::String("t".into()))]
                            .into_iter()
                            .collect(),
                    ),
                    _ => A::String("t".into()),
                };
                let body = apache_avro::to_avro_datum(schema.schema(), value).unwrap();
                agree_around(&schema, &body);
            }
        }
    }
}
