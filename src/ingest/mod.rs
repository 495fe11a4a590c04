//! Parallel extraction into one snapshot: `floe ingest`. A source (a Postgres or SQLite table or
//! query, or files) is estimated and split into work units ([`units`]); the units run in parallel,
//! each streaming its rows into data files of the destination table (nothing committed yet) and
//! recorded as it goes ([`record`]); a failed unit is retried alone, with backoff; when every unit is
//! done, all their files are committed as one snapshot with lineage (`floe.run-id`, `floe.source`,
//! `floe.units`). If a unit exhausts its retries, nothing is committed, the run is recorded as failed,
//! and [`resume`] later runs only the units that are not done, then commits. A unit's files are only
//! ever committed once: files of failed attempts are deleted, and a run whose snapshot already landed
//! is not committed again.

mod pg_binary;
pub mod record;
pub mod source;
pub mod units;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::datatypes::{Field, Schema};
use futures::StreamExt;
use iceberg::spec::DataFile;
use serde::{Deserialize, Serialize};

use self::record::{RunRecord, UnitState};
use self::source::{SourceColumn, SqlSource};
use self::units::{pack_histogram, ranges, Bounds, PartitionBy, Unit, UnitCount};
use crate::catalog::TableName;
use crate::error::{Error, ErrorKind, Result};
use crate::lakehouse::{Floe, TableDefinition};
use crate::table::add_files::FileToAdd;
use crate::table::transaction::delete_quietly;
use crate::table::{Lineage, Table, WriteOptions, DEFAULT_TARGET_FILE_SIZE};

/// Append to the destination, or replace its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IngestMode {
    /// One `append` snapshot.
    Append,
    /// One `overwrite` snapshot replacing every row.
    Overwrite,
}

