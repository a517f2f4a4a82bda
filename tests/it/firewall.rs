//! `kind: Firewall` on a real systemd test host with its own Docker Engine (tests/it/host.rs,
//! `boot_inner_docker`), on two outer Docker networks: a "tailnet" one inside 100.64.0.0/10
//! and an "internet" one, each with a client container (the test-host image, `sleep
//! infinity`). The witnesses are real connections from those clients, `nft` and the inner
//! `docker`.

use std::time::{Duration, Instant};

use crate::host::{TestHost, poll};
use crate::support::{Networks, Run, World, docker, docker_run};

/// The two outer networks and their clients; removed on drop, also when the test fails (the
/// networks after the clients, with anything still attached disconnected).
pub(crate) struct Lan {
    pub(crate) tail_net: String,
    pub(crate) inet_net: String,
    pub(crate) tail: String,
    pub(crate) inet: String,
    _networks: Networks,
}

impl Lan {
    /// Each network gets a free subnet (`network_on_free_subnet`), so tests run side by side.
    pub(crate) fn new(test: &str) -> Lan {
        let pid = std::process::id();
        let tail_net = format!("berth-fw-tail-{test}-{pid}");
        let inet_net = format!("berth-fw-inet-{test}-{pid}");
        let mut networks = Networks::new();
        networks.on_free_subnet(&tail_net, "100.64");
        networks.on_free_subnet(&inet_net, "198.18");
        let client = |net: &str, name: String| {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &name])
                .output();
            docker_run(&[
                "-d",
                "--name",
                &name,
                "--network",
                net,
                "--entrypoint",
                "sleep",
                "berth-test/host:2",
                "infinity",
            ]);
            name
        };
        let tail = client(&tail_net, format!("berth-fw-c-tail-{test}-{pid}"));
        let inet = client(&inet_net, format!("berth-fw-c-inet-{test}-{pid}"));
        Lan {
            tail_net,
            inet_net,
            tail,
            inet,
            _networks: networks,
        }
    }

    pub(crate) fn nets(&self) -> [&str; 2] {
        [&self.tail_net, &self.inet_net]
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for c in [&self.tail, &self.inet] {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", c])
                .output();
        }
        // `networks` goes next, as a field.
    }
}

/// Whether `client` gets a TCP connection to `ip:port` within 2 s.
pub(crate) fn reach(client: &str, ip: &str, port: u16) -> bool {
    let script = format!("exec 3<>/dev/tcp/{ip}/{port}");
    std::process::Command::new("docker")
        .args(["exec", client, "timeout", "2", "bash", "-c", &script])
        .output()
        .expect("docker exec")
        .status
        .success()
}

/// The config folder on the host, written from outside, and berth run on it.
pub(crate) struct Cfg<'h> {
    host: &'h TestHost,
    pub(crate) world: World,
}

