//! Upsert ingest (`--mode upsert --key COL`), and incremental ingest (change data capture) built on
//! it (`--since COL [--lookback D] [--deletes-query SQL]`).
//!
//! An incremental run reads the rows whose `--since` value lies in a window: from the table's
//! watermark less the lookback (everything on a first run) up to the greatest value the source held
//! when the run was planned. It upserts them by key (a row is replaced only where it changed), deletes
//! the keys the deletes query returns (tombstones, read at the same instant as the rows; a key whose
//! row is live at the source is not deleted), and records the new watermark (`floe.watermark.COL`,
//! the greatest value read) in the same snapshot: a run that lands moves the watermark with the rows,
//! and a run that does not land moves nothing. Running again reads only the lookback window, whose
//! rows the table already holds as they are, so it commits nothing.
//!
//! The window's upper end keeps the watermark honest when units read at different instants (an
//! SQLite source, a server that cannot export a snapshot): a row changed during the run gets a
//! value above it and is read by the next run, never skipped. Rows whose `--since` value is NULL are
//! never read. The upsert holds every row read in memory (it matches them all at once): an
//! incremental run's changes, not a table's history.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use serde::Serialize;

use super::source::{self, SourceColumn, SqlSource};
use super::watermark::{self, Lookback, MarkKind};
use super::{IngestOptions, Source, UpsertIngest};
use crate::catalog::TableName;
use crate::error::{Error, ErrorKind, Result};
use crate::lakehouse::Floe;
use crate::table::transaction::{RowCounts, RowLevelOptions, UpsertOptions, WhenMatched, WhenNotMatched};
use crate::table::{Table, WriteOptions};

/// The source column marking the deletes query's keys among the rows upserted.
const DELETED: &str = "__floe_ingest_deleted";

/// The rows an incremental run reads: its `--since` column's values from `from` to `to`.
#[derive(Clone, Debug, Serialize)]
pub struct ChangeWindow {
    /// The `--since` column.
    pub column: String,
    /// The watermark the table recorded (`None`: the first incremental run, which reads everything).
    pub watermark: Option<String>,
    /// The lookback.
    pub lookback: Option<String>,
    /// The first value read: the watermark less the lookback.
    pub from: Option<String>,
    /// The last value read: the source's greatest when the run was planned (`None`: no row has one).
    pub to: Option<String>,
}

impl ChangeWindow {
    /// `column from..to` for a printout.
    pub fn describe(&self) -> String {
        match (&self.from, &self.to) {
            (_, None) => format!("{}: no row has a value, nothing to read", self.column),
            (None, Some(to)) => format!("{} <= {to} (no watermark yet: every row)", self.column),
            (Some(from), Some(to)) => format!(
                "{from} <= {} <= {to} (watermark {}, lookback {})",
                self.column,
                self.watermark.as_deref().unwrap_or("-"),
                self.lookback.as_deref().unwrap_or("none")
            ),
        }
    }
}

/// What an upsert run did.
#[derive(Clone, Debug, Serialize)]
pub struct UpsertReport {
    /// The rows it read (incremental runs).
    pub window: Option<ChangeWindow>,
    /// The watermark it recorded, or the table's when it moved nothing (incremental runs).
    pub watermark: Option<String>,
    /// Keys the deletes query returned that the source does not hold.
    pub tombstones: u64,
    /// What the upsert did to the table's rows.
    pub rows: RowCounts,
}

/// An incremental run's `--since` column and window.
struct Since {
    column: SourceColumn,
    kind: MarkKind,
    lookback: Option<Lookback>,
    watermark: Option<i64>,
    from: Option<i64>,
    to: Option<i64>,
}

/// An upsert run, planned: its keys, window and deletes query.
pub(super) struct UpsertRun {
    /// The destination as the watermark was read from it (`None`: it did not exist yet).
    table: Option<Table>,
    keys: Vec<String>,
    /// The key columns at the source (database sources).
    key_columns: Vec<SourceColumn>,
    since: Option<Since>,
    /// The deletes query, `{since}` replaced.
    deletes: Option<String>,
}

impl UpsertRun {
    /// The window, for the plan and the report.
    pub(super) fn window(&self) -> Option<ChangeWindow> {
        let s = self.since.as_ref()?;
        Some(ChangeWindow {
            column: s.column.name.clone(),
            watermark: s.watermark.map(|w| s.kind.format(w)),
            lookback: s.lookback.map(|l| l.to_string()),
            from: s.from.map(|v| s.kind.format(v)),
            to: s.to.map(|v| s.kind.format(v)),
        })
    }
}

