//! Snapshot tests of the host planners (file, directory, sysctl, unit), through the same
//! [`check`] helper as the container plans.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;

use super::tests::{check, converged, stack, svc};
use super::*;
use crate::model::host::*;
use crate::model::{Desired, MountSource, MountSpec, Observed};

fn origin(line: u64) -> Origin {
    Origin {
        file: "host/berth.yaml".into(),
        line,
        col: 1,
    }
}

fn file(path: &str, content: &str) -> FileSpec {
    FileSpec {
        path: path.into(),
        content: content.as_bytes().to_vec(),
        owner: Ownership::new(0o644),
        secret: false,
        validate: None,
        adopt: false,
        on_change: None,
        origin: origin(1),
    }
}

fn unit(name: &str, content: &str) -> UnitSpec {
    UnitSpec {
        name: name.into(),
        content: Some(content.into()),
        dropins: BTreeMap::new(),
        enabled: Some(true),
        state: Some(UnitRunState::Started),
        adopt: false,
        origin: origin(20),
    }
}

const HELLO: &str = "[Unit]\nDescription=hello\n[Service]\nEnvironmentFile=/etc/hello/env\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n";

fn meta(mode: u32) -> Meta {
    Meta {
        mode,
        uid: 0,
        gid: 0,
    }
}

fn dir_state() -> PathState {
    PathState::Dir { meta: meta(0o755) }
}

fn file_state(content: &str, mode: u32) -> PathState {
    PathState::File {
        content: content.as_bytes().to_vec(),
        meta: meta(mode),
    }
}

/// A host with `/`, `/etc` and `/etc/systemd/system`, root and www-data.
fn host() -> ObservedHost {
    let mut h = ObservedHost::default();
    for d in ["/", "/etc", "/etc/systemd/system", "/etc/sysctl.d", "/srv"] {
        h.paths.insert(d.into(), dir_state());
    }
    h.users.insert("root".into(), Some(0));
    h.groups.insert("root".into(), Some(0));
    h.users.insert("www-data".into(), Some(33));
    h.groups.insert("www-data".into(), Some(33));
    h
}

fn observed(h: ObservedHost) -> Observed {
    Observed {
        host: h,
        ..Default::default()
    }
}

fn entry(before: Before, applied: Option<&[u8]>) -> Entry {
    Entry {
        before,
        applied: applied.map(crate::model::sha256_hex),
    }
}

fn desired_host(f: impl FnOnce(&mut HostSpec)) -> Desired {
    let mut d = Desired::default();
    f(&mut d.host);
    d
}

/// Everything a server needs, on a host that has none of it: a folder, a file in it that a
/// unit reads, a sysctl, a unit; created in that order.
#[test]
fn fresh_host_creates_folder_file_sysctl_and_unit_in_edge_order() {
    let d = desired_host(|h| {
        h.dirs.insert(
            "/etc/hello".into(),
            DirSpec {
                path: "/etc/hello".into(),
                owner: Ownership::new(0o750),
                adopt: false,
                origin: origin(5),
            },
        );
        h.files.insert(
            "/etc/hello/env".into(),
            file("/etc/hello/env", "GREETING=hi\n"),
        );
        h.sysctls.insert(
            "net.ipv4.ip_forward".into(),
            SysctlSpec {
                key: "net.ipv4.ip_forward".into(),
                value: "1".into(),
                origin: origin(10),
            },
        );
        h.units
            .insert("hello.service".into(), unit("hello.service", HELLO));
    });
    let mut h = host();
    h.sysctls
        .insert("net.ipv4.ip_forward".into(), Ok("0".into()));
    let p = check("host_fresh", &d, &observed(h), PlanOptions::default());
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let order: Vec<String> = p.changes.iter().map(|c| c.addr.to_string()).collect();
    let pos = |a: &str| order.iter().position(|o| o == a).unwrap();
    assert!(pos("directory:/etc/hello") < pos("file:/etc/hello/env"));
    assert!(pos("file:/etc/hello/env") < pos("unit:hello.service"));
    let Payload::Unit(u) = &p.changes[pos("unit:hello.service")].payload else {
        panic!()
    };
    assert_eq!((u.enable, u.run), (Some(true), Some(UnitVerb::Start)));
}

