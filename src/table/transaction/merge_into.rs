//! MERGE: change a table's rows from a source by SQL MERGE semantics ([`MergeSpec`]: `ON` and
//! `WHEN` clauses, the first matching clause winning). Matching ([`matching`]) finds the target rows
//! each clause deletes or replaces and computes the new rows; the changed files are written in the
//! table's row-level mode (`write.merge.mode`, else `auto`: per file, a position delete file or a
//! rewrite); the new rows go into new data files; and the whole is one [`RowDelta`], validated like
//! every row-level change. Under `serializable`, rows added meanwhile that hold one of the source's
//! keys conflict (any added row when a `not matched by source` clause reads the whole table). The
//! source is kept, so a merge whose files were replaced by a compaction is matched again on the new
//! head. Upserts ([`super::upsert`]) are merges built from options.

mod exprs;
mod matching;
mod spec;

use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;

pub(crate) use matching::KeyProbe;
pub use matching::RowCounts;
pub use spec::{Assignments, MergeClause, MergeSpec};

use self::spec::ClauseKind;
use super::delete_quietly;
use super::row_delta::{ConflictCheck, Replan, RowDelta, WrittenSpecs};
use super::row_plan::{counts_of, write_changes, ReadState, WriteRule};
use super::{Isolation, RowLevelOptions};
use crate::error::{Error, Result};
use crate::table::deletes::{delete_ratio_threshold, RowLevelMode};
use crate::table::writer::write_batches;
use crate::table::Table;

/// Which table property names a row-level change's default mode.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Verb {
    pub(crate) name: &'static str,
    pub(crate) mode_property: &'static str,
}

pub(crate) const MERGE: Verb = Verb {
    name: "merge",
    mode_property: "write.merge.mode",
};

/// Plan merging `source` (one batch) into the branch head of `read`.
pub(crate) async fn plan(
    read: &Table,
    source: Arc<RecordBatch>,
    spec: &MergeSpec,
    options: &RowLevelOptions,
    verb: Verb,
) -> Result<RowDelta> {
    if spec.clauses.is_empty() {
        return Err(Error::invalid(format!(
            "a {} needs at least one WHEN clause",
            verb.name
        )));
    }
    let write = &options.write;
    let rule = WriteRule {
        mode: RowLevelMode::resolve(options.row_mode, read, verb.mode_property, RowLevelMode::Auto)?,
        threshold: delete_ratio_threshold(options.delete_ratio_threshold, read)?,
        target_file_size: write.target_file_size,
    };
    let state = ReadState::of(read, &write.branch).await?;
    let matched = matching::match_source(&state, &source, spec).await?;
    let (changed, mut planned) = write_changes(&state, matched.hits, rule).await?;
    let rows = futures::stream::iter(matched.new_rows.into_iter().map(Ok));
    match write_batches(read, Box::pin(rows), write.target_file_size).await {
        Ok(files) => planned.extend(files),
        Err(e) => {
            let mut written: Vec<String> = planned.iter().map(|f| f.file_path().to_string()).collect();
            written.extend(changed.iter().filter_map(|c| match &c.outcome {
                super::row_delta::FileOutcome::Deletes { delete_file, .. } => {
                    Some(delete_file.file_path().to_string())
                }
                _ => None,
            }));
            delete_quietly(read.storage(), written).await;
            return Err(e);
        }
    }
    let mut counts = counts_of(&changed);
    counts.deleted = matched.counts.deleted;
    counts.inserted = matched.counts.inserted;
    counts.updated = matched.counts.updated;
    counts.unchanged = matched.counts.unchanged;
    let reads_everything = spec
        .clauses
        .iter()
        .any(|c| c.kind() == ClauseKind::NotMatchedBySource);
    let conflicts = match (options.isolation, reads_everything) {
        (Isolation::Snapshot, _) => ConflictCheck::Nothing,
        (Isolation::Serializable, true) => ConflictCheck::AnyAddition,
        (Isolation::Serializable, false) => ConflictCheck::Keys(matched.keys),
    };
    Ok(RowDelta {
        verb: verb.name,
        updates_rows: true,
        read_snapshot: state.read_snapshot(),
        read_sequence: state.read_sequence(),
        read_set: Arc::new(matched.read_set),
        changed,
        planned,
        given: Vec::new(),
        specs: WrittenSpecs::of(read),
        conflicts,
        write: write.clone(),
        replan: Some(Arc::new(MergeAgain {
            source,
            spec: spec.clone(),
            options: options.clone(),
            verb,
        })),
        counts,
    })
}

/// A merge matched again on a new head.
struct MergeAgain {
    source: Arc<RecordBatch>,
    spec: MergeSpec,
    options: RowLevelOptions,
    verb: Verb,
}

#[async_trait]
impl Replan for MergeAgain {
    async fn replan(&self, base: &Table) -> Result<RowDelta> {
        plan(base, self.source.clone(), &self.spec, &self.options, self.verb).await
    }
}

/// The batches of a source as one batch (they must share one schema).
pub(crate) fn one_batch(batches: Vec<RecordBatch>) -> Result<RecordBatch> {
    let Some(first) = batches.first() else {
        return Err(Error::invalid("the source has no rows and no schema"));
    };
    let schema = first.schema();
    if let Some(other) = batches.iter().find(|b| b.schema().fields() != schema.fields()) {
        return Err(Error::invalid(format!(
            "the source's batches differ in schema: {} and {}",
            schema,
            other.schema()
        )));
    }
    Ok(arrow::compute::concat_batches(&schema, &batches)?)
}
