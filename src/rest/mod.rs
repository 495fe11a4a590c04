//! `floe serve`: the Iceberg REST catalog (apache/iceberg `open-api/rest-catalog-open-api.yaml`, no
//! prefix) over floe's catalog and commit path, so DuckDB, PyIceberg, Spark and Trino attach to
//! floe's tables while every commit still goes through floe's validation and its multi-table
//! compare-and-swap. [`router`] is the axum `Router` a caller may mount in its own service;
//! [`Server`] binds and runs it as the CLI does (over TLS when given a certificate). One file per
//! concern: [`error`] (the error shape), `wire` (bodies, decoding, load results), `auth` (bearer
//! tokens), `oauth` (the client-credentials token endpoint), `tls` (serving over TLS), `paging`,
//! `namespaces`, `tables`, `load` (snapshots=refs, ETags), `commit`, `repair` (DuckDB 1.4's manifest
//! headers).
//!
//! Java's equivalent is `CatalogHandlers` behind `RESTCatalogAdapter`.

mod auth;
mod commit;
pub mod error;
mod load;
mod namespaces;
mod oauth;
mod paging;
mod repair;
mod tables;
mod tls;
mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub use error::RestError;

use crate::error::{Error, ErrorKind, Result};
use crate::secrets::Secret;
use crate::Floe;

/// Default address of `floe serve`.
pub const DEFAULT_BIND: &str = "127.0.0.1:8181";

/// How long a token issued by `POST /v1/oauth/tokens` is valid, unless [`RestOptions`] says otherwise.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// How the REST catalog is served.
#[derive(Clone, Debug)]
pub struct RestOptions {
    /// A static bearer token requests may carry. With neither a token nor an OAuth client, requests
    /// need none (and any `Authorization` header is ignored: PyIceberg sends `Bearer None`).
    pub token: Option<Secret>,
    /// The OAuth2 client allowed to fetch tokens from `POST /v1/oauth/tokens` (client-credentials
    /// grant); requests then carry either an issued token or the static one.
    pub oauth: Option<OAuthClient>,
    /// How long an issued token is valid (`expires_in`).
    pub token_lifetime: Duration,
    /// Serve HTTPS with this certificate and key (PEM).
    pub tls: Option<TlsFiles>,
    /// A TLS-terminating proxy is in front: a non-loopback bind may then serve plain HTTP.
    pub behind_proxy: bool,
    /// Hand out floe's own static S3 keys in every load result's `config` (and `/v1/config`'s
    /// defaults), so clients read and write the warehouse without keys of their own. Without it no
    /// key ever appears in an answer.
    pub vend_credentials: bool,
}

impl Default for RestOptions {
    fn default() -> Self {
        Self {
            token: None,
            oauth: None,
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            tls: None,
            behind_proxy: false,
            vend_credentials: false,
        }
    }
}

/// The one OAuth2 client of the catalog: its id and secret.
#[derive(Clone, Debug)]
pub struct OAuthClient {
    /// `client_id`.
    pub id: String,
    /// `client_secret`.
    pub secret: Secret,
}

/// A certificate chain and its private key, PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// What every handler reaches: the floe handle, who may call, and what load results carry.
#[derive(Clone)]
pub(crate) struct Served {
    pub(crate) floe: Floe,
    pub(crate) auth: Arc<auth::Auth>,
    pub(crate) vend_credentials: bool,
}

impl Served {
    /// The storage settings clients get: endpoint, path style and region, plus floe's own S3 keys
    /// when the catalog vends credentials.
    pub(crate) fn storage_config(&self) -> BTreeMap<String, String> {
        let mut config = wire::storage_config(&self.floe);
        if self.vend_credentials {
            config.extend(vended_keys(&self.floe));
        }
        config
    }
}

/// floe's static S3 keys in the REST config's spelling (empty when floe has none).
fn vended_keys(floe: &Floe) -> BTreeMap<String, String> {
    let s3 = &floe.settings().s3;
    let mut keys = BTreeMap::new();
    if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
        keys.insert("s3.access-key-id".to_string(), id.clone());
        keys.insert("s3.secret-access-key".to_string(), secret.expose().to_string());
        if let Some(token) = &s3.session_token {
            keys.insert("s3.session-token".to_string(), token.expose().to_string());
        }
    }
    keys
}

/// The endpoints served, exactly as `GET /v1/config` lists them (clients call nothing else).
pub const ENDPOINTS: &[&str] = &[
    "GET /v1/{prefix}/namespaces",
    "POST /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "DELETE /v1/{prefix}/namespaces/{namespace}",
    "POST /v1/{prefix}/namespaces/{namespace}/properties",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "POST /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
    "POST /v1/{prefix}/namespaces/{namespace}/register",
    "POST /v1/{prefix}/tables/rename",
    "POST /v1/{prefix}/transactions/commit",
];

