//! Bad input: invalid names, a schema that does not match, an unreachable catalog or store, wrong
//! credentials. Each is a clear error, and the table is unchanged.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use floe::{At, DeleteOptions, ErrorKind, Floe, Namespace, TableDefinition, TableName, WriteOptions};

use crate::both_backends;
use crate::support::*;

#[test]
fn invalid_names_are_rejected_before_any_io() {
    for bad in ["", ".", "..", "a/b", "a\\b", "tab\tle", "new\nline", "nul\0"] {
        let err = Namespace::parse(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        let ns = Namespace::parse("ok").unwrap();
        let err = TableName::new(ns, bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        assert!(err.to_string().contains("invalid"), "{err}");
    }
}

both_backends!(schema_mismatch_leaves_table_unchanged, |ctx: Ctx| async move {
    let t = ctx.table("events");
    ctx.create_events_table(&t, &[]).await;
    let r = ctx
        .floe
        .append(&t, stream(vec![events(0..3)]), &WriteOptions::default())
        .await
        .unwrap();
    let before = r.table.metadata_location().to_string();

    let cases: Vec<(RecordBatch, &str)> = vec![
        // id is a string.
        (
            RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)])),
                vec![Arc::new(StringArray::from(vec!["x"]))],
            )
            .unwrap(),
            "\"id\" is Utf8",
        ),
        // an unknown column.
        (
            RecordBatch::try_new(
                Arc::new(Schema::new(vec![
                    Field::new("id", DataType::Int64, false),
                    Field::new("zzz", DataType::Int64, true),
                ])),
                vec![
                    Arc::new(Int64Array::from(vec![1])),
                    Arc::new(Int64Array::from(vec![1])),
                ],
            )
            .unwrap(),
            "\"zzz\" is not in the table",
        ),
        // the required id missing.
        (
            RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new("user_id", DataType::Utf8, true)])),
                vec![Arc::new(StringArray::from(vec!["u"]))],
            )
            .unwrap(),
            "required column \"id\" is missing",
        ),
        // nulls in the required id.
        (
            RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)])),
                vec![Arc::new(Int64Array::from(vec![Some(1), None]))],
            )
            .unwrap(),
            "required but has nulls",
        ),
    ];
    for (batch, expect) in cases {
        // A good batch first, then the bad one: nothing of the stream may land.
        let err = ctx
            .floe
            .append(&t, stream(vec![events(10..12), batch]), &WriteOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains(expect), "{err} should mention {expect}");
        assert!(err.to_string().contains("schema does not match"), "{err}");
    }
    let after = ctx.floe.load_table(&t).await.unwrap();
    assert_eq!(after.metadata_location(), before);
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, vec![0, 1, 2]);
    // Bad filters are refused up front.
    let err = ctx
        .floe
        .delete(
            &t,
            floe::RowFilter::sql("no_such_column = 1"),
            &DeleteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(ctx.floe.load_table(&t).await.unwrap().metadata_location(), before);
    // Missing tables and namespaces.
    assert_eq!(
        ctx.floe.load_table(&ctx.table("nope")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let t2 = TableName::parse("no_such_ns.t").unwrap();
    let err = ctx
        .floe
        .create_table(
            &t2,
            TableDefinition {
                schema: events_schema(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = ctx
        .floe
        .create_table(
            &t,
            TableDefinition {
                schema: events_schema(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
});

#[tokio::test]
async fn unreachable_catalog_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings_for(Backend::SqliteLocal, dir.path()).unwrap();
    s.catalog_url = "postgres://floe:hunter2secret@127.0.0.1:1/floe".into();
    let err = Floe::connect(s).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Catalog);
    let text = err.to_string();
    assert!(text.contains("cannot connect to catalog"), "{text}");
    assert!(!text.contains("hunter2secret"), "password leaked: {text}");
    let mut s = settings_for(Backend::SqliteLocal, dir.path()).unwrap();
    s.catalog_url = "mysql://x".into();
    assert_eq!(Floe::connect(s).await.unwrap_err().kind(), ErrorKind::Config);
}

#[tokio::test]
async fn unreachable_store_and_wrong_credentials_are_clear_errors() {
    let Some((s3, bucket)) = s3_settings() else {
        assert!(
            may_skip_servers(),
            "the S3 test server is not configured: run `bash tests/run.sh` or set FLOE_TEST_SKIP_SERVERS=1"
        );
        eprintln!("SKIPPED: S3 test server not configured and FLOE_TEST_SKIP_SERVERS=1");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let base = floe::Settings {
        catalog_url: format!("sqlite:{}", dir.path().join("c.db").display()),
        warehouse: format!("s3://{bucket}/bad-{}", uuid::Uuid::new_v4().simple()),
        s3: s3.clone(),
        ..floe::PartialSettings::default().finish()
    };
    // A working setup with one committed row.
    let (floe, _) = Floe::init(base.clone()).await.unwrap();
    let ns = Namespace::parse("bad").unwrap();
    floe.create_namespace(&ns).await.unwrap();
    let t = TableName::new(ns, "t").unwrap();
    floe.create_table(
        &t,
        TableDefinition {
            schema: events_schema(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    floe.append(&t, stream(vec![events(0..1)]), &WriteOptions::default())
        .await
        .unwrap();
    let location = floe.load_table(&t).await.unwrap().metadata_location().to_string();

    // Wrong secret: init refuses with a clear error and never prints the secret.
    let mut wrong = base.clone();
    wrong.s3.secret_access_key = Some(floe::config::Secret::new("definitely-wrong-secret-123"));
    let err = Floe::init(wrong.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert!(!err.to_string().contains("definitely-wrong-secret-123"));
    // A write with wrong credentials fails and leaves the table as it was.
    let bad = Floe::connect(wrong).await.unwrap();
    let err = bad
        .append(&t, stream(vec![events(1..2)]), &WriteOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Storage | ErrorKind::Data),
        "{err}"
    );
    assert!(!format!("{err:?}").contains("definitely-wrong-secret-123"));

    // Unreachable endpoint.
    let mut gone = base.clone();
    gone.s3.endpoint = Some("http://127.0.0.1:1".into());
    let err = Floe::init(gone.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    let gone = Floe::connect(gone).await.unwrap();
    assert!(gone
        .append(&t, stream(vec![events(1..2)]), &WriteOptions::default())
        .await
        .is_err());

    assert_eq!(floe.load_table(&t).await.unwrap().metadata_location(), location);
    assert_eq!(ids(&floe, &t, At::Current).await, vec![0]);
}

both_backends!(
    a_broken_manifest_is_never_carried_forward,
    |ctx: Ctx| async move {
        let t = ctx.table("carried");
        ctx.create_events_table(&t, &[]).await;
        for rows in [0..3, 3..6] {
            ctx.floe
                .append(&t, stream(vec![events(rows)]), &WriteOptions::default())
                .await
                .unwrap();
        }
        let table = ctx.floe.load_table(&t).await.unwrap();
        let before = table.metadata_location().to_string();
        let manifests = table
            .manifest_paths(table.current_snapshot().unwrap())
            .await
            .unwrap();
        // The oldest manifest (new ones come first), replaced by garbage of the same length.
        let victim = manifests.last().unwrap().clone();
        let len = ctx.floe.storage().size(&victim).await.unwrap() as usize;
        ctx.floe
            .storage()
            .write(&victim, vec![b'x'; len].into())
            .await
            .unwrap();
        // A fresh process appends (this one has already seen the manifest sound).
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("more.csv"),
            "id,user_id,ts,amount\n100,u9,2024-01-05T00:00:00Z,1.5\n",
        )
        .unwrap();
        let out = floe_cmd(dir.path(), Some(&ctx))
            .args(["append", &t.to_string(), "more.csv"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("not an Avro file") && stderr.contains(&victim),
            "{stderr}"
        );
        assert_eq!(
            ctx.floe.load_table(&t).await.unwrap().metadata_location(),
            before,
            "nothing committed"
        );
        // Nor does an overwrite or a delete commit on top of it: each names the broken manifest.
        let name = t.to_string();
        let t = name.as_str();
        let others: [&[&str]; 3] = [
            &["overwrite", t, "more.csv", "--where", "id >= 100"],
            &["delete", t, "--where", "id = 4"],
            &["delete", t, "--where", "id >= 1000"],
        ];
        for args in others {
            let out = floe_cmd(dir.path(), Some(&ctx)).args(args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?}: {stderr}");
            assert!(stderr.contains(&victim), "{args:?}: {stderr}");
        }
        assert_eq!(
            ctx.floe
                .load_table(&floe::TableName::parse(t).unwrap())
                .await
                .unwrap()
                .metadata_location(),
            before,
            "nothing committed"
        );
    }
);
