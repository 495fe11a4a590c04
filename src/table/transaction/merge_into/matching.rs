//! Matching a MERGE's source against the target as the change read it. The `ON` condition's
//! equalities between a target and a source expression are the join keys: the source is hashed on
//! them (rows with a NULL key match nothing, as in SQL), the target's live rows are streamed file by
//! file, on every core, from the files the keys' ranges may reach (all of them when a `not matched by
//! source` clause needs every row), and the rest of `ON` is checked on each candidate pair. Each
//! matched pair, unmatched target row and unmatched source row then takes the first clause whose
//! condition holds: its target row's position is deleted (update, delete) and its new row is
//! computed (update, insert). Expressions are SQL over `t.` and `s.` columns, planned by DataFusion.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{and, filter_record_batch, not, take};
use arrow::datatypes::{Field, Schema, SchemaRef as ArrowSchemaRef};
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{Column, DFSchema};
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Accumulator, BinaryExpr, Expr, ExprSchemable, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use roaring::RoaringTreemap;
use serde::Serialize;

use super::exprs::{any_null, evaluate_keys, is_target, logical, nullable, physical, sides, truth, widen};
use super::spec::{Assignments, ClauseKind, MergeClause, MergeSpec};
use crate::error::{Error, Result};
use crate::table::deletes::live_rows;
use crate::table::entries::LiveFile;
use crate::table::filter::RowFilter;
use crate::table::transaction::row_plan::{files_that_may_match, Hit, ReadState};
use crate::table::writer::conform;

/// What matching found: the target rows to delete (by file and position), the new rows, and how
/// many rows each clause took.
pub(crate) struct Matched {
    pub(crate) hits: Vec<Hit>,
    pub(crate) read_set: HashSet<String>,
    /// New rows, in the table's schema.
    pub(crate) new_rows: Vec<RecordBatch>,
    pub(crate) counts: RowCounts,
    /// The source's join keys, for the serializable check against rows added meanwhile.
    pub(crate) keys: KeyProbe,
}

/// How many rows a row-level change inserted, updated, deleted or left as they were, and how it
/// wrote them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RowCounts {
    /// New rows (an update's new version of a row is counted under `updated`).
    pub inserted: u64,
    /// Rows replaced by a new version.
    pub updated: u64,
    /// Rows removed.
    pub deleted: u64,
    /// Matched rows no clause changed (an upsert's rows that were already as the source has them).
    pub unchanged: u64,
    /// Data files rewritten without their changed rows (copy-on-write).
    pub files_rewritten: u64,
    /// Position delete files written (merge-on-read).
    pub delete_files_added: u64,
}

impl std::ops::AddAssign for RowCounts {
    fn add_assign(&mut self, o: Self) {
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.deleted += o.deleted;
        self.unchanged += o.unchanged;
        self.files_rewritten += o.files_rewritten;
        self.delete_files_added += o.delete_files_added;
    }
}

/// The target side of the join keys and the source's key values: finds rows of files added
/// meanwhile that hold a key the change writes.
#[derive(Clone)]
pub(crate) struct KeyProbe {
    schema: iceberg::spec::SchemaRef,
    full: ArrowSchemaRef,
    ids: Vec<i32>,
    target_keys: Vec<Arc<dyn PhysicalExpr>>,
    fields: Vec<SortField>,
    keys: Arc<HashSet<Box<[u8]>>>,
}

