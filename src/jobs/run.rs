//! Running a job: the one `match` on the task ([`run_task`]), retries, the outcome with its
//! log tail (the job's secrets replaced by `***`), and [`execute`], which records the outcome
//! in the state — what serve's scheduler and `berth jobs run` both call.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;

use super::state::{self, JobsError, RunRecord};
use crate::docker::{DockerError, Engine, Finished};
use crate::model::jobs::{
    BackupSpec, ContainerTask, ExecTask, JobSpec, RunOutcome, RunResult, Task,
};

/// At most this much output is kept per run (the end of it).
pub const LOG_TAIL_BYTES: usize = 8 * 1024;

/// What a run needs besides its job.
pub struct RunContext<'a> {
    pub engine: &'a Engine,
    /// The run's id (names a job container).
    pub run: u64,
    /// The config commit the job table came from.
    pub commit: Option<&'a str>,
    /// Notified to stop the run (`concurrency: replace`).
    pub stop: &'a Notify,
    /// Where the job's state (and history: a backup's previous snapshots) is.
    pub state_dir: &'a Path,
    pub instance: &'a str,
}

/// One attempt of the job's task: THE dispatch on the kind of task.
pub async fn run_task(job: &JobSpec, cx: &RunContext<'_>) -> RunOutcome {
    let outcome = match &job.task {
        Task::Exec(t) => exec(job, t, cx).await,
        Task::Container(t) => container(job, t, cx).await,
        Task::Prune(p) => super::prune::run(cx.engine, cx.state_dir, cx.instance, p).await,
        Task::Backup(spec) => backup(job, spec, cx).await,
        Task::Check {
            backup,
            read_data_subset,
        } => check(job, backup, read_data_subset.as_deref(), cx).await,
    };
    redact(job, outcome)
}

/// The task, tried again up to `retries` times after a failure (not after a stop). The attempts
/// made and the last outcome.
pub async fn run_job(job: &JobSpec, cx: &RunContext<'_>) -> (u32, RunOutcome) {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = run_task(job, cx).await;
        let stopped = outcome.reason.as_deref() == Some(STOPPED);
        if outcome.result.is_success() || stopped || attempts > job.retries {
            return (attempts, outcome);
        }
        tracing::info!(job = %job.name, attempt = attempts, reason = outcome.reason.as_deref().unwrap_or(""), "job attempt failed; retrying");
    }
}

/// Runs run `run` of `job` (its marker is in the state) and records how it ended.
pub async fn execute(job: &JobSpec, cx: &RunContext<'_>) -> Result<RunRecord, JobsError> {
    let (state_dir, instance) = (cx.state_dir, cx.instance);
    let started = Utc::now();
    let (attempts, outcome) = run_job(job, cx).await;
    let ended = Utc::now();
    let fallback = outcome.clone();
    let recorded = state::update(state_dir, instance, |st| {
        st.finish(&job.name, cx.run, ended, attempts, outcome)
    })?;
    // Its marker was gone (the table changed under it): still say how it went.
    Ok(recorded.unwrap_or(RunRecord {
        id: cx.run,
        trigger: state::Trigger::Manual,
        slot: None,
        started,
        ended,
        attempts,
        outcome: fallback,
    }))
}

/// A run that could not start: the Engine is not reachable.
pub fn unreachable_outcome() -> RunOutcome {
    failed(
        None,
        "the Docker Engine is not reachable".into(),
        String::new(),
    )
}

/// Stops a run of another berth process (`concurrency: replace`): its exec's process by host
/// pid, or its job container. That process records the run (failed: killed).
pub async fn stop_foreign(engine: &Engine, job: &JobSpec, run: u64, exec_pid: Option<i64>) {
    match (&job.task, exec_pid) {
        (Task::Container(_), _) => {
            let name = crate::docker::job_container_name(engine.instance(), &job.name, run);
            if let Err(e) = engine.remove(&name).await {
                tracing::warn!(job = %job.name, run, "jobs: cannot stop the replaced run: {e}");
            }
        }
        (_, Some(pid)) => crate::host::process::kill(pid),
        (_, None) => {
            tracing::warn!(job = %job.name, run, "jobs: the replaced run has not started its command yet; both run")
        }
    }
}

const STOPPED: &str = "stopped: a newer run replaced it (concurrency: replace)";

async fn exec(job: &JobSpec, t: &ExecTask, cx: &RunContext<'_>) -> RunOutcome {
    let id = match cx.engine.service_container(&t.service).await {
        Ok(id) => id,
        Err(e) => return failed(None, e.to_string(), String::new()),
    };
    let note_pid = |pid: i64| {
        if let Err(e) = state::update(cx.state_dir, cx.instance, |st| {
            st.set_exec_pid(&job.name, cx.run, pid)
        }) {
            tracing::warn!(job = %job.name, "jobs: {e}");
        }
    };
    finished(
        job,
        cx.engine
            .exec_job(
                &id,
                &t.command,
                job.timeout,
                cx.stop,
                LOG_TAIL_BYTES,
                &note_pid,
            )
            .await,
    )
}

async fn container(job: &JobSpec, t: &ContainerTask, cx: &RunContext<'_>) -> RunOutcome {
    let engine = cx.engine;
    let mut result = engine
        .run_job_container(&job.name, cx.run, t, job.timeout, cx.stop, LOG_TAIL_BYTES)
        .await;
    let no_image = matches!(&result, Err(DockerError::NotFound { message, .. })
        if message.to_ascii_lowercase().contains("image"));
    if no_image {
        if let Err(e) = cx.engine.pull(&t.image, |_| {}).await {
            return failed(None, e.to_string(), String::new());
        }
        result = engine
            .run_job_container(&job.name, cx.run, t, job.timeout, cx.stop, LOG_TAIL_BYTES)
            .await;
    }
    finished(job, result)
}

