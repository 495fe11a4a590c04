//! The peer in the benchmark: PyIceberg with PyArrow, the "Pythonic stack", appending the same
//! ingest output into the same catalog and warehouse floe uses, against floe's own append of the
//! same Arrow data; and committing the same rows as existing Parquet files (`add_files`). Only the
//! appends and the commits of existing files are timed (data in memory, files already written). For
//! the upsert benchmark it runs PyIceberg's `Table.upsert` ([`upsert`]) and the full scans of
//! floe's tables by PyIceberg and DuckDB's iceberg extension ([`scans`]).

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::catalog::{Namespace, TableName};
use crate::error::{Error, ErrorKind, Result};
use crate::lakehouse::Floe;
use crate::table::encoding::Codec;
use crate::table::TableDefinition;
use crate::table::WriteOptions;

const SCRIPT: &str = include_str!("peer.py");

/// The environment variable that hands the PyIceberg config (secrets included) to a child.
pub const CONFIG_VAR: &str = "FLOE_PYICEBERG_CONFIG";

/// One paired measurement: floe and PyIceberg appending the same rows.
#[derive(Clone, Debug, Serialize)]
pub struct PeerAppend {
    /// Rows appended.
    pub rows: u64,
    /// floe's append, seconds.
    pub floe_seconds: f64,
    /// PyIceberg's append, seconds.
    pub pyiceberg_seconds: f64,
    /// PyIceberg's version.
    pub pyiceberg_version: String,
    /// The Parquet codec both sides wrote (`write.parquet.compression-codec`).
    pub codec: String,
    /// The physical limit: arrow-rs's `ArrowWriter` alone, one per core over slices of the same
    /// batches, with floe's `WriterProperties`, into memory (no Iceberg metadata, catalog or commit),
    /// seconds.
    pub arrow_writer_seconds: f64,
}

/// One paired `add_files`: floe and PyIceberg committing the same rows as existing Parquet files.
#[derive(Clone, Debug, Serialize)]
pub struct PeerAddFiles {
    /// Files committed (one snapshot on each side).
    pub files: usize,
    /// Rows in them.
    pub rows: u64,
    /// floe's `add_files`, seconds.
    pub floe_seconds: f64,
    /// PyIceberg's `Table.add_files`, seconds.
    pub pyiceberg_seconds: f64,
}

/// Files each side of the `add_files` pair commits.
pub const ADD_FILES_COUNT: usize = 100;

/// The Python interpreter: `FLOE_PYTHON` or `python3`.
pub(crate) fn python() -> String {
    std::env::var("FLOE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Why the peer cannot run here, if it cannot (Python or PyIceberg missing).
pub fn unavailable() -> Option<String> {
    match Command::new(python())
        .args(["-c", "import pyiceberg.catalog.sql, pyarrow"])
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "PyIceberg is not importable: {}",
            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("")
        )),
        Err(e) => Some(format!("{} cannot be started: {e}", python())),
    }
}

/// The catalog and warehouse of `floe` as PyIceberg's `SqlCatalog` takes them: `catalog_name`,
/// `uri` (an SQLAlchemy URL), `warehouse`, and `s3` settings when the warehouse is on S3.
pub fn pyiceberg_config(floe: &Floe) -> Value {
    let s = floe.settings();
    let uri = if let Some(path) = s.catalog_url.strip_prefix("sqlite:") {
        format!("sqlite:///{}", path.trim_start_matches("//"))
    } else {
        s.catalog_url
            .replacen("postgres://", "postgresql+psycopg2://", 1)
            .replacen("postgresql://", "postgresql+psycopg2://", 1)
    };
    let mut cfg = json!({"catalog_name": s.catalog_name, "uri": uri, "warehouse": floe.warehouse().uri()});
    if floe.warehouse().uri().starts_with("s3://") {
        cfg["s3"] = json!({
            "endpoint": s.s3.endpoint,
            "access_key_id": s.s3.access_key_id,
            "secret_access_key": s.s3.secret_access_key.as_ref().map(|x| x.expose().to_string()),
            "region": s.s3.region,
        });
    }
    cfg
}

