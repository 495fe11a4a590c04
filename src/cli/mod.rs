//! The `floe` command: a thin layer over the library. Every command parses its arguments, calls the
//! library, prints, and maps errors to one line on stderr and a non-zero exit code. One file per
//! command group: [`catalog`] (init, namespaces, tables), [`table`] (create, write, read, diff),
//! [`rows`] (upsert, merge), [`schema`], [`partition`] and [`sort_order`] (a table's shape),
//! [`refs`] (branches, tags, publish, rollback), [`maintain`] (expire, orphans, compact), [`ingest`]
//! (parallel extraction), [`pipeline`] (generate, run, runs, verify, demo), [`sql`], [`bench`],
//! [`cluster`] (scheduler and executor processes), [`serve`] (the Iceberg REST catalog); [`output`]
//! prints, a printer per command group.

mod bench;
mod catalog;
mod cluster;
mod demo;
mod ingest;
mod maintain;
mod output;
mod partition;
mod pipeline;
mod refs;
mod rows;
mod schema;
mod serve;
mod sort_order;
mod sql;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use floe::{Floe, PartialSettings, Settings};

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
    /// Catalog database: sqlite:PATH or postgres://USER@HOST:PORT/DB (a password here is visible to
    /// other local users; prefer PGPASSWORD or ~/.pgpass) [env: FLOE_CATALOG_URL]
    #[arg(long, global = true)]
    catalog_url: Option<String>,
    /// Warehouse: a local path, file:///path or s3://bucket/prefix [env: FLOE_WAREHOUSE]
    #[arg(long, global = true)]
    warehouse: Option<String>,
    /// Value of the catalog_name column (default floe) [env: FLOE_CATALOG_NAME]
    #[arg(long, global = true)]
    catalog_name: Option<String>,
    /// Config file (default ./floe.toml when present)
    #[arg(long, global = true, env = "FLOE_CONFIG", hide_env_values = true)]
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
    /// A cluster for the ballista engine: df://HOST:PORT [env: FLOE_CLUSTER]
    #[arg(long, global = true)]
    cluster: Option<String>,
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
            cluster: self.cluster.clone(),
            ..Default::default()
        };
        Settings::resolve(flags, self.config.as_deref())
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Catalog(catalog::Command),
    #[command(flatten)]
    Table(table::Command),
    #[command(flatten)]
    Rows(rows::Command),
    #[command(flatten)]
    Schema(schema::Command),
    #[command(flatten)]
    Partition(partition::Command),
    #[command(flatten)]
    SortOrder(sort_order::Command),
    #[command(flatten)]
    Refs(refs::Command),
    #[command(flatten)]
    Maintain(maintain::Command),
    #[command(flatten)]
    Ingest(ingest::Command),
    #[command(flatten)]
    Pipeline(pipeline::Command),
    #[command(flatten)]
    Sql(sql::Command),
    #[command(flatten)]
    Bench(bench::Command),
    #[command(flatten)]
    Cluster(cluster::Command),
    #[command(flatten)]
    Serve(serve::Command),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
    let error_code = if table::is_diff(&cli.command) { 2 } else { 1 };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // `floe snapshots | head`: the reader went away; stop quietly, as `cat` does.
        Err(e) if output::stdout_was_closed(&e) => ExitCode::SUCCESS,
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
    // Commands that need no connection to the catalog.
    match cli.command {
        Command::Catalog(catalog::Command::Init) => catalog::init(settings).await,
        Command::Pipeline(pipeline::Command::Generate(g)) => return pipeline::generate(&settings, g).await,
        Command::Cluster(c) => return cluster::run(&settings, c).await,
        command => {
            let floe = Floe::connect(settings).await?;
            match command {
                Command::Catalog(c) => catalog::run(&floe, c).await,
                Command::Table(c) => table::run(&floe, c).await,
                Command::Rows(c) => rows::run(&floe, c).await,
                Command::Schema(c) => schema::run(&floe, c).await,
                Command::SortOrder(c) => sort_order::run(&floe, c).await,
                Command::Partition(c) => partition::run(&floe, c).await,
                Command::Refs(c) => refs::run(&floe, c).await,
                Command::Maintain(c) => maintain::run(&floe, c).await,
                Command::Ingest(c) => ingest::run(&floe, c).await,
                Command::Pipeline(c) => pipeline::run(&floe, c).await,
                Command::Sql(c) => sql::run(&floe, c).await,
                Command::Bench(c) => bench::run(&floe, c).await,
                Command::Serve(c) => serve::run(&floe, c).await,
                Command::Cluster(_) => unreachable!("cluster processes run before connecting"),
            }
        }
    }
}
