//! The benchmark's report: figures summarized over repetitions (min / median / max), floe's overhead
//! over the raw engines as paired ratios with 95% confidence intervals, the targets checked, the
//! recommendation for `--engine auto`, and the files: `report.json` (every figure and the machine),
//! `report.md` and three SVG charts. This file owns the figures; [`targets`] checks them against the
//! issues' targets, [`markdown`] writes them up, [`charts`] draws them. The upsert benchmark's report
//! (`floe bench --upsert`) is its JSON and Markdown ([`write_upsert`]).

mod charts;
pub(crate) mod markdown;
mod targets;

pub use markdown::{markdown, upsert_markdown};
pub use targets::{ingest_targets, upsert_targets};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::stats::{Ratio, Summary};
use super::{Measurements, PipelineRun, StageFigures};
use crate::error::{Error, Result};
use crate::lakehouse::Floe;

/// Where and on what the benchmark ran.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Physical memory in bytes.
    pub memory_bytes: u64,
    /// Operating system.
    pub os: String,
    /// Kernel release.
    pub kernel: String,
    /// floe's version and build profile.
    pub floe: String,
    /// DuckDB's version.
    pub duckdb: String,
    /// DataFusion's version.
    pub datafusion: String,
    /// Catalog backend and warehouse.
    pub storage: String,
}

impl Machine {
    /// Describe this machine and `floe`'s catalog and warehouse.
    pub fn describe(floe: &Floe) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let memory_bytes = crate::resources::meminfo_bytes("MemTotal").unwrap_or(0);
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("PRETTY_NAME="))
                    .map(|l| l["PRETTY_NAME=".len()..].trim_matches('"').to_string())
            })
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let duckdb = duckdb::Connection::open_in_memory()
            .and_then(|c| c.query_row("SELECT version()", [], |r| r.get::<_, String>(0)))
            .unwrap_or_else(|_| "?".into());
        Machine {
            cpu,
            cpus: crate::resources::cores(),
            memory_bytes,
            os,
            kernel,
            floe: format!(
                "{} ({} profile)",
                env!("CARGO_PKG_VERSION"),
                if cfg!(debug_assertions) { "dev" } else { "release" }
            ),
            duckdb,
            datafusion: datafusion::DATAFUSION_VERSION.to_string(),
            storage: format!(
                "{} catalog, {} warehouse",
                floe.catalog().kind(),
                floe.warehouse().uri().split("://").next().unwrap_or("?")
            ),
        }
    }
}

/// One figure set over repetitions, for a size, engine, path and stage (`total`: the whole
/// pipeline).
#[derive(Clone, Debug, Serialize)]
pub struct SummaryRow {
    /// Input size label.
    pub size: String,
    /// Input bytes.
    pub input_bytes: u64,
    /// Engine.
    pub engine: String,
    /// `floe` or `raw`.
    pub path: String,
    /// Stage, or `total`.
    pub stage: String,
    /// Wall seconds.
    pub seconds: Summary,
    /// CPU seconds.
    pub cpu_seconds: Summary,
    /// Peak resident memory in bytes (for `total`: the largest stage peak).
    pub peak_memory_bytes: Summary,
    /// Bytes read.
    pub bytes_read: Summary,
    /// Bytes written.
    pub bytes_written: Summary,
    /// Rows written per second.
    pub rows_per_s: Summary,
    /// Commit time over wall time (floe only).
    pub commit_share: Option<Summary>,
}

/// floe's time over the raw engine's, per size, engine and stage (`total` included).
#[derive(Clone, Debug, Serialize)]
pub struct OverheadRow {
    /// Input size label.
    pub size: String,
    /// Engine.
    pub engine: String,
    /// Stage, or `total`.
    pub stage: String,
    /// floe seconds / raw seconds, paired by repetition.
    pub floe_over_raw: Ratio,
    /// Median seconds of the raw path.
    pub raw_seconds: f64,
    /// Median seconds of floe's path.
    pub floe_seconds: f64,
    /// Median seconds of each phase of floe's path (`StageReport::phase_seconds`): where the time
    /// beyond the raw engine's goes.
    pub floe_phase_seconds: BTreeMap<String, f64>,
}

