//! `kind: Job`, `Backup`, `Prune`, `Defaults`: keys, defaults, references to the stacks and
//! every error's `file:line:col: message`, through `compose::load_dir` as `berth validate` does.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use crate::compose::load_dir;
use crate::model::Desired;
use crate::model::jobs::*;

const BLOG: &str = "services:\n  db:\n    image: postgres\n  worker:\n    image: worker\n    logging:\n      driver: local\nvolumes:\n  dbdata:\nnetworks:\n  back:\n";

fn load(files: &[(&str, &str)]) -> Result<Desired, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    let env: BTreeMap<String, String> = [("RESTIC_PASSWORD", "hunter2"), ("B2_KEY", "k3y")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_dir(dir.path(), &env).map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

fn jobs(text: &str) -> JobsSpec {
    load(&[("apps/blog/compose.yaml", BLOG), ("berth.yaml", text)])
        .unwrap_or_else(|e| panic!("{e:#?}"))
        .jobs
}

fn errs(text: &str) -> Vec<String> {
    load(&[("apps/blog/compose.yaml", BLOG), ("berth.yaml", text)]).expect_err("an error")
}

#[test]
fn a_job_with_defaults() {
    let j = jobs(
        "kind: Job\nname: vacuum\nschedule: \"0 2 * * 0\"\nrun:\n  exec: {service: apps/blog/db, command: [vacuumdb, -az]}\n",
    );
    let v = &j.jobs["vacuum"];
    assert_eq!(v.schedule, "0 2 * * 0");
    assert_eq!(v.timezone, None);
    assert_eq!(v.concurrency, Concurrency::Forbid);
    assert_eq!(v.missed, Missed::RunOnce);
    assert_eq!(v.timeout, DEFAULT_TIMEOUT);
    assert_eq!(v.catch_up, DEFAULT_CATCH_UP);
    assert_eq!(v.history, DEFAULT_HISTORY);
    assert_eq!(v.retries, 0);
    assert_eq!(
        v.task,
        Task::Exec(ExecTask {
            service: ServiceRef {
                stack: "blog".into(),
                service: "db".into()
            },
            command: vec!["vacuumdb".into(), "-az".into()],
        })
    );
    assert_eq!(v.origin.to_string(), "berth.yaml:1:1");
}

#[test]
fn a_job_with_every_key() {
    let j = jobs(
        "kind: Job\nname: report\nschedule: \"@daily\"\ntimezone: Europe/Paris\nrun:\n  container:\n    image: busybox\n    command: sh -c 'echo hi'\n    volumes: [\"blog/dbdata:/data:ro\", \"/srv/x:/x\"]\n    environment: {TOKEN: abc}\n    networks: [blog/back, outside]\nconcurrency: replace\ntimeout: 1h\nretries: 2\nmissed: skip\ncatch_up: 30m\nhistory: 3\n",
    );
    let r = &j.jobs["report"];
    assert_eq!(r.timezone.as_deref(), Some("Europe/Paris"));
    assert_eq!(r.concurrency, Concurrency::Replace);
    assert_eq!(r.missed, Missed::Skip);
    assert_eq!(r.timeout, Duration::from_secs(3600));
    assert_eq!(r.catch_up, Duration::from_secs(1800));
    assert_eq!((r.retries, r.history), (2, 3));
    let Task::Container(c) = &r.task else {
        panic!("{:?}", r.task)
    };
    assert_eq!(c.command, ["sh", "-c", "echo hi"]);
    assert_eq!(c.networks, ["blog_back", "outside"]);
    assert_eq!(c.environment["TOKEN"].expose(), "abc");
    assert_eq!(
        c.volumes[0],
        Mount {
            source: MountSource::Volume(VolumeRef {
                stack: "blog".into(),
                volume: "dbdata".into(),
                engine_name: "blog_dbdata".into(),
                folder: "apps/blog".into(),
            }),
            target: "/data".into(),
            read_only: true
        }
    );
    assert_eq!(c.volumes[1].source, MountSource::Host("/srv/x".into()));
}

const BACKUP: &str = "kind: Backup\nname: nightly\nschedule: \"0 3 * * *\"\nrepository: /srv/restic\npassword: ${RESTIC_PASSWORD}\nenvironment: {AWS_SECRET_ACCESS_KEY: \"${B2_KEY}\"}\nvolumes: [apps/blog/dbdata]\npaths: [/etc/berth]\ndumps:\n  - {service: apps/blog/db, command: [pg_dumpall, -U, postgres], file: blog.sql}\nstop: [apps/blog/worker]\nretention: {daily: 7, weekly: 4, monthly: 6}\ncheck: {schedule: \"0 2 * * 0\", read_data_subset: 5%}\nimage: berth-test/restic:0.14\n";

#[test]
fn a_backup_and_its_check_job() {
    let j = jobs(BACKUP);
    let b = &j.jobs["nightly"];
    let Task::Backup(spec) = &b.task else {
        panic!("{:?}", b.task)
    };
    assert_eq!(spec.repository.expose(), "/srv/restic");
    assert!(spec.repository_is_path());
    assert_eq!(spec.password.expose(), "hunter2");
    assert_eq!(spec.environment["AWS_SECRET_ACCESS_KEY"].expose(), "k3y");
    assert_eq!(spec.volumes[0].engine_name, "blog_dbdata");
    assert_eq!(spec.paths, [std::path::PathBuf::from("/etc/berth")]);
    assert_eq!(spec.dumps[0].file, "blog.sql");
    assert_eq!(spec.dumps[0].service.to_string(), "blog/db");
    assert_eq!(spec.stop[0].to_string(), "blog/worker");
    assert_eq!(
        spec.retention.flags().join(" "),
        "--keep-daily 7 --keep-weekly 4 --keep-monthly 6"
    );
    assert_eq!(spec.image, "berth-test/restic:0.14");
    assert_eq!(spec.min_size_ratio, DEFAULT_MIN_SIZE_RATIO);
    let c = &j.jobs["nightly/check"];
    assert_eq!(c.schedule, "0 2 * * 0");
    assert_eq!(
        c.task,
        Task::Check {
            backup: "nightly".into(),
            read_data_subset: Some("5%".into())
        }
    );
    assert_eq!(j.backups().count(), 1);
    // The secrets never show in Debug output.
    let dbg = format!("{j:?}");
    assert!(!dbg.contains("hunter2") && !dbg.contains("k3y"), "{dbg}");
}

#[test]
fn backup_defaults_and_ratio_forms() {
    let j = jobs(
        "kind: Backup\nname: b\nschedule: \"@daily\"\nrepository: rest:http://u:pw@127.0.0.1:8000/\npassword: x\npaths: [/srv]\nmin_size_ratio: \"25%\"\n",
    );
    let Task::Backup(b) = &j.jobs["b"].task else {
        panic!()
    };
    assert_eq!(b.image, crate::berthfile::DEFAULT_RESTIC_IMAGE);
    assert!(b.retention.is_empty() && b.check.is_none());
    assert_eq!(b.min_size_ratio, 0.25);
    assert_eq!(b.repository_display(), "rest:http://***@127.0.0.1:8000/");
}

#[test]
fn prune_and_defaults() {
    let d = load(&[
        ("apps/blog/compose.yaml", BLOG),
        (
            "berth.yaml",
            "kind: Prune\nschedule: \"0 2 * * 0\"\nkeep_commits: 3\n---\nkind: Defaults\nlogging:\n  driver: json-file\n  options: {max-size: 10m, max-file: 3}\n",
        ),
    ])
    .unwrap();
    assert_eq!(
        d.jobs.jobs["prune"].task,
        Task::Prune(PruneSpec { keep_commits: 3 })
    );
    // A service without `logging` gets the default; one with its own keeps it.
    let s = &d.stacks["blog"].services;
    let db = s["db"].logging.as_ref().unwrap();
    assert_eq!(db.driver.as_deref(), Some("json-file"));
    assert_eq!(db.options["max-size"], "10m");
    assert_eq!(db.options["max-file"], "3");
    assert_eq!(
        s["worker"].logging.as_ref().unwrap().driver.as_deref(),
        Some("local")
    );
}

#[test]
fn errors_are_located() {
    for (text, want) in [
        (
            "kind: Job\nname: j\nschedule: \"0 3 * *\"\nrun: {exec: {service: blog/db, command: [x]}}\n",
            "berth.yaml:3:11: schedule: schedule \"0 3 * *\" has 4 fields; expected 5",
        ),
        (
            "kind: Job\nname: j\nschedule: \"@daily\"\nrun: {exec: {service: blog/dbb, command: [x]}}\n",
            "berth.yaml:4:23: run.exec.service: stack `blog` has no service `dbb`; did you mean `db`?",
        ),
        (
            "kind: Job\nname: j\nschedule: \"@daily\"\nrun: {exec: {service: nope/db, command: [x]}}\n",
            "berth.yaml:4:23: run.exec.service: no stack `nope` in the config",
        ),
        (
            "kind: Job\nname: j\nschedule: \"@daily\"\n",
            "berth.yaml:1:1: a Job needs `run:`",
        ),
        (
            "kind: Job\nname: j\nschedule: \"@daily\"\nrun: {exec: {service: blog/db, command: [x]}, container: {image: x}}\n",
            "berth.yaml:4:47: run: set one of `exec` and `container`, not both",
        ),
        (
            "kind: Job\nname: j\nschedule: \"@daily\"\nconcurrency: never\nrun: {exec: {service: blog/db, command: [x]}}\n",
            "berth.yaml:4:14: concurrency: must be one of forbid, replace, allow, found \"never\"",
        ),
        (
            "kind: Job\nname: j\nschedule: \"@daily\"\ntimeout: 10\nrun: {exec: {service: blog/db, command: [x]}}\n",
            "berth.yaml:4:10: timeout: must be a string",
        ),
        (
            "kind: Job\nname: j k\nschedule: \"@daily\"\nrun: {exec: {service: blog/db, command: [x]}}\n",
            "berth.yaml:2:7: name: invalid name \"j k\"",
        ),
        (
            "kind: Job\nname: j\nschedule: \"@daily\"\nretry: 1\nrun: {exec: {service: blog/db, command: [x]}}\n",
            "berth.yaml:4:1: unknown key `retry` in Job (known keys: kind, name, schedule, timezone, concurrency, timeout, retries,",
        ),
        (
            "kind: Backup\nname: b\nschedule: \"@daily\"\npassword: x\npaths: [/srv]\n",
            "berth.yaml:1:1: a Backup needs `repository`",
        ),
        (
            "kind: Backup\nname: b\nschedule: \"@daily\"\nrepository: restic\npassword: x\npaths: [/srv]\n",
            "berth.yaml:4:13: repository: must be an absolute host path or a restic URL",
        ),
        (
            "kind: Backup\nname: b\nschedule: \"@daily\"\nrepository: /r\npassword: x\n",
            "berth.yaml:1:1: a Backup needs something to save",
        ),
        (
            "kind: Backup\nname: b\nschedule: \"@daily\"\nrepository: /r\npassword: x\nvolumes: [blog/data]\n",
            "berth.yaml:6:11: volumes: stack `blog` has no named volume `data`",
        ),
        (
            "kind: Backup\nname: b\nschedule: \"@daily\"\nrepository: /r\npassword: x\npaths: [/srv]\nretention: {dayly: 7}\n",
            "berth.yaml:7:13: retention: unknown key `dayly` in retention; did you mean `daily`?",
        ),
        (
            "kind: Backup\nname: b\nschedule: \"@daily\"\nrepository: /r\npassword: x\npaths: [/srv]\ncheck: {schedule: \"@weekly\", read_data_subset: lots}\n",
            "berth.yaml:7:48: check.read_data_subset: invalid subset \"lots\"",
        ),
        (
            "kind: Backup\nname: b\nschedule: \"@daily\"\nrepository: /r\npassword: x\ndumps:\n  - {service: blog/db, command: [a], file: x.sql}\n  - {service: blog/db, command: [b], file: x.sql}\n",
            "berth.yaml:8:44: dumps.file: `x.sql` is the file of another dump of this backup",
        ),
        (
            "kind: Backup\nname: b\nschedule: \"@daily\"\nrepository: /r\npassword: x\npaths: [/srv]\nmin_size_ratio: 2\n",
            "berth.yaml:7:17: min_size_ratio: must be a fraction from 0 to 1",
        ),
        (
            "kind: Job\nname: j\nschedule: \"61 * * * *\"\nrun: {exec: {service: blog/db, command: [x]}}\n",
            "berth.yaml:3:11: schedule: schedule \"61 * * * *\": minute",
        ),
        (
            "kind: Job\nname: j\nschedule: \"@daily\"\ntimezone: Mars/Olympus\nrun: {exec: {service: blog/db, command: [x]}}\n",
            "berth.yaml:4:11: timezone: unknown time zone \"Mars/Olympus\"",
        ),
        (
            "kind: Defaults\n",
            "berth.yaml:1:1: a Defaults document needs `logging:`",
        ),
    ] {
        let e = errs(text);
        assert!(
            e.len() == 1 && e[0].starts_with(want),
            "{text}\nwant: {want}\ngot:  {e:#?}"
        );
    }
}

#[test]
fn a_repository_or_password_is_never_echoed() {
    let e = errs(
        "kind: Backup\nname: b\nschedule: \"@daily\"\nrepository: ftp://u:s3cret@h/\npassword: [x]\npaths: [/srv]\n",
    );
    assert!(e.iter().all(|e| !e.contains("s3cret")), "{e:#?}");
}

#[test]
fn two_jobs_with_one_name_name_both_places() {
    let e = load(&[
        ("apps/blog/compose.yaml", BLOG),
        ("a.berth.yaml", "kind: Prune\nname: p\nschedule: \"@weekly\"\n"),
        ("b.berth.yaml", "kind: Job\nname: p\nschedule: \"@daily\"\nrun: {exec: {service: blog/db, command: [x]}}\n"),
    ])
    .expect_err("duplicate");
    assert_eq!(
        e,
        ["b.berth.yaml:1:1: `job:p` is already declared at a.berth.yaml:1:1"]
    );
    let e = load(&[(
        "berth.yaml",
        "kind: Defaults\nlogging: {driver: local}\n---\nkind: Defaults\nlogging: {driver: local}\n",
    )])
    .expect_err("two defaults");
    assert_eq!(
        e,
        [
            "berth.yaml:4:1: `kind: Defaults (at most one per config)` is already declared at berth.yaml:1:1"
        ]
    );
}
