//! One stage of one engine: pin the inputs (each input table's branch head, `geoip` at `main`) and
//! load every table the stage touches once; reuse an identical earlier run from the ledger; else
//! compute the outputs, check that no record was lost, and commit every output table in one
//! transaction on the engine's branch, with lineage. A failing stage commits nothing and deletes the
//! files it wrote; the outcome is recorded in the ledger either way.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::super::engine::{Engine, PinnedTable, Stage, RULES_CODE};
use super::super::input::{resolve_inputs, InputFile};
use super::super::ledger::{self, LedgerEntry, LedgerStatus};
use super::super::tables::{self, GEOIP, REJECTED_EVENTS};
use super::equivalence::{data_snapshot, VERDICT_STAGE};
use super::produce::{produce, Written};
use super::{now, RunOptions, StageReport};
use crate::catalog::TableName;
use crate::error::{Error, ErrorKind, Result};
use crate::lakehouse::Floe;
use crate::resources::Monitor;
use crate::storage::delete_quietly;
use crate::table::transaction::paths_of;
use crate::table::{CommitResult, ExpectedHead, Lineage, OverwriteOptions, RowFilter, Table, WriteOptions};

/// Bumped when the pipeline's rules change, so earlier ledger rows are not reused.
const PIPELINE_VERSION: &str = "clickstream-1";

/// A stage's pinned state: inputs at their snapshots, input files, and every output table as the
/// stage read it (its commit is refused if the branch head moves meanwhile).
struct Pins {
    pinned: BTreeMap<&'static str, PinnedTable>,
    input_snapshots: BTreeMap<String, Option<i64>>,
    files: Vec<InputFile>,
    /// Per input file: URI, size, ETag and modification time.
    file_versions: Vec<String>,
    outputs: BTreeMap<&'static str, Table>,
}

impl Pins {
    fn head(&self, table: &str, branch: &str) -> Option<i64> {
        self.outputs[table]
            .metadata()
            .snapshot_for_ref(branch)
            .map(|s| s.snapshot_id())
    }
}

async fn pin(floe: &Floe, options: &RunOptions, branch: &str, stage: Stage) -> Result<Pins> {
    let ns = &options.namespace;
    let mut loaded: BTreeMap<&'static str, Table> = BTreeMap::new();
    for t in stage.inputs().iter().chain(stage.outputs()) {
        if !loaded.contains_key(t) {
            loaded.insert(*t, floe.load_table(&TableName::new(ns.clone(), *t)?).await?);
        }
    }
    let mut pinned = BTreeMap::new();
    let mut input_snapshots = BTreeMap::new();
    for t in stage.inputs() {
        let table = loaded[t].clone();
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
    let mut versions = Vec::new();
    if stage == Stage::Ingest {
        let input = options
            .input
            .as_deref()
            .ok_or_else(|| Error::invalid("ingest needs an input (a file, a directory or a glob)"))?;
        files = resolve_inputs(floe.storage(), input).await?;
        for f in &files {
            input_snapshots.insert(f.uri.clone(), Some(f.size as i64));
        }
        // An input file is identified by its store's ETag and modification time besides its size:
        // an edited file of the same size is a new input.
        for f in &files {
            let meta = floe.storage().head(&f.uri).await?;
            versions.push(format!(
                "{}={}:{}:{}",
                f.uri,
                meta.size,
                meta.e_tag.as_deref().unwrap_or("-"),
                meta.last_modified.timestamp_nanos_opt().unwrap_or(0)
            ));
        }
    }
    let outputs = stage.outputs().iter().map(|t| (*t, loaded[t].clone())).collect();
    Ok(Pins {
        pinned,
        input_snapshots,
        files,
        file_versions: versions,
        outputs,
    })
}

/// What decides whether a stage's earlier outputs can be reused.
#[derive(Clone, Copy)]
struct ReuseInputs<'a> {
    stage: Stage,
    engine: &'a str,
    namespace: &'a str,
    /// The engine's rendered code of the stage (its SQL).
    code: &'a str,
    /// The source of the rules both engines share.
    rules: &'a [&'a str],
    input_snapshots: &'a BTreeMap<String, Option<i64>>,
    file_versions: &'a [String],
}

