//! The pipeline on a real Ballista cluster of floe's own processes on loopback (the test command
//! starts a scheduler and two executors): the executors write the outputs' files, which carry the
//! tables' field ids and statistics, and diff equal to the DataFusion and DuckDB paths' (on generated,
//! edge-case and hostile input); the enrich join broadcasts geoip; an executor killed mid-write does
//! not fail the run and none of its files is committed; a cluster that is down is a clear error
//! before anything is written.

use std::sync::Arc;

use floe::pipeline::{BallistaEngine, DataFusionEngine, DuckDbEngine, Engine, RunOptions};
use floe::ErrorKind;

use crate::both_backends;
use crate::support::*;

fn cluster() -> Option<String> {
    let c = std::env::var("FLOE_TEST_CLUSTER").ok().filter(|c| !c.is_empty());
    if c.is_none() {
        assert!(
            may_skip_servers(),
            "FLOE_TEST_CLUSTER is not set: run `bash tests/run.sh` (it starts a cluster) or set FLOE_TEST_SKIP_SERVERS=1"
        );
        eprintln!("SKIPPED: no cluster and FLOE_TEST_SKIP_SERVERS=1");
    }
    c
}

async fn generated(ctx: &Ctx, dir: &std::path::Path, events: u64) -> String {
    let out = ctx.input_uri(dir, "gen");
    let mut g = floe::generate::GenerateOptions::new(events, 5);
    g.files = 2;
    g.dirty = floe::generate::DirtyRates::uniform(0.02);
    floe::generate::generate(ctx.floe.storage(), &out, &g, None)
        .await
        .unwrap();
    out
}

both_backends!(
    the_cluster_agrees_with_both_local_engines,
    |ctx: Ctx| async move {
        let Some(url) = cluster() else { return };
        let dir = tempfile::tempdir().unwrap();
        let input = generated(&ctx, dir.path(), 6_000).await;
        let engines: Vec<Arc<dyn Engine>> = vec![
            Arc::new(DataFusionEngine::default()),
            Arc::new(DuckDbEngine::default()),
            Arc::new(BallistaEngine::new(&url, ctx.settings.clone()).unwrap()),
        ];
        let report = floe::pipeline::run(&ctx.floe, &RunOptions::new(ctx.ns.clone(), Some(input), engines))
            .await
            .unwrap();
        let eq = report.equivalence.as_ref().unwrap();
        for d in &eq.tables {
            assert!(d.equal, "{} differs: {d:?}", d.left);
        }
        assert!(eq.equal);
        for s in report
            .stages
            .iter()
            .filter(|s| s.engine == "ballista" && s.stage == "cleanse")
        {
            let out: u64 = s.rows_out.values().sum();
            assert_eq!(out, s.rows_in, "input = clean + rejected");
        }
        if let Some(read) = crate::interop::pyiceberg_read(&ctx, "daily_metrics") {
            assert!(!read["rows"].as_array().unwrap().is_empty());
        }
        // The executors wrote the files: the driver received only their entries.
        let cluster_stages: Vec<_> = report
            .stages
            .iter()
            .filter(|s| s.engine == "ballista" && s.stage != "ingest")
            .collect();
        assert_eq!(cluster_stages.len(), 4);
        let received: u64 = cluster_stages
            .iter()
            .map(|s| s.driver_bytes_received.expect("the executors wrote this stage"))
            .sum();
        let written: u64 = cluster_stages.iter().map(|s| s.bytes_written).sum();
        assert!(
            received > 0 && received * 5 < written,
            "driver received {received} bytes for {written} bytes of files"
        );
        for t in ["clean_events", "enriched_events", "session_events", "sessions"] {
            files_carry_field_ids_and_statistics(&ctx, t).await;
        }
    }
);

/// Every data file of `NS.table` has the table's field ids in its footer, and an entry with bounds
/// of every column that has values.
async fn files_carry_field_ids_and_statistics(ctx: &Ctx, table: &str) {
    use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
    let t = ctx.floe.load_table(&ctx.table(table)).await.unwrap();
    let ids: std::collections::BTreeSet<i32> = t.schema().as_struct().fields().iter().map(|f| f.id).collect();
    let files = t.live_data_files(t.current_snapshot()).await.unwrap();
    assert!(!files.is_empty(), "{table}");
    for f in files {
        let bounded: std::collections::BTreeSet<i32> = f.lower_bounds().keys().copied().collect();
        assert!(
            !bounded.is_empty() && bounded.is_subset(&ids),
            "{table}: {bounded:?} of {ids:?}"
        );
        assert!(
            f.column_sizes().len() == ids.len(),
            "{table}: {:?}",
            f.column_sizes()
        );
        let (store, path) = ctx.floe.storage().resolve(f.file_path()).unwrap();
        let reader = ParquetObjectReader::new(store, path).with_file_size(f.file_size_in_bytes());
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await.unwrap();
        let in_footer: std::collections::BTreeSet<i32> = builder
            .parquet_schema()
            .root_schema()
            .get_fields()
            .iter()
            .map(|c| c.get_basic_info().id())
            .collect();
        assert_eq!(in_footer, ids, "{table}: {}", f.file_path());
    }
}

