//! `report.md`: the summarized figures as a Markdown page (end to end, per stage, equivalence, the
//! peer, storage, extraction, the cluster, the targets, the charts); and the upsert benchmark's page
//! (the upserts, the scans, the targets).

use super::{
    engines_of, find, fmt_ratio, fmt_summary, gb, secs, sizes_in_order, BenchReport, Machine, Target,
};
use crate::bench::stats::Summary;
use crate::bench::UpsertBenchReport;

/// The Markdown report.
pub fn markdown(r: &BenchReport) -> String {
    let mut page = Page::default();
    header(r, &mut page);
    end_to_end(r, &mut page);
    per_stage(r, &mut page);
    phases(r, &mut page);
    equivalence(r, &mut page);
    cluster(r, &mut page);
    failed_passes(r, &mut page);
    storage_layer(r, &mut page);
    peer_comparisons(r, &mut page);
    extraction(r, &mut page);
    targets_and_charts(r, &mut page);
    page.0
}

/// The page as it is written, a line at a time.
#[derive(Default)]
struct Page(String);

impl Page {
    fn line(&mut self, s: String) {
        self.0.push_str(&s);
        self.0.push('\n');
    }
}

/// The title and the machine and versions the figures were measured on.
fn header(r: &BenchReport, page: &mut Page) {
    page.line("# floe bench".into());
    page.line(String::new());
    page.line(machine_line(&r.machine, r.repetitions, &r.finished_at));
}

/// The machine and versions, the repetitions, how figures are given, and when.
fn machine_line(m: &Machine, repetitions: usize, finished_at: &str) -> String {
    format!(
        "Machine: {} ({} logical CPUs, {:.1} GB memory), {} (kernel {}). floe {}, DuckDB {}, DataFusion {}; {}. \
         {} repetitions per run; figures are median (min-max); ratios are means of per-repetition ratios with \
         95% confidence intervals. Finished {}.",
        m.cpu,
        m.cpus,
        m.memory_bytes as f64 / 1e9,
        m.os,
        m.kernel,
        m.floe,
        m.duckdb,
        m.datafusion,
        m.storage,
        repetitions,
        finished_at
    )
}

/// Whole-pipeline time per input size and engine, floe against raw, with equivalence.
fn end_to_end(r: &BenchReport, page: &mut Page) {
    let sizes = sizes_in_order(&r.measurements);
    let engines = engines_of(&r.summary);
    page.line(String::new());
    page.line("## End to end".into());
    page.line(String::new());
    page.line("| input | engine | floe (s) | raw (s) | floe / raw | peak memory (floe) | CPU (floe, s) | equivalence |".into());
    page.line("|---|---|---|---|---|---|---|---|".into());
    for (size, _) in &sizes {
        let eq: Vec<_> = r
            .measurements
            .equivalence
            .iter()
            .filter(|e| &e.size == size)
            .collect();
        let eq_text = if eq.is_empty() {
            "-".to_string()
        } else {
            format!("{}/{} equal", eq.iter().filter(|e| e.equal).count(), eq.len())
        };
        for e in &engines {
            let f = find(&r.summary, size, e, "floe", "total");
            let raw = find(&r.summary, size, e, "raw", "total");
            let o = r
                .overhead
                .iter()
                .find(|o| &o.size == size && &o.engine == e && o.stage == "total");
            page.line(format!(
                "| {size} | {e} | {} | {} | {} | {} | {} | {eq_text} |",
                f.map(|x| fmt_summary(&x.seconds, &secs)).unwrap_or("-".into()),
                raw.map(|x| fmt_summary(&x.seconds, &secs)).unwrap_or("-".into()),
                o.map(|o| fmt_ratio(&o.floe_over_raw)).unwrap_or("-".into()),
                f.map(|x| gb(x.peak_memory_bytes.max)).unwrap_or("-".into()),
                f.map(|x| fmt_summary(&x.cpu_seconds, &secs))
                    .unwrap_or("-".into()),
            ));
        }
    }
}

