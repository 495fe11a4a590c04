//! Encoding table metadata JSON on the commit path without cloning it, and without encoding again
//! what an earlier commit of this process already encoded.
//!
//! iceberg-rust serializes `TableMetadata` by first cloning all of it (every snapshot and its summary)
//! into its serde form, then encoding every snapshot: at 1,000 snapshots that was two thirds of a
//! one-row commit. Snapshots never change once they exist, and a commit adds one at the end of the
//! document's order, so floe keeps each table's encoded `snapshots` array per process (keyed by table
//! UUID; each element checked against the snapshot itself) and a commit appends to it only what is
//! new, after the longest prefix that is still the same; the rest of the document is written from
//! borrowed fields, and the array handed to the store in shared pieces, never copied into one buffer
//! (at 10,000 snapshots it is some 6 MB). The output is the same JSON document iceberg-rust
//! writes (the tests decode both and compare); metadata floe does not encode this way (format v1 or
//! v3, or compressed metadata) is written by iceberg-rust itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use iceberg::spec::{
    FormatVersion, MetadataLog, PartitionSpec, PartitionStatisticsFile, Schema, SnapshotLog, SnapshotRef,
    SnapshotReference, SortOrder, StatisticsFile, Summary, TableMetadata,
};
use serde::Serialize;
use uuid::Uuid;

use crate::error::{Error, Result};

/// Encoded arrays kept: beyond this many bytes in all the cache starts over.
const MAX_CACHED_BYTES: usize = 512 * 1024 * 1024;

/// Encoded elements are sealed into shared pieces of about this many bytes: a commit hands the
/// sealed pieces to the store as they are (the store writes them one after another), and copies only
/// the open rest. At 10,000 snapshots the array is some 6 MB; copying it into one buffer took as long
/// as writing it.
const SEAL_AT: usize = 1 << 20;

/// One table's `snapshots` array as encoded: its snapshots in document order, the elements
/// comma-separated without the brackets (sealed pieces, then the open rest), and where each element
/// ends.
#[derive(Debug)]
struct EncodedArray {
    snapshots: Vec<SnapshotRef>,
    sealed: Vec<Bytes>,
    sealed_len: usize,
    open: Vec<u8>,
    ends: Vec<usize>,
    seal_at: usize,
}

impl Default for EncodedArray {
    fn default() -> Self {
        Self::sealing_at(SEAL_AT)
    }
}

impl EncodedArray {
    fn sealing_at(seal_at: usize) -> Self {
        Self {
            snapshots: Vec::new(),
            sealed: Vec::new(),
            sealed_len: 0,
            open: Vec::new(),
            ends: Vec::new(),
            seal_at,
        }
    }

    fn len(&self) -> usize {
        self.sealed_len + self.open.len()
    }

    /// Keep the first `len` bytes (a sealed piece is cut without copying it).
    fn truncate(&mut self, len: usize) {
        if len >= self.sealed_len {
            self.open.truncate(len - self.sealed_len);
            return;
        }
        self.open.clear();
        let mut kept = 0;
        let mut pieces = Vec::new();
        for piece in self.sealed.drain(..) {
            if kept >= len {
                break;
            }
            let take = piece.len().min(len - kept);
            pieces.push(piece.slice(..take));
            kept += take;
        }
        self.sealed = pieces;
        self.sealed_len = kept;
    }

    /// Make this the array of `snapshots`: keep the longest prefix that holds the same snapshots
    /// (the same objects, or equal ones decoded again: never a different snapshot that reuses an
    /// id), encode the rest.
    fn update(&mut self, snapshots: &[&SnapshotRef]) -> Result<()> {
        let same = self
            .snapshots
            .iter()
            .zip(snapshots)
            .take_while(|(a, b)| Arc::ptr_eq(a, b) || ***a == ****b)
            .count();
        self.snapshots.truncate(same);
        self.ends.truncate(same);
        self.truncate(self.ends.last().copied().unwrap_or(0));
        for s in &snapshots[same..] {
            if self.len() > 0 {
                self.open.push(b',');
            }
            serde_json::to_writer(&mut self.open, &SnapshotJson::of(s))?;
            self.ends.push(self.len());
            self.snapshots.push((*s).clone());
            if self.open.len() >= self.seal_at {
                let piece = Bytes::from(std::mem::take(&mut self.open));
                self.sealed_len += piece.len();
                self.sealed.push(piece);
            }
        }
        Ok(())
    }

