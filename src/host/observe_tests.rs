//! `observe` (what it looks at, one systemctl call or none), the systemctl and journalctl calls
//! through fake scripts, the `systemctl show` parser, the single-flight daemon-reload, and the
//! measured cost of a no-op observe.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::systemd::{Reloads, parse_show};
use super::tests::{entry, file_spec, host, meta, script, unit_spec, until};
use super::*;
use crate::model::host::{Before, DirSpec, Origin, Ownership, PathState, SysctlSpec};

// --- observe -----------------------------------------------------------------------------

#[test]
fn observe_looks_at_declared_and_inventoried_things_and_parents() {
    let mut spec = HostSpec::default();
    let f = PathBuf::from("/etc/app/app.conf");
    spec.files
        .insert(f.clone(), file_spec(&f, "www-data", "1000"));
    spec.dirs.insert(
        "/srv/data".into(),
        DirSpec {
            path: "/srv/data".into(),
            owner: Ownership::new(0o755),
            adopt: false,
            origin: Origin::default(),
        },
    );
    spec.sysctls.insert(
        "net.ipv4.ip_forward".into(),
        SysctlSpec {
            key: "net.ipv4.ip_forward".into(),
            value: "1".into(),
            origin: Origin::default(),
        },
    );
    spec.units
        .insert("a.service".into(), unit_spec("a.service", &["10-a.conf"]));
    let mut inventory = Inventory::default();
    for (addr, before) in [
        ("file:/etc/old.conf", Before::Absent),
        ("directory:/srv/old", Before::Absent),
        (
            "sysctl:vm.swappiness",
            Before::Sysctl {
                value: "60".into(),
                conf: None,
            },
        ),
        (
            "unit:b.service",
            Before::Unit {
                owns_file: false,
                file: None,
                enabled: false,
                active: false,
                dropins: BTreeMap::from([("20-b.conf".into(), None)]),
            },
        ),
        ("gadget:from-the-future", Before::Absent),
    ] {
        inventory.entries.insert(addr.into(), entry(before));
    }
    let w = observe::wanted(&spec, &inventory);
    let paths: Vec<&str> = w.paths.iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/etc/app",
            "/etc/app/app.conf",
            "/etc/old.conf",
            "/etc/sysctl.d/99-zz-berth-net.ipv4.ip_forward.conf",
            "/etc/sysctl.d/99-zz-berth-vm.swappiness.conf",
            "/etc/systemd/system/a.service",
            "/etc/systemd/system/a.service.d",
            "/etc/systemd/system/a.service.d/10-a.conf",
            "/etc/systemd/system/b.service",
            "/etc/systemd/system/b.service.d",
            "/etc/systemd/system/b.service.d/20-b.conf",
            "/srv",
            "/srv/data",
            "/srv/old",
        ]
    );
    assert_eq!(
        w.sysctls.iter().collect::<Vec<_>>(),
        ["net.ipv4.ip_forward", "vm.swappiness"]
    );
    assert_eq!(
        w.units.keys().collect::<Vec<_>>(),
        ["a.service", "b.service"]
    );
    // Names are looked up, numbers are not.
    assert_eq!(w.users.iter().collect::<Vec<_>>(), ["root", "www-data"]);
    assert_eq!(w.groups.iter().collect::<Vec<_>>(), ["root"]);
}

/// A spec of files (in `dir`) and sysctls only.
fn local_spec(dir: &Path, files: usize, sysctls: &[&str]) -> HostSpec {
    let mut spec = HostSpec::default();
    for i in 0..files {
        let p = dir.join(format!("f{i}.conf"));
        std::fs::write(&p, format!("file {i}\n")).unwrap();
        spec.files.insert(p.clone(), file_spec(&p, "root", "root"));
    }
    for key in sysctls {
        spec.sysctls.insert(
            key.to_string(),
            SysctlSpec {
                key: key.to_string(),
                value: "1".into(),
                origin: Origin::default(),
            },
        );
    }
    spec
}

/// A fake `/proc/sys` with `net.ipv4.k0`, `k1`, …
fn fake_proc(dir: &Path, keys: usize) -> (PathBuf, Vec<String>) {
    let root = dir.join("proc-sys");
    std::fs::create_dir_all(root.join("net/ipv4")).unwrap();
    let keys = (0..keys)
        .map(|i| {
            std::fs::write(root.join(format!("net/ipv4/k{i}")), format!("{i}\n")).unwrap();
            format!("net.ipv4.k{i}")
        })
        .collect();
    (root, keys)
}

