//! Reading data files into a table's shape: CSV with a header line, NDJSON and Parquet, local or on
//! S3, streamed as Arrow batches. Columns are matched by name, never by position: a CSV header
//! `w,id` fills the table's `w` and `id` whatever their order. A file that does not fit is a clear
//! error before anything is written: a duplicate header name, a column the table does not have
//! (unless [`FileReadOptions::allow_extra_columns`]), a required column the file lacks, an empty
//! CSV with no header line, a `.parquet` that is not Parquet, or a directory where a file is named.
//! Types are the table's: CSV and NDJSON text is parsed into them, Parquet columns are widened to
//! them by the writer (never narrowed).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::{Buf, Bytes};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};

use crate::error::{Error, ErrorKind, Result};
use crate::storage::ObjectStorage;

/// How data files are read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileReadOptions {
    /// Drop columns the table does not have instead of refusing the file.
    pub allow_extra_columns: bool,
    /// Keep columns the table does not have (as text in CSV and NDJSON, as they are in Parquet), and
    /// do not require the table's required columns: a source for an upsert or a merge, whose extra
    /// columns (`_op`) drive its clauses.
    pub keep_extra_columns: bool,
}

/// A data file format, from the file name's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// `.csv`: a header line, then RFC 4180 records.
    Csv,
    /// `.ndjson`, `.jsonl`, `.json`: one JSON object per line.
    NdJson,
    /// `.parquet`.
    Parquet,
}

impl FileFormat {
    /// The format a file name says, if any.
    pub fn of(name: &str) -> Result<FileFormat> {
        let ext = name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "csv" => Ok(FileFormat::Csv),
            "ndjson" | "jsonl" | "json" => Ok(FileFormat::NdJson),
            "parquet" => Ok(FileFormat::Parquet),
            _ => Err(Error::invalid(format!(
                "{name}: unknown file format (expected .csv, .ndjson/.jsonl/.json or .parquet)"
            ))),
        }
    }
}

/// Rows read, as a stream of batches.
pub type Batches = BoxStream<'static, Result<RecordBatch>>;

/// Stream the rows of `files` (local paths or `file://` / `s3://` URIs) shaped for a table with
/// `table_schema`. Every file is checked (exists, is a file, fits the table) before the first batch
/// is returned.
pub async fn read_files(
    storage: &ObjectStorage,
    files: &[String],
    table_schema: SchemaRef,
    options: &FileReadOptions,
) -> Result<Batches> {
    let mut streams = Vec::new();
    for file in files {
        let uri = crate::storage::Warehouse::parse(file)?.uri();
        streams.push(read_file(storage, &uri, table_schema.clone(), options).await?);
    }
    Ok(futures::stream::iter(streams).flatten().boxed())
}

async fn read_file(
    storage: &ObjectStorage,
    uri: &str,
    table: SchemaRef,
    options: &FileReadOptions,
) -> Result<Batches> {
    let format = FileFormat::of(uri)?;
    if let Some(path) = uri.strip_prefix("file://") {
        let meta = std::fs::metadata(path)
            .map_err(|_| Error::not_found(format!("input file {path} does not exist")))?;
        if meta.is_dir() {
            return Err(Error::invalid(format!(
                "input {path} is a directory, not a {format:?} file"
            )));
        }
    }
    let size = storage
        .size(uri)
        .await
        .map_err(|e| e.context(format!("input file {uri}")))?;
    let schema = plain(&table);
    match format {
        FileFormat::Csv => read_csv(storage, uri, size, schema, options).await,
        FileFormat::NdJson => read_ndjson(storage, uri, size, schema, options).await,
        FileFormat::Parquet => read_parquet(storage, uri, size, schema, options).await,
    }
}

