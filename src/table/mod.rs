//! Tables: a loaded view of one Iceberg table ([`Table`]), how a ref is named ([`At`]), how one is
//! created ([`create`]), where tables are loaded from ([`store`]), how they are read ([`scan`]) and
//! written ([`writer`]), their row-level deletes ([`deletes`]), their typed metadata views
//! ([`inspect`]), and the transaction layer every change goes through ([`transaction`]).

pub mod add_files;
pub(crate) mod cache;
pub mod create;
pub(crate) mod csv_ranges;
pub mod deletes;
pub mod encoding;
pub(crate) mod entries;
pub(crate) mod file_stats;
pub mod files;
pub(crate) mod filter;
pub mod inspect;
pub(crate) mod manifest_list;
pub(crate) mod metadata_json;
pub(crate) mod nested_shapes;
pub(crate) mod parallel_parquet;
pub mod plain_files;
pub mod scan;
pub mod schema_text;
pub mod schema_update;
pub mod sort_order;
pub(crate) mod sorter;
pub mod spec_update;
pub mod store;
pub mod transaction;
pub(crate) mod uuid_columns;
pub(crate) mod writer;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use iceberg::spec::{
    DataFile, FormatVersion, Manifest, ManifestFile, ManifestList, ManifestStatus, PartitionSpecRef,
    SchemaRef, SnapshotRef, SnapshotReference, TableMetadata, TableMetadataBuilder, TableMetadataRef,
    MAIN_BRANCH,
};

use crate::catalog::TableName;
use crate::error::{Error, Result};
use crate::storage::ObjectStorage;
use cache::{FileCache, SharedRefs};

pub use create::{PartitionField, TableDefinition};
pub use filter::RowFilter;
pub use inspect::{FileInfo, RefInfo};
pub use scan::{ScanOptions, SnapshotChanges};
pub use store::TableStore;
pub use transaction::{
    Assignments, CommitResult, CommitTimings, Dedupe, DeleteOptions, ExpectedHead, Isolation, Lineage,
    MergeClause, MergeOptions, MergeSpec, OverwriteOptions, RowCounts, RowLevelOptions, Transaction,
    UpsertOptions, WhenMatched, WhenNotMatched, WriteOptions, DEFAULT_TARGET_FILE_SIZE,
};

/// A table as loaded from the catalog: its metadata at one metadata location.
#[derive(Clone, Debug)]
pub struct Table {
    name: TableName,
    metadata_location: String,
    metadata: TableMetadataRef,
    storage: ObjectStorage,
    cache: Arc<FileCache>,
    /// Set on a view of metadata a commit staged on top of `metadata_location` (not yet written).
    staged: bool,
    refs: SharedRefs,
}

/// Which state of a table to read: the current `main`, a snapshot id, a branch, a tag, or the state
/// of `main` at a point in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum At {
    /// The head of `main`.
    Current,
    /// A snapshot by id.
    Snapshot(i64),
    /// A branch or tag by name.
    Ref(String),
    /// The snapshot that was current on `main` at this time (milliseconds since the epoch).
    Timestamp(i64),
}

impl At {
    /// Parse what follows `@` in `TABLE@REF`: a snapshot id (digits), an RFC 3339 time, or a ref
    /// name.
    pub fn parse(text: &str) -> Self {
        if text.is_empty() {
            return At::Current;
        }
        if !text.starts_with('0') || text == "0" {
            if let Ok(id) = text.parse::<i64>() {
                return At::Snapshot(id);
            }
        }
        if let Ok(ts) = chrono::DateTime::parse_from_rfc3339(text) {
            return At::Timestamp(ts.timestamp_millis());
        }
        At::Ref(text.to_string())
    }
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Current => f.write_str("main"),
            At::Snapshot(id) => write!(f, "{id}"),
            At::Ref(name) => f.write_str(name),
            At::Timestamp(ms) => match chrono::DateTime::from_timestamp_millis(*ms) {
                Some(t) => write!(f, "{}", t.to_rfc3339()),
                None => write!(f, "{ms}"),
            },
        }
    }
}

/// `TABLE` or `TABLE@REF`, parsed.
pub fn parse_table_ref(text: &str) -> Result<(TableName, At)> {
    match text.split_once('@') {
        Some((t, r)) => Ok((TableName::parse(t)?, At::parse(r))),
        None => Ok((TableName::parse(text)?, At::Current)),
    }
}

