//! Upsert: a merge built from [`UpsertOptions`]. Source rows are matched to the table by key
//! columns (the table's identifier fields unless given; never NULL in the source; unique in the
//! source unless `Dedupe::Latest` keeps the latest of each key). Tombstones (`delete_where`, a
//! predicate over the source's own columns, which may include columns the table lacks such as
//! `_op`) delete their matched row; other matched rows are replaced (all, only the changed, those a
//! condition picks, or none); unmatched rows are inserted or dropped. Its row-level mode comes from
//! `write.update.mode`, else `auto`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::row::{RowConverter, SortField};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::merge_into::{self, MergeSpec, Verb};
use super::row_delta::RowDelta;
use super::{Dedupe, UpsertOptions, WhenMatched, WhenNotMatched};
use crate::error::{Error, Result};
use crate::table::filter::RowFilter;
use crate::table::Table;

const UPSERT: Verb = Verb {
    name: "upsert",
    mode_property: "write.update.mode",
};

/// The source column that marks tombstones.
const TOMBSTONE: &str = "__floe_tombstone";

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Plan upserting `source` into the branch head of `read`.
pub(crate) async fn plan(read: &Table, source: RecordBatch, options: &UpsertOptions) -> Result<RowDelta> {
    let keys = key_columns(read, &source, options)?;
    let source = match &options.dedupe {
        Dedupe::Refuse => {
            refuse_duplicates(&source, &keys)?;
            source
        }
        Dedupe::Latest(column) => latest_per_key(&source, &keys, column)?,
    };
    let (source, tombstones) = match &options.delete_where {
        Some(sql) => (mark_tombstones(&source, sql)?, true),
        None => (source, false),
    };
    let spec = spec_of(read, &source, &keys, options, tombstones)?;
    merge_into::plan(read, Arc::new(source), &spec, &options.rows, UPSERT).await
}

/// The key columns: given, or the table's identifier fields; each in the table and in the source,
/// with no NULL in the source.
fn key_columns(read: &Table, source: &RecordBatch, options: &UpsertOptions) -> Result<Vec<String>> {
    let schema = read.schema();
    let keys: Vec<String> = if options.key.is_empty() {
        schema
            .identifier_field_ids()
            .filter_map(|id| schema.name_by_field_id(id).map(str::to_string))
            .collect()
    } else {
        options.key.clone()
    };
    if keys.is_empty() {
        return Err(Error::invalid(format!(
            "an upsert into {} needs key columns (--key id[,k2]): the table has no identifier fields",
            read.name()
        )));
    }
    for k in &keys {
        if schema.field_by_name(k).is_none() {
            return Err(Error::invalid(format!(
                "key column {k:?} is not a column of {}",
                read.name()
            )));
        }
        let column = source
            .column_by_name(k)
            .ok_or_else(|| Error::invalid(format!("key column {k:?} is not in the source")))?;
        if column.null_count() > 0 {
            return Err(Error::invalid(format!(
                "key column {k:?} is NULL in {} source row(s): upsert keys must not be NULL",
                column.null_count()
            )));
        }
    }
    Ok(keys)
}

