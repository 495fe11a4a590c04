//! `floe init`, `floe namespaces`, `floe namespace create|drop`, `floe tables`.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use floe::{Floe, Namespace, Settings};

use super::output;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the catalog schema and the warehouse (checking S3 credentials, creating the bucket).
    Init,
    /// List namespaces.
    Namespaces,
    /// Create or drop a namespace.
    Namespace {
        #[command(subcommand)]
        action: NamespaceAction,
    },
    /// List tables (of one namespace, or of all).
    Tables {
        /// Namespace.
        namespace: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum NamespaceAction {
    /// Create a namespace.
    Create {
        /// Namespace.
        namespace: String,
    },
    /// Drop an empty namespace.
    Drop {
        /// Namespace.
        namespace: String,
    },
}

pub async fn init(settings: Settings) -> floe::Result<ExitCode> {
    let (_, report) = Floe::init(settings).await?;
    let out = &mut output::stdout();
    writeln!(out, "catalog    {}", report.catalog)?;
    writeln!(out, "warehouse  {}", report.warehouse)?;
    if report.bucket_created {
        writeln!(out, "bucket     created")?;
    }
    writeln!(out, "ready")?;
    Ok(ExitCode::SUCCESS)
}

pub async fn run(floe: &Floe, command: Command) -> floe::Result<ExitCode> {
    let out = &mut output::stdout();
    match command {
        Command::Init => unreachable!("floe init runs before connecting"),
        Command::Namespaces => {
            for ns in floe.namespaces().await? {
                writeln!(out, "{ns}")?;
            }
        }
        Command::Namespace {
            action: NamespaceAction::Create { namespace },
        } => {
            floe.create_namespace(&Namespace::parse(&namespace)?).await?;
            writeln!(out, "created namespace {namespace}")?;
        }
        Command::Namespace {
            action: NamespaceAction::Drop { namespace },
        } => {
            floe.drop_namespace(&Namespace::parse(&namespace)?).await?;
            writeln!(out, "dropped namespace {namespace}")?;
        }
        Command::Tables { namespace } => {
            let namespaces = match namespace {
                Some(ns) => vec![Namespace::parse(&ns)?],
                None => floe.namespaces().await?,
            };
            for ns in namespaces {
                for t in floe.tables(&ns).await? {
                    writeln!(out, "{t}")?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
