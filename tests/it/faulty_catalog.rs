//! A catalog that injects faults into the swap of the real catalog it wraps, through floe's public
//! `Catalog` trait: a reply lost after the swap landed, or a statement that fails before `COMMIT`.
//! Everything else goes to the real catalog (SQLite or Postgres) unchanged.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use floe::catalog::{Catalog, MetadataSwap, Namespace, SwapOutcome, TableName};
use floe::{Error, ErrorKind, Floe, Result, Settings};

/// What the next swaps do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The swap runs and lands, but its reply is lost: floe sees an unknown outcome.
    LoseReplyAfterSwap,
    /// The swap fails before `COMMIT` (nothing lands).
    FailStatement,
}

#[derive(Debug)]
pub struct FaultyCatalog {
    inner: Arc<dyn Catalog>,
    plan: Mutex<VecDeque<Fault>>,
    swaps: Mutex<u32>,
}

impl FaultyCatalog {
    /// The number of swaps asked for so far.
    pub fn swaps(&self) -> u32 {
        *self.swaps.lock().unwrap()
    }
}

/// A `Floe` whose catalog injects `faults` into its next swaps, in order, then behaves.
pub async fn faulty_floe(settings: Settings, faults: Vec<Fault>) -> (Floe, Arc<FaultyCatalog>) {
    let handle: Arc<Mutex<Option<Arc<FaultyCatalog>>>> = Arc::default();
    let keep = handle.clone();
    let floe = Floe::connect_with(settings, move |inner| {
        let faulty = Arc::new(FaultyCatalog {
            inner,
            plan: Mutex::new(faults.into()),
            swaps: Mutex::new(0),
        });
        *keep.lock().unwrap() = Some(faulty.clone());
        faulty
    })
    .await
    .unwrap();
    let faulty = handle.lock().unwrap().take().unwrap();
    (floe, faulty)
}

#[async_trait]
impl Catalog for FaultyCatalog {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> &str {
        self.inner.kind()
    }
    fn describe(&self) -> String {
        format!("faulty {}", self.inner.describe())
    }
    async fn list_namespaces(&self) -> Result<Vec<Namespace>> {
        self.inner.list_namespaces().await
    }
    async fn namespace_exists(&self, ns: &Namespace) -> Result<bool> {
        self.inner.namespace_exists(ns).await
    }
    async fn create_namespace(&self, ns: &Namespace, properties: &BTreeMap<String, String>) -> Result<()> {
        self.inner.create_namespace(ns, properties).await
    }
    async fn namespace_properties(&self, ns: &Namespace) -> Result<BTreeMap<String, String>> {
        self.inner.namespace_properties(ns).await
    }
    async fn drop_namespace(&self, ns: &Namespace) -> Result<()> {
        self.inner.drop_namespace(ns).await
    }
    async fn list_tables(&self, ns: &Namespace) -> Result<Vec<TableName>> {
        self.inner.list_tables(ns).await
    }
    async fn metadata_location(&self, table: &TableName) -> Result<Option<String>> {
        self.inner.metadata_location(table).await
    }
    async fn register_table(&self, table: &TableName, metadata_location: &str) -> Result<()> {
        self.inner.register_table(table, metadata_location).await
    }
    async fn swap(&self, swaps: &[MetadataSwap]) -> SwapOutcome {
        *self.swaps.lock().unwrap() += 1;
        let fault = self.plan.lock().unwrap().pop_front();
        match fault {
            None => self.inner.swap(swaps).await,
            Some(Fault::FailStatement) => SwapOutcome::Failed(Error::new(
                ErrorKind::Catalog,
                "UPDATE iceberg_tables failed (injected fault)",
            )),
            Some(Fault::LoseReplyAfterSwap) => match self.inner.swap(swaps).await {
                SwapOutcome::Swapped => SwapOutcome::Unknown(Error::new(
                    ErrorKind::Catalog,
                    "connection reset while waiting for the reply to COMMIT (injected fault)",
                )),
                other => other,
            },
        }
    }
    async fn drop_table(&self, table: &TableName) -> Result<()> {
        self.inner.drop_table(table).await
    }
    async fn rename_table(&self, from: &TableName, to: &TableName) -> Result<()> {
        self.inner.rename_table(from, to).await
    }
    async fn update_namespace_properties(
        &self,
        ns: &Namespace,
        removals: &[String],
        updates: &BTreeMap<String, String>,
    ) -> Result<()> {
        self.inner
            .update_namespace_properties(ns, removals, updates)
            .await
    }
}