impl KeyProbe {
    /// Whether `file` (of `table`) has a live row with one of the keys.
    pub(crate) async fn hits(
        &self,
        table: &crate::table::Table,
        file: &LiveFile,
        deletes: &crate::table::deletes::index::FileDeletes,
    ) -> Result<bool> {
        if self.keys.is_empty() {
            return Ok(false);
        }
        let converter = RowConverter::new(self.fields.clone())?;
        let mut rows = live_rows(table, file, deletes, self.schema.clone(), self.ids.clone()).await?;
        while let Some((batch, _)) = rows.try_next().await? {
            let full = widen(&batch, &self.full)?;
            let keys = evaluate_keys(&self.target_keys, &full)?;
            let converted = converter.convert_columns(&keys)?;
            if (0..full.num_rows())
                .any(|i| !any_null(&keys, i) && self.keys.contains(converted.row(i).as_ref()))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// One clause, planned.
struct PlannedClause {
    kind: ClauseKind,
    condition: Option<Arc<dyn PhysicalExpr>>,
    action: Action,
}

enum Action {
    Delete,
    /// One value per table column (`None`: NULL).
    Write(Vec<Option<Arc<dyn PhysicalExpr>>>),
}

/// Everything planned once for a merge, shared by the file tasks.
struct Plan {
    table: crate::table::Table,
    /// The table's schema as Arrow, every field nullable (the target side of the joined rows).
    target: ArrowSchemaRef,
    /// The table's schema as written (nullability kept), for the new rows.
    table_arrow: ArrowSchemaRef,
    source: RecordBatch,
    joined: ArrowSchemaRef,
    target_keys: Vec<Arc<dyn PhysicalExpr>>,
    residual: Option<Arc<dyn PhysicalExpr>>,
    clauses: Vec<PlannedClause>,
    converter_fields: Vec<SortField>,
    /// Source key → source rows.
    by_key: HashMap<Box<[u8]>, Vec<u32>>,
    /// Target columns to read (by field id); the rest are NULL in the joined rows.
    ids: Vec<i32>,
}

/// Match `source` against the live rows of `state` by `spec`.
pub(crate) async fn match_source(
    state: &ReadState,
    source: &RecordBatch,
    spec: &MergeSpec,
) -> Result<Matched> {
    let plan = Arc::new(plan(state, source, spec)?);
    let candidates = candidate_files(state, &plan, spec).await?;
    let read_set: HashSet<String> = candidates.iter().map(|f| f.path().to_string()).collect();
    let mut matched_sources = vec![false; source.num_rows()];
    let mut counts = RowCounts::default();
    let mut new_rows = Vec::new();
    let mut hits = Vec::new();
    let tasks = candidates.into_iter().map(|data| {
        let plan = plan.clone();
        let deletes = state.index.for_data_file(&data);
        async move { match_file(&plan, data, deletes).await }
    });
    let mut results = futures::stream::iter(tasks).buffer_unordered(crate::resources::cores().max(1));
    while let Some(file) = results.try_next().await? {
        for s in file.matched_sources {
            matched_sources[s as usize] = true;
        }
        counts += file.counts;
        new_rows.extend(file.new_rows);
        if !file.positions.is_empty() {
            hits.push(Hit {
                data: file.data,
                positions: file.positions,
                live_rows: file.live_rows,
            });
        }
    }
    // Source rows that matched no target row.
    let unmatched: Vec<u32> = (0..source.num_rows() as u32)
        .filter(|s| !matched_sources[*s as usize])
        .collect();
    if !unmatched.is_empty() && plan.clauses.iter().any(|c| c.kind == ClauseKind::NotMatched) {
        let joined = plan.joined_rows(None, Some(&unmatched))?;
        let outcome = plan.apply_clauses(ClauseKind::NotMatched, &joined)?;
        counts.inserted += outcome.written;
        new_rows.extend(outcome.rows);
    }
    hits.sort_by(|a, b| a.data.path().cmp(b.data.path()));
    let keys = KeyProbe {
        schema: plan.table.schema().clone(),
        full: plan.target.clone(),
        ids: plan.ids.clone(),
        target_keys: plan.target_keys.clone(),
        fields: plan.converter_fields.clone(),
        keys: Arc::new(plan.by_key.keys().cloned().collect()),
    };
    Ok(Matched {
        hits,
        read_set,
        new_rows,
        counts,
        keys,
    })
}

/// Plan the keys, the residual condition and the clauses.
fn plan(state: &ReadState, source: &RecordBatch, spec: &MergeSpec) -> Result<Plan> {
    let table = state.table.clone();
    let table_arrow = table.arrow_schema()?;
    let target = Arc::new(nullable(&table_arrow));
    let source_schema = Arc::new(nullable(&source.schema()));
    let t_schema = DFSchema::try_from_qualified_schema("t", &target)?;
    let s_schema = DFSchema::try_from_qualified_schema("s", &source_schema)?;
    let joined_df = Arc::new(t_schema.join(&s_schema)?);
    let joined = Arc::new(joined_df.as_arrow().clone());
    let ctx = SessionContext::new();

    let on = logical(&ctx, &joined_df, "ON", &spec.on)?;
    let (pairs, residual) = split_on(&on);
    if pairs.is_empty() {
        return Err(Error::invalid(format!(
            "invalid merge ON {:?}: it needs an equality between a target and a source expression \
             (like t.id = s.id), which is how rows are matched",
            spec.on
        )));
    }
    let t_only = Arc::new(DFSchema::try_from_qualified_schema("t", &target)?);
    let s_only = Arc::new(DFSchema::try_from_qualified_schema("s", &source_schema)?);
    let mut target_keys = Vec::new();
    let mut source_keys = Vec::new();
    let mut converter_fields = Vec::new();
    for (t, s) in &pairs {
        let t_type = t.to_field(&joined_df)?.1.data_type().clone();
        target_keys.push(physical(&ctx, &t_only, "ON", t.clone())?);
        source_keys.push(physical(&ctx, &s_only, "ON", s.clone())?);
        converter_fields.push(SortField::new(t_type));
    }
    let residual = match residual.into_iter().reduce(|a, b| a.and(b)) {
        Some(r) => Some(physical(&ctx, &joined_df, "ON", r)?),
        None => None,
    };

    let mut referenced: HashSet<String> = on
        .column_refs()
        .iter()
        .filter(|c| is_target(c))
        .map(|c| c.name.clone())
        .collect();
    let clauses = plan_clauses(
        &ctx,
        &joined_df,
        &table_arrow,
        &source_schema,
        spec,
        &mut referenced,
    )?;
    let schema = table.schema();
    let mut ids: Vec<i32> = schema
        .as_struct()
        .fields()
        .iter()
        .filter(|f| referenced.contains(&f.name))
        .map(|f| f.id)
        .collect();
    if ids.is_empty() {
        ids.extend(schema.as_struct().fields().first().map(|f| f.id));
    }

    let source = RecordBatch::try_new(source_schema.clone(), source.columns().to_vec())?;
    let by_key = hash_source(&source, &source_keys, &converter_fields)?;
    Ok(Plan {
        table,
        target,
        table_arrow,
        source,
        joined,
        target_keys,
        residual,
        clauses,
        converter_fields,
        by_key,
        ids,
    })
}

/// The `ON` condition's equalities between a target and a source expression, as (target, source)
/// pairs, and the rest of it.
fn split_on(on: &Expr) -> (Vec<(Expr, Expr)>, Vec<Expr>) {
    let (mut pairs, mut residual) = (Vec::new(), Vec::new());
    for part in split_conjunction(on) {
        match part {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => {
                let (l, r) = (sides(left), sides(right));
                let (t, s) = (HashSet::from(["t".to_string()]), HashSet::from(["s".to_string()]));
                if l == t && r == s {
                    pairs.push(((**left).clone(), (**right).clone()));
                } else if l == s && r == t {
                    pairs.push(((**right).clone(), (**left).clone()));
                } else {
                    residual.push(part.clone());
                }
            }
            other => residual.push(other.clone()),
        }
    }
    (pairs, residual)
}

/// Each clause's condition and action planned over the joined schema; the target columns they
/// read are added to `referenced`.
fn plan_clauses(
    ctx: &SessionContext,
    joined_df: &Arc<DFSchema>,
    table_arrow: &ArrowSchemaRef,
    source_schema: &ArrowSchemaRef,
    spec: &MergeSpec,
    referenced: &mut HashSet<String>,
) -> Result<Vec<PlannedClause>> {
    let mut clauses = Vec::new();
    for clause in &spec.clauses {
        let condition = match clause.condition() {
            Some(sql) => {
                let e = logical(ctx, joined_df, "condition", sql)?;
                referenced.extend(
                    e.column_refs()
                        .iter()
                        .filter(|c| is_target(c))
                        .map(|c| c.name.clone()),
                );
                Some(physical(ctx, joined_df, "condition", e)?)
            }
            None => None,
        };
        let action = match clause {
            MergeClause::DeleteMatched { .. } | MergeClause::DeleteNotMatchedBySource { .. } => {
                Action::Delete
            }
            MergeClause::UpdateMatched { set, .. } | MergeClause::InsertNotMatched { values: set, .. } => {
                let update = matches!(clause, MergeClause::UpdateMatched { .. });
                let values = assignments(ctx, joined_df, table_arrow, source_schema, set, update)?;
                for (sql, _) in values.iter().flatten() {
                    let e = logical(ctx, joined_df, "value", sql)?;
                    referenced.extend(
                        e.column_refs()
                            .iter()
                            .filter(|c| is_target(c))
                            .map(|c| c.name.clone()),
                    );
                }
                Action::Write(values.into_iter().map(|v| v.map(|(_, p)| p)).collect())
            }
        };
        clauses.push(PlannedClause {
            kind: clause.kind(),
            condition,
            action,
        });
    }
    Ok(clauses)
}

/// The source's rows by their join key (rows with a NULL key match nothing).
fn hash_source(
    source: &RecordBatch,
    source_keys: &[Arc<dyn PhysicalExpr>],
    converter_fields: &[SortField],
) -> Result<HashMap<Box<[u8]>, Vec<u32>>> {
    let converter = RowConverter::new(converter_fields.to_vec())?;
    let keys = evaluate_keys(source_keys, source)?;
    let rows = converter.convert_columns(&keys)?;
    let mut by_key: HashMap<Box<[u8]>, Vec<u32>> = HashMap::with_capacity(source.num_rows());
    for i in 0..source.num_rows() {
        if !any_null(&keys, i) {
            by_key
                .entry(rows.row(i).as_ref().into())
                .or_default()
                .push(i as u32);
        }
    }
    Ok(by_key)
}

/// A column's new value: its SQL and its plan.
type PlannedValue = (String, Arc<dyn PhysicalExpr>);

/// One value per table column for an update (`update`) or an insert: SQL and its plan, `None` for
/// NULL.
fn assignments(
    ctx: &SessionContext,
    joined: &Arc<DFSchema>,
    table: &ArrowSchemaRef,
    source: &ArrowSchemaRef,
    set: &Assignments,
    update: bool,
) -> Result<Vec<Option<PlannedValue>>> {
    let quoted = |side: &str, name: &str| format!("{side}.\"{}\"", name.replace('"', "\"\""));
    let explicit: HashMap<&str, &str> = match set {
        Assignments::All => HashMap::new(),
        Assignments::Columns(cols) => {
            for (c, _) in cols {
                if table.field_with_name(c).is_err() {
                    return Err(Error::invalid(format!(
                        "invalid merge: the table has no column {c:?} to set"
                    )));
                }
            }
            cols.iter().map(|(c, v)| (c.as_str(), v.as_str())).collect()
        }
    };
    table
        .fields()
        .iter()
        .map(|f| {
            let name = f.name();
            let sql = match (set, explicit.get(name.as_str())) {
                (Assignments::All, _) if source.field_with_name(name).is_ok() => Some(quoted("s", name)),
                (Assignments::Columns(_), Some(v)) => Some(v.to_string()),
                _ if update => Some(quoted("t", name)),
                _ => None,
            };
            match sql {
                None => Ok(None),
                Some(sql) => {
                    let e = logical(ctx, joined, "value", &sql)?;
                    Ok(Some((sql, physical(ctx, joined, "value", e)?)))
                }
            }
        })
        .collect()
}

/// The files the source's keys may reach: every live file when some clause needs every target row,
/// else those whose statistics admit the keys' ranges.
async fn candidate_files(state: &ReadState, plan: &Plan, spec: &MergeSpec) -> Result<Vec<LiveFile>> {
    let everything = spec
        .clauses
        .iter()
        .any(|c| c.kind() == ClauseKind::NotMatchedBySource);
    if everything || plan.by_key.is_empty() {
        return Ok(if everything {
            state.files.data.clone()
        } else {
            Vec::new()
        });
    }
    let filter = key_range_filter(plan, spec)?;
    let paths = match filter {
        Some(f) => files_that_may_match(&state.table, state.head.as_ref(), &f).await?,
        None => None,
    };
    Ok(state
        .files
        .data
        .iter()
        .filter(|f| paths.as_ref().is_none_or(|p| p.contains(f.path())))
        .cloned()
        .collect())
}

/// `col BETWEEN min AND max` over the source's values, for each key whose target side is a plain
/// column: prunes files by partition values and column bounds.
fn key_range_filter(plan: &Plan, spec: &MergeSpec) -> Result<Option<RowFilter>> {
    let ctx = SessionContext::new();
    let t_schema = DFSchema::try_from_qualified_schema("t", &plan.target)?;
    let s_schema = DFSchema::try_from_qualified_schema("s", &Arc::new(nullable(&plan.source.schema())))?;
    let joined = Arc::new(t_schema.join(&s_schema)?);
    let on = logical(&ctx, &joined, "ON", &spec.on)?;
    let s_only = DFSchema::try_from_qualified_schema("s", &Arc::new(nullable(&plan.source.schema())))?;
    let mut ranges: Vec<Expr> = Vec::new();
    for part in split_conjunction(&on) {
        let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) = part
        else {
            continue;
        };
        let (t, s) = if sides(left) == HashSet::from(["t".to_string()]) {
            (left, right)
        } else {
            (right, left)
        };
        let column = match t.as_ref() {
            Expr::Column(c) if is_target(c) => c.name.clone(),
            Expr::Cast(cast) => match cast.expr.as_ref() {
                Expr::Column(c) if is_target(c) => c.name.clone(),
                _ => continue,
            },
            _ => continue,
        };
        if sides(s) != HashSet::from(["s".to_string()]) {
            continue;
        }
        let values = physical(&ctx, &s_only, "ON", (**s).clone())?
            .evaluate(&plan.source)?
            .into_array(plan.source.num_rows())?;
        let mut min = MinAccumulator::try_new(values.data_type())?;
        let mut max = MaxAccumulator::try_new(values.data_type())?;
        min.update_batch(std::slice::from_ref(&values))?;
        max.update_batch(std::slice::from_ref(&values))?;
        let (lo, hi) = (min.evaluate()?, max.evaluate()?);
        if lo.is_null() || hi.is_null() {
            continue;
        }
        let col = Expr::Column(Column::from_name(column));
        ranges.push(col.between(Expr::Literal(lo, None), Expr::Literal(hi, None)));
    }
    Ok(ranges.into_iter().reduce(|a, b| a.and(b)).map(RowFilter::expr))
}

/// What matching one target file found.
struct FileMatch {
    data: LiveFile,
    positions: RoaringTreemap,
    live_rows: u64,
    matched_sources: Vec<u32>,
    new_rows: Vec<RecordBatch>,
    counts: RowCounts,
}

async fn match_file(
    plan: &Plan,
    data: LiveFile,
    deletes: crate::table::deletes::index::FileDeletes,
) -> Result<FileMatch> {
    let converter = RowConverter::new(plan.converter_fields.clone())?;
    let mut out = FileMatch {
        data: data.clone(),
        positions: RoaringTreemap::new(),
        live_rows: 0,
        matched_sources: Vec::new(),
        new_rows: Vec::new(),
        counts: RowCounts::default(),
    };
    let by_source = plan
        .clauses
        .iter()
        .any(|c| c.kind == ClauseKind::NotMatchedBySource);
    let mut rows = live_rows(
        &plan.table,
        &data,
        &deletes,
        plan.table.schema().clone(),
        plan.ids.clone(),
    )
    .await?;
    while let Some((batch, positions)) = rows.try_next().await? {
        out.live_rows += batch.num_rows() as u64;
        let full = widen(&batch, &plan.target)?;
        let keys = evaluate_keys(&plan.target_keys, &full)?;
        let converted: Rows = converter.convert_columns(&keys)?;
        let (mut t_idx, mut s_idx) = (Vec::new(), Vec::new());
        for i in 0..full.num_rows() {
            if any_null(&keys, i) {
                continue;
            }
            if let Some(sources) = plan.by_key.get(converted.row(i).as_ref()) {
                for s in sources {
                    t_idx.push(i as u32);
                    s_idx.push(*s);
                }
            }
        }
        let (t_idx, s_idx) = plan.keep_residual(&full, t_idx, s_idx)?;
        check_single_match(&t_idx, &data)?;
        out.matched_sources.extend(&s_idx);
        if !t_idx.is_empty() {
            let joined = plan.joined_rows(Some((&full, &t_idx)), Some(&s_idx))?;
            let outcome = plan.apply_clauses(ClauseKind::Matched, &joined)?;
            for (k, deleted) in outcome.deleted.iter().enumerate() {
                if *deleted {
                    out.positions.insert(positions.value(t_idx[k] as usize));
                }
            }
            out.counts.updated += outcome.written;
            out.counts.deleted += outcome.deleted_rows - outcome.written;
            out.counts.unchanged += t_idx.len() as u64 - outcome.deleted_rows;
            out.new_rows.extend(outcome.rows);
        }
        if by_source {
            let matched: HashSet<u32> = t_idx.iter().copied().collect();
            let unmatched: Vec<u32> = (0..full.num_rows() as u32)
                .filter(|i| !matched.contains(i))
                .collect();
            if !unmatched.is_empty() {
                let joined = plan.joined_rows(Some((&full, &unmatched)), None)?;
                let outcome = plan.apply_clauses(ClauseKind::NotMatchedBySource, &joined)?;
                for (k, deleted) in outcome.deleted.iter().enumerate() {
                    if *deleted {
                        out.positions.insert(positions.value(unmatched[k] as usize));
                    }
                }
                out.counts.deleted += outcome.deleted_rows;
            }
        }
    }
    Ok(out)
}

/// A target row matched by several source rows: SQL's MERGE refuses it.
fn check_single_match(t_idx: &[u32], data: &LiveFile) -> Result<()> {
    let mut seen = HashSet::with_capacity(t_idx.len());
    for t in t_idx {
        if !seen.insert(*t) {
            return Err(Error::invalid(format!(
                "merge matched one target row (in {}) with several source rows: make the source unique on the \
                 ON keys (an upsert can keep the latest with --dedupe latest:COL)",
                data.path()
            )));
        }
    }
    Ok(())
}

/// What the clauses of one kind did to a set of joined rows.
struct ClauseOutcome {
    /// Per row: its target row goes (updated or deleted).
    deleted: Vec<bool>,
    deleted_rows: u64,
    /// Rows written (updated or inserted).
    written: u64,
    rows: Vec<RecordBatch>,
}

impl Plan {
    /// Joined rows: the target rows `target` picks (NULL when `None`) beside the source rows `source`
    /// picks (NULL when `None`).
    fn joined_rows(
        &self,
        target: Option<(&RecordBatch, &[u32])>,
        source: Option<&[u32]>,
    ) -> Result<RecordBatch> {
        let n = target
            .map(|(_, i)| i.len())
            .or(source.map(|s| s.len()))
            .unwrap_or(0);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.joined.fields().len());
        match target {
            Some((batch, idx)) => {
                let idx = UInt32Array::from(idx.to_vec());
                for c in batch.columns() {
                    columns.push(take(c, &idx, None)?);
                }
            }
            None => columns.extend(
                self.target
                    .fields()
                    .iter()
                    .map(|f| new_null_array(f.data_type(), n)),
            ),
        }
        match source {
            Some(idx) => {
                let idx = UInt32Array::from(idx.to_vec());
                for c in self.source.columns() {
                    columns.push(take(c, &idx, None)?);
                }
            }
            None => columns.extend(
                self.source
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| new_null_array(f.data_type(), n)),
            ),
        }
        Ok(RecordBatch::try_new(self.joined.clone(), columns)?)
    }

