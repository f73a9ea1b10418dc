//! Secrets: a wrapper that never prints its value, and the check that
//! refuses a weak token or password.

use std::fmt;

/// Shortest `PB_HTTP_TOKEN` or `OPENCODE_SERVER_PASSWORD` accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Words that mark a value as a placeholder left from an example, compared
/// with the value lower-cased and stripped of everything but letters and
/// digits (`change-me`, `Change_Me_Now`, `changeme123` are all placeholders).
const PLACEHOLDER_WORDS: [&str; 9] = [
    "changeme",
    "replaceme",
    "placeholder",
    "yourtoken",
    "yourpassword",
    "yoursecret",
    "longrandomstring",
    "randomstring",
    "example",
];

/// Why `value` cannot be a token or password, or `None` when it may: it is
/// shorter than [`MIN_TOKEN_LEN`], names a placeholder, or is made of a few
/// characters repeated (`aaaa…`, `12121212…`). The value itself is never
/// part of the reason.
pub fn weak_secret(value: &str) -> Option<String> {
    let chars = value.chars().count();
    if chars < MIN_TOKEN_LEN {
        return Some(format!(
            "it is {chars} characters long, shorter than {MIN_TOKEN_LEN}"
        ));
    }
    let folded: String = value
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if let Some(word) = PLACEHOLDER_WORDS.iter().find(|w| folded.contains(*w)) {
        return Some(format!(
            "it is a placeholder (it contains {word:?}), not a secret"
        ));
    }
    let distinct: std::collections::BTreeSet<char> = value.chars().collect();
    if distinct.len() < 6 {
        return Some(format!(
            "it is made of only {} different characters",
            distinct.len()
        ));
    }
    None
}

/// A secret string: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret read from somewhere other than the command line.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// clap's parser: never fails, so clap never echoes the value.
    pub(super) fn parse(value: &str) -> Result<Secret, std::convert::Infallible> {
        Ok(Secret(value.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
