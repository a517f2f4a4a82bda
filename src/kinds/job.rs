//! `kind: Job`, `Backup`, `Prune`: the job table (`jobs:schedule`). The scheduler runs what
//! the last apply recorded in the state dir, so the whole table is one change, recorded at
//! once; the reasons list each job added, changed or removed. Comparing digests (secrets as
//! their digests) means a changed password changes the job without showing it.

use super::{Context, Planned};
use crate::jobs::schedule::Schedule;
use crate::model::jobs::{JobSpec, RecordedJob};
use crate::plan::{Addr, Change, JobsPayload, Kind, Op, Payload, PlanError, Reason};

/// The address of the job table.
pub fn addr() -> Addr {
    Addr::host(Kind::Jobs, "schedule")
}

pub fn plan(ctx: &Context, out: &mut Planned) {
    let desired = &ctx.desired.jobs;
    let observed = &ctx.observed.jobs;
    if let Some(e) = &observed.error {
        if !desired.jobs.is_empty() {
            out.plan.errors.push(PlanError::HostRefused {
                addr: addr().to_string(),
                origin: desired
                    .jobs
                    .values()
                    .next()
                    .map(|j| j.origin.to_string())
                    .unwrap_or_default(),
                reason: e.clone(),
            });
        }
        return;
    }
    let mut reasons = Vec::new();
    for (name, job) in &desired.jobs {
        match observed.recorded.get(name) {
            None => reasons.push(Reason::Job {
                line: format!("+ job {name}: {}{}", describe(job), next(ctx, job)),
            }),
            Some(r) if r.digest != job.digest() => reasons.push(Reason::Job {
                line: format!("~ job {name}: {}{}", changed(r, job), next(ctx, job)),
            }),
            Some(_) => {}
        }
    }
    for (name, r) in &observed.recorded {
        if !desired.jobs.contains_key(name) {
            reasons.push(Reason::Job {
                line: format!(
                    "- job {name} ({} at {:?}): no longer scheduled",
                    r.task, r.schedule
                ),
            });
        }
    }
    if reasons.is_empty() {
        if !desired.jobs.is_empty() {
            out.plan.unchanged_host.push(addr());
        }
        return;
    }
    let op = if desired.jobs.is_empty() {
        Op::Delete
    } else if observed.recorded.is_empty() {
        Op::Create
    } else {
        Op::Update
    };
    out.changes.push(Change {
        addr: addr(),
        op,
        reasons,
        needs: Vec::new(),
        payload: Payload::Jobs(JobsPayload {
            table: desired.clone(),
        }),
    });
}

/// `; next run 2026-12-02 03:00 CET` (in the job's zone), when the plan has a clock.
fn next(ctx: &Context, job: &JobSpec) -> String {
    let Some(clock) = &ctx.opts.clock else {
        return String::new();
    };
    let zone = match job.timezone.as_deref() {
        Some(name) => match crate::jobs::schedule::parse_zone(name) {
            Ok(z) => z,
            Err(_) => return String::new(),
        },
        None => clock.host_zone,
    };
    match Schedule::parse_in(&job.schedule, zone)
        .ok()
        .and_then(|s| s.next_after(clock.now))
    {
        Some(t) => format!(
            "; next run {}",
            t.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z")
        ),
        None => String::new(),
    }
}

/// `backup at "0 3 * * *" (Europe/Paris)`.
fn describe(job: &JobSpec) -> String {
    format!(
        "{} at {:?} ({})",
        job.task.kind(),
        job.schedule,
        job.timezone.as_deref().unwrap_or("the host's time zone")
    )
}

/// What changed, as far as it can be shown: the schedule, the zone, the task kind; else the
/// task's settings (which may hold secrets: not shown).
fn changed(r: &RecordedJob, job: &JobSpec) -> String {
    let mut parts = Vec::new();
    if r.schedule != job.schedule {
        parts.push(format!("schedule {:?} → {:?}", r.schedule, job.schedule));
    }
    if r.timezone != job.timezone {
        let tz = |t: &Option<String>| t.clone().unwrap_or_else(|| "host's zone".into());
        parts.push(format!(
            "time zone {} → {}",
            tz(&r.timezone),
            tz(&job.timezone)
        ));
    }
    if r.task != job.task.kind() {
        parts.push(format!("{} → {}", r.task, job.task.kind()));
    }
    if parts.is_empty() {
        parts.push(format!("{} settings changed", job.task.kind()));
    }
    parts.join(", ")
}

/// What the state dir records of a job: what the next plan compares.
pub fn recorded(job: &JobSpec) -> RecordedJob {
    RecordedJob {
        digest: job.digest(),
        schedule: job.schedule.clone(),
        timezone: job.timezone.clone(),
        task: job.task.kind().to_string(),
    }
}
