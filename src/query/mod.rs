//! DuckDB SQL over floe tables. A query names tables as `NS.TABLE` (the current state), or as a quoted
//! `"NS.TABLE@REF"` (a snapshot id, branch, tag or RFC 3339 time); metadata is reachable as
//! `"NS.TABLE$snapshots"`, `"NS.TABLE$refs"`, `"NS.TABLE$files"`, `"NS.TABLE$history"` (the views of
//! [`crate::table::inspect`], column for column), and the run ledger as `floe_runs`. Only the tables a
//! query names are loaded. A table whose data files are on local disk becomes a view over DuckDB's own
//! Parquet reader, so filters and projections reach the files; other tables (on S3, or with delete
//! files or an evolved schema) stream into an embedded DuckDB through the Arrow appender, reading from
//! storage only the columns the query names and, through floe's Iceberg scan, only the partitions,
//! files and row groups its WHERE can match ([`pushdown`]). The result comes back as Arrow batches.
//! Timestamps are UTC, and so is the session's time zone. DuckDB holds what it loads within the memory a query is given (1 GB unless
//! [`SqlOptions::memory_mb`] says otherwise) and spills the rest to a temporary directory.
//!
//! The DuckDB a query runs in is locked down by default ([`SqlOptions`]): once floe's tables are
//! loaded, file access is limited to the directories of those tables and floe's spill directory
//! (`allowed_directories`, `enable_external_access=false`), extensions are neither installed nor
//! loaded, and the configuration is locked, so a query can read floe's tables and nothing else: no
//! `COPY ... TO` a file, no `read_csv('/etc/passwd')`, no `INSTALL`/`LOAD`, no `ATTACH`, no `SET`.

mod pushdown;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use duckdb::{Config, Connection};
use futures::StreamExt;

use crate::catalog::TableName;
use crate::error::{Error, ErrorKind, Result};
use crate::lakehouse::Floe;
use crate::pipeline::engine::duckdb::{duck_error, load_stream, local_parquet_query, quote, with_zone};
use crate::table::inspect::MetadataTable;
use crate::table::{parse_table_ref, At, RowFilter, ScanOptions, Table};

/// How a query runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SqlOptions {
    /// Lift the lockdown: the query may read and write any file DuckDB can reach, install and load
    /// extensions, and change settings (`floe sql --allow-external-access`).
    pub allow_external_access: bool,
    /// The memory DuckDB may use, in MiB (`floe sql --memory-mb`); what does not fit spills to disk.
    /// `None`: [`DEFAULT_MEMORY_MB`].
    pub memory_mb: Option<u64>,
    /// Read every row of a streamed table and leave all filtering to DuckDB (`floe sql
    /// --no-pushdown`): the reference the pushed-down path is compared with.
    pub no_pushdown: bool,
}

/// DuckDB's memory limit when [`SqlOptions::memory_mb`] is not given.
pub const DEFAULT_MEMORY_MB: u64 = 1024;

/// A query's result.
pub struct QueryResult {
    /// The schema.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// Bytes read from storage to answer (manifests, footers and column chunks of the tables the
    /// query streamed; a table on local disk that DuckDB reads itself is not counted).
    pub bytes_read: u64,
}

