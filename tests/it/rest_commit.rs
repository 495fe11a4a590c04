//! The commit side of `floe serve`, driven by raw HTTP: the guards on what an added snapshot brings
//! (its manifest list and new manifests under the table, whole and parseable), unknown updates and
//! requirements, a create-via-commit that keeps the client's field ids, the error answers a commit
//! gets from a catalog that loses the swap's reply or certainly fails it, a purge that never deletes
//! a file outside the table's location, and registering a table at an existing metadata file.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use floe::rest::RestOptions;
use floe::{At, Floe, WriteOptions};
use iceberg::io::FileWrite;
use iceberg::spec::{FormatVersion, ManifestFile, ManifestList, ManifestListWriter};
use serde_json::{json, Value};

use crate::both_backends;
use crate::faulty_catalog::{faulty_floe, Fault};
use crate::rest::{http, serve_floe};
use crate::support::*;

/// Serve `floe` on a free loopback port, without auth: its address.
async fn serve(floe: Floe) -> SocketAddr {
    serve_floe(floe, &RestOptions::default()).await
}

/// The error type and status of an answer.
fn error_of(answer: &(u16, Value)) -> (u16, String) {
    (
        answer.0,
        answer.1["error"]["type"].as_str().unwrap_or_default().to_string(),
    )
}

fn bad_request() -> (u16, String) {
    (400, "BadRequestException".to_string())
}

/// An in-memory sink for iceberg's manifest-list writer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

#[async_trait::async_trait]
impl FileWrite for Buffer {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        self.0.lock().unwrap().extend_from_slice(&bs);
        Ok(())
    }
    async fn close(&mut self) -> iceberg::Result<()> {
        Ok(())
    }
}

/// A v2 manifest list of `manifests` for snapshot `id` on `parent`, written to `location`.
async fn write_list(
    floe: &Floe,
    location: &str,
    id: i64,
    parent: i64,
    sequence: i64,
    manifests: Vec<ManifestFile>,
) {
    let buffer = Buffer::default();
    let mut writer = ManifestListWriter::v2(Box::new(buffer.clone()), id, Some(parent), sequence);
    writer.add_manifests(manifests.into_iter()).unwrap();
    writer.close().await.unwrap();
    let bytes = std::mem::take(&mut *buffer.0.lock().unwrap());
    floe.storage().write(location, bytes.into()).await.unwrap();
}

/// A commit adding snapshot `id` on the table's head with `list`, and making it current.
fn add_snapshot(table: &floe::Table, id: i64, list: &str) -> Value {
    let head = table.current_snapshot().unwrap().snapshot_id();
    json!({
        "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": head}],
        "updates": [
            {"action": "add-snapshot", "snapshot": {
                "snapshot-id": id, "parent-snapshot-id": head,
                "sequence-number": table.metadata().last_sequence_number() + 1,
                "timestamp-ms": chrono::Utc::now().timestamp_millis(), "manifest-list": list,
                "summary": {"operation": "append"}, "schema-id": 0}},
            {"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": id},
        ],
    })
}

