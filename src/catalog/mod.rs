//! The SQL catalog: Iceberg's JDBC catalog schema on SQLite or Postgres.
//!
//! floe owns this layer (rather than iceberg-catalog-sql's `SqlCatalog`) because its commit must
//! check both the compare-and-swap's affected-row count and the transaction's result, tell a refused
//! swap from one whose outcome is unknown, and run SQLite in WAL mode with a busy timeout.

pub mod names;

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::str::FromStr;

use crate::config::redact_secrets;
use crate::error::{Error, ErrorKind, Result};
pub use names::{Namespace, TableName};

/// Schema migrations, in order: (version, name, SQL). The SQL is portable between SQLite and Postgres.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "iceberg_jdbc_catalog",
        include_str!("../../catalog/migrations/0001_iceberg_jdbc_catalog.sql"),
    ),
    (
        2,
        "run_ledger",
        include_str!("../../catalog/migrations/0002_run_ledger.sql"),
    ),
];

const TABLE_TYPE: &str = "TABLE";

/// Which database holds the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (the embedded default).
    Sqlite,
    /// A Postgres server.
    Postgres,
}

/// What a compare-and-swap of a table's metadata location came to.
#[derive(Debug)]
pub enum SwapOutcome {
    /// The new location is current.
    Swapped,
    /// Another commit moved the table first; nothing changed.
    Conflict,
    /// The swap could not be sent (no connection): nothing changed.
    NotSent(Error),
    /// The connection failed after the swap was sent: it may or may not have landed.
    Unknown(Error),
}

/// A connection pool on the catalog database.
#[derive(Clone)]
pub struct SqlCatalog {
    pool: AnyPool,
    backend: Backend,
    name: String,
    url_redacted: String,
}

impl std::fmt::Debug for SqlCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlCatalog")
            .field("backend", &self.backend)
            .field("name", &self.name)
            .field("url", &self.url_redacted)
            .finish()
    }
}

fn catalog_error(action: &str, e: sqlx::Error) -> Error {
    Error::new(
        ErrorKind::Catalog,
        format!("{action}: {}", redact_secrets(&e.to_string())),
    )
}

impl SqlCatalog {
    /// Connect to `url` (`sqlite:PATH` or `postgres://...`), create the schema when missing, and use
    /// `catalog_name` for the `catalog_name` column.
    pub async fn connect(url: &str, catalog_name: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
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
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
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
            pool,
            backend,
            name: catalog_name.to_string(),
            url_redacted,
        };
        catalog.migrate().await?;
        Ok(catalog)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The catalog name (the `catalog_name` column).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pool, for floe's own tables in the catalog database (the run ledger).
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

