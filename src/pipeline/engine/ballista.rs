//! The Ballista engine: the DataFusion path's stage SQL and rule functions, run on a cluster of floe's
//! own scheduler and executors (`floe cluster ...`). The driver pins the inputs and plans each one
//! into a Parquet scan over the snapshot's explicit file list (a `ListingTable`, which Ballista
//! serializes to the executors as it is); the executors read the files straight from the warehouse,
//! run the stage, and write its outputs as data files themselves, every output partition in its own
//! task through floe's writer ([`super::cluster_write`]). Only the files' entries come back to the
//! driver, which checks them and commits them through the one commit path.
//!
//! The engine owns what the client and every process of the cluster must agree on: the session
//! configuration, the runtime that reaches the warehouse, and floe's rule functions; `floe cluster`
//! (`crate::cluster`) starts its scheduler and executors with them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ballista::prelude::SessionContextExt;
use ballista_core::extension::SessionConfigExt;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::{StreamExt, TryStreamExt};

use super::cluster_write::{collect_attempts, FloeLogicalCodec, WriteFiles, WriteTarget};
use super::{DescribedFiles, Engine, EngineFiles, PinnedTable, Rows, Stage};
use crate::config::Settings;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::{ObjectStorage, Warehouse};
use crate::table::Table;

/// The pipeline on a Ballista cluster.
#[derive(Clone, Debug)]
pub struct BallistaEngine {
    /// The scheduler, `HOST:PORT`.
    scheduler: String,
    settings: crate::config::Settings,
}

impl BallistaEngine {
    /// An engine on the cluster at `url` (`df://HOST:PORT`), reaching the warehouse with `settings`.
    pub fn new(url: &str, settings: crate::config::Settings) -> Result<Self> {
        Ok(Self {
            scheduler: parse_cluster(url)?,
            settings,
        })
    }

    async fn context(&self) -> Result<SessionContext> {
        let state = SessionStateBuilder::new()
            .with_config(session_config())
            .with_runtime_env(runtime(&self.settings)?)
            .with_default_features()
            .build();
        let ctx = SessionContext::remote_with_state(&format!("df://{}", self.scheduler), state)
            .await
            .map_err(|e| Error::new(ErrorKind::Engine, format!("cluster df://{}: {e}", self.scheduler)))?;
        // Registered after the context exists: the state handed in loses its functions.
        for udf in super::datafusion::rule_udfs() {
            ctx.register_udf(udf);
        }
        Ok(ctx)
    }

    /// Run `plan` (a plan of floe's own cluster nodes) on the cluster and collect its rows, within
    /// `FLOE_CLUSTER_STAGE_TIMEOUT`.
    pub(crate) async fn collect(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
    ) -> Result<Vec<arrow::array::RecordBatch>> {
        self.check().await?;
        let ctx = self.context().await?;
        let engine_error =
            |e: datafusion::error::DataFusionError| Error::new(ErrorKind::Engine, format!("ballista: {e}"));
        let collected = datafusion::dataframe::DataFrame::new(ctx.state(), plan).collect();
        match tokio::time::timeout(stage_timeout()?, collected).await {
            Ok(rows) => rows.map_err(engine_error),
            Err(_) => Err(Error::new(
                ErrorKind::Engine,
                "a cluster job did not finish within FLOE_CLUSTER_STAGE_TIMEOUT; the scheduler's log says why \
                 its tasks do not run",
            )),
        }
    }

