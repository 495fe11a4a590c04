//! The benchmark's run: every size, repetition, engine and path ([`measure`]), each step named
//! (the passes, the equivalence check, the PyIceberg peer, the full scan, the storage layer and the
//! extraction), with progress reported as it goes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::pass::{engine_of, Pass};
use super::{
    cluster_executors, core_benchmark, ingest_benchmark, namespace, on_cluster, peer, purge_namespace, scan,
    size_label, AddFilesRun, BenchOptions, CoreBenchReport, EquivalenceRun, InputInfo, Measurements, PeerRun,
    PipelineRun, ScanRun, StageFigures, StorageBenchOptions, TableVerdict,
};
use crate::catalog::{Namespace, TableName};
use crate::cluster::loopback::LoopbackCluster;
use crate::error::{Error, ErrorKind, Result};
use crate::generate::{GenerateOptions, OutputFormat};
use crate::lakehouse::Floe;
use crate::pipeline::engine::Stage;
use crate::table::At;

/// Run the benchmark and collect every figure (see [`super::report::summarize`] and
/// [`super::report::write`]).
pub async fn measure(floe: &Floe, options: &BenchOptions) -> Result<Measurements> {
    if options.sizes.is_empty() || options.engines.is_empty() || options.repetitions == 0 {
        return Err(Error::invalid(
            "nothing to run: give at least one size, engine and repetition",
        ));
    }
    let labels = engine_labels(floe, options)?;
    // One loopback cluster per executor count, up for the whole benchmark.
    let clusters = start_clusters(floe, options, &labels)?;
    std::fs::create_dir_all(&options.out)?;
    let peer_skipped = if options.peer {
        peer::unavailable()
    } else {
        Some("not requested (--no-peer)".into())
    };
    let mut bench = Bench {
        floe,
        options,
        steps: Steps::new(options, &labels, peer_skipped.is_none()),
        labels,
        clusters,
        m: Measurements {
            inputs: Vec::new(),
            runs: Vec::new(),
            equivalence: Vec::new(),
            peer: Vec::new(),
            add_files: Vec::new(),
            scans: Vec::new(),
            peer_skipped,
            storage: CoreBenchReport::default(),
            ingest: None,
        },
    };
    for &bytes in &options.sizes {
        bench.size(bytes).await?;
    }
    bench.storage_and_extraction().await?;
    if let Ok(peer_ns) = namespace(options, &["peer"]) {
        purge_namespace(floe, &peer_ns).await?;
    }
    let _ = std::fs::remove_dir_all(options.out.join("raw-work"));
    bench.steps.finish();
    Ok(bench.m)
}

/// The engine labels: every engine, `ballista` once per executor count (`ballista:N`). An unknown
/// engine fails here, before any work.
fn engine_labels(floe: &Floe, options: &BenchOptions) -> Result<Vec<String>> {
    let mut labels: Vec<String> = Vec::new();
    for e in &options.engines {
        if on_cluster(e) {
            if options.executors.is_empty() || options.executors.contains(&0) {
                return Err(Error::invalid("--executors: give executor counts of at least 1"));
            }
            labels.extend(options.executors.iter().map(|n| format!("ballista:{n}")));
        } else {
            engine_of(floe, e, None)?;
            labels.push(e.clone());
        }
    }
    Ok(labels)
}

/// A loopback cluster of the floe executable for every `ballista:N` label.
fn start_clusters(
    floe: &Floe,
    options: &BenchOptions,
    labels: &[String],
) -> Result<BTreeMap<String, LoopbackCluster>> {
    let mut clusters = BTreeMap::new();
    for label in labels.iter().filter(|l| on_cluster(l)) {
        let exe = options
            .cluster_exe
            .as_ref()
            .or(options.isolate.as_ref())
            .ok_or_else(|| {
                Error::invalid("the ballista engine needs the floe executable to start its loopback cluster")
            })?;
        let n = cluster_executors(label).unwrap_or(1);
        clusters.insert(label.clone(), LoopbackCluster::start(exe, floe.settings(), n)?);
    }
    Ok(clusters)
}

/// Progress: each step's description, with the count of steps done out of all.
struct Steps {
    progress: Option<super::BenchProgress>,
    done: u64,
    total: u64,
}

