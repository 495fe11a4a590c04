//! The equivalence check of a multi-engine run: every output table diffed between the engines'
//! branches; when all are equal, the verdict recorded in a snapshot on the first engine's branch and
//! `main` of every output table fast-forwarded to it (and tagged) in one transaction. Also `floe
//! verify`, which re-checks a recorded run.

use std::collections::BTreeMap;

use serde::Serialize;

use super::super::engine::Stage;
use super::super::ledger::{self, LedgerEntry, LedgerStatus};
use crate::catalog::{Namespace, TableName};
use crate::error::{Error, Result};
use crate::lakehouse::Floe;
use crate::table::{At, ExpectedHead, Lineage, Table, WriteOptions};

/// The equivalence check of a two-engine run: every output table of every stage diffed between
/// the two engines' branches.
#[derive(Clone, Debug, Serialize)]
pub struct Equivalence {
    /// All equal.
    pub equal: bool,
    /// The engines compared (left, right).
    pub engines: (String, String),
    /// Per output table, in stage order.
    pub tables: Vec<crate::diff::DiffReport>,
    /// The tag set on every published table when all were equal.
    pub tag: Option<String>,
}

/// `floe.stage` of the snapshots that record an equivalence verdict.
pub(crate) const VERDICT_STAGE: &str = "equivalence";

/// The snapshot whose data `id` holds: `id` itself, or for a verdict snapshot (which changes no
/// data) its nearest ancestor that is not one.
pub(crate) fn data_snapshot(table: &Table, id: i64) -> i64 {
    let mut cur = id;
    while let Some(s) = table.metadata().snapshot_by_id(cur) {
        let verdict = s
            .summary()
            .additional_properties
            .get("floe.stage")
            .map(String::as_str)
            == Some(VERDICT_STAGE);
        match (verdict, s.parent_snapshot_id()) {
            (true, Some(parent)) => cur = parent,
            _ => break,
        }
    }
    cur
}

/// Diff every table between the states `at` gives for engines `a` and `b`.
pub(crate) async fn check(
    floe: &Floe,
    ns: &Namespace,
    a: &str,
    b: &str,
    tables: &[&str],
    at: impl Fn(&Table, &str) -> Result<At>,
) -> Result<Equivalence> {
    let mut out = Equivalence {
        equal: true,
        engines: (a.to_string(), b.to_string()),
        tables: Vec::new(),
        tag: None,
    };
    let mut seen = std::collections::HashSet::new();
    for t in tables {
        if !seen.insert(*t) {
            continue;
        }
        let name = TableName::new(ns.clone(), *t)?;
        let table = floe.load_table(&name).await?;
        let left = crate::diff::DiffSide {
            table: name.clone(),
            at: at(&table, a)?,
        };
        let right = crate::diff::DiffSide {
            table: name,
            at: at(&table, b)?,
        };
        let d = crate::diff::diff(floe, &left, &right, &crate::diff::DiffOptions::default()).await?;
        out.equal &= d.equal;
        out.tables.push(d);
    }
    Ok(out)
}

