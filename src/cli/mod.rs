//! The command-line interface: a thin layer over the library. Every command parses its arguments,
//! calls [`floe::Floe`], prints, and maps errors to one line on stderr and a non-zero exit code.

mod demo;
mod input;
mod output;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use floe::{
    At, CommitOptions, Floe, Lineage, Namespace, PartialSettings, PartitionField, RowFilter, ScanOptions,
    Settings, TableDefinition, TableName,
};

use output::Format;

/// floe: Iceberg tables on a SQL catalog and object storage, every write one atomic snapshot.
#[derive(Parser, Debug)]
#[command(name = "floe", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Where the catalog and warehouse are. Flags win over environment variables, which win over
/// `floe.toml`, which wins over the defaults (SQLite at ./floe-data/catalog.db, warehouse
/// ./floe-data/warehouse).
#[derive(Args, Debug)]
struct GlobalArgs {
    /// Catalog database: sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DB [env: FLOE_CATALOG_URL]
    #[arg(long, global = true)]
    catalog_url: Option<String>,
    /// Warehouse: a local path, file:///path or s3://bucket/prefix [env: FLOE_WAREHOUSE]
    #[arg(long, global = true)]
    warehouse: Option<String>,
    /// Value of the catalog_name column (default floe) [env: FLOE_CATALOG_NAME]
    #[arg(long, global = true)]
    catalog_name: Option<String>,
    /// Config file (default ./floe.toml when present) [env: FLOE_CONFIG]
    #[arg(long, global = true, env = "FLOE_CONFIG")]
    config: Option<PathBuf>,
    /// S3 endpoint URL, for MinIO, Garage and other S3-compatible stores [env: AWS_ENDPOINT_URL]
    #[arg(long, global = true)]
    s3_endpoint: Option<String>,
    /// S3 region [env: AWS_REGION]
    #[arg(long, global = true)]
    s3_region: Option<String>,
    /// Use path-style S3 addressing (http://host/bucket/key) [env: FLOE_S3_PATH_STYLE]
    #[arg(long, global = true)]
    s3_path_style: bool,
    /// Commit attempts after a lost compare-and-swap [env: FLOE_COMMIT_RETRIES]
    #[arg(long, global = true)]
    commit_retries: Option<u32>,
}

