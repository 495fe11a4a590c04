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
            return Err(Error::internal("ingest runs through floe's input reader, not an engine"));
        }
        self.check().await?;
        let ctx = self.context().await?;
        for (name, input) in inputs {
            let provider = match input.snapshot_id {
                Some(id) => match crate::table::plain_files::plain_parquet_files(&input.table, id).await? {
                    Some(plain) => super::datafusion::listing_table(&ctx, input.table.storage(), &plain)?,
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
            out.push(
                stream
                    .map(|r| r.map_err(|e| Error::new(ErrorKind::Engine, format!("ballista: {e}"))))
                    .boxed(),
            );
        }
        Ok(out)
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
