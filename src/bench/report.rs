//! The benchmark's report: figures summarized over repetitions (min / median / max), floe's overhead
//! over the raw engines as paired ratios with 95% confidence intervals, the targets checked, the
//! recommendation for `--engine auto`, and the files: `report.json` (every figure and the machine),
//! `report.md` and three SVG charts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::Serialize;

use super::stats::{Ratio, Summary};
use super::{Measurements, PipelineRun, StageFigures};
use crate::error::{Error, ErrorKind, Result};
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
        overhead.push(OverheadRow {
            size: size.clone(),
            engine: engine.clone(),
            stage: stage.clone(),
            floe_over_raw: Ratio::paired(&a, &b),
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

    let recommendation = recommend(&m, &summary);
    let targets = targets(&m, &summary, &overhead, &append_vs_pyiceberg);
    BenchReport {
        machine: Machine::describe(floe),
        finished_at: chrono::Utc::now().to_rfc3339(),
        repetitions,
        summary,
        overhead,
        append_vs_pyiceberg,
        targets,
        recommendation,
        measurements: m,
    }
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

fn targets(
    m: &Measurements,
    summary: &[SummaryRow],
    overhead: &[OverheadRow],
    peer: &BTreeMap<String, Ratio>,
) -> Vec<Target> {
    let Some((size, _)) = sizes_in_order(m).last().cloned() else {
        return Vec::new();
    };
    let engines = engines_of(summary);
    let mut out = Vec::new();
    for e in &engines {
        let r = overhead
            .iter()
            .find(|o| o.size == size && &o.engine == e && o.stage == "total");
        out.push(Target {
            target: format!("{e}: floe end to end within 1.3x of raw {e} ({size})"),
            measured: r
                .map(|r| fmt_ratio(&r.floe_over_raw))
                .unwrap_or_else(|| "not measured".into()),
            met: r.map(|r| r.floe_over_raw.mean <= 1.3),
        });
    }
    for e in &engines {
        let worst = summary
            .iter()
            .filter(|r| r.size == size && &r.engine == e && r.path == "floe" && r.stage != "total")
            .filter_map(|r| r.commit_share.map(|c| (r.stage.clone(), c.median)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        out.push(Target {
            target: format!("{e}: commit under 5% of every stage's time ({size})"),
            measured: worst
                .as_ref()
                .map(|(s, c)| format!("largest share {:.1}% ({s})", c * 100.0))
                .unwrap_or_else(|| "not measured".into()),
            met: worst.map(|(_, c)| c < 0.05),
        });
    }
    let s = &m.storage;
    out.push(Target {
        target: format!(
            "commit latency at snapshot {} within 3x of the 1st (no expiry)",
            s.snapshots
        ),
        measured: format!(
            "{:.1} ms vs {:.1} ms: {:.2}x",
            s.last_commit_ms, s.first_commit_ms, s.last_to_first_ratio
        ),
        met: s
            .last_to_first_ratio
            .is_finite()
            .then_some(s.last_to_first_ratio <= 3.0),
    });
    out.push(Target {
        target: format!(
            "commit latency at snapshot {} within 1.3x of the 1st (expiry every {}, keeping {})",
            s.snapshots,
            super::storage::EXPIRE_EVERY,
            super::storage::EXPIRE_RETAIN
        ),
        measured: format!(
            "{:.1} ms vs {:.1} ms: {:.2}x",
            s.with_expiry_last_commit_ms, s.first_commit_ms, s.with_expiry_last_to_first_ratio
        ),
        met: s
            .with_expiry_last_to_first_ratio
            .is_finite()
            .then_some(s.with_expiry_last_to_first_ratio <= 1.3),
    });
    if let Some(y) = &s.year {
        out.push(Target {
            target: format!(
                "storage / live data after {} daily runs with maintenance at most 1.5",
                y.days
            ),
            measured: format!(
                "{:.2} ({:.2} never maintained)",
                y.maintained.ratio, y.unmaintained.ratio
            ),
            met: Some(y.maintained.ratio <= 1.5),
        });
    }
    if let Some(i) = &m.ingest {
        out.extend(ingest_targets(i));
    }
    // Ingest is floe's input reader whatever the engine: every floe ingest counts.
    let floe_ingest: Vec<f64> = m
        .runs
        .iter()
        .filter(|r| r.size == size && r.path == "floe")
        .filter_map(|r| r.stages.iter().find(|s| s.stage == "ingest"))
        .map(|s| s.bytes_read as f64 / s.seconds)
        .collect();
    let copy =
        find(summary, &size, "duckdb", "raw", "ingest").map(|r| r.bytes_read.median / r.seconds.median);
    let floe_mb = Summary::of(&floe_ingest).median;
    out.push(Target {
        target: format!("floe ingest at least half of DuckDB COPY CSV to Parquet ({size})"),
        measured: match copy {
            Some(c) => format!(
                "{:.1} MB/s vs {:.1} MB/s: {:.2}x",
                floe_mb / 1e6,
                c / 1e6,
                floe_mb / c
            ),
            None => "not measured (needs raw duckdb)".into(),
        },
        met: copy.map(|c| floe_mb / c >= 0.5),
    });
    let p = peer.get(&size);
    out.push(Target {
        target: format!("floe append at least 3x PyIceberg's rows/s ({size})"),
        measured: p
            .map(fmt_ratio)
            .unwrap_or_else(|| m.peer_skipped.clone().unwrap_or_else(|| "not measured".into())),
        met: p.map(|r| r.mean >= 3.0),
    });
    for e in &engines {
        let worst = summary
            .iter()
            .filter(|r| r.size == size && &r.engine == e && r.path == "floe" && r.stage != "total")
            .map(|r| (r.stage.clone(), r.peak_memory_bytes.max))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        out.push(Target {
            target: format!("{e}: peak memory of every stage under 4 GB ({size})"),
            measured: worst
                .as_ref()
                .map(|(s, b)| format!("{} ({s})", gb(*b)))
                .unwrap_or_else(|| "not measured".into()),
            met: worst.map(|(_, b)| b < 4e9),
        });
    }
    out
}

/// The extraction benchmark's targets (issue 12): auto units at least 1.8x one unit on 2 cores, and at
/// least 0.8x Postgres's own COPY drained by psql.
pub fn ingest_targets(i: &super::IngestBenchReport) -> Vec<Target> {
    vec![
        Target {
            target: format!(
                "extraction of {} Postgres rows: auto units at least 1.8x one unit ({} cores)",
                i.rows, i.cores
            ),
            measured: format!(
                "{:.0} vs {:.0} rows/s: {:.2}x",
                i.rows_per_s("auto units"),
                i.rows_per_s("one unit"),
                i.auto_to_one_ratio
            ),
            met: i
                .auto_to_one_ratio
                .is_finite()
                .then_some(i.auto_to_one_ratio >= 1.8),
        },
        Target {
            target: format!(
                "extraction of {} Postgres rows: auto units at least 0.8x psql COPY",
                i.rows
            ),
            measured: format!(
                "{:.0} vs {:.0} rows/s: {:.2}x",
                i.rows_per_s("auto units"),
                i.rows_per_s("psql COPY"),
                i.auto_to_copy_ratio
            ),
            met: i
                .auto_to_copy_ratio
                .is_finite()
                .then_some(i.auto_to_copy_ratio >= 0.8),
        },
    ]
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

/// The Markdown report.
pub fn markdown(r: &BenchReport) -> String {
    let m = &r.machine;
    let mut md = String::new();
    let mut line = |s: String| {
        md.push_str(&s);
        md.push('\n');
    };
    line("# floe bench".into());
    line(String::new());
    line(format!(
        "Machine: {} ({} logical CPUs, {:.1} GB memory), {} (kernel {}). floe {}, DuckDB {}, DataFusion {}; {}. \
         {} repetitions per run; figures are median (min-max); ratios are means of per-repetition ratios with \
         95% confidence intervals. Finished {}.",
        m.cpu,
        m.cpus,
        m.memory_bytes as f64 / 1e9,
        m.os,
        m.kernel,
        m.floe,
        m.duckdb,
        m.datafusion,
        m.storage,
        r.repetitions,
        r.finished_at
    ));
    line(String::new());
    line("## End to end".into());
    line(String::new());
    line("| input | engine | floe (s) | raw (s) | floe / raw | peak memory (floe) | CPU (floe, s) | equivalence |".into());
    line("|---|---|---|---|---|---|---|---|".into());
    let sizes = sizes_in_order(&r.measurements);
    let engines = engines_of(&r.summary);
    for (size, _) in &sizes {
        let eq: Vec<_> = r
            .measurements
            .equivalence
            .iter()
            .filter(|e| &e.size == size)
            .collect();
        let eq_text = if eq.is_empty() {
            "-".to_string()
        } else {
            format!("{}/{} equal", eq.iter().filter(|e| e.equal).count(), eq.len())
        };
        for e in &engines {
            let f = find(&r.summary, size, e, "floe", "total");
            let raw = find(&r.summary, size, e, "raw", "total");
            let o = r
                .overhead
                .iter()
                .find(|o| &o.size == size && &o.engine == e && o.stage == "total");
            line(format!(
                "| {size} | {e} | {} | {} | {} | {} | {} | {eq_text} |",
                f.map(|x| fmt_summary(&x.seconds, &secs)).unwrap_or("-".into()),
                raw.map(|x| fmt_summary(&x.seconds, &secs)).unwrap_or("-".into()),
                o.map(|o| fmt_ratio(&o.floe_over_raw)).unwrap_or("-".into()),
                f.map(|x| gb(x.peak_memory_bytes.max)).unwrap_or("-".into()),
                f.map(|x| fmt_summary(&x.cpu_seconds, &secs))
                    .unwrap_or("-".into()),
            ));
        }
    }
    line(String::new());
    line("## Per stage".into());
    for (size, _) in &sizes {
        line(String::new());
        line(format!("### {size}"));
        line(String::new());
        let mut head = "| stage |".to_string();
        let mut rule = "|---|".to_string();
        for e in &engines {
            head.push_str(&format!(
                " {e} floe (s) | {e} raw (s) | {e} commit share | {e} peak | {e} rows/s |"
            ));
            rule.push_str("---|---|---|---|---|");
        }
        head.push_str(" faster on floe |");
        rule.push_str("---|");
        line(head);
        line(rule);
        for stage in crate::pipeline::engine::Stage::ALL
            .iter()
            .map(|s| s.name())
            .chain(["total"])
        {
            let mut row = format!("| {stage} |");
            let mut best: Option<(String, f64)> = None;
            for e in &engines {
                let f = find(&r.summary, size, e, "floe", stage);
                let raw = find(&r.summary, size, e, "raw", stage);
                if let Some(f) = f {
                    if best.as_ref().is_none_or(|b| f.seconds.median < b.1) {
                        best = Some((e.clone(), f.seconds.median));
                    }
                }
                row.push_str(&format!(
                    " {} | {} | {} | {} | {} |",
                    f.map(|x| fmt_summary(&x.seconds, &secs)).unwrap_or("-".into()),
                    raw.map(|x| fmt_summary(&x.seconds, &secs)).unwrap_or("-".into()),
                    f.and_then(|x| x.commit_share)
                        .map(|c| format!("{:.1}%", c.median * 100.0))
                        .unwrap_or("-".into()),
                    f.map(|x| gb(x.peak_memory_bytes.max)).unwrap_or("-".into()),
                    f.map(|x| format!("{:.0}", x.rows_per_s.median))
                        .unwrap_or("-".into()),
                ));
            }
            row.push_str(&format!(" {} |", best.map(|b| b.0).unwrap_or("-".into())));
            line(row);
        }
    }
    line(String::new());
    line("## Equivalence".into());
    line(String::new());
    for e in &r.measurements.equivalence {
        let differing: Vec<&str> = e
            .tables
            .iter()
            .filter(|t| !t.equal)
            .map(|t| t.table.as_str())
            .collect();
        line(format!(
            "- {} repetition {}: {} ({} tables{})",
            e.size,
            e.repetition + 1,
            if e.equal {
                "all outputs equal"
            } else {
                "OUTPUTS DIFFER"
            },
            e.tables.len(),
            if differing.is_empty() {
                String::new()
            } else {
                format!("; differing: {}", differing.join(", "))
            }
        ));
    }
    if r.measurements.equivalence.is_empty() {
        line("- not run (needs two engines)".into());
    }
    let failed: Vec<_> = r.measurements.runs.iter().filter(|x| x.error.is_some()).collect();
    if !failed.is_empty() {
        line(String::new());
        line("## Failed passes".into());
        line(String::new());
        for f in failed {
            line(format!(
                "- {} {} {} repetition {}: {}",
                f.size,
                f.engine,
                f.path,
                f.repetition + 1,
                f.error.as_deref().unwrap_or("")
            ));
        }
    }
    line(String::new());
    line("## Storage layer".into());
    line(String::new());
    let s = &r.measurements.storage;
    line(format!(
        "- Commit latency ({}): {:.1} ms at the first snapshots, {:.1} ms at snapshot {} ({:.2}x); \
         phases of the last commit: {}.",
        s.backend,
        s.first_commit_ms,
        s.last_commit_ms,
        s.snapshots,
        s.last_to_first_ratio,
        s.last_commit_phases_ms
            .iter()
            .map(|(k, v)| format!("{k} {v:.1} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    line(format!(
        "- With snapshot expiry in the loop (every {} commits, keeping {}): {:.1} ms at snapshot {} \
         ({:.2}x the first); {} manifests in the last snapshot without expiry.",
        super::storage::EXPIRE_EVERY,
        super::storage::EXPIRE_RETAIN,
        s.with_expiry_last_commit_ms,
        s.snapshots,
        s.with_expiry_last_to_first_ratio,
        s.last_manifests
    ));
    line(format!(
        "- Append of {} rows: {:.0} rows/s, {:.0} MB/s of Arrow in, {:.0} MB/s of Parquet out.",
        s.append_rows, s.append_rows_per_s, s.append_arrow_mb_per_s, s.append_parquet_mb_per_s
    ));
    line(format!(
        "- Planning a full scan of a freshly loaded table: {:.1} ms at the 1st snapshot, {:.1} ms at \
         snapshot {} ({:.2}x).",
        s.scan_plan_first_ms, s.scan_plan_last_ms, s.snapshots, s.scan_plan_ratio
    ));
    if let Some(y) = &s.year {
        line(format!(
            "- A simulated year ({} daily runs of {} rows, each replacing yesterday's partition and \
             writing today's): maintained after every run (compaction, expiry keeping {} snapshots, \
             orphan removal; {:.0} ms a day), the table holds {:.1} MB on storage for {:.1} MB of live \
             data ({:.2}x, {} files); never maintained, {:.1} MB ({:.2}x, {} files, {:.1} MB of it \
             metadata JSON).",
            y.days,
            y.rows_per_day,
            y.retained_snapshots,
            y.maintain_s * 1e3,
            y.maintained.bytes_on_storage as f64 / 1e6,
            y.maintained.live_data_bytes as f64 / 1e6,
            y.maintained.ratio,
            y.maintained.files_on_storage,
            y.unmaintained.bytes_on_storage as f64 / 1e6,
            y.unmaintained.ratio,
            y.unmaintained.files_on_storage,
            y.unmaintained.metadata_json_bytes as f64 / 1e6
        ));
    }
    for (size, ratio) in &r.append_vs_pyiceberg {
        let runs: Vec<_> = r.measurements.peer.iter().filter(|p| &p.size == size).collect();
        let floe_rps = Summary::of(
            &runs
                .iter()
                .map(|p| p.append.rows as f64 / p.append.floe_seconds)
                .collect::<Vec<_>>(),
        );
        let py_rps = Summary::of(
            &runs
                .iter()
                .map(|p| p.append.rows as f64 / p.append.pyiceberg_seconds)
                .collect::<Vec<_>>(),
        );
        line(format!(
            "- Append of the {size} ingest output ({} rows) into the same catalog: floe {:.0} rows/s, PyIceberg {} {:.0} rows/s: floe {}.",
            runs.first().map(|p| p.append.rows).unwrap_or(0),
            floe_rps.median,
            runs.first().map(|p| p.append.pyiceberg_version.as_str()).unwrap_or("?"),
            py_rps.median,
            fmt_ratio(ratio)
        ));
    }
    if let Some(why) = &r.measurements.peer_skipped {
        line(format!("- PyIceberg peer not run: {why}."));
    }
    if let Some(i) = &r.measurements.ingest {
        line(String::new());
        line("## Extraction from Postgres".into());
        line(String::new());
        line(format!(
            "`floe ingest` of a generated {}-row table (id key, timestamptz, two strings, numeric), \
             median of {}, {} cores:",
            i.rows, i.repetitions, i.cores
        ));
        line(String::new());
        line("| variant | units | seconds | rows/s | peak memory |".into());
        line("|---|---|---|---|---|".into());
        for v in &i.variants {
            line(format!(
                "| {} | {} | {:.2} | {:.0} | {} |",
                v.variant,
                v.units,
                v.seconds,
                v.rows_per_s,
                if v.peak_memory_bytes > 0 {
                    gb(v.peak_memory_bytes as f64)
                } else {
                    "-".into()
                }
            ));
        }
    }
    line(String::new());
    line("## Targets".into());
    line(String::new());
    line("| target | measured | met |".into());
    line("|---|---|---|".into());
    for t in &r.targets {
        line(format!(
            "| {} | {} | {} |",
            t.target,
            t.measured,
            match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            }
        ));
    }
    line(String::new());
    line("## Recommendation for `--engine auto`".into());
    line(String::new());
    line(format!("{}.", r.recommendation.rule));
    line(String::new());
    line("## Charts".into());
    line(String::new());
    line("![time against input size](time.svg)".into());
    line(String::new());
    line("![peak memory against input size](memory.svg)".into());
    line(String::new());
    line("![floe over raw](overhead.svg)".into());
    md
}

fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Storage, format!("chart: {e}"))
}

/// One line chart: x = input MB (log scale), a line per series.
fn chart(
    path: &Path,
    title: &str,
    y_label: &str,
    lines: &[(String, Vec<(f64, f64)>)],
    guide: Option<f64>,
) -> Result<()> {
    let xs: Vec<f64> = lines.iter().flat_map(|(_, p)| p.iter().map(|x| x.0)).collect();
    let ys: Vec<f64> = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .chain(guide)
        .filter(|v| v.is_finite())
        .collect();
    if xs.is_empty() || ys.is_empty() {
        return Ok(());
    }
    let (x0, x1) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |a, &x| (a.0.min(x), a.1.max(x)));
    let (x0, x1) = (x0 / 1.5, x1 * 1.5);
    let y1 = ys.iter().cloned().fold(0.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut c = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d((x0..x1).log_scale(), 0f64..y1.max(1e-9))
        .map_err(plot_error)?;
    c.configure_mesh()
        .x_desc("input CSV (MB, log scale)")
        .y_desc(y_label)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(plot_error)?;
    for (i, (name, points)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let dashed = name.contains("raw");
        let style = ShapeStyle {
            color,
            filled: true,
            stroke_width: if dashed { 1 } else { 3 },
        };
        c.draw_series(LineSeries::new(points.iter().copied(), style))
            .map_err(plot_error)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        c.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(plot_error)?;
    }
    if let Some(g) = guide {
        c.draw_series(LineSeries::new([(x0, g), (x1, g)], BLACK.stroke_width(1)))
            .map_err(plot_error)?
            .label(format!("target {g}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// Write `report.json`, `report.md`, `time.svg`, `memory.svg` and `overhead.svg` into `dir`;
/// returns the paths.
pub fn write(r: &BenchReport, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let json = dir.join("report.json");
    std::fs::write(
        &json,
        serde_json::to_vec_pretty(r).map_err(|e| Error::internal(format!("report json: {e}")))?,
    )?;
    let md = dir.join("report.md");
    std::fs::write(&md, markdown(r))?;
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
        chart(&p, title, y, &lines, guide)?;
        if p.exists() {
            out.push(p);
        }
    }
    Ok(out)
}
