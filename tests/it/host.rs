//! A real systemd test host: a container of `berth-test/host:2` (hack/test-host.sh) with
//! systemd as PID 1, booted with the flags measured in ../shared/design/test-host.md, the outer
//! Engine's socket, the berth binary under test at /usr/bin/berth, and a temp folder mounted at
//! the same path inside as outside (so that bind-mount sources berth gives the outer Engine
//! resolve there). Then berth itself runs on it through the shipped unit (dist/berth.service).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::support::{Run, World, docker, git};

pub const IMAGE: &str = "berth-test/host:2";
const UNIT: &str = include_str!("../../dist/berth.service");

/// Where test hosts' shared folders go: the checkout's `target/tmp`, unless that is under
/// `/tmp` or `/var/tmp` (a clone in /tmp), which berth's unit cannot see (`PrivateTmp=yes`
/// gives it its own): then `/var/lib/berth-it`, which every unit sees at the same path.
fn shared_base(target_tmp: &Path) -> PathBuf {
    let hidden = ["/tmp", "/var/tmp"]
        .iter()
        .any(|t| target_tmp.starts_with(t));
    if hidden {
        PathBuf::from("/var/lib/berth-it")
    } else {
        target_tmp.to_path_buf()
    }
}

#[test]
fn shared_folders_are_never_where_the_units_private_tmp_hides_them() {
    for (checkout, visible) in [
        ("/work/berth/target/tmp", true),
        ("/tmp/berth/target/tmp", false),
        ("/var/tmp/x/target/tmp", false),
        ("/tmpfoo/target/tmp", true),
    ] {
        let base = shared_base(Path::new(checkout));
        assert_eq!(base == Path::new(checkout), visible, "{checkout}");
        assert!(!base.starts_with("/tmp") && !base.starts_with("/var/tmp"));
    }
}

/// One booted test host; the container is removed on drop.
pub struct TestHost {
    name: String,
    dir: tempfile::TempDir,
}

impl TestHost {
    /// Boot a host for `test` (a short name: letters, digits, `-`) and wait until systemd says
    /// the system is up. Panics when the image is missing or stale: run hack/test-host.sh.
    pub fn boot(test: &str) -> TestHost {
        Self::boot_with(test, true, &[])
    }

    /// A host with its **own** Docker Engine (the outer socket is not mounted; `docker.io` of
    /// the image, started here) on the outer Docker networks `networks` (the first at `docker
    /// run`, the others connected before boot), with `berth-test/app:1` loaded into the inner
    /// Engine. For published-port tests: the outer Engine's rules are not the host's.
    pub fn boot_inner_docker(test: &str, networks: &[&str]) -> TestHost {
        let host = Self::boot_with(test, false, networks);
        host.ok("systemctl start docker");
        let up = poll(Duration::from_secs(60), || {
            host.sh("docker info >/dev/null 2>&1").status.success()
        });
        assert!(
            up,
            "{}: the inner dockerd did not come up\n{}",
            host.name,
            host.journal("docker.service")
        );
        host.load_app_image();
        host
    }

