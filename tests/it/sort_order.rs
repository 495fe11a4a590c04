//! Sort orders through floe (`Floe::update_sort_order`, `floe sort-order set|unset`): an append of
//! several files is sorted across them (the Parquet rows in order, the files' bounds on the first
//! sort column disjoint), a filtered scan reads only the files whose bounds match, PyIceberg reads
//! the order and the files' order ids, a bad column commits nothing, and `unset` writes as before.

use arrow::array::{Int64Array, RecordBatch, UInt32Array};
use floe::{ErrorKind, RowFilter, ScanOptions, SortOrderUpdate, TableName, WriteOptions};
use futures::StreamExt;
use iceberg::spec::DataFile;
use serde_json::json;

use crate::both_backends;
use crate::interop::pyiceberg_read;
use crate::support::*;

/// Rows big enough for several files: ids `0..n` in a scrambled order, in batches of 10,000.
fn scrambled_events(n: i64) -> Vec<RecordBatch> {
    let all = events(0..n);
    let order: Vec<u32> = (0..n).map(|i| ((i * 7919) % n) as u32).collect();
    order
        .chunks(10_000)
        .map(|chunk| {
            let indices = UInt32Array::from(chunk.to_vec());
            let columns = all
                .columns()
                .iter()
                .map(|c| arrow::compute::take(c, &indices, None).unwrap())
                .collect();
            RecordBatch::try_new(all.schema(), columns).unwrap()
        })
        .collect()
}

/// Every write rolls to a new file after each batch it writes.
fn small_files() -> WriteOptions {
    WriteOptions {
        target_file_size: 1,
        ..Default::default()
    }
}

/// How many rows and files a scan with `filter` reads.
async fn scan_counting_files(ctx: &Ctx, t: &TableName, filter: Option<&str>) -> (usize, usize) {
    let options = ScanOptions {
        filter: filter.map(RowFilter::sql),
        ..Default::default()
    };
    let mut scan = ctx.floe.scan(t, &options).await.unwrap();
    let mut rows = 0;
    while let Some(batch) = scan.batches.next().await {
        rows += batch.unwrap().num_rows();
    }
    (rows, scan.files_read())
}

both_backends!(
    an_append_to_a_sorted_table_is_sorted_across_its_files_and_a_filter_reads_only_matching_files,
    |ctx: Ctx| async move {
        let t = ctx.table("sorted");
        ctx.create_events_table(&t, &[]).await;
        let table = ctx.floe.update_sort_order(&t).desc("id").commit().await.unwrap();
        let order = table.metadata().default_sort_order();
        assert_eq!(order.order_id, 1);
        assert_eq!(
            floe::table::sort_order::describe(order, table.schema()),
            "id desc nulls last"
        );
        assert!(
            table.current_snapshot().is_none(),
            "a sort order is metadata: no snapshot"
        );

        let n = 100_000;
        ctx.floe
            .append(&t, stream(scrambled_events(n)), &small_files())
            .await
            .unwrap();
        let files = data_files(&ctx, &t).await;
        assert!(files.len() >= 3, "{} files: the write should roll", files.len());
        assert!(files.iter().all(|f| f.sort_order_id() == Some(1)));

        // Each file's rows are in order, and the files follow each other without overlapping.
        let id = table.schema().field_by_name("id").unwrap().id;
        let ranges = disjoint_bounds(&files, id, true);
        let mut all = Vec::new();
        for (lower, upper) in &ranges {
            let file = files.iter().find(|f| bounds(f, id) == (*lower, *upper)).unwrap();
            let ids = parquet_column(&ctx, file.file_path(), "id").await;
            assert_eq!(ids.first(), Some(upper), "{}", file.file_path());
            assert_eq!(ids.last(), Some(lower), "{}", file.file_path());
            all.extend(ids);
        }
        assert_eq!(
            all,
            (0..n).rev().collect::<Vec<_>>(),
            "every row, in descending order"
        );

        // A filter on the sort column reads only the files whose bounds can match.
        let (rows, read) = scan_counting_files(&ctx, &t, None).await;
        assert_eq!((rows, read), (n as usize, files.len()));
        let cut = n - 1_000;
        let matching = ranges.iter().filter(|(_, upper)| *upper >= cut).count();
        let (rows, read) = scan_counting_files(&ctx, &t, Some(&format!("id >= {cut}"))).await;
        assert_eq!(rows, 1_000);
        assert_eq!(read, matching, "files read for id >= {cut} of {ranges:?}");
        assert!(read < files.len(), "the filter pruned no file");

        // PyIceberg reads the order and each file's order id.
        if let Some(py) = pyiceberg_read(&ctx, t.name()) {
            assert_eq!(
                py["sort_order"],
                json!({"order_id": 1, "fields": [
                    {"column": "id", "transform": "identity", "direction": "desc", "null_order": "nulls-last"}
                ]})
            );
            assert_eq!(py["file_sort_order_ids"], json!(vec![1; files.len()]));
            assert_eq!(py["rows"].as_array().unwrap().len(), n as usize);
        }
    }
);

