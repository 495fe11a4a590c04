//! `POST /v1/oauth/tokens`: the OAuth2 client-credentials grant (RFC 6749 §4.4) PyIceberg, DuckDB
//! and iceberg-rust use to get a bearer token. The client authenticates with an HTTP Basic header
//! (DuckDB) or `client_id`/`client_secret` in the form body (PyIceberg, iceberg-rust); the answer is a
//! random token with `expires_in`, and failures take OAuth's own error shape (`invalid_client`,
//! `unsupported_grant_type`, ...), which PyIceberg validates. Neither the secret nor the token ever
//! appears in an error.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use rand::RngCore;
use serde_json::json;

use super::Served;

/// An OAuth error answer (RFC 6749 §5.2).
struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: &'static str,
}

impl OAuthError {
    fn new(status: StatusCode, code: &'static str, description: &'static str) -> Self {
        Self {
            status,
            code,
            description,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code, "error_description": self.description});
        let mut response = (self.status, Json(body)).into_response();
        no_store(response.headers_mut());
        response
    }
}

/// Token answers must not be cached (RFC 6749 §5.1).
fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The client's id and secret: from `Authorization: Basic`, else from the form body.
fn credentials(headers: &HeaderMap, form: &HashMap<String, String>) -> Result<(String, String), OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")));
    if let Some(encoded) = basic {
        let malformed = || {
            OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the Basic authorization header is not base64 of client_id:client_secret",
            )
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| malformed())?;
        let text = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
        return Ok((id.to_string(), secret.to_string()));
    }
    match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Ok((id.clone(), secret.clone())),
        _ => Err(OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client credentials are required: an HTTP Basic header or client_id and client_secret",
        )),
    }
}

/// A fresh token: 32 random bytes from the operating system, hex.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST /v1/oauth/tokens` with `grant_type=client_credentials`.
pub(crate) async fn issue_token(State(s): State<Served>, headers: HeaderMap, body: Bytes) -> Response {
    match issue(&s, &headers, &body) {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn issue(s: &Served, headers: &HeaderMap, body: &[u8]) -> Result<Response, OAuthError> {
    if !s.auth.issues_tokens() {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "this catalog issues no tokens: it is served without --oauth-client",
        ));
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only the client_credentials grant is supported",
            ))
        }
        None => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required (client_credentials)",
            ))
        }
    }
    let (id, secret) = credentials(headers, &form)?;
    if !s.auth.client_matches(&id, &secret) {
        return Err(OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        ));
    }
    let token = new_token();
    s.auth.remember(&token);
    let body = json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": s.auth.lifetime().as_secs().max(1),
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    });
    let mut response = Json(body).into_response();
    no_store(response.headers_mut());
    Ok(response)
}
