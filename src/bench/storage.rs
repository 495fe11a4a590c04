//! The storage layer's own benchmark: catalog commit latency and scan planning time as a table's
//! history grows, append throughput, and the storage a table holds after a simulated year of daily
//! runs with and without maintenance. Figures are medians over repetitions measured in one run; the
//! latency at the last snapshot is reported as a ratio to the first, so machine noise cancels out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde::Serialize;

use crate::catalog::{Namespace, TableName};
use crate::error::Result;
use crate::lakehouse::Floe;
use crate::maintenance::{CompactOptions, ExpireOptions, MaintainOptions, OrphanOptions};
use crate::table::{CommitResult, OverwriteOptions, RowFilter, Table, WriteOptions};
use crate::table::{PartitionField, TableDefinition};

/// What [`core_benchmark`] runs.
#[derive(Clone, Debug)]
pub struct StorageBenchOptions {
    /// Snapshots committed per history-growth repetition.
    pub snapshots: usize,
    /// Rows of the append-throughput test.
    pub rows: usize,
    /// Repetitions of the history and the append.
    pub repetitions: usize,
    /// Days of the simulated year of daily runs (0 skips it).
    pub days: usize,
    /// Rows each simulated day adds.
    pub rows_per_day: usize,
}

impl Default for StorageBenchOptions {
    fn default() -> Self {
        Self {
            snapshots: 500,
            rows: 1_000_000,
            repetitions: 3,
            days: 365,
            rows_per_day: 10_000,
        }
    }
}

/// Bytes a table holds on storage against the bytes of its live data.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StorageFootprint {
    /// Every file under the table's location.
    pub files_on_storage: usize,
    /// Their bytes.
    pub bytes_on_storage: u64,
    /// Of which metadata JSON files.
    pub metadata_json_bytes: u64,
    /// Data files of the current snapshot.
    pub live_data_files: usize,
    /// Their bytes.
    pub live_data_bytes: u64,
    /// `bytes_on_storage / live_data_bytes`.
    pub ratio: f64,
}

/// The simulated year: each day overwrites yesterday's partition (late data) and writes today's,
/// as a daily pipeline run does; one table is maintained after every run, the other never.
#[derive(Clone, Debug, Default, Serialize)]
pub struct YearReport {
    /// Days simulated.
    pub days: usize,
    /// Rows per day.
    pub rows_per_day: usize,
    /// Snapshots kept by the daily maintenance (as five days of `max-snapshot-age` would).
    pub retained_snapshots: usize,
    /// With `maintain` (compaction, expiry, orphan removal) after every run.
    pub maintained: StorageFootprint,
    /// With no maintenance and no metadata cleanup (`write.metadata.delete-after-commit.enabled`
    /// off): what every table held before floe maintained them.
    pub unmaintained: StorageFootprint,
    /// Median seconds of one day's maintenance.
    pub maintain_s: f64,
}

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
    /// first five commits of fresh tables, each committed just before one of the last commits
    /// measured (below), so both ends of the ratio are measured under the same conditions. (A
    /// process that has committed thousands of snapshots may commit even to a new table more
    /// slowly than at its start, with a larger heap and caches; that drift is not the table's
    /// history.)
    pub first_commit_ms: f64,
    /// Where the fresh tables' commits' time went (median of each phase, in ms).
    pub first_commit_phases_ms: BTreeMap<String, f64>,
    /// The same at the run's start: the median over the first five commits of every history.
    pub run_start_first_commit_ms: f64,
    /// Latency of the commits creating the last snapshots (the last five of every repetition), in
    /// milliseconds.
    pub last_commit_ms: f64,
    /// `last_commit_ms / first_commit_ms`.
    pub last_to_first_ratio: f64,
    /// Where the last commits' time went (median of each phase over the same commits, in ms).
    pub last_commit_phases_ms: BTreeMap<String, f64>,
    /// The same history with snapshot expiry in the loop (every [`EXPIRE_EVERY`] commits, keeping
    /// the last [`EXPIRE_RETAIN`] snapshots, as a daily maintenance would): latency of the last
    /// commits, in milliseconds, and its ratio to `first_commit_ms`.
    pub with_expiry_last_commit_ms: f64,
    /// `with_expiry_last_commit_ms / first_commit_ms`.
    pub with_expiry_last_to_first_ratio: f64,
    /// Where the last commits' time went with expiry in the loop (median of each phase, in ms).
    pub with_expiry_last_commit_phases_ms: BTreeMap<String, f64>,
    /// Manifests in the last snapshot's manifest list (manifest merging keeps it bounded).
    pub last_manifests: usize,
    /// Planning a full scan (reading the manifest list and manifests into file tasks) of a freshly
    /// loaded table at its 1st snapshot, in milliseconds (median of five).
    pub scan_plan_first_ms: f64,
    /// The same at the last snapshot.
    pub scan_plan_last_ms: f64,
    /// `scan_plan_last_ms / scan_plan_first_ms`.
    pub scan_plan_ratio: f64,
    /// The simulated year of daily runs (absent when skipped).
    pub year: Option<YearReport>,
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

