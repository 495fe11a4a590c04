//! The one snapshot producer: given a base and the data files a change adds and removes, it writes
//! the new snapshot's manifests (new files `ADDED`; manifests that list a removed file rewritten
//! with it `DELETED` and the rest `EXISTING`; manifests without live entries dropped) and its
//! manifest list, and stages metadata that makes the snapshot the head of the branch. A branch that
//! does not exist yet starts from the current snapshot of `main`, as Iceberg's
//! `SnapshotUtil.latestSnapshot` does.

use futures::{StreamExt, TryStreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use iceberg::spec::{
    DataFile, FormatVersion, ManifestContentType, ManifestFile, ManifestWriter, ManifestWriterBuilder,
    Operation, Snapshot, SnapshotRef, SnapshotSummaryCollector, Summary, TableMetadata,
    TableMetadataBuildResult, MAIN_BRANCH,
};
use iceberg::TableUpdate;
use uuid::Uuid;

use super::merge::{merge_manifests, MergePolicy};
use super::CommitOptions;
use crate::error::{Error, Result};
use crate::table::manifest_list::ListHeader;
use crate::table::Table;

/// An attempt's staged metadata, and the snapshot it adds, if any.
#[derive(Debug)]
pub(crate) struct Staged {
    pub(crate) metadata: TableMetadata,
    pub(crate) snapshot_id: Option<i64>,
    /// Metadata files the metadata log no longer lists (`write.metadata.previous-versions-max`).
    pub(crate) expired_metadata: Vec<String>,
    /// The refs set and removed (iceberg-rust keeps the refs map private; the staged view derives
    /// its refs from its base's and these).
    pub(crate) ref_updates: Vec<TableUpdate>,
}

impl Staged {
    pub(crate) fn metadata_only(result: TableMetadataBuildResult) -> Result<Staged> {
        Ok(Staged {
            metadata: result.metadata,
            snapshot_id: None,
            ref_updates: result
                .changes
                .into_iter()
                .filter(|c| {
                    matches!(
                        c,
                        TableUpdate::SetSnapshotRef { .. } | TableUpdate::RemoveSnapshotRef { .. }
                    )
                })
                .collect(),
            expired_metadata: result
                .expired_metadata_logs
                .into_iter()
                .map(|m| m.metadata_file)
                .collect(),
        })
    }
}

/// What a snapshot does to the files of its parent.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotChange {
    pub(crate) operation: Operation,
    pub(crate) added: Vec<DataFile>,
    pub(crate) removed: Vec<DataFile>,
}

/// The snapshot a write to `branch` builds on: the branch head, or `main`'s head for a branch that
/// does not exist yet.
pub(crate) fn branch_head<'a>(metadata: &'a TableMetadata, branch: &str) -> Option<&'a SnapshotRef> {
    // A ref always points at a snapshot of the table: no snapshot means no such branch.
    metadata
        .snapshot_for_ref(branch)
        .or_else(|| metadata.current_snapshot())
}

const TOTALS: &[(&str, &str, &str)] = &[
    ("total-records", "added-records", "deleted-records"),
    ("total-files-size", "added-files-size", "removed-files-size"),
    ("total-data-files", "added-data-files", "deleted-data-files"),
    ("total-delete-files", "added-delete-files", "removed-delete-files"),
    (
        "total-position-deletes",
        "added-position-deletes",
        "removed-position-deletes",
    ),
    (
        "total-equality-deletes",
        "added-equality-deletes",
        "removed-equality-deletes",
    ),
];

