//! What `floe ingest` prints: the plan (`--plan`), and the report of a run or a resumed run.

use std::io::Write;

use floe::ingest::{IngestPlan, IngestReport};
use floe::Result;

use super::{grid, write_json, Format};

/// `floe ingest --plan`: the columns' types, the partitioning, and each unit's bounds.
pub fn plan(out: &mut impl Write, p: &IngestPlan, format: Format) -> Result<()> {
    if format == Format::Json {
        return write_json(out, p);
    }
    writeln!(out, "{} -> {}", p.source, p.destination)?;
    for (name, source_type, arrow) in &p.columns {
        writeln!(out, "  column {name}: {source_type} -> {arrow}")?;
    }
    writeln!(
        out,
        "partition by {}: {} units, about {} rows",
        p.partition_by,
        p.units.len(),
        p.estimated_rows
    )?;
    if let Some(sized_by) = &p.sized_by {
        writeln!(out, "units sized by {sized_by}")?;
    }
    if let Some(note) = &p.note {
        writeln!(out, "note: {note}")?;
    }
    if let Some(window) = &p.window {
        writeln!(out, "reads {}", window.describe())?;
    }
    let mut g = grid(vec!["unit", "bounds", "estimated rows"]);
    for u in &p.units {
        g.add_row(vec![
            u.index.to_string(),
            u.describe(),
            u.estimated_rows.to_string(),
        ]);
    }
    writeln!(out, "{g}")?;
    Ok(())
}

/// `floe ingest`: each unit, then the snapshot the run committed.
pub fn report(out: &mut impl Write, r: &IngestReport, format: Format) -> Result<()> {
    if format == Format::Json {
        return write_json(out, r);
    }
    let mut g = grid(vec!["unit", "bounds", "rows", "files", "attempts", "ran"]);
    for u in &r.units {
        g.add_row(vec![
            u.index.to_string(),
            u.bounds.clone(),
            u.rows.to_string(),
            u.files.to_string(),
            u.attempts.to_string(),
            if u.ran { "yes".into() } else { "earlier".into() },
        ]);
    }
    writeln!(out, "{g}")?;
    let (what, none) = match r.upsert {
        Some(_) => ("read and upserted into", "- (no change)"),
        None => ("committed to", "-"),
    };
    writeln!(
        out,
        "run {}: {} rows in {} units {what} {} as snapshot {} ({:.1} s)",
        r.run_id,
        r.rows,
        r.units.len(),
        r.plan.destination,
        r.snapshot_id
            .map(|s| s.to_string())
            .unwrap_or_else(|| none.into()),
        r.seconds
    )?;
    if let Some(at) = &r.source_snapshot {
        writeln!(out, "every unit read the source at its exported snapshot {at}")?;
    }
    if let Some(u) = &r.upsert {
        if let Some(window) = &u.window {
            writeln!(out, "read {}", window.describe())?;
        }
        writeln!(
            out,
            "upsert: {} inserted, {} updated, {} deleted ({} tombstones), {} unchanged",
            u.rows.inserted, u.rows.updated, u.rows.deleted, u.tombstones, u.rows.unchanged
        )?;
        if let Some(w) = &u.watermark {
            writeln!(out, "watermark {w}")?;
        }
    }
    Ok(())
}
