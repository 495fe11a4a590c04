//! Snapshot diff: are two tables (or one table at two refs) equal, and if not, how do they differ?
//!
//! Cheapest evidence first: identical live data-file sets are equal at once; then the schemas (names,
//! types, nullability, field ids); then row counts and per-column null counts from the manifests;
//! rows only when those cannot decide. Rows are compared order-insensitively, by key (added, removed,
//! changed rows with the changed columns) or, without a key, as multisets (a duplicate row counts).
//! Doubles compare within a relative tolerance, NaN equals NaN, NULL equals NULL, everything else
//! exactly. Memory stays bounded: both sides are hash-partitioned into buckets whose fingerprints
//! are compared, and only the rows of buckets that differ are read back and compared.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float32Array, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};
use arrow::util::display::array_value_to_string;
use futures::TryStreamExt;
use serde::Serialize;

use crate::catalog::TableName;
use crate::error::{Error, Result};
use crate::lakehouse::Floe;
use crate::table::{At, ScanOptions, Table};

/// One side of a diff: a table at a ref.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffSide {
    /// The table.
    pub table: TableName,
    /// Its state.
    pub at: At,
}

impl DiffSide {
    /// Parse `NS.TABLE[@REF]`.
    pub fn parse(text: &str) -> Result<Self> {
        let (table, at) = crate::table::parse_table_ref(text)?;
        Ok(Self { table, at })
    }
}

impl std::fmt::Display for DiffSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.table, self.at)
    }
}

/// How to compare.
#[derive(Clone, Debug)]
pub struct DiffOptions {
    /// Key columns: rows are matched by key (added, removed, changed). Without, a multiset diff.
    pub key: Option<Vec<String>>,
    /// Relative tolerance for doubles.
    pub float_tolerance: f64,
    /// Rough memory budget for the rows of differing buckets, in bytes.
    pub memory_limit: usize,
    /// How many differing rows the report keeps as samples.
    pub sample: usize,
}

impl Default for DiffOptions {
    fn default() -> Self {
        Self {
            key: None,
            float_tolerance: 1e-9,
            memory_limit: 256 * 1024 * 1024,
            sample: 10,
        }
    }
}

/// What decided the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// Both sides hold the same data files (or are both empty).
    Files,
    /// The schemas differ.
    Schema,
    /// Row counts or column statistics from the manifests differ.
    Statistics,
    /// Bucket fingerprints, then rows.
    Rows,
}

/// A row that differs, as text cells by column.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RowSample {
    /// `added` (only on the right), `removed` (only on the left) or `changed` (same key).
    pub kind: String,
    /// The left row (absent for `added`).
    pub left: Option<BTreeMap<String, String>>,
    /// The right row (absent for `removed`).
    pub right: Option<BTreeMap<String, String>>,
    /// For `changed`: the columns that differ.
    pub changed_columns: Vec<String>,
}

/// The outcome of a diff.
#[derive(Clone, Debug, Serialize)]
pub struct DiffReport {
    /// The left side.
    pub left: String,
    /// The right side.
    pub right: String,
    /// The verdict.
    pub equal: bool,
    /// What decided it.
    pub decided_by: DecidedBy,
    /// Schema differences, one line each.
    pub schema_differences: Vec<String>,
    /// Statistics differences, one line each.
    pub statistics_differences: Vec<String>,
    /// Rows on the left.
    pub left_rows: u64,
    /// Rows on the right.
    pub right_rows: u64,
    /// Rows only on the right (by key, or in the multiset).
    pub added: u64,
    /// Rows only on the left.
    pub removed: u64,
    /// Rows present on both sides with different values (keyed diffs).
    pub changed: u64,
    /// Buckets compared, and how many differed (row stage only).
    pub buckets: usize,
    /// Buckets whose fingerprints differed.
    pub differing_buckets: usize,
    /// A sample of differing rows.
    pub samples: Vec<RowSample>,
}

struct Loaded {
    table: Table,
    snapshot: Option<iceberg::spec::SnapshotRef>,
    schema: iceberg::spec::SchemaRef,
}

