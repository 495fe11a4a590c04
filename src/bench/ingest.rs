//! The extraction benchmark: a Postgres table generated with `generate_series` extracted into a fresh
//! Iceberg table by `floe ingest` with one unit and with `auto` id-range units, against Postgres's own
//! `COPY (SELECT ...) TO STDOUT` drained by `psql` as the physical baseline; then a second table
//! extracted the same two ways through the benchmark's WAN proxy ([`super::wan`]: 20 ms round trip,
//! 8 MB/s per connection), where the source is across a network from floe rather than on its cores.
//! Medians over repetitions measured in one run, reported as ratios, with floe's peak memory.

use std::process::Stdio;
use std::time::Instant;

use serde::Serialize;
use sqlx::Connection;

use super::wan::{upstream_of, WanLink, WanProxy};
use crate::catalog::{Namespace, TableName};
use crate::error::{Error, ErrorKind, Result};
use crate::ingest::units::{PartitionBy, UnitCount};
use crate::ingest::IngestOptions;
use crate::lakehouse::Floe;
use crate::resources::Monitor;

/// What [`ingest_benchmark`] runs.
#[derive(Clone, Debug)]
pub struct IngestBenchOptions {
    /// The Postgres source database (`postgres://...`); the benchmark creates its table there and
    /// drops it at the end.
    pub source: String,
    /// Rows of the generated source table.
    pub rows: u64,
    /// Rows of the table extracted through the WAN proxy (0: not run).
    pub wan_rows: u64,
    /// Repetitions of each variant.
    pub repetitions: usize,
}

/// One variant's figures: median wall time over the repetitions, rows per second, peak memory.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestVariant {
    /// `one unit`, `auto units` or `psql COPY`.
    pub variant: String,
    /// Units the extraction ran (1 for the baseline).
    pub units: usize,
    /// Median seconds.
    pub seconds: f64,
    /// Rows per second at the median.
    pub rows_per_s: f64,
    /// Peak resident memory of this process during the run (floe's variants; 0 for the baseline,
    /// which runs in `psql`).
    pub peak_memory_bytes: u64,
}

/// What the extraction benchmark measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestBenchReport {
    /// Rows of the source table.
    pub rows: u64,
    /// Repetitions.
    pub repetitions: usize,
    /// Cores of this machine.
    pub cores: usize,
    /// One unit, auto units, and the `psql` COPY baseline.
    pub variants: Vec<IngestVariant>,
    /// Auto units' rows per second over one unit's, the source on the same cores (target ≥ 0.95:
    /// splitting must not cost).
    pub auto_to_one_ratio: f64,
    /// Auto units' rows per second over the COPY baseline's (target ≥ 0.8).
    pub auto_to_copy_ratio: f64,
    /// The link of the extraction through the WAN proxy, when it ran.
    pub wan: Option<WanFigures>,
    /// Through the WAN proxy, auto units' rows per second (one unit per core at a time) over one
    /// unit's (0 when it did not run).
    pub wan_auto_to_one_ratio: f64,
    /// Through the WAN proxy, auto units 4 at a time over one unit (target ≥ 1.8; 0 when it did
    /// not run).
    pub wan_auto_wide_to_one_ratio: f64,
}

/// The extraction through the WAN proxy: its table and its link.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WanFigures {
    /// Rows of the table extracted through it.
    pub rows: u64,
    /// Round trip the link adds, in milliseconds.
    pub round_trip_ms: f64,
    /// Bytes per second each connection may carry in each direction.
    pub bytes_per_second_per_connection: u64,
    /// Connections the extractions opened through it (every repetition, planning included).
    pub connections: usize,
}

impl IngestBenchReport {
    /// Rows per second of the variant named `variant` (0 when it did not run).
    pub fn rows_per_s(&self, variant: &str) -> f64 {
        self.variants
            .iter()
            .find(|v| v.variant == variant)
            .map_or(0.0, |v| v.rows_per_s)
    }
}

fn median(v: Vec<f64>) -> f64 {
    super::stats::Summary::of(&v).median
}

