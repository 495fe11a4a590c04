//! Concurrent writers on one table: no lost commit, an unbroken parent chain, every data file
//! referenced once; appenders, filtered overwriters and a deleter at once, their history replayed on
//! a model; a stale change on a moved ref is refused, never applied blindly; processes racing to
//! create one table or to set up a fresh catalog.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use floe::{At, DeleteOptions, ErrorKind, ExpectedHead, Floe, OverwriteOptions, RowFilter, WriteOptions};
use futures::TryStreamExt;

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
                        &WriteOptions::default(),
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
        .append(&t, stream(vec![events(0..5)]), &WriteOptions::default())
        .await
        .unwrap()
        .snapshot_id;
    // Another writer moves main.
    let s2 = ctx
        .floe
        .append(&t, stream(vec![events(5..6)]), &WriteOptions::default())
        .await
        .unwrap()
        .snapshot_id;
    // A change computed from s1 is refused, and nothing changes.
    let stale = WriteOptions {
        expected_head: ExpectedHead::of(s1),
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
    let fresh = WriteOptions {
        expected_head: ExpectedHead::of(s2),
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
        .append(&t, stream(vec![events(0..3)]), &WriteOptions::default())
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
        .append(&t, stream(vec![events(3..5)]), &WriteOptions::default())
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

/// Rows of the matrix test: `id`, and `user_id` naming the writer that owns them.
fn owned_rows(ids: impl Iterator<Item = i64>, owner: &str) -> RecordBatch {
    let ids: Vec<i64> = ids.collect();
    let n = ids.len();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(StringArray::from(vec![owner; n])),
        Arc::new(
            TimestampMicrosecondArray::from(
                ids.iter().map(|i| 1_704_067_200_000_000 + i).collect::<Vec<_>>(),
            )
            .with_timezone("+00:00"),
        ),
        Arc::new(Float64Array::from(vec![1.0; n])),
    ];
    RecordBatch::try_new(Arc::new(events_schema()), cols).unwrap()
}

/// What a committed write did, to replay it on the model.
#[derive(Clone, Debug)]
enum Op {
    /// Rows added.
    Append(Vec<(i64, String)>),
    /// Rows of `owner` replaced by `rows`.
    Overwrite { owner: String, rows: Vec<(i64, String)> },
    /// Rows of `owner` with `lo <= id < hi` removed.
    Delete { owner: String, lo: i64, hi: i64 },
}

/// Per writer: (snapshot id, op) of each success, and the number of conflicts.
type Outcome = (Vec<(i64, Op)>, u32);

fn rows_of(batch: &RecordBatch) -> Vec<(i64, String)> {
    let ids = batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
    let owners = batch.column(1).as_any().downcast_ref::<StringArray>().unwrap();
    (0..batch.num_rows())
        .map(|i| (ids.value(i), owners.value(i).to_string()))
        .collect()
}

// 4 appenders × 25 appends, 2 writers doing filtered overwrites and 1 doing deletes, all at once on
// one table. Afterwards the committed snapshots, replayed in order on a model, give exactly the
// table's rows; every success is in the history; every failure was a `Conflict` that committed
// nothing.
both_backends!(concurrency_matrix_replays_exactly, |ctx: Ctx| async move {
    let t = ctx.table("events");
    ctx.create_events_table(&t, &[]).await;
    let started = std::time::Instant::now();
    let mut handles: Vec<tokio::task::JoinHandle<Outcome>> = Vec::new();
    for a in 0..4i64 {
        let floe = Floe::connect(ctx.settings.clone()).await.unwrap();
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            let owner = format!("ap{a}");
            let mut done = Vec::new();
            for i in 0..25i64 {
                let first = 1_000_000 * (a + 1) + i * 10;
                let batch = owned_rows(first..first + 10, &owner);
                let rows = rows_of(&batch);
                let r = floe
                    .append(&t, stream(vec![batch]), &WriteOptions::default())
                    .await
                    .expect("an append never conflicts");
                done.push((r.snapshot_id.unwrap(), Op::Append(rows)));
            }
            (done, 0)
        }));
    }
    for o in 0..2i64 {
        let floe = Floe::connect(ctx.settings.clone()).await.unwrap();
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            let owner = format!("ow{o}");
            let (mut done, mut conflicts) = (Vec::new(), 0);
            for v in 0..10i64 {
                let first = 10_000_000 * (o + 1) + v * 100;
                let batch = owned_rows(first..first + 5, &owner);
                let rows = rows_of(&batch);
                let filter = RowFilter::sql(format!("user_id = '{owner}'"));
                match floe
                    .overwrite(
                        &t,
                        Some(filter),
                        stream(vec![batch]),
                        &OverwriteOptions::default(),
                    )
                    .await
                {
                    Ok(r) => done.push((
                        r.snapshot_id.unwrap(),
                        Op::Overwrite {
                            owner: owner.clone(),
                            rows,
                        },
                    )),
                    Err(e) if e.kind() == ErrorKind::Conflict => conflicts += 1,
                    Err(e) => panic!("overwrite failed with something other than a conflict: {e}"),
                }
            }
            (done, conflicts)
        }));
    }
    {
        let floe = Floe::connect(ctx.settings.clone()).await.unwrap();
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            let (mut done, mut conflicts) = (Vec::new(), 0);
            for k in 0..10i64 {
                let (lo, hi) = (2_000_000 + k * 25, 2_000_000 + k * 25 + 12);
                let filter = RowFilter::sql(format!("user_id = 'ap1' AND id >= {lo} AND id < {hi}"));
                match floe.delete(&t, filter, &DeleteOptions::default()).await {
                    Ok(r) => {
                        if let Some(id) = r.snapshot_id {
                            done.push((
                                id,
                                Op::Delete {
                                    owner: "ap1".into(),
                                    lo,
                                    hi,
                                },
                            ));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Conflict => conflicts += 1,
                    Err(e) => panic!("delete failed with something other than a conflict: {e}"),
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            (done, conflicts)
        }));
    }
    let mut landed: HashMap<i64, Op> = HashMap::new();
    let mut conflicts = 0;
    for h in handles {
        let (done, c) = h.await.unwrap();
        conflicts += c;
        for (id, op) in done {
            assert!(landed.insert(id, op).is_none(), "snapshot {id} reported twice");
        }
    }
    let wall = started.elapsed();

    // Replay main's history, oldest first, on the model.
    let table = ctx.floe.load_table(&t).await.unwrap();
    let mut chain = Vec::new();
    let mut cur = table.current_snapshot().map(|s| s.snapshot_id());
    while let Some(id) = cur {
        chain.push(id);
        cur = table.metadata().snapshot_by_id(id).unwrap().parent_snapshot_id();
    }
    chain.reverse();
    let in_history: HashSet<i64> = chain.iter().copied().collect();
    for id in landed.keys() {
        assert!(
            in_history.contains(id),
            "reported commit {id} is not in main's history"
        );
    }
    assert_eq!(
        chain.len(),
        landed.len(),
        "a snapshot in the history that no writer reported"
    );
    let mut model: BTreeSet<(i64, String)> = BTreeSet::new();
    for id in &chain {
        match &landed[id] {
            Op::Append(rows) => model.extend(rows.iter().cloned()),
            Op::Overwrite { owner, rows } => {
                model.retain(|(_, o)| o != owner);
                model.extend(rows.iter().cloned());
            }
            Op::Delete { owner, lo, hi } => model.retain(|(i, o)| !(o == owner && i >= lo && i < hi)),
        }
    }
    let batches: Vec<RecordBatch> = ctx
        .floe
        .scan(
            &t,
            &floe::ScanOptions {
                columns: Some(vec!["id".into(), "user_id".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .batches
        .try_collect()
        .await
        .unwrap();
    let mut rows: Vec<(i64, String)> = batches.iter().flat_map(rows_of).collect();
    rows.sort();
    let expected: Vec<(i64, String)> = model.into_iter().collect();
    assert_eq!(rows.len(), expected.len(), "row count");
    assert_eq!(rows, expected);
    let attempted = 4 * 25 + 2 * 10 + 10;
    eprintln!(
        "concurrency matrix {:?}: {attempted} commits attempted, {} landed (incl. {} no-op deletes skipped), \
         {conflicts} conflicts, {:.1} s",
        ctx.backend,
        landed.len(),
        attempted - landed.len() as u32 - conflicts,
        wall.as_secs_f64()
    );
});

/// Run `args` in `n` `floe` processes at once; their outputs.
fn at_once(
    n: usize,
    dir: &std::path::Path,
    ctx: Option<&Ctx>,
    env: &[(&str, String)],
    args: &[&str],
) -> Vec<std::process::Output> {
    let children: Vec<std::process::Child> = (0..n)
        .map(|_| {
            let mut c = floe_cmd(dir, ctx);
            for (k, v) in env {
                c.env(k, v);
            }
            c.args(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn floe")
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

both_backends!(eight_processes_create_one_table, |ctx: Ctx| async move {
    let dir = tempfile::tempdir().unwrap();
    let table = format!("{}.raced", ctx.ns);
    let outputs = tokio::task::spawn_blocking({
        let (dir, ctx_settings, backend) = (dir.path().to_path_buf(), ctx.settings.clone(), ctx.backend);
        move || {
            let env = settings_env(&ctx_settings, backend);
            at_once(
                8,
                &dir,
                None,
                &env,
                &["create", &table, "--schema", "id long not null, name string"],
            )
        }
    })
    .await
    .unwrap();
    let won: Vec<_> = outputs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(won.len(), 1, "exactly one process creates the table");
    for o in outputs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("already exists"), "{err}");
    }
    // One table, loadable, with one metadata file.
    let t = ctx.table("raced");
    let table = ctx.floe.load_table(&t).await.unwrap();
    let metadata = ctx
        .floe
        .storage()
        .list(&format!("{}/metadata/", table.location()))
        .await
        .unwrap();
    assert_eq!(metadata.len(), 1, "{metadata:?}");
});

both_backends!(eight_processes_set_up_a_fresh_catalog, |ctx: Ctx| async move {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = ctx.settings.clone();
    let mut fresh_db = None;
    match ctx.backend {
        Backend::SqliteLocal => {
            settings.catalog_url = format!("sqlite:{}", dir.path().join("fresh.db").display());
        }
        Backend::PostgresS3 => {
            // A database no floe has touched yet.
            let name = format!("fresh_{}", uuid::Uuid::new_v4().simple());
            let pool = sqlx::PgPool::connect(&ctx.settings.catalog_url).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
                .unwrap();
            let (base, _) = ctx.settings.catalog_url.rsplit_once('/').unwrap();
            settings.catalog_url = format!("{base}/{name}");
            fresh_db = Some((pool, name));
        }
    }
    let outputs = tokio::task::spawn_blocking({
        let (dir, settings, backend) = (dir.path().to_path_buf(), settings.clone(), ctx.backend);
        move || at_once(8, &dir, None, &settings_env(&settings, backend), &["namespaces"])
    })
    .await
    .unwrap();
    for o in &outputs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let floe = Floe::connect(settings.clone()).await.unwrap();
    assert!(floe.namespaces().await.unwrap().is_empty());
    drop(floe);
    if let Some((pool, name)) = fresh_db {
        let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&pool)
            .await;
    }
});
