//! The two engines agree on every input, not only on the test data: a generated "hostile text"
//! dataset (every Unicode white space character around every field, case-mapping oddities, non-ASCII
//! digits, NUL and control characters, invalid UTF-8 in each field, fields at their size limits)
//! runs through DuckDB and DataFusion; their outputs must diff equal, and follow the written rules
//! (`src/pipeline/README.md`) record by record.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, Int64Array, StringArray};
use floe::pipeline::{DataFusionEngine, DuckDbEngine, Engine, RunOptions};
use floe::Namespace;

use crate::both_backends;
use crate::support::*;

/// Every Unicode `White_Space` character.
const WHITE_SPACE: &[char] = &[
    '\u{9}', '\u{a}', '\u{b}', '\u{c}', '\u{d}', ' ', '\u{85}', '\u{a0}', '\u{1680}', '\u{2000}', '\u{2001}',
    '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}', '\u{2007}', '\u{2008}', '\u{2009}',
    '\u{200a}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}',
];

/// What a record must become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A clean row with this event id, event type and revenue text (`None`: null).
    Clean {
        id: String,
        event_type: &'static str,
        revenue: Option<&'static str>,
    },
    /// A reject with this reason.
    Reject(&'static str),
}

pub(crate) struct Dataset {
    pub(crate) bytes: Vec<u8>,
    expect: Vec<Expect>,
}

/// One CSV field, quoted (RFC 4180).
fn field(value: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    for b in value {
        if *b == b'"' {
            out.push(b'"');
        }
        out.push(*b);
    }
    out.push(b'"');
    out
}