/// A target of the benchmark issue, as measured.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// What is required.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// Met, missed, or not measured (`None`).
    pub met: Option<bool>,
}

/// What the measurements say `--engine auto` should choose.
#[derive(Clone, Debug, Serialize)]
pub struct Recommendation {
    /// Per size: the engine with the lower median end-to-end time on floe, and both times.
    pub winners: Vec<(String, String, BTreeMap<String, f64>)>,
    /// The rule, in words.
    pub rule: String,
}

/// The `ballista` engine on a loopback cluster of N executors against local DataFusion (both floe
/// paths, end to end), and against the cluster of the fewest executors.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterRow {
    /// Input size label.
    pub size: String,
    /// Engine label (`ballista:N`).
    pub engine: String,
    /// Executors.
    pub executors: usize,
    /// Median end-to-end seconds.
    pub seconds: f64,
    /// Its time over local DataFusion's, paired by repetition.
    pub over_datafusion: Ratio,
    /// The fewest executors' time over its time (above 1: it scaled), paired by repetition.
    pub speedup_over_fewest: Option<Ratio>,
    /// The `enrich` stage's time over local DataFusion's, paired by repetition.
    pub enrich_over_datafusion: Option<Ratio>,
    /// Bytes the driver received from the cluster over the bytes of data files its stages
    /// committed (the executors write the files; only their entries come back), median over
    /// repetitions.
    pub driver_bytes_per_output_byte: Option<f64>,
}

/// The cluster section of the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClusterReport {
    /// Per size and executor count.
    pub rows: Vec<ClusterRow>,
    /// The largest [`ClusterRow::driver_bytes_per_output_byte`] of any row.
    pub driver_bytes_per_output_byte: Option<f64>,
    /// The plan the cluster ran `enrich` with (its stages: the geoip side is broadcast).
    pub enrich_plan: Option<String>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The machine.
    pub machine: Machine,
    /// When the report was made.
    pub finished_at: String,
    /// Repetitions per run.
    pub repetitions: usize,
    /// Summaries.
    pub summary: Vec<SummaryRow>,
    /// floe over raw.
    pub overhead: Vec<OverheadRow>,
    /// floe's append rows/s over PyIceberg's, paired by repetition, per size.
    pub append_vs_pyiceberg: BTreeMap<String, Ratio>,
    /// floe's append time over arrow-rs's `ArrowWriter` alone on all cores (the physical limit),
    /// paired by repetition, per size.
    pub append_vs_arrow_writer: BTreeMap<String, Ratio>,
    /// floe's `add_files` files/s over PyIceberg's, paired by repetition, per size.
    pub add_files_vs_pyiceberg: BTreeMap<String, Ratio>,
    /// floe's DataFusion full scan time over raw DataFusion's, paired by repetition, per size.
    pub scan_vs_raw: BTreeMap<String, Ratio>,
    /// The same with the table's first column renamed (floe's scan instead of DataFusion's Parquet
    /// scan) over raw DataFusion's, paired by repetition, per size.
    pub renamed_scan_vs_raw: BTreeMap<String, Ratio>,
    /// The cluster against local DataFusion, per size and executor count, and what crossed the
    /// driver's link.
    pub cluster: ClusterReport,
    /// Targets at the largest size.
    pub targets: Vec<Target>,
    /// The recommendation for `--engine auto`.
    pub recommendation: Recommendation,
    /// Every raw figure.
    pub measurements: Measurements,
}

