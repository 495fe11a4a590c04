//! The one retry loop. Each round loads every table of the transaction, asks whether an earlier
//! attempt whose outcome was unknown landed after all ([`super::unknown`]), and runs one
//! [`attempt`](super::attempt). A lost race or a swap that certainly failed backs off (jittered,
//! exponential) and tries again on the new bases; a validation conflict or any other error gives up
//! and deletes the transaction's files; an unknown outcome keeps every file an attempt may have
//! committed.

use std::time::{Duration, Instant};

use rand::Rng;

use super::attempt::{attempt, Landed, Outcome};
use super::unknown::Unknowns;
use super::{delete_quietly, Action, CommitResult, CommitTimings, RowCounts, TableChange};
use crate::config::RetryPolicy;
use crate::error::{Error, ErrorKind, Result};
use crate::table::store::TableStore;
use crate::table::Table;

/// Swaps that certainly failed (a statement error before `COMMIT`) are tried again this many times.
const FAILED_SWAP_RETRIES: u32 = 3;

/// Commit `changes` (each table's actions, planned on the state the transaction read) atomically.
pub(crate) async fn commit(store: &TableStore, mut changes: Vec<TableChange>) -> Result<Vec<CommitResult>> {
    crate::faults::point("commit.after-data-files");
    let mut run = Run::new(store, &changes);
    // The first attempt builds on the tables as the transaction read them; later ones reload.
    let mut preloaded: Option<Vec<Table>> = Some(changes.iter().map(|c| c.read.clone()).collect());
    loop {
        run.attempt += 1;
        let t0 = Instant::now();
        let bases = match preloaded.take() {
            Some(read) => read,
            None => run.reload(&changes).await?,
        };
        run.timings.load_s += t0.elapsed().as_secs_f64();
        if let Some(ids) = run.unknown.resolve(&changes, &bases, store.storage()).await {
            run.attempt -= 1;
            return Ok(run.results(&changes, bases, ids));
        }
        let outcome = match attempt(store, &changes, &bases, &mut run.timings).await {
            Ok(outcome) => outcome,
            Err(e) => return Err(run.give_up(e).await),
        };
        match outcome {
            Outcome::Replan(replans) => {
                if run.attempt > run.policy.max_retries {
                    let e = Error::conflict(
                        None,
                        format!(
                            "commit to {} was planned again {} times; giving up",
                            run.what, run.attempt
                        ),
                    );
                    return Err(run.give_up(e).await);
                }
                if let Err(e) = run.replan(&mut changes, &bases, replans).await {
                    return Err(run.give_up(e).await);
                }
                // Planned on these bases: try again at once.
                preloaded = Some(bases);
                continue;
            }
            Outcome::Landed(landed) => return Ok(run.finish(&changes, landed).await),
            Outcome::NoChange => {
                let none = vec![None; bases.len()];
                return Ok(run.results(&changes, bases, none));
            }
            Outcome::LostRace { table } => {
                if run.attempt > run.policy.max_retries {
                    let e = Error::conflict(
                        None,
                        format!(
                            "commit to {} lost the race for {table} to concurrent commits {} times; giving up",
                            run.what, run.attempt
                        ),
                    );
                    return Err(run.give_up(e).await);
                }
                tracing::debug!(tables = %run.what, lost_on = %table, attempt = run.attempt, "commit conflict; retrying on the new base");
            }
            Outcome::SwapFailed(e) => {
                // Certainly not landed: safe to try again (a dropped connection, a restarted
                // server), a few times.
                run.failures += 1;
                if run.failures > FAILED_SWAP_RETRIES || run.attempt > run.policy.max_retries {
                    if !run.unknown.is_empty() {
                        // This attempt certainly failed, but an earlier one may yet have landed.
                        return Err(Error::new(
                            ErrorKind::CommitStateUnknown,
                            format!("commit to {} may have landed; its files are kept: {e}", run.what),
                        ));
                    }
                    return Err(run.give_up(e.swap_failed()).await);
                }
                tracing::warn!(tables = %run.what, attempt = run.attempt, error = %e, "commit failed before it could land; retrying");
            }
            Outcome::Unknown(unknown, e) => {
                tracing::warn!(tables = %run.what, attempt = run.attempt, error = %e, "commit outcome unknown; checking");
                run.unknown.push(unknown);
                if run.attempt > run.policy.max_retries {
                    return Err(Error::new(
                        ErrorKind::CommitStateUnknown,
                        format!("commit to {} may have landed; its files are kept: {e}", run.what),
                    ));
                }
            }
        }
        let pause = backoff(&run.policy, run.attempt);
        run.timings.backoff_s += pause.as_secs_f64();
        tokio::time::sleep(pause).await;
    }
}

