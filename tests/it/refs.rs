//! Branches, tags, writing to a branch, publishing (fast-forward) and rollback.

use floe::{At, DeleteOptions, ErrorKind, RowFilter, WriteOptions};

use crate::both_backends;
use crate::support::*;

both_backends!(branches_tags_publish_rollback, |ctx: Ctx| async move {
    let t = ctx.table("events");
    ctx.create_events_table(&t, &[]).await;
    // No snapshot yet: nothing to branch from.
    assert_eq!(
        ctx.floe
            .create_branch(&t, "dev", &At::Current)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );

    let main1 = ctx
        .floe
        .append(&t, stream(vec![events(0..5)]), &WriteOptions::default())
        .await
        .unwrap();
    let s1 = main1.snapshot_id.unwrap();
    ctx.floe.create_tag(&t, "v1", &At::Current).await.unwrap();
    ctx.floe.create_branch(&t, "dev", &At::Current).await.unwrap();
    assert_eq!(
        ctx.floe
            .create_branch(&t, "dev", &At::Current)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );

    // Writes to the branch leave main alone.
    let on_dev = WriteOptions::on_branch("dev");
    let d1 = ctx
        .floe
        .append(&t, stream(vec![events(5..8)]), &on_dev)
        .await
        .unwrap();
    let d2 = ctx
        .floe
        .delete(&t, RowFilter::sql("id = 0"), &DeleteOptions::from(on_dev.clone()))
        .await
        .unwrap();
    let d2_id = d2.snapshot_id.unwrap();
    assert_eq!(
        d2.table
            .metadata()
            .snapshot_by_id(d2_id)
            .unwrap()
            .parent_snapshot_id(),
        d1.snapshot_id
    );
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, (0..5).collect::<Vec<_>>());
    assert_eq!(
        ids(&ctx.floe, &t, At::Ref("dev".into())).await,
        (1..8).collect::<Vec<_>>()
    );
    assert_eq!(
        ids(&ctx.floe, &t, At::Ref("v1".into())).await,
        (0..5).collect::<Vec<_>>()
    );
    assert_eq!(d2.table.current_snapshot().unwrap().snapshot_id(), s1);

    // Commits to a tag are refused.
    let on_tag = WriteOptions::on_branch("v1");
    assert_eq!(
        ctx.floe
            .append(&t, stream(vec![events(9..10)]), &on_tag)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        ids(&ctx.floe, &t, At::Ref("v1".into())).await,
        (0..5).collect::<Vec<_>>()
    );

    // Publish fast-forwards main to the branch head.
    let p = ctx.floe.publish(&t, "dev").await.unwrap();
    assert_eq!(p.current_snapshot().unwrap().snapshot_id(), d2_id);
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, (1..8).collect::<Vec<_>>());

    // Diverged: main moves on its own, then publishing dev (behind) is refused as not a fast-forward.
    ctx.floe
        .append(&t, stream(vec![events(100..101)]), &WriteOptions::default())
        .await
        .unwrap();
    ctx.floe
        .append(&t, stream(vec![events(200..201)]), &on_dev)
        .await
        .unwrap();
    let err = ctx.floe.publish(&t, "dev").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");

    // Rollback main to an ancestor; refused for a snapshot that is not one.
    let before = ctx.floe.load_table(&t).await.unwrap();
    let dev_head = before.find_ref("dev").unwrap().snapshot_id;
    assert_eq!(
        ctx.floe.rollback(&t, dev_head).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let rolled = ctx.floe.rollback(&t, s1).await.unwrap();
    assert_eq!(rolled.current_snapshot().unwrap().snapshot_id(), s1);
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, (0..5).collect::<Vec<_>>());
    // The rolled-back snapshots stay reachable by id.
    assert_eq!(
        ids(&ctx.floe, &t, At::Snapshot(d2_id)).await,
        (1..8).collect::<Vec<_>>()
    );
    // History records main's moves.
    assert!(rolled.metadata().history().len() >= 4);

    // Drop refs; main cannot be dropped.
    ctx.floe.drop_ref(&t, "v1").await.unwrap();
    assert_eq!(
        ctx.floe
            .scan(
                &t,
                &floe::ScanOptions {
                    at: Some(At::Ref("v1".into())),
                    ..Default::default()
                }
            )
            .await
            .err()
            .unwrap()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        ctx.floe.drop_ref(&t, "main").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        ctx.floe.drop_ref(&t, "nope").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // A write to a branch that does not exist yet forks it from main's current snapshot (Iceberg's
    // `SnapshotUtil.latestSnapshot`): main is at s1 (rows 0..5) after the rollback.
    let fresh = ctx
        .floe
        .append(
            &t,
            stream(vec![events(300..302)]),
            &WriteOptions::on_branch("fresh"),
        )
        .await
        .unwrap();
    assert_eq!(
        fresh
            .table
            .metadata()
            .snapshot_by_id(fresh.snapshot_id.unwrap())
            .unwrap()
            .parent_snapshot_id(),
        Some(s1)
    );
    let mut expected: Vec<i64> = (0..5).collect();
    expected.extend([300, 301]);
    assert_eq!(ids(&ctx.floe, &t, At::Ref("fresh".into())).await, expected);
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, (0..5).collect::<Vec<_>>());
    assert_refs_as_stored(&ctx, &t).await;
});

// The README's library example: a delete on a branch that does not exist yet, then publish.
both_backends!(delete_on_a_new_branch_then_publish, |ctx: Ctx| async move {
    let t = ctx.table("events");
    ctx.create_events_table(&t, &[]).await;
    ctx.floe
        .append(&t, stream(vec![events(0..100)]), &WriteOptions::default())
        .await
        .unwrap();
    let r = ctx
        .floe
        .delete(
            &t,
            RowFilter::sql("id < 10"),
            &DeleteOptions::from(WriteOptions::on_branch("cleanup")),
        )
        .await
        .unwrap();
    assert!(r.snapshot_id.is_some());
    assert_eq!(
        ids(&ctx.floe, &t, At::Ref("cleanup".into())).await,
        (10..100).collect::<Vec<_>>()
    );
    assert_eq!(ids(&ctx.floe, &t, At::Current).await.len(), 100);
    ctx.floe.publish(&t, "cleanup").await.unwrap();
    assert_eq!(
        ids(&ctx.floe, &t, At::Current).await,
        (10..100).collect::<Vec<_>>()
    );
});
