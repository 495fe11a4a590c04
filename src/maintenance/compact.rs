//! Compaction: rewrite a table's small data files into files of the target size, partition by
//! partition, as one `replace` snapshot through the transaction layer's `rewrite` action (a
//! concurrent delete or rewrite of a replaced file is a conflict; a concurrent append is kept).
//! Sizes follow Iceberg Java's `RewriteDataFiles`: the target is `write.target-file-size-bytes`
//! (floe's writer default, 128 MiB, when unset), files under `min-file-size` (0.75 × target) are
//! candidates, and a partition's candidates are rewritten when there are at least `min-input-files`
//! (5) of them or together they pass the target. A filter narrows the files to those that may hold
//! matching rows (whole files are rewritten: compaction never changes rows).
//!
//! Compaction also folds row-level deletes: a file whose deleted fraction is at least
//! `delete-ratio-threshold` (0.3 by default) is rewritten with its deletes applied, whatever its
//! size, and the delete files that named only it go in the same commit; so do delete files that no
//! longer apply to any live file. Files with equality deletes (another engine's) are left alone.

use std::collections::{BTreeMap, HashSet};

use futures::TryStreamExt;
use iceberg::spec::{DataFile, MAIN_BRANCH};
use serde::Serialize;

use crate::catalog::TableName;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::delete_quietly;
use crate::table::deletes::index::DeleteIndex;
use crate::table::deletes::positions::deleted_positions;
use crate::table::deletes::{delete_ratio_threshold, live_rows};
use crate::table::entries::{LiveFile, SnapshotFiles};
use crate::table::filter::RowFilter;
use crate::table::transaction::row_plan::files_that_may_match;
use crate::table::writer::DataWriter;
use crate::table::{Table, TableStore, Transaction, WriteOptions};

/// floe's data files are rolled at this size unless the table says otherwise.
const DEFAULT_TARGET: u64 = 128 * 1024 * 1024;

/// What to compact.
#[derive(Clone, Debug)]
pub struct CompactOptions {
    /// Only files that may hold rows matching this filter.
    pub filter: Option<RowFilter>,
    /// Size of the files written (default: `write.target-file-size-bytes`, else 128 MiB).
    pub target_file_size: Option<u64>,
    /// Files under this size are rewritten (default 0.75 × the target).
    pub min_file_size: Option<u64>,
    /// A partition's small files are rewritten once there are this many (default 5), or once they
    /// pass the target size together.
    pub min_input_files: usize,
    /// Files whose deleted fraction is at least this are rewritten with their deletes applied
    /// (default: the table's `delete-ratio-threshold`, else 0.3).
    pub delete_ratio_threshold: Option<f64>,
    /// Rewrite every data file written with an older partition spec into the current spec, whatever
    /// its size (`floe compact --rewrite-spec`).
    pub rewrite_spec: bool,
    /// Report what would be rewritten; change nothing.
    pub dry_run: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            filter: None,
            target_file_size: None,
            min_file_size: None,
            min_input_files: 5,
            delete_ratio_threshold: None,
            rewrite_spec: false,
            dry_run: false,
        }
    }
}

/// What a compaction did (or would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CompactReport {
    /// The table.
    pub table: String,
    /// Partitions whose files were rewritten.
    pub groups: usize,
    /// Files replaced.
    pub files_rewritten: usize,
    /// Bytes of the files replaced.
    pub bytes_rewritten: u64,
    /// Files written.
    pub files_written: usize,
    /// Bytes written.
    pub bytes_written: u64,
    /// Rewritten files whose deletes were folded in (their deleted fraction reached the threshold).
    pub files_with_deletes_folded: usize,
    /// Delete files removed: those of the rewritten files, and those that applied to no live file.
    pub delete_files_removed: usize,
    /// The `replace` snapshot.
    pub snapshot_id: Option<i64>,
    /// Nothing was changed.
    pub dry_run: bool,
    /// Times it was planned: more than 1 when concurrent changes to its files made it start over.
    pub attempts: usize,
}

/// How many times a compaction is planned again from the new head when a concurrent change to the
/// files it rewrote (a delete, an upsert, another compaction) makes its commit conflict.
const COMPACT_ATTEMPTS: usize = 4;

