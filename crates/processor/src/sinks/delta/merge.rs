//! Upserts of the update-mode layers (gold in update mode, the events' windows, the users'
//! windows): a batch's rows replace the table's rows of the same key (a window and what it
//! groups), so that a reader sees one current row per key without a de-duplication query.
//!
//! Copy-on-write, as Delta's MERGE without deletion vectors: the files whose statistics say they
//! may hold one of the batch's keys (the value ranges of every key column overlap) are read; a
//! file that does hold some is removed in the batch's commit and, when rows of other keys remain,
//! rewritten without them. Windows change while they are open, so the files read are the few
//! recent ones whose windows overlap the batch's.

use std::collections::HashSet;

use arrow_array::cast::AsArray as _;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};

/// The keys a batch writes, and each key column's value range (numbers and times: microseconds).
pub(super) struct Upsert {
    columns: &'static [&'static str],
    keys: HashSet<Vec<u8>>,
    ranges: Vec<Option<(i64, i64)>>,
    /// Whether the batch has a null in each key column (a file's range then says nothing).
    nulls: Vec<bool>,
}

impl Upsert {
    /// The keys of the batch's new rows.
    pub fn of(columns: &'static [&'static str], files: &[RecordBatch]) -> Result<Self> {
        let mut upsert = Upsert {
            columns,
            keys: HashSet::new(),
            ranges: vec![None; columns.len()],
            nulls: vec![false; columns.len()],
        };
        let mut written = 0;
        for rows in files {
            written += rows.num_rows();
            upsert.keys.extend(row_keys(rows, columns)?);
            for ((range, nulls), name) in
                upsert.ranges.iter_mut().zip(&mut upsert.nulls).zip(columns)
            {
                let column = rows.column(rows.schema().index_of(name)?);
                *nulls |= column.null_count() > 0;
                if let Some((min, max)) = int_range(column) {
                    *range = Some(range.map_or((min, max), |(a, b)| (a.min(min), b.max(max))));
                }
            }
        }
        if upsert.keys.len() < written {
            tracing::warn!(
                "[processor] {} of a batch's {written} rows repeat a key ({}): the table keeps each of them",
                written - upsert.keys.len(),
                columns.join(", ")
            );
        }
        Ok(upsert)
    }

    pub fn rows(&self) -> usize {
        self.keys.len()
    }

    /// Whether a file with these Delta statistics may hold one of the keys: not when some key
    /// column's range in the file misses the batch's range of it.
    pub fn may_touch(&self, stats: Option<&str>) -> bool {
        let Some(stats) = stats.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        else {
            return true;
        };
        self.columns
            .iter()
            .zip(&self.ranges)
            .zip(&self.nulls)
            .all(|((name, range), &nulls)| {
                let Some((low, high)) = range.filter(|_| !nulls) else {
                    return true;
                };
                let bound =
                    |side: &str| stats.get(side).and_then(|v| v.get(*name)).and_then(micros);
                match (bound("minValues"), bound("maxValues")) {
                    (Some(min), Some(max)) => min <= high && low <= max,
                    _ => true,
                }
            })
    }

    /// The rows of an older file to keep (those of other keys); `None` when it holds none of the
    /// batch's keys.
    pub fn keep(&self, rows: &RecordBatch) -> Result<Option<BooleanArray>> {
        let keep: BooleanArray = row_keys(rows, self.columns)?
            .iter()
            .map(|key| Some(!self.keys.contains(key)))
            .collect();
        Ok((keep.true_count() < rows.num_rows()).then_some(keep))
    }
}

/// Every row of a Parquet file.
pub(super) fn read_rows(file: Bytes) -> Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// A statistics value as an integer: a number, or a time (`2025-11-07T10:00:00.000Z`) in
/// microseconds.
fn micros(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(text) => chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_micros()),
        _ => None,
    }
}

