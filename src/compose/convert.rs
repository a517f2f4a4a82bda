//! From the interpolated, located YAML tree to the normalised model ([`StackSpec`]).
//!
//! Every map is checked against the keys berth understands, the keys the Compose specification
//! has but berth does not support, and `x-*` extensions; nothing is dropped silently.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use super::interp;
use super::keys;
use super::yaml::{Key, Node, Pos, Value};
use crate::diag::Diagnostic;
use crate::model::*;

pub(crate) type Map = [(Key, Node)];

/// Collects the diagnostics of one file.
pub(crate) struct Cx {
    pub file: PathBuf,
    /// Other files read while loading `file` (bases of `extends`), relative to the config root:
    /// a position with `file: n` is in `others[n - 1]`.
    pub others: Vec<PathBuf>,
    pub diags: Vec<Diagnostic>,
}

impl Cx {
    pub fn err(&mut self, pos: Pos, path: &str, msg: impl fmt::Display) {
        let message = if path.is_empty() {
            msg.to_string()
        } else {
            format!("{path}: {msg}")
        };
        let file = match pos.file {
            0 => &self.file,
            n => self.others.get(usize::from(n) - 1).unwrap_or(&self.file),
        };
        self.diags
            .push(Diagnostic::new(file, pos.line, pos.col, message));
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn idx(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Report keys that are neither supported nor `x-*`.
pub(crate) fn check_keys(
    cx: &mut Cx,
    m: &Map,
    path: &str,
    supported: &[&str],
    unsupported: &[&str],
) {
    check_keys_in(cx, m, path, "", supported, unsupported);
}

/// [`check_keys`] for a mapping of kind `context` (`service`, `deploy`, ...): a refused key
/// with a reason in [`keys::WHY`] gets it in its message.
pub(crate) fn check_keys_in(
    cx: &mut Cx,
    m: &Map,
    path: &str,
    context: &str,
    supported: &[&str],
    unsupported: &[&str],
) {
    for (k, _) in m {
        if k.name.starts_with("x-") || supported.contains(&k.name.as_str()) {
            continue;
        }
        if unsupported.contains(&k.name.as_str()) {
            let why = keys::why(context, &k.name)
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            cx.err(
                k.pos,
                path,
                format!("key `{}` is not supported by berth{why}", k.name),
            );
        } else {
            let hint = suggest(&k.name, supported.iter().chain(unsupported))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            cx.err(
                k.pos,
                path,
                format!(
                    "unknown key `{}` (not part of the Compose specification){hint}",
                    k.name
                ),
            );
        }
    }
}

/// The closest known key, if it is a likely typo (edit distance ≤ 2).
fn suggest<'a>(name: &str, known: impl Iterator<Item = &'a &'a str>) -> Option<&'a str> {
    known
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len().max(name.len()) / 2 + 1)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The value of a key; `None` when absent or null.
fn get<'n>(m: &'n Map, key: &str) -> Option<&'n Node> {
    m.iter()
        .find(|(k, _)| k.name == key)
        .map(|(_, v)| v)
        .filter(|v| v.value != Value::Null)
}

fn key_pos(m: &Map, key: &str) -> Option<Pos> {
    m.iter().find(|(k, _)| k.name == key).map(|(k, _)| k.pos)
}

fn as_map<'n>(cx: &mut Cx, n: &'n Node, path: &str) -> Option<&'n Map> {
    match &n.value {
        Value::Map(m) => Some(m),
        Value::Null => Some(&[]),
        v => {
            cx.err(
                n.pos,
                path,
                format!("must be a mapping, found {}", v.kind()),
            );
            None
        }
    }
}

fn string(cx: &mut Cx, n: &Node, path: &str) -> Option<String> {
    match n.scalar_text() {
        Some(s) => Some(s),
        None => {
            cx.err(
                n.pos,
                path,
                format!("must be a string, found {}", n.value.kind()),
            );
            None
        }
    }
}

