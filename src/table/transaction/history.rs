//! What other writers committed on a branch since a change read it: the snapshots between the read
//! snapshot and the new head, and the data and delete files each of them added or removed (read
//! from the manifests each snapshot wrote itself, as Java's `validationHistory` does). Validation of
//! overwrites, deletes and rewrites is built on this.

use iceberg::spec::{DataContentType, ManifestStatus, SnapshotRef};

use crate::error::{Error, Result};
use crate::table::Table;

/// A file a concurrent snapshot added or removed.
#[derive(Clone, Debug)]
pub(crate) struct FileEvent {
    pub(crate) path: String,
    pub(crate) snapshot_id: i64,
}

/// The commits on a branch after a change's read snapshot, oldest last.
#[derive(Debug, Default)]
pub(crate) struct Concurrent {
    pub(crate) snapshots: Vec<SnapshotRef>,
    pub(crate) added_data: Vec<FileEvent>,
    pub(crate) removed_data: Vec<FileEvent>,
    pub(crate) added_deletes: Vec<FileEvent>,
}

impl Concurrent {
    /// `snapshot N (operation, run R)`: how a conflict names the snapshot to blame.
    pub(crate) fn describe(&self, snapshot_id: i64) -> String {
        match self.snapshots.iter().find(|s| s.snapshot_id() == snapshot_id) {
            Some(s) => {
                let summary = s.summary();
                let mut text = format!("snapshot {snapshot_id} ({}", summary.operation.as_str());
                if let Some(run) = summary.additional_properties.get("floe.run-id") {
                    text.push_str(&format!(", run {run}"));
                }
                text.push(')');
                text
            }
            None => format!("snapshot {snapshot_id}"),
        }
    }
}

/// The snapshots from `head` back to (not including) `read`, and what they did to the files. When
/// `read` is not an ancestor of `head` (the branch was reset, rolled back or expired past it), the
/// history cannot be validated: that is a conflict.
pub(crate) async fn since(
    table: &Table,
    head: Option<&SnapshotRef>,
    read: Option<i64>,
) -> Result<Concurrent> {
    let mut out = Concurrent::default();
    let mut cur = head.cloned();
    loop {
        match cur {
            None => {
                if let Some(read) = read {
                    return Err(Error::conflict(
                        head.map(|h| h.snapshot_id()),
                        format!(
                            "{}: the branch no longer descends from snapshot {read}, which this change read \
                             (it was reset, rolled back or expired meanwhile)",
                            table.name()
                        ),
                    ));
                }
                break;
            }
            Some(s) if Some(s.snapshot_id()) == read => break,
            Some(s) => {
                let parent = s.parent_snapshot_id();
                out.snapshots.push(s.clone());
                cur = match parent {
                    Some(p) => Some(table.metadata().snapshot_by_id(p).cloned().ok_or_else(|| {
                        Error::conflict(
                            Some(s.snapshot_id()),
                            format!(
                                "{}: snapshot {p}, parent of {}, is gone (expired), so the commits since \
                                 this change read the table cannot be checked",
                                table.name(),
                                s.snapshot_id()
                            ),
                        )
                    })?),
                    None => None,
                };
            }
        }
    }
    for s in &out.snapshots {
        let id = s.snapshot_id();
        for mf in table.manifests(s).await?.iter() {
            if mf.added_snapshot_id != id {
                continue;
            }
            let manifest = table.manifest(mf).await?;
            for e in manifest.entries() {
                if e.snapshot_id() != Some(id) {
                    continue;
                }
                let event = FileEvent {
                    path: e.data_file().file_path().to_string(),
                    snapshot_id: id,
                };
                match (e.status(), e.content_type()) {
                    (ManifestStatus::Added, DataContentType::Data) => out.added_data.push(event),
                    (ManifestStatus::Deleted, DataContentType::Data) => out.removed_data.push(event),
                    (ManifestStatus::Added, _) => out.added_deletes.push(event),
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}