impl Steps {
    fn new(options: &BenchOptions, labels: &[String], peer: bool) -> Self {
        let raw_engines = labels.iter().filter(|e| !on_cluster(e)).count();
        let per_rep = (labels.len() + if options.raw { raw_engines } else { 0 }) as u64
            + labels.len().saturating_sub(1) as u64
            + u64::from(peer)
            + u64::from(labels.iter().any(|e| e == "datafusion"));
        let total = options.sizes.len() as u64 * (1 + options.repetitions as u64 * per_rep)
            + 1
            + u64::from(options.ingest.is_some());
        Self {
            progress: options.progress.clone(),
            done: 0,
            total,
        }
    }

    fn step(&mut self, what: String) {
        if let Some(p) = &self.progress {
            p(&what, self.done, self.total);
        }
        self.done += 1;
    }

    fn finish(&self) {
        if let Some(p) = &self.progress {
            p("done", self.total, self.total);
        }
    }
}

/// The benchmark as it runs: what it was asked, its clusters, and what it measured so far.
struct Bench<'a> {
    floe: &'a Floe,
    options: &'a BenchOptions,
    labels: Vec<String>,
    clusters: BTreeMap<String, LoopbackCluster>,
    steps: Steps,
    m: Measurements,
}

/// One repetition at one input size.
struct Repetition<'a> {
    label: &'a str,
    input: &'a InputInfo,
    rep: usize,
    /// The raw events the peer appends, exported once per size.
    peer_file: &'a Path,
}

