//! What travels over the wire: the request and response bodies of the REST spec that iceberg's own
//! types do not cover, the JSON body extractor that answers bad input with a 400 in the Iceberg
//! error shape (axum's own answers 415 or 422 as plain text), path and query decoding, and the
//! load-table answer carrying the stored metadata file's bytes.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use iceberg::spec::{Schema, SortOrder, UnboundPartitionSpec};
use iceberg::{TableIdent, TableRequirement, TableUpdate};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::{Missing, RestError, RestResult};
use crate::catalog::{Namespace, TableName};
use crate::table::Table;
use crate::Floe;

/// A JSON request body; any body that does not parse as `T` is a 400 `BadRequestException`
/// (this covers an unknown update action or requirement type).
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = RestError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| RestError::bad_request(format!("cannot read the request body: {e}")))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| RestError::bad_request(format!("invalid request body: {e}")))
    }
}

/// `POST /v1/namespaces`.
#[derive(Deserialize)]
pub(crate) struct CreateNamespaceRequest {
    pub(crate) namespace: Vec<String>,
    #[serde(default)]
    pub(crate) properties: BTreeMap<String, String>,
}

/// `POST /v1/namespaces/{namespace}/properties`.
#[derive(Deserialize)]
pub(crate) struct UpdateNamespacePropertiesRequest {
    #[serde(default)]
    pub(crate) removals: Vec<String>,
    #[serde(default)]
    pub(crate) updates: BTreeMap<String, String>,
}

/// `POST /v1/namespaces/{namespace}/tables`.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct CreateTableRequest {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) location: Option<String>,
    pub(crate) schema: Schema,
    #[serde(default)]
    pub(crate) partition_spec: Option<UnboundPartitionSpec>,
    #[serde(default)]
    pub(crate) write_order: Option<SortOrder>,
    #[serde(default)]
    pub(crate) stage_create: Option<bool>,
    #[serde(default)]
    pub(crate) properties: HashMap<String, String>,
}

/// `POST /v1/namespaces/{namespace}/register`.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct RegisterTableRequest {
    pub(crate) name: String,
    pub(crate) metadata_location: String,
    #[serde(default)]
    pub(crate) overwrite: bool,
}

/// `POST /v1/tables/rename`.
#[derive(Deserialize)]
pub(crate) struct RenameTableRequest {
    pub(crate) source: TableIdent,
    pub(crate) destination: TableIdent,
}

/// One table's commit: `POST /v1/namespaces/{namespace}/tables/{table}`, and each entry of
/// `POST /v1/transactions/commit`.
#[derive(Deserialize)]
pub(crate) struct CommitTableRequest {
    #[serde(default)]
    pub(crate) identifier: Option<TableIdent>,
    #[serde(default)]
    pub(crate) requirements: Vec<TableRequirement>,
    #[serde(default)]
    pub(crate) updates: Vec<TableUpdate>,
}

/// `POST /v1/transactions/commit`.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct CommitTransactionRequest {
    pub(crate) table_changes: Vec<CommitTableRequest>,
}

/// A namespace from its path form: levels joined by the unit separator (axum has already
/// percent-decoded `%1F`).
pub(crate) fn namespace(text: &str) -> RestResult<Namespace> {
    Namespace::new(text.split('\u{1f}')).map_err(|e| RestError::from_floe(e, Missing::Namespace))
}

/// A namespace from its JSON form.
pub(crate) fn namespace_of(levels: &[String]) -> RestResult<Namespace> {
    Namespace::new(levels.iter().cloned()).map_err(|e| RestError::from_floe(e, Missing::Namespace))
}

/// A table from its path form.
pub(crate) fn table_name(ns: &str, table: &str) -> RestResult<TableName> {
    TableName::new(namespace(ns)?, table).map_err(|e| RestError::from_floe(e, Missing::Table))
}

/// A table from its JSON identifier.
pub(crate) fn table_of(ident: &TableIdent) -> RestResult<TableName> {
    TableName::new(namespace_of(ident.namespace().as_ref())?, ident.name())
        .map_err(|e| RestError::from_floe(e, Missing::Table))
}

/// The JSON identifier of a table.
pub(crate) fn ident_json(t: &TableName) -> serde_json::Value {
    serde_json::json!({"namespace": t.namespace().levels(), "name": t.name()})
}

/// The query parameters (percent-decoded; the last of a repeated name wins).
pub(crate) fn query(raw: Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// A boolean query parameter as clients spell it (`true`, `True`, `false`, `False`).
pub(crate) fn flag(params: &HashMap<String, String>, name: &str) -> RestResult<bool> {
    match params.get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(RestError::bad_request(format!(
            "{name} must be true or false, not {other:?}"
        ))),
    }
}

/// The storage settings every client needs to read and write the warehouse: the S3 endpoint, path
/// style and region (never credentials), or nothing for a local warehouse.
pub(crate) fn storage_config(floe: &Floe) -> BTreeMap<String, String> {
    let mut config = BTreeMap::new();
    if !floe.warehouse().uri().starts_with("s3://") {
        return config;
    }
    let s3 = &floe.settings().s3;
    if let Some(endpoint) = &s3.endpoint {
        config.insert("s3.endpoint".into(), endpoint.clone());
    }
    let region = s3.region.clone().unwrap_or_else(|| "us-east-1".into());
    config.insert("s3.region".into(), region.clone());
    config.insert("client.region".into(), region);
    config.insert("s3.path-style-access".into(), s3.path_style.to_string());
    if s3.path_style {
        // PyIceberg's own spelling of path style.
        config.insert("s3.force-virtual-addressing".into(), "false".into());
    }
    config
}

/// A table's metadata as stored: the file's text, unzipped when it is gzipped (read once per file: metadata
/// files are never rewritten, so later loads are served from the file cache).
pub(crate) async fn stored_metadata(floe: &Floe, location: &str) -> RestResult<Box<RawValue>> {
    let text = floe
        .table_store()
        .metadata_text(location)
        .await
        .map_err(|e| RestError::from_floe(e, Missing::Table))?;
    RawValue::from_string(text.to_string())
        .map_err(|e| RestError::from_floe(crate::Error::internal(format!("{location}: {e}")), Missing::Table))
}

/// `LoadTableResult` (and, without `config`, `CommitTableResponse`).
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct LoadTableResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) metadata_location: Option<String>,
    pub(crate) metadata: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) config: Option<BTreeMap<String, String>>,
}

impl LoadTableResult {
    /// The answer for `table`: its metadata location, the stored metadata file and, for a load, the
    /// storage config.
    pub(crate) async fn of(floe: &Floe, table: &Table, with_config: bool) -> RestResult<Self> {
        Ok(Self {
            metadata_location: Some(table.metadata_location().to_string()),
            metadata: stored_metadata(floe, table.metadata_location()).await?,
            config: with_config.then(|| storage_config(floe)),
        })
    }
}

impl IntoResponse for LoadTableResult {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => RestError::from_floe(
                crate::Error::internal(format!("cannot encode the answer: {e}")),
                Missing::Table,
            )
            .into_response(),
        }
    }
}
