//! Executor tests of host changes against a fake host: the order of record and write, the
//! revert of a failed unit, a refused validate, a failed on_change action, a sysctl that cannot
//! be persisted, and what a failure report may say about a secret file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::tests::Fake as NoDocker;
use super::*;
use crate::host::HostError;
use crate::model::host::*;
use crate::model::{Desired, Observed};
use crate::plan::{PlanOptions, plan};

/// An in-memory host. A unit whose file contains `ExecStart=/bin/false` fails to start; a
/// `validate` command containing `reject` refuses; writes under `fail_under` fail.
#[derive(Default)]
struct FakeHost {
    s: Mutex<State>,
}

#[derive(Default)]
struct State {
    files: BTreeMap<PathBuf, (Vec<u8>, Meta)>,
    sysctls: BTreeMap<String, String>,
    /// Unit → active state.
    active: BTreeMap<String, String>,
    enabled: BTreeMap<String, bool>,
    inventory: BTreeMap<String, Entry>,
    calls: Vec<String>,
    reloads: usize,
    /// Writes below this folder fail (a read-only or full file system).
    fail_under: Option<PathBuf>,
}

type R<T> = Result<T, HostError>;

impl FakeHost {
    fn with(f: impl FnOnce(&mut State)) -> FakeHost {
        let h = FakeHost::default();
        f(&mut h.s.lock().unwrap());
        h
    }
    fn calls(&self) -> Vec<String> {
        self.s.lock().unwrap().calls.clone()
    }
    fn file(&self, p: &str) -> Option<String> {
        let s = self.s.lock().unwrap();
        s.files
            .get(Path::new(p))
            .map(|(c, _)| String::from_utf8_lossy(c).into_owned())
    }
    /// What the host looks like to the planner.
    fn observe(&self, d: &Desired) -> Observed {
        let s = self.s.lock().unwrap();
        let mut h = ObservedHost::default();
        for p in ["/", "/etc", "/etc/systemd/system", "/etc/sysctl.d"] {
            h.paths.insert(
                p.into(),
                PathState::Dir {
                    meta: Meta {
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                    },
                },
            );
        }
        for (p, (c, m)) in &s.files {
            h.paths.insert(
                p.clone(),
                PathState::File {
                    content: c.clone(),
                    meta: *m,
                },
            );
        }
        for (k, v) in &s.sysctls {
            h.sysctls.insert(k.clone(), Ok(v.clone()));
        }
        for name in d.host.units.keys() {
            h.units.insert(
                name.clone(),
                ObservedUnit {
                    load: if s.files.contains_key(&unit_path(name)) {
                        "loaded".into()
                    } else {
                        "not-found".into()
                    },
                    active: s.active.get(name).cloned().unwrap_or("inactive".into()),
                    file_state: if s.enabled.get(name) == Some(&true) {
                        "enabled".into()
                    } else {
                        "disabled".into()
                    },
                    file: s
                        .files
                        .get(&unit_path(name))
                        .map(|(c, _)| String::from_utf8_lossy(c).into_owned()),
                    dropins: BTreeMap::new(),
                },
            );
        }
        h.users.insert("root".into(), Some(0));
        h.groups.insert("root".into(), Some(0));
        h.inventory.entries = s.inventory.clone();
        Observed {
            host: h,
            ..Default::default()
        }
    }
}

