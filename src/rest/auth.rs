//! Bearer-token auth of the REST catalog: with a token configured, every request must carry
//! `Authorization: Bearer <token>`; the check compares SHA-256 digests in constant time, so neither
//! the token's bytes nor its length leak through timing, and the token never reaches a log or an
//! error.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::RestError;
use super::Served;
use crate::secrets::Secret;

/// The digest of the token requests must carry.
#[derive(Clone)]
pub(crate) struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub(crate) fn of(token: &Secret) -> Self {
        Self(Sha256::digest(token.expose().as_bytes()).into())
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    fn matches(&self, presented: &str) -> bool {
        let other: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let diff = self.0.iter().zip(other).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// Refuse a request without the configured token (401); pass every request when none is set.
pub(crate) async fn require_token(State(s): State<Served>, request: Request, next: Next) -> Response {
    let Some(expected) = &s.token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    match presented {
        Some(token) if expected.matches(token.trim()) => next.run(request).await,
        _ => RestError::new(
            StatusCode::UNAUTHORIZED,
            "NotAuthorizedException",
            "a valid bearer token is required",
        )
        .into_response(),
    }
}