// The edge cases of `pipeline.rs` and the hostile text of `hostile_text.rs`, through local
// DataFusion and the cluster in one run each: every output diffs equal.
both_backends!(
    executors_write_what_local_datafusion_computes_on_edge_cases_and_hostile_text,
    |ctx: Ctx| async move {
        let Some(url) = cluster() else { return };
        let dir = tempfile::tempdir().unwrap();
        let inputs = [
            ("edge.csv", crate::pipeline::edge_csv()),
            ("hostile.csv", crate::hostile_text::hostile().bytes),
        ];
        for (i, (name, bytes)) in inputs.into_iter().enumerate() {
            let input = ctx.input_uri(dir.path(), name);
            ctx.floe.storage().write(&input, bytes.into()).await.unwrap();
            let ns = floe::Namespace::parse(&format!("{}_{i}", ctx.ns)).unwrap();
            let engines: Vec<Arc<dyn Engine>> = vec![
                Arc::new(DataFusionEngine::default()),
                Arc::new(BallistaEngine::new(&url, ctx.settings.clone()).unwrap()),
            ];
            let report = floe::pipeline::run(&ctx.floe, &RunOptions::new(ns, Some(input), engines))
                .await
                .unwrap();
            let eq = report.equivalence.as_ref().unwrap();
            assert!(
                eq.equal,
                "{name}: {:?}",
                eq.tables.iter().filter(|d| !d.equal).collect::<Vec<_>>()
            );
            for s in report
                .stages
                .iter()
                .filter(|s| s.engine == "ballista" && s.stage != "ingest")
            {
                assert!(
                    s.driver_bytes_received.is_some(),
                    "{name}: {} written by the executors",
                    s.stage
                );
            }
        }
    }
);

both_backends!(
    the_enrich_join_broadcasts_geoip_on_the_cluster,
    |ctx: Ctx| async move {
        let Some(url) = cluster() else { return };
        let dir = tempfile::tempdir().unwrap();
        let input = generated(&ctx, dir.path(), 2_000).await;
        let engine = BallistaEngine::new(&url, ctx.settings.clone()).unwrap();
        floe::pipeline::run(
            &ctx.floe,
            &RunOptions::new(ctx.ns.clone(), Some(input), vec![Arc::new(engine.clone())]),
        )
        .await
        .unwrap();
        let mut inputs = std::collections::BTreeMap::new();
        for t in floe::pipeline::Stage::Enrich.inputs() {
            let table = ctx.floe.load_table(&ctx.table(t)).await.unwrap();
            let snapshot_id = table.current_snapshot().map(|s| s.snapshot_id());
            inputs.insert(*t, floe::pipeline::PinnedTable { table, snapshot_id });
        }
        let plan = engine
            .explain(floe::pipeline::Stage::Enrich, &inputs)
            .await
            .unwrap()
            .expect("the cluster explains its plans");
        // The join builds geoip once per task from one partition (broadcast), instead of
        // repartitioning the events by the join key.
        assert!(plan.contains("HashJoinExec: mode=CollectLeft"), "{plan}");
        assert!(
            !plan.contains("SortMergeJoinExec") && !plan.contains("mode=Partitioned"),
            "{plan}"
        );
        assert!(
            !plan.contains("partitioning=Hash([c.ipn"),
            "events shuffled by the key: {plan}"
        );
        assert!(plan.contains("broadcast=true"), "{plan}");
    }
);

