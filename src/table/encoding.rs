//! How floe encodes a table's Parquet data files, for its own writer and for DuckDB's `COPY`: the
//! compression codec from the table's `write.parquet.compression-codec` (and `-level`), Snappy when
//! unset; row groups of 128 Ki rows; and dictionary encoding only for the columns whose values
//! repeat, judged on a sample of the first batch.
//!
//! Chosen by measurement (1 M clickstream-like rows of eleven columns, arrow-rs 58, medians of 3;
//! the figures are in `src/pipeline/README.md`): with dictionary encoding on every column, arrow-rs
//! spends most of a write hashing values of high-cardinality columns (ids, timestamps as text, URLs
//! with query strings, IPs) into dictionaries that overflow and fall back to plain encoding anyway;
//! turning it off for those columns wrote 1.76x faster and 6% smaller.

use std::collections::HashSet;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, SortField};
use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::Table;
use crate::error::{Error, ErrorKind, Result};

/// Rows per row group: every open partition of a write buffers one, so this bounds memory.
pub(crate) const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Rows of the first batch looked at to decide a column's dictionary.
const SAMPLE_ROWS: usize = 8192;

/// A column keeps dictionary encoding when its sample has at most this share of distinct values.
const DICTIONARY_MAX_DISTINCT_SHARE: f64 = 0.5;

/// The Parquet codec of a table, from its properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    compression: Compression,
}

impl Codec {
    /// `write.parquet.compression-codec` (Iceberg's names: `zstd`, `snappy`, `gzip`, `lz4`, `brotli`,
    /// `uncompressed`; also `lz4_raw`) and `write.parquet.compression-level`; Snappy when unset.
    pub fn of_properties<'a>(mut get: impl FnMut(&str) -> Option<&'a str>) -> Result<Codec> {
        let name = get("write.parquet.compression-codec")
            .unwrap_or("snappy")
            .to_ascii_lowercase();
        let level = match get("write.parquet.compression-level") {
            None => None,
            Some(l) => Some(l.trim().parse::<i32>().map_err(|_| {
                Error::new(
                    ErrorKind::Config,
                    format!("table property write.parquet.compression-level={l:?} is not an integer"),
                )
            })?),
        };
        let bad_level = |e: parquet::errors::ParquetError| {
            Error::new(
                ErrorKind::Config,
                format!("table property write.parquet.compression-level for {name}: {e}"),
            )
        };
        let compression = match name.as_str() {
            "snappy" => Compression::SNAPPY,
            "uncompressed" | "none" => Compression::UNCOMPRESSED,
            "lz4" => Compression::LZ4,
            "lz4_raw" => Compression::LZ4_RAW,
            "zstd" => Compression::ZSTD(match level {
                Some(l) => ZstdLevel::try_new(l).map_err(bad_level)?,
                None => ZstdLevel::default(),
            }),
            "gzip" => Compression::GZIP(match level {
                Some(l) => GzipLevel::try_new(l.max(0) as u32).map_err(bad_level)?,
                None => GzipLevel::default(),
            }),
            "brotli" => Compression::BROTLI(match level {
                Some(l) => BrotliLevel::try_new(l.max(0) as u32).map_err(bad_level)?,
                None => BrotliLevel::default(),
            }),
            other => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "table property write.parquet.compression-codec={other:?}: expected zstd, \
                         snappy, gzip, lz4, lz4_raw, brotli or uncompressed"
                    ),
                ))
            }
        };
        Ok(Codec { compression })
    }

    /// The codec `table`'s properties name.
    pub fn of_table(table: &Table) -> Result<Codec> {
        Codec::of_properties(|k| table.metadata().properties().get(k).map(String::as_str))
    }

    /// The codec as arrow-rs names it.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The codec as Iceberg's `write.parquet.compression-codec` names it.
    pub fn iceberg_name(&self) -> &'static str {
        match self.compression {
            Compression::UNCOMPRESSED => "uncompressed",
            Compression::LZ4 => "lz4",
            Compression::LZ4_RAW => "lz4_raw",
            Compression::ZSTD(_) => "zstd",
            Compression::GZIP(_) => "gzip",
            Compression::BROTLI(_) => "brotli",
            // Snappy, and what `of_properties` never produces.
            _ => "snappy",
        }
    }

    /// The options of DuckDB's `COPY ... (FORMAT parquet, ...)` that encode as floe's own writer.
    pub fn duckdb_copy_options(&self) -> String {
        let codec = match self.compression {
            Compression::SNAPPY => "snappy".to_string(),
            Compression::UNCOMPRESSED => "uncompressed".to_string(),
            // DuckDB writes LZ4 as LZ4_RAW, the codec Parquet recommends over the Hadoop framing.
            Compression::LZ4 | Compression::LZ4_RAW => "lz4_raw".to_string(),
            Compression::ZSTD(l) => format!("zstd, COMPRESSION_LEVEL {}", l.compression_level()),
            Compression::GZIP(_) => "gzip".to_string(),
            Compression::BROTLI(_) => "brotli".to_string(),
            // Not produced by `of_properties`.
            _ => "snappy".to_string(),
        };
        format!("FORMAT parquet, COMPRESSION {codec}, ROW_GROUP_SIZE {ROW_GROUP_ROWS}")
    }

    /// Writer properties for a file whose first batch is `sample`: this codec, row groups of
    /// [`ROW_GROUP_ROWS`], and dictionary encoding off for every top-level column whose sample is
    /// mostly distinct values.
    pub(crate) fn writer_properties(&self, sample: &RecordBatch) -> WriterProperties {
        let mut builder = WriterProperties::builder()
            .set_compression(self.compression)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
        for (field, column) in sample.schema().fields().iter().zip(sample.columns()) {
            if !repeats(column.as_ref()) {
                builder =
                    builder.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
            }
        }
        builder.build()
    }
}

