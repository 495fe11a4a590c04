//! The pipeline's input reader, shared by both engines so that record numbering and the
//! `malformed_record` rules are the same whichever engine runs (see "Input records" in the README).
//!
//! [`resolve_inputs`] turns the user's input (a file, a directory or a glob) into [`InputFile`]s;
//! [`read_input`] streams one file as [`InputBatch`]es: raw records ([`raw_schema`]: the nine fields
//! as text, `source_file`, `source_line`) and ingest rejects ([`rejects_schema`]). Every record of a
//! file is in exactly one of the two. Text files are read in chunks as they arrive from the object
//! store; memory holds one chunk, one record and one batch of each kind.
//!
//! Raw batches are in file order, and so are reject batches; a batch of either kind is emitted when
//! it is full (or at the end of the file), so the two kinds are not interleaved record by record.

mod csv;
mod ranges;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, Int64Array, Int64Builder, RecordBatch, StringArray, StringBuilder,
};
use arrow::compute::{can_cast_types, cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{Error, ErrorKind, Result};
use crate::storage::glob::{expand, Expansion, NamedObject};
use crate::storage::{read_chunks, storage_error, ObjectStorage};
use crate::table::files::open_parquet;
use csv::{CsvRecord, CsvSplitter};

/// The nine input fields, in the order of [`raw_schema`].
pub use crate::generate::FIELDS;

/// `stage` of the rejects this reader produces.
pub const INGEST_STAGE: &str = "ingest";
/// `reason` of the rejects this reader produces.
pub const MALFORMED_RECORD: &str = "malformed_record";

/// Bytes of the UTF-8 byte order mark, skipped at the start of a text file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The format of an input file, from its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputFormat {
    /// `.csv`: RFC 4180 with a header line.
    Csv,
    /// `.ndjson`, `.jsonl`, `.json`: one JSON object per line.
    Ndjson,
    /// `.parquet`.
    Parquet,
}

impl InputFormat {
    /// The format of a file name or path by its extension (case-insensitive), if it is known.
    pub fn from_name(name: &str) -> Option<Self> {
        let file = name.rsplit('/').next().unwrap_or(name);
        let (_, ext) = file.rsplit_once('.')?;
        match ext.to_ascii_lowercase().as_str() {
            "csv" => Some(InputFormat::Csv),
            "ndjson" | "jsonl" | "json" => Some(InputFormat::Ndjson),
            "parquet" => Some(InputFormat::Parquet),
            _ => None,
        }
    }
}

impl std::fmt::Display for InputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InputFormat::Csv => "csv",
            InputFormat::Ndjson => "ndjson",
            InputFormat::Parquet => "parquet",
        })
    }
}

/// One input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    /// Full URI: `file:///abs/path` or `s3://bucket/key`; the `source_file` of its records.
    pub uri: String,
    /// Format, from the extension.
    pub format: InputFormat,
    /// Size in bytes when resolved.
    pub size: u64,
}

/// A batch read from an input file.
#[derive(Clone, Debug)]
pub enum InputBatch {
    /// Records as read ([`raw_schema`]).
    Raw(RecordBatch),
    /// Malformed records ([`rejects_schema`], stage `ingest`, reason `malformed_record`).
    Rejects(RecordBatch),
}

/// The nine fields (Utf8, nullable), then `source_file` (Utf8) and `source_line` (Int64).
pub fn raw_schema() -> SchemaRef {
    let mut fields: Vec<Field> = FIELDS
        .iter()
        .map(|n| Field::new(*n, DataType::Utf8, true))
        .collect();
    fields.push(Field::new("source_file", DataType::Utf8, false));
    fields.push(Field::new("source_line", DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

/// `source_file`, `source_line`, `stage`, `reason`, `record` (nullable): rows of `rejected_events`.
pub fn rejects_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source_file", DataType::Utf8, false),
        Field::new("source_line", DataType::Int64, false),
        Field::new("stage", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("record", DataType::Utf8, true),
    ]))
}

// ---------------------------------------------------------------------------------------------
// Resolving inputs
// ---------------------------------------------------------------------------------------------

