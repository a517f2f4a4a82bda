use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::*;
use crate::model::jobs::{Concurrency, ContainerTask, JobSpec, JobsSpec, Missed, RunResult, Task};

fn container_job(secret: &str) -> JobSpec {
    JobSpec {
        name: "dump".into(),
        schedule: "@daily".into(),
        timezone: None,
        task: Task::Container(ContainerTask {
            image: "alpine:3".into(),
            command: vec!["sh".into(), "-c".into(), "echo $TOKEN".into()],
            volumes: Vec::new(),
            environment: BTreeMap::from([("TOKEN".to_string(), Secret::new(secret))]),
            networks: Vec::new(),
        }),
        concurrency: Concurrency::Forbid,
        timeout: Duration::from_secs(60),
        retries: 1,
        missed: Missed::RunOnce,
        catch_up: Duration::from_secs(3600),
        history: 2,
        origin: Default::default(),
    }
}

#[test]
fn a_missing_file_is_an_empty_state() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(load(dir.path(), "default").unwrap(), JobsState::default());
}

#[test]
fn the_table_round_trips_with_secret_values_in_a_0600_file() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let spec = JobsSpec {
        jobs: BTreeMap::from([("dump".to_string(), container_job("s3cr3t-value"))]),
        defaults: None,
    };
    record_table(&state_dir, "default", &spec, Some("abc123")).unwrap();
    let p = path(&state_dir, "default");
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dmode = std::fs::metadata(&state_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dmode, 0o700);
    let back = load(&state_dir, "default").unwrap();
    assert_eq!(back.table, spec.jobs);
    assert_eq!(back.commit.as_deref(), Some("abc123"));
    let Task::Container(c) = &back.table["dump"].task else {
        panic!("not a container task")
    };
    assert_eq!(c.environment["TOKEN"].expose(), "s3cr3t-value");
    // Debug output never shows it.
    assert!(!format!("{back:?}").contains("s3cr3t-value"));
    // A job that left the config loses its bookkeeping.
    update(&state_dir, "default", |s| {
        s.jobs.insert("gone".into(), JobState::default());
    })
    .unwrap();
    record_table(&state_dir, "default", &spec, None).unwrap();
    let back = load(&state_dir, "default").unwrap();
    assert!(!back.jobs.contains_key("gone"));
    assert_eq!(back.commit, None);
}

#[test]
fn a_corrupt_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(path(dir.path(), "x"), "{not json").unwrap();
    let err = load(dir.path(), "x").unwrap_err().to_string();
    assert!(err.contains("jobs-x.json is not valid"), "{err}");
}

#[test]
fn records_are_bounded_by_history() {
    let dir = tempfile::tempdir().unwrap();
    let spec = JobsSpec {
        jobs: BTreeMap::from([("dump".to_string(), container_job("v"))]),
        defaults: None,
    };
    record_table(dir.path(), "default", &spec, None).unwrap();
    for _ in 0..5 {
        update(dir.path(), "default", |s| {
            let now = Utc::now();
            let id = crate::jobs::scheduler::begin(
                s,
                "dump",
                Trigger::Manual,
                None,
                now,
                &Owner::current(),
            );
            s.finish(
                "dump",
                id,
                now,
                1,
                RunOutcome {
                    result: RunResult::Failed,
                    exit_code: Some(1),
                    reason: Some("exit 1".into()),
                    log_tail: String::new(),
                    snapshots: Vec::new(),
                },
            );
        })
        .unwrap();
    }
    let st = load(dir.path(), "default").unwrap();
    assert_eq!(st.jobs["dump"].history.len(), 2);
    assert_eq!(st.jobs["dump"].history.back().map(|r| r.id), Some(5));
}

#[test]
fn this_process_is_alive_and_a_made_up_one_is_not() {
    let me = Owner::current();
    assert!(me.is_alive());
    assert!(
        !Owner {
            pid: me.pid,
            start: me.start + 1
        }
        .is_alive()
    );
}
