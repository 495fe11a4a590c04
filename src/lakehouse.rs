//! [`Floe`]: the handle a job holds. It ties the catalog, the object storage and the settings
//! together and offers every table operation as a thin façade over the transaction layer; the CLI is
//! a thin layer over it.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use futures::Stream;
use serde::Serialize;

use crate::catalog::{Catalog, CatalogDatabase, Namespace, SqlCatalog, TableName};
use crate::config::Settings;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::{ObjectStorage, Warehouse};
use crate::table::create::{self, TableDefinition};
use crate::table::scan::{self, ScanStream};
use crate::table::schema_update::{NewColumn, Position, SchemaUpdate};
use crate::table::sort_order::{SortColumn, SortOrderUpdate};
use crate::table::spec_update::SpecUpdate;
use crate::table::{
    At, CommitResult, DeleteOptions, MergeClause, MergeOptions, MergeSpec, OverwriteOptions, RowFilter,
    ScanOptions, SnapshotChanges, Table, TableStore, Transaction, UpsertOptions, WriteOptions,
};

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
    tables: TableStore,
    database: CatalogDatabase,
    warehouse: Warehouse,
}

impl Floe {
    /// Connect to the catalog (creating its schema, and that of floe's records beside it, when
    /// missing) and the warehouse.
    pub async fn connect(settings: Settings) -> Result<Floe> {
        Self::connect_with(settings, |catalog| catalog).await
    }

    /// Connect, then hand the SQL catalog to `wrap`, and use the catalog it returns for every table
    /// operation: for a catalog that adds behaviour around floe's own (auditing, fault injection in
    /// tests). The run ledger stays in the SQL catalog's database.
    pub async fn connect_with(
        settings: Settings,
        wrap: impl FnOnce(Arc<dyn Catalog>) -> Arc<dyn Catalog>,
    ) -> Result<Floe> {
        let warehouse = Warehouse::parse(&settings.warehouse)?;
        let sql = SqlCatalog::connect(&settings.catalog_url, &settings.catalog_name).await?;
        let database = sql.database().clone();
        // floe's own records beside the catalog, each store with its own migrations.
        let records = [
            crate::pipeline::ledger::MIGRATIONS,
            crate::ingest::record::MIGRATIONS,
        ]
        .concat();
        database.migrate(&records, None).await?;
        let catalog = wrap(Arc::new(sql));
        let storage = ObjectStorage::new(settings.s3.clone());
        let tables = TableStore::new(catalog, storage, settings.retry.clone());
        Ok(Floe {
            inner: Arc::new(Inner {
                settings,
                tables,
                database,
                warehouse,
            }),
        })
    }

