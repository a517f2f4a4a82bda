//! The job table (`jobs:schedule`): added, changed (what can be shown) and removed jobs, and
//! nothing when the recorded table matches; secrets never shown.

use std::collections::BTreeMap;
use std::time::Duration;

use super::tests::check;
use super::*;
use crate::kinds::job::recorded;
use crate::model::host::Origin;
use crate::model::jobs::*;
use crate::model::{Desired, Observed, Secret};

fn job(name: &str, schedule: &str, task: Task) -> JobSpec {
    JobSpec {
        name: name.into(),
        schedule: schedule.into(),
        timezone: None,
        task,
        concurrency: Concurrency::Forbid,
        timeout: Duration::from_secs(3600),
        retries: 0,
        missed: Missed::RunOnce,
        catch_up: DEFAULT_CATCH_UP,
        history: 10,
        origin: Origin {
            file: "berth.yaml".into(),
            line: 1,
            col: 1,
        },
    }
}

fn backup(password: &str) -> JobSpec {
    job(
        "nightly",
        "0 3 * * *",
        Task::Backup(Box::new(BackupSpec {
            name: "nightly".into(),
            repository: Secret::new("rest:http://user:repopass@10.0.0.1:8000/"),
            password: Secret::new(password),
            environment: BTreeMap::from([("B2_KEY".into(), Secret::new("b2-secret-key"))]),
            volumes: Vec::new(),
            paths: vec!["/etc/berth".into()],
            dumps: Vec::new(),
            stop: Vec::new(),
            retention: Retention {
                daily: 7,
                ..Retention::default()
            },
            check: None,
            image: "restic/restic:0.17.3".into(),
            min_size_ratio: 0.5,
        })),
    )
}

fn prune() -> JobSpec {
    job(
        "prune",
        "0 2 * * 0",
        Task::Prune(PruneSpec { keep_commits: 5 }),
    )
}

fn desired(jobs: Vec<JobSpec>) -> Desired {
    let mut d = Desired::default();
    d.jobs.jobs = jobs.into_iter().map(|j| (j.name.clone(), j)).collect();
    d
}

fn observed(jobs: &[JobSpec]) -> Observed {
    let mut o = Observed::default();
    o.jobs.recorded = jobs.iter().map(|j| (j.name.clone(), recorded(j))).collect();
    o
}

#[test]
fn a_new_table_lists_every_job() {
    let d = desired(vec![backup("hunter22"), prune()]);
    check("jobs_new", &d, &Observed::default(), PlanOptions::default());
}

#[test]
fn the_recorded_table_plans_nothing() {
    let d = desired(vec![backup("hunter22"), prune()]);
    let p = check(
        "jobs_same",
        &d,
        &observed(&[backup("hunter22"), prune()]),
        PlanOptions::default(),
    );
    assert!(!p.has_changes());
}

#[test]
fn changes_show_the_schedule_but_never_a_secret() {
    let mut moved = prune();
    moved.schedule = "0 4 * * 0".into();
    let d = desired(vec![backup("new-password"), moved]);
    let p = check(
        "jobs_changed",
        &d,
        &observed(&[backup("hunter22"), prune()]),
        PlanOptions::default(),
    );
    let text = crate::render::plan_text(&p);
    assert!(
        text.contains("~ job nightly: backup settings changed"),
        "{text}"
    );
    assert!(
        text.contains(r#"~ job prune: schedule "0 2 * * 0" → "0 4 * * 0""#),
        "{text}"
    );
}

#[test]
fn removed_jobs_are_listed() {
    let p = check(
        "jobs_removed",
        &desired(vec![prune()]),
        &observed(&[backup("hunter22"), prune()]),
        PlanOptions::default(),
    );
    assert_eq!(p.changes[0].op, Op::Update);
    let p = check(
        "jobs_all_removed",
        &Desired::default(),
        &observed(&[prune()]),
        PlanOptions::default(),
    );
    assert_eq!(p.changes[0].op, Op::Delete);
}

#[test]
fn an_unreadable_table_is_an_error() {
    let mut o = Observed::default();
    o.jobs.error = Some("state/jobs-default.json: invalid JSON at line 1".into());
    let p = check(
        "jobs_unreadable",
        &desired(vec![prune()]),
        &o,
        PlanOptions::default(),
    );
    assert!(p.changes.is_empty() && !p.errors.is_empty());
}

#[test]
fn next_runs_are_shown_in_the_jobs_zone() {
    let mut paris = job(
        "report",
        "30 2 * * *",
        Task::Prune(PruneSpec { keep_commits: 1 }),
    );
    paris.timezone = Some("Europe/Paris".into());
    let opts = PlanOptions {
        clock: Some(PlanClock {
            now: "2027-03-27T12:00:00Z".parse().unwrap(),
            host_zone: chrono_tz::America::New_York,
        }),
        ..Default::default()
    };
    let p = check(
        "jobs_next_run",
        &desired(vec![paris, prune()]),
        &Observed::default(),
        opts,
    );
    let text = crate::render::plan_text(&p);
    // 02:30 does not exist in Paris that night (spring forward): the run is at 03:00 CEST.
    assert!(
        text.contains(
            "+ job report: prune at \"30 2 * * *\" (Europe/Paris); next run 2027-03-28 03:00 CEST"
        ),
        "{text}"
    );
    // A job without a zone runs in the host's.
    assert!(text.contains("+ job prune: prune at \"0 2 * * 0\" (the host's time zone); next run 2027-03-28 02:00 EDT"), "{text}");
}
