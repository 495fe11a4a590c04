//! Manifest merging, as Iceberg Java's `ManifestMergeManager` does it, so that a table committed to
//! every day keeps a bounded manifest list. On by default, with Java's properties and defaults:
//! `commit.manifest-merge.enabled` (true), `commit.manifest.min-count-to-merge` (100),
//! `commit.manifest.target-size-bytes` (8 MiB). Data and delete manifests merge apart, and each
//! partition spec on its own. Manifests are packed into bins of the target size from the oldest end;
//! a bin of one stays; the bin holding the snapshot's newest manifest is merged only once it holds
//! `min-count-to-merge` manifests (so small commits stay cheap); every other bin of two or more is
//! merged into one manifest.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use iceberg::spec::{Manifest, ManifestContentType, ManifestFile, ManifestStatus, TableMetadata};

use super::producer::ManifestOutputs;
use crate::error::{Error, Result};
use crate::table::Table;

/// The merge settings of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MergePolicy {
    pub(crate) enabled: bool,
    pub(crate) min_count: usize,
    pub(crate) target_size: u64,
}

impl MergePolicy {
    /// From the table's properties, with Iceberg Java's defaults.
    pub(crate) fn of(metadata: &TableMetadata) -> Self {
        let props = metadata.properties();
        let get = |k: &str| props.get(k).map(|v| v.trim().to_string());
        Self {
            enabled: get("commit.manifest-merge.enabled").is_none_or(|v| v.eq_ignore_ascii_case("true")),
            min_count: get("commit.manifest.min-count-to-merge")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100)
                .max(1),
            target_size: get("commit.manifest.target-size-bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(8 * 1024 * 1024),
        }
    }
}

/// Merge `manifests` (the new snapshot's list, its own new manifests first) by `policy`.
pub(crate) async fn merge_manifests(
    base: &Table,
    manifests: Vec<ManifestFile>,
    policy: &MergePolicy,
    outputs: &mut ManifestOutputs,
    sequence_number: i64,
    written: &mut Vec<String>,
) -> Result<Vec<ManifestFile>> {
    if !policy.enabled || manifests.len() < 2 {
        return Ok(manifests);
    }
    let (data, deletes): (Vec<ManifestFile>, Vec<ManifestFile>) = manifests
        .into_iter()
        .partition(|m| m.content == ManifestContentType::Data);
    let mut out = merge_content(base, data, policy, outputs, sequence_number, written).await?;
    out.extend(merge_content(base, deletes, policy, outputs, sequence_number, written).await?);
    Ok(out)
}

async fn merge_content(
    base: &Table,
    manifests: Vec<ManifestFile>,
    policy: &MergePolicy,
    outputs: &mut ManifestOutputs,
    sequence_number: i64,
    written: &mut Vec<String>,
) -> Result<Vec<ManifestFile>> {
    let Some(first) = manifests.first().map(|m| m.manifest_path.clone()) else {
        return Ok(manifests);
    };
    // Groups by spec, newest spec first; order kept within a group.
    let mut groups: BTreeMap<std::cmp::Reverse<i32>, Vec<ManifestFile>> = BTreeMap::new();
    for m in manifests {
        groups
            .entry(std::cmp::Reverse(m.partition_spec_id))
            .or_default()
            .push(m);
    }
    let mut out = Vec::new();
    for (_, group) in groups {
        for bin in pack_end(group, policy.target_size) {
            let holds_first = bin.iter().any(|m| m.manifest_path == first);
            if bin.len() == 1 || (holds_first && bin.len() < policy.min_count) {
                out.extend(bin);
            } else {
                out.push(merge_bin(base, &bin, outputs, sequence_number, written).await?);
            }
        }
    }
    Ok(out)
}

