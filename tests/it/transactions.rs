//! The transaction layer, case by case: validation of overwrites and deletes against a commit that
//! landed after they read the table (serializable and snapshot isolation), multi-table transactions
//! that land whole or not at all, and the commit outcomes a catalog can report (a lost reply after
//! the swap landed, a statement that failed).

use std::collections::BTreeSet;

use floe::{At, DeleteOptions, ErrorKind, Isolation, OverwriteOptions, RowFilter, WriteOptions};

use crate::both_backends;
use crate::faulty_catalog::{faulty_floe, Fault};
use crate::support::*;

/// Every file under the table's `data/` folder.
async fn data_files_on_storage(ctx: &Ctx, t: &floe::TableName) -> BTreeSet<String> {
    let table = ctx.floe.load_table(t).await.unwrap();
    ctx.floe
        .storage()
        .list(&format!("{}/data/", table.location()))
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// The data files the current snapshot references.
async fn live_files(ctx: &Ctx, t: &floe::TableName) -> BTreeSet<String> {
    let table = ctx.floe.load_table(t).await.unwrap();
    table
        .live_data_files(table.current_snapshot())
        .await
        .unwrap()
        .iter()
        .map(|f| f.file_path().to_string())
        .collect()
}

fn delete_with(isolation: Isolation) -> DeleteOptions {
    DeleteOptions {
        isolation,
        ..Default::default()
    }
}

fn overwrite_with(isolation: Isolation) -> OverwriteOptions {
    OverwriteOptions {
        isolation,
        ..Default::default()
    }
}

both_backends!(
    overwrite_conflicts_with_a_concurrent_append_of_matching_rows,
    |ctx: Ctx| async move {
        let t = ctx.table("events");
        ctx.create_events_table(&t, &[]).await;
        ctx.floe
            .append(&t, stream(vec![events(0..100)]), &WriteOptions::default())
            .await
            .unwrap();
        // The overwrite reads the table and writes its rows...
        let mut tx = ctx.floe.transaction();
        tx.overwrite(
            &t,
            Some(RowFilter::sql("id < 50")),
            stream(vec![events(500..510)]),
            &OverwriteOptions::default(),
        )
        .await
        .unwrap();
        // ...while another writer appends rows the filter matches.
        let appended = ctx
            .floe
            .append(&t, stream(vec![events(10..15)]), &WriteOptions::default())
            .await
            .unwrap();
        let err = tx.commit().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert_eq!(err.conflicting_snapshot(), appended.snapshot_id, "{err}");
        assert!(err.to_string().contains("id < 50"), "{err}");
        // Nothing of the overwrite landed; the append's rows are all there; the overwrite's files are gone.
        let mut expected: Vec<i64> = (0..100).chain(10..15).collect();
        expected.sort();
        assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected);
        assert_eq!(data_files_on_storage(&ctx, &t).await, live_files(&ctx, &t).await);
    }
);

both_backends!(
    overwrite_lands_over_a_concurrent_append_its_filter_cannot_match,
    |ctx: Ctx| async move {
        let t = ctx.table("events");
        ctx.create_events_table(&t, &[]).await;
        ctx.floe
            .append(&t, stream(vec![events(0..100)]), &WriteOptions::default())
            .await
            .unwrap();
        let mut tx = ctx.floe.transaction();
        tx.overwrite(
            &t,
            Some(RowFilter::sql("id < 50")),
            stream(vec![events(500..510)]),
            &OverwriteOptions::default(),
        )
        .await
        .unwrap();
        // The appended file's bounds (id 1000..1004) rule out `id < 50`.
        ctx.floe
            .append(&t, stream(vec![events(1000..1005)]), &WriteOptions::default())
            .await
            .unwrap();
        let r = tx.commit().await.unwrap().pop().unwrap();
        assert_eq!(
            r.attempts, 2,
            "the first swap lost the race, the retry validated and landed"
        );
        let expected: Vec<i64> = (50..100).chain(500..510).chain(1000..1005).collect();
        assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected);
    }
);

