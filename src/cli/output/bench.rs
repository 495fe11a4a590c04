//! What `floe bench` prints: the headline figures of the engine comparison (the report itself is
//! written to files by the library), the storage, extraction and upsert benchmarks' figures, and a
//! progress bar on stderr while the benchmark runs.

use std::io::Write;

use floe::bench::report::BenchReport;
use floe::bench::report::Target;
use floe::bench::storage::{EXPIRE_EVERY, EXPIRE_RETAIN};
use floe::bench::{BenchProgress, CoreBenchReport, IngestBenchReport, RestBenchReport, UpsertBenchReport};
use floe::Result;

use super::{grid, write_json, Format};

/// A progress bar on stderr, and the callback that moves it; on a pipe, one line per step instead.
pub fn progress_bar() -> (indicatif::ProgressBar, BenchProgress) {
    let bar = indicatif::ProgressBar::new(1);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let b = bar.clone();
    let progress: BenchProgress = std::sync::Arc::new(move |what: &str, done: u64, total: u64| {
        b.set_length(total);
        b.set_position(done);
        b.set_message(what.to_string());
        if !b.is_hidden() {
            return;
        }
        // Not a terminal (CI, a pipe): one line per step instead.
        eprintln!("[{done}/{total}] {what}");
    });
    (bar, progress)
}

/// `floe bench`: the report's headline figures, then its targets and the recommendation.
pub fn summary(out: &mut impl Write, r: &BenchReport) -> Result<()> {
    let mut g = grid(vec![
        "input",
        "engine",
        "floe (s)",
        "raw (s)",
        "floe / raw",
        "peak memory",
    ]);
    for row in r
        .summary
        .iter()
        .filter(|x| x.stage == "total" && x.path == "floe")
    {
        let raw = r
            .summary
            .iter()
            .find(|x| x.stage == "total" && x.path == "raw" && x.size == row.size && x.engine == row.engine);
        let o = r
            .overhead
            .iter()
            .find(|o| o.stage == "total" && o.size == row.size && o.engine == row.engine);
        g.add_row(vec![
            row.size.clone(),
            row.engine.clone(),
            format!("{:.2}", row.seconds.median),
            raw.map(|x| format!("{:.2}", x.seconds.median))
                .unwrap_or("-".into()),
            o.map(|o| format!("{:.2}", o.floe_over_raw.mean))
                .unwrap_or("-".into()),
            format!("{:.2} GB", row.peak_memory_bytes.max / 1e9),
        ]);
    }
    write!(out, "{g}\n{}\n{}\n", targets(&r.targets), r.recommendation.rule)?;
    Ok(())
}

/// The targets as a grid: each with what was measured and whether it was met.
fn targets(targets: &[Target]) -> super::Grid {
    let mut t = grid(vec!["target", "measured", "met"]);
    for x in targets {
        t.add_row(vec![
            x.target.clone(),
            x.measured.clone(),
            match x.met {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "-".into(),
            },
        ]);
    }
    t
}

/// `floe bench --upsert`: every variant's upsert, every reader's scans, then the targets.
pub fn upsert_figures(out: &mut impl Write, r: &UpsertBenchReport, format: Format) -> Result<()> {
    if format == Format::Json {
        return write_json(out, r);
    }
    writeln!(
        out,
        "{} rows in {} data files ({}), {} updated, {} new; medians of {}",
        r.rows, r.data_files, r.codec, r.updated_rows, r.inserted_rows, r.repetitions
    )?;
    let mut g = grid(vec![
        "upsert",
        "seconds",
        "bytes written",
        "snapshots",
        "files added",
    ]);
    for v in &r.variants {
        g.add_row(vec![
            v.variant.clone(),
            format!("{:.2}", v.seconds.median),
            format!("{:.2} MB", v.bytes_written.median / 1e6),
            v.snapshots.to_string(),
            format!("{} data, {} delete", v.data_files_added, v.delete_files_added),
        ]);
    }
    let mut s = grid(vec![
        "full scan",
        "before (s)",
        "with deletes (s)",
        "compacted (s)",
        "deletes / before",
    ]);
    for ratios in &r.scan_ratios {
        let cell = |state: &str| {
            r.scan(&ratios.reader, state)
                .map(|x| format!("{:.2}", x.seconds.median))
                .unwrap_or("-".into())
        };
        s.add_row(vec![
            ratios.reader.clone(),
            cell("before"),
            cell("after"),
            cell("compacted"),
            format!("{:.2}", ratios.after_over_before.mean),
        ]);
    }
    let same = match r.same_rows {
        Some(true) => "the upserted tables hold the same rows",
        Some(false) => "the upserted tables hold DIFFERENT rows",
        None => "the upserted tables were not compared (no PyIceberg)",
    };
    write!(out, "{g}\n{s}\n{same}\n{}\n", targets(&r.targets))?;
    Ok(())
}

