//! The upsert benchmark (`floe bench --upsert`, run alone): a table of `rows` rows loaded in `files`
//! appends (a data file each at least), upserted with 1% of its rows changed, spread over every file,
//! and 0.5% new rows, by floe in merge-on-read and in copy-on-write and by PyIceberg's `Table.upsert`
//! on a table of the same rows and codec: wall time and bytes written (the sizes of the files the
//! upsert's snapshots add). Then full scans of the merge-on-read table before the upsert, after it
//! (its deletes in place) and after `floe compact`, by floe, PyIceberg and DuckDB's iceberg
//! extension: per reader a warm-up read of every state, then rounds reading each state once in a
//! rotating order, so every state meets the same warmness. The upserted tables are checked to hold
//! the same rows. Figures are medians over repetitions (the variants' order reversed every other
//! one); ratios are paired within each repetition, so machine noise cancels out.

mod summary;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::array::RecordBatch;
use futures::TryStreamExt;
use serde::Serialize;

use super::peer::{self, CompareTable, PeerScans, PeerUpsert, ScanState};
use super::report::{Machine, Target};
use super::stats::{Ratio, Summary};
use super::storage::{bench_rows, bench_schema, fresh_table};
use crate::catalog::{Namespace, TableName};
use crate::error::{Error, Result};
use crate::lakehouse::Floe;
use crate::maintenance::CompactOptions;
use crate::table::encoding::Codec;
use crate::table::{At, RowLevelOptions, ScanOptions, Table, UpsertOptions, WriteOptions};
use crate::RowLevelMode;
use summary::summarize;

/// Every 100th row is updated: 1% of the table, in every data file.
const UPDATE_EVERY: usize = 100;
/// New rows: one per 200 of the table's (0.5%).
const INSERT_PER: usize = 200;
/// Rows per batch of the generated rows.
const BATCH_ROWS: usize = 64 * 1024;

/// The variants' labels in the report.
pub const MERGE_ON_READ: &str = "floe merge-on-read";
/// Copy-on-write's label.
pub const COPY_ON_WRITE: &str = "floe copy-on-write";
/// PyIceberg's label.
pub const PYICEBERG: &str = "PyIceberg upsert";

/// The scanned states of the merge-on-read table.
pub const STATES: [&str; 3] = ["before", "after", "compacted"];

/// What [`upsert_benchmark`] runs.
#[derive(Clone, Debug)]
pub struct UpsertBenchOptions {
    /// Rows of the table.
    pub rows: usize,
    /// Appends loading them (a data file each at least).
    pub files: usize,
    /// Repetitions of every upsert and scan.
    pub repetitions: usize,
    /// Timed scans of each state per reader and repetition (after a warm-up read).
    pub scan_runs: usize,
    /// Run PyIceberg's upsert and the PyIceberg and DuckDB scans where PyIceberg is installed.
    pub peer: bool,
    /// Where the peer's script and its Parquet inputs go (removed at the end).
    pub dir: PathBuf,
}

impl Default for UpsertBenchOptions {
    fn default() -> Self {
        Self {
            rows: 5_000_000,
            files: 8,
            repetitions: 3,
            scan_runs: 3,
            peer: true,
            dir: PathBuf::from("floe-bench"),
        }
    }
}

/// One upsert, as measured.
#[derive(Clone, Debug, Serialize)]
pub struct UpsertTiming {
    /// [`MERGE_ON_READ`], [`COPY_ON_WRITE`] or [`PYICEBERG`].
    pub variant: String,
    /// Wall time of the upsert alone.
    pub seconds: f64,
    /// Snapshots it committed.
    pub snapshots: usize,
    /// Bytes of the files they added (`added-files-size`, data and delete files).
    pub bytes_written: u64,
    /// Data files they added.
    pub data_files_added: u64,
    /// Delete files they added.
    pub delete_files_added: u64,
    /// Rows the writer counted as updated.
    pub rows_updated: u64,
    /// Rows it counted as inserted.
    pub rows_inserted: u64,
}

/// One reader's full scan of one state of the merge-on-read table: the median of its timed reads.
#[derive(Clone, Debug, Serialize)]
pub struct ScanTiming {
    /// `floe`, `pyiceberg` or `duckdb`.
    pub reader: String,
    /// One of [`STATES`].
    pub state: String,
    /// Rows read.
    pub rows: u64,
    /// Median seconds.
    pub seconds: f64,
}

