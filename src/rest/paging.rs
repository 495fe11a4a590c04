//! Paging of the list endpoints (`pageToken`, `pageSize`): items in a stable order, a page of at
//! most `pageSize` of them, and an opaque `next-page-token` (the last item's key, base64url) only when
//! more follow: never an empty string, which iceberg-rust would follow forever. A cursor rather than
//! an offset, so a namespace or table created between two pages neither repeats nor hides another.
//! Without `pageSize` the rest of the list comes in one page, as the spec asks of a first request.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::error::{RestError, RestResult};

/// One page of a list and the token of the next, if any.
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    pub(crate) next_page_token: Option<String>,
}

impl<T> Page<T> {
    /// The page's list under `field`, and `next-page-token` only when there is a next page.
    pub(crate) fn to_json(&self, field: &str, item: impl Fn(&T) -> serde_json::Value) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert(field.into(), self.items.iter().map(item).collect());
        if let Some(token) = &self.next_page_token {
            body.insert("next-page-token".into(), token.clone().into());
        }
        body.into()
    }
}

/// The page of `items` the query `params` ask for, ordered by `key` (unique per item).
pub(crate) fn paginate<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    params: &HashMap<String, String>,
) -> RestResult<Page<T>> {
    let size = page_size(params)?;
    let after = page_token(params)?;
    items.sort_by_cached_key(|item| key(item));
    if let Some(after) = after {
        let start = items.partition_point(|item| key(item) <= after);
        items.drain(..start);
    }
    let next_page_token = match size {
        Some(size) if items.len() > size => {
            items.truncate(size);
            items.last().map(|last| URL_SAFE_NO_PAD.encode(key(last)))
        }
        _ => None,
    };
    Ok(Page {
        items,
        next_page_token,
    })
}

/// `pageSize`: an integer of at least 1, or absent.
fn page_size(params: &HashMap<String, String>) -> RestResult<Option<usize>> {
    match params.get("pageSize").map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<usize>() {
            Ok(size) if size >= 1 => Ok(Some(size)),
            _ => Err(RestError::bad_request(format!(
                "pageSize must be an integer of at least 1, not {text:?}"
            ))),
        },
    }
}

/// The key after which the page starts: decoded from `pageToken` (an empty one is the first page).
fn page_token(params: &HashMap<String, String>) -> RestResult<Option<String>> {
    let Some(token) = params.get("pageToken").filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(Some)
        .ok_or_else(|| RestError::bad_request("pageToken is not a token this catalog issued"))
}
