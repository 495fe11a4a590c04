//! Planning row-level changes on the state a change read: which live rows of which data files a
//! predicate matches ([`rows_matching`]: files pruned by partition values and column bounds first,
//! then the predicate evaluated exactly on each remaining file's live rows, their positions kept),
//! and how each file with such rows is written ([`write_changes`]): a position delete file
//! (merge-on-read), the file rewritten without them (copy-on-write), or in `auto` whichever the
//! file's deleted fraction calls for. A file whose every live row goes is dropped in any mode.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use futures::TryStreamExt;
use iceberg::spec::{DataFile, SchemaRef, SnapshotRef};
use roaring::RoaringTreemap;

use super::delete_quietly;
use super::merge_into::RowCounts;
use super::producer::branch_head;
use super::row_delta::{ChangedFile, FileOutcome};
use crate::error::{Error, Result};
use crate::table::deletes::index::DeleteIndex;
use crate::table::deletes::positions::deleted_positions;
use crate::table::deletes::writer::write_position_deletes;
use crate::table::deletes::{live_rows, RowLevelMode};
use crate::table::entries::{LiveFile, SnapshotFiles};
use crate::table::filter::RowFilter;
use crate::table::writer::DataWriter;
use crate::table::Table;

/// A branch of a table as a change read it: its head, live files and delete index.
pub(crate) struct ReadState {
    pub(crate) table: Table,
    pub(crate) head: Option<SnapshotRef>,
    pub(crate) files: SnapshotFiles,
    pub(crate) index: DeleteIndex,
}

impl ReadState {
    /// Read `branch` of `table` (a branch not created yet reads `main`'s head).
    pub(crate) async fn of(table: &Table, branch: &str) -> Result<ReadState> {
        let head = branch_head(table.metadata(), branch).cloned();
        let files = SnapshotFiles::of(table, head.as_ref()).await?;
        let index = DeleteIndex::of(&files);
        index.refuse_deletion_vectors(&table.name().to_string())?;
        Ok(ReadState {
            table: table.clone(),
            head,
            files,
            index,
        })
    }

    pub(crate) fn read_snapshot(&self) -> Option<i64> {
        self.head.as_ref().map(|h| h.snapshot_id())
    }

    /// The read snapshot's sequence number (0 before the first snapshot): anything committed later
    /// carries a higher one.
    pub(crate) fn read_sequence(&self) -> i64 {
        self.head.as_ref().map(|h| h.sequence_number()).unwrap_or(0)
    }

    /// Every live data file's path.
    pub(crate) fn all_paths(&self) -> HashSet<String> {
        self.files.data.iter().map(|f| f.path().to_string()).collect()
    }
}

/// A data file with live rows a change deletes.
pub(crate) struct Hit {
    pub(crate) data: LiveFile,
    pub(crate) positions: RoaringTreemap,
    /// Its live rows before the change.
    pub(crate) live_rows: u64,
}

/// What a search for rows found.
pub(crate) struct Hits {
    pub(crate) hits: Vec<Hit>,
    /// Every data file read.
    pub(crate) read_set: HashSet<String>,
}

/// The field ids of `columns` in `schema`, in that order; the first column when there is none (a
/// predicate on no column still needs the rows counted).
pub(crate) fn columns_to_read(schema: &SchemaRef, columns: &[String]) -> Vec<i32> {
    let mut ids: Vec<i32> = Vec::new();
    for c in columns {
        if let Some(f) = schema.field_by_name(c) {
            if !ids.contains(&f.id) {
                ids.push(f.id);
            }
        }
    }
    if ids.is_empty() {
        ids.extend(schema.as_struct().fields().first().map(|f| f.id));
    }
    ids
}

