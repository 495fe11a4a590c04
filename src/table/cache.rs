//! Decoded immutable files, by location: table metadata JSON and manifest lists. Iceberg never
//! rewrites a file in place, so a location decoded once (or written by this process) can be served
//! from memory for as long as the `Floe` handle lives; a job that commits again and again then reads
//! neither its last metadata file nor its last manifest list back from the store.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use std::collections::BTreeMap;
use std::sync::OnceLock;

use iceberg::spec::{ManifestFile, SnapshotReference, TableMetadataRef};

use super::metadata_json::SnapshotJsonCache;

/// A table's refs by name, computed once per metadata file and shared by every view of it.
pub(crate) type SharedRefs = Arc<OnceLock<BTreeMap<String, SnapshotReference>>>;

/// Decoded metadata and its refs.
#[derive(Clone, Debug)]
pub(crate) struct CachedMetadata {
    pub(crate) metadata: TableMetadataRef,
    pub(crate) refs: SharedRefs,
}

/// A small bounded map; the oldest entry leaves first.
#[derive(Debug)]
struct Bounded<V> {
    entries: Mutex<VecDeque<(String, V)>>,
    capacity: usize,
}

impl<V: Clone> Bounded<V> {
    fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(VecDeque::new()),
            capacity,
        }
    }

    fn get(&self, location: &str) -> Option<V> {
        let entries = self.entries.lock().expect("file cache poisoned");
        entries
            .iter()
            .find(|(l, _)| l == location)
            .map(|(_, v)| v.clone())
    }

    /// Insert `value` unless `location` is cached; returns the cached value.
    fn put(&self, location: &str, value: V) -> V {
        let mut entries = self.entries.lock().expect("file cache poisoned");
        if let Some((_, v)) = entries.iter().find(|(l, _)| l == location) {
            return v.clone();
        }
        if entries.len() == self.capacity {
            entries.pop_front();
        }
        entries.push_back((location.to_string(), value.clone()));
        value
    }
}

/// The cache a `Floe` handle shares with the tables it loads.
#[derive(Debug)]
pub(crate) struct FileCache {
    metadata: Bounded<CachedMetadata>,
    manifest_lists: Bounded<Arc<Vec<ManifestFile>>>,
    /// Snapshots already encoded as metadata JSON.
    pub(crate) snapshot_json: SnapshotJsonCache,
}

impl Default for FileCache {
    fn default() -> Self {
        Self {
            metadata: Bounded::new(32),
            manifest_lists: Bounded::new(32),
            snapshot_json: SnapshotJsonCache::default(),
        }
    }
}

impl FileCache {
    pub(crate) fn metadata(&self, location: &str) -> Option<CachedMetadata> {
        self.metadata.get(location)
    }

    /// Remember `metadata` at `location`; returns the cached entry (an earlier one wins).
    pub(crate) fn put_metadata(&self, location: &str, metadata: CachedMetadata) -> CachedMetadata {
        self.metadata.put(location, metadata)
    }

    pub(crate) fn manifest_list(&self, location: &str) -> Option<Arc<Vec<ManifestFile>>> {
        self.manifest_lists.get(location)
    }

    pub(crate) fn put_manifest_list(&self, location: &str, manifests: Arc<Vec<ManifestFile>>) {
        self.manifest_lists.put(location, manifests);
    }
}
