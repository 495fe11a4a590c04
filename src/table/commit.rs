//! The one commit path. Every change to a table (data, schema, refs) is applied to a freshly loaded
//! base, written out (manifests, manifest list, metadata JSON), and made current by a compare-and-swap
//! of the catalog's `metadata_location`. A lost race reloads and re-applies on the new base, with
//! bounded, jittered exponential backoff. When the swap's outcome is unknown, the next attempt first
//! looks for the earlier attempt in the table's history, and files of an attempt that may have landed
//! are never deleted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iceberg::spec::{
    DataFile, FormatVersion, ManifestContentType, ManifestFile, ManifestListWriter, ManifestWriterBuilder,
    NestedField, Operation, Schema, Snapshot, SnapshotReference, SnapshotRetention, SnapshotSummaryCollector,
    Summary, TableMetadata, MAIN_BRANCH,
};
use iceberg::MetadataLocation;
use rand::Rng;
use serde::Serialize;
use uuid::Uuid;

use super::filter::{copy_on_write, RowFilter};
use super::Table;
use crate::catalog::{SwapOutcome, TableName};
use crate::error::{Error, ErrorKind, Result};
use crate::lakehouse::Floe;

/// Where a write comes from: recorded in the snapshot summary as `floe.*` properties.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Lineage {
    /// `floe.run-id`.
    pub run_id: Option<String>,
    /// `floe.stage`.
    pub stage: Option<String>,
    /// `floe.engine`.
    pub engine: Option<String>,
    /// `floe.input.<table>`: the snapshot id of each input the write read.
    pub inputs: BTreeMap<String, i64>,
}

impl Lineage {
    fn to_properties(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(v) = &self.run_id {
            out.push(("floe.run-id".to_string(), v.clone()));
        }
        if let Some(v) = &self.stage {
            out.push(("floe.stage".to_string(), v.clone()));
        }
        if let Some(v) = &self.engine {
            out.push(("floe.engine".to_string(), v.clone()));
        }
        for (t, id) in &self.inputs {
            out.push((format!("floe.input.{t}"), id.to_string()));
        }
        out
    }
}

/// How a write commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitOptions {
    /// Branch to commit to (`main` by default; created from nothing when missing).
    pub branch: String,
    /// Lineage properties for the snapshot summary.
    pub lineage: Lineage,
    /// Any other snapshot summary properties.
    pub properties: BTreeMap<String, String>,
    /// When set, the commit is refused (kind `Conflict`) unless the branch head is this snapshot
    /// (`Some(None)`: the branch has no snapshot yet) — for writers that computed their change from a
    /// pinned state and must not be re-applied on a moved ref.
    pub expected_head: Option<Option<i64>>,
    /// Target size of data files in bytes.
    pub target_file_size: usize,
}

impl Default for CommitOptions {
    fn default() -> Self {
        Self {
            branch: MAIN_BRANCH.to_string(),
            lineage: Lineage::default(),
            properties: BTreeMap::new(),
            expected_head: None,
            target_file_size: 128 * 1024 * 1024,
        }
    }
}

impl CommitOptions {
    /// Options that commit to `branch`.
    pub fn on_branch(branch: impl Into<String>) -> Self {
        Self {
            branch: branch.into(),
            ..Default::default()
        }
    }
}

/// Where a commit's time went, summed over its attempts, in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CommitTimings {
    /// Loading the base metadata from the catalog and storage.
    pub load_s: f64,
    /// Applying the change: copy-on-write rewrites, manifests and the manifest list.
    pub stage_s: f64,
    /// Writing the metadata JSON.
    pub metadata_s: f64,
    /// The catalog's compare-and-swap.
    pub swap_s: f64,
    /// Waiting between attempts.
    pub backoff_s: f64,
}

/// What a commit did.
#[derive(Clone, Debug)]
pub struct CommitResult {
    /// The table after the commit.
    pub table: Table,
    /// The snapshot the commit created, when it created one.
    pub snapshot_id: Option<i64>,
    /// How many attempts it took (1 when no one else was committing).
    pub attempts: u32,
    /// Where the time went.
    pub timings: CommitTimings,
}

