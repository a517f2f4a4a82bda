//! One reader per implemented kind: a document's mapping → its spec. Each checks every key and
//! reports what is wrong where it is written; [`super::document`] dispatches to them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::read::*;
use crate::compose::read::Cx;
use crate::compose::yaml::{Node, Pos, Value};
use crate::model::host::{
    DirSpec, FileSpec, OnChange, Origin, Ownership, SysctlSpec, UnitRunState, UnitSpec,
    normalize_sysctl,
};

pub const FILE_KEYS: &[&str] = &[
    "kind",
    "path",
    "content",
    "source",
    "mode",
    "owner",
    "group",
    "secret",
    "validate",
    "adopt",
    "on_change",
];
pub const DIRECTORY_KEYS: &[&str] = &["kind", "path", "mode", "owner", "group", "adopt"];
pub const SYSCTL_KEYS: &[&str] = &["kind", "key", "value"];
pub const UNIT_KEYS: &[&str] = &[
    "kind", "name", "content", "source", "dropins", "enabled", "state", "adopt",
];
pub const ON_CHANGE_KEYS: &[&str] = &["reload", "restart", "restart_service"];

/// One document being read.
pub(super) struct Doc<'a> {
    pub m: &'a Map,
    /// Where the document is (its `kind:` key).
    pub origin: Origin,
    pub pos: Pos,
    pub src: &'a Source<'a>,
}

/// An `on_change: {restart_service: STACK/SERVICE}`, checked once the stacks are loaded.
#[derive(Debug, Clone)]
pub(super) struct ServiceRef {
    pub stack: String,
    pub service: String,
    pub pos: Pos,
}

/// A required key's value, or an error at the document.
fn required<'n>(cx: &mut Cx, d: &Doc<'n>, kind: &str, key: &str) -> Option<&'n Node> {
    let n = get(d.m, key);
    if n.is_none() {
        cx.err(d.pos, "", format!("a {kind} needs `{key}`"));
    }
    n
}

fn ownership(cx: &mut Cx, d: &Doc, default_mode: u32) -> Option<Ownership> {
    let mut o = Ownership::new(default_mode);
    let mut ok = true;
    if let Some(n) = get(d.m, "mode") {
        match mode(cx, n, "mode", d.src) {
            Some(m) => o.mode = m,
            None => ok = false,
        }
    }
    for (key, slot) in [("owner", &mut o.owner), ("group", &mut o.group)] {
        if let Some(n) = get(d.m, key) {
            match owner(cx, n, key) {
                Some(s) => *slot = s,
                None => ok = false,
            }
        }
    }
    ok.then_some(o)
}

/// `content:` (a string, as written) or `source:` (a file's bytes): exactly one when
/// `required`, else at most one. `Ok(None)`: neither.
fn content_or_source(
    cx: &mut Cx,
    d: &Doc,
    kind: &str,
    required: bool,
) -> Result<Option<Vec<u8>>, ()> {
    match (get(d.m, "content"), get(d.m, "source")) {
        (Some(_), Some(_)) => {
            let later = key_pos(d.m, "content").max(key_pos(d.m, "source"));
            cx.err(
                later.unwrap_or(d.pos),
                "",
                "set one of `content` or `source`, not both",
            );
            Err(())
        }
        // Only the type is named: a secret's text never reaches a message.
        (Some(n), None) => match &n.value {
            Value::Str(s) => Ok(Some(s.clone().into_bytes())),
            v => {
                cx.err(
                    n.pos,
                    "content",
                    format!("must be a string, found {}", v.kind()),
                );
                Err(())
            }
        },
        (None, Some(n)) => source_bytes(cx, n, "source", d.src).map(Some).ok_or(()),
        (None, None) if required => {
            cx.err(d.pos, "", format!("a {kind} needs `content` or `source`"));
            Err(())
        }
        (None, None) => Ok(None),
    }
}

