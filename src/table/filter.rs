//! Row filters: a SQL predicate (`event_time < '2024-01-02' AND country = 'FR'`) or a DataFusion
//! expression. Filters prune files through Iceberg's manifest statistics and are then evaluated
//! exactly on rows with DataFusion; a row whose predicate is NULL does not match.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::compute::{filter_record_batch, not, prep_null_mask_filter};
use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use datafusion::common::DFSchema;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::Expr;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use iceberg::expr::{Bind, Predicate};
use iceberg::spec::{DataFile, SnapshotRef};

use super::commit::{AttemptFiles, CommitOptions};
use super::writer::DataWriter;
use super::Table;
use crate::error::{Error, ErrorKind, Result};
use crate::lakehouse::Floe;

/// Which rows an overwrite replaces, a delete removes, or a scan returns.
#[derive(Clone, Debug)]
pub struct RowFilter(FilterSource);

#[derive(Clone, Debug)]
enum FilterSource {
    Sql(String),
    Expr(Expr),
}

impl RowFilter {
    /// A SQL boolean expression over the table's columns.
    pub fn sql(predicate: impl Into<String>) -> Self {
        RowFilter(FilterSource::Sql(predicate.into()))
    }

    /// A DataFusion expression.
    pub fn expr(expr: Expr) -> Self {
        RowFilter(FilterSource::Expr(expr))
    }

    /// Bind the filter to a schema: parse, type-check and plan it.
    pub(crate) fn compile(&self, schema: &ArrowSchemaRef) -> Result<CompiledFilter> {
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let ctx = SessionContext::new();
        let expr = match &self.0 {
            FilterSource::Sql(sql) => ctx
                .parse_sql_expr(sql, &df_schema)
                .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("invalid filter {sql:?}: {e}")))?,
            FilterSource::Expr(e) => e.clone(),
        };
        let invalid = |e: datafusion::error::DataFusionError| {
            Error::new(ErrorKind::InvalidInput, format!("invalid filter {}: {e}", self))
        };
        // Coerce and fold literals (`amount < 45` on a double column becomes `amount < 45.0`), so
        // that Iceberg can bind the predicate it prunes files with.
        let df_schema = Arc::new(df_schema);
        let simplifier = ExprSimplifier::new(
            SimplifyContext::default()
                .with_schema(df_schema.clone())
                .with_current_time(),
        );
        let expr = simplifier.coerce(expr, &df_schema).map_err(invalid)?;
        let expr = simplifier.simplify(expr).map_err(invalid)?;
        let physical = ctx
            .create_physical_expr(expr.clone(), &df_schema)
            .map_err(invalid)?;
        let predicate =
            iceberg_datafusion::physical_plan::convert_filters_to_predicate(std::slice::from_ref(&expr));
        Ok(CompiledFilter {
            physical,
            predicate,
            columns: expr.column_refs().iter().map(|c| c.name.clone()).collect(),
        })
    }
}

impl std::fmt::Display for RowFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            FilterSource::Sql(s) => f.write_str(s),
            FilterSource::Expr(e) => write!(f, "{e}"),
        }
    }
}

/// A filter bound to a schema.
pub(crate) struct CompiledFilter {
    physical: Arc<dyn PhysicalExpr>,
    /// The part Iceberg can use to prune files (may be looser than the filter, never stricter).
    pub(crate) predicate: Option<Predicate>,
    /// Columns the filter reads.
    pub(crate) columns: Vec<String>,
}

impl CompiledFilter {
    /// The pruning predicate, if Iceberg can bind it to `schema` (pruning is an optimization: a
    /// predicate it cannot use is dropped, the exact filter still applies to rows).
    pub(crate) fn pushdown_for(&self, schema: &iceberg::spec::SchemaRef) -> Option<Predicate> {
        let p = self.predicate.clone()?;
        p.clone().bind(schema.clone(), true).ok().map(|_| p)
    }

    /// True where the row matches; NULL counts as no match.
    pub(crate) fn matches(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let value = self.physical.evaluate(batch)?.into_array(batch.num_rows())?;
        let mask = value
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| Error::invalid(format!("filter is not boolean but {}", value.data_type())))?;
        Ok(if mask.null_count() > 0 {
            prep_null_mask_filter(mask)
        } else {
            mask.clone()
        })
    }

    /// The rows that match.
    pub(crate) fn select(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        Ok(filter_record_batch(batch, &self.matches(batch)?)?)
    }
}

/// What a copy-on-write pass decided: files to remove, and the files holding their surviving rows.
pub(crate) struct CopyOnWrite {
    pub(crate) removed: Vec<DataFile>,
    pub(crate) added: Vec<DataFile>,
}

/// Find the live files of `parent` with rows matching `filter`; rewrite each without those rows.
pub(crate) async fn copy_on_write(
    _floe: &Floe,
    base: &Table,
    parent: Option<&SnapshotRef>,
    filter: &RowFilter,
    options: &CommitOptions,
    written: &mut AttemptFiles,
) -> Result<CopyOnWrite> {
    let mut out = CopyOnWrite {
        removed: Vec::new(),
        added: Vec::new(),
    };
    let Some(parent) = parent else { return Ok(out) };
    let compiled = filter.compile(&base.arrow_schema()?)?;
    let live: HashMap<String, DataFile> = base
        .data_files(Some(parent))
        .await?
        .into_iter()
        .map(|(f, _)| (f.file_path().to_string(), f))
        .collect();
    let ice = base.iceberg_table()?;
    let mut scan = ice.scan().snapshot_id(parent.snapshot_id()).select_all();
    let snapshot_schema = parent.schema(base.metadata())?;
    if let Some(p) = compiled.pushdown_for(&snapshot_schema) {
        scan = scan.with_filter(p);
    }
    // Read every file with the table's current schema (columns added since the snapshot read as
    // null), so the filter and the rewritten files see the table as it is now.
    let current_ids: Vec<i32> = base.schema().as_struct().fields().iter().map(|f| f.id).collect();
    let tasks: Vec<_> = scan.build()?.plan_files().await?.try_collect().await?;
    // Pass 1 reads only the filter's columns to count matches; pass 2 streams the survivors of the
    // files that have some into new files, so memory stays bounded by a batch, not a file.
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
    let mut writer: Option<DataWriter> = None;
    for mut task in tasks {
        let path = task.data_file_path.clone();
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
        if Some(matched) == total {
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
                writer = Some(DataWriter::new(base, options.target_file_size)?);
            }
            // Rows go straight to the writer; `kept` only holds them when the file turns out to
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
    if let Some(w) = writer {
        out.added = w.close().await?;
        written
            .paths
            .extend(out.added.iter().map(|f| f.file_path().to_string()));
    }
    Ok(out)
}
