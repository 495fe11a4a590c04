//! Dropping a table, and with a purge deleting the files its metadata references (Iceberg Java's
//! `CatalogUtil.dropTableData`): data, delete, manifest, manifest list, metadata and statistics files,
//! and nothing else. A file under the table's location that the metadata does not name, or another
//! table's files below it, are left alone. A purge asked for by a REST client deletes only the
//! referenced files under the table's own location: a client's snapshot may name any file (one
//! added from elsewhere, or another table's), and dropping this table must never delete those.

use super::reachable::{reachable, Entries};
use crate::catalog::TableName;
use crate::error::Result;
use crate::table::TableStore;

/// Which files a drop deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purge {
    /// None: the table leaves the catalog, its files stay.
    Nothing,
    /// Every file the metadata references, wherever it is (`write.data.path` puts data elsewhere).
    Referenced,
    /// The files the metadata references under the table's location; any other stays.
    UnderLocation,
}

/// Drop `name` from the catalog, deleting the files `purge` says.
pub(crate) async fn drop_table(store: &TableStore, name: &TableName, purge: Purge) -> Result<()> {
    let files = if purge == Purge::Nothing {
        None
    } else {
        // Listed before the table disappears from the catalog.
        let table = store.load(name).await?;
        let mut files: Vec<String> = reachable(&table, table.metadata().snapshots(), Entries::All)
            .await?
            .all()
            .into_iter()
            .collect();
        if purge == Purge::UnderLocation {
            let root = format!("{}/", table.location().trim_end_matches('/'));
            let before = files.len();
            files.retain(|f| f.starts_with(&root) && !f.contains("/../"));
            if files.len() < before {
                tracing::info!(table = %name, kept = before - files.len(), "purge leaves the files outside the table's location");
            }
        }
        Some((table.location().to_string(), files))
    };
    store.catalog().drop_table(name).await?;
    if let Some((location, files)) = files {
        for f in &files {
            store.storage().delete(f).await?;
        }
        crate::storage::remove_empty_local_dirs(&location, &files);
    }
    Ok(())
}
