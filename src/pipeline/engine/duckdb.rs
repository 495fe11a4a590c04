//! The DuckDB engine: the pinned input snapshots stream into an embedded DuckDB database through the
//! Arrow appender, each stage is DuckDB SQL (the field rules registered as Arrow scalar functions:
//! the same Rust functions the DataFusion engine calls), and results stream back out as Arrow
//! batches. DuckDB spills to a temporary directory beyond its memory limit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use async_trait::async_trait;
use duckdb::vscalar::{ArrowFunctionSignature, VArrowScalar};
use duckdb::{Config, Connection};
use futures::{StreamExt, TryStreamExt};

use super::{Engine, PinnedTable, Rows, Stage};
use crate::error::{Error, ErrorKind, Result};
use crate::table::deletes::index::DeleteIndex;
use crate::table::entries::SnapshotFiles;
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

/// The DuckDB column type of an Arrow type (the ones the pipeline's tables use, nested in structs,
/// lists and maps too).
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
        DataType::Struct(fields) => format!(
            "STRUCT({})",
            fields
                .iter()
                .map(|f| Ok(format!("{} {}", quote(f.name()), sql_type(f.data_type())?)))
                .collect::<Result<Vec<_>>>()?
                .join(", ")
        ),
        DataType::List(element) | DataType::LargeList(element) => {
            format!("{}[]", sql_type(element.data_type())?)
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => format!(
                "MAP({}, {})",
                sql_type(kv[0].data_type())?,
                sql_type(kv[1].data_type())?
            ),
            other => {
                return Err(Error::new(
                    ErrorKind::Engine,
                    format!("duckdb engine: no column type for map entries {other}"),
                ))
            }
        },
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

/// A rule kernel, as the state of a DuckDB scalar function.
#[derive(Clone)]
struct Kernel(fn(&[ArrayRef]) -> std::result::Result<ArrayRef, arrow::error::ArrowError>);

impl Default for Kernel {
    /// Never registered: every registration passes its kernel.
    fn default() -> Self {
        Kernel(|_| {
            Err(arrow::error::ArrowError::InvalidArgumentError(
                "a floe rule function was registered without its kernel".into(),
            ))
        })
    }
}

/// DuckDB scalar functions over Arrow, one type per signature of the rule functions; the kernel is
/// the registration's state.
macro_rules! rule_signature {
    ($name:ident, $args:expr, $returns:expr) => {
        struct $name;
        impl VArrowScalar for $name {
            type State = Kernel;
            fn invoke(
                state: &Kernel,
                input: RecordBatch,
            ) -> std::result::Result<ArrayRef, Box<dyn std::error::Error>> {
                let args = super::rules::as_utf8(input.columns().to_vec())?;
                Ok((state.0)(&args)?)
            }
            fn signatures() -> Vec<ArrowFunctionSignature> {
                vec![ArrowFunctionSignature::exact(
                    vec![DataType::Utf8; $args],
                    $returns,
                )]
            }
        }
    };
}

rule_signature!(TextToText, 1, DataType::Utf8);
rule_signature!(
    TextToTimestamp,
    1,
    DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None)
);
rule_signature!(TextToBool, 1, DataType::Boolean);
rule_signature!(TextToMoney, 1, DataType::Decimal128(12, 2));
rule_signature!(TextToLong, 1, DataType::Int64);
rule_signature!(RecordToText, 10, DataType::Utf8);

/// Register the field rules ([`super::rules::FUNCTIONS`]) on `conn`: the same Rust functions the
/// DataFusion engine calls.
pub(crate) fn register_rules(conn: &Connection) -> Result<()> {
    for f in super::rules::FUNCTIONS {
        let k = Kernel(f.kernel);
        let registered = match (f.args, &f.returns) {
            (1, DataType::Utf8) => conn.register_scalar_function_with_state::<TextToText>(f.name, &k),
            (1, DataType::Timestamp(..)) => {
                conn.register_scalar_function_with_state::<TextToTimestamp>(f.name, &k)
            }
            (1, DataType::Boolean) => conn.register_scalar_function_with_state::<TextToBool>(f.name, &k),
            (1, DataType::Decimal128(..)) => {
                conn.register_scalar_function_with_state::<TextToMoney>(f.name, &k)
            }
            (1, DataType::Int64) => conn.register_scalar_function_with_state::<TextToLong>(f.name, &k),
            (10, DataType::Utf8) => conn.register_scalar_function_with_state::<RecordToText>(f.name, &k),
            (n, t) => {
                return Err(Error::internal(format!(
                    "no DuckDB signature for rule {} ({n} arguments, {t})",
                    f.name
                )))
            }
        };
        registered.map_err(duck_error)?;
    }
    Ok(())
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
        register_rules(&conn)?;
        Ok((conn, spill))
    }
}

