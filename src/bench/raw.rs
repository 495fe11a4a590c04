//! The raw baselines: each engine running the same stage SQL (`pipeline::engine::sql`) with the
//! same settings (memory limit, threads, field rules) over plain Parquet files in a local directory,
//! with no Iceberg, no catalog and no floe writer. floe's time over the raw time is the price of the
//! storage layer.
//!
//! `ingest` has no shared SQL. Raw DuckDB runs `COPY (SELECT ... FROM read_csv(...)) TO ...`, its
//! own CSV reader skipping what it cannot parse (the benchmark's reference for CSV-to-Parquet
//! throughput). DataFusion's CSV reader fails on the generator's malformed records, so raw
//! DataFusion ingests with floe's streaming input reader and a plain Arrow Parquet writer.
//! Neither numbers source lines (`source_line` is 0): the cleanse tie-break then falls to file
//! order, which costs the same.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::ParquetReadOptions;
use futures::TryStreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::pipeline::engine::duckdb::{duck_error, literal};
use crate::pipeline::engine::{sql, DataFusionEngine, DuckDbEngine, Stage};
use crate::pipeline::input::{read_input, InputBatch, InputFile, FIELDS};
use crate::pipeline::tables::{GEOIP, REJECTED_EVENTS};
use crate::resources::{Monitor, Usage};
use crate::storage::ObjectStorage;

/// What one raw stage did.
#[derive(Clone, Debug, Serialize)]
pub struct RawStage {
    /// The stage.
    pub stage: String,
    /// Wall time, CPU time and peak memory.
    pub usage: Usage,
    /// Bytes of the files read.
    pub bytes_read: u64,
    /// Bytes of the files written.
    pub bytes_written: u64,
    /// Rows written over all outputs.
    pub rows_out: u64,
}

/// The file a raw stage writes for an output table (`cleanse`'s rejects get a file of their own).
fn output_file(dir: &Path, stage: Stage, table: &str) -> PathBuf {
    if table == REJECTED_EVENTS {
        dir.join(format!("{REJECTED_EVENTS}_{stage}.parquet"))
    } else {
        dir.join(format!("{table}.parquet"))
    }
}

fn input_files(dir: &Path, stage: Stage) -> Vec<PathBuf> {
    stage
        .inputs()
        .iter()
        .map(|t| dir.join(format!("{t}.parquet")))
        .collect()
}

fn size_of(paths: &[PathBuf]) -> u64 {
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn sql_path(p: &Path) -> String {
    literal(&p.display().to_string())
}

/// Write the built-in `geoip` table as `geoip.parquet` in `dir` (not timed: both paths load it once).
fn write_geoip(dir: &Path) -> Result<()> {
    let batch = crate::generate::geoip_batch()?;
    let file = std::fs::File::create(dir.join(format!("{GEOIP}.parquet")))?;
    let mut w = ArrowWriter::try_new(file, batch.schema(), None)?;
    w.write(&batch)?;
    w.close()?;
    Ok(())
}

/// Every stage on raw DuckDB over the CSV `inputs`, in a fresh `dir`.
pub async fn duckdb(engine: &DuckDbEngine, inputs: &[InputFile], dir: &Path) -> Result<Vec<RawStage>> {
    std::fs::create_dir_all(dir)?;
    write_geoip(dir)?;
    let (conn, spill) = engine.open()?;
    let conn = Arc::new(Mutex::new(conn));
    let mut out = Vec::new();
    for stage in Stage::ALL {
        let (conn, dir) = (conn.clone(), dir.to_path_buf());
        let inputs: Vec<InputFile> = inputs.to_vec();
        let r = tokio::task::spawn_blocking(move || duckdb_stage(&conn, stage, &inputs, &dir))
            .await
            .map_err(|e| Error::internal(format!("raw duckdb: {e}")))??;
        out.push(r);
    }
    drop(spill);
    Ok(out)
}

fn duckdb_stage(
    conn: &Mutex<duckdb::Connection>,
    stage: Stage,
    inputs: &[InputFile],
    dir: &Path,
) -> Result<RawStage> {
    let c = conn.lock().expect("duckdb connection");
    let monitor = Monitor::start();
    let mut rows_out = 0u64;
    let mut written = Vec::new();
    let bytes_read;
    if stage == Stage::Ingest {
        let paths: Vec<String> = inputs
            .iter()
            .map(|f| {
                let p = f.uri.strip_prefix("file://").unwrap_or(&f.uri);
                literal(p)
            })
            .collect();
        bytes_read = inputs.iter().map(|f| f.size).sum();
        let target = output_file(dir, stage, crate::pipeline::tables::RAW_EVENTS);
        let columns: Vec<String> = FIELDS
            .iter()
            .map(|f| crate::pipeline::engine::duckdb::quote(f))
            .collect();
        let types: Vec<String> = FIELDS.iter().map(|f| format!("'{f}': 'VARCHAR'")).collect();
        rows_out += c
            .execute(
                &format!(
                    "COPY (SELECT {}, filename AS source_file, CAST(0 AS BIGINT) AS source_line
                           FROM read_csv([{}], header = true, auto_detect = false, strict_mode = false, columns = {{{}}}, delim = ',', quote = '\"', escape = '\"',
                                         ignore_errors = true,
                                         filename = true, null_padding = true))
                     TO {} (FORMAT parquet)",
                    columns.join(", "),
                    paths.join(", "),
                    types.join(", "),
                    sql_path(&target)
                ),
                [],
            )
            .map_err(duck_error)? as u64;
        written.push(target);
    } else {
        let files = input_files(dir, stage);
        bytes_read = size_of(&files);
        for (t, f) in stage.inputs().iter().zip(&files) {
            c.execute_batch(&format!(
                "CREATE OR REPLACE VIEW {t} AS SELECT * FROM read_parquet({})",
                sql_path(f)
            ))
            .map_err(duck_error)?;
        }
        for (t, q) in stage.outputs().iter().zip(sql::DUCKDB.stage(stage)) {
            let target = output_file(dir, stage, t);
            rows_out += c
                .execute(
                    &format!("COPY ({q}) TO {} (FORMAT parquet)", sql_path(&target)),
                    [],
                )
                .map_err(duck_error)? as u64;
            written.push(target);
        }
    }
    Ok(RawStage {
        stage: stage.to_string(),
        usage: monitor.finish(),
        bytes_read,
        bytes_written: size_of(&written),
        rows_out,
    })
}

