//! `ports` (short and long syntax, ranges) and `expose`.

use super::keys;
use super::read::*;
use super::yaml::{Node, Value};
use crate::model::*;

/// One port: `"8080:80"`, `80`, or the long form. Ranges expand to several entries.
pub(super) fn port(cx: &mut Cx, n: &Node, path: &str) -> Vec<PortSpec> {
    match &n.value {
        Value::Int(_) | Value::Str(_) | Value::Float(_) => {
            let s = n.scalar_text().unwrap_or_default();
            match parse_port_short(&s) {
                Ok(v) => v,
                Err(e) => {
                    cx.err(n.pos, path, format!("invalid port {s:?}: {e}"));
                    Vec::new()
                }
            }
        }
        Value::Map(m) => {
            check_keys(cx, m, path, keys::PORT, keys::PORT_UNSUPPORTED);
            let Some(t) = get(m, "target") else {
                cx.err(n.pos, path, "`target` is required");
                return Vec::new();
            };
            let Some(target) = string(cx, t, &child(path, "target")) else {
                return Vec::new();
            };
            let protocol = opt_string(cx, m, "protocol", path).unwrap_or_else(|| "tcp".into());
            if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
                cx.err(
                    get(m, "protocol").unwrap().pos,
                    &child(path, "protocol"),
                    format!("invalid protocol {protocol:?} (use tcp, udp or sctp)"),
                );
                return Vec::new();
            }
            if let Some(mode) = get(m, "mode")
                && let Some(v) = string(cx, mode, &child(path, "mode"))
                && !matches!(v.as_str(), "host" | "ingress")
            {
                cx.err(
                    mode.pos,
                    &child(path, "mode"),
                    format!("invalid mode {v:?} (use host or ingress)"),
                );
            }
            let _ = opt_string(cx, m, "name", path);
            let host_ip = opt_string(cx, m, "host_ip", path);
            let published = opt_string(cx, m, "published", path);
            let targets = match parse_range(&target) {
                Ok(r) => r,
                Err(e) => {
                    cx.err(
                        t.pos,
                        &child(path, "target"),
                        format!("invalid port {target:?}: {e}"),
                    );
                    return Vec::new();
                }
            };
            let published = match published
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(parse_range)
                .transpose()
            {
                Ok(p) => p,
                Err(e) => {
                    let pn = get(m, "published").unwrap();
                    cx.err(
                        pn.pos,
                        &child(path, "published"),
                        format!("invalid port: {e}"),
                    );
                    return Vec::new();
                }
            };
            match pair_ranges(targets, published, host_ip, &protocol) {
                Ok(v) => v,
                Err(e) => {
                    cx.err(n.pos, path, e);
                    Vec::new()
                }
            }
        }
        v => {
            cx.err(
                n.pos,
                path,
                format!(
                    "must be a port string, number or mapping, found {}",
                    v.kind()
                ),
            );
            Vec::new()
        }
    }
}

pub(super) fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let one = |p: &str| -> Result<u16, String> {
        match p.trim().parse::<u16>() {
            Ok(0) => Err(format!("port {p:?} is out of range 1-65535")),
            Ok(v) => Ok(v),
            Err(_) if p.trim().parse::<u64>().is_ok() => {
                Err(format!("port {p:?} is out of range 1-65535"))
            }
            Err(_) => Err(format!("{p:?} is not a port number")),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                return Err(format!("range {s:?} ends before it starts"));
            }
            Ok((a, b))
        }
        None => {
            let a = one(s)?;
            Ok((a, a))
        }
    }
}

pub(super) fn pair_ranges(
    target: (u16, u16),
    published: Option<(u16, u16)>,
    host_ip: Option<String>,
    protocol: &str,
) -> Result<Vec<PortSpec>, String> {
    let n = target.1 - target.0;
    if let Some(p) = published
        && p.1 - p.0 != n
    {
        return Err(format!(
            "host port range {}-{} and container port range {}-{} differ in size",
            p.0, p.1, target.0, target.1
        ));
    }
    Ok((0..=n)
        .map(|i| PortSpec {
            target: target.0 + i,
            published: published.map(|p| p.0 + i),
            host_ip: host_ip.clone(),
            protocol: protocol.to_string(),
        })
        .collect())
}

/// `[[ip:]published:]target[/protocol]`, with `[v6]` addresses and `a-b` ranges.
pub(crate) fn parse_port_short(s: &str) -> Result<Vec<PortSpec>, String> {
    let (body, protocol) = match s.rsplit_once('/') {
        Some((b, p)) => (b, p),
        None => (s, "tcp"),
    };
    if !matches!(protocol, "tcp" | "udp" | "sctp") {
        return Err(format!(
            "unknown protocol {protocol:?} (use tcp, udp or sctp)"
        ));
    }
    let (host_ip, published, target) = if let Some(rest) = body.strip_prefix('[') {
        let (ip, rest) = rest
            .split_once(']')
            .ok_or("missing `]` after the IPv6 address")?;
        let rest = rest
            .strip_prefix(':')
            .ok_or("expected `:` after the IPv6 address")?;
        let (p, t) = rest
            .split_once(':')
            .ok_or("expected [ip]:published:target")?;
        (Some(ip.to_string()), Some(p), t)
    } else {
        let parts: Vec<&str> = body.rsplitn(3, ':').collect();
        match parts.as_slice() {
            [t] => (None, None, *t),
            [t, p] => (None, Some(*p), *t),
            [t, p, ip] => (Some(ip.to_string()), Some(*p), *t),
            _ => unreachable!(),
        }
    };
    if host_ip.as_deref() == Some("") {
        return Err("empty host IP".into());
    }
    if let Some(ip) = &host_ip
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(format!("{ip:?} is not an IP address"));
    }
    let target = parse_range(target)?;
    let published = published
        .filter(|p| !p.is_empty())
        .map(parse_range)
        .transpose()?;
    pair_ranges(target, published, host_ip, protocol)
}

pub(super) fn expose(s: &str) -> Result<Vec<String>, String> {
    let (body, proto) = s.rsplit_once('/').unwrap_or((s, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(format!("invalid port {s:?}: unknown protocol {proto:?}"));
    }
    let (a, b) = parse_range(body).map_err(|e| format!("invalid port {s:?}: {e}"))?;
    Ok((a..=b).map(|p| format!("{p}/{proto}")).collect())
}
