//! `floe sql` pushes a query's WHERE into floe's Iceberg scan for the tables it streams (on S3): the
//! answers equal those of an unfiltered read (`--no-pushdown`), including predicates on renamed
//! columns, on partition transforms, NULLs and OR, while the bytes read from storage shrink; a query
//! runs within the memory it is given; and an evolved table on local disk is read by DuckDB's own
//! Parquet reader, by field id, with the same answers as floe's scan.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::util::pretty::pretty_format_batches;
use floe::query::{sql_with, SqlOptions};
use floe::WriteOptions;

use crate::both_backends;
use crate::support::*;

/// Rows with NULL user and time: ids `ids`.
fn rows_with_nulls(ids: std::ops::Range<i64>) -> RecordBatch {
    let n = ids.end - ids.start;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(ids.clone())),
        Arc::new(StringArray::from(vec![None::<&str>; n as usize])),
        Arc::new(TimestampMicrosecondArray::from(vec![None; n as usize]).with_timezone("+00:00")),
        Arc::new(Float64Array::from(vec![None; n as usize])),
    ];
    RecordBatch::try_new(Arc::new(events_schema()), columns).unwrap()
}

fn text(r: &floe::query::QueryResult) -> String {
    pretty_format_batches(&r.batches).unwrap().to_string()
}

both_backends!(
    pushed_filters_answer_as_unfiltered_scans_and_read_less,
    |ctx: Ctx| async move {
        let t = ctx.table("days");
        ctx.create_events_table(&t, &["day(ts)"]).await;
        let o = WriteOptions::default();
        // 30 days of 10 rows each, in three appends, and rows whose user and time are NULL.
        for part in [0..100, 100..200, 200..300] {
            ctx.floe.append(&t, stream(vec![events(part)]), &o).await.unwrap();
        }
        ctx.floe
            .append(&t, stream(vec![rows_with_nulls(1000..1005)]), &o)
            .await
            .unwrap();
        // A renamed column: the query names the new name (on S3 the table streams through floe's scan).
        ctx.floe
            .update_schema(&t)
            .rename_column("user_id", "who")
            .commit()
            .await
            .unwrap();
        let name = t.to_string();
        let pushed = SqlOptions::default();
        let unpushed = SqlOptions {
            no_pushdown: true,
            ..Default::default()
        };
        let one_day = format!(
            "SELECT id, who, ts FROM {name} WHERE ts >= '2024-01-05' AND ts < '2024-01-06' ORDER BY id"
        );
        for query in [
            one_day.clone(),
            format!("SELECT count(*)::BIGINT FROM {name} WHERE who = 'u3' AND id BETWEEN 20 AND 120"),
            format!("SELECT id FROM {name} WHERE who IS NULL ORDER BY id"),
            format!("SELECT id FROM {name} WHERE ts IS NULL OR id IN (7, 250) ORDER BY id"),
            format!("SELECT id FROM {name} x WHERE x.id < 3 OR (x.who = 'u1' AND x.ts > '2024-01-29 23:59:50') ORDER BY id"),
            format!("SELECT id FROM {name} WHERE 295 <= id AND amount > 1 ORDER BY id"),
            format!("SELECT a.id FROM {name} a JOIN (SELECT 42 AS k) b ON a.id = b.k WHERE a.who <> 'u0' ORDER BY 1"),
        ] {
            let with = sql_with(&ctx.floe, &query, &pushed).await.unwrap();
            let without = sql_with(&ctx.floe, &query, &unpushed).await.unwrap();
            assert_eq!(text(&with), text(&without), "{query}");
            // (On local disk DuckDB reads the files itself: floe's storage reads metadata only.)
            if ctx.backend == Backend::PostgresS3 {
                assert!(with.bytes_read <= without.bytes_read, "{query}: pushdown read more");
            }
        }
        let with = sql_with(&ctx.floe, &one_day, &pushed).await.unwrap();
        let rows: usize = with.batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 10, "one day's rows");
        let without = sql_with(&ctx.floe, &one_day, &unpushed).await.unwrap();
        if ctx.backend == Backend::SqliteLocal {
            // Local files of an evolved table are read by DuckDB itself, by field id: nothing to push.
            return;
        }
        assert!(without.bytes_read > 0, "a streamed table's reads are counted");
        assert!(
            with.bytes_read * 2 < without.bytes_read,
            "one day of 30 read {} bytes, the whole table {}",
            with.bytes_read,
            without.bytes_read
        );
    }
);

