//! A Postgres source. Columns come from `pg_attribute` of a temporary view over the relation, the
//! row estimate from `pg_class.reltuples`, and a unit's rows through `COPY (SELECT ...) TO STDOUT
//! (FORMAT binary)`, decoded into Arrow as the bytes arrive ([`super::pg_binary`]).
//!
//! Every unit of a run reads the source as of one instant: a `REPEATABLE READ` transaction held open
//! on a connection of its own exports its snapshot, which each unit's transaction imports
//! (`pg_export_snapshot`, `SET TRANSACTION SNAPSHOT`), as `pg_dump --jobs` does. Without it each
//! unit would see the source as of its own start, and a row updated from one unit's key range into
//! another's between two units' starts would be read twice or not at all. The holding transaction
//! keeps the server from vacuuming rows newer than its start until the run's units are done.

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use arrow::datatypes::DataType;
use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::{Connection, PgConnection};

use super::pg_binary::{wire_cast, BinaryCopyDecoder};
use super::{
    quote_ident, spawn_reader, sql_error, Database, SourceDatabase, SourceQuery, SourceRows, SourceSnapshot,
};
use crate::error::{Error, Result};
use crate::ingest::units::KeyStatistics;
use crate::ingest::watermark::MarkKind;

/// A Postgres database at a `postgres://` URL.
#[derive(Clone, Debug)]
pub(crate) struct PostgresSource {
    url: String,
    /// Connections whose unit finished reading, each still in its transaction at a run's snapshot
    /// (its id alongside), for the next unit of the run: a new connection costs the server a process
    /// and its caches, and a source across a network the round trips of connecting.
    idle: Arc<Mutex<Vec<(String, PgConnection)>>>,
}

impl PostgresSource {
    pub(crate) fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            idle: Arc::default(),
        }
    }

    /// A connection a unit finished with at `snapshot`, in a new transaction at the same snapshot
    /// and renamed `application` (as a new one would be named), when one is idle and still usable.
    async fn reuse(&self, application: &str, snapshot: &str) -> Option<PgConnection> {
        let mut conn = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let at = idle.iter().position(|(s, _)| s == snapshot)?;
            idle.swap_remove(at).1
        };
        let renew = format!(
            "COMMIT; SET application_name = '{}'; {}",
            application.replace('\'', "''"),
            begin_at(snapshot)
        );
        // One round trip; a connection the server ended meanwhile is dropped, and the unit connects.
        sqlx::Executor::execute(&mut conn, renew.as_str()).await.ok()?;
        Some(conn)
    }

    /// Keep `conn`, whose unit read to the end at `snapshot`, for the run's next unit.
    fn keep_idle(&self, snapshot: &str, conn: PgConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.push((snapshot.to_string(), conn));
    }

    fn error(&self, what: &str, e: sqlx::Error) -> Error {
        sql_error(Database::Postgres, what, &self.url, e)
    }

    /// A connection named `application` (visible in `pg_stat_activity`), in UTC.
    async fn connect(&self, application: &str) -> Result<PgConnection> {
        let options = sqlx::postgres::PgConnectOptions::from_str(&self.url)
            .map_err(|e| self.error("invalid source URL", e))?
            .application_name(application)
            .options([("TimeZone", "UTC")]);
        PgConnection::connect_with(&options)
            .await
            .map_err(|e| self.error("cannot connect to the source", e))
    }

    /// A connection whose next statements read at `snapshot` (one transaction), when one is given.
    async fn connect_at(&self, application: &str, snapshot: Option<&str>) -> Result<PgConnection> {
        let Some(id) = snapshot else {
            return self.connect(application).await;
        };
        if let Some(conn) = self.reuse(application, id).await {
            return Ok(conn);
        }
        let mut conn = self.connect(application).await?;
        // One simple query, one round trip (two prepared statements would take four): a unit's
        // set-up is paid per unit, and a source across a WAN charges every round trip.
        sqlx::Executor::execute(&mut conn, begin_at(id).as_str())
            .await
            .map_err(|e| {
                self.error(
                    &format!(
                        "cannot read at the run's source snapshot {id} (the connection that held it \
                         ended; `floe ingest --resume` reads the units not done at a new snapshot)"
                    ),
                    e,
                )
            })?;
        Ok(conn)
    }
}

#[async_trait]
impl SourceDatabase for PostgresSource {
    fn kind(&self) -> Database {
        Database::Postgres
    }

