//! `volumes` (short and long syntax), `tmpfs`, the secret and config mounts, `volumes_from`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::decls::{Decls, FileObj};
use super::keys;
use super::read::*;
use super::yaml::{Key, Node, Pos, Value};
use crate::model::*;

pub(super) fn bind_source(st: &StackCtx, src: &str) -> String {
    let p = if let Some(rest) = src.strip_prefix("~/") {
        let home = st
            .vars
            .get("HOME")
            .cloned()
            .unwrap_or_else(|| "/root".into());
        PathBuf::from(home).join(rest)
    } else if src == "~" {
        PathBuf::from(
            st.vars
                .get("HOME")
                .cloned()
                .unwrap_or_else(|| "/root".into()),
        )
    } else {
        st.dir.join(src)
    };
    clean_path(&p).to_string_lossy().into_owned()
}

pub(super) fn is_path(src: &str) -> bool {
    src.starts_with('/') || src.starts_with('.') || src.starts_with('~')
}

pub(super) fn named_volume(
    cx: &mut Cx,
    decls: &Decls,
    name: &str,
    pos: Pos,
    path: &str,
) -> Option<String> {
    match decls.volumes.get(name) {
        Some(v) => Some(v.name.clone()),
        None => {
            cx.err(
                pos,
                path,
                format!("volume `{name}` is not declared in the top-level `volumes`"),
            );
            None
        }
    }
}

