//! A snapshot as plain Parquet files, for engines that read Parquet themselves (DataFusion's and
//! Ballista's multi-partition file scans): possible when the snapshot's rows are exactly its data
//! files' rows, read by column name, i.e. there are no delete files, and no column of the table was
//! ever renamed (names then identify columns as field ids do). Otherwise `None`, and the caller reads
//! through Iceberg's own reader.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef as ArrowSchemaRef};
use iceberg::spec::ManifestContentType;

use super::Table;
use crate::error::Result;

/// A snapshot's data files and the schema to read them with.
#[derive(Clone, Debug)]
pub struct PlainFiles {
    /// The snapshot's schema as Arrow, without Iceberg field-id metadata.
    pub schema: ArrowSchemaRef,
    /// Data files: URI and size in bytes.
    pub files: Vec<(String, u64)>,
}

/// `snapshot_id` of `table` as plain Parquet files, when its rows can be read that way.
pub async fn plain_parquet_files(table: &Table, snapshot_id: i64) -> Result<Option<PlainFiles>> {
    let metadata = table.metadata();
    let Some(snapshot) = metadata.snapshot_by_id(snapshot_id) else {
        return Ok(None);
    };
    // Every schema in the history must name each field id as the current one does.
    let current: HashMap<i32, String> = table
        .schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| (f.id, f.name.clone()))
        .collect();
    let renamed = metadata.schemas_iter().any(|s| {
        s.as_struct()
            .fields()
            .iter()
            .any(|f| current.get(&f.id).is_some_and(|n| n != &f.name))
    });
    if renamed {
        return Ok(None);
    }
    let manifests = table.manifests(snapshot).await?;
    if manifests.iter().any(|m| {
        m.content == ManifestContentType::Deletes
            && (m.has_added_files() || m.existing_files_count != Some(0))
    }) {
        return Ok(None);
    }
    let files = table
        .live_data_files(Some(snapshot))
        .await?
        .into_iter()
        .map(|f| (f.file_path().to_string(), f.file_size_in_bytes()))
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
    Ok(Some(PlainFiles { schema, files }))
}
