//! Typed metadata views of a table, as iceberg-rust's `inspect/` has them (Iceberg Java's metadata
//! tables): its snapshots ([`SnapshotInfo`]), branches and tags ([`RefInfo`]), live data files
//! ([`FileInfo`]), the history of `main` ([`HistoryEntry`]) and a summary ([`TableSummary`]). Each row
//! type knows its Arrow schema and turns rows into a record batch ([`MetadataRow`]), so the `floe`
//! command, `floe sql`'s `"NS.TABLE$snapshots"` tables ([`MetadataTable`]) and a library user read
//! the same columns under the same names. Nested values (a snapshot's summary and refs) are JSON
//! text in Arrow: a flat column that every consumer (DuckDB's loader, CSV) carries.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use iceberg::spec::{PartitionSpec, Schema as IcebergSchema};
use serde::{Serialize, Serializer};

use super::{At, Table};
use crate::error::{Error, ErrorKind, Result};

/// Rows of a metadata view, as Arrow.
pub trait MetadataRow: view::Columns {
    /// The view's columns, in order.
    fn arrow_schema() -> SchemaRef {
        let fields: Vec<Field> = Self::columns().into_iter().map(|c| c.field).collect();
        Arc::new(Schema::new(fields))
    }

    /// `rows` as one batch of [`arrow_schema`](Self::arrow_schema).
    fn record_batch(rows: &[Self]) -> Result<RecordBatch> {
        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = Self::columns()
            .into_iter()
            .map(|c| (c.field, (c.fill)(rows)))
            .unzip();
        Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
    }
}

/// One snapshot: the rows of `floe snapshots` and of `"NS.TABLE$snapshots"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// The snapshot's id.
    pub snapshot_id: i64,
    /// Its parent's id; `None` for the first snapshot of a lineage.
    pub parent_id: Option<i64>,
    /// When it was committed (UTC).
    #[serde(serialize_with = "rfc3339")]
    pub committed_at: DateTime<Utc>,
    /// `append`, `overwrite`, `delete` or `replace`.
    pub operation: String,
    /// The snapshot summary's properties (counts, lineage, the writer's own), by key.
    pub summary: BTreeMap<String, String>,
    /// The branches and tags that point at it, by name.
    pub refs: Vec<String>,
}

/// A branch or a tag: the rows of `"NS.TABLE$refs"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefInfo {
    /// Ref name.
    pub name: String,
    /// `branch` or `tag`.
    pub kind: &'static str,
    /// Snapshot the ref points at.
    pub snapshot_id: i64,
}

/// One data file as the manifests record it: the rows of `"NS.TABLE$files"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    /// Full URI.
    pub path: String,
    /// Partition as `name=value/...`, empty when unpartitioned.
    pub partition: String,
    /// Rows.
    pub record_count: u64,
    /// Bytes.
    pub file_size_in_bytes: u64,
    /// The partition spec the file was written with (its manifest's).
    pub spec_id: i32,
}

/// A snapshot becoming the head of `main`: the rows of `"NS.TABLE$history"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// When it became the head (UTC).
    #[serde(serialize_with = "rfc3339")]
    pub made_current_at: DateTime<Utc>,
    /// The snapshot.
    pub snapshot_id: i64,
}

/// A table at one state: what `floe show` prints.
#[derive(Clone, Debug, Serialize)]
pub struct TableSummary {
    /// `NS.TABLE`.
    pub table: String,
    /// The table's root location.
    pub location: String,
    /// The metadata file the table was loaded from.
    pub metadata_location: String,
    /// The current schema.
    pub schema: IcebergSchema,
    /// The default partition spec.
    pub partition_spec: PartitionSpec,
    /// The default sort order, as `floe sort-order set` reads it (`event_time desc nulls last,
    /// user_id asc nulls first`), or `unsorted`.
    pub sort_order: String,
    /// Every partition spec of the table, by id (files keep the spec they were written with).
    pub partition_specs: Vec<PartitionSpec>,
    /// Table properties.
    pub properties: BTreeMap<String, String>,
    /// Branches and tags.
    pub refs: Vec<RefInfo>,
    /// The snapshot read; `None` for an empty table.
    pub snapshot: Option<i64>,
    /// The live data files of that snapshot.
    pub files: Vec<FileInfo>,
    /// Rows in those files.
    pub rows: u64,
    /// Bytes of those files.
    pub bytes: u64,
}

