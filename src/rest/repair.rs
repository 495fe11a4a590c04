//! DuckDB 1.4's manifests, repaired as they are committed through `floe serve`. DuckDB 1.4 (through
//! 1.4.4) writes a manifest's Avro header `schema` as a description of the manifest entry record,
//! half Iceberg type JSON and half Avro, and `content` as `data` even for delete manifests
//! (duckdb-iceberg #799); iceberg-rust refuses such a manifest, so floe could neither read the
//! table nor validate later commits over it. Each manifest an `add-snapshot` adds whose header
//! `schema` is not an Iceberg schema is copied with its header rewritten (the table schema the
//! header names, the content its manifest-list entry gives) and its data blocks copied byte for
//! byte; the snapshot then names a new manifest list of the copies. DuckDB's own manifests and list
//! are left unreferenced, to orphan removal.

use iceberg::spec::{
    FormatVersion, ManifestContentType, ManifestFile, ManifestList, Schema, Snapshot, TableMetadata,
};
use iceberg::TableUpdate;

use crate::error::{Error, Result};
use crate::storage::ObjectStorage;
use crate::table::manifest_list::{
    read_bytes, read_long, write_long, write_with_iceberg, ListHeader, AVRO_MAGIC, MARKER_LEN,
};

/// `updates` with every `add-snapshot` whose manifests need it repaired. `base` is the table the
/// commit applies to (none for a create), for the schemas the manifests name.
pub(crate) async fn repair_manifests(
    storage: &ObjectStorage,
    base: Option<&TableMetadata>,
    updates: Vec<TableUpdate>,
) -> Result<Vec<TableUpdate>> {
    let mut schemas: Vec<Schema> = base
        .map(|m| m.schemas_iter().map(|s| (**s).clone()).collect())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(updates.len());
    for update in updates {
        match update {
            TableUpdate::AddSchema { schema } => {
                schemas.push(schema.clone());
                out.push(TableUpdate::AddSchema { schema });
            }
            TableUpdate::AddSnapshot { snapshot } => {
                let snapshot = repair_snapshot(storage, &schemas, base, snapshot).await?;
                out.push(TableUpdate::AddSnapshot { snapshot });
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

async fn repair_snapshot(
    storage: &ObjectStorage,
    schemas: &[Schema],
    base: Option<&TableMetadata>,
    snapshot: Snapshot,
) -> Result<Snapshot> {
    let list_location = snapshot.manifest_list().to_string();
    if let Some(m) = base {
        let root = format!("{}/", m.location().trim_end_matches('/'));
        if !list_location.starts_with(&root) || list_location.contains("/../") {
            return Err(Error::invalid(format!(
                "snapshot {}'s manifest list {list_location} is not under the table's location {root}",
                snapshot.snapshot_id()
            )));
        }
    }
    let unreadable = |e: Error| {
        let id = snapshot.snapshot_id();
        if e.kind() == crate::error::ErrorKind::NotFound {
            Error::invalid(format!("snapshot {id}: a file it adds does not exist: {e}"))
        } else {
            Error::invalid(format!("cannot read what snapshot {id} adds: {e}"))
        }
    };
    let bytes = storage.read(&list_location).await.map_err(unreadable)?;
    let mut manifests: Vec<ManifestFile> = ManifestList::parse_with_version(&bytes, FormatVersion::V2)
        .map_err(|e| {
            Error::invalid(format!(
                "manifest list {list_location} does not parse: {}",
                e.message()
            ))
        })?
        .consume_entries()
        .into_iter()
        .collect();
    let mut repaired = 0;
    for manifest in manifests.iter_mut() {
        if manifest.added_snapshot_id != snapshot.snapshot_id() {
            continue;
        }
        let bytes = storage.read(&manifest.manifest_path).await.map_err(unreadable)?;
        let Some(fixed) = repaired_manifest(&bytes, schemas, base, snapshot.schema_id(), manifest.content)
            .map_err(|why| Error::invalid(format!("manifest {}: {why}", manifest.manifest_path)))?
        else {
            continue;
        };
        let location = sibling(
            &manifest.manifest_path,
            &format!("{}-m{repaired}.avro", uuid::Uuid::new_v4()),
        );
        manifest.manifest_length = fixed.len() as i64;
        storage.write(&location, fixed.into()).await?;
        manifest.manifest_path = location;
        repaired += 1;
    }
    if repaired == 0 {
        return Ok(snapshot);
    }
    let header = ListHeader {
        snapshot_id: snapshot.snapshot_id(),
        parent_snapshot_id: snapshot.parent_snapshot_id(),
        sequence_number: snapshot.sequence_number(),
    };
    let list = write_with_iceberg(header, &manifests).await?;
    let new_list = sibling(
        &list_location,
        &format!(
            "snap-{}-{}-floe.avro",
            snapshot.snapshot_id(),
            uuid::Uuid::new_v4()
        ),
    );
    storage.write(&new_list, list.into()).await?;
    tracing::info!(snapshot = snapshot.snapshot_id(), manifests = repaired, list = %new_list, "repaired DuckDB 1.4 manifest headers");
    Ok(Snapshot::builder()
        .with_snapshot_id(snapshot.snapshot_id())
        .with_parent_snapshot_id(snapshot.parent_snapshot_id())
        .with_sequence_number(snapshot.sequence_number())
        .with_timestamp_ms(snapshot.timestamp_ms())
        .with_manifest_list(new_list)
        .with_summary(snapshot.summary().clone())
        .schema_id_opt(snapshot.schema_id())
        .with_encryption_key_id(snapshot.encryption_key_id().map(str::to_string))
        .build())
}

/// `name` in the directory of `location`.
fn sibling(location: &str, name: &str) -> String {
    match location.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{name}"),
        None => name.to_string(),
    }
}

/// The manifest with its header repaired, or `None` when its `schema` is an Iceberg schema already.
fn repaired_manifest(
    file: &[u8],
    schemas: &[Schema],
    base: Option<&TableMetadata>,
    snapshot_schema: Option<i32>,
    content: ManifestContentType,
) -> std::result::Result<Option<Vec<u8>>, String> {
    if !file.starts_with(AVRO_MAGIC) {
        return Err("not an Avro file".into());
    }
    let mut pos = AVRO_MAGIC.len();
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    loop {
        let mut count = read_long(file, &mut pos).ok_or("truncated header")?;
        if count == 0 {
            break;
        }
        if count < 0 {
            count = -count;
            read_long(file, &mut pos).ok_or("truncated header")?;
        }
        for _ in 0..count {
            let key = read_bytes(file, &mut pos).ok_or("truncated header")?.to_vec();
            let value = read_bytes(file, &mut pos).ok_or("truncated header")?.to_vec();
            entries.push((key, value));
        }
    }
    let value = |k: &str| {
        entries
            .iter()
            .find(|(key, _)| key == k.as_bytes())
            .map(|(_, v)| v.clone())
    };
    let schema_ok = value("schema").is_some_and(|v| serde_json::from_slice::<Schema>(&v).is_ok());
    if schema_ok {
        return Ok(None);
    }
    let schema_id = value("schema-id")
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<i32>().ok())
        .or(snapshot_schema);
    let schema = schema_id
        .and_then(|id| schemas.iter().rev().find(|s| s.schema_id() == id))
        .or_else(|| base.map(|m| m.current_schema().as_ref()))
        .or(schemas.last())
        .ok_or("no table schema to name in its header")?;
    let schema_json = serde_json::to_vec(schema).map_err(|e| e.to_string())?;
    let content = match content {
        ManifestContentType::Data => "data",
        ManifestContentType::Deletes => "deletes",
    };
    let had_schema = value("schema").is_some();
    for (key, v) in entries.iter_mut() {
        match key.as_slice() {
            b"schema" => *v = schema_json.clone(),
            b"content" => *v = content.as_bytes().to_vec(),
            _ => {}
        }
    }
    if !had_schema {
        entries.push((b"schema".to_vec(), schema_json));
    }
    let body = file.get(pos..).ok_or("truncated header")?;
    if body.len() < MARKER_LEN {
        return Err("no sync marker".into());
    }
    let mut out = Vec::with_capacity(file.len() + 1024);
    out.extend_from_slice(AVRO_MAGIC);
    write_long(&mut out, entries.len() as i64);
    for (k, v) in &entries {
        write_long(&mut out, k.len() as i64);
        out.extend_from_slice(k);
        write_long(&mut out, v.len() as i64);
        out.extend_from_slice(v);
    }
    write_long(&mut out, 0);
    // The sync marker and every data block, byte for byte.
    out.extend_from_slice(body);
    Ok(Some(out))
}