/// Where floe's time goes beside the raw engine's, per input size, engine and stage: medians of
/// floe's phases (`StageReport::phase_seconds`) against the raw path's whole time.
fn phases(r: &BenchReport, page: &mut Page) {
    const PHASES: [&str; 6] = ["pin", "engine", "describe", "check", "commit", "record"];
    if r.overhead.iter().all(|o| o.floe_phase_seconds.is_empty()) {
        return;
    }
    page.line(String::new());
    page.line("## Where floe's time goes".into());
    page.line(String::new());
    page.line(
        "Medians, seconds. `engine` is the engine's queries and the writing of their outputs, the part \
         the raw path also does; the other phases are floe's own: pinning the inputs and the reuse check \
         (`pin`), reading the footers of files the engine wrote (`describe`), the balance and sum checks \
         (`check`), the commit and the run ledger (`record`)."
            .into(),
    );
    page.line(String::new());
    page.line(format!(
        "| input | engine | stage | raw | floe | {} | floe - raw |",
        PHASES.join(" | ")
    ));
    page.line(format!(
        "|---|---|---|---|---|{}---|",
        "---|".repeat(PHASES.len())
    ));
    for o in &r.overhead {
        let cells: Vec<String> = PHASES
            .iter()
            .map(|p| {
                o.floe_phase_seconds
                    .get(*p)
                    .map_or("-".to_string(), |s| format!("{s:.2}"))
            })
            .collect();
        page.line(format!(
            "| {} | {} | {} | {:.2} | {:.2} | {} | {:+.2} |",
            o.size,
            o.engine,
            o.stage,
            o.raw_seconds,
            o.floe_seconds,
            cells.join(" | "),
            o.floe_seconds - o.raw_seconds
        ));
    }
}

/// Each stage per input size: every engine's floe and raw time, commit share, peak memory, rows/s.
fn per_stage(r: &BenchReport, page: &mut Page) {
    let sizes = sizes_in_order(&r.measurements);
    let engines = engines_of(&r.summary);
    page.line(String::new());
    page.line("## Per stage".into());
    for (size, _) in &sizes {
        page.line(String::new());
        page.line(format!("### {size}"));
        page.line(String::new());
        let mut head = "| stage |".to_string();
        let mut rule = "|---|".to_string();
        for e in &engines {
            head.push_str(&format!(
                " {e} floe (s) | {e} raw (s) | {e} commit share | {e} peak | {e} rows/s |"
            ));
            rule.push_str("---|---|---|---|---|");
        }
        head.push_str(" faster on floe |");
        rule.push_str("---|");
        page.line(head);
        page.line(rule);
        for stage in crate::pipeline::engine::Stage::ALL
            .iter()
            .map(|s| s.name())
            .chain(["total"])
        {
            let mut row = format!("| {stage} |");
            let mut best: Option<(String, f64)> = None;
            for e in &engines {
                let f = find(&r.summary, size, e, "floe", stage);
                let raw = find(&r.summary, size, e, "raw", stage);
                if let Some(f) = f {
                    if best.as_ref().is_none_or(|b| f.seconds.median < b.1) {
                        best = Some((e.clone(), f.seconds.median));
                    }
                }
                row.push_str(&format!(
                    " {} | {} | {} | {} | {} |",
                    f.map(|x| fmt_summary(&x.seconds, &secs)).unwrap_or("-".into()),
                    raw.map(|x| fmt_summary(&x.seconds, &secs)).unwrap_or("-".into()),
                    f.and_then(|x| x.commit_share)
                        .map(|c| format!("{:.1}%", c.median * 100.0))
                        .unwrap_or("-".into()),
                    f.map(|x| gb(x.peak_memory_bytes.max)).unwrap_or("-".into()),
                    f.map(|x| format!("{:.0}", x.rows_per_s.median))
                        .unwrap_or("-".into()),
                ));
            }
            row.push_str(&format!(" {} |", best.map(|b| b.0).unwrap_or("-".into())));
            page.line(row);
        }
    }
}

/// Whether the engines' outputs were equal, per size and repetition.
fn equivalence(r: &BenchReport, page: &mut Page) {
    page.line(String::new());
    page.line("## Equivalence".into());
    page.line(String::new());
    for e in &r.measurements.equivalence {
        let differing: Vec<&str> = e
            .tables
            .iter()
            .filter(|t| !t.equal)
            .map(|t| t.table.as_str())
            .collect();
        page.line(format!(
            "- {} repetition {}, {} and {}: {} ({} tables{})",
            e.size,
            e.repetition + 1,
            e.engines.0,
            e.engines.1,
            if e.equal {
                "all outputs equal"
            } else {
                "OUTPUTS DIFFER"
            },
            e.tables.len(),
            if differing.is_empty() {
                String::new()
            } else {
                format!("; differing: {}", differing.join(", "))
            }
        ));
    }
    if r.measurements.equivalence.is_empty() {
        page.line("- not run (needs two engines)".into());
    }
}

