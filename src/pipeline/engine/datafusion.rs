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

    fn context(&self) -> Result<SessionContext> {
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

/// The stages' SQL, shared by the queries of a stage.
mod sql {
    pub const CLEANSE_CHECKED: &str = "
        WITH typed AS (
            SELECT *, btrim(event_id) AS t_id, btrim(user_id) AS t_user,
                   floe_event_time(event_time) AS t_time, lower(btrim(event_type)) AS t_type,
                   floe_revenue_ok(revenue) AS rev_ok
            FROM raw_events),
        checked AS (
            SELECT *, CASE
                WHEN t_id IS NULL OR t_id = '' THEN 'missing_event_id'
                WHEN t_user IS NULL OR t_user = '' THEN 'missing_user_id'
                WHEN t_time IS NULL THEN 'bad_event_time'
                WHEN t_type IS NULL OR t_type NOT IN ('page_view', 'click', 'add_to_cart', 'purchase')
                    THEN 'bad_event_type'
                WHEN NOT rev_ok THEN 'bad_revenue'
            END AS reason
            FROM typed),
        ranked AS (
            SELECT *, row_number() OVER (PARTITION BY t_id ORDER BY t_time, source_file, source_line) AS rn
            FROM checked WHERE reason IS NULL)";

    pub const CLEAN: &str = "
        SELECT t_id AS event_id, t_user AS user_id, t_time AS event_time, t_type AS event_type,
               nullif(url, '') AS url, nullif(referrer, '') AS referrer, nullif(ip, '') AS ip,
               nullif(user_agent, '') AS user_agent, floe_revenue(revenue) AS revenue, source_file, source_line
        FROM ranked WHERE rn = 1";

    pub const CLEANSE_REJECTS: &str = "
        SELECT source_file, source_line, 'cleanse' AS stage, reason,
               floe_record_json(event_id, user_id, event_time, event_type, url, referrer, ip, user_agent, revenue)
                   AS record
        FROM checked WHERE reason IS NOT NULL
        UNION ALL
        SELECT source_file, source_line, 'cleanse' AS stage, 'duplicate_event_id' AS reason,
               floe_record_json(event_id, user_id, event_time, event_type, url, referrer, ip, user_agent, revenue)
                   AS record
        FROM ranked WHERE rn > 1";

    /// Ranges are looked up through their /16 blocks, so the join is an equi-join on the block. The
    /// small `geoip` side is written first: DataFusion builds its hash table from the left input.
    pub const ENRICH: &str = "
        WITH g AS (
            SELECT ip_start, ip_end, country_code, unnest(range(ip_start / 65536, ip_end / 65536 + 1)) AS blk
            FROM geoip),
        c AS (SELECT *, floe_ipv4(ip) AS ipn FROM clean_events)
        SELECT c.event_id, c.user_id, c.event_time, c.event_type, c.url, c.referrer, c.ip, c.user_agent,
               c.revenue, c.source_file, c.source_line, coalesce(g.country_code, 'ZZ') AS country_code
        FROM g RIGHT JOIN c ON g.blk = c.ipn / 65536 AND c.ipn >= g.ip_start AND c.ipn <= g.ip_end";

    pub const SESSIONIZED: &str = "
        WITH e AS (
            SELECT *, CAST(event_time AS BIGINT) AS t_us,
                   lag(CAST(event_time AS BIGINT)) OVER (PARTITION BY user_id ORDER BY event_time, event_id) AS prev_us
            FROM enriched_events),
        s AS (
            SELECT *, CASE WHEN prev_us IS NULL OR t_us - prev_us > 1800000000 THEN 1 ELSE 0 END AS starts FROM e),
        n AS (
            SELECT *, sum(starts) OVER (PARTITION BY user_id ORDER BY event_time, event_id
                                        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_no
            FROM s),
        x AS (
            SELECT event_id, user_id, event_time, event_type, url, referrer, ip, user_agent, revenue,
                   source_file, source_line, country_code,
                   concat(user_id, '#', CAST(session_no AS VARCHAR)) AS session_id, t_us
            FROM n)";

    pub const SESSION_EVENTS: &str = "
        SELECT event_id, user_id, event_time, event_type, url, referrer, ip, user_agent, revenue,
               source_file, source_line, country_code, session_id
        FROM x";

    pub const SESSIONS: &str = "
        SELECT session_id, user_id, min(event_time) AS session_start, max(event_time) AS session_end,
               max(t_us) - min(t_us) AS duration_us, count(*) AS event_count,
               sum(CASE WHEN event_type = 'page_view' THEN 1 ELSE 0 END) AS page_views,
               sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases,
               CAST(coalesce(sum(revenue), 0) AS DECIMAL(18, 2)) AS revenue,
               first_value(country_code ORDER BY event_time, event_id) AS country_code,
               first_value(url ORDER BY event_time, event_id) AS landing_url,
               last_value(url ORDER BY event_time, event_id) AS exit_url,
               count(*) = 1 AS is_bounce
        FROM x GROUP BY session_id, user_id";

    pub const DAILY_METRICS: &str = "
        SELECT CAST(session_start AS DATE) AS day, country_code, count(*) AS sessions,
               count(DISTINCT user_id) AS users, sum(event_count) AS events, sum(page_views) AS page_views,
               sum(purchases) AS purchases, CAST(sum(revenue) AS DECIMAL(18, 2)) AS revenue,
               avg(CAST(duration_us AS DOUBLE) / 1e6) AS avg_session_duration_s,
               CAST(sum(CASE WHEN is_bounce THEN 1 ELSE 0 END) AS DOUBLE) / count(*) AS bounce_rate
        FROM sessions GROUP BY 1, 2";
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
        match stage {
            Stage::Ingest => Err(Error::internal(
                "ingest runs through floe's input reader, not an engine",
            )),
            Stage::Cleanse => Ok(vec![
                query(&ctx, format!("{} {}", sql::CLEANSE_CHECKED, sql::CLEAN)).await?,
                query(&ctx, format!("{} {}", sql::CLEANSE_CHECKED, sql::CLEANSE_REJECTS)).await?,
            ]),
            Stage::Enrich => Ok(vec![query(&ctx, sql::ENRICH.to_string()).await?]),
            Stage::Sessionize => Ok(vec![
                query(&ctx, format!("{} {}", sql::SESSIONIZED, sql::SESSION_EVENTS)).await?,
                query(&ctx, format!("{} {}", sql::SESSIONIZED, sql::SESSIONS)).await?,
            ]),
            Stage::Aggregate => Ok(vec![query(&ctx, sql::DAILY_METRICS.to_string()).await?]),
        }
    }
}