/// The value range of an integer or time column (nulls aside).
fn int_range(column: &dyn Array) -> Option<(i64, i64)> {
    let values: Vec<i64> = match column.data_type() {
        DataType::Int64 => column
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .collect(),
        DataType::Int32 => column
            .as_primitive::<Int32Type>()
            .iter()
            .flatten()
            .map(i64::from)
            .collect(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => column
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .flatten()
            .collect(),
        _ => return None,
    };
    Some((*values.iter().min()?, *values.iter().max()?))
}

/// Each row's key as bytes: per key column, a null marker, then the value (strings with their
/// length). Two rows have the same key when every key column is equal, nulls included.
fn row_keys(rows: &RecordBatch, columns: &[&str]) -> Result<Vec<Vec<u8>>> {
    let mut keys = vec![Vec::with_capacity(32); rows.num_rows()];
    for name in columns {
        let column = rows.column(rows.schema().index_of(name)?);
        for (row, key) in keys.iter_mut().enumerate() {
            if column.is_null(row) {
                key.push(0);
                continue;
            }
            key.push(1);
            match column.data_type() {
                DataType::Utf8 => {
                    let text = column.as_string::<i32>().value(row);
                    key.extend_from_slice(&(text.len() as u32).to_le_bytes());
                    key.extend_from_slice(text.as_bytes());
                }
                DataType::Int64 => key.extend_from_slice(
                    &column.as_primitive::<Int64Type>().value(row).to_le_bytes(),
                ),
                DataType::Int32 => key.extend_from_slice(
                    &column.as_primitive::<Int32Type>().value(row).to_le_bytes(),
                ),
                DataType::Timestamp(TimeUnit::Microsecond, _) => key.extend_from_slice(
                    &column
                        .as_primitive::<TimestampMicrosecondType>()
                        .value(row)
                        .to_le_bytes(),
                ),
                other => {
                    return Err(Error::Internal(format!(
                        "key column {name} is of type {other}, which upserts do not compare"
                    )))
                }
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn rows(cards: &[Option<&str>], starts: &[i64], counts: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("card_id", DataType::Utf8, true),
            Field::new(
                "window_start",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("txn_count", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(cards.to_vec())),
            Arc::new(TimestampMicrosecondArray::from(starts.to_vec()).with_timezone("UTC")),
            Arc::new(Int64Array::from(counts.to_vec())),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    const KEYS: &[&str] = &["card_id", "window_start"];

    #[test]
    fn rows_of_the_batch_keys_are_replaced_and_others_kept_nulls_being_a_key_value() {
        let new = rows(&[Some("a"), None], &[60_000_000, 60_000_000], &[2, 1]);
        let upsert = Upsert::of(KEYS, &[new]).unwrap();
        assert_eq!(upsert.rows(), 2);
        let old = rows(
            &[Some("a"), Some("a"), None, Some("b")],
            &[60_000_000, 0, 60_000_000, 60_000_000],
            &[1, 5, 1, 3],
        );
        let keep = upsert.keep(&old).unwrap().expect("rows replaced");
        assert_eq!(
            keep.iter().collect::<Vec<_>>(),
            [Some(false), Some(true), Some(false), Some(true)]
        );
        let untouched = rows(&[Some("a")], &[0], &[5]);
        assert!(upsert.keep(&untouched).unwrap().is_none());
    }

    #[test]
    fn files_whose_key_ranges_miss_the_batch_are_not_read() {
        let new = rows(&[Some("a")], &[120_000_000], &[1]);
        let upsert = Upsert::of(KEYS, &[new]).unwrap();
        let stats = |min: &str, max: &str| {
            format!(
                r#"{{"numRecords":3,"minValues":{{"window_start":"{min}"}},"maxValues":{{"window_start":"{max}"}}}}"#
            )
        };
        // 1970-01-01T00:02:00 is the batch's only window start.
        assert!(!upsert.may_touch(Some(&stats(
            "1970-01-01T00:00:00.000Z",
            "1970-01-01T00:01:00.000Z"
        ))));
        assert!(upsert.may_touch(Some(&stats(
            "1970-01-01T00:01:00.000Z",
            "1970-01-01T00:02:00.000Z"
        ))));
        assert!(upsert.may_touch(None), "no statistics: read it");
        assert!(upsert.may_touch(Some(r#"{"numRecords":3}"#)));
    }
}
