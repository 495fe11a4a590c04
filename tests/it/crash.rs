//! Crashes at every commit point: `floe append`, `overwrite`, `delete` (both row modes), `upsert`
//! (both row modes) and a pipeline stage are
//! killed with SIGKILL (`FLOE_CRASH_AT`, built in with the `failpoints` feature) after the data files,
//! the manifests, the manifest list, the metadata JSON, the catalog swap, and before cleanup. After
//! each kill the table loads in floe and in PyIceberg at the old or the new snapshot, never in
//! between; every file the metadata references exists; a rerun succeeds; and what the killed process
//! left behind is unreferenced, and removed by orphan cleanup. `floe expire` and `floe compact` are
//! killed at random moments of their run: the table stays readable, by floe and PyIceberg, at its last
//! committed state.

use std::os::unix::process::ExitStatusExt;

use floe::{At, WriteOptions};
use futures::StreamExt;

use crate::both_backends;
use crate::support::*;

/// The commit points, in order, and whether the swap has landed once the process reaches them.
const POINTS: &[(&str, bool)] = &[
    ("commit.after-data-files", false),
    ("commit.after-manifests", false),
    ("commit.after-manifest-list", false),
    ("commit.after-metadata", false),
    ("commit.after-swap", true),
    ("commit.before-cleanup", true),
];

fn require_failpoints() {
    assert!(
        cfg!(feature = "failpoints") || may_skip_servers(),
        "the crash tests need the `failpoints` feature (the test command builds with it)"
    );
}

/// Rows of the current state of `t`, as floe reads it.
async fn row_count(ctx: &Ctx, t: &floe::TableName) -> usize {
    let batches = ctx
        .floe
        .scan(t, &floe::ScanOptions::default())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    batches.iter().map(|b| b.num_rows()).sum()
}

async fn pyiceberg_rows(ctx: &Ctx, t: &str) -> Option<usize> {
    let out = crate::interop::pyiceberg_read(ctx, t)?;
    Some(out["rows"].as_array().unwrap().len())
}

