//! The stage runner. For each engine and stage it pins the inputs (the head of the engine's branch of
//! each input table, `geoip` at `main`), looks for an earlier identical run in the ledger, asks the
//! engine for the outputs, writes them as data files, commits each output table as one snapshot on
//! the engine's branch with lineage, and records the outcome. A failing stage commits nothing (or
//! moves back what it committed) and deletes the files it wrote.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, RecordBatch, StringArray};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::engine::{Engine, PinnedTable, Rows, Stage};
use super::input::{read_input, resolve_inputs, InputBatch};
use super::ledger::{self, LedgerEntry};
use super::tables::{self, GEOIP, REJECTED_EVENTS};
use crate::catalog::{Namespace, TableName};
use crate::error::{Error, ErrorKind, Result};
use crate::lakehouse::Floe;
use crate::resources::Monitor;
use crate::table::commit::{commit, delete_quietly, file_paths, Change};
use crate::table::{At, CommitOptions, Lineage, RowFilter, Table};

/// Bumped when the pipeline's rules change, so earlier ledger rows are not reused.
const PIPELINE_VERSION: &str = "clickstream-1";

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

/// Which engine `--engine auto` takes for `input_bytes` of input with `available_memory` bytes free,
/// and why. From `floe bench` on this project's 2-core machine (3 repetitions, SQLite + local disk):
/// DataFusion was faster end to end at 10 MB (0.63 s vs 0.85 s) and at 1 GB of CSV (58 s vs 72 s),
/// a tie at 100 MB; it wins cleanse and enrich, DuckDB wins sessionize (17 s vs 21 s at 1 GB), and
/// both peak at about 2.1 GB at 1 GB. DuckDB is kept for inputs beyond a quarter of the free memory,
/// outside the measured range, where its out-of-core window and sort operators are the safer bet.
pub fn choose_engine(input_bytes: u64, available_memory: u64) -> (&'static str, String) {
    let mb = |b: u64| b as f64 / 1e6;
    if input_bytes.saturating_mul(4) <= available_memory {
        (
            "datafusion",
            format!(
                "input {:.0} MB is under a quarter of the {:.0} MB available; DataFusion measured faster end to end \
                 from 10 MB to 1 GB (floe bench)",
                mb(input_bytes),
                mb(available_memory)
            ),
        )
    } else {
        (
            "duckdb",
            format!(
                "input {:.0} MB exceeds a quarter of the {:.0} MB available; DuckDB spills out of core",
                mb(input_bytes),
                mb(available_memory)
            ),
        )
    }
}

/// The bytes a run would read: the input files, or else the `raw_events` table at `main`.
pub async fn input_bytes(floe: &Floe, ns: &Namespace, input: Option<&str>) -> Result<u64> {
    if let Some(input) = input {
        return Ok(resolve_inputs(floe.storage(), input)
            .await?
            .iter()
            .map(|f| f.size)
            .sum());
    }
    let name = TableName::new(ns.clone(), tables::RAW_EVENTS)?;
    Ok(match floe.load_table(&name).await {
        Ok(t) => t
            .current_snapshot()
            .and_then(|s| s.summary().additional_properties.get("total-files-size").cloned())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        Err(e) if e.kind() == ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    })
}

