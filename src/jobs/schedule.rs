//! Job schedules: 5-field cron (`m h dom mon dow`) or `@hourly` / `@daily` / `@midnight` /
//! `@weekly` / `@monthly` / `@yearly` / `@annually`, in an IANA zone (or the host's), turned
//! into instants with Vixie cron's rules.
//!
//! The `cron` crate walks the fields; berth walks *local wall-clock time* with it (the local
//! time passed as if it were UTC) and maps each local slot to an instant itself, because the
//! crate, walking a zoned time, gets three things wrong for a 5-field crontab:
//! - a local time inside a spring-forward gap is skipped (`LocalResult::None => continue`): a
//!   02:30 job does not run at all that day. Here it runs once, at the first instant after the
//!   gap (03:00 local), as Vixie cron does;
//! - a local time that happens twice (fall-back) is returned twice: a 02:30 job runs twice. Here a
//!   job with a fixed minute and hour runs at the first occurrence only, while one whose minute
//!   or hour field starts with `*` (`0 * * * *`, `*/5 * * * *`) runs in the repeated hour too —
//!   every real hour;
//! - day of week: the crate counts 1..7 from Sunday; crontab counts 0..7 from Sunday (0 and 7
//!   both Sunday), and a day matches when *either* restricted day-of-month or day-of-week
//!   matches, where the crate requires both. Fields are parsed here and handed to the crate as
//!   explicit lists; the OR is two crate schedules.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Duration as ChronoDuration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A schedule or time zone that cannot be used, said for people (the loader adds `file:line:col`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "empty schedule: expected 5 cron fields (minute hour day-of-month month day-of-week) or @hourly/@daily/@weekly/@monthly/@yearly"
    )]
    Empty,
    #[error(
        "schedule {expr:?} has {found} fields; expected 5 (minute hour day-of-month month day-of-week)"
    )]
    FieldCount { expr: String, found: usize },
    #[error(
        "unknown schedule {name:?}: expected @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually"
    )]
    UnknownMacro { name: String },
    #[error("schedule {expr:?}: {field} {value:?}: {message}")]
    Field {
        expr: String,
        field: &'static str,
        value: String,
        message: String,
    },
    #[error("schedule {expr:?} never matches a date")]
    Never { expr: String },
    #[error("unknown time zone {name:?}: expected an IANA name like Europe/Paris or UTC")]
    UnknownZone { name: String },
    #[error(
        "the host's time zone {name:?} (from {from}) is not an IANA zone berth knows; set `timezone:`"
    )]
    HostZone { name: String, from: &'static str },
}

/// A parsed schedule in its zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    tz: Tz,
    /// One crate schedule, or two when day-of-month and day-of-week are both restricted.
    walks: Vec<cron::Schedule>,
    /// The minute or hour field starts with `*`: the repeated hour of a fall-back runs too.
    wildcard: bool,
}

/// The larger offset change a slot is looked for around (DST moves are 1 h, at most 2 h).
const MARGIN_HOURS: i64 = 3;

