//! Existing Parquet files as Iceberg data files: read each file's footer and describe it as the
//! manifests need (record count, size, per-column sizes, value and null counts, exact lower and upper
//! bounds, split offsets, partition values), after checking that it fits the table. Columns are
//! matched by the Parquet field ids the file carries, or, for a file without ids, by name through the
//! table's `schema.name-mapping.default` (PyIceberg's `add_files` works the same way). A file that
//! does not fit (an unknown column, a type that differs, a missing required column, a file spanning
//! several partitions, a file already in the table, a file on another kind of store than the table)
//! is an error that commits nothing. Used by `Floe::add_files` and by engines that write their own
//! files.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use futures::{StreamExt, TryStreamExt};
use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, Literal, NameMapping, NestedField,
    PrimitiveType, Struct, Type,
};
use parquet::file::metadata::ParquetMetaData;

use super::file_stats::{merge_bound, parquet_bound};
use super::Table;
use crate::error::{Error, ErrorKind, Result};

/// A file to describe, with its partition when the writer knows it (an engine that wrote it into a
/// partition directory); otherwise the partition is read off the file's column bounds.
#[derive(Clone, Debug)]
pub struct FileToAdd {
    /// Full URI.
    pub uri: String,
    /// The partition values, when known.
    pub partition: Option<Struct>,
}

/// Describe `files` as data files of `table`, reading their footers (eight at a time), their rows in
/// sort order `sort_order_id` (0 for files floe did not sort, such as added ones). Every file is
/// checked; the first that does not fit is the error.
pub(crate) async fn describe_files(
    table: &Table,
    files: Vec<FileToAdd>,
    sort_order_id: i32,
) -> Result<Vec<DataFile>> {
    let scheme = |u: &str| {
        u.split_once("://")
            .map(|(s, _)| s.replace("s3a", "s3"))
            .unwrap_or_default()
    };
    let table_scheme = scheme(table.location());
    let mut seen = HashSet::new();
    for f in &files {
        if scheme(&f.uri) != table_scheme {
            return Err(Error::invalid(format!(
                "{} is on another store than table {} ({}): readers of the table could not reach it; copy it \
                 under the table's location first",
                f.uri,
                table.name(),
                table.location()
            )));
        }
        if !seen.insert(f.uri.clone()) {
            return Err(Error::invalid(format!("{} is named twice", f.uri)));
        }
    }
    let mapping = name_mapping(table)?;
    futures::stream::iter(files.into_iter().map(|f| {
        let mapping = mapping.clone();
        async move { describe(table, &f, mapping.as_deref(), sort_order_id).await }
    }))
    .buffered(8)
    .try_collect()
    .await
}

/// The table's `schema.name-mapping.default`, if set.
fn name_mapping(table: &Table) -> Result<Option<Arc<NameMapping>>> {
    match table.metadata().properties().get("schema.name-mapping.default") {
        None => Ok(None),
        Some(json) => serde_json::from_str::<NameMapping>(json)
            .map(|m| Some(Arc::new(m)))
            .map_err(|e| {
                Error::new(
                    ErrorKind::Data,
                    format!("table {}: invalid schema.name-mapping.default: {e}", table.name()),
                )
            }),
    }
}

/// The field id a top-level Parquet column stands for.
fn field_id(field: &Field, mapping: Option<&NameMapping>) -> Option<i32> {
    if let Some(id) = field
        .metadata()
        .get(parquet::arrow::PARQUET_FIELD_ID_META_KEY)
        .and_then(|v| v.parse().ok())
    {
        return Some(id);
    }
    mapping?
        .fields()
        .iter()
        .find(|m| m.names().iter().any(|n| n == field.name()))
        .and_then(|m| m.field_id())
}

/// Whether a file column of Arrow type `file` can be read as the table's `table` type.
fn fits(file: &DataType, table: &DataType) -> bool {
    use DataType::*;
    let text = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    let bytes = |t: &DataType| matches!(t, Binary | LargeBinary | BinaryView);
    match (file, table) {
        (a, b) if a == b => true,
        (a, b) if text(a) && text(b) => true,
        (a, b) if bytes(a) && bytes(b) => true,
        (Int32, Int64) | (Float32, Float64) => true,
        (Timestamp(u1, z1), Timestamp(u2, z2)) => u1 == u2 && z1.is_some() == z2.is_some(),
        (Decimal128(p1, s1), Decimal128(p2, s2)) => s1 == s2 && p1 <= p2,
        (Dictionary(_, v), t) => fits(v, t),
        (List(a), List(b)) | (LargeList(a), List(b)) => fits(a.data_type(), b.data_type()),
        (Struct(a), Struct(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b.iter())
                    .all(|(x, y)| fits(x.data_type(), y.data_type()))
        }
        _ => false,
    }
}

