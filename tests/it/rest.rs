//! `floe serve`: the REST catalog's router bound on 127.0.0.1 (port 0) in the test process, and
//! real clients talking HTTP to it: PyIceberg 0.12's `RestCatalog` (namespaces, create_table,
//! appends, a delete, rename, purge, the error answers) and DuckDB 1.4.4's own iceberg extension
//! (ATTACH, SELECT, CREATE TABLE, INSERT). floe then reads and appends to what they committed, and
//! they read floe's tables.

use std::net::SocketAddr;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use floe::rest::RestOptions;
use floe::{At, WriteOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::both_backends;
use crate::interop::{duckdb_iceberg_available, floe_rows, pyiceberg_available, python, s3_keys};
use crate::support::*;

/// Serve `ctx`'s catalog as `floe serve` does, on a free loopback port: its base URI.
pub(crate) async fn serve(ctx: &Ctx) -> String {
    format!("http://{}", serve_with(ctx, &RestOptions::default()).await)
}

/// Serve `ctx`'s catalog with `options` on a free loopback port: its address.
pub(crate) async fn serve_with(ctx: &Ctx, options: &RestOptions) -> SocketAddr {
    serve_floe(ctx.floe.clone(), options).await
}

/// Serve `floe` with `options` on a free loopback port: its address.
pub(crate) async fn serve_floe(floe: floe::Floe, options: &RestOptions) -> SocketAddr {
    let server = floe::rest::Server::bind(floe, "127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run());
    addr
}

/// One raw HTTP/1.1 request: the status and the JSON body (`Null` when there is none).
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        request.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Run the REST clients' tool with `args`; the S3 keys (on Garage) go in the environment.
pub(crate) async fn rest_tool(ctx: &Ctx, args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/rest_tool.py");
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(script).args(args);
    if let Some(keys) = s3_keys(ctx) {
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

pub(crate) fn ids_of(rows: &Value) -> Vec<i64> {
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

both_backends!(
    floe_serve_commits_tables_together_and_refuses_what_it_must,
    |ctx: Ctx| async move {
        let (a, b) = (ctx.table("a"), ctx.table("b"));
        for t in [&a, &b] {
            ctx.create_events_table(t, &[]).await;
            ctx.floe
                .append(t, stream(vec![events(0..5)]), &WriteOptions::default())
                .await
                .unwrap();
        }
        let token = "a-long-enough-test-token";
        let addr = serve_with(
            &ctx,
            &RestOptions {
                token: Some(floe::secrets::Secret::new(token)),
                ..Default::default()
            },
        )
        .await;

        // The token, and only the token, opens the door.
        assert_eq!(http(addr, "GET", "/v1/config", None, None).await.0, 401);
        let (status, body) = http(addr, "GET", "/v1/config", Some("a-wrong-test-token"), None).await;
        assert_eq!(
            (status, &body["error"]["type"]),
            (401, &json!("NotAuthorizedException"))
        );
        let (status, config) = http(addr, "GET", "/v1/config", Some(token), None).await;
        assert_eq!(status, 200);
        assert_eq!(config["overrides"], json!({}));
        assert!(config["endpoints"]
            .as_array()
            .unwrap()
            .contains(&json!("POST /v1/{prefix}/transactions/commit")));
        // Off loopback, the catalog is not served without a token.
        let open = floe::rest::Server::bind(
            ctx.floe.clone(),
            "0.0.0.0:0".parse().unwrap(),
            &RestOptions::default(),
        )
        .await;
        assert_eq!(open.err().map(|e| e.kind()), Some(floe::ErrorKind::Config));

        // Two tables in one transaction: a stale requirement on one refuses both.
        let ns = ctx.ns.to_string();
        let head = |t: &floe::Table| t.current_snapshot().unwrap().snapshot_id();
        let (ta, tb) = (
            ctx.floe.load_table(&a).await.unwrap(),
            ctx.floe.load_table(&b).await.unwrap(),
        );
        let change = |name: &str, snapshot: i64| {
            json!({
                "identifier": {"namespace": [ns], "name": name},
                "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": snapshot}],
                "updates": [{"action": "set-properties", "updates": {"tx": "1"}}],
            })
        };
        let stale = json!({"table-changes": [change("a", head(&ta)), change("b", head(&tb) + 1)]});
        let (status, body) = http(addr, "POST", "/v1/transactions/commit", Some(token), Some(&stale)).await;
        assert_eq!(
            (status, &body["error"]["type"]),
            (409, &json!("CommitFailedException")),
            "{body}"
        );
        for t in [&a, &b] {
            assert_eq!(ctx.floe.load_table(t).await.unwrap().properties().get("tx"), None);
        }
        let fresh = json!({"table-changes": [change("a", head(&ta)), change("b", head(&tb))]});
        let (status, body) = http(addr, "POST", "/v1/transactions/commit", Some(token), Some(&fresh)).await;
        assert_eq!(status, 204, "{body}");
        for t in [&a, &b] {
            let table = ctx.floe.load_table(t).await.unwrap();
            assert_eq!(table.properties().get("tx").map(String::as_str), Some("1"));
        }

        // A snapshot whose manifest list lies outside the table, and a new uuid or location, are refused.
        let ta = ctx.floe.load_table(&a).await.unwrap();
        let outside = format!("{}/elsewhere/snap-1.avro", ctx.floe.warehouse().uri());
        let add = json!({
            "requirements": [],
            "updates": [{"action": "add-snapshot", "snapshot": {
                "snapshot-id": 4242, "parent-snapshot-id": head(&ta),
                "sequence-number": ta.metadata().last_sequence_number() + 1,
                "timestamp-ms": chrono::Utc::now().timestamp_millis(), "manifest-list": outside,
                "summary": {"operation": "append"}, "schema-id": 0}}],
        });
        let path = format!("/v1/namespaces/{ns}/tables/a");
        for refused in [
            add,
            json!({"updates": [{"action": "assign-uuid", "uuid": uuid::Uuid::new_v4().to_string()}]}),
            json!({"updates": [{"action": "set-location", "location": format!("{}/moved", ctx.floe.warehouse().uri())}]}),
            json!({"updates": [{"action": "upgrade-format-version", "format-version": 3}]}),
        ] {
            let (status, body) = http(addr, "POST", &path, Some(token), Some(&refused)).await;
            assert_eq!(
                (status, &body["error"]["type"]),
                (400, &json!("BadRequestException")),
                "{refused}: {body}"
            );
        }
        assert_eq!(
            ctx.floe.load_table(&a).await.unwrap().metadata_location(),
            ta.metadata_location()
        );
    }
);
