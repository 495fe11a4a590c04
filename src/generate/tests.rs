use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::config::S3Settings;

fn storage() -> ObjectStorage {
    ObjectStorage::new(S3Settings::default())
}

fn dir_uri(dir: &tempfile::TempDir) -> String {
    format!("file://{}", dir.path().display())
}

async fn run(options: &GenerateOptions) -> (tempfile::TempDir, GenerateReport, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let report = generate(&storage(), &dir_uri(&dir), options, None).await.unwrap();
    let mut contents = Vec::new();
    for f in &report.files {
        contents.push(std::fs::read(f.strip_prefix("file://").unwrap()).unwrap());
    }
    (dir, report, contents)
}

/// RFC 4180 records of a CSV file (header included), fields as raw bytes.
fn csv_records(data: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = Vec::new();
    let mut quoted = false;
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if quoted {
            if b == b'"' {
                if data.get(i + 1) == Some(&b'"') {
                    field.push(b'"');
                    i += 1;
                } else {
                    quoted = false;
                }
            } else {
                field.push(b);
            }
        } else {
            match b {
                b'"' if field.is_empty() => quoted = true,
                b'"' => panic!("quote inside an unquoted field at byte {i}"),
                b',' => fields.push(std::mem::take(&mut field)),
                b'\n' => {
                    fields.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut fields));
                }
                _ => field.push(b),
            }
        }
        i += 1;
    }
    assert!(!quoted, "unterminated quoted field");
    assert!(
        field.is_empty() && fields.is_empty(),
        "last record without line end"
    );
    records
}

/// Well-formed records as 9 strings (the malformed ones counted separately).
fn csv_rows(files: &[Vec<u8>]) -> (Vec<Vec<String>>, u64) {
    let mut rows = Vec::new();
    let mut malformed = 0;
    for data in files {
        let records = csv_records(data);
        assert_eq!(records[0].len(), 9);
        assert_eq!(records[0].join(&b","[..]), FIELDS.join(",").into_bytes());
        for r in &records[1..] {
            let texts: Option<Vec<String>> = r.iter().map(|f| String::from_utf8(f.clone()).ok()).collect();
            match texts {
                Some(t) if t.len() == 9 => rows.push(t),
                _ => malformed += 1,
            }
        }
    }
    (rows, malformed)
}

const TYPES: [&str; 4] = ["page_view", "click", "add_to_cart", "purchase"];

fn parse_time(text: &str) -> Option<i64> {
    // The spec's shape: date, 'T', time, optional fraction, 'Z' or ±HH:MM.
    let ok_shape = text.len() >= 20 && text.as_bytes()[10] == b'T';
    if !ok_shape {
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_micros())
}

fn revenue_ok(text: &str) -> bool {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 2
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (frac.is_empty() != text.contains('.'))
}

#[tokio::test]
async fn same_seed_same_bytes_other_seed_other_bytes() {
    for format in [OutputFormat::Csv, OutputFormat::Ndjson, OutputFormat::Parquet] {
        let mut o = GenerateOptions::new(3_000, 7);
        o.format = format;
        o.files = 2;
        let (_a, ra, a) = run(&o).await;
        let (_b, rb, b) = run(&o).await;
        assert_eq!(a, b, "{format}");
        assert_eq!(ra.dirty, rb.dirty);
        assert_eq!(ra.bytes, rb.bytes);
        o.seed = 8;
        let (_c, _, c) = run(&o).await;
        assert_ne!(a, c, "{format}");
        assert_ne!(a[0], c[0]);
        assert_ne!(a[1], c[1]);
    }
}

#[tokio::test]
async fn csv_record_count_and_split() {
    let mut o = GenerateOptions::new(10_001, 3);
    o.files = 3;
    let calls = std::sync::atomic::AtomicU64::new(0);
    let dir = tempfile::tempdir().unwrap();
    let progress = |n: u64| calls.store(n, std::sync::atomic::Ordering::Relaxed);
    let report = generate(&storage(), &format!("{}/", dir_uri(&dir)), &o, Some(&progress))
        .await
        .unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 10_001);
    assert_eq!(report.events, 10_001);
    assert_eq!(report.file_events, vec![3_334, 3_334, 3_333]);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        names,
        vec!["events-00000.csv", "events-00001.csv", "events-00002.csv"]
    );
    let mut total_bytes = 0;
    let mut files = Vec::new();
    for (f, n) in report.files.iter().zip(&report.file_events) {
        assert!(f.starts_with("file:///") && !f.contains("//events"), "{f}");
        let data = std::fs::read(f.strip_prefix("file://").unwrap()).unwrap();
        total_bytes += data.len() as u64;
        assert_eq!(csv_records(&data).len() as u64 - 1, *n, "{f}");
        files.push(data);
    }
    assert_eq!(total_bytes, report.bytes);
    let (rows, malformed) = csv_rows(&files);
    assert_eq!(malformed, report.dirty.malformed);
    assert_eq!(rows.len() as u64 + malformed, 10_001);
    // Default dirt is small: most rows are fully valid.
    let valid = rows
        .iter()
        .filter(|r| parse_time(&r[2]).is_some() && TYPES.contains(&r[3].trim().to_lowercase().as_str()))
        .count();
    assert!(
        valid as f64 > 0.97 * rows.len() as f64,
        "{valid} of {}",
        rows.len()
    );
}

