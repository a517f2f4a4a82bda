//! Loader tests of `kind: AddressSet` and `kind: Firewall` through `load_dir`: defaults, the
//! predefined `tailnet`, every error with its `file:line:col: key: message`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::compose::load_dir;
use crate::model::edge::{Backend, EdgeSpec, Inbound, PortRange, Proto, Source, tailnet_default};

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let p = d.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

fn load(dir: &Path) -> Result<EdgeSpec, Vec<String>> {
    load_dir(dir, &BTreeMap::new())
        .map(|d| d.edge)
        .map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

fn edge(text: &str) -> EdgeSpec {
    let d = tree(&[("berth.yaml", text)]);
    load(d.path()).unwrap_or_else(|e| panic!("{e:#?}"))
}

fn errs(files: &[(&str, &str)]) -> Vec<String> {
    let d = tree(files);
    load(d.path()).expect_err("an error")
}

fn err1(text: &str) -> Vec<String> {
    errs(&[("berth.yaml", text)])
}

fn pr(start: u16, end: u16, proto: Proto) -> PortRange {
    PortRange { start, end, proto }
}

#[test]
fn tailnet_is_predefined_and_may_be_redefined() {
    let e = edge("kind: Firewall\nallow:\n  - ports: [22/tcp]\n    from: tailnet\n");
    assert_eq!(e.address_sets["tailnet"].addresses, tailnet_default());
    assert!(e.address_sets["tailnet"].origin.is_none());
    let e = edge("kind: AddressSet\nname: tailnet\naddresses: [100.100.0.0/16, 10.1.2.3]\n");
    let t = &e.address_sets["tailnet"];
    assert_eq!(
        t.addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["10.1.2.3/32", "100.100.0.0/16"]
    );
    assert_eq!(t.origin.as_ref().unwrap().to_string(), "berth.yaml:1:1");
    // No Firewall: the sets are still loaded, there is no firewall.
    assert!(e.firewall.is_none());
}

#[test]
fn firewall_keys_and_defaults() {
    let e = edge(
        "kind: AddressSet\nname: office\naddresses: [192.0.2.0/24, \"2001:db8::/32\"]\n---\n\
         kind: Firewall\nallow:\n  - ports: [80/tcp, 443/tcp, 443/udp]\n  - ports: [60000-61000/udp]\n    from: office\n  - ports: [9090/tcp]\n    from: [10.0.0.0/8, fd00::/8]\n  - ports: [5432/tcp]\n    from: 198.51.100.7\n",
    );
    let fw = e.firewall.unwrap();
    assert_eq!(fw.backend, Backend::Auto);
    assert_eq!(fw.inbound, Inbound::Drop);
    assert_eq!(fw.ssh_port, 22);
    assert!(!fw.allow_no_ssh);
    assert_eq!(fw.confirm_timeout, Duration::from_secs(60));
    assert_eq!(fw.origin.to_string(), "berth.yaml:5:1");
    assert_eq!(
        fw.allow[0].ports,
        [
            pr(80, 80, Proto::Tcp),
            pr(443, 443, Proto::Tcp),
            pr(443, 443, Proto::Udp)
        ]
    );
    assert_eq!(fw.allow[0].from, Source::Anywhere);
    assert_eq!(fw.allow[1].ports, [pr(60000, 61000, Proto::Udp)]);
    assert_eq!(fw.allow[1].from, Source::Set("office".into()));
    assert_eq!(fw.allow[2].from.to_string(), "10.0.0.0/8, fd00::/8");
    assert_eq!(fw.allow[3].from.to_string(), "198.51.100.7/32");
    assert_eq!(fw.allow[1].origin.to_string(), "berth.yaml:8:5");

    let fw = edge("kind: Firewall\nbackend: nftables\ninbound: reject\nallow_no_ssh: true\nssh_port: 2222\nconfirm_timeout: 30s\n")
        .firewall
        .unwrap();
    assert_eq!(
        (
            fw.backend,
            fw.inbound,
            fw.allow_no_ssh,
            fw.ssh_port,
            fw.confirm_timeout
        ),
        (
            Backend::Nftables,
            Inbound::Reject,
            true,
            2222,
            Duration::from_secs(30)
        )
    );
    let fw = edge("kind: Firewall\nconfirm_timeout: 15\n")
        .firewall
        .unwrap();
    assert_eq!(fw.confirm_timeout, Duration::from_secs(15));
}

#[test]
fn firewall_errors_are_located_with_their_key() {
    assert_eq!(
        err1(
            "kind: Firewall\nbackend: iptables\ninbound: dorp\nallow_no_sh: true\nssh_port: 70000\nconfirm_timeout: 2m\nallow:\n  - ports: [80, 443/tpc, 0/tcp, 9-3/udp, 80]\n    form: tailnet\n  - ports: [22/tcp]\n    from: tailnett\n  - ports: [1/tcp]\n    from: [10.0.0.1/8, nope]\n  - 80/tcp\n"
        ),
        [
            "berth.yaml:2:10: backend: must be one of auto, firewalld, nftables, found \"iptables\"; did you mean `nftables`?",
            "berth.yaml:3:10: inbound: must be one of drop, reject, found \"dorp\"; did you mean `drop`?",
            "berth.yaml:4:1: unknown key `allow_no_sh` in a Firewall; did you mean `allow_no_ssh`?",
            "berth.yaml:5:11: ssh_port: must be a port (1-65535), found 70000",
            "berth.yaml:6:18: confirm_timeout: must be at most 60s (a change that cut the way in is undone within a minute), found 120s",
            "berth.yaml:8:13: allow[0].ports[0]: 80 needs a protocol: `80/tcp` or `80/udp`",
            "berth.yaml:8:17: allow[0].ports[1]: \"443/tpc\": protocol must be `tcp` or `udp`, found \"tpc\"",
            "berth.yaml:8:26: allow[0].ports[2]: \"0/tcp\": \"0\" is not a port (1-65535)",
            "berth.yaml:8:33: allow[0].ports[3]: \"9-3/udp\": the range starts after it ends",
            "berth.yaml:8:42: allow[0].ports[4]: 80 needs a protocol: `80/tcp` or `80/udp`",
            "berth.yaml:9:5: allow[0]: unknown key `form` in an allow rule; did you mean `from`?",
            "berth.yaml:13:12: allow[2].from[0]: \"10.0.0.1/8\" has host bits set; did you mean `10.0.0.0/8`?",
            "berth.yaml:13:24: allow[2].from[1]: \"nope\" is not an IP address or CIDR (`10.0.0.0/8`, `fd00::/8`)",
            "berth.yaml:14:5: allow[3]: must be a mapping, found a string",
        ]
    );
}

#[test]
fn unknown_sets_get_a_suggestion_across_files() {
    assert_eq!(
        errs(&[
            (
                "a.berth.yaml",
                "kind: AddressSet\nname: office\naddresses: [10.0.0.0/8]\n"
            ),
            (
                "b.berth.yaml",
                "kind: Firewall\nallow:\n  - ports: [22/tcp]\n    from: tailnett\n  - ports: [80/tcp]\n    from: ofice\n  - ports: [81/tcp]\n    from: zzz\n"
            ),
        ]),
        [
            "b.berth.yaml:4:11: allow[0].from: no AddressSet `tailnett`; did you mean `tailnet`?",
            "b.berth.yaml:6:11: allow[1].from: no AddressSet `ofice`; did you mean `office`?",
            "b.berth.yaml:8:11: allow[2].from: no AddressSet `zzz` (known sets: office, tailnet)",
        ]
    );
}

#[test]
fn address_set_errors_and_duplicates_name_both_places() {
    assert_eq!(
        err1(
            "kind: AddressSet\nname: Office\naddresses: 10.0.0.0/8\n---\nkind: AddressSet\nname: x\n---\nkind: AddressSet\nname: y\naddresses: [300.1.1.1]\nextra: 1\n"
        ),
        [
            "berth.yaml:2:7: name: \"Office\" must be 1-32 of `a-z`, `0-9`, `-`, starting with a letter",
            "berth.yaml:5:1: an AddressSet needs `addresses`",
            "berth.yaml:10:13: addresses[0]: \"300.1.1.1\" is not an IP address or CIDR (`10.0.0.0/8`, `fd00::/8`)",
            "berth.yaml:11:1: unknown key `extra` in an AddressSet (known keys: kind, name, addresses)",
        ]
    );
    assert_eq!(
        errs(&[
            (
                "a.berth.yaml",
                "kind: AddressSet\nname: office\naddresses: [10.0.0.0/8]\n"
            ),
            (
                "b.berth.yaml",
                "kind: AddressSet\nname: office\naddresses: [10.0.0.0/16]\n"
            ),
        ]),
        ["b.berth.yaml:1:1: AddressSet `office` is already declared at a.berth.yaml:1:1"]
    );
    assert_eq!(
        errs(&[
            ("a.berth.yaml", "kind: Firewall\nallow_no_ssh: true\n"),
            ("b.berth.yaml", "kind: Firewall\nallow_no_ssh: true\n"),
        ]),
        [
            "b.berth.yaml:1:1: a Firewall (at most one per config) is already declared at a.berth.yaml:1:1"
        ]
    );
}
