//! Row-level changes: the action behind `delete`, `overwrite`, `upsert` and `merge` (Iceberg Java's
//! `BaseRowDelta`, with `BaseOverwriteFiles`' copy-on-write as the case where every changed file is
//! rewritten). A change is planned once on the state it read ([`super::row_plan`]): for each data file
//! whose rows it changes, either a position delete file (merge-on-read; one per data file, holding
//! the positions of the delete files it replaces too) or the file's removal (copy-on-write, its
//! surviving rows rewritten into new files); plus the new rows it adds.
//!
//! Every attempt validates the plan against the head it commits on, from that head's manifests
//! alone (never from history, which expiry may have removed): what was added since the read is what
//! carries a higher data sequence number, what was removed is what the change read and is no longer
//! live. Under both isolations a data file the change read must still be live, a file it rewrites
//! must have no new deletes, and for an update no concurrent delete may hit a row it deletes (disjoint
//! positions in one file both land: the delete files are merged on apply). Under `serializable`, no
//! data file added meanwhile may hold a row the change would have changed (its filter or its keys,
//! checked on the rows). When a compaction replaced files the change read, a change whose new rows
//! do not derive from the table's rows is planned again on the new head instead of failing.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use iceberg::spec::{DataFile, Operation, SnapshotRef};
use roaring::RoaringTreemap;

use super::merge_into::{KeyProbe, RowCounts};
use super::producer::{branch_head, produce, SnapshotChange, Staged};
use super::{Isolation, WriteOptions};
use crate::error::{Error, Result};
use crate::table::deletes::index::DeleteIndex;
use crate::table::deletes::live_rows;
use crate::table::deletes::positions::deleted_positions;
use crate::table::deletes::writer::write_position_deletes;
use crate::table::entries::{LiveFile, SnapshotFiles};
use crate::table::filter::RowFilter;
use crate::table::Table;

/// Whether a plan still holds on a new head.
#[derive(Debug)]
pub(crate) enum Verdict {
    Valid,
    /// Files it read were replaced; plan it again on the new head (why, for the log).
    Replan(String),
}

/// Plans a change again on a new head, its matching redone (for changes whose new rows do not
/// derive from the table's own rows).
#[async_trait]
pub(crate) trait Replan: Send + Sync {
    async fn replan(&self, base: &Table) -> Result<RowDelta>;
}

/// How a changed data file is written.
#[derive(Clone, Debug)]
pub(crate) enum FileOutcome {
    /// A position delete file, written, that deletes this change's positions and those of the
    /// file-scoped delete files it replaces.
    Deletes {
        delete_file: Box<DataFile>,
        replaces: Vec<DataFile>,
    },
    /// The data file is removed; `rewritten` when its surviving rows went into new files.
    Removed { rewritten: bool },
}

/// One data file whose rows a change deletes.
#[derive(Clone, Debug)]
pub(crate) struct ChangedFile {
    pub(crate) data: LiveFile,
    /// The positions this change deletes.
    pub(crate) deleted: Arc<RoaringTreemap>,
    pub(crate) outcome: FileOutcome,
}

/// What data added meanwhile a change conflicts with under `serializable` isolation.
#[derive(Clone)]
pub(crate) enum ConflictCheck {
    /// Nothing (`snapshot` isolation).
    Nothing,
    /// Any added data file (a whole-table overwrite).
    AnyAddition,
    /// An added data file with a live row matching the filter.
    Filter(RowFilter),
    /// An added data file with a live row holding one of the change's keys.
    Keys(KeyProbe),
}

/// A planned row-level change.
#[derive(Clone)]
pub(crate) struct RowDelta {
    /// `delete`, `overwrite`, `upsert` or `merge`, for messages.
    pub(crate) verb: &'static str,
    /// A concurrent delete of a row this change deletes is a conflict (an update: its new row
    /// replaces a row another change removed) rather than nothing (a delete of a deleted row).
    pub(crate) updates_rows: bool,
    pub(crate) read_snapshot: Option<i64>,
    pub(crate) read_sequence: i64,
    /// The data files the change read to decide.
    pub(crate) read_set: Arc<HashSet<String>>,
    pub(crate) changed: Vec<ChangedFile>,
    /// Data files the plan wrote: surviving rows of removed files, and new rows it computed.
    pub(crate) planned: Vec<DataFile>,
    /// Data files the caller wrote (an overwrite's new rows): kept across re-plans.
    pub(crate) given: Vec<DataFile>,
    /// The partition specs `planned` and `given` were written with.
    pub(crate) specs: WrittenSpecs,
    pub(crate) conflicts: ConflictCheck,
    pub(crate) write: WriteOptions,
    pub(crate) replan: Option<Arc<dyn Replan>>,
    /// What the plan does to rows, for the caller.
    pub(crate) counts: RowCounts,
}

