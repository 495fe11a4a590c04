//! Expire snapshots and free their storage. The expiry itself is a metadata commit through the one
//! commit path (the transaction layer's `expire` action, judged on each attempt's base); once it has
//! landed, the table is loaded again, so that commits that landed meanwhile count, and the manifest
//! lists, manifests, data and delete files and statistics files of the expired snapshots that no
//! remaining snapshot references live are deleted. A dry run commits and deletes nothing and
//! reports the same.

use std::collections::BTreeSet;

use futures::StreamExt;

use serde::Serialize;

use super::reachable::{reachable, Entries};
use super::FileCounts;
use crate::catalog::TableName;
use crate::error::Result;
use crate::storage::delete_quietly;
use crate::table::transaction::expire::Expire;
use crate::table::{Table, TableStore, Transaction};

/// What to expire. Unset fields take the table's properties (Iceberg's names and defaults):
/// `history.expire.max-snapshot-age-ms` (5 days) and `history.expire.min-snapshots-to-keep` (1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpireOptions {
    /// Expire snapshots committed before this time (milliseconds since the epoch).
    pub older_than_ms: Option<i64>,
    /// Keep at least this many snapshots of every branch (at least 1).
    pub retain_last: Option<usize>,
    /// Report what would go; change nothing.
    pub dry_run: bool,
}

/// What an expiry did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExpireReport {
    /// The table.
    pub table: String,
    /// Snapshots removed from the metadata.
    pub snapshots_expired: Vec<i64>,
    /// Branches and tags removed (older than their `max-ref-age-ms`).
    pub refs_expired: Vec<String>,
    /// Files deleted, by kind.
    pub deleted: FileCounts,
    /// Nothing was changed.
    pub dry_run: bool,
}

/// Expire snapshots of `name` and delete the files only they referenced.
pub(crate) async fn expire_snapshots(
    store: &TableStore,
    name: &TableName,
    options: &ExpireOptions,
) -> Result<ExpireReport> {
    let before = store.load(name).await?;
    let expire = Expire {
        now_ms: chrono::Utc::now().timestamp_millis(),
        older_than_ms: options.older_than_ms,
        retain_last: options.retain_last,
    };
    let planned = expire.plan(&before)?;
    let mut report = ExpireReport {
        table: name.to_string(),
        dry_run: options.dry_run,
        ..Default::default()
    };
    if options.dry_run {
        let after = match expire.apply(&before)? {
            Some(staged) => before.staged(staged.metadata, &staged.ref_updates),
            None => before.clone(),
        };
        report.snapshots_expired = planned.snapshots.iter().copied().collect();
        report.refs_expired = planned.refs.iter().cloned().collect();
        let (_, counts) = unreferenced(&before, &after).await?;
        report.deleted = counts;
        return Ok(report);
    }
    if planned.snapshots.is_empty() && planned.refs.is_empty() {
        return Ok(report);
    }
    let mut tx = Transaction::new(store.clone());
    tx.expire_snapshots(name, expire).await?;
    let committed = tx.commit().await?;
    // The state after the expiry, with whatever landed since: nothing it references goes.
    let after = store.load(name).await?;
    let kept: BTreeSet<i64> = after.metadata().snapshots().map(|s| s.snapshot_id()).collect();
    report.snapshots_expired = before
        .metadata()
        .snapshots()
        .map(|s| s.snapshot_id())
        .filter(|id| !kept.contains(id))
        .collect();
    report.snapshots_expired.sort_unstable(); // by id, as the dry run lists them
    let refs_after = after.snapshot_refs();
    report.refs_expired = before
        .snapshot_refs()
        .into_keys()
        .filter(|r| !refs_after.contains_key(r))
        .collect();
    drop(committed);
    let (files, counts) = unreferenced(&before, &after).await?;
    delete_quietly(store.storage(), files).await;
    report.deleted = counts;
    Ok(report)
}

/// The files `before`'s snapshots reference that none of `after`'s does, with their counts.
async fn unreferenced(before: &Table, after: &Table) -> Result<(Vec<String>, FileCounts)> {
    let kept: BTreeSet<i64> = after.metadata().snapshots().map(|s| s.snapshot_id()).collect();
    let expired: Vec<_> = before
        .metadata()
        .snapshots()
        .filter(|s| !kept.contains(&s.snapshot_id()))
        .cloned()
        .collect();
    if expired.is_empty() {
        return Ok((Vec::new(), FileCounts::default()));
    }
    let gone = reachable(before, expired.iter(), Entries::Live).await?;
    let live = reachable(after, after.metadata().snapshots(), Entries::Live).await?;
    let mut counts = FileCounts::default();
    let mut files = Vec::new();
    // Sizes, from the metadata that names each file (manifest lists: from the store).
    let mut sizes = gone.sizes.clone();
    for st in before.metadata().statistics_iter() {
        sizes.insert(st.statistics_path.clone(), st.file_size_in_bytes.max(0) as u64);
    }
    let lists: Vec<String> = gone
        .manifest_lists
        .iter()
        .filter(|l| !live.contains(l))
        .cloned()
        .collect();
    let list_sizes: Vec<(String, u64)> = futures::stream::iter(lists.into_iter().map(|list| {
        let storage = before.storage().clone();
        async move { storage.size(&list).await.ok().map(|size| (list, size)) }
    }))
    .buffer_unordered(16)
    .filter_map(|x| async move { x })
    .collect()
    .await;
    sizes.extend(list_sizes);
    let mut take = |path: &String, kind: &mut u64| {
        if !live.contains(path) {
            *kind += 1;
            counts.bytes += sizes.get(path).copied().unwrap_or(0);
            files.push(path.clone());
        }
    };
    for p in &gone.data_files {
        take(p, &mut counts.data_files);
    }
    for p in &gone.delete_files {
        take(p, &mut counts.delete_files);
    }
    for p in &gone.manifests {
        take(p, &mut counts.manifests);
    }
    for p in &gone.manifest_lists {
        take(p, &mut counts.manifest_lists);
    }
    let expired_ids: BTreeSet<i64> = expired.iter().map(|s| s.snapshot_id()).collect();
    for st in before.metadata().statistics_iter() {
        if expired_ids.contains(&st.snapshot_id) {
            take(&st.statistics_path, &mut counts.statistics);
        }
    }
    for st in before.metadata().partition_statistics_iter() {
        if expired_ids.contains(&st.snapshot_id) {
            take(&st.statistics_path, &mut counts.statistics);
        }
    }
    Ok((files, counts))
}
