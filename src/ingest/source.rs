//! Extraction sources: a table or query of a Postgres or SQLite database, or files (CSV, NDJSON,
//! Parquet; local or S3). For a database, the columns are read from the database's catalog and
//! mapped to Iceberg types (an unmappable column is an error before any work), the rows are
//! estimated and histogrammed for planning units, and a unit's rows stream as Arrow batches: from
//! Postgres through `COPY (SELECT ...) TO STDOUT (FORMAT binary)` (decoded into Arrow as the bytes
//! arrive, `pg_binary`), from SQLite through row-by-row reads. No unit holds its result in memory.
//! Every unit of a Postgres run reads at one exported snapshot (`SourceSnapshot`), so a source
//! that is written during the run is extracted as of one instant.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sqlx::{Connection, Row};

use super::units::Bounds;
use crate::error::{Error, ErrorKind, Result};
use crate::secrets::redact_secrets;

/// Which database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Database {
    /// A Postgres server.
    Postgres,
    /// An SQLite file.
    Sqlite,
}

/// A database source: a URL and a table or a query.
#[derive(Clone, Debug)]
pub struct SqlSource {
    url: String,
    database: Database,
    /// `SELECT * FROM <table>` or the user's query.
    relation: String,
    /// What the user named, for messages and the record.
    pub described: String,
}

/// A source column and how it maps.
#[derive(Clone, Debug)]
pub struct SourceColumn {
    /// Its name.
    pub name: String,
    /// The source's type name (`numeric(12,2)`, `timestamp with time zone`, `TEXT`).
    pub source_type: String,
    /// The Arrow type it lands as.
    pub arrow: DataType,
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn sql_error(what: &str, url: &str, e: sqlx::Error) -> Error {
    let kind = match &e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => ErrorKind::Storage,
        sqlx::Error::Database(d)
            if d.code()
                .is_some_and(|c| transient_database_code(url.starts_with("sqlite:"), &c)) =>
        {
            ErrorKind::Storage
        }
        sqlx::Error::Database(_) => ErrorKind::InvalidInput,
        _ => ErrorKind::Engine,
    };
    Error::new(
        kind,
        format!(
            "{what} ({}): {}",
            redact_secrets(url),
            redact_secrets(&e.to_string())
        ),
    )
}

/// Whether a database error code says the server, not the query, failed, so a retry may succeed
/// (units are retried unless their error is invalid input). Postgres SQLSTATE classes: 08 connection
/// exception, 40 transaction rollback (serialization failure, deadlock), 53 insufficient resources,
/// 57 operator intervention (a terminated backend, a cancelled query, a shutdown), 58 system error,
/// XX internal error. SQLite result codes (extended codes carry the primary one in their low byte):
/// 5 busy, 6 locked, 10 I/O error.
fn transient_database_code(sqlite: bool, code: &str) -> bool {
    if sqlite {
        return code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 10));
    }
    matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58" | "XX"))
}

/// The instant of a Postgres source that every unit of a run reads: a `REPEATABLE READ` transaction
/// held open on a connection of its own, whose snapshot each unit's transaction imports
/// (`pg_export_snapshot`, `SET TRANSACTION SNAPSHOT`), as `pg_dump --jobs` does. Without it each
/// unit would see the source as of its own start, and a row updated from one unit's key range into
/// another's between two units' starts would be read twice or not at all. The holding transaction
/// keeps the server from vacuuming rows newer than its start until the run's units are done.
pub(crate) struct SourceSnapshot {
    /// Kept open: the snapshot lives as long as this transaction.
    _holder: sqlx::PgConnection,
    /// The exported snapshot's identifier.
    pub id: String,
}

