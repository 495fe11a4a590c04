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
pub(crate) async fn delete_files(ctx: &Ctx, t: &floe::TableName) -> BTreeMap<String, Option<String>> {
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

pub(crate) async fn data_paths(ctx: &Ctx, t: &floe::TableName) -> BTreeSet<String> {
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
            // `changes` reports the deleted rows and the delete files.
            let parent = At::Snapshot(snapshot.parent_snapshot_id().unwrap());
            let c = ctx.floe.changes(&t, &parent, &At::Current).await.unwrap();
            assert_eq!((c.added_rows, c.removed_rows, c.deleted_rows), (0, 0, 4), "{c:?}");
            assert_eq!(c.added_delete_files.len(), deletes.len(), "{c:?}");
            assert!(c.added_files.is_empty() && c.removed_files.is_empty(), "{c:?}");

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

/// `batch` with an `_op` column (a CDC feed's operation), and amounts negated where `negate`.
fn feed(ids: std::ops::Range<i64>, op: &str) -> arrow::array::RecordBatch {
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let base = events(ids);
    let mut fields: Vec<Field> = base
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("_op", DataType::Utf8, true));
    let mut columns: Vec<ArrayRef> = base.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec![op; base.num_rows()])));
    arrow::array::RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// `batch` with every amount multiplied by `factor`.
pub(crate) fn scaled(batch: arrow::array::RecordBatch, factor: f64) -> arrow::array::RecordBatch {
    use arrow::array::{ArrayRef, Float64Array};
    use std::sync::Arc;
    let i = batch.schema().index_of("amount").unwrap();
    let amounts = batch.column(i).as_any().downcast_ref::<Float64Array>().unwrap();
    let new: ArrayRef = Arc::new(Float64Array::from_iter(
        amounts.iter().map(|v| v.map(|v| v * factor)),
    ));
    let mut columns = batch.columns().to_vec();
    columns[i] = new;
    arrow::array::RecordBatch::try_new(batch.schema(), columns).unwrap()
}

/// The amount of each id, from floe.
pub(crate) async fn amounts(ctx: &Ctx, t: &floe::TableName) -> BTreeMap<i64, f64> {
    let batches = scan_columns(&ctx.floe, t, &["id", "amount"]).await;
    let mut out = BTreeMap::new();
    for b in batches {
        let ids = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        let am = b
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap();
        for i in 0..b.num_rows() {
            out.insert(ids.value(i), am.value(i));
        }
    }
    out
}

both_backends!(
    upsert_updates_inserts_and_deletes_by_key_in_every_row_mode,
    |ctx: Ctx| async move {
        for mode in [
            RowLevelMode::MergeOnRead,
            RowLevelMode::CopyOnWrite,
            RowLevelMode::Auto,
        ] {
            let t = ctx.table(&format!("up_{}", mode.as_str().replace('-', "_")));
            ctx.create_events_table(&t, &["day(ts)"]).await;
            ctx.floe
                .append(&t, stream(vec![events(0..40)]), &WriteOptions::default())
                .await
                .unwrap();
            let options = floe::UpsertOptions {
                key: vec!["id".into()],
                delete_where: Some("_op = 'd'".into()),
                rows: floe::RowLevelOptions {
                    row_mode: Some(mode),
                    ..Default::default()
                },
                ..Default::default()
            };
            // Updates of 5, 15, 25 (amount doubled), inserts of 100 and 101, a tombstone for 7, and a
            // tombstone for 200, which the table does not have.
            let source = vec![
                feed(5..6, "u"),
                feed(15..16, "u"),
                feed(25..26, "u"),
                feed(100..102, "i"),
                feed(7..8, "d"),
                feed(200..201, "d"),
            ]
            .into_iter()
            .map(|b| scaled(b, 2.0))
            .collect::<Vec<_>>();
            let r = ctx
                .floe
                .upsert(&t, stream(source.clone()), &options)
                .await
                .unwrap();
            assert_eq!(
                (r.rows.updated, r.rows.inserted, r.rows.deleted),
                (3, 2, 1),
                "{mode:?}: {:?}",
                r.rows
            );
            let got = amounts(&ctx, &t).await;
            let mut expected: BTreeMap<i64, f64> = (0..40).map(|i| (i, i as f64 * 1.5)).collect();
            for i in [5, 15, 25, 100, 101] {
                expected.insert(i, i as f64 * 3.0);
            }
            expected.remove(&7);
            assert_eq!(got, expected, "{mode:?}");
            let ids_now: Vec<i64> = expected.keys().copied().collect();
            every_reader_reads(&ctx, &t, &ids_now).await;
            match mode {
                RowLevelMode::MergeOnRead => assert!(!delete_files(&ctx, &t).await.is_empty()),
                RowLevelMode::CopyOnWrite => assert!(delete_files(&ctx, &t).await.is_empty()),
                RowLevelMode::Auto => {}
            }

            // The same source again, only where something changed: nothing does, nothing commits.
            let again = floe::UpsertOptions {
                when_matched: floe::WhenMatched::UpdateChanged,
                ..options.clone()
            };
            let r = ctx.floe.upsert(&t, stream(source), &again).await.unwrap();
            assert_eq!(r.snapshot_id, None, "{mode:?}: {:?}", r.rows);
            assert_eq!(
                (r.rows.updated, r.rows.inserted, r.rows.unchanged),
                (0, 0, 5),
                "{mode:?}"
            );
            assert_eq!(amounts(&ctx, &t).await, expected);
        }
    }
);

