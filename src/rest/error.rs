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

/// What a missing object was, when floe only says "not found".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Missing {
    Namespace,
    Table,
}

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
            Missing::Table => "NoSuchTableException",
        };
        Self::new(StatusCode::NOT_FOUND, kind, message)
    }

    /// floe's error `e` as the REST answer; a "not found" is about `missing` unless its message
    /// names a namespace that does not exist.
    pub(crate) fn from_floe(e: Error, missing: Missing) -> Self {
        let message = e.to_string();
        match e.kind() {
            ErrorKind::InvalidInput => Self::bad_request(message),
            ErrorKind::NotFound => {
                let missing = if message.contains("namespace") && message.contains("does not exist") {
                    Missing::Namespace
                } else {
                    missing
                };
                Self::not_found(missing, message)
            }
            ErrorKind::AlreadyExists => Self::new(StatusCode::CONFLICT, "AlreadyExistsException", message),
            ErrorKind::Conflict => Self::new(StatusCode::CONFLICT, "CommitFailedException", message),
            ErrorKind::CommitStateUnknown => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "CommitStateUnknownException",
                message,
            ),
            // The catalog database refused or could not be reached: nothing was committed.
            ErrorKind::Catalog => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
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
