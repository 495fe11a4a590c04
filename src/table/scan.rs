//! Reading tables: a scan at any snapshot, branch, tag or time, with projection and filter pushdown,
//! as a stream of Arrow record batches; and what changed between two snapshots.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::spec::SnapshotRef;
use serde::Serialize;

use super::deletes::{read_tasks, TaskDeletes};
use super::nested_shapes::NestedShapes;
use super::{At, FileInfo, RowFilter, Table};
use crate::error::{Error, Result};

/// What to read.
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// Which state of the table.
    pub at: Option<At>,
    /// Columns to return (all when `None`).
    pub columns: Option<Vec<String>>,
    /// Rows to return.
    pub filter: Option<RowFilter>,
    /// Stop after this many rows.
    pub limit: Option<usize>,
}

/// A scan's result: its schema and the batches.
pub struct ScanStream {
    /// Schema of every batch.
    pub schema: ArrowSchemaRef,
    /// The batches.
    pub batches: BoxStream<'static, Result<RecordBatch>>,
    /// Data files handed to the reader so far.
    files_read: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ScanStream {
    /// How many data files the scan has read so far: those left after pruning by partition and by
    /// the files' column bounds. All of them once the batches are consumed.
    pub fn files_read(&self) -> usize {
        self.files_read.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Collect every batch.
    pub async fn collect(self) -> Result<Vec<RecordBatch>> {
        self.batches.try_collect().await
    }
}

/// Plan a full scan of the current snapshot into file tasks, as [`scan`] does before reading; returns
/// how many (the storage benchmark times it).
pub(crate) async fn plan_task_count(table: &Table) -> Result<usize> {
    let Some(snapshot) = table.current_snapshot() else {
        return Ok(0);
    };
    let ice = table.iceberg_table()?;
    let tasks: Vec<_> = ice
        .scan()
        .snapshot_id(snapshot.snapshot_id())
        .select_all()
        .build()?
        .plan_files()
        .await?
        .try_collect()
        .await?;
    Ok(tasks.len())
}

pub(crate) async fn scan(table: &Table, options: &ScanOptions) -> Result<ScanStream> {
    let at = options.at.clone().unwrap_or(At::Current);
    let snapshot = table.snapshot_at(&at)?;
    // The current state reads with the table's current schema (a column added since the last write
    // reads as null); a past state reads with the schema it was written with.
    let read_schema = match (&at, &snapshot) {
        (At::Current, _) | (_, None) => table.schema().clone(),
        (_, Some(s)) => s.schema(table.metadata())?,
    };
    let full = std::sync::Arc::new(iceberg::arrow::schema_to_arrow_schema(&read_schema)?);
    let columns: Vec<String> = match &options.columns {
        Some(cols) => {
            for c in cols {
                if full.field_with_name(c).is_err() {
                    return Err(Error::invalid(format!(
                        "table {} has no column {c:?} at {at}",
                        table.name()
                    )));
                }
            }
            cols.clone()
        }
        None => full.fields().iter().map(|f| f.name().clone()).collect(),
    };
    let projected = std::sync::Arc::new(
        full.project(
            &columns
                .iter()
                .map(|c| full.index_of(c))
                .collect::<std::result::Result<Vec<_>, _>>()?,
        )?,
    );
    let compiled = options.filter.as_ref().map(|f| f.compile(&full)).transpose()?;
    let Some(snapshot) = snapshot else {
        return Ok(ScanStream {
            schema: projected,
            batches: futures::stream::empty().boxed(),
            files_read: Default::default(),
        });
    };

    // Read the projection plus the filter's columns, filter exactly, then project.
    let mut read_cols = columns.clone();
    if let Some(c) = &compiled {
        for col in &c.columns {
            if !read_cols.contains(col) {
                read_cols.push(col.clone());
            }
        }
    }
    // The exact filter runs on the batches as read: bind it to their columns.
    let read_arrow = std::sync::Arc::new(
        full.project(
            &read_cols
                .iter()
                .map(|c| full.index_of(c))
                .collect::<std::result::Result<Vec<_>, _>>()?,
        )?,
    );
    let row_filter = options
        .filter
        .as_ref()
        .map(|f| f.compile(&read_arrow))
        .transpose()?;
    let read_ids: Vec<i32> = read_cols
        .iter()
        .map(|c| read_schema.field_by_name(c).map(|f| f.id))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::internal("projected column vanished from the schema"))?;
    let ice = table.iceberg_table()?;
    let mut builder = ice.scan().snapshot_id(snapshot.snapshot_id()).select_all();
    let snapshot_schema = snapshot.schema(table.metadata())?;
    if let Some(p) = compiled.as_ref().and_then(|c| c.pushdown_for(&snapshot_schema)) {
        builder = builder.with_filter(p);
    }
    let deletes = TaskDeletes::of(table, &snapshot).await?.map(std::sync::Arc::new);
    let shapes = NestedShapes::of(table.storage(), table.metadata(), &read_schema, &read_ids)?;
    let files_read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = files_read.clone();
    let tasks = builder.build()?.plan_files().await?.map_ok(move |mut task| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        task.schema = read_schema.clone();
        task.project_field_ids = read_ids.clone();
        task
    });
    let stream = read_tasks(table, tasks.boxed(), deletes, shapes)?;
    let out_schema = projected.clone();
    let limit = options.limit;
    let batches = stream
        .and_then(move |batch| {
            let result = (|| {
                let batch = match &row_filter {
                    Some(c) => c.select(&batch)?,
                    None => batch,
                };
                let indices = columns
                    .iter()
                    .map(|c| batch.schema().index_of(c))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let batch = batch.project(&indices)?;
                Ok(RecordBatch::try_new(
                    out_schema.clone(),
                    batch.columns().to_vec(),
                )?)
            })();
            futures::future::ready(result)
        })
        .boxed();
    let batches = match limit {
        None => batches,
        Some(l) => truncate(batches, l),
    };
    Ok(ScanStream {
        schema: projected,
        batches,
        files_read,
    })
}

