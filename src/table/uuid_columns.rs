//! Iceberg's `uuid` type in the Arrow schemas a table is created from. Arrow has no uuid type: a
//! uuid is a `FixedSizeBinary(16)` field, which Iceberg would read as `fixed[16]`. Arrow's canonical
//! extension `arrow.uuid` (the field's `ARROW:extension:name` metadata, as PyArrow's `pa.uuid()`
//! writes it) marks the field as a uuid, so a table created from an Arrow schema (and `floe create
//! --schema "... key uuid"`, whose text becomes one) keeps Iceberg's uuid type.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema as ArrowSchema};
use iceberg::spec::{
    ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type,
};

use crate::error::{Error, Result};

/// The Arrow field metadata key naming an extension type.
const EXTENSION_NAME_KEY: &str = "ARROW:extension:name";
/// Arrow's canonical extension name of a uuid.
const UUID_EXTENSION: &str = "arrow.uuid";

/// `arrow`, the Arrow form of `schema`, with every field that is a uuid in `schema` marked as one.
pub(crate) fn mark_uuid_fields(schema: &Schema, arrow: ArrowSchema) -> ArrowSchema {
    let fields = mark_members(schema.as_struct().fields(), arrow.fields());
    ArrowSchema::new_with_metadata(fields, arrow.metadata().clone())
}

fn mark_members(iceberg: &[NestedFieldRef], arrow: &Fields) -> Fields {
    iceberg
        .iter()
        .zip(arrow.iter())
        .map(|(i, a)| mark_field(&i.field_type, a))
        .collect()
}

fn mark_field(iceberg: &Type, arrow: &FieldRef) -> FieldRef {
    let data_type = match (iceberg, arrow.data_type()) {
        (Type::Primitive(PrimitiveType::Uuid), _) => {
            let mut metadata = arrow.metadata().clone();
            metadata.insert(EXTENSION_NAME_KEY.to_string(), UUID_EXTENSION.to_string());
            return Arc::new(arrow.as_ref().clone().with_metadata(metadata));
        }
        (Type::Struct(s), DataType::Struct(children)) => DataType::Struct(mark_members(s.fields(), children)),
        (Type::List(l), DataType::List(element)) => {
            DataType::List(mark_field(&l.element_field.field_type, element))
        }
        (Type::Map(m), DataType::Map(entries, sorted)) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                let kv: Fields = vec![
                    mark_field(&m.key_field.field_type, &kv[0]),
                    mark_field(&m.value_field.field_type, &kv[1]),
                ]
                .into();
                DataType::Map(
                    Arc::new(entries.as_ref().clone().with_data_type(DataType::Struct(kv))),
                    *sorted,
                )
            }
            _ => return arrow.clone(),
        },
        _ => return arrow.clone(),
    };
    Arc::new(arrow.as_ref().clone().with_data_type(data_type))
}

/// `schema`, converted from `arrow`, with each `fixed[16]` field that `arrow` marks as a uuid typed
/// `uuid`.
pub(crate) fn with_uuid_fields(arrow: &ArrowSchema, schema: Schema) -> Result<Schema> {
    if !arrow.fields().iter().any(|f| has_uuid(f)) {
        return Ok(schema);
    }
    let fields = restore_members(schema.as_struct().fields(), arrow.fields());
    Schema::builder()
        .with_schema_id(schema.schema_id())
        .with_identifier_field_ids(schema.identifier_field_ids())
        .with_fields(fields)
        .build()
        .map_err(|e| Error::invalid(format!("invalid schema with uuid columns: {}", e.message())))
}

fn has_uuid(field: &Field) -> bool {
    is_marked_uuid(field)
        || match field.data_type() {
            DataType::Struct(children) => children.iter().any(|c| has_uuid(c)),
            DataType::List(e) | DataType::LargeList(e) | DataType::FixedSizeList(e, _) => has_uuid(e),
            DataType::Map(entries, _) => has_uuid(entries),
            _ => false,
        }
}

fn is_marked_uuid(field: &Field) -> bool {
    field.data_type() == &DataType::FixedSizeBinary(16)
        && field.metadata().get(EXTENSION_NAME_KEY).map(String::as_str) == Some(UUID_EXTENSION)
}

fn restore_members(iceberg: &[NestedFieldRef], arrow: &Fields) -> Vec<NestedFieldRef> {
    iceberg
        .iter()
        .zip(arrow.iter())
        .map(|(i, a)| restore_field(i, a))
        .collect()
}

fn restore_field(iceberg: &NestedFieldRef, arrow: &Field) -> NestedFieldRef {
    let field_type = match (iceberg.field_type.as_ref(), arrow.data_type()) {
        (Type::Primitive(PrimitiveType::Fixed(16)), _) if is_marked_uuid(arrow) => {
            Type::Primitive(PrimitiveType::Uuid)
        }
        (Type::Struct(s), DataType::Struct(children)) => {
            Type::Struct(StructType::new(restore_members(s.fields(), children)))
        }
        (Type::List(l), DataType::List(e) | DataType::LargeList(e) | DataType::FixedSizeList(e, _)) => {
            Type::List(ListType::new(restore_field(&l.element_field, e)))
        }
        (Type::Map(m), DataType::Map(entries, _)) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => Type::Map(MapType::new(
                restore_field(&m.key_field, &kv[0]),
                restore_field(&m.value_field, &kv[1]),
            )),
            _ => return iceberg.clone(),
        },
        _ => return iceberg.clone(),
    };
    let mut field: NestedField = iceberg.as_ref().clone();
    field.field_type = Box::new(field_type);
    Arc::new(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::schema_text::{parse_schema, type_text};

    #[test]
    fn uuid_columns_survive_the_arrow_schema_a_table_is_created_from() {
        let text = "id long not null, key uuid not null, digest fixed[16], at time, \
                    props struct<u: uuid>, keys list<uuid>, by map<string, uuid>";
        let arrow = parse_schema(text).unwrap();
        let schema = iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(&arrow).unwrap();
        let schema = with_uuid_fields(&arrow, schema).unwrap();
        let types: Vec<String> = schema
            .as_struct()
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name, type_text(&f.field_type)))
            .collect();
        assert_eq!(
            types,
            [
                "id long",
                "key uuid",
                "digest fixed[16]",
                "at time",
                "props struct<u: uuid>",
                "keys list<uuid>",
                "by map<string, uuid>"
            ]
        );
        assert!(schema.field_by_name("key").unwrap().required);
    }
}