/// Compact the small files of `name` on `main`, and fold the deletes of files with many.
pub(crate) async fn compact(
    store: &TableStore,
    name: &TableName,
    options: &CompactOptions,
) -> Result<CompactReport> {
    // A compaction's new files are computed from the rows it read, so a conflicting one cannot be
    // re-applied: it is chosen and rewritten again on the new head (its first files are deleted by
    // the failed commit).
    let mut attempt = 1;
    loop {
        match compact_once(store, name, options).await {
            Ok(mut report) => {
                report.attempts = attempt;
                return Ok(report);
            }
            Err(e) if e.kind() == ErrorKind::Conflict && attempt < COMPACT_ATTEMPTS => {
                tracing::info!(table = %name, attempt, "compaction conflicted, planning it again: {e}");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// One compaction: choose on the current head, rewrite, commit.
async fn compact_once(
    store: &TableStore,
    name: &TableName,
    options: &CompactOptions,
) -> Result<CompactReport> {
    let table = store.load(name).await?;
    let mut report = CompactReport {
        table: name.to_string(),
        dry_run: options.dry_run,
        ..Default::default()
    };
    let Some(head) = table.metadata().snapshot_for_ref(MAIN_BRANCH).cloned() else {
        return Ok(report);
    };
    let target = options
        .target_file_size
        .or_else(|| {
            table
                .metadata()
                .properties()
                .get("write.target-file-size-bytes")
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(DEFAULT_TARGET);
    if target == 0 {
        return Err(Error::invalid("the target file size must be positive"));
    }
    let min = options.min_file_size.unwrap_or(target / 4 * 3);
    if min >= target {
        return Err(Error::invalid(format!(
            "the minimum file size ({min} bytes) must be below the target ({target} bytes)"
        )));
    }
    let threshold = delete_ratio_threshold(options.delete_ratio_threshold, &table)?;
    let files = SnapshotFiles::of(&table, Some(&head)).await?;
    let index = DeleteIndex::of(&files);
    index.refuse_deletion_vectors(&name.to_string())?;
    let candidates = match &options.filter {
        Some(f) => files_that_may_match(&table, Some(&head), f).await?,
        None => None,
    };
    let chosen = choose(
        &table,
        &files,
        &index,
        candidates.as_ref(),
        options,
        min,
        target,
        threshold,
    )
    .await?;
    let dangling = dangling_deletes(&files, &index);
    report.groups = chosen.len();
    report.files_rewritten = chosen.iter().map(|g| g.files.len()).sum();
    report.bytes_rewritten = chosen
        .iter()
        .flat_map(|g| &g.files)
        .map(|f| f.file.file_size_in_bytes())
        .sum();
    report.files_with_deletes_folded = chosen.iter().map(|g| g.folded).sum();
    let rewritten: HashSet<&str> = chosen.iter().flat_map(|g| &g.files).map(|f| f.path()).collect();
    report.delete_files_removed = dangling.len()
        + files
            .deletes
            .iter()
            .filter(|d| {
                crate::table::deletes::index::referenced_data_file(&d.file)
                    .is_some_and(|p| rewritten.contains(p.as_str()))
            })
            .count();
    if options.dry_run || (chosen.is_empty() && dangling.is_empty()) {
        return Ok(report);
    }
    let written = rewrite(&table, &index, &chosen, target).await?;
    report.files_written = written.len();
    report.bytes_written = written.iter().map(|f| f.file_size_in_bytes()).sum();
    let removed: Vec<DataFile> = chosen.into_iter().flat_map(|g| g.files).map(|f| f.file).collect();
    let mut tx = Transaction::new(store.clone());
    tx.read_as(table);
    let options = WriteOptions {
        properties: BTreeMap::from([("floe.maintenance".to_string(), "compact".to_string())]),
        ..Default::default()
    };
    tx.rewrite_files(name, removed, written, dangling, &options)
        .await?;
    let result = tx.commit().await?;
    report.snapshot_id = result.first().and_then(|r| r.snapshot_id);
    Ok(report)
}

/// The files of one partition to rewrite together, how many of them fold deletes, and whether they
/// are older-spec files to rewrite into the current spec.
struct Group {
    files: Vec<LiveFile>,
    folded: usize,
    respec: bool,
}

/// Pick the groups to rewrite: per partition, the small files when there are enough of them (or
/// they pass the target together), and every file whose deleted fraction reached the threshold.
#[allow(clippy::too_many_arguments)]
async fn choose(
    table: &Table,
    files: &SnapshotFiles,
    index: &DeleteIndex,
    candidates: Option<&HashSet<String>>,
    options: &CompactOptions,
    min: u64,
    target: u64,
    threshold: f64,
) -> Result<Vec<Group>> {
    let current_spec = table.metadata().default_partition_spec_id();
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for file in &files.data {
        if candidates.is_some_and(|c| !c.contains(file.path())) {
            continue;
        }
        let deletes = index.for_data_file(file);
        if !deletes.equality.is_empty() {
            continue;
        }
        let deleted = if deletes.positions.is_empty() {
            0
        } else {
            deleted_positions(table.storage(), file.path(), &deletes.positions)
                .await?
                .len()
        };
        let records = file.file.record_count().max(1);
        let folds = deleted > 0 && deleted as f64 / records as f64 >= threshold;
        let respec = options.rewrite_spec && file.spec_id != current_spec;
        if !folds && !respec && file.file.file_size_in_bytes() >= min {
            continue;
        }
        // Files of older specs are compacted together (into the current spec).
        let key = if file.spec_id == current_spec {
            format!("{}:{:?}", file.spec_id, file.file.partition())
        } else {
            "older specs".to_string()
        };
        let group = groups.entry(key).or_insert_with(|| Group {
            files: Vec::new(),
            folded: 0,
            respec: false,
        });
        group.files.push(file.clone());
        group.folded += usize::from(folds);
        group.respec |= respec;
    }
    Ok(groups
        .into_values()
        .filter(|g| {
            let total: u64 = g.files.iter().map(|f| f.file.file_size_in_bytes()).sum();
            g.folded > 0
                || g.respec
                || (g.files.len() > 1 && (g.files.len() >= options.min_input_files || total > target))
        })
        .collect())
}

/// Delete files that apply to no live data file: file-scoped ones whose file is gone, and
/// partition-scoped ones whose partition has no data file old enough for them.
fn dangling_deletes(files: &SnapshotFiles, index: &DeleteIndex) -> Vec<DataFile> {
    let live: HashSet<&str> = files.data.iter().map(|f| f.path()).collect();
    files
        .deletes
        .iter()
        .filter(|d| !d.is_deletion_vector())
        .filter(
            |d| match crate::table::deletes::index::referenced_data_file(&d.file) {
                Some(path) => !live.contains(path.as_str()),
                None => !files.data.iter().any(|data| {
                    let applies = index.for_data_file(data);
                    applies
                        .positions
                        .iter()
                        .chain(&applies.equality)
                        .any(|a| a.path() == d.path())
                }),
            },
        )
        .map(|d| d.file.clone())
        .collect()
}

/// Rewrite each group's live rows (deletes applied) with the table's current schema; on error,
/// nothing written is left.
async fn rewrite(table: &Table, index: &DeleteIndex, chosen: &[Group], target: u64) -> Result<Vec<DataFile>> {
    let schema = table.schema().clone();
    let ids: Vec<i32> = schema.as_struct().fields().iter().map(|f| f.id).collect();
    let mut written: Vec<DataFile> = Vec::new();
    let mut rows_in = 0u64;
    let result: Result<()> = async {
        for group in chosen {
            let mut writer = DataWriter::new(table, target as usize)?;
            let mut failed = None;
            'files: for file in &group.files {
                let mut rows = match live_rows(
                    table,
                    file,
                    &index.for_data_file(file),
                    schema.clone(),
                    ids.clone(),
                )
                .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                };
                loop {
                    match rows.try_next().await {
                        Ok(Some((batch, _))) => {
                            rows_in += batch.num_rows() as u64;
                            if let Err(e) = writer.write(batch).await {
                                failed = Some(e);
                                break 'files;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            failed = Some(e);
                            break 'files;
                        }
                    }
                }
            }
            let files = writer.close().await;
            if let Ok(files) = &files {
                written.extend(files.iter().cloned());
            }
            if let Some(e) = failed {
                return Err(e);
            }
            files?;
        }
        Ok(())
    }
    .await;
    let rows_out: u64 = written.iter().map(|f| f.record_count()).sum();
    let result = result.and_then(|_| {
        if rows_in == rows_out {
            Ok(())
        } else {
            Err(Error::internal(format!(
                "compaction of {} read {rows_in} rows but wrote {rows_out}; nothing was committed",
                table.name()
            )))
        }
    });
    if let Err(e) = result {
        delete_quietly(table.storage(), crate::table::transaction::paths_of(&written)).await;
        return Err(e);
    }
    Ok(written)
}