fn int(cx: &mut Cx, n: &Node, path: &str) -> Option<i64> {
    match &n.value {
        Value::Int(i) => Some(*i),
        Value::Str(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
        v => {
            cx.err(
                n.pos,
                path,
                format!("must be an integer, found {}", describe(v)),
            );
            None
        }
    }
}

fn float(cx: &mut Cx, n: &Node, path: &str) -> Option<f64> {
    match &n.value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Str(s) if s.trim().parse::<f64>().is_ok() => s.trim().parse().ok(),
        v => {
            cx.err(
                n.pos,
                path,
                format!("must be a number, found {}", describe(v)),
            );
            None
        }
    }
}

fn boolean(cx: &mut Cx, n: &Node, path: &str) -> Option<bool> {
    match &n.value {
        Value::Bool(b) => Some(*b),
        Value::Str(s) if matches!(s.as_str(), "true" | "True" | "TRUE") => Some(true),
        Value::Str(s) if matches!(s.as_str(), "false" | "False" | "FALSE") => Some(false),
        v => {
            cx.err(
                n.pos,
                path,
                format!("must be a boolean, found {}", describe(v)),
            );
            None
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("{s:?}"),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.kind().to_string(),
    }
}

fn opt_string(cx: &mut Cx, m: &Map, key: &str, path: &str) -> Option<String> {
    get(m, key).and_then(|n| string(cx, n, &child(path, key)))
}
fn opt_int(cx: &mut Cx, m: &Map, key: &str, path: &str) -> Option<i64> {
    get(m, key).and_then(|n| int(cx, n, &child(path, key)))
}
fn opt_bool(cx: &mut Cx, m: &Map, key: &str, path: &str) -> Option<bool> {
    get(m, key).and_then(|n| boolean(cx, n, &child(path, key)))
}

/// A list of scalars (each as text).
fn str_list(cx: &mut Cx, n: &Node, path: &str) -> Vec<(String, Pos)> {
    match &n.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| string(cx, it, &idx(path, i)).map(|s| (s, it.pos)))
            .collect(),
        Value::Null => Vec::new(),
        v => {
            cx.err(n.pos, path, format!("must be a list, found {}", v.kind()));
            Vec::new()
        }
    }
}

fn string_or_list(cx: &mut Cx, n: &Node, path: &str) -> Vec<(String, Pos)> {
    match &n.value {
        Value::Seq(_) | Value::Null => str_list(cx, n, path),
        _ => string(cx, n, path)
            .map(|s| vec![(s, n.pos)])
            .unwrap_or_default(),
    }
}

/// `["K=V", "K"]` or `{K: V, K: null}` → (key, value or None, position).
fn list_or_dict(
    cx: &mut Cx,
    n: &Node,
    path: &str,
    sep: char,
) -> Vec<(String, Option<String>, Pos)> {
    match &n.value {
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| match &v.value {
                Value::Null => Some((k.name.clone(), None, k.pos)),
                _ => string(cx, v, &child(path, &k.name)).map(|s| (k.name.clone(), Some(s), k.pos)),
            })
            .collect(),
        Value::Seq(_) | Value::Null => str_list(cx, n, path)
            .into_iter()
            .map(|(s, pos)| match s.split_once(sep) {
                Some((k, v)) => (k.to_string(), Some(v.to_string()), pos),
                None => (s, None, pos),
            })
            .collect(),
        v => {
            cx.err(
                n.pos,
                path,
                format!("must be a list or a mapping, found {}", v.kind()),
            );
            Vec::new()
        }
    }
}

fn string_map(cx: &mut Cx, n: &Node, path: &str) -> BTreeMap<String, String> {
    list_or_dict(cx, n, path, '=')
        .into_iter()
        .map(|(k, v, _)| (k, v.unwrap_or_default()))
        .collect()
}

/// Label prefixes berth and Compose write themselves; a user label there could fake ownership.
const RESERVED_LABEL_PREFIXES: &[&str] = &["io.berth.", "com.docker.compose."];

