//! The clickstream pipeline on hand-written edge cases with hand-computed outputs, on both backends:
//! sessions split just over 30 minutes and kept at exactly 30, duplicates with equal times, addresses at
//! geoip range boundaries, an offset crossing midnight, a quoted CSV field with a newline, invalid
//! UTF-8, every reject reason; reuse of identical runs; a failing input that commits nothing.

use std::sync::Arc;

use arrow::util::display::array_value_to_string;
use floe::pipeline::Engine;
use floe::pipeline::{DataFusionEngine, DuckDbEngine, RunOptions, Stage};
use floe::{At, ErrorKind, Namespace, ScanOptions};

use crate::both_backends;
use crate::support::*;

const HEADER: &str = "event_id,user_id,event_time,event_type,url,referrer,ip,user_agent,revenue\n";

/// 15 records: 7 clean, 2 malformed at ingest, 6 rejected at cleanse.
pub(crate) fn edge_csv() -> Vec<u8> {
    let mut b = HEADER.as_bytes().to_vec();
    let lines: [&[u8]; 15] = [
        b"e1,u1,2024-03-01T10:00:00Z,page_view,/home,,1.0.0.0,UA,\n",
        b"e2,u1,2024-03-01T10:30:00Z,click,/p1,,1.0.0.0,UA,\n",
        b"e3,u1,2024-03-01T11:00:00.000001Z,purchase,/checkout,,1.0.0.0,UA,10.50\n",
        b"e4,u2,2024-03-01T23:50:00-01:00,page_view,/home,,1.0.31.255,UA,\n",
        b"e5,u2,2024-03-02T01:10:00Z,add_to_cart,/p2,,1.0.32.0,\"Mozilla, \"\"quoted\"\"\nline2\",\n",
        b"e6,u3,2024-03-02T05:00:00Z, Page_View ,/about,,0.0.0.1,UA,\n",
        b"e6,u3,2024-03-02T05:00:00Z,page_view,/about,,0.0.0.1,UA,\n",
        b"e8,u1,2024-03-01T12:00:00Z,page_view,/caf\xe9,,1.0.0.0,UA,\n",
        b"\"  \",u4,2024-03-02T06:00:00Z,page_view,,,,,\n",
        b"e10,,2024-03-02T06:00:00Z,page_view,,,,,\n",
        b"e11,u4,2024-03-02 06:00:00,page_view,,,,,\n",
        b"e12,u4,2024-03-02T06:00:00Z,purchased,,,,,\n",
        b"e13,u4,2024-03-02T06:00:00Z,purchase,,,,,1.234\n",
        b"e14,u4,only,four\n",
        b"e15,u5,2024-03-02T07:00:00Z,page_view,/x,,300.1.2.3,,\n",
    ];
    for l in lines {
        b.extend_from_slice(l);
    }
    b
}

/// Rows of `columns` of a table, each cell as text, sorted.
async fn rows(ctx: &Ctx, ns: &Namespace, table: &str, columns: &[&str]) -> Vec<Vec<String>> {
    rows_at(ctx, ns, table, columns, At::Current).await
}

