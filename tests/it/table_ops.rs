//! Table operations: create, append, overwrite, delete, schema evolution, drop, scans, lineage,
//! changes between snapshots.

use std::collections::BTreeMap;

use arrow::array::{Array, Int64Array, StringArray};
use floe::{
    At, DeleteOptions, Lineage, OverwriteOptions, RowFilter, ScanOptions, TableDefinition, WriteOptions,
};

use crate::both_backends;
use crate::support::*;

async fn create_events(ctx: &Ctx, name: &str, partition: &[&str]) -> floe::TableName {
    let t = ctx.table(name);
    ctx.create_events_table(&t, partition).await;
    t
}

both_backends!(append_and_scan_partitioned, |ctx: Ctx| async move {
    let t = create_events(&ctx, "events", &["day(ts)", "bucket(4, user_id)"]).await;
    // Roll after every batch-sized write.
    let opts = WriteOptions {
        target_file_size: 1,
        ..Default::default()
    };
    let r = ctx
        .floe
        .append(&t, stream(vec![events(0..30), events(30..50)]), &opts)
        .await
        .unwrap();
    let id = r.snapshot_id.unwrap();
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, (0..50).collect::<Vec<_>>());
    let s = summary(&r.table, id);
    assert_eq!(
        r.table
            .metadata()
            .snapshot_by_id(id)
            .unwrap()
            .summary()
            .operation
            .as_str(),
        "append"
    );
    assert_eq!(s["added-records"], "50");
    assert_eq!(s["total-records"], "50");
    assert_eq!(s["total-data-files"], s["added-data-files"]);
    // 5 days x up to 4 buckets: partitioned writes produce several files, each in one partition.
    let files = r.table.files(r.table.current_snapshot()).await.unwrap();
    assert!(
        files.len() >= 5,
        "expected one file per partition at least, got {}",
        files.len()
    );
    assert!(files.iter().all(|f| f.partition.contains("ts_day=")), "{files:?}");
    assert_eq!(files.iter().map(|f| f.record_count).sum::<u64>(), 50);
    // Column statistics are in the manifests.
    let data_files = r.table.live_data_files(r.table.current_snapshot()).await.unwrap();
    assert!(data_files
        .iter()
        .all(|f| !f.lower_bounds().is_empty() && !f.upper_bounds().is_empty()));
    assert!(data_files.iter().all(|f| !f.value_counts().is_empty()));

    // Projection and filter pushdown, exact.
    let opts = ScanOptions {
        columns: Some(vec!["id".into(), "user_id".into()]),
        filter: Some(RowFilter::sql("ts >= '2024-01-03T00:00:00Z' AND amount < 45")),
        ..Default::default()
    };
    let scan = ctx.floe.scan(&t, &opts).await.unwrap();
    assert_eq!(scan.schema.fields().len(), 2);
    let got = scan_ids(&ctx.floe, &t, &opts).await;
    assert_eq!(got, (20..30).collect::<Vec<_>>());
    // Limit.
    let opts = ScanOptions {
        limit: Some(7),
        ..Default::default()
    };
    let rows = scan_rows(&ctx.floe, &t, &opts).await;
    assert_eq!(rows, 7);
});

