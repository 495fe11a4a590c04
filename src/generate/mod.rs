//! A deterministic, streaming generator of clickstream input files (see the pipeline spec).
//!
//! [`generate`] writes `events-00000.csv` (or `.ndjson`, `.parquet`) and following files under a
//! directory URI. The same [`GenerateOptions`] always give byte-identical files: file `i` depends only
//! on the options and `i` (its own ChaCha8 stream seeded from `seed` and `i`). Records are produced one
//! at a time and written in chunks of a few MB, so memory does not grow with the size of the output.
//!
//! What the data looks like:
//! - visitors with Zipf-skewed activity (exponent 0.8 over `users`), each with a home address drawn
//!   from the [`geoip`](geoip_csv) ranges (countries Zipf-skewed too, 1% from gaps without a country)
//!   and a sticky user agent;
//! - sessions starting by a weekly (weekdays busier) and daily (evening peak) rhythm, 1 + geometric
//!   events each (mean ≈ 3.6), think times log-normal around 40 s and under 29 minutes, and on purpose
//!   gaps of exactly 30 minutes, one time unit under and one over, zero gaps, and returns after 31-180
//!   minutes;
//! - a funnel page_view → add_to_cart → purchase with the cart's value as revenue (2 decimals, some
//!   written `12.5` or `12`);
//! - times at µs, ms or s resolution (`2024-03-01T10:00:00.123456Z`), some with 9 fraction digits;
//! - dirt at the [`DirtyRates`]: see [`DirtyCounts`] for what each kind produces.
//!
//! Record format: the fields of [`FIELDS`] in that order. CSV has a header line, `\n` line ends and
//! RFC 4180 quoting (fields with `,` `"` CR or LF are quoted, quotes doubled). NDJSON has one object
//! per line with the fields in that order, absent values as `null`. Parquet has nine nullable Utf8
//! columns (row groups of 64Ki rows, Snappy), and no malformed records.

mod encode;
mod events;
mod geoip;
mod sample;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use object_store::buffered::BufWriter;
use parquet::arrow::async_writer::ParquetObjectWriter;
use parquet::arrow::{ArrowWriter, AsyncArrowWriter};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tokio::io::AsyncWriteExt;

pub use encode::{events_schema, FIELDS};
pub use events::SESSION_GAP_US as SESSION_TIMEOUT_US;
pub use geoip::{geoip_batch, geoip_csv, geoip_lookup, geoip_ranges, geoip_schema, GeoRange};
pub use sample::{sample_clicks, sample_clicks_schema};

use crate::error::{Error, ErrorKind, Result};
use crate::storage::ObjectStorage;
use events::{Ctx, FileGen};

/// File format of the generated input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum OutputFormat {
    /// CSV with a header line.
    #[default]
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// Parquet, all columns nullable Utf8.
    Parquet,
}

impl OutputFormat {
    /// The file extension: `csv`, `ndjson` or `parquet`.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Csv => "csv",
            OutputFormat::Ndjson => "ndjson",
            OutputFormat::Parquet => "parquet",
        }
    }

    /// Parse `csv`, `ndjson` (or `json`, `jsonl`) or `parquet`, case-insensitively.
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "csv" => Ok(OutputFormat::Csv),
            "ndjson" | "json" | "jsonl" => Ok(OutputFormat::Ndjson),
            "parquet" => Ok(OutputFormat::Parquet),
            _ => Err(Error::invalid(format!(
                "unknown format {text:?} (expected csv, ndjson or parquet)"
            ))),
        }
    }
}

impl std::str::FromStr for OutputFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl std::fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.extension())
    }
}

