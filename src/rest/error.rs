//! The REST catalog's errors: every failure leaves as `{"error": {"message", "type", "code"}}` with
//! the status the Iceberg REST spec gives its type (the names Java's `RESTCatalogAdapter` uses), and
//! floe's error kinds map onto them in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{Error, ErrorKind};

/// An error answer of the REST catalog.
#[derive(Debug)]
pub struct RestError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

/// What a missing object was: floe's errors say it when a namespace or a table is missing; a
/// handler names what else a "not found" is about.
pub(crate) use crate::error::Missing;

impl RestError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: crate::secrets::redact_secrets(&message.into()),
        }
    }

    /// 400: a request that cannot be parsed or applied.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
    }

    /// 404 for a namespace or a table.
    pub(crate) fn not_found(missing: Missing, message: impl Into<String>) -> Self {
        let kind = match missing {
            Missing::Namespace => "NoSuchNamespaceException",
            _ => "NoSuchTableException",
        };
        Self::new(StatusCode::NOT_FOUND, kind, message)
    }

    /// floe's error `e` as the answer to a request that commits nothing: a "not found" is about
    /// the namespace or table the error names, else about `missing`; a catalog database that failed
    /// or cannot be reached is 503 (nothing changed; the client may try again).
    pub(crate) fn from_floe(e: Error, missing: Missing) -> Self {
        if e.kind() == ErrorKind::Catalog {
            return Self::unavailable(e.to_string());
        }
        Self::common(e, missing)
    }

    /// floe's error `e` as the answer to a commit: 503 only when the swap certainly failed (nothing
    /// landed, the client may send it again), 500 `CommitStateUnknownException` when it may have
    /// landed, and any other catalog failure a plain 500 (the client cannot know it is safe to retry).
    pub(crate) fn from_commit(e: Error) -> Self {
        if e.kind() == ErrorKind::Catalog {
            if e.is_swap_failure() {
                return Self::unavailable(e.to_string());
            }
            return Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                e.to_string(),
            );
        }
        Self::common(e, Missing::Table)
    }

    fn unavailable(message: String) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            message,
        )
    }

    fn common(e: Error, missing: Missing) -> Self {
        let message = e.to_string();
        match e.kind() {
            ErrorKind::InvalidInput => Self::bad_request(message),
            ErrorKind::NotFound => Self::not_found(e.missing().unwrap_or(missing), message),
            ErrorKind::AlreadyExists => Self::new(StatusCode::CONFLICT, "AlreadyExistsException", message),
            ErrorKind::Conflict => Self::new(StatusCode::CONFLICT, "CommitFailedException", message),
            ErrorKind::CommitStateUnknown => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "CommitStateUnknownException",
                message,
            ),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", message),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "code": self.status.as_u16(),
        }});
        (self.status, axum::Json(body)).into_response()
    }
}

/// The result of a handler.
pub(crate) type RestResult<T> = std::result::Result<T, RestError>;
