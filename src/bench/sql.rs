//! `floe bench --sql-only`: what `floe sql` reads from the configured store (S3 in the test
//! command's environment) for a query on one day of a year of daily partitions, with the WHERE
//! pushed into floe's scan and without, against the table's bytes (target: at most 2%), with the
//! answer compared to the same query over a local-disk twin of the table; and a whole-table query
//! given a third of the table's bytes as memory, which must complete.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::util::pretty::pretty_format_batches;
use serde::Serialize;

use crate::bench::report::{write_json_and_markdown, Target};
use crate::catalog::{Namespace, TableName};
use crate::config::Settings;
use crate::error::Result;
use crate::lakehouse::Floe;
use crate::query::{sql_with, SqlOptions};
use crate::table::{PartitionField, TableDefinition, WriteOptions};

/// What the SQL benchmark builds.
#[derive(Clone, Debug)]
pub struct SqlBenchOptions {
    /// Days of daily partitions (a month appended at a time).
    pub days: usize,
    /// Rows per day.
    pub rows_per_day: usize,
}

impl Default for SqlBenchOptions {
    fn default() -> Self {
        Self {
            days: 365,
            rows_per_day: 10_000,
        }
    }
}

/// One query's run.
#[derive(Clone, Debug, Serialize)]
pub struct SqlRun {
    /// Seconds, query to answer.
    pub seconds: f64,
    /// Bytes read from storage.
    pub bytes_read: u64,
    /// Rows answered.
    pub rows: usize,
}

/// The SQL benchmark's figures.
#[derive(Clone, Debug, Serialize)]
pub struct SqlBenchReport {
    /// Where the table lives.
    pub warehouse: String,
    /// Days and rows.
    pub days: usize,
    /// Rows in the table.
    pub rows: u64,
    /// Bytes of the table's data files.
    pub table_bytes: u64,
    /// The one-day query.
    pub one_day_query: String,
    /// With the WHERE pushed into floe's scan.
    pub pushed: SqlRun,
    /// Without (`--no-pushdown`).
    pub unpushed: SqlRun,
    /// Over the local-disk twin (DuckDB reading the Parquet files itself).
    pub local_disk: SqlRun,
    /// Bytes read with pushdown over the table's bytes.
    pub pushed_share_of_table: f64,
    /// The pushed answer equals the unpushed and the local-disk answers.
    pub answers_equal: bool,
    /// The whole-table query.
    pub whole_table_query: String,
    /// Memory it was given, MiB.
    pub whole_table_memory_mb: u64,
    /// Its run (`None`: it failed, see `whole_table_error`).
    pub whole_table: Option<SqlRun>,
    /// Why it failed.
    pub whole_table_error: Option<String>,
    /// The speed issue's SQL targets.
    pub targets: Vec<Target>,
}

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ),
        Field::new("revenue", DataType::Float64, true),
    ])
}

/// The rows of days `days`: `per_day` each, spread over the day.
fn rows(days: std::ops::Range<usize>, per_day: usize) -> RecordBatch {
    let start = 1_704_067_200_000_000i64; // 2024-01-01T00:00:00Z
    let day_us = 86_400_000_000i64;
    let n = days.len() * per_day;
    let first = days.start * per_day;
    let ids: Vec<i64> = (first as i64..(first + n) as i64).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| format!("u{}", (i * 7919) % 50_000)),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(ids.iter().map(|i| {
                let day = *i / per_day as i64;
                start + day * day_us + (*i % per_day as i64) * (day_us / per_day as i64)
            }))
            .with_timezone("+00:00"),
        ),
        Arc::new(Float64Array::from_iter_values(
            ids.iter().map(|i| (*i % 1000) as f64 * 0.01),
        )),
    ];
    RecordBatch::try_new(Arc::new(schema()), columns).expect("columns fit the schema")
}

