//! `floe serve`'s auth, transport and the rest of the spec clients send, each against the real
//! server on 127.0.0.1 (port 0): OAuth2 client-credentials tokens (PyIceberg's `credential`, DuckDB's
//! CLIENT_ID/CLIENT_SECRET, raw requests for the error shapes and expiry), TLS with a certificate
//! made by `openssl` in the test and the refusal of plain HTTP off loopback, vended S3 keys (DuckDB
//! with the server's keys, and with its own secret and delegation off), paging of the list endpoints,
//! `snapshots=refs` and ETags on load.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use floe::rest::{OAuthClient, RestOptions, Server, TlsFiles};
use floe::secrets::Secret;
use floe::{At, WriteOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::both_backends;
use crate::interop::{duckdb_iceberg_available, floe_rows, pyiceberg_available, python, s3_keys};
use crate::rest::serve_with;
use crate::support::*;

const CLIENT_ID: &str = "floe-test-client";
const CLIENT_SECRET: &str = "floe-test-client-secret-5e1f";

fn oauth_options() -> RestOptions {
    RestOptions {
        oauth: Some(OAuthClient {
            id: CLIENT_ID.into(),
            secret: Secret::new(CLIENT_SECRET),
        }),
        ..Default::default()
    }
}

/// An answer to a raw request: status, headers (names lower-cased) and body text.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One raw HTTP/1.1 request with `headers` and `body`.
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut text = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path, &[], "").await
}

/// `POST /v1/oauth/tokens` with a form body and extra headers.
async fn token_request(addr: SocketAddr, headers: &[(&str, &str)], form: &str) -> Answer {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    request(addr, "POST", "/v1/oauth/tokens", &all, form).await
}

/// Run tests/interop/rest_server_tool.py with `args`; S3 keys (on Garage) and the OAuth credential
/// go in the environment.
async fn server_tool(ctx: &Ctx, args: &[&str], credential: Option<&str>) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/rest_server_tool.py");
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(script).args(args);
    if let Some(keys) = s3_keys(ctx) {
        cmd.env("FLOE_REST_S3", keys.to_string());
    }
    if let Some(credential) = credential {
        cmd.env("FLOE_REST_CREDENTIAL", credential);
    }
    let out = cmd.output().await.expect("run python");
    assert!(
        out.status.success(),
        "rest_server_tool {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from rest_server_tool")
}

/// Append the events of `ids` to `t`.
async fn append_events(ctx: &Ctx, t: &floe::TableName, ids: std::ops::Range<i64>) {
    ctx.floe
        .append(t, stream(vec![events(ids)]), &WriteOptions::default())
        .await
        .unwrap();
}

/// `ctx`'s table `name` with the events of ids `0..n`.
async fn events_table(ctx: &Ctx, name: &str, n: i64) -> floe::TableName {
    let t = ctx.table(name);
    ctx.create_events_table(&t, &[]).await;
    append_events(ctx, &t, 0..n).await;
    t
}

both_backends!(
    pyiceberg_and_duckdb_attach_to_floe_serve_with_oauth_client_credentials,
    |ctx: Ctx| async move {
        let t = events_table(&ctx, "events", 10).await;
        let addr = serve_with(&ctx, &oauth_options()).await;
        let uri = format!("http://{addr}");
        let ns = ctx.ns.to_string();
        let good = format!("{CLIENT_ID}:{CLIENT_SECRET}");
        let wrong = format!("{CLIENT_ID}:not-the-secret");
        if pyiceberg_available() {
            let args = ["pyiceberg-oauth", uri.as_str(), &ns, "events"];
            let out = server_tool(&ctx, &args, Some(&good)).await;
            assert_eq!(out["rows"], Value::Array(floe_rows(&ctx, &t, At::Current).await));
            assert!(out["namespaces"].as_array().unwrap().contains(&json!([ns])));
            let refused = server_tool(&ctx, &args, Some(&wrong)).await;
            assert!(refused["error"].is_string(), "{refused}");
            assert!(!refused["message"].as_str().unwrap().contains("not-the-secret"));
        }
        if duckdb_iceberg_available() {
            let args = ["duckdb-oauth", uri.as_str(), &ns, "events"];
            let out = server_tool(&ctx, &args, Some(&good)).await;
            assert_eq!(out, json!({"count": 10, "sum": 45}));
            let refused = server_tool(&ctx, &args, Some(&wrong)).await;
            assert!(refused["error"].is_string(), "{refused}");
        }
    }
);