/// The table's columns without Iceberg field-id metadata, nullable (the writer checks required
/// columns, with a better message than a parser could give).
fn plain(table: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        table
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Check a file's column names against the table: no duplicate, no unknown one (unless allowed),
/// and every column the table requires present. Returns, per file column, the table column it fills.
fn match_columns(
    uri: &str,
    names: &[String],
    table: &SchemaRef,
    required: &HashSet<String>,
    options: &FileReadOptions,
) -> Result<Vec<Option<Field>>> {
    let mut seen = HashSet::new();
    let by_name: HashMap<&str, &Field> = table
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.as_ref()))
        .collect();
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        if !seen.insert(n.as_str()) {
            return Err(Error::invalid(format!(
                "{uri}: column {n:?} appears twice in the header"
            )));
        }
        match by_name.get(n.as_str()) {
            Some(f) => out.push(Some((*f).clone())),
            None if options.keep_extra_columns => out.push(Some(Field::new(n, DataType::Utf8, true))),
            None if options.allow_extra_columns => out.push(None),
            None => {
                return Err(Error::invalid(format!(
                    "{uri}: column {n:?} is not in the table (columns: {}); nothing was written",
                    table
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        }
    }
    if let Some(missing) = required
        .iter()
        .find(|r| !options.keep_extra_columns && !seen.contains(r.as_str()))
    {
        return Err(Error::invalid(format!(
            "{uri}: required column {missing:?} is missing; nothing was written"
        )));
    }
    Ok(out)
}

fn required_columns(table_schema: &SchemaRef) -> HashSet<String> {
    table_schema
        .fields()
        .iter()
        .filter(|f| !f.is_nullable())
        .map(|f| f.name().clone())
        .collect()
}

/// The most a CSV header line may take.
const MAX_HEADER_BYTES: u64 = 1 << 20;

async fn read_csv(
    storage: &ObjectStorage,
    uri: &str,
    size: u64,
    schema: SchemaRef,
    options: &FileReadOptions,
) -> Result<Batches> {
    if size == 0 {
        return Err(Error::invalid(format!(
            "{uri} is empty: a CSV file needs a header line"
        )));
    }
    let names = csv_header(storage, uri, size).await?;
    if names.iter().all(|n| n.is_empty()) {
        return Err(Error::invalid(format!("{uri}: the CSV header line is empty")));
    }
    let parts = (size / MIN_CSV_RANGE_BYTES).min(crate::resources::cores() as u64) as usize;
    if size >= SPLIT_CSV_BYTES && parts >= 2 {
        return read_csv_split(storage, uri, size, &names, schema, options, parts).await;
    }
    let decoder = csv_decoder(uri, &names, &schema, options, true)?;
    decode_object(storage, uri, Some(0..size), decoder, 0).await
}

/// A CSV file at least this large decodes in byte ranges on every core.
const SPLIT_CSV_BYTES: u64 = 64 << 20;

/// The fewest bytes a range of a split CSV file holds.
const MIN_CSV_RANGE_BYTES: u64 = 16 << 20;

/// The records of the CSV file `uri` (`size` bytes, header `names`) decoded in up to `parts` byte
/// ranges at once, each starting at a record boundary ([`super::csv_ranges`]); a range starts
/// decoding as soon as the scan has found where it starts. The rows are the rows of a one-range
/// read; their batches come in the order the ranges produce them. A bad record's error names its
/// line as a one-range read does.
pub(crate) async fn read_csv_split(
    storage: &ObjectStorage,
    uri: &str,
    size: u64,
    names: &[String],
    schema: SchemaRef,
    options: &FileReadOptions,
    parts: usize,
) -> Result<Batches> {
    use super::csv_ranges::{scan_cuts, Cut};
    use tokio::sync::mpsc;
    // The header's columns are checked before the first batch, as for a one-range read.
    csv_decoder(uri, names, &schema, options, true)?;
    let (store, path) = storage.resolve(uri)?;
    let owned = uri.to_string();
    let bytes = crate::storage::read_chunks(store, path, Some(0..size), size)
        .await?
        .map_err(move |e| crate::storage::storage_error(e, &owned, "read"))
        .boxed();
    let (cut_tx, mut cut_rx) = mpsc::unbounded_channel();
    tokio::spawn(scan_cuts(bytes, size, parts, cut_tx));
    let (batch_tx, mut batch_rx) = mpsc::channel::<Result<RecordBatch>>(2 * parts);
    let (storage, uri, names, options) = (storage.clone(), uri.to_string(), names.to_vec(), options.clone());
    tokio::spawn(async move {
        let mut start = Cut {
            offset: 0,
            records_before: 0,
        };
        loop {
            let next = match cut_rx.recv().await {
                Some(Ok(cut)) => Some(cut),
                Some(Err(e)) => {
                    let _ = batch_tx.send(Err(e)).await;
                    return;
                }
                None => None,
            };
            let end = next.map_or(size, |c| c.offset);
            let range = match csv_decoder(&uri, &names, &schema, &options, start.offset == 0) {
                Ok(decoder) => {
                    decode_object(
                        &storage,
                        &uri,
                        Some(start.offset..end),
                        decoder,
                        start.records_before,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            tokio::spawn(forward(range, batch_tx.clone()));
            match next {
                Some(cut) => start = cut,
                None => return,
            }
        }
    });
    Ok(futures::stream::poll_fn(move |cx| batch_rx.poll_recv(cx)).boxed())
}

/// Send a range's batches on to `out` until it ends, fails, or `out` is closed.
async fn forward(range: Result<Batches>, out: tokio::sync::mpsc::Sender<Result<RecordBatch>>) {
    let mut batches = match range {
        Ok(batches) => batches,
        Err(e) => {
            let _ = out.send(Err(e)).await;
            return;
        }
    };
    while let Some(batch) = batches.next().await {
        let failed = batch.is_err();
        if out.send(batch).await.is_err() || failed {
            return;
        }
    }
}

/// The column names of the header line of the CSV file `uri` (of `size` bytes).
async fn csv_header(storage: &ObjectStorage, uri: &str, size: u64) -> Result<Vec<String>> {
    let (store, path) = storage.resolve(uri)?;
    let head = store
        .get_range(&path, 0..size.min(MAX_HEADER_BYTES))
        .await
        .map_err(|e| Error::wrap(ErrorKind::Storage, format!("cannot read {uri}"), e))?;
    let (header, _) = arrow::csv::reader::Format::default()
        .with_header(true)
        .infer_schema(std::io::Cursor::new(head.as_ref()), Some(0))
        .map_err(|e| Error::invalid(format!("{uri}: cannot read the CSV header: {e}")))?;
    Ok(header.fields().iter().map(|f| f.name().clone()).collect())
}

/// A CSV decoder for a file whose header names `names`: columns matched to `schema` by name, parsed
/// in the file's column order with the table's types, extra columns dropped; `header` when the bytes
/// it decodes start with the header line.
fn csv_decoder(
    uri: &str,
    names: &[String],
    schema: &SchemaRef,
    options: &FileReadOptions,
    header: bool,
) -> Result<arrow::csv::reader::Decoder> {
    let table_fields = match_columns(uri, names, schema, &required_columns(schema), options)?;
    let file_schema = Arc::new(Schema::new(
        names
            .iter()
            .zip(&table_fields)
            .map(|(n, f)| match f {
                Some(f) => f.clone(),
                None => Field::new(n, DataType::Utf8, true),
            })
            .collect::<Vec<_>>(),
    ));
    let projection: Vec<usize> = table_fields
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.as_ref().map(|_| i))
        .collect();
    Ok(arrow::csv::ReaderBuilder::new(file_schema)
        .with_header(header)
        .with_batch_size(8192)
        .with_projection(projection)
        .build_decoder())
}

/// Stream the records of bytes `start..end` of the CSV file `uri` (`start` at a record boundary), with
/// the file's header line naming the columns: one work unit of a large file.
pub async fn read_csv_range(
    storage: &ObjectStorage,
    uri: &str,
    start: u64,
    end: u64,
    table_schema: SchemaRef,
    options: &FileReadOptions,
) -> Result<Batches> {
    let size = storage.size(uri).await?;
    let schema = plain(&table_schema);
    let names = csv_header(storage, uri, size).await?;
    let decoder = csv_decoder(uri, &names, &schema, options, false)?;
    decode_object(storage, uri, Some(start..end), decoder, 0).await
}

/// A push decoder of text records into batches (arrow's CSV and JSON decoders).
trait PushDecoder: Send + 'static {
    fn decode(&mut self, buf: &[u8]) -> std::result::Result<usize, arrow::error::ArrowError>;
    fn flush(&mut self) -> std::result::Result<Option<RecordBatch>, arrow::error::ArrowError>;
}

impl PushDecoder for arrow::csv::reader::Decoder {
    fn decode(&mut self, buf: &[u8]) -> std::result::Result<usize, arrow::error::ArrowError> {
        arrow::csv::reader::Decoder::decode(self, buf)
    }
    fn flush(&mut self) -> std::result::Result<Option<RecordBatch>, arrow::error::ArrowError> {
        arrow::csv::reader::Decoder::flush(self)
    }
}

impl PushDecoder for arrow::json::reader::Decoder {
    fn decode(&mut self, buf: &[u8]) -> std::result::Result<usize, arrow::error::ArrowError> {
        arrow::json::reader::Decoder::decode(self, buf)
    }
    fn flush(&mut self) -> std::result::Result<Option<RecordBatch>, arrow::error::ArrowError> {
        arrow::json::reader::Decoder::flush(self)
    }
}

/// Stream bytes `range` of an object (all of it when `None`) through `decoder` as they arrive, read
/// in large requests: memory holds a chunk or two and one batch. `line_shift` is the number of records
/// before `range` (a CSV range after the first), added to the line numbers in the decoder's errors so
/// that they name the file's lines.
async fn decode_object<D: PushDecoder>(
    storage: &ObjectStorage,
    uri: &str,
    range: Option<std::ops::Range<u64>>,
    mut decoder: D,
    line_shift: u64,
) -> Result<Batches> {
    let (store, path) = storage.resolve(uri)?;
    let size = range.as_ref().map_or(0, |r| r.end);
    let mut input = crate::storage::read_chunks(store, path, range, size).await?;
    let location = uri.to_string();
    let uri = uri.to_string();
    let failed = move |e: arrow::error::ArrowError| {
        Error::invalid(format!(
            "cannot read {uri}: {}",
            shift_lines(&e.to_string(), line_shift)
        ))
    };
    let mut buffered = Bytes::new();
    let mut ended = false;
    Ok(futures::stream::poll_fn(move |cx| {
        use std::task::Poll;
        loop {
            if buffered.is_empty() {
                if ended {
                    break;
                }
                buffered = match futures::ready!(input.poll_next_unpin(cx)) {
                    Some(Ok(b)) => b,
                    Some(Err(e)) => {
                        return Poll::Ready(Some(Err(Error::wrap(
                            ErrorKind::Storage,
                            format!("cannot read {location}"),
                            e,
                        ))))
                    }
                    None => {
                        ended = true;
                        break;
                    }
                };
            }
            let decoded = match decoder.decode(buffered.as_ref()) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Poll::Ready(Some(Err(failed(e)))),
            };
            buffered.advance(decoded);
        }
        Poll::Ready(decoder.flush().map_err(&failed).transpose())
    })
    .boxed())
}

/// `message` with its first "line N" as "line N + by" (arrow's CSV errors name the line before they
/// quote the row, whose text is left alone).
fn shift_lines(message: &str, by: u64) -> String {
    let mut from = 0;
    while let Some(at) = message[from..].find("line ") {
        let digits_at = from + at + "line ".len();
        let digits = message[digits_at..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        if let Ok(n) = message[digits_at..digits_at + digits].parse::<u64>() {
            return format!(
                "{}{}{}",
                &message[..digits_at],
                n + by,
                &message[digits_at + digits..]
            );
        }
        from = digits_at;
    }
    message.to_string()
}

async fn read_ndjson(
    storage: &ObjectStorage,
    uri: &str,
    size: u64,
    schema: SchemaRef,
    options: &FileReadOptions,
) -> Result<Batches> {
    // Keys are matched by name by the decoder itself; an unknown key is an error unless allowed
    // (strict mode). Required columns are checked by the writer, row by row. Kept extra keys take
    // the types the first lines show.
    let schema = if options.keep_extra_columns {
        with_inferred_extras(storage, uri, schema).await?
    } else {
        schema
    };
    let decoder = arrow::json::ReaderBuilder::new(schema)
        .with_batch_size(8192)
        .with_strict_mode(!options.allow_extra_columns && !options.keep_extra_columns)
        .build_decoder()
        .map_err(|e| Error::invalid(format!("{uri}: {e}")))?;
    decode_object(storage, uri, Some(0..size), decoder, 0).await
}

/// `schema` plus the keys the first lines of NDJSON file `uri` have that it lacks, typed as inferred.
async fn with_inferred_extras(storage: &ObjectStorage, uri: &str, schema: SchemaRef) -> Result<SchemaRef> {
    let size = storage.size(uri).await?;
    let head = storage.read_range(uri, 0..size.min(MAX_HEADER_BYTES)).await?;
    let complete = match head.iter().rposition(|b| *b == b'\n') {
        Some(end) if (head.len() as u64) < size => &head[..=end],
        _ => &head[..],
    };
    let (inferred, _) = arrow::json::reader::infer_json_schema(std::io::Cursor::new(complete), Some(1000))
        .map_err(|e| Error::invalid(format!("{uri}: {e}")))?;
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for f in inferred.fields() {
        if schema.field_with_name(f.name()).is_err() {
            fields.push(f.as_ref().clone().with_nullable(true));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// A Parquet file opened for reading: its footer read, its batches not yet.
pub(crate) type ParquetFile = ParquetRecordBatchStreamBuilder<ParquetObjectReader>;

/// Open the Parquet file `uri` (of `size` bytes, when the caller knows): `NotFound` when it is
/// missing, `InvalidInput` when it is not Parquet (too short for a footer, or a footer that does not
/// decode), `Storage` when the store fails. Every reader of a file a caller names opens it here.
pub(crate) async fn open_parquet(
    storage: &ObjectStorage,
    uri: &str,
    size: Option<u64>,
) -> Result<ParquetFile> {
    let size = match size {
        Some(size) => size,
        None => storage.size(uri).await?,
    };
    if size < 12 {
        return Err(Error::invalid(format!(
            "{uri} is not a Parquet file: {size} bytes, too short for a footer"
        )));
    }
    let (store, path) = storage.resolve(uri)?;
    let reader = ParquetObjectReader::new(store, path).with_file_size(size);
    ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| match e {
            parquet::errors::ParquetError::External(ref inner) if inner.is::<object_store::Error>() => {
                Error::wrap(ErrorKind::Storage, format!("cannot read {uri}"), e)
            }
            e => Error::wrap(
                ErrorKind::InvalidInput,
                format!("{uri} is not a readable Parquet file ({size} bytes)"),
                e,
            ),
        })
}

async fn read_parquet(
    storage: &ObjectStorage,
    uri: &str,
    size: u64,
    schema: SchemaRef,
    options: &FileReadOptions,
) -> Result<Batches> {
    let builder = open_parquet(storage, uri, Some(size)).await?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let matched = match_columns(uri, &names, &schema, &required_columns(&schema), options)?;
    let keep: Vec<usize> = matched
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.as_ref().map(|_| i))
        .collect();
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), keep);
    let stream = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(|e| {
            Error::invalid(format!(
                "{uri} is not a readable Parquet file ({size} bytes): {e}"
            ))
        })?;
    let uri = uri.to_string();
    Ok(stream
        .map_err(move |e| Error::invalid(format!("cannot read {uri}: {e}")))
        .boxed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringArray};

    /// A CSV of every boundary hazard: quoted LF and CRLF breaks, doubled quotes, commas in quotes, a
    /// `"` inside an unquoted field, CRLF and LF record ends, blank lines and empty fields.
    fn tricky_csv(records: usize) -> Vec<u8> {
        let mut text = b"id,text,n\r\n".to_vec();
        for i in 0..records {
            let row = match i % 7 {
                0 => format!("{i},\"two\nlines\",{i}\n"),
                1 => format!("{i},\"crlf\r\ninside, and a comma\",{i}\r\n"),
                2 => format!("{i},\"doubled \"\"quote\"\"\",{i}\n\n"),
                3 => format!("{i},unquoted \"quote\" inside,{i}\r\n"),
                4 => format!("{i},,\n"),
                5 => format!("{i},\"\",{i}\r\n\r\n"),
                _ => format!("{i},plain text of some length to move the cuts around,{i}\n"),
            };
            text.extend_from_slice(row.as_bytes());
        }
        text
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("text", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]))
    }

    type Row = (i64, Option<String>, Option<i64>);

    async fn rows(batches: Batches) -> Result<Vec<Row>> {
        let batches: Vec<RecordBatch> = batches.try_collect().await?;
        let mut rows = Vec::new();
        for b in &batches {
            let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let text = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
            let n = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..b.num_rows() {
                rows.push((
                    id.value(i),
                    (!text.is_null(i)).then(|| text.value(i).to_string()),
                    (!n.is_null(i)).then(|| n.value(i)),
                ));
            }
        }
        rows.sort();
        Ok(rows)
    }

    async fn read(path: &std::path::Path, parts: usize) -> Result<Vec<Row>> {
        let storage = ObjectStorage::new(crate::config::S3Settings::default());
        let uri = format!("file://{}", path.display());
        let size = std::fs::metadata(path).unwrap().len();
        let names = csv_header(&storage, &uri, size).await?;
        let options = FileReadOptions::default();
        let batches = if parts == 1 {
            let decoder = csv_decoder(&uri, &names, &schema(), &options, true)?;
            decode_object(&storage, &uri, Some(0..size), decoder, 0).await?
        } else {
            read_csv_split(&storage, &uri, size, &names, schema(), &options, parts).await?
        };
        rows(batches).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_csv_split_into_ranges_reads_the_rows_of_one_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tricky.csv");
        std::fs::write(&path, tricky_csv(3000)).unwrap();
        let whole = read(&path, 1).await.unwrap();
        assert_eq!(whole.len(), 3000);
        assert_eq!(whole[0], (0, Some("two\nlines".into()), Some(0)));
        assert_eq!(whole[1], (1, Some("crlf\r\ninside, and a comma".into()), Some(1)));
        assert_eq!(whole[2], (2, Some("doubled \"quote\"".into()), Some(2)));
        assert_eq!(whole[3], (3, Some("unquoted \"quote\" inside".into()), Some(3)));
        assert_eq!(whole[4], (4, None, None));
        for parts in [2, 3, 5, 8, 13, 64] {
            assert_eq!(read(&path, parts).await.unwrap(), whole, "{parts} ranges");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_record_in_a_later_range_names_the_line_a_one_range_read_names() {
        let dir = tempfile::tempdir().unwrap();
        for (bad, what) in [
            ("2999,too,many,fields\n", "field count"),
            ("2999,x,not a number\n", "parse"),
        ] {
            let path = dir.path().join("bad.csv");
            let mut text = tricky_csv(2999);
            text.extend_from_slice(bad.as_bytes());
            text.extend_from_slice(b"3000,after,1\n");
            std::fs::write(&path, text).unwrap();
            let whole = read(&path, 1).await.unwrap_err().to_string();
            assert!(whole.contains("line "), "{what}: {whole}");
            for parts in [2, 4, 7] {
                let split = read(&path, parts).await.unwrap_err().to_string();
                assert_eq!(split, whole, "{what}, {parts} ranges");
            }
        }
    }

    #[test]
    fn shifted_line_numbers() {
        assert_eq!(
            shift_lines("incorrect number of fields for line 3, expected 3 got 4", 10),
            "incorrect number of fields for line 13, expected 3 got 4"
        );
        assert_eq!(
            shift_lines("a line at line 0. Row data: 'line 7'", 5),
            "a line at line 5. Row data: 'line 7'"
        );
    }
}
