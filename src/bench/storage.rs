//! The storage layer's own benchmark: catalog commit latency as a table's history grows, and append
//! throughput. Figures are medians over repetitions measured in one run; the latency at the last
//! snapshot is reported as a ratio to the first, so machine noise cancels out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde::Serialize;

use crate::catalog::{Namespace, TableName};
use crate::error::Result;
use crate::lakehouse::{Floe, TableDefinition};
use crate::table::CommitOptions;

/// What [`core_benchmark`] measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CoreBenchReport {
    /// Catalog backend (`sqlite` or `postgres`) and warehouse scheme.
    pub backend: String,
    /// Snapshots committed per history-growth repetition.
    pub snapshots: usize,
    /// Repetitions.
    pub repetitions: usize,
    /// Latency of the commits creating the first snapshots, in milliseconds: the median over the
    /// first five commits of every repetition.
    pub first_commit_ms: f64,
    /// Latency of the commits creating the last snapshots (the last five of every repetition), in
    /// milliseconds.
    pub last_commit_ms: f64,
    /// `last_commit_ms / first_commit_ms`.
    pub last_to_first_ratio: f64,
    /// Where the last commit's time went (median of each phase, in milliseconds).
    pub last_commit_phases_ms: BTreeMap<String, f64>,
    /// The same history with snapshot expiry in the loop (every [`EXPIRE_EVERY`] commits, keeping
    /// the last [`EXPIRE_RETAIN`] snapshots, as a daily maintenance would): latency of the last
    /// commits, in milliseconds, and its ratio to `first_commit_ms`.
    pub with_expiry_last_commit_ms: f64,
    /// `with_expiry_last_commit_ms / first_commit_ms`.
    pub with_expiry_last_to_first_ratio: f64,
    /// Manifests in the last snapshot's manifest list (manifest merging keeps it bounded).
    pub last_manifests: usize,
    /// Rows per append in the throughput test.
    pub append_rows: usize,
    /// Median rows per second of one append (writing Parquet and committing).
    pub append_rows_per_s: f64,
    /// Median Arrow (in-memory) megabytes per second of one append.
    pub append_arrow_mb_per_s: f64,
    /// Median Parquet megabytes written per second of one append.
    pub append_parquet_mb_per_s: f64,
}

/// Commits at each end of the history whose median is the latency there.
const WINDOW: usize = 5;
/// The expiry-in-the-loop history expires every this many commits ...
pub const EXPIRE_EVERY: usize = 100;
/// ... keeping this many snapshots.
pub const EXPIRE_RETAIN: usize = 100;

fn median(v: Vec<f64>) -> f64 {
    super::stats::Summary::of(&v).median
}

fn bench_schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ),
        Field::new("url", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ])
}

fn bench_batch(start: i64, rows: usize) -> RecordBatch {
    let ids: Vec<i64> = (start..start + rows as i64).collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| format!("user-{}", (i * 7919) % 100_000)),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                ids.iter().map(|i| 1_704_067_200_000_000 + i * 1_000_003),
            )
            .with_timezone("+00:00"),
        ),
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| format!("/products/{}", i % 5000)),
        )),
        Arc::new(Float64Array::from_iter_values(
            ids.iter().map(|i| (i % 10_000) as f64 / 100.0),
        )),
    ];
    RecordBatch::try_new(Arc::new(bench_schema()), cols).expect("bench batch")
}

/// Create an empty table of the benchmark's schema, named after the process and repetition.
async fn fresh_table(floe: &Floe, ns: &Namespace, kind: &str, rep: usize) -> Result<TableName> {
    let name = TableName::new(ns.clone(), format!("bench_{kind}_{}_{rep}", std::process::id()))?;
    let definition = TableDefinition {
        schema: bench_schema(),
        ..Default::default()
    };
    floe.create_table(&name, definition).await?;
    Ok(name)
}