/// The same host once applied: nothing to do, and the plan says how many settings are fine.
#[test]
fn converged_host_is_a_no_op() {
    let d = desired_host(|h| {
        h.files
            .insert("/etc/motd".into(), file("/etc/motd", "hi\n"));
        h.sysctls.insert(
            "net.ipv4.ip_local_port_range".into(),
            SysctlSpec {
                key: "net.ipv4.ip_local_port_range".into(),
                value: normalize_sysctl("32768   60999"),
                origin: origin(3),
            },
        );
        h.units
            .insert("hello.service".into(), unit("hello.service", HELLO));
    });
    let mut h = host();
    h.paths
        .insert("/etc/motd".into(), file_state("hi\n", 0o644));
    let key = "net.ipv4.ip_local_port_range";
    h.sysctls.insert(key.into(), Ok("32768\t60999".into()));
    h.paths.insert(
        sysctl_conf_path(key),
        PathState::File {
            content: sysctl_conf(key, "32768\t60999").into_bytes(),
            meta: meta(0o644),
        },
    );
    h.units.insert(
        "hello.service".into(),
        ObservedUnit {
            load: "loaded".into(),
            active: "active".into(),
            file_state: "enabled".into(),
            file: Some(HELLO.into()),
            dropins: BTreeMap::new(),
        },
    );
    h.inventory
        .entries
        .insert("file:/etc/motd".into(), entry(Before::Absent, None));
    h.inventory.entries.insert(
        "unit:hello.service".into(),
        entry(
            Before::Unit {
                owns_file: true,
                file: None,
                enabled: false,
                active: false,
                dropins: BTreeMap::new(),
            },
            None,
        ),
    );
    let p = check("host_converged", &d, &observed(h), PlanOptions::default());
    assert!(!p.has_changes(), "{:?}", p.changes);
    assert_eq!(p.unchanged_host.len(), 3);
}

/// A secret file's content never appears: not in the diff, not in the JSON.
#[test]
fn secret_file_change_shows_no_content() {
    let d = desired_host(|h| {
        let mut f = file("/etc/app.key", "new-secret-value\n");
        f.secret = true;
        f.owner = Ownership {
            mode: 0o600,
            owner: "www-data".into(),
            group: "www-data".into(),
        };
        h.files.insert("/etc/app.key".into(), f);
    });
    let mut h = host();
    h.paths.insert(
        "/etc/app.key".into(),
        file_state("old-secret-value\n", 0o644),
    );
    h.inventory.entries.insert(
        "file:/etc/app.key".into(),
        entry(Before::Absent, Some(b"old-secret-value\n")),
    );
    let p = check("host_secret", &d, &observed(h), PlanOptions::default());
    let text = crate::render::plan_text(&p);
    assert!(text.contains("secret: not shown"), "{text}");
    assert!(!text.contains("old-secret-value"), "{text}");
}