fn labels(cx: &mut Cx, n: &Node, path: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v, pos) in list_or_dict(cx, n, path, '=') {
        if let Some(prefix) = RESERVED_LABEL_PREFIXES.iter().find(|p| k.starts_with(*p)) {
            cx.err(
                pos,
                path,
                format!("label `{k}` is reserved (`{prefix}*` labels are set by berth)"),
            );
            continue;
        }
        out.insert(k, v.unwrap_or_default());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Units

/// Go-style durations (`1m30s`, `10s`, `500ms`, `1.5h`, `0`) → nanoseconds.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| {
                format!("missing unit in duration {s:?} (use e.g. 10s, 1m30s, 500ms)")
            })?;
        let num: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        let after = &rest[num_end..];
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let factor = match &after[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => {
                return Err(format!(
                    "unknown unit {u:?} in duration {s:?} (use ns, us, ms, s, m, h)"
                ));
            }
        };
        total += num * factor;
        rest = &after[unit_end..];
    }
    if total > i64::MAX as f64 {
        return Err(format!("duration {s:?} is too long"));
    }
    Ok(total.round() as i64)
}

/// Byte sizes like Docker's `RAMInBytes`: `1g`, `512m`, `1gb`, `100k`, `1024`, `1.5g` (binary units).
pub(crate) fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let num: f64 = t[..num_end]
        .parse()
        .map_err(|_| format!("invalid size {s:?} (use e.g. 512m, 1g, 1024)"))?;
    let factor: f64 = match t[num_end..].trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024f64.powi(4),
        "p" | "pb" | "pib" => 1024f64.powi(5),
        u => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {u:?} (use b, k, m, g, t, p)"
            ));
        }
    };
    let v = num * factor;
    if v > i64::MAX as f64 {
        return Err(format!("size {s:?} is too large"));
    }
    Ok(v as i64)
}

fn bytes(cx: &mut Cx, n: &Node, path: &str) -> Option<i64> {
    match &n.value {
        Value::Int(i) => Some(*i),
        Value::Str(s) => match parse_bytes(s) {
            Ok(v) => Some(v),
            Err(e) => {
                cx.err(n.pos, path, e);
                None
            }
        },
        v => {
            cx.err(
                n.pos,
                path,
                format!("must be a size (e.g. 512m, 1g), found {}", v.kind()),
            );
            None
        }
    }
}

fn duration(cx: &mut Cx, n: &Node, path: &str) -> Option<i64> {
    let s = string(cx, n, path)?;
    match parse_duration(&s) {
        Ok(v) => Some(v),
        Err(e) => {
            cx.err(n.pos, path, e);
            None
        }
    }
}

fn nano_cpus(cx: &mut Cx, n: &Node, path: &str) -> Option<i64> {
    let f = float(cx, n, path)?;
    if f < 0.0 {
        cx.err(n.pos, path, "must not be negative");
        return None;
    }
    Some((f * 1e9).round() as i64)
}

/// A file mode: YAML int (`0644` is octal already) or an octal string (`"0644"`, `"1777"`).
fn file_mode(cx: &mut Cx, n: &Node, path: &str) -> Option<u32> {
    match &n.value {
        Value::Int(i) if (0..=0o7777).contains(i) => Some(*i as u32),
        Value::Str(s) => match u32::from_str_radix(s.trim().trim_start_matches("0o"), 8) {
            Ok(v) if v <= 0o7777 => Some(v),
            _ => {
                cx.err(
                    n.pos,
                    path,
                    format!("invalid file mode {s:?} (use octal, e.g. 0755)"),
                );
                None
            }
        },
        v => {
            cx.err(n.pos, path, format!("invalid file mode {}", describe(v)));
            None
        }
    }
}

/// Lexically normalise an absolute path (drop `.`, resolve `..`).
pub(crate) fn clean_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Stack