pub(super) fn mount(
    cx: &mut Cx,
    st: &StackCtx,
    decls: &Decls,
    n: &Node,
    path: &str,
) -> Option<MountSpec> {
    match &n.value {
        Value::Str(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            let (src, target, mode) = match parts.as_slice() {
                [t] => (None, *t, None),
                [s, t] => (Some(*s), *t, None),
                [s, t, m] => (Some(*s), *t, Some(*m)),
                _ => {
                    cx.err(
                        n.pos,
                        path,
                        format!("invalid volume {s:?}: expected [source:]target[:mode]"),
                    );
                    return None;
                }
            };
            if !target.starts_with('/') {
                cx.err(
                    n.pos,
                    path,
                    format!("invalid volume {s:?}: the container path {target:?} must be absolute"),
                );
                return None;
            }
            let mut read_only = false;
            let mut selinux = None;
            let mut propagation = None;
            let mut nocopy = false;
            for opt in mode.into_iter().flat_map(|m| m.split(',')) {
                match opt {
                    "ro" => read_only = true,
                    "rw" => read_only = false,
                    "z" | "Z" => selinux = Some(opt.to_string()),
                    "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                        propagation = Some(opt.to_string())
                    }
                    "nocopy" => nocopy = true,
                    "consistent" | "cached" | "delegated" => {}
                    o => {
                        cx.err(n.pos, path, format!("invalid volume {s:?}: unknown option {o:?} (use ro, rw, z, Z, nocopy or a propagation mode)"));
                        return None;
                    }
                }
            }
            let source = match src {
                None => MountSource::Anonymous,
                // `${DATA_DIR}:/data` with DATA_DIR unset: Compose refuses the empty section too.
                Some("") => {
                    cx.err(
                        n.pos,
                        path,
                        format!(
                            "invalid volume {s:?}: the source before `:` is empty (is a variable unset?)"
                        ),
                    );
                    return None;
                }
                Some(src) if is_path(src) => {
                    if nocopy {
                        cx.err(
                            n.pos,
                            path,
                            format!(
                                "invalid volume {s:?}: `nocopy` applies to volumes, not bind mounts"
                            ),
                        );
                    }
                    MountSource::Bind {
                        path: bind_source(st, src),
                        selinux,
                        propagation,
                        create_host_path: true,
                    }
                }
                Some(src) => {
                    // `z`/`Z` on a named volume: the Engine relabels the volume (Compose passes
                    // it through); a propagation mode only exists for bind mounts.
                    if propagation.is_some() {
                        cx.err(
                            n.pos,
                            path,
                            format!(
                                "invalid volume {s:?}: propagation options apply to bind mounts"
                            ),
                        );
                    }
                    MountSource::Volume {
                        name: named_volume(cx, decls, src, n.pos, path)?,
                        nocopy,
                        subpath: None,
                        selinux,
                    }
                }
            };
            Some(MountSpec {
                target: target.to_string(),
                source,
                read_only,
            })
        }
        Value::Map(m) => {
            check_keys(cx, m, path, keys::MOUNT, keys::MOUNT_UNSUPPORTED);
            let ty = opt_string(cx, m, "type", path);
            let Some(ty) = ty else {
                cx.err(n.pos, path, "`type` is required (volume, bind or tmpfs)");
                return None;
            };
            let Some(target) = opt_string(cx, m, "target", path) else {
                cx.err(n.pos, path, "`target` is required");
                return None;
            };
            if !target.starts_with('/') {
                cx.err(
                    get(m, "target").unwrap().pos,
                    &child(path, "target"),
                    format!("the container path {target:?} must be absolute"),
                );
            }
            let read_only = opt_bool(cx, m, "read_only", path).unwrap_or(false);
            let source = opt_string(cx, m, "source", path);
            let _ = opt_string(cx, m, "consistency", path);
            let sub = |cx: &mut Cx,
                       key: &str,
                       supported: &[&str],
                       unsupported: &[&str]|
             -> Option<Vec<(Key, Node)>> {
                let n = get(m, key)?;
                let p = child(path, key);
                let sm = as_map(cx, n, &p)?;
                check_keys(cx, sm, &p, supported, unsupported);
                if ty != key {
                    cx.err(
                        n.pos,
                        &p,
                        format!("does not apply to a mount of type `{ty}`"),
                    );
                }
                Some(sm.to_vec())
            };
            let bind = sub(
                cx,
                "bind",
                &["propagation", "create_host_path", "selinux"],
                &["recursive"],
            );
            let vol = sub(cx, "volume", &["nocopy", "subpath"], &["labels"]);
            let tmp = sub(cx, "tmpfs", &["size", "mode"], &[]);
            let src = match ty.as_str() {
                "volume" => match source {
                    None => MountSource::Anonymous,
                    Some(src) => {
                        let vp = child(path, "volume");
                        let (nocopy, subpath) = match &vol {
                            Some(vm) => (
                                opt_bool(cx, vm, "nocopy", &vp).unwrap_or(false),
                                opt_string(cx, vm, "subpath", &vp),
                            ),
                            None => (false, None),
                        };
                        MountSource::Volume {
                            name: named_volume(
                                cx,
                                decls,
                                &src,
                                get(m, "source").unwrap().pos,
                                &child(path, "source"),
                            )?,
                            nocopy,
                            subpath,
                            selinux: None,
                        }
                    }
                },
                "bind" => {
                    let Some(src) = source else {
                        cx.err(n.pos, path, "`source` is required for a bind mount");
                        return None;
                    };
                    let bp = child(path, "bind");
                    let (selinux, propagation, create) = match &bind {
                        Some(bm) => {
                            let selinux = opt_string(cx, bm, "selinux", &bp);
                            if let Some(s) = &selinux
                                && s != "z"
                                && s != "Z"
                            {
                                cx.err(
                                    get(bm, "selinux").unwrap().pos,
                                    &child(&bp, "selinux"),
                                    format!("invalid value {s:?} (use z or Z)"),
                                );
                            }
                            (
                                selinux,
                                opt_string(cx, bm, "propagation", &bp),
                                opt_bool(cx, bm, "create_host_path", &bp).unwrap_or(true),
                            )
                        }
                        None => (None, None, true),
                    };
                    MountSource::Bind {
                        path: bind_source(st, &src),
                        selinux,
                        propagation,
                        create_host_path: create,
                    }
                }
                "tmpfs" => {
                    if source.is_some() {
                        cx.err(
                            get(m, "source").unwrap().pos,
                            &child(path, "source"),
                            "a tmpfs mount has no source",
                        );
                    }
                    let tp = child(path, "tmpfs");
                    let (size, mode) = match &tmp {
                        Some(tm) => (
                            get(tm, "size").and_then(|n| {
                                let sp = child(&tp, "size");
                                let v = bytes(cx, n, &sp)?;
                                if v < 0 {
                                    cx.err(n.pos, &sp, "must be greater than or equal to 0");
                                    return None;
                                }
                                Some(v)
                            }),
                            get(tm, "mode").and_then(|n| file_mode(cx, n, &child(&tp, "mode"))),
                        ),
                        None => (None, None),
                    };
                    MountSource::Tmpfs { size, mode }
                }
                "cluster" | "npipe" | "image" => {
                    cx.err(
                        get(m, "type").unwrap().pos,
                        &child(path, "type"),
                        format!("mount type `{ty}` is not supported by berth"),
                    );
                    return None;
                }
                other => {
                    cx.err(
                        get(m, "type").unwrap().pos,
                        &child(path, "type"),
                        format!("unknown mount type {other:?} (use volume, bind or tmpfs)"),
                    );
                    return None;
                }
            };
            Some(MountSpec {
                target,
                source: src,
                read_only,
            })
        }
        v => {
            cx.err(
                n.pos,
                path,
                format!("must be a string or a mapping, found {}", v.kind()),
            );
            None
        }
    }
}

