//! One commit attempt on freshly loaded bases: validate every action against the commits since it
//! read its table, stage every table (its actions in order, each on the view the previous one
//! left), write each changed table's metadata file, and swap every changed table's metadata location
//! in one catalog transaction. The retry loop ([`super::commit`]) decides what each [`Outcome`]
//! means; an error here is final (a validation conflict, a write that failed), with this attempt's
//! own files already deleted.

use std::str::FromStr;
use std::time::Instant;

use iceberg::spec::TableMetadata;
use iceberg::MetadataLocation;

use super::producer::Staged;
use super::row_delta::Verdict;
use super::unknown::UnknownAttempt;
use super::{delete_quietly, Action, CommitTimings, TableChange};
use crate::catalog::{MetadataSwap, SwapOutcome, TableName};
use crate::error::{Error, Result};
use crate::table::store::TableStore;
use crate::table::Table;

/// What one attempt came to.
pub(crate) enum Outcome {
    /// Files some actions read were replaced meanwhile: plan those again on these bases (table,
    /// action, why), then try again.
    Replan(Vec<(usize, usize, String)>),
    /// Every changed table's new metadata is current.
    Landed(Landed),
    /// Every action was a no-op (a delete that matched nothing, an append of nothing): nothing was
    /// written or swapped.
    NoChange,
    /// Another commit moved `table` first; nothing landed and this attempt's files are deleted.
    LostRace { table: TableName },
    /// The swap certainly did not happen (a statement error before `COMMIT`); this attempt's files
    /// are deleted.
    SwapFailed(Error),
    /// The reply to the swap was lost: the attempt may have landed. Its files are kept.
    Unknown(UnknownAttempt, Error),
}

/// A landed attempt: each table after it (in the transaction's order) and the snapshot it created.
pub(crate) struct Landed {
    pub(crate) tables: Vec<Table>,
    pub(crate) snapshot_ids: Vec<Option<i64>>,
    /// Metadata files the new metadata logs no longer list, to delete once the commit is done.
    pub(crate) expired_metadata: Vec<String>,
}

/// One table as an attempt staged it.
struct StagedTable {
    view: Table,
    changed: bool,
    snapshot_id: Option<i64>,
    expired_metadata: Vec<String>,
}

/// Run one attempt of `changes` on `bases` (one per change, same order).
pub(crate) async fn attempt(
    store: &TableStore,
    changes: &[TableChange],
    bases: &[Table],
    timings: &mut CommitTimings,
) -> Result<Outcome> {
    let t0 = Instant::now();
    let replans = validate_all(changes, bases).await?;
    timings.validate_s += t0.elapsed().as_secs_f64();
    if !replans.is_empty() {
        return Ok(Outcome::Replan(replans));
    }

    let storage = store.storage();
    let mut written: Vec<String> = Vec::new();
    let t0 = Instant::now();
    let staged = stage_all(changes, bases, &mut written).await;
    timings.stage_s += t0.elapsed().as_secs_f64();
    let staged = match staged {
        Ok(s) => s,
        Err(e) => {
            delete_quietly(storage, written).await;
            return Err(e);
        }
    };
    if !staged.iter().any(|s| s.changed) {
        return Ok(Outcome::NoChange);
    }

    let t0 = Instant::now();
    let swaps = write_metadata(store, changes, bases, &staged, &mut written).await;
    timings.metadata_s += t0.elapsed().as_secs_f64();
    let swaps = match swaps {
        Ok(s) => s,
        Err(e) => {
            delete_quietly(storage, written).await;
            return Err(e);
        }
    };
    crate::faults::point("commit.after-metadata");

    let t0 = Instant::now();
    let outcome = store.catalog().swap(&swaps).await;
    timings.swap_s += t0.elapsed().as_secs_f64();
    Ok(match outcome {
        SwapOutcome::Swapped => {
            crate::faults::point("commit.after-swap");
            Outcome::Landed(landed(store, changes, bases, staged, swaps))
        }
        SwapOutcome::Conflict { table } => {
            delete_quietly(storage, written).await;
            Outcome::LostRace { table }
        }
        SwapOutcome::Failed(e) => {
            delete_quietly(storage, written).await;
            Outcome::SwapFailed(e)
        }
        SwapOutcome::Unknown(e) => Outcome::Unknown(
            UnknownAttempt {
                swaps,
                snapshot_ids: staged.iter().map(|s| s.snapshot_id).collect(),
                written,
            },
            e,
        ),
    })
}

/// Check every action against its table's base: the actions to plan again, if any.
async fn validate_all(changes: &[TableChange], bases: &[Table]) -> Result<Vec<(usize, usize, String)>> {
    let mut replans = Vec::new();
    for (i, (c, base)) in changes.iter().zip(bases).enumerate() {
        for (j, action) in c.actions.iter().enumerate() {
            let verdict = validate(action, base)
                .await
                .map_err(|e| e.context(format!("commit to {}", c.name)))?;
            if let Verdict::Replan(why) = verdict {
                replans.push((i, j, why));
            }
        }
    }
    Ok(replans)
}

