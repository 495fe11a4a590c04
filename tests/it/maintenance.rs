//! Tables that stay lean: manifest merging keeps the manifest list bounded; expiry keeps what refs
//! reach and frees the rest; orphan removal leaves storage holding exactly what the metadata
//! references; compaction turns small files into few with the same rows; all of it alongside
//! concurrent writers, which lose nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use floe::maintenance::{CompactOptions, ExpireOptions, OrphanOptions};
use floe::{At, DeleteOptions, ErrorKind, Floe, WriteOptions};

use crate::both_backends;
use crate::support::*;

both_backends!(
    manifest_merging_keeps_the_manifest_list_bounded,
    |ctx: Ctx| async move {
        let t = ctx.table("events");
        ctx.create_events_table(&t, &[]).await;
        let appends = 1_000i64;
        let started = std::time::Instant::now();
        let mut most = 0;
        for i in 0..appends {
            let r = ctx
                .floe
                .append(
                    &t,
                    stream(vec![events(i * 2..i * 2 + 2)]),
                    &WriteOptions::default(),
                )
                .await
                .unwrap();
            let manifests = r
                .table
                .manifest_paths(r.table.current_snapshot().unwrap())
                .await
                .unwrap()
                .len();
            most = most.max(manifests);
        }
        eprintln!(
            "{:?}: {appends} appends in {:.1} s, at most {most} manifests",
            ctx.backend,
            started.elapsed().as_secs_f64()
        );
        // Java's algorithm with its defaults (merge once the newest bin holds 100) gives at most 100.
        assert!(most <= 100, "{most} manifests");
        assert_eq!(
            ids(&ctx.floe, &t, At::Current).await,
            (0..appends * 2).collect::<Vec<_>>()
        );
        if let Some(read) = crate::interop::pyiceberg_read(&ctx, "events") {
            assert_eq!(read["rows"].as_array().unwrap().len(), (appends * 2) as usize);
        }
        // Old metadata files go as the metadata log trims them (previous-versions-max 100).
        let table = ctx.floe.load_table(&t).await.unwrap();
        let metadata_files = ctx
            .floe
            .storage()
            .list(&format!("{}/metadata/", table.location()))
            .await
            .unwrap()
            .into_iter()
            .filter(|p| p.ends_with(".metadata.json"))
            .count();
        assert!(metadata_files <= 102, "{metadata_files} metadata files kept");
    }
);

