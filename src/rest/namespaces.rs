//! The namespace endpoints: list (the children of `parent`), create, load, exists, drop (a namespace
//! that still holds tables or namespaces is a 409 `NamespaceNotEmptyException`) and update
//! properties, each a call of floe's [`Catalog`](crate::catalog::Catalog).

use std::collections::BTreeSet;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::{Missing, RestError, RestResult};
use super::paging;
use super::wire::{self, CreateNamespaceRequest, JsonBody, UpdateNamespacePropertiesRequest};
use super::Served;
use crate::catalog::Namespace;

fn failed(e: crate::Error) -> RestError {
    RestError::from_floe(e, Missing::Namespace)
}

/// `GET /v1/namespaces[?parent=a%1Fb][&pageToken=..&pageSize=N]`: the direct children of `parent`
/// (the top level without one), including levels that exist only as the prefix of a deeper
/// namespace, a page at a time.
pub(crate) async fn list(State(s): State<Served>, RawQuery(raw): RawQuery) -> RestResult<Json<Value>> {
    let params = wire::query(raw);
    let parent: Vec<String> = match params.get("parent").filter(|p| !p.is_empty()) {
        Some(p) => {
            let parent = wire::namespace(p)?;
            if !s.floe.catalog().namespace_exists(&parent).await.map_err(failed)? {
                return Err(RestError::not_found(
                    Missing::Namespace,
                    format!("namespace {parent} does not exist"),
                ));
            }
            parent.levels().to_vec()
        }
        None => Vec::new(),
    };
    let all = s.floe.catalog().list_namespaces().await.map_err(failed)?;
    let children: BTreeSet<Vec<String>> = all
        .iter()
        .map(|ns| ns.levels())
        .filter(|levels| levels.len() > parent.len() && levels.starts_with(&parent))
        .map(|levels| levels[..=parent.len()].to_vec())
        .collect();
    let page = paging::paginate(
        children.into_iter().collect(),
        |levels| levels.join("\u{1f}"),
        &params,
    )?;
    Ok(Json(page.to_json("namespaces", |levels| json!(levels))))
}

/// `POST /v1/namespaces`.
pub(crate) async fn create(
    State(s): State<Served>,
    JsonBody(req): JsonBody<CreateNamespaceRequest>,
) -> RestResult<Json<Value>> {
    let ns = wire::namespace_of(&req.namespace)?;
    s.floe
        .catalog()
        .create_namespace(&ns, &req.properties)
        .await
        .map_err(failed)?;
    let properties = s.floe.catalog().namespace_properties(&ns).await.map_err(failed)?;
    Ok(Json(
        json!({ "namespace": ns.levels(), "properties": properties }),
    ))
}

/// The namespace, or a 404.
async fn existing(s: &Served, text: &str) -> RestResult<Namespace> {
    let ns = wire::namespace(text)?;
    if s.floe.catalog().namespace_exists(&ns).await.map_err(failed)? {
        Ok(ns)
    } else {
        Err(RestError::not_found(
            Missing::Namespace,
            format!("namespace {ns} does not exist"),
        ))
    }
}

/// `GET /v1/namespaces/{namespace}`.
pub(crate) async fn load(State(s): State<Served>, Path(ns): Path<String>) -> RestResult<Json<Value>> {
    let ns = existing(&s, &ns).await?;
    let properties = s.floe.catalog().namespace_properties(&ns).await.map_err(failed)?;
    Ok(Json(
        json!({ "namespace": ns.levels(), "properties": properties }),
    ))
}

/// `HEAD /v1/namespaces/{namespace}`: 204 or 404.
pub(crate) async fn exists(State(s): State<Served>, Path(ns): Path<String>) -> RestResult<StatusCode> {
    existing(&s, &ns).await.map(|_| StatusCode::NO_CONTENT)
}

/// `DELETE /v1/namespaces/{namespace}`: only an empty namespace goes.
pub(crate) async fn drop(State(s): State<Served>, Path(ns): Path<String>) -> RestResult<StatusCode> {
    let ns = existing(&s, &ns).await?;
    let catalog = s.floe.catalog();
    let tables = catalog.list_tables(&ns).await.map_err(failed)?;
    let children = catalog
        .list_namespaces()
        .await
        .map_err(failed)?
        .into_iter()
        .filter(|n| n.levels().len() > ns.levels().len() && n.levels().starts_with(ns.levels()))
        .count();
    if !tables.is_empty() || children > 0 {
        return Err(RestError::new(
            StatusCode::CONFLICT,
            "NamespaceNotEmptyException",
            format!(
                "namespace {ns} is not empty: it holds {} tables and {children} namespaces",
                tables.len()
            ),
        ));
    }
    catalog.drop_namespace(&ns).await.map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/namespaces/{namespace}/properties`: which keys were updated, removed, and which
/// removals named a key the namespace did not have.
pub(crate) async fn update_properties(
    State(s): State<Served>,
    Path(ns): Path<String>,
    JsonBody(req): JsonBody<UpdateNamespacePropertiesRequest>,
) -> RestResult<Json<Value>> {
    let ns = existing(&s, &ns).await?;
    if let Some(k) = req.removals.iter().find(|k| req.updates.contains_key(*k)) {
        return Err(RestError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "UnprocessableEntityException",
            format!("property {k:?} is both removed and updated"),
        ));
    }
    let catalog = s.floe.catalog();
    let before = catalog.namespace_properties(&ns).await.map_err(failed)?;
    let (removed, missing): (Vec<String>, Vec<String>) =
        req.removals.iter().cloned().partition(|k| before.contains_key(k));
    catalog
        .update_namespace_properties(&ns, &removed, &req.updates)
        .await
        .map_err(failed)?;
    let updated: Vec<&String> = req.updates.keys().collect();
    Ok(Json(
        json!({ "updated": updated, "removed": removed, "missing": missing }),
    ))
}