/// The schema of the storage and upsert benchmarks' rows: an id key, a user, a time, a URL and an
/// amount.
pub(super) fn bench_schema() -> Schema {
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

/// `rows` rows of ids `start..`, as first written.
fn bench_batch(start: i64, rows: usize) -> RecordBatch {
    let ids: Vec<i64> = (start..start + rows as i64).collect();
    bench_rows(&ids, 0)
}

/// The rows of `ids` at `revision`: a later revision of a row has another amount.
pub(super) fn bench_rows(ids: &[i64], revision: i64) -> RecordBatch {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.to_vec())),
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
            ids.iter().map(|i| ((i + revision) % 10_000) as f64 / 100.0),
        )),
    ];
    RecordBatch::try_new(Arc::new(bench_schema()), cols).expect("bench batch")
}

/// Create an empty table of the benchmark's schema, named after the process and repetition.
pub(super) async fn fresh_table(floe: &Floe, ns: &Namespace, kind: &str, rep: usize) -> Result<TableName> {
    let name = TableName::new(ns.clone(), format!("bench_{kind}_{}_{rep}", std::process::id()))?;
    let definition = TableDefinition {
        schema: bench_schema(),
        ..Default::default()
    };
    floe.create_table(&name, definition).await?;
    Ok(name)
}

/// Milliseconds of one one-row commit to `fresh`, a table created at the first call: the baseline
/// measured beside each of the last commits of a history. Its phases go to `phases`.
async fn fresh_commit(
    floe: &Floe,
    ns: &Namespace,
    fresh: &mut Option<TableName>,
    (kind, rep, i): (&str, usize, usize),
    phases: &mut BTreeMap<String, Vec<f64>>,
) -> Result<f64> {
    let name = match fresh {
        Some(name) => name.clone(),
        None => fresh.insert(fresh_table(floe, ns, kind, rep).await?).clone(),
    };
    let (r, ms) = timed_append(floe, &name, i).await?;
    record_phases(phases, &r.timings, ms);
    Ok(ms)
}

/// Append one row (the `i`th) to `name`: the commit and its milliseconds.
async fn timed_append(floe: &Floe, name: &TableName, i: usize) -> Result<(CommitResult, f64)> {
    let batch = bench_batch(i as i64, 1);
    let t0 = Instant::now();
    let r = floe
        .append(name, futures::stream::iter([Ok(batch)]), &WriteOptions::default())
        .await?;
    Ok((r, t0.elapsed().as_secs_f64() * 1e3))
}

/// Add a commit's phases (load, validate, stage, metadata, swap, and the rest of the `total_ms` the
/// append took: writing the data file, reading the table, cleaning up) to `phases`, in
/// milliseconds.
fn record_phases(phases: &mut BTreeMap<String, Vec<f64>>, t: &crate::table::CommitTimings, total_ms: f64) {
    let split = [
        ("load", t.load_s),
        ("validate", t.validate_s),
        ("stage", t.stage_s),
        ("metadata", t.metadata_s),
        ("swap", t.swap_s),
    ];
    let mut rest = total_ms;
    for (phase, s) in split {
        phases.entry(phase.to_string()).or_default().push(s * 1e3);
        rest -= s * 1e3;
    }
    phases.entry("other".to_string()).or_default().push(rest.max(0.0));
}

