//! Executors write: the plan node that writes each output partition's rows as Parquet data files of
//! a table, on the executor that computes them, through floe's writer (the table's field ids,
//! encoding, target file size, partition spec and sort order), and returns only the files' entries.
//!
//! The driver wraps a stage query's logical plan in [`WriteFiles`]; floe's logical codec carries it to
//! the scheduler, whose query planner ([`query_planner`]) plans it as [`WriteFilesExec`] above the
//! query's physical plan; floe's physical codec carries that to the executors, which fill in their
//! own storage settings. Each partition's task emits one row: (partition, partitions, attempt, rows,
//! files, checked sum, tallies), where `attempt` is fresh for every execution of the task, so that
//! the driver ([`collect_attempts`]) keeps exactly one attempt per partition and deletes the files of
//! any other (Ballista can hand back a lost task's results twice).

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;
use futures::StreamExt;
use iceberg::spec::TableMetadata;
use serde::{Deserialize, Serialize};

use crate::catalog::TableName;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::ObjectStorage;
use crate::table::Table;

use super::DescribedFiles;

/// What an executor needs to write a table's files: the table as the driver loaded it, the target
/// file size, and the columns whose values the driver checks ([`DescribedFiles`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WriteTarget {
    pub name: String,
    pub metadata_location: String,
    pub metadata: TableMetadata,
    pub target_file_size: usize,
    /// An Int64 column summed over the rows written (the runner's aggregate check).
    pub summed_column: Option<String>,
    /// A text column whose values are counted (reject reasons).
    pub tallied_column: Option<String>,
}

impl WriteTarget {
    pub(crate) fn new(table: &Table, target_file_size: usize) -> Self {
        Self {
            name: table.name().to_string(),
            metadata_location: table.metadata_location().to_string(),
            metadata: table.metadata().clone(),
            target_file_size,
            summed_column: None,
            tallied_column: None,
        }
    }

    pub(crate) fn encode(&self) -> Result<String> {
        serde_json::to_string(self)
            .map_err(|e| Error::internal(format!("encoding the write of {}: {e}", self.name)))
    }

    fn decode(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::internal(format!("decoding a cluster write: {e}")))
    }

    /// The table on this process, reaching the warehouse with `storage`.
    pub(crate) fn table(&self, storage: ObjectStorage) -> Result<Table> {
        Ok(Table::detached(
            TableName::parse(&self.name)?,
            self.metadata_location.clone(),
            Arc::new(self.metadata.clone()),
            storage,
        ))
    }
}

/// The row each partition's task emits.
pub(crate) fn result_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::UInt32, false),
        Field::new("partitions", DataType::UInt32, false),
        Field::new("attempt", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        // A JSON array of the files' entries (Iceberg's data-file JSON), deflated: column bounds
        // and counts of every column make each entry a few kilobytes of repetitive text.
        Field::new("files", DataType::Binary, false),
        Field::new("summed", DataType::Int64, true),
        // A JSON object: value → count.
        Field::new("tallies", DataType::Utf8, true),
    ]))
}

/// The logical node: write `input`'s rows as files of the target table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct WriteFiles {
    input: LogicalPlan,
    /// [`WriteTarget`] as JSON (what travels to the scheduler).
    target: String,
    schema: DFSchemaRef,
}

impl WriteFiles {
    /// `input` written into `target`, as a plan whose rows are the written files.
    pub(crate) fn plan(input: LogicalPlan, target: &WriteTarget) -> Result<LogicalPlan> {
        Ok(LogicalPlan::Extension(Extension {
            node: Arc::new(Self::new(input, target.encode()?)?),
        }))
    }

    fn new(input: LogicalPlan, target: String) -> datafusion::common::Result<Self> {
        let schema = Arc::new(DFSchema::try_from(result_schema())?);
        Ok(Self {
            input,
            target,
            schema,
        })
    }
}

impl PartialOrd for WriteFiles {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.target.partial_cmp(&other.target)
    }
}

