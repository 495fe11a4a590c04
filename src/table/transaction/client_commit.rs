//! A commit another engine sends through floe's REST catalog (`floe serve`): the client's
//! requirements and metadata updates, as iceberg's `TableRequirement` and `TableUpdate`. It is one
//! more action of the commit loop: each attempt checks the requirements on its base (a failed one is
//! a conflict, never retried), applies the updates on it through iceberg's `TableMetadataBuilder`,
//! and a lost swap reloads, checks and applies again, as Java's `CatalogHandlers.commit` does.
//! Updates floe cannot honour (a new uuid or location, a format past the one floe writes, a
//! snapshot whose manifest list lies outside the table) are refused as invalid input.

use iceberg::spec::{FormatVersion, TableMetadata};
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
        check_manifest_lists(view.storage(), view.location(), &self.updates).await?;
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

/// Every added snapshot's manifest list must lie under the table's location and exist: a commit
/// never makes a file outside the table part of it (a later purge would delete it).
pub(crate) async fn check_manifest_lists(
    storage: &ObjectStorage,
    location: &str,
    updates: &[TableUpdate],
) -> Result<()> {
    let root = format!("{}/", location.trim_end_matches('/'));
    for update in updates {
        let TableUpdate::AddSnapshot { snapshot } = update else {
            continue;
        };
        let list = snapshot.manifest_list();
        if !list.starts_with(&root) || list.contains("/../") {
            return Err(Error::invalid(format!(
                "snapshot {}'s manifest list {list} is not under the table's location {root}",
                snapshot.snapshot_id()
            )));
        }
        if !storage.exists(list).await? {
            return Err(Error::invalid(format!(
                "snapshot {}'s manifest list {list} does not exist",
                snapshot.snapshot_id()
            )));
        }
    }
    Ok(())
}
