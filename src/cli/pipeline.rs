//! Pipeline commands: `generate`, `run` (with `--maintain`), `runs`, `verify`, `demo`.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use floe::{Floe, Namespace, Settings, TableName};

use super::output::{self, Format};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a deterministic, deliberately dirty clickstream (CSV, NDJSON or Parquet).
    Generate(GenerateArgs),
    /// Run the clickstream pipeline; every stage commits its outputs as snapshots with lineage.
    Run {
        /// Input events for ingest: a file, a directory or a glob, local or s3://.
        #[arg(long)]
        input: Option<String>,
        /// Namespace of the pipeline's tables.
        #[arg(long, default_value = "clickstream")]
        namespace: String,
        /// Engine: duckdb, datafusion, ballista (on --cluster), a comma-separated list (each into its own
        /// branch, diffed against the first, published only when all are equal), both
        /// (duckdb,datafusion), or auto (by input size, free memory and whether a cluster is
        /// configured; the choice and its reason are printed and recorded).
        #[arg(long, visible_alias = "engines", default_value = "duckdb")]
        engine: String,
        /// Stages to run, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        stages: Option<Vec<String>>,
        /// Run stages even when an identical earlier run can be reused.
        #[arg(long)]
        force: bool,
        /// After the run: compact, expire snapshots and remove orphans of the pipeline's tables.
        #[arg(long)]
        maintain: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The run ledger: one row per stage and engine of each run.
    Runs {
        /// Rows to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Re-check a recorded two-engine run: diff what each engine committed, table by table.
    Verify {
        /// The run id (see `floe runs`).
        run_id: String,
        /// Namespace of the pipeline's tables.
        #[arg(long, default_value = "clickstream")]
        namespace: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The whole story on the embedded default: generate a clickstream, run the pipeline on both
    /// engines, diff and publish, answer analytics questions with SQL.
    Demo {
        /// Events to generate.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Generator seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

/// `floe generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Number of input records.
    #[arg(long, conflicts_with = "size", required_unless_present = "size")]
    events: Option<u64>,
    /// Target total size instead: 10MB, 1GB, 500KB, or bytes.
    #[arg(long)]
    size: Option<String>,
    /// Seed: the same arguments give byte-identical files.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// File format.
    #[arg(long, default_value = "csv")]
    format: String,
    /// Number of files to split into.
    #[arg(long, default_value_t = 1)]
    files: usize,
    /// Days of traffic, from 2024-03-01.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Rate of each kind of dirt (duplicates, malformed, missing ids, ...); default ~0.5-2% each.
    #[arg(long)]
    dirty_rate: Option<f64>,
    /// Output directory: a local path, file:///path or s3://bucket/prefix.
    #[arg(long)]
    out: String,
}

pub async fn generate(settings: &Settings, args: GenerateArgs) -> floe::Result<ExitCode> {
    use floe::generate::{generate, DirtyRates, GenerateOptions, OutputFormat};
    let format: OutputFormat = args.format.parse()?;
    let mut options = GenerateOptions::new(args.events.unwrap_or(0), args.seed);
    options.format = format;
    options.files = args.files.max(1);
    options.days = args.days;
    if let Some(rate) = args.dirty_rate {
        options.dirty = DirtyRates::uniform(rate);
    }
    if let Some(size) = &args.size {
        options = options.with_target_size(floe::units::parse_size(size)?)?;
    }
    let out_uri = floe::storage::Warehouse::parse(&args.out)?.uri();
    let storage = floe::storage::ObjectStorage::new(settings.s3.clone());
    let bar = indicatif::ProgressBar::new(options.events);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} generating [{bar:40}] {pos}/{len} events ({per_sec}, {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let progress = |n: u64| bar.set_position(n);
    let report = generate(&storage, &out_uri, &options, Some(&progress)).await?;
    bar.finish_and_clear();
    let out = &mut output::stdout();
    for f in &report.files {
        writeln!(out, "{f}")?;
    }
    writeln!(
        out,
        "{} events, {} bytes, {} files ({format}, seed {})",
        report.events,
        report.bytes,
        report.files.len(),
        args.seed
    )?;
    Ok(ExitCode::SUCCESS)
}

pub async fn run(floe: &Floe, command: Command) -> floe::Result<ExitCode> {
    let out = &mut output::stdout();
    match command {
        Command::Generate(_) => unreachable!("floe generate runs before connecting"),
        Command::Run {
            input,
            namespace,
            engine,
            stages,
            force,
            maintain,
            format,
        } => {
            let ns = Namespace::parse(&namespace)?;
            let (engines, engine_reason) =
                floe::pipeline::runner::engines_named(floe, &engine, &ns, input.as_deref()).await?;
            if let Some(reason) = &engine_reason {
                eprintln!("engine {reason}");
            }
            let stages = match stages {
                Some(s) => s
                    .iter()
                    .map(|s| floe::pipeline::Stage::parse(s))
                    .collect::<floe::Result<Vec<_>>>()?,
                None => floe::pipeline::Stage::ALL.to_vec(),
            };
            let options = floe::pipeline::RunOptions {
                stages,
                force,
                engine_reason,
                progress: Some(output::pipeline::stage_progress()),
                ..floe::pipeline::RunOptions::new(ns.clone(), input, engines)
            };
            let report = floe::pipeline::run(floe, &options).await?;
            output::pipeline::run(out, &report, format)?;
            if maintain {
                let mut reports = Vec::new();
                for t in floe::pipeline::tables::ALL {
                    let name = TableName::new(ns.clone(), *t)?;
                    reports.push(
                        floe.maintain(&name, &floe::maintenance::MaintainOptions::all())
                            .await?,
                    );
                }
                output::maintain::maintain(out, &reports, format)?;
            }
            if report.equivalence.as_ref().is_some_and(|e| !e.equal) {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Runs { limit, format } => {
            let entries = floe::pipeline::ledger::list(floe.database(), limit).await?;
            output::pipeline::runs(out, &entries, format)?;
        }
        Command::Verify {
            run_id,
            namespace,
            format,
        } => {
            let eq = floe::pipeline::runner::verify(floe, &Namespace::parse(&namespace)?, &run_id).await?;
            output::pipeline::equivalence(out, &eq, format)?;
            return Ok(if eq.equal {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Command::Demo { events, seed } => {
            if !super::demo::run(floe, events, seed).await? {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