/// Share of records (0.0..=1.0) made dirty in each way. Kinds are drawn independently per record, so a
/// record can be dirty in more than one way.
#[derive(Clone, Debug, PartialEq)]
pub struct DirtyRates {
    /// Redelivery of an earlier record (same `event_id`; identical, or same time with another address
    /// and user agent); a quarter of this rate again redelivers records of the previous file.
    pub duplicate: f64,
    /// CSV: wrong field count or invalid UTF-8; NDJSON: broken JSON. Never in Parquet.
    pub malformed: f64,
    /// Empty or blank `event_id` or `user_id`. At the same rate again, a valid `user_id` padded with
    /// spaces.
    pub missing_id: f64,
    /// An `event_time` that is not an ISO-8601 instant.
    pub bad_time: f64,
    /// An unknown `event_type`. At the same rate again, a valid one in odd case or with spaces.
    pub bad_type: f64,
    /// An `event_time` written as local time with a `±HH:MM` offset (same instant; valid).
    pub tz_offset: f64,
    /// An `ip` that is not a dotted quad (`300.1.2.3`, `abc`; valid, enriches to `ZZ`).
    pub invalid_ip: f64,
    /// One or two of `url`, `referrer`, `ip`, `user_agent`, `revenue` empty or absent (valid).
    pub empty_optional: f64,
    /// Fields with commas, doubled quotes and line breaks, or needlessly quoted (valid).
    pub quoted: f64,
    /// A negative, non-numeric or 3-decimal `revenue`.
    pub bad_revenue: f64,
}

impl Default for DirtyRates {
    fn default() -> Self {
        Self {
            duplicate: 0.02,
            malformed: 0.005,
            missing_id: 0.005,
            bad_time: 0.005,
            bad_type: 0.005,
            tz_offset: 0.02,
            invalid_ip: 0.01,
            empty_optional: 0.02,
            quoted: 0.01,
            bad_revenue: 0.005,
        }
    }
}

impl DirtyRates {
    /// No dirt at all.
    pub fn clean() -> Self {
        Self::uniform(0.0)
    }

    /// Every kind at the same rate.
    pub fn uniform(rate: f64) -> Self {
        Self {
            duplicate: rate,
            malformed: rate,
            missing_id: rate,
            bad_time: rate,
            bad_type: rate,
            tz_offset: rate,
            invalid_ip: rate,
            empty_optional: rate,
            quoted: rate,
            bad_revenue: rate,
        }
    }

    fn validate(&self) -> Result<()> {
        let all = [
            self.duplicate,
            self.malformed,
            self.missing_id,
            self.bad_time,
            self.bad_type,
            self.tz_offset,
            self.invalid_ip,
            self.empty_optional,
            self.quoted,
            self.bad_revenue,
        ];
        if all.iter().all(|r| (0.0..=1.0).contains(r)) {
            Ok(())
        } else {
            Err(Error::invalid("dirty rates must be between 0 and 1"))
        }
    }
}

/// How many records were made dirty in each way (a record may count in several).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirtyCounts {
    /// Redelivered records (their `event_id` occurs earlier in this or the previous file).
    pub duplicate: u64,
    /// Malformed records.
    pub malformed: u64,
    /// Records with an empty or blank `event_id` or `user_id`.
    pub missing_id: u64,
    /// Records with a valid `user_id` padded with spaces.
    pub padded_id: u64,
    /// Records with an unparseable `event_time`.
    pub bad_time: u64,
    /// Records with an unknown `event_type`.
    pub bad_type: u64,
    /// Records with a valid `event_type` in odd case or with spaces.
    pub odd_type: u64,
    /// Records with a `±HH:MM` offset in `event_time`.
    pub tz_offset: u64,
    /// Records with an invalid `ip`.
    pub invalid_ip: u64,
    /// Records with empty or absent optional fields beyond the natural ones (direct visits have no
    /// referrer, only purchases have revenue).
    pub empty_optional: u64,
    /// Records with quoting-relevant content.
    pub quoted: u64,
    /// Records with an invalid `revenue`.
    pub bad_revenue: u64,
}

impl DirtyCounts {
    fn add(&mut self, o: &DirtyCounts) {
        self.duplicate += o.duplicate;
        self.malformed += o.malformed;
        self.missing_id += o.missing_id;
        self.padded_id += o.padded_id;
        self.bad_time += o.bad_time;
        self.bad_type += o.bad_type;
        self.odd_type += o.odd_type;
        self.tz_offset += o.tz_offset;
        self.invalid_ip += o.invalid_ip;
        self.empty_optional += o.empty_optional;
        self.quoted += o.quoted;
        self.bad_revenue += o.bad_revenue;
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    /// Number of input records, dirty ones included.
    pub events: u64,
    /// Seed of all randomness.
    pub seed: u64,
    /// File format.
    pub format: OutputFormat,
    /// Number of files (at least 1); records are split evenly, the first files taking the remainder.
    pub files: usize,
    /// Start of the first day.
    pub start: DateTime<Utc>,
    /// Number of days sessions start in.
    pub days: u32,
    /// Visitor population; 0 means `max(100, events / 20)`.
    pub users: u64,
    /// Dirt rates.
    pub dirty: DirtyRates,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self::new(100_000, 42)
    }
}