/// An open connection to the source database.
pub(crate) enum SourceConnection {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl SqlSource {
    /// A source at `url` (`postgres://...` or `sqlite:PATH`) reading `table` (`SCHEMA.NAME` or `NAME`)
    /// or `query`.
    pub fn new(url: &str, table: Option<&str>, query: Option<&str>) -> Result<Self> {
        crate::secrets::register_url_secrets(url);
        let database = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Database::Postgres
        } else if url.starts_with("sqlite:") {
            Database::Sqlite
        } else {
            return Err(Error::invalid(format!(
                "source {}: expected postgres://..., sqlite:PATH, or files",
                redact_secrets(url)
            )));
        };
        let (relation, described) = match (table, query) {
            (Some(t), None) => {
                let quoted = t.split('.').map(quote_ident).collect::<Vec<_>>().join(".");
                (format!("SELECT * FROM {quoted}"), format!("table {t}"))
            }
            (None, Some(q)) => (q.trim().trim_end_matches(';').to_string(), format!("query {q}")),
            _ => {
                return Err(Error::invalid(
                    "a database source needs exactly one of --table and --query",
                ))
            }
        };
        Ok(Self {
            url: url.to_string(),
            database,
            relation,
            described,
        })
    }

    /// The database kind.
    pub fn database(&self) -> Database {
        self.database
    }

    /// The URL without any password, as it is recorded.
    pub fn url_redacted(&self) -> String {
        redact_secrets(&self.url)
    }

