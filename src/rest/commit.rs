//! The commit endpoints: `POST /v1/namespaces/{namespace}/tables/{table}` (one table) and
//! `POST /v1/transactions/commit` (several, atomic through floe's one compare-and-swap). Each table's
//! requirements and updates become one action of floe's commit loop (see
//! [`client_commit`](crate::table::transaction::client_commit)). A commit whose requirements say
//! `assert-create` creates the table instead: its metadata built from the updates on an empty
//! table that keeps the client's field ids, then registered like any new table. A create inside a
//! multi-table transaction is refused: floe's swap only moves tables that exist. DuckDB 1.4's manifests are repaired on the way in
//! (see `repair`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use iceberg::spec::{
    FormatVersion, Schema, SortOrder, TableMetadata, TableMetadataBuilder, UnboundPartitionSpec,
};
use iceberg::{TableRequirement, TableUpdate};
use serde_json::json;

use super::error::{RestError, RestResult};
use super::repair::repair_manifests;
use super::tables::{create_properties, table_location};
use super::wire::{self, CommitTableRequest, CommitTransactionRequest, JsonBody, LoadTableResult};
use super::Served;
use crate::catalog::TableName;
use crate::table::create;
use crate::table::transaction::client_commit;

fn is_create(requirements: &[TableRequirement]) -> bool {
    requirements
        .iter()
        .any(|r| matches!(r, TableRequirement::NotExist))
}

/// `POST /v1/namespaces/{namespace}/tables/{table}`: the table after the commit.
pub(crate) async fn commit_table(
    State(s): State<Served>,
    Path((ns, t)): Path<(String, String)>,
    JsonBody(req): JsonBody<CommitTableRequest>,
) -> RestResult<LoadTableResult> {
    let name = wire::table_name(&ns, &t)?;
    if is_create(&req.requirements) {
        return create_by_commit(&s, &name, req).await;
    }
    let mut tx = s.floe.transaction();
    let base = tx.table(&name).await.map_err(RestError::from_commit)?;
    let updates = repair_manifests(s.floe.storage(), Some(base.metadata()), req.updates)
        .await
        .map_err(RestError::from_commit)?;
    tx.client_commit(&name, req.requirements, updates)
        .await
        .map_err(RestError::from_commit)?;
    let result = tx.commit_one().await.map_err(RestError::from_commit)?;
    LoadTableResult::of(&s.floe, &result.table, false).await
}

