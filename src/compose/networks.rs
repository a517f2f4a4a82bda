//! A service's network attachments and `extra_hosts`.

use super::decls::{Decls, SvcMeta};
use super::keys;
use super::read::*;
use super::yaml::{Node, Pos, Value};
use crate::model::*;

pub(super) fn attachment(cx: &mut Cx, n: &Node, path: &str) -> NetworkAttachment {
    let Some(m) = as_map(cx, n, path) else {
        return NetworkAttachment::default();
    };
    check_keys(cx, m, path, keys::ATTACHMENT, keys::ATTACHMENT_UNSUPPORTED);
    let mut aliases: Vec<String> = get(m, "aliases")
        .map(|n| {
            str_list(cx, n, &child(path, "aliases"))
                .into_iter()
                .map(|(s, _)| s)
                .collect()
        })
        .unwrap_or_default();
    aliases.sort();
    aliases.dedup();
    NetworkAttachment {
        aliases,
        ipv4_address: opt_string(cx, m, "ipv4_address", path),
        ipv6_address: opt_string(cx, m, "ipv6_address", path),
        mac_address: opt_string(cx, m, "mac_address", path),
        priority: opt_int(cx, m, "priority", path),
        link_local_ips: get(m, "link_local_ips")
            .map(|n| {
                str_list(cx, n, &child(path, "link_local_ips"))
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect()
            })
            .unwrap_or_default(),
        driver_opts: get(m, "driver_opts")
            .map(|n| string_map(cx, n, &child(path, "driver_opts")))
            .unwrap_or_default(),
    }
}

pub(super) fn extra_hosts(cx: &mut Cx, n: &Node, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    match &n.value {
        Value::Map(m) => {
            for (k, v) in m {
                let ips = match &v.value {
                    Value::Seq(_) => str_list(cx, v, &child(path, &k.name))
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect(),
                    _ => string(cx, v, &child(path, &k.name))
                        .into_iter()
                        .collect::<Vec<_>>(),
                };
                for ip in ips {
                    out.push(format!("{}:{ip}", k.name));
                }
            }
        }
        _ => {
            for (e, pos) in str_list(cx, n, path) {
                let split = e.split_once('=').or_else(|| e.split_once(':'));
                match split {
                    Some((h, ip)) if !h.is_empty() && !ip.is_empty() => {
                        out.push(format!("{h}:{ip}"))
                    }
                    _ => cx.err(
                        pos,
                        path,
                        format!("invalid extra host {e:?} (use host:ip or host=ip)"),
                    ),
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `network_mode`, or the networks a service joins (`default` when none is given).
#[allow(clippy::too_many_arguments)]
pub(super) fn service_networks(
    cx: &mut Cx,
    st: &StackCtx,
    decls: &Decls,
    m: &Map,
    path: &str,
    name_pos: Pos,
    s: &mut ServiceSpec,
    meta: &mut SvcMeta,
) {
    if let Some(n) = get(m, "network_mode") {
        let np = child(path, "network_mode");
        if let Some(v) = string(cx, n, &np) {
            if let Some(other) = v.strip_prefix("service:") {
                meta.network_mode_service = Some((other.to_string(), n.pos));
            } else if !(matches!(v.as_str(), "host" | "none" | "bridge")
                || v.starts_with("container:"))
            {
                cx.err(n.pos, &np, format!("invalid network mode {v:?} (use host, none, bridge, service:<name> or container:<name>)"));
            }
            if v != "bridge" {
                if let Some(ports) = get(m, "ports") {
                    // The Engine would drop them (host) or refuse them (none, container:, service:).
                    cx.err(
                        key_pos(m, "ports").unwrap_or(ports.pos),
                        &child(path, "ports"),
                        format!(
                            "published ports have no effect with `network_mode: {v}` (the \
                             container uses that network namespace as it is); remove `ports`"
                        ),
                    );
                }
            }
            s.network_mode = Some(v);
        }
        if let Some(nn) = get(m, "networks") {
            cx.err(
                key_pos(m, "networks").unwrap_or(nn.pos),
                &child(path, "networks"),
                "cannot be used together with `network_mode`",
            );
        }
    } else {
        let mut joined: Vec<(String, NetworkAttachment, Pos)> = Vec::new();
        match get(m, "networks") {
            None => joined.push(("default".into(), NetworkAttachment::default(), name_pos)),
            Some(n) => {
                let np = child(path, "networks");
                match &n.value {
                    Value::Seq(_) => {
                        for (k, pos) in str_list(cx, n, &np) {
                            joined.push((k, NetworkAttachment::default(), pos));
                        }
                    }
                    Value::Map(entries) => {
                        for (k, v) in entries {
                            if k.name.starts_with("x-") {
                                continue;
                            }
                            let ap = child(&np, &k.name);
                            let att = attachment(cx, v, &ap);
                            joined.push((k.name.clone(), att, k.pos));
                        }
                    }
                    v => cx.err(
                        n.pos,
                        &np,
                        format!("must be a list or a mapping, found {}", v.kind()),
                    ),
                }
            }
        }
        for (key, att, pos) in joined {
            let engine = match decls.networks.get(&key) {
                Some(net) => net.name.clone(),
                None if key == "default" => format!("{}_default", st.name),
                None => {
                    cx.err(
                        pos,
                        &child(path, "networks"),
                        format!("network `{key}` is not declared in the top-level `networks`"),
                    );
                    continue;
                }
            };
            if key == "default" {
                meta.uses_default_network = true;
            }
            s.networks.insert(engine, att);
        }
    }
}