impl Table {
    pub(crate) fn new(
        name: TableName,
        metadata_location: String,
        metadata: TableMetadataRef,
        refs: SharedRefs,
        storage: ObjectStorage,
        cache: Arc<FileCache>,
    ) -> Self {
        Self {
            name,
            metadata_location,
            metadata,
            storage,
            cache,
            staged: false,
            refs,
        }
    }

    /// The table at `metadata_location` as another process loaded it (`metadata`), reached with
    /// `storage`: what a cluster executor writes files for. It shares no cache with any handle.
    pub(crate) fn detached(
        name: TableName,
        metadata_location: String,
        metadata: TableMetadataRef,
        storage: ObjectStorage,
    ) -> Self {
        Self::new(
            name,
            metadata_location,
            metadata,
            SharedRefs::default(),
            storage,
            Arc::new(FileCache::default()),
        )
    }

    /// A view of `metadata` that a commit staged on top of this table (not yet written): further
    /// changes build on it, and the metadata log records this table's location once.
    /// `ref_updates` are the refs the change set or removed: the view's refs are this table's with
    /// those applied, less refs whose snapshot the change removed.
    pub(crate) fn staged(&self, metadata: TableMetadata, ref_updates: &[iceberg::TableUpdate]) -> Self {
        let mut refs = self.snapshot_refs();
        for u in ref_updates {
            match u {
                iceberg::TableUpdate::SetSnapshotRef { ref_name, reference } => {
                    refs.insert(ref_name.clone(), reference.clone());
                }
                iceberg::TableUpdate::RemoveSnapshotRef { ref_name } => {
                    refs.remove(ref_name);
                }
                _ => {}
            }
        }
        refs.retain(|_, r| metadata.snapshot_by_id(r.snapshot_id).is_some());
        Self {
            metadata: Arc::new(metadata),
            staged: true,
            refs: Arc::new(OnceLock::from(refs)),
            ..self.clone()
        }
    }

    /// This view's metadata, shared (not copied).
    pub(crate) fn shared_metadata(&self) -> TableMetadataRef {
        self.metadata.clone()
    }

    /// The refs of this view, shared with every handle of the same metadata.
    pub(crate) fn shared_refs(&self) -> SharedRefs {
        self.refs.clone()
    }

    /// The metadata JSON of this view: encoded by floe where it can (see
    /// [`metadata_json`]), else by iceberg-rust.
    pub(crate) fn metadata_json(&self) -> Result<metadata_json::EncodedMetadata> {
        if metadata_json::encodes(&self.metadata) {
            metadata_json::encode(&self.metadata, &self.snapshot_refs(), &self.cache.snapshot_json)
        } else {
            Err(Error::internal(
                "metadata_json called for metadata floe does not encode",
            ))
        }
    }

    /// A builder for metadata that follows this table's.
    pub(crate) fn metadata_builder(&self) -> TableMetadataBuilder {
        let previous = (!self.staged).then(|| self.metadata_location.clone());
        (*self.metadata).clone().into_builder(previous)
    }

    /// The table's name.
    pub fn name(&self) -> &TableName {
        &self.name
    }

    /// The metadata file this view was loaded from.
    pub fn metadata_location(&self) -> &str {
        &self.metadata_location
    }

    /// Iceberg metadata.
    pub fn metadata(&self) -> &TableMetadata {
        &self.metadata
    }

    /// The current schema.
    pub fn schema(&self) -> &SchemaRef {
        self.metadata.current_schema()
    }

    /// The current schema as Arrow.
    pub fn arrow_schema(&self) -> Result<arrow::datatypes::SchemaRef> {
        Ok(Arc::new(iceberg::arrow::schema_to_arrow_schema(self.schema())?))
    }

    /// The default partition spec.
    pub fn partition_spec(&self) -> &PartitionSpecRef {
        self.metadata.default_partition_spec()
    }

