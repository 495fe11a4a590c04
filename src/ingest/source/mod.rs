//! Extraction sources: a table or query of a Postgres or SQLite database (this module; files are
//! read by `table::files`). [`SqlSource`] is what the planner and the units use; each database is
//! one module behind the [`SourceDatabase`] trait ([`postgres`], [`sqlite`]): how it connects, what
//! its columns are, how it counts, histograms and streams rows. Columns are mapped to Iceberg
//! (Arrow) types before any work (an unmappable one is an error), rows are estimated and
//! histogrammed (or an integer key described by the database's statistics and index) for planning
//! units, and a unit's rows stream as Arrow batches; no unit holds its
//! result in memory. Every unit of a Postgres run reads at one exported snapshot
//! ([`SourceSnapshot`]), so a source that is written during the run is extracted as of one instant.

mod pg_binary;
pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use futures::stream::BoxStream;

use super::units::{Bounds, KeyStatistics};
use super::watermark::{self, MarkKind};
use crate::error::{Error, Result, SqlDatabase};
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
    database: Arc<dyn SourceDatabase>,
    /// `SELECT * FROM <table>` or the user's query.
    relation: String,
    /// The table (quoted), when the source is one: its statistics estimate its rows.
    table: Option<String>,
    /// A condition every read is restricted to (an incremental run's window), over the relation's
    /// columns.
    within: Option<String>,
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

/// The instant of a source that every unit of a run reads (see [`postgres`]): the exported
/// snapshot's identifier, valid while the connection that exported it is held here.
pub(crate) struct SourceSnapshot {
    /// Kept open: the snapshot lives as long as it.
    _holder: Box<dyn std::any::Any + Send>,
    /// The exported snapshot's identifier.
    pub id: String,
}

/// Rows streamed from a source.
pub(crate) type SourceRows = BoxStream<'static, Result<RecordBatch>>;

/// What differs between the databases floe extracts from. Every method that reads opens its own
/// connection, named `application` where the database shows names (`pg_stat_activity`).
#[async_trait]
pub(crate) trait SourceDatabase: Send + Sync + std::fmt::Debug {
    /// Which database this is.
    fn kind(&self) -> Database;

    /// The columns of `relation` (a `SELECT`), as (name, declared type); `described` names it in
    /// errors.
    async fn column_types(&self, relation: &str, described: &str) -> Result<Vec<(String, String)>>;

    /// The rows of `table` (a quoted table name) as the database's statistics estimate them, when
    /// it keeps any.
    async fn estimated_rows(&self, table: &str) -> Result<Option<u64>>;

    /// The one integer `sql` returns (a count), read at `snapshot` when one is given.
    async fn count(&self, sql: &str, application: &str, snapshot: Option<&str>) -> Result<u64>;

    /// The (text, count) rows of `sql`; `what` names the query in errors.
    async fn text_counts(&self, sql: &str, what: &str) -> Result<Vec<(String, i64)>>;

    /// The (integer, count) rows of `sql`; `what` names the query in errors.
    async fn integer_counts(&self, sql: &str, what: &str) -> Result<Vec<(i64, i64)>>;

    /// What the database knows of the integer key `column` (unquoted) of `table` (a quoted table
    /// name) without reading its rows; `None` when it keeps nothing of the kind.
    async fn key_statistics(&self, _table: &str, _column: &str) -> Result<Option<KeyStatistics>> {
        Ok(None)
    }

    /// The instant every unit of a run reads, when the database can share one between
    /// connections (`None` otherwise).
    async fn export_snapshot(&self, _application: &str) -> Result<Option<SourceSnapshot>> {
        Ok(None)
    }

    /// Stream `SELECT columns FROM (relation) WHERE condition` as batches of `schema`, at
    /// `snapshot` when one is given.
    async fn extract(
        &self,
        query: &SourceQuery<'_>,
        application: &str,
        snapshot: Option<&str>,
    ) -> Result<SourceRows>;