/// Completes at the job's timeout (timed out) or when a newer run replaces it (stopped).
async fn cut_short(job: &JobSpec, stop: &Notify) -> crate::restic::Cancelled {
    tokio::select! {
        _ = tokio::time::sleep(job.timeout) => (
            RunResult::TimedOut,
            format!("timed out after {}: killed", human(job.timeout)),
        ),
        _ = stop.notified() => (RunResult::Failed, STOPPED.to_string()),
    }
}

/// A restic backup run; `previous` is what the job's last successful run saved (the size
/// check compares with it).
async fn backup(job: &JobSpec, spec: &BackupSpec, cx: &RunContext<'_>) -> RunOutcome {
    let previous = match state::load(cx.state_dir, cx.instance) {
        Ok(st) => st
            .jobs
            .get(&job.name)
            .and_then(|j| j.last_success())
            .map(|r| r.outcome.snapshots.clone())
            .unwrap_or_default(),
        Err(e) => return failed(None, e.to_string(), String::new()),
    };
    let rcx = crate::restic::Context::new(cx.engine.clone());
    crate::restic::backup_until(&rcx, spec, cx.commit, &previous, cut_short(job, cx.stop)).await
}

/// `restic check` of the repository of the Backup `backup`, as recorded in the job table.
async fn check(
    job: &JobSpec,
    backup: &str,
    subset: Option<&str>,
    cx: &RunContext<'_>,
) -> RunOutcome {
    let st = match state::load(cx.state_dir, cx.instance) {
        Ok(st) => st,
        Err(e) => return failed(None, e.to_string(), String::new()),
    };
    let Some(Task::Backup(spec)) = st.table.get(backup).map(|j| &j.task) else {
        return failed(
            None,
            format!("the recorded job table has no Backup {backup:?} to check"),
            String::new(),
        );
    };
    let rcx = crate::restic::Context::new(cx.engine.clone());
    let out = tokio::select! {
        out = crate::restic::check(&rcx, spec, subset) => Ok(out),
        c = cut_short(job, cx.stop) => Err(c),
    };
    match out {
        Ok(out) => out,
        Err((result, reason)) => {
            // The killed restic's container goes first.
            cx.engine.settle().await;
            RunOutcome {
                result,
                exit_code: None,
                reason: Some(reason),
                log_tail: String::new(),
                snapshots: Vec::new(),
            }
        }
    }
}

fn finished(job: &JobSpec, result: Result<Finished, DockerError>) -> RunOutcome {
    match result {
        Err(e) => failed(None, e.to_string(), String::new()),
        Ok(f) => {
            let log = f.output.text();
            if f.timed_out {
                RunOutcome {
                    result: RunResult::TimedOut,
                    exit_code: None,
                    reason: Some(format!("timed out after {}: killed", human(job.timeout))),
                    log_tail: log,
                    snapshots: Vec::new(),
                }
            } else if f.stopped {
                failed(None, STOPPED.to_string(), log)
            } else {
                match f.exit_code {
                    Some(0) => RunOutcome {
                        result: RunResult::Succeeded,
                        exit_code: Some(0),
                        reason: None,
                        log_tail: log,
                        snapshots: Vec::new(),
                    },
                    Some(code) => failed(Some(code), format!("exit {code}"), log),
                    None => failed(None, "ended without an exit code".into(), log),
                }
            }
        }
    }
}

fn failed(exit_code: Option<i64>, reason: String, log_tail: String) -> RunOutcome {
    RunOutcome {
        result: RunResult::Failed,
        exit_code,
        reason: Some(reason),
        log_tail,
        snapshots: Vec::new(),
    }
}

/// The job's secret values, wherever they show up in the outcome, as `***` (longest first, so
/// a value inside another goes with it).
pub fn redact(job: &JobSpec, mut outcome: RunOutcome) -> RunOutcome {
    let mut values: Vec<&str> = job
        .secrets()
        .into_iter()
        .map(|s| s.expose())
        .filter(|v| !v.is_empty())
        .collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values {
        outcome.log_tail = outcome.log_tail.replace(v, "***");
        if let Some(r) = &mut outcome.reason {
            *r = r.replace(v, "***");
        }
    }
    outcome
}

/// `1h`, `90s`, `2h30m`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::Secret;
    use crate::model::jobs::{Concurrency, Missed};

    #[test]
    fn secrets_are_hidden_in_the_log_tail_and_reason() {
        let job = JobSpec {
            name: "j".into(),
            schedule: "@daily".into(),
            timezone: None,
            task: Task::Container(ContainerTask {
                image: "x".into(),
                command: Vec::new(),
                volumes: Vec::new(),
                environment: BTreeMap::from([
                    ("A".to_string(), Secret::new("hunter2")),
                    ("B".to_string(), Secret::new("hunter2-long")),
                ]),
                networks: Vec::new(),
            }),
            concurrency: Concurrency::Forbid,
            timeout: Duration::from_secs(5400),
            retries: 0,
            missed: Missed::RunOnce,
            catch_up: Duration::from_secs(60),
            history: 1,
            origin: Default::default(),
        };
        let out = redact(
            &job,
            failed(
                Some(1),
                "said hunter2".into(),
                "token=hunter2-long\nhunter2\n".into(),
            ),
        );
        assert_eq!(out.log_tail, "token=***\n***\n");
        assert_eq!(out.reason.as_deref(), Some("said ***"));
        assert_eq!(human(job.timeout), "1h30m");
        assert_eq!(human(Duration::from_secs(0)), "0s");
    }
}
