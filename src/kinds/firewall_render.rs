//! The firewall's rendering, pure: a [`FirewallSpec`] and the address sets → the readable
//! rule lines a plan diffs, and the nftables script that replaces berth's table `inet berth`
//! in one transaction (`nft -f`).
//!
//! The table has two base chains:
//! - `input` (hook input, priority filter - 10, policy drop): established/related, loopback,
//!   Docker's bridges (containers reach the host, and published ports through docker-proxy),
//!   ICMP and ICMPv6 (IPv6 neighbour discovery needs it), DHCP replies, then the allow rules;
//!   `inbound: reject` ends with a reject (TCP reset, ICMP port unreachable) instead of the
//!   silent drop.
//! - `forward` (hook forward, priority filter - 10, before Docker's own filter chains): every
//!   DNATed connection (`ct status dnat`: a Docker-published port) goes through `published`,
//!   which applies the same allow rules keyed on the *original* destination port
//!   (`ct original proto-dst`), after letting traffic from Docker's bridges (container to
//!   container through a published port) through. Other forwarded traffic is not touched.
//!
//! Fail2Ban bans into the timeout sets `banned4`/`banned6`, dropped first in both chains.
//! Their elements are not part of the script: the adapter re-adds the live ones in the same
//! transaction, so a replace keeps every ban.

use std::fmt::Write as _;

use ipnet::IpNet;

use crate::model::edge::{
    AllowRule, EdgeSpec, FirewallSpec, Inbound, PortRange, Proto, Source, TAILNET, ZoneWanted,
};

/// Who a rule lets in: everyone, or these addresses (split by family).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Who {
    /// The nft set name for a named AddressSet (`as_tailnet`), `None` for inline CIDRs.
    set: Option<String>,
    v4: Vec<IpNet>,
    v6: Vec<IpNet>,
}

fn split(nets: &[IpNet]) -> (Vec<IpNet>, Vec<IpNet>) {
    nets.iter().partition(|n| matches!(n, IpNet::V4(_)))
}

fn set_ident(name: &str) -> String {
    format!("as_{}", name.replace('-', "_"))
}

fn who(edge: &EdgeSpec, from: &Source) -> Option<Who> {
    match from {
        Source::Anywhere => None,
        Source::Set(name) => {
            let nets = edge.resolve(from).unwrap_or_default();
            let (v4, v6) = split(&nets);
            Some(Who {
                set: Some(set_ident(name)),
                v4,
                v6,
            })
        }
        Source::Cidrs(c) => {
            let (v4, v6) = split(c);
            Some(Who { set: None, v4, v6 })
        }
    }
}

/// `from` as a plan line writes it.
fn source_text(from: &Source) -> String {
    match from {
        Source::Anywhere => "anywhere".into(),
        other => other.to_string(),
    }
}