impl UserDefinedLogicalNodeCore for WriteFiles {
    fn name(&self) -> &str {
        "FloeWriteFiles"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let name = WriteTarget::decode(&self.target)
            .map(|t| t.name)
            .unwrap_or_default();
        write!(f, "FloeWriteFiles: {name}")
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> datafusion::common::Result<Self> {
        let input = inputs
            .pop()
            .ok_or_else(|| DataFusionError::Internal("FloeWriteFiles needs its input".into()))?;
        Self::new(input, self.target.clone())
    }
}

/// The physical node: runs on the executors, one task per partition of its input.
#[derive(Debug)]
pub(crate) struct WriteFilesExec {
    input: Arc<dyn ExecutionPlan>,
    target: String,
    /// How this process reaches the warehouse (set where the plan executes: the executors).
    storage: Option<ObjectStorage>,
    properties: Arc<PlanProperties>,
}

impl WriteFilesExec {
    fn new(input: Arc<dyn ExecutionPlan>, target: String, storage: Option<ObjectStorage>) -> Self {
        let partitions = input.output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(result_schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            input,
            target,
            storage,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for WriteFilesExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let name = WriteTarget::decode(&self.target)
            .map(|t| t.name)
            .unwrap_or_default();
        write!(f, "FloeWriteFilesExec: {name}")
    }
}

impl ExecutionPlan for WriteFilesExec {
    fn name(&self) -> &'static str {
        "FloeWriteFilesExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // A round-robin repartition would be one more shuffle on the cluster.
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("FloeWriteFilesExec needs its input".into()))?;
        Ok(Arc::new(Self::new(
            input,
            self.target.clone(),
            self.storage.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> datafusion::common::Result<SendableRecordBatchStream> {
        let storage = self.storage.clone().ok_or_else(|| {
            DataFusionError::Internal(
                "FloeWriteFilesExec runs on a floe executor (it has no warehouse here)".into(),
            )
        })?;
        let target = WriteTarget::decode(&self.target).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let partitions = self.input.output_partitioning().partition_count();
        let input = self.input.execute(partition, context)?;
        let written = async move {
            let table = target.table(storage)?;
            let rows = input
                .map(|b| b.map_err(|e| Error::new(ErrorKind::Engine, format!("cluster task: {e}"))))
                .boxed();
            write_rows(&target, &table, rows, partition, partitions).await
        };
        let written = async move { written.await.map_err(|e| DataFusionError::External(Box::new(e))) };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            result_schema(),
            futures::stream::once(written),
        )))
    }
}

/// Write one partition's rows into new files of `table`; the result row describes the files.
pub(crate) async fn write_rows(
    target: &WriteTarget,
    table: &Table,
    rows: crate::pipeline::engine::Rows,
    partition: usize,
    partitions: usize,
) -> Result<RecordBatch> {
    let attempt = uuid::Uuid::now_v7().to_string();
    let counts = Arc::new(std::sync::Mutex::new(Tally::default()));
    let rows = {
        let counts = counts.clone();
        let summed = target.summed_column.clone();
        let tallied = target.tallied_column.clone();
        rows.map(move |b| {
            let b = b?;
            counts
                .lock()
                .expect("tally")
                .add(&b, summed.as_deref(), tallied.as_deref())?;
            Ok(b)
        })
        .boxed()
    };
    let files = crate::table::writer::write_batches(table, rows, target.target_file_size).await?;
    let tally = std::mem::take(&mut *counts.lock().expect("tally"));
    let metadata = table.metadata();
    let spec = metadata.default_partition_spec();
    let partition_type = spec.partition_type(metadata.current_schema())?;
    let entries = files
        .into_iter()
        .map(|f| iceberg::spec::serialize_data_file_to_json(f, &partition_type, metadata.format_version()))
        .collect::<std::result::Result<Vec<String>, _>>()?;
    let files_json = deflate(format!("[{}]", entries.join(",")).as_bytes())?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from(vec![partition as u32])),
        Arc::new(UInt32Array::from(vec![partitions as u32])),
        Arc::new(StringArray::from(vec![attempt])),
        Arc::new(UInt64Array::from(vec![tally.rows])),
        Arc::new(BinaryArray::from(vec![files_json.as_slice()])),
        Arc::new(Int64Array::from(vec![tally.summed])),
        Arc::new(StringArray::from(vec![tally
            .tallied
            .map(|t| serde_json::to_string(&t).unwrap_or_default())])),
    ];
    Ok(RecordBatch::try_new(result_schema(), columns)?)
}

