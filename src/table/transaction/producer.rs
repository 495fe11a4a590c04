//! The one snapshot producer: given a base and the data files a change adds and removes, it writes
//! the new snapshot's manifests (new files `ADDED`; manifests that list a removed file rewritten
//! with it `DELETED` and the rest `EXISTING`; manifests without live entries dropped) and its
//! manifest list, and stages metadata that makes the snapshot the head of the branch. A branch that
//! does not exist yet starts from the current snapshot of `main`, as Iceberg's
//! `SnapshotUtil.latestSnapshot` does.

use futures::{StreamExt, TryStreamExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use iceberg::spec::{
    DataContentType, DataFile, FormatVersion, Manifest, ManifestContentType, ManifestFile, ManifestWriter,
    ManifestWriterBuilder, Operation, Snapshot, SnapshotRef, SnapshotSummaryCollector, Summary,
    TableMetadata, TableMetadataBuildResult, MAIN_BRANCH,
};
use iceberg::TableUpdate;
use uuid::Uuid;

use super::merge::{merge_manifests, MergePolicy};
use super::WriteOptions;
use crate::error::{Error, Result};
use crate::table::deletes::index::referenced_data_file;
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
    /// Data files added, and the partition spec they were written with (the default spec of the
    /// table the writer was given: a spec change may have landed since).
    pub(crate) added: Vec<(DataFile, i32)>,
    /// Delete files added, each with the partition spec of the data file it applies to.
    pub(crate) added_deletes: Vec<(DataFile, i32)>,
    /// Data and delete files removed, by path. Position delete files that name exactly one removed
    /// data file are removed with it: a commit never leaves dangling deletes.
    pub(crate) removed: Vec<DataFile>,
}

impl SnapshotChange {
    /// A change that adds data files written with one partition spec, and removes data files.
    pub(crate) fn data(operation: Operation, added: (Vec<DataFile>, i32), removed: Vec<DataFile>) -> Self {
        let (files, spec_id) = added;
        Self {
            operation,
            added: files.into_iter().map(|f| (f, spec_id)).collect(),
            added_deletes: Vec::new(),
            removed,
        }
    }
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

/// Write the manifests and manifest list of a new snapshot on `options.branch` that applies
/// `change` to `base`, and stage metadata that makes it the branch head. Every file written is
/// recorded in `written` (deleted again when the attempt does not land).
pub(crate) async fn produce(
    base: &Table,
    change: SnapshotChange,
    options: &WriteOptions,
    written: &mut Vec<String>,
) -> Result<Staged> {
    let branch = options.branch.as_str();
    check_writable(base, branch)?;
    let SnapshotChange {
        operation,
        added,
        added_deletes,
        removed,
    } = change;
    let mut producer = SnapshotProducer::new(base, branch);
    let mut manifests = producer.carry_manifests(&removed, written).await?;
    check_carried(base, &manifests).await?;
    // New manifests first, as Java orders them (merging keeps data manifests before deletes).
    let mut new = producer
        .write_added_manifests(added, ManifestContentType::Data, written)
        .await?;
    new.extend(
        producer
            .write_added_manifests(added_deletes, ManifestContentType::Deletes, written)
            .await?,
    );
    manifests.splice(0..0, new);
    let manifests = producer.merge(manifests, written).await?;
    crate::faults::point("commit.after-manifests");
    let list_path = producer.write_manifest_list(manifests, written).await?;
    crate::faults::point("commit.after-manifest-list");
    let summary = producer.summary(operation, options);
    producer.stage(list_path, summary)
}

/// Refuse a commit to a table floe does not write (Iceberg v1) or to a tag.
fn check_writable(base: &Table, branch: &str) -> Result<()> {
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
    Ok(())
}

/// One new snapshot being built on a branch of `base`: its id, sequence number and parent, where
/// its manifests go, and the summary of the files it adds and removes.
struct SnapshotProducer<'a> {
    base: &'a Table,
    branch: &'a str,
    parent: Option<SnapshotRef>,
    snapshot_id: i64,
    sequence_number: i64,
    commit_uuid: Uuid,
    outputs: ManifestOutputs,
    summary: SnapshotSummaryCollector,
}