both_backends!(overwrite_and_delete_copy_on_write, |ctx: Ctx| async move {
    let t = create_events(&ctx, "events", &["day(ts)"]).await;
    let o = WriteOptions::default();
    ctx.floe
        .append(&t, stream(vec![events(0..40)]), &o)
        .await
        .unwrap();

    // Delete rows matching a filter that cuts through files: files are rewritten.
    let r = ctx
        .floe
        .delete(
            &t,
            RowFilter::sql("id % 10 = 3 OR id >= 35"),
            &DeleteOptions::from(o.clone()),
        )
        .await
        .unwrap();
    let snap = r.table.current_snapshot().unwrap().clone();
    assert_eq!(snap.summary().operation.as_str(), "overwrite");
    let expected: Vec<i64> = (0..35).filter(|i| i % 10 != 3).collect();
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected);
    let s = summary(&r.table, snap.snapshot_id());
    assert_eq!(s["total-records"], expected.len().to_string());
    assert_eq!(s["deleted-data-files"], "4");

    // Delete whole partitions only: no rewrite, operation "delete".
    let r = ctx
        .floe
        .delete(
            &t,
            RowFilter::sql("ts < '2024-01-02T00:00:00Z'"),
            &DeleteOptions::from(o.clone()),
        )
        .await
        .unwrap();
    let snap = r.table.current_snapshot().unwrap().clone();
    assert_eq!(snap.summary().operation.as_str(), "delete");
    assert!(!summary(&r.table, snap.snapshot_id()).contains_key("added-data-files"));
    let expected: Vec<i64> = (10..35).filter(|i| i % 10 != 3).collect();
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected);

    // A delete matching nothing commits nothing (as Iceberg Java) and changes no rows.
    let before = r.table.snapshots().len();
    let r = ctx
        .floe
        .delete(&t, RowFilter::sql("id > 1000"), &DeleteOptions::from(o.clone()))
        .await
        .unwrap();
    assert_eq!(r.table.snapshots().len(), before);
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected);

    // Overwrite the rows matching a filter with new rows.
    let r = ctx
        .floe
        .overwrite(
            &t,
            Some(RowFilter::sql("id >= 20")),
            stream(vec![events(100..103)]),
            &OverwriteOptions::from(o.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        r.table.current_snapshot().unwrap().summary().operation.as_str(),
        "overwrite"
    );
    let mut expected: Vec<i64> = (10..20).filter(|i| i % 10 != 3).collect();
    expected.extend(100..103);
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected);

    // Overwrite the whole table.
    let r = ctx
        .floe
        .overwrite(
            &t,
            None,
            stream(vec![events(500..505)]),
            &OverwriteOptions::from(o.clone()),
        )
        .await
        .unwrap();
    let s = summary(&r.table, r.snapshot_id.unwrap());
    assert_eq!(s["total-records"], "5");
    assert_eq!(s["added-records"], "5");
    assert_eq!(s["deleted-records"], expected.len().to_string());
    assert_eq!(
        ids(&ctx.floe, &t, At::Current).await,
        (500..505).collect::<Vec<_>>()
    );
    // Rows with a NULL in the filtered column are not deleted by a comparison on it.
    ctx.floe
        .append(&t, stream(vec![events(600..602)]), &o)
        .await
        .unwrap();
    ctx.floe
        .add_column(&t, "note", &arrow::datatypes::DataType::Utf8)
        .await
        .unwrap();
    ctx.floe
        .delete(&t, RowFilter::sql("note = 'x'"), &DeleteOptions::from(o.clone()))
        .await
        .unwrap();
    assert_eq!(ids(&ctx.floe, &t, At::Current).await.len(), 7);
});

both_backends!(schema_evolution_add_column, |ctx: Ctx| async move {
    let t = create_events(&ctx, "events", &[]).await;
    let o = WriteOptions::default();
    ctx.floe.append(&t, stream(vec![events(0..3)]), &o).await.unwrap();
    let table = ctx
        .floe
        .add_column(&t, "country", &arrow::datatypes::DataType::Utf8)
        .await
        .unwrap();
    assert_eq!(table.schema().as_struct().fields().len(), 5);
    assert!(table.metadata().current_schema_id() > 0);
    // New rows carry the column; old rows read it as null.
    let schema = table.arrow_schema().unwrap();
    let old = events(3..5);
    let mut cols = old.columns().to_vec();
    cols.push(std::sync::Arc::new(StringArray::from(vec!["FR", "DE"])));
    let plain = arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_metadata(Default::default()))
            .collect::<Vec<_>>(),
    );
    let batch = arrow::array::RecordBatch::try_new(std::sync::Arc::new(plain), cols).unwrap();
    ctx.floe.append(&t, stream(vec![batch]), &o).await.unwrap();
    let opts = ScanOptions {
        columns: Some(vec!["id".into(), "country".into()]),
        ..Default::default()
    };
    let batches = ctx.floe.scan(&t, &opts).await.unwrap().collect().await.unwrap();
    let mut pairs: Vec<(i64, Option<String>)> = Vec::new();
    for b in &batches {
        let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let c = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..b.num_rows() {
            pairs.push((id.value(i), c.is_valid(i).then(|| c.value(i).to_string())));
        }
    }
    pairs.sort();
    assert_eq!(
        pairs,
        vec![
            (0, None),
            (1, None),
            (2, None),
            (3, Some("FR".into())),
            (4, Some("DE".into()))
        ]
    );
    // Adding an existing column is refused.
    let err = ctx
        .floe
        .add_column(&t, "country", &arrow::datatypes::DataType::Utf8)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), floe::ErrorKind::AlreadyExists);
});

