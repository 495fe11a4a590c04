//! The transaction layer: every change to every table goes through here. A [`Transaction`] collects
//! actions on one or more tables (one file per action: [`append`], [`overwrite`] (and [`delete`]),
//! [`rewrite`], [`refs`], [`schema`], [`sort_order`]); [`commit`] is the one retry loop that loads each table, checks
//! every action against the commits that landed since it read the table (`validate`), applies it on
//! the new base (`apply`, through the one snapshot [`producer`]), and swaps every table's metadata
//! location in one catalog transaction, all or none.
//!
//! Isolation follows Iceberg Java: an append never conflicts; a filtered overwrite or delete
//! (copy-on-write) conflicts under [`Isolation::Serializable`] with a concurrent commit that added a
//! data file that may hold matching rows, and under both isolations with one that removed or
//! rewrote a file it read; a whole-table overwrite conflicts with any concurrent append under
//! `Serializable`. A conflict commits nothing and deletes the transaction's files.

pub(crate) mod append;
pub(crate) mod attempt;
pub(crate) mod client_commit;
pub(crate) mod commit;
pub(crate) mod delete;
pub(crate) mod expire;
pub(crate) mod merge;
pub(crate) mod merge_into;
pub mod options;
pub(crate) mod overwrite;
pub(crate) mod producer;
pub(crate) mod refs;
pub(crate) mod rewrite;
pub(crate) mod row_delta;
pub(crate) mod row_plan;
pub(crate) mod schema;
pub(crate) mod sort_order;
pub(crate) mod spec;
pub(crate) mod unknown;
pub(crate) mod upsert;

use arrow::array::RecordBatch;
use futures::{Stream, StreamExt, TryStreamExt};
use iceberg::spec::DataFile;
use serde::Serialize;

use super::filter::RowFilter;
use super::store::TableStore;
use super::writer::write_batches;
use super::Table;
use crate::catalog::TableName;
use crate::error::{Error, Result};
use crate::table::schema_update::SchemaUpdate;
use crate::table::sort_order::SortOrderUpdate;
use crate::table::spec_update::SpecUpdate;
pub use merge_into::{Assignments, MergeClause, MergeSpec, RowCounts};
pub use options::{
    Dedupe, DeleteOptions, ExpectedHead, Isolation, Lineage, MergeOptions, OverwriteOptions, RowLevelOptions,
    UpsertOptions, WhenMatched, WhenNotMatched, WriteOptions, DEFAULT_TARGET_FILE_SIZE,
};

/// Where a commit's time went, summed over its attempts, in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CommitTimings {
    /// Loading the base metadata from the catalog and storage.
    pub load_s: f64,
    /// Checking the change against concurrent commits.
    pub validate_s: f64,
    /// Applying the change: manifests and the manifest list.
    pub stage_s: f64,
    /// Writing the metadata JSON.
    pub metadata_s: f64,
    /// The catalog's compare-and-swap.
    pub swap_s: f64,
    /// Waiting between attempts.
    pub backoff_s: f64,
}

/// What a commit did to one table.
#[derive(Clone, Debug)]
pub struct CommitResult {
    /// The table after the commit.
    pub table: Table,
    /// The last snapshot the commit created on this table, when it created one (a delete that
    /// matched nothing, an empty append and a ref change create none).
    pub snapshot_id: Option<i64>,
    /// How many attempts it took (1 when no one else was committing).
    pub attempts: u32,
    /// Where the time went (for the whole transaction).
    pub timings: CommitTimings,
    /// What the row-level changes (delete, overwrite, upsert, merge) did to this table's rows.
    pub rows: RowCounts,
}

impl CommitResult {
    /// The result of a change that committed nothing to `table` (it changes no row).
    pub fn nothing(table: Table, rows: RowCounts) -> Self {
        Self {
            table,
            snapshot_id: None,
            attempts: 0,
            timings: CommitTimings::default(),
            rows,
        }
    }
}