/// The partition specs a row-level change's new data files were written with: the default spec of
/// the table each was written for (a re-plan rewrites on a newer head; an overwrite's new rows were
/// written once, for the table the transaction read).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WrittenSpecs {
    pub(crate) planned: i32,
    pub(crate) given: i32,
}

impl WrittenSpecs {
    /// Every file written for `table`.
    pub(crate) fn of(table: &Table) -> Self {
        let id = table.metadata().default_partition_spec_id();
        Self {
            planned: id,
            given: id,
        }
    }
}

impl std::fmt::Debug for RowDelta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowDelta")
            .field("verb", &self.verb)
            .field("read_snapshot", &self.read_snapshot)
            .field("changed", &self.changed.len())
            .field("planned", &self.planned.len())
            .field("given", &self.given.len())
            .finish()
    }
}

impl RowDelta {
    /// Files the plan wrote (deleted when the change does not land, or when it is planned again).
    pub(crate) fn planned_files(&self) -> Vec<String> {
        let deletes = self.changed.iter().filter_map(|c| match &c.outcome {
            FileOutcome::Deletes { delete_file, .. } => Some(delete_file.file_path().to_string()),
            FileOutcome::Removed { .. } => None,
        });
        self.planned
            .iter()
            .map(|f| f.file_path().to_string())
            .chain(deletes)
            .collect()
    }

    /// Every file the change wrote.
    pub(crate) fn new_files(&self) -> Vec<String> {
        let mut files = self.planned_files();
        files.extend(self.given.iter().map(|f| f.file_path().to_string()));
        files
    }

    fn conflict(&self, base: &Table, snapshot: Option<i64>, why: String) -> Error {
        Error::conflict(snapshot, format!("{}: {why}; nothing was committed", base.name()))
    }

    /// Re-plan when the change can be, else a conflict.
    fn replan_or_conflict(&self, base: &Table, head: Option<i64>, why: String) -> Result<Verdict> {
        match self.replan {
            Some(_) => Ok(Verdict::Replan(why)),
            None => Err(self.conflict(base, head, why)),
        }
    }

    /// Check the plan against the head it would commit on.
    pub(crate) async fn validate(&self, base: &Table) -> Result<Verdict> {
        self.write.check_expected_head(base)?;
        let head = branch_head(base.metadata(), &self.write.branch).cloned();
        let head_id = head.as_ref().map(|h| h.snapshot_id());
        if head_id == self.read_snapshot {
            return Ok(Verdict::Valid);
        }
        check_descends(base, head.as_ref(), self.read_snapshot, self.read_sequence)?;
        let files = SnapshotFiles::of(base, head.as_ref()).await?;
        let live = files.data_by_path();
        if let Some(gone) = self.read_set.iter().find(|p| !live.contains_key(p.as_str())) {
            let why = format!(
                "a concurrent commit removed or rewrote {gone}, which this {} read",
                self.verb
            );
            return self.replan_or_conflict(base, head_id, why);
        }
        let index = DeleteIndex::of(&files);
        index.refuse_deletion_vectors(&base.name().to_string())?;
        for c in &self.changed {
            let Some(data) = live.get(c.data.path()) else {
                let why = format!(
                    "a concurrent commit removed {}, which this {} changes",
                    c.data.path(),
                    self.verb
                );
                return self.replan_or_conflict(base, head_id, why);
            };
            if let Some(why) = self.concurrent_deletes(base, c, data, &index).await? {
                return self.replan_or_conflict(base, head_id, why);
            }
        }
        let added: Vec<&LiveFile> = files
            .data
            .iter()
            .filter(|f| f.sequence_number > self.read_sequence)
            .collect();
        if let Some(why) = self.conflicting_addition(base, &added, &index).await? {
            return Err(self.conflict(base, head_id, why));
        }
        Ok(Verdict::Valid)
    }