both_backends!(
    floe_serve_issued_tokens_expire_and_token_errors_take_the_oauth_shape,
    |ctx: Ctx| async move {
        let static_token = "a-static-test-token-0d3c";
        let addr = serve_with(
            &ctx,
            &RestOptions {
                token: Some(Secret::new(static_token)),
                token_lifetime: Duration::from_secs(1),
                ..oauth_options()
            },
        )
        .await;
        let bearer = |t: &str| format!("Bearer {t}");
        assert_eq!(get(addr, "/v1/config").await.status, 401);

        // Form body (PyIceberg, iceberg-rust) and HTTP Basic (DuckDB) both get a token.
        let form = format!(
            "grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&scope=catalog"
        );
        let issued = token_request(addr, &[], &form).await;
        assert_eq!(issued.status, 200, "{}", issued.body);
        assert_eq!(issued.header("cache-control"), Some("no-store"));
        let body = issued.json();
        assert_eq!(
            (&body["token_type"], &body["expires_in"]),
            (&json!("bearer"), &json!(1))
        );
        let token = body["access_token"].as_str().unwrap().to_string();
        assert!(token.len() >= 32);
        use base64::Engine;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
        );
        let by_basic = token_request(
            addr,
            &[("Authorization", &basic)],
            "grant_type=client_credentials&scope=PRINCIPAL_ROLE%3AALL",
        )
        .await;
        assert_eq!(by_basic.status, 200, "{}", by_basic.body);
        assert_ne!(by_basic.json()["access_token"], body["access_token"]);
        for t in [token.as_str(), static_token] {
            let answer = request(addr, "GET", "/v1/config", &[("Authorization", &bearer(t))], "").await;
            assert_eq!(answer.status, 200, "{}", answer.body);
        }

        // Refusals in OAuth's shape, never quoting what was sent.
        let refusals = [
            (
                format!("grant_type=client_credentials&client_id={CLIENT_ID}&client_secret=wrong-secret-9f"),
                401,
                "invalid_client",
            ),
            (
                format!("grant_type=client_credentials&client_id=someone-else&client_secret={CLIENT_SECRET}"),
                401,
                "invalid_client",
            ),
            ("grant_type=client_credentials".to_string(), 401, "invalid_client"),
            (
                format!("grant_type=password&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"),
                400,
                "unsupported_grant_type",
            ),
            (
                format!("client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"),
                400,
                "invalid_request",
            ),
        ];
        for (form, status, error) in refusals {
            let answer = token_request(addr, &[], &form).await;
            assert_eq!(
                (answer.status, &answer.json()["error"]),
                (status, &json!(error)),
                "{form}"
            );
            assert!(answer.json()["error_description"].is_string());
            for secret in [CLIENT_SECRET, "wrong-secret-9f"] {
                assert!(!answer.body.contains(secret), "{}", answer.body);
            }
        }
        let malformed = token_request(
            addr,
            &[("Authorization", "Basic !!!")],
            "grant_type=client_credentials",
        )
        .await;
        assert_eq!(malformed.json()["error"], json!("invalid_request"));

        // An issued token stops opening the door once it expires; the static token does not expire.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let expired = request(
            addr,
            "GET",
            "/v1/config",
            &[("Authorization", &bearer(&token))],
            "",
        )
        .await;
        assert_eq!(
            (expired.status, &expired.json()["error"]["type"]),
            (401, &json!("NotAuthorizedException"))
        );
        assert!(!expired.body.contains(&token));
        let answer = request(
            addr,
            "GET",
            "/v1/config",
            &[("Authorization", &bearer(static_token))],
            "",
        )
        .await;
        assert_eq!(answer.status, 200);

        // A catalog without an OAuth client issues no tokens.
        let no_oauth = serve_with(&ctx, &RestOptions::default()).await;
        let answer = token_request(no_oauth, &[], &form).await;
        assert_eq!(
            (answer.status, &answer.json()["error"]),
            (400, &json!("unauthorized_client"))
        );
    }
);

