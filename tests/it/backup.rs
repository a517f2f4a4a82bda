//! Backups on real parts: restic 0.14 (Debian's) in `berth-test/restic:0.14`, a local
//! repository and a `rest:` one served by `rclone serve restic`, a real Postgres
//! (`berth-test/postgres:15`) for the dumps, stacks applied by `berth apply`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth::docker::Engine;
use berth::model::Secret;
use berth::model::jobs::{
    BackupSpec, Dump, Retention, RunResult, ServiceRef, SnapshotRecord, VolumeRef,
};
use berth::restic::restore::{self, Target};
use berth::restic::{self as restic, Context};

use crate::support::{World, docker, free_port, inspect, test_labels};

const RESTIC_IMAGE: &str = "berth-test/restic:0.14";

/// A stack with a Postgres (`db`, volume `pgdata`) and a worker (`worker`, volume `files`).
struct Fixture {
    w: World,
    stack: String,
    cx: Context,
}

impl Fixture {
    async fn new(test: &str) -> Fixture {
        let w = World::new(test);
        let stack = w.stack("app");
        w.write(
            "app/compose.yaml",
            &format!(
                "name: {stack}\nservices:\n  db:\n    image: berth-test/postgres:15\n    volumes: [pgdata:/var/lib/postgresql/data]\n  worker:\n    image: berth-test/busybox:1\n    command: [sleep, '3600']\n    volumes: [files:/data]\nvolumes:\n  pgdata: {{}}\n  files: {{}}\n"
            ),
        );
        w.berth(&["apply"]).expect(0);
        let engine = Engine::connect()
            .await
            .expect("the Docker Engine is reachable")
            .with_instance(&w.instance);
        let f = Fixture {
            cx: Context::new(engine),
            stack,
            w,
        };
        f.wait_for_postgres();
        f
    }

    fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.stack)
    }

    fn service(&self, service: &str) -> ServiceRef {
        ServiceRef {
            stack: self.stack.clone(),
            service: service.into(),
        }
    }

    fn volume(&self, volume: &str) -> VolumeRef {
        VolumeRef {
            stack: self.stack.clone(),
            volume: volume.into(),
            engine_name: format!("{}_{volume}", self.stack),
            // The fixture's stack lives in `app/`.
            folder: "app".into(),
        }
    }

    fn wait_for_postgres(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new("docker")
                .args([
                    "exec",
                    &self.container("db"),
                    "pg_isready",
                    "-q",
                    "-U",
                    "postgres",
                ])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "postgres did not get ready");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn sh(&self, service: &str, script: &str) -> String {
        docker(&["exec", &self.container(service), "sh", "-c", script])
    }

    fn psql(&self, sql: &str) -> String {
        docker(&[
            "exec",
            &self.container("db"),
            "psql",
            "-U",
            "postgres",
            "-tA",
            "-c",
            sql,
        ])
    }

    /// A Backup of the worker's volume, `paths`, and a dump of the database.
    fn spec(&self, repository: &str, paths: Vec<PathBuf>) -> BackupSpec {
        BackupSpec {
            name: "nightly".into(),
            repository: Secret::new(repository.to_string()),
            password: Secret::new("correct horse battery".to_string()),
            environment: Default::default(),
            volumes: vec![self.volume("files")],
            paths,
            dumps: vec![Dump {
                service: self.service("db"),
                command: vec!["pg_dumpall".into(), "-U".into(), "postgres".into()],
                file: "all.sql".into(),
            }],
            stop: vec![self.service("worker")],
            retention: Retention {
                daily: 7,
                weekly: 4,
                monthly: 6,
                ..Retention::default()
            },
            check: None,
            image: RESTIC_IMAGE.into(),
            min_size_ratio: 0.5,
        }
    }

    fn started_at(&self, service: &str) -> String {
        inspect(&self.container(service), "{{.State.StartedAt}}")
    }

    fn running(&self, service: &str) -> bool {
        inspect(&self.container(service), "{{.State.Running}}") == "true"
    }

    /// Checksums of every file in the worker's volume.
    fn volume_sums(&self) -> String {
        self.sh(
            "worker",
            "cd /data && find . -type f | sort | xargs -r md5sum; find . | sort",
        )
    }
}

