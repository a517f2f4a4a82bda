//! `kind: Job`, `kind: Backup`, `kind: Prune` and `kind: Defaults`. Every key is checked and
//! located; references to stacks' services, volumes and networks (`STACK/NAME`, where STACK is
//! a stack's name or its folder relative to the config root: `apps/blog/db`) are resolved
//! against the loaded stacks here, so a typo is an error at the reference.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::kinds::Doc;
use super::read::*;
use super::refs::{Refs, mount, network, service_ref, volume_ref};
use super::values::*;
use crate::compose::read::Cx;
use crate::compose::yaml::{Node, Pos};
use crate::model::jobs::{
    BackupSpec, CheckSpec, Concurrency, ContainerTask, DEFAULT_CATCH_UP, DEFAULT_HISTORY,
    DEFAULT_KEEP_COMMITS, DEFAULT_MIN_SIZE_RATIO, DEFAULT_TIMEOUT, Defaults, Dump, ExecTask,
    JobSpec, Missed, Mount, PruneSpec, Retention, ServiceRef, Task, VolumeRef,
};
use crate::model::{Logging, Secret};

/// The keys of each job kind: these, and [`JOB_COMMON`].
pub const JOB_KEYS: &[&str] = &["run"];
pub const BACKUP_KEYS: &[&str] = &[
    "repository",
    "password",
    "environment",
    "volumes",
    "paths",
    "dumps",
    "stop",
    "retention",
    "check",
    "image",
    "min_size_ratio",
];
pub const PRUNE_KEYS: &[&str] = &["keep_commits"];
/// Keys every job kind has.
pub const JOB_COMMON: &[&str] = &[
    "kind",
    "name",
    "schedule",
    "timezone",
    "concurrency",
    "timeout",
    "retries",
    "missed",
    "catch_up",
    "history",
];

pub const RUN_KEYS: &[&str] = &["exec", "container"];
pub const EXEC_KEYS: &[&str] = &["service", "command"];
pub const CONTAINER_KEYS: &[&str] = &["image", "command", "volumes", "environment", "networks"];

pub const DUMP_KEYS: &[&str] = &["service", "command", "file"];
pub const RETENTION_KEYS: &[&str] = &["last", "hourly", "daily", "weekly", "monthly", "yearly"];
pub const CHECK_KEYS: &[&str] = &["schedule", "read_data_subset"];

pub const DEFAULTS_KEYS: &[&str] = &["kind", "logging"];
pub const LOGGING_KEYS: &[&str] = &["driver", "options"];

/// The image that runs restic when a Backup names none.
pub const DEFAULT_RESTIC_IMAGE: &str = "restic/restic:0.17.3";

/// restic's repository location prefixes (anything else must be an absolute host path).
const REPOSITORY_SCHEMES: &[&str] = &[
    "sftp:", "rest:", "s3:", "b2:", "azure:", "gs:", "swift:", "rclone:",
];

/// `kind: Job`.
pub(super) fn job(cx: &mut Cx, d: &Doc, r: &Refs) -> Option<JobSpec> {
    check_keys(cx, d.m, "", "Job", &[JOB_COMMON, JOB_KEYS].concat());
    let before = cx.diags.len();
    let task = match get(d.m, "run") {
        None => {
            cx.err(
                d.pos,
                "",
                "a Job needs `run:` with `exec: {service: STACK/SERVICE, command: [...]}` or `container: {image: ..., command: [...]}`",
            );
            None
        }
        Some(n) => run(cx, n, r),
    };
    let job = common(cx, d, "Job", None);
    (cx.diags.len() == before).then_some(())?;
    let mut job = job?;
    job.task = task?;
    Some(job)
}

