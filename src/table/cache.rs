//! Decoded immutable files, by location: table metadata JSON, manifest lists and manifests. Iceberg never
//! rewrites a file in place, so a location decoded once (or written by this process) can be served
//! from memory for as long as the `Floe` handle lives; a job that commits again and again then reads
//! neither its last metadata file nor its last manifest list back from the store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use iceberg::spec::{Manifest, ManifestFile, SnapshotReference, TableMetadataRef};

use super::metadata_json::SnapshotJsonCache;

/// A table's refs by name, computed once per metadata file and shared by every view of it.
pub(crate) type SharedRefs = Arc<OnceLock<BTreeMap<String, SnapshotReference>>>;

/// Decoded metadata and its refs.
#[derive(Clone, Debug)]
pub(crate) struct CachedMetadata {
    pub(crate) metadata: TableMetadataRef,
    pub(crate) refs: SharedRefs,
}

/// A bounded map; the oldest entry leaves first.
#[derive(Debug)]
struct Bounded<V> {
    inner: Mutex<BoundedInner<V>>,
    capacity: usize,
}

#[derive(Debug)]
struct BoundedInner<V> {
    by_location: HashMap<String, V>,
    order: VecDeque<String>,
}

impl<V: Clone> Bounded<V> {
    fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(BoundedInner {
                by_location: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity,
        }
    }

    fn get(&self, location: &str) -> Option<V> {
        let inner = self.inner.lock().expect("file cache poisoned");
        inner.by_location.get(location).cloned()
    }

    /// Insert `value` unless `location` is cached; returns the cached value.
    fn put(&self, location: &str, value: V) -> V {
        let mut inner = self.inner.lock().expect("file cache poisoned");
        if let Some(v) = inner.by_location.get(location) {
            return v.clone();
        }
        if inner.order.len() >= self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.by_location.remove(&oldest);
            }
        }
        inner.order.push_back(location.to_string());
        inner.by_location.insert(location.to_string(), value.clone());
        value
    }
}

/// Decoded manifests, bounded by the entries they hold together (a manifest of a large table lists
/// many thousands of files); the oldest manifest leaves first.
#[derive(Debug)]
struct ManifestCache {
    inner: Mutex<ManifestCacheInner>,
    max_entries: usize,
}

#[derive(Debug, Default)]
struct ManifestCacheInner {
    by_path: HashMap<String, Arc<Manifest>>,
    order: VecDeque<String>,
    entries: usize,
}

impl ManifestCache {
    fn get(&self, path: &str) -> Option<Arc<Manifest>> {
        let inner = self.inner.lock().expect("manifest cache poisoned");
        inner.by_path.get(path).cloned()
    }

    fn put(&self, path: &str, manifest: Arc<Manifest>) {
        let weight = manifest.entries().len().max(1);
        if weight > self.max_entries {
            return;
        }
        let mut inner = self.inner.lock().expect("manifest cache poisoned");
        if inner.by_path.contains_key(path) {
            return;
        }
        while inner.entries + weight > self.max_entries {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(m) = inner.by_path.remove(&oldest) {
                inner.entries -= m.entries().len().max(1);
            }
        }
        inner.entries += weight;
        inner.order.push_back(path.to_string());
        inner.by_path.insert(path.to_string(), manifest);
    }
}

/// Manifest entries the cache holds at most (about 1 KiB each with their statistics).
const MANIFEST_CACHE_ENTRIES: usize = 100_000;

/// The cache a `Floe` handle shares with the tables it loads.
#[derive(Debug)]
pub(crate) struct FileCache {
    metadata: Bounded<CachedMetadata>,
    manifest_lists: Bounded<Arc<Vec<ManifestFile>>>,
    manifests: ManifestCache,
    /// Snapshots already encoded as metadata JSON.
    pub(crate) snapshot_json: SnapshotJsonCache,
}

impl Default for FileCache {
    fn default() -> Self {
        Self {
            metadata: Bounded::new(32),
            // Expiry reads the lists of every snapshot it keeps and of every one it expires.
            manifest_lists: Bounded::new(512),
            manifests: ManifestCache {
                inner: Mutex::default(),
                max_entries: MANIFEST_CACHE_ENTRIES,
            },
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

    pub(crate) fn manifest(&self, path: &str) -> Option<Arc<Manifest>> {
        self.manifests.get(path)
    }

    pub(crate) fn put_manifest(&self, path: &str, manifest: Arc<Manifest>) {
        self.manifests.put(path, manifest);
    }
}

#[cfg(test)]
mod tests {
    use super::Bounded;

    #[test]
    fn a_bounded_map_keeps_the_first_value_and_drops_the_oldest_entry() {
        let m = Bounded::new(2);
        assert_eq!(m.put("a", 1), 1);
        assert_eq!(m.put("a", 9), 1, "a location's first value wins");
        m.put("b", 2);
        m.put("c", 3);
        assert_eq!((m.get("a"), m.get("b"), m.get("c")), (None, Some(2), Some(3)));
    }
}
