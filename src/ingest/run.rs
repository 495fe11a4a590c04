//! Running an extraction: its units in parallel at one instant of the source, each retried alone
//! with backoff and recorded as it goes; then, when every unit is done, all their files committed as
//! one snapshot with lineage (or, in upsert mode, all their rows upserted as one snapshot, with the
//! deletes query's keys read at the same instant). When a unit exhausts its retries nothing is
//! committed and the run is recorded as failed; a run whose snapshot already landed is never
//! committed again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use iceberg::spec::DataFile;

use super::changes::{self, UpsertReport, UpsertRun};
use super::record::{self, RunStatus, UnitState, UnitStatus};
use super::source::{SourceColumn, SourceRows, SourceSnapshot};
use super::units::Bounds;
use super::{application_name, IngestMode, IngestOptions, IngestPlan, IngestReport, Source, UnitReport};
use crate::catalog::CatalogDatabase;
use crate::error::{Error, ErrorKind, Result};
use crate::lakehouse::Floe;
use crate::storage::delete_quietly;
use crate::table::add_files::FileToAdd;
use crate::table::transaction::paths_of;
use crate::table::{Lineage, Table, WriteOptions, DEFAULT_TARGET_FILE_SIZE};

/// An extraction ready to run: what `prepare` and `resume` hand over.
pub(super) struct Execution<'a> {
    pub floe: &'a Floe,
    pub options: &'a IngestOptions,
    pub source: &'a Source,
    pub upsert: Option<&'a UpsertRun>,
    pub columns: &'a [SourceColumn],
    pub table: Table,
    pub plan: IngestPlan,
    pub run_id: String,
    pub started: Instant,
}

/// How one unit ended: its final state, whether it ran in this call (else an earlier call did it),
/// what it read, and its error when it exhausted its retries.
struct UnitOutcome {
    state: UnitState,
    ran: bool,
    /// It ran as a task of the cluster.
    on_cluster: bool,
    read: UnitRows,
    error: Option<Error>,
}

/// A unit's rows: written to data files of the table, or held (upsert mode).
#[derive(Default)]
struct UnitRows {
    files: Vec<DataFile>,
    batches: Vec<RecordBatch>,
}

impl UnitRows {
    fn rows(&self) -> u64 {
        let held: usize = self.batches.iter().map(|b| b.num_rows()).sum();
        self.files.iter().map(|f| f.record_count()).sum::<u64>() + held as u64
    }
}

/// Run the units of `states` that are not done, then commit every unit's files as one snapshot.
pub(super) async fn execute(run: Execution<'_>, states: Vec<UnitState>) -> Result<IngestReport> {
    let (db, run_id) = (run.floe.database(), run.run_id.as_str());
    // A run whose snapshot landed (a crash after the commit, before it was recorded) is done.
    if let Some(snapshot) = committed_snapshot(&run.table, run_id) {
        record::finish_run(db, run_id, RunStatus::Committed, Some(snapshot), None, None).await?;
        return Err(Error::invalid(format!(
            "ingest run {run_id} had already committed snapshot {snapshot} to {}; nothing more to do",
            run.table.name()
        )));
    }
    let (mut outcomes, source_snapshot) = run_units(&run, states).await?;
    refuse_failed_units(&run, &outcomes).await?;
    let landed = match run.upsert {
        Some(upsert) => commit_upsert(&run, upsert, &mut outcomes, source_snapshot.as_ref()).await,
        None => commit_files(&run, &outcomes).await,
    };
    let source_snapshot = source_snapshot.map(|s| s.id);
    let (snapshot_id, rows, upsert) = match landed {
        Ok(landed) => landed,
        Err(e) => {
            let _ = record::finish_run(db, run_id, RunStatus::Failed, None, None, Some(e.to_string())).await;
            return Err(e);
        }
    };
    record::finish_run(db, run_id, RunStatus::Committed, snapshot_id, Some(rows), None).await?;
    Ok(IngestReport {
        run_id: run.run_id.clone(),
        units: outcomes
            .iter()
            .map(|o| UnitReport {
                index: o.state.unit.index,
                bounds: o.state.unit.describe(),
                rows: o.state.rows,
                files: o.state.files.len(),
                attempts: o.state.attempts,
                ran: o.ran,
                on_cluster: o.ran && o.on_cluster,
            })
            .collect(),
        plan: run.plan,
        rows,
        snapshot_id,
        source_snapshot,
        upsert,
        seconds: run.started.elapsed().as_secs_f64(),
    })
}

