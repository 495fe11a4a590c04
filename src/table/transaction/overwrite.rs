//! Overwrite: replace the rows matching a filter (copy-on-write), or every row, with new rows. The
//! change is planned once, on the snapshot the transaction read (the files it read, the files it
//! removes, the surviving rows it rewrites) and validated on every attempt as a row-level change
//! (see [`super::row_delta`]): a whole-table overwrite conflicts with any data added meanwhile under
//! `serializable`, a filtered one with added rows matching its filter. Its new rows are never
//! recomputed; when the caller says they do not derive from the table
//! ([`super::OverwriteOptions::replan_on_conflict`]), the replaced rows are planned again on a head
//! where a compaction replaced files it read.

use std::sync::Arc;

use async_trait::async_trait;
use iceberg::spec::DataFile;

use super::row_delta::{conflict_check, ChangedFile, FileOutcome, Replan, RowDelta, WrittenSpecs};
use super::row_plan::{counts_of, rows_matching, write_changes, ReadState, WriteRule};
use super::OverwriteOptions;
use crate::error::Result;
use crate::table::deletes::RowLevelMode;
use crate::table::filter::RowFilter;
use crate::table::Table;

/// Plan replacing the rows matching `filter` (all when `None`) with the rows already written to
/// `files` (with partition spec `files_spec`), on the branch head of `read`. On error, the rewrites
/// written so far are deleted (the caller owns `files`).
pub(crate) async fn plan(
    read: &Table,
    filter: Option<RowFilter>,
    files: Vec<DataFile>,
    files_spec: i32,
    options: &OverwriteOptions,
) -> Result<RowDelta> {
    let write = &options.write;
    let state = ReadState::of(read, &write.branch).await?;
    let (read_set, changed, planned) = match &filter {
        None => {
            let changed: Vec<ChangedFile> = state
                .files
                .data
                .iter()
                .map(|data| ChangedFile {
                    data: data.clone(),
                    deleted: Arc::new(every_live_row(&state, data)),
                    outcome: FileOutcome::Removed { rewritten: false },
                })
                .collect();
            (state.all_paths(), changed, Vec::new())
        }
        Some(f) => {
            let hits = rows_matching(&state, f).await?;
            let rule = WriteRule {
                mode: RowLevelMode::CopyOnWrite,
                threshold: 0.0,
                target_file_size: write.target_file_size,
            };
            let (changed, planned) = write_changes(&state, hits.hits, rule).await?;
            (hits.read_set, changed, planned)
        }
    };
    let replan: Option<Arc<dyn Replan>> = options.replan_on_conflict.then(|| {
        Arc::new(OverwriteAgain {
            filter: filter.clone(),
            files: files.clone(),
            files_spec,
            options: options.clone(),
        }) as Arc<dyn Replan>
    });
    let mut counts = counts_of(&changed);
    counts.inserted = files.iter().map(|f| f.record_count()).sum();
    Ok(RowDelta {
        verb: "overwrite",
        updates_rows: true,
        read_snapshot: state.read_snapshot(),
        read_sequence: state.read_sequence(),
        read_set: Arc::new(read_set),
        changed,
        planned,
        given: files,
        specs: WrittenSpecs {
            given: files_spec,
            ..WrittenSpecs::of(read)
        },
        conflicts: conflict_check(options.isolation, filter.as_ref()),
        write: write.clone(),
        replan,
        counts,
    })
}

/// The positions of `data`'s rows as far as counting goes: its rows less those its own position
/// delete files remove (a whole-table overwrite reads no row).
fn every_live_row(state: &ReadState, data: &crate::table::entries::LiveFile) -> roaring::RoaringTreemap {
    let deleted: u64 = state
        .index
        .file_scoped(data.path())
        .iter()
        .map(|d| d.file.record_count())
        .sum();
    let mut rows = roaring::RoaringTreemap::new();
    rows.insert_range(0..data.file.record_count().saturating_sub(deleted));
    rows
}

/// An overwrite whose new rows do not derive from the table, planned again on a new head.
struct OverwriteAgain {
    filter: Option<RowFilter>,
    files: Vec<DataFile>,
    files_spec: i32,
    options: OverwriteOptions,
}

#[async_trait]
impl Replan for OverwriteAgain {
    async fn replan(&self, base: &Table) -> Result<RowDelta> {
        plan(
            base,
            self.filter.clone(),
            self.files.clone(),
            self.files_spec,
            &self.options,
        )
        .await
    }
}
