//! Extraction units as cluster tasks (`floe ingest --on-cluster`): one attempt of one unit of a
//! Postgres source runs on an executor, which connects to the source itself (with its own
//! `PGPASSWORD` or `~/.pgpass`: the plan carries the URL without the password), imports the run's
//! exported snapshot, reads the unit's rows and writes them through floe's writer into files of the
//! destination. Only the files' entries come back; the driver keeps the run's retries, its unit
//! ledger and its one commit, exactly as for units that run locally.
//!
//! The node travels as the cluster's other write node does ([`crate::pipeline::engine::cluster_write`]:
//! floe's codecs, the scheduler's planner, the same result row).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};
use serde::{Deserialize, Serialize};

use super::source::PortableSource;
use super::units::Bounds;
use crate::error::{Error, Result};
use crate::pipeline::engine::cluster_write::{result_schema, write_rows, WriteTarget};
use crate::storage::ObjectStorage;

/// One attempt of one unit, as an executor runs it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct UnitJob {
    /// The source (no password).
    pub source: PortableSource,
    /// The unit's rows.
    pub bounds: Bounds,
    /// The connection's application name (`floe-ingest-unit-N-attempt-M-run-ID`).
    pub application: String,
    /// The run's exported snapshot, when the source exported one.
    pub snapshot: Option<String>,
    /// The destination.
    pub target: WriteTarget,
}

impl UnitJob {
    /// The plan that runs this job on the cluster: its result row describes the files written.
    pub(crate) fn plan(&self) -> Result<LogicalPlan> {
        let job =
            serde_json::to_string(self).map_err(|e| Error::internal(format!("encoding a unit: {e}")))?;
        Ok(LogicalPlan::Extension(Extension {
            node: Arc::new(ExtractUnit::new(job)?),
        }))
    }

    fn decode(job: &str) -> Result<Self> {
        serde_json::from_str(job).map_err(|e| Error::internal(format!("decoding a unit: {e}")))
    }
}

/// The logical node: a leaf whose one row describes the unit's files.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ExtractUnit {
    /// [`UnitJob`] as JSON.
    job: String,
    schema: DFSchemaRef,
}

impl ExtractUnit {
    pub(crate) fn new(job: String) -> datafusion::common::Result<Self> {
        Ok(Self {
            job,
            schema: Arc::new(DFSchema::try_from(result_schema())?),
        })
    }

    pub(crate) fn job(&self) -> &str {
        &self.job
    }

    /// The physical node (planned on the scheduler; executors add their storage when they decode).
    pub(crate) fn planned(&self) -> Arc<dyn ExecutionPlan> {
        Arc::new(ExtractUnitExec::new(self.job.clone(), None))
    }
}

impl PartialOrd for ExtractUnit {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.job.partial_cmp(&other.job)
    }
}

impl UserDefinedLogicalNodeCore for ExtractUnit {
    fn name(&self) -> &str {
        "FloeExtractUnit"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let app = UnitJob::decode(&self.job)
            .map(|j| j.application)
            .unwrap_or_default();
        write!(f, "FloeExtractUnit: {app}")
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        _inputs: Vec<LogicalPlan>,
    ) -> datafusion::common::Result<Self> {
        Ok(self.clone())
    }
}

/// The physical node: one partition, which runs the unit.
#[derive(Debug)]
pub(crate) struct ExtractUnitExec {
    job: String,
    storage: Option<ObjectStorage>,
    properties: Arc<PlanProperties>,
}

impl ExtractUnitExec {
    pub(crate) fn new(job: String, storage: Option<ObjectStorage>) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(result_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            job,
            storage,
            properties: Arc::new(properties),
        }
    }

    pub(crate) fn job(&self) -> &str {
        &self.job
    }
}

impl DisplayAs for ExtractUnitExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let app = UnitJob::decode(&self.job)
            .map(|j| j.application)
            .unwrap_or_default();
        write!(f, "FloeExtractUnitExec: {app}")
    }
}

impl ExecutionPlan for ExtractUnitExec {
    fn name(&self) -> &'static str {
        "FloeExtractUnitExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> datafusion::common::Result<SendableRecordBatchStream> {
        let storage = self.storage.clone().ok_or_else(|| {
            DataFusionError::Internal(
                "FloeExtractUnitExec runs on a floe executor (it has no warehouse here)".into(),
            )
        })?;
        let job = UnitJob::decode(&self.job).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let ran = async move {
            let (source, columns) = job.source.open()?;
            let rows = source
                .extract(&columns, &job.bounds, &job.application, job.snapshot.as_deref())
                .await?;
            let table = job.target.table(storage)?;
            write_rows(&job.target, &table, rows, partition, 1).await
        };
        let ran = async move { ran.await.map_err(|e| DataFusionError::External(Box::new(e))) };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            result_schema(),
            futures::stream::once(ran),
        )))
    }
}