/// The `ballista` engine on loopback clusters against local DataFusion.
fn cluster(r: &BenchReport, page: &mut Page) {
    if !r.cluster.rows.is_empty() {
        page.line(String::new());
        page.line("## Cluster".into());
        page.line(String::new());
        page.line(format!(
            "The `ballista` engine on a loopback cluster (a scheduler and N executors, two tasks each, on \
             this machine's {} cores) against local DataFusion, both floe paths end to end. On a machine \
             this small the executors share the driver's cores: the figure that matters is the cluster's \
             overhead, not the scaling, which only machines of their own can show.",
            r.machine.cpus
        ));
        page.line(String::new());
        page.line(
            "| input | executors | seconds | / local DataFusion | speedup over fewest executors | enrich / local DataFusion | driver bytes / output bytes |".into(),
        );
        page.line("|---|---|---|---|---|---|---|".into());
        for c in &r.cluster.rows {
            page.line(format!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                c.size,
                c.executors,
                secs(c.seconds),
                fmt_ratio(&c.over_datafusion),
                c.speedup_over_fewest
                    .as_ref()
                    .map(fmt_ratio)
                    .unwrap_or("-".into()),
                c.enrich_over_datafusion
                    .as_ref()
                    .map(fmt_ratio)
                    .unwrap_or("-".into()),
                c.driver_bytes_per_output_byte
                    .map(|x| format!("{x:.4}"))
                    .unwrap_or("-".into())
            ));
        }
        page.line(String::new());
        page.line(
            "The executors write every cluster stage's data files themselves; the driver receives only \
             the files' entries (path, size, counts, column bounds, partition values) and commits them."
                .into(),
        );
        if let Some(plan) = &r.cluster.enrich_plan {
            page.line(String::new());
            page.line(
                "The plan the cluster ran `enrich` with (the geoip side is built once and broadcast to \
                 every task of the events side):"
                    .into(),
            );
            page.line(String::new());
            page.line("```".into());
            for l in plan.lines() {
                page.line(l.to_string());
            }
            page.line("```".into());
        }
    }
}

/// The passes that failed, with their errors.
fn failed_passes(r: &BenchReport, page: &mut Page) {
    let failed: Vec<_> = r.measurements.runs.iter().filter(|x| x.error.is_some()).collect();
    if !failed.is_empty() {
        page.line(String::new());
        page.line("## Failed passes".into());
        page.line(String::new());
        for f in failed {
            page.line(format!(
                "- {} {} {} repetition {}: {}",
                f.size,
                f.engine,
                f.path,
                f.repetition + 1,
                f.error.as_deref().unwrap_or("")
            ));
        }
    }
}