    /// The array's elements in pieces: the sealed ones shared, the open rest copied.
    fn pieces(&self) -> Vec<Bytes> {
        let mut pieces = self.sealed.clone();
        if !self.open.is_empty() {
            pieces.push(Bytes::copy_from_slice(&self.open));
        }
        pieces
    }
}

/// Encoded `snapshots` arrays by table.
#[derive(Debug, Default)]
pub(crate) struct SnapshotJsonCache {
    arrays: Mutex<HashMap<Uuid, EncodedArray>>,
}

impl SnapshotJsonCache {
    /// `table`'s `snapshots` array for `snapshots` (in document order), without its brackets, in
    /// pieces to be written one after another.
    fn array_pieces(&self, table: Uuid, snapshots: &[&SnapshotRef]) -> Result<Vec<Bytes>> {
        // Taken out while it is brought up to date, so that the lock is not held meanwhile; a
        // concurrent commit of the same table then starts an array of its own.
        let mut array = self
            .arrays
            .lock()
            .expect("snapshot cache poisoned")
            .remove(&table)
            .unwrap_or_default();
        array.update(snapshots)?;
        let pieces = array.pieces();
        let mut arrays = self.arrays.lock().expect("snapshot cache poisoned");
        if arrays.values().map(|a| a.len()).sum::<usize>() + array.len() > MAX_CACHED_BYTES {
            arrays.clear();
        }
        arrays.insert(table, array);
        Ok(pieces)
    }
}

/// A metadata JSON document in pieces, to be written one after another (see [`SEAL_AT`]).
#[derive(Debug)]
pub(crate) struct EncodedMetadata {
    parts: Vec<Bytes>,
}

impl EncodedMetadata {
    /// The pieces, in order.
    pub(crate) fn into_parts(self) -> Vec<Bytes> {
        self.parts
    }