/// Write the manifests and manifest list of a new snapshot on `branch` that applies `change` to
/// `base`, and stage metadata that makes it the branch head. Every file written is recorded in
/// `written` (deleted again when the attempt does not land).
pub(crate) async fn produce(
    base: &Table,
    branch: &str,
    change: SnapshotChange,
    options: &CommitOptions,
    written: &mut Vec<String>,
) -> Result<Staged> {
    let SnapshotChange {
        operation,
        added,
        removed,
    } = change;
    let metadata = base.metadata();
    if metadata.format_version() == FormatVersion::V1 {
        return Err(Error::invalid(format!(
            "table {} is Iceberg v1; floe writes v2 tables",
            base.name()
        )));
    }
    if branch != MAIN_BRANCH
        && metadata.snapshot_for_ref(branch).is_some()
        && base.find_ref(branch).is_some_and(|r| r.kind == "tag")
    {
        return Err(Error::invalid(format!(
            "{branch:?} is a tag of {}: commits go to branches",
            base.name()
        )));
    }
    let storage = base.storage();
    let file_io = storage.file_io();
    let parent = branch_head(metadata, branch).cloned();
    let snapshot_id = loop {
        let (a, b) = Uuid::new_v4().as_u64_pair();
        let id = ((a ^ b) & (i64::MAX as u64)) as i64;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            break id;
        }
    };
    let sequence_number = metadata.next_sequence_number();
    let commit_uuid = Uuid::new_v4();
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().clone();
    let mut outputs = ManifestOutputs {
        directory: format!("{}/metadata", metadata.location()),
        commit_uuid,
        counter: 0,
        snapshot_id,
        schema: schema.clone(),
        file_io: file_io.clone(),
    };

    let mut summary = SnapshotSummaryCollector::default();
    summary.set_partition_summary_limit(
        metadata
            .properties()
            .get("write.summary.partition-limit")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    for f in &added {
        summary.add_file(f, schema.clone(), spec.clone());
    }

    // Carry the parent's manifests forward; rewrite those that list a removed file; drop those
    // without a live entry (their DELETED entries belong to the snapshot that wrote them).
    let removed_paths: HashSet<&str> = removed.iter().map(|f| f.file_path()).collect();
    let mut manifests: Vec<ManifestFile> = Vec::new();
    let mut found_removed: HashSet<String> = HashSet::new();
    if let Some(parent) = &parent {
        for mf in base.manifests(parent).await?.iter().cloned() {
            if !has_live_entries(&mf) {
                continue;
            }
            if removed_paths.is_empty() || mf.content != ManifestContentType::Data {
                manifests.push(mf);
                continue;
            }
            let manifest = base.manifest(&mf).await?;
            let hits = manifest
                .entries()
                .iter()
                .any(|e| e.is_alive() && removed_paths.contains(e.data_file().file_path()));
            if !hits {
                manifests.push(mf);
                continue;
            }
            let mf_spec = metadata
                .partition_spec_by_id(mf.partition_spec_id)
                .cloned()
                .ok_or_else(|| Error::internal(format!("unknown partition spec {}", mf.partition_spec_id)))?;
            let mut writer = outputs.writer(written, mf_spec.as_ref(), ManifestContentType::Data)?;
            for e in manifest.entries() {
                if !e.is_alive() {
                    continue;
                }
                let seq = e
                    .sequence_number()
                    .ok_or_else(|| Error::internal("manifest entry without sequence number"))?;
                let file_seq = e.file_sequence_number.or(Some(seq));
                if removed_paths.contains(e.data_file().file_path()) {
                    found_removed.insert(e.data_file().file_path().to_string());
                    summary.remove_file(e.data_file(), schema.clone(), mf_spec.clone());
                    writer.add_delete_file(e.data_file().clone(), seq, file_seq)?;
                } else {
                    let added_by = e.snapshot_id().unwrap_or(snapshot_id);
                    writer.add_existing_file(e.data_file().clone(), added_by, seq, file_seq)?;
                }
            }
            manifests.push(writer.write_manifest_file().await?);
        }
    }
    check_carried(base, &manifests).await?;
    if found_removed.len() != removed_paths.len() {
        let missing = removed_paths
            .iter()
            .find(|p| !found_removed.contains(**p))
            .map(|p| p.to_string())
            .unwrap_or_default();
        return Err(Error::conflict(
            parent.as_ref().map(|p| p.snapshot_id()),
            format!(
                "{}: file {missing} that this change removes is no longer live on {branch}",
                base.name()
            ),
        ));
    }
    if !added.is_empty() {
        let mut writer = outputs.writer(written, spec.as_ref(), ManifestContentType::Data)?;
        for f in added {
            writer.add_file(f, sequence_number)?;
        }
        // New manifests first, as Java orders them.
        manifests.insert(0, writer.write_manifest_file().await?);
    }
    // Assign the new manifests' sequence numbers as the list writer would, so that merging reads
    // their entries right and the list this process remembers is the list it wrote.
    for m in manifests.iter_mut() {
        if m.sequence_number == iceberg::spec::UNASSIGNED_SEQUENCE_NUMBER {
            m.sequence_number = sequence_number;
        }
        if m.min_sequence_number == iceberg::spec::UNASSIGNED_SEQUENCE_NUMBER {
            m.min_sequence_number = sequence_number;
        }
    }
    let policy = MergePolicy::of(metadata);
    let manifests = merge_manifests(base, manifests, &policy, &mut outputs, sequence_number, written).await?;
    crate::faults::point("commit.after-manifests");

    let list_path = format!(
        "{}/metadata/snap-{snapshot_id}-1-{commit_uuid}.avro",
        metadata.location()
    );
    written.push(list_path.clone());
    let header = ListHeader {
        snapshot_id,
        parent_snapshot_id: parent.as_ref().map(|p| p.snapshot_id()),
        sequence_number,
    };
    let list = base.encode_manifest_list(header, &manifests).await?;
    storage.write(&list_path, list.into()).await?;
    let remembered = Arc::new(manifests);
    // Every manifest of the new list is sound: checked above, or just written by this process.
    remember_sound(remembered.iter().map(|m| m.manifest_path.clone()));
    base.remember_manifest_list(&list_path, remembered);
    crate::faults::point("commit.after-manifest-list");

    let mut properties: HashMap<String, String> = options.properties.clone().into_iter().collect();
    properties.extend(options.lineage.to_properties());
    let computed = summary.build();
    for (total, plus, minus) in TOTALS {
        let previous = match &parent {
            None => Some(0u64),
            Some(p) => p
                .summary()
                .additional_properties
                .get(*total)
                .and_then(|v| v.parse::<u64>().ok()),
        };
        if let Some(prev) = previous {
            let add = computed
                .get(*plus)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let sub = computed
                .get(*minus)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            properties.insert(total.to_string(), (prev + add).saturating_sub(sub).to_string());
        }
    }
    properties.extend(computed);

    let timestamp_ms = chrono::Utc::now()
        .timestamp_millis()
        .max(metadata.last_updated_ms());
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent.as_ref().map(|p| p.snapshot_id()))
        .with_sequence_number(sequence_number)
        .with_timestamp_ms(timestamp_ms)
        .with_manifest_list(list_path)
        .with_summary(Summary {
            operation,
            additional_properties: properties,
        })
        .with_schema_id(metadata.current_schema_id())
        .build();
    let result = base
        .metadata_builder()
        .set_branch_snapshot(snapshot, branch)?
        .build()?;
    let mut staged = Staged::metadata_only(result)?;
    staged.snapshot_id = Some(snapshot_id);
    Ok(staged)
}