/// The state of one commit across its attempts.
struct Run<'a> {
    store: &'a TableStore,
    policy: RetryPolicy,
    /// The tables, for messages.
    what: String,
    /// The data files the transaction wrote: deleted when it certainly did not land.
    data_files: Vec<String>,
    attempt: u32,
    failures: u32,
    unknown: Unknowns,
    timings: CommitTimings,
}

impl<'a> Run<'a> {
    fn new(store: &'a TableStore, changes: &[TableChange]) -> Self {
        Self {
            store,
            policy: store.retry().clone(),
            what: changes
                .iter()
                .map(|c| c.name.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            data_files: changes
                .iter()
                .flat_map(|c| c.actions.iter().flat_map(|a| a.new_files()))
                .collect(),
            attempt: 0,
            failures: 0,
            unknown: Unknowns::default(),
            timings: CommitTimings::default(),
        }
    }

    /// Load every table again. A table that cannot be loaded while an earlier attempt's outcome is
    /// unknown leaves the whole commit's outcome unknown.
    async fn reload(&mut self, changes: &[TableChange]) -> Result<Vec<Table>> {
        let mut bases = Vec::with_capacity(changes.len());
        for c in changes {
            match self.store.load(&c.name).await {
                Ok(b) => bases.push(b),
                Err(e) if self.unknown.is_empty() => return Err(self.give_up(e).await),
                Err(e) => {
                    return Err(Error::new(
                        ErrorKind::CommitStateUnknown,
                        format!(
                            "commit to {} may have landed; cannot reload {} to check: {e}",
                            self.what, c.name
                        ),
                    ))
                }
            }
        }
        Ok(bases)
    }

    /// Plan the row-level changes `replans` names again on `bases` (a compaction replaced files they
    /// read); the files their old plans wrote go.
    async fn replan(
        &mut self,
        changes: &mut [TableChange],
        bases: &[Table],
        replans: Vec<(usize, usize, String)>,
    ) -> Result<()> {
        for (i, j, why) in replans {
            let Action::RowDelta(old) = &changes[i].actions[j] else {
                return Err(Error::internal("only row-level changes are planned again"));
            };
            let Some(planner) = old.replan.clone() else {
                return Err(Error::internal(
                    "a change without a planner was to be planned again",
                ));
            };
            tracing::info!(table = %changes[i].name, reason = %why, "planning the change again on the new head");
            let new = planner.replan(&bases[i]).await?;
            let stale = old.planned_files();
            self.data_files.retain(|f| !stale.contains(f));
            self.data_files.extend(new.planned_files());
            changes[i].actions[j] = Action::RowDelta(Box::new(new));
            delete_quietly(self.store.storage(), stale).await;
        }
        Ok(())
    }

    /// Give up with `e`: the transaction's data files go, unless an attempt may have landed with
    /// them.
    async fn give_up(&mut self, e: Error) -> Error {
        if self.unknown.is_empty() {
            delete_quietly(self.store.storage(), std::mem::take(&mut self.data_files)).await;
        }
        e
    }

    /// The attempt landed: earlier attempts whose outcome was unknown were computed on a state it
    /// replaced and can never land now, and metadata files the logs no longer list go.
    async fn finish(&mut self, changes: &[TableChange], landed: Landed) -> Vec<CommitResult> {
        crate::faults::point("commit.before-cleanup");
        self.unknown.discard(self.store.storage()).await;
        delete_quietly(self.store.storage(), landed.expired_metadata).await;
        self.results(changes, landed.tables, landed.snapshot_ids)
    }

    fn results(
        &self,
        changes: &[TableChange],
        tables: Vec<Table>,
        snapshot_ids: Vec<Option<i64>>,
    ) -> Vec<CommitResult> {
        tables
            .into_iter()
            .zip(snapshot_ids)
            .zip(changes)
            .map(|((table, snapshot_id), change)| {
                let mut rows = RowCounts::default();
                for a in &change.actions {
                    if let Action::RowDelta(r) = a {
                        rows += r.counts;
                    }
                }
                CommitResult {
                    table,
                    snapshot_id,
                    attempts: self.attempt,
                    timings: self.timings.clone(),
                    rows,
                }
            })
            .collect()
    }
}

fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy.min_backoff.saturating_mul(1u32 << attempt.min(16));
    let cap = exp.min(policy.max_backoff).max(Duration::from_millis(1));
    let jitter = rand::thread_rng().gen_range(0.5..1.0);
    cap.mul_f64(jitter)
}
