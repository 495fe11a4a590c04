//! The catalog seam: where namespaces and tables are registered, and where a commit becomes current
//! by a compare-and-swap of each table's metadata location. [`Catalog`] is the trait the rest of
//! floe talks to; [`SqlCatalog`] (Iceberg's JDBC schema on SQLite or Postgres) is the implementation
//! floe ships, and a caller may wrap it (the tests wrap it to inject faults) or supply another.

pub mod names;
pub(crate) mod records;
pub mod sql;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;

use crate::error::{Error, Result};
pub use names::{Namespace, TableName};
pub use sql::{Backend, CatalogDatabase, SqlCatalog};

/// One table's part of a commit: move its metadata location from `expected` to `new`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataSwap {
    /// The table.
    pub table: TableName,
    /// The metadata location the change was computed on.
    pub expected: String,
    /// The metadata location to make current.
    pub new: String,
}

/// What a compare-and-swap of one or more tables' metadata locations came to.
#[derive(Debug)]
pub enum SwapOutcome {
    /// Every new location is current.
    Swapped,
    /// Another commit moved this table first; no table changed.
    Conflict {
        /// The table whose location was no longer the expected one.
        table: TableName,
    },
    /// The swap certainly did not happen (no connection, or a statement failed before the
    /// transaction's `COMMIT`): no table changed.
    Failed(Error),
    /// The reply to `COMMIT` was lost: the swap may or may not have landed.
    Unknown(Error),
}

/// Where tables live and how their commits land. Every swap is all-or-nothing across the tables it
/// names: that is what makes floe's multi-table transactions atomic.
#[async_trait]
pub trait Catalog: Send + Sync + fmt::Debug {
    /// The catalog's name (the JDBC schema's `catalog_name` column).
    fn name(&self) -> &str;

    /// What kind of catalog this is, for reports (`SQLite`, `Postgres`).
    fn kind(&self) -> &str;

    /// Where the catalog is, with any secret masked.
    fn describe(&self) -> String;

    /// All namespaces: those with properties and those that only hold tables.
    async fn list_namespaces(&self) -> Result<Vec<Namespace>>;

    /// Whether a namespace exists.
    async fn namespace_exists(&self, ns: &Namespace) -> Result<bool>;

    /// Create a namespace; one that exists is `AlreadyExists`.
    async fn create_namespace(&self, ns: &Namespace, properties: &BTreeMap<String, String>) -> Result<()>;

    /// A namespace's properties.
    async fn namespace_properties(&self, ns: &Namespace) -> Result<BTreeMap<String, String>>;

    /// Drop an empty namespace.
    async fn drop_namespace(&self, ns: &Namespace) -> Result<()>;

    /// Remove the properties `removals` and set `updates` of an existing namespace, in one
    /// transaction.
    async fn update_namespace_properties(
        &self,
        ns: &Namespace,
        removals: &[String],
        updates: &BTreeMap<String, String>,
    ) -> Result<()>;

    /// Tables of a namespace, by name.
    async fn list_tables(&self, ns: &Namespace) -> Result<Vec<TableName>>;

    /// A table's current metadata location, or `None` when there is no such table.
    async fn metadata_location(&self, table: &TableName) -> Result<Option<String>>;

    /// Register a new table at `metadata_location`; a table of that name is `AlreadyExists`.
    async fn register_table(&self, table: &TableName, metadata_location: &str) -> Result<()>;

    /// Compare-and-swap the metadata locations of every table in `swaps`, all or none.
    async fn swap(&self, swaps: &[MetadataSwap]) -> SwapOutcome;

    /// Remove a table from the catalog (its files stay).
    async fn drop_table(&self, table: &TableName) -> Result<()>;

    /// Give a table another name (its files stay where they are); a missing table is `NotFound`, a
    /// taken name `AlreadyExists`.
    async fn rename_table(&self, from: &TableName, to: &TableName) -> Result<()>;
}