    /// Prepare a fresh setup: the catalog schema, the warehouse directory or bucket (created when
    /// missing, after checking the credentials), and a write-read-delete probe of the warehouse.
    pub async fn init(settings: Settings) -> Result<(Floe, InitReport)> {
        let warehouse = Warehouse::parse(&settings.warehouse)?;
        let bucket_created = warehouse.prepare(&settings.s3).await?;
        let floe = Floe::connect(settings).await?;
        warehouse.probe(floe.storage()).await?;
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
    pub fn catalog(&self) -> &dyn Catalog {
        self.inner.tables.catalog().as_ref()
    }

    /// The table store every operation goes through (the REST catalog commits through it).
    pub(crate) fn table_store(&self) -> &TableStore {
        &self.inner.tables
    }

    /// The catalog database, where floe keeps its own records (the run ledger).
    pub fn database(&self) -> &CatalogDatabase {
        &self.inner.database
    }

    /// The object storage.
    pub fn storage(&self) -> &ObjectStorage {
        self.inner.tables.storage()
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

    /// Drop an empty namespace.
    pub async fn drop_namespace(&self, ns: &Namespace) -> Result<()> {
        self.catalog().drop_namespace(ns).await
    }

    /// Tables of a namespace.
    pub async fn tables(&self, ns: &Namespace) -> Result<Vec<TableName>> {
        self.catalog().list_tables(ns).await
    }

    /// Where a new table of this name is created: a fresh directory under the warehouse (see
    /// [`crate::table::create`]).
    pub fn new_table_location(&self, name: &TableName) -> String {
        create::new_table_location(self.warehouse(), name)
    }

    /// Create an Iceberg v2 table.
    pub async fn create_table(&self, name: &TableName, definition: TableDefinition) -> Result<Table> {
        let location = self.new_table_location(name);
        create::create_table(&self.inner.tables, name, location, definition).await
    }

    /// Register `name` at an existing metadata file under the warehouse (a table another tool
    /// wrote, or one dropped from the catalog without a purge). Nothing is copied or rewritten.
    pub async fn register_table(&self, name: &TableName, metadata_location: &str) -> Result<Table> {
        create::register_existing(
            &self.inner.tables,
            name,
            metadata_location,
            &self.warehouse().uri(),
        )
        .await
    }

    /// Load a table's current metadata.
    pub async fn load_table(&self, name: &TableName) -> Result<Table> {
        self.inner.tables.load(name).await
    }

    /// Drop a table from the catalog; with `purge`, delete every file its metadata references too
    /// (data, delete, manifest, manifest list, metadata and statistics files), and nothing else: a
    /// file under the table's location that the metadata does not name, or another table's files
    /// below it, are left alone.
    pub async fn drop_table(&self, name: &TableName, purge: bool) -> Result<()> {
        use crate::maintenance::purge::{drop_table, Purge};
        let purge = if purge { Purge::Referenced } else { Purge::Nothing };
        drop_table(&self.inner.tables, name, purge).await
    }

    /// A transaction over one or more tables: its changes land together or not at all.
    pub fn transaction(&self) -> Transaction {
        Transaction::new(self.inner.tables.clone())
    }

    /// Append batches to `name` as one snapshot. An append of no rows commits nothing (its
    /// `snapshot_id` is `None`).
    pub async fn append<S>(
        &self,
        name: &TableName,
        batches: S,
        options: &WriteOptions,
    ) -> Result<CommitResult>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        let mut tx = self.transaction();
        tx.append(name, batches, options).await?;
        tx.commit_one().await
    }

    /// Commit existing Parquet files (local paths, `file://` or `s3://` URIs on the table's store) as one
    /// append snapshot, with statistics from their footers. The files must carry the table's field ids
    /// (or be mapped by name through `schema.name-mapping.default`); a file that does not fit, is
    /// missing, or is already in the table is an error and nothing is committed. The files are never
    /// moved or deleted.
    pub async fn add_files(
        &self,
        name: &TableName,
        files: &[String],
        options: &WriteOptions,
    ) -> Result<CommitResult> {
        let mut tx = self.transaction();
        tx.add_files(name, files, options).await?;
        tx.commit_one().await
    }

    /// Replace the rows matching `filter` (every row when `None`) with `batches`, as one snapshot.
    pub async fn overwrite<S>(
        &self,
        name: &TableName,
        filter: Option<RowFilter>,
        batches: S,
        options: &OverwriteOptions,
    ) -> Result<CommitResult>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        let mut tx = self.transaction();
        tx.overwrite(name, filter, batches, options).await?;
        tx.commit_one().await
    }

    /// Delete the rows matching `filter` (copy-on-write), as one snapshot; a filter that matches no
    /// row commits nothing (`snapshot_id` is `None`).
    pub async fn delete(
        &self,
        name: &TableName,
        filter: RowFilter,
        options: &DeleteOptions,
    ) -> Result<CommitResult> {
        let mut tx = self.transaction();
        tx.delete(name, filter, options).await?;
        tx.commit_one().await
    }

    /// Add an optional column at the end (schema evolution; no snapshot): short for
    /// `update_schema(name).add_column(column, type).commit()`.
    pub async fn add_column(
        &self,
        name: &TableName,
        column: &str,
        data_type: &arrow::datatypes::DataType,
    ) -> Result<Table> {
        let field_type = crate::table::schema_update::iceberg_type_of(data_type)?;
        self.update_schema(name)
            .add_column(column, field_type)
            .commit()
            .await
    }