fn sums(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn repo_dir(w: &World) -> PathBuf {
    let p = w.path().join("repo");
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[tokio::test]
async fn backup_then_delete_then_restore_gives_the_same_files_and_rows() {
    let f = Fixture::new("bk-restore").await;
    let repo = repo_dir(&f.w);
    // The data set: ~20 MiB of random data and small files in a volume, a host folder, a row.
    f.sh(
        "worker",
        "mkdir -p /data/sub && head -c 20971520 /dev/urandom >/data/big && echo one >/data/a && echo two >/data/sub/b",
    );
    let host = f.w.path().join("etc-app");
    std::fs::create_dir_all(host.join("conf.d")).unwrap();
    std::fs::write(host.join("app.conf"), "port = 8080\n").unwrap();
    std::fs::write(host.join("conf.d/x.conf"), vec![7u8; 100_000]).unwrap();
    f.psql("CREATE TABLE notes (id int primary key, body text); INSERT INTO notes VALUES (1, 'kept by the dump');");
    let spec = f.spec(repo.to_str().unwrap(), vec![host.clone()]);
    let worker_before = f.started_at("worker");

    let t = Instant::now();
    let out = restic::backup(&f.cx, &spec, Some("abc123"), &[]).await;
    let backup_time = t.elapsed();
    assert_eq!(out.result, RunResult::Succeeded, "{out:?}");
    let sources: Vec<&str> = out.snapshots.iter().map(|s| s.source.as_str()).collect();
    let vol = format!("volume:{}/files", f.stack);
    let path = format!("path:{}", host.display());
    assert_eq!(sources, vec![vol.as_str(), path.as_str(), "dump:all.sql"]);
    assert!(
        out.snapshots
            .iter()
            .all(|s| s.id.len() == 64 && s.bytes > 0),
        "{out:?}"
    );
    assert!(out.snapshots[0].bytes >= 20 * 1024 * 1024);
    // The worker was stopped for the backup and runs again.
    assert!(f.running("worker"));
    assert_ne!(f.started_at("worker"), worker_before);
    assert!(!out.log_tail.contains("correct horse"), "{}", out.log_tail);

    let volume_before = f.volume_sums();
    let host_before = sums(&host);
    // Lose everything.
    f.sh("worker", "rm -rf /data/* && echo stray >/data/stray");
    std::fs::remove_dir_all(&host).unwrap();
    f.psql("DROP TABLE notes;");
    assert_ne!(f.volume_sums(), volume_before);

    let t = Instant::now();
    let v = restore::restore(&f.cx, &spec, "latest", &Target::Volume(f.volume("files")))
        .await
        .expect("volume restored");
    let restore_time = t.elapsed();
    assert_eq!(v.id, out.snapshots[0].id);
    assert!(f.running("worker"), "the volume's user runs again");
    assert_eq!(
        f.volume_sums(),
        volume_before,
        "the volume holds exactly the snapshot"
    );

    restore::restore(&f.cx, &spec, "latest", &Target::Path(host.clone()))
        .await
        .expect("path restored");
    assert_eq!(sums(&host), host_before);

    let dump = f.w.path().join("all.sql");
    restore::restore(
        &f.cx,
        &spec,
        &out.snapshots[2].id[..8],
        &Target::Dump {
            file: "all.sql".into(),
            to: dump.clone(),
        },
    )
    .await
    .expect("dump restored");
    let sql = std::fs::read_to_string(&dump).unwrap();
    assert!(sql.contains("kept by the dump"), "{sql}");
    let status = Command::new("docker")
        .args([
            "exec",
            "-i",
            &f.container("db"),
            "psql",
            "-q",
            "-U",
            "postgres",
            "-f",
            "-",
        ])
        .stdin(std::fs::File::open(&dump).unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        f.psql("SELECT body FROM notes WHERE id = 1"),
        "kept by the dump"
    );
    eprintln!(
        "backup figures: backup of ~20.2 MiB (1 volume, 1 folder, 1 dump) {:.2}s, restore of the volume {:.2}s",
        backup_time.as_secs_f64(),
        restore_time.as_secs_f64()
    );

    // Size check: the folder shrinks to almost nothing, the next run fails on it.
    std::fs::remove_file(host.join("conf.d/x.conf")).unwrap();
    let again = restic::backup(&f.cx, &spec, Some("abc124"), &out.snapshots).await;
    assert_eq!(again.result, RunResult::Failed);
    let reason = again.reason.clone().unwrap();
    assert!(
        reason.starts_with(&format!(
            "{path}: 12 B is below 0.5 × the previous run's 97.7 KiB"
        )),
        "{reason}"
    );
    // With the same data as the run before, it succeeds.
    let third = restic::backup(&f.cx, &spec, Some("abc125"), &again.snapshots).await;
    assert_eq!(third.result, RunResult::Succeeded, "{third:?}");
}

#[tokio::test]
async fn a_failed_or_empty_dump_fails_the_run_and_stopped_services_run_again() {
    let f = Fixture::new("bk-dumpfail").await;
    let repo = repo_dir(&f.w);
    let mut spec = f.spec(repo.to_str().unwrap(), vec![]);
    spec.dumps = vec![
        Dump {
            service: f.service("db"),
            command: vec!["pg_dumpall".into(), "-U".into(), "nosuchrole".into()],
            file: "bad.sql".into(),
        },
        Dump {
            service: f.service("db"),
            command: vec!["true".into()],
            file: "empty.sql".into(),
        },
    ];
    let before = f.started_at("worker");
    let out = restic::backup(&f.cx, &spec, None, &[]).await;
    assert_eq!(out.result, RunResult::Failed);
    let reason = out.reason.clone().unwrap();
    assert!(
        reason.contains("dump bad.sql: `pg_dumpall -U nosuchrole` exited 1: ")
            && reason.contains("nosuchrole"),
        "{reason}"
    );
    assert!(
        reason.contains("dump empty.sql wrote 0 bytes (`true`)"),
        "{reason}"
    );
    assert!(f.running("worker"), "stopped for the run, started again");
    assert_ne!(f.started_at("worker"), before);
    // The volume's snapshot counts; the dumps' snapshots were forgotten.
    let list = restore::snapshots(&f.cx, &spec).await.unwrap();
    let sources: Vec<&str> = list.iter().filter_map(|s| s.tag("berth-source")).collect();
    assert_eq!(sources, vec![format!("volume:{}/files", f.stack).as_str()]);
}

#[tokio::test]
async fn unreadable_files_are_restic_exit_3_and_fail_the_run() {
    let f = Fixture::new("bk-exit3").await;
    let repo = repo_dir(&f.w);
    let host = f.w.path().join("secrets");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("readable"), "ok").unwrap();
    std::fs::write(host.join("locked"), "no").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(host.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    for p in [f.w.path(), &host, &repo] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let mut spec = f.spec(repo.to_str().unwrap(), vec![host.clone()]);
    spec.volumes.clear();
    spec.dumps.clear();
    // restic as nobody: root in the container reads every file.
    let mut cx = f.cx.clone();
    cx.user = Some("65534:65534".into());
    let out = restic::backup(&cx, &spec, None, &[]).await;
    assert_eq!(out.result, RunResult::Failed, "{out:?}");
    assert_eq!(out.exit_code, Some(3));
    let reason = out.reason.unwrap();
    assert_eq!(
        reason,
        format!(
            "path:{}: restic exit 3: some files could not be read: {}",
            host.display(),
            host.join("locked").display()
        )
    );
}

#[tokio::test]
async fn retention_keeps_7_daily_4_weekly_6_monthly_over_a_simulated_year() {
    let f = Fixture::new("bk-retention").await;
    let repo = repo_dir(&f.w);
    let host = f.w.path().join("conf");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("x"), "x").unwrap();
    let mut spec = f.spec(repo.to_str().unwrap(), vec![host.clone()]);
    spec.volumes.clear();
    spec.dumps.clear();
    spec.stop.clear();
    // The first run makes the repository.
    let out = restic::backup(&f.cx, &spec, None, &[]).await;
    assert_eq!(out.result, RunResult::Succeeded, "{out:?}");

    // A year of nightly runs at 03:00 (2025): every night of the last ten weeks, the 1st and
    // the 15th of each month before, each tagged with a different commit, by the host's restic.
    let simulated = f.w.path().join("simulated");
    std::fs::create_dir_all(&simulated).unwrap();
    std::fs::write(simulated.join("y"), "y").unwrap();
    let mut days = Vec::new();
    let month_days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    for (m, n) in month_days.iter().enumerate() {
        for day in 1..=*n {
            let date = format!("2025-{:02}-{day:02}", m + 1);
            if date.as_str() >= "2025-10-23" || day == 1 || day == 15 {
                days.push(date);
            }
        }
    }
    let host_name = f.cx.host_name();
    for chunk in days.chunks(6) {
        let children: Vec<_> = chunk
            .iter()
            .map(|day| {
                Command::new("restic")
                    .args(["--no-cache", "-q", "backup", "--host", &host_name])
                    .args(["--time", &format!("{day} 03:00:00")])
                    .args(["--tag", "berth-backup=nightly"])
                    .args(["--tag", &format!("berth-commit={day}")])
                    .arg(&simulated)
                    .env("RESTIC_REPOSITORY", &repo)
                    .env("RESTIC_PASSWORD", "correct horse battery")
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("run restic (hack/test-backup-images.sh installs it)")
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
    }
    // Another Backup's snapshot in the same repository is left alone.
    let other = Command::new("restic")
        .args([
            "--no-cache",
            "-q",
            "backup",
            "--host",
            &host_name,
            "--time",
            "2025-01-02 03:00:00",
        ])
        .args(["--tag", "berth-backup=other"])
        .arg(&simulated)
        .env("RESTIC_REPOSITORY", &repo)
        .env("RESTIC_PASSWORD", "correct horse battery")
        .status()
        .unwrap();
    assert!(other.success());

    let out = restic::backup(&f.cx, &spec, None, &out.snapshots).await;
    assert_eq!(out.result, RunResult::Succeeded, "{out:?}");

    let list = Command::new("restic")
        .args(["--no-cache", "snapshots", "--json"])
        .env("RESTIC_REPOSITORY", &repo)
        .env("RESTIC_PASSWORD", "correct horse battery")
        .output()
        .unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    let mut kept: Vec<String> = list
        .iter()
        .filter(|s| s["paths"][0] == simulated.display().to_string())
        .filter(|s| {
            s["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "berth-backup=nightly")
        })
        .map(|s| s["time"].as_str().unwrap()[..10].to_string())
        .collect();
    kept.sort();
    // daily 7: Dec 25-31; weekly 4 (ISO weeks): Dec 31, 28, 21, 14; monthly 6: Dec 31, Nov 30,
    // Oct 31, Sep 15, Aug 15, Jul 15.
    let expected = [
        "2025-07-15",
        "2025-08-15",
        "2025-09-15",
        "2025-10-31",
        "2025-11-30",
        "2025-12-14",
        "2025-12-21",
        "2025-12-25",
        "2025-12-26",
        "2025-12-27",
        "2025-12-28",
        "2025-12-29",
        "2025-12-30",
        "2025-12-31",
    ];
    assert_eq!(kept, expected);
    assert!(list.iter().any(|s| s["tags"][0] == "berth-backup=other"));
    // berth's own two snapshots of the folder are their own group (per-commit tags make no
    // groups): both are from today, so only the newer is kept.
    let own = list
        .iter()
        .filter(|s| s["paths"][0] == format!("/backup/paths{}", host.display()))
        .count();
    assert_eq!(own, 1);
}

#[tokio::test]
async fn a_locked_repository_fails_the_run_with_who_holds_the_lock() {
    let f = Fixture::new("bk-locked").await;
    let repo = repo_dir(&f.w);
    let mut spec = f.spec(repo.to_str().unwrap(), vec![]);
    spec.dumps.clear();
    let out = restic::backup(&f.cx, &spec, None, &[]).await;
    assert_eq!(out.result, RunResult::Succeeded, "{out:?}");
    // Another restic holds a lock: a backup from standard input that is kept open.
    let holder = format!("{}-holder", f.w.instance);
    f.w.adopt(&holder);
    let mut child = Command::new("docker")
        .args(["run", "-i", "--rm", "--name", &holder])
        .args(test_labels())
        .arg("-v")
        .arg(format!("{}:/repo", repo.display()))
        .args([
            "-e",
            "RESTIC_REPOSITORY=/repo",
            "-e",
            "RESTIC_PASSWORD=correct horse battery",
        ])
        .args([RESTIC_IMAGE, "--no-cache", "backup", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(repo.join("locks")).unwrap().count() == 0 {
        assert!(Instant::now() < deadline, "the holder took no lock");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = f.started_at("worker");
    let out = restic::backup(&f.cx, &spec, None, &[]).await;
    assert_eq!(out.result, RunResult::Failed, "{out:?}");
    let reason = out.reason.unwrap();
    assert!(
        reason.starts_with("repository is locked by PID "),
        "{reason}"
    );
    assert!(f.running("worker"));
    assert_ne!(f.started_at("worker"), before);
    drop(child.stdin.take());
    let _ = child.wait();
}

/// `rclone serve restic` on 127.0.0.1 (killed on drop).
struct RestServer(std::process::Child, u16);

impl RestServer {
    fn start(dir: &Path) -> RestServer {
        let port = free_port();
        let child = Command::new("rclone")
            .args(["serve", "restic", "--addr", &format!("127.0.0.1:{port}")])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run rclone (hack/test-backup-images.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "rclone does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        RestServer(child, port)
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_rest_repository_served_by_rclone_and_its_failures() {
    let f = Fixture::new("bk-rest").await;
    let served = f.w.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let server = RestServer::start(&served);
    let url = format!("rest:http://127.0.0.1:{}/", server.1);
    f.sh("worker", "echo hello >/data/hello");
    let mut spec = f.spec(&url, vec![]);
    let out = restic::backup(&f.cx, &spec, Some("c0ffee"), &[]).await;
    assert_eq!(out.result, RunResult::Succeeded, "{out:?}");
    assert!(served.join("config").exists(), "initialised on the server");
    f.sh("worker", "rm /data/hello");
    restore::restore(&f.cx, &spec, "latest", &Target::Volume(f.volume("files")))
        .await
        .unwrap();
    assert_eq!(f.sh("worker", "cat /data/hello"), "hello");

    // A wrong password: refused, and never initialised over.
    let config = std::fs::read(served.join("config")).unwrap();
    spec.password = Secret::new("not the password".to_string());
    let before = f.started_at("worker");
    let out = restic::backup(&f.cx, &spec, None, &[]).await;
    assert_eq!(out.result, RunResult::Failed);
    assert_eq!(
        out.reason.as_deref(),
        Some("wrong repository password (restic: wrong password or no key found)")
    );
    assert_eq!(std::fs::read(served.join("config")).unwrap(), config);
    assert_eq!(
        f.started_at("worker"),
        before,
        "nothing stopped for a repository refused"
    );

    // Unreachable.
    drop(server);
    spec.password = Secret::new("correct horse battery".to_string());
    let out = restic::backup(&f.cx, &spec, None, &[]).await;
    assert_eq!(out.result, RunResult::Failed);
    let reason = out.reason.unwrap();
    assert!(reason.starts_with("repository unreachable: "), "{reason}");
    assert!(reason.contains("connection refused"), "{reason}");

    // The list and the check.
    let server = RestServer::start(&served);
    let spec = f.spec(&format!("rest:http://127.0.0.1:{}/", server.1), vec![]);
    let list = restore::snapshots(&f.cx, &spec).await.unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.iter().all(|s| s.tag("berth-commit") == Some("c0ffee")));
    let checked = restic::check(&f.cx, &spec, Some("100%")).await;
    assert_eq!(checked.result, RunResult::Succeeded, "{checked:?}");
    let _: &[SnapshotRecord] = &out.snapshots;
}

/// `berth restore` / `berth backups` with the Backup of a `berth.yaml` (`kind: Backup`).
#[tokio::test]
async fn the_restore_and_backups_commands_use_the_config_s_backup() {
    let f = Fixture::new("bk-cli").await;
    let repo = repo_dir(&f.w);
    let stack = &f.stack;
    f.w.write(
        "berth.yaml",
        &format!(
            "kind: Backup\nname: nightly\nschedule: \"0 3 * * *\"\nrepository: {}\npassword: ${{BK_CLI_PASSWORD}}\nvolumes: [{stack}/files]\ndumps:\n  - {{service: {stack}/db, command: [pg_dumpall, -U, postgres], file: all.sql}}\nstop: [{stack}/worker]\nretention: {{daily: 7, weekly: 4, monthly: 6}}\nimage: {RESTIC_IMAGE}\n",
            repo.display()
        ),
    );
    let env: std::collections::BTreeMap<String, String> =
        [("BK_CLI_PASSWORD".to_string(), "s3cret-pw".to_string())].into();
    let desired = berth::compose::load_dir(f.w.path(), &env).expect("the config loads");
    let (_, spec) = desired.jobs.backups().next().expect("one Backup");
    assert_eq!(spec.volumes, vec![f.volume("files")]);
    f.sh("worker", "echo v1 >/data/file");
    f.psql("CREATE TABLE t (x text); INSERT INTO t VALUES ('row one');");
    let out = restic::backup(&f.cx, spec, Some("feed"), &[]).await;
    assert_eq!(out.result, RunResult::Succeeded, "{out:?}");

    let berth = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .arg("--config")
            .arg(f.w.path())
            .env("BERTH_INSTANCE", &f.w.instance)
            .env("BK_CLI_PASSWORD", "s3cret-pw")
            .output()
            .unwrap();
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (o.status.code(), s(&o.stdout), s(&o.stderr))
    };
    let (code, stdout, stderr) = berth(&["backups", "nightly"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("volume:{stack}/files")),
        "{stdout}"
    );
    assert!(stdout.contains("dump:all.sql"), "{stdout}");
    assert!(stdout.ends_with("2 snapshot(s) of nightly.\n"), "{stdout}");
    assert!(!stdout.contains("s3cret"));
    let (code, json, _) = berth(&["backups", "nightly", "--json"]);
    assert_eq!(code, Some(0));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["commit"] == "feed"));

    f.sh("worker", "echo v2 >/data/file && echo new >/data/other");
    let (code, stdout, stderr) = berth(&[
        "restore",
        "nightly",
        "--snapshot",
        "latest",
        "--volume",
        &format!("{stack}/files"),
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("Restored volume:{stack}/files from snapshot ")),
        "{stdout}"
    );
    assert_eq!(f.sh("worker", "ls /data; cat /data/file"), "file\nv1");

    let to = f.w.path().join("restored.sql");
    let (code, _, stderr) = berth(&[
        "restore",
        "nightly",
        "--dump",
        "all.sql",
        "--to",
        to.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(std::fs::read_to_string(&to).unwrap().contains("row one"));

    // Not a source of the Backup; an unknown Backup.
    let (code, _, stderr) = berth(&["restore", "nightly", "--volume", "x/y"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "error: Backup nightly does not back up volume x/y\n"
    );
    let (code, _, stderr) = berth(&["backups", "weekly"]);
    assert_eq!(code, Some(2), "no such Backup, as jobs run's no such job");
    assert!(
        stderr.contains("declares no Backup \"weekly\" (backups: nightly)"),
        "{stderr}"
    );
    let (code, _, _) = berth(&["restore", "nightly"]);
    assert_eq!(code, Some(64), "what to restore is required");
}

/// A run dropped half-way (a job timeout) still starts the `stop:` services again and leaves
/// no restic container behind.
#[tokio::test]
async fn a_run_dropped_by_a_timeout_starts_the_stopped_services_again() {
    let f = Fixture::new("bk-timeout").await;
    let repo = repo_dir(&f.w);
    let mut spec = f.spec(repo.to_str().unwrap(), vec![]);
    spec.dumps[0].command = vec![
        "sh".into(),
        "-c".into(),
        "sleep 30; pg_dumpall -U postgres".into(),
    ];
    let before = f.started_at("worker");
    let run = restic::backup(&f.cx, &spec, None, &[]);
    // Dropped while the dump runs: the worker is stopped then.
    let dropped = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => panic!("the run ended before the dump"),
            _ = async {
                while f.running("worker") {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // The dump is streaming into restic now or soon; give it the first bytes.
                while docker(&["ps", "-q", "--filter", "label=io.berth.oneoff=backup/nightly", "--filter", &f.w.label()]).is_empty() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            } => {}
        }
    })
    .await;
    assert!(dropped.is_ok(), "the worker was never stopped");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(f.running("worker")
        && docker(&[
            "ps",
            "-aq",
            "--filter",
            "label=io.berth.oneoff=backup/nightly",
            "--filter",
            &f.w.label(),
        ])
        .is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "the worker is still down or restic still there"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(f.started_at("worker"), before);
}
