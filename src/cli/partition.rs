//! `floe partition add|drop|rename`: one partition-spec change per command, through
//! `Floe::update_spec`; each prints the spec it committed.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use floe::{Floe, SpecUpdate, TableName};

use super::output;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Change how a table is partitioned: add, drop or rename partition fields.
    ///
    /// Each command commits one new default partition spec (no snapshot) and prints it. New writes
    /// use it; files already written keep the spec they were written with, and every reader, filter,
    /// delete and compaction handles each file by its own spec. `floe compact --rewrite-spec` rewrites
    /// the older files into the current spec.
    ///
    /// Terms: COL (identity), bucket(N, COL), truncate(W, COL), year(COL), month(COL), day(COL),
    /// hour(COL). A source is a primitive column (a struct's field by dotted path, not inside a list
    /// or map) whose type the transform accepts.
    ///
    /// The rules (Iceberg Java's):
    ///   - a column takes each transform once, and only one of year, month, day and hour;
    ///   - default names: COL, COL_bucket_N, COL_trunc_W, COL_year, COL_month, COL_day, COL_hour;
    ///   - a field name is unique in the spec, and a column's name only for that column's identity;
    ///   - a field an earlier spec had (same column and transform) gets its old field id back;
    ///   - a dropped field leaves the spec (v2 tables) or becomes void (v1 tables);
    ///   - a column that a spec in use partitions by cannot be dropped from the schema.
    ///
    /// A concurrent writer: an append planned on the old spec still lands, its files recorded under
    /// the spec they were written with. Two spec changes racing: the later one is a conflict.
    #[command(verbatim_doc_comment)]
    Partition {
        #[command(subcommand)]
        action: PartitionAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum PartitionAction {
    /// Partition new writes also by a term: "bucket(16, user_id)", "day(event_time)", "country".
    Add {
        /// NS.TABLE
        table: String,
        /// COL, bucket(N, COL), truncate(W, COL), year(COL), month(COL), day(COL) or hour(COL).
        term: String,
        /// The partition field's name (default: COL, COL_bucket_N, COL_day, ...).
        #[arg(long)]
        name: Option<String>,
    },
    /// Stop partitioning new writes by a field (named as `floe show` lists it).
    Drop {
        /// NS.TABLE
        table: String,
        /// The partition field's name.
        name: String,
    },
    /// Rename a partition field.
    Rename {
        /// NS.TABLE
        table: String,
        /// The partition field's name.
        old: String,
        /// Its new name.
        new: String,
    },
}

pub async fn run(floe: &Floe, command: Command) -> floe::Result<ExitCode> {
    let Command::Partition { action } = command;
    let (table, update) = match action {
        PartitionAction::Add { table, term, name } => {
            (table, SpecUpdate::new().add_term(&term, name.as_deref())?)
        }
        PartitionAction::Drop { table, name } => (table, SpecUpdate::new().remove_field(&name)),
        PartitionAction::Rename { table, old, new } => (table, SpecUpdate::new().rename_field(&old, &new)),
    };
    let name = TableName::parse(&table)?;
    let t = floe.update_spec(&name).with(update).commit().await?;
    let out = &mut output::stdout();
    let spec = t.metadata().default_partition_spec();
    writeln!(out, "committed partition spec {} of {name}", spec.spec_id())?;
    output::table::partition_spec(out, spec, t.schema(), true)?;
    Ok(ExitCode::SUCCESS)
}
