//! The one retry loop. Each attempt loads every table of the transaction, checks whether an earlier
//! attempt whose outcome was unknown landed after all, validates every action against the commits
//! since it read its table, applies the actions (manifests, manifest list, metadata JSON), and swaps
//! all tables' metadata locations in one catalog transaction. A lost race backs off (jittered,
//! exponential) and tries again; a validation conflict or a certain failure gives up and deletes
//! the transaction's files; an unknown outcome keeps every file an attempt may have committed.

use std::str::FromStr;
use std::time::{Duration, Instant};

use iceberg::spec::TableMetadata;
use iceberg::MetadataLocation;
use rand::Rng;

use super::producer::Staged;
use super::refs::fmt_id;
use super::{delete_quietly, Action, CommitOptions, CommitResult, CommitTimings, TableChange};
use crate::catalog::{MetadataSwap, SwapOutcome};
use crate::error::{Error, ErrorKind, Result};
use crate::table::store::TableStore;
use crate::table::Table;

/// Swaps that certainly failed (a statement error before `COMMIT`) are tried again this many times.
const FAILED_SWAP_RETRIES: u32 = 3;

/// An attempt whose swap reply was lost: what it would have made current, and the files only it
/// wrote (its manifests, manifest lists and metadata files).
struct UnknownAttempt {
    swaps: Vec<MetadataSwap>,
    snapshot_ids: Vec<Option<i64>>,
    written: Vec<String>,
}

impl UnknownAttempt {
    /// Whether this attempt is part of the committed history the reloaded `bases` show.
    fn landed(&self, changes: &[TableChange], bases: &[Table]) -> bool {
        let Some(swap) = self.swaps.first() else {
            return false;
        };
        let Some(i) = changes.iter().position(|c| c.name == swap.table) else {
            return false;
        };
        let base = &bases[i];
        base.metadata_location() == swap.new
            || base
                .metadata()
                .metadata_log()
                .iter()
                .any(|m| m.metadata_file == swap.new)
            || self.snapshot_ids[i].is_some_and(|id| base.metadata().snapshot_by_id(id).is_some())
    }
}

/// One table as an attempt staged it.
struct StagedTable {
    view: Table,
    changed: bool,
    snapshot_id: Option<i64>,
    expired_metadata: Vec<String>,
}

