//! Backups end to end through the command line only: a config folder with a stack (a real
//! Postgres, `berth-test/postgres:15`, and an app container, each with a named volume) and a
//! `berth.yaml` `kind: Backup` → `berth apply` → `berth jobs run` → `berth jobs` / `berth
//! backups` → the data lost → `berth restore` (from the recorded job table, no `--config`) →
//! the same files and rows. Also: a failing dump, a timed-out run, the check job.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Run, World, docker, inspect};

const RESTIC_IMAGE: &str = "berth-test/restic:0.14";
const PASSWORD: &str = "e2e-s3cret-pw";

/// The stack `app` (db with `dbdata`, app with `files`) and a Backup `nightly` of `files` and
/// a dump of the database, stopping `app`; `extra` goes at the end of the Backup document.
struct E2e {
    w: World,
    stack: String,
}

impl E2e {
    fn new(test: &str, dump: &str, extra: &str) -> E2e {
        let w = World::new(test);
        let stack = w.stack("app");
        w.write(
            "app/compose.yaml",
            &format!(
                "name: {stack}\nservices:\n  db:\n    image: berth-test/postgres:15\n    volumes: [dbdata:/var/lib/postgresql/data]\n  app:\n    image: berth-test/busybox:1\n    command: [sh, -c, \"trap 'exit 0' TERM; while :; do sleep 1; done\"]\n    volumes: [files:/data]\nvolumes:\n  dbdata: {{}}\n  files: {{}}\n"
            ),
        );
        let repo = w.path().join("repo");
        w.write(
            "berth.yaml",
            &format!(
                "kind: Backup\nname: nightly\nschedule: \"0 3 * * *\"\nrepository: {}\npassword: ${{E2E_RESTIC_PASSWORD}}\nvolumes: [{stack}/files]\ndumps:\n  - {{service: {stack}/db, command: {dump}, file: blog.sql}}\nstop: [{stack}/app]\nretention: {{daily: 7, weekly: 4, monthly: 6}}\nimage: {RESTIC_IMAGE}\n{extra}",
                repo.display()
            ),
        );
        E2e { w, stack }
    }

    /// `berth <args>` as this world's instance, with its state dir (no config folder added).
    fn berth(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .env("BERTH_INSTANCE", &self.w.instance)
            .env("BERTH_STATE_DIR", self.w.state_dir())
            .env("E2E_RESTIC_PASSWORD", PASSWORD)
            .output()
            .expect("run berth");
        Run::from(out)
    }

