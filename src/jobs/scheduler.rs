//! What is due, decided without a clock of its own: [`tick`] takes the state and `now` and
//! writes into the state what it decided (slots dispatched, next runs, the records of runs
//! skipped, missed or interrupted, the markers of runs to start), returning the runs to start
//! or stop. Kubernetes CronJob semantics:
//!
//! - `concurrency: forbid`: a run due while one runs is not started; a Skipped record says so.
//!   `replace`: the running one is stopped, the new one starts. `allow`: both run.
//! - After downtime (a slot more than [`GRACE`] ago that was never dispatched): one Missed record
//!   ("missed run at <time>"); with `missed: run_once` and a missed slot within `catch_up`, one
//!   run — never one per missed slot. `missed: skip`: only the record.
//! - A new or changed schedule starts from now: the next run is computed from it, nothing is
//!   caught up.
//! - The slot is written as dispatched in the same state update that adds the run's marker,
//!   before the run starts: a restart neither repeats nor loses it. A marker whose berth process
//!   is gone is recorded Interrupted.

use chrono::{DateTime, Utc};

use super::schedule::{Schedule, ScheduleError};
use super::state::{JobsState, Owner, RunRecord, Running, Trigger};
use crate::model::jobs::{Concurrency, JobSpec, Missed, RunOutcome, RunResult};

/// How late a slot may be taken and still be on time (timers fire late, a tick takes time).
pub const GRACE: chrono::Duration = chrono::Duration::seconds(30);

/// A run to start or stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start run `run` of `job` (its marker is in the state already).
    Start {
        job: String,
        run: u64,
        trigger: Trigger,
        slot: Option<DateTime<Utc>>,
    },
    /// Stop run `run` of `job` (`concurrency: replace`); it is recorded by whoever runs it.
    Stop {
        job: String,
        run: u64,
        owner: Owner,
        exec_pid: Option<i64>,
    },
}

/// What [`tick`] decided.
#[derive(Debug, Default)]
pub struct Tick {
    pub actions: Vec<Action>,
    /// The earliest next run: when to tick again (`None`: nothing is scheduled).
    pub wake: Option<DateTime<Utc>>,
    /// Records written without a run (skipped, missed, interrupted), for metrics and logs.
    pub recorded: Vec<(String, RunRecord)>,
    /// Jobs whose schedule does not parse (the loader checks them; a hand-edited state may not).
    pub errors: Vec<(String, ScheduleError)>,
}