impl HostDriver for FakeHost {
    async fn write_file(
        &self,
        path: &Path,
        content: &[u8],
        meta: Meta,
        validate: Option<&str>,
    ) -> R<()> {
        let mut s = self.s.lock().unwrap();
        s.calls.push(format!("write {}", path.display()));
        if s.fail_under.as_ref().is_some_and(|f| path.starts_with(f)) {
            return Err(HostError::Io {
                op: "write",
                path: path.into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            });
        }
        if let Some(v) = validate
            && v.contains("reject")
        {
            return Err(HostError::Validate {
                command: v.into(),
                status: "exit status 1".into(),
                output: format!("line 1: bad: {}", String::from_utf8_lossy(content)),
            });
        }
        s.files.insert(path.into(), (content.to_vec(), meta));
        Ok(())
    }
    async fn remove_file(&self, path: &Path) -> R<()> {
        let mut s = self.s.lock().unwrap();
        s.calls.push(format!("remove {}", path.display()));
        s.files.remove(path);
        Ok(())
    }
    async fn make_dir(&self, path: &Path, _: Meta) -> R<()> {
        self.s
            .lock()
            .unwrap()
            .calls
            .push(format!("mkdir {}", path.display()));
        Ok(())
    }
    async fn set_meta(&self, path: &Path, _: Meta) -> R<()> {
        self.s
            .lock()
            .unwrap()
            .calls
            .push(format!("chmod {}", path.display()));
        Ok(())
    }
    async fn remove_dir(&self, path: &Path) -> R<bool> {
        self.s
            .lock()
            .unwrap()
            .calls
            .push(format!("rmdir {}", path.display()));
        Ok(true)
    }
    async fn write_sysctl(&self, key: &str, value: &str) -> R<()> {
        let mut s = self.s.lock().unwrap();
        s.calls.push(format!("sysctl {key}={value}"));
        s.sysctls.insert(key.into(), value.into());
        Ok(())
    }
    async fn systemctl(&self, verb: &str, units: &[&str]) -> R<()> {
        let mut s = self.s.lock().unwrap();
        s.calls
            .push(format!("systemctl {verb} {}", units.join(" ")));
        for u in units {
            let broken = s
                .files
                .get(&unit_path(u))
                .is_some_and(|(c, _)| String::from_utf8_lossy(c).contains("ExecStart=/bin/false"));
            match verb {
                // Type=simple: the start "succeeds", the service dies right after.
                "start" | "restart" | "reload" => {
                    let state = if broken { "failed" } else { "active" };
                    s.active.insert(u.to_string(), state.into());
                }
                "stop" => {
                    s.active.insert(u.to_string(), "inactive".into());
                }
                "enable" => {
                    s.enabled.insert(u.to_string(), true);
                }
                "disable" => {
                    s.enabled.insert(u.to_string(), false);
                }
                _ => {}
            }
        }
        Ok(())
    }
    async fn daemon_reload(&self) -> R<()> {
        let mut s = self.s.lock().unwrap();
        s.calls.push("daemon-reload".into());
        s.reloads += 1;
        Ok(())
    }
    async fn unit_state(&self, unit: &str) -> R<String> {
        Ok(self
            .s
            .lock()
            .unwrap()
            .active
            .get(unit)
            .cloned()
            .unwrap_or("inactive".into()))
    }
    async fn journal(&self, unit: &str, _: usize) -> R<String> {
        Ok(format!(
            "{unit}: Main process exited, code=exited, status=1/FAILURE"
        ))
    }
    async fn record(&self, addr: &str, entry: Option<&Entry>) -> R<()> {
        let mut s = self.s.lock().unwrap();
        s.calls.push(format!(
            "record {addr} {}",
            if entry.is_some() { "put" } else { "forget" }
        ));
        match entry {
            Some(e) => s.inventory.insert(addr.into(), e.clone()),
            None => s.inventory.remove(addr),
        };
        Ok(())
    }
}

fn fast() -> ApplyOptions {
    ApplyOptions {
        poll_interval: std::time::Duration::from_millis(10),
        unit_settle: std::time::Duration::from_millis(50),
        ..ApplyOptions::default()
    }
}

fn origin() -> Origin {
    Origin {
        file: "berth.yaml".into(),
        line: 1,
        col: 1,
    }
}

fn unit_spec(content: &str) -> UnitSpec {
    UnitSpec {
        name: "hello.service".into(),
        content: Some(content.into()),
        dropins: BTreeMap::new(),
        enabled: None,
        state: Some(UnitRunState::Started),
        adopt: false,
        origin: origin(),
    }
}

fn file_spec(path: &str, content: &str) -> FileSpec {
    FileSpec {
        path: path.into(),
        content: content.as_bytes().to_vec(),
        owner: Ownership::new(0o644),
        secret: false,
        validate: None,
        adopt: false,
        on_change: None,
        origin: origin(),
    }
}

/// Plan against the fake and apply; returns the result.
async fn run(host: &FakeHost, d: &Desired) -> Result<ApplyReport, ApplyError> {
    let p = plan(d, &host.observe(d), &PlanOptions::default());
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    apply(&NoDocker::default(), host, &p, &fast(), &mut |_| {}).await
}

const GOOD: &str = "[Service]\nExecStart=/bin/sleep infinity\n";
const BAD: &str = "[Service]\nExecStart=/bin/false\n";