/// Rows of `columns` of a table at `at`, each cell as text, sorted.
async fn rows_at(ctx: &Ctx, ns: &Namespace, table: &str, columns: &[&str], at: At) -> Vec<Vec<String>> {
    let options = ScanOptions {
        at: Some(at),
        columns: Some(columns.iter().map(|c| c.to_string()).collect()),
        ..Default::default()
    };
    let name = floe::TableName::new(ns.clone(), table).unwrap();
    let batches = ctx
        .floe
        .scan(&name, &options)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut out = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            out.push(
                (0..b.num_columns())
                    .map(|c| array_value_to_string(b.column(c), i).unwrap())
                    .collect(),
            );
        }
    }
    out.sort();
    out
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// The edge cases through one engine, in a namespace of its own.
async fn edge_cases(ctx: &Ctx, engine: Arc<dyn Engine>, dir: &std::path::Path) {
    let ns = Namespace::parse(&format!("{}_{}", ctx.ns, engine.name())).unwrap();
    let input = match ctx.backend {
        Backend::SqliteLocal => {
            let p = dir.join(format!("edge-{}.csv", engine.name()));
            std::fs::write(&p, edge_csv()).unwrap();
            p.display().to_string()
        }
        Backend::PostgresS3 => {
            let uri = format!("{}/input-{}/edge.csv", ctx.floe.warehouse().uri(), engine.name());
            ctx.floe.storage().write(&uri, edge_csv().into()).await.unwrap();
            uri
        }
    };
    let mut options = RunOptions::new(ns.clone(), Some(input.clone()), vec![engine.clone()]);
    // The progress callback hears every stage start and end, in order.
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = heard.clone();
    options.progress = Some(Arc::new(move |stage, branch, report| {
        log.lock().unwrap().push(format!(
            "{stage} {branch} {}",
            if report.is_some() { "ended" } else { "started" }
        ));
    }));
    let report = floe::pipeline::run(&ctx.floe, &options).await.unwrap();
    assert!(
        report.stages.iter().all(|s| s.status == "succeeded"),
        "{report:?}"
    );
    let expected: Vec<String> = ["ingest", "cleanse", "enrich", "sessionize", "aggregate"]
        .iter()
        .flat_map(|s| ["started", "ended"].map(|e| format!("{s} {} {e}", engine.name())))
        .collect();
    assert_eq!(*heard.lock().unwrap(), expected);
    options.progress = None;
    // Each stage says where its time went: the phases are consecutive parts of its wall time (the
    // ledger's `record` comes after it is taken). Files DuckDB wrote itself are described.
    for s in &report.stages {
        let phases: Vec<&str> = s.phase_seconds.keys().map(String::as_str).collect();
        let mut expected = vec!["check", "commit", "engine", "pin", "record"];
        if s.phase_seconds.contains_key("describe") {
            assert_eq!(engine.name(), "duckdb", "{} on {}", s.stage, engine.name());
            expected.insert(2, "describe");
        }
        assert_eq!(phases, expected, "{} on {}", s.stage, engine.name());
        let sum: f64 = s
            .phase_seconds
            .iter()
            .filter(|(p, _)| *p != "record")
            .map(|(_, t)| t)
            .sum();
        assert!(
            sum <= s.seconds * 1.01 + 0.01 && sum >= s.seconds * 0.8 - 0.05,
            "phases {:?} against {} s",
            s.phase_seconds,
            s.seconds
        );
    }
    let ingest = &report.stages[0];
    assert_eq!(ingest.rows_in, 15);
    assert_eq!(ingest.rows_out["raw_events"], 13);
    assert_eq!(ingest.rejects["malformed_record"], 2);
    let cleanse = &report.stages[1];
    assert_eq!(cleanse.rows_out["clean_events"], 7);
    let expect_rejects: Vec<(&str, u64)> = vec![
        ("bad_event_time", 1),
        ("bad_event_type", 1),
        ("bad_revenue", 1),
        ("duplicate_event_id", 1),
        ("missing_event_id", 1),
        ("missing_user_id", 1),
    ];
    assert_eq!(
        cleanse
            .rejects
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect::<Vec<_>>(),
        expect_rejects
    );

    // Every input record is in exactly one place, with its reason and position.
    let rejected = rows(ctx, &ns, "rejected_events", &["source_line", "stage", "reason"]).await;
    let expected: Vec<Vec<String>> = vec![
        s(&["11", "cleanse", "bad_event_time"]),
        s(&["12", "cleanse", "bad_event_type"]),
        s(&["13", "cleanse", "bad_revenue"]),
        s(&["14", "ingest", "malformed_record"]),
        s(&["7", "cleanse", "duplicate_event_id"]),
        s(&["8", "ingest", "malformed_record"]),
        s(&["9", "cleanse", "missing_event_id"]),
        s(&["10", "cleanse", "missing_user_id"]),
    ];
    let mut expected = expected;
    expected.sort();
    assert_eq!(rejected, expected);
    let malformed = rows(ctx, &ns, "rejected_events", &["source_line", "record"]).await;
    assert!(malformed.contains(&s(&[
        "8",
        "e8,u1,2024-03-01T12:00:00Z,page_view,/caf\u{FFFD},,1.0.0.0,UA,"
    ])));
    assert!(malformed
        .iter()
        .any(|r| r[0] == "10" && r[1].starts_with("{\"event_id\":\"e10\",\"user_id\":\"\"")));

    // Cleansed and enriched: trimmed and typed, the offset crossing midnight, range boundaries.
    let enriched = rows(
        ctx,
        &ns,
        "enriched_events",
        &[
            "event_id",
            "event_time",
            "event_type",
            "ip",
            "country_code",
            "source_line",
        ],
    )
    .await;
    assert_eq!(
        enriched,
        vec![
            s(&["e1", "2024-03-01T10:00:00Z", "page_view", "1.0.0.0", "DE", "1"]),
            s(&[
                "e15",
                "2024-03-02T07:00:00Z",
                "page_view",
                "300.1.2.3",
                "ZZ",
                "15"
            ]),
            s(&["e2", "2024-03-01T10:30:00Z", "click", "1.0.0.0", "DE", "2"]),
            s(&[
                "e3",
                "2024-03-01T11:00:00.000001Z",
                "purchase",
                "1.0.0.0",
                "DE",
                "3"
            ]),
            s(&["e4", "2024-03-02T00:50:00Z", "page_view", "1.0.31.255", "DE", "4"]),
            s(&["e5", "2024-03-02T01:10:00Z", "add_to_cart", "1.0.32.0", "TR", "5"]),
            s(&["e6", "2024-03-02T05:00:00Z", "page_view", "0.0.0.1", "ZZ", "6"]),
        ]
    );
    let agent = rows(ctx, &ns, "clean_events", &["event_id", "user_agent"]).await;
    assert!(agent.contains(&s(&["e5", "Mozilla, \"quoted\"\nline2"])));

    // Sessions: exactly 30 minutes stays, 30 minutes and 1 µs splits.
    let sessions = rows(
        ctx,
        &ns,
        "sessions",
        &[
            "session_id",
            "duration_us",
            "event_count",
            "page_views",
            "purchases",
            "revenue",
            "country_code",
            "landing_url",
            "exit_url",
            "is_bounce",
        ],
    )
    .await;
    assert_eq!(
        sessions,
        vec![
            s(&[
                "u1#1",
                "1800000000",
                "2",
                "1",
                "0",
                "0.00",
                "DE",
                "/home",
                "/p1",
                "false"
            ]),
            s(&[
                "u1#2",
                "0",
                "1",
                "0",
                "1",
                "10.50",
                "DE",
                "/checkout",
                "/checkout",
                "true"
            ]),
            s(&[
                "u2#1",
                "1200000000",
                "2",
                "1",
                "0",
                "0.00",
                "DE",
                "/home",
                "/p2",
                "false"
            ]),
            s(&["u3#1", "0", "1", "1", "0", "0.00", "ZZ", "/about", "/about", "true"]),
            s(&["u5#1", "0", "1", "1", "0", "0.00", "ZZ", "/x", "/x", "true"]),
        ]
    );
    let session_events = rows(ctx, &ns, "session_events", &["event_id", "session_id"]).await;
    assert!(session_events.contains(&s(&["e2", "u1#1"])) && session_events.contains(&s(&["e3", "u1#2"])));
    let metrics = rows(
        ctx,
        &ns,
        "daily_metrics",
        &[
            "day",
            "country_code",
            "sessions",
            "users",
            "events",
            "page_views",
            "purchases",
            "revenue",
            "avg_session_duration_s",
            "bounce_rate",
        ],
    )
    .await;
    assert_eq!(
        metrics,
        vec![
            s(&[
                "2024-03-01",
                "DE",
                "2",
                "1",
                "3",
                "1",
                "1",
                "10.50",
                "900.0",
                "0.5"
            ]),
            s(&[
                "2024-03-02",
                "DE",
                "1",
                "1",
                "2",
                "1",
                "0",
                "0.00",
                "1200.0",
                "0.0"
            ]),
            s(&["2024-03-02", "ZZ", "2", "2", "2", "2", "0", "0.00", "0.0", "1.0"]),
        ]
    );

    // Lineage on the published snapshots.
    let table = ctx
        .floe
        .load_table(&floe::TableName::new(ns.clone(), "sessions").unwrap())
        .await
        .unwrap();
    let summary = &table.current_snapshot().unwrap().summary().additional_properties;
    assert_eq!(summary["floe.stage"], "sessionize");
    assert_eq!(summary["floe.engine"], engine.name());
    assert_eq!(summary["floe.run-id"], report.run_id);
    let input_key = format!("floe.input.{ns}.enriched_events");
    assert_eq!(
        summary[&input_key],
        report.stages[2].snapshots["enriched_events"].to_string()
    );

    // The same run again reuses every stage and commits nothing; --force commits again.
    let snapshots_before = table.snapshots().len();
    let again = floe::pipeline::run(&ctx.floe, &options).await.unwrap();
    assert!(again.stages.iter().all(|s| s.status == "reused"), "{again:?}");
    assert_eq!(
        ctx.floe
            .load_table(&floe::TableName::new(ns.clone(), "sessions").unwrap())
            .await
            .unwrap()
            .snapshots()
            .len(),
        snapshots_before
    );
    let forced = floe::pipeline::run(
        &ctx.floe,
        &RunOptions {
            force: true,
            ..options.clone()
        },
    )
    .await
    .unwrap();
    assert!(forced.stages.iter().all(|s| s.status == "succeeded"));
    assert_eq!(rows(ctx, &ns, "sessions", &["session_id"]).await.len(), 5);

    // The input edited to the same size is a new input: nothing is reused from the old one.
    let mut edited = edge_csv();
    let at = edited.windows(4).position(|w| w == b"/p1,").unwrap();
    edited[at + 2] = b'9';
    match ctx.backend {
        Backend::SqliteLocal => std::fs::write(&input, &edited).unwrap(),
        Backend::PostgresS3 => ctx.floe.storage().write(&input, edited.into()).await.unwrap(),
    }
    let rerun = floe::pipeline::run(&ctx.floe, &options).await.unwrap();
    assert!(rerun.stages.iter().all(|s| s.status == "succeeded"), "{rerun:?}");
    let pages = rows(ctx, &ns, "clean_events", &["url"]).await;
    assert!(pages.iter().any(|r| r[0] == "/p9"), "{pages:?}");

    // A missing input: a clear error, no snapshot, recorded as failed.
    let heads = |t: &'static str| {
        let name = floe::TableName::new(ns.clone(), t).unwrap();
        async move {
            ctx.floe
                .load_table(&name)
                .await
                .unwrap()
                .metadata_location()
                .to_string()
        }
    };
    let raw_before = heads("raw_events").await;
    let missing = RunOptions {
        input: Some(format!("{input}.missing")),
        force: true,
        ..options.clone()
    };
    let err = floe::pipeline::run(&ctx.floe, &missing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(heads("raw_events").await, raw_before);
    let ledger: Vec<_> = floe::pipeline::ledger::list(ctx.floe.database(), 500)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.engine == engine.name())
        .collect();
    assert!(ledger.iter().any(|e| e.status == "failed" && e.stage == "ingest"));
    assert_eq!(ledger.iter().filter(|e| e.status == "reused").count(), 5);
}