/// What a task counts as its rows pass.
#[derive(Default)]
struct Tally {
    rows: u64,
    summed: Option<i64>,
    tallied: Option<BTreeMap<String, u64>>,
}

impl Tally {
    fn add(&mut self, b: &RecordBatch, summed: Option<&str>, tallied: Option<&str>) -> Result<()> {
        self.rows += b.num_rows() as u64;
        if let Some(column) = summed {
            let values = b
                .column_by_name(column)
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
                .ok_or_else(|| Error::internal(format!("rows without an Int64 {column}")))?;
            *self.summed.get_or_insert(0) += values.iter().flatten().sum::<i64>();
        }
        if let Some(column) = tallied {
            let tally = self.tallied.get_or_insert_with(BTreeMap::new);
            if let Some(c) = b.column_by_name(column) {
                let text = arrow::compute::cast(c, &DataType::Utf8)?;
                let text = text
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| Error::internal(format!("{column} is not text")))?;
                for v in text.iter().flatten() {
                    *tally.entry(v.to_string()).or_default() += 1;
                }
            }
        }
        Ok(())
    }
}

/// The result rows of one write job, one attempt kept per partition. Files of every other attempt
/// are deleted; a partition without any result is an error (its task's results were lost).
pub(crate) async fn collect_attempts(table: &Table, batches: &[RecordBatch]) -> Result<DescribedFiles> {
    let metadata = table.metadata();
    let spec = metadata.default_partition_spec();
    let schema = metadata.current_schema();
    let partition_type = spec.partition_type(schema)?;
    let mut kept: BTreeMap<u32, String> = BTreeMap::new();
    let mut partitions = None;
    let mut written = DescribedFiles::default();
    let mut discarded: Vec<String> = Vec::new();
    for b in batches {
        written.received_bytes += ipc_bytes(b);
        let col = |name: &str| -> Result<&ArrayRef> {
            b.column_by_name(name)
                .ok_or_else(|| Error::internal(format!("cluster write result without {name}")))
        };
        let part = downcast::<UInt32Array>(col("partition")?)?;
        let total = downcast::<UInt32Array>(col("partitions")?)?;
        let attempt = downcast::<StringArray>(col("attempt")?)?;
        let rows = downcast::<UInt64Array>(col("rows")?)?;
        let files = downcast::<BinaryArray>(col("files")?)?;
        let summed = downcast::<Int64Array>(col("summed")?)?;
        let tallies = downcast::<StringArray>(col("tallies")?)?;
        for i in 0..b.num_rows() {
            partitions = Some(total.value(i));
            let json = inflate(files.value(i))?;
            let entries: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&json)
                .map_err(|e| Error::internal(format!("cluster write result: {e}")))?;
            let mut data = Vec::with_capacity(entries.len());
            for e in entries {
                data.push(iceberg::spec::deserialize_data_file_from_json(
                    e.get(),
                    spec.spec_id(),
                    &partition_type,
                    schema,
                )?);
            }
            if kept.get(&part.value(i)).is_some_and(|a| a != attempt.value(i)) {
                // Another attempt of a partition already kept: its files go.
                discarded.extend(data.iter().map(|d| d.file_path().to_string()));
                continue;
            }
            kept.insert(part.value(i), attempt.value(i).to_string());
            written.rows += rows.value(i);
            if summed.is_valid(i) {
                *written.summed.get_or_insert(0) += summed.value(i);
            }
            if tallies.is_valid(i) {
                let t: BTreeMap<String, u64> = serde_json::from_str(tallies.value(i))
                    .map_err(|e| Error::internal(format!("cluster write result: {e}")))?;
                for (k, n) in t {
                    *written.tallies.entry(k).or_default() += n;
                }
            }
            written.files.extend(data);
        }
    }
    if !discarded.is_empty() {
        tracing::warn!(
            "{}: the cluster returned {} files of repeated task attempts; deleting them",
            table.name(),
            discarded.len()
        );
        crate::storage::delete_quietly(table.storage(), discarded).await;
    }
    let expected = partitions.unwrap_or(0);
    if let Some(missing) = (0..expected).find(|p| !kept.contains_key(p)) {
        let paths = written.files.iter().map(|f| f.file_path().to_string()).collect();
        crate::storage::delete_quietly(table.storage(), paths).await;
        return Err(Error::new(
            ErrorKind::Engine,
            format!(
                "{}: {LOST_PARTITION} {missing} of {expected}; its task's results were lost",
                table.name()
            ),
        ));
    }
    Ok(written)
}

