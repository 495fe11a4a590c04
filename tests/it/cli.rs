//! The `floe` binary, run for real: a session that creates, writes and reads a table on both
//! backends; errors as one line and a non-zero exit; configuration precedence.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::both_backends;
use crate::support::*;

fn run(dir: &Path, ctx: Option<&Ctx>, args: &[&str]) -> Output {
    floe_cmd(dir, ctx).args(args).output().expect("run floe")
}

fn ok(dir: &Path, ctx: Option<&Ctx>, args: &[&str]) -> String {
    let out = run(dir, ctx, args);
    assert!(
        out.status.success(),
        "floe {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(dir: &Path, ctx: Option<&Ctx>, args: &[&str]) -> String {
    let out = run(dir, ctx, args);
    assert!(!out.status.success(), "floe {args:?} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line on stderr: {err}");
    assert!(err.starts_with("floe: error: "), "{err}");
    err
}

both_backends!(cli_session, |ctx: Ctx| async move {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Some(&ctx);
    let ns = ctx.ns.to_string();
    let table = format!("{ns}.clicks");
    ok(d, c, &["init"]);
    assert!(ok(d, c, &["namespaces"]).lines().any(|l| l == ns));
    ok(
        d,
        c,
        &[
            "create",
            &table,
            "--schema",
            "id long not null, page string, ts timestamptz, price decimal(12,2)",
            "--partition",
            "day(ts)",
            "--property",
            "owner=cli",
        ],
    );
    assert!(ok(d, c, &["tables", &ns]).contains(&table));
    std::fs::write(
        d.join("a.csv"),
        "id,page,ts,price\n1,/home,2024-03-01T10:00:00Z,\n2,\"/a,b\",2024-03-01T11:00:00Z,9.99\n3,/c,2024-03-02T00:00:00Z,1.00\n",
    )
    .unwrap();
    let out = ok(d, c, &["append", &table, "a.csv", "--property", "source=a.csv"]);
    assert!(out.contains("+3 rows"), "{out}");
    let rows: Value = serde_json::from_str(&ok(d, c, &["scan", &table, "--format", "json"])).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["page"] == "/a,b" && r["price"].as_f64() == Some(9.99)),
        "{rows}"
    );
    let snaps: Value = serde_json::from_str(&ok(d, c, &["snapshots", &table, "--format", "json"])).unwrap();
    let first = snaps[0]["snapshot_id"].as_i64().unwrap();
    assert_eq!(snaps[0]["operation"], "append");
    assert_eq!(snaps[0]["summary"]["source"], "a.csv");

    ok(d, c, &["tag", "create", &table, "v1"]);
    ok(d, c, &["branch", "create", &table, "dev"]);
    std::fs::write(
        d.join("b.csv"),
        "id,page,ts,price\n4,/d,2024-03-03T00:00:00Z,2.50\n",
    )
    .unwrap();
    ok(d, c, &["append", &table, "b.csv", "--branch", "dev"]);
    assert_eq!(
        ok(d, c, &["scan", &format!("{table}@dev"), "--format", "csv"])
            .lines()
            .count(),
        5
    );
    assert_eq!(ok(d, c, &["scan", &table, "--format", "csv"]).lines().count(), 4);
    ok(d, c, &["publish", &table, "dev"]);
    assert_eq!(
        ok(
            d,
            c,
            &[
                "scan",
                &table,
                "--format",
                "csv",
                "--where",
                "id >= 2",
                "--columns",
                "id"
            ]
        )
        .lines()
        .count(),
        4
    );
    ok(d, c, &["delete", &table, "--where", "id = 1"]);
    let changes = ok(d, c, &["changes", &table, &first.to_string()]);
    // Since the first snapshot: dev's row 4 arrived, and the 2024-03-01 file (ids 1, 2) was
    // rewritten without id 1.
    assert!(
        changes.contains("+2 rows in 2 files, -2 rows in 1 files"),
        "{changes}"
    );
    ok(d, c, &["rollback", &table, &first.to_string()]);
    assert_eq!(
        ok(d, c, &["scan", &format!("{table}@v1"), "--format", "csv"])
            .lines()
            .count(),
        4
    );
    assert_eq!(
        ok(d, c, &["scan", &table, "--limit", "2", "--format", "csv"])
            .lines()
            .count(),
        3
    );
    let show = ok(d, c, &["show", &table]);
    for want in ["schema", "partition spec", "owner", "dev", "v1", "rows       3"] {
        assert!(show.contains(want), "show lacks {want}: {show}");
    }
    ok(d, c, &["add-column", &table, "referrer", "string"]);
    ok(d, c, &["branch", "drop", &table, "dev"]);
    fails(d, c, &["tag", "drop", &table, "dev"]);

    // Errors: one line, non-zero exit, no panic.
    fails(d, c, &["scan", &format!("{ns}.nope")]);
    fails(d, c, &["scan", &format!("{table}@no-such-ref")]);
    fails(d, c, &["create", &format!("{ns}.a/b"), "--schema", "id long"]);
    fails(d, c, &["append", &table, "missing.csv"]);
    std::fs::write(
        d.join("bad.csv"),
        "id,page,ts,price\nnot-a-number,/x,2024-03-03T00:00:00Z,1\n",
    )
    .unwrap();
    fails(d, c, &["append", &table, "bad.csv"]);
    fails(d, c, &["rollback", &table, "12345"]);
    fails(d, c, &["delete", &table, "--where", "nope = 1"]);
    ok(d, c, &["drop", &table, "--purge"]);
    fails(d, c, &["show", &table]);
});

