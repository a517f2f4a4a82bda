use chrono::{DateTime, Utc};

use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn sched(expr: &str, zone: &str) -> Schedule {
    Schedule::parse(expr, Some(zone)).unwrap()
}

fn slots(s: &Schedule, from: &str, to: &str) -> Vec<String> {
    s.slots_between(utc(from), utc(to))
        .map(|t| t.to_rfc3339())
        .collect()
}

#[test]
fn spring_forward_gap_runs_once_at_the_end_of_the_gap() {
    // Europe/Paris 2027-03-28: 02:00 CET → 03:00 CEST (01:00 UTC).
    let s = sched("30 2 * * *", "Europe/Paris");
    assert_eq!(
        slots(&s, "2027-03-27T00:00:00Z", "2027-03-29T12:00:00Z"),
        [
            "2027-03-27T01:30:00+00:00", // 02:30 CET
            "2027-03-28T01:00:00+00:00", // 03:00 CEST: the first instant after the gap
            "2027-03-29T00:30:00+00:00", // 02:30 CEST
        ]
    );
    // America/New_York 2027-03-14: 02:00 EST → 03:00 EDT (07:00 UTC).
    let s = sched("30 2 * * *", "America/New_York");
    assert_eq!(
        s.next_after(utc("2027-03-14T00:00:00Z")),
        Some(utc("2027-03-14T07:00:00Z"))
    );
}

#[test]
fn fall_back_fixed_time_runs_once_at_the_first_occurrence() {
    // Europe/Paris 2027-10-31: 03:00 CEST → 02:00 CET (01:00 UTC); 02:30 happens twice.
    let s = sched("30 2 * * *", "Europe/Paris");
    assert_eq!(
        slots(&s, "2027-10-30T12:00:00Z", "2027-11-01T12:00:00Z"),
        [
            "2027-10-31T00:30:00+00:00", // 02:30 CEST, not again at 02:30 CET
            "2027-11-01T01:30:00+00:00",
        ]
    );
    // America/New_York 2027-11-07: 02:00 EDT → 01:00 EST (06:00 UTC); 01:30 happens twice.
    let s = sched("30 1 * * *", "America/New_York");
    assert_eq!(
        slots(&s, "2027-11-07T00:00:00Z", "2027-11-08T00:00:00Z"),
        ["2027-11-07T05:30:00+00:00"]
    );
}

#[test]
fn hourly_runs_every_real_hour_across_both_changes() {
    for (zone, from, to) in [
        (
            "Europe/Paris",
            "2027-03-27T22:00:00Z",
            "2027-03-28T04:00:00Z",
        ),
        (
            "Europe/Paris",
            "2027-10-30T22:00:00Z",
            "2027-10-31T04:00:00Z",
        ),
        (
            "America/New_York",
            "2027-03-14T04:00:00Z",
            "2027-03-14T10:00:00Z",
        ),
        (
            "America/New_York",
            "2027-11-07T03:00:00Z",
            "2027-11-07T09:00:00Z",
        ),
    ] {
        let s = sched("0 * * * *", zone);
        let got = s.slots_between(utc(from), utc(to)).collect::<Vec<_>>();
        assert_eq!(got.len(), 6, "{zone} {from}: {got:?}");
        for pair in got.windows(2) {
            assert_eq!(
                (pair[1] - pair[0]).num_minutes(),
                60,
                "{zone} {from}: {got:?}"
            );
        }
    }
    // Every minute through the repeated hour: 120 real minutes between 00:00 and 02:00 UTC.
    let s = sched("* * * * *", "Europe/Paris");
    let n = s
        .slots_between(utc("2027-10-31T00:00:00Z"), utc("2027-10-31T02:00:00Z"))
        .count();
    assert_eq!(n, 120);
}

#[test]
fn macros() {
    let s = sched("@daily", "Europe/Paris");
    assert_eq!(
        s.next_after(utc("2027-06-01T12:00:00Z")),
        Some(utc("2027-06-01T22:00:00Z"))
    );
    assert_eq!(sched("@midnight", "UTC").expr(), "@midnight");
    let h = sched("@hourly", "UTC");
    assert_eq!(
        h.next_after(utc("2027-06-01T12:00:00Z")),
        Some(utc("2027-06-01T13:00:00Z"))
    );
    // 2027-06-06 is a Sunday.
    let w = sched("@weekly", "UTC");
    assert_eq!(
        w.next_after(utc("2027-06-01T12:00:00Z")),
        Some(utc("2027-06-06T00:00:00Z"))
    );
    let m = sched("@monthly", "UTC");
    assert_eq!(
        m.next_after(utc("2027-06-01T12:00:00Z")),
        Some(utc("2027-07-01T00:00:00Z"))
    );
    for y in ["@yearly", "@annually"] {
        let y = sched(y, "UTC");
        assert_eq!(
            y.next_after(utc("2027-06-01T12:00:00Z")),
            Some(utc("2028-01-01T00:00:00Z"))
        );
    }
}

