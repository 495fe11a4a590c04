//! Edits of an Iceberg schema's field tree, by field id: replace one field anywhere (a struct member,
//! a list element, a map key or value), edit the member list of one struct, find where a field
//! lives, give a new type fresh field ids, convert Arrow types, and Iceberg's type promotion rules
//! (Java's `TypeUtil.isPromotionAllowed`).

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{
    ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type,
};

use crate::error::{Error, Result};

/// Where a field lives: a member of a struct (the top-level struct when `owner` is `None`,
/// otherwise the struct typed field `owner`: a struct column, a list element or a map value), or
/// not a struct member at all (a list element, a map key or value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    Member { owner: Option<i32> },
    Element,
}

/// Where every field of `schema` lives, by id.
pub(crate) fn places(schema: &Schema) -> HashMap<i32, Place> {
    fn walk_type(owner: &NestedFieldRef, out: &mut HashMap<i32, Place>) {
        match owner.field_type.as_ref() {
            Type::Struct(s) => walk_members(s.fields(), Some(owner.id), out),
            Type::List(l) => element(&l.element_field, out),
            Type::Map(m) => {
                element(&m.key_field, out);
                element(&m.value_field, out);
            }
            Type::Primitive(_) => {}
        }
    }
    fn element(field: &NestedFieldRef, out: &mut HashMap<i32, Place>) {
        out.insert(field.id, Place::Element);
        walk_type(field, out);
    }
    fn walk_members(fields: &[NestedFieldRef], owner: Option<i32>, out: &mut HashMap<i32, Place>) {
        for f in fields {
            out.insert(f.id, Place::Member { owner });
            walk_type(f, out);
        }
    }
    let mut out = HashMap::new();
    walk_members(schema.as_struct().fields(), None, &mut out);
    out
}

/// `fields` with the field `id` (anywhere in the tree) replaced by `edit(field)`; an error when no
/// field has that id.
pub(crate) fn map_field(
    fields: &[NestedFieldRef],
    id: i32,
    edit: &mut dyn FnMut(&NestedField) -> Result<NestedField>,
) -> Result<Vec<NestedFieldRef>> {
    let mut found = false;
    let out = map_members(fields, id, edit, &mut found)?;
    if !found {
        return Err(Error::internal(format!("no field with id {id} in the schema")));
    }
    Ok(out)
}

fn map_members(
    fields: &[NestedFieldRef],
    id: i32,
    edit: &mut dyn FnMut(&NestedField) -> Result<NestedField>,
    found: &mut bool,
) -> Result<Vec<NestedFieldRef>> {
    fields.iter().map(|f| map_one(f, id, edit, found)).collect()
}

fn map_one(
    field: &NestedFieldRef,
    id: i32,
    edit: &mut dyn FnMut(&NestedField) -> Result<NestedField>,
    found: &mut bool,
) -> Result<NestedFieldRef> {
    if *found {
        return Ok(field.clone());
    }
    if field.id == id {
        *found = true;
        return Ok(Arc::new(edit(field)?));
    }
    let new_type = match field.field_type.as_ref() {
        Type::Primitive(_) => return Ok(field.clone()),
        Type::Struct(s) => Type::Struct(StructType::new(map_members(s.fields(), id, edit, found)?)),
        Type::List(l) => Type::List(ListType::new(map_one(&l.element_field, id, edit, found)?)),
        Type::Map(m) => {
            let key = map_one(&m.key_field, id, edit, found)?;
            let value = map_one(&m.value_field, id, edit, found)?;
            Type::Map(MapType::new(key, value))
        }
    };
    if !*found {
        return Ok(field.clone());
    }
    Ok(Arc::new(with_type(field, new_type)))
}

/// `fields` with the member list of the struct owned by `owner` (the top level for `None`)
/// replaced by `edit(members)`.
pub(crate) fn edit_members(
    fields: &[NestedFieldRef],
    owner: Option<i32>,
    edit: &mut dyn FnMut(Vec<NestedFieldRef>) -> Result<Vec<NestedFieldRef>>,
) -> Result<Vec<NestedFieldRef>> {
    let Some(owner) = owner else {
        return edit(fields.to_vec());
    };
    map_field(fields, owner, &mut |f| match f.field_type.as_ref() {
        Type::Struct(s) => Ok(with_type(
            f,
            Type::Struct(StructType::new(edit(s.fields().to_vec())?)),
        )),
        _ => Err(Error::internal(format!("field {} is not a struct", f.name))),
    })
}