#[tokio::test]
async fn ndjson_record_count() {
    let mut o = GenerateOptions::new(5_000, 11);
    o.format = OutputFormat::Ndjson;
    o.files = 2;
    o.dirty = DirtyRates::uniform(0.03);
    let (_d, report, files) = run(&o).await;
    let mut objects = 0u64;
    let mut broken = 0u64;
    let mut nulls = 0u64;
    for data in &files {
        let text = std::str::from_utf8(data).unwrap();
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(m)) => {
                    assert_eq!(m.len(), 9);
                    assert!(m.values().all(|v| v.is_string() || v.is_null()));
                    nulls += m.values().filter(|v| v.is_null()).count() as u64;
                    objects += 1;
                }
                _ => broken += 1,
            }
        }
    }
    assert_eq!(objects + broken, 5_000);
    assert_eq!(broken, report.dirty.malformed);
    assert!(broken > 0 && nulls > 0);
    // Fields appear in the spec's order.
    let first = std::str::from_utf8(&files[0]).unwrap().lines().next().unwrap();
    let positions: Vec<usize> = FIELDS
        .iter()
        .map(|f| first.find(&format!("\"{f}\":")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{first}");
}

#[tokio::test]
async fn parquet_rows_and_schema() {
    let mut o = GenerateOptions::new(20_000, 5);
    o.format = OutputFormat::Parquet;
    o.dirty = DirtyRates::uniform(0.03);
    let (_d, report, files) = run(&o).await;
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(Bytes::from(files[0].clone()))
            .unwrap();
    assert_eq!(reader.schema().as_ref(), events_schema().as_ref());
    let mut rows = 0;
    let mut nulls = 0;
    for b in reader.build().unwrap() {
        let b = b.unwrap();
        rows += b.num_rows();
        nulls += b.columns().iter().map(|c| c.null_count()).sum::<usize>();
    }
    assert_eq!(rows, 20_000);
    assert!(nulls > 0);
    assert_eq!(report.dirty.malformed, 0);
    assert_eq!(report.bytes, files[0].len() as u64);
}

#[tokio::test]
async fn every_dirty_kind_appears() {
    let mut o = GenerateOptions::new(20_000, 9);
    o.files = 2;
    o.dirty = DirtyRates::uniform(0.04);
    let (_d, report, files) = run(&o).await;
    let c = &report.dirty;
    for (kind, n) in [
        ("duplicate", c.duplicate),
        ("malformed", c.malformed),
        ("missing_id", c.missing_id),
        ("padded_id", c.padded_id),
        ("bad_time", c.bad_time),
        ("bad_type", c.bad_type),
        ("odd_type", c.odd_type),
        ("tz_offset", c.tz_offset),
        ("invalid_ip", c.invalid_ip),
        ("empty_optional", c.empty_optional),
        ("quoted", c.quoted),
        ("bad_revenue", c.bad_revenue),
    ] {
        // About 4% of 20,000 = 800 expected each.
        assert!(n > 400, "{kind}: {n}");
    }

    // And they are visible in the data itself.
    let (rows, malformed) = csv_rows(&files);
    assert!(malformed > 0);
    let any = |f: &dyn Fn(&Vec<String>) -> bool| rows.iter().any(f);
    let mut ids: BTreeMap<&str, u32> = BTreeMap::new();
    for r in &rows {
        *ids.entry(r[0].as_str()).or_default() += 1;
    }
    assert!(ids.values().any(|n| *n > 1), "duplicate ids");
    let first_file_ids: BTreeSet<String> = csv_rows(&files[..1])
        .0
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let cross = csv_rows(&files[1..])
        .0
        .iter()
        .filter(|r| !r[0].trim().is_empty() && first_file_ids.contains(&r[0]))
        .count();
    assert!(cross > 0, "duplicates across files");
    assert!(any(&|r| r[0].trim().is_empty()), "missing event_id");
    assert!(any(&|r| r[1].trim().is_empty()), "missing user_id");
    assert!(
        any(&|r| r[1] != r[1].trim() && !r[1].trim().is_empty()),
        "padded user_id"
    );
    assert!(any(&|r| parse_time(&r[2]).is_none()), "bad time");
    assert!(
        any(&|r| parse_time(&r[2]).is_some() && !r[2].ends_with('Z')),
        "offset time"
    );
    assert!(
        any(&|r| !TYPES.contains(&r[3].trim().to_lowercase().as_str())),
        "bad type"
    );
    assert!(
        any(&|r| TYPES.contains(&r[3].trim().to_lowercase().as_str()) && !TYPES.contains(&r[3].as_str())),
        "odd type"
    );
    assert!(
        any(&|r| !r[6].is_empty() && r[6].parse::<std::net::Ipv4Addr>().is_err()),
        "invalid ip"
    );
    assert!(any(&|r| r[4].is_empty()), "empty url");
    assert!(any(&|r| r[7].is_empty()), "empty user agent");
    assert!(any(&|r| r.iter().any(|f| f.contains('\n'))), "newline in a field");
    assert!(any(&|r| r.iter().any(|f| f.contains('"'))), "quote in a field");
    assert!(any(&|r| !r[8].is_empty() && !revenue_ok(&r[8])), "bad revenue");
    let raw = String::from_utf8_lossy(&files[0]);
    assert!(raw.contains("\"\"QuoteBot\"\""), "doubled quotes");
    assert!(raw.contains(",\"page_view\","), "needless quotes");
}

#[tokio::test]
async fn sessions_funnel_and_time_shape() {
    let mut o = GenerateOptions::new(60_000, 21);
    o.dirty = DirtyRates::clean();
    let (_d, report, files) = run(&o).await;
    assert_eq!(report.dirty, DirtyCounts::default());
    let (rows, malformed) = csv_rows(&files);
    assert_eq!(malformed, 0);
    assert_eq!(rows.len(), 60_000);

    let mut per_user: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut types: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_hour = [0u64; 24];
    let start = o.start.timestamp_micros();
    let end = start + 7 * 86_400_000_000;
    let mut in_span = 0;
    let mut ids = BTreeSet::new();
    for r in &rows {
        assert!(
            ids.insert(r[0].clone()),
            "event ids are unique without duplicates"
        );
        let t = parse_time(&r[2]).unwrap_or_else(|| panic!("{}", r[2]));
        assert!(r[2].ends_with('Z'));
        per_user.entry(&r[1]).or_default().push(t);
        *types.entry(&r[3]).or_default() += 1;
        by_hour[((t / 3_600_000_000) % 24) as usize] += 1;
        in_span += u64::from((start..end + 3 * 3_600_000_000).contains(&t));
        assert!(r[6].parse::<std::net::Ipv4Addr>().is_ok(), "{}", r[6]);
        match r[3].as_str() {
            "purchase" => assert!(revenue_ok(&r[8]), "{}", r[8]),
            _ => assert!(r[8].is_empty()),
        }
    }
    assert_eq!(in_span, 60_000);
    // Funnel.
    let (pv, cart, buy) = (types["page_view"], types["add_to_cart"], types["purchase"]);
    assert!(pv > cart && cart > buy && buy > 100, "{types:?}");
    assert!(types["click"] > 1000);
    // Daily rhythm: the evening is busier than the night.
    assert!(by_hour[20] > 3 * by_hour[4], "{by_hour:?}");
    // Skewed activity: the busiest 1% of users have far more than 1% of the events.
    let mut counts: Vec<usize> = per_user.values().map(|v| v.len()).collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let top: usize = counts[..counts.len() / 100].iter().sum();
    assert!(top as f64 > 0.05 * 60_000.0, "top 1% of users: {top} events");
    // Gaps at the session timeout on purpose.
    let mut exact = 0;
    let mut under = 0;
    let mut over = 0;
    for times in per_user.values_mut() {
        times.sort_unstable();
        for w in times.windows(2) {
            let gap = w[1] - w[0];
            if gap == SESSION_TIMEOUT_US {
                exact += 1;
            } else if (SESSION_TIMEOUT_US - 1_000_000..SESSION_TIMEOUT_US).contains(&gap) {
                under += 1;
            } else if (SESSION_TIMEOUT_US + 1..=SESSION_TIMEOUT_US + 1_000_000).contains(&gap) {
                over += 1;
            }
        }
    }
    assert!(
        exact > 10 && under > 10 && over > 10,
        "exact {exact}, under {under}, over {over}"
    );
    // Addresses come from the geoip ranges (a few from gaps on purpose).
    let mapped = rows
        .iter()
        .filter(|r| geoip_lookup(u32::from(r[6].parse::<std::net::Ipv4Addr>().unwrap())).is_some())
        .count();
    assert!(
        mapped as f64 > 0.95 * rows.len() as f64 && mapped < rows.len(),
        "{mapped}"
    );
}

#[tokio::test]
async fn target_size_is_roughly_met() {
    for format in [OutputFormat::Csv, OutputFormat::Ndjson, OutputFormat::Parquet] {
        let o = GenerateOptions::from_target_size(3 << 20, format, 1).unwrap();
        assert_eq!(o.users, (o.events / 20).max(100));
        let (_d, report, _) = run(&o).await;
        let ratio = report.bytes as f64 / f64::from(3u32 << 20);
        assert!(
            (0.8..1.25).contains(&ratio),
            "{format}: {} events, {} bytes",
            o.events,
            report.bytes
        );
    }
}

#[tokio::test]
async fn rejects_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = GenerateOptions::new(10, 1);
    o.files = 0;
    assert!(generate(&storage(), &dir_uri(&dir), &o, None).await.is_err());
    let mut o = GenerateOptions::new(10, 1);
    o.dirty.duplicate = 1.5;
    assert!(generate(&storage(), &dir_uri(&dir), &o, None).await.is_err());
    // More files than events: the extra files hold only the header.
    let mut o = GenerateOptions::new(2, 1);
    o.files = 3;
    let report = generate(&storage(), &dir_uri(&dir), &o, None).await.unwrap();
    assert_eq!(report.file_events, vec![1, 1, 0]);
}