/// Commit `changes` (each table's actions, planned on the state the transaction read) atomically.
pub(crate) async fn commit(store: &TableStore, changes: Vec<TableChange>) -> Result<Vec<CommitResult>> {
    let policy = store.retry().clone();
    let storage = store.storage();
    let data_files: Vec<String> = changes
        .iter()
        .flat_map(|c| c.actions.iter().flat_map(|(a, _)| a.new_files()))
        .collect();
    let what = changes
        .iter()
        .map(|c| c.name.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    crate::faults::point("commit.after-data-files");
    let mut unknown: Vec<UnknownAttempt> = Vec::new();
    let mut timings = CommitTimings::default();
    let mut attempt: u32 = 0;
    let mut failures: u32 = 0;
    let mut preloaded: Vec<Option<Table>> = changes.iter().map(|c| Some(c.read.clone())).collect();
    // Give up: the transaction's data files go unless an attempt may have landed with them.
    let give_up = |unknown: &Vec<UnknownAttempt>, e: Error| {
        let files = if unknown.is_empty() {
            data_files.clone()
        } else {
            Vec::new()
        };
        async move {
            delete_quietly(storage, files).await;
            e
        }
    };
    loop {
        attempt += 1;
        let t0 = Instant::now();
        let mut bases = Vec::with_capacity(changes.len());
        for (i, c) in changes.iter().enumerate() {
            let base = match preloaded[i].take() {
                Some(table) => Ok(table),
                None => store.load(&c.name).await,
            };
            match base {
                Ok(b) => bases.push(b),
                Err(e) if unknown.is_empty() => return Err(give_up(&unknown, e).await),
                Err(e) => {
                    return Err(Error::new(
                        ErrorKind::CommitStateUnknown,
                        format!(
                            "commit to {what} may have landed; cannot reload {} to check: {e}",
                            c.name
                        ),
                    ))
                }
            }
        }
        timings.load_s += t0.elapsed().as_secs_f64();

        // Did an earlier attempt land after all? Then every later one cannot have: their own
        // files go, and the landed attempt is the result.
        if let Some(landed) = unknown.iter().position(|u| u.landed(&changes, &bases)) {
            let others: Vec<String> = unknown
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != landed)
                .flat_map(|(_, u)| u.written.clone())
                .collect();
            delete_quietly(storage, others).await;
            let ids = unknown[landed].snapshot_ids.clone();
            return Ok(bases
                .into_iter()
                .zip(ids)
                .map(|(table, snapshot_id)| CommitResult {
                    table,
                    snapshot_id,
                    attempts: attempt - 1,
                    timings: timings.clone(),
                })
                .collect());
        }

        let t0 = Instant::now();
        for (c, base) in changes.iter().zip(&bases) {
            for (action, options) in &c.actions {
                if let Err(e) = validate(action, base, options).await {
                    return Err(give_up(&unknown, e.context(format!("commit to {}", c.name))).await);
                }
            }
        }
        timings.validate_s += t0.elapsed().as_secs_f64();

        // Stage every table: its actions in order, each on the view the previous one left.
        let t0 = Instant::now();
        let mut written: Vec<String> = Vec::new();
        let mut staged: Vec<StagedTable> = Vec::with_capacity(changes.len());
        for (c, base) in changes.iter().zip(&bases) {
            let mut table = StagedTable {
                view: base.clone(),
                changed: false,
                snapshot_id: None,
                expired_metadata: Vec::new(),
            };
            for (action, options) in &c.actions {
                match apply(action, &table.view, options, &mut written).await {
                    Ok(Some(s)) => {
                        table.changed = true;
                        table.snapshot_id = s.snapshot_id.or(table.snapshot_id);
                        table.expired_metadata.extend(s.expired_metadata);
                        table.view = table.view.staged(s.metadata, &s.ref_updates);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        delete_quietly(storage, written).await;
                        return Err(give_up(&unknown, e.context(format!("commit to {}", c.name))).await);
                    }
                }
            }
            staged.push(table);
        }
        timings.stage_s += t0.elapsed().as_secs_f64();
        if !staged.iter().any(|s| s.changed) {
            // Every action was a no-op (a delete that matched nothing, an append of nothing).
            return Ok(bases
                .into_iter()
                .map(|table| CommitResult {
                    table,
                    snapshot_id: None,
                    attempts: attempt,
                    timings: timings.clone(),
                })
                .collect());
        }

        // Metadata files, then one swap of every changed table.
        let t0 = Instant::now();
        let mut swaps = Vec::new();
        for ((c, base), s) in changes.iter().zip(&bases).zip(&staged) {
            if !s.changed {
                continue;
            }
            let location = next_metadata_location(base, s.view.metadata());
            let write = if crate::table::metadata_json::encodes(s.view.metadata()) {
                match s.view.metadata_json() {
                    Ok(json) => storage.write_parts(&location, json.into_parts()).await,
                    Err(e) => Err(e),
                }
            } else {
                match MetadataLocation::from_str(&location) {
                    Ok(l) => s
                        .view
                        .metadata()
                        .write_to(&storage.file_io(), &l)
                        .await
                        .map_err(Error::from),
                    Err(e) => Err(Error::from(e)),
                }
            };
            written.push(location.clone());
            if let Err(e) = write {
                delete_quietly(storage, written).await;
                let e = e.context(format!("commit to {}: cannot write metadata", c.name));
                return Err(give_up(&unknown, e).await);
            }
            swaps.push(MetadataSwap {
                table: c.name.clone(),
                expected: base.metadata_location().to_string(),
                new: location,
            });
        }
        timings.metadata_s += t0.elapsed().as_secs_f64();
        crate::faults::point("commit.after-metadata");

        let t0 = Instant::now();
        let outcome = store.catalog().swap(&swaps).await;
        timings.swap_s += t0.elapsed().as_secs_f64();
        match outcome {
            SwapOutcome::Swapped => {
                crate::faults::point("commit.after-swap");
                // Unknown earlier attempts were computed on a state this one replaced: they can
                // never land now.
                let stale: Vec<String> = unknown.iter().flat_map(|u| u.written.clone()).collect();
                crate::faults::point("commit.before-cleanup");
                delete_quietly(storage, stale).await;
                let mut results = Vec::with_capacity(changes.len());
                let mut locations = swaps.into_iter();
                for ((c, base), s) in changes.iter().zip(bases).zip(staged) {
                    let table = if s.changed {
                        let location = locations.next().expect("one swap per changed table").new;
                        if cleans_metadata(s.view.metadata()) {
                            delete_quietly(storage, s.expired_metadata).await;
                        }
                        store.handle_with_refs(
                            &c.name,
                            location,
                            s.view.shared_metadata(),
                            s.view.shared_refs(),
                        )
                    } else {
                        base
                    };
                    results.push(CommitResult {
                        table,
                        snapshot_id: s.snapshot_id,
                        attempts: attempt,
                        timings: timings.clone(),
                    });
                }
                return Ok(results);
            }
            SwapOutcome::Failed(e) => {
                // Certainly not landed: safe to try again (a dropped connection, a restarted
                // server), a few times.
                delete_quietly(storage, written).await;
                failures += 1;
                if failures > FAILED_SWAP_RETRIES || attempt > policy.max_retries {
                    return Err(give_up(&unknown, e).await);
                }
                tracing::warn!(tables = %what, attempt, error = %e, "commit failed before it could land; retrying");
            }
            SwapOutcome::Conflict { table } => {
                delete_quietly(storage, written).await;
                if attempt > policy.max_retries {
                    let e = Error::conflict(
                        None,
                        format!(
                            "commit to {what} lost the race for {table} to concurrent commits {attempt} times; \
                             giving up"
                        ),
                    );
                    return Err(give_up(&unknown, e).await);
                }
                tracing::debug!(tables = %what, lost_on = %table, attempt, "commit conflict; retrying on the new base");
            }
            SwapOutcome::Unknown(e) => {
                tracing::warn!(tables = %what, attempt, error = %e, "commit outcome unknown; checking");
                unknown.push(UnknownAttempt {
                    swaps,
                    snapshot_ids: staged.iter().map(|s| s.snapshot_id).collect(),
                    written,
                });
                if attempt > policy.max_retries {
                    return Err(Error::new(
                        ErrorKind::CommitStateUnknown,
                        format!("commit to {what} may have landed; its files are kept: {e}"),
                    ));
                }
            }
        }
        let pause = backoff(&policy, attempt);
        timings.backoff_s += pause.as_secs_f64();
        tokio::time::sleep(pause).await;
    }
}