both_backends!(
    sort_order_set_and_unset_through_the_cli_and_a_bad_column_commits_nothing,
    |ctx: Ctx| async move {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let t = ctx.table("cli_sorted");
        ctx.create_events_table(&t, &[]).await;
        let name = t.to_string();
        let floe = |args: &[&str]| floe_cmd(d, Some(&ctx)).args(args).output().unwrap();
        let ok = |args: &[&str]| {
            let out = floe(args);
            assert!(
                out.status.success(),
                "floe {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };

        let set = ok(&["sort-order", "set", &name, "ts desc nulls last, id"]);
        assert_eq!(
            set.trim(),
            format!("committed sort order 1 of {name}: ts desc nulls last, id asc nulls first")
        );
        let show = ok(&["show", &name]);
        assert!(
            show.contains("sort order: ts desc nulls last, id asc nulls first"),
            "{show}"
        );

        // A column that does not exist: one line, and the table's metadata is as it was.
        let before = ctx
            .floe
            .load_table(&t)
            .await
            .unwrap()
            .metadata_location()
            .to_string();
        let out = floe(&["sort-order", "set", &name, "ts desc, nope"]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("cannot sort by \"nope\": the table has no such column"),
            "{stderr}"
        );
        for bad in ["ts sideways", "bucket(16, id", ""] {
            let out = floe(&["sort-order", "set", &name, bad]);
            assert!(!out.status.success(), "{bad:?} was accepted");
        }
        let err = ctx
            .floe
            .update_sort_order(&t)
            .asc("nope")
            .commit()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let after = ctx.floe.load_table(&t).await.unwrap();
        assert_eq!(after.metadata_location(), before, "a refused order committed");
        assert_eq!(after.metadata().default_sort_order_id(), 1);

        // The CLI's order sorts a write across its files by ts, descending.
        ctx.floe
            .append(&t, stream(scrambled_events(50_000)), &small_files())
            .await
            .unwrap();
        let files = data_files(&ctx, &t).await;
        assert!(files.len() >= 2, "{} files", files.len());
        assert_sorted_files(&ctx, &t, &files, "ts", true).await;

        // Unset: order 0, and a write keeps the order its rows come in.
        let unset = ok(&["sort-order", "unset", &name]);
        assert_eq!(
            unset.trim(),
            format!("committed sort order 0 of {name}: unsorted")
        );
        assert!(ok(&["show", &name]).contains("sort order: unsorted"));
        let before: Vec<String> = files.iter().map(|f| f.file_path().to_string()).collect();
        let batch = scrambled_events(20).remove(0);
        let input: Vec<i64> = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec();
        assert_ne!(input, (0..20).collect::<Vec<_>>(), "the input is not in order");
        ctx.floe
            .append(&t, stream(vec![batch]), &WriteOptions::default())
            .await
            .unwrap();
        let new: Vec<DataFile> = data_files(&ctx, &t)
            .await
            .into_iter()
            .filter(|f| !before.contains(&f.file_path().to_string()))
            .collect();
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].sort_order_id(), Some(0));
        assert_eq!(parquet_column(&ctx, new[0].file_path(), "id").await, input);
    }
);

