//! Delete: remove the rows matching a filter, in the table's row-level mode (`--row-mode`, else the
//! table's `write.delete.mode`, else copy-on-write): files whose every live row matches are dropped;
//! files with some matching rows get a position delete file (merge-on-read) or are rewritten without
//! them (copy-on-write), or in `auto` whichever their deleted fraction calls for. A filter that matches
//! nothing commits no snapshot, as in Iceberg Java. Planned again on the new head when a compaction
//! replaced files it read (a delete's effect is its filter's, wherever the rows now are).

use std::sync::Arc;

use async_trait::async_trait;

use super::row_delta::{conflict_check, Replan, RowDelta, WrittenSpecs};
use super::row_plan::{counts_of, rows_matching, write_changes, ReadState, WriteRule};
use super::DeleteOptions;
use crate::error::Result;
use crate::table::deletes::{delete_ratio_threshold, RowLevelMode};
use crate::table::filter::RowFilter;
use crate::table::Table;

/// Plan deleting the rows matching `filter` on the branch head of `read`.
pub(crate) async fn plan(read: &Table, filter: RowFilter, options: &DeleteOptions) -> Result<RowDelta> {
    filter.compile(&read.arrow_schema()?)?;
    let rule = WriteRule {
        mode: RowLevelMode::resolve(
            options.row_mode,
            read,
            "write.delete.mode",
            RowLevelMode::CopyOnWrite,
        )?,
        threshold: delete_ratio_threshold(options.delete_ratio_threshold, read)?,
        target_file_size: options.write.target_file_size,
    };
    let state = ReadState::of(read, &options.write.branch).await?;
    let hits = rows_matching(&state, &filter).await?;
    let read_set = Arc::new(hits.read_set);
    let (changed, planned) = write_changes(&state, hits.hits, rule).await?;
    let counts = counts_of(&changed);
    Ok(RowDelta {
        verb: "delete",
        updates_rows: false,
        read_snapshot: state.read_snapshot(),
        read_sequence: state.read_sequence(),
        read_set,
        changed,
        planned,
        given: Vec::new(),
        specs: WrittenSpecs::of(read),
        conflicts: conflict_check(options.isolation, Some(&filter)),
        write: options.write.clone(),
        replan: Some(Arc::new(DeleteAgain {
            filter,
            options: options.clone(),
        })),
        counts,
    })
}

/// A delete planned again on a new head.
struct DeleteAgain {
    filter: RowFilter,
    options: DeleteOptions,
}

#[async_trait]
impl Replan for DeleteAgain {
    async fn replan(&self, base: &Table) -> Result<RowDelta> {
        plan(base, self.filter.clone(), &self.options).await
    }
}