/// Whether dictionary encoding pays for `column`: its first [`SAMPLE_ROWS`] non-null values are at
/// most [`DICTIONARY_MAX_DISTINCT_SHARE`] distinct. Booleans, nested columns and columns with too
/// few values to judge keep the default (dictionary on).
fn repeats(column: &dyn Array) -> bool {
    let flat =
        !column.data_type().is_nested() && !matches!(column.data_type(), DataType::Boolean | DataType::Null);
    let sample = column.slice(0, column.len().min(SAMPLE_ROWS));
    let values = sample.len() - sample.null_count();
    if !flat || values < 256 {
        return true;
    }
    let Ok(converter) = RowConverter::new(vec![SortField::new(sample.data_type().clone())]) else {
        return true;
    };
    let Ok(rows) = converter.convert_columns(std::slice::from_ref(&sample)) else {
        return true;
    };
    let limit = (values as f64 * DICTIONARY_MAX_DISTINCT_SHARE) as usize;
    let mut distinct = HashSet::with_capacity(limit + 1);
    for (i, row) in rows.iter().enumerate() {
        if sample.is_valid(i) && distinct.insert(row.data()) && distinct.len() > limit {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use parquet::file::properties::DEFAULT_DICTIONARY_ENABLED;

    use super::*;

    fn props(codec: Option<&str>, level: Option<&str>) -> Result<Codec> {
        Codec::of_properties(|k| match k {
            "write.parquet.compression-codec" => codec,
            "write.parquet.compression-level" => level,
            _ => None,
        })
    }

    #[test]
    fn codec_follows_the_table_properties() {
        assert_eq!(props(None, None).unwrap().compression(), Compression::SNAPPY);
        assert_eq!(
            props(Some("ZSTD"), Some("3")).unwrap().compression(),
            Compression::ZSTD(ZstdLevel::try_new(3).unwrap())
        );
        assert_eq!(
            props(Some("uncompressed"), None).unwrap().compression(),
            Compression::UNCOMPRESSED
        );
        assert!(props(Some("zstd"), Some("99")).is_err());
        assert!(props(Some("lzo"), None).unwrap_err().to_string().contains("lzo"));
        assert!(props(Some("zstd"), Some("x")).is_err());
        assert!(props(Some("zstd"), Some("3"))
            .unwrap()
            .duckdb_copy_options()
            .contains("COMPRESSION zstd, COMPRESSION_LEVEL 3"));
    }

    #[test]
    fn dictionary_only_where_values_repeat() {
        let n = 10_000;
        let ids: ArrayRef = Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("id-{i}"))));
        let kinds: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| ["a", "b", "c"][i % 3]),
        ));
        let lines: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n as i64));
        let few: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("{}", i % 4000)),
        ));
        let batch = RecordBatch::try_from_iter([("id", ids), ("kind", kinds), ("line", lines), ("few", few)])
            .unwrap();
        let p = props(None, None).unwrap().writer_properties(&batch);
        let dict = |c: &str| p.dictionary_enabled(&ColumnPath::from(c));
        assert!(!dict("id"));
        assert!(dict("kind"));
        assert!(!dict("line"));
        // 4000 distinct of 8192 sampled: under half, dictionary kept.
        assert!(dict("few"));
        assert!(dict("not-a-column") == DEFAULT_DICTIONARY_ENABLED);
    }
}
