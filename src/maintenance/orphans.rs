//! Remove orphan files: files under a table's location that no metadata of the table references
//! (its current metadata, the metadata log, every snapshot's manifest list, manifests and live
//! files, statistics files) and that are older than a threshold (3 days by default, as Iceberg Java,
//! so that the files of a write still in flight are never hit). Never touches a file outside the
//! table's location, nor the files of another table whose location lies below it.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use super::reachable::{reachable, Entries};
use super::FileCounts;
use crate::catalog::TableName;
use crate::error::Result;
use crate::storage::delete_quietly;
use crate::table::TableStore;

/// How orphans are found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrphanOptions {
    /// Only files older than this are orphans (default 3 days). A threshold shorter than the
    /// longest write in flight can delete that write's files.
    pub older_than: Option<Duration>,
    /// List them; delete nothing.
    pub dry_run: bool,
}

/// Default age below which a file is never an orphan.
pub const DEFAULT_ORPHAN_AGE: Duration = Duration::from_secs(3 * 24 * 3600);

/// The orphans found (and, unless a dry run, deleted).
#[derive(Clone, Debug, Default, Serialize)]
pub struct OrphanReport {
    /// The table.
    pub table: String,
    /// The orphan files.
    pub files: Vec<String>,
    /// Counts by kind and bytes.
    pub deleted: FileCounts,
    /// Nothing was deleted.
    pub dry_run: bool,
}

/// Find (and delete) the orphan files of `name`.
pub(crate) async fn remove_orphan_files(
    store: &TableStore,
    name: &TableName,
    options: &OrphanOptions,
) -> Result<OrphanReport> {
    let table = store.load(name).await?;
    let location = table.location().trim_end_matches('/').to_string();
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(options.older_than.unwrap_or(DEFAULT_ORPHAN_AGE))
            .unwrap_or(chrono::Duration::MAX);
    // Other tables whose location lies below this one keep their files.
    let nested = nested_locations(store, name, &location).await?;
    let referenced = reachable(&table, table.metadata().snapshots(), Entries::Live).await?;
    let mut report = OrphanReport {
        table: name.to_string(),
        dry_run: options.dry_run,
        ..Default::default()
    };
    for object in store.storage().list_with_meta(&format!("{location}/")).await? {
        if referenced.contains(&object.location)
            || object.location.ends_with("/metadata/version-hint.text")
            || nested.iter().any(|n| object.location.starts_with(n.as_str()))
            || object.last_modified >= cutoff
        {
            continue;
        }
        let counts = &mut report.deleted;
        let path = object.location.as_str();
        if path.ends_with(".metadata.json") {
            counts.metadata += 1;
        } else if path.contains("/metadata/snap-") {
            counts.manifest_lists += 1;
        } else if path.ends_with(".avro") {
            counts.manifests += 1;
        } else if path.ends_with(".parquet") {
            counts.data_files += 1;
        } else if path.ends_with(".puffin") || path.ends_with(".stats") {
            counts.statistics += 1;
        } else {
            counts.other += 1;
        }
        counts.bytes += object.size;
        report.files.push(object.location);
    }
    if !options.dry_run {
        delete_quietly(store.storage(), report.files.clone()).await;
    }
    Ok(report)
}

/// Locations (with a trailing `/`) of the other tables in the catalog that lie below `location`.
async fn nested_locations(store: &TableStore, name: &TableName, location: &str) -> Result<BTreeSet<String>> {
    let catalog = store.catalog();
    let prefix = format!("{location}/");
    let mut out = BTreeSet::new();
    for ns in catalog.list_namespaces().await? {
        for t in catalog.list_tables(&ns).await? {
            if &t == name {
                continue;
            }
            let Some(metadata) = catalog.metadata_location(&t).await? else {
                continue;
            };
            // `<table location>/metadata/<file>.metadata.json`
            let table_location = metadata
                .rsplit_once("/metadata/")
                .map(|(l, _)| l.to_string())
                .unwrap_or(metadata);
            if table_location.starts_with(&prefix) {
                out.insert(format!("{table_location}/"));
            }
        }
    }
    Ok(out)
}
