//! The host adapter against temp folders (run as root, so chown works): atomic writes,
//! validate, symlink refusal, paths as observed, sysctls under a fake `/proc/sys`, the inventory
//! file; the helpers `observe_tests` shares.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::model::host::{Before, FileSpec, Origin, Ownership, PathState, UnitSpec};

pub(super) fn meta(mode: u32, uid: u32, gid: u32) -> Meta {
    Meta { mode, uid, gid }
}

pub(super) fn host(state: &Path) -> Host {
    Host::new(state, "test")
}

/// Names in a folder, sorted.
pub(super) fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

pub(super) fn file_spec(path: &Path, owner: &str, group: &str) -> FileSpec {
    FileSpec {
        path: path.to_owned(),
        content: b"x".to_vec(),
        owner: Ownership {
            mode: 0o644,
            owner: owner.into(),
            group: group.into(),
        },
        secret: false,
        validate: None,
        adopt: false,
        on_change: None,
        origin: Origin::default(),
    }
}

pub(super) fn unit_spec(name: &str, dropins: &[&str]) -> UnitSpec {
    UnitSpec {
        name: name.into(),
        content: None,
        dropins: dropins
            .iter()
            .map(|d| (d.to_string(), "[Service]\n".to_string()))
            .collect(),
        enabled: None,
        state: None,
        adopt: false,
        origin: Origin::default(),
    }
}

/// An executable script at `dir/name`.
pub(super) fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Yields until `cond` holds (a bounded number of times: a broken test fails, not hangs).
pub(super) async fn until(cond: impl Fn() -> bool) {
    for _ in 0..100_000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition never held");
}

// --- files -------------------------------------------------------------------------------

#[tokio::test]
async fn write_file_replaces_content_sets_mode_and_owner_and_leaves_no_temp() {
    let t = tempfile::tempdir().unwrap();
    let h = host(t.path());
    let p = t.path().join("app.conf");
    h.write_file(&p, b"one\n", meta(0o640, 0, 0), None)
        .await
        .unwrap();
    let m = std::fs::metadata(&p).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 0, 0));
    h.write_file(&p, b"two\n", meta(0o600, 65534, 65534), None)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two\n");
    let m = std::fs::metadata(&p).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o600, 65534, 65534));
    assert_eq!(names(t.path()), ["app.conf"]);
}

/// A berth killed mid-write leaves its temp file; the next write of that file removes it (only
/// those of processes that are gone, never a live one's).
#[tokio::test]
async fn temp_files_of_a_killed_berth_are_removed_by_the_next_write() {
    let t = tempfile::tempdir().unwrap();
    let h = host(t.path());
    let p = t.path().join("app.conf");
    // Pid 1 lives (whatever it is); 2^22 + 1 is above any pid_max.
    let dead = format!(".app.conf.berth-{}-0.tmp", (1 << 22) + 1);
    let alive = ".app.conf.berth-1-0.tmp";
    std::fs::write(t.path().join(&dead), b"half").unwrap();
    std::fs::write(t.path().join(alive), b"busy").unwrap();
    h.write_file(&p, b"whole\n", meta(0o644, 0, 0), None)
        .await
        .unwrap();
    assert_eq!(names(t.path()), [alive, "app.conf"]);
}

#[tokio::test]
async fn write_file_keeps_set_id_bits_after_the_chown() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("tool");
    host(t.path())
        .write_file(&p, b"#!/bin/sh\n", meta(0o4755, 65534, 65534), None)
        .await
        .unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o4755);
}

#[tokio::test]
async fn a_failing_validate_leaves_the_old_file_and_no_temp() {
    let t = tempfile::tempdir().unwrap();
    let h = host(t.path());
    let p = t.path().join("app.conf");
    std::fs::write(&p, "old\n").unwrap();
    let err = h
        .write_file(
            &p,
            b"new\n",
            meta(0o644, 0, 0),
            Some("echo checking %s; echo 'line 3: bad directive' >&2; exit 3"),
        )
        .await
        .unwrap_err();
    let HostError::Validate { status, output, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(status.contains('3'), "{status}");
    assert!(output.contains("line 3: bad directive"), "{output}");
    assert!(err.to_string().contains("refused the new file"), "{err}");
    assert_eq!(std::fs::read(&p).unwrap(), b"old\n");
    assert_eq!(names(t.path()), ["app.conf"]);
}

#[tokio::test]
async fn validate_sees_the_staged_content_through_a_quoted_path() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("a b'c $d");
    std::fs::create_dir(&dir).unwrap();
    let p = dir.join("app.conf");
    std::fs::write(&p, "old\n").unwrap();
    // The staged file, not the destination, holds the new content while validate runs.
    let check = format!(
        "test \"$(cat %s)\" = new && test \"$(cat {})\" = old",
        shlex::try_quote(p.to_str().unwrap()).unwrap()
    );
    host(t.path())
        .write_file(&p, b"new", meta(0o644, 0, 0), Some(&check))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"new");
    assert_eq!(names(&dir), ["app.conf"]);
}

