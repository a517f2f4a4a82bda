//! One service: every service key folded into [`ServiceSpec`].

use super::config_files;
use super::decls::{Decls, SvcMeta};
use super::env::{check_develop, env_files, label_files};
use super::keys;
use super::mounts::{service_mounts, volumes_from};
use super::networks::{extra_hosts, service_networks};
use super::ports::{expose, port};
use super::read::*;
use super::resources::{deploy, gpu_requests, service_limits};
use super::yaml::{Node, Pos, Value};
use crate::model::*;

#[allow(clippy::too_many_arguments)]
pub(super) fn service(
    cx: &mut Cx,
    st: &StackCtx,
    decls: &Decls,
    name: &str,
    name_pos: Pos,
    n: &Node,
    path: &str,
) -> Option<(ServiceSpec, SvcMeta)> {
    let m = as_map(cx, n, path)?;
    check_keys_in(
        cx,
        m,
        path,
        "service",
        keys::SERVICE,
        keys::SERVICE_UNSUPPORTED,
    );
    let mut s = ServiceSpec::default();
    let mut meta = SvcMeta {
        pos: name_pos,
        profiles: Vec::new(),
        depends: Vec::new(),
        network_mode_service: None,
        links: Vec::new(),
        volumes_from: Vec::new(),
        uses_default_network: false,
        routes: Vec::new(),
    };
    let p = |k: &str| child(path, k);

    image_and_pull_policy(cx, st, m, name, name_pos, path, &mut s);
    s.command = get(m, "command").and_then(|n| command(cx, n, &p("command")));
    s.entrypoint = get(m, "entrypoint").and_then(|n| command(cx, n, &p("entrypoint")));

    // Environment: env_file first, `environment` overrides.
    if let Some(n) = get(m, "env_file") {
        env_files(cx, st, n, &p("env_file"), &mut s.environment);
    }
    if let Some(n) = get(m, "environment") {
        for (k, v, _) in list_or_dict(cx, n, &p("environment"), '=') {
            // `- NAME` without a value takes it from the environment; when that is not set
            // either, the variable is left out (an env_file value stays, as with `docker run`).
            if let Some(v) = v.or_else(|| st.vars.get(&k).cloned()) {
                s.environment.insert(k, Secret::new(v));
            }
        }
    }

    if let Some(n) = get(m, "ports") {
        let pp = p("ports");
        match &n.value {
            Value::Seq(items) => {
                for (i, it) in items.iter().enumerate() {
                    for ps in port(cx, it, &idx(&pp, i)) {
                        if it.pos.file == 0 {
                            s.ports_at
                                .entry(ps.to_string())
                                .or_insert((it.pos.line, it.pos.col));
                        }
                        s.ports.push(ps);
                    }
                }
            }
            v => cx.err(n.pos, &pp, format!("must be a list, found {}", v.kind())),
        }
        s.ports.sort();
        s.ports.dedup();
    }

    service_mounts(cx, st, decls, m, path, name_pos, &mut s);
    config_files::collect(
        cx,
        st,
        &mut s,
        key_pos(m, "volumes").unwrap_or(name_pos),
        path,
    );
    if let Some(n) = get(m, "x-berth") {
        let x = config_files::x_berth(cx, n, &p("x-berth"), &st.name, name);
        s.on_config_change = x.on_config_change;
        s.expose_publicly = x.expose_publicly;
        meta.routes = x.routes;
    }
    if let Some(n) = get(m, "device_cgroup_rules") {
        s.device_cgroup_rules = str_list(cx, n, &p("device_cgroup_rules"))
            .into_iter()
            .map(|(r, _)| r)
            .collect();
    }
    if let Some(n) = get(m, "attach") {
        // `docker compose up` shows the logs of attached services; nothing of the container.
        opt_bool(cx, m, "attach", path);
        cx.note(
            key_pos(m, "attach").unwrap_or(n.pos),
            &p("attach"),
            "accepted but not applied: it chooses whose logs `docker compose up` shows; berth \
             does not attach to containers",
        );
    }
    if let Some(n) = get(m, "develop") {
        check_develop(cx, n, &p("develop"));
        // A development-time feature (`docker compose watch`): accepted, never applied.
        cx.note(
            key_pos(m, "develop").unwrap_or(n.pos),
            &p("develop"),
            "accepted but not applied: `develop` drives `docker compose watch` on a \
             developer's machine; berth deploys what is committed",
        );
    }

    service_networks(cx, st, decls, m, path, name_pos, &mut s, &mut meta);

    if let Some(n) = get(m, "label_file") {
        s.labels = label_files(cx, st, n, &p("label_file"));
    }
    if let Some(n) = get(m, "labels") {
        s.labels.extend(labels(cx, n, &p("labels")));
    }
    if let Some(n) = get(m, "restart")
        && let Some(v) = string(cx, n, &p("restart"))
    {
        if restart_ok(&v) {
            s.restart = Some(v);
        } else {
            cx.err(n.pos, &p("restart"), format!("invalid restart policy {v:?} (use no, always, on-failure[:N] or unless-stopped)"));
        }
    }
    if let Some(n) = get(m, "healthcheck") {
        s.healthcheck = healthcheck(cx, n, &p("healthcheck"));
    }
    if let Some(n) = get(m, "depends_on") {
        depends_on(cx, n, &p("depends_on"), &mut s, &mut meta);
    }
    s.user = opt_string(cx, m, "user", path);
    s.working_dir = opt_string(cx, m, "working_dir", path);
    s.hostname = opt_string(cx, m, "hostname", path);
    s.domainname = opt_string(cx, m, "domainname", path);
    s.mac_address = opt_string(cx, m, "mac_address", path);
    for (key, out) in [
        ("cap_add", &mut s.cap_add),
        ("cap_drop", &mut s.cap_drop),
        ("security_opt", &mut s.security_opt),
        ("group_add", &mut s.group_add),
        ("links", &mut s.links),
        ("dns_opt", &mut s.dns_opt),
    ] {
        if let Some(n) = get(m, key) {
            *out = str_list(cx, n, &p(key))
                .into_iter()
                .map(|(s, _)| s)
                .collect();
            if key != "dns_opt" {
                out.sort();
                out.dedup();
            }
        }
    }
    for (key, out) in [("dns", &mut s.dns), ("dns_search", &mut s.dns_search)] {
        if let Some(n) = get(m, key) {
            *out = string_or_list(cx, n, &p(key))
                .into_iter()
                .map(|(s, _)| s)
                .collect();
        }
    }
    s.read_only = opt_bool(cx, m, "read_only", path).unwrap_or(false);
    if let Some(n) = get(m, "extra_hosts") {
        s.extra_hosts = extra_hosts(cx, n, &p("extra_hosts"));
    }
    service_limits(cx, m, path, &mut s);
    if let Some(n) = get(m, "logging") {
        let lp = p("logging");
        if let Some(lm) = as_map(cx, n, &lp) {
            check_keys(cx, lm, &lp, &["driver", "options"], &[]);
            s.logging = Some(Logging {
                driver: opt_string(cx, lm, "driver", &lp),
                options: get(lm, "options")
                    .map(|n| string_map(cx, n, &child(&lp, "options")))
                    .unwrap_or_default(),
            });
        }
    }
    s.stop_signal = opt_string(cx, m, "stop_signal", path);
    if let Some(n) = get(m, "stop_grace_period") {
        s.stop_grace_period = duration(cx, n, &p("stop_grace_period"))
            .map(|ns| ns.saturating_add(999_999_999) / 1_000_000_000);
    }
    s.init = opt_bool(cx, m, "init", path);
    s.privileged = opt_bool(cx, m, "privileged", path).unwrap_or(false);
    if let Some(n) = get(m, "sysctls") {
        s.sysctls = string_map(cx, n, &p("sysctls"));
    }
    // Device requests: `deploy.resources.reservations.devices` (parsed with `deploy` below)
    // come first, then `gpus`, as Compose orders them.
    let mut gpus = Vec::new();
    if let Some(n) = get(m, "gpus") {
        gpus = gpu_requests(cx, n, &p("gpus"));
    }
    s.container_name = opt_string(cx, m, "container_name", path);
    if let Some(n) = get(m, "expose") {
        let ep = p("expose");
        for (e, pos) in str_list(cx, n, &ep) {
            match expose(&e) {
                Ok(v) => s.expose.extend(v),
                Err(msg) => cx.err(pos, &ep, msg),
            }
        }
        s.expose.sort();
        s.expose.dedup();
    }
    s.pid = opt_string(cx, m, "pid", path);
    s.ipc = opt_string(cx, m, "ipc", path);
    s.platform = opt_string(cx, m, "platform", path);
    s.runtime = opt_string(cx, m, "runtime", path);
    s.stdin_open = opt_bool(cx, m, "stdin_open", path).unwrap_or(false);
    s.tty = opt_bool(cx, m, "tty", path).unwrap_or(false);
    s.cgroup_parent = opt_string(cx, m, "cgroup_parent", path);
    s.userns_mode = opt_string(cx, m, "userns_mode", path);
    if let Some(n) = get(m, "uts")
        && let Some(v) = string(cx, n, &p("uts"))
    {
        if v == "host" {
            s.uts = Some(v);
        } else {
            cx.err(
                n.pos,
                &p("uts"),
                format!("invalid UTS mode {v:?} (use host)"),
            );
        }
    }
    if let Some(n) = get(m, "cgroup")
        && let Some(v) = string(cx, n, &p("cgroup"))
    {
        if v == "host" || v == "private" {
            s.cgroup = Some(v);
        } else {
            cx.err(
                n.pos,
                &p("cgroup"),
                format!("invalid cgroup mode {v:?} (use host or private)"),
            );
        }
    }
    if let Some(n) = get(m, "external_links") {
        s.external_links = str_list(cx, n, &p("external_links"))
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        s.external_links.sort();
        s.external_links.dedup();
    }
    if let Some(n) = get(m, "annotations") {
        s.annotations = string_map(cx, n, &p("annotations"));
    }
    if let Some(n) = get(m, "volumes_from") {
        let vp = p("volumes_from");
        for (v, pos) in str_list(cx, n, &vp) {
            match volumes_from(&v) {
                Ok((normalised, service)) => {
                    if let Some(svc) = service {
                        if svc == name {
                            cx.err(pos, &vp, "a service cannot take volumes from itself");
                            continue;
                        }
                        meta.volumes_from.push((svc, pos));
                    }
                    if !s.volumes_from.contains(&normalised) {
                        s.volumes_from.push(normalised);
                    }
                }
                Err(e) => cx.err(pos, &vp, e),
            }
        }
    }
    if let Some(n) = get(m, "links") {
        meta.links = str_list(cx, n, &p("links"));
    }
    if let Some(n) = get(m, "profiles") {
        meta.profiles = str_list(cx, n, &p("profiles"))
            .into_iter()
            .map(|(s, _)| s)
            .collect();
    }

    // Replicas: scale / deploy.replicas.
    let scale = get(m, "scale").and_then(|n| int(cx, n, &p("scale")).map(|v| (v, n.pos)));
    let mut replicas = scale;
    if let Some(n) = get(m, "deploy") {
        let dp = p("deploy");
        if let Some(dm) = as_map(cx, n, &dp) {
            let r = deploy(cx, dm, &dp, &mut s);
            if let (Some((a, _)), Some((b, bpos))) = (scale, r) {
                if a != b {
                    cx.err(
                        bpos,
                        &child(&dp, "replicas"),
                        format!("conflicts with `scale: {a}`"),
                    );
                }
            } else if r.is_some() {
                replicas = r;
            }
        }
    }
    s.device_requests.extend(gpus);
    s.replicas = 1;
    if let Some((r, pos)) = replicas {
        if r < 0 || r > u32::MAX as i64 {
            cx.err(pos, path, format!("invalid number of replicas {r}"));
        } else {
            s.replicas = r as u32;
        }
        if s.container_name.is_some() && r > 1 {
            cx.err(
                pos,
                path,
                format!("`container_name` requires a single replica, but {r} are requested"),
            );
        }
    }
    Some((s, meta))
}