/// One repetition's figures.
#[derive(Clone, Debug, Serialize)]
pub struct UpsertRun {
    /// Repetition (0-based).
    pub repetition: usize,
    /// Every variant's upsert, in the order they ran.
    pub upserts: Vec<UpsertTiming>,
    /// `floe compact` of the merge-on-read table after its upsert, seconds.
    pub compact_seconds: f64,
    /// Data files it rewrote.
    pub files_compacted: usize,
    /// Delete files it removed.
    pub delete_files_removed: usize,
    /// Every reader's scans of every state.
    pub scans: Vec<ScanTiming>,
    /// Rows of each upserted table (and of the compacted one), by label.
    pub rows_after: BTreeMap<String, u64>,
    /// Labels of the upserted tables whose rows differ from PyIceberg's (`None`: not compared,
    /// without the peer).
    pub differing: Option<Vec<String>>,
}

/// One variant's upsert over the repetitions.
#[derive(Clone, Debug, Serialize)]
pub struct UpsertVariant {
    /// [`MERGE_ON_READ`], [`COPY_ON_WRITE`] or [`PYICEBERG`].
    pub variant: String,
    /// Wall seconds.
    pub seconds: Summary,
    /// Bytes written.
    pub bytes_written: Summary,
    /// Snapshots the upsert committed (first repetition).
    pub snapshots: usize,
    /// Data files it added (first repetition).
    pub data_files_added: u64,
    /// Delete files it added (first repetition).
    pub delete_files_added: u64,
    /// Rows counted as updated (first repetition).
    pub rows_updated: u64,
    /// Rows counted as inserted (first repetition).
    pub rows_inserted: u64,
}

/// One reader's scan of one state over the repetitions.
#[derive(Clone, Debug, Serialize)]
pub struct ScanFigures {
    /// `floe`, `pyiceberg` or `duckdb`.
    pub reader: String,
    /// One of [`STATES`].
    pub state: String,
    /// Rows read (first repetition).
    pub rows: u64,
    /// Seconds (each repetition's median).
    pub seconds: Summary,
}

/// One reader's scans of the later states against the scan before the upsert, paired by repetition.
#[derive(Clone, Debug, Serialize)]
pub struct ScanRatios {
    /// `floe`, `pyiceberg` or `duckdb`.
    pub reader: String,
    /// With the upsert's deletes in place over before the upsert.
    pub after_over_before: Ratio,
    /// After `floe compact` over before the upsert.
    pub compacted_over_before: Ratio,
}

/// What the upsert benchmark measured.
#[derive(Clone, Debug, Serialize)]
pub struct UpsertBenchReport {
    /// The machine.
    pub machine: Machine,
    /// When the report was made.
    pub finished_at: String,
    /// Rows of the table before the upsert.
    pub rows: usize,
    /// Data files of floe's table before the upsert.
    pub data_files: usize,
    /// Source rows whose key the table holds (updates).
    pub updated_rows: usize,
    /// Source rows whose key it lacks (inserts).
    pub inserted_rows: usize,
    /// Parquet codec of every table (floe's default; set on PyIceberg's table).
    pub codec: String,
    /// Repetitions.
    pub repetitions: usize,
    /// Timed scans per state, reader and repetition.
    pub scan_runs: usize,
    /// PyIceberg's version, where it ran.
    pub pyiceberg_version: Option<String>,
    /// DuckDB's version (the iceberg extension's reader), where it ran.
    pub duckdb_version: Option<String>,
    /// Why PyIceberg's upsert and the Python readers did not run, if they did not.
    pub peer_skipped: Option<String>,
    /// Readers that could not run, with why.
    pub readers_skipped: BTreeMap<String, String>,
    /// Every variant's upsert.
    pub variants: Vec<UpsertVariant>,
    /// PyIceberg's upsert time over floe's merge-on-read time (how many times faster floe is).
    pub merge_on_read_speedup_over_pyiceberg: Option<Ratio>,
    /// floe's copy-on-write time over its merge-on-read time.
    pub merge_on_read_speedup_over_copy_on_write: Ratio,
    /// PyIceberg's upsert time over floe's copy-on-write time.
    pub copy_on_write_speedup_over_pyiceberg: Option<Ratio>,
    /// Merge-on-read's bytes written over copy-on-write's.
    pub merge_on_read_bytes_over_copy_on_write: Ratio,
    /// `floe compact` after the merge-on-read upsert, seconds.
    pub compact_seconds: Summary,
    /// Data files it rewrote (first repetition).
    pub files_compacted: usize,
    /// Delete files it removed (first repetition).
    pub delete_files_removed: usize,
    /// Every reader's scan of every state.
    pub scans: Vec<ScanFigures>,
    /// Every reader's later states over the state before the upsert.
    pub scan_ratios: Vec<ScanRatios>,
    /// Every upserted table holds the same rows as PyIceberg's, in every repetition (`None`: not
    /// compared, without the peer).
    pub same_rows: Option<bool>,
    /// The targets.
    pub targets: Vec<Target>,
    /// Every repetition's figures.
    pub runs: Vec<UpsertRun>,
}

