//! Writing Arrow record batches into Parquet data files of a table: batches are conformed to the
//! table's schema (a mismatch is an error, never a silent cast), sorted by the table's sort order
//! when it has one (across the whole write, in bounded memory: [`super::sorter`]), split by
//! partition, and rolled into files of a target size. Column statistics and the sort order's id land
//! in each `DataFile` for the manifests.

use arrow::array::{new_null_array, Array, ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef as ArrowSchemaRef};
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{DataFile, DataFileFormat, PartitionKey};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::unpartitioned_writer::UnpartitionedWriter;
use iceberg::writer::partitioning::PartitioningWriter;
use uuid::Uuid;

use super::encoding::Codec;
use super::parallel_parquet::ParallelParquetWriterBuilder;
use super::sorter::Sorter;
use super::Table;
use crate::catalog::TableName;
use crate::error::{Error, ErrorKind, Result};

type FileWriterBuilder =
    DataFileWriterBuilder<ParallelParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

enum Inner {
    Unpartitioned(Box<UnpartitionedWriter<FileWriterBuilder>>),
    Partitioned(Box<(FanoutWriter<FileWriterBuilder>, RecordBatchPartitionSplitter)>),
}

/// Writes batches into new data files of one table; `close` returns the files (not yet committed).
/// The file writers start at the first batch, whose values decide each column's encoding. A table
/// with a sort order has its rows sorted first: they reach the files only at `close`, all of them in
/// order.
pub(crate) struct DataWriter {
    table: Table,
    target_file_size: usize,
    codec: Codec,
    target: ArrowSchemaRef,
    sorter: Option<Sorter>,
    inner: Option<Inner>,
}

impl DataWriter {
    pub(crate) fn new(table: &Table, target_file_size: usize) -> Result<Self> {
        let target = table.arrow_schema()?;
        Ok(Self {
            table: table.clone(),
            target_file_size,
            codec: Codec::of_table(table)?,
            sorter: Sorter::for_table(table, &target)?,
            target,
            inner: None,
        })
    }