/// Append the rows of the Parquet file `path` with floe into a fresh table `ns.{name}_floe` and with
/// PyIceberg into `ns.{name}_pyiceberg`; both tables are dropped with their files afterwards.
pub async fn append_pair(
    floe: &Floe,
    ns: &Namespace,
    name: &str,
    path: &Path,
    dir: &Path,
) -> Result<PeerAppend> {
    // floe: the file's batches in memory, then one timed append.
    let (schema, batches) = read_batches(path)?;
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    floe.ensure_namespace(ns).await?;
    let table = TableName::new(ns.clone(), format!("{name}_floe"))?;
    floe.create_table(
        &table,
        TableDefinition {
            schema: schema.as_ref().clone(),
            ..Default::default()
        },
    )
    .await?;
    let t0 = Instant::now();
    floe.append(
        &table,
        futures::stream::iter(batches.into_iter().map(Ok)),
        &WriteOptions::default(),
    )
    .await?;
    let floe_seconds = t0.elapsed().as_secs_f64();
    let written = floe.load_table(&table).await?;
    let codec = Codec::of_table(&written)?;
    let with_ids = written.arrow_schema()?;
    floe.drop_table(&table, true).await?;

    // The physical limit: the same batches through bare ArrowWriters, one per core.
    let conformed = batches_again(path)?
        .iter()
        .map(|b| crate::table::writer::conform(&table, b, &with_ids))
        .collect::<Result<Vec<_>>>()?;
    let arrow_writer_seconds = arrow_writers(&with_ids, &conformed, &codec).await?;

    // PyIceberg: the same file, appended by the script, with floe's codec.
    let ns = ns.to_string();
    let table = format!("{name}_pyiceberg");
    let args: [&OsStr; 5] = [
        "append".as_ref(),
        ns.as_ref(),
        table.as_ref(),
        codec.iceberg_name().as_ref(),
        path.as_ref(),
    ];
    let v = run_script(floe, dir, args)?;
    let peer_codec = v["codec"].as_str().unwrap_or("?");
    if peer_codec != codec.iceberg_name() {
        return Err(Error::internal(format!(
            "the peer wrote {peer_codec}, floe {}: the pair would not compare like with like",
            codec.iceberg_name()
        )));
    }
    Ok(PeerAppend {
        rows,
        floe_seconds,
        pyiceberg_seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
        pyiceberg_version: v["version"].as_str().unwrap_or("?").to_string(),
        codec: codec.iceberg_name().to_string(),
        arrow_writer_seconds,
    })
}

/// The batches of `path` again, with their schema (the timed append consumed the first copy).
fn batches_again(path: &Path) -> Result<Vec<RecordBatch>> {
    Ok(read_batches(path)?.1)
}

/// Seconds for arrow-rs's `ArrowWriter`, one per core on threads of its own, to encode `batches`
/// (dealt round-robin) with floe's `WriterProperties` for them into memory.
async fn arrow_writers(
    schema: &arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
    codec: &Codec,
) -> Result<f64> {
    let Some(first) = batches.first() else {
        return Ok(0.0);
    };
    let properties = codec.writer_properties(first);
    let writers = crate::resources::cores().max(1);
    let mut shares: Vec<Vec<RecordBatch>> = vec![Vec::new(); writers];
    for (i, b) in batches.iter().enumerate() {
        shares[i % writers].push(b.clone());
    }
    let schema = schema.clone();
    tokio::task::spawn_blocking(move || -> Result<f64> {
        let t0 = Instant::now();
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = shares
                .iter()
                .map(|share| {
                    let (schema, properties) = (schema.clone(), properties.clone());
                    scope.spawn(move || -> Result<usize> {
                        let mut out = Vec::new();
                        let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(properties))?;
                        for b in share {
                            w.write(b)?;
                        }
                        w.close()?;
                        Ok(out.len())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| Error::internal("an ArrowWriter thread panicked"))??;
            }
            Ok(())
        })?;
        Ok(t0.elapsed().as_secs_f64())
    })
    .await
    .map_err(|e| Error::internal(format!("ArrowWriter timing: {e}")))?
}

