//! Commits whose outcome is unknown: an attempt whose swap reply was lost may or may not have
//! landed. Each later attempt reloads the tables first and asks [`Unknowns::resolve`] whether one of
//! them landed after all (its metadata location is current or in the metadata log, or its snapshot
//! is in the table); if so, that attempt is the commit's result and every other attempt's files go.
//! Until that is known, no file an unknown attempt wrote is deleted.

use super::TableChange;
use crate::catalog::MetadataSwap;
use crate::storage::ObjectStorage;
use crate::table::transaction::delete_quietly;
use crate::table::Table;

/// An attempt whose swap reply was lost: what it would have made current, and the files only it
/// wrote (its manifests, manifest lists and metadata files).
pub(crate) struct UnknownAttempt {
    pub(crate) swaps: Vec<MetadataSwap>,
    /// The snapshot it created on each table of the transaction, in order.
    pub(crate) snapshot_ids: Vec<Option<i64>>,
    pub(crate) written: Vec<String>,
}

impl UnknownAttempt {
    /// Whether this attempt is part of the committed history the reloaded `bases` show.
    fn landed(&self, changes: &[TableChange], bases: &[Table]) -> bool {
        let Some(swap) = self.swaps.first() else {
            return false;
        };
        let Some(i) = changes.iter().position(|c| c.name == swap.table) else {
            return false;
        };
        let base = &bases[i];
        base.metadata_location() == swap.new
            || base
                .metadata()
                .metadata_log()
                .iter()
                .any(|m| m.metadata_file == swap.new)
            || self.snapshot_ids[i].is_some_and(|id| base.metadata().snapshot_by_id(id).is_some())
    }
}

/// The attempts of one commit whose outcome is still unknown, oldest first.
#[derive(Default)]
pub(crate) struct Unknowns(Vec<UnknownAttempt>);

impl Unknowns {
    /// No attempt's outcome is unknown: a give-up may delete the transaction's data files.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn push(&mut self, attempt: UnknownAttempt) {
        self.0.push(attempt);
    }

    /// If one unknown attempt landed after all (as the reloaded `bases` show), every other one
    /// cannot have: their files go, and the landed attempt's snapshot ids are returned.
    pub(crate) async fn resolve(
        &mut self,
        changes: &[TableChange],
        bases: &[Table],
        storage: &ObjectStorage,
    ) -> Option<Vec<Option<i64>>> {
        let landed = self.0.iter().position(|u| u.landed(changes, bases))?;
        let landed = self.0.remove(landed);
        self.discard(storage).await;
        Some(landed.snapshot_ids)
    }

    /// Delete the files of every unknown attempt: a later attempt landed on a state that replaced
    /// theirs, so they can never land now.
    pub(crate) async fn discard(&mut self, storage: &ObjectStorage) {
        let stale: Vec<String> = self.0.drain(..).flat_map(|u| u.written).collect();
        delete_quietly(storage, stale).await;
    }
}