/// A change to a table, re-applied on every attempt's base.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    /// Add data files.
    Append { files: Vec<DataFile> },
    /// Replace the rows matching `filter` (all rows when `None`) with `files`.
    Overwrite {
        filter: Option<RowFilter>,
        files: Vec<DataFile>,
    },
    /// Remove the rows matching `filter`.
    Delete { filter: RowFilter },
    /// Add an optional column at the end of the schema.
    AddColumn {
        name: String,
        field_type: iceberg::spec::Type,
        doc: Option<String>,
    },
    /// Create a branch or tag at a snapshot.
    CreateRef {
        name: String,
        snapshot_id: i64,
        tag: bool,
    },
    /// Drop a branch or tag.
    DropRef { name: String },
    /// Fast-forward `main` to the head of `branch`.
    Publish { branch: String },
    /// Move `main` back to one of its ancestors.
    Rollback { snapshot_id: i64 },
    /// Point a branch at a snapshot (creating it), or remove it (`None`).
    ResetBranch { name: String, snapshot_id: Option<i64> },
}

impl Change {
    fn data_files(&self) -> &[DataFile] {
        match self {
            Change::Append { files } | Change::Overwrite { files, .. } => files,
            _ => &[],
        }
    }
}

/// Files one attempt wrote; deleted when the attempt certainly did not land.
#[derive(Default)]
pub(crate) struct AttemptFiles {
    pub(crate) paths: Vec<String>,
}

/// A staged attempt: new metadata, and the snapshot it adds, if any.
struct Staged {
    metadata: TableMetadata,
    snapshot_id: Option<i64>,
}

/// Commit `change` to `name` through the catalog's compare-and-swap, retrying on conflicts. The
/// first attempt may start from a `preloaded` table the caller just loaded; retries always reload.
pub(crate) async fn commit(
    floe: &Floe,
    name: &TableName,
    change: Change,
    options: &CommitOptions,
    preloaded: Option<Table>,
) -> Result<CommitResult> {
    let policy = floe.settings().retry.clone();
    let storage = floe.storage();
    // Attempts whose swap outcome is unknown: (snapshot id, metadata location). While there is one,
    // the change's data files may be referenced by a landed commit and are never deleted.
    let mut unknown: Vec<(Option<i64>, String)> = Vec::new();
    let mut timings = CommitTimings::default();
    let mut attempt: u32 = 0;
    let mut preloaded = preloaded;
    // Give up: delete the files of the change unless an attempt may have landed with them.
    let abandon = |unknown: &Vec<(Option<i64>, String)>| {
        let paths = if unknown.is_empty() {
            file_paths(change.data_files())
        } else {
            Vec::new()
        };
        delete_quietly(storage, paths)
    };
    loop {
        attempt += 1;
        let t0 = Instant::now();
        let base = match preloaded.take() {
            Some(table) => Ok(table),
            None => floe.load_table(name).await,
        };
        timings.load_s += t0.elapsed().as_secs_f64();
        let base = match base {
            Ok(b) => b,
            Err(e) if unknown.is_empty() => {
                abandon(&unknown).await;
                return Err(e);
            }
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::CommitStateUnknown,
                    format!("commit to {name} may have landed; cannot reload the table to check: {e}"),
                ));
            }
        };
        // Did an earlier attempt land after all?
        for (snapshot_id, location) in &unknown {
            let landed = match snapshot_id {
                Some(id) => base.metadata().snapshot_by_id(*id).is_some(),
                None => {
                    base.metadata_location() == location
                        || base
                            .metadata()
                            .metadata_log()
                            .iter()
                            .any(|m| &m.metadata_file == location)
                }
            };
            if landed {
                return Ok(CommitResult {
                    table: base,
                    snapshot_id: *snapshot_id,
                    attempts: attempt - 1,
                    timings,
                });
            }
        }
        if let Some(expected) = options.expected_head {
            let head = base
                .metadata()
                .snapshot_for_ref(&options.branch)
                .map(|s| s.snapshot_id());
            if head != expected {
                abandon(&unknown).await;
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{name}@{} moved from {} to {}; refusing to apply a change computed on the old state",
                        options.branch,
                        fmt_id(expected),
                        fmt_id(head)
                    ),
                ));
            }
        }

        // Stage: manifests, manifest list (and copy-on-write rewrites), then the metadata file.
        let mut written = AttemptFiles::default();
        let t0 = Instant::now();
        let staged = stage(floe, &base, &change, options, &mut written).await;
        timings.stage_s += t0.elapsed().as_secs_f64();
        let staged = match staged {
            Ok(staged) => staged,
            Err(e) => {
                delete_quietly(storage, written.paths).await;
                abandon(&unknown).await;
                return Err(e.context(format!("commit to {name}")));
            }
        };
        let t0 = Instant::now();
        let new_location = next_metadata_location(&base, &staged.metadata);
        let write = staged.metadata.write_to(&storage.file_io(), &new_location).await;
        timings.metadata_s += t0.elapsed().as_secs_f64();
        let new_location = new_location.to_string();
        written.paths.push(new_location.clone());
        if let Err(e) = write {
            delete_quietly(storage, written.paths).await;
            abandon(&unknown).await;
            return Err(Error::from(e).context(format!("commit to {name}: cannot write metadata")));
        }

        // Swap.
        let t0 = Instant::now();
        let swapped = floe
            .catalog()
            .swap_metadata_location(name, base.metadata_location(), &new_location)
            .await;
        timings.swap_s += t0.elapsed().as_secs_f64();
        match swapped {
            SwapOutcome::Swapped => {
                let metadata = Arc::new(staged.metadata);
                let table = floe.table_handle(name, new_location, metadata);
                return Ok(CommitResult {
                    table,
                    snapshot_id: staged.snapshot_id,
                    attempts: attempt,
                    timings,
                });
            }
            SwapOutcome::NotSent(e) => {
                delete_quietly(storage, written.paths).await;
                abandon(&unknown).await;
                return Err(e);
            }
            SwapOutcome::Conflict => {
                delete_quietly(storage, written.paths).await;
                if attempt > policy.max_retries {
                    abandon(&unknown).await;
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!("commit to {name} lost to concurrent commits {attempt} times; giving up"),
                    ));
                }
                tracing::debug!(table = %name, attempt, "commit conflict; retrying on the new base");
            }
            SwapOutcome::Unknown(e) => {
                tracing::warn!(table = %name, attempt, error = %e, "commit outcome unknown; checking");
                unknown.push((staged.snapshot_id, new_location));
                if attempt > policy.max_retries {
                    return Err(Error::new(
                        ErrorKind::CommitStateUnknown,
                        format!("commit to {name} may have landed; its files are kept: {e}"),
                    ));
                }
            }
        }
        let pause = backoff(&policy, attempt);
        timings.backoff_s += pause.as_secs_f64();
        tokio::time::sleep(pause).await;
    }
}

