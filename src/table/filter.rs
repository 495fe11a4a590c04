//! Row filters: a SQL predicate (`event_time < '2024-01-02' AND country = 'FR'`) or a DataFusion
//! expression. Filters prune files through Iceberg's manifest statistics and are then evaluated
//! exactly on rows with DataFusion; a row whose predicate is NULL does not match.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::compute::{filter_record_batch, prep_null_mask_filter};
use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use datafusion::common::DFSchema;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::Expr;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use iceberg::expr::{Bind, Predicate};

use crate::error::{Error, ErrorKind, Result};

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
