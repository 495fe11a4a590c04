//! Schema evolution through floe (`Floe::update_schema`, `floe schema ...`): each change read back by
//! floe, PyIceberg and DuckDB's iceberg extension; changes racing appends and each other; every
//! refused change a one-line error that commits nothing; a nested table made by `floe create`; a
//! uuid column made by `floe create` stays uuid.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use floe::{ErrorKind, NewColumn, Position, SchemaUpdate, TableDefinition, TableName, WriteOptions};
use iceberg::spec::{PrimitiveType, Type};
use serde_json::{json, Value};

use crate::both_backends;
use crate::interop::{by_id, floe_json, other_readers, pyiceberg_read};
use crate::support::*;

fn long() -> Type {
    Type::Primitive(PrimitiveType::Long)
}

fn string() -> Type {
    Type::Primitive(PrimitiveType::String)
}

/// A table `id long not null, n int, name string, score float`.
async fn create_flat(ctx: &Ctx, name: &str) -> TableName {
    let t = ctx.table(name);
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("n", DataType::Int32, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float32, true),
    ]);
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
    t
}

/// Rows of the flat table as it was created.
fn flat_rows(ids: std::ops::Range<i64>) -> RecordBatch {
    let ids: Vec<i64> = ids.collect();
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("n", DataType::Int32, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float32, true),
    ]);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(Int32Array::from(
            ids.iter().map(|i| *i as i32 * 10).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            ids.iter().map(|i| format!("r{i}")).collect::<Vec<_>>(),
        )),
        Arc::new(Float32Array::from(
            ids.iter().map(|i| *i as f32 + 0.5).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(Arc::new(schema), cols).unwrap()
}

/// floe, PyIceberg and DuckDB read the same rows under the same column names.
async fn readers_agree(ctx: &Ctx, t: &TableName, step: &str) -> Vec<Value> {
    let ours = floe_json(ctx, t).await;
    for (reader, rows) in other_readers(ctx, t).await {
        assert_eq!(rows, ours, "after {step}: {reader} reads other rows than floe");
    }
    ours
}

both_backends!(
    each_schema_change_reads_the_same_in_floe_pyiceberg_and_duckdb,
    |ctx: Ctx| async move {
        let t = create_flat(&ctx, "evolving").await;
        let o = WriteOptions::default();
        ctx.floe
            .append(&t, stream(vec![flat_rows(0..3)]), &o)
            .await
            .unwrap();

        let table = ctx
            .floe
            .update_schema(&t)
            .rename_column("name", "label")
            .commit()
            .await
            .unwrap();
        assert!(table.schema().field_by_name("label").is_some());
        readers_agree(&ctx, &t, "rename").await;

        ctx.floe
            .update_schema(&t)
            .add_column_with(
                "note",
                string(),
                NewColumn {
                    doc: Some("free text".into()),
                    position: Some(Position::After("id".into())),
                    required: false,
                },
            )
            .commit()
            .await
            .unwrap();
        let rows = readers_agree(&ctx, &t, "add after id").await;
        assert_eq!(rows[0]["note"], Value::Null);

        let table = ctx
            .floe
            .update_schema(&t)
            .widen_column("n", long())
            .widen_column("score", Type::Primitive(PrimitiveType::Double))
            .commit()
            .await
            .unwrap();
        assert_eq!(*table.schema().field_by_name("n").unwrap().field_type, long());
        readers_agree(&ctx, &t, "widen").await;

        ctx.floe
            .update_schema(&t)
            .move_first("label")
            .commit()
            .await
            .unwrap();
        ctx.floe
            .update_schema(&t)
            .drop_column("score")
            .commit()
            .await
            .unwrap();
        let table = ctx
            .floe
            .update_schema(&t)
            .set_identifier_fields(&["id"])
            .commit()
            .await
            .unwrap();
        assert_eq!(table.schema().identifier_field_ids().collect::<Vec<_>>(), vec![1]);
        let names: Vec<&str> = table
            .schema()
            .as_struct()
            .fields()
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["label", "id", "note", "n"]);
        // New rows in the new shape.
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("note", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![10])),
                Arc::new(StringArray::from(vec!["hi"])),
                Arc::new(Int64Array::from(vec![5_000_000_000])),
            ],
        )
        .unwrap();
        ctx.floe.append(&t, stream(vec![batch]), &o).await.unwrap();
        let rows = readers_agree(&ctx, &t, "move, drop, identifier and an append").await;
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[3],
            json!({"label": null, "id": 10, "note": "hi", "n": 5_000_000_000i64})
        );
        assert_eq!(rows[1], json!({"label": "r1", "id": 1, "note": null, "n": 10}));
    }
);