#[tokio::test]
async fn a_validate_that_hangs_is_killed_at_its_deadline() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("staged");
    std::fs::write(&p, "x").unwrap();
    let started = Instant::now();
    let err = command::validate("sleep 30 & sleep 30", &p, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_symlinked_ancestor_is_refused_by_observe_and_by_write_file() {
    let t = tempfile::tempdir().unwrap();
    let real = t.path().join("run");
    std::fs::create_dir(&real).unwrap();
    let link = t.path().join("varrun");
    symlink(&real, &link).unwrap();
    let p = link.join("app.pid");

    let err = host(t.path())
        .write_file(&p, b"1", meta(0o644, 0, 0), None)
        .await
        .unwrap_err();
    let HostError::Refused { reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("is a symlink to"), "{reason}");
    assert!(reason.contains("berth refuses paths through symlinks"));
    assert!(names(&real).is_empty());

    let PathState::Refused { reason } = fs::observe_path(&p) else {
        panic!("not refused");
    };
    assert!(
        reason.starts_with(&format!(
            "{} is a symlink to {}",
            link.display(),
            real.display()
        )),
        "{reason}"
    );
    for f in [fs::make_dir(&p, meta(0o755, 0, 0)), fs::remove_file(&p)] {
        assert!(matches!(f, Err(HostError::Refused { .. })), "{f:?}");
    }
}

#[tokio::test]
async fn a_symlink_at_the_leaf_is_replaced_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("target");
    std::fs::write(&target, "target\n").unwrap();
    let leaf = t.path().join("leaf");
    symlink(&target, &leaf).unwrap();
    assert_eq!(
        fs::observe_path(&leaf),
        PathState::Other {
            what: "a symlink".into()
        }
    );
    let err = fs::set_meta(&leaf, meta(0o600, 65534, 65534)).unwrap_err();
    assert!(matches!(err, HostError::Refused { .. }), "{err:?}");
    host(t.path())
        .write_file(&leaf, b"mine\n", meta(0o644, 0, 0), None)
        .await
        .unwrap();
    assert!(std::fs::symlink_metadata(&leaf).unwrap().is_file());
    assert_eq!(std::fs::read(&target).unwrap(), b"target\n");
    assert_eq!(std::fs::metadata(&target).unwrap().uid(), 0);
}

#[tokio::test]
async fn write_file_needs_the_parent() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("missing/app.conf");
    let err = host(t.path())
        .write_file(&p, b"x", meta(0o644, 0, 0), None)
        .await
        .unwrap_err();
    let HostError::Io { path, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, &t.path().join("missing"));
}

#[test]
fn observe_path_tells_files_dirs_absent_and_others() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("f");
    std::fs::write(&f, "content").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&f, Some(65534), Some(0)).unwrap();
    assert_eq!(
        fs::observe_path(&f),
        PathState::File {
            content: b"content".to_vec(),
            meta: meta(0o640, 65534, 0)
        }
    );
    let d = t.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert_eq!(
        fs::observe_path(&d),
        PathState::Dir {
            meta: meta(0o1777, 0, 0)
        }
    );
    assert_eq!(fs::observe_path(&t.path().join("nope")), PathState::Absent);
    assert_eq!(
        fs::observe_path(&t.path().join("nope/deeper")),
        PathState::Absent
    );
    let sock = t.path().join("s.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    assert_eq!(
        fs::observe_path(&sock),
        PathState::Other {
            what: "a socket".into()
        }
    );
    let under_file = fs::observe_path(&f.join("x"));
    assert!(
        matches!(&under_file, PathState::Refused { reason } if reason.contains("is a file, not a directory")),
        "{under_file:?}"
    );
    for p in ["relative/path", "/etc/../etc/passwd"] {
        assert!(
            matches!(fs::observe_path(Path::new(p)), PathState::Refused { .. }),
            "{p}"
        );
    }
}

