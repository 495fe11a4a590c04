//! Object storage: local disk and S3-compatible stores through `object_store`.
//!
//! One [`ObjectStorage`] serves both Iceberg's file I/O (it implements iceberg's `Storage` trait, so
//! every manifest, metadata file and data file goes through it) and floe's own files. Locations are
//! full URIs: `file:///abs/path` or `s3://bucket/key`.

pub mod glob;
mod s3;

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::io::{FileIO, FileIOBuilder, FileMetadata, FileRead, FileWrite, InputFile, OutputFile};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::config::{S3Settings, Secret};
use crate::error::{Error, ErrorKind, Result};

pub use s3::ensure_bucket;

/// Where a warehouse lives, normalized to a URI without a trailing slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warehouse {
    /// A local directory (absolute path).
    Local(PathBuf),
    /// An S3 bucket and key prefix (may be empty).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix without leading or trailing slash.
        prefix: String,
    },
}

impl Warehouse {
    /// Parse `./dir`, `/abs/dir`, `file:///abs/dir` or `s3://bucket/prefix`. Relative local paths are
    /// made absolute against the working directory.
    pub fn parse(text: &str) -> Result<Self> {
        if let Some(rest) = text.strip_prefix("s3://").or_else(|| text.strip_prefix("s3a://")) {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("warehouse {text:?} has no bucket"),
                ));
            }
            return Ok(Warehouse::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        let path = if let Some(rest) = text.strip_prefix("file://") {
            PathBuf::from(rest)
        } else if text.contains("://") {
            return Err(Error::new(
                ErrorKind::Config,
                format!("warehouse {text:?}: only local paths, file:// and s3:// are supported"),
            ));
        } else {
            PathBuf::from(text)
        };
        let abs = if path.is_absolute() {
            path
        } else {
            std::env::current_dir()?.join(path)
        };
        Ok(Warehouse::Local(normalize(&abs)))
    }

    /// The warehouse root as a URI (`file:///...` or `s3://bucket/prefix`).
    pub fn uri(&self) -> String {
        match self {
            Warehouse::Local(p) => format!("file://{}", p.display()),
            Warehouse::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            Warehouse::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }

    /// Make the warehouse exist: the local directory, or the S3 bucket (after checking the
    /// credentials). Returns whether a bucket was created.
    pub(crate) async fn prepare(&self, s3: &S3Settings) -> Result<bool> {
        match self {
            Warehouse::Local(p) => {
                std::fs::create_dir_all(p).map_err(|e| {
                    Error::wrap(
                        ErrorKind::Storage,
                        format!("cannot create warehouse {}", p.display()),
                        e,
                    )
                })?;
                Ok(false)
            }
            Warehouse::S3 { bucket, .. } => ensure_bucket(s3, bucket).await,
        }
    }

    /// Write, read back and delete a probe file at the warehouse root: an error now rather than at
    /// the first commit when the warehouse cannot be written.
    pub(crate) async fn probe(&self, storage: &ObjectStorage) -> Result<()> {
        let probe = format!("{}/.floe-init-probe-{}", self.uri(), uuid::Uuid::new_v4());
        storage.write(&probe, Bytes::from_static(b"floe")).await?;
        storage.read(&probe).await?;
        storage.delete(&probe).await
    }
}

/// `p` without `.` and `..` components (`..` removes the component before it).
fn normalize(p: &std::path::Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// S3 connection settings without secrets: what may be serialized with a storage handle.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct S3Endpoint {
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    path_style: bool,
}

/// Object storage for every location floe and Iceberg touch. Cheap to clone.
#[derive(Clone)]
pub struct ObjectStorage {
    inner: Arc<Inner>,
}

struct Inner {
    s3: S3Settings,
    local: Arc<dyn ObjectStore>,
    buckets: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    /// Bytes every read through this handle (and its Iceberg `FileIO`) has returned.
    bytes_read: Arc<AtomicU64>,
}

