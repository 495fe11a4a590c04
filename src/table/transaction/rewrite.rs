//! Rewrite: replace data files by new files holding the same rows (compaction), as a `replace`
//! snapshot. Concurrent appends are kept; a concurrent commit that removed or rewrote one of the
//! replaced files, or added row-level deletes, is a conflict (Iceberg's `BaseRewriteFiles`).

use std::collections::HashSet;

use iceberg::spec::{DataFile, Operation};

use super::history;
use super::producer::{branch_head, produce, SnapshotChange, Staged};
use super::WriteOptions;
use crate::error::{Error, Result};
use crate::table::Table;

/// Files to replace and their replacements, planned on `read_snapshot`.
#[derive(Clone, Debug)]
pub(crate) struct Rewrite {
    pub(crate) read_snapshot: Option<i64>,
    pub(crate) removed: Vec<DataFile>,
    pub(crate) added: Vec<DataFile>,
    pub(crate) write: WriteOptions,
}

impl Rewrite {
    pub(crate) fn plan(
        read: &Table,
        removed: Vec<DataFile>,
        added: Vec<DataFile>,
        options: &WriteOptions,
    ) -> Self {
        Self {
            read_snapshot: branch_head(read.metadata(), &options.branch).map(|s| s.snapshot_id()),
            removed,
            added,
            write: options.clone(),
        }
    }

    pub(crate) async fn validate(&self, base: &Table) -> Result<()> {
        self.write.check_expected_head(base)?;
        let head = branch_head(base.metadata(), &self.write.branch);
        if head.map(|h| h.snapshot_id()) == self.read_snapshot {
            return Ok(());
        }
        let concurrent = history::since(base, head, self.read_snapshot).await?;
        let replaced: HashSet<&str> = self.removed.iter().map(|f| f.file_path()).collect();
        if let Some(e) = concurrent
            .removed_data
            .iter()
            .find(|e| replaced.contains(e.path.as_str()))
        {
            return Err(Error::conflict(
                Some(e.snapshot_id),
                format!(
                    "{}: {} removed {}, which this rewrite replaces; nothing was committed",
                    base.name(),
                    concurrent.describe(e.snapshot_id),
                    e.path
                ),
            ));
        }
        if let Some(e) = concurrent.added_deletes.first() {
            return Err(Error::conflict(
                Some(e.snapshot_id),
                format!(
                    "{}: {} added delete file {}, which may apply to files this rewrite replaces; nothing \
                     was committed",
                    base.name(),
                    concurrent.describe(e.snapshot_id),
                    e.path
                ),
            ));
        }
        Ok(())
    }

    pub(crate) async fn apply(&self, base: &Table, written: &mut Vec<String>) -> Result<Option<Staged>> {
        if self.removed.is_empty() {
            return Ok(None);
        }
        let change = SnapshotChange {
            operation: Operation::Replace,
            added: self.added.clone(),
            removed: self.removed.clone(),
        };
        produce(base, change, &self.write, written).await.map(Some)
    }
}