/// Where an attempt writes its manifests: `<uuid>-m<N>.avro` in the table's metadata folder.
pub(crate) struct ManifestOutputs {
    directory: String,
    commit_uuid: Uuid,
    counter: usize,
    snapshot_id: i64,
    schema: iceberg::spec::SchemaRef,
    file_io: iceberg::io::FileIO,
}

impl ManifestOutputs {
    /// A v2 manifest writer of this snapshot at a new path, recorded as written by this attempt.
    pub(crate) fn writer(
        &mut self,
        written: &mut Vec<String>,
        spec: &iceberg::spec::PartitionSpec,
        content: ManifestContentType,
    ) -> Result<ManifestWriter> {
        let path = format!("{}/{}-m{}.avro", self.directory, self.commit_uuid, self.counter);
        self.counter += 1;
        written.push(path.clone());
        let builder = ManifestWriterBuilder::new(
            self.file_io.new_output(&path)?,
            Some(self.snapshot_id),
            self.schema.clone(),
            spec.clone(),
        );
        Ok(match content {
            ManifestContentType::Data => builder.build_v2_data(),
            ManifestContentType::Deletes => builder.build_v2_deletes(),
        })
    }

    pub(crate) fn snapshot_id(&self) -> i64 {
        self.snapshot_id
    }
}

