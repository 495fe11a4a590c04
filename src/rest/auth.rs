//! Who may call the REST catalog: the static bearer token and the tokens `POST /v1/oauth/tokens`
//! issued (each valid until it expires). Both are kept only as SHA-256 digests, a presented token is
//! compared with each in constant time, so neither a token's bytes nor its length leak through
//! timing, and no token or secret ever reaches a log or an error.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::RestError;
use super::{OAuthClient, RestOptions, Served};

/// At most this many issued tokens are live at once; the one closest to expiry goes first.
const MAX_LIVE_TOKENS: usize = 4096;

/// The digest of a token (or a client id or secret) that requests must present.
#[derive(Clone)]
pub(crate) struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub(crate) fn of(text: &str) -> Self {
        Self(Sha256::digest(text.as_bytes()).into())
    }

    /// Whether `other` is the same digest, in time independent of where they differ.
    fn matches(&self, other: &TokenDigest) -> bool {
        let diff = self.0.iter().zip(other.0).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// The catalog's auth: what it accepts, and the tokens it issued.
pub(crate) struct Auth {
    token: Option<TokenDigest>,
    client: Option<(TokenDigest, TokenDigest)>,
    lifetime: Duration,
    issued: Mutex<Vec<(TokenDigest, Instant)>>,
}

impl Auth {
    pub(crate) fn new(options: &RestOptions) -> Self {
        Self {
            token: options.token.as_ref().map(|t| TokenDigest::of(t.expose())),
            client: options
                .oauth
                .as_ref()
                .map(|OAuthClient { id, secret }| (TokenDigest::of(id), TokenDigest::of(secret.expose()))),
            lifetime: options.token_lifetime,
            issued: Mutex::new(Vec::new()),
        }
    }

    /// Whether requests must carry a token.
    fn required(&self) -> bool {
        self.token.is_some() || self.client.is_some()
    }

    /// Whether an OAuth client is configured.
    pub(crate) fn issues_tokens(&self) -> bool {
        self.client.is_some()
    }

    /// Whether `id` and `secret` are the OAuth client's (both compared, whichever differs).
    pub(crate) fn client_matches(&self, id: &str, secret: &str) -> bool {
        let Some((want_id, want_secret)) = &self.client else {
            return false;
        };
        let id_ok = want_id.matches(&TokenDigest::of(id));
        let secret_ok = want_secret.matches(&TokenDigest::of(secret));
        id_ok & secret_ok
    }

    /// How long an issued token lives.
    pub(crate) fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Remember a freshly issued token (by its digest) until it expires.
    pub(crate) fn remember(&self, token: &str) {
        let now = Instant::now();
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        issued.retain(|(_, expires)| *expires > now);
        if issued.len() >= MAX_LIVE_TOKENS {
            if let Some(first) = issued
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, e))| *e)
                .map(|(i, _)| i)
            {
                issued.swap_remove(first);
            }
        }
        issued.push((TokenDigest::of(token), now + self.lifetime));
    }

    /// Whether `presented` is the static token or a live issued one. Every live digest is compared,
    /// so the time taken does not tell which one matched.
    fn accepts(&self, presented: &str) -> bool {
        let digest = TokenDigest::of(presented);
        let mut ok = self.token.as_ref().is_some_and(|t| t.matches(&digest));
        let now = Instant::now();
        let issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        for (token, expires) in issued.iter() {
            ok |= token.matches(&digest) & (*expires > now);
        }
        ok
    }
}

/// Refuse a request without a valid token (401); pass every request when no auth is configured.
pub(crate) async fn require_token(State(s): State<Served>, request: Request, next: Next) -> Response {
    if !s.auth.required() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    match presented {
        Some(token) if s.auth.accepts(token.trim()) => next.run(request).await,
        _ => RestError::new(
            StatusCode::UNAUTHORIZED,
            "NotAuthorizedException",
            "a valid bearer token is required (a token issued by /v1/oauth/tokens expires)",
        )
        .into_response(),
    }
}