both_backends!(
    snapshot_isolation_keeps_concurrently_appended_rows,
    |ctx: Ctx| async move {
        let t = ctx.table("events");
        ctx.create_events_table(&t, &[]).await;
        ctx.floe
            .append(&t, stream(vec![events(0..100)]), &WriteOptions::default())
            .await
            .unwrap();
        let mut tx = ctx.floe.transaction();
        tx.overwrite(
            &t,
            Some(RowFilter::sql("id < 50")),
            stream(vec![events(500..510)]),
            &overwrite_with(Isolation::Snapshot),
        )
        .await
        .unwrap();
        ctx.floe
            .append(&t, stream(vec![events(10..15)]), &WriteOptions::default())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // The overwrite replaced the rows it saw; the concurrent ones survive.
        let mut expected: Vec<i64> = (50..100).chain(500..510).chain(10..15).collect();
        expected.sort();
        assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected);
    }
);

both_backends!(
    a_delete_whose_file_was_rewritten_meanwhile_is_planned_again_in_both_isolations,
    |ctx: Ctx| async move {
        for isolation in [Isolation::Serializable, Isolation::Snapshot] {
            let t = ctx.table(&format!("events_{isolation:?}").to_lowercase());
            ctx.create_events_table(&t, &[]).await;
            ctx.floe
                .append(&t, stream(vec![events(0..20)]), &WriteOptions::default())
                .await
                .unwrap();
            let mut tx = ctx.floe.transaction();
            tx.delete(&t, RowFilter::sql("id < 5"), &delete_with(isolation))
                .await
                .unwrap();
            // Another delete rewrites the same file first: the transaction's delete finds its rows
            // again in the rewritten file.
            ctx.floe
                .delete(&t, RowFilter::sql("id = 7"), &DeleteOptions::default())
                .await
                .unwrap();
            let results = tx.commit().await.unwrap();
            assert!(results[0].snapshot_id.is_some(), "{isolation:?}");
            let expected: Vec<i64> = (5..20).filter(|i| *i != 7).collect();
            assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected);
            assert_eq!(
                data_files_on_storage(&ctx, &t).await.len(),
                3,
                "the first plan's rewrite is gone: the original, the concurrent rewrite, the replanned one"
            );
        }
    }
);

both_backends!(
    an_overwrite_computed_from_the_table_conflicts_with_a_concurrent_rewrite_in_both_isolations,
    |ctx: Ctx| async move {
        for isolation in [Isolation::Serializable, Isolation::Snapshot] {
            let t = ctx.table(&format!("events_{isolation:?}").to_lowercase());
            ctx.create_events_table(&t, &[]).await;
            ctx.floe
                .append(&t, stream(vec![events(0..20)]), &WriteOptions::default())
                .await
                .unwrap();
            let mut tx = ctx.floe.transaction();
            // New rows that (as far as floe knows) were computed from the rows they replace.
            tx.overwrite(
                &t,
                Some(RowFilter::sql("id < 5")),
                stream(vec![events(100..102)]),
                &overwrite_with(isolation),
            )
            .await
            .unwrap();
            ctx.floe
                .delete(&t, RowFilter::sql("id = 7"), &DeleteOptions::default())
                .await
                .unwrap();
            let err = tx.commit().await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Conflict, "{isolation:?}: {err}");
            let expected: Vec<i64> = (0..20).filter(|i| *i != 7).collect();
            assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected);
            assert_eq!(
                data_files_on_storage(&ctx, &t).await.len(),
                2,
                "the conflicting overwrite's files are gone"
            );
        }
    }
);