    /// Open a connection named `application` (visible in `pg_stat_activity`), in UTC.
    pub(crate) async fn connect(&self, application: &str) -> Result<SourceConnection> {
        match self.database {
            Database::Postgres => {
                use std::str::FromStr;
                let options = sqlx::postgres::PgConnectOptions::from_str(&self.url)
                    .map_err(|e| sql_error("invalid source URL", &self.url, e))?
                    .application_name(application)
                    .options([("TimeZone", "UTC")]);
                let conn = sqlx::PgConnection::connect_with(&options)
                    .await
                    .map_err(|e| sql_error("cannot connect to the source", &self.url, e))?;
                Ok(SourceConnection::Postgres(conn))
            }
            Database::Sqlite => {
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
                let conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}?mode=ro"))
                    .await
                    .map_err(|e| sql_error("cannot open the source", &self.url, e))?;
                Ok(SourceConnection::Sqlite(conn))
            }
        }
    }

    /// Export the instant every unit of a run reads (Postgres; `None` for SQLite, which cannot
    /// share a snapshot between connections, and for a server that cannot export one, such as a
    /// standby of an old release: then each unit reads as of its own start, and a warning says so).
    pub(crate) async fn export_snapshot(&self, application: &str) -> Result<Option<SourceSnapshot>> {
        let SourceConnection::Postgres(mut holder) = self.connect(application).await? else {
            return Ok(None);
        };
        // The holder idles in its transaction while the units run: a server-wide idle timeout must
        // not end it (and with it the snapshot) under a long extraction.
        sqlx::query("SET idle_in_transaction_session_timeout = 0")
            .execute(&mut holder)
            .await
            .map_err(|e| sql_error("cannot configure the source's snapshot session", &self.url, e))?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut holder)
            .await
            .map_err(|e| sql_error("cannot open the source's snapshot transaction", &self.url, e))?;
        match sqlx::query_scalar::<_, String>("SELECT pg_export_snapshot()")
            .fetch_one(&mut holder)
            .await
        {
            Ok(id) => Ok(Some(SourceSnapshot { _holder: holder, id })),
            Err(sqlx::Error::Database(e)) => {
                tracing::warn!(
                    error = %e,
                    "the source cannot export a snapshot: each unit reads the source as of its own start, \
                     so rows written during the run may be missed or read twice"
                );
                Ok(None)
            }
            Err(e) => Err(sql_error("cannot export the source's snapshot", &self.url, e)),
        }
    }

    /// Make `conn`'s next statements read at `snapshot` (one transaction; nothing for SQLite).
    async fn read_at(&self, conn: &mut SourceConnection, snapshot: Option<&str>) -> Result<()> {
        let (SourceConnection::Postgres(c), Some(id)) = (conn, snapshot) else {
            return Ok(());
        };
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *c)
            .await
            .map_err(|e| sql_error("cannot open a transaction at the source", &self.url, e))?;
        sqlx::query(&format!("SET TRANSACTION SNAPSHOT '{}'", id.replace('\'', "''")))
            .execute(&mut *c)
            .await
            .map_err(|e| {
                sql_error(
                    &format!(
                        "cannot read at the run's source snapshot {id} (the connection that held it \
                         ended; `floe ingest --resume` reads the units not done at a new snapshot)"
                    ),
                    &self.url,
                    e,
                )
            })?;
        Ok(())
    }

    /// The source's columns, each mapped to an Arrow (Iceberg) type; an unmappable one is an error.
    pub async fn columns(&self) -> Result<Vec<SourceColumn>> {
        let mut conn = self.connect("floe-ingest-plan").await?;
        let probe = format!("floe_probe_{}", uuid::Uuid::new_v4().simple());
        let rows: Vec<(String, String)> = match &mut conn {
            SourceConnection::Postgres(c) => {
                sqlx::query(&format!("CREATE TEMP VIEW {probe} AS {}", self.relation))
                    .execute(&mut *c)
                    .await
                    .map_err(|e| sql_error(&format!("cannot read {}", self.described), &self.url, e))?;
                let rows = sqlx::query(&format!(
                    "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)::text FROM pg_attribute a \
                     WHERE a.attrelid = '{probe}'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
                ))
                .fetch_all(&mut *c)
                .await
                .map_err(|e| sql_error("cannot read the source's columns", &self.url, e))?;
                // The probe goes now, not when the server notices the session ended: a temporary
                // view on the source would block a `DROP TABLE` of it meanwhile.
                let _ = sqlx::query(&format!("DROP VIEW IF EXISTS {probe}"))
                    .execute(&mut *c)
                    .await;
                rows.iter()
                    .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
                    .collect()
            }
            SourceConnection::Sqlite(c) => {
                let rows = sqlx::query(&format!("SELECT * FROM ({}) LIMIT 0", self.relation))
                    .fetch_all(&mut *c)
                    .await
                    .map_err(|e| sql_error(&format!("cannot read {}", self.described), &self.url, e))?;
                drop(rows);
                // Declared types: through a temporary view's table_info.
                sqlx::query(&format!("CREATE TEMP VIEW {probe} AS {}", self.relation))
                    .execute(&mut *c)
                    .await
                    .map_err(|e| sql_error(&format!("cannot read {}", self.described), &self.url, e))?;
                let rows = sqlx::query(&format!("PRAGMA table_info({probe})"))
                    .fetch_all(&mut *c)
                    .await
                    .map_err(|e| sql_error("cannot read the source's columns", &self.url, e))?;
                rows.iter()
                    .map(|r| (r.get::<String, _>("name"), r.get::<String, _>("type")))
                    .collect()
            }
        };
        if rows.is_empty() {
            return Err(Error::invalid(format!("{} has no columns", self.described)));
        }
        rows.into_iter()
            .map(|(name, ty)| map_type(self.database, &name, &ty))
            .collect()
    }

    /// The rows the source holds, as cheaply as the database can say: Postgres's `reltuples` for a
    /// table that has been analyzed, else a count.
    pub async fn estimate(&self) -> Result<u64> {
        let mut conn = self.connect("floe-ingest-plan").await?;
        if let (SourceConnection::Postgres(c), Some(table)) =
            (&mut conn, self.relation.strip_prefix("SELECT * FROM "))
        {
            let estimate: Option<f32> = sqlx::query_scalar(&format!(
                "SELECT reltuples FROM pg_class WHERE oid = to_regclass('{}')",
                table.replace('\'', "''")
            ))
            .fetch_optional(&mut *c)
            .await
            .map_err(|e| sql_error("cannot estimate the source's rows", &self.url, e))?;
            if let Some(n) = estimate.filter(|n| *n > 0.0) {
                return Ok(n as u64);
            }
        }
        self.count(&mut conn, &Bounds::All).await
    }

    /// The exact number of rows of `bounds` at the source, at `snapshot` when one is given.
    pub(crate) async fn count_at(
        &self,
        bounds: &Bounds,
        application: &str,
        snapshot: Option<&str>,
    ) -> Result<u64> {
        let mut conn = self.connect(application).await?;
        self.read_at(&mut conn, snapshot).await?;
        self.count(&mut conn, bounds).await
    }

    /// The exact number of rows of `bounds` at the source.
    pub(crate) async fn count(&self, conn: &mut SourceConnection, bounds: &Bounds) -> Result<u64> {
        let sql = format!(
            "SELECT count(*) FROM ({}) AS floe_source WHERE {}",
            self.relation,
            self.condition(bounds)?
        );
        let n: i64 = match conn {
            SourceConnection::Postgres(c) => sqlx::query_scalar(&sql).fetch_one(&mut *c).await,
            SourceConnection::Sqlite(c) => sqlx::query_scalar(&sql).fetch_one(&mut *c).await,
        }
        .map_err(|e| sql_error("cannot count the source's rows", &self.url, e))?;
        Ok(n.max(0) as u64)
    }

    /// Rows per day of `column` (a date or timestamp), ascending, empty days absent: `(day, next day,
    /// rows)` as `YYYY-MM-DD`.
    pub(crate) async fn day_histogram(&self, column: &SourceColumn) -> Result<Vec<(String, String, u64)>> {
        let c = quote_ident(&column.name);
        let day = match self.database {
            Database::Postgres => format!("to_char(date_trunc('day', {c}), 'YYYY-MM-DD')"),
            Database::Sqlite => format!("substr({c}, 1, 10)"),
        };
        let sql = format!(
            "SELECT {day} AS d, count(*) AS n FROM ({}) AS floe_source WHERE {c} IS NOT NULL GROUP BY 1 ORDER BY 1",
            self.relation
        );
        let rows = self.fetch_pairs(&sql).await?;
        rows.into_iter()
            .map(|(d, n)| {
                let day = chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                    .map_err(|_| Error::invalid(format!("{}: {d:?} is not a date", column.name)))?;
                let next = day.succ_opt().unwrap_or(day);
                Ok((day.to_string(), next.to_string(), n))
            })
            .collect()
    }

    /// Rows per one-thousandth of the range of `column` (an integer key), ascending, empty stretches
    /// absent: `(smallest value, smallest value + 1, rows)` per stretch.
    pub(crate) async fn id_histogram(&self, column: &SourceColumn) -> Result<Vec<(i64, i64, u64)>> {
        let c = quote_ident(&column.name);
        let bounds = format!(
            "SELECT min({c}) AS lo, max({c}) AS hi FROM ({}) AS floe_source",
            self.relation
        );
        let sql = format!(
            "WITH b AS ({bounds}) SELECT CAST(min({c}) AS BIGINT) AS lo, count(*) AS n FROM ({}) AS floe_source, b \
             WHERE {c} IS NOT NULL GROUP BY (CAST({c} AS BIGINT) - b.lo) * 1000 / (b.hi - b.lo + 1) ORDER BY 1",
            self.relation
        );
        let mut conn = self.connect("floe-ingest-plan").await?;
        let rows: Vec<(i64, i64)> = match &mut conn {
            SourceConnection::Postgres(conn) => sqlx::query(&sql).fetch_all(&mut *conn).await.map(|rows| {
                rows.iter()
                    .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1)))
                    .collect()
            }),
            SourceConnection::Sqlite(conn) => sqlx::query(&sql).fetch_all(&mut *conn).await.map(|rows| {
                rows.iter()
                    .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1)))
                    .collect()
            }),
        }
        .map_err(|e| sql_error(&format!("cannot histogram {}", column.name), &self.url, e))?;
        Ok(rows
            .into_iter()
            .map(|(lo, n)| (lo, lo.saturating_add(1), n.max(0) as u64))
            .collect())
    }

    async fn fetch_pairs(&self, sql: &str) -> Result<Vec<(String, u64)>> {
        let mut conn = self.connect("floe-ingest-plan").await?;
        let rows: Vec<(String, i64)> = match &mut conn {
            SourceConnection::Postgres(c) => sqlx::query(sql).fetch_all(&mut *c).await.map(|rows| {
                rows.iter()
                    .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
                    .collect()
            }),
            SourceConnection::Sqlite(c) => sqlx::query(sql).fetch_all(&mut *c).await.map(|rows| {
                rows.iter()
                    .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
                    .collect()
            }),
        }
        .map_err(|e| sql_error("cannot plan the extraction", &self.url, e))?;
        Ok(rows.into_iter().map(|(k, n)| (k, n.max(0) as u64)).collect())
    }

    /// The SQL condition that selects `bounds`.
    pub(crate) fn condition(&self, bounds: &Bounds) -> Result<String> {
        Ok(match bounds {
            Bounds::All => "TRUE".to_string(),
            Bounds::Range {
                column,
                lo,
                hi,
                nulls,
                dates,
            } => {
                let c = quote_ident(column);
                let value = |v: &str| -> String {
                    match (dates, self.database) {
                        (true, Database::Postgres) => format!("DATE '{v}'"),
                        (true, Database::Sqlite) => format!("'{v}'"),
                        (false, _) => v
                            .parse::<i64>()
                            .map(|n| n.to_string())
                            .unwrap_or_else(|_| "NULL".into()),
                    }
                };
                let mut parts = Vec::new();
                if let Some(lo) = lo {
                    parts.push(format!("{c} >= {}", value(lo)));
                }
                if let Some(hi) = hi {
                    parts.push(format!("{c} < {}", value(hi)));
                }
                let range = if parts.is_empty() {
                    format!("{c} IS NOT NULL")
                } else {
                    parts.join(" AND ")
                };
                if *nulls {
                    format!("(({range}) OR {c} IS NULL)")
                } else {
                    format!("({range})")
                }
            }
            Bounds::Hash {
                column,
                bucket,
                buckets,
            } => match self.database {
                Database::Postgres => {
                    let c = quote_ident(column);
                    format!(
                        "coalesce(((hashtextextended(CAST({c} AS text), 0) % {buckets}) + {buckets}) % {buckets}, 0) = {bucket}"
                    )
                }
                Database::Sqlite => {
                    return Err(Error::invalid(
                        "hash(COL) needs a source that can hash; SQLite cannot: use id(COL) or date(COL)",
                    ))
                }
            },
            Bounds::File { .. } | Bounds::ByteRange { .. } => {
                return Err(Error::internal("a file unit on a database source"))
            }
        })
    }

    /// The rows of `bounds`, as batches of `columns` (their Arrow types), at `snapshot` when one is
    /// given.
    pub(crate) async fn extract(
        &self,
        columns: &[SourceColumn],
        bounds: &Bounds,
        application: &str,
        snapshot: Option<&str>,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let condition = self.condition(bounds)?;
        let schema: SchemaRef = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(&c.name, c.arrow.clone(), true))
                .collect::<Vec<_>>(),
        ));
        let mut conn = self.connect(application).await?;
        self.read_at(&mut conn, snapshot).await?;
        match conn {
            SourceConnection::Postgres(conn) => {
                postgres_copy(conn, &self.url, &self.relation, &condition, columns, schema).await
            }
            SourceConnection::Sqlite(conn) => {
                sqlite_rows(conn, &self.url, &self.relation, &condition, columns, schema)
            }
        }
    }
}

