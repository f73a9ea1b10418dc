//! Task schedules: parsing and next-run arithmetic, pure and clock-free.
//!
//! - `cron`: five standard fields, evaluated in the task's time zone (so
//!   "0 9 * * 1-5" is 9:00 local on both sides of a daylight-saving change;
//!   croner applies Vixie-cron's rules for the skipped and repeated hour).
//! - `interval`: `90s`, `5m`, `2h`, `1h30m`, `1d`, `250ms` (humantime's
//!   forms); a bare number is milliseconds. Runs are anchored to the previous
//!   *due* time, so slow runs do not make the schedule drift.
//! - `once`: an ISO 8601 time, local (`2026-12-24T18:00`) or with an offset.
//!
//! After downtime a task is due once (catch-up), then `next_after` skips the
//! runs that were missed and returns to the schedule.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::model::ScheduleKind;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    Cron(Box<Cron>),
    Interval(Duration),
    Once(DateTime<Utc>),
}

/// Why a schedule was refused; the message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(pub String);

fn err(msg: impl Into<String>) -> ScheduleError {
    ScheduleError(msg.into())
}

/// Shortest interval accepted: a tighter loop would only burn model calls.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

impl Schedule {
    /// Parses `kind` (`cron`, `interval`, `once`) and `value`. `now` is used
    /// to refuse a `once` time in the past.
    pub fn parse(
        kind: &str,
        value: &str,
        tz: Tz,
        now: DateTime<Utc>,
    ) -> Result<Self, ScheduleError> {
        let value = value.trim();
        match kind {
            "cron" => {
                let fields = value.split_whitespace().count();
                if fields != 5 {
                    return Err(err(format!(
                        "cron schedule {value:?} has {fields} fields; use the five standard fields \
                         'minute hour day-of-month month day-of-week', e.g. '0 9 * * 1-5'"
                    )));
                }
                let cron = CronParser::builder()
                    .seconds(Seconds::Disallowed)
                    .build()
                    .parse(value)
                    .map_err(|e| err(format!("invalid cron schedule {value:?}: {e}")))?;
                // A pattern that never matches (31 February) is refused now.
                cron.find_next_occurrence(&now.with_timezone(&tz), false)
                    .map_err(|_| err(format!("cron schedule {value:?} never runs")))?;
                Ok(Schedule::Cron(Box::new(cron)))
            }
            "interval" => {
                if value.starts_with('-') {
                    return Err(err(format!(
                        "interval {value:?} is negative; use a positive duration such as 5m"
                    )));
                }
                let d = crate::config::parse_duration(value)
                    .map_err(|e| err(format!("invalid interval {value:?}: {e}")))?;
                if d < MIN_INTERVAL {
                    return Err(err(format!(
                        "interval {value:?} is shorter than the minimum of 10s"
                    )));
                }
                Ok(Schedule::Interval(d))
            }
            "once" => {
                let at = parse_time(value, tz)?;
                if at <= now {
                    return Err(err(format!(
                        "time {value:?} is in the past (now is {} in {tz})",
                        now.with_timezone(&tz).format("%Y-%m-%dT%H:%M")
                    )));
                }
                Ok(Schedule::Once(at))
            }
            other => Err(err(format!(
                "unknown schedule type {other:?}; use cron, interval or once"
            ))),
        }
    }

    /// Which kind of schedule this is (stored as the task's `schedule_type`).
    pub fn kind(&self) -> ScheduleKind {
        match self {
            Schedule::Cron(_) => ScheduleKind::Cron,
            Schedule::Interval(_) => ScheduleKind::Interval,
            Schedule::Once(_) => ScheduleKind::Once,
        }
    }

    /// The first due time of a new (or resumed) task.
    pub fn first_run(&self, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(c) => next_cron(c, tz, now),
            Schedule::Interval(d) => Some(now + chrono::Duration::from_std(*d).ok()?),
            Schedule::Once(at) => Some(*at),
        }
    }

    /// The due time after a run that was due at `due`, dispatched at `now`
    /// (`now >= due`; much later after downtime). `None`: the task is done.
    pub fn next_after(
        &self,
        tz: Tz,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(c) => next_cron(c, tz, now.max(due)),
            Schedule::Interval(d) => {
                let step = chrono::Duration::from_std(*d).ok()?;
                let behind = (now - due).num_milliseconds().max(0);
                let steps = behind / step.num_milliseconds().max(1) + 1;
                Some(due + step * i32::try_from(steps).ok()?)
            }
            Schedule::Once(_) => None,
        }
    }
}

fn next_cron(cron: &Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Parses an ISO 8601 time: with an offset, or local to `tz`.
pub fn parse_time(value: &str, tz: Tz) -> Result<DateTime<Utc>, ScheduleError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%:z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%d %H:%M%:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(value, fmt) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    let naive = [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
    .ok_or_else(|| {
        err(format!(
            "time {value:?} is not ISO 8601; use e.g. 2026-12-24T18:00 or 2026-12-24T18:00+01:00"
        ))
    })?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc)),
        LocalResult::None => Err(err(format!(
            "time {value:?} does not exist in {tz} (skipped by a daylight-saving change)"
        ))),
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    /// `kind:value`, as stored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, value) = s
            .split_once(':')
            .ok_or_else(|| err("stored schedule lacks a kind"))?;
        // Stored schedules were valid when made; a `once` may now be past.
        match kind {
            "once" => Ok(Schedule::Once(
                DateTime::parse_from_rfc3339(value)
                    .map_err(|e| err(e.to_string()))?
                    .with_timezone(&Utc),
            )),
            _ => Schedule::parse(kind, value, Tz::UTC, DateTime::<Utc>::MIN_UTC),
        }
    }
}

#[cfg(test)]
mod tests;
