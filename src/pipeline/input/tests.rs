use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::*;
use crate::generate::{generate, GenerateOptions, OutputFormat};

const EDGE_CSV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pipeline/edge.csv");
const EDGE_NDJSON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pipeline/edge.ndjson");

fn storage() -> ObjectStorage {
    ObjectStorage::new(Default::default())
}

/// A raw row: the nine fields, source_file, source_line.
type Row = (Vec<Option<String>>, String, i64);
/// A reject row: source_file, source_line, record.
type Reject = (String, i64, String);

#[derive(Debug, Default, PartialEq)]
struct Read {
    rows: Vec<Row>,
    rejects: Vec<Reject>,
    /// Sizes of the raw and reject batches, in order of arrival.
    raw_batches: Vec<usize>,
    reject_batches: Vec<usize>,
}

async fn try_read(file: &InputFile, batch_rows: usize, chunk: usize) -> Result<Read> {
    let mut stream = read_input_chunked(&storage(), file, batch_rows, chunk);
    let mut out = Read::default();
    while let Some(batch) = stream.next().await {
        match batch? {
            InputBatch::Raw(b) => {
                assert_eq!(b.schema(), raw_schema());
                out.raw_batches.push(b.num_rows());
                let text = |i: usize| b.column(i).as_string::<i32>().clone();
                let fields: Vec<_> = (0..9).map(text).collect();
                let files = text(9);
                let lines = b.column(10).as_primitive::<Int64Type>();
                for r in 0..b.num_rows() {
                    let values = fields
                        .iter()
                        .map(|c| c.is_valid(r).then(|| c.value(r).to_string()))
                        .collect();
                    out.rows
                        .push((values, files.value(r).to_string(), lines.value(r)));
                }
            }
            InputBatch::Rejects(b) => {
                assert_eq!(b.schema(), rejects_schema());
                out.reject_batches.push(b.num_rows());
                let files = b.column(0).as_string::<i32>();
                let lines = b.column(1).as_primitive::<Int64Type>();
                let stages = b.column(2).as_string::<i32>();
                let reasons = b.column(3).as_string::<i32>();
                let records = b.column(4).as_string::<i32>();
                for r in 0..b.num_rows() {
                    assert_eq!(stages.value(r), "ingest");
                    assert_eq!(reasons.value(r), "malformed_record");
                    out.rejects.push((
                        files.value(r).to_string(),
                        lines.value(r),
                        records.value(r).to_string(),
                    ));
                }
            }
        }
    }
    // Each kind in file order.
    assert!(out.rows.windows(2).all(|w| w[0].2 < w[1].2));
    assert!(out.rejects.windows(2).all(|w| w[0].1 < w[1].1));
    Ok(out)
}

async fn read(file: &InputFile, batch_rows: usize, chunk: usize) -> Read {
    try_read(file, batch_rows, chunk).await.unwrap()
}

fn local(path: &str) -> InputFile {
    InputFile {
        uri: format!("file://{path}"),
        format: InputFormat::from_name(path).unwrap(),
        size: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
    }
}

fn row(values: [Option<&str>; 9]) -> Vec<Option<String>> {
    values.iter().map(|v| v.map(str::to_string)).collect()
}

fn s(v: &str) -> Option<&str> {
    Some(v)
}

/// Write `bytes` to `name` in `dir` and return it as an input file.
fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> InputFile {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    local(path.to_str().unwrap())
}

const HEADER: &str = "event_id,user_id,event_time,event_type,url,referrer,ip,user_agent,revenue\n";

