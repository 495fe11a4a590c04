//! Row-level changes racing other writers (issue 25): each change is planned in a transaction, a
//! concurrent commit lands, then the transaction commits, so every interleaving is deterministic.
//! Upsert against append (a conflict only on a real key collision, and only under `serializable`),
//! two upserts of disjoint rows of one file (both land, in both row modes), an upsert against a
//! compaction (re-planned on the compacted files), and a change whose read snapshot was expired
//! meanwhile (it commits, because validation never needs expired history).

use arrow::compute::concat_batches;
use floe::maintenance::{CompactOptions, ExpireOptions};
use floe::table::deletes::RowLevelMode;
use floe::{
    At, DeleteOptions, ErrorKind, Isolation, RowFilter, RowLevelOptions, UpsertOptions, WriteOptions,
};

use crate::both_backends;
use crate::row_level::{amounts, data_paths, delete_files, scaled};
use crate::support::*;

fn upsert_with(isolation: Isolation, mode: RowLevelMode) -> UpsertOptions {
    UpsertOptions {
        key: vec!["id".into()],
        rows: RowLevelOptions {
            isolation,
            row_mode: Some(mode),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Rows `ids` with their amounts multiplied by 10 (an update of rows the table holds).
fn updated(ids: std::ops::Range<i64>) -> arrow::array::RecordBatch {
    scaled(events(ids), 10.0)
}

fn source(batches: &[arrow::array::RecordBatch]) -> arrow::array::RecordBatch {
    concat_batches(&batches[0].schema(), batches).unwrap()
}

both_backends!(
    an_upsert_conflicts_with_a_concurrent_append_only_on_a_real_key_collision_under_serializable,
    |ctx: Ctx| async move {
        for isolation in [Isolation::Serializable, Isolation::Snapshot] {
            let t = ctx.table(&format!("keys_{isolation:?}").to_lowercase());
            ctx.create_events_table(&t, &[]).await;
            ctx.floe
                .append(&t, stream(vec![events(0..20)]), &WriteOptions::default())
                .await
                .unwrap();
            let options = upsert_with(isolation, RowLevelMode::MergeOnRead);

            // No collision: the append's keys are none the upsert writes. Both land.
            let mut tx = ctx.floe.transaction();
            tx.upsert(
                &t,
                stream(vec![source(&[updated(3..4), events(30..31)])]),
                &options,
            )
            .await
            .unwrap();
            ctx.floe
                .append(&t, stream(vec![events(100..103)]), &WriteOptions::default())
                .await
                .unwrap();
            tx.commit().await.unwrap_or_else(|e| panic!("{isolation:?}: {e}"));
            let mut expected: Vec<i64> = (0..20).chain([30]).chain(100..103).collect();
            assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected, "{isolation:?}");

            // A collision: the append adds key 40, which the upsert inserts too.
            let mut tx = ctx.floe.transaction();
            tx.upsert(
                &t,
                stream(vec![source(&[updated(5..6), events(40..41)])]),
                &options,
            )
            .await
            .unwrap();
            ctx.floe
                .append(&t, stream(vec![events(40..41)]), &WriteOptions::default())
                .await
                .unwrap();
            let landed = tx.commit().await;
            expected.push(40);
            match isolation {
                Isolation::Serializable => {
                    let err = landed.unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
                    assert!(
                        err.to_string().contains("40") || err.to_string().contains("key"),
                        "{err}"
                    );
                }
                Isolation::Snapshot => {
                    landed.unwrap();
                    // Snapshot isolation does not look at concurrent appends: key 40 is there twice.
                    expected.push(40);
                }
            }
            expected.sort();
            assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected, "{isolation:?}");
        }
    }
);

both_backends!(
    two_upserts_of_disjoint_rows_of_one_file_both_land_in_both_row_modes,
    |ctx: Ctx| async move {
        for mode in [RowLevelMode::MergeOnRead, RowLevelMode::CopyOnWrite] {
            let t = ctx.table(&format!("disjoint_{mode:?}").to_lowercase());
            ctx.create_events_table(&t, &[]).await;
            ctx.floe
                .append(&t, stream(vec![events(0..20)]), &WriteOptions::default())
                .await
                .unwrap();
            let before = amounts(&ctx, &t).await;
            let options = upsert_with(Isolation::Serializable, mode);
            let mut first = ctx.floe.transaction();
            first
                .upsert(&t, stream(vec![updated(3..4)]), &options)
                .await
                .unwrap();
            let mut second = ctx.floe.transaction();
            second
                .upsert(&t, stream(vec![updated(8..9)]), &options)
                .await
                .unwrap();
            first.commit().await.unwrap();
            second
                .commit()
                .await
                .unwrap_or_else(|e| panic!("{mode:?}: the second upsert: {e}"));
            assert_eq!(ids(&ctx.floe, &t, At::Current).await, (0..20).collect::<Vec<_>>());
            let after = amounts(&ctx, &t).await;
            for (id, amount) in &before {
                let want = if [3, 8].contains(id) {
                    amount * 10.0
                } else {
                    *amount
                };
                assert_eq!(after[id], want, "{mode:?}: row {id}");
            }
            if mode == RowLevelMode::MergeOnRead {
                // The loser merged its position into the winner's delete file: one per data file.
                let deletes = delete_files(&ctx, &t).await;
                assert_eq!(deletes.len(), 1, "{deletes:?}");
            }
        }
    }
);

both_backends!(
    an_upsert_planned_before_a_compaction_is_replanned_on_the_compacted_files,
    |ctx: Ctx| async move {
        for mode in [RowLevelMode::MergeOnRead, RowLevelMode::CopyOnWrite] {
            let t = ctx.table(&format!("compacted_{mode:?}").to_lowercase());
            ctx.create_events_table(&t, &[]).await;
            for ids in [0..10, 10..20] {
                ctx.floe
                    .append(&t, stream(vec![events(ids)]), &WriteOptions::default())
                    .await
                    .unwrap();
            }
            let before = amounts(&ctx, &t).await;
            let mut tx = ctx.floe.transaction();
            tx.upsert(
                &t,
                stream(vec![source(&[updated(3..4), updated(15..16), events(50..51)])]),
                &upsert_with(Isolation::Serializable, mode),
            )
            .await
            .unwrap();
            let compacted = ctx
                .floe
                .compact(
                    &t,
                    &CompactOptions {
                        min_input_files: 2,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(compacted.files_rewritten, 2, "{compacted:?}");
            let compacted_files = data_paths(&ctx, &t).await;
            tx.commit()
                .await
                .unwrap_or_else(|e| panic!("{mode:?}: the upsert after the compaction: {e}"));
            let expected: Vec<i64> = (0..20).chain([50]).collect();
            assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected, "{mode:?}");
            let after = amounts(&ctx, &t).await;
            for (id, amount) in &before {
                let want = if [3, 15].contains(id) {
                    amount * 10.0
                } else {
                    *amount
                };
                assert_eq!(after[id], want, "{mode:?}: row {id}");
            }
            // The upsert applies to the compacted file, not to the files it first read.
            let live = data_paths(&ctx, &t).await;
            for f in delete_files(&ctx, &t).await.values() {
                let target = f.as_ref().expect("a file-scoped delete file");
                assert!(
                    compacted_files.contains(target) && live.contains(target),
                    "{target}"
                );
            }
        }
    }
);

both_backends!(
    a_change_whose_read_snapshot_was_expired_meanwhile_commits,
    |ctx: Ctx| async move {
        let t = ctx.table("expired_read");
        ctx.create_events_table(&t, &[]).await;
        ctx.floe
            .append(&t, stream(vec![events(0..20)]), &WriteOptions::default())
            .await
            .unwrap();
        let mut tx = ctx.floe.transaction();
        tx.delete(
            &t,
            RowFilter::sql("id < 5"),
            &DeleteOptions {
                row_mode: Some(RowLevelMode::MergeOnRead),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        tx.upsert(
            &t,
            stream(vec![updated(10..11)]),
            &upsert_with(Isolation::Serializable, RowLevelMode::Auto),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let read = ctx
            .floe
            .load_table(&t)
            .await
            .unwrap()
            .current_snapshot()
            .unwrap()
            .snapshot_id();
        // Other writers commit, and maintenance expires the snapshot the transaction read.
        for ids in [100..102, 102..104] {
            ctx.floe
                .append(&t, stream(vec![events(ids)]), &WriteOptions::default())
                .await
                .unwrap();
        }
        let expired = ctx
            .floe
            .expire_snapshots(
                &t,
                &ExpireOptions {
                    older_than_ms: Some(chrono::Utc::now().timestamp_millis() + 1000),
                    retain_last: Some(1),
                    dry_run: false,
                },
            )
            .await
            .unwrap();
        let table = ctx.floe.load_table(&t).await.unwrap();
        assert!(table.metadata().snapshot_by_id(read).is_none(), "{expired:?}");
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
        let expected: Vec<i64> = (5..20).chain(100..104).collect();
        assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected);
        let amount = amounts(&ctx, &t).await[&10];
        assert_eq!(amount, amounts_of_events(10..11)[0] * 10.0);
    }
);

/// The amounts `events(ids)` holds.
fn amounts_of_events(ids: std::ops::Range<i64>) -> Vec<f64> {
    let b = events(ids);
    let i = b.schema().index_of("amount").unwrap();
    b.column(i)
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .unwrap()
        .values()
        .to_vec()
}

both_backends!(
    a_compaction_and_upserts_running_at_once_lose_no_change,
    |ctx: Ctx| async move {
        let t = ctx.table("compact_race");
        ctx.create_events_table(&t, &[]).await;
        // Upserts run while a compaction runs on another thread: whichever commits first, every
        // change ends up in the table once (an upsert that loses is re-planned on the compacted
        // file; a compaction that loses is planned again, and reports its attempts). The order is
        // up to the scheduler: the deterministic orders are the tests above.
        for ids in [0..40_000, 40_000..80_000, 80_000..120_000] {
            ctx.floe
                .append(&t, stream(vec![events(ids)]), &WriteOptions::default())
                .await
                .unwrap();
        }
        let before = amounts(&ctx, &t).await;
        let mut upserted = Vec::new();
        let mut attempts = Vec::new();
        let merge_all = CompactOptions {
            min_input_files: 2,
            min_file_size: Some(1),
            ..Default::default()
        };
        for round in 0..4i64 {
            // The compaction runs on a thread of its own, so that its CPU work does not hold the
            // upserts back.
            let (floe, name, options) = (ctx.floe.clone(), t.clone(), merge_all.clone());
            let compaction = std::thread::spawn(move || {
                tokio::runtime::Runtime::new()
                    .unwrap()
                    .block_on(async move { floe.compact(&name, &options).await })
            });
            let upserts = async {
                for k in 0..2i64 {
                    let id = round * 30_000 + k * 9_000 + 7;
                    ctx.floe
                        .upsert(
                            &t,
                            stream(vec![updated(id..id + 1)]),
                            &upsert_with(Isolation::Serializable, RowLevelMode::MergeOnRead),
                        )
                        .await
                        .unwrap_or_else(|e| panic!("upsert of {id}: {e}"));
                    upserted.push(id);
                }
            };
            upserts.await;
            let report = compaction
                .join()
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: compaction: {e}"));
            attempts.push(report.attempts);
        }
        eprintln!("compaction attempts per round: {attempts:?}");
        assert_eq!(
            ids(&ctx.floe, &t, At::Current).await,
            (0..120_000).collect::<Vec<_>>()
        );
        let after = amounts(&ctx, &t).await;
        for (id, amount) in &before {
            let want = if upserted.contains(id) {
                amount * 10.0
            } else {
                *amount
            };
            assert_eq!(after[id], want, "row {id}");
        }
    }
);
