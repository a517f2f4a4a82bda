//! Host kinds (File, Directory, Sysctl, Unit) end to end, with berth running **inside** a real
//! systemd test host (tests/it/host.rs): the witnesses are the host's own tools — `stat`,
//! `sysctl`, `systemctl`, `journalctl` — and the outer Engine for the containers planned in
//! the same run.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::host::{TestHost, poll};
use crate::support::{Run, World, docker, git};

/// A config folder on the host (the shared folder), written from outside.
struct Config<'h> {
    host: &'h TestHost,
    world: World,
}

impl<'h> Config<'h> {
    fn new(host: &'h TestHost, test: &str) -> Config<'h> {
        Config {
            host,
            world: World::new(test),
        }
    }

    fn root(&self) -> std::path::PathBuf {
        self.host.dir().join("config")
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.root().join(rel)).unwrap();
    }

    /// `berth <cmd> <config>` on the host, as this test's instance.
    fn berth(&self, cmd: &str, extra: &[&str]) -> Run {
        let root = self.root();
        let mut args = vec![
            "--instance",
            &self.world.instance,
            cmd,
            root.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.host.berth(&args)
    }
}

const HELLO_UNIT: &str = "[Unit]\nDescription=hello from berth\n\n[Service]\nEnvironmentFile=/etc/hello/env\nExecStart=/bin/sh -c 'echo started $GREETING; exec sleep infinity'\nExecReload=/bin/sh -c 'echo reloaded >> /run/hello-reloads'\n\n[Install]\nWantedBy=multi-user.target\n";

fn hello_manifest(greeting: &str) -> String {
    format!(
        r#"kind: Directory
path: /etc/hello
mode: "0750"
---
kind: File
path: /etc/hello/env
content: |
  GREETING={greeting}
mode: "0640"
on_change: {{reload: hello.service}}
---
kind: Sysctl
key: net.ipv4.ip_forward
value: "1"
---
kind: Unit
name: hello.service
content: |
{}
enabled: true
state: started
"#,
        HELLO_UNIT
            .lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// Create → plan exit 2 → apply → the host's own tools see it → no-op plan exit 0. A Compose
/// stack in the same folder is planned in the same run.
#[test]
fn creates_files_dirs_sysctls_and_units_then_plans_nothing() {
    let host = TestHost::boot("hk-create");
    let c = Config::new(&host, "hkcreate");
    host.ok("sysctl -w net.ipv4.ip_forward=0");
    c.write("host/berth.yaml", &hello_manifest("hi"));
    let stack = c.world.stack("web");
    c.write(
        "web/compose.yaml",
        &format!("name: {stack}\nservices:\n  web:\n    image: berth-test/busybox:1\n"),
    );

    let plan = c.berth("plan", &[]).expect(2);
    for want in [
        "+ directory:/etc/hello",
        "+ file:/etc/hello/env",
        "~ sysctl:net.ipv4.ip_forward",
        "sysctl net.ipv4.ip_forward 0 → 1",
        "+ unit:hello.service",
        "create container",
    ] {
        assert!(
            plan.stdout.contains(want),
            "{want} missing:\n{}",
            plan.stdout
        );
    }
    c.berth("apply", &[]).expect(0);

    assert_eq!(host.ok("stat -c '%a %U:%G' /etc/hello"), "750 root:root");
    assert_eq!(
        host.ok("stat -c '%a %U:%G' /etc/hello/env"),
        "640 root:root"
    );
    assert_eq!(host.read("/etc/hello/env").unwrap(), "GREETING=hi\n");
    assert_eq!(host.ok("sysctl -n net.ipv4.ip_forward"), "1");
    assert!(
        host.read("/etc/sysctl.d/99-zz-berth-net.ipv4.ip_forward.conf")
            .unwrap()
            .contains("net.ipv4.ip_forward = 1")
    );
    assert_eq!(host.ok("systemctl is-active hello.service"), "active");
    assert_eq!(host.ok("systemctl is-enabled hello.service"), "enabled");
    assert!(host.journal("hello.service").contains("started hi"));
    let running = docker(&["ps", "-q", "--filter", &c.world.label()]);
    assert!(!running.is_empty(), "the stack's container runs");

    let noop = c.berth("plan", &[]).expect(0);
    assert!(noop.stdout.contains("No changes"), "{}", noop.stdout);
    assert!(noop.stdout.contains("4 host settings"), "{}", noop.stdout);
    // Validate counts them too.
    let v = c.berth("validate", &[]).expect(0);
    assert!(v.stdout.contains("4 host settings"), "{}", v.stdout);
}

/// A secret file's content is never printed: not by plan, plan --json or apply.
#[test]
fn secret_file_is_never_printed() {
    let host = TestHost::boot("hk-secret");
    let c = Config::new(&host, "hksecret");
    let secret = "s3cr3t-token-value-42";
    c.write(
        "berth.yaml",
        &format!(
            "kind: File\npath: /etc/app.token\ncontent: \"{secret}\\n\"\nmode: \"0600\"\nowner: www-data\ngroup: www-data\nsecret: true\n"
        ),
    );
    let mut out = String::new();
    for args in [&["plan"][..], &["plan", "--json"][..], &["apply"][..]] {
        let r = c.berth(args[0], &args[1..]);
        out.push_str(&r.stdout);
        out.push_str(&r.stderr);
    }
    assert!(!out.contains(secret), "secret printed:\n{out}");
    assert_eq!(host.read("/etc/app.token").unwrap(), format!("{secret}\n"));
    assert_eq!(
        host.ok("stat -c '%a %U:%G' /etc/app.token"),
        "600 www-data:www-data"
    );
    // A change of the secret shows that it changed, not what.
    c.write(
        "berth.yaml",
        "kind: File\npath: /etc/app.token\ncontent: \"other-secret-value-43\\n\"\nmode: \"0600\"\nsecret: true\n",
    );
    let p = c.berth("plan", &[]).expect(2);
    assert!(p.stdout.contains("secret: not shown"), "{}", p.stdout);
    assert!(!p.stdout.contains("other-secret-value-43") && !p.stdout.contains(secret));
}

/// A hand edit, a unit stopped and disabled by hand and a sysctl changed by hand: shown by
/// plan as drift, repaired by apply.
#[test]
fn hand_edits_are_detected_and_repaired() {
    let host = TestHost::boot("hk-drift");
    let c = Config::new(&host, "hkdrift");
    c.write("host/berth.yaml", &hello_manifest("hi"));
    c.berth("apply", &[]).expect(0);

    host.ok("echo GREETING=edited > /etc/hello/env && chmod 0666 /etc/hello/env");
    host.ok("systemctl disable --now hello.service");
    host.ok("sysctl -w net.ipv4.ip_forward=0");
    let p = c.berth("plan", &[]).expect(2);
    for want in [
        "changed on the host since berth wrote it (drift)",
        "-GREETING=edited",
        "+GREETING=hi",
        "mode 0666 → 0640",
        "sysctl net.ipv4.ip_forward 0 → 1",
        "inactive (state: started)",
    ] {
        assert!(p.stdout.contains(want), "{want} missing:\n{}", p.stdout);
    }
    c.berth("apply", &[]).expect(0);
    assert_eq!(host.read("/etc/hello/env").unwrap(), "GREETING=hi\n");
    assert_eq!(host.ok("stat -c %a /etc/hello/env"), "640");
    assert_eq!(host.ok("systemctl is-active hello.service"), "active");
    assert_eq!(host.ok("systemctl is-enabled hello.service"), "enabled");
    assert_eq!(host.ok("sysctl -n net.ipv4.ip_forward"), "1");
    c.berth("plan", &[]).expect(0);
}

/// A content change with `on_change: {reload: ...}` reloads the unit (its ExecReload leaves
/// a marker) instead of restarting it.
#[test]
fn content_change_reloads_the_unit_named_by_on_change() {
    let host = TestHost::boot("hk-reload");
    let c = Config::new(&host, "hkreload");
    c.write("host/berth.yaml", &hello_manifest("hi"));
    c.berth("apply", &[]).expect(0);
    let pid = host.ok("systemctl show -p MainPID --value hello.service");
    assert!(host.read("/run/hello-reloads").is_none());

    c.write("host/berth.yaml", &hello_manifest("hello"));
    let p = c.berth("plan", &[]).expect(2);
    assert!(
        p.stdout.contains("then reload hello.service"),
        "{}",
        p.stdout
    );
    c.berth("apply", &[]).expect(0);
    assert_eq!(host.read("/run/hello-reloads").unwrap(), "reloaded\n");
    assert_eq!(
        host.ok("systemctl show -p MainPID --value hello.service"),
        pid,
        "reloaded, not restarted"
    );
    assert_eq!(host.read("/etc/hello/env").unwrap(), "GREETING=hello\n");
}

/// A changed unit that fails to start (a Type=simple service that exits at once): the previous
/// unit file comes back and runs, the failure is reported with the unit's journal lines.
#[test]
fn a_unit_that_fails_after_a_change_is_reverted_and_reported() {
    let host = TestHost::boot("hk-revert");
    let c = Config::new(&host, "hkrevert");
    c.write("host/berth.yaml", &hello_manifest("hi"));
    c.berth("apply", &[]).expect(0);
    let good = host.read("/etc/systemd/system/hello.service").unwrap();

    let broken =
        hello_manifest("hi").replace("exec sleep infinity", "echo berth-broke-it >&2; exit 3");
    c.write("host/berth.yaml", &broken);
    let started = Instant::now();
    let r = c.berth("apply", &[]).expect(1);
    let took = started.elapsed();
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(out.contains("did not stay active"), "{out}");
    assert!(
        out.contains("berth-broke-it"),
        "journal lines in the report:\n{out}"
    );
    assert!(out.contains("previous version runs again"), "{out}");
    assert_eq!(
        host.read("/etc/systemd/system/hello.service").unwrap(),
        good
    );
    assert_eq!(host.ok("systemctl is-active hello.service"), "active");
    assert!(host.journal("hello.service").contains("started hi"));
    eprintln!("revert after a failed unit: apply exited after {took:?}");
    // Still wanted: the plan shows the change again (nothing half-applied in between).
    c.berth("plan", &[]).expect(2);
}

/// A file berth did not create is refused without `adopt`; with it, it is taken over, and
/// removing the document puts the original back (content, mode, owner). A file next to it
/// that no document names is never touched.
#[test]
fn preexisting_files_need_adopt_and_are_restored_after_removal() {
    let host = TestHost::boot("hk-adopt");
    let c = Config::new(&host, "hkadopt");
    host.ok("mkdir -p /etc/ssh/sshd_config.d");
    host.ok("printf 'PasswordAuthentication yes\\n' > /etc/ssh/sshd_config.d/50-local.conf && chmod 0600 /etc/ssh/sshd_config.d/50-local.conf && chown 65534:65534 /etc/ssh/sshd_config.d/50-local.conf");
    host.ok("printf 'mine\\n' > /etc/ssh/sshd_config.d/99-unowned.conf");
    let doc = "kind: File\npath: /etc/ssh/sshd_config.d/50-local.conf\ncontent: |\n  PasswordAuthentication no\n";
    c.write("berth.yaml", doc);
    let r = c.berth("plan", &[]).expect(1);
    assert!(
        r.stdout.contains("berth did not create it") && r.stdout.contains("adopt: true"),
        "{}",
        r.stdout
    );
    let r = c.berth("apply", &[]).expect(1);
    assert!(r.stdout.contains("berth did not create it"), "{}", r.stdout);
    assert_eq!(
        host.read("/etc/ssh/sshd_config.d/50-local.conf").unwrap(),
        "PasswordAuthentication yes\n",
        "refused: untouched"
    );

    c.write("berth.yaml", &format!("{doc}adopt: true\n"));
    c.berth("apply", &[]).expect(0);
    assert_eq!(
        host.read("/etc/ssh/sshd_config.d/50-local.conf").unwrap(),
        "PasswordAuthentication no\n"
    );
    // Gone from the config (and nothing else declared): --allow-empty, then the original.
    c.remove("berth.yaml");
    c.write("other/berth.yaml", "kind: Directory\npath: /srv/keep\n");
    c.berth("apply", &[]).expect(0);
    assert_eq!(
        host.read("/etc/ssh/sshd_config.d/50-local.conf").unwrap(),
        "PasswordAuthentication yes\n"
    );
    assert_eq!(
        host.ok("stat -c '%a %u:%g' /etc/ssh/sshd_config.d/50-local.conf"),
        "600 65534:65534"
    );
    assert_eq!(
        host.read("/etc/ssh/sshd_config.d/99-unowned.conf").unwrap(),
        "mine\n"
    );
    // Nothing declared at all while berth owns /srv/keep: refused without --allow-empty.
    c.remove("other/berth.yaml");
    let r = c.berth("plan", &[]).expect(1);
    assert!(r.stdout.contains("--allow-empty"), "{}", r.stdout);
    c.berth("apply", &["--allow-empty"]).expect(0);
    assert!(host.sh("test -e /srv/keep").status.code() != Some(0));
}

/// kill -9 while berth applies a host change (here: inside a slow `validate`), then a rerun:
/// the file is whole (old or new, never half), no temp file is left, and the host converges.
#[test]
fn kill_9_during_a_host_apply_then_a_rerun_converges() {
    let host = TestHost::boot("hk-kill");
    let c = Config::new(&host, "hkkill");
    let big = "x".repeat(1 << 20);
    host.ok("mkdir -p /srv/data");
    c.write(
        "berth.yaml",
        &format!(
            "kind: Directory\npath: /srv/app\n---\nkind: File\npath: /srv/app/big\ncontent: {big}\nvalidate: sleep 30; test -s %s\n"
        ),
    );
    let root = c.root();
    host.ok(&format!(
        "(berth --instance {} apply {} >/tmp/apply.log 2>&1 &) ; sleep 0",
        c.world.instance,
        root.display()
    ));
    // Wait until the new file is staged (the validate runs), then kill berth.
    let staged = poll(Duration::from_secs(30), || {
        host.sh("ls -a /srv/app | grep -q '\\.berth-'")
            .status
            .success()
    });
    assert!(staged, "berth never staged the file");
    host.ok("pkill -9 -x berth");
    assert!(
        host.read("/srv/app/big").is_none(),
        "not renamed into place yet"
    );

    c.write(
        "berth.yaml",
        &format!(
            "kind: Directory\npath: /srv/app\n---\nkind: File\npath: /srv/app/big\ncontent: {big}\n"
        ),
    );
    c.berth("apply", &[]).expect(0);
    assert_eq!(host.read("/srv/app/big").unwrap().trim_end(), big);
    let left = host.ok("ls -a /srv/app");
    assert!(!left.contains(".berth-"), "temp file left behind: {left}");
    c.berth("plan", &[]).expect(0);
}

/// `berth serve` on the host (through the shipped unit): a commit that changes a host file is
/// applied, and `git revert` of it puts the previous content back; the host status is posted
/// under its own context.
#[test]
fn serve_applies_host_settings_and_a_revert_restores_them() {
    let host = TestHost::boot("hk-serve");
    let world = World::new("hkserve");
    let v1 = "kind: File\npath: /etc/motd.berth\ncontent: \"v1\\n\"\n";
    let repo = crate::host::config_repo(host.dir(), &[("berth.yaml", v1)]);
    host.install_berth(&crate::host::berth_env(&repo, &world, ""));
    host.ok("systemctl start berth.service");
    let read = |want: &str| {
        poll(Duration::from_secs(60), || {
            host.read("/etc/motd.berth").as_deref() == Some(want)
        })
    };
    assert!(
        read("v1\n"),
        "v1 never applied:\n{}",
        host.journal("berth.service")
    );

    let work = host.dir().join("work");
    std::fs::write(
        work.join("berth.yaml"),
        "kind: File\npath: /etc/motd.berth\ncontent: \"v2\\n\"\n",
    )
    .unwrap();
    commit_and_push(&work, host.dir(), "v2");
    assert!(
        read("v2\n"),
        "v2 never applied:\n{}",
        host.journal("berth.service")
    );

    git(&work, &["revert", "--no-edit", "HEAD"]);
    push(&work, host.dir());
    assert!(
        read("v1\n"),
        "the revert was not applied:\n{}",
        host.journal("berth.service")
    );
    let log = host.journal("berth.service");
    assert!(log.contains("file:/etc/motd.berth"), "{log}");
    host.ok("systemctl stop berth.service");
}

fn commit_and_push(work: &Path, dir: &Path, msg: &str) {
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", msg]);
    push(work, dir);
}

fn push(work: &Path, dir: &Path) {
    let origin = dir.join("origin.git");
    git(
        work,
        &[
            "push",
            "-q",
            origin.to_str().unwrap(),
            "HEAD:refs/heads/main",
        ],
    );
}

/// The reference server's SSH hardening and Fail2Ban jail (manifests/host) applied on a real
/// host: sshd runs with the hardened settings, fail2ban watches sshd through the journal.
#[test]
fn reference_ssh_hardening_and_fail2ban_jail_apply() {
    let host = TestHost::boot("hk-ref");
    let c = Config::new(&host, "hkref");
    // A server runs sshd already (and so has its /run/sshd, which `sshd -t` needs).
    host.ok("systemctl start ssh.service");
    let root = env!("CARGO_MANIFEST_DIR");
    for f in [
        "ssh.berth.yaml",
        "fail2ban.berth.yaml",
        "fail2ban-berth-action.conf",
    ] {
        let text = std::fs::read_to_string(format!("{root}/manifests/host/{f}")).unwrap();
        c.write(&format!("host/{f}"), &text);
    }
    c.berth("apply", &[]).expect(0);
    let effective = host.ok("sshd -T");
    assert!(
        effective.contains("passwordauthentication no"),
        "{effective}"
    );
    assert!(effective.contains("maxauthtries 3"), "{effective}");
    assert_eq!(host.ok("systemctl is-active ssh.service"), "active");
    assert_eq!(host.ok("systemctl is-active fail2ban.service"), "active");
    let jail = poll(Duration::from_secs(30), || {
        host.sh("fail2ban-client status sshd").status.success()
    });
    assert!(
        jail,
        "the sshd jail is not up:\n{}",
        host.journal("fail2ban.service")
    );
    c.berth("plan", &[]).expect(0);
}

/// `on_change: {restart_service: STACK/SERVICE}`: a changed host file restarts the service's
/// containers (on the outer Engine) after it is written; an unchanged file restarts nothing.
#[test]
fn restart_service_restarts_the_containers_after_the_file_changed() {
    let host = TestHost::boot("hk-restart");
    let c = Config::new(&host, "hkrestart");
    let stack = c.world.stack("app");
    c.write(
        "app/compose.yaml",
        &format!("name: {stack}\nservices:\n  web:\n    image: berth-test/busybox:1\n"),
    );
    let doc = |v: &str| {
        format!(
            "kind: File\npath: /etc/app.conf\ncontent: \"{v}\\n\"\non_change: {{restart_service: {stack}/web}}\n"
        )
    };
    c.write("berth.yaml", &doc("v1"));
    c.berth("apply", &[]).expect(0);
    let web = format!("{stack}-web-1");
    let started = || crate::support::inspect(&web, "{{.State.StartedAt}}");
    let first = started();
    c.berth("apply", &[]).expect(0);
    assert_eq!(started(), first, "nothing changed: not restarted");

    c.write("berth.yaml", &doc("v2"));
    let p = c.berth("plan", &[]).expect(2);
    assert!(
        p.stdout
            .contains(&format!("then restart service {stack}/web")),
        "{}",
        p.stdout
    );
    let r = c.berth("apply", &[]).expect(0);
    assert!(
        r.stdout.contains(&format!("restarted container {web}")),
        "{}",
        r.stdout
    );
    assert_ne!(started(), first, "restarted");
    assert_eq!(host.read("/etc/app.conf").unwrap(), "v2\n");
}

/// `dropins:` for a unit berth does not own (made by hand here, like a package's unit):
/// written, the unit restarted with them; `source:` for a unit berth owns; `state: stopped`
/// and `enabled: false`. Removing the documents drops the drop-in and puts the unit's previous
/// enablement and run state back.
#[test]
fn dropins_source_and_stopped_units() {
    let host = TestHost::boot("hk-dropins");
    let c = Config::new(&host, "hkdropins");
    host.write(
        "/etc/systemd/system/pkg.service",
        "[Service]\nExecStart=/bin/sh -c 'echo greeting=$GREETING; exec sleep infinity'\n[Install]\nWantedBy=multi-user.target\n",
    );
    host.ok("systemctl daemon-reload && systemctl enable --now pkg.service");
    c.write(
        "units/idle.service",
        "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n",
    );
    c.write(
        "units/berth.yaml",
        "kind: Unit\nname: pkg.service\ndropins:\n  50-greeting.conf: |\n    [Service]\n    Environment=GREETING=from-berth\n---\nkind: Unit\nname: idle.service\nsource: ./idle.service\nenabled: false\nstate: stopped\n",
    );
    let p = c.berth("plan", &[]).expect(2);
    assert!(
        p.stdout.contains("+Environment=GREETING=from-berth")
            || p.stdout
                .contains("new file /etc/systemd/system/pkg.service.d/50-greeting.conf"),
        "{}",
        p.stdout
    );
    c.berth("apply", &[]).expect(0);
    assert_eq!(
        host.ok("systemctl show -p Environment --value pkg.service"),
        "GREETING=from-berth"
    );
    assert!(
        host.journal("pkg.service").contains("greeting=from-berth"),
        "restarted with the drop-in"
    );
    assert_eq!(
        host.read("/etc/systemd/system/idle.service").unwrap(),
        "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"
    );
    assert_ne!(
        host.ok("systemctl is-active idle.service || true"),
        "active"
    );
    c.berth("plan", &[]).expect(0);

    // Both documents go: the drop-in is removed (pkg runs as before, enabled), idle.service
    // berth created is removed.
    c.remove("units/berth.yaml");
    c.write("keep/berth.yaml", "kind: Directory\npath: /srv/keep2\n");
    c.berth("apply", &[]).expect(0);
    assert!(
        host.read("/etc/systemd/system/pkg.service.d/50-greeting.conf")
            .is_none()
    );
    assert_eq!(
        host.ok("systemctl show -p Environment --value pkg.service"),
        ""
    );
    assert_eq!(host.ok("systemctl is-active pkg.service"), "active");
    assert_eq!(host.ok("systemctl is-enabled pkg.service"), "enabled");
    assert!(host.read("/etc/systemd/system/idle.service").is_none());
    c.berth("plan", &[]).expect(0);
}
