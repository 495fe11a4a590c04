//! `floe bench`: the engine comparison benchmark (its passes' child processes are the library's:
//! `floe::bench::child_main`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use floe::{Floe, Namespace};

use super::output::{self, Format};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Benchmark the two engine paths: the whole pipeline per size, engine and repetition into fresh
    /// tables, against raw DuckDB and DataFusion over plain Parquet and PyIceberg's append, with the
    /// engines' outputs checked equal; writes report.json, report.md and SVG charts to --out.
    Bench {
        /// CSV input sizes (generated once per seed and size, cached under --out/inputs).
        #[arg(long, value_delimiter = ',', default_value = "10MB,100MB,1GB")]
        sizes: Vec<String>,
        /// Engines: duckdb, datafusion, ballista (the last on a loopback cluster of this floe
        /// executable per --executors count, reported against local DataFusion).
        #[arg(long, value_delimiter = ',', default_value = "duckdb,datafusion")]
        engines: Vec<String>,
        /// Executors of the loopback clusters of the ballista engine (one cluster per count).
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        executors: Vec<usize>,
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
        /// Days of the storage benchmark's simulated year of daily runs (0 skips it).
        #[arg(long, default_value_t = 365)]
        days: usize,
        /// Rows each simulated day writes.
        #[arg(long, default_value_t = 10_000)]
        rows_per_day: usize,
        /// Skip the raw-engine baselines.
        #[arg(long)]
        no_raw: bool,
        /// Skip the PyIceberg peer.
        #[arg(long)]
        no_peer: bool,
        /// Only the storage layer: commit latency and scan planning as history grows, append
        /// throughput, and storage after a simulated year of daily runs.
        #[arg(long)]
        storage_only: bool,
        /// Also benchmark extraction from this Postgres database (`postgres://...`): a generated
        /// table of --ingest-rows rows (created there and dropped after) by `floe ingest` with one
        /// unit and with auto units, against `psql`'s COPY. A password here is visible to other local
        /// users: prefer the environment variable (or PGPASSWORD).
        #[arg(
            long,
            value_name = "URL",
            env = "FLOE_BENCH_INGEST_SOURCE",
            hide_env_values = true
        )]
        ingest_source: Option<String>,
        /// Rows of the extraction benchmark's source table.
        #[arg(long, default_value_t = 5_000_000)]
        ingest_rows: u64,
        /// Rows of a second source table extracted through the benchmark's WAN proxy (20 ms round
        /// trip, 8 MB/s per connection) with one unit and with auto units; 0 skips it.
        #[arg(long, default_value_t = 500_000)]
        ingest_wan_rows: u64,
        /// Only the extraction benchmark (needs --ingest-source).
        #[arg(long)]
        ingest_only: bool,
        /// Only the upsert benchmark: a table of --upsert-rows rows in 8 data files upserted with 1%
        /// of its rows changed (in every file) and 0.5% new, by floe in merge-on-read and in
        /// copy-on-write and by PyIceberg's upsert (time, bytes written), then full scans before,
        /// after and after `floe compact` by floe, PyIceberg and DuckDB; writes report.json and
        /// report.md to --out/upsert.
        #[arg(long, conflicts_with_all = ["storage_only", "ingest_only"])]
        upsert: bool,
        /// Rows of the upsert benchmark's table.
        #[arg(long, default_value_t = 5_000_000)]
        upsert_rows: usize,
        /// Only the REST catalog benchmark, against `floe serve` on a loopback port: warm loads of a
        /// table of --rest-snapshots snapshots through HTTP (request to full body) against
        /// Floe::load_table in-process (target p50 <= 5 ms), and commits per second of 8 concurrent
        /// PyIceberg appenders through floe serve against PyIceberg's SqlCatalog on the same
        /// catalog; writes report.json and report.md to --out/rest.
        #[arg(long, conflicts_with_all = ["storage_only", "ingest_only", "upsert"])]
        rest: bool,
        /// Only the `floe sql` benchmark, on the configured store (S3 in the test command's
        /// environment): a table of --days daily partitions of --rows-per-day rows; a one-day query
        /// with its WHERE pushed into floe's scan and without, bytes read against the table's bytes
        /// (target at most 2%), the answer against a local-disk twin, and a whole-table query given a
        /// third of the table's bytes as memory; writes report.json and report.md to --out/sql.
        #[arg(long, conflicts_with_all = ["storage_only", "ingest_only", "upsert", "rest"])]
        sql_only: bool,
        /// Snapshots of the REST benchmark's loaded table.
        #[arg(long, default_value_t = 1_000)]
        rest_snapshots: usize,
        /// Appends of each of the REST benchmark's 8 PyIceberg appenders.
        #[arg(long, default_value_t = 25)]
        rest_commits: usize,
        /// Run every pass in this process instead of a child process each (peak memory then
        /// includes what earlier passes left with the allocator).
        #[arg(long)]
        in_process: bool,
        /// Prefix of the benchmark's namespaces (their tables are dropped at the end).
        #[arg(long, default_value = "floe_bench")]
        namespace: String,
        /// Output of --storage-only, --ingest-only, --upsert, --rest and --sql-only.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

