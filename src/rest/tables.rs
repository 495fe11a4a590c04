//! The table endpoints besides commits: list, create (a real create registers the first metadata
//! file; a stage-create persists nothing and answers the metadata a later create-via-commit will
//! name), register (a table at an existing metadata file under the warehouse), exists, drop with or
//! without purge (which never deletes a file outside the table's location), rename, and metrics
//! (accepted and dropped); the load itself is in `load`.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use iceberg::spec::{FormatVersion, TableMetadata, TableMetadataBuilder};
use iceberg::TableCreation;
use serde_json::value::RawValue;
use serde_json::Value;

use super::error::{Missing, RestError, RestResult};
use super::paging;
use super::wire::{
    self, CreateTableRequest, JsonBody, LoadTableResult, RegisterTableRequest, RenameTableRequest,
};
use super::Served;
use crate::catalog::TableName;
use crate::maintenance::purge::{self, Purge};
use crate::table::create::{self, CREATE_PROPERTIES};
use crate::Floe;

pub(crate) fn failed(e: crate::Error) -> RestError {
    RestError::from_floe(e, Missing::Table)
}

/// `GET /v1/namespaces/{namespace}/tables[?pageToken=..&pageSize=N]`.
pub(crate) async fn list(
    State(s): State<Served>,
    Path(ns): Path<String>,
    RawQuery(raw): RawQuery,
) -> RestResult<Json<Value>> {
    let ns = wire::namespace(&ns)?;
    let catalog = s.floe.catalog();
    if !catalog
        .namespace_exists(&ns)
        .await
        .map_err(|e| RestError::from_floe(e, Missing::Namespace))?
    {
        return Err(RestError::not_found(
            Missing::Namespace,
            format!("namespace {ns} does not exist"),
        ));
    }
    let tables = catalog.list_tables(&ns).await.map_err(failed)?;
    let page = paging::paginate(tables, |t| t.name().to_string(), &wire::query(raw))?;
    Ok(Json(page.to_json("identifiers", wire::ident_json)))
}

/// Where a client may put a table: floe's own choice for it, or a location the client names
/// under the warehouse.
pub(crate) fn table_location(floe: &Floe, name: &TableName, requested: Option<&str>) -> RestResult<String> {
    let Some(location) = requested else {
        return Ok(floe.new_table_location(name));
    };
    let location = location.trim_end_matches('/');
    let warehouse = format!("{}/", floe.warehouse().uri().trim_end_matches('/'));
    if !location.starts_with(&warehouse) || location.contains("/../") {
        return Err(RestError::bad_request(format!(
            "table location {location} is not under the warehouse {warehouse}"
        )));
    }
    Ok(location.to_string())
}

/// floe's table properties under the client's.
pub(crate) fn create_properties(client: HashMap<String, String>) -> HashMap<String, String> {
    let mut properties: HashMap<String, String> = CREATE_PROPERTIES
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    properties.extend(client);
    properties
}

fn new_metadata(floe: &Floe, name: &TableName, req: CreateTableRequest) -> RestResult<TableMetadata> {
    let location = table_location(floe, name, req.location.as_deref())?;
    let creation = TableCreation::builder()
        .name(name.name().to_string())
        .location(location)
        .schema(req.schema)
        .partition_spec_opt(req.partition_spec)
        .sort_order_opt(req.write_order)
        .properties(create_properties(req.properties))
        .format_version(FormatVersion::V2)
        .build();
    let metadata = TableMetadataBuilder::from_table_creation(creation)
        .and_then(|b| b.build())
        .map_err(|e| failed(e.into()))?;
    Ok(metadata.metadata)
}

/// `POST /v1/namespaces/{namespace}/tables`.
pub(crate) async fn create(
    State(s): State<Served>,
    Path(ns): Path<String>,
    JsonBody(req): JsonBody<CreateTableRequest>,
) -> RestResult<LoadTableResult> {
    let name = wire::table_name(&ns, &req.name)?;
    let store = s.floe.table_store();
    create::check_free(store, &name).await.map_err(failed)?;
    let stage = req.stage_create.unwrap_or(false);
    let metadata = new_metadata(&s.floe, &name, req)?;
    if stage {
        let json = serde_json::to_string(&metadata)
            .map_err(|e| failed(crate::Error::internal(format!("cannot encode metadata: {e}"))))?;
        return Ok(LoadTableResult {
            metadata_location: None,
            metadata: RawValue::from_string(json)
                .map_err(|e| failed(crate::Error::internal(format!("cannot encode metadata: {e}"))))?,
            config: Some(s.storage_config()),
        });
    }
    let table = create::register_new(store, &name, metadata)
        .await
        .map_err(failed)?;
    let mut result = LoadTableResult::of(&s.floe, &table, false).await?;
    result.config = Some(s.storage_config());
    Ok(result)
}

/// `HEAD /v1/namespaces/{namespace}/tables/{table}`: 204 or 404.
pub(crate) async fn exists(
    State(s): State<Served>,
    Path((ns, t)): Path<(String, String)>,
) -> RestResult<StatusCode> {
    let name = wire::table_name(&ns, &t)?;
    match s.floe.catalog().metadata_location(&name).await.map_err(failed)? {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(RestError::not_found(
            Missing::Table,
            format!("table {name} does not exist"),
        )),
    }
}

/// `DELETE /v1/namespaces/{namespace}/tables/{table}[?purgeRequested=true]`.
pub(crate) async fn drop(
    State(s): State<Served>,
    Path((ns, t)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> RestResult<StatusCode> {
    let name = wire::table_name(&ns, &t)?;
    // A purge deletes only files under the table's location: a client's snapshot may name
    // another table's files.
    let purge = match wire::flag(&wire::query(raw), "purgeRequested")? {
        true => Purge::UnderLocation,
        false => Purge::Nothing,
    };
    purge::drop_table(s.floe.table_store(), &name, purge)
        .await
        .map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/namespaces/{namespace}/register`: the table at an existing metadata file under the
/// warehouse. `overwrite` (replacing a registered table) is refused: it would orphan the old table's
/// commits without any check.
pub(crate) async fn register(
    State(s): State<Served>,
    Path(ns): Path<String>,
    JsonBody(req): JsonBody<RegisterTableRequest>,
) -> RestResult<LoadTableResult> {
    let name = wire::table_name(&ns, &req.name)?;
    if req.overwrite {
        return Err(RestError::bad_request(
            "register with overwrite is not supported: drop the table first",
        ));
    }
    let table = s
        .floe
        .register_table(&name, &req.metadata_location)
        .await
        .map_err(failed)?;
    let mut result = LoadTableResult::of(&s.floe, &table, false).await?;
    result.config = Some(s.storage_config());
    Ok(result)
}

/// `POST /v1/tables/rename`.
pub(crate) async fn rename(
    State(s): State<Served>,
    JsonBody(req): JsonBody<RenameTableRequest>,
) -> RestResult<StatusCode> {
    let from = wire::table_of(&req.source)?;
    let to = wire::table_of(&req.destination)?;
    s.floe.catalog().rename_table(&from, &to).await.map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/namespaces/{namespace}/tables/{table}/metrics`: clients report scan and commit
/// metrics; floe keeps none.
pub(crate) async fn metrics() -> StatusCode {
    StatusCode::NO_CONTENT
}
