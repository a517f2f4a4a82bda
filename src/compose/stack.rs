//! One Compose file's top level: networks, volumes, secrets and configs declarations, the
//! services (after `extends`), profiles and the checks that span services.

use std::collections::BTreeMap;

use super::decls::{Decls, FileObj, SvcMeta};
use super::keys;
use super::read::*;
use super::service::service;
use super::yaml::{self, Node, Value};
use crate::model::*;

pub(crate) fn convert_stack(cx: &mut Cx, root: &Node, st: &StackCtx) -> StackSpec {
    let mut spec = StackSpec {
        name: st.name.clone(),
        file: cx.file.clone(),
        dir: st.dir.clone(),
        ..Default::default()
    };
    let Some(top) = as_map(cx, root, "") else {
        return spec;
    };
    check_keys(cx, top, "", keys::TOP, keys::TOP_UNSUPPORTED);

    let mut decls = Decls {
        networks: BTreeMap::new(),
        volumes: BTreeMap::new(),
        secrets: BTreeMap::new(),
        configs: BTreeMap::new(),
    };
    if let Some(n) = get(top, "networks")
        && let Some(m) = as_map(cx, n, "networks")
    {
        for (k, v) in m {
            if k.name.starts_with("x-") {
                continue;
            }
            let net = network(cx, st, &k.name, v, &child("networks", &k.name));
            decls.networks.insert(k.name.clone(), net);
        }
    }
    if let Some(n) = get(top, "volumes")
        && let Some(m) = as_map(cx, n, "volumes")
    {
        for (k, v) in m {
            if k.name.starts_with("x-") {
                continue;
            }
            let vol = volume(cx, st, &k.name, v, &child("volumes", &k.name));
            decls.volumes.insert(k.name.clone(), vol);
        }
    }
    for kind in ["secrets", "configs"] {
        if let Some(n) = get(top, kind)
            && let Some(m) = as_map(cx, n, kind)
        {
            for (k, v) in m {
                if k.name.starts_with("x-") {
                    continue;
                }
                let obj = file_obj(cx, st, kind, v, &child(kind, &k.name));
                if kind == "secrets" {
                    decls.secrets.insert(k.name.clone(), obj);
                } else {
                    decls.configs.insert(k.name.clone(), obj);
                }
            }
        }
    }

    let mut services: BTreeMap<String, (ServiceSpec, SvcMeta)> = BTreeMap::new();
    match get(top, "services") {
        None => {}
        Some(n) => {
            if let Some(m) = as_map(cx, n, "services") {
                let mut resolver = super::extends::Resolver::new(st, &cx.file.clone(), m);
                for (k, v) in m {
                    if k.name.starts_with("x-") {
                        continue;
                    }
                    // `extends`: the merged service; skipped when that failed (reported).
                    let resolved;
                    let v = match &v.value {
                        Value::Map(sm) if sm.iter().any(|(k, _)| k.name == "extends") => {
                            match resolver.resolve_main(cx, &k.name) {
                                Some(r) => {
                                    resolved = r;
                                    &resolved
                                }
                                None => continue,
                            }
                        }
                        _ => v,
                    };
                    // `!reset` entries that no merge consumed: the key is absent.
                    let mut cleaned = v.clone();
                    yaml::drop_resets(&mut cleaned);
                    let v = &cleaned;
                    let path = child("services", &k.name);
                    if !valid_service_name(&k.name) {
                        cx.err(
                            k.pos,
                            "services",
                            format!("invalid service name {:?}: use letters, digits, `.`, `_` and `-`, starting with a letter or digit", k.name),
                        );
                        continue;
                    }
                    if let Some(out) = service(cx, st, &decls, &k.name, k.pos, v, &path) {
                        services.insert(k.name.clone(), out);
                    }
                }
            }
        }
    }

    // Profiles.
    let mut active = BTreeMap::new();
    for (name, (svc, meta)) in services {
        if !meta.profiles.is_empty() && !meta.profiles.iter().any(|p| st.profiles.contains(p)) {
            spec.skipped
                .insert(name, format!("profile {} not active", meta.profiles[0]));
        } else {
            active.insert(name, (svc, meta));
        }
    }

    // Cross-service checks.
    for (name, (_, meta)) in &active {
        let path = child("services", name);
        for (dep, pos, required) in &meta.depends {
            if active.contains_key(dep) || !required {
                continue;
            }
            if spec.skipped.contains_key(dep) {
                cx.err(
                    *pos,
                    &child(&path, "depends_on"),
                    format!("service `{dep}` is not deployed ({}); set `required: false` or activate its profile", spec.skipped[dep]),
                );
            } else {
                cx.err(
                    *pos,
                    &child(&path, "depends_on"),
                    format!("depends on undefined service `{dep}`"),
                );
            }
        }
        for (link, pos) in &meta.links {
            let target = link.split(':').next().unwrap_or(link);
            if !active.contains_key(target) {
                cx.err(
                    *pos,
                    &child(&path, "links"),
                    format!("links to undefined service `{target}`"),
                );
            }
        }
        for (other, pos) in &meta.volumes_from {
            if !active.contains_key(other) {
                let why = match spec.skipped.get(other) {
                    Some(reason) => format!("service `{other}` is not deployed ({reason})"),
                    None => format!(
                        "undefined service `{other}` (use `container:<name>` for a container outside the stack)"
                    ),
                };
                cx.err(*pos, &child(&path, "volumes_from"), why);
            }
        }
        if let Some((other, pos)) = &meta.network_mode_service
            && !active.contains_key(other)
        {
            cx.err(
                *pos,
                &child(&path, "network_mode"),
                format!("undefined service `{other}`"),
            );
        }
    }
    if let Some(cycle) = find_cycle(&active) {
        let first = &cycle[0];
        let pos = active[first].1.pos;
        cx.err(
            pos,
            &child("services", first),
            format!("dependency cycle: {}", cycle.join(" -> ")),
        );
    }

    let mut uses_default = false;
    for (name, (svc, mut meta)) in active {
        uses_default |= meta.uses_default_network;
        spec.routes.append(&mut meta.routes);
        spec.services.insert(name, svc);
    }
    spec.networks = decls.networks;
    if uses_default && !spec.networks.contains_key("default") {
        spec.networks.insert(
            "default".into(),
            NetworkSpec {
                name: format!("{}_default", st.name),
                ..Default::default()
            },
        );
    }
    spec.volumes = decls.volumes;
    spec
}

