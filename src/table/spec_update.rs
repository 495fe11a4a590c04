//! Partition-spec evolution as data: a [`SpecUpdate`] is a list of operations on the default
//! partition spec's fields (add a field with a transform, remove one, rename one), applied in order
//! to a table's current spec and schema ([`SpecUpdate::apply`]) to give the new default spec. The
//! transaction commits it as a metadata-only change ([`crate::table::transaction::spec`]). Iceberg
//! Java's `BaseUpdatePartitionSpec` and PyIceberg's `UpdateSpec` are the models.
//!
//! The rules:
//! - a field's source is a primitive column (nested in structs, not in a list or map) whose type the
//!   transform accepts; `bucket[N]` and `truncate[W]` need N, W ≥ 1;
//! - a source takes each transform once, and at most one of year, month, day and hour;
//! - default names are Java's: `col`, `col_bucket_16`, `col_trunc_10`, `col_year`, `col_month`,
//!   `col_day`, `col_hour`; a name is unique in the spec, and may be a column's name only for the
//!   identity of that column;
//! - a field that some spec of the table had (same source and transform) keeps its field id; a new
//!   one gets the next id after `last-partition-id`;
//! - a removed field leaves the spec on v2 tables, and becomes a `void` transform on v1 tables (whose
//!   specs keep their fields), as Java does.
//!
//! Files keep the spec they were written with: readers, filters, deletes and compaction handle each
//! file by its own spec, and `floe compact --rewrite-spec` rewrites older-spec files into the
//! current one.

use iceberg::spec::{
    FormatVersion, NestedFieldRef, PartitionSpec, Schema, Transform, Type, UnboundPartitionField,
    UnboundPartitionSpec,
};

use crate::error::{Error, ErrorKind, Result};

/// One operation of a partition-spec update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SpecOp {
    Add {
        column: String,
        transform: Transform,
        name: Option<String>,
    },
    Remove {
        name: String,
    },
    Rename {
        name: String,
        new_name: String,
    },
}

/// Changes to a table's default partition spec, applied in order and committed as one new default
/// spec (see [`crate::Floe::update_spec`], or [`crate::Transaction::update_spec`] to commit it with
/// other changes). New writes use the new spec; files already written keep theirs.
#[derive(Clone, Debug, Default)]
pub struct SpecUpdate {
    pub(crate) ops: Vec<SpecOp>,
}

impl SpecUpdate {
    /// An update that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no operation was added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Partition by `transform` of `column` (a dotted path for a struct field), under Java's default
    /// name (`column_bucket_16`, `column_day`, ...).
    pub fn add_field(mut self, column: &str, transform: Transform) -> Self {
        self.ops.push(SpecOp::Add {
            column: column.to_string(),
            transform,
            name: None,
        });
        self
    }

    /// Partition by `transform` of `column`, under `name`.
    pub fn add_field_named(mut self, column: &str, transform: Transform, name: &str) -> Self {
        self.ops.push(SpecOp::Add {
            column: column.to_string(),
            transform,
            name: Some(name.to_string()),
        });
        self
    }

    /// Partition by a term written as in `floe partition add`: `user_id` (identity),
    /// `bucket(16, user_id)`, `truncate(10, name)`, `year(ts)`, `month(ts)`, `day(ts)`, `hour(ts)`,
    /// `identity(col)`; under `name`, or the default name.
    pub fn add_term(self, term: &str, name: Option<&str>) -> Result<Self> {
        let (transform, column) = parse_partition_term(term)?;
        Ok(match name {
            Some(n) => self.add_field_named(&column, transform, n),
            None => self.add_field(&column, transform),
        })
    }

    /// Stop partitioning by the field `name`.
    pub fn remove_field(mut self, name: &str) -> Self {
        self.ops.push(SpecOp::Remove {
            name: name.to_string(),
        });
        self
    }

    /// Rename the partition field `name` to `new_name`.
    pub fn rename_field(mut self, name: &str, new_name: &str) -> Self {
        self.ops.push(SpecOp::Rename {
            name: name.to_string(),
            new_name: new_name.to_string(),
        });
        self
    }