impl fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // S3Settings' Debug masks the secret key.
        f.debug_struct("ObjectStorage")
            .field("s3", &self.inner.s3)
            .finish()
    }
}

impl ObjectStorage {
    /// Storage for local paths and for S3 buckets reached with `s3`.
    pub fn new(s3: S3Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                s3,
                local: Arc::new(LocalFileSystem::new()),
                buckets: Mutex::new(HashMap::new()),
                bytes_read: Arc::new(AtomicU64::new(0)),
            }),
        }
    }

    /// Bytes read so far through this handle and every clone of it: whole reads, ranges and the
    /// ranges Iceberg's readers fetch (manifests, footers, column chunks). A query's share of a
    /// table's bytes is the difference of two readings.
    pub fn bytes_read(&self) -> u64 {
        self.inner.bytes_read.load(Ordering::Relaxed)
    }

    fn count_read(&self, bytes: &Bytes) {
        self.inner
            .bytes_read
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }

    /// The S3 settings this storage uses.
    pub fn s3_settings(&self) -> &S3Settings {
        &self.inner.s3
    }

    /// The store and key for a location URI.
    pub fn resolve(&self, location: &str) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
        if let Some(rest) = location
            .strip_prefix("s3://")
            .or_else(|| location.strip_prefix("s3a://"))
        {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            let store = self.bucket_store(bucket)?;
            let path = ObjectPath::parse(key).map_err(|e| {
                Error::wrap(
                    ErrorKind::InvalidInput,
                    format!("invalid object key in {location:?}"),
                    e,
                )
            })?;
            return Ok((store, path));
        }
        let fs_path = location.strip_prefix("file://").unwrap_or(location);
        if !fs_path.starts_with('/') {
            return Err(Error::invalid(format!("location {location:?} is not absolute")));
        }
        let path = ObjectPath::from_absolute_path(fs_path).map_err(|e| {
            Error::wrap(
                ErrorKind::InvalidInput,
                format!("invalid local path {location:?}"),
                e,
            )
        })?;
        Ok((self.inner.local.clone(), path))
    }

    fn bucket_store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        let mut buckets = self.inner.buckets.lock().expect("bucket cache poisoned");
        if let Some(store) = buckets.get(bucket) {
            return Ok(store.clone());
        }
        let store: Arc<dyn ObjectStore> = Arc::new(s3::build_store(&self.inner.s3, bucket)?);
        buckets.insert(bucket.to_string(), store.clone());
        Ok(store)
    }

    /// Read a whole object.
    pub async fn read(&self, location: &str) -> Result<Bytes> {
        let (store, path) = self.resolve(location)?;
        let got = store
            .get(&path)
            .await
            .map_err(|e| storage_error(e, location, "read"))?;
        let bytes = got
            .bytes()
            .await
            .map_err(|e| storage_error(e, location, "read"))?;
        self.count_read(&bytes);
        Ok(bytes)
    }

    /// Read bytes `range` of an object.
    pub async fn read_range(&self, location: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        let (store, path) = self.resolve(location)?;
        let bytes = store
            .get_range(&path, range)
            .await
            .map_err(|e| storage_error(e, location, "read"))?;
        self.count_read(&bytes);
        Ok(bytes)
    }

    /// Write a whole object (replacing it).
    pub async fn write(&self, location: &str, bytes: Bytes) -> Result<()> {
        self.write_parts(location, vec![bytes]).await
    }

    /// Write an object given in pieces, one after another (the pieces are not copied together).
    pub async fn write_parts(&self, location: &str, parts: Vec<Bytes>) -> Result<()> {
        let (store, path) = self.resolve(location)?;
        store
            .put(&path, parts.into_iter().collect())
            .await
            .map_err(|e| storage_error(e, location, "write"))?;
        Ok(())
    }

    /// Whether an object exists.
    pub async fn exists(&self, location: &str) -> Result<bool> {
        let (store, path) = self.resolve(location)?;
        match store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(storage_error(e, location, "stat")),
        }
    }

    /// An object's size, ETag and modification time.
    pub async fn head(&self, location: &str) -> Result<object_store::ObjectMeta> {
        let (store, path) = self.resolve(location)?;
        store
            .head(&path)
            .await
            .map_err(|e| storage_error(e, location, "stat"))
    }

    /// Size of an object in bytes.
    pub async fn size(&self, location: &str) -> Result<u64> {
        let (store, path) = self.resolve(location)?;
        let meta = store
            .head(&path)
            .await
            .map_err(|e| storage_error(e, location, "stat"))?;
        Ok(meta.size)
    }

    /// Delete an object; a missing object is not an error. A store that reports the key's
    /// deletion failed for a passing reason is asked again a few times.
    pub async fn delete(&self, location: &str) -> Result<()> {
        let (store, path) = self.resolve(location)?;
        let mut attempt = 0;
        loop {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => return Ok(()),
                Err(e) if attempt < DELETE_RETRIES && passing_delete_failure(&e) => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => return Err(storage_error(e, location, "delete")),
            }
        }
    }

    /// Every object location under a prefix URI.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .list_with_meta(prefix)
            .await?
            .into_iter()
            .map(|o| o.location)
            .collect())
    }

    /// Every object under a prefix URI, with its size and modification time.
    pub async fn list_with_meta(&self, prefix: &str) -> Result<Vec<StoredObject>> {
        let (store, path) = self.resolve(prefix)?;
        let base = location_base(prefix);
        let metas: Vec<_> = store
            .list(Some(&path))
            .try_collect()
            .await
            .map_err(|e| storage_error(e, prefix, "list"))?;
        Ok(metas
            .into_iter()
            .map(|m| StoredObject {
                location: format!("{base}{}", m.location),
                size: m.size,
                last_modified: m.last_modified,
            })
            .collect())
    }

    /// Delete everything under a prefix URI (listed again and retried a few times when the store
    /// reports a passing failure).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let (store, path) = self.resolve(prefix)?;
        let mut attempt = 0;
        loop {
            let locations = store.list(Some(&path)).map_ok(|m| m.location).boxed();
            match store.delete_stream(locations).try_collect::<Vec<_>>().await {
                Ok(_) => break,
                Err(e) if attempt < DELETE_RETRIES && passing_delete_failure(&e) => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => return Err(storage_error(e, prefix, "delete")),
            }
        }
        if prefix.starts_with('/') || prefix.starts_with("file://") {
            // Local directories stay behind after their files are gone.
            let dir = prefix.strip_prefix("file://").unwrap_or(prefix);
            let _ = tokio::fs::remove_dir_all(dir).await;
        }
        Ok(())
    }

    /// An Iceberg `FileIO` whose every read and write goes through this storage.
    pub fn file_io(&self) -> FileIO {
        FileIOBuilder::new(self.storage_factory()).build()
    }

    /// This storage as an iceberg-rust `StorageFactory`, for iceberg-rust catalogs and readers that
    /// should share floe's storage.
    pub fn storage_factory(&self) -> Arc<dyn iceberg::io::StorageFactory> {
        Arc::new(StorageFactory {
            storage: Some(self.clone()),
        })
    }
}

