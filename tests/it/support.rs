//! The backends every integration test runs against, and helpers to build test data.
//!
//! - `sqlite_local`: an SQLite catalog file and a local warehouse in a temp directory (always).
//! - `postgres_s3`: the Postgres server and the Garage S3 server the test command starts, named by
//!   `FLOE_TEST_POSTGRES_URL` and `FLOE_TEST_S3_*`. When they are missing the case fails (a plain
//!   `cargo test` must not report server tests as passed without running them), unless
//!   `FLOE_TEST_SKIP_SERVERS=1` says to skip them; the skip is then printed. The test command starts
//!   the servers and sets `FLOE_TEST_REQUIRE_SERVERS=1`, which refuses the skip.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use floe::config::{S3Settings, Secret};
use floe::{Floe, Namespace, PartialSettings, Settings};
use futures::TryStreamExt;
use iceberg::spec::{DataFile, PrimitiveLiteral};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    SqliteLocal,
    PostgresS3,
}

/// One backend prepared for one test: a connected `Floe` and a fresh namespace.
pub struct Ctx {
    pub backend: Backend,
    pub floe: Floe,
    pub settings: Settings,
    pub ns: Namespace,
    _dir: Option<tempfile::TempDir>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Whether a test may skip what needs a server or PyIceberg when it is missing: only when
/// `FLOE_TEST_SKIP_SERVERS=1`, and never under the test command (`FLOE_TEST_REQUIRE_SERVERS=1`).
pub fn may_skip_servers() -> bool {
    env("FLOE_TEST_SKIP_SERVERS").as_deref() == Some("1")
        && env("FLOE_TEST_REQUIRE_SERVERS").as_deref() != Some("1")
}

/// S3 settings of the test server, if configured.
pub fn s3_settings() -> Option<(S3Settings, String)> {
    let endpoint = env("FLOE_TEST_S3_ENDPOINT")?;
    Some((
        S3Settings {
            endpoint: Some(endpoint),
            region: Some(env("FLOE_TEST_S3_REGION").unwrap_or_else(|| "garage".into())),
            access_key_id: env("FLOE_TEST_S3_ACCESS_KEY_ID"),
            secret_access_key: env("FLOE_TEST_S3_SECRET_ACCESS_KEY").map(Secret::new),
            session_token: None,
            path_style: true,
        },
        env("FLOE_TEST_S3_BUCKET").unwrap_or_else(|| "floe-test".into()),
    ))
}

/// Settings for a backend, or `None` when its servers are not configured.
pub fn settings_for(backend: Backend, dir: &std::path::Path) -> Option<Settings> {
    let base = PartialSettings {
        commit_retries: Some(200),
        ..Default::default()
    }
    .finish();
    match backend {
        Backend::SqliteLocal => Some(Settings {
            catalog_url: format!("sqlite:{}", dir.join("catalog.db").display()),
            warehouse: dir.join("warehouse").display().to_string(),
            ..base
        }),
        Backend::PostgresS3 => {
            let pg = env("FLOE_TEST_POSTGRES_URL");
            let s3 = s3_settings();
            match (pg, s3) {
                (Some(pg), Some((s3, bucket))) => Some(Settings {
                    catalog_url: pg,
                    warehouse: format!("s3://{bucket}/it-{}", uuid::Uuid::new_v4().simple()),
                    // Each test has its own catalog name, so tests sharing the database stay apart.
                    catalog_name: format!("it_{}", uuid::Uuid::new_v4().simple()),
                    s3,
                    ..base
                }),
                _ if may_skip_servers() => None,
                _ => panic!(
                    "Postgres and S3 are not configured (FLOE_TEST_POSTGRES_URL, FLOE_TEST_S3_ENDPOINT): run \
                     `bash tests/run.sh`, which starts them, or set FLOE_TEST_SKIP_SERVERS=1 to skip these cases"
                ),
            }
        }
    }
}

impl Ctx {
    pub async fn new(backend: Backend) -> Option<Ctx> {
        let dir = tempfile::tempdir().unwrap();
        let Some(settings) = settings_for(backend, dir.path()) else {
            eprintln!("SKIPPED {backend:?}: servers not configured and FLOE_TEST_SKIP_SERVERS=1");
            return None;
        };
        let (floe, _) = Floe::init(settings.clone()).await.expect("init");
        let ns =
            Namespace::parse(&format!("ns_{}", &uuid::Uuid::new_v4().simple().to_string()[..8])).unwrap();
        floe.create_namespace(&ns).await.unwrap();
        Some(Ctx {
            backend,
            floe,
            settings,
            ns,
            _dir: Some(dir),
        })
    }

