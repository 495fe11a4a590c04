//! Computing a stage's outputs into data files (not committed): `ingest` parses the input files with
//! the shared reader, concurrently, into `raw_events` and `rejected_events`; every other stage asks
//! the engine for its outputs and writes them. Reject reasons are counted as they stream past.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, RecordBatch, StringArray};
use futures::{StreamExt, TryStreamExt};
use iceberg::spec::DataFile;

use super::super::engine::{Engine, EngineFiles, PinnedTable, Rows, Stage};
use super::super::input::{read_input_split, InputBatch, InputFile};
use super::super::tables::{self, GEOIP, REJECTED_EVENTS};
use crate::error::{Error, Result};
use crate::table::writer::{write_batches, ParallelWriter};
use crate::table::{Table, DEFAULT_TARGET_FILE_SIZE};

/// Output table → files written but not yet committed.
pub(crate) type Written = Vec<(&'static str, Vec<DataFile>)>;

/// Reject reason → count.
pub(crate) type RejectCounts = Arc<Mutex<BTreeMap<String, u64>>>;

/// Output table → the sum of its checked column ([`tables::checked_column`]) over the rows written.
type ColumnSums = Arc<Mutex<BTreeMap<&'static str, u64>>>;

/// The stage's aggregate outputs against its input: each [`tables::checked_column`] must sum to `rows_in`.
/// (A row count cannot catch rows read twice inside an aggregation; this can.)
fn check_sums(stage: Stage, rows_in: u64, sums: &BTreeMap<&'static str, u64>) -> Result<()> {
    for t in stage.outputs() {
        if let (Some(column), Some(sum)) = (tables::checked_column(t), sums.get(t)) {
            if *sum != rows_in {
                return Err(Error::new(
                    crate::error::ErrorKind::Internal,
                    format!(
                        "stage {stage} read {rows_in} records but {t}.{column} sums to {sum}; nothing was committed"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Compute and write (not commit) the stage's outputs into `written`; returns the records read.
/// `outputs` holds the stage's output tables as the stage read them; `io` gets the bytes the driver
/// received from an engine that wrote the files itself, and the time of each phase.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn produce(
    engine: &dyn Engine,
    stage: Stage,
    pinned: &BTreeMap<&'static str, PinnedTable>,
    outputs: &BTreeMap<&'static str, Table>,
    files: &[InputFile],
    rejects: &RejectCounts,
    written: &mut Written,
    io: &mut super::StageIo,
) -> Result<u64> {
    if stage == Stage::Ingest {
        let ingesting = std::time::Instant::now();
        let read = ingest_files(outputs, files, rejects, written).await;
        io.time("engine", ingesting);
        return read;
    }
    let rows_in: u64 = pinned
        .iter()
        .filter(|(t, _)| **t != GEOIP)
        .filter_map(|(_, p)| {
            let snapshot = p.table.metadata().snapshot_by_id(p.snapshot_id?)?;
            live_records(&snapshot.summary().additional_properties)
        })
        .sum();
    write_with_retries(engine, stage, pinned, outputs, rows_in, rejects, written, io).await
}

/// The rows a snapshot's readers see, from its summary: its records less its position deletes
/// (floe keeps one delete file per data file, each position once).
fn live_records(summary: &std::collections::HashMap<String, String>) -> Option<u64> {
    let total = |key: &str| summary.get(key).and_then(|v| v.parse::<u64>().ok());
    Some(total("total-records")?.saturating_sub(total("total-position-deletes").unwrap_or(0)))
}

/// `ingest`: the input files parsed by floe's reader into `raw_events` and `rejected_events`;
/// returns the records read (none is an error).
async fn ingest_files(
    outputs: &BTreeMap<&'static str, Table>,
    files: &[InputFile],
    rejects: &RejectCounts,
    written: &mut Written,
) -> Result<u64> {
    let target_file_size = DEFAULT_TARGET_FILE_SIZE;
    let raw_table = outputs[tables::RAW_EVENTS].clone();
    let rej_table = outputs[REJECTED_EVENTS].clone();
    // Files are parsed concurrently, one task each (two per core at a time, so that an odd file
    // out does not leave a core idle), and each file's Parquet is encoded on its writers' tasks.
    let parallel = crate::resources::cores();
    // Fewer files than cores: each large CSV file decodes as byte ranges, so every core has work.
    // As many files as cores already keep them busy, and finding ranges costs a pass over the file.
    let ranges_per_file = (parallel / files.len().max(1)).max(1);
    let tasks = files.iter().cloned().map(|f| {
        let (raw_table, rej_table) = (raw_table.clone(), rej_table.clone());
        tokio::spawn(async move {
            ingest_file(&f, &raw_table, &rej_table, target_file_size, ranges_per_file).await
        })
    });
    let outcomes: Vec<_> = futures::stream::iter(tasks)
        .buffered(parallel * 2)
        .collect()
        .await;
    let mut records = 0u64;
    let mut result = Ok(());
    for outcome in outcomes {
        match outcome {
            Ok(o) => {
                records += o.records;
                *rejects
                    .lock()
                    .expect("reject counts")
                    .entry("malformed_record".into())
                    .or_default() += o.malformed;
                add_written(written, tables::RAW_EVENTS, o.raw);
                add_written(written, REJECTED_EVENTS, o.rejected);
                if result.is_ok() {
                    result = o.result;
                }
            }
            Err(e) => {
                if result.is_ok() {
                    result = Err(Error::internal(format!("ingest task: {e}")));
                }
            }
        }
    }
    result?;
    if records == 0 {
        return Err(Error::invalid("the input holds no records"));
    }
    Ok(records)
}

/// Engines that write their own Parquet hand back files: DuckDB's `COPY` into local tables (described
/// here from their footers), the cluster's executors (described where they were written, with their
/// counts). Reject reasons go to `counts`, checked sums to `sums`, the bytes the driver received to
/// `received`. Whatever fails, the files of outputs not yet in `written` are deleted here.
#[allow(clippy::too_many_arguments)]
async fn adopt_engine_files(
    engine: &dyn Engine,
    outputs: &BTreeMap<&'static str, Table>,
    stage: Stage,
    per_output: Vec<EngineFiles>,
    counts: &RejectCounts,
    sums: &ColumnSums,
    written: &mut Written,
    received: &mut Option<u64>,
) -> Result<()> {
    let mut per_output = stage.outputs().iter().zip(per_output);
    while let Some((t, files)) = per_output.next() {
        let adopted = adopt_output(&outputs[t], t, files, counts, sums, written, received).await;
        if let Err(e) = adopted {
            for (t, rest) in per_output {
                crate::storage::delete_quietly(outputs[t].storage(), engine_file_paths(rest)).await;
            }
            return Err(e.context(format!("{} wrote files that do not fit {t}", engine.name())));
        }
    }
    Ok(())
}

/// One output's engine-written files into `written` (deleted when they do not fit the table).
async fn adopt_output(
    table: &Table,
    t: &'static str,
    files: EngineFiles,
    counts: &RejectCounts,
    sums: &ColumnSums,
    written: &mut Written,
    received: &mut Option<u64>,
) -> Result<()> {
    match files {
        EngineFiles::Undescribed(files) => {
            let uris: Vec<String> = files.iter().map(|f| f.uri.clone()).collect();
            // DuckDB's COPY writes only to unsorted tables (a sorted one streams through floe's writer).
            let data = match crate::table::add_files::describe_files(table, files, 0).await {
                Ok(d) => d,
                Err(e) => {
                    crate::storage::delete_quietly(table.storage(), uris).await;
                    return Err(e);
                }
            };
            let counted = if t == REJECTED_EVENTS {
                count_reasons(table, &data, counts).await
            } else {
                Ok(())
            };
            add_written(written, t, data);
            counted
        }
        EngineFiles::Described(d) => {
            *received.get_or_insert(0) += d.received_bytes;
            if t == REJECTED_EVENTS {
                let mut m = counts.lock().expect("reject counts");
                for (reason, n) in d.tallies {
                    *m.entry(reason).or_default() += n;
                }
            }
            if tables::checked_column(t).is_some() {
                sums.lock()
                    .expect("column sums")
                    .insert(t, d.summed.unwrap_or(0).max(0) as u64);
            }
            add_written(written, t, d.files);
            Ok(())
        }
    }
}

/// The paths of files an engine wrote.
fn engine_file_paths(files: EngineFiles) -> Vec<String> {
    match files {
        EngineFiles::Undescribed(f) => f.into_iter().map(|f| f.uri).collect(),
        EngineFiles::Described(d) => crate::table::transaction::paths_of(&d.files),
    }
}

/// The stage's outputs written into `written` (by the engine itself, or its output streams by floe's
/// writer), the stage run again (each failed attempt's files deleted) when the engine lost workers or
/// its result does not add up.
#[allow(clippy::too_many_arguments)]
async fn write_with_retries(
    engine: &dyn Engine,
    stage: Stage,
    pinned: &BTreeMap<&'static str, PinnedTable>,
    outputs: &BTreeMap<&'static str, Table>,
    rows_in: u64,
    rejects: &RejectCounts,
    written: &mut Written,
    io: &mut super::StageIo,
) -> Result<u64> {
    let target_file_size = DEFAULT_TARGET_FILE_SIZE;
    let mut attempt = 1;
    loop {
        let counts = RejectCounts::default();
        let sums = ColumnSums::default();
        let mut files = Written::new();
        let targets: Vec<Table> = stage.outputs().iter().map(|t| outputs[t].clone()).collect();
        let running = std::time::Instant::now();
        let outcome = match engine.run_to_files(stage, pinned, &targets).await {
            Ok(Some(per_output)) => {
                io.time("engine", running);
                let describing = std::time::Instant::now();
                let adopted = adopt_engine_files(
                    engine,
                    outputs,
                    stage,
                    per_output,
                    &counts,
                    &sums,
                    &mut files,
                    &mut io.driver_bytes_received,
                )
                .await;
                io.time("describe", describing);
                adopted
            }
            Ok(None) => {
                let streamed = stream_and_write(
                    engine,
                    stage,
                    pinned,
                    outputs,
                    &counts,
                    &sums,
                    &mut files,
                    target_file_size,
                )
                .await;
                io.time("engine", running);
                streamed
            }
            Err(e) => {
                io.time("engine", running);
                Err(e)
            }
        };
        let checking = std::time::Instant::now();
        // A distributed engine that lost a worker mid-stage can hand back a task's rows twice
        // (Ballista 53 does, now and then, after an executor is killed, without any error): such a
        // result is refused here, while the stage can still run again, and never reaches a commit.
        // Rows counted twice inside an aggregation leave the row counts right: the aggregates' sums
        // are checked against the input on every engine that streams its rows through floe.
        let imbalance = match &outcome {
            Ok(()) => {
                let balanced = if engine.rerun_on_imbalance() {
                    super::stage::balance(stage, rows_in, |t| {
                        files
                            .iter()
                            .filter(|(name, _)| *name == t)
                            .flat_map(|(_, f)| f.iter().map(|d| d.record_count()))
                            .sum()
                    })
                } else {
                    Ok(())
                };
                balanced
                    .and_then(|()| check_sums(stage, rows_in, &sums.lock().expect("column sums")))
                    .err()
            }
            Err(_) => None,
        };
        io.time("check", checking);
        let retry_imbalance = engine.rerun_on_imbalance();
        let (e, retry) = match (outcome, imbalance) {
            (Ok(()), None) => {
                for (t, f) in files {
                    add_written(written, t, f);
                }
                let counts = counts.lock().expect("reject counts").clone();
                let mut total = rejects.lock().expect("reject counts");
                for (reason, n) in counts {
                    *total.entry(reason).or_default() += n;
                }
                return Ok(rows_in);
            }
            (Ok(()), Some(e)) => (e.context(format!("on {}", engine.name())), retry_imbalance),
            (Err(e), _) => {
                let retry = engine.lost_workers(&e);
                (e, retry)
            }
        };
        // What this attempt wrote goes either way; the next attempt starts from nothing.
        for (t, f) in files {
            crate::storage::delete_quietly(outputs[t].storage(), crate::table::transaction::paths_of(&f))
                .await;
        }
        if attempt >= STAGE_ATTEMPTS || !retry {
            return Err(e);
        }
        tracing::warn!(
            "{stage} on {}: {e}; running the stage again (attempt {} of {STAGE_ATTEMPTS})",
            engine.name(),
            attempt + 1
        );
        attempt += 1;
    }
}

/// How many times a stage runs at most on an engine that lost workers ([`Engine::lost_workers`]).
const STAGE_ATTEMPTS: u32 = 3;

/// Run `stage` on `engine` and write every output stream into `written` (not committed), summing
/// each output's [`tables::checked_column`] into `sums` as the rows stream past.
#[allow(clippy::too_many_arguments)]
async fn stream_and_write(
    engine: &dyn Engine,
    stage: Stage,
    pinned: &BTreeMap<&'static str, PinnedTable>,
    outputs: &BTreeMap<&'static str, Table>,
    rejects: &RejectCounts,
    sums: &ColumnSums,
    written: &mut Written,
    target_file_size: usize,
) -> Result<()> {
    let streams = engine.run(stage, pinned).await?;
    if streams.len() != stage.outputs().len() {
        return Err(Error::internal(format!(
            "{} returned {} outputs for {stage}",
            engine.name(),
            streams.len()
        )));
    }
    for (t, rows) in stage.outputs().iter().zip(streams) {
        let rows = if *t == REJECTED_EVENTS {
            counted(rows, rejects.clone())
        } else if let Some(column) = tables::checked_column(t) {
            summed(rows, sums.clone(), t, column)
        } else {
            rows
        };
        let data = write_batches(&outputs[t], rows, target_file_size).await?;
        add_written(written, t, data);
    }
    Ok(())
}

/// Count rejects by reason as they stream past.
fn counted(rows: Rows, counts: RejectCounts) -> Rows {
    rows.map_ok(move |b: RecordBatch| {
        if let Some(col) = b
            .column_by_name("reason")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
        {
            let mut m = counts.lock().expect("reject counts");
            for i in 0..col.len() {
                if col.is_valid(i) {
                    *m.entry(col.value(i).to_string()).or_default() += 1;
                }
            }
        }
        b
    })
    .boxed()
}

/// Sum the Int64 `column` of `table`'s rows into `sums` as they stream past; a batch without it is
/// an error (the stage's SQL and the table's schema disagree).
fn summed(rows: Rows, sums: ColumnSums, table: &'static str, column: &'static str) -> Rows {
    sums.lock().expect("column sums").insert(table, 0);
    rows.and_then(move |b: RecordBatch| {
        let sums = sums.clone();
        async move {
            let values = b
                .column_by_name(column)
                .and_then(|c| c.as_any().downcast_ref::<arrow::array::Int64Array>().cloned())
                .ok_or_else(|| Error::internal(format!("{table} rows without an Int64 {column}")))?;
            let sum: i64 = values.iter().flatten().sum();
            *sums.lock().expect("column sums").entry(table).or_default() += sum.max(0) as u64;
            Ok(b)
        }
    })
    .boxed()
}

/// Count the reject reasons in written files of `rejected_events` (read back: rejects are few).
async fn count_reasons(table: &Table, files: &[DataFile], counts: &RejectCounts) -> Result<()> {
    use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
    for f in files {
        let (store, path) = table.storage().resolve(f.file_path())?;
        let reader = ParquetObjectReader::new(store, path).with_file_size(f.file_size_in_bytes());
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
        let Some(index) = builder.schema().index_of("reason").ok() else {
            continue;
        };
        let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [index]);
        let mut stream = builder.with_projection(mask).build()?;
        while let Some(batch) = stream.try_next().await? {
            let reasons = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)?;
            let reasons = reasons
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| Error::internal("reason column is not text"))?;
            let mut m = counts.lock().expect("reject counts");
            for r in reasons.iter().flatten() {
                *m.entry(r.to_string()).or_default() += 1;
            }
        }
    }
    Ok(())
}

/// Record `files` written for `table`: one entry per table, committed as one snapshot.
fn add_written(written: &mut Written, table: &'static str, files: Vec<DataFile>) {
    match written.iter_mut().find(|(t, _)| *t == table) {
        Some((_, f)) => f.extend(files),
        None => written.push((table, files)),
    }
}

/// What ingesting one file wrote (also when it failed: the files are then for cleanup).
struct FileIngest {
    records: u64,
    malformed: u64,
    raw: Vec<DataFile>,
    rejected: Vec<DataFile>,
    result: Result<()>,
}

/// Parse one input file into data files of `raw_events` and (malformed records) `rejected_events`.
async fn ingest_file(
    file: &InputFile,
    raw_table: &Table,
    rej_table: &Table,
    target_file_size: usize,
    ranges: usize,
) -> FileIngest {
    let mut out = FileIngest {
        records: 0,
        malformed: 0,
        raw: Vec::new(),
        rejected: Vec::new(),
        result: Ok(()),
    };
    let writers = ParallelWriter::new(raw_table, target_file_size)
        .and_then(|raw| Ok((raw, ParallelWriter::new(rej_table, target_file_size)?)));
    let (mut raw, mut rej) = match writers {
        Ok(w) => w,
        Err(e) => {
            out.result = Err(e);
            return out;
        }
    };
    let read: Result<()> = async {
        // A large CSV file decodes as byte ranges on every core, each range on a task of its own
        // feeding the file's writers; other files are one stream.
        let streams = read_input_split(raw_table.storage(), file, 8192, ranges).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<InputBatch>>(2 * streams.len());
        let mut readers = Vec::new();
        for mut stream in streams {
            let tx = tx.clone();
            readers.push(tokio::spawn(async move {
                while let Some(b) = stream.next().await {
                    let failed = b.is_err();
                    if tx.send(b).await.is_err() || failed {
                        break;
                    }
                }
            }));
        }
        drop(tx);
        let mut received: Result<()> = Ok(());
        while let Some(b) = rx.recv().await {
            let b = match b {
                Ok(b) => b,
                Err(e) => {
                    received = Err(e);
                    break;
                }
            };
            match b {
                InputBatch::Raw(b) => {
                    out.records += b.num_rows() as u64;
                    raw.write(b).await?;
                }
                InputBatch::Rejects(b) => {
                    out.records += b.num_rows() as u64;
                    out.malformed += b.num_rows() as u64;
                    rej.write(b).await?;
                }
            }
        }
        drop(rx); // a reader still sending stops
        for r in readers {
            r.await
                .map_err(|e| Error::internal(format!("input reader task: {e}")))?;
        }
        received
    }
    .await;
    let (raw_files, raw_result) = raw.close().await;
    let (rej_files, rej_result) = rej.close().await;
    out.raw = raw_files;
    out.rejected = rej_files;
    // A writer's own error explains a failed send better than the send does.
    out.result = raw_result.and(rej_result).and(read);
    out
}
