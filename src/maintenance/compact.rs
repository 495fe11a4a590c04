//! Compaction: rewrite a table's small data files into files of the target size, partition by
//! partition, as one `replace` snapshot through the transaction layer's `rewrite` action (a
//! concurrent delete or rewrite of a replaced file is a conflict; a concurrent append is kept).
//! Sizes follow Iceberg Java's `RewriteDataFiles`: the target is `write.target-file-size-bytes`
//! (floe's writer default, 128 MiB, when unset), files under `min-file-size` (0.75 × target) are
//! candidates, and a partition's candidates are rewritten when there are at least `min-input-files`
//! (5) of them or together they pass the target. A filter narrows the files to those that may hold
//! matching rows (whole files are rewritten: compaction never changes rows). Files with row-level
//! deletes attached are left alone.

use std::collections::{BTreeMap, HashMap};

use futures::{StreamExt, TryStreamExt};
use iceberg::spec::{DataFile, MAIN_BRANCH};
use serde::Serialize;

use crate::catalog::TableName;
use crate::error::{Error, Result};
use crate::storage::delete_quietly;
use crate::table::filter::RowFilter;
use crate::table::writer::DataWriter;
use crate::table::{TableStore, Transaction, WriteOptions};

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
    /// The `replace` snapshot.
    pub snapshot_id: Option<i64>,
    /// Nothing was changed.
    pub dry_run: bool,
}

/// Compact the small files of `name` on `main`.
pub(crate) async fn compact(
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
    // The files to consider: planned by Iceberg (pruned by the filter), without row-level deletes.
    let ice = table.iceberg_table()?;
    let mut scan = ice.scan().snapshot_id(head.snapshot_id()).select_all();
    if let Some(f) = &options.filter {
        let compiled = f.compile(&table.arrow_schema()?)?;
        if let Some(p) = compiled.pushdown_for(&head.schema(table.metadata())?) {
            scan = scan.with_filter(p);
        }
    }
    let tasks: Vec<_> = scan.build()?.plan_files().await?.try_collect().await?;
    let tasks: HashMap<String, _> = tasks
        .into_iter()
        .filter(|t| t.deletes.is_empty())
        .map(|t| (t.data_file_path.clone(), t))
        .collect();
    let current_spec = table.metadata().default_partition_spec_id();
    let mut groups: BTreeMap<String, Vec<DataFile>> = BTreeMap::new();
    for (file, spec_id) in table.data_files(Some(&head)).await? {
        if !tasks.contains_key(file.file_path()) || file.file_size_in_bytes() >= min {
            continue;
        }
        // Files of older specs are compacted together (into the current spec).
        let key = if spec_id == current_spec {
            format!("{spec_id}:{:?}", file.partition())
        } else {
            "older specs".to_string()
        };
        groups.entry(key).or_default().push(file);
    }
    let chosen: Vec<Vec<DataFile>> = groups
        .into_values()
        .filter(|g| {
            let total: u64 = g.iter().map(|f| f.file_size_in_bytes()).sum();
            g.len() > 1 && (g.len() >= options.min_input_files || total > target)
        })
        .collect();
    report.groups = chosen.len();
    report.files_rewritten = chosen.iter().map(Vec::len).sum();
    report.bytes_rewritten = chosen.iter().flatten().map(|f| f.file_size_in_bytes()).sum();
    if options.dry_run || chosen.is_empty() {
        return Ok(report);
    }

    // Rewrite every chosen file's rows with the table's current schema.
    let current_ids: Vec<i32> = table.schema().as_struct().fields().iter().map(|f| f.id).collect();
    let mut written: Vec<DataFile> = Vec::new();
    let result: Result<()> = async {
        for group in &chosen {
            let mut writer = DataWriter::new(&table, target as usize)?;
            let group_tasks: Vec<_> = group
                .iter()
                .filter_map(|f| tasks.get(f.file_path()).cloned())
                .map(|mut t| {
                    t.predicate = None;
                    t.schema = table.schema().clone();
                    t.project_field_ids = current_ids.clone();
                    Ok(t)
                })
                .collect();
            let mut batches = ice
                .reader_builder()
                .build()
                .read(futures::stream::iter(group_tasks).boxed())?
                .stream();
            let mut failed = None;
            while let Some(batch) = batches.next().await {
                match batch {
                    Ok(b) => {
                        if let Err(e) = writer.write(b).await {
                            failed = Some(e);
                            break;
                        }
                    }
                    Err(e) => {
                        failed = Some(e.into());
                        break;
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
    if let Err(e) = result {
        delete_quietly(store.storage(), crate::table::transaction::paths_of(&written)).await;
        return Err(e);
    }
    let rows_in: u64 = chosen.iter().flatten().map(|f| f.record_count()).sum();
    let rows_out: u64 = written.iter().map(|f| f.record_count()).sum();
    if rows_in != rows_out {
        delete_quietly(store.storage(), crate::table::transaction::paths_of(&written)).await;
        return Err(Error::internal(format!(
            "compaction of {name} read {rows_in} rows but wrote {rows_out}; nothing was committed"
        )));
    }
    report.files_written = written.len();
    report.bytes_written = written.iter().map(|f| f.file_size_in_bytes()).sum();
    let removed: Vec<DataFile> = chosen.into_iter().flatten().collect();
    let mut tx = Transaction::new(store.clone());
    tx.read_as(table);
    let options = WriteOptions {
        properties: BTreeMap::from([("floe.maintenance".to_string(), "compact".to_string())]),
        ..Default::default()
    };
    tx.rewrite_files(name, removed, written, &options).await?;
    let result = tx.commit().await?;
    report.snapshot_id = result.first().and_then(|r| r.snapshot_id);
    Ok(report)
}