pub(super) fn valid_service_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

pub(super) fn find_cycle(
    services: &BTreeMap<String, (ServiceSpec, SvcMeta)>,
) -> Option<Vec<String>> {
    // 0 = unvisited, 1 = on stack, 2 = done.
    fn visit(
        n: &str,
        services: &BTreeMap<String, (ServiceSpec, SvcMeta)>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n).copied().unwrap_or(0) {
            1 => {
                let i = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut c = stack[i..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            2 => return None,
            _ => {}
        }
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        if let Some((_, meta)) = services.get(n) {
            for (dep, _, _) in &meta.depends {
                if services.contains_key(dep)
                    && let Some(c) = visit(dep, services, state, stack)
                {
                    return Some(c);
                }
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for name in services.keys() {
        let mut stack = Vec::new();
        if let Some(c) = visit(name, services, &mut state, &mut stack) {
            return Some(c);
        }
    }
    None
}

pub(super) fn engine_name(
    cx: &mut Cx,
    st: &StackCtx,
    key: &str,
    m: &Map,
    path: &str,
) -> (String, bool) {
    // The deprecated `external: {name: x}` still works in Compose (with a warning): it means
    // `external: true` + `name: x`, and conflicts with a `name:` of its own.
    let mut external_name = None;
    let external = match get(m, "external") {
        None => false,
        Some(n) => match &n.value {
            Value::Map(em) => {
                let ep = child(path, "external");
                check_keys(cx, em, &ep, &["name"], &[]);
                external_name = opt_string(cx, em, "name", &ep);
                if get(m, "name").is_some() && external_name.is_some() {
                    cx.err(
                        n.pos,
                        path,
                        "name and external.name conflict; only use name",
                    );
                } else {
                    cx.note(
                        n.pos,
                        &ep,
                        "`external.name` is deprecated: set `name:` and `external: true`",
                    );
                }
                true
            }
            _ => boolean(cx, n, &child(path, "external")).unwrap_or(false),
        },
    };
    let name = match opt_string(cx, m, "name", path).or(external_name) {
        Some(n) => n,
        None if external => key.to_string(),
        None => format!("{}_{key}", st.name),
    };
    (name, external)
}

pub(super) fn network(cx: &mut Cx, st: &StackCtx, key: &str, n: &Node, path: &str) -> NetworkSpec {
    let Some(m) = as_map(cx, n, path) else {
        return NetworkSpec::default();
    };
    check_keys(cx, m, path, keys::NETWORK, keys::NETWORK_UNSUPPORTED);
    let (name, external) = engine_name(cx, st, key, m, path);
    let ipam = get(m, "ipam").and_then(|n| {
        let p = child(path, "ipam");
        let im = as_map(cx, n, &p)?;
        check_keys(cx, im, &p, &["driver", "config", "options"], &[]);
        let mut ipam = Ipam {
            driver: opt_string(cx, im, "driver", &p),
            options: get(im, "options")
                .map(|n| string_map(cx, n, &child(&p, "options")))
                .unwrap_or_default(),
            config: Vec::new(),
        };
        if let Some(c) = get(im, "config") {
            let cp = child(&p, "config");
            match &c.value {
                Value::Seq(items) => {
                    for (i, it) in items.iter().enumerate() {
                        let ip = idx(&cp, i);
                        let Some(pm) = as_map(cx, it, &ip) else {
                            continue;
                        };
                        check_keys(
                            cx,
                            pm,
                            &ip,
                            &["subnet", "ip_range", "gateway", "aux_addresses"],
                            &[],
                        );
                        ipam.config.push(IpamPool {
                            subnet: opt_string(cx, pm, "subnet", &ip),
                            ip_range: opt_string(cx, pm, "ip_range", &ip),
                            gateway: opt_string(cx, pm, "gateway", &ip),
                            aux_addresses: get(pm, "aux_addresses")
                                .map(|n| string_map(cx, n, &child(&ip, "aux_addresses")))
                                .unwrap_or_default(),
                        });
                    }
                }
                v => cx.err(c.pos, &cp, format!("must be a list, found {}", v.kind())),
            }
        }
        Some(ipam)
    });
    NetworkSpec {
        name,
        external,
        driver: opt_string(cx, m, "driver", path),
        driver_opts: get(m, "driver_opts")
            .map(|n| string_map(cx, n, &child(path, "driver_opts")))
            .unwrap_or_default(),
        internal: opt_bool(cx, m, "internal", path).unwrap_or(false),
        attachable: opt_bool(cx, m, "attachable", path).unwrap_or(false),
        enable_ipv6: opt_bool(cx, m, "enable_ipv6", path).unwrap_or(false),
        ipam,
        labels: get(m, "labels")
            .map(|n| labels(cx, n, &child(path, "labels")))
            .unwrap_or_default(),
    }
}

pub(super) fn volume(cx: &mut Cx, st: &StackCtx, key: &str, n: &Node, path: &str) -> VolumeSpec {
    let Some(m) = as_map(cx, n, path) else {
        return VolumeSpec::default();
    };
    check_keys(cx, m, path, keys::VOLUME, &[]);
    let (name, external) = engine_name(cx, st, key, m, path);
    if external {
        // Compose: an external volume exists already; berth creates nothing to configure.
        for k in ["driver", "driver_opts", "labels"] {
            if let Some(kp) = key_pos(m, k) {
                cx.err(
                    kp,
                    path,
                    format!("conflicting parameters \"external\" and \"{k}\" specified"),
                );
            }
        }
    }
    VolumeSpec {
        name,
        external,
        driver: opt_string(cx, m, "driver", path),
        driver_opts: get(m, "driver_opts")
            .map(|n| string_map(cx, n, &child(path, "driver_opts")))
            .unwrap_or_default(),
        labels: get(m, "labels")
            .map(|n| labels(cx, n, &child(path, "labels")))
            .unwrap_or_default(),
    }
}

pub(super) fn file_obj(
    cx: &mut Cx,
    st: &StackCtx,
    kind: &str,
    n: &Node,
    path: &str,
) -> Option<FileObj> {
    let m = as_map(cx, n, path)?;
    let (supported, unsupported) = if kind == "secrets" {
        (keys::SECRET, keys::SECRET_UNSUPPORTED)
    } else {
        (keys::CONFIG, keys::CONFIG_UNSUPPORTED)
    };
    check_keys(cx, m, path, supported, unsupported);
    if let Some(l) = get(m, "labels") {
        labels(cx, l, &child(path, "labels"));
        cx.note(
            key_pos(m, "labels").unwrap_or(l.pos),
            &child(path, "labels"),
            format!(
                "accepted but not applied: they label the Swarm {} object, which a single \
                 Docker Engine does not have (as with Compose)",
                &kind[..kind.len() - 1]
            ),
        );
    }
    let (_, external) = engine_name(cx, st, "", m, path);
    if external {
        return Some(FileObj {
            file: String::new(),
            digest: String::new(),
            content: None,
            external: true,
        });
    }
    let sources: Vec<&str> = ["file", "environment", "content"]
        .into_iter()
        .filter(|k| get(m, k).is_some())
        .collect();
    if sources.len() > 1 {
        cx.err(
            n.pos,
            path,
            format!(
                "set only one of `file`, `environment`, `content` (found {})",
                sources.join(", ")
            ),
        );
        return None;
    }
    if let Some(f) = get(m, "file") {
        let p = child(path, "file");
        let rel = string(cx, f, &p)?;
        let abs = clean_path(&st.dir.join(&rel));
        return match std::fs::read(&abs) {
            Ok(bytes) => Some(FileObj {
                file: abs.to_string_lossy().into_owned(),
                digest: sha256_hex(&bytes),
                content: None,
                external: false,
            }),
            Err(e) => {
                cx.err(
                    f.pos,
                    &p,
                    format!("cannot read {rel:?} ({}): {e}", abs.display()),
                );
                None
            }
        };
    }
    if let Some(e) = get(m, "environment") {
        let p = child(path, "environment");
        let var = string(cx, e, &p)?;
        return match st.vars.get(&var) {
            Some(v) => Some(FileObj {
                file: String::new(),
                digest: sha256_hex(v.as_bytes()),
                content: Some(Secret::new(v.clone())),
                external: false,
            }),
            None => {
                cx.err(e.pos, &p, format!("environment variable {var} is not set"));
                None
            }
        };
    }
    if let Some(c) = get(m, "content") {
        let v = string(cx, c, &child(path, "content"))?;
        return Some(FileObj {
            file: String::new(),
            digest: sha256_hex(v.as_bytes()),
            content: Some(Secret::new(v)),
            external: false,
        });
    }
    cx.err(
        n.pos,
        path,
        format!(
            "one of `file`, `environment`{} is required",
            if kind == "configs" { ", `content`" } else { "" }
        ),
    );
    None
}