/// A metadata table `floe sql` reads as `"NS.TABLE$snapshots"`, `$refs`, `$files` or `$history`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataTable {
    /// [`SnapshotInfo`] rows.
    Snapshots,
    /// [`RefInfo`] rows.
    Refs,
    /// [`FileInfo`] rows of the current snapshot.
    Files,
    /// [`HistoryEntry`] rows.
    History,
}

impl MetadataTable {
    /// The metadata table named after `$`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "snapshots" => Ok(Self::Snapshots),
            "refs" => Ok(Self::Refs),
            "files" => Ok(Self::Files),
            "history" => Ok(Self::History),
            other => Err(Error::invalid(format!(
                "unknown metadata table ${other} (snapshots, refs, files, history)"
            ))),
        }
    }

    /// Its rows for `table`, as one batch.
    pub async fn record_batch(self, table: &Table) -> Result<RecordBatch> {
        match self {
            Self::Snapshots => SnapshotInfo::record_batch(&snapshots(table)?),
            Self::Refs => RefInfo::record_batch(&table.refs()),
            Self::Files => FileInfo::record_batch(&files(table, &At::Current).await?),
            Self::History => HistoryEntry::record_batch(&history(table)?),
        }
    }
}

/// Every snapshot of `table`, oldest first, with the refs that point at it.
pub fn snapshots(table: &Table) -> Result<Vec<SnapshotInfo>> {
    let refs = table.refs();
    table
        .snapshots()
        .iter()
        .map(|s| {
            let summary = s.summary();
            Ok(SnapshotInfo {
                snapshot_id: s.snapshot_id(),
                parent_id: s.parent_snapshot_id(),
                committed_at: instant(s.timestamp_ms())?,
                operation: summary.operation.as_str().to_string(),
                summary: summary.additional_properties.clone().into_iter().collect(),
                refs: refs
                    .iter()
                    .filter(|r| r.snapshot_id == s.snapshot_id())
                    .map(|r| r.name.clone())
                    .collect(),
            })
        })
        .collect()
}

/// The live data files of `table` at `at`.
pub async fn files(table: &Table, at: &At) -> Result<Vec<FileInfo>> {
    let snapshot = table.snapshot_at(at)?;
    table.files(snapshot.as_ref()).await
}

/// When each snapshot became the head of `main`, oldest first.
pub fn history(table: &Table) -> Result<Vec<HistoryEntry>> {
    table
        .metadata()
        .history()
        .iter()
        .map(|e| {
            Ok(HistoryEntry {
                made_current_at: instant(e.timestamp_ms())?,
                snapshot_id: e.snapshot_id,
            })
        })
        .collect()
}

/// `table` at `at`: its schema, partition spec, properties, refs, the snapshot read and its files.
pub async fn summary(table: &Table, at: &At) -> Result<TableSummary> {
    let snapshot = table.snapshot_at(at)?;
    let files = table.files(snapshot.as_ref()).await?;
    Ok(TableSummary {
        table: table.name().to_string(),
        location: table.location().to_string(),
        metadata_location: table.metadata_location().to_string(),
        schema: table.schema().as_ref().clone(),
        partition_spec: table.partition_spec().as_ref().clone(),
        sort_order: crate::table::sort_order::describe(table.metadata().default_sort_order(), table.schema()),
        partition_specs: {
            let mut specs: Vec<PartitionSpec> = table
                .metadata()
                .partition_specs_iter()
                .map(|s| s.as_ref().clone())
                .collect();
            specs.sort_by_key(|s| s.spec_id());
            specs
        },
        properties: table.properties(),
        refs: table.refs(),
        snapshot: snapshot.map(|s| s.snapshot_id()),
        rows: files.iter().map(|f| f.record_count).sum(),
        bytes: files.iter().map(|f| f.file_size_in_bytes).sum(),
        files,
    })
}

impl MetadataRow for SnapshotInfo {}
impl MetadataRow for RefInfo {}
impl MetadataRow for FileInfo {}
impl MetadataRow for HistoryEntry {}
/// The scalar facts of a summary, one row per table: `files` counts the files (their rows are
/// [`FileInfo`]'s view), and schema, spec, properties and refs are left to their own views.
impl MetadataRow for TableSummary {}