    async fn column_types(&self, relation: &str, described: &str) -> Result<Vec<(String, String)>> {
        let mut conn = self.connect("floe-ingest-plan").await?;
        let probe = format!("floe_probe_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE TEMP VIEW {probe} AS {relation}"))
            .execute(&mut conn)
            .await
            .map_err(|e| self.error(&format!("cannot read {described}"), e))?;
        let rows = sqlx::query_as::<_, (String, String)>(&format!(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)::text FROM pg_attribute a \
             WHERE a.attrelid = '{probe}'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        ))
        .fetch_all(&mut conn)
        .await
        .map_err(|e| self.error("cannot read the source's columns", e))?;
        // The probe goes now, not when the server notices the session ended: a temporary view on
        // the source would block a `DROP TABLE` of it meanwhile.
        let _ = sqlx::query(&format!("DROP VIEW IF EXISTS {probe}"))
            .execute(&mut conn)
            .await;
        Ok(rows)
    }

    async fn estimated_rows(&self, table: &str) -> Result<Option<u64>> {
        let mut conn = self.connect("floe-ingest-plan").await?;
        let estimate: Option<f32> = sqlx::query_scalar(&format!(
            "SELECT reltuples FROM pg_class WHERE oid = to_regclass('{}')",
            table.replace('\'', "''")
        ))
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| self.error("cannot estimate the source's rows", e))?;
        Ok(estimate.filter(|n| *n > 0.0).map(|n| n as u64))
    }

    async fn count(&self, sql: &str, application: &str, snapshot: Option<&str>) -> Result<u64> {
        let mut conn = self.connect_at(application, snapshot).await?;
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| self.error("cannot count the source's rows", e))?;
        Ok(n.max(0) as u64)
    }

    async fn text_counts(&self, sql: &str, what: &str) -> Result<Vec<(String, i64)>> {
        let mut conn = self.connect("floe-ingest-plan").await?;
        sqlx::query_as(sql)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| self.error(what, e))
    }

    async fn integer_counts(&self, sql: &str, what: &str) -> Result<Vec<(i64, i64)>> {
        let mut conn = self.connect("floe-ingest-plan").await?;
        sqlx::query_as(sql)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| self.error(what, e))
    }

    /// A btree index led by the key answers its least and greatest values with two probes; the
    /// statistics are `pg_stats` (the parent's, inherited, for a partitioned table). Nothing here reads
    /// the table's rows.
    async fn key_statistics(&self, table: &str, column: &str) -> Result<Option<KeyStatistics>> {
        let mut conn = self.connect("floe-ingest-plan").await?;
        let error = |e| self.error("cannot read the key's statistics", e);
        let indexed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
             JOIN pg_am am ON am.oid = ic.relam \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE i.indrelid = to_regclass($1) AND a.attname = $2 AND am.amname = 'btree' \
             AND i.indisvalid AND i.indpred IS NULL)",
        )
        .bind(table)
        .bind(column)
        .fetch_one(&mut conn)
        .await
        .map_err(error)?;
        let range = if indexed {
            let c = quote_ident(column);
            let (least, greatest): (Option<i64>, Option<i64>) = sqlx::query_as(&format!(
                "SELECT CAST(min({c}) AS BIGINT), CAST(max({c}) AS BIGINT) FROM {table}"
            ))
            .fetch_one(&mut conn)
            .await
            .map_err(error)?;
            least.zip(greatest)
        } else {
            None
        };
        type Stats = (Option<f64>, Option<String>, Option<String>, Option<Vec<f64>>);
        let stats: Option<Stats> = sqlx::query_as(
            "SELECT CAST(s.null_frac AS float8), CAST(s.histogram_bounds AS text), \
             CAST(s.most_common_vals AS text), CAST(s.most_common_freqs AS float8[]) \
             FROM pg_stats s JOIN pg_namespace n ON n.nspname = s.schemaname \
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename \
             WHERE c.oid = to_regclass($1) AND s.attname = $2 ORDER BY s.inherited DESC LIMIT 1",
        )
        .bind(table)
        .bind(column)
        .fetch_optional(&mut conn)
        .await
        .map_err(error)?;
        let live: Option<i64> =
            sqlx::query_scalar("SELECT n_live_tup FROM pg_stat_all_tables WHERE relid = to_regclass($1)")
                .bind(table)
                .fetch_optional(&mut conn)
                .await
                .map_err(error)?;
        let mut key = KeyStatistics {
            indexed,
            range,
            live_rows: live.filter(|n| *n > 0).map(|n| n as u64),
            ..Default::default()
        };
        if let Some((null_fraction, bounds, common, frequencies)) = stats {
            // Values that do not read as integers (a type floe maps to an integer but Postgres
            // prints otherwise) leave the statistics unused rather than wrong.
            let bounds = integer_array(bounds.as_deref());
            let common = integer_array(common.as_deref());
            let frequencies = frequencies.unwrap_or_default();
            if let (Some(bounds), Some(common)) = (bounds, common) {
                if common.len() == frequencies.len() {
                    key.analyzed = true;
                    key.bounds = bounds;
                    key.common = common.into_iter().zip(frequencies).collect();
                    key.null_fraction = null_fraction.unwrap_or(0.0).clamp(0.0, 1.0);
                }
            }
        }
        Ok(Some(key))
    }

    /// The run's instant, or `None` for a server that cannot export one (such as a standby of an
    /// old release): then each unit reads as of its own start, and a warning says so.
    async fn export_snapshot(&self, application: &str) -> Result<Option<SourceSnapshot>> {
        let mut holder = self.connect(application).await?;
        // The holder idles in its transaction while the units run: a server-wide idle timeout must
        // not end it (and with it the snapshot) under a long extraction.
        sqlx::query("SET idle_in_transaction_session_timeout = 0")
            .execute(&mut holder)
            .await
            .map_err(|e| self.error("cannot configure the source's snapshot session", e))?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut holder)
            .await
            .map_err(|e| self.error("cannot open the source's snapshot transaction", e))?;
        match sqlx::query_scalar::<_, String>("SELECT pg_export_snapshot()")
            .fetch_one(&mut holder)
            .await
        {
            Ok(id) => Ok(Some(SourceSnapshot {
                _holder: Box::new(holder),
                id,
            })),
            Err(sqlx::Error::Database(e)) => {
                tracing::warn!(
                    error = %e,
                    "the source cannot export a snapshot: each unit reads the source as of its own start, \
                     so rows written during the run may be missed or read twice"
                );
                Ok(None)
            }
            Err(e) => Err(self.error("cannot export the source's snapshot", e)),
        }
    }

    async fn extract(
        &self,
        query: &SourceQuery<'_>,
        application: &str,
        snapshot: Option<&str>,
    ) -> Result<SourceRows> {
        // Each column cast to the one type whose binary form the decoder reads.
        let select = query
            .columns
            .iter()
            .map(|c| {
                Ok(format!(
                    "CAST({} AS {})",
                    quote_ident(&c.name),
                    wire_cast(&c.arrow)?
                ))
            })
            .collect::<Result<Vec<_>>>()?
            .join(", ");
        let copy = format!(
            "COPY (SELECT {select} FROM ({}) AS floe_source WHERE {}) TO STDOUT WITH (FORMAT binary)",
            query.relation, query.condition
        );
        let mut decoder = BinaryCopyDecoder::new(query.schema.clone(), 8192)?;
        let mut conn = self.connect_at(application, snapshot).await?;
        let source = self.clone();
        let snapshot = snapshot.map(str::to_string);
        // The COPY stream borrows the connection: it runs on a task of its own that owns both.
        Ok(spawn_reader(move |tx| async move {
            let mut bytes = conn
                .copy_out_raw(&copy)
                .await
                .map_err(|e| source.error("cannot read the source", e))?;
            while let Some(chunk) = bytes
                .try_next()
                .await
                .map_err(|e| source.error("reading the source failed", e))?
            {
                for batch in decoder.push(&chunk)? {
                    if tx.send(Ok(batch)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            drop(bytes);
            if let Some(batch) = decoder.finish()? {
                if tx.send(Ok(batch)).await.is_err() {
                    return Ok(());
                }
            }
            // Read to the end: the connection is ready for the run's next unit.
            if let Some(id) = snapshot {
                source.keep_idle(&id, conn);
            }
            Ok(())
        }))
    }

    fn day_of(&self, column: &str) -> String {
        format!("to_char(date_trunc('day', {column}), 'YYYY-MM-DD')")
    }

    fn date_literal(&self, day: &str) -> String {
        format!("DATE '{day}'")
    }

    fn hash_bucket(&self, column: &str, bucket: u32, buckets: u32) -> Option<String> {
        Some(format!(
            "coalesce(((hashtextextended(CAST({column} AS text), 0) % {buckets}) + {buckets}) % {buckets}, 0) = {bucket}"
        ))
    }

    fn since_literal(&self, kind: MarkKind, value: i64) -> String {
        let text = kind.format(value);
        match kind {
            MarkKind::Integer => text,
            MarkKind::Date => format!("DATE '{text}'"),
            MarkKind::Timestamp { utc: true } => format!("TIMESTAMPTZ '{text}'"),
            MarkKind::Timestamp { utc: false } => format!("TIMESTAMP '{text}'"),
        }
    }

    fn own_type(&self, base: &str, _declared: &str) -> Option<std::result::Result<DataType, &'static str>> {
        // Postgres's `real` is single precision (SQLite's is a double).
        (base == "real").then_some(Ok(DataType::Float32))
    }
}

/// The statements that open a read-only transaction at snapshot `id`.
fn begin_at(id: &str) -> String {
    format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
        id.replace('\'', "''")
    )
}

/// The integers of a Postgres array's text (`{1,2,3}`; none for NULL), `None` when one is not an
/// integer.
fn integer_array(text: Option<&str>) -> Option<Vec<i64>> {
    let Some(text) = text else {
        return Some(Vec::new());
    };
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    if inner.trim().is_empty() {
        return Some(Vec::new());
    }
    inner.split(',').map(|v| v.trim().parse::<i64>().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::integer_array;

    #[test]
    fn reads_statistics_arrays() {
        assert_eq!(
            integer_array(Some("{1,-5,9000000000}")),
            Some(vec![1, -5, 9_000_000_000])
        );
        assert_eq!(integer_array(None), Some(vec![]));
        assert_eq!(integer_array(Some("{}")), Some(vec![]));
        assert_eq!(integer_array(Some("{1.5,2}")), None);
        assert_eq!(integer_array(Some("1,2")), None);
    }
}
