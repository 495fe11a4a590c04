//! The REST catalog benchmark's report files: `report.json` (every figure) and `report.md` (the
//! load latencies, the throughput of each door and the target).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::RestBenchReport;
use crate::error::Result;

/// Write `report.json` and `report.md` of `r` into `dir`; their paths.
pub fn write_rest(r: &RestBenchReport, dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(crate::bench::report::write_json_and_markdown(r, &rest_markdown(r), dir)?.into())
}

/// The report in Markdown.
pub fn rest_markdown(r: &RestBenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# floe bench --rest\n");
    let _ = writeln!(
        s,
        "A table of {} snapshots (metadata file {:.1} KB) loaded warm, {} times per side.\n",
        r.snapshots,
        r.metadata_bytes as f64 / 1e3,
        r.rest_load.ms.n
    );
    let _ = writeln!(s, "| load | p50 (ms) | p95 (ms) | min (ms) | max (ms) |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for (label, l) in [
        ("floe serve, HTTP request to full body", &r.rest_load),
        ("Floe::load_table in-process", &r.in_process_load),
    ] {
        let _ = writeln!(
            s,
            "| {label} | {:.2} | {:.2} | {:.2} | {:.2} |",
            l.ms.median, l.p95_ms, l.ms.min, l.ms.max
        );
    }
    let _ = writeln!(s, "\n## Concurrent PyIceberg appenders\n");
    if let Some(why) = &r.peer_skipped {
        let _ = writeln!(s, "Not run: {why}");
    } else {
        let _ = writeln!(s, "| door | commits | races lost (409) | seconds | commits/s |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        for t in &r.throughput {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} | {:.1} |",
                t.door, t.commits, t.conflicts, t.seconds, t.commits_per_second
            );
        }
    }
    let _ = writeln!(s, "\n## Target\n");
    for t in &r.targets {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "not measured",
        };
        let _ = writeln!(s, "- {}: {} ({verdict})", t.target, t.measured);
    }
    s
}
