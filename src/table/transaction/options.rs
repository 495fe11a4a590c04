//! How a change commits, per action: [`WriteOptions`] (branch, lineage, summary properties, file
//! size, the head the change expects) is what every snapshot-producing action shares; the actions
//! that read the table before they change it add what only they need ([`OverwriteOptions`],
//! [`DeleteOptions`]: the [`Isolation`] they are validated under). Ref, schema and expiry actions take
//! no options: they are judged on each attempt's base.

use std::collections::BTreeMap;

use iceberg::spec::MAIN_BRANCH;
use serde::Serialize;

use super::refs::fmt_id;
use crate::error::{Error, Result};
use crate::table::deletes::RowLevelMode;
use crate::table::Table;

/// Where a write comes from: recorded in the snapshot summary as `floe.*` properties.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Lineage {
    /// `floe.run-id`.
    pub run_id: Option<String>,
    /// `floe.stage`.
    pub stage: Option<String>,
    /// `floe.engine`.
    pub engine: Option<String>,
    /// `floe.input.<table>`: the snapshot id of each input the write read.
    pub inputs: BTreeMap<String, i64>,
}

impl Lineage {
    pub(crate) fn to_properties(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(v) = &self.run_id {
            out.push(("floe.run-id".to_string(), v.clone()));
        }
        if let Some(v) = &self.stage {
            out.push(("floe.stage".to_string(), v.clone()));
        }
        if let Some(v) = &self.engine {
            out.push(("floe.engine".to_string(), v.clone()));
        }
        for (t, id) in &self.inputs {
            out.push((format!("floe.input.{t}"), id.to_string()));
        }
        out
    }
}

/// The branch head a write insists on: for writers whose change must not land on a moved ref at
/// all, even one that validation would accept (a pipeline stage pinned to its inputs' heads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum ExpectedHead {
    /// Whatever the head is: validation alone decides (the default).
    #[default]
    Any,
    /// The branch has no snapshot yet.
    NoSnapshot,
    /// The branch head is this snapshot.
    Snapshot(i64),
}

impl ExpectedHead {
    /// The expectation that the head is still `head` (`None`: no snapshot yet).
    pub fn of(head: Option<i64>) -> Self {
        match head {
            Some(id) => ExpectedHead::Snapshot(id),
            None => ExpectedHead::NoSnapshot,
        }
    }

    /// Refuse (kind `Conflict`) when `branch` of `base` is not where this expects it.
    pub(crate) fn check(&self, base: &Table, branch: &str) -> Result<()> {
        let expected = match self {
            ExpectedHead::Any => return Ok(()),
            ExpectedHead::NoSnapshot => None,
            ExpectedHead::Snapshot(id) => Some(*id),
        };
        let head = base.metadata().snapshot_for_ref(branch).map(|s| s.snapshot_id());
        if head == expected {
            return Ok(());
        }
        Err(Error::conflict(
            head,
            format!(
                "{}@{branch} moved from {} to {}; refusing to apply a change computed on the old state",
                base.name(),
                fmt_id(expected),
                fmt_id(head)
            ),
        ))
    }
}

/// What every write shares: where it commits, what it records, how it sizes its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// Branch to commit to (`main` by default). A missing branch is created from the current
    /// snapshot of `main`, as Iceberg does.
    pub branch: String,
    /// Lineage properties for the snapshot summary.
    pub lineage: Lineage,
    /// Any other snapshot summary properties.
    pub properties: BTreeMap<String, String>,
    /// The branch head the write insists on (see [`ExpectedHead`]).
    pub expected_head: ExpectedHead,
    /// Target size of data files in bytes.
    pub target_file_size: usize,
}

/// The default target size of data files (Iceberg's `write.target-file-size-bytes` default).
pub const DEFAULT_TARGET_FILE_SIZE: usize = 128 * 1024 * 1024;

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            branch: MAIN_BRANCH.to_string(),
            lineage: Lineage::default(),
            properties: BTreeMap::new(),
            expected_head: ExpectedHead::Any,
            target_file_size: DEFAULT_TARGET_FILE_SIZE,
        }
    }
}

impl WriteOptions {
    /// Options that commit to `branch`.
    pub fn on_branch(branch: impl Into<String>) -> Self {
        Self {
            branch: branch.into(),
            ..Default::default()
        }
    }

    /// Refuse (kind `Conflict`) when the branch head is not the expected one.
    pub(crate) fn check_expected_head(&self, base: &Table) -> Result<()> {
        self.expected_head.check(base, &self.branch)
    }
}

