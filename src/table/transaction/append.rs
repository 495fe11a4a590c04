//! Append: add data files as a new snapshot. An append never conflicts: whatever landed meanwhile
//! stays, and each attempt builds its manifests and manifest list from that attempt's base, so a
//! retry can never carry a stale manifest list forward.

use iceberg::spec::{DataFile, Operation};

use super::producer::{produce, SnapshotChange, Staged};
use super::WriteOptions;
use crate::error::Result;
use crate::table::Table;

/// Data files to add.
#[derive(Clone, Debug)]
pub(crate) struct Append {
    pub(crate) files: Vec<DataFile>,
    /// The transaction wrote the files (and deletes them if it certainly does not land); files a
    /// caller added (`add_files`) are never deleted.
    pub(crate) owned: bool,
    /// Commit a snapshot even with no file (a record in the history, such as an equivalence
    /// verdict); an append of nothing is otherwise no change at all.
    pub(crate) keep_empty: bool,
    pub(crate) write: WriteOptions,
}

impl Append {
    pub(crate) fn new(files: Vec<DataFile>, write: &WriteOptions) -> Self {
        Self {
            files,
            owned: true,
            keep_empty: false,
            write: write.clone(),
        }
    }

    /// Files someone else wrote, added as they are.
    pub(crate) fn adopted(files: Vec<DataFile>, write: &WriteOptions) -> Self {
        Self {
            owned: false,
            ..Self::new(files, write)
        }
    }

    /// A snapshot that adds nothing.
    pub(crate) fn marker(write: &WriteOptions) -> Self {
        Self {
            keep_empty: true,
            ..Self::new(Vec::new(), write)
        }
    }

    pub(crate) async fn apply(&self, base: &Table, written: &mut Vec<String>) -> Result<Option<Staged>> {
        if self.files.is_empty() && !self.keep_empty {
            return Ok(None);
        }
        let change = SnapshotChange::data(Operation::Append, self.files.clone(), Vec::new());
        produce(base, change, &self.write, written).await.map(Some)
    }
}