    /// The temporary directory, handed to the caller to keep alive for the whole test (a test body
    /// that never names `ctx._dir` would otherwise let it be dropped, and deleted, at once).
    pub fn take_dir(&mut self) -> Option<tempfile::TempDir> {
        self._dir.take()
    }

    /// Create a table with the events schema in this namespace's floe, partitioned by `partition`.
    pub async fn create_events_table(&self, t: &floe::TableName, partition: &[&str]) {
        let definition = floe::TableDefinition {
            schema: events_schema(),
            partition: partition
                .iter()
                .map(|p| floe::PartitionField::parse(p).unwrap())
                .collect(),
            properties: std::collections::BTreeMap::from([("owner".to_string(), "tests".to_string())]),
        };
        self.floe.create_table(t, definition).await.unwrap();
    }

    /// A directory URI for test inputs on this backend's store: under `local` on disk, or under the
    /// warehouse prefix on S3.
    pub fn input_uri(&self, local: &std::path::Path, name: &str) -> String {
        let raw = match self.backend {
            Backend::SqliteLocal => local.join(name).display().to_string(),
            Backend::PostgresS3 => format!("{}/{name}", self.floe.warehouse().uri()),
        };
        floe::storage::Warehouse::parse(&raw).unwrap().uri()
    }

    pub fn table(&self, name: &str) -> floe::TableName {
        floe::TableName::new(self.ns.clone(), name).unwrap()
    }
}

/// Run `body` against both backends.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite_local() {
                if let Some(mut ctx) = $crate::support::Ctx::new($crate::support::Backend::SqliteLocal).await
                {
                    let _dir = ctx.take_dir();
                    ($body)(ctx).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres_s3() {
                if let Some(mut ctx) = $crate::support::Ctx::new($crate::support::Backend::PostgresS3).await {
                    let _dir = ctx.take_dir();
                    ($body)(ctx).await;
                }
            }
        }
    };
}

/// The events schema used across tests.
pub fn events_schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ),
        Field::new("amount", DataType::Float64, true),
    ])
}

