//! `floe schema add|rename|drop|widen|optional|move|identifier`: one schema change per command,
//! through `Floe::update_schema`; each prints the schema it committed.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use floe::table::schema_text::parse_field_type;
use floe::{Floe, NewColumn, Position, SchemaUpdate, TableName};

use super::output;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Change a table's shape: add, rename, drop, widen, loosen or move columns, set identifier fields.
    ///
    /// Each command commits one new schema (no snapshot; data files are never rewritten: readers read
    /// them by field id) and prints it. Nested columns are named by dotted path: `props.browser` is the
    /// field `browser` of the struct `props`, or of its list element or map value.
    ///
    /// The rules (floe writes Iceberg v2 tables):
    ///   - new columns are optional: a required one needs a default, an Iceberg v3 feature;
    ///   - field ids come from the table's last-column-id and are never reused;
    ///   - types only widen: int to long, float to double, decimal(P,S) to decimal(P2,S), P2 >= P;
    ///   - a column moves within its own struct;
    ///   - identifier fields are required primitive columns, not float or double, not in a list or map;
    ///   - an identifier column, or a partition or sort source column in use, cannot be dropped.
    ///
    /// A concurrent writer: a schema change is re-applied on the schema current when it commits, so
    /// changes to different columns both land; two changes to the same column (or name) make the later
    /// one a conflict. An append written with the old schema still lands when every column it wrote
    /// still exists with a type its values widen to.
    #[command(verbatim_doc_comment)]
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum SchemaAction {
    /// Add an optional column (nested: PARENT.NAME), at the end of its struct unless placed.
    Add {
        /// NS.TABLE
        table: String,
        /// Column name or dotted path.
        name: String,
        /// long, string, decimal(12,2), uuid, time, fixed[16], struct<a: int, b: string>, list<string>,
        /// map<string, long>, ...
        r#type: String,
        #[command(flatten)]
        place: Place,
        /// The column's doc string.
        #[arg(long)]
        doc: Option<String>,
        /// Ask for a required column (refused: a required column needs a default, Iceberg v3).
        #[arg(long)]
        required: bool,
    },
    /// Rename a column (nested: props.browser NEW renames the field browser of props).
    Rename {
        /// NS.TABLE
        table: String,
        /// Column name or dotted path.
        old: String,
        /// The new name (of the last segment).
        new: String,
    },
    /// Drop a column and everything nested in it.
    Drop {
        /// NS.TABLE
        table: String,
        /// Column name or dotted path.
        name: String,
    },
    /// Widen a column's type: int to long, float to double, decimal precision up (same scale).
    Widen {
        /// NS.TABLE
        table: String,
        /// Column name or dotted path.
        name: String,
        /// The wider type.
        r#type: String,
    },
    /// Make a required column optional.
    Optional {
        /// NS.TABLE
        table: String,
        /// Column name or dotted path.
        name: String,
    },
    /// Move a column within its struct: --first, --before COL or --after COL.
    Move {
        /// NS.TABLE
        table: String,
        /// Column name or dotted path.
        name: String,
        #[command(flatten)]
        place: Place,
    },
    /// Set the identifier fields (the row key upserts default to); an empty list removes them.
    Identifier {
        /// NS.TABLE
        table: String,
        /// COL[,COL...]: required primitive columns, not float or double.
        #[arg(value_delimiter = ',', num_args = 0..)]
        columns: Vec<String>,
    },
}

/// Where a column goes in its struct.
#[derive(Args, Debug)]
#[group(multiple = false)]
pub struct Place {
    /// First in its struct.
    #[arg(long)]
    first: bool,
    /// Right before this sibling.
    #[arg(long, value_name = "COL")]
    before: Option<String>,
    /// Right after this sibling.
    #[arg(long, value_name = "COL")]
    after: Option<String>,
}

impl Place {
    fn position(self) -> Option<Position> {
        if self.first {
            Some(Position::First)
        } else if let Some(c) = self.before {
            Some(Position::Before(c))
        } else {
            self.after.map(Position::After)
        }
    }
}

pub async fn run(floe: &Floe, command: Command) -> floe::Result<ExitCode> {
    let Command::Schema { action } = command;
    let (table, update) = match action {
        SchemaAction::Add {
            table,
            name,
            r#type,
            place,
            doc,
            required,
        } => {
            let column = NewColumn {
                doc,
                position: place.position(),
                required,
            };
            let update = SchemaUpdate::new().add_column_with(&name, parse_field_type(&r#type)?, column);
            (table, update)
        }
        SchemaAction::Rename { table, old, new } => (table, SchemaUpdate::new().rename_column(&old, &new)),
        SchemaAction::Drop { table, name } => (table, SchemaUpdate::new().drop_column(&name)),
        SchemaAction::Widen { table, name, r#type } => (
            table,
            SchemaUpdate::new().widen_column(&name, parse_field_type(&r#type)?),
        ),
        SchemaAction::Optional { table, name } => (table, SchemaUpdate::new().make_optional(&name)),
        SchemaAction::Move { table, name, place } => {
            let position = place.position().ok_or_else(|| {
                floe::Error::new(
                    floe::ErrorKind::InvalidInput,
                    "floe schema move needs --first, --before COL or --after COL",
                )
            })?;
            (table, SchemaUpdate::new().move_column(&name, position))
        }
        SchemaAction::Identifier { table, columns } => {
            let columns: Vec<&str> = columns
                .iter()
                .map(|c| c.trim())
                .filter(|c| !c.is_empty())
                .collect();
            (table, SchemaUpdate::new().set_identifier_fields(&columns))
        }
    };
    let name = TableName::parse(&table)?;
    let t = floe.update_schema(&name).with(update).commit().await?;
    let out = &mut output::stdout();
    writeln!(out, "committed schema {} of {name}", t.schema().schema_id())?;
    output::table::schema(out, t.schema())?;
    Ok(ExitCode::SUCCESS)
}
