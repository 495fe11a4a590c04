//! Applying a [`SchemaUpdate`](super::SchemaUpdate)'s operations, in order, to a schema: each one
//! resolves its paths on the schema the previous one left, checks the rules, and edits the field
//! tree ([`super::tree`]). A broken rule is a one-line `InvalidInput` (an existing name is
//! `AlreadyExists`); nothing is half-applied because the result is only a value.

use std::collections::{BTreeMap, HashMap};

use iceberg::spec::{NestedField, NestedFieldRef, PrimitiveType, Schema, Type};

use super::tree::{self, Place};
use super::{NewColumn, Position, SchemaOp};
use crate::error::{Error, ErrorKind, Result};

/// Columns that may not be dropped because a partition spec or sort order in use reads them: field
/// id → what reads it (for the message).
#[derive(Clone, Debug, Default)]
pub(crate) struct Guards {
    pub(crate) sources: BTreeMap<i32, String>,
}

/// A schema being changed, and the last field id the table ever assigned.
pub(crate) struct Draft<'g> {
    pub(crate) schema: Schema,
    pub(crate) last_column_id: i32,
    guards: &'g Guards,
}

/// Apply `ops` to `base` (of a table whose `last-column-id` is `last_column_id`): the new schema
/// (same schema id as `base`; the metadata builder gives it its own) and the new last column id.
pub(crate) fn apply(
    base: &Schema,
    last_column_id: i32,
    ops: &[SchemaOp],
    guards: &Guards,
) -> Result<(Schema, i32)> {
    let mut draft = Draft {
        schema: base.clone(),
        last_column_id: last_column_id.max(base.highest_field_id()),
        guards,
    };
    for op in ops {
        draft.apply(op)?;
    }
    Ok((draft.schema, draft.last_column_id))
}

