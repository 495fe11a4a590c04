//! floe's one error type: an [`ErrorKind`] a caller can match on, a message with context, and the
//! source kept. Errors of the libraries floe builds on (sqlx, object_store, iceberg, arrow) are wrapped
//! here, each with the kind it means (sqlx's by the database it came from, `SqlDatabase`), and never
//! appear in the public API.

use std::fmt;

/// What went wrong, for callers that need to react (retry, report, exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input from the caller: an invalid name, a schema that does not match, a bad filter.
    InvalidInput,
    /// A namespace, table, ref or snapshot that does not exist.
    NotFound,
    /// Something that should not exist already does (a table, a namespace, a ref).
    AlreadyExists,
    /// A concurrent change won: the commit was refused or retries ran out.
    Conflict,
    /// The outcome of a commit is unknown (the catalog connection broke after the swap was sent) and
    /// could not be resolved; the commit may have landed.
    CommitStateUnknown,
    /// The catalog database failed or is unreachable.
    Catalog,
    /// The object store failed or is unreachable, or refused the credentials.
    Storage,
    /// Reading or writing data (Parquet, Arrow, Iceberg metadata) failed.
    Data,
    /// Configuration is missing or inconsistent.
    Config,
    /// A query engine failed.
    Engine,
    /// A bug or an unexpected state.
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::Conflict => "commit conflict",
            ErrorKind::CommitStateUnknown => "commit state unknown",
            ErrorKind::Catalog => "catalog error",
            ErrorKind::Storage => "storage error",
            ErrorKind::Data => "data error",
            ErrorKind::Config => "configuration error",
            ErrorKind::Engine => "engine error",
            ErrorKind::Internal => "internal error",
        };
        f.write_str(s)
    }
}

/// What a `NotFound` error is missing, when it is a catalog object: a REST client tells a missing
/// namespace from a missing table by the error's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Missing {
    /// A namespace.
    Namespace,
    /// A table.
    Table,
}

