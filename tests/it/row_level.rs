//! Row-level changes: merge-on-read deletes write one position delete file per data file, in the
//! form PyIceberg, DuckDB's iceberg extension and floe all read; later deletes replace it; removing a
//! data file removes its deletes; `auto` rewrites a file once enough of it is deleted.

use std::collections::{BTreeMap, BTreeSet};

use floe::table::deletes::RowLevelMode;
use floe::{At, DeleteOptions, RowFilter, WriteOptions};
use iceberg::spec::DataContentType;
use serde_json::Value;

use crate::both_backends;
use crate::interop::{duckdb_read, floe_rows, pyiceberg_read};
use crate::support::*;

fn delete_mode(mode: RowLevelMode) -> DeleteOptions {
    DeleteOptions {
        row_mode: Some(mode),
        ..Default::default()
    }
}

/// The live delete files of the table's current snapshot: path → the data file it names.
async fn delete_files(ctx: &Ctx, t: &floe::TableName) -> BTreeMap<String, Option<String>> {
    let table = ctx.floe.load_table(t).await.unwrap();
    table
        .live_delete_files(table.current_snapshot())
        .await
        .unwrap()
        .into_iter()
        .map(|f| {
            assert_eq!(f.content_type(), DataContentType::PositionDeletes);
            (f.file_path().to_string(), f.referenced_data_file())
        })
        .collect()
}

async fn data_paths(ctx: &Ctx, t: &floe::TableName) -> BTreeSet<String> {
    let table = ctx.floe.load_table(t).await.unwrap();
    table
        .live_data_files(table.current_snapshot())
        .await
        .unwrap()
        .iter()
        .map(|f| f.file_path().to_string())
        .collect()
}

/// floe, PyIceberg and DuckDB read the same rows, and they are `expected` ids.
async fn every_reader_reads(ctx: &Ctx, t: &floe::TableName, expected: &[i64]) {
    assert_eq!(ids(&ctx.floe, t, At::Current).await, expected);
    let ours = floe_rows(ctx, t, At::Current).await;
    if let Some(theirs) = pyiceberg_read(ctx, t.name()) {
        assert_eq!(theirs["rows"].as_array().unwrap(), &ours, "PyIceberg");
    }
    if let Some(theirs) = duckdb_read(ctx, t.name()).await {
        let rows: Vec<Value> = theirs["rows"].as_array().unwrap().clone();
        let ids_read: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        let mut sorted = ids_read.clone();
        sorted.sort();
        assert_eq!(sorted, expected, "DuckDB");
    }
}

both_backends!(
    merge_on_read_deletes_write_one_delete_file_per_data_file_that_every_reader_applies,
    |ctx: Ctx| async move {
        for partition in [&[][..], &["day(ts)"][..]] {
            let t = ctx.table(if partition.is_empty() { "flat" } else { "daily" });
            ctx.create_events_table(&t, partition).await;
            ctx.floe
                .append(&t, stream(vec![events(0..40)]), &WriteOptions::default())
                .await
                .unwrap();
            let files_before = data_paths(&ctx, &t).await;

            let r = ctx
                .floe
                .delete(
                    &t,
                    RowFilter::sql("id % 10 = 3"),
                    &delete_mode(RowLevelMode::MergeOnRead),
                )
                .await
                .unwrap();
            let snapshot = r.table.current_snapshot().unwrap();
            assert_eq!(snapshot.summary().operation.as_str(), "delete");
            assert_eq!(data_paths(&ctx, &t).await, files_before, "no data file rewritten");
            let deletes = delete_files(&ctx, &t).await;
            assert_eq!(
                deletes.len(),
                files_before.len(),
                "one delete file per data file hit"
            );
            for named in deletes.values() {
                assert!(files_before.contains(named.as_ref().unwrap()));
            }
            let mut expected: Vec<i64> = (0..40).filter(|i| i % 10 != 3).collect();
            every_reader_reads(&ctx, &t, &expected).await;

            // A second delete on the same files replaces their delete files.
            ctx.floe
                .delete(
                    &t,
                    RowFilter::sql("id % 10 = 5"),
                    &delete_mode(RowLevelMode::MergeOnRead),
                )
                .await
                .unwrap();
            let second = delete_files(&ctx, &t).await;
            assert_eq!(second.len(), deletes.len(), "still one delete file per data file");
            assert!(
                second.keys().all(|k| !deletes.contains_key(k)),
                "the old ones were replaced"
            );
            expected.retain(|i| i % 10 != 5);
            every_reader_reads(&ctx, &t, &expected).await;

            // Copy-on-write drops the rewritten files' deletes with them: none dangles.
            ctx.floe
                .delete(
                    &t,
                    RowFilter::sql("id < 12"),
                    &delete_mode(RowLevelMode::CopyOnWrite),
                )
                .await
                .unwrap();
            let live = data_paths(&ctx, &t).await;
            for named in delete_files(&ctx, &t).await.values() {
                assert!(
                    live.contains(named.as_ref().unwrap()),
                    "a delete file names a removed file"
                );
            }
            expected.retain(|i| *i >= 12);
            every_reader_reads(&ctx, &t, &expected).await;
        }
    }
);

both_backends!(
    auto_rewrites_a_file_once_its_deleted_fraction_reaches_the_threshold,
    |ctx: Ctx| async move {
        let t = ctx.table("events");
        ctx.create_events_table(&t, &[]).await;
        ctx.floe
            .append(&t, stream(vec![events(0..100)]), &WriteOptions::default())
            .await
            .unwrap();
        let auto = DeleteOptions {
            row_mode: Some(RowLevelMode::Auto),
            delete_ratio_threshold: Some(0.25),
            ..Default::default()
        };
        // 10% deleted: a delete file.
        ctx.floe
            .delete(&t, RowFilter::sql("id < 10"), &auto)
            .await
            .unwrap();
        assert_eq!(delete_files(&ctx, &t).await.len(), 1);
        let original = data_paths(&ctx, &t).await;
        // 10% + 20% = 30% >= 25%: the file is rewritten, and its delete file goes with it.
        ctx.floe
            .delete(&t, RowFilter::sql("id < 30"), &auto)
            .await
            .unwrap();
        assert!(delete_files(&ctx, &t).await.is_empty());
        assert!(data_paths(&ctx, &t).await.is_disjoint(&original));
        every_reader_reads(&ctx, &t, &(30..100).collect::<Vec<_>>()).await;
        // Every live row deleted: the file is dropped, in any mode.
        ctx.floe
            .delete(
                &t,
                RowFilter::sql("id >= 0"),
                &delete_mode(RowLevelMode::MergeOnRead),
            )
            .await
            .unwrap();
        assert!(data_paths(&ctx, &t).await.is_empty());
        assert!(delete_files(&ctx, &t).await.is_empty());
        every_reader_reads(&ctx, &t, &[]).await;
    }
);