/// A path berth did not create is refused; with `adopt: true` it is taken over, the original
/// recorded.
#[test]
fn existing_file_is_refused_unless_adopted() {
    let mut d = desired_host(|h| {
        h.files.insert(
            "/etc/ssh/sshd_config.d/50-berth.conf".into(),
            file(
                "/etc/ssh/sshd_config.d/50-berth.conf",
                "PasswordAuthentication no\n",
            ),
        );
    });
    let mut h = host();
    h.paths.insert("/etc/ssh/sshd_config.d".into(), dir_state());
    h.paths.insert(
        "/etc/ssh/sshd_config.d/50-berth.conf".into(),
        file_state("PasswordAuthentication yes\n", 0o600),
    );
    let o = observed(h);
    let p = check("host_not_owned", &d, &o, PlanOptions::default());
    assert!(matches!(p.errors[..], [PlanError::HostNotOwned { .. }]));
    assert!(!p.has_changes());

    d.host
        .files
        .get_mut(std::path::Path::new("/etc/ssh/sshd_config.d/50-berth.conf"))
        .unwrap()
        .adopt = true;
    let p = check("host_adopt", &d, &o, PlanOptions::default());
    // A file berth does not own yet is never printed (a PR preview could name any path).
    let text = crate::render::plan_text(&p);
    assert!(!text.contains("PasswordAuthentication yes"), "{text}");
    let Payload::File(f) = &p.changes[0].payload else {
        panic!()
    };
    let Some(Entry {
        before: Before::File { content, meta: m },
        ..
    }) = &f.record.after
    else {
        panic!("{:?}", f.record)
    };
    let original = base64::engine::general_purpose::STANDARD
        .decode(content)
        .unwrap();
    assert_eq!(original, b"PasswordAuthentication yes\n");
    assert_eq!(m.mode, 0o600);
}

/// A hand edit of a file berth wrote is drift, named as such, with the diff back.
#[test]
fn hand_edit_is_drift_with_a_diff() {
    let d = desired_host(|h| {
        h.files.insert(
            "/etc/motd".into(),
            file("/etc/motd", "line 1\nline 2\nline 3\n"),
        );
    });
    let mut h = host();
    h.paths.insert(
        "/etc/motd".into(),
        file_state("line 1\nedited\nline 3\n", 0o666),
    );
    h.inventory.entries.insert(
        "file:/etc/motd".into(),
        entry(Before::Absent, Some(b"line 1\nline 2\nline 3\n")),
    );
    let p = check("host_hand_edit", &d, &observed(h), PlanOptions::default());
    assert!(p.changes[0].reasons.contains(&Reason::HandEdited));
}

/// What leaves the config: a created file is removed, an adopted one put back, a sysctl gets
/// its old value, a created unit is stopped, disabled and removed.
#[test]
fn removed_settings_are_deleted_or_restored() {
    let d = desired_host(|h| {
        h.files.insert("/etc/keep".into(), file("/etc/keep", "k\n"));
    });
    let mut h = host();
    h.paths.insert("/etc/keep".into(), file_state("k\n", 0o644));
    h.paths.insert("/etc/made".into(), file_state("m\n", 0o644));
    h.paths
        .insert("/etc/taken".into(), file_state("berth's\n", 0o644));
    h.sysctls
        .insert("net.ipv4.ip_forward".into(), Ok("1".into()));
    h.units.insert(
        "hello.service".into(),
        ObservedUnit {
            load: "loaded".into(),
            active: "active".into(),
            file_state: "enabled".into(),
            file: Some(HELLO.into()),
            dropins: BTreeMap::new(),
        },
    );
    let inv = &mut h.inventory.entries;
    inv.insert("file:/etc/keep".into(), entry(Before::Absent, Some(b"k\n")));
    inv.insert("file:/etc/made".into(), entry(Before::Absent, None));
    inv.insert("file:/etc/gone".into(), entry(Before::Absent, None));
    inv.insert(
        "file:/etc/taken".into(),
        entry(
            Before::File {
                content: base64::engine::general_purpose::STANDARD.encode("original\n"),
                meta: meta(0o600),
            },
            None,
        ),
    );
    inv.insert(
        "sysctl:net.ipv4.ip_forward".into(),
        entry(
            Before::Sysctl {
                value: "0".into(),
                conf: None,
            },
            None,
        ),
    );
    inv.insert(
        "unit:hello.service".into(),
        entry(
            Before::Unit {
                owns_file: true,
                file: None,
                enabled: false,
                active: false,
                dropins: BTreeMap::new(),
            },
            None,
        ),
    );
    let p = check("host_removed", &d, &observed(h), PlanOptions::default());
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let Some(Change {
        payload: Payload::Unit(u),
        ..
    }) = p.change(&Addr::host(Kind::Unit, "hello.service"))
    else {
        panic!()
    };
    assert_eq!(u.files.get(&unit_path("hello.service")), Some(&None));
    assert_eq!((u.enable, u.run), (Some(false), Some(UnitVerb::Stop)));
}