impl GlobalArgs {
    fn settings(&self) -> floe::Result<Settings> {
        let flags = PartialSettings {
            catalog_url: self.catalog_url.clone(),
            warehouse: self.warehouse.clone(),
            catalog_name: self.catalog_name.clone(),
            s3_endpoint: self.s3_endpoint.clone(),
            s3_region: self.s3_region.clone(),
            s3_path_style: self.s3_path_style.then_some(true),
            commit_retries: self.commit_retries,
            ..Default::default()
        };
        Settings::resolve(flags, self.config.as_deref())
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the catalog schema and the warehouse (checking S3 credentials, creating the bucket).
    Init,
    /// List namespaces.
    Namespaces,
    /// Create or drop a namespace.
    Namespace {
        #[command(subcommand)]
        action: NamespaceAction,
    },
    /// List tables (of one namespace, or of all).
    Tables {
        /// Namespace.
        namespace: Option<String>,
    },
    /// Create a table.
    Create {
        /// NS.TABLE
        table: String,
        /// Columns: "id long not null, name string, ts timestamptz, amount decimal(12,2)".
        #[arg(long)]
        schema: String,
        /// Partition field: col, day(col), month(col), year(col), hour(col), bucket(N, col), truncate(W, col). Repeatable.
        #[arg(long = "partition")]
        partition: Vec<String>,
        /// Table property KEY=VALUE. Repeatable.
        #[arg(long = "property", value_parser = parse_key_value)]
        properties: Vec<(String, String)>,
    },
    /// Append files (CSV with header, NDJSON, or Parquet) as one snapshot.
    Append {
        /// NS.TABLE
        table: String,
        /// Input files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Replace all rows, or the rows matching --where, with the files' rows, as one snapshot.
    Overwrite {
        /// NS.TABLE
        table: String,
        /// Input files.
        files: Vec<PathBuf>,
        /// Only replace rows matching this SQL predicate.
        #[arg(long = "where")]
        filter: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Delete the rows matching a SQL predicate (copy-on-write), as one snapshot.
    Delete {
        /// NS.TABLE
        table: String,
        /// SQL predicate.
        #[arg(long = "where")]
        filter: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Add an optional column.
    AddColumn {
        /// NS.TABLE
        table: String,
        /// Column name.
        name: String,
        /// Column type (long, string, double, timestamptz, decimal(12,2), ...).
        r#type: String,
    },
    /// Drop a table (with --purge, delete its files too).
    Drop {
        /// NS.TABLE
        table: String,
        /// Delete data and metadata files.
        #[arg(long)]
        purge: bool,
    },
    /// Schema, partition spec, properties, refs, current snapshot, files and rows of a table.
    Show {
        /// NS.TABLE[@REF]
        table: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Snapshot history: id, parent, time, operation, summary, refs.
    Snapshots {
        /// NS.TABLE
        table: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Read rows. REF is a snapshot id, a branch, a tag, or an RFC 3339 time.
    Scan {
        /// NS.TABLE[@REF]
        table: String,
        /// Columns to return, comma-separated.
        #[arg(long, value_delimiter = ',')]
        columns: Option<Vec<String>>,
        /// SQL predicate.
        #[arg(long = "where")]
        filter: Option<String>,
        /// At most this many rows.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Files and rows added and removed between two states of a table.
    Changes {
        /// NS.TABLE
        table: String,
        /// Earlier state (snapshot id, branch, tag or time).
        from: String,
        /// Later state (default: main).
        to: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Create or drop a branch.
    Branch {
        #[command(subcommand)]
        action: RefAction,
    },
    /// Create or drop a tag.
    Tag {
        #[command(subcommand)]
        action: RefAction,
    },
    /// Fast-forward main to the head of a branch.
    Publish {
        /// NS.TABLE
        table: String,
        /// Branch.
        branch: String,
    },
    /// Generate a deterministic, deliberately dirty clickstream (CSV, NDJSON or Parquet).
    Generate {
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
    },
    /// Run the clickstream pipeline; every stage commits its outputs as snapshots with lineage.
    Run {
        /// Input events for ingest: a file, a directory or a glob, local or s3://.
        #[arg(long)]
        input: Option<String>,
        /// Namespace of the pipeline's tables.
        #[arg(long, default_value = "clickstream")]
        namespace: String,
        /// Engine: duckdb, datafusion, both (each into its own branch; both publishes nothing), or auto
        /// (by input size and free memory; the choice and its reason are printed and recorded).
        #[arg(long, default_value = "duckdb")]
        engine: String,
        /// Stages to run, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        stages: Option<Vec<String>>,
        /// Run stages even when an identical earlier run can be reused.
        #[arg(long)]
        force: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// DuckDB SQL over floe tables: NS.TABLE, "NS.TABLE@REF", "NS.TABLE$snapshots|refs|files|history",
    /// floe_runs. Without a query, it is read from standard input.
    Sql {
        /// The query.
        query: Option<String>,
        /// table, csv, json, or parquet (with --out).
        #[arg(long, default_value = "table")]
        format: String,
        /// Output file for --format parquet.
        #[arg(long)]
        out: Option<PathBuf>,
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
    /// The run ledger: one row per stage and engine of each run.
    Runs {
        /// Rows to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Compare two tables or one table at two refs: exit 0 when equal, 1 when different, 2 on error.
    Diff {
        /// NS.TABLE[@REF]
        left: String,
        /// NS.TABLE[@REF]
        right: String,
        /// Key columns, comma-separated: report added, removed and changed rows by key.
        #[arg(long, value_delimiter = ',')]
        key: Option<Vec<String>>,
        /// Relative tolerance for doubles.
        #[arg(long, default_value_t = 1e-9)]
        float_tolerance: f64,
        /// Memory budget for rows of differing buckets, in MB.
        #[arg(long, default_value_t = 256)]
        memory_mb: usize,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Benchmark the two engine paths: the whole pipeline per size, engine and repetition into fresh
    /// tables, against raw DuckDB and DataFusion over plain Parquet and PyIceberg's append, with the
    /// engines' outputs checked equal; writes report.json, report.md and SVG charts to --out.
    Bench {
        /// CSV input sizes (generated once per seed and size, cached under --out/inputs).
        #[arg(long, value_delimiter = ',', default_value = "10MB,100MB,1GB")]
        sizes: Vec<String>,
        /// Engines.
        #[arg(long, value_delimiter = ',', default_value = "duckdb,datafusion")]
        engines: Vec<String>,
        /// Repetitions of every run (figures are min / median / max).
        #[arg(long, default_value_t = 3)]
        repetitions: usize,
        /// Directory of the report and the cached inputs.
        #[arg(long, default_value = "floe-bench")]
        out: PathBuf,
        /// Seed of the generated inputs.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Snapshots of the commit-latency history.
        #[arg(long, default_value_t = 500)]
        snapshots: usize,
        /// Rows of the storage benchmark's append.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Skip the raw-engine baselines.
        #[arg(long)]
        no_raw: bool,
        /// Skip the PyIceberg peer.
        #[arg(long)]
        no_peer: bool,
        /// Only the storage layer: commit latency as history grows, and append throughput.
        #[arg(long)]
        storage_only: bool,
        /// Run every pass in this process instead of a child process each (peak memory then
        /// includes what earlier passes left with the allocator).
        #[arg(long)]
        in_process: bool,
        /// Prefix of the benchmark's namespaces (their tables are dropped at the end).
        #[arg(long, default_value = "floe_bench")]
        namespace: String,
        /// Output of --storage-only.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// One pass of `floe bench` (run by it in a child process); prints the stage figures as JSON.
    #[command(hide = true)]
    BenchPass {
        /// `floe` or `raw`.
        #[arg(long)]
        path: String,
        /// Engine.
        #[arg(long)]
        engine: String,
        /// Input directory.
        #[arg(long)]
        input: String,
        /// Namespace of the pass's fresh tables.
        #[arg(long)]
        namespace: String,
        /// Scratch directory of raw passes.
        #[arg(long)]
        work: PathBuf,
    },
    /// Move main back to an earlier snapshot.
    Rollback {
        /// NS.TABLE
        table: String,
        /// Snapshot id (an ancestor of main).
        snapshot: i64,
    },
}

#[derive(Subcommand, Debug)]
enum NamespaceAction {
    /// Create a namespace.
    Create {
        /// Namespace.
        namespace: String,
    },
    /// Drop an empty namespace.
    Drop {
        /// Namespace.
        namespace: String,
    },
}

#[derive(Subcommand, Debug)]
enum RefAction {
    /// Create it at main's head, or at --at.
    Create {
        /// NS.TABLE
        table: String,
        /// Name.
        name: String,
        /// Snapshot id, branch, tag or time to point at.
        #[arg(long)]
        at: Option<String>,
    },
    /// Drop it.
    Drop {
        /// NS.TABLE
        table: String,
        /// Name.
        name: String,
    },
}

#[derive(Args, Debug)]
struct WriteArgs {
    /// Commit to this branch instead of main.
    #[arg(long)]
    branch: Option<String>,
    /// Snapshot summary property KEY=VALUE. Repeatable.
    #[arg(long = "property", value_parser = parse_key_value)]
    properties: Vec<(String, String)>,
    /// floe.run-id of the snapshot.
    #[arg(long)]
    run_id: Option<String>,
    /// floe.stage of the snapshot.
    #[arg(long)]
    stage: Option<String>,
}

impl WriteArgs {
    fn options(&self) -> CommitOptions {
        let mut o = CommitOptions::default();
        if let Some(b) = &self.branch {
            o.branch = b.clone();
        }
        o.properties = self.properties.iter().cloned().collect::<BTreeMap<_, _>>();
        o.lineage = Lineage {
            run_id: self.run_id.clone(),
            stage: self.stage.clone(),
            engine: None,
            inputs: BTreeMap::new(),
        };
        o
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("floe: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // `floe diff` keeps exit code 1 for "different"; its errors are 2.
    let error_code = if matches!(cli.command, Command::Diff { .. }) {
        2
    } else {
        1
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "floe: error: {}",
                floe::config::redact_secrets(&e.to_string()).replace('\n', " ")
            );
            ExitCode::from(error_code)
        }
    }
}

async fn run(cli: Cli) -> floe::Result<ExitCode> {
    let settings = cli.global.settings()?;
    if let Command::Init = cli.command {
        let (_, report) = Floe::init(settings).await?;
        println!("catalog    {}", report.catalog);
        println!("warehouse  {}", report.warehouse);
        if report.bucket_created {
            println!("bucket     created");
        }
        println!("ready");
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Generate {
        events,
        size,
        seed,
        format,
        files,
        days,
        dirty_rate,
        out,
    } = &cli.command
    {
        return generate(
            &settings,
            *events,
            size.as_deref(),
            *seed,
            format,
            *files,
            *days,
            *dirty_rate,
            out,
        )
        .await
        .map(|()| ExitCode::SUCCESS);
    }
    let floe = Floe::connect(settings).await?;
    match cli.command {
        Command::Init | Command::Generate { .. } => unreachable!("handled above"),
        Command::Namespaces => {
            for ns in floe.namespaces().await? {
                println!("{ns}");
            }
        }
        Command::Namespace {
            action: NamespaceAction::Create { namespace },
        } => {
            floe.create_namespace(&Namespace::parse(&namespace)?).await?;
            println!("created namespace {namespace}");
        }
        Command::Namespace {
            action: NamespaceAction::Drop { namespace },
        } => {
            floe.catalog()
                .drop_namespace(&Namespace::parse(&namespace)?)
                .await?;
            println!("dropped namespace {namespace}");
        }
        Command::Tables { namespace } => {
            let namespaces = match namespace {
                Some(ns) => vec![Namespace::parse(&ns)?],
                None => floe.namespaces().await?,
            };
            for ns in namespaces {
                for t in floe.tables(&ns).await? {
                    println!("{t}");
                }
            }
        }
        Command::Create {
            table,
            schema,
            partition,
            properties,
        } => {
            let name = TableName::parse(&table)?;
            let definition = TableDefinition {
                schema: input::parse_schema(&schema)?,
                partition: partition
                    .iter()
                    .map(|p| PartitionField::parse(p))
                    .collect::<floe::Result<_>>()?,
                properties: properties.into_iter().collect(),
            };
            floe.create_table(&name, definition).await?;
            println!("created table {name}");
        }
        Command::Append { table, files, write } => {
            let name = TableName::parse(&table)?;
            let t = floe.load_table(&name).await?;
            let batches = input::read_files(&files, t.arrow_schema()?).await?;
            let r = floe.append(&name, batches, &write.options()).await?;
            output::print_commit(&r);
        }
        Command::Overwrite {
            table,
            files,
            filter,
            write,
        } => {
            let name = TableName::parse(&table)?;
            let t = floe.load_table(&name).await?;
            let batches = input::read_files(&files, t.arrow_schema()?).await?;
            let r = floe
                .overwrite(&name, filter.map(RowFilter::sql), batches, &write.options())
                .await?;
            output::print_commit(&r);
        }
        Command::Delete { table, filter, write } => {
            let name = TableName::parse(&table)?;
            let r = floe
                .delete(&name, RowFilter::sql(filter), &write.options())
                .await?;
            output::print_commit(&r);
        }
        Command::AddColumn { table, name, r#type } => {
            let t = TableName::parse(&table)?;
            let dt = input::parse_type(&r#type)?;
            floe.add_column(&t, &name, &dt).await?;
            println!("added column {name} to {t}");
        }
        Command::Drop { table, purge } => {
            let name = TableName::parse(&table)?;
            floe.drop_table(&name, purge).await?;
            println!(
                "dropped table {name}{}",
                if purge { " and its files" } else { "" }
            );
        }
        Command::Show { table, format } => {
            let (name, at) = floe::table::parse_table_ref(&table)?;
            let t = floe.load_table(&name).await?;
            output::print_show(&t, &at, format).await?;
        }
        Command::Snapshots { table, format } => {
            let t = floe.load_table(&TableName::parse(&table)?).await?;
            output::print_snapshots(&t, format)?;
        }
        Command::Scan {
            table,
            columns,
            filter,
            limit,
            format,
        } => {
            let (name, at) = floe::table::parse_table_ref(&table)?;
            let options = ScanOptions {
                at: Some(at),
                columns,
                filter: filter.map(RowFilter::sql),
                limit,
            };
            let stream = floe.scan(&name, &options).await?;
            output::print_batches(stream, format).await?;
        }
        Command::Changes {
            table,
            from,
            to,
            format,
        } => {
            let name = TableName::parse(&table)?;
            let to = to.map(|t| At::parse(&t)).unwrap_or(At::Current);
            let c = floe.changes(&name, &At::parse(&from), &to).await?;
            output::print_changes(&c, format)?;
        }
        Command::Branch { action } => ref_action(&floe, action, false).await?,
        Command::Tag { action } => ref_action(&floe, action, true).await?,
        Command::Publish { table, branch } => {
            let t = floe.publish(&TableName::parse(&table)?, &branch).await?;
            println!(
                "main of {} is now at {}",
                t.name(),
                t.current_snapshot()
                    .map(|s| s.snapshot_id().to_string())
                    .unwrap_or_default()
            );
        }
        Command::Run {
            input,
            namespace,
            engine,
            stages,
            force,
            format,
        } => {
            let duckdb = || -> std::sync::Arc<dyn floe::pipeline::Engine> {
                std::sync::Arc::new(floe::pipeline::DuckDbEngine::default())
            };
            let datafusion = || -> std::sync::Arc<dyn floe::pipeline::Engine> {
                std::sync::Arc::new(floe::pipeline::DataFusionEngine::default())
            };
            let mut engine_reason = None;
            let engines = match engine.as_str() {
                "datafusion" => vec![datafusion()],
                "duckdb" => vec![duckdb()],
                "both" => vec![duckdb(), datafusion()],
                "auto" => {
                    let ns = Namespace::parse(&namespace)?;
                    let bytes = floe::pipeline::runner::input_bytes(&floe, &ns, input.as_deref()).await?;
                    let (name, reason) = floe::pipeline::runner::choose_engine(
                        bytes,
                        floe::pipeline::runner::available_memory(),
                    );
                    eprintln!("engine auto: {name} ({reason})");
                    engine_reason = Some(format!("auto: {name}: {reason}"));
                    vec![if name == "duckdb" { duckdb() } else { datafusion() }]
                }
                other => {
                    return Err(floe::Error::new(
                        floe::ErrorKind::InvalidInput,
                        format!("unknown engine {other:?} (duckdb, datafusion, both, auto)"),
                    ))
                }
            };
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
                progress: Some(output::stage_progress()),
                ..floe::pipeline::RunOptions::new(Namespace::parse(&namespace)?, input, engines)
            };
            let report = floe::pipeline::run(&floe, &options).await?;
            output::print_run(&report, format)?;
            if report.equivalence.as_ref().is_some_and(|e| !e.equal) {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Runs { limit, format } => {
            let entries = floe::pipeline::ledger::list(floe.catalog(), limit).await?;
            output::print_runs(&entries, format)?;
        }
        Command::Demo { events, seed } => {
            if !demo::run(&floe, events, seed).await? {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Sql { query, format, out } => match query {
            Some(q) => output::print_query(floe::query::sql(&floe, &q).await?, &format, out.as_deref())?,
            None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => repl(&floe, &format).await?,
            None => {
                let mut q = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut q)?;
                output::print_query(floe::query::sql(&floe, &q).await?, &format, out.as_deref())?;
            }
        },
        Command::Verify {
            run_id,
            namespace,
            format,
        } => {
            let eq = floe::pipeline::runner::verify(&floe, &Namespace::parse(&namespace)?, &run_id).await?;
            output::print_equivalence(&eq, format)?;
            return Ok(if eq.equal {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Command::Diff {
            left,
            right,
            key,
            float_tolerance,
            memory_mb,
            format,
        } => {
            let options = floe::diff::DiffOptions {
                key,
                float_tolerance,
                memory_limit: memory_mb.max(1) * 1024 * 1024,
                ..Default::default()
            };
            let report = floe::diff::diff(
                &floe,
                &floe::diff::DiffSide::parse(&left)?,
                &floe::diff::DiffSide::parse(&right)?,
                &options,
            )
            .await?;
            output::print_diff(&report, format)?;
            return Ok(if report.equal {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Command::Bench {
            sizes,
            engines,
            repetitions,
            out,
            seed,
            snapshots,
            rows,
            no_raw,
            no_peer,
            storage_only,
            in_process,
            namespace,
            format,
        } => {
            if storage_only {
                let ns = Namespace::parse(&format!("{namespace}_storage"))?;
                let r = floe::bench::core_benchmark(
                    &floe,
                    &ns,
                    snapshots.max(1),
                    rows.max(1),
                    repetitions.max(1),
                )
                .await?;
                output::print_bench(&r, format)?;
                return Ok(ExitCode::SUCCESS);
            }
            let options = floe::bench::BenchOptions {
                sizes: sizes
                    .iter()
                    .map(|s| input::parse_size(s))
                    .collect::<floe::Result<_>>()?,
                engines,
                repetitions,
                out: out.clone(),
                seed,
                history: snapshots,
                append_rows: rows,
                raw: !no_raw,
                peer: !no_peer,
                namespace_prefix: namespace,
                progress: None,
                isolate: if in_process {
                    None
                } else {
                    Some(std::env::current_exe()?)
                },
            };
            let report = output::bench_with_progress(&floe, options).await?;
            let files = floe::bench::report::write(&report, &out)?;
            print!("{}", output::bench_summary(&report));
            for f in files {
                println!("wrote {}", f.display());
            }
            if report.measurements.equivalence.iter().any(|e| !e.equal) {
                eprintln!("the engines' outputs differ: see the report's Equivalence section");
                return Ok(ExitCode::from(1));
            }
            if report.measurements.runs.iter().any(|r| r.error.is_some()) {
                eprintln!("some passes failed: see the report's Failed passes section");
                return Ok(ExitCode::from(1));
            }
        }
        Command::BenchPass {
            path,
            engine,
            input,
            namespace,
            work,
        } => {
            let input = floe::bench::InputInfo {
                size: String::new(),
                bytes: 0,
                events: 0,
                dir: input,
            };
            let figures = floe::bench::run_pass(
                &floe,
                &path,
                &engine,
                &input,
                &Namespace::parse(&namespace)?,
                &work,
            )
            .await?;
            println!("{}", serde_json::to_string(&figures)?);
        }
        Command::Rollback { table, snapshot } => {
            let t = floe.rollback(&TableName::parse(&table)?, snapshot).await?;
            println!("main of {} is now at {snapshot}", t.name());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
async fn generate(
    settings: &Settings,
    events: Option<u64>,
    size: Option<&str>,
    seed: u64,
    format: &str,
    files: usize,
    days: u32,
    dirty_rate: Option<f64>,
    out: &str,
) -> floe::Result<()> {
    use floe::generate::{generate, DirtyRates, GenerateOptions, OutputFormat};
    let format: OutputFormat = format.parse()?;
    let mut options = GenerateOptions::new(events.unwrap_or(0), seed);
    options.format = format;
    options.files = files.max(1);
    options.days = days;
    if let Some(rate) = dirty_rate {
        options.dirty = DirtyRates::uniform(rate);
    }
    if let Some(size) = size {
        options = options.with_target_size(input::parse_size(size)?)?;
    }
    let out_uri = floe::storage::Warehouse::parse(out)?.uri();
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
    for f in &report.files {
        println!("{f}");
    }
    println!(
        "{} events, {} bytes, {} files ({format}, seed {seed})",
        report.events,
        report.bytes,
        report.files.len()
    );
    Ok(())
}

/// The interactive SQL prompt. Statements end with `;`; `\history` lists earlier statements (kept
/// in ~/.floe_history across sessions) and `!N` runs statement N again.
async fn repl(floe: &Floe, format: &str) -> floe::Result<()> {
    use std::io::{BufRead, Write};
    let path = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".floe_history"));
    let mut history: Vec<String> = path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.lines().map(|l| l.replace("\\n", "\n")).collect())
        .unwrap_or_default();
    println!(
        "floe sql: DuckDB SQL over floe tables (NS.TABLE, \"NS.TABLE@REF\", \"NS.TABLE$snapshots\", floe_runs).\n\
         End statements with ;  \\history lists earlier ones, !N runs one again, Ctrl-D quits."
    );
    let stdin = std::io::stdin();
    let mut statement = String::new();
    loop {
        print!("{}", if statement.is_empty() { "floe> " } else { "  ..> " });
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            break;
        }
        let trimmed = line.trim();
        if statement.is_empty() && trimmed == "\\history" {
            for (i, h) in history.iter().enumerate() {
                println!("{:>4}  {}", i + 1, h.replace('\n', " "));
            }
            continue;
        }
        if statement.is_empty() && trimmed.starts_with('!') {
            match trimmed[1..]
                .parse::<usize>()
                .ok()
                .and_then(|n| history.get(n.wrapping_sub(1)).cloned())
            {
                Some(h) => statement = h,
                None => {
                    eprintln!("error: no statement {trimmed}");
                    continue;
                }
            }
        } else {
            statement.push_str(&line);
        }
        if !statement.trim_end().ends_with(';') {
            continue;
        }
        let text = statement.trim().to_string();
        statement.clear();
        match floe::query::sql(floe, &text).await {
            Ok(result) => output::print_query(result, format, None)?,
            Err(e) => eprintln!("error: {e}"),
        }
        history.push(text.clone());
        if let Some(p) = &path {
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(p) {
                let _ = writeln!(f, "{}", text.replace('\n', "\\n"));
            }
        }
    }
    Ok(())
}

async fn ref_action(floe: &Floe, action: RefAction, tag: bool) -> floe::Result<()> {
    let what = if tag { "tag" } else { "branch" };
    match action {
        RefAction::Create { table, name, at } => {
            let t = TableName::parse(&table)?;
            let at = at.map(|a| At::parse(&a)).unwrap_or(At::Current);
            let table = if tag {
                floe.create_tag(&t, &name, &at).await?
            } else {
                floe.create_branch(&t, &name, &at).await?
            };
            let id = table.find_ref(&name).map(|r| r.snapshot_id).unwrap_or_default();
            println!("created {what} {name} of {t} at {id}");
        }
        RefAction::Drop { table, name } => {
            let t = TableName::parse(&table)?;
            if let Some(r) = floe.load_table(&t).await?.find_ref(&name) {
                if (r.kind == "tag") != tag {
                    return Err(floe::Error::new(
                        floe::ErrorKind::InvalidInput,
                        format!("{name:?} is a {} of {t}, not a {what}", r.kind),
                    ));
                }
            }
            floe.drop_ref(&t, &name).await?;
            println!("dropped {what} {name} of {t}");
        }
    }
    Ok(())
}