both_backends!(edge_cases_end_to_end_on_both_engines, |ctx: Ctx| async move {
    let dir = tempfile::tempdir().unwrap();
    let engines: [Arc<dyn Engine>; 2] = [
        Arc::new(DuckDbEngine::default()),
        Arc::new(DataFusionEngine::default()),
    ];
    for engine in engines {
        edge_cases(&ctx, engine, dir.path()).await;
    }
});

both_backends!(
    both_engines_write_sorted_outputs_sorted_within_every_file,
    |ctx: Ctx| async move {
        let dir = tempfile::tempdir().unwrap();
        let input = ctx.input_uri(dir.path(), "gen");
        let mut g = floe::generate::GenerateOptions::new(6000, 7);
        g.files = 2;
        floe::generate::generate(ctx.floe.storage(), &input, &g, None)
            .await
            .unwrap();
        // Three outputs sorted (table, order, its first column, descending): a timestamp within the
        // day partitions it is partitioned by, a count in a table partitioned by another column, and
        // a count in an unpartitioned table. The engines' own order is none of these.
        let sorted = [
            ("clean_events", "event_time desc, user_id", "event_time", true),
            (
                "sessions",
                "duration_us desc nulls last, session_id",
                "duration_us",
                true,
            ),
            ("daily_metrics", "events, country_code", "events", false),
        ];
        floe::pipeline::tables::ensure_tables(&ctx.floe, &ctx.ns)
            .await
            .unwrap();
        let mut tx = ctx.floe.transaction();
        for (table, order, _, _) in sorted {
            tx.update_sort_order(&ctx.table(table), floe::SortOrderUpdate::parse(order).unwrap())
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();

        let engines: Vec<Arc<dyn Engine>> = vec![
            Arc::new(DuckDbEngine::default()),
            Arc::new(DataFusionEngine::default()),
        ];
        let options = RunOptions::new(ctx.ns.clone(), Some(input), engines);
        let report = floe::pipeline::run(&ctx.floe, &options).await.unwrap();
        assert!(report.equivalence.as_ref().unwrap().equal);
        for (table, _, column, descending) in sorted {
            let t = ctx.table(table);
            for engine in ["duckdb", "datafusion"] {
                let files = data_files_on(&ctx, &t, engine).await;
                assert_sorted_files(&ctx, &t, &files, column, descending).await;
            }
        }
    }
);

/// Cells equal as text, or as doubles within a relative 1e-9.
fn same_cell(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => false,
    }
}

