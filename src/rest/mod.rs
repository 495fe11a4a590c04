//! `floe serve`: the Iceberg REST catalog (apache/iceberg `open-api/rest-catalog-open-api.yaml`, no
//! prefix) over floe's catalog and commit path, so DuckDB, PyIceberg, Spark and Trino attach to
//! floe's tables while every commit still goes through floe's validation and its multi-table
//! compare-and-swap. [`router`] is the axum `Router` a caller may mount in its own service;
//! [`Server`] binds and runs it as the CLI does. One file per concern: [`error`] (the error shape),
//! `wire` (bodies, decoding, load results), `auth` (bearer tokens), `namespaces`, `tables`, `commit`, `repair` (DuckDB 1.4's
//! manifest headers).
//!
//! Java's equivalent is `CatalogHandlers` behind `RESTCatalogAdapter`.

mod auth;
mod commit;
pub mod error;
mod namespaces;
mod repair;
mod tables;
mod wire;

use std::net::SocketAddr;

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

/// How the REST catalog is served.
#[derive(Clone, Debug, Default)]
pub struct RestOptions {
    /// The bearer token every request must carry; without one, requests need none (and any
    /// `Authorization` header is ignored: PyIceberg sends `Bearer None`).
    pub token: Option<Secret>,
}

/// What every handler reaches: the floe handle and the token digest.
#[derive(Clone)]
pub(crate) struct Served {
    pub(crate) floe: Floe,
    pub(crate) token: Option<auth::TokenDigest>,
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
    "POST /v1/{prefix}/tables/rename",
    "POST /v1/{prefix}/transactions/commit",
];

/// The REST catalog's routes over `floe`.
pub fn router(floe: Floe, options: &RestOptions) -> Router {
    let served = Served {
        floe,
        token: options.token.as_ref().map(auth::TokenDigest::of),
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
            get(tables::load)
                .head(tables::exists)
                .post(commit::commit_table)
                .delete(tables::drop),
        )
        .route(
            "/v1/namespaces/{namespace}/tables/{table}/metrics",
            post(tables::metrics),
        )
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
        .with_state(served)
}

/// `GET /v1/config`: the storage settings as defaults, no overrides, and the endpoints served.
async fn config(State(s): State<Served>) -> Json<Value> {
    Json(json!({
        "defaults": wire::storage_config(&s.floe),
        "overrides": {},
        "endpoints": ENDPOINTS,
    }))
}

/// The REST catalog bound to its address, ready to run.
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Server {
    /// Bind `addr`. A non-loopback address needs a token: the catalog hands out the tables of a
    /// warehouse the server itself holds the keys of.
    pub async fn bind(floe: Floe, addr: SocketAddr, options: &RestOptions) -> Result<Server> {
        if !addr.ip().is_loopback() && options.token.is_none() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("refusing to serve the catalog on {addr} without auth: give --token-file, or bind 127.0.0.1"),
            ));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::new(ErrorKind::Config, format!("cannot listen on {addr}: {e}")))?;
        Ok(Server {
            listener,
            router: router(floe, options),
        })
    }

    /// The address bound (its port when bound to port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::internal(format!("no local address: {e}")))
    }

    /// Serve until the process stops.
    pub async fn run(self) -> Result<()> {
        axum::serve(self.listener, self.router)
            .await
            .map_err(|e| Error::internal(format!("the REST catalog stopped: {e}")))
    }
}
