//! `floe ingest` from the test Postgres (it doubles as the source) into both backends: every split
//! strategy extracts exactly the source's rows; a unit whose connection is killed is retried alone;
//! a killed run resumes into one snapshot without duplicates; bad sources are clear errors that
//! commit nothing; incremental (upsert since a watermark) runs keep the table equal to a changing
//! source and commit nothing twice.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;

use arrow::array::{Array, Decimal128Array, Int64Array};
use floe::ingest::units::{PartitionBy, UnitCount};
use floe::ingest::watermark::Lookback;
use floe::ingest::{IngestMode, IngestOptions, UpsertIngest};
use floe::ErrorKind;

use crate::both_backends;
use crate::support::*;

pub(crate) fn source_url() -> String {
    std::env::var("FLOE_TEST_POSTGRES_URL").expect("the test command sets FLOE_TEST_POSTGRES_URL")
}

/// Run one statement on the source.
pub(crate) async fn exec(pool: &sqlx::PgPool, sql: &str) {
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

/// [`terminate_when`] unit 1's first attempt of a run reading the source table `name` (the query
/// names this test's table: another test's run, or the other backend's, has a unit 1 too).
pub(crate) fn kill_first_attempt_of_unit_1(pool: &sqlx::PgPool, name: &str) -> tokio::task::JoinHandle<bool> {
    terminate_when(
        pool,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name LIKE 'floe-ingest-unit-1-attempt-1-run-%' \
           AND query LIKE '%' || $1 || '%' LIMIT 1",
        vec![name.to_string()],
    )
}

/// A source table of ~300,000 rows: id gaps, skewed and empty days, NULLs, numeric and timestamptz.
pub(crate) async fn source_table(name: &str) -> sqlx::PgPool {
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
pub(crate) async fn source_figures(pool: &sqlx::PgPool, name: &str) -> (i64, i64, i64, i64, i64) {
    sqlx::query_as(&format!(
        "SELECT count(*), count(DISTINCT id), sum(id)::bigint, (sum(amount) * 100)::bigint, count(user_name) FROM {name}"
    ))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The same figures of a floe table.
pub(crate) async fn table_figures(ctx: &Ctx, table: &floe::TableName) -> (i64, i64, i64, i64, i64) {
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
pub(crate) fn sleepy_query(name: &str, seconds: f64) -> String {
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
        let killer = kill_first_attempt_of_unit_1(&pool, &name);
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

/// A row as the CDC test compares it: name, amount in cents, `updated_at` in microseconds.
type CdcRow = (Option<String>, i64, i64);

/// Every row of the CDC source `name`, by id.
async fn cdc_source_rows(pool: &sqlx::PgPool, name: &str) -> BTreeMap<i64, CdcRow> {
    let rows: Vec<(i64, Option<String>, i64, i64)> = sqlx::query_as(&format!(
        "SELECT id, name, (amount * 100)::bigint, (extract(epoch FROM updated_at) * 1000000)::bigint FROM {name}"
    ))
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().map(|(id, n, a, u)| (id, (n, a, u))).collect()
}

/// Every row of a floe table with the CDC source's columns, by id.
async fn cdc_table_rows(ctx: &Ctx, table: &floe::TableName) -> BTreeMap<i64, CdcRow> {
    use arrow::array::{AsArray, StringArray};
    use arrow::datatypes::TimestampMicrosecondType;
    let batches = scan_columns(&ctx.floe, table, &["id", "name", "amount", "updated_at"]).await;
    let mut rows = BTreeMap::new();
    for b in &batches {
        let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let name = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let amount = b.column(2).as_any().downcast_ref::<Decimal128Array>().unwrap();
        let updated = b.column(3).as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            let n = (!name.is_null(i)).then(|| name.value(i).to_string());
            let previous = rows.insert(id.value(i), (n, amount.value(i) as i64, updated.value(i)));
            assert!(previous.is_none(), "id {} twice", id.value(i));
        }
    }
    rows
}

/// An incremental run of `source` into `NS.cdc`: three id units, upsert by id since `updated_at`
/// with a 15 minute lookback, tombstones from `deletes` since the window's start.
fn cdc_options(ctx: &Ctx, source: &str, deletes: &str) -> IngestOptions {
    let mut o = IngestOptions::new(source_url(), format!("{}.cdc", ctx.ns));
    o.table = Some(source.to_string());
    o.partition_by = Some(PartitionBy::Id("id".into()));
    o.units = UnitCount::Exactly(3);
    o.create = true;
    o.verify = true;
    o.mode = IngestMode::Upsert(UpsertIngest {
        key: vec!["id".into()],
        since: Some("updated_at".into()),
        lookback: Some(Lookback::parse("15m").unwrap()),
        deletes_query: Some(format!("SELECT id FROM {deletes} WHERE deleted_at >= {{since}}")),
    });
    o
}

/// The watermark the table's current snapshot records.
async fn recorded_watermark(ctx: &Ctx, table: &floe::TableName) -> Option<String> {
    let loaded = ctx.floe.load_table(table).await.unwrap();
    floe::ingest::watermark::recorded(&loaded, "updated_at").map(|(_, w)| w)
}

/// The source's greatest `updated_at` as floe records a watermark.
async fn source_watermark(pool: &sqlx::PgPool, name: &str) -> String {
    sqlx::query_scalar(&format!(
        "SELECT to_char(max(updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM {name}"
    ))
    .fetch_one(pool)
    .await
    .unwrap()
}

both_backends!(
    incremental_runs_keep_the_table_equal_to_the_source_and_commit_nothing_twice,
    |ctx: Ctx| async move {
        let (src, del) = (format!("src_cdc_{}", ctx.ns), format!("src_cdc_del_{}", ctx.ns));
        let pool = sqlx::PgPool::connect(&source_url()).await.unwrap();
        exec(&pool, &format!("DROP TABLE IF EXISTS {src}")).await;
        exec(&pool, &format!("DROP TABLE IF EXISTS {del}")).await;
        // `updated_at` 10 s apart (50 minutes in all), with microseconds, so the watermark must
        // round-trip exactly.
        exec(
            &pool,
            &format!(
                "CREATE TABLE {src} AS SELECT g::bigint AS id, 'name-' || g AS name, (g * 1.25)::numeric(12,2) AS amount,
                 timestamptz '2024-01-01 00:00:00+00' + g * interval '10.000001 second' AS updated_at
                 FROM generate_series(1, 300) g"
            ),
        )
        .await;
        exec(&pool, &format!("ALTER TABLE {src} ADD PRIMARY KEY (id)")).await;
        exec(
            &pool,
            &format!("CREATE TABLE {del} (id bigint, deleted_at timestamptz)"),
        )
        .await;
        let t = ctx.table("cdc");
        let o = cdc_options(&ctx, &src, &del);
        let snapshots = |ctx: &Ctx| {
            let t = t.clone();
            let floe = ctx.floe.clone();
            async move { floe.load_table(&t).await.unwrap().snapshots().len() }
        };
        // A run, then the same run again: the second reads only the lookback window and commits
        // nothing.
        let run_twice = |label: &'static str| {
            let (ctx, o, pool, src, t) = (&ctx, &o, &pool, &src, &t);
            async move {
                let before = if ctx.floe.load_table(t).await.is_ok() {
                    snapshots(ctx).await
                } else {
                    0
                };
                let report = floe::ingest::ingest(&ctx.floe, o).await.unwrap();
                assert!(report.snapshot_id.is_some(), "{label}: a snapshot");
                assert_eq!(snapshots(ctx).await, before + 1, "{label}: one snapshot");
                assert_eq!(
                    cdc_table_rows(ctx, t).await,
                    cdc_source_rows(pool, src).await,
                    "{label}: the table equals the source"
                );
                assert_eq!(
                    recorded_watermark(ctx, t).await,
                    Some(source_watermark(pool, src).await),
                    "{label}: the watermark is the greatest updated_at, exactly"
                );
                let again = floe::ingest::ingest(&ctx.floe, o).await.unwrap();
                let rows = again.upsert.as_ref().unwrap().rows;
                assert_eq!(
                    again.snapshot_id, None,
                    "{label} again: nothing committed: {rows:?}"
                );
                assert_eq!(
                    (rows.inserted, rows.updated, rows.deleted),
                    (0, 0, 0),
                    "{label} again"
                );
                assert_eq!(snapshots(ctx).await, before + 1, "{label} again: no new snapshot");
                assert_eq!(
                    cdc_table_rows(ctx, t).await,
                    cdc_source_rows(pool, src).await,
                    "{label} again"
                );
                (report, again)
            }
        };

        // Run 1: no watermark yet, every row.
        let (first, again) = run_twice("run 1").await;
        let window = first.plan.window.clone().unwrap();
        assert_eq!(window.watermark, None);
        assert_eq!(first.upsert.as_ref().unwrap().rows.inserted, 300);
        assert_eq!(first.units.len(), 3);
        assert!(first.source_snapshot.is_some());
        // The rerun read only the rows of the lookback window (15 minutes before the watermark).
        assert!(again.rows > 0 && again.rows < 300, "{}", again.rows);

        // Run 2: updates, inserts, and deletes with tombstones (one for a key the table never had).
        exec(
            &pool,
            &format!(
                "UPDATE {src} SET name = 'renamed-' || id, amount = amount + 1,
                 updated_at = timestamptz '2024-01-01 01:00:00.000007+00' WHERE id IN (5, 150, 299)"
            ),
        )
        .await;
        exec(
            &pool,
            &format!(
                "INSERT INTO {src} SELECT g, NULL, g, timestamptz '2024-01-01 01:00:01+00' FROM generate_series(301, 320) g"
            ),
        )
        .await;
        exec(&pool, &format!("DELETE FROM {src} WHERE id IN (10, 11, 200)")).await;
        exec(
            &pool,
            &format!(
                "INSERT INTO {del} VALUES (10, '2024-01-01 01:00:02+00'), (11, '2024-01-01 01:00:02+00'),
                 (200, '2024-01-01 01:00:02+00'), (9999, '2024-01-01 01:00:02+00')"
            ),
        )
        .await;
        let (second, _) = run_twice("run 2").await;
        let u = second.upsert.as_ref().unwrap();
        assert_eq!(
            (u.rows.inserted, u.rows.updated, u.rows.deleted),
            (20, 3, 3),
            "{u:?}"
        );
        assert_eq!(
            u.tombstones, 4,
            "the tombstone of a key the table lacks deletes nothing"
        );

        // Run 3: a late commit (older than the watermark, within the lookback), an update, a key
        // deleted then inserted again (its tombstone must not delete it), and a plain delete.
        exec(
            &pool,
            &format!("INSERT INTO {src} VALUES (400, 'late', 4, timestamptz '2024-01-01 00:55:00+00')"),
        )
        .await;
        exec(
            &pool,
            &format!(
                "UPDATE {src} SET amount = 0, updated_at = timestamptz '2024-01-01 02:00:00+00' WHERE id = 7"
            ),
        )
        .await;
        exec(&pool, &format!("DELETE FROM {src} WHERE id IN (30, 310)")).await;
        exec(
            &pool,
            &format!(
                "INSERT INTO {del} VALUES (30, '2024-01-01 01:59:00+00'), (310, '2024-01-01 01:59:00+00')"
            ),
        )
        .await;
        exec(
            &pool,
            &format!("INSERT INTO {src} VALUES (30, 'back', 30, timestamptz '2024-01-01 02:00:00+00')"),
        )
        .await;
        let (third, _) = run_twice("run 3").await;
        let u = third.upsert.as_ref().unwrap();
        assert_eq!(
            (u.rows.inserted, u.rows.updated, u.rows.deleted),
            (1, 2, 1),
            "the late row, 7 and 30, and 310: {u:?}"
        );
        let rows = cdc_table_rows(&ctx, &t).await;
        assert_eq!(
            rows[&400].0.as_deref(),
            Some("late"),
            "the late commit was caught"
        );
        assert_eq!(rows[&30].0.as_deref(), Some("back"));

        // The CLI: the same run, which commits nothing; then resuming a committed run is refused.
        let dir = tempfile::tempdir().unwrap();
        let before = snapshots(&ctx).await;
        let deletes_query = format!("SELECT id FROM {del} WHERE deleted_at >= {{since}}");
        let into = format!("{}.cdc", ctx.ns);
        let out = floe_cmd(dir.path(), Some(&ctx))
            .args([
                "ingest",
                &source_url(),
                "--into",
                &into,
                "--table",
                &src,
                "--mode",
                "upsert",
                "--key",
                "id",
                "--since",
                "updated_at",
                "--lookback",
                "15m",
                "--deletes-query",
                &deletes_query,
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("0 inserted, 0 updated, 0 deleted"), "{stdout}");
        assert_eq!(snapshots(&ctx).await, before);
        let e = floe::ingest::resume(&ctx.floe, &third.run_id, None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("already committed"), "{e}");
        exec(&pool, &format!("DROP TABLE {src}")).await;
        exec(&pool, &format!("DROP TABLE {del}")).await;
    }
);

both_backends!(
    incremental_ingest_from_sqlite_reads_changes_once,
    |ctx: Ctx| async move {
        // SQLite keeps timestamps as text, in whatever form they were written.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.db");
        let url = format!("sqlite:{}", path.display());
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        for sql in [
            "CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT, updated_at TIMESTAMP)",
            "INSERT INTO items VALUES (1, 'a', '2024-01-01 10:00:00'), (2, 'b', '2024-01-01T10:00:01.250Z'), \
             (3, 'c', '2024-01-01 10:00:02.5')",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        let mut o = IngestOptions::new(url, format!("{}.items", ctx.ns));
        o.table = Some("items".into());
        o.create = true;
        o.mode = IngestMode::Upsert(UpsertIngest {
            key: vec!["id".into()],
            since: Some("updated_at".into()),
            ..Default::default()
        });
        let t = ctx.table("items");
        let labels = |ctx: &Ctx| {
            let (floe, t) = (ctx.floe.clone(), t.clone());
            async move {
                use arrow::array::StringArray;
                let mut out = BTreeMap::new();
                for b in scan_columns(&floe, &t, &["id", "label"]).await {
                    let id = b
                        .column(0)
                        .as_any()
                        .downcast_ref::<arrow::array::Int32Array>()
                        .unwrap();
                    let label = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
                    for i in 0..b.num_rows() {
                        out.insert(id.value(i), label.value(i).to_string());
                    }
                }
                out
            }
        };
        let first = floe::ingest::ingest(&ctx.floe, &o).await.unwrap();
        assert_eq!(first.rows, 3);
        assert_eq!(
            first.upsert.unwrap().watermark.as_deref(),
            Some("2024-01-01T10:00:02.500000")
        );
        // Without a lookback, the rerun reads the rows at the watermark only, and changes nothing.
        let again = floe::ingest::ingest(&ctx.floe, &o).await.unwrap();
        assert_eq!((again.rows, again.snapshot_id), (1, None));
        sqlx::query("UPDATE items SET label = 'B', updated_at = '2024-01-01T11:00:00' WHERE id = 2")
            .execute(&pool)
            .await
            .unwrap();
        let second = floe::ingest::ingest(&ctx.floe, &o).await.unwrap();
        assert_eq!(second.rows, 2, "the row at the old watermark, and the update");
        assert_eq!(second.upsert.unwrap().rows.updated, 1);
        let expected: BTreeMap<i32, String> = [(1, "a"), (2, "B"), (3, "c")]
            .map(|(i, l)| (i, l.to_string()))
            .into();
        assert_eq!(labels(&ctx).await, expected);
    }
);

both_backends!(upsert_ingest_mistakes_are_clear_errors, |ctx: Ctx| async move {
    let name = format!("src_cdc_bad_{}", ctx.ns);
    let pool = sqlx::PgPool::connect(&source_url()).await.unwrap();
    exec(&pool, &format!("DROP TABLE IF EXISTS {name}")).await;
    exec(
        &pool,
        &format!("CREATE TABLE {name} AS SELECT 1::bigint AS id, now() AS updated_at, 'x'::text AS note"),
    )
    .await;
    let attempt = |spec: UpsertIngest| {
        let mut o = IngestOptions::new(source_url(), format!("{}.bad_cdc", ctx.ns));
        o.table = Some(name.clone());
        o.create = true;
        o.mode = IngestMode::Upsert(spec);
        let floe = ctx.floe.clone();
        async move { floe::ingest::ingest(&floe, &o).await.unwrap_err().to_string() }
    };
    let keyed = |since: Option<&str>| UpsertIngest {
        key: vec!["id".into()],
        since: since.map(str::to_string),
        ..Default::default()
    };
    let e = attempt(UpsertIngest::default()).await;
    assert!(e.contains("--key"), "{e}");
    let e = attempt(keyed(Some("missing"))).await;
    assert!(e.contains("no column \"missing\""), "{e}");
    let e = attempt(keyed(Some("note"))).await;
    assert!(e.contains("integer, date or timestamp"), "{e}");
    let e = attempt(UpsertIngest {
        lookback: Some(Lookback::Values(10)),
        ..keyed(Some("updated_at"))
    })
    .await;
    assert!(e.contains("give a duration"), "{e}");
    let e = attempt(UpsertIngest {
        deletes_query: Some(format!("SELECT note FROM {name}")),
        ..keyed(Some("updated_at"))
    })
    .await;
    assert!(e.contains("no key column \"id\""), "{e}");
    let e = attempt(UpsertIngest {
        deletes_query: Some(format!("SELECT id FROM {name} WHERE updated_at > {{since}}")),
        ..keyed(None)
    })
    .await;
    assert!(e.contains("{since}"), "{e}");
    assert!(
        ctx.floe.load_table(&ctx.table("bad_cdc")).await.is_err(),
        "nothing created"
    );
    exec(&pool, &format!("DROP TABLE {name}")).await;
});

/// (rows, rows with a key, sum of the keys, distinct keys) of a source table with a nullable `id`.
async fn key_figures(pool: &sqlx::PgPool, name: &str) -> (i64, i64, i64, i64) {
    sqlx::query_as(&format!(
        "SELECT count(*), count(id), coalesce(sum(id), 0)::bigint, count(DISTINCT id) FROM {name}"
    ))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The same figures of a floe table.
async fn table_key_figures(ctx: &Ctx, table: &floe::TableName) -> (i64, i64, i64, i64) {
    let (mut rows, mut keyed, mut sum, mut distinct) = (0, 0, 0, BTreeSet::new());
    for b in scan_columns(&ctx.floe, table, &["id"]).await {
        let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        rows += id.len() as i64;
        for v in id.iter().flatten() {
            keyed += 1;
            sum += v;
            distinct.insert(v);
        }
    }
    (rows, keyed, sum, distinct.len() as i64)
}

/// The lower bounds of a plan's `id` units (the first has none).
fn lower_bounds(plan: &floe::ingest::IngestPlan) -> Vec<i64> {
    plan.units
        .iter()
        .filter_map(|u| match &u.bounds {
            floe::ingest::units::Bounds::Range { lo: Some(lo), .. } => lo.parse().ok(),
            _ => None,
        })
        .collect()
}

/// Sequential scans of `name` the server has counted (its statistics reach other sessions when the
/// scanning session ends or idles).
async fn sequential_scans(pool: &sqlx::PgPool, name: &str) -> i64 {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query_scalar(&format!(
        "SELECT coalesce(seq_scan, 0) FROM pg_stat_user_tables WHERE relid = '{name}'::regclass"
    ))
    .fetch_one(&mut *conn)
    .await
    .unwrap()
}

both_backends!(
    id_units_planned_from_statistics_cover_every_row_once,
    |ctx: Ctx| async move {
        let pool = sqlx::PgPool::connect(&source_url()).await.unwrap();
        let (skewed, bare) = (format!("src_skew_{}", ctx.ns), format!("src_bare_{}", ctx.ns));
        // Dense keys, sparse keys, one key on 60,000 rows, negative keys and NULL keys; autovacuum
        // off, so that the statistics are exactly those the test takes.
        for name in [&skewed, &bare] {
            exec(&pool, &format!("DROP TABLE IF EXISTS {name}")).await;
            exec(
                &pool,
                &format!(
                    "CREATE TABLE {name} WITH (autovacuum_enabled = false) AS
                     SELECT g::bigint AS id, 'r' || g AS note FROM generate_series(1, 100000) g
                     UNION ALL SELECT g::bigint, 's' FROM generate_series(1000000, 10000000, 1000) g
                     UNION ALL SELECT 42, 'heavy' FROM generate_series(1, 60000)
                     UNION ALL SELECT -g, 'negative' FROM generate_series(1, 50) g
                     UNION ALL SELECT NULL, 'null' FROM generate_series(1, 500)"
                ),
            )
            .await;
            exec(&pool, &format!("CREATE INDEX ON {name} (id)")).await;
        }
        exec(&pool, &format!("ANALYZE {skewed}")).await;
        // The setup's own scans (CREATE INDEX reads the table) reach pg_stat only when their
        // session flushes its counts: at its end, or up to 10 s later when idle. End the setup's
        // sessions, and wait until the count of `skewed` holds still, before taking the baseline.
        pool.close().await;
        let pool = sqlx::PgPool::connect(&source_url()).await.unwrap();
        let mut last = sequential_scans(&pool, &skewed).await;
        for _ in 0..30 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let now = sequential_scans(&pool, &skewed).await;
            if now == last {
                break;
            }
            last = now;
        }
        let mut n = 0;
        let mut ingest_exactly = |name: String, expect_sized_by: &'static str| {
            n += 1;
            let (ctx, pool, into) = (&ctx, &pool, format!("by_stats_{n}"));
            async move {
                let o = options(ctx, &name, &into, Some("id(id)"));
                let plan = floe::ingest::plan(&ctx.floe, &o).await.unwrap();
                let sized_by = plan.sized_by.clone().unwrap_or_default();
                assert!(sized_by.contains(expect_sized_by), "{into}: {sized_by}");
                let bounds = lower_bounds(&plan);
                assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{into}: {bounds:?}");
                let report = floe::ingest::ingest(&ctx.floe, &o).await.unwrap();
                assert_eq!(report.units.len(), plan.units.len(), "{into}");
                assert_eq!(
                    table_key_figures(ctx, &ctx.table(&into)).await,
                    key_figures(pool, &name).await,
                    "{into}: every row once"
                );
                plan
            }
        };

        // Statistics and an index: planned without reading the table. The control: planning `bare`
        // (no statistics, no index) does scan it; once that scan is counted, the statistics plan's
        // sessions (which ended before) are counted too.
        let scans = sequential_scans(&pool, &skewed).await;
        let mut o = options(&ctx, &skewed, "unused", Some("id(id)"));
        o.create = false;
        let planned = floe::ingest::plan(&ctx.floe, &o).await.unwrap();
        exec(&pool, &format!("DROP INDEX {bare}_id_idx")).await;
        let bare_scans = sequential_scans(&pool, &bare).await;
        o.table = Some(bare.clone());
        let plan_bare = floe::ingest::plan(&ctx.floe, &o).await.unwrap();
        assert!(plan_bare.sized_by.unwrap().contains("full scan"));
        let mut counted = false;
        for _ in 0..100 {
            if sequential_scans(&pool, &bare).await > bare_scans {
                counted = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(counted, "the control's full scan was never counted");
        assert_eq!(
            sequential_scans(&pool, &skewed).await,
            scans,
            "planning scanned {skewed}"
        );
        // The heavy key is a unit of its own, and the NULLs go to the first unit.
        let plan = ingest_exactly(skewed.clone(), "pg_stats) and its index").await;
        assert_eq!(plan.units, planned.units);
        assert!(plan.units.len() >= 10, "{:?}", plan.units);
        assert!(
            plan.units.iter().any(|u| u.describe().contains("42 <= id < 43")),
            "{:?}",
            plan.units
        );
        assert!(plan.units[0].describe().contains("NULLs"));

        // Stale statistics: keys added beyond both ends since ANALYZE are bounded by the index, sized
        // by the rows the server counted since, and get units of their own instead of swelling the
        // end units.
        exec(
            &pool,
            &format!(
                "INSERT INTO {skewed} SELECT g, 'late' FROM generate_series(10000001, 10150000) g
                 UNION ALL SELECT -g, 'late' FROM generate_series(51, 150050) g"
            ),
        )
        .await;
        let live = format!("SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = '{skewed}'::regclass");
        let rows = key_figures(&pool, &skewed).await.0;
        let mut counted = false;
        for _ in 0..300 {
            sqlx::query("SELECT pg_stat_clear_snapshot()")
                .execute(&pool)
                .await
                .unwrap();
            if sqlx::query_scalar::<_, i64>(&live)
                .fetch_one(&pool)
                .await
                .unwrap()
                >= rows
            {
                counted = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(counted, "the server never counted the added rows");
        let plan = ingest_exactly(skewed.clone(), "pg_stats) and its index").await;
        let bounds = lower_bounds(&plan);
        assert!(
            bounds.iter().filter(|b| **b > 10_000_000).count() >= 2,
            "{bounds:?}"
        );
        assert!(bounds.iter().filter(|b| **b < -50).count() >= 2, "{bounds:?}");
        // Statistics without an index: their bounds alone (the stale keys land in the end units).
        exec(&pool, &format!("DROP INDEX {skewed}_id_idx")).await;
        ingest_exactly(skewed.clone(), "no index to bound them").await;

        // An index without statistics: its least to greatest value split evenly.
        exec(&pool, &format!("CREATE INDEX ON {bare} (id)")).await;
        let plan = ingest_exactly(bare.clone(), "even split").await;
        assert!(plan.units.len() >= 10, "{:?}", plan.units);
        // Neither: the key read in full, as before.
        exec(&pool, &format!("DROP INDEX {bare}_id_idx")).await;
        ingest_exactly(bare.clone(), "full scan").await;

        // All keys NULL, with an index: one unit holds every row.
        exec(&pool, &format!("UPDATE {bare} SET id = NULL")).await;
        exec(&pool, &format!("CREATE INDEX ON {bare} (id)")).await;
        exec(&pool, &format!("ANALYZE {bare}")).await;
        let plan = ingest_exactly(bare.clone(), "pg_stats) and its index").await;
        assert_eq!(plan.units.len(), 1, "{:?}", plan.units);
        for name in [&skewed, &bare] {
            exec(&pool, &format!("DROP TABLE {name}")).await;
        }
    }
);

both_backends!(
    sqlite_id_units_still_read_the_key_and_cover_every_row_once,
    |ctx: Ctx| async move {
        // SQLite keeps no statistics floe reads: its units come from the key read in full, as before.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.db");
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        for sql in [
            "CREATE TABLE k (id BIGINT, note TEXT)",
            "CREATE INDEX k_id ON k (id)",
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 20000) \
             INSERT INTO k SELECT CASE WHEN n % 100 = 0 THEN NULL WHEN n % 3 = 0 THEN 7 ELSE n * 1000 END, 'r' FROM g",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        let expected: (i64, i64, i64, i64) =
            sqlx::query_as("SELECT count(*), count(id), coalesce(sum(id), 0), count(DISTINCT id) FROM k")
                .fetch_one(&pool)
                .await
                .unwrap();
        let mut o = IngestOptions::new(format!("sqlite:{}", path.display()), format!("{}.k", ctx.ns));
        o.table = Some("k".into());
        o.create = true;
        o.verify = true;
        o.partition_by = Some(PartitionBy::Id("id".into()));
        let plan = floe::ingest::plan(&ctx.floe, &o).await.unwrap();
        assert!(
            plan.sized_by.as_deref().unwrap_or("").contains("full scan"),
            "{:?}",
            plan.sized_by
        );
        assert!(plan.units.len() >= 2, "{:?}", plan.units);
        floe::ingest::ingest(&ctx.floe, &o).await.unwrap();
        assert_eq!(table_key_figures(&ctx, &ctx.table("k")).await, expected);
    }
);

both_backends!(
    units_ingested_into_a_sorted_table_write_it_sorted,
    |ctx: Ctx| async move {
        use arrow::datatypes::{DataType, Field, Schema};
        let name = format!("src_sorted_{}", ctx.ns);
        let pool = source_table(&name).await;
        let expected = source_figures(&pool, &name).await;
        // The destination exists with a sort order the source's rows do not come in (Postgres
        // returns each unit's rows by ascending id).
        let t = ctx.table("sorted_ingest");
        let definition = floe::TableDefinition {
            schema: Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("user_name", DataType::Utf8, true),
                Field::new("amount", DataType::Decimal128(12, 2), true),
            ]),
            ..Default::default()
        };
        ctx.floe.create_table(&t, definition).await.unwrap();
        ctx.floe
            .update_sort_order(&t)
            .desc("id")
            .asc("user_name")
            .commit()
            .await
            .unwrap();

        let mut o = IngestOptions::new(source_url(), t.to_string());
        o.query = Some(format!("SELECT id, user_name, amount FROM {name}"));
        o.partition_by = Some(PartitionBy::Id("id".into()));
        o.units = UnitCount::Exactly(4);
        o.verify = true;
        let report = floe::ingest::ingest(&ctx.floe, &o).await.unwrap();
        assert_eq!(report.units.len(), 4);
        assert_eq!(table_figures(&ctx, &t).await, expected);
        // Each unit sorts its own rows; units split by the first sort column, so every file of the
        // run holds a range of ids of its own.
        let files = data_files(&ctx, &t).await;
        assert!(files.len() >= 4, "{} files", files.len());
        assert_sorted_files(&ctx, &t, &files, "id", true).await;
        exec(&pool, &format!("DROP TABLE {name}")).await;
    }
);