/// Rows `ids`, with one day per 10 ids starting 2024-01-01, users u0..u4, amount = id * 1.5.
pub fn events(ids: std::ops::Range<i64>) -> RecordBatch {
    let ids: Vec<i64> = ids.collect();
    let schema = Arc::new(events_schema());
    let day_us = 86_400_000_000i64;
    let start = 1_704_067_200_000_000i64; // 2024-01-01T00:00:00Z
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(StringArray::from(
            ids.iter()
                .map(|i| Some(format!("u{}", i % 5)))
                .collect::<Vec<_>>(),
        )),
        Arc::new(
            TimestampMicrosecondArray::from(
                ids.iter()
                    .map(|i| start + (i / 10) * day_us + i * 1_000_000)
                    .collect::<Vec<_>>(),
            )
            .with_timezone("+00:00"),
        ),
        Arc::new(Float64Array::from(
            ids.iter().map(|i| *i as f64 * 1.5).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(schema, cols).unwrap()
}

pub fn stream(batches: Vec<RecordBatch>) -> impl futures::Stream<Item = floe::Result<RecordBatch>> + Send {
    futures::stream::iter(batches.into_iter().map(Ok))
}

/// All ids of a scan at `at`, sorted.
pub async fn ids(floe: &Floe, table: &floe::TableName, at: floe::At) -> Vec<i64> {
    let options = floe::ScanOptions {
        at: Some(at),
        columns: Some(vec!["id".into()]),
        ..Default::default()
    };
    scan_ids(floe, table, &options).await
}

/// The `id` column (the first one the scan returns) of a scan, sorted.
pub async fn scan_ids(floe: &Floe, table: &floe::TableName, options: &floe::ScanOptions) -> Vec<i64> {
    let batches: Vec<RecordBatch> = floe
        .scan(table, options)
        .await
        .unwrap()
        .batches
        .try_collect()
        .await
        .unwrap();
    let mut out: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    out.sort();
    out
}

/// Rows in the table's current shape, from NDJSON text.
pub async fn rows_now(ctx: &Ctx, t: &floe::TableName, ndjson: &str) -> RecordBatch {
    let schema = ctx.floe.load_table(t).await.unwrap().arrow_schema().unwrap();
    let mut reader = arrow::json::ReaderBuilder::new(schema)
        .build(std::io::Cursor::new(ndjson.as_bytes()))
        .unwrap();
    reader.next().unwrap().unwrap()
}

/// Append NDJSON rows in the table's current shape, as one snapshot.
pub async fn append_now(ctx: &Ctx, t: &floe::TableName, ndjson: &str) {
    let batch = rows_now(ctx, t, ndjson).await;
    ctx.floe
        .append(t, stream(vec![batch]), &floe::WriteOptions::default())
        .await
        .unwrap();
}
/// The rows of `columns` of `table` at `main`.
pub async fn scan_columns(floe: &Floe, table: &floe::TableName, columns: &[&str]) -> Vec<RecordBatch> {
    let options = floe::ScanOptions {
        columns: Some(columns.iter().map(|c| c.to_string()).collect()),
        ..Default::default()
    };
    floe.scan(table, &options).await.unwrap().collect().await.unwrap()
}

/// The number of rows a scan returns.
pub async fn scan_rows(floe: &Floe, table: &floe::TableName, options: &floe::ScanOptions) -> usize {
    floe.scan(table, options)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

pub fn summary(table: &floe::Table, snapshot_id: i64) -> HashMap<String, String> {
    table
        .metadata()
        .snapshot_by_id(snapshot_id)
        .unwrap()
        .summary()
        .additional_properties
        .clone()
}

/// `program` run in `dir` with an empty environment but for `PATH`, `HOME` and `LD_LIBRARY_PATH`.
pub fn clean_cmd(program: &str, dir: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    c.current_dir(dir).env_clear();
    for k in ["PATH", "HOME", "LD_LIBRARY_PATH"] {
        if let Ok(v) = std::env::var(k) {
            c.env(k, v);
        }
    }
    c
}

/// The `floe` binary with a clean environment in `dir`, pointed at `ctx`'s backend when given.
pub fn floe_cmd(dir: &std::path::Path, ctx: Option<&Ctx>) -> std::process::Command {
    let mut c = clean_cmd(env!("CARGO_BIN_EXE_floe"), dir);
    if let Some(ctx) = ctx {
        for (k, v) in settings_env(&ctx.settings, ctx.backend) {
            c.env(k, v);
        }
    }
    c
}

/// The environment that points the `floe` binary at `settings`.
pub fn settings_env(settings: &Settings, backend: Backend) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("FLOE_CATALOG_URL", settings.catalog_url.clone()),
        ("FLOE_WAREHOUSE", settings.warehouse.clone()),
        ("FLOE_CATALOG_NAME", settings.catalog_name.clone()),
    ];
    if backend == Backend::PostgresS3 {
        let s3 = &settings.s3;
        v.push(("AWS_ENDPOINT_URL", s3.endpoint.clone().unwrap()));
        v.push(("AWS_REGION", s3.region.clone().unwrap()));
        v.push(("AWS_ACCESS_KEY_ID", s3.access_key_id.clone().unwrap()));
        v.push((
            "AWS_SECRET_ACCESS_KEY",
            s3.secret_access_key.as_ref().unwrap().expose().to_string(),
        ));
        v.push(("FLOE_S3_PATH_STYLE", "true".to_string()));
    }
    v
}

/// Every file under the table's location.
pub async fn stored(ctx: &Ctx, t: &floe::TableName) -> BTreeSet<String> {
    let table = ctx.floe.load_table(t).await.unwrap();
    ctx.floe
        .storage()
        .list(&format!("{}/", table.location()))
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Every file the table's metadata references (live entries of every snapshot).
pub async fn referenced(ctx: &Ctx, t: &floe::TableName) -> BTreeSet<String> {
    let table = ctx.floe.load_table(t).await.unwrap();
    let mut out: BTreeSet<String> = BTreeSet::new();
    out.insert(table.metadata_location().to_string());
    out.extend(
        table
            .metadata()
            .metadata_log()
            .iter()
            .map(|m| m.metadata_file.clone()),
    );
    for s in table.snapshots() {
        out.insert(s.manifest_list().to_string());
        for f in table.live_data_files(Some(&s)).await.unwrap() {
            out.insert(f.file_path().to_string());
        }
        for f in table.live_delete_files(Some(&s)).await.unwrap() {
            out.insert(f.file_path().to_string());
        }
        for m in table.manifest_paths(&s).await.unwrap() {
            out.insert(m);
        }
    }
    out
}

/// The live data files of `t` on `branch` (none before its first snapshot).
pub async fn data_files_on(ctx: &Ctx, t: &floe::TableName, branch: &str) -> Vec<DataFile> {
    let table = ctx.floe.load_table(t).await.unwrap();
    let snapshot = table.metadata().snapshot_for_ref(branch).cloned();
    table.live_data_files(snapshot.as_ref()).await.unwrap()
}

/// The live data files of `t` at `main`.
pub async fn data_files(ctx: &Ctx, t: &floe::TableName) -> Vec<DataFile> {
    data_files_on(ctx, t, "main").await
}

/// The values of column `column` (int64 or timestamp, without nulls) in the Parquet file `path`, in
/// file order.
pub async fn parquet_column(ctx: &Ctx, path: &str, column: &str) -> Vec<i64> {
    let bytes = ctx.floe.storage().read(path).await.unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let c = batch.column_by_name(column).unwrap();
        if let Some(ints) = c.as_any().downcast_ref::<Int64Array>() {
            out.extend(ints.iter().map(Option::unwrap));
        } else {
            let ts = c.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
            out.extend(ts.iter().map(Option::unwrap));
        }
    }
    out
}

/// A file's (lower, upper) bound on the field `id`, as i64 (longs and timestamps).
pub fn bounds(file: &DataFile, id: i32) -> (i64, i64) {
    let value = |d: &iceberg::spec::Datum| match d.literal() {
        PrimitiveLiteral::Long(v) => *v,
        other => panic!("not a long or timestamp bound: {other:?}"),
    };
    (value(&file.lower_bounds()[&id]), value(&file.upper_bounds()[&id]))
}

/// The files' bounds on field `id`, in the order of the sort (`descending` or not); panics unless
/// they are disjoint.
pub fn disjoint_bounds(files: &[DataFile], id: i32, descending: bool) -> Vec<(i64, i64)> {
    let mut ranges: Vec<(i64, i64)> = files.iter().map(|f| bounds(f, id)).collect();
    ranges.sort();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 < pair[1].0, "overlapping file ranges {ranges:?}");
    }
    if descending {
        ranges.reverse();
    }
    ranges
}