fn total_of(run: &PipelineRun) -> StageFigures {
    let s = &run.stages;
    StageFigures {
        stage: "total".into(),
        seconds: s.iter().map(|x| x.seconds).sum(),
        cpu_seconds: s.iter().map(|x| x.cpu_seconds).sum(),
        peak_memory_bytes: s.iter().map(|x| x.peak_memory_bytes).max().unwrap_or(0),
        bytes_read: s.iter().map(|x| x.bytes_read).sum(),
        bytes_written: s.iter().map(|x| x.bytes_written).sum(),
        rows_out: s.iter().map(|x| x.rows_out).sum(),
        commit_seconds: s.iter().map(|x| x.commit_seconds).sum::<Option<f64>>(),
        driver_bytes_received: s
            .iter()
            .filter_map(|x| x.driver_bytes_received)
            .reduce(|a, b| a + b),
        plan: None,
        phase_seconds: s.iter().fold(BTreeMap::new(), |mut sum, x| {
            for (phase, seconds) in &x.phase_seconds {
                *sum.entry(phase.clone()).or_default() += seconds;
            }
            sum
        }),
    }
}

/// Figures of (size, engine, path, stage) by repetition.
type Series = BTreeMap<(String, String, String, String), Vec<(usize, StageFigures)>>;

fn series(m: &Measurements) -> Series {
    let mut out: Series = BTreeMap::new();
    for run in m.runs.iter().filter(|r| r.error.is_none()) {
        for s in run.stages.iter().cloned().chain([total_of(run)]) {
            out.entry((
                run.size.clone(),
                run.engine.clone(),
                run.path.clone(),
                s.stage.clone(),
            ))
            .or_default()
            .push((run.repetition, s));
        }
    }
    out
}

fn sizes_in_order(m: &Measurements) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = m
        .runs
        .iter()
        .map(|r| (r.size.clone(), r.input_bytes))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    v.sort_by_key(|(_, b)| *b);
    v.dedup_by(|a, b| a.0 == b.0);
    v
}

fn stage_order(stage: &str) -> usize {
    crate::pipeline::engine::Stage::ALL
        .iter()
        .position(|s| s.name() == stage)
        .unwrap_or(usize::MAX)
}