/// Plan an upsert run of `spec` from `source`: its keys checked, and for an incremental run the
/// table's watermark read and the source restricted to the window.
pub(super) async fn plan(
    floe: &Floe,
    options: &IngestOptions,
    spec: &UpsertIngest,
    source: Source,
) -> Result<(Source, UpsertRun)> {
    let table = match floe.load_table(&TableName::parse(&options.into)?).await {
        Ok(t) => Some(t),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let keys = keys(table.as_ref(), spec)?;
    if spec.lookback.is_some() && spec.since.is_none() {
        return Err(Error::invalid("--lookback goes with --since"));
    }
    let sql = match source {
        Source::Sql(sql) => sql,
        Source::Files(files) => {
            if spec.since.is_some() || spec.deletes_query.is_some() {
                return Err(Error::invalid(
                    "--since and --deletes-query read a database source (postgres://, sqlite:)",
                ));
            }
            let run = UpsertRun {
                table,
                keys,
                key_columns: Vec::new(),
                since: None,
                deletes: None,
            };
            return Ok((Source::Files(files), run));
        }
    };
    let columns = sql.columns().await?;
    let key_columns = keys
        .iter()
        .map(|k| source::find(&columns, k).cloned())
        .collect::<Result<Vec<_>>>()?;
    let since = match &spec.since {
        Some(column) => Some(window(table.as_ref(), &sql, &columns, column, spec.lookback).await?),
        None => None,
    };
    let deletes = match &spec.deletes_query {
        Some(query) => {
            let query = with_since(query, &sql, since.as_ref())?;
            sql.check_deletes_query(&query, &key_columns).await?;
            Some(query)
        }
        None => None,
    };
    let sql = match &since {
        Some(s) => {
            let condition = sql.since_window(&s.column.name, s.kind, s.from, s.to);
            sql.within(condition)
        }
        None => sql,
    };
    let run = UpsertRun {
        table,
        keys,
        key_columns,
        since,
        deletes,
    };
    Ok((Source::Sql(sql), run))
}

/// The key columns: given, or the destination's identifier fields.
fn keys(table: Option<&Table>, spec: &UpsertIngest) -> Result<Vec<String>> {
    if !spec.key.is_empty() {
        return Ok(spec.key.clone());
    }
    let identifiers: Vec<String> = table
        .map(|t| {
            let schema = t.schema();
            schema
                .identifier_field_ids()
                .filter_map(|id| schema.name_by_field_id(id).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if identifiers.is_empty() {
        return Err(Error::invalid(
            "--mode upsert needs --key COL[,COL...]: the destination has no identifier fields",
        ));
    }
    Ok(identifiers)
}

/// The window of `column`: from the table's watermark less the lookback, to the source's greatest
/// value now.
async fn window(
    table: Option<&Table>,
    sql: &SqlSource,
    columns: &[SourceColumn],
    column: &str,
    lookback: Option<Lookback>,
) -> Result<Since> {
    let column = source::find(columns, column)?.clone();
    let kind = MarkKind::of(&column)?;
    if let Some(l) = &lookback {
        kind.check(&column.name, l)?;
    }
    let watermark = table
        .and_then(|t| watermark::recorded(t, &column.name))
        .map(|(_, text)| kind.parse(&text))
        .transpose()?;
    let from = watermark.map(|w| match &lookback {
        Some(l) => kind.minus(w, l),
        None => w,
    });
    let to = sql.greatest(&column, kind).await?;
    Ok(Since {
        column,
        kind,
        lookback,
        watermark,
        from,
        to,
    })
}

/// `query` with `{since}` replaced by a literal of the window's start (the lowest value on a first
/// run), so that it reads only recent tombstones.
fn with_since(query: &str, sql: &SqlSource, since: Option<&Since>) -> Result<String> {
    if !query.contains("{since}") {
        return Ok(query.to_string());
    }
    let Some(s) = since else {
        return Err(Error::invalid("{since} in --deletes-query needs --since"));
    };
    let literal = sql.since_literal(s.kind, s.from.unwrap_or_else(|| s.kind.lowest()));
    Ok(query.replace("{since}", &literal))
}

/// Read the deletes query's keys (at `snapshot`, the instant the units read, when there is one).
pub(super) async fn deleted_keys(
    run: &UpsertRun,
    source: &Source,
    application: &str,
    snapshot: Option<&str>,
) -> Result<Vec<RecordBatch>> {
    use futures::TryStreamExt;
    let (Some(deletes), Source::Sql(sql)) = (&run.deletes, source) else {
        return Ok(Vec::new());
    };
    sql.deleted_keys(deletes, &run.key_columns, application, snapshot)
        .await?
        .try_collect()
        .await
}

/// What [`commit`] upserts, and how.
pub(super) struct Upsert {
    /// The rows read, as batches of `schema`.
    pub rows: Vec<RecordBatch>,
    pub schema: SchemaRef,
    /// The deletes query's keys.
    pub deleted: Vec<RecordBatch>,
    /// Lineage and properties of the snapshot.
    pub write: WriteOptions,
}

/// Upsert the rows read and delete the deleted keys in one snapshot of `destination` that records
/// the new watermark; nothing when no row changes and the watermark stays. Returns the snapshot and
/// the report.
pub(super) async fn commit(
    floe: &Floe,
    destination: &Table,
    run: &UpsertRun,
    upsert: Upsert,
) -> Result<(Option<i64>, UpsertReport)> {
    // Planned on the state the watermark was read from: a concurrent change to the same keys since
    // is a conflict, not silently overwritten with older rows.
    let table = run.table.as_ref().unwrap_or(destination);
    let name = table.name().clone();
    let recorded = match &run.since {
        Some(s) => new_watermark(s, &upsert.rows)?,
        None => None,
    };
    let mut write = upsert.write;
    let advanced = match (&run.since, recorded) {
        (Some(s), Some(w)) => {
            write
                .properties
                .insert(watermark::property(&s.column.name), s.kind.format(w));
            s.watermark != Some(w)
        }
        _ => false,
    };
    let (batches, tombstones) = with_deletes(&upsert.schema, upsert.rows, upsert.deleted, &run.keys)?;
    let options = UpsertOptions {
        rows: RowLevelOptions::from(write.clone()),
        key: run.keys.clone(),
        when_matched: WhenMatched::UpdateChanged,
        when_not_matched: WhenNotMatched::Insert,
        delete_where: (tombstones > 0).then(|| format!("\"{DELETED}\"")),
        ..Default::default()
    };
    let mut tx = floe.transaction();
    tx.read_as(table.clone());
    let rows = tx
        .upsert(
            &name,
            futures::stream::iter(batches.into_iter().map(Ok)),
            &options,
        )
        .await?;
    let changed = rows.inserted + rows.updated + rows.deleted > 0;
    let snapshot_id = if changed || advanced {
        if !changed {
            // The watermark moves although no row changes (the table already held them).
            tx.mark(&name, &write).await?;
        }
        tx.commit().await?.first().and_then(|r| r.snapshot_id)
    } else {
        tx.abort().await;
        None
    };
    let report = UpsertReport {
        window: run.window(),
        watermark: run
            .since
            .as_ref()
            .and_then(|s| recorded.or(s.watermark).map(|w| s.kind.format(w))),
        tombstones,
        rows,
    };
    Ok((snapshot_id, report))
}

/// The watermark a run records: the greatest value it read (at most the window's end), never less
/// than the table's; `None` when there is none.
fn new_watermark(since: &Since, rows: &[RecordBatch]) -> Result<Option<i64>> {
    let mut read = None;
    for b in rows {
        let column = b.column_by_name(&since.column.name).ok_or_else(|| {
            Error::internal(format!(
                "the rows read lack the --since column {}",
                since.column.name
            ))
        })?;
        read = read.max(watermark::greatest(column.as_ref())?);
    }
    let read = match (read, since.to) {
        (Some(r), Some(to)) => Some(r.min(to)),
        (r, _) => r,
    };
    Ok(read.max(since.watermark))
}

/// The rows to upsert: the rows read, then one row per deleted key whose row was not read (its other
/// columns NULL), with a column marking those; and how many of those there are.
fn with_deletes(
    schema: &SchemaRef,
    rows: Vec<RecordBatch>,
    deleted: Vec<RecordBatch>,
    keys: &[String],
) -> Result<(Vec<RecordBatch>, u64)> {
    if deleted.iter().all(|b| b.num_rows() == 0) {
        return Ok((rows, 0));
    }
    let key_types: Vec<SortField> = keys
        .iter()
        .map(|k| Ok(SortField::new(schema.field_with_name(k)?.data_type().clone())))
        .collect::<Result<_>>()?;
    let converter = RowConverter::new(key_types)?;
    let key_columns = |b: &RecordBatch| -> Result<Vec<ArrayRef>> {
        keys.iter()
            .map(|k| {
                let c = b
                    .column_by_name(k)
                    .ok_or_else(|| Error::internal(format!("a batch without key column {k}")))?;
                let field = schema.field_with_name(k)?;
                Ok(arrow::compute::cast(c, field.data_type())?)
            })
            .collect()
    };
    let mut read = HashSet::new();
    for b in &rows {
        let converted = converter.convert_columns(&key_columns(b)?)?;
        read.extend(converted.iter().map(|r| r.owned()));
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(DELETED, DataType::Boolean, false));
    let marked = Arc::new(Schema::new(fields));
    let mark = |b: &RecordBatch, deleted: bool| -> Result<RecordBatch> {
        let mut columns = b.columns().to_vec();
        columns.push(Arc::new(BooleanArray::from(vec![deleted; b.num_rows()])));
        Ok(RecordBatch::try_new(marked.clone(), columns)?)
    };
    let mut out = rows.iter().map(|b| mark(b, false)).collect::<Result<Vec<_>>>()?;
    let mut tombstones = 0u64;
    for b in &deleted {
        let converted = converter.convert_columns(&key_columns(b)?)?;
        let keep = BooleanArray::from(
            converted
                .iter()
                .map(|r| !read.contains(&r.owned()))
                .collect::<Vec<_>>(),
        );
        let kept = arrow::compute::filter_record_batch(b, &keep)?;
        let n = kept.num_rows();
        tombstones += n as u64;
        let columns = schema
            .fields()
            .iter()
            .map(|f| match kept.column_by_name(f.name()) {
                Some(c) if keys.contains(f.name()) => Ok(arrow::compute::cast(c, f.data_type())?),
                _ => Ok(new_null_array(f.data_type(), n)),
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(mark(&RecordBatch::try_new(schema.clone(), columns)?, true)?);
    }
    Ok((out, tombstones))
}
