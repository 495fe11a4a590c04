//! `GET /v1/namespaces/{namespace}/tables/{table}`: the load result (the stored metadata file's bytes,
//! the storage config), `snapshots=refs` (only the snapshots a branch or tag reaches, re-encoded with
//! the snapshot log, statistics and partition statistics kept consistent), and a strong `ETag`
//! derived from the metadata location and that mode, with `If-None-Match` answered by a bodiless
//! 304. A 304 never goes to a request without `If-None-Match`: iceberg-rust parses a 304 as a body.

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::{Missing, RestError, RestResult};
use super::tables::failed;
use super::wire::{self, LoadTableResult};
use super::Served;

/// Which snapshots a load returns (`snapshots=all|refs`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Snapshots {
    All,
    Refs,
}

impl Snapshots {
    fn of(params: &HashMap<String, String>) -> RestResult<Self> {
        match params.get("snapshots").map(String::as_str) {
            None | Some("") | Some("all") => Ok(Snapshots::All),
            Some("refs") => Ok(Snapshots::Refs),
            Some(other) => Err(RestError::bad_request(format!(
                "snapshots must be all or refs, not {other:?}"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Snapshots::All => "all",
            Snapshots::Refs => "refs",
        }
    }
}

/// `GET /v1/namespaces/{namespace}/tables/{table}[?snapshots=all|refs]`.
pub(crate) async fn load(
    State(s): State<Served>,
    Path((ns, t)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> RestResult<Response> {
    let name = wire::table_name(&ns, &t)?;
    let snapshots = Snapshots::of(&wire::query(raw))?;
    let Some(location) = s.floe.catalog().metadata_location(&name).await.map_err(failed)? else {
        return Err(RestError::not_found(
            Missing::Table,
            format!("table {name} does not exist"),
        ));
    };
    let etag = etag(&location, snapshots);
    let etag_header =
        HeaderValue::from_str(&etag).map_err(|e| failed(crate::Error::internal(format!("ETag: {e}"))))?;
    if if_none_match(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_header)]).into_response());
    }
    let stored = wire::stored_metadata(&s.floe, &location).await?;
    let metadata = match snapshots {
        Snapshots::All => stored,
        Snapshots::Refs => only_referenced_snapshots(&stored)?,
    };
    let result = LoadTableResult {
        metadata_location: Some(location),
        metadata,
        config: Some(s.storage_config()),
    };
    Ok(([(header::ETAG, etag_header)], result).into_response())
}

/// A strong tag, unique per metadata file (files are never rewritten) and per representation.
fn etag(location: &str, snapshots: Snapshots) -> String {
    let digest = Sha256::digest(format!("{location}|{}", snapshots.name()).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether the request's `If-None-Match` names `etag` (or is `*`); weak comparison, as RFC 9110
/// asks for this header.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn encode_failed(e: serde_json::Error) -> RestError {
    failed(crate::Error::internal(format!(
        "cannot re-encode the table metadata: {e}"
    )))
}

/// The metadata with only the snapshots some ref reaches through parent links (Java's
/// `suppressHistoricalSnapshots`); the snapshot log loses entries of dropped snapshots and
/// everything before such an entry (Java's rule, so the log never claims a false history), and
/// statistics follow their snapshots.
fn only_referenced_snapshots(stored: &RawValue) -> RestResult<Box<RawValue>> {
    let mut metadata: Value = serde_json::from_str(stored.get()).map_err(encode_failed)?;
    let snapshot_id = |v: &Value| v.get("snapshot-id").and_then(Value::as_i64);
    let parents: HashMap<i64, Option<i64>> = metadata["snapshots"]
        .as_array()
        .map(|snapshots| {
            snapshots
                .iter()
                .filter_map(|s| {
                    Some((
                        snapshot_id(s)?,
                        s.get("parent-snapshot-id").and_then(Value::as_i64),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut heads: Vec<i64> = metadata["refs"]
        .as_object()
        .map(|refs| refs.values().filter_map(snapshot_id).collect())
        .unwrap_or_default();
    heads.extend(metadata["current-snapshot-id"].as_i64().filter(|id| *id >= 0));
    let mut reached = HashSet::new();
    for head in heads {
        let mut next = Some(head);
        while let Some(id) = next {
            if !parents.contains_key(&id) || !reached.insert(id) {
                break;
            }
            next = parents[&id];
        }
    }
    let kept = |v: &Value| snapshot_id(v).is_some_and(|id| reached.contains(&id));
    for list in ["snapshots", "statistics", "partition-statistics"] {
        if let Some(items) = metadata.get_mut(list).and_then(Value::as_array_mut) {
            items.retain(kept);
        }
    }
    if let Some(log) = metadata.get_mut("snapshot-log").and_then(Value::as_array_mut) {
        let mut consistent = Vec::new();
        for entry in log.drain(..) {
            if kept(&entry) {
                consistent.push(entry);
            } else {
                consistent.clear();
            }
        }
        *log = consistent;
    }
    let text = serde_json::to_string(&metadata).map_err(encode_failed)?;
    RawValue::from_string(text).map_err(encode_failed)
}