/// The words of the error [`collect_attempts`] gives when a partition's results are missing.
pub(crate) const LOST_PARTITION: &str = "the cluster returned no written files for partition";

fn deflate(bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut w = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    w.write_all(bytes)?;
    Ok(w.finish()?)
}

fn inflate(bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

fn downcast<T: 'static>(a: &ArrayRef) -> Result<&T> {
    a.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| Error::internal("cluster write result of an unexpected type"))
}

/// The Arrow IPC size of `batch`: what crossing the network as a Flight payload costs.
pub(crate) fn ipc_bytes(batch: &RecordBatch) -> u64 {
    let mut out = Vec::new();
    let written = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).and_then(|mut w| {
        w.write(batch)?;
        w.finish()
    });
    match written {
        Ok(()) => out.len() as u64,
        Err(_) => batch.get_array_memory_size() as u64,
    }
}

/// The scheduler's query planner: DataFusion's, which also plans [`WriteFiles`].
pub(crate) fn query_planner() -> Arc<dyn QueryPlanner + Send + Sync> {
    Arc::new(FloeQueryPlanner)
}

#[derive(Debug)]
struct FloeQueryPlanner;

#[async_trait]
impl QueryPlanner for FloeQueryPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        state: &SessionState,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(WriteFilesPlanner)])
            .create_physical_plan(plan, state)
            .await
    }
}

struct WriteFilesPlanner;

#[async_trait]
impl ExtensionPlanner for WriteFilesPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _state: &SessionState,
    ) -> datafusion::common::Result<Option<Arc<dyn ExecutionPlan>>> {
        if let Some(extract) = node
            .as_any()
            .downcast_ref::<crate::ingest::on_cluster::ExtractUnit>()
        {
            return Ok(Some(extract.planned()));
        }
        let Some(write) = node.as_any().downcast_ref::<WriteFiles>() else {
            return Ok(None);
        };
        let input = physical_inputs
            .first()
            .ok_or_else(|| DataFusionError::Internal("FloeWriteFiles needs its input".into()))?;
        Ok(Some(Arc::new(WriteFilesExec::new(
            input.clone(),
            write.target.clone(),
            None,
        ))))
    }
}

/// What starts an encoded [`WriteFiles`] or [`WriteFilesExec`] (Ballista's own nodes are protobuf
/// messages, which never start with these bytes: field 0 does not exist).
const MAGIC: &[u8] = b"\0floe-write-files\0";

/// What starts an encoded extraction unit ([`crate::ingest::on_cluster`]).
pub(crate) const EXTRACT_MAGIC: &[u8] = b"\0floe-extract-unit\0";

fn encoded_target(buf: &[u8]) -> Option<datafusion::common::Result<String>> {
    encoded_text(buf, MAGIC)
}

/// A node of floe's as its codecs encode it: `magic`, then its text.
fn encode_node(buf: &mut Vec<u8>, magic: &[u8], text: &str) {
    buf.extend_from_slice(magic);
    buf.extend_from_slice(text.as_bytes());
}

/// The text after `magic`, when `buf` starts with it.
pub(crate) fn encoded_text(buf: &[u8], magic: &[u8]) -> Option<datafusion::common::Result<String>> {
    let rest = buf.strip_prefix(magic)?;
    Some(
        String::from_utf8(rest.to_vec())
            .map_err(|e| DataFusionError::Internal(format!("FloeWriteFiles: {e}"))),
    )
}

