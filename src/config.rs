//! Where floe keeps its tables: the catalog database, the warehouse, the catalog name, S3 settings and
//! commit retries. Each setting is resolved with one precedence: command-line flags, then environment
//! variables, then `floe.toml`, then defaults. Secrets are wrapped so that they never print.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, ErrorKind, Result};
pub use crate::secrets::{redact_secrets, Secret};
use crate::secrets::{register_secret, register_url_secrets};

/// Default catalog: an SQLite file under `./floe-data`.
pub const DEFAULT_CATALOG_URL: &str = "sqlite:./floe-data/catalog.db";
/// Default warehouse: a local directory under `./floe-data`.
pub const DEFAULT_WAREHOUSE: &str = "./floe-data/warehouse";
/// Default value of the `catalog_name` column.
pub const DEFAULT_CATALOG_NAME: &str = "floe";
/// Default config file, read from the working directory when present.
pub const DEFAULT_CONFIG_FILE: &str = "floe.toml";

/// S3 settings for an `s3://` warehouse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// Endpoint URL of an S3-compatible store (MinIO, Garage); none means AWS.
    pub endpoint: Option<String>,
    /// Region; `us-east-1` when unset.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
    /// Session token for temporary credentials.
    pub session_token: Option<Secret>,
    /// Path-style addressing (`http://host/bucket/key`), which MinIO and Garage need.
    pub path_style: bool,
}

/// How a commit retries when a concurrent writer won the compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub max_retries: u32,
    /// First backoff; doubled on every retry, with jitter.
    pub min_backoff: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 50,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(2_000),
        }
    }
}

/// Fully resolved settings. `Debug` masks the catalog URL's password and the S3 secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// `sqlite:PATH` or `postgres://...`.
    pub catalog_url: String,
    /// A local path, `file://...` or `s3://bucket/prefix`.
    pub warehouse: String,
    /// The `catalog_name` column of the catalog tables.
    pub catalog_name: String,
    /// S3 settings, used when the warehouse is on S3.
    pub s3: S3Settings,
    /// Commit retry policy.
    pub retry: RetryPolicy,
    /// A cluster to run the `ballista` engine on: `df://HOST:PORT`.
    pub cluster: Option<String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("catalog_url", &self.catalog_url_redacted())
            .field("warehouse", &self.warehouse)
            .field("catalog_name", &self.catalog_name)
            .field("s3", &self.s3)
            .field("retry", &self.retry)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            catalog_url: DEFAULT_CATALOG_URL.to_string(),
            warehouse: DEFAULT_WAREHOUSE.to_string(),
            catalog_name: DEFAULT_CATALOG_NAME.to_string(),
            s3: S3Settings::default(),
            retry: RetryPolicy::default(),
            cluster: None,
        }
    }
}

/// One source's view of the settings: every field optional. Flags, environment and file each give one.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PartialSettings {
    /// See [`Settings::catalog_url`].
    pub catalog_url: Option<String>,
    /// See [`Settings::warehouse`].
    pub warehouse: Option<String>,
    /// See [`Settings::catalog_name`].
    pub catalog_name: Option<String>,
    /// S3 endpoint URL.
    pub s3_endpoint: Option<String>,
    /// S3 region.
    pub s3_region: Option<String>,
    /// S3 access key id.
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key.
    pub s3_secret_access_key: Option<Secret>,
    /// S3 session token.
    pub s3_session_token: Option<Secret>,
    /// Path-style addressing.
    pub s3_path_style: Option<bool>,
    /// Commit retries.
    pub commit_retries: Option<u32>,
    /// First commit backoff in milliseconds.
    pub commit_min_backoff_ms: Option<u64>,
    /// Largest commit backoff in milliseconds.
    pub commit_max_backoff_ms: Option<u64>,
    /// See [`Settings::cluster`].
    pub cluster: Option<String>,
}