/// Milliseconds to plan a full scan of `name` as a new reader would: load the table, read its
/// manifest list and manifests into file tasks (median of five).
async fn scan_plan_ms(floe: &Floe, name: &TableName) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let table: Table = floe.load_table(name).await?;
        let tasks = crate::table::scan::plan_task_count(&table).await?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(tasks);
    }
    Ok(median(times))
}

/// Measure commit latency and scan planning over `snapshots` commits, append throughput of `rows`
/// rows, each `repetitions` times, and the simulated year, in fresh tables of namespace `ns`
/// (dropped with their files afterwards).
pub async fn core_benchmark(
    floe: &Floe,
    ns: &Namespace,
    options: &StorageBenchOptions,
) -> Result<CoreBenchReport> {
    let snapshots = options.snapshots.max(1);
    let rows = options.rows.max(1);
    let repetitions = options.repetitions.max(1);
    floe.ensure_namespace(ns).await?;
    let mut samples = Samples::default();
    for rep in 0..repetitions {
        history(floe, ns, rep, snapshots, false, &mut samples).await?;
        history(floe, ns, rep, snapshots, true, &mut samples).await?;
        append_throughput(floe, ns, rep, rows, &mut samples).await?;
    }
    let year = if options.days > 0 {
        Some(year_of_runs(floe, ns, options.days, options.rows_per_day.max(1)).await?)
    } else {
        None
    };
    let backend = format!(
        "{} catalog, {} warehouse",
        floe.catalog().kind(),
        floe.warehouse().uri().split("://").next().unwrap_or("?")
    );
    Ok(samples.report(backend, snapshots, repetitions, rows, year))
}

/// What the storage benchmark's repetitions measured, each figure a sample per commit or per
/// repetition (the report gives medians).
#[derive(Default)]
struct Samples {
    /// First commits of fresh tables, committed beside the last commits of the long histories.
    first: Vec<f64>,
    /// The first commits of the history.
    start: Vec<f64>,
    /// The last commits of the history.
    last: Vec<f64>,
    phases: BTreeMap<String, Vec<f64>>,
    first_phases: BTreeMap<String, Vec<f64>>,
    /// The last commits of the history with expiry in the loop.
    expiry_last: Vec<f64>,
    expiry_phases: BTreeMap<String, Vec<f64>>,
    /// Manifests of the history's last snapshot.
    last_manifests: usize,
    plan_first: Vec<f64>,
    plan_last: Vec<f64>,
    rows_per_s: Vec<f64>,
    arrow_mb_s: Vec<f64>,
    parquet_mb_s: Vec<f64>,
}

/// History growth: `snapshots` one-row appends to a fresh table, with fresh tables' first commits
/// beside the last window of them. Without expiry: the latency of the first and the last window,
/// and scan planning at the first and the last snapshot. With snapshot expiry in the loop (not
/// timed itself): the latency of the last window.
async fn history(
    floe: &Floe,
    ns: &Namespace,
    rep: usize,
    snapshots: usize,
    with_expiry: bool,
    samples: &mut Samples,
) -> Result<()> {
    let (prefix, fresh_prefix) = if with_expiry {
        ("expiring", "fresh_expiring")
    } else {
        ("commits", "fresh")
    };
    let name = fresh_table(floe, ns, prefix, rep).await?;
    let mut fresh = None;
    for i in 0..snapshots {
        let at_end = i + WINDOW.min(snapshots) >= snapshots;
        if at_end {
            let key = (fresh_prefix, rep, i);
            samples
                .first
                .push(fresh_commit(floe, ns, &mut fresh, key, &mut samples.first_phases).await?);
        }
        let (r, ms) = timed_append(floe, &name, i).await?;
        if with_expiry {
            if at_end {
                samples.expiry_last.push(ms);
                record_phases(&mut samples.expiry_phases, &r.timings, ms);
            }
            if (i + 1) % EXPIRE_EVERY == 0 {
                let now_ms = chrono::Utc::now().timestamp_millis();
                let expire = ExpireOptions {
                    older_than_ms: Some(now_ms),
                    retain_last: Some(EXPIRE_RETAIN),
                    dry_run: false,
                };
                floe.expire_snapshots(&name, &expire).await?;
            }
        } else {
            // Each end is the median of a window of commits, so one scheduler hiccup (or the
            // manifest merge every 100th commit does) cannot decide the ratio; the phases are
            // medians over the same window.
            if i < WINDOW.min(snapshots) {
                samples.start.push(ms);
            }
            if at_end {
                samples.last.push(ms);
                record_phases(&mut samples.phases, &r.timings, ms);
            }
            if i == 0 {
                samples.plan_first.push(scan_plan_ms(floe, &name).await?);
            }
            if i + 1 == snapshots {
                if let Some(snapshot) = r.table.current_snapshot() {
                    samples.last_manifests = r.table.manifest_paths(snapshot).await?.len();
                }
                samples.plan_last.push(scan_plan_ms(floe, &name).await?);
            }
        }
        if (i + 1) % 1000 == 0 {
            tracing::info!(snapshots = i + 1, with_expiry, "history growth");
        }
    }
    floe.drop_table(&name, true).await?;
    if let Some(fresh) = fresh {
        floe.drop_table(&fresh, true).await?;
    }
    Ok(())
}