impl Bench<'_> {
    /// Every repetition at one input size.
    async fn size(&mut self, bytes: u64) -> Result<()> {
        let label = size_label(bytes);
        self.steps
            .step(format!("{label}: generating the input (cached by seed and size)"));
        let input = input(self.floe, self.options, bytes).await?;
        let peer_file: PathBuf = std::path::absolute(
            self.options
                .out
                .join("raw-work")
                .join(format!("peer-{label}.parquet")),
        )?;
        for rep in 0..self.options.repetitions {
            let r = Repetition {
                label: &label,
                input: &input,
                rep,
                peer_file: &peer_file,
            };
            let namespaces = self.passes(&r).await?;
            self.equivalence_checks(&r, &namespaces).await?;
            if self.m.peer_skipped.is_none() {
                self.peer(&r, &namespaces).await?;
            }
            self.full_scan(&r, &namespaces).await?;
            for ns in namespaces.values() {
                purge_namespace(self.floe, ns).await?;
            }
        }
        let _ = std::fs::remove_file(&peer_file);
        self.m.inputs.push(input);
        Ok(())
    }

    /// Every engine's passes, floe and raw, in an order that alternates from one repetition to the
    /// next (A B B A); the namespaces of the floe passes that succeeded, by engine index.
    async fn passes(&mut self, r: &Repetition<'_>) -> Result<BTreeMap<usize, Namespace>> {
        let mut order: Vec<(usize, &str)> = Vec::new();
        for (i, e) in self.labels.iter().enumerate() {
            order.push((i, "floe"));
            if self.options.raw && !on_cluster(e) {
                order.push((i, "raw"));
            }
        }
        if r.rep % 2 == 1 {
            order.reverse();
        }
        let mut namespaces: BTreeMap<usize, Namespace> = BTreeMap::new();
        for (i, path) in order {
            let name = self.labels[i].clone();
            self.steps.step(format!(
                "{} repetition {}/{}: {name} {path}",
                r.label,
                r.rep + 1,
                self.options.repetitions
            ));
            let ns = namespace(self.options, &[r.label, &format!("r{}", r.rep), &name])?;
            let pass = Pass {
                path: path.to_string(),
                engine: name.clone(),
                input: r.input.dir.clone(),
                namespace: ns.to_string(),
                work: std::path::absolute(self.options.out.join("raw-work"))?,
                cluster: self.clusters.get(&name).map(|c| c.url().to_string()),
            };
            let outcome = match &self.options.isolate {
                Some(exe) => pass.run_in_child(exe, self.floe).await,
                None => pass.run(self.floe).await,
            };
            if path == "floe" {
                if outcome.is_ok() {
                    namespaces.insert(i, ns);
                } else {
                    purge_namespace(self.floe, &ns).await?;
                }
            }
            self.record_pass(r, &name, path, outcome);
        }
        Ok(namespaces)
    }

    fn record_pass(
        &mut self,
        r: &Repetition<'_>,
        engine: &str,
        path: &str,
        outcome: Result<Vec<StageFigures>>,
    ) {
        let (stages, error) = match outcome {
            Ok(s) => (s, None),
            Err(e) => {
                tracing::warn!(size = %r.label, engine = %engine, path, error = %e, "benchmark pass failed");
                (Vec::new(), Some(e.to_string()))
            }
        };
        self.m.runs.push(PipelineRun {
            size: r.label.to_string(),
            input_bytes: r.input.bytes,
            engine: engine.to_string(),
            path: path.to_string(),
            repetition: r.rep,
            stages,
            error,
        });
    }

    /// The first engine's outputs against every other engine's.
    async fn equivalence_checks(
        &mut self,
        r: &Repetition<'_>,
        namespaces: &BTreeMap<usize, Namespace>,
    ) -> Result<()> {
        for other in 1..self.labels.len() {
            let (Some(a), Some(b)) = (namespaces.get(&0), namespaces.get(&other)) else {
                continue;
            };
            self.steps.step(format!(
                "{} repetition {}: equivalence check, {} and {}",
                r.label,
                r.rep + 1,
                self.labels[0],
                self.labels[other]
            ));
            let (equal, tables) = equivalence(self.floe, a, b).await?;
            self.m.equivalence.push(EquivalenceRun {
                size: r.label.to_string(),
                engines: (self.labels[0].clone(), self.labels[other].clone()),
                repetition: r.rep,
                equal,
                tables,
            });
        }
        Ok(())
    }

    /// floe's and PyIceberg's append and `add_files` of the first engine's raw events.
    async fn peer(&mut self, r: &Repetition<'_>, namespaces: &BTreeMap<usize, Namespace>) -> Result<()> {
        self.steps.step(format!(
            "{} repetition {}: floe and PyIceberg appends",
            r.label,
            r.rep + 1
        ));
        let Some(ns) = namespaces.get(&0) else {
            return Ok(());
        };
        let (floe, label, rep) = (self.floe, r.label, r.rep);
        if rep == 0 || !r.peer_file.exists() {
            export_raw_events(floe, ns, r.peer_file).await?;
        }
        let peer_ns = namespace(self.options, &["peer"])?;
        let dir = r.peer_file.parent().unwrap_or(Path::new("."));
        let append = peer::append_pair(floe, &peer_ns, &format!("raw_events_{rep}"), r.peer_file, dir)
            .await
            .map_err(|e| e.context(format!("{label}, peer append")))?;
        self.m.peer.push(PeerRun {
            size: label.to_string(),
            repetition: rep,
            append,
        });
        let add_files =
            peer::add_files_pair(floe, &peer_ns, &format!("added_events_{rep}"), r.peer_file, dir)
                .await
                .map_err(|e| e.context(format!("{label}, peer add_files")))?;
        self.m.add_files.push(AddFilesRun {
            size: label.to_string(),
            repetition: rep,
            add_files,
        });
        Ok(())
    }

    /// The full scan of the DataFusion pass's largest table, alternating which side goes first.
    async fn full_scan(&mut self, r: &Repetition<'_>, namespaces: &BTreeMap<usize, Namespace>) -> Result<()> {
        let Some(ns) = self
            .labels
            .iter()
            .position(|e| e == "datafusion")
            .and_then(|i| namespaces.get(&i))
        else {
            return Ok(());
        };
        self.steps.step(format!(
            "{} repetition {}: full scan, floe and raw DataFusion",
            r.label,
            r.rep + 1
        ));
        let table = TableName::new(ns.clone(), crate::pipeline::tables::RAW_EVENTS)?;
        let scan = scan::scan_pair(self.floe, &table, r.rep.is_multiple_of(2))
            .await
            .map_err(|e| e.context(format!("{}, full scan", r.label)))?;
        self.m.scans.push(ScanRun {
            size: r.label.to_string(),
            repetition: r.rep,
            scan,
        });
        Ok(())
    }

    /// The storage layer's figures, then extraction from Postgres when a source was given.
    async fn storage_and_extraction(&mut self) -> Result<()> {
        let (floe, options) = (self.floe, self.options);
        self.steps
            .step(format!("commit latency over {} snapshots", options.history));
        let ns = namespace(options, &["storage"])?;
        self.m.storage = core_benchmark(
            floe,
            &ns,
            &StorageBenchOptions {
                snapshots: options.history,
                rows: options.append_rows,
                repetitions: options.repetitions,
                days: options.days,
                rows_per_day: options.rows_per_day,
            },
        )
        .await?;
        purge_namespace(floe, &ns).await?;
        if let Some(ingest) = &options.ingest {
            self.steps
                .step(format!("extraction of {} Postgres rows", ingest.rows));
            let ns = namespace(options, &["ingest"])?;
            self.m.ingest = Some(ingest_benchmark(floe, &ns, ingest).await?);
            purge_namespace(floe, &ns).await?;
        }
        Ok(())
    }
}

