//! Encoding table metadata JSON on the commit path without cloning it, and without encoding again
//! what an earlier commit of this process already encoded.
//!
//! iceberg-rust serializes `TableMetadata` by first cloning all of it (every snapshot and its summary)
//! into its serde form, then encoding every snapshot: at 1,000 snapshots that was two thirds of a
//! one-row commit. Snapshots never change once they exist, so floe encodes each one once per process
//! (keyed by table UUID and snapshot id, checked against the snapshot itself) and writes the rest of
//! the document from borrowed fields. The output is the same JSON document iceberg-rust writes (the
//! tests decode both and compare); metadata floe does not encode this way (format v1 or v3, or
//! compressed metadata) is written by iceberg-rust itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use iceberg::spec::{
    FormatVersion, MetadataLog, PartitionSpec, PartitionStatisticsFile, Schema, SnapshotLog, SnapshotRef,
    SnapshotReference, SortOrder, StatisticsFile, Summary, TableMetadata,
};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::{Error, Result};

/// Snapshots encoded once: beyond this many entries the cache starts over.
const MAX_CACHED_SNAPSHOTS: usize = 50_000;

/// A snapshot and its JSON, by table UUID and snapshot id.
type EncodedSnapshots = HashMap<(Uuid, i64), (SnapshotRef, Arc<RawValue>)>;

/// Encoded snapshots by table and snapshot id.
#[derive(Debug, Default)]
pub(crate) struct SnapshotJsonCache {
    entries: Mutex<EncodedSnapshots>,
}

impl SnapshotJsonCache {
    fn encoded(&self, table: Uuid, snapshot: &SnapshotRef) -> Result<Arc<RawValue>> {
        let key = (table, snapshot.snapshot_id());
        {
            let entries = self.entries.lock().expect("snapshot cache poisoned");
            if let Some((cached, json)) = entries.get(&key) {
                // The same snapshot object, or an equal one decoded again: never a different
                // snapshot that happens to reuse the id.
                if Arc::ptr_eq(cached, snapshot) || **cached == **snapshot {
                    return Ok(json.clone());
                }
            }
        }
        let json: Arc<RawValue> = Arc::from(serde_json::value::to_raw_value(&SnapshotJson::of(snapshot))?);
        let mut entries = self.entries.lock().expect("snapshot cache poisoned");
        if entries.len() >= MAX_CACHED_SNAPSHOTS {
            entries.clear();
        }
        entries.insert(key, (snapshot.clone(), json.clone()));
        Ok(json)
    }
}

/// A snapshot as format v2 writes it.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct SnapshotJson<'a> {
    snapshot_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_snapshot_id: Option<i64>,
    sequence_number: i64,
    timestamp_ms: i64,
    manifest_list: &'a str,
    summary: &'a Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_id: Option<i32>,
}

impl<'a> SnapshotJson<'a> {
    fn of(s: &'a SnapshotRef) -> Self {
        SnapshotJson {
            snapshot_id: s.snapshot_id(),
            parent_snapshot_id: s.parent_snapshot_id(),
            sequence_number: s.sequence_number(),
            timestamp_ms: s.timestamp_ms(),
            manifest_list: s.manifest_list(),
            summary: s.summary(),
            schema_id: s.schema_id(),
        }
    }
}

/// Table metadata as format v2 writes it, borrowed from the metadata.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct MetadataJson<'a> {
    format_version: u8,
    table_uuid: Uuid,
    location: &'a str,
    last_sequence_number: i64,
    last_updated_ms: i64,
    last_column_id: i32,
    schemas: Vec<&'a Schema>,
    current_schema_id: i32,
    partition_specs: Vec<&'a PartitionSpec>,
    default_spec_id: i32,
    last_partition_id: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<&'a HashMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_snapshot_id: Option<i64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    snapshot_log: &'a [SnapshotLog],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    metadata_log: &'a [MetadataLog],
    sort_orders: Vec<&'a SortOrder>,
    default_sort_order_id: i64,
    refs: &'a BTreeMap<String, SnapshotReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    statistics: Vec<&'a StatisticsFile>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    partition_statistics: Vec<&'a PartitionStatisticsFile>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    snapshots: Vec<&'a RawValue>,
}

