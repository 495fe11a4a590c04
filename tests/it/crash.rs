//! Crashes at every commit point: `floe append`, `overwrite`, `delete` and a pipeline stage are
//! killed with SIGKILL (`FLOE_CRASH_AT`, built in with the `failpoints` feature) after the data files,
//! the manifests, the manifest list, the metadata JSON, the catalog swap, and before cleanup. After
//! each kill the table loads in floe and in PyIceberg at the old or the new snapshot, never in
//! between; every file the metadata references exists; a rerun succeeds; and what the killed process
//! left behind is unreferenced, and removed by orphan cleanup.

use std::os::unix::process::ExitStatusExt;

use floe::{At, CommitOptions};

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
        let ops: &[(&str, &[&str], usize)] = &[
            ("append", &["append", "{t}", "more.csv"], 12),
            (
                "overwrite",
                &["overwrite", "{t}", "more.csv", "--where", "id < 5"],
                7,
            ),
            ("delete", &["delete", "{t}", "--where", "id >= 8"], 8),
        ];
        for (op, args, new_rows) in ops {
            for (point, landed) in POINTS {
                let name = format!("{op}_{}", point.replace(['.', '-'], "_"));
                let t = ctx.table(&name);
                ctx.create_events_table(&t, &[]).await;
                ctx.floe
                    .append(&t, stream(vec![events(0..10)]), &CommitOptions::default())
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
                let report = ctx
                    .floe
                    .remove_orphan_files(
                        &t,
                        &floe::maintenance::OrphanOptions {
                            older_than: Some(std::time::Duration::ZERO),
                            dry_run: false,
                        },
                    )
                    .await
                    .unwrap();
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
                for f in referenced(&ctx, &ctx.table(table)).await {
                    assert!(
                        ctx.floe.storage().exists(&f).await.unwrap(),
                        "{point}: {f} is missing"
                    );
                }
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
