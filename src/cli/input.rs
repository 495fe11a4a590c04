//! Reading the CLI's inputs: column type and schema syntax, and data files (CSV, NDJSON, Parquet)
//! streamed as Arrow batches through DataFusion's readers.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};
use floe::{Error, ErrorKind, Result};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

/// Parse a column type: boolean, int, long|bigint, float, double, string, binary, date,
/// timestamp (no zone), timestamptz, decimal(P,S).
pub fn parse_type(text: &str) -> Result<DataType> {
    let t = text.trim().to_ascii_lowercase();
    let dt = match t.as_str() {
        "boolean" | "bool" => DataType::Boolean,
        "int" | "integer" => DataType::Int32,
        "long" | "bigint" => DataType::Int64,
        "float" => DataType::Float32,
        "double" => DataType::Float64,
        "string" | "text" | "varchar" => DataType::Utf8,
        "binary" => DataType::Binary,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        _ => {
            if let Some(args) = t.strip_prefix("decimal(").and_then(|r| r.strip_suffix(')')) {
                let (p, s) = args
                    .split_once(',')
                    .ok_or_else(|| Error::new(ErrorKind::InvalidInput, format!("invalid type {text:?}")))?;
                let p: u8 = p
                    .trim()
                    .parse()
                    .map_err(|_| Error::new(ErrorKind::InvalidInput, format!("invalid type {text:?}")))?;
                let s: i8 = s
                    .trim()
                    .parse()
                    .map_err(|_| Error::new(ErrorKind::InvalidInput, format!("invalid type {text:?}")))?;
                DataType::Decimal128(p, s)
            } else {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("unknown column type {text:?}"),
                ));
            }
        }
    };
    Ok(dt)
}

/// Parse "name type [not null], ..." into an Arrow schema.
pub fn parse_schema(text: &str) -> Result<Schema> {
    let mut fields = Vec::new();
    // Split on commas outside parentheses (decimal(12,2)).
    let mut depth = 0;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let (name, rest) = part
            .split_once(char::is_whitespace)
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, format!("column {part:?} has no type")))?;
        let rest = rest.trim();
        let lower = rest.to_ascii_lowercase();
        let (ty, nullable) = match lower.strip_suffix("not null") {
            Some(t) => (&rest[..t.len()], false),
            None => (rest, true),
        };
        fields.push(Field::new(name, parse_type(ty)?, nullable));
    }
    if fields.is_empty() {
        return Err(Error::new(ErrorKind::InvalidInput, "the schema has no columns"));
    }
    Ok(Schema::new(fields))
}

/// Stream the rows of data files. CSV files are read with the table's schema (header names must
/// match); NDJSON and Parquet with their own, conformed to the table's by the writer.
pub async fn read_files(
    files: &[PathBuf],
    table_schema: SchemaRef,
) -> Result<BoxStream<'static, Result<arrow::array::RecordBatch>>> {
    let ctx = SessionContext::new();
    let mut streams = Vec::new();
    // Strip Iceberg field-id metadata: DataFusion's CSV reader wants a plain schema.
    let plain = Arc::new(Schema::new(
        table_schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    for file in files {
        let path = file.to_str().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("{} is not UTF-8", file.display()),
            )
        })?;
        if !file.exists() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("input file {} does not exist", file.display()),
            ));
        }
        let ext = file
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let df = match ext.as_str() {
            "csv" => {
                ctx.read_csv(path, CsvReadOptions::new().has_header(true).schema(&plain))
                    .await
            }
            "json" | "ndjson" | "jsonl" => {
                ctx.read_json(
                    path,
                    JsonReadOptions::default().file_extension(&format!(".{ext}")),
                )
                .await
            }
            "parquet" => ctx.read_parquet(path, ParquetReadOptions::default()).await,
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{}: unknown file format (expected .csv, .ndjson/.jsonl/.json or .parquet)",
                        file.display()
                    ),
                ))
            }
        }
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("cannot read {}: {e}", file.display()),
            )
        })?;
        let stream = df.execute_stream().await.map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("cannot read {}: {e}", file.display()),
            )
        })?;
        let name = file.display().to_string();
        streams.push(
            stream
                .map_err(move |e| Error::new(ErrorKind::InvalidInput, format!("cannot read {name}: {e}")))
                .boxed(),
        );
    }
    Ok(futures::stream::iter(streams).flatten().boxed())
}

/// Parse a size: `10MB`, `1GB`, `500KB`, `2GiB`, or a number of bytes.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("invalid size {text:?}: expected e.g. 10MB or 1GB"),
        )
    })?;
    let factor: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" | "K" => 1e3,
        "MB" | "M" => 1e6,
        "GB" | "G" => 1e9,
        "KIB" => 1024.0,
        "MIB" => 1024.0 * 1024.0,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("invalid size unit in {text:?}"),
            ))
        }
    };
    Ok((value * factor).round() as u64)
}