    /// The day (`YYYY-MM-DD` text) of the date or timestamp column `column` (quoted).
    fn day_of(&self, column: &str) -> String;

    /// A date literal of `YYYY-MM-DD`.
    fn date_literal(&self, day: &str) -> String;

    /// The condition selecting hash bucket `bucket` of `buckets` of `column` (quoted); `None` when
    /// the database cannot hash.
    fn hash_bucket(&self, column: &str, bucket: u32, buckets: u32) -> Option<String>;

    /// Whether the database can hash a column into buckets (`hash(COL)` units).
    fn can_hash(&self) -> bool {
        self.hash_bucket("\"column\"", 0, 1).is_some()
    }

    /// `column` (quoted), a `--since` column of `kind`, as incremental ingest compares it and takes
    /// its greatest value: the column itself where the database types its values.
    fn comparable(&self, column: &str, _kind: MarkKind) -> String {
        column.to_string()
    }

    /// A literal of `value` of a `--since` column of `kind`, comparable with
    /// [`SourceDatabase::comparable`].
    fn since_literal(&self, kind: MarkKind, value: i64) -> String;

    /// This database's own reading of a declared type (`base` is the type name in lower case
    /// without arguments, `declared` the whole of it in lower case): `Some(Ok(type))` or
    /// `Some(Err(why not))` where it differs from the common mapping.
    fn own_type(&self, base: &str, declared: &str) -> Option<std::result::Result<DataType, &'static str>>;
}

/// What a unit extracts: its columns (with their Arrow types) of a relation, under a condition.
pub(crate) struct SourceQuery<'a> {
    /// `SELECT * FROM <table>` or the user's query.
    pub relation: &'a str,
    /// The unit's condition ([`SqlSource::condition`]).
    pub condition: &'a str,
    /// The columns, in order.
    pub columns: &'a [SourceColumn],
    /// The batches' schema.
    pub schema: SchemaRef,
}

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An sqlx error of the source database at `url`.
pub(crate) fn sql_error(database: Database, what: &str, url: &str, e: sqlx::Error) -> Error {
    let sqlite = database == Database::Sqlite;
    Error::sqlx(
        SqlDatabase::Source { sqlite },
        format!("{what} ({})", redact_secrets(url)),
        e,
    )
}

