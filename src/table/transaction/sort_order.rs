//! The sort-order action: a [`SortOrderUpdate`] checked on the schema the transaction read (`plan`),
//! then bound again by column name on each attempt's base (`apply`), so a reorder or a rename of
//! other columns meanwhile is fine, and added as the table's default sort order (order 0 when it
//! has no column). A new default order, no snapshot. Java's `BaseReplaceSortOrder` is the model: the
//! last order committed wins.

use super::producer::Staged;
use crate::error::{Error, Result};
use crate::table::sort_order::SortOrderUpdate;
use crate::table::Table;

/// A new default sort order, as columns named by path.
#[derive(Clone, Debug)]
pub(crate) struct SortOrderChange {
    update: SortOrderUpdate,
}

impl SortOrderChange {
    /// Check `update` on the schema `read` has: a bad column is refused now, before anything is
    /// committed.
    pub(crate) fn plan(read: &Table, update: SortOrderUpdate) -> Result<Self> {
        update.bind(read.schema())?;
        Ok(Self { update })
    }

    /// The order bound on `view`'s schema, as the table's default sort order. A column that a
    /// concurrent schema change dropped or changed makes this a `Conflict`.
    pub(crate) fn apply(&self, view: &Table) -> Result<Staged> {
        let order = self.update.bind(view.schema()).map_err(|e| {
            Error::conflict(
                None,
                format!(
                    "the schema changed concurrently (now schema {}) and the sort order no longer applies: {}",
                    view.schema().schema_id(),
                    e.message()
                ),
            )
        })?;
        let metadata = view
            .metadata_builder()
            .add_sort_order(order)?
            .set_default_sort_order(-1)?
            .build()?;
        Staged::metadata_only(metadata)
    }
}