both_backends!(
    engines_agree_row_for_row_on_generated_data,
    |ctx: Ctx| async move {
        let dir = tempfile::tempdir().unwrap();
        let out = ctx.input_uri(dir.path(), "gen");
        let mut g = floe::generate::GenerateOptions::new(6000, 11);
        g.files = 2;
        g.dirty = floe::generate::DirtyRates::uniform(0.02);
        floe::generate::generate(ctx.floe.storage(), &out, &g, None)
            .await
            .unwrap();
        let engines: Vec<Arc<dyn Engine>> = vec![
            Arc::new(DuckDbEngine::default()),
            Arc::new(DataFusionEngine::default()),
        ];
        let options = RunOptions::new(ctx.ns.clone(), Some(out), engines);
        let report = floe::pipeline::run(&ctx.floe, &options).await.unwrap();
        assert_eq!(report.stages.len(), 10);
        for table in [
            "raw_events",
            "rejected_events",
            "clean_events",
            "enriched_events",
            "session_events",
            "sessions",
            "daily_metrics",
        ] {
            let schema = ctx
                .floe
                .load_table(&ctx.table(table))
                .await
                .unwrap()
                .arrow_schema()
                .unwrap();
            let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
            let duck = rows_at(&ctx, &ctx.ns, table, &columns, At::Ref("duckdb".into())).await;
            let fusion = rows_at(&ctx, &ctx.ns, table, &columns, At::Ref("datafusion".into())).await;
            assert!(!duck.is_empty(), "{table} is empty");
            assert_eq!(duck.len(), fusion.len(), "{table}: row counts differ");
            for (a, b) in duck.iter().zip(&fusion) {
                assert!(
                    a.iter().zip(b).all(|(x, y)| same_cell(x, y)),
                    "{table} differs between engines:\n duckdb     {a:?}\n datafusion {b:?}"
                );
            }
        }
        // Every data file on the DuckDB branch (written by DuckDB's own `COPY ... FIELD_IDS`, or by
        // floe's writer) carries the table schema's field ids: read from the Parquet footers.
        for table in [
            "raw_events",
            "clean_events",
            "enriched_events",
            "sessions",
            "daily_metrics",
        ] {
            let t = ctx.floe.load_table(&ctx.table(table)).await.unwrap();
            let schema = t.metadata().current_schema().clone();
            let id = t.find_ref("duckdb").unwrap().snapshot_id;
            let snapshot = t.metadata().snapshot_by_id(id).unwrap().clone();
            let files = t.files(Some(&snapshot)).await.unwrap();
            assert!(!files.is_empty(), "{table}: no data files");
            for file in files {
                let bytes = ctx.floe.storage().read(&file.path).await.unwrap();
                let reader = parquet::file::serialized_reader::SerializedFileReader::new(bytes).unwrap();
                use parquet::file::reader::FileReader;
                let footer = reader
                    .metadata()
                    .file_metadata()
                    .schema_descr()
                    .root_schema()
                    .clone();
                let fields = footer.get_fields();
                assert_eq!(
                    fields.len(),
                    schema.as_struct().fields().len(),
                    "{table}: {}",
                    file.path
                );
                for field in fields {
                    let info = field.get_basic_info();
                    let expected = schema.field_by_name(info.name()).unwrap().id;
                    assert!(
                        info.has_id() && info.id() == expected,
                        "{table}: column {} of {} carries field id {:?}, the table's is {expected}",
                        info.name(),
                        file.path,
                        info.has_id().then(|| info.id())
                    );
                }
            }
        }
        // The run's own equivalence check agrees, and published the first engine's branch.
        assert!(report.equivalence.as_ref().unwrap().equal);
        let sessions = ctx.floe.load_table(&ctx.table("sessions")).await.unwrap();
        assert_eq!(
            sessions.current_snapshot().map(|s| s.snapshot_id()),
            sessions.find_ref("duckdb").map(|r| r.snapshot_id)
        );
    }
);