    /// Table properties.
    pub fn properties(&self) -> BTreeMap<String, String> {
        self.metadata
            .properties()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The table's root location.
    pub fn location(&self) -> &str {
        self.metadata.location()
    }

    /// The head of `main`, if the table has any snapshot.
    pub fn current_snapshot(&self) -> Option<&SnapshotRef> {
        self.metadata.current_snapshot()
    }

    /// Every snapshot, oldest first.
    pub fn snapshots(&self) -> Vec<SnapshotRef> {
        let mut s: Vec<SnapshotRef> = self.metadata.snapshots().cloned().collect();
        s.sort_by_key(|s| (s.timestamp_ms(), s.sequence_number()));
        s
    }

    /// Branches and tags with their retention settings, by name. (iceberg-rust keeps the refs map
    /// private; its JSON form is the spec's, so floe reads them from there, once per view.)
    pub fn snapshot_refs(&self) -> BTreeMap<String, SnapshotReference> {
        self.refs.get_or_init(|| refs_from_json(&self.metadata)).clone()
    }

    /// Branches and tags, by name.
    pub fn refs(&self) -> Vec<RefInfo> {
        self.snapshot_refs()
            .into_iter()
            .map(|(name, r)| RefInfo {
                kind: if r.is_branch() { "branch" } else { "tag" },
                snapshot_id: r.snapshot_id,
                name,
            })
            .collect()
    }

    /// The ref of this name, if any.
    pub fn find_ref(&self, name: &str) -> Option<RefInfo> {
        self.refs().into_iter().find(|r| r.name == name)
    }

    /// The snapshot a ref, id or time designates; `None` for an empty table read at `main`.
    pub fn snapshot_at(&self, at: &At) -> Result<Option<SnapshotRef>> {
        match at {
            At::Current => Ok(self.metadata.current_snapshot().cloned()),
            At::Snapshot(id) => self
                .metadata
                .snapshot_by_id(*id)
                .cloned()
                .map(Some)
                .ok_or_else(|| Error::not_found(format!("table {} has no snapshot {id}", self.name))),
            At::Ref(name) => {
                if let Some(r) = self.find_ref(name) {
                    return Ok(self.metadata.snapshot_by_id(r.snapshot_id).cloned());
                }
                if name == MAIN_BRANCH {
                    return Ok(None);
                }
                Err(Error::not_found(format!(
                    "table {} has no branch or tag {name:?}",
                    self.name
                )))
            }
            At::Timestamp(ms) => {
                let entry = self
                    .metadata
                    .history()
                    .iter()
                    .rev()
                    .find(|e| e.timestamp_ms() <= *ms);
                match entry {
                    Some(e) => Ok(self.metadata.snapshot_by_id(e.snapshot_id).cloned()),
                    None => Err(Error::not_found(format!(
                        "table {} had no snapshot at {}",
                        self.name,
                        At::Timestamp(*ms)
                    ))),
                }
            }
        }
    }

    /// Whether `ancestor` is `snapshot_id` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: i64, snapshot_id: i64) -> bool {
        let mut cur = Some(snapshot_id);
        while let Some(id) = cur {
            if id == ancestor {
                return true;
            }
            cur = self
                .metadata
                .snapshot_by_id(id)
                .and_then(|s| s.parent_snapshot_id());
        }
        false
    }

    /// The live data files of a snapshot.
    pub async fn files(&self, snapshot: Option<&SnapshotRef>) -> Result<Vec<FileInfo>> {
        let files = self.data_files(snapshot).await?;
        let schema = self.schema().clone();
        Ok(files
            .into_iter()
            .map(|(f, spec_id)| {
                let spec = self
                    .metadata
                    .partition_spec_by_id(spec_id)
                    .cloned()
                    .unwrap_or_else(|| self.partition_spec().clone());
                let partition = if f.partition().fields().is_empty() {
                    String::new()
                } else {
                    spec.partition_to_path(f.partition(), schema.clone())
                };
                FileInfo {
                    path: f.file_path().to_string(),
                    partition,
                    record_count: f.record_count(),
                    file_size_in_bytes: f.file_size_in_bytes(),
                    spec_id,
                }
            })
            .collect())
    }

    /// The live data files of a snapshot, as Iceberg describes them, with the partition spec id of
    /// the manifest that lists each.
    pub(crate) async fn data_files(&self, snapshot: Option<&SnapshotRef>) -> Result<Vec<(DataFile, i32)>> {
        let Some(snapshot) = snapshot else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for mf in self.manifests(snapshot).await?.iter() {
            let manifest = self.manifest(mf).await?;
            for e in manifest.entries() {
                if e.status() != ManifestStatus::Deleted
                    && e.content_type() == iceberg::spec::DataContentType::Data
                {
                    out.push((e.data_file().clone(), mf.partition_spec_id));
                }
            }
        }
        Ok(out)
    }