impl PartialSettings {
    /// Settings from environment variables: `FLOE_CATALOG_URL`, `FLOE_WAREHOUSE`, `FLOE_CATALOG_NAME`,
    /// the standard AWS variables, `FLOE_S3_PATH_STYLE`, `FLOE_COMMIT_RETRIES`.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Settings from a map of variables (the environment, or a test's own map).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self> {
        let get = |k: &str| vars.get(k).filter(|v| !v.is_empty()).cloned();
        let parse_bool = |k: &str| -> Result<Option<bool>> {
            get(k)
                .map(|v| match v.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Ok(true),
                    "0" | "false" | "no" | "off" => Ok(false),
                    _ => Err(Error::new(
                        ErrorKind::Config,
                        format!("{k} must be true or false, got {v:?}"),
                    )),
                })
                .transpose()
        };
        let parse_num = |k: &str| -> Result<Option<u64>> {
            get(k)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        Error::new(
                            ErrorKind::Config,
                            format!("{k} must be a whole number, got {v:?}"),
                        )
                    })
                })
                .transpose()
        };
        Ok(Self {
            catalog_url: get("FLOE_CATALOG_URL"),
            warehouse: get("FLOE_WAREHOUSE"),
            catalog_name: get("FLOE_CATALOG_NAME"),
            s3_endpoint: get("AWS_ENDPOINT_URL_S3").or_else(|| get("AWS_ENDPOINT_URL")),
            s3_region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            s3_access_key_id: get("AWS_ACCESS_KEY_ID"),
            s3_secret_access_key: get("AWS_SECRET_ACCESS_KEY").map(Secret::new),
            s3_session_token: get("AWS_SESSION_TOKEN").map(Secret::new),
            s3_path_style: parse_bool("FLOE_S3_PATH_STYLE")?,
            commit_retries: parse_num("FLOE_COMMIT_RETRIES")?.map(|n| n.min(u32::MAX as u64) as u32),
            commit_min_backoff_ms: parse_num("FLOE_COMMIT_MIN_BACKOFF_MS")?,
            commit_max_backoff_ms: parse_num("FLOE_COMMIT_MAX_BACKOFF_MS")?,
            cluster: get("FLOE_CLUSTER"),
        })
    }

    /// Settings from a `floe.toml` file (same field names as this struct).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::wrap(
                ErrorKind::Config,
                format!("cannot read config file {}", path.display()),
                e,
            )
        })?;
        let parsed: Self = toml::from_str(&text).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("invalid config file {}: {}", path.display(), e.message()),
            )
        })?;
        for s in [&parsed.s3_secret_access_key, &parsed.s3_session_token]
            .into_iter()
            .flatten()
        {
            register_secret(s.expose());
        }
        Ok(parsed)
    }

    /// Fill every field this source leaves unset from `lower` (a source of lower precedence).
    pub fn or(self, lower: PartialSettings) -> PartialSettings {
        PartialSettings {
            catalog_url: self.catalog_url.or(lower.catalog_url),
            warehouse: self.warehouse.or(lower.warehouse),
            catalog_name: self.catalog_name.or(lower.catalog_name),
            s3_endpoint: self.s3_endpoint.or(lower.s3_endpoint),
            s3_region: self.s3_region.or(lower.s3_region),
            s3_access_key_id: self.s3_access_key_id.or(lower.s3_access_key_id),
            s3_secret_access_key: self.s3_secret_access_key.or(lower.s3_secret_access_key),
            s3_session_token: self.s3_session_token.or(lower.s3_session_token),
            s3_path_style: self.s3_path_style.or(lower.s3_path_style),
            commit_retries: self.commit_retries.or(lower.commit_retries),
            commit_min_backoff_ms: self.commit_min_backoff_ms.or(lower.commit_min_backoff_ms),
            commit_max_backoff_ms: self.commit_max_backoff_ms.or(lower.commit_max_backoff_ms),
            cluster: self.cluster.or(lower.cluster),
        }
    }

    /// Apply defaults to whatever is still unset.
    pub fn finish(self) -> Settings {
        let d = Settings::default();
        Settings {
            catalog_url: self.catalog_url.unwrap_or(d.catalog_url),
            warehouse: self.warehouse.unwrap_or(d.warehouse),
            catalog_name: self.catalog_name.unwrap_or(d.catalog_name),
            s3: S3Settings {
                endpoint: self.s3_endpoint,
                region: self.s3_region,
                access_key_id: self.s3_access_key_id,
                secret_access_key: self.s3_secret_access_key,
                session_token: self.s3_session_token,
                path_style: self.s3_path_style.unwrap_or(false),
            },
            retry: RetryPolicy {
                max_retries: self.commit_retries.unwrap_or(d.retry.max_retries),
                min_backoff: self
                    .commit_min_backoff_ms
                    .map(Duration::from_millis)
                    .unwrap_or(d.retry.min_backoff),
                max_backoff: self
                    .commit_max_backoff_ms
                    .map(Duration::from_millis)
                    .unwrap_or(d.retry.max_backoff),
            },
            cluster: self.cluster,
        }
    }
}