impl SqlSource {
    /// A source at `url` (`postgres://...` or `sqlite:PATH`) reading `table` (`SCHEMA.NAME` or `NAME`)
    /// or `query`.
    pub fn new(url: &str, table: Option<&str>, query: Option<&str>) -> Result<Self> {
        crate::secrets::register_url_secrets(url);
        let database: Arc<dyn SourceDatabase> =
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                Arc::new(postgres::PostgresSource::new(url))
            } else if url.starts_with("sqlite:") {
                Arc::new(sqlite::SqliteSource::new(url))
            } else {
                return Err(Error::invalid(format!(
                    "source {}: expected postgres://..., sqlite:PATH, or files",
                    redact_secrets(url)
                )));
            };
        let (relation, quoted_table, described) = match (table, query) {
            (Some(t), None) => {
                let quoted = t.split('.').map(quote_ident).collect::<Vec<_>>().join(".");
                (
                    format!("SELECT * FROM {quoted}"),
                    Some(quoted),
                    format!("table {t}"),
                )
            }
            (None, Some(q)) => (
                q.trim().trim_end_matches(';').to_string(),
                None,
                format!("query {q}"),
            ),
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
            table: quoted_table,
            within: None,
            described,
        })
    }

    /// The source restricted to the rows `condition` (over its columns) holds for: every count,
    /// histogram and extraction reads those only.
    pub(crate) fn within(self, condition: String) -> Self {
        Self {
            within: Some(condition),
            ..self
        }
    }

    /// What every read reads: the relation, under [`SqlSource::within`]'s condition.
    fn relation(&self) -> std::borrow::Cow<'_, str> {
        match &self.within {
            None => self.relation.as_str().into(),
            Some(c) => format!("SELECT * FROM ({}) AS floe_within WHERE {c}", self.relation).into(),
        }
    }

    /// The database kind.
    pub fn database(&self) -> Database {
        self.database.kind()
    }

    /// Whether the source can split rows by a hash of a column (`hash(COL)` units).
    pub fn can_hash(&self) -> bool {
        self.database.can_hash()
    }

    /// The URL without any password, as it is recorded.
    pub fn url_redacted(&self) -> String {
        redact_secrets(&self.url)
    }

    /// Export the instant every unit of a run reads (Postgres; `None` for SQLite, which cannot
    /// share a snapshot between connections, and for a server that cannot export one, such as a
    /// standby of an old release: then each unit reads as of its own start, and a warning says so).
    pub(crate) async fn export_snapshot(&self, application: &str) -> Result<Option<SourceSnapshot>> {
        self.database.export_snapshot(application).await
    }

    /// The source's columns, each mapped to an Arrow (Iceberg) type; an unmappable one is an error.
    pub async fn columns(&self) -> Result<Vec<SourceColumn>> {
        let rows = self
            .database
            .column_types(&self.relation(), &self.described)
            .await?;
        if rows.is_empty() {
            return Err(Error::invalid(format!("{} has no columns", self.described)));
        }
        rows.into_iter()
            .map(|(name, ty)| map_type(self.database.as_ref(), &name, &ty))
            .collect()
    }

    /// The rows the source holds, as cheaply as the database can say: Postgres's `reltuples` for a
    /// table that has been analyzed, else a count.
    pub async fn estimate(&self) -> Result<u64> {
        if let (Some(table), None) = (&self.table, &self.within) {
            if let Some(n) = self.database.estimated_rows(table).await? {
                return Ok(n);
            }
        }
        self.count_at(&Bounds::All, "floe-ingest-plan", None).await
    }

    /// The exact number of rows of `bounds` at the source, at `snapshot` when one is given.
    pub(crate) async fn count_at(
        &self,
        bounds: &Bounds,
        application: &str,
        snapshot: Option<&str>,
    ) -> Result<u64> {
        let sql = format!(
            "SELECT count(*) FROM ({}) AS floe_source WHERE {}",
            self.relation(),
            self.condition(bounds)?
        );
        self.database.count(&sql, application, snapshot).await
    }

    /// Rows per day of `column` (a date or timestamp), ascending, empty days absent: `(day, next day,
    /// rows)` as `YYYY-MM-DD`.
    pub(crate) async fn day_histogram(&self, column: &SourceColumn) -> Result<Vec<(String, String, u64)>> {
        let c = quote_ident(&column.name);
        let day = self.database.day_of(&c);
        let sql = format!(
            "SELECT {day} AS d, count(*) AS n FROM ({}) AS floe_source WHERE {c} IS NOT NULL GROUP BY 1 ORDER BY 1",
            self.relation()
        );
        let rows = self
            .database
            .text_counts(&sql, "cannot plan the extraction")
            .await?;
        rows.into_iter()
            .map(|(d, n)| {
                let day = chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                    .map_err(|_| Error::invalid(format!("{}: {d:?} is not a date", column.name)))?;
                let next = day.succ_opt().unwrap_or(day);
                Ok((day.to_string(), next.to_string(), n.max(0) as u64))
            })
            .collect()
    }

    /// What the database knows of the integer key `column` without reading the rows (its index's
    /// least and greatest values, its statistics): `None` for a query, under a window (statistics
    /// describe the whole table), or where the database keeps nothing of the kind (SQLite).
    pub(crate) async fn key_statistics(&self, column: &SourceColumn) -> Result<Option<KeyStatistics>> {
        match (&self.table, &self.within) {
            (Some(table), None) => self.database.key_statistics(table, &column.name).await,
            _ => Ok(None),
        }
    }

    /// Rows per one-thousandth of the range of `column` (an integer key), ascending, empty stretches
    /// absent: `(smallest value, smallest value + 1, rows)` per stretch.
    pub(crate) async fn id_histogram(&self, column: &SourceColumn) -> Result<Vec<(i64, i64, u64)>> {
        let c = quote_ident(&column.name);
        let bounds = format!(
            "SELECT min({c}) AS lo, max({c}) AS hi FROM ({}) AS floe_source",
            self.relation()
        );
        let sql = format!(
            "WITH b AS ({bounds}) SELECT CAST(min({c}) AS BIGINT) AS lo, count(*) AS n FROM ({}) AS floe_source, b \
             WHERE {c} IS NOT NULL GROUP BY (CAST({c} AS BIGINT) - b.lo) * 1000 / (b.hi - b.lo + 1) ORDER BY 1",
            self.relation()
        );
        let rows = self
            .database
            .integer_counts(&sql, &format!("cannot histogram {}", column.name))
            .await?;
        Ok(rows
            .into_iter()
            .map(|(lo, n)| (lo, lo.saturating_add(1), n.max(0) as u64))
            .collect())
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
                    if *dates {
                        self.database.date_literal(v)
                    } else {
                        v.parse::<i64>()
                            .map(|n| n.to_string())
                            .unwrap_or_else(|_| "NULL".into())
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
            } => self
                .database
                .hash_bucket(&quote_ident(column), *bucket, *buckets)
                .ok_or_else(|| {
                    Error::invalid(
                        "hash(COL) needs a source that can hash; SQLite cannot: use id(COL) or date(COL)",
                    )
                })?,
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
    ) -> Result<SourceRows> {
        let condition = self.condition(bounds)?;
        let query = SourceQuery {
            relation: &self.relation(),
            condition: &condition,
            columns,
            schema: schema_of(columns),
        };
        self.database.extract(&query, application, snapshot).await
    }

    /// The condition that `column` (a `--since` column of `kind`) is at least `from` (when given)
    /// and at most `to` (none when `to` is `None`: no row has a value).
    pub(crate) fn since_window(
        &self,
        column: &str,
        kind: MarkKind,
        from: Option<i64>,
        to: Option<i64>,
    ) -> String {
        let c = self.database.comparable(&quote_ident(column), kind);
        let Some(to) = to else {
            return "1 = 0".to_string();
        };
        let upper = format!("{c} <= {}", self.database.since_literal(kind, to));
        match from {
            Some(from) => format!("{c} >= {} AND {upper}", self.database.since_literal(kind, from)),
            None => upper,
        }
    }

    /// A literal of `value` of a `--since` column of `kind`.
    pub(crate) fn since_literal(&self, kind: MarkKind, value: i64) -> String {
        self.database.since_literal(kind, value)
    }

    /// The greatest value of `column` (a `--since` column of `kind`) in the whole source (not
    /// restricted by [`SqlSource::within`]), `None` when no row has one.
    pub(crate) async fn greatest(&self, column: &SourceColumn, kind: MarkKind) -> Result<Option<i64>> {
        use futures::TryStreamExt;
        let c = self.database.comparable(&quote_ident(&column.name), kind);
        let relation = format!(
            "SELECT max({c}) AS {} FROM ({}) AS floe_source",
            quote_ident(&column.name),
            self.relation
        );
        let columns = std::slice::from_ref(column);
        let query = SourceQuery {
            relation: &relation,
            condition: "TRUE",
            columns,
            schema: schema_of(columns),
        };
        let batches: Vec<RecordBatch> = self
            .database
            .extract(&query, "floe-ingest-plan", None)
            .await?
            .try_collect()
            .await?;
        let mut greatest = None;
        for b in &batches {
            greatest = greatest.max(watermark::greatest(b.column(0).as_ref())?);
        }
        Ok(greatest)
    }

    /// The keys of `deletes` (a query over the same database returning `keys`' columns) whose row is
    /// not in the whole source (a key deleted and then inserted again is live): distinct, non-NULL,
    /// read at `snapshot` when one is given, as batches of `keys`.
    pub(crate) async fn deleted_keys(
        &self,
        deletes: &str,
        keys: &[SourceColumn],
        application: &str,
        snapshot: Option<&str>,
    ) -> Result<SourceRows> {
        let relation = self.deleted_keys_query(deletes, keys);
        let query = SourceQuery {
            relation: &relation,
            condition: "TRUE",
            columns: keys,
            schema: schema_of(keys),
        };
        self.database.extract(&query, application, snapshot).await
    }

    fn deleted_keys_query(&self, deletes: &str, keys: &[SourceColumn]) -> String {
        let each = |f: &dyn Fn(&str) -> String, sep: &str| {
            keys.iter()
                .map(|k| f(&quote_ident(&k.name)))
                .collect::<Vec<_>>()
                .join(sep)
        };
        format!(
            "SELECT DISTINCT {} FROM ({}) AS floe_deleted WHERE {} AND NOT EXISTS \
             (SELECT 1 FROM ({}) AS floe_live WHERE {})",
            each(&|k| format!("floe_deleted.{k}"), ", "),
            deletes.trim().trim_end_matches(';'),
            each(&|k| format!("floe_deleted.{k} IS NOT NULL"), " AND "),
            self.relation,
            each(&|k| format!("floe_live.{k} = floe_deleted.{k}"), " AND "),
        )
    }

    /// Check that `deletes` returns `keys`' columns, comparable with the source's: the columns of
    /// the query that reads the deleted keys.
    pub(crate) async fn check_deletes_query(&self, deletes: &str, keys: &[SourceColumn]) -> Result<()> {
        let described = "the deletes query";
        let returned = self
            .database
            .column_types(deletes.trim().trim_end_matches(';'), described)
            .await?;
        for k in keys {
            if !returned.iter().any(|(name, _)| *name == k.name) {
                return Err(Error::invalid(format!(
                    "the deletes query returns no key column {:?} (it returns {}); it must return the key columns",
                    k.name,
                    returned.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        self.database
            .column_types(&self.deleted_keys_query(deletes, keys), described)
            .await?;
        Ok(())
    }
}

/// The schema of batches of `columns`: their Arrow types, every one nullable.
pub(crate) fn schema_of(columns: &[SourceColumn]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.arrow.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Where a source's reading task sends its batches.
pub(crate) type BatchSender = tokio::sync::mpsc::Sender<Result<RecordBatch>>;

/// The batches `read` sends from a task of its own (a reader that owns its connection, as a
/// streaming query borrows it); its error ends the stream. A reader whose send fails stops: the
/// stream was dropped.
pub(crate) fn spawn_reader<F, Fut>(read: F) -> SourceRows
where
    F: FnOnce(BatchSender) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    use futures::StreamExt;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(4);
    let errors = tx.clone();
    tokio::spawn(async move {
        if let Err(e) = read(tx).await {
            let _ = errors.send(Err(e)).await;
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// A source type → Arrow type: the database's own reading where it has one, else the common one.
fn map_type(database: &dyn SourceDatabase, name: &str, source_type: &str) -> Result<SourceColumn> {
    let t = source_type.trim().to_ascii_lowercase();
    let base = t.split('(').next().unwrap_or(&t).trim();
    let arrow = match database.own_type(base, &t) {
        Some(own) => own.map_err(|why| unmappable(name, source_type, why))?,
        None => common_type(base, &t).map_err(|why| unmappable(name, source_type, why))?,
    };
    Ok(SourceColumn {
        name: name.to_string(),
        source_type: source_type.to_string(),
        arrow,
    })
}

/// The Arrow type of a declared type (`base` its name, `declared` the whole of it, in lower case) as
/// both databases read it, or why there is none.
fn common_type(base: &str, declared: &str) -> std::result::Result<DataType, &'static str> {
    Ok(match base {
        "smallint" | "integer" | "int" | "int2" | "int4" | "mediumint" | "tinyint" => DataType::Int32,
        "bigint" | "int8" => DataType::Int64,
        "real" | "double precision" | "double" | "float" | "float8" => DataType::Float64,
        "float4" => DataType::Float32,
        "numeric" | "decimal" => {
            let args = declared
                .split_once('(')
                .and_then(|(_, a)| a.strip_suffix(')'))
                .map(|a| a.split(',').map(|x| x.trim().parse::<u8>()).collect::<Vec<_>>());
            match args.as_deref() {
                Some([Ok(p), Ok(s)]) if *p <= 38 && s <= p => DataType::Decimal128(*p, *s as i8),
                Some([Ok(p)]) if *p <= 38 => DataType::Decimal128(*p, 0),
                _ => {
                    return Err(
                        "numeric needs a precision of at most 38 (cast it in --query, e.g. numeric(38,9))",
                    )
                }
            }
        }
        "text" | "varchar" | "character varying" | "character" | "char" | "bpchar" | "name" | "citext"
        | "clob" => DataType::Utf8,
        "json" | "jsonb" | "uuid" => DataType::Utf8,
        "boolean" | "bool" => DataType::Boolean,
        "date" => DataType::Date32,
        "timestamp with time zone" | "timestamptz" => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
        }
        "timestamp" | "timestamp without time zone" | "datetime" => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        "bytea" | "blob" => DataType::Binary,
        _ => return Err("no Iceberg type fits it"),
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

/// A database source as it travels to a cluster executor: its URL without the password (the
/// executor connects with its own `PGPASSWORD` or `~/.pgpass`, so no plan or log ever holds it),
/// what it reads, and its columns by name and source type (mapped again where it runs).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct PortableSource {
    url: String,
    relation: String,
    table: Option<String>,
    within: Option<String>,
    described: String,
    columns: Vec<(String, String)>,
}

impl SqlSource {
    /// This source, reading `columns`, as a cluster executor opens it again.
    pub(crate) fn portable(&self, columns: &[SourceColumn]) -> Result<PortableSource> {
        Ok(PortableSource {
            url: without_password(&self.url)?,
            relation: self.relation.clone(),
            table: self.table.clone(),
            within: self.within.clone(),
            described: self.described.clone(),
            columns: columns
                .iter()
                .map(|c| (c.name.clone(), c.source_type.clone()))
                .collect(),
        })
    }
}

impl PortableSource {
    /// The source and its columns, on the process that reads it.
    pub(crate) fn open(&self) -> Result<(SqlSource, Vec<SourceColumn>)> {
        let mut source = SqlSource::new(&self.url, Some("placeholder"), None)?;
        source.relation = self.relation.clone();
        source.table = self.table.clone();
        source.within = self.within.clone();
        source.described = self.described.clone();
        let columns = self
            .columns
            .iter()
            .map(|(name, ty)| map_type(source.database.as_ref(), name, ty))
            .collect::<Result<_>>()?;
        Ok((source, columns))
    }
}

/// `url` with its password (if any) removed.
fn without_password(url: &str) -> Result<String> {
    Ok(crate::secrets::split_url_credentials(url).without)
}

#[cfg(test)]
mod portable_tests {
    use super::*;

    #[test]
    fn a_portable_source_holds_no_password_and_opens_as_the_same_reader() {
        let source = SqlSource::new(
            "postgres://floe:s3cr3t-pw@db.example:5432/shop",
            Some("public.orders"),
            None,
        )
        .unwrap()
        .within("id > 5".into());
        let columns = vec![SourceColumn {
            name: "id".into(),
            source_type: "bigint".into(),
            arrow: DataType::Int64,
        }];
        let portable = source.portable(&columns).unwrap();
        let json = serde_json::to_string(&portable).unwrap();
        assert!(!json.contains("s3cr3t-pw"), "{json}");
        assert!(json.contains("postgres://floe@db.example:5432/shop"), "{json}");
        let (opened, cols) = portable.open().unwrap();
        assert_eq!(opened.relation(), source.relation());
        assert_eq!(cols[0].arrow, DataType::Int64);
    }
}
