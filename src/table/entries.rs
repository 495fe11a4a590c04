//! The live files of a snapshot as its manifests record them: every `ADDED` or `EXISTING` data and
//! delete file with the partition spec of the manifest that lists it and its data sequence number.
//! Sequence numbers say which deletes apply to which data file, and what a commit added after a
//! change read the table, without walking (possibly expired) history.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use iceberg::spec::{DataContentType, DataFile, DataFileFormat, ManifestFile, SnapshotRef};

use super::Table;
use crate::error::{Error, Result};

/// One live file of a snapshot.
#[derive(Clone, Debug)]
pub(crate) struct LiveFile {
    pub(crate) file: DataFile,
    /// The partition spec of the manifest that lists it.
    pub(crate) spec_id: i32,
    /// Its data sequence number: when its rows (or deletes) were committed.
    pub(crate) sequence_number: i64,
}

impl LiveFile {
    pub(crate) fn path(&self) -> &str {
        self.file.file_path()
    }

    /// A position delete file stored as a Puffin deletion vector (Iceberg v3).
    pub(crate) fn is_deletion_vector(&self) -> bool {
        self.file.content_type() == DataContentType::PositionDeletes
            && self.file.file_format() == DataFileFormat::Puffin
    }
}

/// The live data and delete files of one snapshot.
#[derive(Clone, Debug, Default)]
pub(crate) struct SnapshotFiles {
    pub(crate) data: Vec<LiveFile>,
    pub(crate) deletes: Vec<LiveFile>,
}

impl SnapshotFiles {
    /// The live files of `snapshot` (none for an empty table). Manifests are read concurrently.
    pub(crate) async fn of(table: &Table, snapshot: Option<&SnapshotRef>) -> Result<SnapshotFiles> {
        let Some(snapshot) = snapshot else {
            return Ok(SnapshotFiles::default());
        };
        let manifests: Vec<ManifestFile> = table.manifests(snapshot).await?.iter().cloned().collect();
        let read: Vec<(ManifestFile, Arc<iceberg::spec::Manifest>)> = futures::stream::iter(manifests)
            .map(|mf| async move {
                let m = table.manifest(&mf).await?;
                Ok::<_, Error>((mf, m))
            })
            .buffered(16)
            .try_collect()
            .await?;
        let mut out = SnapshotFiles::default();
        for (mf, manifest) in read {
            for e in manifest.entries() {
                if !e.is_alive() {
                    continue;
                }
                let live = LiveFile {
                    file: e.data_file().clone(),
                    spec_id: mf.partition_spec_id,
                    sequence_number: e.sequence_number().unwrap_or(mf.sequence_number),
                };
                match e.content_type() {
                    DataContentType::Data => out.data.push(live),
                    _ => out.deletes.push(live),
                }
            }
        }
        Ok(out)
    }

    /// The live data files by path.
    pub(crate) fn data_by_path(&self) -> HashMap<&str, &LiveFile> {
        self.data.iter().map(|f| (f.path(), f)).collect()
    }
}