fn fmt_id(id: Option<i64>) -> String {
    id.map(|i| i.to_string())
        .unwrap_or_else(|| "(no snapshot)".to_string())
}

fn backoff(policy: &crate::config::RetryPolicy, attempt: u32) -> Duration {
    let exp = policy.min_backoff.saturating_mul(1u32 << attempt.min(16));
    let cap = exp.min(policy.max_backoff).max(Duration::from_millis(1));
    let jitter = rand::thread_rng().gen_range(0.5..1.0);
    cap.mul_f64(jitter)
}

pub(crate) fn file_paths(files: &[DataFile]) -> Vec<String> {
    files.iter().map(|f| f.file_path().to_string()).collect()
}

pub(crate) async fn delete_quietly(storage: &crate::storage::ObjectStorage, paths: Vec<String>) {
    for p in paths {
        if let Err(e) = storage.delete(&p).await {
            tracing::warn!(path = %p, error = %e, "could not delete an uncommitted file");
        }
    }
}

fn next_metadata_location(base: &Table, new: &TableMetadata) -> MetadataLocation {
    let loc = MetadataLocation::from_str(base.metadata_location()).unwrap_or_else(|_| {
        // A metadata file named by another convention: continue numbering from the log's length.
        let mut l = MetadataLocation::new_with_metadata(base.location(), new);
        for _ in 0..=base.metadata().metadata_log().len() {
            l = l.with_next_version();
        }
        l
    });
    loc.with_next_version().with_new_metadata(new)
}

