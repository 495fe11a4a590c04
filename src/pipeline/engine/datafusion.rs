//! The DataFusion engine: each stage is SQL over the pinned input snapshots, with the field rules as
//! scalar UDFs. A snapshot that is plain Parquet files is read by DataFusion's own multi-partition file
//! scan (file groups over every core, large files split by byte range); one with position deletes by
//! the same scan with each file's deleted rows skipped ([`super::parquet_scan`]); one with renamed
//! columns or equality deletes through floe's own scan. Memory is bounded by a spill-to-disk pool.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::MemTable;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::{StreamExt, TryStreamExt};

use super::parquet_scan::ParquetWithDeletes;
use super::rules;
use super::{Engine, PinnedTable, Rows, Stage};
use crate::error::{Error, ErrorKind, Result};
use crate::table::scan::scan;
use crate::table::{At, ScanOptions, Table};

/// DataFusion, embedded.
#[derive(Clone, Debug)]
pub struct DataFusionEngine {
    memory_limit: usize,
}

impl Default for DataFusionEngine {
    fn default() -> Self {
        Self {
            memory_limit: 1024 * 1024 * 1024,
        }
    }
}

impl DataFusionEngine {
    /// An engine whose operators spill to disk beyond `memory_limit` bytes.
    pub fn with_memory_limit(memory_limit: usize) -> Self {
        Self { memory_limit }
    }

    pub(crate) fn context(&self) -> Result<SessionContext> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(self.memory_limit)))
            .build_arc()?;
        let cores = crate::resources::cores();
        let mut config = SessionConfig::new()
            .with_target_partitions(cores)
            .with_batch_size(8192);
        // Text as Utf8, as the tables and the rules keep it (no view types to convert back).
        config.options_mut().execution.parquet.schema_force_view_types = false;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        register_rules(&ctx);
        Ok(ctx)
    }
}

fn rows_of(args: &[ColumnarValue]) -> usize {
    args.iter()
        .find_map(|a| match a {
            ColumnarValue::Array(arr) => Some(arr.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1)
}

/// The field rules ([`rules::FUNCTIONS`]) registered on `ctx`.
pub(crate) fn register_rules(ctx: &SessionContext) {
    for udf in rule_udfs() {
        ctx.register_udf(udf);
    }
}

/// The field rules ([`rules::FUNCTIONS`]) as DataFusion scalar functions. Instants are labelled UTC.
pub(crate) fn rule_udfs() -> Vec<datafusion::logical_expr::ScalarUDF> {
    let mut out = Vec::new();
    for f in rules::FUNCTIONS {
        let returns = match &f.returns {
            DataType::Timestamp(unit, None) => DataType::Timestamp(*unit, Some("+00:00".into())),
            other => other.clone(),
        };
        let zoned = matches!(returns, DataType::Timestamp(_, Some(_)));
        let kernel = f.kernel;
        out.push(create_udf(
            f.name,
            vec![DataType::Utf8; f.args],
            returns,
            Volatility::Immutable,
            Arc::new(move |args: &[ColumnarValue]| {
                let n = rows_of(args);
                let arrays = args
                    .iter()
                    .map(|a| a.clone().into_array(n))
                    .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
                let out = kernel(&rules::as_utf8(arrays)?)?;
                let out = if zoned {
                    arrow::compute::cast(
                        &out,
                        &DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                    )?
                } else {
                    out
                };
                Ok(ColumnarValue::Array(out))
            }),
        ));
    }
    out
}

/// Make a pinned input queryable as `name`: a multi-partition scan of its Parquet files (DataFusion's
/// own file scan: file groups over `target_partitions`, large files split by byte range, row-group
/// pruning) when the snapshot is plain files; otherwise iceberg-datafusion's provider, which applies
/// delete files.
pub(crate) async fn register(ctx: &SessionContext, name: &str, input: &PinnedTable) -> Result<()> {
    let provider: Arc<dyn datafusion::datasource::TableProvider> = match input.snapshot_id {
        Some(id) => match crate::table::plain_files::plain_parquet_files(&input.table, id).await? {
            Some(plain) if plain.deleted.is_empty() => listing_table(ctx, input.table.storage(), &plain)?,
            Some(plain) => {
                register_object_stores(
                    ctx,
                    input.table.storage(),
                    plain.files.iter().map(|(uri, _)| uri.as_str()),
                )?;
                let partitions = ctx.copied_config().target_partitions();
                Arc::new(ParquetWithDeletes::try_new(input.table.storage(), &plain, partitions).await?)
            }
            None => floe_scan_table(&input.table, id)?,
        },
        None => Arc::new(MemTable::try_new(input.table.arrow_schema()?, vec![vec![]])?),
    };
    ctx.register_table(name, provider)?;
    Ok(())
}

/// A table that streams floe's own scan of snapshot `id`: for snapshots DataFusion cannot read as
/// Parquet files (renamed columns, equality deletes).
fn floe_scan_table(table: &Table, id: i64) -> Result<Arc<dyn datafusion::datasource::TableProvider>> {
    let snapshot = table
        .metadata()
        .snapshot_by_id(id)
        .ok_or_else(|| Error::not_found(format!("table {} has no snapshot {id}", table.name())))?;
    let schema = Arc::new(iceberg::arrow::schema_to_arrow_schema(
        snapshot.schema(table.metadata())?.as_ref(),
    )?);
    let partition = Arc::new(FloeScan {
        table: table.clone(),
        snapshot_id: id,
        schema: schema.clone(),
    });
    Ok(Arc::new(StreamingTable::try_new(schema, vec![partition])?))
}

/// One snapshot of a table read through floe's scan, as a DataFusion partition.
#[derive(Debug)]
struct FloeScan {
    table: Table,
    snapshot_id: i64,
    schema: arrow::datatypes::SchemaRef,
}

impl PartitionStream for FloeScan {
    fn schema(&self) -> &arrow::datatypes::SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let table = self.table.clone();
        let options = ScanOptions {
            at: Some(At::Snapshot(self.snapshot_id)),
            ..Default::default()
        };
        let batches = futures::stream::once(async move { scan(&table, &options).await.map(|s| s.batches) })
            .try_flatten()
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)));
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}