    /// A context on the cluster with `stage`'s pinned inputs registered as tables.
    async fn stage_context(
        &self,
        stage: Stage,
        inputs: &BTreeMap<&'static str, PinnedTable>,
    ) -> Result<SessionContext> {
        if stage == Stage::Ingest {
            return Err(Error::internal(
                "ingest runs through floe's input reader, not an engine",
            ));
        }
        self.check().await?;
        let ctx = self.context().await?;
        if stage == Stage::Enrich {
            // The geoip side is small: build it once and broadcast it to every task of the events
            // side (a `CollectLeft` hash join) instead of shuffling all events by the join key. The
            // cluster cannot see that it is small (its rows come out of an `unnest`, whose size has
            // no statistics), so the stage says so.
            ctx.state_ref()
                .write()
                .config_mut()
                .options_mut()
                .optimizer
                .repartition_joins = false;
        }
        for (name, input) in inputs {
            let provider = match input.snapshot_id {
                Some(id) => match crate::table::plain_files::plain_parquet_files(&input.table, id)
                    .await?
                    .filter(|plain| plain.deleted.is_empty())
                {
                    Some(mut plain) => {
                        // Every column read as nullable: Ballista 53 carries a base table's NOT NULL
                        // through an outer join's shuffle and then refuses the join's nulls. floe's
                        // writer checks the output table's own required columns.
                        plain.schema = nullable(&plain.schema);
                        super::datafusion::listing_table(&ctx, input.table.storage(), &plain)?
                    }
                    None => {
                        return Err(Error::new(
                            ErrorKind::Engine,
                            format!(
                                "{} at snapshot {id} has delete files or renamed columns, which the cluster cannot \
                                 read as plain Parquet files; run this stage with --engine datafusion",
                                input.table.name()
                            ),
                        ))
                    }
                },
                None => std::sync::Arc::new(datafusion::datasource::MemTable::try_new(
                    input.table.arrow_schema()?,
                    vec![vec![]],
                )?),
            };
            ctx.register_table(*name, provider)?;
        }
        Ok(ctx)
    }
}

/// Run `query` on the cluster with its rows written by the executors as files of `table`: the files'
/// entries, one attempt per output partition.
async fn write_on_executors(
    ctx: &SessionContext,
    query: &str,
    table: &Table,
    stage: Stage,
    deadline: tokio::time::Instant,
) -> Result<DescribedFiles> {
    let engine_error =
        |e: datafusion::error::DataFusionError| Error::new(ErrorKind::Engine, format!("ballista: {e}"));
    let (state, plan) = ctx.sql(query).await.map_err(engine_error)?.into_parts();
    let t = table.name().name().to_string();
    let mut target = WriteTarget::new(table, crate::table::DEFAULT_TARGET_FILE_SIZE);
    target.summed_column = crate::pipeline::tables::checked_column(&t).map(str::to_string);
    target.tallied_column = crate::pipeline::tables::tallied_column(&t).map(str::to_string);
    let plan = WriteFiles::plan(plan, &target)?;
    let stream = datafusion::dataframe::DataFrame::new(state, plan)
        .execute_stream()
        .await
        .map_err(engine_error)?
        .map(move |r| r.map_err(engine_error));
    let batches: Vec<arrow::array::RecordBatch> = within(deadline, stage, stream).try_collect().await?;
    collect_attempts(table, &batches).await
}

