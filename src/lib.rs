//! # floe
//!
//! An Iceberg-native lakehouse storage layer. floe keeps Apache Iceberg v2 tables in a SQL catalog
//! (SQLite or Postgres, in the Iceberg JDBC catalog schema) and an object store (local disk or S3),
//! and commits every write as exactly one Iceberg snapshot through one compare-and-swap commit path.
//!
//! ```no_run
//! # async fn demo() -> floe::Result<()> {
//! use floe::{Floe, Settings, TableName, Namespace, TableDefinition, WriteOptions, ScanOptions};
//! let floe = Floe::connect(Settings::from_env()?).await?;
//! floe.ensure_namespace(&Namespace::parse("demo")?).await?;
//! let name = TableName::parse("demo.events")?;
//! # let schema = arrow::datatypes::Schema::empty();
//! floe.create_table(&name, TableDefinition { schema, ..Default::default() }).await?;
//! # let batches: Vec<arrow::array::RecordBatch> = vec![];
//! let batches = futures::stream::iter(batches.into_iter().map(Ok));
//! floe.append(&name, batches, &WriteOptions::default()).await?;
//! let rows = floe.scan(&name, &ScanOptions::default()).await?.collect().await?;
//! # Ok(()) }
//! ```
//!
//! Modules: [`catalog`] (the catalog seam and the SQL catalog), [`storage`] (object storage),
//! [`table`] (tables, scans, writers and the transaction layer), [`rest`] (the Iceberg REST catalog
//! `floe serve` runs), [`config`] (settings), [`secrets`], [`error`].

pub mod bench;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod diff;
pub mod error;
mod faults;
pub mod generate;
pub mod ingest;
mod lakehouse;
pub mod maintenance;
pub mod pipeline;
pub mod query;
pub mod resources;
pub mod rest;
pub mod secrets;
pub mod storage;
pub mod table;
pub mod units;

pub use catalog::{Namespace, TableName};
pub use config::{PartialSettings, Settings};
pub use error::{Error, ErrorKind, Missing, Result};
pub use lakehouse::{Floe, InitReport, MergeBuilder, UpdateSchema, UpdateSortOrder, UpdateSpec};
pub use table::deletes::RowLevelMode;
pub use table::scan::ScanStream;
pub use table::schema_update::{NewColumn, Position, SchemaUpdate};
pub use table::sort_order::{SortColumn, SortOrderUpdate};
pub use table::spec_update::{parse_partition_term, SpecUpdate};
pub use table::{
    Assignments, At, CommitResult, Dedupe, DeleteOptions, ExpectedHead, Isolation, Lineage, MergeClause,
    MergeOptions, MergeSpec, OverwriteOptions, PartitionField, RowCounts, RowFilter, RowLevelOptions,
    ScanOptions, SnapshotChanges, Table, TableDefinition, Transaction, UpsertOptions, WhenMatched,
    WhenNotMatched, WriteOptions,
};

/// The README's library example, run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