both_backends!(lineage_and_user_properties, |ctx: Ctx| async move {
    let t = create_events(&ctx, "events", &[]).await;
    let o = WriteOptions {
        lineage: Lineage {
            run_id: Some("run-42".into()),
            stage: Some("cleanse".into()),
            engine: Some("duckdb".into()),
            inputs: BTreeMap::from([("clickstream.raw_events".to_string(), 123)]),
        },
        properties: BTreeMap::from([("team".to_string(), "data-eng".to_string())]),
        ..Default::default()
    };
    let r = ctx.floe.append(&t, stream(vec![events(0..3)]), &o).await.unwrap();
    let s = summary(&r.table, r.snapshot_id.unwrap());
    assert_eq!(s["floe.run-id"], "run-42");
    assert_eq!(s["floe.stage"], "cleanse");
    assert_eq!(s["floe.engine"], "duckdb");
    assert_eq!(s["floe.input.clickstream.raw_events"], "123");
    assert_eq!(s["team"], "data-eng");
});

both_backends!(time_travel_and_changes, |ctx: Ctx| async move {
    let t = create_events(&ctx, "events", &[]).await;
    let o = WriteOptions::default();
    let s1 = ctx.floe.append(&t, stream(vec![events(0..5)]), &o).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let s2 = ctx.floe.append(&t, stream(vec![events(5..8)]), &o).await.unwrap();
    let s3 = ctx
        .floe
        .delete(&t, RowFilter::sql("id < 5"), &DeleteOptions::from(o.clone()))
        .await
        .unwrap();
    let id1 = s1.snapshot_id.unwrap();
    let id2 = s2.snapshot_id.unwrap();
    assert_eq!(
        ids(&ctx.floe, &t, At::Snapshot(id1)).await,
        (0..5).collect::<Vec<_>>()
    );
    assert_eq!(
        ids(&ctx.floe, &t, At::Snapshot(id2)).await,
        (0..8).collect::<Vec<_>>()
    );
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, (5..8).collect::<Vec<_>>());
    // By time: just after snapshot 1 was committed, before snapshot 2.
    let t1 = s1.table.metadata().snapshot_by_id(id1).unwrap().timestamp_ms();
    let t2 = s2.table.metadata().snapshot_by_id(id2).unwrap().timestamp_ms();
    assert!(t2 > t1);
    assert_eq!(
        ids(&ctx.floe, &t, At::Timestamp(t2 - 1)).await,
        (0..5).collect::<Vec<_>>()
    );
    let err = ctx
        .floe
        .scan(
            &t,
            &ScanOptions {
                at: Some(At::Timestamp(t1 - 60_000)),
                ..Default::default()
            },
        )
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), floe::ErrorKind::NotFound);
    // Changes.
    let c = ctx
        .floe
        .changes(&t, &At::Snapshot(id1), &At::Snapshot(id2))
        .await
        .unwrap();
    assert_eq!(
        (
            c.added_rows,
            c.removed_rows,
            c.added_files.len(),
            c.removed_files.len()
        ),
        (3, 0, 1, 0)
    );
    let c = ctx
        .floe
        .changes(&t, &At::Snapshot(id2), &At::Current)
        .await
        .unwrap();
    assert_eq!(c.to_snapshot, s3.snapshot_id);
    assert_eq!((c.added_rows, c.removed_rows), (0, 5));
    let err = ctx
        .floe
        .scan(
            &t,
            &ScanOptions {
                at: Some(At::Snapshot(1)),
                ..Default::default()
            },
        )
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), floe::ErrorKind::NotFound);
});