#[test]
fn geoip_fixture_is_sane() {
    let text = geoip_csv();
    assert!(text.len() < 1 << 20);
    assert!(text.starts_with("ip_start,ip_end,country_code\n"));
    let ranges = geoip_ranges();
    assert_eq!(ranges.len(), text.lines().count() - 1);
    let mut codes = BTreeSet::new();
    for r in ranges {
        assert!(r.start <= r.end);
        assert!(r.country_code.len() == 2 && r.country_code.bytes().all(|b| b.is_ascii_uppercase()));
        codes.insert(r.country_code);
    }
    for w in ranges.windows(2) {
        assert!(w[0].end < w[1].start, "{:?} overlaps {:?}", w[0], w[1]);
    }
    assert!((180..=220).contains(&codes.len()), "{}", codes.len());
    // There are gaps (addresses of no country).
    assert!(ranges.windows(2).any(|w| w[0].end + 1 < w[1].start));
    assert_eq!(geoip_lookup(0), None);
    assert_eq!(geoip_lookup(ranges[0].start), Some(ranges[0].country_code));
    assert_eq!(geoip_lookup(ranges[5].end), Some(ranges[5].country_code));

    let batch = geoip_batch().unwrap();
    assert_eq!(batch.num_rows(), ranges.len());
    assert_eq!(batch.schema(), geoip_schema());
}