both_backends!(
    bad_inputs_are_clear_errors_and_commit_nothing,
    |ctx: Ctx| async move {
        let dir = tempfile::tempdir().unwrap();
        let base = match ctx.backend {
            Backend::SqliteLocal => dir.path().display().to_string(),
            Backend::PostgresS3 => format!("{}/bad-input", ctx.floe.warehouse().uri()),
        };
        let base = floe::storage::Warehouse::parse(&base).unwrap().uri();
        let storage = ctx.floe.storage();
        storage
            .write(&format!("{base}/empty/events.csv"), bytes::Bytes::new())
            .await
            .unwrap();
        storage
            .write(
                &format!("{base}/xml/events.xml"),
                bytes::Bytes::from_static(b"<e/>"),
            )
            .await
            .unwrap();
        storage
            .write(
                &format!("{base}/header/events.csv"),
                bytes::Bytes::from_static(b"a,b\n1,2\n"),
            )
            .await
            .unwrap();
        let cases = [
            (format!("{base}/empty/events.csv"), ErrorKind::InvalidInput),
            (format!("{base}/xml/events.xml"), ErrorKind::InvalidInput),
            (format!("{base}/header/events.csv"), ErrorKind::InvalidInput),
            (format!("{base}/nothing-here/*.csv"), ErrorKind::NotFound),
            (format!("{base}/missing.csv"), ErrorKind::NotFound),
        ];
        for (input, kind) in cases {
            let options = RunOptions::new(
                ctx.ns.clone(),
                Some(input.clone()),
                vec![Arc::new(DuckDbEngine::default())],
            );
            let err = floe::pipeline::run(&ctx.floe, &options).await.unwrap_err();
            assert_eq!(err.kind(), kind, "{input}: {err}");
            for t in ["raw_events", "rejected_events", "clean_events"] {
                let table = ctx.floe.load_table(&ctx.table(t)).await.unwrap();
                assert!(table.snapshots().is_empty(), "{input}: {t} got a snapshot");
            }
        }
        // No data file was left behind either.
        for t in ["raw_events", "rejected_events"] {
            let table = ctx.floe.load_table(&ctx.table(t)).await.unwrap();
            assert!(storage
                .list(&format!("{}/data/", table.location()))
                .await
                .unwrap()
                .is_empty());
        }
    }
);

