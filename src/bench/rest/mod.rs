//! The REST catalog benchmark (`floe bench --rest`, run alone), against `floe serve` bound on a
//! loopback port in this process:
//! - **load time**: a table of `snapshots` snapshots loaded warm through REST by a Rust HTTP client
//!   (one kept-alive connection, timed from request to the last byte of the body), against
//!   [`Floe::load_table`] in-process; p50 target ≤ 5 ms;
//! - **throughput**: commits per second of `workers` concurrent PyIceberg appenders (one-row appends,
//!   a lost race refreshed and retried) through `floe serve`, against the same appends through
//!   PyIceberg's `SqlCatalog` on the same catalog database (reported, no target).

pub mod appenders;
pub mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
use serde::Serialize;

use self::appenders::{run_appenders, AppendersRun, Door};
use super::report::Target;
use super::stats::Summary;
use crate::catalog::{Namespace, TableName};
use crate::error::{Error, Result};
use crate::lakehouse::Floe;
use crate::rest::{RestOptions, Server};
use crate::table::create::TableDefinition;
use crate::table::WriteOptions;

/// The load-time target: the median REST load, in milliseconds.
pub const LOAD_P50_TARGET_MS: f64 = 5.0;

/// What [`rest_benchmark`] runs.
#[derive(Clone, Debug)]
pub struct RestBenchOptions {
    /// Snapshots of the loaded table.
    pub snapshots: usize,
    /// Timed loads per side (after as many warm-up loads as a tenth of them, at least 5).
    pub loads: usize,
    /// Concurrent PyIceberg appenders.
    pub workers: usize,
    /// Appends of each appender.
    pub commits: usize,
    /// Run the PyIceberg appenders (where PyIceberg is installed).
    pub peer: bool,
    /// Where the appenders' script goes.
    pub dir: PathBuf,
}

impl Default for RestBenchOptions {
    fn default() -> Self {
        Self {
            snapshots: 1_000,
            loads: 200,
            workers: 8,
            commits: 25,
            peer: true,
            dir: PathBuf::from("floe-bench"),
        }
    }
}

/// Latencies of one way of loading the table, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// Min, median and max.
    pub ms: Summary,
    /// 95th percentile.
    pub p95_ms: f64,
}

/// One door's throughput.
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    /// "floe serve (RestCatalog)" or "SqlCatalog".
    pub door: String,
    /// Appends that landed.
    pub commits: usize,
    /// Races lost and retried.
    pub conflicts: usize,
    /// Wall time of all appends.
    pub seconds: f64,
    /// Appends landed per second.
    pub commits_per_second: f64,
}

/// What [`rest_benchmark`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct RestBenchReport {
    /// Snapshots of the loaded table.
    pub snapshots: usize,
    /// Size of its metadata file, the body of a load.
    pub metadata_bytes: usize,
    /// Loads through `floe serve`, request to full body.
    pub rest_load: Latency,
    /// `Floe::load_table` in-process.
    pub in_process_load: Latency,
    /// Concurrent PyIceberg appenders through each door (empty without the peer).
    pub throughput: Vec<Throughput>,
    /// Why the appenders did not run, if they did not.
    pub peer_skipped: Option<String>,
    /// The load-time target.
    pub targets: Vec<Target>,
}

/// The benchmark's tables' columns: what the appenders write.
fn appender_schema() -> ArrowSchema {
    ArrowSchema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("writer", DataType::Utf8, true),
    ])
}

async fn fresh(floe: &Floe, ns: &Namespace, name: &str) -> Result<TableName> {
    let t = TableName::new(ns.clone(), name)?;
    if floe.catalog().metadata_location(&t).await?.is_some() {
        floe.drop_table(&t, true).await?;
    }
    floe.create_table(
        &t,
        TableDefinition {
            schema: appender_schema(),
            ..Default::default()
        },
    )
    .await?;
    Ok(t)
}

fn one_row(id: i64) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        Arc::new(appender_schema()),
        vec![
            Arc::new(Int64Array::from(vec![id])),
            Arc::new(StringArray::from(vec!["floe"])),
        ],
    )?)
}

fn latency(ms: &[f64]) -> Latency {
    let mut sorted = ms.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let p95 = sorted
        .get(((sorted.len() as f64) * 0.95).ceil() as usize - 1)
        .copied()
        .unwrap_or(f64::NAN);
    Latency {
        ms: Summary::of(ms),
        p95_ms: p95,
    }
}