/// A copy of `field` with another type.
pub(crate) fn with_type(field: &NestedField, field_type: Type) -> NestedField {
    let mut f = field.clone();
    f.field_type = Box::new(field_type);
    f
}

/// `field_type` with every nested field given a new id from `last_id` (incremented as ids are
/// used), so a new column never reuses an id the table ever had.
pub(crate) fn assign_fresh_ids(field_type: &Type, last_id: &mut i32) -> Type {
    let fresh = |f: &NestedFieldRef, last_id: &mut i32| -> NestedFieldRef {
        *last_id += 1;
        let id = *last_id;
        let mut n = (**f).clone();
        n.id = id;
        n.field_type = Box::new(assign_fresh_ids(&f.field_type, last_id));
        Arc::new(n)
    };
    match field_type {
        Type::Primitive(_) => field_type.clone(),
        Type::Struct(s) => Type::Struct(StructType::new(
            s.fields().iter().map(|f| fresh(f, last_id)).collect(),
        )),
        Type::List(l) => Type::List(ListType::new(fresh(&l.element_field, last_id))),
        Type::Map(m) => {
            let key = fresh(&m.key_field, last_id);
            let value = fresh(&m.value_field, last_id);
            Type::Map(MapType::new(key, value))
        }
    }
}

/// The Iceberg type of an Arrow type, nested ones included (its field ids are placeholders, to be
/// replaced by [`assign_fresh_ids`]).
pub fn iceberg_type_of(data_type: &arrow::datatypes::DataType) -> Result<Type> {
    let schema =
        arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new("c", data_type.clone(), true)]);
    let converted = iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(&schema)
        .map_err(|e| Error::invalid(format!("unsupported column type {data_type}: {}", e.message())))?;
    Ok(converted.as_struct().fields()[0].field_type.as_ref().clone())
}

/// The Arrow type of an Iceberg type.
pub(crate) fn arrow_type_of(field_type: &Type) -> Result<arrow::datatypes::DataType> {
    Ok(iceberg::arrow::type_to_arrow_type(field_type)?)
}

/// Whether values of `from` may be read as `to` (Iceberg's type promotion for v2 tables):
/// the same type, `int` → `long`, `float` → `double`, or a decimal of the same scale and a larger
/// precision.
pub(crate) fn promotes(from: &PrimitiveType, to: &PrimitiveType) -> bool {
    use PrimitiveType::*;
    match (from, to) {
        (a, b) if a == b => true,
        (Int, Long) | (Float, Double) => true,
        (
            Decimal {
                precision: p1,
                scale: s1,
            },
            Decimal {
                precision: p2,
                scale: s2,
            },
        ) => s1 == s2 && p2 >= p1,
        _ => false,
    }
}

/// The rule [`promotes`] follows, for error messages.
pub(crate) const PROMOTION_RULES: &str =
    "Iceberg allows only int to long, float to double, and decimal(P,S) to decimal(P2,S) with P2 >= P";

/// A short name of a type for messages: `long`, `struct`, `list<int>`, `decimal(12,2)`.
pub(crate) fn type_name(field_type: &Type) -> String {
    match field_type {
        Type::Primitive(p) => p.to_string(),
        Type::Struct(_) => "struct".into(),
        Type::List(l) => format!("list<{}>", type_name(&l.element_field.field_type)),
        Type::Map(m) => format!(
            "map<{}, {}>",
            type_name(&m.key_field.field_type),
            type_name(&m.value_field.field_type)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_follows_the_iceberg_rules() {
        use PrimitiveType::*;
        assert!(promotes(&Int, &Long));
        assert!(promotes(&Float, &Double));
        assert!(promotes(&Long, &Long));
        assert!(!promotes(&Long, &Int));
        assert!(!promotes(&Int, &Double));
        assert!(promotes(
            &Decimal {
                precision: 10,
                scale: 2
            },
            &Decimal {
                precision: 12,
                scale: 2
            }
        ));
        assert!(!promotes(
            &Decimal {
                precision: 10,
                scale: 2
            },
            &Decimal {
                precision: 12,
                scale: 3
            }
        ));
    }
}