pub(crate) fn hostile() -> Dataset {
    let mut rows: Vec<(Vec<Vec<u8>>, Expect)> = Vec::new();
    let good = |id: &str| -> Vec<Vec<u8>> {
        [
            id,
            "u1",
            "2024-03-01T10:00:00Z",
            "click",
            "/p",
            "",
            "1.2.3.4",
            "UA",
            "1.50",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    };
    let clean = |id: &str, event_type: &'static str, revenue: Option<&'static str>| Expect::Clean {
        id: id.to_string(),
        event_type,
        revenue,
    };
    // White space around every trimmed field is ignored.
    for (i, w) in WHITE_SPACE.iter().enumerate() {
        let id = format!("ws{i}");
        let mut r = good(&id);
        r[0] = format!("{w}{id}{w}").into_bytes();
        r[1] = format!("{w}u{i}{w}").into_bytes();
        r[2] = format!("{w}2024-03-01T10:00:00Z{w}").into_bytes();
        r[3] = format!("{w}CLICK{w}").into_bytes();
        r[8] = format!("{w}1.50{w}").into_bytes();
        rows.push((r, clean(&id, "click", Some("1.50"))));
        // A value of nothing but white space is missing.
        let mut r = good("x");
        r[0] = format!("{w}{w}").into_bytes();
        rows.push((r, Expect::Reject("missing_event_id")));
    }
    // Characters that are not white space stay part of the value.
    for (i, c) in ['\u{200b}', '\u{feff}', '\u{0}', '\u{7}', '\u{1b}', '\u{7f}']
        .iter()
        .enumerate()
    {
        let id = format!("{c}keep{i}{c}");
        rows.push((good(&id), clean(&id, "click", Some("1.50"))));
        let mut r = good(&format!("type{i}"));
        r[3] = format!("click{c}").into_bytes();
        rows.push((r, Expect::Reject("bad_event_type")));
    }
    // Case: ASCII only.
    for (i, (text, expect)) in [
        ("PURCHASE", Some("purchase")),
        ("pUrChAsE", Some("purchase")),
        ("Add_To_Cart", Some("add_to_cart")),
        ("clic\u{212a}", None),
        ("ＣＬＩＣＫ", None),
        ("cl\u{130}ck", None),
        ("page_v\u{131}ew", None),
        ("PAGE_VIEW\u{301}", None),
        ("purchas\u{3a3}", None),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("case{i}");
        let mut r = good(&id);
        r[3] = text.as_bytes().to_vec();
        rows.push((
            r,
            match expect {
                Some(t) => clean(&id, t, Some("1.50")),
                None => Expect::Reject("bad_event_type"),
            },
        ));
    }
    // Digits: ASCII only; revenue at its limits.
    for (i, (text, expect)) in [
        ("\u{663}", None),
        ("\u{ff11}\u{ff12}", None),
        ("\u{b2}", None),
        ("9999999999.99", Some("9999999999.99")),
        ("99999999999", None),
        ("0.01", Some("0.01")),
        ("1.001", None),
        ("-0", None),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("rev{i}");
        let mut r = good(&id);
        r[8] = text.as_bytes().to_vec();
        rows.push((
            r,
            match expect {
                Some(v) => clean(&id, "click", Some(v)),
                None => Expect::Reject("bad_revenue"),
            },
        ));
    }
    for (i, (text, ok)) in [
        ("\u{662}\u{660}\u{662}\u{664}-03-01T10:00:00Z", false),
        ("2024-03-01T10:00:00.12345678901234567890Z", true),
        ("2024-03-01T10:00:00+18:00", true),
        ("2024-03-01T10:00:00+18:01", false),
        ("2024-02-29T10:00:00Z", true),
        ("2023-02-29T10:00:00Z", false),
        ("2024-03-01T23:59:60Z", false),
        ("2024-03-01T10:00:00z", false),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("time{i}");
        let mut r = good(&id);
        r[2] = text.as_bytes().to_vec();
        rows.push((
            r,
            if *ok {
                clean(&id, "click", Some("1.50"))
            } else {
                Expect::Reject("bad_event_time")
            },
        ));
    }
    // A field at a size limit: a 100,000-character event id, a long user agent with escapes.
    let long = "é".repeat(100_000);
    rows.push((good(&long), clean(&long, "click", Some("1.50"))));
    let mut r = good("ua");
    r[7] = "\u{1b}[31m\"quoted\"\n, and \\ back\u{0}"
        .repeat(1000)
        .into_bytes();
    rows.push((r, clean("ua", "click", Some("1.50"))));
    // Non-ASCII digits in an address: kept as text, enriched to ZZ.
    let mut r = good("ip");
    r[6] = "\u{661}.\u{662}.\u{663}.\u{664}".as_bytes().to_vec();
    rows.push((r, clean("ip", "click", Some("1.50"))));
    // A reject's record JSON holds hostile text too.
    let mut r = good("json");
    r[3] = b"\"\\\n\t\x01".to_vec();
    rows.push((r, Expect::Reject("bad_event_type")));
    // Invalid UTF-8 in every field: malformed at ingest.
    for f in 0..9 {
        let mut r = good(&format!("utf8-{f}"));
        let mut bad = r[f].clone();
        bad.extend_from_slice(b"\xff\xfe");
        r[f] = bad;
        rows.push((r, Expect::Reject("malformed_record")));
    }
    // Duplicates that differ only by white space.
    rows.push((good("\u{3000}dup"), clean("dup", "click", Some("1.50"))));
    let mut later = good("dup\u{a0}");
    later[2] = b"2024-03-01T10:00:01Z".to_vec();
    rows.push((later, Expect::Reject("duplicate_event_id")));

    let mut bytes = b"event_id,user_id,event_time,event_type,url,referrer,ip,user_agent,revenue\n".to_vec();
    for (r, _) in &rows {
        let fields: Vec<Vec<u8>> = r.iter().map(|f| field(f)).collect();
        bytes.extend_from_slice(&fields.join(&b","[..]));
        bytes.push(b'\n');
    }
    Dataset {
        bytes,
        expect: rows.into_iter().map(|(_, e)| e).collect(),
    }
}

/// `table`'s columns as text, by `source_line`.
async fn by_line(
    ctx: &Ctx,
    ns: &Namespace,
    table: &str,
    columns: &[&str],
) -> BTreeMap<i64, Vec<Option<String>>> {
    let name = floe::TableName::new(ns.clone(), table).unwrap();
    let mut cols = vec!["source_line"];
    cols.extend_from_slice(columns);
    let batches = scan_columns(&ctx.floe, &name, &cols).await;
    let mut out = BTreeMap::new();
    for b in batches {
        let lines = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..b.num_rows() {
            let values = (1..b.num_columns())
                .map(|c| {
                    let col = b.column(c);
                    if col.is_null(i) {
                        None
                    } else if let Some(s) = col.as_any().downcast_ref::<StringArray>() {
                        Some(s.value(i).to_string())
                    } else {
                        Some(arrow::util::display::array_value_to_string(col, i).unwrap())
                    }
                })
                .collect();
            out.insert(lines.value(i), values);
        }
    }
    out
}

both_backends!(engines_agree_on_hostile_text, |ctx: Ctx| async move {
    let dir = tempfile::tempdir().unwrap();
    let data = hostile();
    let input = ctx.input_uri(dir.path(), "hostile.csv");
    ctx.floe
        .storage()
        .write(&input, data.bytes.clone().into())
        .await
        .unwrap();
    let engines: Vec<Arc<dyn Engine>> = vec![
        Arc::new(DuckDbEngine::default()),
        Arc::new(DataFusionEngine::default()),
    ];
    let ns = ctx.ns.clone();
    let report = floe::pipeline::run(&ctx.floe, &RunOptions::new(ns.clone(), Some(input), engines))
        .await
        .unwrap();
    let eq = report.equivalence.as_ref().unwrap();
    for d in &eq.tables {
        assert!(d.equal, "{} differs between the engines: {d:?}", d.left);
    }
    assert!(eq.equal);

    // Published (both engines equal): check the written rules record by record.
    let clean = by_line(&ctx, &ns, "clean_events", &["event_id", "event_type", "revenue"]).await;
    let rejected = by_line(&ctx, &ns, "rejected_events", &["reason", "record"]).await;
    let enriched = by_line(&ctx, &ns, "enriched_events", &["event_id", "country_code"]).await;
    assert_eq!(
        clean.len() + rejected.len(),
        data.expect.len(),
        "input = clean + rejected"
    );
    for (i, expect) in data.expect.iter().enumerate() {
        let line = i as i64 + 1;
        match expect {
            Expect::Clean {
                id,
                event_type,
                revenue,
            } => {
                let row = clean
                    .get(&line)
                    .unwrap_or_else(|| panic!("line {line} should be clean: {:?}", rejected.get(&line)));
                assert_eq!(row[0].as_deref(), Some(id.as_str()), "line {line}: event_id");
                assert_eq!(row[1].as_deref(), Some(*event_type), "line {line}: event_type");
                assert_eq!(row[2].as_deref(), *revenue, "line {line}: revenue");
            }
            Expect::Reject(reason) => {
                let row = rejected
                    .get(&line)
                    .unwrap_or_else(|| panic!("line {line} should be rejected ({reason})"));
                assert_eq!(row[0].as_deref(), Some(*reason), "line {line}");
                if *reason != "malformed_record" {
                    let record: serde_json::Value = serde_json::from_str(row[1].as_deref().unwrap())
                        .unwrap_or_else(|e| panic!("line {line}: the record is not JSON: {e}"));
                    assert!(record.get("event_id").is_some(), "line {line}");
                }
            }
        }
    }
    let ip_line = data
        .expect
        .iter()
        .position(|e| matches!(e, Expect::Clean { id, .. } if id == "ip"))
        .unwrap() as i64
        + 1;
    assert_eq!(enriched[&ip_line][1].as_deref(), Some("ZZ"));
});