/// `files`, written by sorted writes of `t` whose first sort field is `column` (a long or timestamp
/// column, `descending` or not), are as a sorted write leaves them: each records the table's sort
/// order id, holds its rows in order (first and last matching its bounds), and the files of each
/// partition hold disjoint ranges of the column. Panics otherwise.
pub async fn assert_sorted_files(
    ctx: &Ctx,
    t: &floe::TableName,
    files: &[DataFile],
    column: &str,
    descending: bool,
) {
    assert!(!files.is_empty(), "{t}: no files to check");
    let table = ctx.floe.load_table(t).await.unwrap();
    let order_id = table.metadata().default_sort_order_id();
    assert_ne!(order_id, 0, "{t} has no sort order");
    let id = table.schema().field_by_name(column).unwrap().id;
    let mut by_partition: BTreeMap<String, Vec<DataFile>> = BTreeMap::new();
    for f in files {
        assert_eq!(f.sort_order_id(), Some(order_id as i32), "{}", f.file_path());
        let values = parquet_column(ctx, f.file_path(), column).await;
        let in_order = values
            .windows(2)
            .all(|w| if descending { w[0] >= w[1] } else { w[0] <= w[1] });
        assert!(
            in_order,
            "{t}: the rows of {} are not sorted by {column}",
            f.file_path()
        );
        let (lower, upper) = bounds(f, id);
        let ends = if descending {
            (upper, lower)
        } else {
            (lower, upper)
        };
        assert_eq!(
            (values.first().copied(), values.last().copied()),
            (Some(ends.0), Some(ends.1)),
            "{t}: {}",
            f.file_path()
        );
        by_partition
            .entry(format!("{:?}", f.partition()))
            .or_default()
            .push(f.clone());
    }
    for in_partition in by_partition.values() {
        disjoint_bounds(in_partition, id, descending);
    }
}

