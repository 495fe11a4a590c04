//! Concurrent writers on one table: no lost commit, an unbroken parent chain, every data file
//! referenced once; and a stale change on a moved ref is refused, never applied blindly.

use std::collections::HashSet;

use floe::{At, CommitOptions, ErrorKind, Floe};

use crate::both_backends;
use crate::support::*;

const WRITERS: i64 = 8;
const APPENDS: i64 = 25;

both_backends!(eight_writers_twenty_five_appends, |ctx: Ctx| async move {
    let t = ctx.table("events");
    ctx.create_events_table(&t, &[]).await;
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        // Each writer has its own connection pool, as separate jobs would.
        let floe = Floe::connect(ctx.settings.clone()).await.unwrap();
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            let mut attempts = 0;
            for i in 0..APPENDS {
                let first = (w * APPENDS + i) * 10;
                let r = floe
                    .append(
                        &t,
                        stream(vec![events(first..first + 10)]),
                        &CommitOptions::default(),
                    )
                    .await
                    .unwrap();
                attempts += r.attempts;
            }
            attempts
        }));
    }
    let mut attempts = 0;
    for h in handles {
        attempts += h.await.unwrap();
    }
    let table = ctx.floe.load_table(&t).await.unwrap();
    let total = (WRITERS * APPENDS) as usize;
    eprintln!("{:?}: {total} commits took {attempts} attempts", ctx.backend);

    // 200 snapshots, one unbroken parent chain from main's head to the first.
    assert_eq!(table.snapshots().len(), total);
    let mut chain = Vec::new();
    let mut cur = table.current_snapshot().map(|s| s.snapshot_id());
    while let Some(id) = cur {
        let s = table.metadata().snapshot_by_id(id).expect("parent exists");
        chain.push(id);
        cur = s.parent_snapshot_id();
    }
    assert_eq!(chain.len(), total);
    let seqs: Vec<i64> = chain
        .iter()
        .map(|id| table.metadata().snapshot_by_id(*id).unwrap().sequence_number())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "sequence numbers decrease along the chain"
    );

    // Every data file referenced once (a file listed twice would shrink the set), every row once.
    let files = table.live_data_files(table.current_snapshot()).await.unwrap();
    assert_eq!(files.len(), total);
    let paths: HashSet<&str> = files.iter().map(|f| f.file_path()).collect();
    assert_eq!(paths.len(), total);
    let all = ids(&ctx.floe, &t, At::Current).await;
    assert_eq!(all, (0..(WRITERS * APPENDS * 10)).collect::<Vec<_>>());
    assert_eq!(
        table.current_snapshot().unwrap().summary().additional_properties["total-records"],
        (WRITERS * APPENDS * 10).to_string()
    );
});

both_backends!(stale_change_on_moved_ref_is_refused, |ctx: Ctx| async move {
    let t = ctx.table("events");
    ctx.create_events_table(&t, &[]).await;
    let s1 = ctx
        .floe
        .append(&t, stream(vec![events(0..5)]), &CommitOptions::default())
        .await
        .unwrap()
        .snapshot_id;
    // Another writer moves main.
    let s2 = ctx
        .floe
        .append(&t, stream(vec![events(5..6)]), &CommitOptions::default())
        .await
        .unwrap()
        .snapshot_id;
    // A change computed from s1 is refused, and nothing changes.
    let stale = CommitOptions {
        expected_head: Some(s1),
        ..Default::default()
    };
    let err = ctx
        .floe
        .append(&t, stream(vec![events(6..7)]), &stale)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let table = ctx.floe.load_table(&t).await.unwrap();
    assert_eq!(table.current_snapshot().map(|s| s.snapshot_id()), s2);
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, (0..6).collect::<Vec<_>>());
    // Its data file was cleaned up: only the two committed files remain under data/.
    let data = ctx
        .floe
        .storage()
        .list(&format!("{}/data/", table.location()))
        .await
        .unwrap();
    assert_eq!(data.len(), 2, "{data:?}");
    // With the right expectation it lands.
    let fresh = CommitOptions {
        expected_head: Some(s2),
        ..Default::default()
    };
    ctx.floe
        .append(&t, stream(vec![events(6..7)]), &fresh)
        .await
        .unwrap();
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, (0..7).collect::<Vec<_>>());
});

/// The Postgres server kills the committing connection in the middle of the compare-and-swap (a
/// trigger on the catalog table terminates its own backend, once). The swap's outcome is unknown to
/// floe; it checks the table, finds its change did not land, and commits it once on the new base.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_lost_during_swap_is_resolved_without_loss_or_duplicate() {
    let Some(ctx) = Ctx::new(Backend::PostgresS3).await else {
        return;
    };
    let t = ctx.table("events");
    ctx.create_events_table(&t, &[]).await;
    ctx.floe
        .append(&t, stream(vec![events(0..3)]), &CommitOptions::default())
        .await
        .unwrap();

    let pool = sqlx::PgPool::connect(&ctx.settings.catalog_url).await.unwrap();
    let seq = format!("fault_{}", ctx.settings.catalog_name);
    sqlx::query(&format!("CREATE SEQUENCE {seq}"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE FUNCTION {seq}_fn() RETURNS trigger AS $$ BEGIN \
           IF NEW.catalog_name = '{name}' AND nextval('{seq}') = 1 THEN \
             PERFORM pg_terminate_backend(pg_backend_pid()); \
           END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
        name = ctx.settings.catalog_name
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "CREATE TRIGGER {seq}_tr BEFORE UPDATE ON iceberg_tables FOR EACH ROW EXECUTE FUNCTION {seq}_fn()"
    ))
    .execute(&pool)
    .await
    .unwrap();

    let r = ctx
        .floe
        .append(&t, stream(vec![events(3..5)]), &CommitOptions::default())
        .await;
    sqlx::query(&format!("DROP TRIGGER {seq}_tr ON iceberg_tables"))
        .execute(&pool)
        .await
        .unwrap();
    let r = r.unwrap();
    assert_eq!(r.attempts, 2, "the first attempt's connection was killed");
    let table = ctx.floe.load_table(&t).await.unwrap();
    assert_eq!(table.snapshots().len(), 2);
    assert_eq!(ids(&ctx.floe, &t, At::Current).await, (0..5).collect::<Vec<_>>());
}
