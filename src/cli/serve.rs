//! `floe serve`: the Iceberg REST catalog over this catalog and warehouse (see [`floe::rest`]),
//! until stopped.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use floe::rest::{RestOptions, Server, DEFAULT_BIND};
use floe::secrets::Secret;
use floe::{Error, ErrorKind, Floe};

use super::output;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the Iceberg REST catalog (DuckDB, PyIceberg, Spark and Trino attach to it).
    Serve {
        /// Address to listen on; an address other than loopback needs --token-file.
        #[arg(long, default_value = DEFAULT_BIND)]
        bind: String,
        /// A file holding the bearer token every request must carry.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
}

pub async fn run(floe: &Floe, command: Command) -> floe::Result<ExitCode> {
    let Command::Serve { bind, token_file } = command;
    let addr: SocketAddr = bind.parse().map_err(|_| {
        Error::new(
            ErrorKind::Config,
            format!("{bind:?} is not an IP address and port ({DEFAULT_BIND})"),
        )
    })?;
    let token = match token_file {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("cannot read the token file {}: {e}", path.display()),
                )
            })?;
            let token = text.trim();
            if token.is_empty() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("the token file {} is empty", path.display()),
                ));
            }
            Some(Secret::new(token))
        }
        None => None,
    };
    let server = Server::bind(floe.clone(), addr, &RestOptions { token }).await?;
    let out = &mut output::stdout();
    writeln!(
        out,
        "serving the Iceberg REST catalog on http://{}",
        server.local_addr()?
    )?;
    out.flush()?;
    server.run().await?;
    Ok(ExitCode::SUCCESS)
}
