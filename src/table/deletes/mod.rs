//! Row-level deletes (Iceberg v2 merge-on-read): which delete files apply to which data file
//! ([`index`]), the positions they delete ([`positions`]), writing floe's own position delete files,
//! one per data file ([`writer`]), and reading a data file's live rows with their positions
//! ([`live_rows`]), which is how a change finds the rows it deletes. [`RowLevelMode`] says whether a
//! change rewrites files or writes delete files.

pub(crate) mod index;
pub(crate) mod positions;
pub(crate) mod writer;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch, UInt64Array};
use arrow::compute::filter_record_batch;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::scan::{FileScanTask, FileScanTaskDeleteFile};
use iceberg::spec::{ManifestContentType, SchemaRef, SnapshotRef};
use roaring::RoaringTreemap;
use serde::Serialize;

use self::index::{DeleteIndex, FileDeletes};
use crate::error::{Error, ErrorKind, Result};
use crate::table::entries::{LiveFile, SnapshotFiles};
use crate::table::nested_shapes::NestedShapes;
use crate::table::Table;

/// How a change to existing rows is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum RowLevelMode {
    /// Rewrite every data file with changed rows without them (Iceberg's `copy-on-write`).
    #[default]
    CopyOnWrite,
    /// Leave data files as they are and write position delete files (`merge-on-read`).
    MergeOnRead,
    /// Per data file: rewrite it when its deleted fraction would reach the table's
    /// `delete-ratio-threshold` (0.3 by default), else write a delete file.
    Auto,
}

/// The table property that sets the deleted fraction at which `Auto` rewrites a file (and
/// compaction folds its deletes).
pub const DELETE_RATIO_THRESHOLD: &str = "delete-ratio-threshold";
/// Its default, as Iceberg Java's `RewriteDataFiles`.
pub const DEFAULT_DELETE_RATIO_THRESHOLD: f64 = 0.3;

impl RowLevelMode {
    /// Parse `copy-on-write`, `merge-on-read` or `auto` (as `--row-mode` takes them).
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "copy-on-write" => Ok(RowLevelMode::CopyOnWrite),
            "merge-on-read" => Ok(RowLevelMode::MergeOnRead),
            "auto" => Ok(RowLevelMode::Auto),
            other => Err(Error::invalid(format!(
                "unknown row-level mode {other:?} (copy-on-write, merge-on-read or auto)"
            ))),
        }
    }

    /// The mode a table's property (`write.delete.mode`, `write.update.mode`, `write.merge.mode`)
    /// names, if it names one. Iceberg writes only `copy-on-write` and `merge-on-read` there.
    pub(crate) fn of_property(table: &Table, property: &str) -> Result<Option<Self>> {
        match table.metadata().properties().get(property).map(|v| v.trim()) {
            None | Some("") => Ok(None),
            Some("copy-on-write") => Ok(Some(RowLevelMode::CopyOnWrite)),
            Some("merge-on-read") => Ok(Some(RowLevelMode::MergeOnRead)),
            Some(other) => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "table {} has {property}={other:?}: expected copy-on-write or merge-on-read",
                    table.name()
                ),
            )),
        }
    }

    /// The mode a change uses: the one asked for, else the table's property, else `default`.
    pub(crate) fn resolve(asked: Option<Self>, table: &Table, property: &str, default: Self) -> Result<Self> {
        match asked {
            Some(m) => Ok(m),
            None => Ok(Self::of_property(table, property)?.unwrap_or(default)),
        }
    }

    /// `copy-on-write`, `merge-on-read` or `auto`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RowLevelMode::CopyOnWrite => "copy-on-write",
            RowLevelMode::MergeOnRead => "merge-on-read",
            RowLevelMode::Auto => "auto",
        }
    }
}

/// The deleted fraction at which `Auto` rewrites a data file: `asked`, else the table's
/// `delete-ratio-threshold`, else 0.3.
pub(crate) fn delete_ratio_threshold(asked: Option<f64>, table: &Table) -> Result<f64> {
    let value = match asked {
        Some(v) => v,
        None => match table.metadata().properties().get(DELETE_RATIO_THRESHOLD) {
            None => return Ok(DEFAULT_DELETE_RATIO_THRESHOLD),
            Some(v) => v.trim().parse::<f64>().map_err(|_| {
                Error::new(
                    ErrorKind::Config,
                    format!("table property {DELETE_RATIO_THRESHOLD}={v:?} is not a number"),
                )
            })?,
        },
    };
    if !(0.0..=1.0).contains(&value) {
        return Err(Error::invalid(format!(
            "delete ratio threshold {value} is not between 0 and 1"
        )));
    }
    Ok(value)
}