/// Writes a sample to `$FLOE_GENERATE_OUT` (default /tmp/floe-generate-sample) for a look by eye:
/// `cargo test --lib generate::tests::write_sample -- --ignored`.
#[tokio::test]
#[ignore]
async fn write_sample() {
    let out = std::env::var("FLOE_GENERATE_OUT").unwrap_or_else(|_| "/tmp/floe-generate-sample".into());
    let events: u64 = std::env::var("FLOE_GENERATE_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    for format in [OutputFormat::Csv, OutputFormat::Ndjson, OutputFormat::Parquet] {
        let mut o = GenerateOptions::new(events, 42);
        o.format = format;
        o.files = 2;
        let t = std::time::Instant::now();
        let r = generate(&storage(), &format!("{out}/{format}"), &o, None)
            .await
            .unwrap();
        println!(
            "{format}: {} events, {} bytes in {:?}; {:?}",
            r.events,
            r.bytes,
            t.elapsed(),
            r.dirty
        );
    }
}

/// Prints estimated vs. actual bytes per event at a larger size:
/// `cargo test --lib generate::tests::estimate_vs_actual -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn estimate_vs_actual() {
    for format in [OutputFormat::Csv, OutputFormat::Ndjson, OutputFormat::Parquet] {
        let o = GenerateOptions::from_target_size(64 << 20, format, 3).unwrap();
        let (_d, report, _) = run(&o).await;
        println!(
            "{format}: target {} bytes, got {} ({} events)",
            64 << 20,
            report.bytes,
            report.events
        );
    }
}