async fn build(floe: &Floe, table: &TableName, options: &SqlBenchOptions) -> Result<()> {
    floe.ensure_namespace(table.namespace()).await?;
    floe.create_table(
        table,
        TableDefinition {
            schema: schema(),
            partition: vec![PartitionField::parse("day(event_time)")?],
            ..Default::default()
        },
    )
    .await?;
    let mut day = 0;
    while day < options.days {
        let end = (day + 30).min(options.days);
        let batch = rows(day..end, options.rows_per_day);
        let batches: Vec<RecordBatch> = (0..batch.num_rows())
            .step_by(65_536)
            .map(|o| batch.slice(o, 65_536.min(batch.num_rows() - o)))
            .collect();
        floe.append(
            table,
            futures::stream::iter(batches.into_iter().map(Ok)),
            &WriteOptions::default(),
        )
        .await?;
        day = end;
    }
    Ok(())
}

async fn run(floe: &Floe, query: &str, options: &SqlOptions) -> Result<(SqlRun, String)> {
    let t0 = Instant::now();
    let r = sql_with(floe, query, options).await?;
    let seconds = t0.elapsed().as_secs_f64();
    let rows = r.batches.iter().map(|b| b.num_rows()).sum();
    let text = pretty_format_batches(&r.batches)?.to_string();
    Ok((
        SqlRun {
            seconds,
            bytes_read: r.bytes_read,
            rows,
        },
        text,
    ))
}

/// Build the year on `floe`'s store and on a local twin, run the queries, and drop both.
pub async fn sql_benchmark(floe: &Floe, ns: &Namespace, options: &SqlBenchOptions) -> Result<SqlBenchReport> {
    let table = TableName::new(ns.clone(), "events")?;
    let twin_dir = tempfile::tempdir()?;
    let twin_settings = Settings {
        catalog_url: format!("sqlite:{}", twin_dir.path().join("catalog.db").display()),
        warehouse: twin_dir.path().join("warehouse").display().to_string(),
        ..Settings::default()
    };
    let (twin, _) = Floe::init(twin_settings).await?;
    build(floe, &table, options).await?;
    build(&twin, &table, options).await?;
    let result = measure(floe, &twin, &table, options).await;
    floe.drop_table(&table, true).await?;
    let _ = floe.drop_namespace(ns).await;
    result
}

