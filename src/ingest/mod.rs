//! Parallel extraction into one snapshot: `floe ingest`. A source (a Postgres or SQLite table or
//! query, [`source`], or files) is estimated and split into work units ([`units`], planned by
//! `planner`); the units run in parallel (`run`), each streaming its rows into data files of the
//! destination table (nothing committed yet) and recorded as it goes ([`record`]); a failed unit is
//! retried alone, with backoff; when every unit is done, all their files are committed as one
//! snapshot with lineage (`floe.run-id`, `floe.source`, `floe.units`). If a unit exhausts its
//! retries, nothing is committed, the run is recorded as failed, and [`resume`] later runs only the
//! units that are not done, then commits. A unit's files are only ever committed once: files of
//! failed attempts are deleted, and a run whose snapshot already landed is not committed again.
//! In upsert mode the units' rows are upserted by key instead, and with `since` only the rows
//! changed since the table's watermark are read (incremental ingest, [`changes`], [`watermark`]).
//! This file holds the options, the plan and report types, and the entry points.

pub mod changes;
pub(crate) mod on_cluster;
mod planner;
pub mod record;
mod run;
pub mod source;
pub mod units;
pub mod watermark;

use std::time::Instant;

use serde::{Deserialize, Serialize};

use self::changes::{ChangeWindow, UpsertReport, UpsertRun};
use self::planner::{destination, plan_source};
use self::record::{RunRecord, RunStatus, UnitState, UnitStatus};
use self::run::Execution;
use self::source::{SourceColumn, SqlSource};
use self::units::{PartitionBy, Unit, UnitCount};
use self::watermark::Lookback;
use crate::error::{Error, Result};
use crate::lakehouse::Floe;
use crate::table::Table;

/// Append to the destination, replace its rows, or upsert by key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IngestMode {
    /// One `append` snapshot.
    Append,
    /// One `overwrite` snapshot replacing every row.
    Overwrite,
    /// One snapshot inserting new keys, replacing changed rows and deleting tombstones; with
    /// `since`, of the rows changed since the table's watermark only.
    Upsert(UpsertIngest),
}

/// How an upsert ingest matches rows, and which it reads. Without `since` every run upserts the
/// whole source (and deletes nothing the source dropped unless `deletes_query` says so); with it,
/// a run reads the rows whose `since` value is at least the table's watermark less `lookback`
/// (every row on a first run), and records the greatest value read as the new watermark in the same
/// snapshot (see [`changes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpsertIngest {
    /// Key columns; empty takes the destination's identifier fields.
    pub key: Vec<String>,
    /// The column every insert and update at the source sets (an `updated_at` timestamp or date, or
    /// an increasing integer version).
    pub since: Option<String>,
    /// How far before the watermark each run reads again (late commits at the source).
    pub lookback: Option<Lookback>,
    /// A query on the source returning the key columns of deleted rows (tombstones); `{since}` in
    /// it stands for a literal of the window's start (the lowest value on a first run).
    pub deletes_query: Option<String>,
}

impl IngestMode {
    /// Parse `append`, `overwrite` or `upsert` (keyed by the table's identifier fields until its
    /// [`UpsertIngest`] is filled in).
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "append" => Ok(IngestMode::Append),
            "overwrite" => Ok(IngestMode::Overwrite),
            "upsert" => Ok(IngestMode::Upsert(UpsertIngest::default())),
            other => Err(Error::invalid(format!(
                "invalid --mode {other:?}: append, overwrite or upsert"
            ))),
        }
    }
}

/// What to extract, and how.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IngestOptions {
    /// `postgres://...`, `sqlite:PATH`, or files (a file, a directory or a glob; local or S3).
    pub source: String,
    /// The source table (`SCHEMA.NAME`), for a database.
    pub table: Option<String>,
    /// The source query, for a database.
    pub query: Option<String>,
    /// The destination table.
    pub into: String,
    /// How to split (default: one unit per file for files, one unit for a database).
    pub partition_by: Option<PartitionBy>,
    /// How many units.
    pub units: UnitCount,
    /// Units at a time (default: the number of cores).
    pub parallel: usize,
    /// Retries of a failed unit.
    pub unit_retries: u32,
    /// Append, overwrite or upsert.
    pub mode: IngestMode,
    /// Create the destination from the source's columns when it does not exist.
    pub create: bool,
    /// Count every unit's rows at the source again and require equality.
    pub verify: bool,
    /// Run the units of a Postgres source as tasks of the cluster at this URL (`df://HOST:PORT`):
    /// each executor reads its unit at the run's snapshot and writes the files; the driver keeps
    /// the retries, the unit ledger and the commit. SQLite and file sources, and upserts (whose rows
    /// the driver holds), run locally.
    #[serde(default)]
    pub on_cluster: Option<String>,
}