impl<'a> SnapshotProducer<'a> {
    fn new(base: &'a Table, branch: &'a str) -> Self {
        let metadata = base.metadata();
        let snapshot_id = loop {
            let (a, b) = Uuid::new_v4().as_u64_pair();
            let id = ((a ^ b) & (i64::MAX as u64)) as i64;
            if id != 0 && metadata.snapshot_by_id(id).is_none() {
                break id;
            }
        };
        let commit_uuid = Uuid::new_v4();
        let mut summary = SnapshotSummaryCollector::default();
        summary.set_partition_summary_limit(
            metadata
                .properties()
                .get("write.summary.partition-limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        );
        Self {
            base,
            branch,
            parent: branch_head(metadata, branch).cloned(),
            snapshot_id,
            sequence_number: metadata.next_sequence_number(),
            commit_uuid,
            outputs: ManifestOutputs {
                directory: format!("{}/metadata", metadata.location()),
                commit_uuid,
                counter: 0,
                snapshot_id,
                schema: metadata.current_schema().clone(),
                file_io: base.storage().file_io(),
            },
            summary,
        }
    }

    /// The parent's manifests, carried forward: those that list a removed file (or a position delete
    /// file naming only a removed data file) are rewritten with it `DELETED` (and the rest
    /// `EXISTING`), those without a live entry are dropped (their `DELETED` entries belong to the
    /// snapshot that wrote them). A removed file that is no longer live is a conflict.
    async fn carry_manifests(
        &mut self,
        removed: &[DataFile],
        written: &mut Vec<String>,
    ) -> Result<Vec<ManifestFile>> {
        let Some(parent) = self.parent.clone() else {
            return self.check_all_removed(removed, &HashSet::new());
        };
        let removal = Removal {
            paths: removed.iter().map(|f| f.file_path()).collect(),
            data: removed
                .iter()
                .filter(|f| f.content_type() == DataContentType::Data)
                .map(|f| f.file_path())
                .collect(),
        };
        let mut manifests: Vec<ManifestFile> = Vec::new();
        let mut found: HashSet<String> = HashSet::new();
        for mf in self.base.manifests(&parent).await?.iter() {
            if !has_live_entries(mf) {
                continue;
            }
            let may_hit = match mf.content {
                ManifestContentType::Data => !removal.data.is_empty(),
                ManifestContentType::Deletes => !removal.paths.is_empty(),
            };
            if !may_hit {
                manifests.push(mf.clone());
                continue;
            }
            let manifest = self.base.manifest(mf).await?;
            if !manifest
                .entries()
                .iter()
                .any(|e| e.is_alive() && removal.hits(e.data_file()))
            {
                manifests.push(mf.clone());
                continue;
            }
            manifests.push(
                self.rewrite_without(mf, &manifest, &removal, &mut found, written)
                    .await?,
            );
        }
        self.check_all_removed(removed, &found)?;
        Ok(manifests)
    }

    /// `mf` rewritten with the entries `removal` hits marked `DELETED`.
    async fn rewrite_without(
        &mut self,
        mf: &ManifestFile,
        manifest: &Manifest,
        removal: &Removal<'_>,
        found: &mut HashSet<String>,
        written: &mut Vec<String>,
    ) -> Result<ManifestFile> {
        let spec = self
            .base
            .metadata()
            .partition_spec_by_id(mf.partition_spec_id)
            .cloned()
            .ok_or_else(|| Error::internal(format!("unknown partition spec {}", mf.partition_spec_id)))?;
        let schema = self.outputs.schema.clone();
        let mut writer = self.outputs.writer(written, spec.as_ref(), mf.content)?;
        for e in manifest.entries() {
            if !e.is_alive() {
                continue;
            }
            let seq = e
                .sequence_number()
                .ok_or_else(|| Error::internal("manifest entry without sequence number"))?;
            let file_seq = e.file_sequence_number.or(Some(seq));
            if removal.hits(e.data_file()) {
                found.insert(e.data_file().file_path().to_string());
                self.summary
                    .remove_file(e.data_file(), schema.clone(), spec.clone());
                writer.add_delete_file(e.data_file().clone(), seq, file_seq)?;
            } else {
                let added_by = e.snapshot_id().unwrap_or(self.snapshot_id);
                writer.add_existing_file(e.data_file().clone(), added_by, seq, file_seq)?;
            }
        }
        Ok(writer.write_manifest_file().await?)
    }

    /// Every removed file was found live on the branch, else the change lost a race.
    fn check_all_removed(&self, removed: &[DataFile], found: &HashSet<String>) -> Result<Vec<ManifestFile>> {
        match removed.iter().find(|f| !found.contains(f.file_path())) {
            None => Ok(Vec::new()),
            Some(missing) => Err(Error::conflict(
                self.parent.as_ref().map(|p| p.snapshot_id()),
                format!(
                    "{}: file {} that this change removes is no longer live on {}",
                    self.base.name(),
                    missing.file_path(),
                    self.branch
                ),
            )),
        }
    }

    /// One manifest per partition spec of the files of one content this snapshot adds (none when it
    /// adds none), the default spec's first. Each file keeps the spec it was written with: a data
    /// file written before a spec change landed, as Java's appends do, and a delete file the spec of
    /// the data file it applies to.
    async fn write_added_manifests(
        &mut self,
        added: Vec<(DataFile, i32)>,
        content: ManifestContentType,
        written: &mut Vec<String>,
    ) -> Result<Vec<ManifestFile>> {
        let mut by_spec: BTreeMap<i32, Vec<DataFile>> = BTreeMap::new();
        for (f, spec_id) in added {
            by_spec.entry(spec_id).or_default().push(f);
        }
        let default = self.base.metadata().default_partition_spec_id();
        let mut specs: Vec<(i32, Vec<DataFile>)> = by_spec.into_iter().collect();
        specs.sort_by_key(|(id, _)| *id != default);
        let schema = self.outputs.schema.clone();
        let mut manifests = Vec::with_capacity(specs.len());
        for (spec_id, files) in specs {
            let spec = self
                .base
                .metadata()
                .partition_spec_by_id(spec_id)
                .cloned()
                .ok_or_else(|| Error::internal(format!("unknown partition spec {spec_id}")))?;
            let mut writer = self.outputs.writer(written, spec.as_ref(), content)?;
            for f in files {
                self.summary.add_file(&f, schema.clone(), spec.clone());
                writer.add_file(f, self.sequence_number)?;
            }
            manifests.push(writer.write_manifest_file().await?);
        }
        Ok(manifests)
    }

    /// Merge the manifests by the table's policy (see [`merge_manifests`]). The new manifests'
    /// sequence numbers are assigned first, as the list writer would, so that merging reads their
    /// entries right and the list this process remembers is the list it wrote.
    async fn merge(
        &mut self,
        mut manifests: Vec<ManifestFile>,
        written: &mut Vec<String>,
    ) -> Result<Vec<ManifestFile>> {
        for m in manifests.iter_mut() {
            if m.sequence_number == iceberg::spec::UNASSIGNED_SEQUENCE_NUMBER {
                m.sequence_number = self.sequence_number;
            }
            if m.min_sequence_number == iceberg::spec::UNASSIGNED_SEQUENCE_NUMBER {
                m.min_sequence_number = self.sequence_number;
            }
        }
        let policy = MergePolicy::of(self.base.metadata());
        merge_manifests(
            self.base,
            manifests,
            &policy,
            &mut self.outputs,
            self.sequence_number,
            written,
        )
        .await
    }

    /// Write the manifest list; the process remembers it (and that its manifests are sound).
    async fn write_manifest_list(
        &self,
        manifests: Vec<ManifestFile>,
        written: &mut Vec<String>,
    ) -> Result<String> {
        let list_path = format!(
            "{}/metadata/snap-{}-1-{}.avro",
            self.base.metadata().location(),
            self.snapshot_id,
            self.commit_uuid
        );
        written.push(list_path.clone());
        let header = ListHeader {
            snapshot_id: self.snapshot_id,
            parent_snapshot_id: self.parent.as_ref().map(|p| p.snapshot_id()),
            sequence_number: self.sequence_number,
        };
        let list = self.base.encode_manifest_list(header, &manifests).await?;
        self.base.storage().write(&list_path, list.into()).await?;
        let remembered = Arc::new(manifests);
        // Every manifest of the new list is sound: checked, or just written by this process.
        remember_sound(remembered.iter().map(|m| m.manifest_path.clone()));
        self.base.remember_manifest_list(&list_path, remembered);
        Ok(list_path)
    }

    /// The snapshot summary: the caller's properties and lineage, what this snapshot added and
    /// removed, and the running totals carried from the parent.
    fn summary(&self, operation: Operation, options: &WriteOptions) -> Summary {
        let mut properties: HashMap<String, String> = options.properties.clone().into_iter().collect();
        properties.extend(options.lineage.to_properties());
        let computed = self.summary.build();
        let count = |key: &str| computed.get(key).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        for (total, plus, minus) in TOTALS {
            let previous = match &self.parent {
                None => Some(0u64),
                Some(p) => p
                    .summary()
                    .additional_properties
                    .get(*total)
                    .and_then(|v| v.parse::<u64>().ok()),
            };
            if let Some(prev) = previous {
                let total_now = (prev + count(plus)).saturating_sub(count(minus));
                properties.insert(total.to_string(), total_now.to_string());
            }
        }
        properties.extend(computed);
        Summary {
            operation,
            additional_properties: properties,
        }
    }

    /// Stage metadata that makes the snapshot the head of the branch.
    fn stage(self, list_path: String, summary: Summary) -> Result<Staged> {
        let metadata = self.base.metadata();
        let timestamp_ms = chrono::Utc::now()
            .timestamp_millis()
            .max(metadata.last_updated_ms());
        let snapshot = Snapshot::builder()
            .with_snapshot_id(self.snapshot_id)
            .with_parent_snapshot_id(self.parent.as_ref().map(|p| p.snapshot_id()))
            .with_sequence_number(self.sequence_number)
            .with_timestamp_ms(timestamp_ms)
            .with_manifest_list(list_path)
            .with_summary(summary)
            .with_schema_id(metadata.current_schema_id())
            .build();
        let result = self
            .base
            .metadata_builder()
            .set_branch_snapshot(snapshot, self.branch)?
            .build()?;
        let mut staged = Staged::metadata_only(result)?;
        staged.snapshot_id = Some(self.snapshot_id);
        Ok(staged)
    }
}

/// The files a change removes: data and delete files by path, and the position delete files that
/// name exactly one removed data file.
struct Removal<'a> {
    paths: HashSet<&'a str>,
    data: HashSet<&'a str>,
}

impl Removal<'_> {
    fn hits(&self, file: &DataFile) -> bool {
        self.paths.contains(file.file_path())
            || (!self.data.is_empty()
                && referenced_data_file(file).is_some_and(|p| self.data.contains(p.as_str())))
    }
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
