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

both_backends!(
    cli_files_map_by_header_name_and_what_does_not_fit_commits_nothing,
    |ctx: Ctx| async move {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let c = Some(&ctx);
        let table = format!("{}.by_name", ctx.ns);
        ok(d, c, &["init"]);
        ok(d, c, &["create", &table, "--schema", "id long not null, w long"]);
        let snapshots = |d: &Path| -> usize {
            let out = ok(d, c, &["snapshots", &table, "--format", "json"]);
            serde_json::from_str::<Value>(&out)
                .unwrap()
                .as_array()
                .unwrap()
                .len()
        };
        let rows = |d: &Path| -> Vec<(i64, Option<i64>)> {
            let out = ok(d, c, &["scan", &table, "--format", "json"]);
            let mut rows: Vec<(i64, Option<i64>)> = serde_json::from_str::<Value>(&out)
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r["id"].as_i64().unwrap(), r["w"].as_i64()))
                .collect();
            rows.sort();
            rows
        };

        // A header in another order than the table's fills the columns by name.
        std::fs::write(d.join("w_id.csv"), "w,id\n100,5\n").unwrap();
        ok(d, c, &["append", &table, "w_id.csv"]);
        assert_eq!(rows(d), vec![(5, Some(100))]);

        // What does not fit is one clear line, and nothing is committed.
        let refused = [
            ("unknown.csv", "foo,bar\n1,2\n", "\"foo\" is not in the table"),
            ("twice.csv", "id,id\n1,2\n", "\"id\" appears twice"),
            ("missing.csv", "w\n7\n", "required column \"id\" is missing"),
            ("extra.csv", "id,w,note\n6,60,x\n", "\"note\" is not in the table"),
            ("empty.csv", "", "needs a header line"),
            ("empty.parquet", "", "empty.parquet"),
            ("text.parquet", "id,w\n1,2\n", "text.parquet"),
        ];
        for (file, text, why) in refused {
            std::fs::write(d.join(file), text).unwrap();
            let err = fails(d, c, &["append", &table, file]);
            assert!(err.contains(why), "{file}: {err}");
        }
        std::fs::create_dir(d.join("dir.csv")).unwrap();
        let err = fails(d, c, &["append", &table, "dir.csv"]);
        assert!(err.contains("is a directory"), "{err}");
        assert_eq!(snapshots(d), 1, "a refused file commits nothing");

        // A header alone appends no rows: no snapshot, and the output says so.
        std::fs::write(d.join("header_only.csv"), "id,w\n").unwrap();
        let out = ok(d, c, &["append", &table, "header_only.csv"]);
        assert!(out.contains("no snapshot was created"), "{out}");
        assert_eq!(snapshots(d), 1);

        // Extra columns only when asked for, and then dropped.
        ok(d, c, &["append", &table, "extra.csv", "--allow-extra-columns"]);
        assert_eq!(rows(d), vec![(5, Some(100)), (6, Some(60))]);
        assert_eq!(snapshots(d), 2);

        // The catalog pointing at a metadata file that is gone: `floe sql` names the file, not
        // "table does not exist".
        let name = floe::TableName::parse(&table).unwrap();
        let location = ctx
            .floe
            .load_table(&name)
            .await
            .unwrap()
            .metadata_location()
            .to_string();
        ctx.floe.storage().delete(&location).await.unwrap();
        let err = fails(d, c, &["sql", &format!("SELECT count(*) FROM {table}")]);
        assert!(err.contains(&location) && err.contains("missing"), "{err}");
        assert!(!err.contains("does not exist"), "{err}");
    }
);

/// The binary finds DuckDB's library without `LD_LIBRARY_PATH` (a run path when it links the
/// prebuilt `libduckdb.so`; nothing to find when DuckDB is bundled).
#[test]
fn the_binary_runs_without_ld_library_path() {
    let dir = tempfile::tempdir().unwrap();
    let floe = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_floe"))
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "{args:?}: exit {:?}: {stderr}",
            out.status.code()
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    floe(&["init"]);
    let out = floe(&["sql", "SELECT 40 + 2 AS answer", "--format", "csv"]);
    assert!(out.contains("42"), "{out}");
}