impl UpsertBenchReport {
    /// The variant labelled `variant`.
    pub fn variant(&self, variant: &str) -> Option<&UpsertVariant> {
        self.variants.iter().find(|v| v.variant == variant)
    }

    /// `reader`'s scan of `state`.
    pub fn scan(&self, reader: &str, state: &str) -> Option<&ScanFigures> {
        self.scans.iter().find(|s| s.reader == reader && s.state == state)
    }

    /// `reader`'s scan ratios.
    pub fn scan_ratio(&self, reader: &str) -> Option<&ScanRatios> {
        self.scan_ratios.iter().find(|s| s.reader == reader)
    }
}

/// The rows: the table's, in the appends that load it, and the upsert's source.
struct Input {
    base: Vec<Vec<RecordBatch>>,
    source: Vec<RecordBatch>,
    updated: usize,
    inserted: usize,
}

impl Input {
    /// Ids `0..rows` in `files` appends at revision 0; the source: every [`UPDATE_EVERY`]th id at
    /// revision 1 (another amount), and `rows / INSERT_PER` new ids after the last.
    fn generate(rows: usize, files: usize) -> Self {
        let per_file = rows.div_ceil(files);
        let base = (0..rows)
            .step_by(per_file)
            .map(|start| batches((start..(start + per_file).min(rows)).map(|i| i as i64), 0))
            .collect();
        let updated: Vec<i64> = (UPDATE_EVERY / 2..rows)
            .step_by(UPDATE_EVERY)
            .map(|i| i as i64)
            .collect();
        let inserted = (rows / INSERT_PER).max(1);
        let source_ids = updated
            .iter()
            .copied()
            .chain((rows..rows + inserted).map(|i| i as i64));
        Input {
            base,
            source: batches(source_ids, 1),
            updated: updated.len(),
            inserted,
        }
    }
}

/// The rows of `ids` at `revision`, in batches of [`BATCH_ROWS`].
fn batches(ids: impl Iterator<Item = i64>, revision: i64) -> Vec<RecordBatch> {
    let ids: Vec<i64> = ids.collect();
    ids.chunks(BATCH_ROWS).map(|c| bench_rows(c, revision)).collect()
}

fn stream(batches: &[RecordBatch]) -> impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static {
    // Owned: the stream outlives the borrow.
    let owned: Vec<RecordBatch> = batches.to_vec();
    futures::stream::iter(owned.into_iter().map(Ok))
}

/// The Parquet files the peer reads: the table's rows and the source.
struct PeerInputs {
    dir: PathBuf,
    base: PathBuf,
    source: PathBuf,
}

impl PeerInputs {
    fn write(dir: &Path, input: &Input) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let write = |path: &Path, batches: &mut dyn Iterator<Item = &RecordBatch>| -> Result<()> {
            let file = std::fs::File::create(path)?;
            let mut w =
                parquet::arrow::ArrowWriter::try_new(file, std::sync::Arc::new(bench_schema()), None)?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
            Ok(())
        };
        let inputs = PeerInputs {
            dir: dir.to_path_buf(),
            base: dir.join("base.parquet"),
            source: dir.join("source.parquet"),
        };
        write(&inputs.base, &mut input.base.iter().flatten())?;
        write(&inputs.source, &mut input.source.iter())?;
        Ok(inputs)
    }
}

