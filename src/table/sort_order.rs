//! A table's sort order as floe describes it: a [`SortOrderUpdate`] is a list of sort columns named
//! by path (parsed from `event_time desc nulls last, user_id`, or built in code), bound by name to a
//! schema when it commits (a missing column, a column inside a list or map, or a non-primitive one
//! is refused), and a committed order printed back in the same syntax. Iceberg Java's
//! `ReplaceSortOrder` and PyIceberg's `UpdateSortOrder` are the models.

use iceberg::spec::{NullOrder, Schema, SortDirection, SortField, SortOrder, Transform, Type};

use super::create::PartitionField;
use super::schema_update::tree::{self, Place};
use crate::error::{Error, Result};

/// One column of a sort order: a column (by dotted path), the transform of its values sorted on, the
/// direction, and where nulls go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortColumn {
    /// The column, by path (`props.browser` for a struct field).
    pub path: String,
    /// What is sorted on: the values themselves (identity) or a transform of them (`day`,
    /// `bucket[N]`, `truncate[W]`, ...).
    pub transform: Transform,
    /// Ascending or descending.
    pub direction: SortDirection,
    /// Nulls before or after the values.
    pub null_order: NullOrder,
}

impl SortColumn {
    /// Ascending, nulls first (Iceberg's default for ascending).
    pub fn asc(path: &str) -> Self {
        Self {
            path: path.to_string(),
            transform: Transform::Identity,
            direction: SortDirection::Ascending,
            null_order: NullOrder::First,
        }
    }

    /// Descending, nulls last (Iceberg's default for descending).
    pub fn desc(path: &str) -> Self {
        Self {
            path: path.to_string(),
            transform: Transform::Identity,
            direction: SortDirection::Descending,
            null_order: NullOrder::Last,
        }
    }

    /// Parse one sort column: `COLUMN` or `TRANSFORM(COLUMN)` (as in a partition field: `day(ts)`,
    /// `bucket(16, id)`, `truncate(4, name)`), then optionally `asc` or `desc`, then optionally
    /// `nulls first` or `nulls last`.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let bad = |why: &str| {
            Error::invalid(format!(
                "invalid sort column {text:?}: {why} (expected COLUMN or TRANSFORM(COLUMN), then asc or desc, \
                 then nulls first or nulls last)"
            ))
        };
        // The term ends at its closing parenthesis, or at the first space when it has none.
        let (term, rest) = match (text.find('('), text.find(')')) {
            (Some(open), Some(close)) if open < close && !text[..open].contains(char::is_whitespace) => {
                text.split_at(close + 1)
            }
            _ => text.split_at(text.find(char::is_whitespace).unwrap_or(text.len())),
        };
        if term.is_empty() {
            return Err(bad("no column"));
        }
        let field = PartitionField::parse(term).map_err(|_| bad("unknown transform"))?;
        let words: Vec<String> = rest.split_whitespace().map(str::to_ascii_lowercase).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let (direction, nulls) = match words.as_slice() {
            ["asc", nulls @ ..] => (SortDirection::Ascending, nulls),
            ["desc", nulls @ ..] => (SortDirection::Descending, nulls),
            nulls => (SortDirection::Ascending, nulls),
        };
        let null_order = match (nulls, direction) {
            ([], SortDirection::Ascending) => NullOrder::First,
            ([], SortDirection::Descending) => NullOrder::Last,
            (["nulls", "first"], _) => NullOrder::First,
            (["nulls", "last"], _) => NullOrder::Last,
            _ => return Err(bad(&format!("cannot read {:?}", rest.trim()))),
        };
        Ok(Self {
            path: field.column,
            transform: field.transform,
            direction,
            null_order,
        })
    }
}

/// A new sort order for a table, replacing its default one: the columns in order, or none (the table
/// becomes unsorted, order 0). See [`crate::Floe::update_sort_order`], or
/// [`crate::Transaction::update_sort_order`] to commit it with other changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SortOrderUpdate {
    pub(crate) columns: Vec<SortColumn>,
}

