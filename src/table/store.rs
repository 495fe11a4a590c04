//! Where tables are loaded from and committed through: the catalog, the object storage, the file
//! cache shared by every table loaded here, and the commit retry policy. The transaction layer works
//! on a [`TableStore`]; the `Floe` handle owns one and sits above it.

use std::sync::Arc;

use iceberg::spec::{TableMetadata, TableMetadataRef};

use super::cache::{CachedMetadata, FileCache, SharedRefs};
use super::Table;
use crate::catalog::{Catalog, TableName};
use crate::config::RetryPolicy;
use crate::error::{Error, Missing, Result};
use crate::storage::ObjectStorage;

/// The catalog, storage, file cache and retry policy tables live with. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TableStore {
    catalog: Arc<dyn Catalog>,
    storage: ObjectStorage,
    cache: Arc<FileCache>,
    retry: RetryPolicy,
}

impl TableStore {
    pub(crate) fn new(catalog: Arc<dyn Catalog>, storage: ObjectStorage, retry: RetryPolicy) -> Self {
        Self {
            catalog,
            storage,
            cache: Arc::new(FileCache::default()),
            retry,
        }
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// The object storage.
    pub fn storage(&self) -> &ObjectStorage {
        &self.storage
    }

    pub(crate) fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Load a table's current metadata. A metadata file that is missing or unreadable is reported as
    /// what it is (kind `Data` or `Storage`), never as a missing table.
    pub async fn load(&self, name: &TableName) -> Result<Table> {
        let location =
            self.catalog.metadata_location(name).await?.ok_or_else(|| {
                Error::missing_object(Missing::Table, format!("table {name} does not exist"))
            })?;
        if let Some(cached) = self.cache.metadata(&location) {
            return Ok(self.handle(name, location, cached.metadata));
        }
        let metadata = read_metadata(&self.storage, &location)
            .await
            .map_err(|e| e.context(format!("load {name}")))?;
        Ok(self.handle(name, location, Arc::new(metadata)))
    }

    /// The text of the metadata file at `location` as stored (unzipped), from the file cache when
    /// it was read before: metadata files are never rewritten.
    pub(crate) async fn metadata_text(&self, location: &str) -> Result<Arc<str>> {
        if let Some(text) = self.cache.metadata_text(location) {
            return Ok(text);
        }
        let bytes = read_metadata_bytes(&self.storage, location).await?;
        let text = String::from_utf8(bytes.to_vec()).map_err(|e| {
            Error::new(
                crate::error::ErrorKind::Data,
                format!("metadata file {location}: {e}"),
            )
        })?;
        Ok(self.cache.put_metadata_text(location, Arc::from(text)))
    }

    /// A table at `location`, sharing this store's storage and file cache; the metadata is
    /// remembered, so loading the same location again is free.
    pub(crate) fn handle(&self, name: &TableName, location: String, metadata: TableMetadataRef) -> Table {
        self.handle_with_refs(name, location, metadata, SharedRefs::default())
    }

    /// [`TableStore::handle`] for metadata whose refs are already known (a view a commit wrote).
    pub(crate) fn handle_with_refs(
        &self,
        name: &TableName,
        location: String,
        metadata: TableMetadataRef,
        refs: SharedRefs,
    ) -> Table {
        let cached = self
            .cache
            .put_metadata(&location, CachedMetadata { metadata, refs });
        Table::new(
            name.clone(),
            location,
            cached.metadata,
            cached.refs,
            self.storage.clone(),
            self.cache.clone(),
        )
    }
}

/// Read and decode a metadata JSON file (plain or gzip-compressed).
pub(crate) async fn read_metadata(storage: &ObjectStorage, location: &str) -> Result<TableMetadata> {
    let text = read_metadata_bytes(storage, location).await?;
    serde_json::from_slice(&text).map_err(|e| {
        Error::wrap(
            crate::error::ErrorKind::Data,
            format!("metadata file {location} is not valid Iceberg table metadata"),
            e,
        )
    })
}

/// The bytes of the metadata file at `location`, unzipped when it is gzipped; a missing file the
/// catalog points at is a data error.
async fn read_metadata_bytes(storage: &ObjectStorage, location: &str) -> Result<bytes::Bytes> {
    let bytes = storage.read(location).await.map_err(|e| {
        if e.kind() == crate::error::ErrorKind::NotFound {
            Error::new(
                crate::error::ErrorKind::Data,
                format!("the catalog points at metadata file {location}, which is missing"),
            )
        } else {
            e
        }
    })?;
    Ok(
        if location.ends_with(".gz.metadata.json") || bytes.starts_with(&[0x1f, 0x8b]) {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)?;
            bytes::Bytes::from(text)
        } else {
            bytes
        },
    )
}
