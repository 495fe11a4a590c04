//! `floe cluster scheduler` and `floe cluster executor`: the processes of a Ballista cluster with
//! floe's rule functions and storage settings built in.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Subcommand;
use floe::cluster::{ExecutorOptions, DEFAULT_SCHEDULER};
use floe::{Error, ErrorKind, Settings};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a cluster process (until stopped).
    Cluster {
        #[command(subcommand)]
        role: Role,
    },
}

#[derive(Subcommand, Debug)]
pub enum Role {
    /// The scheduler: plans stages and hands tasks to executors.
    Scheduler {
        /// Address to listen on (an IP address and a port).
        #[arg(long, default_value = DEFAULT_SCHEDULER)]
        bind: String,
    },
    /// An executor: runs tasks; reaches the warehouse with floe's settings (FLOE_WAREHOUSE, AWS_*).
    Executor {
        /// The scheduler, HOST:PORT.
        #[arg(long)]
        scheduler: String,
        /// Address to listen on: Arrow Flight on the port, task gRPC on the next one.
        #[arg(long, default_value = "127.0.0.1:50051")]
        bind: String,
        /// Tasks at a time (default: the number of cores).
        #[arg(long)]
        concurrent_tasks: Option<usize>,
        /// Directory for shuffle files.
        #[arg(long)]
        work_dir: Option<std::path::PathBuf>,
        /// Host name others reach this executor by (default: the bind address; set it when binding
        /// 0.0.0.0 on a cluster of several machines).
        #[arg(long)]
        external_host: Option<String>,
    },
}

fn address(text: &str) -> floe::Result<SocketAddr> {
    text.parse().map_err(|_| {
        Error::new(
            ErrorKind::Config,
            format!("{text:?} is not an IP address and port (127.0.0.1:50050)"),
        )
    })
}

pub async fn run(settings: &Settings, command: Command) -> floe::Result<ExitCode> {
    let Command::Cluster { role } = command;
    match role {
        Role::Scheduler { bind } => floe::cluster::run_scheduler(settings, address(&bind)?).await?,
        Role::Executor {
            scheduler,
            bind,
            concurrent_tasks,
            work_dir,
            external_host,
        } => {
            let options = ExecutorOptions {
                scheduler,
                bind: address(&bind)?,
                concurrent_tasks: concurrent_tasks.unwrap_or_else(floe::resources::cores),
                work_dir,
                external_host,
            };
            floe::cluster::run_executor(settings, &options).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}