/// `kind: Backup`: the backup job, and its `check` job (`<name>/check`) when it has one.
pub(super) fn backup(cx: &mut Cx, d: &Doc, r: &Refs) -> Option<(JobSpec, Option<JobSpec>)> {
    check_keys(cx, d.m, "", "Backup", &[JOB_COMMON, BACKUP_KEYS].concat());
    let before = cx.diags.len();
    let job = common(cx, d, "Backup", None);
    let repository = required_text(
        cx,
        d,
        "Backup",
        "repository",
        "a host path or a restic URL (rest:, s3:, sftp:, b2: ...)",
    )
    .and_then(|(s, pos)| repository(cx, &s, pos).then_some(s));
    let password = required_text(
        cx,
        d,
        "Backup",
        "password",
        "the repository's password, e.g. ${RESTIC_PASSWORD}",
    )
    .map(|(s, _)| s);
    let environment = get(d.m, "environment")
        .map(|n| env_map(cx, n, "environment"))
        .unwrap_or_default();
    let volumes: Vec<VolumeRef> = list(cx, d.m, "volumes")
        .iter()
        .filter_map(|(s, pos)| volume_ref(cx, r, s, *pos, "volumes"))
        .collect();
    let paths: Vec<PathBuf> = match get(d.m, "paths") {
        Some(n) => seq(cx, n, "paths")
            .iter()
            .filter_map(|i| abs_path(cx, i, "paths"))
            .collect(),
        None => Vec::new(),
    };
    let dumps = match get(d.m, "dumps") {
        Some(n) => dumps(cx, n, r),
        None => Vec::new(),
    };
    let stop: Vec<ServiceRef> = list(cx, d.m, "stop")
        .iter()
        .filter_map(|(s, pos)| service_ref(cx, r, s, *pos, "stop"))
        .collect();
    if volumes.is_empty() && paths.is_empty() && dumps.is_empty() && cx.diags.len() == before {
        cx.err(
            d.pos,
            "",
            "a Backup needs something to save: `volumes`, `paths` or `dumps`",
        );
    }
    let retention = match get(d.m, "retention") {
        Some(n) => retention(cx, n),
        None => Some(Retention::default()),
    };
    let check = get(d.m, "check").and_then(|n| check(cx, n));
    let image = match get(d.m, "image") {
        Some(n) => text(cx, n, "image"),
        None => Some(DEFAULT_RESTIC_IMAGE.to_string()),
    };
    let min_size_ratio = match get(d.m, "min_size_ratio") {
        Some(n) => ratio(cx, n, "min_size_ratio"),
        None => Some(DEFAULT_MIN_SIZE_RATIO),
    };
    (cx.diags.len() == before).then_some(())?;
    let mut job = job?;
    let check = check.map(|c| {
        let mut cj = job.clone();
        cj.name = format!("{}/check", job.name);
        cj.schedule = c.schedule.clone();
        cj.task = Task::Check {
            backup: job.name.clone(),
            read_data_subset: c.read_data_subset.clone(),
        };
        cj.retries = 0;
        (cj, c)
    });
    job.task = Task::Backup(Box::new(BackupSpec {
        name: job.name.clone(),
        repository: Secret::new(repository?),
        password: Secret::new(password?),
        environment,
        volumes,
        paths,
        dumps,
        stop,
        retention: retention?,
        check: check.as_ref().map(|(_, c)| c.clone()),
        image: image?,
        min_size_ratio: min_size_ratio?,
    }));
    Some((job, check.map(|(j, _)| j)))
}

/// `kind: Prune`: images no container uses and no recent commit references.
pub(super) fn prune(cx: &mut Cx, d: &Doc) -> Option<JobSpec> {
    check_keys(cx, d.m, "", "Prune", &[JOB_COMMON, PRUNE_KEYS].concat());
    let before = cx.diags.len();
    let job = common(cx, d, "Prune", Some("prune"));
    let keep_commits = match get(d.m, "keep_commits") {
        Some(n) => count(cx, n, "keep_commits").map(|n| n as usize),
        None => Some(DEFAULT_KEEP_COMMITS),
    };
    (cx.diags.len() == before).then_some(())?;
    let mut job = job?;
    job.task = Task::Prune(PruneSpec {
        keep_commits: keep_commits?,
    });
    Some(job)
}

