//! The Parquet file writer behind every data file floe writes: iceberg-rust's `FileWriter` seam, with
//! the columns of each row group encoded in parallel on all cores (arrow-rs's `ArrowColumnWriter`s,
//! one top-level column per task, largest first), as DataFusion's parallel Parquet writer does. A
//! single file, and the last file of a write, use every core. The bytes equal those of arrow-rs's
//! `ArrowWriter` with the same properties, and the statistics those of iceberg-rust's writer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use bytes::Bytes;
use iceberg::io::{FileWrite, OutputFile};
use iceberg::spec::{DataContentType, DataFileBuilder, DataFileFormat, SchemaRef, Struct};
use iceberg::writer::file_writer::{FileWriter, FileWriterBuilder};
use iceberg::writer::CurrentFileStatus;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use super::file_stats::{count_nans, WrittenFileStats};

/// Rows gathered before the columns are encoded in parallel: large enough that a task per column
/// outweighs its scheduling, small enough to keep memory flat.
const ENCODE_ROWS: usize = 32 * 1024;

/// Builds a [`ParallelParquetWriter`] per file.
#[derive(Clone)]
pub(crate) struct ParallelParquetWriterBuilder {
    properties: WriterProperties,
    schema: SchemaRef,
    threads: usize,
    sort_order_id: i32,
}

impl ParallelParquetWriterBuilder {
    /// Files of `schema` (field ids from it), encoded with `properties` on up to `threads` threads,
    /// their rows in the table's sort order `sort_order_id` (0: unsorted).
    pub(crate) fn new(
        properties: WriterProperties,
        schema: SchemaRef,
        threads: usize,
        sort_order_id: i32,
    ) -> Self {
        Self {
            properties,
            schema,
            threads: threads.max(1),
            sort_order_id,
        }
    }
}

impl FileWriterBuilder for ParallelParquetWriterBuilder {
    type R = ParallelParquetWriter;

    async fn build(&self, output_file: OutputFile) -> iceberg::Result<Self::R> {
        let arrow_schema: ArrowSchemaRef = Arc::new(iceberg::arrow::schema_to_arrow_schema(&self.schema)?);
        Ok(ParallelParquetWriter {
            schema: self.schema.clone(),
            arrow_schema,
            properties: self.properties.clone(),
            threads: self.threads,
            sort_order_id: self.sort_order_id,
            output_file,
            open: None,
            rows: 0,
            nan_value_counts: HashMap::new(),
        })
    }
}

/// Bytes the Parquet writer has produced and the sink has not taken yet.
#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuffer {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("buffer"))
    }
}

/// The writers of one top-level column (one per Parquet leaf) in the open row group.
struct ColumnGroup {
    index: usize,
    writers: Vec<ArrowColumnWriter>,
}

/// A file being written.
struct OpenFile {
    file: SerializedFileWriter<SharedBuffer>,
    buffer: SharedBuffer,
    factory: ArrowRowGroupWriterFactory,
    sink: Box<dyn FileWrite>,
    /// The open row group's column writers (`None` between row groups).
    groups: Option<Vec<ColumnGroup>>,
    row_group_rows: usize,
    row_groups: usize,
    /// Slices gathered for the next parallel encode.
    pending: Vec<RecordBatch>,
    pending_rows: usize,
}

/// A Parquet data file written with its columns encoded in parallel.
pub(crate) struct ParallelParquetWriter {
    schema: SchemaRef,
    arrow_schema: ArrowSchemaRef,
    properties: WriterProperties,
    threads: usize,
    sort_order_id: i32,
    output_file: OutputFile,
    open: Option<OpenFile>,
    rows: usize,
    nan_value_counts: HashMap<i32, u64>,
}

fn parquet_error(e: parquet::errors::ParquetError) -> iceberg::Error {
    iceberg::Error::new(iceberg::ErrorKind::Unexpected, "cannot write Parquet").with_source(e)
}

fn io_error(e: std::io::Error) -> iceberg::Error {
    iceberg::Error::new(iceberg::ErrorKind::Unexpected, "cannot write Parquet").with_source(e)
}