impl IngestMode {
    /// Parse `append` or `overwrite`.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "append" => Ok(IngestMode::Append),
            "overwrite" => Ok(IngestMode::Overwrite),
            other => Err(Error::invalid(format!(
                "invalid --mode {other:?}: append or overwrite"
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
    /// Append or overwrite.
    pub mode: IngestMode,
    /// Create the destination from the source's columns when it does not exist.
    pub create: bool,
    /// Count every unit's rows at the source again and require equality.
    pub verify: bool,
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
    /// Rows committed.
    pub rows: u64,
    /// The snapshot.
    pub snapshot_id: Option<i64>,
    /// The Postgres snapshot every unit of this call read at (`pg_export_snapshot`), absent for
    /// sources that cannot share one (SQLite, files). Units done by an earlier call of a resumed
    /// run read at that call's snapshot.
    pub source_snapshot: Option<String>,
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

async fn open_source(floe: &Floe, options: &IngestOptions) -> Result<Source> {
    let s = options.source.as_str();
    if s.starts_with("postgres://") || s.starts_with("postgresql://") || s.starts_with("sqlite:") {
        return Ok(Source::Sql(SqlSource::new(
            s,
            options.table.as_deref(),
            options.query.as_deref(),
        )?));
    }
    if options.table.is_some() || options.query.is_some() {
        return Err(Error::invalid(
            "--table and --query are for database sources (postgres://, sqlite:)",
        ));
    }
    let files = crate::pipeline::input::resolve_inputs(floe.storage(), s).await?;
    Ok(Source::Files(files))
}

/// Plan the extraction; nothing is written or changed.
pub async fn plan(floe: &Floe, options: &IngestOptions) -> Result<IngestPlan> {
    let source = open_source(floe, options).await?;
    Ok(plan_source(floe, options, &source).await?.0)
}

async fn plan_source(
    floe: &Floe,
    options: &IngestOptions,
    source: &Source,
) -> Result<(IngestPlan, Vec<SourceColumn>)> {
    TableName::parse(&options.into)?;
    match source {
        Source::Sql(sql) => {
            let columns = sql.columns().await?;
            let estimated = sql.estimate().await?;
            let by = options.partition_by.clone().unwrap_or(PartitionBy::Single);
            let n = options.units.resolve(estimated);
            let mut note = None;
            let units: Vec<(Bounds, u64)> = match &by {
                PartitionBy::Single => vec![(Bounds::All, estimated)],
                PartitionBy::Date(c) => {
                    let column = source::find(&columns, c)?;
                    if !source::temporal(column) {
                        return Err(Error::invalid(format!(
                            "date({c}) needs a date or timestamp column; {c} is {}",
                            column.source_type
                        )));
                    }
                    let histogram = sql.day_histogram(column).await?;
                    ranges(c, &pack_histogram(&histogram, n), true)
                }
                PartitionBy::Id(c) => {
                    let column = source::find(&columns, c)?;
                    if !source::integer(column) {
                        return Err(Error::invalid(format!(
                            "id({c}) needs an integer column; {c} is {}",
                            column.source_type
                        )));
                    }
                    let histogram = sql.id_histogram(column).await?;
                    ranges(c, &pack_histogram(&histogram, n), false)
                }
                PartitionBy::Hash(c) => {
                    let column = source::find(&columns, c)?;
                    if sql.database() != source::Database::Postgres {
                        return Err(Error::invalid(format!(
                            "hash({c}) needs a source that can hash; SQLite cannot: use id(COL) or date(COL)"
                        )));
                    }
                    if !source::hashable(column) {
                        return Err(Error::invalid(format!(
                            "hash({c}): the source cannot hash a column of type {}",
                            column.source_type
                        )));
                    }
                    (0..n as u32)
                        .map(|b| {
                            (
                                Bounds::Hash {
                                    column: c.clone(),
                                    bucket: b,
                                    buckets: n as u32,
                                },
                                estimated / n.max(1) as u64,
                            )
                        })
                        .collect()
                }
                PartitionBy::File | PartitionBy::Bytes => {
                    return Err(Error::invalid(format!("--partition-by {by} is for file sources")))
                }
            };
            let units: Vec<(Bounds, u64)> = if units.is_empty() {
                note = Some("the source is empty: one unit".to_string());
                vec![(Bounds::All, 0)]
            } else {
                units
            };
            let plan = IngestPlan {
                source: format!("{} {}", sql.url_redacted(), sql.described),
                destination: options.into.clone(),
                columns: columns
                    .iter()
                    .map(|c| (c.name.clone(), c.source_type.clone(), c.arrow.to_string()))
                    .collect(),
                partition_by: by.to_string(),
                estimated_rows: estimated,
                units: numbered(units),
                note,
            };
            Ok((plan, columns))
        }
        Source::Files(files) => {
            let by = options.partition_by.clone().unwrap_or(PartitionBy::File);
            let estimated: u64 = files.iter().map(|f| f.size / 100).sum();
            let mut note = None;
            let units: Vec<(Bounds, u64)> = match by {
                PartitionBy::File | PartitionBy::Single => files
                    .iter()
                    .map(|f| (Bounds::File { uri: f.uri.clone() }, f.size / 100))
                    .collect(),
                PartitionBy::Bytes => {
                    let [file] = files.as_slice() else {
                        return Err(Error::invalid(
                            "--partition-by bytes splits one file; name exactly one",
                        ));
                    };
                    if !file.uri.to_ascii_lowercase().ends_with(".csv") {
                        return Err(Error::invalid("--partition-by bytes splits a CSV file"));
                    }
                    let n = options.units.resolve(file.size / 100);
                    match byte_ranges(floe, &file.uri, file.size, n).await? {
                        Ok(ranges) => ranges,
                        Err(why) => {
                            note = Some(why);
                            vec![(
                                Bounds::File {
                                    uri: file.uri.clone(),
                                },
                                file.size / 100,
                            )]
                        }
                    }
                }
                other => {
                    return Err(Error::invalid(format!(
                        "--partition-by {other} is for database sources"
                    )))
                }
            };
            let plan = IngestPlan {
                source: options.source.clone(),
                destination: options.into.clone(),
                columns: Vec::new(),
                partition_by: by.to_string(),
                estimated_rows: estimated,
                units: numbered(units),
                note,
            };
            Ok((plan, Vec::new()))
        }
    }
}

fn numbered(units: Vec<(Bounds, u64)>) -> Vec<Unit> {
    units
        .into_iter()
        .enumerate()
        .map(|(index, (bounds, estimated_rows))| Unit {
            index,
            bounds,
            estimated_rows,
        })
        .collect()
}

/// Byte ranges of a CSV file that start at record boundaries, or why there can be none: a quoted
/// field may hold a line break, so a line start is not known to start a record without reading the
/// file from its beginning.
async fn byte_ranges(
    floe: &Floe,
    uri: &str,
    size: u64,
    n: usize,
) -> Result<std::result::Result<Vec<(Bounds, u64)>, String>> {
    use futures::TryStreamExt;
    let (store, path) = floe.storage().resolve(uri)?;
    let storage_error =
        |e: object_store::Error| Error::wrap(ErrorKind::Storage, format!("cannot read {uri}"), e);
    // Streamed: memory holds one chunk.
    let mut chunks = object_store::ObjectStoreExt::get(store.as_ref(), &path)
        .await
        .map_err(storage_error)?
        .into_stream();
    while let Some(chunk) = chunks.try_next().await.map_err(storage_error)? {
        if chunk.contains(&b'"') {
            return Ok(Err(format!(
                "{uri} has quoted fields, which may hold line breaks: a record boundary cannot be found without \
                 reading the file from its start, so it is one unit"
            )));
        }
    }
    // The first line break at or after `at`.
    let line_after = |at: u64| {
        let (store, path) = (store.clone(), path.clone());
        async move {
            let end = (at + (1 << 20)).min(size);
            if at >= end {
                return Ok::<_, Error>(None);
            }
            let bytes = object_store::ObjectStoreExt::get_range(store.as_ref(), &path, at..end)
                .await
                .map_err(|e| Error::wrap(ErrorKind::Storage, "cannot read the input", e))?;
            Ok(bytes.iter().position(|b| *b == b'\n').map(|p| at + p as u64 + 1))
        }
    };
    let Some(header_end) = line_after(0).await? else {
        return Ok(Err(format!("{uri} has no line after its header: one unit")));
    };
    let body = size.saturating_sub(header_end);
    let mut starts = vec![header_end];
    for k in 1..n as u64 {
        let at = header_end + body * k / n as u64;
        if let Some(s) = line_after(at).await? {
            if s < size && s > *starts.last().unwrap_or(&0) {
                starts.push(s);
            }
        }
    }
    let mut out = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(size);
        out.push((
            Bounds::ByteRange {
                uri: uri.to_string(),
                start: *start,
                end,
            },
            (end - start) / 100,
        ));
    }
    Ok(Ok(out))
}

/// The destination table: loaded, or created from the source's columns (`create`).
async fn destination(
    floe: &Floe,
    options: &IngestOptions,
    columns: &[SourceColumn],
    source: &Source,
) -> Result<Table> {
    let name = TableName::parse(&options.into)?;
    match floe.load_table(&name).await {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == ErrorKind::NotFound && options.create => {
            let schema = match source {
                Source::Sql(_) => Schema::new(
                    columns
                        .iter()
                        .map(|c| Field::new(&c.name, c.arrow.clone(), true))
                        .collect::<Vec<_>>(),
                ),
                Source::Files(files) => {
                    let Some(first) = files.iter().find(|f| f.uri.ends_with(".parquet")) else {
                        return Err(Error::invalid(
                            "--create from CSV or NDJSON files cannot know the column types: create the table first",
                        ));
                    };
                    let (store, path) = floe.storage().resolve(&first.uri)?;
                    let reader = parquet::arrow::async_reader::ParquetObjectReader::new(store, path)
                        .with_file_size(first.size);
                    let b =
                        parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder::new(reader).await?;
                    Schema::new(
                        b.schema()
                            .fields()
                            .iter()
                            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
                            .collect::<Vec<_>>(),
                    )
                }
            };
            floe.ensure_namespace(name.namespace()).await?;
            match floe
                .create_table(
                    &name,
                    TableDefinition {
                        schema,
                        ..Default::default()
                    },
                )
                .await
            {
                Ok(t) => Ok(t),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => floe.load_table(&name).await,
                Err(e) => Err(e),
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::not_found(format!(
            "destination table {name} does not exist (pass --create to create it from the source's columns)"
        ))),
        Err(e) => Err(e),
    }
}

/// An extraction planned and recorded, ready to run.
pub struct PreparedRun {
    floe: Floe,
    options: IngestOptions,
    source: Source,
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
                status: "pending".into(),
                attempts: 0,
                rows: 0,
                files: Vec::new(),
                error: None,
            })
            .collect();
        execute(
            &self.floe,
            &self.options,
            &self.source,
            &self.columns,
            self.table.clone(),
            self.plan.clone(),
            self.run_id.clone(),
            states,
            self.started,
        )
        .await
    }
}

/// Run an extraction.
pub async fn ingest(floe: &Floe, options: &IngestOptions) -> Result<IngestReport> {
    prepare(floe, options).await?.run().await
}

/// Plan an extraction, create the destination if asked, and record the run: what `run` then does.
pub async fn prepare(floe: &Floe, options: &IngestOptions) -> Result<PreparedRun> {
    let started = Instant::now();
    let source = open_source(floe, options).await?;
    let (plan, columns) = plan_source(floe, options, &source).await?;
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
            status: "running".to_string(),
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
        columns,
        table,
        plan,
        run_id,
        started,
    })
}

