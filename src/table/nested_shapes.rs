//! Reading data files written before a nested column changed shape (a field renamed, added, dropped,
//! widened or moved inside a struct, a list element or a map value).
//!
//! iceberg-rust 0.10.1's Arrow reader finds top-level columns by field id, but turns a nested column
//! whose Arrow type differs from the file's into the read schema's type with Arrow's `cast`, which
//! pairs struct fields by name, else by position, never by field id: a field added inside a struct
//! fails the read ("Incorrect number of arrays for StructArray fields"), and a rename after a move
//! pairs the wrong fields. So when a projected nested column's type ever differed in the table's
//! schema history, each file is read with that column in the file's own shape (taken from its
//! footer), and each batch is then mapped into the read schema's shape by field id, as Iceberg
//! Java's readers do: a renamed field takes its new name, an added one is null, a dropped one is
//! left out, a widened one is cast, a moved one moves.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, AsArray, ListArray, MapArray, RecordBatch, StructArray};
use arrow::datatypes::{DataType, Field, FieldRef, Schema as ArrowSchema};
use futures::StreamExt;
use iceberg::scan::{FileScanTask, FileScanTaskStream};
use iceberg::spec::{NestedField, Schema, SchemaRef, TableMetadata};
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;

use crate::error::{Error, Result};
use crate::storage::ObjectStorage;
use crate::table::files::open_parquet;

/// Footers read at once while tasks wait for their file's shape.
const FOOTERS_AT_ONCE: usize = 8;

/// The projected nested columns of a read whose shape changed over the table's schemas, and how to
/// read files written in any of their shapes.
pub(crate) struct NestedShapes {
    storage: ObjectStorage,
    /// The changed nested columns as the read returns them (Arrow fields of the read schema), by
    /// top-level field id.
    changed: HashMap<i32, FieldRef>,
}

impl NestedShapes {
    /// `None` when every projected nested column (of `project_ids` in `schema`) has had one shape in
    /// every schema of `metadata`: files then read as they are.
    pub(crate) fn of(
        storage: &ObjectStorage,
        metadata: &TableMetadata,
        schema: &Schema,
        project_ids: &[i32],
    ) -> Result<Option<Arc<Self>>> {
        let changed: Vec<i32> = schema
            .as_struct()
            .fields()
            .iter()
            .filter(|f| project_ids.contains(&f.id) && !f.field_type.is_primitive())
            .filter(|f| {
                metadata.schemas_iter().any(|past| {
                    past.as_struct()
                        .field_by_id(f.id)
                        .is_some_and(|p| p.field_type != f.field_type)
                })
            })
            .map(|f| f.id)
            .collect();
        if changed.is_empty() {
            return Ok(None);
        }
        let arrow = iceberg::arrow::schema_to_arrow_schema(schema)?;
        let changed = arrow
            .fields()
            .iter()
            .filter_map(|f| {
                field_id(f)
                    .filter(|id| changed.contains(id))
                    .map(|id| (id, f.clone()))
            })
            .collect();
        Ok(Some(Arc::new(Self {
            storage: storage.clone(),
            changed,
        })))
    }

    /// `tasks`, each reading its changed nested columns in its file's own shape.
    pub(crate) fn in_file_shapes(self: &Arc<Self>, tasks: FileScanTaskStream) -> FileScanTaskStream {
        let shapes = self.clone();
        tasks
            .map(move |task| {
                let shapes = shapes.clone();
                async move {
                    let task = task?;
                    shapes.in_file_shape(task).await.map_err(|e| {
                        iceberg::Error::new(iceberg::ErrorKind::Unexpected, e.to_string()).with_source(e)
                    })
                }
            })
            .buffered(FOOTERS_AT_ONCE)
            .boxed()
    }

    /// `task` with its schema's changed nested columns typed as its file has them (a column the file
    /// lacks, or one the file records without field ids, keeps the read schema's type).
    pub(crate) async fn in_file_shape(&self, mut task: FileScanTask) -> Result<FileScanTask> {
        let file = open_parquet(&self.storage, &task.data_file_path, Some(task.file_size_in_bytes)).await?;
        let file_schema = file.schema().clone();
        let mut reshaped = false;
        let fields: Vec<Arc<NestedField>> = task
            .schema
            .as_struct()
            .fields()
            .iter()
            .map(|f| {
                if !self.changed.contains_key(&f.id) {
                    return f.clone();
                }
                let in_file = file_schema
                    .fields()
                    .iter()
                    .find(|a| field_id(a) == Some(f.id))
                    .and_then(|a| iceberg::arrow::arrow_type_to_type(a.data_type()).ok());
                match in_file {
                    Some(file_type) if file_type != *f.field_type => {
                        reshaped = true;
                        let mut field = f.as_ref().clone();
                        field.field_type = Box::new(file_type);
                        Arc::new(field)
                    }
                    _ => f.clone(),
                }
            })
            .collect();
        if reshaped {
            let schema = Schema::builder()
                .with_schema_id(task.schema.schema_id())
                .with_fields(fields)
                .build()
                .map_err(|e| {
                    Error::internal(format!(
                        "cannot read {} in its own nested shape: {}",
                        task.data_file_path,
                        e.message()
                    ))
                })?;
            task.schema = SchemaRef::new(schema);
        }
        Ok(task)
    }

