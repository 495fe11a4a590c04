//! Writers through both doors of floe's catalog on one table at once: 4 floe appenders in this
//! process and 4 PyIceberg appenders (separate processes, `RestCatalog` against `floe serve`), 25
//! one-row commits each. A PyIceberg writer that loses a race gets a 409, refreshes and retries, as a
//! job would; floe's own appenders retry inside floe's commit loop. In the end every append is in
//! the table exactly once, as its own snapshot, and no row is lost.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use floe::bench::rest::appenders::{run_appenders, Door};
use floe::{At, TableDefinition, WriteOptions};

use crate::both_backends;
use crate::interop::pyiceberg_available;
use crate::rest::serve;
use crate::support::*;

const WRITERS_EACH_SIDE: usize = 4;
const COMMITS_EACH: usize = 25;
/// floe's writers' ids start here (PyIceberg's are worker * 1,000,000 + commit, workers 0..4).
const FLOE_IDS: i64 = 100_000_000;

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("writer", DataType::Utf8, true),
    ])
}

fn one_row(id: i64, writer: &str) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(schema()),
        vec![
            Arc::new(Int64Array::from(vec![id])),
            Arc::new(StringArray::from(vec![writer])),
        ],
    )
    .unwrap()
}

both_backends!(
    floe_and_pyiceberg_rest_appenders_race_on_one_table_and_no_append_is_lost,
    |ctx: Ctx| async move {
        if !pyiceberg_available() {
            return;
        }
        let t = ctx.table("contended");
        ctx.floe
            .create_table(
                &t,
                TableDefinition {
                    schema: schema(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let uri = serve(&ctx).await;
        let dir = tempfile::tempdir().unwrap();

        let python = {
            let floe = ctx.floe.clone();
            let t = t.clone();
            let dir = dir.path().to_path_buf();
            tokio::spawn(async move {
                run_appenders(
                    &floe,
                    &Door::Rest(uri),
                    &t,
                    WRITERS_EACH_SIDE,
                    COMMITS_EACH,
                    0,
                    &dir,
                )
                .await
            })
        };
        // floe's writers start once PyIceberg's have begun committing (their processes take a
        // moment to import), so the two sides overlap.
        let started = tokio::time::Instant::now();
        while ctx
            .floe
            .load_table(&t)
            .await
            .unwrap()
            .current_snapshot()
            .is_none()
        {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(120),
                "PyIceberg never committed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut floe_writers = Vec::new();
        for w in 0..WRITERS_EACH_SIDE as i64 {
            let floe = ctx.floe.clone();
            let t = t.clone();
            floe_writers.push(tokio::spawn(async move {
                let mut retries = 0;
                for i in 0..COMMITS_EACH as i64 {
                    let row = one_row(FLOE_IDS + w * 1_000_000 + i, &format!("floe{w}"));
                    let result = floe
                        .append(&t, stream(vec![row]), &WriteOptions::default())
                        .await
                        .unwrap();
                    retries += result.attempts - 1;
                }
                retries
            }));
        }
        let mut floe_retries = 0;
        for w in floe_writers {
            floe_retries += w.await.unwrap();
        }
        let py = python.await.unwrap().unwrap();
        eprintln!(
            "{} PyIceberg appends through floe serve lost {} races (409, refreshed and retried); \
             floe's appends retried {floe_retries} times",
            py.commits, py.conflicts
        );
        assert_eq!(py.commits, WRITERS_EACH_SIDE * COMMITS_EACH);

        let mut expected: Vec<i64> = py.ids.clone();
        for w in 0..WRITERS_EACH_SIDE as i64 {
            expected.extend((0..COMMITS_EACH as i64).map(|i| FLOE_IDS + w * 1_000_000 + i));
        }
        expected.sort();
        assert_eq!(expected.len(), 2 * WRITERS_EACH_SIDE * COMMITS_EACH);
        // Every append once: no id missing, none twice.
        assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected);
        let table = ctx.floe.load_table(&t).await.unwrap();
        assert_eq!(
            table.metadata().snapshots().count(),
            2 * WRITERS_EACH_SIDE * COMMITS_EACH,
            "one snapshot per append"
        );
    }
);