impl<'h> Cfg<'h> {
    pub(crate) fn new(host: &'h TestHost, test: &str) -> Cfg<'h> {
        Cfg {
            host,
            world: World::new(test),
        }
    }

    pub(crate) fn write(&self, rel: &str, text: &str) {
        let p = self.host.dir().join("config").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub(crate) fn remove(&self, rel: &str) {
        std::fs::remove_file(self.host.dir().join("config").join(rel)).unwrap();
    }

    pub(crate) fn berth(&self, cmd: &str) -> Run {
        let root = self.host.dir().join("config");
        self.host.berth(&[
            "--instance",
            &self.world.instance,
            cmd,
            root.to_str().unwrap(),
        ])
    }
}

#[track_caller]
pub(crate) fn code(r: &Run, want: i32) {
    assert_eq!(
        r.code, want,
        "exit code {} (want {want})\nstdout:\n{}\nstderr:\n{}",
        r.code, r.stdout, r.stderr
    );
}

pub(crate) const REFERENCE: &str = "kind: Firewall\nbackend: nftables\ninbound: drop\nallow:\n  - ports: [80/tcp, 443/tcp, 443/udp]\n  - ports: [41641/udp]\n  - ports: [22/tcp, 9090/tcp]\n    from: tailnet\n";

/// Listeners on the host: a web server on 80 and an admin page on 9090, sshd on 22.
pub(crate) fn listeners(host: &TestHost) {
    host.ok("mkdir -p /srv/www && echo hello > /srv/www/index.html && \
         systemd-run --unit=web80 busybox httpd -f -p 80 -h /srv/www && \
         systemd-run --unit=admin9090 busybox httpd -f -p 9090 -h /srv/www && \
         systemctl start ssh");
    let up = poll(Duration::from_secs(20), || {
        host.sh(
            "ss -Htln | grep -q ':9090 ' && ss -Htln | grep -q ':80 ' && ss -Htln | grep -q ':22 '",
        )
        .status
        .success()
    });
    assert!(up, "listeners did not come up: {}", host.ok("ss -Htlnp"));
}

/// The reference ruleset, published ports through the forward chain, drift, Fail2Ban bans on
/// a published port, never touching Docker's tables, and removal.
#[test]
fn nftables_firewall_governs_host_and_published_ports() {
    let lan = Lan::new("gov");
    let host = TestHost::boot_inner_docker("fw-gov", &lan.nets());
    let (tail_ip, inet_ip) = (host.ip_on(&lan.tail_net), host.ip_on(&lan.inet_net));
    listeners(&host);
    // A database container published on all addresses (by the inner Engine, not by berth).
    host.ok("docker run -d --name db -p 5432:8080 berth-test/app:1");
    let db_ready = poll(Duration::from_secs(20), || reach(&lan.tail, &tail_ip, 5432));
    assert!(
        db_ready,
        "the published port does not answer before the firewall"
    );
    assert!(
        reach(&lan.inet, &inet_ip, 5432),
        "reachable from the internet before"
    );
    let tables_before = host.ok("nft list tables");
    assert!(tables_before.contains("table ip nat"), "{tables_before}");

    let cfg = Cfg::new(&host, "fwgov");
    cfg.write(
        "firewall.berth.yaml",
        &format!("{REFERENCE}  - ports: [5432/tcp]\n    from: tailnet\n"),
    );
    let plan = cfg.berth("plan");
    code(&plan, 2);
    assert!(
        plan.stdout.contains("+ allow 9090/tcp from tailnet")
            && plan.stdout.contains("+ allow 5432/tcp from tailnet"),
        "{}",
        plan.stdout
    );
    let start = Instant::now();
    code(&cfg.berth("apply"), 0);
    eprintln!("firewall apply (replace + confirm): {:?}", start.elapsed());
    code(&cfg.berth("plan"), 0);

    // The host's own ports, by source.
    assert!(reach(&lan.tail, &tail_ip, 80) && reach(&lan.inet, &inet_ip, 80));
    assert!(reach(&lan.tail, &tail_ip, 9090), "9090 from the tailnet");
    assert!(!reach(&lan.inet, &inet_ip, 9090), "9090 from the internet");
    assert!(reach(&lan.tail, &tail_ip, 22), "22 from the tailnet");
    assert!(!reach(&lan.inet, &inet_ip, 22), "22 from the internet");
    // The published port, keyed on its original port, by source.
    assert!(reach(&lan.tail, &tail_ip, 5432), "5432 from the tailnet");
    assert!(!reach(&lan.inet, &inet_ip, 5432), "5432 from the internet");
    // Container to container keeps working: through the published port from the bridge, and
    // directly on the bridge.
    host.ok("docker run --rm berth-test/app:1 timeout 5 wget -q -O- http://$(ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1):5432/");
    host.ok("docker run --rm berth-test/app:1 timeout 5 wget -q -O- http://$(docker inspect -f '{{.NetworkSettings.IPAddress}}' db):8080/");
    // Established traffic: the host's own outbound connection gets its answers.
    docker(&[
        "exec", "-d", &lan.inet, "busybox", "httpd", "-p", "8000", "-h", "/etc",
    ]);
    let client_ip = docker(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &lan.inet,
    ]);
    let outbound = poll(Duration::from_secs(10), || {
        host.sh(&format!(
            "curl -sf -m 3 -o /dev/null http://{client_ip}:8000/hostname"
        ))
        .status
        .success()
    });
    assert!(
        outbound,
        "replies to the host's own connections are dropped"
    );
    // Docker's tables are untouched.
    let tables = host.ok("nft list tables");
    for t in tables_before.lines() {
        assert!(tables.contains(t), "{t} is gone:\n{tables}");
    }

    // Drift: a hand delete, then a Docker restart (which rewrites its own tables).
    host.ok("nft delete table inet berth");
    assert!(reach(&lan.inet, &inet_ip, 9090), "no table, no firewall");
    let drift = cfg.berth("plan");
    code(&drift, 2);
    assert!(
        drift.stdout.contains("drift: table inet berth is gone"),
        "{}",
        drift.stdout
    );
    code(&cfg.berth("apply"), 0);
    assert!(!reach(&lan.inet, &inet_ip, 9090));
    host.ok("nft add rule inet berth input tcp dport 9090 accept");
    let edited = cfg.berth("plan");
    code(&edited, 2);
    assert!(
        edited.stdout.contains("changed on the host"),
        "{}",
        edited.stdout
    );
    code(&cfg.berth("apply"), 0);
    assert!(!reach(&lan.inet, &inet_ip, 9090), "the hand rule is gone");
    host.ok("systemctl restart docker");
    let db_back = poll(Duration::from_secs(30), || {
        host.sh("docker start db >/dev/null 2>&1; docker inspect -f '{{.State.Running}}' db | grep -q true")
            .status
            .success()
            && reach(&lan.tail, &tail_ip, 5432)
    });
    assert!(db_back, "the database is not back after a Docker restart");
    code(&cfg.berth("plan"), 0);
    assert!(!reach(&lan.inet, &inet_ip, 5432), "after a Docker restart");

    // Fail2Ban: the berth action bans into the table's set; the ban covers the published port
    // and survives berth's next replace.
    host.write(
        "/etc/fail2ban/action.d/berth-nftables.conf",
        include_str!("../../manifests/host/fail2ban-berth-action.conf"),
    );
    host.write(
        "/etc/fail2ban/jail.d/90-test.local",
        "[DEFAULT]\nbackend = systemd\nbanaction = berth-nftables\nbanaction_allports = berth-nftables\nignoreip = 127.0.0.1/8\n\n[sshd]\nenabled = true\n\n[sshd-forever]\nenabled = true\nfilter = sshd\nbantime = -1\n",
    );
    host.ok("systemctl start fail2ban");
    let client_tail_ip = docker(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &lan.tail,
    ]);
    let banned = poll(Duration::from_secs(30), || {
        host.sh(&format!("fail2ban-client set sshd banip {client_tail_ip}"))
            .status
            .success()
            && host
                .ok("nft list set inet berth banned4")
                .contains(&client_tail_ip)
    });
    assert!(
        banned,
        "the ban did not reach inet berth banned4: {}",
        host.ok("nft list set inet berth banned4")
    );
    assert!(
        !reach(&lan.tail, &tail_ip, 5432),
        "a banned address still reaches the published port"
    );
    assert!(
        !reach(&lan.tail, &tail_ip, 22),
        "a banned address still reaches ssh"
    );
    // A permanent ban (`bantime = -1`): an element without a timeout.
    let forever = "198.51.100.7";
    host.ok(&format!("fail2ban-client set sshd-forever banip {forever}"));
    let quoted = format!("\"{forever}\"");
    let permanent = poll(Duration::from_secs(20), || {
        host.ok("nft -j list set inet berth banned4")
            .contains(&quoted)
    });
    assert!(
        permanent,
        "the permanent ban did not reach banned4: {}",
        host.ok("nft list set inet berth banned4")
    );
    code(&cfg.berth("plan"), 0);
    cfg.write(
        "firewall.berth.yaml",
        &format!("{REFERENCE}  - ports: [5432/tcp, 6000/tcp]\n    from: tailnet\n"),
    );
    code(&cfg.berth("apply"), 0);
    let set = host.ok("nft list set inet berth banned4");
    assert!(
        set.contains(&client_tail_ip),
        "the ban did not survive the replace"
    );
    assert!(
        set.contains(forever)
            && !set.contains(&format!("{forever} timeout"))
            && !set.contains(&format!("{forever} expires")),
        "the permanent ban did not survive the replace as permanent: {set}"
    );
    host.ok(&format!(
        "fail2ban-client set sshd-forever unbanip {forever}"
    ));
    host.ok(&format!(
        "fail2ban-client set sshd unbanip {client_tail_ip}"
    ));
    assert!(reach(&lan.tail, &tail_ip, 5432), "unbanned");

