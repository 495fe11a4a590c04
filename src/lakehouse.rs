//! [`Floe`]: the handle a job holds. It ties the catalog, the object storage and the settings
//! together and offers every table operation; the CLI is a thin layer over it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema as ArrowSchema;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use iceberg::spec::{
    FormatVersion, TableMetadata, TableMetadataBuilder, TableMetadataRef, Transform, UnboundPartitionSpec,
};
use iceberg::{MetadataLocation, TableCreation};
use serde::Serialize;

use crate::catalog::names::path_segment;
use crate::catalog::{Namespace, SqlCatalog, TableName};
use crate::config::Settings;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::{ObjectStorage, Warehouse};
use crate::table::cache::FileCache;
use crate::table::commit::{commit, delete_quietly, Change};
use crate::table::scan::{self, ScanStream};
use crate::table::writer::ParallelWriter;
use crate::table::{At, CommitOptions, CommitResult, RowFilter, ScanOptions, SnapshotChanges, Table};

/// A partition field: a source column and a transform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionField {
    /// Source column name.
    pub column: String,
    /// Iceberg transform: identity, year, month, day, hour, bucket\[N\], truncate\[W\].
    pub transform: Transform,
}

impl PartitionField {
    /// Parse `col`, `day(col)`, `bucket(16, col)` or `truncate(4, col)`.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let Some((func, rest)) = text.split_once('(') else {
            return Ok(Self {
                column: text.to_string(),
                transform: Transform::Identity,
            });
        };
        let args = rest
            .strip_suffix(')')
            .ok_or_else(|| Error::invalid(format!("invalid partition field {text:?}")))?;
        let args: Vec<&str> = args.split(',').map(str::trim).collect();
        let num = |s: &str| {
            s.parse::<u32>().map_err(|_| {
                Error::invalid(format!("invalid partition field {text:?}: {s:?} is not a number"))
            })
        };
        let (transform, column) = match (func.trim().to_ascii_lowercase().as_str(), args.as_slice()) {
            ("identity", [c]) => (Transform::Identity, c),
            ("year" | "years", [c]) => (Transform::Year, c),
            ("month" | "months", [c]) => (Transform::Month, c),
            ("day" | "days", [c]) => (Transform::Day, c),
            ("hour" | "hours", [c]) => (Transform::Hour, c),
            ("bucket", [n, c]) => (Transform::Bucket(num(n)?), c),
            ("truncate", [n, c]) => (Transform::Truncate(num(n)?), c),
            _ => return Err(Error::invalid(format!("invalid partition field {text:?}"))),
        };
        Ok(Self {
            column: column.to_string(),
            transform,
        })
    }
}

/// What a new table looks like.
#[derive(Clone, Debug)]
pub struct TableDefinition {
    /// Columns, as an Arrow schema (nullability is kept; field ids are assigned).
    pub schema: ArrowSchema,
    /// Partition fields, in order.
    pub partition: Vec<PartitionField>,
    /// Table properties.
    pub properties: BTreeMap<String, String>,
}

impl Default for TableDefinition {
    fn default() -> Self {
        Self {
            schema: ArrowSchema::empty(),
            partition: Vec::new(),
            properties: BTreeMap::new(),
        }
    }
}

/// What `init` found and did.
#[derive(Clone, Debug, Serialize)]
pub struct InitReport {
    /// The catalog, password masked.
    pub catalog: String,
    /// The warehouse URI.
    pub warehouse: String,
    /// Whether an S3 bucket was created.
    pub bucket_created: bool,
}

/// The entry point of the library: a catalog, a warehouse and the settings.
#[derive(Clone, Debug)]
pub struct Floe {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    catalog: SqlCatalog,
    storage: ObjectStorage,
    warehouse: Warehouse,
    cache: Arc<FileCache>,
}

impl Floe {
    /// Connect to the catalog (creating its schema when missing) and the warehouse.
    pub async fn connect(settings: Settings) -> Result<Floe> {
        let warehouse = Warehouse::parse(&settings.warehouse)?;
        let catalog = SqlCatalog::connect(&settings.catalog_url, &settings.catalog_name).await?;
        let storage = ObjectStorage::new(settings.s3.clone());
        let cache = Arc::new(FileCache::default());
        Ok(Floe {
            inner: Arc::new(Inner {
                settings,
                catalog,
                storage,
                warehouse,
                cache,
            }),
        })
    }

