//! The schema-change action: a [`SchemaUpdate`] planned on the schema the transaction read, checked
//! against concurrent schema changes (`validate`: a change that touched the same fields or names is
//! a `Conflict`), then re-applied on each attempt's base (`apply`), so a change another writer made
//! meanwhile to other fields is kept. A new current schema, no snapshot. Java's `SchemaUpdate`
//! commit is the model.

use std::collections::BTreeSet;

use iceberg::spec::SchemaRef;

use super::producer::Staged;
use crate::error::{Error, Result};
use crate::table::schema_update::apply::{apply, Guards};
use crate::table::schema_update::touched::Touched;
use crate::table::schema_update::SchemaUpdate;
use crate::table::Table;

/// A schema update and the schema it was planned on.
#[derive(Clone, Debug)]
pub(crate) struct SchemaChange {
    pub(crate) update: SchemaUpdate,
    read: SchemaRef,
    /// What the update touches, planned on `read`.
    touched: Touched,
}

impl SchemaChange {
    /// Plan `update` on `read`: a broken rule is refused now, before anything is committed.
    pub(crate) async fn plan(read: &Table, update: SchemaUpdate) -> Result<Self> {
        let guards = guards(read).await?;
        let (after, _) = apply(
            read.schema(),
            read.metadata().last_column_id(),
            &update.ops,
            &guards,
        )?;
        Ok(Self {
            touched: Touched::between(read.schema(), &after),
            update,
            read: read.schema().clone(),
        })
    }

    /// A `Conflict` when a schema change that landed since the read touched what this one touches.
    pub(crate) fn validate(&self, base: &Table) -> Result<()> {
        if base.schema().schema_id() == self.read.schema_id() {
            return Ok(());
        }
        let theirs = Touched::between(&self.read, base.schema());
        match self.touched.collision(&theirs) {
            Some(what) => Err(Error::conflict(
                None,
                format!(
                    "a concurrent schema change (now schema {}) also changed {what}; reload the table and try \
                     again",
                    base.schema().schema_id()
                ),
            )),
            None => Ok(()),
        }
    }

    /// The update re-applied on `view`'s schema, as the new current schema.
    pub(crate) async fn apply(&self, view: &Table) -> Result<Staged> {
        let guards = guards(view).await?;
        let metadata = view.metadata();
        let (schema, _) = apply(view.schema(), metadata.last_column_id(), &self.update.ops, &guards).map_err(|e| {
            if view.schema().schema_id() == self.read.schema_id() {
                e
            } else {
                Error::conflict(
                    None,
                    format!(
                        "the schema changed concurrently (now schema {}) and this change no longer applies: {}",
                        view.schema().schema_id(),
                        e.message()
                    ),
                )
            }
        })?;
        Staged::metadata_only(view.metadata_builder().add_current_schema(schema)?.build()?)
    }
}

/// The columns a schema change may not drop: the sources of the default partition spec, of every
/// spec the current snapshot's manifests were written with, and of the default sort order.
async fn guards(table: &Table) -> Result<Guards> {
    let metadata = table.metadata();
    let mut spec_ids: BTreeSet<i32> = BTreeSet::from([metadata.default_partition_spec_id()]);
    if let Some(snapshot) = table.current_snapshot() {
        for m in table.manifests(snapshot).await?.iter() {
            spec_ids.insert(m.partition_spec_id);
        }
    }
    let mut guards = Guards::default();
    for id in spec_ids {
        if let Some(spec) = metadata.partition_spec_by_id(id) {
            for f in spec.fields() {
                guards
                    .sources
                    .entry(f.source_id)
                    .or_insert_with(|| format!("partition field {:?} of spec {id}", f.name));
            }
        }
    }
    for f in metadata.default_sort_order().fields.iter() {
        guards
            .sources
            .entry(f.source_id)
            .or_insert_with(|| "a field of the table's sort order".to_string());
    }
    Ok(guards)
}
