//! Printing: tables for people, CSV and JSON for programs.

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use clap::ValueEnum;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table as Grid};
use floe::{At, CommitResult, Result, SnapshotChanges, Table};
use futures::TryStreamExt;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned table, for people.
    Table,
    /// CSV with a header.
    Csv,
    /// JSON.
    Json,
}

/// A CSV field, quoted (RFC 4180) when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn grid(header: Vec<&str>) -> Grid {
    let mut g = Grid::new();
    g.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    g
}

pub fn print_commit(r: &CommitResult) {
    let id = r.snapshot_id.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
    let summary = r
        .snapshot_id
        .and_then(|id| r.table.metadata().snapshot_by_id(id))
        .map(|s| s.summary().clone());
    match summary {
        Some(s) => {
            let p = &s.additional_properties;
            let get = |k: &str| p.get(k).cloned().unwrap_or_else(|| "0".into());
            println!(
                "committed snapshot {id} to {} ({}): +{} rows in {} files, -{} rows in {} files, {} rows total",
                r.table.name(),
                s.operation.as_str(),
                get("added-records"),
                get("added-data-files"),
                get("deleted-records"),
                get("deleted-data-files"),
                get("total-records"),
            );
        }
        None => println!(
            "nothing to commit to {}: the change holds no rows and matches none; no snapshot was created",
            r.table.name()
        ),
    }
}

pub async fn print_batches(stream: floe::ScanStream, format: Format) -> Result<()> {
    let schema = stream.schema.clone();
    let batches: Vec<RecordBatch> = stream.batches.try_collect().await?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table => {
            let batches = if batches.is_empty() {
                vec![RecordBatch::new_empty(schema)]
            } else {
                batches
            };
            println!("{}", pretty_format_batches(&batches)?);
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(schema))?;
            }
            for b in &batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs)?;
            w.finish()?;
            drop(w);
            println!();
        }
    }
    Ok(())
}

