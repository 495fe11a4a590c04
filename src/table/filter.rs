//! Row filters: a SQL predicate (`event_time < '2024-01-02' AND country = 'FR'`) or a DataFusion
//! expression. Filters prune files through Iceberg's manifest statistics and are then evaluated
//! exactly on rows with DataFusion; a row whose predicate is NULL does not match.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::{filter_record_batch, not, prep_null_mask_filter};
use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use datafusion::common::DFSchema;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use iceberg::expr::Predicate;
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
            FilterSource::Sql(sql) => ctx.parse_sql_expr(sql, &df_schema).map_err(|e| {
                Error::new(ErrorKind::InvalidInput, format!("invalid filter {sql:?}: {e}"))
            })?,
            FilterSource::Expr(e) => e.clone(),
        };
        let physical = ctx.create_physical_expr(expr.clone(), &df_schema).map_err(|e| {
            Error::new(ErrorKind::InvalidInput, format!("invalid filter {}: {e}", self))
        })?;
        let predicate = iceberg_datafusion::physical_plan::convert_filters_to_predicate(&[expr.clone()]);
        Ok(CompiledFilter { physical, predicate, columns: expr.column_refs().iter().map(|c| c.name.clone()).collect() })
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
    /// True where the row matches; NULL counts as no match.
    pub(crate) fn matches(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let value = self.physical.evaluate(batch)?.into_array(batch.num_rows())?;
        let mask = value
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| Error::invalid(format!("filter is not boolean but {}", value.data_type())))?;
        Ok(prep_null_mask_filter(mask))
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
    let mut out = CopyOnWrite { removed: Vec::new(), added: Vec::new() };
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
    if let Some(p) = &compiled.predicate {
        scan = scan.with_filter(p.clone());
    }
    let tasks: Vec<_> = scan.build()?.plan_files().await?.try_collect().await?;
    let mut writer: Option<DataWriter> = None;
    for mut task in tasks {
        let path = task.data_file_path.clone();
        task.predicate = None;
        let mut batches = ice
            .reader_builder()
            .build()
            .read(futures::stream::iter([Ok(task)]).boxed())?
            .stream();
        let mut survivors: Vec<RecordBatch> = Vec::new();
        let mut matched = 0usize;
        while let Some(batch) = batches.try_next().await? {
            let mask = compiled.matches(&batch)?;
            matched += mask.true_count();
            let keep = filter_record_batch(&batch, &not(&mask)?)?;
            if keep.num_rows() > 0 {
                survivors.push(keep);
            }
        }
        if matched == 0 {
            continue;
        }
        let file = live
            .get(&path)
            .cloned()
            .ok_or_else(|| Error::internal(format!("scan planned {path}, which is not live")))?;
        out.removed.push(file);
        for batch in survivors {
            if writer.is_none() {
                writer = Some(DataWriter::new(base, options.target_file_size)?);
            }
            writer.as_mut().expect("writer created above").write(batch).await?;
        }
    }
    if let Some(w) = writer {
        out.added = w.close().await?;
        written.paths.extend(out.added.iter().map(|f| f.file_path().to_string()));
    }
    Ok(out)
}