/// A config with no host settings while berth owns some is refused, like an empty stack set.
#[test]
fn no_host_settings_with_an_inventory_is_refused() {
    let mut h = host();
    h.inventory
        .entries
        .insert("file:/etc/made".into(), entry(Before::Absent, None));
    let o = observed(h);
    let p = check(
        "host_empty",
        &Desired::default(),
        &o,
        PlanOptions::default(),
    );
    assert!(matches!(p.errors[..], [PlanError::EmptyHost { owned: 1 }]));
    let p = plan(
        &Desired::default(),
        &o,
        &PlanOptions {
            allow_empty: true,
            ..Default::default()
        },
    );
    assert_eq!(p.changes.len(), 1);
}

/// `on_change: {reload: ssh.service}` reloads after the write; when the unit restarts anyway
/// (its own file changed), the reload is dropped and the unit waits for the file.
#[test]
fn on_change_reload_and_its_drop_when_the_unit_restarts() {
    let mut d = desired_host(|h| {
        let mut f = file("/etc/hello/env", "GREETING=hello\n");
        f.on_change = Some(OnChange::Reload("hello.service".into()));
        h.files.insert("/etc/hello/env".into(), f);
    });
    let mut h = host();
    h.paths.insert("/etc/hello".into(), dir_state());
    h.paths
        .insert("/etc/hello/env".into(), file_state("GREETING=hi\n", 0o644));
    h.inventory
        .entries
        .insert("file:/etc/hello/env".into(), entry(Before::Absent, None));
    h.units.insert(
        "hello.service".into(),
        ObservedUnit {
            load: "loaded".into(),
            active: "active".into(),
            file_state: "enabled".into(),
            file: Some("old\n".into()),
            dropins: BTreeMap::new(),
        },
    );
    h.inventory.entries.insert(
        "unit:hello.service".into(),
        entry(
            Before::Unit {
                owns_file: true,
                file: None,
                enabled: false,
                active: false,
                dropins: BTreeMap::new(),
            },
            None,
        ),
    );
    // The unit itself is unchanged... (declared with the content it has)
    let mut u = unit("hello.service", "old\n");
    u.enabled = None;
    d.host.units.insert("hello.service".into(), u);
    let o = observed(h);
    let p = check("host_on_change_reload", &d, &o, PlanOptions::default());
    let Payload::File(f) = &p.changes[0].payload else {
        panic!()
    };
    assert!(matches!(
        &f.after,
        Some(AfterChange::Unit {
            verb: UnitVerb::Reload,
            ..
        })
    ));

    // ...and then its file changes too: one restart, after the file.
    d.host.units.get_mut("hello.service").unwrap().content = Some(HELLO.into());
    let p = check("host_on_change_covered", &d, &o, PlanOptions::default());
    let f = p.change(&Addr::host(Kind::File, "/etc/hello/env")).unwrap();
    let Payload::File(fp) = &f.payload else {
        panic!()
    };
    assert_eq!(fp.after, None);
    let u = p.change(&Addr::host(Kind::Unit, "hello.service")).unwrap();
    assert!(u.needs.iter().any(|n| n.addr == f.addr));
}

/// A unit stopped and disabled by hand is drift: started and enabled again.
#[test]
fn unit_stopped_and_disabled_by_hand_is_repaired() {
    let d = desired_host(|h| {
        h.units
            .insert("hello.service".into(), unit("hello.service", HELLO));
    });
    let mut h = host();
    h.units.insert(
        "hello.service".into(),
        ObservedUnit {
            load: "loaded".into(),
            active: "inactive".into(),
            file_state: "disabled".into(),
            file: Some(HELLO.into()),
            dropins: BTreeMap::new(),
        },
    );
    h.inventory.entries.insert(
        "unit:hello.service".into(),
        entry(
            Before::Unit {
                owns_file: true,
                file: None,
                enabled: false,
                active: false,
                dropins: BTreeMap::new(),
            },
            None,
        ),
    );
    let p = check("host_unit_drift", &d, &observed(h), PlanOptions::default());
    assert_eq!(p.changes[0].op, Op::Start);
}