both_backends!(
    a_sort_order_binds_by_name_when_it_commits_after_a_concurrent_schema_change,
    |ctx: Ctx| async move {
        let t = ctx.table("sorted_race");
        ctx.create_events_table(&t, &[]).await;

        // Planned, then other columns move and get renamed: the order still lands, on `amount`.
        let mut tx = ctx.floe.transaction();
        tx.update_sort_order(&t, SortOrderUpdate::new().desc("amount").asc("id"))
            .await
            .unwrap();
        ctx.floe
            .update_schema(&t)
            .move_first("amount")
            .rename_column("user_id", "who")
            .commit()
            .await
            .unwrap();
        let landed = tx.commit().await.unwrap().remove(0).table;
        assert_eq!(
            floe::table::sort_order::describe(landed.metadata().default_sort_order(), landed.schema()),
            "amount desc nulls last, id asc nulls first"
        );

        // Planned on a column that a concurrent change drops: a conflict, and nothing lands.
        let mut tx = ctx.floe.transaction();
        tx.update_sort_order(&t, SortOrderUpdate::new().asc("who"))
            .await
            .unwrap();
        ctx.floe
            .update_schema(&t)
            .drop_column("who")
            .commit()
            .await
            .unwrap();
        let before = ctx.floe.load_table(&t).await.unwrap();
        let err = tx.commit().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(err.to_string().contains("cannot sort by \"who\""), "{err}");
        let after = ctx.floe.load_table(&t).await.unwrap();
        assert_eq!(after.metadata_location(), before.metadata_location());
        assert_eq!(
            after.metadata().default_sort_order_id(),
            landed.metadata().default_sort_order_id()
        );
    }
);

both_backends!(
    copy_on_write_and_compaction_rewrite_a_sorted_table_sorted,
    |ctx: Ctx| async move {
        let t = ctx.table("sorted_rewrites");
        ctx.create_events_table(&t, &[]).await;
        ctx.floe.update_sort_order(&t).asc("id").commit().await.unwrap();
        // Three appends whose files each span every id: their ranges overlap.
        let n = 3_000i64;
        let rows = scrambled_events(n).remove(0);
        for k in 0..3 {
            let ids = rows.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let keep: arrow::array::BooleanArray = ids.iter().map(|i| Some(i.unwrap() % 3 == k)).collect();
            let part = arrow::compute::filter_record_batch(&rows, &keep).unwrap();
            ctx.floe
                .append(&t, stream(vec![part]), &WriteOptions::default())
                .await
                .unwrap();
        }
        assert_eq!(data_files(&ctx, &t).await.len(), 3);

        // A copy-on-write delete rewrites the three files' other rows in one sorted write.
        let options = floe::DeleteOptions {
            row_mode: Some(floe::RowLevelMode::CopyOnWrite),
            ..Default::default()
        };
        ctx.floe
            .delete(&t, RowFilter::sql("id >= 100 AND id < 200"), &options)
            .await
            .unwrap();
        let expected: Vec<i64> = (0..n).filter(|i| !(100..200).contains(i)).collect();
        let files = data_files(&ctx, &t).await;
        assert!(files.iter().all(|f| f.sort_order_id() == Some(1)));
        let mut all = Vec::new();
        for f in &files {
            all.extend(parquet_column(&ctx, f.file_path(), "id").await);
        }
        assert_eq!(
            all, expected,
            "the rewritten rows are in order across the rewrite"
        );

        // Compaction of a sorted table's files writes their rows sorted.
        ctx.floe
            .append(&t, stream(vec![events(5_000..5_010)]), &WriteOptions::default())
            .await
            .unwrap();
        ctx.floe
            .append(&t, stream(vec![events(4_000..4_010)]), &WriteOptions::default())
            .await
            .unwrap();
        let report = ctx
            .floe
            .compact(
                &t,
                &floe::maintenance::CompactOptions {
                    min_input_files: 2,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(report.snapshot_id.is_some(), "{report:?}");
        let files = data_files(&ctx, &t).await;
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].sort_order_id(), Some(1));
        let expected: Vec<i64> = expected
            .into_iter()
            .chain(4_000..4_010)
            .chain(5_000..5_010)
            .collect();
        assert_eq!(parquet_column(&ctx, files[0].file_path(), "id").await, expected);
    }
);