/// A DuckDB query reading `snapshot_id` of `table` with DuckDB's own Parquet reader, when it can be
/// read that way: every data and delete file on local disk, and no equality delete. With one schema
/// in the table's history, column names are field ids; an evolved schema of primitive columns is
/// read by field id (`read_parquet`'s `schema` map: a renamed column under its new name, a widened
/// one cast, an added one null in older files), as DuckDB's iceberg extension does. Position deletes
/// are applied by an anti-join on each row's file and position (`filename`, `file_row_number`), so
/// DuckDB still reads only the columns and row groups a query needs. Timestamps come out as UTC wall
/// times, as elsewhere in the engine. `None` when the rows must be streamed in instead (S3
/// locations, equality deletes, evolved schemas with nested columns or a name mapping, an empty
/// snapshot).
pub(crate) async fn local_parquet_query(table: &Table, snapshot_id: i64) -> Result<Option<String>> {
    let metadata = table.metadata();
    let Some(snapshot) = metadata.snapshot_by_id(snapshot_id) else {
        return Ok(None);
    };
    // The current state reads with the current schema, a past one with its own (as floe's scan).
    let read_schema = if metadata.current_snapshot_id() == Some(snapshot_id) {
        table.schema().clone()
    } else {
        snapshot.schema(metadata)?
    };
    let by_field_id = if metadata.schemas_iter().count() == 1 {
        None
    } else {
        match field_id_schema(table, &read_schema) {
            Some(map) => Some(map),
            None => return Ok(None),
        }
    };
    let files = SnapshotFiles::of(table, Some(snapshot)).await?;
    let index = DeleteIndex::of(&files);
    if index.has_equality_deletes() || files.deletes.iter().any(|d| d.is_deletion_vector()) {
        return Ok(None);
    }
    let local = |path: &str| {
        path.strip_prefix("file://")
            .or(path.starts_with('/').then_some(path))
            .map(literal)
    };
    let Some(paths) = files
        .data
        .iter()
        .map(|f| local(f.path()))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let Some(deletes) = files
        .deletes
        .iter()
        .map(|f| local(f.path()))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    if paths.is_empty() {
        return Ok(None);
    }
    let columns = iceberg::arrow::schema_to_arrow_schema(&read_schema)?
        .fields()
        .iter()
        .map(|f| {
            let c = quote(f.name());
            if matches!(f.data_type(), DataType::Timestamp(_, Some(_))) {
                format!("CAST(floe_data.{c} AS TIMESTAMP) AS {c}")
            } else {
                format!("floe_data.{c}")
            }
        })
        .collect::<Vec<_>>();
    let schema = by_field_id.map(|m| format!(", schema = {m}")).unwrap_or_default();
    if deletes.is_empty() {
        return Ok(Some(format!(
            "SELECT {} FROM read_parquet([{}]{schema}) AS floe_data",
            columns.join(", "),
            paths.join(", ")
        )));
    }
    // A position delete names its data file by the path the manifests record (file:// or not).
    Ok(Some(format!(
        "SELECT {} FROM read_parquet([{}], filename = true, file_row_number = true{schema}) AS floe_data \
         ANTI JOIN (SELECT regexp_replace(file_path, '^file://', '') AS data_file, pos \
         FROM read_parquet([{}])) AS floe_deletes \
         ON floe_data.filename = floe_deletes.data_file AND floe_data.file_row_number = floe_deletes.pos",
        columns.join(", "),
        paths.join(", "),
        deletes.join(", ")
    )))
}