impl ParallelParquetWriter {
    async fn open(&mut self) -> iceberg::Result<&mut OpenFile> {
        if self.open.is_none() {
            let buffer = SharedBuffer::default();
            let writer = ArrowWriter::try_new(
                buffer.clone(),
                self.arrow_schema.clone(),
                Some(self.properties.clone()),
            )
            .map_err(parquet_error)?;
            let (file, factory) = writer.into_serialized_writer().map_err(parquet_error)?;
            let sink = self.output_file.writer().await?;
            self.open = Some(OpenFile {
                file,
                buffer,
                factory,
                sink,
                groups: None,
                row_group_rows: 0,
                row_groups: 0,
                pending: Vec::new(),
                pending_rows: 0,
            });
        }
        Ok(self.open.as_mut().expect("opened"))
    }

    fn max_row_group_rows(&self) -> usize {
        self.properties
            .max_row_group_row_count()
            .unwrap_or(usize::MAX)
            .max(1)
    }

    /// Encode the gathered rows into the open row group, every top-level column on a thread of its
    /// own (at most `threads` at once, largest columns first).
    async fn encode_pending(&mut self) -> iceberg::Result<()> {
        let threads = self.threads;
        let fields = self.arrow_schema.fields().clone();
        let open = self.open.as_mut().expect("open file");
        if open.pending_rows == 0 {
            return Ok(());
        }
        let batches = std::mem::take(&mut open.pending);
        open.pending_rows = 0;
        let mut groups = match open.groups.take() {
            Some(g) => g,
            None => column_groups(&open.factory, &self.arrow_schema, open.row_groups)?,
        };
        // The batches' columns, one list per top-level column.
        let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::new(); fields.len()];
        for b in &batches {
            for (i, c) in b.columns().iter().enumerate() {
                columns[i].push(c.clone());
            }
        }
        let encoded = tokio::task::spawn_blocking(move || -> parquet::errors::Result<Vec<ColumnGroup>> {
            // Largest first, so the last task to start is a small one.
            groups.sort_by_key(|g| {
                std::cmp::Reverse(
                    columns[g.index]
                        .iter()
                        .map(|a| a.get_array_memory_size())
                        .sum::<usize>(),
                )
            });
            let queue = Mutex::new(groups.into_iter());
            let done = Mutex::new(Vec::new());
            let failed: Mutex<Option<parquet::errors::ParquetError>> = Mutex::new(None);
            std::thread::scope(|scope| {
                for _ in 0..threads.min(fields.len()).max(1) {
                    scope.spawn(|| loop {
                        let next = queue.lock().expect("queue").next();
                        let Some(mut group) = next else { break };
                        let field = &fields[group.index];
                        let result = (|| {
                            for array in &columns[group.index] {
                                let mut writers = group.writers.iter_mut();
                                for leaf in compute_leaves(field, array)? {
                                    writers
                                        .next()
                                        .ok_or_else(|| {
                                            parquet::errors::ParquetError::General(
                                                "more leaves than column writers".into(),
                                            )
                                        })?
                                        .write(&leaf)?;
                                }
                            }
                            Ok(())
                        })();
                        match result {
                            Ok(()) => done.lock().expect("done").push(group),
                            Err(e) => {
                                failed.lock().expect("failed").get_or_insert(e);
                                break;
                            }
                        }
                    });
                }
            });
            if let Some(e) = failed.into_inner().expect("failed") {
                return Err(e);
            }
            let mut groups = done.into_inner().expect("done");
            groups.sort_by_key(|g| g.index);
            Ok(groups)
        })
        .await
        .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::Unexpected, format!("Parquet encoder: {e}")))?
        .map_err(parquet_error)?;
        open.groups = Some(encoded);
        Ok(())
    }

    /// Close the open row group into the file and hand its bytes to the sink.
    async fn flush_row_group(&mut self) -> iceberg::Result<()> {
        self.encode_pending().await?;
        let open = self.open.as_mut().expect("open file");
        let Some(groups) = open.groups.take() else {
            return Ok(());
        };
        let mut row_group = open.file.next_row_group().map_err(parquet_error)?;
        for group in groups {
            for writer in group.writers {
                writer
                    .close()
                    .map_err(parquet_error)?
                    .append_to_row_group(&mut row_group)
                    .map_err(parquet_error)?;
            }
        }
        row_group.close().map_err(parquet_error)?;
        open.row_groups += 1;
        open.row_group_rows = 0;
        open.file.flush().map_err(io_error)?;
        let bytes = open.buffer.take();
        if !bytes.is_empty() {
            open.sink.write(Bytes::from(bytes)).await?;
        }
        Ok(())
    }
}