impl Draft<'_> {
    fn apply(&mut self, op: &SchemaOp) -> Result<()> {
        match op {
            SchemaOp::Add {
                path,
                field_type,
                column,
            } => self.add(path, field_type, column),
            SchemaOp::Rename { path, new_name } => self.rename(path, new_name),
            SchemaOp::Drop { path } => self.drop_column(path),
            SchemaOp::MakeOptional { path } => self.make_optional(path),
            SchemaOp::UpdateDoc { path, doc } => {
                let field = self.resolve(path)?;
                let doc = doc.clone();
                self.map_field(field.id, move |f| {
                    let mut f = f.clone();
                    f.doc = doc.clone();
                    Ok(f)
                })
            }
            SchemaOp::Widen { path, to } => self.widen(path, to),
            SchemaOp::Move { path, position } => self.move_column(path, position),
            SchemaOp::SetIdentifier { paths } => self.set_identifier(paths),
            SchemaOp::Union { schema } => super::union::union_by_name(self, schema),
        }
    }

    /// The field at `path`, or a clear error.
    pub(crate) fn resolve(&self, path: &str) -> Result<NestedFieldRef> {
        self.schema
            .field_by_name(path)
            .cloned()
            .ok_or_else(|| Error::invalid(format!("the table has no column {path:?}")))
    }

    fn place(&self, id: i32) -> Place {
        tree::places(&self.schema)
            .get(&id)
            .copied()
            .unwrap_or(Place::Member { owner: None })
    }

    fn rebuild(&mut self, fields: Vec<NestedFieldRef>, identifiers: Vec<i32>) -> Result<()> {
        self.schema = Schema::builder()
            .with_schema_id(self.schema.schema_id())
            .with_identifier_field_ids(identifiers)
            .with_fields(fields)
            .build()
            .map_err(|e| Error::invalid(format!("the new schema is not valid: {}", e.message())))?;
        Ok(())
    }

    fn identifiers(&self) -> Vec<i32> {
        self.schema.identifier_field_ids().collect()
    }

    fn map_field(
        &mut self,
        id: i32,
        mut edit: impl FnMut(&NestedField) -> Result<NestedField>,
    ) -> Result<()> {
        let fields = tree::map_field(self.schema.as_struct().fields(), id, &mut edit)?;
        self.rebuild(fields, self.identifiers())
    }

    fn edit_members(
        &mut self,
        owner: Option<i32>,
        mut edit: impl FnMut(Vec<NestedFieldRef>) -> Result<Vec<NestedFieldRef>>,
    ) -> Result<()> {
        let fields = tree::edit_members(self.schema.as_struct().fields(), owner, &mut edit)?;
        self.rebuild(fields, self.identifiers())
    }

    /// The struct a new field at `parent` goes into: its owner's id (`None`: the top level).
    fn struct_owner(&self, parent: Option<&str>) -> Result<Option<i32>> {
        let Some(parent) = parent else {
            return Ok(None);
        };
        let field = self.resolve(parent)?;
        let owner = match field.field_type.as_ref() {
            Type::Struct(_) => Some(field.clone()),
            Type::List(l) => Some(l.element_field.clone()),
            Type::Map(m) => Some(m.value_field.clone()),
            Type::Primitive(_) => None,
        };
        match owner {
            Some(f) if f.field_type.is_struct() => Ok(Some(f.id)),
            _ => Err(Error::invalid(format!(
                "{parent:?} is a {}, not a struct: a column cannot be added inside it",
                tree::type_name(&field.field_type)
            ))),
        }
    }

    /// The members of the struct owned by `owner`.
    fn members(&self, owner: Option<i32>) -> Vec<NestedFieldRef> {
        match owner {
            None => self.schema.as_struct().fields().to_vec(),
            Some(id) => match self.schema.field_by_id(id).map(|f| f.field_type.as_ref()) {
                Some(Type::Struct(s)) => s.fields().to_vec(),
                _ => Vec::new(),
            },
        }
    }

    pub(crate) fn add(&mut self, path: &str, field_type: &Type, column: &NewColumn) -> Result<()> {
        let (parent, name) = match path.rsplit_once('.') {
            Some((p, n)) => (Some(p), n),
            None => (None, path),
        };
        crate::catalog::names::validate_name("column", name)?;
        if column.required {
            return Err(Error::invalid(format!(
                "cannot add required column {path:?}: a required column needs a default for the rows already \
                 written, an Iceberg v3 feature, and floe writes v2 tables; add it as optional"
            )));
        }
        let owner = self.struct_owner(parent)?;
        if self.members(owner).iter().any(|f| f.name == name) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("the table already has a column {path:?}"),
            ));
        }
        let mut last = self.last_column_id + 1;
        let id = last;
        let mut field = NestedField::optional(id, name, tree::assign_fresh_ids(field_type, &mut last));
        field.doc = column.doc.clone();
        let anchor = self.anchor(column.position.as_ref(), parent, owner, path)?;
        self.last_column_id = last;
        let field = std::sync::Arc::new(field);
        self.edit_members(owner, |mut members| {
            let at = insert_index(&members, anchor);
            members.insert(at, field.clone());
            Ok(members)
        })
    }

    /// Where `position` puts a field in the struct owned by `owner`: `None` for the end, else
    /// (`First`: `None` anchor) the anchor sibling's id and whether the field goes after it.
    fn anchor(
        &self,
        position: Option<&Position>,
        parent: Option<&str>,
        owner: Option<i32>,
        path: &str,
    ) -> Result<Anchor> {
        let (sibling, after) = match position {
            None => return Ok(Anchor::End),
            Some(Position::First) => return Ok(Anchor::First),
            Some(Position::Before(s)) => (s, false),
            Some(Position::After(s)) => (s, true),
        };
        let nested = parent.map(|p| format!("{p}.{sibling}"));
        let field = nested
            .as_deref()
            .and_then(|n| self.schema.field_by_name(n))
            .or_else(|| self.schema.field_by_name(sibling))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "the table has no column {sibling:?} to place {path:?} by"
                ))
            })?;
        if self.place(field.id) != (Place::Member { owner }) {
            return Err(Error::invalid(format!(
                "cannot place {path:?} next to {sibling:?}: a column moves only within its own struct"
            )));
        }
        Ok(if after {
            Anchor::After(field.id)
        } else {
            Anchor::Before(field.id)
        })
    }

    fn rename(&mut self, path: &str, new_name: &str) -> Result<()> {
        let field = self.resolve(path)?;
        let Place::Member { owner } = self.place(field.id) else {
            return Err(Error::invalid(format!(
                "cannot rename {path:?}: list elements and map keys and values have fixed names"
            )));
        };
        if new_name.contains('.') {
            return Err(Error::invalid(format!(
                "cannot rename {path:?} to {new_name:?}: give the new name of the last segment, without dots"
            )));
        }
        crate::catalog::names::validate_name("column", new_name)?;
        if new_name == field.name {
            return Ok(());
        }
        if self.members(owner).iter().any(|f| f.name == new_name) {
            return Err(Error::invalid(format!(
                "cannot rename {path:?} to {new_name:?}: a column of that name already exists there"
            )));
        }
        self.map_field(field.id, |f| {
            let mut f = f.clone();
            f.name = new_name.to_string();
            Ok(f)
        })
    }

    fn drop_column(&mut self, path: &str) -> Result<()> {
        let field = self.resolve(path)?;
        let Place::Member { owner } = self.place(field.id) else {
            return Err(Error::invalid(format!(
                "cannot drop {path:?}: a list element or map key or value is dropped with its list or map"
            )));
        };
        let mut ids = Vec::new();
        collect_ids(&field, &mut ids);
        let identifiers = self.identifiers();
        if let Some(id) = ids.iter().find(|id| identifiers.contains(id)) {
            return Err(Error::invalid(format!(
                "cannot drop {path:?}: {:?} is an identifier field (set other identifier fields first)",
                self.schema.name_by_field_id(*id).unwrap_or(path)
            )));
        }
        if let Some(reader) = ids.iter().find_map(|id| self.guards.sources.get(id)) {
            return Err(Error::invalid(format!(
                "cannot drop {path:?}: it is the source of {reader}"
            )));
        }
        self.edit_members(owner, |members| {
            Ok(members.into_iter().filter(|f| f.id != field.id).collect())
        })
    }

    fn make_optional(&mut self, path: &str) -> Result<()> {
        let field = self.resolve(path)?;
        if self.identifiers().contains(&field.id) {
            return Err(Error::invalid(format!(
                "cannot make {path:?} optional: it is an identifier field, and identifier fields are required"
            )));
        }
        let is_key = tree::places(&self.schema).get(&field.id) == Some(&Place::Element)
            && self
                .schema
                .name_by_field_id(field.id)
                .is_some_and(|n| n.ends_with(".key"));
        if is_key {
            return Err(Error::invalid(format!(
                "cannot make {path:?} optional: map keys are required"
            )));
        }
        self.map_field(field.id, |f| {
            let mut f = f.clone();
            f.required = false;
            Ok(f)
        })
    }

    pub(crate) fn widen(&mut self, path: &str, to: &Type) -> Result<()> {
        let field = self.resolve(path)?;
        let (Type::Primitive(from), Type::Primitive(to_p)) = (field.field_type.as_ref(), to) else {
            return Err(Error::invalid(format!(
                "cannot change {path:?} from {} to {}: only primitive types widen",
                tree::type_name(&field.field_type),
                tree::type_name(to)
            )));
        };
        if from == to_p {
            return Ok(());
        }
        if !tree::promotes(from, to_p) {
            return Err(Error::invalid(format!(
                "cannot change {path:?} from {from} to {to_p}: {}",
                tree::PROMOTION_RULES
            )));
        }
        let to = to.clone();
        self.map_field(field.id, move |f| Ok(tree::with_type(f, to.clone())))
    }

    fn move_column(&mut self, path: &str, position: &Position) -> Result<()> {
        let field = self.resolve(path)?;
        let Place::Member { owner } = self.place(field.id) else {
            return Err(Error::invalid(format!(
                "cannot move {path:?}: list elements and map keys and values have no position"
            )));
        };
        let parent = path.rsplit_once('.').map(|(p, _)| p);
        let anchor = self.anchor(Some(position), parent, owner, path)?;
        if matches!(anchor, Anchor::Before(id) | Anchor::After(id) if id == field.id) {
            return Err(Error::invalid(format!("cannot move {path:?} next to itself")));
        }
        self.edit_members(owner, |members| {
            let mut members: Vec<_> = members.into_iter().filter(|f| f.id != field.id).collect();
            let at = insert_index(&members, anchor);
            members.insert(at, field.clone());
            Ok(members)
        })
    }

    fn set_identifier(&mut self, paths: &[String]) -> Result<()> {
        let places = tree::places(&self.schema);
        let mut ids = Vec::new();
        for path in paths {
            let field = self.resolve(path)?;
            let refuse = |why: &str| {
                Err(Error::invalid(format!(
                    "cannot make {path:?} an identifier field: {why}"
                )))
            };
            match field.field_type.as_ref() {
                Type::Primitive(PrimitiveType::Float | PrimitiveType::Double) => {
                    return refuse("it is floating point (identifier fields cannot be float or double)")
                }
                Type::Primitive(_) => {}
                other => {
                    return refuse(&format!(
                        "it is a {} (identifier fields are primitive)",
                        tree::type_name(other)
                    ))
                }
            }
            if !field.required {
                return refuse("it is optional (identifier fields are required)");
            }
            if let Some(why) = nested_refusal(&self.schema, &places, field.id) {
                return refuse(why);
            }
            if !ids.contains(&field.id) {
                ids.push(field.id);
            }
        }
        let fields = self.schema.as_struct().fields().to_vec();
        self.rebuild(fields, ids)
    }
}

