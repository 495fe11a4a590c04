//! What the pipeline commands print: `floe run` (each stage, the engines' equivalence, and that no
//! input record was lost), `floe runs` (the ledger), `floe verify`, and a spinner per running stage.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};

use floe::pipeline::ledger::LedgerEntry;
use floe::pipeline::runner::Equivalence;
use floe::pipeline::{Progress, RunReport};
use floe::Result;

use super::{grid, write_json, Format};

/// `key=value` lines.
fn counts(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `floe run`: a row per stage and engine, the equivalence of two engines, and per engine whether
/// input = clean + rejected.
pub fn run(out: &mut impl Write, r: &RunReport, format: Format) -> Result<()> {
    if format == Format::Json {
        return write_json(out, r);
    }
    let mut g = grid(vec![
        "stage",
        "engine",
        "status",
        "rows in",
        "rows out",
        "rejects",
        "snapshots",
        "time",
        "peak memory",
    ]);
    for s in &r.stages {
        let snaps = s
            .snapshots
            .iter()
            .map(|(k, v)| format!("{k}@{v}"))
            .collect::<Vec<_>>()
            .join("\n");
        g.add_row(vec![
            s.stage.clone(),
            s.engine.clone(),
            s.status.clone(),
            s.rows_in.to_string(),
            counts(&s.rows_out),
            counts(&s.rejects),
            snaps,
            format!("{:.2} s", s.seconds),
            s.peak_memory_bytes
                .map(|b| format!("{:.0} MB", b as f64 / 1e6))
                .unwrap_or_default(),
        ]);
    }
    writeln!(out, "run {}\n{g}", r.run_id)?;
    if let Some(eq) = &r.equivalence {
        equivalence(out, eq, format)?;
    }
    // Nothing is lost: every input record is clean or rejected.
    for engine in r.stages.iter().map(|s| s.engine.clone()).collect::<BTreeSet<_>>() {
        let of = |stage: &str| r.stages.iter().find(|s| s.engine == engine && s.stage == stage);
        if let (Some(ingest), Some(cleanse)) = (of("ingest"), of("cleanse")) {
            let input = ingest.rows_in;
            let clean = cleanse.rows_out.get("clean_events").copied().unwrap_or(0);
            let rejected: u64 = ingest.rejects.values().sum::<u64>() + cleanse.rejects.values().sum::<u64>();
            let verdict = if input == clean + rejected {
                "holds"
            } else {
                "DOES NOT HOLD"
            };
            writeln!(
                out,
                "{engine}: input {input} = clean {clean} + rejected {rejected}: {verdict}"
            )?;
        }
    }
    Ok(())
}

/// `floe runs`: the ledger, a row per stage run.
pub fn runs(out: &mut impl Write, entries: &[LedgerEntry], format: Format) -> Result<()> {
    if format == Format::Json {
        return write_json(out, &entries);
    }
    let mut g = grid(vec![
        "run", "stage", "engine", "status", "started", "rows in", "rows out", "rejects", "error",
    ]);
    for e in entries {
        g.add_row(vec![
            e.run_id.clone(),
            e.stage.clone(),
            e.engine.clone(),
            e.status.clone(),
            e.started_at.clone(),
            e.rows_in.to_string(),
            counts(&e.rows_out),
            counts(&e.rejects),
            e.error.clone().unwrap_or_default(),
        ]);
    }
    writeln!(out, "{g}")?;
    Ok(())
}

/// `floe verify` (and the end of a two-engine run): each table's verdict, then what was published.
pub fn equivalence(out: &mut impl Write, eq: &Equivalence, format: Format) -> Result<()> {
    if format == Format::Json {
        return write_json(out, eq);
    }
    let mut g = grid(vec!["table", "verdict", "decided by", "rows", "differences"]);
    for d in &eq.tables {
        let differences: Vec<String> = d
            .schema_differences
            .iter()
            .chain(&d.statistics_differences)
            .cloned()
            .chain(
                (d.added + d.removed + d.changed > 0)
                    .then(|| format!("+{} -{} ~{}", d.added, d.removed, d.changed)),
            )
            .collect();
        g.add_row(vec![
            d.left.split('@').next().unwrap_or_default().to_string(),
            if d.equal { "equal" } else { "DIFFERENT" }.to_string(),
            format!("{:?}", d.decided_by).to_lowercase(),
            format!("{} / {}", d.left_rows, d.right_rows),
            differences.join("\n"),
        ]);
    }
    writeln!(out, "equivalence of {} and {}\n{g}", eq.engines.0, eq.engines.1)?;
    match (&eq.tag, eq.equal) {
        (Some(tag), true) => writeln!(
            out,
            "all equal: main published from {} and tagged {tag}",
            eq.engines.0
        )?,
        (None, true) => writeln!(out, "all equal")?,
        _ => writeln!(out, "DIFFERENT: nothing published")?,
    }
    Ok(())
}

/// A spinner per stage on stderr while it runs, then one line with its outcome.
pub fn stage_progress() -> Progress {
    let bar: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);
    Arc::new(move |stage, engine, report| {
        let mut bar = bar.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match report {
            None => {
                let b = indicatif::ProgressBar::new_spinner();
                if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                    b.set_style(style);
                }
                b.set_message(format!("{stage} on {engine}"));
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                *bar = Some(b);
            }
            Some(r) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                let rows: u64 = r.rows_out.values().sum();
                eprintln!(
                    "{stage} on {engine}: {} ({} rows in, {rows} rows out, {:.2} s)",
                    r.status, r.rows_in, r.seconds
                );
            }
        }
    })
}
