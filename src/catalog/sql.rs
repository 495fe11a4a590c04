//! The SQL catalog: Iceberg's JDBC catalog schema on SQLite or Postgres, the [`Catalog`] floe ships.
//!
//! floe owns this layer (rather than iceberg-catalog-sql's `SqlCatalog`) because its commit must
//! swap several tables in one transaction, check both each compare-and-swap's affected-row count and
//! the transaction's result, and tell a certain failure (any statement before `COMMIT`) from an
//! unknown outcome (a lost reply to `COMMIT`). SQLite runs in WAL mode with `synchronous=FULL`, so
//! an acknowledged commit survives power loss; the schema is migrated under a lock on connecting
//! (`records`), so concurrent first connections to a fresh catalog agree.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use super::records::Migration;
use super::{Catalog, MetadataSwap, Namespace, SwapOutcome, TableName};
use crate::error::{Error, ErrorKind, Missing, Result, SqlDatabase};
use crate::secrets::redact_secrets;

/// The catalog's own schema migrations (floe's records beside it own theirs: see `records`).
const CATALOG_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "iceberg_jdbc_catalog",
    sql: include_str!("../../catalog/migrations/0001_iceberg_jdbc_catalog.sql"),
}];

const TABLE_TYPE: &str = "TABLE";

/// Which database holds the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (the embedded default).
    Sqlite,
    /// A Postgres server.
    Postgres,
}

/// A connection pool on the catalog database, for the catalog's own tables and for floe's records
/// beside them (the run ledger). Cheap to clone.
#[derive(Clone)]
pub struct CatalogDatabase {
    pool: AnyPool,
    backend: Backend,
    name: String,
    url_redacted: String,
}

impl std::fmt::Debug for CatalogDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogDatabase")
            .field("backend", &self.backend)
            .field("name", &self.name)
            .field("url", &self.url_redacted)
            .finish()
    }
}

