//! `floe bench`: the engine comparison benchmark. For each input size, repetition and engine it runs
//! the whole clickstream pipeline into fresh tables, and the same stage logic on the raw engine over
//! plain Parquet (no Iceberg, no catalog), in a balanced order (`A B B A`, the engines and the two
//! paths alternating) so machine drift hits all alike. In the same run it checks that the engines'
//! outputs are equal, pits floe's append and `add_files` against PyIceberg's on the same rows, reads a
//! pipeline table in full through floe's DataFusion path and through raw DataFusion, measures commit
//! latency as a table's history grows, and (given a Postgres source) extraction with `floe ingest`.
//! Two benchmarks run alone: the storage layer's ([`storage`], `--storage-only`) and the upsert's
//! ([`upsert`], `--upsert`).
//! [`measure`] runs it (each pass through [`pass`], in a child process of its own unless asked
//! otherwise); [`report`] turns the figures into JSON, Markdown and charts. This file holds the
//! options and the figures.

pub mod ingest;
mod measure;
pub mod pass;
pub mod peer;
pub mod raw;
pub mod report;
pub mod rest;
pub mod scan;
pub mod sql;
pub mod stats;
pub mod storage;
pub mod upsert;
pub mod wan;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use self::ingest::{ingest_benchmark, IngestBenchOptions, IngestBenchReport, IngestVariant};
pub use self::measure::measure;
pub use self::pass::child_main;
pub use self::rest::{rest_benchmark, RestBenchOptions, RestBenchReport};
pub use self::sql::{sql_benchmark, SqlBenchOptions, SqlBenchReport};
pub use self::storage::{core_benchmark, CoreBenchReport, StorageBenchOptions, StorageFootprint, YearReport};
pub use self::upsert::{upsert_benchmark, UpsertBenchOptions, UpsertBenchReport};
use crate::catalog::Namespace;
use crate::error::Result;
use crate::lakehouse::Floe;

/// Called with each step's description and the count of steps done out of all.
pub type BenchProgress = Arc<dyn Fn(&str, u64, u64) + Send + Sync>;

/// What to benchmark.
#[derive(Clone)]
pub struct BenchOptions {
    /// CSV input sizes in bytes.
    pub sizes: Vec<u64>,
    /// Engines (`duckdb`, `datafusion`, `ballista`: the last on a loopback cluster per count of
    /// [`executors`](Self::executors), labelled `ballista:N`).
    pub engines: Vec<String>,
    /// Executors of the loopback clusters the `ballista` engine runs on, one cluster per count.
    pub executors: Vec<usize>,
    /// The floe executable that the loopback clusters run (`floe cluster scheduler|executor`);
    /// needed for `ballista`.
    pub cluster_exe: Option<PathBuf>,
    /// Repetitions of every run.
    pub repetitions: usize,
    /// Where inputs are cached and the report is written.
    pub out: PathBuf,
    /// Seed of the generated inputs.
    pub seed: u64,
    /// Snapshots of the commit-latency history (the latency at the last is compared to the first).
    pub history: usize,
    /// Rows of the storage benchmark's append.
    pub append_rows: usize,
    /// Days of the storage benchmark's simulated year of daily runs (0 skips it).
    pub days: usize,
    /// Rows each simulated day adds.
    pub rows_per_day: usize,
    /// Run the raw-engine baselines.
    pub raw: bool,
    /// Run the PyIceberg peer where it is installed.
    pub peer: bool,
    /// Prefix of the namespaces of the benchmark's fresh tables.
    pub namespace_prefix: String,
    /// Progress reporting.
    pub progress: Option<BenchProgress>,
    /// Run every pass in a child process of this floe executable (which calls
    /// [`pass::child_main`] first, as `floe` does), so a pass's memory is its own and not what
    /// earlier passes left with the allocator. `None`: in process.
    pub isolate: Option<PathBuf>,
    /// The extraction benchmark from a Postgres source (`None`: not run).
    pub ingest: Option<IngestBenchOptions>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            sizes: vec![10_000_000, 100_000_000, 1_000_000_000],
            engines: vec!["duckdb".into(), "datafusion".into()],
            executors: vec![1, 2],
            cluster_exe: None,
            repetitions: 3,
            out: PathBuf::from("floe-bench"),
            seed: 42,
            history: 500,
            append_rows: 1_000_000,
            days: 365,
            rows_per_day: 10_000,
            raw: true,
            peer: true,
            namespace_prefix: "floe_bench".into(),
            progress: None,
            isolate: None,
            ingest: None,
        }
    }
}

/// One stage of one run, floe or raw.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageFigures {
    /// The stage.
    pub stage: String,
    /// Wall time.
    pub seconds: f64,
    /// CPU time (user + system).
    pub cpu_seconds: f64,
    /// Peak resident memory of the process during the stage.
    pub peak_memory_bytes: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Rows written over all outputs.
    pub rows_out: u64,
    /// Time committing (floe only).
    pub commit_seconds: Option<f64>,
    /// Bytes the driver received from a cluster whose executors wrote the files (floe only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_bytes_received: Option<u64>,
    /// The plan the stage ran with, where the engine tells (the cluster's `enrich`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Where floe's wall time went, per phase (floe only: `StageReport::phase_seconds`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub phase_seconds: BTreeMap<String, f64>,
}

impl StageFigures {
    /// Rows written per second.
    pub fn rows_per_s(&self) -> f64 {
        self.rows_out as f64 / self.seconds
    }
}

