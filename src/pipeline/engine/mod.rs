//! The seam between the stage runner and the query engines. The runner pins a stage's inputs and
//! hands them to an [`Engine`]; the engine computes each output table and returns it as a stream of
//! Arrow batches; the runner writes and commits them. The runner never names an engine.

pub(crate) mod ballista;
pub(crate) mod cluster_write;
pub(crate) mod datafusion;
pub(crate) mod duckdb;
pub(crate) mod parquet_scan;
pub(crate) mod rules;
pub(crate) mod sql;

use std::collections::BTreeMap;
use std::fmt;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::{Error, Result};
use crate::pipeline::tables::*;
use crate::table::Table;

pub use self::ballista::BallistaEngine;
pub use self::datafusion::DataFusionEngine;
pub use self::duckdb::DuckDbEngine;

/// A pipeline stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Files → `raw_events` (+ `rejected_events`).
    Ingest,
    /// `raw_events` → `clean_events` (+ `rejected_events`).
    Cleanse,
    /// `clean_events` + `geoip` → `enriched_events`.
    Enrich,
    /// `enriched_events` → `session_events`, `sessions`.
    Sessionize,
    /// `sessions` → `daily_metrics`.
    Aggregate,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 5] = [
        Stage::Ingest,
        Stage::Cleanse,
        Stage::Enrich,
        Stage::Sessionize,
        Stage::Aggregate,
    ];

    /// The stage's name.
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Cleanse => "cleanse",
            Stage::Enrich => "enrich",
            Stage::Sessionize => "sessionize",
            Stage::Aggregate => "aggregate",
        }
    }

    /// Parse a stage name.
    pub fn parse(name: &str) -> Result<Stage> {
        Stage::ALL
            .into_iter()
            .find(|s| s.name() == name.trim())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown stage {name:?} (ingest, cleanse, enrich, sessionize, aggregate)"
                ))
            })
    }

    /// Tables the stage reads.
    pub fn inputs(&self) -> &'static [&'static str] {
        match self {
            Stage::Ingest => &[],
            Stage::Cleanse => &[RAW_EVENTS],
            Stage::Enrich => &[CLEAN_EVENTS, GEOIP],
            Stage::Sessionize => &[ENRICHED_EVENTS],
            Stage::Aggregate => &[SESSIONS],
        }
    }

    /// Tables the stage writes, each as one snapshot.
    pub fn outputs(&self) -> &'static [&'static str] {
        match self {
            Stage::Ingest => &[RAW_EVENTS, REJECTED_EVENTS],
            Stage::Cleanse => &[CLEAN_EVENTS, REJECTED_EVENTS],
            Stage::Enrich => &[ENRICHED_EVENTS],
            Stage::Sessionize => &[SESSION_EVENTS, SESSIONS],
            Stage::Aggregate => &[DAILY_METRICS],
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One input table at its pinned snapshot (`None`: the table was empty).
#[derive(Clone, Debug)]
pub struct PinnedTable {
    /// The table as loaded when the stage started.
    pub table: Table,
    /// The pinned snapshot.
    pub snapshot_id: Option<i64>,
}

/// One output: the rows of an output table.
pub type Rows = BoxStream<'static, Result<RecordBatch>>;

/// A query engine that can run every stage but `ingest` (whose parsing is floe's shared input reader,
/// so that line numbers and malformed-record rules cannot differ between engines).
#[async_trait]
pub trait Engine: Send + Sync {
    /// The engine's name: also the branch its outputs are committed to.
    fn name(&self) -> &'static str;

    /// Check that the engine can run at all (a cluster is reachable), before a run writes anything.
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Compute `stage`'s outputs from its pinned inputs: one stream per table of `stage.outputs()`,
    /// in that order. For `cleanse`, the `rejected_events` stream holds only the stage's own rejects.
    async fn run(&self, stage: Stage, inputs: &BTreeMap<&'static str, PinnedTable>) -> Result<Vec<Rows>>;

    /// Everything that decides what `stage` computes on this engine: the rendered SQL and the
    /// definitions it runs with. The runner hashes it (with the rules' own code, [`RULES_CODE`])
    /// into the stage's reuse key, so a change to any of it never reuses outputs of the old code.
    fn code(&self, stage: Stage) -> String;

    /// Whether `error` (from [`Engine::run`] or its streams) means the engine lost workers or their
    /// results, so that running the stage again can succeed (a cluster executor killed mid-stage
    /// takes the results it held with it). The runner then discards what it wrote and runs the
    /// stage again, a few times at most.
    fn lost_workers(&self, _error: &Error) -> bool {
        false
    }

    /// Whether a result whose row counts do not add up (see the runner's balance check) should be
    /// discarded and the stage run again rather than failed at once: for a distributed engine that
    /// can repeat a lost worker's rows without reporting an error.
    fn rerun_on_imbalance(&self) -> bool {
        false
    }

    /// The plan `stage` runs with on this engine for these inputs, as the engine prints it (a
    /// cluster's: its stages and what they exchange); `None` when the engine does not tell.
    async fn explain(
        &self,
        _stage: Stage,
        _inputs: &BTreeMap<&'static str, PinnedTable>,
    ) -> Result<Option<String>> {
        Ok(None)
    }

    /// Compute `stage`'s outputs and write them as Parquet data files of `outputs` (one table per
    /// `stage.outputs()`, in that order) itself, with the tables' field ids and partitioning: per
    /// output, the files written. `None` when this engine does not write these tables itself (the
    /// runner then writes the rows [`Engine::run`] returns). Files are not committed; on an error the
    /// engine has deleted what it wrote.
    async fn run_to_files(
        &self,
        _stage: Stage,
        _inputs: &BTreeMap<&'static str, PinnedTable>,
        _outputs: &[Table],
    ) -> Result<Option<Vec<EngineFiles>>> {
        Ok(None)
    }
}

/// The files an engine wrote itself for one output table (not committed).
#[derive(Debug)]
pub enum EngineFiles {
    /// Files the runner describes from their footers (DuckDB's `COPY`).
    Undescribed(Vec<crate::table::add_files::FileToAdd>),
    /// Files described where they were written (the cluster's executors), with what was counted
    /// as their rows passed.
    Described(DescribedFiles),
}

/// Files with their entries built where they were written.
#[derive(Debug, Default)]
pub struct DescribedFiles {
    /// The files' entries: path, size, record count, column statistics, partition values.
    pub files: Vec<iceberg::spec::DataFile>,
    /// Rows written.
    pub rows: u64,
    /// The sum of the output's checked column (the runner's aggregate check), when it has one.
    pub summed: Option<i64>,
    /// Values of the output's tallied column (reject reasons) → count.
    pub tallies: BTreeMap<String, u64>,
    /// Bytes the driver received to learn all this (the results' Arrow IPC size).
    pub received_bytes: u64,
}

/// The engine called `name`: `duckdb`, `datafusion`, or `ballista` on the cluster at `cluster` (a
/// `df://HOST:PORT` URL; the cluster of `settings` when `None`). A `ballista` engine without a cluster
/// is a `Config` error; an unknown name `InvalidInput`.
pub fn engine_named(
    name: &str,
    settings: &crate::config::Settings,
    cluster: Option<&str>,
) -> Result<std::sync::Arc<dyn Engine>> {
    Ok(match name.trim() {
        "duckdb" => std::sync::Arc::new(DuckDbEngine::default()),
        "datafusion" => std::sync::Arc::new(DataFusionEngine::default()),
        "ballista" => {
            let url = cluster.or(settings.cluster.as_deref()).ok_or_else(|| {
                Error::new(
                    crate::error::ErrorKind::Config,
                    "the ballista engine needs a cluster: --cluster df://HOST:PORT, FLOE_CLUSTER, or cluster in floe.toml",
                )
            })?;
            std::sync::Arc::new(BallistaEngine::new(url, settings.clone())?)
        }
        other => {
            return Err(Error::invalid(format!(
                "unknown engine {other:?} (duckdb, datafusion, ballista)"
            )))
        }
    })
}

/// The source of the field rules both engines call (and of the shared SQL): part of every stage's
/// reuse key.
pub const RULES_CODE: &[&str] = &[include_str!("rules.rs"), include_str!("sql.rs")];