/// Contiguous greedy bins of at most `target` bytes, packed from the oldest (last) manifest, so the
/// under-filled bin is the newest one; a manifest over the target is a bin of its own.
fn pack_end(items: Vec<ManifestFile>, target: u64) -> Vec<Vec<ManifestFile>> {
    let mut bins: Vec<Vec<ManifestFile>> = Vec::new();
    let mut current: Vec<ManifestFile> = Vec::new();
    let mut weight = 0u64;
    for m in items.into_iter().rev() {
        let w = m.manifest_length.max(0) as u64;
        if !current.is_empty() && weight + w <= target {
            weight += w;
            current.push(m);
        } else {
            if !current.is_empty() {
                bins.push(std::mem::take(&mut current));
            }
            weight = w;
            current.push(m);
        }
    }
    if !current.is_empty() {
        bins.push(current);
    }
    bins.reverse();
    for b in bins.iter_mut() {
        b.reverse();
    }
    bins
}

/// One manifest holding the entries of `bin`: this snapshot's additions and deletions as they are,
/// earlier snapshots' live entries as `EXISTING` (their snapshot and sequence numbers kept), and
/// earlier snapshots' `DELETED` entries dropped.
async fn merge_bin(
    base: &Table,
    bin: &[ManifestFile],
    outputs: &mut ManifestOutputs,
    sequence_number: i64,
    written: &mut Vec<String>,
) -> Result<ManifestFile> {
    let metadata = base.metadata();
    let spec_id = bin[0].partition_spec_id;
    let spec = metadata
        .partition_spec_by_id(spec_id)
        .cloned()
        .ok_or_else(|| Error::internal(format!("unknown partition spec {spec_id}")))?;
    let this = outputs.snapshot_id();
    // Read concurrently (a merge of 100 manifests on S3 is 100 GETs), then write in order.
    let manifests: Vec<Arc<Manifest>> = futures::stream::iter(bin.to_vec())
        .map(|mf| async move { base.manifest(&mf).await })
        .buffered(16)
        .try_collect()
        .await?;
    let mut writer = outputs.writer(written, spec.as_ref(), bin[0].content)?;
    for manifest in &manifests {
        for e in manifest.entries() {
            let seq = e.sequence_number().unwrap_or(sequence_number);
            let file_seq = e.file_sequence_number.or(Some(seq));
            let file = e.data_file().clone();
            match e.status() {
                ManifestStatus::Deleted if e.snapshot_id() == Some(this) => {
                    writer.add_delete_file(file, seq, file_seq)?
                }
                ManifestStatus::Deleted => {}
                ManifestStatus::Added if e.snapshot_id() == Some(this) => writer.add_file(file, seq)?,
                _ => writer.add_existing_file(file, e.snapshot_id().unwrap_or(this), seq, file_seq)?,
            }
        }
    }
    let mut merged = writer.write_manifest_file().await?;
    if merged.sequence_number == iceberg::spec::UNASSIGNED_SEQUENCE_NUMBER {
        merged.sequence_number = sequence_number;
    }
    if merged.min_sequence_number == iceberg::spec::UNASSIGNED_SEQUENCE_NUMBER {
        merged.min_sequence_number = sequence_number;
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(path: &str, length: i64) -> ManifestFile {
        ManifestFile {
            manifest_path: path.to_string(),
            manifest_length: length,
            partition_spec_id: 0,
            content: ManifestContentType::Data,
            sequence_number: 1,
            min_sequence_number: 1,
            added_snapshot_id: 1,
            added_files_count: Some(1),
            existing_files_count: Some(0),
            deleted_files_count: Some(0),
            added_rows_count: Some(1),
            existing_rows_count: Some(0),
            deleted_rows_count: Some(0),
            partitions: None,
            key_metadata: None,
            first_row_id: None,
        }
    }

    #[test]
    fn packs_from_the_oldest_end() {
        let items: Vec<ManifestFile> = (0..5).map(|i| manifest(&format!("m{i}"), 4)).collect();
        let bins = pack_end(items, 8);
        let names: Vec<Vec<String>> = bins
            .iter()
            .map(|b| b.iter().map(|m| m.manifest_path.clone()).collect())
            .collect();
        // The newest (m0) is alone in the under-filled bin; order is kept.
        assert_eq!(names, vec![vec!["m0"], vec!["m1", "m2"], vec!["m3", "m4"]]);
        let big = vec![manifest("a", 20), manifest("b", 1), manifest("c", 1)];
        let bins = pack_end(big, 8);
        assert_eq!(bins.len(), 2);
        assert_eq!(bins[0][0].manifest_path, "a");
    }
}
