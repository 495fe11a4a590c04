//! Schema evolution: a new current schema, no snapshot. Applied on each attempt's base, so a column
//! another writer added meanwhile is seen (and a second column of the same name refused).

use iceberg::spec::{NestedField, Schema};

use super::producer::Staged;
use crate::error::{Error, ErrorKind, Result};
use crate::table::Table;

/// A change to the schema.
#[derive(Clone, Debug)]
pub(crate) enum SchemaChange {
    /// Add an optional column at the end.
    AddColumn {
        name: String,
        field_type: iceberg::spec::Type,
        doc: Option<String>,
    },
}

impl SchemaChange {
    pub(crate) fn apply(&self, base: &Table) -> Result<Staged> {
        let SchemaChange::AddColumn {
            name,
            field_type,
            doc,
        } = self;
        let schema = base.schema();
        if schema.field_by_name(name).is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("table {} already has a column {name:?}", base.name()),
            ));
        }
        let mut fields: Vec<_> = schema.as_struct().fields().to_vec();
        let mut field = NestedField::optional(base.metadata().last_column_id() + 1, name, field_type.clone());
        if let Some(d) = doc {
            field = field.with_doc(d);
        }
        fields.push(std::sync::Arc::new(field));
        let new_schema = Schema::builder()
            .with_identifier_field_ids(schema.identifier_field_ids())
            .with_fields(fields)
            .build()?;
        Staged::metadata_only(base.metadata_builder().add_current_schema(new_schema)?.build()?)
    }
}