/// The generated CSV input of `bytes` for `seed`, from the cache under `out/inputs` or generated
/// there (a directory without its completion marker is generated again).
async fn input(floe: &Floe, options: &BenchOptions, bytes: u64) -> Result<InputInfo> {
    let dir = std::path::absolute(options.out.join("inputs").join(format!(
        "seed-{}-{}",
        options.seed,
        size_label(bytes)
    )))?;
    // The marker sits beside the directory: everything inside is input.
    let marker = dir.with_extension("complete.json");
    if let Ok(text) = std::fs::read_to_string(&marker) {
        if let Ok(info) = serde_json::from_str::<serde_json::Value>(&text) {
            return Ok(InputInfo {
                size: size_label(bytes),
                bytes: info["bytes"].as_u64().unwrap_or(0),
                events: info["events"].as_u64().unwrap_or(0),
                dir: dir.display().to_string(),
            });
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let mut g = GenerateOptions::from_target_size(bytes, OutputFormat::Csv, options.seed)?;
    g.files = (bytes / 256_000_000).max(1) as usize;
    let report = crate::generate::generate(floe.storage(), &dir.display().to_string(), &g, None).await?;
    std::fs::write(
        &marker,
        serde_json::json!({"bytes": report.bytes, "events": report.events, "seed": options.seed}).to_string(),
    )?;
    Ok(InputInfo {
        size: size_label(bytes),
        bytes: report.bytes,
        events: report.events,
        dir: dir.display().to_string(),
    })
}

/// Diff every output table of the pipeline between two namespaces' `main`.
async fn equivalence(floe: &Floe, a: &Namespace, b: &Namespace) -> Result<(bool, Vec<TableVerdict>)> {
    let mut tables: Vec<&str> = Stage::ALL.iter().flat_map(|s| s.outputs()).copied().collect();
    tables.dedup();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut all = true;
    for t in tables.into_iter().filter(|t| seen.insert(*t)) {
        let left = crate::diff::DiffSide {
            table: TableName::new(a.clone(), t)?,
            at: At::Current,
        };
        let right = crate::diff::DiffSide {
            table: TableName::new(b.clone(), t)?,
            at: At::Current,
        };
        let d = crate::diff::diff(floe, &left, &right, &crate::diff::DiffOptions::default()).await?;
        all &= d.equal;
        out.push(TableVerdict {
            table: t.to_string(),
            equal: d.equal,
            decided_by: format!("{:?}", d.decided_by).to_lowercase(),
            rows: (d.left_rows, d.right_rows),
        });
    }
    Ok((all, out))
}

/// The `raw_events` of `ns` at `main` as one Parquet file (the peer appends its rows).
async fn export_raw_events(floe: &Floe, ns: &Namespace, path: &Path) -> Result<()> {
    use futures::TryStreamExt;
    let name = TableName::new(ns.clone(), crate::pipeline::tables::RAW_EVENTS)?;
    let mut scan = floe.scan(&name, &Default::default()).await?;
    // Its folder exists only when a raw pass ran before (not with --no-raw).
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(path)
        .map_err(|e| Error::wrap(ErrorKind::Storage, format!("cannot create {}", path.display()), e))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, scan.schema.clone(), None)?;
    while let Some(b) = scan.batches.try_next().await? {
        w.write(&b)?;
    }
    w.close()?;
    Ok(())
}
