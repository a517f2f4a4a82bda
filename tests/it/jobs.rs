//! Jobs end to end: the real binary, the real Engine. Under serve the job is declared in the
//! config repository (`kind: Job`) and recorded by the apply; the CLI tests record their tables
//! through the library (`berth::jobs::record_table`, what apply calls) to set up states.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth::jobs::state::{self, Owner, Running, Trigger};
use berth::model::Secret;
use berth::model::jobs::{
    Concurrency, ContainerTask, ExecTask, JobSpec, JobsSpec, Missed, RunResult, ServiceRef, Task,
};

use crate::github_fake::GitHubFake;
use crate::serve::Serve;
use crate::support::{World, docker};

fn exec_job(name: &str, stack: &str, schedule: &str, script: &str) -> JobSpec {
    JobSpec {
        name: name.into(),
        schedule: schedule.into(),
        timezone: Some("UTC".into()),
        task: Task::Exec(ExecTask {
            service: ServiceRef {
                stack: stack.into(),
                service: "web".into(),
            },
            command: vec!["sh".into(), "-c".into(), script.into()],
        }),
        concurrency: Concurrency::Forbid,
        timeout: Duration::from_secs(60),
        retries: 0,
        missed: Missed::RunOnce,
        catch_up: Duration::from_secs(6 * 3600),
        history: 10,
        origin: Default::default(),
    }
}

fn record(state_dir: &Path, instance: &str, jobs: &[JobSpec]) {
    let spec = JobsSpec {
        jobs: jobs.iter().map(|j| (j.name.clone(), j.clone())).collect(),
        defaults: None,
    };
    berth::jobs::record_table(state_dir, instance, &spec, Some("c0ffee")).unwrap();
}