    /// Change the schema of `name`: a builder of one [`SchemaUpdate`] (add, rename, drop, widen,
    /// make optional, document, move columns, nested ones by dotted path; set identifier fields;
    /// union with an input's schema) committed as one new schema, no snapshot. Checked on the schema
    /// read now; re-applied on the current one at commit, so concurrent changes to other fields are
    /// kept, and one that touched the same field or name makes this a `Conflict`.
    pub fn update_schema(&self, name: &TableName) -> UpdateSchema<'_> {
        UpdateSchema {
            floe: self,
            table: name.clone(),
            update: SchemaUpdate::new(),
        }
    }

    /// Replace the default sort order of `name`: a builder of one [`SortOrderUpdate`]
    /// (`.asc("user_id")`, `.desc("event_time")`, `.column(..)` for a transform or a null order, or
    /// `.parse("event_time desc nulls last, user_id")`; no column makes the table unsorted)
    /// committed as the table's new default sort order, no snapshot. Columns are checked on the
    /// schema read now and bound again by name at commit. Every later write sorts its rows by it.
    pub fn update_sort_order(&self, name: &TableName) -> UpdateSortOrder<'_> {
        UpdateSortOrder {
            floe: self,
            table: name.clone(),
            update: SortOrderUpdate::new(),
        }
    }

    /// Change the table's default partition spec: `floe.update_spec(&t).add_term("bucket(16, user_id)",
    /// None)?.remove_field("event_day").commit()` (see [`SpecUpdate`] for the rules). Committed as one
    /// new default spec, no snapshot; new writes use it, files already written keep theirs. A
    /// partition spec change that landed since the table was read makes this a `Conflict`.
    pub fn update_spec(&self, name: &TableName) -> UpdateSpec<'_> {
        UpdateSpec {
            floe: self,
            table: name.clone(),
            update: SpecUpdate::new(),
        }
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
        let mut tx = self.transaction();
        let table = tx.table(name).await?;
        let snapshot = table.snapshot_at(at)?.ok_or_else(|| {
            Error::invalid(format!(
                "table {name} has no snapshot at {at} to point {ref_name:?} at"
            ))
        })?;
        tx.create_ref(name, ref_name, snapshot.snapshot_id(), tag).await?;
        Ok(tx.commit_one().await?.table)
    }

    /// Drop a branch or tag.
    pub async fn drop_ref(&self, name: &TableName, ref_name: &str) -> Result<Table> {
        let mut tx = self.transaction();
        tx.drop_ref(name, ref_name).await?;
        Ok(tx.commit_one().await?.table)
    }

    /// Fast-forward `main` to the head of `branch`.
    pub async fn publish(&self, name: &TableName, branch: &str) -> Result<Table> {
        let mut tx = self.transaction();
        tx.publish(name, branch).await?;
        Ok(tx.commit_one().await?.table)
    }

    /// Point `branch` at a snapshot (creating the branch), or remove it with `None`, as a
    /// compare-and-swap of the ref: if another writer moved it since it was read here, the result is
    /// a `Conflict`. A branch already there commits nothing.
    pub async fn reset_branch(
        &self,
        name: &TableName,
        branch: &str,
        snapshot_id: Option<i64>,
    ) -> Result<Table> {
        let mut tx = self.transaction();
        let table = tx.table(name).await?;
        if table.find_ref(branch).map(|r| r.snapshot_id) == snapshot_id {
            return Ok(table);
        }
        tx.reset_branch(name, branch, snapshot_id).await?;
        Ok(tx.commit_one().await?.table)
    }

    /// Move `main` back to an earlier snapshot (an ancestor of its head).
    pub async fn rollback(&self, name: &TableName, snapshot_id: i64) -> Result<Table> {
        let mut tx = self.transaction();
        tx.rollback(name, snapshot_id).await?;
        Ok(tx.commit_one().await?.table)
    }

    /// Expire old snapshots of `name` and delete the files only they referenced.
    pub async fn expire_snapshots(
        &self,
        name: &TableName,
        options: &crate::maintenance::ExpireOptions,
    ) -> Result<crate::maintenance::ExpireReport> {
        crate::maintenance::expire_snapshots(&self.inner.tables, name, options).await
    }

    /// Delete the files under `name`'s location that its metadata does not reference.
    pub async fn remove_orphan_files(
        &self,
        name: &TableName,
        options: &crate::maintenance::OrphanOptions,
    ) -> Result<crate::maintenance::OrphanReport> {
        crate::maintenance::remove_orphan_files(&self.inner.tables, name, options).await
    }

    /// Rewrite the small data files of `name` into files of the target size (one `replace`
    /// snapshot).
    pub async fn compact(
        &self,
        name: &TableName,
        options: &crate::maintenance::CompactOptions,
    ) -> Result<crate::maintenance::CompactReport> {
        crate::maintenance::compact(&self.inner.tables, name, options).await
    }

    /// Compact, expire snapshots and remove orphans, with the table's properties as defaults.
    pub async fn maintain(
        &self,
        name: &TableName,
        options: &crate::maintenance::MaintainOptions,
    ) -> Result<crate::maintenance::MaintainReport> {
        crate::maintenance::maintain(&self.inner.tables, name, options).await
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

    /// Upsert `batches` into `name` by key, as one snapshot (see [`UpsertOptions`]); the result's
    /// `rows` says how many rows were inserted, updated, deleted and left as they were.
    pub async fn upsert<S>(
        &self,
        name: &TableName,
        batches: S,
        options: &UpsertOptions,
    ) -> Result<CommitResult>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        let mut tx = self.transaction();
        let planned = tx.upsert(name, batches, options).await?;
        let mut result = tx.commit_one().await?;
        if result.snapshot_id.is_none() {
            result.rows = planned;
        }
        Ok(result)
    }

    /// A MERGE of `source` into `name`: give it `on`, its `when_*` clauses, then [`MergeBuilder::commit`].
    pub fn merge(&self, name: &TableName, source: Vec<RecordBatch>) -> MergeBuilder<'_> {
        MergeBuilder {
            floe: self,
            table: name.clone(),
            source,
            spec: MergeSpec::on(""),
            options: MergeOptions::default(),
        }
    }
}