both_backends!(
    a_nested_rename_and_a_widen_read_alike_over_files_of_three_schemas_and_two_specs,
    |ctx: Ctx| async move {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let t = ctx.table("nested");
        let cli = |args: &[&str]| {
            let out = floe_cmd(d, Some(&ctx)).args(args).output().unwrap();
            assert!(
                out.status.success(),
                "floe {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let name = t.to_string();
        cli(&[
            "create",
            &name,
            "--schema",
            "id long not null, n int, props struct<browser: string, os: string>, tags list<string>",
        ]);
        let file = d.join("a.json");
        std::fs::write(
            &file,
            "{\"id\":1,\"n\":7,\"props\":{\"browser\":\"ff\",\"os\":\"linux\"},\"tags\":[\"a\",\"b\"]}\n",
        )
        .unwrap();
        cli(&["append", &name, file.to_str().unwrap()]);
        let out = cli(&["schema", "rename", &name, "props.browser", "agent"]);
        assert!(out.contains("props.agent"), "{out}");
        std::fs::write(
            &file,
            "{\"id\":2,\"n\":8,\"props\":{\"agent\":\"chrome\",\"os\":\"mac\"},\"tags\":[]}\n",
        )
        .unwrap();
        cli(&["append", &name, file.to_str().unwrap()]);
        cli(&["schema", "widen", &name, "n", "long"]);
        // The third file also carries a second partition spec.
        let out = cli(&["partition", "add", &name, "bucket(2, id)"]);
        assert!(out.contains("committed partition spec 1"), "{out}");
        std::fs::write(
            &file,
            "{\"id\":3,\"n\":5000000000,\"props\":null,\"tags\":null}\n",
        )
        .unwrap();
        cli(&["append", &name, file.to_str().unwrap()]);
        let expected = vec![
            json!({"id": 1, "n": 7, "props": {"agent": "ff", "os": "linux"}, "tags": ["a", "b"]}),
            json!({"id": 2, "n": 8, "props": {"agent": "chrome", "os": "mac"}, "tags": []}),
            json!({"id": 3, "n": 5_000_000_000i64, "props": null, "tags": null}),
        ];
        assert_eq!(floe_json(&ctx, &t).await, expected, "floe");
        for (reader, rows) in other_readers(&ctx, &t).await {
            assert_eq!(rows, expected, "{reader}");
        }
        let table = ctx.floe.load_table(&t).await.unwrap();
        assert_eq!(table.metadata().schemas_iter().count(), 3);
        assert_eq!(table.metadata().partition_specs_iter().count(), 2);
    }
);

both_backends!(
    a_schema_change_racing_an_append_with_the_old_schema_lets_the_append_land,
    |ctx: Ctx| async move {
        let t = create_flat(&ctx, "race_append").await;
        let o = WriteOptions::default();
        // The append is written with the first schema ...
        let mut tx = ctx.floe.transaction();
        tx.append(&t, stream(vec![flat_rows(0..2)]), &o).await.unwrap();
        // ... a schema change lands meanwhile: every column it wrote is still there (n widened) ...
        ctx.floe
            .update_schema(&t)
            .widen_column("n", long())
            .rename_column("name", "label")
            .add_column("extra", string())
            .commit()
            .await
            .unwrap();
        // ... so the append lands, and readers read its files by field id.
        tx.commit().await.unwrap();
        let rows = readers_agree(&ctx, &t, "the append").await;
        assert_eq!(rows[1]["label"], "r1");
        assert_eq!(rows[1]["n"], 10);

        // An append whose column was dropped meanwhile does not fit: a Conflict, nothing committed.
        let mut tx = ctx.floe.transaction();
        let batch = floe_schema_batch(&ctx, &t).await;
        tx.append(&t, stream(vec![batch]), &o).await.unwrap();
        ctx.floe
            .update_schema(&t)
            .drop_column("score")
            .commit()
            .await
            .unwrap();
        let before = ctx
            .floe
            .load_table(&t)
            .await
            .unwrap()
            .metadata_location()
            .to_string();
        let err = tx.commit().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(err.to_string().contains("\"score\""), "{err}");
        assert_eq!(ctx.floe.load_table(&t).await.unwrap().metadata_location(), before);
    }
);

/// One row in the table's current shape (`id` 100, every other column null).
async fn floe_schema_batch(ctx: &Ctx, t: &TableName) -> RecordBatch {
    let schema = ctx.floe.load_table(t).await.unwrap().arrow_schema().unwrap();
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.name() == "id" {
                Arc::new(Int64Array::from(vec![100])) as ArrayRef
            } else {
                arrow::array::new_null_array(f.data_type(), 1)
            }
        })
        .collect();
    RecordBatch::try_new(schema, cols).unwrap()
}