/// One change to one table, planned on the table as the transaction read it.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    /// Add data files.
    Append(append::Append),
    /// Change rows: delete them (by position delete files or by rewriting their files), replace
    /// them, add new ones.
    RowDelta(Box<row_delta::RowDelta>),
    /// Replace files by files holding the same rows (compaction).
    Rewrite(rewrite::Rewrite),
    /// Create, drop or move a branch or tag.
    Ref(refs::RefChange),
    /// Evolve the schema.
    Schema(schema::SchemaChange),
    /// Replace the default sort order.
    SortOrder(sort_order::SortOrderChange),
    /// Evolve the default partition spec.
    Spec(spec::SpecChange),
    /// Remove old snapshots and expired refs from the metadata.
    Expire(expire::Expire),
    /// Apply another engine's metadata updates under its requirements (a REST catalog commit).
    Client(client_commit::ClientCommit),
}

impl Action {
    /// Data files this action wrote: deleted when the transaction certainly did not land.
    pub(crate) fn new_files(&self) -> Vec<String> {
        match self {
            Action::Append(a) if a.owned => paths_of(&a.files),
            Action::RowDelta(r) => r.new_files(),
            Action::Rewrite(r) => paths_of(&r.added),
            Action::Append(_)
            | Action::Ref(_)
            | Action::Schema(_)
            | Action::SortOrder(_)
            | Action::Spec(_)
            | Action::Expire(_)
            | Action::Client(_) => Vec::new(),
        }
    }
}

/// A table's actions in a transaction, in order, and the table as the transaction first read it.
#[derive(Clone, Debug)]
pub(crate) struct TableChange {
    pub(crate) name: TableName,
    pub(crate) read: Table,
    pub(crate) actions: Vec<Action>,
}