    /// The live data files of a snapshot with their statistics (bounds, counts), as the manifests
    /// record them.
    pub async fn live_data_files(&self, snapshot: Option<&SnapshotRef>) -> Result<Vec<DataFile>> {
        Ok(self
            .data_files(snapshot)
            .await?
            .into_iter()
            .map(|(f, _)| f)
            .collect())
    }

    /// The live delete files (position and equality deletes) of a snapshot, as the manifests record
    /// them.
    pub async fn live_delete_files(&self, snapshot: Option<&SnapshotRef>) -> Result<Vec<DataFile>> {
        Ok(entries::SnapshotFiles::of(self, snapshot)
            .await?
            .deletes
            .into_iter()
            .map(|f| f.file)
            .collect())
    }

    /// The paths of the manifests a snapshot's manifest list names.
    pub async fn manifest_paths(&self, snapshot: &SnapshotRef) -> Result<Vec<String>> {
        Ok(self
            .manifests(snapshot)
            .await?
            .iter()
            .map(|m| m.manifest_path.clone())
            .collect())
    }

    /// The manifests a snapshot's manifest list names.
    pub(crate) async fn manifests(&self, snapshot: &SnapshotRef) -> Result<Arc<Vec<ManifestFile>>> {
        if let Some(list) = self.cache.manifest_list(snapshot.manifest_list()) {
            return Ok(list);
        }
        let bytes = self.storage.read(snapshot.manifest_list()).await?;
        let list = ManifestList::parse_with_version(&bytes, self.format_version())?;
        let list = Arc::new(list.consume_entries().into_iter().collect::<Vec<_>>());
        self.cache
            .put_manifest_list(snapshot.manifest_list(), list.clone());
        Ok(list)
    }

    /// A manifest's entries, with the values its manifest-list entry lets them inherit (a manifest
    /// keeps its path, snapshot and sequence number in every list that carries it forward).
    pub(crate) async fn manifest(&self, file: &ManifestFile) -> Result<Arc<Manifest>> {
        if let Some(m) = self.cache.manifest(&file.manifest_path) {
            return Ok(m);
        }
        let manifest = file
            .load_manifest(&self.storage.file_io())
            .await
            .map_err(|e| Error::from(e).context(format!("read manifest {}", file.manifest_path)))?;
        let manifest = Arc::new(manifest);
        self.cache.put_manifest(&file.manifest_path, manifest.clone());
        Ok(manifest)
    }

    /// The bytes of a v2 manifest list of `manifests`, each entry encoded once per process.
    pub(crate) async fn encode_manifest_list(
        &self,
        header: manifest_list::ListHeader,
        manifests: &[ManifestFile],
    ) -> Result<Vec<u8>> {
        manifest_list::encode(header, manifests, &self.cache.manifest_list_entries).await
    }

    /// Remember the manifests of a manifest list this process wrote.
    pub(crate) fn remember_manifest_list(&self, location: &str, manifests: Arc<Vec<ManifestFile>>) {
        self.cache.put_manifest_list(location, manifests);
    }

    /// An iceberg-rust `Table` over the same metadata, for its scan planning and Arrow reader.
    pub(crate) fn iceberg_table(&self) -> Result<iceberg::table::Table> {
        Ok(iceberg::table::Table::builder()
            .identifier(self.name.to_iceberg())
            .metadata(self.metadata.clone())
            .metadata_location(self.metadata_location.clone())
            .file_io(self.storage.file_io())
            .runtime(iceberg::Runtime::try_current()?)
            .readonly(true)
            .build()?)
    }

    pub(crate) fn storage(&self) -> &ObjectStorage {
        &self.storage
    }

    pub(crate) fn format_version(&self) -> FormatVersion {
        self.metadata.format_version()
    }
}

/// The refs of `metadata`, read from its JSON form (iceberg-rust keeps the map private; its JSON form
/// is the spec's). Costs a full encoding: views share the result, and commits derive their refs
/// from their base's instead.
fn refs_from_json(metadata: &TableMetadata) -> BTreeMap<String, SnapshotReference> {
    serde_json::to_value(metadata)
        .ok()
        .and_then(|v| v.get("refs").cloned())
        .and_then(|r| serde_json::from_value::<BTreeMap<String, SnapshotReference>>(r).ok())
        .unwrap_or_default()
}
