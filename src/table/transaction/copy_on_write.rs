//! Copy-on-write planning: find the live files of a snapshot that hold rows matching a filter
//! (files pruned by Iceberg's statistics first, then the filter evaluated exactly on the rows), and
//! rewrite each such file without those rows. Memory stays bounded by a batch: a first pass reads
//! only the filter's columns to count matches, a second streams the survivors into new files.

use std::collections::{HashMap, HashSet};

use arrow::array::RecordBatch;
use arrow::compute::{filter_record_batch, not};
use futures::{StreamExt, TryStreamExt};
use iceberg::spec::{DataFile, SnapshotRef};

use super::delete_quietly;
use crate::error::{Error, Result};
use crate::table::filter::RowFilter;
use crate::table::writer::DataWriter;
use crate::table::Table;

/// What a copy-on-write pass decided.
pub(crate) struct CopyOnWrite {
    /// Every file the pass read (the files statistics could not rule out).
    pub(crate) read_set: HashSet<String>,
    /// Files with matching rows: removed by the change.
    pub(crate) removed: Vec<DataFile>,
    /// New files holding the surviving rows of the removed files.
    pub(crate) rewritten: Vec<DataFile>,
}

/// Plan removing the rows of `snapshot` matching `filter`. On error, nothing it wrote is left.
pub(crate) async fn copy_on_write(
    base: &Table,
    snapshot: Option<&SnapshotRef>,
    filter: &RowFilter,
    target_file_size: usize,
) -> Result<CopyOnWrite> {
    let mut writer: Option<DataWriter> = None;
    let result = plan(base, snapshot, filter, target_file_size, &mut writer).await;
    match (result, writer) {
        (Ok(mut out), Some(w)) => match w.close().await {
            Ok(files) => {
                out.rewritten = files;
                Ok(out)
            }
            Err(e) => Err(e),
        },
        (Ok(out), None) => Ok(out),
        (Err(e), Some(w)) => {
            if let Ok(files) = w.close().await {
                delete_quietly(base.storage(), crate::table::transaction::paths_of(&files)).await;
            }
            Err(e)
        }
        (Err(e), None) => Err(e),
    }
}

async fn plan(
    base: &Table,
    snapshot: Option<&SnapshotRef>,
    filter: &RowFilter,
    target_file_size: usize,
    writer: &mut Option<DataWriter>,
) -> Result<CopyOnWrite> {
    let mut out = CopyOnWrite {
        read_set: HashSet::new(),
        removed: Vec::new(),
        rewritten: Vec::new(),
    };
    let Some(snapshot) = snapshot else { return Ok(out) };
    let compiled = filter.compile(&base.arrow_schema()?)?;
    let live: HashMap<String, DataFile> = base
        .live_data_files(Some(snapshot))
        .await?
        .into_iter()
        .map(|f| (f.file_path().to_string(), f))
        .collect();
    let ice = base.iceberg_table()?;
    let mut scan = ice.scan().snapshot_id(snapshot.snapshot_id()).select_all();
    let snapshot_schema = snapshot.schema(base.metadata())?;
    if let Some(p) = compiled.pushdown_for(&snapshot_schema) {
        scan = scan.with_filter(p);
    }
    // Read every file with the table's current schema (columns added since the snapshot read as
    // null), so the filter and the rewritten files see the table as it is now.
    let current_ids: Vec<i32> = base.schema().as_struct().fields().iter().map(|f| f.id).collect();
    let tasks: Vec<_> = scan.build()?.plan_files().await?.try_collect().await?;
    let schema = base.schema();
    let full_arrow = base.arrow_schema()?;
    let filter_ids: Vec<i32> = compiled
        .columns
        .iter()
        .filter_map(|c| schema.field_by_name(c).map(|f| f.id))
        .collect();
    let narrow = if filter_ids.is_empty() {
        None
    } else {
        let idx: Vec<usize> = compiled
            .columns
            .iter()
            .filter_map(|c| full_arrow.index_of(c).ok())
            .collect();
        let narrow_schema = std::sync::Arc::new(full_arrow.project(&idx)?);
        Some(filter.compile(&narrow_schema)?)
    };
    for mut task in tasks {
        let path = task.data_file_path.clone();
        out.read_set.insert(path.clone());
        task.predicate = None;
        task.schema = base.schema().clone();
        task.project_field_ids = current_ids.clone();
        let total = live.get(&path).map(|f| f.record_count() as usize);
        let matched = match &narrow {
            Some(narrow_filter) => {
                let mut probe = task.clone();
                probe.project_field_ids = filter_ids.clone();
                let mut batches = ice
                    .reader_builder()
                    .build()
                    .read(futures::stream::iter([Ok(probe)]).boxed())?
                    .stream();
                let mut matched = 0usize;
                while let Some(batch) = batches.try_next().await? {
                    matched += narrow_filter.matches(&batch)?.true_count();
                }
                matched
            }
            // A filter on no column (`true`, `1 = 0`): evaluate it on the full rows below.
            None => usize::MAX,
        };
        if matched == 0 {
            continue;
        }
        let file = live
            .get(&path)
            .cloned()
            .ok_or_else(|| Error::internal(format!("scan planned {path}, which is not live")))?;
        if Some(matched) == total && task.deletes.is_empty() {
            out.removed.push(file);
            continue;
        }
        let mut batches = ice
            .reader_builder()
            .build()
            .read(futures::stream::iter([Ok(task)]).boxed())?
            .stream();
        let mut removed_rows = 0usize;
        let mut kept: Vec<RecordBatch> = Vec::new();
        while let Some(batch) = batches.try_next().await? {
            let mask = compiled.matches(&batch)?;
            removed_rows += mask.true_count();
            let keep = filter_record_batch(&batch, &not(&mask)?)?;
            if keep.num_rows() == 0 {
                continue;
            }
            if writer.is_none() {
                *writer = Some(DataWriter::new(base, target_file_size)?);
            }
            // Rows go straight to the writer; `kept` only holds them when the file may turn out to
            // have no match at all (the column-less filter case), to be dropped.
            if narrow.is_some() {
                writer.as_mut().expect("writer created above").write(keep).await?;
            } else {
                kept.push(keep);
            }
        }
        if removed_rows == 0 {
            continue;
        }
        for keep in kept {
            writer.as_mut().expect("writer created above").write(keep).await?;
        }
        out.removed.push(file);
    }
    Ok(out)
}