/// Each view's columns: one list per row type, a column's name beside the value that fills it.
mod view {
    use super::*;

    /// How rows fill a column.
    type Fill<R> = Box<dyn Fn(&[R]) -> ArrayRef>;

    /// One column of a view: its Arrow field and how rows fill it.
    pub struct Column<R> {
        pub(super) field: Field,
        pub(super) fill: Fill<R>,
    }

    /// The columns of a row type (sealed: only this module's views have them).
    pub trait Columns: Sized + 'static {
        /// The columns, in order.
        fn columns() -> Vec<Column<Self>>;
    }

    /// The zone of every instant column: the values are UTC.
    const UTC: &str = "+00:00";

    impl<R: 'static> Column<R> {
        fn new(field: Field, fill: impl Fn(&[R]) -> ArrayRef + 'static) -> Self {
            Self {
                field,
                fill: Box::new(fill),
            }
        }

        fn long(name: &str, value: fn(&R) -> i64) -> Self {
            Self::new(Field::new(name, DataType::Int64, false), move |rows| {
                Arc::new(Int64Array::from_iter_values(rows.iter().map(value)))
            })
        }

        /// A count, as Arrow's signed 64 bits (no file holds 2^63 rows or bytes).
        fn count(name: &str, value: fn(&R) -> u64) -> Self {
            Self::new(Field::new(name, DataType::Int64, false), move |rows| {
                let signed = rows.iter().map(|r| i64::try_from(value(r)).unwrap_or(i64::MAX));
                Arc::new(Int64Array::from_iter_values(signed))
            })
        }

        fn optional_long(name: &str, value: fn(&R) -> Option<i64>) -> Self {
            Self::new(Field::new(name, DataType::Int64, true), move |rows| {
                Arc::new(rows.iter().map(value).collect::<Int64Array>())
            })
        }

        fn text(name: &str, value: fn(&R) -> &str) -> Self {
            Self::new(Field::new(name, DataType::Utf8, false), move |rows| {
                Arc::new(StringArray::from_iter_values(rows.iter().map(value)))
            })
        }

        /// Nested values as JSON text: a flat column every consumer carries.
        fn json<T: Serialize + 'static>(name: &str, value: fn(&R) -> &T) -> Self {
            Self::new(Field::new(name, DataType::Utf8, false), move |rows| {
                let texts = rows
                    .iter()
                    .map(|r| serde_json::to_string(value(r)).unwrap_or_default());
                Arc::new(StringArray::from_iter_values(texts))
            })
        }

        fn utc_instant(name: &str, value: fn(&R) -> DateTime<Utc>) -> Self {
            let field = Field::new(
                name,
                DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
                false,
            );
            Self::new(field, move |rows| {
                let micros = rows.iter().map(|r| value(r).timestamp_micros());
                Arc::new(TimestampMicrosecondArray::from_iter_values(micros).with_timezone(UTC))
            })
        }
    }

    impl Columns for SnapshotInfo {
        fn columns() -> Vec<Column<Self>> {
            vec![
                Column::long("snapshot_id", |r| r.snapshot_id),
                Column::optional_long("parent_id", |r| r.parent_id),
                Column::utc_instant("committed_at", |r| r.committed_at),
                Column::text("operation", |r| &r.operation),
                Column::json("summary", |r| &r.summary),
                Column::json("refs", |r| &r.refs),
            ]
        }
    }

    impl Columns for RefInfo {
        fn columns() -> Vec<Column<Self>> {
            vec![
                Column::text("name", |r| &r.name),
                Column::text("kind", |r| r.kind),
                Column::long("snapshot_id", |r| r.snapshot_id),
            ]
        }
    }

    impl Columns for FileInfo {
        fn columns() -> Vec<Column<Self>> {
            vec![
                Column::text("path", |r| &r.path),
                Column::text("partition", |r| &r.partition),
                Column::count("record_count", |r| r.record_count),
                Column::count("file_size_in_bytes", |r| r.file_size_in_bytes),
                Column::long("spec_id", |r| i64::from(r.spec_id)),
            ]
        }
    }

    impl Columns for HistoryEntry {
        fn columns() -> Vec<Column<Self>> {
            vec![
                Column::utc_instant("made_current_at", |r| r.made_current_at),
                Column::long("snapshot_id", |r| r.snapshot_id),
            ]
        }
    }

    impl Columns for TableSummary {
        fn columns() -> Vec<Column<Self>> {
            vec![
                Column::text("table", |r| &r.table),
                Column::text("location", |r| &r.location),
                Column::text("metadata_location", |r| &r.metadata_location),
                Column::optional_long("snapshot", |r| r.snapshot),
                Column::count("files", |r| r.files.len() as u64),
                Column::count("rows", |r| r.rows),
                Column::count("bytes", |r| r.bytes),
            ]
        }
    }
}