both_backends!(
    merge_runs_the_first_clause_that_holds_for_each_row,
    |ctx: Ctx| async move {
        let t = ctx.table("events");
        ctx.create_events_table(&t, &[]).await;
        ctx.floe
            .append(&t, stream(vec![events(0..40)]), &WriteOptions::default())
            .await
            .unwrap();
        // Source: 0..5 with negative amounts (deleted), 10..15 (amounts added), 50..52 (inserted).
        let source = vec![scaled(events(0..5), -1.0), events(10..15), events(50..52)];
        let r = ctx
            .floe
            .merge(&t, source)
            .on("t.id = s.id")
            .when_matched_delete(Some("s.amount < 0"))
            .when(floe::MergeClause::parse("matched then update set amount = t.amount + s.amount").unwrap())
            .when_not_matched_insert_all(None)
            .when_not_matched_by_source_delete(Some("t.id >= 30"))
            .options(floe::MergeOptions {
                row_mode: Some(RowLevelMode::MergeOnRead),
                ..Default::default()
            })
            .commit()
            .await
            .unwrap();
        assert_eq!(
            (r.rows.deleted, r.rows.updated, r.rows.inserted),
            (5 + 10, 5, 2),
            "{:?}",
            r.rows
        );
        let got = amounts(&ctx, &t).await;
        let mut expected: BTreeMap<i64, f64> = (5..30).map(|i| (i, i as f64 * 1.5)).collect();
        for i in 10..15 {
            expected.insert(i, i as f64 * 3.0);
        }
        for i in 50..52 {
            expected.insert(i, i as f64 * 1.5);
        }
        assert_eq!(got, expected);
        every_reader_reads(&ctx, &t, &expected.keys().copied().collect::<Vec<_>>()).await;
    }
);