    // Removing the Firewall document removes berth's table: what was there before is back.
    cfg.remove("firewall.berth.yaml");
    cfg.write(
        "keep.berth.yaml",
        "kind: Sysctl\nkey: net.ipv4.ip_forward\nvalue: 1\n",
    );
    let rm = cfg.berth("apply");
    code(&rm, 0);
    assert!(rm.stdout.contains("- firewall:inbound"), "{}", rm.stdout);
    assert!(
        !host.sh("nft list table inet berth").status.success(),
        "the table is still there"
    );
    assert!(reach(&lan.inet, &inet_ip, 5432) && reach(&lan.inet, &inet_ip, 9090));
}

/// The exposure guard on a real config: a database published on 0.0.0.0 that the Firewall does
/// not allow from everywhere is a plan error (exit 1) naming the Compose file and line; bound
/// to 127.0.0.1 it plans.
#[test]
fn exposure_guard_refuses_a_database_published_on_all_addresses() {
    let lan = Lan::new("exp");
    let host = TestHost::boot_inner_docker("fw-exp", &lan.nets());
    let (tail_ip, inet_ip) = (host.ip_on(&lan.tail_net), host.ip_on(&lan.inet_net));
    let cfg = Cfg::new(&host, "fwexp");
    cfg.write("firewall.berth.yaml", REFERENCE);
    cfg.write(
        "data/compose.yaml",
        "services:\n  db:\n    image: berth-test/app:1\n    pull_policy: never\n    ports:\n      - \"5432:8080\"\n",
    );
    let plan = cfg.berth("plan");
    code(&plan, 1);
    assert!(
        plan.stdout.contains("data/compose.yaml:6:9: data/db publishes 5432/tcp on all addresses, but the Firewall does not allow 5432/tcp from everywhere: bind it to 127.0.0.1"),
        "{}{}",
        plan.stdout,
        plan.stderr
    );
    code(&cfg.berth("apply"), 1);
    assert!(
        !host.sh("nft list table inet berth").status.success(),
        "nothing applied"
    );
    cfg.write(
        "data/compose.yaml",
        "services:\n  db:\n    image: berth-test/app:1\n    pull_policy: never\n    ports:\n      - \"127.0.0.1:5432:8080\"\n",
    );
    code(&cfg.berth("apply"), 0);
    // The override: published on all addresses on purpose. The plan goes through, and the
    // port is reachable exactly as the Firewall says (from the tailnet, not from the internet).
    cfg.write(
        "firewall.berth.yaml",
        &format!("{REFERENCE}  - ports: [5432/tcp]\n    from: tailnet\n"),
    );
    cfg.write(
        "data/compose.yaml",
        "services:\n  db:\n    image: berth-test/app:1\n    pull_policy: never\n    ports:\n      - \"5432:8080\"\n    x-berth:\n      expose_publicly: true\n",
    );
    let over = cfg.berth("apply");
    code(&over, 0);
    assert!(
        poll(Duration::from_secs(20), || reach(&lan.tail, &tail_ip, 5432)),
        "5432 from the tailnet with the override: {}{}",
        over.stdout,
        over.stderr
    );
    assert!(!reach(&lan.inet, &inet_ip, 5432), "5432 from the internet");
    // Without a Firewall the same port is a warning, not an error.
    cfg.remove("firewall.berth.yaml");
    cfg.write(
        "data/compose.yaml",
        "services:\n  db:\n    image: berth-test/app:1\n    pull_policy: never\n    ports:\n      - \"5432:8080\"\n",
    );
    let warn = cfg.berth("plan");
    assert!(
        warn.stdout.contains("warning: data/compose.yaml:6:9: data/db publishes 5432:8080 on all addresses and no Firewall is declared"),
        "{}{}",
        warn.stdout,
        warn.stderr
    );
}