/// `read_parquet`'s `schema` map for `schema`: each top-level field id with its current name and
/// DuckDB type, so files of any earlier schema are read by field id (a column a file lacks is
/// null). `None` when a column is nested or of a type without a plain DuckDB equivalent, or when the
/// table has a name mapping (its files may carry no field ids).
fn field_id_schema(table: &Table, schema: &iceberg::spec::Schema) -> Option<String> {
    use iceberg::spec::{PrimitiveType as P, Type};
    if table
        .metadata()
        .properties()
        .contains_key("schema.name-mapping.default")
    {
        return None;
    }
    let mut entries = Vec::new();
    for f in schema.as_struct().fields() {
        let Type::Primitive(p) = f.field_type.as_ref() else {
            return None;
        };
        let duck = match p {
            P::Boolean => "BOOLEAN".to_string(),
            P::Int => "INTEGER".to_string(),
            P::Long => "BIGINT".to_string(),
            P::Float => "FLOAT".to_string(),
            P::Double => "DOUBLE".to_string(),
            P::Decimal { precision, scale } => format!("DECIMAL({precision}, {scale})"),
            P::Date => "DATE".to_string(),
            P::Time => "TIME".to_string(),
            P::Timestamp => "TIMESTAMP".to_string(),
            P::Timestamptz => "TIMESTAMP WITH TIME ZONE".to_string(),
            P::String => "VARCHAR".to_string(),
            P::Binary | P::Fixed(_) => "BLOB".to_string(),
            _ => return None,
        };
        entries.push(format!(
            "{}: {{name: {}, type: {}, default_value: NULL}}",
            f.id,
            literal(&f.name),
            literal(&duck)
        ));
    }
    Some(format!("MAP {{{}}}", entries.join(", ")))
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

/// The batch with every microsecond timestamp relabelled to `zone`, fields of structs, lists and maps
/// included (the values are UTC either way; only the label changes).
pub(crate) fn with_zone(batch: &RecordBatch, zone: Option<&str>) -> Result<RecordBatch> {
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let target = zoned(f.data_type(), zone);
        if &target != f.data_type() {
            columns.push(arrow::compute::cast(c, &target)?);
            fields.push(f.as_ref().clone().with_data_type(target));
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

/// `data_type` with every microsecond timestamp in it, at any depth, labelled `zone`.
fn zoned(data_type: &DataType, zone: Option<&str>) -> DataType {
    let field = |f: &arrow::datatypes::FieldRef| {
        Arc::new(f.as_ref().clone().with_data_type(zoned(f.data_type(), zone)))
    };
    match data_type {
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            DataType::Timestamp(TimeUnit::Microsecond, zone.map(Into::into))
        }
        DataType::Struct(children) => DataType::Struct(children.iter().map(field).collect()),
        DataType::List(element) => DataType::List(field(element)),
        DataType::LargeList(element) => DataType::LargeList(field(element)),
        DataType::FixedSizeList(element, n) => DataType::FixedSizeList(field(element), *n),
        DataType::Map(entries, sorted) => DataType::Map(field(entries), *sorted),
        other => other.clone(),
    }
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

    async fn run_to_files(
        &self,
        stage: Stage,
        inputs: &BTreeMap<&'static str, PinnedTable>,
        outputs: &[Table],
    ) -> Result<Option<Vec<super::EngineFiles>>> {
        // DuckDB here writes local files only (no S3 extension): tables on S3 take floe's writer.
        let mut copies = Vec::new();
        let queries = super::sql::DUCKDB.stage(stage);
        for (table, q) in outputs.iter().zip(&queries) {
            let Some(location) = url::Url::parse(table.location())
                .ok()
                .filter(|u| u.scheme() == "file")
                .and_then(|u| u.to_file_path().ok())
            else {
                return Ok(None);
            };
            // DuckDB creates the run's own directory, not its parents (a new table has none yet).
            let data = location.join("data");
            std::fs::create_dir_all(&data)
                .map_err(|e| Error::wrap(ErrorKind::Storage, format!("creating {}", data.display()), e))?;
            let dir = format!("{}/{stage}-{}", data.display(), uuid::Uuid::now_v7().simple());
            match copy_statement(table, q, &dir)? {
                Some((sql, partition_columns)) => copies.push((table.clone(), dir, sql, partition_columns)),
                None => return Ok(None),
            }
        }
        let (conn, spill) = self.open()?;
        let conn = Arc::new(Mutex::new(conn));
        for (name, input) in inputs {
            load(&conn, name, input).await?;
        }
        let dirs: Vec<String> = copies.iter().map(|(_, d, _, _)| d.clone()).collect();
        let written =
            tokio::task::spawn_blocking(move || -> Result<Vec<Vec<crate::table::add_files::FileToAdd>>> {
                let _spill = spill;
                let c = conn.lock().expect("duckdb connection");
                let mut out = Vec::new();
                for (table, dir, sql, partition_columns) in &copies {
                    let mut stmt = c.prepare(sql).map_err(duck_error)?;
                    let mut files = Vec::new();
                    for batch in stmt.query_arrow([]).map_err(duck_error)? {
                        let Some(list) = batch
                            .column_by_name("Files")
                            .and_then(|c| c.as_any().downcast_ref::<arrow::array::ListArray>().cloned())
                        else {
                            return Err(Error::internal("DuckDB's COPY returned no Files column"));
                        };
                        for i in 0..arrow::array::Array::len(&list) {
                            let values = list.value(i);
                            let paths = arrow::compute::cast(&values, &DataType::Utf8)?;
                            let paths = paths
                                .as_any()
                                .downcast_ref::<arrow::array::StringArray>()
                                .ok_or_else(|| Error::internal("DuckDB's COPY file list is not text"))?;
                            for p in paths.iter().flatten() {
                                let partition = if partition_columns.is_empty() {
                                    None
                                } else {
                                    Some(partition_from_path(table, dir, p, partition_columns)?)
                                };
                                files.push(crate::table::add_files::FileToAdd {
                                    uri: format!("file://{p}"),
                                    partition,
                                });
                            }
                        }
                    }
                    out.push(files);
                }
                Ok(out)
            })
            .await
            .map_err(|e| Error::internal(format!("duckdb copy: {e}")))?;
        match written {
            Ok(files) => Ok(Some(
                files.into_iter().map(super::EngineFiles::Undescribed).collect(),
            )),
            Err(e) => {
                // Nothing of a failed stage may stay behind: these directories are this run's own.
                for d in dirs {
                    let _ = std::fs::remove_dir_all(d);
                }
                Err(e)
            }
        }
    }

    fn code(&self, stage: Stage) -> String {
        // The rules are registered from this file (their code is in every stage's key already).
        format!(
            "{}\n{}",
            super::sql::DUCKDB.stage(stage).join(";\n"),
            include_str!("duckdb.rs")
        )
    }
}

/// The `COPY` that writes `query`'s rows as data files of `table` under `dir`: columns cast to the
/// table's types (instants as `TIMESTAMPTZ`, so the files say UTC), the table's field ids, and one
/// directory per partition for `identity` and temporal transforms computed in SQL. `None` when the
/// table's partitioning cannot be expressed (bucket, truncate), or when the table has a sort order:
/// DuckDB's `COPY` spreads rows over one file per thread (or per partition) without keeping an
/// `ORDER BY` across its files, so a sorted table's rows stream through floe's writer, which sorts
/// them across the files it writes.
fn copy_statement(table: &Table, query: &str, dir: &str) -> Result<Option<(String, Vec<String>)>> {
    if !table.metadata().default_sort_order().is_unsorted() {
        return Ok(None);
    }
    let schema = table.schema();
    let arrow = table.arrow_schema()?;
    // How DuckDB encodes: as floe's own writer (the table's codec, row groups of 128 Ki rows).
    let options = crate::table::encoding::Codec::of_table(table)?.duckdb_copy_options();
    let mut columns = Vec::new();
    let mut ids = Vec::new();
    for (f, a) in schema.as_struct().fields().iter().zip(arrow.fields()) {
        let c = quote(&f.name);
        columns.push(match a.data_type() {
            DataType::Timestamp(_, Some(_)) => format!("CAST({c} AS TIMESTAMPTZ) AS {c}"),
            _ => format!("CAST({c} AS {}) AS {c}", sql_type(a.data_type())?),
        });
        ids.push(format!("{c}: {}", f.id));
    }
    let mut partition_columns = Vec::new();
    for (i, pf) in table.partition_spec().fields().iter().enumerate() {
        let source = schema.field_by_id(pf.source_id).ok_or_else(|| {
            Error::internal(format!("partition source {} is not in the schema", pf.source_id))
        })?;
        let c = quote(&source.name);
        let expr = match pf.transform {
            iceberg::spec::Transform::Identity => c,
            iceberg::spec::Transform::Day => format!("CAST(floor(epoch_us({c}) / 86400000000.0) AS BIGINT)"),
            iceberg::spec::Transform::Hour => format!("CAST(floor(epoch_us({c}) / 3600000000.0) AS BIGINT)"),
            iceberg::spec::Transform::Month => {
                format!("(CAST(year({c}) AS BIGINT) - 1970) * 12 + CAST(month({c}) AS BIGINT) - 1")
            }
            iceberg::spec::Transform::Year => format!("CAST(year({c}) AS BIGINT) - 1970"),
            _ => return Ok(None),
        };
        let name = format!("__floe_p{i}");
        columns.push(format!("{expr} AS {name}"));
        partition_columns.push(name);
    }
    let partition = if partition_columns.is_empty() {
        // One file per thread: DuckDB encodes on every core.
        "PER_THREAD_OUTPUT true".to_string()
    } else {
        format!(
            "PARTITION_BY ({}), WRITE_PARTITION_COLUMNS false",
            partition_columns.join(", ")
        )
    };
    Ok(Some((
        format!(
            "COPY (SELECT {} FROM ({query})) TO {} ({options}, FIELD_IDS {{{}}}, {partition}, \
             FILENAME_PATTERN 'data_{{uuidv7}}', RETURN_FILES true)",
            columns.join(", "),
            literal(dir),
            ids.join(", ")
        ),
        partition_columns,
    )))
}

/// The partition of a file DuckDB wrote under `dir/__floe_p0=V0/__floe_p1=V1/...`.
fn partition_from_path(
    table: &Table,
    dir: &str,
    file: &str,
    columns: &[String],
) -> Result<iceberg::spec::Struct> {
    use iceberg::spec::{Literal, PrimitiveType, Transform, Type};
    let rel = file.strip_prefix(dir).unwrap_or(file);
    let mut values: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for part in rel.split('/') {
        if let Some((k, v)) = part.split_once('=') {
            values.insert(k, v);
        }
    }
    let schema = table.schema();
    let mut out = Vec::new();
    for (pf, name) in table.partition_spec().fields().iter().zip(columns) {
        let raw = values
            .get(name.as_str())
            .ok_or_else(|| Error::internal(format!("{file} is not under a {name}= directory")))?;
        if *raw == "NULL" || raw.is_empty() {
            out.push(None);
            continue;
        }
        let bad = || Error::internal(format!("{file}: partition value {raw:?} of {name}"));
        let value = match pf.transform {
            Transform::Day => Literal::date(raw.parse::<i32>().map_err(|_| bad())?),
            Transform::Hour | Transform::Month | Transform::Year => {
                Literal::int(raw.parse::<i32>().map_err(|_| bad())?)
            }
            Transform::Identity => {
                let source = schema.field_by_id(pf.source_id).ok_or_else(bad)?;
                let text = percent_decode(raw);
                match source.field_type.as_ref() {
                    Type::Primitive(PrimitiveType::String) => Literal::string(text),
                    Type::Primitive(PrimitiveType::Int) => {
                        Literal::int(text.parse::<i32>().map_err(|_| bad())?)
                    }
                    Type::Primitive(PrimitiveType::Long) => {
                        Literal::long(text.parse::<i64>().map_err(|_| bad())?)
                    }
                    Type::Primitive(PrimitiveType::Boolean) => Literal::bool(text == "true"),
                    _ => {
                        return Err(Error::internal(format!(
                            "identity partition of {} from a path",
                            source.name
                        )))
                    }
                }
            }
            _ => return Err(bad()),
        };
        out.push(Some(value));
    }
    Ok(out.into_iter().collect())
}

/// DuckDB escapes hive partition values like URLs.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("-"), 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
