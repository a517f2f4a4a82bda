//! `kind: Route` (an upstream that is not a stack's container) and `kind: Proxy` (the Caddy
//! berth loads its routes into). The route fields they share with `x-berth.routes` are read by
//! [`crate::compose::routes`].

use std::collections::BTreeMap;

use super::kinds::Doc;
use super::read::*;
use crate::compose::read::Cx;
use crate::compose::routes::{access, host_name, path_matcher};
use crate::compose::yaml::Value;
use crate::model::edge::{Headers, ProxyAdmin, ProxySpec, RouteKeys, RouteSpec, Source, Upstream};

pub const ROUTE_KEYS: &[&str] = &["kind", "host", "path", "to", "access"];
pub const PROXY_KEYS: &[&str] = &[
    "kind",
    "admin",
    "service",
    "network",
    "email",
    "acme_ca",
    "acme_ca_root",
    "headers",
];

/// `kind: Route`.
pub(super) fn route(cx: &mut Cx, d: &Doc) -> Option<RouteSpec> {
    check_keys(cx, d.m, "", "Route", ROUTE_KEYS);
    let host = match get(d.m, "host") {
        Some(n) => host_name(cx, n, "host"),
        None => {
            cx.err(d.pos, "", "a Route needs `host`");
            None
        }
    };
    let path = get(d.m, "path").and_then(|n| path_matcher(cx, n, "path"));
    let to = match get(d.m, "to") {
        Some(n) => text(cx, n, "to").and_then(|s| match host_port(&s) {
            Some(()) => Some(s),
            None => {
                cx.err(
                    n.pos,
                    "to",
                    format!("invalid upstream {s:?} (an address and port such as 127.0.0.1:8000 or [::1]:8000)"),
                );
                None
            }
        }),
        None => {
            cx.err(
                d.pos,
                "",
                "a Route needs `to` (the address and port to send requests to)",
            );
            None
        }
    };
    let access = match get(d.m, "access") {
        Some(n) => access(cx, n, "access"),
        None => Some(Source::Anywhere),
    };
    Some(RouteSpec {
        host: host?,
        path,
        to: Upstream::Address(to?),
        access: access?,
        origin: d.origin.clone(),
        keys: RouteKeys {
            host: get(d.m, "host").map(|n| cx.origin(n.pos)),
            to: get(d.m, "to").map(|n| cx.origin(n.pos)),
            access: get(d.m, "access").map(|n| cx.origin(n.pos)),
        },
    })
}

/// `host:port` with a port in 1..=65535 and a non-empty host (`[v6]:port` for IPv6).
fn host_port(s: &str) -> Option<()> {
    let (h, p) = s.rsplit_once(':')?;
    let p: u16 = p.parse().ok().filter(|p| *p > 0)?;
    let _ = p;
    let h = h
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h);
    let ok = !h.is_empty()
        && (h.parse::<std::net::IpAddr>().is_ok()
            || h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')));
    ok.then_some(())
}

/// `kind: Proxy`.
pub(super) fn proxy(cx: &mut Cx, d: &Doc) -> Option<ProxySpec> {
    check_keys(cx, d.m, "", "Proxy", PROXY_KEYS);
    let admin = match (get(d.m, "admin"), get(d.m, "service")) {
        (Some(_), Some(_)) => {
            let later = key_pos(d.m, "admin").max(key_pos(d.m, "service"));
            cx.err(
                later.unwrap_or(d.pos),
                "",
                "set one of `admin` (Caddy's admin API URL) or `service` (a stack's Caddy container), not both",
            );
            None
        }
        (None, None) => {
            cx.err(
                d.pos,
                "",
                "a Proxy needs `admin: http://127.0.0.1:2019` (Caddy on the host) or `service: STACK/SERVICE` (a Caddy container of a stack)",
            );
            None
        }
        (Some(n), None) => text(cx, n, "admin").and_then(|u| {
            let rest = u.strip_prefix("http://");
            let ok = rest.is_some_and(|r| {
                let hp = r.trim_end_matches('/');
                !hp.is_empty() && !hp.contains('/') && hp.contains(':')
            });
            if u.contains('@') {
                // Not echoed: it holds a password.
                cx.err(
                    n.pos,
                    "admin",
                    "the admin URL must not carry a user or password (it would be printed in every plan; Caddy's admin API belongs on loopback)",
                );
                None
            } else if ok {
                Some(ProxyAdmin::Url(u.trim_end_matches('/').to_string()))
            } else {
                cx.err(
                    n.pos,
                    "admin",
                    format!("invalid admin URL {u:?} (http://HOST:PORT, e.g. http://127.0.0.1:2019; keep Caddy's admin API off public addresses)"),
                );
                None
            }
        }),
        (None, Some(n)) => text(cx, n, "service").and_then(|s| match s.split_once('/') {
            Some((st, sv)) if !st.is_empty() && !sv.is_empty() && !sv.contains('/') => {
                Some(ProxyAdmin::Service {
                    stack: st.to_string(),
                    service: sv.to_string(),
                })
            }
            _ => {
                cx.err(
                    n.pos,
                    "service",
                    format!("invalid service {s:?} (STACK/SERVICE, e.g. proxy/caddy)"),
                );
                None
            }
        }),
    };
    let opt_text = |cx: &mut Cx, key: &str| get(d.m, key).and_then(|n| text(cx, n, key));
    let network = opt_text(cx, "network");
    let email = opt_text(cx, "email");
    if let (Some(e), Some(n)) = (&email, get(d.m, "email"))
        && !e.contains('@')
    {
        cx.err(
            n.pos,
            "email",
            format!("invalid email {e:?} (the ACME account's address)"),
        );
    }
    let acme_ca = opt_text(cx, "acme_ca");
    if let (Some(u), Some(n)) = (&acme_ca, get(d.m, "acme_ca"))
        && !u.starts_with("https://")
    {
        cx.err(
            n.pos,
            "acme_ca",
            format!("invalid ACME directory {u:?} (an https:// URL)"),
        );
    }
    let acme_ca_root = get(d.m, "acme_ca_root")
        .and_then(|n| abs_path(cx, n, "acme_ca_root"))
        .map(|p| p.to_string_lossy().into_owned());
    let headers = match get(d.m, "headers") {
        None => Some(Headers::Default),
        Some(n) => match &n.value {
            Value::Str(s) if s == "default" => Some(Headers::Default),
            Value::Str(s) if s == "none" => Some(Headers::None),
            Value::Map(m) => {
                let mut out = BTreeMap::new();
                let mut ok = true;
                for (k, v) in m {
                    let valid_name = !k.name.is_empty()
                        && k.name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-');
                    if !valid_name {
                        cx.err(
                            k.pos,
                            "headers",
                            format!("invalid header name {:?}", k.name),
                        );
                        ok = false;
                        continue;
                    }
                    match text(cx, v, &format!("headers.{}", k.name)) {
                        Some(t) => {
                            out.insert(k.name.clone(), t);
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(Headers::Map(out))
            }
            v => {
                cx.err(
                    n.pos,
                    "headers",
                    format!(
                        "must be `default`, `none` or a map of header: value, found {}",
                        v.kind()
                    ),
                );
                None
            }
        },
    };
    Some(ProxySpec {
        admin: admin?,
        network,
        email,
        acme_ca,
        acme_ca_root,
        headers: headers?,
        origin: d.origin.clone(),
    })
}