/// A source type → Arrow type.
fn map_type(database: Database, name: &str, source_type: &str) -> Result<SourceColumn> {
    let t = source_type.trim().to_ascii_lowercase();
    let base = t.split('(').next().unwrap_or(&t).trim();
    let arrow =
        match (database, base) {
            (_, "smallint" | "integer" | "int" | "int2" | "int4" | "mediumint" | "tinyint") => {
                DataType::Int32
            }
            (_, "bigint" | "int8") => DataType::Int64,
            (Database::Sqlite, "" | "numeric" | "num") if !t.contains('(') => return Err(unmappable(
                name,
                source_type,
                "an SQLite column without a declared type (or numeric without precision); cast it in --query",
            )),
            (_, "real") if database == Database::Postgres => DataType::Float32,
            (_, "real" | "double precision" | "double" | "float" | "float8") => DataType::Float64,
            (_, "float4") => DataType::Float32,
            (_, "numeric" | "decimal") => {
                let args = t
                    .split_once('(')
                    .and_then(|(_, a)| a.strip_suffix(')'))
                    .map(|a| a.split(',').map(|x| x.trim().parse::<u8>()).collect::<Vec<_>>());
                match args.as_deref() {
                    Some([Ok(p), Ok(s)]) if *p <= 38 && s <= p => DataType::Decimal128(*p, *s as i8),
                    Some([Ok(p)]) if *p <= 38 => DataType::Decimal128(*p, 0),
                    _ => return Err(unmappable(
                        name,
                        source_type,
                        "numeric needs a precision of at most 38 (cast it in --query, e.g. numeric(38,9))",
                    )),
                }
            }
            (
                _,
                "text" | "varchar" | "character varying" | "character" | "char" | "bpchar" | "name"
                | "citext" | "clob",
            ) => DataType::Utf8,
            (_, "json" | "jsonb" | "uuid") => DataType::Utf8,
            (_, "boolean" | "bool") => DataType::Boolean,
            (_, "date") => DataType::Date32,
            (_, "timestamp with time zone" | "timestamptz") => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
            }
            (_, "timestamp" | "timestamp without time zone" | "datetime") => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            (_, "bytea" | "blob") => DataType::Binary,
            _ => return Err(unmappable(name, source_type, "no Iceberg type fits it")),
        };
    Ok(SourceColumn {
        name: name.to_string(),
        source_type: source_type.to_string(),
        arrow,
    })
}