/// The column writers of row group `index`, grouped by top-level column (in the order of
/// `schema`'s fields, each with as many writers as it has Parquet leaves).
fn column_groups(
    factory: &ArrowRowGroupWriterFactory,
    schema: &ArrowSchemaRef,
    index: usize,
) -> iceberg::Result<Vec<ColumnGroup>> {
    let mut writers = factory
        .create_column_writers(index)
        .map_err(parquet_error)?
        .into_iter();
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let leaves = leaf_count(f.data_type());
            let group: Vec<ArrowColumnWriter> = writers.by_ref().take(leaves).collect();
            if group.len() != leaves {
                return Err(iceberg::Error::new(
                    iceberg::ErrorKind::Unexpected,
                    "fewer Parquet column writers than leaves",
                ));
            }
            Ok(ColumnGroup {
                index: i,
                writers: group,
            })
        })
        .collect()
}

/// Parquet leaf columns of an Arrow type.
fn leaf_count(data_type: &arrow::datatypes::DataType) -> usize {
    use arrow::datatypes::DataType as D;
    match data_type {
        D::Struct(fields) => fields.iter().map(|f| leaf_count(f.data_type())).sum(),
        D::List(f) | D::LargeList(f) | D::FixedSizeList(f, _) | D::ListView(f) | D::LargeListView(f) => {
            leaf_count(f.data_type())
        }
        D::Map(entries, _) => leaf_count(entries.data_type()),
        D::Dictionary(_, value) => leaf_count(value),
        _ => 1,
    }
}

impl FileWriter for ParallelParquetWriter {
    async fn write(&mut self, batch: &RecordBatch) -> iceberg::Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows();
        count_nans(
            batch.columns(),
            self.arrow_schema.fields(),
            &mut self.nan_value_counts,
        );
        let max_rows = self.max_row_group_rows();
        let mut offset = 0;
        while offset < batch.num_rows() {
            let open = self.open().await?;
            // Split at row-group boundaries as ArrowWriter does; slices, never copies.
            let room = max_rows - open.row_group_rows;
            let take = room.min(batch.num_rows() - offset);
            let slice = batch.slice(offset, take);
            let slice =
                RecordBatch::try_new(self.arrow_schema.clone(), slice.columns().to_vec()).map_err(|e| {
                    iceberg::Error::new(
                        iceberg::ErrorKind::DataInvalid,
                        "a batch does not fit the file's schema",
                    )
                    .with_source(e)
                })?;
            let open = self.open.as_mut().expect("open file");
            open.pending.push(slice);
            open.pending_rows += take;
            open.row_group_rows += take;
            offset += take;
            if open.row_group_rows >= max_rows {
                self.flush_row_group().await?;
            } else if open.pending_rows >= ENCODE_ROWS {
                self.encode_pending().await?;
            }
        }
        Ok(())
    }

    async fn close(mut self) -> iceberg::Result<Vec<DataFileBuilder>> {
        if self.open.is_none() {
            return Ok(Vec::new());
        }
        self.flush_row_group().await?;
        let mut open = self.open.take().expect("open file");
        let metadata = open.file.finish().map_err(parquet_error)?;
        let written = open.file.bytes_written();
        let tail = open.buffer.take();
        if !tail.is_empty() {
            open.sink.write(Bytes::from(tail)).await?;
        }
        open.sink.close().await?;
        let stats = WrittenFileStats::of(&self.schema, &metadata)
            .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e.to_string()))?;
        let mut builder = DataFileBuilder::default();
        builder
            .content(DataContentType::Data)
            .file_path(self.output_file.location().to_string())
            .file_format(DataFileFormat::Parquet)
            .partition(Struct::empty())
            .sort_order_id(self.sort_order_id)
            .record_count(metadata.file_metadata().num_rows() as u64)
            .file_size_in_bytes(written as u64)
            .column_sizes(stats.column_sizes)
            .value_counts(stats.value_counts)
            .null_value_counts(stats.null_value_counts)
            .nan_value_counts(self.nan_value_counts)
            .lower_bounds(stats.lower_bounds)
            .upper_bounds(stats.upper_bounds)
            .split_offsets(Some(
                metadata
                    .row_groups()
                    .iter()
                    .filter_map(|g| g.file_offset())
                    .collect(),
            ));
        Ok(vec![builder])
    }
}

