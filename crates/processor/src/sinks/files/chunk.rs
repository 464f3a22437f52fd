//! The payload columns (bronze's `value`, silver's `json_str`) encoded straight from the message
//! bytes: the widest columns by far (a whole JSON document a row), so the ones where the general
//! path's extra copies cost most. Written exactly as the parquet writer writes them with the
//! layer settings (PLAIN pages of about 1 MiB, definition levels in RLE, Snappy, no dictionary,
//! no statistics), but without an Arrow array in between, and with page buffers sized once
//! instead of grown value by value. The result is a [`SharedChunk`]: a file of the batch copies it
//! like any chunk shared between files.

use std::borrow::Cow;

use bytes::Bytes;
use parquet::basic::{CompressionCodec, Encoding, EncodingMask, Type as PhysicalType};
use parquet::column::page::{CompressedPage, Page, PageWriter as _};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use super::SharedChunk;
use crate::error::{Error, Result};

/// Uncompressed bytes of values after which a page is cut (the parquet writer's default limit).
const PAGE_BYTES: usize = 1 << 20;

/// Encodes rows `0..rows` of a string column (`value(row)`, `None` for null) as one column chunk
/// of `descr` (a BYTE_ARRAY column, nullable or not; a null in a required column is an error).
/// With `kept`, a page never holds rows of both kinds (kept or not), so that the kept rows' pages
/// make a chunk of their own ([`SharedChunk::kept`]).
pub fn encode_text<'v>(
    descr: &ColumnDescPtr,
    rows: usize,
    value: impl Fn(usize) -> Option<Cow<'v, str>>,
    kept: Option<&dyn Fn(usize) -> bool>,
) -> Result<SharedChunk> {
    if descr.physical_type() != PhysicalType::BYTE_ARRAY || descr.max_rep_level() != 0 {
        return Err(Error::Internal(format!(
            "column {} is not a flat string column",
            descr.path()
        )));
    }
    if rows == 0 {
        return Err(Error::Internal(format!(
            "column {}: no rows to encode",
            descr.path()
        )));
    }
    let nullable = descr.max_def_level() > 0;
    let mut sink = TrackedWrite::new(Vec::new());
    let mut pages = SerializedPageWriter::new(&mut sink);
    let mut compressor = snap::raw::Encoder::new();
    let (mut compressed, mut uncompressed) = (0u64, 0u64);
    let (mut page, mut out) = (Vec::new(), Vec::new());
    let mut spans = Vec::new();
    let mut start = 0;
    while start < rows {
        // The page's rows, and its definition levels as runs of (defined, length).
        let mut runs: Vec<(bool, u32)> = Vec::new();
        let (mut end, mut bytes) = (start, 0usize);
        let kind = kept.map(|k| k(start));
        while end < rows
            && bytes < PAGE_BYTES
            && (end == start || kind.is_none() || kept.map(|k| k(end)) == kind)
        {
            let defined = match value(end) {
                // A byte array's length is 4 bytes, read as signed by most readers.
                Some(v) if v.len() > i32::MAX as usize => {
                    return Err(Error::Internal(format!(
                        "column {}: row {end} holds {} bytes, more than a Parquet value can",
                        descr.path(),
                        v.len()
                    )))
                }
                Some(v) => {
                    bytes += 4 + v.len();
                    true
                }
                None if nullable => false,
                None => {
                    return Err(Error::Internal(format!(
                        "column {}: null in row {end} of a required column",
                        descr.path()
                    )))
                }
            };
            match runs.last_mut() {
                Some((d, n)) if *d == defined => *n += 1,
                _ => runs.push((defined, 1)),
            }
            end += 1;
        }
        page.clear();
        page.reserve(bytes + 4 + runs.len() * 6);
        if nullable {
            write_levels(&mut page, &runs);
        }
        // `value` again: for the decoder's checked text it is an index lookup, cheaper than
        // keeping the page's values between the two passes.
        for row in start..end {
            if let Some(v) = value(row) {
                page.extend_from_slice(&(v.len() as u32).to_le_bytes());
                page.extend_from_slice(v.as_bytes());
            }
        }
        // One output buffer for all pages (a fresh one would be zeroed and faulted in per page).
        out.resize(snap::raw::max_compress_len(page.len()), 0);
        let n = compressor
            .compress(&page, &mut out)
            .map_err(|e| Error::Internal(format!("column {}: snappy: {e}", descr.path())))?;
        let spec = pages.write_page(CompressedPage::new(
            Page::DataPage {
                buf: Bytes::copy_from_slice(&out[..n]),
                num_values: (end - start) as u32,
                encoding: Encoding::PLAIN,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            },
            page.len(),
        ))?;
        compressed += spec.compressed_size as u64;
        uncompressed += spec.uncompressed_size as u64;
        spans.push(PageSpan {
            bytes: (spec.offset, spec.offset + spec.bytes_written),
            rows: (end - start) as u64,
            kept: kind.unwrap_or(true),
            compressed: spec.compressed_size as u64,
            uncompressed: spec.uncompressed_size as u64,
        });
        start = end;
    }
    pages.close()?;
    let file = Bytes::from(sink.into_inner()?);
    let chunk = ColumnChunkMetaData::builder(descr.clone())
        .set_compression_codec(CompressionCodec::SNAPPY)
        .set_encodings_mask(EncodingMask::new_from_encodings(
            [Encoding::PLAIN, Encoding::RLE].iter(),
        ))
        .set_total_compressed_size(compressed as i64)
        .set_total_uncompressed_size(uncompressed as i64)
        .set_num_values(rows as i64)
        .set_data_page_offset(0)
        .build()?;
    Ok(SharedChunk::new(file, chunk, rows as i64).with_pages(spans))
}