/// Ballista's logical codec, which also carries [`WriteFiles`].
#[derive(Debug, Default)]
pub(crate) struct FloeLogicalCodec {
    inner: ballista_core::serde::BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for FloeLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> datafusion::common::Result<Extension> {
        if let Some(job) = encoded_text(buf, EXTRACT_MAGIC) {
            return Ok(Extension {
                node: Arc::new(crate::ingest::on_cluster::ExtractUnit::new(job?)?),
            });
        }
        match encoded_target(buf) {
            Some(target) => {
                let input = inputs
                    .first()
                    .cloned()
                    .ok_or_else(|| DataFusionError::Internal("FloeWriteFiles needs its input".into()))?;
                Ok(Extension {
                    node: Arc::new(WriteFiles::new(input, target?)?),
                })
            }
            None => self.inner.try_decode(buf, inputs, ctx),
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> datafusion::common::Result<()> {
        if let Some(extract) = node
            .node
            .as_any()
            .downcast_ref::<crate::ingest::on_cluster::ExtractUnit>()
        {
            encode_node(buf, EXTRACT_MAGIC, extract.job());
            return Ok(());
        }
        match node.node.as_any().downcast_ref::<WriteFiles>() {
            Some(write) => {
                encode_node(buf, MAGIC, &write.target);
                Ok(())
            }
            None => self.inner.try_encode(node, buf),
        }
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &datafusion::sql::TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> datafusion::common::Result<Arc<dyn datafusion::catalog::TableProvider>> {
        self.inner.try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &datafusion::sql::TableReference,
        node: Arc<dyn datafusion::catalog::TableProvider>,
        buf: &mut Vec<u8>,
    ) -> datafusion::common::Result<()> {
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> datafusion::common::Result<Arc<dyn datafusion::datasource::file_format::FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn datafusion::datasource::file_format::FileFormatFactory>,
    ) -> datafusion::common::Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }
}

/// Ballista's physical codec, which also carries [`WriteFilesExec`]; on an executor it hands the
/// decoded node the executor's warehouse settings.
#[derive(Debug, Default)]
pub(crate) struct FloePhysicalCodec {
    inner: ballista_core::serde::BallistaPhysicalExtensionCodec,
    storage: Option<ObjectStorage>,
}

impl FloePhysicalCodec {
    /// The codec of a process that runs the writes, reaching the warehouse with `storage`.
    pub(crate) fn writing_with(storage: ObjectStorage) -> Self {
        Self {
            inner: Default::default(),
            storage: Some(storage),
        }
    }
}

impl PhysicalExtensionCodec for FloePhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        if let Some(job) = encoded_text(buf, EXTRACT_MAGIC) {
            return Ok(Arc::new(crate::ingest::on_cluster::ExtractUnitExec::new(
                job?,
                self.storage.clone(),
            )));
        }
        match encoded_target(buf) {
            Some(target) => {
                let input = inputs
                    .first()
                    .cloned()
                    .ok_or_else(|| DataFusionError::Internal("FloeWriteFilesExec needs its input".into()))?;
                Ok(Arc::new(WriteFilesExec::new(
                    input,
                    target?,
                    self.storage.clone(),
                )))
            }
            None => self.inner.try_decode(buf, inputs, ctx),
        }
    }

