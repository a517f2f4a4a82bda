//! Readers of the network edge's firewall documents: `kind: AddressSet` and `kind: Firewall`
//! (→ [`crate::model::edge`]). Set names a Firewall's `from:` uses are checked once every
//! manifest is read ([`check_sets`]), with a did-you-mean.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::kinds::Doc;
use super::read::*;
use crate::compose::read::{Cx, suggest};
use crate::compose::yaml::{Node, Pos, Value};
use crate::diag::Diagnostic;
use crate::model::edge::{
    AddressSet, AllowRule, Backend, FirewallSpec, Inbound, PortRange, Proto, Source, TAILNET,
    tailnet_default,
};
use crate::model::host::Origin;

pub const ADDRESS_SET_KEYS: &[&str] = &["kind", "name", "addresses"];
pub const FIREWALL_KEYS: &[&str] = &[
    "kind",
    "backend",
    "inbound",
    "allow",
    "allow_no_ssh",
    "ssh_port",
    "confirm_timeout",
];
pub const ALLOW_KEYS: &[&str] = &["ports", "from"];

/// The longest (and default) time a firewall change may stay unconfirmed.
pub const MAX_CONFIRM: Duration = Duration::from_secs(60);

/// A set name a `from:` uses, checked when every document is read.
#[derive(Debug, Clone)]
pub(super) struct SetRef {
    pub name: String,
    pub origin: Origin,
    /// The key path (`allow[2].from`).
    pub path: String,
}

fn origin_at(d: &Doc, pos: Pos) -> Origin {
    Origin {
        file: d.origin.file.clone(),
        line: pos.line,
        col: pos.col,
    }
}

/// One CIDR or bare address (`10.0.0.1` is `10.0.0.1/32`); host bits set are refused.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let net: IpNet = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address or CIDR (`10.0.0.0/8`, `fd00::/8`)"))?;
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set; did you mean `{}`?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// `kind: AddressSet`.
pub(super) fn address_set(cx: &mut Cx, d: &Doc) -> Option<AddressSet> {
    let before = cx.diags.len();
    check_keys(cx, d.m, "", "an AddressSet", ADDRESS_SET_KEYS);
    let name = match get(d.m, "name") {
        None => {
            cx.err(d.pos, "", "an AddressSet needs `name`");
            None
        }
        Some(n) => text(cx, n, "name").and_then(|s| {
            let ok = !s.is_empty()
                && s.len() <= 32
                && s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                cx.err(
                    n.pos,
                    "name",
                    format!("{s:?} must be 1-32 of `a-z`, `0-9`, `-`, starting with a letter"),
                );
                return None;
            }
            if s == "public" {
                cx.err(
                    n.pos,
                    "name",
                    "`public` means everywhere and cannot name a set",
                );
                return None;
            }
            Some(s)
        }),
    };
    let addresses = match get(d.m, "addresses") {
        None => {
            cx.err(d.pos, "", "an AddressSet needs `addresses`");
            None
        }
        Some(n) => cidr_list(cx, n, "addresses", true),
    };
    if cx.diags.len() > before {
        return None;
    }
    Some(AddressSet {
        name: name?,
        addresses: addresses?,
        origin: Some(d.origin.clone()),
    })
}

/// A list of CIDRs (or one, when `one_ok`); sorted and deduplicated.
fn cidr_list(cx: &mut Cx, n: &Node, path: &str, one_ok: bool) -> Option<Vec<IpNet>> {
    let items: Vec<&Node> = match &n.value {
        Value::Seq(items) => items.iter().collect(),
        Value::Str(_) if one_ok => vec![n],
        v => {
            cx.err(
                n.pos,
                path,
                format!("must be a list of CIDRs, found {}", v.kind()),
            );
            return None;
        }
    };
    if items.is_empty() {
        cx.err(n.pos, path, "must name at least one address");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, it) in items.iter().enumerate() {
        let p = if matches!(n.value, Value::Seq(_)) {
            format!("{path}[{i}]")
        } else {
            path.to_string()
        };
        match &it.value {
            Value::Str(s) => match parse_cidr(s) {
                Ok(net) => out.push(net),
                Err(e) => {
                    cx.err(it.pos, &p, e);
                    ok = false;
                }
            },
            v => {
                cx.err(
                    it.pos,
                    &p,
                    format!("must be a CIDR string, found {}", v.kind()),
                );
                ok = false;
            }
        }
    }
    out.sort();
    out.dedup();
    ok.then_some(out)
}

