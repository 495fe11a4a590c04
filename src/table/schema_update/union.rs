//! `union_by_name`: make a schema take an input's Arrow schema, by name, recursively through
//! structs, list elements and map values: a column the table lacks is added (optional), a wider
//! input type widens the column where the promotion rules allow, a narrower one is left to the
//! writer's widening, and anything else is refused. Nothing is dropped or loosened.

use arrow::datatypes::{DataType, Field, SchemaRef};
use iceberg::spec::Type;

use super::apply::Draft;
use super::tree;
use super::NewColumn;
use crate::error::{Error, Result};

pub(super) fn union_by_name(draft: &mut Draft<'_>, schema: &SchemaRef) -> Result<()> {
    for field in schema.fields() {
        union_field(draft, None, field)?;
    }
    Ok(())
}

fn union_field(draft: &mut Draft<'_>, parent: Option<&str>, input: &Field) -> Result<()> {
    let path = match parent {
        Some(p) => format!("{p}.{}", input.name()),
        None => input.name().to_string(),
    };
    let Some(existing) = draft.schema.field_by_name(&path).cloned() else {
        let field_type = tree::iceberg_type_of(input.data_type())?;
        return draft.add(&path, &field_type, &NewColumn::default());
    };
    union_type(draft, &path, existing.field_type.as_ref(), input.data_type())
}

fn union_type(draft: &mut Draft<'_>, path: &str, existing: &Type, input: &DataType) -> Result<()> {
    match (existing, input) {
        (Type::Struct(_), DataType::Struct(fields)) => {
            for f in fields {
                union_field(draft, Some(path), f)?;
            }
            Ok(())
        }
        (Type::List(l), DataType::List(e) | DataType::LargeList(e) | DataType::FixedSizeList(e, _)) => {
            union_type(
                draft,
                &format!("{path}.element"),
                &l.element_field.field_type,
                e.data_type(),
            )
        }
        (Type::Map(m), DataType::Map(entries, _)) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err(Error::invalid(format!(
                    "the input's map {path:?} has no key and value"
                )));
            };
            if kv.len() != 2 {
                return Err(Error::invalid(format!(
                    "the input's map {path:?} has no key and value"
                )));
            }
            union_type(
                draft,
                &format!("{path}.key"),
                &m.key_field.field_type,
                kv[0].data_type(),
            )?;
            union_type(
                draft,
                &format!("{path}.value"),
                &m.value_field.field_type,
                kv[1].data_type(),
            )
        }
        (Type::Primitive(have), _) if !input.is_nested() => {
            let wanted = tree::iceberg_type_of(input)?;
            if let Type::Primitive(want) = &wanted {
                if have == want || tree::promotes(want, have) {
                    return Ok(());
                }
                if tree::promotes(have, want) {
                    return draft.widen(path, &wanted);
                }
            }
            let table_arrow = tree::arrow_type_of(existing)?;
            if crate::table::writer::widening(input, &table_arrow) {
                return Ok(());
            }
            Err(mismatch(path, existing, input))
        }
        _ => Err(mismatch(path, existing, input)),
    }
}

fn mismatch(path: &str, existing: &Type, input: &DataType) -> Error {
    Error::invalid(format!(
        "column {path:?} is {} in the table and {input} in the input: {}",
        tree::type_name(existing),
        tree::PROMOTION_RULES
    ))
}
