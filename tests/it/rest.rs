//! `floe serve`: the REST catalog's router bound on 127.0.0.1 (port 0) in the test process, and
//! real clients talking HTTP to it: PyIceberg 0.12's `RestCatalog` (namespaces, create_table,
//! appends, a delete, rename, purge, the error answers) and DuckDB 1.4.4's own iceberg extension
//! (ATTACH, SELECT, CREATE TABLE, INSERT). floe then reads and appends to what they committed, and
//! they read floe's tables.

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use floe::{At, WriteOptions};
use serde_json::{json, Value};

use crate::both_backends;
use crate::interop::{duckdb_iceberg_available, floe_rows, pyiceberg_available, python};
use crate::support::*;

/// Serve `ctx`'s catalog as `floe serve` does, on a free loopback port: its base URI.
async fn serve(ctx: &Ctx) -> String {
    let server = floe::rest::Server::bind(
        ctx.floe.clone(),
        "127.0.0.1:0".parse().unwrap(),
        &floe::rest::RestOptions::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run());
    format!("http://{addr}")
}

/// Run the REST clients' tool with `args`; the S3 keys (on Garage) go in the environment.
async fn rest_tool(ctx: &Ctx, args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/rest_tool.py");
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(script).args(args);
    if ctx.backend == Backend::PostgresS3 {
        let s3 = &ctx.settings.s3;
        let keys = json!({
            "endpoint": s3.endpoint.clone().unwrap_or_default(),
            "key_id": s3.access_key_id.clone().unwrap_or_default(),
            "secret": s3.secret_access_key.as_ref().map(|s| s.expose().to_string()).unwrap_or_default(),
            "region": s3.region.clone().unwrap_or_else(|| "garage".into()),
        });
        cmd.env("FLOE_REST_S3", keys.to_string());
    }
    let out = cmd.output().await.expect("run python");
    assert!(
        out.status.success(),
        "rest_tool {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from rest_tool")
}