/// A cluster of its own (a scheduler and two executors), so that killing one disturbs no other test.
/// Dropping it ends the processes, and prints their logs' tails when the test is failing.
pub(crate) struct OwnCluster {
    pub(crate) children: Vec<std::process::Child>,
    pub(crate) url: String,
    /// The processes' logs (`scheduler.log`, `executor-0.log`, `executor-1.log`, see [`log`]).
    pub(crate) dir: tempfile::TempDir,
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            // The processes' logs say why the run failed.
            for name in ["scheduler", "executor-0", "executor-1"] {
                let text =
                    std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default();
                let tail: Vec<&str> = text
                    .lines()
                    .rev()
                    .take(if std::env::var_os("FLOE_TEST_FULL_LOGS").is_some() {
                        100_000
                    } else {
                        30
                    })
                    .collect();
                eprintln!("--- {name}.log (last lines)");
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

fn free_port_pair() -> u16 {
    loop {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// Wait until `address` accepts connections; false when `child` exits first (its port was taken by
/// another test meanwhile) or nothing listens within a minute.
pub(crate) fn wait_listening(address: std::net::SocketAddr, child: &mut std::process::Child) -> bool {
    for _ in 0..240 {
        if std::net::TcpStream::connect(address).is_ok() {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    false
}

/// A process's log file in the cluster's directory (kept when the test fails: see `OwnCluster`).
pub(crate) fn log(dir: &std::path::Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(format!("{name}.log"))).unwrap()
}

/// Start `args` (with `{port}` for a free port pair) until one listens: tests running at the same
/// time may take a port between its choice and its use.
fn spawn_listening(
    ctx: &Ctx,
    dir: &std::path::Path,
    name: &str,
    args: &[&str],
    log_level: &str,
) -> (std::process::Child, u16) {
    for _ in 0..5 {
        let port = free_port_pair();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()))
            .collect();
        let mut child = floe_cmd(dir, Some(ctx))
            .args(&args)
            .env("FLOE_LOG", log_level)
            .stderr(log(dir, name))
            .spawn()
            .unwrap();
        if wait_listening(([127, 0, 0, 1], port).into(), &mut child) {
            return (child, port);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{name} did not start: see its log");
}

fn own_cluster(ctx: &Ctx) -> OwnCluster {
    own_cluster_logging(ctx, "info")
}

/// A cluster of its own whose processes log at `log_level`.
fn own_cluster_logging(ctx: &Ctx, log_level: &str) -> OwnCluster {
    let dir = tempfile::tempdir().unwrap();
    let (scheduler, port) = spawn_listening(
        ctx,
        dir.path(),
        "scheduler",
        &["cluster", "scheduler", "--bind", "127.0.0.1:{port}"],
        log_level,
    );
    let mut children = vec![scheduler];
    for i in 0..2 {
        let work = dir.path().join(format!("executor-{i}")).display().to_string();
        let scheduler = format!("127.0.0.1:{port}");
        let (executor, _) = spawn_listening(
            ctx,
            dir.path(),
            &format!("executor-{i}"),
            &[
                "cluster",
                "executor",
                "--scheduler",
                &scheduler,
                "--bind",
                "127.0.0.1:{port}",
                "--concurrent-tasks",
                "1",
                "--work-dir",
                &work,
            ],
            log_level,
        );
        children.push(executor);
    }
    let scheduler = port;
    OwnCluster {
        children,
        url: format!("df://127.0.0.1:{scheduler}"),
        dir,
    }
}

both_backends!(
    ingest_units_run_on_the_cluster_and_one_failing_once_is_retried_alone,
    |ctx: Ctx| async move {
        if cluster().is_none() {
            return;
        }
        use crate::ingest::{
            kill_first_attempt_of_unit_1, sleepy_query, source_figures, source_table, source_url,
            table_figures,
        };
        use floe::ingest::units::{PartitionBy, UnitCount};
        // Debug logs: the scheduler and executors log every plan they run.
        let own = own_cluster_logging(&ctx, "debug");
        tokio::time::sleep(std::time::Duration::from_secs(4)).await;
        let name = format!("src_cluster_{}", ctx.ns);
        let pool = source_table(&name).await;
        let expected = source_figures(&pool, &name).await;
        // A password the test server does not ask for (trust): it must reach no plan and no log.
        let secret = "never-in-a-plan-5f1c";
        let url = source_url().replacen("://floe@", &format!("://floe:{secret}@"), 1);
        assert!(url.contains(secret), "{url}");
        let mut o = floe::ingest::IngestOptions::new(url, format!("{}.on_cluster", ctx.ns));
        o.query = Some(sleepy_query(&name, 1.0));
        o.partition_by = Some(PartitionBy::Id("id".into()));
        o.units = UnitCount::Exactly(4);
        o.create = true;
        o.on_cluster = Some(own.url.clone());
        let killer = kill_first_attempt_of_unit_1(&pool, &name);
        let report = floe::ingest::ingest(&ctx.floe, &o).await.unwrap();
        assert!(
            killer.await.unwrap(),
            "the test found unit 1's connection and killed it"
        );
        let attempts: Vec<u32> = report.units.iter().map(|u| u.attempts).collect();
        assert_eq!(attempts, [1, 2, 1, 1], "only unit 1 ran twice");
        assert!(report.units.iter().all(|u| u.on_cluster), "{:?}", report.units);
        let t = ctx.table("on_cluster");
        let got = table_figures(&ctx, &t).await;
        assert_eq!(
            (got.0, got.1, got.2, got.3, got.4),
            (expected.0, expected.1, expected.2, expected.3, expected.4)
        );
        // An independent reader sees the executors' files: PyIceberg's own planning and scan of a
        // key range against the source's count of it.
        if let Some(layout) = crate::interop::pyiceberg_layout(&ctx, "on_cluster", Some("id < 5000")) {
            let at_source: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {name} WHERE id < 5000"))
                .fetch_one(&pool)
                .await
                .unwrap();
            assert!(at_source > 0);
            assert_eq!(
                layout["rows"].as_array().unwrap().len() as i64,
                at_source,
                "{}",
                layout["files"]
            );
        }
        // One snapshot, the run's.
        let table = ctx.floe.load_table(&t).await.unwrap();
        assert_eq!(table.snapshots().len(), 1);
        assert_eq!(
            table.current_snapshot().map(|s| s.snapshot_id()),
            report.snapshot_id
        );
        // The plans were logged, and no log holds the password.
        let mut logged_units = false;
        for entry in std::fs::read_dir(own.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                assert!(!text.contains(secret), "{} holds the password", path.display());
                logged_units |= text.contains("FloeExtractUnit");
            }
        }
        assert!(logged_units, "the cluster logged the units' plans");
        crate::ingest::exec(&pool, &format!("DROP TABLE {name}")).await;
    }
);

both_backends!(
    an_executor_killed_mid_run_does_not_fail_it,
    |ctx: Ctx| async move {
        if cluster().is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let input = generated(&ctx, dir.path(), 60_000).await;
        let mut own = own_cluster(&ctx);
        // Give the executors time to register.
        tokio::time::sleep(std::time::Duration::from_secs(4)).await;
        let victim = own.children[2].id();
        let engine: Arc<dyn Engine> = Arc::new(BallistaEngine::new(&own.url, ctx.settings.clone()).unwrap());
        let mut options = RunOptions::new(ctx.ns.clone(), Some(input), vec![engine]);
        // Kill one executor shortly after the sessionize stage starts.
        let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = fired.clone();
        options.progress = Some(Arc::new(move |stage, _engine, report| {
            if stage == floe::pipeline::Stage::Sessionize
                && report.is_none()
                && !flag.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &victim.to_string()])
                        .status();
                });
            }
        }));
        let report = floe::pipeline::run(&ctx.floe, &options).await.unwrap();
        assert!(fired.load(std::sync::atomic::Ordering::SeqCst));
        let _ = own.children[2].wait();
        let sessionize = report.stages.iter().find(|s| s.stage == "sessionize").unwrap();
        assert_eq!(sessionize.status, "succeeded");
        // The results of the run match the local DataFusion path on the same input.
        let local = floe::Namespace::parse(&format!("{}_local", ctx.ns)).unwrap();
        let input = ctx.input_uri(dir.path(), "gen");
        floe::pipeline::run(
            &ctx.floe,
            &RunOptions::new(
                local.clone(),
                Some(input),
                vec![Arc::new(DataFusionEngine::default())],
            ),
        )
        .await
        .unwrap();
        // No file of the killed attempts is committed, and what they left behind is unreferenced:
        // after orphan removal the store holds exactly what the metadata references.
        for t in floe::pipeline::Stage::ALL.iter().flat_map(|s| s.outputs()) {
            let name = ctx.table(t);
            let refs = referenced(&ctx, &name).await;
            for f in &refs {
                assert!(ctx.floe.storage().exists(f).await.unwrap(), "{t}: {f} is missing");
            }
            remove_orphans_now(&ctx, &name).await;
            assert_eq!(stored(&ctx, &name).await, refs, "{t}");
        }
        for t in ["sessions", "daily_metrics"] {
            let d = floe::diff::diff(
                &ctx.floe,
                &floe::diff::DiffSide::parse(&format!("{}.{t}", ctx.ns)).unwrap(),
                &floe::diff::DiffSide::parse(&format!("{local}.{t}")).unwrap(),
                &floe::diff::DiffOptions::default(),
            )
            .await
            .unwrap();
            assert!(d.equal, "{t}: {d:?}");
        }
    }
);

both_backends!(
    a_cluster_that_is_down_is_a_clear_error_before_any_write,
    |ctx: Ctx| async move {
        let dir = tempfile::tempdir().unwrap();
        let input = generated(&ctx, dir.path(), 500).await;
        let engine: Arc<dyn Engine> =
            Arc::new(BallistaEngine::new("df://127.0.0.1:1", ctx.settings.clone()).unwrap());
        let err = floe::pipeline::run(
            &ctx.floe,
            &RunOptions::new(ctx.ns.clone(), Some(input), vec![engine]),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Engine, "{err}");
        assert!(err.to_string().contains("cannot be reached"), "{err}");
        assert!(
            ctx.floe.tables(&ctx.ns).await.unwrap().is_empty(),
            "nothing was created or written"
        );
    }
);
