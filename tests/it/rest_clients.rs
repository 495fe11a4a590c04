//! More real clients of `floe serve`: PyIceberg 0.12's RestCatalog (a schema change,
//! `create_table_transaction`, and reads of floe's partitioned, branched and tagged tables),
//! DuckDB 1.4.4's iceberg extension (time travel, CTAS, a transaction over two tables, DELETE,
//! UPDATE, DROP) and iceberg-rust 0.10.1's own REST client (`iceberg-catalog-rest`: namespaces,
//! create, load). floe reads and appends to what each committed.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use floe::{At, WriteOptions};
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableIdent};
use iceberg_catalog_rest::{RestCatalogBuilder, REST_CATALOG_PROP_URI};
use serde_json::{json, Value};

use crate::both_backends;
use crate::interop::{duckdb_iceberg_available, floe_rows, pyiceberg_available, s3_keys};
use crate::rest::{ids_of, rest_tool, serve};
use crate::support::*;

/// floe's rows of any table, as JSON objects sorted by their text.
async fn json_rows(ctx: &Ctx, t: &floe::TableName) -> Vec<Value> {
    use futures::TryStreamExt;
    let batches: Vec<RecordBatch> = ctx
        .floe
        .scan(t, &floe::ScanOptions::default())
        .await
        .unwrap()
        .batches
        .try_collect()
        .await
        .unwrap();
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for b in &batches {
        writer.write(b).unwrap();
    }
    writer.finish().unwrap();
    let bytes = writer.into_inner();
    let mut rows: Vec<Value> = if bytes.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    rows.sort_by_key(|r| r.to_string());
    rows
}

both_backends!(
    pyiceberg_evolves_a_schema_stages_a_create_and_reads_floes_refs,
    |ctx: Ctx| async move {
        if !pyiceberg_available() {
            return;
        }
        let uri = serve(&ctx).await;
        let ns = ctx.ns.to_string();
        let out = rest_tool(&ctx, &["evolve", &uri, &ns]).await;
        assert_eq!(
            out["evolved_fields"],
            json!([[1, "id"], [2, "user_id"], [3, "amount"], [4, "note"]])
        );
        assert_eq!(ids_of(&out["evolved_rows"]), vec![1, 2]);
        assert_eq!(ids_of(&out["staged_rows"]), vec![5, 6]);
        assert_eq!(
            out["staged_fields"],
            json!([[1, "id"], [2, "user_id"], [3, "amount"]])
        );
        // floe reads both: the evolved schema (the old row's note is null) and the staged table.
        let evolving = ctx.table("evolving");
        let rows = json_rows(&ctx, &evolving).await;
        assert_eq!(rows.len(), 2);
        assert!(
            rows.iter().any(|r| r["id"] == json!(1) && r["note"].is_null()),
            "{rows:?}"
        );
        assert!(
            rows.iter()
                .any(|r| r["id"] == json!(2) && r["note"] == json!("n")),
            "{rows:?}"
        );
        assert_eq!(
            ids(&ctx.floe, &ctx.table("staged"), At::Current).await,
            vec![5, 6]
        );

        // PyIceberg reads floe's partitioned table at its branch and tag.
        let e = ctx.table("events");
        ctx.create_events_table(&e, &["day(ts)", "bucket(4, id)"]).await;
        ctx.floe
            .append(&e, stream(vec![events(0..20)]), &WriteOptions::default())
            .await
            .unwrap();
        ctx.floe.create_tag(&e, "v1", &At::Current).await.unwrap();
        ctx.floe.create_branch(&e, "dev", &At::Current).await.unwrap();
        ctx.floe
            .append(&e, stream(vec![events(20..25)]), &WriteOptions::on_branch("dev"))
            .await
            .unwrap();
        ctx.floe
            .append(&e, stream(vec![events(30..32)]), &WriteOptions::default())
            .await
            .unwrap();
        let main = rest_tool(&ctx, &["read", &uri, &ns, "events"]).await;
        assert_eq!(main["refs"], json!(["dev", "main", "v1"]));
        assert_eq!(main["partition_fields"], json!(["ts_day", "id_bucket_4"]));
        assert_eq!(main["rows"], Value::Array(floe_rows(&ctx, &e, At::Current).await));
        assert_eq!(main["rows"].as_array().unwrap().len(), 22);
        for (r, n) in [("v1", 20), ("dev", 25)] {
            let read = rest_tool(&ctx, &["read", &uri, &ns, "events", r]).await;
            let floe = floe_rows(&ctx, &e, At::Ref(r.into())).await;
            assert_eq!(read["rows"], Value::Array(floe), "{r}");
            assert_eq!(read["rows"].as_array().unwrap().len(), n, "{r}");
        }
    }
);

