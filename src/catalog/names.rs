//! Namespace and table names, validated before any I/O.
//!
//! A name may hold any printable character (quotes, `%`, `_`, `;` round-trip exactly) except the path
//! separators `/` and `\`, `.` (it separates namespace levels and the table name in `NS.TABLE`), and
//! `@` and `$` (they address refs and metadata tables: `NS.TABLE@REF`, `NS.TABLE$files`). Empty names,
//! control characters, names longer than the catalog column (255 bytes), names whose escaped directory
//! name would pass the file system's 255 bytes, and names not in Unicode normalization form C are
//! refused. NFC is required, not applied: `café` typed as `e` + combining accent is refused with the
//! NFC spelling to use, so that one name can never be two tables.

use std::fmt;

use crate::error::{Error, Result};

/// Longest name the JDBC catalog schema stores (`VARCHAR(255)`).
pub const MAX_NAME_LEN: usize = 255;

/// Longest directory name floe makes from a name: the escaped name plus a `-` and 8 hex digits
/// must fit the 255 bytes file systems allow.
const MAX_ESCAPED_LEN: usize = 255 - 9;

/// Check one name (a namespace level or a table name).
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid(format!("invalid {what} name {name:?}: {why}")));
    if name.is_empty() {
        return bad("it is empty");
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are not names");
    }
    if name.trim() != name {
        return bad("it starts or ends with white space");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("it contains a path separator (`/` or `\\`)");
    }
    if name.contains('.') {
        return bad("`.` separates namespace and table; it cannot be part of a name");
    }
    if name.contains('@') || name.contains('$') {
        return bad("`@` and `$` address refs and metadata tables (`NS.TABLE@REF`, `NS.TABLE$files`)");
    }
    if name.chars().any(|c| c.is_control()) {
        return bad("it contains a control character");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 255 bytes");
    }
    if path_segment(name).len() > MAX_ESCAPED_LEN {
        return bad("it is too long for a directory name once its non-ASCII characters are escaped");
    }
    use unicode_normalization::UnicodeNormalization;
    if !unicode_normalization::is_nfc(name) {
        let nfc: String = name.nfc().collect();
        return Err(Error::invalid(format!(
            "invalid {what} name {name:?}: it is not in Unicode normalization form C; write it as {nfc:?}"
        )));
    }
    Ok(())
}

/// Refuse path syntax where a `NS.TABLE` or `NS` is expected, with a message that says so.
fn refuse_paths(kind: &str, text: &str) -> Result<()> {
    if text.contains('/') || text.contains('\\') {
        return Err(Error::invalid(format!(
            "invalid {kind} {text:?}: names cannot contain a path separator (`/` or `\\`)"
        )));
    }
    Ok(())
}

/// A namespace: one or more levels, written `a.b`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(Vec<String>);

impl Namespace {
    /// A namespace from its levels, each validated.
    pub fn new<I, S>(levels: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let levels: Vec<String> = levels.into_iter().map(Into::into).collect();
        if levels.is_empty() {
            return Err(Error::invalid("invalid namespace: it is empty"));
        }
        for l in &levels {
            validate_name("namespace", l)?;
        }
        let ns = Namespace(levels);
        if ns.to_string().len() > MAX_NAME_LEN {
            return Err(Error::invalid(format!(
                "invalid namespace {ns}: longer than 255 bytes"
            )));
        }
        Ok(ns)
    }

    /// Parse `a` or `a.b`.
    pub fn parse(text: &str) -> Result<Self> {
        if text.is_empty() {
            return Err(Error::invalid("invalid namespace name \"\": it is empty"));
        }
        refuse_paths("namespace", text)?;
        Self::new(text.split('.'))
    }

    /// The levels.
    pub fn levels(&self) -> &[String] {
        &self.0
    }