pub async fn print_show(t: &Table, at: &At, format: Format) -> Result<()> {
    let snapshot = t.snapshot_at(at)?;
    let files = t.files(snapshot.as_ref()).await?;
    let rows: u64 = files.iter().map(|f| f.record_count).sum();
    let bytes: u64 = files.iter().map(|f| f.file_size_in_bytes).sum();
    if format == Format::Json {
        let v = serde_json::json!({
            "table": t.name().to_string(),
            "location": t.location(),
            "metadata_location": t.metadata_location(),
            "schema": t.schema().as_ref(),
            "partition_spec": t.partition_spec().as_ref(),
            "properties": t.properties(),
            "refs": t.refs(),
            "snapshot": snapshot.as_ref().map(|s| s.snapshot_id()),
            "files": files,
            "rows": rows,
            "bytes": bytes,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("table      {}", t.name());
    println!("location   {}", t.location());
    println!("metadata   {}", t.metadata_location());
    println!(
        "snapshot   {}",
        snapshot
            .as_ref()
            .map(|s| s.snapshot_id().to_string())
            .unwrap_or_else(|| "(none)".into())
    );
    println!("rows       {rows}");
    println!("files      {} ({bytes} bytes)", files.len());
    let mut g = grid(vec!["id", "column", "type", "required"]);
    for f in t.schema().as_struct().fields() {
        g.add_row(vec![
            f.id.to_string(),
            f.name.clone(),
            f.field_type.to_string(),
            f.required.to_string(),
        ]);
    }
    println!("schema\n{g}");
    let spec = t.partition_spec();
    if !spec.is_unpartitioned() {
        let mut g = grid(vec!["partition field", "source id", "transform"]);
        for f in spec.fields() {
            g.add_row(vec![
                f.name.clone(),
                f.source_id.to_string(),
                f.transform.to_string(),
            ]);
        }
        println!("partition spec\n{g}");
    }
    let props = t.properties();
    if !props.is_empty() {
        let mut g = grid(vec!["property", "value"]);
        for (k, v) in props {
            g.add_row(vec![k, v]);
        }
        println!("properties\n{g}");
    }
    let mut g = grid(vec!["ref", "kind", "snapshot"]);
    for r in t.refs() {
        g.add_row(vec![r.name, r.kind.to_string(), r.snapshot_id.to_string()]);
    }
    println!("refs\n{g}");
    let mut g = grid(vec!["file", "partition", "rows", "bytes"]);
    for f in files {
        g.add_row(vec![
            f.path,
            f.partition,
            f.record_count.to_string(),
            f.file_size_in_bytes.to_string(),
        ]);
    }
    println!("files\n{g}");
    Ok(())
}

pub fn print_snapshots(t: &Table, format: Format) -> Result<()> {
    let refs = t.refs();
    let rows: Vec<serde_json::Value> = t
        .snapshots()
        .iter()
        .map(|s| {
            let names: Vec<String> = refs.iter().filter(|r| r.snapshot_id == s.snapshot_id()).map(|r| r.name.clone()).collect();
            serde_json::json!({
                "snapshot_id": s.snapshot_id(),
                "parent_id": s.parent_snapshot_id(),
                "timestamp": chrono::DateTime::from_timestamp_millis(s.timestamp_ms()).map(|t| t.to_rfc3339()),
                "operation": s.summary().operation.as_str(),
                "summary": s.summary().additional_properties,
                "refs": names,
            })
        })
        .collect();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Csv | Format::Table => {
            if format == Format::Csv {
                println!("snapshot_id,parent_id,timestamp,operation,summary,refs");
            }
            let mut g = grid(vec!["snapshot", "parent", "time", "operation", "summary", "refs"]);
            for r in &rows {
                let mut summary: Vec<String> = r["summary"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default();
                summary.sort();
                let cell = |v: &serde_json::Value| match v {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let refs: Vec<String> = r["refs"]
                    .as_array()
                    .map(|a| a.iter().map(cell).collect())
                    .unwrap_or_default();
                if format == Format::Csv {
                    println!(
                        "{}",
                        [
                            cell(&r["snapshot_id"]),
                            cell(&r["parent_id"]),
                            cell(&r["timestamp"]),
                            cell(&r["operation"]),
                            summary.join(";"),
                            refs.join(";"),
                        ]
                        .iter()
                        .map(|f| csv_field(f))
                        .collect::<Vec<_>>()
                        .join(",")
                    );
                } else {
                    g.add_row(vec![
                        cell(&r["snapshot_id"]),
                        cell(&r["parent_id"]),
                        cell(&r["timestamp"]),
                        cell(&r["operation"]),
                        summary.join("\n"),
                        refs.join(", "),
                    ]);
                }
            }
            if format == Format::Table {
                println!("{g}");
            }
        }
    }
    Ok(())
}

pub fn print_changes(c: &SnapshotChanges, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(c)?);
        return Ok(());
    }
    let id = |s: Option<i64>| s.map(|s| s.to_string()).unwrap_or_else(|| "(empty)".into());
    println!(
        "{} -> {}: +{} rows in {} files, -{} rows in {} files",
        id(c.from_snapshot),
        id(c.to_snapshot),
        c.added_rows,
        c.added_files.len(),
        c.removed_rows,
        c.removed_files.len()
    );
    let mut g = grid(vec!["change", "file", "rows"]);
    for f in &c.added_files {
        g.add_row(vec![
            "added".to_string(),
            f.path.clone(),
            f.record_count.to_string(),
        ]);
    }
    for f in &c.removed_files {
        g.add_row(vec![
            "removed".to_string(),
            f.path.clone(),
            f.record_count.to_string(),
        ]);
    }
    println!("{g}");
    Ok(())
}

pub fn print_bench(r: &floe::bench::CoreBenchReport, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let mut g = grid(vec!["figure", "median"]);
    g.add_row(vec!["backend".to_string(), r.backend.clone()]);
    g.add_row(vec!["repetitions".to_string(), r.repetitions.to_string()]);
    g.add_row(vec![
        "commit latency, 1st snapshot (fresh tables, beside the last commits)".to_string(),
        format!("{:.1} ms", r.first_commit_ms),
    ]);
    g.add_row(vec![
        "commit latency, 1st snapshot (at the run's start)".to_string(),
        format!("{:.1} ms", r.run_start_first_commit_ms),
    ]);
    g.add_row(vec![
        format!("commit latency, {}th snapshot", r.snapshots),
        format!("{:.1} ms", r.last_commit_ms),
    ]);
    g.add_row(vec![
        "ratio last / first".to_string(),
        format!("{:.2}", r.last_to_first_ratio),
    ]);
    g.add_row(vec![
        format!("  manifests in the {}th snapshot", r.snapshots),
        r.last_manifests.to_string(),
    ]);
    g.add_row(vec![
        format!(
            "commit latency, {}th snapshot, expiring every {} (keeping {})",
            r.snapshots,
            floe::bench::storage::EXPIRE_EVERY,
            floe::bench::storage::EXPIRE_RETAIN
        ),
        format!("{:.1} ms", r.with_expiry_last_commit_ms),
    ]);
    g.add_row(vec![
        "ratio with expiry / first".to_string(),
        format!("{:.2}", r.with_expiry_last_to_first_ratio),
    ]);
    for (phase, ms) in &r.first_commit_phases_ms {
        g.add_row(vec![
            format!("  commits to fresh tables: {phase}"),
            format!("{ms:.2} ms"),
        ]);
    }
    for (phase, ms) in &r.last_commit_phases_ms {
        g.add_row(vec![
            format!("  commits up to the {}th: {phase}", r.snapshots),
            format!("{ms:.2} ms"),
        ]);
    }
    for (phase, ms) in &r.with_expiry_last_commit_phases_ms {
        g.add_row(vec![
            format!("  commits up to the {}th, with expiry: {phase}", r.snapshots),
            format!("{ms:.2} ms"),
        ]);
    }
    g.add_row(vec![
        format!("append of {} rows", r.append_rows),
        format!("{:.0} rows/s", r.append_rows_per_s),
    ]);
    g.add_row(vec![
        "append, Arrow in".to_string(),
        format!("{:.1} MB/s", r.append_arrow_mb_per_s),
    ]);
    g.add_row(vec![
        "append, Parquet out".to_string(),
        format!("{:.1} MB/s", r.append_parquet_mb_per_s),
    ]);
    g.add_row(vec![
        "scan planning, 1st snapshot".to_string(),
        format!("{:.1} ms", r.scan_plan_first_ms),
    ]);
    g.add_row(vec![
        format!("scan planning, {}th snapshot", r.snapshots),
        format!("{:.1} ms ({:.2}x)", r.scan_plan_last_ms, r.scan_plan_ratio),
    ]);
    if let Some(y) = &r.year {
        for (label, f) in [
            ("maintained daily", &y.maintained),
            ("never maintained", &y.unmaintained),
        ] {
            g.add_row(vec![
                format!("{} days of runs, {label}: storage / live data", y.days),
                format!(
                    "{:.2} ({} files, {:.1} MB / {:.1} MB; metadata JSON {:.1} MB)",
                    f.ratio,
                    f.files_on_storage,
                    f.bytes_on_storage as f64 / 1e6,
                    f.live_data_bytes as f64 / 1e6,
                    f.metadata_json_bytes as f64 / 1e6
                ),
            ]);
        }
        g.add_row(vec![
            "  one day's maintenance".to_string(),
            format!("{:.0} ms", y.maintain_s * 1e3),
        ]);
    }
    println!("{g}");
    Ok(())
}

pub fn print_ingest_bench(r: &floe::bench::IngestBenchReport, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
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
    println!("{g}");
    for t in floe::bench::report::ingest_targets(r) {
        let met = match t.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        println!("{}: {} ({met})", t.target, t.measured);
    }
    Ok(())
}

fn counts(m: &std::collections::BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn print_run(r: &floe::pipeline::RunReport, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
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
    println!("run {}\n{g}", r.run_id);
    if let Some(eq) = &r.equivalence {
        print_equivalence(eq, format)?;
    }
    // Nothing is lost: every input record is clean or rejected.
    for engine in r
        .stages
        .iter()
        .map(|s| s.engine.clone())
        .collect::<std::collections::BTreeSet<_>>()
    {
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
            println!("{engine}: input {input} = clean {clean} + rejected {rejected}: {verdict}");
        }
    }
    Ok(())
}

pub fn print_runs(entries: &[floe::pipeline::ledger::LedgerEntry], format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(entries)?);
        return Ok(());
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
    println!("{g}");
    Ok(())
}

/// A spinner per stage on stderr while it runs, then one line with its outcome.
pub fn stage_progress() -> floe::pipeline::Progress {
    let bar: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);
    std::sync::Arc::new(move |stage, engine, report| {
        let mut bar = bar.lock().expect("progress bar");
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

pub fn print_diff(r: &floe::diff::DiffReport, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let verdict = if r.equal { "EQUAL" } else { "DIFFERENT" };
    println!(
        "{} vs {}: {verdict} (decided by {:?})",
        r.left, r.right, r.decided_by
    );
    println!("rows: {} vs {}", r.left_rows, r.right_rows);
    for d in r.schema_differences.iter().chain(&r.statistics_differences) {
        println!("  {d}");
    }
    if r.decided_by == floe::diff::DecidedBy::Rows {
        println!(
            "buckets: {} compared, {} differed; rows: +{} added, -{} removed, ~{} changed",
            r.buckets, r.differing_buckets, r.added, r.removed, r.changed
        );
    }
    if !r.samples.is_empty() {
        let mut g = grid(vec!["kind", "left", "right", "changed columns"]);
        let show = |m: &Option<std::collections::BTreeMap<String, String>>| {
            m.as_ref()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default()
        };
        for s in &r.samples {
            g.add_row(vec![
                s.kind.clone(),
                show(&s.left),
                show(&s.right),
                s.changed_columns.join(", "),
            ]);
        }
        println!("sample of differing rows\n{g}");
    }
    Ok(())
}

pub fn print_equivalence(eq: &floe::pipeline::runner::Equivalence, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(eq)?);
        return Ok(());
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
    println!("equivalence of {} and {}\n{g}", eq.engines.0, eq.engines.1);
    match (&eq.tag, eq.equal) {
        (Some(tag), true) => println!("all equal: main published from {} and tagged {tag}", eq.engines.0),
        (None, true) => println!("all equal"),
        _ => println!("DIFFERENT: nothing published"),
    }
    Ok(())
}

pub fn print_query(r: floe::query::QueryResult, format: &str, out: Option<&std::path::Path>) -> Result<()> {
    let as_format = match format {
        "table" => Format::Table,
        "csv" => Format::Csv,
        "json" => Format::Json,
        "parquet" => {
            let path = out.ok_or_else(|| {
                floe::Error::new(floe::ErrorKind::InvalidInput, "--format parquet needs --out FILE")
            })?;
            let file = std::fs::File::create(path)?;
            let mut w = parquet::arrow::ArrowWriter::try_new(file, r.schema.clone(), None)?;
            for b in &r.batches {
                w.write(b)?;
            }
            w.close()?;
            let rows: usize = r.batches.iter().map(|b| b.num_rows()).sum();
            println!("wrote {rows} rows to {}", path.display());
            return Ok(());
        }
        other => {
            return Err(floe::Error::new(
                floe::ErrorKind::InvalidInput,
                format!("unknown format {other:?} (table, csv, json, parquet)"),
            ))
        }
    };
    let stream = floe::ScanStream {
        schema: r.schema,
        batches: futures::StreamExt::boxed(futures::stream::iter(r.batches.into_iter().map(Ok))),
    };
    futures::executor::block_on(print_batches(stream, as_format))
}

/// Run the benchmark with a progress bar on stderr.
pub async fn bench_with_progress(
    floe: &floe::Floe,
    mut options: floe::bench::BenchOptions,
) -> Result<floe::bench::report::BenchReport> {
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let b = bar.clone();
    options.progress = Some(std::sync::Arc::new(move |what: &str, done: u64, total: u64| {
        b.set_length(total);
        b.set_position(done);
        b.set_message(what.to_string());
        if !b.is_hidden() {
            return;
        }
        // Not a terminal (CI, a pipe): one line per step instead.
        eprintln!("[{done}/{total}] {what}");
    }));
    let repetitions = options.repetitions;
    let m = floe::bench::measure(floe, &options).await;
    bar.finish_and_clear();
    Ok(floe::bench::report::summarize(floe, m?, repetitions))
}

/// The report's headline figures for the terminal.
pub fn bench_summary(r: &floe::bench::report::BenchReport) -> String {
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
    let mut t = grid(vec!["target", "measured", "met"]);
    for x in &r.targets {
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
    format!("{g}\n{t}\n{}\n", r.recommendation.rule)
}

fn counts_line(c: &floe::maintenance::FileCounts) -> String {
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

pub fn print_expire(r: &floe::maintenance::ExpireReport, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!(
        "{}: {} {} snapshots{}",
        r.table,
        if r.dry_run { "would expire" } else { "expired" },
        r.snapshots_expired.len(),
        if r.refs_expired.is_empty() {
            String::new()
        } else {
            format!(" and refs {}", r.refs_expired.join(", "))
        }
    );
    println!(
        "{}: {} {}",
        r.table,
        verb(r.dry_run, "deleted"),
        counts_line(&r.deleted)
    );
    Ok(())
}

pub fn print_orphans(r: &floe::maintenance::OrphanReport, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    for f in &r.files {
        println!("{f}");
    }
    println!(
        "{}: {} {} orphans: {}",
        r.table,
        verb(r.dry_run, "deleted"),
        r.files.len(),
        counts_line(&r.deleted)
    );
    Ok(())
}

pub fn print_compact(r: &floe::maintenance::CompactReport, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    if r.dry_run {
        println!(
            "{}: would rewrite {} files ({} bytes) in {} partitions",
            r.table, r.files_rewritten, r.bytes_rewritten, r.groups
        );
    } else {
        println!(
            "{}: rewrote {} files ({} bytes) in {} partitions into {} files ({} bytes){}",
            r.table,
            r.files_rewritten,
            r.bytes_rewritten,
            r.groups,
            r.files_written,
            r.bytes_written,
            r.snapshot_id
                .map(|id| format!(", snapshot {id}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

pub fn print_maintain(reports: &[floe::maintenance::MaintainReport], format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(reports)?);
        return Ok(());
    }
    for r in reports {
        if let Some(c) = &r.compact {
            print_compact(c, format)?;
        }
        print_expire(&r.expire, format)?;
        println!(
            "{}: {} {} orphans ({} bytes)",
            r.orphans.table,
            verb(r.orphans.dry_run, "deleted"),
            r.orphans.files.len(),
            r.orphans.deleted.bytes
        );
    }
    Ok(())
}

pub fn print_ingest_plan(p: &floe::ingest::IngestPlan, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(p)?);
        return Ok(());
    }
    println!("{} -> {}", p.source, p.destination);
    for (name, source_type, arrow) in &p.columns {
        println!("  column {name}: {source_type} -> {arrow}");
    }
    println!(
        "partition by {}: {} units, about {} rows",
        p.partition_by,
        p.units.len(),
        p.estimated_rows
    );
    if let Some(note) = &p.note {
        println!("note: {note}");
    }
    let mut g = grid(vec!["unit", "bounds", "estimated rows"]);
    for u in &p.units {
        g.add_row(vec![
            u.index.to_string(),
            u.describe(),
            u.estimated_rows.to_string(),
        ]);
    }
    println!("{g}");
    Ok(())
}

pub fn print_ingest(r: &floe::ingest::IngestReport, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
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
    println!("{g}");
    println!(
        "run {}: {} rows in {} units committed to {} as snapshot {} ({:.1} s)",
        r.run_id,
        r.rows,
        r.units.len(),
        r.plan.destination,
        r.snapshot_id.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
        r.seconds
    );
    if let Some(at) = &r.source_snapshot {
        println!("every unit read the source at its exported snapshot {at}");
    }
    Ok(())
}