both_backends!(expiry_keeps_refs_and_frees_storage, |ctx: Ctx| async move {
    let t = ctx.table("events");
    ctx.create_events_table(&t, &["day(ts)"]).await;
    let mut snapshots = Vec::new();
    for i in 0..6i64 {
        let r = ctx
            .floe
            .append(
                &t,
                stream(vec![events(i * 10..i * 10 + 10)]),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        snapshots.push(r.snapshot_id.unwrap());
    }
    // A tag on the 2nd snapshot, a branch at the 3rd with its own commit; main moves on with a
    // delete that rewrites files (their old versions are referenced only by old snapshots).
    ctx.floe
        .create_tag(&t, "v1", &At::Snapshot(snapshots[1]))
        .await
        .unwrap();
    ctx.floe
        .create_branch(&t, "dev", &At::Snapshot(snapshots[2]))
        .await
        .unwrap();
    ctx.floe
        .append(
            &t,
            stream(vec![events(500..505)]),
            &WriteOptions::on_branch("dev"),
        )
        .await
        .unwrap();
    ctx.floe
        .delete(&t, floe::RowFilter::sql("id % 2 = 0"), &DeleteOptions::default())
        .await
        .unwrap();
    let before_files = stored(&ctx, &t).await;
    let main_rows = ids(&ctx.floe, &t, At::Current).await;
    let dev_rows = ids(&ctx.floe, &t, At::Ref("dev".into())).await;
    let v1_rows = ids(&ctx.floe, &t, At::Ref("v1".into())).await;

    // A dry run changes nothing.
    let now = chrono::Utc::now().timestamp_millis() + 1;
    let dry = ctx
        .floe
        .expire_snapshots(
            &t,
            &ExpireOptions {
                older_than_ms: Some(now),
                retain_last: Some(1),
                dry_run: true,
            },
        )
        .await
        .unwrap();
    assert!(!dry.snapshots_expired.is_empty());
    assert_eq!(stored(&ctx, &t).await, before_files);
    assert_eq!(ctx.floe.load_table(&t).await.unwrap().snapshots().len(), 8);

    let report = ctx
        .floe
        .expire_snapshots(
            &t,
            &ExpireOptions {
                older_than_ms: Some(now),
                retain_last: Some(1),
                dry_run: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.snapshots_expired, dry.snapshots_expired);
    assert_eq!(report.deleted, dry.deleted);
    assert!(
        report.deleted.data_files > 0 && report.deleted.manifest_lists > 0,
        "{report:?}"
    );
    let table = ctx.floe.load_table(&t).await.unwrap();
    // Kept: main's head, dev's head, the tag's snapshot.
    let kept: BTreeSet<i64> = table.snapshots().iter().map(|s| s.snapshot_id()).collect();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(kept.contains(&snapshots[1]));
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, main_rows);
    assert_eq!(ids(&ctx.floe, &t, At::Ref("dev".into())).await, dev_rows);
    assert_eq!(ids(&ctx.floe, &t, At::Ref("v1".into())).await, v1_rows);
    assert_refs_as_stored(&ctx, &t).await;
    let err = ctx
        .floe
        .scan(
            &t,
            &floe::ScanOptions {
                at: Some(At::Snapshot(snapshots[0])),
                ..Default::default()
            },
        )
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    // With orphan removal, storage holds exactly what the metadata references.
    ctx.floe
        .remove_orphan_files(
            &t,
            &OrphanOptions {
                older_than: Some(Duration::ZERO),
                dry_run: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(stored(&ctx, &t).await, referenced(&ctx, &t).await);
    if let Some(read) = crate::interop::pyiceberg_read(&ctx, "events") {
        assert_eq!(read["rows"].as_array().unwrap().len(), main_rows.len());
    }
    // retain_last 0 is refused.
    let err = ctx
        .floe
        .expire_snapshots(
            &t,
            &ExpireOptions {
                retain_last: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
});

both_backends!(
    orphans_are_only_old_unreferenced_files_of_the_table,
    |ctx: Ctx| async move {
        let t = ctx.table("events");
        ctx.create_events_table(&t, &[]).await;
        ctx.floe
            .append(&t, stream(vec![events(0..10)]), &WriteOptions::default())
            .await
            .unwrap();
        let table = ctx.floe.load_table(&t).await.unwrap();
        let stray = format!("{}/data/stray.parquet", table.location());
        ctx.floe
            .storage()
            .write(&stray, bytes::Bytes::from_static(b"junk"))
            .await
            .unwrap();
        let outside = format!("{}/outside.parquet", ctx.floe.warehouse().uri());
        ctx.floe
            .storage()
            .write(&outside, bytes::Bytes::from_static(b"junk"))
            .await
            .unwrap();
        // Younger than the default 3 days: not an orphan yet.
        let r = ctx
            .floe
            .remove_orphan_files(&t, &OrphanOptions::default())
            .await
            .unwrap();
        assert!(r.files.is_empty(), "{r:?}");
        let r = ctx
            .floe
            .remove_orphan_files(
                &t,
                &OrphanOptions {
                    older_than: Some(Duration::ZERO),
                    dry_run: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(r.files, vec![stray.clone()]);
        assert!(ctx.floe.storage().exists(&stray).await.unwrap());
        ctx.floe
            .remove_orphan_files(
                &t,
                &OrphanOptions {
                    older_than: Some(Duration::ZERO),
                    dry_run: false,
                },
            )
            .await
            .unwrap();
        assert!(!ctx.floe.storage().exists(&stray).await.unwrap());
        assert!(
            ctx.floe.storage().exists(&outside).await.unwrap(),
            "outside the location: untouched"
        );
        assert_eq!(ids(&ctx.floe, &t, At::Current).await, (0..10).collect::<Vec<_>>());
    }
);

both_backends!(compaction_turns_small_files_into_few, |ctx: Ctx| async move {
    let t = ctx.table("events");
    ctx.create_events_table(&t, &[]).await;
    let mut tx = ctx.floe.transaction();
    for i in 0..200i64 {
        tx.append(
            &t,
            stream(vec![events(i * 5..i * 5 + 5)]),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let before = ctx.floe.load_table(&t).await.unwrap();
    let before_id = before.current_snapshot().unwrap().snapshot_id();
    assert_eq!(
        before
            .live_data_files(before.current_snapshot())
            .await
            .unwrap()
            .len(),
        200
    );
    let report = ctx.floe.compact(&t, &CompactOptions::default()).await.unwrap();
    assert_eq!(report.files_rewritten, 200);
    assert!(report.files_written <= 2, "{report:?}");
    let after = ctx.floe.load_table(&t).await.unwrap();
    let snapshot = after.current_snapshot().unwrap();
    assert_eq!(snapshot.summary().operation.as_str(), "replace");
    let p = &snapshot.summary().additional_properties;
    assert_eq!(p["deleted-data-files"], "200");
    assert_eq!(p["added-data-files"], report.files_written.to_string());
    assert_eq!(p["added-records"], "1000");
    assert_eq!(p["deleted-records"], "1000");
    assert_eq!(p["total-records"], "1000");
    let d = floe::diff::diff(
        &ctx.floe,
        &floe::diff::DiffSide {
            table: t.clone(),
            at: At::Snapshot(before_id),
        },
        &floe::diff::DiffSide {
            table: t.clone(),
            at: At::Current,
        },
        &floe::diff::DiffOptions::default(),
    )
    .await
    .unwrap();
    assert!(d.equal, "{d:?}");
});

// Appends run while expiry, compaction and orphan removal (with a realistic threshold) run
// again and again: no committed row is lost, and PyIceberg reads every one.
both_backends!(
    maintenance_alongside_writers_loses_nothing,
    |ctx: Ctx| async move {
        let t = ctx.table("events");
        ctx.create_events_table(&t, &[]).await;
        let writer = {
            let floe = Floe::connect(ctx.settings.clone()).await.unwrap();
            let t = t.clone();
            tokio::spawn(async move {
                for i in 0..60i64 {
                    floe.append(
                        &t,
                        stream(vec![events(i * 3..i * 3 + 3)]),
                        &WriteOptions::default(),
                    )
                    .await
                    .unwrap();
                }
            })
        };
        let maintainer = {
            let floe = Floe::connect(ctx.settings.clone()).await.unwrap();
            let t = t.clone();
            tokio::spawn(async move {
                for _ in 0..6 {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    let now = chrono::Utc::now().timestamp_millis();
                    floe.expire_snapshots(
                        &t,
                        &ExpireOptions {
                            older_than_ms: Some(now),
                            retain_last: Some(3),
                            dry_run: false,
                        },
                    )
                    .await
                    .unwrap();
                    match floe
                        .compact(
                            &t,
                            &CompactOptions {
                                min_input_files: 2,
                                ..Default::default()
                            },
                        )
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::Conflict => {}
                        Err(e) => panic!("compaction: {e}"),
                    }
                    // A realistic threshold: files written in the last minute are never orphans.
                    floe.remove_orphan_files(
                        &t,
                        &OrphanOptions {
                            older_than: Some(Duration::from_secs(60)),
                            dry_run: false,
                        },
                    )
                    .await
                    .unwrap();
                }
            })
        };
        writer.await.unwrap();
        maintainer.await.unwrap();
        assert_eq!(
            ids(&ctx.floe, &t, At::Current).await,
            (0..180).collect::<Vec<_>>()
        );
        let table = ctx.floe.load_table(&t).await.unwrap();
        for f in table.live_data_files(table.current_snapshot()).await.unwrap() {
            assert!(ctx.floe.storage().exists(f.file_path()).await.unwrap());
        }
        if let Some(read) = crate::interop::pyiceberg_read(&ctx, "events") {
            assert_eq!(read["rows"].as_array().unwrap().len(), 180);
        }
    }
);
