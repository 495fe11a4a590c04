//! # floe
//!
//! An Iceberg-native lakehouse storage layer. floe keeps Apache Iceberg v2 tables in a SQL catalog
//! (SQLite or Postgres, in the Iceberg JDBC catalog schema) and an object store (local disk or S3),
//! and commits every write as exactly one Iceberg snapshot through one compare-and-swap commit path.
//!
//! ```no_run
//! # async fn demo() -> floe::Result<()> {
//! use floe::{Floe, Settings, TableName, Namespace, TableDefinition, CommitOptions, ScanOptions};
//! let floe = Floe::connect(Settings::from_env()?).await?;
//! floe.ensure_namespace(&Namespace::parse("demo")?).await?;
//! let name = TableName::parse("demo.events")?;
//! # let schema = arrow::datatypes::Schema::empty();
//! floe.create_table(&name, TableDefinition { schema, ..Default::default() }).await?;
//! # let batches: Vec<arrow::array::RecordBatch> = vec![];
//! let batches = futures::stream::iter(batches.into_iter().map(Ok));
//! floe.append(&name, batches, &CommitOptions::default()).await?;
//! let rows = floe.scan(&name, &ScanOptions::default()).await?.collect().await?;
//! # Ok(()) }
//! ```
//!
//! Modules: [`catalog`] (the SQL catalog), [`storage`] (object storage), [`table`] (tables and the
//! commit path), [`config`] (settings), [`error`].

pub mod bench;
pub mod catalog;
pub mod config;
pub mod diff;
pub mod error;
pub mod generate;
mod lakehouse;
pub mod pipeline;
pub mod query;
pub mod resources;
pub mod storage;
pub mod table;

pub use catalog::{Namespace, TableName};
pub use config::{PartialSettings, Settings};
pub use error::{Error, ErrorKind, Result};
pub use lakehouse::{Floe, InitReport, PartitionField, TableDefinition};
pub use table::scan::ScanStream;
pub use table::{At, CommitOptions, CommitResult, Lineage, RowFilter, ScanOptions, SnapshotChanges, Table};