/// One pass of the whole pipeline.
#[derive(Clone, Debug, Serialize)]
pub struct PipelineRun {
    /// Input size label.
    pub size: String,
    /// Input bytes.
    pub input_bytes: u64,
    /// Engine.
    pub engine: String,
    /// `floe` (Iceberg tables, catalog commits) or `raw` (plain Parquet).
    pub path: String,
    /// Repetition (0-based).
    pub repetition: usize,
    /// Per stage, in order (empty when the pass failed).
    pub stages: Vec<StageFigures>,
    /// Why the pass failed, if it did (the benchmark goes on with the other runs).
    pub error: Option<String>,
}

/// The equivalence check of one repetition: every output table diffed between two engines.
#[derive(Clone, Debug, Serialize)]
pub struct EquivalenceRun {
    /// Input size label.
    pub size: String,
    /// The two engines (the first listed, and another).
    pub engines: (String, String),
    /// Repetition.
    pub repetition: usize,
    /// All equal.
    pub equal: bool,
    /// Per table: name, equal, what decided it, rows.
    pub tables: Vec<TableVerdict>,
}

/// One table's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct TableVerdict {
    /// Table name.
    pub table: String,
    /// Equal.
    pub equal: bool,
    /// What decided it (`files`, `schema`, `statistics`, `rows`).
    pub decided_by: String,
    /// Rows on each side.
    pub rows: (u64, u64),
}

/// One paired append: floe against PyIceberg.
#[derive(Clone, Debug, Serialize)]
pub struct PeerRun {
    /// Input size label.
    pub size: String,
    /// Repetition.
    pub repetition: usize,
    /// The measurement.
    pub append: peer::PeerAppend,
}

/// One paired `add_files`: floe against PyIceberg.
#[derive(Clone, Debug, Serialize)]
pub struct AddFilesRun {
    /// Input size label.
    pub size: String,
    /// Repetition.
    pub repetition: usize,
    /// The measurement.
    pub add_files: peer::PeerAddFiles,
}

/// One paired full scan: floe's DataFusion path against raw DataFusion.
#[derive(Clone, Debug, Serialize)]
pub struct ScanRun {
    /// Input size label.
    pub size: String,
    /// Repetition.
    pub repetition: usize,
    /// The measurement.
    pub scan: scan::ScanPair,
}

/// A generated input.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InputInfo {
    /// Size label (`10MB`).
    pub size: String,
    /// Bytes on disk.
    pub bytes: u64,
    /// Records.
    pub events: u64,
    /// Directory.
    pub dir: String,
}

/// Everything one benchmark run measured, before summarizing.
#[derive(Clone, Debug, Serialize)]
pub struct Measurements {
    /// The inputs.
    pub inputs: Vec<InputInfo>,
    /// Every pipeline pass, floe and raw.
    pub runs: Vec<PipelineRun>,
    /// Every equivalence check.
    pub equivalence: Vec<EquivalenceRun>,
    /// Every peer append.
    pub peer: Vec<PeerRun>,
    /// Every peer `add_files`.
    pub add_files: Vec<AddFilesRun>,
    /// Every full scan.
    pub scans: Vec<ScanRun>,
    /// Why the peer did not run, if it did not.
    pub peer_skipped: Option<String>,
    /// Commit latency and append throughput of the storage layer.
    pub storage: CoreBenchReport,
    /// Extraction from Postgres, when a source was given.
    pub ingest: Option<IngestBenchReport>,
}

/// `10MB`, `1.5GB`, `512KB`: decimal units.
pub fn size_label(bytes: u64) -> String {
    let units = [
        (1_000_000_000_000u64, "TB"),
        (1_000_000_000, "GB"),
        (1_000_000, "MB"),
        (1_000, "KB"),
    ];
    for (u, name) in units {
        if bytes >= u {
            let v = bytes as f64 / u as f64;
            return if (v - v.round()).abs() < 1e-9 {
                format!("{}{name}", v.round() as u64)
            } else {
                format!("{v:.1}{name}")
            };
        }
    }
    format!("{bytes}B")
}

/// Whether an engine label runs on a cluster (`ballista`, `ballista:N`).
pub fn on_cluster(label: &str) -> bool {
    label == "ballista" || label.starts_with("ballista:")
}

/// The executor count of a `ballista:N` label.
pub fn cluster_executors(label: &str) -> Option<usize> {
    label.strip_prefix("ballista:")?.parse().ok()
}

/// Drop every table of `ns` with its files, then `ns`.
pub(crate) async fn purge_namespace(floe: &Floe, ns: &Namespace) -> Result<()> {
    if !floe.catalog().namespace_exists(ns).await? {
        return Ok(());
    }
    for t in floe.tables(ns).await? {
        floe.drop_table(&t, true).await?;
    }
    floe.catalog().drop_namespace(ns).await
}

/// The namespace of the benchmark's tables named by `parts` (each made a plain lower-case word).
fn namespace(options: &BenchOptions, parts: &[&str]) -> Result<Namespace> {
    let mut name = options.namespace_prefix.clone();
    for p in parts {
        name.push('_');
        name.extend(p.chars().map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        }));
    }
    Namespace::parse(&name)
}

/// What `floe bench` runs: the whole benchmark ([`measure`]) summarized into its report
/// ([`report::summarize`]); [`report::write`] then writes it out.
pub async fn benchmark(floe: &Floe, options: &BenchOptions) -> Result<report::BenchReport> {
    let measurements = measure(floe, options).await?;
    Ok(report::summarize(floe, measurements, options.repetitions))
}
