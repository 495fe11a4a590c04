//! The Ballista engine: the DataFusion path's stage SQL and rule functions, run on a cluster of floe's
//! own scheduler and executors (`floe cluster ...`). The driver pins the inputs and plans each one
//! into a Parquet scan over the snapshot's explicit file list (a `ListingTable`, which Ballista
//! serializes to the executors as it is); the executors read the files straight from the warehouse
//! and run the stage; the results stream back to the driver, which writes and commits them through
//! the one commit path, exactly as the other engines do. (Ballista 53 runs a write only as one task
//! on one executor, after a shuffle of everything to it, which is slower than streaming the results
//! back to the driver's parallel writer.)

use std::collections::BTreeMap;

use async_trait::async_trait;
use ballista::prelude::SessionContextExt;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::{Engine, PinnedTable, Rows, Stage};
use crate::error::{Error, ErrorKind, Result};

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
            scheduler: crate::cluster::parse_cluster(url)?,
            settings,
        })
    }

    async fn context(&self) -> Result<SessionContext> {
        let state = SessionStateBuilder::new()
            .with_config(crate::cluster::session_config())
            .with_runtime_env(crate::cluster::runtime(&self.settings)?)
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
}

#[async_trait]
impl Engine for BallistaEngine {
    fn name(&self) -> &'static str {
        "ballista"
    }

    async fn check(&self) -> Result<()> {
        crate::cluster::check_reachable(&self.scheduler).await
    }

    async fn run(&self, stage: Stage, inputs: &BTreeMap<&'static str, PinnedTable>) -> Result<Vec<Rows>> {
        if stage == Stage::Ingest {
            return Err(Error::internal(
                "ingest runs through floe's input reader, not an engine",
            ));
        }
        self.check().await?;
        let ctx = self.context().await?;
        for (name, input) in inputs {
            let provider = match input.snapshot_id {
                Some(id) => match crate::table::plain_files::plain_parquet_files(&input.table, id).await? {
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

    fn rerun_on_imbalance(&self) -> bool {
        true
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
