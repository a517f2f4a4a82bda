//! Resource limits: `ulimits`, `devices`, `gpus`, `deploy`, `blkio_config` and the CPU
//! period/quota helpers.

use std::collections::BTreeMap;

use super::keys;
use super::read::*;
use super::yaml::{Node, Pos, Value};
use crate::model::*;

pub(super) fn ulimits(cx: &mut Cx, n: &Node, path: &str) -> BTreeMap<String, Ulimit> {
    let mut out = BTreeMap::new();
    let Some(m) = as_map(cx, n, path) else {
        return out;
    };
    for (k, v) in m {
        let up = child(path, &k.name);
        match &v.value {
            Value::Map(um) => {
                check_keys(cx, um, &up, &["soft", "hard"], &[]);
                let (Some(soft), Some(hard)) =
                    (opt_int(cx, um, "soft", &up), opt_int(cx, um, "hard", &up))
                else {
                    cx.err(v.pos, &up, "both `soft` and `hard` are required");
                    continue;
                };
                if soft > hard && hard >= 0 {
                    cx.err(
                        v.pos,
                        &up,
                        format!("soft limit {soft} is above hard limit {hard}"),
                    );
                }
                out.insert(k.name.clone(), Ulimit { soft, hard });
            }
            _ => {
                if let Some(i) = int(cx, v, &up) {
                    out.insert(k.name.clone(), Ulimit { soft: i, hard: i });
                }
            }
        }
    }
    out
}

pub(super) fn devices(cx: &mut Cx, n: &Node, path: &str) -> Vec<DeviceMapping> {
    let Value::Seq(items) = &n.value else {
        cx.err(
            n.pos,
            path,
            format!("must be a list, found {}", n.value.kind()),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let ip = idx(path, i);
        match &it.value {
            Value::Map(m) => {
                check_keys(cx, m, &ip, &["source", "target", "permissions"], &[]);
                let Some(host) = opt_string(cx, m, "source", &ip) else {
                    cx.err(it.pos, &ip, "`source` is required");
                    continue;
                };
                out.push(DeviceMapping {
                    container: opt_string(cx, m, "target", &ip).unwrap_or_else(|| host.clone()),
                    permissions: opt_string(cx, m, "permissions", &ip)
                        .unwrap_or_else(|| "rwm".into()),
                    host,
                });
            }
            _ => {
                let Some(s) = string(cx, it, &ip) else {
                    continue;
                };
                let parts: Vec<&str> = s.split(':').collect();
                let d = match parts.as_slice() {
                    [h] => (h.to_string(), h.to_string(), "rwm".to_string()),
                    [h, c] => (h.to_string(), c.to_string(), "rwm".to_string()),
                    [h, c, p] => (h.to_string(), c.to_string(), p.to_string()),
                    _ => {
                        cx.err(
                            it.pos,
                            &ip,
                            format!("invalid device {s:?} (use host[:container[:permissions]])"),
                        );
                        continue;
                    }
                };
                if d.2.is_empty() || !d.2.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
                    cx.err(
                        it.pos,
                        &ip,
                        format!("invalid device {s:?}: permissions must be made of r, w, m"),
                    );
                    continue;
                }
                out.push(DeviceMapping {
                    host: d.0,
                    container: d.1,
                    permissions: d.2,
                });
            }
        }
    }
    out
}

