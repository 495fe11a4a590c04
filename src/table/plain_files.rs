//! A snapshot as plain Parquet files, for engines that read Parquet themselves (DataFusion's and
//! Ballista's multi-partition file scans): possible when no column of the table was ever renamed
//! and no nested column ever changed shape (names then identify columns as field ids do) and no
//! equality delete or deletion vector applies.
//! Position deletes are handed over as the deleted row positions of each file, for the engine to
//! skip; an engine that cannot says so. Otherwise `None`, and the caller reads through floe's own
//! scan.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef as ArrowSchemaRef};
use roaring::RoaringTreemap;

use super::deletes::index::DeleteIndex;
use super::deletes::positions::deleted_positions;
use super::entries::SnapshotFiles;
use super::Table;
use crate::error::Result;

/// A snapshot's data files and the schema to read them with.
#[derive(Clone, Debug)]
pub struct PlainFiles {
    /// The snapshot's schema as Arrow, without Iceberg field-id metadata.
    pub schema: ArrowSchemaRef,
    /// Data files: URI and size in bytes.
    pub files: Vec<(String, u64)>,
    /// The row positions position deletes remove, by data file URI (files without any are absent).
    pub deleted: HashMap<String, Arc<RoaringTreemap>>,
}

/// `snapshot_id` of `table` as plain Parquet files, when its rows can be read that way.
pub async fn plain_parquet_files(table: &Table, snapshot_id: i64) -> Result<Option<PlainFiles>> {
    let metadata = table.metadata();
    let Some(snapshot) = metadata.snapshot_by_id(snapshot_id) else {
        return Ok(None);
    };
    // Every schema in the history must name each field id as the current one does, and give each
    // nested column the current one's shape (a reader by name cannot follow a nested rename).
    let current: HashMap<i32, &iceberg::spec::NestedFieldRef> = table
        .schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| (f.id, f))
        .collect();
    let renamed = metadata.schemas_iter().any(|s| {
        s.as_struct().fields().iter().any(|f| {
            current.get(&f.id).is_some_and(|c| {
                c.name != f.name || (!c.field_type.is_primitive() && c.field_type != f.field_type)
            })
        })
    });
    if renamed {
        return Ok(None);
    }
    let live = SnapshotFiles::of(table, Some(snapshot)).await?;
    let index = DeleteIndex::of(&live);
    if index.has_equality_deletes() || live.deletes.iter().any(|d| d.is_deletion_vector()) {
        return Ok(None);
    }
    let mut deleted = HashMap::new();
    for data in &live.data {
        let applying = index.for_data_file(data);
        if !applying.positions.is_empty() {
            let positions = deleted_positions(table.storage(), data.path(), &applying.positions).await?;
            deleted.insert(data.path().to_string(), Arc::new(positions));
        }
    }
    let files = live
        .data
        .iter()
        .map(|f| (f.path().to_string(), f.file.file_size_in_bytes()))
        .collect();
    let iceberg_schema = snapshot.schema(metadata)?;
    let arrow = iceberg::arrow::schema_to_arrow_schema(&iceberg_schema)?;
    let schema = Arc::new(Schema::new(
        arrow
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), f.is_nullable()))
            .collect::<Vec<_>>(),
    ));
    Ok(Some(PlainFiles {
        schema,
        files,
        deleted,
    }))
}