/// `arrow` (the table's schema as Arrow) projected to the fields `ids` name, in that order: the
/// schema of the batches a read of those ids returns.
pub(crate) fn narrow_schema(
    arrow: &ArrowSchemaRef,
    schema: &SchemaRef,
    ids: &[i32],
) -> Result<ArrowSchemaRef> {
    let indices = ids
        .iter()
        .map(|id| {
            let name = schema
                .name_by_field_id(*id)
                .ok_or_else(|| Error::internal(format!("field {id} is not in the schema")))?;
            Ok(arrow.index_of(name)?)
        })
        .collect::<Result<Vec<usize>>>()?;
    Ok(Arc::new(arrow.project(&indices)?))
}

/// The live rows of the read state that `filter` matches, with their positions.
pub(crate) async fn rows_matching(state: &ReadState, filter: &RowFilter) -> Result<Hits> {
    let table = &state.table;
    let schema = table.schema().clone();
    let arrow = table.arrow_schema()?;
    let compiled = filter.compile(&arrow)?;
    let candidates = files_that_may_match(table, state.head.as_ref(), filter).await?;
    let ids = columns_to_read(&schema, &compiled.columns);
    let narrow = filter.compile(&narrow_schema(&arrow, &schema, &ids)?)?;
    let mut out = Hits {
        hits: Vec::new(),
        read_set: HashSet::new(),
    };
    for data in &state.files.data {
        if candidates.as_ref().is_some_and(|c| !c.contains(data.path())) {
            continue;
        }
        out.read_set.insert(data.path().to_string());
        let deletes = state.index.for_data_file(data);
        let mut rows = live_rows(table, data, &deletes, schema.clone(), ids.clone()).await?;
        let mut positions = RoaringTreemap::new();
        let mut live = 0u64;
        while let Some((batch, pos)) = rows.try_next().await? {
            live += batch.num_rows() as u64;
            let mask = narrow.matches(&batch)?;
            for i in 0..mask.len() {
                if mask.value(i) {
                    positions.insert(pos.value(i));
                }
            }
        }
        if !positions.is_empty() {
            out.hits.push(Hit {
                data: data.clone(),
                positions,
                live_rows: live,
            });
        }
    }
    Ok(out)
}

/// How the files of a change are written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriteRule {
    pub(crate) mode: RowLevelMode,
    /// In `auto`, the deleted fraction at which a file is rewritten.
    pub(crate) threshold: f64,
    pub(crate) target_file_size: usize,
}

/// Write each hit file's change: the changed files, and the data files holding the surviving rows of
/// rewritten ones. On error, nothing written here is left.
pub(crate) async fn write_changes(
    state: &ReadState,
    hits: Vec<Hit>,
    rule: WriteRule,
) -> Result<(Vec<ChangedFile>, Vec<DataFile>)> {
    let mut writer: Option<DataWriter> = None;
    let mut deletes_written: Vec<String> = Vec::new();
    let result = write_each(state, hits, rule, &mut writer, &mut deletes_written).await;
    let rewritten = match writer {
        Some(w) => w.close().await,
        None => Ok(Vec::new()),
    };
    match (result, rewritten) {
        (Ok(changed), Ok(rewritten)) => Ok((changed, rewritten)),
        (result, rewritten) => {
            if let Ok(files) = &rewritten {
                deletes_written.extend(files.iter().map(|f| f.file_path().to_string()));
            }
            delete_quietly(state.table.storage(), deletes_written).await;
            Err(result.err().or(rewritten.err()).expect("one of them failed"))
        }
    }
}