/// `kind: File`.
pub(super) fn file(cx: &mut Cx, d: &Doc) -> Option<(FileSpec, Option<ServiceRef>)> {
    check_keys(cx, d.m, "", "a File", FILE_KEYS);
    let path = required(cx, d, "File", "path").and_then(|n| abs_path(cx, n, "path"));
    let content = content_or_source(cx, d, "File", true);
    let owner = ownership(cx, d, 0o644);
    let secret = opt_bool(cx, d.m, "secret");
    let adopt = opt_bool(cx, d.m, "adopt");
    let validate = get(d.m, "validate").and_then(|n| {
        let s = text(cx, n, "validate")?;
        if !s.contains("%s") {
            cx.err(
                n.pos,
                "validate",
                format!("must contain `%s` (the staged file's path), found {s:?}"),
            );
            return None;
        }
        Some(s)
    });
    let (on_change, service) = match get(d.m, "on_change") {
        Some(n) => match on_change(cx, n) {
            Some((oc, r)) => (Some(oc), r),
            None => return None,
        },
        None => (None, None),
    };
    let spec = FileSpec {
        path: path?,
        content: content.ok()??,
        owner: owner?,
        secret: secret.unwrap_or(false),
        validate,
        adopt: adopt.unwrap_or(false),
        on_change,
        origin: d.origin.clone(),
    };
    Some((spec, service))
}

/// `on_change: {reload: UNIT}`, `{restart: UNIT}` or `{restart_service: STACK/SERVICE}`.
fn on_change(cx: &mut Cx, n: &Node) -> Option<(OnChange, Option<ServiceRef>)> {
    let m = as_map(cx, n, "on_change")?;
    let before = cx.diags.len();
    check_keys(cx, m, "on_change", "on_change", ON_CHANGE_KEYS);
    let set: Vec<_> = m
        .iter()
        .filter(|(k, v)| ON_CHANGE_KEYS.contains(&k.name.as_str()) && v.value != Value::Null)
        .collect();
    if cx.diags.len() > before {
        return None;
    }
    let [(k, v)] = set.as_slice() else {
        let at = set.get(1).map_or(n.pos, |(k, _)| k.pos);
        cx.err(
            at,
            "on_change",
            "set exactly one of `reload`, `restart` or `restart_service`",
        );
        return None;
    };
    let path = format!("on_change.{}", k.name);
    match k.name.as_str() {
        "reload" => unit_name(cx, v, &path).map(|u| (OnChange::Reload(u), None)),
        "restart" => unit_name(cx, v, &path).map(|u| (OnChange::Restart(u), None)),
        _ => {
            let s = text(cx, v, &path)?;
            match s.split_once('/') {
                Some((stack, service))
                    if !stack.is_empty() && !service.is_empty() && !service.contains('/') =>
                {
                    let r = ServiceRef {
                        stack: stack.into(),
                        service: service.into(),
                        pos: v.pos,
                    };
                    Some((
                        OnChange::RestartService {
                            stack: r.stack.clone(),
                            service: r.service.clone(),
                        },
                        Some(r),
                    ))
                }
                _ => {
                    cx.err(
                        v.pos,
                        &path,
                        format!("must be STACK/SERVICE (`web/app`), found {s:?}"),
                    );
                    None
                }
            }
        }
    }
}

/// `kind: Directory`.
pub(super) fn directory(cx: &mut Cx, d: &Doc) -> Option<DirSpec> {
    check_keys(cx, d.m, "", "a Directory", DIRECTORY_KEYS);
    let path = required(cx, d, "Directory", "path").and_then(|n| abs_path(cx, n, "path"));
    let owner = ownership(cx, d, 0o755);
    let adopt = opt_bool(cx, d.m, "adopt");
    Some(DirSpec {
        path: path?,
        owner: owner?,
        adopt: adopt.unwrap_or(false),
        origin: d.origin.clone(),
    })
}

/// Why `key` is not a sysctl key (`net.ipv4.ip_forward`), if it is not.
pub fn sysctl_key_problem(key: &str) -> Option<&'static str> {
    if key.contains('/') {
        return Some("use dots, not `/` (`net.ipv4.ip_forward`)");
    }
    let segments: Vec<&str> = key.split('.').collect();
    if segments.len() < 2 || segments.iter().any(|s| s.is_empty()) {
        return Some("must be dotted segments (`net.ipv4.ip_forward`), with no empty segment");
    }
    if !segments.iter().all(|s| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
    }) {
        return Some("segments may only hold `a-z`, `0-9`, `_` and `-`");
    }
    None
}