/// Free memory as the kernel estimates it (`MemAvailable`).
pub fn available_memory() -> u64 {
    crate::resources::meminfo_bytes("MemAvailable").unwrap_or(4 << 30)
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

/// The equivalence check of a two-engine run: every output table of every stage diffed between
/// the two engines' branches.
#[derive(Clone, Debug, Serialize)]
pub struct Equivalence {
    /// All equal.
    pub equal: bool,
    /// The engines compared (left, right).
    pub engines: (String, String),
    /// Per output table, in stage order.
    pub tables: Vec<crate::diff::DiffReport>,
    /// The tag set on every published table when all were equal.
    pub tag: Option<String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// Run the pipeline.
pub async fn run(floe: &Floe, options: &RunOptions) -> Result<RunReport> {
    if options.engines.is_empty() {
        return Err(Error::invalid("no engine to run"));
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
            let r = run_stage(floe, options, &run_id, engine.as_ref(), *stage)
                .await
                .map_err(|e| e.context(format!("stage {stage} on {branch} failed (run {run_id})")))?;
            if let Some(p) = &options.progress {
                p(*stage, branch, Some(&r));
            }
            report.stages.push(r);
        }
        if options.publish && options.engines.len() == 1 {
            publish(floe, ns, branch, &options.stages, None).await?;
        }
    }
    if let [a, b] = options.engines.as_slice() {
        let mut tables: Vec<&str> = options.stages.iter().flat_map(|s| s.outputs()).copied().collect();
        let mut seen = std::collections::HashSet::new();
        tables.retain(|t| seen.insert(*t));
        let mut eq = check(floe, ns, a.name(), b.name(), &tables, |t: &Table, e: &str| {
            Ok(At::Snapshot(t.find_ref(e).map(|r| r.snapshot_id).ok_or_else(
                || Error::not_found(format!("{} has no branch {e}", t.name())),
            )?))
        })
        .await?;
        let mut verdicts = BTreeMap::new();
        if eq.equal {
            verdicts = record_verdict(floe, ns, &tables, &run_id, a.name(), &eq).await?;
            let tag = format!("verified-{run_id}");
            publish(floe, ns, a.name(), &options.stages, Some(&tag)).await?;
            eq.tag = Some(tag);
        }
        let mut entry = LedgerEntry {
            run_id: run_id.clone(),
            pipeline: "clickstream".to_string(),
            stage: "equivalence".to_string(),
            engine: format!("{}={}", a.name(), b.name()),
            fingerprint: String::new(),
            status: if eq.equal { "equal" } else { "different" }.to_string(),
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
        ledger::record(floe.catalog(), &entry).await?;
        report.equivalence = Some(eq);
    }
    Ok(report)
}

/// `floe.stage` of the snapshots that record an equivalence verdict.
const VERDICT_STAGE: &str = "equivalence";

/// The snapshot whose data `id` holds: `id` itself, or for a verdict snapshot (which changes no
/// data) its nearest ancestor that is not one.
fn data_snapshot(table: &Table, id: i64) -> i64 {
    let mut cur = id;
    while let Some(s) = table.metadata().snapshot_by_id(cur) {
        let verdict = s
            .summary()
            .additional_properties
            .get("floe.stage")
            .map(String::as_str)
            == Some(VERDICT_STAGE);
        match (verdict, s.parent_snapshot_id()) {
            (true, Some(parent)) => cur = parent,
            _ => break,
        }
    }
    cur
}

/// Record an equal verdict in the snapshot that will be published: on `branch` of every compared
/// table, a snapshot that changes no data and carries the verdict in its summary
/// (`floe.equivalence`, `floe.equivalence.compared`, `floe.equivalence.decided-by`). Returns the
/// verdict snapshot per table.
async fn record_verdict(
    floe: &Floe,
    ns: &Namespace,
    tables: &[&str],
    run_id: &str,
    branch: &str,
    eq: &Equivalence,
) -> Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    // `eq.tables` holds one report per table of `tables`, in that order.
    for (t, d) in tables.iter().zip(&eq.tables) {
        let name = TableName::new(ns.clone(), *t)?;
        let table = floe.load_table(&name).await?;
        let head = table.find_ref(branch).map(|r| r.snapshot_id);
        if head.is_none() {
            continue;
        }
        let properties = BTreeMap::from([
            ("floe.equivalence".to_string(), "equal".to_string()),
            (
                "floe.equivalence.engines".to_string(),
                format!("{}={}", eq.engines.0, eq.engines.1),
            ),
            (
                "floe.equivalence.compared".to_string(),
                format!("{} = {}", d.left, d.right),
            ),
            (
                "floe.equivalence.decided-by".to_string(),
                format!("{:?}", d.decided_by).to_lowercase(),
            ),
        ]);
        let options = CommitOptions {
            branch: branch.to_string(),
            lineage: Lineage {
                run_id: Some(run_id.to_string()),
                stage: Some(VERDICT_STAGE.to_string()),
                engine: Some(format!("{}={}", eq.engines.0, eq.engines.1)),
                inputs: BTreeMap::new(),
            },
            properties,
            expected_head: Some(head),
            ..Default::default()
        };
        let r = commit(floe, &name, Change::Append { files: Vec::new() }, &options, None).await?;
        if let Some(id) = r.snapshot_id {
            out.insert(name.name().to_string(), id);
        }
    }
    Ok(out)
}

/// Fast-forward `main` of every output table of `stages` to `branch` (and tag the result).
async fn publish(
    floe: &Floe,
    ns: &Namespace,
    branch: &str,
    stages: &[Stage],
    tag: Option<&str>,
) -> Result<()> {
    for t in stages.iter().flat_map(|s| s.outputs()) {
        let name = TableName::new(ns.clone(), *t)?;
        let table = floe.load_table(&name).await?;
        let head = table.find_ref(branch).map(|r| r.snapshot_id);
        if head.is_some() && head != table.current_snapshot().map(|s| s.snapshot_id()) {
            floe.publish(&name, branch).await?;
        }
        if let (Some(tag), Some(_)) = (tag, head) {
            if floe.load_table(&name).await?.find_ref(tag).is_none() {
                floe.create_tag(&name, tag, &At::Current).await?;
            }
        }
    }
    Ok(())
}

/// Diff every table between the states `at` gives for engines `a` and `b`.
async fn check(
    floe: &Floe,
    ns: &Namespace,
    a: &str,
    b: &str,
    tables: &[&str],
    at: impl Fn(&Table, &str) -> Result<At>,
) -> Result<Equivalence> {
    let mut out = Equivalence {
        equal: true,
        engines: (a.to_string(), b.to_string()),
        tables: Vec::new(),
        tag: None,
    };
    let mut seen = std::collections::HashSet::new();
    for t in tables {
        if !seen.insert(*t) {
            continue;
        }
        let name = TableName::new(ns.clone(), *t)?;
        let table = floe.load_table(&name).await?;
        let left = crate::diff::DiffSide {
            table: name.clone(),
            at: at(&table, a)?,
        };
        let right = crate::diff::DiffSide {
            table: name,
            at: at(&table, b)?,
        };
        let d = crate::diff::diff(floe, &left, &right, &crate::diff::DiffOptions::default()).await?;
        out.equal &= d.equal;
        out.tables.push(d);
    }
    Ok(out)
}

/// Re-check a recorded two-engine run: diff the snapshots each engine committed (or reused) for
/// every output table.
pub async fn verify(floe: &Floe, ns: &Namespace, run_id: &str) -> Result<Equivalence> {
    let entries: Vec<LedgerEntry> = ledger::list(floe.catalog(), 10_000)
        .await?
        .into_iter()
        .filter(|e| e.run_id == run_id && e.stage != "equivalence" && e.status != "failed")
        .collect();
    let mut engines: Vec<String> = entries.iter().map(|e| e.engine.clone()).collect();
    engines.sort();
    engines.dedup();
    let [a, b] = engines.as_slice() else {
        return Err(Error::not_found(format!(
            "run {run_id} is not a recorded two-engine run (engines found: {engines:?})"
        )));
    };
    // The last snapshot each engine committed per table in this run.
    let mut snaps: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut tables: Vec<String> = Vec::new();
    let mut ordered = entries.clone();
    ordered.sort_by(|x, y| x.started_at.cmp(&y.started_at));
    for e in &ordered {
        for (t, id) in &e.output_snapshots {
            snaps.insert((e.engine.clone(), t.clone()), *id);
            if !tables.contains(t) {
                tables.push(t.clone());
            }
        }
    }
    let tables: Vec<&str> = tables.iter().map(String::as_str).collect();
    check(floe, ns, a, b, &tables, |t: &Table, e: &str| {
        snaps
            .get(&(e.to_string(), t.name().name().to_string()))
            .map(|id| At::Snapshot(*id))
            .ok_or_else(|| Error::not_found(format!("run {run_id} recorded no {e} snapshot of {}", t.name())))
    })
    .await
}

/// Start the engine's branch of every table the stages read or write from `main`, unless it is
/// already ahead of `main` (then it holds this engine's unpublished outputs): a missing branch is
/// created at `main`'s head, one that diverged from `main` (another engine published since) is moved
/// there. Publishing at the end is then a fast-forward.
async fn start_branches(floe: &Floe, ns: &Namespace, branch: &str, stages: &[Stage]) -> Result<()> {
    let mut touched: Vec<&str> = stages
        .iter()
        .flat_map(|s| s.inputs().iter().chain(s.outputs()))
        .copied()
        .collect();
    touched.sort();
    touched.dedup();
    for t in touched.into_iter().filter(|t| *t != GEOIP) {
        let name = TableName::new(ns.clone(), t)?;
        let table = floe.load_table(&name).await?;
        let main = table.current_snapshot().map(|s| s.snapshot_id());
        let head = table.find_ref(branch).map(|r| r.snapshot_id);
        let ahead = match (main, head) {
            (None, _) => head.is_some(),
            (Some(m), Some(h)) => table.is_ancestor(m, h),
            (Some(_), None) => false,
        };
        if !ahead && head != main {
            floe.reset_branch(&name, branch, main).await?;
        }
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
    let options = CommitOptions {
        expected_head: Some(None),
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

/// A stage's pinned state: inputs at their snapshots, input files, and the heads of its outputs
/// (commits are refused if those move meanwhile).
struct Pins {
    pinned: BTreeMap<&'static str, PinnedTable>,
    input_snapshots: BTreeMap<String, Option<i64>>,
    files: Vec<super::input::InputFile>,
    heads: BTreeMap<&'static str, Option<i64>>,
}

async fn pin(floe: &Floe, options: &RunOptions, branch: &str, stage: Stage) -> Result<Pins> {
    let ns = &options.namespace;
    let mut pinned = BTreeMap::new();
    let mut input_snapshots = BTreeMap::new();
    for t in stage.inputs() {
        let table = floe.load_table(&TableName::new(ns.clone(), *t)?).await?;
        let at = if *t == GEOIP { "main" } else { branch };
        let snapshot_id = table.metadata().snapshot_for_ref(at).map(|s| s.snapshot_id());
        // The verdict snapshot of an equivalence check changes no data: the input is its parent's.
        input_snapshots.insert(
            format!("{ns}.{t}"),
            snapshot_id.map(|id| data_snapshot(&table, id)),
        );
        pinned.insert(*t, PinnedTable { table, snapshot_id });
    }
    let mut files = Vec::new();
    if stage == Stage::Ingest {
        let input = options
            .input
            .as_deref()
            .ok_or_else(|| Error::invalid("ingest needs an input (a file, a directory or a glob)"))?;
        files = resolve_inputs(floe.storage(), input).await?;
        for f in &files {
            input_snapshots.insert(f.uri.clone(), Some(f.size as i64));
        }
    }
    let mut heads = BTreeMap::new();
    for t in stage.outputs() {
        let table = floe.load_table(&TableName::new(ns.clone(), *t)?).await?;
        heads.insert(
            *t,
            table.metadata().snapshot_for_ref(branch).map(|s| s.snapshot_id()),
        );
    }
    Ok(Pins {
        pinned,
        input_snapshots,
        files,
        heads,
    })
}

fn fingerprint(parts: &[String]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Output table → files written but not yet committed.
type Written = Vec<(&'static str, Vec<iceberg::spec::DataFile>)>;

async fn run_stage(
    floe: &Floe,
    options: &RunOptions,
    run_id: &str,
    engine: &dyn Engine,
    stage: Stage,
) -> Result<StageReport> {
    let ns = &options.namespace;
    let branch = engine.name();
    let started_at = now();
    let monitor = Monitor::start();

    let base_entry = LedgerEntry {
        run_id: run_id.to_string(),
        pipeline: "clickstream".to_string(),
        stage: stage.to_string(),
        engine: branch.to_string(),
        status: "succeeded".to_string(),
        started_at,
        ..Default::default()
    };
    let Pins {
        pinned,
        input_snapshots,
        files,
        heads,
    } = match pin(floe, options, branch, stage).await {
        Ok(p) => p,
        Err(e) => return Err(fail(floe, base_entry, e).await),
    };
    let mut parts = vec![
        PIPELINE_VERSION.to_string(),
        stage.to_string(),
        branch.to_string(),
        ns.to_string(),
    ];
    parts.extend(input_snapshots.iter().map(|(k, v)| format!("{k}={v:?}")));
    let fingerprint = fingerprint(&parts);

    let mut entry = LedgerEntry {
        fingerprint: fingerprint.clone(),
        input_snapshots,
        ..base_entry
    };

    // An identical earlier run whose outputs are still the branch heads: reuse it.
    if !options.force {
        if let Some(prev) = ledger::find_succeeded(floe.catalog(), &fingerprint).await? {
            if outputs_still_current(floe, ns, branch, stage, &prev).await? {
                entry.status = "reused".to_string();
                entry.output_snapshots = prev.output_snapshots.clone();
                entry.rows_in = prev.rows_in;
                entry.rows_out = prev.rows_out.clone();
                entry.rejects = prev.rejects.clone();
                entry.ended_at = Some(now());
                ledger::record(floe.catalog(), &entry).await?;
                return Ok(report_of(&entry, monitor.finish(), StageIo::default()));
            }
        }
    }

    let mut io = StageIo {
        bytes_read: if stage == Stage::Ingest {
            files.iter().map(|f| f.size).sum()
        } else {
            pinned
                .values()
                .filter_map(|p| {
                    p.snapshot_id
                        .and_then(|id| p.table.metadata().snapshot_by_id(id))
                        .and_then(|s| s.summary().additional_properties.get("total-files-size").cloned())
                        .and_then(|v| v.parse::<u64>().ok())
                })
                .sum()
        },
        ..Default::default()
    };
    let rejects: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut written: Written = Vec::new();
    let outcome = produce(floe, ns, engine, stage, &pinned, &files, &rejects, &mut written).await;
    let rows_in = match outcome {
        Ok(rows_in) => rows_in,
        Err(e) => {
            for (_, f) in &written {
                delete_quietly(floe.storage(), file_paths(f)).await;
            }
            return Err(fail(floe, entry, e).await);
        }
    };
    entry.rows_in = rows_in;
    entry.rejects = rejects.lock().expect("reject counts").clone();
    for (t, f) in &written {
        entry
            .rows_out
            .insert(t.to_string(), f.iter().map(|f| f.record_count()).sum());
        io.bytes_written += f.iter().map(|f| f.file_size_in_bytes()).sum::<u64>();
    }
    let committing = std::time::Instant::now();

    // Commit each output as one snapshot on the engine's branch; undo on failure.
    let mut lineage_inputs = BTreeMap::new();
    for (k, v) in &entry.input_snapshots {
        if let (Some(id), false) = (v, k.contains("://")) {
            lineage_inputs.insert(k.clone(), *id);
        }
    }
    let lineage = Lineage {
        run_id: Some(run_id.to_string()),
        stage: Some(stage.to_string()),
        engine: Some(branch.to_string()),
        inputs: lineage_inputs,
    };
    let mut committed: Vec<&'static str> = Vec::new();
    let mut pending = written.into_iter();
    while let Some((t, data)) = pending.next() {
        let name = TableName::new(ns.clone(), t)?;
        let filter = (t == REJECTED_EVENTS && stage != Stage::Ingest)
            .then(|| RowFilter::sql(format!("stage = '{stage}'")));
        let options = CommitOptions {
            branch: branch.to_string(),
            lineage: lineage.clone(),
            properties: options
                .engine_reason
                .iter()
                .map(|r| ("floe.engine-reason".to_string(), r.clone()))
                .collect(),
            expected_head: Some(heads[t]),
            ..Default::default()
        };
        match commit(
            floe,
            &name,
            Change::Overwrite { filter, files: data },
            &options,
            None,
        )
        .await
        {
            Ok(r) => {
                committed.push(t);
                entry
                    .output_snapshots
                    .insert(t.to_string(), r.snapshot_id.expect("overwrite makes a snapshot"));
            }
            Err(e) => {
                for (_, rest) in pending {
                    delete_quietly(floe.storage(), file_paths(&rest)).await;
                }
                for t in committed {
                    let _ = floe
                        .reset_branch(&TableName::new(ns.clone(), t)?, branch, heads[t])
                        .await;
                }
                entry.output_snapshots.clear();
                return Err(fail(floe, entry, e).await);
            }
        }
    }
    io.commit_seconds = committing.elapsed().as_secs_f64();
    let usage = monitor.finish();
    entry.peak_memory_bytes = Some(usage.peak_memory_bytes);
    entry.ended_at = Some(now());
    ledger::record(floe.catalog(), &entry).await?;
    Ok(report_of(&entry, usage, io))
}

/// Whether the outputs an earlier run of `stage` committed are still what the branch holds: each is
/// the branch head, or an ancestor of it with only later stages' commits after it (`cleanse` adds to
/// the `rejected_events` that `ingest` wrote).
async fn outputs_still_current(
    floe: &Floe,
    ns: &Namespace,
    branch: &str,
    stage: Stage,
    prev: &LedgerEntry,
) -> Result<bool> {
    for t in stage.outputs() {
        let Some(recorded) = prev.output_snapshots.get(*t).copied() else {
            return Ok(false);
        };
        let table = floe.load_table(&TableName::new(ns.clone(), *t)?).await?;
        let mut cur = table.metadata().snapshot_for_ref(branch).cloned();
        loop {
            match cur {
                None => return Ok(false),
                Some(s) if s.snapshot_id() == recorded => break,
                Some(s) => {
                    let by = s
                        .summary()
                        .additional_properties
                        .get("floe.stage")
                        .cloned()
                        .unwrap_or_default();
                    let later =
                        by == VERDICT_STAGE || Stage::ALL.iter().any(|x| x.name() == by && *x > stage);
                    if !later {
                        return Ok(false);
                    }
                    cur = s
                        .parent_snapshot_id()
                        .and_then(|p| table.metadata().snapshot_by_id(p).cloned());
                }
            }
        }
    }
    Ok(true)
}

async fn fail(floe: &Floe, mut entry: LedgerEntry, e: Error) -> Error {
    entry.status = "failed".to_string();
    entry.error = Some(e.to_string());
    entry.ended_at = Some(now());
    if let Err(le) = ledger::record(floe.catalog(), &entry).await {
        tracing::warn!(error = %le, "could not record the failed stage");
    }
    e
}

/// A stage's data volume and commit time.
#[derive(Default)]
struct StageIo {
    bytes_read: u64,
    bytes_written: u64,
    commit_seconds: f64,
}

fn report_of(e: &LedgerEntry, usage: crate::resources::Usage, io: StageIo) -> StageReport {
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
    }
}

/// Count rejects by reason as they stream past.
fn counted(rows: Rows, counts: Arc<Mutex<BTreeMap<String, u64>>>) -> Rows {
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

/// Record `files` written for `table`: one entry per table, committed as one snapshot.
fn add_written(written: &mut Written, table: &'static str, files: Vec<iceberg::spec::DataFile>) {
    match written.iter_mut().find(|(t, _)| *t == table) {
        Some((_, f)) => f.extend(files),
        None => written.push((table, files)),
    }
}

/// What ingesting one file wrote (also when it failed: the files are then for cleanup).
struct FileIngest {
    records: u64,
    malformed: u64,
    raw: Vec<iceberg::spec::DataFile>,
    rejected: Vec<iceberg::spec::DataFile>,
    result: Result<()>,
}

/// Parse one input file into data files of `raw_events` and (malformed records) `rejected_events`.
async fn ingest_file(
    storage: &crate::storage::ObjectStorage,
    file: &super::input::InputFile,
    raw_table: &Table,
    rej_table: &Table,
    target_file_size: usize,
) -> FileIngest {
    let mut out = FileIngest {
        records: 0,
        malformed: 0,
        raw: Vec::new(),
        rejected: Vec::new(),
        result: Ok(()),
    };
    let writers = crate::table::writer::ParallelWriter::new(raw_table, target_file_size).and_then(|raw| {
        Ok((
            raw,
            crate::table::writer::ParallelWriter::new(rej_table, target_file_size)?,
        ))
    });
    let (mut raw, mut rej) = match writers {
        Ok(w) => w,
        Err(e) => {
            out.result = Err(e);
            return out;
        }
    };
    let read: Result<()> = async {
        let mut batches = read_input(storage, file, 8192);
        while let Some(b) = batches.try_next().await? {
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
        Ok(())
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

/// Compute and write (not commit) the stage's outputs; returns the rows read.
#[allow(clippy::too_many_arguments)]
async fn produce(
    floe: &Floe,
    ns: &Namespace,
    engine: &dyn Engine,
    stage: Stage,
    pinned: &BTreeMap<&'static str, PinnedTable>,
    files: &[super::input::InputFile],
    rejects: &Arc<Mutex<BTreeMap<String, u64>>>,
    written: &mut Written,
) -> Result<u64> {
    let table_of = |t: &str| TableName::new(ns.clone(), t);
    let options = CommitOptions::default();
    if stage == Stage::Ingest {
        let raw_table = floe.load_table(&table_of(tables::RAW_EVENTS)?).await?;
        let rej_table = floe.load_table(&table_of(REJECTED_EVENTS)?).await?;
        // Files are parsed concurrently, one task each (two per core at a time, so that an odd file
        // out does not leave a core idle), and each file's Parquet is encoded on its writers' tasks.
        let parallel = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let tasks = files.iter().cloned().map(|f| {
            let (storage, raw_table, rej_table) =
                (floe.storage().clone(), raw_table.clone(), rej_table.clone());
            let size = options.target_file_size;
            tokio::spawn(async move { ingest_file(&storage, &f, &raw_table, &rej_table, size).await })
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
        return Ok(records);
    }
    let rows_in: u64 = pinned
        .iter()
        .filter(|(t, _)| **t != GEOIP)
        .filter_map(|(_, p)| {
            p.snapshot_id
                .and_then(|id| p.table.metadata().snapshot_by_id(id))
                .and_then(|s| s.summary().additional_properties.get("total-records").cloned())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum();
    let outputs = engine.run(stage, pinned).await?;
    if outputs.len() != stage.outputs().len() {
        return Err(Error::internal(format!(
            "{} returned {} outputs for {stage}",
            engine.name(),
            outputs.len()
        )));
    }
    for (t, rows) in stage.outputs().iter().zip(outputs) {
        let rows = if *t == REJECTED_EVENTS {
            counted(rows, rejects.clone())
        } else {
            rows
        };
        let table = floe.load_table(&table_of(t)?).await?;
        let data = floe.write_files(&table, rows, &options).await?;
        add_written(written, t, data);
    }
    Ok(rows_in)
}