/// A CA and a leaf for 127.0.0.1 signed by it, made by the `openssl` CLI in `dir`: (CA PEM, leaf).
fn test_certificate(dir: &std::path::Path) -> (std::path::PathBuf, TlsFiles) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl CLI");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=floe test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &["-keyout", "key.pem", "-out", "leaf.csr", "-subj", "/CN=localhost"],
    ]
    .concat());
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    (
        dir.join("ca.pem"),
        TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        },
    )
}

/// An HTTPS client that trusts only the CA in `ca`.
fn https_client(ca: &std::path::Path) -> reqwest::Client {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .unwrap()
}

both_backends!(
    floe_serve_speaks_tls_and_refuses_plain_http_off_loopback,
    |ctx: Ctx| async move {
        let dir = tempfile::tempdir().unwrap();
        let (ca, tls) = test_certificate(dir.path());
        let token = "a-tls-test-token-77aa";
        let options = RestOptions {
            token: Some(Secret::new(token)),
            tls: Some(tls.clone()),
            ..Default::default()
        };
        let server = Server::bind(ctx.floe.clone(), "127.0.0.1:0".parse().unwrap(), &options)
            .await
            .unwrap();
        let uri = server.uri().unwrap();
        assert!(uri.starts_with("https://127.0.0.1:"), "{uri}");
        tokio::spawn(server.run());
        let client = https_client(&ca);
        let answer = client
            .get(format!("{uri}/v1/config"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200);
        let config: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        assert_eq!(config["overrides"], json!({}));
        let answer = client.get(format!("{uri}/v1/namespaces")).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 401);

        // Off loopback: auth, and TLS or a proxy that terminates it, or no catalog.
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let refusal = |options: RestOptions| {
            let floe = ctx.floe.clone();
            async move {
                Server::bind(floe, any, &options)
                    .await
                    .err()
                    .map(|e| (e.kind(), e.to_string()))
            }
        };
        let (kind, message) = refusal(RestOptions::default()).await.unwrap();
        assert_eq!(kind, floe::ErrorKind::Config);
        assert!(
            message.contains("without auth") && message.contains("--oauth-client"),
            "{message}"
        );
        let token_only = RestOptions {
            token: Some(Secret::new(token)),
            ..Default::default()
        };
        let (kind, message) = refusal(token_only.clone()).await.unwrap();
        assert_eq!(kind, floe::ErrorKind::Config);
        assert!(
            message.contains("plain HTTP")
                && message.contains("--tls-cert")
                && message.contains("--behind-proxy"),
            "{message}"
        );
        assert!(!message.contains(token));
        let oauth_behind_proxy = RestOptions {
            behind_proxy: true,
            ..oauth_options()
        };
        assert_eq!(refusal(oauth_behind_proxy).await, None);
        assert_eq!(refusal(options).await, None);
        let missing_key = RestOptions {
            tls: Some(TlsFiles {
                cert: tls.cert.clone(),
                key: dir.path().join("no-such-key.pem"),
            }),
            ..token_only.clone()
        };
        let (_, message) = refusal(missing_key).await.unwrap();
        assert!(message.contains("no-such-key.pem"), "{message}");

        // The CLI says the same and exits non-zero.
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, token).unwrap();
        let out = floe_cmd(dir.path(), Some(&ctx))
            .args(["serve", "--bind", "0.0.0.0:0", "--token-file"])
            .arg(&token_file)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--tls-cert") && stderr.contains("--behind-proxy"),
            "{stderr}"
        );
    }
);