impl CatalogDatabase {
    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The catalog name (the `catalog_name` column).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pool.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Rewrite `?` placeholders for Postgres.
    pub(crate) fn sql(&self, query: &str) -> String {
        match self.backend {
            Backend::Sqlite => query.to_string(),
            Backend::Postgres => {
                let mut out = String::with_capacity(query.len() + 8);
                let mut n = 0;
                for c in query.chars() {
                    if c == '?' {
                        n += 1;
                        out.push('$');
                        out.push_str(&n.to_string());
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }
}

/// The JDBC-schema catalog on SQLite or Postgres.
#[derive(Clone, Debug)]
pub struct SqlCatalog {
    db: CatalogDatabase,
}

fn catalog_error(action: &str, e: sqlx::Error) -> Error {
    Error::sqlx(SqlDatabase::Catalog, action, e)
}

impl SqlCatalog {
    /// Connect to `url` (`sqlite:PATH` or `postgres://...`), create the schema when missing, and use
    /// `catalog_name` for the `catalog_name` column.
    pub async fn connect(url: &str, catalog_name: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        crate::secrets::register_url_secrets(url);
        let url_redacted = redact_secrets(url);
        let (backend, connect_url) = if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                return Err(Error::new(ErrorKind::Config, "sqlite catalog URL has no path"));
            }
            let p = std::path::Path::new(path);
            if let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    Error::wrap(
                        ErrorKind::Catalog,
                        format!("cannot create {}", parent.display()),
                        e,
                    )
                })?;
            }
            (Backend::Sqlite, format!("sqlite://{path}?mode=rwc"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(Error::new(
                ErrorKind::Config,
                format!("catalog URL {url_redacted:?}: expected sqlite:PATH or postgres://..."),
            ));
        };
        let options = AnyConnectOptions::from_str(&connect_url)
            .map_err(|e| catalog_error(&format!("invalid catalog URL {url_redacted}"), e))?;
        let pool_options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(15))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::query("PRAGMA busy_timeout = 30000")
                            .execute(&mut *conn)
                            .await?;
                        // Switching a fresh database to WAL needs a moment of exclusive access:
                        // concurrent first connections retry it instead of failing.
                        let mut tries = 0;
                        loop {
                            match sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await {
                                Ok(_) => break,
                                Err(e) if tries < 100 && is_sqlite_busy(&e) => {
                                    tries += 1;
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                                Err(e) => return Err(e),
                            }
                        }
                        // FULL: an acknowledged commit survives power loss (NORMAL in WAL mode
                        // may lose the last transactions).
                        sqlx::query("PRAGMA synchronous = FULL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            });
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(|e| catalog_error(&format!("cannot connect to catalog {url_redacted}"), e))?;
        let catalog = SqlCatalog {
            db: CatalogDatabase {
                pool,
                backend,
                name: catalog_name.to_string(),
                url_redacted,
            },
        };
        catalog.migrate().await?;
        Ok(catalog)
    }

    /// The catalog database, for floe's own records beside the tables (the run ledger).
    pub fn database(&self) -> &CatalogDatabase {
        &self.db
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.db.backend
    }

    fn pool(&self) -> &AnyPool {
        &self.db.pool
    }

    fn sql(&self, query: &str) -> String {
        self.db.sql(query)
    }

    /// Insert one namespace property in `tx`.
    async fn insert_property(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        ns: &Namespace,
        key: &str,
        value: &str,
    ) -> std::result::Result<(), sqlx::Error> {
        sqlx::query(&self.sql(
            "INSERT INTO iceberg_namespace_properties (catalog_name, namespace, property_key, property_value) \
             VALUES (?, ?, ?, ?)",
        ))
        .bind(self.name())
        .bind(ns.to_string())
        .bind(key)
        .bind(value)
        .execute(&mut **tx)
        .await
        .map(|_| ())
    }

    /// Apply the catalog's migrations not yet applied, then check the `iceberg_type` column, under
    /// the migration lock.
    async fn migrate(&self) -> Result<()> {
        self.db.migrate(CATALOG_MIGRATIONS, Some(add_type_column)).await
    }
}

/// A catalog that PyIceberg created first has no `iceberg_type` column; Java and iceberg-rust need
/// it. (Probed by name, so that a failed probe does not abort the transaction.)
fn add_type_column(conn: &mut sqlx::AnyConnection, backend: Backend) -> BoxFuture<'_, Result<()>> {
    Box::pin(async move {
        let has_type_column = match backend {
            Backend::Sqlite => {
                sqlx::query("SELECT 1 FROM pragma_table_info('iceberg_tables') WHERE name = 'iceberg_type'")
            }
            Backend::Postgres => sqlx::query(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() \
                 AND table_name = 'iceberg_tables' AND column_name = 'iceberg_type'",
            ),
        }
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| catalog_error("cannot inspect iceberg_tables", e))?
        .is_some();
        if !has_type_column {
            sqlx::query("ALTER TABLE iceberg_tables ADD COLUMN iceberg_type VARCHAR(5)")
                .execute(&mut *conn)
                .await
                .map_err(|e| catalog_error("cannot add iceberg_type column", e))?;
        }
        Ok(())
    })
}

fn is_sqlite_busy(e: &sqlx::Error) -> bool {
    e.to_string().contains("database is locked") || e.to_string().contains("busy")
}

#[async_trait]
impl Catalog for SqlCatalog {
    fn name(&self) -> &str {
        &self.db.name
    }

    fn kind(&self) -> &str {
        match self.backend() {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "Postgres",
        }
    }

    fn describe(&self) -> String {
        self.db.url_redacted.clone()
    }

    async fn list_namespaces(&self) -> Result<Vec<Namespace>> {
        let rows = sqlx::query(&self.sql(
            "SELECT table_namespace FROM iceberg_tables WHERE catalog_name = ? \
             UNION SELECT namespace FROM iceberg_namespace_properties WHERE catalog_name = ?",
        ))
        .bind(self.name())
        .bind(self.name())
        .fetch_all(self.pool())
        .await
        .map_err(|e| catalog_error("cannot list namespaces", e))?;
        let mut out: Vec<Namespace> = rows
            .iter()
            .filter_map(|r| Namespace::parse(&r.get::<String, _>(0)).ok())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn namespace_exists(&self, ns: &Namespace) -> Result<bool> {
        let name = ns.to_string();
        let row = sqlx::query(&self.sql(
            "SELECT 1 FROM iceberg_namespace_properties WHERE catalog_name = ? AND namespace = ? \
             UNION ALL SELECT 1 FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? LIMIT 1",
        ))
        .bind(self.name())
        .bind(&name)
        .bind(self.name())
        .bind(&name)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| catalog_error("cannot look up namespace", e))?;
        Ok(row.is_some())
    }