/// `image`, `build` (noted: berth does not build) and `pull_policy`.
fn image_and_pull_policy(
    cx: &mut Cx,
    st: &StackCtx,
    m: &Map,
    name: &str,
    name_pos: Pos,
    path: &str,
    s: &mut ServiceSpec,
) {
    s.build = get(m, "build").is_some();
    if let Some(b) = get(m, "build")
        && !matches!(b.value, Value::Map(_) | Value::Str(_))
    {
        cx.err(
            b.pos,
            &child(path, "build"),
            format!("must be a string or a mapping, found {}", b.value.kind()),
        );
    }
    match opt_string(cx, m, "image", path) {
        Some(i) if i.trim().is_empty() => cx.err(
            get(m, "image").unwrap().pos,
            &child(path, "image"),
            "must not be empty",
        ),
        Some(i) => s.image = i,
        None if s.build => s.image = format!("{}-{name}", st.name),
        None => cx.err(name_pos, path, "service has neither `image` nor `build`"),
    }
    if let Some(n) = get(m, "pull_policy")
        && let Some(v) = string(cx, n, &child(path, "pull_policy"))
    {
        s.pull_policy = match v.as_str() {
            "always" => PullPolicy::Always,
            "missing" | "if_not_present" => PullPolicy::Missing,
            "never" => PullPolicy::Never,
            "build" => PullPolicy::Build,
            "daily" | "weekly" => {
                cx.err(
                    n.pos,
                    &child(path, "pull_policy"),
                    format!(
                        "`{v}` is not supported by berth (use always, missing, never or build)"
                    ),
                );
                PullPolicy::Missing
            }
            v if v.starts_with("every_") => {
                cx.err(
                    n.pos,
                    &child(path, "pull_policy"),
                    format!(
                        "`{v}` is not supported by berth (use always, missing, never or build)"
                    ),
                );
                PullPolicy::Missing
            }
            v => {
                cx.err(
                    n.pos,
                    &child(path, "pull_policy"),
                    format!("invalid pull policy {v:?} (use always, missing, never or build)"),
                );
                PullPolicy::Missing
            }
        };
    }
}

