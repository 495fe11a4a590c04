//! The full-scan figure: every row and every column of one table read by floe's DataFusion path (its
//! Iceberg scan planning included: snapshot, manifests, file groups) against raw DataFusion reading
//! the same Parquet files by their paths, in one DataFusion configuration, alternating which goes
//! first from one repetition to the next.

use std::time::Instant;

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use serde::Serialize;

use crate::catalog::TableName;
use crate::error::{Error, ErrorKind, Result};
use crate::lakehouse::Floe;
use crate::pipeline::engine::datafusion::{register, register_object_stores};
use crate::pipeline::engine::{DataFusionEngine, PinnedTable};

/// One paired full scan of a table.
#[derive(Clone, Debug, Serialize)]
pub struct ScanPair {
    /// The table scanned.
    pub table: String,
    /// Its data files.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Rows read (the same on both sides, or the pair is an error).
    pub rows: u64,
    /// floe's DataFusion path: planning and reading, seconds.
    pub floe_seconds: f64,
    /// Raw DataFusion over the same files, seconds.
    pub raw_seconds: f64,
    /// floe's DataFusion path over the same files as a table with its first column renamed, whose
    /// files no longer name the columns as the schema does: what the fallback to floe's own scan
    /// (one stream, columns mapped by field id) costs, seconds.
    pub floe_renamed_seconds: Option<f64>,
}

/// Every row of every column of `df`'s result, counted.
async fn drain(ctx: &SessionContext, sql: &str) -> Result<u64> {
    let engine =
        |e: datafusion::error::DataFusionError| Error::new(ErrorKind::Engine, format!("datafusion: {e}"));
    let stream = ctx
        .sql(sql)
        .await
        .map_err(engine)?
        .execute_stream()
        .await
        .map_err(engine)?;
    stream
        .map_err(engine)
        .try_fold(0u64, |n, b| async move { Ok(n + b.num_rows() as u64) })
        .await
}

/// Scan `name` at `main` in full both ways; `floe_first` picks the order.
pub async fn scan_pair(floe: &Floe, name: &TableName, floe_first: bool) -> Result<ScanPair> {
    let table = floe.load_table(name).await?;
    let snapshot_id = table.metadata().current_snapshot_id();
    // The raw side is handed the file list, as a user of plain Parquet would have it.
    let plain = match snapshot_id {
        Some(id) => crate::table::plain_files::plain_parquet_files(&table, id).await?,
        None => None,
    }
    .filter(|plain| plain.deleted.is_empty())
    .ok_or_else(|| {
        Error::invalid(format!(
            "{name} is not plain Parquet files at main: no raw baseline"
        ))
    })?;
    let uris: Vec<String> = plain.files.iter().map(|(u, _)| u.clone()).collect();
    let bytes = plain.files.iter().map(|(_, b)| *b).sum();
    let engine = DataFusionEngine::default();

    let floe_side = || floe_path(floe, &engine, name);
    let raw_side = || async {
        let ctx = engine.context()?;
        register_object_stores(&ctx, table.storage(), uris.iter().map(String::as_str))?;
        let t0 = Instant::now();
        let df = ctx
            .read_parquet(uris.clone(), ParquetReadOptions::default())
            .await
            .map_err(|e| Error::new(ErrorKind::Engine, format!("datafusion: {e}")))?;
        ctx.register_table("t", df.into_view())?;
        let rows = drain(&ctx, "SELECT * FROM t").await?;
        Ok::<_, Error>((rows, t0.elapsed().as_secs_f64()))
    };
    let ((floe_rows, floe_seconds), (raw_rows, raw_seconds)) = if floe_first {
        let f = floe_side().await?;
        (f, raw_side().await?)
    } else {
        let r = raw_side().await?;
        (floe_side().await?, r)
    };
    if floe_rows != raw_rows {
        return Err(Error::internal(format!(
            "full scan of {name}: floe read {floe_rows} rows, raw DataFusion {raw_rows}"
        )));
    }
    let (renamed_rows, floe_renamed_seconds) = renamed_scan(floe, &engine, name).await?;
    if renamed_rows != raw_rows {
        return Err(Error::internal(format!(
            "full scan of {name} with a column renamed: floe read {renamed_rows} rows, raw DataFusion {raw_rows}"
        )));
    }
    Ok(ScanPair {
        table: name.to_string(),
        files: uris.len(),
        bytes,
        rows: floe_rows,
        floe_seconds,
        raw_seconds,
        floe_renamed_seconds: Some(floe_renamed_seconds),
    })
}

/// Rows and seconds of a full scan of `name` at its current snapshot through floe's DataFusion path,
/// its Iceberg scan planning included.
async fn floe_path(floe: &Floe, engine: &DataFusionEngine, name: &TableName) -> Result<(u64, f64)> {
    let ctx = engine.context()?;
    let t0 = Instant::now();
    let table = floe.load_table(name).await?;
    let snapshot_id = table.metadata().current_snapshot_id();
    register(&ctx, "t", &PinnedTable { table, snapshot_id }).await?;
    let rows = drain(&ctx, "SELECT * FROM t").await?;
    Ok((rows, t0.elapsed().as_secs_f64()))
}

/// [`floe_path`] over `name`'s files as a second table whose first column is renamed: registered at
/// `name`'s metadata, renamed there (a schema change; no file is rewritten), scanned, and dropped
/// without purging the files it shares with `name`.
async fn renamed_scan(floe: &Floe, engine: &DataFusionEngine, name: &TableName) -> Result<(u64, f64)> {
    let table = floe.load_table(name).await?;
    let copy = TableName::new(name.namespace().clone(), format!("{}_renamed", name.name()))?;
    let first = table
        .metadata()
        .current_schema()
        .as_struct()
        .fields()
        .first()
        .map(|f| f.name.clone())
        .ok_or_else(|| Error::internal(format!("{name} has no columns")))?;
    floe.register_table(&copy, table.metadata_location()).await?;
    let scanned = async {
        floe.update_schema(&copy)
            .rename_column(&first, &format!("{first}_renamed"))
            .commit()
            .await?;
        floe_path(floe, engine, &copy).await
    }
    .await;
    floe.drop_table(&copy, false).await?;
    scanned
}