/// A batch of a data file's live rows and the position of each row in the file.
pub(crate) type PositionedBatch = (RecordBatch, UInt64Array);

/// The live rows of `data` (its rows less those its `deletes` remove), read with `schema` and
/// projected to `project_ids`, each batch with the rows' positions in the file. Equality deletes
/// cannot be applied by position: a file that has them is refused.
pub(crate) async fn live_rows(
    table: &Table,
    data: &LiveFile,
    deletes: &FileDeletes,
    schema: SchemaRef,
    project_ids: Vec<i32>,
) -> Result<BoxStream<'static, Result<PositionedBatch>>> {
    if let Some(eq) = deletes.equality.first() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{}: data file {} has equality deletes ({}), which floe cannot change rows under; \
                 compact the table with the engine that wrote them first",
                table.name(),
                data.path(),
                eq.path()
            ),
        ));
    }
    let deleted =
        Arc::new(positions::deleted_positions(table.storage(), data.path(), &deletes.positions).await?);
    let shapes = NestedShapes::of(table.storage(), table.metadata(), &schema, &project_ids)?;
    let mut task = file_task(table, data, schema, project_ids)?;
    if let Some(shapes) = &shapes {
        task = shapes.in_file_shape(task).await?;
    }
    let ice = table.iceberg_table()?;
    let batches = ice
        .reader_builder()
        .build()
        .read(futures::stream::iter([Ok(task)]).boxed())?
        .stream();
    let mut offset: u64 = 0;
    Ok(batches
        .map_err(Error::from)
        .and_then(move |batch| {
            let start = offset;
            offset += batch.num_rows() as u64;
            let result = match &shapes {
                Some(shapes) => shapes.conform(batch),
                None => Ok(batch),
            }
            .and_then(|batch| keep_live(batch, start, &deleted));
            futures::future::ready(result)
        })
        .boxed())
}

/// The rows of `batch` (starting at position `start` of its file) not in `deleted`, with positions.
fn keep_live(batch: RecordBatch, start: u64, deleted: &RoaringTreemap) -> Result<PositionedBatch> {
    let n = batch.num_rows() as u64;
    let positions = UInt64Array::from_iter_values(start..start + n);
    if deleted.range_cardinality(start..start + n) == 0 {
        return Ok((batch, positions));
    }
    let keep = BooleanArray::from_iter((start..start + n).map(|p| Some(!deleted.contains(p))));
    let batch = filter_record_batch(&batch, &keep)?;
    let positions = arrow::compute::filter(&positions, &keep)?;
    let positions = positions
        .as_any()
        .downcast_ref::<UInt64Array>()
        .cloned()
        .ok_or_else(|| Error::internal("positions are not u64"))?;
    Ok((batch, positions))
}

/// A scan task over the whole of one data file, as Iceberg's planner makes one, without deletes or
/// predicate (the caller applies both).
pub(crate) fn file_task(
    table: &Table,
    data: &LiveFile,
    schema: SchemaRef,
    project_ids: Vec<i32>,
) -> Result<FileScanTask> {
    let name_mapping = table
        .metadata()
        .properties()
        .get("schema.name-mapping.default")
        .map(|raw| {
            serde_json::from_str::<iceberg::spec::NameMapping>(raw).map_err(|e| {
                Error::wrap(
                    ErrorKind::Data,
                    format!(
                        "table {} has an invalid schema.name-mapping.default",
                        table.name()
                    ),
                    e,
                )
            })
        })
        .transpose()?
        .map(Arc::new);
    let size = data.file.file_size_in_bytes();
    Ok(FileScanTask::builder()
        .with_file_size_in_bytes(size)
        .with_start(0)
        .with_length(size)
        .with_record_count(Some(data.file.record_count()))
        .with_data_file_path(data.path().to_string())
        .with_data_file_format(data.file.file_format())
        .with_schema(schema)
        .with_project_field_ids(project_ids)
        .with_partition(Some(data.file.partition().clone()))
        // As Iceberg's planner passes it (it passes no spec either).
        .with_partition_spec(None)
        .with_name_mapping(name_mapping)
        .with_case_sensitive(true)
        .build())
}

/// Whether `snapshot` has any live delete file (read from its manifest list alone).
pub(crate) async fn has_deletes(table: &Table, snapshot: &SnapshotRef) -> Result<bool> {
    Ok(table.manifests(snapshot).await?.iter().any(|m| {
        m.content == ManifestContentType::Deletes
            && (m.has_added_files() || m.existing_files_count != Some(0))
    }))
}