/// Measure commit latency over `snapshots` commits and append throughput of `rows` rows, each
/// `repetitions` times, in fresh tables of namespace `ns` (dropped with their files afterwards).
pub async fn core_benchmark(
    floe: &Floe,
    ns: &Namespace,
    snapshots: usize,
    rows: usize,
    repetitions: usize,
) -> Result<CoreBenchReport> {
    floe.ensure_namespace(ns).await?;
    let mut first = Vec::new();
    let mut last = Vec::new();
    let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut expiry_last = Vec::new();
    let mut last_manifests = 0;
    let mut rows_per_s = Vec::new();
    let mut arrow_mb_s = Vec::new();
    let mut parquet_mb_s = Vec::new();
    let options = CommitOptions::default();
    for rep in 0..repetitions {
        // History growth: one-row appends.
        let name = fresh_table(floe, ns, "commits", rep).await?;
        for i in 0..snapshots {
            let batch = bench_batch(i as i64, 1);
            let t0 = Instant::now();
            let r = floe
                .append(&name, futures::stream::iter([Ok(batch)]), &options)
                .await?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            // Each end is the median of a window of commits, so one scheduler hiccup cannot decide
            // the ratio.
            if i < WINDOW.min(snapshots) {
                first.push(ms);
            }
            if i + WINDOW.min(snapshots) >= snapshots {
                last.push(ms);
            }
            if i + 1 == snapshots {
                let t = &r.timings;
                let split = [
                    ("load", t.load_s),
                    ("stage", t.stage_s),
                    ("metadata", t.metadata_s),
                    ("swap", t.swap_s),
                ];
                for (phase, s) in split {
                    phases.entry(phase.to_string()).or_default().push(s * 1e3);
                }
                if let Some(snapshot) = r.table.current_snapshot() {
                    last_manifests = r.table.manifest_paths(snapshot).await?.len();
                }
            }
        }
        floe.drop_table(&name, true).await?;

        // The same history with expiry in the loop (not timed itself).
        let name = fresh_table(floe, ns, "expiring", rep).await?;
        for i in 0..snapshots {
            let batch = bench_batch(i as i64, 1);
            let t0 = Instant::now();
            floe.append(&name, futures::stream::iter([Ok(batch)]), &options)
                .await?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if i + WINDOW.min(snapshots) >= snapshots {
                expiry_last.push(ms);
            }
            if (i + 1) % EXPIRE_EVERY == 0 {
                let now_ms = chrono::Utc::now().timestamp_millis();
                floe.expire_snapshots(
                    &name,
                    &crate::maintenance::ExpireOptions {
                        older_than_ms: Some(now_ms),
                        retain_last: Some(EXPIRE_RETAIN),
                        dry_run: false,
                    },
                )
                .await?;
            }
        }
        floe.drop_table(&name, true).await?;

        // Throughput: one append of `rows` rows in 8192-row batches.
        let name = fresh_table(floe, ns, "append", rep).await?;
        let batches: Vec<RecordBatch> = (0..rows)
            .step_by(8192)
            .map(|s| bench_batch(s as i64, 8192.min(rows - s)))
            .collect();
        let arrow_bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
        let t0 = Instant::now();
        let r = floe
            .append(
                &name,
                futures::stream::iter(batches.into_iter().map(Ok)),
                &options,
            )
            .await?;
        let secs = t0.elapsed().as_secs_f64();
        let parquet_bytes: f64 = r
            .snapshot_id
            .and_then(|id| r.table.metadata().snapshot_by_id(id))
            .and_then(|s| s.summary().additional_properties.get("added-files-size").cloned())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        rows_per_s.push(rows as f64 / secs);
        arrow_mb_s.push(arrow_bytes as f64 / 1e6 / secs);
        parquet_mb_s.push(parquet_bytes / 1e6 / secs);
        floe.drop_table(&name, true).await?;
    }
    let first_ms = median(first);
    let last_ms = median(last);
    Ok(CoreBenchReport {
        backend: format!(
            "{} catalog, {} warehouse",
            floe.catalog().kind(),
            floe.warehouse().uri().split("://").next().unwrap_or("?")
        ),
        snapshots,
        repetitions,
        first_commit_ms: first_ms,
        last_commit_ms: last_ms,
        last_to_first_ratio: last_ms / first_ms,
        last_commit_phases_ms: phases.into_iter().map(|(k, v)| (k, median(v))).collect(),
        with_expiry_last_commit_ms: median(expiry_last.clone()),
        with_expiry_last_to_first_ratio: median(expiry_last) / first_ms,
        last_manifests,
        append_rows: rows,
        append_rows_per_s: median(rows_per_s),
        append_arrow_mb_per_s: median(arrow_mb_s),
        append_parquet_mb_per_s: median(parquet_mb_s),
    })
}
