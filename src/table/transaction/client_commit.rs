//! A commit another engine sends through floe's REST catalog (`floe serve`): the client's
//! requirements and metadata updates, as iceberg's `TableRequirement` and `TableUpdate`. It is one
//! more action of the commit loop: each attempt checks the requirements on its base (a failed one is
//! a conflict, never retried), applies the updates on it through iceberg's `TableMetadataBuilder`,
//! and a lost swap reloads, checks and applies again, as Java's `CatalogHandlers.commit` does.
//! Updates floe cannot honour (a new uuid or location, a format past the one floe writes, a
//! snapshot whose manifest list or new manifests lie outside the table, are missing, have another
//! length than recorded or do not parse) are refused as invalid input.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use iceberg::spec::{FormatVersion, Manifest, ManifestList, TableMetadata};
use iceberg::{TableRequirement, TableUpdate};

use super::producer::Staged;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::ObjectStorage;
use crate::table::Table;

/// The requirements and updates of one client's commit to one table.
#[derive(Clone, Debug)]
pub(crate) struct ClientCommit {
    pub(crate) requirements: Vec<TableRequirement>,
    pub(crate) updates: Vec<TableUpdate>,
}

impl ClientCommit {
    /// Check the requirements on `base`: a failed one is a conflict naming it.
    pub(crate) fn validate(&self, base: &Table) -> Result<()> {
        for requirement in &self.requirements {
            if matches!(requirement, TableRequirement::NotExist) {
                return Err(Error::conflict(
                    None,
                    format!("requirement failed: table {} already exists", base.name()),
                ));
            }
            requirement
                .check(Some(base.metadata()))
                .map_err(|e| Error::conflict(None, e.message().to_string()))?;
        }
        Ok(())
    }

    /// The updates applied on `view`: the staged metadata, or `None` when they change nothing.
    pub(crate) async fn apply(&self, view: &Table) -> Result<Option<Staged>> {
        guard(view.metadata(), &self.updates)?;
        check_added_snapshots(view.storage(), Some(view), view.location(), &self.updates).await?;
        let mut builder = view.metadata_builder();
        for update in self.updates.iter().cloned() {
            builder = update.apply(builder).map_err(refused)?;
        }
        let result = builder.build().map_err(refused)?;
        if result.changes.is_empty() {
            return Ok(None);
        }
        let snapshot_id = self.updates.iter().rev().find_map(|u| match u {
            TableUpdate::AddSnapshot { snapshot } => Some(snapshot.snapshot_id()),
            _ => None,
        });
        let mut staged = Staged::metadata_only(result)?;
        staged.snapshot_id = snapshot_id;
        Ok(Some(staged))
    }
}

/// An update iceberg refused: stale values (a sequence number another commit took meanwhile) are a
/// conflict the client retries on a fresh load, anything else bad input.
fn refused(e: iceberg::Error) -> Error {
    let message = e.message().to_string();
    if message.contains("sequence number") || message.contains("first-row-id") {
        Error::conflict(None, format!("validation failed, please retry: {message}"))
    } else {
        Error::new(
            ErrorKind::InvalidInput,
            format!("invalid table update: {message}"),
        )
    }
}