    /// Why deletes committed meanwhile on a file this change changes make the plan stale, if they do.
    async fn concurrent_deletes(
        &self,
        base: &Table,
        change: &ChangedFile,
        data: &LiveFile,
        index: &DeleteIndex,
    ) -> Result<Option<String>> {
        let deletes = index.for_data_file(data);
        let newer = |d: &&LiveFile| d.sequence_number > self.read_sequence;
        if let Some(eq) = deletes.equality.iter().find(newer) {
            return Ok(Some(format!(
                "a concurrent commit added equality delete file {} for {}, which this {} changes",
                eq.path(),
                data.path(),
                self.verb
            )));
        }
        let new_positions: Vec<LiveFile> = deletes.positions.iter().filter(newer).cloned().collect();
        if new_positions.is_empty() {
            return Ok(None);
        }
        match change.outcome {
            // Dropping a whole file drops whatever else deleted rows of it.
            FileOutcome::Removed { rewritten: false } => Ok(None),
            FileOutcome::Removed { rewritten: true } => Ok(Some(format!(
                "a concurrent commit deleted rows of {} (delete file {}), which this {} rewrites",
                data.path(),
                new_positions[0].path(),
                self.verb
            ))),
            FileOutcome::Deletes { .. } if !self.updates_rows => Ok(None),
            FileOutcome::Deletes { .. } => {
                let theirs = deleted_positions(base.storage(), data.path(), &new_positions).await?;
                let both = theirs.intersection_len(change.deleted.as_ref());
                Ok((both > 0).then(|| {
                    format!(
                        "a concurrent commit deleted {both} row(s) of {} that this {} also changes",
                        data.path(),
                        self.verb
                    )
                }))
            }
        }
    }