async fn stage(
    floe: &Floe,
    base: &Table,
    change: &Change,
    options: &CommitOptions,
    written: &mut AttemptFiles,
) -> Result<Staged> {
    let builder = base
        .metadata()
        .clone()
        .into_builder(Some(base.metadata_location().to_string()));
    let branch = options.branch.as_str();
    match change {
        Change::Append { files } => {
            stage_snapshot(
                base,
                branch,
                Operation::Append,
                files.clone(),
                Vec::new(),
                options,
                written,
            )
            .await
        }
        Change::Overwrite { filter, files } => {
            let parent = base.metadata().snapshot_for_ref(branch).cloned();
            let (removed, mut added) = match filter {
                None => (
                    base.data_files(parent.as_ref())
                        .await?
                        .into_iter()
                        .map(|(f, _)| f)
                        .collect(),
                    Vec::new(),
                ),
                Some(filter) => {
                    let cow = copy_on_write(floe, base, parent.as_ref(), filter, options, written).await?;
                    (cow.removed, cow.added)
                }
            };
            added.extend(files.iter().cloned());
            stage_snapshot(
                base,
                branch,
                Operation::Overwrite,
                added,
                removed,
                options,
                written,
            )
            .await
        }
        Change::Delete { filter } => {
            let parent = base.metadata().snapshot_for_ref(branch).cloned();
            let cow = copy_on_write(floe, base, parent.as_ref(), filter, options, written).await?;
            let op = if cow.added.is_empty() {
                Operation::Delete
            } else {
                Operation::Overwrite
            };
            stage_snapshot(base, branch, op, cow.added, cow.removed, options, written).await
        }
        Change::AddColumn {
            name,
            field_type,
            doc,
        } => {
            let schema = base.schema();
            if schema.field_by_name(name).is_some() {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("table {} already has a column {name:?}", base.name()),
                ));
            }
            let mut fields: Vec<_> = schema.as_struct().fields().to_vec();
            let mut field =
                NestedField::optional(base.metadata().last_column_id() + 1, name, field_type.clone());
            if let Some(d) = doc {
                field = field.with_doc(d);
            }
            fields.push(std::sync::Arc::new(field));
            let new_schema = Schema::builder()
                .with_identifier_field_ids(schema.identifier_field_ids())
                .with_fields(fields)
                .build()?;
            let result = builder.add_current_schema(new_schema)?.build()?;
            Ok(Staged {
                metadata: result.metadata,
                snapshot_id: None,
            })
        }
        Change::CreateRef {
            name,
            snapshot_id,
            tag,
        } => {
            if base.find_ref(name).is_some() {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("table {} already has a branch or tag {name:?}", base.name()),
                ));
            }
            let retention = if *tag {
                SnapshotRetention::Tag { max_ref_age_ms: None }
            } else {
                SnapshotRetention::branch(None, None, None)
            };
            let result = builder
                .set_ref(name, SnapshotReference::new(*snapshot_id, retention))?
                .build()?;
            Ok(Staged {
                metadata: result.metadata,
                snapshot_id: None,
            })
        }
        Change::DropRef { name } => {
            if name == MAIN_BRANCH {
                return Err(Error::invalid("the main branch cannot be dropped"));
            }
            if base.find_ref(name).is_none() {
                return Err(Error::not_found(format!(
                    "table {} has no branch or tag {name:?}",
                    base.name()
                )));
            }
            let result = builder.remove_ref(name).build()?;
            Ok(Staged {
                metadata: result.metadata,
                snapshot_id: None,
            })
        }
        Change::Publish { branch } => {
            let source = base
                .find_ref(branch)
                .filter(|r| r.kind == "branch")
                .ok_or_else(|| Error::not_found(format!("table {} has no branch {branch:?}", base.name())))?;
            if let Some(main) = base.metadata().current_snapshot_id() {
                if !base.is_ancestor(main, source.snapshot_id) {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "cannot fast-forward {}@main ({main}) to {branch} ({}): main is not an ancestor of the branch",
                            base.name(),
                            source.snapshot_id
                        ),
                    ));
                }
            }
            let result = builder
                .set_ref(MAIN_BRANCH, main_ref(base, source.snapshot_id))?
                .build()?;
            Ok(Staged {
                metadata: result.metadata,
                snapshot_id: None,
            })
        }
        Change::ResetBranch { name, snapshot_id } => {
            if name == MAIN_BRANCH {
                return Err(Error::invalid(
                    "reset_branch moves other branches; main moves by publish or rollback",
                ));
            }
            if base.find_ref(name).is_some_and(|r| r.kind == "tag") {
                return Err(Error::invalid(format!("{name:?} is a tag of {}", base.name())));
            }
            let builder = match snapshot_id {
                Some(id) => builder.set_ref(
                    name,
                    SnapshotReference::new(*id, SnapshotRetention::branch(None, None, None)),
                )?,
                None => builder.remove_ref(name),
            };
            Ok(Staged {
                metadata: builder.build()?.metadata,
                snapshot_id: None,
            })
        }
        Change::Rollback { snapshot_id } => {
            let main = base.metadata().current_snapshot_id().ok_or_else(|| {
                Error::invalid(format!("table {} has no snapshot to roll back from", base.name()))
            })?;
            if base.metadata().snapshot_by_id(*snapshot_id).is_none() {
                return Err(Error::not_found(format!(
                    "table {} has no snapshot {snapshot_id}",
                    base.name()
                )));
            }
            if !base.is_ancestor(*snapshot_id, main) {
                return Err(Error::invalid(format!(
                    "snapshot {snapshot_id} is not an ancestor of {}@main ({main}); rollback only moves main back",
                    base.name()
                )));
            }
            let result = builder
                .set_ref(MAIN_BRANCH, main_ref(base, *snapshot_id))?
                .build()?;
            Ok(Staged {
                metadata: result.metadata,
                snapshot_id: None,
            })
        }
    }
}

