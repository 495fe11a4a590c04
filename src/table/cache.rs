//! Decoded immutable files, by location: table metadata JSON and manifest lists. Iceberg never
//! rewrites a file in place, so a location decoded once (or written by this process) can be served
//! from memory for as long as the `Floe` handle lives; a job that commits again and again then reads
//! neither its last metadata file nor its last manifest list back from the store.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use iceberg::spec::{ManifestFile, TableMetadataRef};

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

    fn put(&self, location: &str, value: V) {
        let mut entries = self.entries.lock().expect("file cache poisoned");
        if entries.iter().any(|(l, _)| l == location) {
            return;
        }
        if entries.len() == self.capacity {
            entries.pop_front();
        }
        entries.push_back((location.to_string(), value));
    }
}

/// The cache a `Floe` handle shares with the tables it loads.
#[derive(Debug)]
pub(crate) struct FileCache {
    metadata: Bounded<TableMetadataRef>,
    manifest_lists: Bounded<Arc<Vec<ManifestFile>>>,
}

impl Default for FileCache {
    fn default() -> Self {
        Self {
            metadata: Bounded::new(32),
            manifest_lists: Bounded::new(32),
        }
    }
}

impl FileCache {
    pub(crate) fn metadata(&self, location: &str) -> Option<TableMetadataRef> {
        self.metadata.get(location)
    }

    pub(crate) fn put_metadata(&self, location: &str, metadata: TableMetadataRef) {
        self.metadata.put(location, metadata)
    }

    pub(crate) fn manifest_list(&self, location: &str) -> Option<Arc<Vec<ManifestFile>>> {
        self.manifest_lists.get(location)
    }

    pub(crate) fn put_manifest_list(&self, location: &str, manifests: Arc<Vec<ManifestFile>>) {
        self.manifest_lists.put(location, manifests)
    }
}