    /// Prepare a fresh setup: the catalog schema, the warehouse directory or bucket (created when
    /// missing, after checking the credentials), and a write-read-delete probe of the warehouse.
    pub async fn init(settings: Settings) -> Result<(Floe, InitReport)> {
        let warehouse = Warehouse::parse(&settings.warehouse)?;
        let mut bucket_created = false;
        match &warehouse {
            Warehouse::Local(p) => std::fs::create_dir_all(p).map_err(|e| {
                Error::wrap(
                    ErrorKind::Storage,
                    format!("cannot create warehouse {}", p.display()),
                    e,
                )
            })?,
            Warehouse::S3 { bucket, .. } => {
                bucket_created = crate::storage::ensure_bucket(&settings.s3, bucket).await?;
            }
        }
        let floe = Floe::connect(settings).await?;
        let probe = format!(
            "{}/.floe-init-probe-{}",
            floe.warehouse().uri(),
            uuid::Uuid::new_v4()
        );
        floe.storage()
            .write(&probe, bytes::Bytes::from_static(b"floe"))
            .await?;
        floe.storage().read(&probe).await?;
        floe.storage().delete(&probe).await?;
        let report = InitReport {
            catalog: floe.settings().catalog_url_redacted(),
            warehouse: floe.warehouse().uri(),
            bucket_created,
        };
        Ok((floe, report))
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The catalog.
    pub fn catalog(&self) -> &SqlCatalog {
        &self.inner.catalog
    }

    /// The object storage.
    pub fn storage(&self) -> &ObjectStorage {
        &self.inner.storage
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &Warehouse {
        &self.inner.warehouse
    }

    /// All namespaces.
    pub async fn namespaces(&self) -> Result<Vec<Namespace>> {
        self.catalog().list_namespaces().await
    }

    /// Create a namespace.
    pub async fn create_namespace(&self, ns: &Namespace) -> Result<()> {
        self.catalog().create_namespace(ns, &BTreeMap::new()).await
    }

    /// Create a namespace unless it exists.
    pub async fn ensure_namespace(&self, ns: &Namespace) -> Result<()> {
        match self.create_namespace(ns).await {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }

    /// Tables of a namespace.
    pub async fn tables(&self, ns: &Namespace) -> Result<Vec<TableName>> {
        self.catalog().list_tables(ns).await
    }

    /// Create an Iceberg v2 table.
    pub async fn create_table(&self, name: &TableName, definition: TableDefinition) -> Result<Table> {
        if !self.catalog().namespace_exists(name.namespace()).await? {
            return Err(Error::not_found(format!(
                "namespace {} does not exist (create it first)",
                name.namespace()
            )));
        }
        if self.catalog().metadata_location(name).await?.is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("table {name} already exists"),
            ));
        }
        let schema = iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(&definition.schema)
            .map_err(|e| Error::invalid(format!("unsupported schema for {name}: {}", e.message())))?;
        let mut spec = UnboundPartitionSpec::builder();
        for (i, p) in definition.partition.iter().enumerate() {
            let field = schema.field_by_name(&p.column).ok_or_else(|| {
                Error::invalid(format!(
                    "partition column {:?} is not in the schema of {name}",
                    p.column
                ))
            })?;
            let field_name = match p.transform {
                Transform::Identity => p.column.clone(),
                Transform::Bucket(n) => format!("{}_bucket_{n}", p.column),
                Transform::Truncate(w) => format!("{}_trunc_{w}", p.column),
                t => format!("{}_{}", p.column, t.to_string().to_ascii_lowercase()),
            };
            spec = spec
                .add_partition_field(field.id, field_name, p.transform)
                .map_err(|e| Error::invalid(format!("partition field {i} of {name}: {}", e.message())))?;
        }
        let location = format!(
            "{}/{}/{}-{}",
            self.warehouse().uri(),
            path_segment(&name.namespace().to_string()),
            path_segment(name.name()),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let creation = TableCreation::builder()
            .name(name.name().to_string())
            .location(location.clone())
            .schema(schema)
            .partition_spec(spec.build())
            .properties(definition.properties.into_iter().collect::<HashMap<_, _>>())
            .format_version(FormatVersion::V2)
            .build();
        let metadata: TableMetadata = TableMetadataBuilder::from_table_creation(creation)?
            .build()?
            .metadata;
        let metadata_location = MetadataLocation::new_with_metadata(&location, &metadata);
        metadata
            .write_to(&self.storage().file_io(), &metadata_location)
            .await?;
        let metadata_location = metadata_location.to_string();
        if let Err(e) = self.catalog().insert_table(name, &metadata_location).await {
            delete_quietly(self.storage(), vec![metadata_location]).await;
            return Err(e);
        }
        Ok(self.table_handle(name, metadata_location, Arc::new(metadata)))
    }

    /// Load a table's current metadata.
    pub async fn load_table(&self, name: &TableName) -> Result<Table> {
        let location = self
            .catalog()
            .metadata_location(name)
            .await?
            .ok_or_else(|| Error::not_found(format!("table {name} does not exist")))?;
        if let Some(metadata) = self.inner.cache.metadata(&location) {
            return Ok(self.table_handle(name, location, metadata));
        }
        let bytes = self
            .storage()
            .read(&location)
            .await
            .map_err(|e| e.context(format!("load {name}")))?;
        let metadata: TableMetadata =
            if location.ends_with(".gz.metadata.json") || bytes.starts_with(&[0x1f, 0x8b]) {
                let mut text = Vec::new();
                std::io::Read::read_to_end(&mut flate2_decoder(&bytes), &mut text)?;
                serde_json::from_slice(&text)?
            } else {
                serde_json::from_slice(&bytes)?
            };
        Ok(self.table_handle(name, location, Arc::new(metadata)))
    }

    /// A table at `location`, sharing this handle's storage and file cache; the metadata is
    /// remembered, so loading the same location again is free.
    pub(crate) fn table_handle(
        &self,
        name: &TableName,
        location: String,
        metadata: TableMetadataRef,
    ) -> Table {
        self.inner.cache.put_metadata(&location, metadata.clone());
        Table::new(
            name.clone(),
            location,
            metadata,
            self.storage().clone(),
            self.inner.cache.clone(),
        )
    }

    /// Drop a table from the catalog; with `purge`, delete all of its files too.
    pub async fn drop_table(&self, name: &TableName, purge: bool) -> Result<()> {
        let files = if purge {
            // Everything the table references, wherever it lives (a `write.data.path` may point
            // outside the table's location), is listed before the table disappears.
            Some(self.load_table(name).await?.all_files().await?)
        } else {
            None
        };
        self.catalog().delete_table(name).await?;
        if let Some((location, files)) = files {
            for f in files {
                self.storage().delete(&f).await?;
            }
            self.storage().delete_prefix(&format!("{location}/")).await?;
        }
        Ok(())
    }

    /// Write a stream of batches into new data files of `name` (not committed): the files and the
    /// number of rows. Used by append and overwrite; on error the files written so far are deleted.
    pub(crate) async fn write_files(
        &self,
        table: &Table,
        mut batches: BoxStream<'_, Result<RecordBatch>>,
        options: &CommitOptions,
    ) -> Result<Vec<iceberg::spec::DataFile>> {
        let mut writer = ParallelWriter::new(table, options.target_file_size)?;
        let mut failure = None;
        while let Some(batch) = batches.next().await {
            match batch {
                Ok(batch) => {
                    if writer.write(batch).await.is_err() {
                        break; // an encoder failed: `close` reports why
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let (files, result) = writer.close().await;
        if let Err(e) = failure.map_or(result, Err) {
            // Nothing was committed: remove the files this write produced so far.
            delete_quietly(self.storage(), crate::table::commit::file_paths(&files)).await;
            return Err(e);
        }
        Ok(files)
    }

    /// Append batches to `name` as one snapshot.
    pub async fn append<S>(
        &self,
        name: &TableName,
        batches: S,
        options: &CommitOptions,
    ) -> Result<CommitResult>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        let table = self.load_table(name).await?;
        let files = self.write_files(&table, batches.boxed(), options).await?;
        commit(self, name, Change::Append { files }, options, Some(table)).await
    }

    /// Replace the rows matching `filter` (every row when `None`) with `batches`, as one snapshot.
    pub async fn overwrite<S>(
        &self,
        name: &TableName,
        filter: Option<RowFilter>,
        batches: S,
        options: &CommitOptions,
    ) -> Result<CommitResult>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        let table = self.load_table(name).await?;
        if let Some(f) = &filter {
            f.compile(&table.arrow_schema()?)?;
        }
        let files = self.write_files(&table, batches.boxed(), options).await?;
        commit(
            self,
            name,
            Change::Overwrite { filter, files },
            options,
            Some(table),
        )
        .await
    }

    /// Delete the rows matching `filter` (copy-on-write), as one snapshot.
    pub async fn delete(
        &self,
        name: &TableName,
        filter: RowFilter,
        options: &CommitOptions,
    ) -> Result<CommitResult> {
        let table = self.load_table(name).await?;
        filter.compile(&table.arrow_schema()?)?;
        commit(self, name, Change::Delete { filter }, options, Some(table)).await
    }

    /// Add an optional column (schema evolution; no snapshot).
    pub async fn add_column(
        &self,
        name: &TableName,
        column: &str,
        data_type: &arrow::datatypes::DataType,
    ) -> Result<Table> {
        crate::catalog::names::validate_name("column", column)?;
        let field_type = iceberg::arrow::arrow_type_to_type(data_type)
            .map_err(|e| Error::invalid(format!("unsupported column type {data_type}: {}", e.message())))?;
        let change = Change::AddColumn {
            name: column.to_string(),
            field_type,
            doc: None,
        };
        Ok(commit(self, name, change, &CommitOptions::default(), None)
            .await?
            .table)
    }

    /// Create a branch at a state of the table (the head of `main` by default).
    pub async fn create_branch(&self, name: &TableName, branch: &str, at: &At) -> Result<Table> {
        self.create_ref(name, branch, at, false).await
    }

    /// Create a tag at a state of the table.
    pub async fn create_tag(&self, name: &TableName, tag: &str, at: &At) -> Result<Table> {
        self.create_ref(name, tag, at, true).await
    }

    async fn create_ref(&self, name: &TableName, ref_name: &str, at: &At, tag: bool) -> Result<Table> {
        validate_ref_name(ref_name)?;
        let table = self.load_table(name).await?;
        let snapshot = table.snapshot_at(at)?.ok_or_else(|| {
            Error::invalid(format!(
                "table {name} has no snapshot at {at} to point {ref_name:?} at"
            ))
        })?;
        let change = Change::CreateRef {
            name: ref_name.to_string(),
            snapshot_id: snapshot.snapshot_id(),
            tag,
        };
        Ok(commit(self, name, change, &CommitOptions::default(), Some(table))
            .await?
            .table)
    }

    /// Drop a branch or tag.
    pub async fn drop_ref(&self, name: &TableName, ref_name: &str) -> Result<Table> {
        let change = Change::DropRef {
            name: ref_name.to_string(),
        };
        Ok(commit(self, name, change, &CommitOptions::default(), None)
            .await?
            .table)
    }

    /// Fast-forward `main` to the head of `branch`.
    pub async fn publish(&self, name: &TableName, branch: &str) -> Result<Table> {
        let change = Change::Publish {
            branch: branch.to_string(),
        };
        Ok(commit(self, name, change, &CommitOptions::default(), None)
            .await?
            .table)
    }

    /// Point `branch` at a snapshot (creating the branch), or remove it with `None`; a branch already
    /// there commits nothing.
    pub async fn reset_branch(
        &self,
        name: &TableName,
        branch: &str,
        snapshot_id: Option<i64>,
    ) -> Result<Table> {
        let table = self.load_table(name).await?;
        if table.find_ref(branch).map(|r| r.snapshot_id) == snapshot_id {
            return Ok(table);
        }
        let change = Change::ResetBranch {
            name: branch.to_string(),
            snapshot_id,
        };
        Ok(commit(self, name, change, &CommitOptions::default(), Some(table))
            .await?
            .table)
    }

    /// Move `main` back to an earlier snapshot (an ancestor of its head).
    pub async fn rollback(&self, name: &TableName, snapshot_id: i64) -> Result<Table> {
        let change = Change::Rollback { snapshot_id };
        Ok(commit(self, name, change, &CommitOptions::default(), None)
            .await?
            .table)
    }

    /// Read a table as a stream of Arrow batches.
    pub async fn scan(&self, name: &TableName, options: &ScanOptions) -> Result<ScanStream> {
        let table = self.load_table(name).await?;
        scan::scan(&table, options).await
    }

    /// Files and rows added and removed between two states of a table.
    pub async fn changes(&self, name: &TableName, from: &At, to: &At) -> Result<SnapshotChanges> {
        let table = self.load_table(name).await?;
        scan::changes(&table, from, to).await
    }
}

fn validate_ref_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == '@') || name.trim() != name {
        return Err(Error::invalid(format!("invalid branch or tag name {name:?}")));
    }
    if name.parse::<i64>().is_ok() {
        return Err(Error::invalid(format!(
            "invalid branch or tag name {name:?}: it would read as a snapshot id"
        )));
    }
    Ok(())
}

fn flate2_decoder(bytes: &[u8]) -> impl std::io::Read + '_ {
    flate2::read::GzDecoder::new(bytes)
}