/// What a commit landed: the snapshot, the rows written (or read, for an upsert), and what an upsert
/// did.
type Landed = (Option<i64>, u64, Option<UpsertReport>);

/// Commit every unit's files as one snapshot.
async fn commit_files(run: &Execution<'_>, outcomes: &[UnitOutcome]) -> Result<Landed> {
    let files = files_to_commit(&run.table, outcomes).await?;
    let rows: u64 = files.iter().map(|f| f.record_count()).sum();
    let snapshot_id = commit(run, files, outcomes.len()).await?;
    Ok((snapshot_id, rows, None))
}

/// Read the deletes query's keys at the units' instant, then upsert every unit's rows and delete
/// those keys as one snapshot.
async fn commit_upsert(
    run: &Execution<'_>,
    upsert: &UpsertRun,
    outcomes: &mut [UnitOutcome],
    snapshot: Option<&SourceSnapshot>,
) -> Result<Landed> {
    let app = format!("floe-ingest-deletes-run-{}", run.run_id);
    let deleted = changes::deleted_keys(upsert, run.source, &app, snapshot.map(|s| s.id.as_str())).await?;
    let rows: Vec<RecordBatch> = outcomes
        .iter_mut()
        .flat_map(|o| std::mem::take(&mut o.read.batches))
        .collect();
    let read: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
    let schema = match run.source {
        Source::Sql(_) => super::source::schema_of(run.columns),
        Source::Files(_) => run.table.arrow_schema()?,
    };
    let upsert_rows = changes::Upsert {
        rows,
        schema,
        deleted,
        write: commit_options(run, outcomes.len()),
    };
    let (snapshot_id, report) = changes::commit(run.floe, &run.table, upsert, upsert_rows).await?;
    Ok((snapshot_id, read, Some(report)))
}

/// Run the units not done yet, `parallel` at a time, all at one instant of the source (held until
/// the caller drops it): their outcomes in unit order, and the instant.
async fn run_units(
    run: &Execution<'_>,
    states: Vec<UnitState>,
) -> Result<(Vec<UnitOutcome>, Option<SourceSnapshot>)> {
    let snapshot = match run.source {
        Source::Sql(sql) if states.iter().any(|s| s.status != UnitStatus::Done) => {
            sql.export_snapshot(&format!("floe-ingest-snapshot-run-{}", run.run_id))
                .await?
        }
        _ => None,
    };
    let cluster = on_cluster(run)?;
    let unit = UnitRun {
        cluster: cluster.as_ref(),
        db: run.floe.database(),
        source: run.source,
        columns: run.columns,
        table: &run.table,
        run_id: &run.run_id,
        options: run.options,
        hold: run.upsert.is_some(),
        snapshot: snapshot.as_ref().map(|s| s.id.as_str()),
    };
    let mut outcomes: Vec<UnitOutcome> = futures::stream::iter(states.into_iter().map(|state| {
        let unit = &unit;
        async move {
            if state.status == UnitStatus::Done {
                return UnitOutcome {
                    state,
                    ran: false,
                    on_cluster: false,
                    read: UnitRows::default(),
                    error: None,
                };
            }
            unit.run(state).await
        }
    }))
    .buffer_unordered(run.options.parallel.max(1))
    .collect()
    .await;
    outcomes.sort_by_key(|o| o.state.unit.index);
    Ok((outcomes, snapshot))
}

/// The cluster the units run on: `--on-cluster`'s, for the units of a Postgres source that write
/// files (an upsert's rows are held by the driver; SQLite and files are read locally).
fn on_cluster(run: &Execution<'_>) -> Result<Option<crate::pipeline::BallistaEngine>> {
    let Some(url) = &run.options.on_cluster else {
        return Ok(None);
    };
    match run.source {
        Source::Sql(sql) if sql.database() == super::source::Database::Postgres && run.upsert.is_none() => {
            Ok(Some(crate::pipeline::BallistaEngine::new(
                url,
                run.floe.settings().clone(),
            )?))
        }
        _ => {
            tracing::warn!(
                "--on-cluster runs the units of a Postgres source that are appended or overwritten; \
                 these units run here"
            );
            Ok(None)
        }
    }
}