fn results(state_dir: &Path, instance: &str, job: &str) -> Vec<(RunResult, Trigger, String)> {
    let st = state::load(state_dir, instance).unwrap();
    st.jobs
        .get(job)
        .map(|j| {
            j.history
                .iter()
                .map(|r| {
                    (
                        r.outcome.result,
                        r.trigger,
                        r.outcome.reason.clone().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn one_service(stack: &str) -> String {
    format!("name: {stack}\nservices:\n  web:\n    image: berth-test/app:1\n")
}

#[test]
fn a_scheduled_job_fires_under_serve_and_a_restart_catches_a_missed_run_once() {
    let mut s = Serve::new("jobs-serve");
    let a = s.stack("a");
    let instance = s.world.instance.clone();
    let dir = s.state_dir().to_path_buf();
    // Every minute, declared in the repository: serve's apply records it.
    let job = |schedule: &str| {
        format!(
            "kind: Job\nname: tick\nschedule: \"{schedule}\"\ntimezone: UTC\nrun:\n  exec: {{service: {a}/web, command: [sh, -c, \"echo tick at $$(date)\"]}}\n"
        )
    };
    s.push(
        &[
            ("a/compose.yaml", &one_service(&a)),
            ("berth.yaml", &job("* * * * *")),
        ],
        "v1",
    );
    s.start(None);
    s.wait_until(
        "the scheduled run succeeded",
        Duration::from_secs(150),
        || {
            results(&dir, &instance, "tick")
                .iter()
                .any(|(r, t, _)| *r == RunResult::Succeeded && *t == Trigger::Schedule)
        },
    );
    let st = state::load(&dir, &instance).unwrap();
    let run = st.jobs["tick"].last_success().unwrap().clone();
    assert!(
        run.outcome.log_tail.starts_with("tick at "),
        "{:?}",
        run.outcome.log_tail
    );
    assert_eq!(
        run.slot.map(|t| t.timestamp() % 60),
        Some(0),
        "a minute boundary"
    );
    s.wait_until("the metrics show it", Duration::from_secs(10), || {
        s.metric(
            "berth_job_runs_total",
            r#"job="tick",kind="exec",result="succeeded""#,
        ) >= 1.0
    });
    assert!(s.metric("berth_job_last_success_timestamp_seconds", r#"job="tick""#) > 1.7e9);
    assert_eq!(s.stop(), 0);

    // As a berth killed ten minutes ago would have left it: slots missed since, a run going.
    let before = results(&dir, &instance, "tick").len();
    state::update(&dir, &instance, |st| {
        let js = st.jobs.get_mut("tick").unwrap();
        js.last_slot = Some(chrono::Utc::now() - chrono::Duration::minutes(10));
        let id = st.take_id();
        st.jobs.get_mut("tick").unwrap().running.push(Running {
            id,
            trigger: Trigger::Schedule,
            slot: None,
            started: chrono::Utc::now() - chrono::Duration::minutes(10),
            owner: Owner {
                pid: u32::MAX - 7,
                start: 1,
            },
            exec_pid: None,
        });
    })
    .unwrap();
    // Restart away from a minute boundary: with a slot less than GRACE (30 s) ago, that slot's
    // on-time run would stand for the missed one (what this test is about is the catch-up).
    s.wait_until("a second past :32", Duration::from_secs(60), || {
        (33..=50).contains(&chrono::Timelike::second(&chrono::Utc::now()))
    });
    s.start(None);
    s.wait_until(
        "the catch-up run succeeded",
        Duration::from_secs(60),
        || {
            results(&dir, &instance, "tick")
                .iter()
                .any(|(r, t, _)| *r == RunResult::Succeeded && *t == Trigger::CatchUp)
        },
    );
    assert_eq!(s.stop(), 0);
    let after: Vec<_> = results(&dir, &instance, "tick").split_off(before);
    let count = |r: RunResult| after.iter().filter(|(x, _, _)| *x == r).count();
    assert_eq!(count(RunResult::Missed), 1, "{after:#?}");
    assert_eq!(count(RunResult::Interrupted), 1, "{after:#?}");
    assert_eq!(
        after
            .iter()
            .filter(|(_, t, _)| *t == Trigger::CatchUp)
            .count(),
        1,
        "one catch-up run, not one per missed slot: {after:#?}"
    );
    let missed = after
        .iter()
        .find(|(r, _, _)| *r == RunResult::Missed)
        .unwrap();
    assert!(missed.2.starts_with("missed run at "), "{}", missed.2);

    // A restart does not reset the success metric: it is seeded from the history. The job is
    // now yearly (a changed schedule starts from now: nothing runs), so the gauge can only come
    // from the state.
    let last_success = state::load(&dir, &instance).unwrap().jobs["tick"]
        .last_success()
        .unwrap()
        .ended;
    s.push(&[("berth.yaml", &job("@yearly"))], "yearly");
    s.start(None);
    s.wait_until(
        "the success gauge from the history",
        Duration::from_secs(20),
        || {
            let v = s.metric("berth_job_last_success_timestamp_seconds", r#"job="tick""#);
            (v - last_success.timestamp_millis() as f64 / 1000.0).abs() < 0.01
        },
    );

    // A schedule change takes effect at once, without restarting berth: back to every minute
    // (pushed, announced by a webhook), and a scheduled run follows.
    let scheduled = || {
        results(&dir, &instance, "tick")
            .iter()
            .filter(|(r, t, _)| *r == RunResult::Succeeded && *t == Trigger::Schedule)
            .count()
    };
    let before = scheduled();
    let c = s.push(&[("berth.yaml", &job("* * * * *"))], "every minute again");
    let event = crate::serve::push_event(&c);
    let (code, body) = s.webhook("push", &event, "d-schedule", Some(crate::serve::SECRET));
    assert_eq!(code, 202, "{body}");
    s.wait_until(
        "a scheduled run after the schedule change, no restart",
        Duration::from_secs(150),
        || scheduled() > before,
    );
}

fn berth_jobs(w: &World, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("jobs")
        .args(args)
        .env("BERTH_INSTANCE", &w.instance)
        .env("BERTH_STATE_DIR", w.state_dir())
        .output()
        .expect("run berth jobs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn berth_jobs_run_exit_codes_timeouts_secrets_and_forbid() {
    let w = World::new("jobs-cli");
    let a = w.stack("a");
    w.write("a/compose.yaml", &one_service(&a));
    w.berth(&["apply"]).expect(0);
    let dir = w.state_dir();
    let mut slow = exec_job("slow", &a, "@yearly", "sleep 30");
    slow.timeout = Duration::from_secs(1);
    let mut secret = exec_job("secret", &a, "@yearly", "");
    secret.task = Task::Container(ContainerTask {
        image: "berth-test/busybox:1".into(),
        command: vec!["sh".into(), "-c".into(), "echo token=$TOKEN".into()],
        volumes: Vec::new(),
        environment: BTreeMap::from([("TOKEN".to_string(), Secret::new("s3cr3t-value"))]),
        networks: Vec::new(),
    });
    let busy = exec_job("busy", &a, "@yearly", "sleep 4");
    // Fails the first time, succeeds the second (a marker file in the container).
    let mut flaky = exec_job(
        "flaky",
        &a,
        "@yearly",
        "if [ -f /tmp/flaky ]; then echo second; else touch /tmp/flaky; echo first; exit 1; fi",
    );
    flaky.retries = 2;
    // The first run sleeps; the second (replacing it) prints and ends.
    let mut replace = exec_job(
        "replace",
        &a,
        "@yearly",
        "if [ -f /tmp/replaced ]; then echo second; else touch /tmp/replaced; exec sleep 60; fi",
    );
    replace.concurrency = Concurrency::Replace;
    record(
        &dir,
        &w.instance,
        &[
            exec_job("ok", &a, "@daily", "echo hello"),
            exec_job("fail", &a, "@daily", "echo broken; exit 3"),
            slow,
            secret,
            busy,
            flaky,
            replace,
        ],
    );

    let (code, out, err) = berth_jobs(&w, &["run", "ok"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("hello\n") && out.contains("ok: succeeded"),
        "{out}"
    );
    let (code, out, err) = berth_jobs(&w, &["run", "fail"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("fail: failed after") && out.contains("exit 3"),
        "{out}"
    );
    let (code, out, err) = berth_jobs(&w, &["run", "slow"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("slow: timed_out after") && out.contains("timed out after 1s"),
        "{out}"
    );
    let (code, out, err) = berth_jobs(&w, &["run", "flaky"]);
    assert_eq!(code, 0, "{out}{err}");
    let st = state::load(&dir, &w.instance).unwrap();
    let last = st.jobs["flaky"].last().unwrap();
    assert_eq!(
        (last.attempts, last.outcome.log_tail.as_str()),
        (2, "second\n")
    );
    let (code, out, err) = berth_jobs(&w, &["run", "nope"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("no job \"nope\""), "{err}");

    let (code, out, err) = berth_jobs(&w, &["run", "secret"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("token=***"), "{out}");
    assert!(!out.contains("s3cr3t-value") && !err.contains("s3cr3t-value"));
    let state_text = std::fs::read_to_string(state::path(&dir, &w.instance)).unwrap();
    assert!(state_text.contains("token=***"));
    assert_eq!(
        docker(&["ps", "-aq", "--filter", "label=io.berth.job=secret"]),
        "",
        "the job container is removed"
    );

    // concurrency: forbid across processes: a second run while the first goes is refused.
    let first = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["jobs", "run", "busy"])
        .env("BERTH_INSTANCE", &w.instance)
        .env("BERTH_STATE_DIR", &dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while state::load(&dir, &w.instance)
        .unwrap()
        .jobs
        .get("busy")
        .is_none_or(|j| j.running.is_empty())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _, err) = berth_jobs(&w, &["run", "busy"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("still going (concurrency: forbid)"), "{err}");
    let status = first.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(0));
    let busy = results(&dir, &w.instance, "busy");
    assert_eq!(
        busy.iter().map(|(r, _, _)| *r).collect::<Vec<_>>(),
        [RunResult::Skipped, RunResult::Succeeded]
    );

    // concurrency: replace across processes: the second run kills the first's command.
    let first = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["jobs", "run", "replace"])
        .env("BERTH_INSTANCE", &w.instance)
        .env("BERTH_STATE_DIR", &dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while state::load(&dir, &w.instance)
        .unwrap()
        .jobs
        .get("replace")
        .is_none_or(|j| j.running.iter().all(|r| r.exec_pid.is_none()))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never started its command"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = std::time::Instant::now();
    let (code, out, err) = berth_jobs(&w, &["run", "replace"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("second"), "{out}");
    let status = first.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(1), "the replaced run failed");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the first run was stopped, not waited for"
    );
    let replaced = results(&dir, &w.instance, "replace");
    assert_eq!(replaced.len(), 2, "{replaced:?}");
    assert!(
        replaced
            .iter()
            .any(|(r, _, why)| *r == RunResult::Failed && why == "exit 137"),
        "{replaced:?}"
    );

    // The list: every job, its last result; JSON too.
    let (code, out, _) = berth_jobs(&w, &[]);
    assert_eq!(code, 0);
    let line = |job: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{job} ")))
            .unwrap_or_else(|| panic!("{job} in\n{out}"))
            .to_string()
    };
    assert!(line("ok").contains("succeeded"), "{out}");
    assert!(line("fail").contains("failed"), "{out}");
    assert!(line("slow").contains("timed_out"), "{out}");
    assert!(
        line("ok").contains("@daily") && line("ok").contains("UTC"),
        "{out}"
    );
    let (code, json, _) = berth_jobs(&w, &["--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["commit"], "c0ffee");
    let jobs = v["jobs"].as_array().unwrap();
    let fail = jobs.iter().find(|j| j["name"] == "fail").unwrap();
    assert_eq!(fail["last"]["outcome"]["result"], "failed");
    assert_eq!(fail["last"]["outcome"]["exit_code"], 3);
    assert!(fail["next_run"].as_str().is_some());
    assert!(!json.contains("s3cr3t-value"));
}

/// A Backup that cannot work (its repository is a file), run by serve on schedule: a failure
/// status on the commit its table was recorded from, the reason without the password, and the
/// metrics the alerts use (never succeeded: last success 0; one failure in a row or more).
#[test]
fn a_failing_backup_under_serve_posts_a_failure_status_on_the_recorded_commit() {
    const PASSWORD: &str = "bk-status-pw-s3cr3t";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(GitHubFake::start());
    let mut s = Serve::new("jobs-bk-status");
    s.args = vec!["--poll-interval".into(), "1h".into()];
    s.env
        .push(("BK_STATUS_PASSWORD".to_string(), PASSWORD.to_string()));
    let a = s.stack("a");
    let not_a_repo = s
        .world
        .write("not-a-repo", "a file, not a restic repository\n");
    let backup = format!(
        "kind: Backup\nname: nightly\nschedule: \"* * * * *\"\ntimezone: UTC\nrepository: {}\npassword: ${{BK_STATUS_PASSWORD}}\npaths: [/etc/hostname]\nretention: {{daily: 7}}\nimage: berth-test/restic:0.14\n",
        not_a_repo.display()
    );
    let commit = s.push(
        &[
            ("a/compose.yaml", &one_service(&a)),
            ("berth.yaml", &backup),
        ],
        "v1 with a backup",
    );
    s.start(Some(&fake));
    let context = "berth/it/backup/nightly";
    s.wait_until(
        "a failure status for the backup on the recorded commit",
        Duration::from_secs(150),
        || {
            fake.statuses_for(&commit)
                .iter()
                .any(|x| x.context == context && x.state == "failure")
        },
    );
    // A Backup is not a stack, nor a host setting: one stack counted, no `host` status, the
    // job table under its own context.
    let statuses = fake.statuses_for(&commit);
    assert!(
        !statuses.iter().any(|x| x.context == "berth/it/host"),
        "{statuses:?}"
    );
    let last = |context: &str| {
        statuses
            .iter()
            .rfind(|x| x.context == context)
            .and_then(|x| x.description.clone())
            .unwrap_or_default()
    };
    assert!(last("berth/it").starts_with("1 stack at "), "{statuses:?}");
    assert!(
        last("berth/it/host/jobs").starts_with("job table recorded"),
        "{statuses:?}"
    );
    let st = state::load(s.state_dir(), &s.world.instance).unwrap();
    assert_eq!(st.commit.as_deref(), Some(commit.as_str()));
    let posted = fake
        .statuses_for(&commit)
        .into_iter()
        .rfind(|x| x.context == context)
        .unwrap();
    let description = posted.description.unwrap_or_default();
    let reason = results(s.state_dir(), &s.world.instance, "nightly")
        .into_iter()
        .find(|(r, _, _)| *r == RunResult::Failed)
        .map(|(_, _, reason)| reason)
        .expect("a failed run in the history");
    assert!(!description.is_empty());
    assert!(
        description.chars().count() <= 140,
        "{description:?} is over GitHub's limit"
    );
    assert!(
        reason.starts_with(description.trim_end_matches('…')),
        "the description {description:?} is the run's reason {reason:?}"
    );
    for r in fake.requests() {
        assert!(!format!("{:?}", r.body).contains(PASSWORD), "{r:?}");
    }
    assert!(!s.log().contains(PASSWORD));

    // What the alerts read: never succeeded, failing.
    s.wait_until("the failure counted", Duration::from_secs(10), || {
        s.metric(
            "berth_job_consecutive_failures",
            r#"job="nightly",kind="backup""#,
        ) >= 1.0
    });
    assert!(
        s.metrics()
            .contains(r#"berth_job_last_success_timestamp_seconds{job="nightly",kind="backup"} 0"#)
    );
    assert_eq!(s.stop(), 0);
    fake.assert_no_violations();
}
