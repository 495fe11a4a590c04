//! Secrets: a wrapper that never prints, a process-wide list of the secrets seen so far, and the one
//! masking function every message passes through before it is shown or logged. A secret is masked
//! wherever it sits: registered values anywhere in the text, the password of a URL's user info
//! (`scheme://user:PASSWORD@host`), and the value of any URL query parameter or `key=value` pair whose
//! key names a credential (`?password=...`, `&sslpassword=...`, `X-Amz-Signature=...`, `secret=...`).

use std::fmt;
use std::sync::RwLock;

use serde::Deserialize;

/// A secret value (catalog password, S3 secret key, session token): `Debug` and `Display` print
/// `***`, and every error message and log line masks it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub struct Secret(String);

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl Secret {
    /// Wrap a secret; it is registered so that error messages mask it too.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        register_secret(&value);
        Self(value)
    }

    /// The secret itself, for the one place that must hand it to a client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remember `value` as a secret, so that [`redact_secrets`] masks it wherever it appears. Values
/// shorter than 4 bytes are not registered (masking them would garble ordinary text).
pub fn register_secret(value: &str) {
    if value.len() < 4 {
        return;
    }
    if let Ok(mut secrets) = SECRETS.write() {
        if !secrets.iter().any(|s| s == value) {
            secrets.push(value.to_string());
            // Longest first, so a secret that contains another is masked whole.
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }
}

/// Register every secret a URL carries (its user-info password and credential query parameters),
/// so that later messages that quote them in another form are masked too.
pub fn register_url_secrets(url: &str) {
    for value in split_url_credentials(url).values {
        register_secret(&value);
        // Drivers may print the value percent-decoded.
        if let Ok(decoded) = percent_decode(&value) {
            register_secret(&decoded);
        }
    }
}

/// Mask every registered secret, every URL user-info password and every credential-named
/// `key=value` in `text`.
pub fn redact_secrets(text: &str) -> String {
    let mut out = redact_userinfo(text);
    out = redact_credential_pairs(&out);
    if let Ok(secrets) = SECRETS.read() {
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
    }
    out
}

/// Keys whose values are credentials, compared case-insensitively after dropping `-` and `_`.
fn is_credential_key(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    let k = k.rsplit('.').next().unwrap_or(&k).to_string();
    [
        "password",
        "passwd",
        "pwd",
        "pass",
        "sslpassword",
        "secret",
        "secretkey",
        "secretaccesskey",
        "awssecretaccesskey",
        "sessiontoken",
        "awssessiontoken",
        "token",
        "accesstoken",
        "apikey",
        "xamzsignature",
        "xamzsecuritytoken",
        "xamzcredential",
        "signature",
        "credential",
        "credentials",
    ]
    .contains(&k.as_str())
}

/// A URL with its credentials split off: the one parser of URL credentials, for masking, for
/// recording a URL without its secrets, and for handing a password to a child process through its
/// environment rather than its command line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UrlCredentials {
    /// The URL without its user-info password and without credential-named query parameters.
    pub without: String,
    /// The values removed, as they were written in the URL (percent-encoded).
    pub values: Vec<String>,
    /// The password, percent-decoded: the user-info one, else a `password` query parameter.
    pub password: Option<String>,
}

/// Split `url`'s credentials off (a text that is not a URL comes back whole, with none).
pub(crate) fn split_url_credentials(url: &str) -> UrlCredentials {
    let mut out = UrlCredentials {
        without: url.to_string(),
        values: Vec::new(),
        password: None,
    };
    let Some(pos) = url.find("://") else {
        return out;
    };
    let (scheme, rest) = url.split_at(pos + 3);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut without = scheme.to_string();
    match authority.rfind('@') {
        Some(at) => {
            let (user, password) = authority[..at].split_once(':').unwrap_or((&authority[..at], ""));
            if !password.is_empty() {
                out.values.push(password.to_string());
                out.password = Some(percent_decode(password).unwrap_or_else(|_| password.to_string()));
            }
            without.push_str(user);
            without.push_str(&authority[at..]);
        }
        None => without.push_str(authority),
    }
    let (tail, fragment) = match tail.find('#') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    match tail.split_once('?') {
        Some((path, query)) => {
            without.push_str(path);
            let mut kept = Vec::new();
            for pair in query.split(['&', ';']).filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some((k, v)) if is_credential_key(k) => {
                        if !v.is_empty() {
                            out.values.push(v.to_string());
                            if out.password.is_none() && k.eq_ignore_ascii_case("password") {
                                let plus = v.replace('+', " ");
                                out.password = Some(percent_decode(&plus).unwrap_or(plus));
                            }
                        }
                    }
                    _ => kept.push(pair),
                }
            }
            if !kept.is_empty() {
                without.push('?');
                without.push_str(&kept.join("&"));
            }
        }
        None => without.push_str(tail),
    }
    without.push_str(fragment);
    out.without = without;
    out
}

