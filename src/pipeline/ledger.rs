//! The run ledger: one row per (run, stage, engine) in the catalog database (`floe_runs`, created by
//! its own migration, `migrations/0002_run_ledger.sql`), with the pinned inputs, the committed
//! outputs, counts, times and errors. A stage re-run on the same inputs with the same engine finds its earlier row
//! here by fingerprint and reuses the outputs.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;

use crate::catalog::records::{stored_as_text, Migration};
use crate::catalog::CatalogDatabase;
use crate::error::{Error, Result, SqlDatabase};

/// The ledger's schema migrations, applied on connecting.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 2,
    name: "run_ledger",
    sql: include_str!("migrations/0002_run_ledger.sql"),
}];

/// What a ledger row says: a stage's outcome, or (stage `equivalence`) a multi-engine run's verdict.
/// Stored as its text, which existing catalogs hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerStatus {
    /// The stage ran and committed its outputs.
    Succeeded,
    /// An identical earlier run's outputs were reused.
    Reused,
    /// The stage failed.
    Failed,
    /// The engines' outputs were equal.
    Equal,
    /// The engines' outputs differed.
    Different,
}

stored_as_text!(LedgerStatus {
    Succeeded => "succeeded",
    Reused => "reused",
    Failed => "failed",
    Equal => "equal",
    Different => "different",
});

/// A ledger row's (or a stage report's) stored status against a typed one.
impl PartialEq<LedgerStatus> for String {
    fn eq(&self, other: &LedgerStatus) -> bool {
        self == other.as_str()
    }
}

/// One ledger row.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LedgerEntry {
    /// The run.
    pub run_id: String,
    /// The pipeline (`clickstream`).
    pub pipeline: String,
    /// The stage.
    pub stage: String,
    /// The engine.
    pub engine: String,
    /// Hash of stage, engine, parameters and pinned inputs.
    pub fingerprint: String,
    /// A [`LedgerStatus`] as stored (`succeeded`, `reused`, `failed`; `equal` or `different` for
    /// the verdict row), kept as text for the printers and metadata tables that show it.
    pub status: String,
    /// Input table → pinned snapshot (`None`: empty), or input file → size for `ingest`.
    pub input_snapshots: BTreeMap<String, Option<i64>>,
    /// Output table → committed snapshot.
    pub output_snapshots: BTreeMap<String, i64>,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub ended_at: Option<String>,
    /// Rows read.
    pub rows_in: u64,
    /// Output table → rows written.
    pub rows_out: BTreeMap<String, u64>,
    /// Reject reason → count.
    pub rejects: BTreeMap<String, u64>,
    /// Peak resident memory of the process during the stage.
    pub peak_memory_bytes: Option<u64>,
    /// The error of a failed stage.
    pub error: Option<String>,
}

fn ledger_error(action: &str, e: sqlx::Error) -> Error {
    Error::sqlx(SqlDatabase::Catalog, format!("run ledger: {action}"), e)
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".to_string())
}

const COLUMNS: &str =
    "run_id, pipeline, stage, engine, fingerprint, status, input_snapshots, output_snapshots, \
     started_at, ended_at, rows_in, rows_out, rejects, peak_memory_bytes, error";

fn from_json<T: serde::de::DeserializeOwned + Default>(text: String) -> T {
    serde_json::from_str(&text).unwrap_or_default()
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<LedgerEntry> {
    let parse = |col: &str| -> Result<String> {
        r.try_get::<Option<String>, _>(col)
            .map(|v| v.unwrap_or_default())
            .map_err(|e| ledger_error("read", e))
    };
    Ok(LedgerEntry {
        run_id: parse("run_id")?,
        pipeline: parse("pipeline")?,
        stage: parse("stage")?,
        engine: parse("engine")?,
        fingerprint: parse("fingerprint")?,
        status: parse("status")?,
        input_snapshots: from_json(parse("input_snapshots")?),
        output_snapshots: from_json(parse("output_snapshots")?),
        started_at: parse("started_at")?,
        ended_at: Some(parse("ended_at")?).filter(|s| !s.is_empty()),
        rows_in: r.try_get::<Option<i64>, _>("rows_in").ok().flatten().unwrap_or(0) as u64,
        rows_out: from_json(parse("rows_out")?),
        rejects: from_json(parse("rejects")?),
        peak_memory_bytes: r
            .try_get::<Option<i64>, _>("peak_memory_bytes")
            .ok()
            .flatten()
            .map(|v| v as u64),
        error: Some(parse("error")?).filter(|s| !s.is_empty()),
    })
}

/// Record a stage's outcome.
pub async fn record(catalog: &CatalogDatabase, e: &LedgerEntry) -> Result<()> {
    let sql = catalog.sql(&format!(
        "INSERT INTO floe_runs (catalog_name, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ));
    sqlx::query(&sql)
        .bind(catalog.name())
        .bind(&e.run_id)
        .bind(&e.pipeline)
        .bind(&e.stage)
        .bind(&e.engine)
        .bind(&e.fingerprint)
        .bind(&e.status)
        .bind(json(&e.input_snapshots))
        .bind(json(&e.output_snapshots))
        .bind(&e.started_at)
        .bind(e.ended_at.clone())
        .bind(e.rows_in as i64)
        .bind(json(&e.rows_out))
        .bind(json(&e.rejects))
        .bind(e.peak_memory_bytes.map(|v| v as i64))
        .bind(e.error.clone())
        .execute(catalog.pool())
        .await
        .map_err(|err| ledger_error("record", err))?;
    Ok(())
}

/// The latest succeeded entry with this fingerprint.
pub async fn find_succeeded(catalog: &CatalogDatabase, fingerprint: &str) -> Result<Option<LedgerEntry>> {
    let sql = catalog.sql(&format!(
        "SELECT {COLUMNS} FROM floe_runs WHERE catalog_name = ? AND fingerprint = ? AND status = ? \
         ORDER BY started_at DESC LIMIT 1"
    ));
    let row = sqlx::query(&sql)
        .bind(catalog.name())
        .bind(fingerprint)
        .bind(LedgerStatus::Succeeded.as_str())
        .fetch_optional(catalog.pool())
        .await
        .map_err(|e| ledger_error("look up", e))?;
    row.as_ref().map(from_row).transpose()
}

/// The most recent entries, newest first.
pub async fn list(catalog: &CatalogDatabase, limit: usize) -> Result<Vec<LedgerEntry>> {
    let sql = catalog.sql(&format!(
        "SELECT {COLUMNS} FROM floe_runs WHERE catalog_name = ? ORDER BY started_at DESC, stage LIMIT ?"
    ));
    let rows = sqlx::query(&sql)
        .bind(catalog.name())
        .bind(limit as i64)
        .fetch_all(catalog.pool())
        .await
        .map_err(|e| ledger_error("list", e))?;
    rows.iter().map(from_row).collect()
}
