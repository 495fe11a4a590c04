//! `floe bench` end to end on a small input: every pass measured, the engines equal, the peer and
//! the storage benchmark run, and the report files written; `floe bench --upsert` at a tiny size.

use crate::both_backends;
use crate::support::*;

both_backends!(
    bench_measures_reports_and_checks_equivalence,
    |ctx: Ctx| async move {
        let out = tempfile::tempdir().unwrap();
        let options = floe::bench::BenchOptions {
            sizes: vec![400_000],
            repetitions: 2,
            out: out.path().to_path_buf(),
            history: 12,
            append_rows: 20_000,
            days: 6,
            rows_per_day: 500,
            namespace_prefix: ctx.ns.to_string(),
            // The test Postgres doubles as the extraction benchmark's source.
            ingest: Some(floe::bench::IngestBenchOptions {
                source: std::env::var("FLOE_TEST_POSTGRES_URL")
                    .expect("the test command sets FLOE_TEST_POSTGRES_URL"),
                rows: 30_000,
                wan_rows: 20_000,
                repetitions: 2,
            }),
            ..Default::default()
        };
        let m = floe::bench::measure(&ctx.floe, &options).await.unwrap();

        // Two engines x two paths x two repetitions, every stage measured.
        assert_eq!(m.runs.len(), 8);
        for r in &m.runs {
            assert!(r.error.is_none(), "{r:?}");
            assert_eq!(r.stages.len(), 5, "{r:?}");
            for s in &r.stages {
                assert!(s.seconds > 0.0 && s.peak_memory_bytes > 0, "{s:?}");
                assert!(s.bytes_read > 0 && s.bytes_written > 0 && s.rows_out > 0, "{r:?}");
                assert_eq!(s.commit_seconds.is_some(), r.path == "floe");
            }
        }
        // The balanced order: the second repetition runs the passes in reverse.
        let order = |rep: usize| -> Vec<(String, String)> {
            m.runs
                .iter()
                .filter(|r| r.repetition == rep)
                .map(|r| (r.engine.clone(), r.path.clone()))
                .collect()
        };
        let mut reversed = order(1);
        reversed.reverse();
        assert_eq!(order(0), reversed);
        // Both floe paths ingest the same records.
        let ingested: Vec<u64> = m
            .runs
            .iter()
            .filter(|r| r.path == "floe")
            .map(|r| r.stages[0].rows_out)
            .collect();
        assert!(ingested.windows(2).all(|w| w[0] == w[1]), "{ingested:?}");

        assert_eq!(m.equivalence.len(), 2);
        assert!(
            m.equivalence.iter().all(|e| e.equal && e.tables.len() == 7),
            "{:?}",
            m.equivalence
        );
        // The test command installs PyIceberg, so the peer runs.
        assert!(m.peer_skipped.is_none(), "{:?}", m.peer_skipped);
        assert_eq!(m.peer.len(), 2);
        assert!(m
            .peer
            .iter()
            .all(|p| p.append.rows > 0 && p.append.pyiceberg_seconds > 0.0));
        // add_files: the same rows as many files on both sides, each one snapshot.
        assert_eq!(m.add_files.len(), 2);
        for a in &m.add_files {
            let a = &a.add_files;
            assert!(a.files > 1 && a.rows == m.peer[0].append.rows, "{a:?}");
            assert!(a.floe_seconds > 0.0 && a.pyiceberg_seconds > 0.0, "{a:?}");
        }
        // The full scan read every row of raw_events through floe and through raw DataFusion.
        assert_eq!(m.scans.len(), 2);
        for x in &m.scans {
            assert!(
                x.scan.rows > 0 && x.scan.files > 0 && x.scan.bytes > 0,
                "{:?}",
                x.scan
            );
            assert!(
                x.scan.floe_seconds > 0.0 && x.scan.raw_seconds > 0.0,
                "{:?}",
                x.scan
            );
        }
        assert_eq!(m.storage.snapshots, 12);
        assert!(m.storage.first_commit_ms > 0.0 && m.storage.last_commit_ms > 0.0);
        assert!(m.storage.scan_plan_first_ms > 0.0 && m.storage.scan_plan_last_ms > 0.0);
        // Six days, a partition each: maintenance keeps one file per day and little else; without
        // it every replaced file and metadata version stays.
        let year = m.storage.year.as_ref().expect("the simulated year ran");
        assert_eq!((year.days, year.rows_per_day), (6, 500));
        assert_eq!(year.maintained.live_data_files, 6, "{year:?}");
        assert_eq!(year.unmaintained.live_data_files, 6, "{year:?}");
        assert!(
            year.maintained.files_on_storage < year.unmaintained.files_on_storage
                && year.maintained.ratio < year.unmaintained.ratio,
            "{year:?}"
        );

        // Extraction: every variant moved all 30,000 rows (the benchmark checks the count); auto
        // units split the table into at least ten id ranges.
        let ingest = m.ingest.as_ref().expect("the extraction benchmark ran");
        let variants: Vec<&str> = ingest.variants.iter().map(|v| v.variant.as_str()).collect();
        assert_eq!(
            variants,
            [
                "one unit",
                "auto units",
                "psql COPY",
                "one unit through the WAN proxy",
                "auto units through the WAN proxy",
                "auto units, 4 at a time, through the WAN proxy"
            ]
        );
        assert!(
            ingest
                .variants
                .iter()
                .all(|v| v.seconds > 0.0 && v.rows_per_s > 0.0),
            "{ingest:?}"
        );
        assert!(ingest.variants[0].peak_memory_bytes > 0, "{ingest:?}");
        assert!(ingest.variants[1].units >= 10, "{ingest:?}");
        assert!(ingest.auto_to_one_ratio > 0.0 && ingest.auto_to_copy_ratio > 0.0);
        // Through the WAN proxy: 20,000 rows, every connection through it; at 8 MB/s one unit takes
        // at least the link's time for its bytes.
        let wan = ingest.wan.as_ref().expect("the WAN extraction ran");
        assert_eq!((wan.rows, wan.round_trip_ms), (20_000, 20.0), "{wan:?}");
        assert!(wan.connections > 10, "{wan:?}");
        assert!(ingest.variants[4].units >= 10, "{ingest:?}");
        assert!(ingest.variants[5].units >= 10, "{ingest:?}");
        assert!(
            ingest.wan_auto_to_one_ratio > 0.0 && ingest.wan_auto_wide_to_one_ratio > 0.0,
            "{ingest:?}"
        );

        // The benchmark's tables are gone.
        for ns in ctx.floe.namespaces().await.unwrap() {
            assert!(
                !ns.to_string().starts_with(&format!("{}_", ctx.ns)),
                "{ns} left behind"
            );
        }

        let report = floe::bench::report::summarize(&ctx.floe, m, 2);
        let total = report
            .summary
            .iter()
            .find(|r| r.engine == "duckdb" && r.path == "floe" && r.stage == "total")
            .unwrap();
        assert_eq!(total.seconds.n, 2);
        assert!(total.seconds.min <= total.seconds.median && total.seconds.median <= total.seconds.max);
        let overhead = report
            .overhead
            .iter()
            .find(|o| o.engine == "datafusion" && o.stage == "total")
            .unwrap();
        assert_eq!(overhead.floe_over_raw.n, 2);
        assert!(overhead.floe_over_raw.low.unwrap() <= overhead.floe_over_raw.mean);
        // The earlier issues' 13, the engine-writes issue's five, the speed issue's five, and the
        // extraction through the WAN proxy.
        assert_eq!(report.targets.len(), 24, "{:?}", report.targets);
        assert!(report.append_vs_pyiceberg.contains_key("400KB"));
        // The peer writes floe's codec, and the physical limit is measured beside it.
        assert_eq!(report.append_vs_arrow_writer["400KB"].n, 2);
        assert!(report
            .measurements
            .peer
            .iter()
            .all(|p| p.append.codec == "snappy" && p.append.arrow_writer_seconds > 0.0));
        assert_eq!(report.add_files_vs_pyiceberg["400KB"].n, 2);
        assert_eq!(report.scan_vs_raw["400KB"].n, 2);
        assert_eq!(report.recommendation.winners.len(), 1);

        let files = floe::bench::report::write(&report, out.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "report.json",
                "report.md",
                "time.svg",
                "memory.svg",
                "overhead.svg"
            ]
        );
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
        assert!(json["machine"]["cpus"].as_u64().unwrap() >= 1);
        assert_eq!(json["measurements"]["runs"].as_array().unwrap().len(), 8);
        let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
        assert!(md.contains("- Full scan of the 400KB input's raw_events"), "{md}");
        assert!(md.contains("- `add_files` of the same rows as"), "{md}");
        for section in [
            "## End to end",
            "## Per stage",
            "## Equivalence",
            "## Extraction from Postgres",
            "## Targets",
            "--engine auto",
        ] {
            assert!(md.contains(section), "{section} missing from\n{md}");
        }
        let svg = std::fs::read_to_string(out.path().join("time.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("duckdb floe"), "{svg}");

        // The input stays cached for the next run: its directory and, beside it, the completion marker.
        let cached = std::fs::read_dir(out.path().join("inputs")).unwrap().count();
        assert_eq!(cached, 2);
    }
);

both_backends!(
    bench_runs_the_ballista_engine_on_loopback_clusters_against_local_datafusion,
    |ctx: Ctx| async move {
        let out = tempfile::tempdir().unwrap();
        let options = floe::bench::BenchOptions {
            sizes: vec![200_000],
            engines: vec!["datafusion".into(), "ballista".into()],
            executors: vec![1, 2],
            cluster_exe: Some(env!("CARGO_BIN_EXE_floe").into()),
            repetitions: 1,
            out: out.path().to_path_buf(),
            history: 3,
            append_rows: 1_000,
            days: 0,
            raw: false,
            peer: false,
            namespace_prefix: ctx.ns.to_string(),
            ..Default::default()
        };
        let m = floe::bench::measure(&ctx.floe, &options).await.unwrap();
        // Local DataFusion and a cluster of one and of two executors, each the whole pipeline.
        let engines: Vec<&str> = m.runs.iter().map(|r| r.engine.as_str()).collect();
        assert_eq!(
            engines,
            ["datafusion", "ballista:1", "ballista:2"],
            "{:?}",
            m.runs
        );
        for r in &m.runs {
            assert!(r.error.is_none(), "{r:?}");
            assert_eq!(r.path, "floe");
            assert_eq!(r.stages.len(), 5, "{r:?}");
        }
        // Both clusters' outputs diff equal to local DataFusion's.
        let pairs: Vec<(String, String)> = m.equivalence.iter().map(|e| e.engines.clone()).collect();
        assert_eq!(
            pairs,
            [
                ("datafusion".to_string(), "ballista:1".to_string()),
                ("datafusion".to_string(), "ballista:2".to_string())
            ]
        );
        assert!(m.equivalence.iter().all(|e| e.equal), "{:?}", m.equivalence);

        let report = floe::bench::report::summarize(&ctx.floe, m, 1);
        let rows: Vec<(usize, bool)> = report
            .cluster
            .rows
            .iter()
            .map(|c| (c.executors, c.speedup_over_fewest.is_some()))
            .collect();
        assert_eq!(rows, [(1, true), (2, true)], "{:?}", report.cluster);
        assert!(report
            .cluster
            .rows
            .iter()
            .all(|c| c.seconds > 0.0 && c.over_datafusion.mean > 0.0 && c.over_datafusion.n == 1));
        // The executors wrote the files: the driver received a small part of what was committed.
        for c in &report.cluster.rows {
            let ratio = c.driver_bytes_per_output_byte.expect("measured");
            assert!(ratio > 0.0 && ratio < 0.2, "{c:?}");
            assert!(
                c.enrich_over_datafusion.as_ref().is_some_and(|r| r.n == 1),
                "{c:?}"
            );
        }
        let plan = report
            .cluster
            .enrich_plan
            .as_deref()
            .expect("the cluster's enrich plan");
        assert!(plan.contains("broadcast=true"), "{plan}");
        let json = serde_json::to_value(&report).unwrap();
        assert!(
            json["cluster"]["driver_bytes_per_output_byte"].is_number(),
            "{}",
            json["cluster"]
        );
        assert!(report
            .targets
            .iter()
            .any(|t| t.target.starts_with("cluster: bytes the driver receives") && t.met.is_some()));
        floe::bench::report::write(&report, out.path()).unwrap();
        let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
        assert!(md.contains("## Cluster") && md.contains("| 200KB | 2 |"), "{md}");
        assert!(md.contains("broadcast=true"), "{md}");
    }
);

/// `url` with `password` in its user info.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, host) = rest.split_once('@').unwrap();
    let user = user.split(':').next().unwrap();
    format!("{scheme}://{user}:{password}@{host}")
}