/// `--no-default-features` links the prebuilt DuckDB: nothing turns on `libduckdb-sys`'s `bundled`
/// (which compiles DuckDB's C++), while the default features do.
#[test]
fn duckdb_is_compiled_from_source_only_under_the_bundled_feature() {
    let tree = |extra: &[&str]| -> String {
        let out = std::process::Command::new(env!("CARGO"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["tree", "--offline", "-e", "features", "-i", "libduckdb-sys"])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let bundled = "libduckdb-sys feature \"bundled\"";
    let prebuilt = tree(&["--no-default-features"]);
    assert!(prebuilt.contains("libduckdb-sys v"), "{prebuilt}");
    assert!(!prebuilt.contains(bundled), "{prebuilt}");
    assert!(tree(&[]).contains(bundled), "the default build bundles DuckDB");
}

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
    // An unreachable catalog: the password masked, in the user info or as a query parameter.
    std::fs::remove_file(d.join("floe.toml")).unwrap();
    for (url, password) in [
        ("postgres://u:topsecretpw@127.0.0.1:1/x", "topsecretpw"),
        (
            "postgres://u@127.0.0.1:1/x?sslmode=disable&password=querysecretpw",
            "querysecretpw",
        ),
    ] {
        let err = fails(d, None, &["namespaces", "--catalog-url", url]);
        assert!(!err.contains(password), "{err}");
    }
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

/// A stage that runs shows a spinner with its name and elapsed time on a terminal, then one line
/// with its outcome; written to a pipe, only the outcome lines.
#[test]
fn cli_run_shows_each_stage_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, None, &["init"]);
    ok(d, None, &["generate", "--events", "2000", "--out", "in"]);
    let args = "run --input in --engine duckdb --stages ingest,cleanse";
    // On a terminal (`script` gives the run one).
    let out = clean_cmd("script", d)
        .args([
            "-qec",
            &format!("{} {args}", env!("CARGO_BIN_EXE_floe")),
            "/dev/null",
        ])
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    for stage in ["ingest", "cleanse"] {
        assert!(
            tty.contains(&format!("{stage} on duckdb (")),
            "no spinner for {stage}: {tty}"
        );
        assert!(tty.contains(&format!("{stage} on duckdb: succeeded")), "{tty}");
    }
    // On a pipe: the outcome lines without the spinner's redraws.
    let out = run(
        d,
        None,
        &[
            "run",
            "--input",
            "in",
            "--engine",
            "duckdb",
            "--stages",
            "ingest,cleanse",
            "--force",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("ingest on duckdb: succeeded"), "{err}");
    assert!(
        !err.contains("ingest on duckdb (") && !err.contains('\u{1b}'),
        "{err}"
    );
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
        Some("snapshot_id,parent_id,committed_at,operation,summary,refs"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 4, "{csv}");
    // Tables for people are one style, the box `show` prints, for every command.
    for args in [
        &["snapshots", "pipes.t"][..],
        &["scan", "pipes.t"],
        &["sql", "SELECT id FROM pipes.t"],
    ] {
        let table = ok(d, None, args);
        assert!(table.contains('│') && !table.contains("+--"), "{args:?}: {table}");
    }
    // A reader that goes away (`floe snapshots | head -0`) ends the command quietly with exit 0,
    // whatever it prints and in every format.
    for args in [
        &["snapshots", "pipes.t"][..],
        &["show", "pipes.t"],
        &["scan", "pipes.t"],
        &["scan", "pipes.t", "--format", "csv"],
        &["scan", "pipes.t", "--format", "json"],
        &["sql", "SELECT * FROM pipes.t"],
        &["changes", "pipes.t", "main"],
    ] {
        let mut child = floe_cmd(d, None)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    // Logs written to a file or a pipe carry no colour codes.
    let out = floe_cmd(d, None)
        .env("FLOE_LOG", "debug")
        .args(["snapshots", "pipes.t"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("DEBUG"), "debug logging is on: {log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a piped log: {log}");
    let file = d.join("floe.log");
    let out = floe_cmd(d, None)
        .env("FLOE_LOG", "debug")
        .args(["snapshots", "pipes.t"])
        .stderr(std::fs::File::create(&file).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = std::fs::read_to_string(&file).unwrap();
    assert!(log.contains("DEBUG"), "debug logging is on: {log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a log file: {log}");
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