#[test]
fn cli_defaults_and_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Nothing set: SQLite and a warehouse under ./floe-data.
    let out = ok(d, None, &["init"]);
    assert!(out.contains("sqlite:./floe-data/catalog.db"), "{out}");
    assert!(
        out.contains(&format!(
            "file://{}/floe-data/warehouse",
            d.canonicalize().unwrap().display()
        )),
        "{out}"
    );
    assert!(d.join("floe-data/catalog.db").exists());
    // floe.toml < environment < flags.
    std::fs::write(
        d.join("floe.toml"),
        "warehouse = './from-file'\ncatalog_name = 'file'\n",
    )
    .unwrap();
    assert!(ok(d, None, &["init"]).contains("/from-file"));
    let out = floe_cmd(d, None)
        .env("FLOE_WAREHOUSE", "./from-env")
        .arg("init")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("/from-env"));
    let out = floe_cmd(d, None)
        .env("FLOE_WAREHOUSE", "./from-env")
        .args(["init", "--warehouse", "./from-flag"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("/from-flag"));
    // A bad config file is one clear line.
    std::fs::write(d.join("floe.toml"), "warehous = 'typo'\n").unwrap();
    let err = fails(d, None, &["namespaces"]);
    assert!(err.contains("floe.toml"), "{err}");
    // An unreachable catalog, password masked.
    std::fs::remove_file(d.join("floe.toml")).unwrap();
    let err = fails(
        d,
        None,
        &[
            "namespaces",
            "--catalog-url",
            "postgres://u:topsecretpw@127.0.0.1:1/x",
        ],
    );
    assert!(!err.contains("topsecretpw"), "{err}");
}

both_backends!(cli_generate_is_deterministic, |ctx: Ctx| async move {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Some(&ctx);
    // Into the backend's store: a local directory, or a prefix of the S3 bucket.
    let base = match ctx.backend {
        Backend::SqliteLocal => d.join("gen").display().to_string(),
        Backend::PostgresS3 => format!("{}/gen", ctx.floe.warehouse().uri()),
    };
    for run in ["a", "b"] {
        let out = ok(
            d,
            c,
            &[
                "generate",
                "--events",
                "3000",
                "--files",
                "2",
                "--seed",
                "9",
                "--out",
                &format!("{base}/{run}"),
            ],
        );
        assert!(out.contains("3000 events"), "{out}");
    }
    let storage = ctx.floe.storage();
    let uri = |run: &str, i: usize| {
        let root = floe::storage::Warehouse::parse(&format!("{base}/{run}"))
            .unwrap()
            .uri();
        format!("{root}/events-{i:05}.csv")
    };
    for i in 0..2 {
        let a = storage.read(&uri("a", i)).await.unwrap();
        let b = storage.read(&uri("b", i)).await.unwrap();
        assert!(a.len() > 10_000);
        assert_eq!(a, b, "file {i} differs between runs with the same seed");
    }
    ok(
        d,
        c,
        &[
            "generate",
            "--events",
            "3000",
            "--files",
            "2",
            "--seed",
            "10",
            "--out",
            &format!("{base}/c"),
        ],
    );
    assert_ne!(
        storage.read(&uri("a", 0)).await.unwrap(),
        storage.read(&uri("c", 0)).await.unwrap()
    );
    fails(
        d,
        c,
        &["generate", "--events", "10", "--format", "xml", "--out", &base],
    );
    fails(d, c, &["generate", "--size", "ten", "--out", &base]);
});

