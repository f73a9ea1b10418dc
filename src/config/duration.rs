//! Durations in settings: `90s`, `10m`, `1h30m`, or bare milliseconds.

use std::time::Duration;

/// Parses a duration with `humantime` (`90s`, `10m`, `1h30m`, `2h 5m`,
/// `1d`, `500ms`); a bare number is milliseconds. Zero is refused.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    let d = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_millis(v.parse().map_err(|_| "is too large".to_owned())?)
    } else {
        humantime::parse_duration(v).map_err(|e| match e {
            humantime::DurationError::UnknownUnit { unit, .. } => format!(
                "unknown unit {unit:?} (examples: 90s, 10m, 1h30m, 1d, 500ms; a bare number is ms)"
            ),
            humantime::DurationError::NumberOverflow => "is too large".to_owned(),
            _ => "is not a duration (examples: 90s, 10m, 1h30m, 1d, 500ms)".to_owned(),
        })?
    };
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// `PB_WHATSAPP_SILENCE`: a duration of at least 30 s. WhatsApp's own
/// keepalive pings an idle link every 15 to 30 s and waits 20 s for the
/// answer, so a shorter silence would restart healthy links.
pub fn parse_silence(value: &str) -> Result<Duration, String> {
    let d = parse_duration(value)?;
    if d < Duration::from_secs(30) {
        return Err("must be at least 30s (WhatsApp pings an idle link every 15 to 30 s)".into());
    }
    Ok(d)
}