/// Resume a recorded run: run the units that are not done, then commit (once).
pub async fn resume(floe: &Floe, run_id: &str, parallel: Option<usize>) -> Result<IngestReport> {
    let started = Instant::now();
    let (run, states) = record::load_run(floe.database(), run_id).await?;
    let spec: Spec = serde_json::from_str(&run.spec)?;
    let mut options = spec.options;
    if let Some(p) = parallel {
        options.parallel = p;
    }
    if run.status == "committed" {
        return Err(Error::invalid(format!(
            "ingest run {run_id} is already committed (snapshot {})",
            run.snapshot_id.map(|s| s.to_string()).unwrap_or_default()
        )));
    }
    let source = open_source(floe, &options).await?;
    let columns = match &source {
        Source::Sql(s) => s.columns().await?,
        Source::Files(_) => Vec::new(),
    };
    let table = destination(floe, &options, &columns, &source).await?;
    let plan = IngestPlan {
        source: run.source.clone(),
        destination: run.destination.clone(),
        columns: columns
            .iter()
            .map(|c| (c.name.clone(), c.source_type.clone(), c.arrow.to_string()))
            .collect(),
        partition_by: options
            .partition_by
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        estimated_rows: states.iter().map(|s| s.unit.estimated_rows).sum(),
        units: states.iter().map(|s| s.unit.clone()).collect(),
        note: spec.plan_note,
    };
    execute(
        floe,
        &options,
        &source,
        &columns,
        table,
        plan,
        run_id.to_string(),
        states,
        started,
    )
    .await
}

