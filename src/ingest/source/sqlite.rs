//! An SQLite source, opened read-only. Columns come from `PRAGMA table_info` of a temporary view over
//! the relation (their declared types: a column without one cannot be mapped), and a unit's rows are
//! read row by row, buffered as text (or bytes) per column and cast to the columns' Arrow types a
//! batch at a time. SQLite cannot share a snapshot between connections, nor hash a column.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::sqlite::SqliteRow;
use sqlx::{Connection, Row, SqliteConnection};

use super::{
    quote_ident, spawn_reader, sql_error, Database, SourceColumn, SourceDatabase, SourceQuery, SourceRows,
};
use crate::error::{Error, ErrorKind, Result};
use crate::ingest::watermark::MarkKind;

/// Rows per batch.
const BATCH_ROWS: usize = 8192;

/// An SQLite file at a `sqlite:PATH` URL.
#[derive(Clone, Debug)]
pub(crate) struct SqliteSource {
    url: String,
}

impl SqliteSource {
    pub(crate) fn new(url: &str) -> Self {
        Self { url: url.to_string() }
    }

    fn error(&self, what: &str, e: sqlx::Error) -> Error {
        sql_error(Database::Sqlite, what, &self.url, e)
    }

    /// A read-only connection; a missing file is an error (SQLite would create it).
    async fn connect(&self) -> Result<SqliteConnection> {
        let path = self
            .url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        if !std::path::Path::new(path.split('?').next().unwrap_or(path)).exists() {
            return Err(Error::new(
                ErrorKind::Storage,
                format!("cannot open the source: SQLite file {path} does not exist"),
            ));
        }
        SqliteConnection::connect(&format!("sqlite://{path}?mode=ro"))
            .await
            .map_err(|e| self.error("cannot open the source", e))
    }
}

#[async_trait]
impl SourceDatabase for SqliteSource {
    fn kind(&self) -> Database {
        Database::Sqlite
    }

    async fn column_types(&self, relation: &str, described: &str) -> Result<Vec<(String, String)>> {
        let mut conn = self.connect().await?;
        let probe = format!("floe_probe_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("SELECT * FROM ({relation}) LIMIT 0"))
            .fetch_all(&mut conn)
            .await
            .map_err(|e| self.error(&format!("cannot read {described}"), e))?;
        // Declared types: through a temporary view's table_info.
        sqlx::query(&format!("CREATE TEMP VIEW {probe} AS {relation}"))
            .execute(&mut conn)
            .await
            .map_err(|e| self.error(&format!("cannot read {described}"), e))?;
        let rows = sqlx::query(&format!("PRAGMA table_info({probe})"))
            .fetch_all(&mut conn)
            .await
            .map_err(|e| self.error("cannot read the source's columns", e))?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>("name"), r.get::<String, _>("type")))
            .collect())
    }

    async fn estimated_rows(&self, _table: &str) -> Result<Option<u64>> {
        Ok(None)
    }

    async fn count(&self, sql: &str, _application: &str, _snapshot: Option<&str>) -> Result<u64> {
        let mut conn = self.connect().await?;
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| self.error("cannot count the source's rows", e))?;
        Ok(n.max(0) as u64)
    }

    async fn text_counts(&self, sql: &str, what: &str) -> Result<Vec<(String, i64)>> {
        let mut conn = self.connect().await?;
        sqlx::query_as(sql)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| self.error(what, e))
    }

    async fn integer_counts(&self, sql: &str, what: &str) -> Result<Vec<(i64, i64)>> {
        let mut conn = self.connect().await?;
        sqlx::query_as(sql)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| self.error(what, e))
    }

    async fn extract(
        &self,
        query: &SourceQuery<'_>,
        _application: &str,
        _snapshot: Option<&str>,
    ) -> Result<SourceRows> {
        let select = query
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {select} FROM ({}) AS floe_source WHERE {}",
            query.relation, query.condition
        );
        let mut conn = self.connect().await?;
        let mut buffer = RowBuffer::new(query.columns.to_vec(), query.schema.clone());
        let source = self.clone();
        Ok(spawn_reader(move |tx| async move {
            let mut rows = sqlx::query(&sql).fetch(&mut conn);
            while let Some(row) = rows
                .try_next()
                .await
                .map_err(|e| source.error("reading the source failed", e))?
            {
                buffer.push(&row, &source)?;
                if buffer.rows == BATCH_ROWS && tx.send(buffer.take()).await.is_err() {
                    return Ok(());
                }
            }
            if buffer.rows > 0 {
                let _ = tx.send(buffer.take()).await;
            }
            Ok(())
        }))
    }

    fn day_of(&self, column: &str) -> String {
        format!("substr({column}, 1, 10)")
    }

    fn date_literal(&self, day: &str) -> String {
        format!("'{day}'")
    }

    fn hash_bucket(&self, _column: &str, _bucket: u32, _buckets: u32) -> Option<String> {
        None
    }

    /// SQLite keeps dates and timestamps as text in whatever form they were written (`T` or a space,
    /// with or without a fraction or an offset): compared and maxed in one form, to the millisecond.
    fn comparable(&self, column: &str, kind: MarkKind) -> String {
        match kind {
            MarkKind::Integer => column.to_string(),
            MarkKind::Date => format!("date({column})"),
            MarkKind::Timestamp { .. } => format!("strftime('%Y-%m-%d %H:%M:%f', {column})"),
        }
    }

    /// A timestamp is cut to the millisecond below: a lower bound reads a little more, never less.
    fn since_literal(&self, kind: MarkKind, value: i64) -> String {
        match kind {
            MarkKind::Integer => value.to_string(),
            MarkKind::Date => format!("'{}'", kind.format(value)),
            MarkKind::Timestamp { .. } => {
                let millis = value.div_euclid(1000);
                chrono::DateTime::from_timestamp_millis(millis)
                    .map(|t| format!("'{}'", t.format("%Y-%m-%d %H:%M:%S%.3f")))
                    .unwrap_or_else(|| "NULL".into())
            }
        }
    }

    fn own_type(&self, base: &str, declared: &str) -> Option<std::result::Result<DataType, &'static str>> {
        // SQLite keeps any value in a column without a declared type, and a numeric without a
        // precision as whatever it looks like: no one Iceberg type holds it.
        (matches!(base, "" | "numeric" | "num") && !declared.contains('(')).then_some(Err(
            "an SQLite column without a declared type (or numeric without precision); cast it in --query",
        ))
    }
}