/// What the snapshots after `base` up to `table`'s head added.
fn added_since(table: &Table, base: Option<i64>) -> UpsertTiming {
    let mut t = UpsertTiming {
        variant: String::new(),
        seconds: 0.0,
        snapshots: 0,
        bytes_written: 0,
        data_files_added: 0,
        delete_files_added: 0,
        rows_updated: 0,
        rows_inserted: 0,
    };
    let metadata = table.metadata();
    let mut at = metadata.current_snapshot_id();
    while let Some(id) = at.filter(|id| Some(*id) != base) {
        let Some(snapshot) = metadata.snapshot_by_id(id) else {
            break;
        };
        let figure = |key: &str| -> u64 {
            snapshot
                .summary()
                .additional_properties
                .get(key)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        t.snapshots += 1;
        t.bytes_written += figure("added-files-size");
        t.data_files_added += figure("added-data-files");
        t.delete_files_added += figure("added-delete-files");
        at = snapshot.parent_snapshot_id();
    }
    t
}

/// A fresh floe table of the input's rows, loaded in its appends.
async fn load_base(floe: &Floe, ns: &Namespace, kind: &str, rep: usize, input: &Input) -> Result<TableName> {
    let name = fresh_table(floe, ns, kind, rep).await?;
    for chunk in &input.base {
        floe.append(&name, stream(chunk), &WriteOptions::default())
            .await?;
    }
    Ok(name)
}

/// The state `state` of `table` (its current snapshot) for the scans.
fn scan_state(state: &str, table: &Table) -> Result<ScanState> {
    let snapshot_id = table
        .metadata()
        .current_snapshot_id()
        .ok_or_else(|| Error::internal(format!("{} has no snapshot to scan", table.name())))?;
    Ok(ScanState {
        state: state.to_string(),
        namespace: table.name().namespace().to_string(),
        table: table.name().name().to_string(),
        snapshot_id,
        metadata: table.metadata_location().to_string(),
    })
}

/// floe's upsert of the source in `mode` into a fresh table of the base rows: its figures, the
/// table, and its states before and after.
async fn floe_upsert(
    floe: &Floe,
    ns: &Namespace,
    rep: usize,
    input: &Input,
    mode: RowLevelMode,
) -> Result<(UpsertTiming, TableName, [ScanState; 2])> {
    let (kind, variant) = match mode {
        RowLevelMode::MergeOnRead => ("upsert_mor", MERGE_ON_READ),
        _ => ("upsert_cow", COPY_ON_WRITE),
    };
    let name = load_base(floe, ns, kind, rep, input).await?;
    let base = floe.load_table(&name).await?;
    let options = UpsertOptions {
        rows: RowLevelOptions {
            row_mode: Some(mode),
            ..Default::default()
        },
        key: vec!["id".into()],
        ..Default::default()
    };
    let t0 = Instant::now();
    let r = floe.upsert(&name, stream(&input.source), &options).await?;
    let seconds = t0.elapsed().as_secs_f64();
    let mut timing = added_since(&r.table, base.metadata().current_snapshot_id());
    timing.variant = variant.to_string();
    timing.seconds = seconds;
    timing.rows_updated = r.rows.updated;
    timing.rows_inserted = r.rows.inserted;
    let states = [scan_state("before", &base)?, scan_state("after", &r.table)?];
    Ok((timing, name, states))
}

/// One full read of `name` at `snapshot_id` through floe's scan: rows and seconds (the table's
/// loading and the scan's planning included).
async fn floe_read(floe: &Floe, name: &TableName, snapshot_id: i64) -> Result<(u64, f64)> {
    let t0 = Instant::now();
    let scan = floe
        .scan(
            name,
            &ScanOptions {
                at: Some(At::Snapshot(snapshot_id)),
                ..Default::default()
            },
        )
        .await?;
    let rows = scan
        .batches
        .try_fold(0u64, |n, b| async move { Ok(n + b.num_rows() as u64) })
        .await?;
    Ok((rows, t0.elapsed().as_secs_f64()))
}

/// floe's scans of every state: a warm-up read of each, then `runs` rounds reading each state once
/// (the order rotating), the median per state.
async fn floe_scans(
    floe: &Floe,
    name: &TableName,
    states: &[ScanState],
    runs: usize,
) -> Result<Vec<ScanTiming>> {
    let mut rows = Vec::new();
    for s in states {
        rows.push(floe_read(floe, name, s.snapshot_id).await?.0);
    }
    let mut seconds = vec![Vec::new(); states.len()];
    for round in 0..runs.max(1) {
        for k in 0..states.len() {
            let i = (round + k) % states.len();
            seconds[i].push(floe_read(floe, name, states[i].snapshot_id).await?.1);
        }
    }
    Ok(states
        .iter()
        .zip(rows)
        .zip(seconds)
        .map(|((s, rows), secs)| ScanTiming {
            reader: "floe".into(),
            state: s.state.clone(),
            rows,
            seconds: Summary::of(&secs).median,
        })
        .collect())
}

/// The upsert variants in a repetition's order: reversed every other repetition, so drift hits all
/// alike.
fn variant_order(rep: usize, peer: bool) -> Vec<&'static str> {
    let mut order = vec![MERGE_ON_READ, COPY_ON_WRITE];
    if peer {
        order.push(PYICEBERG);
    }
    if rep % 2 == 1 {
        order.reverse();
    }
    order
}