/// Throughput: one append of `rows` rows in 8192-row batches to a fresh table.
async fn append_throughput(
    floe: &Floe,
    ns: &Namespace,
    rep: usize,
    rows: usize,
    samples: &mut Samples,
) -> Result<()> {
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
            &WriteOptions::default(),
        )
        .await?;
    let secs = t0.elapsed().as_secs_f64();
    let parquet_bytes: f64 = r
        .snapshot_id
        .and_then(|id| r.table.metadata().snapshot_by_id(id))
        .and_then(|s| s.summary().additional_properties.get("added-files-size").cloned())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    samples.rows_per_s.push(rows as f64 / secs);
    samples.arrow_mb_s.push(arrow_bytes as f64 / 1e6 / secs);
    samples.parquet_mb_s.push(parquet_bytes / 1e6 / secs);
    floe.drop_table(&name, true).await?;
    Ok(())
}

impl Samples {
    /// The report: medians, and the ratios of the last to the first.
    fn report(
        self,
        backend: String,
        snapshots: usize,
        repetitions: usize,
        rows: usize,
        year: Option<YearReport>,
    ) -> CoreBenchReport {
        let medians =
            |phases: BTreeMap<String, Vec<f64>>| phases.into_iter().map(|(k, v)| (k, median(v))).collect();
        let first_ms = median(self.first);
        let last_ms = median(self.last);
        let expiry_last_ms = median(self.expiry_last);
        let plan_first_ms = median(self.plan_first);
        let plan_last_ms = median(self.plan_last);
        CoreBenchReport {
            backend,
            snapshots,
            repetitions,
            first_commit_ms: first_ms,
            first_commit_phases_ms: medians(self.first_phases),
            run_start_first_commit_ms: median(self.start),
            last_commit_ms: last_ms,
            last_to_first_ratio: last_ms / first_ms,
            last_commit_phases_ms: medians(self.phases),
            with_expiry_last_commit_ms: expiry_last_ms,
            with_expiry_last_to_first_ratio: expiry_last_ms / first_ms,
            with_expiry_last_commit_phases_ms: medians(self.expiry_phases),
            last_manifests: self.last_manifests,
            scan_plan_first_ms: plan_first_ms,
            scan_plan_last_ms: plan_last_ms,
            scan_plan_ratio: plan_last_ms / plan_first_ms,
            year,
            append_rows: rows,
            append_rows_per_s: median(self.rows_per_s),
            append_arrow_mb_per_s: median(self.arrow_mb_s),
            append_parquet_mb_per_s: median(self.parquet_mb_s),
        }
    }
}

/// Snapshots the simulated daily maintenance keeps: five days of daily runs, as Iceberg's default
/// `history.expire.max-snapshot-age-ms` of five days keeps when time passes for real.
pub const YEAR_RETAIN: usize = 5;