/// The name a unit's connection carries (`pg_stat_activity.application_name`): unit and attempt
/// first, because Postgres cuts the name at 63 bytes, which cuts into the run id.
pub fn application_name(run_id: &str, unit: usize, attempt: u32) -> String {
    format!("floe-ingest-unit-{unit}-attempt-{attempt}-run-{run_id}")
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    floe: &Floe,
    options: &IngestOptions,
    source: &Source,
    columns: &[SourceColumn],
    table: Table,
    plan: IngestPlan,
    run_id: String,
    states: Vec<UnitState>,
    started: Instant,
) -> Result<IngestReport> {
    let name = table.name().clone();
    // A run whose snapshot landed (a crash after the commit, before it was recorded) is done.
    if let Some(snapshot) = committed_snapshot(&table, &run_id) {
        record::finish_run(floe.database(), &run_id, "committed", Some(snapshot), None, None).await?;
        return Err(Error::invalid(format!(
            "ingest run {run_id} had already committed snapshot {snapshot} to {name}; nothing more to do"
        )));
    }
    let target = DEFAULT_TARGET_FILE_SIZE;
    let db = floe.database().clone();
    let parallel = options.parallel.max(1);
    // One instant of the source for every unit of this call, held until they are all done.
    let snapshot = match source {
        Source::Sql(sql) if states.iter().any(|s| s.status != "done") => {
            sql.export_snapshot(&format!("floe-ingest-snapshot-run-{run_id}"))
                .await?
        }
        _ => None,
    };
    let at = snapshot.as_ref().map(|s| s.id.as_str());
    let results: Vec<(UnitState, bool, Vec<DataFile>, Option<Error>)> =
        futures::stream::iter(states.into_iter().map(|state| {
            let (db, table, run_id) = (db.clone(), table.clone(), run_id.clone());
            async move {
                if state.status == "done" {
                    return (state, false, Vec::new(), None);
                }
                run_unit(&db, source, columns, &table, &run_id, state, options, target, at).await
            }
        }))
        .buffer_unordered(parallel)
        .collect()
        .await;
    let source_snapshot = snapshot.map(|s| s.id);
    let mut results = results;
    results.sort_by_key(|r| r.0.unit.index);
    let failed: Vec<&(UnitState, bool, Vec<DataFile>, Option<Error>)> =
        results.iter().filter(|r| r.3.is_some()).collect();
    if let Some((state, _, _, Some(e))) = failed.first().copied() {
        let message = format!(
            "{} of {} units failed after their retries (first: unit {} ({}): {e}); nothing was committed; \
             `floe ingest --resume {run_id}` runs the units that are not done",
            failed.len(),
            results.len(),
            state.unit.index,
            state.unit.describe()
        );
        record::finish_run(
            floe.database(),
            &run_id,
            "failed",
            None,
            None,
            Some(message.clone()),
        )
        .await?;
        return Err(Error::new(e.kind(), message));
    }

    // Every unit is done: their files, described (units done by an earlier call are described
    // again from their files' footers), in one snapshot.
    let mut files: Vec<DataFile> = Vec::new();
    let mut earlier: Vec<FileToAdd> = Vec::new();
    for (state, ran, data, _) in &results {
        if *ran {
            files.extend(data.iter().cloned());
        } else {
            earlier.extend(state.files.iter().map(|uri| FileToAdd {
                uri: uri.clone(),
                partition: None,
            }));
        }
    }
    if !earlier.is_empty() {
        files.extend(crate::table::add_files::describe_files(&table, earlier).await?);
    }
    let rows: u64 = files.iter().map(|f| f.record_count()).sum();
    let commit_options = WriteOptions {
        lineage: Lineage {
            run_id: Some(run_id.clone()),
            stage: Some("ingest".into()),
            engine: None,
            inputs: BTreeMap::new(),
        },
        properties: BTreeMap::from([
            ("floe.source".to_string(), plan.source.clone()),
            ("floe.units".to_string(), results.len().to_string()),
        ]),
        ..Default::default()
    };
    let mut tx = floe.transaction();
    tx.read_as(table.clone());
    match options.mode {
        IngestMode::Append => tx.append_files(&name, files, &commit_options).await?,
        IngestMode::Overwrite => {
            tx.overwrite_files(&name, None, files, &commit_options.clone().into())
                .await?
        }
    }
    let committed = match tx.commit().await {
        Ok(r) => r,
        Err(e) => {
            let _ = record::finish_run(
                floe.database(),
                &run_id,
                "failed",
                None,
                None,
                Some(e.to_string()),
            )
            .await;
            return Err(e);
        }
    };
    let snapshot_id = committed.first().and_then(|r| r.snapshot_id);
    record::finish_run(
        floe.database(),
        &run_id,
        "committed",
        snapshot_id,
        Some(rows),
        None,
    )
    .await?;
    Ok(IngestReport {
        run_id,
        units: results
            .iter()
            .map(|(s, ran, _, _)| UnitReport {
                index: s.unit.index,
                bounds: s.unit.describe(),
                rows: s.rows,
                files: s.files.len(),
                attempts: s.attempts,
                ran: *ran,
            })
            .collect(),
        plan,
        rows,
        snapshot_id,
        source_snapshot,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The snapshot of `table` that run `run_id` committed, if one did.
fn committed_snapshot(table: &Table, run_id: &str) -> Option<i64> {
    table
        .metadata()
        .snapshots()
        .find(|s| {
            s.summary()
                .additional_properties
                .get("floe.run-id")
                .map(String::as_str)
                == Some(run_id)
        })
        .map(|s| s.snapshot_id())
}

/// Run one unit to completion, retrying with backoff: its final state, whether it ran, the files it
/// wrote, and its error when it exhausted its retries.
#[allow(clippy::too_many_arguments)]
async fn run_unit(
    db: &crate::catalog::CatalogDatabase,
    source: &Source,
    columns: &[SourceColumn],
    table: &Table,
    run_id: &str,
    mut state: UnitState,
    options: &IngestOptions,
    target: usize,
    snapshot: Option<&str>,
) -> (UnitState, bool, Vec<DataFile>, Option<Error>) {
    loop {
        state.attempts += 1;
        state.status = "running".into();
        state.error = None;
        if let Err(e) = record::update_unit(db, run_id, &state).await {
            return (state, true, Vec::new(), Some(e));
        }
        match attempt(source, columns, table, run_id, &state, options, target, snapshot).await {
            Ok(files) => {
                state.status = "done".into();
                state.rows = files.iter().map(|f| f.record_count()).sum();
                state.files = files.iter().map(|f| f.file_path().to_string()).collect();
                return match record::update_unit(db, run_id, &state).await {
                    Ok(()) => (state, true, files, None),
                    Err(e) => {
                        delete_quietly(table.storage(), crate::table::transaction::paths_of(&files)).await;
                        (state, true, Vec::new(), Some(e))
                    }
                };
            }
            Err(e) => {
                tracing::warn!(run = run_id, unit = state.unit.index, attempt = state.attempts, error = %e, "unit failed");
                state.status = "failed".into();
                state.error = Some(e.to_string());
                let _ = record::update_unit(db, run_id, &state).await;
                if state.attempts > options.unit_retries || e.kind() == ErrorKind::InvalidInput {
                    return (state, true, Vec::new(), Some(e));
                }
                let pause = Duration::from_millis(200 * (1u64 << state.attempts.min(6)));
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// One attempt of a unit: stream its rows (at the source's `snapshot`) into new data files of
/// `table` (deleted again on error).
#[allow(clippy::too_many_arguments)]
async fn attempt(
    source: &Source,
    columns: &[SourceColumn],
    table: &Table,
    run_id: &str,
    state: &UnitState,
    options: &IngestOptions,
    target: usize,
    snapshot: Option<&str>,
) -> Result<Vec<DataFile>> {
    let app = application_name(run_id, state.unit.index, state.attempts);
    let batches = match (source, &state.unit.bounds) {
        (Source::Sql(sql), bounds) => sql.extract(columns, bounds, &app, snapshot).await?,
        (Source::Files(_), Bounds::File { uri }) => {
            crate::table::files::read_files(
                table.storage(),
                std::slice::from_ref(uri),
                table.arrow_schema()?,
                &Default::default(),
            )
            .await?
        }
        (Source::Files(_), Bounds::ByteRange { uri, start, end }) => {
            crate::table::files::read_csv_range(
                table.storage(),
                uri,
                *start,
                *end,
                table.arrow_schema()?,
                &Default::default(),
            )
            .await?
        }
        (Source::Files(_), b) => return Err(Error::internal(format!("a file source with unit {b:?}"))),
    };
    let files = crate::table::writer::write_batches(table, batches, target).await?;
    if options.verify {
        if let Source::Sql(sql) = source {
            let written: u64 = files.iter().map(|f| f.record_count()).sum();
            let counted = sql
                .count_at(&state.unit.bounds, &format!("{app}-verify"), snapshot)
                .await;
            match counted {
                Ok(n) if n == written => {}
                Ok(n) => {
                    delete_quietly(table.storage(), crate::table::transaction::paths_of(&files)).await;
                    return Err(Error::new(
                        ErrorKind::Data,
                        format!(
                            "unit {} wrote {written} rows but the source counts {n} in its range",
                            state.unit.index
                        ),
                    ));
                }
                Err(e) => {
                    delete_quietly(table.storage(), crate::table::transaction::paths_of(&files)).await;
                    return Err(e);
                }
            }
        }
    }
    Ok(files)
}