/// The benchmark's run-wide settings, shared by every repetition.
struct Setup<'a> {
    floe: &'a Floe,
    ns: &'a Namespace,
    input: &'a Input,
    options: &'a UpsertBenchOptions,
    codec: String,
    peer: Option<PeerInputs>,
}

/// What a repetition hands back besides its figures.
struct RunOutcome {
    run: UpsertRun,
    pyiceberg_version: Option<String>,
    peer_scans: Option<PeerScans>,
}

/// One repetition: every upsert, the compaction, every scan, the comparison; the tables dropped.
async fn repetition(setup: &Setup<'_>, rep: usize) -> Result<RunOutcome> {
    let (floe, ns, input) = (setup.floe, setup.ns, setup.input);
    let mut upserts = Vec::new();
    let mut merge_on_read = None;
    let mut copy_on_write = None;
    let mut pyiceberg: Option<(String, PeerUpsert)> = None;
    for variant in variant_order(rep, setup.peer.is_some()) {
        tracing::info!(rep, variant, "upsert benchmark");
        match variant {
            MERGE_ON_READ => {
                let (t, name, states) = floe_upsert(floe, ns, rep, input, RowLevelMode::MergeOnRead).await?;
                upserts.push(t);
                merge_on_read = Some((name, states));
            }
            COPY_ON_WRITE => {
                let (t, name, _) = floe_upsert(floe, ns, rep, input, RowLevelMode::CopyOnWrite).await?;
                upserts.push(t);
                copy_on_write = Some(name);
            }
            _ => {
                let inputs = setup.peer.as_ref().expect("the peer runs");
                let table = format!("bench_upsert_pyiceberg_{}_{rep}", std::process::id());
                let files = setup.options.files.max(1);
                let p = peer::upsert(
                    floe,
                    &inputs.dir,
                    (ns, &table),
                    (&setup.codec, files),
                    (&inputs.base, &inputs.source),
                )?;
                upserts.push(UpsertTiming {
                    variant: PYICEBERG.into(),
                    seconds: p.seconds,
                    snapshots: p.snapshots,
                    bytes_written: p.bytes_written,
                    data_files_added: p.data_files_added,
                    delete_files_added: p.delete_files_added,
                    rows_updated: p.rows_updated,
                    rows_inserted: p.rows_inserted,
                });
                if p.codec.as_deref() != Some(setup.codec.as_str()) {
                    return Err(Error::internal(format!(
                        "PyIceberg's table has codec {:?}, floe's {}",
                        p.codec, setup.codec
                    )));
                }
                pyiceberg = Some((table, p));
            }
        }
    }
    let (mor, [before, after]) = merge_on_read.expect("merge-on-read ran");
    let cow = copy_on_write.expect("copy-on-write ran");

    tracing::info!(rep, "compaction and scans");
    let t0 = Instant::now();
    let compaction = floe.compact(&mor, &CompactOptions::default()).await?;
    let compact_seconds = t0.elapsed().as_secs_f64();
    let compacted = scan_state("compacted", &floe.load_table(&mor).await?)?;
    let states = [before, after.clone(), compacted.clone()];
    let mut scans = floe_scans(floe, &mor, &states, setup.options.scan_runs).await?;
    let mut rows_after: BTreeMap<String, u64> = BTreeMap::new();
    for (label, name, at) in [
        (MERGE_ON_READ, &mor, after.snapshot_id),
        ("floe compacted", &mor, compacted.snapshot_id),
    ] {
        rows_after.insert(label.to_string(), floe_read(floe, name, at).await?.0);
    }
    let cow_head = floe.load_table(&cow).await?;
    let cow_head = cow_head.metadata().current_snapshot_id().unwrap_or_default();
    rows_after.insert(COPY_ON_WRITE.into(), floe_read(floe, &cow, cow_head).await?.0);

    let mut differing = None;
    let mut peer_scans = None;
    if let Some(inputs) = &setup.peer {
        let label = |label: &str, table: &TableName, snapshot_id| CompareTable {
            label: label.to_string(),
            namespace: table.namespace().to_string(),
            table: table.name().to_string(),
            snapshot_id,
        };
        let (py_table, _) = pyiceberg.as_ref().expect("the peer's upsert ran");
        let compare = [
            label(PYICEBERG, &TableName::new(ns.clone(), py_table.clone())?, None),
            label(MERGE_ON_READ, &mor, Some(after.snapshot_id)),
            label("floe compacted", &mor, Some(compacted.snapshot_id)),
            label(COPY_ON_WRITE, &cow, None),
        ];
        let p = peer::scans(floe, &inputs.dir, &states, setup.options.scan_runs, &compare)?;
        scans.extend(p.scans.iter().map(|s| ScanTiming {
            reader: s.reader.clone(),
            state: s.state.clone(),
            rows: s.rows,
            seconds: s.seconds,
        }));
        if let Some(rows) = p.rows_after.get(PYICEBERG) {
            rows_after.insert(PYICEBERG.into(), *rows);
        }
        differing = Some(p.differing.clone());
        peer_scans = Some(p);
    }
    let run = UpsertRun {
        repetition: rep,
        upserts,
        compact_seconds,
        files_compacted: compaction.files_rewritten,
        delete_files_removed: compaction.delete_files_removed,
        scans,
        rows_after,
        differing,
    };
    Ok(RunOutcome {
        run,
        pyiceberg_version: pyiceberg.map(|(_, p)| p.version),
        peer_scans,
    })
}