    fn start(&self, first: &RecordBatch) -> Result<Inner> {
        let metadata = self.table.metadata();
        let schema = metadata.current_schema().clone();
        let parquet = ParallelParquetWriterBuilder::new(
            self.codec.writer_properties(first),
            schema.clone(),
            crate::resources::cores(),
            metadata.default_sort_order_id() as i32,
        );
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            self.target_file_size,
            self.table.storage().file_io(),
            DefaultLocationGenerator::new(metadata)?,
            DefaultFileNameGenerator::new(Uuid::now_v7().to_string(), None, DataFileFormat::Parquet),
        );
        let builder = DataFileWriterBuilder::new(rolling);
        let spec = metadata.default_partition_spec().clone();
        Ok(if spec.is_unpartitioned() {
            Inner::Unpartitioned(Box::new(UnpartitionedWriter::new(builder)))
        } else {
            let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)?;
            Inner::Partitioned(Box::new((FanoutWriter::new(builder), splitter)))
        })
    }

    pub(crate) async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = conform(self.table.name(), &batch, &self.target)?;
        match &mut self.sorter {
            Some(sorter) => sorter.push(batch).await,
            None => self.write_now(batch).await,
        }
    }

    /// Write a conformed batch into the files.
    async fn write_now(&mut self, batch: RecordBatch) -> Result<()> {
        let inner = match &mut self.inner {
            Some(inner) => inner,
            None => {
                let inner = self.start(&batch)?;
                self.inner.insert(inner)
            }
        };
        match inner {
            Inner::Unpartitioned(w) => w.write(batch).await?,
            Inner::Partitioned(parts) => {
                let (w, splitter) = &mut **parts;
                for (key, part) in splitter.split(&batch)? {
                    let key: PartitionKey = key;
                    w.write(key, part).await?;
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn close(mut self) -> Result<Vec<DataFile>> {
        if let Some(sorter) = self.sorter.take() {
            let mut sorted = sorter.finish();
            while let Some(batch) = futures::StreamExt::next(&mut sorted).await {
                self.write_now(batch?).await?;
            }
        }
        Ok(match self.inner {
            None => Vec::new(),
            Some(Inner::Unpartitioned(w)) => w.close().await?,
            Some(Inner::Partitioned(parts)) => parts.0.close().await?,
        })
    }
}

/// Rows a write takes on one encoder before a second one starts: small writes stay in one file,
/// large ones encode Parquet on every core.
const PARALLEL_AFTER_ROWS: u64 = 256 * 1024;

/// Batches waiting per encoder (back-pressure on the producer).
const QUEUED_BATCHES: usize = 4;

/// A [`DataWriter`] per core, each on a task of its own, fed round-robin: Parquet encoding (the
/// CPU-heavy part of a write) runs beside whatever produces the batches. Starts with one encoder and
/// adds the others once the write is large (small writes make one file, as before). A table with a
/// sort order keeps to one writer: its rows are sorted across the whole write, and each file still
/// encodes its columns on every core.
pub(crate) struct ParallelWriter {
    table: Table,
    target_file_size: usize,
    max_writers: usize,
    senders: Vec<tokio::sync::mpsc::Sender<RecordBatch>>,
    tasks: Vec<tokio::task::JoinHandle<(Vec<DataFile>, Result<()>)>>,
    next: usize,
    rows: u64,
}

impl ParallelWriter {
    pub(crate) fn new(table: &Table, target_file_size: usize) -> Result<Self> {
        let mut w = Self {
            table: table.clone(),
            target_file_size,
            // Each file's columns already encode on every core; a second file on top still gained
            // 12% on 2 cores (6 M rows: 1.44 s against 1.65 s, 2026-12-07): the producer, the
            // conforming and the row-group assembly run beside the other file's encoding.
            max_writers: if table.metadata().default_sort_order().is_unsorted() {
                crate::resources::cores().clamp(1, 4)
            } else {
                1
            },
            senders: Vec::new(),
            tasks: Vec::new(),
            next: 0,
            rows: 0,
        };
        w.add_writer()?;
        Ok(w)
    }

    fn add_writer(&mut self) -> Result<()> {
        let mut writer = DataWriter::new(&self.table, self.target_file_size)?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(QUEUED_BATCHES);
        self.senders.push(tx);
        self.tasks.push(tokio::spawn(async move {
            let mut result = Ok(());
            while let Some(batch) = rx.recv().await {
                if let Err(e) = writer.write(batch).await {
                    result = Err(e);
                    break;
                }
            }
            drop(rx); // the producer's next send fails: it stops and closes
            match writer.close().await {
                Ok(files) => (files, result),
                Err(e) => (Vec::new(), result.and(Err(e))),
            }
        }));
        Ok(())
    }

    /// Queue a batch. An error means an encoder stopped; [`ParallelWriter::close`] says why.
    pub(crate) async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        if self.rows > PARALLEL_AFTER_ROWS && self.senders.len() < self.max_writers {
            self.add_writer()?;
        }
        let i = self.next % self.senders.len();
        self.next += 1;
        self.senders[i]
            .send(batch)
            .await
            .map_err(|_| Error::internal(format!("a data writer of {} stopped", self.table.name())))
    }

    /// Finish every file: the files written (also on failure, for cleanup) and the first error.
    pub(crate) async fn close(self) -> (Vec<DataFile>, Result<()>) {
        drop(self.senders);
        let mut files = Vec::new();
        let mut result = Ok(());
        for t in self.tasks {
            match t.await {
                Ok((f, r)) => {
                    files.extend(f);
                    if result.is_ok() {
                        result = r;
                    }
                }
                Err(e) => {
                    if result.is_ok() {
                        result = Err(Error::internal(format!("data writer task: {e}")));
                    }
                }
            }
        }
        (files, result)
    }
}

/// Make `batch` carry exactly the table's columns, in the table's order and types. Widening casts
/// (int → long, float → double, any string or timestamp representation to the table's) are applied;
/// a missing required column, an unknown column, or an incompatible type is an error.
pub(crate) fn conform(
    table: &TableName,
    batch: &RecordBatch,
    target: &ArrowSchemaRef,
) -> Result<RecordBatch> {
    let input = batch.schema();
    let mismatch = |msg: String| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("schema does not match table {table}: {msg}"),
        )
    };
    for f in input.fields() {
        if target.field_with_name(f.name()).is_err() {
            return Err(mismatch(format!("column {:?} is not in the table", f.name())));
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let column = match input.index_of(field.name()) {
            Ok(i) => {
                let col = batch.column(i);
                let col = if col.data_type() == field.data_type() {
                    col.clone()
                } else if widening(col.data_type(), field.data_type()) {
                    cast(col, field.data_type())?
                } else {
                    return Err(mismatch(format!(
                        "column {:?} is {} but the table has {}",
                        field.name(),
                        col.data_type(),
                        field.data_type()
                    )));
                };
                if !field.is_nullable() && col.null_count() > 0 {
                    return Err(mismatch(format!(
                        "column {:?} is required but has nulls",
                        field.name()
                    )));
                }
                col
            }
            Err(_) if field.is_nullable() => new_null_array(field.data_type(), batch.num_rows()),
            Err(_) => return Err(mismatch(format!("required column {:?} is missing", field.name()))),
        };
        columns.push(column);
    }
    Ok(RecordBatch::try_new(target.clone(), columns)?)
}

pub(crate) fn widening(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let stringy = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    let binary = |t: &DataType| matches!(t, Binary | LargeBinary | BinaryView);
    match (from, to) {
        (Null, _) => true,
        (Dictionary(_, v), t) => v.as_ref() == t || widening(v, t),
        (a, b) if stringy(a) && stringy(b) => true,
        (a, b) if binary(a) && binary(b) => true,
        (Int8 | Int16 | Int32 | UInt8 | UInt16, Int32 | Int64) => true,
        (UInt32, Int64) => true,
        (Float16 | Float32, Float32 | Float64) => true,
        // Any unit, as long as both have a zone or neither does (the zone itself is only a label).
        (Timestamp(_, tz1), Timestamp(_, tz2)) => tz1.is_some() == tz2.is_some(),
        (Decimal128(p1, s1), Decimal128(p2, s2)) => s1 == s2 && p1 <= p2,
        _ => false,
    }
}

/// Write a stream of batches into new data files of `table` (not committed), encoding on every
/// core. On error the files written so far are deleted.
pub(crate) async fn write_batches(
    table: &Table,
    mut batches: futures::stream::BoxStream<'_, Result<RecordBatch>>,
    target_file_size: usize,
) -> Result<Vec<DataFile>> {
    use futures::StreamExt;
    let mut writer = ParallelWriter::new(table, target_file_size)?;
    let mut failure = None;
    while let Some(batch) = batches.next().await {
        match batch {
            Ok(batch) => {
                if writer.write(batch).await.is_err() {
                    break; // an encoder failed: `close` reports why
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let (files, result) = writer.close().await;
    if let Err(e) = failure.map_or(result, Err) {
        crate::storage::delete_quietly(table.storage(), crate::table::transaction::paths_of(&files)).await;
        return Err(e);
    }
    Ok(files)
}