both_backends!(
    whole_table_overwrite_against_a_concurrent_append,
    |ctx: Ctx| async move {
        for isolation in [Isolation::Serializable, Isolation::Snapshot] {
            let t = ctx.table(&format!("events_{isolation:?}").to_lowercase());
            ctx.create_events_table(&t, &[]).await;
            ctx.floe
                .append(&t, stream(vec![events(0..10)]), &WriteOptions::default())
                .await
                .unwrap();
            let mut tx = ctx.floe.transaction();
            tx.overwrite(
                &t,
                None,
                stream(vec![events(100..103)]),
                &overwrite_with(isolation),
            )
            .await
            .unwrap();
            ctx.floe
                .append(&t, stream(vec![events(20..22)]), &WriteOptions::default())
                .await
                .unwrap();
            let result = tx.commit().await;
            match isolation {
                Isolation::Serializable => {
                    assert_eq!(result.unwrap_err().kind(), ErrorKind::Conflict);
                    let expected: Vec<i64> = (0..10).chain(20..22).collect();
                    assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected);
                }
                Isolation::Snapshot => {
                    result.unwrap();
                    let expected: Vec<i64> = (20..22).chain(100..103).collect();
                    assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected);
                }
            }
        }
    }
);

both_backends!(a_delete_matching_nothing_commits_nothing, |ctx: Ctx| async move {
    let t = ctx.table("events");
    ctx.create_events_table(&t, &[]).await;
    let first = ctx
        .floe
        .append(&t, stream(vec![events(0..10)]), &WriteOptions::default())
        .await
        .unwrap();
    let r = ctx
        .floe
        .delete(&t, RowFilter::sql("id > 1000"), &DeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(r.snapshot_id, None);
    let empty = ctx
        .floe
        .append(&t, stream(vec![]), &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(empty.snapshot_id, None);
    let table = ctx.floe.load_table(&t).await.unwrap();
    assert_eq!(table.snapshots().len(), 1);
    assert_eq!(
        table.current_snapshot().map(|s| s.snapshot_id()),
        first.snapshot_id
    );
});

both_backends!(a_multi_table_transaction_lands_whole, |ctx: Ctx| async move {
    let a = ctx.table("a");
    let b = ctx.table("b");
    ctx.create_events_table(&a, &[]).await;
    ctx.create_events_table(&b, &[]).await;
    ctx.floe
        .append(&b, stream(vec![events(0..10)]), &WriteOptions::default())
        .await
        .unwrap();
    let mut tx = ctx.floe.transaction();
    tx.append(&a, stream(vec![events(0..3)]), &WriteOptions::default())
        .await
        .unwrap();
    tx.delete(&b, RowFilter::sql("id < 5"), &DeleteOptions::default())
        .await
        .unwrap();
    let results = tx.commit().await.unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.snapshot_id.is_some()));
    assert_eq!(ids(&ctx.floe, &a, At::Current).await, vec![0, 1, 2]);
    assert_eq!(ids(&ctx.floe, &b, At::Current).await, (5..10).collect::<Vec<_>>());
});

both_backends!(
    a_multi_table_transaction_with_one_conflict_changes_no_table,
    |ctx: Ctx| async move {
        let a = ctx.table("a");
        let b = ctx.table("b");
        ctx.create_events_table(&a, &[]).await;
        ctx.create_events_table(&b, &[]).await;
        ctx.floe
            .append(&b, stream(vec![events(0..10)]), &WriteOptions::default())
            .await
            .unwrap();
        let a_before = ctx
            .floe
            .load_table(&a)
            .await
            .unwrap()
            .metadata_location()
            .to_string();
        let mut tx = ctx.floe.transaction();
        tx.append(&a, stream(vec![events(0..3)]), &WriteOptions::default())
            .await
            .unwrap();
        tx.overwrite(
            &b,
            Some(RowFilter::sql("id < 5")),
            stream(vec![events(50..52)]),
            &OverwriteOptions::default(),
        )
        .await
        .unwrap();
        // b gets rows the overwrite's filter matches: b's part of the transaction conflicts.
        ctx.floe
            .append(&b, stream(vec![events(1..2)]), &WriteOptions::default())
            .await
            .unwrap();
        let err = tx.commit().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        // a is untouched: same metadata, no snapshot, no data file left behind.
        let a_after = ctx.floe.load_table(&a).await.unwrap();
        assert_eq!(a_after.metadata_location(), a_before);
        assert!(a_after.current_snapshot().is_none());
        assert!(data_files_on_storage(&ctx, &a).await.is_empty());
        let mut expected: Vec<i64> = (0..10).chain(1..2).collect();
        expected.sort();
        assert_eq!(ids(&ctx.floe, &b, At::Current).await, expected);
        assert_eq!(data_files_on_storage(&ctx, &b).await, live_files(&ctx, &b).await);
    }
);