/// `kind: Sysctl`.
pub(super) fn sysctl(cx: &mut Cx, d: &Doc) -> Option<SysctlSpec> {
    check_keys(cx, d.m, "", "a Sysctl", SYSCTL_KEYS);
    let key = required(cx, d, "Sysctl", "key").and_then(|n| {
        let k = text(cx, n, "key")?;
        if let Some(p) = sysctl_key_problem(&k) {
            cx.err(n.pos, "key", format!("invalid sysctl key {k:?}: {p}"));
            return None;
        }
        Some(k)
    });
    let value = required(cx, d, "Sysctl", "value").and_then(|n| {
        // A number as written (`010` stays `010`), not as the YAML parser read it.
        let raw = match &n.value {
            Value::Str(s) => s.clone(),
            Value::Int(_) | Value::Float(_) => token_at(d.src.text, n.pos)
                .filter(|t| {
                    t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_'))
                })
                .map(String::from)
                .or_else(|| n.scalar_text())?,
            v => {
                cx.err(
                    n.pos,
                    "value",
                    format!("must be a string or a number, found {}", v.kind()),
                );
                return None;
            }
        };
        let v = normalize_sysctl(&raw);
        if v.is_empty() {
            cx.err(n.pos, "value", "must not be empty");
            return None;
        }
        Some(v)
    });
    Some(SysctlSpec {
        key: key?,
        value: value?,
        origin: d.origin.clone(),
    })
}

/// `kind: Unit`.
pub(super) fn unit(cx: &mut Cx, d: &Doc) -> Option<UnitSpec> {
    let before = cx.diags.len();
    check_keys(cx, d.m, "", "a Unit", UNIT_KEYS);
    let name = required(cx, d, "Unit", "name").and_then(|n| unit_name(cx, n, "name"));
    let content = content_or_source(cx, d, "Unit", false).and_then(|c| match c {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            let at = get(d.m, "source").map_or(d.pos, |n| n.pos);
            cx.err(at, "source", "must be UTF-8 text (a unit file)");
        }),
    });
    let dropins = get(d.m, "dropins").and_then(|n| dropins(cx, n));
    let enabled = opt_bool(cx, d.m, "enabled");
    let state = get(d.m, "state").and_then(|n| {
        let s = text(cx, n, "state")?;
        match s.as_str() {
            "started" => Some(UnitRunState::Started),
            "stopped" => Some(UnitRunState::Stopped),
            _ => {
                cx.err(
                    n.pos,
                    "state",
                    format!("must be `started` or `stopped`, found {s:?}"),
                );
                None
            }
        }
    });
    let adopt = opt_bool(cx, d.m, "adopt");
    if cx.diags.len() > before {
        return None;
    }
    let spec = UnitSpec {
        name: name?,
        content: content.ok()?,
        dropins: dropins.unwrap_or_default(),
        enabled,
        state,
        adopt: adopt.unwrap_or(false),
        origin: d.origin.clone(),
    };
    if spec.content.is_none()
        && spec.dropins.is_empty()
        && spec.enabled.is_none()
        && spec.state.is_none()
    {
        cx.err(
            d.pos,
            "",
            format!(
                "Unit `{}` declares nothing: set `content`, `source`, `dropins`, `enabled` or `state`",
                spec.name
            ),
        );
        return None;
    }
    Some(spec)
}

/// `dropins: {NAME.conf: TEXT}`; the texts are kept as written.
fn dropins(cx: &mut Cx, n: &Node) -> Option<BTreeMap<String, String>> {
    let m = as_map(cx, n, "dropins")?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in m {
        let path = format!("dropins.{}", k.name);
        let stem = k.name.strip_suffix(".conf").unwrap_or_default();
        if stem.is_empty() || k.name.contains('/') || k.name.starts_with('.') {
            cx.err(
                k.pos,
                "dropins",
                format!(
                    "drop-in name {:?} must be a file name ending in `.conf` (`override.conf`)",
                    k.name
                ),
            );
            ok = false;
            continue;
        }
        match &v.value {
            Value::Str(s) => {
                out.insert(k.name.clone(), s.clone());
            }
            other => {
                cx.err(
                    v.pos,
                    &path,
                    format!("must be a string, found {}", other.kind()),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// The files berth writes for a unit (the unit file when it has `content`, and each drop-in).
pub(super) fn unit_paths(u: &UnitSpec) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if u.content.is_some() {
        out.push(crate::model::host::unit_path(&u.name));
    }
    for d in u.dropins.keys() {
        out.push(crate::model::host::dropin_path(&u.name, d));
    }
    out
}