#[async_trait]
impl Engine for BallistaEngine {
    fn name(&self) -> &'static str {
        "ballista"
    }

    async fn check(&self) -> Result<()> {
        check_reachable(&self.scheduler).await
    }

    async fn run(&self, stage: Stage, inputs: &BTreeMap<&'static str, PinnedTable>) -> Result<Vec<Rows>> {
        let ctx = self.stage_context(stage, inputs).await?;
        let deadline = tokio::time::Instant::now() + stage_timeout()?;
        let mut out = Vec::new();
        for q in super::sql::DATAFUSION.stage(stage) {
            let df = ctx
                .sql(&q)
                .await
                .map_err(|e| Error::new(ErrorKind::Engine, format!("ballista: {e}")))?;
            let stream = df
                .execute_stream()
                .await
                .map_err(|e| Error::new(ErrorKind::Engine, format!("ballista: {e}")))?;
            let stream =
                stream.map(|r| r.map_err(|e| Error::new(ErrorKind::Engine, format!("ballista: {e}"))));
            out.push(within(deadline, stage, stream).boxed());
        }
        Ok(out)
    }

    async fn run_to_files(
        &self,
        stage: Stage,
        inputs: &BTreeMap<&'static str, PinnedTable>,
        outputs: &[Table],
    ) -> Result<Option<Vec<EngineFiles>>> {
        let ctx = self.stage_context(stage, inputs).await?;
        let deadline = tokio::time::Instant::now() + stage_timeout()?;
        let mut out: Vec<EngineFiles> = Vec::new();
        for (q, table) in super::sql::DATAFUSION.stage(stage).iter().zip(outputs) {
            match write_on_executors(&ctx, q, table, stage, deadline).await {
                Ok(files) => out.push(EngineFiles::Described(files)),
                Err(e) => {
                    for (done, table) in out.into_iter().zip(outputs) {
                        if let EngineFiles::Described(d) = done {
                            crate::storage::delete_quietly(
                                table.storage(),
                                crate::table::transaction::paths_of(&d.files),
                            )
                            .await;
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(Some(out))
    }

    fn rerun_on_imbalance(&self) -> bool {
        true
    }

    /// The `EXPLAIN` of the stage's queries on the cluster: logical, physical and the cluster's
    /// stages, as the scheduler plans them.
    async fn explain(
        &self,
        stage: Stage,
        inputs: &BTreeMap<&'static str, PinnedTable>,
    ) -> Result<Option<String>> {
        let ctx = self.stage_context(stage, inputs).await?;
        let mut out = String::new();
        for q in super::sql::DATAFUSION.stage(stage) {
            let batches = ctx
                .sql(&format!("EXPLAIN {q}"))
                .await
                .map_err(|e| Error::new(ErrorKind::Engine, format!("ballista: {e}")))?
                .collect()
                .await
                .map_err(|e| Error::new(ErrorKind::Engine, format!("ballista: {e}")))?;
            for b in &batches {
                let (Some(kind), Some(plan)) = (b.column_by_name("plan_type"), b.column_by_name("plan"))
                else {
                    continue;
                };
                let kind = arrow::compute::cast(kind, &arrow::datatypes::DataType::Utf8)?;
                let plan = arrow::compute::cast(plan, &arrow::datatypes::DataType::Utf8)?;
                let as_text = |a: &arrow::array::ArrayRef| {
                    a.as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                        .map(|s| {
                            s.iter()
                                .map(|v| v.unwrap_or_default().to_string())
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default()
                };
                for (k, p) in as_text(&kind).into_iter().zip(as_text(&plan)) {
                    out.push_str(&format!("{k}:\n{p}\n"));
                }
            }
        }
        Ok(Some(out))
    }

    fn lost_workers(&self, error: &Error) -> bool {
        // An executor that died takes its shuffle and result files with it: fetching them fails
        // with a connection or transport error (the scheduler reruns lost map tasks itself, but
        // results of a finished job are fetched by the driver).
        let text = error.to_string();
        [
            "GrpcConnectionError",
            "Connection refused",
            "connection reset",
            "Connection reset",
            "broken pipe",
            "Broken pipe",
            "transport error",
            "FetchFailed",
            "error reading a body",
            "h2 protocol error",
            super::cluster_write::LOST_PARTITION,
        ]
        .iter()
        .any(|m| text.contains(m))
    }

    fn code(&self, stage: Stage) -> String {
        // The same SQL and rules as the DataFusion engine.
        format!(
            "{}\n{}",
            super::sql::DATAFUSION.stage(stage).join(";\n"),
            include_str!("datafusion.rs")
        )
    }
}

/// How long a stage may run on the cluster: `FLOE_CLUSTER_STAGE_TIMEOUT` (`30m`, `2h`, ...), by
/// default an hour. A cluster whose executors cannot run a task (one of another floe version, which
/// cannot decode the plan) makes Ballista reschedule the task forever; this ends the wait.
fn stage_timeout() -> Result<std::time::Duration> {
    match std::env::var("FLOE_CLUSTER_STAGE_TIMEOUT") {
        Ok(t) if !t.trim().is_empty() => crate::units::parse_duration(&t).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("FLOE_CLUSTER_STAGE_TIMEOUT: {}", e.message()),
            )
        }),
        _ => Ok(std::time::Duration::from_secs(3600)),
    }
}

/// `stream`, ended with a clear error once `deadline` passes.
fn within(
    deadline: tokio::time::Instant,
    stage: Stage,
    stream: impl futures::Stream<Item = Result<arrow::array::RecordBatch>> + Send + Unpin + 'static,
) -> impl futures::Stream<Item = Result<arrow::array::RecordBatch>> + Send {
    futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((
                Err(Error::new(
                    ErrorKind::Engine,
                    format!(
                        "stage {stage} did not finish on the cluster within FLOE_CLUSTER_STAGE_TIMEOUT; the \
                         scheduler's log says why its tasks do not run (executors down or of another floe version)"
                    ),
                )),
                None,
            )),
        }
    })
}