impl SortOrderUpdate {
    /// No sort column yet: committed as it is, the table becomes unsorted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse a comma-separated list of sort columns (see [`SortColumn::parse`]):
    /// `event_time desc nulls last, user_id`. An empty text is an error; use [`SortOrderUpdate::new`]
    /// for no order.
    pub fn parse(text: &str) -> Result<Self> {
        let mut columns = Vec::new();
        for term in split_top_level(text) {
            if term.trim().is_empty() {
                return Err(Error::invalid(format!(
                    "invalid sort order {text:?}: an empty sort column (expected e.g. \"event_time desc nulls \
                     last, user_id\")"
                )));
            }
            columns.push(SortColumn::parse(term)?);
        }
        Ok(Self { columns })
    }

    /// Add a column sorted ascending, nulls first.
    pub fn asc(self, path: &str) -> Self {
        self.column(SortColumn::asc(path))
    }

    /// Add a column sorted descending, nulls last.
    pub fn desc(self, path: &str) -> Self {
        self.column(SortColumn::desc(path))
    }

    /// Add a sort column.
    pub fn column(mut self, column: SortColumn) -> Self {
        self.columns.push(column);
        self
    }

    /// The sort columns, in order.
    pub fn columns(&self) -> &[SortColumn] {
        &self.columns
    }

    /// Whether this order sorts nothing (the table becomes unsorted).
    pub fn is_unsorted(&self) -> bool {
        self.columns.is_empty()
    }

    /// The order bound to `schema` by column name (its id is left to the metadata builder): a clear
    /// `InvalidInput` for a column that does not exist, one inside a list or map, a non-primitive
    /// one, or a transform that does not apply to the column's type.
    pub(crate) fn bind(&self, schema: &Schema) -> Result<SortOrder> {
        if self.columns.is_empty() {
            return Ok(SortOrder::unsorted_order());
        }
        let places = tree::places(schema);
        let mut builder = SortOrder::builder();
        for column in &self.columns {
            let path = &column.path;
            let refuse = |why: String| Error::invalid(format!("cannot sort by {path:?}: {why}"));
            let field = schema
                .field_by_name(path)
                .ok_or_else(|| refuse("the table has no such column".into()))?;
            if inside_list_or_map(&places, field.id) {
                return Err(refuse("it is inside a list or map".into()));
            }
            let Type::Primitive(_) = field.field_type.as_ref() else {
                return Err(refuse(format!(
                    "it is a {} (sort columns are primitive)",
                    tree::type_name(&field.field_type)
                )));
            };
            if matches!(column.transform, Transform::Bucket(0) | Transform::Truncate(0)) {
                return Err(refuse(format!(
                    "{} needs a width of at least 1",
                    column.transform
                )));
            }
            if column.transform.result_type(&field.field_type).is_err() {
                return Err(refuse(format!(
                    "the transform {} does not apply to its type {}",
                    column.transform,
                    tree::type_name(&field.field_type)
                )));
            }
            builder.with_sort_field(SortField {
                source_id: field.id,
                transform: column.transform,
                direction: column.direction,
                null_order: column.null_order,
            });
        }
        builder
            .build(schema)
            .map_err(|e| Error::invalid(format!("the sort order is not valid: {}", e.message())))
    }
}