async fn write_each(
    state: &ReadState,
    hits: Vec<Hit>,
    rule: WriteRule,
    writer: &mut Option<DataWriter>,
    deletes_written: &mut Vec<String>,
) -> Result<Vec<ChangedFile>> {
    let table = &state.table;
    let mut changed = Vec::with_capacity(hits.len());
    for hit in hits {
        let records = hit.data.file.record_count().max(1);
        let outcome = if hit.positions.len() >= hit.live_rows {
            FileOutcome::Removed { rewritten: false }
        } else {
            let deleted_before = records.saturating_sub(hit.live_rows);
            let fraction = (deleted_before + hit.positions.len()) as f64 / records as f64;
            let rewrite = match rule.mode {
                RowLevelMode::CopyOnWrite => true,
                RowLevelMode::MergeOnRead => false,
                RowLevelMode::Auto => fraction >= rule.threshold,
            };
            if rewrite {
                if writer.is_none() {
                    *writer = Some(DataWriter::new(table, rule.target_file_size)?);
                }
                let w = writer.as_mut().expect("writer created above");
                rewrite_without(state, &hit, w).await?;
                FileOutcome::Removed { rewritten: true }
            } else {
                let replaces: Vec<LiveFile> = state
                    .index
                    .file_scoped(hit.data.path())
                    .iter()
                    .filter(|d| !d.is_deletion_vector())
                    .cloned()
                    .collect();
                let mut positions = deleted_positions(table.storage(), hit.data.path(), &replaces).await?;
                positions |= &hit.positions;
                let delete_file = write_position_deletes(table, &hit.data, &positions).await?;
                deletes_written.push(delete_file.file_path().to_string());
                FileOutcome::Deletes {
                    delete_file: Box::new(delete_file),
                    replaces: replaces.into_iter().map(|d| d.file).collect(),
                }
            }
        };
        changed.push(ChangedFile {
            data: hit.data,
            deleted: Arc::new(hit.positions),
            outcome,
        });
    }
    Ok(changed)
}

/// Stream the live rows of `hit`'s file, less the hit positions, into `writer` (the table's current
/// schema).
async fn rewrite_without(state: &ReadState, hit: &Hit, writer: &mut DataWriter) -> Result<()> {
    let table = &state.table;
    let schema = table.schema().clone();
    let ids: Vec<i32> = schema.as_struct().fields().iter().map(|f| f.id).collect();
    let deletes = state.index.for_data_file(&hit.data);
    let mut rows = live_rows(table, &hit.data, &deletes, schema, ids).await?;
    while let Some((batch, pos)) = rows.try_next().await? {
        let keep =
            BooleanArray::from_iter((0..pos.len()).map(|i| Some(!hit.positions.contains(pos.value(i)))));
        let kept = filter_record_batch(&batch, &keep)?;
        if kept.num_rows() > 0 {
            writer.write(kept).await?;
        }
    }
    Ok(())
}

/// Paths of the live files of `snapshot` that may hold rows matching `filter`, judged from
/// partition values and column bounds by Iceberg's scan planning; `None` when the filter cannot be
/// judged from statistics (then every file may match).
pub(crate) async fn files_that_may_match(
    table: &Table,
    snapshot: Option<&SnapshotRef>,
    filter: &RowFilter,
) -> Result<Option<HashSet<String>>> {
    let Some(snapshot) = snapshot else {
        return Ok(Some(HashSet::new()));
    };
    let compiled = filter.compile(&table.arrow_schema()?)?;
    let schema = snapshot.schema(table.metadata())?;
    let Some(predicate) = compiled.pushdown_for(&schema) else {
        return Ok(None);
    };
    let ice = table.iceberg_table()?;
    let tasks: Vec<_> = ice
        .scan()
        .snapshot_id(snapshot.snapshot_id())
        .select_all()
        .with_filter(predicate)
        .build()?
        .plan_files()
        .await?
        .try_collect()
        .await?;
    Ok(Some(tasks.into_iter().map(|t| t.data_file_path).collect()))
}

/// What changing `changed` does to rows (deleted rows, files rewritten, delete files written).
pub(crate) fn counts_of(changed: &[ChangedFile]) -> RowCounts {
    let mut counts = RowCounts::default();
    for c in changed {
        counts.deleted += c.deleted.len();
        match c.outcome {
            FileOutcome::Removed { rewritten: true } => counts.files_rewritten += 1,
            FileOutcome::Removed { rewritten: false } => {}
            FileOutcome::Deletes { .. } => counts.delete_files_added += 1,
        }
    }
    counts
}