/// The reuse key: a hash of the stage, the engine and its code (rendered SQL, rules), the namespace,
/// every pinned input snapshot and every input file's version (size, ETag, modification time).
fn reuse_key(inputs: &ReuseInputs<'_>) -> String {
    let mut parts = vec![
        PIPELINE_VERSION.to_string(),
        inputs.stage.to_string(),
        inputs.engine.to_string(),
        inputs.namespace.to_string(),
        inputs.code.to_string(),
    ];
    parts.extend(inputs.rules.iter().map(|c| c.to_string()));
    parts.extend(inputs.input_snapshots.iter().map(|(k, v)| format!("{k}={v:?}")));
    parts.extend(inputs.file_versions.iter().cloned());
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Run `stage` on `engine`: pin its inputs, reuse an identical earlier run whose outputs are still
/// the branch heads, or compute the outputs and commit them all in one transaction; recorded in the
/// ledger either way (a failure too).
pub(crate) async fn run_stage(
    floe: &Floe,
    options: &RunOptions,
    run_id: &str,
    engine: &dyn Engine,
    stage: Stage,
) -> Result<StageReport> {
    let branch = engine.name();
    let monitor = Monitor::start();
    let started = std::time::Instant::now();
    let base_entry = LedgerEntry {
        run_id: run_id.to_string(),
        pipeline: "clickstream".to_string(),
        stage: stage.to_string(),
        engine: branch.to_string(),
        status: LedgerStatus::Succeeded.to_string(),
        started_at: now(),
        ..Default::default()
    };
    let pins = match pin(floe, options, branch, stage).await {
        Ok(p) => p,
        Err(e) => return Err(fail(floe, base_entry, e).await),
    };
    let fingerprint = reuse_key(&ReuseInputs {
        stage,
        engine: branch,
        namespace: &options.namespace.to_string(),
        code: &engine.code(stage),
        rules: RULES_CODE,
        input_snapshots: &pins.input_snapshots,
        file_versions: &pins.file_versions,
    });
    let mut entry = LedgerEntry {
        fingerprint,
        input_snapshots: pins.input_snapshots.clone(),
        ..base_entry
    };
    if !options.force && reuse_earlier(floe, branch, stage, &pins, &mut entry).await? {
        return Ok(super::report_of(
            &entry,
            monitor.finish(),
            super::StageIo::default(),
        ));
    }
    let mut io = super::StageIo {
        bytes_read: bytes_read(stage, &pins),
        ..Default::default()
    };
    io.time("pin", started);
    let written = match compute(floe, engine, stage, &pins, &mut entry, &mut io).await {
        Ok(w) => w,
        Err(e) => return Err(fail(floe, entry, e).await),
    };
    let committing = std::time::Instant::now();
    let results = match commit_outputs(floe, options, engine, stage, &pins, &entry, written).await {
        Ok(r) => r,
        Err(e) => return Err(fail(floe, entry, e).await),
    };
    for r in results {
        if let Some(id) = r.snapshot_id {
            entry
                .output_snapshots
                .insert(r.table.name().name().to_string(), id);
        }
    }
    io.commit_seconds = committing.elapsed().as_secs_f64();
    io.time("commit", committing);
    let recording = std::time::Instant::now();
    let usage = monitor.finish();
    entry.peak_memory_bytes = Some(usage.peak_memory_bytes);
    entry.ended_at = Some(now());
    ledger::record(floe.database(), &entry).await?;
    io.time("record", recording);
    Ok(super::report_of(&entry, usage, io))
}

/// An identical earlier run (same fingerprint) whose outputs are still the branch heads: its
/// outputs and counts taken over into `entry`, recorded as reused. Whether there was one.
async fn reuse_earlier(
    floe: &Floe,
    branch: &str,
    stage: Stage,
    pins: &Pins,
    entry: &mut LedgerEntry,
) -> Result<bool> {
    let Some(prev) = ledger::find_succeeded(floe.database(), &entry.fingerprint).await? else {
        return Ok(false);
    };
    if !outputs_still_current(&pins.outputs, branch, stage, &prev) {
        return Ok(false);
    }
    entry.status = LedgerStatus::Reused.to_string();
    entry.output_snapshots = prev.output_snapshots.clone();
    entry.rows_in = prev.rows_in;
    entry.rows_out = prev.rows_out.clone();
    entry.rejects = prev.rejects.clone();
    entry.ended_at = Some(now());
    ledger::record(floe.database(), entry).await?;
    Ok(true)
}

/// Bytes a stage reads: its input files (`ingest`), or the data files of its pinned snapshots.
fn bytes_read(stage: Stage, pins: &Pins) -> u64 {
    if stage == Stage::Ingest {
        return pins.files.iter().map(|f| f.size).sum();
    }
    pins.pinned
        .values()
        .filter_map(|p| {
            p.snapshot_id
                .and_then(|id| p.table.metadata().snapshot_by_id(id))
                .and_then(|s| s.summary().additional_properties.get("total-files-size").cloned())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// Compute the stage's outputs into data files (not committed), their counts in `entry` and bytes
/// in `io`, checked to balance; on failure the files are deleted.
async fn compute(
    floe: &Floe,
    engine: &dyn Engine,
    stage: Stage,
    pins: &Pins,
    entry: &mut LedgerEntry,
    io: &mut super::StageIo,
) -> Result<Written> {
    let rejects: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut written: Written = Vec::new();
    let outcome = produce(
        engine,
        stage,
        &pins.pinned,
        &pins.outputs,
        &pins.files,
        &rejects,
        &mut written,
        io,
    )
    .await;
    let rows_in = match outcome {
        Ok(rows_in) => rows_in,
        Err(e) => {
            discard(floe, written).await;
            return Err(e);
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
    let checking = std::time::Instant::now();
    let balanced = check_balance(stage, entry);
    io.time("check", checking);
    if let Err(e) = balanced {
        discard(floe, written).await;
        return Err(e);
    }
    Ok(written)
}

/// Every output of the stage in one transaction on the engine's branch, with lineage: all land or
/// none. Files not handed to the transaction yet are deleted when one fails.
async fn commit_outputs(
    floe: &Floe,
    options: &RunOptions,
    engine: &dyn Engine,
    stage: Stage,
    pins: &Pins,
    entry: &LedgerEntry,
    written: Written,
) -> Result<Vec<CommitResult>> {
    let branch = engine.name();
    let mut lineage_inputs = BTreeMap::new();
    for (k, v) in &entry.input_snapshots {
        if let (Some(id), false) = (v, k.contains("://")) {
            lineage_inputs.insert(k.clone(), *id);
        }
    }
    let lineage = Lineage {
        run_id: Some(entry.run_id.clone()),
        stage: Some(stage.to_string()),
        engine: Some(branch.to_string()),
        inputs: lineage_inputs,
    };
    let mut tx = floe.transaction();
    for table in pins.outputs.values() {
        tx.read_as(table.clone());
    }
    let mut pending = written.into_iter();
    while let Some((t, data)) = pending.next() {
        let name = TableName::new(options.namespace.clone(), t)?;
        let filter = (t == REJECTED_EVENTS && stage != Stage::Ingest)
            .then(|| RowFilter::sql(format!("stage = '{stage}'")));
        let commit_options = OverwriteOptions::from(WriteOptions {
            branch: branch.to_string(),
            lineage: lineage.clone(),
            properties: options
                .engine_reason
                .iter()
                .map(|r| ("floe.engine-reason".to_string(), r.clone()))
                .collect(),
            expected_head: ExpectedHead::of(pins.head(t, branch)),
            ..Default::default()
        });
        if let Err(e) = tx.overwrite_files(&name, filter, data, &commit_options).await {
            discard(floe, pending.collect()).await;
            tx.abort().await;
            return Err(e);
        }
    }
    tx.commit().await
}

/// Delete written files that will not be committed.
async fn discard(floe: &Floe, written: Written) {
    for (_, f) in written {
        delete_quietly(floe.storage(), paths_of(&f)).await;
    }
}

/// Nothing lost: every record a stage read is in exactly one of its outputs (`ingest` and
/// `cleanse`: the clean or raw rows plus the stage's rejects; `enrich` and `sessionize`: one output
/// row per input row). A stage whose counts do not add up fails and commits nothing.
fn check_balance(stage: Stage, entry: &LedgerEntry) -> Result<()> {
    balance(stage, entry.rows_in, |t| {
        entry.rows_out.get(t).copied().unwrap_or(0)
    })
}

/// [`check_balance`] on `rows_in` records read and `out(table)` rows written.
pub(crate) fn balance(stage: Stage, rows_in: u64, out: impl Fn(&str) -> u64) -> Result<()> {
    let (kept, label) = match stage {
        Stage::Ingest => (out(tables::RAW_EVENTS) + out(REJECTED_EVENTS), "raw + rejected"),
        Stage::Cleanse => (
            out(tables::CLEAN_EVENTS) + out(REJECTED_EVENTS),
            "clean + rejected",
        ),
        Stage::Enrich => (out(tables::ENRICHED_EVENTS), "enriched"),
        Stage::Sessionize => (out(tables::SESSION_EVENTS), "session events"),
        Stage::Aggregate => return Ok(()),
    };
    if kept != rows_in {
        return Err(Error::new(
            ErrorKind::Internal,
            format!("stage {stage} read {rows_in} records but wrote {kept} ({label}); nothing was committed"),
        ));
    }
    Ok(())
}

/// Whether the outputs an earlier run of `stage` committed are still what the branch holds: each is
/// the branch head, or an ancestor of it with only later stages' commits after it (`cleanse` adds to
/// the `rejected_events` that `ingest` wrote).
fn outputs_still_current(
    outputs: &BTreeMap<&'static str, Table>,
    branch: &str,
    stage: Stage,
    prev: &LedgerEntry,
) -> bool {
    for t in stage.outputs() {
        let Some(recorded) = prev.output_snapshots.get(*t).copied() else {
            return false;
        };
        let table = &outputs[t];
        let mut cur = table.metadata().snapshot_for_ref(branch).cloned();
        loop {
            match cur {
                None => return false,
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
                        return false;
                    }
                    cur = s
                        .parent_snapshot_id()
                        .and_then(|p| table.metadata().snapshot_by_id(p).cloned());
                }
            }
        }
    }
    true
}

async fn fail(floe: &Floe, mut entry: LedgerEntry, e: Error) -> Error {
    entry.status = LedgerStatus::Failed.to_string();
    entry.error = Some(e.to_string());
    entry.ended_at = Some(now());
    if let Err(le) = ledger::record(floe.database(), &entry).await {
        tracing::warn!(error = %le, "could not record the failed stage");
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reuse_key_changes_with_the_sql_the_rules_and_every_input_version() {
        let snapshots = BTreeMap::from([("ns.raw_events".to_string(), Some(7))]);
        let versions = vec!["file:///in/a.csv=10:etag-1:1700000000".to_string()];
        let base = ReuseInputs {
            stage: Stage::Cleanse,
            engine: "duckdb",
            namespace: "ns",
            code: "SELECT trim(event_id) FROM raw_events",
            rules: &["fn rule() {}"],
            input_snapshots: &snapshots,
            file_versions: &versions,
        };
        let key = reuse_key(&base);
        assert_eq!(key, reuse_key(&base), "the same inputs, the same key");
        let other_snapshots = BTreeMap::from([("ns.raw_events".to_string(), Some(8))]);
        let edited = vec!["file:///in/a.csv=10:etag-2:1700000001".to_string()];
        let changed = [
            ReuseInputs {
                code: "SELECT event_id FROM raw_events",
                ..base
            },
            ReuseInputs {
                rules: &["fn rule() { /* changed */ }"],
                ..base
            },
            ReuseInputs {
                input_snapshots: &other_snapshots,
                ..base
            },
            ReuseInputs {
                file_versions: &edited,
                ..base
            },
            ReuseInputs {
                engine: "datafusion",
                ..base
            },
            ReuseInputs {
                stage: Stage::Enrich,
                ..base
            },
        ];
        for (i, c) in changed.iter().enumerate() {
            assert_ne!(reuse_key(c), key, "change {i} keeps the key");
        }
    }
}
