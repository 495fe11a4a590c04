//! Rewrite: replace data files by new files holding the same rows (compaction), as a `replace`
//! snapshot; the delete files that name only a replaced file go with it (its rows were rewritten
//! with them applied). Concurrent appends are kept. Validated from the head's manifests alone
//! (Iceberg's `BaseRewriteFiles`, narrowed): a replaced file must still be live, and no delete file
//! committed after the rewrite read the table may apply to a replaced file (its rows would come
//! back); deletes for other files do not matter.

use iceberg::spec::{DataFile, Operation};

use super::producer::{branch_head, produce, SnapshotChange, Staged};
use super::row_delta::check_descends;
use super::WriteOptions;
use crate::error::{Error, Result};
use crate::table::deletes::index::DeleteIndex;
use crate::table::entries::SnapshotFiles;
use crate::table::Table;

/// Files to replace and their replacements, planned on `read_snapshot`.
#[derive(Clone, Debug)]
pub(crate) struct Rewrite {
    pub(crate) read_snapshot: Option<i64>,
    pub(crate) read_sequence: i64,
    pub(crate) removed: Vec<DataFile>,
    pub(crate) added: Vec<DataFile>,
    /// The partition spec `added` was written with (the read table's default).
    pub(crate) added_spec: i32,
    /// Delete files that applied to no live data file when the rewrite read the table; removed
    /// if still there.
    pub(crate) removed_deletes: Vec<DataFile>,
    pub(crate) write: WriteOptions,
}

impl Rewrite {
    pub(crate) fn plan(
        read: &Table,
        removed: Vec<DataFile>,
        added: Vec<DataFile>,
        removed_deletes: Vec<DataFile>,
        options: &WriteOptions,
    ) -> Self {
        let head = branch_head(read.metadata(), &options.branch);
        Self {
            read_snapshot: head.map(|s| s.snapshot_id()),
            read_sequence: head.map(|s| s.sequence_number()).unwrap_or(0),
            removed,
            added,
            added_spec: read.metadata().default_partition_spec_id(),
            removed_deletes,
            write: options.clone(),
        }
    }

    pub(crate) async fn validate(&self, base: &Table) -> Result<()> {
        self.write.check_expected_head(base)?;
        let head = branch_head(base.metadata(), &self.write.branch).cloned();
        let head_id = head.as_ref().map(|h| h.snapshot_id());
        if head_id == self.read_snapshot {
            return Ok(());
        }
        check_descends(base, head.as_ref(), self.read_snapshot, self.read_sequence)?;
        let files = SnapshotFiles::of(base, head.as_ref()).await?;
        let live = files.data_by_path();
        let conflict =
            |why: String| Error::conflict(head_id, format!("{}: {why}; nothing was committed", base.name()));
        let index = DeleteIndex::of(&files);
        for replaced in &self.removed {
            let Some(data) = live.get(replaced.file_path()) else {
                return Err(conflict(format!(
                    "a concurrent commit removed {}, which this rewrite replaces",
                    replaced.file_path()
                )));
            };
            let deletes = index.for_data_file(data);
            if let Some(d) = deletes
                .positions
                .iter()
                .chain(&deletes.equality)
                .find(|d| d.sequence_number > self.read_sequence)
            {
                return Err(conflict(format!(
                    "a concurrent commit added delete file {} for {}, which this rewrite replaces",
                    d.path(),
                    replaced.file_path()
                )));
            }
        }
        Ok(())
    }

    pub(crate) async fn apply(&self, base: &Table, written: &mut Vec<String>) -> Result<Option<Staged>> {
        let mut removed = self.removed.clone();
        if !self.removed_deletes.is_empty() {
            let head = branch_head(base.metadata(), &self.write.branch);
            let live: std::collections::HashSet<String> = SnapshotFiles::of(base, head)
                .await?
                .deletes
                .into_iter()
                .map(|d| d.path().to_string())
                .collect();
            removed.extend(
                self.removed_deletes
                    .iter()
                    .filter(|d| live.contains(d.file_path()))
                    .cloned(),
            );
        }
        if removed.is_empty() {
            return Ok(None);
        }
        let change = SnapshotChange::data(Operation::Replace, (self.added.clone(), self.added_spec), removed);
        produce(base, change, &self.write, written).await.map(Some)
    }
}
