//! Row-level commands: `upsert` (by key, from files) and `merge` (SQL MERGE clauses, the source from
//! files or from a query over floe's tables). Both print what they did to rows; `--dry-run` plans,
//! prints and commits nothing.

use std::process::ExitCode;

use clap::Subcommand;
use floe::table::files::FileReadOptions;
use floe::{
    CommitResult, Dedupe, Floe, Isolation, MergeSpec, RowCounts, RowLevelOptions, TableName, UpsertOptions,
    WhenMatched, WhenNotMatched,
};
use futures::TryStreamExt;

use super::output::{self, Format};
use super::table::{parse_isolation, RowModeArgs, WriteArgs};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Insert new rows and replace existing ones by key (and delete tombstones), as one snapshot.
    ///
    /// Source rows are matched to the table's rows by --key (default: the table's identifier
    /// fields); key values must not be NULL, and must be unique in the source unless --dedupe keeps
    /// the latest. Files may carry columns the table lacks (such as a CDC feed's _op): they can be
    /// used in --delete-where and --update-if, and are never written. Changed files are written in
    /// the row-level mode (--row-mode, else the table's write.update.mode, else auto).
    Upsert {
        /// NS.TABLE
        table: String,
        /// Source files (.csv, .ndjson, .parquet; local paths or s3:// URIs).
        #[arg(required = true)]
        files: Vec<String>,
        /// Key columns, comma-separated (default: the table's identifier fields).
        #[arg(long, value_delimiter = ',')]
        key: Vec<String>,
        /// Tombstones: source rows this SQL predicate over the source's columns holds for delete the
        /// matched row (for example "_op = 'd'").
        #[arg(long)]
        delete_where: Option<String>,
        /// Replace a matched row only when one of the source's columns differs from it.
        #[arg(long)]
        only_changed: bool,
        /// Replace a matched row only where this SQL condition over t. (table) and s. (source)
        /// columns holds, for example "s.updated_at > t.updated_at".
        #[arg(long, conflicts_with = "only_changed")]
        update_if: Option<String>,
        /// Leave matched rows as they are: insert new keys only.
        #[arg(long, conflicts_with_all = ["only_changed", "update_if"])]
        insert_only: bool,
        /// Insert no new key: replace matched rows only.
        #[arg(long, conflicts_with = "insert_only")]
        update_only: bool,
        /// Source rows sharing a key: latest:COL keeps the one with the greatest COL (default: refuse).
        #[arg(long, value_parser = parse_dedupe)]
        dedupe: Option<Dedupe>,
        /// serializable: fail if a concurrent commit added a row with one of the source's keys;
        /// snapshot: only fail if it removed or rewrote a file this one read.
        #[arg(long, value_parser = parse_isolation, default_value = "serializable")]
        isolation: Isolation,
        #[command(flatten)]
        rows: RowModeArgs,
        #[command(flatten)]
        write: WriteArgs,
        /// Plan and print the counts; commit nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Change rows by SQL MERGE clauses, as one snapshot.
    ///
    /// The table is `t`, the source `s`. --on must include an equality between them (t.id = s.id).
    /// Each --when is one clause without its WHEN, in order; the first that holds for a row wins:
    ///   matched [and COND] then update *          (every table column the source has)
    ///   matched [and COND] then update set a = s.a, b = t.b + 1
    ///   matched [and COND] then delete
    ///   not matched [and COND] then insert *
    ///   not matched [and COND] then insert (a, b) values (s.a, 0)
    ///   not matched by source [and COND] then delete
    Merge {
        /// NS.TABLE
        table: String,
        /// Source files (.csv, .ndjson, .parquet).
        #[arg(long = "using", num_args = 1.., required_unless_present = "using_sql", conflicts_with = "using_sql")]
        using: Vec<String>,
        /// The source as a DuckDB SQL query over floe's tables (locked down as `floe sql` is).
        #[arg(long)]
        using_sql: Option<String>,
        /// The join condition, SQL over t. and s. columns.
        #[arg(long)]
        on: String,
        /// A clause, without WHEN (repeat it for several, in order).
        #[arg(long = "when", required = true)]
        when: Vec<String>,
        /// serializable: fail if a concurrent commit added a row with one of the source's keys (any
        /// row, with a `not matched by source` clause); snapshot: only fail if it removed or rewrote
        /// a file this one read.
        #[arg(long, value_parser = parse_isolation, default_value = "serializable")]
        isolation: Isolation,
        #[command(flatten)]
        rows: RowModeArgs,
        #[command(flatten)]
        write: WriteArgs,
        /// Plan and print the counts; commit nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

fn parse_dedupe(s: &str) -> Result<Dedupe, String> {
    match s.split_once(':') {
        Some(("latest", col)) if !col.trim().is_empty() => Ok(Dedupe::Latest(col.trim().to_string())),
        _ => Err(format!("{s:?}: expected latest:COLUMN")),
    }
}

/// The source's rows shaped for `name`, keeping the columns the table lacks (for the clauses).
async fn source_rows(
    floe: &Floe,
    name: &TableName,
    files: &[String],
) -> floe::Result<floe::table::files::Batches> {
    let options = FileReadOptions {
        keep_extra_columns: true,
        ..Default::default()
    };
    super::table::rows_of(floe, name, files, &options).await
}

pub async fn run(floe: &Floe, command: Command) -> floe::Result<ExitCode> {
    let out = &mut output::stdout();
    match command {
        Command::Upsert {
            table,
            files,
            key,
            delete_where,
            only_changed,
            update_if,
            insert_only,
            update_only,
            dedupe,
            isolation,
            rows,
            write,
            dry_run,
            format,
        } => {
            let name = TableName::parse(&table)?;
            let options = UpsertOptions {
                rows: row_options(isolation, &rows, &write),
                key,
                when_matched: match (only_changed, update_if, insert_only) {
                    (_, _, true) => WhenMatched::Ignore,
                    (true, _, _) => WhenMatched::UpdateChanged,
                    (_, Some(c), _) => WhenMatched::UpdateIf(c),
                    _ => WhenMatched::UpdateAll,
                },
                when_not_matched: if update_only {
                    WhenNotMatched::Ignore
                } else {
                    WhenNotMatched::Insert
                },
                delete_where,
                dedupe: dedupe.unwrap_or_default(),
            };
            let source = source_rows(floe, &name, &files).await?;
            let mut tx = floe.transaction();
            let planned = tx.upsert(&name, source, &options).await?;
            finish(out, floe, tx, &name, planned, dry_run, format).await
        }
        Command::Merge {
            table,
            using,
            using_sql,
            on,
            when,
            isolation,
            rows,
            write,
            dry_run,
            format,
        } => {
            let name = TableName::parse(&table)?;
            let clauses: Vec<&str> = when.iter().map(String::as_str).collect();
            let spec = MergeSpec::parse(&on, &clauses)?;
            let options = row_options(isolation, &rows, &write);
            let source: Vec<arrow::array::RecordBatch> = match using_sql {
                Some(sql) => {
                    let result = floe::query::sql(floe, &sql).await?;
                    let mut batches = result.batches;
                    if batches.is_empty() {
                        batches.push(arrow::array::RecordBatch::new_empty(result.schema));
                    }
                    batches
                }
                None => source_rows(floe, &name, &using).await?.try_collect().await?,
            };
            let mut tx = floe.transaction();
            let source = futures::stream::iter(source.into_iter().map(Ok));
            let planned = tx.merge(&name, source, &spec, &options).await?;
            finish(out, floe, tx, &name, planned, dry_run, format).await
        }
    }
}

fn row_options(isolation: Isolation, rows: &RowModeArgs, write: &WriteArgs) -> RowLevelOptions {
    RowLevelOptions {
        write: write.options(),
        isolation,
        row_mode: rows.row_mode,
        delete_ratio_threshold: rows.delete_ratio_threshold,
    }
}

/// Commit (or, on a dry run, abort) and print the counts.
async fn finish(
    out: &mut output::Stdout,
    floe: &Floe,
    tx: floe::Transaction,
    name: &TableName,
    planned: RowCounts,
    dry_run: bool,
    format: Format,
) -> floe::Result<ExitCode> {
    let result = if dry_run {
        tx.abort().await;
        CommitResult::nothing(floe.load_table(name).await?, planned)
    } else {
        match tx.commit().await?.pop() {
            Some(r) => r,
            None => CommitResult::nothing(floe.load_table(name).await?, planned),
        }
    };
    output::table::row_changes(out, &result, dry_run, format)?;
    Ok(ExitCode::SUCCESS)
}
