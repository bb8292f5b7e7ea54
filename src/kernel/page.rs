//! Keyset pages, the same for every list: `first` is 1 to [`MAX_PAGE`] (default
//! [`DEFAULT_PAGE`]), and a query reads one row more than it returns to know whether
//! another page follows. (`resolver::page_cost` prices a page by the same bounds.)

use crate::error::AppError;

pub const DEFAULT_PAGE: i32 = 20;
pub const MAX_PAGE: i32 = 100;

/// How many rows a page holds, or BAD_USER_INPUT on `first`.
pub fn page_size(first: Option<i32>) -> Result<u64, AppError> {
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&first) {
        return Err(AppError::bad_input(
            "first",
            format!("first must be 1 to {MAX_PAGE}"),
        ));
    }
    Ok(u64::try_from(first).unwrap_or(20))
}

/// The longest search text a list takes. SQLite refuses a `LIKE` pattern over 50,000
/// bytes (as a fault, not as bad input), and nobody searches a title with a page of text.
pub const MAX_SEARCH_CHARS: usize = 200;

/// A `LIKE` pattern (escape character `\`) matching `text` anywhere, for comparing with a
/// lower-cased column: case-insensitive, and `%` or `_` in the text match only themselves.
/// BAD_USER_INPUT on `search` past [`MAX_SEARCH_CHARS`].
pub fn contains_pattern(text: &str) -> Result<String, AppError> {
    let text = text.trim();
    if text.chars().count() > MAX_SEARCH_CHARS {
        return Err(AppError::bad_input(
            "search",
            format!("search must be at most {MAX_SEARCH_CHARS} characters"),
        ));
    }
    Ok(format!("%{}%", escape_like(&text.to_lowercase())))
}

/// `value` for a `LIKE` pattern whose escape character is `\`: its `%` and `_` match only themselves.
pub fn escape_like(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Rows read with `LIMIT limit + 1`, cut to the page, and whether a next page exists.
pub fn split_page<T>(mut rows: Vec<T>, limit: u64) -> (Vec<T>, bool) {
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    (rows, more)
}