both_backends!(
    racing_schema_changes_conflict_on_the_same_field_and_both_land_on_different_ones,
    |ctx: Ctx| async move {
        let t = create_flat(&ctx, "race_schema").await;
        // Different fields: both land, the later re-applied on the earlier's schema.
        let mut tx = ctx.floe.transaction();
        tx.update_schema(&t, SchemaUpdate::new().rename_column("name", "label"))
            .await
            .unwrap();
        ctx.floe
            .update_schema(&t)
            .widen_column("n", long())
            .commit()
            .await
            .unwrap();
        let table = tx.commit().await.unwrap().pop().unwrap().table;
        assert!(table.schema().field_by_name("label").is_some());
        assert_eq!(*table.schema().field_by_name("n").unwrap().field_type, long());

        // The same field: the later one is a Conflict and commits nothing.
        let mut tx = ctx.floe.transaction();
        tx.update_schema(&t, SchemaUpdate::new().rename_column("label", "title"))
            .await
            .unwrap();
        ctx.floe
            .update_schema(&t)
            .rename_column("label", "caption")
            .commit()
            .await
            .unwrap();
        let before = ctx
            .floe
            .load_table(&t)
            .await
            .unwrap()
            .metadata_location()
            .to_string();
        let err = tx.commit().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(err.to_string().contains("concurrent schema change"), "{err}");
        assert_eq!(ctx.floe.load_table(&t).await.unwrap().metadata_location(), before);

        // The same new name, on different fields: a Conflict too.
        let mut tx = ctx.floe.transaction();
        tx.update_schema(&t, SchemaUpdate::new().add_column("extra", string()))
            .await
            .unwrap();
        ctx.floe
            .update_schema(&t)
            .rename_column("caption", "extra")
            .commit()
            .await
            .unwrap();
        let err = tx.commit().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    }
);

both_backends!(
    refused_schema_changes_are_one_line_errors_that_commit_nothing,
    |ctx: Ctx| async move {
        let t = ctx.table("refusals");
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("day", DataType::Date32, false),
            Field::new("x", DataType::Float64, false),
            Field::new("opt", DataType::Int32, true),
            Field::new(
                "props",
                DataType::Struct(vec![Field::new("a", DataType::Utf8, true)].into()),
                true,
            ),
        ]);
        let definition = TableDefinition {
            schema,
            partition: vec![floe::PartitionField::parse("day").unwrap()],
            ..Default::default()
        };
        ctx.floe.create_table(&t, definition).await.unwrap();
        ctx.floe
            .update_schema(&t)
            .set_identifier_fields(&["id"])
            .commit()
            .await
            .unwrap();
        let location = ctx
            .floe
            .load_table(&t)
            .await
            .unwrap()
            .metadata_location()
            .to_string();
        let int = Type::Primitive(PrimitiveType::Int);
        let cases: Vec<(SchemaUpdate, ErrorKind, &str)> = vec![
            (
                SchemaUpdate::new().widen_column("id", int.clone()),
                ErrorKind::InvalidInput,
                "from long to int",
            ),
            (
                SchemaUpdate::new().drop_column("id"),
                ErrorKind::InvalidInput,
                "identifier field",
            ),
            (
                SchemaUpdate::new().drop_column("day"),
                ErrorKind::InvalidInput,
                "partition field",
            ),
            (
                SchemaUpdate::new().rename_column("opt", "x"),
                ErrorKind::InvalidInput,
                "already exists",
            ),
            (
                SchemaUpdate::new().rename_column("props.b", "c"),
                ErrorKind::InvalidInput,
                "no column \"props.b\"",
            ),
            (
                SchemaUpdate::new().add_column("nope.b", string()),
                ErrorKind::InvalidInput,
                "no column \"nope\"",
            ),
            (
                SchemaUpdate::new().add_column_with(
                    "r",
                    string(),
                    NewColumn {
                        required: true,
                        ..Default::default()
                    },
                ),
                ErrorKind::InvalidInput,
                "Iceberg v3",
            ),
            (
                SchemaUpdate::new().set_identifier_fields(&["x"]),
                ErrorKind::InvalidInput,
                "floating point",
            ),
            (
                SchemaUpdate::new().set_identifier_fields(&["opt"]),
                ErrorKind::InvalidInput,
                "optional",
            ),
            (
                SchemaUpdate::new().add_column("opt", string()),
                ErrorKind::AlreadyExists,
                "already has",
            ),
            (
                SchemaUpdate::new().move_after("props.a", "id"),
                ErrorKind::InvalidInput,
                "own struct",
            ),
        ];
        for (update, kind, words) in cases {
            let err = ctx
                .floe
                .update_schema(&t)
                .with(update.clone())
                .commit()
                .await
                .unwrap_err();
            let text = err.to_string();
            assert_eq!(err.kind(), kind, "{update:?}: {text}");
            assert!(text.contains(words), "{update:?}: {text}");
            assert!(!text.contains('\n'), "{text}");
            assert_eq!(
                ctx.floe.load_table(&t).await.unwrap().metadata_location(),
                location
            );
        }
    }
);