/// Rows in the schema PyIceberg's tool creates (id, user_id, amount).
fn py_rows(table: &floe::Table, ids: &[i64]) -> RecordBatch {
    let schema = table.arrow_schema().unwrap();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(
                ids.iter().map(|i| Some(format!("f{i}"))).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                ids.iter().map(|i| *i as f64 + 0.5).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

fn ids_of(rows: &Value) -> Vec<i64> {
    let mut ids: Vec<i64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    ids
}

both_backends!(
    pyiceberg_commits_through_floe_serve_and_floe_builds_on_them,
    |ctx: Ctx| async move {
        if !pyiceberg_available() {
            return;
        }
        let uri = serve(&ctx).await;
        let ns = ctx.ns.to_string();
        let out = rest_tool(&ctx, &["pyiceberg", &uri, &ns]).await;

        assert_eq!(
            out["endpoints"].as_array().unwrap().len(),
            floe::rest::ENDPOINTS.len()
        );
        assert_eq!(out["children"], json!([[ns, "child"]]));
        assert_eq!(out["top_level_has_ns"], json!(true));
        assert_eq!(out["child_exists"], json!(true));
        assert_eq!(out["child_properties"], json!("py"));
        assert_eq!(
            out["properties_update"],
            json!({"updated": ["k"], "removed": ["owner"], "missing": ["nope"]})
        );
        assert_eq!(out["child_properties_after"], json!({"k": "v"}));
        assert_eq!(
            out["drop_non_empty_parent"],
            json!({"status": 409, "type": "NamespaceNotEmptyException", "code": 409})
        );
        assert_eq!(out["child_exists_after_drop"], json!(false));

        // Two appends and a delete, each a commit through floe's loop.
        assert_eq!(ids_of(&out["rows"]), vec![1, 3, 4]);
        assert!(out["snapshots"].as_i64().unwrap() >= 3, "{out}");
        assert_eq!(out["tables"], json!(["py_events"]));
        assert_eq!(out["table_exists"], json!(true));
        assert_eq!(ids_of(&out["renamed_rows"]), vec![7]);
        assert_eq!(out["scratch_exists"], json!(false));
        assert_eq!(out["renamed_exists_after_purge"], json!(false));

        // The error answers, in the Iceberg shape; the refused commits changed nothing.
        assert_eq!(
            out["stale_ref"],
            json!({"status": 409, "type": "CommitFailedException", "code": 409})
        );
        assert_eq!(
            out["unknown_update"],
            json!({"status": 400, "type": "BadRequestException", "code": 400})
        );
        assert_eq!(
            out["missing_table"],
            json!({"status": 404, "type": "NoSuchTableException", "code": 404})
        );
        assert_eq!(
            out["missing_namespace"],
            json!({"status": 404, "type": "NoSuchNamespaceException", "code": 404})
        );
        assert_eq!(out["properties_after_refused_commits"], Value::Null);

        // floe reads what PyIceberg committed and appends on top; PyIceberg reads it back.
        let t = ctx.table("py_events");
        assert_eq!(ids(&ctx.floe, &t, At::Current).await, vec![1, 3, 4]);
        let table = ctx.floe.load_table(&t).await.unwrap();
        ctx.floe
            .append(
                &t,
                stream(vec![py_rows(&table, &[10, 11])]),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        let read = rest_tool(&ctx, &["read", &uri, &ns, "py_events"]).await;
        assert_eq!(ids_of(&read["rows"]), vec![1, 3, 4, 10, 11]);
        let ten = read["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == json!(10))
            .unwrap();
        assert_eq!(ten, &json!({"id": 10, "user_id": "f10", "amount": 10.5}));

        // PyIceberg reads floe's partitioned table through the server.
        let e = ctx.table("events");
        ctx.create_events_table(&e, &["day(ts)"]).await;
        ctx.floe
            .append(&e, stream(vec![events(0..25)]), &WriteOptions::default())
            .await
            .unwrap();
        let read = rest_tool(&ctx, &["read", &uri, &ns, "events"]).await;
        assert_eq!(read["rows"], Value::Array(floe_rows(&ctx, &e, At::Current).await));
        assert_eq!(read["rows"].as_array().unwrap().len(), 25);
    }
);

both_backends!(
    duckdb_attaches_to_floe_serve_reads_and_writes,
    |ctx: Ctx| async move {
        if !duckdb_iceberg_available() {
            return;
        }
        let e = ctx.table("events");
        ctx.create_events_table(&e, &[]).await;
        ctx.floe
            .append(&e, stream(vec![events(0..10)]), &WriteOptions::default())
            .await
            .unwrap();
        let uri = serve(&ctx).await;
        let ns = ctx.ns.to_string();
        let out = rest_tool(&ctx, &["duckdb", &uri, &ns]).await;
        assert_eq!(out["events"], json!([10, 45]));
        assert_eq!(out["duck"], json!([[1, "a"], [2, "b"], [3, "c"]]));
        // floe reads what DuckDB created and inserted: DuckDB 1.4.4's manifest headers do not parse
        // in iceberg-rust (duckdb-iceberg #799), so each commit went in with repaired copies under a
        // list floe wrote.
        let d = ctx.table("duck");
        assert_eq!(ids(&ctx.floe, &d, At::Current).await, vec![1, 2, 3]);
        let duck = ctx.floe.load_table(&d).await.unwrap();
        assert_eq!(duck.snapshots().len(), 2);
        for s in duck.snapshots() {
            assert!(s.manifest_list().ends_with("-floe.avro"), "{}", s.manifest_list());
        }
        // floe appends on top, and DuckDB attaches again and reads floe's rows.
        let batch = RecordBatch::try_new(
            duck.arrow_schema().unwrap(),
            vec![
                Arc::new(Int64Array::from(vec![4])),
                Arc::new(StringArray::from(vec!["d"])),
            ],
        )
        .unwrap();
        ctx.floe
            .append(&d, stream(vec![batch]), &WriteOptions::default())
            .await
            .unwrap();
        let out = rest_tool(&ctx, &["duckdb-read", &uri, &ns, "duck"]).await;
        assert_eq!(out["rows"], json!([[1, "a"], [2, "b"], [3, "c"], [4, "d"]]));
    }
);
