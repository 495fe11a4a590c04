//! S3 specifics: building an `object_store` client for a bucket, and checking credentials and
//! creating the bucket for `floe init` (SigV4-signed requests through `object_store`'s signer and
//! HTTP client).

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer, AwsCredential};
use object_store::client::{HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::ClientOptions;

use crate::config::S3Settings;
use crate::error::{Error, ErrorKind, Result};

const DEFAULT_REGION: &str = "us-east-1";

/// The configured region, `us-east-1` when unset.
fn region(s3: &S3Settings) -> &str {
    s3.region.as_deref().unwrap_or(DEFAULT_REGION)
}

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
        .with_region(region(s3))
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

/// The bucket's URL for bucket-level requests, the one `object_store` sends its object requests under:
/// path style `{endpoint}/{bucket}`; virtual-hosted, the endpoint as given (it names the bucket's own
/// host, as for `object_store`); without an endpoint, AWS's regional one in either style.
fn bucket_url(s3: &S3Settings, bucket: &str) -> Result<url::Url> {
    let endpoint = s3
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", region(s3)));
    let mut url = url::Url::parse(endpoint.trim_end_matches('/'))
        .map_err(|e| Error::wrap(ErrorKind::Config, format!("invalid S3 endpoint {endpoint}"), e))?;
    if s3.path_style {
        url.path_segments_mut()
            .map_err(|_| Error::new(ErrorKind::Config, format!("invalid S3 endpoint {endpoint}")))?
            .pop_if_empty()
            .push(bucket);
    } else if s3.endpoint.is_none() {
        let host = url.host_str().unwrap_or_default().to_string();
        url.set_host(Some(&format!("{bucket}.{host}"))).map_err(|e| {
            Error::wrap(
                ErrorKind::Config,
                format!("invalid S3 bucket host {bucket}.{host}"),
                e,
            )
        })?;
    }
    Ok(url)
}

/// Send one SigV4-signed bucket-level request (object_store's signer and HTTP client): the status
/// and the body. A request that gets no answer is a storage error saying `failure`.
async fn bucket_request(
    s3: &S3Settings,
    bucket: &str,
    method: http::Method,
    body: Bytes,
    failure: &str,
) -> Result<(http::StatusCode, Bytes)> {
    let (Some(key), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) else {
        return Err(Error::new(
            ErrorKind::Config,
            "S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ));
    };
    let credential = AwsCredential {
        key_id: key.clone(),
        secret_key: secret.expose().to_string(),
        token: s3.session_token.as_ref().map(|t| t.expose().to_string()),
    };
    let url = bucket_url(s3, bucket)?;
    let options = ClientOptions::new()
        .with_allow_http(url.scheme() == "http")
        .with_connect_timeout(std::time::Duration::from_secs(5))
        .with_timeout(std::time::Duration::from_secs(30));
    let client = ReqwestConnector::default()
        .connect(&options)
        .map_err(|e| Error::wrap(ErrorKind::Config, "cannot build the S3 HTTP client", e))?;
    let mut request = http::Request::builder()
        .method(method)
        .uri(url.as_str())
        .body(HttpRequestBody::from(body))
        .map_err(|e| Error::internal(format!("S3 request for bucket {bucket}: {e}")))?;
    AwsAuthorizer::new(&credential, "s3", region(s3)).authorize(&mut request, None);
    let response = client
        .execute(request)
        .await
        .map_err(|e| Error::wrap(ErrorKind::Storage, format!("{failure} {bucket}"), e))?;
    let status = response.status();
    let body = response.into_body().bytes().await.unwrap_or_default();
    Ok((status, body))
}

/// Check that the credentials work and that `bucket` exists, creating it when missing. Returns true
/// when the bucket was created.
pub async fn ensure_bucket(s3: &S3Settings, bucket: &str) -> Result<bool> {
    const UNREACHABLE: &str = "cannot reach S3 bucket";
    const NOT_CREATED: &str = "cannot create bucket";
    let (status, body) = bucket_request(s3, bucket, http::Method::HEAD, Bytes::new(), UNREACHABLE).await?;
    match status.as_u16() {
        200..=299 => Ok(false),
        404 => {
            // Outside us-east-1 on AWS, the bucket's region goes in the request body.
            let region = region(s3);
            let body = if region != DEFAULT_REGION && s3.endpoint.is_none() {
                Bytes::from(format!(
                    "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                     <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
                ))
            } else {
                Bytes::new()
            };
            let (status, answer) = bucket_request(s3, bucket, http::Method::PUT, body, NOT_CREATED).await?;
            if status.is_success() {
                Ok(true)
            } else {
                Err(Error::new(
                    ErrorKind::Storage,
                    format!("{NOT_CREATED} {bucket}: HTTP {status}{}", s3_error_text(&answer)),
                ))
            }
        }
        401 | 403 => Err(Error::new(
            ErrorKind::Storage,
            format!(
                "S3 refused the credentials for bucket {bucket} (HTTP {})",
                status.as_u16()
            ),
        )),
        _ => Err(Error::new(
            ErrorKind::Storage,
            format!("{UNREACHABLE} {bucket}: HTTP {status}{}", s3_error_text(&body)),
        )),
    }
}

/// S3's XML error (`<Code>` and `<Message>`) as `: Code: Message`, or nothing.
fn s3_error_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => format!(": {code}: {}", crate::config::redact_secrets(&message)),
        (Some(code), None) => format!(": {code}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: Option<&str>, region: Option<&str>, path_style: bool) -> S3Settings {
        S3Settings {
            endpoint: endpoint.map(str::to_string),
            region: region.map(str::to_string),
            path_style,
            ..S3Settings::default()
        }
    }

    #[test]
    fn bucket_urls_follow_the_addressing_style() {
        let url = |s: &S3Settings| bucket_url(s, "lake").unwrap().to_string();
        assert_eq!(
            url(&settings(Some("http://127.0.0.1:3900"), None, true)),
            "http://127.0.0.1:3900/lake"
        );
        assert_eq!(
            url(&settings(Some("http://minio:9000/"), None, true)),
            "http://minio:9000/lake"
        );
        assert_eq!(
            url(&settings(Some("https://lake.s3.example.com"), None, false)),
            "https://lake.s3.example.com/"
        );
        assert_eq!(
            url(&settings(None, Some("eu-west-1"), false)),
            "https://lake.s3.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            url(&settings(None, None, true)),
            "https://s3.us-east-1.amazonaws.com/lake"
        );
    }

    #[test]
    fn s3_error_bodies_give_their_code_and_message() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>BucketAlreadyExists</Code>\
            <Message>The requested bucket name is not available.</Message></Error>";
        assert_eq!(
            s3_error_text(body),
            ": BucketAlreadyExists: The requested bucket name is not available."
        );
        assert_eq!(s3_error_text(b""), "");
    }
}