    /// Why a data file added meanwhile conflicts under `serializable` isolation, if one does.
    async fn conflicting_addition(
        &self,
        base: &Table,
        added: &[&LiveFile],
        index: &DeleteIndex,
    ) -> Result<Option<String>> {
        let Some(first) = added.first() else {
            return Ok(None);
        };
        match &self.conflicts {
            ConflictCheck::Nothing => Ok(None),
            ConflictCheck::AnyAddition => Ok(Some(format!(
                "a concurrent commit added data file {} while this {} replaced the whole table (isolation \
                 serializable)",
                first.path(),
                self.verb
            ))),
            ConflictCheck::Keys(probe) => {
                for f in added {
                    if probe.hits(base, f, &index.for_data_file(f)).await? {
                        return Ok(Some(format!(
                            "a concurrent commit added data file {} holding a key this {} writes (isolation \
                             serializable)",
                            f.path(),
                            self.verb
                        )));
                    }
                }
                Ok(None)
            }
            ConflictCheck::Filter(filter) => {
                for f in added {
                    if file_has_match(base, f, index, filter).await? {
                        return Ok(Some(format!(
                            "a concurrent commit added data file {} with rows matching `{filter}` while this {} \
                             was running (isolation serializable)",
                            f.path(),
                            self.verb
                        )));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Stage the change on `base`: delete files merged with any that landed meanwhile for the same
    /// data file, removed files, new files.
    pub(crate) async fn apply(&self, base: &Table, written: &mut Vec<String>) -> Result<Option<Staged>> {
        if self.changed.is_empty() && self.planned.is_empty() && self.given.is_empty() {
            return Ok(None);
        }
        let head = branch_head(base.metadata(), &self.write.branch).cloned();
        let stale = head.as_ref().map(|h| h.snapshot_id()) != self.read_snapshot;
        let index = if stale {
            DeleteIndex::of(&SnapshotFiles::of(base, head.as_ref()).await?)
        } else {
            DeleteIndex::default()
        };
        let mut removed: Vec<DataFile> = Vec::new();
        let mut added_deletes: Vec<(DataFile, i32)> = Vec::new();
        for c in &self.changed {
            match &c.outcome {
                FileOutcome::Removed { .. } => removed.push(c.data.file.clone()),
                FileOutcome::Deletes {
                    delete_file,
                    replaces,
                } => {
                    if !stale {
                        added_deletes.push((delete_file.as_ref().clone(), c.data.spec_id));
                        removed.extend(replaces.iter().cloned());
                        continue;
                    }
                    let current: Vec<LiveFile> = index
                        .file_scoped(c.data.path())
                        .iter()
                        .filter(|d| !d.is_deletion_vector())
                        .cloned()
                        .collect();
                    let mut current_paths: Vec<&str> = current.iter().map(|d| d.path()).collect();
                    let mut planned_paths: Vec<&str> = replaces.iter().map(|d| d.file_path()).collect();
                    current_paths.sort_unstable();
                    planned_paths.sort_unstable();
                    if current_paths == planned_paths {
                        added_deletes.push((delete_file.as_ref().clone(), c.data.spec_id));
                    } else {
                        // Another change's delete file for the same data file landed first: one file
                        // with both changes' positions replaces it.
                        let mut positions =
                            deleted_positions(base.storage(), c.data.path(), &current).await?;
                        positions |= c.deleted.as_ref();
                        let merged = write_position_deletes(base, &c.data, &positions).await?;
                        written.push(merged.file_path().to_string());
                        added_deletes.push((merged, c.data.spec_id));
                    }
                    removed.extend(current.into_iter().map(|d| d.file));
                }
            }
        }
        let mut added: Vec<(DataFile, i32)> = self
            .planned
            .iter()
            .map(|f| (f.clone(), self.specs.planned))
            .collect();
        added.extend(self.given.iter().map(|f| (f.clone(), self.specs.given)));
        let operation = if added.is_empty() {
            Operation::Delete
        } else {
            Operation::Overwrite
        };
        let change = SnapshotChange {
            operation,
            added,
            added_deletes,
            removed,
        };
        produce(base, change, &self.write, written).await.map(Some)
    }
}

/// Whether `file` (added meanwhile) has a live row matching `filter`.
async fn file_has_match(
    base: &Table,
    file: &LiveFile,
    index: &DeleteIndex,
    filter: &RowFilter,
) -> Result<bool> {
    let schema = base.schema().clone();
    let arrow = base.arrow_schema()?;
    let compiled = filter.compile(&arrow)?;
    let ids = super::row_plan::columns_to_read(&schema, &compiled.columns);
    let narrow = super::row_plan::narrow_schema(&arrow, &schema, &ids)?;
    let narrow_filter = filter.compile(&narrow)?;
    let mut rows = live_rows(base, file, &index.for_data_file(file), schema, ids).await?;
    while let Some((batch, _)) = rows.try_next().await? {
        if narrow_filter.matches(&batch)?.true_count() > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Refuse a head that does not descend from the read snapshot (the branch was reset or rolled back
/// past it), as far as the history kept tells: the walk back from the head stops at the read
/// snapshot (fine), at an older snapshot (not a descendant), or where expiry cut the history (the
/// liveness checks then decide alone).
pub(crate) fn check_descends(
    base: &Table,
    head: Option<&SnapshotRef>,
    read: Option<i64>,
    read_sequence: i64,
) -> Result<()> {
    let Some(read) = read else {
        return Ok(());
    };
    let metadata = base.metadata();
    let mut cur = head.cloned();
    while let Some(s) = cur {
        if s.snapshot_id() == read {
            return Ok(());
        }
        if s.sequence_number() <= read_sequence {
            break;
        }
        match s.parent_snapshot_id() {
            None => break,
            Some(p) => match metadata.snapshot_by_id(p) {
                Some(parent) => cur = Some(parent.clone()),
                None => return Ok(()),
            },
        }
    }
    Err(Error::conflict(
        head.map(|h| h.snapshot_id()),
        format!(
            "{}: the branch no longer descends from snapshot {read}, which this change read (it was reset \
             or rolled back meanwhile); nothing was committed",
            base.name()
        ),
    ))
}

/// The isolation's conflict check for a change with `filter` (`None`: the whole table).
pub(crate) fn conflict_check(isolation: Isolation, filter: Option<&RowFilter>) -> ConflictCheck {
    match (isolation, filter) {
        (Isolation::Snapshot, _) => ConflictCheck::Nothing,
        (Isolation::Serializable, None) => ConflictCheck::AnyAddition,
        (Isolation::Serializable, Some(f)) => ConflictCheck::Filter(f.clone()),
    }
}