both_backends!(
    an_evolved_table_answers_as_floes_scan_does,
    |ctx: Ctx| async move {
        let t = ctx.table("evolved");
        ctx.create_events_table(&t, &["day(ts)"]).await;
        let o = WriteOptions::default();
        ctx.floe
            .append(&t, stream(vec![events(0..50)]), &o)
            .await
            .unwrap();
        // Files of three schemas: a rename, a dropped column, an added one; then deletes.
        ctx.floe
            .update_schema(&t)
            .rename_column("user_id", "who")
            .commit()
            .await
            .unwrap();
        let renamed = ctx.floe.load_table(&t).await.unwrap().arrow_schema().unwrap();
        let middle = RecordBatch::try_new(renamed, events(50..100).columns().to_vec()).unwrap();
        ctx.floe.append(&t, stream(vec![middle]), &o).await.unwrap();
        let table = ctx
            .floe
            .update_schema(&t)
            .drop_column("amount")
            .add_column(
                "note",
                iceberg::spec::Type::Primitive(iceberg::spec::PrimitiveType::String),
            )
            .commit()
            .await
            .unwrap();
        let schema = table.arrow_schema().unwrap();
        let late = events(100..130);
        let notes: ArrayRef = Arc::new(StringArray::from_iter_values((100..130).map(|i| format!("n{i}"))));
        let late = RecordBatch::try_new(
            schema,
            vec![
                late.column(0).clone(),
                late.column(1).clone(),
                late.column(2).clone(),
                notes,
            ],
        )
        .unwrap();
        ctx.floe.append(&t, stream(vec![late]), &o).await.unwrap();
        ctx.floe
            .delete(&t, floe::RowFilter::sql("id % 7 = 0"), &Default::default())
            .await
            .unwrap();

        let r = sql_with(
            &ctx.floe,
            &format!("SELECT id, who, note FROM {t} WHERE id >= 45 AND id < 105 ORDER BY id"),
            &SqlOptions::default(),
        )
        .await
        .unwrap();
        let expected: Vec<(i64, String, Option<String>)> = (45..105)
            .filter(|i| i % 7 != 0)
            .map(|i| (i, format!("u{}", i % 5), (i >= 100).then(|| format!("n{i}"))))
            .collect();
        let mut got = Vec::new();
        for b in &r.batches {
            let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let who = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Utf8).unwrap();
            let who = who.as_any().downcast_ref::<StringArray>().unwrap();
            let note = arrow::compute::cast(b.column(2), &arrow::datatypes::DataType::Utf8).unwrap();
            let note = note.as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..b.num_rows() {
                got.push((
                    id.value(i),
                    who.value(i).to_string(),
                    (!note.is_null(i)).then(|| note.value(i).to_string()),
                ));
            }
        }
        assert_eq!(got, expected);
        // The whole table's columns are the current schema's, in its order.
        let r = sql_with(
            &ctx.floe,
            &format!("SELECT * FROM {t} LIMIT 1"),
            &SqlOptions::default(),
        )
        .await
        .unwrap();
        let names: Vec<String> = r.schema.fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["id", "who", "ts", "note"]);
        // On local disk the table is a view over DuckDB's own Parquet reader (by field id); on S3
        // its rows stream in through floe's scan.
        let r = sql_with(
            &ctx.floe,
            &format!(
                "SELECT (SELECT table_type FROM information_schema.tables WHERE table_name = 'evolved'), \
                 count(*)::BIGINT FROM {t}"
            ),
            &SqlOptions::default(),
        )
        .await
        .unwrap();
        let kind = arrow::compute::cast(r.batches[0].column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let kind = kind
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .value(0)
            .to_string();
        let want = match ctx.backend {
            Backend::SqliteLocal => "VIEW",
            Backend::PostgresS3 => "BASE TABLE",
        };
        assert_eq!(kind, want);
        let count = r.batches[0]
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(count, (0..130).filter(|i| i % 7 != 0).count() as i64);
    }
);

both_backends!(sql_runs_within_the_memory_it_is_given, |ctx: Ctx| async move {
    let t = ctx.table("big");
    ctx.create_events_table(&t, &[]).await;
    // A column the query reads only through a filter nobody can push: every row is loaded.
    ctx.floe
        .update_schema(&t)
        .rename_column("amount", "price")
        .commit()
        .await
        .unwrap();
    let renamed = ctx.floe.load_table(&t).await.unwrap().arrow_schema().unwrap();
    let batches = (0..10)
        .map(|i| {
            let b = events(i * 100_000..(i + 1) * 100_000);
            RecordBatch::try_new(renamed.clone(), b.columns().to_vec()).unwrap()
        })
        .collect();
    ctx.floe
        .append(&t, stream(batches), &WriteOptions::default())
        .await
        .unwrap();
    let options = SqlOptions {
        memory_mb: Some(24),
        ..Default::default()
    };
    let r = sql_with(
        &ctx.floe,
        &format!(
            "SELECT count(DISTINCT user_id || id::VARCHAR)::BIGINT, sum(price)::DOUBLE FROM {t} WHERE price * 2 > 0"
        ),
        &options,
    )
    .await
    .unwrap();
    let b = &r.batches[0];
    let distinct = b
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    let sum = b
        .column(1)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap()
        .value(0);
    assert_eq!(distinct, 999_999, "every row but id 0 (price 0) counted once");
    assert_eq!(sum, 1.5 * (999_999.0 * 1_000_000.0 / 2.0));

    let none = SqlOptions {
        memory_mb: Some(0),
        ..Default::default()
    };
    let err = sql_with(&ctx.floe, &format!("SELECT 1 FROM {t}"), &none)
        .await
        .err()
        .expect("no memory is refused");
    assert!(err.to_string().contains("--memory-mb"), "{err}");
});