    pub(crate) fn to_iceberg(&self) -> iceberg::NamespaceIdent {
        iceberg::NamespaceIdent::from_vec(self.0.clone()).expect("namespace has at least one level")
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// A table: its namespace and name, written `NS.TABLE`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    namespace: Namespace,
    name: String,
}

impl TableName {
    /// A table name, validated.
    pub fn new(namespace: Namespace, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        validate_name("table", &name)?;
        Ok(Self { namespace, name })
    }

    /// Parse `NS.TABLE` (the last `.` separates the table name).
    pub fn parse(text: &str) -> Result<Self> {
        refuse_paths("table", text)?;
        let Some((ns, name)) = text.rsplit_once('.') else {
            return Err(Error::invalid(format!(
                "invalid table {text:?}: expected NAMESPACE.TABLE"
            )));
        };
        Self::new(Namespace::parse(ns)?, name)
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The table's own name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn to_iceberg(&self) -> iceberg::TableIdent {
        iceberg::TableIdent::new(self.namespace.to_iceberg(), self.name.clone())
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace, self.name)
    }
}

/// A directory-safe form of a name for object paths: ASCII letters, digits, `-` and `_` are kept,
/// every other byte becomes `=XX`. Unique per name, and never needs URL escaping.
pub(crate) fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a\nb",
            "a\u{7}",
            " a",
            "a.b",
            &"x".repeat(256),
        ] {
            assert!(validate_name("table", bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn accepts_odd_but_valid_names() {
        for ok in ["it's", "100%", "snake_case", "a;b", "\"quoted\"", "名前", "a-b"] {
            validate_name("table", ok).unwrap();
        }
        let t = TableName::parse("ns_1.it's;100%").unwrap();
        assert_eq!(t.namespace().to_string(), "ns_1");
        assert_eq!(t.name(), "it's;100%");
    }

    #[test]
    fn refuses_ref_and_metadata_syntax_and_paths_with_clear_messages() {
        for bad in ["t@main", "t$files", "a@b"] {
            let e = validate_name("table", bad).unwrap_err();
            assert!(e.message().contains("refs and metadata tables"), "{e}");
        }
        let e = TableName::parse("../x").unwrap_err();
        assert!(e.message().contains("path separator"), "{e}");
        let e = Namespace::parse("a/b").unwrap_err();
        assert!(e.message().contains("path separator"), "{e}");
        // 100 two-byte characters: 200 bytes, under the column limit, 600 bytes once escaped.
        let long = "é".repeat(100);
        let e = validate_name("table", &long).unwrap_err();
        assert!(e.message().contains("too long for a directory name"), "{e}");
        // NFD spelling of "café" is refused with the NFC one to use.
        let e = validate_name("table", "cafe\u{301}").unwrap_err();
        assert!(
            e.message().contains("normalization form C") && e.message().contains("café"),
            "{e}"
        );
        validate_name("table", "café").unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        /// Any name that is accepted becomes one directory name: no separator, not `.` or `..`, at
        /// most 246 bytes, and distinct names give distinct directories.
        #[test]
        fn accepted_names_stay_one_directory(
            a in proptest::collection::vec(proptest::char::any(), 0..40).prop_map(|c| c.into_iter().collect::<String>()),
            b in proptest::collection::vec(proptest::char::any(), 0..40).prop_map(|c| c.into_iter().collect::<String>()),
        ) {
            for name in [&a, &b] {
                if validate_name("table", name).is_ok() {
                    let seg = path_segment(name);
                    prop_assert!(seg.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'='));
                    prop_assert!(seg != "." && seg != ".." && !seg.is_empty());
                    prop_assert!(seg.len() <= MAX_ESCAPED_LEN);
                }
            }
            if a != b && validate_name("table", &a).is_ok() && validate_name("table", &b).is_ok() {
                prop_assert_ne!(path_segment(&a), path_segment(&b));
            }
        }
    }

    #[test]
    fn path_segments_are_safe_and_distinct() {
        assert_eq!(path_segment("events"), "events");
        assert_eq!(path_segment("a.b"), "a=2Eb");
        assert_ne!(path_segment("a%"), path_segment("a_"));
    }
}