/// Summarize `m` into a report.
pub fn summarize(floe: &Floe, m: Measurements, repetitions: usize) -> BenchReport {
    let series = series(&m);
    let input_bytes: BTreeMap<String, u64> = m.runs.iter().map(|r| (r.size.clone(), r.input_bytes)).collect();
    let mut summary = Vec::new();
    for ((size, engine, path, stage), figs) in &series {
        let f = |g: &dyn Fn(&StageFigures) -> f64| {
            Summary::of(&figs.iter().map(|(_, x)| g(x)).collect::<Vec<_>>())
        };
        summary.push(SummaryRow {
            size: size.clone(),
            input_bytes: input_bytes.get(size).copied().unwrap_or(0),
            engine: engine.clone(),
            path: path.clone(),
            stage: stage.clone(),
            seconds: f(&|x| x.seconds),
            cpu_seconds: f(&|x| x.cpu_seconds),
            peak_memory_bytes: f(&|x| x.peak_memory_bytes as f64),
            bytes_read: f(&|x| x.bytes_read as f64),
            bytes_written: f(&|x| x.bytes_written as f64),
            rows_per_s: f(&|x| x.rows_per_s()),
            commit_share: (path == "floe").then(|| f(&|x| x.commit_seconds.unwrap_or(0.0) / x.seconds)),
        });
    }
    summary.sort_by_key(|r| {
        (
            r.input_bytes,
            r.engine.clone(),
            r.path.clone(),
            stage_order(&r.stage),
        )
    });

    let mut overhead = Vec::new();
    for ((size, engine, path, stage), figs) in &series {
        if path != "floe" {
            continue;
        }
        let Some(raw) = series.get(&(size.clone(), engine.clone(), "raw".into(), stage.clone())) else {
            continue;
        };
        let by_rep: BTreeMap<usize, f64> = raw.iter().map(|(r, x)| (*r, x.seconds)).collect();
        let (a, b): (Vec<f64>, Vec<f64>) = figs
            .iter()
            .filter_map(|(r, x)| by_rep.get(r).map(|raw| (x.seconds, *raw)))
            .unzip();
        let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (_, x) in figs {
            for (phase, seconds) in &x.phase_seconds {
                phases.entry(phase.clone()).or_default().push(*seconds);
            }
        }
        overhead.push(OverheadRow {
            size: size.clone(),
            engine: engine.clone(),
            stage: stage.clone(),
            floe_over_raw: Ratio::paired(&a, &b),
            raw_seconds: Summary::of(&b).median,
            floe_seconds: Summary::of(&a).median,
            floe_phase_seconds: phases
                .into_iter()
                .map(|(phase, v)| (phase, Summary::of(&v).median))
                .collect(),
        });
    }
    overhead.sort_by_key(|r| {
        (
            input_bytes.get(&r.size).copied(),
            r.engine.clone(),
            stage_order(&r.stage),
        )
    });

    let mut append_vs_pyiceberg = BTreeMap::new();
    for (size, _) in sizes_in_order(&m) {
        let runs: Vec<_> = m.peer.iter().filter(|p| p.size == size).collect();
        if runs.is_empty() {
            continue;
        }
        let floe_rps: Vec<f64> = runs
            .iter()
            .map(|p| p.append.rows as f64 / p.append.floe_seconds)
            .collect();
        let py_rps: Vec<f64> = runs
            .iter()
            .map(|p| p.append.rows as f64 / p.append.pyiceberg_seconds)
            .collect();
        append_vs_pyiceberg.insert(size, Ratio::paired(&floe_rps, &py_rps));
    }

    let append_vs_arrow_writer = append_vs_arrow_writer(&m);
    let mut add_files_vs_pyiceberg = BTreeMap::new();
    let mut scan_vs_raw = BTreeMap::new();
    let mut renamed_scan_vs_raw = BTreeMap::new();
    for (size, _) in sizes_in_order(&m) {
        let adds: Vec<_> = m
            .add_files
            .iter()
            .filter(|a| a.size == size)
            .map(|a| &a.add_files)
            .collect();
        if !adds.is_empty() {
            // files/s over files/s: the same files on both sides, so PyIceberg's time over floe's.
            let floe_fps: Vec<f64> = adds.iter().map(|a| a.files as f64 / a.floe_seconds).collect();
            let py_fps: Vec<f64> = adds
                .iter()
                .map(|a| a.files as f64 / a.pyiceberg_seconds)
                .collect();
            add_files_vs_pyiceberg.insert(size.clone(), Ratio::paired(&floe_fps, &py_fps));
        }
        let scans: Vec<_> = m
            .scans
            .iter()
            .filter(|x| x.size == size)
            .map(|x| &x.scan)
            .collect();
        if !scans.is_empty() {
            let floe_s: Vec<f64> = scans.iter().map(|x| x.floe_seconds).collect();
            let raw_s: Vec<f64> = scans.iter().map(|x| x.raw_seconds).collect();
            let (renamed_s, raw_r): (Vec<f64>, Vec<f64>) = scans
                .iter()
                .filter_map(|x| Some((x.floe_renamed_seconds?, x.raw_seconds)))
                .unzip();
            if !renamed_s.is_empty() {
                renamed_scan_vs_raw.insert(size.clone(), Ratio::paired(&renamed_s, &raw_r));
            }
            scan_vs_raw.insert(size, Ratio::paired(&floe_s, &raw_s));
        }
    }

    let cluster = cluster_report(&m, &series);
    let recommendation = recommend(&m, &summary);
    let mut targets = targets::all(&m, &summary, &overhead, &append_vs_pyiceberg, &scan_vs_raw);
    targets.extend(targets::cluster_targets(&cluster));
    BenchReport {
        machine: Machine::describe(floe),
        finished_at: chrono::Utc::now().to_rfc3339(),
        repetitions,
        summary,
        overhead,
        append_vs_pyiceberg,
        append_vs_arrow_writer,
        add_files_vs_pyiceberg,
        scan_vs_raw,
        renamed_scan_vs_raw,
        cluster,
        targets,
        recommendation,
        measurements: m,
    }
}