/// The `main` ref moved to `snapshot_id`, keeping main's retention settings.
fn main_ref(base: &Table, snapshot_id: i64) -> SnapshotReference {
    let retention = serde_json::to_value(base.metadata())
        .ok()
        .and_then(|v| v.get("refs")?.get(MAIN_BRANCH).cloned())
        .and_then(|r| serde_json::from_value::<SnapshotReference>(r).ok())
        .map(|r| r.retention)
        .unwrap_or_else(|| SnapshotRetention::branch(None, None, None));
    SnapshotReference::new(snapshot_id, retention)
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

/// Write the manifests and manifest list of a new snapshot on `branch` that adds `added` and removes
/// `removed`, and stage metadata that makes it the branch head.
async fn stage_snapshot(
    base: &Table,
    branch: &str,
    operation: Operation,
    added: Vec<DataFile>,
    removed: Vec<DataFile>,
    options: &CommitOptions,
    written: &mut AttemptFiles,
) -> Result<Staged> {
    let metadata = base.metadata();
    if metadata.format_version() == FormatVersion::V1 {
        return Err(Error::invalid(format!(
            "table {} is Iceberg v1; floe writes v2 tables",
            base.name()
        )));
    }
    let storage = base.storage();
    let file_io = storage.file_io();
    let parent = metadata.snapshot_for_ref(branch).cloned();
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
    let mut manifest_counter = 0;
    // A v2 data manifest of this snapshot at a new path, recorded as written by this attempt.
    let mut new_manifest_writer = |written: &mut AttemptFiles, spec: &iceberg::spec::PartitionSpec| {
        let path = format!(
            "{}/metadata/{commit_uuid}-m{manifest_counter}.avro",
            metadata.location()
        );
        manifest_counter += 1;
        written.paths.push(path.clone());
        let output = file_io.new_output(&path)?;
        Ok::<_, Error>(
            ManifestWriterBuilder::new(output, Some(snapshot_id), schema.clone(), spec.clone())
                .build_v2_data(),
        )
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

    // Carry the parent's manifests forward; rewrite those that list a removed file.
    let removed_paths: HashSet<&str> = removed.iter().map(|f| f.file_path()).collect();
    let mut manifests: Vec<ManifestFile> = Vec::new();
    let mut found_removed: HashSet<String> = HashSet::new();
    if let Some(parent) = &parent {
        for mf in base.manifests(parent).await?.iter().cloned() {
            if removed_paths.is_empty() || mf.content != ManifestContentType::Data {
                manifests.push(mf);
                continue;
            }
            let manifest = mf.load_manifest(&file_io).await?;
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
            let mut writer = new_manifest_writer(written, mf_spec.as_ref())?;
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
    if found_removed.len() != removed_paths.len() {
        return Err(Error::internal(
            "a file to remove is not live in the base snapshot",
        ));
    }
    if !added.is_empty() {
        let mut writer = new_manifest_writer(written, spec.as_ref())?;
        for f in added {
            writer.add_file(f, sequence_number)?;
        }
        // New manifests first, as Java orders them.
        manifests.insert(0, writer.write_manifest_file().await?);
    }

    let list_path = format!(
        "{}/metadata/snap-{snapshot_id}-1-{commit_uuid}.avro",
        metadata.location()
    );
    written.paths.push(list_path.clone());
    let mut list_writer = ManifestListWriter::v2(
        file_io.new_output(&list_path)?.writer().await?,
        snapshot_id,
        parent.as_ref().map(|p| p.snapshot_id()),
        sequence_number,
    );
    // Assign the new manifests' sequence numbers as the writer would, so the list this process
    // remembers is the list it wrote.
    for m in manifests.iter_mut() {
        if m.sequence_number == iceberg::spec::UNASSIGNED_SEQUENCE_NUMBER {
            m.sequence_number = sequence_number;
        }
        if m.min_sequence_number == iceberg::spec::UNASSIGNED_SEQUENCE_NUMBER {
            m.min_sequence_number = sequence_number;
        }
    }
    let remembered = Arc::new(manifests.clone());
    list_writer.add_manifests(manifests.into_iter())?;
    list_writer.close().await?;
    base.remember_manifest_list(&list_path, remembered);

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
    let builder = base
        .metadata()
        .clone()
        .into_builder(Some(base.metadata_location().to_string()));
    let result = builder.set_branch_snapshot(snapshot, branch)?.build()?;
    Ok(Staged {
        metadata: result.metadata,
        snapshot_id: Some(snapshot_id),
    })
}