impl GenerateOptions {
    /// `events` records from `seed`, CSV, one file, 7 days from 2024-03-01, `max(100, events/20)`
    /// users, default dirt.
    pub fn new(events: u64, seed: u64) -> Self {
        Self {
            events,
            seed,
            format: OutputFormat::Csv,
            files: 1,
            start: Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap(),
            days: 7,
            users: default_users(events),
            dirty: DirtyRates::default(),
        }
    }

    /// Options whose output is about `bytes` in total in `format` (the number of events is estimated
    /// from a generated sample of that format).
    pub fn from_target_size(bytes: u64, format: OutputFormat, seed: u64) -> Result<Self> {
        let mut options = Self::new(100_000, seed);
        options.format = format;
        options.with_target_size(bytes)
    }

    /// These options with `events` (and, when `users` was the default, `users`) set so that the
    /// output is about `bytes`.
    pub fn with_target_size(mut self, bytes: u64) -> Result<Self> {
        let auto_users = self.users == 0 || self.users == default_users(self.events);
        let per_event = self.estimated_bytes_per_event()?;
        self.events = ((bytes as f64 / per_event).round() as u64).max(1);
        if auto_users {
            self.users = default_users(self.events);
        }
        Ok(self)
    }

    /// Average encoded size of one record with these options, measured on a sample generated in
    /// memory (the first file's stream: 20,000 records, or one full row group for Parquet).
    pub fn estimated_bytes_per_event(&self) -> Result<f64> {
        let sample_size: u64 = match self.format {
            OutputFormat::Parquet => ROW_GROUP_ROWS as u64,
            _ => 20_000,
        };
        let mut sample = self.clone();
        sample.events = sample_size;
        sample.files = 1;
        let ctx = Ctx::new(&sample);
        let mut gen = FileGen::new(&ctx, 0, false);
        let mut buf = Vec::new();
        match self.format {
            OutputFormat::Csv => {
                for _ in 0..sample_size {
                    encode::csv_record(&mut buf, &gen.next_record());
                }
            }
            OutputFormat::Ndjson => {
                for _ in 0..sample_size {
                    encode::ndjson_record(&mut buf, &gen.next_record())?;
                }
            }
            OutputFormat::Parquet => {
                let mut writer = ArrowWriter::try_new(&mut buf, events_schema(), Some(parquet_properties()))?;
                let mut batch = encode::BatchBuilder::new();
                for _ in 0..sample_size {
                    batch.push(&gen.next_record());
                }
                writer.write(&batch.finish()?)?;
                writer.close()?;
            }
        }
        Ok(buf.len() as f64 / sample_size as f64)
    }

    fn effective_users(&self) -> u64 {
        if self.users == 0 {
            default_users(self.events)
        } else {
            self.users
        }
    }

    /// The name of file `index`: `events-00000.csv` etc.
    pub fn file_name(&self, index: usize) -> String {
        format!("events-{index:05}.{}", self.format.extension())
    }
}

fn default_users(events: u64) -> u64 {
    (events / 20).max(100)
}

/// What [`generate`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenerateReport {
    /// Full URIs of the files, in order.
    pub files: Vec<String>,
    /// Records written (equals the requested `events`).
    pub events: u64,
    /// Bytes written over all files.
    pub bytes: u64,
    /// Records written per file.
    pub file_events: Vec<u64>,
    /// How many records were made dirty in each way.
    pub dirty: DirtyCounts,
}

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Records per Parquet batch.
const BATCH_ROWS: usize = 8_192;
/// Text output is handed to storage in chunks of this size.
const CHUNK_BYTES: usize = 4 << 20;