struct FieldDef {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [FieldDef; 5] = [
    FieldDef {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    FieldDef {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    FieldDef {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    FieldDef {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    },
    // 7 is Sunday too (folded to 0 below).
    FieldDef {
        name: "day of week",
        min: 0,
        max: 7,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    },
];

impl Schedule {
    /// Parses `expr` in `timezone` (`None`: the host's zone, see [`host_zone`]).
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz = match timezone {
            Some(name) => parse_zone(name)?,
            None => host_zone()?,
        };
        Schedule::parse_in(expr, tz)
    }

    /// Parses `expr` in the zone `tz`.
    pub fn parse_in(expr: &str, tz: Tz) -> Result<Schedule, ScheduleError> {
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let fields: Vec<&str> = match trimmed {
            "@hourly" => vec!["0", "*", "*", "*", "*"],
            "@daily" | "@midnight" => vec!["0", "0", "*", "*", "*"],
            "@weekly" => vec!["0", "0", "*", "*", "0"],
            "@monthly" => vec!["0", "0", "1", "*", "*"],
            "@yearly" | "@annually" => vec!["0", "0", "1", "1", "*"],
            m if m.starts_with('@') => {
                return Err(ScheduleError::UnknownMacro {
                    name: m.to_string(),
                });
            }
            _ => trimmed.split_whitespace().collect(),
        };
        if fields.len() != 5 {
            return Err(ScheduleError::FieldCount {
                expr: trimmed.to_string(),
                found: fields.len(),
            });
        }
        let mut sets = Vec::with_capacity(5);
        for (value, def) in fields.iter().zip(FIELDS.iter()) {
            let set = expand(value, def).map_err(|message| ScheduleError::Field {
                expr: trimmed.to_string(),
                field: def.name,
                value: value.to_string(),
                message,
            })?;
            sets.push(set);
        }
        let star = |i: usize| fields[i].starts_with('*');
        let list = |i: usize, shift: u32| -> String {
            if fields[i] == "*" {
                return "*".to_string();
            }
            let set: BTreeSet<u32> = sets[i].iter().map(|v| v + shift).collect();
            set.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
        };
        // Day of week for the crate: 1..7 from Sunday; 7 (Sunday) folded to 0 first.
        let dow: BTreeSet<u32> = sets[4].iter().map(|d| d % 7).collect();
        let dow_list = if fields[4] == "*" || dow.len() == 7 {
            "*".to_string()
        } else {
            dow.iter()
                .map(|d| (d + 1).to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let (m, h, dom, mon) = (list(0, 0), list(1, 0), list(2, 0), list(3, 0));
        let sources = if !star(2) && !star(4) {
            // Vixie: both restricted → either matches.
            vec![
                format!("0 {m} {h} {dom} {mon} *"),
                format!("0 {m} {h} * {mon} {dow_list}"),
            ]
        } else {
            vec![format!("0 {m} {h} {dom} {mon} {dow_list}")]
        };
        let mut walks = Vec::new();
        for source in sources {
            let walk = cron::Schedule::from_str(&source).map_err(|e| ScheduleError::Field {
                expr: trimmed.to_string(),
                field: "schedule",
                value: source.clone(),
                message: e.to_string(),
            })?;
            walks.push(walk);
        }
        let schedule = Schedule {
            expr: trimmed.to_string(),
            tz,
            walks,
            wildcard: star(0) || star(1),
        };
        // `30 2 31 2 *`: February 31st never comes (eight years cover every leap day).
        let probe = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if let Some(probe) = probe {
            let next_local = schedule.next_local(probe.naive_utc());
            match next_local {
                Some(n) if n < probe.naive_utc() + ChronoDuration::days(8 * 366) => {}
                _ => {
                    return Err(ScheduleError::Never {
                        expr: schedule.expr,
                    });
                }
            }
        }
        Ok(schedule)
    }

    /// The schedule as written (trimmed).
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The zone's IANA name.
    pub fn zone(&self) -> &str {
        self.tz.name()
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz).naive_local();
        let mut cursor = local - ChronoDuration::hours(MARGIN_HOURS) - ChronoDuration::seconds(1);
        let mut best: Option<DateTime<Utc>> = None;
        // Local slots map to instants in order (earliest occurrence; a gap's slots to its end),
        // so the first one past `t` is the answer — unless a repeated hour's second occurrence
        // (wildcard jobs only) comes before it.
        for _ in 0..100_000 {
            let slot = self.next_local(cursor)?;
            let (first, second) = self.instants(slot)?;
            if let Some(second) = second.filter(|s| *s > t) {
                best = Some(best.map_or(second, |b| b.min(second)));
            }
            if first > t {
                return Some(best.map_or(first, |b| b.min(first)));
            }
            if best.is_some_and(|b| first >= b) {
                return best;
            }
            cursor = slot;
        }
        best
    }

    /// Every slot in `(from, to]`, in order.
    pub fn slots_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut at = from;
        std::iter::from_fn(move || {
            let next = self.next_after(at)?;
            if next > to {
                return None;
            }
            at = next;
            Some(next)
        })
    }

    /// The next local wall-clock slot strictly after `local`.
    fn next_local(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        let at = local.and_utc();
        self.walks
            .iter()
            .filter_map(|w| w.after(&at).next())
            .min()
            .map(|d| d.naive_utc())
    }

    /// The instant(s) a local slot stands for: its first occurrence (a gap's slot: the end of
    /// the gap) and, for wildcard jobs, the second occurrence of a repeated time.
    fn instants(&self, slot: NaiveDateTime) -> Option<(DateTime<Utc>, Option<DateTime<Utc>>)> {
        match self.tz.from_local_datetime(&slot) {
            LocalResult::Single(t) => Some((t.with_timezone(&Utc), None)),
            LocalResult::Ambiguous(a, b) => Some((
                a.with_timezone(&Utc),
                self.wildcard.then(|| b.with_timezone(&Utc)),
            )),
            LocalResult::None => {
                // In a gap: the first local minute that exists again (gaps are an hour, at most
                // a day when a zone skipped one).
                let mut probe = slot;
                for _ in 0..(26 * 60) {
                    probe += ChronoDuration::minutes(1);
                    if let Some(t) = self.tz.from_local_datetime(&probe).earliest() {
                        return Some((t.with_timezone(&Utc), None));
                    }
                }
                None
            }
        }
    }
}

/// One field → its values (`*`, `n`, `a-b`, `*/s`, `a-b/s`, `a/s`, lists; names for months and
/// days of week).
fn expand(field: &str, def: &FieldDef) -> Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    if field.is_empty() {
        return Err("empty field".into());
    }
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("step {s:?} is not a number"))?;
                if step == 0 {
                    return Err("a step of 0".into());
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (def.min, if def.max == 7 { 6 } else { def.max })
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a, def)?, value(b, def)?);
            if a > b {
                return Err(format!("range {range} goes backwards"));
            }
            (a, b)
        } else {
            let a = value(range, def)?;
            // `a/s`: from a to the end, as cronie reads it.
            (a, if step.is_some() { def.max } else { a })
        };
        let step = step.unwrap_or(1) as usize;
        out.extend((lo..=hi).step_by(step));
    }
    Ok(out)
}