/// Check an action against its base: the ref expectation, then the action's own rules.
async fn validate(action: &Action, base: &Table, options: &CommitOptions) -> Result<()> {
    if let Some(expected) = options.expected_head {
        let head = base
            .metadata()
            .snapshot_for_ref(&options.branch)
            .map(|s| s.snapshot_id());
        if head != expected {
            return Err(Error::conflict(
                head,
                format!(
                    "{}@{} moved from {} to {}; refusing to apply a change computed on the old state",
                    base.name(),
                    options.branch,
                    fmt_id(expected),
                    fmt_id(head)
                ),
            ));
        }
    }
    match action {
        Action::Append(_) | Action::Ref(_) | Action::Schema(_) | Action::Expire(_) => Ok(()),
        Action::Rows(r) => r.validate(base, options).await,
        Action::Rewrite(r) => r.validate(base, options).await,
    }
}

/// Apply an action to `view`: the staged metadata, or `None` when it changes nothing.
async fn apply(
    action: &Action,
    view: &Table,
    options: &CommitOptions,
    written: &mut Vec<String>,
) -> Result<Option<Staged>> {
    match action {
        Action::Append(a) => a.apply(view, options, written).await,
        Action::Rows(r) => r.apply(view, options, written).await,
        Action::Rewrite(r) => r.apply(view, options, written).await,
        Action::Ref(r) => r.apply(view).map(Some),
        Action::Schema(s) => s.apply(view).map(Some),
        Action::Expire(e) => e.apply(view),
    }
}

/// Whether old metadata files are deleted once the metadata log no longer lists them.
fn cleans_metadata(metadata: &TableMetadata) -> bool {
    metadata
        .properties()
        .get("write.metadata.delete-after-commit.enabled")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn backoff(policy: &crate::config::RetryPolicy, attempt: u32) -> Duration {
    let exp = policy.min_backoff.saturating_mul(1u32 << attempt.min(16));
    let cap = exp.min(policy.max_backoff).max(Duration::from_millis(1));
    let jitter = rand::thread_rng().gen_range(0.5..1.0);
    cap.mul_f64(jitter)
}

/// The metadata file after `base`'s: `<location>/metadata/<version + 1>-<uuid>[.gz].metadata.json`,
/// the version read off the base's file name (`00042-<uuid>…` as Java, iceberg-rust and PyIceberg
/// name it, or Hadoop's `v42.metadata.json`), or counted from the metadata log for a file named
/// otherwise. (Parsed here rather than by `MetadataLocation::from_str`, whose errors are built, with a
/// backtrace, even when it succeeds: a measurable share of a one-row commit.)
fn next_metadata_location(base: &Table, new: &TableMetadata) -> String {
    let version =
        metadata_version(base.metadata_location()).unwrap_or(base.metadata().metadata_log().len() as u64);
    let suffix = new
        .metadata_compression_codec()
        .ok()
        .and_then(|c| c.suffix().ok())
        .unwrap_or_default();
    format!(
        "{}/metadata/{:05}-{}{suffix}.metadata.json",
        new.location().trim_end_matches('/'),
        version + 1,
        uuid::Uuid::new_v4()
    )
}

/// The version in a metadata file's name, by either convention.
fn metadata_version(location: &str) -> Option<u64> {
    let file = location.rsplit('/').next().unwrap_or_default();
    file.split_once('-')
        .and_then(|(v, _)| v.parse::<u64>().ok())
        .or_else(|| {
            file.strip_prefix('v')
                .and_then(|f| f.split('.').next())
                .and_then(|v| v.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::metadata_version;

    #[test]
    fn a_metadata_version_is_read_off_either_naming_convention() {
        assert_eq!(
            metadata_version("s3://b/t/metadata/00041-2cd22b57-5127-4198-92ba-e4e67c79821b.metadata.json"),
            Some(41)
        );
        assert_eq!(metadata_version("/t/metadata/v7.metadata.json"), Some(7));
        assert_eq!(metadata_version("/t/metadata/v7.gz.metadata.json"), Some(7));
        assert_eq!(metadata_version("/t/metadata/table.metadata.json"), None);
    }
}