/// Milliseconds since the epoch, as Iceberg metadata records times.
fn instant(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        Error::new(
            ErrorKind::Data,
            format!("time {ms} ms since the epoch is out of range"),
        )
    })
}

/// Instants as RFC 3339 text in JSON (`2024-03-01T10:00:00.123+00:00`), as `floe snapshots` has
/// always printed them.
fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    fn names(schema: &SchemaRef) -> Vec<&str> {
        schema.fields().iter().map(|f| f.name().as_str()).collect()
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap_or_default()
    }

    #[test]
    fn snapshot_rows_become_a_batch_with_committed_at_and_json_text() {
        let rows = vec![
            SnapshotInfo {
                snapshot_id: 1,
                parent_id: None,
                committed_at: at(1_709_287_200_123),
                operation: "append".into(),
                summary: BTreeMap::from([("added-records".into(), "3".into())]),
                refs: vec![],
            },
            SnapshotInfo {
                snapshot_id: 2,
                parent_id: Some(1),
                committed_at: at(1_709_287_260_000),
                operation: "delete".into(),
                summary: BTreeMap::new(),
                refs: vec!["main".into(), "v1".into()],
            },
        ];
        let b = SnapshotInfo::record_batch(&rows).unwrap();
        assert_eq!(
            names(&b.schema()),
            [
                "snapshot_id",
                "parent_id",
                "committed_at",
                "operation",
                "summary",
                "refs"
            ]
        );
        assert_eq!(b.num_rows(), 2);
        let parent = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        assert!(parent.is_null(0));
        assert_eq!(parent.value(1), 1);
        let committed = b
            .column(2)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(committed.value(0), 1_709_287_200_123_000);
        let text = |c: usize, r: usize| {
            b.column(c)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(r)
                .to_string()
        };
        assert_eq!(text(4, 0), r#"{"added-records":"3"}"#);
        assert_eq!(text(5, 1), r#"["main","v1"]"#);
        let json = serde_json::to_value(&rows[0]).unwrap();
        assert_eq!(json["committed_at"], "2024-03-01T10:00:00.123+00:00");
        assert_eq!(json["parent_id"], serde_json::Value::Null);
        assert_eq!(json["summary"]["added-records"], "3");
    }

    #[test]
    fn ref_file_and_history_rows_keep_their_column_names() {
        let refs = RefInfo::record_batch(&[RefInfo {
            name: "main".into(),
            kind: "branch",
            snapshot_id: 7,
        }])
        .unwrap();
        assert_eq!(names(&refs.schema()), ["name", "kind", "snapshot_id"]);
        let files = FileInfo::record_batch(&[FileInfo {
            path: "file:///w/a.parquet".into(),
            partition: "day=2024-03-01".into(),
            record_count: 3,
            file_size_in_bytes: 1024,
            spec_id: 0,
        }])
        .unwrap();
        assert_eq!(
            names(&files.schema()),
            [
                "path",
                "partition",
                "record_count",
                "file_size_in_bytes",
                "spec_id"
            ]
        );
        let bytes = files.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(bytes.value(0), 1024);
        let history = HistoryEntry::record_batch(&[HistoryEntry {
            made_current_at: at(0),
            snapshot_id: 7,
        }])
        .unwrap();
        assert_eq!(names(&history.schema()), ["made_current_at", "snapshot_id"]);
        assert!(HistoryEntry::record_batch(&[]).unwrap().num_rows() == 0);
    }

    #[test]
    fn metadata_tables_are_named_after_the_dollar() {
        assert_eq!(
            MetadataTable::parse("snapshots").unwrap(),
            MetadataTable::Snapshots
        );
        assert_eq!(MetadataTable::parse("history").unwrap(), MetadataTable::History);
        let err = MetadataTable::parse("partitions").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("$partitions"), "{err}");
    }
}