both_backends!(
    a_kill_at_any_commit_point_leaves_the_old_or_the_new_state,
    |ctx: Ctx| async move {
        require_failpoints();
        if !cfg!(feature = "failpoints") {
            eprintln!("SKIPPED: crash tests without the failpoints feature");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("more.csv"),
            "id,user_id,ts,amount\n100,u9,2024-01-05T00:00:00Z,1.5\n101,u9,2024-01-05T00:00:01Z,2.5\n",
        )
        .unwrap();
        std::fs::write(
            d.join("changes.csv"),
            "id,user_id,ts,amount\n3,u3,2024-01-05T00:00:00Z,99.5\n100,u9,2024-01-05T00:00:01Z,2.5\n",
        )
        .unwrap();
        let ops: &[(&str, &[&str], usize)] = &[
            ("append", &["append", "{t}", "more.csv"], 12),
            (
                "overwrite",
                &["overwrite", "{t}", "more.csv", "--where", "id < 5"],
                7,
            ),
            ("delete", &["delete", "{t}", "--where", "id >= 8"], 8),
            (
                "mor_delete",
                &[
                    "delete",
                    "{t}",
                    "--where",
                    "id >= 8",
                    "--row-mode",
                    "merge-on-read",
                ],
                8,
            ),
            // An update of row 3 and a new row 100: a delete file and a data file (merge-on-read),
            // or the rewritten file and the new one (copy-on-write).
            (
                "mor_upsert",
                &[
                    "upsert",
                    "{t}",
                    "changes.csv",
                    "--key",
                    "id",
                    "--row-mode",
                    "merge-on-read",
                ],
                11,
            ),
            (
                "cow_upsert",
                &[
                    "upsert",
                    "{t}",
                    "changes.csv",
                    "--key",
                    "id",
                    "--row-mode",
                    "copy-on-write",
                ],
                11,
            ),
        ];
        for (op, args, new_rows) in ops {
            for (point, landed) in POINTS {
                let name = format!("{op}_{}", point.replace(['.', '-'], "_"));
                let t = ctx.table(&name);
                ctx.create_events_table(&t, &[]).await;
                ctx.floe
                    .append(&t, stream(vec![events(0..10)]), &WriteOptions::default())
                    .await
                    .unwrap();
                let before = ctx.floe.load_table(&t).await.unwrap();
                let table_arg = t.to_string();
                let argv: Vec<String> = args.iter().map(|a| a.replace("{t}", &table_arg)).collect();
                let out = floe_cmd(d, Some(&ctx))
                    .env("FLOE_CRASH_AT", point)
                    .args(&argv)
                    .output()
                    .unwrap();
                assert_eq!(
                    out.status.signal(),
                    Some(9),
                    "{op} at {point}: killed by SIGKILL ({})",
                    String::from_utf8_lossy(&out.stderr)
                );
                let after = ctx.floe.load_table(&t).await.unwrap();
                let rows = ids(&ctx.floe, &t, At::Current).await.len();
                if *landed {
                    assert_ne!(
                        after.metadata_location(),
                        before.metadata_location(),
                        "{op} at {point}"
                    );
                    assert_eq!(rows, *new_rows, "{op} at {point}: the new state");
                } else {
                    assert_eq!(
                        after.metadata_location(),
                        before.metadata_location(),
                        "{op} at {point}"
                    );
                    assert_eq!(rows, 10, "{op} at {point}: the old state");
                }
                if let Some(n) = pyiceberg_rows(&ctx, &name).await {
                    assert_eq!(n, rows, "{op} at {point}: PyIceberg reads the same state");
                }
                let refs = referenced(&ctx, &t).await;
                for f in &refs {
                    assert!(
                        ctx.floe.storage().exists(f).await.unwrap(),
                        "{op} at {point}: {f} is missing"
                    );
                }
                // What the killed process left behind is unreferenced, and orphan cleanup removes it.
                let report = remove_orphans_now(&ctx, &t).await;
                assert_eq!(
                    stored(&ctx, &t).await,
                    refs,
                    "{op} at {point}: orphans {:?}",
                    report.files
                );
                // A rerun succeeds.
                let out = floe_cmd(d, Some(&ctx)).args(&argv).output().unwrap();
                assert!(
                    out.status.success(),
                    "{op} rerun after {point}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
);

both_backends!(
    a_killed_pipeline_stage_commits_all_of_its_outputs_or_none,
    |ctx: Ctx| async move {
        require_failpoints();
        if !cfg!(feature = "failpoints") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let input = ctx.input_uri(d, "events");
        let g = floe::generate::GenerateOptions::new(2_000, 7);
        floe::generate::generate(ctx.floe.storage(), &input, &g, None)
            .await
            .unwrap();
        let ns = ctx.ns.to_string();
        let ingest = [
            "run",
            "--input",
            &input,
            "--namespace",
            &ns,
            "--engine",
            "datafusion",
            "--stages",
            "ingest",
        ];
        // A first run sets the tables up (tables, geoip, branches), so that the stage's commit is the
        // first one each later run makes.
        let out = floe_cmd(d, Some(&ctx)).args(ingest).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let snapshots = |t: floe::Table| t.snapshots().len();
        for (point, landed) in POINTS {
            let raw_before = snapshots(ctx.floe.load_table(&ctx.table("raw_events")).await.unwrap());
            let rej_before = snapshots(ctx.floe.load_table(&ctx.table("rejected_events")).await.unwrap());
            let out = floe_cmd(d, Some(&ctx))
                .env("FLOE_CRASH_AT", point)
                .args(ingest)
                .arg("--force")
                .output()
                .unwrap();
            assert_eq!(
                out.status.signal(),
                Some(9),
                "ingest at {point}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // The stage's two outputs moved together, or neither did.
            let raw_after = snapshots(ctx.floe.load_table(&ctx.table("raw_events")).await.unwrap());
            let rej_after = snapshots(ctx.floe.load_table(&ctx.table("rejected_events")).await.unwrap());
            let expected = usize::from(*landed);
            assert_eq!(raw_after - raw_before, expected, "ingest at {point}: raw_events");
            assert_eq!(
                rej_after - rej_before,
                expected,
                "ingest at {point}: rejected_events"
            );
            for table in ["raw_events", "rejected_events"] {
                let t = ctx.table(table);
                let refs = referenced(&ctx, &t).await;
                for f in &refs {
                    assert!(
                        ctx.floe.storage().exists(f).await.unwrap(),
                        "{point}: {f} is missing"
                    );
                }
                // PyIceberg reads the state floe reads (one table is enough: the two moved together).
                if table == "raw_events" {
                    if let Some(n) = pyiceberg_rows(&ctx, table).await {
                        assert_eq!(
                            n,
                            row_count(&ctx, &t).await,
                            "ingest at {point}: {table} in PyIceberg"
                        );
                    }
                }
                // What the killed run left behind is unreferenced, and orphan cleanup removes it.
                let report = remove_orphans_now(&ctx, &t).await;
                assert_eq!(
                    stored(&ctx, &t).await,
                    refs,
                    "ingest at {point}: {table} orphans {:?}",
                    report.files
                );
            }
        }
        // A rerun completes the stage, and publishes.
        let out = floe_cmd(d, Some(&ctx))
            .args(ingest)
            .arg("--force")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
);

/// A small deterministic generator for kill delays; the seed is printed so a failure can be replayed
/// with `FLOE_TEST_KILL_SEED`.
struct Delays(u64);

impl Delays {
    fn from_env_or_clock() -> Self {
        let seed = std::env::var("FLOE_TEST_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("kill delays from FLOE_TEST_KILL_SEED={seed}");
        Delays(seed | 1)
    }

    /// A delay in `[0, max)`.
    fn next(&mut self, max: std::time::Duration) -> std::time::Duration {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        max.mul_f64((r >> 11) as f64 / (1u64 << 53) as f64)
    }
}

both_backends!(
    a_kill_of_expire_or_compact_at_a_random_moment_leaves_the_table_readable,
    |ctx: Ctx| async move {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let t = ctx.table("kept");
        ctx.create_events_table(&t, &[]).await;
        let table_arg = t.to_string();
        let mut next_id = 0i64;
        let mut append_some = |n: usize| {
            let batches: Vec<_> = (0..n)
                .map(|_| {
                    next_id += 3;
                    events(next_id - 3..next_id)
                })
                .collect();
            (batches, next_id)
        };
        let commands: [(&str, Vec<String>); 2] = [
            (
                "expire",
                ["expire", &table_arg, "--older-than", "0s", "--retain-last", "2"]
                    .map(String::from)
                    .to_vec(),
            ),
            (
                "compact",
                [
                    "compact",
                    &table_arg,
                    "--target-file-size",
                    "64MB",
                    "--min-file-size",
                    "32MB",
                ]
                .map(String::from)
                .to_vec(),
            ),
        ];
        let mut delays = Delays::from_env_or_clock();
        // How long each command runs when it is not killed, so the kills fall over its whole life.
        let mut lifetime = std::collections::HashMap::new();
        for (name, argv) in &commands {
            let (batches, _) = append_some(8);
            for b in batches {
                ctx.floe
                    .append(&t, stream(vec![b]), &WriteOptions::default())
                    .await
                    .unwrap();
            }
            let started = std::time::Instant::now();
            let out = floe_cmd(d, Some(&ctx)).args(argv).output().unwrap();
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            lifetime.insert(*name, started.elapsed());
        }
        let rounds = 5;
        let mut hit_running = 0;
        for round in 0..rounds {
            for (name, argv) in &commands {
                let round_started = std::time::Instant::now();
                // New snapshots and small files, so that each command has work to do.
                let (batches, last_id) = append_some(3);
                for b in batches {
                    ctx.floe
                        .append(&t, stream(vec![b]), &WriteOptions::default())
                        .await
                        .unwrap();
                }
                let before = ctx.floe.load_table(&t).await.unwrap();
                let delay = delays.next(lifetime[name].mul_f64(0.8));
                let mut child = floe_cmd(d, Some(&ctx))
                    .args(argv)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                tokio::time::sleep(delay).await;
                let running = child.try_wait().unwrap().is_none();
                child.kill().unwrap();
                let status = child.wait().unwrap();
                if running {
                    hit_running += 1;
                    // It may also have finished between the check and the kill.
                    assert!(
                        status.signal() == Some(9) || status.success(),
                        "{name} round {round}: {status:?}"
                    );
                } else {
                    assert!(status.success(), "{name} round {round}: {status:?}");
                }
                // The table is at its last committed state: the one before the command or the one
                // the command committed, with every row, every referenced file present.
                let after = ctx.floe.load_table(&t).await.unwrap();
                let what = format!(
                    "{name} round {round}, killed after {delay:?} ({})",
                    if running { "running" } else { "already done" }
                );
                let expected: Vec<i64> = (0..last_id).collect();
                assert_eq!(ids(&ctx.floe, &t, At::Current).await, expected, "{what}");
                if after.metadata_location() != before.metadata_location() {
                    assert!(
                        after.current_snapshot().is_some(),
                        "{what}: the new state has a current snapshot"
                    );
                }
                let storage = ctx.floe.storage();
                let missing: Vec<String> = futures::stream::iter(referenced(&ctx, &t).await)
                    .map(|f| async move { (!storage.exists(&f).await.unwrap()).then_some(f) })
                    .buffer_unordered(16)
                    .filter_map(|f| async move { f })
                    .collect()
                    .await;
                assert!(missing.is_empty(), "{what}: missing {missing:?}");
                // Time travel to the oldest snapshot kept works (every file of every snapshot was
                // checked above).
                if let Some(oldest) = after.snapshots().first() {
                    let at = ids(&ctx.floe, &t, At::Snapshot(oldest.snapshot_id())).await;
                    assert!(
                        at.len() <= expected.len(),
                        "{what}: snapshot {} reads",
                        oldest.snapshot_id()
                    );
                }
                let checked = std::time::Instant::now();
                // PyIceberg takes seconds to start: it reads every other round's state.
                if round % 2 == 1 {
                    if let Some(n) = pyiceberg_rows(&ctx, "kept").await {
                        assert_eq!(n, expected.len(), "{what}: PyIceberg reads every committed row");
                    }
                }
                eprintln!(
                    "{what}: checked in {:?} (PyIceberg {:?})",
                    round_started.elapsed(),
                    checked.elapsed()
                );
            }
        }
        eprintln!(
            "{:?}: {hit_running} of {} kills hit a running command (lifetimes {lifetime:?})",
            ctx.backend,
            rounds * commands.len()
        );
        assert!(
            hit_running * 3 >= rounds * commands.len(),
            "too few kills hit a running command: {hit_running}"
        );
        // Finished unkilled, then orphan cleanup: storage holds exactly what the metadata references.
        for (name, argv) in &commands {
            let out = floe_cmd(d, Some(&ctx)).args(argv).output().unwrap();
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        remove_orphans_now(&ctx, &t).await;
        assert_eq!(stored(&ctx, &t).await, referenced(&ctx, &t).await);
        assert_eq!(
            ids(&ctx.floe, &t, At::Current).await,
            (0..next_id).collect::<Vec<_>>()
        );
    }
);