fn year_schema() -> Schema {
    Schema::new(vec![
        Field::new("day", DataType::Int32, false),
        Field::new("id", DataType::Int64, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("url", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ])
}

/// The rows of `day` as the run of day `run` computes them (a later run recomputes a day with
/// other amounts, as late data changes it).
fn day_batch(day: i32, run: i32, rows: usize) -> RecordBatch {
    let start = day as i64 * rows as i64;
    let ids: Vec<i64> = (start..start + rows as i64).collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(arrow::array::Int32Array::from(vec![day; rows])),
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| format!("user-{}", (i * 7919) % 100_000)),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| format!("/products/{}", i % 5000)),
        )),
        Arc::new(Float64Array::from_iter_values(
            ids.iter().map(|i| ((i + run as i64) % 10_000) as f64 / 100.0),
        )),
    ];
    RecordBatch::try_new(Arc::new(year_schema()), cols).expect("year batch")
}

/// Simulate `days` daily runs on two tables partitioned by day, one maintained after every run,
/// and measure what each holds on storage at the end.
async fn year_of_runs(floe: &Floe, ns: &Namespace, days: usize, rows_per_day: usize) -> Result<YearReport> {
    let mut tables = Vec::new();
    for (kind, cleanup) in [("year_maintained", "true"), ("year_unmaintained", "false")] {
        let name = TableName::new(ns.clone(), format!("bench_{kind}_{}", std::process::id()))?;
        let definition = TableDefinition {
            schema: year_schema(),
            partition: vec![PartitionField::parse("day")?],
            properties: [(
                "write.metadata.delete-after-commit.enabled".to_string(),
                cleanup.to_string(),
            )]
            .into(),
        };
        floe.create_table(&name, definition).await?;
        tables.push(name);
    }
    let commit = OverwriteOptions::default();
    let mut maintain_s = Vec::new();
    for run in 0..days as i32 {
        // Yesterday again (late data) and today, replacing both partitions.
        let batches: Vec<RecordBatch> = (run - 1..=run)
            .filter(|d| *d >= 0)
            .map(|d| day_batch(d, run, rows_per_day))
            .collect();
        let filter = RowFilter::sql(format!("day >= {} AND day <= {run}", run - 1));
        for name in &tables {
            let stream = futures::stream::iter(batches.clone().into_iter().map(Ok));
            floe.overwrite(name, Some(filter.clone()), stream, &commit)
                .await?;
        }
        let t0 = Instant::now();
        floe.maintain(
            &tables[0],
            &MaintainOptions {
                compact: Some(CompactOptions::default()),
                expire: ExpireOptions {
                    older_than_ms: Some(chrono::Utc::now().timestamp_millis()),
                    retain_last: Some(YEAR_RETAIN),
                    dry_run: false,
                },
                // Nothing else writes these tables: every unreferenced file is an orphan.
                orphans: OrphanOptions {
                    older_than: Some(std::time::Duration::ZERO),
                    dry_run: false,
                },
                dry_run: false,
            },
        )
        .await?;
        maintain_s.push(t0.elapsed().as_secs_f64());
        if (run + 1) % 50 == 0 {
            tracing::info!(days = run + 1, "simulated year");
        }
    }
    let maintained = footprint(floe, &tables[0]).await?;
    let unmaintained = footprint(floe, &tables[1]).await?;
    for name in &tables {
        floe.drop_table(name, true).await?;
    }
    Ok(YearReport {
        days,
        rows_per_day,
        retained_snapshots: YEAR_RETAIN,
        maintained,
        unmaintained,
        maintain_s: median(maintain_s),
    })
}

/// What `name` holds on storage against its live data.
async fn footprint(floe: &Floe, name: &TableName) -> Result<StorageFootprint> {
    let table = floe.load_table(name).await?;
    let stored = floe.storage().list_with_meta(table.location()).await?;
    let live = table.files(table.current_snapshot()).await?;
    let mut f = StorageFootprint {
        files_on_storage: stored.len(),
        bytes_on_storage: stored.iter().map(|o| o.size).sum(),
        metadata_json_bytes: stored
            .iter()
            .filter(|o| o.location.ends_with(".metadata.json"))
            .map(|o| o.size)
            .sum(),
        live_data_files: live.len(),
        live_data_bytes: live.iter().map(|f| f.file_size_in_bytes).sum(),
        ratio: 0.0,
    };
    f.ratio = f.bytes_on_storage as f64 / f.live_data_bytes.max(1) as f64;
    Ok(f)
}