#[tokio::test]
async fn csv_edge_cases() {
    let bytes = std::fs::read(EDGE_CSV).unwrap();
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the fixture must hold invalid UTF-8"
    );
    assert!(
        bytes.windows(2).any(|w| w == b"\r\n"),
        "the fixture must hold CRLF line ends"
    );
    let file = local(EDGE_CSV);
    let got = read(&file, 1000, usize::MAX).await;
    let uri = format!("file://{EDGE_CSV}");
    // Columns are mapped by header name (the fixture's header swaps event_id and user_id).
    let expected_rows = vec![
        (
            row([
                s("e1"),
                s("u1"),
                s("2024-03-01T10:00:00Z"),
                s("page_view"),
                s("/home"),
                s(""),
                s("1.2.3.4"),
                s("Mozilla"),
                s(""),
            ]),
            uri.clone(),
            1,
        ),
        (
            row([
                s("e2"),
                s("u2"),
                s("2024-03-01T10:00:01Z"),
                s("click"),
                s("/a,b"),
                s("line1\nline2, \"quoted\"\r\nline3"),
                s("5.6.7.8"),
                s("UA"),
                s("12.50"),
            ]),
            uri.clone(),
            2,
        ),
        (
            row([
                s(" e6 "),
                s(" u6 "),
                s("2024-03-01T10:00:05Z"),
                s(" click "),
                s("/w"),
                s(" "),
                s(" 9.9.9.9 "),
                s(" UA "),
                s("  3.5 "),
            ]),
            uri.clone(),
            7,
        ),
        (
            row([
                s("e7"),
                s("u7"),
                s("2024-03-01T10:00:06Z"),
                s("page_view"),
                s(""),
                s(""),
                s(""),
                s("a \"b\""),
                s(""),
            ]),
            uri.clone(),
            8,
        ),
    ];
    assert_eq!(got.rows, expected_rows);
    let expected_rejects = vec![
        (
            uri.clone(),
            3,
            "u3,e3,2024-03-01T10:00:02Z,click,/x,,1.1.1.1,UA".to_string(),
        ),
        (uri.clone(), 4, String::new()),
        (
            uri.clone(),
            5,
            "u4,e4,2024-03-01T10:00:03Z,purchase,/y,,1.1.1.1,UA,1.00,extra".to_string(),
        ),
        (
            uri.clone(),
            6,
            "u5,e5,2024-03-01T10:00:04Z,click,/z,,1.1.1.1,Caf\u{FFFD} \u{FFFD},".to_string(),
        ),
    ];
    assert_eq!(got.rejects, expected_rejects);
    // Nothing is lost: 8 records after the header.
    assert_eq!(got.rows.len() + got.rejects.len(), 8);
}

#[tokio::test]
async fn csv_chunk_boundaries_do_not_matter() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = BOM.to_vec();
    bytes.extend_from_slice(&std::fs::read(EDGE_CSV).unwrap());
    bytes.extend_from_slice(b"u9,e9,t,click,,,,\"open quote,\r\nto the end\r\n");
    let with_bom = write(&dir, "bom.csv", &bytes);
    let plain = local(EDGE_CSV);
    let whole = read(&plain, 1000, usize::MAX).await;
    let whole_bom = read(&with_bom, 1000, usize::MAX).await;
    assert_eq!(whole_bom.rows.len(), whole.rows.len());
    assert_eq!(
        whole_bom.rejects.last().map(|r| (r.1, r.2.as_str())),
        Some((9, "u9,e9,t,click,,,,\"open quote,\r\nto the end"))
    );
    for chunk in [1, 2, 3, 5, 7, 64] {
        assert_eq!(read(&plain, 1000, chunk).await, whole, "chunk size {chunk}");
        assert_eq!(
            read(&with_bom, 1000, chunk).await,
            whole_bom,
            "chunk size {chunk} with BOM"
        );
    }
}

