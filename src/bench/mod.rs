//! `floe bench`: the engine comparison benchmark. For each input size, repetition and engine it runs
//! the whole clickstream pipeline into fresh tables, and the same stage logic on the raw engine over
//! plain Parquet (no Iceberg, no catalog), in a balanced order (`A B B A`, the engines and the two
//! paths alternating) so machine drift hits all alike. In the same run it checks that the engines'
//! outputs are equal, pits floe's append and `add_files` against PyIceberg's on the same rows, reads a
//! pipeline table in full through floe's DataFusion path and through raw DataFusion, measures commit
//! latency as a table's history grows, and (given a Postgres source) extraction with `floe ingest`.
//! [`report`] turns the figures into JSON, Markdown and charts.

pub mod ingest;
pub mod peer;
pub mod raw;
pub mod report;
pub mod scan;
pub mod stats;
pub mod storage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use self::ingest::{ingest_benchmark, IngestBenchOptions, IngestBenchReport, IngestVariant};
pub use self::storage::{core_benchmark, CoreBenchReport, StorageBenchOptions, StorageFootprint, YearReport};
use crate::catalog::{Namespace, TableName};
use crate::cluster::loopback::LoopbackCluster;
use crate::error::{Error, ErrorKind, Result};
use crate::generate::{GenerateOptions, OutputFormat};
use crate::lakehouse::Floe;
use crate::pipeline::engine::{BallistaEngine, DataFusionEngine, DuckDbEngine, Engine, Stage};
use crate::pipeline::input::resolve_inputs;
use crate::pipeline::runner::{run, RunOptions};
use crate::table::At;

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
    /// Run every pass in a child process of this floe executable (`floe bench-pass`), so a pass's
    /// memory is its own and not what earlier passes left with the allocator. `None`: in process.
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

/// The engine of a label; `ballista` runs on `cluster`, else on the cluster floe's settings name.
fn engine_of(floe: &Floe, name: &str, cluster: Option<&str>) -> Result<Arc<dyn Engine>> {
    match name {
        "duckdb" => Ok(Arc::new(DuckDbEngine::default())),
        "datafusion" => Ok(Arc::new(DataFusionEngine::default())),
        b if on_cluster(b) => {
            let url = cluster
                .map(str::to_string)
                .or_else(|| floe.settings().cluster.clone())
                .ok_or_else(|| {
                    Error::invalid("the ballista engine needs a cluster (--cluster df://HOST:PORT)")
                })?;
            Ok(Arc::new(BallistaEngine::new(&url, floe.settings().clone())?))
        }
        other => Err(Error::invalid(format!(
            "unknown engine {other:?} (duckdb, datafusion, ballista)"
        ))),
    }
}

