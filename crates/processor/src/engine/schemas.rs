//! Avro values (Confluent's wire format) before the dataset's decoder: each framed value of a
//! batch is given its writer schema from the registry, by which the dataset's decoder reads the
//! body straight into a record (the same record as the JSON its schema renders: see
//! [`txn_core::avro`]); anything else is left as it is, so a topic moving from JSON to Avro keeps
//! working. Writer schemas are fetched by id once and cached (a registry never changes the schema
//! of an id, so a batch re-run after a crash reads the same records; an id it did not know is
//! asked again at the next batch).
//!
//! A registry that cannot answer stalls the batch (a warning every 10 s, retries with a backoff
//! up to 5 s) and never turns good records into rejects; an id the registry does not know, a
//! schema that is not Avro, or a body that does not match its schema is a reject naming the id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};
use txn_core::avro::{framed_id, WriterSchema};
use txn_core::registry::{Lookup, Registry, RegistryError};
use txn_core::Reject;

use super::source::RawBatch;
use crate::error::{Error, Result};

const WARN_EVERY: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The writer schemas seen so far, and the registry to ask for new ones.
pub struct Schemas {
    registry: Option<Registry>,
    known: HashMap<u32, Result<Arc<WriterSchema>, Reject>>,
}

impl Schemas {
    /// The schemas of a processor: its SCHEMA_REGISTRY_* settings' registry, if any.
    pub fn from_config(config: &crate::config::ProcessorConfig) -> Result<Self> {
        let registry = Registry::from_args(&config.registry).map_err(Error::Config)?;
        if let Some(r) = &registry {
            info!(
                "[processor] schema registry: {} (Avro values are read by their writer schema)",
                r.describe()
            );
        }
        Ok(Self::new(registry))
    }

    pub fn new(registry: Option<Registry>) -> Self {
        Schemas {
            registry,
            known: HashMap::new(),
        }
    }