/// The updates floe refuses whatever the base: a new uuid or location for an existing table, and a
/// format version past the one floe writes.
pub(crate) fn guard(base: &TableMetadata, updates: &[TableUpdate]) -> Result<()> {
    for update in updates {
        match update {
            TableUpdate::AssignUuid { uuid } if *uuid != base.uuid() => {
                return Err(Error::invalid(format!(
                    "the uuid of a table cannot change (it is {}, the update sets {uuid})",
                    base.uuid()
                )));
            }
            TableUpdate::SetLocation { location }
                if location.trim_end_matches('/') != base.location().trim_end_matches('/') =>
            {
                return Err(Error::invalid(format!(
                    "the location of a table cannot change (it is {}, the update sets {location})",
                    base.location()
                )));
            }
            TableUpdate::UpgradeFormatVersion { format_version } if *format_version > FormatVersion::V2 => {
                return Err(Error::invalid(format!(
                    "floe writes Iceberg format v2; an upgrade to {format_version} is refused"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// What every added snapshot brings must be the table's own and whole: its manifest list and each
/// manifest it adds (one its parent's list does not name; carried-over ones were checked when they
/// landed) lie under the table's location, exist, have the lengths the list records and parse. A
/// commit never makes a file outside the table part of it, nor one a reader would fail on.
/// `base` is the table the commit applies to (none for a create).
pub(crate) async fn check_added_snapshots(
    storage: &ObjectStorage,
    base: Option<&Table>,
    location: &str,
    updates: &[TableUpdate],
) -> Result<()> {
    let root = format!("{}/", location.trim_end_matches('/'));
    let version = base.map_or(FormatVersion::V2, |b| b.format_version());
    // The manifests of the snapshots this commit adds, for a later one whose parent they are.
    let mut added: HashMap<i64, HashSet<String>> = HashMap::new();
    for update in updates {
        let TableUpdate::AddSnapshot { snapshot } = update else {
            continue;
        };
        let id = snapshot.snapshot_id();
        let refused = |why: String| Error::invalid(format!("snapshot {id}: {why}"));
        let list = snapshot.manifest_list();
        under(&root, list).map_err(|why| refused(format!("manifest list {list} {why}")))?;
        let bytes = read_added(storage, list).await.map_err(&refused)?;
        let manifests = ManifestList::parse_with_version(&bytes, version)
            .map_err(|e| refused(format!("manifest list {list} does not parse: {}", e.message())))?
            .consume_entries()
            .into_iter()
            .collect::<Vec<_>>();
        let carried = parent_manifests(base, &added, snapshot.parent_snapshot_id()).await?;
        for manifest in manifests.iter().filter(|m| !carried.contains(&m.manifest_path)) {
            let path = &manifest.manifest_path;
            under(&root, path).map_err(|why| refused(format!("manifest {path} {why}")))?;
            let bytes = read_added(storage, path).await.map_err(&refused)?;
            if bytes.len() as i64 != manifest.manifest_length {
                return Err(refused(format!(
                    "manifest {path} is {} bytes, but its manifest list records {}",
                    bytes.len(),
                    manifest.manifest_length
                )));
            }
            Manifest::parse_avro(&bytes)
                .map_err(|e| refused(format!("manifest {path} does not parse: {}", e.message())))?;
        }
        added.insert(id, manifests.into_iter().map(|m| m.manifest_path).collect());
    }
    Ok(())
}

/// Why `path` is not a file of the table under `root`, if it is not.
fn under(root: &str, path: &str) -> std::result::Result<(), String> {
    if path.starts_with(root) && !path.contains("/../") {
        Ok(())
    } else {
        Err(format!("is not under the table's location {root}"))
    }
}

/// The bytes of a file a commit adds; a missing one is bad input.
async fn read_added(storage: &ObjectStorage, path: &str) -> std::result::Result<Bytes, String> {
    storage.read(path).await.map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            format!("{path} does not exist")
        } else {
            format!("cannot read {path}: {e}")
        }
    })
}

/// The manifests of a new snapshot's parent: one the same commit added, or one of the table's.
async fn parent_manifests(
    base: Option<&Table>,
    added: &HashMap<i64, HashSet<String>>,
    parent: Option<i64>,
) -> Result<HashSet<String>> {
    let Some(parent) = parent else {
        return Ok(HashSet::new());
    };
    if let Some(paths) = added.get(&parent) {
        return Ok(paths.clone());
    }
    let Some((table, snapshot)) = base.and_then(|b| Some((b, b.metadata().snapshot_by_id(parent)?.clone())))
    else {
        return Ok(HashSet::new());
    };
    Ok(table
        .manifests(&snapshot)
        .await?
        .iter()
        .map(|m| m.manifest_path.clone())
        .collect())
}