/// The readable lines a plan diffs: the inbound default, the addresses of every set a rule
/// uses, one line per allowed port range and source.
pub fn rule_lines(fw: &FirewallSpec, edge: &EdgeSpec) -> Vec<String> {
    let mut out = vec![format!(
        "inbound {}",
        match fw.inbound {
            Inbound::Drop => "drop",
            Inbound::Reject => "reject",
        }
    )];
    let mut sets: Vec<&str> = Vec::new();
    for r in &fw.allow {
        if let Source::Set(n) = &r.from
            && !sets.contains(&n.as_str())
        {
            sets.push(n);
        }
    }
    sets.sort_unstable();
    for name in sets {
        let nets = edge
            .address_sets
            .get(name)
            .map(|s| {
                s.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let nets = if nets.is_empty() {
            "(empty)".to_string()
        } else {
            nets.join(", ")
        };
        let what = if name == TAILNET
            && edge
                .address_sets
                .get(name)
                .is_some_and(|s| s.origin.is_none())
        {
            " (predefined)"
        } else {
            ""
        };
        out.push(format!("set {name}{what} = {nets}"));
    }
    for r in &fw.allow {
        for p in &r.ports {
            let line = format!("allow {p} from {}", source_text(&r.from));
            if !out.contains(&line) {
                out.push(line);
            }
        }
    }
    out
}

/// `{ 22, 9090, 60000-61000 }` (or a single port without braces).
fn port_list(ports: &[&PortRange]) -> String {
    let items: Vec<String> = ports
        .iter()
        .map(|p| {
            if p.start == p.end {
                p.start.to_string()
            } else {
                format!("{}-{}", p.start, p.end)
            }
        })
        .collect();
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

fn net_list(nets: &[IpNet]) -> String {
    let items: Vec<String> = nets.iter().map(ToString::to_string).collect();
    format!("{{ {} }}", items.join(", "))
}

/// One rule's matches per protocol and family: `(saddr match or "", proto, ports)`.
fn matches(rule: &AllowRule, edge: &EdgeSpec) -> Vec<(String, Proto, String)> {
    let mut out = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        let ports: Vec<&PortRange> = rule.ports.iter().filter(|p| p.proto == proto).collect();
        if ports.is_empty() {
            continue;
        }
        let ports = port_list(&ports);
        match who(edge, &rule.from) {
            None => out.push((String::new(), proto, ports)),
            Some(w) => {
                for (fam, nets, suffix) in [("ip", &w.v4, "4"), ("ip6", &w.v6, "6")] {
                    if nets.is_empty() {
                        continue;
                    }
                    let saddr = match &w.set {
                        Some(s) => format!("{fam} saddr @{s}{suffix} "),
                        None => format!("{fam} saddr {} ", net_list(nets)),
                    };
                    out.push((saddr, proto, ports.clone()));
                }
            }
        }
    }
    out
}

/// The nftables script: create-then-delete-then-define `inet berth`, one transaction.
pub fn nft_script(fw: &FirewallSpec, edge: &EdgeSpec) -> String {
    script(fw, edge, true)
}

/// The script beside firewalld, which governs the host's own ports: berth's table keeps the
/// ban sets (dropped on an accepting input chain) and the forward chain of published ports.
pub fn nft_script_beside_firewalld(fw: &FirewallSpec, edge: &EdgeSpec) -> String {
    script(fw, edge, false)
}

/// What the firewalld zone must hold: the target, public ports, one rich rule per source
/// network and port range.
pub fn zone_wanted(fw: &FirewallSpec, edge: &EdgeSpec, zone: &str) -> ZoneWanted {
    let mut w = ZoneWanted {
        zone: zone.to_string(),
        target: match fw.inbound {
            Inbound::Drop => "DROP".into(),
            Inbound::Reject => "%%REJECT%%".into(),
        },
        ..ZoneWanted::default()
    };
    let range = |p: &PortRange| {
        if p.start == p.end {
            p.start.to_string()
        } else {
            format!("{}-{}", p.start, p.end)
        }
    };
    for r in &fw.allow {
        let nets = match &r.from {
            Source::Anywhere => None,
            other => Some(edge.resolve(other).unwrap_or_default()),
        };
        for p in &r.ports {
            match &nets {
                None => {
                    let s = format!("{}/{}", range(p), p.proto);
                    if !w.ports.contains(&s) {
                        w.ports.push(s);
                    }
                }
                Some(nets) => {
                    for n in nets {
                        let family = if matches!(n, IpNet::V4(_)) {
                            "ipv4"
                        } else {
                            "ipv6"
                        };
                        let s = format!(
                            "rule family=\"{family}\" source address=\"{n}\" port port=\"{}\" protocol=\"{}\" accept",
                            range(p),
                            p.proto
                        );
                        if !w.rich.contains(&s) {
                            w.rich.push(s);
                        }
                    }
                }
            }
        }
    }
    w
}

fn script(fw: &FirewallSpec, edge: &EdgeSpec, input: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# berth: the firewall (kind: Firewall). Do not edit: berth replaces this table."
    );
    let _ = writeln!(s, "table inet berth {{}}");
    let _ = writeln!(s, "delete table inet berth");
    let _ = writeln!(s, "table inet berth {{");
    let _ = writeln!(s, "  set banned4 {{ type ipv4_addr; flags timeout; }}");
    let _ = writeln!(s, "  set banned6 {{ type ipv6_addr; flags timeout; }}");
    let mut sets: Vec<&str> = fw
        .allow
        .iter()
        .filter_map(|r| match &r.from {
            Source::Set(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    sets.sort_unstable();
    sets.dedup();
    for name in sets {
        let nets = edge.resolve(&Source::Set(name.into())).unwrap_or_default();
        let (v4, v6) = split(&nets);
        for (ty, nets, suffix) in [("ipv4_addr", v4, "4"), ("ipv6_addr", v6, "6")] {
            let elements = if nets.is_empty() {
                String::new()
            } else {
                format!(" elements = {};", net_list(&nets))
            };
            let _ = writeln!(
                s,
                "  set {}{suffix} {{ type {ty}; flags interval;{elements} }}",
                set_ident(name)
            );
        }
    }
    let end = match fw.inbound {
        Inbound::Drop => "drop",
        // A TCP reset (the client sees "Connection refused" at once), ICMP port unreachable
        // for the rest: what a closed port answers.
        Inbound::Reject => {
            "meta l4proto tcp reject with tcp reset\n    reject with icmpx type port-unreachable"
        }
    };
    let _ = writeln!(s, "  chain input {{");
    if !input {
        let _ = writeln!(
            s,
            "    type filter hook input priority filter - 10; policy accept;"
        );
        let _ = writeln!(s, "    ip saddr @banned4 drop");
        let _ = writeln!(s, "    ip6 saddr @banned6 drop");
    }
    let lines: &[&str] = if input {
        &[
            "ct state established,related accept",
            "ct state invalid drop",
            "iif \"lo\" accept",
            "ip saddr @banned4 drop",
            "ip6 saddr @banned6 drop",
            // Containers reach the host (and, through docker-proxy, each other's published ports)
            // as they do without a firewall.
            "iifname \"docker0\" accept",
            "iifname \"br-*\" accept",
            "meta l4proto { icmp, ipv6-icmp } accept",
            "udp sport 67 udp dport 68 accept",
            "udp sport 547 udp dport 546 accept",
        ]
    } else {
        &[]
    };
    if input {
        let _ = writeln!(
            s,
            "    type filter hook input priority filter - 10; policy drop;"
        );
    }
    for line in lines {
        let _ = writeln!(s, "    {line}");
    }
    for r in fw.allow.iter().filter(|_| input) {
        for (saddr, proto, ports) in matches(r, edge) {
            let _ = writeln!(s, "    {saddr}{proto} dport {ports} accept");
        }
    }
    if input && fw.inbound == Inbound::Reject {
        let _ = writeln!(s, "    {end}");
    }
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "  chain forward {{");
    let _ = writeln!(
        s,
        "    type filter hook forward priority filter - 10; policy accept;"
    );
    let _ = writeln!(s, "    ct state established,related accept");
    let _ = writeln!(s, "    ct status dnat jump published");
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "  chain published {{");
    for line in [
        "ip saddr @banned4 drop",
        "ip6 saddr @banned6 drop",
        "iifname \"docker0\" accept",
        "iifname \"br-*\" accept",
    ] {
        let _ = writeln!(s, "    {line}");
    }
    for r in &fw.allow {
        for (saddr, proto, ports) in matches(r, edge) {
            let _ = writeln!(
                s,
                "    {saddr}meta l4proto {proto} ct original proto-dst {ports} accept"
            );
        }
    }
    let _ = writeln!(s, "    {end}");
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "}}");
    s
}

pub use crate::model::edge::nft_delete_script;