/// An object as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Full URI.
    pub location: String,
    /// Bytes.
    pub size: u64,
    /// When it was last written.
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// The scheme-and-bucket part that precedes an object key in a location.
fn location_base(location: &str) -> String {
    if let Some(rest) = location.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or(rest);
        format!("s3://{bucket}/")
    } else if let Some(rest) = location.strip_prefix("s3a://") {
        let bucket = rest.split('/').next().unwrap_or(rest);
        format!("s3a://{bucket}/")
    } else {
        "file:///".to_string()
    }
}

/// An object store error while `action`ing `location`: `NotFound` for a missing object, else `Storage`.
/// Bytes read from storage per request: large enough that a local file is not read 8 KiB at a time
/// (object_store's local stream), small enough to keep memory flat; one request runs ahead.
pub const READ_CHUNK: u64 = 4 << 20;

/// The bytes `range` of an object (all of it when `None`) as a stream of chunks read ahead one at a
/// time; an object of unknown `size` (0) is streamed as the store serves it.
pub async fn read_chunks(
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    range: Option<std::ops::Range<u64>>,
    size: u64,
) -> Result<BoxStream<'static, object_store::Result<Bytes>>> {
    let range = match range {
        Some(r) => r,
        None if size > 0 => 0..size,
        None => {
            let got = store
                .get(&path)
                .await
                .map_err(|e| storage_error(e, path.as_ref(), "read"))?;
            return Ok(got.into_stream());
        }
    };
    let starts = (range.start..range.end).step_by(READ_CHUNK as usize);
    let end = range.end;
    Ok(futures::stream::iter(starts)
        .map(move |start| {
            let (store, path) = (store.clone(), path.clone());
            async move { store.get_range(&path, start..(start + READ_CHUNK).min(end)).await }
        })
        .buffered(2)
        .boxed())
}

