//! The value parsers clap runs on settings that are more than a number,
//! a duration or an enum. Each message says what a good value looks like.

use chrono_tz::Tz;

/// A skill's name (lower-case letters, digits, `-`), or `*`.
pub(super) fn parse_skill_name(value: &str) -> Result<String, String> {
    let v = value.trim();
    let ok = v == "*"
        || (!v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a skill name (a-z, 0-9, '-') or *"
        ))
    }
}

/// A share between 0 and 0.95.
pub(super) fn parse_share(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(v) if (0.0..=0.95).contains(&v) => Ok(v),
        _ => Err(format!(
            "{value:?} is not a share from 0 to 0.95 (e.g. 0.8)"
        )),
    }
}

/// A model pattern: `provider/model`, `provider/*` or `*`.
pub(super) fn parse_model_pattern(value: &str) -> Result<String, String> {
    let v = value.trim();
    if v == "*" {
        return Ok(v.to_owned());
    }
    match v.split_once('/') {
        Some((p, m))
            if !p.is_empty()
                && !m.is_empty()
                && !p.contains('*')
                && (m == "*" || !m.contains('*')) =>
        {
            Ok(v.to_owned())
        }
        _ => Err(format!("{value:?} is not provider/model, provider/* or *")),
    }
}

/// A reaction for `PB_ACK_REACTION`: one emoji (a few code points at
/// most: skin tones and joiners), no letters, digits or spaces.
pub(super) fn parse_reaction(value: &str) -> Result<String, String> {
    let v = value.trim();
    let ok = !v.is_empty()
        && v.chars().count() <= 8
        && v.chars()
            .all(|c| !c.is_alphanumeric() && !c.is_whitespace() && !c.is_control());
    if ok {
        Ok(v.to_owned())
    } else {
        Err(format!("{value:?} is not one emoji (e.g. 👀)"))
    }
}

/// A host name for `PB_HTTP_HOSTS`: letters, digits, `-` and `.`, matched
/// case-insensitively.
pub(super) fn parse_host_name(value: &str) -> Result<String, String> {
    let v = value.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(v)
    } else {
        Err(format!(
            "{value:?} is not a host name (letters, digits, '-' and '.'; no port, no scheme)"
        ))
    }
}

pub(super) fn parse_assistant_name(value: &str) -> Result<String, String> {
    let name = value.trim();
    if name.is_empty()
        || name.len() > 64
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("use one word of at most 64 bytes, without spaces".into());
    }
    Ok(name.to_owned())
}

/// An IANA name; a leading `:` (POSIX's "implementation-defined" form, as in
/// `TZ=:Europe/Berlin`) is ignored.
pub(super) fn parse_tz(value: &str) -> Result<Tz, String> {
    value
        .trim()
        .trim_start_matches(':')
        .parse()
        .map_err(|_| "not an IANA time zone (example: Europe/Berlin)".into())
}

/// An environment variable name: letters, digits and `_`, not starting
/// with a digit; never one of the bridge's own `PB_*` settings.
pub(super) fn parse_env_name(value: &str) -> Result<String, String> {
    let name = value.trim();
    let shaped = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !shaped {
        return Err(format!("{name:?} is not an environment variable name"));
    }
    if name.starts_with("PB_") {
        return Err(format!(
            "{name} is a bridge setting; it is never passed to OpenCode"
        ));
    }
    Ok(name.to_owned())
}

/// A phone number to pair WhatsApp with, as WhatsApp wants it: the
/// country code and number, digits only (E.164 without the `+`: 7 to 15
/// digits, no leading 0). Spaces and dashes anywhere and one leading `+`
/// are dropped, so `+49 151-1234 5678` is `4915112345678`.
pub fn parse_phone(value: &str) -> Result<String, String> {
    let value = value.trim();
    let value = value.strip_prefix('+').unwrap_or(value);
    let digits: String = value.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let example = "e.g. +49 151 12345678 or 4915112345678";
    if let Some(bad) = digits.chars().find(|c| !c.is_ascii_digit()) {
        return Err(format!(
            "expected a phone number with country code, digits only ({example}); {bad:?} is not a digit"
        ));
    }
    if digits.starts_with('0') {
        return Err(format!(
            "expected a phone number starting with its country code, not 0 ({example})"
        ));
    }
    if !(7..=15).contains(&digits.len()) {
        return Err(format!(
            "expected a phone number with country code, 7 to 15 digits ({example}); this one has {}",
            digits.len()
        ));
    }
    Ok(digits)
}
