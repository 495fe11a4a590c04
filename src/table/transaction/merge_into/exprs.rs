//! The SQL expressions of a MERGE, planned by DataFusion over the joined `t.`/`s.` schema and
//! evaluated on batches: conditions as masks, join keys as arrays, and the batches they run on.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::prep_null_mask_filter;
use arrow::datatypes::{Field, Schema, SchemaRef as ArrowSchemaRef};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::Expr;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use crate::error::{Error, ErrorKind, Result};

pub(super) fn nullable(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<Field>>(),
    )
}

pub(super) fn invalid(what: &str, sql: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("invalid merge {what} {sql:?}: {e}"),
    )
}

/// Parse, type-check and coerce `sql` over `schema`.
pub(super) fn logical(ctx: &SessionContext, schema: &Arc<DFSchema>, what: &str, sql: &str) -> Result<Expr> {
    let expr = ctx
        .parse_sql_expr(sql, schema)
        .map_err(|e| invalid(what, sql, e))?;
    let simplifier = ExprSimplifier::new(SimplifyContext::default().with_schema(schema.clone()));
    simplifier.coerce(expr, schema).map_err(|e| invalid(what, sql, e))
}

pub(super) fn physical(
    ctx: &SessionContext,
    schema: &DFSchema,
    what: &str,
    expr: Expr,
) -> Result<Arc<dyn PhysicalExpr>> {
    let text = expr.to_string();
    ctx.create_physical_expr(expr, schema)
        .map_err(|e| invalid(what, &text, e))
}

/// The qualifiers (`t`, `s`) an expression's columns carry.
pub(super) fn sides(expr: &Expr) -> HashSet<String> {
    expr.column_refs()
        .iter()
        .map(|c| c.relation.as_ref().map(|r| r.to_string()).unwrap_or_default())
        .collect()
}

pub(super) fn is_target(c: &Column) -> bool {
    c.relation.as_ref().is_some_and(|r| r.to_string() == "t")
}

/// Where a boolean expression is true (NULL counts as false).
pub(super) fn truth(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<BooleanArray> {
    let value = expr.evaluate(batch)?.into_array(batch.num_rows())?;
    let mask = value.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| {
        Error::invalid(format!(
            "a merge condition is {} rather than boolean",
            value.data_type()
        ))
    })?;
    Ok(if mask.null_count() > 0 {
        prep_null_mask_filter(mask)
    } else {
        mask.clone()
    })
}

pub(super) fn evaluate_keys(keys: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    keys.iter()
        .map(|k| Ok(k.evaluate(batch)?.into_array(batch.num_rows())?))
        .collect()
}

pub(super) fn any_null(keys: &[ArrayRef], i: usize) -> bool {
    keys.iter().any(|k| k.is_null(i))
}

/// `batch` (some of the table's columns, as read) as a batch of every column of `full` (the others
/// NULL).
pub(super) fn widen(batch: &RecordBatch, full: &ArrowSchemaRef) -> Result<RecordBatch> {
    let columns = full
        .fields()
        .iter()
        .map(|f| match batch.schema().index_of(f.name()) {
            Ok(i) => batch.column(i).clone(),
            Err(_) => new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    Ok(RecordBatch::try_new(full.clone(), columns)?)
}