/// The rows of the Parquet file `path`, in batches of 8192, and their schema.
fn read_batches(path: &Path) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
    let file = std::fs::File::open(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(8192)
        .build()?;
    let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>()?;
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| Error::invalid(format!("{} holds no rows", path.display())))?;
    Ok((schema, batches))
}

/// Run the peer script with `args`; its JSON reply.
fn run_script<A: AsRef<OsStr>>(floe: &Floe, dir: &Path, args: impl IntoIterator<Item = A>) -> Result<Value> {
    let script = dir.join("floe_bench_peer.py");
    std::fs::write(&script, SCRIPT)?;
    // The config (catalog password, S3 secret) goes through the environment, never argv.
    let out = Command::new(python())
        .arg(&script)
        .env(CONFIG_VAR, pyiceberg_config(floe).to_string())
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Engine,
            format!(
                "the PyIceberg peer failed: {}",
                crate::config::redact_secrets(String::from_utf8_lossy(&out.stderr).trim())
            ),
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::internal(format!("the PyIceberg peer printed no JSON: {e}")))
}

/// Commit the rows of the Parquet file `path`, split into [`ADD_FILES_COUNT`] files written into the
/// table's data folder beforehand, as existing files: with floe's `add_files` into a fresh table
/// `ns.{name}_floe` (files carrying the table's field ids, as floe's engines write them) and with
/// PyIceberg's `Table.add_files` into `ns.{name}_pyiceberg` (files without field ids, which
/// PyIceberg requires). Only the commits are timed; both tables are dropped with their files.
pub async fn add_files_pair(
    floe: &Floe,
    ns: &Namespace,
    name: &str,
    path: &Path,
    dir: &Path,
) -> Result<PeerAddFiles> {
    let (schema, batches) = read_batches(path)?;
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    floe.ensure_namespace(ns).await?;
    let table = TableName::new(ns.clone(), format!("{name}_floe"))?;
    let created = floe
        .create_table(
            &table,
            TableDefinition {
                schema: schema.as_ref().clone(),
                ..Default::default()
            },
        )
        .await?;
    let with_ids = created.arrow_schema()?;
    let per_file = rows.div_ceil(ADD_FILES_COUNT as u64).max(1) as usize;
    // Slices of `per_file` rows, each written as one file.
    let mut files: Vec<Vec<RecordBatch>> = vec![Vec::new()];
    let mut in_last = 0usize;
    for b in &batches {
        let b = RecordBatch::try_new(with_ids.clone(), b.columns().to_vec())?;
        let mut offset = 0;
        while offset < b.num_rows() {
            if in_last == per_file {
                files.push(Vec::new());
                in_last = 0;
            }
            let take = (per_file - in_last).min(b.num_rows() - offset);
            files
                .last_mut()
                .expect("one file at least")
                .push(b.slice(offset, take));
            in_last += take;
            offset += take;
        }
    }
    let mut uris = Vec::with_capacity(files.len());
    for parts in files {
        let mut buffer = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buffer, with_ids.clone(), None)?;
        for p in &parts {
            w.write(p)?;
        }
        w.close()?;
        let uri = format!("{}/data/added-{:05}.parquet", created.location(), uris.len());
        floe.storage().write(&uri, buffer.into()).await?;
        uris.push(uri);
    }
    let t0 = Instant::now();
    floe.add_files(&table, &uris, &WriteOptions::default()).await?;
    let floe_seconds = t0.elapsed().as_secs_f64();
    floe.drop_table(&table, true).await?;

    let count = uris.len().to_string();
    let ns = ns.to_string();
    let table = format!("{name}_pyiceberg");
    let args: [&OsStr; 5] = [
        "add_files".as_ref(),
        ns.as_ref(),
        table.as_ref(),
        count.as_ref(),
        path.as_ref(),
    ];
    let v = run_script(floe, dir, args)?;
    Ok(PeerAddFiles {
        files: uris.len(),
        rows,
        floe_seconds,
        pyiceberg_seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
    })
}