pub async fn run(floe: &Floe, command: Command) -> floe::Result<ExitCode> {
    match command {
        Command::Bench {
            sizes,
            engines,
            executors,
            repetitions,
            out,
            seed,
            snapshots,
            rows,
            days,
            rows_per_day,
            no_raw,
            no_peer,
            storage_only,
            ingest_source,
            ingest_rows,
            ingest_wan_rows,
            ingest_only,
            upsert,
            upsert_rows,
            rest,
            rest_snapshots,
            rest_commits,
            sql_only,
            in_process,
            namespace,
            format,
        } => {
            let ingest = ingest_source.map(|source| floe::bench::IngestBenchOptions {
                source,
                rows: ingest_rows,
                wan_rows: ingest_wan_rows,
                repetitions,
            });
            if ingest_only {
                let Some(ingest) = ingest else {
                    return Err(floe::Error::new(
                        floe::ErrorKind::InvalidInput,
                        "--ingest-only needs --ingest-source postgres://...",
                    ));
                };
                let ns = Namespace::parse(&format!("{namespace}_ingest"))?;
                let r = floe::bench::ingest_benchmark(floe, &ns, &ingest).await?;
                output::bench::ingest_figures(&mut output::stdout(), &r, format)?;
                return Ok(ExitCode::SUCCESS);
            }
            if sql_only {
                let ns = Namespace::parse(&format!("{namespace}_sql"))?;
                let options = floe::bench::SqlBenchOptions { days, rows_per_day };
                let r = floe::bench::sql_benchmark(floe, &ns, &options).await?;
                let files = floe::bench::sql::write_sql(&r, &out.join("sql"))?;
                let stdout = &mut output::stdout();
                if format == Format::Json {
                    writeln!(stdout, "{}", serde_json::to_string_pretty(&r).unwrap_or_default())?;
                } else {
                    write!(stdout, "{}", floe::bench::sql::sql_markdown(&r))?;
                    for f in files {
                        writeln!(stdout, "wrote {}", f.display())?;
                    }
                }
                if !r.answers_equal {
                    eprintln!("floe sql answered differently with pushdown, without it or on local disk: see the report");
                    return Ok(ExitCode::from(1));
                }
                return Ok(ExitCode::SUCCESS);
            }
            if rest {
                let ns = Namespace::parse(&format!("{namespace}_rest"))?;
                let options = floe::bench::RestBenchOptions {
                    snapshots: rest_snapshots,
                    commits: rest_commits,
                    peer: !no_peer,
                    dir: out.clone(),
                    ..Default::default()
                };
                let r = floe::bench::rest_benchmark(floe, &ns, &options).await?;
                let files = floe::bench::rest::report::write_rest(&r, &out.join("rest"))?;
                let stdout = &mut output::stdout();
                output::bench::rest_figures(stdout, &r, format)?;
                if format != Format::Json {
                    for f in files {
                        writeln!(stdout, "wrote {}", f.display())?;
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            if upsert {
                let ns = Namespace::parse(&format!("{namespace}_upsert"))?;
                let options = floe::bench::UpsertBenchOptions {
                    rows: upsert_rows,
                    repetitions,
                    peer: !no_peer,
                    dir: out.clone(),
                    ..Default::default()
                };
                let r = floe::bench::upsert_benchmark(floe, &ns, &options).await?;
                let files = floe::bench::report::write_upsert(&r, &out.join("upsert"))?;
                let stdout = &mut output::stdout();
                output::bench::upsert_figures(stdout, &r, format)?;
                if format != Format::Json {
                    for f in files {
                        writeln!(stdout, "wrote {}", f.display())?;
                    }
                }
                if r.same_rows == Some(false) {
                    eprintln!("the upserted tables hold different rows: see the report's runs");
                    return Ok(ExitCode::from(1));
                }
                return Ok(ExitCode::SUCCESS);
            }
            if storage_only {
                let ns = Namespace::parse(&format!("{namespace}_storage"))?;
                let options = floe::bench::StorageBenchOptions {
                    snapshots,
                    rows,
                    repetitions,
                    days,
                    rows_per_day,
                };
                let r = floe::bench::core_benchmark(floe, &ns, &options).await?;
                output::bench::storage_figures(&mut output::stdout(), &r, format)?;
                return Ok(ExitCode::SUCCESS);
            }
            let (bar, progress) = output::bench::progress_bar();
            let options = floe::bench::BenchOptions {
                sizes: sizes
                    .iter()
                    .map(|s| floe::units::parse_size(s))
                    .collect::<floe::Result<_>>()?,
                engines,
                executors,
                cluster_exe: Some(std::env::current_exe()?),
                repetitions,
                out: out.clone(),
                seed,
                history: snapshots,
                append_rows: rows,
                days,
                rows_per_day,
                raw: !no_raw,
                peer: !no_peer,
                namespace_prefix: namespace,
                progress: Some(progress),
                isolate: if in_process {
                    None
                } else {
                    Some(std::env::current_exe()?)
                },
                ingest,
            };
            let report = floe::bench::benchmark(floe, &options).await;
            bar.finish_and_clear();
            let report = report?;
            let files = floe::bench::report::write(&report, &out)?;
            let stdout = &mut output::stdout();
            output::bench::summary(stdout, &report)?;
            for f in files {
                writeln!(stdout, "wrote {}", f.display())?;
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
    }
    Ok(ExitCode::SUCCESS)
}