fn value(s: &str, def: &FieldDef) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = def.names.iter().position(|n| *n == lower) {
        let first = if def.max == 7 { 0 } else { def.min };
        return Ok(first + i as u32);
    }
    let n: u32 = s.parse().map_err(|_| {
        if def.names.is_empty() {
            format!("{s:?} is not a number")
        } else {
            format!(
                "{s:?} is neither a number nor a name ({})",
                def.names.join(", ")
            )
        }
    })?;
    if n < def.min || n > def.max {
        return Err(format!("{n} is out of range {}-{}", def.min, def.max));
    }
    Ok(n)
}

/// An IANA zone by name.
pub fn parse_zone(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name).map_err(|_| ScheduleError::UnknownZone {
        name: name.to_string(),
    })
}

/// The host's zone: `TZ` (`Europe/Paris`, `:Europe/Paris`, a path under `zoneinfo/`), else the
/// `/etc/localtime` link's target, else `/etc/timezone`, else UTC (what libc does without any).
pub fn host_zone() -> Result<Tz, ScheduleError> {
    if let Some(tz) = std::env::var("TZ").ok().filter(|tz| !tz.is_empty()) {
        let name = zone_from_path(tz.trim_start_matches(':'));
        return Tz::from_str(name).map_err(|_| ScheduleError::HostZone {
            name: tz.clone(),
            from: "TZ",
        });
    }
    if let Ok(target) = std::fs::read_link("/etc/localtime") {
        let target = target.to_string_lossy().into_owned();
        let name = zone_from_path(&target);
        return Tz::from_str(name).map_err(|_| ScheduleError::HostZone {
            name: target.clone(),
            from: "/etc/localtime",
        });
    }
    if let Ok(text) = std::fs::read_to_string("/etc/timezone") {
        let name = text.trim();
        if !name.is_empty() {
            return Tz::from_str(name).map_err(|_| ScheduleError::HostZone {
                name: name.to_string(),
                from: "/etc/timezone",
            });
        }
    }
    Ok(Tz::UTC)
}

fn zone_from_path(s: &str) -> &str {
    match s.find("zoneinfo/") {
        Some(i) => &s[i + "zoneinfo/".len()..],
        None => s,
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