/// The cluster section: [`ClusterRow`]s, the worst driver-bytes ratio and the enrich plan.
fn cluster_report(m: &Measurements, series: &Series) -> ClusterReport {
    let rows = cluster_rows(m, series);
    let enrich_plan = series
        .iter()
        .filter(|((_, engine, path, stage), _)| {
            super::on_cluster(engine) && path == "floe" && stage == "enrich"
        })
        .flat_map(|(_, v)| v.iter().filter_map(|(_, x)| x.plan.clone()))
        .next();
    ClusterReport {
        driver_bytes_per_output_byte: rows
            .iter()
            .filter_map(|r| r.driver_bytes_per_output_byte)
            .reduce(f64::max),
        rows,
        enrich_plan,
    }
}

/// [`ClusterRow`]s: every `ballista:N` floe total paired by repetition with the same size's local
/// DataFusion total and with the fewest executors' total.
fn cluster_rows(m: &Measurements, series: &Series) -> Vec<ClusterRow> {
    let figures = |size: &str, engine: &str, stage: &str| -> BTreeMap<usize, StageFigures> {
        series
            .get(&(size.into(), engine.into(), "floe".into(), stage.into()))
            .map(|v| v.iter().map(|(r, x)| (*r, x.clone())).collect())
            .unwrap_or_default()
    };
    let seconds = |f: BTreeMap<usize, StageFigures>| -> BTreeMap<usize, f64> {
        f.into_iter().map(|(r, x)| (r, x.seconds)).collect()
    };
    let totals = |size: &str, engine: &str| seconds(figures(size, engine, "total"));
    let paired = |a: &BTreeMap<usize, f64>, b: &BTreeMap<usize, f64>| {
        let (x, y): (Vec<f64>, Vec<f64>) = a.iter().filter_map(|(r, v)| b.get(r).map(|w| (*v, *w))).unzip();
        Ratio::paired(&x, &y)
    };
    let mut out = Vec::new();
    for (size, _) in sizes_in_order(m) {
        let mut labels: Vec<(usize, String)> = m
            .runs
            .iter()
            .filter(|r| r.size == size && super::on_cluster(&r.engine))
            .map(|r| {
                let n = super::cluster_executors(&r.engine).unwrap_or(0);
                (n, r.engine.clone())
            })
            .collect();
        labels.sort();
        labels.dedup();
        let datafusion = totals(&size, "datafusion");
        let fewest = labels.first().map(|(_, l)| totals(&size, l)).unwrap_or_default();
        for (n, label) in &labels {
            let mine = totals(&size, label);
            if mine.is_empty() {
                continue;
            }
            let enrich = seconds(figures(&size, label, "enrich"));
            let local_enrich = seconds(figures(&size, "datafusion", "enrich"));
            let driver: Vec<f64> = figures(&size, label, "total")
                .values()
                .filter_map(|x| Some(x.driver_bytes_received? as f64 / x.bytes_written.max(1) as f64))
                .collect();
            out.push(ClusterRow {
                size: size.clone(),
                engine: label.clone(),
                executors: *n,
                seconds: Summary::of(&mine.values().copied().collect::<Vec<_>>()).median,
                over_datafusion: paired(&mine, &datafusion),
                speedup_over_fewest: (labels.len() > 1).then(|| paired(&fewest, &mine)),
                enrich_over_datafusion: (!enrich.is_empty() && !local_enrich.is_empty())
                    .then(|| paired(&enrich, &local_enrich)),
                driver_bytes_per_output_byte: (!driver.is_empty()).then(|| Summary::of(&driver).median),
            });
        }
    }
    out
}

