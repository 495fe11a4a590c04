//! `floe ingest` from the test Postgres (it doubles as the source) into both backends: every split
//! strategy extracts exactly the source's rows; a unit whose connection is killed is retried alone;
//! a killed run resumes into one snapshot without duplicates; bad sources are clear errors that
//! commit nothing.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;

use arrow::array::{Array, Decimal128Array, Int64Array};
use floe::ingest::units::{PartitionBy, UnitCount};
use floe::ingest::IngestOptions;
use floe::ErrorKind;

use crate::both_backends;
use crate::support::*;

fn source_url() -> String {
    std::env::var("FLOE_TEST_POSTGRES_URL").expect("the test command sets FLOE_TEST_POSTGRES_URL")
}

/// Run one statement on the source.
async fn exec(pool: &sqlx::PgPool, sql: &str) {
    sqlx::query(sql).execute(pool).await.unwrap();
}

/// Spawn a task that, every 50 ms for up to 10 s, terminates the backends `select` (a query over
/// `pg_stat_activity` returning `pg_terminate_backend(pid)`, with `$1`, `$2`, ... bound to `binds`)
/// finds; it answers whether it terminated one.
fn terminate_when(pool: &sqlx::PgPool, select: &str, binds: Vec<String>) -> tokio::task::JoinHandle<bool> {
    let (pool, select) = (pool.clone(), select.to_string());
    tokio::spawn(async move {
        for _ in 0..200 {
            let mut query = sqlx::query_scalar::<_, bool>(&select);
            for b in &binds {
                query = query.bind(b);
            }
            if query.fetch_optional(&pool).await.unwrap() == Some(true) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    })
}

/// A source table of ~300,000 rows: id gaps, skewed and empty days, NULLs, numeric and timestamptz.
async fn source_table(name: &str) -> sqlx::PgPool {
    let pool = sqlx::PgPool::connect(&source_url()).await.unwrap();
    exec(&pool, &format!("DROP TABLE IF EXISTS {name}")).await;
    sqlx::query(&format!(
        "CREATE TABLE {name} AS
         SELECT g::bigint AS id,
                CASE WHEN g % 97 = 0 THEN NULL ELSE 'user-' || (g % 1000) END AS user_name,
                ((g % 100000) / 100.0)::numeric(12,2) AS amount,
                CASE WHEN g % 501 = 0 THEN NULL
                     ELSE timestamptz '2024-01-01 00:00:00+00'
                          + make_interval(days => (CASE WHEN g % 10 < 5 THEN 3 ELSE g % 30 END))
                          + (g % 86400) * interval '1 second' END AS created_at,
                g % 3 = 0 AS flag,
                convert_to('b' || g, 'UTF8') AS payload,
                jsonb_build_object('g', g) AS doc
         FROM generate_series(1, 360000) g
         WHERE NOT (g % 1000 BETWEEN 100 AND 299) AND NOT ((CASE WHEN g % 10 < 5 THEN 3 ELSE g % 30 END) BETWEEN 10 AND 12)"
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(&format!("ANALYZE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    pool
}

/// (rows, distinct ids, sum of ids, sum of amounts in cents, non-null names) of the source.
async fn source_figures(pool: &sqlx::PgPool, name: &str) -> (i64, i64, i64, i64, i64) {
    sqlx::query_as(&format!(
        "SELECT count(*), count(DISTINCT id), sum(id)::bigint, (sum(amount) * 100)::bigint, count(user_name) FROM {name}"
    ))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The same figures of a floe table.
async fn table_figures(ctx: &Ctx, table: &floe::TableName) -> (i64, i64, i64, i64, i64) {
    let batches = scan_columns(&ctx.floe, table, &["id", "amount", "user_name"]).await;
    let (mut rows, mut sum, mut cents, mut names) = (0i64, 0i64, 0i64, 0i64);
    let mut ids = BTreeSet::new();
    for b in &batches {
        let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let amount = b.column(1).as_any().downcast_ref::<Decimal128Array>().unwrap();
        for i in 0..b.num_rows() {
            rows += 1;
            sum += id.value(i);
            ids.insert(id.value(i));
            cents += amount.value(i) as i64;
        }
        names += (b.num_rows() - b.column(2).null_count()) as i64;
    }
    (rows, ids.len() as i64, sum, cents, names)
}

fn options(ctx: &Ctx, source: &str, into: &str, by: Option<&str>) -> IngestOptions {
    let mut o = IngestOptions::new(source_url(), format!("{}.{into}", ctx.ns));
    o.table = Some(source.to_string());
    o.partition_by = by.map(|b| PartitionBy::parse(b).unwrap());
    o.create = true;
    o.verify = true;
    o
}

both_backends!(
    every_strategy_extracts_exactly_the_source_rows,
    |ctx: Ctx| async move {
        let name = format!("src_{}", ctx.ns);
        let pool = source_table(&name).await;
        let expected = source_figures(&pool, &name).await;
        for (by, table) in [
            (None, "whole"),
            (Some("date(created_at)"), "by_day"),
            (Some("id(id)"), "by_id"),
            (Some("hash(user_name)"), "by_hash"),
        ] {
            let o = options(&ctx, &name, table, by);
            let plan = floe::ingest::plan(&ctx.floe, &o).await.unwrap();
            if by.is_some() {
                assert!(
                    plan.units.len() >= 10,
                    "{by:?}: auto gives at least 10 units: {}",
                    plan.units.len()
                );
            }
            let report = floe::ingest::ingest(&ctx.floe, &o).await.unwrap();
            assert_eq!(report.units.len(), plan.units.len());
            let t = ctx.table(table);
            assert_eq!(table_figures(&ctx, &t).await, expected, "{by:?}");
            let loaded = ctx.floe.load_table(&t).await.unwrap();
            assert_eq!(loaded.snapshots().len(), 1, "{by:?}: one snapshot");
            let summary = loaded
                .current_snapshot()
                .unwrap()
                .summary()
                .additional_properties
                .clone();
            assert_eq!(summary["floe.run-id"], report.run_id);
            assert_eq!(summary["floe.units"], report.units.len().to_string());
            if let Some(read) = crate::interop::pyiceberg_read(&ctx, table) {
                assert_eq!(
                    read["rows"].as_array().unwrap().len() as i64,
                    expected.0,
                    "{by:?}: PyIceberg"
                );
            }
        }
        // The skewed day is a unit of its own, and the empty days get none.
        let plan = floe::ingest::plan(&ctx.floe, &options(&ctx, &name, "x", Some("date(created_at)")))
            .await
            .unwrap();
        assert!(
            plan.units.iter().all(|u| !u.describe().contains("2024-01-11 <=")),
            "{:?}",
            plan.units
        );
        exec(&pool, &format!("DROP TABLE {name}")).await;
    }
);

/// A source that sleeps once per query (a materialized one-row CTE): time to find a unit's
/// connection and kill it.
fn sleepy_query(name: &str, seconds: f64) -> String {
    format!("WITH s AS MATERIALIZED (SELECT pg_sleep({seconds})) SELECT t.id, t.user_name, t.amount FROM {name} t, s")
}

both_backends!(
    a_unit_whose_connection_dies_is_retried_alone,
    |ctx: Ctx| async move {
        let name = format!("src_retry_{}", ctx.ns);
        let pool = source_table(&name).await;
        let expected = source_figures(&pool, &name).await;
        let mut o = IngestOptions::new(source_url(), format!("{}.retried", ctx.ns));
        o.query = Some(sleepy_query(&name, 1.0));
        o.partition_by = Some(PartitionBy::Id("id".into()));
        o.units = UnitCount::Exactly(4);
        o.create = true;
        // Unit 1's first attempt of this test's run (the query names this test's source table:
        // the other backend's run of this test has a unit 1 too).
        let killer = terminate_when(
            &pool,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name LIKE 'floe-ingest-unit-1-attempt-1-run-%' \
               AND query LIKE '%' || $1 || '%' LIMIT 1",
            vec![name.clone()],
        );
        let report = floe::ingest::ingest(&ctx.floe, &o).await.unwrap();
        assert!(
            killer.await.unwrap(),
            "the test found unit 1's connection and killed it"
        );
        let attempts: Vec<u32> = report.units.iter().map(|u| u.attempts).collect();
        assert_eq!(attempts[1], 2, "{attempts:?}");
        assert!(
            attempts.iter().enumerate().all(|(i, a)| i == 1 || *a == 1),
            "only unit 1 ran twice: {attempts:?}"
        );
        let t = ctx.table("retried");
        let got = table_figures(&ctx, &t).await;
        assert_eq!(
            (got.0, got.1, got.2, got.3, got.4),
            (expected.0, expected.1, expected.2, expected.3, expected.4)
        );
        exec(&pool, &format!("DROP TABLE {name}")).await;
    }
);

both_backends!(
    units_read_one_instant_of_a_source_being_written,
    |ctx: Ctx| async move {
        // A writer moves rows from the first unit's key range to the last unit's while the units
        // run two at a time: a unit reading the source as of its own start would read a moved row
        // twice (before the move in the first range, after it in the last).
        const ROWS: i64 = 20_000;
        let name = format!("src_moving_{}", ctx.ns);
        let pool = sqlx::PgPool::connect(&source_url()).await.unwrap();
        exec(&pool, &format!("DROP TABLE IF EXISTS {name}")).await;
        exec(
            &pool,
            &format!(
                "CREATE TABLE {name} AS SELECT g::bigint AS id, g::bigint AS token FROM generate_series(1, {ROWS}) g"
            ),
        )
        .await;
        exec(&pool, &format!("ALTER TABLE {name} ADD PRIMARY KEY (id)")).await;
        let mut o = IngestOptions::new(source_url(), format!("{}.moving", ctx.ns));
        o.query = Some(format!(
            "WITH s AS MATERIALIZED (SELECT pg_sleep(0.5)) SELECT t.id, t.token FROM {name} t, s"
        ));
        o.partition_by = Some(PartitionBy::Id("id".into()));
        o.units = UnitCount::Exactly(4);
        o.parallel = 2;
        o.create = true;
        o.verify = true;
        let prepared = floe::ingest::prepare(&ctx.floe, &o).await.unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mover = {
            let (pool, stop, name) = (pool.clone(), stop.clone(), name.clone());
            tokio::spawn(async move {
                let mut moves = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    exec(
                        &pool,
                        &format!(
                            "UPDATE {name} SET id = id + 1000000 WHERE id = (SELECT min(id) FROM {name})"
                        ),
                    )
                    .await;
                    moves += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                moves
            })
        };
        let report = prepared.run().await.unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let moves = mover.await.unwrap();
        assert!(moves >= 20, "the writer moved rows during the run: {moves}");
        assert!(
            report.source_snapshot.is_some(),
            "the units shared an exported snapshot"
        );
        assert_eq!(report.rows, ROWS as u64);
        let batches = scan_columns(&ctx.floe, &ctx.table("moving"), &["token"]).await;
        let mut tokens = BTreeSet::new();
        let mut rows = 0;
        for b in &batches {
            let token = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            rows += b.num_rows();
            tokens.extend(token.values().iter().copied());
        }
        assert_eq!(rows as i64, ROWS, "every row exactly once");
        assert_eq!(tokens.len() as i64, ROWS, "no row read twice");
        exec(&pool, &format!("DROP TABLE {name}")).await;
    }
);

both_backends!(
    a_run_whose_source_snapshot_is_lost_fails_clearly_and_resumes,
    |ctx: Ctx| async move {
        let name = format!("src_lost_{}", ctx.ns);
        let pool = source_table(&name).await;
        let expected = source_figures(&pool, &name).await;
        let mut o = IngestOptions::new(source_url(), format!("{}.lost", ctx.ns));
        o.query = Some(sleepy_query(&name, 1.0));
        o.partition_by = Some(PartitionBy::Id("id".into()));
        o.units = UnitCount::Exactly(3);
        o.parallel = 1;
        o.create = true;
        let prepared = floe::ingest::prepare(&ctx.floe, &o).await.unwrap();
        let run_id = prepared.run_id().to_string();
        // End the connection that holds the run's snapshot while the first unit reads.
        // Once unit 0 reads (its query names this test's source table).
        let killer = terminate_when(
            &pool,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 \
             AND EXISTS (SELECT 1 FROM pg_stat_activity \
                         WHERE application_name LIKE 'floe-ingest-unit-0-attempt-1-run-%' \
                           AND query LIKE '%' || $2 || '%') LIMIT 1",
            vec![format!("floe-ingest-snapshot-run-{run_id}"), name.clone()],
        );
        let e = prepared.run().await.unwrap_err();
        assert!(killer.await.unwrap(), "the test found the snapshot's connection");
        assert!(
            e.to_string().contains("source snapshot") && e.to_string().contains("nothing was committed"),
            "{e}"
        );
        let t = ctx.table("lost");
        let table = ctx.floe.load_table(&t).await.unwrap();
        assert!(table.current_snapshot().is_none(), "nothing committed");
        // Resumed: the units not done read at a new snapshot, and the result is exact.
        let report = floe::ingest::resume(&ctx.floe, &run_id, None).await.unwrap();
        assert!(report.source_snapshot.is_some());
        assert_eq!(table_figures(&ctx, &t).await, expected);
        assert_eq!(ctx.floe.load_table(&t).await.unwrap().snapshots().len(), 1);
        exec(&pool, &format!("DROP TABLE {name}")).await;
    }
);

both_backends!(a_killed_run_resumes_into_one_snapshot, |ctx: Ctx| async move {
    let name = format!("src_resume_{}", ctx.ns);
    let pool = source_table(&name).await;
    let expected = source_figures(&pool, &name).await;
    let dir = tempfile::tempdir().unwrap();
    let into = format!("{}.resumed", ctx.ns);
    let query = sleepy_query(&name, 0.7);
    let mut child = floe_cmd(dir.path(), Some(&ctx))
        .args([
            "ingest",
            &source_url(),
            "--into",
            &into,
            "--query",
            &query,
            "--partition-by",
            "id(id)",
            "--units",
            "10",
            "--parallel",
            "1",
            "--create",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some units are done, then kill -9.
    let db = ctx.floe.database().clone();
    let mut run_id = None;
    for _ in 0..300 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let runs = floe::ingest::record::recent_runs(&db, 1).await.unwrap();
        if let Some(r) = runs.first() {
            let (_, units) = floe::ingest::record::load_run(&db, &r.run_id).await.unwrap();
            if units.iter().filter(|u| u.status == "done").count() >= 3 {
                run_id = Some(r.run_id.clone());
                break;
            }
        }
    }
    let run_id = run_id.expect("units got done");
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9));
    let t = ctx.table("resumed");
    if let Ok(table) = ctx.floe.load_table(&t).await {
        assert!(
            table.current_snapshot().is_none(),
            "nothing was committed by the killed run"
        );
    }
    let out = floe_cmd(dir.path(), Some(&ctx))
        .args(["ingest", "--resume", &run_id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = ctx.floe.load_table(&t).await.unwrap();
    assert_eq!(table.snapshots().len(), 1, "one snapshot");
    assert_eq!(
        table_figures(&ctx, &t).await,
        expected,
        "exact rows, no duplicates"
    );
    // Resuming again is refused: the run is committed.
    let out = floe_cmd(dir.path(), Some(&ctx))
        .args(["ingest", "--resume", &run_id])
        .output()
        .unwrap();
    assert!(!out.status.success());
    exec(&pool, &format!("DROP TABLE {name}")).await;
});

both_backends!(
    bad_sources_are_clear_errors_that_commit_nothing,
    |ctx: Ctx| async move {
        let pool = sqlx::PgPool::connect(&source_url()).await.unwrap();
        let odd = format!("src_odd_{}", ctx.ns);
        sqlx::query(&format!(
        "CREATE TABLE {odd} AS SELECT 1::bigint AS id, interval '1 day' AS span, '{{}}'::jsonb AS doc, 1.5::numeric AS loose"
    ))
    .execute(&pool)
    .await
    .unwrap();
        let check = |e: floe::Error, kind: ErrorKind, text: &str| {
            assert_eq!(e.kind(), kind, "{e}");
            assert!(e.to_string().contains(text), "{e} lacks {text:?}");
        };
        let mut o = IngestOptions::new("postgres://floe@127.0.0.1:1/nope", format!("{}.bad", ctx.ns));
        o.table = Some("anything".into());
        o.create = true;
        check(
            floe::ingest::ingest(&ctx.floe, &o).await.unwrap_err(),
            ErrorKind::Storage,
            "cannot connect to the source",
        );
        let mut o = IngestOptions::new(source_url(), format!("{}.bad", ctx.ns));
        o.table = Some("no_such_table".into());
        o.create = true;
        check(
            floe::ingest::ingest(&ctx.floe, &o).await.unwrap_err(),
            ErrorKind::InvalidInput,
            "no_such_table",
        );
        o.table = Some(odd.clone());
        check(
            floe::ingest::ingest(&ctx.floe, &o).await.unwrap_err(),
            ErrorKind::InvalidInput,
            "\"span\" of type interval",
        );
        o.query = Some(format!("SELECT id, doc FROM {odd}"));
        o.table = None;
        o.partition_by = Some(PartitionBy::Id("missing".into()));
        check(
            floe::ingest::ingest(&ctx.floe, &o).await.unwrap_err(),
            ErrorKind::InvalidInput,
            "no column \"missing\"",
        );
        o.partition_by = Some(PartitionBy::Hash("doc".into()));
        check(
            floe::ingest::ingest(&ctx.floe, &o).await.unwrap_err(),
            ErrorKind::InvalidInput,
            "cannot hash",
        );
        o.query = Some(format!("SELECT id, loose FROM {odd}"));
        o.partition_by = None;
        check(
            floe::ingest::ingest(&ctx.floe, &o).await.unwrap_err(),
            ErrorKind::InvalidInput,
            "precision",
        );
        // Nothing was created or committed.
        assert!(ctx.floe.load_table(&ctx.table("bad")).await.is_err());
        sqlx::query(&format!("DROP TABLE {odd}"))
            .execute(&pool)
            .await
            .unwrap();
    }
);

/// A CSV of rows `ids` (`id,name,amount`), header first.
fn csv_rows(ids: std::ops::Range<i64>) -> bytes::Bytes {
    let mut s = String::from("id,name,amount\n");
    for i in ids {
        s.push_str(&format!("{i},name-{},{}.{:02}\n", i % 37, i % 1000, i % 100));
    }
    bytes::Bytes::from(s)
}

/// (rows, distinct ids, sum of ids) of a table with an `id` column.
async fn id_figures(ctx: &Ctx, table: &floe::TableName) -> (usize, usize, i64) {
    let batches = scan_columns(&ctx.floe, table, &["id"]).await;
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            a.values().to_vec()
        })
        .collect();
    let distinct = ids.iter().collect::<BTreeSet<_>>().len();
    (ids.len(), distinct, ids.iter().sum())
}

/// Ingest `source` into `table`, split `by` into `units`; it must land as one snapshot holding the ids
/// `0..rows` once each.
async fn ingest_ids_exactly(
    ctx: &Ctx,
    source: String,
    table: &str,
    by: PartitionBy,
    units: UnitCount,
    rows: i64,
) -> floe::ingest::IngestReport {
    let mut o = IngestOptions::new(source, format!("{}.{table}", ctx.ns));
    o.partition_by = Some(by);
    o.units = units;
    let report = floe::ingest::ingest(&ctx.floe, &o).await.unwrap();
    assert_eq!(report.rows, rows as u64, "{table}");
    let t = ctx.table(table);
    assert_eq!(
        id_figures(ctx, &t).await,
        (rows as usize, rows as usize, (0..rows).sum()),
        "{table}"
    );
    assert_eq!(
        ctx.floe.load_table(&t).await.unwrap().snapshots().len(),
        1,
        "{table}"
    );
    report
}

both_backends!(
    file_and_byte_range_units_extract_every_row_once,
    |ctx: Ctx| async move {
        use arrow::datatypes::{DataType, Field, Schema};
        let dir = tempfile::tempdir().unwrap();
        let base = ctx.input_uri(dir.path(), "ingest-files");
        let storage = ctx.floe.storage();
        // Three files, one unit each.
        for (i, ids) in [(0, 0..1000), (1, 1000..2500), (2, 2500..2600)] {
            storage
                .write(&format!("{base}/many/part-{i}.csv"), csv_rows(ids))
                .await
                .unwrap();
        }
        // One large file, split into byte ranges that start at line starts.
        storage
            .write(&format!("{base}/one/big.csv"), csv_rows(0..50_000))
            .await
            .unwrap();
        // A file with a quoted field holding a line break: no boundary is decidable, one unit.
        storage
            .write(
                &format!("{base}/quoted/q.csv"),
                bytes::Bytes::from_static(b"id,name,amount\n1,\"two\nlines\",1.5\n2,plain,2.5\n"),
            )
            .await
            .unwrap();
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
        ]);
        for t in ["by_file", "by_bytes", "quoted"] {
            ctx.floe
                .create_table(
                    &ctx.table(t),
                    floe::TableDefinition {
                        schema: schema.clone(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        }

        let report = ingest_ids_exactly(
            &ctx,
            format!("{base}/many/*.csv"),
            "by_file",
            PartitionBy::File,
            UnitCount::Auto,
            2600,
        )
        .await;
        assert_eq!(report.units.len(), 3);

        let mut o = IngestOptions::new(format!("{base}/one/big.csv"), format!("{}.by_bytes", ctx.ns));
        o.partition_by = Some(PartitionBy::Bytes);
        o.units = UnitCount::Exactly(7);
        let plan = floe::ingest::plan(&ctx.floe, &o).await.unwrap();
        assert_eq!(plan.units.len(), 7, "{:?}", plan.note);
        let source = format!("{base}/one/big.csv");
        let report = ingest_ids_exactly(
            &ctx,
            source,
            "by_bytes",
            PartitionBy::Bytes,
            UnitCount::Exactly(7),
            50_000,
        )
        .await;
        assert_eq!(report.units.len(), 7);

        let mut o = IngestOptions::new(format!("{base}/quoted/q.csv"), format!("{}.quoted", ctx.ns));
        o.partition_by = Some(PartitionBy::Bytes);
        o.units = UnitCount::Exactly(4);
        let plan = floe::ingest::plan(&ctx.floe, &o).await.unwrap();
        assert_eq!(plan.units.len(), 1);
        assert!(
            plan.note.as_deref().unwrap_or("").contains("quoted"),
            "{:?}",
            plan.note
        );
        let report = floe::ingest::ingest(&ctx.floe, &o).await.unwrap();
        assert_eq!(report.rows, 2);
        assert_eq!(id_figures(&ctx, &ctx.table("quoted")).await, (2, 2, 3));

        // Byte ranges split one CSV file: two files, or a Parquet file, are clear errors.
        let mut o = IngestOptions::new(format!("{base}/many/*.csv"), format!("{}.by_bytes", ctx.ns));
        o.partition_by = Some(PartitionBy::Bytes);
        let err = floe::ingest::plan(&ctx.floe, &o).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }
);
