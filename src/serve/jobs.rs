//! serve's job scheduler: one task that sleeps until the next run is due, the table changes
//! ([`JobsHandle::poke`], after an apply recorded a new table) or a minute passed (a table
//! recorded by `berth apply` from the CLI), then asks [`crate::jobs::scheduler::tick`] what is
//! due and runs each due job in its own task. Outcomes go to the state file and the metrics;
//! a Backup's (and its check's) also to GitHub, as a status on the commit the job table was
//! recorded from (context `berth/<name>/backup/<backup>`, `.../<backup>/check`), through the
//! write-back task (never waited for).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};

use super::metrics::{JobSeed, Metrics};
use super::report::{State, Status};
use super::writeback::Writeback;
use crate::docker::{Engine, job_container_name};
use crate::jobs::scheduler::{self, Action};
use crate::jobs::state::{self, Owner, RunRecord};
use crate::jobs::{RunContext, execute};
use crate::model::jobs::{JobSpec, RunResult, Task};

/// The longest sleep: a table recorded by another process is seen within this.
const RECHECK: Duration = Duration::from_secs(60);

/// What the apply path holds: poke it after recording a new job table.
#[derive(Clone, Default)]
pub struct JobsHandle {
    poke: Arc<Notify>,
}

impl JobsHandle {
    /// The table changed: decide again now (a schedule change takes effect at once).
    pub fn poke(&self) {
        self.poke.notify_one();
    }
}

type Stops = Arc<Mutex<BTreeMap<u64, Arc<Notify>>>>;

