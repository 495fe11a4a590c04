//! Planning an extraction: the source's columns and row estimate, the work units it splits into
//! (day ranges, key ranges, hash buckets, files, or byte ranges of one CSV file), and the destination
//! table, loaded or created from the source's columns.

use arrow::datatypes::{Field, Schema};

use super::source::{self, SourceColumn, SqlSource};
use super::units::{pack_histogram, ranges, statistics_histogram, Bounds, KeyStatistics, PartitionBy, Unit};
use super::{IngestOptions, IngestPlan, Source};
use crate::catalog::TableName;
use crate::error::{Error, ErrorKind, Result};
use crate::lakehouse::Floe;
use crate::pipeline::input::InputFile;
use crate::table::files::open_parquet;
use crate::table::{Table, TableDefinition};

/// The plan of `source`, and its columns (a database's; none for files).
pub(super) async fn plan_source(
    floe: &Floe,
    options: &IngestOptions,
    source: &Source,
) -> Result<(IngestPlan, Vec<SourceColumn>)> {
    TableName::parse(&options.into)?;
    match source {
        Source::Sql(sql) => database_plan(options, sql).await,
        Source::Files(files) => Ok((files_plan(floe, options, files).await?, Vec::new())),
    }
}

async fn database_plan(options: &IngestOptions, sql: &SqlSource) -> Result<(IngestPlan, Vec<SourceColumn>)> {
    let columns = sql.columns().await?;
    let estimated = sql.estimate().await?;
    let by = options.partition_by.clone().unwrap_or(PartitionBy::Single);
    let n = options.units.resolve(estimated);
    let mut note = None;
    let (mut units, sized_by) = database_units(sql, &columns, &by, n, estimated).await?;
    if units.is_empty() {
        note = Some("the source is empty: one unit".to_string());
        units = vec![(Bounds::All, 0)];
    }
    let plan = IngestPlan {
        source: format!("{} {}", sql.url_redacted(), sql.described),
        destination: options.into.clone(),
        columns: described_columns(&columns),
        partition_by: by.to_string(),
        estimated_rows: estimated,
        units: numbered(units),
        note,
        sized_by,
        window: None,
    };
    Ok((plan, columns))
}

/// Source columns as a plan shows them: name, source type, Arrow type.
pub(super) fn described_columns(columns: &[SourceColumn]) -> Vec<(String, String, String)> {
    columns
        .iter()
        .map(|c| (c.name.clone(), c.source_type.clone(), c.arrow.to_string()))
        .collect()
}

/// About `n` units of a database source split `by`, each with its estimated rows (none for an empty
/// source), and what sized them.
async fn database_units(
    sql: &SqlSource,
    columns: &[SourceColumn],
    by: &PartitionBy,
    n: usize,
    estimated: u64,
) -> Result<(Vec<(Bounds, u64)>, Option<String>)> {
    let units = match by {
        PartitionBy::Single => vec![(Bounds::All, estimated)],
        PartitionBy::Date(c) => {
            let column = source::find(columns, c)?;
            if !source::temporal(column) {
                return Err(Error::invalid(format!(
                    "date({c}) needs a date or timestamp column; {c} is {}",
                    column.source_type
                )));
            }
            let histogram = sql.day_histogram(column).await?;
            let units = ranges(c, &pack_histogram(&histogram, n), true);
            return Ok((
                units,
                Some("rows per day of the column (read from the source)".into()),
            ));
        }
        PartitionBy::Id(c) => {
            let column = source::find(columns, c)?;
            if !source::integer(column) {
                return Err(Error::invalid(format!(
                    "id({c}) needs an integer column; {c} is {}",
                    column.source_type
                )));
            }
            let (histogram, sized_by) = key_histogram(sql, column, estimated).await?;
            return Ok((ranges(c, &pack_histogram(&histogram, n), false), Some(sized_by)));
        }
        PartitionBy::Hash(c) => {
            let column = source::find(columns, c)?;
            if !sql.can_hash() {
                return Err(Error::invalid(format!(
                    "hash({c}) needs a source that can hash; SQLite cannot: use id(COL) or date(COL)"
                )));
            }
            if !source::hashable(column) {
                return Err(Error::invalid(format!(
                    "hash({c}): the source cannot hash a column of type {}",
                    column.source_type
                )));
            }
            (0..n as u32)
                .map(|b| {
                    (
                        Bounds::Hash {
                            column: c.clone(),
                            bucket: b,
                            buckets: n as u32,
                        },
                        estimated / n.max(1) as u64,
                    )
                })
                .collect()
        }
        PartitionBy::File | PartitionBy::Bytes => {
            return Err(Error::invalid(format!("--partition-by {by} is for file sources")))
        }
    };
    Ok((units, None))
}