both_backends!(
    union_by_name_adds_nested_columns_and_widens,
    |ctx: Ctx| async move {
        let t = create_flat(&ctx, "union").await;
        let input = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("n", DataType::Int64, true),
            Field::new("score", DataType::Float32, true),
            Field::new(
                "props",
                DataType::Struct(vec![Field::new("a", DataType::Utf8, true)].into()),
                true,
            ),
        ]));
        let last = ctx.floe.load_table(&t).await.unwrap().metadata().last_column_id();
        let table = ctx
            .floe
            .update_schema(&t)
            .union_by_name(input.clone())
            .commit()
            .await
            .unwrap();
        let s = table.schema();
        assert_eq!(*s.field_by_name("n").unwrap().field_type, long());
        assert_eq!(s.field_by_name("props").unwrap().id, last + 1);
        assert_eq!(s.field_by_name("props.a").unwrap().id, last + 2);
        // Nothing left to add: the same schema again changes nothing.
        let again = ctx
            .floe
            .update_schema(&t)
            .union_by_name(input)
            .commit()
            .await
            .unwrap();
        assert_eq!(again.schema().schema_id(), s.schema_id());
        // A type that neither widens nor is widened is refused.
        let bad = Arc::new(Schema::new(vec![Field::new("name", DataType::Int64, true)]));
        let err = ctx
            .floe
            .update_schema(&t)
            .union_by_name(bad)
            .commit()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        // A dropped column's id is never reused.
        ctx.floe
            .update_schema(&t)
            .drop_column("props")
            .commit()
            .await
            .unwrap();
        let table = ctx
            .floe
            .update_schema(&t)
            .add_column("props2", string())
            .commit()
            .await
            .unwrap();
        assert_eq!(table.schema().field_by_name("props2").unwrap().id, last + 3);
    }
);

both_backends!(
    a_uuid_column_made_by_floe_create_stays_uuid_and_takes_uuid_values,
    |ctx: Ctx| async move {
        let dir = tempfile::tempdir().unwrap();
        let t = ctx.table("keyed");
        let name = t.to_string();
        let out = floe_cmd(dir.path(), Some(&ctx))
            .args([
                "create",
                &name,
                "--schema",
                "id long not null, key uuid, at time, digest fixed[4], props struct<ref: uuid>",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let show = floe_cmd(dir.path(), Some(&ctx))
            .args(["show", &name])
            .output()
            .unwrap();
        let show = String::from_utf8(show.stdout).unwrap();
        for want in ["key", "uuid", "time", "fixed[4]", "ref: uuid"] {
            assert!(show.contains(want), "floe show lacks {want:?}: {show}");
        }
        assert!(!show.contains("fixed[16]"), "{show}");
        let table = ctx.floe.load_table(&t).await.unwrap();
        assert_eq!(
            *table.schema().field_by_name("key").unwrap().field_type,
            Type::Primitive(PrimitiveType::Uuid)
        );

        // uuid values arrive as Arrow's FixedSizeBinary(16).
        let key = uuid::Uuid::parse_str("0f8fad5b-d9cb-469f-a165-70867728950e").unwrap();
        let schema = table.arrow_schema().unwrap();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "id" => Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
                "key" => Arc::new(
                    arrow::array::FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                        [Some(key.as_bytes().to_vec()), None].into_iter(),
                        16,
                    )
                    .unwrap(),
                ),
                _ => arrow::array::new_null_array(f.data_type(), 2),
            })
            .collect();
        let batch = RecordBatch::try_new(schema, columns).unwrap();
        ctx.floe
            .append(&t, stream(vec![batch]), &WriteOptions::default())
            .await
            .unwrap();
        let rows = floe_json(&ctx, &t).await;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["key"], json!(hex(key.as_bytes())));

        if let Some(v) = pyiceberg_read(&ctx, t.name()) {
            assert_eq!(v["schema"]["key"], "uuid", "{v}");
            assert_eq!(v["schema"]["props"], "struct<6: ref: optional uuid>", "{v}");
            let rows = by_id(v["rows"].as_array().unwrap().clone());
            assert_eq!(rows[0]["key"], json!(key.to_string()), "{v}");
            assert_eq!(rows[1]["key"], Value::Null, "{v}");
        }
    }
);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
