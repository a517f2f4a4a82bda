//! Shared test harness: a config folder in a temp dir, the `berth` binary, the Docker CLI as an
//! independent witness of what is on the Engine, and cleanup by label even when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

/// The label of everything a test creates by hand on the Engine (containers, networks,
/// volumes): `hack/test-leftovers.sh` fails the test run when one is left. Images with it are the
/// test images (hack/test-images.sh) and stay.
pub const TEST_LABEL: &str = "io.berth.test=1";

/// `--label` arguments for an object a test creates: [`TEST_LABEL`] and the test process's id
/// (`io.berth.test.pid`), so that the leftover check tells a run in progress from a finished one.
pub fn test_labels() -> [String; 4] {
    [
        "--label".into(),
        TEST_LABEL.into(),
        "--label".into(),
        format!("io.berth.test.pid={}", std::process::id()),
    ]
}

/// `docker run <args…>` with [`test_labels`]; its trimmed output (the id with `-d`). Panics on
/// failure. Remove the container with [`World::adopt`] or a guard of the test's own.
pub fn docker_run(args: &[&str]) -> String {
    let mut all: Vec<&str> = vec!["run"];
    let labels = test_labels();
    all.extend(labels.iter().map(String::as_str));
    all.extend_from_slice(args);
    docker(&all)
}

/// Build the local test images once per test run (fast when they exist).
pub fn test_images() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let root = env!("CARGO_MANIFEST_DIR");
        let out = Command::new("bash")
            .arg(format!("{root}/hack/test-images.sh"))
            .output()
            .expect("run hack/test-images.sh");
        assert!(
            out.status.success(),
            "hack/test-images.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// One test's world: a config folder and a berth instance name of its own, so that tests can
/// run in parallel on one Engine without seeing each other's stacks. Everything the instance
/// created is removed on drop.
pub struct World {
    pub dir: tempfile::TempDir,
    pub instance: String,
    /// Containers the test started by hand (not labelled): removed on drop too.
    extra: std::cell::RefCell<Vec<String>>,
}

impl World {
    pub fn new(test: &str) -> World {
        test_images();
        World {
            dir: tempfile::tempdir().expect("tempdir"),
            instance: format!("it-{test}-{}", std::process::id()),
            extra: Default::default(),
        }
    }

    /// Remove this container (started by the test, not by berth, e.g. with [`docker_run`]) when
    /// the world goes.
    pub fn adopt(&self, name: &str) {
        self.extra.borrow_mut().push(name.to_string());
    }

    /// `label=io.berth.instance=<this instance>`, for Docker CLI filters.
    pub fn label(&self) -> String {
        format!("label=io.berth.instance={}", self.instance)
    }

    /// A unique stack name for this test.
    pub fn stack(&self, name: &str) -> String {
        format!("{}-{name}", self.instance)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write `<dir>/<rel>` (creating folders).
    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Run `berth <args…> <config dir>` as this instance.
    pub fn berth(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .arg(self.dir.path())
            .env("BERTH_INSTANCE", &self.instance)
            .env("BERTH_LOG", "berth=info")
            .env("BERTH_STATE_DIR", self.state_dir())
            .output()
            .expect("run berth");
        Run::from(out)
    }

    /// The CLI's state dir for this world (not the machine's /var/lib/berth); removed on drop.
    pub fn state_dir(&self) -> PathBuf {
        std::env::temp_dir().join(format!("berth-state-{}", self.instance))
    }

    /// Container IDs of this instance, by name.
    pub fn containers(&self) -> std::collections::BTreeMap<String, String> {
        docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=io.berth.instance={}", self.instance),
            "--format",
            "{{.Names}} {{.ID}}",
        ])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, id)| (n.to_string(), id.to_string()))
        .collect()
    }
}