both_backends!(
    bad_row_level_input_is_a_clear_error_that_commits_nothing,
    |ctx: Ctx| async move {
        let t = ctx.table("events");
        ctx.create_events_table(&t, &[]).await;
        ctx.floe
            .append(&t, stream(vec![events(0..10)]), &WriteOptions::default())
            .await
            .unwrap();
        let before = ctx
            .floe
            .load_table(&t)
            .await
            .unwrap()
            .metadata_location()
            .to_string();
        let upsert = |key: &str| floe::UpsertOptions {
            key: vec![key.into()],
            ..Default::default()
        };
        let check = |err: floe::Error, want: &str| {
            assert_eq!(err.kind(), floe::ErrorKind::InvalidInput, "{err}");
            assert!(err.to_string().contains(want), "{err} lacks {want:?}");
        };
        check(
            ctx.floe
                .upsert(&t, stream(vec![events(0..2)]), &upsert("nope"))
                .await
                .unwrap_err(),
            "not a column",
        );
        // No identifier fields and no key.
        check(
            ctx.floe
                .upsert(&t, stream(vec![events(0..2)]), &Default::default())
                .await
                .unwrap_err(),
            "needs key columns",
        );
        // A NULL key in the source.
        let mut nulls = events(0..2);
        {
            use arrow::array::StringArray;
            let mut cols = nulls.columns().to_vec();
            cols[1] = std::sync::Arc::new(StringArray::from(vec![None::<&str>, Some("x")]));
            nulls = arrow::array::RecordBatch::try_new(nulls.schema(), cols).unwrap();
        }
        check(
            ctx.floe
                .upsert(&t, stream(vec![nulls]), &upsert("user_id"))
                .await
                .unwrap_err(),
            "NULL",
        );
        // Duplicate keys, then the same deduplicated by the latest amount.
        let dupes = vec![events(3..4), scaled(events(3..4), 2.0)];
        check(
            ctx.floe
                .upsert(&t, stream(dupes.clone()), &upsert("id"))
                .await
                .unwrap_err(),
            "--dedupe latest:COL",
        );
        // A merge condition that does not parse, and an ON without an equality.
        let err = ctx
            .floe
            .merge(&t, vec![events(0..1)])
            .on("t.id = s.id")
            .when(floe::MergeClause::UpdateMatched {
                condition: Some("s.amount >>> 2".into()),
                set: floe::Assignments::All,
            })
            .commit()
            .await
            .unwrap_err();
        check(err, "invalid merge condition");
        let err = ctx
            .floe
            .merge(&t, vec![events(0..1)])
            .on("t.id < s.id")
            .when_matched_delete(None)
            .commit()
            .await
            .unwrap_err();
        check(err, "needs an equality");
        assert_eq!(
            ctx.floe.load_table(&t).await.unwrap().metadata_location(),
            before,
            "nothing committed"
        );
        assert_eq!(ids(&ctx.floe, &t, At::Current).await, (0..10).collect::<Vec<_>>());

        let latest = floe::UpsertOptions {
            dedupe: floe::Dedupe::Latest("amount".into()),
            ..upsert("id")
        };
        let r = ctx.floe.upsert(&t, stream(dupes), &latest).await.unwrap();
        assert_eq!(r.rows.updated, 1);
        assert_eq!(amounts(&ctx, &t).await[&3], 9.0);
    }
);

both_backends!(
    compaction_folds_deletes_and_expiry_and_orphan_removal_count_delete_files,
    |ctx: Ctx| async move {
        let t = ctx.table("events");
        ctx.create_events_table(&t, &[]).await;
        for range in [0..20, 20..40] {
            ctx.floe
                .append(&t, stream(vec![events(range)]), &WriteOptions::default())
                .await
                .unwrap();
        }
        let mor = delete_mode(RowLevelMode::MergeOnRead);
        ctx.floe
            .delete(&t, RowFilter::sql("id < 12"), &mor)
            .await
            .unwrap();
        ctx.floe
            .delete(&t, RowFilter::sql("id = 25"), &mor)
            .await
            .unwrap();
        assert_eq!(delete_files(&ctx, &t).await.len(), 2);
        let expected: Vec<i64> = (12..40).filter(|i| *i != 25).collect();

        // The first file is 60% deleted: compaction rewrites it (and its partition's other small
        // file) with the deletes applied, and drops both delete files.
        let report = ctx
            .floe
            .compact(&t, &floe::maintenance::CompactOptions::default())
            .await
            .unwrap();
        assert_eq!(report.files_with_deletes_folded, 1, "{report:?}");
        assert_eq!(report.files_rewritten, 2, "{report:?}");
        assert_eq!(report.delete_files_removed, 2, "{report:?}");
        assert!(delete_files(&ctx, &t).await.is_empty());
        assert_eq!(data_paths(&ctx, &t).await.len(), 1);
        every_reader_reads(&ctx, &t, &expected).await;

        // Expiry deletes the delete files only old snapshots referenced; orphan removal then
        // leaves exactly what the metadata references.
        let before = stored(&ctx, &t).await;
        assert!(before.iter().any(|p| p.ends_with("-deletes.parquet")));
        ctx.floe
            .expire_snapshots(
                &t,
                &floe::maintenance::ExpireOptions {
                    older_than_ms: Some(chrono::Utc::now().timestamp_millis() + 1000),
                    retain_last: Some(1),
                    dry_run: false,
                },
            )
            .await
            .unwrap();
        let after = stored(&ctx, &t).await;
        assert!(
            !after.iter().any(|p| p.ends_with("-deletes.parquet")),
            "{after:?}"
        );
        remove_orphans_now(&ctx, &t).await;
        assert_eq!(stored(&ctx, &t).await, referenced(&ctx, &t).await);
        every_reader_reads(&ctx, &t, &expected).await;
    }
);