both_backends!(drop_and_purge, |ctx: Ctx| async move {
    let t = create_events(&ctx, "events", &[]).await;
    let r = ctx
        .floe
        .append(&t, stream(vec![events(0..5)]), &WriteOptions::default())
        .await
        .unwrap();
    let location = r.table.location().to_string();
    assert!(!ctx
        .floe
        .storage()
        .list(&format!("{location}/"))
        .await
        .unwrap()
        .is_empty());
    // Drop keeps the files.
    ctx.floe.drop_table(&t, false).await.unwrap();
    assert_eq!(
        ctx.floe.load_table(&t).await.unwrap_err().kind(),
        floe::ErrorKind::NotFound
    );
    assert!(!ctx
        .floe
        .storage()
        .list(&format!("{location}/"))
        .await
        .unwrap()
        .is_empty());
    // Purge deletes them.
    let t2 = create_events(&ctx, "events2", &[]).await;
    let r = ctx
        .floe
        .append(&t2, stream(vec![events(0..5)]), &WriteOptions::default())
        .await
        .unwrap();
    let location2 = r.table.location().to_string();
    ctx.floe.drop_table(&t2, true).await.unwrap();
    assert!(ctx
        .floe
        .storage()
        .list(&format!("{location2}/"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(ctx.floe.tables(&ctx.ns).await.unwrap().len(), 0);

    // Purge also deletes data written outside the table's location (write.data.path).
    let elsewhere = format!(
        "{}/elsewhere-{}",
        ctx.floe.warehouse().uri(),
        uuid::Uuid::new_v4().simple()
    );
    let t3 = ctx.table("events3");
    let def = TableDefinition {
        schema: events_schema(),
        properties: std::collections::BTreeMap::from([("write.data.path".to_string(), elsewhere.clone())]),
        ..Default::default()
    };
    ctx.floe.create_table(&t3, def).await.unwrap();
    ctx.floe
        .append(&t3, stream(vec![events(0..5)]), &WriteOptions::default())
        .await
        .unwrap();
    ctx.floe
        .delete(&t3, RowFilter::sql("id = 1"), &DeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(
        ctx.floe
            .storage()
            .list(&format!("{elsewhere}/"))
            .await
            .unwrap()
            .len(),
        2
    );
    ctx.floe.drop_table(&t3, true).await.unwrap();
    assert!(ctx
        .floe
        .storage()
        .list(&format!("{elsewhere}/"))
        .await
        .unwrap()
        .is_empty());
});

both_backends!(odd_names_round_trip, |ctx: Ctx| async move {
    let ns = floe::Namespace::parse("it's_100%;ns").unwrap();
    ctx.floe.create_namespace(&ns).await.unwrap();
    for name in [
        "it's",
        "100%",
        "snake_case_",
        "a;b",
        "\"quoted\"",
        "under_score%_",
    ] {
        let t = floe::TableName::new(ns.clone(), name).unwrap();
        ctx.create_events_table(&t, &[]).await;
        ctx.floe
            .append(&t, stream(vec![events(0..2)]), &WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(ids(&ctx.floe, &t, At::Current).await, vec![0, 1]);
    }
    let mut names: Vec<String> = ctx
        .floe
        .tables(&ns)
        .await
        .unwrap()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    names.sort();
    let mut expected = vec![
        "it's",
        "100%",
        "snake_case_",
        "a;b",
        "\"quoted\"",
        "under_score%_",
    ];
    expected.sort();
    assert_eq!(names, expected);
    // LIKE wildcards do not leak: `%` and `_` are literal.
    assert!(ctx.floe.namespaces().await.unwrap().contains(&ns));
});

both_backends!(partition_transforms, |ctx: Ctx| async move {
    let specs: [(&str, &[&str], &str); 4] = [
        ("by_user_month", &["user_id", "month(ts)"], "user_id=u"),
        // iceberg-rust renders year and hour partitions as ordinals since 1970 (2024 is 54).
        (
            "by_year",
            &["year(ts)", "identity(user_id)"],
            "ts_year=54/user_id=u",
        ),
        ("by_hour", &["hour(ts)"], "ts_hour="),
        (
            "by_trunc",
            &["truncate(1, user_id)", "bucket(3, id)"],
            "user_id_trunc_1=u",
        ),
    ];
    for (name, partition, expect) in specs {
        let t = create_events(&ctx, name, partition).await;
        let r = ctx
            .floe
            .append(&t, stream(vec![events(0..40)]), &WriteOptions::default())
            .await
            .unwrap();
        let files = r.table.files(r.table.current_snapshot()).await.unwrap();
        assert!(files.len() > 1, "{name}: {files:?}");
        assert!(
            files.iter().all(|f| f.partition.contains(expect)),
            "{name}: {files:?}"
        );
        assert_eq!(ids(&ctx.floe, &t, At::Current).await, (0..40).collect::<Vec<_>>());
        let opts = ScanOptions {
            filter: Some(RowFilter::sql("user_id = 'u3' AND id < 20")),
            ..Default::default()
        };
        let rows = scan_rows(&ctx.floe, &t, &opts).await;
        assert_eq!(rows, 4, "{name}");
    }
    let err = floe::PartitionField::parse("fortnight(ts)").unwrap_err();
    assert_eq!(err.kind(), floe::ErrorKind::InvalidInput);
    let t = ctx.table("bad_partition");
    let def = TableDefinition {
        schema: events_schema(),
        partition: vec![floe::PartitionField::parse("day(no_such_column)").unwrap()],
        ..Default::default()
    };
    assert_eq!(
        ctx.floe.create_table(&t, def).await.unwrap_err().kind(),
        floe::ErrorKind::InvalidInput
    );
});

#[tokio::test]
async fn init_creates_a_missing_bucket() {
    let Some((s3, _)) = s3_settings() else {
        assert!(
            may_skip_servers(),
            "the S3 test server is not configured: run `bash tests/run.sh` or set FLOE_TEST_SKIP_SERVERS=1"
        );
        eprintln!("SKIPPED: S3 test server not configured and FLOE_TEST_SKIP_SERVERS=1");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bucket = format!("floe-new-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let settings = floe::Settings {
        catalog_url: format!("sqlite:{}", dir.path().join("c.db").display()),
        warehouse: format!("s3://{bucket}/warehouse"),
        s3,
        ..floe::PartialSettings::default().finish()
    };
    let (floe, report) = floe::Floe::init(settings.clone()).await.unwrap();
    assert!(report.bucket_created);
    let (_, again) = floe::Floe::init(settings).await.unwrap();
    assert!(!again.bucket_created);
    // The new bucket works as a warehouse.
    let ns = floe::Namespace::parse("nb").unwrap();
    floe.create_namespace(&ns).await.unwrap();
    let t = floe::TableName::new(ns, "t").unwrap();
    floe.create_table(
        &t,
        TableDefinition {
            schema: events_schema(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    floe.append(&t, stream(vec![events(0..3)]), &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(ids(&floe, &t, At::Current).await, vec![0, 1, 2]);
}

both_backends!(
    data_files_follow_the_table_codec_and_drop_dictionaries_that_do_not_pay,
    |ctx: Ctx| async move {
        use std::sync::Arc;

        use arrow::datatypes::{DataType, Field, Schema};
        use parquet::basic::Compression;
        use parquet::file::reader::FileReader;
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, true),
        ]);
        let t = ctx.table("encoded");
        let mut properties = BTreeMap::new();
        properties.insert("write.parquet.compression-codec".to_string(), "zstd".to_string());
        properties.insert("write.parquet.compression-level".to_string(), "3".to_string());
        ctx.floe
            .create_table(
                &t,
                TableDefinition {
                    schema: schema.clone(),
                    properties,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let n = 20_000;
        let batch = arrow::array::RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("event-{i:08}")),
                )),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| ["view", "click"][i % 2]),
                )),
            ],
        )
        .unwrap();
        let r = ctx
            .floe
            .append(&t, stream(vec![batch]), &WriteOptions::default())
            .await
            .unwrap();
        let files = r.table.files(r.table.current_snapshot()).await.unwrap();
        assert_eq!(files.len(), 1);
        let bytes = ctx.floe.storage().read(&files[0].path).await.unwrap();
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(bytes).unwrap();
        for rg in reader.metadata().row_groups() {
            let id = rg.column(0);
            let kind = rg.column(1);
            assert!(
                matches!(id.compression(), Compression::ZSTD(_)),
                "{:?}",
                id.compression()
            );
            assert!(matches!(kind.compression(), Compression::ZSTD(_)));
            // Every id distinct: no dictionary. Two kinds: dictionary-encoded.
            assert!(id.dictionary_page_offset().is_none(), "id has a dictionary page");
            assert!(
                kind.dictionary_page_offset().is_some(),
                "kind has no dictionary page"
            );
        }
        assert_eq!(
            scan_rows(&ctx.floe, &t, &ScanOptions::default()).await,
            n,
            "every row reads back"
        );
        // A codec no Parquet writer knows is a clear error that commits nothing.
        let bad = ctx.table("badcodec");
        let mut properties = BTreeMap::new();
        properties.insert("write.parquet.compression-codec".to_string(), "lzo".to_string());
        ctx.floe
            .create_table(
                &bad,
                TableDefinition {
                    schema: Schema::new(vec![Field::new("id", DataType::Utf8, false)]),
                    properties,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let batch = arrow::array::RecordBatch::try_from_iter([(
            "id",
            Arc::new(StringArray::from(vec!["a"])) as arrow::array::ArrayRef,
        )])
        .unwrap();
        let err = ctx
            .floe
            .append(&bad, stream(vec![batch]), &WriteOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), floe::ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("lzo"), "{err}");
        let bad_table = ctx.floe.load_table(&bad).await.unwrap();
        assert!(bad_table.snapshots().is_empty());
    }
);
