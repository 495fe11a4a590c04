//! Overwrite: replace the rows matching a filter (copy-on-write), or every row, with new rows. The
//! change is planned once, on the snapshot the transaction read: the files it read, the files it
//! removes, and the files it adds (rewritten survivors and the new rows). Every retry validates that
//! plan against what other writers committed since (Iceberg's `BaseOverwriteFiles` rules, see
//! [`super::Isolation`]) and then applies the same file-level change to the new base; it is never
//! recomputed on a state its new rows were not computed from.

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use iceberg::spec::{DataFile, Operation, SnapshotRef};

use super::copy_on_write::copy_on_write;
use super::history;
use super::producer::{branch_head, produce, SnapshotChange, Staged};
use super::{Isolation, OverwriteOptions, WriteOptions};
use crate::error::{Error, Result};
use crate::table::filter::RowFilter;
use crate::table::Table;

/// A planned change of rows: an overwrite (filtered or whole-table) or a copy-on-write delete.
#[derive(Clone, Debug)]
pub(crate) struct RowChange {
    pub(crate) operation: Operation,
    /// Which rows were replaced (`None`: all of them).
    pub(crate) filter: Option<RowFilter>,
    /// The branch head the change was planned on.
    pub(crate) read_snapshot: Option<i64>,
    /// Paths of the data files the change read to decide (every live file for a whole-table one).
    pub(crate) read_set: Arc<HashSet<String>>,
    pub(crate) removed: Vec<DataFile>,
    pub(crate) added: Vec<DataFile>,
    pub(crate) isolation: Isolation,
    pub(crate) write: WriteOptions,
}

/// Plan replacing the rows matching `filter` (all when `None`) with the rows already written to
/// `files`, on the branch head of `read`. On error, the rewrites written so far are deleted (the
/// caller owns `files`).
pub(crate) async fn plan(
    read: &Table,
    filter: Option<RowFilter>,
    files: Vec<DataFile>,
    options: &OverwriteOptions,
) -> Result<RowChange> {
    let write = &options.write;
    let head = branch_head(read.metadata(), &write.branch).cloned();
    let read_snapshot = head.as_ref().map(|s| s.snapshot_id());
    let (read_set, removed, mut added) = match &filter {
        None => {
            let live = read.live_data_files(head.as_ref()).await?;
            let read_set = live.iter().map(|f| f.file_path().to_string()).collect();
            (read_set, live, Vec::new())
        }
        Some(f) => {
            let cow = copy_on_write(read, head.as_ref(), f, write.target_file_size).await?;
            (cow.read_set, cow.removed, cow.rewritten)
        }
    };
    added.extend(files);
    Ok(RowChange {
        operation: Operation::Overwrite,
        filter,
        read_snapshot,
        read_set: Arc::new(read_set),
        removed,
        added,
        isolation: options.isolation,
        write: write.clone(),
    })
}

impl RowChange {
    /// Check the head the change expects, then the commits that landed on the branch since the
    /// change was planned.
    pub(crate) async fn validate(&self, base: &Table) -> Result<()> {
        self.write.check_expected_head(base)?;
        let head = branch_head(base.metadata(), &self.write.branch);
        if head.map(|h| h.snapshot_id()) == self.read_snapshot {
            return Ok(());
        }
        let concurrent = history::since(base, head, self.read_snapshot).await?;
        let name = base.name();
        // Both isolations: a file this change read was removed or rewritten meanwhile.
        if let Some(e) = concurrent
            .removed_data
            .iter()
            .find(|e| self.read_set.contains(&e.path))
        {
            return Err(Error::conflict(
                Some(e.snapshot_id),
                format!(
                    "{name}: {} removed or rewrote {}, which this {} read; nothing was committed",
                    concurrent.describe(e.snapshot_id),
                    e.path,
                    self.operation.as_str()
                ),
            ));
        }
        // Row-level deletes (written by another engine) may cover rows this change read.
        if let Some(e) = concurrent
            .added_deletes
            .first()
            .filter(|_| !self.read_set.is_empty())
        {
            return Err(Error::conflict(
                Some(e.snapshot_id),
                format!(
                    "{name}: {} added delete file {} while this {} was running; nothing was committed",
                    concurrent.describe(e.snapshot_id),
                    e.path,
                    self.operation.as_str()
                ),
            ));
        }
        if self.isolation == Isolation::Snapshot || concurrent.added_data.is_empty() {
            return Ok(());
        }
        // Serializable: new data that this change would have replaced, had it seen it.
        let Some(filter) = &self.filter else {
            let e = &concurrent.added_data[0];
            return Err(Error::conflict(
                Some(e.snapshot_id),
                format!(
                    "{name}: {} added data file {} while this overwrite replaced the whole table \
                     (isolation serializable); nothing was committed",
                    concurrent.describe(e.snapshot_id),
                    e.path
                ),
            ));
        };
        let candidates = files_that_may_match(base, head, filter).await?;
        if let Some(e) = concurrent
            .added_data
            .iter()
            .find(|e| candidates.as_ref().is_none_or(|c| c.contains(&e.path)))
        {
            return Err(Error::conflict(
                Some(e.snapshot_id),
                format!(
                    "{name}: {} added data file {} that may hold rows matching `{filter}` while this {} \
                     was running (isolation serializable); nothing was committed",
                    concurrent.describe(e.snapshot_id),
                    e.path,
                    self.operation.as_str()
                ),
            ));
        }
        Ok(())
    }

    pub(crate) async fn apply(&self, base: &Table, written: &mut Vec<String>) -> Result<Option<Staged>> {
        if self.removed.is_empty() && self.added.is_empty() {
            return Ok(None);
        }
        let change = SnapshotChange {
            operation: self.operation.clone(),
            added: self.added.clone(),
            removed: self.removed.clone(),
        };
        produce(base, change, &self.write, written).await.map(Some)
    }
}

/// Paths of the live files of `snapshot` that may hold rows matching `filter`, judged from
/// partition values and column bounds by Iceberg's scan planning; `None` when the filter cannot be
/// judged from statistics (then every file may match).
pub(crate) async fn files_that_may_match(
    table: &Table,
    snapshot: Option<&SnapshotRef>,
    filter: &RowFilter,
) -> Result<Option<HashSet<String>>> {
    let Some(snapshot) = snapshot else {
        return Ok(Some(HashSet::new()));
    };
    let compiled = filter.compile(&table.arrow_schema()?)?;
    let schema = snapshot.schema(table.metadata())?;
    let Some(predicate) = compiled.pushdown_for(&schema) else {
        return Ok(None);
    };
    let ice = table.iceberg_table()?;
    let tasks: Vec<_> = ice
        .scan()
        .snapshot_id(snapshot.snapshot_id())
        .select_all()
        .with_filter(predicate)
        .build()?
        .plan_files()
        .await?
        .try_collect()
        .await?;
    Ok(Some(tasks.into_iter().map(|t| t.data_file_path).collect()))
}