fn unmappable(name: &str, source_type: &str, why: &str) -> Error {
    Error::invalid(format!(
        "source column {name:?} of type {source_type} cannot be extracted: {why}; nothing was written"
    ))
}

/// Whether `column` can be hashed into units.
pub(crate) fn hashable(column: &SourceColumn) -> bool {
    matches!(
        column.arrow,
        DataType::Int32
            | DataType::Int64
            | DataType::Utf8
            | DataType::Date32
            | DataType::Timestamp(..)
            | DataType::Decimal128(..)
    ) && !column.source_type.to_ascii_lowercase().starts_with("json")
}

/// Whether `column` can key `id(COL)` units.
pub(crate) fn integer(column: &SourceColumn) -> bool {
    matches!(column.arrow, DataType::Int32 | DataType::Int64)
}

/// Whether `column` can key `date(COL)` units.
pub(crate) fn temporal(column: &SourceColumn) -> bool {
    matches!(column.arrow, DataType::Date32 | DataType::Timestamp(..))
}

async fn postgres_copy(
    mut conn: sqlx::PgConnection,
    url: &str,
    relation: &str,
    condition: &str,
    columns: &[SourceColumn],
    schema: SchemaRef,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    // Each column cast to the one type whose binary form the decoder reads.
    let select = columns
        .iter()
        .map(|c| {
            Ok(format!(
                "CAST({} AS {})",
                quote_ident(&c.name),
                super::pg_binary::wire_cast(&c.arrow)?
            ))
        })
        .collect::<Result<Vec<_>>>()?
        .join(", ");
    let copy = format!(
        "COPY (SELECT {select} FROM ({relation}) AS floe_source WHERE {condition}) TO STDOUT WITH (FORMAT binary)"
    );
    let mut decoder = super::pg_binary::BinaryCopyDecoder::new(schema, 8192)?;
    let url = url.to_string();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(4);
    // The COPY stream borrows the connection: it runs on a task of its own that owns both.
    tokio::spawn(async move {
        let result: Result<()> = async {
            let mut bytes = conn
                .copy_out_raw(&copy)
                .await
                .map_err(|e| sql_error("cannot read the source", &url, e))?;
            while let Some(chunk) = bytes
                .try_next()
                .await
                .map_err(|e| sql_error("reading the source failed", &url, e))?
            {
                for batch in decoder.push(&chunk)? {
                    if tx.send(Ok(batch)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            if let Some(batch) = decoder.finish()? {
                let _ = tx.send(Ok(batch)).await;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = tx.send(Err(e)).await;
        }
    });
    let mut rx = rx;
    Ok(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed())
}

fn sqlite_rows(
    mut conn: sqlx::SqliteConnection,
    url: &str,
    relation: &str,
    condition: &str,
    columns: &[SourceColumn],
    schema: SchemaRef,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let select = columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT {select} FROM ({relation}) AS floe_source WHERE {condition}");
    let columns = columns.to_vec();
    let url = url.to_string();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(4);
    tokio::spawn(async move {
        let result: Result<()> = async {
            let mut rows = sqlx::query(&sql).fetch(&mut conn);
            let mut buffered: Vec<Vec<Option<String>>> = columns.iter().map(|_| Vec::new()).collect();
            let mut blobs: Vec<Vec<Option<Vec<u8>>>> = columns.iter().map(|_| Vec::new()).collect();
            let mut n = 0usize;
            let flush = |buffered: &mut Vec<Vec<Option<String>>>,
                         blobs: &mut Vec<Vec<Option<Vec<u8>>>>|
             -> Result<RecordBatch> {
                let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
                for (i, c) in columns.iter().enumerate() {
                    if c.arrow == DataType::Binary {
                        let values = std::mem::take(&mut blobs[i]);
                        arrays.push(Arc::new(arrow::array::BinaryArray::from_iter(values)));
                    } else {
                        let text: StringArray = std::mem::take(&mut buffered[i]).into_iter().collect();
                        let cast = arrow::compute::cast_with_options(
                            &text,
                            &c.arrow,
                            &arrow::compute::CastOptions {
                                safe: false,
                                ..Default::default()
                            },
                        )
                        .map_err(|e| Error::new(ErrorKind::Data, format!("source column {}: {e}", c.name)))?;
                        arrays.push(cast);
                    }
                }
                Ok(RecordBatch::try_new(schema.clone(), arrays)?)
            };
            while let Some(row) = rows
                .try_next()
                .await
                .map_err(|e| sql_error("reading the source failed", &url, e))?
            {
                for (i, c) in columns.iter().enumerate() {
                    if c.arrow == DataType::Binary {
                        blobs[i].push(
                            row.try_get::<Option<Vec<u8>>, _>(i)
                                .map_err(|e| sql_error("reading the source failed", &url, e))?,
                        );
                        continue;
                    }
                    let raw = row
                        .try_get_raw(i)
                        .map_err(|e| sql_error("reading the source failed", &url, e))?;
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
                        .map_err(|e| sql_error(&format!("source column {}", c.name), &url, e))?
                    };
                    buffered[i].push(text);
                }
                n += 1;
                if n == 8192 {
                    n = 0;
                    if tx.send(flush(&mut buffered, &mut blobs)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            if n > 0 {
                let _ = tx.send(flush(&mut buffered, &mut blobs)).await;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = tx.send(Err(e)).await;
        }
    });
    let mut rx = rx;
    Ok(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed())
}

/// Whether `column` exists in `columns`.
pub(crate) fn find<'a>(columns: &'a [SourceColumn], name: &str) -> Result<&'a SourceColumn> {
    columns.iter().find(|c| c.name == name).ok_or_else(|| {
        Error::invalid(format!(
            "the source has no column {name:?} (columns: {}); nothing was written",
            columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::transient_database_code;

    #[test]
    fn a_terminated_or_busy_source_is_retried_and_a_bad_query_is_not() {
        for code in ["57P01", "57014", "08006", "40001", "40P01", "53300", "XX000"] {
            assert!(transient_database_code(false, code), "postgres {code}");
        }
        for code in ["42601", "42P01", "22012", "28P01", "3D000"] {
            assert!(!transient_database_code(false, code), "postgres {code}");
        }
        for code in ["5", "6", "517", "10", "266"] {
            assert!(transient_database_code(true, code), "sqlite {code}");
        }
        for code in ["1", "19", "2067"] {
            assert!(!transient_database_code(true, code), "sqlite {code}");
        }
    }
}