fn find<'a>(
    summary: &'a [SummaryRow],
    size: &str,
    engine: &str,
    path: &str,
    stage: &str,
) -> Option<&'a SummaryRow> {
    summary
        .iter()
        .find(|r| r.size == size && r.engine == engine && r.path == path && r.stage == stage)
}

fn engines_of(summary: &[SummaryRow]) -> Vec<String> {
    summary
        .iter()
        .map(|r| r.engine.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn recommend(m: &Measurements, summary: &[SummaryRow]) -> Recommendation {
    let engines = engines_of(summary);
    let mut winners = Vec::new();
    for (size, _) in sizes_in_order(m) {
        let rows: Vec<&SummaryRow> = engines
            .iter()
            .filter_map(|e| find(summary, &size, e, "floe", "total"))
            .collect();
        let times: BTreeMap<String, f64> = rows
            .iter()
            .map(|r| (r.engine.clone(), r.seconds.median))
            .collect();
        let Some(best) = rows
            .iter()
            .min_by(|a, b| a.seconds.median.total_cmp(&b.seconds.median))
        else {
            continue;
        };
        // A win counts only when the repetitions do not overlap: otherwise it is a tie.
        let clear = rows
            .iter()
            .filter(|r| r.engine != best.engine)
            .all(|r| best.seconds.max < r.seconds.min);
        let w = if clear {
            best.engine.clone()
        } else {
            "tie".to_string()
        };
        winners.push((size, w, times));
    }
    let decided: BTreeSet<&String> = winners
        .iter()
        .map(|(_, w, _)| w)
        .filter(|w| *w != "tie")
        .collect();
    let by_size: Vec<String> = winners
        .iter()
        .map(|(size, w, times)| {
            let t: Vec<String> = times.iter().map(|(e, t)| format!("{e} {t:.2} s")).collect();
            format!("{size}: {w} ({})", t.join(", "))
        })
        .collect();
    let rule = match (decided.iter().next(), decided.len(), winners.last()) {
        (_, _, None) => "no floe run to compare".to_string(),
        (None, ..) => format!(
            "no engine was clearly faster ({}): either serves",
            by_size.join("; ")
        ),
        (Some(e), 1, Some(last)) => format!(
            "{e} was faster end to end wherever one engine was clearly faster ({}): choose {e} up to {} \
             at least; beyond the measured range, prefer the engine whose peak memory stays lower",
            by_size.join("; "),
            last.0
        ),
        _ => format!(
            "the faster engine changes with size ({}): choose by size",
            by_size.join("; ")
        ),
    };
    // Which engine each stage favours at the largest size: the work that decides.
    let mut rule = rule;
    if let Some((size, ..)) = winners.last() {
        let per_stage: Vec<String> = crate::pipeline::engine::Stage::ALL
            .iter()
            .filter_map(|s| {
                engines
                    .iter()
                    .filter_map(|e| find(summary, size, e, "floe", s.name()).map(|r| (e, r.seconds.median)))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(e, _)| format!("{} {e}", s.name()))
            })
            .collect();
        if !per_stage.is_empty() {
            rule.push_str(&format!(". Per stage at {size}: {}", per_stage.join(", ")));
        }
    }
    Recommendation { winners, rule }
}

fn gb(b: f64) -> String {
    format!("{:.2} GB", b / 1e9)
}

fn fmt_ratio(r: &Ratio) -> String {
    match (r.low, r.high) {
        (Some(l), Some(h)) => format!("{:.2}x (95% CI {:.2}-{:.2}, n={})", r.mean, l, h, r.n),
        _ => format!("{:.2}x (n={})", r.mean, r.n),
    }
}

fn fmt_summary(s: &Summary, unit: &dyn Fn(f64) -> String) -> String {
    if s.n > 1 {
        format!("{} ({}-{})", unit(s.median), unit(s.min), unit(s.max))
    } else {
        unit(s.median)
    }
}

fn secs(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// Write `report.json`, `report.md`, `time.svg`, `memory.svg` and `overhead.svg` into `dir`;
/// returns the paths.
pub fn write(r: &BenchReport, dir: &Path) -> Result<Vec<PathBuf>> {
    let [json, md] = write_json_and_markdown(r, &markdown(r), dir)?;
    let engines = engines_of(&r.summary);
    let mb = |size: &str| {
        r.summary
            .iter()
            .find(|x| x.size == size)
            .map(|x| x.input_bytes as f64 / 1e6)
            .unwrap_or(0.0)
    };
    let mut time = Vec::new();
    let mut memory = Vec::new();
    for e in &engines {
        for path in ["floe", "raw"] {
            let rows: Vec<&SummaryRow> = r
                .summary
                .iter()
                .filter(|x| &x.engine == e && x.path == path && x.stage == "total")
                .collect();
            if rows.is_empty() {
                continue;
            }
            time.push((
                format!("{e} {path}"),
                rows.iter().map(|x| (mb(&x.size), x.seconds.median)).collect(),
            ));
            memory.push((
                format!("{e} {path}"),
                rows.iter()
                    .map(|x| (mb(&x.size), x.peak_memory_bytes.max / 1e9))
                    .collect(),
            ));
        }
    }
    let overhead: Vec<(String, Vec<(f64, f64)>)> = engines
        .iter()
        .map(|e| {
            (
                format!("{e}: floe / raw"),
                r.overhead
                    .iter()
                    .filter(|o| &o.engine == e && o.stage == "total")
                    .map(|o| (mb(&o.size), o.floe_over_raw.mean))
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let mut out = vec![json, md];
    for (file, title, y, lines, guide) in [
        ("time.svg", "End-to-end time (median)", "seconds", time, None),
        (
            "memory.svg",
            "Peak memory (largest stage)",
            "GB",
            memory,
            Some(4.0),
        ),
        (
            "overhead.svg",
            "floe over the raw engine, end to end",
            "floe / raw",
            overhead,
            Some(1.3),
        ),
    ] {
        let p = dir.join(file);
        charts::chart(&p, title, y, &lines, guide)?;
        if p.exists() {
            out.push(p);
        }
    }
    Ok(out)
}

/// Write the upsert benchmark's `report.json` and `report.md` into `dir`; returns the paths.
pub fn write_upsert(r: &crate::bench::UpsertBenchReport, dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(write_json_and_markdown(r, &upsert_markdown(r), dir)?.into())
}

/// Write `r` as `report.json` and `markdown` as `report.md` into `dir` (created if missing); their
/// paths.
pub fn write_json_and_markdown<T: Serialize>(r: &T, markdown: &str, dir: &Path) -> Result<[PathBuf; 2]> {
    std::fs::create_dir_all(dir)?;
    let json = dir.join("report.json");
    std::fs::write(
        &json,
        serde_json::to_vec_pretty(r).map_err(|e| Error::internal(format!("report json: {e}")))?,
    )?;
    let md = dir.join("report.md");
    std::fs::write(&md, markdown)?;
    Ok([json, md])
}

/// floe's append time over the bare `ArrowWriter`s' on the same batches, paired by repetition, per
/// size.
pub(super) fn append_vs_arrow_writer(m: &Measurements) -> BTreeMap<String, Ratio> {
    let mut out = BTreeMap::new();
    for (size, _) in sizes_in_order(m) {
        let runs: Vec<_> = m.peer.iter().filter(|p| p.size == size).collect();
        if runs.is_empty() {
            continue;
        }
        let floe: Vec<f64> = runs.iter().map(|p| p.append.floe_seconds).collect();
        let arrow: Vec<f64> = runs.iter().map(|p| p.append.arrow_writer_seconds).collect();
        out.insert(size, Ratio::paired(&floe, &arrow));
    }
    out
}