both_backends!(
    a_rest_commit_refuses_a_snapshot_whose_files_are_not_the_tables_own_and_whole,
    |ctx: Ctx| async move {
        let (a, b) = (ctx.table("a"), ctx.table("b"));
        for t in [&a, &b] {
            ctx.create_events_table(t, &[]).await;
            ctx.floe
                .append(t, stream(vec![events(0..5)]), &WriteOptions::default())
                .await
                .unwrap();
        }
        let addr = serve(ctx.floe.clone()).await;
        let ns = ctx.ns.to_string();
        let path = format!("/v1/namespaces/{ns}/tables/a");
        let table = ctx.floe.load_table(&a).await.unwrap();
        let other = ctx.floe.load_table(&b).await.unwrap();
        let storage = ctx.floe.storage();
        let head = table.current_snapshot().unwrap();
        let list_bytes = storage.read(head.manifest_list()).await.unwrap();
        let manifests: Vec<ManifestFile> = ManifestList::parse_with_version(&list_bytes, FormatVersion::V2)
            .unwrap()
            .entries()
            .to_vec();
        let manifest = manifests[0].clone();
        let manifest_bytes = storage.read(&manifest.manifest_path).await.unwrap();
        let meta = format!("{}/metadata", table.location());
        let (id, parent, seq) = (
            777_001,
            head.snapshot_id(),
            table.metadata().last_sequence_number() + 1,
        );

        // A new manifest (a copy of the head's, at a new path) with another length than recorded.
        let copy = format!("{meta}/copy-{}.avro", uuid::Uuid::new_v4());
        storage.write(&copy, manifest_bytes.clone()).await.unwrap();
        let mut short = manifest.clone();
        short.manifest_path = copy.clone();
        short.manifest_length += 1;
        let wrong_length = format!("{meta}/snap-wrong-length.avro");
        write_list(&ctx.floe, &wrong_length, id, parent, seq, vec![short]).await;
        // A new manifest under another table's location.
        let foreign = format!(
            "{}/metadata/foreign-{}.avro",
            other.location(),
            uuid::Uuid::new_v4()
        );
        storage.write(&foreign, manifest_bytes.clone()).await.unwrap();
        let mut outside = manifest.clone();
        outside.manifest_path = foreign.clone();
        let outside_manifest = format!("{meta}/snap-outside-manifest.avro");
        write_list(&ctx.floe, &outside_manifest, id, parent, seq, vec![outside]).await;
        // A new manifest that does not parse, its length right.
        let junk = format!("{meta}/junk-{}.avro", uuid::Uuid::new_v4());
        storage
            .write(&junk, Bytes::from_static(b"Obj\x01 not a manifest at all"))
            .await
            .unwrap();
        let mut junk_entry = manifest.clone();
        junk_entry.manifest_path = junk.clone();
        junk_entry.manifest_length = 26;
        let junk_manifest = format!("{meta}/snap-junk-manifest.avro");
        write_list(&ctx.floe, &junk_manifest, id, parent, seq, vec![junk_entry]).await;
        // A manifest list that does not parse, one that does not exist, one outside the table.
        let junk_list = format!("{meta}/snap-junk.avro");
        storage
            .write(&junk_list, Bytes::from_static(b"not avro"))
            .await
            .unwrap();
        let missing_list = format!("{meta}/snap-missing-{}.avro", uuid::Uuid::new_v4());
        let outside_list = format!("{}/metadata/snap-elsewhere.avro", other.location());
        write_list(&ctx.floe, &outside_list, id, parent, seq, manifests.clone()).await;

        for (list, why) in [
            (&wrong_length, "records"),
            (&outside_manifest, "not under the table's location"),
            (&junk_manifest, "does not parse"),
            (&junk_list, "does not parse"),
            (&missing_list, "does not exist"),
            (&outside_list, "not under the table's location"),
        ] {
            let answer = http(addr, "POST", &path, None, Some(&add_snapshot(&table, id, list))).await;
            assert_eq!(error_of(&answer), bad_request(), "{list}: {}", answer.1);
            let message = answer.1["error"]["message"].as_str().unwrap();
            assert!(message.contains(why), "{list}: {message}");
        }

        // An unknown update or requirement type is bad input too, and so is a create inside a
        // multi-table transaction (floe's swap moves existing tables only).
        let head_id = head.snapshot_id();
        for refused in [
            json!({"requirements": [], "updates": [{"action": "frobnicate-table", "x": 1}]}),
            json!({"requirements": [{"type": "assert-frobnicated", "x": 1}], "updates": []}),
        ] {
            let answer = http(addr, "POST", &path, None, Some(&refused)).await;
            assert_eq!(error_of(&answer), bad_request(), "{refused}: {}", answer.1);
        }
        let create_in_tx = json!({"table-changes": [
            {"identifier": {"namespace": [ns], "name": "new_in_tx"},
             "requirements": [{"type": "assert-create"}], "updates": []},
        ]});
        let answer = http(addr, "POST", "/v1/transactions/commit", None, Some(&create_in_tx)).await;
        assert_eq!(error_of(&answer), bad_request(), "{}", answer.1);

        // Nothing above changed the table; the same snapshot with the head's own, whole list lands.
        let now = ctx.floe.load_table(&a).await.unwrap();
        assert_eq!(now.metadata_location(), table.metadata_location());
        let good = format!("{meta}/snap-good.avro");
        let mut kept = manifests.clone();
        let mut fresh = manifest.clone();
        fresh.manifest_path = copy;
        fresh.added_snapshot_id = id;
        kept.push(fresh);
        write_list(&ctx.floe, &good, id, parent, seq, kept).await;
        let answer = http(addr, "POST", &path, None, Some(&add_snapshot(&table, id, &good))).await;
        assert_eq!(answer.0, 200, "{}", answer.1);
        let now = ctx.floe.load_table(&a).await.unwrap();
        assert_eq!(now.current_snapshot().unwrap().snapshot_id(), id);
        assert_ne!(head_id, id);
        let mut expected: Vec<i64> = (0..5).chain(0..5).collect();
        expected.sort();
        assert_eq!(ids(&ctx.floe, &a, At::Current).await, expected);
    }
);

