//! `floe sql` (`floe::query`): DuckDB SQL over floe's tables, locked down by default (no file outside
//! the warehouse, no extensions, no settings), and the same answers on local disk and on S3, with
//! every timestamp labelled UTC, nested ones too.

use arrow::array::{Array, Int64Array, ListArray, MapArray, StructArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use floe::query::{sql, sql_with, SqlOptions};
use floe::table::schema_text::parse_schema;
use floe::{TableDefinition, WriteOptions};

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

/// Every timestamp in `array` (at any depth: struct fields, list elements, map keys and values),
/// with its type, in column order.
fn timestamps(array: &dyn Array, out: &mut Vec<(DataType, Vec<Option<i64>>)>) {
    match array.data_type() {
        DataType::Timestamp(..) => {
            let ts = array
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            out.push((array.data_type().clone(), ts.iter().collect()));
        }
        DataType::Struct(_) => {
            for child in array.as_any().downcast_ref::<StructArray>().unwrap().columns() {
                timestamps(child.as_ref(), out);
            }
        }
        DataType::List(_) => timestamps(
            array
                .as_any()
                .downcast_ref::<ListArray>()
                .unwrap()
                .values()
                .as_ref(),
            out,
        ),
        DataType::Map(..) => timestamps(array.as_any().downcast_ref::<MapArray>().unwrap().entries(), out),
        _ => {}
    }
}

both_backends!(
    timestamps_nested_in_structs_lists_and_maps_come_back_as_utc_like_top_level_ones,
    |ctx: Ctx| async move {
        let t = ctx.table("nested_times");
        let schema = parse_schema(
            "id long not null, seen timestamptz, s struct<seen: timestamptz, n: long>, \
             l list<timestamptz>, m map<string, timestamptz>",
        )
        .unwrap();
        ctx.floe
            .create_table(
                &t,
                TableDefinition {
                    schema,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        append_now(
            &ctx,
            &t,
            "{\"id\":1,\"seen\":\"2024-03-01T10:00:00Z\",\"s\":{\"seen\":\"2024-03-01T11:00:00Z\",\"n\":1},\
             \"l\":[\"2024-03-01T12:00:00Z\",\"2024-03-01T13:00:00Z\"],\"m\":{\"k\":\"2024-03-01T14:00:00Z\"}}\n",
        )
        .await;

        // On local disk DuckDB reads the Parquet files itself; on S3 the rows stream in through the
        // appender: both answers label every timestamp UTC, nested or not.
        let answer = sql(&ctx.floe, &format!("SELECT seen, s, l, m FROM {t}"))
            .await
            .unwrap();
        let batch = arrow::compute::concat_batches(&answer.schema, &answer.batches).unwrap();
        let mut found = Vec::new();
        for column in batch.columns() {
            timestamps(column.as_ref(), &mut found);
        }
        let hour = |h: i64| Some(1_709_287_200_000_000 + (h - 10) * 3_600_000_000);
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
        assert_eq!(
            found,
            vec![
                (utc.clone(), vec![hour(10)]),
                (utc.clone(), vec![hour(11)]),
                (utc.clone(), vec![hour(12), hour(13)]),
                (utc, vec![hour(14)]),
            ],
            "{:?}",
            answer.schema
        );
    }
);
