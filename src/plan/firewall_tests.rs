//! Snapshot tests of the firewall planner and its renderer, through [`check`]: a fresh table,
//! converged, a rule diff, drift, the exposure guard (error, override, warning without a
//! Firewall), the lockout guard, removal, firewalld running.

use std::time::Duration;

use super::tests::{check, converged, stack, svc};
use super::*;
use crate::kinds::firewall_render::nft_script;
use crate::model::edge::*;
use crate::model::host::{Before, Entry, Origin};
use crate::model::{Desired, Observed, PortSpec};

fn origin(line: u64) -> Origin {
    Origin {
        file: "host/firewall.berth.yaml".into(),
        line,
        col: 1,
    }
}

fn ports(list: &[&str]) -> Vec<PortRange> {
    list.iter()
        .map(|p| crate::berthfile::parse_port_range(p).unwrap())
        .collect()
}

fn rule(list: &[&str], from: Source) -> AllowRule {
    AllowRule {
        ports: ports(list),
        from,
        origin: origin(3),
    }
}

/// The reference server's firewall.
fn reference() -> FirewallSpec {
    FirewallSpec {
        backend: Backend::Auto,
        inbound: Inbound::Drop,
        allow: vec![
            rule(&["80/tcp", "443/tcp", "443/udp"], Source::Anywhere),
            rule(&["41641/udp"], Source::Anywhere),
            rule(&["22/tcp", "9090/tcp"], Source::Set(TAILNET.into())),
        ],
        allow_no_ssh: false,
        ssh_port: 22,
        confirm_timeout: Duration::from_secs(60),
        origin: origin(1),
    }
}

fn with_fw(fw: Option<FirewallSpec>) -> Desired {
    let mut d = Desired::default();
    d.edge.address_sets.insert(
        TAILNET.into(),
        AddressSet {
            name: TAILNET.into(),
            addresses: tailnet_default(),
            origin: None,
        },
    );
    d.edge.firewall = fw;
    d
}

fn fresh() -> Observed {
    let mut o = Observed::default();
    o.host.firewall = Some(ObservedFirewall::default());
    o
}

/// What the host looks like after berth applied `d`'s firewall (live digest "live-1").
fn applied(d: &Desired, table: Option<&str>) -> Observed {
    let mut o = converged(d);
    let fw = d.edge.firewall.as_ref().unwrap();
    let script = nft_script(fw, &d.edge);
    o.host.inventory.entries.insert(
        "firewall:inbound".into(),
        Entry {
            before: Before::Firewall {
                backend: "nftables".into(),
                rules: crate::kinds::firewall_render::rule_lines(fw, &d.edge),
                live: Some("live-1".into()),
                zone: None,
            },
            applied: Some(crate::model::sha256_hex(script.as_bytes())),
        },
    );
    o.host.firewall = Some(ObservedFirewall {
        table: table.map(String::from),
        ..Default::default()
    });
    o
}

#[test]
fn fresh_firewall_replaces_the_table_and_renders_the_reference_ruleset() {
    let d = with_fw(Some(reference()));
    let p = check("firewall_fresh", &d, &fresh(), PlanOptions::default());
    let Payload::Firewall(fw) = &p.changes[0].payload else {
        panic!("a firewall change")
    };
    assert_eq!(fw.confirm_timeout, 60);
    insta::assert_snapshot!("firewall_nft_reference", fw.script);
}