    /// `berth apply <dir>`; the plan's lines.
    fn apply(&self) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("apply")
            .arg(self.w.path())
            .env("BERTH_INSTANCE", &self.w.instance)
            .env("BERTH_STATE_DIR", self.w.state_dir())
            .env("E2E_RESTIC_PASSWORD", PASSWORD)
            .output()
            .expect("run berth apply");
        let run = Run::from(out).expect(0);
        self.wait_for_postgres();
        run
    }

    fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.stack)
    }

    fn wait_for_postgres(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let db = self.container("db");
        while !Command::new("docker")
            .args(["exec", &db, "pg_isready", "-q", "-U", "postgres"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
        {
            assert!(Instant::now() < deadline, "postgres did not get ready");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn sh(&self, script: &str) -> String {
        docker(&["exec", &self.container("app"), "sh", "-c", script])
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

    fn running(&self, service: &str) -> bool {
        inspect(&self.container(service), "{{.State.Running}}") == "true"
    }

    fn started_at(&self, service: &str) -> String {
        inspect(&self.container(service), "{{.State.StartedAt}}")
    }

    /// Every file of the app's volume with its checksum, and every entry.
    fn volume_sums(&self) -> String {
        self.sh("cd /data && find . -type f | sort | xargs -r md5sum; find . | sort")
    }

    /// The last run of `job` in `berth jobs --json`.
    fn last_run(&self, job: &str) -> serde_json::Value {
        let out = self.berth(&["jobs", "--json"]).expect(0);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("jobs --json");
        v["jobs"]
            .as_array()
            .expect("a list of jobs")
            .iter()
            .find(|j| j["name"] == job)
            .unwrap_or_else(|| panic!("no job {job} in {v}"))
            .clone()
    }

    /// No restic container of this instance is left.
    fn no_restic_container(&self) -> bool {
        docker(&[
            "ps",
            "-aq",
            "--filter",
            "label=io.berth.oneoff=backup/nightly",
            "--filter",
            &self.w.label(),
        ])
        .is_empty()
    }
}

fn load_dump(db: &str, dump: &Path) {
    let status = Command::new("docker")
        .args(["exec", "-i", db, "psql", "-q", "-U", "postgres", "-f", "-"])
        .stdin(std::fs::File::open(dump).unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the restored dump loads");
}

#[test]
fn apply_then_jobs_run_then_lose_the_data_then_restore_from_the_recorded_backup() {
    let e = E2e::new(
        "bke2e",
        "[pg_dumpall, -U, postgres]",
        "check: {schedule: \"0 2 * * 0\", read_data_subset: 100%}\n",
    );
    let stack = e.stack.clone();
    let apply = e.apply();
    assert!(
        apply
            .stdout
            .contains("+ job nightly: backup at \"0 3 * * *\""),
        "{}",
        apply.stdout
    );
    assert!(
        apply.stdout.contains("+ job nightly/check: check at"),
        "{}",
        apply.stdout
    );
    assert!(!apply.stdout.contains(PASSWORD) && !apply.stderr.contains(PASSWORD));

    // The data set: 8 MiB of random data and small files in the volume, a row in Postgres.
    e.sh("mkdir -p /data/sub && head -c 8388608 /dev/urandom >/data/big && echo one >/data/a && printf 'two\\n' >/data/sub/b");
    e.psql("CREATE TABLE posts (id int primary key, title text); INSERT INTO posts VALUES (1, 'hello from the dump');");
    let app_before = e.started_at("app");

    let t = Instant::now();
    let run = e.berth(&["jobs", "run", "nightly"]);
    let backup_ms = t.elapsed().as_millis();
    let run = run.expect(0);
    assert!(
        run.stdout.starts_with("nightly: running (backup)\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("nightly: succeeded in "),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(PASSWORD));
    assert!(e.running("app"), "the stop: service runs again");
    assert_ne!(
        e.started_at("app"),
        app_before,
        "it was stopped for the run"
    );
    assert!(e.no_restic_container());

    let last = e.last_run("nightly");
    assert_eq!(last["kind"], "backup");
    assert_eq!(last["last"]["outcome"]["result"], "succeeded", "{last}");
    assert!(last["last_success"].is_string(), "{last}");
    let snaps = last["last"]["outcome"]["snapshots"]
        .as_array()
        .unwrap()
        .clone();
    let sources: Vec<&str> = snaps
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        vec![format!("volume:{stack}/files").as_str(), "dump:blog.sql"]
    );
    assert!(snaps[0]["bytes"].as_u64().unwrap() >= 8 * 1024 * 1024);
    let table = e.berth(&["jobs"]).expect(0);
    let line = table
        .stdout
        .lines()
        .find(|l| l.starts_with("nightly "))
        .unwrap_or_else(|| panic!("{}", table.stdout));
    assert!(line.contains("succeeded "), "{line}");

    let list = e.berth(&["backups", "nightly"]).expect(0);
    assert!(
        list.stdout.contains(&format!("volume:{stack}/files")),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("dump:blog.sql"), "{}", list.stdout);
    assert!(
        list.stdout.ends_with("2 snapshot(s) of nightly.\n"),
        "{}",
        list.stdout
    );
    let json = e.berth(&["backups", "nightly", "--json"]).expect(0);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for s in &snaps {
        assert!(ids.contains(&s["id"].as_str().unwrap()), "{ids:?} {s}");
    }

    // Lose the data.
    let before = e.volume_sums();
    e.sh("rm -rf /data/big /data/sub && echo stray >/data/stray && echo changed >/data/a");
    e.psql("DROP TABLE posts;");
    assert_ne!(e.volume_sums(), before);

    let t = Instant::now();
    let restored = e.berth(&[
        "restore",
        "nightly",
        "--snapshot",
        "latest",
        // By the stack's folder, as the manifest may name it (`apps/blog/dbdata`).
        "--volume",
        "app/files",
    ]);
    let restore_ms = t.elapsed().as_millis();
    let restored = restored.expect(0);
    assert!(
        restored
            .stdout
            .starts_with(&format!("Restored volume:{stack}/files from snapshot ")),
        "{}",
        restored.stdout
    );
    assert_eq!(e.volume_sums(), before, "the volume is byte-identical");
    assert!(e.running("app"), "the volume's user runs again");

    let dump = e.w.path().join("restored-blog.sql");
    let t = Instant::now();
    e.berth(&[
        "restore",
        "nightly",
        "--dump",
        "blog.sql",
        "--to",
        dump.to_str().unwrap(),
    ])
    .expect(0);
    let dump_ms = t.elapsed().as_millis();
    load_dump(&e.container("db"), &dump);
    assert_eq!(
        e.psql("SELECT title FROM posts WHERE id = 1"),
        "hello from the dump"
    );
    eprintln!("backup: {backup_ms} ms (8 MiB volume + pg_dumpall, `berth jobs run nightly`)");
    eprintln!("restore: {restore_ms} ms (the volume, `berth restore --volume`)");
    eprintln!("restore: {dump_ms} ms (the dump, `berth restore --dump`)");

    // The check job checks the recorded Backup's repository.
    let check = e.berth(&["jobs", "run", "nightly/check"]).expect(0);
    assert!(
        check.stdout.contains("no errors were found"),
        "{}",
        check.stdout
    );
    assert_eq!(
        e.last_run("nightly/check")["last"]["outcome"]["result"],
        "succeeded"
    );

    // An unknown Backup: exit 2, the known ones listed; --config still works.
    let unknown = e.berth(&["backups", "weekly"]).expect(2);
    assert!(
        unknown
            .stderr
            .contains("declares no Backup \"weekly\" (backups: nightly)"),
        "{}",
        unknown.stderr
    );
    let from_config = e
        .berth(&[
            "backups",
            "nightly",
            "--config",
            e.w.path().to_str().unwrap(),
        ])
        .expect(0);
    assert!(from_config.stdout.ends_with("2 snapshot(s) of nightly.\n"));
}

#[test]
fn a_failing_dump_fails_jobs_run_with_the_reason_and_the_stopped_service_runs_again() {
    let e = E2e::new("bke2e-fail", "[pg_dumpall, -U, nosuchrole]", "");
    e.apply();
    let before = e.started_at("app");
    let run = e.berth(&["jobs", "run", "nightly"]).expect(1);
    assert!(
        run.stdout.contains("nightly: failed after "),
        "{}",
        run.stdout
    );
    let last = e.last_run("nightly");
    assert_eq!(last["last"]["outcome"]["result"], "failed", "{last}");
    let reason = last["last"]["outcome"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("dump blog.sql: `pg_dumpall -U nosuchrole` exited 1")
            && reason.contains("nosuchrole"),
        "{reason}"
    );
    assert!(last["last_success"].is_null(), "{last}");
    assert!(e.running("app"), "the stop: service runs again");
    assert_ne!(e.started_at("app"), before);
    assert!(e.no_restic_container());
}

/// A run longer than the job's `timeout`, through `berth jobs run`: timed out, and before the
/// command exits the `stop:` service is started again and restic's container is gone.
#[test]
fn a_timed_out_backup_run_starts_the_stopped_service_before_jobs_run_exits() {
    let e = E2e::new(
        "bke2e-timeout",
        "[sh, -c, 'sleep 60; pg_dumpall -U postgres']",
        "timeout: 15s\n",
    );
    e.apply();
    let before = e.started_at("app");
    let t = Instant::now();
    let run = e.berth(&["jobs", "run", "nightly"]).expect(1);
    assert!(t.elapsed() < Duration::from_secs(45), "{:?}", t.elapsed());
    assert!(
        run.stdout.contains("nightly: timed_out after ") || run.stdout.contains("timed out"),
        "{}",
        run.stdout
    );
    // Checked at once: the command waited for both.
    assert!(e.running("app"), "the stop: service runs again");
    assert_ne!(e.started_at("app"), before);
    assert!(e.no_restic_container(), "restic's container was removed");
    let last = e.last_run("nightly");
    assert_eq!(last["last"]["outcome"]["result"], "timed_out", "{last}");
    assert_eq!(
        last["last"]["outcome"]["reason"],
        "timed out after 15s: killed"
    );
}