/// The REST catalog's routes over `floe`. `POST /v1/oauth/tokens` is served but not listed in
/// `endpoints`: clients fetch a token before they read `/v1/config` (PyIceberg, DuckDB and
/// iceberg-rust call it whatever the list says), and the spec's endpoint list names catalog routes
/// only.
pub fn router(floe: Floe, options: &RestOptions) -> Router {
    let served = Served {
        floe,
        auth: Arc::new(auth::Auth::new(options)),
        vend_credentials: options.vend_credentials,
    };
    Router::new()
        .route("/v1/config", get(config))
        .route("/v1/namespaces", get(namespaces::list).post(namespaces::create))
        .route(
            "/v1/namespaces/{namespace}",
            get(namespaces::load)
                .head(namespaces::exists)
                .delete(namespaces::drop),
        )
        .route(
            "/v1/namespaces/{namespace}/properties",
            post(namespaces::update_properties),
        )
        .route(
            "/v1/namespaces/{namespace}/tables",
            get(tables::list).post(tables::create),
        )
        .route(
            "/v1/namespaces/{namespace}/tables/{table}",
            get(load::load)
                .head(tables::exists)
                .post(commit::commit_table)
                .delete(tables::drop),
        )
        .route(
            "/v1/namespaces/{namespace}/tables/{table}/metrics",
            post(tables::metrics),
        )
        .route("/v1/namespaces/{namespace}/register", post(tables::register))
        .route("/v1/tables/rename", post(tables::rename))
        .route("/v1/transactions/commit", post(commit::commit_transaction))
        .fallback(|| async {
            RestError::new(
                axum::http::StatusCode::NOT_FOUND,
                "NotFoundException",
                "no such endpoint",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            served.clone(),
            auth::require_token,
        ))
        // Added after the auth layer, so it is the one route reached without a token.
        .route("/v1/oauth/tokens", post(oauth::issue_token))
        .with_state(served)
}

/// `GET /v1/config`: the storage settings as defaults (iceberg-rust builds a committed table's
/// file access from these alone), no overrides, and the endpoints served.
async fn config(State(s): State<Served>) -> Json<Value> {
    Json(json!({
        "defaults": s.storage_config(),
        "overrides": {},
        "endpoints": ENDPOINTS,
    }))
}

/// The REST catalog bound to its address, ready to run.
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Server {
    /// Bind `addr`. A non-loopback address needs auth (a token or an OAuth client: the catalog hands
    /// out the tables of a warehouse the server itself holds the keys of) and TLS, unless a
    /// TLS-terminating proxy is in front. Vending credentials needs an S3 warehouse with static keys.
    pub async fn bind(floe: Floe, addr: SocketAddr, options: &RestOptions) -> Result<Server> {
        check_exposure(addr, options)?;
        if options.vend_credentials {
            check_vendable(&floe)?;
        }
        let tls = options.tls.as_ref().map(tls::server_config).transpose()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::new(ErrorKind::Config, format!("cannot listen on {addr}: {e}")))?;
        Ok(Server {
            listener,
            router: router(floe, options),
            tls,
        })
    }

    /// The address bound (its port when bound to port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::internal(format!("no local address: {e}")))
    }

    /// The URI clients use: `https://` when serving TLS.
    pub fn uri(&self) -> Result<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Ok(format!("{scheme}://{}", self.local_addr()?))
    }

    /// Serve until the process stops.
    pub async fn run(self) -> Result<()> {
        match self.tls {
            Some(config) => tls::serve(self.listener, self.router, config).await,
            None => axum::serve(self.listener, self.router)
                .await
                .map_err(|e| Error::internal(format!("the REST catalog stopped: {e}"))),
        }
    }
}

/// Refuse to expose the catalog off loopback without auth, or over plain HTTP without a proxy
/// that terminates TLS.
fn check_exposure(addr: SocketAddr, options: &RestOptions) -> Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if options.token.is_none() && options.oauth.is_none() {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "refusing to serve the catalog on {addr} without auth: give --token-file or \
                 --oauth-client with --oauth-secret-file, or bind 127.0.0.1"
            ),
        ));
    }
    if options.tls.is_none() && !options.behind_proxy {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "refusing to serve the catalog on {addr} over plain HTTP: tokens and keys would \
                 cross the network in clear; give --tls-cert and --tls-key, or --behind-proxy when a \
                 TLS-terminating proxy is in front"
            ),
        ));
    }
    Ok(())
}

/// Vending hands out floe's own static S3 keys: there must be some.
fn check_vendable(floe: &Floe) -> Result<()> {
    if !floe.warehouse().uri().starts_with("s3://") {
        return Err(Error::new(
            ErrorKind::Config,
            "--vend-credentials: the warehouse is not on S3, there are no keys to vend",
        ));
    }
    if vended_keys(floe).is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            "--vend-credentials: floe has no static S3 keys (s3.access_key_id and \
             s3.secret_access_key) to vend",
        ));
    }
    Ok(())
}