fn parquet_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// Write the generated files under the directory `out_uri` (`file:///abs/dir`, `/abs/dir` or
/// `s3://bucket/prefix`), replacing files of the same name. `progress` is called with the number of
/// records written so far (over all files) after every chunk and at the end.
pub async fn generate(
    storage: &ObjectStorage,
    out_uri: &str,
    options: &GenerateOptions,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<GenerateReport> {
    if options.files == 0 {
        return Err(Error::invalid("files must be at least 1"));
    }
    if options.days == 0 {
        return Err(Error::invalid("days must be at least 1"));
    }
    options.dirty.validate()?;
    let ctx = Ctx::new(options);
    let dir = out_uri.trim_end_matches('/');
    let mut report = GenerateReport::default();
    let mut done = 0u64;
    for index in 0..options.files {
        let uri = format!("{dir}/{}", options.file_name(index));
        let n = ctx.file_events(index as u64);
        let mut gen = FileGen::new(&ctx, index as u64, true);
        let (store, path) = storage.resolve(&uri)?;
        let bytes = match options.format {
            OutputFormat::Parquet => {
                let writer = ParquetObjectWriter::new(store, path);
                let mut w = AsyncArrowWriter::try_new(writer, events_schema(), Some(parquet_properties()))
                    .map_err(|e| wrap(e, &uri))?;
                let mut batch = encode::BatchBuilder::new();
                for _ in 0..n {
                    batch.push(&gen.next_record());
                    if batch.rows() == BATCH_ROWS {
                        let b = batch.finish()?;
                        w.write(&b).await.map_err(|e| wrap(e, &uri))?;
                        done += b.num_rows() as u64;
                        if let Some(p) = progress {
                            p(done);
                        }
                    }
                }
                if batch.rows() > 0 {
                    let b = batch.finish()?;
                    w.write(&b).await.map_err(|e| wrap(e, &uri))?;
                    done += b.num_rows() as u64;
                }
                w.finish().await.map_err(|e| wrap(e, &uri))?;
                w.bytes_written() as u64
            }
            OutputFormat::Csv | OutputFormat::Ndjson => {
                let mut w = BufWriter::with_capacity(store, path, 8 << 20).with_max_concurrency(4);
                let mut buf = Vec::with_capacity(CHUNK_BYTES + 64 * 1024);
                let mut bytes = 0u64;
                if options.format == OutputFormat::Csv {
                    encode::csv_header(&mut buf);
                }
                let mut pending = 0u64;
                for _ in 0..n {
                    let r = gen.next_record();
                    if options.format == OutputFormat::Csv {
                        encode::csv_record(&mut buf, &r);
                    } else {
                        encode::ndjson_record(&mut buf, &r)?;
                    }
                    pending += 1;
                    if buf.len() >= CHUNK_BYTES {
                        bytes += buf.len() as u64;
                        let chunk = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK_BYTES + 64 * 1024));
                        w.put(Bytes::from(chunk))
                            .await
                            .map_err(|e| store_error(e, &uri))?;
                        done += pending;
                        pending = 0;
                        if let Some(p) = progress {
                            p(done);
                        }
                    }
                }
                bytes += buf.len() as u64;
                if !buf.is_empty() {
                    w.put(Bytes::from(buf)).await.map_err(|e| store_error(e, &uri))?;
                }
                w.shutdown()
                    .await
                    .map_err(|e| Error::wrap(ErrorKind::Storage, format!("cannot write {uri}"), e))?;
                done += pending;
                bytes
            }
        };
        report.files.push(uri);
        report.file_events.push(n);
        report.bytes += bytes;
        report.events += n;
        report.dirty.add(&gen.counts);
    }
    if let Some(p) = progress {
        p(done);
    }
    Ok(report)
}

fn wrap(e: parquet::errors::ParquetError, uri: &str) -> Error {
    Error::wrap(ErrorKind::Storage, format!("cannot write {uri}"), e)
}

fn store_error(e: object_store::Error, uri: &str) -> Error {
    Error::wrap(ErrorKind::Storage, format!("cannot write {uri}"), e)
}

#[cfg(test)]
mod tests;
