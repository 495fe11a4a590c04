//! Snapshot diff: the differences it must find, the equalities it must not break, bounded memory.

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use floe::diff::{diff, DecidedBy, DiffOptions, DiffReport, DiffSide};
use floe::{At, TableDefinition, WriteOptions};

use crate::both_backends;
use crate::support::*;

type R = (i64, Option<String>, Option<f64>);

fn schema(x: DataType) -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("x", x, true),
    ])
}

fn base(n: i64) -> Vec<R> {
    (0..n)
        .map(|i| (i, Some(format!("n{i}")), Some(i as f64 * 0.1)))
        .collect()
}

/// A table holding `rows`, appended in `files` commits (so the file layout differs by `files`), the
/// rows of each file in reverse order when `reverse`.
async fn table(ctx: &Ctx, name: &str, rows: &[R], files: usize, reverse: bool) -> DiffSide {
    let t = ctx.table(name);
    let def = TableDefinition {
        schema: schema(DataType::Float64),
        ..Default::default()
    };
    ctx.floe.create_table(&t, def).await.unwrap();
    let mut rows = rows.to_vec();
    if reverse {
        rows.reverse();
    }
    for chunk in rows.chunks(rows.len().div_ceil(files).max(1)) {
        let batch = RecordBatch::try_new(
            Arc::new(schema(DataType::Float64)),
            vec![
                Arc::new(Int64Array::from(chunk.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(StringArray::from(
                    chunk.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(chunk.iter().map(|r| r.2).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        ctx.floe
            .append(&t, stream(vec![batch]), &WriteOptions::default())
            .await
            .unwrap();
    }
    DiffSide {
        table: t,
        at: At::Current,
    }
}

async fn run(ctx: &Ctx, a: &DiffSide, b: &DiffSide, key: Option<&str>) -> DiffReport {
    let options = DiffOptions {
        key: key.map(|k| vec![k.to_string()]),
        ..Default::default()
    };
    diff(&ctx.floe, a, b, &options).await.unwrap()
}

both_backends!(diff_finds_what_differs_and_only_that, |ctx: Ctx| async move {
    let rows = base(200);
    let a = table(&ctx, "a", &rows, 1, false).await;

    // Same rows, other file layout and row order: equal, decided by the rows.
    let b = table(&ctx, "b", &rows, 3, true).await;
    let r = run(&ctx, &a, &b, None).await;
    assert!(r.equal, "{r:?}");
    assert_eq!(r.decided_by, DecidedBy::Rows);
    // A table against itself: decided by the files alone.
    let r = run(&ctx, &a, &a, None).await;
    assert!(r.equal && r.decided_by == DecidedBy::Files);

    // One changed value.
    let mut changed = rows.clone();
    changed[5].2 = Some(99.0);
    let c = table(&ctx, "c", &changed, 2, false).await;
    let r = run(&ctx, &a, &c, Some("id")).await;
    assert!(!r.equal);
    assert_eq!((r.changed, r.added, r.removed), (1, 0, 0), "{r:?}");
    assert_eq!(r.samples[0].changed_columns, vec!["x".to_string()]);
    let r = run(&ctx, &a, &c, None).await;
    assert_eq!((r.added, r.removed), (1, 1), "{r:?}");

    // One extra duplicate row (and one row fewer, so the counts agree): the multiset sees it.
    let mut dup = rows.clone();
    dup[8] = dup[7].clone();
    let d = table(&ctx, "d", &dup, 1, true).await;
    let r = run(&ctx, &a, &d, None).await;
    assert_eq!((r.equal, r.added, r.removed), (false, 1, 1), "{r:?}");
    // An extra duplicate with more rows: the counts decide.
    let mut more = rows.clone();
    more.push(rows[7].clone());
    let e = table(&ctx, "e", &more, 1, false).await;
    let r = run(&ctx, &a, &e, None).await;
    assert_eq!((r.equal, r.decided_by), (false, DecidedBy::Statistics), "{r:?}");

    // NaN equals NaN; NaN against a number differs.
    let mut nan = rows.clone();
    nan[9].2 = Some(f64::NAN);
    let f = table(&ctx, "f", &nan, 1, false).await;
    let g = table(&ctx, "g", &nan, 2, true).await;
    assert!(run(&ctx, &f, &g, None).await.equal);
    let r = run(&ctx, &a, &f, Some("id")).await;
    assert_eq!((r.equal, r.changed), (false, 1), "{r:?}");

    // NULL against a value, with the null counts equal (the nulls swap rows).
    let mut nulls_a = rows.clone();
    nulls_a[10].1 = None;
    let mut nulls_b = rows.clone();
    nulls_b[11].1 = None;
    let h = table(&ctx, "h", &nulls_a, 1, false).await;
    let i = table(&ctx, "i", &nulls_b, 1, false).await;
    let r = run(&ctx, &h, &i, Some("id")).await;
    assert_eq!(
        (r.equal, r.changed, r.decided_by),
        (false, 2, DecidedBy::Rows),
        "{r:?}"
    );
    // NULL equals NULL.
    let j = table(&ctx, "j", &nulls_a, 3, true).await;
    assert!(run(&ctx, &h, &j, Some("id")).await.equal);

    // Doubles within and beyond the tolerance.
    let near: Vec<R> = rows
        .iter()
        .map(|r| (r.0, r.1.clone(), r.2.map(|x| x * (1.0 + 1e-12))))
        .collect();
    let far: Vec<R> = rows
        .iter()
        .map(|r| (r.0, r.1.clone(), r.2.map(|x| x * (1.0 + 1e-6))))
        .collect();
    let k = table(&ctx, "k", &near, 1, false).await;
    let l = table(&ctx, "l", &far, 1, false).await;
    assert!(run(&ctx, &a, &k, None).await.equal);
    assert!(run(&ctx, &a, &k, Some("id")).await.equal);
    let r = run(&ctx, &a, &l, Some("id")).await;
    assert_eq!((r.equal, r.changed), (false, 199), "{r:?}"); // every x but 0.0
    let loose = DiffOptions {
        float_tolerance: 1e-3,
        ..Default::default()
    };
    assert!(diff(&ctx.floe, &a, &l, &loose).await.unwrap().equal);
});

both_backends!(diff_finds_schema_changes, |ctx: Ctx| async move {
    let rows = base(20);
    let a = table(&ctx, "a", &rows, 1, false).await;
    // A type change: x as float (32-bit).
    let t = ctx.table("float32");
    ctx.floe
        .create_table(
            &t,
            TableDefinition {
                schema: schema(DataType::Float32),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let r = diff(
        &ctx.floe,
        &a,
        &DiffSide {
            table: t,
            at: At::Current,
        },
        &DiffOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!((r.equal, r.decided_by), (false, DecidedBy::Schema));
    assert!(
        r.schema_differences
            .iter()
            .any(|d| d.contains("\"x\": type double vs float")),
        "{r:?}"
    );
    // A column added: the same table before and after.
    let before = ctx
        .floe
        .load_table(&a.table)
        .await
        .unwrap()
        .current_snapshot()
        .unwrap()
        .snapshot_id();
    ctx.floe
        .add_column(&a.table, "extra", &DataType::Utf8)
        .await
        .unwrap();
    ctx.floe
        .append(&a.table, stream(vec![]), &WriteOptions::default())
        .await
        .unwrap();
    let r = diff(
        &ctx.floe,
        &DiffSide {
            table: a.table.clone(),
            at: At::Snapshot(before),
        },
        &a,
        &DiffOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!((r.equal, r.decided_by), (false, DecidedBy::Schema), "{r:?}");
    assert!(
        r.schema_differences
            .iter()
            .any(|d| d.contains("\"extra\" only on the right")),
        "{r:?}"
    );
});

both_backends!(
    diff_reads_only_differing_buckets_under_a_small_memory_limit,
    |ctx: Ctx| async move {
        let rows = base(20_000);
        let a = table(&ctx, "a", &rows, 4, false).await;
        let mut changed = rows.clone();
        changed[12_345].1 = Some("changed".into());
        let b = table(&ctx, "b", &changed, 3, true).await;
        let options = DiffOptions {
            key: Some(vec!["id".into()]),
            memory_limit: 32 * 1024,
            ..Default::default()
        };
        let r = diff(&ctx.floe, &a, &b, &options).await.unwrap();
        // The budget, not the minimum of 16, decides the bucket count (it follows the bytes on
        // storage, about 250 KB here).
        assert!(r.buckets >= 64, "{r:?}");
        assert_eq!(r.differing_buckets, 1);
        assert_eq!((r.changed, r.added, r.removed), (1, 0, 0));
        assert_eq!(r.samples[0].left.as_ref().unwrap()["id"], "12345");
        assert_eq!(r.samples[0].changed_columns, vec!["name".to_string()]);
    }
);
