//! Ref commands: `branch create|drop`, `tag create|drop`, `publish`, `rollback`.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use floe::{At, Floe, TableName};

use super::output;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or drop a branch.
    Branch {
        #[command(subcommand)]
        action: RefAction,
    },
    /// Create or drop a tag.
    Tag {
        #[command(subcommand)]
        action: RefAction,
    },
    /// Fast-forward main to the head of a branch.
    Publish {
        /// NS.TABLE
        table: String,
        /// Branch.
        branch: String,
    },
    /// Move main back to an earlier snapshot.
    Rollback {
        /// NS.TABLE
        table: String,
        /// Snapshot id (an ancestor of main).
        snapshot: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum RefAction {
    /// Create it at main's head, or at --at.
    Create {
        /// NS.TABLE
        table: String,
        /// Name.
        name: String,
        /// Snapshot id, branch, tag or time to point at.
        #[arg(long)]
        at: Option<String>,
    },
    /// Drop it.
    Drop {
        /// NS.TABLE
        table: String,
        /// Name.
        name: String,
    },
}

pub async fn run(floe: &Floe, command: Command) -> floe::Result<ExitCode> {
    match command {
        Command::Branch { action } => ref_action(floe, action, false).await?,
        Command::Tag { action } => ref_action(floe, action, true).await?,
        Command::Publish { table, branch } => {
            let t = floe.publish(&TableName::parse(&table)?, &branch).await?;
            writeln!(
                output::stdout(),
                "main of {} is now at {}",
                t.name(),
                t.current_snapshot()
                    .map(|s| s.snapshot_id().to_string())
                    .unwrap_or_default()
            )?;
        }
        Command::Rollback { table, snapshot } => {
            let t = floe.rollback(&TableName::parse(&table)?, snapshot).await?;
            writeln!(output::stdout(), "main of {} is now at {snapshot}", t.name())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn ref_action(floe: &Floe, action: RefAction, tag: bool) -> floe::Result<()> {
    let what = if tag { "tag" } else { "branch" };
    match action {
        RefAction::Create { table, name, at } => {
            let t = TableName::parse(&table)?;
            let at = at.map(|a| At::parse(&a)).unwrap_or(At::Current);
            let table = if tag {
                floe.create_tag(&t, &name, &at).await?
            } else {
                floe.create_branch(&t, &name, &at).await?
            };
            let id = table.find_ref(&name).map(|r| r.snapshot_id).unwrap_or_default();
            writeln!(output::stdout(), "created {what} {name} of {t} at {id}")?;
        }
        RefAction::Drop { table, name } => {
            let t = TableName::parse(&table)?;
            if let Some(r) = floe.load_table(&t).await?.find_ref(&name) {
                if (r.kind == "tag") != tag {
                    return Err(floe::Error::new(
                        floe::ErrorKind::InvalidInput,
                        format!("{name:?} is a {} of {t}, not a {what}", r.kind),
                    ));
                }
            }
            floe.drop_ref(&t, &name).await?;
            writeln!(output::stdout(), "dropped {what} {name} of {t}")?;
        }
    }
    Ok(())
}