/// `order` in the syntax [`SortOrderUpdate::parse`] reads (`event_time desc nulls last, user_id asc
/// nulls first`), columns named by their paths in `schema`; `unsorted` for no order.
pub fn describe(order: &SortOrder, schema: &Schema) -> String {
    if order.is_unsorted() {
        return "unsorted".to_string();
    }
    order
        .fields
        .iter()
        .map(|f| {
            let column = schema
                .name_by_field_id(f.source_id)
                .map(str::to_string)
                .unwrap_or_else(|| format!("<field {}>", f.source_id));
            let term = match f.transform {
                Transform::Identity => column,
                Transform::Bucket(n) => format!("bucket({n}, {column})"),
                Transform::Truncate(w) => format!("truncate({w}, {column})"),
                t => format!("{}({column})", t.to_string().to_ascii_lowercase()),
            };
            let direction = match f.direction {
                SortDirection::Ascending => "asc",
                SortDirection::Descending => "desc",
            };
            let nulls = match f.null_order {
                NullOrder::First => "nulls first",
                NullOrder::Last => "nulls last",
            };
            format!("{term} {direction} {nulls}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether field `id` lives inside a list element or a map key or value, at any depth.
fn inside_list_or_map(places: &std::collections::HashMap<i32, Place>, id: i32) -> bool {
    let mut at = id;
    loop {
        match places.get(&at) {
            Some(Place::Element) => return true,
            Some(Place::Member { owner: Some(owner) }) => at = *owner,
            Some(Place::Member { owner: None }) | None => return false,
        }
    }
}

/// `text` split at the commas outside parentheses (`bucket(16, id) desc, ts` is two columns).
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::{ListType, NestedField, PrimitiveType, StructType};
    use std::sync::Arc;

    fn schema() -> Schema {
        Schema::builder()
            .with_fields(vec![
                Arc::new(NestedField::required(
                    1,
                    "id",
                    Type::Primitive(PrimitiveType::Long),
                )),
                Arc::new(NestedField::optional(
                    2,
                    "event_time",
                    Type::Primitive(PrimitiveType::Timestamptz),
                )),
                Arc::new(NestedField::optional(
                    3,
                    "props",
                    Type::Struct(StructType::new(vec![Arc::new(NestedField::optional(
                        4,
                        "browser",
                        Type::Primitive(PrimitiveType::String),
                    ))])),
                )),
                Arc::new(NestedField::optional(
                    5,
                    "tags",
                    Type::List(ListType::new(Arc::new(NestedField::optional(
                        6,
                        "element",
                        Type::Struct(StructType::new(vec![Arc::new(NestedField::optional(
                            7,
                            "name",
                            Type::Primitive(PrimitiveType::String),
                        ))])),
                    )))),
                )),
            ])
            .build()
            .unwrap()
    }

    #[test]
    fn a_sort_order_text_reads_directions_null_orders_and_transforms() {
        let update =
            SortOrderUpdate::parse("event_time desc nulls last, id, bucket(16, id) DESC NULLS FIRST")
                .unwrap();
        assert_eq!(
            update.columns(),
            &[
                SortColumn::desc("event_time"),
                SortColumn::asc("id"),
                SortColumn {
                    path: "id".into(),
                    transform: Transform::Bucket(16),
                    direction: SortDirection::Descending,
                    null_order: NullOrder::First,
                },
            ]
        );
        let order = update.bind(&schema()).unwrap();
        assert_eq!(
            describe(&order, &schema()),
            "event_time desc nulls last, id asc nulls first, bucket(16, id) desc nulls first"
        );
        assert_eq!(
            SortOrderUpdate::parse(&describe(&order, &schema())).unwrap(),
            update
        );
    }

    #[test]
    fn bad_sort_columns_are_refused_with_the_reason() {
        let message = |text: &str| {
            SortOrderUpdate::parse(text)
                .and_then(|u| u.bind(&schema()))
                .unwrap_err()
                .to_string()
        };
        assert!(message("nope").contains("cannot sort by \"nope\": the table has no such column"));
        assert!(message("tags.name").contains("inside a list or map"));
        assert!(message("props").contains("struct (sort columns are primitive)"));
        assert!(message("day(id)").contains("does not apply"));
        assert!(message("id sideways").contains("cannot read \"sideways\""));
        assert!(message("id,").contains("an empty sort column"));
        assert!(message("frobnicate(id)").contains("unknown transform"));
        assert!(message("bucket(0, id)").contains("needs a width of at least 1"));
        assert!(SortOrderUpdate::parse("props.browser desc")
            .unwrap()
            .bind(&schema())
            .is_ok());
    }
}