/// A schema change being described: `floe.update_schema(&t).rename_column("a", "b")
/// .widen_column("n", Type::Primitive(PrimitiveType::Long)).commit()` (see [`SchemaUpdate`] for each
/// operation and its rules).
#[derive(Debug)]
pub struct UpdateSchema<'a> {
    floe: &'a Floe,
    table: TableName,
    update: SchemaUpdate,
}

/// Builder methods of [`UpdateSchema`], [`UpdateSpec`] and [`UpdateSortOrder`] that each add one
/// operation to the update they describe (a method of the same name on it).
macro_rules! update_operations {
    ($($(#[$doc:meta])* $op:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            $(#[$doc])*
            pub fn $op(mut self, $($arg: $ty),*) -> Self {
                self.update = self.update.$op($($arg),*);
                self
            }
        )*
    };
}

impl UpdateSchema<'_> {
    update_operations! {
        /// See [`SchemaUpdate::add_column`].
        add_column(path: &str, field_type: iceberg::spec::Type);
        /// See [`SchemaUpdate::add_column_with`].
        add_column_with(path: &str, field_type: iceberg::spec::Type, column: NewColumn);
        /// See [`SchemaUpdate::rename_column`].
        rename_column(path: &str, new_name: &str);
        /// See [`SchemaUpdate::drop_column`].
        drop_column(path: &str);
        /// See [`SchemaUpdate::make_optional`].
        make_optional(path: &str);
        /// See [`SchemaUpdate::update_doc`].
        update_doc(path: &str, doc: Option<&str>);
        /// See [`SchemaUpdate::widen_column`].
        widen_column(path: &str, to: iceberg::spec::Type);
        /// See [`SchemaUpdate::move_column`].
        move_column(path: &str, position: Position);
        /// See [`SchemaUpdate::move_first`].
        move_first(path: &str);
        /// See [`SchemaUpdate::move_before`].
        move_before(path: &str, sibling: &str);
        /// See [`SchemaUpdate::move_after`].
        move_after(path: &str, sibling: &str);
        /// See [`SchemaUpdate::set_identifier_fields`].
        set_identifier_fields(paths: &[&str]);
        /// See [`SchemaUpdate::union_by_name`].
        union_by_name(schema: arrow::datatypes::SchemaRef);
    }

    /// Add the operations of `update` (after those described so far).
    pub fn with(mut self, update: SchemaUpdate) -> Self {
        self.update.ops.extend(update.ops);
        self
    }

    /// The operations described so far.
    pub fn into_update(self) -> SchemaUpdate {
        self.update
    }

    /// Commit the change as the table's new current schema: the table after it.
    pub async fn commit(self) -> Result<Table> {
        let mut tx = self.floe.transaction();
        tx.update_schema(&self.table, self.update).await?;
        Ok(tx.commit_one().await?.table)
    }
}

/// A sort order being described: `floe.update_sort_order(&t).desc("event_time").asc("user_id")
/// .commit()` (see [`SortOrderUpdate`]); committed with no column, the table becomes unsorted.
#[derive(Debug)]
pub struct UpdateSortOrder<'a> {
    floe: &'a Floe,
    table: TableName,
    update: SortOrderUpdate,
}