/// When a unit exhausted its retries: the run recorded as failed, and the error saying how to
/// resume it.
async fn refuse_failed_units(run: &Execution<'_>, outcomes: &[UnitOutcome]) -> Result<()> {
    let failed: Vec<&UnitOutcome> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    let Some(UnitOutcome {
        state,
        error: Some(e),
        ..
    }) = failed.first().copied()
    else {
        return Ok(());
    };
    let run_id = &run.run_id;
    let message = format!(
        "{} of {} units failed after their retries (first: unit {} ({}): {e}); nothing was committed; \
         `floe ingest --resume {run_id}` runs the units that are not done",
        failed.len(),
        outcomes.len(),
        state.unit.index,
        state.unit.describe()
    );
    record::finish_run(
        run.floe.database(),
        run_id,
        RunStatus::Failed,
        None,
        None,
        Some(message.clone()),
    )
    .await?;
    Err(Error::new(e.kind(), message))
}

/// Every unit's files: those written in this call as written, those of units done by an earlier call
/// described again from their footers.
async fn files_to_commit(table: &Table, outcomes: &[UnitOutcome]) -> Result<Vec<DataFile>> {
    let mut files: Vec<DataFile> = Vec::new();
    let mut earlier: Vec<FileToAdd> = Vec::new();
    for o in outcomes {
        if o.ran {
            files.extend(o.read.files.iter().cloned());
        } else {
            earlier.extend(o.state.files.iter().map(|uri| FileToAdd {
                uri: uri.clone(),
                partition: None,
            }));
        }
    }
    if !earlier.is_empty() {
        // Written by floe's writer, which sorted each unit's rows by the table's sort order.
        let order = table.metadata().default_sort_order_id() as i32;
        files.extend(crate::table::add_files::describe_files(table, earlier, order).await?);
    }
    Ok(files)
}

/// The run's lineage and properties, for its snapshot.
fn commit_options(run: &Execution<'_>, units: usize) -> WriteOptions {
    WriteOptions {
        lineage: Lineage {
            run_id: Some(run.run_id.clone()),
            stage: Some("ingest".into()),
            engine: None,
            inputs: BTreeMap::new(),
        },
        properties: BTreeMap::from([
            ("floe.source".to_string(), run.plan.source.clone()),
            ("floe.units".to_string(), units.to_string()),
        ]),
        ..Default::default()
    }
}

/// Commit `files` as one snapshot with the run's lineage.
async fn commit(run: &Execution<'_>, files: Vec<DataFile>, units: usize) -> Result<Option<i64>> {
    let name = run.table.name();
    let commit_options = commit_options(run, units);
    let mut tx = run.floe.transaction();
    tx.read_as(run.table.clone());
    match run.options.mode {
        IngestMode::Append => tx.append_files(name, files, &commit_options).await?,
        IngestMode::Overwrite => {
            tx.overwrite_files(name, None, files, &commit_options.into())
                .await?
        }
        IngestMode::Upsert(_) => return Err(Error::internal("an upsert run committing files")),
    }
    Ok(tx.commit().await?.first().and_then(|r| r.snapshot_id))
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

/// What every unit of one call shares.
struct UnitRun<'a> {
    /// The cluster each attempt runs on, when it runs on one.
    cluster: Option<&'a crate::pipeline::BallistaEngine>,
    db: &'a CatalogDatabase,
    source: &'a Source,
    columns: &'a [SourceColumn],
    table: &'a Table,
    run_id: &'a str,
    options: &'a IngestOptions,
    /// Hold the rows (upsert mode) rather than write them.
    hold: bool,
    /// The source's instant the units read at.
    snapshot: Option<&'a str>,
}

