//! `floe serve`: the Iceberg REST catalog over this catalog and warehouse (see [`floe::rest`]),
//! until stopped. Reads the token and secret files, then hands everything to the library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use floe::rest::{OAuthClient, RestOptions, Server, TlsFiles, DEFAULT_BIND};
use floe::secrets::Secret;
use floe::{Error, ErrorKind, Floe};

use super::output;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the Iceberg REST catalog (DuckDB, PyIceberg, Spark and Trino attach to it).
    ///
    /// Every commit a client sends goes through floe's validation and its compare-and-swap, like
    /// floe's own. Clients attach with the printed URI, e.g. PyIceberg's
    /// `RestCatalog("floe", uri=URI)` or DuckDB's
    /// `ATTACH 'floe' AS lake (TYPE iceberg, ENDPOINT 'URI', AUTHORIZATION_TYPE 'none')`.
    ///
    /// AUTH: on 127.0.0.1 no auth is needed by default. With --token-file every request must carry
    /// `Authorization: Bearer <token>`. With --oauth-client and --oauth-secret-file, clients fetch
    /// tokens from POST /v1/oauth/tokens (client-credentials grant: PyIceberg `credential="ID:SECRET"`,
    /// DuckDB `CLIENT_ID`/`CLIENT_SECRET`); each token expires after --token-lifetime seconds. Both
    /// may be given: the static token then works alongside the issued ones.
    ///
    /// TRANSPORT: an address other than loopback needs auth, and TLS (--tls-cert and --tls-key)
    /// unless --behind-proxy says a TLS-terminating proxy is in front.
    ///
    /// STORAGE KEYS: by default no key ever leaves the server; clients bring their own S3 keys
    /// (the server tells them the endpoint, region and path style). --vend-credentials hands every
    /// client floe's own static S3 keys in each table's load result instead.
    #[command(verbatim_doc_comment, next_help_heading = "Serving")]
    Serve {
        /// Address and port to listen on; an address other than loopback needs --token-file or
        /// --oauth-client, and TLS or --behind-proxy.
        #[arg(long, default_value = DEFAULT_BIND, value_name = "ADDR:PORT")]
        bind: String,
        /// A file holding a static bearer token requests may carry (first line, trimmed).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// The client id PyIceberg, DuckDB and iceberg-rust present to POST /v1/oauth/tokens.
        #[arg(long, value_name = "ID", requires = "oauth_secret_file")]
        oauth_client: Option<String>,
        /// A file holding the OAuth client's secret.
        #[arg(long, value_name = "FILE", requires = "oauth_client")]
        oauth_secret_file: Option<PathBuf>,
        /// Seconds an issued token is valid (its `expires_in`); PyIceberg fetches a new one on a 401,
        /// DuckDB only when it attaches again.
        #[arg(long, value_name = "SECONDS", default_value_t = floe::rest::DEFAULT_TOKEN_LIFETIME.as_secs(),
              value_parser = clap::value_parser!(u64).range(1..))]
        token_lifetime: u64,
        /// Serve HTTPS with this certificate chain (PEM, leaf first).
        #[arg(long, value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// A TLS-terminating proxy is in front: serve plain HTTP on a non-loopback address.
        #[arg(long)]
        behind_proxy: bool,
        /// Hand out floe's own static S3 keys in every load result's config (DuckDB's default
        /// ACCESS_DELEGATION_MODE then needs no S3 secret). Anyone who can load a table gets them.
        #[arg(long)]
        vend_credentials: bool,
    },
}

/// The first line of a secret file, trimmed; an empty or unreadable file is an error naming it.
fn read_secret_file(path: &Path, what: &str) -> floe::Result<Secret> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot read the {what} file {}: {e}", path.display()),
        )
    })?;
    let value = text.lines().next().unwrap_or("").trim();
    if value.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            format!("the {what} file {} is empty", path.display()),
        ));
    }
    Ok(Secret::new(value))
}

pub async fn run(floe: &Floe, command: Command) -> floe::Result<ExitCode> {
    let Command::Serve {
        bind,
        token_file,
        oauth_client,
        oauth_secret_file,
        token_lifetime,
        tls_cert,
        tls_key,
        behind_proxy,
        vend_credentials,
    } = command;
    let addr: SocketAddr = bind.parse().map_err(|_| {
        Error::new(
            ErrorKind::Config,
            format!("{bind:?} is not an IP address and port ({DEFAULT_BIND})"),
        )
    })?;
    let token = token_file
        .map(|path| read_secret_file(&path, "token"))
        .transpose()?;
    let oauth = match (oauth_client, oauth_secret_file) {
        (Some(id), Some(path)) => Some(OAuthClient {
            id,
            secret: read_secret_file(&path, "OAuth secret")?,
        }),
        _ => None,
    };
    let tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    let options = RestOptions {
        token,
        oauth,
        token_lifetime: Duration::from_secs(token_lifetime),
        tls,
        behind_proxy,
        vend_credentials,
    };
    let server = Server::bind(floe.clone(), addr, &options).await?;
    let out = &mut output::stdout();
    writeln!(out, "serving the Iceberg REST catalog on {}", server.uri()?)?;
    out.flush()?;
    server.run().await?;
    Ok(ExitCode::SUCCESS)
}
