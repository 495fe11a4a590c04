//! S3 specifics: building an `object_store` client for a bucket, and checking credentials and
//! creating the bucket for `floe init` (with `aws-sdk-s3`).

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use object_store::aws::{AmazonS3, AmazonS3Builder};

use crate::config::S3Settings;
use crate::error::{Error, ErrorKind, Result};

const DEFAULT_REGION: &str = "us-east-1";

pub(super) fn build_store(s3: &S3Settings, bucket: &str) -> Result<AmazonS3> {
    let retry = object_store::RetryConfig {
        max_retries: 4,
        retry_timeout: std::time::Duration::from_secs(30),
        ..Default::default()
    };
    let client = object_store::ClientOptions::new()
        .with_connect_timeout(std::time::Duration::from_secs(5))
        .with_timeout(std::time::Duration::from_secs(120));
    let mut b = AmazonS3Builder::new()
        .with_retry(retry)
        .with_client_options(client)
        .with_bucket_name(bucket)
        .with_region(s3.region.clone().unwrap_or_else(|| DEFAULT_REGION.to_string()))
        .with_virtual_hosted_style_request(!s3.path_style);
    if let Some(endpoint) = &s3.endpoint {
        b = b
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(key) = &s3.access_key_id {
        b = b.with_access_key_id(key);
    }
    if let Some(secret) = &s3.secret_access_key {
        b = b.with_secret_access_key(secret.expose());
    }
    if let Some(token) = &s3.session_token {
        b = b.with_token(token.expose());
    }
    b.build().map_err(|e| {
        Error::wrap(
            ErrorKind::Config,
            format!("cannot configure S3 bucket {bucket}"),
            e,
        )
    })
}

fn sdk_client(s3: &S3Settings) -> Result<aws_sdk_s3::Client> {
    let (Some(key), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) else {
        return Err(Error::new(
            ErrorKind::Config,
            "S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ));
    };
    let creds = Credentials::new(
        key,
        secret.expose(),
        s3.session_token.as_ref().map(|t| t.expose().to_string()),
        None,
        "floe",
    );
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .credentials_provider(creds)
        .region(Region::new(
            s3.region.clone().unwrap_or_else(|| DEFAULT_REGION.to_string()),
        ))
        .force_path_style(s3.path_style);
    if let Some(endpoint) = &s3.endpoint {
        conf = conf.endpoint_url(endpoint);
    }
    Ok(aws_sdk_s3::Client::from_conf(conf.build()))
}

/// Check that the credentials work and that `bucket` exists, creating it when missing. Returns true
/// when the bucket was created.
pub async fn ensure_bucket(s3: &S3Settings, bucket: &str) -> Result<bool> {
    let client = sdk_client(s3)?;
    match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(false),
        Err(err) => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            match status {
                Some(404) => {
                    let mut req = client.create_bucket().bucket(bucket);
                    if let Some(region) = &s3.region {
                        if region != DEFAULT_REGION && s3.endpoint.is_none() {
                            req = req.create_bucket_configuration(
                                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                                    .location_constraint(region.as_str().into())
                                    .build(),
                            );
                        }
                    }
                    req.send().await.map_err(|e| {
                        Error::new(
                            ErrorKind::Storage,
                            format!("cannot create bucket {bucket}: {}", aws_error_text(&e)),
                        )
                    })?;
                    Ok(true)
                }
                Some(401) | Some(403) => Err(Error::new(
                    ErrorKind::Storage,
                    format!(
                        "S3 refused the credentials for bucket {bucket} (HTTP {})",
                        status.unwrap_or(0)
                    ),
                )),
                _ => Err(Error::new(
                    ErrorKind::Storage,
                    format!("cannot reach S3 bucket {bucket}: {}", aws_error_text(&err)),
                )),
            }
        }
    }
}

fn aws_error_text<E: std::error::Error + 'static>(e: &E) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    crate::config::redact_secrets(&text)
}
