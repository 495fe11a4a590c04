//! `floe sort-order set|unset`: replace a table's default sort order through
//! `Floe::update_sort_order`; each prints the order it committed.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use floe::table::sort_order::describe;
use floe::{Floe, SortOrderUpdate, TableName};

use super::output;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Set or remove the sort order every write sorts its rows by.
    ///
    /// The sort order is table metadata (Iceberg's default sort order): setting it commits no
    /// snapshot and rewrites no file. From then on every floe write (append, overwrite, delete and
    /// merge rewrites, compaction, ingest, the pipeline's engines) sorts the rows of that write across
    /// all the files it writes, and records the order's id in each file's manifest entry. The files of
    /// one write then hold disjoint ranges of the first sort column (within each partition), so a
    /// filter on that column skips the files whose bounds cannot match.
    ///
    /// The sort spills to the temporary directory beyond 256 MiB of rows, so a write of any size
    /// sorts in bounded memory. Files written before the order was set, and files added with
    /// `floe add-files`, keep the order they have (added files are recorded as order 0, unsorted);
    /// the files `floe compact` rewrites come out sorted.
    ///
    ///   floe sort-order set web.events "event_time desc nulls last, user_id"
    ///   floe sort-order set web.events "day(event_time), bucket(16, user_id) desc"
    ///   floe sort-order unset web.events
    #[command(verbatim_doc_comment)]
    SortOrder {
        #[command(subcommand)]
        action: SortOrderAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum SortOrderAction {
    /// Sort by columns, in order: each COLUMN or TRANSFORM(COLUMN), then asc (the default) or desc,
    /// then nulls first or nulls last (default: first when ascending, last when descending).
    ///
    /// Columns are named by dotted path (props.browser); they must be primitive and not inside a list
    /// or map. Transforms: identity, year, month, day, hour, bucket(N, COLUMN), truncate(W, COLUMN).
    Set {
        /// NS.TABLE
        table: String,
        /// The order: "event_time desc nulls last, user_id".
        order: String,
    },
    /// Remove the sort order: writes keep the order rows come in (sort order 0, unsorted).
    Unset {
        /// NS.TABLE
        table: String,
    },
}

pub async fn run(floe: &Floe, command: Command) -> floe::Result<ExitCode> {
    let Command::SortOrder { action } = command;
    let (table, update) = match action {
        SortOrderAction::Set { table, order } => (table, SortOrderUpdate::parse(&order)?),
        SortOrderAction::Unset { table } => (table, SortOrderUpdate::new()),
    };
    let name = TableName::parse(&table)?;
    let t = floe.update_sort_order(&name).with(update).commit().await?;
    let order = t.metadata().default_sort_order();
    writeln!(
        output::stdout(),
        "committed sort order {} of {name}: {}",
        order.order_id,
        describe(order, t.schema())
    )?;
    Ok(ExitCode::SUCCESS)
}
