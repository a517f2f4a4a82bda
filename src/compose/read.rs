//! Reading the located YAML tree: the per-file diagnostics sink ([`Cx`]), the stack context,
//! key checks, and typed reads of scalars, lists and mappings that report where a value is wrong.
//! Every other part of the loader builds on this module; it depends on nothing but the tree.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use super::interp;
use super::keys;
use super::yaml::{Key, Node, Pos, Value};
use crate::diag::Diagnostic;

pub(crate) type Map = [(Key, Node)];

/// Collects the diagnostics of one file.
pub(crate) struct Cx {
    pub file: PathBuf,
    /// Other files read while loading `file` (bases of `extends`), relative to the config root:
    /// a position with `file: n` is in `others[n - 1]`.
    pub others: Vec<PathBuf>,
    pub diags: Vec<Diagnostic>,
    /// What is accepted but not applied, or deprecated: reported, never an error.
    pub notes: Vec<Diagnostic>,
}

impl Cx {
    pub fn new(file: PathBuf) -> Cx {
        Cx {
            file,
            others: Vec::new(),
            diags: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Where `pos` is, as a declaration's origin (the file it is in, relative to the root).
    pub fn origin(&self, pos: Pos) -> crate::model::host::Origin {
        let file = match pos.file {
            0 => &self.file,
            n => self.others.get(usize::from(n) - 1).unwrap_or(&self.file),
        };
        crate::model::host::Origin {
            file: file.clone(),
            line: pos.line,
            col: pos.col,
        }
    }

    /// A located note (see [`Cx::notes`]).
    pub fn note(&mut self, pos: Pos, path: &str, msg: impl fmt::Display) {
        let before = self.diags.len();
        self.err(pos, path, msg);
        if let Some(d) = self.diags.drain(before..).next() {
            self.notes.push(d);
        }
    }

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

pub(super) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn idx(path: &str, i: usize) -> String {
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
pub(crate) fn suggest<'a>(name: &str, known: impl Iterator<Item = &'a &'a str>) -> Option<&'a str> {
    known
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len().max(name.len()) / 2 + 1)
        .min()
        .map(|(_, k)| k)
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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
pub(crate) fn get<'n>(m: &'n Map, key: &str) -> Option<&'n Node> {
    m.iter()
        .find(|(k, _)| k.name == key)
        .map(|(_, v)| v)
        .filter(|v| v.value != Value::Null)
}

pub(crate) fn key_pos(m: &Map, key: &str) -> Option<Pos> {
    m.iter().find(|(k, _)| k.name == key).map(|(k, _)| k.pos)
}

pub(super) fn as_map<'n>(cx: &mut Cx, n: &'n Node, path: &str) -> Option<&'n Map> {
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

pub(super) fn string(cx: &mut Cx, n: &Node, path: &str) -> Option<String> {
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

pub(super) fn int(cx: &mut Cx, n: &Node, path: &str) -> Option<i64> {
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

pub(super) fn float(cx: &mut Cx, n: &Node, path: &str) -> Option<f64> {
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

pub(super) fn boolean(cx: &mut Cx, n: &Node, path: &str) -> Option<bool> {
    match &n.value {
        Value::Bool(b) => Some(*b),
        // compose-go casts strings (also interpolated ones) at boolean keys: `true`/`false` in
        // any case, and YAML 1.1's `y`/`yes`/`on`, `n`/`no`/`off` with a warning.
        Value::Str(s) => match s.to_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            legacy @ ("y" | "yes" | "on" | "n" | "no" | "off") => {
                let v = matches!(legacy, "y" | "yes" | "on");
                cx.note(
                    n.pos,
                    path,
                    format!("{s:?} for a boolean is not YAML 1.2; use `{v}`"),
                );
                Some(v)
            }
            _ => {
                cx.err(
                    n.pos,
                    path,
                    format!("must be a boolean, found {}", describe(&n.value)),
                );
                None
            }
        },
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

pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("{s:?}"),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.kind().to_string(),
    }
}

pub(super) fn opt_string(cx: &mut Cx, m: &Map, key: &str, path: &str) -> Option<String> {
    get(m, key).and_then(|n| string(cx, n, &child(path, key)))
}
pub(super) fn opt_int(cx: &mut Cx, m: &Map, key: &str, path: &str) -> Option<i64> {
    get(m, key).and_then(|n| int(cx, n, &child(path, key)))
}
pub(super) fn opt_bool(cx: &mut Cx, m: &Map, key: &str, path: &str) -> Option<bool> {
    get(m, key).and_then(|n| boolean(cx, n, &child(path, key)))
}

/// A list of scalars (each as text).
pub(super) fn str_list(cx: &mut Cx, n: &Node, path: &str) -> Vec<(String, Pos)> {
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

pub(super) fn string_or_list(cx: &mut Cx, n: &Node, path: &str) -> Vec<(String, Pos)> {
    match &n.value {
        Value::Seq(_) | Value::Null => str_list(cx, n, path),
        _ => string(cx, n, path)
            .map(|s| vec![(s, n.pos)])
            .unwrap_or_default(),
    }
}

/// `["K=V", "K"]` or `{K: V, K: null}` → (key, value or None, position).
pub(super) fn list_or_dict(
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

pub(super) fn string_map(cx: &mut Cx, n: &Node, path: &str) -> BTreeMap<String, String> {
    list_or_dict(cx, n, path, '=')
        .into_iter()
        .map(|(k, v, _)| (k, v.unwrap_or_default()))
        .collect()
}

/// Label prefixes berth and Compose write themselves; a user label there could fake ownership.
pub(super) const RESERVED_LABEL_PREFIXES: &[&str] = &["io.berth.", "com.docker.compose."];

pub(super) fn labels(cx: &mut Cx, n: &Node, path: &str) -> BTreeMap<String, String> {
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

pub(super) fn bytes(cx: &mut Cx, n: &Node, path: &str) -> Option<i64> {
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

pub(super) fn duration(cx: &mut Cx, n: &Node, path: &str) -> Option<i64> {
    let s = string(cx, n, path)?;
    match parse_duration(&s) {
        Ok(v) => Some(v),
        Err(e) => {
            cx.err(n.pos, path, e);
            None
        }
    }
}

pub(super) fn nano_cpus(cx: &mut Cx, n: &Node, path: &str) -> Option<i64> {
    let f = float(cx, n, path)?;
    if f < 0.0 {
        cx.err(n.pos, path, "must not be negative");
        return None;
    }
    Some((f * 1e9).round() as i64)
}

/// A file mode: YAML int (`0644` is octal already) or an octal string (`"0644"`, `"1777"`).
pub(super) fn file_mode(cx: &mut Cx, n: &Node, path: &str) -> Option<u32> {
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

/// Inputs of one stack besides its tree.
pub(crate) struct StackCtx<'a> {
    pub name: String,
    /// Absolute folder of the Compose file.
    pub dir: PathBuf,
    /// Variables (`.env` overlaid by the process environment).
    pub vars: &'a BTreeMap<String, String>,
    /// Active profiles (`COMPOSE_PROFILES`).
    pub profiles: BTreeSet<String>,
    /// The config root, canonical (bind sources inside it are tracked as config files).
    pub root: Option<PathBuf>,
}

/// Interpolate every string value of the tree (never keys), reporting each failure where it is.
pub(crate) fn interpolate_tree(
    cx: &mut Cx,
    node: &mut Node,
    path: &str,
    vars: &BTreeMap<String, String>,
) {
    match &mut node.value {
        Value::Str(s) => match interp::interpolate(s, vars) {
            Ok(v) => *s = v,
            Err(e) => cx.err(node.pos, path, e),
        },
        Value::Seq(items) => {
            for (i, it) in items.iter_mut().enumerate() {
                interpolate_tree(cx, it, &format!("{path}[{i}]"), vars);
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let p = if path.is_empty() {
                    k.name.clone()
                } else {
                    format!("{path}.{}", k.name)
                };
                interpolate_tree(cx, v, &p, vars);
            }
        }
        _ => {}
    }
}

/// `command:`/`entrypoint:`-like values: a list, or a string split into words like a shell.
pub(super) fn command(cx: &mut Cx, n: &Node, path: &str) -> Option<Vec<String>> {
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
