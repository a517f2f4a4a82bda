//! `berth jobs` (the jobs of the last applied config, from the state file) and `berth jobs run
//! NAME` (one run now, recorded like a scheduled one; concurrency applies).
//!
//! Exit codes of `jobs run`: 0 the run succeeded, 1 it failed (or was not started: another run
//! is going and `concurrency: forbid`; or the Engine is unreachable), 2 no such job.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Notify;

use super::run::{RunContext, execute, human};
use super::schedule::Schedule;
use super::scheduler::{self, Manual};
use super::state::{self, JobsError, Owner, RunRecord};
use crate::docker::{DockerError, Engine};
use crate::model::jobs::RunResult;

/// Why `berth jobs` could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    State(#[from] JobsError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

#[derive(Serialize)]
struct JsonList<'a> {
    commit: Option<&'a str>,
    jobs: Vec<JsonJob<'a>>,
}

#[derive(Serialize)]
struct JsonJob<'a> {
    name: &'a str,
    kind: &'static str,
    schedule: &'a str,
    timezone: String,
    concurrency: crate::model::jobs::Concurrency,
    running: usize,
    next_run: Option<DateTime<Utc>>,
    last: Option<&'a RunRecord>,
    last_success: Option<DateTime<Utc>>,
}

/// `berth jobs [--json]`.
pub fn list(
    state_dir: &Path,
    instance: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let st = state::load(state_dir, instance)?;
    let now = Utc::now();
    let rows: Vec<JsonJob<'_>> = st
        .table
        .values()
        .map(|job| {
            let js = st.jobs.get(&job.name);
            let schedule = Schedule::parse(&job.schedule, job.timezone.as_deref()).ok();
            let next_run = js
                .and_then(|j| j.next_run.filter(|t| *t > now))
                .or_else(|| schedule.as_ref().and_then(|s| s.next_after(now)));
            JsonJob {
                name: &job.name,
                kind: job.task.kind(),
                schedule: &job.schedule,
                timezone: schedule
                    .as_ref()
                    .map(|s| s.zone().to_string())
                    .or_else(|| job.timezone.clone())
                    .unwrap_or_else(|| "host".into()),
                concurrency: job.concurrency,
                running: js.map_or(0, |j| j.running.len()),
                next_run,
                last: js.and_then(|j| j.last()),
                last_success: js.and_then(|j| j.last_success()).map(|r| r.ended),
            }
        })
        .collect();
    if json {
        let doc = JsonList {
            commit: st.commit.as_deref(),
            jobs: rows,
        };
        serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::other)?;
        writeln!(out)?;
        return Ok(0);
    }
    if rows.is_empty() {
        writeln!(
            out,
            "No jobs: the last applied config declares none (state in {}).",
            state_dir.display()
        )?;
        return Ok(0);
    }
    let mut table = vec![[
        "JOB".to_string(),
        "SCHEDULE".into(),
        "ZONE".into(),
        "LAST".into(),
        "NEXT".into(),
    ]];
    for r in &rows {
        let last = match r.last {
            Some(l) => format!(
                "{} {} ({})",
                l.outcome.result.as_str(),
                l.ended.format("%Y-%m-%d %H:%M:%SZ"),
                human(l.duration().to_std().unwrap_or_default())
            ),
            None => "-".into(),
        };
        let last = if r.running > 0 {
            format!("running; {last}")
        } else {
            last
        };
        let next = r
            .next_run
            .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string());
        table.push([
            r.name.to_string(),
            r.schedule.to_string(),
            r.timezone.clone(),
            last,
            next,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            table
                .iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &table {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == 4 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    if let Some(c) = &st.commit {
        writeln!(out, "(jobs of commit {c})")?;
    }
    Ok(0)
}

/// `berth jobs run NAME`: 0 succeeded, 1 failed or not started, 2 no such job.
pub async fn run(
    state_dir: &Path,
    instance: &str,
    name: &str,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let me = Owner::current();
    let now = Utc::now();
    let decision = state::update(state_dir, instance, |st| {
        let d = scheduler::manual(st, name, now, &me, &|o| o.is_alive());
        (d, st.table.get(name).cloned(), st.commit.clone())
    })?;
    let (decision, job, commit) = decision;
    let (run, job, replaced) = match (decision, job) {
        (Manual::Unknown, _) | (_, None) => {
            let st = state::load(state_dir, instance)?;
            let known: Vec<&str> = st.table.keys().map(String::as_str).collect();
            eprintln!(
                "error: no job {name:?} in the last applied config{}",
                if known.is_empty() {
                    " (it declares none)".to_string()
                } else {
                    format!("; jobs: {}", known.join(", "))
                }
            );
            return Ok(2);
        }
        (Manual::Busy { reason }, _) => {
            eprintln!("{name}: {reason}");
            return Ok(1);
        }
        (Manual::Start { run, stop }, Some(job)) => (run, job, stop),
    };
    let engine = match Engine::connect().await {
        Ok(e) => e.with_instance(instance),
        Err(e) => {
            // Not started after all: say so in the history.
            let outcome = crate::model::jobs::RunOutcome {
                result: RunResult::Failed,
                exit_code: None,
                reason: Some(e.to_string()),
                log_tail: String::new(),
                snapshots: Vec::new(),
            };
            state::update(state_dir, instance, |st| {
                st.finish(name, run, Utc::now(), 0, outcome)
            })?;
            return Err(e.into());
        }
    };
    for r in &replaced {
        eprintln!(
            "{name}: stopping the run started {} (concurrency: replace)",
            r.started
        );
        super::run::stop_foreign(&engine, &job, r.id, r.exec_pid).await;
    }
    let stop = Notify::new();
    let cx = RunContext {
        engine: &engine,
        run,
        commit: commit.as_deref(),
        stop: &stop,
        state_dir,
        instance,
    };
    writeln!(out, "{name}: running ({})", job.task.kind())?;
    let record = execute(&job, &cx).await?;
    // Clean-ups of a run cut short (a killed restic's container) finish before the exit.
    engine.settle().await;
    print_record(name, &record, out)?;
    Ok(if record.outcome.result.is_success() {
        0
    } else {
        1
    })
}

fn print_record(name: &str, r: &RunRecord, out: &mut dyn Write) -> std::io::Result<()> {
    if !r.outcome.log_tail.is_empty() {
        write!(out, "{}", r.outcome.log_tail)?;
        if !r.outcome.log_tail.ends_with('\n') {
            writeln!(out)?;
        }
    }
    let took = human(r.duration().to_std().unwrap_or_default());
    match &r.outcome.reason {
        Some(reason) => writeln!(
            out,
            "{name}: {} after {took}: {reason}",
            r.outcome.result.as_str()
        ),
        None => writeln!(out, "{name}: {} in {took}", r.outcome.result.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::model::jobs::{
        Concurrency, ExecTask, JobSpec, JobsSpec, Missed, RunOutcome, ServiceRef, Task,
    };

    #[test]
    fn the_list_shows_schedule_zone_last_result_and_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        assert_eq!(list(dir.path(), "x", false, &mut out).unwrap(), 0);
        assert!(String::from_utf8(out).unwrap().starts_with("No jobs"));

        let job = JobSpec {
            name: "vacuum".into(),
            schedule: "0 2 * * 0".into(),
            timezone: Some("Europe/Paris".into()),
            task: Task::Exec(ExecTask {
                service: ServiceRef {
                    stack: "apps".into(),
                    service: "db".into(),
                },
                command: vec!["vacuumdb".into()],
            }),
            concurrency: Concurrency::Forbid,
            timeout: Duration::from_secs(3600),
            retries: 0,
            missed: Missed::RunOnce,
            catch_up: Duration::from_secs(3600),
            history: 5,
            origin: Default::default(),
        };
        let spec = JobsSpec {
            jobs: BTreeMap::from([("vacuum".to_string(), job)]),
            defaults: None,
        };
        state::record_table(dir.path(), "x", &spec, Some("abc")).unwrap();
        state::update(dir.path(), "x", |st| {
            let t0 = "2027-06-06T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
            let id = scheduler::begin(
                st,
                "vacuum",
                state::Trigger::Manual,
                None,
                t0,
                &Owner::current(),
            );
            st.finish(
                "vacuum",
                id,
                t0 + chrono::Duration::seconds(12),
                1,
                RunOutcome {
                    result: RunResult::Succeeded,
                    exit_code: Some(0),
                    reason: None,
                    log_tail: String::new(),
                    snapshots: Vec::new(),
                },
            );
        })
        .unwrap();
        let mut out = Vec::new();
        list(dir.path(), "x", false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("JOB"), "{text}");
        assert!(
            lines[1].starts_with(
                "vacuum  0 2 * * 0  Europe/Paris  succeeded 2027-06-06 00:00:12Z (12s)  "
            ),
            "{text}"
        );
        assert_eq!(lines[2], "(jobs of commit abc)");
        let mut out = Vec::new();
        list(dir.path(), "x", true, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["jobs"][0]["timezone"], "Europe/Paris");
        assert_eq!(v["jobs"][0]["last"]["outcome"]["result"], "succeeded");
        // The next Sunday 02:00 in Paris, after now.
        let next: DateTime<Utc> = v["jobs"][0]["next_run"].as_str().unwrap().parse().unwrap();
        assert!(next > Utc::now());
    }
}