#[test]
fn day_of_week_zero_and_seven_are_sunday() {
    // 2027-06-06 is a Sunday, 2027-06-07 a Monday.
    let from = utc("2027-06-02T00:00:00Z");
    for expr in ["0 2 * * 0", "0 2 * * 7", "0 2 * * sun", "0 2 * * SUN"] {
        assert_eq!(
            sched(expr, "UTC").next_after(from),
            Some(utc("2027-06-06T02:00:00Z")),
            "{expr}"
        );
    }
    assert_eq!(
        sched("0 2 * * 1", "UTC").next_after(from),
        Some(utc("2027-06-07T02:00:00Z"))
    );
    // Friday to Sunday (5-7) and Monday to Friday (1-5).
    let fri_sun = sched("0 0 * * 5-7", "UTC");
    assert_eq!(
        slots(&fri_sun, "2027-06-01T00:00:00Z", "2027-06-08T00:00:00Z"),
        [
            "2027-06-04T00:00:00+00:00",
            "2027-06-05T00:00:00+00:00",
            "2027-06-06T00:00:00+00:00"
        ]
    );
    let weekdays = sched("0 0 * * mon-fri", "UTC");
    assert_eq!(
        weekdays
            .slots_between(utc("2027-06-01T00:00:00Z"), utc("2027-06-08T00:00:00Z"))
            .count(),
        5
    );
}

#[test]
fn day_of_month_or_day_of_week_when_both_are_restricted() {
    // The 1st of the month or a Sunday (Vixie cron); June 2027: Sundays 6, 13, 20, 27.
    let s = sched("0 0 1 * 0", "UTC");
    assert_eq!(
        slots(&s, "2027-05-31T12:00:00Z", "2027-06-14T00:00:00Z"),
        [
            "2027-06-01T00:00:00+00:00",
            "2027-06-06T00:00:00+00:00",
            "2027-06-13T00:00:00+00:00"
        ]
    );
}

#[test]
fn steps_lists_and_names() {
    let s = sched("*/20 9-10 * jan,jun *", "UTC");
    assert_eq!(
        slots(&s, "2027-06-01T00:00:00Z", "2027-06-01T23:00:00Z"),
        [
            "2027-06-01T09:00:00+00:00",
            "2027-06-01T09:20:00+00:00",
            "2027-06-01T09:40:00+00:00",
            "2027-06-01T10:00:00+00:00",
            "2027-06-01T10:20:00+00:00",
            "2027-06-01T10:40:00+00:00"
        ]
    );
}

#[test]
fn invalid_input_is_a_clear_error() {
    let err = |e: &str| Schedule::parse(e, Some("UTC")).unwrap_err().to_string();
    assert_eq!(
        err("0 2 * *"),
        r#"schedule "0 2 * *" has 4 fields; expected 5 (minute hour day-of-month month day-of-week)"#
    );
    assert_eq!(
        err("61 2 * * *"),
        r#"schedule "61 2 * * *": minute "61": 61 is out of range 0-59"#
    );
    assert_eq!(
        err("0 2 * * 8"),
        r#"schedule "0 2 * * 8": day of week "8": 8 is out of range 0-7"#
    );
    assert_eq!(
        err("0 2 * * funday"),
        r#"schedule "0 2 * * funday": day of week "funday": "funday" is neither a number nor a name (sun, mon, tue, wed, thu, fri, sat)"#
    );
    assert_eq!(
        err("0 5-2 * * *"),
        r#"schedule "0 5-2 * * *": hour "5-2": range 5-2 goes backwards"#
    );
    assert_eq!(
        err("*/0 * * * *"),
        r#"schedule "*/0 * * * *": minute "*/0": a step of 0"#
    );
    assert_eq!(
        err("0 0 31 2 *"),
        r#"schedule "0 0 31 2 *" never matches a date"#
    );
    assert!(err("@reboot").starts_with(r#"unknown schedule "@reboot""#));
    assert!(err("  ").starts_with("empty schedule"));
    assert_eq!(
        Schedule::parse("@daily", Some("Europe/Parsi"))
            .unwrap_err()
            .to_string(),
        r#"unknown time zone "Europe/Parsi": expected an IANA name like Europe/Paris or UTC"#
    );
}

#[test]
fn leap_day() {
    let s = sched("0 0 29 2 *", "UTC");
    assert_eq!(
        s.next_after(utc("2027-03-01T00:00:00Z")),
        Some(utc("2028-02-29T00:00:00Z"))
    );
}

#[test]
fn zone_names_from_paths() {
    assert_eq!(
        zone_from_path("/usr/share/zoneinfo/Europe/Paris"),
        "Europe/Paris"
    );
    assert_eq!(zone_from_path("Etc/UTC"), "Etc/UTC");
    assert_eq!(sched("@daily", "Europe/Paris").zone(), "Europe/Paris");
}

/// Why berth walks local time itself: the `cron` crate alone, walking zoned time, skips a time
/// in the gap and runs a fixed time twice in the repeated hour. If a new version fixes this,
/// this test says so (and the mapping here can be revisited).
#[test]
fn the_cron_crate_alone_gets_dst_wrong() {
    use std::str::FromStr;
    let paris: Tz = "Europe/Paris".parse().unwrap();
    let crate_schedule = cron::Schedule::from_str("0 30 2 * * *").unwrap();
    let from = utc("2027-03-27T12:00:00Z").with_timezone(&paris);
    let next = crate_schedule
        .after(&from)
        .next()
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(next, utc("2027-03-29T00:30:00Z"), "the 28th is skipped");
    let from = utc("2027-10-30T12:00:00Z").with_timezone(&paris);
    let two: Vec<_> = crate_schedule
        .after(&from)
        .take(2)
        .map(|t| t.with_timezone(&Utc))
        .collect();
    assert_eq!(
        two,
        [utc("2027-10-31T00:30:00Z"), utc("2027-10-31T01:30:00Z")],
        "02:30 runs twice"
    );
}