/// Commit latency, expiry, append throughput, scan planning and the simulated year.
fn storage_layer(r: &BenchReport, page: &mut Page) {
    page.line(String::new());
    page.line("## Storage layer".into());
    page.line(String::new());
    let s = &r.measurements.storage;
    page.line(format!(
        "- Commit latency ({}): {:.1} ms at the first snapshots of fresh tables committed beside the \
         last commits ({:.1} ms at the run's start), {:.1} ms at snapshot {} ({:.2}x); \
         phases (medians over the same commits): {}.",
        s.backend,
        s.first_commit_ms,
        s.run_start_first_commit_ms,
        s.last_commit_ms,
        s.snapshots,
        s.last_to_first_ratio,
        s.last_commit_phases_ms
            .iter()
            .map(|(k, v)| format!("{k} {v:.1} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    page.line(format!(
        "- With snapshot expiry in the loop (every {} commits, keeping {}): {:.1} ms at snapshot {} \
         ({:.2}x the first); {} manifests in the last snapshot without expiry.",
        crate::bench::storage::EXPIRE_EVERY,
        crate::bench::storage::EXPIRE_RETAIN,
        s.with_expiry_last_commit_ms,
        s.snapshots,
        s.with_expiry_last_to_first_ratio,
        s.last_manifests
    ));
    page.line(format!(
        "- Append of {} rows: {:.0} rows/s, {:.0} MB/s of Arrow in, {:.0} MB/s of Parquet out.",
        s.append_rows, s.append_rows_per_s, s.append_arrow_mb_per_s, s.append_parquet_mb_per_s
    ));
    page.line(format!(
        "- Planning a full scan of a freshly loaded table: {:.1} ms at the 1st snapshot, {:.1} ms at \
         snapshot {} ({:.2}x).",
        s.scan_plan_first_ms, s.scan_plan_last_ms, s.snapshots, s.scan_plan_ratio
    ));
    if let Some(y) = &s.year {
        page.line(format!(
            "- A simulated year ({} daily runs of {} rows, each replacing yesterday's partition and \
             writing today's): maintained after every run (compaction, expiry keeping {} snapshots, \
             orphan removal; {:.0} ms a day), the table holds {:.1} MB on storage for {:.1} MB of live \
             data ({:.2}x, {} files); never maintained, {:.1} MB ({:.2}x, {} files, {:.1} MB of it \
             metadata JSON).",
            y.days,
            y.rows_per_day,
            y.retained_snapshots,
            y.maintain_s * 1e3,
            y.maintained.bytes_on_storage as f64 / 1e6,
            y.maintained.live_data_bytes as f64 / 1e6,
            y.maintained.ratio,
            y.maintained.files_on_storage,
            y.unmaintained.bytes_on_storage as f64 / 1e6,
            y.unmaintained.ratio,
            y.unmaintained.files_on_storage,
            y.unmaintained.metadata_json_bytes as f64 / 1e6
        ));
    }
}

/// floe against PyIceberg (append, `add_files`) and against raw DataFusion (full scan).
fn peer_comparisons(r: &BenchReport, page: &mut Page) {
    for (size, ratio) in &r.append_vs_pyiceberg {
        let runs: Vec<_> = r.measurements.peer.iter().filter(|p| &p.size == size).collect();
        let floe_rps = Summary::of(
            &runs
                .iter()
                .map(|p| p.append.rows as f64 / p.append.floe_seconds)
                .collect::<Vec<_>>(),
        );
        let py_rps = Summary::of(
            &runs
                .iter()
                .map(|p| p.append.rows as f64 / p.append.pyiceberg_seconds)
                .collect::<Vec<_>>(),
        );
        page.line(format!(
            "- Append of the {size} ingest output ({} rows) into the same catalog, both sides writing {}: floe {:.0} rows/s, PyIceberg {} {:.0} rows/s: floe {}.",
            runs.first().map(|p| p.append.rows).unwrap_or(0),
            runs.first().map(|p| p.append.codec.as_str()).unwrap_or("?"),
            floe_rps.median,
            runs.first().map(|p| p.append.pyiceberg_version.as_str()).unwrap_or("?"),
            py_rps.median,
            fmt_ratio(ratio)
        ));
        if let Some(limit) = r.append_vs_arrow_writer.get(size) {
            let arrow_rps = Summary::of(
                &runs
                    .iter()
                    .map(|p| p.append.rows as f64 / p.append.arrow_writer_seconds)
                    .collect::<Vec<_>>(),
            );
            page.line(format!(
                "- Physical limit: arrow-rs's `ArrowWriter` alone, one per core over the same batches with floe's writer properties, no Iceberg metadata, catalog or commit: {:.0} rows/s; floe's append takes {} its time.",
                arrow_rps.median,
                fmt_ratio(limit)
            ));
        }
    }
    for (size, ratio) in &r.add_files_vs_pyiceberg {
        let runs: Vec<_> = r
            .measurements
            .add_files
            .iter()
            .filter(|a| &a.size == size)
            .map(|a| &a.add_files)
            .collect();
        let fps = |f: &dyn Fn(&&crate::bench::peer::PeerAddFiles) -> f64| {
            Summary::of(&runs.iter().map(f).collect::<Vec<_>>()).median
        };
        page.line(format!(
            "- `add_files` of the same rows as {} existing Parquet files ({} rows), one snapshot: floe {:.0} files/s, PyIceberg {:.0} files/s: floe {}.",
            runs.first().map(|a| a.files).unwrap_or(0),
            runs.first().map(|a| a.rows).unwrap_or(0),
            fps(&|a| a.files as f64 / a.floe_seconds),
            fps(&|a| a.files as f64 / a.pyiceberg_seconds),
            fmt_ratio(ratio)
        ));
    }
    for (size, ratio) in &r.scan_vs_raw {
        let runs: Vec<_> = r
            .measurements
            .scans
            .iter()
            .filter(|x| &x.size == size)
            .map(|x| &x.scan)
            .collect();
        let med = |f: &dyn Fn(&&crate::bench::scan::ScanPair) -> f64| {
            Summary::of(&runs.iter().map(f).collect::<Vec<_>>()).median
        };
        page.line(format!(
            "- Full scan of the {size} input's raw_events ({} rows, {} files, {:.0} MB): floe's DataFusion path {} s, raw DataFusion over the same files {} s: floe/raw {}.",
            runs.first().map(|x| x.rows).unwrap_or(0),
            runs.first().map(|x| x.files).unwrap_or(0),
            runs.first().map(|x| x.bytes as f64 / 1e6).unwrap_or(0.0),
            secs(med(&|x| x.floe_seconds)),
            secs(med(&|x| x.raw_seconds)),
            fmt_ratio(ratio)
        ));
        if let Some(renamed) = r.renamed_scan_vs_raw.get(size) {
            page.line(format!(
                "- The same table with its first column renamed (floe's own scan, one stream, columns mapped by field id, instead of DataFusion's Parquet scan): {} s, floe/raw {}.",
                secs(med(&|x| x.floe_renamed_seconds.unwrap_or(f64::NAN))),
                fmt_ratio(renamed)
            ));
        }
    }
    if let Some(why) = &r.measurements.peer_skipped {
        page.line(format!("- PyIceberg peer not run: {why}."));
    }
}

/// Extraction from Postgres, per variant.
fn extraction(r: &BenchReport, page: &mut Page) {
    if let Some(i) = &r.measurements.ingest {
        page.line(String::new());
        page.line("## Extraction from Postgres".into());
        page.line(String::new());
        page.line(format!(
            "`floe ingest` of a generated {}-row table (id key, timestamptz, two strings, numeric), \
             median of {}, {} cores:",
            i.rows, i.repetitions, i.cores
        ));
        page.line(String::new());
        page.line("| variant | units | seconds | rows/s | peak memory |".into());
        page.line("|---|---|---|---|---|".into());
        for v in &i.variants {
            page.line(format!(
                "| {} | {} | {:.2} | {:.0} | {} |",
                v.variant,
                v.units,
                v.seconds,
                v.rows_per_s,
                if v.peak_memory_bytes > 0 {
                    gb(v.peak_memory_bytes as f64)
                } else {
                    "-".into()
                }
            ));
        }
        if let Some(w) = &i.wan {
            page.line(String::new());
            page.line(format!(
                "The variants through the WAN proxy extract a {}-row table of the same shape, every \
                 connection through a proxy of the benchmark's own that adds {:.0} ms of round trip and \
                 caps each connection at {:.0} MB/s per direction ({} connections).",
                w.rows,
                w.round_trip_ms,
                w.bytes_per_second_per_connection as f64 / 1e6,
                w.connections
            ));
        }
    }
}

/// The targets as a table under their heading.
fn targets_table(targets: &[Target], page: &mut Page) {
    page.line(String::new());
    page.0.push_str(&targets_markdown(targets));
}

/// A `## Targets` heading and one row per target (also the SQL benchmark's report).
pub(crate) fn targets_markdown(targets: &[Target]) -> String {
    let mut s = String::from("## Targets\n\n| target | measured | met |\n|---|---|---|\n");
    for t in targets {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        s.push_str(&format!("| {} | {} | {met} |\n", t.target, t.measured));
    }
    s
}

/// The targets, the recommendation for `--engine auto`, and the charts.
fn targets_and_charts(r: &BenchReport, page: &mut Page) {
    targets_table(&r.targets, page);
    page.line(String::new());
    page.line("## Recommendation for `--engine auto`".into());
    page.line(String::new());
    page.line(format!("{}.", r.recommendation.rule));
    page.line(String::new());
    page.line("## Charts".into());
    page.line(String::new());
    page.line("![time against input size](time.svg)".into());
    page.line(String::new());
    page.line("![peak memory against input size](memory.svg)".into());
    page.line(String::new());
    page.line("![floe over raw](overhead.svg)".into());
}

/// The upsert benchmark's page: the setup, every upsert, every scan, the targets.
pub fn upsert_markdown(r: &UpsertBenchReport) -> String {
    let mut page = Page::default();
    page.line("# floe bench --upsert".into());
    page.line(String::new());
    page.line(machine_line(&r.machine, r.repetitions, &r.finished_at));
    page.line(String::new());
    page.line(format!(
        "A table of {} rows in {} data files ({} codec on every table), upserted on `id` with {} changed \
         rows (every 100th, in every file) and {} new ones. PyIceberg {}{}.",
        r.rows,
        r.data_files,
        r.codec,
        r.updated_rows,
        r.inserted_rows,
        r.pyiceberg_version.as_deref().unwrap_or("-"),
        r.peer_skipped
            .as_ref()
            .map(|s| format!(" (skipped: {s})"))
            .unwrap_or_default()
    ));
    page.line(String::new());
    page.line("## Upserts".into());
    page.line(String::new());
    page.line(
        "| variant | seconds | bytes written | snapshots | data files added | delete files added | rows updated | rows inserted |"
            .into(),
    );
    page.line("|---|---|---|---|---|---|---|---|".into());
    for v in &r.variants {
        page.line(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            v.variant,
            fmt_summary(&v.seconds, &secs),
            fmt_summary(&v.bytes_written, &|b| format!("{:.2} MB", b / 1e6)),
            v.snapshots,
            v.data_files_added,
            v.delete_files_added,
            v.rows_updated,
            v.rows_inserted
        ));
    }
    page.line(String::new());
    if let Some(s) = &r.merge_on_read_speedup_over_pyiceberg {
        page.line(format!(
            "- merge-on-read over PyIceberg (speedup): {}",
            fmt_ratio(s)
        ));
    }
    if let Some(s) = &r.copy_on_write_speedup_over_pyiceberg {
        page.line(format!(
            "- copy-on-write over PyIceberg (speedup): {}",
            fmt_ratio(s)
        ));
    }
    page.line(format!(
        "- merge-on-read over copy-on-write (speedup): {}",
        fmt_ratio(&r.merge_on_read_speedup_over_copy_on_write)
    ));
    page.line(format!(
        "- merge-on-read's bytes over copy-on-write's: {}",
        fmt_ratio(&r.merge_on_read_bytes_over_copy_on_write)
    ));
    page.line(format!(
        "- `floe compact` after the merge-on-read upsert: {} s, {} files rewritten, {} delete files removed",
        fmt_summary(&r.compact_seconds, &secs),
        r.files_compacted,
        r.delete_files_removed
    ));
    page.line(format!(
        "- the upserted tables hold the same rows as PyIceberg's: {}",
        match r.same_rows {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not compared",
        }
    ));
    page.line(String::new());
    page.line("## Full scans of the merge-on-read table".into());
    page.line(String::new());
    page.line(format!(
        "Each reader reads every state once to warm up, then {} rounds of each state in a rotating order; \
         the median per repetition.",
        r.scan_runs
    ));
    page.line(String::new());
    page.line(
        "| reader | before the upsert | with its deletes | after `floe compact` | deletes / before | compacted / before |"
            .into(),
    );
    page.line("|---|---|---|---|---|---|".into());
    for ratios in &r.scan_ratios {
        let cell = |state: &str| {
            r.scan(&ratios.reader, state)
                .map(|s| format!("{} s ({} rows)", fmt_summary(&s.seconds, &secs), s.rows))
                .unwrap_or_else(|| "-".into())
        };
        page.line(format!(
            "| {} | {} | {} | {} | {} | {} |",
            ratios.reader,
            cell("before"),
            cell("after"),
            cell("compacted"),
            fmt_ratio(&ratios.after_over_before),
            fmt_ratio(&ratios.compacted_over_before)
        ));
    }
    for (reader, why) in &r.readers_skipped {
        page.line(format!("\n{reader} did not run: {why}"));
    }
    targets_table(&r.targets, &mut page);
    page.0
}
