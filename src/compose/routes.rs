//! `x-berth.routes` of a service, and the route fields `kind: Route` shares with it (`host`,
//! `path`, `access`). What can be checked in one place is checked here (a host name's syntax, a
//! path matcher, a port, CIDRs); what needs the whole config (an access set's name, the service's
//! ports, two routes on one host and path) is the planner's (`kinds::route`), so one bad route
//! is reported on its stack without stopping the rest of the config.

use ipnet::IpNet;

use super::read::*;
use super::yaml::{Node, Value};
use crate::model::edge::{RouteKeys, RouteSpec, Source, Upstream};
use crate::model::host::Origin;

/// The keys of one entry of `x-berth.routes`.
pub const SERVICE_ROUTE_KEYS: &[&str] = &["host", "path", "port", "access"];

/// `x-berth.routes` of service `service` in stack `stack`: every valid entry.
pub(super) fn service_routes(
    cx: &mut Cx,
    n: &Node,
    path: &str,
    stack: &str,
    service: &str,
) -> Vec<RouteSpec> {
    let Value::Seq(items) = &n.value else {
        cx.err(
            n.pos,
            path,
            format!("must be a list of routes, found {}", n.value.kind()),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let ip = idx(path, i);
        let Some(m) = as_map(cx, it, &ip) else {
            continue;
        };
        let before = cx.diags.len();
        known_keys(cx, m, &ip, "a route", SERVICE_ROUTE_KEYS);
        let host = match get(m, "host") {
            Some(h) => host_name(cx, h, &child(&ip, "host")),
            None => {
                cx.err(it.pos, &ip, "a route needs `host`");
                None
            }
        };
        let rpath = get(m, "path").and_then(|p| path_matcher(cx, p, &child(&ip, "path")));
        let port = match get(m, "port") {
            Some(p) => port(cx, p, &child(&ip, "port")),
            None => {
                cx.err(
                    it.pos,
                    &ip,
                    "a route needs `port` (the container port to send requests to)",
                );
                None
            }
        };
        let access = match get(m, "access") {
            Some(a) => access(cx, a, &child(&ip, "access")),
            None => Some(Source::Anywhere),
        };
        if cx.diags.len() > before {
            continue;
        }
        if let (Some(host), Some(port), Some(access)) = (host, port, access) {
            out.push(RouteSpec {
                host,
                path: rpath,
                to: Upstream::Service {
                    stack: stack.to_string(),
                    service: service.to_string(),
                    port,
                },
                access,
                origin: Origin {
                    file: cx.file.clone(),
                    line: it.pos.line,
                    col: it.pos.col,
                },
                keys: RouteKeys {
                    host: get(m, "host").map(|n| cx.origin(n.pos)),
                    to: get(m, "port").map(|n| cx.origin(n.pos)),
                    access: get(m, "access").map(|n| cx.origin(n.pos)),
                },
            });
        }
    }
    out
}

/// Unknown keys of berth's own mappings, with a did-you-mean.
pub(crate) fn known_keys(cx: &mut Cx, m: &Map, path: &str, what: &str, known: &[&str]) {
    for (k, _) in m {
        if known.contains(&k.name.as_str()) {
            continue;
        }
        let hint = suggest(&k.name, known.iter())
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
        cx.err(
            k.pos,
            path,
            format!(
                "unknown key `{}` ({what} takes {}){hint}",
                k.name,
                list.join(", ")
            ),
        );
    }
}

/// A DNS name Caddy can serve and get a certificate for: letters, digits, `-` and `.`, a
/// leading `*.` for a wildcard; lower-cased.
pub(crate) fn host_name(cx: &mut Cx, n: &Node, path: &str) -> Option<String> {
    let s = string(cx, n, path)?.to_ascii_lowercase();
    let name = s.strip_prefix("*.").unwrap_or(&s);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !ok {
        cx.err(
            n.pos,
            path,
            format!("invalid host name {s:?} (a DNS name such as app.example.org)"),
        );
        return None;
    }
    Some(s)
}

/// A Caddy path matcher: starts with `/`, no spaces; `*` only as the last character.
pub(crate) fn path_matcher(cx: &mut Cx, n: &Node, path: &str) -> Option<String> {
    let s = string(cx, n, path)?;
    let star_ok = s.find('*').is_none_or(|i| i == s.len() - 1);
    if !s.starts_with('/') || s.chars().any(char::is_whitespace) || !star_ok {
        cx.err(
            n.pos,
            path,
            format!("invalid path {s:?} (a path such as /admin or /admin/*: starts with `/`, `*` only at the end)"),
        );
        return None;
    }
    Some(s)
}

fn port(cx: &mut Cx, n: &Node, path: &str) -> Option<u16> {
    let p = int(cx, n, path)?;
    match u16::try_from(p) {
        Ok(p) if p > 0 => Some(p),
        _ => {
            cx.err(n.pos, path, format!("invalid port {p} (1 to 65535)"));
            None
        }
    }
}

/// `public`, an address set's name, a CIDR, or a list of CIDRs.
pub(crate) fn access(cx: &mut Cx, n: &Node, path: &str) -> Option<Source> {
    match &n.value {
        Value::Seq(items) => {
            let mut nets = Vec::new();
            for (i, it) in items.iter().enumerate() {
                let s = string(cx, it, &idx(path, i))?;
                match cidr(&s) {
                    Some(Ok(c)) => nets.push(c),
                    Some(Err(e)) => {
                        cx.err(it.pos, &idx(path, i), e);
                        return None;
                    }
                    None => {
                        cx.err(
                            it.pos,
                            &idx(path, i),
                            format!("invalid CIDR {s:?} (e.g. 100.64.0.0/10)"),
                        );
                        return None;
                    }
                }
            }
            if nets.is_empty() {
                cx.err(
                    n.pos,
                    path,
                    "an empty list lets no one in; write `public`, a set's name or CIDRs",
                );
                return None;
            }
            Some(Source::Cidrs(nets))
        }
        _ => {
            let s = string(cx, n, path)?;
            if s == "public" {
                return Some(Source::Anywhere);
            }
            match cidr(&s) {
                Some(Ok(c)) => return Some(Source::Cidrs(vec![c])),
                Some(Err(e)) => {
                    cx.err(n.pos, path, e);
                    return None;
                }
                None => {}
            }
            let name_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !name_ok || s.contains('/') {
                cx.err(
                    n.pos,
                    path,
                    format!("invalid access {s:?} (use public, an address set's name such as tailnet, or CIDRs)"),
                );
                return None;
            }
            Some(Source::Set(s))
        }
    }
}

/// `100.64.0.0/10`, or a bare address (`/32`, `/128`); `None` when it is neither. Host bits
/// (`100.64.1.2/10`) are refused, as in a Firewall's `from:`: a typo must not widen access.
fn cidr(s: &str) -> Option<Result<IpNet, String>> {
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Some(Ok(IpNet::from(ip)));
    }
    let net = s.parse::<IpNet>().ok()?;
    Some(if net.trunc() == net {
        Ok(net)
    } else {
        Err(format!(
            "{s:?} has host bits set; did you mean `{}`?",
            net.trunc()
        ))
    })
}