both_backends!(ndjson_and_parquet_inputs_lose_nothing, |ctx: Ctx| async move {
    let dir = tempfile::tempdir().unwrap();
    for (i, format) in [
        floe::generate::OutputFormat::Ndjson,
        floe::generate::OutputFormat::Parquet,
    ]
    .into_iter()
    .enumerate()
    {
        let out = ctx.input_uri(dir.path(), &format!("gen{i}"));
        let mut g = floe::generate::GenerateOptions::new(3000, 5);
        g.format = format;
        g.dirty = floe::generate::DirtyRates::uniform(0.03);
        floe::generate::generate(ctx.floe.storage(), &out, &g, None)
            .await
            .unwrap();
        let ns = Namespace::parse(&format!("{}_{i}", ctx.ns)).unwrap();
        let options = RunOptions {
            stages: vec![Stage::Ingest, Stage::Cleanse],
            ..RunOptions::new(ns.clone(), Some(out), vec![Arc::new(DataFusionEngine::default())])
        };
        let report = floe::pipeline::run(&ctx.floe, &options).await.unwrap();
        let (ingest, cleanse) = (&report.stages[0], &report.stages[1]);
        assert_eq!(ingest.rows_in, 3000);
        let rejected: u64 = ingest.rejects.values().sum::<u64>() + cleanse.rejects.values().sum::<u64>();
        assert_eq!(
            cleanse.rows_out["clean_events"] + rejected,
            3000,
            "{format:?}: {report:?}"
        );
        assert!(
            cleanse.rejects.len() >= 5,
            "{format:?}: every kind of dirt is caught: {:?}",
            cleanse.rejects
        );
        let stored = rows(&ctx, &ns, "rejected_events", &["reason"]).await.len() as u64;
        assert_eq!(stored, rejected);
    }
});

/// DataFusion with one altered output: the aggregate loses its first row.
/// DataFusion with the first non-empty batch of its `daily_metrics` passed through `alter`.
struct Tampered {
    inner: DataFusionEngine,
    name: &'static str,
    /// The stage whose first output is altered.
    stage: Stage,
    alter: fn(arrow::array::RecordBatch) -> arrow::array::RecordBatch,
}

impl Tampered {
    /// One value altered (the first row's `users` plus one): a difference no invariant of the stage
    /// catches, so only the equivalence check can.
    fn value() -> Self {
        Tampered {
            inner: DataFusionEngine::default(),
            name: "tampered",
            stage: Stage::Aggregate,
            alter: bump_first_users,
        }
    }

    /// The first row dropped, which the stage itself refuses (the sessions no longer add up).
    fn dropped_row() -> Self {
        Tampered {
            inner: DataFusionEngine::default(),
            name: "dropped-row",
            stage: Stage::Aggregate,
            alter: |b| b.slice(1, b.num_rows() - 1),
        }
    }

    /// A record lost from `clean_events`: clean + rejected no longer adds up to the input.
    fn lost_clean_row() -> Self {
        Tampered {
            inner: DataFusionEngine::default(),
            name: "lost-clean-row",
            stage: Stage::Cleanse,
            alter: |b| b.slice(1, b.num_rows() - 1),
        }
    }
}

fn bump_first_users(b: arrow::array::RecordBatch) -> arrow::array::RecordBatch {
    let i = b.schema().index_of("users").unwrap();
    let users = b
        .column(i)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap();
    let bumped: arrow::array::Int64Array = users
        .iter()
        .enumerate()
        .map(|(j, v)| if j == 0 { v.map(|x| x + 1) } else { v })
        .collect();
    let mut columns = b.columns().to_vec();
    columns[i] = Arc::new(bumped);
    arrow::array::RecordBatch::try_new(b.schema(), columns).unwrap()
}

#[async_trait::async_trait]
impl Engine for Tampered {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn run(
        &self,
        stage: Stage,
        inputs: &std::collections::BTreeMap<&'static str, floe::pipeline::engine::PinnedTable>,
    ) -> floe::Result<Vec<floe::pipeline::engine::Rows>> {
        use futures::StreamExt;
        let mut out = self.inner.run(stage, inputs).await?;
        if stage == self.stage {
            let rows = out.remove(0);
            let mut first = true;
            let alter = self.alter;
            out.insert(
                0,
                rows.map(move |b| {
                    b.map(|b| {
                        if first && b.num_rows() > 0 {
                            first = false;
                            alter(b)
                        } else {
                            b
                        }
                    })
                })
                .boxed(),
            );
        }
        Ok(out)
    }

    fn code(&self, stage: Stage) -> String {
        format!("{} aggregate\n{}", self.name, self.inner.code(stage))
    }
}