/// Rows read so far of a batch: per column, the values as text (bytes for binary columns), cast to
/// the columns' types when the batch is taken.
struct RowBuffer {
    columns: Vec<SourceColumn>,
    schema: SchemaRef,
    text: Vec<Vec<Option<String>>>,
    bytes: Vec<Vec<Option<Vec<u8>>>>,
    rows: usize,
}

impl RowBuffer {
    fn new(columns: Vec<SourceColumn>, schema: SchemaRef) -> Self {
        Self {
            text: columns.iter().map(|_| Vec::new()).collect(),
            bytes: columns.iter().map(|_| Vec::new()).collect(),
            columns,
            schema,
            rows: 0,
        }
    }

    /// Buffer one row.
    fn push(&mut self, row: &SqliteRow, source: &SqliteSource) -> Result<()> {
        for (i, c) in self.columns.iter().enumerate() {
            if c.arrow == DataType::Binary {
                self.bytes[i].push(
                    row.try_get::<Option<Vec<u8>>, _>(i)
                        .map_err(|e| source.error("reading the source failed", e))?,
                );
                continue;
            }
            let raw = row
                .try_get_raw(i)
                .map_err(|e| source.error("reading the source failed", e))?;
            let text = if sqlx::ValueRef::is_null(&raw) {
                None
            } else {
                match c.arrow {
                    DataType::Int32 | DataType::Int64 => {
                        Some(row.try_get::<i64, _>(i).map(|v| v.to_string()))
                    }
                    DataType::Float32 | DataType::Float64 => {
                        Some(row.try_get::<f64, _>(i).map(|v| v.to_string()))
                    }
                    DataType::Boolean => Some(row.try_get::<bool, _>(i).map(|v| v.to_string())),
                    _ => Some(row.try_get::<String, _>(i)),
                }
                .transpose()
                .map_err(|e| source.error(&format!("source column {}", c.name), e))?
            };
            self.text[i].push(text);
        }
        self.rows += 1;
        Ok(())
    }

    /// The buffered rows as a batch of the columns' types; the buffer is empty again.
    fn take(&mut self) -> Result<RecordBatch> {
        self.rows = 0;
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (i, c) in self.columns.iter().enumerate() {
            if c.arrow == DataType::Binary {
                let values = std::mem::take(&mut self.bytes[i]);
                arrays.push(Arc::new(arrow::array::BinaryArray::from_iter(values)));
            } else {
                let text: StringArray = std::mem::take(&mut self.text[i]).into_iter().collect();
                let cast = arrow::compute::cast_with_options(
                    &text,
                    &c.arrow,
                    &arrow::compute::CastOptions {
                        safe: false,
                        ..Default::default()
                    },
                )
                .map_err(|e| Error::wrap(ErrorKind::Data, format!("source column {}", c.name), e))?;
                arrays.push(cast);
            }
        }
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}