    fn try_encode(&self, node: Arc<dyn ExecutionPlan>, buf: &mut Vec<u8>) -> datafusion::common::Result<()> {
        if let Some(extract) = node
            .as_any()
            .downcast_ref::<crate::ingest::on_cluster::ExtractUnitExec>()
        {
            encode_node(buf, EXTRACT_MAGIC, extract.job());
            return Ok(());
        }
        match node.as_any().downcast_ref::<WriteFilesExec>() {
            Some(write) => {
                encode_node(buf, MAGIC, &write.target);
                Ok(())
            }
            None => self.inner.try_encode(node, buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Namespace;
    use crate::config::{PartialSettings, Settings};
    use crate::lakehouse::Floe;
    use crate::table::TableDefinition;
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::execution::TaskContext;

    async fn table(dir: &std::path::Path) -> (Floe, Table) {
        let settings = Settings {
            catalog_url: format!("sqlite:{}", dir.join("catalog.db").display()),
            warehouse: dir.join("warehouse").display().to_string(),
            ..PartialSettings::default().finish()
        };
        let (floe, _) = Floe::init(settings).await.unwrap();
        floe.create_namespace(&Namespace::parse("ns").unwrap())
            .await
            .unwrap();
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("reason", DataType::Utf8, true),
        ]);
        let name = TableName::parse("ns.t").unwrap();
        let t = floe
            .create_table(
                &name,
                TableDefinition {
                    schema,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        (floe, t)
    }

    fn batch(ids: std::ops::Range<i64>, reason: &str) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("reason", DataType::Utf8, true),
        ]));
        let n = ids.end - ids.start;
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(ids)),
                Arc::new(StringArray::from(vec![reason; n as usize])),
            ],
        )
        .unwrap()
    }

    /// The write node over two partitions, carried through floe's physical codec as it travels to
    /// an executor, which decodes it with its own storage.
    fn node(t: &Table, storage: &ObjectStorage) -> Arc<dyn ExecutionPlan> {
        let input = MemorySourceConfig::try_new_exec(
            &[
                vec![batch(0..100, "a")],
                vec![batch(100..130, "b"), batch(130..150, "a")],
            ],
            batch(0..0, "").schema(),
            None,
        )
        .unwrap();
        let mut target = WriteTarget::new(t, 1 << 20);
        target.summed_column = Some("id".into());
        target.tallied_column = Some("reason".into());
        let planned: Arc<dyn ExecutionPlan> =
            Arc::new(WriteFilesExec::new(input.clone(), target.encode().unwrap(), None));
        let mut buf = Vec::new();
        FloePhysicalCodec::default()
            .try_encode(planned, &mut buf)
            .unwrap();
        FloePhysicalCodec::writing_with(storage.clone())
            .try_decode(&buf, &[input], &TaskContext::default())
            .unwrap()
    }

    async fn run(plan: &Arc<dyn ExecutionPlan>, partition: usize) -> RecordBatch {
        let stream = plan.execute(partition, Arc::new(TaskContext::default())).unwrap();
        let batches: Vec<RecordBatch> = datafusion::physical_plan::common::collect(stream).await.unwrap();
        assert_eq!(batches.len(), 1);
        batches.into_iter().next().unwrap()
    }

    fn exists(path: &str) -> bool {
        url::Url::parse(path).unwrap().to_file_path().unwrap().exists()
    }

    #[tokio::test]
    async fn one_attempt_per_partition_is_kept_and_the_repeated_attempts_files_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (floe, t) = table(dir.path()).await;
        let plan = node(&t, floe.storage());
        let first = run(&plan, 0).await;
        let repeated = run(&plan, 0).await;
        let other = run(&plan, 1).await;
        let repeated_files = collect_attempts(&t, std::slice::from_ref(&repeated)).await;
        // Alone, partition 1 is missing: an error, and the files returned are deleted.
        let err = repeated_files.unwrap_err();
        assert!(err.to_string().contains(LOST_PARTITION), "{err}");
        let written = collect_attempts(&t, &[first.clone(), repeated.clone(), other])
            .await
            .unwrap();
        assert_eq!(written.rows, 150);
        assert_eq!(written.summed, Some((0..150).sum::<i64>()));
        assert_eq!(
            written.tallies,
            BTreeMap::from([("a".into(), 120), ("b".into(), 30)])
        );
        assert_eq!(written.files.iter().map(|f| f.record_count()).sum::<u64>(), 150);
        for f in &written.files {
            assert!(exists(f.file_path()), "{} kept", f.file_path());
            // Statistics made the trip: bounds of both columns, by field id.
            assert_eq!(f.lower_bounds().len(), 2, "{f:?}");
            assert!(f.column_sizes().contains_key(&1));
        }
        assert!(written.received_bytes > 0);
        // The repeated attempt's files are gone.
        let json = inflate(
            repeated
                .column_by_name("files")
                .unwrap()
                .as_any()
                .downcast_ref::<BinaryArray>()
                .unwrap()
                .value(0),
        )
        .unwrap();
        let entries: Vec<serde_json::Value> = serde_json::from_slice(&json).unwrap();
        assert!(!entries.is_empty());
        for e in entries {
            let path = e["file_path"].as_str().unwrap().to_string();
            assert!(!exists(&path), "{path} of the repeated attempt deleted");
        }
    }

    #[test]
    fn the_logical_node_travels_through_the_codec() {
        let input = datafusion::logical_expr::LogicalPlanBuilder::empty(false)
            .build()
            .unwrap();
        let node = WriteFiles::new(input.clone(), "{\"x\":1}".into()).unwrap();
        let ext = Extension {
            node: Arc::new(node.clone()),
        };
        let codec = FloeLogicalCodec::default();
        let mut buf = Vec::new();
        codec.try_encode(&ext, &mut buf).unwrap();
        let back = codec.try_decode(&buf, &[input], &TaskContext::default()).unwrap();
        let back = back.node.as_any().downcast_ref::<WriteFiles>().unwrap();
        assert_eq!(back, &node);
    }
}
