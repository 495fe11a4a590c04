//! The record of extraction runs in the catalog database (`floe_ingest_runs`, `floe_ingest_units`,
//! created by its own migration, `migrations/0003_ingest_runs.sql`):
//! every run's spec and outcome, and every unit's state (pending, running, done with rows and files,
//! failed with its error and attempts), written as it changes, so `--resume` knows what is done.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::units::Unit;
use crate::catalog::records::{stored_as_text, Migration};
use crate::catalog::CatalogDatabase;
use crate::error::{Error, Result, SqlDatabase};

/// Where a unit stands. Stored as its text (`pending`, `running`, `done`, `failed`), which
/// existing catalogs hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitStatus {
    /// Not started.
    Pending,
    /// An attempt is running (or the process running it died).
    Running,
    /// Its files are written and recorded.
    Done,
    /// Its last attempt failed.
    Failed,
}

/// Where a run stands. Stored as its text (`running`, `failed`, `committed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Units are running (or the process running them died).
    Running,
    /// A unit exhausted its retries, or the commit failed: nothing was committed.
    Failed,
    /// Its snapshot landed.
    Committed,
}

stored_as_text!(UnitStatus {
    Pending => "pending",
    Running => "running",
    Done => "done",
    Failed => "failed",
});
stored_as_text!(RunStatus {
    Running => "running",
    Failed => "failed",
    Committed => "committed",
});

/// The record's schema migrations, applied on connecting.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 3,
    name: "ingest_runs",
    sql: include_str!("migrations/0003_ingest_runs.sql"),
}];

/// A unit's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnitState {
    /// The unit.
    pub unit: Unit,
    /// Where it stands.
    pub status: UnitStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// Rows written (done).
    pub rows: u64,
    /// Data files written (done), by URI.
    pub files: Vec<String>,
    /// The last error (failed).
    pub error: Option<String>,
}

/// A run as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run.
    pub run_id: String,
    /// The source (URL without password, and what it reads).
    pub source: String,
    /// The destination table.
    pub destination: String,
    /// The options and the plan, as JSON.
    pub spec: String,
    /// Where it stands.
    pub status: RunStatus,
    /// The snapshot the run committed.
    pub snapshot_id: Option<i64>,
    /// Rows committed.
    pub rows: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

