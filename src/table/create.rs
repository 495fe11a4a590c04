//! Creating a table: what a new table looks like ([`TableDefinition`], its [`PartitionField`]s), where
//! it goes (a fresh directory under the warehouse), and its first metadata file registered in the
//! catalog. The Iceberg Java equivalent is `Catalog.createTable` with a `PartitionSpec`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::datatypes::Schema as ArrowSchema;
use iceberg::spec::{
    FormatVersion, Schema, TableMetadata, TableMetadataBuilder, Transform, UnboundPartitionSpec,
};
use iceberg::{MetadataLocation, TableCreation};

use super::{Table, TableStore};
use crate::catalog::names::path_segment;
use crate::catalog::TableName;
use crate::error::{Error, ErrorKind, Missing, Result};
use crate::storage::{delete_quietly, Warehouse};

/// A partition field: a source column and a transform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionField {
    /// Source column name.
    pub column: String,
    /// Iceberg transform: identity, year, month, day, hour, bucket\[N\], truncate\[W\].
    pub transform: Transform,
}

impl PartitionField {
    /// Parse `col`, `day(col)`, `bucket(16, col)` or `truncate(4, col)` (the terms of
    /// `floe partition add`, see [`crate::table::spec_update::parse_partition_term`]).
    pub fn parse(text: &str) -> Result<Self> {
        let (transform, column) = crate::table::spec_update::parse_partition_term(text)?;
        Ok(Self { column, transform })
    }

    /// The partition field's name in the spec: the column for identity, else `COL_bucket_N`,
    /// `COL_trunc_W` or `COL_day` (Iceberg Java's names).
    fn spec_name(&self) -> String {
        crate::table::spec_update::default_name(&self.column, self.transform)
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

/// Properties floe sets on the tables it creates (a caller's own properties win).
pub(crate) const CREATE_PROPERTIES: &[(&str, &str)] = &[
    // Old metadata files go once the metadata log (100 entries by default) no longer lists them.
    ("write.metadata.delete-after-commit.enabled", "true"),
];

/// Where a new table of this name is created: `WAREHOUSE/NAMESPACE_DIR/TABLE_DIR-SUFFIX`, each
/// directory one escaped path segment of the name (never a separator, `.` or `..`), the suffix
/// random so a table created again after a drop never meets its predecessor's files.
pub(crate) fn new_table_location(warehouse: &Warehouse, name: &TableName) -> String {
    format!(
        "{}/{}/{}-{}",
        warehouse.uri(),
        path_segment(&name.namespace().to_string()),
        path_segment(name.name()),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Create an Iceberg v2 table at `location`: its first metadata file written, then registered in the
/// catalog (the metadata file deleted again when the catalog refuses it).
pub(crate) async fn create_table(
    store: &TableStore,
    name: &TableName,
    location: String,
    definition: TableDefinition,
) -> Result<Table> {
    check_free(store, name).await?;
    let metadata = first_metadata(name, location, definition)?;
    register_new(store, name, metadata).await
}

/// Refuse a new table whose namespace is missing or whose name is taken.
pub(crate) async fn check_free(store: &TableStore, name: &TableName) -> Result<()> {
    let catalog = store.catalog();
    if !catalog.namespace_exists(name.namespace()).await? {
        return Err(Error::missing_object(
            Missing::Namespace,
            format!("namespace {} does not exist (create it first)", name.namespace()),
        ));
    }
    if catalog.metadata_location(name).await?.is_some() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("table {name} already exists"),
        ));
    }
    Ok(())
}

/// Register `name` in the catalog at an existing metadata file (a table written elsewhere, or one
/// dropped from the catalog without a purge): the file must parse as Iceberg table metadata, and the
/// table's location must lie under `warehouse_root` (floe reads, commits and purges only there).
pub(crate) async fn register_existing(
    store: &TableStore,
    name: &TableName,
    metadata_location: &str,
    warehouse_root: &str,
) -> Result<Table> {
    check_free(store, name).await?;
    let root = format!("{}/", warehouse_root.trim_end_matches('/'));
    if !metadata_location.starts_with(&root) || metadata_location.contains("/../") {
        return Err(Error::invalid(format!(
            "metadata file {metadata_location} is not under the warehouse {root}"
        )));
    }
    let metadata = super::store::read_metadata(store.storage(), metadata_location)
        .await
        .map_err(|e| Error::invalid(format!("cannot register {name}: {e}")))?;
    let location = metadata.location().trim_end_matches('/');
    if !format!("{location}/").starts_with(&root) || location.contains("/../") {
        return Err(Error::invalid(format!(
            "cannot register {name}: its location {location} is not under the warehouse {root}"
        )));
    }
    store.catalog().register_table(name, metadata_location).await?;
    Ok(store.handle(name, metadata_location.to_string(), Arc::new(metadata)))
}

/// Write a new table's first metadata file and register it in the catalog (the file deleted again
/// when the catalog refuses it, as when another writer took the name meanwhile).
pub(crate) async fn register_new(
    store: &TableStore,
    name: &TableName,
    metadata: TableMetadata,
) -> Result<Table> {
    let catalog = store.catalog();
    let metadata_location = MetadataLocation::new_with_metadata(metadata.location(), &metadata);
    metadata
        .write_to(&store.storage().file_io(), &metadata_location)
        .await?;
    let metadata_location = metadata_location.to_string();
    if let Err(e) = catalog.register_table(name, &metadata_location).await {
        delete_quietly(store.storage(), vec![metadata_location]).await;
        return Err(e);
    }
    Ok(store.handle(name, metadata_location, Arc::new(metadata)))
}

/// The metadata of a new table: its schema with field ids assigned, its partition spec, floe's
/// properties under the caller's, format v2.
fn first_metadata(name: &TableName, location: String, definition: TableDefinition) -> Result<TableMetadata> {
    let schema = iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(&definition.schema)
        .map_err(|e| Error::invalid(format!("unsupported schema for {name}: {}", e.message())))?;
    let spec = partition_spec(name, &schema, &definition.partition)?;
    let mut properties: HashMap<String, String> = CREATE_PROPERTIES
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    properties.extend(definition.properties);
    let creation = TableCreation::builder()
        .name(name.name().to_string())
        .location(location)
        .schema(schema)
        .partition_spec(spec)
        .properties(properties)
        .format_version(FormatVersion::V2)
        .build();
    Ok(TableMetadataBuilder::from_table_creation(creation)?
        .build()?
        .metadata)
}

/// The partition spec of `fields` over `schema`; a field on a column the schema lacks is an error.
fn partition_spec(
    name: &TableName,
    schema: &Schema,
    fields: &[PartitionField],
) -> Result<UnboundPartitionSpec> {
    let mut spec = UnboundPartitionSpec::builder();
    for (i, p) in fields.iter().enumerate() {
        let field = schema.field_by_name(&p.column).ok_or_else(|| {
            Error::invalid(format!(
                "partition column {:?} is not in the schema of {name}",
                p.column
            ))
        })?;
        spec = spec
            .add_partition_field(field.id, p.spec_name(), p.transform)
            .map_err(|e| Error::invalid(format!("partition field {i} of {name}: {}", e.message())))?;
    }
    Ok(spec.build())
}