/// A change that would cut SSH (sshd listens on 22, the manifest allows only 2222) is applied,
/// not confirmed, and the previous ruleset is back at once; when berth dies before it can
/// confirm, the systemd timer puts it back after `confirm_timeout`.
#[test]
fn a_change_that_cuts_ssh_is_reverted_within_the_timeout() {
    let lan = Lan::new("ssh");
    let host = TestHost::boot_inner_docker("fw-ssh", &lan.nets());
    let (tail_ip, inet_ip) = (host.ip_on(&lan.tail_net), host.ip_on(&lan.inet_net));
    listeners(&host);
    let cfg = Cfg::new(&host, "fwssh");
    cfg.write(
        "firewall.berth.yaml",
        &REFERENCE.replace("inbound: drop", "inbound: reject"),
    );
    code(&cfg.berth("apply"), 0);
    let before = host.ok("nft list table inet berth");
    // `inbound: reject`: a port not allowed from the internet answers at once with a reset.
    let t = Instant::now();
    // (bash's connect() error names the reset; curl 8 says only "Couldn't connect".)
    let refused = std::process::Command::new("docker")
        .args([
            "exec",
            &lan.inet,
            "timeout",
            "5",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{inet_ip}/9090"),
        ])
        .output()
        .expect("docker exec");
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("Connection refused"),
        "{err}"
    );
    assert!(took < Duration::from_secs(2), "rejected port took {took:?}");
    eprintln!("inbound: reject: 9090 from the internet refused in {took:?}");

    cfg.write(
        "firewall.berth.yaml",
        "kind: Firewall\nbackend: nftables\nssh_port: 2222\nconfirm_timeout: 10s\nallow:\n  - ports: [80/tcp, 2222/tcp]\n",
    );
    let start = Instant::now();
    let cut = cfg.berth("apply");
    let took = start.elapsed();
    code(&cut, 1);
    assert!(
        cut.stderr.contains("not confirmed: sshd listens on 22/tcp and the new rules let no one reach it; the previous ruleset was restored"),
        "{}{}",
        cut.stdout,
        cut.stderr
    );
    eprintln!("SSH-cutting change applied, refused and reverted in {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(host.ok("nft list table inet berth"), before);
    assert!(reach(&lan.tail, &tail_ip, 22) && !reach(&lan.inet, &inet_ip, 22));
    assert!(
        !host
            .sh("systemctl is-active berth-firewall-rollback-*.timer")
            .status
            .success()
    );

    // berth dies between the load and the confirmation (its `ss` hangs; kill -9): the
    // dead-man's switch restores the previous ruleset after confirm_timeout.
    host.write("/tmp/fakebin/ss", "#!/bin/sh\nexec sleep 600\n");
    host.ok("chmod +x /tmp/fakebin/ss");
    let root = host.dir().join("config");
    host.ok(&format!(
        "systemd-run --unit=berth-dies --setenv=PATH=/tmp/fakebin:/usr/sbin:/usr/bin:/sbin:/bin /usr/bin/berth --instance {} apply {}",
        cfg.world.instance,
        root.display()
    ));
    let loaded = poll(Duration::from_secs(20), || {
        host.ok("nft list table inet berth").contains("2222")
    });
    assert!(loaded, "the new table was not loaded");
    let t0 = Instant::now();
    host.ok("systemctl kill --signal=KILL berth-dies.service");
    let back = poll(Duration::from_secs(30), || {
        host.ok("nft list table inet berth") == before
    });
    let revert = t0.elapsed();
    assert!(
        back,
        "the rollback timer did not restore the previous ruleset"
    );
    eprintln!(
        "berth killed before confirming: previous ruleset back {revert:?} after the kill (confirm_timeout 10s from the load)"
    );
    assert!(revert < Duration::from_secs(15), "{revert:?}");
    assert!(reach(&lan.tail, &tail_ip, 22));

    // `allow_no_ssh: true` means it: the same cut is confirmed and stays, with the real `ss`.
    host.ok("rm /tmp/fakebin/ss");
    cfg.write(
        "firewall.berth.yaml",
        "kind: Firewall\nbackend: nftables\nallow_no_ssh: true\nallow:\n  - ports: [80/tcp]\n",
    );
    let meant = cfg.berth("apply");
    code(&meant, 0);
    assert!(
        !reach(&lan.tail, &tail_ip, 22),
        "22 is closed as declared: {}{}",
        meant.stdout,
        meant.stderr
    );
    assert!(reach(&lan.tail, &tail_ip, 80));
}