/// Starts the scheduler; it ends when `shutdown` turns true (runs going on are left to be
/// recorded Interrupted by the next start).
pub fn spawn(
    state_dir: PathBuf,
    instance: String,
    reporter: Reporter,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> (JobsHandle, tokio::task::JoinHandle<()>) {
    let handle = JobsHandle::default();
    let poke = handle.poke.clone();
    let task = tokio::spawn(run(state_dir, instance, reporter, metrics, poke, shutdown));
    (handle, task)
}

/// Where backup outcomes are reported: the write-back handle and the name statuses carry
/// (`berth/<name>/...`, as for stacks).
#[derive(Clone)]
pub struct Reporter {
    pub writeback: Writeback,
    pub name: String,
}

async fn run(
    state_dir: PathBuf,
    instance: String,
    reporter: Reporter,
    metrics: Arc<Metrics>,
    poke: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let me = Owner::current();
    let stops: Stops = Arc::default();
    let mut engine: Option<Engine> = None;
    // The last success, start and failures in a row from the history: a restart resets none.
    if let Ok(st) = state::load(&state_dir, &instance) {
        metrics.sync_jobs(&seeds(&st));
    }
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = Utc::now();
        let ticked = state::update(&state_dir, &instance, |st| {
            // Before the tick: its records are counted by `note_record`, not in the seeds.
            let seeds = seeds(st);
            let tick = scheduler::tick(st, now, &me, &|o| o.is_alive());
            let specs: BTreeMap<String, JobSpec> = st.table.clone();
            (tick, specs, st.commit.clone(), seeds)
        });
        let mut wake = tokio::time::Instant::now() + RECHECK;
        match ticked {
            Err(e) => tracing::error!("jobs: {e}"),
            Ok((tick, specs, commit, seeds)) => {
                metrics.sync_jobs(&seeds);
                for (job, e) in &tick.errors {
                    tracing::error!(job = %job, "jobs: {e}");
                }
                for (job, record) in &tick.recorded {
                    let kind = specs.get(job).map_or("exec", |s| s.task.kind());
                    note_record(&metrics, job, kind, record, false);
                    if let Some(spec) = specs.get(job) {
                        report(&reporter, commit.as_deref(), spec, record);
                    }
                    let container =
                        matches!(specs.get(job).map(|s| &s.task), Some(Task::Container(_)));
                    if record.outcome.result == crate::model::jobs::RunResult::Interrupted
                        && container
                    {
                        // Its one-off container outlived the berth that ran it.
                        if let Some(e) = connect(&mut engine, &instance).await {
                            let _ = e
                                .remove(&job_container_name(&instance, job, record.id))
                                .await;
                        }
                    }
                }
                for action in tick.actions {
                    match action {
                        Action::Stop {
                            job,
                            run,
                            owner,
                            exec_pid,
                        } => {
                            let stop = stops
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get(&run)
                                .cloned();
                            match (stop, specs.get(&job)) {
                                (Some(n), _) if owner == me => n.notify_one(),
                                (_, Some(spec)) => {
                                    if let Some(e) = connect(&mut engine, &instance).await {
                                        crate::jobs::run::stop_foreign(&e, spec, run, exec_pid)
                                            .await;
                                    }
                                }
                                (_, None) => {}
                            }
                        }
                        Action::Start {
                            job,
                            run,
                            trigger,
                            slot,
                        } => {
                            let Some(spec) = specs.get(&job).cloned() else {
                                continue;
                            };
                            let Some(engine) = connect(&mut engine, &instance).await else {
                                // Recorded failed: the Engine is not there.
                                let outcome = crate::jobs::run::unreachable_outcome();
                                let finished = state::update(&state_dir, &instance, |st| {
                                    st.finish(&job, run, Utc::now(), 0, outcome)
                                });
                                if let Ok(Some(record)) = finished {
                                    note_record(&metrics, &job, spec.task.kind(), &record, false);
                                    report(&reporter, commit.as_deref(), &spec, &record);
                                }
                                continue;
                            };
                            tracing::info!(job = %job, run, trigger = ?trigger, slot = ?slot, "job started");
                            metrics.job_started(
                                &job,
                                spec.task.kind(),
                                Utc::now().timestamp_millis() as f64 / 1000.0,
                            );
                            let stop = Arc::new(Notify::new());
                            stops
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(run, stop.clone());
                            let (dir, inst, m, st, commit, rep) = (
                                state_dir.clone(),
                                instance.clone(),
                                metrics.clone(),
                                stops.clone(),
                                commit.clone(),
                                reporter.clone(),
                            );
                            tokio::spawn(async move {
                                let cx = RunContext {
                                    engine: &engine,
                                    run,
                                    commit: commit.as_deref(),
                                    stop: &stop,
                                    state_dir: &dir,
                                    instance: &inst,
                                };
                                match execute(&spec, &cx).await {
                                    Ok(record) => {
                                        note_record(
                                            &m,
                                            &spec.name,
                                            spec.task.kind(),
                                            &record,
                                            true,
                                        );
                                        report(&rep, commit.as_deref(), &spec, &record);
                                    }
                                    Err(e) => tracing::error!(job = %spec.name, run, "jobs: {e}"),
                                }
                                st.lock().unwrap_or_else(|e| e.into_inner()).remove(&run);
                            });
                        }
                    }
                }
                if let Some(at) = tick.wake {
                    let wait = (at - Utc::now()).to_std().unwrap_or_default();
                    wake = wake.min(tokio::time::Instant::now() + wait);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = poke.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn connect(engine: &mut Option<Engine>, instance: &str) -> Option<Engine> {
    if engine.is_none() {
        match Engine::connect().await {
            Ok(e) => *engine = Some(e.with_instance(instance)),
            Err(e) => tracing::error!("jobs: {e}"),
        }
    }
    engine.clone()
}

fn note_record(metrics: &Metrics, job: &str, kind: &str, r: &RunRecord, ran: bool) {
    let ended = r.ended.timestamp_millis() as f64 / 1000.0;
    let duration = ran.then(|| r.duration().num_milliseconds() as f64 / 1000.0);
    metrics.job_finished(job, kind, r.outcome.result.as_str(), ended, duration);
    let reason = r.outcome.reason.as_deref().unwrap_or("");
    if r.outcome.result.is_success() {
        tracing::info!(job = %job, run = r.id, "job succeeded");
    } else {
        tracing::warn!(job = %job, run = r.id, result = r.outcome.result.as_str(), "job {}: {reason}", r.outcome.result.as_str());
    }
}

/// Every job of the recorded table, with what its metrics start from.
fn seeds(st: &state::JobsState) -> Vec<JobSeed> {
    let secs = |t: chrono::DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
    st.table
        .values()
        .map(|spec| {
            let js = st.jobs.get(&spec.name);
            let history = js.map(|j| &j.history);
            JobSeed {
                job: spec.name.clone(),
                kind: spec.task.kind().to_string(),
                last_success: js.and_then(|j| j.last_success()).map(|r| secs(r.ended)),
                last_start: history
                    .and_then(|h| h.iter().rev().find(|r| r.attempts > 0))
                    .map(|r| secs(r.started)),
                consecutive_failures: history.map_or(0, |h| {
                    h.iter()
                        .rev()
                        .filter(|r| r.outcome.result != RunResult::Skipped)
                        .take_while(|r| !r.outcome.result.is_success())
                        .count() as u64
                }),
            }
        })
        .collect()
}

/// Posts a Backup's or a check's outcome on the table's commit (nothing for other jobs, for a
/// skipped run — a run still going is no news — or for a table applied from a folder).
fn report(reporter: &Reporter, commit: Option<&str>, spec: &JobSpec, r: &RunRecord) {
    let Some(status) = backup_status(&reporter.name, spec, r) else {
        return;
    };
    match commit {
        Some(commit) => reporter.writeback.status(commit, status),
        None => {
            tracing::debug!(job = %spec.name, "no commit recorded with the job table: no status")
        }
    }
}

/// The status for a Backup or check outcome: `berth/<name>/backup/<backup>` (the check:
/// `.../<backup>/check`), success or failure (a missed or interrupted run is a failure), the
/// reason as description with the job's secrets hidden (the write-back task cuts it to 140).
pub fn backup_status(name: &str, spec: &JobSpec, r: &RunRecord) -> Option<Status> {
    let context = match &spec.task {
        Task::Backup(b) => format!("berth/{name}/backup/{}", b.name),
        Task::Check { backup, .. } => format!("berth/{name}/backup/{backup}/check"),
        _ => return None,
    };
    let o = &r.outcome;
    let (state, description) = match o.result {
        RunResult::Skipped => return None,
        RunResult::Succeeded => {
            let text = match &spec.task {
                Task::Check { .. } => "repository check passed".to_string(),
                _ => {
                    let added: u64 = o.snapshots.iter().map(|s| s.added).sum();
                    format!(
                        "{} snapshots, {added} bytes added, in {}s",
                        o.snapshots.len(),
                        r.duration().num_seconds()
                    )
                }
            };
            (State::Success, text)
        }
        other => (
            State::Failure,
            o.reason
                .clone()
                .unwrap_or_else(|| other.as_str().to_string()),
        ),
    };
    // The repository as plans show it (credentials out), every other secret hidden.
    let hide = |text: &str| {
        let mut t = text.to_string();
        if let Task::Backup(b) = &spec.task {
            let repo = b.repository.expose();
            if !repo.is_empty() {
                t = t.replace(repo, &b.repository_display());
            }
        }
        spec.secrets()
            .iter()
            .filter(|s| !matches!(&spec.task, Task::Backup(b) if std::ptr::eq(**s, &b.repository)))
            .map(|s| s.expose())
            .filter(|v| !v.is_empty())
            .fold(t, |t, v| t.replace(v, "(hidden)"))
    };
    let markdown = (!o.log_tail.is_empty()).then(|| {
        format!(
            "### {}: {}\n\n{}\n\n```\n{}\n```\n",
            spec.name,
            o.result.as_str(),
            hide(&description),
            hide(&o.log_tail)
        )
    });
    Some(Status {
        context,
        state,
        description: hide(&description).replace('\n', " "),
        markdown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::jobs::{Concurrency, Missed, RunOutcome};

    fn job(name: &str, task: Task) -> JobSpec {
        JobSpec {
            name: name.into(),
            schedule: "0 3 * * *".into(),
            timezone: None,
            task,
            concurrency: Concurrency::Forbid,
            timeout: Duration::from_secs(60),
            retries: 0,
            missed: Missed::RunOnce,
            catch_up: Duration::from_secs(3600),
            history: 10,
            origin: Default::default(),
        }
    }

    fn backup() -> JobSpec {
        let spec = crate::restic::tests::spec("/srv/restic");
        job("nightly", Task::Backup(Box::new(spec)))
    }

    fn record(result: RunResult, reason: Option<&str>) -> RunRecord {
        let now = Utc::now();
        RunRecord {
            id: 1,
            trigger: state::Trigger::Schedule,
            slot: None,
            started: now,
            ended: now,
            attempts: 1,
            outcome: RunOutcome {
                result,
                exit_code: None,
                reason: reason.map(str::to_string),
                log_tail: String::new(),
                snapshots: vec![],
            },
        }
    }

    #[test]
    fn backup_outcomes_become_statuses_with_secrets_hidden() {
        let s = backup_status(
            "srv",
            &backup(),
            &record(
                RunResult::Failed,
                Some("restic /srv/restic: wrong password hunter2-pw"),
            ),
        )
        .unwrap();
        assert_eq!(s.context, "berth/srv/backup/nightly");
        assert_eq!(s.state, State::Failure);
        assert_eq!(s.description, "restic /srv/restic: wrong password (hidden)");

        let missed = backup_status(
            "srv",
            &backup(),
            &record(RunResult::Missed, Some("missed run at 03:00")),
        )
        .unwrap();
        assert_eq!(missed.state, State::Failure);

        let check = job(
            "nightly/check",
            Task::Check {
                backup: "nightly".into(),
                read_data_subset: None,
            },
        );
        let ok = backup_status("srv", &check, &record(RunResult::Succeeded, None)).unwrap();
        assert_eq!(ok.context, "berth/srv/backup/nightly/check");
        assert_eq!(ok.state, State::Success);

        assert!(backup_status("srv", &backup(), &record(RunResult::Skipped, None)).is_none());
        let exec = job(
            "vacuum",
            Task::Exec(crate::model::jobs::ExecTask {
                service: crate::model::jobs::ServiceRef {
                    stack: "a".into(),
                    service: "db".into(),
                },
                command: vec!["true".into()],
            }),
        );
        assert!(backup_status("srv", &exec, &record(RunResult::Failed, Some("x"))).is_none());
    }
}