both_backends!(
    duckdb_time_travels_ctas_commits_two_tables_at_once_and_drops,
    |ctx: Ctx| async move {
        if !duckdb_iceberg_available() {
            return;
        }
        let e = ctx.table("events");
        ctx.create_events_table(&e, &[]).await;
        let first = ctx
            .floe
            .append(&e, stream(vec![events(0..10)]), &WriteOptions::default())
            .await
            .unwrap()
            .snapshot_id
            .unwrap();
        ctx.floe
            .append(&e, stream(vec![events(10..12)]), &WriteOptions::default())
            .await
            .unwrap();
        let uri = serve(&ctx).await;
        let ns = ctx.ns.to_string();
        let out = rest_tool(&ctx, &["duckdb-more", &uri, &ns, &first.to_string()]).await;
        assert_eq!(
            (out["events_now"].clone(), out["events_then"].clone()),
            (json!(12), json!(10))
        );
        // CTAS: on S3 a staged create with rows in one commit; on a local warehouse DuckDB 1.4.4
        // cannot make the new table's directory (it hands `file://…` to mkdir).
        if ctx.backend == Backend::PostgresS3 {
            assert_eq!(out["ctas_error"], Value::Null);
            assert_eq!(
                out["tables"],
                json!(["ctas", "duck_a", "duck_b", "events"]),
                "{out}"
            );
            assert_eq!(
                ids(&ctx.floe, &ctx.table("ctas"), At::Current).await,
                vec![0, 1, 2, 3]
            );
        } else {
            let error = out["ctas_error"].as_str().unwrap_or_default();
            assert!(error.contains("Failed to create directory"), "{out}");
            assert_eq!(out["tables"], json!(["duck_a", "duck_b", "events"]), "{out}");
        }

        // The transaction over two tables landed on both.
        let (a, b) = (ctx.table("duck_a"), ctx.table("duck_b"));
        assert_eq!(ids(&ctx.floe, &b, At::Current).await, vec![1, 2]);
        assert_eq!(ctx.floe.load_table(&b).await.unwrap().snapshots().len(), 2);
        // DELETE and UPDATE commit position deletes (merge-on-read); floe reads them.
        assert_eq!(out["delete_error"], Value::Null);
        assert_eq!(out["update_error"], Value::Null);
        assert_eq!(out["duck_a"], json!([[1, "a1"], [3, "A3"], [4, "a4"]]));
        let mut rows: Vec<(i64, String)> = json_rows(&ctx, &a)
            .await
            .iter()
            .map(|r| (r["id"].as_i64().unwrap(), r["name"].as_str().unwrap().to_string()))
            .collect();
        rows.sort();
        assert_eq!(
            rows,
            vec![
                (1, "a1".to_string()),
                (3, "A3".to_string()),
                (4, "a4".to_string())
            ]
        );
        let table_a = ctx.floe.load_table(&a).await.unwrap();
        assert!(ctx.floe.load_table(&ctx.table("doomed")).await.is_err());

        // floe appends to DuckDB's table; DuckDB attaches again and reads floe's rows.
        let batch = RecordBatch::try_new(
            table_a.arrow_schema().unwrap(),
            vec![
                Arc::new(Int64Array::from(vec![9])),
                Arc::new(StringArray::from(vec!["floe"])),
            ],
        )
        .unwrap();
        ctx.floe
            .append(&a, stream(vec![batch]), &WriteOptions::default())
            .await
            .unwrap();
        let read = rest_tool(&ctx, &["duckdb-read", &uri, &ns, "duck_a"]).await;
        assert_eq!(
            read["rows"],
            json!([[1, "a1"], [3, "A3"], [4, "a4"], [9, "floe"]])
        );
    }
);

both_backends!(
    iceberg_rusts_rest_client_lists_creates_and_loads_through_floe_serve,
    |ctx: Ctx| async move {
        let uri = serve(&ctx).await;
        let mut props = HashMap::from([(REST_CATALOG_PROP_URI.to_string(), uri)]);
        if let Some(keys) = s3_keys(&ctx) {
            props.insert("s3.access-key-id".into(), keys["key_id"].as_str().unwrap().into());
            props.insert(
                "s3.secret-access-key".into(),
                keys["secret"].as_str().unwrap().into(),
            );
        }
        let catalog = RestCatalogBuilder::default()
            .with_storage_factory(ctx.floe.storage().storage_factory())
            .load("floe", props)
            .await
            .unwrap();
        let ns = NamespaceIdent::from_strs(ctx.ns.to_string().split('.')).unwrap();
        let namespaces = catalog.list_namespaces(None).await.unwrap();
        assert!(namespaces.contains(&ns), "{namespaces:?}");

        // A table iceberg-rust creates through the server, with the schema of one floe wrote.
        // (Not covered yet: iceberg-rust's `Transaction::fast_append` of a data file floe wrote.
        // Tried here, its commit failed with iceberg-rust's own "No added data files or added
        // snapshot properties found when write a manifest file"; the cause is not yet found.)
        let scratch = ctx.table("scratch");
        ctx.create_events_table(&scratch, &[]).await;
        let written = ctx.floe.load_table(&scratch).await.unwrap();
        let schema = written.metadata().current_schema().clone();
        let creation = iceberg::TableCreation::builder()
            .name("from_rust".to_string())
            .schema((*schema).clone())
            .build();
        let table = catalog.create_table(&ns, creation).await.unwrap();
        assert!(table.metadata().current_snapshot().is_none());
        let ident = TableIdent::new(ns.clone(), "from_rust".into());
        assert!(catalog.table_exists(&ident).await.unwrap());

        // floe reads it, appends, and iceberg-rust loads floe's commit.
        let t = ctx.table("from_rust");
        assert_eq!(ids(&ctx.floe, &t, At::Current).await, Vec::<i64>::new());
        let r = ctx
            .floe
            .append(&t, stream(vec![events(4..6)]), &WriteOptions::default())
            .await
            .unwrap();
        let loaded = catalog.load_table(&ident).await.unwrap();
        assert_eq!(
            loaded.metadata().current_snapshot().map(|s| s.snapshot_id()),
            r.snapshot_id
        );
        assert_eq!(ids(&ctx.floe, &t, At::Current).await, vec![4, 5]);
    }
);