/// The floe tables a query names.
fn references(query: &str) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let quoted = regex::Regex::new(r#""((?:[^"]|"")+)""#).expect("valid regex");
    let dotted = regex::Regex::new(r#"(?:^|[^\w".])([A-Za-z_]\w*)\.([A-Za-z_]\w*)\b"#).expect("valid regex");
    let names = quoted
        .captures_iter(query)
        .map(|c| c[1].replace("\"\"", "\""))
        .filter(|n| n.contains('.'))
        .collect();
    let pairs = dotted
        .captures_iter(query)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect();
    (names, pairs)
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

async fn runs(floe: &Floe) -> Result<RecordBatch> {
    let e = crate::pipeline::ledger::list(floe.database(), 100_000).await?;
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let s = |f: &dyn Fn(&crate::pipeline::ledger::LedgerEntry) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(e.iter().map(f)))
    };
    batch(
        vec![
            text("run_id"),
            text("pipeline"),
            text("stage"),
            text("engine"),
            text("status"),
            text("started_at"),
            text("ended_at"),
            Field::new("rows_in", DataType::Int64, true),
            text("rows_out"),
            text("rejects"),
            text("output_snapshots"),
            text("error"),
        ],
        vec![
            s(&|e| e.run_id.clone()),
            s(&|e| e.pipeline.clone()),
            s(&|e| e.stage.clone()),
            s(&|e| e.engine.clone()),
            s(&|e| e.status.clone()),
            s(&|e| e.started_at.clone()),
            s(&|e| e.ended_at.clone().unwrap_or_default()),
            Arc::new(Int64Array::from_iter_values(e.iter().map(|e| e.rows_in as i64))),
            s(&|e| serde_json::to_string(&e.rows_out).unwrap_or_default()),
            s(&|e| serde_json::to_string(&e.rejects).unwrap_or_default()),
            s(&|e| serde_json::to_string(&e.output_snapshots).unwrap_or_default()),
            s(&|e| e.error.clone().unwrap_or_default()),
        ],
    )
}

async fn load_batch(conn: &Arc<Mutex<Connection>>, name: &str, b: RecordBatch) -> Result<()> {
    let schema = b.schema();
    load_stream(
        conn,
        None,
        name,
        &schema,
        Some(futures::stream::iter([Ok(b)]).boxed()),
    )
    .await
}

/// Make `table` at `at` queryable under the name the query gives it (`name_parts`: `["ns", "t"]` as
/// schema `ns`, table `t`, or one quoted name): a view over its Parquet files where DuckDB's own
/// reader can take them (local files: the query's filters and projections reach the files), else a
/// table its rows stream into, read with the query's pushed-down filter.
async fn load_table(
    conn: &Arc<Mutex<Connection>>,
    table: &Table,
    at: At,
    query: &str,
    name_parts: &[&str],
    no_pushdown: bool,
) -> Result<()> {
    let (schema, name) = match name_parts {
        [schema, name] => (Some(*schema), *name),
        [name] => (None, *name),
        _ => return Err(Error::internal("a table is named by one or two parts")),
    };
    let snapshot = table.snapshot_at(&at)?;
    if let Some(s) = &snapshot {
        if let Some(q) = local_parquet_query(table, s.snapshot_id()).await? {
            let c = conn.lock().expect("duckdb connection");
            let qualified = match schema {
                Some(s) => {
                    c.execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote(s)))
                        .map_err(duck_error)?;
                    format!("{}.{}", quote(s), quote(name))
                }
                None => quote(name),
            };
            return c
                .execute_batch(&format!("CREATE VIEW {qualified} AS {q}"))
                .map_err(duck_error);
        }
    }
    // The scan reads the current state with the current schema, a past one with its own.
    let read_schema = match (&at, &snapshot) {
        (At::Current, _) | (_, None) => table.schema().clone(),
        (_, Some(s)) => s.schema(table.metadata())?,
    };
    let arrow_schema = Arc::new(iceberg::arrow::schema_to_arrow_schema(&read_schema)?);
    let columns: Vec<String> = arrow_schema.fields().iter().map(|f| f.name().clone()).collect();
    let filter = if no_pushdown {
        None
    } else {
        pushdown::pushed_filter(query, name_parts, &arrow_schema)
            .map(RowFilter::sql)
            // A filter DataFusion cannot compile over these columns is not pushed.
            .filter(|f| f.compile(&arrow_schema).is_ok())
    };
    tracing::debug!(table = %table.name(), filter = ?filter, "floe sql pushdown");
    let options = ScanOptions {
        at: Some(at),
        columns: named_columns(query, &columns),
        filter,
        ..Default::default()
    };
    let scan = crate::table::scan::scan(table, &options).await?;
    load_stream(conn, schema, name, &scan.schema, Some(scan.batches)).await
}

