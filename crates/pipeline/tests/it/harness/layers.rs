//! The output folders: layer files, Parquet rows, the checkpoint's files, and the check that
//! each offset landed once.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;

/// The final files of a layer (what `<layer>/*.<ext>` globs see), sorted by name.
pub fn layer_files(out: &Path, layer: &str) -> Vec<PathBuf> {
    let dir = out.join(layer);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .starts_with(['_', '.'])
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Waits until bronze holds `n` rows (or the time is up), and returns how many it holds.
pub fn wait_for_bronze(out: &Path, n: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let have = rows(&read_layer(out, "bronze"));
        if have >= n || Instant::now() >= deadline {
            return have;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Every row of a Parquet layer, as record batches.
pub fn read_layer(out: &Path, layer: &str) -> Vec<RecordBatch> {
    layer_files(out, layer)
        .iter()
        .flat_map(|path| {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
                .unwrap_or_else(|e| panic!("{} is not readable parquet: {e}", path.display()))
                .build()
                .unwrap();
            reader.map(|b| b.unwrap()).collect::<Vec<_>>()
        })
        .collect()
}

pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

pub fn strings(batches: &[RecordBatch], column: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(column).unwrap().as_string::<i32>().clone();
            (0..a.len()).map(move |i| a.is_valid(i).then(|| a.value(i).to_string()))
        })
        .collect()
}

pub fn i64s(batches: &[RecordBatch], column: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name(column).unwrap();
            let v: Vec<i64> = match c.data_type() {
                arrow_schema::DataType::Int32 => c
                    .as_primitive::<Int32Type>()
                    .values()
                    .iter()
                    .map(|&x| i64::from(x))
                    .collect(),
                arrow_schema::DataType::Int64 => c.as_primitive::<Int64Type>().values().to_vec(),
                _ => c
                    .as_primitive::<TimestampMicrosecondType>()
                    .values()
                    .to_vec(),
            };
            v
        })
        .collect()
}

pub fn f64s(batches: &[RecordBatch], column: &str) -> Vec<Option<f64>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column_by_name(column)
                .unwrap()
                .as_primitive::<Float64Type>()
                .clone();
            (0..a.len()).map(move |i| a.is_valid(i).then(|| a.value(i)))
        })
        .collect()
}

/// Rows of the CSV layer (header excluded).
pub fn csv_rows(out: &Path) -> usize {
    layer_files(out, "raw_csv")
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(
                text.starts_with("txn_id,event_ts,"),
                "{} has the header",
                p.display()
            );
            text.lines().count() - 1
        })
        .sum()
}

/// SPEC §4 on what a run left behind: the topic holds `expected` messages; each of its offsets is
/// in bronze exactly once; each valid record is in silver exactly once (by txn_id) and each
/// invalid one in quarantine exactly once (by offset). Returns the topic's messages.
pub fn assert_each_offset_once(bootstrap: &str, out: &Path, expected: usize) -> Vec<Consumed> {
    use std::collections::BTreeSet;
    let topic = consume_all(bootstrap);
    assert_eq!(
        topic.len(),
        expected,
        "messages in the topic (none lost or duplicated by the producer)"
    );
    let all: BTreeSet<(i64, i64)> = topic
        .iter()
        .map(|m| (i64::from(m.partition), m.offset))
        .collect();

    let bronze = read_layer(out, "bronze");
    let in_bronze: BTreeSet<(i64, i64)> = i64s(&bronze, "partition")
        .into_iter()
        .zip(i64s(&bronze, "offset"))
        .collect();
    assert_eq!(rows(&bronze), in_bronze.len(), "no offset twice in bronze");
    assert_eq!(in_bronze, all, "every offset in bronze");

    let (valid, invalid): (Vec<&Consumed>, Vec<&Consumed>) = topic
        .iter()
        .partition(|m| txn_core::decode(m.value.as_deref()).is_ok());
    let valid_ids: BTreeSet<String> = valid
        .iter()
        .map(|m| {
            txn_core::decode(m.value.as_deref())
                .unwrap()
                .txn_id
                .to_string()
        })
        .collect();
    let silver_ids: Vec<String> = strings(&read_layer(out, "silver"), "txn_id")
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        silver_ids.len(),
        valid_ids.len(),
        "no valid record twice in silver"
    );
    assert_eq!(
        silver_ids.into_iter().collect::<BTreeSet<_>>(),
        valid_ids,
        "every valid record in silver"
    );

    let quarantine = read_layer(out, "quarantine");
    let rejected: BTreeSet<(i64, i64)> = i64s(&quarantine, "partition")
        .into_iter()
        .zip(i64s(&quarantine, "offset"))
        .collect();
    assert_eq!(rows(&quarantine), rejected.len(), "no reject twice");
    assert_eq!(
        rejected,
        invalid
            .iter()
            .map(|m| (i64::from(m.partition), m.offset))
            .collect(),
        "every invalid message in quarantine"
    );
    topic
}

/// The checkpoint's commit files (`_chk/commits/N`), named by their batch number: a processor
/// killed while writing one leaves its `.N.pid.tmp`, which is no commit.
pub fn commit_files(out: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(out.join("_chk/commits"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.parse::<u64>().is_ok())
        })
        .collect()
}

/// A JSON file of the checkpoint (`_chk/commits/N`, `offsets/N`, `metadata`), without the
/// checksum envelope its files carry (`PCK1`, CRC-32, then the JSON).
pub fn checkpoint_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let body = match bytes.strip_prefix(b"PCK1") {
        Some(rest) => &rest[4..],
        None => &bytes[..],
    };
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (card_id, window_start, window_end, txn_count, and the bits of sum, avg, max)
pub type GoldRow = (String, i64, i64, i64, Option<u64>, Option<u64>, Option<u64>);

pub fn gold_rows(out: &Path) -> Vec<GoldRow> {
    let gold = read_layer(out, "gold");
    let mut rows: Vec<_> = strings(&gold, "card_id")
        .into_iter()
        .zip(i64s(&gold, "window_start"))
        .zip(i64s(&gold, "window_end"))
        .zip(i64s(&gold, "txn_count"))
        .zip(f64s(&gold, "sum_amount"))
        .zip(f64s(&gold, "avg_amount"))
        .zip(f64s(&gold, "max_amount"))
        .map(|((((((c, s), e), n), sum), avg), max)| {
            (
                c.unwrap_or_default(),
                s,
                e,
                n,
                sum.map(f64::to_bits),
                avg.map(f64::to_bits),
                max.map(f64::to_bits),
            )
        })
        .collect();
    rows.sort();
    rows
}
