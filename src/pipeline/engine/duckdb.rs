//! The DuckDB engine: the pinned input snapshots stream into an embedded DuckDB database through the
//! Arrow appender, each stage is DuckDB SQL (the field rules as SQL macros), and results stream back
//! out as Arrow batches. DuckDB spills to a temporary directory beyond its memory limit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use async_trait::async_trait;
use duckdb::{Config, Connection};
use futures::{StreamExt, TryStreamExt};

use super::{Engine, PinnedTable, Rows, Stage};
use crate::error::{Error, ErrorKind, Result};
use crate::table::{ScanOptions, Table};

/// DuckDB, embedded.
#[derive(Clone, Debug)]
pub struct DuckDbEngine {
    memory_limit: String,
}

impl Default for DuckDbEngine {
    fn default() -> Self {
        Self {
            memory_limit: "1GB".to_string(),
        }
    }
}

impl DuckDbEngine {
    /// An engine with DuckDB's `memory_limit` (for example `512MB`).
    pub fn with_memory_limit(limit: impl Into<String>) -> Self {
        Self {
            memory_limit: limit.into(),
        }
    }
}

pub(crate) fn duck_error(e: duckdb::Error) -> Error {
    Error::new(ErrorKind::Engine, format!("duckdb: {e}"))
}

/// The DuckDB column type of an Arrow type (the ones the pipeline's tables use).
fn sql_type(t: &DataType) -> Result<String> {
    Ok(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Date32 => "DATE".into(),
        // Instants are UTC wall times inside DuckDB (TIMESTAMPTZ would need the ICU extension).
        DataType::Timestamp(TimeUnit::Microsecond, _) => "TIMESTAMP".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        other => {
            return Err(Error::new(
                ErrorKind::Engine,
                format!("duckdb engine: no column type for {other}"),
            ))
        }
    })
}

pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a DuckDB string literal.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The field rules as DuckDB macros (see src/pipeline/README.md; they match `rules.rs`).
const MACROS: &str = r#"
CREATE MACRO floe_ws_trim(s) AS trim(s, ' ' || chr(9) || chr(10) || chr(13));
CREATE MACRO floe_offset_min(t) AS (
    CASE WHEN regexp_full_match(t, '.*[+-]\d{2}:\d{2}')
    THEN (CASE WHEN substr(right(t, 6), 1, 1) = '-' THEN -1 ELSE 1 END)
         * (CAST(substr(right(t, 6), 2, 2) AS INTEGER) * 60 + CAST(right(t, 2) AS INTEGER))
    ELSE 0 END);
CREATE MACRO floe_event_time_t(t) AS (
    CASE WHEN regexp_full_match(t, '\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?')
          AND abs(floe_offset_min(t)) <= 18 * 60
          AND (NOT regexp_full_match(t, '.*[+-]\d{2}:\d{2}') OR CAST(right(t, 2) AS INTEGER) < 60)
    THEN try_strptime(
            substr(t, 1, 19) || '.' || left(rpad(coalesce(regexp_extract(t, '\.(\d+)', 1), ''), 6, '0'), 6),
            '%Y-%m-%dT%H:%M:%S.%f')
         - to_minutes(floe_offset_min(t))
    END);
CREATE MACRO floe_event_time(s) AS floe_event_time_t(floe_ws_trim(s));
CREATE MACRO floe_revenue_ok(r) AS (
    r IS NULL OR r = '' OR regexp_full_match(floe_ws_trim(r), '\d{1,10}(\.\d{1,2})?'));
CREATE MACRO floe_revenue(r) AS (
    CASE WHEN r IS NOT NULL AND r <> '' AND regexp_full_match(floe_ws_trim(r), '\d{1,10}(\.\d{1,2})?')
    THEN CAST(floe_ws_trim(r) AS DECIMAL(12, 2)) END);
CREATE MACRO floe_ipv4(ip) AS (
    CASE WHEN regexp_full_match(ip, '(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}')
    THEN CAST(split_part(ip, '.', 1) AS BIGINT) * 16777216 + CAST(split_part(ip, '.', 2) AS BIGINT) * 65536
         + CAST(split_part(ip, '.', 3) AS BIGINT) * 256 + CAST(split_part(ip, '.', 4) AS BIGINT) END);
"#;