#[test]
fn cli_run_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, None, &["generate", "--events", "2000", "--out", "events"]);
    let out = ok(d, None, &["run", "--input", "events", "--engine", "duckdb"]);
    assert!(out.contains("duckdb: input 2000 = clean"), "{out}");
    assert!(out.contains(": holds"), "{out}");
    let again = ok(
        d,
        None,
        &[
            "run", "--input", "events", "--engine", "duckdb", "--format", "json",
        ],
    );
    let report: Value = serde_json::from_str(&again).unwrap();
    assert!(
        report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "reused"),
        "{report}"
    );
    let runs: Value = serde_json::from_str(&ok(d, None, &["runs", "--format", "json"])).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 10);
    let sessions = ok(
        d,
        None,
        &["scan", "clickstream.sessions", "--limit", "3", "--format", "csv"],
    );
    assert_eq!(sessions.lines().count(), 4);
    ok(
        d,
        None,
        &[
            "run",
            "--input",
            "events",
            "--engine",
            "auto",
            "--stages",
            "aggregate",
        ],
    );
    fails(d, None, &["run", "--input", "nope.csv"]);
    fails(d, None, &["run", "--input", "events", "--engine", "spark"]);
    fails(
        d,
        None,
        &["run", "--input", "events", "--stages", "ingest,dedupe"],
    );
}

#[test]
fn cli_demo_runs_twice_and_sql_reads_its_tables() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let first = ok(d, None, &["demo", "--events", "4000"]);
    assert!(
        first.contains("both engines produced the same tables; main is published"),
        "{first}"
    );
    assert!(first.contains("-- The funnel"), "{first}");
    let second = ok(d, None, &["demo", "--events", "4000"]);
    assert!(second.contains("reusing the generated input"), "{second}");
    assert!(second.contains("main is published"), "{second}");
    let out = ok(
        d,
        None,
        &[
            "sql",
            "SELECT count(*) AS n FROM clickstream.sessions",
            "--format",
            "csv",
        ],
    );
    assert_eq!(out.lines().count(), 2, "{out}");
    let tags = ok(
        d,
        None,
        &[
            "sql",
            r#"SELECT name FROM "clickstream.sessions$refs" WHERE kind = 'tag'"#,
            "--format",
            "csv",
        ],
    );
    assert_eq!(
        tags.lines().filter(|l| l.starts_with("verified-")).count(),
        2,
        "{tags}"
    );
    let pq = d.join("out.parquet");
    ok(
        d,
        None,
        &[
            "sql",
            "SELECT * FROM clickstream.daily_metrics",
            "--format",
            "parquet",
            "--out",
            pq.to_str().unwrap(),
        ],
    );
    assert!(std::fs::metadata(&pq).unwrap().len() > 0);
    fails(d, None, &["sql", "SELECT * FROM nowhere.nothing"]);
}

#[test]
fn cli_output_behaves_in_pipes_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, None, &["init"]);
    ok(d, None, &["namespace", "create", "pipes"]);
    ok(d, None, &["create", "pipes.t", "--schema", "id long not null"]);
    for i in 0..3 {
        std::fs::write(d.join("a.csv"), format!("id\n{i}\n")).unwrap();
        ok(d, None, &["append", "pipes.t", "a.csv"]);
    }
    // CSV output has a header row.
    let csv = ok(d, None, &["snapshots", "pipes.t", "--format", "csv"]);
    assert_eq!(
        csv.lines().next(),
        Some("snapshot_id,parent_id,timestamp,operation,summary,refs"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 4, "{csv}");
    // A reader that goes away (`floe snapshots | head -0`) is no panic and no exit 101.
    let mut child = floe_cmd(d, None)
        .args(["snapshots", "pipes.t"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Logs written to a file or a pipe carry no colour codes.
    let out = floe_cmd(d, None)
        .env("FLOE_LOG", "debug")
        .args(["snapshots", "pipes.t"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("DEBUG"), "debug logging is on: {log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a piped log: {log}");
    // `--help` names the environment variables without printing their values.
    let out = floe_cmd(d, None)
        .env("FLOE_CATALOG_URL", "postgres://u:canary-pw@127.0.0.1:1/x")
        .env("FLOE_CONFIG", "")
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("[env: FLOE_CATALOG_URL]"), "{help}");
    assert!(help.contains("[env: FLOE_CONFIG]"), "{help}");
    assert!(!help.contains("canary-pw") && !help.contains("=]"), "{help}");
}