impl Settings {
    /// These settings as the environment variables [`PartialSettings::from_vars`] reads, secrets
    /// included: for handing them to a child process's environment, never for printing.
    pub fn to_vars(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("FLOE_CATALOG_URL", self.catalog_url.clone()),
            ("FLOE_WAREHOUSE", self.warehouse.clone()),
            ("FLOE_CATALOG_NAME", self.catalog_name.clone()),
            ("FLOE_S3_PATH_STYLE", self.s3.path_style.to_string()),
            ("FLOE_COMMIT_RETRIES", self.retry.max_retries.to_string()),
            (
                "FLOE_COMMIT_MIN_BACKOFF_MS",
                self.retry.min_backoff.as_millis().to_string(),
            ),
            (
                "FLOE_COMMIT_MAX_BACKOFF_MS",
                self.retry.max_backoff.as_millis().to_string(),
            ),
        ];
        if let Some(c) = &self.cluster {
            v.push(("FLOE_CLUSTER", c.clone()));
        }
        let s3 = &self.s3;
        for (k, val) in [
            ("AWS_ENDPOINT_URL", s3.endpoint.clone()),
            ("AWS_REGION", s3.region.clone()),
            ("AWS_ACCESS_KEY_ID", s3.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY",
                s3.secret_access_key.as_ref().map(|x| x.expose().to_string()),
            ),
            (
                "AWS_SESSION_TOKEN",
                s3.session_token.as_ref().map(|x| x.expose().to_string()),
            ),
        ] {
            if let Some(val) = val {
                v.push((k, val));
            }
        }
        v
    }

    /// Resolve settings with the documented precedence: `flags` > environment > config file >
    /// defaults. The config file is `config_file` when given (it must exist), else `./floe.toml` when
    /// present.
    pub fn resolve(flags: PartialSettings, config_file: Option<&Path>) -> Result<Settings> {
        let env = PartialSettings::from_env()?;
        let file = match config_file {
            Some(p) => PartialSettings::from_file(p)?,
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_FILE);
                if default.exists() {
                    PartialSettings::from_file(&default)?
                } else {
                    PartialSettings::default()
                }
            }
        };
        let settings = flags.or(env).or(file).finish();
        register_url_secrets(&settings.catalog_url);
        if let Some(endpoint) = &settings.s3.endpoint {
            register_url_secrets(endpoint);
        }
        Ok(settings)
    }

    /// Settings from environment and `./floe.toml` only, as a library user gets them by default.
    pub fn from_env() -> Result<Settings> {
        Self::resolve(PartialSettings::default(), None)
    }

    /// The catalog URL with any password masked, for messages.
    pub fn catalog_url_redacted(&self) -> String {
        redact_secrets(&self.catalog_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_the_environment_round_trip() {
        let mut s = Settings {
            catalog_url: "postgres://u:p@h/db".into(),
            warehouse: "s3://b/w".into(),
            catalog_name: "c".into(),
            ..Default::default()
        };
        s.s3.endpoint = Some("http://127.0.0.1:3900".into());
        s.s3.region = Some("garage".into());
        s.s3.access_key_id = Some("GK1".into());
        s.s3.secret_access_key = Some(Secret::new("shh".to_string()));
        s.s3.path_style = true;
        s.retry.max_retries = 7;
        let vars: HashMap<String, String> =
            s.to_vars().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(PartialSettings::from_vars(&vars).unwrap().finish(), s);
    }

    #[test]
    fn precedence_flags_then_env_then_file_then_defaults() {
        let flags = PartialSettings {
            warehouse: Some("/flags".into()),
            ..Default::default()
        };
        let env = PartialSettings::from_vars(&HashMap::from([
            ("FLOE_WAREHOUSE".to_string(), "/env".to_string()),
            ("FLOE_CATALOG_NAME".to_string(), "env-name".to_string()),
        ]))
        .unwrap();
        let file: PartialSettings = toml::from_str(
            "warehouse = '/file'\ncatalog_name = 'file-name'\ncatalog_url = 'sqlite:/file.db'\n",
        )
        .unwrap();
        let s = flags.or(env).or(file).finish();
        assert_eq!(s.warehouse, "/flags");
        assert_eq!(s.catalog_name, "env-name");
        assert_eq!(s.catalog_url, "sqlite:/file.db");
        assert_eq!(s.retry, RetryPolicy::default());
        let d = PartialSettings::default().finish();
        assert_eq!(d.catalog_url, DEFAULT_CATALOG_URL);
        assert_eq!(d.warehouse, DEFAULT_WAREHOUSE);
        assert_eq!(d.catalog_name, DEFAULT_CATALOG_NAME);
    }

    #[test]
    fn secrets_never_print() {
        let vars = HashMap::from([(
            "AWS_SECRET_ACCESS_KEY".to_string(),
            "sup3r-s3cret-value".to_string(),
        )]);
        let mut s = PartialSettings::from_vars(&vars).unwrap().finish();
        assert!(!format!("{s:?}").contains("sup3r"));
        s.catalog_url = "postgres://floe:pg-pass-123@db/x".into();
        assert!(!format!("{s:?}").contains("pg-pass-123"));
        assert_eq!(
            redact_secrets("failed with sup3r-s3cret-value"),
            "failed with ***"
        );
        assert_eq!(
            redact_secrets("cannot reach postgres://floe:hunter22@db:5432/x"),
            "cannot reach postgres://floe:***@db:5432/x"
        );
    }

    #[test]
    fn unknown_config_keys_are_rejected() {
        assert!(toml::from_str::<PartialSettings>("warehous = 'x'").is_err());
    }
}
