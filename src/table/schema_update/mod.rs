//! Schema evolution as data: a [`SchemaUpdate`] is a list of operations on columns named by their
//! (dotted) paths, applied in order to a schema ([`apply`]); the transaction re-applies it on the
//! schema current when it commits ([`crate::table::transaction::schema`]), and [`touched`] tells
//! whether a concurrent schema change touched the same fields. Iceberg Java's `SchemaUpdate` and
//! PyIceberg's `UpdateSchema` are the models.
//!
//! The rules (floe writes v2 tables):
//! - new columns are optional (a required one needs a default, an Iceberg v3 feature), at the end of
//!   their struct unless placed; they may go inside a struct, a list element or a map value;
//! - field ids come from the table's `last-column-id` and are never reused;
//! - a type only widens: `int` → `long`, `float` → `double`, `decimal(P,S)` → `decimal(P2,S)`;
//! - a column moves within its own struct;
//! - identifier fields are required primitive columns, not `float`/`double`, outside lists and maps;
//! - an identifier column, or the source of a partition field or sort field in use, cannot be
//!   dropped.

pub(crate) mod apply;
pub(crate) mod touched;
pub(crate) mod tree;
mod union;

use iceberg::spec::Type;

pub use tree::iceberg_type_of;

/// Where a column goes in its struct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    /// First.
    First,
    /// Right before this column (a path, or the name of a sibling).
    Before(String),
    /// Right after this column (a path, or the name of a sibling).
    After(String),
}

/// How a new column is added: its doc, its position, and whether it is required (refused: a
/// required column needs a default, an Iceberg v3 feature).
#[derive(Clone, Debug, Default)]
pub struct NewColumn {
    /// The column's doc string.
    pub doc: Option<String>,
    /// Where it goes in its struct (the end when `None`).
    pub position: Option<Position>,
    /// Ask for a required column (always refused on the v2 tables floe writes).
    pub required: bool,
}

/// One operation of a schema update, on columns named by path.
#[derive(Clone, Debug)]
pub(crate) enum SchemaOp {
    Add {
        path: String,
        field_type: Type,
        column: NewColumn,
    },
    Rename {
        path: String,
        new_name: String,
    },
    Drop {
        path: String,
    },
    MakeOptional {
        path: String,
    },
    UpdateDoc {
        path: String,
        doc: Option<String>,
    },
    Widen {
        path: String,
        to: Type,
    },
    Move {
        path: String,
        position: Position,
    },
    SetIdentifier {
        paths: Vec<String>,
    },
    Union {
        schema: arrow::datatypes::SchemaRef,
    },
}

/// Changes to a table's schema, applied in order and committed as one new schema (see
/// [`crate::Floe::update_schema`], or [`crate::Transaction::update_schema`] to commit it with other
/// changes). Columns are named by path: `props.browser` is the field `browser` of the struct
/// `props` (of its list element or map value, when `props` is a list or a map).
#[derive(Clone, Debug, Default)]
pub struct SchemaUpdate {
    pub(crate) ops: Vec<SchemaOp>,
}

impl SchemaUpdate {
    /// An update that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no operation was added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Add an optional column at the end of its struct (`parent.name` for a nested one).
    pub fn add_column(self, path: &str, field_type: Type) -> Self {
        self.add_column_with(path, field_type, NewColumn::default())
    }

    /// Add a column with a doc and a position (and, refused, `required`).
    pub fn add_column_with(mut self, path: &str, field_type: Type, column: NewColumn) -> Self {
        self.ops.push(SchemaOp::Add {
            path: path.to_string(),
            field_type,
            column,
        });
        self
    }

    /// Rename a column (the last segment of its path) to `new_name`.
    pub fn rename_column(mut self, path: &str, new_name: &str) -> Self {
        self.ops.push(SchemaOp::Rename {
            path: path.to_string(),
            new_name: new_name.to_string(),
        });
        self
    }

    /// Drop a column (and everything nested in it).
    pub fn drop_column(mut self, path: &str) -> Self {
        self.ops.push(SchemaOp::Drop {
            path: path.to_string(),
        });
        self
    }

    /// Make a required column optional.
    pub fn make_optional(mut self, path: &str) -> Self {
        self.ops.push(SchemaOp::MakeOptional {
            path: path.to_string(),
        });
        self
    }

    /// Set (or with `None` remove) a column's doc.
    pub fn update_doc(mut self, path: &str, doc: Option<&str>) -> Self {
        self.ops.push(SchemaOp::UpdateDoc {
            path: path.to_string(),
            doc: doc.map(str::to_string),
        });
        self
    }

    /// Widen a column's type by Iceberg's promotion rules (`int` → `long`, `float` → `double`,
    /// decimal precision up with the same scale); anything else is refused.
    pub fn widen_column(mut self, path: &str, to: Type) -> Self {
        self.ops.push(SchemaOp::Widen {
            path: path.to_string(),
            to,
        });
        self
    }

    /// Move a column within its struct.
    pub fn move_column(mut self, path: &str, position: Position) -> Self {
        self.ops.push(SchemaOp::Move {
            path: path.to_string(),
            position,
        });
        self
    }

    /// Move a column first in its struct.
    pub fn move_first(self, path: &str) -> Self {
        self.move_column(path, Position::First)
    }

    /// Move a column right before a sibling.
    pub fn move_before(self, path: &str, sibling: &str) -> Self {
        self.move_column(path, Position::Before(sibling.to_string()))
    }

    /// Move a column right after a sibling.
    pub fn move_after(self, path: &str, sibling: &str) -> Self {
        self.move_column(path, Position::After(sibling.to_string()))
    }

    /// Set the identifier fields (the row key upserts default to): required primitive columns, not
    /// floating point, not inside a list or map. An empty list removes them.
    pub fn set_identifier_fields<S: AsRef<str>>(mut self, paths: &[S]) -> Self {
        self.ops.push(SchemaOp::SetIdentifier {
            paths: paths.iter().map(|p| p.as_ref().to_string()).collect(),
        });
        self
    }

    /// Make the schema take `schema` (an input's Arrow schema), by name: columns (nested ones too)
    /// the table lacks are added as optional, and columns the input has in a wider type are widened
    /// where the promotion rules allow. A narrower input type is left to the writer's widening; a
    /// type that neither widens nor is widened is refused. Never drops or loosens a column.
    pub fn union_by_name(mut self, schema: arrow::datatypes::SchemaRef) -> Self {
        self.ops.push(SchemaOp::Union { schema });
        self
    }
}