both_backends!(
    floe_serve_vends_its_s3_keys_only_when_asked,
    |ctx: Ctx| async move {
        events_table(&ctx, "events", 10).await;
        let ns = ctx.ns.to_string();
        let load_path = format!("/v1/namespaces/{ns}/tables/events");
        let vend = RestOptions {
            vend_credentials: true,
            ..Default::default()
        };
        let keys = s3_keys(&ctx);

        // Without --vend-credentials no key is in any answer.
        let plain = serve_with(&ctx, &RestOptions::default()).await;
        for path in ["/v1/config", load_path.as_str()] {
            let answer = get(plain, path).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert!(!answer.body.contains("access-key-id") && !answer.body.contains("secret-access-key"));
            if let Some(keys) = &keys {
                for key in [&keys["key_id"], &keys["secret"]] {
                    assert!(!answer.body.contains(key.as_str().unwrap()), "{path}");
                }
            }
        }
        let Some(keys) = keys else {
            // A local warehouse has no keys to vend: refused at start, with the reason.
            let e = Server::bind(ctx.floe.clone(), "127.0.0.1:0".parse().unwrap(), &vend)
                .await
                .err()
                .unwrap();
            assert_eq!(e.kind(), floe::ErrorKind::Config);
            assert!(e.to_string().contains("not on S3"), "{e}");
            eprintln!(
                "SKIPPED (local disk): DuckDB with vended keys needs the S3 warehouse; checked the refusal"
            );
            return;
        };
        if duckdb_iceberg_available() {
            // DuckDB with its own S3 secret and access delegation off reads what the server lists.
            let uri = format!("http://{plain}");
            let out = server_tool(&ctx, &["duckdb-own-secret", &uri, &ns, "events"], None).await;
            assert_eq!(out, json!({"count": 10, "sum": 45}));
        }

        let vending = serve_with(&ctx, &vend).await;
        let load = get(vending, &load_path).await.json();
        assert_eq!(load["config"]["s3.access-key-id"], keys["key_id"]);
        assert_eq!(load["config"]["s3.secret-access-key"], keys["secret"]);
        assert_eq!(load["config"]["s3.path-style-access"], json!("true"));
        let config = get(vending, "/v1/config").await.json();
        assert_eq!(config["defaults"]["s3.access-key-id"], keys["key_id"]);
        if duckdb_iceberg_available() {
            // DuckDB's default ACCESS_DELEGATION_MODE, no S3 secret of its own: the vended keys read.
            let uri = format!("http://{vending}");
            let out = server_tool(&ctx, &["duckdb-vended", &uri, &ns, "events"], None).await;
            assert_eq!(out, json!({"count": 10, "sum": 45}));
        }
    }
);