#[tokio::test]
async fn csv_whole_file_rules() {
    let dir = tempfile::tempdir().unwrap();
    // Header only (with or without its newline): no rows.
    for (name, text) in [("h1.csv", HEADER), ("h2.csv", HEADER.trim_end())] {
        let got = read(&write(&dir, name, text.as_bytes()), 10, usize::MAX).await;
        assert_eq!((got.rows.len(), got.rejects.len()), (0, 0));
    }
    // Empty file.
    let err = try_read(&write(&dir, "empty.csv", b""), 10, usize::MAX)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("is empty"), "{err}");
    // Headers that do not name exactly the nine fields.
    for (i, header) in [
        "event_id,user_id,event_time,event_type,url,referrer,ip,user_agent\n",
        "event_id,user_id,event_time,event_type,url,referrer,ip,user_agent,revenue,extra\n",
        "event_id,user_id,event_time,event_type,url,referrer,ip,user_agent,event_id\n",
        "event_id,user_id,event_time,event_type,url,referrer,ip,user_agent, revenue\n",
        "EVENT_ID,user_id,event_time,event_type,url,referrer,ip,user_agent,revenue\n",
        "\n",
    ]
    .iter()
    .enumerate()
    {
        let text = format!("{header}e1,u1,t,click,,,,,\n");
        let file = write(&dir, &format!("bad{i}.csv"), text.as_bytes());
        let err = try_read(&file, 10, usize::MAX).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{header:?}");
        assert!(err.message().contains("header must name exactly"), "{err}");
    }
    // A BOM alone: no header.
    let err = try_read(&write(&dir, "bom.csv", BOM), 10, 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // Quoted header names, last record without newline, trailing blank line, lone CR at the end.
    let text = format!(
        "\"event_id\",{}e1,u1,t,click,,,,,\n\ne2,u2,t,click,,,,,\r",
        &HEADER[9..]
    );
    let got = read(&write(&dir, "ok.csv", text.as_bytes()), 10, usize::MAX).await;
    assert_eq!(got.rows.iter().map(|r| r.2).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(got.rows[1].0[8], Some(String::new()));
    assert_eq!(
        got.rejects
            .iter()
            .map(|r| (r.1, r.2.as_str()))
            .collect::<Vec<_>>(),
        vec![(2, "")]
    );
}

#[tokio::test]
async fn ndjson_edge_cases() {
    let file = local(EDGE_NDJSON);
    let uri = file.uri.clone();
    let got = read(&file, 1000, usize::MAX).await;
    let rows: Vec<_> = got.rows.iter().map(|r| (r.0.clone(), r.2)).collect();
    assert!(got.rows.iter().all(|r| r.1 == uri));
    assert_eq!(
        rows,
        vec![
            (
                row([
                    s("e1"),
                    s("u1"),
                    s("2024-03-01T10:00:00Z"),
                    s("purchase"),
                    s("/a"),
                    None,
                    s("1.2.3.4"),
                    s("UA"),
                    s("12.50"),
                ]),
                1
            ),
            (
                row([
                    s("e2"),
                    s("u2"),
                    s("2024-03-01T10:00:01Z"),
                    s("click"),
                    None,
                    None,
                    None,
                    None,
                    s("true")
                ]),
                2
            ),
            (
                row([
                    s("e7"),
                    s("ué \"q\""),
                    s(" t "),
                    s("click"),
                    s(""),
                    s(""),
                    s(""),
                    s(""),
                    s("-1e3"),
                ]),
                7
            ),
            // Duplicate key: the last one wins; unknown keys (even arrays) are ignored.
            (
                row([s("e10b"), s("u10"), None, None, None, None, None, None, None]),
                10
            ),
        ]
    );
    let rejects: Vec<_> = got.rejects.iter().map(|r| (r.1, r.2.as_str())).collect();
    assert_eq!(
        rejects,
        vec![
            (3, r#"{"event_id":"e3","user_id":{"id":3}}"#),
            (4, r#"{"event_id":"e4","user_id":"u4","#),
            (5, ""),
            (6, "[1,2,3]"),
            (8, "{\"event_id\":\"e8\u{FFFD}\",\"user_id\":\"u8\"}"),
            (9, r#"{"event_id":"e9","user_id":["u9"]}"#),
        ]
    );
    assert_eq!(got.rows.len() + got.rejects.len(), 10);
    for chunk in [1, 2, 3, 7, 64] {
        assert_eq!(read(&file, 1000, chunk).await, got, "chunk size {chunk}");
    }
    // Batch sizes.
    let small = read(&file, 2, 5).await;
    assert_eq!(small.raw_batches, vec![2, 2]);
    assert_eq!(small.reject_batches, vec![2, 2, 2]);
}

#[tokio::test]
async fn ndjson_whole_file_rules() {
    let dir = tempfile::tempdir().unwrap();
    let err = try_read(&write(&dir, "e.ndjson", b""), 10, 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // One newline: one blank (malformed) line; a BOM is skipped.
    let got = read(&write(&dir, "nl.jsonl", b"\n"), 10, 1).await;
    assert_eq!((got.rows.len(), got.rejects.len()), (0, 1));
    let mut bytes = BOM.to_vec();
    bytes.extend_from_slice(b"{\"event_id\":1}\n{}");
    let got = read(&write(&dir, "bom.json", &bytes), 10, 1).await;
    assert_eq!(
        got.rows.iter().map(|r| (r.0[0].clone(), r.2)).collect::<Vec<_>>(),
        vec![(Some("1".to_string()), 1), (None, 2)]
    );
}

/// Write a Parquet file with Int64, Utf8 and Float64 columns and an extra one, in row groups of 3.
fn write_parquet(path: &std::path::Path, rows: i64, with_revenue: bool) {
    let mut fields = vec![
        Field::new("extra", DataType::Int32, false),
        Field::new("event_id", DataType::Int64, false),
    ];
    let n = rows as usize;
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(arrow::array::Int32Array::from_iter_values(0..rows as i32)),
        Arc::new(Int64Array::from_iter_values(100..100 + rows)),
    ];
    for name in &FIELDS[1..8] {
        fields.push(Field::new(*name, DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from_iter(
            (0..n).map(|i| (i % 4 != 1).then(|| format!("{name}-{i}"))),
        )));
    }
    if with_revenue {
        fields.push(Field::new("revenue", DataType::Float64, true));
        columns.push(Arc::new(arrow::array::Float64Array::from_iter(
            (0..n).map(|i| (i % 2 == 0).then_some(i as f64 + 0.5)),
        )));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(3))
        .build();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[tokio::test]
async fn parquet_is_read_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.parquet");
    write_parquet(&path, 10, true);
    let file = local(path.to_str().unwrap());
    let got = read(&file, 4, usize::MAX).await;
    assert_eq!(got.raw_batches.iter().sum::<usize>(), 10);
    assert!(got.raw_batches.iter().all(|&n| n <= 4), "{:?}", got.raw_batches);
    assert!(got.rejects.is_empty());
    for (i, (values, uri, line)) in got.rows.iter().enumerate() {
        assert_eq!(*line, i as i64 + 1);
        assert_eq!(uri, &file.uri);
        assert_eq!(values[0], Some(format!("{}", 100 + i)));
        assert_eq!(values[1], (i % 4 != 1).then(|| format!("user_id-{i}")));
        assert_eq!(values[7], (i % 4 != 1).then(|| format!("user_agent-{i}")));
        assert_eq!(values[8], (i % 2 == 0).then(|| format!("{}.5", i)));
    }
    // A missing column is an error for the whole file.
    let missing = dir.path().join("missing.parquet");
    write_parquet(&missing, 2, false);
    let err = try_read(&local(missing.to_str().unwrap()), 4, usize::MAX)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("revenue"), "{err}");
    // An empty file too.
    let empty = write(&dir, "empty.parquet", b"");
    let err = try_read(&empty, 4, usize::MAX).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn resolves_files_directories_and_globs() {
    let st = storage();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    for name in [
        "b.csv",
        "a.NDJSON",
        "c.parquet",
        "d.jsonl",
        "e.json",
        "notes.txt",
        "_SUCCESS",
    ] {
        std::fs::write(dir.path().join(name), b"x").unwrap();
    }
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/z.csv"), b"x").unwrap();
    let names = |files: &[InputFile]| -> Vec<String> {
        files
            .iter()
            .map(|f| f.uri.rsplit('/').next().unwrap().to_string())
            .collect()
    };

    let all = resolve_inputs(&st, &root).await.unwrap();
    assert_eq!(
        names(&all),
        ["a.NDJSON", "b.csv", "c.parquet", "d.jsonl", "e.json"]
    );
    assert_eq!(all[0].uri, format!("file://{root}/a.NDJSON"));
    assert_eq!(
        all.iter().map(|f| f.format).collect::<Vec<_>>(),
        [
            InputFormat::Ndjson,
            InputFormat::Csv,
            InputFormat::Parquet,
            InputFormat::Ndjson,
            InputFormat::Ndjson
        ]
    );
    assert_eq!(all[1].size, 1);
    // Trailing slash and file:// URI.
    assert_eq!(
        resolve_inputs(&st, &format!("file://{root}/")).await.unwrap(),
        all
    );

    let csv = resolve_inputs(&st, &format!("{root}/*.csv")).await.unwrap();
    assert_eq!(names(&csv), ["b.csv"]);
    let globbed = resolve_inputs(&st, &format!("{root}/[a-c].*")).await.unwrap();
    assert_eq!(names(&globbed), ["a.NDJSON", "b.csv", "c.parquet"]);
    let globbed = resolve_inputs(&st, &format!("{root}/?.json*")).await.unwrap();
    assert_eq!(names(&globbed), ["d.jsonl", "e.json"]);

    let one = resolve_inputs(&st, &format!("{root}/sub/../b.csv"))
        .await
        .unwrap();
    assert_eq!(
        one,
        vec![InputFile {
            uri: format!("file://{root}/b.csv"),
            format: InputFormat::Csv,
            size: 1
        }]
    );

    // Relative paths are made absolute against the working directory (the crate root when tests
    // run; compared with it rather than the compile-time path, which a shared build cache may hold
    // from another checkout).
    let rel = resolve_inputs(&st, "fixtures/pipeline/edge.csv").await.unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        rel[0].uri,
        format!("file://{}/fixtures/pipeline/edge.csv", cwd.display())
    );

    for missing in [
        format!("{root}/nope.csv"),
        format!("{root}/nope"),
        format!("{root}/*.xml"),
    ] {
        let err = resolve_inputs(&st, &missing).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{missing}: {err}");
    }
    let empty = tempfile::tempdir().unwrap();
    let err = resolve_inputs(&st, empty.path().to_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    for unknown in [format!("{root}/notes.txt"), format!("{root}/n*")] {
        let err = resolve_inputs(&st, &unknown).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{unknown}: {err}");
    }
    let err = resolve_inputs(&st, "ftp://host/x.csv").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// Generated dirty data: every record is raw or rejected, malformed ones exactly as many as the
/// generator made, batches bounded.
#[tokio::test]
async fn generated_files_lose_nothing() {
    for format in [OutputFormat::Csv, OutputFormat::Ndjson, OutputFormat::Parquet] {
        let dir = tempfile::tempdir().unwrap();
        let mut options = GenerateOptions::new(3_000, 7);
        options.format = format;
        options.files = 2;
        let report = generate(&storage(), dir.path().to_str().unwrap(), &options, None)
            .await
            .unwrap();
        let files = resolve_inputs(&storage(), dir.path().to_str().unwrap())
            .await
            .unwrap();
        assert_eq!(files.len(), 2);
        let (mut raw, mut rejected) = (0, 0);
        for (file, expected) in files.iter().zip(&report.file_events) {
            let got = read(
                file,
                256,
                if format == OutputFormat::Parquet {
                    usize::MAX
                } else {
                    1000
                },
            )
            .await;
            assert!(got
                .raw_batches
                .iter()
                .chain(&got.reject_batches)
                .all(|&n| n <= 256));
            let n = (got.rows.len() + got.rejects.len()) as u64;
            assert_eq!(n, *expected, "{format:?}");
            let mut lines: Vec<i64> = got
                .rows
                .iter()
                .map(|r| r.2)
                .chain(got.rejects.iter().map(|r| r.1))
                .collect();
            lines.sort();
            assert_eq!(lines, (1..=n as i64).collect::<Vec<_>>());
            raw += got.rows.len() as u64;
            rejected += got.rejects.len() as u64;
        }
        assert_eq!(raw + rejected, 3_000, "{format:?}");
        assert_eq!(rejected, report.dirty.malformed, "{format:?}");
        if format != OutputFormat::Parquet {
            assert!(rejected > 0, "{format:?}");
        }
    }
}

/// The rows and rejects of every stream of a split read, in line order.
async fn read_split(file: &InputFile, parts: usize, min_bytes: u64) -> (usize, Vec<Row>, Vec<Reject>) {
    let streams = read_input_split_at(&storage(), file, 7, parts, min_bytes)
        .await
        .unwrap();
    let n = streams.len();
    let (mut rows, mut rejects) = (Vec::new(), Vec::new());
    for mut stream in streams {
        while let Some(batch) = stream.next().await {
            match batch.unwrap() {
                InputBatch::Raw(b) => {
                    let text = |i: usize| b.column(i).as_string::<i32>().clone();
                    let lines = b.column(10).as_primitive::<Int64Type>();
                    for r in 0..b.num_rows() {
                        let values = (0..9)
                            .map(|c| {
                                let col = text(c);
                                col.is_valid(r).then(|| col.value(r).to_string())
                            })
                            .collect();
                        rows.push((values, text(9).value(r).to_string(), lines.value(r)));
                    }
                }
                InputBatch::Rejects(b) => {
                    let lines = b.column(1).as_primitive::<Int64Type>();
                    let records = b.column(4).as_string::<i32>();
                    for r in 0..b.num_rows() {
                        rejects.push((
                            b.column(0).as_string::<i32>().value(r).to_string(),
                            lines.value(r),
                            records.value(r).to_string(),
                        ));
                    }
                }
            }
        }
    }
    rows.sort_by_key(|r| r.2);
    rejects.sort_by_key(|r| r.1);
    (n, rows, rejects)
}

#[tokio::test]
async fn a_csv_split_into_byte_ranges_reads_exactly_as_one_range() {
    // Quoted fields with commas, CRLF and LF line breaks and doubled quotes, a `"` inside an
    // unquoted field, CRLF line ends, blank lines, records with too many fields and invalid UTF-8,
    // a byte order mark, and an unterminated quote at the very end.
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(HEADER.replace('\n', "\r\n").as_bytes());
    for i in 0..400 {
        let record = match i % 9 {
            0 => format!("e{i},u{i},2024-03-01T10:00:00Z,click,\"/a,\r\nb\",\"line1\nline2, \"\"q\"\"\n\",1.2.3.4,UA,1.5\r\n"),
            1 => format!("e{i},u{i},2024-03-01T10:00:00Z,view,/p\"x,,1.1.1.1,\"UA \"\"x\"\"\",\n"),
            2 => "\r\n".to_string(),
            3 => format!("e{i},u{i},t,click,/x,,ip,UA,1,extra\n"),
            4 => format!("e{i},u\u{e9}{i},t,click,\"multi\n\n\nline\",,ip,UA,\r\n"),
            5 => format!("e{i},u{i},t,click,/x,,ip,UA,2\n"),
            _ => format!("e{i},u{i},2024-03-01T10:00:{:02}Z,click,/y,r,ip,\"a\"\"b\",{i}\n", i % 60),
        };
        bytes.extend_from_slice(record.as_bytes());
        if i % 9 == 5 {
            bytes.push(0xFF); // invalid UTF-8 in an otherwise well-formed record
            bytes.extend_from_slice(b",x,t,click,/x,,ip,UA,\n");
        }
    }
    bytes.extend_from_slice(b"e-last,u,t,click,\"never closed,\r\n");
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "ranges.csv", &bytes);
    let whole = read(&file, 7, usize::MAX).await;
    assert!(!whole.rejects.is_empty() && whole.rows.len() > 200);
    for parts in [2, 3, 5, 8, 13, 64] {
        let (streams, rows, rejects) = read_split(&file, parts, 0).await;
        assert!(streams > 1, "{parts} parts: split into {streams}");
        assert_eq!(rows, whole.rows, "{parts} parts: rows");
        assert_eq!(rejects, whole.rejects, "{parts} parts: rejects");
    }
    // Under the size threshold, or NDJSON: one stream.
    assert_eq!(read_split(&file, 4, bytes.len() as u64 + 1).await.0, 1);
}
