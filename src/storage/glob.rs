//! Naming many objects at once: a file, a directory (the files directly in it) or a glob on the last
//! path segment, local or on S3, expanded to full URIs with their sizes. What the files are (their
//! formats) is the caller's business.

use object_store::ObjectStoreExt;

use super::{normalize, ObjectStorage};
use crate::error::{Error, ErrorKind, Result};

/// An object a path named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedObject {
    /// Its file name (the last path segment).
    pub name: String,
    /// Its full URI: `file:///abs/path` or `s3://bucket/key`.
    pub uri: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What a path named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expansion {
    /// One file named explicitly, or the files a glob matched (at least one), sorted by URI.
    Files(Vec<NamedObject>),
    /// The files directly in a directory (at least one; subdirectories are not entered), sorted by
    /// URI.
    Directory(Vec<NamedObject>),
}

/// Expand `input`: a file URI or path, a directory, or a glob on the last path segment
/// (`/data/events-*.csv`, `s3://b/p/*.ndjson`; `*`, `?` and `[...]`). Local relative paths are made
/// absolute. A missing path, an empty directory or a glob matching nothing is `NotFound`; a path
/// floe cannot read (another scheme, a glob before the last segment) is `InvalidInput`.
pub async fn expand(storage: &ObjectStorage, input: &str) -> Result<Expansion> {
    let uri = input_uri(input)?;
    let (dir, last) = uri.rsplit_once('/').unwrap_or(("", uri.as_str()));
    if is_glob(last) {
        if is_glob(dir) {
            return Err(Error::invalid(format!(
                "input {input:?}: a glob may only be in the last path segment"
            )));
        }
        let pattern: Vec<char> = last.chars().collect();
        let mut files: Vec<NamedObject> = list_dir(storage, dir)
            .await?
            .into_iter()
            .filter(|o| glob_match(&pattern, &o.name.chars().collect::<Vec<_>>()))
            .collect();
        if files.is_empty() {
            return Err(Error::not_found(format!("input {input:?}: no file matches")));
        }
        files.sort_by(|a, b| a.uri.cmp(&b.uri));
        return Ok(Expansion::Files(files));
    }
    let (store, path) = storage.resolve(&uri)?;
    match store.head(&path).await {
        Ok(meta) => {
            let name = uri.rsplit('/').next().unwrap_or(&uri).to_string();
            return Ok(Expansion::Files(vec![NamedObject {
                name,
                uri,
                size: meta.size,
            }]));
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(Error::wrap(ErrorKind::Storage, format!("cannot stat {uri}"), e)),
    }
    let mut listed = list_dir(storage, &uri).await?;
    if listed.is_empty() {
        return Err(Error::not_found(format!(
            "input {input:?}: no such file or directory (or the directory is empty)"
        )));
    }
    listed.sort_by(|a, b| a.uri.cmp(&b.uri));
    Ok(Expansion::Directory(listed))
}

/// The input as a full URI without a trailing slash: `s3://bucket/key` kept, local paths made
/// absolute and normalized, as `file:///abs/path`.
fn input_uri(input: &str) -> Result<String> {
    if input.is_empty() {
        return Err(Error::invalid("input path is empty"));
    }
    if input.starts_with("s3://") || input.starts_with("s3a://") {
        let trimmed = input.trim_end_matches('/');
        let bucket = trimmed
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap_or("");
        if bucket.is_empty() {
            return Err(Error::invalid(format!("input {input:?} has no bucket")));
        }
        return Ok(trimmed.to_string());
    }
    let path = match input.strip_prefix("file://") {
        Some(rest) => rest,
        None if input.contains("://") => {
            return Err(Error::invalid(format!(
                "input {input:?}: only local paths, file:// and s3:// are supported"
            )))
        }
        None => input,
    };
    let path = std::path::Path::new(path);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let normalized = normalize(&abs);
    let text = normalized
        .to_str()
        .ok_or_else(|| Error::invalid(format!("input {input:?}: path is not valid UTF-8")))?;
    Ok(format!("file://{text}"))
}

/// The objects directly under the directory `dir` (a URI). A missing directory lists as empty.
async fn list_dir(storage: &ObjectStorage, dir: &str) -> Result<Vec<NamedObject>> {
    let (store, path) = storage.resolve(if dir == "file://" { "file:///" } else { dir })?;
    let base = match dir.split_once("://") {
        Some((scheme @ ("s3" | "s3a"), rest)) => {
            format!("{scheme}://{}/", rest.split('/').next().unwrap_or(rest))
        }
        _ => "file:///".to_string(),
    };
    let listed = match store.list_with_delimiter(Some(&path)).await {
        Ok(listed) => listed,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(Error::wrap(ErrorKind::Storage, format!("cannot list {dir}"), e)),
    };
    Ok(listed
        .objects
        .into_iter()
        .filter_map(|m| {
            let name = m.location.filename()?.to_string();
            Some(NamedObject {
                name,
                uri: format!("{base}{}", m.location),
                size: m.size,
            })
        })
        .collect())
}

fn is_glob(segment: &str) -> bool {
    segment.contains(['*', '?', '['])
}

/// Shell-style match of a whole file name: `*` any run, `?` one character, `[abc]`, `[a-z]`,
/// `[!x]` / `[^x]` one character of (not of) a set. An unclosed `[` matches itself.
fn glob_match(pattern: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => match class_match(&pattern[p..], name[n]) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                None if name[n] == '[' => Some(1),
                None => None,
            },
            Some(&c) if c == name[n] => Some(1),
            _ => None,
        };
        match step {
            Some(len) => {
                p += len;
                n += 1;
            }
            None => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Whether `c` is in the class at the start of `pattern` (which starts with `[`), and the class's
/// length; `None` when the class is not closed.
fn class_match(pattern: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        let lo = *pattern.get(i)?;
        if lo == ']' && !first {
            return Some((found != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|&hi| hi != ']') {
            let hi = pattern[i + 2];
            found |= lo <= c && c <= hi;
            i += 3;
        } else {
            found |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_matching() {
        let m = |p: &str, n: &str| glob_match(&p.chars().collect::<Vec<_>>(), &n.chars().collect::<Vec<_>>());
        assert!(m("*", "abc"));
        assert!(m("events-*.csv", "events-00001.csv"));
        assert!(!m("events-*.csv", "events-00001.csv.bak"));
        assert!(m("*a*b*", "xaybz"));
        assert!(!m("*a*b", "xaybz"));
        assert!(m("?.csv", "a.csv"));
        assert!(!m("?.csv", "ab.csv"));
        assert!(m("[ab]x", "bx"));
        assert!(!m("[!ab]x", "bx"));
        assert!(m("[0-9][0-9]", "42"));
        assert!(m("[]]", "]"));
        assert!(m("a[", "a["));
    }
}
