//! The stage runner. For each engine it starts the engine's branch of every table from `main`,
//! then runs the stages in order ([`stage`]: pin, reuse, produce, check, commit), and at the end
//! publishes a single engine's branch, or checks two engines' outputs for equivalence and publishes
//! them when equal ([`equivalence`]). [`choose`] picks the engine for `--engine auto`.

pub mod choose;
pub mod equivalence;
mod produce;
mod stage;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::engine::{Engine, Stage};
use super::ledger::{self, LedgerEntry, LedgerStatus};
use super::tables::{self, GEOIP};
use crate::catalog::{Namespace, TableName};
use crate::error::{Error, ErrorKind, Result};
use crate::lakehouse::Floe;
use crate::table::{At, ExpectedHead, Table, WriteOptions};

pub use choose::{available_memory, choose_engine, engines_named, input_bytes};
pub use equivalence::{verify, Equivalence};

/// Called when a stage starts (with `None`) and ends (with its report).
pub type Progress = Arc<dyn Fn(Stage, &str, Option<&StageReport>) + Send + Sync>;

/// What to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Namespace of the pipeline's tables.
    pub namespace: Namespace,
    /// Input files for `ingest`: a file, a directory or a glob, local or S3.
    pub input: Option<String>,
    /// Engines; each writes to its own branch of every output table.
    pub engines: Vec<Arc<dyn Engine>>,
    /// Stages, in pipeline order.
    pub stages: Vec<Stage>,
    /// Run stages even when the ledger holds an identical earlier run.
    pub force: bool,
    /// Fast-forward `main` of every output table to the engine's branch at the end (single-engine
    /// runs).
    pub publish: bool,
    /// Why the engine was chosen (`--engine auto`), recorded in every snapshot's summary as
    /// `floe.engine-reason`.
    pub engine_reason: Option<String>,
    /// Called when a stage starts (`None`) and when it ends (`Some(report)`).
    pub progress: Option<Progress>,
}

impl RunOptions {
    /// Every stage of the pipeline in `namespace`, reading `input`, on `engines`: one engine
    /// publishes its branch at the end, two are checked for equivalence (and published if equal).
    pub fn new(namespace: Namespace, input: Option<String>, engines: Vec<Arc<dyn Engine>>) -> Self {
        let publish = engines.len() == 1;
        Self {
            namespace,
            input,
            engines,
            stages: Stage::ALL.to_vec(),
            force: false,
            publish,
            engine_reason: None,
            progress: None,
        }
    }
}