/// Resolve an input: a file URI or path, a directory (every file directly in it with a known
/// extension, sorted by name; subdirectories are not entered), or a glob on the last path segment
/// (`/data/events-*.csv`, `s3://b/p/*.ndjson`; `*`, `?` and `[...]`), as `storage::glob` expands it.
/// Local relative paths are made absolute. A missing path, an empty directory or a glob matching
/// nothing is `NotFound`; a file named explicitly or matched by the glob whose extension is not known
/// is `InvalidInput`.
pub async fn resolve_inputs(storage: &ObjectStorage, input: &str) -> Result<Vec<InputFile>> {
    match expand(storage, input).await? {
        Expansion::Files(named) => named.into_iter().map(input_file).collect(),
        Expansion::Directory(listed) => {
            let files: Vec<InputFile> = listed
                .into_iter()
                .filter_map(|o| {
                    InputFormat::from_name(&o.name).map(|format| InputFile {
                        uri: o.uri,
                        format,
                        size: o.size,
                    })
                })
                .collect();
            if files.is_empty() {
                return Err(Error::not_found(format!(
                    "input {input:?}: the directory has no .csv, .ndjson, .jsonl, .json or .parquet file"
                )));
            }
            Ok(files)
        }
    }
}

fn input_file(object: NamedObject) -> Result<InputFile> {
    match InputFormat::from_name(&object.uri) {
        Some(format) => Ok(InputFile {
            uri: object.uri,
            format,
            size: object.size,
        }),
        None => Err(Error::invalid(format!(
            "input file {}: unknown format (expected .csv, .ndjson, .jsonl, .json or .parquet)",
            object.uri
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Stream one file as batches of raw records and of ingest rejects, each kind in file order, at most
/// `batch_rows` rows per batch (at least 1). The object is streamed in chunks (text) or by row
/// group (Parquet), never loaded whole. Whole-file errors (empty file, bad CSV header, missing
/// Parquet column, storage failures) end the stream with an error.
pub fn read_input(
    storage: &ObjectStorage,
    file: &InputFile,
    batch_rows: usize,
) -> BoxStream<'static, Result<InputBatch>> {
    read_input_chunked(storage, file, batch_rows, usize::MAX)
}

/// Files smaller than this are read as one range.
const SPLIT_MIN_BYTES: u64 = 64 << 20;

/// [`read_input`] of a large CSV file as up to `parts` streams that can be read concurrently: byte
/// ranges that start at record boundaries ([`ranges`]), each numbering its records as one stream
/// would. Together they hold exactly the records and rejects of [`read_input`]'s stream, each kind
/// in file order within a stream. Other files, and CSV files under 64 MiB, are one stream.
pub async fn read_input_split(
    storage: &ObjectStorage,
    file: &InputFile,
    batch_rows: usize,
    parts: usize,
) -> Result<Vec<BoxStream<'static, Result<InputBatch>>>> {
    read_input_split_at(storage, file, batch_rows, parts, SPLIT_MIN_BYTES).await
}

async fn read_input_split_at(
    storage: &ObjectStorage,
    file: &InputFile,
    batch_rows: usize,
    parts: usize,
    min_bytes: u64,
) -> Result<Vec<BoxStream<'static, Result<InputBatch>>>> {
    if file.format != InputFormat::Csv {
        return Ok(vec![read_input(storage, file, batch_rows)]);
    }
    let Some(ranges) = ranges::csv_ranges(storage, file, parts, min_bytes).await? else {
        return Ok(vec![read_input(storage, file, batch_rows)]);
    };
    Ok(ranges
        .into_iter()
        .map(|range| {
            let mut reader = text_reader(storage, file, batch_rows.max(1), usize::MAX);
            reader.range = Some(range.start..range.end);
            if range.start > 0 {
                reader.prefix = None; // a byte order mark can only start the file
                reader.out.line = range.records_before;
                reader.parser = TextParser::Csv {
                    splitter: CsvSplitter::default(),
                    header: range.header,
                };
            }
            reader.into_stream()
        })
        .collect())
}

fn text_reader(
    storage: &ObjectStorage,
    file: &InputFile,
    batch_rows: usize,
    chunk_bytes: usize,
) -> TextReader {
    TextReader {
        storage: storage.clone(),
        uri: file.uri.clone(),
        range: None,
        size: file.size,
        bytes: None,
        chunk_bytes: chunk_bytes.max(1),
        total: 0,
        prefix: Some(Vec::new()),
        parser: match file.format {
            InputFormat::Csv => TextParser::Csv {
                splitter: CsvSplitter::default(),
                header: None,
            },
            _ => TextParser::Ndjson { line: Vec::new() },
        },
        out: Batcher::new(file.uri.clone(), batch_rows),
        done: false,
    }
}

/// [`read_input`], text chunks cut to at most `chunk_bytes` (tests use tiny chunks so that records
/// straddle them).
fn read_input_chunked(
    storage: &ObjectStorage,
    file: &InputFile,
    batch_rows: usize,
    chunk_bytes: usize,
) -> BoxStream<'static, Result<InputBatch>> {
    let batch_rows = batch_rows.max(1);
    match file.format {
        InputFormat::Parquet => {
            let storage = storage.clone();
            let uri = file.uri.clone();
            futures::stream::once(async move { read_parquet(&storage, uri, batch_rows).await })
                .try_flatten()
                .boxed()
        }
        _ => text_reader(storage, file, batch_rows, chunk_bytes).into_stream(),
    }
}

fn empty_file(uri: &str) -> Error {
    Error::invalid(format!("input file {uri} is empty"))
}

/// Builds the two kinds of batches, row by row.
struct Batcher {
    uri: String,
    batch_rows: usize,
    fields: Vec<StringBuilder>,
    lines: Int64Builder,
    reject_lines: Int64Builder,
    reject_records: StringBuilder,
    ready: VecDeque<InputBatch>,
    /// Records numbered so far (the last `source_line`).
    line: i64,
}

impl Batcher {
    fn new(uri: String, batch_rows: usize) -> Self {
        Self {
            uri,
            batch_rows,
            fields: (0..FIELDS.len()).map(|_| StringBuilder::new()).collect(),
            lines: Int64Builder::new(),
            reject_lines: Int64Builder::new(),
            reject_records: StringBuilder::new(),
            ready: VecDeque::new(),
            line: 0,
        }
    }

    /// Number the next record.
    fn next_line(&mut self) -> i64 {
        self.line += 1;
        self.line
    }

    fn push_raw<'a>(&mut self, line: i64, values: impl IntoIterator<Item = Option<&'a str>>) -> Result<()> {
        for (builder, value) in self.fields.iter_mut().zip(values) {
            builder.append_option(value);
        }
        self.lines.append_value(line);
        if self.lines.len() >= self.batch_rows {
            self.flush_raw()?;
        }
        Ok(())
    }

    fn push_reject(&mut self, line: i64, record: &str) -> Result<()> {
        self.reject_lines.append_value(line);
        self.reject_records.append_value(record);
        if self.reject_lines.len() >= self.batch_rows {
            self.flush_rejects()?;
        }
        Ok(())
    }

    fn flush_raw(&mut self) -> Result<()> {
        let n = self.lines.len();
        if n == 0 {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = self
            .fields
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        columns.push(constant(&self.uri, n));
        columns.push(Arc::new(self.lines.finish()));
        let batch = RecordBatch::try_new(raw_schema(), columns)?;
        self.ready.push_back(InputBatch::Raw(batch));
        Ok(())
    }

    fn flush_rejects(&mut self) -> Result<()> {
        let n = self.reject_lines.len();
        if n == 0 {
            return Ok(());
        }
        let batch = RecordBatch::try_new(
            rejects_schema(),
            vec![
                constant(&self.uri, n),
                Arc::new(self.reject_lines.finish()),
                constant(INGEST_STAGE, n),
                constant(MALFORMED_RECORD, n),
                Arc::new(self.reject_records.finish()),
            ],
        )?;
        self.ready.push_back(InputBatch::Rejects(batch));
        Ok(())
    }
}

fn constant(value: &str, n: usize) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(std::iter::repeat_n(value, n)))
}

