//! The files a table's metadata references: metadata files (current and logged), statistics files,
//! manifest lists, manifests, and the data and delete files those manifests list live. Expiry,
//! orphan removal and purge decide what may go by it.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use iceberg::spec::SnapshotRef;

use crate::error::Result;
use crate::table::Table;

/// Referenced files, by kind.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reachable {
    pub(crate) metadata: BTreeSet<String>,
    pub(crate) statistics: BTreeSet<String>,
    pub(crate) manifest_lists: BTreeSet<String>,
    pub(crate) manifests: BTreeSet<String>,
    pub(crate) data_files: BTreeSet<String>,
    pub(crate) delete_files: BTreeSet<String>,
    /// Sizes in bytes of the manifests, data and delete files, as the metadata naming them records.
    pub(crate) sizes: BTreeMap<String, u64>,
}

impl Reachable {
    pub(crate) fn contains(&self, path: &str) -> bool {
        self.metadata.contains(path)
            || self.statistics.contains(path)
            || self.manifest_lists.contains(path)
            || self.manifests.contains(path)
            || self.data_files.contains(path)
            || self.delete_files.contains(path)
    }

    pub(crate) fn all(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for set in [
            &self.metadata,
            &self.statistics,
            &self.manifest_lists,
            &self.manifests,
            &self.data_files,
            &self.delete_files,
        ] {
            out.extend(set.iter().cloned());
        }
        out
    }
}

/// Which entries of a manifest count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entries {
    /// `ADDED` and `EXISTING`: what a reader of one of the snapshots can read.
    Live,
    /// Every entry, `DELETED` ones too: every data file the metadata still names.
    All,
}

/// The files of `snapshots` of `table` (its metadata files and statistics files too).
pub(crate) async fn reachable<'a>(
    table: &Table,
    snapshots: impl IntoIterator<Item = &'a SnapshotRef>,
    entries: Entries,
) -> Result<Reachable> {
    let metadata = table.metadata();
    let mut out = Reachable::default();
    out.metadata.insert(table.metadata_location().to_string());
    out.metadata
        .extend(metadata.metadata_log().iter().map(|m| m.metadata_file.clone()));
    out.statistics
        .extend(metadata.statistics_iter().map(|s| s.statistics_path.clone()));
    out.statistics.extend(
        metadata
            .partition_statistics_iter()
            .map(|s| s.statistics_path.clone()),
    );
    let mut manifests = Vec::new();
    for s in snapshots {
        out.manifest_lists.insert(s.manifest_list().to_string());
        for mf in table.manifests(s).await?.iter() {
            if out.manifests.insert(mf.manifest_path.clone()) {
                out.sizes
                    .insert(mf.manifest_path.clone(), mf.manifest_length.max(0) as u64);
                manifests.push(mf.clone());
            }
        }
    }
    let loaded: Vec<_> = futures::stream::iter(manifests.into_iter().map(|mf| {
        let table = table.clone();
        async move { table.manifest(&mf).await.map(|m| (mf.content, m)) }
    }))
    .buffer_unordered(16)
    .try_collect()
    .await?;
    for (content, manifest) in loaded {
        for e in manifest.entries() {
            if entries == Entries::Live && !e.is_alive() {
                continue;
            }
            let file = e.data_file();
            let path = file.file_path().to_string();
            out.sizes.insert(path.clone(), file.file_size_in_bytes());
            match content {
                iceberg::spec::ManifestContentType::Data => out.data_files.insert(path),
                iceberg::spec::ManifestContentType::Deletes => out.delete_files.insert(path),
            };
        }
    }
    Ok(out)
}