/// What one stage of one engine did.
#[derive(Clone, Debug, Serialize)]
pub struct StageReport {
    /// The stage.
    pub stage: String,
    /// The engine.
    pub engine: String,
    /// `succeeded` or `reused`.
    pub status: String,
    /// Rows read.
    pub rows_in: u64,
    /// Rows written per output table.
    pub rows_out: BTreeMap<String, u64>,
    /// Rejects by reason.
    pub rejects: BTreeMap<String, u64>,
    /// Snapshot committed per output table.
    pub snapshots: BTreeMap<String, i64>,
    /// Wall time.
    pub seconds: f64,
    /// CPU time (user + system, all threads of the process).
    pub cpu_seconds: f64,
    /// Peak resident memory of the process during the stage.
    pub peak_memory_bytes: Option<u64>,
    /// Bytes read: the input files (`ingest`) or the data files of the pinned input snapshots.
    pub bytes_read: u64,
    /// Bytes of data files written.
    pub bytes_written: u64,
    /// Time spent committing the outputs (manifests, manifest list, metadata, catalog swap).
    pub commit_seconds: f64,
    /// Bytes the driver received from a cluster whose executors wrote the outputs themselves (the
    /// Arrow IPC size of the files' entries they returned); absent where the driver wrote them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_bytes_received: Option<u64>,
    /// Where the wall time went, in seconds per phase: `pin` (loading the tables, pinning the inputs,
    /// the reuse check), `engine` (the engine's queries and the writing of their outputs), `describe`
    /// (reading the footers of files an engine wrote itself), `check` (that no row was lost and the
    /// sums hold), `commit`, and `record` (the run ledger, written after [`Self::seconds`] is taken).
    /// Empty for a reused stage.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub phase_seconds: BTreeMap<String, f64>,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// The run's id.
    pub run_id: String,
    /// Per stage and engine.
    pub stages: Vec<StageReport>,
    /// With two engines: whether their outputs are equal, table by table.
    pub equivalence: Option<Equivalence>,
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// Run the pipeline.
pub async fn run(floe: &Floe, options: &RunOptions) -> Result<RunReport> {
    if options.engines.is_empty() {
        return Err(Error::invalid("no engine to run"));
    }
    for engine in &options.engines {
        engine.check().await?;
    }
    let run_id = uuid::Uuid::now_v7().to_string();
    let ns = &options.namespace;
    tables::ensure_tables(floe, ns).await?;
    load_geoip(floe, ns).await?;
    let mut report = RunReport {
        run_id: run_id.clone(),
        stages: Vec::new(),
        equivalence: None,
    };
    for engine in &options.engines {
        let branch = engine.name();
        start_branches(floe, ns, branch, &options.stages).await?;
        for stage in &options.stages {
            if let Some(p) = &options.progress {
                p(*stage, branch, None);
            }
            let r = stage::run_stage(floe, options, &run_id, engine.as_ref(), *stage)
                .await
                .map_err(|e| e.context(format!("stage {stage} on {branch} failed (run {run_id})")))?;
            if let Some(p) = &options.progress {
                p(*stage, branch, Some(&r));
            }
            report.stages.push(r);
        }
        if options.publish && options.engines.len() == 1 {
            equivalence::publish(floe, ns, branch, &options.stages).await?;
        }
    }
    if let [a, others @ ..] = options.engines.as_slice() {
        if others.is_empty() {
            return Ok(report);
        }
        let mut tables: Vec<&str> = options.stages.iter().flat_map(|s| s.outputs()).copied().collect();
        let mut seen = std::collections::HashSet::new();
        tables.retain(|t| seen.insert(*t));
        let branch_of = |t: &Table, e: &str| {
            Ok(At::Snapshot(t.find_ref(e).map(|r| r.snapshot_id).ok_or_else(
                || Error::not_found(format!("{} has no branch {e}", t.name())),
            )?))
        };
        // Every other engine against the first: all must be equal.
        let mut eq = equivalence::check(floe, ns, a.name(), others[0].name(), &tables, branch_of).await?;
        for b in &others[1..] {
            let more = equivalence::check(floe, ns, a.name(), b.name(), &tables, branch_of).await?;
            eq.equal &= more.equal;
            eq.tables.extend(more.tables);
            eq.engines.1 = format!("{},{}", eq.engines.1, b.name());
        }
        let mut verdicts = BTreeMap::new();
        if eq.equal {
            let tag = format!("verified-{run_id}");
            // The verdict of each table: its first report (every comparison of it was equal).
            let first: Equivalence = Equivalence {
                tables: eq.tables.iter().take(tables.len()).cloned().collect(),
                ..eq.clone()
            };
            verdicts =
                equivalence::record_and_publish(floe, ns, &tables, &run_id, a.name(), &first, &tag).await?;
            eq.tag = Some(tag);
        }
        let mut entry = LedgerEntry {
            run_id: run_id.clone(),
            pipeline: "clickstream".to_string(),
            stage: "equivalence".to_string(),
            engine: format!("{}={}", a.name(), eq.engines.1),
            fingerprint: String::new(),
            status: if eq.equal {
                LedgerStatus::Equal
            } else {
                LedgerStatus::Different
            }
            .to_string(),
            started_at: now(),
            ended_at: Some(now()),
            output_snapshots: verdicts,
            ..Default::default()
        };
        for d in &eq.tables {
            entry.rows_out.insert(d.left.clone(), d.left_rows);
            if !d.equal {
                entry
                    .rejects
                    .insert(d.left.clone(), d.added + d.removed + d.changed);
            }
        }
        ledger::record(floe.database(), &entry).await?;
        report.equivalence = Some(eq);
    }
    Ok(report)
}

/// Start the engine's branch of every table the stages read or write from `main`, unless it is
/// already ahead of `main` (then it holds this engine's unpublished outputs): a missing branch is
/// created at `main`'s head, one that diverged from `main` (another engine published since) is moved
/// there. Publishing at the end is then a fast-forward. One transaction, each move a
/// compare-and-swap of the branch.
async fn start_branches(floe: &Floe, ns: &Namespace, branch: &str, stages: &[Stage]) -> Result<()> {
    let mut touched: Vec<&str> = stages
        .iter()
        .flat_map(|s| s.inputs().iter().chain(s.outputs()))
        .copied()
        .collect();
    touched.sort();
    touched.dedup();
    let mut tx = floe.transaction();
    let mut any = false;
    for t in touched.into_iter().filter(|t| *t != GEOIP) {
        let name = TableName::new(ns.clone(), t)?;
        let table = tx.table(&name).await?;
        let main = table.current_snapshot().map(|s| s.snapshot_id());
        let head = table.find_ref(branch).map(|r| r.snapshot_id);
        let ahead = match (main, head) {
            (None, _) => head.is_some(),
            (Some(m), Some(h)) => table.is_ancestor(m, h),
            (Some(_), None) => false,
        };
        if !ahead && head != main {
            tx.reset_branch(&name, branch, main).await?;
            any = true;
        }
    }
    if any {
        tx.commit().await?;
    }
    Ok(())
}

/// The `geoip` table, from the fixture built into the binary, on its first use.
async fn load_geoip(floe: &Floe, ns: &Namespace) -> Result<()> {
    let name = TableName::new(ns.clone(), GEOIP)?;
    if floe.load_table(&name).await?.current_snapshot().is_some() {
        return Ok(());
    }
    let batch = crate::generate::geoip_batch()?;
    let options = WriteOptions {
        expected_head: ExpectedHead::NoSnapshot,
        ..Default::default()
    };
    match floe
        .append(&name, futures::stream::iter([Ok(batch)]), &options)
        .await
    {
        Err(e) if e.kind() == ErrorKind::Conflict => Ok(()), // another run loaded it first
        other => other.map(|_| ()),
    }
}

/// A stage's data volume and commit time.
#[derive(Default)]
pub(crate) struct StageIo {
    pub(crate) bytes_read: u64,
    pub(crate) bytes_written: u64,
    pub(crate) commit_seconds: f64,
    pub(crate) driver_bytes_received: Option<u64>,
    pub(crate) phase_seconds: BTreeMap<String, f64>,
}

impl StageIo {
    /// Add the time since `since` to `phase` ([`StageReport::phase_seconds`]).
    pub(crate) fn time(&mut self, phase: &str, since: std::time::Instant) {
        *self.phase_seconds.entry(phase.to_string()).or_default() += since.elapsed().as_secs_f64();
    }
}

pub(crate) fn report_of(e: &LedgerEntry, usage: crate::resources::Usage, io: StageIo) -> StageReport {
    StageReport {
        stage: e.stage.clone(),
        engine: e.engine.clone(),
        status: e.status.clone(),
        rows_in: e.rows_in,
        rows_out: e.rows_out.clone(),
        rejects: e.rejects.clone(),
        snapshots: e.output_snapshots.clone(),
        seconds: usage.wall_seconds,
        cpu_seconds: usage.cpu_seconds,
        peak_memory_bytes: e.peak_memory_bytes,
        bytes_read: io.bytes_read,
        bytes_written: io.bytes_written,
        commit_seconds: io.commit_seconds,
        driver_bytes_received: io.driver_bytes_received,
        phase_seconds: io.phase_seconds,
    }
}