/// Every page of `path` (a list endpoint) at `size` per page: the items and the number of pages.
async fn all_pages(addr: SocketAddr, path: &str, field: &str, size: &str) -> (Vec<Value>, usize) {
    let (mut items, mut pages, mut token) = (Vec::new(), 0, String::new());
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let answer = get(addr, &format!("{path}{sep}pageSize={size}&pageToken={token}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let body = answer.json();
        pages += 1;
        items.extend(body[field].as_array().unwrap().iter().cloned());
        match body.get("next-page-token") {
            None => return (items, pages),
            Some(Value::String(next)) if !next.is_empty() => token = next.clone(),
            Some(other) => panic!("next-page-token {other}"),
        }
    }
}

both_backends!(
    floe_serve_pages_lists_and_loads_refs_only_with_etags,
    |ctx: Ctx| async move {
        let ns = ctx.ns.to_string();
        for name in ["t1", "t2", "t3", "t4", "t5"] {
            ctx.create_events_table(&ctx.table(name), &[]).await;
        }
        for child in ["c", "a", "b"] {
            let child = floe::Namespace::new([ns.clone(), child.to_string()]).unwrap();
            ctx.floe
                .catalog()
                .create_namespace(&child, &BTreeMap::new())
                .await
                .unwrap();
        }
        let addr = serve_with(&ctx, &RestOptions::default()).await;

        // Paging: every item once, in order; the last page has no token.
        let tables = format!("/v1/namespaces/{ns}/tables");
        let (items, pages) = all_pages(addr, &tables, "identifiers", "2").await;
        let names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
        assert_eq!((names, pages), (vec!["t1", "t2", "t3", "t4", "t5"], 3));
        let (items, pages) = all_pages(addr, &tables, "identifiers", "5").await;
        assert_eq!((items.len(), pages), (5, 1));
        let whole = get(addr, &tables).await.json();
        assert_eq!(whole["identifiers"].as_array().unwrap().len(), 5);
        assert!(whole.get("next-page-token").is_none(), "{whole}");
        let children = format!("/v1/namespaces?parent={ns}");
        let (items, pages) = all_pages(addr, &children, "namespaces", "2").await;
        assert_eq!(
            (items, pages),
            (vec![json!([ns, "a"]), json!([ns, "b"]), json!([ns, "c"])], 2)
        );
        for bad in [
            "pageSize=0",
            "pageSize=-1",
            "pageSize=two",
            "pageToken=not*a*token",
        ] {
            let answer = get(addr, &format!("{tables}?{bad}")).await;
            assert_eq!(
                (answer.status, &answer.json()["error"]["type"]),
                (400, &json!("BadRequestException")),
                "{bad}"
            );
        }

        // snapshots=refs: s1 <- s2 <- s3, a tag on s2, main rolled back to s1: s3 is reached by no ref.
        let t = ctx.table("t1");
        for i in 0..3 {
            append_events(&ctx, &t, i * 10..i * 10 + 10).await;
        }
        let table = ctx.floe.load_table(&t).await.unwrap();
        let mut ids: Vec<(i64, i64)> = table
            .snapshots()
            .iter()
            .map(|s| (s.sequence_number(), s.snapshot_id()))
            .collect();
        ids.sort();
        let (s1, s2, s3) = (ids[0].1, ids[1].1, ids[2].1);
        ctx.floe.create_tag(&t, "t2", &At::Snapshot(s2)).await.unwrap();
        ctx.floe.rollback(&t, s1).await.unwrap();
        let load = format!("{tables}/t1");
        let snapshot_ids = |metadata: &Value, list: &str| -> Vec<i64> {
            let mut ids: Vec<i64> = metadata[list]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["snapshot-id"].as_i64().unwrap())
                .collect();
            ids.sort();
            ids
        };
        let all = get(addr, &load).await;
        let refs = get(addr, &format!("{load}?snapshots=refs")).await;
        let mut want = vec![s1, s2, s3];
        want.sort();
        assert_eq!(snapshot_ids(&all.json()["metadata"], "snapshots"), want);
        let mut want = vec![s1, s2];
        want.sort();
        let filtered = refs.json()["metadata"].clone();
        assert_eq!(snapshot_ids(&filtered, "snapshots"), want);
        assert!(
            snapshot_ids(&filtered, "snapshot-log")
                .iter()
                .all(|id| want.contains(id)),
            "{filtered}"
        );
        assert_eq!(filtered["current-snapshot-id"], json!(s1));
        let parsed: iceberg::spec::TableMetadata = serde_json::from_value(filtered).unwrap();
        assert_eq!(parsed.snapshots().count(), 2);
        let bad = get(addr, &format!("{load}?snapshots=some")).await;
        assert_eq!(bad.status, 400);

        // ETags: strong, one per metadata file and mode; If-None-Match that matches gets a bodiless 304.
        let tag = all.header("etag").unwrap().to_string();
        let refs_tag = refs.header("etag").unwrap();
        assert!(
            tag.starts_with('"') && tag.ends_with('"') && tag.len() > 10,
            "{tag}"
        );
        assert_ne!(tag, refs_tag);
        assert_eq!(get(addr, &load).await.header("etag"), Some(tag.as_str()));
        let matching = [
            tag.clone(),
            format!("W/{tag}"),
            format!("\"other\", {tag}"),
            "*".to_string(),
        ];
        for header in matching {
            let answer = request(addr, "GET", &load, &[("If-None-Match", &header)], "").await;
            assert_eq!((answer.status, answer.body.as_str()), (304, ""), "{header}");
            assert_eq!(answer.header("etag"), Some(tag.as_str()));
        }
        let other = request(addr, "GET", &load, &[("If-None-Match", "\"other\"")], "").await;
        assert_eq!(other.status, 200);
        append_events(&ctx, &t, 100..101).await;
        let after = request(addr, "GET", &load, &[("If-None-Match", &tag)], "").await;
        assert_eq!(after.status, 200);
        assert_ne!(after.header("etag"), Some(tag.as_str()));
    }
);