/// floe's error: a kind, a message and the underlying cause.
pub struct Error {
    kind: ErrorKind,
    message: String,
    conflicting_snapshot: Option<i64>,
    missing: Option<Missing>,
    swap_failed: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// floe's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            conflicting_snapshot: None,
            missing: None,
            swap_failed: false,
            source: None,
        }
    }

    /// A `Conflict` with the snapshot a concurrent writer committed that this change conflicts with.
    pub(crate) fn conflict(snapshot_id: Option<i64>, message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorKind::Conflict, message);
        e.conflicting_snapshot = snapshot_id;
        e
    }

    /// For a `Conflict`: the concurrent snapshot the change conflicted with, when one is to blame.
    pub fn conflicting_snapshot(&self) -> Option<i64> {
        self.conflicting_snapshot
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Prefix the message with what was being done.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The kind, for matching.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the source chain.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// A `NotFound` about a catalog object: a namespace or a table.
    pub(crate) fn missing_object(missing: Missing, message: impl Into<String>) -> Self {
        let mut e = Self::not_found(message);
        e.missing = Some(missing);
        e
    }

    /// For a `NotFound`: the catalog object missing, when it is a namespace or a table.
    pub fn missing(&self) -> Option<Missing> {
        self.missing
    }

    /// Mark a commit's error as a swap that certainly failed: the catalog could not run it (a
    /// statement error before `COMMIT`), so nothing landed and the commit may be sent again.
    pub(crate) fn swap_failed(mut self) -> Self {
        self.swap_failed = true;
        self
    }

    /// Whether this is a commit whose catalog swap certainly failed (nothing landed, and not because
    /// a concurrent commit won: the catalog itself failed), as opposed to an unknown outcome
    /// ([`ErrorKind::CommitStateUnknown`]) or a conflict.
    pub fn is_swap_failure(&self) -> bool {
        self.swap_failed
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Wrap an error of a library floe builds on, with the kind it means here.
    pub(crate) fn wrap(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::new(kind, message).with_source(source)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The Display form already carries kind, message and the source chain, and never secrets.
        write!(f, "{self}")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.kind,
            crate::secrets::redact_secrets(&self.message)
        )?;
        let mut source = self
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        // A source that only repeats what was already said (an sqlx I/O error quoting its own
        // `io::Error`) is not said again.
        let mut said = String::new();
        while let Some(s) = source {
            let text = crate::secrets::redact_secrets(&s.to_string());
            if !text.is_empty() && !self.message.contains(&text) && !said.contains(&text) {
                write!(f, ": {text}")?;
                said = text;
            }
            source = s.source();
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// Which database an sqlx error came from, which decides the error's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SqlDatabase {
    /// The catalog database (the catalog's tables and floe's records beside them): a failure is
    /// `Catalog`, but a unique violation, which is `AlreadyExists`.
    Catalog,
    /// A database floe extracts rows from: a failure a retry may cure (the connection, a server
    /// shutting down, a serialization failure, SQLite busy) is `Storage`, a query the database
    /// refuses `InvalidInput`, a malformed URL `Config`, anything else `Engine`. Units of an
    /// extraction are retried unless their error is `InvalidInput`.
    Source {
        /// An SQLite file (else a Postgres server): their error codes differ.
        sqlite: bool,
    },
}

impl Error {
    /// Wrap an sqlx error of `database`, the source kept (its text is redacted when displayed).
    pub(crate) fn sqlx(database: SqlDatabase, message: impl Into<String>, e: sqlx::Error) -> Self {
        Error::wrap(sqlx_kind(database, &e), message, e)
    }
}

fn sqlx_kind(database: SqlDatabase, e: &sqlx::Error) -> ErrorKind {
    match (database, e) {
        (SqlDatabase::Catalog, sqlx::Error::Database(d)) if d.is_unique_violation() => {
            ErrorKind::AlreadyExists
        }
        (SqlDatabase::Catalog, _) => ErrorKind::Catalog,
        (
            SqlDatabase::Source { .. },
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut,
        ) => ErrorKind::Storage,
        (SqlDatabase::Source { sqlite }, sqlx::Error::Database(d))
            if d.code().is_some_and(|c| transient_database_code(sqlite, &c)) =>
        {
            ErrorKind::Storage
        }
        (SqlDatabase::Source { .. }, sqlx::Error::Database(_)) => ErrorKind::InvalidInput,
        (SqlDatabase::Source { .. }, sqlx::Error::Configuration(_)) => ErrorKind::Config,
        (SqlDatabase::Source { .. }, _) => ErrorKind::Engine,
    }
}

/// Whether a database error code says the server, not the query, failed, so a retry may succeed.
/// Postgres SQLSTATE classes: 08 connection exception, 40 transaction rollback (serialization
/// failure, deadlock), 53 insufficient resources, 57 operator intervention (a terminated backend, a
/// cancelled query, a shutdown), 58 system error, XX internal error. SQLite result codes (extended
/// codes carry the primary one in their low byte): 5 busy, 6 locked, 10 I/O error.
fn transient_database_code(sqlite: bool, code: &str) -> bool {
    if sqlite {
        return code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 10));
    }
    matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58" | "XX"))
}

impl From<iceberg::Error> for Error {
    fn from(e: iceberg::Error) -> Self {
        let kind = match e.kind() {
            iceberg::ErrorKind::DataInvalid | iceberg::ErrorKind::FeatureUnsupported => {
                ErrorKind::InvalidInput
            }
            iceberg::ErrorKind::CatalogCommitConflicts => ErrorKind::Conflict,
            iceberg::ErrorKind::NamespaceNotFound | iceberg::ErrorKind::TableNotFound => ErrorKind::NotFound,
            iceberg::ErrorKind::NamespaceAlreadyExists | iceberg::ErrorKind::TableAlreadyExists => {
                ErrorKind::AlreadyExists
            }
            _ => ErrorKind::Data,
        };
        let missing = match e.kind() {
            iceberg::ErrorKind::NamespaceNotFound => Some(Missing::Namespace),
            iceberg::ErrorKind::TableNotFound => Some(Missing::Table),
            _ => None,
        };
        let message = e.message().to_string();
        let mut out = Error::wrap(kind, message, e);
        out.missing = missing;
        out
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::wrap(ErrorKind::Data, "arrow", e)
    }
}

impl From<parquet::errors::ParquetError> for Error {
    fn from(e: parquet::errors::ParquetError) -> Self {
        Error::wrap(ErrorKind::Data, "parquet", e)
    }
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        let kind = match &e {
            object_store::Error::NotFound { .. } => ErrorKind::NotFound,
            _ => ErrorKind::Storage,
        };
        Error::wrap(kind, "object store", e)
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Error::wrap(ErrorKind::Engine, "datafusion", e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::wrap(ErrorKind::Storage, "i/o", e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::wrap(ErrorKind::Data, "json", e)
    }
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