/// `deploy:`; returns `replicas` with its position.
pub(super) fn deploy(cx: &mut Cx, m: &Map, path: &str, s: &mut ServiceSpec) -> Option<(i64, Pos)> {
    check_keys_in(
        cx,
        m,
        path,
        "deploy",
        keys::DEPLOY,
        keys::DEPLOY_UNSUPPORTED,
    );
    let mut replicas =
        get(m, "replicas").and_then(|n| int(cx, n, &child(path, "replicas")).map(|v| (v, n.pos)));
    if let Some(n) = get(m, "mode")
        && let Some(mode) = string(cx, n, &child(path, "mode"))
    {
        match mode.as_str() {
            "replicated" => {}
            "global" => {
                if let Some((r, pos)) = replicas
                    && r != 1
                {
                    cx.err(
                        pos,
                        &child(path, "replicas"),
                        "cannot be combined with `mode: global`",
                    );
                }
                replicas = Some((1, n.pos));
                s.deploy_mode = Some(mode.clone());
            }
            other => cx.err(
                n.pos,
                &child(path, "mode"),
                format!("invalid mode {other:?} (use replicated or global)"),
            ),
        }
    }
    if let Some(n) = get(m, "resources") {
        let rp = child(path, "resources");
        if let Some(rm) = as_map(cx, n, &rp) {
            check_keys(cx, rm, &rp, &["limits", "reservations"], &[]);
            if let Some(l) = get(rm, "limits") {
                let lp = child(&rp, "limits");
                if let Some(lm) = as_map(cx, l, &lp) {
                    check_keys(cx, lm, &lp, &["cpus", "memory", "pids"], &[]);
                    if let Some(v) = get(lm, "cpus") {
                        let p = child(&lp, "cpus");
                        let value = nano_cpus(cx, v, &p);
                        set_consistently(cx, v.pos, &p, &mut s.nano_cpus, value, "cpus");
                    }
                    if let Some(v) = get(lm, "memory") {
                        let p = child(&lp, "memory");
                        let value = bytes(cx, v, &p);
                        set_consistently(cx, v.pos, &p, &mut s.mem_limit, value, "mem_limit");
                    }
                    if let Some(v) = get(lm, "pids") {
                        let p = child(&lp, "pids");
                        let value = int(cx, v, &p);
                        set_consistently(cx, v.pos, &p, &mut s.pids_limit, value, "pids_limit");
                    }
                }
            }
            if let Some(r) = get(rm, "reservations") {
                let lp = child(&rp, "reservations");
                if let Some(lm) = as_map(cx, r, &lp) {
                    check_keys_in(
                        cx,
                        lm,
                        &lp,
                        "reservations",
                        &["memory", "devices"],
                        &["cpus", "generic_resources"],
                    );
                    if let Some(v) = get(lm, "devices") {
                        let dp = child(&lp, "devices");
                        match &v.value {
                            Value::Seq(items) => {
                                for (i, it) in items.iter().enumerate() {
                                    if let Some(d) = device_request(cx, it, &idx(&dp, i), false) {
                                        s.device_requests.push(d);
                                    }
                                }
                            }
                            other => cx.err(
                                v.pos,
                                &dp,
                                format!("must be a list, found {}", other.kind()),
                            ),
                        }
                    }
                    if let Some(v) = get(lm, "memory") {
                        let p = child(&lp, "memory");
                        let value = bytes(cx, v, &p);
                        set_consistently(
                            cx,
                            v.pos,
                            &p,
                            &mut s.mem_reservation,
                            value,
                            "mem_reservation",
                        );
                    }
                }
            }
        }
    }
    if let Some(n) = get(m, "restart_policy") {
        let rp = child(path, "restart_policy");
        if let Some(rm) = as_map(cx, n, &rp) {
            check_keys_in(
                cx,
                rm,
                &rp,
                "restart_policy",
                &["condition", "max_attempts"],
                &["delay", "window"],
            );
            let max = opt_int(cx, rm, "max_attempts", &rp);
            let cond = opt_string(cx, rm, "condition", &rp).unwrap_or_else(|| "any".into());
            let policy = match cond.as_str() {
                "any" => Some("always".to_string()),
                "none" => Some("no".to_string()),
                "on-failure" => Some(match max {
                    Some(n) if n > 0 => format!("on-failure:{n}"),
                    _ => "on-failure".to_string(),
                }),
                other => {
                    let pos = get(rm, "condition").map(|c| c.pos).unwrap_or(n.pos);
                    cx.err(
                        pos,
                        &child(&rp, "condition"),
                        format!("invalid condition {other:?} (use none, on-failure or any)"),
                    );
                    None
                }
            };
            if s.restart.is_none() {
                s.restart = policy;
            }
        }
    }
    replicas
}

/// `gpus:`: `all`, or a list of device requests (capability `gpu` implied).
pub(super) fn gpu_requests(cx: &mut Cx, n: &Node, path: &str) -> Vec<DeviceRequest> {
    match &n.value {
        Value::Str(v) if v == "all" => vec![DeviceRequest {
            count: Some(-1),
            capabilities: vec!["gpu".into()],
            ..Default::default()
        }],
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| device_request(cx, it, &idx(path, i), true))
            .collect(),
        other => {
            cx.err(
                n.pos,
                path,
                format!(
                    "must be `all` or a list of device requests, found {}",
                    describe(other)
                ),
            );
            Vec::new()
        }
    }
}