/// `floe_record_json(...)`: the nine fields as a JSON object, escaped exactly as serde_json does (the
/// DataFusion engine's `rules::record_json`), without DuckDB's json extension.
fn record_json_macros() -> String {
    let mut escaped = "replace(replace(v, '\\', '\\\\'), '\"', '\\\"')".to_string();
    for c in 1u8..32 {
        let esc = match c {
            8 => "\\b".to_string(),
            9 => "\\t".to_string(),
            10 => "\\n".to_string(),
            12 => "\\f".to_string(),
            13 => "\\r".to_string(),
            _ => format!("\\u{c:04x}"),
        };
        escaped = format!("replace({escaped}, chr({c}), '{esc}')");
    }
    let fields = crate::pipeline::input::FIELDS;
    let args: Vec<String> = (0..fields.len()).map(|i| format!("f{i}")).collect();
    let body: Vec<String> = fields
        .iter()
        .enumerate()
        .map(|(i, name)| format!("'\"{name}\":' || floe_json_str(f{i})"))
        .collect();
    format!(
        "CREATE MACRO floe_json_str(v) AS CASE WHEN v IS NULL THEN 'null' ELSE '\"' || {escaped} || '\"' END;\n\
         CREATE MACRO floe_record_json({}) AS '{{' || {} || '}}';",
        args.join(", "),
        body.join(" || ',' || ")
    )
}

impl DuckDbEngine {
    pub(crate) fn open(&self) -> Result<(Connection, tempfile::TempDir)> {
        let spill = tempfile::tempdir()?;
        let config = Config::default()
            .max_memory(&self.memory_limit)
            .and_then(|c| c.with("temp_directory", spill.path().display().to_string()))
            .and_then(|c| c.threads(2))
            .and_then(|c| c.with("preserve_insertion_order", "false"))
            .map_err(duck_error)?;
        // A database file in the spill directory, not an in-memory one: the loaded inputs then live on
        // disk and only DuckDB's buffer pool (`memory_limit`) is resident.
        let conn =
            Connection::open_with_flags(spill.path().join("stage.duckdb"), config).map_err(duck_error)?;
        conn.execute_batch(MACROS).map_err(duck_error)?;
        conn.execute_batch(&record_json_macros()).map_err(duck_error)?;
        Ok((conn, spill))
    }
}

/// A DuckDB query reading `snapshot_id` of `table` with DuckDB's own Parquet reader, when it can be
/// read that way: every data file on local disk, no delete files, and one schema in the table's
/// history (so column names are field ids). Timestamps come out as UTC wall times, as elsewhere in
/// the engine. `None` when the rows must be streamed in instead (S3 locations, deletes, evolved
/// schemas, an empty snapshot).
pub(crate) async fn local_parquet_query(table: &Table, snapshot_id: i64) -> Result<Option<String>> {
    let metadata = table.metadata();
    let Some(snapshot) = metadata.snapshot_by_id(snapshot_id) else {
        return Ok(None);
    };
    if metadata.schemas_iter().count() != 1 {
        return Ok(None);
    }
    let manifests = table.manifests(snapshot).await?;
    if manifests
        .iter()
        .any(|m| m.content == iceberg::spec::ManifestContentType::Deletes)
    {
        return Ok(None);
    }
    let files = table.live_data_files(Some(snapshot)).await?;
    let mut paths = Vec::with_capacity(files.len());
    for f in &files {
        let path = f.file_path();
        let Some(local) = path
            .strip_prefix("file://")
            .or(path.starts_with('/').then_some(path))
        else {
            return Ok(None);
        };
        paths.push(literal(local));
    }
    if paths.is_empty() {
        return Ok(None);
    }
    let columns = table
        .arrow_schema()?
        .fields()
        .iter()
        .map(|f| {
            let c = quote(f.name());
            if matches!(f.data_type(), DataType::Timestamp(_, Some(_))) {
                format!("CAST({c} AS TIMESTAMP) AS {c}")
            } else {
                c
            }
        })
        .collect::<Vec<_>>();
    Ok(Some(format!(
        "SELECT {} FROM read_parquet([{}])",
        columns.join(", "),
        paths.join(", ")
    )))
}

/// Make a pinned input readable as a DuckDB table of the same name: a view over its Parquet files
/// where DuckDB can read them itself, otherwise a table the rows stream into.
async fn load(conn: &Arc<Mutex<Connection>>, name: &str, input: &PinnedTable) -> Result<()> {
    if let Some(id) = input.snapshot_id {
        if let Some(q) = local_parquet_query(&input.table, id).await? {
            let c = conn.lock().expect("duckdb connection");
            return c
                .execute_batch(&format!("CREATE VIEW {} AS {q}", quote(name)))
                .map_err(duck_error);
        }
    }
    let batches = match input.snapshot_id {
        Some(id) => {
            let options = ScanOptions {
                at: Some(crate::table::At::Snapshot(id)),
                ..Default::default()
            };
            Some(crate::table::scan::scan(&input.table, &options).await?.batches)
        }
        None => None,
    };
    load_stream(conn, None, name, &input.table.arrow_schema()?, batches).await
}

