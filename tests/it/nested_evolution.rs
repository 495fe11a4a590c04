//! Reading a table whose nested columns changed shape: files written before a nested rename, a field
//! added inside a struct, a list element or a map value, a widen inside a struct, a drop and a move,
//! read by floe's scan, `floe sql`, a copy-on-write delete and a compaction, and by PyIceberg and
//! DuckDB's iceberg extension, all with the same rows under the same names.

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use floe::maintenance::CompactOptions;
use floe::table::schema_text::{parse_field_type, parse_schema};
use floe::{DeleteOptions, RowFilter, TableDefinition, TableName};
use futures::TryStreamExt;
use serde_json::{json, Map, Value};

use crate::both_backends;
use crate::interop::{by_id, duckdb_read, floe_json, json_rows, pyiceberg_read};
use crate::support::*;

/// The Python readers print a map as a list of `[key, value]` pairs; Arrow's JSON as an object.
fn map_as_object(mut row: Value, column: &str) -> Value {
    if let Some(Value::Array(pairs)) = row.get(column).cloned() {
        let object: Map<String, Value> = pairs
            .into_iter()
            .map(|pair| (pair[0].as_str().unwrap().to_string(), pair[1].clone()))
            .collect();
        row[column] = Value::Object(object);
    }
    row
}

/// floe reads `expected`, and so do PyIceberg and DuckDB.
async fn every_reader_reads(ctx: &Ctx, t: &TableName, expected: &[Value], step: &str) {
    assert_eq!(floe_json(ctx, t).await, expected, "after {step}: floe");
    let mut others = Vec::new();
    if let Some(v) = pyiceberg_read(ctx, t.name()) {
        others.push(("pyiceberg", v));
    }
    if let Some(v) = duckdb_read(ctx, t.name()).await {
        others.push(("duckdb", v));
    }
    for (reader, v) in others {
        let rows: Vec<Value> = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| map_as_object(r.clone(), "attrs"))
            .collect();
        assert_eq!(by_id(rows), expected, "after {step}: {reader}");
    }
}