/// Record an equal verdict and publish, in one transaction over every compared table: on `branch`
/// a snapshot that changes no data and carries the verdict in its summary (`floe.equivalence`,
/// `floe.equivalence.compared`, `floe.equivalence.decided-by`), then `main` fast-forwarded to it and
/// tagged `tag`. A reader never sees one table published without the others. Returns the verdict
/// snapshot per table.
pub(crate) async fn record_and_publish(
    floe: &Floe,
    ns: &Namespace,
    tables: &[&str],
    run_id: &str,
    branch: &str,
    eq: &Equivalence,
    tag: &str,
) -> Result<BTreeMap<String, i64>> {
    let mut tx = floe.transaction();
    // `eq.tables` holds one report per table of `tables`, in that order.
    for (t, d) in tables.iter().zip(&eq.tables) {
        let name = TableName::new(ns.clone(), *t)?;
        let table = tx.table(&name).await?;
        let head = table.find_ref(branch).map(|r| r.snapshot_id);
        if head.is_none() {
            continue;
        }
        let properties = BTreeMap::from([
            ("floe.equivalence".to_string(), "equal".to_string()),
            (
                "floe.equivalence.engines".to_string(),
                format!("{}={}", eq.engines.0, eq.engines.1),
            ),
            (
                "floe.equivalence.compared".to_string(),
                format!("{} = {}", d.left, d.right),
            ),
            (
                "floe.equivalence.decided-by".to_string(),
                format!("{:?}", d.decided_by).to_lowercase(),
            ),
        ]);
        let options = WriteOptions {
            branch: branch.to_string(),
            lineage: Lineage {
                run_id: Some(run_id.to_string()),
                stage: Some(VERDICT_STAGE.to_string()),
                engine: Some(format!("{}={}", eq.engines.0, eq.engines.1)),
                inputs: BTreeMap::new(),
            },
            properties,
            expected_head: ExpectedHead::of(head),
            ..Default::default()
        };
        tx.mark(&name, &options).await?;
        tx.publish(&name, branch).await?;
        tx.tag_main(&name, tag).await?;
    }
    let tables_in_tx = tx.tables();
    let results = tx.commit().await?;
    Ok(tables_in_tx
        .into_iter()
        .zip(results)
        .filter_map(|(name, r)| r.snapshot_id.map(|id| (name.name().to_string(), id)))
        .collect())
}

/// Fast-forward `main` of every output table of `stages` to `branch`, in one transaction.
pub(crate) async fn publish(floe: &Floe, ns: &Namespace, branch: &str, stages: &[Stage]) -> Result<()> {
    let mut tx = floe.transaction();
    let mut seen = std::collections::HashSet::new();
    let mut any = false;
    for t in stages.iter().flat_map(|s| s.outputs()) {
        if !seen.insert(*t) {
            continue;
        }
        let name = TableName::new(ns.clone(), *t)?;
        let table = tx.table(&name).await?;
        let head = table.find_ref(branch).map(|r| r.snapshot_id);
        if head.is_some() && head != table.current_snapshot().map(|s| s.snapshot_id()) {
            tx.publish(&name, branch).await?;
            any = true;
        }
    }
    if any {
        tx.commit().await?;
    }
    Ok(())
}

/// Re-check a recorded two-engine run: diff the snapshots each engine committed (or reused) for
/// every output table.
pub async fn verify(floe: &Floe, ns: &Namespace, run_id: &str) -> Result<Equivalence> {
    let entries: Vec<LedgerEntry> = ledger::list(floe.database(), 10_000)
        .await?
        .into_iter()
        .filter(|e| e.run_id == run_id && e.stage != "equivalence" && e.status != LedgerStatus::Failed)
        .collect();
    let mut engines: Vec<String> = entries.iter().map(|e| e.engine.clone()).collect();
    engines.sort();
    engines.dedup();
    let [a, b] = engines.as_slice() else {
        return Err(Error::not_found(format!(
            "run {run_id} is not a recorded two-engine run (engines found: {engines:?})"
        )));
    };
    // The last snapshot each engine committed per table in this run.
    let mut snaps: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut tables: Vec<String> = Vec::new();
    let mut ordered = entries.clone();
    ordered.sort_by(|x, y| x.started_at.cmp(&y.started_at));
    for e in &ordered {
        for (t, id) in &e.output_snapshots {
            snaps.insert((e.engine.clone(), t.clone()), *id);
            if !tables.contains(t) {
                tables.push(t.clone());
            }
        }
    }
    let tables: Vec<&str> = tables.iter().map(String::as_str).collect();
    check(floe, ns, a, b, &tables, |t: &Table, e: &str| {
        snaps
            .get(&(e.to_string(), t.name().name().to_string()))
            .map(|id| At::Snapshot(*id))
            .ok_or_else(|| Error::not_found(format!("run {run_id} recorded no {e} snapshot of {}", t.name())))
    })
    .await
}