fn db_error(action: &str, e: sqlx::Error) -> Error {
    Error::sqlx(SqlDatabase::Catalog, format!("ingest record: {action}"), e)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// Record a new run.
pub(crate) async fn start_run(db: &CatalogDatabase, run: &RunRecord, units: &[Unit]) -> Result<()> {
    let mut tx = db.pool().begin().await.map_err(|e| db_error("begin", e))?;
    sqlx::query(&db.sql(
        "INSERT INTO floe_ingest_runs (catalog_name, run_id, source, destination, spec, status, started_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    ))
    .bind(db.name())
    .bind(&run.run_id)
    .bind(&run.source)
    .bind(&run.destination)
    .bind(&run.spec)
    .bind(run.status.as_str())
    .bind(now())
    .execute(&mut *tx)
    .await
    .map_err(|e| db_error("record the run", e))?;
    for u in units {
        sqlx::query(&db.sql(
            "INSERT INTO floe_ingest_units (catalog_name, run_id, unit, spec, status, attempts, updated_at) \
             VALUES (?, ?, ?, ?, ?, 0, ?)",
        ))
        .bind(db.name())
        .bind(&run.run_id)
        .bind(u.index as i64)
        .bind(serde_json::to_string(u)?)
        .bind(UnitStatus::Pending.as_str())
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("record a unit", e))?;
    }
    tx.commit().await.map_err(|e| db_error("commit", e))?;
    Ok(())
}

/// Record a unit's state.
pub(crate) async fn update_unit(db: &CatalogDatabase, run_id: &str, state: &UnitState) -> Result<()> {
    sqlx::query(&db.sql(
        "UPDATE floe_ingest_units SET status = ?, attempts = ?, rows_written = ?, files = ?, error = ?, updated_at = ? \
         WHERE catalog_name = ? AND run_id = ? AND unit = ?",
    ))
    .bind(state.status.as_str())
    .bind(state.attempts as i64)
    .bind(state.rows as i64)
    .bind(serde_json::to_string(&state.files)?)
    .bind(state.error.clone())
    .bind(now())
    .bind(db.name())
    .bind(run_id)
    .bind(state.unit.index as i64)
    .execute(db.pool())
    .await
    .map_err(|e| db_error("record a unit's state", e))?;
    Ok(())
}

/// Record a run's outcome.
pub(crate) async fn finish_run(
    db: &CatalogDatabase,
    run_id: &str,
    status: RunStatus,
    snapshot_id: Option<i64>,
    rows: Option<u64>,
    error: Option<String>,
) -> Result<()> {
    sqlx::query(&db.sql(
        "UPDATE floe_ingest_runs SET status = ?, snapshot_id = ?, rows_written = ?, error = ?, ended_at = ? \
         WHERE catalog_name = ? AND run_id = ?",
    ))
    .bind(status.as_str())
    .bind(snapshot_id)
    .bind(rows.map(|r| r as i64))
    .bind(error)
    .bind(now())
    .bind(db.name())
    .bind(run_id)
    .execute(db.pool())
    .await
    .map_err(|e| db_error("record the run's outcome", e))?;
    Ok(())
}

/// A recorded run and its units.
pub async fn load_run(db: &CatalogDatabase, run_id: &str) -> Result<(RunRecord, Vec<UnitState>)> {
    let row = sqlx::query(&db.sql(
        "SELECT run_id, source, destination, spec, status, snapshot_id, rows_written, error FROM floe_ingest_runs \
         WHERE catalog_name = ? AND run_id = ?",
    ))
    .bind(db.name())
    .bind(run_id)
    .fetch_optional(db.pool())
    .await
    .map_err(|e| db_error("load the run", e))?
    .ok_or_else(|| Error::not_found(format!("no ingest run {run_id} is recorded")))?;
    let run = RunRecord {
        run_id: row.get::<String, _>(0),
        source: row.get::<String, _>(1),
        destination: row.get::<String, _>(2),
        spec: row.get::<String, _>(3),
        status: RunStatus::parse(&row.get::<String, _>(4))?,
        snapshot_id: row.try_get::<Option<i64>, _>(5).ok().flatten(),
        rows: row.try_get::<Option<i64>, _>(6).ok().flatten().map(|r| r as u64),
        error: row.try_get::<Option<String>, _>(7).ok().flatten(),
    };
    let rows = sqlx::query(&db.sql(
        "SELECT spec, status, attempts, rows_written, files, error FROM floe_ingest_units \
         WHERE catalog_name = ? AND run_id = ? ORDER BY unit",
    ))
    .bind(db.name())
    .bind(run_id)
    .fetch_all(db.pool())
    .await
    .map_err(|e| db_error("load the run's units", e))?;
    let mut units = Vec::with_capacity(rows.len());
    for r in rows {
        let unit: Unit = serde_json::from_str(&r.get::<String, _>(0))?;
        let files: Vec<String> = r
            .try_get::<Option<String>, _>(4)
            .ok()
            .flatten()
            .map(|f| serde_json::from_str(&f))
            .transpose()?
            .unwrap_or_default();
        units.push(UnitState {
            unit,
            status: UnitStatus::parse(&r.get::<String, _>(1))?,
            attempts: r.get::<i64, _>(2).max(0) as u32,
            rows: r.try_get::<Option<i64>, _>(3).ok().flatten().unwrap_or(0).max(0) as u64,
            files,
            error: r.try_get::<Option<String>, _>(5).ok().flatten(),
        });
    }
    Ok((run, units))
}

/// The most recent runs, newest first.
pub async fn recent_runs(db: &CatalogDatabase, limit: usize) -> Result<Vec<RunRecord>> {
    let rows =
        sqlx::query(&db.sql(
            "SELECT run_id FROM floe_ingest_runs WHERE catalog_name = ? ORDER BY started_at DESC LIMIT ?",
        ))
        .bind(db.name())
        .bind(limit as i64)
        .fetch_all(db.pool())
        .await
        .map_err(|e| db_error("list runs", e))?;
    let mut out = Vec::new();
    for r in rows {
        out.push(load_run(db, &r.get::<String, _>(0)).await?.0);
    }
    Ok(out)
}