/// The data-file entry of one file: its columns checked against the table, statistics from its
/// footer, its partition (given, or derived from its bounds).
async fn describe(
    table: &Table,
    file: &FileToAdd,
    mapping: Option<&NameMapping>,
    sort_order_id: i32,
) -> Result<DataFile> {
    let uri = &file.uri;
    let storage = table.storage();
    let size = storage.size(uri).await.map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            Error::not_found(format!("file {uri} does not exist"))
        } else {
            e
        }
    })?;
    let builder = crate::table::files::open_parquet(storage, uri, Some(size)).await?;
    let metadata: Arc<ParquetMetaData> = builder.metadata().clone();
    let ids_of_columns = field_ids(table, uri, builder.schema(), mapping)?;
    let stats = ColumnStats::of(table, &metadata, &ids_of_columns)?;
    let partition = match &file.partition {
        Some(p) => p.clone(),
        None => partition_of(
            table,
            uri,
            &stats.lower,
            &stats.upper,
            &stats.null_counts,
            metadata.file_metadata().num_rows(),
        )?,
    };
    let split_offsets: Vec<i64> = metadata
        .row_groups()
        .iter()
        .filter_map(|g| g.file_offset())
        .collect();
    DataFileBuilder::default()
        .content(DataContentType::Data)
        .file_path(uri.clone())
        .file_format(DataFileFormat::Parquet)
        .partition(partition)
        .partition_spec_id(table.metadata().default_partition_spec_id())
        .sort_order_id(sort_order_id)
        .record_count(metadata.file_metadata().num_rows().max(0) as u64)
        .file_size_in_bytes(size)
        .column_sizes(stats.column_sizes)
        .value_counts(stats.value_counts)
        .null_value_counts(stats.null_counts)
        .lower_bounds(stats.lower)
        .upper_bounds(stats.upper)
        .split_offsets(Some(split_offsets))
        .build()
        .map_err(|e| Error::internal(format!("describing {uri}: {e}")))
}

/// The table's field id of every column of the file (`arrow`), each checked to fit the table's
/// column; every required column of the table must be there.
fn field_ids(
    table: &Table,
    uri: &str,
    arrow: &arrow::datatypes::SchemaRef,
    mapping: Option<&NameMapping>,
) -> Result<HashMap<String, i32>> {
    let schema = table.schema();
    let table_arrow = table.arrow_schema()?;
    let mismatch = |msg: String| {
        Error::invalid(format!(
            "{uri} does not fit table {}: {msg}; nothing was committed",
            table.name()
        ))
    };
    let mut ids_of_columns: HashMap<String, i32> = HashMap::new();
    for f in arrow.fields() {
        let Some(id) = field_id(f, mapping) else {
            return Err(mismatch(format!(
                "column {:?} carries no field id and the table has no schema.name-mapping.default that names it",
                f.name()
            )));
        };
        let Some(table_field) = schema.field_by_id(id) else {
            return Err(mismatch(format!(
                "column {:?} (field id {id}) is not a column of the table",
                f.name()
            )));
        };
        let target = table_arrow
            .field_with_name(&table_field.name)
            .map_err(|_| mismatch(format!("column {:?} is nested in the table", f.name())))?;
        if !fits(f.data_type(), target.data_type()) {
            return Err(mismatch(format!(
                "column {:?} is {} in the file but {} in the table",
                f.name(),
                f.data_type(),
                target.data_type()
            )));
        }
        ids_of_columns.insert(f.name().clone(), id);
    }
    let present: HashSet<i32> = ids_of_columns.values().copied().collect();
    if let Some(missing) = schema
        .as_struct()
        .fields()
        .iter()
        .find(|f| f.required && !present.contains(&f.id))
    {
        return Err(mismatch(format!("required column {:?} is missing", missing.name)));
    }
    Ok(ids_of_columns)
}