/// `80/tcp`, `60000-61000/udp`.
pub fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let (ports, proto) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} needs a protocol: `{s}/tcp` or `{s}/udp`"))?;
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        p => {
            return Err(format!(
                "{s:?}: protocol must be `tcp` or `udp`, found {p:?}"
            ));
        }
    };
    let num = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{s:?}: {p:?} is not a port (1-65535)")),
        }
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let n = num(ports)?;
            (n, n)
        }
    };
    if start > end {
        return Err(format!("{s:?}: the range starts after it ends"));
    }
    Ok(PortRange { start, end, proto })
}

/// `from:` — a set name, a CIDR, or a list of CIDRs.
fn source(cx: &mut Cx, d: &Doc, n: &Node, path: &str, refs: &mut Vec<SetRef>) -> Option<Source> {
    match &n.value {
        Value::Str(s) if s == "public" || s == "anywhere" => Some(Source::Anywhere),
        Value::Str(s)
            if s.contains('/') || s.contains(':') || s.parse::<IpAddr>().is_ok() || {
                s.chars().next().is_some_and(|c| c.is_ascii_digit())
            } =>
        {
            cidr_list(cx, n, path, true).map(Source::Cidrs)
        }
        Value::Str(s) => {
            refs.push(SetRef {
                name: s.clone(),
                origin: origin_at(d, n.pos),
                path: path.to_string(),
            });
            Some(Source::Set(s.clone()))
        }
        Value::Seq(_) => cidr_list(cx, n, path, false).map(Source::Cidrs),
        v => {
            cx.err(
                n.pos,
                path,
                format!(
                    "must be an AddressSet name, a CIDR or a list of CIDRs, found {}",
                    v.kind()
                ),
            );
            None
        }
    }
}

fn word<T: Copy>(cx: &mut Cx, n: &Node, path: &str, words: &[(&str, T)]) -> Option<T> {
    let s = text(cx, n, path)?;
    if let Some((_, v)) = words.iter().find(|(w, _)| *w == s) {
        return Some(*v);
    }
    let names: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
    let hint = suggest(&s, names.iter())
        .map(|h| format!("; did you mean `{h}`?"))
        .unwrap_or_default();
    cx.err(
        n.pos,
        path,
        format!("must be one of {}, found {s:?}{hint}", names.join(", ")),
    );
    None
}

/// `confirm_timeout: 30` or `"30s"`, at most [`MAX_CONFIRM`].
fn confirm_timeout(cx: &mut Cx, n: &Node) -> Option<Duration> {
    let path = "confirm_timeout";
    let d = match &n.value {
        Value::Int(i) if *i > 0 => Duration::from_secs(*i as u64),
        Value::Str(s) => match crate::compose::parse_duration(s) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                cx.err(
                    n.pos,
                    path,
                    format!("must be a duration (`30s`, `1m`) or seconds, found {s:?}"),
                );
                return None;
            }
        },
        v => {
            cx.err(
                n.pos,
                path,
                format!("must be seconds or a duration (`30s`), found {}", v.kind()),
            );
            return None;
        }
    };
    if d > MAX_CONFIRM {
        cx.err(
            n.pos,
            path,
            format!(
                "must be at most 60s (a change that cut the way in is undone within a minute), found {}s",
                d.as_secs()
            ),
        );
        return None;
    }
    Some(d)
}

/// `kind: Firewall`.
pub(super) fn firewall(cx: &mut Cx, d: &Doc, refs: &mut Vec<SetRef>) -> Option<FirewallSpec> {
    let before = cx.diags.len();
    check_keys(cx, d.m, "", "a Firewall", FIREWALL_KEYS);
    let backend = get(d.m, "backend").and_then(|n| {
        word(
            cx,
            n,
            "backend",
            &[
                ("auto", Backend::Auto),
                ("firewalld", Backend::Firewalld),
                ("nftables", Backend::Nftables),
            ],
        )
    });
    let inbound = get(d.m, "inbound").and_then(|n| {
        word(
            cx,
            n,
            "inbound",
            &[("drop", Inbound::Drop), ("reject", Inbound::Reject)],
        )
    });
    let allow_no_ssh = opt_bool(cx, d.m, "allow_no_ssh");
    let ssh_port = get(d.m, "ssh_port").and_then(|n| match &n.value {
        Value::Int(i) if (1..=65535).contains(i) => Some(*i as u16),
        Value::Str(s) if s.parse::<u16>().is_ok_and(|p| p > 0) => s.parse().ok(),
        v => {
            cx.err(
                n.pos,
                "ssh_port",
                format!("must be a port (1-65535), found {}", describe_value(v)),
            );
            None
        }
    });
    let timeout = get(d.m, "confirm_timeout").and_then(|n| confirm_timeout(cx, n));
    let mut allow = Vec::new();
    match get(d.m, "allow") {
        None => {}
        Some(n) => match &n.value {
            Value::Seq(items) => {
                for (i, it) in items.iter().enumerate() {
                    if let Some(r) = allow_rule(cx, d, it, &format!("allow[{i}]"), refs) {
                        allow.push(r);
                    }
                }
            }
            Value::Null => {}
            v => cx.err(
                n.pos,
                "allow",
                format!("must be a list, found {}", v.kind()),
            ),
        },
    }
    if cx.diags.len() > before {
        return None;
    }
    Some(FirewallSpec {
        backend: backend.unwrap_or_default(),
        inbound: inbound.unwrap_or_default(),
        allow,
        allow_no_ssh: allow_no_ssh.unwrap_or(false),
        ssh_port: ssh_port.unwrap_or(22),
        confirm_timeout: timeout.unwrap_or(MAX_CONFIRM),
        origin: d.origin.clone(),
    })
}