#[tokio::test]
async fn a_unit_that_dies_after_its_change_is_reverted_to_the_running_previous_version() {
    let host = FakeHost::default();
    let mut d = Desired::default();
    d.host.units.insert("hello.service".into(), unit_spec(GOOD));
    run(&host, &d).await.unwrap();
    assert_eq!(host.s.lock().unwrap().active["hello.service"], "active");
    let recorded = host.s.lock().unwrap().inventory.clone();

    d.host.units.insert("hello.service".into(), unit_spec(BAD));
    let err = run(&host, &d).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("did not stay active"), "{msg}");
    assert!(
        msg.contains("status=1/FAILURE"),
        "journal lines in the report: {msg}"
    );
    assert!(msg.contains("previous version runs again"), "{msg}");
    // The previous unit file is back, running, and the inventory is as before.
    let path = unit_path("hello.service");
    assert_eq!(host.file(path.to_str().unwrap()).as_deref(), Some(GOOD));
    let s = host.s.lock().unwrap();
    assert_eq!(s.active["hello.service"], "active");
    assert_eq!(s.inventory, recorded);
    assert!(
        s.reloads >= 3,
        "daemon-reload after each file write: {}",
        s.reloads
    );
}

#[tokio::test]
async fn a_new_unit_that_fails_is_removed_again() {
    let host = FakeHost::default();
    let mut d = Desired::default();
    d.host.units.insert("hello.service".into(), unit_spec(BAD));
    run(&host, &d).await.unwrap_err();
    assert_eq!(
        host.file(unit_path("hello.service").to_str().unwrap()),
        None
    );
    // Stopped and disabled while its file was still there, then removed.
    let calls = host.calls();
    let at = |c: &str| calls.iter().rposition(|x| x == c).unwrap_or(usize::MAX);
    assert!(
        at("systemctl disable hello.service") < at("remove /etc/systemd/system/hello.service"),
        "{calls:?}"
    );
    let s = host.s.lock().unwrap();
    assert_ne!(
        s.active.get("hello.service").map(String::as_str),
        Some("active")
    );
    assert!(s.inventory.is_empty(), "{:?}", s.inventory);
}

