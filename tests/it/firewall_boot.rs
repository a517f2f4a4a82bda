//! The confirmed firewall comes back at boot, before Docker (src/host/firewall_boot.rs): on the
//! systemd test host with its own Docker Engine, a simulated boot (table deleted, the boot unit
//! started) and a real one (`docker restart` of the test host: systemd as PID 1 boots again in
//! a fresh network namespace, the inner Engine starts from its unit).

use std::time::{Duration, Instant};

use crate::firewall::{Cfg, Lan, REFERENCE, code, listeners, reach};
use crate::host::{TestHost, poll};
use crate::support::docker;

fn monotonic(host: &TestHost, unit: &str, prop: &str) -> u64 {
    host.show(unit, &[prop])
        .get(prop)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_confirmed_ruleset_is_loaded_at_boot_before_docker() {
    let lan = Lan::new("boot");
    let host = TestHost::boot_inner_docker("fw-boot", &lan.nets());
    let (tail_ip, inet_ip) = (host.ip_on(&lan.tail_net), host.ip_on(&lan.inet_net));
    listeners(&host);
    host.ok("docker run -d --name db -p 5432:8080 berth-test/app:1");
    assert!(poll(Duration::from_secs(20), || reach(
        &lan.tail, &tail_ip, 5432
    )));
    let cfg = Cfg::new(&host, "fwboot");
    let instance = cfg.world.instance.clone();
    let unit = format!("berth-firewall-{instance}.service");
    let file = format!("/var/lib/berth/firewall-{instance}.nft");
    cfg.write(
        "firewall.berth.yaml",
        &format!("{REFERENCE}  - ports: [5432/tcp]\n    from: tailnet\n"),
    );
    code(&cfg.berth("apply"), 0);
    code(&cfg.berth("plan"), 0);
    let table = host.ok("nft list table inet berth");

    // Kept for boot: the file is the loaded script (no `flush ruleset`), the unit enabled,
    // early, before Docker.
    let script = host.read(&file).expect("the boot copy");
    assert!(script.contains("table inet berth {"), "{script}");
    assert!(!script.contains("flush ruleset"), "{script}");
    assert_eq!(host.ok(&format!("stat -c %a {file}")), "600");
    let props = host.show(
        &unit,
        &["UnitFileState", "Before", "WantedBy", "DefaultDependencies"],
    );
    assert_eq!(props["UnitFileState"], "enabled", "{props:?}");
    assert!(props["Before"].contains("docker.service"), "{props:?}");
    assert!(props["Before"].contains("network-pre.target"), "{props:?}");
    assert!(props["WantedBy"].contains("sysinit.target"), "{props:?}");
    assert_eq!(props["DefaultDependencies"], "no", "{props:?}");
    assert!(
        host.read("/etc/nftables.conf")
            .is_none_or(|c| !c.contains("berth")),
        "berth never writes Debian's /etc/nftables.conf"
    );

    // A simulated boot: the table is gone (the hole is open), the unit puts it back as it was.
    host.ok("nft delete table inet berth");
    assert!(reach(&lan.inet, &inet_ip, 5432), "no table, no firewall");
    host.ok(&format!("systemctl restart {unit}"));
    let run_us = monotonic(&host, &unit, "ExecMainExitTimestampMonotonic")
        .saturating_sub(monotonic(&host, &unit, "ExecMainStartTimestampMonotonic"));
    eprintln!("boot unit: nft -f of the confirmed ruleset took {run_us} µs");
    assert_eq!(host.ok("nft list table inet berth"), table);
    assert!(!reach(&lan.inet, &inet_ip, 5432), "5432 from the internet");
    assert!(reach(&lan.tail, &tail_ip, 5432), "5432 from the tailnet");
    code(&cfg.berth("plan"), 0);

    // Drift: the unit disabled by hand → plan says so, apply enables it again.
    host.ok(&format!("systemctl disable {unit}"));
    let drift = cfg.berth("plan");
    code(&drift, 2);
    assert!(
        drift.stdout.contains("would not come back at boot"),
        "{}",
        drift.stdout
    );
    code(&cfg.berth("apply"), 0);
    assert_eq!(
        host.show(&unit, &["UnitFileState"])["UnitFileState"],
        "enabled"
    );

    // A real boot: systemd starts again in a new network namespace (no table), the Engine from
    // its unit. The table is there as soon as the system is up, loaded before dockerd started.
    host.ok("systemctl enable docker");
    let t0 = Instant::now();
    docker(&["restart", "-t", "20", host.name()]);
    let up = poll(Duration::from_secs(60), || {
        let s = host.sh("systemctl is-system-running");
        let s = String::from_utf8_lossy(&s.stdout);
        s.trim() == "running" || s.trim() == "degraded"
    });
    assert!(up, "the test host did not boot again");
    eprintln!(
        "test host rebooted (docker restart → system up) in {:?}",
        t0.elapsed()
    );
    assert_eq!(host.ok("nft list table inet berth"), table, "after boot");
    let docker_up = poll(Duration::from_secs(60), || {
        host.sh("docker info >/dev/null 2>&1").status.success()
    });
    assert!(docker_up, "{}", host.journal("docker.service"));
    let fw_active = monotonic(&host, &unit, "ActiveEnterTimestampMonotonic");
    let docker_start = monotonic(&host, "docker.service", "InactiveExitTimestampMonotonic");
    eprintln!(
        "at boot: {unit} active at {fw_active} µs, docker.service started at {docker_start} µs (monotonic)"
    );
    assert!(
        fw_active > 0 && fw_active <= docker_start,
        "the firewall was not loaded before dockerd: {fw_active} vs {docker_start}"
    );
    code(&cfg.berth("plan"), 0);
    // The published port after boot, by source (the inner Engine's storage is a tmpfs: the
    // image goes back in, the container is started again).
    let (tail_ip, inet_ip) = (host.ip_on(&lan.tail_net), host.ip_on(&lan.inet_net));
    host.load_app_image();
    host.ok("docker run -d --name db -p 5432:8080 berth-test/app:1");
    assert!(poll(Duration::from_secs(20), || reach(
        &lan.tail, &tail_ip, 5432
    )));
    assert!(
        !reach(&lan.inet, &inet_ip, 5432),
        "5432 from the internet after boot"
    );

    // Removing the Firewall document: the table, the unit and the file go.
    cfg.remove("firewall.berth.yaml");
    cfg.write(
        "keep.berth.yaml",
        "kind: Sysctl\nkey: net.ipv4.ip_forward\nvalue: 1\n",
    );
    code(&cfg.berth("apply"), 0);
    assert!(!host.sh("nft list table inet berth").status.success());
    assert!(host.read(&file).is_none(), "the boot copy is still there");
    assert!(
        host.read(&format!("/etc/systemd/system/{unit}")).is_none(),
        "the unit file is still there"
    );
    assert_eq!(host.show(&unit, &["LoadState"])["LoadState"], "not-found");
    assert!(
        host.ok("ls /etc/systemd/system/sysinit.target.wants/")
            .lines()
            .all(|l| !l.contains("berth-firewall")),
        "still enabled"
    );
    code(&cfg.berth("plan"), 0);
}