/// A `ListingTable` over an explicit list of Parquet files (serializable, so Ballista ships it to
/// executors as it is), with floe's object stores registered for their buckets.
pub(crate) fn listing_table(
    ctx: &SessionContext,
    storage: &crate::storage::ObjectStorage,
    plain: &crate::table::plain_files::PlainFiles,
) -> Result<Arc<dyn datafusion::datasource::TableProvider>> {
    use datafusion::datasource::file_format::parquet::ParquetFormat;
    use datafusion::datasource::listing::{
        ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
    };
    if plain.files.is_empty() {
        return Ok(Arc::new(MemTable::try_new(plain.schema.clone(), vec![vec![]])?));
    }
    register_object_stores(ctx, storage, plain.files.iter().map(|(uri, _)| uri.as_str()))?;
    let urls = plain
        .files
        .iter()
        .map(|(uri, _)| ListingTableUrl::parse(uri))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let partitions = ctx.copied_config().target_partitions();
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_target_partitions(partitions);
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(plain.schema.clone());
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// Register floe's object store on `ctx` for every S3 bucket `uris` name (local files need none).
pub(crate) fn register_object_stores<'a>(
    ctx: &SessionContext,
    storage: &crate::storage::ObjectStorage,
    uris: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    let mut buckets = std::collections::HashSet::new();
    for uri in uris {
        if let Some(rest) = uri.strip_prefix("s3://").or_else(|| uri.strip_prefix("s3a://")) {
            let bucket = rest.split('/').next().unwrap_or(rest);
            if buckets.insert(bucket.to_string()) {
                let base = url::Url::parse(&format!("s3://{bucket}"))
                    .map_err(|e| Error::internal(format!("bucket URL of {uri}: {e}")))?;
                let (store, _) = storage.resolve(uri)?;
                ctx.register_object_store(&base, store);
            }
        }
    }
    Ok(())
}

async fn query(ctx: &SessionContext, sql: String) -> Result<Rows> {
    let df = ctx
        .sql(&sql)
        .await
        .map_err(|e| Error::new(ErrorKind::Engine, format!("datafusion: {e}")))?;
    let stream = df.execute_stream().await?;
    Ok(stream
        .map(|r| r.map_err(|e| Error::new(ErrorKind::Engine, format!("datafusion: {e}"))))
        .boxed())
}

#[async_trait]
impl Engine for DataFusionEngine {
    fn name(&self) -> &'static str {
        "datafusion"
    }

    async fn run(&self, stage: Stage, inputs: &BTreeMap<&'static str, PinnedTable>) -> Result<Vec<Rows>> {
        let ctx = self.context()?;
        for (name, input) in inputs {
            register(&ctx, name, input).await?;
        }
        if stage == Stage::Ingest {
            return Err(Error::internal(
                "ingest runs through floe's input reader, not an engine",
            ));
        }
        let mut out = Vec::new();
        for q in super::sql::DATAFUSION.stage(stage) {
            out.push(query(&ctx, q).await?);
        }
        Ok(out)
    }

    fn code(&self, stage: Stage) -> String {
        // The UDFs are registered from this file.
        format!(
            "{}\n{}",
            super::sql::DATAFUSION.stage(stage).join(";\n"),
            include_str!("datafusion.rs")
        )
    }
}
