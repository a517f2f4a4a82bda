use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::model::jobs::{ExecTask, ServiceRef, Task};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn job(name: &str, schedule: &str) -> JobSpec {
    JobSpec {
        name: name.into(),
        schedule: schedule.into(),
        timezone: Some("UTC".into()),
        task: Task::Exec(ExecTask {
            service: ServiceRef {
                stack: "apps".into(),
                service: "db".into(),
            },
            command: vec!["true".into()],
        }),
        concurrency: Concurrency::Forbid,
        timeout: Duration::from_secs(60),
        retries: 0,
        missed: Missed::RunOnce,
        catch_up: Duration::from_secs(6 * 3600),
        history: 3,
        origin: Default::default(),
    }
}

fn state(jobs: &[JobSpec]) -> JobsState {
    JobsState {
        table: jobs
            .iter()
            .map(|j| (j.name.clone(), j.clone()))
            .collect::<BTreeMap<_, _>>(),
        ..JobsState::default()
    }
}

fn me() -> Owner {
    Owner { pid: 1, start: 1 }
}

fn other() -> Owner {
    Owner { pid: 2, start: 2 }
}

/// Every other process is alive unless said.
fn alive(_: &Owner) -> bool {
    true
}

fn dead(_: &Owner) -> bool {
    false
}

fn starts(tick: &Tick) -> Vec<(String, Trigger, Option<DateTime<Utc>>)> {
    tick.actions
        .iter()
        .filter_map(|a| match a {
            Action::Start {
                job, trigger, slot, ..
            } => Some((job.clone(), *trigger, *slot)),
            _ => None,
        })
        .collect()
}

