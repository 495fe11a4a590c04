//! Maintenance commands: `expire`, `remove-orphans`, `compact`, `maintain`. Each prints what it did
//! (snapshots expired, files and bytes deleted by kind, files rewritten and written); `--dry-run`
//! changes nothing and prints the same.

use std::process::ExitCode;

use clap::Subcommand;
use floe::maintenance::{CompactOptions, ExpireOptions, MaintainOptions, OrphanOptions};
use floe::units::{parse_duration, parse_size, parse_time_or_age};
use floe::{Floe, Namespace, RowFilter, TableName};

use super::output::{self, Format};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Expire old snapshots (refs keep theirs) and delete the files only they referenced.
    Expire {
        /// NS.TABLE
        table: String,
        /// Expire snapshots older than this age (5d, 12h) or RFC 3339 time (default: the table's
        /// history.expire.max-snapshot-age-ms, 5 days).
        #[arg(long)]
        older_than: Option<String>,
        /// Keep at least this many snapshots of every branch (default: the table's
        /// history.expire.min-snapshots-to-keep, 1).
        #[arg(long)]
        retain_last: Option<usize>,
        /// Print what would be expired and deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Delete files under the table's location that no metadata references and that are old enough.
    RemoveOrphans {
        /// NS.TABLE
        table: String,
        /// Only files older than this (default 3d, so writes in flight are never hit).
        #[arg(long, default_value = "3d")]
        older_than: String,
        /// List the orphans; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Rewrite small data files into files of the target size, and files with many deleted rows
    /// with their deletes applied (one `replace` snapshot).
    Compact {
        /// NS.TABLE
        table: String,
        /// Only files that may hold rows matching this SQL predicate.
        #[arg(long = "where")]
        filter: Option<String>,
        /// Size of the files written (default: write.target-file-size-bytes, else 128MB).
        #[arg(long)]
        target_file_size: Option<String>,
        /// Files under this size are rewritten (default: 0.75 x the target).
        #[arg(long)]
        min_file_size: Option<String>,
        /// Files with at least this fraction of rows deleted are rewritten with their deletes
        /// applied (default: the table's delete-ratio-threshold, else 0.3).
        #[arg(long)]
        delete_ratio_threshold: Option<f64>,
        /// Also rewrite every file written with an older partition spec into the current spec,
        /// whatever its size (after `floe partition add|drop`).
        #[arg(long)]
        rewrite_spec: bool,
        /// Print what would be rewritten; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Compact, expire snapshots and remove orphans, with each table's properties as defaults.
    Maintain {
        /// NS.TABLE, or NS for every table of the namespace.
        target: String,
        /// Print what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

pub async fn run(floe: &Floe, command: Command) -> floe::Result<ExitCode> {
    let out = &mut output::stdout();
    match command {
        Command::Expire {
            table,
            older_than,
            retain_last,
            dry_run,
            format,
        } => {
            let now = chrono::Utc::now().timestamp_millis();
            let options = ExpireOptions {
                older_than_ms: older_than.map(|t| parse_time_or_age(&t, now)).transpose()?,
                retain_last,
                dry_run,
            };
            if retain_last == Some(0) {
                return Err(floe::Error::new(
                    floe::ErrorKind::InvalidInput,
                    "--retain-last must be at least 1",
                ));
            }
            let r = floe
                .expire_snapshots(&TableName::parse(&table)?, &options)
                .await?;
            output::maintain::expire(out, &r, format)?;
        }
        Command::RemoveOrphans {
            table,
            older_than,
            dry_run,
            format,
        } => {
            let options = OrphanOptions {
                older_than: Some(parse_duration(&older_than)?),
                dry_run,
            };
            let r = floe
                .remove_orphan_files(&TableName::parse(&table)?, &options)
                .await?;
            output::maintain::orphans(out, &r, format)?;
        }
        Command::Compact {
            table,
            filter,
            target_file_size,
            min_file_size,
            delete_ratio_threshold,
            rewrite_spec,
            dry_run,
            format,
        } => {
            let options = CompactOptions {
                filter: filter.map(RowFilter::sql),
                target_file_size: target_file_size.map(|s| parse_size(&s)).transpose()?,
                min_file_size: min_file_size.map(|s| parse_size(&s)).transpose()?,
                delete_ratio_threshold,
                rewrite_spec,
                dry_run,
                ..Default::default()
            };
            let r = floe.compact(&TableName::parse(&table)?, &options).await?;
            output::maintain::compact(out, &r, format)?;
        }
        Command::Maintain {
            target,
            dry_run,
            format,
        } => {
            let tables = match TableName::parse(&target) {
                Ok(t) if floe.catalog().metadata_location(&t).await?.is_some() => vec![t],
                _ => {
                    let ns = Namespace::parse(&target)?;
                    if !floe.catalog().namespace_exists(&ns).await? {
                        return Err(floe::Error::new(
                            floe::ErrorKind::NotFound,
                            format!("no table or namespace {target}"),
                        ));
                    }
                    floe.tables(&ns).await?
                }
            };
            let options = MaintainOptions {
                dry_run,
                ..MaintainOptions::all()
            };
            let mut reports = Vec::new();
            for t in &tables {
                reports.push(floe.maintain(t, &options).await?);
            }
            output::maintain::maintain(out, &reports, format)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