/// Create the source table: `rows` rows of an id key, a timestamp, two strings and a numeric, with
/// a primary key and fresh statistics (what `auto` units size themselves by).
async fn create_source(conn: &mut sqlx::PgConnection, table: &str, rows: u64) -> Result<()> {
    let statements = [
        format!("DROP TABLE IF EXISTS {table}"),
        format!(
            "CREATE TABLE {table} AS SELECT g::bigint AS id, \
             timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' AS event_time, \
             'user-' || (g % 100000) AS user_id, '/products/' || (g % 5000) || '?ref=' || md5(g::text) AS url, \
             ((g % 100000) / 100.0)::numeric(12,2) AS amount \
             FROM generate_series(1, {rows}) AS g"
        ),
        format!("ALTER TABLE {table} ADD PRIMARY KEY (id)"),
        format!("ANALYZE {table}"),
    ];
    for s in statements {
        sqlx::query(&s)
            .execute(&mut *conn)
            .await
            .map_err(|e| Error::new(ErrorKind::Engine, format!("ingest bench: {s}: {e}")))?;
    }
    Ok(())
}

/// The `psql` command that drains `COPY (SELECT * FROM table) TO STDOUT`: the source's password goes
/// in the environment (`PGPASSWORD`), never on the command line, where any local user sees it.
fn copy_command(source: &str, table: &str) -> tokio::process::Command {
    let credentials = crate::secrets::split_url_credentials(source);
    let (url, password) = (credentials.without, credentials.password);
    let mut cmd = tokio::process::Command::new("psql");
    cmd.arg("--no-psqlrc")
        .arg("--quiet")
        .arg("--dbname")
        .arg(&url)
        .arg("--command")
        .arg(format!("COPY (SELECT * FROM {table}) TO STDOUT"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    cmd
}

/// Seconds for `psql` to drain `COPY (SELECT * FROM table) TO STDOUT` into nothing.
async fn copy_baseline(source: &str, table: &str) -> Result<f64> {
    let mut cmd = copy_command(source, table);
    let t0 = Instant::now();
    let out = cmd.output().await.map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("ingest bench: cannot run psql (the COPY baseline; install postgresql-client): {e}"),
        )
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Engine,
            format!(
                "ingest bench: psql COPY failed: {}",
                crate::secrets::redact_secrets(String::from_utf8_lossy(&out.stderr).trim())
            ),
        ));
    }
    Ok(seconds)
}

/// Extract the generated table into a fresh table of `ns` once: seconds, units, peak memory.
async fn extract_once(
    floe: &Floe,
    options: &IngestBenchOptions,
    source_table: &str,
    into: &TableName,
    partition_by: Option<PartitionBy>,
    units: UnitCount,
    parallel: Option<usize>,
) -> Result<(f64, usize, u64)> {
    let mut o = IngestOptions::new(options.source.clone(), into.to_string());
    o.table = Some(source_table.to_string());
    o.create = true;
    o.partition_by = partition_by;
    o.units = units;
    if let Some(p) = parallel {
        o.parallel = p;
    }
    let monitor = Monitor::start();
    let report = crate::ingest::ingest(floe, &o).await?;
    let usage = monitor.finish();
    if report.rows != options.rows {
        return Err(Error::new(
            ErrorKind::Data,
            format!(
                "ingest bench: {} rows extracted, the source holds {}",
                report.rows, options.rows
            ),
        ));
    }
    floe.drop_table(into, true).await?;
    Ok((usage.wall_seconds, report.units.len(), usage.peak_memory_bytes))
}

