//! `floe ingest`: parallel extraction from a database table or query, or files, into one snapshot
//! (appended, overwriting, or upserted by key; incrementally with `--since`); `--plan` prints the
//! units and changes nothing; `--resume RUN_ID` finishes a failed run.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use floe::ingest::units::{PartitionBy, UnitCount};
use floe::ingest::watermark::Lookback;
use floe::ingest::{IngestMode, IngestOptions, UpsertIngest};
use floe::Floe;

use super::output::{self, Format};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Extract a database table or query (postgres://..., sqlite:PATH) or files (CSV, NDJSON, Parquet;
    /// local or s3://) into a table as one snapshot, in work units that run in parallel and are retried
    /// alone when they fail.
    Ingest(IngestArgs),
}

/// `floe ingest`.
#[derive(Args, Debug)]
pub struct IngestArgs {
    /// postgres://USER@HOST/DB, sqlite:PATH, or a file, a directory or a glob.
    #[arg(required_unless_present = "resume")]
    source: Option<String>,
    /// Destination NS.TABLE.
    #[arg(long, required_unless_present = "resume")]
    into: Option<String>,
    /// Source table SCHEMA.NAME (database sources).
    #[arg(long, conflicts_with = "query")]
    table: Option<String>,
    /// Source query (database sources).
    #[arg(long)]
    query: Option<String>,
    /// date(COL), id(COL), hash(COL), file or bytes (default: file for files, one unit otherwise).
    #[arg(long)]
    partition_by: Option<String>,
    /// Number of units, or auto (about 50,000 rows each, 10 to 100).
    #[arg(long, default_value = "auto")]
    units: String,
    /// Units at a time (default: the number of cores).
    #[arg(long)]
    parallel: Option<usize>,
    /// Retries of a failed unit, with backoff.
    #[arg(long, default_value_t = 3)]
    unit_retries: u32,
    /// append, overwrite or upsert (by --key; with --since, of the rows changed since the last run).
    #[arg(long, default_value = "append")]
    mode: String,
    /// Upsert: key columns, comma-separated (default: the table's identifier fields).
    #[arg(long, value_delimiter = ',')]
    key: Vec<String>,
    /// Upsert: read only the rows whose COL (a timestamp, date or increasing integer every insert and
    /// update sets) is at least the watermark the table's last run recorded, and record the new one
    /// in the same snapshot. Without it every run upserts the whole source.
    #[arg(long, value_name = "COL")]
    since: Option<String>,
    /// With --since: read again this far before the watermark (15m, 2h, 1d; a number of values for
    /// an integer column), for rows committed late at the source.
    #[arg(long, requires = "since")]
    lookback: Option<String>,
    /// Upsert: a query on the source returning the key columns of deleted rows; `{since}` in it
    /// stands for the start of the run's window. A key whose row the source holds is not deleted.
    #[arg(long, value_name = "SQL")]
    deletes_query: Option<String>,
    /// Create the destination from the source's columns when it does not exist.
    #[arg(long)]
    create: bool,
    /// Print the units (kind, bounds, estimated rows); change nothing.
    #[arg(long)]
    plan: bool,
    /// Count each unit's range at the source again and require equality.
    #[arg(long)]
    verify: bool,
    /// Run the units of a Postgres source as tasks of the cluster (`--cluster`, FLOE_CLUSTER or
    /// `cluster` in floe.toml): each executor reads its unit at the run's snapshot, with its own
    /// PGPASSWORD or ~/.pgpass (the password never travels in the plan), and writes the files; this
    /// process keeps the retries, the unit ledger and the one commit. SQLite and file sources run here.
    #[arg(long)]
    on_cluster: bool,
    /// Run the units of a failed run that are not done, then commit.
    #[arg(long, conflicts_with_all = ["source", "plan"])]
    resume: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// The write mode, with an upsert's key, window and deletes query.
fn mode(a: &IngestArgs) -> floe::Result<IngestMode> {
    let mode = IngestMode::parse(&a.mode)?;
    let upsert_only =
        !a.key.is_empty() || a.since.is_some() || a.lookback.is_some() || a.deletes_query.is_some();
    match mode {
        IngestMode::Upsert(_) => Ok(IngestMode::Upsert(UpsertIngest {
            key: a.key.clone(),
            since: a.since.clone(),
            lookback: a.lookback.as_deref().map(Lookback::parse).transpose()?,
            deletes_query: a.deletes_query.clone(),
        })),
        _ if upsert_only => Err(floe::Error::new(
            floe::ErrorKind::InvalidInput,
            "--key, --since, --lookback and --deletes-query go with --mode upsert",
        )),
        other => Ok(other),
    }
}

pub async fn run(floe: &Floe, command: Command) -> floe::Result<ExitCode> {
    let Command::Ingest(a) = command;
    if let Some(run_id) = &a.resume {
        let report = floe::ingest::resume(floe, run_id, a.parallel).await?;
        output::ingest::report(&mut output::stdout(), &report, a.format)?;
        return Ok(ExitCode::SUCCESS);
    }
    let source = a.source.clone().unwrap_or_default();
    let mut options = IngestOptions::new(source, a.into.clone().unwrap_or_default());
    options.table = a.table.clone();
    options.query = a.query.clone();
    options.partition_by = a.partition_by.as_deref().map(PartitionBy::parse).transpose()?;
    options.units = UnitCount::parse(&a.units)?;
    if let Some(p) = a.parallel {
        options.parallel = p.max(1);
    }
    options.unit_retries = a.unit_retries;
    options.mode = mode(&a)?;
    options.create = a.create;
    options.verify = a.verify;
    if a.on_cluster {
        options.on_cluster = Some(floe.settings().cluster.clone().ok_or_else(|| {
            floe::Error::new(
                floe::ErrorKind::Config,
                "--on-cluster needs a cluster: --cluster df://HOST:PORT, FLOE_CLUSTER, or cluster in floe.toml",
            )
        })?);
    }
    if a.plan {
        let plan = floe::ingest::plan(floe, &options).await?;
        output::ingest::plan(&mut output::stdout(), &plan, a.format)?;
        return Ok(ExitCode::SUCCESS);
    }
    let prepared = floe::ingest::prepare(floe, &options).await?;
    eprintln!(
        "ingest run {}: {} units into {} (if it stops early: floe ingest --resume {})",
        prepared.run_id(),
        prepared.plan().units.len(),
        prepared.plan().destination,
        prepared.run_id()
    );
    let report = prepared.run().await?;
    output::ingest::report(&mut output::stdout(), &report, a.format)?;
    Ok(ExitCode::SUCCESS)
}
