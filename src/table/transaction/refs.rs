//! Branches and tags: create, drop, publish (fast-forward `main`), roll back, reset. Each is checked
//! on every attempt's base (a branch created meanwhile is `AlreadyExists`, a publish onto a `main`
//! that moved elsewhere is a `Conflict`), and a reset is a compare-and-swap of the ref itself.

use iceberg::spec::{SnapshotReference, SnapshotRetention, TableMetadataBuildResult, MAIN_BRANCH};

use super::producer::Staged;
use crate::error::{Error, ErrorKind, Result};
use crate::table::Table;

/// A change to a table's refs.
#[derive(Clone, Debug)]
pub(crate) enum RefChange {
    /// Create a branch or tag at a snapshot.
    Create {
        name: String,
        snapshot_id: i64,
        tag: bool,
    },
    /// Create a tag at the head of `main` (as the transaction leaves it).
    TagMain { name: String },
    /// Drop a branch or tag.
    Drop { name: String },
    /// Fast-forward `main` to the head of `branch`.
    Publish { branch: String },
    /// Move `main` back to one of its ancestors.
    Rollback { snapshot_id: i64 },
    /// Point a branch at a snapshot (creating it) or remove it (`None`), if it still points at
    /// `expected` (`None`: it does not exist).
    Reset {
        name: String,
        snapshot_id: Option<i64>,
        expected: Option<i64>,
    },
}

/// Check a branch or tag name: not empty, no control characters or `@`/`$` (they address refs and
/// metadata tables in `NS.TABLE@REF` and `NS.TABLE$files`), no surrounding space, not all digits.
pub(crate) fn validate_ref_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == '@' || c == '$') || name.trim() != name
    {
        return Err(Error::invalid(format!("invalid branch or tag name {name:?}")));
    }
    if name.parse::<i64>().is_ok() {
        return Err(Error::invalid(format!(
            "invalid branch or tag name {name:?}: it would read as a snapshot id"
        )));
    }
    Ok(())
}

impl RefChange {
    /// The table's metadata with this change applied to `base`, or why it cannot be.
    pub(crate) fn apply(&self, base: &Table) -> Result<Staged> {
        let metadata = match self {
            RefChange::Create {
                name,
                snapshot_id,
                tag,
            } => create(base, name, *snapshot_id, *tag)?,
            RefChange::TagMain { name } => tag_main(base, name)?,
            RefChange::Drop { name } => drop_ref(base, name)?,
            RefChange::Publish { branch } => publish(base, branch)?,
            RefChange::Rollback { snapshot_id } => rollback(base, *snapshot_id)?,
            RefChange::Reset {
                name,
                snapshot_id,
                expected,
            } => reset(base, name, *snapshot_id, *expected)?,
        };
        Staged::metadata_only(metadata)
    }
}

/// A new branch or tag `name` at `snapshot_id`.
fn create(base: &Table, name: &str, snapshot_id: i64, tag: bool) -> Result<TableMetadataBuildResult> {
    let table = base.name();
    refuse_existing(base, name)?;
    if base.metadata().snapshot_by_id(snapshot_id).is_none() {
        return Err(Error::not_found(format!(
            "table {table} has no snapshot {snapshot_id}"
        )));
    }
    let retention = if tag {
        SnapshotRetention::Tag { max_ref_age_ms: None }
    } else {
        SnapshotRetention::branch(None, None, None)
    };
    Ok(base
        .metadata_builder()
        .set_ref(name, SnapshotReference::new(snapshot_id, retention))?
        .build()?)
}

/// A new tag `name` at the head of `main`.
fn tag_main(base: &Table, name: &str) -> Result<TableMetadataBuildResult> {
    let table = base.name();
    refuse_existing(base, name)?;
    let main = base.metadata().current_snapshot_id().ok_or_else(|| {
        Error::invalid(format!(
            "table {table} has no snapshot on main to tag as {name:?}"
        ))
    })?;
    Ok(base
        .metadata_builder()
        .set_ref(
            name,
            SnapshotReference::new(main, SnapshotRetention::Tag { max_ref_age_ms: None }),
        )?
        .build()?)
}

/// `AlreadyExists` when the table has a branch or tag `name`.
fn refuse_existing(base: &Table, name: &str) -> Result<()> {
    if base.find_ref(name).is_some() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("table {} already has a branch or tag {name:?}", base.name()),
        ));
    }
    Ok(())
}