both_backends!(
    every_engine_and_floe_sql_apply_the_position_deletes_of_their_inputs,
    |ctx: Ctx| async move {
        use floe::pipeline::{DataFusionEngine, DuckDbEngine, Engine, RunOptions, Stage};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let out = ctx.input_uri(dir.path(), "gen");
        let mut g = floe::generate::GenerateOptions::new(3000, 7);
        g.files = 2;
        g.dirty = floe::generate::DirtyRates::uniform(0.02);
        floe::generate::generate(ctx.floe.storage(), &out, &g, None)
            .await
            .unwrap();
        let ingest = RunOptions {
            stages: vec![Stage::Ingest],
            ..RunOptions::new(
                ctx.ns.clone(),
                Some(out.clone()),
                vec![Arc::new(DataFusionEngine::default())],
            )
        };
        floe::pipeline::run(&ctx.floe, &ingest).await.unwrap();
        let raw = ctx.table("raw_events");
        let before = scan_rows(&ctx.floe, &raw, &floe::ScanOptions::default()).await as i64;
        let r = ctx
            .floe
            .delete(
                &raw,
                RowFilter::sql("source_line % 3 = 0"),
                &delete_mode(RowLevelMode::MergeOnRead),
            )
            .await
            .unwrap();
        assert!(r.rows.delete_files_added > 0, "{:?}", r.rows);
        let live: i64 = before - r.rows.deleted as i64;

        // floe sql: DuckDB's own reader with an anti-join on local disk, floe's scan on S3.
        let q = format!(
            "SELECT count(*) AS n, sum(CAST(source_line % 3 = 0 AS INT)) AS gone FROM {}.raw_events",
            ctx.ns
        );
        let result = floe::query::sql(&ctx.floe, &q).await.unwrap();
        let b = &result.batches[0];
        let n = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Int64).unwrap();
        let n = n
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(n, live, "floe sql counts the live rows");
        assert!(
            b.column(1).is_null(0) || {
                let gone = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Int64).unwrap();
                gone.as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .unwrap()
                    .value(0)
                    == 0
            }
        );

        // The rest of the pipeline on both engines reads raw_events without the deleted rows, and
        // the engines agree.
        let engines: Vec<Arc<dyn Engine>> = vec![
            Arc::new(DuckDbEngine::default()),
            Arc::new(DataFusionEngine::default()),
        ];
        let rest = RunOptions {
            stages: vec![Stage::Cleanse, Stage::Enrich],
            ..RunOptions::new(ctx.ns.clone(), Some(out), engines)
        };
        let report = floe::pipeline::run(&ctx.floe, &rest).await.unwrap();
        assert!(
            report.stages.iter().all(|s| s.status == "succeeded"),
            "{report:?}"
        );
        for engine in ["duckdb", "datafusion"] {
            let lines = scan_ids(
                &ctx.floe,
                &ctx.table("clean_events"),
                &floe::ScanOptions {
                    at: Some(At::Ref(engine.into())),
                    columns: Some(vec!["source_line".into()]),
                    ..Default::default()
                },
            )
            .await;
            assert!(!lines.is_empty(), "{engine}");
            assert!(lines.iter().all(|l| l % 3 != 0), "{engine} read a deleted row");
        }
    }
);
