//! Expire snapshots, as Iceberg Java's `RemoveSnapshots` decides it, recomputed on every attempt's
//! base (a snapshot committed meanwhile is judged too). Refs other than `main` expire by age
//! (`max-ref-age-ms`, default `history.expire.max-ref-age-ms`, never by default); each kept branch
//! keeps its ancestors while fewer than `min-snapshots-to-keep` are kept or they are newer than the
//! cut-off (`max-snapshot-age-ms`), stopping at the first that is neither; tags keep their
//! snapshot; a snapshot no ref reaches is kept only while newer than the cut-off. The metadata
//! commit removes the rest; deleting their files is the maintenance layer's job once it landed.

use std::collections::{BTreeSet, HashMap};

use iceberg::spec::{SnapshotRetention, TableMetadata, MAIN_BRANCH};

use super::producer::Staged;
use crate::error::{Error, Result};
use crate::table::Table;

/// Table properties and their Iceberg Java defaults.
pub(crate) const MAX_SNAPSHOT_AGE_MS: (&str, i64) =
    ("history.expire.max-snapshot-age-ms", 5 * 24 * 3600 * 1000);
pub(crate) const MIN_SNAPSHOTS_TO_KEEP: (&str, i64) = ("history.expire.min-snapshots-to-keep", 1);
pub(crate) const MAX_REF_AGE_MS: (&str, i64) = ("history.expire.max-ref-age-ms", i64::MAX);

/// What to expire: snapshots older than `older_than` (ms since the epoch), beyond the last
/// `retain_last` of each branch. `None` takes the table's properties.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Expire {
    pub(crate) now_ms: i64,
    pub(crate) older_than_ms: Option<i64>,
    pub(crate) retain_last: Option<usize>,
}

/// What an expiry removes from a table's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Expiry {
    pub(crate) snapshots: BTreeSet<i64>,
    pub(crate) refs: BTreeSet<String>,
}

fn property(metadata: &TableMetadata, (key, default): (&str, i64)) -> i64 {
    metadata
        .properties()
        .get(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Expire {
    /// The snapshots and refs `table` loses.
    pub(crate) fn plan(&self, table: &Table) -> Result<Expiry> {
        let metadata = table.metadata();
        let older_than = self.older_than_ms.unwrap_or_else(|| {
            self.now_ms
                .saturating_sub(property(metadata, MAX_SNAPSHOT_AGE_MS))
        });
        let min_keep = match self.retain_last {
            Some(0) => return Err(Error::invalid("retain_last must be at least 1")),
            Some(n) => n,
            None => property(metadata, MIN_SNAPSHOTS_TO_KEEP).max(1) as usize,
        };
        let default_ref_age = property(metadata, MAX_REF_AGE_MS);
        let refs = table.snapshot_refs();
        let snapshot_ts: HashMap<i64, i64> = metadata
            .snapshots()
            .map(|s| (s.snapshot_id(), s.timestamp_ms()))
            .collect();
        let mut out = Expiry::default();
        let mut retain: BTreeSet<i64> = BTreeSet::new();
        let mut referenced: BTreeSet<i64> = BTreeSet::new();
        for (name, r) in &refs {
            let Some(ts) = snapshot_ts.get(&r.snapshot_id) else {
                out.refs.insert(name.clone());
                continue;
            };
            let max_ref_age = match &r.retention {
                SnapshotRetention::Branch { max_ref_age_ms, .. }
                | SnapshotRetention::Tag { max_ref_age_ms } => max_ref_age_ms.unwrap_or(default_ref_age),
            };
            if name != MAIN_BRANCH && self.now_ms.saturating_sub(*ts) > max_ref_age {
                out.refs.insert(name.clone());
                continue;
            }
            retain.insert(r.snapshot_id);
            match &r.retention {
                SnapshotRetention::Tag { .. } => {
                    referenced.insert(r.snapshot_id);
                }
                SnapshotRetention::Branch {
                    min_snapshots_to_keep,
                    max_snapshot_age_ms,
                    ..
                } => {
                    let branch_older = max_snapshot_age_ms
                        .map(|age| self.now_ms.saturating_sub(age))
                        .unwrap_or(older_than);
                    let branch_min = min_snapshots_to_keep
                        .map(|n| n.max(1) as usize)
                        .unwrap_or(min_keep);
                    let mut kept = 0usize;
                    let mut keeping = true;
                    let mut cur = Some(r.snapshot_id);
                    while let Some(id) = cur {
                        let Some(s) = metadata.snapshot_by_id(id) else {
                            break;
                        };
                        referenced.insert(id);
                        if keeping && (kept < branch_min || s.timestamp_ms() >= branch_older) {
                            retain.insert(id);
                            kept += 1;
                        } else {
                            keeping = false;
                        }
                        cur = s.parent_snapshot_id();
                    }
                }
            }
        }
        for (id, ts) in &snapshot_ts {
            if !referenced.contains(id) && *ts >= older_than {
                retain.insert(*id);
            }
        }
        out.snapshots = snapshot_ts
            .keys()
            .filter(|id| !retain.contains(id))
            .copied()
            .collect();
        Ok(out)
    }

    /// Remove what [`Expire::plan`] finds on `base`; no change when it finds nothing.
    pub(crate) fn apply(&self, base: &Table) -> Result<Option<Staged>> {
        let expiry = self.plan(base)?;
        if expiry.snapshots.is_empty() && expiry.refs.is_empty() {
            return Ok(None);
        }
        let mut builder = base.metadata_builder();
        for r in &expiry.refs {
            builder = builder.remove_ref(r);
        }
        let ids: Vec<i64> = expiry.snapshots.iter().copied().collect();
        for id in &ids {
            if base.metadata().statistics_for_snapshot(*id).is_some() {
                builder = builder.remove_statistics(*id);
            }
            if base.metadata().partition_statistics_for_snapshot(*id).is_some() {
                builder = builder.remove_partition_statistics(*id);
            }
        }
        builder = builder.remove_snapshots(&ids);
        Staged::metadata_only(builder.build()?).map(Some)
    }
}
