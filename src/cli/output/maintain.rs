//! What the maintenance commands print: `expire`, `remove-orphans`, `compact` and `maintain` (and
//! `floe run --maintain`).

use std::io::Write;

use floe::maintenance::{CompactReport, ExpireReport, FileCounts, MaintainReport, OrphanReport};
use floe::Result;

use super::{write_json, Format};

fn counts_line(c: &FileCounts) -> String {
    format!(
        "{} files, {} bytes ({} data, {} delete, {} manifests, {} manifest lists, {} statistics, {} metadata, {} other)",
        c.files(),
        c.bytes,
        c.data_files,
        c.delete_files,
        c.manifests,
        c.manifest_lists,
        c.statistics,
        c.metadata,
        c.other
    )
}

fn verb(dry_run: bool, done: &'static str) -> &'static str {
    if dry_run {
        "would delete"
    } else {
        done
    }
}

/// `floe expire`: snapshots and refs expired, files deleted.
pub fn expire(out: &mut impl Write, r: &ExpireReport, format: Format) -> Result<()> {
    if format == Format::Json {
        return write_json(out, r);
    }
    writeln!(
        out,
        "{}: {} {} snapshots{}",
        r.table,
        if r.dry_run { "would expire" } else { "expired" },
        r.snapshots_expired.len(),
        if r.refs_expired.is_empty() {
            String::new()
        } else {
            format!(" and refs {}", r.refs_expired.join(", "))
        }
    )?;
    writeln!(
        out,
        "{}: {} {}",
        r.table,
        verb(r.dry_run, "deleted"),
        counts_line(&r.deleted)
    )?;
    Ok(())
}

/// `floe remove-orphans`: each orphan, then the counts.
pub fn orphans(out: &mut impl Write, r: &OrphanReport, format: Format) -> Result<()> {
    if format == Format::Json {
        return write_json(out, r);
    }
    for f in &r.files {
        writeln!(out, "{f}")?;
    }
    writeln!(
        out,
        "{}: {} {} orphans: {}",
        r.table,
        verb(r.dry_run, "deleted"),
        r.files.len(),
        counts_line(&r.deleted)
    )?;
    Ok(())
}

/// `floe compact`: files rewritten and written.
pub fn compact(out: &mut impl Write, r: &CompactReport, format: Format) -> Result<()> {
    if format == Format::Json {
        return write_json(out, r);
    }
    let deletes = if r.files_with_deletes_folded + r.delete_files_removed > 0 {
        format!(
            "; {} of them with their deletes folded in, {} delete files removed",
            r.files_with_deletes_folded, r.delete_files_removed
        )
    } else {
        String::new()
    };
    if r.dry_run {
        writeln!(
            out,
            "{}: would rewrite {} files ({} bytes) in {} partitions{deletes}",
            r.table, r.files_rewritten, r.bytes_rewritten, r.groups
        )?;
    } else {
        writeln!(
            out,
            "{}: rewrote {} files ({} bytes) in {} partitions into {} files ({} bytes){deletes}{}",
            r.table,
            r.files_rewritten,
            r.bytes_rewritten,
            r.groups,
            r.files_written,
            r.bytes_written,
            r.snapshot_id
                .map(|id| format!(", snapshot {id}"))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

/// `floe maintain`: per table, its compaction, expiry and orphans.
pub fn maintain(out: &mut impl Write, reports: &[MaintainReport], format: Format) -> Result<()> {
    if format == Format::Json {
        return write_json(out, &reports);
    }
    for r in reports {
        if let Some(c) = &r.compact {
            compact(out, c, format)?;
        }
        expire(out, &r.expire, format)?;
        writeln!(
            out,
            "{}: {} {} orphans ({} bytes)",
            r.orphans.table,
            verb(r.orphans.dry_run, "deleted"),
            r.orphans.files.len(),
            r.orphans.deleted.bytes
        )?;
    }
    Ok(())
}