impl UnitRun<'_> {
    /// Run one unit to completion, retrying with backoff.
    async fn run(&self, mut state: UnitState) -> UnitOutcome {
        let on_cluster = self.cluster.is_some();
        let failed = |state, error| UnitOutcome {
            state,
            ran: true,
            on_cluster,
            read: UnitRows::default(),
            error: Some(error),
        };
        loop {
            state.attempts += 1;
            state.status = UnitStatus::Running;
            state.error = None;
            if let Err(e) = record::update_unit(self.db, self.run_id, &state).await {
                return failed(state, e);
            }
            match self.attempt(&state).await {
                Ok(read) => {
                    state.status = UnitStatus::Done;
                    state.rows = read.rows();
                    state.files = paths_of(&read.files);
                    return match record::update_unit(self.db, self.run_id, &state).await {
                        Ok(()) => UnitOutcome {
                            state,
                            ran: true,
                            on_cluster,
                            read,
                            error: None,
                        },
                        Err(e) => {
                            delete_quietly(self.table.storage(), paths_of(&read.files)).await;
                            failed(state, e)
                        }
                    };
                }
                Err(e) => {
                    tracing::warn!(run = self.run_id, unit = state.unit.index, attempt = state.attempts, error = %e, "unit failed");
                    state.status = UnitStatus::Failed;
                    state.error = Some(e.to_string());
                    let _ = record::update_unit(self.db, self.run_id, &state).await;
                    if state.attempts > self.options.unit_retries || e.kind() == ErrorKind::InvalidInput {
                        return failed(state, e);
                    }
                    let pause = Duration::from_millis(200 * (1u64 << state.attempts.min(6)));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// One attempt of a unit: stream its rows (at the source's instant) into new data files of the
    /// table (deleted again on error), or hold them.
    async fn attempt(&self, state: &UnitState) -> Result<UnitRows> {
        let app = application_name(self.run_id, state.unit.index, state.attempts);
        let table = self.table;
        if let (Some(cluster), Source::Sql(sql)) = (self.cluster, self.source) {
            let job = super::on_cluster::UnitJob {
                source: sql.portable(self.columns)?,
                bounds: state.unit.bounds.clone(),
                application: app.clone(),
                snapshot: self.snapshot.map(str::to_string),
                target: crate::pipeline::engine::cluster_write::WriteTarget::new(
                    table,
                    DEFAULT_TARGET_FILE_SIZE,
                ),
            };
            let batches = cluster.collect(job.plan()?).await?;
            let files = crate::pipeline::engine::cluster_write::collect_attempts(table, &batches)
                .await?
                .files;
            let read = UnitRows {
                files,
                batches: Vec::new(),
            };
            return self.verified(state, &app, read).await;
        }
        let batches = match (self.source, &state.unit.bounds) {
            (Source::Sql(sql), bounds) => sql.extract(self.columns, bounds, &app, self.snapshot).await?,
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
        let read = self.keep(batches).await?;
        self.verified(state, &app, read).await
    }

    /// `read`, when `--verify` counts the same rows at the source (else its files are deleted).
    async fn verified(&self, state: &UnitState, app: &str, read: UnitRows) -> Result<UnitRows> {
        if self.options.verify {
            if let Err(e) = self.verify(state, app, read.rows()).await {
                delete_quietly(self.table.storage(), paths_of(&read.files)).await;
                return Err(e);
            }
        }
        Ok(read)
    }

    /// A unit's rows written into data files of the table, or held.
    async fn keep(&self, batches: SourceRows) -> Result<UnitRows> {
        if self.hold {
            return Ok(UnitRows {
                files: Vec::new(),
                batches: batches.try_collect().await?,
            });
        }
        let files =
            crate::table::writer::write_batches(self.table, batches, DEFAULT_TARGET_FILE_SIZE).await?;
        Ok(UnitRows {
            files,
            batches: Vec::new(),
        })
    }

    /// Count the unit's range at the source again (at the run's instant) and require the rows
    /// written (or held).
    async fn verify(&self, state: &UnitState, app: &str, written: u64) -> Result<()> {
        let Source::Sql(sql) = self.source else {
            return Ok(());
        };
        let counted = sql
            .count_at(&state.unit.bounds, &format!("{app}-verify"), self.snapshot)
            .await?;
        if counted != written {
            return Err(Error::new(
                ErrorKind::Data,
                format!(
                    "unit {} wrote {written} rows but the source counts {counted} in its range",
                    state.unit.index
                ),
            ));
        }
        Ok(())
    }
}
