//! The DataFusion engine: each stage is SQL over the pinned input snapshots (registered through
//! iceberg-datafusion's static table provider, so scans stream from the Parquet files with filter and
//! projection pushdown), with the field rules as scalar UDFs. Memory is bounded by a spill-to-disk
//! memory pool.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use async_trait::async_trait;
use datafusion::common::cast::as_string_array;
use datafusion::datasource::MemTable;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use iceberg_datafusion::IcebergStaticTableProvider;

use super::rules;
use super::{Engine, PinnedTable, Rows, Stage};
use crate::error::{Error, ErrorKind, Result};

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
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_batch_size(8192);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        register_rules(&ctx);
        Ok(ctx)
    }
}

fn strings(args: &[ColumnarValue], n: usize) -> datafusion::error::Result<Vec<ArrayRef>> {
    args.iter().map(|a| a.clone().into_array(n)).collect()
}

fn rows_of(args: &[ColumnarValue]) -> usize {
    args.iter()
        .find_map(|a| match a {
            ColumnarValue::Array(arr) => Some(arr.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1)
}

/// The field rules as DataFusion scalar functions.
fn register_rules(ctx: &SessionContext) {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    ctx.register_udf(create_udf(
        "floe_event_time",
        vec![DataType::Utf8],
        ts,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let n = rows_of(args);
            let a = strings(args, n)?;
            let s = as_string_array(&a[0])?;
            let out: TimestampMicrosecondArray = s
                .iter()
                .map(|v| v.and_then(rules::parse_event_time))
                .collect::<TimestampMicrosecondArray>();
            Ok(ColumnarValue::Array(Arc::new(out.with_timezone("+00:00"))))
        }),
    ));
    ctx.register_udf(create_udf(
        "floe_revenue_ok",
        vec![DataType::Utf8],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let n = rows_of(args);
            let a = strings(args, n)?;
            let s = as_string_array(&a[0])?;
            let out: BooleanArray = s
                .iter()
                .map(|v| Some(v.is_none_or(|v| rules::parse_revenue(v).is_ok())))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
    ctx.register_udf(create_udf(
        "floe_revenue",
        vec![DataType::Utf8],
        DataType::Decimal128(12, 2),
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let n = rows_of(args);
            let a = strings(args, n)?;
            let s = as_string_array(&a[0])?;
            let out: Decimal128Array = s
                .iter()
                .map(|v| v.and_then(|v| rules::parse_revenue(v).ok().flatten()))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(
                out.with_precision_and_scale(12, 2)?,
            )))
        }),
    ));
    ctx.register_udf(create_udf(
        "floe_ipv4",
        vec![DataType::Utf8],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let n = rows_of(args);
            let a = strings(args, n)?;
            let s = as_string_array(&a[0])?;
            let out: Int64Array = s
                .iter()
                .map(|v| v.and_then(rules::parse_ipv4).map(i64::from))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
    ctx.register_udf(create_udf(
        "floe_record_json",
        vec![DataType::Utf8; 9],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let n = rows_of(args);
            let cols = strings(args, n)?;
            let cols: Vec<&StringArray> = cols
                .iter()
                .map(|c| as_string_array(c))
                .collect::<Result<_, _>>()?;
            let out: StringArray = (0..n)
                .map(|i| {
                    let fields: Vec<Option<&str>> = cols
                        .iter()
                        .map(|c| if c.is_valid(i) { Some(c.value(i)) } else { None })
                        .collect();
                    Some(rules::record_json(&fields))
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
}

async fn register(ctx: &SessionContext, name: &str, input: &PinnedTable) -> Result<()> {
    let provider: Arc<dyn datafusion::datasource::TableProvider> = match input.snapshot_id {
        Some(id) => Arc::new(
            IcebergStaticTableProvider::try_new_from_table_snapshot(input.table.iceberg_table()?, id).await?,
        ),
        None => Arc::new(MemTable::try_new(input.table.arrow_schema()?, vec![vec![]])?),
    };
    ctx.register_table(name, provider)?;
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
}