/// The delete files each data file of a snapshot needs, for iceberg-rust's reader: its planner
/// hands every position delete file of a partition to every data file there (and reading one
/// delete file for several tasks at once can hang its loader), so floe sets each task's deletes
/// from its own [`DeleteIndex`].
pub(crate) struct TaskDeletes {
    by_path: HashMap<String, Vec<FileScanTaskDeleteFile>>,
    /// Some delete file applies to several data files (another writer's partition-scoped or
    /// equality deletes): tasks are then read one reader each, never sharing a load.
    shared: bool,
}

impl TaskDeletes {
    /// The deletes of `snapshot`, `None` when it has none. Deletion vectors are refused.
    pub(crate) async fn of(table: &Table, snapshot: &SnapshotRef) -> Result<Option<TaskDeletes>> {
        if !has_deletes(table, snapshot).await? {
            return Ok(None);
        }
        let files = SnapshotFiles::of(table, Some(snapshot)).await?;
        let index = DeleteIndex::of(&files);
        index.refuse_deletion_vectors(&table.name().to_string())?;
        let task_file = |d: &LiveFile| FileScanTaskDeleteFile {
            file_path: d.path().to_string(),
            file_size_in_bytes: d.file.file_size_in_bytes(),
            file_type: d.file.content_type(),
            partition_spec_id: d.spec_id,
            equality_ids: d.file.equality_ids(),
        };
        let by_path = files
            .data
            .iter()
            .map(|data| {
                let deletes = index.for_data_file(data);
                let mut list: Vec<FileScanTaskDeleteFile> = deletes
                    .positions
                    .iter()
                    .chain(&deletes.equality)
                    .map(task_file)
                    .collect();
                list.sort_by(|a, b| a.file_path.cmp(&b.file_path));
                list.dedup_by(|a, b| a.file_path == b.file_path);
                (data.path().to_string(), list)
            })
            .collect();
        Ok(Some(TaskDeletes {
            by_path,
            shared: index.has_partition_scoped_deletes() || index.has_equality_deletes(),
        }))
    }

    /// Give `task` exactly the deletes that apply to its data file.
    pub(crate) fn fix(&self, task: &mut FileScanTask) {
        task.deletes = self
            .by_path
            .get(&task.data_file_path)
            .cloned()
            .unwrap_or_default();
    }
}

/// Read planned scan tasks with iceberg-rust's reader, each with exactly the deletes that apply to
/// it (`deletes` of the snapshot planned, `None` when it has none), and each file's nested columns
/// in the read schema's shape (`shapes`, when they changed shape; see [`NestedShapes`]).
pub(crate) fn read_tasks(
    table: &Table,
    tasks: iceberg::scan::FileScanTaskStream,
    deletes: Option<Arc<TaskDeletes>>,
    shapes: Option<Arc<NestedShapes>>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let tasks = match &shapes {
        Some(shapes) => shapes.in_file_shapes(tasks),
        None => tasks,
    };
    let batches = read_tasks_as_files_are(table, tasks, deletes)?;
    Ok(match shapes {
        Some(shapes) => batches
            .and_then(move |batch| futures::future::ready(shapes.conform(batch)))
            .boxed(),
        None => batches,
    })
}

/// [`read_tasks`] before nested columns are conformed.
fn read_tasks_as_files_are(
    table: &Table,
    tasks: iceberg::scan::FileScanTaskStream,
    deletes: Option<Arc<TaskDeletes>>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let ice = table.iceberg_table()?;
    let Some(deletes) = deletes else {
        return Ok(ice
            .reader_builder()
            .build()
            .read(tasks)?
            .stream()
            .map_err(Error::from)
            .boxed());
    };
    let fixed = {
        let deletes = deletes.clone();
        tasks.map_ok(move |mut task| {
            deletes.fix(&mut task);
            task
        })
    };
    if !deletes.shared {
        return Ok(ice
            .reader_builder()
            .build()
            .read(fixed.boxed())?
            .stream()
            .map_err(Error::from)
            .boxed());
    }
    // One reader per task: no delete file is loaded by two tasks of one reader at once.
    Ok(fixed
        .map_err(Error::from)
        .and_then(move |task| {
            let reader = ice.reader_builder().build();
            let batches = reader
                .read(futures::stream::iter([Ok(task)]).boxed())
                .map(|s| s.stream().map_err(Error::from));
            futures::future::ready(batches.map_err(Error::from))
        })
        .try_flatten()
        .boxed())
}