/// Statistics of a file's top-level columns by field id, from every row group of its footer.
#[derive(Default)]
struct ColumnStats {
    column_sizes: HashMap<i32, u64>,
    value_counts: HashMap<i32, u64>,
    null_counts: HashMap<i32, u64>,
    lower: HashMap<i32, Datum>,
    upper: HashMap<i32, Datum>,
}

impl ColumnStats {
    /// Sizes and value counts of every top-level column; null counts and bounds of the primitive
    /// ones, kept only where every row group had them (exact bounds).
    fn of(table: &Table, metadata: &ParquetMetaData, ids_of_columns: &HashMap<String, i32>) -> Result<Self> {
        let schema = table.schema();
        let primitive = |id: i32| -> Option<(&NestedField, PrimitiveType)> {
            let f = schema.field_by_id(id)?;
            match f.field_type.as_ref() {
                Type::Primitive(p) => Some((f.as_ref(), p.clone())),
                _ => None,
            }
        };
        let mut stats = ColumnStats::default();
        let mut inexact: HashSet<i32> = HashSet::new();
        for rg in metadata.row_groups() {
            for cc in rg.columns() {
                let descr = cc.column_descr();
                let path = descr.path().parts();
                if path.len() != 1 {
                    continue; // nested leaves: sizes only through their parent, no bounds
                }
                let Some(&id) = ids_of_columns.get(&path[0]) else {
                    continue;
                };
                *stats.column_sizes.entry(id).or_insert(0) += cc.compressed_size().max(0) as u64;
                *stats.value_counts.entry(id).or_insert(0) += cc.num_values().max(0) as u64;
                let Some((_, ptype)) = primitive(id) else { continue };
                let Some(st) = cc.statistics() else {
                    inexact.insert(id);
                    continue;
                };
                if let Some(n) = st.null_count_opt() {
                    *stats.null_counts.entry(id).or_insert(0) += n;
                } else {
                    inexact.insert(id);
                }
                let (lo, hi) = (
                    parquet_bound(&ptype, st, true)?,
                    parquet_bound(&ptype, st, false)?,
                );
                match (lo, hi) {
                    (Some(lo), Some(hi)) if st.min_is_exact() && st.max_is_exact() => {
                        merge_bound(&mut stats.lower, id, lo, true);
                        merge_bound(&mut stats.upper, id, hi, false);
                    }
                    // A row group whose column is all null has no bounds, and changes none.
                    (None, None) if st.null_count_opt() == Some(rg.num_rows() as u64) => {}
                    _ => {
                        inexact.insert(id);
                    }
                }
            }
        }
        // Bounds are kept only where every row group had exact ones; counts only where all had them.
        for id in &inexact {
            stats.lower.remove(id);
            stats.upper.remove(id);
            stats.null_counts.remove(id);
        }
        Ok(stats)
    }
}

/// The partition of a file of a partitioned table, from its column bounds: each partition field's
/// transform must give the same value for the lower and the upper bound (or the column must be all
/// null), else the file spans partitions and cannot be added as one data file.
fn partition_of(
    table: &Table,
    uri: &str,
    lower: &HashMap<i32, Datum>,
    upper: &HashMap<i32, Datum>,
    nulls: &HashMap<i32, u64>,
    rows: i64,
) -> Result<Struct> {
    let spec = table.partition_spec();
    if spec.is_unpartitioned() {
        return Ok(Struct::empty());
    }
    let mut values: Vec<Option<Literal>> = Vec::new();
    for pf in spec.fields() {
        let source = pf.source_id;
        if nulls.get(&source).copied() == Some(rows.max(0) as u64) {
            values.push(None);
            continue;
        }
        let (Some(lo), Some(hi)) = (lower.get(&source), upper.get(&source)) else {
            return Err(Error::invalid(format!(
                "{uri} has no exact statistics for partition column (field id {source}), so its partition \
                 cannot be known; nothing was committed"
            )));
        };
        let f = iceberg::transform::create_transform_function(&pf.transform)?;
        let (a, b) = (f.transform_literal(lo)?, f.transform_literal(hi)?);
        if a != b {
            return Err(Error::invalid(format!(
                "{uri} holds rows of more than one partition of {} ({} from {lo} to {hi}); nothing was committed",
                table.name(),
                pf.name
            )));
        }
        values.push(a.map(Literal::from));
    }
    Ok(values.into_iter().collect())
}