    /// The candidate pairs the rest of `ON` keeps.
    fn keep_residual(
        &self,
        full: &RecordBatch,
        t_idx: Vec<u32>,
        s_idx: Vec<u32>,
    ) -> Result<(Vec<u32>, Vec<u32>)> {
        let Some(residual) = &self.residual else {
            return Ok((t_idx, s_idx));
        };
        if t_idx.is_empty() {
            return Ok((t_idx, s_idx));
        }
        let joined = self.joined_rows(Some((full, &t_idx)), Some(&s_idx))?;
        let keep = truth(residual, &joined)?;
        let pick = |v: &[u32]| (0..v.len()).filter(|i| keep.value(*i)).map(|i| v[i]).collect();
        Ok((pick(&t_idx), pick(&s_idx)))
    }

    /// Each row takes the first clause of `kind` whose condition holds.
    fn apply_clauses(&self, kind: ClauseKind, joined: &RecordBatch) -> Result<ClauseOutcome> {
        let n = joined.num_rows();
        let mut out = ClauseOutcome {
            deleted: vec![false; n],
            deleted_rows: 0,
            written: 0,
            rows: Vec::new(),
        };
        let mut remaining = BooleanArray::from(vec![true; n]);
        for clause in self.clauses.iter().filter(|c| c.kind == kind) {
            let taken = match &clause.condition {
                Some(c) => and(&remaining, &truth(c, joined)?)?,
                None => remaining.clone(),
            };
            if taken.true_count() == 0 {
                continue;
            }
            remaining = and(&remaining, &not(&taken)?)?;
            if kind != ClauseKind::NotMatched {
                for i in (0..n).filter(|i| taken.value(*i)) {
                    out.deleted[i] = true;
                }
                out.deleted_rows += taken.true_count() as u64;
            }
            if let Action::Write(values) = &clause.action {
                let rows = filter_record_batch(joined, &taken)?;
                out.written += rows.num_rows() as u64;
                out.rows.push(self.new_rows(values, &rows)?);
            }
            if remaining.true_count() == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// The table rows `values` compute from joined `rows`.
    fn new_rows(&self, values: &[Option<Arc<dyn PhysicalExpr>>], rows: &RecordBatch) -> Result<RecordBatch> {
        let n = rows.num_rows();
        let mut fields = Vec::with_capacity(values.len());
        let mut columns = Vec::with_capacity(values.len());
        for (f, v) in self.table_arrow.fields().iter().zip(values) {
            let column = match v {
                Some(e) => e.evaluate(rows)?.into_array(n)?,
                None => new_null_array(f.data_type(), n),
            };
            fields.push(Field::new(f.name(), column.data_type().clone(), true));
            columns.push(column);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        conform(self.table.name(), &batch, &self.table_arrow)
    }
}