fn percent_decode(text: &str) -> Result<String, ()> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).map_err(|_| ())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// `scheme://user:password@host` → `scheme://user:***@host`, for every URL in the text.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '`' | ')' | ']' | '>')
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `password=VALUE` (in a query string, a connection string or a log line) → `password=***`, for
/// every credential-named key.
fn redact_credential_pairs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (before, after) = rest.split_at(eq);
        let key_start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .map(|i| i + before[i..].chars().next().map_or(1, char::len_utf8))
            .unwrap_or(0);
        let key = &before[key_start..];
        out.push_str(before);
        out.push('=');
        let value = &after[1..];
        if !key.is_empty() && is_credential_key(key) {
            let quoted = value.starts_with(['"', '\'']);
            let end = if quoted {
                let q = value.as_bytes()[0] as char;
                value[1..].find(q).map(|i| i + 2).unwrap_or(value.len())
            } else {
                value
                    .find(|c: char| {
                        c.is_whitespace() || matches!(c, '&' | ';' | ',' | '#' | '"' | '\'' | ')' | ']' | '>')
                    })
                    .unwrap_or(value.len())
            };
            if end > 0 {
                out.push_str("***");
            }
            rest = &value[end..];
        } else {
            rest = value;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_split_off_whole() {
        let c = split_url_credentials("postgres://etl:p%40ss@db:5432/shop?sslmode=require&password=q&x=1#f");
        assert_eq!(c.without, "postgres://etl@db:5432/shop?sslmode=require&x=1#f");
        assert_eq!(c.values, vec!["p%40ss".to_string(), "q".to_string()]);
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        let c = split_url_credentials("postgres://etl@db/shop?password=a%20b&sslpassword=k");
        assert_eq!(c.without, "postgres://etl@db/shop");
        assert_eq!(c.password.as_deref(), Some("a b"));
        assert_eq!(c.values.len(), 2);
        let c = split_url_credentials("sqlite:/tmp/x.db");
        assert_eq!(
            (c.without.as_str(), c.values.len(), c.password),
            ("sqlite:/tmp/x.db", 0, None)
        );
        let c = split_url_credentials("http://GKkey:secret@127.0.0.1:3900");
        assert_eq!(c.without, "http://GKkey@127.0.0.1:3900");
    }

    /// A canary in every position a secret can take in a URL or a message is masked.
    #[test]
    fn canaries_are_masked_wherever_they_sit() {
        let canary = "Canary-7f3a9";
        let cases = [
            format!("postgres://floe:{canary}@db:5432/floe"),
            format!("postgresql://floe:{canary}@db/floe?sslmode=require"),
            format!("postgres://floe@db/floe?password={canary}"),
            format!("postgres://floe@db/floe?sslmode=disable&password={canary}&x=1"),
            format!("postgres://floe@db/floe?sslpassword={canary}"),
            format!("http://GKkey:{canary}@127.0.0.1:3900"),
            format!("https://s3.example.com/b/k?X-Amz-Signature={canary}&X-Amz-Date=1"),
            format!("https://s3.example.com/b/k?X-Amz-Security-Token={canary}"),
            format!("host=db user=floe password={canary} dbname=floe"),
            format!("host=db password='{canary}' dbname=floe"),
            format!("error: cannot connect (aws_secret_access_key={canary})"),
        ];
        for text in &cases {
            let masked = redact_secrets(&format!("failed: {text} (retrying)"));
            assert!(!masked.contains(canary), "{text} -> {masked}");
            assert!(masked.contains("***"), "{text} -> {masked}");
        }
        // A registered secret is masked in any text, also percent-decoded.
        register_url_secrets("postgres://u@h/db?password=p%40ss-w0rd-canary");
        let masked = redact_secrets("driver said: password authentication failed for p@ss-w0rd-canary");
        assert!(!masked.contains("p@ss-w0rd-canary"), "{masked}");
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "s3://bucket/warehouse/ns/t-1234/metadata/00001-x.metadata.json",
            "file:///tmp/x/y.parquet",
            "postgres://floe@db:5432/floe",
            "filter amount = 3 matched 2 rows",
            "key=value passes",
        ] {
            assert_eq!(redact_secrets(text), text);
        }
    }
}