/// Whether a manifest lists any `ADDED` or `EXISTING` entry (a manifest list written without the
/// counts is assumed to).
fn has_live_entries(mf: &ManifestFile) -> bool {
    match (mf.added_files_count, mf.existing_files_count) {
        (Some(a), Some(e)) => a + e > 0,
        _ => true,
    }
}

/// Manifests a process has already found sound (manifests never change once written), so that each
/// is checked once per process rather than at every commit.
fn sound_manifests() -> &'static std::sync::Mutex<HashSet<String>> {
    static SOUND: std::sync::OnceLock<std::sync::Mutex<HashSet<String>>> = std::sync::OnceLock::new();
    SOUND.get_or_init(Default::default)
}

/// Refuse to carry a broken manifest into a new snapshot: every manifest this commit carries must
/// exist, have the length the manifest list records, and start with Avro's magic bytes. (Without
/// this, a commit on top of a manifest replaced by garbage would succeed and keep the damage.)
async fn check_carried(base: &Table, manifests: &[ManifestFile]) -> Result<()> {
    let unchecked: Vec<(String, u64)> = {
        let sound = sound_manifests().lock().expect("manifest cache");
        manifests
            .iter()
            .filter(|m| !sound.contains(&m.manifest_path))
            .map(|m| (m.manifest_path.clone(), m.manifest_length as u64))
            .collect()
    };
    let table = base.name().to_string();
    let checks = unchecked.into_iter().map(|(path, length)| {
        let storage = base.storage().clone();
        let table = table.clone();
        async move { check_manifest(&storage, &table, path, length).await }
    });
    let checked: Vec<String> = futures::stream::iter(checks)
        .buffer_unordered(16)
        .try_collect()
        .await?;
    remember_sound(checked);
    Ok(())
}

/// Add `paths` to the manifests this process knows to be sound.
fn remember_sound(paths: impl IntoIterator<Item = String>) {
    let mut sound = sound_manifests().lock().expect("manifest cache");
    if sound.len() > 1_000_000 {
        sound.clear();
    }
    sound.extend(paths);
}

/// One manifest of [`check_carried`]: its path when it is sound.
async fn check_manifest(
    storage: &crate::storage::ObjectStorage,
    table: &str,
    path: String,
    length: u64,
) -> Result<String> {
    const AVRO_MAGIC: &[u8] = b"Obj\x01";
    let broken = |why: String| {
        Error::new(
            crate::error::ErrorKind::Data,
            format!(
                "manifest {path} of {table} is {why}: refusing to commit on top of broken metadata \
                 (restore the file, or roll the table back to a snapshot that does not use it)"
            ),
        )
    };
    let size = storage
        .size(&path)
        .await
        .map_err(|e| broken(format!("unreadable ({e})")))?;
    if size != length {
        return Err(broken(format!(
            "{size} bytes long where the manifest list records {length}"
        )));
    }
    let head = storage
        .read_range(&path, 0..AVRO_MAGIC.len() as u64)
        .await
        .map_err(|e| broken(format!("unreadable ({e})")))?;
    if head.as_ref() != AVRO_MAGIC {
        return Err(broken("not an Avro file".into()));
    }
    Ok(path)
}
