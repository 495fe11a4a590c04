//! Interoperability: PyIceberg (an independent implementation) reads what floe writes and writes
//! what floe reads; iceberg-rust's SqlCatalog loads floe's tables from the same catalog schema.

use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;

use arrow::array::{Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use floe::{
    At, DeleteOptions, OverwriteOptions, PartitionField, RowFilter, ScanOptions, TableDefinition,
    WriteOptions,
};
use futures::TryStreamExt;
use iceberg::{Catalog, CatalogBuilder};
use serde_json::{json, Value};

use crate::both_backends;
use crate::support::*;

/// The Python that runs the interop tools (`FLOE_TEST_PYTHON`, else `python3`).
pub fn python() -> String {
    std::env::var("FLOE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Whether `python -c code` succeeds: run once per test process (each run costs a Python start).
fn python_runs(checked: &'static OnceLock<bool>, code: &str) -> bool {
    *checked.get_or_init(|| {
        Command::new(python())
            .args(["-c", code])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

/// Whether PyIceberg can be imported (a panic when it cannot and the test may not skip it).
pub fn pyiceberg_available() -> bool {
    static CHECKED: OnceLock<bool> = OnceLock::new();
    let ok = python_runs(&CHECKED, "import pyiceberg.catalog.sql, pyarrow");
    if !ok && !may_skip_servers() {
        panic!(
            "PyIceberg cannot be imported: run `bash tests/run.sh` (it installs it) or set \
             FLOE_TEST_SKIP_SERVERS=1 to skip the PyIceberg cases"
        );
    }
    if !ok {
        eprintln!("SKIPPED: PyIceberg not installed and FLOE_TEST_SKIP_SERVERS=1");
    }
    ok
}

/// The backend's catalog and warehouse as PyIceberg's `SqlCatalog` takes them (the library's own
/// translation, which `floe bench`'s PyIceberg peer uses too).
fn pyiceberg_config(ctx: &Ctx) -> Value {
    floe::bench::peer::pyiceberg_config(&ctx.floe)
}

/// Run the PyIceberg tool with `cfg` (handed over in the environment) and `args`.
fn pyiceberg(cfg: &str, args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/pyiceberg_tool.py");
    let out = Command::new(python())
        .arg(script)
        .env(floe::bench::peer::CONFIG_VAR, cfg)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "pyiceberg failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from pyiceberg")
}

/// What PyIceberg reads of `ctx`'s table `table` (`None` when PyIceberg is missing and the test
/// may skip it).
pub fn pyiceberg_read(ctx: &Ctx, table: &str) -> Option<Value> {
    if !pyiceberg_available() {
        return None;
    }
    let cfg = pyiceberg_config(ctx).to_string();
    Some(pyiceberg(&cfg, &["read", &ctx.ns.to_string(), table]))
}

/// PyIceberg's view of `ctx`'s table `table`: its partition specs, each live file's spec id and,
/// with `filter` (PyIceberg's filter syntax), the rows and file count its own planning gives
/// (`None` when PyIceberg is missing and the test may skip it).
pub fn pyiceberg_layout(ctx: &Ctx, table: &str, filter: Option<&str>) -> Option<Value> {
    if !pyiceberg_available() {
        return None;
    }
    let cfg = pyiceberg_config(ctx).to_string();
    let ns = ctx.ns.to_string();
    let mut args = vec!["layout", &ns, table];
    if let Some(f) = filter {
        args.push(f);
    }
    Some(pyiceberg(&cfg, &args))
}

/// Whether DuckDB 1.4.4 and its iceberg extension can be imported (the test command installs them).
pub fn duckdb_iceberg_available() -> bool {
    static CHECKED: OnceLock<bool> = OnceLock::new();
    let ok = python_runs(
        &CHECKED,
        "import duckdb, sys; sys.exit(duckdb.__version__ != '1.4.4')",
    );
    if !ok && !may_skip_servers() {
        panic!(
            "DuckDB 1.4.4 cannot be imported: run `bash tests/run.sh` (it installs it and its iceberg \
             extension) or set FLOE_TEST_SKIP_SERVERS=1 to skip the DuckDB cases"
        );
    }
    ok
}

/// What DuckDB 1.4.4's own iceberg extension reads of `ctx`'s table `table` at its current metadata
/// file (`iceberg_scan`), in the PyIceberg tool's JSON shape (`None` when DuckDB is missing and the
/// test may skip it).
pub async fn duckdb_read(ctx: &Ctx, table: &str) -> Option<Value> {
    let t = ctx.table(table);
    let location = ctx
        .floe
        .load_table(&t)
        .await
        .unwrap()
        .metadata_location()
        .to_string();
    duckdb_scan(ctx, &location)
}

/// What DuckDB 1.4.4's own iceberg extension reads of the table state at `metadata_location`, on
/// `ctx`'s store (through an S3 secret on Garage: path style, no SSL), in the PyIceberg tool's JSON
/// shape (`None` when DuckDB is missing and the test may skip it).
pub fn duckdb_scan(ctx: &Ctx, metadata_location: &str) -> Option<Value> {
    if !duckdb_iceberg_available() {
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/duckdb_tool.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).args(["scan", metadata_location]);
    if let Some(keys) = s3_keys(ctx) {
        cmd.env("FLOE_DUCKDB_S3", keys.to_string());
    }
    let out = cmd.output().expect("run python");
    assert!(
        out.status.success(),
        "duckdb failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("json from duckdb"))
}

/// The S3 endpoint, keys and region of `ctx`'s store as the Python tools take them (in the
/// environment, never on the command line), or `None` on local disk.
pub fn s3_keys(ctx: &Ctx) -> Option<Value> {
    if ctx.backend != Backend::PostgresS3 {
        return None;
    }
    let s3 = &ctx.settings.s3;
    Some(json!({
        "endpoint": s3.endpoint.clone().unwrap_or_default(),
        "key_id": s3.access_key_id.clone().unwrap_or_default(),
        "secret": s3.secret_access_key.as_ref().map(|s| s.expose().to_string()).unwrap_or_default(),
        "region": s3.region.clone().unwrap_or_else(|| "garage".into()),
    }))
}

/// Rows of the tools' JSON sorted by their `id` column.
pub fn by_id(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|r| r["id"].as_i64());
    rows
}

/// Batches as JSON objects (column name → value), nulls written out at every depth (as the Python
/// readers print them), sorted by `id`.
pub fn json_rows(batches: &[arrow::array::RecordBatch]) -> Vec<Value> {
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    for b in batches {
        writer.write(b).unwrap();
    }
    writer.finish().unwrap();
    let text = String::from_utf8(writer.into_inner()).unwrap();
    let rows: Vec<Value> = if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(&text).unwrap()
    };
    by_id(rows)
}

/// floe's rows of the current state of `t`, any schema, as [`json_rows`] gives them.
pub async fn floe_json(ctx: &Ctx, t: &floe::TableName) -> Vec<Value> {
    let batches: Vec<arrow::array::RecordBatch> = ctx
        .floe
        .scan(t, &ScanOptions::default())
        .await
        .unwrap()
        .batches
        .try_collect()
        .await
        .unwrap();
    json_rows(&batches)
}

/// PyIceberg's and DuckDB's rows of `ctx`'s table `t`, sorted by `id` (each left out when that
/// reader is missing and the test may skip it).
pub async fn other_readers(ctx: &Ctx, t: &floe::TableName) -> Vec<(&'static str, Vec<Value>)> {
    let mut out = Vec::new();
    if let Some(v) = pyiceberg_read(ctx, t.name()) {
        out.push(("pyiceberg", by_id(v["rows"].as_array().unwrap().clone())));
    }
    if let Some(v) = duckdb_read(ctx, t.name()).await {
        out.push(("duckdb", by_id(v["rows"].as_array().unwrap().clone())));
    }
    out
}

/// floe's rows of a table state, in the JSON shape the PyIceberg tool prints.
pub async fn floe_rows(ctx: &Ctx, t: &floe::TableName, at: At) -> Vec<Value> {
    let batches = ctx
        .floe
        .scan(
            t,
            &ScanOptions {
                at: Some(at),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .batches
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let mut rows = Vec::new();
    for b in batches {
        let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let user = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let ts = b
            .column(2)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        let amount = b.column(3).as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..b.num_rows() {
            let t = chrono::DateTime::from_timestamp_micros(ts.value(i))
                .unwrap()
                .to_rfc3339();
            rows.push(json!({
                "id": id.value(i),
                "user_id": user.is_valid(i).then(|| user.value(i).to_string()),
                "ts": t,
                "amount": amount.value(i),
            }));
        }
    }
    rows.sort_by_key(|r| serde_json::to_string(r).unwrap());
    rows
}

both_backends!(pyiceberg_reads_what_floe_writes, |ctx: Ctx| async move {
    if !pyiceberg_available() {
        eprintln!("skipping: PyIceberg not installed");
        return;
    }
    let t = ctx.table("events");
    let def = TableDefinition {
        schema: events_schema(),
        partition: vec![PartitionField::parse("day(ts)").unwrap()],
        ..Default::default()
    };
    ctx.floe.create_table(&t, def).await.unwrap();
    let o = WriteOptions::default();
    ctx.floe
        .append(&t, stream(vec![events(0..20)]), &o)
        .await
        .unwrap();
    ctx.floe
        .overwrite(
            &t,
            Some(RowFilter::sql("id >= 15")),
            stream(vec![events(100..103)]),
            &OverwriteOptions::from(o.clone()),
        )
        .await
        .unwrap();
    ctx.floe
        .delete(
            &t,
            RowFilter::sql("id < 3 OR id = 7"),
            &DeleteOptions::from(o.clone()),
        )
        .await
        .unwrap();
    ctx.floe.create_branch(&t, "dev", &At::Current).await.unwrap();
    ctx.floe
        .append(
            &t,
            stream(vec![events(200..203)]),
            &WriteOptions::on_branch("dev"),
        )
        .await
        .unwrap();

    let cfg = pyiceberg_config(&ctx).to_string();
    let ns = ctx.ns.to_string();
    let main = pyiceberg(&cfg, &["read", &ns, "events"]);
    let expected = floe_rows(&ctx, &t, At::Current).await;
    assert_eq!(expected.len(), 15 - 4 + 3);
    assert_eq!(main["rows"].as_array().unwrap(), &expected);
    // The delete cut through a file (id 7 shares a day with kept rows): a rewrite, so "overwrite".
    assert_eq!(main["operation"], "overwrite");
    assert_eq!(main["refs"], json!(["dev", "main"]));
    let dev = pyiceberg(&cfg, &["read", &ns, "events", "dev"]);
    assert_eq!(
        dev["rows"].as_array().unwrap(),
        &floe_rows(&ctx, &t, At::Ref("dev".into())).await
    );
    assert_eq!(dev["rows"].as_array().unwrap().len(), 17);
});

both_backends!(floe_reads_what_pyiceberg_writes, |ctx: Ctx| async move {
    if !pyiceberg_available() {
        eprintln!("skipping: PyIceberg not installed");
        return;
    }
    let cfg = pyiceberg_config(&ctx).to_string();
    let ns = ctx.ns.to_string();
    let out = pyiceberg(&cfg, &["write", &ns, "py_written"]);
    assert_eq!(out["ok"], true);
    let t = ctx.table("py_written");
    assert!(ctx.floe.tables(&ctx.ns).await.unwrap().contains(&t));
    let batches = ctx
        .floe
        .scan(&t, &ScanOptions::default())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut rows: Vec<(i64, Option<String>, f64)> = Vec::new();
    for b in &batches {
        let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let user = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let amount = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..b.num_rows() {
            rows.push((
                id.value(i),
                user.is_valid(i).then(|| user.value(i).to_string()),
                amount.value(i),
            ));
        }
    }
    rows.sort_by_key(|r| r.0);
    assert_eq!(
        rows,
        vec![
            (1, Some("a".into()), 1.5),
            (3, None, 3.5),
            (4, Some("d".into()), 4.5)
        ]
    );
    // floe continues the table PyIceberg started, and PyIceberg sees floe's commit.
    let table = ctx.floe.load_table(&t).await.unwrap();
    let schema = table.arrow_schema().unwrap();
    let batch = arrow::array::RecordBatch::try_new(
        std::sync::Arc::new(arrow::datatypes::Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_metadata(HashMap::new()))
                .collect::<Vec<_>>(),
        )),
        vec![
            std::sync::Arc::new(Int64Array::from(vec![5])),
            std::sync::Arc::new(StringArray::from(vec![Some("e")])),
            std::sync::Arc::new(Float64Array::from(vec![5.5])),
        ],
    )
    .unwrap();
    ctx.floe
        .append(&t, stream(vec![batch]), &WriteOptions::default())
        .await
        .unwrap();
    let back = pyiceberg(&cfg, &["read", &ns, "py_written"]);
    assert_eq!(back["rows"].as_array().unwrap().len(), 4);
    assert_eq!(back["operation"], "append");
});

both_backends!(
    iceberg_rust_sql_catalog_loads_floe_tables,
    |ctx: Ctx| async move {
        let t = ctx.table("events");
        ctx.create_events_table(&t, &[]).await;
        ctx.floe
            .append(&t, stream(vec![events(0..9)]), &WriteOptions::default())
            .await
            .unwrap();
        let uri = match ctx.settings.catalog_url.strip_prefix("sqlite:") {
            Some(path) => format!("sqlite://{path}"),
            None => ctx.settings.catalog_url.clone(),
        };
        let bind = if ctx.backend == Backend::PostgresS3 {
            "DollarNumeric"
        } else {
            "QMark"
        };
        let catalog = iceberg_catalog_sql::SqlCatalogBuilder::default()
            .with_storage_factory(ctx.floe.storage().storage_factory())
            .load(
                ctx.settings.catalog_name.clone(),
                HashMap::from([
                    ("uri".to_string(), uri),
                    ("warehouse".to_string(), ctx.floe.warehouse().uri()),
                    ("sql_bind_style".to_string(), bind.to_string()),
                ]),
            )
            .await
            .unwrap();
        let ident = iceberg::TableIdent::from_strs([ctx.ns.to_string().as_str(), "events"]).unwrap();
        let table = catalog.load_table(&ident).await.unwrap();
        let rows: usize = table
            .scan()
            .build()
            .unwrap()
            .to_arrow()
            .await
            .unwrap()
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 9);
        let listed = catalog
            .list_tables(&iceberg::NamespaceIdent::new(ctx.ns.to_string()))
            .await
            .unwrap();
        assert_eq!(listed, vec![ident]);
    }
);

// `drop --purge` of a table whose location holds another table's location below it (PyIceberg
// registers tables wherever it is told): exactly the purged table's files go; the other table is
// untouched and PyIceberg still reads it.
both_backends!(
    purge_leaves_a_table_nested_in_its_location_alone,
    |ctx: Ctx| async move {
        if !pyiceberg_available() {
            eprintln!("skipping: PyIceberg not installed");
            return;
        }
        let cfg = pyiceberg_config(&ctx).to_string();
        let ns = ctx.ns.to_string();
        let outer = format!("{}/shared/outer", ctx.floe.warehouse().uri());
        let inner = format!("{outer}/inner");
        pyiceberg(&cfg, &["write", &ns, "outer", &outer]);
        pyiceberg(&cfg, &["write", &ns, "inner", &inner]);
        let inner_table = ctx.floe.load_table(&ctx.table("inner")).await.unwrap();
        let inner_files: Vec<String> = ctx.floe.storage().list(&format!("{inner}/")).await.unwrap();
        assert!(!inner_files.is_empty());
        // A file under the outer location that no metadata references stays too.
        let stray = format!("{outer}/notes.txt");
        ctx.floe
            .storage()
            .write(&stray, bytes::Bytes::from_static(b"not a table file"))
            .await
            .unwrap();

        ctx.floe.drop_table(&ctx.table("outer"), true).await.unwrap();

        let mut left: Vec<String> = ctx.floe.storage().list(&format!("{outer}/")).await.unwrap();
        left.sort();
        let mut expected = inner_files.clone();
        expected.push(stray);
        expected.sort();
        assert_eq!(left, expected, "only the outer table's own files were deleted");
        let back = pyiceberg(&cfg, &["read", &ns, "inner"]);
        assert_eq!(back["rows"].as_array().unwrap().len(), 3);
        assert_eq!(
            ctx.floe
                .load_table(&ctx.table("inner"))
                .await
                .unwrap()
                .metadata_location(),
            inner_table.metadata_location()
        );
    }
);