pub(super) fn restart_ok(v: &str) -> bool {
    match v {
        "no" | "always" | "unless-stopped" | "on-failure" => true,
        _ => v
            .strip_prefix("on-failure:")
            .is_some_and(|n| n.parse::<u32>().is_ok()),
    }
}

pub(super) fn healthcheck(cx: &mut Cx, n: &Node, path: &str) -> Option<Healthcheck> {
    let m = as_map(cx, n, path)?;
    check_keys(cx, m, path, keys::HEALTHCHECK, &[]);
    if opt_bool(cx, m, "disable", path) == Some(true) {
        return Some(Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        });
    }
    let mut h = Healthcheck::default();
    if let Some(t) = get(m, "test") {
        let tp = child(path, "test");
        match &t.value {
            Value::Seq(_) => {
                h.test = str_list(cx, t, &tp).into_iter().map(|(s, _)| s).collect();
                match h.test.first().map(String::as_str) {
                    Some("CMD" | "CMD-SHELL" | "NONE") => {}
                    _ => cx.err(
                        t.pos,
                        &tp,
                        "a list must start with \"CMD\", \"CMD-SHELL\" or \"NONE\"",
                    ),
                }
            }
            _ => {
                if let Some(s) = string(cx, t, &tp) {
                    h.test = vec!["CMD-SHELL".into(), s];
                }
            }
        }
    }
    for (key, out) in [
        ("interval", &mut h.interval),
        ("timeout", &mut h.timeout),
        ("start_period", &mut h.start_period),
        ("start_interval", &mut h.start_interval),
    ] {
        if let Some(v) = get(m, key) {
            *out = duration(cx, v, &child(path, key));
        }
    }
    h.retries = opt_int(cx, m, "retries", path);
    Some(h)
}