impl CurrentFileStatus for ParallelParquetWriter {
    fn current_file_path(&self) -> String {
        self.output_file.location().to_string()
    }

    fn current_row_num(&self) -> usize {
        self.rows
    }

    fn current_written_size(&self) -> usize {
        match &self.open {
            None => 0,
            Some(open) => {
                let encoding: usize = open
                    .groups
                    .iter()
                    .flatten()
                    .flat_map(|g| g.writers.iter())
                    .map(|w| w.get_estimated_total_bytes())
                    .sum();
                // Rows gathered but not yet encoded (at most ENCODE_ROWS) are not counted.
                open.file.bytes_written() + encoding
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float64Array};
    use iceberg::spec::{ListType, MapType, NestedField, PrimitiveType, Schema, StructType, Type};
    use iceberg::writer::file_writer::ParquetWriterBuilder;
    use parquet::basic::Compression;

    fn schema() -> SchemaRef {
        let p = |t| Box::new(Type::Primitive(t));
        Arc::new(
            Schema::builder()
                .with_fields(vec![
                    NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                    NestedField::optional(2, "name", Type::Primitive(PrimitiveType::String)).into(),
                    NestedField::optional(3, "price", Type::Primitive(PrimitiveType::Double)).into(),
                    NestedField::optional(
                        4,
                        "tags",
                        Type::List(ListType::new(
                            NestedField::list_element(5, *p(PrimitiveType::String), false).into(),
                        )),
                    )
                    .into(),
                    NestedField::optional(
                        6,
                        "props",
                        Type::Struct(StructType::new(vec![
                            NestedField::optional(7, "browser", Type::Primitive(PrimitiveType::String))
                                .into(),
                            NestedField::optional(8, "score", Type::Primitive(PrimitiveType::Int)).into(),
                        ])),
                    )
                    .into(),
                    NestedField::optional(
                        9,
                        "attrs",
                        Type::Map(MapType::new(
                            NestedField::map_key_element(10, Type::Primitive(PrimitiveType::String)).into(),
                            NestedField::map_value_element(11, Type::Primitive(PrimitiveType::Long), false)
                                .into(),
                        )),
                    )
                    .into(),
                    NestedField::optional(12, "day", Type::Primitive(PrimitiveType::Date)).into(),
                    NestedField::optional(13, "ts", Type::Primitive(PrimitiveType::Timestamptz)).into(),
                    NestedField::optional(14, "flag", Type::Primitive(PrimitiveType::Boolean)).into(),
                    NestedField::optional(15, "qty", Type::Primitive(PrimitiveType::Int)).into(),
                    NestedField::optional(16, "ratio", Type::Primitive(PrimitiveType::Float)).into(),
                    NestedField::optional(
                        17,
                        "amount",
                        Type::Primitive(PrimitiveType::Decimal {
                            precision: 10,
                            scale: 2,
                        }),
                    )
                    .into(),
                    NestedField::optional(18, "blob", Type::Primitive(PrimitiveType::Binary)).into(),
                    NestedField::optional(19, "at", Type::Primitive(PrimitiveType::Time)).into(),
                    NestedField::optional(20, "uid", Type::Primitive(PrimitiveType::Uuid)).into(),
                    NestedField::optional(21, "code", Type::Primitive(PrimitiveType::Fixed(4))).into(),
                    NestedField::optional(22, "local", Type::Primitive(PrimitiveType::Timestamp)).into(),
                ])
                .build()
                .unwrap(),
        )
    }

    /// `n` rows as NDJSON-decoded batches of uneven sizes, with NULLs, NaNs and long strings.
    fn batches(schema: &SchemaRef, n: usize) -> Vec<RecordBatch> {
        let arrow_schema = Arc::new(iceberg::arrow::schema_to_arrow_schema(schema).unwrap());
        let mut text = String::new();
        for i in 0..n {
            let name = match i % 7 {
                0 => "null".to_string(),
                1 => format!("\"{}\"", "x".repeat(i % 300)),
                _ => format!("\"user-{}\"", i % 997),
            };
            text.push_str(&format!(
                r#"{{"id":{i},"name":{name},"price":0,"tags":{},"props":{},"attrs":{{"k{}":{i}}},"day":"2024-01-{:02}","ts":"2024-01-01T00:00:{:02}Z"}}"#,
                if i % 5 == 0 { "null".to_string() } else { format!("[\"a{}\", \"b\"]", i % 13) },
                if i % 11 == 0 { "null".to_string() } else { format!("{{\"browser\":\"br{}\",\"score\":{}}}", i % 3, i % 100) },
                i % 4,
                1 + i % 28,
                i % 60,
            ));
            text.push('\n');
        }
        // JSON carries the first 8 columns; the rest are built below.
        let json_schema = Arc::new(arrow::datatypes::Schema::new(arrow_schema.fields()[..8].to_vec()));
        let reader = arrow::json::ReaderBuilder::new(json_schema)
            .with_batch_size(7_001)
            .build(std::io::Cursor::new(text))
            .unwrap();
        reader
            .map(|b| {
                let b = b.unwrap();
                let start = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .unwrap()
                    .value(0);
                let price: Float64Array = (0..b.num_rows() as i64)
                    .map(|j| match (start + j) % 9 {
                        0 => None,
                        1 => Some(f64::NAN),
                        k => Some((start + j) as f64 * 0.25 - k as f64),
                    })
                    .collect();
                let mut columns = b.columns().to_vec();
                columns[2] = Arc::new(price);
                // The primitive types JSON does not carry, built directly: every type floe writes.
                let n = b.num_rows();
                let value = |j: usize| start as usize + j;
                let null = |j: usize| value(j) % 6 == 0;
                for field in arrow_schema.fields().iter().skip(8) {
                    use arrow::array::*;
                    use arrow::datatypes::{DataType as D, TimeUnit};
                    let array: ArrayRef = match field.data_type() {
                        D::Boolean => Arc::new(
                            (0..n)
                                .map(|j| (!null(j)).then_some(value(j) % 3 == 0))
                                .collect::<BooleanArray>(),
                        ),
                        D::Int32 => Arc::new(
                            (0..n)
                                .map(|j| (!null(j)).then_some(value(j) as i32 % 1000 - 500))
                                .collect::<Int32Array>(),
                        ),
                        D::Float32 => Arc::new(
                            (0..n)
                                .map(|j| match value(j) % 7 {
                                    0 => None,
                                    1 => Some(f32::NAN),
                                    k => Some(k as f32 * -1.5),
                                })
                                .collect::<Float32Array>(),
                        ),
                        D::Decimal128(p, sc) => Arc::new(
                            (0..n)
                                .map(|j| (!null(j)).then_some(value(j) as i128 * 37 - 5_000_000))
                                .collect::<Decimal128Array>()
                                .with_precision_and_scale(*p, *sc)
                                .unwrap(),
                        ),
                        D::LargeBinary => Arc::new(
                            (0..n)
                                .map(|j| (!null(j)).then(|| vec![(value(j) % 251) as u8; value(j) % 5]))
                                .collect::<LargeBinaryArray>(),
                        ),
                        D::Binary => Arc::new(
                            (0..n)
                                .map(|j| (!null(j)).then(|| vec![(value(j) % 251) as u8; value(j) % 5]))
                                .collect::<BinaryArray>(),
                        ),
                        D::Time64(TimeUnit::Microsecond) => Arc::new(
                            (0..n)
                                .map(|j| (!null(j)).then_some((value(j) as i64 * 1_000_003) % 86_400_000_000))
                                .collect::<Time64MicrosecondArray>(),
                        ),
                        D::FixedSizeBinary(width) => Arc::new(
                            FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                                (0..n).map(|j| {
                                    (!null(j)).then(|| {
                                        (0..*width as usize)
                                            .map(|k| ((value(j) * 31 + k) % 256) as u8)
                                            .collect::<Vec<u8>>()
                                    })
                                }),
                                *width,
                            )
                            .unwrap(),
                        ),
                        D::Timestamp(TimeUnit::Microsecond, None) => Arc::new(
                            (0..n)
                                .map(|j| (!null(j)).then_some(1_700_000_000_000_000 + value(j) as i64 * 977))
                                .collect::<TimestampMicrosecondArray>(),
                        ),
                        other => panic!("no test values for {other}"),
                    };
                    columns.push(array);
                }
                RecordBatch::try_new(arrow_schema.clone(), columns).unwrap()
            })
            .collect()
    }

    async fn write<B: FileWriterBuilder>(
        builder: B,
        path: &str,
        batches: &[RecordBatch],
    ) -> iceberg::spec::DataFile {
        let io = crate::storage::ObjectStorage::new(Default::default()).file_io();
        let mut w = builder.build(io.new_output(path).unwrap()).await.unwrap();
        for b in batches {
            w.write(b).await.unwrap();
        }
        let mut files = w.close().await.unwrap();
        assert_eq!(files.len(), 1);
        files.remove(0).partition_spec_id(0).build().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_the_bytes_and_statistics_of_iceberg_rusts_single_threaded_writer() {
        let schema = schema();
        let batches = batches(&schema, 300_000);
        let dir = tempfile::tempdir().unwrap();
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(100_000))
            .set_column_dictionary_enabled("id".into(), false)
            .build();
        let ours = dir.path().join("parallel.parquet").display().to_string();
        let theirs = dir.path().join("iceberg.parquet").display().to_string();
        let a = write(
            ParallelParquetWriterBuilder::new(properties.clone(), schema.clone(), 4, 0),
            &ours,
            &batches,
        )
        .await;
        let b = write(
            ParquetWriterBuilder::new(properties, schema.clone()),
            &theirs,
            &batches,
        )
        .await;
        assert!(
            std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap(),
            "the files differ byte for byte"
        );
        assert_eq!(a.record_count(), 300_000);
        assert_eq!(a.record_count(), b.record_count());
        assert_eq!(a.file_size_in_bytes(), b.file_size_in_bytes());
        assert_eq!(a.column_sizes(), b.column_sizes());
        assert_eq!(a.value_counts(), b.value_counts());
        assert_eq!(a.null_value_counts(), b.null_value_counts());
        assert_eq!(a.nan_value_counts(), b.nan_value_counts());
        assert_eq!(
            a.nan_value_counts().get(&3),
            Some(&((0..300_000u64).filter(|i| i % 9 == 1).count() as u64))
        );
        // Equal bounds, but for the long strings Parquet truncates: iceberg-rust drops a truncated
        // row group's bound and keeps the others' (an upper bound below values in the file); floe
        // keeps the truncated bounds, which cover every value.
        let without_names = |m: &HashMap<i32, iceberg::spec::Datum>| {
            let mut m = m.clone();
            m.remove(&2);
            m
        };
        assert_eq!(without_names(a.lower_bounds()), without_names(b.lower_bounds()));
        assert_eq!(without_names(a.upper_bounds()), without_names(b.upper_bounds()));
        let names: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let a = b
                    .column(1)
                    .as_any()
                    .downcast_ref::<arrow::array::StringArray>()
                    .unwrap();
                a.iter().flatten().map(str::to_string).collect::<Vec<_>>()
            })
            .collect();
        let (lo, hi) = (names.iter().min().unwrap(), names.iter().max().unwrap());
        let bound = |d: &iceberg::spec::Datum| match d.literal() {
            iceberg::spec::PrimitiveLiteral::String(s) => s.clone(),
            other => panic!("not a string bound: {other:?}"),
        };
        assert!(bound(&a.lower_bounds()[&2]) <= *lo);
        assert!(
            bound(&a.upper_bounds()[&2]) >= *hi,
            "the upper bound covers the longest name"
        );
        assert!(
            b.upper_bounds().get(&2).is_none_or(|d| bound(d) < *hi),
            "iceberg-rust's does not"
        );
        assert_eq!(a.split_offsets(), b.split_offsets());
        assert_eq!(a.split_offsets().map(|s| s.len()), Some(3), "three row groups");
        assert!(a.lower_bounds().contains_key(&1) && a.upper_bounds().contains_key(&2));
        for id in 14..=22 {
            assert!(
                a.lower_bounds().contains_key(&id) && a.upper_bounds().contains_key(&id),
                "bounds of {id}"
            );
        }
        assert_eq!(
            a.nan_value_counts().get(&16),
            Some(&((0..300_000u64).filter(|i| i % 7 == 1).count() as u64))
        );
        assert!(batches.iter().all(|b| b.column(2).null_count() > 0));
    }
}