    /// `berth-test/app:1` into the inner Engine (`docker save | docker load`).
    pub fn load_app_image(&self) {
        let host = self;
        crate::support::test_images();
        let mut save = Command::new("docker")
            .args(["save", "berth-test/app:1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker save");
        let load = Command::new("docker")
            .args(["exec", "-i", &host.name, "docker", "load", "-q"])
            .stdin(save.stdout.take().expect("docker save's stdout"))
            .output()
            .expect("docker load");
        let saved = save.wait().expect("wait for docker save");
        assert!(
            saved.success() && load.status.success(),
            "docker save | docker load: {}",
            String::from_utf8_lossy(&load.stderr)
        );
    }

    /// The host's address on an outer Docker network.
    pub fn ip_on(&self, network: &str) -> String {
        docker(&[
            "inspect",
            "--format",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
            &self.name,
        ])
    }

    fn boot_with(test: &str, outer_engine: bool, networks: &[&str]) -> TestHost {
        check_image();
        let base = shared_base(Path::new(env!("CARGO_TARGET_TMPDIR")));
        std::fs::create_dir_all(&base).expect("create the test hosts' shared folder");
        let dir = tempfile::Builder::new()
            .prefix(&format!("host-{test}-{}-", std::process::id()))
            .tempdir_in(&base)
            .expect("tempdir for the test host");
        let name = format!("berth-host-{test}-{}", std::process::id());
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
        let shared = dir.path().to_str().expect("UTF-8 temp path").to_string();
        let socket = docker_socket();
        let mut extra: Vec<String> = Vec::new();
        if outer_engine {
            extra.extend(["-v".into(), format!("{socket}:/var/run/docker.sock")]);
        } else {
            // The inner Engine's storage: not on the overlay of the outer one.
            extra.extend(["--tmpfs".into(), "/var/lib/docker:exec".into()]);
        }
        if let Some(first) = networks.first() {
            extra.extend(["--network".into(), first.to_string()]);
        }
        let out = Command::new("docker")
            .args(["create", "--name", &name, "--hostname", test])
            .args(["--label", "io.berth.test=1"])
            .args(["--label", &format!("io.berth.test.host={test}")])
            // test-host.md: --privileged fails here ("unable to apply caps"); these boot systemd.
            .args(["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE"])
            .args(["--security-opt", "seccomp=unconfined"])
            // A writable /proc/sys: sysctls of the host's own network namespace.
            .args(["--security-opt", "systempaths=unconfined"])
            .args(["-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"])
            .args(["--tmpfs", "/run", "--tmpfs", "/run/lock"])
            .args(["--stop-signal", "SIGRTMIN+3"])
            .args(&extra)
            .args([
                "-v",
                &format!("{}:/usr/bin/berth:ro", env!("CARGO_BIN_EXE_berth")),
            ])
            .args(["-v", &format!("{shared}:{shared}")])
            .arg(IMAGE)
            .output()
            .expect("run docker");
        assert!(
            out.status.success(),
            "docker create {IMAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let host = TestHost { name, dir };
        for net in networks.iter().skip(1) {
            docker(&["network", "connect", net, &host.name]);
        }
        docker(&["start", &host.name]);
        let mut state = String::new();
        let booted = poll(Duration::from_secs(90), || {
            state = text(&host.exec(&["systemctl", "is-system-running"]));
            state == "running" || state == "degraded"
        });
        assert!(
            booted,
            "{}: systemd did not come up (is-system-running: {state:?})\n{}",
            host.name,
            text(&host.exec(&["systemctl", "--failed", "--no-pager"]))
        );
        host
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The folder shared with the host, at the same path inside and outside.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `docker exec <host> args…`.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("exec")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("run docker exec")
    }

    /// A shell script on the host (`sh -c`).
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// A shell script that must succeed; its trimmed stdout.
    #[track_caller]
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "{}: `{script}` failed ({}):\n{}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        text(&out)
    }

    /// `berth args…` on the host (the binary under test, mounted at /usr/bin/berth).
    pub fn berth(&self, args: &[&str]) -> Run {
        let mut all = vec!["/usr/bin/berth"];
        all.extend_from_slice(args);
        Run::from(self.exec(&all))
    }

    /// Write a file on the host (folders created, mode 0644 unless changed afterwards).
    #[track_caller]
    pub fn write(&self, path: &str, content: &str) {
        let mut child = Command::new("docker")
            .args(["exec", "-i", &self.name, "sh", "-c"])
            .arg(r#"mkdir -p "$(dirname "$1")" && cat >"$1""#)
            .args(["sh", path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker exec");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(content.as_bytes())
            .expect("write to docker exec");
        let out = child.wait_with_output().expect("docker exec");
        assert!(
            out.status.success(),
            "{}: writing {path} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A file's content on the host; None when it cannot be read.
    pub fn read(&self, path: &str) -> Option<String> {
        let out = self.exec(&["cat", path]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `systemctl show -p …` as a map.
    pub fn show(&self, unit: &str, props: &[&str]) -> BTreeMap<String, String> {
        let out = self.exec(&["systemctl", "show", unit, "-p", &props.join(",")]);
        text(&out)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `journalctl -u unit` (the whole log of the unit on this host).
    pub fn journal(&self, unit: &str) -> String {
        text(&self.exec(&["journalctl", "-u", unit, "--no-pager", "-o", "cat"]))
    }

    /// Install the shipped unit and `/etc/berth/berth.env` (mode 0600), then daemon-reload.
    pub fn install_berth(&self, env: &str) {
        self.write("/etc/systemd/system/berth.service", UNIT);
        self.write("/etc/berth/berth.env", env);
        self.ok(
            "chmod 0700 /etc/berth && chmod 0600 /etc/berth/berth.env && systemctl daemon-reload",
        );
    }
}

impl Drop for TestHost {
    /// Best effort: must not panic (a panic while a test is failing aborts the run).
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .output();
    }
}

/// The image exists and was built by the current hack/test-host.sh.
fn check_image() {
    let out = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"io.berth.test.recipe\"}}",
            IMAGE,
        ])
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "{IMAGE} is missing: run hack/test-host.sh (as root; builds it with mmdebstrap)"
    );
    let script = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/hack/test-host.sh"))
        .expect("read hack/test-host.sh");
    let recipe = hex::encode(Sha256::digest(&script));
    let have = text(&out);
    assert!(
        recipe.starts_with(&have) && !have.is_empty(),
        "{IMAGE} was built by another version of hack/test-host.sh (recipe {have:?}): run hack/test-host.sh"
    );
}

/// The outer Engine's socket, as a path to bind-mount.
fn docker_socket() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => h["unix://".len()..].to_string(),
        _ => "/var/run/docker.sock".to_string(),
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Poll `cond` (a check, not a sleep standing in for one) until it holds; false on timeout.
pub(crate) fn poll(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A bare repository `<dir>/origin.git` with one commit on main holding `files`; its file:// URL.
pub(crate) fn config_repo(dir: &Path, files: &[(&str, &str)]) -> String {
    let work = dir.join("work");
    git(dir, &["init", "--bare", "-q", "origin.git"]);
    git(dir, &["init", "-q", "work"]);
    for (rel, content) in files {
        let p = work.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "config"]);
    let origin = dir.join("origin.git");
    git(
        &work,
        &[
            "push",
            "-q",
            origin.to_str().unwrap(),
            "HEAD:refs/heads/main",
        ],
    );
    format!("file://{}", origin.display())
}

/// berth.env for a local repository and a private instance, polling every second.
pub(crate) fn berth_env(repo: &str, world: &World, extra: &str) -> String {
    format!(
        "BERTH_REPO={repo}\nBERTH_INSTANCE={}\nBERTH_INSECURE_NO_WEBHOOK_SECRET=true\n\
         BERTH_POLL_INTERVAL=1s\nBERTH_NAME=host\nBERTH_LOG=berth=debug\n{extra}",
        world.instance
    )
}

#[test]
fn boots_with_no_failed_units_and_writable_net_sysctls() {
    let host = TestHost::boot("boot");
    assert_eq!(
        text(&host.exec(&["systemctl", "is-system-running"])),
        "running",
        "{}",
        host.name()
    );
    assert_eq!(
        host.ok("systemctl list-units --failed --no-legend --plain"),
        "",
        "failed units"
    );
    assert_eq!(
        host.ok("sysctl -w net.ipv4.ip_forward=1"),
        "net.ipv4.ip_forward = 1"
    );
    assert_eq!(host.ok("sysctl -n net.ipv4.ip_forward"), "1");
    // The kernel prints this one tab-separated.
    host.ok("sysctl -w net.ipv4.ip_local_port_range='20000 40000'");
    assert_eq!(
        host.read("/proc/sys/net/ipv4/ip_local_port_range")
            .as_deref(),
        Some("20000\t40000\n")
    );
    // Off at boot, but installed and configured to start.
    for unit in ["firewalld", "fail2ban", "caddy", "ssh"] {
        assert_eq!(
            text(&host.exec(&["systemctl", "is-enabled", unit])),
            "disabled",
            "{unit}"
        );
        assert_eq!(
            text(&host.exec(&["systemctl", "is-active", unit])),
            "inactive",
            "{unit}"
        );
    }
    for unit in ["apt-daily.timer", "fstrim.timer", "getty@tty1.service"] {
        assert_eq!(
            text(&host.exec(&["systemctl", "is-enabled", unit])),
            "masked",
            "{unit}"
        );
    }
    // fail2ban starts with the image's defaults (Type=simple: its socket comes a moment later).
    host.ok("systemctl start fail2ban");
    assert!(
        poll(Duration::from_secs(30), || host
            .sh("fail2ban-client ping")
            .status
            .success()),
        "fail2ban does not answer\n{}",
        host.journal("fail2ban")
    );
    let conf = host.ok("fail2ban-client -d");
    assert!(conf.contains("systemd"), "fail2ban backend:\n{conf}");
    assert!(
        conf.contains("nftables-multiport"),
        "fail2ban banaction:\n{conf}"
    );
    // The binary under test runs there (same Debian as the build machine).
    let version = host.berth(&["--version"]).expect(0);
    assert!(version.stdout.starts_with("berth "), "{}", version.stdout);
    // The outer Engine answers through the mounted socket.
    assert!(host.ok("curl -fsS --unix-socket /var/run/docker.sock http://d/_ping") == "OK");
}

#[test]
fn berth_serve_runs_through_the_shipped_unit() {
    let world = World::new("host-unit");
    let host = TestHost::boot("unit");
    let stack = world.stack("web");
    let repo = config_repo(
        host.dir(),
        &[(
            "web/compose.yaml",
            &format!("name: {stack}\nservices:\n  web:\n    image: berth-test/busybox:1\n"),
        )],
    );
    host.install_berth(&berth_env(&repo, &world, ""));

    // The sandbox still lets berth manage the host (what the unit's comments promise): the
    // shipped unit's settings, with a probe script in place of berth.
    host.write(
        "/etc/berth/probe.sh",
        "set -e\n\
         touch /etc/berth-probe && rm /etc/berth-probe\n\
         sysctl -w net.ipv4.ip_forward=1\n\
         systemctl is-system-running\n\
         nft add table inet berth_probe && nft delete table inet berth_probe\n\
         curl -fsS --unix-socket /var/run/docker.sock http://d/_ping && echo\n\
         ! touch /usr/berth-probe 2>/dev/null\n\
         ! touch /root/berth-probe 2>/dev/null\n\
         echo probe-ok\n",
    );
    assert!(UNIT.contains("\nExecStart=/usr/bin/berth serve\n"));
    host.write(
        "/etc/systemd/system/berth-probe.service",
        &UNIT
            .replace(
                "ExecStart=/usr/bin/berth serve",
                "ExecStart=/bin/sh /etc/berth/probe.sh",
            )
            .replace("Type=notify", "Type=oneshot"),
    );
    let probe = host.sh("systemctl daemon-reload && systemctl start berth-probe");
    let log = host.journal("berth-probe");
    assert!(
        probe.status.success() && log.contains("probe-ok"),
        "the sandbox blocks what berth needs: {}\n{log}",
        String::from_utf8_lossy(&probe.stderr)
    );

    // Type=notify: start returns once berth sent READY=1 (or fails).
    let start = host.sh("systemctl start berth");
    assert!(
        start.status.success(),
        "systemctl start berth failed: {}\n--- journal\n{}",
        String::from_utf8_lossy(&start.stderr),
        host.journal("berth")
    );
    let show = host.show(
        "berth",
        &[
            "ActiveState",
            "SubState",
            "Type",
            "NotifyAccess",
            "WatchdogUSec",
            "MainPID",
        ],
    );
    assert_eq!(show["ActiveState"], "active", "{show:?}");
    assert_eq!(show["SubState"], "running", "{show:?}");
    assert_eq!(show["Type"], "notify", "{show:?}");
    assert_eq!(show["NotifyAccess"], "main", "{show:?}");
    assert_eq!(show["WatchdogUSec"], "30s", "{show:?}");
    let pid = &show["MainPID"];

    // The sandbox is applied to the running process.
    let status = host.ok(&format!("cat /proc/{pid}/status"));
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    assert_eq!(
        host.ok("stat -c %a /var/lib/berth"),
        "700",
        "StateDirectoryMode"
    );

    assert_eq!(host.ok("curl -fsS http://127.0.0.1:9470/healthz"), "ok");

    // It reached the outer Engine through the socket and applied the stack.
    let web = format!("{stack}-web-1");
    let running = poll(Duration::from_secs(60), || {
        Command::new("docker")
            .args(["inspect", "-f", "{{.State.Running}}", &web])
            .output()
            .is_ok_and(|o| text(&o) == "true")
    });
    assert!(
        running,
        "{web} not running\n--- journal\n{}",
        host.journal("berth")
    );
    assert!(
        poll(Duration::from_secs(10), || host
            .read("/var/lib/berth/state.json")
            .is_some()),
        "no state.json in /var/lib/berth"
    );

    let journal = host.journal("berth");
    assert!(journal.contains("serving /hooks/github"), "{journal}");
    assert!(journal.contains(&web), "{journal}");

    let stop = host.sh("systemctl stop berth");
    assert!(stop.status.success(), "systemctl stop berth failed");
    let show = host.show("berth", &["ActiveState", "Result", "ExecMainStatus"]);
    assert_eq!(
        show["ActiveState"],
        "inactive",
        "{show:?}\n{}",
        host.journal("berth")
    );
    assert_eq!(show["Result"], "success", "{show:?}");
    assert_eq!(show["ExecMainStatus"], "0", "{show:?}");
    assert!(host.journal("berth").contains("shutting down"));
    // The container outlives berth.
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &web]),
        "true"
    );
}

#[test]
fn watchdog_pings_keep_berth_alive_and_a_frozen_berth_is_restarted() {
    let world = World::new("host-watchdog");
    let host = TestHost::boot("watchdog");
    let repo = config_repo(host.dir(), &[("README.md", "no stacks yet\n")]);
    host.install_berth(&berth_env(&repo, &world, "BERTH_ALLOW_EMPTY=true\n"));
    // A short watchdog, and a quick abort and restart, to keep the test short.
    host.write(
        "/etc/systemd/system/berth.service.d/50-test.conf",
        "[Service]\nWatchdogSec=2s\nTimeoutAbortSec=2s\nRestartSec=1s\n",
    );
    host.ok("systemctl daemon-reload && systemctl start berth");
    let show = host.show("berth", &["WatchdogUSec", "MainPID", "NRestarts"]);
    assert_eq!(show["WatchdogUSec"], "2s", "{show:?}");
    let pid = show["MainPID"].clone();

    // Three watchdog periods: still the same process, never restarted.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let s = host.show("berth", &["ActiveState", "MainPID", "NRestarts"]);
        assert_eq!(
            s["ActiveState"],
            "active",
            "{s:?}\n{}",
            host.journal("berth")
        );
        assert_eq!(s["MainPID"], pid, "{s:?}\n{}", host.journal("berth"));
        assert_eq!(s["NRestarts"], "0", "{s:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(host.journal("berth").contains("systemd watchdog enabled"));

    // Frozen (no more pings): systemd declares it dead and restarts it.
    host.ok(&format!("kill -STOP {pid}"));
    let mut last = BTreeMap::new();
    let restarted = poll(Duration::from_secs(30), || {
        last = host.show("berth", &["ActiveState", "MainPID", "NRestarts"]);
        last["NRestarts"] == "1" && last["ActiveState"] == "active" && last["MainPID"] != pid
    });
    assert!(restarted, "{last:?}\n{}", host.journal("berth"));
    assert!(host.journal("berth").contains("Watchdog timeout"));
    host.ok("systemctl stop berth");
}

#[test]
fn config_folders_reach_non_root_containers_from_berth_on_the_host() {
    // The state dir in the shared folder: the worktree path berth gives the outer Engine as a
    // bind-mount source exists there too.
    let world = World::new("host-mounts");
    let host = TestHost::boot("mounts");
    let stack = world.stack("conf");
    let compose = format!(
        "name: {stack}\nservices:\n  app:\n    image: berth-test/busybox:1\n    user: \"65534:65534\"\n    \
         command: [\"sh\", \"-c\", \"cat /conf/hello.txt && sleep 3600\"]\n    volumes:\n      - ./conf:/conf:ro\n    \
         healthcheck:\n      test: [\"CMD\", \"cat\", \"/conf/hello.txt\"]\n      interval: 1s\n      retries: 3\n"
    );
    let repo = config_repo(
        host.dir(),
        &[
            ("conf/compose.yaml", &compose),
            ("conf/conf/hello.txt", "hello from git\n"),
        ],
    );
    let state = host.dir().join("state");
    host.install_berth(&berth_env(
        &repo,
        &world,
        &format!("BERTH_STATE_DIR={}\n", state.display()),
    ));
    host.ok("systemctl start berth");

    let app = format!("{stack}-app-1");
    let mut health = String::new();
    let healthy = poll(Duration::from_secs(60), || {
        health = Command::new("docker")
            .args(["inspect", "-f", "{{.State.Health.Status}}", &app])
            .output()
            .map(|o| text(&o))
            .unwrap_or_default();
        health == "healthy"
    });
    assert!(
        healthy,
        "{app}: {health:?} (berth removes a container that never became healthy)\n\
         --- the mounted folder\n{}\n--- journal\n{}",
        host.ok(&format!("ls -la {}/worktree/conf/conf", state.display())),
        host.journal("berth")
    );
    let source = docker(&["inspect", "-f", "{{range .Mounts}}{{.Source}}{{end}}", &app]);
    assert!(
        Path::new(&source).starts_with(state.join("worktree")),
        "bind source {source}"
    );
    assert!(docker(&["logs", &app]).contains("hello from git"));
    host.ok("systemctl stop berth");
}