/// One device request (`gpus` item or `deploy.resources.reservations.devices` item).
/// `count` is a number or `all`; with neither `count` nor `device_ids`, all devices are
/// requested (as Compose does). `gpu` adds the `gpu` capability (and makes `capabilities`
/// optional).
pub(super) fn device_request(
    cx: &mut Cx,
    n: &Node,
    path: &str,
    gpu: bool,
) -> Option<DeviceRequest> {
    let m = as_map(cx, n, path)?;
    check_keys(
        cx,
        m,
        path,
        &["capabilities", "count", "device_ids", "driver", "options"],
        &[],
    );
    let mut capabilities: Vec<String> = get(m, "capabilities")
        .map(|c| {
            str_list(cx, c, &child(path, "capabilities"))
                .into_iter()
                .map(|(s, _)| s)
                .collect()
        })
        .unwrap_or_default();
    if gpu {
        capabilities.push("gpu".into());
    } else if capabilities.is_empty() {
        cx.err(
            n.pos,
            path,
            "`capabilities` is required (e.g. `capabilities: [gpu]`)",
        );
        return None;
    }
    capabilities.sort();
    capabilities.dedup();
    let count = match get(m, "count") {
        None => None,
        Some(c) if c.scalar_text().as_deref() == Some("all") => Some(-1),
        Some(c) => {
            let v = int(cx, c, &child(path, "count"))?;
            if v < -1 {
                cx.err(
                    c.pos,
                    &child(path, "count"),
                    "must be a number of devices or `all`",
                );
                return None;
            }
            Some(v)
        }
    };
    let device_ids: Vec<String> = get(m, "device_ids")
        .map(|d| {
            str_list(cx, d, &child(path, "device_ids"))
                .into_iter()
                .map(|(s, _)| s)
                .collect()
        })
        .unwrap_or_default();
    if count.is_some() && !device_ids.is_empty() {
        cx.err(
            key_pos(m, "device_ids").unwrap_or(n.pos),
            path,
            "`count` and `device_ids` cannot be used together",
        );
        return None;
    }
    Some(DeviceRequest {
        driver: opt_string(cx, m, "driver", path),
        count: if count.is_none() && device_ids.is_empty() {
            Some(-1)
        } else {
            count
        },
        device_ids,
        capabilities,
        options: get(m, "options")
            .map(|o| string_map(cx, o, &child(path, "options")))
            .unwrap_or_default(),
    })
}

/// An integer given as a number or a string (`cpu_period`, `cpu_quota`); fractions refused.
pub(super) fn whole_number(cx: &mut Cx, n: &Node, path: &str) -> Option<i64> {
    let f = float(cx, n, path)?;
    if f.fract() != 0.0 || f < -1.0 {
        cx.err(
            n.pos,
            path,
            format!("must be a whole number of microseconds, found {f}"),
        );
        return None;
    }
    Some(f as i64)
}

/// Microseconds given as a number or as a duration (`cpu_rt_runtime: 400ms`).
pub(super) fn micros(cx: &mut Cx, n: &Node, path: &str) -> Option<i64> {
    match &n.value {
        Value::Str(s) if s.trim().parse::<f64>().is_err() => match parse_duration(s) {
            Ok(ns) => Some(ns / 1000),
            Err(e) => {
                cx.err(n.pos, path, e);
                None
            }
        },
        _ => whole_number(cx, n, path),
    }
}

/// `blkio_config`.
pub(super) fn blkio_config(cx: &mut Cx, n: &Node, path: &str) -> Option<BlkioConfig> {
    let m = as_map(cx, n, path)?;
    check_keys(
        cx,
        m,
        path,
        &[
            "weight",
            "weight_device",
            "device_read_bps",
            "device_write_bps",
            "device_read_iops",
            "device_write_iops",
        ],
        &[],
    );
    let weight = |cx: &mut Cx, n: &Node, path: &str| -> Option<u16> {
        let v = int(cx, n, path)?;
        if (10..=1000).contains(&v) {
            Some(v as u16)
        } else {
            cx.err(
                n.pos,
                path,
                format!("must be between 10 and 1000, found {v}"),
            );
            None
        }
    };
    let mut out = BlkioConfig {
        weight: get(m, "weight").and_then(|w| weight(cx, w, &child(path, "weight"))),
        ..Default::default()
    };
    // Each list item is `{path, weight}` or `{path, rate}`.
    let items = |cx: &mut Cx, key: &str| -> Vec<(String, Node, String)> {
        let Some(list) = get(m, key) else {
            return Vec::new();
        };
        let lp = child(path, key);
        let Value::Seq(items) = &list.value else {
            cx.err(
                list.pos,
                &lp,
                format!("must be a list, found {}", list.value.kind()),
            );
            return Vec::new();
        };
        let value_key = if key == "weight_device" {
            "weight"
        } else {
            "rate"
        };
        let mut out = Vec::new();
        for (i, it) in items.iter().enumerate() {
            let ip = idx(&lp, i);
            let Some(im) = as_map(cx, it, &ip) else {
                continue;
            };
            check_keys(cx, im, &ip, &["path", value_key], &[]);
            let dev = opt_string(cx, im, "path", &ip);
            let val = get(im, value_key);
            match (dev, val) {
                (Some(d), Some(v)) => out.push((d, v.clone(), child(&ip, value_key))),
                _ => cx.err(
                    it.pos,
                    &ip,
                    format!("`path` and `{value_key}` are required"),
                ),
            }
        }
        out
    };
    for (dev, v, vp) in items(cx, "weight_device") {
        if let Some(w) = weight(cx, &v, &vp) {
            out.weight_device.insert(dev, w);
        }
    }
    for (key, is_bytes) in [
        ("device_read_bps", true),
        ("device_write_bps", true),
        ("device_read_iops", false),
        ("device_write_iops", false),
    ] {
        for (dev, v, vp) in items(cx, key) {
            let rate = if is_bytes {
                bytes(cx, &v, &vp)
            } else {
                int(cx, &v, &vp)
            };
            let Some(rate) = rate else { continue };
            if rate < 0 {
                cx.err(v.pos, &vp, "must not be negative");
                continue;
            }
            let target = match key {
                "device_read_bps" => &mut out.device_read_bps,
                "device_write_bps" => &mut out.device_write_bps,
                "device_read_iops" => &mut out.device_read_iops,
                _ => &mut out.device_write_iops,
            };
            target.insert(dev, rate);
        }
    }
    Some(out)
}