    /// `batch` (as the reader returns a task of [`Self::in_file_shape`]) with its changed nested
    /// columns in the read schema's shape.
    pub(crate) fn conform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let read = batch.schema();
        let mut fields: Vec<FieldRef> = Vec::with_capacity(read.fields().len());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(read.fields().len());
        for (field, column) in read.fields().iter().zip(batch.columns()) {
            let wanted = field_id(field).and_then(|id| self.changed.get(&id));
            match wanted {
                Some(wanted) => {
                    columns.push(conform_array(column, wanted.data_type())?);
                    fields.push(wanted.clone());
                }
                None => {
                    columns.push(column.clone());
                    fields.push(field.clone());
                }
            }
        }
        Ok(RecordBatch::try_new(
            Arc::new(ArrowSchema::new_with_metadata(fields, read.metadata().clone())),
            columns,
        )?)
    }
}

/// The Iceberg field id an Arrow field carries, if any.
fn field_id(field: &Field) -> Option<i32> {
    field.metadata().get(PARQUET_FIELD_ID_META_KEY)?.parse().ok()
}

/// `array` as type `to`, nested fields paired by field id: a field `to` has and `array` lacks is
/// null, a field only `array` has is left out, and a primitive is cast (a widen).
fn conform_array(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    Ok(match (array.data_type(), to) {
        (DataType::Struct(from_fields), DataType::Struct(to_fields)) => {
            let from = array.as_struct();
            let columns = to_fields
                .iter()
                .map(|t| {
                    let source =
                        field_id(t).and_then(|id| from_fields.iter().position(|f| field_id(f) == Some(id)));
                    match source {
                        Some(i) => conform_array(from.column(i), t.data_type()),
                        None => Ok(new_null_array(t.data_type(), from.len())),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            Arc::new(StructArray::try_new(
                to_fields.clone(),
                columns,
                from.nulls().cloned(),
            )?)
        }
        (DataType::List(_), DataType::List(to_element)) => {
            let from = array.as_list::<i32>();
            let values = conform_array(from.values(), to_element.data_type())?;
            Arc::new(ListArray::try_new(
                to_element.clone(),
                from.offsets().clone(),
                values,
                from.nulls().cloned(),
            )?)
        }
        (DataType::Map(_, _), DataType::Map(to_entries, sorted)) => {
            let from = array.as_map();
            let entries: ArrayRef = Arc::new(from.entries().clone());
            let entries = conform_array(&entries, to_entries.data_type())?;
            Arc::new(MapArray::try_new(
                to_entries.clone(),
                from.offsets().clone(),
                entries.as_struct().clone(),
                from.nulls().cloned(),
                *sorted,
            )?)
        }
        (from, to)
            if matches!(
                from,
                DataType::Struct(_) | DataType::List(_) | DataType::Map(_, _)
            ) || matches!(to, DataType::Struct(_) | DataType::List(_) | DataType::Map(_, _)) =>
        {
            return Err(Error::internal(format!(
                "a nested field changed kind, from {from} to {to}, which no schema change allows"
            )));
        }
        _ => arrow::compute::cast(array, to)?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow::array::{Int32Array, Int64Array, StringArray};

    use super::*;

    fn with_id(field: Field, id: i32) -> Field {
        field.with_metadata(HashMap::from([(
            PARQUET_FIELD_ID_META_KEY.to_string(),
            id.to_string(),
        )]))
    }

    #[test]
    fn struct_fields_pair_by_id_through_a_rename_a_move_an_add_a_drop_and_a_widen() {
        // Written as struct<browser: string (2), os: string (3), hits: int (4)>.
        let from_fields = vec![
            with_id(Field::new("browser", DataType::Utf8, true), 2),
            with_id(Field::new("os", DataType::Utf8, true), 3),
            with_id(Field::new("hits", DataType::Int32, true), 4),
        ];
        let from: ArrayRef = Arc::new(StructArray::new(
            from_fields.into(),
            vec![
                Arc::new(StringArray::from(vec!["ff", "chrome"])),
                Arc::new(StringArray::from(vec!["linux", "mac"])),
                Arc::new(Int32Array::from(vec![7, 8])),
            ],
            None,
        ));
        // Read as struct<lang: string (5, new), client: string (2, renamed and moved), hits: long (4)>.
        let to_fields = vec![
            with_id(Field::new("lang", DataType::Utf8, true), 5),
            with_id(Field::new("client", DataType::Utf8, true), 2),
            with_id(Field::new("hits", DataType::Int64, true), 4),
        ];
        let to = DataType::Struct(to_fields.into());
        let out = conform_array(&from, &to).unwrap();
        assert_eq!(out.data_type(), &to);
        let out = out.as_struct();
        assert_eq!(out.column(0).null_count(), 2);
        let client = out.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((client.value(0), client.value(1)), ("ff", "chrome"));
        let hits = out.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(hits.values().to_vec(), vec![7, 8]);
    }
}
