//! What a schema change touched, for telling whether two concurrent schema changes collide: the ids
//! of the fields it added, dropped, renamed, retyped, loosened, documented, moved or made (or
//! unmade) identifier fields, and the full names it took or freed. Two changes collide when they
//! share a field id, or a name (or one's name is a path prefix of the other's: a change to a struct
//! collides with one inside it).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use iceberg::spec::{NestedFieldRef, Schema, Type};

use super::tree::{self, Place};

/// The fields and names one schema change touched.
#[derive(Clone, Debug, Default)]
pub(crate) struct Touched {
    /// Field id → its name (before the change, or after it for a new field).
    pub(crate) ids: BTreeMap<i32, String>,
    pub(crate) names: BTreeSet<String>,
}

impl Touched {
    /// What changed from `before` to `after`.
    pub(crate) fn between(before: &Schema, after: &Schema) -> Self {
        let mut t = Touched::default();
        let old = before.field_id_to_fields();
        let new = after.field_id_to_fields();
        for (id, f) in old {
            match new.get(id) {
                None => t.touch(*id, before, None),
                Some(g) if differs(f, g) => t.touch(*id, before, Some(after)),
                Some(_) => {}
            }
        }
        for id in new.keys().filter(|id| !old.contains_key(id)) {
            t.touch(*id, after, None);
        }
        let ids_before: BTreeSet<i32> = before.identifier_field_ids().collect();
        let ids_after: BTreeSet<i32> = after.identifier_field_ids().collect();
        for id in ids_before.symmetric_difference(&ids_after) {
            t.touch(*id, before, Some(after));
        }
        for id in moved(before, after) {
            t.touch(id, before, Some(after));
        }
        t
    }

    fn touch(&mut self, id: i32, schema: &Schema, other: Option<&Schema>) {
        for s in std::iter::once(schema).chain(other) {
            if let Some(name) = s.name_by_field_id(id) {
                self.ids.entry(id).or_insert_with(|| name.to_string());
                self.names.insert(name.to_string());
            }
        }
    }

    /// What this change and `other` both touched, for the message: the first shared field name or
    /// id, if any.
    pub(crate) fn collision(&self, other: &Touched) -> Option<String> {
        if let Some((id, name)) = self.ids.iter().find(|(id, _)| other.ids.contains_key(id)) {
            return Some(format!("{name:?} (field id {id})"));
        }
        for a in &self.names {
            for b in &other.names {
                if a == b || is_prefix(a, b) || is_prefix(b, a) {
                    return Some(format!("{:?}", if a.len() <= b.len() { a } else { b }));
                }
            }
        }
        None
    }
}

fn is_prefix(path: &str, of: &str) -> bool {
    of.strip_prefix(path).is_some_and(|rest| rest.starts_with('.'))
}

/// Whether a field changed itself (not what is nested in it).
fn differs(a: &NestedFieldRef, b: &NestedFieldRef) -> bool {
    let shape = |t: &Type| match t {
        Type::Primitive(p) => p.to_string(),
        other => tree::type_name(other)
            .split('<')
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    a.name != b.name
        || a.required != b.required
        || a.doc != b.doc
        || shape(&a.field_type) != shape(&b.field_type)
}

/// The fields whose position among the siblings both schemas share changed.
fn moved(before: &Schema, after: &Schema) -> Vec<i32> {
    let order = |s: &Schema| -> HashMap<Option<i32>, Vec<i32>> {
        let mut by_owner: HashMap<Option<i32>, Vec<i32>> = HashMap::new();
        let places = tree::places(s);
        let mut ids: Vec<i32> = places.keys().copied().collect();
        ids.sort_by_key(|id| position_in(s, *id));
        for id in ids {
            if let Some(Place::Member { owner }) = places.get(&id) {
                by_owner.entry(*owner).or_default().push(id);
            }
        }
        by_owner
    };
    let (old, new) = (order(before), order(after));
    let mut out = Vec::new();
    for (owner, old_ids) in &old {
        let Some(new_ids) = new.get(owner) else { continue };
        let common_old: Vec<i32> = old_ids.iter().copied().filter(|i| new_ids.contains(i)).collect();
        let common_new: Vec<i32> = new_ids.iter().copied().filter(|i| old_ids.contains(i)).collect();
        out.extend(
            common_old
                .iter()
                .zip(&common_new)
                .filter(|(a, b)| a != b)
                .flat_map(|(a, b)| [*a, *b]),
        );
    }
    out
}

/// A field's index among its siblings.
fn position_in(schema: &Schema, id: i32) -> usize {
    fn find(fields: &[NestedFieldRef], id: i32) -> Option<usize> {
        for (i, f) in fields.iter().enumerate() {
            if f.id == id {
                return Some(i);
            }
            let inner = match f.field_type.as_ref() {
                Type::Struct(s) => find(s.fields(), id),
                Type::List(l) => find(std::slice::from_ref(&l.element_field), id),
                Type::Map(m) => find(&[m.key_field.clone(), m.value_field.clone()], id),
                Type::Primitive(_) => None,
            };
            if inner.is_some() {
                return inner;
            }
        }
        None
    }
    find(schema.as_struct().fields(), id).unwrap_or(0)
}