    async fn migrate(&self) -> Result<()> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| catalog_error("cannot migrate catalog", e))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS floe_migrations (version BIGINT PRIMARY KEY, name VARCHAR(255) NOT NULL)",
        )
        .execute(&mut *conn)
        .await
        .map_err(|e| catalog_error("cannot create floe_migrations", e))?;
        let applied: Vec<i64> = sqlx::query("SELECT version FROM floe_migrations")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| catalog_error("cannot read floe_migrations", e))?
            .iter()
            .map(|r| r.get::<i64, _>(0))
            .collect();
        for (version, name, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            for statement in sql.split(';').map(strip_sql_comments).filter(|s| !s.is_empty()) {
                sqlx::query(&statement)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| catalog_error(&format!("catalog migration {version} ({name})"), e))?;
            }
            sqlx::query(&self.sql(
                "INSERT INTO floe_migrations (version, name) VALUES (?, ?) ON CONFLICT (version) DO NOTHING",
            ))
            .bind(*version)
            .bind(*name)
            .execute(&mut *conn)
            .await
            .map_err(|e| catalog_error("cannot record catalog migration", e))?;
        }
        // A catalog that PyIceberg created first has no iceberg_type column; Java and iceberg-rust
        // need it.
        if sqlx::query("SELECT iceberg_type FROM iceberg_tables WHERE 1 = 0")
            .execute(&mut *conn)
            .await
            .is_err()
        {
            sqlx::query("ALTER TABLE iceberg_tables ADD COLUMN iceberg_type VARCHAR(5)")
                .execute(&mut *conn)
                .await
                .map_err(|e| catalog_error("cannot add iceberg_type column", e))?;
        }
        Ok(())
    }

    /// All namespaces: those with properties and those that only hold tables.
    pub async fn list_namespaces(&self) -> Result<Vec<Namespace>> {
        let rows = sqlx::query(&self.sql(
            "SELECT table_namespace FROM iceberg_tables WHERE catalog_name = ? \
             UNION SELECT namespace FROM iceberg_namespace_properties WHERE catalog_name = ?",
        ))
        .bind(&self.name)
        .bind(&self.name)
        .fetch_all(&self.pool)
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

    /// Whether a namespace exists.
    pub async fn namespace_exists(&self, ns: &Namespace) -> Result<bool> {
        let name = ns.to_string();
        let row = sqlx::query(&self.sql(
            "SELECT 1 FROM iceberg_namespace_properties WHERE catalog_name = ? AND namespace = ? \
             UNION ALL SELECT 1 FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? LIMIT 1",
        ))
        .bind(&self.name)
        .bind(&name)
        .bind(&self.name)
        .bind(&name)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| catalog_error("cannot look up namespace", e))?;
        Ok(row.is_some())
    }

    /// Create a namespace with properties. Creating one that exists is an error of kind
    /// `AlreadyExists`.
    pub async fn create_namespace(
        &self,
        ns: &Namespace,
        properties: &BTreeMap<String, String>,
    ) -> Result<()> {
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
            .pool
            .begin()
            .await
            .map_err(|e| catalog_error("cannot create namespace", e))?;
        for (k, v) in &props {
            sqlx::query(&self.sql(
                "INSERT INTO iceberg_namespace_properties (catalog_name, namespace, property_key, property_value) \
                 VALUES (?, ?, ?, ?)",
            ))
            .bind(&self.name)
            .bind(ns.to_string())
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await
            .map_err(|e| match e {
                // Another writer created it between the check above and this insert.
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    Error::new(ErrorKind::AlreadyExists, format!("namespace {ns} already exists"))
                }
                e => catalog_error(&format!("cannot create namespace {ns}"), e),
            })?;
        }
        tx.commit()
            .await
            .map_err(|e| catalog_error(&format!("cannot create namespace {ns}"), e))?;
        Ok(())
    }

    /// A namespace's properties.
    pub async fn namespace_properties(&self, ns: &Namespace) -> Result<BTreeMap<String, String>> {
        let rows = sqlx::query(&self.sql(
            "SELECT property_key, property_value FROM iceberg_namespace_properties \
             WHERE catalog_name = ? AND namespace = ?",
        ))
        .bind(&self.name)
        .bind(ns.to_string())
        .fetch_all(&self.pool)
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

    /// Drop an empty namespace.
    pub async fn drop_namespace(&self, ns: &Namespace) -> Result<()> {
        if !self.list_tables(ns).await?.is_empty() {
            return Err(Error::invalid(format!("namespace {ns} is not empty")));
        }
        let done = sqlx::query(
            &self.sql("DELETE FROM iceberg_namespace_properties WHERE catalog_name = ? AND namespace = ?"),
        )
        .bind(&self.name)
        .bind(ns.to_string())
        .execute(&self.pool)
        .await
        .map_err(|e| catalog_error("cannot drop namespace", e))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!("namespace {ns} does not exist")));
        }
        Ok(())
    }

    /// Tables of a namespace, by name.
    pub async fn list_tables(&self, ns: &Namespace) -> Result<Vec<TableName>> {
        let rows = sqlx::query(&self.sql(
            "SELECT table_name FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? \
             AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) ORDER BY table_name",
        ))
        .bind(&self.name)
        .bind(ns.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| catalog_error("cannot list tables", e))?;
        Ok(rows
            .iter()
            .filter_map(|r| TableName::new(ns.clone(), r.get::<String, _>(0)).ok())
            .collect())
    }

    /// The current metadata location of a table, or `None` when the table does not exist.
    pub async fn metadata_location(&self, table: &TableName) -> Result<Option<String>> {
        let row: Option<AnyRow> = sqlx::query(&self.sql(
            "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? \
             AND table_name = ? AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)",
        ))
        .bind(&self.name)
        .bind(table.namespace().to_string())
        .bind(table.name())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| catalog_error(&format!("cannot load table {table}"), e))?;
        Ok(row.and_then(|r| r.get::<Option<String>, _>(0)))
    }

    /// Register a new table at `metadata_location`. A table of that name is `AlreadyExists`.
    pub async fn insert_table(&self, table: &TableName, metadata_location: &str) -> Result<()> {
        let result = sqlx::query(&self.sql(
            "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, metadata_location, \
             previous_metadata_location, iceberg_type) VALUES (?, ?, ?, ?, NULL, ?)",
        ))
        .bind(&self.name)
        .bind(table.namespace().to_string())
        .bind(table.name())
        .bind(metadata_location)
        .bind(TABLE_TYPE)
        .execute(&self.pool)
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

    /// Compare-and-swap the metadata location: succeeds only while the table still points at
    /// `expected`. Both the affected-row count and the transaction's commit are checked.
    pub async fn swap_metadata_location(&self, table: &TableName, expected: &str, new: &str) -> SwapOutcome {
        // Failures before the UPDATE is sent leave the table untouched: report them as errors
        // that certainly did not land.
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(e) => return SwapOutcome::NotSent(catalog_error("cannot begin commit", e)),
        };
        let update = sqlx::query(&self.sql(
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? AND metadata_location = ?",
        ))
        .bind(new)
        .bind(expected)
        .bind(&self.name)
        .bind(table.namespace().to_string())
        .bind(table.name())
        .bind(expected)
        .execute(&mut *tx)
        .await;
        let affected = match update {
            Ok(r) => r.rows_affected(),
            Err(e) => {
                let _ = tx.rollback().await;
                return SwapOutcome::Unknown(catalog_error(&format!("commit to {table}"), e));
            }
        };
        if affected != 1 {
            let _ = tx.rollback().await;
            return SwapOutcome::Conflict;
        }
        match tx.commit().await {
            Ok(()) => SwapOutcome::Swapped,
            Err(e) => SwapOutcome::Unknown(catalog_error(&format!("commit to {table}"), e)),
        }
    }

    /// Remove a table from the catalog (its files stay unless the caller purges them).
    pub async fn delete_table(&self, table: &TableName) -> Result<()> {
        let done = sqlx::query(&self.sql(
            "DELETE FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
        ))
        .bind(&self.name)
        .bind(table.namespace().to_string())
        .bind(table.name())
        .execute(&self.pool)
        .await
        .map_err(|e| catalog_error(&format!("cannot drop table {table}"), e))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!("table {table} does not exist")));
        }
        Ok(())
    }
}

fn strip_sql_comments(statement: &str) -> String {
    statement
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}