both_backends!(
    equivalence_check_publishes_only_equal_outputs,
    |ctx: Ctx| async move {
        let dir = tempfile::tempdir().unwrap();
        let out = ctx.input_uri(dir.path(), "gen");
        floe::generate::generate(
            ctx.floe.storage(),
            &out,
            &floe::generate::GenerateOptions::new(3000, 3),
            None,
        )
        .await
        .unwrap();
        let options = |ns: &Namespace, second: Arc<dyn Engine>| {
            RunOptions::new(
                ns.clone(),
                Some(out.clone()),
                vec![Arc::new(DuckDbEngine::default()), second],
            )
        };
        // Equal: published from the first engine and tagged; the ledger records the verdict.
        let good = Namespace::parse(&format!("{}_good", ctx.ns)).unwrap();
        let report = floe::pipeline::run(&ctx.floe, &options(&good, Arc::new(DataFusionEngine::default())))
            .await
            .unwrap();
        let eq = report.equivalence.clone().unwrap();
        assert!(eq.equal, "{eq:?}");
        assert_eq!(eq.tables.len(), 7);
        let tag = eq.tag.clone().unwrap();
        let metrics = ctx
            .floe
            .load_table(&floe::TableName::new(good.clone(), "daily_metrics").unwrap())
            .await
            .unwrap();
        assert_eq!(
            metrics.current_snapshot().map(|s| s.snapshot_id()),
            metrics.find_ref("duckdb").map(|r| r.snapshot_id)
        );
        assert_eq!(
            metrics.find_ref(&tag).map(|r| r.snapshot_id),
            metrics.find_ref("duckdb").map(|r| r.snapshot_id)
        );
        // The published snapshot carries the verdict, changes no data, and sits on the stage's
        // snapshot.
        let published = metrics.current_snapshot().unwrap();
        let summary = &published.summary().additional_properties;
        assert_eq!(summary.get("floe.equivalence").map(String::as_str), Some("equal"));
        assert_eq!(summary.get("floe.stage").map(String::as_str), Some("equivalence"));
        assert_eq!(
            summary.get("added-records").map(String::as_str).unwrap_or("0"),
            "0"
        );
        let compared = summary.get("floe.equivalence.compared").unwrap();
        assert!(
            compared.starts_with(&format!("{good}.daily_metrics@")),
            "{compared}"
        );
        let parent = metrics
            .metadata()
            .snapshot_by_id(published.parent_snapshot_id().unwrap())
            .unwrap();
        assert_eq!(
            parent
                .summary()
                .additional_properties
                .get("floe.stage")
                .map(String::as_str),
            Some("aggregate")
        );
        assert_eq!(
            summary.get("total-records"),
            parent.summary().additional_properties.get("total-records")
        );
        // Running again reuses every stage of the first engine: the verdict changed no input.
        let again = floe::pipeline::run(&ctx.floe, &options(&good, Arc::new(DataFusionEngine::default())))
            .await
            .unwrap();
        assert!(
            again
                .stages
                .iter()
                .filter(|s| s.engine == "duckdb")
                .all(|s| s.status == "reused"),
            "{:?}",
            again
                .stages
                .iter()
                .map(|s| (&s.engine, &s.stage, &s.status))
                .collect::<Vec<_>>()
        );
        assert!(again.equivalence.as_ref().unwrap().equal);
        let verified = floe::pipeline::runner::verify(&ctx.floe, &good, &report.run_id)
            .await
            .unwrap();
        assert!(verified.equal);
        let ledger = floe::pipeline::ledger::list(ctx.floe.database(), 100)
            .await
            .unwrap();
        assert!(ledger
            .iter()
            .any(|e| e.run_id == report.run_id && e.stage == "equivalence" && e.status == "equal"));

        // One engine's output altered: different, nothing published, reported.
        let bad = Namespace::parse(&format!("{}_bad", ctx.ns)).unwrap();
        let report = floe::pipeline::run(&ctx.floe, &options(&bad, Arc::new(Tampered::value())))
            .await
            .unwrap();
        // A daily_metrics that lost a row no longer accounts for every session: the stage refuses it
        // and nothing is committed.
        let dropped = Namespace::parse(&format!("{}_dropped", ctx.ns)).unwrap();
        let err = floe::pipeline::run(&ctx.floe, &options(&dropped, Arc::new(Tampered::dropped_row())))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("daily_metrics.sessions sums to"),
            "{err}"
        );
        let metrics = ctx
            .floe
            .load_table(&floe::TableName::new(dropped.clone(), "daily_metrics").unwrap())
            .await
            .unwrap();
        assert!(
            metrics.current_snapshot().is_none(),
            "daily_metrics was committed"
        );
        let eq = report.equivalence.clone().unwrap();
        assert!(!eq.equal);
        let different: Vec<&str> = eq
            .tables
            .iter()
            .filter(|d| !d.equal)
            .map(|d| d.left.as_str())
            .collect();
        assert_eq!(different.len(), 1, "{different:?}");
        assert!(
            different[0].starts_with(&format!("{bad}.daily_metrics@")),
            "{different:?}"
        );
        assert!(eq.tag.is_none());
        for t in ["raw_events", "sessions", "daily_metrics"] {
            let table = ctx
                .floe
                .load_table(&floe::TableName::new(bad.clone(), t).unwrap())
                .await
                .unwrap();
            assert!(table.current_snapshot().is_none(), "{t} was published");
        }
        assert!(
            !floe::pipeline::runner::verify(&ctx.floe, &bad, &report.run_id)
                .await
                .unwrap()
                .equal
        );
        let ledger = floe::pipeline::ledger::list(ctx.floe.database(), 100)
            .await
            .unwrap();
        assert!(ledger
            .iter()
            .any(|e| e.run_id == report.run_id && e.stage == "equivalence" && e.status == "different"));
    }
);