pub(crate) fn storage_error(e: object_store::Error, location: &str, action: &str) -> Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => ErrorKind::NotFound,
        _ => ErrorKind::Storage,
    };
    Error::wrap(kind, format!("cannot {action} {location}"), e)
}

fn to_iceberg(e: Error) -> iceberg::Error {
    let kind = match e.kind() {
        ErrorKind::NotFound => iceberg::ErrorKind::DataInvalid,
        _ => iceberg::ErrorKind::Unexpected,
    };
    iceberg::Error::new(kind, e.to_string())
}

/// Serialized form of the storage handle: connection settings only, never secrets (they are read
/// again from the environment when a handle is rebuilt in another process).
#[derive(Serialize, Deserialize)]
struct StorageWire {
    s3: S3Endpoint,
}

impl Serialize for ObjectStorage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let s3 = &self.inner.s3;
        StorageWire {
            s3: S3Endpoint {
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone(),
                access_key_id: s3.access_key_id.clone(),
                path_style: s3.path_style,
            },
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ObjectStorage {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let wire = StorageWire::deserialize(deserializer)?;
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").ok().map(Secret::new);
        let token = std::env::var("AWS_SESSION_TOKEN").ok().map(Secret::new);
        Ok(ObjectStorage::new(S3Settings {
            endpoint: wire.s3.endpoint,
            region: wire.s3.region,
            access_key_id: wire.s3.access_key_id,
            secret_access_key: secret,
            session_token: token,
            path_style: wire.s3.path_style,
        }))
    }
}