async fn load(floe: &Floe, side: &DiffSide) -> Result<Loaded> {
    let table = floe.load_table(&side.table).await?;
    let snapshot = table.snapshot_at(&side.at)?;
    // As Iceberg (Java's `SnapshotUtil.schemaFor`): a branch reads with the table's current schema, so
    // a schema change shows on the branch before any data is written with it; a snapshot id, a tag or
    // a time reads with the schema its snapshot was written with.
    let on_branch = match &side.at {
        At::Current => true,
        At::Ref(name) => table.snapshot_refs().get(name).is_some_and(|r| r.is_branch()),
        At::Snapshot(_) | At::Timestamp(_) => false,
    };
    let schema = match &snapshot {
        Some(s) if !on_branch => s.schema(table.metadata())?,
        _ => table.schema().clone(),
    };
    Ok(Loaded {
        table,
        snapshot,
        schema,
    })
}

/// How two schemas differ, column by column (top-level, by name). Two states of the same table
/// share field ids, so there a column known under another name on the other side is explained as a
/// rename, and a type that Iceberg's promotion rules allow as a widening.
fn schema_differences(l: &iceberg::spec::Schema, r: &iceberg::spec::Schema, same_table: bool) -> Vec<String> {
    use iceberg::spec::Type;
    let mut out = Vec::new();
    let lf: Vec<_> = l.as_struct().fields().iter().collect();
    let rf: Vec<_> = r.as_struct().fields().iter().collect();
    let renamed = |f: &iceberg::spec::NestedField, other: &[&Arc<iceberg::spec::NestedField>]| {
        other
            .iter()
            .find(|g| same_table && g.id == f.id && g.name != f.name)
            .map(|g| g.name.clone())
    };
    let widened = |from: &Type, to: &Type| match (from, to) {
        (Type::Primitive(a), Type::Primitive(b)) => crate::table::schema_update::tree::promotes(a, b),
        _ => false,
    };
    for f in &lf {
        match rf.iter().find(|g| g.name == f.name) {
            None => match renamed(f, &rf) {
                Some(to) => out.push(format!(
                    "column {:?} renamed to {to:?} on the right (field id {})",
                    f.name, f.id
                )),
                None => out.push(format!("column {:?} only on the left", f.name)),
            },
            Some(g) => {
                if f.field_type != g.field_type {
                    let how = if same_table && f.id == g.id && widened(&f.field_type, &g.field_type) {
                        " (widened on the right)"
                    } else if same_table && f.id == g.id && widened(&g.field_type, &f.field_type) {
                        " (widened on the left)"
                    } else {
                        ""
                    };
                    out.push(format!(
                        "column {:?}: type {} vs {}{how}",
                        f.name, f.field_type, g.field_type
                    ));
                }
                if f.required != g.required {
                    out.push(format!(
                        "column {:?}: {} vs {}",
                        f.name,
                        if f.required { "required" } else { "optional" },
                        if g.required { "required" } else { "optional" }
                    ));
                }
                if f.id != g.id {
                    out.push(format!("column {:?}: field id {} vs {}", f.name, f.id, g.id));
                }
            }
        }
    }
    for g in &rf {
        if !lf.iter().any(|f| f.name == g.name) && renamed(g, &lf).is_none() {
            out.push(format!("column {:?} only on the right", g.name));
        }
    }
    let order = |v: &[&Arc<iceberg::spec::NestedField>]| v.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    if out.is_empty() && order(&lf) != order(&rf) {
        out.push("columns in a different order".to_string());
    }
    out
}

/// What the manifests say of one side: its live data files, rows, and null counts per column.
struct ManifestFacts {
    paths: HashSet<String>,
    rows: u64,
    nulls: HashMap<i32, u64>,
}

async fn manifest_facts(side: &Loaded) -> Result<ManifestFacts> {
    let files = side.table.live_data_files(side.snapshot.as_ref()).await?;
    let mut nulls: HashMap<i32, u64> = HashMap::new();
    for f in &files {
        for (id, n) in f.null_value_counts() {
            *nulls.entry(*id).or_default() += n;
        }
    }
    Ok(ManifestFacts {
        paths: files.iter().map(|f| f.file_path().to_string()).collect(),
        rows: files.iter().map(|f| f.record_count()).sum(),
        nulls,
    })
}