/// `POST /v1/transactions/commit`: every table's changes land together or none does.
pub(crate) async fn commit_transaction(
    State(s): State<Served>,
    JsonBody(req): JsonBody<CommitTransactionRequest>,
) -> RestResult<StatusCode> {
    let mut tx = s.floe.transaction();
    for change in req.table_changes {
        let Some(ident) = &change.identifier else {
            return Err(RestError::bad_request(
                "every table change of a transaction needs its identifier",
            ));
        };
        let name = wire::table_of(ident)?;
        if is_create(&change.requirements) {
            return Err(RestError::bad_request(format!(
                "{name}: assert-create inside POST /v1/transactions/commit is not supported: floe's \
                 multi-table swap only moves existing tables; create it with its own commit \
                 (POST /v1/namespaces/{{namespace}}/tables/{{table}}) first"
            )));
        }
        let base = tx.table(&name).await.map_err(RestError::from_commit)?;
        let updates = repair_manifests(s.floe.storage(), Some(base.metadata()), change.updates)
            .await
            .map_err(RestError::from_commit)?;
        tx.client_commit(&name, change.requirements, updates)
            .await
            .map_err(RestError::from_commit)?;
    }
    tx.commit().await.map_err(RestError::from_commit)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create `name` from a commit that asserts it does not exist (a stage-create's second half): the
/// first schema, spec, location, uuid and format version the updates name make an empty table, on
/// which every update is then applied in order.
async fn create_by_commit(
    s: &Served,
    name: &TableName,
    req: CommitTableRequest,
) -> RestResult<LoadTableResult> {
    if req
        .requirements
        .iter()
        .any(|r| !matches!(r, TableRequirement::NotExist))
    {
        return Err(RestError::bad_request(
            "invalid create requirements: assert-create goes alone",
        ));
    }
    let store = s.floe.table_store();
    create::check_free(store, name)
        .await
        .map_err(RestError::from_commit)?;
    let updates = repair_manifests(store.storage(), None, req.updates)
        .await
        .map_err(RestError::from_commit)?;
    let first = FirstOfEach::of(&updates);
    let Some(schema) = first.schema else {
        return Err(RestError::bad_request(
            "a create commit needs an add-schema update",
        ));
    };
    if first.format_version > FormatVersion::V2 {
        return Err(RestError::bad_request(format!(
            "floe writes Iceberg format v2; a table of {} is refused",
            first.format_version
        )));
    }
    let location = table_location(&s.floe, name, first.location.as_deref())?;
    let base = empty_table(schema, first.spec, first.uuid, &location)?;
    client_commit::check_added_snapshots(store.storage(), None, &location, &updates)
        .await
        .map_err(RestError::from_commit)?;
    let mut builder = TableMetadataBuilder::new_from_metadata(base, None);
    for update in updates {
        builder = update
            .apply(builder)
            .map_err(|e| RestError::bad_request(format!("invalid table update: {}", e.message())))?;
    }
    let metadata = builder
        .build()
        .map_err(|e| RestError::bad_request(format!("invalid table update: {}", e.message())))?
        .metadata;
    let table = create::register_new(store, name, metadata)
        .await
        .map_err(RestError::from_commit)?;
    LoadTableResult::of(&s.floe, &table, false).await
}

/// The last partition field id of an unpartitioned table (iceberg's own constant is private).
const UNPARTITIONED_LAST_PARTITION_ID: i32 = 999;

/// The first of each update that shapes a new table.
struct FirstOfEach {
    schema: Option<Schema>,
    spec: Option<UnboundPartitionSpec>,
    location: Option<String>,
    uuid: Option<uuid::Uuid>,
    format_version: FormatVersion,
}

impl FirstOfEach {
    fn of(updates: &[TableUpdate]) -> Self {
        let mut first = FirstOfEach {
            schema: None,
            spec: None,
            location: None,
            uuid: None,
            format_version: FormatVersion::V2,
        };
        for update in updates {
            match update {
                TableUpdate::AddSchema { schema } if first.schema.is_none() => {
                    first.schema = Some(schema.clone())
                }
                TableUpdate::AddSpec { spec } if first.spec.is_none() => first.spec = Some(spec.clone()),
                TableUpdate::SetLocation { location } if first.location.is_none() => {
                    first.location = Some(location.clone())
                }
                TableUpdate::AssignUuid { uuid } if first.uuid.is_none() => first.uuid = Some(*uuid),
                TableUpdate::UpgradeFormatVersion { format_version } => {
                    first.format_version = *format_version
                }
                _ => {}
            }
        }
        first
    }
}

/// The v2 table a create commit starts from: `schema` and `spec` exactly as the client sent them.
/// iceberg's `TableMetadataBuilder::new` would assign fresh field ids, but a client may already have
/// written data files with its own; so the metadata is built from its JSON form instead, and the
/// updates then find their schema and spec already there.
fn empty_table(
    schema: Schema,
    spec: Option<UnboundPartitionSpec>,
    uuid: Option<uuid::Uuid>,
    location: &str,
) -> RestResult<TableMetadata> {
    let invalid =
        |e: iceberg::Error| RestError::bad_request(format!("invalid table update: {}", e.message()));
    let spec = spec
        .unwrap_or_else(|| UnboundPartitionSpec::builder().build())
        .bind(schema.clone())
        .map_err(invalid)?;
    let json = json!({
        "format-version": 2,
        "table-uuid": uuid.unwrap_or_else(uuid::Uuid::new_v4),
        "location": location,
        "last-sequence-number": 0,
        "last-updated-ms": chrono::Utc::now().timestamp_millis(),
        "last-column-id": schema.highest_field_id(),
        "schemas": [schema],
        "current-schema-id": schema.schema_id(),
        "partition-specs": [spec],
        "default-spec-id": spec.spec_id(),
        "last-partition-id": spec.highest_field_id().unwrap_or(UNPARTITIONED_LAST_PARTITION_ID),
        "properties": create_properties(Default::default()),
        "sort-orders": [SortOrder::unsorted_order()],
        "default-sort-order-id": 0,
    });
    serde_json::from_value(json).map_err(|e| RestError::bad_request(format!("invalid new table: {e}")))
}