/// Every stage on raw DataFusion over the CSV `inputs`, in a fresh `dir`.
pub async fn datafusion(
    engine: &DataFusionEngine,
    storage: &ObjectStorage,
    inputs: &[InputFile],
    dir: &Path,
) -> Result<Vec<RawStage>> {
    std::fs::create_dir_all(dir)?;
    write_geoip(dir)?;
    let mut out = Vec::new();
    for stage in Stage::ALL {
        let monitor = Monitor::start();
        let mut rows_out = 0u64;
        let mut written = Vec::new();
        let bytes_read;
        if stage == Stage::Ingest {
            bytes_read = inputs.iter().map(|f| f.size).sum();
            let target = output_file(dir, stage, crate::pipeline::tables::RAW_EVENTS);
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(128 * 1024))
                .build();
            let mut w = ArrowWriter::try_new(
                std::fs::File::create(&target)?,
                crate::pipeline::input::raw_schema(),
                Some(props),
            )?;
            for f in inputs {
                let mut batches = read_input(storage, f, 8192);
                while let Some(b) = batches.try_next().await? {
                    if let InputBatch::Raw(b) = b {
                        rows_out += b.num_rows() as u64;
                        w.write(&b)?;
                    }
                }
            }
            w.close()?;
            written.push(target);
        } else {
            let ctx = engine.context()?;
            let files = input_files(dir, stage);
            bytes_read = size_of(&files);
            for (t, f) in stage.inputs().iter().zip(&files) {
                ctx.register_parquet(*t, f.display().to_string(), ParquetReadOptions::default())
                    .await?;
            }
            for (t, q) in stage.outputs().iter().zip(sql::DATAFUSION.stage(stage)) {
                let target = output_file(dir, stage, t);
                let df = ctx
                    .sql(&q)
                    .await
                    .map_err(|e| Error::new(ErrorKind::Engine, format!("raw datafusion: {e}")))?;
                let counts = df
                    .write_parquet(
                        &target.display().to_string(),
                        DataFrameWriteOptions::new().with_single_file_output(true),
                        None,
                    )
                    .await?;
                rows_out += counts
                    .iter()
                    .filter_map(|b| {
                        b.column(0)
                            .as_any()
                            .downcast_ref::<arrow::array::UInt64Array>()
                            .map(|a| a.iter().flatten().sum::<u64>())
                    })
                    .sum::<u64>();
                written.push(target);
            }
        }
        out.push(RawStage {
            stage: stage.to_string(),
            usage: monitor.finish(),
            bytes_read,
            bytes_written: size_of(&written),
            rows_out,
        });
    }
    Ok(out)
}