/// Create `schema.table` (or `table` in DuckDB's main schema) with the columns of `arrow_schema` and
/// append `batches` through the Arrow appender.
pub(crate) async fn load_stream(
    conn: &Arc<Mutex<Connection>>,
    schema: Option<&str>,
    table: &str,
    arrow_schema: &SchemaRef,
    batches: Option<futures::stream::BoxStream<'static, Result<RecordBatch>>>,
) -> Result<()> {
    let columns = arrow_schema
        .fields()
        .iter()
        .map(|f| Ok(format!("{} {}", quote(f.name()), sql_type(f.data_type())?)))
        .collect::<Result<Vec<_>>>()?;
    let qualified = match schema {
        Some(s) => format!("{}.{}", quote(s), quote(table)),
        None => quote(table),
    };
    {
        let c = conn.lock().expect("duckdb connection");
        if let Some(s) = schema {
            c.execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote(s)))
                .map_err(duck_error)?;
        }
        c.execute_batch(&format!("CREATE TABLE {qualified} ({})", columns.join(", ")))
            .map_err(duck_error)?;
    }
    let Some(mut batches) = batches else { return Ok(()) };
    while let Some(batch) = batches.try_next().await? {
        let conn = conn.clone();
        let (schema, table) = (schema.unwrap_or("main").to_string(), table.to_string());
        let batch = with_zone(&batch, None)?;
        tokio::task::spawn_blocking(move || -> Result<()> {
            let c = conn.lock().expect("duckdb connection");
            let mut app = c.appender_to_db(&table, &schema).map_err(duck_error)?;
            app.append_record_batch(batch).map_err(duck_error)?;
            app.flush().map_err(duck_error)
        })
        .await
        .map_err(|e| Error::internal(format!("duckdb loader: {e}")))??;
    }
    Ok(())
}

/// The batch with every microsecond timestamp column relabelled to `zone` (the values are UTC
/// either way; only the label changes).
pub(crate) fn with_zone(batch: &RecordBatch, zone: Option<&str>) -> Result<RecordBatch> {
    let target = DataType::Timestamp(TimeUnit::Microsecond, zone.map(Into::into));
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if matches!(f.data_type(), DataType::Timestamp(TimeUnit::Microsecond, _)) && f.data_type() != &target
        {
            fields.push(f.as_ref().clone().with_data_type(target.clone()));
            columns.push(arrow::compute::cast(c, &target)?);
        } else {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )?)
}

/// Run a query on its own thread; its batches arrive through a bounded channel (back-pressure).
fn query(conn: &Arc<Mutex<Connection>>, sql: String) -> Result<Rows> {
    let conn = conn
        .lock()
        .expect("duckdb connection")
        .try_clone()
        .map_err(duck_error)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(4);
    std::thread::spawn(move || {
        let run = || -> Result<()> {
            let mut stmt = conn.prepare(&sql).map_err(duck_error)?;
            // Streamed, not materialized: DuckDB produces chunks as the writer takes them, so the
            // result never sits whole in memory.
            for batch in stmt.stream_arrow([]).map_err(duck_error)? {
                if tx.blocking_send(with_zone(&batch, Some("+00:00"))).is_err() {
                    break; // the consumer went away
                }
            }
            Ok(())
        };
        // The streaming iterator panics when a fetch fails mid-way: that must end the stream with
        // an error, never look like its end.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|p| {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown failure".into());
            Err(Error::new(
                ErrorKind::Engine,
                format!("duckdb: query failed while streaming: {what}"),
            ))
        });
        if let Err(e) = outcome {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Ok(tokio_stream_from(rx))
}

fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<Result<RecordBatch>>) -> Rows {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

#[async_trait]
impl Engine for DuckDbEngine {
    fn name(&self) -> &'static str {
        "duckdb"
    }

    async fn run(&self, stage: Stage, inputs: &BTreeMap<&'static str, PinnedTable>) -> Result<Vec<Rows>> {
        let (conn, spill) = self.open()?;
        let conn = Arc::new(Mutex::new(conn));
        for (name, input) in inputs {
            load(&conn, name, input).await?;
        }
        if stage == Stage::Ingest {
            return Err(Error::internal(
                "ingest runs through floe's input reader, not an engine",
            ));
        }
        let queries = super::sql::DUCKDB.stage(stage);
        // The spill directory lives until the last output stream is dropped.
        let spill = Arc::new(spill);
        let mut out = Vec::new();
        for q in queries {
            let keep = spill.clone();
            out.push(
                query(&conn, q)?
                    .map(move |r| {
                        let _ = &keep;
                        r
                    })
                    .boxed(),
            );
        }
        Ok(out)
    }
}