both_backends!(
    a_create_commit_keeps_the_field_ids_the_client_sent,
    |ctx: Ctx| async move {
        let addr = serve(ctx.floe.clone()).await;
        let ns = ctx.ns.to_string();
        let schema = json!({"type": "struct", "schema-id": 0, "fields": [
            {"id": 5, "name": "id", "required": true, "type": "long"},
            {"id": 7, "name": "name", "required": false, "type": "string"},
        ]});
        let staged = http(
            addr,
            "POST",
            &format!("/v1/namespaces/{ns}/tables"),
            None,
            Some(&json!({"name": "ids", "schema": schema, "stage-create": true})),
        )
        .await;
        assert_eq!(staged.0, 200, "{}", staged.1);
        let uuid = staged.1["metadata"]["table-uuid"].clone();
        let location = staged.1["metadata"]["location"].clone();
        // The client commits its own schema (ids 5 and 7), a spec on field 7, and names the
        // schema and spec by their concrete ids as DuckDB does.
        let create = json!({
            "requirements": [{"type": "assert-create"}],
            "updates": [
                {"action": "assign-uuid", "uuid": uuid},
                {"action": "upgrade-format-version", "format-version": 2},
                {"action": "add-schema", "schema": schema, "last-column-id": 7},
                {"action": "set-current-schema", "schema-id": 0},
                {"action": "add-spec", "spec": {"spec-id": 0, "fields": [
                    {"source-id": 7, "field-id": 1000, "name": "name", "transform": "identity"}]}},
                {"action": "set-default-spec", "spec-id": 0},
                {"action": "add-sort-order", "sort-order": {"order-id": 0, "fields": []}},
                {"action": "set-default-sort-order", "sort-order-id": 0},
                {"action": "set-location", "location": location},
            ],
        });
        let path = format!("/v1/namespaces/{ns}/tables/ids");
        let answer = http(addr, "POST", &path, None, Some(&create)).await;
        assert_eq!(answer.0, 200, "{}", answer.1);

        let t = ctx.table("ids");
        let table = ctx.floe.load_table(&t).await.unwrap();
        let metadata = table.metadata();
        assert_eq!(metadata.schemas_iter().count(), 1, "one schema, the client's");
        let field_ids: Vec<i32> = metadata
            .current_schema()
            .as_struct()
            .fields()
            .iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(field_ids, vec![5, 7]);
        assert_eq!(metadata.last_column_id(), 7);
        assert_eq!(metadata.uuid().to_string(), uuid.as_str().unwrap());
        let spec = metadata.default_partition_spec();
        assert_eq!(metadata.partition_specs_iter().count(), 1);
        assert_eq!(spec.fields()[0].source_id, 7);
        // A second create of the same table is a conflict, not a second table.
        let again = http(addr, "POST", &path, None, Some(&create)).await;
        assert_eq!(error_of(&again).0, 409, "{}", again.1);

        // floe writes and reads it with those ids.
        let batch = arrow::array::RecordBatch::try_new(
            table.arrow_schema().unwrap(),
            vec![
                Arc::new(arrow::array::Int64Array::from(vec![1, 2])),
                Arc::new(arrow::array::StringArray::from(vec!["x", "y"])),
            ],
        )
        .unwrap();
        ctx.floe
            .append(&t, stream(vec![batch]), &WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(ids(&ctx.floe, &t, At::Current).await, vec![1, 2]);
    }
);

both_backends!(
    a_rest_commit_tells_an_unknown_outcome_from_a_certain_failure,
    |ctx: Ctx| async move {
        let t = ctx.table("events");
        ctx.create_events_table(&t, &[]).await;
        ctx.floe
            .append(&t, stream(vec![events(0..3)]), &WriteOptions::default())
            .await
            .unwrap();
        let ns = ctx.ns.to_string();
        let path = format!("/v1/namespaces/{ns}/tables/events");
        let set = |value: &str| json!({"updates": [{"action": "set-properties", "updates": {"k": value}}]});
        let property = |table: floe::Table| table.properties().get("k").cloned();

        // The reply to the swap is lost and floe may not retry: the outcome is unknown (500), and
        // the commit is in fact in, once.
        let mut settings = ctx.settings.clone();
        settings.retry.max_retries = 0;
        let before = ctx.floe.load_table(&t).await.unwrap();
        let (floe, faulty) = faulty_floe(settings, vec![Fault::LoseReplyAfterSwap]).await;
        let answer = http(serve(floe).await, "POST", &path, None, Some(&set("lost"))).await;
        assert_eq!(
            error_of(&answer),
            (500, "CommitStateUnknownException".to_string()),
            "{}",
            answer.1
        );
        assert_eq!(faulty.swaps(), 1);
        let after = ctx.floe.load_table(&t).await.unwrap();
        assert_eq!(property(after.clone()).as_deref(), Some("lost"));
        assert_eq!(
            after
                .metadata()
                .metadata_log()
                .last()
                .map(|m| m.metadata_file.as_str()),
            Some(before.metadata_location())
        );

        // With retries, floe finds its own landed swap: 200, and it lands once.
        let (floe, faulty) = faulty_floe(ctx.settings.clone(), vec![Fault::LoseReplyAfterSwap]).await;
        let answer = http(serve(floe).await, "POST", &path, None, Some(&set("found"))).await;
        assert_eq!(answer.0, 200, "{}", answer.1);
        assert_eq!(faulty.swaps(), 1);
        let now = ctx.floe.load_table(&t).await.unwrap();
        assert_eq!(property(now.clone()).as_deref(), Some("found"));
        assert_eq!(
            now.metadata().metadata_log().len(),
            after.metadata().metadata_log().len() + 1
        );

        // Every swap fails before COMMIT: certainly not landed (503), and nothing changed.
        let (floe, _) = faulty_floe(ctx.settings.clone(), vec![Fault::FailStatement; 10]).await;
        let answer = http(serve(floe).await, "POST", &path, None, Some(&set("failed"))).await;
        assert_eq!(
            error_of(&answer),
            (503, "ServiceUnavailableException".to_string()),
            "{}",
            answer.1
        );
        let last = ctx.floe.load_table(&t).await.unwrap();
        assert_eq!(last.metadata_location(), now.metadata_location());

        // A missing table or namespace is told apart by the error's structure.
        let addr = serve(ctx.floe.clone()).await;
        let missing_table = http(
            addr,
            "POST",
            &format!("/v1/namespaces/{ns}/tables/nope"),
            None,
            Some(&set("x")),
        )
        .await;
        assert_eq!(
            error_of(&missing_table),
            (404, "NoSuchTableException".to_string())
        );
        let missing_ns = http(
            addr,
            "GET",
            &format!("/v1/namespaces/{ns}_nope/tables"),
            None,
            None,
        )
        .await;
        assert_eq!(
            error_of(&missing_ns),
            (404, "NoSuchNamespaceException".to_string())
        );
        let create_in_missing = http(
            addr,
            "POST",
            &format!("/v1/namespaces/{ns}_nope/tables"),
            None,
            Some(&json!({"name": "t", "schema": {"type": "struct", "schema-id": 0, "fields": []}})),
        )
        .await;
        assert_eq!(
            error_of(&create_in_missing),
            (404, "NoSuchNamespaceException".to_string())
        );
    }
);

both_backends!(
    a_rest_purge_never_deletes_a_file_outside_the_tables_location,
    |ctx: Ctx| async move {
        let (victim, other) = (ctx.table("victim"), ctx.table("other"));
        for t in [&victim, &other] {
            ctx.create_events_table(t, &[]).await;
        }
        ctx.floe
            .append(&victim, stream(vec![events(0..3)]), &WriteOptions::default())
            .await
            .unwrap();
        ctx.floe
            .append(&other, stream(vec![events(10..15)]), &WriteOptions::default())
            .await
            .unwrap();
        // The victim's snapshot names a data file of the other table.
        let others_files: Vec<String> = referenced(&ctx, &other)
            .await
            .into_iter()
            .filter(|f| f.ends_with(".parquet"))
            .collect();
        assert_eq!(others_files.len(), 1);
        ctx.floe
            .add_files(&victim, &others_files, &WriteOptions::default())
            .await
            .unwrap();
        let own: Vec<String> = referenced(&ctx, &victim)
            .await
            .into_iter()
            .filter(|f| !others_files.contains(f))
            .collect();

        let addr = serve(ctx.floe.clone()).await;
        let ns = ctx.ns.to_string();
        let answer = http(
            addr,
            "DELETE",
            &format!("/v1/namespaces/{ns}/tables/victim?purgeRequested=true"),
            None,
            None,
        )
        .await;
        assert_eq!(answer.0, 204, "{}", answer.1);
        for f in &own {
            assert!(
                !ctx.floe.storage().exists(f).await.unwrap(),
                "{f} survived the purge"
            );
        }
        for f in &others_files {
            assert!(ctx.floe.storage().exists(f).await.unwrap(), "{f} was purged");
        }
        assert_eq!(
            ids(&ctx.floe, &other, At::Current).await,
            (10..15).collect::<Vec<_>>()
        );
    }
);

both_backends!(
    a_table_dropped_from_the_catalog_registers_again_at_its_metadata_file,
    |ctx: Ctx| async move {
        let t = ctx.table("events");
        ctx.create_events_table(&t, &[]).await;
        ctx.floe
            .append(&t, stream(vec![events(0..10)]), &WriteOptions::default())
            .await
            .unwrap();
        let location = ctx
            .floe
            .load_table(&t)
            .await
            .unwrap()
            .metadata_location()
            .to_string();
        ctx.floe.drop_table(&t, false).await.unwrap();
        let addr = serve(ctx.floe.clone()).await;
        let register = format!("/v1/namespaces/{}/register", ctx.ns);

        let (status, body) = http(
            addr,
            "POST",
            &register,
            None,
            Some(&json!({"name": "again", "metadata-location": location})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["metadata-location"], json!(location));
        let again = ctx.table("again");
        assert_eq!(
            ids(&ctx.floe, &again, At::Current).await,
            (0..10).collect::<Vec<_>>()
        );

        // The name is taken now; overwrite is refused; a file outside the warehouse, or one that
        // is not table metadata, is bad input; nothing else was registered.
        let taken = http(
            addr,
            "POST",
            &register,
            None,
            Some(&json!({"name": "again", "metadata-location": location})),
        )
        .await;
        assert_eq!(error_of(&taken), (409, "AlreadyExistsException".to_string()));
        let overwrite = http(
            addr,
            "POST",
            &register,
            None,
            Some(&json!({"name": "other", "metadata-location": location, "overwrite": true})),
        )
        .await;
        assert_eq!(error_of(&overwrite), bad_request());
        let outside = http(
            addr,
            "POST",
            &register,
            None,
            Some(
                &json!({"name": "other", "metadata-location": "s3://elsewhere/t/metadata/v1.metadata.json"}),
            ),
        )
        .await;
        assert_eq!(error_of(&outside), bad_request());
        let manifest_list = ctx
            .floe
            .load_table(&again)
            .await
            .unwrap()
            .metadata()
            .current_snapshot()
            .unwrap()
            .manifest_list()
            .to_string();
        let not_metadata = http(
            addr,
            "POST",
            &register,
            None,
            Some(&json!({"name": "other", "metadata-location": manifest_list})),
        )
        .await;
        assert_eq!(error_of(&not_metadata), bad_request(), "{}", not_metadata.1);
        let other = ctx.table("other");
        assert!(ctx
            .floe
            .catalog()
            .metadata_location(&other)
            .await
            .unwrap()
            .is_none());
    }
);