fn describe_value(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Str(s) => format!("{s:?}"),
        v => v.kind().to_string(),
    }
}

fn allow_rule(
    cx: &mut Cx,
    d: &Doc,
    n: &Node,
    path: &str,
    refs: &mut Vec<SetRef>,
) -> Option<AllowRule> {
    let m = as_map(cx, n, path)?;
    let before = cx.diags.len();
    check_keys(cx, m, path, "an allow rule", ALLOW_KEYS);
    let mut ports = Vec::new();
    match get(m, "ports") {
        None => cx.err(
            n.pos,
            path,
            "an allow rule needs `ports` (`[80/tcp, 443/udp]`)",
        ),
        Some(pn) => {
            let items: Vec<&Node> = match &pn.value {
                Value::Seq(items) => items.iter().collect(),
                _ => vec![pn],
            };
            if items.is_empty() {
                cx.err(
                    pn.pos,
                    &format!("{path}.ports"),
                    "must name at least one port",
                );
            }
            for (i, it) in items.iter().enumerate() {
                let p = format!("{path}.ports[{i}]");
                match &it.value {
                    Value::Str(s) => match parse_port_range(s) {
                        Ok(r) => ports.push(r),
                        Err(e) => cx.err(it.pos, &p, e),
                    },
                    Value::Int(i) => cx.err(
                        it.pos,
                        &p,
                        format!("{i} needs a protocol: `{i}/tcp` or `{i}/udp`"),
                    ),
                    v => cx.err(
                        it.pos,
                        &p,
                        format!("must be `PORT/PROTO` (`443/tcp`), found {}", v.kind()),
                    ),
                }
            }
        }
    }
    let from = match get(m, "from") {
        None => Some(Source::Anywhere),
        Some(f) => source(cx, d, f, &format!("{path}.from"), refs),
    };
    if cx.diags.len() > before {
        return None;
    }
    ports.sort();
    ports.dedup();
    Some(AllowRule {
        ports,
        from: from?,
        origin: origin_at(d, n.pos),
    })
}

/// The sets a config declares, with the predefined `tailnet` unless redefined; a name declared
/// twice is an error at the later declaration naming the first.
pub(super) fn register_sets(
    sets: Vec<AddressSet>,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, AddressSet> {
    let mut out: BTreeMap<String, AddressSet> = BTreeMap::new();
    for s in sets {
        let origin = s.origin.clone().expect("declared sets have an origin");
        if let Some(first) = out.get(&s.name).and_then(|f| f.origin.as_ref()) {
            diags.push(Diagnostic::new(
                &origin.file,
                origin.line,
                origin.col,
                format!("AddressSet `{}` is already declared at {first}", s.name),
            ));
            continue;
        }
        out.insert(s.name.clone(), s);
    }
    out.entry(TAILNET.to_string())
        .or_insert_with(|| AddressSet {
            name: TAILNET.into(),
            addresses: tailnet_default(),
            origin: None,
        });
    out
}

/// Every set a `from:` names exists.
pub(super) fn check_sets(
    refs: &[SetRef],
    sets: &BTreeMap<String, AddressSet>,
    diags: &mut Vec<Diagnostic>,
) {
    for r in refs {
        if sets.contains_key(&r.name) {
            continue;
        }
        let names: Vec<&str> = sets.keys().map(String::as_str).collect();
        let hint = suggest(&r.name, names.iter())
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_else(|| {
                format!(
                    " (known sets: {})",
                    sets.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            });
        diags.push(Diagnostic::new(
            &r.origin.file,
            r.origin.line,
            r.origin.col,
            format!("{}: no AddressSet `{}`{hint}", r.path, r.name),
        ));
    }
}
