//! Decoded immutable files, by location: table metadata JSON, manifest lists and manifests (and
//! what the commit path encoded once: snapshot JSON, manifest-list entries). Iceberg never
//! rewrites a file in place, so a location decoded once (or written by this process) can be served
//! from memory for as long as the `Floe` handle lives; a job that commits again and again then reads
//! neither its last metadata file nor its last manifest list back from the store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use iceberg::spec::{Manifest, ManifestFile, SnapshotReference, TableMetadataRef};

use super::manifest_list::ManifestListEntryCache;
use super::metadata_json::SnapshotJsonCache;

/// A table's refs by name, computed once per metadata file and shared by every view of it.
pub(crate) type SharedRefs = Arc<OnceLock<BTreeMap<String, SnapshotReference>>>;

/// Decoded metadata and its refs.
#[derive(Clone, Debug)]
pub(crate) struct CachedMetadata {
    pub(crate) metadata: TableMetadataRef,
    pub(crate) refs: SharedRefs,
}

/// A map bounded by the total weight of its values (1 each unless `weight` says otherwise); the
/// oldest entry leaves first, and a value heavier than the whole bound is not kept.
#[derive(Debug)]
pub(crate) struct Bounded<V> {
    inner: Mutex<BoundedInner<V>>,
    capacity: usize,
    weight: fn(&V) -> usize,
}

#[derive(Debug)]
struct BoundedInner<V> {
    by_location: HashMap<String, V>,
    order: VecDeque<String>,
    weight: usize,
}

impl<V: Clone> Bounded<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self::weighted(capacity, |_| 1)
    }

    pub(crate) fn weighted(capacity: usize, weight: fn(&V) -> usize) -> Self {
        Self {
            inner: Mutex::new(BoundedInner {
                by_location: HashMap::new(),
                order: VecDeque::new(),
                weight: 0,
            }),
            capacity,
            weight,
        }
    }

    pub(crate) fn get(&self, location: &str) -> Option<V> {
        let inner = self.inner.lock().expect("file cache poisoned");
        inner.by_location.get(location).cloned()
    }

    /// Insert `value` unless `location` is cached; returns the cached value.
    pub(crate) fn put(&self, location: &str, value: V) -> V {
        let weight = (self.weight)(&value).max(1);
        let mut inner = self.inner.lock().expect("file cache poisoned");
        if let Some(v) = inner.by_location.get(location) {
            return v.clone();
        }
        if weight > self.capacity {
            return value;
        }
        while inner.weight + weight > self.capacity {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(v) = inner.by_location.remove(&oldest) {
                inner.weight -= (self.weight)(&v).max(1);
            }
        }
        inner.weight += weight;
        inner.order.push_back(location.to_string());
        inner.by_location.insert(location.to_string(), value.clone());
        value
    }
}

/// Manifest entries the manifest cache holds in all (about 1 KiB each with their statistics): a
/// manifest of a large table lists many thousands of files.
const MANIFEST_CACHE_ENTRIES: usize = 100_000;

/// Bytes of metadata JSON kept as text (the REST catalog answers loads with the stored file's text).
const METADATA_TEXT_BYTES: usize = 64 << 20;

/// The cache a `Floe` handle shares with the tables it loads.
#[derive(Debug)]
pub(crate) struct FileCache {
    metadata: Bounded<CachedMetadata>,
    /// Metadata files as stored (unzipped), for `floe serve`'s loads.
    metadata_text: Bounded<Arc<str>>,
    manifest_lists: Bounded<Arc<Vec<ManifestFile>>>,
    manifests: Bounded<Arc<Manifest>>,
    /// Snapshots already encoded as metadata JSON.
    pub(crate) snapshot_json: SnapshotJsonCache,
    /// Manifest-list entries already encoded.
    pub(crate) manifest_list_entries: ManifestListEntryCache,
}

impl Default for FileCache {
    fn default() -> Self {
        Self {
            metadata: Bounded::new(32),
            metadata_text: Bounded::weighted(METADATA_TEXT_BYTES, |t| t.len()),
            // Expiry reads the lists of every snapshot it keeps and of every one it expires.
            manifest_lists: Bounded::new(512),
            manifests: Bounded::weighted(MANIFEST_CACHE_ENTRIES, |m| m.entries().len()),
            snapshot_json: SnapshotJsonCache::default(),
            manifest_list_entries: ManifestListEntryCache::default(),
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

    pub(crate) fn metadata_text(&self, location: &str) -> Option<Arc<str>> {
        self.metadata_text.get(location)
    }

    /// Remember the text of the metadata file at `location`; returns the cached text.
    pub(crate) fn put_metadata_text(&self, location: &str, text: Arc<str>) -> Arc<str> {
        self.metadata_text.put(location, text)
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

    #[test]
    fn a_weighted_map_drops_old_entries_until_the_new_one_fits_and_never_keeps_an_oversized_one() {
        let m = Bounded::weighted(10, |v: &usize| *v);
        m.put("a", 4);
        m.put("b", 4);
        m.put("c", 5);
        assert_eq!((m.get("a"), m.get("b"), m.get("c")), (None, Some(4), Some(5)));
        assert_eq!(m.put("d", 11), 11);
        assert_eq!(m.get("d"), None, "a value heavier than the bound is not kept");
        assert_eq!(
            (m.get("b"), m.get("c")),
            (Some(4), Some(5)),
            "nor does it push others out"
        );
    }
}