    /// Gives every Confluent-framed value of `raw` its writer schema (`m.avro`, an index into
    /// `raw.schemas`), for the dataset's decoder to read the body by, and lists the framed
    /// values whose schema cannot be had, with the reason, in `raw.rejected` (a body that does
    /// not match its schema is the decoder's reject). Waits while the registry cannot answer;
    /// an error only when the process is asked to stop meanwhile.
    pub fn unframe(&mut self, raw: &mut RawBatch) -> Result<()> {
        let mut framed = Vec::new();
        for (i, m) in raw.messages.iter().enumerate() {
            if let Some(id) = raw.value(m).and_then(framed_id) {
                framed.push((i as u32, id));
            }
        }
        if framed.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<u32> = framed.iter().map(|(_, id)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        for &id in &ids {
            if !self.known.contains_key(&id) {
                let schema = self.fetch(id)?;
                self.known.insert(id, schema);
            }
        }
        // The batch's schemas, by their index in `raw.schemas` (ids in order: a short search).
        let mut index = Vec::with_capacity(ids.len());
        for &id in &ids {
            index.push(match &self.known[&id] {
                Ok(schema) => {
                    raw.schemas.push((id, Arc::clone(schema)));
                    Ok(raw.schemas.len() as u32 - 1)
                }
                Err(reject) => Err(reject.clone()),
            });
        }
        for (i, id) in framed {
            let Ok(k) = ids.binary_search(&id) else {
                continue;
            };
            match &index[k] {
                Ok(schema) => raw.messages[i as usize].avro = Some(*schema),
                Err(reject) => raw.rejected.push((i, reject.clone())),
            }
        }
        raw.rejected.sort_unstable_by_key(|(i, _)| *i);
        // An id the registry did not know (or a schema it could not give) is asked again at
        // the next batch: a registry that was behind may know it by then. Known schemas stay.
        self.known.retain(|_, schema| schema.is_ok());
        Ok(())
    }

    /// The writer schema of `id`, or the reject its values get; waits while the registry
    /// cannot answer.
    fn fetch(&self, id: u32) -> Result<Result<Arc<WriterSchema>, Reject>> {
        let Some(registry) = &self.registry else {
            return Ok(Err(Reject::AvroWithoutRegistry(id)));
        };
        let started = Instant::now();
        let mut warned: Option<Instant> = None;
        let mut wait = Duration::from_millis(200);
        let mut attempts = 0u32;
        loop {
            match registry.schema(id) {
                Ok(Lookup::Found(text)) => {
                    if attempts > 0 {
                        info!(
                            "[processor] the schema registry at {} answered after {attempts} retries ({:.1} s)",
                            registry.describe(),
                            started.elapsed().as_secs_f64()
                        );
                    }
                    return Ok(match WriterSchema::parse(&text) {
                        Ok(schema) => {
                            info!(
                                "[processor] writer schema id {id} from {}: {}",
                                registry.describe(),
                                describe(&schema)
                            );
                            Ok(Arc::new(schema))
                        }
                        Err(detail) => {
                            warn!("[processor] schema id {id} is not a usable Avro schema ({detail}): its values go to quarantine");
                            Err(Reject::BadSchema { id, detail })
                        }
                    });
                }
                Ok(Lookup::Unknown) => {
                    warn!(
                        "[processor] the schema registry at {} has no schema id {id}: its values go to quarantine",
                        registry.describe()
                    );
                    return Ok(Err(Reject::UnknownSchemaId(id)));
                }
                Err(RegistryError::Refused(e)) => return Err(Error::Access(e)),
                Err(RegistryError::Unavailable(e)) => {
                    if txn_core::settings::stop_requested() {
                        return Err(Error::Registry(format!(
                            "stop requested while the schema registry could not answer for schema id {id} ({e}): the batch stays planned and the next start reads it again"
                        )));
                    }
                    attempts += 1;
                    if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                        warn!(
                            "[processor] the schema registry cannot answer for schema id {id} ({e}); the batch waits and asks again (attempt {attempts}, {:.0} s so far)",
                            started.elapsed().as_secs_f64()
                        );
                        warned = Some(Instant::now());
                    }
                    let until = Instant::now() + wait;
                    while Instant::now() < until && !txn_core::settings::stop_requested() {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// The record name and field names of a schema, for the log.
fn describe(schema: &WriterSchema) -> String {
    match schema.schema() {
        apache_avro::Schema::Record(r) => format!(
            "record {} ({})",
            r.name.fullname(None),
            r.fields
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("{other:?}").chars().take(100).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use txn_core::avro::{encode_json, frame, TRANSACTION_SCHEMA};

    #[test]
    fn framed_values_without_a_registry_are_rejects_naming_the_id_and_json_is_untouched() {
        let schema = WriterSchema::parse(TRANSACTION_SCHEMA).unwrap();
        let mut avro = Vec::new();
        frame(7, &mut avro);
        let json = serde_json::json!({"txn_id": "t-1", "event_ts": "2024-05-01T12:00:00Z"});
        encode_json(schema.schema(), &json, &mut avro).unwrap();
        let mut raw = RawBatch::default();
        raw.push(0, 0, None, None, Some(br#"{"txn_id": "t-0"}"#));
        raw.push(0, 1, None, None, Some(&avro));
        Schemas::new(None).unframe(&mut raw).unwrap();
        assert_eq!(
            raw.value(&raw.messages[0]),
            Some(&br#"{"txn_id": "t-0"}"#[..])
        );
        assert_eq!(raw.rejected, vec![(1, Reject::AvroWithoutRegistry(7))]);
    }

    #[test]
    fn avro_values_decode_by_their_cached_schema_and_render_for_the_payload_columns() {
        use crate::datasets::transactions::TxnBatch;
        let schema = Arc::new(WriterSchema::parse(TRANSACTION_SCHEMA).unwrap());
        let mut raw = RawBatch::default();
        for i in 0..40_000i64 {
            let mut avro = Vec::new();
            frame(3, &mut avro);
            let json = serde_json::json!({"txn_id": format!("t-{i}"), "event_ts": "2024-05-01T12:00:00Z", "amount": i as f64 / 4.0});
            encode_json(schema.schema(), &json, &mut avro).unwrap();
            if i % 1000 == 0 {
                avro.truncate(avro.len() - 1); // a body cut short
            }
            raw.push(0, i, None, None, Some(&avro));
        }
        raw.push(0, 40_000, None, None, Some(br#"{"txn_id": "json"}"#));
        let mut schemas = Schemas::new(None);
        schemas.known.insert(3, Ok(schema));
        schemas.unframe(&mut raw).unwrap();
        assert!(raw.rejected.is_empty()); // the schema is known: the decoder reads every body
        assert_eq!(raw.schemas.len(), 1);
        assert_eq!(raw.messages[7].avro, Some(0));
        assert_eq!(raw.messages[40_000].avro, None);
        let batch = TxnBatch::decode(&raw);
        assert_eq!(batch.rejects.len(), 41);
        assert!(
            matches!(&batch.rejects[1], (1000, Reject::BadAvro { id: 3, detail }) if detail.contains("lon"))
        );
        assert_eq!(batch.rejects[40].1, Reject::MissingEventTs);
        assert_eq!(batch.valid[0].1.txn_id, "t-1");
        assert_eq!(
            batch.valid.last().map(|(i, t)| (*i, t.amount)),
            Some((39_999, Some(9999.75)))
        );
        let whole = TxnBatch::decode_range(&raw, 0, raw.messages.len(), raw.messages.len());
        assert_eq!(batch.valid, whole.valid);
        // Quarantine's text of a reject, alone: the framed bytes of a body that does not render.
        assert_eq!(
            batch.text_alone(1000).unwrap().as_bytes(),
            String::from_utf8_lossy(raw.value(&raw.messages[1000]).unwrap()).as_bytes()
        );
        let expected = r#"{"txn_id": "t-39999", "event_ts": "2024-05-01T12:00:00Z", "user_id": null, "card_id": null, "merchant": null, "category": null, "amount": 9999.75, "currency": null, "status": null, "city": null, "country": null, "lat": null, "lon": null}"#;
        assert_eq!(batch.text_alone(39_999).unwrap(), expected);
        // The payload columns' text: every Avro value rendered once (in parallel parts).
        assert_eq!(batch.text(39_999).unwrap(), expected);
        assert_eq!(batch.text(40_000).unwrap(), r#"{"txn_id": "json"}"#);
        assert_eq!(batch.text_alone(39_999).unwrap(), expected);
        assert!(batch.text(1000).unwrap().starts_with('\0'));
        for i in [1, 16_383, 16_384, 20_001, 20_002, 39_998] {
            let mut one = Vec::new();
            let body = &raw.value(&raw.messages[i]).unwrap()[5..];
            raw.schemas[0].1.to_json(body, &mut one).unwrap();
            assert_eq!(batch.text(i as u32).unwrap().as_bytes(), one, "message {i}");
        }
    }
}