/// Run the extraction benchmark into fresh tables of `ns` (dropped afterwards); the source table is
/// created in `options.source` and dropped at the end.
pub async fn ingest_benchmark(
    floe: &Floe,
    ns: &Namespace,
    options: &IngestBenchOptions,
) -> Result<IngestBenchReport> {
    if !(options.source.starts_with("postgres://") || options.source.starts_with("postgresql://")) {
        return Err(Error::invalid(
            "the ingest benchmark needs a Postgres source: --ingest-source postgres://...",
        ));
    }
    let rows = options.rows.max(1);
    let options = IngestBenchOptions {
        rows,
        repetitions: options.repetitions.max(1),
        ..options.clone()
    };
    crate::secrets::register_url_secrets(&options.source);
    floe.ensure_namespace(ns).await?;
    // Unique per run: two benchmarks may share a source database.
    let source_table = format!("floe_bench_ingest_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&options.source).await.map_err(|e| {
        Error::new(
            ErrorKind::Config,
            crate::secrets::redact_secrets(&format!("ingest bench: cannot connect to the source: {e}")),
        )
    })?;
    create_source(&mut conn, &source_table, rows).await?;
    let measured = measure_variants(floe, ns, &options, &source_table).await;
    let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {source_table}"))
        .execute(&mut conn)
        .await;
    let mut report = IngestBenchReport {
        rows,
        repetitions: options.repetitions,
        cores: crate::resources::cores(),
        variants: measured?,
        ..Default::default()
    };
    report.auto_to_one_ratio = report.rows_per_s("auto units") / report.rows_per_s("one unit");
    report.auto_to_copy_ratio = report.rows_per_s("auto units") / report.rows_per_s("psql COPY");
    if options.wan_rows > 0 {
        let wan_table = format!("{source_table}_wan");
        create_source(&mut conn, &wan_table, options.wan_rows).await?;
        let measured = measure_through_wan(floe, ns, &options, &wan_table).await;
        let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {wan_table}"))
            .execute(&mut conn)
            .await;
        let (variants, wan) = measured?;
        report.variants.extend(variants);
        report.wan = Some(wan);
        report.wan_auto_to_one_ratio = report.rows_per_s(WAN_AUTO) / report.rows_per_s(WAN_ONE);
        report.wan_auto_wide_to_one_ratio = report.rows_per_s(WAN_AUTO_WIDE) / report.rows_per_s(WAN_ONE);
    }
    Ok(report)
}

/// The variants extracted through the WAN proxy: one unit, auto units at the default parallelism
/// (one per core), and auto units [`WAN_PARALLEL`] at a time.
const WAN_ONE: &str = "one unit through the WAN proxy";
const WAN_AUTO: &str = "auto units through the WAN proxy";
const WAN_AUTO_WIDE: &str = "auto units, 4 at a time, through the WAN proxy";
/// Units at a time of [`WAN_AUTO_WIDE`]: a unit across a WAN waits on its link, not on floe's cores.
const WAN_PARALLEL: usize = 4;

/// Extract `table` (of `options.wan_rows` rows) with one unit and with auto units, every connection
/// through a WAN proxy of its own in front of the source.
async fn measure_through_wan(
    floe: &Floe,
    ns: &Namespace,
    options: &IngestBenchOptions,
    table: &str,
) -> Result<(Vec<IngestVariant>, WanFigures)> {
    let link = WanLink::BETWEEN_REGIONS;
    let proxy = WanProxy::start(upstream_of(&options.source).await?, link).await?;
    let through = IngestBenchOptions {
        source: proxy.url_through(&options.source)?,
        rows: options.wan_rows,
        ..options.clone()
    };
    crate::secrets::register_url_secrets(&through.source);
    let ways = [
        (WAN_ONE, None, UnitCount::Exactly(1), None),
        (
            WAN_AUTO,
            Some(PartitionBy::Id("id".into())),
            UnitCount::Auto,
            None,
        ),
        (
            WAN_AUTO_WIDE,
            Some(PartitionBy::Id("id".into())),
            UnitCount::Auto,
            Some(WAN_PARALLEL),
        ),
    ];
    // (seconds of each repetition, peak memory, units) per way.
    let mut measured: Vec<(Vec<f64>, u64, usize)> = vec![(Vec::new(), 0, 0); ways.len()];
    for rep in 0..options.repetitions {
        // A B C, then C B A.
        let mut order: Vec<usize> = (0..ways.len()).collect();
        if rep % 2 == 1 {
            order.reverse();
        }
        for w in order {
            let (_, partition_by, units, parallel) = ways[w].clone();
            let into = TableName::new(ns.clone(), format!("ingest_wan_{w}_{rep}"))?;
            let (s, n, peak) =
                extract_once(floe, &through, table, &into, partition_by, units, parallel).await?;
            let m = &mut measured[w];
            m.0.push(s);
            m.1 = m.1.max(peak);
            m.2 = n;
            tracing::info!(rep, variant = w, "ingest bench through the WAN proxy");
        }
    }
    let wan = WanFigures {
        rows: through.rows,
        round_trip_ms: link.round_trip_ms(),
        bytes_per_second_per_connection: link.bytes_per_second,
        connections: proxy.connections(),
    };
    let variants = ways
        .iter()
        .zip(measured)
        .map(|(way, (seconds, peak, units))| variant(way.0, units, seconds, peak, through.rows))
        .collect();
    Ok((variants, wan))
}