/// What PyIceberg's `Table.upsert` did and took ([`upsert`]).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct PeerUpsert {
    /// The upsert alone, seconds.
    pub seconds: f64,
    /// Snapshots the upsert committed.
    pub snapshots: usize,
    /// Bytes of the files they added (`added-files-size`, summed).
    pub bytes_written: u64,
    /// Data files they added.
    pub data_files_added: u64,
    /// Delete files they added.
    pub delete_files_added: u64,
    /// Rows PyIceberg counted as updated.
    pub rows_updated: u64,
    /// Rows it counted as inserted.
    pub rows_inserted: u64,
    /// The table's `write.parquet.compression-codec`.
    pub codec: Option<String>,
    /// PyIceberg's version.
    pub version: String,
}

/// Load the rows of the Parquet file `base` into a fresh table `ns.name` of `codec` in `files`
/// appends with PyIceberg, then time its `Table.upsert` of the rows of `source` on the key `id`.
/// The table stays (for [`scans`] to compare); the caller drops it.
pub fn upsert(
    floe: &Floe,
    dir: &Path,
    (ns, name): (&Namespace, &str),
    (codec, files): (&str, usize),
    (base, source): (&Path, &Path),
) -> Result<PeerUpsert> {
    let ns = ns.to_string();
    let files = files.to_string();
    let args: [&OsStr; 7] = [
        "upsert".as_ref(),
        ns.as_ref(),
        name.as_ref(),
        codec.as_ref(),
        files.as_ref(),
        base.as_ref(),
        source.as_ref(),
    ];
    let v = run_script(floe, dir, args)?;
    serde_json::from_value(v).map_err(|e| Error::internal(format!("the PyIceberg peer's upsert reply: {e}")))
}

/// One state of a table to scan in full.
#[derive(Clone, Debug, Serialize)]
pub struct ScanState {
    /// Its label (`before`, `after`, `compacted`).
    pub state: String,
    /// The table's namespace.
    pub namespace: String,
    /// The table.
    pub table: String,
    /// The snapshot (PyIceberg reads it from the table's current metadata).
    pub snapshot_id: i64,
    /// The metadata file whose current snapshot it is (DuckDB's `iceberg_scan` reads it).
    pub metadata: String,
}

/// A table (at a snapshot, else its current state) whose rows [`scans`] compares.
#[derive(Clone, Debug, Serialize)]
pub struct CompareTable {
    /// Its label in the reply.
    pub label: String,
    /// The table's namespace.
    pub namespace: String,
    /// The table.
    pub table: String,
    /// The snapshot; `None`: the current one.
    pub snapshot_id: Option<i64>,
}

/// One reader's full scan of one state: the median of its timed reads.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct PeerScan {
    /// `pyiceberg` or `duckdb`.
    pub reader: String,
    /// The state's label.
    pub state: String,
    /// Rows read.
    pub rows: u64,
    /// Median seconds.
    pub seconds: f64,
}

/// What [`scans`] measured and compared.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct PeerScans {
    /// Every reader's scan of every state.
    pub scans: Vec<PeerScan>,
    /// Readers that could not run, with why (DuckDB or its extensions missing).
    pub errors: std::collections::BTreeMap<String, String>,
    /// DuckDB's version, where it ran.
    pub duckdb_version: Option<String>,
    /// Labels of the tables compared, the first the reference.
    #[serde(default)]
    pub compared: Vec<String>,
    /// Rows of each table compared.
    #[serde(default)]
    pub rows_after: std::collections::BTreeMap<String, u64>,
    /// Labels of the tables whose rows (sorted by `id`) differ from the first's.
    #[serde(default)]
    pub differing: Vec<String>,
}

/// Full scans of every state of `states` by PyIceberg (`Table.scan().to_arrow()`) and by DuckDB's
/// iceberg extension (`iceberg_scan` of the state's metadata file): per reader a warm-up read of
/// every state, then `runs` rounds reading each state once, the median per state. Then the tables of
/// `compare` are read by PyIceberg, sorted by `id` and checked to hold the same rows.
pub fn scans(
    floe: &Floe,
    dir: &Path,
    states: &[ScanState],
    runs: usize,
    compare: &[CompareTable],
) -> Result<PeerScans> {
    let spec = json!({"runs": runs, "states": states, "compare": compare}).to_string();
    let v = run_script(floe, dir, ["scan", spec.as_str()])?;
    serde_json::from_value(v).map_err(|e| Error::internal(format!("the PyIceberg peer's scan reply: {e}")))
}