both_backends!(
    a_lost_reply_after_the_swap_landed_is_found_and_applied_once,
    |ctx: Ctx| async move {
        let t = ctx.table("events");
        ctx.create_events_table(&t, &[]).await;
        ctx.floe
            .append(&t, stream(vec![events(0..3)]), &WriteOptions::default())
            .await
            .unwrap();
        let (floe, faulty) = faulty_floe(ctx.settings.clone(), vec![Fault::LoseReplyAfterSwap]).await;
        let r = floe
            .append(&t, stream(vec![events(3..5)]), &WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(
            faulty.swaps(),
            1,
            "the retry found its own snapshot and swapped nothing again"
        );
        let table = ctx.floe.load_table(&t).await.unwrap();
        assert_eq!(table.snapshots().len(), 2);
        assert_eq!(table.current_snapshot().map(|s| s.snapshot_id()), r.snapshot_id);
        assert_eq!(ids(&ctx.floe, &t, At::Current).await, (0..5).collect::<Vec<_>>());
        // Every file it references is still there.
        for f in live_files(&ctx, &t).await {
            assert!(ctx.floe.storage().exists(&f).await.unwrap(), "{f} was deleted");
        }
        let list = table.current_snapshot().unwrap().manifest_list().to_string();
        assert!(ctx.floe.storage().exists(&list).await.unwrap());

        // The same for a copy-on-write delete, whose files are rewrites.
        let (floe, _) = faulty_floe(ctx.settings.clone(), vec![Fault::LoseReplyAfterSwap]).await;
        floe.delete(&t, RowFilter::sql("id = 1"), &DeleteOptions::default())
            .await
            .unwrap();
        assert_eq!(ids(&ctx.floe, &t, At::Current).await, vec![0, 2, 3, 4]);
        for f in live_files(&ctx, &t).await {
            assert!(ctx.floe.storage().exists(&f).await.unwrap(), "{f} was deleted");
        }
    }
);

both_backends!(a_failed_statement_is_a_certain_failure, |ctx: Ctx| async move {
    let t = ctx.table("events");
    ctx.create_events_table(&t, &[]).await;
    ctx.floe
        .append(&t, stream(vec![events(0..3)]), &WriteOptions::default())
        .await
        .unwrap();
    let before = ctx.floe.load_table(&t).await.unwrap();
    let metadata_before = ctx
        .floe
        .storage()
        .list(&format!("{}/metadata/", before.location()))
        .await
        .unwrap();
    // Once: retried (nothing landed, so a retry is safe) and committed once.
    let (floe, faulty) = faulty_floe(ctx.settings.clone(), vec![Fault::FailStatement]).await;
    floe.append(&t, stream(vec![events(3..4)]), &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(faulty.swaps(), 2);
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, (0..4).collect::<Vec<_>>());
    // Every time: a certain failure (not "unknown"); nothing lands and nothing is left behind.
    let before = ctx.floe.load_table(&t).await.unwrap();
    let metadata_before_2 = ctx
        .floe
        .storage()
        .list(&format!("{}/metadata/", before.location()))
        .await
        .unwrap();
    assert!(metadata_before_2.len() > metadata_before.len());
    let (floe, _) = faulty_floe(ctx.settings.clone(), vec![Fault::FailStatement; 10]).await;
    let err = floe
        .append(&t, stream(vec![events(10..12)]), &WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Catalog, "{err}");
    let after = ctx.floe.load_table(&t).await.unwrap();
    assert_eq!(after.metadata_location(), before.metadata_location());
    assert_eq!(data_files_on_storage(&ctx, &t).await, live_files(&ctx, &t).await);
    let mut metadata_after = ctx
        .floe
        .storage()
        .list(&format!("{}/metadata/", after.location()))
        .await
        .unwrap();
    let mut expected = metadata_before_2.clone();
    metadata_after.sort();
    expected.sort();
    assert_eq!(
        metadata_after, expected,
        "the failed attempts' manifests and metadata are gone"
    );
});