/// Why a field nested in the schema cannot be an identifier field (inside a list or map, or an
/// optional struct), if it cannot.
fn nested_refusal(schema: &Schema, places: &HashMap<i32, Place>, id: i32) -> Option<&'static str> {
    let mut at = id;
    loop {
        match places.get(&at) {
            Some(Place::Member { owner: None }) | None => return None,
            Some(Place::Element) => return Some("it is inside a list or map"),
            Some(Place::Member { owner: Some(owner) }) => {
                if places.get(owner) == Some(&Place::Element) {
                    return Some("it is inside a list or map");
                }
                if schema.field_by_id(*owner).is_some_and(|f| !f.required) {
                    return Some("it is inside an optional struct");
                }
                at = *owner;
            }
        }
    }
}

/// Where a field goes among its siblings.
#[derive(Clone, Copy, Debug)]
enum Anchor {
    End,
    First,
    Before(i32),
    After(i32),
}

fn insert_index(members: &[NestedFieldRef], anchor: Anchor) -> usize {
    let index_of = |id| members.iter().position(|f| f.id == id).unwrap_or(members.len());
    match anchor {
        Anchor::End => members.len(),
        Anchor::First => 0,
        Anchor::Before(id) => index_of(id),
        Anchor::After(id) => (index_of(id) + 1).min(members.len()),
    }
}

/// The ids of `field` and everything nested in it.
pub(crate) fn collect_ids(field: &NestedFieldRef, out: &mut Vec<i32>) {
    out.push(field.id);
    match field.field_type.as_ref() {
        Type::Primitive(_) => {}
        Type::Struct(s) => s.fields().iter().for_each(|f| collect_ids(f, out)),
        Type::List(l) => collect_ids(&l.element_field, out),
        Type::Map(m) => {
            collect_ids(&m.key_field, out);
            collect_ids(&m.value_field, out);
        }
    }
}