#[tokio::test]
async fn observe_without_units_never_runs_systemctl() {
    let t = tempfile::tempdir().unwrap();
    let (root, keys) = fake_proc(t.path(), 2);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut spec = local_spec(t.path(), 2, &keys);
    let owner = &mut spec.files.values_mut().next().unwrap().owner;
    owner.owner = "berth-no-such-user".into();
    owner.group = "65534".into();
    let mut h = host(t.path());
    h.proc_sys = root;
    h.systemctl = t.path().join("no-systemctl-here");
    let o = h.observe(&spec, &Inventory::default()).await.unwrap();
    assert_eq!(
        o.path(&t.path().join("f1.conf")),
        &PathState::File {
            content: b"file 1\n".to_vec(),
            meta: meta(0o644, 0, 0)
        }
    );
    assert!(matches!(o.path(t.path()), PathState::Dir { .. }));
    assert_eq!(o.sysctls["net.ipv4.k1"], Ok("1".into()));
    assert!(o.units.is_empty());
    assert_eq!(o.users["berth-no-such-user"], None);
    assert_eq!(o.users["root"], Some(0));
    assert_eq!(o.groups["root"], Some(0));
    assert!(!o.groups.contains_key("65534"));
    assert_eq!(o.gid("65534"), Some(65534));
}

#[tokio::test]
async fn observe_asks_systemctl_once_for_every_unit() {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("calls");
    let out = t.path().join("show.out");
    std::fs::write(
        &out,
        "Id=a.service\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n\n\
         Id=berth-test-nope.service\nLoadState=not-found\nActiveState=inactive\nUnitFileState=\n",
    )
    .unwrap();
    let mut h = host(t.path());
    h.systemctl = script(
        t.path(),
        "systemctl",
        &format!(
            "echo \"$@\" >> '{}'; cat '{}'",
            log.display(),
            out.display()
        ),
    );
    let mut spec = HostSpec::default();
    for name in ["a.service", "berth-test-nope.service"] {
        spec.units
            .insert(name.into(), unit_spec(name, &["10-x.conf"]));
    }
    let o = h.observe(&spec, &Inventory::default()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "show --property=Id,LoadState,ActiveState,UnitFileState -- a.service berth-test-nope.service\n"
    );
    let a = &o.units["a.service"];
    assert!(a.is_active() && a.is_enabled());
    let nope = &o.units["berth-test-nope.service"];
    assert_eq!(
        (
            nope.load.as_str(),
            nope.active.as_str(),
            nope.file_state.as_str()
        ),
        ("not-found", "inactive", "")
    );
    assert_eq!(nope.file, None);
    assert_eq!(
        nope.dropins,
        BTreeMap::from([("10-x.conf".to_string(), None)])
    );
}

