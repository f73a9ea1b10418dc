//! One naming scheme: every bridge setting's variable is `PB_*`. Settings
//! that had another name still accept it, with a warning, while the new
//! name is unset.
//!
//! Three variables keep names the bridge shares with other programs:
//! `OPENCODE_SERVER_PASSWORD` and `OPENCODE_SERVER_USERNAME` are OpenCode's
//! own (a separately run `opencode serve` reads only those names, and the
//! bridge must send the same values), and `TZ` is the system's.

use std::ffi::OsString;

/// Renamed settings: (old variable, new variable).
pub const RENAMED: [(&str, &str); 6] = [
    ("ASSISTANT_NAME", "PB_ASSISTANT_NAME"),
    ("ASSISTANT_HAS_OWN_NUMBER", "PB_ASSISTANT_HAS_OWN_NUMBER"),
    ("MAX_CONCURRENT_SESSIONS", "PB_MAX_CONCURRENT_SESSIONS"),
    ("OPENCODE_URL", "PB_OPENCODE_URL"),
    ("OPENCODE_MODEL", "PB_OPENCODE_MODEL"),
    ("OPENCODE_BIN", "PB_OPENCODE_BIN"),
];

/// The old name a setting had, if it was renamed.
pub fn old_name(new: &str) -> Option<&'static str> {
    RENAMED.iter().find(|(_, n)| *n == new).map(|(o, _)| *o)
}

/// An old variable name found set in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldName {
    pub old: &'static str,
    pub new: &'static str,
    /// The new name is set too, so the old one is ignored.
    pub ignored: bool,
}

impl OldName {
    /// Logs the one warning this old name gets.
    pub fn warn(&self) {
        let (old, new) = (self.old, self.new);
        if self.ignored {
            tracing::warn!(
                old,
                new,
                "{old} is ignored: {new} is set; remove {old} (it is the setting's old name)"
            );
        } else {
            tracing::warn!(
                old,
                new,
                "{old} is an old name: rename it {new} (the old name is read while {new} is unset)"
            );
        }
    }
}

/// The old names set (not blank) in the environment `get` reads, each once.
pub fn old_names(get: impl Fn(&str) -> Option<OsString>) -> Vec<OldName> {
    let set = |k: &str| get(k).is_some_and(|v| v.to_str().is_none_or(|s| !s.trim().is_empty()));
    RENAMED
        .iter()
        .filter(|(old, _)| set(old))
        .map(|&(old, new)| OldName {
            old,
            new,
            ignored: set(new),
        })
        .collect()
}

/// Points each renamed setting whose new variable is unset at its old
/// variable instead (clap reads the variable when it is named here).
pub fn accept_old_names(cmd: clap::Command, old: &[OldName]) -> clap::Command {
    cmd.mut_args(|a| {
        let stand_in = old
            .iter()
            .find(|o| !o.ignored && a.get_env().is_some_and(|e| e == o.new));
        match stand_in {
            Some(o) => a.env(o.old),
            None => a,
        }
    })
}