/// The firewalld backend (`backend: auto` with firewalld running): the default zone gets the
/// target, the public ports and one rich rule per sourced port (permanent and runtime), berth's
/// table keeps governing published ports; `firewall-cmd --reload` is no drift (firewalld
/// recreates only its own table); a removed rich rule or a deleted `inet berth` is drift,
/// repaired. berth takes the zone over (the stock `ssh` service and what else it allowed
/// go, so SSH is reachable only from the tailnet); berth killed before confirming is undone
/// by the rollback timer; removing the document gives the zone back exactly as it was.
#[test]
fn firewalld_backend_configures_the_zone_and_survives_a_reload() {
    let lan = Lan::new("fwd");
    let host = TestHost::boot_inner_docker("fw-fwd", &lan.nets());
    let (tail_ip, inet_ip) = (host.ip_on(&lan.tail_net), host.ip_on(&lan.inet_net));
    listeners(&host);
    host.ok("docker run -d --name db -p 5432:8080 berth-test/app:1");
    host.ok("systemctl start firewalld");
    let up = poll(Duration::from_secs(30), || {
        host.sh("firewall-cmd --state").status.success()
    });
    assert!(
        up,
        "firewalld did not start: {}",
        host.journal("firewalld.service")
    );
    // The stock default zone (public: ssh and dhcpv6-client for everyone), and a port and a
    // source added before berth: berth takes the zone over, and gives it back as it was.
    host.ok("firewall-cmd --permanent --add-port=7777/tcp && firewall-cmd --permanent --add-source=10.99.0.0/16 && firewall-cmd --reload");
    let stock = host.ok("firewall-cmd --list-all");
    let stock_permanent = host.ok("firewall-cmd --permanent --list-all");
    assert!(
        stock.contains("ssh")
            && stock.contains("dhcpv6-client")
            && stock.contains("target: default"),
        "{stock}"
    );
    assert!(
        reach(&lan.inet, &inet_ip, 22),
        "the stock zone lets SSH in from anywhere"
    );
    let cfg = Cfg::new(&host, "fwfwd");
    let manifest = format!(
        "{}  - ports: [5432/tcp]\n    from: tailnet\n",
        REFERENCE.replace("backend: nftables", "backend: auto\nconfirm_timeout: 10s")
    );
    cfg.write("firewall.berth.yaml", &manifest);
    let plan = cfg.berth("plan");
    code(&plan, 2);
    assert!(
        plan.stdout.contains("(firewalld, confirmed within 10s"),
        "{}",
        plan.stdout
    );
    for line in [
        "- service ssh (firewalld, not in the manifest)",
        "- service dhcpv6-client (firewalld, not in the manifest)",
        "- port 7777/tcp (firewalld, not in the manifest)",
        "- source 10.99.0.0/16 (firewalld, not in the manifest)",
    ] {
        assert!(plan.stdout.contains(line), "{line}\n{}", plan.stdout);
    }
    code(&cfg.berth("apply"), 0);
    let second = cfg.berth("plan");
    code(&second, 0);
    let zone = host.ok("firewall-cmd --list-all");
    assert!(
        zone.contains("services: \n") || zone.contains("services:\n"),
        "the zone's services are gone: {zone}"
    );
    assert!(
        reach(&lan.tail, &tail_ip, 22) && !reach(&lan.inet, &inet_ip, 22),
        "SSH only from the tailnet: {zone}"
    );
    assert!(
        zone.contains("target: DROP") && zone.contains("80/tcp"),
        "{zone}"
    );
    assert!(
        zone.contains(r#"rule family="ipv4" source address="100.64.0.0/10" port port="9090" protocol="tcp" accept"#),
        "{zone}"
    );
    assert_eq!(
        host.ok("firewall-cmd --permanent --list-rich-rules | wc -l"),
        host.ok("firewall-cmd --list-rich-rules | wc -l"),
        "permanent and runtime"
    );
    let check = |when: &str| {
        assert!(
            reach(&lan.tail, &tail_ip, 80) && reach(&lan.inet, &inet_ip, 80),
            "{when}: 80"
        );
        assert!(
            reach(&lan.tail, &tail_ip, 9090),
            "{when}: 9090 from the tailnet"
        );
        assert!(
            !reach(&lan.inet, &inet_ip, 9090),
            "{when}: 9090 from the internet"
        );
        assert!(
            reach(&lan.tail, &tail_ip, 5432),
            "{when}: 5432 from the tailnet"
        );
        assert!(
            !reach(&lan.inet, &inet_ip, 5432),
            "{when}: 5432 from the internet"
        );
    };
    check("applied");

    let ours = host.ok("nft list table inet berth");
    host.ok("firewall-cmd --reload");
    assert_eq!(
        host.ok("nft list table inet berth"),
        ours,
        "the reload touched berth's table"
    );
    code(&cfg.berth("plan"), 0);
    check("after firewall-cmd --reload");

    host.ok(r#"firewall-cmd --remove-rich-rule='rule family="ipv4" source address="100.64.0.0/10" port port="9090" protocol="tcp" accept'"#);
    assert!(!reach(&lan.tail, &tail_ip, 9090));
    let drift = cfg.berth("plan");
    code(&drift, 2);
    assert!(
        drift.stdout.contains("drift: firewalld zone public lost 1"),
        "{}",
        drift.stdout
    );
    code(&cfg.berth("apply"), 0);
    code(&cfg.berth("plan"), 0);
    check("rich rule repaired");
    host.ok("nft delete table inet berth");
    let gone = cfg.berth("plan");
    code(&gone, 2);
    assert!(
        gone.stdout.contains("table inet berth is gone"),
        "{}",
        gone.stdout
    );
    code(&cfg.berth("apply"), 0);
    check("table repaired");

    // berth dies between the zone change and its confirmation (its `ss` hangs; kill -9): the
    // rollback timer puts the table and the zone back after confirm_timeout.
    let zone_before = host.ok("firewall-cmd --list-all");
    let zone_before_permanent = host.ok("firewall-cmd --permanent --list-all");
    let table_before = host.ok("nft list table inet berth");
    cfg.write(
        "firewall.berth.yaml",
        &format!("{manifest}  - ports: [8088/tcp]\n"),
    );
    host.write("/tmp/fakebin/ss", "#!/bin/sh\nexec sleep 600\n");
    host.ok("chmod +x /tmp/fakebin/ss");
    let root = host.dir().join("config");
    host.ok(&format!(
        "systemd-run --unit=berth-dies --setenv=PATH=/tmp/fakebin:/usr/sbin:/usr/bin:/sbin:/bin /usr/bin/berth --instance {} apply {}",
        cfg.world.instance,
        root.display()
    ));
    let loaded = poll(Duration::from_secs(30), || {
        host.ok("firewall-cmd --list-ports").contains("8088/tcp")
    });
    assert!(loaded, "the new zone was not loaded");
    let t0 = Instant::now();
    host.ok("systemctl kill --signal=KILL berth-dies.service");
    let back = poll(Duration::from_secs(30), || {
        host.ok("firewall-cmd --list-all") == zone_before
            && host.ok("nft list table inet berth") == table_before
    });
    let revert = t0.elapsed();
    assert!(
        back,
        "the rollback timer did not restore the zone: {}",
        host.ok("firewall-cmd --list-all")
    );
    eprintln!(
        "firewalld: berth killed before confirming, zone and table back {revert:?} after the kill"
    );
    assert_eq!(
        host.ok("firewall-cmd --permanent --list-all"),
        zone_before_permanent
    );
    host.ok("rm /tmp/fakebin/ss");

    cfg.remove("firewall.berth.yaml");
    cfg.write(
        "keep.berth.yaml",
        "kind: Sysctl\nkey: net.ipv4.ip_forward\nvalue: 1\n",
    );
    let removal = cfg.berth("plan");
    assert!(
        removal
            .stdout
            .contains("+ service ssh (firewalld, as before berth)"),
        "{}",
        removal.stdout
    );
    code(&cfg.berth("apply"), 0);
    assert_eq!(
        host.ok("firewall-cmd --list-all"),
        stock,
        "runtime zone as before berth"
    );
    assert_eq!(
        host.ok("firewall-cmd --permanent --list-all"),
        stock_permanent,
        "permanent zone as before berth"
    );
    assert!(reach(&lan.inet, &inet_ip, 22));
    assert!(!host.sh("nft list table inet berth").status.success());
}