    async fn create_namespace(&self, ns: &Namespace, properties: &BTreeMap<String, String>) -> Result<()> {
        if self.namespace_exists(ns).await? {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("namespace {ns} already exists"),
            ));
        }
        let mut props = properties.clone();
        props
            .entry("exists".to_string())
            .or_insert_with(|| "true".to_string());
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(|e| catalog_error("cannot create namespace", e))?;
        for (k, v) in &props {
            self.insert_property(&mut tx, ns, k, v)
                .await
                .map_err(|e| match e {
                    // Another writer created it between the check above and this insert.
                    sqlx::Error::Database(db) if db.is_unique_violation() => {
                        Error::new(ErrorKind::AlreadyExists, format!("namespace {ns} already exists"))
                    }
                    e => catalog_error(&format!("cannot create namespace {ns}"), e),
                })?;
        }
        tx.commit().await.map_err(|e| match e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Error::new(ErrorKind::AlreadyExists, format!("namespace {ns} already exists"))
            }
            e => catalog_error(&format!("cannot create namespace {ns}"), e),
        })?;
        Ok(())
    }

    async fn namespace_properties(&self, ns: &Namespace) -> Result<BTreeMap<String, String>> {
        let rows = sqlx::query(&self.sql(
            "SELECT property_key, property_value FROM iceberg_namespace_properties \
             WHERE catalog_name = ? AND namespace = ?",
        ))
        .bind(self.name())
        .bind(ns.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(|e| catalog_error("cannot read namespace properties", e))?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<String, _>(0),
                    r.get::<Option<String>, _>(1).unwrap_or_default(),
                )
            })
            .collect())
    }

    async fn drop_namespace(&self, ns: &Namespace) -> Result<()> {
        if !self.list_tables(ns).await?.is_empty() {
            return Err(Error::invalid(format!("namespace {ns} is not empty")));
        }
        let done = sqlx::query(
            &self.sql("DELETE FROM iceberg_namespace_properties WHERE catalog_name = ? AND namespace = ?"),
        )
        .bind(self.name())
        .bind(ns.to_string())
        .execute(self.pool())
        .await
        .map_err(|e| catalog_error("cannot drop namespace", e))?;
        if done.rows_affected() == 0 {
            return Err(Error::missing_object(
                Missing::Namespace,
                format!("namespace {ns} does not exist"),
            ));
        }
        Ok(())
    }

    async fn update_namespace_properties(
        &self,
        ns: &Namespace,
        removals: &[String],
        updates: &BTreeMap<String, String>,
    ) -> Result<()> {
        if !self.namespace_exists(ns).await? {
            return Err(Error::missing_object(
                Missing::Namespace,
                format!("namespace {ns} does not exist"),
            ));
        }
        let failed = |e| catalog_error(&format!("cannot update the properties of namespace {ns}"), e);
        let mut tx = self.pool().begin().await.map_err(failed)?;
        for key in removals.iter().chain(updates.keys()) {
            sqlx::query(&self.sql(
                "DELETE FROM iceberg_namespace_properties WHERE catalog_name = ? AND namespace = ? \
                 AND property_key = ?",
            ))
            .bind(self.name())
            .bind(ns.to_string())
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        }
        for (k, v) in updates {
            self.insert_property(&mut tx, ns, k, v).await.map_err(failed)?;
        }
        tx.commit().await.map_err(failed)
    }

    async fn list_tables(&self, ns: &Namespace) -> Result<Vec<TableName>> {
        let rows = sqlx::query(&self.sql(
            "SELECT table_name FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? \
             AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) ORDER BY table_name",
        ))
        .bind(self.name())
        .bind(ns.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(|e| catalog_error("cannot list tables", e))?;
        Ok(rows
            .iter()
            .filter_map(|r| TableName::new(ns.clone(), r.get::<String, _>(0)).ok())
            .collect())
    }

    async fn metadata_location(&self, table: &TableName) -> Result<Option<String>> {
        let row: Option<AnyRow> = sqlx::query(&self.sql(
            "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? \
             AND table_name = ? AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)",
        ))
        .bind(self.name())
        .bind(table.namespace().to_string())
        .bind(table.name())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| catalog_error(&format!("cannot load table {table}"), e))?;
        Ok(row.and_then(|r| r.get::<Option<String>, _>(0)))
    }

    async fn register_table(&self, table: &TableName, metadata_location: &str) -> Result<()> {
        let result = sqlx::query(&self.sql(
            "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, metadata_location, \
             previous_metadata_location, iceberg_type) VALUES (?, ?, ?, ?, NULL, ?)",
        ))
        .bind(self.name())
        .bind(table.namespace().to_string())
        .bind(table.name())
        .bind(metadata_location)
        .bind(TABLE_TYPE)
        .execute(self.pool())
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("table {table} already exists"),
            )),
            Err(e) => Err(catalog_error(&format!("cannot create table {table}"), e)),
        }
    }

    async fn swap(&self, swaps: &[MetadataSwap]) -> SwapOutcome {
        if swaps.is_empty() {
            return SwapOutcome::Swapped;
        }
        let what = swaps
            .iter()
            .map(|s| s.table.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        // Every statement before COMMIT either fails or is undone with the transaction: those
        // failures certainly did not land. Only a lost reply to COMMIT leaves the outcome open.
        let mut tx = match self.pool().begin().await {
            Ok(tx) => tx,
            Err(e) => return SwapOutcome::Failed(catalog_error(&format!("commit to {what}"), e)),
        };
        // One lock order for every transaction (by table name), so two multi-table commits never
        // deadlock on each other's rows.
        let mut ordered: Vec<&MetadataSwap> = swaps.iter().collect();
        ordered.sort_by(|a, b| a.table.cmp(&b.table));
        for s in ordered {
            let update = sqlx::query(&self.sql(
                "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
                 WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? AND metadata_location = ?",
            ))
            .bind(&s.new)
            .bind(&s.expected)
            .bind(self.name())
            .bind(s.table.namespace().to_string())
            .bind(s.table.name())
            .bind(&s.expected)
            .execute(&mut *tx)
            .await;
            match update {
                Ok(r) if r.rows_affected() == 1 => {}
                Ok(_) => {
                    let _ = tx.rollback().await;
                    return SwapOutcome::Conflict {
                        table: s.table.clone(),
                    };
                }
                Err(e) => {
                    let _ = tx.rollback().await;
                    return SwapOutcome::Failed(catalog_error(&format!("commit to {}", s.table), e));
                }
            }
        }
        match tx.commit().await {
            Ok(()) => SwapOutcome::Swapped,
            Err(e) => SwapOutcome::Unknown(catalog_error(&format!("commit to {what}"), e)),
        }
    }

    async fn drop_table(&self, table: &TableName) -> Result<()> {
        let done = sqlx::query(&self.sql(
            "DELETE FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
        ))
        .bind(self.name())
        .bind(table.namespace().to_string())
        .bind(table.name())
        .execute(self.pool())
        .await
        .map_err(|e| catalog_error(&format!("cannot drop table {table}"), e))?;
        if done.rows_affected() == 0 {
            return Err(Error::missing_object(
                Missing::Table,
                format!("table {table} does not exist"),
            ));
        }
        Ok(())
    }

    async fn rename_table(&self, from: &TableName, to: &TableName) -> Result<()> {
        if !self.namespace_exists(to.namespace()).await? {
            return Err(Error::missing_object(
                Missing::Namespace,
                format!("namespace {} does not exist", to.namespace()),
            ));
        }
        let done = sqlx::query(&self.sql(
            "UPDATE iceberg_tables SET table_namespace = ?, table_name = ? \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
        ))
        .bind(to.namespace().to_string())
        .bind(to.name())
        .bind(self.name())
        .bind(from.namespace().to_string())
        .bind(from.name())
        .execute(self.pool())
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Error::new(ErrorKind::AlreadyExists, format!("table {to} already exists"))
            }
            e => catalog_error(&format!("cannot rename table {from} to {to}"), e),
        })?;
        if done.rows_affected() == 0 {
            return Err(Error::missing_object(
                Missing::Table,
                format!("table {from} does not exist"),
            ));
        }
        Ok(())
    }
}