both_backends!(
    analytics_queries_answer_on_the_edge_cases,
    |ctx: Ctx| async move {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("edge.csv");
        std::fs::write(&input, edge_csv()).unwrap();
        // The queries name the `clickstream` namespace: give this test its own catalog.
        let settings = floe::Settings {
            catalog_name: format!("{}_q", ctx.settings.catalog_name),
            ..ctx.settings.clone()
        };
        let floe = floe::Floe::connect(settings).await.unwrap();
        let options = RunOptions::new(
            Namespace::parse("clickstream").unwrap(),
            Some(input.display().to_string()),
            vec![Arc::new(DuckDbEngine::default())],
        );
        floe::pipeline::run(&floe, &options).await.unwrap();
        let query = |file: &str| {
            let floe = floe.clone();
            let text =
                std::fs::read_to_string(format!("{}/fixtures/queries/{file}", env!("CARGO_MANIFEST_DIR")))
                    .unwrap();
            async move {
                let r = floe::query::sql(&floe, &text).await.unwrap();
                let mut rows = Vec::new();
                for b in &r.batches {
                    for i in 0..b.num_rows() {
                        rows.push(
                            (0..b.num_columns())
                                .map(|c| array_value_to_string(b.column(c), i).unwrap())
                                .collect::<Vec<_>>()
                                .join("|"),
                        );
                    }
                }
                rows
            }
        };
        assert_eq!(
            query("revenue_and_conversion_by_country_and_day.sql").await,
            vec![
                "2024-03-01|DE|2|10.50|0.5",
                "2024-03-02|DE|1|0.00|0.0",
                "2024-03-02|ZZ|2|0.00|0.0"
            ]
        );
        assert_eq!(query("funnel.sql").await, vec!["4|1|1|0.25"]);
        assert_eq!(
            query("landing_pages_by_bounce_rate.sql").await,
            vec!["/about|1|1.0", "/checkout|1|1.0", "/x|1|1.0", "/home|2|0.0"]
        );
        assert_eq!(
            query("rejects_by_reason.sql").await,
            vec![
                "malformed_record|ingest|2|0.1333",
                "bad_event_time|cleanse|1|0.0667",
                "bad_event_type|cleanse|1|0.0667",
                "bad_revenue|cleanse|1|0.0667",
                "duplicate_event_id|cleanse|1|0.0667",
                "missing_event_id|cleanse|1|0.0667",
                "missing_user_id|cleanse|1|0.0667",
            ]
        );
        // Refs and metadata are tables too.
        let r = floe::query::sql(
            &floe,
            r#"SELECT count(*) AS n FROM "clickstream.sessions@duckdb""#,
        )
        .await
        .unwrap();
        assert_eq!(array_value_to_string(r.batches[0].column(0), 0).unwrap(), "5");
        let r = floe::query::sql(&floe, r#"SELECT operation FROM "clickstream.sessions$snapshots""#)
            .await
            .unwrap();
        assert_eq!(r.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        let r = floe::query::sql(&floe, "SELECT count(*) FROM floe_runs WHERE status = 'succeeded'")
            .await
            .unwrap();
        assert_eq!(array_value_to_string(r.batches[0].column(0), 0).unwrap(), "5");
        let err = floe::query::sql(&floe, "SELECT * FROM clickstream.nope")
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
);

both_backends!(
    a_cleanse_whose_outputs_do_not_add_up_commits_nothing,
    |ctx: Ctx| async move {
        // clean_events lost a record: clean + rejected no longer adds up to the input, the stage
        // refuses it, and nothing of it is committed, on its branch or on main.
        let dir = tempfile::tempdir().unwrap();
        let input = ctx.input_uri(dir.path(), "gen");
        floe::generate::generate(
            ctx.floe.storage(),
            &input,
            &floe::generate::GenerateOptions::new(1000, 3),
            None,
        )
        .await
        .unwrap();
        let engine: Arc<dyn Engine> = Arc::new(Tampered::lost_clean_row());
        let options = RunOptions::new(ctx.ns.clone(), Some(input), vec![engine]);
        let err = floe::pipeline::run(&ctx.floe, &options).await.unwrap_err();
        assert!(err.to_string().contains("(clean + rejected)"), "{err}");
        let clean = ctx.floe.load_table(&ctx.table("clean_events")).await.unwrap();
        assert!(clean.current_snapshot().is_none(), "clean_events was published");
        assert!(
            clean.metadata().snapshot_for_ref("lost-clean-row").is_none(),
            "the refused stage committed to its branch"
        );
        // The stage before it committed as usual.
        let raw = ctx.floe.load_table(&ctx.table("raw_events")).await.unwrap();
        assert!(raw.metadata().snapshot_for_ref("lost-clean-row").is_some());
    }
);