/// Paths through symlinks, missing folders, unknown owners and unknown sysctls are errors that
/// name the document.
#[test]
fn refusals_name_the_document() {
    let d = desired_host(|h| {
        h.files
            .insert("/var/run/x.conf".into(), file("/var/run/x.conf", "x\n"));
        h.files
            .insert("/opt/none/x.conf".into(), file("/opt/none/x.conf", "x\n"));
        let mut f = file("/etc/y.conf", "y\n");
        f.owner.owner = "nobody-here".into();
        h.files.insert("/etc/y.conf".into(), f);
        h.sysctls.insert(
            "net.nope".into(),
            SysctlSpec {
                key: "net.nope".into(),
                value: "1".into(),
                origin: origin(9),
            },
        );
    });
    let mut h = host();
    h.paths.insert(
        "/var/run".into(),
        PathState::Refused {
            reason: "/var/run is a symlink to /run: berth refuses paths through symlinks".into(),
        },
    );
    h.sysctls
        .insert("net.nope".into(), Err("no such sysctl".into()));
    let p = check("host_refused", &d, &observed(h), PlanOptions::default());
    assert_eq!(p.errors.len(), 4, "{:?}", p.errors);
    assert!(!p.has_changes());
}

/// `restart_service` restarts the service's containers after the write, unless they are
/// recreated anyway; a container bind-mounting a host file waits for it.
#[test]
fn restart_service_and_bind_mounted_host_files() {
    let mut web = svc("nginx:1");
    web.mounts.push(MountSpec {
        target: "/etc/nginx/conf.d".into(),
        source: MountSource::Bind {
            path: "/srv/nginx".into(),
            selinux: None,
            propagation: None,
            create_host_path: true,
        },
        read_only: true,
    });
    let mut d = Desired::default();
    d.stacks.insert("app".into(), stack("app", &[("web", web)]));
    let mut f = file("/srv/nginx/site.conf", "server {}\n");
    f.on_change = Some(OnChange::RestartService {
        stack: "app".into(),
        service: "web".into(),
    });
    d.host.files.insert("/srv/nginx/site.conf".into(), f);
    d.host.dirs.insert(
        "/srv/nginx".into(),
        DirSpec {
            path: "/srv/nginx".into(),
            owner: Ownership::new(0o755),
            adopt: false,
            origin: origin(2),
        },
    );
    // Running already: the file's change restarts it.
    let mut o = converged(&d);
    o.host = host();
    let p = check("host_restart_service", &d, &o, PlanOptions::default());
    let Payload::File(fp) = &p
        .change(&Addr::host(Kind::File, "/srv/nginx/site.conf"))
        .unwrap()
        .payload
    else {
        panic!()
    };
    assert_eq!(
        fp.after,
        Some(AfterChange::Containers {
            stack: "app".into(),
            service: "web".into(),
            names: vec!["app-web-1".into()],
        })
    );
    // Not running yet: the create waits for the folder and the file; no restart.
    let mut o = Observed {
        images: super::tests::images_for(&d),
        ..Default::default()
    };
    o.host = host();
    let p = check("host_bind_mount_edges", &d, &o, PlanOptions::default());
    let web = p
        .changes
        .iter()
        .find(|c| c.addr.kind == Kind::Container)
        .unwrap();
    assert!(
        web.needs
            .iter()
            .any(|n| n.addr == Addr::host(Kind::File, "/srv/nginx/site.conf"))
    );
    let _ = PathBuf::new();
}