/// The branch or tag `name` removed (never `main`).
fn drop_ref(base: &Table, name: &str) -> Result<TableMetadataBuildResult> {
    if name == MAIN_BRANCH {
        return Err(Error::invalid("the main branch cannot be dropped"));
    }
    if base.find_ref(name).is_none() {
        return Err(Error::not_found(format!(
            "table {} has no branch or tag {name:?}",
            base.name()
        )));
    }
    Ok(base.metadata_builder().remove_ref(name).build()?)
}

/// `main` fast-forwarded to the head of `branch`; a `main` that is not an ancestor of it conflicts.
fn publish(base: &Table, branch: &str) -> Result<TableMetadataBuildResult> {
    let table = base.name();
    let source = base
        .find_ref(branch)
        .filter(|r| r.kind == "branch")
        .ok_or_else(|| Error::not_found(format!("table {table} has no branch {branch:?}")))?;
    if let Some(main) = base.metadata().current_snapshot_id() {
        if !base.is_ancestor(main, source.snapshot_id) {
            return Err(Error::conflict(
                Some(main),
                format!(
                    "cannot fast-forward {table}@main ({main}) to {branch} ({}): main is not an \
                     ancestor of the branch",
                    source.snapshot_id
                ),
            ));
        }
    }
    Ok(base
        .metadata_builder()
        .set_ref(MAIN_BRANCH, main_ref(base, source.snapshot_id))?
        .build()?)
}

/// `main` moved back to `snapshot_id`, one of its ancestors.
fn rollback(base: &Table, snapshot_id: i64) -> Result<TableMetadataBuildResult> {
    let table = base.name();
    let main = base
        .metadata()
        .current_snapshot_id()
        .ok_or_else(|| Error::invalid(format!("table {table} has no snapshot to roll back from")))?;
    if base.metadata().snapshot_by_id(snapshot_id).is_none() {
        return Err(Error::not_found(format!(
            "table {table} has no snapshot {snapshot_id}"
        )));
    }
    if !base.is_ancestor(snapshot_id, main) {
        return Err(Error::invalid(format!(
            "snapshot {snapshot_id} is not an ancestor of {table}@main ({main}); rollback only \
             moves main back"
        )));
    }
    Ok(base
        .metadata_builder()
        .set_ref(MAIN_BRANCH, main_ref(base, snapshot_id))?
        .build()?)
}

/// Branch `name` pointed at `snapshot_id` (or removed), if it is still at `expected`.
fn reset(
    base: &Table,
    name: &str,
    snapshot_id: Option<i64>,
    expected: Option<i64>,
) -> Result<TableMetadataBuildResult> {
    let table = base.name();
    if name == MAIN_BRANCH {
        return Err(Error::invalid(
            "reset_branch moves other branches; main moves by publish or rollback",
        ));
    }
    let current = base.find_ref(name);
    if current.as_ref().is_some_and(|r| r.kind == "tag") {
        return Err(Error::invalid(format!("{name:?} is a tag of {table}")));
    }
    let current = current.map(|r| r.snapshot_id);
    if current != expected {
        return Err(Error::conflict(
            current,
            format!(
                "{table}@{name} moved from {} to {} meanwhile; not resetting it",
                fmt_id(expected),
                fmt_id(current)
            ),
        ));
    }
    let builder = base.metadata_builder();
    Ok(match snapshot_id {
        Some(id) => builder
            .set_ref(
                name,
                SnapshotReference::new(id, SnapshotRetention::branch(None, None, None)),
            )?
            .build()?,
        None => builder.remove_ref(name).build()?,
    })
}

pub(crate) fn fmt_id(id: Option<i64>) -> String {
    id.map(|i| i.to_string())
        .unwrap_or_else(|| "(no snapshot)".to_string())
}

/// The `main` ref moved to `snapshot_id`, keeping main's retention settings.
fn main_ref(base: &Table, snapshot_id: i64) -> SnapshotReference {
    let retention = base
        .snapshot_refs()
        .remove(MAIN_BRANCH)
        .map(|r| r.retention)
        .unwrap_or_else(|| SnapshotRetention::branch(None, None, None));
    SnapshotReference::new(snapshot_id, retention)
}