#[test]
fn reject_cidrs_and_ranges_render() {
    let mut fw = reference();
    fw.inbound = Inbound::Reject;
    fw.allow.push(rule(
        &["60000-61000/udp", "5432/tcp"],
        Source::Cidrs(vec![
            "192.0.2.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]),
    ));
    let d = with_fw(Some(fw));
    insta::assert_snapshot!(
        "firewall_nft_reject_cidrs",
        nft_script(d.edge.firewall.as_ref().unwrap(), &d.edge)
    );
}

#[test]
fn converged_firewall_is_no_change_and_ban_elements_are_not_drift() {
    let d = with_fw(Some(reference()));
    // The observed digest excludes the ban sets' elements, so bans do not show here at all.
    let p = check(
        "firewall_converged",
        &d,
        &applied(&d, Some("live-1")),
        PlanOptions::default(),
    );
    assert!(p.changes.is_empty());
    assert_eq!(p.unchanged_host, [Addr::host(Kind::Firewall, "inbound")]);
}

#[test]
fn a_new_rule_shows_as_a_rule_diff() {
    let before = with_fw(Some(reference()));
    let o = applied(&before, Some("live-1"));
    let mut fw = reference();
    fw.allow[2] = rule(&["22/tcp"], Source::Set(TAILNET.into()));
    fw.allow
        .push(rule(&["9090/tcp", "3000/tcp"], Source::Set(TAILNET.into())));
    fw.allow.remove(1);
    check(
        "firewall_rule_diff",
        &with_fw(Some(fw)),
        &o,
        PlanOptions::default(),
    );
}

#[test]
fn a_redefined_set_shows_its_addresses_changing() {
    let before = with_fw(Some(reference()));
    let o = applied(&before, Some("live-1"));
    let mut d = with_fw(Some(reference()));
    d.edge.address_sets.get_mut(TAILNET).unwrap().addresses =
        vec!["100.100.0.0/16".parse().unwrap()];
    d.edge.address_sets.get_mut(TAILNET).unwrap().origin = Some(origin(9));
    check("firewall_set_redefined", &d, &o, PlanOptions::default());
}

#[test]
fn drift_a_missing_or_changed_table_is_put_back() {
    let d = with_fw(Some(reference()));
    check(
        "firewall_drift_gone",
        &d,
        &applied(&d, None),
        PlanOptions::default(),
    );
    check(
        "firewall_drift_edited",
        &d,
        &applied(&d, Some("live-2")),
        PlanOptions::default(),
    );
}

/// The live table is berth's, but the boot unit is gone (a host upgraded from a berth that did
/// not keep the ruleset for boot, or a hand `systemctl disable`): applied again, which keeps it.
#[test]
fn drift_a_ruleset_not_kept_for_boot_is_applied_again() {
    let d = with_fw(Some(reference()));
    let mut o = applied(&d, Some("live-1"));
    o.host.firewall.as_mut().unwrap().boot = Some(
        "/etc/systemd/system/berth-firewall-default.service is missing, so the table would not come back at boot".into(),
    );
    let p = check("firewall_drift_boot", &d, &o, PlanOptions::default());
    assert_eq!(p.changes.len(), 1);
    assert!(p.unchanged_host.is_empty());
}

fn db(host_ip: Option<&str>, expose: bool) -> Desired {
    let mut s = svc("postgres:16");
    s.ports = vec![PortSpec {
        target: 5432,
        published: Some(5432),
        host_ip: host_ip.map(String::from),
        protocol: "tcp".into(),
    }];
    s.ports_at.insert(s.ports[0].to_string(), (7, 9));
    s.expose_publicly = expose;
    let mut web = svc("nginx");
    web.ports = vec![PortSpec {
        target: 80,
        published: Some(80),
        host_ip: None,
        protocol: "tcp".into(),
    }];
    let mut d = with_fw(Some(reference()));
    d.stacks
        .insert("data".into(), stack("data", &[("db", s), ("web", web)]));
    d
}

#[test]
fn exposure_guard_refuses_a_database_published_on_all_addresses() {
    let d = db(None, false);
    let p = check(
        "firewall_exposed_error",
        &d,
        &converged(&d),
        PlanOptions::default(),
    );
    assert_eq!(p.errors.len(), 1, "80 is allowed publicly, 5432 is not");
    assert_eq!(
        p.errors[0].to_string(),
        "data/compose.yaml:7:9: data/db publishes 5432/tcp on all addresses, but the Firewall does not allow 5432/tcp from everywhere: bind it to 127.0.0.1 (`127.0.0.1:5432:…`), or allow 5432/tcp in the Firewall (or set `x-berth: {expose_publicly: true}` on the service to publish it as the Firewall allows)"
    );
    assert!(matches!(&p.errors[0], PlanError::Exposed { stack, .. } if stack == "data"));
    let d = db(Some("0.0.0.0"), false);
    assert_eq!(
        plan(&d, &converged(&d), &PlanOptions::default())
            .errors
            .len(),
        1
    );
    // Bound to loopback, or the explicit override: no error.
    for d in [db(Some("127.0.0.1"), false), db(None, true)] {
        let mut o = converged(&d);
        o.host.firewall = Some(ObservedFirewall::default());
        assert!(plan(&d, &o, &PlanOptions::default()).errors.is_empty());
    }
}

#[test]
fn exposure_without_a_firewall_is_a_warning_in_text_and_json() {
    let mut d = db(None, false);
    d.edge.firewall = None;
    let p = check(
        "firewall_exposed_warning",
        &d,
        &converged(&d),
        PlanOptions::default(),
    );
    assert!(p.errors.is_empty());
    assert_eq!(p.warnings.len(), 2);
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["warnings"][0]["warning"], "exposed");
    assert_eq!(json["warnings"][0]["port"], "5432:5432");
}

#[test]
fn lockout_guard_refuses_a_ruleset_without_ssh() {
    let mut fw = reference();
    fw.allow.truncate(2);
    check(
        "firewall_lockout",
        &with_fw(Some(fw.clone())),
        &fresh(),
        PlanOptions::default(),
    );
    // An empty set lets no one in either.
    let mut fw2 = reference();
    fw2.allow[2].from = Source::Cidrs(Vec::new());
    assert!(matches!(
        plan(&with_fw(Some(fw2)), &fresh(), &PlanOptions::default()).errors[..],
        [PlanError::Lockout { ssh_port: 22, .. }]
    ));
    fw.allow_no_ssh = true;
    assert!(
        plan(
            &with_fw(Some(fw.clone())),
            &fresh(),
            &PlanOptions::default()
        )
        .errors
        .is_empty()
    );
    // ssh_port moves the check.
    fw.allow_no_ssh = false;
    fw.ssh_port = 2222;
    fw.allow
        .push(rule(&["2222/tcp"], Source::Set(TAILNET.into())));
    assert!(
        plan(&with_fw(Some(fw)), &fresh(), &PlanOptions::default())
            .errors
            .is_empty()
    );
}

#[test]
fn removing_the_firewall_document_removes_the_table() {
    let before = with_fw(Some(reference()));
    let o = applied(&before, Some("live-1"));
    let p = check(
        "firewall_removed",
        &with_fw(None),
        &o,
        PlanOptions::default(),
    );
    assert_eq!(p.changes[0].op, Op::Delete);
}

#[test]
fn firewalld_running_with_auto_configures_its_zone() {
    let d = with_fw(Some(reference()));
    let mut o = fresh();
    let f = o.host.firewall.as_mut().unwrap();
    f.firewalld_running = true;
    // firewalld's stock public zone: ssh and dhcpv6-client, open to everyone.
    let stock = ZoneAllow {
        services: vec!["ssh".into(), "dhcpv6-client".into()],
        ..Default::default()
    };
    f.zone = Some(ZoneState {
        name: "public".into(),
        target: "default".into(),
        runtime: stock.clone(),
        permanent: stock.clone(),
    });
    let p = check("firewall_firewalld_running", &d, &o, PlanOptions::default());
    takes_the_zone_over_and_gives_it_back(&d, &o, &p, &stock);
    let Payload::Firewall(fw) = &p.changes[0].payload else {
        panic!("a firewall change")
    };
    let zone = fw.zone.as_ref().unwrap();
    assert_eq!(zone.target, "DROP");
    assert_eq!(zone.ports, ["80/tcp", "443/tcp", "443/udp", "41641/udp"]);
    assert_eq!(
        zone.rich[0],
        r#"rule family="ipv4" source address="100.64.0.0/10" port port="22" protocol="tcp" accept"#
    );
    assert!(
        !fw.script.contains("policy drop"),
        "firewalld governs input"
    );
    // Without a readable zone, or with `backend: firewalld` and no firewalld: refused.
    o.host.firewall.as_mut().unwrap().zone = None;
    assert!(matches!(
        plan(&d, &o, &PlanOptions::default()).errors[..],
        [PlanError::FirewallRefused { .. }]
    ));
    let mut fw = reference();
    fw.backend = Backend::Firewalld;
    assert!(matches!(
        plan(&with_fw(Some(fw)), &fresh(), &PlanOptions::default()).errors[..],
        [PlanError::FirewallRefused { .. }]
    ));
}

#[test]
fn a_published_port_opens_only_after_the_firewall_is_applied() {
    let mut d = db(Some("127.0.0.1"), false);
    d.stacks
        .get_mut("data")
        .unwrap()
        .services
        .insert("worker".into(), svc("worker:1"));
    let o = Observed {
        images: super::tests::images_for(&d),
        ..Default::default()
    };
    let p = plan(&d, &o, &PlanOptions::default());
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let fw = p
        .changes
        .iter()
        .find(|c| c.payload.kind() == Kind::Firewall)
        .expect("the firewall is created")
        .addr
        .clone();
    let waits = |service: &str| {
        p.changes
            .iter()
            .find(|c| matches!(&c.payload, Payload::Container(x) if x.service == service))
            .unwrap_or_else(|| panic!("{service} is created"))
            .needs
            .iter()
            .any(|n| n.addr == fw)
    };
    assert!(waits("db") && waits("web"), "publishing containers wait");
    assert!(!waits("worker"), "a container without ports does not");
}

/// The zone is recorded as it was before berth in the entry written before the apply; after
/// the apply (the zone = the manifest) a second plan is empty; a service added by hand is
/// drift; removing the Firewall shows the zone coming back.
fn takes_the_zone_over_and_gives_it_back(d: &Desired, o: &Observed, p: &Plan, stock: &ZoneAllow) {
    let Payload::Firewall(fw) = &p.changes[0].payload else {
        panic!("a firewall change")
    };
    let rec = fw.zone_record.clone().expect("the takeover record");
    assert_eq!(rec.target_before, "default");
    assert_eq!(&rec.original, stock);
    let after = fw.record.after.clone().unwrap();
    assert!(matches!(&after.before, Before::Firewall { zone: Some(r), .. } if *r == rec));
    // The apply: inventory entry with the live digest, the zone exactly the manifest's.
    let want = fw.zone.clone().unwrap();
    let mut o2 = o.clone();
    let mut entry = after;
    if let Before::Firewall { live, .. } = &mut entry.before {
        *live = Some("live-1".into());
    }
    o2.host
        .inventory
        .entries
        .insert("firewall:inbound".into(), entry);
    let f = o2.host.firewall.as_mut().unwrap();
    f.table = Some("live-1".into());
    let z = f.zone.as_mut().unwrap();
    z.target = want.target.clone();
    z.runtime = want.allow();
    z.permanent = want.allow();
    let again = plan(d, &o2, &PlanOptions::default());
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    // A service added by hand later is drift: removed again.
    let mut o3 = o2.clone();
    let z = o3.host.firewall.as_mut().unwrap().zone.as_mut().unwrap();
    z.runtime.services.push("http".into());
    check(
        "firewall_firewalld_extra_service",
        d,
        &o3,
        PlanOptions::default(),
    );
    // The Firewall goes: the zone as before berth comes back.
    let p = check(
        "firewall_firewalld_removed",
        &with_fw(None),
        &o2,
        PlanOptions::default(),
    );
    let Payload::Firewall(fw) = &p.changes[0].payload else {
        panic!("a firewall change")
    };
    assert_eq!(fw.zone_record.as_ref(), Some(&rec));
}