both_backends!(
    files_written_before_nested_renames_adds_widens_drops_and_moves_read_alike_everywhere,
    |ctx: Ctx| async move {
        let t = ctx.table("nested_shapes");
        let schema = parse_schema(
            "id long not null, props struct<browser: string, os: string, hits: int>, \
             events list<struct<k: string>>, attrs map<string, struct<a: int>>",
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
        // File 1, in the first shape.
        append_now(
            &ctx,
            &t,
            "{\"id\":1,\"props\":{\"browser\":\"ff\",\"os\":\"linux\",\"hits\":7},\"events\":[{\"k\":\"a\"}],\"attrs\":{\"x\":{\"a\":1}}}\n\
             {\"id\":2,\"props\":{\"browser\":\"safari\",\"os\":\"mac\",\"hits\":8},\"events\":[],\"attrs\":{}}\n",
        )
        .await;

        // Second shape: a nested rename, a field added in a struct, a list element and a map value,
        // and a widen inside the struct.
        ctx.floe
            .update_schema(&t)
            .rename_column("props.browser", "agent")
            .add_column("props.lang", parse_field_type("string").unwrap())
            .widen_column("props.hits", parse_field_type("long").unwrap())
            .add_column("events.v", parse_field_type("long").unwrap())
            .add_column("attrs.b", parse_field_type("string").unwrap())
            .commit()
            .await
            .unwrap();
        append_now(
            &ctx,
            &t,
            "{\"id\":3,\"props\":{\"agent\":\"chrome\",\"os\":\"win\",\"hits\":5000000000,\"lang\":\"en\"},\"events\":[{\"k\":\"b\",\"v\":2}],\"attrs\":{\"y\":{\"a\":3,\"b\":\"z\"}}}\n\
             {\"id\":4,\"props\":null,\"events\":[],\"attrs\":{}}\n",
        )
        .await;

        let second_shape = ctx
            .floe
            .load_table(&t)
            .await
            .unwrap()
            .current_snapshot()
            .unwrap()
            .snapshot_id();
        // (PyIceberg 0.12 reads a null list or map whose element changed shape as empty: row 4 has
        // empty ones.)
        // Third shape: a nested drop, a second rename of the same field, and a move inside the
        // struct (reading by position would now pair the wrong fields).
        ctx.floe
            .update_schema(&t)
            .drop_column("props.os")
            .rename_column("props.agent", "client")
            .move_first("props.lang")
            .commit()
            .await
            .unwrap();
        append_now(
            &ctx,
            &t,
            "{\"id\":5,\"props\":{\"lang\":\"de\",\"client\":\"edge\",\"hits\":9},\"events\":[{\"k\":\"c\",\"v\":3}],\"attrs\":{\"w\":{\"a\":5,\"b\":\"q\"}}}\n",
        )
        .await;
        let table = ctx.floe.load_table(&t).await.unwrap();
        assert_eq!(table.metadata().schemas_iter().count(), 3);
        // Engines that read Parquet by name (DataFusion's plain files) read through floe's scan.
        let snapshot_id = table.current_snapshot().unwrap().snapshot_id();
        assert!(floe::table::plain_files::plain_parquet_files(&table, snapshot_id)
            .await
            .unwrap()
            .is_none());

        let mut expected = vec![
            json!({"id": 1, "props": {"lang": null, "client": "ff", "hits": 7},
                   "events": [{"k": "a", "v": null}], "attrs": {"x": {"a": 1, "b": null}}}),
            json!({"id": 2, "props": {"lang": null, "client": "safari", "hits": 8},
                   "events": [], "attrs": {}}),
            json!({"id": 3, "props": {"lang": "en", "client": "chrome", "hits": 5_000_000_000i64},
                   "events": [{"k": "b", "v": 2}], "attrs": {"y": {"a": 3, "b": "z"}}}),
            json!({"id": 4, "props": null, "events": [], "attrs": {}}),
            json!({"id": 5, "props": {"lang": "de", "client": "edge", "hits": 9},
                   "events": [{"k": "c", "v": 3}], "attrs": {"w": {"a": 5, "b": "q"}}}),
        ];
        every_reader_reads(&ctx, &t, &expected, "three shapes").await;

        // A past state reads in the schema it was written with, older files mapped into it.
        let past: Vec<RecordBatch> = ctx
            .floe
            .scan(
                &t,
                &floe::ScanOptions {
                    at: Some(floe::At::Snapshot(second_shape)),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .batches
            .try_collect()
            .await
            .unwrap();
        let past = json_rows(&past);
        assert_eq!(past.len(), 4);
        assert_eq!(
            past[0]["props"],
            json!({"agent": "ff", "os": "linux", "hits": 7, "lang": null})
        );
        assert_eq!(past[2]["events"], json!([{"k": "b", "v": 2}]));

        // A projection of the nested column alone, and `floe sql` (which streams an evolved table
        // through floe's scan).
        let props = scan_columns(&ctx.floe, &t, &["props"]).await;
        assert_eq!(props.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
        for batch in &props {
            let arrow::datatypes::DataType::Struct(fields) = batch.schema().field(0).data_type().clone()
            else {
                panic!("props is not a struct: {:?}", batch.schema());
            };
            let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
            assert_eq!(names, ["lang", "client", "hits"]);
        }
        let answer = floe::query::sql(
            &ctx.floe,
            &format!(
                "SELECT id, props['client'] AS client, props['hits'] AS hits, \
                 props['lang'] AS lang, events[1]['v'] AS v FROM {t} ORDER BY id"
            ),
        )
        .await
        .unwrap();
        let batch = arrow::compute::concat_batches(&answer.schema, &answer.batches).unwrap();
        let client = batch.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let hits = batch.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        let lang = batch.column(3).as_any().downcast_ref::<StringArray>().unwrap();
        let v = batch.column(4).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(
            (0..5)
                .map(|i| (
                    client.is_valid(i).then(|| client.value(i)),
                    hits.is_valid(i).then(|| hits.value(i)),
                    lang.is_valid(i).then(|| lang.value(i)),
                    v.is_valid(i).then(|| v.value(i)),
                ))
                .collect::<Vec<_>>(),
            vec![
                (Some("ff"), Some(7), None, None),
                (Some("safari"), Some(8), None, None),
                (Some("chrome"), Some(5_000_000_000), Some("en"), Some(2)),
                (None, None, None, None),
                (Some("edge"), Some(9), Some("de"), Some(3)),
            ]
        );

        // A copy-on-write delete rewrites the first file in the current shape ...
        ctx.floe
            .delete(&t, RowFilter::sql("id = 2"), &DeleteOptions::default())
            .await
            .unwrap();
        expected.remove(1);
        every_reader_reads(&ctx, &t, &expected, "a delete").await;

        // ... and a compaction rewrites all three files into one.
        let report = ctx
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
        assert!(report.files_rewritten >= 3, "{report:?}");
        every_reader_reads(&ctx, &t, &expected, "a compaction").await;
        let table = ctx.floe.load_table(&t).await.unwrap();
        assert_eq!(table.files(table.current_snapshot()).await.unwrap().len(), 1);
    }
);