/// `root` and the processes under it (its children, theirs, ...), with their command lines.
fn process_tree(root: u32) -> Vec<(u32, String)> {
    let mut parent = std::collections::HashMap::new();
    let mut cmdline = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        parent.insert(pid, ppid);
        if let Ok(c) = std::fs::read(entry.path().join("cmdline")) {
            cmdline.insert(pid, String::from_utf8_lossy(&c).replace('\0', " "));
        }
    }
    let under = |mut pid: u32| {
        while let Some(&p) = parent.get(&pid) {
            if p == root {
                return true;
            }
            if p <= 1 {
                return false;
            }
            pid = p;
        }
        false
    };
    cmdline.into_iter().filter(|(pid, _)| under(*pid)).collect()
}

both_backends!(
    bench_children_never_carry_a_secret_on_their_command_line,
    |ctx: Ctx| async move {
        // Canary passwords (the test Postgres trusts local connections: a password is accepted
        // and never checked) for the catalog and for the extraction source; on S3 the secret key.
        let catalog_pw = "catalog-canary-pw-1f3a";
        let source_pw = "source-canary-pw-9c2e";
        let mut secrets = vec![source_pw.to_string()];
        let mut env = settings_env(&ctx.settings, ctx.backend);
        for (k, v) in env.iter_mut() {
            if *k == "FLOE_CATALOG_URL" && v.starts_with("postgres") {
                *v = with_password(v, catalog_pw);
                secrets.push(catalog_pw.to_string());
            }
            if *k == "AWS_SECRET_ACCESS_KEY" {
                secrets.push(v.clone());
            }
        }
        let source = with_password(
            &std::env::var("FLOE_TEST_POSTGRES_URL").expect("the test command sets FLOE_TEST_POSTGRES_URL"),
            source_pw,
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bench");
        let log = dir.path().join("bench.log");
        let namespace = format!("{}_secrets", ctx.ns);
        let mut cmd = floe_cmd(dir.path(), None);
        // The source through the environment, as its help advises: `floe` itself then holds no
        // secret on its command line either.
        cmd.envs(env).env("FLOE_BENCH_INGEST_SOURCE", &source).args([
            "bench",
            "--sizes",
            "200KB",
            "--engines",
            "duckdb",
            "--repetitions",
            "1",
            "--snapshots",
            "3",
            "--rows",
            "1000",
            "--days",
            "0",
            "--no-raw",
            "--ingest-rows",
            "20000",
            "--namespace",
            &namespace,
            "--out",
            out.to_str().unwrap(),
        ]);
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // Watch the benchmark and every process it starts, as any local user could with `ps`.
        let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
        let mut leaks = Vec::new();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            for (pid, line) in process_tree(child.id()) {
                for s in &secrets {
                    if line.contains(s.as_str()) {
                        leaks.push(format!("{pid}: {}", line.replace(s.as_str(), "<SECRET>")));
                    }
                }
                for what in ["floe_bench_peer.py", "psql", "bench-pass"] {
                    if line.contains(what) {
                        *seen.entry(what.to_string()).or_default() += 1;
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(status.success(), "floe bench failed: {log}");
        assert!(leaks.is_empty(), "secrets on command lines: {leaks:#?}");
        // The watch saw the children that hold the secrets in their environment.
        assert!(seen.contains_key("floe_bench_peer.py"), "{seen:?}");
        assert!(!log.contains(source_pw) && !log.contains(catalog_pw), "{log}");
    }
);

both_backends!(
    bench_upsert_measures_every_variant_and_scan_and_the_upserted_tables_agree,
    |ctx: Ctx| async move {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bench");
        let namespace = format!("{}_up", ctx.ns);
        let output = floe_cmd(dir.path(), Some(&ctx))
            .args([
                "bench",
                "--upsert",
                "--upsert-rows",
                "20000",
                "--repetitions",
                "1",
                "--namespace",
                &namespace,
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("merge-on-read upsert at least 10x faster"),
            "{stdout}"
        );
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("upsert/report.json")).unwrap()).unwrap();

        // The setup: 20,000 rows in at least 8 files, every 100th row updated, 0.5% new, Snappy on
        // every table (PyIceberg's default is zstd: the benchmark sets floe's codec on its table).
        assert_eq!(r["rows"], 20_000);
        assert!(r["data_files"].as_u64().unwrap() >= 8, "{}", r["data_files"]);
        assert_eq!(
            (r["updated_rows"].as_u64(), r["inserted_rows"].as_u64()),
            (Some(200), Some(100))
        );
        assert_eq!(r["codec"], "snappy");
        assert!(r["peer_skipped"].is_null(), "{}", r["peer_skipped"]);
        assert!(
            r["pyiceberg_version"].is_string() && r["duckdb_version"].is_string(),
            "{r}"
        );

        // Every variant upserted the same rows and wrote files; merge-on-read a delete file per data
        // file (the updates are in every file), copy-on-write none.
        let variants = r["variants"].as_array().unwrap();
        let names: Vec<&str> = variants.iter().map(|v| v["variant"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["floe merge-on-read", "floe copy-on-write", "PyIceberg upsert"]
        );
        for v in variants {
            assert_eq!(
                (v["rows_updated"].as_u64(), v["rows_inserted"].as_u64()),
                (Some(200), Some(100)),
                "{v}"
            );
            assert!(v["seconds"]["median"].as_f64().unwrap() > 0.0, "{v}");
            assert!(v["bytes_written"]["median"].as_f64().unwrap() > 0.0, "{v}");
            assert!(v["snapshots"].as_u64().unwrap() >= 1, "{v}");
        }
        assert!(
            variants[0]["delete_files_added"].as_u64() >= r["data_files"].as_u64(),
            "{}",
            variants[0]
        );
        assert_eq!(variants[1]["delete_files_added"], 0, "{}", variants[1]);
        for ratio in [
            "merge_on_read_speedup_over_pyiceberg",
            "merge_on_read_speedup_over_copy_on_write",
            "merge_on_read_bytes_over_copy_on_write",
        ] {
            assert!(r[ratio]["mean"].as_f64().unwrap() > 0.0, "{ratio}: {}", r[ratio]);
        }
        // Merge-on-read writes the new rows and delete files, copy-on-write every file again.
        assert!(
            r["merge_on_read_bytes_over_copy_on_write"]["mean"]
                .as_f64()
                .unwrap()
                < 1.0,
            "{}",
            r["merge_on_read_bytes_over_copy_on_write"]
        );

        // Each reader scanned every state: 20,000 rows before, 20,100 after, the same compacted.
        let scans = r["scans"].as_array().unwrap();
        for reader in ["floe", "pyiceberg", "duckdb"] {
            for (state, rows) in [("before", 20_000), ("after", 20_100), ("compacted", 20_100)] {
                let s = scans
                    .iter()
                    .find(|s| s["reader"] == reader && s["state"] == state)
                    .unwrap_or_else(|| panic!("no {reader} scan {state}: {scans:?}"));
                assert_eq!(s["rows"], rows, "{s}");
                assert!(s["seconds"]["median"].as_f64().unwrap() > 0.0, "{s}");
            }
        }
        assert_eq!(
            r["scan_ratios"].as_array().unwrap().len(),
            3,
            "{}",
            r["scan_ratios"]
        );
        assert!(
            r["files_compacted"].as_u64().unwrap() >= 8,
            "{}",
            r["files_compacted"]
        );

        // The benchmark's own setup: floe's tables (merge-on-read, compacted, copy-on-write) end
        // with PyIceberg's rows.
        assert_eq!(r["same_rows"], true, "{}", r["runs"]);
        let rows_after = &r["runs"][0]["rows_after"];
        for label in [
            "floe merge-on-read",
            "floe copy-on-write",
            "floe compacted",
            "PyIceberg upsert",
        ] {
            assert_eq!(rows_after[label], 20_100, "{label}: {rows_after}");
        }

        // The three targets, each measured (met or not: tiny sizes and timing noise).
        let targets = r["targets"].as_array().unwrap();
        assert_eq!(targets.len(), 3, "{targets:?}");
        for t in targets {
            assert!(t["target"].is_string() && t["measured"].is_string(), "{t}");
            assert!(t["met"].is_boolean(), "{t}");
        }
        let md = std::fs::read_to_string(out.join("upsert/report.md")).unwrap();
        for section in [
            "## Upserts",
            "## Full scans of the merge-on-read table",
            "## Targets",
            "| duckdb |",
        ] {
            assert!(md.contains(section), "{section} missing from\n{md}");
        }
        // The benchmark's tables and inputs are gone.
        for ns in ctx.floe.namespaces().await.unwrap() {
            assert!(!ns.to_string().starts_with(&namespace), "{ns} left behind");
        }
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("upsert-inputs"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
);
