//! PyIceberg appenders racing on one table, as child processes (the script `appenders.py`): through
//! `floe serve` with PyIceberg's `RestCatalog`, or through PyIceberg's `SqlCatalog` on floe's catalog
//! database. Used by `floe bench --rest` (commits per second) and by the REST catalog's concurrency
//! test (no append lost, none twice).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::super::peer::{pyiceberg_config, python, CONFIG_VAR};
use crate::catalog::TableName;
use crate::error::{Error, ErrorKind, Result};
use crate::lakehouse::Floe;

/// The script, written next to the benchmark's other files when it runs.
const SCRIPT: &str = include_str!("appenders.py");

/// Which door of the catalog the appenders use.
#[derive(Clone, Debug)]
pub enum Door {
    /// `floe serve` at this base URI (`http://127.0.0.1:8181`).
    Rest(String),
    /// PyIceberg's `SqlCatalog` on floe's catalog database.
    Sql,
}

/// What a run of appenders did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppendersRun {
    /// Appends that landed.
    pub commits: usize,
    /// Races lost (409 `CommitFailedException`), each followed by a refresh and a retry.
    pub conflicts: usize,
    /// Wall time from the common start to the last append.
    pub seconds: f64,
    /// The ids of the rows appended (one per commit: `worker * 1,000,000 + commit`).
    pub ids: Vec<i64>,
}

impl AppendersRun {
    /// Appends landed per second.
    pub fn commits_per_second(&self) -> f64 {
        self.commits as f64 / self.seconds
    }
}

/// Run `workers` PyIceberg appenders, numbered from `first_worker`, each committing `commits`
/// one-row appends to `table` (columns `id long`, `writer string`) through `door`. The script is
/// written into `dir`.
pub async fn run_appenders(
    floe: &Floe,
    door: &Door,
    table: &TableName,
    workers: usize,
    commits: usize,
    first_worker: usize,
    dir: &Path,
) -> Result<AppendersRun> {
    std::fs::create_dir_all(dir)?;
    let script = dir.join("floe_rest_appenders.py");
    std::fs::write(&script, SCRIPT)?;
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(&script);
    match door {
        Door::Rest(uri) => cmd.args(["rest", uri]),
        Door::Sql => cmd.arg("sql"),
    };
    cmd.args([
        table.namespace().to_string(),
        table.name().to_string(),
        workers.to_string(),
        commits.to_string(),
        first_worker.to_string(),
    ])
    // The catalog password and the S3 secret go through the environment, never argv.
    .env(CONFIG_VAR, pyiceberg_config(floe).to_string())
    .kill_on_drop(true);
    let out = cmd.output().await?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Engine,
            format!(
                "the PyIceberg appenders failed: {}",
                crate::config::redact_secrets(String::from_utf8_lossy(&out.stderr).trim())
            ),
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::internal(format!("the PyIceberg appenders printed no JSON: {e}")))
}