/// One page of an encoded chunk: its bytes (header and data) in the chunk's buffer, its rows,
/// whether they are the kept kind, and its sizes as the chunk's metadata counts them.
#[derive(Clone, Debug)]
pub struct PageSpan {
    pub bytes: (u64, u64),
    pub rows: u64,
    pub kept: bool,
    pub compressed: u64,
    pub uncompressed: u64,
}

/// Definition levels of bit width 1 as RLE runs (the RLE / bit-packing hybrid, RLE runs only),
/// after their length in 4 bytes, as a v1 data page holds them.
fn write_levels(page: &mut Vec<u8>, runs: &[(bool, u32)]) {
    let at = page.len();
    page.extend_from_slice(&[0; 4]);
    for &(defined, n) in runs {
        let mut header = u64::from(n) << 1;
        while header >= 0x80 {
            page.push((header as u8) | 0x80);
            header >>= 7;
        }
        page.push(header as u8);
        page.push(u8::from(defined));
    }
    let len = (page.len() - at - 4) as u32;
    page[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::sync::Arc;

    use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use crate::sinks::files::tests::{BRONZE, TEST_LAYERS};
    use crate::sinks::files::{column_descr, CompactWriter, Shared};

    /// Writes `values` as the only column of a file through an encoded chunk, and reads it back
    /// with the parquet crate's reader; also returns the chunk's page count.
    fn round_trip(values: &[Option<String>], nullable: bool) -> (StringArray, usize) {
        let dir = std::env::temp_dir().join(format!(
            "chunk-{}-{}-{nullable}",
            std::process::id(),
            values.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let writer = CompactWriter::open(&dir, 0, &TEST_LAYERS).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "value",
            DataType::Utf8,
            nullable,
        )]));
        let descr = column_descr(&schema, 0).unwrap();
        let chunk = encode_text(
            &descr,
            values.len(),
            |row| values[row].as_deref().map(Cow::Borrowed),
            None,
        )
        .unwrap();
        let placeholder: ArrayRef = Arc::new(StringArray::from(vec![""; values.len()]));
        let rows = RecordBatch::try_new(schema, vec![placeholder]).unwrap();
        let wait = || Ok(Some(vec![chunk.clone()]));
        let fallback = || -> ArrayRef { unreachable!("the chunk fits") };
        let (file, copied) = writer
            .write_parquet_with(
                BRONZE,
                &rows,
                0,
                1,
                Shared {
                    column: 0,
                    wait: &wait,
                    values: &fallback,
                    groups: None,
                },
            )
            .unwrap();
        assert!(copied);
        let path = writer.publish(vec![file]).unwrap().remove(0);
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let meta = builder.metadata().row_group(0).column(0).clone();
        assert_eq!(meta.compression(), parquet::basic::Compression::SNAPPY);
        let mut reader = builder.with_batch_size(values.len()).build().unwrap();
        let read = reader.next().unwrap().unwrap();
        let column = read
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone();
        // Pages: the offset index is not written for the chunk, so count them by reading the
        // page headers.
        let file =
            parquet::file::serialized_reader::SerializedFileReader::new(File::open(&path).unwrap())
                .unwrap();
        use parquet::file::reader::FileReader as _;
        let mut pages = file
            .get_row_group(0)
            .unwrap()
            .get_column_page_reader(0)
            .unwrap();
        let mut count = 0;
        while pages.get_next_page().unwrap().is_some() {
            count += 1;
        }
        std::fs::remove_dir_all(&dir).unwrap();
        (column, count)
    }

    #[test]
    fn payloads_with_nulls_across_several_pages_read_back_equal() {
        // ~3.4 MB of values: four pages; nulls alone, in runs, first and last.
        let values: Vec<Option<String>> = (0..10_000)
            .map(|i| {
                let null = i == 0 || i == 9_999 || i % 97 == 5 || (4000..4100).contains(&i);
                (!null).then(|| format!("{{\"i\": {i}, \"text\": \"é{}\"}}", "x".repeat(i % 600)))
            })
            .collect();
        let (column, pages) = round_trip(&values, true);
        assert_eq!(pages, 4);
        assert_eq!(column.len(), values.len());
        for (i, v) in values.iter().enumerate() {
            assert_eq!(
                column.is_valid(i).then(|| column.value(i)),
                v.as_deref(),
                "row {i}"
            );
        }
    }

    #[test]
    fn a_required_column_has_no_levels_and_refuses_a_null() {
        let values: Vec<Option<String>> = (0..3).map(|i| Some(format!("v{i}"))).collect();
        let (column, pages) = round_trip(&values, false);
        assert_eq!(pages, 1);
        assert_eq!(
            column.iter().flatten().collect::<Vec<_>>(),
            ["v0", "v1", "v2"]
        );
        let schema = Schema::new(vec![Field::new("value", DataType::Utf8, false)]);
        let descr = column_descr(&schema, 0).unwrap();
        let err = encode_text(
            &descr,
            2,
            |row| (row == 0).then_some(Cow::Borrowed("a")),
            None,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("null in row 1"), "{err}");
    }
}