fn truncate(
    stream: BoxStream<'static, Result<RecordBatch>>,
    limit: usize,
) -> BoxStream<'static, Result<RecordBatch>> {
    // Ends the stream (and stops reading files) once `limit` rows have been returned.
    stream
        .scan(limit, |left, item| {
            if *left == 0 {
                return futures::future::ready(None);
            }
            let item = item.map(|b| {
                let n = b.num_rows().min(*left);
                *left -= n;
                b.slice(0, n)
            });
            futures::future::ready(Some(item))
        })
        .boxed()
}

/// Files and rows added and removed between two snapshots of a table, row-level deletes included.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotChanges {
    /// The earlier state (`None`: the empty table).
    pub from_snapshot: Option<i64>,
    /// The later state.
    pub to_snapshot: Option<i64>,
    /// Data files live in `to` but not in `from`.
    pub added_files: Vec<FileInfo>,
    /// Data files live in `from` but not in `to`.
    pub removed_files: Vec<FileInfo>,
    /// Live rows of the added files in `to` (their rows less those `to`'s deletes remove).
    pub added_rows: u64,
    /// Live rows of the removed files in `from`.
    pub removed_rows: u64,
    /// Rows of files live in both states that delete files added since `from` delete.
    pub deleted_rows: u64,
    /// Delete files live in `to` but not in `from`.
    pub added_delete_files: Vec<String>,
    /// Delete files live in `from` but not in `to`.
    pub removed_delete_files: Vec<String>,
}

pub(crate) async fn changes(table: &Table, from: &At, to: &At) -> Result<SnapshotChanges> {
    let a = table.snapshot_at(from)?;
    let b = table.snapshot_at(to)?;
    let files_at = |s: Option<SnapshotRef>| async move {
        let files: HashMap<String, FileInfo> = table
            .files(s.as_ref())
            .await?
            .into_iter()
            .map(|f| (f.path.clone(), f))
            .collect();
        Ok::<_, crate::error::Error>((files, DeletedPositions::at(table, s.as_ref()).await?))
    };
    let (fa, da) = files_at(a.clone()).await?;
    let (fb, db) = files_at(b.clone()).await?;
    let only = |x: &HashMap<String, FileInfo>, y: &HashMap<String, FileInfo>| {
        let mut v: Vec<FileInfo> = x
            .iter()
            .filter(|(p, _)| !y.contains_key(*p))
            .map(|(_, f)| f.clone())
            .collect();
        v.sort_by(|x, y| x.path.cmp(&y.path));
        v
    };
    let added = only(&fb, &fa);
    let removed = only(&fa, &fb);
    let deleted_rows = fb
        .keys()
        .filter(|p| fa.contains_key(*p))
        .map(|p| db.of(p).saturating_sub(da.of(p)))
        .sum();
    let mut added_delete_files: Vec<String> = db.files.difference(&da.files).cloned().collect();
    let mut removed_delete_files: Vec<String> = da.files.difference(&db.files).cloned().collect();
    added_delete_files.sort();
    removed_delete_files.sort();
    Ok(SnapshotChanges {
        from_snapshot: a.map(|s| s.snapshot_id()),
        to_snapshot: b.map(|s| s.snapshot_id()),
        added_rows: added
            .iter()
            .map(|f| f.record_count.saturating_sub(db.of(&f.path)))
            .sum(),
        removed_rows: removed
            .iter()
            .map(|f| f.record_count.saturating_sub(da.of(&f.path)))
            .sum(),
        deleted_rows,
        added_files: added,
        removed_files: removed,
        added_delete_files,
        removed_delete_files,
    })
}

/// The live delete files of a snapshot, and the positions their position deletes remove per data
/// file (floe writes each position once; another writer's overlapping delete files may count one
/// position twice, and equality deletes are not counted).
struct DeletedPositions {
    files: std::collections::HashSet<String>,
    per_data_file: HashMap<String, u64>,
}

impl DeletedPositions {
    async fn at(table: &Table, snapshot: Option<&SnapshotRef>) -> Result<Self> {
        let mut out = DeletedPositions {
            files: Default::default(),
            per_data_file: HashMap::new(),
        };
        for d in table.live_delete_files(snapshot).await? {
            if let Some(target) = crate::table::deletes::index::referenced_data_file(&d) {
                *out.per_data_file.entry(target).or_default() += d.record_count();
            }
            out.files.insert(d.file_path().to_string());
        }
        Ok(out)
    }

    fn of(&self, data_file: &str) -> u64 {
        self.per_data_file.get(data_file).copied().unwrap_or(0)
    }
}
