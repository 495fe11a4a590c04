//! The commit endpoints: `POST /v1/namespaces/{namespace}/tables/{table}` (one table) and
//! `POST /v1/transactions/commit` (several, atomic through floe's one compare-and-swap). Each table's
//! requirements and updates become one action of floe's commit loop (see
//! [`client_commit`](crate::table::transaction::client_commit)). A commit whose requirements say
//! `assert-create` creates the table instead: its metadata built from the updates on an empty
//! table, then registered like any new table. DuckDB 1.4's manifests are repaired on the way in
//! (see `repair`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use iceberg::spec::{FormatVersion, SortOrder, TableMetadataBuilder, UnboundPartitionSpec};
use iceberg::{TableRequirement, TableUpdate};

use super::error::{RestError, RestResult};
use super::repair::repair_manifests;
use super::tables::{create_properties, failed, table_location};
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
    let base = tx.table(&name).await.map_err(failed)?;
    let updates = repair_manifests(s.floe.storage(), Some(base.metadata()), req.updates)
        .await
        .map_err(failed)?;
    tx.client_commit(&name, req.requirements, updates)
        .await
        .map_err(failed)?;
    let result = tx.commit_one().await.map_err(failed)?;
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
                "{name}: a table is created by its own commit, not inside a multi-table transaction"
            )));
        }
        let base = tx.table(&name).await.map_err(failed)?;
        let updates = repair_manifests(s.floe.storage(), Some(base.metadata()), change.updates)
            .await
            .map_err(failed)?;
        tx.client_commit(&name, change.requirements, updates)
            .await
            .map_err(failed)?;
    }
    tx.commit().await.map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create `name` from a commit that asserts it does not exist (a stage-create's second half): the
/// first schema, spec, sort order, location and format version the updates name make an empty
/// table, on which every update is then applied in order.
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
    create::check_free(store, name).await.map_err(failed)?;
    let updates = repair_manifests(store.storage(), None, req.updates)
        .await
        .map_err(failed)?;
    let mut schema = None;
    let mut spec = None;
    let mut order = None;
    let mut location = None;
    let mut format_version = FormatVersion::V2;
    for update in &updates {
        match update {
            TableUpdate::AddSchema { schema: s } if schema.is_none() => schema = Some(s.clone()),
            TableUpdate::AddSpec { spec: s } if spec.is_none() => spec = Some(s.clone()),
            TableUpdate::AddSortOrder { sort_order } if order.is_none() => order = Some(sort_order.clone()),
            TableUpdate::SetLocation { location: l } if location.is_none() => location = Some(l.clone()),
            TableUpdate::UpgradeFormatVersion { format_version: v } => format_version = *v,
            _ => {}
        }
    }
    let Some(schema) = schema else {
        return Err(RestError::bad_request(
            "a create commit needs an add-schema update",
        ));
    };
    if format_version > FormatVersion::V2 {
        return Err(RestError::bad_request(format!(
            "floe writes Iceberg format v2; a table of {format_version} is refused"
        )));
    }
    let location = table_location(&s.floe, name, location.as_deref())?;
    // The first of each makes the empty table; a later one is an update like any other.
    let mut builder = TableMetadataBuilder::new(
        schema,
        spec.unwrap_or_else(|| UnboundPartitionSpec::builder().build()),
        order.unwrap_or_else(SortOrder::unsorted_order),
        location.clone(),
        FormatVersion::V2,
        create_properties(Default::default()),
    )
    .map_err(|e| failed(e.into()))?;
    client_commit::check_manifest_lists(store.storage(), &location, &updates)
        .await
        .map_err(failed)?;
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
        .map_err(failed)?;
    LoadTableResult::of(&s.floe, &table, false).await
}