impl Drop for World {
    /// Best effort: cleanup must not panic (a panic while a test is failing aborts the run).
    fn drop(&mut self) {
        let label = self.label();
        let list = |args: &[&str]| -> Vec<String> {
            Command::new("docker")
                .args(args)
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut containers = list(&["ps", "-aq", "--filter", &label]);
        containers.extend(self.extra.borrow().iter().cloned());
        if !containers.is_empty() {
            // -v: anonymous volumes of test containers go too.
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&containers)
                .output();
        }
        for kind in ["network", "volume"] {
            let names = list(&[kind, "ls", "-q", "--filter", &label]);
            if !names.is_empty() {
                let _ = Command::new("docker")
                    .args([kind, "rm"])
                    .args(&names)
                    .output();
            }
        }
        let _ = std::fs::remove_dir_all(self.state_dir());
    }
}

/// The outcome of one `berth` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Assert the exit code, showing the output when it is not the expected one.
    #[track_caller]
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "berth exited {} (expected {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// The Docker API request counts berth logged: (total, mutating).
    pub fn requests(&self) -> (u64, u64) {
        let line = self
            .stderr
            .lines()
            .rfind(|l| l.contains("docker requests"))
            .unwrap_or_else(|| panic!("no request count in stderr:\n{}", self.stderr));
        let num = |key: &str| -> u64 {
            let rest =
                &line[line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len()..];
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap()
        };
        (num("total="), num("mutating="))
    }
}

/// Run the Docker CLI (an independent witness); its trimmed output. Panics on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Create the Docker network `name` (with [`test_labels`]) on a free /24 under `prefix` (two
/// octets, e.g. "100.64"); returns the subnet's first three octets. Tests running side by side,
/// or networks left on the Engine by anything else, never collide: a taken subnet makes the
/// Engine answer "Pool overlaps", and the next one is tried. [`Networks::on_free_subnet`] also
/// removes it when the test ends.
pub fn network_on_free_subnet(name: &str, prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _ = Command::new("docker")
        .args(["network", "rm", name])
        .output();
    let start = std::process::id();
    for _ in 0..254 {
        let third = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 254 + 1;
        let base = format!("{prefix}.{third}");
        let out = Command::new("docker")
            .args(["network", "create"])
            .args(test_labels())
            .args(["--subnet", &format!("{base}.0/24"), name])
            .output()
            .expect("run docker");
        if out.status.success() {
            return base;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("overlaps"),
            "docker network create {name} on {base}.0/24 failed: {err}"
        );
    }
    panic!("no free /24 under {prefix} for {name}");
}

/// Docker networks a test created (with [`test_labels`]), removed when this guard is dropped —
/// also when the test panics. Containers still attached (a test host, a client, a container
/// berth started) are disconnected first: the Engine refuses to remove a network in use, and
/// the guard may well go before them.
#[derive(Default)]
pub struct Networks(Vec<String>);

impl Networks {
    pub fn new() -> Networks {
        Networks::default()
    }

    /// [`network_on_free_subnet`], removed on drop; the subnet's first three octets.
    pub fn on_free_subnet(&mut self, name: &str, prefix: &str) -> String {
        let base = network_on_free_subnet(name, prefix);
        self.0.push(name.to_string());
        base
    }

    /// A network on a subnet the Engine picks, removed on drop.
    pub fn create(&mut self, name: &str) {
        let _ = Command::new("docker")
            .args(["network", "rm", name])
            .output();
        let mut args: Vec<String> = vec!["network".into(), "create".into()];
        args.extend(test_labels());
        args.push(name.to_string());
        docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
        self.0.push(name.to_string());
    }
}

impl Drop for Networks {
    /// Best effort: must not panic (a panic while a test is failing aborts the run).
    fn drop(&mut self) {
        for name in &self.0 {
            let attached = Command::new("docker")
                .args(["network", "inspect", "--format"])
                .arg("{{range $id, $_ := .Containers}}{{$id}} {{end}}")
                .arg(name)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for id in attached.split_whitespace() {
                let _ = Command::new("docker")
                    .args(["network", "disconnect", "--force", name, id])
                    .output();
            }
            let _ = Command::new("docker")
                .args(["network", "rm", name])
                .output();
        }
    }
}