    /// The new default spec's fields: the operations applied to `current` over `schema`. A broken
    /// rule is an `InvalidInput` error (an existing name: `AlreadyExists`; a missing field or column:
    /// `NotFound`). Field ids of fields that stay are kept; new ones are left for the metadata builder
    /// to assign (reusing the id an earlier spec gave the same source and transform).
    pub(crate) fn apply(
        &self,
        current: &PartitionSpec,
        schema: &Schema,
        version: FormatVersion,
    ) -> Result<UnboundPartitionSpec> {
        let mut fields: Vec<UnboundPartitionField> = current
            .fields()
            .iter()
            .map(|f| UnboundPartitionField {
                source_id: f.source_id,
                field_id: Some(f.field_id),
                name: f.name.clone(),
                transform: f.transform,
            })
            .collect();
        for op in &self.ops {
            match op {
                SpecOp::Add {
                    column,
                    transform,
                    name,
                } => add(&mut fields, schema, column, *transform, name.as_deref())?,
                SpecOp::Remove { name } => {
                    let i = position(&fields, name)?;
                    if version == FormatVersion::V1 {
                        fields[i].transform = Transform::Void;
                    } else {
                        fields.remove(i);
                    }
                }
                SpecOp::Rename { name, new_name } => {
                    let i = position(&fields, name)?;
                    check_name(&fields, schema, new_name, None)?;
                    fields[i].name = new_name.clone();
                }
            }
        }
        Ok(UnboundPartitionSpec::builder()
            .add_partition_fields(fields)?
            .build())
    }
}

fn add(
    fields: &mut Vec<UnboundPartitionField>,
    schema: &Schema,
    column: &str,
    transform: Transform,
    name: Option<&str>,
) -> Result<()> {
    match transform {
        Transform::Bucket(0) | Transform::Truncate(0) => {
            return Err(Error::invalid(format!(
                "cannot partition by {transform} of {column}: the number of buckets or the width must be \
                 at least 1"
            )))
        }
        Transform::Void | Transform::Unknown => {
            return Err(Error::invalid(format!(
                "cannot add a {transform} partition field: remove the field instead"
            )))
        }
        _ => {}
    }
    let source = source_column(schema, column)?;
    transform.result_type(&source.field_type).map_err(|_| {
        Error::invalid(format!(
            "cannot partition by {transform} of {column}: {transform} does not apply to {}",
            source.field_type
        ))
    })?;
    let dedup = transform.dedup_name();
    if let Some(f) = fields
        .iter()
        .find(|f| f.source_id == source.id && f.transform.dedup_name() == dedup)
    {
        let what = if f.transform == transform {
            "already partitioned by".to_string()
        } else {
            format!("cannot add {transform} beside")
        };
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{what} {} of {column} (partition field {:?}); remove it first",
                f.transform, f.name
            ),
        ));
    }
    let name = name
        .map(str::to_string)
        .unwrap_or_else(|| default_name(column, transform));
    // A v1 spec keeps removed fields as `void`: one of them holding the name gives way.
    if let Some(void) = fields
        .iter_mut()
        .find(|f| f.name == name && f.transform == Transform::Void)
    {
        void.name = format!("{}_{}", void.name, void.field_id.unwrap_or_default());
    }
    check_name(fields, schema, &name, Some((source.id, transform)))?;
    fields.push(UnboundPartitionField {
        source_id: source.id,
        field_id: None,
        name,
        transform,
    });
    Ok(())
}

/// The column a partition field reads: a primitive field reached through structs only.
fn source_column(schema: &Schema, column: &str) -> Result<NestedFieldRef> {
    let field = schema.field_by_name(column).ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("cannot partition by {column}: the table has no column {column:?}"),
        )
    })?;
    let mut parent: Option<i32> = None;
    let segments: Vec<&str> = column.split('.').collect();
    for i in 1..segments.len() {
        let prefix = segments[..i].join(".");
        let f = schema.field_by_name(&prefix);
        if !matches!(f.map(|f| f.field_type.as_ref()), Some(Type::Struct(_))) {
            parent = f.map(|f| f.id);
            break;
        }
    }
    if parent.is_some() || !field.field_type.is_primitive() {
        return Err(Error::invalid(format!(
            "cannot partition by {column}: a partition source is a primitive column outside lists and maps"
        )));
    }
    Ok(field.clone())
}

fn position(fields: &[UnboundPartitionField], name: &str) -> Result<usize> {
    fields
        .iter()
        .position(|f| f.name == name && f.transform != Transform::Void)
        .ok_or_else(|| {
            let names: Vec<&str> = fields
                .iter()
                .filter(|f| f.transform != Transform::Void)
                .map(|f| f.name.as_str())
                .collect();
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "the partition spec has no field {name:?} (its fields: {})",
                    if names.is_empty() {
                        "none, the table is unpartitioned".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            )
        })
}

