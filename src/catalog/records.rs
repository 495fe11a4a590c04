//! Schema migrations of the catalog database, and the statuses floe's records store there as text.
//!
//! Each owner of tables in the catalog database keeps its own list of [`Migration`]s: the catalog its
//! Iceberg JDBC schema (`catalog::sql`), the pipeline its run ledger, ingest its record of extraction
//! runs. Versions are one sequence across the owners (recorded in `floe_migrations`), so each
//! migration is applied once whoever asks. They run under a lock (`BEGIN IMMEDIATE` on SQLite, an
//! advisory lock on Postgres), so processes connecting to a fresh catalog at once agree. The SQL is
//! portable between SQLite and Postgres and idempotent.

use futures::future::BoxFuture;
use sqlx::{AnyConnection, Row};

use super::sql::{Backend, CatalogDatabase};
use crate::error::{Result, SqlDatabase};

/// One schema migration: a version (one sequence across owners), a name, and portable SQL
/// statements separated by `;`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Migration {
    /// Its version, recorded in `floe_migrations` once applied.
    pub version: i64,
    /// Its name.
    pub name: &'static str,
    /// Its statements.
    pub sql: &'static str,
}

/// A step run under the migration lock after the migrations (the catalog's check of a schema that
/// another tool created first).
pub(crate) type AfterMigrations = for<'c> fn(&'c mut AnyConnection, Backend) -> BoxFuture<'c, Result<()>>;

/// Key of the Postgres advisory lock that serializes migrations ("floe" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x666c_6f65;

fn migration_error(action: &str, e: sqlx::Error) -> crate::error::Error {
    crate::error::Error::sqlx(SqlDatabase::Catalog, action, e)
}

impl CatalogDatabase {
    /// Apply the `migrations` not yet applied, then `after`, holding a lock that serializes
    /// concurrent callers: the second of two processes connecting to a fresh catalog waits, then
    /// finds them applied.
    pub(crate) async fn migrate(
        &self,
        migrations: &[Migration],
        after: Option<AfterMigrations>,
    ) -> Result<()> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(|e| migration_error("cannot migrate catalog", e))?;
        let lock = match self.backend() {
            Backend::Sqlite => "BEGIN IMMEDIATE".to_string(),
            Backend::Postgres => format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"),
        };
        sqlx::query(&lock)
            .execute(&mut *conn)
            .await
            .map_err(|e| migration_error("cannot lock the catalog for migration", e))?;
        let mut result = self.migrate_locked(&mut conn, migrations).await;
        if let (Ok(()), Some(after)) = (&result, after) {
            result = after(&mut conn, self.backend()).await;
        }
        let unlock = match (self.backend(), result.is_ok()) {
            (Backend::Sqlite, true) => "COMMIT".to_string(),
            (Backend::Sqlite, false) => "ROLLBACK".to_string(),
            (Backend::Postgres, _) => format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"),
        };
        let unlocked = sqlx::query(&unlock).execute(&mut *conn).await;
        result?;
        unlocked.map_err(|e| migration_error("cannot finish the catalog migration", e))?;
        Ok(())
    }

    async fn migrate_locked(&self, conn: &mut AnyConnection, migrations: &[Migration]) -> Result<()> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS floe_migrations (version BIGINT PRIMARY KEY, name VARCHAR(255) NOT NULL)",
        )
        .execute(&mut *conn)
        .await
        .map_err(|e| migration_error("cannot create floe_migrations", e))?;
        let applied: Vec<i64> = sqlx::query("SELECT version FROM floe_migrations")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| migration_error("cannot read floe_migrations", e))?
            .iter()
            .map(|r| r.get::<i64, _>(0))
            .collect();
        for m in migrations.iter().filter(|m| !applied.contains(&m.version)) {
            for statement in m.sql.split(';').map(strip_sql_comments).filter(|s| !s.is_empty()) {
                sqlx::query(&statement).execute(&mut *conn).await.map_err(|e| {
                    migration_error(&format!("catalog migration {} ({})", m.version, m.name), e)
                })?;
            }
            sqlx::query(&self.sql(
                "INSERT INTO floe_migrations (version, name) VALUES (?, ?) ON CONFLICT (version) DO NOTHING",
            ))
            .bind(m.version)
            .bind(m.name)
            .execute(&mut *conn)
            .await
            .map_err(|e| migration_error("cannot record catalog migration", e))?;
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

/// A status enum stored as text in the catalog database: `as_str` (what is stored), parsing it back
/// (an unknown text is a `Catalog` error), `Display`, and comparison with a `&str`.
macro_rules! stored_as_text {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The text stored in the catalog database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }

            /// The status stored as `text`.
            pub fn parse(text: &str) -> $crate::error::Result<Self> {
                match text {
                    $($text => Ok($ty::$variant),)+
                    other => Err($crate::error::Error::new(
                        $crate::error::ErrorKind::Catalog,
                        format!("unknown {} {other:?} in the catalog database", stringify!($ty)),
                    )),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}
pub(crate) use stored_as_text;