#[tokio::test]
async fn the_record_is_written_before_the_file() {
    let host = FakeHost::default();
    let mut d = Desired::default();
    d.host
        .files
        .insert("/etc/motd".into(), file_spec("/etc/motd", "hi\n"));
    run(&host, &d).await.unwrap();
    assert_eq!(
        host.calls(),
        ["record file:/etc/motd put", "write /etc/motd"]
    );
    // Removed from the config: removed, then forgotten.
    let d = Desired {
        host: HostSpec::default(),
        ..Default::default()
    };
    let p = plan(
        &d,
        &host.observe(&d),
        &PlanOptions {
            allow_empty: true,
            ..Default::default()
        },
    );
    apply(&NoDocker::default(), &host, &p, &fast(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(host.file("/etc/motd"), None);
    assert!(host.s.lock().unwrap().inventory.is_empty());
}

#[tokio::test]
async fn a_refused_validate_replaces_nothing_and_a_secret_stays_hidden() {
    let host = FakeHost::with(|s| {
        s.files.insert(
            "/etc/app.key".into(),
            (
                b"old".to_vec(),
                Meta {
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                },
            ),
        );
        s.inventory.insert(
            "file:/etc/app.key".into(),
            Entry {
                before: Before::Absent,
                applied: None,
            },
        );
    });
    let mut d = Desired::default();
    let mut f = file_spec("/etc/app.key", "hunter2-secret");
    f.validate = Some("check-and-reject %s".into());
    f.secret = true;
    f.on_change = Some(OnChange::Restart("app.service".into()));
    d.host.files.insert("/etc/app.key".into(), f);
    let err = run(&host, &d).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("nothing was replaced"), "{msg}");
    assert!(!msg.contains("hunter2"), "secret in the report: {msg}");
    assert_eq!(host.file("/etc/app.key").as_deref(), Some("old"));
    assert!(!host.calls().iter().any(|c| c.starts_with("systemctl")));
}

#[tokio::test]
async fn a_failed_on_change_action_puts_the_previous_file_back() {
    let host = FakeHost::with(|s| {
        s.files.insert(
            unit_path("app.service"),
            (
                BAD.as_bytes().to_vec(),
                Meta {
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                },
            ),
        );
        s.files.insert(
            "/etc/app.conf".into(),
            (
                b"v1\n".to_vec(),
                Meta {
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                },
            ),
        );
        s.inventory.insert(
            "file:/etc/app.conf".into(),
            Entry {
                before: Before::Absent,
                applied: None,
            },
        );
    });
    let mut d = Desired::default();
    let mut f = file_spec("/etc/app.conf", "v2\n");
    f.on_change = Some(OnChange::Restart("app.service".into()));
    d.host.files.insert("/etc/app.conf".into(), f);
    let err = run(&host, &d).await.unwrap_err();
    assert!(
        err.to_string().contains("put the previous file back"),
        "{err}"
    );
    assert_eq!(host.file("/etc/app.conf").as_deref(), Some("v1\n"));
    let restarts = host
        .calls()
        .iter()
        .filter(|c| *c == "systemctl restart app.service")
        .count();
    assert_eq!(
        restarts, 2,
        "restarted with the new file, then with the old one"
    );
}

#[tokio::test]
async fn a_sysctl_that_cannot_be_persisted_gets_its_value_back() {
    let host = FakeHost::with(|s| {
        s.sysctls.insert("net.ipv4.ip_forward".into(), "0".into());
    });
    let mut d = Desired::default();
    d.host.sysctls.insert(
        "net.ipv4.ip_forward".into(),
        SysctlSpec {
            key: "net.ipv4.ip_forward".into(),
            value: "1".into(),
            origin: origin(),
        },
    );
    // /etc/sysctl.d cannot be written: the value alone must not stay.
    host.s.lock().unwrap().fail_under = Some("/etc/sysctl.d".into());
    let err = run(&host, &d).await.unwrap_err();
    assert!(
        err.to_string().contains("put the previous value 0 back"),
        "{err}"
    );
    assert_eq!(host.s.lock().unwrap().sysctls["net.ipv4.ip_forward"], "0");
    assert!(host.s.lock().unwrap().inventory.is_empty());
    // It can: set and persisted.
    host.s.lock().unwrap().fail_under = None;
    run(&host, &d).await.unwrap();
    assert_eq!(host.s.lock().unwrap().sysctls["net.ipv4.ip_forward"], "1");
    assert!(
        host.file("/etc/sysctl.d/99-zz-berth-net.ipv4.ip_forward.conf")
            .unwrap()
            .contains("net.ipv4.ip_forward = 1")
    );
}

/// serve applies the groups without plan errors; a container that needs a host folder of the
/// withheld `host` group is not attempted (else Docker would create the folder itself).
#[tokio::test]
async fn a_change_that_needs_a_withheld_host_change_is_not_attempted() {
    use crate::model::{MountSource, MountSpec, ServiceSpec, StackSpec};
    let host = FakeHost::default();
    let mut web = ServiceSpec {
        image: "berth-test/app:1".into(),
        replicas: 1,
        ..Default::default()
    };
    web.mounts.push(MountSpec {
        target: "/data".into(),
        source: MountSource::Bind {
            path: "/etc/appdata".into(),
            selinux: None,
            propagation: None,
            create_host_path: true,
        },
        read_only: false,
    });
    let mut d = Desired::default();
    d.stacks.insert(
        "app".into(),
        StackSpec {
            name: "app".into(),
            services: [("web".to_string(), web)].into(),
            ..Default::default()
        },
    );
    d.host.dirs.insert(
        "/etc/appdata".into(),
        DirSpec {
            path: "/etc/appdata".into(),
            owner: Ownership::new(0o755),
            adopt: false,
            origin: origin(),
        },
    );
    d.host.sysctls.insert(
        "net.nope".into(),
        SysctlSpec {
            key: "net.nope".into(),
            value: "1".into(),
            origin: origin(),
        },
    );
    let mut o = host.observe(&d);
    o.images
        .insert("berth-test/app:1".into(), "sha256:1".into());
    o.host
        .sysctls
        .insert("net.nope".into(), Err("no such sysctl".into()));
    let p = plan(&d, &o, &PlanOptions::default());
    assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
    let healthy = p.without_withheld();
    let err = apply(&NoDocker::default(), &host, &healthy, &fast(), &mut |_| {})
        .await
        .unwrap_err();
    let ApplyError::Failed { report } = err else {
        panic!("{err:?}")
    };
    assert_eq!(report.not_attempted.len(), 1, "{report:?}");
    assert!(host.calls().is_empty(), "{:?}", host.calls());
}