enum TextParser {
    Csv {
        splitter: CsvSplitter,
        /// For each of [`FIELDS`], its column in the file; `None` until the header is read.
        header: Option<[usize; 9]>,
    },
    Ndjson {
        /// The current line so far.
        line: Vec<u8>,
    },
}

/// Reads a CSV or NDJSON file chunk by chunk.
struct TextReader {
    storage: ObjectStorage,
    uri: String,
    /// The bytes to read (`None`: all).
    range: Option<std::ops::Range<u64>>,
    /// The object's size when known (0: unknown).
    size: u64,
    bytes: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    chunk_bytes: usize,
    total: u64,
    /// The first bytes, held until there are 3 of them to check for a byte order mark.
    prefix: Option<Vec<u8>>,
    parser: TextParser,
    out: Batcher,
    done: bool,
}

impl TextReader {
    fn into_stream(self) -> BoxStream<'static, Result<InputBatch>> {
        futures::stream::try_unfold(
            self,
            |mut r| async move { Ok(r.next_batch().await?.map(|b| (b, r))) },
        )
        .boxed()
    }

    async fn next_batch(&mut self) -> Result<Option<InputBatch>> {
        loop {
            if let Some(batch) = self.out.ready.pop_front() {
                return Ok(Some(batch));
            }
            if self.done {
                return Ok(None);
            }
            if self.bytes.is_none() {
                let (store, path): (Arc<dyn ObjectStore>, ObjectPath) = self.storage.resolve(&self.uri)?;
                self.bytes = Some(read_chunks(store, path, self.range.clone(), self.size).await?);
            }
            let next = self.bytes.as_mut().map(|s| s.next());
            match next.expect("byte stream opened above").await {
                Some(chunk) => {
                    let chunk = chunk.map_err(|e| read_error(e, &self.uri))?;
                    self.total += chunk.len() as u64;
                    for piece in chunk.chunks(self.chunk_bytes) {
                        self.feed(piece)?;
                    }
                }
                None => {
                    self.done = true;
                    self.bytes = None;
                    self.finish()?;
                }
            }
        }
    }

    fn feed(&mut self, piece: &[u8]) -> Result<()> {
        if let Some(prefix) = &mut self.prefix {
            prefix.extend_from_slice(piece);
            if prefix.len() < BOM.len() {
                return Ok(());
            }
            let prefix = self.prefix.take().unwrap_or_default();
            return self.parse(prefix.strip_prefix(BOM).unwrap_or(&prefix));
        }
        self.parse(piece)
    }

    fn finish(&mut self) -> Result<()> {
        if self.total == 0 {
            return Err(empty_file(&self.uri));
        }
        if let Some(prefix) = self.prefix.take() {
            self.parse(&prefix)?;
        }
        let Self { parser, out, uri, .. } = self;
        match parser {
            TextParser::Csv { splitter, header } => {
                splitter.finish(&mut |r| csv_record(r, header, out))?;
                if header.is_none() {
                    return Err(Error::invalid(format!("CSV file {uri}: no header line")));
                }
            }
            TextParser::Ndjson { line } => {
                if !line.is_empty() {
                    ndjson_line(line, out)?;
                    line.clear();
                }
            }
        }
        out.flush_raw()?;
        out.flush_rejects()
    }

    fn parse(&mut self, mut input: &[u8]) -> Result<()> {
        let Self { parser, out, .. } = self;
        match parser {
            TextParser::Csv { splitter, header } => splitter.feed(input, &mut |r| csv_record(r, header, out)),
            TextParser::Ndjson { line } => {
                while let Some(n) = input.iter().position(|&b| b == b'\n') {
                    if line.is_empty() {
                        ndjson_line(&input[..n], out)?;
                    } else {
                        line.extend_from_slice(&input[..n]);
                        ndjson_line(line, out)?;
                        line.clear();
                    }
                    input = &input[n + 1..];
                }
                line.extend_from_slice(input);
                Ok(())
            }
        }
    }
}

