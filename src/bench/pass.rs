//! One pass of the benchmark: the pipeline on one engine, either through floe into fresh tables
//! (`floe`) or on the raw engine over plain files (`raw`), and the protocol that runs a pass in a
//! child process so that its memory is its own.
//!
//! The protocol belongs to the library, not to the command line: the parent starts the executable
//! with the pass in `FLOE_BENCH_PASS` (JSON) and floe's settings in the environment; the child's
//! `main` calls [`child_main`] before anything else, which runs the pass and prints its stage
//! figures as JSON. The `floe` binary does so; another executable embedding floe can too.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{purge_namespace, raw, StageFigures};
use crate::catalog::Namespace;
use crate::config::Settings;
use crate::error::{Error, ErrorKind, Result};
use crate::lakehouse::Floe;
use crate::pipeline::engine::{engine_named, DataFusionEngine, DuckDbEngine, Engine, PinnedTable, Stage};
use crate::pipeline::input::resolve_inputs;
use crate::pipeline::runner::{run, RunOptions};

/// The environment variable that makes a floe executable a benchmark pass's child: the pass, as JSON.
const PASS_VAR: &str = "FLOE_BENCH_PASS";

/// One pass.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Pass {
    /// `floe` or `raw`.
    pub path: String,
    /// The engine label (`duckdb`, `datafusion`, `ballista`, `ballista:N`).
    pub engine: String,
    /// The input directory.
    pub input: String,
    /// The namespace of a floe pass's fresh tables.
    pub namespace: String,
    /// The scratch directory of raw passes.
    pub work: PathBuf,
    /// The cluster a `ballista` pass runs on (else the cluster of floe's settings).
    pub cluster: Option<String>,
}

impl Pass {
    /// Run the pass in this process.
    pub(crate) async fn run(&self, floe: &Floe) -> Result<Vec<StageFigures>> {
        match self.path.as_str() {
            "floe" => {
                let engine = engine_of(floe, &self.engine, self.cluster.as_deref())?;
                floe_pass(floe, &Namespace::parse(&self.namespace)?, engine, &self.input).await
            }
            "raw" => raw_pass(floe, &self.work, &self.engine, &self.input).await,
            other => Err(Error::invalid(format!(
                "unknown benchmark path {other:?} (floe, raw)"
            ))),
        }
    }

    /// Run the pass in a child process of the floe executable `exe`, with floe's settings in its
    /// environment.
    pub(crate) async fn run_in_child(&self, exe: &Path, floe: &Floe) -> Result<Vec<StageFigures>> {
        let out = tokio::process::Command::new(exe)
            .envs(floe.settings().to_vars())
            .env(PASS_VAR, serde_json::to_string(self)?)
            .kill_on_drop(true)
            .output()
            .await?;
        if !out.status.success() {
            return Err(Error::new(
                ErrorKind::Engine,
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
}

/// The entry point of a benchmark pass's child process: `None` when this process is not one (then
/// the caller goes on as usual); else the pass is run, its stage figures printed on stdout as JSON,
/// and the exit code returned. An executable that runs benchmarks in child processes calls this
/// first in `main`.
pub fn child_main() -> Option<ExitCode> {
    let pass = std::env::var(PASS_VAR).ok()?;
    // Not handed on to anything the pass starts.
    std::env::remove_var(PASS_VAR);
    let figures = (|| -> Result<Vec<StageFigures>> {
        let pass: Pass = serde_json::from_str(&pass)?;
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(async {
            let floe = Floe::connect(Settings::from_env()?).await?;
            pass.run(&floe).await
        })
    })()
    .and_then(|figures| Ok(serde_json::to_string(&figures)?));
    Some(match figures {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("floe: error: {}", e.to_string().replace('\n', " "));
            ExitCode::from(1)
        }
    })
}

/// The engine of a label (`ballista:N` is `ballista`), on `cluster` or else the cluster of floe's
/// settings.
pub(crate) fn engine_of(floe: &Floe, label: &str, cluster: Option<&str>) -> Result<Arc<dyn Engine>> {
    let name = if super::on_cluster(label) {
        "ballista"
    } else {
        label
    };
    engine_named(name, floe.settings(), cluster)
}

/// One floe pass of the pipeline on `engine` into fresh tables of `ns`.
async fn floe_pass(
    floe: &Floe,
    ns: &Namespace,
    engine: Arc<dyn Engine>,
    input: &str,
) -> Result<Vec<StageFigures>> {
    purge_namespace(floe, ns).await?;
    floe.ensure_namespace(ns).await?;
    let options = RunOptions::new(ns.clone(), Some(input.to_string()), vec![engine.clone()]);
    let report = run(floe, &options).await?;
    let enrich_plan = explain_enrich(floe, ns, engine.as_ref()).await?;
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
            driver_bytes_received: s.driver_bytes_received,
            plan: (s.stage == Stage::Enrich.name())
                .then(|| enrich_plan.clone())
                .flatten(),
            phase_seconds: s.phase_seconds.clone(),
        })
        .collect())
}

/// The plan `engine` runs `enrich` with on the inputs the pass committed (a cluster's shows whether
/// it broadcasts geoip); `None` where the engine does not tell.
async fn explain_enrich(floe: &Floe, ns: &Namespace, engine: &dyn Engine) -> Result<Option<String>> {
    let mut inputs = std::collections::BTreeMap::new();
    for t in Stage::Enrich.inputs() {
        let table = floe
            .load_table(&crate::catalog::TableName::new(ns.clone(), *t)?)
            .await?;
        let snapshot_id = table.current_snapshot().map(|s| s.snapshot_id());
        inputs.insert(*t, PinnedTable { table, snapshot_id });
    }
    engine.explain(Stage::Enrich, &inputs).await
}

/// One raw pass on `engine` in the scratch directory `work` (removed afterwards).
async fn raw_pass(floe: &Floe, work: &Path, engine: &str, input: &str) -> Result<Vec<StageFigures>> {
    let dir = std::path::absolute(work.join(engine))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let files = resolve_inputs(floe.storage(), input).await?;
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
            driver_bytes_received: None,
            plan: None,
            phase_seconds: Default::default(),
        })
        .collect())
}