/// `kind: Defaults`.
pub(super) fn defaults(cx: &mut Cx, d: &Doc) -> Option<Defaults> {
    check_keys(cx, d.m, "", "Defaults", DEFAULTS_KEYS);
    let before = cx.diags.len();
    let logging = get(d.m, "logging").and_then(|n| {
        let m = as_map(cx, n, "logging")?;
        check_keys(cx, m, "logging", "logging", LOGGING_KEYS);
        let driver = get(m, "driver").and_then(|n| text(cx, n, "logging.driver"));
        let options = get(m, "options")
            .map(|n| str_map(cx, n, "logging.options"))
            .unwrap_or_default();
        Some(Logging { driver, options })
    });
    if get(d.m, "logging").is_none() {
        cx.err(
            d.pos,
            "",
            "a Defaults document needs `logging:` (e.g. {driver: json-file, options: {max-size: 10m, max-file: \"3\"}})",
        );
    }
    (cx.diags.len() == before).then(|| Defaults {
        logging,
        origin: d.origin.clone(),
    })
}

/// The keys every job kind shares; the task is filled in by the caller.
fn common(cx: &mut Cx, d: &Doc, kind: &str, default_name: Option<&str>) -> Option<JobSpec> {
    let before = cx.diags.len();
    let name = match (get(d.m, "name"), default_name) {
        (Some(n), _) => text(cx, n, "name").and_then(|s| match name_problem(&s) {
            None => Some(s),
            Some(p) => {
                cx.err(n.pos, "name", p);
                None
            }
        }),
        (None, Some(def)) => Some(def.to_string()),
        (None, None) => {
            cx.err(d.pos, "", format!("a {kind} needs `name`"));
            None
        }
    };
    let timezone = get(d.m, "timezone").and_then(|n| {
        let tz = text(cx, n, "timezone")?;
        match sched::timezone_problem(&tz) {
            None => Some(tz),
            Some(p) => {
                cx.err(n.pos, "timezone", p);
                None
            }
        }
    });
    let schedule = match get(d.m, "schedule") {
        None => {
            cx.err(
                d.pos,
                "",
                format!(
                    "a {kind} needs `schedule` (5-field cron such as \"0 3 * * *\", or @daily)"
                ),
            );
            None
        }
        Some(n) => schedule(cx, n, "schedule"),
    };
    let concurrency = match get(d.m, "concurrency") {
        Some(n) => choice(
            cx,
            n,
            "concurrency",
            &[
                ("forbid", Concurrency::Forbid),
                ("replace", Concurrency::Replace),
                ("allow", Concurrency::Allow),
            ],
        ),
        None => Some(Concurrency::Forbid),
    };
    let missed = match get(d.m, "missed") {
        Some(n) => choice(
            cx,
            n,
            "missed",
            &[("run_once", Missed::RunOnce), ("skip", Missed::Skip)],
        ),
        None => Some(Missed::RunOnce),
    };
    let timeout = opt_duration(cx, d, "timeout", DEFAULT_TIMEOUT);
    let catch_up = opt_duration(cx, d, "catch_up", DEFAULT_CATCH_UP);
    let retries = match get(d.m, "retries") {
        Some(n) => count(cx, n, "retries"),
        None => Some(0),
    };
    let history = match get(d.m, "history") {
        Some(n) => count(cx, n, "history").and_then(|h| {
            if h == 0 {
                cx.err(
                    n.pos,
                    "history",
                    "must be at least 1 (the last run is what `berth jobs` shows)",
                );
                None
            } else {
                Some(h as usize)
            }
        }),
        None => Some(DEFAULT_HISTORY),
    };
    (cx.diags.len() == before).then_some(())?;
    Some(JobSpec {
        name: name?,
        schedule: schedule?,
        timezone,
        task: Task::Prune(PruneSpec { keep_commits: 0 }),
        concurrency: concurrency?,
        timeout: timeout?,
        retries: retries?,
        missed: missed?,
        catch_up: catch_up?,
        history: history?,
        origin: d.origin.clone(),
    })
}

/// A job name: used in metric labels, status contexts and file names.
fn name_problem(s: &str) -> Option<String> {
    let ok = s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (!ok).then(|| {
        format!("invalid name {s:?}: letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 63 characters")
    })
}

fn schedule(cx: &mut Cx, n: &Node, path: &str) -> Option<String> {
    let s = text(cx, n, path)?;
    match sched::schedule_problem(&s) {
        None => Some(s.split_whitespace().collect::<Vec<_>>().join(" ")),
        Some(p) => {
            cx.err(n.pos, path, p);
            None
        }
    }
}