impl IngestOptions {
    /// Options with the defaults: `auto` units, one per core at a time, 3 retries, append.
    pub fn new(source: impl Into<String>, into: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            table: None,
            query: None,
            into: into.into(),
            partition_by: None,
            units: UnitCount::Auto,
            parallel: crate::resources::cores(),
            unit_retries: 3,
            mode: IngestMode::Append,
            create: false,
            verify: false,
            on_cluster: None,
        }
    }
}

/// An extraction plan: its units, and why there is only one when a split was asked for but is not
/// possible.
#[derive(Clone, Debug, Serialize)]
pub struct IngestPlan {
    /// The source, password masked.
    pub source: String,
    /// The destination.
    pub destination: String,
    /// Source columns: name, source type, Arrow type.
    pub columns: Vec<(String, String, String)>,
    /// The split.
    pub partition_by: String,
    /// Rows the source is estimated to hold.
    pub estimated_rows: u64,
    /// The units.
    pub units: Vec<Unit>,
    /// Why the plan differs from what was asked (one unit for a CSV with quoted fields, ...).
    pub note: Option<String>,
    /// What sized the units (a database's statistics of the key, or the source read), when a
    /// database source was split.
    pub sized_by: Option<String>,
    /// The rows an incremental run reads.
    pub window: Option<ChangeWindow>,
}

/// What a unit did.
#[derive(Clone, Debug, Serialize)]
pub struct UnitReport {
    /// The unit.
    pub index: usize,
    /// What it read.
    pub bounds: String,
    /// Rows written.
    pub rows: u64,
    /// Files written.
    pub files: usize,
    /// Attempts it took.
    pub attempts: u32,
    /// Whether it ran in this call (false: done by an earlier one, on resume).
    pub ran: bool,
    /// Whether it ran as a task of the cluster (`--on-cluster`).
    pub on_cluster: bool,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct IngestReport {
    /// The run (for `--resume` and in the snapshot's `floe.run-id`).
    pub run_id: String,
    /// The plan.
    pub plan: IngestPlan,
    /// Per unit.
    pub units: Vec<UnitReport>,
    /// Rows committed (append, overwrite), or read from the source (upsert).
    pub rows: u64,
    /// The snapshot.
    pub snapshot_id: Option<i64>,
    /// The Postgres snapshot every unit of this call read at (`pg_export_snapshot`), absent for
    /// sources that cannot share one (SQLite, files). Units done by an earlier call of a resumed
    /// run read at that call's snapshot.
    pub source_snapshot: Option<String>,
    /// What an upsert did.
    pub upsert: Option<UpsertReport>,
    /// Wall time.
    pub seconds: f64,
}

/// The source of a plan: a database, or files.
enum Source {
    Sql(SqlSource),
    Files(Vec<crate::pipeline::input::InputFile>),
}

/// The recorded spec of a run: what `resume` needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Spec {
    options: IngestOptions,
    plan_note: Option<String>,
}

/// The source of a run, and for an upsert run its plan (the source then restricted to the rows it
/// reads).
async fn open_source(floe: &Floe, options: &IngestOptions) -> Result<(Source, Option<UpsertRun>)> {
    let s = options.source.as_str();
    let source = if s.starts_with("postgres://") || s.starts_with("postgresql://") || s.starts_with("sqlite:")
    {
        Source::Sql(SqlSource::new(
            s,
            options.table.as_deref(),
            options.query.as_deref(),
        )?)
    } else if options.table.is_some() || options.query.is_some() {
        return Err(Error::invalid(
            "--table and --query are for database sources (postgres://, sqlite:)",
        ));
    } else {
        Source::Files(crate::pipeline::input::resolve_inputs(floe.storage(), s).await?)
    };
    match &options.mode {
        IngestMode::Upsert(spec) => {
            let (source, run) = changes::plan(floe, options, spec, source).await?;
            Ok((source, Some(run)))
        }
        IngestMode::Append | IngestMode::Overwrite => Ok((source, None)),
    }
}

/// Plan the extraction; nothing is written or changed.
pub async fn plan(floe: &Floe, options: &IngestOptions) -> Result<IngestPlan> {
    let (source, upsert) = open_source(floe, options).await?;
    let mut plan = plan_source(floe, options, &source).await?.0;
    plan.window = upsert.and_then(|u| u.window());
    Ok(plan)
}

/// An extraction planned and recorded, ready to run.
pub struct PreparedRun {
    floe: Floe,
    options: IngestOptions,
    source: Source,
    upsert: Option<UpsertRun>,
    columns: Vec<SourceColumn>,
    table: Table,
    plan: IngestPlan,
    run_id: String,
    started: Instant,
}