/// A partition field's name: unique in the spec, and a column's name only for that column's
/// identity (readers would take one for the other).
fn check_name(
    fields: &[UnboundPartitionField],
    schema: &Schema,
    name: &str,
    new_field: Option<(i32, Transform)>,
) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("a partition field's name cannot be empty"));
    }
    if fields.iter().any(|f| f.name == name) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("the partition spec already has a field named {name:?}"),
        ));
    }
    if let Some(column) = schema.field_by_name(name) {
        if new_field != Some((column.id, Transform::Identity)) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{name:?} is a column's name: only that column's identity partition may take it"),
            ));
        }
    }
    Ok(())
}

/// Java's default partition field name for `transform` of `column`.
pub(crate) fn default_name(column: &str, transform: Transform) -> String {
    match transform {
        Transform::Identity => column.to_string(),
        Transform::Bucket(n) => format!("{column}_bucket_{n}"),
        Transform::Truncate(w) => format!("{column}_trunc_{w}"),
        Transform::Year => format!("{column}_year"),
        Transform::Month => format!("{column}_month"),
        Transform::Day => format!("{column}_day"),
        Transform::Hour => format!("{column}_hour"),
        Transform::Void | Transform::Unknown => format!("{column}_null"),
    }
}

/// Parse a partition term: `col`, `identity(col)`, `bucket(N, col)`, `truncate(W, col)`,
/// `year(col)`, `month(col)`, `day(col)`, `hour(col)` (also Iceberg's `bucket[N](col)` form, and the
/// plural names `years`, `months`, `days`, `hours` that Spark's SQL uses).
pub fn parse_partition_term(term: &str) -> Result<(Transform, String)> {
    let term = term.trim();
    let bad = || {
        Error::invalid(format!(
            "cannot read the partition term {term:?}: write COL, identity(COL), bucket(N, COL), \
             truncate(W, COL), year(COL), month(COL), day(COL) or hour(COL)"
        ))
    };
    let Some(open) = term.find('(') else {
        if term.is_empty() || term.contains(|c: char| c.is_whitespace() || ",)[]".contains(c)) {
            return Err(bad());
        }
        return Ok((Transform::Identity, term.to_string()));
    };
    let inner = term[open + 1..].strip_suffix(')').ok_or_else(bad)?;
    let head = term[..open].trim().to_ascii_lowercase();
    let args: Vec<&str> = inner.split(',').map(str::trim).collect();
    let number = |text: &str| -> Result<u32> {
        text.parse::<u32>().map_err(|_| {
            Error::invalid(format!(
                "cannot read the partition term {term:?}: {text:?} is not a whole number"
            ))
        })
    };
    // Iceberg's own spelling: bucket[16](col), truncate[10](col).
    if let Some((name, n)) = head.strip_suffix(']').and_then(|h| h.split_once('[')) {
        let [column] = args[..] else { return Err(bad()) };
        let transform = match name {
            "bucket" => Transform::Bucket(number(n)?),
            "truncate" => Transform::Truncate(number(n)?),
            _ => return Err(bad()),
        };
        return Ok((transform, column.to_string()));
    }
    let (transform, column) = match (head.as_str(), &args[..]) {
        ("bucket", [n, column]) => (Transform::Bucket(number(n)?), *column),
        ("truncate", [w, column]) => (Transform::Truncate(number(w)?), *column),
        ("identity", [column]) => (Transform::Identity, *column),
        ("year" | "years", [column]) => (Transform::Year, *column),
        ("month" | "months", [column]) => (Transform::Month, *column),
        ("day" | "days", [column]) => (Transform::Day, *column),
        ("hour" | "hours", [column]) => (Transform::Hour, *column),
        _ => return Err(bad()),
    };
    if column.is_empty() {
        return Err(bad());
    }
    Ok((transform, column.to_string()))
}

#[cfg(test)]
mod tests {
    use iceberg::spec::{NestedField, PrimitiveType};

    use super::*;