/// A histogram of the integer key `column` that sizes `id(COL)` units, and what it came from: the
/// database's own knowledge of the key (an index's least and greatest values, `ANALYZE` statistics)
/// where it has any, which costs a few index probes whatever the table's size; else the key read in
/// full (a scan of the source, as with a query or SQLite).
async fn key_histogram(
    sql: &SqlSource,
    column: &SourceColumn,
    estimated: u64,
) -> Result<(Vec<(i64, i64, u64)>, String)> {
    if let Some(stats) = sql.key_statistics(column).await? {
        if let Some(histogram) = statistics_histogram(&stats, estimated) {
            return Ok((histogram, described_statistics(&stats)));
        }
    }
    let histogram = sql.id_histogram(column).await?;
    Ok((
        histogram,
        "rows per stretch of the key (read from the source: a full scan)".into(),
    ))
}

fn described_statistics(stats: &KeyStatistics) -> String {
    match (stats.analyzed, stats.indexed) {
        (true, true) => "the key's statistics (pg_stats) and its index's least and greatest values".into(),
        (true, false) => "the key's statistics (pg_stats; no index to bound them)".into(),
        (false, _) => {
            "an even split of the key's least to greatest value (from its index; no statistics)".into()
        }
    }
}

async fn files_plan(floe: &Floe, options: &IngestOptions, files: &[InputFile]) -> Result<IngestPlan> {
    let by = options.partition_by.clone().unwrap_or(PartitionBy::File);
    let estimated: u64 = files.iter().map(|f| f.size / 100).sum();
    let mut note = None;
    let units: Vec<(Bounds, u64)> = match by {
        PartitionBy::File | PartitionBy::Single => files
            .iter()
            .map(|f| (Bounds::File { uri: f.uri.clone() }, f.size / 100))
            .collect(),
        PartitionBy::Bytes => {
            let [file] = files else {
                return Err(Error::invalid(
                    "--partition-by bytes splits one file; name exactly one",
                ));
            };
            if !file.uri.to_ascii_lowercase().ends_with(".csv") {
                return Err(Error::invalid("--partition-by bytes splits a CSV file"));
            }
            let n = options.units.resolve(file.size / 100);
            match byte_ranges(floe, &file.uri, file.size, n).await? {
                Ok(ranges) => ranges,
                Err(why) => {
                    note = Some(why);
                    vec![(
                        Bounds::File {
                            uri: file.uri.clone(),
                        },
                        file.size / 100,
                    )]
                }
            }
        }
        other => {
            return Err(Error::invalid(format!(
                "--partition-by {other} is for database sources"
            )))
        }
    };
    Ok(IngestPlan {
        source: options.source.clone(),
        destination: options.into.clone(),
        columns: Vec::new(),
        partition_by: by.to_string(),
        estimated_rows: estimated,
        units: numbered(units),
        note,
        sized_by: None,
        window: None,
    })
}

fn numbered(units: Vec<(Bounds, u64)>) -> Vec<Unit> {
    units
        .into_iter()
        .enumerate()
        .map(|(index, (bounds, estimated_rows))| Unit {
            index,
            bounds,
            estimated_rows,
        })
        .collect()
}