/// `run:` — exactly one of `exec` and `container`.
fn run(cx: &mut Cx, n: &Node, r: &Refs) -> Option<Task> {
    let m = as_map(cx, n, "run")?;
    check_keys(cx, m, "run", "run", RUN_KEYS);
    match (get(m, "exec"), get(m, "container")) {
        (Some(_), Some(_)) => {
            let later = key_pos(m, "exec").max(key_pos(m, "container"));
            cx.err(
                later.unwrap_or(n.pos),
                "run",
                "set one of `exec` and `container`, not both",
            );
            None
        }
        (None, None) => {
            cx.err(n.pos, "run", "needs `exec: {service: STACK/SERVICE, command: [...]}` or `container: {image: ..., command: [...]}`");
            None
        }
        (Some(e), None) => {
            let m = as_map(cx, e, "run.exec")?;
            check_keys(cx, m, "run.exec", "run.exec", EXEC_KEYS);
            let service = match get(m, "service") {
                Some(s) => text(cx, s, "run.exec.service")
                    .and_then(|t| service_ref(cx, r, &t, s.pos, "run.exec.service")),
                None => {
                    cx.err(e.pos, "run.exec", "needs `service: STACK/SERVICE`");
                    None
                }
            };
            let command = required_command(cx, m, e.pos, "run.exec");
            Some(Task::Exec(ExecTask {
                service: service?,
                command: command?,
            }))
        }
        (None, Some(c)) => {
            let m = as_map(cx, c, "run.container")?;
            check_keys(cx, m, "run.container", "run.container", CONTAINER_KEYS);
            let image = match get(m, "image") {
                Some(i) => text(cx, i, "run.container.image"),
                None => {
                    cx.err(c.pos, "run.container", "needs `image`");
                    None
                }
            };
            let command = match get(m, "command") {
                Some(n) => command(cx, n, "run.container.command"),
                None => Some(Vec::new()),
            };
            let volumes: Vec<Mount> = list(cx, m, "volumes")
                .iter()
                .filter_map(|(s, pos)| mount(cx, r, s, *pos))
                .collect();
            let environment = get(m, "environment")
                .map(|n| env_map(cx, n, "run.container.environment"))
                .unwrap_or_default();
            let networks: Vec<String> = list(cx, m, "networks")
                .iter()
                .filter_map(|(s, pos)| network(cx, r, s, *pos))
                .collect();
            Some(Task::Container(ContainerTask {
                image: image?,
                command: command?,
                volumes,
                environment,
                networks,
            }))
        }
    }
}

fn required_command(cx: &mut Cx, m: &Map, at: Pos, path: &str) -> Option<Vec<String>> {
    match get(m, "command") {
        Some(n) => command(cx, n, &format!("{path}.command")),
        None => {
            cx.err(at, path, "needs `command`");
            None
        }
    }
}

fn dumps(cx: &mut Cx, n: &Node, r: &Refs) -> Vec<Dump> {
    let mut out: Vec<Dump> = Vec::new();
    let mut files: BTreeSet<String> = BTreeSet::new();
    for item in seq(cx, n, "dumps") {
        let Some(m) = as_map(cx, item, "dumps") else {
            continue;
        };
        check_keys(cx, m, "dumps", "dumps", DUMP_KEYS);
        let service = match get(m, "service") {
            Some(s) => text(cx, s, "dumps.service")
                .and_then(|t| service_ref(cx, r, &t, s.pos, "dumps.service")),
            None => {
                cx.err(
                    item.pos,
                    "dumps",
                    "each dump needs `service: STACK/SERVICE`",
                );
                None
            }
        };
        let command = required_command(cx, m, item.pos, "dumps");
        let file = match get(m, "file") {
            Some(f) => text(cx, f, "dumps.file").and_then(|s| {
                let ok =
                    !s.is_empty() && !s.contains('/') && s != "." && s != ".." && !s.contains('\0');
                if !ok {
                    cx.err(
                        f.pos,
                        "dumps.file",
                        format!("must be a file name without `/`, found {s:?}"),
                    );
                    None
                } else if !files.insert(s.clone()) {
                    cx.err(
                        f.pos,
                        "dumps.file",
                        format!("`{s}` is the file of another dump of this backup"),
                    );
                    None
                } else {
                    Some(s)
                }
            }),
            None => {
                cx.err(
                    item.pos,
                    "dumps",
                    "each dump needs `file` (its name in the snapshot, e.g. blog.sql)",
                );
                None
            }
        };
        if let (Some(service), Some(command), Some(file)) = (service, command, file) {
            out.push(Dump {
                service,
                command,
                file,
            });
        }
    }
    out
}

