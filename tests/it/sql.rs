//! `floe sql` (`floe::query`): DuckDB SQL over floe's tables, locked down by default (no file outside
//! the warehouse, no extensions, no settings), and the same answers on local disk and on S3.

use arrow::array::{Array, Int64Array};
use floe::query::{sql, sql_with, SqlOptions};
use floe::WriteOptions;

use crate::both_backends;
use crate::support::*;

fn single_i64(r: &floe::query::QueryResult) -> i64 {
    let b = &r.batches[0];
    b.column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .map(|a| a.value(0))
        .unwrap_or_else(|| panic!("not a BIGINT: {:?}", b.column(0).data_type()))
}

both_backends!(
    sql_is_locked_down_and_answers_alike_on_every_store,
    |ctx: Ctx| async move {
        let t = ctx.table("q");
        ctx.create_events_table(&t, &[]).await;
        ctx.floe
            .append(&t, stream(vec![events(0..10)]), &WriteOptions::default())
            .await
            .unwrap();
        let name = t.to_string();

        // Answers that depend on reading every column the query names, whatever the store.
        let r = sql(
            &ctx.floe,
            &format!("SELECT count(*)::BIGINT FROM {name} a NATURAL JOIN {name} b"),
        )
        .await
        .unwrap();
        assert_eq!(single_i64(&r), 10, "NATURAL JOIN on every column");
        let r = sql(&ctx.floe, &format!("SELECT count(q)::BIGINT FROM {name} q"))
            .await
            .unwrap();
        assert_eq!(single_i64(&r), 10, "a row as a value (SELECT t FROM t)");
        let r = sql(&ctx.floe, &format!("DESCRIBE {name}")).await.unwrap();
        let rows: usize = r.batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(
            rows,
            events_schema().fields().len(),
            "DESCRIBE lists every column"
        );

        // The lockdown: each refused with a clear error.
        let scratch = tempfile::tempdir().unwrap();
        let outside = scratch.path().join("x.csv");
        std::fs::write(&outside, "a\n1\n").unwrap();
        let written = scratch.path().join("written.csv");
        for query in [
            format!("COPY (SELECT 1) TO '{}'", written.display()),
            format!("SELECT * FROM read_csv('{}')", outside.display()),
            "SELECT * FROM read_csv('/etc/passwd')".to_string(),
            "INSTALL httpfs".to_string(),
            "LOAD httpfs".to_string(),
            "SET enable_external_access = true".to_string(),
        ] {
            let err = match sql(&ctx.floe, &query).await {
                Ok(_) => panic!("{query}: allowed"),
                Err(e) => e,
            };
            assert!(!err.to_string().is_empty(), "{query}");
            assert!(!written.exists(), "{query}: wrote a file");
        }
        // The opt-out lifts it.
        let open = SqlOptions {
            allow_external_access: true,
            ..Default::default()
        };
        let r = sql_with(
            &ctx.floe,
            &format!("SELECT count(*)::BIGINT FROM read_csv('{}')", outside.display()),
            &open,
        )
        .await
        .unwrap();
        assert_eq!(single_i64(&r), 1);
    }
);