/// `deploy.resources` sets the same Engine field as a plain service key (`cpus`, `mem_limit`,
/// …): the same value twice is fine, two different ones are a conflict, never a silent pick.
pub(super) fn set_consistently<T: PartialEq>(
    cx: &mut Cx,
    pos: Pos,
    path: &str,
    slot: &mut Option<T>,
    value: Option<T>,
    service_key: &str,
) {
    if slot.is_some() && value != *slot {
        cx.err(
            pos,
            path,
            format!("conflicts with the service's `{service_key}`"),
        );
    }
    *slot = value;
}

/// A service's resource limits and kernel knobs: memory, CPU, pids, `ulimits`, `devices`,
/// OOM settings, `blkio_config`, `storage_opt`.
pub(super) fn service_limits(cx: &mut Cx, m: &Map, path: &str, s: &mut ServiceSpec) {
    for (key, out) in [
        ("shm_size", &mut s.shm_size),
        ("mem_limit", &mut s.mem_limit),
        ("mem_reservation", &mut s.mem_reservation),
        ("memswap_limit", &mut s.memswap_limit),
    ] {
        if let Some(n) = get(m, key) {
            *out = bytes(cx, n, &child(path, key));
        }
    }
    if let Some(n) = get(m, "cpus") {
        s.nano_cpus = nano_cpus(cx, n, &child(path, "cpus"));
    }
    s.cpu_shares = opt_int(cx, m, "cpu_shares", path);
    s.cpu_count = opt_int(cx, m, "cpu_count", path);
    s.cpuset = opt_string(cx, m, "cpuset", path);
    s.pids_limit = opt_int(cx, m, "pids_limit", path);
    if let Some(n) = get(m, "ulimits") {
        s.ulimits = ulimits(cx, n, &child(path, "ulimits"));
    }
    if let Some(n) = get(m, "devices") {
        s.devices = devices(cx, n, &child(path, "devices"));
    }
    s.oom_score_adj = opt_int(cx, m, "oom_score_adj", path);
    if let Some(n) = get(m, "mem_swappiness")
        && let Some(v) = int(cx, n, &child(path, "mem_swappiness"))
    {
        if (0..=100).contains(&v) {
            s.mem_swappiness = Some(v);
        } else {
            cx.err(
                n.pos,
                &child(path, "mem_swappiness"),
                format!("must be between 0 and 100, found {v}"),
            );
        }
    }
    s.oom_kill_disable = opt_bool(cx, m, "oom_kill_disable", path).unwrap_or(false);
    for (key, out) in [
        ("cpu_period", &mut s.cpu_period),
        ("cpu_quota", &mut s.cpu_quota),
    ] {
        if let Some(n) = get(m, key) {
            *out = whole_number(cx, n, &child(path, key));
        }
    }
    for (key, out) in [
        ("cpu_rt_period", &mut s.cpu_rt_period),
        ("cpu_rt_runtime", &mut s.cpu_rt_runtime),
    ] {
        if let Some(n) = get(m, key) {
            *out = micros(cx, n, &child(path, key));
        }
    }
    if let Some(n) = get(m, "blkio_config") {
        s.blkio = blkio_config(cx, n, &child(path, "blkio_config"));
    }
    if let Some(n) = get(m, "storage_opt") {
        let sp = child(path, "storage_opt");
        if as_map(cx, n, &sp).is_some() {
            s.storage_opt = string_map(cx, n, &sp);
        }
    }
}