fn read_error(e: object_store::Error, uri: &str) -> Error {
    storage_error(e, uri, "read")
}

/// One CSV record: the header first, then data records.
fn csv_record(r: CsvRecord<'_>, header: &mut Option<[usize; 9]>, out: &mut Batcher) -> Result<()> {
    let Some(columns) = header else {
        *header = Some(csv_header(&r, &out.uri)?);
        return Ok(());
    };
    let line = out.next_line();
    if !r.complete || r.len() != FIELDS.len() || std::str::from_utf8(r.raw).is_err() {
        return out.push_reject(line, &String::from_utf8_lossy(r.raw));
    }
    let mut values: [&str; 9] = [""; 9];
    for (value, &column) in values.iter_mut().zip(columns.iter()) {
        // Fields are the raw text less some ASCII quotes, so valid UTF-8 when the raw text is.
        *value = std::str::from_utf8(r.field(column))
            .map_err(|_| Error::internal("CSV field not UTF-8 in a UTF-8 record"))?;
    }
    out.push_raw(line, values.into_iter().map(Some))
}

/// The column of each of [`FIELDS`] in a header that names each exactly once.
fn csv_header(r: &CsvRecord<'_>, uri: &str) -> Result<[usize; 9]> {
    let bad = || {
        Error::invalid(format!(
            "CSV file {uri}: header must name exactly the fields {} (in any order), found {:?}",
            FIELDS.join(","),
            String::from_utf8_lossy(r.raw)
        ))
    };
    if !r.complete || r.len() != FIELDS.len() {
        return Err(bad());
    }
    let mut columns = [usize::MAX; 9];
    for i in 0..r.len() {
        let name = std::str::from_utf8(r.field(i)).map_err(|_| bad())?;
        let k = FIELDS.iter().position(|f| *f == name).ok_or_else(bad)?;
        if columns[k] != usize::MAX {
            return Err(bad());
        }
        columns[k] = i;
    }
    Ok(columns)
}

/// One NDJSON line (without its `\n`).
fn ndjson_line(line: &[u8], out: &mut Batcher) -> Result<()> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let number = out.next_line();
    match ndjson_fields(line) {
        Some(values) => out.push_raw(number, values.iter().map(|v| v.as_deref())),
        None => out.push_reject(number, &String::from_utf8_lossy(line)),
    }
}