/// A self-signed P-256 certificate for pebble (`/CN=pebble`, `san` such as `DNS:pebble` or
/// `IP:127.0.0.1,DNS:localhost`), valid for two days: `key` and `cert` are written as PEM.
pub fn pebble_cert(key: &Path, cert: &Path, san: &str) {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-days", "2", "-subj", "/CN=pebble"])
        .args(["-addext", &format!("subjectAltName={san}")])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `docker inspect -f <format> <name>`.
pub fn inspect(name: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, name]).trim().to_string()
}

/// Mutating events (create, start, stop, die, destroy, rename) the Engine recorded for this
/// instance's containers between two instants (unix seconds, as `docker events` takes them).
pub fn mutating_events(instance: &str, since: &str, until: &str) -> Vec<String> {
    let out = docker(&[
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        &format!("label=io.berth.instance={instance}"),
        "--filter",
        "type=container",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    out.lines()
        .filter(|l| {
            let action = l.split(' ').next().unwrap_or("");
            [
                "create", "start", "stop", "die", "destroy", "rename", "kill", "restart",
            ]
            .contains(&action)
        })
        .map(String::from)
        .collect()
}

/// The Engine's clock as `docker events` wants it, with sub-second precision.
pub fn engine_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Run git in `dir` with a fixed identity and no user or system config; its stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "init.defaultBranch=main", "-c", "core.symlinks=true"])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada Author")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Author")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare origin (`<tmp>/srv/origin.git`) and a work clone that commits and pushes to it.
pub struct GitRepo {
    tmp: tempfile::TempDir,
}

impl GitRepo {
    pub fn new() -> GitRepo {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = GitRepo { tmp };
        std::fs::create_dir_all(repo.srv()).unwrap();
        git(&repo.srv(), &["init", "--bare", "-q", "origin.git"]);
        git(
            repo.tmp.path(),
            &["clone", "-q", repo.origin().to_str().unwrap(), "work"],
        );
        repo
    }
    /// The folder `git daemon` serves.
    pub fn srv(&self) -> PathBuf {
        self.tmp.path().join("srv")
    }
    pub fn origin(&self) -> PathBuf {
        self.srv().join("origin.git")
    }
    pub fn work(&self) -> PathBuf {
        self.tmp.path().join("work")
    }
    pub fn file_url(&self) -> String {
        format!("file://{}", self.origin().display())
    }
    /// A fresh path inside the fixture's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    pub fn write(&self, rel: &str, content: &str) {
        let p = self.work().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    /// git in the work clone.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.work(), args)
    }
    /// Stage everything, commit, return the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
    pub fn push(&self) {
        self.git(&["push", "-q", "origin", "HEAD:refs/heads/main"]);
    }
    pub fn force_push(&self) {
        self.git(&["push", "-q", "--force", "origin", "HEAD:refs/heads/main"]);
    }
    /// Publish HEAD under another ref (e.g. `refs/pull/7/head`, as GitHub does for PRs).
    pub fn push_ref(&self, refname: &str) {
        self.git(&[
            "push",
            "-q",
            "--force",
            "origin",
            &format!("HEAD:{refname}"),
        ]);
    }
}

/// `git daemon` on loopback, serving a folder; killed on drop.
pub struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl GitDaemon {
    pub fn start(base: &Path) -> GitDaemon {
        GitDaemon::start_on(base, free_port())
    }

    /// On a given port (to bring a stopped daemon back where clients expect it).
    pub fn start_on(base: &Path, port: u16) -> GitDaemon {
        // The `git-daemon` binary itself: `git daemon` would run it as a child that outlives a
        // kill of the `git` wrapper.
        let exec_path = git(base, &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", base.display()),
                "--export-all",
                "--enable=receive-pack",
                base.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn git daemon");
        let mut daemon = GitDaemon { child, port };
        // Readiness: the port accepts connections.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = daemon.child.try_wait().unwrap() {
                panic!("git daemon exited early: {status}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "git daemon did not listen on {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        daemon
    }
    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