#[tokio::test]
async fn directories_are_made_with_their_mode_despite_the_umask_and_removed_when_empty() {
    let t = tempfile::tempdir().unwrap();
    let h = host(t.path());
    let d = t.path().join("srv");
    h.make_dir(&d, meta(0o777, 65534, 65534)).await.unwrap();
    let m = std::fs::metadata(&d).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o777, 65534, 65534));
    // Already there: only the metadata changes.
    std::fs::write(d.join("keep"), "").unwrap();
    h.make_dir(&d, meta(0o750, 0, 0)).await.unwrap();
    let m = std::fs::metadata(&d).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o750, 0, 0));
    assert!(!h.remove_dir(&d).await.unwrap(), "not empty: kept");
    assert!(d.join("keep").exists());
    h.remove_file(&d.join("keep")).await.unwrap();
    h.remove_file(&d.join("keep")).await.unwrap();
    assert!(h.remove_dir(&d).await.unwrap());
    assert!(!d.exists());
    assert!(h.remove_dir(&d).await.unwrap(), "already gone");
    // A file where a directory is wanted is not chmod'ed.
    let f = t.path().join("file");
    std::fs::write(&f, "").unwrap();
    let err = h.make_dir(&f, meta(0o700, 0, 0)).await.unwrap_err();
    assert!(matches!(err, HostError::Refused { .. }), "{err:?}");
    h.set_meta(&f, meta(0o604, 65534, 0)).await.unwrap();
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o604, 65534, 0));
}

// --- sysctls -----------------------------------------------------------------------------

#[tokio::test]
async fn sysctls_are_read_normalised_and_written_under_proc_sys() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("proc/sys");
    std::fs::create_dir_all(root.join("net/ipv4")).unwrap();
    std::fs::write(root.join("net/ipv4/ip_local_port_range"), "32768\t60999\n").unwrap();
    std::fs::write(root.join("net/ipv4/ip_forward"), "0\n").unwrap();
    assert_eq!(
        sysctl::read(&root, "net.ipv4.ip_local_port_range"),
        Ok("32768\t60999".into())
    );
    assert_eq!(
        sysctl::read(&root, "net.ipv4.nope"),
        Err("no such sysctl".into())
    );
    assert!(
        sysctl::read(&root, "net.ipv4")
            .unwrap_err()
            .contains("group")
    );
    for bad in ["", "net..x", "/etc/passwd", "net.ipv4/../x", ".x"] {
        assert_eq!(
            sysctl::read(&root, bad),
            Err("not a sysctl key".into()),
            "{bad}"
        );
    }
    let mut h = host(t.path());
    h.proc_sys = root.clone();
    h.write_sysctl("net.ipv4.ip_local_port_range", "1024\t65000")
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("net/ipv4/ip_local_port_range")).unwrap(),
        "1024 65000"
    );
    let err = h.write_sysctl("net.ipv4.nope", "1").await.unwrap_err();
    assert_eq!(err.to_string(), "sysctl net.ipv4.nope: no such sysctl");
}

// --- the inventory -----------------------------------------------------------------------

pub(super) fn entry(before: Before) -> Entry {
    Entry {
        before,
        applied: Some("sha256:ab".into()),
    }
}

#[tokio::test]
async fn the_inventory_round_trips_atomically_in_a_private_state_dir() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let h = host(&state);
    assert_eq!(h.load_inventory().unwrap(), Inventory::default());
    assert!(!state.exists(), "loading makes nothing");
    h.record("file:/etc/x", Some(&entry(Before::Absent)))
        .await
        .unwrap();
    let unit = entry(Before::Unit {
        owns_file: false,
        file: None,
        enabled: false,
        active: true,
        dropins: BTreeMap::from([("10-berth.conf".into(), None)]),
    });
    h.record("unit:hello.service", Some(&unit)).await.unwrap();
    h.record("file:/etc/x", None).await.unwrap();

    let m = std::fs::metadata(&state).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o700);
    let file = state.join("inventory-test.json");
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(names(&state), ["inventory-test.json"]);

    let again = host(&state).load_inventory().unwrap();
    assert_eq!(
        again.entries,
        BTreeMap::from([("unit:hello.service".to_string(), unit)])
    );
    assert_eq!(h.load_inventory().unwrap(), again);
}

#[tokio::test]
async fn a_corrupt_inventory_is_an_error_and_is_not_overwritten() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("inventory-test.json");
    std::fs::write(&file, "{\"entries\": {").unwrap();
    let h = host(t.path());
    let err = h.load_inventory().unwrap_err();
    assert!(matches!(err, HostError::Inventory { .. }), "{err:?}");
    assert!(
        !err.is_transient(),
        "a corrupt inventory stays broken until fixed"
    );
    let err = h
        .record("file:/etc/x", Some(&entry(Before::Absent)))
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::Inventory { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "{\"entries\": {");
}

#[tokio::test]
async fn concurrent_records_are_all_kept() {
    let t = tempfile::tempdir().unwrap();
    let h = Arc::new(host(t.path()));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move {
                h.record(&format!("file:/etc/f{i}"), Some(&entry(Before::Absent)))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(host(t.path()).load_inventory().unwrap().entries.len(), 16);
    assert_eq!(names(t.path()), ["inventory-test.json"]);
}