/// A variant's figures from its repetitions' seconds, over `rows` rows.
fn variant(name: &str, units: usize, seconds: Vec<f64>, peak: u64, rows: u64) -> IngestVariant {
    let seconds = median(seconds);
    IngestVariant {
        variant: name.to_string(),
        units,
        seconds,
        rows_per_s: rows as f64 / seconds,
        peak_memory_bytes: peak,
    }
}

async fn measure_variants(
    floe: &Floe,
    ns: &Namespace,
    options: &IngestBenchOptions,
    source_table: &str,
) -> Result<Vec<IngestVariant>> {
    let mut one = (Vec::new(), 0u64);
    let mut auto = (Vec::new(), 0u64, 0usize);
    let mut copy = Vec::new();
    for rep in 0..options.repetitions {
        // A B C, then C B A: no variant always runs on a warm or a cold buffer cache.
        let mut order = [0, 1, 2];
        if rep % 2 == 1 {
            order.reverse();
        }
        for variant in order {
            match variant {
                0 => {
                    let into = TableName::new(ns.clone(), format!("ingest_one_{rep}"))?;
                    let (s, _, peak) = extract_once(
                        floe,
                        options,
                        source_table,
                        &into,
                        None,
                        UnitCount::Exactly(1),
                        None,
                    )
                    .await?;
                    one.0.push(s);
                    one.1 = one.1.max(peak);
                }
                1 => {
                    let into = TableName::new(ns.clone(), format!("ingest_auto_{rep}"))?;
                    let (s, units, peak) = extract_once(
                        floe,
                        options,
                        source_table,
                        &into,
                        Some(PartitionBy::Id("id".into())),
                        UnitCount::Auto,
                        None,
                    )
                    .await?;
                    auto.0.push(s);
                    auto.1 = auto.1.max(peak);
                    auto.2 = units;
                }
                _ => copy.push(copy_baseline(&options.source, source_table).await?),
            }
            tracing::info!(rep, variant, "ingest bench");
        }
    }
    let rows = options.rows;
    Ok(vec![
        variant("one unit", 1, one.0, one.1, rows),
        variant("auto units", auto.2, auto.0, auto.1, rows),
        variant("psql COPY", 1, copy, 0, rows),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_gets_the_source_password_in_its_environment_not_its_arguments() {
        for source in [
            "postgres://u:pw%2Fcanary@127.0.0.1:5432/db",
            "postgres://u@127.0.0.1:5432/db?sslmode=disable&password=pw%2Fcanary",
        ] {
            let cmd = copy_command(source, "t");
            let args: Vec<String> = cmd
                .as_std()
                .get_args()
                .map(|a| a.to_string_lossy().to_string())
                .collect();
            assert!(args.iter().all(|a| !a.contains("canary")), "{args:?}");
            assert!(args.iter().any(|a| a.contains("127.0.0.1:5432/db")), "{args:?}");
            let password = cmd
                .as_std()
                .get_envs()
                .find(|(k, _)| *k == "PGPASSWORD")
                .and_then(|(_, v)| v.map(|v| v.to_string_lossy().to_string()));
            assert_eq!(password.as_deref(), Some("pw/canary"), "{source}");
        }
    }
}