/// Whether [`encode`] writes this metadata (format v2, uncompressed, no v3 fields).
pub(crate) fn encodes(metadata: &TableMetadata) -> bool {
    metadata.format_version() == FormatVersion::V2
        && matches!(
            metadata.metadata_compression_codec(),
            Ok(iceberg::compression::CompressionCodec::None)
        )
        && metadata.encryption_keys_iter().len() == 0
}

/// The metadata JSON of `metadata`, whose refs are `refs`. Only for metadata [`encodes`] accepts.
pub(crate) fn encode(
    metadata: &TableMetadata,
    refs: &BTreeMap<String, SnapshotReference>,
    cache: &SnapshotJsonCache,
) -> Result<Vec<u8>> {
    if !encodes(metadata) {
        return Err(Error::internal(
            "metadata_json::encode called for metadata it does not encode",
        ));
    }
    let mut snapshots: Vec<&SnapshotRef> = metadata.snapshots().collect();
    snapshots.sort_by_key(|s| (s.sequence_number(), s.timestamp_ms(), s.snapshot_id()));
    let encoded: Vec<Arc<RawValue>> = snapshots
        .iter()
        .map(|s| cache.encoded(metadata.uuid(), s))
        .collect::<Result<_>>()?;
    let mut schemas: Vec<&Schema> = metadata.schemas_iter().map(|s| s.as_ref()).collect();
    schemas.sort_by_key(|s| s.schema_id());
    let mut specs: Vec<&PartitionSpec> = metadata.partition_specs_iter().map(|s| s.as_ref()).collect();
    specs.sort_by_key(|s| s.spec_id());
    let mut sort_orders: Vec<&SortOrder> = metadata.sort_orders_iter().map(|s| s.as_ref()).collect();
    sort_orders.sort_by_key(|s| s.order_id);
    let mut statistics: Vec<&StatisticsFile> = metadata.statistics_iter().collect();
    statistics.sort_by_key(|s| s.snapshot_id);
    let mut partition_statistics: Vec<&PartitionStatisticsFile> =
        metadata.partition_statistics_iter().collect();
    partition_statistics.sort_by_key(|s| s.snapshot_id);
    let document = MetadataJson {
        format_version: 2,
        table_uuid: metadata.uuid(),
        location: metadata.location(),
        last_sequence_number: metadata.last_sequence_number(),
        last_updated_ms: metadata.last_updated_ms(),
        last_column_id: metadata.last_column_id(),
        schemas,
        current_schema_id: metadata.current_schema_id(),
        partition_specs: specs,
        default_spec_id: metadata.default_partition_spec_id(),
        last_partition_id: metadata.last_partition_id(),
        properties: (!metadata.properties().is_empty()).then(|| metadata.properties()),
        current_snapshot_id: metadata.current_snapshot_id(),
        snapshot_log: metadata.history(),
        metadata_log: metadata.metadata_log(),
        sort_orders,
        default_sort_order_id: metadata.default_sort_order_id(),
        refs,
        statistics,
        partition_statistics,
        snapshots: encoded.iter().map(|j| j.as_ref()).collect(),
    };
    Ok(serde_json::to_vec(&document)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::{
        NestedField, Operation, PrimitiveType, Snapshot, SnapshotRetention, TableMetadataBuilder, Type,
        UnboundPartitionSpec, MAIN_BRANCH,
    };

    fn refs_of(metadata: &TableMetadata) -> BTreeMap<String, SnapshotReference> {
        let v = serde_json::to_value(metadata).unwrap();
        serde_json::from_value(v["refs"].clone()).unwrap()
    }

    fn snapshot(id: i64, parent: Option<i64>, seq: i64, extra: &[(&str, &str)]) -> Snapshot {
        Snapshot::builder()
            .with_snapshot_id(id)
            .with_parent_snapshot_id(parent)
            .with_sequence_number(seq)
            .with_timestamp_ms(chrono::Utc::now().timestamp_millis() + 60_000 + seq)
            .with_manifest_list(format!("file:///t/metadata/snap-{id}.avro"))
            .with_summary(Summary {
                operation: Operation::Append,
                additional_properties: extra
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .with_schema_id(0)
            .build()
    }

    /// A table with two schemas, a partition spec, properties, three snapshots, a branch and a tag,
    /// and a metadata log.
    fn metadata() -> TableMetadata {
        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "name \"quoted\" é", Type::Primitive(PrimitiveType::String)).into(),
            ])
            .build()
            .unwrap();
        let spec = UnboundPartitionSpec::builder()
            .add_partition_field(1, "id_bucket_4", iceberg::spec::Transform::Bucket(4))
            .unwrap()
            .build();
        let created = TableMetadataBuilder::new(
            schema.clone(),
            spec,
            iceberg::spec::SortOrder::unsorted_order(),
            "file:///t".to_string(),
            FormatVersion::V2,
            HashMap::from([("owner".to_string(), "floe \u{1F600}".to_string())]),
        )
        .unwrap()
        .build()
        .unwrap()
        .metadata;
        let mut b = created.into_builder(Some("file:///t/metadata/00000-a.metadata.json".into()));
        b = b
            .set_branch_snapshot(
                snapshot(11, None, 1, &[("added-records", "1"), ("floe.run-id", "r\n1")]),
                MAIN_BRANCH,
            )
            .unwrap();
        let m = b.build().unwrap().metadata;
        let mut b = m.into_builder(Some("file:///t/metadata/00001-b.metadata.json".into()));
        b = b
            .set_branch_snapshot(snapshot(12, Some(11), 2, &[]), MAIN_BRANCH)
            .unwrap();
        b = b
            .set_branch_snapshot(snapshot(13, Some(11), 3, &[("x", "y")]), "dev")
            .unwrap();
        b = b
            .set_ref(
                "v1",
                SnapshotReference::new(
                    11,
                    SnapshotRetention::Tag {
                        max_ref_age_ms: Some(86_400_000),
                    },
                ),
            )
            .unwrap();
        let next = Schema::builder()
            .with_schema_id(1)
            .with_fields(vec![
                NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "name \"quoted\" é", Type::Primitive(PrimitiveType::String)).into(),
                NestedField::optional(3, "extra", Type::Primitive(PrimitiveType::Double)).into(),
            ])
            .build()
            .unwrap();
        b = b.add_current_schema(next).unwrap();
        b.build().unwrap().metadata
    }

    #[test]
    fn writes_the_document_iceberg_writes() {
        let m = metadata();
        let cache = SnapshotJsonCache::default();
        let ours = encode(&m, &refs_of(&m), &cache).unwrap();
        let theirs = serde_json::to_vec(&m).unwrap();
        // The same JSON document (arrays of schemas and snapshots may come in another order) ...
        let sorted = |bytes: &[u8]| {
            let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            for key in ["schemas", "snapshots", "partition-specs", "sort-orders"] {
                if let Some(a) = v.get_mut(key).and_then(|a| a.as_array_mut()) {
                    a.sort_by_key(|x| x.to_string());
                }
            }
            v
        };
        assert_eq!(sorted(&ours), sorted(&theirs));
        // ... which decodes to the same metadata.
        let decoded: TableMetadata = serde_json::from_slice(&ours).unwrap();
        assert_eq!(decoded, m);
        // Encoding again serves the snapshots from the cache, and still gives the same bytes.
        assert_eq!(encode(&m, &refs_of(&m), &cache).unwrap(), ours);
        assert_eq!(cache.entries.lock().unwrap().len(), 3);
    }

    #[test]
    fn a_cached_snapshot_is_never_served_for_a_different_one_with_its_id() {
        let m = metadata();
        let cache = SnapshotJsonCache::default();
        encode(&m, &refs_of(&m), &cache).unwrap();
        // Another table state whose snapshot 12 differs (a retried commit reusing an id).
        let other = Arc::new(snapshot(12, Some(11), 2, &[("changed", "yes")]));
        let json = cache.encoded(m.uuid(), &other).unwrap();
        assert!(json.get().contains("\"changed\":\"yes\""), "{}", json.get());
    }
}