/// The generated CSV input of `bytes` for `seed`, from the cache under `out/inputs` or generated
/// there (a directory without its completion marker is generated again).
async fn input(floe: &Floe, options: &BenchOptions, bytes: u64) -> Result<InputInfo> {
    let dir = std::path::absolute(options.out.join("inputs").join(format!(
        "seed-{}-{}",
        options.seed,
        size_label(bytes)
    )))?;
    // The marker sits beside the directory: everything inside is input.
    let marker = dir.with_extension("complete.json");
    if let Ok(text) = std::fs::read_to_string(&marker) {
        if let Ok(info) = serde_json::from_str::<serde_json::Value>(&text) {
            return Ok(InputInfo {
                size: size_label(bytes),
                bytes: info["bytes"].as_u64().unwrap_or(0),
                events: info["events"].as_u64().unwrap_or(0),
                dir: dir.display().to_string(),
            });
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let mut g = GenerateOptions::from_target_size(bytes, OutputFormat::Csv, options.seed)?;
    g.files = (bytes / 256_000_000).max(1) as usize;
    let report = crate::generate::generate(floe.storage(), &dir.display().to_string(), &g, None).await?;
    std::fs::write(
        &marker,
        serde_json::json!({"bytes": report.bytes, "events": report.events, "seed": options.seed}).to_string(),
    )?;
    Ok(InputInfo {
        size: size_label(bytes),
        bytes: report.bytes,
        events: report.events,
        dir: dir.display().to_string(),
    })
}

/// Drop every table of `ns` with its files, then `ns`.
async fn purge_namespace(floe: &Floe, ns: &Namespace) -> Result<()> {
    if !floe.catalog().namespace_exists(ns).await? {
        return Ok(());
    }
    for t in floe.tables(ns).await? {
        floe.drop_table(&t, true).await?;
    }
    floe.catalog().drop_namespace(ns).await
}

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

/// One floe pass of the pipeline on `engine` into fresh tables of `ns`.
async fn floe_pass(
    floe: &Floe,
    ns: &Namespace,
    engine: Arc<dyn Engine>,
    input: &InputInfo,
) -> Result<Vec<StageFigures>> {
    purge_namespace(floe, ns).await?;
    floe.ensure_namespace(ns).await?;
    let options = RunOptions::new(ns.clone(), Some(input.dir.clone()), vec![engine]);
    let report = run(floe, &options).await?;
    Ok(report
        .stages
        .iter()
        .map(|s| StageFigures {
            stage: s.stage.clone(),
            seconds: s.seconds,
            cpu_seconds: s.cpu_seconds,
            peak_memory_bytes: s.peak_memory_bytes.unwrap_or(0),
            bytes_read: s.bytes_read,
            bytes_written: s.bytes_written,
            rows_out: s.rows_out.values().sum(),
            commit_seconds: Some(s.commit_seconds),
        })
        .collect())
}

/// One raw pass on `engine` in the scratch directory `work` (removed afterwards).
async fn raw_pass(floe: &Floe, work: &Path, engine: &str, input: &InputInfo) -> Result<Vec<StageFigures>> {
    let dir = std::path::absolute(work.join(engine))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let files = resolve_inputs(floe.storage(), &input.dir).await?;
    let stages = match engine {
        "duckdb" => raw::duckdb(&DuckDbEngine::default(), &files, &dir).await,
        _ => raw::datafusion(&DataFusionEngine::default(), floe.storage(), &files, &dir).await,
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(stages?
        .into_iter()
        .map(|s| StageFigures {
            stage: s.stage,
            seconds: s.usage.wall_seconds,
            cpu_seconds: s.usage.cpu_seconds,
            peak_memory_bytes: s.usage.peak_memory_bytes,
            bytes_read: s.bytes_read,
            bytes_written: s.bytes_written,
            rows_out: s.rows_out,
            commit_seconds: None,
        })
        .collect())
}

/// One pass of the pipeline: `path` `floe` runs it on `engine` into fresh tables of `ns` (a
/// `ballista` engine on `cluster`, or on the cluster of floe's settings), `raw` runs the raw engine
/// in the scratch directory `work`. This is what `floe bench-pass` runs in a child process.
pub async fn run_pass(
    floe: &Floe,
    path: &str,
    engine: &str,
    input: &InputInfo,
    ns: &Namespace,
    work: &Path,
    cluster: Option<&str>,
) -> Result<Vec<StageFigures>> {
    match path {
        "floe" => floe_pass(floe, ns, engine_of(floe, engine, cluster)?, input).await,
        "raw" => raw_pass(floe, work, engine, input).await,
        other => Err(Error::invalid(format!(
            "unknown benchmark path {other:?} (floe, raw)"
        ))),
    }
}

/// [`run_pass`] in a child process: `exe bench-pass ...`, with floe's settings (and `cluster`) in its
/// environment; the child prints the stage figures as JSON.
#[allow(clippy::too_many_arguments)]
async fn pass_in_child(
    exe: &Path,
    floe: &Floe,
    path: &str,
    engine: &str,
    input: &InputInfo,
    ns: &Namespace,
    work: &Path,
    cluster: Option<&str>,
) -> Result<Vec<StageFigures>> {
    let mut command = tokio::process::Command::new(exe);
    command.envs(floe.settings().to_vars());
    if let Some(url) = cluster {
        command.env("FLOE_CLUSTER", url);
    }
    let out = command
        .args(["bench-pass", "--path", path, "--engine", engine, "--input"])
        .arg(&input.dir)
        .arg("--namespace")
        .arg(ns.to_string())
        .arg("--work")
        .arg(work)
        .kill_on_drop(true)
        .output()
        .await?;
    if !out.status.success() {
        return Err(Error::new(
            crate::error::ErrorKind::Engine,
            format!(
                "benchmark pass failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::internal(format!("benchmark pass printed no stage figures: {e}")))
}

/// Diff every output table of the pipeline between two namespaces' `main`.
async fn equivalence(floe: &Floe, a: &Namespace, b: &Namespace) -> Result<(bool, Vec<TableVerdict>)> {
    let mut tables: Vec<&str> = Stage::ALL.iter().flat_map(|s| s.outputs()).copied().collect();
    tables.dedup();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut all = true;
    for t in tables.into_iter().filter(|t| seen.insert(*t)) {
        let left = crate::diff::DiffSide {
            table: TableName::new(a.clone(), t)?,
            at: At::Current,
        };
        let right = crate::diff::DiffSide {
            table: TableName::new(b.clone(), t)?,
            at: At::Current,
        };
        let d = crate::diff::diff(floe, &left, &right, &crate::diff::DiffOptions::default()).await?;
        all &= d.equal;
        out.push(TableVerdict {
            table: t.to_string(),
            equal: d.equal,
            decided_by: format!("{:?}", d.decided_by).to_lowercase(),
            rows: (d.left_rows, d.right_rows),
        });
    }
    Ok((all, out))
}

/// The `raw_events` of `ns` at `main` as one Parquet file (the peer appends its rows).
async fn export_raw_events(floe: &Floe, ns: &Namespace, path: &Path) -> Result<()> {
    use futures::TryStreamExt;
    let name = TableName::new(ns.clone(), crate::pipeline::tables::RAW_EVENTS)?;
    let mut scan = floe.scan(&name, &Default::default()).await?;
    // Its folder exists only when a raw pass ran before (not with --no-raw).
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(path)
        .map_err(|e| Error::wrap(ErrorKind::Storage, format!("cannot create {}", path.display()), e))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, scan.schema.clone(), None)?;
    while let Some(b) = scan.batches.try_next().await? {
        w.write(&b)?;
    }
    w.close()?;
    Ok(())
}

/// What `floe bench` runs: the whole benchmark ([`measure`]) summarized into its report
/// ([`report::summarize`]); [`report::write`] then writes it out.
pub async fn benchmark(floe: &Floe, options: &BenchOptions) -> Result<report::BenchReport> {
    let measurements = measure(floe, options).await?;
    Ok(report::summarize(floe, measurements, options.repetitions))
}

/// Run the benchmark and collect every figure (see [`report::summarize`] and [`report::write`]).
pub async fn measure(floe: &Floe, options: &BenchOptions) -> Result<Measurements> {
    if options.sizes.is_empty() || options.engines.is_empty() || options.repetitions == 0 {
        return Err(Error::invalid(
            "nothing to run: give at least one size, engine and repetition",
        ));
    }
    // Labels: every engine, `ballista` once per executor count (`ballista:N`).
    let mut labels: Vec<String> = Vec::new();
    for e in &options.engines {
        if on_cluster(e) {
            if options.executors.is_empty() || options.executors.contains(&0) {
                return Err(Error::invalid("--executors: give executor counts of at least 1"));
            }
            labels.extend(options.executors.iter().map(|n| format!("ballista:{n}")));
        } else {
            engine_of(floe, e, None)?; // an unknown engine fails before any work
            labels.push(e.clone());
        }
    }
    let engines = &labels;
    // One loopback cluster per executor count, up for the whole benchmark.
    let mut clusters: BTreeMap<String, LoopbackCluster> = BTreeMap::new();
    for label in engines.iter().filter(|l| on_cluster(l)) {
        let exe = options
            .cluster_exe
            .as_ref()
            .or(options.isolate.as_ref())
            .ok_or_else(|| {
                Error::invalid("the ballista engine needs the floe executable to start its loopback cluster")
            })?;
        let n = cluster_executors(label).unwrap_or(1);
        clusters.insert(label.clone(), LoopbackCluster::start(exe, floe.settings(), n)?);
    }
    std::fs::create_dir_all(&options.out)?;
    let peer_skipped = if options.peer {
        peer::unavailable()
    } else {
        Some("not requested (--no-peer)".into())
    };
    let raw_engines = engines.iter().filter(|e| !on_cluster(e)).count();
    let per_rep = (engines.len() + if options.raw { raw_engines } else { 0 }) as u64
        + engines.len().saturating_sub(1) as u64
        + u64::from(peer_skipped.is_none())
        + u64::from(engines.iter().any(|e| e == "datafusion"));
    let total = options.sizes.len() as u64 * (1 + options.repetitions as u64 * per_rep)
        + 1
        + u64::from(options.ingest.is_some());
    let mut done = 0u64;
    let step = |done: &mut u64, what: String| {
        if let Some(p) = &options.progress {
            p(&what, *done, total);
        }
        *done += 1;
    };

    let mut m = Measurements {
        inputs: Vec::new(),
        runs: Vec::new(),
        equivalence: Vec::new(),
        peer: Vec::new(),
        add_files: Vec::new(),
        scans: Vec::new(),
        peer_skipped,
        storage: CoreBenchReport::default(),
        ingest: None,
    };
    for &bytes in &options.sizes {
        let label = size_label(bytes);
        step(
            &mut done,
            format!("{label}: generating the input (cached by seed and size)"),
        );
        let input = input(floe, options, bytes).await?;
        let peer_file =
            std::path::absolute(options.out.join("raw-work").join(format!("peer-{label}.parquet")))?;
        for rep in 0..options.repetitions {
            // A B B A: engines and paths alternate from one repetition to the next.
            let mut order: Vec<(usize, &str)> = Vec::new();
            for (i, e) in engines.iter().enumerate() {
                order.push((i, "floe"));
                if options.raw && !on_cluster(e) {
                    order.push((i, "raw"));
                }
            }
            if rep % 2 == 1 {
                order.reverse();
            }
            let mut floe_namespaces: BTreeMap<usize, Namespace> = BTreeMap::new();
            for (i, path) in order {
                let name = &engines[i];
                step(
                    &mut done,
                    format!(
                        "{label} repetition {}/{}: {name} {path}",
                        rep + 1,
                        options.repetitions
                    ),
                );
                let ns = namespace(options, &[&label, &format!("r{rep}"), name])?;
                let work = std::path::absolute(options.out.join("raw-work"))?;
                let cluster = clusters.get(name).map(|c| c.url());
                let outcome = match &options.isolate {
                    Some(exe) => pass_in_child(exe, floe, path, name, &input, &ns, &work, cluster).await,
                    None => run_pass(floe, path, name, &input, &ns, &work, cluster).await,
                };
                if path == "floe" {
                    if outcome.is_ok() {
                        floe_namespaces.insert(i, ns);
                    } else {
                        purge_namespace(floe, &ns).await?;
                    }
                }
                let (stages, error) = match outcome {
                    Ok(s) => (s, None),
                    Err(e) => {
                        tracing::warn!(size = %label, engine = %name, path, error = %e, "benchmark pass failed");
                        (Vec::new(), Some(e.to_string()))
                    }
                };
                m.runs.push(PipelineRun {
                    size: label.clone(),
                    input_bytes: input.bytes,
                    engine: name.clone(),
                    path: path.to_string(),
                    repetition: rep,
                    stages,
                    error,
                });
            }
            for other in 1..engines.len() {
                let (Some(a), Some(b)) = (floe_namespaces.get(&0), floe_namespaces.get(&other)) else {
                    continue;
                };
                step(
                    &mut done,
                    format!(
                        "{label} repetition {}: equivalence check, {} and {}",
                        rep + 1,
                        engines[0],
                        engines[other]
                    ),
                );
                let (equal, tables) = equivalence(floe, a, b).await?;
                m.equivalence.push(EquivalenceRun {
                    size: label.clone(),
                    engines: (engines[0].clone(), engines[other].clone()),
                    repetition: rep,
                    equal,
                    tables,
                });
            }
            if m.peer_skipped.is_none() {
                step(
                    &mut done,
                    format!("{label} repetition {}: floe and PyIceberg appends", rep + 1),
                );
                if let Some(ns) = floe_namespaces.get(&0) {
                    if rep == 0 || !peer_file.exists() {
                        export_raw_events(floe, ns, &peer_file).await?;
                    }
                    let peer_ns = namespace(options, &["peer"])?;
                    let dir = peer_file.parent().unwrap_or(Path::new("."));
                    let append =
                        peer::append_pair(floe, &peer_ns, &format!("raw_events_{rep}"), &peer_file, dir)
                            .await
                            .map_err(|e| e.context(format!("{label}, peer append")))?;
                    m.peer.push(PeerRun {
                        size: label.clone(),
                        repetition: rep,
                        append,
                    });
                    let add_files =
                        peer::add_files_pair(floe, &peer_ns, &format!("added_events_{rep}"), &peer_file, dir)
                            .await
                            .map_err(|e| e.context(format!("{label}, peer add_files")))?;
                    m.add_files.push(AddFilesRun {
                        size: label.clone(),
                        repetition: rep,
                        add_files,
                    });
                }
            }
            // The full scan reads the DataFusion pass's largest table, alternating which side goes first.
            if let Some(ns) = engines
                .iter()
                .position(|e| e == "datafusion")
                .and_then(|i| floe_namespaces.get(&i))
            {
                step(
                    &mut done,
                    format!(
                        "{label} repetition {}: full scan, floe and raw DataFusion",
                        rep + 1
                    ),
                );
                let table = TableName::new(ns.clone(), crate::pipeline::tables::RAW_EVENTS)?;
                let scan = scan::scan_pair(floe, &table, rep % 2 == 0)
                    .await
                    .map_err(|e| e.context(format!("{label}, full scan")))?;
                m.scans.push(ScanRun {
                    size: label.clone(),
                    repetition: rep,
                    scan,
                });
            }
            for ns in floe_namespaces.values() {
                purge_namespace(floe, ns).await?;
            }
        }
        let _ = std::fs::remove_file(&peer_file);
        m.inputs.push(input);
    }
    step(
        &mut done,
        format!("commit latency over {} snapshots", options.history),
    );
    let ns = namespace(options, &["storage"])?;
    m.storage = core_benchmark(
        floe,
        &ns,
        &StorageBenchOptions {
            snapshots: options.history,
            rows: options.append_rows,
            repetitions: options.repetitions,
            days: options.days,
            rows_per_day: options.rows_per_day,
        },
    )
    .await?;
    purge_namespace(floe, &ns).await?;
    if let Some(ingest) = &options.ingest {
        step(&mut done, format!("extraction of {} Postgres rows", ingest.rows));
        let ns = namespace(options, &["ingest"])?;
        m.ingest = Some(ingest_benchmark(floe, &ns, ingest).await?);
        purge_namespace(floe, &ns).await?;
    }
    if let Ok(peer_ns) = namespace(options, &["peer"]) {
        purge_namespace(floe, &peer_ns).await?;
    }
    let _ = std::fs::remove_dir_all(options.out.join("raw-work"));
    if let Some(p) = &options.progress {
        p("done", total, total);
    }
    Ok(m)
}