/// Check an action against its base: the head it expects, then the action's own rules.
async fn validate(action: &Action, base: &Table) -> Result<Verdict> {
    match action {
        Action::Append(a) => a.validate(base).map(|_| Verdict::Valid),
        Action::RowDelta(r) => r.validate(base).await,
        Action::Rewrite(r) => r.validate(base).await.map(|_| Verdict::Valid),
        Action::Client(c) => c.validate(base).map(|_| Verdict::Valid),
        Action::Schema(s) => s.validate(base).map(|_| Verdict::Valid),
        Action::Spec(s) => s.validate(base).map(|_| Verdict::Valid),
        Action::Ref(_) | Action::SortOrder(_) | Action::Expire(_) => Ok(Verdict::Valid),
    }
}

/// Stage every table: its actions in order, each on the view the previous one left. Every file
/// written is recorded in `written`.
async fn stage_all(
    changes: &[TableChange],
    bases: &[Table],
    written: &mut Vec<String>,
) -> Result<Vec<StagedTable>> {
    let mut staged = Vec::with_capacity(changes.len());
    for (c, base) in changes.iter().zip(bases) {
        let mut table = StagedTable {
            view: base.clone(),
            changed: false,
            snapshot_id: None,
            expired_metadata: Vec::new(),
        };
        for action in &c.actions {
            let step = apply(action, &table.view, written)
                .await
                .map_err(|e| e.context(format!("commit to {}", c.name)))?;
            if let Some(s) = step {
                table.changed = true;
                table.snapshot_id = s.snapshot_id.or(table.snapshot_id);
                table.expired_metadata.extend(s.expired_metadata);
                table.view = table.view.staged(s.metadata, &s.ref_updates);
            }
        }
        staged.push(table);
    }
    Ok(staged)
}

/// Apply an action to `view`: the staged metadata, or `None` when it changes nothing.
async fn apply(action: &Action, view: &Table, written: &mut Vec<String>) -> Result<Option<Staged>> {
    match action {
        Action::Append(a) => a.apply(view, written).await,
        Action::RowDelta(r) => r.apply(view, written).await,
        Action::Rewrite(r) => r.apply(view, written).await,
        Action::Ref(r) => r.apply(view).map(Some),
        Action::Schema(s) => s.apply(view).await.map(Some),
        Action::SortOrder(s) => s.apply(view).map(Some),
        Action::Spec(s) => s.apply(view).map(Some),
        Action::Expire(e) => e.apply(view),
        Action::Client(c) => c.apply(view).await,
    }
}

/// Write each changed table's metadata file: the swaps that make them current.
async fn write_metadata(
    store: &TableStore,
    changes: &[TableChange],
    bases: &[Table],
    staged: &[StagedTable],
    written: &mut Vec<String>,
) -> Result<Vec<MetadataSwap>> {
    let storage = store.storage();
    let mut swaps = Vec::new();
    for ((c, base), s) in changes.iter().zip(bases).zip(staged) {
        if !s.changed {
            continue;
        }
        let location = next_metadata_location(base, s.view.metadata());
        written.push(location.clone());
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
        write.map_err(|e| e.context(format!("commit to {}: cannot write metadata", c.name)))?;
        swaps.push(MetadataSwap {
            table: c.name.clone(),
            expected: base.metadata_location().to_string(),
            new: location,
        });
    }
    Ok(swaps)
}

/// The tables after a swap that landed: each changed one a handle on its new metadata (remembered
/// by the store, so loading it again is free), each unchanged one its base.
fn landed(
    store: &TableStore,
    changes: &[TableChange],
    bases: &[Table],
    staged: Vec<StagedTable>,
    swaps: Vec<MetadataSwap>,
) -> Landed {
    let mut out = Landed {
        tables: Vec::with_capacity(changes.len()),
        snapshot_ids: Vec::with_capacity(changes.len()),
        expired_metadata: Vec::new(),
    };
    let mut locations = swaps.into_iter();
    for ((c, base), s) in changes.iter().zip(bases).zip(staged) {
        let table = if s.changed {
            let location = locations.next().expect("one swap per changed table").new;
            if cleans_metadata(s.view.metadata()) {
                out.expired_metadata.extend(s.expired_metadata);
            }
            store.handle_with_refs(&c.name, location, s.view.shared_metadata(), s.view.shared_refs())
        } else {
            base.clone()
        };
        out.tables.push(table);
        out.snapshot_ids.push(s.snapshot_id);
    }
    out
}

/// Whether old metadata files are deleted once the metadata log no longer lists them.
fn cleans_metadata(metadata: &TableMetadata) -> bool {
    metadata
        .properties()
        .get("write.metadata.delete-after-commit.enabled")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
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