async fn measure(
    floe: &Floe,
    twin: &Floe,
    table: &TableName,
    options: &SqlBenchOptions,
) -> Result<SqlBenchReport> {
    let loaded = floe.load_table(table).await?;
    let summary = loaded
        .current_snapshot()
        .map(|s| s.summary().additional_properties.clone())
        .unwrap_or_default();
    let number = |k: &str| summary.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let table_bytes = number("total-files-size");
    let rows = number("total-records");

    let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("a date")
        + chrono::Days::new((options.days / 2) as u64);
    let next = day + chrono::Days::new(1);
    let one_day_query = format!(
        "SELECT count(*)::BIGINT AS events, count(DISTINCT user_id)::BIGINT AS users, round(sum(revenue), 2) AS revenue \
         FROM {table} WHERE event_time >= '{day}' AND event_time < '{next}'"
    );
    let pushed_options = SqlOptions::default();
    let unpushed_options = SqlOptions {
        no_pushdown: true,
        ..Default::default()
    };
    let (pushed, pushed_answer) = run(floe, &one_day_query, &pushed_options).await?;
    let (unpushed, unpushed_answer) = run(floe, &one_day_query, &unpushed_options).await?;
    let (local_disk, local_answer) = run(twin, &one_day_query, &pushed_options).await?;
    let answers_equal = pushed_answer == unpushed_answer && pushed_answer == local_answer;
    let share = pushed.bytes_read as f64 / table_bytes.max(1) as f64;

    let whole_table_memory_mb = (table_bytes / 3 / (1 << 20)).max(1);
    let whole_table_query = format!(
        "SELECT user_id, count(*)::BIGINT AS events, round(sum(revenue), 2) AS revenue FROM {table} \
         WHERE id >= 0 GROUP BY user_id ORDER BY events DESC, user_id LIMIT 5"
    );
    let whole = run(
        floe,
        &whole_table_query,
        &SqlOptions {
            memory_mb: Some(whole_table_memory_mb),
            ..Default::default()
        },
    )
    .await;
    let (whole_table, whole_table_error) = match whole {
        Ok((r, _)) => (Some(r), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let targets = vec![
        Target {
            target: format!(
                "floe sql on one day of {} on the store reads at most 2% of the table's bytes",
                options.days
            ),
            measured: format!(
                "{:.2}% ({} of {} bytes; {} without pushdown)",
                share * 100.0,
                pushed.bytes_read,
                table_bytes,
                unpushed.bytes_read
            ),
            met: Some(share <= 0.02),
        },
        Target {
            target: "floe sql's one-day answer equals the local-disk path's".into(),
            measured: if answers_equal {
                "equal".into()
            } else {
                "different".into()
            },
            met: Some(answers_equal),
        },
        Target {
            target: "floe sql over a table three times its memory completes".into(),
            measured: match (&whole_table, &whole_table_error) {
                (Some(r), _) => format!(
                    "completed in {:.2} s with {whole_table_memory_mb} MiB for {:.1} MB of data files",
                    r.seconds,
                    table_bytes as f64 / 1e6
                ),
                (None, e) => format!("failed: {}", e.as_deref().unwrap_or("?")),
            },
            met: Some(whole_table.is_some()),
        },
    ];
    Ok(SqlBenchReport {
        warehouse: floe.warehouse().uri(),
        days: options.days,
        rows,
        table_bytes,
        one_day_query,
        pushed,
        unpushed,
        local_disk,
        pushed_share_of_table: share,
        answers_equal,
        whole_table_query,
        whole_table_memory_mb,
        whole_table,
        whole_table_error,
        targets,
    })
}

/// The report as Markdown.
pub fn sql_markdown(r: &SqlBenchReport) -> String {
    let mut s = String::new();
    s.push_str("# floe sql on the store\n\n");
    s.push_str(&format!(
        "A table of {} daily partitions ({} rows, {:.1} MB of data files) in {}.\n\n",
        r.days,
        r.rows,
        r.table_bytes as f64 / 1e6,
        r.warehouse
    ));
    s.push_str(&format!("One day: `{}`\n\n", r.one_day_query));
    s.push_str("| path | seconds | bytes read | share of the table |\n|---|---|---|---|\n");
    for (name, run) in [
        ("pushed down", &r.pushed),
        ("--no-pushdown", &r.unpushed),
        ("local disk (DuckDB reads the files)", &r.local_disk),
    ] {
        s.push_str(&format!(
            "| {name} | {:.3} | {} | {:.2}% |\n",
            run.seconds,
            run.bytes_read,
            run.bytes_read as f64 / r.table_bytes.max(1) as f64 * 100.0
        ));
    }
    s.push_str(&format!(
        "\nAnswers equal: {}.\n\nWhole table with {} MiB of memory: `{}`: {}\n\n",
        r.answers_equal,
        r.whole_table_memory_mb,
        r.whole_table_query,
        match (&r.whole_table, &r.whole_table_error) {
            (Some(run), _) => format!("{:.2} s", run.seconds),
            (None, e) => format!("failed: {}", e.as_deref().unwrap_or("?")),
        }
    ));
    s.push_str(&crate::bench::report::markdown::targets_markdown(&r.targets));
    s
}

/// Write report.json and report.md of the SQL benchmark to `dir`.
pub fn write_sql(r: &SqlBenchReport, dir: &std::path::Path) -> Result<[std::path::PathBuf; 2]> {
    write_json_and_markdown(r, &sql_markdown(r), dir)
}