/// The columns of `columns` that `query` can read, in table order: only those are read from object
/// storage. The query is parsed (DuckDB dialect) and `None` (read every column) is returned unless
/// the set is provable: the statement is a plain query, with no `*` other than `count(*)`, no
/// `COLUMNS(...)`, no `NATURAL JOIN`, and no bare reference to a table or its alias as a value
/// (`SELECT t FROM t` reads the whole row). Otherwise every column the query names is read.
fn named_columns(query: &str, columns: &[String]) -> Option<Vec<String>> {
    let names = referenced_names(query)?;
    let mut named: Vec<String> = columns
        .iter()
        .filter(|c| names.contains(&c.to_lowercase()))
        .cloned()
        .collect();
    if named.is_empty() {
        // `SELECT count(*) FROM t` still needs the rows: one column carries them.
        named.extend(columns.first().cloned());
    }
    Some(named)
}

/// Every name a query uses as a column (lower-cased), or `None` when it may read columns it does not
/// name.
fn referenced_names(query: &str) -> Option<BTreeSet<String>> {
    use datafusion::sql::sqlparser::ast::{
        Expr, FunctionArg, FunctionArgExpr, FunctionArguments, JoinConstraint, JoinOperator, Query,
        SelectItem, SetExpr, Statement, TableFactor, Visit, Visitor,
    };
    use datafusion::sql::sqlparser::dialect::DuckDbDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use std::ops::ControlFlow;

    #[derive(Default)]
    struct Names {
        columns: BTreeSet<String>,
        relations: BTreeSet<String>,
        all: bool,
    }

    fn join_constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
        match op {
            JoinOperator::Join(c)
            | JoinOperator::Inner(c)
            | JoinOperator::Left(c)
            | JoinOperator::LeftOuter(c)
            | JoinOperator::Right(c)
            | JoinOperator::RightOuter(c)
            | JoinOperator::FullOuter(c)
            | JoinOperator::LeftSemi(c)
            | JoinOperator::RightSemi(c)
            | JoinOperator::LeftAnti(c)
            | JoinOperator::RightAnti(c)
            | JoinOperator::Semi(c)
            | JoinOperator::Anti(c) => Some(c),
            _ => None,
        }
    }

    impl Names {
        fn set_expr(&mut self, body: &SetExpr) {
            match body {
                SetExpr::Select(select) => {
                    for item in &select.projection {
                        if matches!(item, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)) {
                            self.all = true;
                        }
                    }
                    for t in &select.from {
                        for j in &t.joins {
                            match join_constraint(&j.join_operator) {
                                Some(JoinConstraint::Natural) => self.all = true,
                                Some(JoinConstraint::Using(cols)) => {
                                    for c in cols {
                                        if let Some(last) = c.0.last() {
                                            self.columns
                                                .insert(last.to_string().trim_matches('"').to_lowercase());
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                }
                SetExpr::SetOperation { left, right, .. } => {
                    self.set_expr(left);
                    self.set_expr(right);
                }
                SetExpr::Query(_) | SetExpr::Values(_) => {}
                _ => self.all = true,
            }
        }
    }

    impl Visitor for Names {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            self.set_expr(&query.body);
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, alias, .. } = factor {
                if let Some(last) = name.0.last() {
                    self.relations
                        .insert(last.to_string().trim_matches('"').to_lowercase());
                }
                if let Some(a) = alias {
                    self.relations.insert(a.name.value.to_lowercase());
                }
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Identifier(i) => {
                    self.columns.insert(i.value.to_lowercase());
                }
                Expr::CompoundIdentifier(parts) => {
                    if let Some(last) = parts.last() {
                        self.columns.insert(last.value.to_lowercase());
                    }
                }
                Expr::Function(f) => {
                    let name = f.name.to_string().to_lowercase();
                    if name == "columns" || name == "unpack" {
                        self.all = true;
                    }
                    if let FunctionArguments::List(list) = &f.args {
                        for arg in &list.args {
                            let wildcard = matches!(
                                arg,
                                FunctionArg::Unnamed(
                                    FunctionArgExpr::Wildcard | FunctionArgExpr::QualifiedWildcard(_)
                                ) | FunctionArg::Named {
                                    arg: FunctionArgExpr::Wildcard | FunctionArgExpr::QualifiedWildcard(_),
                                    ..
                                }
                            );
                            if wildcard && name != "count" {
                                self.all = true;
                            }
                        }
                    }
                }
                Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => self.all = true,
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }

    let statements = Parser::parse_sql(&DuckDbDialect {}, query).ok()?;
    let mut names = Names::default();
    for statement in &statements {
        if !matches!(statement, Statement::Query(_)) {
            return None;
        }
        let _ = statement.visit(&mut names);
    }
    // A bare name that is a table or an alias reads the whole row (`SELECT t FROM t`).
    if names.all || names.columns.iter().any(|c| names.relations.contains(c)) {
        return None;
    }
    Some(names.columns)
}

/// Run a DuckDB query over floe tables, locked down (see [`SqlOptions`]).
pub async fn sql(floe: &Floe, query: &str) -> Result<QueryResult> {
    sql_with(floe, query, &SqlOptions::default()).await
}

/// Lock the connection down: file access only under `directories`, no extensions, no settings.
fn lock_down(conn: &Connection, directories: &BTreeSet<String>) -> Result<()> {
    let list = directories
        .iter()
        .map(|d| format!("'{}'", d.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    conn.execute_batch(&format!(
        "SET allowed_directories = [{list}];
         SET autoinstall_known_extensions = false;
         SET autoload_known_extensions = false;
         SET allow_community_extensions = false;
         SET enable_external_access = false;
         SET lock_configuration = true;"
    ))
    .map_err(duck_error)
}

/// A DuckDB error of the user's query, explained when the lockdown refused it.
fn query_error(e: duckdb::Error, locked: bool) -> Error {
    let text = e.to_string();
    let refused = [
        "Permission Error",
        "file system operations are disabled",
        "configuration has been locked",
        "Cannot access",
        "disabled by configuration",
        "external access",
    ]
    .iter()
    .any(|p| text.contains(p));
    if locked && refused {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "query refused: floe sql reads floe's tables only (no other files, no extensions, no settings);                  `--allow-external-access` lifts this ({text})"
            ),
        )
    } else {
        Error::new(ErrorKind::InvalidInput, format!("query: {text}"))
    }
}

/// Run a DuckDB query over floe tables.
pub async fn sql_with(floe: &Floe, query: &str, options: &SqlOptions) -> Result<QueryResult> {
    let memory_mb = options.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
    if memory_mb == 0 {
        return Err(Error::invalid(
            "floe sql needs some memory: --memory-mb must be at least 1",
        ));
    }
    let read_before = floe.storage().bytes_read();
    let spill = tempfile::tempdir()?;
    let config = Config::default()
        .max_memory(&format!("{memory_mb}MB"))
        .and_then(|c| c.with("temp_directory", spill.path().display().to_string()))
        .map_err(duck_error)?;
    let conn = Connection::open_in_memory_with_flags(config).map_err(duck_error)?;
    // Timestamps are UTC: a literal without an offset means UTC, as in floe's scan filters (a DuckDB
    // without ICU has no TimeZone setting and reads such literals as UTC already).
    let _ = conn.execute_batch("SET TimeZone = 'UTC'");
    let conn = Arc::new(Mutex::new(conn));
    let (quoted, dotted) = references(query);
    let mut directories: BTreeSet<String> = BTreeSet::new();
    directories.insert(format!("{}/", spill.path().display()));
    let mut allow = |table: &Table| {
        if let Some(dir) = table.location().strip_prefix("file://") {
            directories.insert(format!("{}/", dir.trim_end_matches('/')));
        }
    };
    for name in &quoted {
        let (table_part, meta) = match name.split_once('$') {
            Some((t, m)) => (t, Some(m)),
            None => (name.as_str(), None),
        };
        let Ok((table_name, at)) = parse_table_ref(table_part) else {
            continue;
        };
        let table = match floe.load_table(&table_name).await {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => continue, // a quoted name that is not ours
            Err(e) => return Err(e),
        };
        allow(&table);
        match meta {
            Some(kind) => {
                let rows = MetadataTable::parse(kind)?.record_batch(&table).await?;
                load_batch(&conn, name, rows).await?
            }
            None => {
                let parts = [name.as_str()];
                load_table(&conn, &table, at, query, &parts, options.no_pushdown).await?
            }
        }
    }
    for (ns, t) in &dotted {
        let Ok(name) = TableName::parse(&format!("{ns}.{t}")) else {
            continue;
        };
        let table = match floe.load_table(&name).await {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        allow(&table);
        let parts = [ns.as_str(), t.as_str()];
        load_table(&conn, &table, At::Current, query, &parts, options.no_pushdown).await?;
    }
    if regex::Regex::new(r"\bfloe_runs\b")
        .expect("valid regex")
        .is_match(query)
    {
        load_batch(&conn, "floe_runs", runs(floe).await?).await?;
    }
    let query = query.to_string();
    let storage = floe.storage().clone();
    let locked = !options.allow_external_access;
    tokio::task::spawn_blocking(move || -> Result<QueryResult> {
        let c = conn.lock().expect("duckdb connection");
        if locked {
            lock_down(&c, &directories)?;
        }
        let mut stmt = c.prepare(&query).map_err(|e| query_error(e, locked))?;
        let arrow = stmt.query_arrow([]).map_err(|e| query_error(e, locked))?;
        let schema = arrow.get_schema();
        let batches = arrow
            .map(|b| with_zone(&b, Some("+00:00")))
            .collect::<Result<Vec<_>>>()?;
        let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
        drop(spill);
        let bytes_read = storage.bytes_read() - read_before;
        Ok(QueryResult {
            schema,
            batches,
            bytes_read,
        })
    })
    .await
    .map_err(|e| Error::internal(format!("query: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_columns_a_query_reads() {
        let cols: Vec<String> = ["id", "user_id", "Event Time", "revenue"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            named_columns(
                r#"SELECT user_id, sum(revenue) FROM t WHERE "Event Time" > now() GROUP BY 1"#,
                &cols
            ),
            Some(vec!["user_id".into(), "Event Time".into(), "revenue".into()])
        );
        assert_eq!(
            named_columns("SELECT count(*) FROM t", &cols),
            Some(vec!["id".into()])
        );
        assert_eq!(
            named_columns("SELECT COUNT( * ), USER_ID FROM t", &cols),
            Some(vec!["user_id".into()])
        );
        assert_eq!(named_columns("SELECT * FROM t", &cols), None);
        assert_eq!(named_columns("SELECT t.* FROM t", &cols), None);
        assert_eq!(named_columns("SELECT max(COLUMNS('rev.*')) FROM t", &cols), None);
        assert_eq!(named_columns("SELECT t FROM ns.t", &cols), None);
        assert_eq!(named_columns("SELECT x FROM ns.t AS x", &cols), None);
        assert_eq!(named_columns("SELECT id FROM a NATURAL JOIN b", &cols), None);
        assert_eq!(named_columns("DESCRIBE ns.t", &cols), None);
        assert_eq!(named_columns("SELECT * EXCLUDE (id) FROM t", &cols), None);
        assert_eq!(named_columns("this is not sql", &cols), None);
        assert_eq!(
            named_columns("SELECT revenue FROM a JOIN b USING (user_id)", &cols),
            Some(vec!["user_id".into(), "revenue".into()])
        );
    }

    #[test]
    fn finds_referenced_tables() {
        let (q, d) = references(
            r#"SELECT * FROM clickstream.sessions s JOIN "clickstream.sessions@duckdb" b USING (session_id)
               JOIN "clickstream.sessions$snapshots" m ON true WHERE s.x = 1 AND 'a.b' <> "not_a_table""#,
        );
        assert_eq!(
            q.into_iter().collect::<Vec<_>>(),
            vec![
                "clickstream.sessions$snapshots".to_string(),
                "clickstream.sessions@duckdb".to_string()
            ]
        );
        assert!(d.contains(&("clickstream".to_string(), "sessions".to_string())));
        assert!(d.contains(&("s".to_string(), "x".to_string()))); // harmless: not a table, skipped at load
    }
}