fn outcome(result: RunResult, reason: String) -> RunOutcome {
    RunOutcome {
        result,
        exit_code: None,
        reason: Some(reason),
        log_tail: String::new(),
        snapshots: Vec::new(),
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Records runs whose berth process is gone (not `me`, not `alive`) as Interrupted; those
/// records.
pub fn reap(
    state: &mut JobsState,
    now: DateTime<Utc>,
    me: &Owner,
    alive: &dyn Fn(&Owner) -> bool,
) -> Vec<(String, RunRecord)> {
    let mut dead = Vec::new();
    for (name, js) in &mut state.jobs {
        js.running.retain(|r| {
            let gone = r.owner != *me && !alive(&r.owner);
            if gone {
                dead.push((name.clone(), r.clone()));
            }
            !gone
        });
    }
    let mut out = Vec::new();
    for (name, r) in dead {
        let record = RunRecord {
            id: r.id,
            trigger: r.trigger,
            slot: r.slot,
            started: r.started,
            ended: now,
            attempts: 1,
            outcome: outcome(
                RunResult::Interrupted,
                format!("berth (pid {}) stopped while it ran", r.owner.pid),
            ),
        };
        state.push_record(&name, record.clone());
        out.push((name, record));
    }
    out
}

/// Decides what is due at `now` for every job of the table; see the module doc.
pub fn tick(
    state: &mut JobsState,
    now: DateTime<Utc>,
    me: &Owner,
    alive: &dyn Fn(&Owner) -> bool,
) -> Tick {
    let mut out = Tick {
        recorded: reap(state, now, me, alive),
        ..Tick::default()
    };
    let table: Vec<JobSpec> = state.table.values().cloned().collect();
    for spec in table {
        let schedule = match Schedule::parse(&spec.schedule, spec.timezone.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                out.errors.push((spec.name.clone(), e));
                continue;
            }
        };
        let js = state.jobs.entry(spec.name.clone()).or_default();
        let last = match js.last_slot {
            Some(last) if js.schedule == spec.schedule && js.timezone == spec.timezone => last,
            // New, or a changed schedule: from now on.
            _ => {
                js.schedule = spec.schedule.clone();
                js.timezone = spec.timezone.clone();
                js.last_slot = Some(now);
                js.next_run = schedule.next_after(now);
                out.wake = min(out.wake, js.next_run);
                continue;
            }
        };
        let late = now - GRACE;
        let on_time = schedule.next_after(last.max(late)).filter(|t| *t <= now);
        let first_due = schedule.next_after(last).filter(|t| *t <= late);
        let window_start = last.max(
            now - chrono::Duration::from_std(spec.catch_up).unwrap_or(chrono::Duration::MAX / 2),
        );
        let missed_in_window = if first_due.is_some() {
            schedule.slots_between(window_start, late).last()
        } else {
            None
        };
        js.last_slot = Some(now.max(last));
        js.next_run = schedule.next_after(now);
        out.wake = min(out.wake, js.next_run);

        let mut start: Option<(Trigger, DateTime<Utc>)> = None;
        let mut records = Vec::new();
        if let Some(first) = first_due {
            let at = missed_in_window.unwrap_or(first);
            let reason = match (spec.missed, missed_in_window) {
                (Missed::RunOnce, Some(_)) => {
                    format!("missed run at {}: running it once now", when(at))
                }
                (Missed::RunOnce, None) => {
                    format!("missed run at {}: older than catch_up, not run", when(at))
                }
                (Missed::Skip, _) => format!("missed run at {}: missed: skip", when(at)),
            };
            records.push((Trigger::Schedule, at, outcome(RunResult::Missed, reason)));
            if spec.missed == Missed::RunOnce && missed_in_window.is_some() {
                start = Some((Trigger::CatchUp, at));
            }
        }
        if let Some(slot) = on_time {
            start = Some((Trigger::Schedule, slot));
        }
        let running: Vec<Running> = js.running.clone();
        if let Some((trigger, slot)) = start {
            match spec.concurrency {
                Concurrency::Forbid if !running.is_empty() => {
                    let r = &running[0];
                    records.push((
                        trigger,
                        slot,
                        outcome(
                            RunResult::Skipped,
                            format!(
                                "run at {} skipped: the run started {} is still going (concurrency: forbid)",
                                when(slot),
                                when(r.started)
                            ),
                        ),
                    ));
                    start = None;
                }
                Concurrency::Replace => {
                    for r in &running {
                        out.actions.push(Action::Stop {
                            job: spec.name.clone(),
                            run: r.id,
                            owner: r.owner.clone(),
                            exec_pid: r.exec_pid,
                        });
                    }
                }
                _ => {}
            }
        }
        for (trigger, slot, outcome) in records {
            let id = state.take_id();
            let ended = now;
            let record = RunRecord {
                id,
                trigger,
                slot: Some(slot),
                started: slot.min(ended),
                ended,
                attempts: 0,
                outcome,
            };
            state.push_record(&spec.name, record.clone());
            out.recorded.push((spec.name.clone(), record));
        }
        if let Some((trigger, slot)) = start {
            let run = begin(state, &spec.name, trigger, Some(slot), now, me);
            out.actions.push(Action::Start {
                job: spec.name.clone(),
                run,
                trigger,
                slot: Some(slot),
            });
        }
    }
    out
}

/// Adds a run's marker; its id.
pub fn begin(
    state: &mut JobsState,
    job: &str,
    trigger: Trigger,
    slot: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    me: &Owner,
) -> u64 {
    let id = state.take_id();
    state
        .jobs
        .entry(job.to_string())
        .or_default()
        .running
        .push(Running {
            id,
            trigger,
            slot,
            started: now,
            owner: me.clone(),
            exec_pid: None,
        });
    id
}

/// What `berth jobs run NAME` may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manual {
    /// Go: run `run` (and stop these first, `concurrency: replace`).
    Start { run: u64, stop: Vec<Running> },
    /// `concurrency: forbid` and a run is going: recorded Skipped.
    Busy { reason: String },
    /// No such job in the table.
    Unknown,
}

/// A run now, outside the schedule (the CLI, or a person through serve): concurrency applies.
pub fn manual(
    state: &mut JobsState,
    job: &str,
    now: DateTime<Utc>,
    me: &Owner,
    alive: &dyn Fn(&Owner) -> bool,
) -> Manual {
    reap(state, now, me, alive);
    let Some(spec) = state.table.get(job).cloned() else {
        return Manual::Unknown;
    };
    let running = state
        .jobs
        .get(job)
        .map(|j| j.running.clone())
        .unwrap_or_default();
    let mut stop = Vec::new();
    match spec.concurrency {
        Concurrency::Forbid if !running.is_empty() => {
            let reason = format!(
                "not started: the run started {} is still going (concurrency: forbid)",
                when(running[0].started)
            );
            let id = state.take_id();
            state.push_record(
                job,
                RunRecord {
                    id,
                    trigger: Trigger::Manual,
                    slot: None,
                    started: now,
                    ended: now,
                    attempts: 0,
                    outcome: outcome(RunResult::Skipped, reason.clone()),
                },
            );
            return Manual::Busy { reason };
        }
        Concurrency::Replace => stop = running,
        _ => {}
    }
    let run = begin(state, job, Trigger::Manual, None, now, me);
    Manual::Start { run, stop }
}

fn min(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