/// Byte ranges of a CSV file that start at record boundaries, or why there can be none: a quoted
/// field may hold a line break, so a line start is not known to start a record without reading the
/// file from its beginning.
async fn byte_ranges(
    floe: &Floe,
    uri: &str,
    size: u64,
    n: usize,
) -> Result<std::result::Result<Vec<(Bounds, u64)>, String>> {
    use futures::TryStreamExt;
    let (store, path) = floe.storage().resolve(uri)?;
    let storage_error =
        |e: object_store::Error| Error::wrap(ErrorKind::Storage, format!("cannot read {uri}"), e);
    // Streamed: memory holds one chunk.
    let mut chunks = object_store::ObjectStoreExt::get(store.as_ref(), &path)
        .await
        .map_err(storage_error)?
        .into_stream();
    while let Some(chunk) = chunks.try_next().await.map_err(storage_error)? {
        if chunk.contains(&b'"') {
            return Ok(Err(format!(
                "{uri} has quoted fields, which may hold line breaks: a record boundary cannot be found without \
                 reading the file from its start, so it is one unit"
            )));
        }
    }
    // The first line break at or after `at`.
    let line_after = |at: u64| {
        let (store, path) = (store.clone(), path.clone());
        async move {
            let end = (at + (1 << 20)).min(size);
            if at >= end {
                return Ok::<_, Error>(None);
            }
            let bytes = object_store::ObjectStoreExt::get_range(store.as_ref(), &path, at..end)
                .await
                .map_err(|e| Error::wrap(ErrorKind::Storage, "cannot read the input", e))?;
            Ok(bytes.iter().position(|b| *b == b'\n').map(|p| at + p as u64 + 1))
        }
    };
    let Some(header_end) = line_after(0).await? else {
        return Ok(Err(format!("{uri} has no line after its header: one unit")));
    };
    let body = size.saturating_sub(header_end);
    let mut starts = vec![header_end];
    for k in 1..n as u64 {
        let at = header_end + body * k / n as u64;
        if let Some(s) = line_after(at).await? {
            if s < size && s > *starts.last().unwrap_or(&0) {
                starts.push(s);
            }
        }
    }
    let mut out = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(size);
        out.push((
            Bounds::ByteRange {
                uri: uri.to_string(),
                start: *start,
                end,
            },
            (end - start) / 100,
        ));
    }
    Ok(Ok(out))
}

/// The destination table: loaded, or created from the source's columns (`create`).
pub(super) async fn destination(
    floe: &Floe,
    options: &IngestOptions,
    columns: &[SourceColumn],
    source: &Source,
) -> Result<Table> {
    let name = TableName::parse(&options.into)?;
    match floe.load_table(&name).await {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == ErrorKind::NotFound && options.create => {
            let schema = source_schema(floe, columns, source).await?;
            floe.ensure_namespace(name.namespace()).await?;
            let definition = TableDefinition {
                schema,
                ..Default::default()
            };
            match floe.create_table(&name, definition).await {
                Ok(t) => Ok(t),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => floe.load_table(&name).await,
                Err(e) => Err(e),
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::not_found(format!(
            "destination table {name} does not exist (pass --create to create it from the source's columns)"
        ))),
        Err(e) => Err(e),
    }
}

/// The columns of a table created from `source`, all optional: a database's columns, or the first
/// Parquet file's (CSV and NDJSON do not say their types).
async fn source_schema(floe: &Floe, columns: &[SourceColumn], source: &Source) -> Result<Schema> {
    let fields: Vec<Field> = match source {
        Source::Sql(_) => columns
            .iter()
            .map(|c| Field::new(&c.name, c.arrow.clone(), true))
            .collect(),
        Source::Files(files) => {
            let Some(first) = files.iter().find(|f| f.uri.ends_with(".parquet")) else {
                return Err(Error::invalid(
                    "--create from CSV or NDJSON files cannot know the column types: create the table first",
                ));
            };
            let file = open_parquet(floe.storage(), &first.uri, Some(first.size)).await?;
            file.schema()
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), f.data_type().clone(), true))
                .collect()
        }
    };
    Ok(Schema::new(fields))
}