/// Compare two table states.
pub async fn diff(
    floe: &Floe,
    left: &DiffSide,
    right: &DiffSide,
    options: &DiffOptions,
) -> Result<DiffReport> {
    let l = load(floe, left).await?;
    let r = load(floe, right).await?;
    let mut report = DiffReport {
        left: left.to_string(),
        right: right.to_string(),
        equal: false,
        decided_by: DecidedBy::Files,
        schema_differences: Vec::new(),
        statistics_differences: Vec::new(),
        left_rows: 0,
        right_rows: 0,
        added: 0,
        removed: 0,
        changed: 0,
        buckets: 0,
        differing_buckets: 0,
        samples: Vec::new(),
    };

    // Schemas.
    report.schema_differences = schema_differences(&l.schema, &r.schema, left.table == right.table);
    let lf = manifest_facts(&l).await?;
    let rf = manifest_facts(&r).await?;
    let (lrows, rrows, lnulls, rnulls) = (lf.rows, rf.rows, &lf.nulls, &rf.nulls);
    report.left_rows = lrows;
    report.right_rows = rrows;
    if !report.schema_differences.is_empty() {
        report.decided_by = DecidedBy::Schema;
        return Ok(report);
    }

    // The same files: equal at once.
    if lf.paths == rf.paths {
        report.equal = true;
        report.decided_by = DecidedBy::Files;
        return Ok(report);
    }

    // Statistics: row counts, null counts per column (by name, the field ids being equal).
    report.decided_by = DecidedBy::Statistics;
    if lrows != rrows {
        report
            .statistics_differences
            .push(format!("{lrows} rows vs {rrows} rows"));
    }
    for f in l.schema.as_struct().fields() {
        let (a, b) = (
            lnulls.get(&f.id).copied().unwrap_or(0),
            rnulls.get(&f.id).copied().unwrap_or(0),
        );
        if a != b && lnulls.contains_key(&f.id) && rnulls.contains_key(&f.id) {
            report
                .statistics_differences
                .push(format!("column {:?}: {a} nulls vs {b} nulls", f.name));
        }
    }
    if !report.statistics_differences.is_empty() {
        return Ok(report);
    }

    // Rows, through bucket fingerprints.
    report.decided_by = DecidedBy::Rows;
    rows::compare(floe, left, right, &l, options, &mut report).await?;
    report.equal = report.added == 0 && report.removed == 0 && report.changed == 0;
    Ok(report)
}

mod rows;

#[cfg(test)]
mod tests {
    use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};

    use super::schema_differences;

    fn schema(fields: &[(i32, &str, PrimitiveType)]) -> Schema {
        Schema::builder()
            .with_fields(
                fields
                    .iter()
                    .map(|(id, name, t)| NestedField::optional(*id, *name, Type::Primitive(t.clone())).into())
                    .collect::<Vec<_>>(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn a_rename_and_a_widening_of_one_table_are_explained() {
        let before = schema(&[
            (1, "id", PrimitiveType::Long),
            (2, "n", PrimitiveType::Int),
            (3, "name", PrimitiveType::String),
        ]);
        let after = schema(&[
            (1, "id", PrimitiveType::Long),
            (2, "n", PrimitiveType::Long),
            (3, "label", PrimitiveType::String),
        ]);
        assert_eq!(
            schema_differences(&before, &after, true),
            [
                "column \"n\": type int vs long (widened on the right)",
                "column \"name\" renamed to \"label\" on the right (field id 3)",
            ]
        );
        assert_eq!(
            schema_differences(&after, &before, true),
            [
                "column \"n\": type long vs int (widened on the left)",
                "column \"label\" renamed to \"name\" on the right (field id 3)",
            ]
        );
        // Two tables: ids are not shared lineage, so names alone decide.
        assert_eq!(
            schema_differences(&before, &after, false),
            [
                "column \"n\": type int vs long",
                "column \"name\" only on the left",
                "column \"label\" only on the right",
            ]
        );
    }
}