impl PreparedRun {
    /// The run's id (what `resume` takes).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The plan.
    pub fn plan(&self) -> &IngestPlan {
        &self.plan
    }

    /// Run the units and commit.
    pub async fn run(self) -> Result<IngestReport> {
        let states = self
            .plan
            .units
            .iter()
            .map(|u| UnitState {
                unit: u.clone(),
                status: UnitStatus::Pending,
                attempts: 0,
                rows: 0,
                files: Vec::new(),
                error: None,
            })
            .collect();
        let execution = Execution {
            floe: &self.floe,
            options: &self.options,
            source: &self.source,
            upsert: self.upsert.as_ref(),
            columns: &self.columns,
            table: self.table,
            plan: self.plan,
            run_id: self.run_id,
            started: self.started,
        };
        run::execute(execution, states).await
    }
}

/// Run an extraction.
pub async fn ingest(floe: &Floe, options: &IngestOptions) -> Result<IngestReport> {
    prepare(floe, options).await?.run().await
}

/// Plan an extraction, create the destination if asked, and record the run: what `run` then does.
pub async fn prepare(floe: &Floe, options: &IngestOptions) -> Result<PreparedRun> {
    let started = Instant::now();
    let (source, upsert) = open_source(floe, options).await?;
    let (mut plan, columns) = plan_source(floe, options, &source).await?;
    plan.window = upsert.as_ref().and_then(|u| u.window());
    let table = destination(floe, options, &columns, &source).await?;
    let run_id = uuid::Uuid::now_v7().to_string();
    let mut recorded = options.clone();
    // Recorded without its credentials: a resumed run reads the password from PGPASSWORD or
    // ~/.pgpass.
    recorded.source = crate::secrets::split_url_credentials(&options.source).without;
    let spec = Spec {
        options: recorded,
        plan_note: plan.note.clone(),
    };
    record::start_run(
        floe.database(),
        &RunRecord {
            run_id: run_id.clone(),
            source: plan.source.clone(),
            destination: options.into.clone(),
            spec: serde_json::to_string(&spec)?,
            status: RunStatus::Running,
            snapshot_id: None,
            rows: None,
            error: None,
        },
        &plan.units,
    )
    .await?;
    Ok(PreparedRun {
        floe: floe.clone(),
        options: options.clone(),
        source,
        upsert,
        columns,
        table,
        plan,
        run_id,
        started,
    })
}

/// Resume a recorded run: run the units that are not done, then commit (once). An upsert run reads
/// every unit again, at one new instant, in a window from the table's watermark now (which a later
/// run may have moved).
pub async fn resume(floe: &Floe, run_id: &str, parallel: Option<usize>) -> Result<IngestReport> {
    let started = Instant::now();
    let (run, mut states) = record::load_run(floe.database(), run_id).await?;
    let spec: Spec = serde_json::from_str(&run.spec)?;
    let mut options = spec.options;
    if let Some(p) = parallel {
        options.parallel = p;
    }
    if run.status == RunStatus::Committed {
        return Err(Error::invalid(format!(
            "ingest run {run_id} is already committed (snapshot {})",
            run.snapshot_id.map(|s| s.to_string()).unwrap_or_default()
        )));
    }
    let (source, upsert) = open_source(floe, &options).await?;
    if upsert.is_some() {
        // An upsert's rows are held in memory, not written: what earlier attempts read is gone.
        for s in &mut states {
            s.status = UnitStatus::Pending;
            s.rows = 0;
            s.files.clear();
        }
    }
    let columns = match &source {
        Source::Sql(s) => s.columns().await?,
        Source::Files(_) => Vec::new(),
    };
    let table = destination(floe, &options, &columns, &source).await?;
    let plan = IngestPlan {
        source: run.source.clone(),
        destination: run.destination.clone(),
        columns: planner::described_columns(&columns),
        partition_by: options
            .partition_by
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        estimated_rows: states.iter().map(|s| s.unit.estimated_rows).sum(),
        units: states.iter().map(|s| s.unit.clone()).collect(),
        note: spec.plan_note,
        sized_by: None,
        window: upsert.as_ref().and_then(|u| u.window()),
    };
    let execution = Execution {
        floe,
        options: &options,
        source: &source,
        upsert: upsert.as_ref(),
        columns: &columns,
        table,
        plan,
        run_id: run_id.to_string(),
        started,
    };
    run::execute(execution, states).await
}

/// The name a unit's connection carries (`pg_stat_activity.application_name`): unit and attempt
/// first, because Postgres cuts the name at 63 bytes, which cuts into the run id.
pub fn application_name(run_id: &str, unit: usize, attempt: u32) -> String {
    format!("floe-ingest-unit-{unit}-attempt-{attempt}-run-{run_id}")
}
