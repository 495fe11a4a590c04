//! Partition-spec evolution through floe (`Floe::update_spec`, `floe partition ...`,
//! `floe compact --rewrite-spec`): a table with files of three specs read, filtered, deleted from,
//! compacted and diffed by floe, and read by PyIceberg and DuckDB's iceberg extension; spec changes
//! racing appends and each other; every refused change a one-line error that commits nothing.

use std::collections::{BTreeMap, BTreeSet};

use floe::diff::{diff, DiffOptions, DiffSide};
use floe::maintenance::CompactOptions;
use floe::{At, DeleteOptions, ErrorKind, RowFilter, ScanOptions, TableName, WriteOptions};
use iceberg::spec::Transform;
use serde_json::{json, Value};

use crate::both_backends;
use crate::interop::{by_id, floe_rows, other_readers, pyiceberg_layout};
use crate::support::*;

/// floe, PyIceberg and DuckDB read the same rows of `t`: the rows.
async fn readers_agree(ctx: &Ctx, t: &TableName, step: &str) -> Vec<Value> {
    let ours = by_id(floe_rows(ctx, t, At::Current).await);
    for (reader, theirs) in other_readers(ctx, t).await {
        assert_eq!(theirs, ours, "after {step}: {reader} reads other rows than floe");
    }
    ours
}

/// Each live data file's partition spec id, as floe's manifests record it.
async fn spec_ids(ctx: &Ctx, t: &TableName) -> BTreeMap<String, i32> {
    let table = ctx.floe.load_table(t).await.unwrap();
    let snapshot = table.metadata().current_snapshot().cloned();
    table
        .files(snapshot.as_ref())
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.path, f.spec_id))
        .collect()
}

