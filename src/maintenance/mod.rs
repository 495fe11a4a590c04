//! Tables that stay lean for years: [`compact`] small files, [`expire`] old snapshots and free what
//! only they referenced, and remove [`orphans`]; `maintain` does all three with the table's
//! properties as defaults; `purge` deletes a dropped table's files. Each change is a normal commit
//! through the transaction layer, reached through `Floe`'s methods (one route per operation). (Manifest
//! merging and the trimming of old metadata files happen on every commit, in the transaction layer.)

pub mod compact;
pub mod expire;
pub mod orphans;
pub(crate) mod purge;
pub(crate) mod reachable;

use serde::Serialize;

use crate::catalog::TableName;
use crate::error::Result;
use crate::table::TableStore;

pub(crate) use compact::compact;
pub use compact::{CompactOptions, CompactReport};
pub(crate) use expire::expire_snapshots;
pub use expire::{ExpireOptions, ExpireReport};
pub(crate) use orphans::remove_orphan_files;
pub use orphans::{OrphanOptions, OrphanReport, DEFAULT_ORPHAN_AGE};

/// Files deleted (or, in a dry run, that would be), by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileCounts {
    /// Data files.
    pub data_files: u64,
    /// Delete files.
    pub delete_files: u64,
    /// Manifests.
    pub manifests: u64,
    /// Manifest lists.
    pub manifest_lists: u64,
    /// Statistics files.
    pub statistics: u64,
    /// Metadata JSON files.
    pub metadata: u64,
    /// Anything else.
    pub other: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl FileCounts {
    /// Files in all.
    pub fn files(&self) -> u64 {
        self.data_files
            + self.delete_files
            + self.manifests
            + self.manifest_lists
            + self.statistics
            + self.metadata
            + self.other
    }
}

/// Everything `maintain` does, with each step's options.
#[derive(Clone, Debug, Default)]
pub struct MaintainOptions {
    /// Compaction (skipped when `None`).
    pub compact: Option<CompactOptions>,
    /// Snapshot expiry.
    pub expire: ExpireOptions,
    /// Orphan removal.
    pub orphans: OrphanOptions,
    /// Report; change nothing.
    pub dry_run: bool,
}

impl MaintainOptions {
    /// Compaction, expiry and orphan removal with the table's defaults.
    pub fn all() -> Self {
        Self {
            compact: Some(CompactOptions::default()),
            ..Default::default()
        }
    }
}

/// What `maintain` did to one table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MaintainReport {
    /// The table.
    pub table: String,
    /// Compaction.
    pub compact: Option<CompactReport>,
    /// Snapshot expiry.
    pub expire: ExpireReport,
    /// Orphan removal.
    pub orphans: OrphanReport,
}

/// Compact, then expire snapshots (the replaced files of the compaction go once their snapshots
/// expire), then remove orphans. (Callers go through `Floe::maintain`.)
pub(crate) async fn maintain(
    store: &TableStore,
    name: &TableName,
    options: &MaintainOptions,
) -> Result<MaintainReport> {
    let compact = match &options.compact {
        Some(c) => {
            let mut c = c.clone();
            c.dry_run |= options.dry_run;
            Some(compact::compact(store, name, &c).await?)
        }
        None => None,
    };
    let mut e = options.expire.clone();
    e.dry_run |= options.dry_run;
    let expire = expire::expire_snapshots(store, name, &e).await?;
    let mut o = options.orphans.clone();
    o.dry_run |= options.dry_run;
    let orphans = orphans::remove_orphan_files(store, name, &o).await?;
    Ok(MaintainReport {
        table: name.to_string(),
        compact,
        expire,
        orphans,
    })
}