#[async_trait]
#[typetag::serde(name = "floe-object-storage")]
impl iceberg::io::Storage for ObjectStorage {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        ObjectStorage::exists(self, path).await.map_err(to_iceberg)
    }

    async fn metadata(&self, path: &str) -> iceberg::Result<FileMetadata> {
        Ok(FileMetadata {
            size: self.size(path).await.map_err(to_iceberg)?,
        })
    }

    async fn read(&self, path: &str) -> iceberg::Result<Bytes> {
        ObjectStorage::read(self, path).await.map_err(to_iceberg)
    }

    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn FileRead>> {
        let (store, key) = self.resolve(path).map_err(to_iceberg)?;
        Ok(Box::new(ObjectRead {
            store,
            key,
            location: path.to_string(),
            bytes_read: self.inner.bytes_read.clone(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> iceberg::Result<()> {
        ObjectStorage::write(self, path, bs).await.map_err(to_iceberg)
    }

    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn FileWrite>> {
        let (store, key) = self.resolve(path).map_err(to_iceberg)?;
        Ok(Box::new(ObjectWrite {
            writer: Some(BufWriter::with_capacity(store, key, 8 * 1024 * 1024)),
            location: path.to_string(),
        }))
    }

    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        ObjectStorage::delete(self, path).await.map_err(to_iceberg)
    }

    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        ObjectStorage::delete_prefix(self, path).await.map_err(to_iceberg)
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> iceberg::Result<()> {
        while let Some(p) = paths.next().await {
            ObjectStorage::delete(self, &p).await.map_err(to_iceberg)?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> iceberg::Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> iceberg::Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

struct ObjectRead {
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    location: String,
    bytes_read: Arc<AtomicU64>,
}

#[async_trait]
impl FileRead for ObjectRead {
    async fn read(&self, range: Range<u64>) -> iceberg::Result<Bytes> {
        let bytes = self
            .store
            .get_range(&self.key, range)
            .await
            .map_err(|e| to_iceberg(storage_error(e, &self.location, "read")))?;
        self.bytes_read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }
}

struct ObjectWrite {
    writer: Option<BufWriter>,
    location: String,
}

#[async_trait]
impl FileWrite for ObjectWrite {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| iceberg::Error::new(iceberg::ErrorKind::Unexpected, "write after close"))?;
        w.put(bs)
            .await
            .map_err(|e| to_iceberg(storage_error(e, &self.location, "write")))
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        let mut w = self
            .writer
            .take()
            .ok_or_else(|| iceberg::Error::new(iceberg::ErrorKind::Unexpected, "file already closed"))?;
        w.shutdown().await.map_err(|e| {
            to_iceberg(Error::wrap(
                ErrorKind::Storage,
                format!("cannot write {}", self.location),
                e,
            ))
        })
    }
}

/// Hands Iceberg's `FileIO` the one [`ObjectStorage`] floe uses.
#[derive(Debug, Serialize, Deserialize)]
struct StorageFactory {
    storage: Option<ObjectStorage>,
}

#[typetag::serde(name = "floe-object-storage-factory")]
impl iceberg::io::StorageFactory for StorageFactory {
    fn build(&self, _config: &iceberg::io::StorageConfig) -> iceberg::Result<Arc<dyn iceberg::io::Storage>> {
        let storage = self
            .storage
            .clone()
            .unwrap_or_else(|| ObjectStorage::new(S3Settings::default()));
        Ok(Arc::new(storage))
    }
}

/// How many times a delete that failed for a passing reason is asked again.
const DELETE_RETRIES: u32 = 4;

/// A bulk delete's per-key failure that a later request can succeed at: S3's `DeleteObjects`
/// answers 200 with an error per key, which the client's retries never see (Garage under load
/// answers `ServiceUnavailable` when its metadata database is busy).
fn passing_delete_failure(e: &object_store::Error) -> bool {
    let text = e.to_string();
    [
        "ServiceUnavailable",
        "SlowDown",
        "InternalError",
        "Internal error",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// Delete files that no commit references (a failed or abandoned write's, an expired snapshot's);
/// failures are logged, not returned: orphan removal deletes what is left.
pub(crate) async fn delete_quietly(storage: &ObjectStorage, paths: Vec<String>) {
    for p in paths {
        if let Err(e) = storage.delete(&p).await {
            tracing::warn!(path = %p, error = %e, "could not delete an uncommitted file");
        }
    }
}

/// After the files of a purged table were deleted: remove the directories under its local
/// `location` that held them and are empty now (object stores have no directories). A directory
/// that still holds anything, such as another table's files, stays.
pub(crate) fn remove_empty_local_dirs(location: &str, deleted: &[String]) {
    let Some(root) = location
        .strip_prefix("file://")
        .or_else(|| location.starts_with('/').then_some(location))
    else {
        return;
    };
    let root = std::path::Path::new(root);
    let mut dirs: std::collections::BTreeSet<PathBuf> = std::collections::BTreeSet::new();
    for f in deleted {
        let path = std::path::Path::new(f.strip_prefix("file://").unwrap_or(f));
        let mut dir = path.parent();
        while let Some(d) = dir {
            if !d.starts_with(root) {
                break;
            }
            dirs.insert(d.to_path_buf());
            dir = d.parent();
        }
    }
    // Deepest first; `remove_dir` only removes an empty directory.
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}