fn retention(cx: &mut Cx, n: &Node) -> Option<Retention> {
    let m = as_map(cx, n, "retention")?;
    let before = cx.diags.len();
    check_keys(cx, m, "retention", "retention", RETENTION_KEYS);
    let mut r = Retention::default();
    for (key, slot) in [
        ("last", &mut r.last),
        ("hourly", &mut r.hourly),
        ("daily", &mut r.daily),
        ("weekly", &mut r.weekly),
        ("monthly", &mut r.monthly),
        ("yearly", &mut r.yearly),
    ] {
        if let Some(v) = get(m, key).and_then(|v| count(cx, v, &format!("retention.{key}"))) {
            *slot = v;
        }
    }
    if cx.diags.len() == before && r.is_empty() {
        cx.err(n.pos, "retention", "keeps nothing: set at least one of last, hourly, daily, weekly, monthly, yearly (or leave `retention` out to keep every snapshot)");
        return None;
    }
    (cx.diags.len() == before).then_some(r)
}

fn check(cx: &mut Cx, n: &Node) -> Option<CheckSpec> {
    let m = as_map(cx, n, "check")?;
    check_keys(cx, m, "check", "check", CHECK_KEYS);
    let schedule = match get(m, "schedule") {
        Some(s) => schedule(cx, s, "check.schedule"),
        None => {
            cx.err(n.pos, "check", "needs `schedule` (e.g. \"0 2 * * 0\")");
            None
        }
    };
    let subset = get(m, "read_data_subset").and_then(|s| {
        let v = text(cx, s, "check.read_data_subset")?;
        if subset_ok(&v) {
            Some(v)
        } else {
            cx.err(
                s.pos,
                "check.read_data_subset",
                format!(
                    "invalid subset {v:?}: a percentage (5%), a part n/t (1/7) or a size (500M)"
                ),
            );
            None
        }
    });
    Some(CheckSpec {
        schedule: schedule?,
        read_data_subset: subset,
    })
}

/// restic's `--read-data-subset` forms: `5%` / `2.5%` (0 < p <= 100), `n/t` (1 <= n <= t), a
/// size `500M` / `2G` (K, M, G, T).
fn subset_ok(v: &str) -> bool {
    if let Some(p) = v.strip_suffix('%') {
        return p.parse::<f64>().is_ok_and(|p| p > 0.0 && p <= 100.0);
    }
    if let Some((n, t)) = v.split_once('/') {
        return matches!((n.parse::<u32>(), t.parse::<u32>()), (Ok(n), Ok(t)) if n >= 1 && n <= t);
    }
    let Some(num) = v.strip_suffix(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']) else {
        return false;
    };
    num.parse::<u64>().is_ok_and(|n| n > 0)
}

/// A host path, or a restic URL with a known scheme. The value is never echoed (it may hold
/// credentials).
fn repository(cx: &mut Cx, s: &str, pos: Pos) -> bool {
    let ok = (s.starts_with('/') && !s.contains("/../"))
        || REPOSITORY_SCHEMES.iter().any(|p| s.starts_with(p));
    if !ok {
        cx.err(
            pos,
            "repository",
            format!(
                "must be an absolute host path or a restic URL starting with one of {}",
                REPOSITORY_SCHEMES.join(" ")
            ),
        );
    }
    ok
}

/// Schedule and zone checks: the scheduler's own parser, so what loads is what runs.
mod sched {
    use crate::jobs::schedule::{Schedule, parse_zone};

    pub fn schedule_problem(s: &str) -> Option<String> {
        Schedule::parse_in(s, chrono_tz::UTC)
            .err()
            .map(|e| e.to_string())
    }

    pub fn timezone_problem(tz: &str) -> Option<String> {
        parse_zone(tz).err().map(|e| e.to_string())
    }
}