    fn schema() -> Schema {
        Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "ts", Type::Primitive(PrimitiveType::Timestamp)).into(),
                NestedField::optional(3, "name", Type::Primitive(PrimitiveType::String)).into(),
                NestedField::optional(4, "score", Type::Primitive(PrimitiveType::Double)).into(),
            ])
            .build()
            .unwrap()
    }

    fn spec(update: &SpecUpdate, version: FormatVersion) -> Result<Vec<(String, Transform, Option<i32>)>> {
        let current = PartitionSpec::builder(schema())
            .add_partition_field("ts", "ts_day", Transform::Day)
            .unwrap()
            .build()
            .unwrap();
        let s = update.apply(&current, &schema(), version)?;
        Ok(s.fields()
            .iter()
            .map(|f| (f.name.clone(), f.transform, f.field_id))
            .collect())
    }

    #[test]
    fn terms_parse_in_every_spelling() {
        let cases = [
            ("user_id", Transform::Identity, "user_id"),
            ("identity(a.b)", Transform::Identity, "a.b"),
            ("bucket(16, user_id)", Transform::Bucket(16), "user_id"),
            ("bucket[16](user_id)", Transform::Bucket(16), "user_id"),
            ("truncate(10,name)", Transform::Truncate(10), "name"),
            ("Day(ts)", Transform::Day, "ts"),
            ("hours(ts)", Transform::Hour, "ts"),
            ("year(ts)", Transform::Year, "ts"),
            ("month(ts)", Transform::Month, "ts"),
        ];
        for (text, transform, column) in cases {
            assert_eq!(
                parse_partition_term(text).unwrap(),
                (transform, column.to_string()),
                "{text}"
            );
        }
        for bad in [
            "",
            "bucket(x, id)",
            "bucket(16)",
            "week(ts)",
            "day(ts",
            "a b",
            "bucket(-1, id)",
        ] {
            assert!(parse_partition_term(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn fields_are_added_removed_and_renamed_by_java_rules() {
        let added = spec(
            &SpecUpdate::new().add_field("id", Transform::Bucket(16)),
            FormatVersion::V2,
        )
        .unwrap();
        assert_eq!(
            added,
            vec![
                ("ts_day".to_string(), Transform::Day, Some(1000)),
                ("id_bucket_16".to_string(), Transform::Bucket(16), None),
            ]
        );
        let renamed = spec(
            &SpecUpdate::new()
                .rename_field("ts_day", "day")
                .add_field("name", Transform::Identity),
            FormatVersion::V2,
        )
        .unwrap();
        assert_eq!(renamed[0].0, "day");
        assert_eq!(renamed[1].0, "name");
        let removed = spec(&SpecUpdate::new().remove_field("ts_day"), FormatVersion::V2).unwrap();
        assert!(removed.is_empty());
        let voided = spec(&SpecUpdate::new().remove_field("ts_day"), FormatVersion::V1).unwrap();
        assert_eq!(voided, vec![("ts_day".to_string(), Transform::Void, Some(1000))]);
        // A removed day may be replaced by an hour in the same update.
        let replaced = spec(
            &SpecUpdate::new()
                .remove_field("ts_day")
                .add_field("ts", Transform::Hour),
            FormatVersion::V2,
        )
        .unwrap();
        assert_eq!(replaced, vec![("ts_hour".to_string(), Transform::Hour, None)]);
    }

    #[test]
    fn broken_rules_are_refused_with_their_reason() {
        let cases: Vec<(SpecUpdate, &str)> = vec![
            (
                SpecUpdate::new().add_field("id", Transform::Bucket(0)),
                "at least 1",
            ),
            (
                SpecUpdate::new().add_field("nope", Transform::Identity),
                "no column \"nope\"",
            ),
            (
                SpecUpdate::new().add_field("ts", Transform::Hour),
                "cannot add hour beside day",
            ),
            (
                SpecUpdate::new().add_field("ts", Transform::Day),
                "already partitioned by day",
            ),
            (
                SpecUpdate::new().add_field("score", Transform::Truncate(2)),
                "does not apply to double",
            ),
            (
                SpecUpdate::new().add_field_named("id", Transform::Bucket(4), "name"),
                "column's name",
            ),
            (
                SpecUpdate::new().remove_field("nope"),
                "no field \"nope\" (its fields: ts_day)",
            ),
            (SpecUpdate::new().rename_field("ts_day", "id"), "column's name"),
            (
                SpecUpdate::new()
                    .add_field("id", Transform::Identity)
                    .rename_field("ts_day", "id"),
                "already has a field named \"id\"",
            ),
        ];
        for (update, expected) in cases {
            let e = spec(&update, FormatVersion::V2).unwrap_err();
            assert!(e.to_string().contains(expected), "{update:?}: {e}");
        }
    }
}
