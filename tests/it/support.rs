//! Shared test harness: a config folder in a temp dir, the `berth` binary, the Docker CLI as an
//! independent witness of what is on the Engine, and cleanup by label even when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

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
}

impl World {
    pub fn new(test: &str) -> World {
        test_images();
        World {
            dir: tempfile::tempdir().expect("tempdir"),
            instance: format!("it-{test}-{}", std::process::id()),
        }
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
            .output()
            .expect("run berth");
        Run::from(out)
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
    fn drop(&mut self) {
        let label = format!("label=io.berth.instance={}", self.instance);
        let ids = docker(&["ps", "-aq", "--filter", &label]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            docker(&args);
        }
        for kind in ["network", "volume"] {
            let names = docker(&[kind, "ls", "-q", "--filter", &label]);
            let names: Vec<&str> = names.split_whitespace().collect();
            if !names.is_empty() {
                let mut args = vec![kind, "rm"];
                args.extend(names);
                docker(&args);
            }
        }
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

/// Run the Docker CLI (an independent witness); panics on failure.
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
    String::from_utf8_lossy(&out.stdout).into_owned()
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