fn results(st: &JobsState, job: &str) -> Vec<(RunResult, String)> {
    st.jobs[job]
        .history
        .iter()
        .map(|r| {
            (
                r.outcome.result,
                r.outcome.reason.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The first tick of a job: its next run, nothing started.
fn primed(jobs: &[JobSpec], at: &str) -> JobsState {
    let mut st = state(jobs);
    let tick = tick(&mut st, t(at), &me(), &alive);
    assert!(tick.actions.is_empty());
    st
}

#[test]
fn a_new_job_waits_for_its_first_slot_then_runs_once() {
    let mut st = primed(&[job("j", "0 3 * * *")], "2027-06-01T12:00:00Z");
    assert_eq!(st.jobs["j"].next_run, Some(t("2027-06-02T03:00:00Z")));
    let first = tick(&mut st, t("2027-06-01T12:00:00Z"), &me(), &alive);
    assert_eq!(first.wake, Some(t("2027-06-02T03:00:00Z")));
    assert!(first.actions.is_empty());
    // The timer fires a second late.
    let due = tick(&mut st, t("2027-06-02T03:00:01Z"), &me(), &alive);
    assert_eq!(
        starts(&due),
        [(
            "j".to_string(),
            Trigger::Schedule,
            Some(t("2027-06-02T03:00:00Z"))
        )]
    );
    assert_eq!(st.jobs["j"].running.len(), 1);
    assert_eq!(st.jobs["j"].next_run, Some(t("2027-06-03T03:00:00Z")));
    assert!(
        st.jobs["j"].history.is_empty(),
        "an on-time run is no missed one"
    );
    // Ticking again (a restart reading the same state) does not repeat the slot.
    let again = tick(&mut st, t("2027-06-02T03:00:05Z"), &me(), &alive);
    assert!(again.actions.is_empty());
}

#[test]
fn forbid_records_a_skipped_run() {
    let mut st = primed(&[job("j", "* * * * *")], "2027-06-01T12:00:00Z");
    let a = tick(&mut st, t("2027-06-01T12:01:00Z"), &me(), &alive);
    assert_eq!(starts(&a).len(), 1);
    let b = tick(&mut st, t("2027-06-01T12:02:00Z"), &me(), &alive);
    assert!(starts(&b).is_empty());
    let r = results(&st, "j");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, RunResult::Skipped);
    assert!(
        r[0].1.contains("still going (concurrency: forbid)"),
        "{}",
        r[0].1
    );
}

#[test]
fn replace_stops_the_running_one_and_allow_runs_both() {
    let mut replace = job("r", "* * * * *");
    replace.concurrency = Concurrency::Replace;
    let mut allow = job("a", "* * * * *");
    allow.concurrency = Concurrency::Allow;
    let mut st = primed(&[replace, allow], "2027-06-01T12:00:00Z");
    tick(&mut st, t("2027-06-01T12:01:00Z"), &me(), &alive);
    let first_r = st.jobs["r"].running[0].id;
    let b = tick(&mut st, t("2027-06-01T12:02:00Z"), &me(), &alive);
    assert!(b.actions.contains(&Action::Stop {
        job: "r".into(),
        run: first_r,
        owner: me(),
        exec_pid: None,
    }));
    assert_eq!(starts(&b).len(), 2);
    assert_eq!(st.jobs["a"].running.len(), 2);
    assert_eq!(
        st.jobs["r"].running.len(),
        2,
        "the stopped one is recorded by its runner"
    );
}

#[test]
fn downtime_records_one_missed_run_and_runs_once() {
    let mut st = primed(&[job("j", "0 * * * *")], "2027-06-01T12:00:00Z");
    // berth was down from 12:00 to 15:20: 13:00, 14:00, 15:00 were missed.
    let tick = tick(&mut st, t("2027-06-01T15:20:00Z"), &me(), &alive);
    assert_eq!(
        starts(&tick),
        [(
            "j".to_string(),
            Trigger::CatchUp,
            Some(t("2027-06-01T15:00:00Z"))
        )]
    );
    let r = results(&st, "j");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].0, RunResult::Missed);
    assert_eq!(
        r[0].1,
        "missed run at 2027-06-01 15:00:00 UTC: running it once now"
    );
    assert_eq!(st.jobs["j"].next_run, Some(t("2027-06-01T16:00:00Z")));
}

#[test]
fn downtime_beyond_catch_up_or_with_skip_is_recorded_not_run() {
    let mut old = job("old", "0 3 * * *");
    old.catch_up = Duration::from_secs(3600);
    let mut skip = job("skip", "0 3 * * *");
    skip.missed = Missed::Skip;
    let mut st = primed(&[old, skip], "2027-06-01T12:00:00Z");
    let tick = tick(&mut st, t("2027-06-02T06:00:00Z"), &me(), &alive);
    assert!(starts(&tick).is_empty(), "{:?}", tick.actions);
    assert_eq!(
        results(&st, "old"),
        [(
            RunResult::Missed,
            "missed run at 2027-06-02 03:00:00 UTC: older than catch_up, not run".to_string()
        )]
    );
    assert_eq!(
        results(&st, "skip"),
        [(
            RunResult::Missed,
            "missed run at 2027-06-02 03:00:00 UTC: missed: skip".to_string()
        )]
    );
}

#[test]
fn a_schedule_change_takes_effect_at_once_without_catch_up() {
    let mut st = primed(&[job("j", "0 3 * * *")], "2027-06-01T12:00:00Z");
    // Changed to hourly, noticed hours later: no storm of hourly catch-ups.
    st.table.insert("j".into(), job("j", "0 * * * *"));
    let tick = tick(&mut st, t("2027-06-01T20:30:00Z"), &me(), &alive);
    assert!(tick.actions.is_empty());
    assert!(st.jobs["j"].history.is_empty());
    assert_eq!(st.jobs["j"].next_run, Some(t("2027-06-01T21:00:00Z")));
    assert_eq!(tick.wake, Some(t("2027-06-01T21:00:00Z")));
    // A timezone change is a schedule change too.
    let mut paris = job("j", "0 * * * *");
    paris.timezone = Some("Europe/Paris".into());
    st.table.insert("j".into(), paris);
    let tick2 = super::tick(&mut st, t("2027-06-01T21:30:00Z"), &me(), &alive);
    assert!(tick2.actions.is_empty());
}

#[test]
fn a_run_of_a_gone_process_is_interrupted() {
    let mut st = primed(&[job("j", "0 3 * * *")], "2027-06-01T12:00:00Z");
    begin(
        &mut st,
        "j",
        Trigger::Schedule,
        None,
        t("2027-06-01T12:00:00Z"),
        &other(),
    );
    // Still alive: left alone.
    tick(&mut st, t("2027-06-01T12:05:00Z"), &me(), &alive);
    assert_eq!(st.jobs["j"].running.len(), 1);
    tick(&mut st, t("2027-06-01T12:06:00Z"), &me(), &dead);
    assert!(st.jobs["j"].running.is_empty());
    let r = results(&st, "j");
    assert_eq!(r[0].0, RunResult::Interrupted);
    assert_eq!(r[0].1, "berth (pid 2) stopped while it ran");
    // This process's own runs are never reaped.
    begin(
        &mut st,
        "j",
        Trigger::Schedule,
        None,
        t("2027-06-01T12:07:00Z"),
        &me(),
    );
    tick(&mut st, t("2027-06-01T12:08:00Z"), &me(), &dead);
    assert_eq!(st.jobs["j"].running.len(), 1);
}

#[test]
fn history_is_bounded() {
    let mut st = primed(&[job("j", "* * * * *")], "2027-06-01T12:00:00Z");
    begin(
        &mut st,
        "j",
        Trigger::Schedule,
        None,
        t("2027-06-01T12:00:00Z"),
        &me(),
    );
    for m in 1..=6 {
        tick(
            &mut st,
            t(&format!("2027-06-01T12:0{m}:00Z")),
            &me(),
            &alive,
        );
    }
    assert_eq!(st.jobs["j"].history.len(), 3);
    let ids: Vec<u64> = st.jobs["j"].history.iter().map(|r| r.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");
}

#[test]
fn manual_runs_obey_concurrency() {
    let mut st = primed(&[job("j", "0 3 * * *")], "2027-06-01T12:00:00Z");
    assert_eq!(
        manual(&mut st, "nope", t("2027-06-01T12:00:00Z"), &me(), &alive),
        Manual::Unknown
    );
    let Manual::Start { run, stop } =
        manual(&mut st, "j", t("2027-06-01T12:00:00Z"), &me(), &alive)
    else {
        panic!("not started");
    };
    assert!(stop.is_empty());
    // A second one from another process while it runs: forbidden and recorded.
    let busy = manual(&mut st, "j", t("2027-06-01T12:00:10Z"), &other(), &alive);
    assert!(matches!(busy, Manual::Busy { .. }), "{busy:?}");
    assert_eq!(results(&st, "j")[0].0, RunResult::Skipped);
    let done = st.finish(
        "j",
        run,
        t("2027-06-01T12:01:00Z"),
        1,
        RunOutcome {
            result: RunResult::Succeeded,
            exit_code: Some(0),
            reason: None,
            log_tail: String::new(),
            snapshots: Vec::new(),
        },
    );
    assert_eq!(done.map(|r| r.duration().num_seconds()), Some(60));
    assert!(matches!(
        manual(&mut st, "j", t("2027-06-01T12:02:00Z"), &other(), &alive),
        Manual::Start { .. }
    ));
}
