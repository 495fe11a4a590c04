//! Dropping a table, and with `purge` deleting the files its metadata references (Iceberg Java's
//! `CatalogUtil.dropTableData`): data, delete, manifest, manifest list, metadata and statistics files,
//! and nothing else. A file under the table's location that the metadata does not name, or another
//! table's files below it, are left alone.

use super::reachable::{reachable, Entries};
use crate::catalog::TableName;
use crate::error::Result;
use crate::table::TableStore;

/// Drop `name` from the catalog; with `purge`, delete every file its metadata references too.
pub(crate) async fn drop_table(store: &TableStore, name: &TableName, purge: bool) -> Result<()> {
    let files = if purge {
        // Listed before the table disappears from the catalog.
        let table = store.load(name).await?;
        let all = reachable(&table, table.metadata().snapshots(), Entries::All)
            .await?
            .all();
        Some((table.location().to_string(), all.into_iter().collect::<Vec<_>>()))
    } else {
        None
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
