use super::*;

fn berlin() -> Tz {
    "Europe/Berlin".parse().unwrap()
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn cron_is_evaluated_in_local_time_across_dst() {
    let s = Schedule::parse("cron", "0 9 * * *", berlin(), utc("2026-03-27T00:00:00Z")).unwrap();
    // 9:00 CET = 08:00 UTC; after the spring change (29 March) 9:00 CEST = 07:00 UTC.
    let mut t = utc("2026-03-27T00:00:00Z");
    let mut got = Vec::new();
    for _ in 0..4 {
        t = s.first_run(berlin(), t).unwrap();
        got.push(t.to_rfc3339());
    }
    assert_eq!(
        got,
        [
            "2026-03-27T08:00:00+00:00",
            "2026-03-28T08:00:00+00:00",
            "2026-03-29T07:00:00+00:00",
            "2026-03-30T07:00:00+00:00",
        ]
    );
}

#[test]
fn cron_in_the_skipped_and_repeated_hour() {
    // 2:30 does not exist on 29 March 2026 in Berlin; it exists twice on 25 October.
    let s = Schedule::parse("cron", "30 2 * * *", berlin(), utc("2026-03-28T12:00:00Z")).unwrap();
    let spring = s.first_run(berlin(), utc("2026-03-28T12:00:00Z")).unwrap();
    let after_spring = s.next_after(berlin(), spring, spring).unwrap();
    assert_eq!(
        after_spring.to_rfc3339(),
        "2026-03-30T00:30:00+00:00",
        "spring: {spring}"
    );
    let fall = s.first_run(berlin(), utc("2026-10-24T12:00:00Z")).unwrap();
    assert_eq!(
        fall.to_rfc3339(),
        "2026-10-25T00:30:00+00:00",
        "first 2:30 (CEST)"
    );
    let next = s.next_after(berlin(), fall, fall).unwrap();
    assert_eq!(
        next.to_rfc3339(),
        "2026-10-26T01:30:00+00:00",
        "runs once in the repeated hour"
    );
}

#[test]
fn interval_is_anchored_and_catches_up_once() {
    let s = Schedule::parse("interval", "5m", berlin(), utc("2026-01-01T00:00:00Z")).unwrap();
    let due = utc("2026-01-01T00:05:00Z");
    // A slow dispatch (40 s late) does not shift the schedule.
    assert_eq!(
        s.next_after(berlin(), due, utc("2026-01-01T00:05:40Z"))
            .unwrap(),
        utc("2026-01-01T00:10:00Z")
    );
    // After an hour of downtime: the missed runs are skipped, the grid kept.
    assert_eq!(
        s.next_after(berlin(), due, utc("2026-01-01T01:07:00Z"))
            .unwrap(),
        utc("2026-01-01T01:10:00Z")
    );
    // Exactly on a grid point: the next one.
    assert_eq!(
        s.next_after(berlin(), due, utc("2026-01-01T00:10:00Z"))
            .unwrap(),
        utc("2026-01-01T00:15:00Z")
    );
}

#[test]
fn interval_does_not_drift_over_many_runs() {
    let s = Schedule::parse("interval", "90s", berlin(), utc("2026-01-01T00:00:00Z")).unwrap();
    let start = utc("2026-01-01T00:00:00Z");
    let mut due = s.first_run(berlin(), start).unwrap();
    for i in 0..1000 {
        let dispatched = due + chrono::Duration::milliseconds((i % 7) * 300); // up to 1.8 s late
        due = s.next_after(berlin(), due, dispatched).unwrap();
    }
    assert_eq!(due, start + chrono::Duration::seconds(90 * 1001));
}

#[test]
fn once_accepts_local_and_offset_times_and_refuses_the_past() {
    let now = utc("2026-11-21T10:00:00Z");
    let local = Schedule::parse("once", "2026-12-24T18:00", berlin(), now).unwrap();
    assert_eq!(
        local.first_run(berlin(), now).unwrap(),
        utc("2026-12-24T17:00:00Z")
    );
    let offset = Schedule::parse("once", "2026-12-24T18:00:00+05:00", berlin(), now).unwrap();
    assert_eq!(
        offset.first_run(berlin(), now).unwrap(),
        utc("2026-12-24T13:00:00Z")
    );
    assert!(
        offset
            .next_after(berlin(), utc("2026-12-24T13:00:00Z"), now)
            .is_none()
    );
    let e = Schedule::parse("once", "2026-11-20T18:00", berlin(), now).unwrap_err();
    assert!(e.0.contains("in the past"), "{e}");
    let e = Schedule::parse(
        "once",
        "2026-03-29T02:30",
        berlin(),
        utc("2026-01-01T00:00:00Z"),
    )
    .unwrap_err();
    assert!(e.0.contains("does not exist"), "{e}");
}

#[test]
fn invalid_schedules_say_what_is_wrong() {
    let now = utc("2026-11-21T10:00:00Z");
    let cases = [
        ("cron", "0 9 * *", "has 4 fields"),
        ("cron", "*/10 0 9 * * *", "has 6 fields"),
        ("cron", "61 9 * * *", "invalid cron schedule"),
        ("cron", "0 0 31 2 *", "never runs"),
        ("interval", "0", "greater than zero"),
        ("interval", "-5m", "negative"),
        ("interval", "5 fortnights", "unknown unit"),
        ("interval", "5s", "minimum of 10s"),
        ("once", "tomorrow", "not ISO 8601"),
        ("daily", "x", "unknown schedule type"),
    ];
    for (kind, value, want) in cases {
        let e = Schedule::parse(kind, value, berlin(), now).unwrap_err();
        assert!(e.0.contains(want), "{kind} {value}: {e}");
    }
    assert!(
        Schedule::parse("interval", "1500", berlin(), now)
            .unwrap_err()
            .0
            .contains("minimum"),
        "bare numbers are ms"
    );
    assert!(
        matches!(Schedule::parse("interval", "15000", berlin(), now).unwrap(), Schedule::Interval(d) if d == Duration::from_secs(15))
    );
}