/// Time `loads` warm REST loads of `t` from `base` and as many in-process loads.
async fn time_loads(
    floe: &Floe,
    base: &str,
    t: &TableName,
    loads: usize,
) -> Result<(usize, Latency, Latency)> {
    let url = format!(
        "{base}/v1/namespaces/{}/tables/{}",
        t.namespace().levels().join("\u{1f}"),
        t.name()
    );
    let client = reqwest::Client::new();
    let warm_up = (loads / 10).max(5);
    let mut rest = Vec::with_capacity(loads);
    let mut body_bytes = 0;
    for i in 0..warm_up + loads {
        let start = Instant::now();
        let response = client
            .get(&url)
            .send()
            .await
            .map_err(|e| Error::internal(format!("GET {url}: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| Error::internal(format!("GET {url}: {e}")))?;
        let elapsed = start.elapsed().as_secs_f64() * 1e3;
        if !status.is_success() {
            return Err(Error::internal(format!(
                "GET {url}: {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        body_bytes = body.len();
        if i >= warm_up {
            rest.push(elapsed);
        }
    }
    let mut local = Vec::with_capacity(loads);
    for i in 0..warm_up + loads {
        let start = Instant::now();
        floe.load_table(t).await?;
        if i >= warm_up {
            local.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok((body_bytes, latency(&rest), latency(&local)))
}

fn throughput(door: &str, run: &AppendersRun) -> Throughput {
    Throughput {
        door: door.to_string(),
        commits: run.commits,
        conflicts: run.conflicts,
        seconds: run.seconds,
        commits_per_second: run.commits_per_second(),
    }
}

/// Run the REST catalog benchmark in namespace `ns` (created if missing; its tables are dropped with
/// their files at the end).
pub async fn rest_benchmark(
    floe: &Floe,
    ns: &Namespace,
    options: &RestBenchOptions,
) -> Result<RestBenchReport> {
    floe.ensure_namespace(ns).await?;
    let server = Server::bind(
        floe.clone(),
        "127.0.0.1:0".parse().expect("an address"),
        &RestOptions::default(),
    )
    .await?;
    let base = format!("http://{}", server.local_addr()?);
    let serving = tokio::spawn(server.run());

    let loaded = fresh(floe, ns, "rest_load").await?;
    for i in 0..options.snapshots {
        let rows = one_row(i as i64)?;
        floe.append(
            &loaded,
            futures::stream::iter([Ok(rows)]),
            &WriteOptions::default(),
        )
        .await?;
    }
    let (metadata_bytes, rest_load, in_process_load) =
        time_loads(floe, &base, &loaded, options.loads).await?;

    let mut throughput_figures = Vec::new();
    let peer_skipped = if !options.peer {
        Some("--no-peer".to_string())
    } else if let Some(why) = super::peer::unavailable() {
        Some(why)
    } else {
        for (door, label) in [
            (Door::Rest(base.clone()), "floe serve (RestCatalog)"),
            (Door::Sql, "SqlCatalog"),
        ] {
            let t = fresh(
                floe,
                ns,
                if matches!(door, Door::Sql) {
                    "rest_sql"
                } else {
                    "rest_rest"
                },
            )
            .await?;
            let run =
                run_appenders(floe, &door, &t, options.workers, options.commits, 0, &options.dir).await?;
            throughput_figures.push(throughput(label, &run));
            floe.drop_table(&t, true).await?;
        }
        None
    };
    floe.drop_table(&loaded, true).await?;
    serving.abort();

    let p50 = rest_load.ms.median;
    Ok(RestBenchReport {
        snapshots: options.snapshots,
        metadata_bytes,
        targets: vec![Target {
            target: format!(
                "REST load of a {}-snapshot table: p50 ≤ {LOAD_P50_TARGET_MS} ms",
                options.snapshots
            ),
            measured: format!("p50 {p50:.2} ms (in-process {:.2} ms)", in_process_load.ms.median),
            met: Some(p50 <= LOAD_P50_TARGET_MS),
        }],
        rest_load,
        in_process_load,
        throughput: throughput_figures,
        peer_skipped,
    })
}