/// Run the upsert benchmark in namespace `ns` (emptied first; its tables are dropped with their
/// files at the end of each repetition).
pub async fn upsert_benchmark(
    floe: &Floe,
    ns: &Namespace,
    options: &UpsertBenchOptions,
) -> Result<UpsertBenchReport> {
    let rows = options.rows.max(INSERT_PER);
    let files = options.files.max(1);
    super::purge_namespace(floe, ns).await?;
    floe.ensure_namespace(ns).await?;
    let input = Input::generate(rows, files);
    // floe's default codec: the tables are created without properties.
    let probe = fresh_table(floe, ns, "upsert_codec", 0).await?;
    let codec = Codec::of_table(&floe.load_table(&probe).await?)?
        .iceberg_name()
        .to_string();
    floe.drop_table(&probe, true).await?;
    let peer_skipped = if options.peer {
        peer::unavailable()
    } else {
        Some("not asked for (--no-peer)".into())
    };
    let peer = match peer_skipped {
        None => Some(PeerInputs::write(
            &options.dir.join(format!("upsert-inputs-{}", std::process::id())),
            &input,
        )?),
        Some(_) => None,
    };
    let data_files = {
        let name = load_base(floe, ns, "upsert_files", 0, &input).await?;
        let table = floe.load_table(&name).await?;
        let n = table.files(table.current_snapshot()).await?.len();
        floe.drop_table(&name, true).await?;
        n
    };
    let setup = Setup {
        floe,
        ns,
        input: &input,
        options,
        codec,
        peer,
    };
    let mut outcomes = Vec::new();
    for rep in 0..options.repetitions.max(1) {
        let outcome = repetition(&setup, rep).await;
        // Each repetition's tables go before the next loads its own.
        let purged = super::purge_namespace(floe, ns).await;
        outcomes.push(outcome?);
        purged?;
        floe.ensure_namespace(ns).await?;
    }
    super::purge_namespace(floe, ns).await?;
    if let Some(p) = &setup.peer {
        std::fs::remove_dir_all(&p.dir)?;
    }
    let mut report = summarize(floe, &setup, data_files, peer_skipped, outcomes);
    report.targets = super::report::upsert_targets(&report);
    Ok(report)
}