fn key_rows(source: &RecordBatch, keys: &[String]) -> Result<(Vec<ArrayRef>, arrow::row::Rows)> {
    let columns: Vec<ArrayRef> = keys
        .iter()
        .map(|k| source.column_by_name(k).cloned().expect("checked"))
        .collect();
    let converter = RowConverter::new(
        columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    let rows = converter.convert_columns(&columns)?;
    Ok((columns, rows))
}

/// `k1=v1, k2=v2` of source row `i`.
fn describe_key(keys: &[String], columns: &[ArrayRef], i: usize) -> String {
    keys.iter()
        .zip(columns)
        .map(|(k, c)| {
            let value = ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default())
                .map(|f| f.value(i).to_string())
                .unwrap_or_default();
            format!("{k}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuse a source in which two rows share a key.
fn refuse_duplicates(source: &RecordBatch, keys: &[String]) -> Result<()> {
    let (columns, rows) = key_rows(source, keys)?;
    let mut seen: HashMap<&[u8], usize> = HashMap::with_capacity(source.num_rows());
    let mut duplicates = 0usize;
    let mut example = None;
    for i in 0..source.num_rows() {
        if seen.insert(rows.row(i).data(), i).is_some() {
            duplicates += 1;
            example.get_or_insert(i);
        }
    }
    match example {
        None => Ok(()),
        Some(i) => Err(Error::invalid(format!(
            "the source has {duplicates} row(s) whose key another row has too (e.g. {}): make it unique, or \
             keep the latest of each key with --dedupe latest:COL",
            describe_key(keys, &columns, i)
        ))),
    }
}

/// The source with one row per key: the one with the greatest `column` (the last of equal ones).
fn latest_per_key(source: &RecordBatch, keys: &[String], column: &str) -> Result<RecordBatch> {
    let order = source.column_by_name(column).ok_or_else(|| {
        Error::invalid(format!(
            "--dedupe latest:{column}: the source has no column {column:?}"
        ))
    })?;
    let (_, rows) = key_rows(source, keys)?;
    let order_rows = RowConverter::new(vec![SortField::new(order.data_type().clone())])?
        .convert_columns(std::slice::from_ref(order))?;
    let mut best: HashMap<&[u8], usize> = HashMap::with_capacity(source.num_rows());
    for i in 0..source.num_rows() {
        let key = rows.row(i);
        match best.get(key.data()) {
            Some(&j) if order_rows.row(i) < order_rows.row(j) => {}
            _ => {
                best.insert(rows.row(i).data(), i);
            }
        }
    }
    let mut kept: Vec<u32> = best.into_values().map(|i| i as u32).collect();
    kept.sort_unstable();
    let indices = UInt32Array::from(kept);
    let columns = source
        .columns()
        .iter()
        .map(|c| Ok(take(c, &indices, None)?))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(source.schema(), columns)?)
}

/// The source with a boolean column saying which rows are tombstones.
fn mark_tombstones(source: &RecordBatch, sql: &str) -> Result<RecordBatch> {
    let compiled = RowFilter::sql(sql)
        .compile(&source.schema())
        .map_err(|e| Error::invalid(format!("invalid --delete-where {sql:?}: {}", e.message())))?;
    let mask = compiled.matches(source)?;
    let mut fields: Vec<Field> = source
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(TOMBSTONE, DataType::Boolean, false));
    let mut columns = source.columns().to_vec();
    columns.push(Arc::new(mask));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// The merge an upsert is.
fn spec_of(
    read: &Table,
    source: &RecordBatch,
    keys: &[String],
    options: &UpsertOptions,
    tombstones: bool,
) -> Result<MergeSpec> {
    let on = keys
        .iter()
        .map(|k| format!("t.{q} = s.{q}", q = quote(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let mut spec = MergeSpec::on(on);
    let tombstone = format!("s.{}", quote(TOMBSTONE));
    if tombstones {
        spec = spec.when_matched_delete(Some(&tombstone));
    }
    let changed = || {
        let compared: Vec<String> = read
            .schema()
            .as_struct()
            .fields()
            .iter()
            .filter(|f| !keys.contains(&f.name) && source.column_by_name(&f.name).is_some())
            .map(|f| format!("(t.{q} IS DISTINCT FROM s.{q})", q = quote(&f.name)))
            .collect();
        if compared.is_empty() {
            "FALSE".to_string()
        } else {
            compared.join(" OR ")
        }
    };
    spec = match &options.when_matched {
        WhenMatched::UpdateAll => spec.when_matched_update_all(None),
        WhenMatched::UpdateChanged => spec.when_matched_update_all(Some(&changed())),
        WhenMatched::UpdateIf(condition) => spec.when_matched_update_all(Some(condition)),
        WhenMatched::Ignore => spec,
    };
    if options.when_not_matched == WhenNotMatched::Insert {
        let not_tombstone = format!("NOT {tombstone}");
        spec = spec.when_not_matched_insert_all(tombstones.then_some(not_tombstone.as_str()));
    }
    Ok(spec)
}