/// `floe bench --rest`: the load latencies, each door's appenders, then the target.
pub fn rest_figures(out: &mut impl Write, r: &RestBenchReport, format: Format) -> Result<()> {
    if format == Format::Json {
        return write_json(out, r);
    }
    writeln!(
        out,
        "a table of {} snapshots ({:.1} KB of metadata), {} warm loads per side",
        r.snapshots,
        r.metadata_bytes as f64 / 1e3,
        r.rest_load.ms.n
    )?;
    let mut g = grid(vec!["load", "p50 (ms)", "p95 (ms)", "max (ms)"]);
    for (label, l) in [
        ("floe serve (HTTP, full body)", &r.rest_load),
        ("Floe::load_table in-process", &r.in_process_load),
    ] {
        g.add_row(vec![
            label.to_string(),
            format!("{:.2}", l.ms.median),
            format!("{:.2}", l.p95_ms),
            format!("{:.2}", l.ms.max),
        ]);
    }
    let mut a = grid(vec![
        "PyIceberg appenders",
        "commits",
        "races lost",
        "seconds",
        "commits/s",
    ]);
    for t in &r.throughput {
        a.add_row(vec![
            t.door.clone(),
            t.commits.to_string(),
            t.conflicts.to_string(),
            format!("{:.2}", t.seconds),
            format!("{:.1}", t.commits_per_second),
        ]);
    }
    writeln!(out, "{g}")?;
    match &r.peer_skipped {
        Some(why) => writeln!(out, "appenders not run: {why}")?,
        None => writeln!(out, "{a}")?,
    }
    writeln!(out, "{}", targets(&r.targets))?;
    Ok(())
}

/// `floe bench --storage-only`: each figure with its median.
pub fn storage_figures(out: &mut impl Write, r: &CoreBenchReport, format: Format) -> Result<()> {
    if format == Format::Json {
        return write_json(out, r);
    }
    let n = r.snapshots;
    let mut figures: Vec<(String, String)> = vec![
        ("backend".into(), r.backend.clone()),
        ("repetitions".into(), r.repetitions.to_string()),
        (
            "commit latency, 1st snapshot (fresh tables, beside the last commits)".into(),
            format!("{:.1} ms", r.first_commit_ms),
        ),
        (
            "commit latency, 1st snapshot (at the run's start)".into(),
            format!("{:.1} ms", r.run_start_first_commit_ms),
        ),
        (
            format!("commit latency, {n}th snapshot"),
            format!("{:.1} ms", r.last_commit_ms),
        ),
        (
            "ratio last / first".into(),
            format!("{:.2}", r.last_to_first_ratio),
        ),
        (
            format!("  manifests in the {n}th snapshot"),
            r.last_manifests.to_string(),
        ),
        (
            format!(
                "commit latency, {n}th snapshot, expiring every {EXPIRE_EVERY} (keeping {EXPIRE_RETAIN})"
            ),
            format!("{:.1} ms", r.with_expiry_last_commit_ms),
        ),
        (
            "ratio with expiry / first".into(),
            format!("{:.2}", r.with_expiry_last_to_first_ratio),
        ),
    ];
    for (commits, phases) in [
        ("commits to fresh tables".to_string(), &r.first_commit_phases_ms),
        (format!("commits up to the {n}th"), &r.last_commit_phases_ms),
        (
            format!("commits up to the {n}th, with expiry"),
            &r.with_expiry_last_commit_phases_ms,
        ),
    ] {
        for (phase, ms) in phases {
            figures.push((format!("  {commits}: {phase}"), format!("{ms:.2} ms")));
        }
    }
    figures.extend([
        (
            format!("append of {} rows", r.append_rows),
            format!("{:.0} rows/s", r.append_rows_per_s),
        ),
        (
            "append, Arrow in".into(),
            format!("{:.1} MB/s", r.append_arrow_mb_per_s),
        ),
        (
            "append, Parquet out".into(),
            format!("{:.1} MB/s", r.append_parquet_mb_per_s),
        ),
        (
            "scan planning, 1st snapshot".into(),
            format!("{:.1} ms", r.scan_plan_first_ms),
        ),
        (
            format!("scan planning, {n}th snapshot"),
            format!("{:.1} ms ({:.2}x)", r.scan_plan_last_ms, r.scan_plan_ratio),
        ),
    ]);
    if let Some(y) = &r.year {
        for (label, f) in [
            ("maintained daily", &y.maintained),
            ("never maintained", &y.unmaintained),
        ] {
            figures.push((
                format!("{} days of runs, {label}: storage / live data", y.days),
                format!(
                    "{:.2} ({} files, {:.1} MB / {:.1} MB; metadata JSON {:.1} MB)",
                    f.ratio,
                    f.files_on_storage,
                    f.bytes_on_storage as f64 / 1e6,
                    f.live_data_bytes as f64 / 1e6,
                    f.metadata_json_bytes as f64 / 1e6
                ),
            ));
        }
        figures.push((
            "  one day's maintenance".into(),
            format!("{:.0} ms", y.maintain_s * 1e3),
        ));
    }
    let mut g = grid(vec!["figure", "median"]);
    for (figure, median) in figures {
        g.add_row(vec![figure, median]);
    }
    writeln!(out, "{g}")?;
    Ok(())
}

/// `floe bench --ingest-only`: each variant's speed, then the extraction targets.
pub fn ingest_figures(out: &mut impl Write, r: &IngestBenchReport, format: Format) -> Result<()> {
    if format == Format::Json {
        return write_json(out, r);
    }
    let mut g = grid(vec!["variant", "units", "seconds", "rows/s", "peak memory"]);
    for v in &r.variants {
        g.add_row(vec![
            v.variant.clone(),
            v.units.to_string(),
            format!("{:.2}", v.seconds),
            format!("{:.0}", v.rows_per_s),
            if v.peak_memory_bytes > 0 {
                format!("{:.0} MB", v.peak_memory_bytes as f64 / 1e6)
            } else {
                "-".into()
            },
        ]);
    }
    writeln!(out, "{g}")?;
    for t in floe::bench::report::ingest_targets(r) {
        let met = match t.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        writeln!(out, "{}: {} ({met})", t.target, t.measured)?;
    }
    Ok(())
}