/// `tmpfs:` entries: `/path` or `/path:size=64m,mode=1777`.
pub(super) fn tmpfs_short(s: &str) -> Result<MountSpec, String> {
    let (target, opts) = s.split_once(':').unwrap_or((s, ""));
    if !target.starts_with('/') {
        return Err(format!("invalid tmpfs {s:?}: the path must be absolute"));
    }
    let mut size = None;
    let mut mode = None;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("size", v)) => {
                size = Some(parse_bytes(v).map_err(|e| format!("invalid tmpfs {s:?}: {e}"))?)
            }
            Some(("mode", v)) => {
                mode = Some(
                    u32::from_str_radix(v, 8)
                        .map_err(|_| format!("invalid tmpfs {s:?}: mode {v:?} is not octal"))?,
                )
            }
            _ => {
                return Err(format!(
                    "invalid tmpfs {s:?}: option {o:?} is not supported by berth (use size= and mode=)"
                ));
            }
        }
    }
    Ok(MountSpec {
        target: target.to_string(),
        source: MountSource::Tmpfs { size, mode },
        read_only: false,
    })
}

pub(super) fn file_mounts(
    cx: &mut Cx,
    objs: &BTreeMap<String, Option<FileObj>>,
    kind: &str,
    dir: &str,
    n: &Node,
    path: &str,
) -> Vec<(MountSpec, Pos)> {
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
        let (mut uid, mut gid, mut mode) = (None, None, None);
        let (source, target, pos) = match &it.value {
            Value::Map(m) => {
                check_keys(cx, m, &ip, &["source", "target", "uid", "gid", "mode"], &[]);
                for (k, slot) in [("uid", &mut uid), ("gid", &mut gid)] {
                    if let Some(v) = get(m, k) {
                        let kp = child(&ip, k);
                        // Compose takes a string holding a number (`"1000"`), or a number.
                        match v.scalar_text().map(|s| s.trim().parse::<u32>()) {
                            Some(Ok(id)) => *slot = Some((id, v.pos)),
                            _ => cx.err(
                                v.pos,
                                &kp,
                                format!("must be a numeric id, found {}", describe(&v.value)),
                            ),
                        }
                    }
                }
                if let Some(v) = get(m, "mode") {
                    mode = file_mode(cx, v, &child(&ip, "mode")).map(|md| (md, v.pos));
                }
                let Some(src) = opt_string(cx, m, "source", &ip) else {
                    cx.err(it.pos, &ip, "`source` is required");
                    continue;
                };
                let pos = get(m, "source").unwrap().pos;
                (src, opt_string(cx, m, "target", &ip), pos)
            }
            _ => match string(cx, it, &ip) {
                Some(s) => (s, None, it.pos),
                None => continue,
            },
        };
        let Some(obj) = objs.get(&source) else {
            cx.err(
                pos,
                &ip,
                format!(
                    "{} `{source}` is not declared in the top-level `{kind}`",
                    &kind[..kind.len() - 1]
                ),
            );
            continue;
        };
        let Some(obj) = obj else { continue }; // its own error was reported
        let singular = &kind[..kind.len() - 1];
        if obj.external {
            // Compose v2 on a single Engine: "unsupported external secret"; they live in Swarm.
            cx.err(
                pos,
                &ip,
                format!(
                    "{singular} `{source}` is `external`: external {kind} are a Swarm feature, \
                     and a single Docker Engine has none to mount; declare it with `file`, \
                     `environment`{}",
                    if kind == "configs" {
                        " or `content`"
                    } else {
                        ""
                    }
                ),
            );
            continue;
        }
        if obj.content.is_none() {
            // A bind-mounted host file keeps the host's owner and mode (Compose ignores them).
            for (k, set) in [
                ("uid", uid.map(|u| u.1)),
                ("gid", gid.map(|g| g.1)),
                ("mode", mode.map(|m| m.1)),
            ] {
                if let Some(kpos) = set {
                    cx.note(
                        kpos,
                        &child(&ip, k),
                        format!(
                            "ignored, as by Compose: a file-based {singular} is bind-mounted and \
                             keeps the host file's owner and permissions"
                        ),
                    );
                }
            }
            uid = None;
            gid = None;
            mode = None;
        }
        let target = match target {
            Some(t) if t.starts_with('/') => t,
            Some(t) => format!("{dir}{t}"),
            None => format!("{dir}{source}"),
        };
        out.push((
            MountSpec {
                target,
                source: MountSource::File {
                    file: obj.file.clone(),
                    digest: obj.digest.clone(),
                    content: obj.content.clone(),
                    uid: uid.map(|u| u.0),
                    gid: gid.map(|g| g.0),
                    // 0444 is the default Compose writes; keep the hash of plain entries.
                    mode: mode.map(|m| m.0).filter(|m| *m != 0o444),
                },
                read_only: true,
            },
            pos,
        ));
    }
    out
}