/// The nine fields of an NDJSON line, `None` if it is malformed.
fn ndjson_fields(line: &[u8]) -> Option<[Option<Cow<'_, str>>; 9]> {
    let text = std::str::from_utf8(line).ok()?;
    let NdjsonObject(raw) = serde_json::from_str(text).ok()?;
    let mut values: [Option<Cow<'_, str>>; 9] = Default::default();
    for (value, raw) in values.iter_mut().zip(raw) {
        let Some(raw) = raw else { continue };
        let json = raw.get();
        *value = match json.as_bytes().first()? {
            b'"' => Some(match serde_json::from_str::<&str>(json) {
                Ok(s) => Cow::Borrowed(s),
                // Escapes: the string must be decoded into a new one.
                Err(_) => Cow::Owned(serde_json::from_str::<String>(json).ok()?),
            }),
            b'n' => None,
            b'{' | b'[' => return None,
            // A number or boolean: its JSON text as written (`12.50` stays `12.50`).
            _ => Some(Cow::Borrowed(json)),
        };
    }
    Some(values)
}

/// A JSON object's values for each of [`FIELDS`], as raw JSON text (a repeated key: the last one).
/// Other keys are skipped (their values still have to be valid JSON). Keys are not allocated.
struct NdjsonObject<'a>([Option<&'a RawValue>; 9]);

impl<'de> Deserialize<'de> for NdjsonObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = NdjsonObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
                let mut fields = [None; 9];
                while let Some(FieldKey(key)) = map.next_key()? {
                    match key {
                        Some(i) => fields[i] = Some(map.next_value::<&'de RawValue>()?),
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(NdjsonObject(fields))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// An object key: its index in [`FIELDS`], if it is one of them.
struct FieldKey(Option<usize>);

impl<'de> Deserialize<'de> for FieldKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = FieldKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<FieldKey, E> {
                Ok(FieldKey(FIELDS.iter().position(|f| *f == v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A Parquet file as a stream of raw batches.
async fn read_parquet(
    storage: &ObjectStorage,
    uri: String,
    batch_rows: usize,
) -> Result<BoxStream<'static, Result<InputBatch>>> {
    let (store, path) = storage.resolve(&uri)?;
    let meta = store.head(&path).await.map_err(|e| read_error(e, &uri))?;
    if meta.size == 0 {
        return Err(empty_file(&uri));
    }
    let builder = open_parquet(storage, &uri, Some(meta.size)).await?;
    let parquet_error = |e: parquet::errors::ParquetError, uri: &str| {
        Error::wrap(ErrorKind::Data, format!("cannot read {uri}"), e)
    };
    let schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(FIELDS.len());
    for name in FIELDS {
        let index = schema
            .index_of(name)
            .map_err(|_| Error::invalid(format!("Parquet file {uri}: no column {name:?}")))?;
        let data_type = schema.field(index).data_type();
        if !can_cast_types(data_type, &DataType::Utf8) {
            return Err(Error::invalid(format!(
                "Parquet file {uri}: column {name:?} of type {data_type} cannot be read as text"
            )));
        }
        roots.push(index);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let stream = builder
        .with_projection(mask)
        .with_batch_size(batch_rows)
        .build()
        .map_err(|e| parquet_error(e, &uri))?;
    let mut line = 0i64;
    Ok(stream
        .map(move |batch| {
            let batch = batch.map_err(|e| parquet_error(e, &uri))?;
            parquet_batch(&batch, &uri, &mut line).map(InputBatch::Raw)
        })
        .try_filter(|b| futures::future::ready(matches!(b, InputBatch::Raw(b) if b.num_rows() > 0)))
        .boxed())
}

fn parquet_batch(batch: &RecordBatch, uri: &str, line: &mut i64) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let mut columns = Vec::with_capacity(FIELDS.len() + 2);
    for name in FIELDS {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| Error::internal(format!("projected column {name} missing")))?;
        let text = cast_with_options(column, &DataType::Utf8, &options).map_err(|e| {
            Error::wrap(
                ErrorKind::Data,
                format!("Parquet file {uri}: column {name:?} cannot be read as text"),
                e,
            )
        })?;
        columns.push(text);
    }
    columns.push(constant(uri, n));
    let first = *line + 1;
    *line += n as i64;
    columns.push(Arc::new(Int64Array::from_iter_values(first..=*line)));
    Ok(RecordBatch::try_new(raw_schema(), columns)?)
}

#[cfg(test)]
mod tests;