/// Inputs of one stack besides its tree.
pub(crate) struct StackCtx<'a> {
    pub name: String,
    /// Absolute folder of the Compose file.
    pub dir: PathBuf,
    /// Variables (`.env` overlaid by the process environment).
    pub vars: &'a BTreeMap<String, String>,
    /// Active profiles (`COMPOSE_PROFILES`).
    pub profiles: BTreeSet<String>,
}

/// A secret or config declared at top level.
#[derive(Clone)]
struct FileObj {
    file: String,
    digest: String,
    content: Option<Secret>,
}

struct Decls {
    networks: BTreeMap<String, NetworkSpec>,
    volumes: BTreeMap<String, VolumeSpec>,
    secrets: BTreeMap<String, Option<FileObj>>,
    configs: BTreeMap<String, Option<FileObj>>,
}

/// What one service needs checked against the others.
struct SvcMeta {
    pos: Pos,
    profiles: Vec<String>,
    depends: Vec<(String, Pos, bool)>,
    network_mode_service: Option<(String, Pos)>,
    /// `links` entries (`service[:alias]`) with where.
    links: Vec<(String, Pos)>,
    /// Services named in `volumes_from`, with where.
    volumes_from: Vec<(String, Pos)>,
    uses_default_network: bool,
}

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
    for (name, (svc, meta)) in active {
        uses_default |= meta.uses_default_network;
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

fn valid_service_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn find_cycle(services: &BTreeMap<String, (ServiceSpec, SvcMeta)>) -> Option<Vec<String>> {
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

fn engine_name(cx: &mut Cx, st: &StackCtx, key: &str, m: &Map, path: &str) -> (String, bool) {
    let external = match get(m, "external") {
        None => false,
        Some(n) => match &n.value {
            Value::Map(_) => {
                cx.err(
                    n.pos,
                    &child(path, "external"),
                    "`external: {name: ...}` is deprecated; use `external: true` and `name:`",
                );
                true
            }
            _ => boolean(cx, n, &child(path, "external")).unwrap_or(false),
        },
    };
    let name = match opt_string(cx, m, "name", path) {
        Some(n) => n,
        None if external => key.to_string(),
        None => format!("{}_{key}", st.name),
    };
    (name, external)
}

fn network(cx: &mut Cx, st: &StackCtx, key: &str, n: &Node, path: &str) -> NetworkSpec {
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

fn volume(cx: &mut Cx, st: &StackCtx, key: &str, n: &Node, path: &str) -> VolumeSpec {
    let Some(m) = as_map(cx, n, path) else {
        return VolumeSpec::default();
    };
    check_keys(cx, m, path, keys::VOLUME, &[]);
    let (name, external) = engine_name(cx, st, key, m, path);
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

fn file_obj(cx: &mut Cx, st: &StackCtx, kind: &str, n: &Node, path: &str) -> Option<FileObj> {
    let m = as_map(cx, n, path)?;
    let (supported, unsupported) = if kind == "secrets" {
        (keys::SECRET, keys::SECRET_UNSUPPORTED)
    } else {
        (keys::CONFIG, keys::CONFIG_UNSUPPORTED)
    };
    check_keys(cx, m, path, supported, unsupported);
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
        });
    }
    if get(m, "external").is_none() {
        cx.err(
            n.pos,
            path,
            format!(
                "one of `file`, `environment`{} is required",
                if kind == "configs" { ", `content`" } else { "" }
            ),
        );
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Service

#[allow(clippy::too_many_arguments)]
fn service(
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
    };
    let p = |k: &str| child(path, k);

    // Image and build.
    s.build = get(m, "build").is_some();
    if let Some(b) = get(m, "build")
        && !matches!(b.value, Value::Map(_) | Value::Str(_))
    {
        cx.err(
            b.pos,
            &p("build"),
            format!("must be a string or a mapping, found {}", b.value.kind()),
        );
    }
    match opt_string(cx, m, "image", path) {
        Some(i) if i.trim().is_empty() => cx.err(
            get(m, "image").unwrap().pos,
            &p("image"),
            "must not be empty",
        ),
        Some(i) => s.image = i,
        None if s.build => s.image = format!("{}-{name}", st.name),
        None => cx.err(name_pos, path, "service has neither `image` nor `build`"),
    }
    if let Some(n) = get(m, "pull_policy")
        && let Some(v) = string(cx, n, &p("pull_policy"))
    {
        s.pull_policy = match v.as_str() {
            "always" => PullPolicy::Always,
            "missing" | "if_not_present" => PullPolicy::Missing,
            "never" => PullPolicy::Never,
            "build" => PullPolicy::Build,
            "daily" | "weekly" => {
                cx.err(
                    n.pos,
                    &p("pull_policy"),
                    format!(
                        "`{v}` is not supported by berth (use always, missing, never or build)"
                    ),
                );
                PullPolicy::Missing
            }
            v if v.starts_with("every_") => {
                cx.err(
                    n.pos,
                    &p("pull_policy"),
                    format!(
                        "`{v}` is not supported by berth (use always, missing, never or build)"
                    ),
                );
                PullPolicy::Missing
            }
            v => {
                cx.err(
                    n.pos,
                    &p("pull_policy"),
                    format!("invalid pull policy {v:?} (use always, missing, never or build)"),
                );
                PullPolicy::Missing
            }
        };
    }
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
                    s.ports.extend(port(cx, it, &idx(&pp, i)));
                }
            }
            v => cx.err(n.pos, &pp, format!("must be a list, found {}", v.kind())),
        }
        s.ports.sort();
        s.ports.dedup();
    }

    // Mounts.
    if let Some(n) = get(m, "volumes") {
        let vp = p("volumes");
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
        let tp = p("tmpfs");
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
            for (mnt, _) in file_mounts(cx, objs, kind, dir, n, &p(kind)) {
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

    // Networks.
    if let Some(n) = get(m, "network_mode") {
        let np = p("network_mode");
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
                        &p("ports"),
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
                &p("networks"),
                "cannot be used together with `network_mode`",
            );
        }
    } else {
        let mut joined: Vec<(String, NetworkAttachment, Pos)> = Vec::new();
        match get(m, "networks") {
            None => joined.push(("default".into(), NetworkAttachment::default(), name_pos)),
            Some(n) => {
                let np = p("networks");
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
                        &p("networks"),
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

    if let Some(n) = get(m, "labels") {
        s.labels = labels(cx, n, &p("labels"));
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
    for (key, out) in [
        ("shm_size", &mut s.shm_size),
        ("mem_limit", &mut s.mem_limit),
        ("mem_reservation", &mut s.mem_reservation),
        ("memswap_limit", &mut s.memswap_limit),
    ] {
        if let Some(n) = get(m, key) {
            *out = bytes(cx, n, &p(key));
        }
    }
    if let Some(n) = get(m, "cpus") {
        s.nano_cpus = nano_cpus(cx, n, &p("cpus"));
    }
    s.cpu_shares = opt_int(cx, m, "cpu_shares", path);
    s.cpuset = opt_string(cx, m, "cpuset", path);
    s.pids_limit = opt_int(cx, m, "pids_limit", path);
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
    if let Some(n) = get(m, "ulimits") {
        s.ulimits = ulimits(cx, n, &p("ulimits"));
    }
    if let Some(n) = get(m, "devices") {
        s.devices = devices(cx, n, &p("devices"));
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
    s.oom_score_adj = opt_int(cx, m, "oom_score_adj", path);
    if let Some(n) = get(m, "mem_swappiness")
        && let Some(v) = int(cx, n, &p("mem_swappiness"))
    {
        if (0..=100).contains(&v) {
            s.mem_swappiness = Some(v);
        } else {
            cx.err(
                n.pos,
                &p("mem_swappiness"),
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
            *out = whole_number(cx, n, &p(key));
        }
    }
    for (key, out) in [
        ("cpu_rt_period", &mut s.cpu_rt_period),
        ("cpu_rt_runtime", &mut s.cpu_rt_runtime),
    ] {
        if let Some(n) = get(m, key) {
            *out = micros(cx, n, &p(key));
        }
    }
    if let Some(n) = get(m, "blkio_config") {
        s.blkio = blkio_config(cx, n, &p("blkio_config"));
    }
    if let Some(n) = get(m, "storage_opt") {
        let sp = p("storage_opt");
        if as_map(cx, n, &sp).is_some() {
            s.storage_opt = string_map(cx, n, &sp);
        }
    }
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

fn restart_ok(v: &str) -> bool {
    match v {
        "no" | "always" | "unless-stopped" | "on-failure" => true,
        _ => v
            .strip_prefix("on-failure:")
            .is_some_and(|n| n.parse::<u32>().is_ok()),
    }
}

fn command(cx: &mut Cx, n: &Node, path: &str) -> Option<Vec<String>> {
    match &n.value {
        Value::Seq(_) => Some(str_list(cx, n, path).into_iter().map(|(s, _)| s).collect()),
        _ => {
            let s = string(cx, n, path)?;
            match shlex::split(&s) {
                Some(v) => Some(v),
                None => {
                    cx.err(
                        n.pos,
                        path,
                        format!("cannot split {s:?} into words (unbalanced quotes?)"),
                    );
                    None
                }
            }
        }
    }
}

fn env_files(cx: &mut Cx, st: &StackCtx, n: &Node, path: &str, env: &mut BTreeMap<String, Secret>) {
    let mut files: Vec<(String, bool, Pos, String)> = Vec::new();
    match &n.value {
        Value::Seq(items) => {
            for (i, it) in items.iter().enumerate() {
                let ip = idx(path, i);
                if let Value::Map(m) = &it.value {
                    check_keys(cx, m, &ip, &["path", "required"], &["format"]);
                    let Some(pn) = get(m, "path") else {
                        cx.err(it.pos, &ip, "`path` is required");
                        continue;
                    };
                    let Some(fp) = string(cx, pn, &child(&ip, "path")) else {
                        continue;
                    };
                    let required = opt_bool(cx, m, "required", &ip).unwrap_or(true);
                    files.push((fp, required, pn.pos, child(&ip, "path")));
                } else if let Some(fp) = string(cx, it, &ip) {
                    files.push((fp, true, it.pos, ip));
                }
            }
        }
        _ => {
            if let Some(fp) = string(cx, n, path) {
                files.push((fp, true, n.pos, path.to_string()));
            }
        }
    }
    for (rel, required, pos, p) in files {
        let abs = clean_path(&st.dir.join(&rel));
        match std::fs::read_to_string(&abs) {
            Ok(text) => match interp::parse_env_entries(&text) {
                Ok(entries) => {
                    for e in entries {
                        if e.literal {
                            env.insert(e.key, Secret::new(e.value));
                            continue;
                        }
                        match interp::interpolate(&e.value, st.vars) {
                            Ok(v) => {
                                env.insert(e.key, Secret::new(v));
                            }
                            Err(msg) => cx.err(pos, &p, format!("{rel}: {}: {msg}", e.key)),
                        }
                    }
                }
                Err((line, msg)) => cx.err(pos, &p, format!("{rel}:{line}: {msg}")),
            },
            Err(_) if !required && !abs.exists() => {}
            Err(e) => cx.err(
                pos,
                &p,
                format!("cannot read env file {rel:?} ({}): {e}", abs.display()),
            ),
        }
    }
}

/// One port: `"8080:80"`, `80`, or the long form. Ranges expand to several entries.
fn port(cx: &mut Cx, n: &Node, path: &str) -> Vec<PortSpec> {
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

fn parse_range(s: &str) -> Result<(u16, u16), String> {
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

fn pair_ranges(
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

fn expose(s: &str) -> Result<Vec<String>, String> {
    let (body, proto) = s.rsplit_once('/').unwrap_or((s, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(format!("invalid port {s:?}: unknown protocol {proto:?}"));
    }
    let (a, b) = parse_range(body).map_err(|e| format!("invalid port {s:?}: {e}"))?;
    Ok((a..=b).map(|p| format!("{p}/{proto}")).collect())
}

fn bind_source(st: &StackCtx, src: &str) -> String {
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

fn is_path(src: &str) -> bool {
    src.starts_with('/') || src.starts_with('.') || src.starts_with('~')
}

fn named_volume(cx: &mut Cx, decls: &Decls, name: &str, pos: Pos, path: &str) -> Option<String> {
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

fn mount(cx: &mut Cx, st: &StackCtx, decls: &Decls, n: &Node, path: &str) -> Option<MountSpec> {
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
                    if selinux.is_some() || propagation.is_some() {
                        cx.err(n.pos, path, format!("invalid volume {s:?}: SELinux and propagation options apply to bind mounts"));
                    }
                    MountSource::Volume {
                        name: named_volume(cx, decls, src, n.pos, path)?,
                        nocopy,
                        subpath: None,
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
                            get(tm, "size").and_then(|n| bytes(cx, n, &child(&tp, "size"))),
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
fn tmpfs_short(s: &str) -> Result<MountSpec, String> {
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

fn file_mounts(
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
        let (source, target, pos) = match &it.value {
            Value::Map(m) => {
                check_keys(cx, m, &ip, &["source", "target", "uid", "gid", "mode"], &[]);
                for (k, default) in [("uid", "0"), ("gid", "0")] {
                    if let Some(v) = get(m, k)
                        && v.scalar_text().as_deref() != Some(default)
                    {
                        cx.err(
                            v.pos,
                            &child(&ip, k),
                            format!(
                                "key `{k}` is not supported by berth (files are owned by root)"
                            ),
                        );
                    }
                }
                if let Some(v) = get(m, "mode")
                    && file_mode(cx, v, &child(&ip, "mode")).is_some_and(|md| md != 0o444)
                {
                    cx.err(
                        v.pos,
                        &child(&ip, "mode"),
                        "key `mode` is not supported by berth (files are mounted read-only, 0444)",
                    );
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
                },
                read_only: true,
            },
            pos,
        ));
    }
    out
}

fn attachment(cx: &mut Cx, n: &Node, path: &str) -> NetworkAttachment {
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
    }
}

fn healthcheck(cx: &mut Cx, n: &Node, path: &str) -> Option<Healthcheck> {
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

fn depends_on(cx: &mut Cx, n: &Node, path: &str, s: &mut ServiceSpec, meta: &mut SvcMeta) {
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

fn extra_hosts(cx: &mut Cx, n: &Node, path: &str) -> Vec<String> {
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

fn ulimits(cx: &mut Cx, n: &Node, path: &str) -> BTreeMap<String, Ulimit> {
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

fn devices(cx: &mut Cx, n: &Node, path: &str) -> Vec<DeviceMapping> {
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
fn deploy(cx: &mut Cx, m: &Map, path: &str, s: &mut ServiceSpec) -> Option<(i64, Pos)> {
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
fn gpu_requests(cx: &mut Cx, n: &Node, path: &str) -> Vec<DeviceRequest> {
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
fn device_request(cx: &mut Cx, n: &Node, path: &str, gpu: bool) -> Option<DeviceRequest> {
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

/// A `volumes_from` entry: `service[:ro|rw]` or `container:name[:ro|rw]` → the normalised entry
/// (`:rw` dropped) and the service it names, if any.
fn volumes_from(v: &str) -> Result<(String, Option<String>), String> {
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

/// An integer given as a number or a string (`cpu_period`, `cpu_quota`); fractions refused.
fn whole_number(cx: &mut Cx, n: &Node, path: &str) -> Option<i64> {
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
fn micros(cx: &mut Cx, n: &Node, path: &str) -> Option<i64> {
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
fn blkio_config(cx: &mut Cx, n: &Node, path: &str) -> Option<BlkioConfig> {
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
fn set_consistently<T: PartialEq>(
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