    /// The whole document in one buffer.
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.parts.concat()
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
    // `snapshots` follows, from [`SnapshotJsonCache::array_pieces`].
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
) -> Result<EncodedMetadata> {
    if !encodes(metadata) {
        return Err(Error::internal(
            "metadata_json::encode called for metadata it does not encode",
        ));
    }
    let mut snapshots: Vec<&SnapshotRef> = metadata.snapshots().collect();
    snapshots.sort_by_key(|s| (s.sequence_number(), s.timestamp_ms(), s.snapshot_id()));
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
    };
    let mut head =
        Vec::with_capacity(64 * 1024 + metadata.history().len() * 64 + metadata.metadata_log().len() * 160);
    serde_json::to_writer(&mut head, &document)?;
    if snapshots.is_empty() {
        return Ok(EncodedMetadata {
            parts: vec![Bytes::from(head)],
        });
    }
    // The document is an object with fields (`format-version` at least): reopen it for one more.
    if head.pop() != Some(b'}') {
        return Err(Error::internal("metadata JSON does not end its object"));
    }
    head.extend_from_slice(b",\"snapshots\":[");
    let mut parts = vec![Bytes::from(head)];
    parts.extend(cache.array_pieces(metadata.uuid(), &snapshots)?);
    parts.push(Bytes::from_static(b"]}"));
    Ok(EncodedMetadata { parts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::{
        NestedField, Operation, PrimitiveType, Snapshot, SnapshotRetention, TableMetadataBuilder, Type,
        UnboundPartitionSpec, MAIN_BRANCH,
    };

    /// `table`'s array as `cache` writes it, with its brackets.
    fn array_of(cache: &SnapshotJsonCache, table: Uuid, snapshots: &[&SnapshotRef]) -> Vec<u8> {
        let mut out = b"[".to_vec();
        out.extend(cache.array_pieces(table, snapshots).unwrap().concat());
        out.push(b']');
        out
    }

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
        let ours = encode(&m, &refs_of(&m), &cache).unwrap().to_vec();
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
        assert_eq!(encode(&m, &refs_of(&m), &cache).unwrap().to_vec(), ours);
        assert_eq!(cache.arrays.lock().unwrap()[&m.uuid()].snapshots.len(), 3);
    }

    #[test]
    fn a_cached_snapshot_is_never_served_for_a_different_one_with_its_id() {
        let m = metadata();
        let cache = SnapshotJsonCache::default();
        encode(&m, &refs_of(&m), &cache).unwrap();
        // Another state of the table whose last snapshot differs though its id is the same (an
        // attempt that lost its race, retried): the array keeps the prefix and encodes the rest.
        let mut snapshots: Vec<SnapshotRef> = m.snapshots().cloned().collect();
        snapshots.sort_by_key(|s| s.sequence_number());
        let last = snapshots.pop().unwrap();
        let changed = Arc::new(snapshot(
            last.snapshot_id(),
            last.parent_snapshot_id(),
            last.sequence_number(),
            &[("changed", "yes")],
        ));
        snapshots.push(changed);
        let refs: Vec<&SnapshotRef> = snapshots.iter().collect();
        let out = array_of(&cache, m.uuid(), &refs);
        let array: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
        assert_eq!(array.len(), 3);
        assert_eq!(array[2]["summary"]["changed"], "yes", "{array:?}");
        assert!(array[..2].iter().all(|s| s["summary"].get("changed").is_none()));
        // A shorter history (expired snapshots) re-encodes from where it differs.
        let out = array_of(&cache, m.uuid(), &refs[1..]);
        let array: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
        let ids: Vec<i64> = array.iter().map(|s| s["snapshot-id"].as_i64().unwrap()).collect();
        assert_eq!(ids, refs[1..].iter().map(|s| s.snapshot_id()).collect::<Vec<_>>());
        // No snapshots, an empty array.
        assert_eq!(array_of(&cache, m.uuid(), &[]), b"[]");
    }

    #[test]
    fn sealed_pieces_hold_the_same_array_through_appends_changes_and_expiry() {
        let all: Vec<SnapshotRef> = (1..=50)
            .map(|i| {
                Arc::new(snapshot(
                    i,
                    (i > 1).then_some(i - 1),
                    i,
                    &[("n", i.to_string().as_str())],
                ))
            })
            .collect();
        let refs: Vec<&SnapshotRef> = all.iter().collect();
        let whole = |snapshots: &[&SnapshotRef]| {
            let mut a = EncodedArray::sealing_at(usize::MAX);
            a.update(snapshots).unwrap();
            a.pieces().concat()
        };
        // Each element is some 200 bytes: a piece is sealed every two elements.
        let mut array = EncodedArray::sealing_at(300);
        let mut check = |snapshots: &[&SnapshotRef], what: &str| {
            array.update(snapshots).unwrap();
            assert_eq!(array.pieces().concat(), whole(snapshots), "{what}");
            assert_eq!(array.len(), whole(snapshots).len(), "{what}");
            array.sealed.len()
        };
        assert!(check(&refs[..30], "the first 30") > 5, "pieces are sealed");
        check(&refs, "30 more appended");
        let mut changed = refs.clone();
        let other = Arc::new(snapshot(8, Some(7), 8, &[("changed", "yes")]));
        changed[7] = &other;
        check(&changed, "the 8th changed: cut inside a sealed piece");
        check(&refs[10..], "the first 10 expired");
        check(&refs[10..13], "all but 3 gone");
        check(&refs[10..], "and back");
        check(&[], "none");
    }
}