/// `schema` with every field nullable.
fn nullable(schema: &arrow::datatypes::SchemaRef) -> arrow::datatypes::SchemaRef {
    let fields: Vec<arrow::datatypes::Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    std::sync::Arc::new(arrow::datatypes::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ))
}

/// `df://HOST:PORT` → `HOST:PORT` (port 50050 when none is given).
fn parse_cluster(url: &str) -> Result<String> {
    let rest = url.strip_prefix("df://").ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            format!("cluster {url:?}: expected df://HOST:PORT"),
        )
    })?;
    if rest.is_empty() || rest.contains('/') {
        return Err(Error::new(
            ErrorKind::Config,
            format!("cluster {url:?}: expected df://HOST:PORT"),
        ));
    }
    Ok(if rest.contains(':') {
        rest.to_string()
    } else {
        format!("{rest}:50050")
    })
}

/// The session configuration every process of the cluster uses (client, scheduler, executors).
pub(crate) fn session_config() -> SessionConfig {
    let cores = crate::resources::cores();
    let mut config = SessionConfig::new_with_ballista()
        .with_target_partitions(cores.max(2))
        .with_batch_size(8192)
        .set_u64("ballista.client.grpc_connect_timeout_seconds", 5)
        .with_ballista_logical_extension_codec(Arc::new(FloeLogicalCodec::default()));
    config.options_mut().execution.parquet.schema_force_view_types = false;
    config
}

/// A runtime that reaches the warehouse: local files, and the warehouse's S3 bucket with floe's
/// S3 settings.
pub(crate) fn runtime(settings: &Settings) -> Result<Arc<RuntimeEnv>> {
    let runtime = RuntimeEnvBuilder::new().build()?;
    if let Warehouse::S3 { bucket, .. } = Warehouse::parse(&settings.warehouse)? {
        let storage = ObjectStorage::new(settings.s3.clone());
        let (store, _) = storage.resolve(&format!("s3://{bucket}/"))?;
        let url = url::Url::parse(&format!("s3://{bucket}"))
            .map_err(|e| Error::new(ErrorKind::Config, format!("bucket {bucket}: {e}")))?;
        runtime.register_object_store(&url, store);
    }
    Ok(Arc::new(runtime))
}

/// floe's rule functions (the same the DataFusion engine registers), as every process of the cluster
/// registers them.
pub(crate) fn rule_functions() -> Vec<Arc<datafusion::logical_expr::ScalarUDF>> {
    super::datafusion::rule_udfs().into_iter().map(Arc::new).collect()
}

/// Fail fast with a clear error when no scheduler answers at `address` (`HOST:PORT`).
async fn check_reachable(address: &str) -> Result<()> {
    let url = format!("http://{address}");
    let config = ballista_core::utils::GrpcClientConfig {
        connect_timeout_seconds: 3,
        timeout_seconds: 5,
        ..Default::default()
    };
    let endpoint = ballista_core::utils::create_grpc_client_endpoint(url.clone(), Some(&config))
        .map_err(|e| Error::new(ErrorKind::Config, format!("cluster df://{address}: {e}")))?;
    match tokio::time::timeout(Duration::from_secs(4), endpoint.connect()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::new(
            ErrorKind::Engine,
            format!("the cluster scheduler at df://{address} cannot be reached: {e}; nothing was written"),
        )),
        Err(_) => Err(Error::new(
            ErrorKind::Engine,
            format!("the cluster scheduler at df://{address} did not answer within 4 s; nothing was written"),
        )),
    }
}