impl UpdateSortOrder<'_> {
    update_operations! {
        /// Sort by `path` ascending, nulls first (after the columns described so far).
        asc(path: &str);
        /// Sort by `path` descending, nulls last (after the columns described so far).
        desc(path: &str);
        /// Sort by a column with its transform, direction and null order.
        column(column: SortColumn);
    }

    /// Add the columns of `update` (after those described so far).
    pub fn with(mut self, update: SortOrderUpdate) -> Self {
        self.update.columns.extend(update.columns);
        self
    }

    /// Commit the order as the table's default sort order: the table after it.
    pub async fn commit(self) -> Result<Table> {
        let mut tx = self.floe.transaction();
        tx.update_sort_order(&self.table, self.update).await?;
        Ok(tx.commit_one().await?.table)
    }
}

/// A partition spec change being described: `floe.update_spec(&t)...commit()`.
#[derive(Debug)]
pub struct UpdateSpec<'a> {
    floe: &'a Floe,
    table: TableName,
    update: SpecUpdate,
}

impl UpdateSpec<'_> {
    update_operations! {
        /// See [`SpecUpdate::add_field`].
        add_field(column: &str, transform: iceberg::spec::Transform);
        /// See [`SpecUpdate::add_field_named`].
        add_field_named(column: &str, transform: iceberg::spec::Transform, name: &str);
        /// See [`SpecUpdate::remove_field`].
        remove_field(name: &str);
        /// See [`SpecUpdate::rename_field`].
        rename_field(name: &str, new_name: &str);
    }

    /// See [`SpecUpdate::add_term`].
    pub fn add_term(mut self, term: &str, name: Option<&str>) -> Result<Self> {
        self.update = self.update.add_term(term, name)?;
        Ok(self)
    }

    /// Add the operations of `update` (after those described so far).
    pub fn with(mut self, update: SpecUpdate) -> Self {
        self.update.ops.extend(update.ops);
        self
    }

    /// Commit the change as the table's new default partition spec: the table after it.
    pub async fn commit(self) -> Result<Table> {
        let mut tx = self.floe.transaction();
        tx.update_spec(&self.table, self.update).await?;
        Ok(tx.commit_one().await?.table)
    }
}

/// A MERGE being described: `floe.merge(&t, source).on("t.id = s.id").when_matched_update_all(None)
/// .when_not_matched_insert_all(None).commit()`.
#[derive(Debug)]
pub struct MergeBuilder<'a> {
    floe: &'a Floe,
    table: TableName,
    source: Vec<RecordBatch>,
    spec: MergeSpec,
    options: MergeOptions,
}

impl MergeBuilder<'_> {
    /// The join condition (SQL over `t.` and `s.` columns, with at least one equality `t.x = s.y`).
    pub fn on(mut self, on: impl Into<String>) -> Self {
        self.spec.on = on.into();
        self
    }

    /// Add a clause.
    pub fn when(mut self, clause: MergeClause) -> Self {
        self.spec.clauses.push(clause);
        self
    }

    /// `WHEN MATCHED [AND condition] THEN UPDATE *`.
    pub fn when_matched_update_all(mut self, condition: Option<&str>) -> Self {
        self.spec = self.spec.when_matched_update_all(condition);
        self
    }

    /// `WHEN MATCHED [AND condition] THEN DELETE`.
    pub fn when_matched_delete(mut self, condition: Option<&str>) -> Self {
        self.spec = self.spec.when_matched_delete(condition);
        self
    }

    /// `WHEN NOT MATCHED [AND condition] THEN INSERT *`.
    pub fn when_not_matched_insert_all(mut self, condition: Option<&str>) -> Self {
        self.spec = self.spec.when_not_matched_insert_all(condition);
        self
    }

    /// `WHEN NOT MATCHED BY SOURCE [AND condition] THEN DELETE`.
    pub fn when_not_matched_by_source_delete(mut self, condition: Option<&str>) -> Self {
        self.spec = self.spec.when_not_matched_by_source_delete(condition);
        self
    }

    /// Branch, isolation, row-level mode.
    pub fn options(mut self, options: MergeOptions) -> Self {
        self.options = options;
        self
    }

    /// Run the merge as one snapshot; the result's `rows` counts what it did.
    pub async fn commit(self) -> Result<CommitResult> {
        let mut tx = self.floe.transaction();
        let source = futures::stream::iter(self.source.into_iter().map(Ok));
        let planned = tx.merge(&self.table, source, &self.spec, &self.options).await?;
        let mut result = tx.commit_one().await?;
        if result.snapshot_id.is_none() {
            result.rows = planned;
        }
        Ok(result)
    }
}