/// A `volumes_from` entry: `service[:ro|rw]` or `container:name[:ro|rw]` → the normalised entry
/// (`:rw` dropped) and the service it names, if any.
pub(super) fn volumes_from(v: &str) -> Result<(String, Option<String>), String> {
    let (target, mode) = match v.rsplit_once(':') {
        Some((t, m)) if m == "ro" || m == "rw" => (t, m),
        _ => (v, "rw"),
    };
    let (normalised_target, service) = match target.split_once(':') {
        None if !target.is_empty() => (target.to_string(), Some(target.to_string())),
        Some(("container", c)) if !c.is_empty() && !c.contains(':') => {
            (format!("container:{c}"), None)
        }
        _ => {
            return Err(format!(
                "invalid entry {v:?} (use <service>, <service>:ro, container:<name> or container:<name>:ro)"
            ));
        }
    };
    let normalised = if mode == "ro" {
        format!("{normalised_target}:ro")
    } else {
        normalised_target
    };
    Ok((normalised, service))
}

/// A service's mounts: `volumes`, `tmpfs`, `secrets` and `configs`, sorted by target;
/// duplicate targets are errors.
pub(super) fn service_mounts(
    cx: &mut Cx,
    st: &StackCtx,
    decls: &Decls,
    m: &Map,
    path: &str,
    name_pos: Pos,
    s: &mut ServiceSpec,
) {
    if let Some(n) = get(m, "volumes") {
        let vp = child(path, "volumes");
        match &n.value {
            Value::Seq(items) => {
                for (i, it) in items.iter().enumerate() {
                    if let Some(mnt) = mount(cx, st, decls, it, &idx(&vp, i)) {
                        s.mounts.push(mnt);
                    }
                }
            }
            v => cx.err(n.pos, &vp, format!("must be a list, found {}", v.kind())),
        }
    }
    if let Some(n) = get(m, "tmpfs") {
        let tp = child(path, "tmpfs");
        for (i, (t, pos)) in string_or_list(cx, n, &tp).into_iter().enumerate() {
            let ip = if matches!(n.value, Value::Seq(_)) {
                idx(&tp, i)
            } else {
                tp.clone()
            };
            match tmpfs_short(&t) {
                Ok(mnt) => s.mounts.push(mnt),
                Err(e) => cx.err(pos, &ip, e),
            }
        }
    }
    for (kind, dir) in [("secrets", "/run/secrets/"), ("configs", "/")] {
        if let Some(n) = get(m, kind) {
            let objs = if kind == "secrets" {
                &decls.secrets
            } else {
                &decls.configs
            };
            for (mnt, _) in file_mounts(cx, objs, kind, dir, n, &child(path, kind)) {
                s.mounts.push(mnt);
            }
        }
    }
    // Duplicate targets.
    {
        let mut seen = BTreeSet::new();
        for mnt in &s.mounts {
            if !seen.insert(mnt.target.clone()) {
                let pos = key_pos(m, "volumes").unwrap_or(name_pos);
                cx.err(
                    pos,
                    path,
                    format!("duplicate mount target {:?}", mnt.target),
                );
            }
        }
    }
    s.mounts.sort();
    s.mounts.sort_by(|a, b| a.target.cmp(&b.target));
}