pub(super) fn depends_on(
    cx: &mut Cx,
    n: &Node,
    path: &str,
    s: &mut ServiceSpec,
    meta: &mut SvcMeta,
) {
    match &n.value {
        Value::Map(entries) => {
            for (k, v) in entries {
                if k.name.starts_with("x-") {
                    continue;
                }
                let dp = child(path, &k.name);
                let Some(m) = as_map(cx, v, &dp) else {
                    continue;
                };
                check_keys(cx, m, &dp, &["condition", "required", "restart"], &[]);
                let condition = match get(m, "condition")
                    .and_then(|c| string(cx, c, &child(&dp, "condition")).map(|s| (s, c.pos)))
                {
                    None => DependsCondition::ServiceStarted,
                    Some((c, pos)) => match c.as_str() {
                        "service_started" => DependsCondition::ServiceStarted,
                        "service_healthy" => DependsCondition::ServiceHealthy,
                        "service_completed_successfully" => {
                            DependsCondition::ServiceCompletedSuccessfully
                        }
                        other => {
                            cx.err(pos, &child(&dp, "condition"), format!("invalid condition {other:?} (use service_started, service_healthy or service_completed_successfully)"));
                            DependsCondition::ServiceStarted
                        }
                    },
                };
                let required = opt_bool(cx, m, "required", &dp).unwrap_or(true);
                let restart = opt_bool(cx, m, "restart", &dp).unwrap_or(false);
                meta.depends.push((k.name.clone(), k.pos, required));
                s.depends_on.insert(
                    k.name.clone(),
                    DependsOn {
                        condition,
                        required,
                        restart,
                    },
                );
            }
        }
        _ => {
            for (d, pos) in str_list(cx, n, path) {
                meta.depends.push((d.clone(), pos, true));
                s.depends_on.insert(
                    d,
                    DependsOn {
                        condition: DependsCondition::ServiceStarted,
                        required: true,
                        restart: false,
                    },
                );
            }
        }
    }
}