/// The refs this process derived commit by commit equal those a fresh connection reads back from
/// the metadata JSON.
pub async fn assert_refs_as_stored(ctx: &Ctx, t: &floe::TableName) {
    let ours = ctx.floe.load_table(t).await.unwrap().snapshot_refs();
    let fresh = Floe::connect(ctx.settings.clone()).await.unwrap();
    let stored = fresh.load_table(t).await.unwrap().snapshot_refs();
    assert_eq!(ours, stored, "{t}: refs");
}

/// Remove every orphan of `t` now (`older_than` 0: no write may be in flight).
pub async fn remove_orphans_now(ctx: &Ctx, t: &floe::TableName) -> floe::maintenance::OrphanReport {
    ctx.floe
        .remove_orphan_files(
            t,
            &floe::maintenance::OrphanOptions {
                older_than: Some(std::time::Duration::ZERO),
                dry_run: false,
            },
        )
        .await
        .unwrap()
}

/// Without its servers a test fails, unless `FLOE_TEST_SKIP_SERVERS=1` asks to skip it, and then it
/// says SKIPPED; the test command's `FLOE_TEST_REQUIRE_SERVERS=1` never lets one skip. (Runs one
/// Postgres + S3 test of this binary in a child process without the servers' settings.)
#[test]
fn a_test_without_its_servers_fails_unless_skipping_is_asked_for() {
    let run = |vars: &[(&str, &str)]| {
        let mut c = std::process::Command::new(std::env::current_exe().unwrap());
        c.args([
            "--exact",
            "sql::sql_is_locked_down_and_answers_alike_on_every_store::postgres_s3",
            "--nocapture",
        ]);
        for k in [
            "FLOE_TEST_POSTGRES_URL",
            "FLOE_TEST_S3_ENDPOINT",
            "FLOE_TEST_REQUIRE_SERVERS",
            "FLOE_TEST_SKIP_SERVERS",
        ] {
            c.env_remove(k);
        }
        c.envs(vars.iter().copied());
        let out = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (passed, text) = run(&[]);
    assert!(!passed, "a test without its servers passed: {text}");
    assert!(text.contains("Postgres and S3 are not configured"), "{text}");
    assert!(text.contains("1 failed"), "{text}");
    let (passed, text) = run(&[("FLOE_TEST_SKIP_SERVERS", "1")]);
    assert!(passed, "{text}");
    assert!(text.contains("SKIPPED PostgresS3"), "{text}");
    let (passed, text) = run(&[
        ("FLOE_TEST_SKIP_SERVERS", "1"),
        ("FLOE_TEST_REQUIRE_SERVERS", "1"),
    ]);
    assert!(!passed, "the test command's setting let a test skip: {text}");
}
