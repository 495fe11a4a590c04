//! Table commands: `create`, `append`, `overwrite`, `delete`, `add-column`, `drop`, `show`,
//! `snapshots`, `scan`, `changes`, `diff`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use floe::table::deletes::RowLevelMode;
use floe::table::files::{read_files, FileReadOptions};
use floe::table::inspect;
use floe::table::schema_text::{parse_field_type, parse_schema};
use floe::{
    At, DeleteOptions, Floe, Isolation, Lineage, OverwriteOptions, PartitionField, RowFilter, ScanOptions,
    TableDefinition, TableName, WriteOptions,
};

use super::output::{self, Format};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a table.
    Create {
        /// NS.TABLE
        table: String,
        /// Columns: "id long not null, name string, ts timestamptz, amount decimal(12,2)".
        #[arg(long)]
        schema: String,
        /// Partition field: col, day(col), month(col), year(col), hour(col), bucket(N, col), truncate(W, col). Repeatable.
        #[arg(long = "partition")]
        partition: Vec<String>,
        /// Table property KEY=VALUE. Repeatable.
        #[arg(long = "property", value_parser = parse_key_value)]
        properties: Vec<(String, String)>,
    },
    /// Append files (CSV with a header, NDJSON, or Parquet; columns matched by name) as one snapshot.
    Append {
        /// NS.TABLE
        table: String,
        /// Input files: local paths or s3:// URIs.
        #[arg(required = true)]
        files: Vec<String>,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Commit existing Parquet files (with the table's field ids, or mapped by the table's
    /// schema.name-mapping.default) as one append snapshot, with statistics from their footers.
    AddFiles {
        /// NS.TABLE
        table: String,
        /// Parquet files: local paths or s3:// URIs on the table's store.
        #[arg(required = true)]
        files: Vec<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Replace all rows, or the rows matching --where, with the files' rows, as one snapshot.
    Overwrite {
        /// NS.TABLE
        table: String,
        /// Input files: local paths or s3:// URIs.
        files: Vec<String>,
        /// Only replace rows matching this SQL predicate.
        #[arg(long = "where")]
        filter: Option<String>,
        /// serializable: fail if a concurrent commit added rows the filter may match (any row, without
        /// --where); snapshot: only fail if a concurrent commit removed or rewrote a file this one read.
        #[arg(long, value_parser = parse_isolation, default_value = "serializable")]
        isolation: Isolation,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Delete the rows matching a SQL predicate, as one snapshot.
    Delete {
        /// NS.TABLE
        table: String,
        /// SQL predicate.
        #[arg(long = "where")]
        filter: String,
        /// serializable: fail if a concurrent commit added rows the filter matches; snapshot: only
        /// fail if a concurrent commit removed or rewrote a file this one read.
        #[arg(long, value_parser = parse_isolation, default_value = "serializable")]
        isolation: Isolation,
        #[command(flatten)]
        rows: RowModeArgs,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Add an optional column at the end (an alias of `floe schema add`).
    AddColumn {
        /// NS.TABLE
        table: String,
        /// Column name.
        name: String,
        /// Column type (long, string, double, timestamptz, decimal(12,2), ...).
        r#type: String,
    },
    /// Drop a table (with --purge, delete the files its metadata references too).
    Drop {
        /// NS.TABLE
        table: String,
        /// Delete data and metadata files.
        #[arg(long)]
        purge: bool,
    },
    /// Schema, partition spec, properties, refs, current snapshot, files and rows of a table.
    Show {
        /// NS.TABLE[@REF]
        table: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Snapshot history: snapshot_id, parent_id, committed_at, operation, summary, refs.
    Snapshots {
        /// NS.TABLE
        table: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Read rows. REF is a snapshot id, a branch, a tag, or an RFC 3339 time.
    Scan {
        /// NS.TABLE[@REF]
        table: String,
        /// Columns to return, comma-separated.
        #[arg(long, value_delimiter = ',')]
        columns: Option<Vec<String>>,
        /// SQL predicate.
        #[arg(long = "where")]
        filter: Option<String>,
        /// At most this many rows.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Files and rows added and removed between two states of a table.
    Changes {
        /// NS.TABLE
        table: String,
        /// Earlier state (snapshot id, branch, tag or time).
        from: String,
        /// Later state (default: main).
        to: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Compare two tables or one table at two refs: exit 0 when equal, 1 when different, 2 on error.
    Diff {
        /// NS.TABLE[@REF]
        left: String,
        /// NS.TABLE[@REF]
        right: String,
        /// Key columns, comma-separated: report added, removed and changed rows by key.
        #[arg(long, value_delimiter = ',')]
        key: Option<Vec<String>>,
        /// Relative tolerance for doubles.
        #[arg(long, default_value_t = 1e-9)]
        float_tolerance: f64,
        /// Memory budget for rows of differing buckets, in MB.
        #[arg(long, default_value_t = 256)]
        memory_mb: usize,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// Whether the command is `floe diff` (its errors exit 2).
pub fn is_diff(command: &super::Command) -> bool {
    matches!(command, super::Command::Table(Command::Diff { .. }))
}

/// How input files are read.
#[derive(Args, Debug)]
pub struct ReadArgs {
    /// Drop columns the table does not have instead of refusing the file.
    #[arg(long)]
    allow_extra_columns: bool,
}

/// Where and how a write commits.
#[derive(Args, Debug)]
pub struct WriteArgs {
    /// Commit to this branch instead of main (a new branch starts from main).
    #[arg(long)]
    branch: Option<String>,
    /// Snapshot summary property KEY=VALUE. Repeatable.
    #[arg(long = "property", value_parser = parse_key_value)]
    properties: Vec<(String, String)>,
    /// floe.run-id of the snapshot.
    #[arg(long)]
    run_id: Option<String>,
    /// floe.stage of the snapshot.
    #[arg(long)]
    stage: Option<String>,
}

/// How a row-level change writes the rows it changes.
#[derive(Args, Debug)]
pub struct RowModeArgs {
    /// copy-on-write (rewrite each file with changed rows), merge-on-read (write position delete
    /// files) or auto (per file, by its deleted fraction); default: the table's write.delete.mode,
    /// write.update.mode or write.merge.mode property, else copy-on-write for delete and auto for
    /// upsert and merge.
    #[arg(long, value_parser = parse_row_mode)]
    pub row_mode: Option<RowLevelMode>,
    /// In auto, rewrite a file once this fraction of its rows is deleted (default: the table's
    /// delete-ratio-threshold property, else 0.3).
    #[arg(long)]
    pub delete_ratio_threshold: Option<f64>,
}

fn parse_row_mode(s: &str) -> Result<RowLevelMode, String> {
    RowLevelMode::parse(s).map_err(|e| e.message().to_string())
}

impl WriteArgs {
    pub(crate) fn options(&self) -> WriteOptions {
        let mut o = WriteOptions::default();
        if let Some(b) = &self.branch {
            o.branch = b.clone();
        }
        o.properties = self.properties.iter().cloned().collect::<BTreeMap<_, _>>();
        o.lineage = Lineage {
            run_id: self.run_id.clone(),
            stage: self.stage.clone(),
            engine: None,
            inputs: BTreeMap::new(),
        };
        o
    }
}

pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

pub(crate) fn parse_isolation(s: &str) -> Result<Isolation, String> {
    Isolation::parse(s).map_err(|e| e.message().to_string())
}

/// The rows of `files`, shaped for `name` (read as `options` say).
pub(super) async fn rows_of(
    floe: &Floe,
    name: &TableName,
    files: &[String],
    options: &FileReadOptions,
) -> floe::Result<floe::table::files::Batches> {
    let t = floe.load_table(name).await?;
    read_files(floe.storage(), files, t.arrow_schema()?, options).await
}

impl ReadArgs {
    /// The file-reading options these flags ask for.
    fn options(&self) -> FileReadOptions {
        FileReadOptions {
            allow_extra_columns: self.allow_extra_columns,
            ..Default::default()
        }
    }
}

pub async fn run(floe: &Floe, command: Command) -> floe::Result<ExitCode> {
    let out = &mut output::stdout();
    match command {
        Command::Create {
            table,
            schema,
            partition,
            properties,
        } => {
            let name = TableName::parse(&table)?;
            let definition = TableDefinition {
                schema: parse_schema(&schema)?,
                partition: partition
                    .iter()
                    .map(|p| PartitionField::parse(p))
                    .collect::<floe::Result<_>>()?,
                properties: properties.into_iter().collect(),
            };
            floe.create_table(&name, definition).await?;
            writeln!(out, "created table {name}")?;
        }
        Command::Append {
            table,
            files,
            read,
            write,
        } => {
            let name = TableName::parse(&table)?;
            let batches = rows_of(floe, &name, &files, &read.options()).await?;
            let r = floe.append(&name, batches, &write.options()).await?;
            output::table::commit(out, &r)?;
        }
        Command::AddFiles { table, files, write } => {
            let r = floe
                .add_files(&TableName::parse(&table)?, &files, &write.options())
                .await?;
            output::table::commit(out, &r)?;
        }
        Command::Overwrite {
            table,
            files,
            filter,
            isolation,
            read,
            write,
        } => {
            let name = TableName::parse(&table)?;
            let batches = rows_of(floe, &name, &files, &read.options()).await?;
            // The new rows come from files, not from the rows they replace: a concurrent compaction
            // makes the overwrite find those rows again rather than fail.
            let options = OverwriteOptions {
                isolation,
                write: write.options(),
                replan_on_conflict: true,
            };
            let r = floe
                .overwrite(&name, filter.map(RowFilter::sql), batches, &options)
                .await?;
            output::table::commit(out, &r)?;
        }
        Command::Delete {
            table,
            filter,
            isolation,
            rows,
            write,
        } => {
            let name = TableName::parse(&table)?;
            let options = DeleteOptions {
                isolation,
                write: write.options(),
                row_mode: rows.row_mode,
                delete_ratio_threshold: rows.delete_ratio_threshold,
            };
            let r = floe.delete(&name, RowFilter::sql(filter), &options).await?;
            output::table::commit(out, &r)?;
        }
        Command::AddColumn { table, name, r#type } => {
            let t = TableName::parse(&table)?;
            let table = floe
                .update_schema(&t)
                .add_column(&name, parse_field_type(&r#type)?)
                .commit()
                .await?;
            writeln!(out, "added column {name} to {t}")?;
            output::table::schema(out, table.schema())?;
        }
        Command::Drop { table, purge } => {
            let name = TableName::parse(&table)?;
            floe.drop_table(&name, purge).await?;
            writeln!(
                out,
                "dropped table {name}{}",
                if purge { " and its files" } else { "" }
            )?;
        }
        Command::Show { table, format } => {
            let (name, at) = floe::table::parse_table_ref(&table)?;
            let t = floe.load_table(&name).await?;
            output::table::show(out, &inspect::summary(&t, &at).await?, format)?;
        }
        Command::Snapshots { table, format } => {
            let t = floe.load_table(&TableName::parse(&table)?).await?;
            output::table::snapshots(out, &inspect::snapshots(&t)?, format)?;
        }
        Command::Scan {
            table,
            columns,
            filter,
            limit,
            format,
        } => {
            let (name, at) = floe::table::parse_table_ref(&table)?;
            let options = ScanOptions {
                at: Some(at),
                columns,
                filter: filter.map(RowFilter::sql),
                limit,
            };
            let stream = floe.scan(&name, &options).await?;
            let schema = stream.schema.clone();
            output::rows::write(out, &schema, &stream.collect().await?, format)?;
        }
        Command::Changes {
            table,
            from,
            to,
            format,
        } => {
            let name = TableName::parse(&table)?;
            let to = to.map(|t| At::parse(&t)).unwrap_or(At::Current);
            let c = floe.changes(&name, &At::parse(&from), &to).await?;
            output::table::changes(out, &c, format)?;
        }
        Command::Diff {
            left,
            right,
            key,
            float_tolerance,
            memory_mb,
            format,
        } => {
            let options = floe::diff::DiffOptions {
                key,
                float_tolerance,
                memory_limit: memory_mb.max(1) * 1024 * 1024,
                ..Default::default()
            };
            let report = floe::diff::diff(
                floe,
                &floe::diff::DiffSide::parse(&left)?,
                &floe::diff::DiffSide::parse(&right)?,
                &options,
            )
            .await?;
            output::table::diff(out, &report, format)?;
            return Ok(if report.equal {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