/// PyIceberg agrees with floe on every file's spec, and on the specs themselves.
fn pyiceberg_sees_specs(ctx: &Ctx, t: &TableName, ours: &BTreeMap<String, i32>, specs: &Value) {
    if let Some(layout) = pyiceberg_layout(ctx, t.name(), None) {
        let theirs: BTreeMap<String, i32> = layout["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f[0].as_str().unwrap().to_string(), f[1].as_i64().unwrap() as i32))
            .collect();
        assert_eq!(&theirs, ours, "PyIceberg's files' specs");
        assert_eq!(&layout["specs"], specs, "PyIceberg's partition specs");
    }
}

async fn ids_where(ctx: &Ctx, t: &TableName, predicate: &str) -> Vec<i64> {
    let options = ScanOptions {
        filter: Some(RowFilter::sql(predicate)),
        ..Default::default()
    };
    let mut ids = scan_ids(&ctx.floe, t, &options).await;
    ids.sort();
    ids
}

both_backends!(
    a_table_of_three_partition_specs_reads_filters_deletes_and_compacts,
    |ctx: Ctx| async move {
        let t = ctx.table("respec");
        ctx.create_events_table(&t, &["day(ts)"]).await;
        let o = WriteOptions::default();
        // Spec 0: by day. 4 days.
        ctx.floe
            .append(&t, stream(vec![events(0..40)]), &o)
            .await
            .unwrap();
        // Spec 1: by day and bucket(4, id).
        let table = ctx
            .floe
            .update_spec(&t)
            .add_term("bucket(4, id)", None)
            .unwrap()
            .commit()
            .await
            .unwrap();
        assert_eq!(table.metadata().default_partition_spec_id(), 1);
        ctx.floe
            .append(&t, stream(vec![events(40..80)]), &o)
            .await
            .unwrap();
        // Spec 2: by month and the renamed bucket; the day is dropped.
        let table = ctx
            .floe
            .update_spec(&t)
            .remove_field("ts_day")
            .add_field("ts", Transform::Month)
            .rename_field("id_bucket_4", "id_b")
            .commit()
            .await
            .unwrap();
        assert_eq!(table.metadata().default_partition_spec_id(), 2);
        ctx.floe
            .append(&t, stream(vec![events(80..120)]), &o)
            .await
            .unwrap();

        // Every file keeps its spec; field ids: the bucket keeps 1001 across the rename.
        let specs = json!({
            "0": [["ts_day", "day", 3, 1000]],
            "1": [["ts_day", "day", 3, 1000], ["id_bucket_4", "bucket[4]", 1, 1001]],
            "2": [["id_b", "bucket[4]", 1, 1001], ["ts_month", "month", 3, 1002]],
        });
        let files = spec_ids(&ctx, &t).await;
        let used: BTreeSet<i32> = files.values().copied().collect();
        assert_eq!(used, BTreeSet::from([0, 1, 2]), "{files:?}");
        pyiceberg_sees_specs(&ctx, &t, &files, &specs);
        let rows = readers_agree(&ctx, &t, "three specs").await;
        assert_eq!(rows.len(), 120);

        // Filters prune and match across specs: days 2..5 span specs 0 and 1, an id spec 2's bucket.
        let days = ids_where(
            &ctx,
            &t,
            "ts >= '2024-01-03T00:00:00Z' AND ts < '2024-01-06T00:00:00Z'",
        )
        .await;
        assert_eq!(days, (20..50).collect::<Vec<_>>());
        assert_eq!(
            ids_where(&ctx, &t, "id = 85 OR id = 5 OR id = 45").await,
            vec![5, 45, 85]
        );
        if let Some(layout) = pyiceberg_layout(&ctx, t.name(), Some("id >= 20 and id < 50")) {
            let ids: Vec<i64> = by_id(layout["rows"].as_array().unwrap().clone())
                .iter()
                .map(|r| r["id"].as_i64().unwrap())
                .collect();
            assert_eq!(ids, (20..50).collect::<Vec<_>>());
            assert!(
                layout["planned_files"].as_u64().unwrap() < files.len() as u64,
                "{layout}"
            );
        }

        // A delete across specs.
        ctx.floe
            .delete(&t, RowFilter::sql("user_id = 'u3'"), &DeleteOptions::default())
            .await
            .unwrap();
        let rows = readers_agree(&ctx, &t, "a delete").await;
        assert_eq!(rows.len(), 96);
        let before = ctx
            .floe
            .load_table(&t)
            .await
            .unwrap()
            .metadata()
            .current_snapshot_id()
            .unwrap();

        // Compaction rewrites every older-spec file into spec 2, whatever its size.
        let report = ctx
            .floe
            .compact(
                &t,
                &CompactOptions {
                    rewrite_spec: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(report.files_written > 0, "{report:?}");
        let files = spec_ids(&ctx, &t).await;
        assert!(files.values().all(|s| *s == 2), "{files:?}");
        pyiceberg_sees_specs(&ctx, &t, &files, &specs);
        assert_eq!(readers_agree(&ctx, &t, "compact --rewrite-spec").await, rows);
        assert_eq!(
            ids_where(
                &ctx,
                &t,
                "ts >= '2024-01-03T00:00:00Z' AND ts < '2024-01-06T00:00:00Z'"
            )
            .await
            .len(),
            24
        );
        // The same rows as before the compaction, by floe diff.
        let side = |at: At| DiffSide { table: t.clone(), at };
        let r = diff(
            &ctx.floe,
            &side(At::Snapshot(before)),
            &side(At::Current),
            &DiffOptions::default(),
        )
        .await
        .unwrap();
        assert!(r.equal, "{r:?}");
    }
);

both_backends!(
    a_spec_change_racing_writers_loses_no_rows_and_keeps_each_files_spec,
    |ctx: Ctx| async move {
        let t = ctx.table("race");
        ctx.create_events_table(&t, &["day(ts)"]).await;
        let o = WriteOptions::default();
        // An append written with spec 0, committed after spec 1 landed.
        let mut tx = ctx.floe.transaction();
        tx.append(&t, stream(vec![events(0..20)]), &o).await.unwrap();
        ctx.floe
            .update_spec(&t)
            .add_field("id", Transform::Bucket(2))
            .commit()
            .await
            .unwrap();
        let landed = tx.commit().await.unwrap();
        let appended = landed[0].snapshot_id.unwrap();
        ctx.floe
            .append(&t, stream(vec![events(20..40)]), &o)
            .await
            .unwrap();
        let files = spec_ids(&ctx, &t).await;
        let by_spec = |id: i32| files.values().filter(|s| **s == id).count();
        assert_eq!((by_spec(0), by_spec(1)), (2, 4), "{files:?}");
        let table = ctx.floe.load_table(&t).await.unwrap();
        let summary = summary(&table, appended);
        assert_eq!(summary["added-records"], "20");
        assert_eq!(readers_agree(&ctx, &t, "a racing append").await.len(), 40);
        assert_eq!(ids_where(&ctx, &t, "id = 5 OR id = 25").await, vec![5, 25]);

        // Two racing spec changes: the later one is a conflict and commits nothing.
        let mut tx = ctx.floe.transaction();
        tx.update_spec(
            &t,
            floe::SpecUpdate::new().add_field("user_id", Transform::Identity),
        )
        .await
        .unwrap();
        ctx.floe
            .update_spec(&t)
            .add_field("user_id", Transform::Truncate(1))
            .commit()
            .await
            .unwrap();
        let err = tx.commit().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(
            err.to_string().contains("concurrent partition spec change"),
            "{err}"
        );
        let table = ctx.floe.load_table(&t).await.unwrap();
        let fields: Vec<String> = table
            .metadata()
            .default_partition_spec()
            .fields()
            .iter()
            .map(|f| f.name.clone())
            .collect();
        assert_eq!(fields, ["ts_day", "id_bucket_2", "user_id_trunc_1"]);
        // A schema change beside a spec change: both land.
        let mut tx = ctx.floe.transaction();
        tx.update_spec(&t, floe::SpecUpdate::new().remove_field("user_id_trunc_1"))
            .await
            .unwrap();
        ctx.floe
            .update_schema(&t)
            .add_column(
                "note",
                iceberg::spec::Type::Primitive(iceberg::spec::PrimitiveType::String),
            )
            .commit()
            .await
            .unwrap();
        let table = tx.commit().await.unwrap().remove(0).table;
        assert_eq!(table.metadata().default_partition_spec().fields().len(), 2);
        assert!(table.schema().field_by_name("note").is_some());
    }
);

both_backends!(
    floe_partition_commands_print_what_they_commit_and_refuse_bad_changes,
    |ctx: Ctx| async move {
        let dir = tempfile::tempdir().unwrap();
        let t = ctx.table("cli");
        ctx.create_events_table(&t, &["day(ts)"]).await;
        ctx.floe
            .append(&t, stream(vec![events(0..30)]), &WriteOptions::default())
            .await
            .unwrap();
        let name = t.to_string();
        let run = |args: &[&str]| floe_cmd(dir.path(), Some(&ctx)).args(args).output().unwrap();
        let ok = |args: &[&str]| {
            let out = run(args);
            assert!(
                out.status.success(),
                "floe {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let location = || async {
            ctx.floe
                .load_table(&t)
                .await
                .unwrap()
                .metadata_location()
                .to_string()
        };

        // Each refusal: one line on stderr, exit 1, nothing committed.
        let before = location().await;
        let refusals: [(&[&str], &str); 7] = [
            (&["partition", "add", &name, "bucket(0, id)"], "at least 1"),
            (&["partition", "add", &name, "day(nope)"], "no column \"nope\""),
            (
                &["partition", "add", &name, "hour(ts)"],
                "cannot add hour beside day",
            ),
            (
                &["partition", "add", &name, "week(ts)"],
                "cannot read the partition term",
            ),
            (&["partition", "drop", &name, "nope"], "no field \"nope\""),
            (&["partition", "rename", &name, "ts_day", "id"], "column's name"),
            (&["schema", "drop", &name, "ts"], "partition field \"ts_day\""),
        ];
        for (args, expected) in refusals {
            let out = run(args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "floe {args:?}: {stderr}");
            assert_eq!(stderr.trim_end().lines().count(), 1, "floe {args:?}: {stderr}");
            assert!(stderr.contains(expected), "floe {args:?}: {stderr}");
            assert_eq!(location().await, before, "floe {args:?} committed");
        }

        let out = ok(&[
            "partition",
            "add",
            &name,
            "bucket(16, user_id)",
            "--name",
            "user_b",
        ]);
        assert!(out.contains("committed partition spec 1"), "{out}");
        assert!(
            out.contains("user_b") && out.contains("bucket[16]") && out.contains("user_id"),
            "{out}"
        );
        let out = ok(&["partition", "rename", &name, "ts_day", "day"]);
        assert!(
            out.contains("committed partition spec 2") && out.contains("day"),
            "{out}"
        );
        let out = ok(&["partition", "drop", &name, "user_b"]);
        assert!(
            out.contains("committed partition spec 3") && !out.contains("user_b"),
            "{out}"
        );
        let show = ok(&["show", &name]);
        for want in ["partition specs", "spec 0\n", "spec 1\n", "spec 3 (default)"] {
            assert!(show.contains(want), "floe show lacks {want:?}:\n{show}");
        }
        // Spec 0's files are rewritten into spec 3 (day under its new name).
        let out = ok(&["compact", &name, "--rewrite-spec"]);
        assert!(!out.is_empty());
        let files = spec_ids(&ctx, &t).await;
        assert!(!files.is_empty() && files.values().all(|s| *s == 3), "{files:?}");
        assert_eq!(readers_agree(&ctx, &t, "the CLI's changes").await.len(), 30);
        let help = ok(&["partition", "--help"]);
        assert!(
            help.contains("rewrite-spec") && help.contains("bucket(N, COL)"),
            "{help}"
        );
    }
);