#[tokio::test]
async fn units_without_systemctl_or_a_failing_one_are_a_command_error() {
    let t = tempfile::tempdir().unwrap();
    let mut spec = HostSpec::default();
    spec.units
        .insert("a.service".into(), unit_spec("a.service", &[]));
    let mut h = host(t.path());
    h.systemctl = t.path().join("no-systemctl-here");
    let err = h.observe(&spec, &Inventory::default()).await.unwrap_err();
    let HostError::Command { status, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(status.contains("not found: is systemd installed?"), "{err}");

    h.systemctl = script(
        t.path(),
        "systemctl",
        "echo 'System has not been booted with systemd' >&2; exit 1",
    );
    let err = h.observe(&spec, &Inventory::default()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("System has not been booted with systemd"),
        "{err}"
    );
    assert!(!err.is_transient());
}

#[test]
fn systemctl_show_output_is_parsed_block_by_block_in_order() {
    let out = "Id=caddy.service\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n\n\
               LoadState=not-found\nId=gone.service\nUnitFileState=\nActiveState=inactive\n\n\
               Id=cron.service\nLoadState=masked\nActiveState=failed\nUnitFileState=masked\n";
    let units = parse_show(out, &["caddy.service", "gone.service", "cron.service"]).unwrap();
    let got: Vec<(&str, &str, &str)> = units
        .iter()
        .map(|u| (u.load.as_str(), u.active.as_str(), u.file_state.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("loaded", "active", "enabled"),
            ("not-found", "inactive", ""),
            ("masked", "failed", "masked"),
        ]
    );
    assert!(parse_show(out, &["caddy.service"]).is_err());
    assert!(parse_show("", &["a.service"]).is_err());
}

#[tokio::test]
async fn systemctl_verbs_unit_state_and_journal_run_the_tools() {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("calls");
    let mut h = host(t.path());
    let record = format!("echo \"$0 $@\" >> '{}'", log.display());
    h.systemctl = script(
        t.path(),
        "systemctl",
        &format!(
            "{record}; [ \"$1\" = show ] && echo active; [ \"$1\" = start ] && {{ echo 'Job failed' >&2; exit 1; }}; exit 0"
        ),
    );
    h.journalctl = script(
        t.path(),
        "journalctl",
        &format!("{record}; echo line1; echo line2"),
    );
    h.systemctl("restart", &["a.service", "b.service"])
        .await
        .unwrap();
    assert_eq!(h.unit_state("a.service").await.unwrap(), "active");
    assert_eq!(h.journal("a.service", 5).await.unwrap(), "line1\nline2\n");
    let err = h.systemctl("start", &["a.service"]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "`systemctl start -- a.service` failed (exit status: 1):\nJob failed"
    );
    h.daemon_reload().await.unwrap();
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<String> = calls
        .lines()
        .map(|l| l.replace(&t.path().display().to_string(), ""))
        .collect();
    assert_eq!(
        calls,
        [
            "/systemctl restart -- a.service b.service",
            "/systemctl show --property=ActiveState --value -- a.service",
            "/journalctl --no-pager --output=cat --lines 5 --unit=a.service",
            "/systemctl start -- a.service",
            "/systemctl daemon-reload",
        ]
    );
}

// --- daemon-reload -----------------------------------------------------------------------

#[tokio::test]
async fn overlapping_daemon_reloads_share_one_run_and_a_later_caller_gets_its_own() {
    let reloads = Arc::new(Reloads::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let call = || {
        let (reloads, runs, gate) = (reloads.clone(), runs.clone(), gate.clone());
        tokio::spawn(async move {
            reloads
                .run(|| async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    gate.acquire().await.unwrap().forget();
                    Ok::<(), ()>(())
                })
                .await
        })
    };
    // A reload in progress.
    let first = call();
    until(|| runs.load(Ordering::SeqCst) == 1).await;
    // Five callers arrive while it runs: their writes came after it started.
    let overlapping: Vec<_> = (0..5).map(|_| call()).collect();
    until(|| reloads.issued() == 6).await;
    gate.add_permits(1);
    // They share the next one.
    until(|| runs.load(Ordering::SeqCst) == 2).await;
    // A caller arriving after that reload started needs one of its own.
    let late = call();
    until(|| reloads.issued() == 7).await;
    gate.add_permits(2);
    first.await.unwrap().unwrap();
    for c in overlapping {
        c.await.unwrap().unwrap();
    }
    late.await.unwrap().unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    // Nobody waiting: the next caller runs one.
    reloads
        .run(|| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<(), ()>(())
        })
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_failed_daemon_reload_covers_nobody() {
    let reloads = Reloads::default();
    let runs = AtomicUsize::new(0);
    let attempt = |ok: bool| {
        let runs = &runs;
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            if ok { Ok(()) } else { Err("failed") }
        }
    };
    assert_eq!(reloads.run(|| attempt(false)).await, Err("failed"));
    assert_eq!(reloads.run(|| attempt(true)).await, Ok(()));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn output_tails_keep_the_last_lines_within_2_kib() {
    let many: String = (0..100).map(|i| format!("line {i}\n")).collect();
    let t = command::output_tail(many.as_bytes());
    assert_eq!(t.lines().count(), 20);
    assert!(t.starts_with("line 80\n") && t.ends_with("line 99"));
    let long = format!("{}é\n", "x".repeat(5000));
    let t = command::output_tail(long.as_bytes());
    assert!(t.len() <= 2048 + "…".len() && t.ends_with('é') && t.starts_with('…'));
}

/// What a no-op observe costs: 10 files and 3 sysctls (their persisted files are real paths
/// under /etc/sysctl.d, only looked at). `cargo test --lib host::tests::observe_cost --
/// --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it with --ignored --nocapture"]
async fn observe_cost() {
    let t = tempfile::tempdir().unwrap();
    let (root, keys) = fake_proc(t.path(), 3);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let spec = local_spec(t.path(), 10, &keys);
    let mut h = host(t.path());
    h.proc_sys = root;
    let inventory = Inventory::default();
    for _ in 0..100 {
        h.observe(&spec, &inventory).await.unwrap();
    }
    let rounds = 2000;
    let started = Instant::now();
    for _ in 0..rounds {
        let o = h.observe(&spec, &inventory).await.unwrap();
        assert_eq!(o.paths.len(), 14);
    }
    let per = started.elapsed() / rounds;
    let w = observe::wanted(&spec, &inventory);
    let started = Instant::now();
    for _ in 0..rounds {
        observe::read_local(&w, &h.proc_sys).unwrap();
    }
    let local = started.elapsed() / rounds;
    println!(
        "observe of 10 files + 3 sysctls (14 paths, 3 values, 2 names): {} µs per call ({} µs of it reading, the rest the blocking-task hand-off)",
        per.as_micros(),
        local.as_micros()
    );
}