/// How strictly a change that read the table (a filtered overwrite, a delete) is checked against the
/// commits that landed on its branch after it read the table (Iceberg's isolation levels).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Isolation {
    /// The default: the commit conflicts with a concurrent commit that added a data file that may
    /// hold rows matching its filter (any added file for a whole-table overwrite), or that removed
    /// or rewrote a file it read. The history then reads as if the writers ran one after another.
    #[default]
    Serializable,
    /// Only concurrent removals or rewrites of files it read conflict; rows appended meanwhile
    /// survive even where they match the filter.
    Snapshot,
}

impl Isolation {
    /// Parse `serializable` or `snapshot`.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "serializable" => Ok(Isolation::Serializable),
            "snapshot" => Ok(Isolation::Snapshot),
            other => Err(Error::invalid(format!(
                "unknown isolation {other:?} (serializable or snapshot)"
            ))),
        }
    }
}

/// How an overwrite commits: the write's options, the isolation it is validated under, and whether
/// it may be planned again.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OverwriteOptions {
    /// Branch, lineage, properties, file size, expected head.
    pub write: WriteOptions,
    /// Isolation of a filtered overwrite.
    pub isolation: Isolation,
    /// The new rows do not derive from this table's rows (they come from files or another
    /// source): when a concurrent compaction replaced files the overwrite read, the rows it replaces
    /// are found again on the new head instead of the commit failing with `Conflict`. Leave it off
    /// when the new rows were computed from the rows being replaced.
    pub replan_on_conflict: bool,
}

/// How a row-level change (a delete, a merge, an upsert's rows) commits: the write's options, the
/// isolation it is validated under, and how it writes the rows it changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowLevelOptions {
    /// Branch, lineage, properties, file size, expected head.
    pub write: WriteOptions,
    /// Isolation: `serializable` also fails on rows added meanwhile that the change would have
    /// changed (matching its filter, or holding one of its keys).
    pub isolation: Isolation,
    /// Copy-on-write, merge-on-read or auto; `None` takes the table's `write.delete.mode`
    /// (delete), `write.update.mode` (upsert) or `write.merge.mode` (merge), else copy-on-write for a
    /// delete and auto for an upsert or a merge.
    pub row_mode: Option<RowLevelMode>,
    /// In `auto`, the deleted fraction at which a file is rewritten; `None` takes the table's
    /// `delete-ratio-threshold`, else 0.3.
    pub delete_ratio_threshold: Option<f64>,
}

/// How a delete commits.
pub type DeleteOptions = RowLevelOptions;
/// How a merge commits.
pub type MergeOptions = RowLevelOptions;

/// What an upsert does with a source row whose key the table has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum WhenMatched {
    /// Replace the row with the source's (the default).
    #[default]
    UpdateAll,
    /// Replace it only where some column the source has differs (`--only-changed`).
    UpdateChanged,
    /// Replace it where this SQL condition over `t.` and `s.` columns holds.
    UpdateIf(String),
    /// Leave it.
    Ignore,
}

/// What an upsert does with a source row whose key the table lacks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum WhenNotMatched {
    /// Insert it (the default).
    #[default]
    Insert,
    /// Drop it.
    Ignore,
}

/// Source rows that share a key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Dedupe {
    /// Refuse the upsert (the default).
    #[default]
    Refuse,
    /// Keep the row with the greatest value of this column (the last of equal ones).
    Latest(String),
}

/// How an upsert matches and changes rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpsertOptions {
    /// Branch, isolation, row-level mode.
    pub rows: RowLevelOptions,
    /// Key columns; empty takes the table's identifier fields. The source must have no NULL in them.
    pub key: Vec<String>,
    /// What a matched row becomes.
    pub when_matched: WhenMatched,
    /// What an unmatched source row becomes.
    pub when_not_matched: WhenNotMatched,
    /// Tombstones: source rows this SQL predicate over the source's columns holds for delete the
    /// matched row (and insert nothing). Source columns the table lacks (like `_op`) may be used, and
    /// are never written.
    pub delete_where: Option<String>,
    /// Source rows sharing a key.
    pub dedupe: Dedupe,
}

impl From<WriteOptions> for OverwriteOptions {
    fn from(write: WriteOptions) -> Self {
        Self {
            write,
            ..Default::default()
        }
    }
}

impl From<WriteOptions> for RowLevelOptions {
    fn from(write: WriteOptions) -> Self {
        Self {
            write,
            ..Default::default()
        }
    }
}