/// Changes to one or more tables that land together or not at all: one catalog transaction swaps
/// every table's metadata. A reader that reads the catalog once sees all of them or none.
///
/// Data is written (and copy-on-write rewrites planned) as each action is added; nothing is visible
/// until [`Transaction::commit`]. A transaction dropped without committing deletes the files it
/// wrote, in the background; [`Transaction::abort`] does it in the foreground.
pub struct Transaction {
    store: TableStore,
    changes: Vec<TableChange>,
    done: bool,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field(
                "tables",
                &self
                    .changes
                    .iter()
                    .map(|c| c.name.to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Transaction {
    pub(crate) fn new(store: TableStore) -> Self {
        Self {
            store,
            changes: Vec::new(),
            done: false,
        }
    }

    /// The tables this transaction changes, in the order they were first named.
    pub fn tables(&self) -> Vec<TableName> {
        self.changes.iter().map(|c| c.name.clone()).collect()
    }

    /// The table as this transaction reads it: loaded on first use, then the same state for every
    /// later action (so all of them are planned on one snapshot and validated from it).
    pub async fn table(&mut self, name: &TableName) -> Result<Table> {
        if let Some(c) = self.changes.iter().find(|c| &c.name == name) {
            return Ok(c.read.clone());
        }
        let table = self.store.load(name).await?;
        self.changes.push(TableChange {
            name: name.clone(),
            read: table.clone(),
            actions: Vec::new(),
        });
        Ok(table)
    }

    /// Use `table` (just loaded by the caller) as this transaction's read state of it.
    pub(crate) fn read_as(&mut self, table: Table) {
        if !self.changes.iter().any(|c| c.name == *table.name()) {
            self.changes.push(TableChange {
                name: table.name().clone(),
                read: table,
                actions: Vec::new(),
            });
        }
    }

    pub(crate) fn push(&mut self, name: &TableName, action: Action) {
        let change = self
            .changes
            .iter_mut()
            .find(|c| &c.name == name)
            .expect("the table was read before an action on it was planned");
        change.actions.push(action);
    }

    /// Append batches to `table`: written into new data files now, committed with the transaction.
    pub async fn append<S>(&mut self, table: &TableName, batches: S, options: &WriteOptions) -> Result<()>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        let read = self.table(table).await?;
        let files = write_batches(&read, batches.boxed(), options.target_file_size).await?;
        let append = append::Append::new(files, options).written_with(&read);
        self.push(table, Action::Append(append));
        Ok(())
    }

    /// Replace the rows of `table` matching `filter` (every row when `None`) with `batches`.
    pub async fn overwrite<S>(
        &mut self,
        table: &TableName,
        filter: Option<RowFilter>,
        batches: S,
        options: &OverwriteOptions,
    ) -> Result<()>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        let read = self.table(table).await?;
        if let Some(f) = &filter {
            f.compile(&read.arrow_schema()?)?;
        }
        let files = write_batches(&read, batches.boxed(), options.write.target_file_size).await?;
        self.overwrite_files(table, filter, files, options).await
    }

    /// Replace the rows matching `filter` (every row when `None`) with rows already written to
    /// `files` of the table. On error the files are deleted.
    pub(crate) async fn overwrite_files(
        &mut self,
        table: &TableName,
        filter: Option<RowFilter>,
        files: Vec<DataFile>,
        options: &OverwriteOptions,
    ) -> Result<()> {
        let read = self.table(table).await?;
        let files_spec = read.metadata().default_partition_spec_id();
        match overwrite::plan(&read, filter, files.clone(), files_spec, options).await {
            Ok(change) => {
                self.push(table, Action::RowDelta(Box::new(change)));
                Ok(())
            }
            Err(e) => {
                delete_quietly(self.store.storage(), paths_of(&files)).await;
                Err(e)
            }
        }
    }

    /// Delete the rows of `table` matching `filter` (copy-on-write).
    pub async fn delete(
        &mut self,
        table: &TableName,
        filter: RowFilter,
        options: &DeleteOptions,
    ) -> Result<()> {
        let read = self.table(table).await?;
        let change = delete::plan(&read, filter, options).await?;
        self.push(table, Action::RowDelta(Box::new(change)));
        Ok(())
    }

    /// Upsert `batches` into `table` by key (see [`UpsertOptions`]): matched and written now,
    /// committed with the transaction. Returns what it does to the table's rows; a source with no
    /// rows changes nothing.
    pub async fn upsert<S>(
        &mut self,
        table: &TableName,
        batches: S,
        options: &UpsertOptions,
    ) -> Result<RowCounts>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        let read = self.table(table).await?;
        let batches: Vec<RecordBatch> = batches.try_collect().await?;
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(RowCounts::default());
        }
        let source = merge_into::one_batch(batches)?;
        let change = upsert::plan(&read, source, options).await?;
        let counts = change.counts;
        self.push(table, Action::RowDelta(Box::new(change)));
        Ok(counts)
    }

    /// Merge `source` into `table` by SQL MERGE semantics (see [`MergeSpec`]): matched and written
    /// now, committed with the transaction. Returns what it does to the table's rows.
    pub async fn merge<S>(
        &mut self,
        table: &TableName,
        source: S,
        spec: &MergeSpec,
        options: &MergeOptions,
    ) -> Result<RowCounts>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        let read = self.table(table).await?;
        let batches: Vec<RecordBatch> = source.try_collect().await?;
        if batches.is_empty() {
            return Err(Error::invalid(
                "the merge source gave no batch, so not even its schema is known (give an empty batch for an \
                 empty source)",
            ));
        }
        let source = merge_into::one_batch(batches)?;
        let change = merge_into::plan(
            &read,
            std::sync::Arc::new(source),
            spec,
            options,
            merge_into::MERGE,
        )
        .await?;
        let counts = change.counts;
        self.push(table, Action::RowDelta(Box::new(change)));
        Ok(counts)
    }

    /// Add already written data files of `table` as an append (the files become the
    /// transaction's: deleted if it certainly does not land).
    pub(crate) async fn append_files(
        &mut self,
        table: &TableName,
        files: Vec<DataFile>,
        options: &WriteOptions,
    ) -> Result<()> {
        let read = self.table(table).await?;
        let append = append::Append::new(files, options).written_with(&read);
        self.push(table, Action::Append(append));
        Ok(())
    }

    /// Add existing Parquet files to `table` as one append: their footers are read and checked against
    /// the table (see [`crate::table::add_files`]); a file already live on the branch is refused. The
    /// files stay the caller's: they are never deleted, whatever happens to the transaction.
    pub async fn add_files(
        &mut self,
        table: &TableName,
        uris: &[String],
        options: &WriteOptions,
    ) -> Result<()> {
        let read = self.table(table).await?;
        let files: Vec<crate::table::add_files::FileToAdd> = uris
            .iter()
            .map(|u| {
                Ok(crate::table::add_files::FileToAdd {
                    uri: crate::storage::Warehouse::parse(u)?.uri(),
                    partition: None,
                })
            })
            .collect::<Result<_>>()?;
        let head = producer::branch_head(read.metadata(), &options.branch).cloned();
        let live: std::collections::HashSet<String> = read
            .live_data_files(head.as_ref())
            .await?
            .iter()
            .map(|f| f.file_path().to_string())
            .collect();
        if let Some(f) = files.iter().find(|f| live.contains(&f.uri)) {
            return Err(Error::invalid(format!(
                "{} is already a data file of {table}",
                f.uri
            )));
        }
        // Files floe did not write are in no known order: order 0.
        let described = crate::table::add_files::describe_files(&read, files, 0).await?;
        self.push(
            table,
            Action::Append(append::Append::adopted(described, options).with_spec(&read)),
        );
        Ok(())
    }

    /// A snapshot that changes no data, on `options.branch`: a record in the history (its summary
    /// carries `options.properties` and the lineage).
    pub(crate) async fn mark(&mut self, table: &TableName, options: &WriteOptions) -> Result<()> {
        self.table(table).await?;
        self.push(table, Action::Append(append::Append::marker(options)));
        Ok(())
    }

    /// Replace `removed` data files by `added` ones holding the same rows (compaction), planned on
    /// the state this transaction read.
    pub(crate) async fn rewrite_files(
        &mut self,
        table: &TableName,
        removed: Vec<DataFile>,
        added: Vec<DataFile>,
        removed_deletes: Vec<DataFile>,
        options: &WriteOptions,
    ) -> Result<()> {
        let read = self.table(table).await?;
        let change = rewrite::Rewrite::plan(&read, removed, added, removed_deletes, options);
        self.push(table, Action::Rewrite(change));
        Ok(())
    }

    /// Create a branch (`tag` false) or a tag at a snapshot.
    pub async fn create_ref(
        &mut self,
        table: &TableName,
        name: &str,
        snapshot_id: i64,
        tag: bool,
    ) -> Result<()> {
        refs::validate_ref_name(name)?;
        self.table(table).await?;
        let change = refs::RefChange::Create {
            name: name.to_string(),
            snapshot_id,
            tag,
        };
        self.push(table, Action::Ref(change));
        Ok(())
    }

    /// Create a tag at the head of `main` as this transaction leaves it.
    pub async fn tag_main(&mut self, table: &TableName, name: &str) -> Result<()> {
        refs::validate_ref_name(name)?;
        self.table(table).await?;
        let change = refs::RefChange::TagMain {
            name: name.to_string(),
        };
        self.push(table, Action::Ref(change));
        Ok(())
    }

    /// Drop a branch or tag.
    pub async fn drop_ref(&mut self, table: &TableName, name: &str) -> Result<()> {
        self.table(table).await?;
        let change = refs::RefChange::Drop {
            name: name.to_string(),
        };
        self.push(table, Action::Ref(change));
        Ok(())
    }

    /// Fast-forward `main` of `table` to the head of `branch`.
    pub async fn publish(&mut self, table: &TableName, branch: &str) -> Result<()> {
        self.table(table).await?;
        let change = refs::RefChange::Publish {
            branch: branch.to_string(),
        };
        self.push(table, Action::Ref(change));
        Ok(())
    }

    /// Move `main` back to one of its ancestors.
    pub async fn rollback(&mut self, table: &TableName, snapshot_id: i64) -> Result<()> {
        self.table(table).await?;
        self.push(table, Action::Ref(refs::RefChange::Rollback { snapshot_id }));
        Ok(())
    }

    /// Point `branch` at a snapshot (creating it), or remove it (`None`), but only while it still
    /// points where it pointed when this transaction read the table (a compare-and-swap of the ref).
    pub async fn reset_branch(
        &mut self,
        table: &TableName,
        branch: &str,
        snapshot_id: Option<i64>,
    ) -> Result<()> {
        let read = self.table(table).await?;
        let expected = read.find_ref(branch).map(|r| r.snapshot_id);
        let change = refs::RefChange::Reset {
            name: branch.to_string(),
            snapshot_id,
            expected,
        };
        self.push(table, Action::Ref(change));
        Ok(())
    }

    /// Expire snapshots of `table` (see [`expire`]), judged on each attempt's base.
    pub(crate) async fn expire_snapshots(&mut self, table: &TableName, expire: expire::Expire) -> Result<()> {
        self.table(table).await?;
        self.push(table, Action::Expire(expire));
        Ok(())
    }

    /// Apply a client's metadata `updates` to `table` provided its `requirements` hold on the base
    /// each attempt builds on (the commit of a REST catalog client).
    pub(crate) async fn client_commit(
        &mut self,
        table: &TableName,
        requirements: Vec<iceberg::TableRequirement>,
        updates: Vec<iceberg::TableUpdate>,
    ) -> Result<()> {
        self.table(table).await?;
        let change = client_commit::ClientCommit {
            requirements,
            updates,
        };
        self.push(table, Action::Client(change));
        Ok(())
    }

    /// Change the schema of `table` (see [`SchemaUpdate`]): checked now on the schema this
    /// transaction read (a broken rule is an error and nothing is planned), re-applied on the current
    /// schema at commit; a concurrent schema change that touched the same fields makes the commit a
    /// `Conflict`.
    pub async fn update_schema(&mut self, table: &TableName, update: SchemaUpdate) -> Result<()> {
        let read = self.table(table).await?;
        let change = schema::SchemaChange::plan(&read, update).await?;
        self.push(table, Action::Schema(change));
        Ok(())
    }

    /// Replace the default sort order of `table` (see [`SortOrderUpdate`]; no column makes it
    /// unsorted): checked now on the schema this transaction read (a bad column is an error and
    /// nothing is planned), bound again by column name on the current schema at commit. Writes after
    /// it sort their rows by it.
    pub async fn update_sort_order(&mut self, table: &TableName, update: SortOrderUpdate) -> Result<()> {
        let read = self.table(table).await?;
        let change = sort_order::SortOrderChange::plan(&read, update)?;
        self.push(table, Action::SortOrder(change));
        Ok(())
    }

    /// Change the default partition spec of `table` (see [`SpecUpdate`]): checked now on the spec
    /// this transaction read, applied at commit; a partition spec change that landed meanwhile makes
    /// the commit a `Conflict`. New writes use the new spec; files already written keep theirs.
    pub async fn update_spec(&mut self, table: &TableName, update: SpecUpdate) -> Result<()> {
        let read = self.table(table).await?;
        let change = spec::SpecChange::plan(&read, update)?;
        self.push(table, Action::Spec(change));
        Ok(())
    }

    /// Add an optional column at the end of the schema.
    pub async fn add_column(
        &mut self,
        table: &TableName,
        column: &str,
        field_type: iceberg::spec::Type,
    ) -> Result<()> {
        self.update_schema(table, SchemaUpdate::new().add_column(column, field_type))
            .await
    }

    /// Commit every table's actions at once: all land or none does. Returns one result per table,
    /// in the order the tables were first named. On a conflict nothing is committed, the error (kind
    /// `Conflict`) names the concurrent snapshot, and the transaction's files are deleted.
    pub async fn commit(mut self) -> Result<Vec<CommitResult>> {
        self.done = true;
        let changes = std::mem::take(&mut self.changes)
            .into_iter()
            .filter(|c| !c.actions.is_empty())
            .collect();
        commit::commit(&self.store, changes).await
    }

    /// Commit a transaction on one table: its result.
    /// Commit a transaction on one table: its result (the table as read, and no snapshot, when no
    /// action was planned at all).
    pub(crate) async fn commit_one(self) -> Result<CommitResult> {
        let read = self.changes.first().map(|c| c.read.clone());
        let mut results = self.commit().await?;
        match (results.pop(), read) {
            (Some(r), _) => Ok(r),
            (None, Some(table)) => Ok(CommitResult::nothing(table, RowCounts::default())),
            (None, None) => Err(Error::internal("a transaction on no table was committed as one")),
        }
    }

    /// Give up: delete every file the transaction wrote; nothing is committed.
    pub async fn abort(mut self) {
        self.done = true;
        let files: Vec<String> = self.written_files();
        delete_quietly(self.store.storage(), files).await;
    }

    fn written_files(&self) -> Vec<String> {
        self.changes
            .iter()
            .flat_map(|c| c.actions.iter().flat_map(|a| a.new_files()))
            .collect()
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let files = self.written_files();
        if files.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let storage = self.store.storage().clone();
                handle.spawn(async move { delete_quietly(&storage, files).await });
            }
            Err(_) => tracing::warn!(
                files = files.len(),
                "a transaction was dropped outside a runtime; its files are left to orphan cleanup"
            ),
        }
    }
}

/// The paths of data files.
pub(crate) fn paths_of(files: &[DataFile]) -> Vec<String> {
    files.iter().map(|f| f.file_path().to_string()).collect()
}

/// Deleting uncommitted files lives with the storage it serves; the transaction layer calls it here.
pub(crate) use crate::storage::delete_quietly;
