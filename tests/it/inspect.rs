//! The typed metadata views (`floe::table::inspect`): what they hold for a table with history, refs and
//! partitioned files, and that `floe sql`'s `"NS.TABLE$snapshots"` tables are the same views, column
//! for column.

use arrow::datatypes::SchemaRef;
use floe::table::inspect::{
    self, FileInfo, HistoryEntry, MetadataRow, MetadataTable, RefInfo, SnapshotInfo, TableSummary,
};
use floe::{At, WriteOptions};

use crate::both_backends;
use crate::support::*;

fn names(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

both_backends!(
    metadata_views_describe_the_table_as_sql_sees_it,
    |ctx: Ctx| async move {
        let t = ctx.table("views");
        ctx.create_events_table(&t, &["day(ts)"]).await;
        let mut snapshot_ids = Vec::new();
        for (ids, tag) in [(0..10, Some("v1")), (10..25, None)] {
            let commit = ctx
                .floe
                .append(&t, stream(vec![events(ids)]), &WriteOptions::default())
                .await
                .unwrap();
            snapshot_ids.push(commit.snapshot_id.unwrap());
            if let Some(tag) = tag {
                ctx.floe.create_tag(&t, tag, &At::Current).await.unwrap();
            }
        }
        let (first, second) = (snapshot_ids[0], snapshot_ids[1]);
        let table = ctx.floe.load_table(&t).await.unwrap();

        let snapshots = inspect::snapshots(&table).unwrap();
        assert_eq!(
            snapshots.iter().map(|s| s.snapshot_id).collect::<Vec<_>>(),
            [first, second]
        );
        assert_eq!(snapshots[0].parent_id, None);
        assert_eq!(snapshots[1].parent_id, Some(first));
        assert_eq!(snapshots[0].refs, ["v1"]);
        assert_eq!(snapshots[1].refs, ["main"]);
        assert_eq!(snapshots[1].operation, "append");
        assert_eq!(snapshots[1].summary["added-records"], "15");
        let committed_ms = table.metadata().snapshot_by_id(second).unwrap().timestamp_ms();
        assert_eq!(snapshots[1].committed_at.timestamp_millis(), committed_ms);

        let history = inspect::history(&table).unwrap();
        assert_eq!(
            history.iter().map(|h| h.snapshot_id).collect::<Vec<_>>(),
            [first, second]
        );
        let files = inspect::files(&table, &At::Current).await.unwrap();
        assert_eq!(files.iter().map(|f| f.record_count).sum::<u64>(), 25);
        assert!(
            files.iter().all(|f| f.partition.starts_with("ts_day=")),
            "{files:?}"
        );
        let at_v1 = inspect::files(&table, &At::Ref("v1".into())).await.unwrap();
        assert_eq!(at_v1.iter().map(|f| f.record_count).sum::<u64>(), 10);

        let summary = inspect::summary(&table, &At::Ref("v1".into())).await.unwrap();
        assert_eq!(summary.table, t.to_string());
        assert_eq!(summary.snapshot, Some(first));
        assert_eq!((summary.rows, summary.files.len()), (10, at_v1.len()));
        assert_eq!(summary.properties["owner"], "tests");
        assert_eq!(
            summary.refs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["main", "v1"]
        );
        let row = TableSummary::record_batch(&[summary]).unwrap();
        assert_eq!(
            names(&row.schema()),
            [
                "table",
                "location",
                "metadata_location",
                "snapshot",
                "files",
                "rows",
                "bytes"
            ]
        );

        // `floe sql`'s metadata tables are these views: the same columns, the same rows.
        for (kind, schema, rows) in [
            ("snapshots", SnapshotInfo::arrow_schema(), 2),
            ("refs", RefInfo::arrow_schema(), 2),
            ("files", FileInfo::arrow_schema(), files.len()),
            ("history", HistoryEntry::arrow_schema(), 2),
        ] {
            let view = MetadataTable::parse(kind)
                .unwrap()
                .record_batch(&table)
                .await
                .unwrap();
            assert_eq!(view.schema(), schema, "{kind}");
            assert_eq!(view.num_rows(), rows, "{kind}");
            let r = floe::query::sql(&ctx.floe, &format!(r#"SELECT * FROM "{t}${kind}""#))
                .await
                .unwrap();
            assert_eq!(names(&r.schema), names(&schema), "{kind}");
            assert_eq!(
                r.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
                rows,
                "{kind}"
            );
        }
        let r = floe::query::sql(
        &ctx.floe,
        &format!(r#"SELECT snapshot_id FROM "{t}$snapshots" WHERE refs LIKE '%"v1"%' AND committed_at <= now()"#),
    )
    .await
    .unwrap();
        assert_eq!(r.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    }
);
