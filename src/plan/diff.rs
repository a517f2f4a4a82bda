//! Field-by-field differences between the spec a container was created from (its
//! `io.berth.spec` label) and the desired one. Secret values are never shown: only their keys.

use std::collections::{BTreeMap, BTreeSet};

use super::reason::Reason;
use crate::model::{ObservedContainer, ServiceSpec};

/// Why a running container's spec differs from the desired one, field by field.
pub(crate) fn spec_reasons(spec: &ServiceSpec, current: &ObservedContainer) -> Vec<Reason> {
    let desired_hash = spec.spec_hash();
    if current.spec_hash() == Some(desired_hash.as_str()) {
        return Vec::new();
    }
    let Some(old) = current
        .spec_json()
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
    else {
        return vec![Reason::UnknownSpec];
    };
    let new = serde_json::to_value(spec).unwrap_or_default();
    let reasons = diff_specs(&old, &new);
    if reasons.is_empty() {
        // The hash label disagrees with a spec label that matches: the labels were edited.
        return vec![Reason::UnknownSpec];
    }
    reasons
}

/// Fields whose values are secret: only key names are ever shown.
const HIDDEN_FIELDS: &[&str] = &["environment"];
/// Map fields shown key by key.
const KEYED_FIELDS: &[&str] = &[
    "environment",
    "labels",
    "sysctls",
    "ulimits",
    "networks",
    "depends_on",
];

fn diff_specs(old: &serde_json::Value, new: &serde_json::Value) -> Vec<Reason> {
    use serde_json::Value;
    let empty = serde_json::Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut reasons = Vec::new();
    for key in keys {
        let (o, n) = (old.get(key), new.get(key));
        if o == n {
            continue;
        }
        let field = key.clone();
        if key == "config_files" {
            // Bind-mounted files of the config repository: say which one, not its digest.
            let (om, nm) = (
                o.and_then(Value::as_object).unwrap_or(&empty),
                n.and_then(Value::as_object).unwrap_or(&empty),
            );
            let inner: BTreeSet<&String> = om.keys().chain(nm.keys()).collect();
            for k in inner {
                let detail = match (om.get(k), nm.get(k)) {
                    (a, b) if a == b => continue,
                    (None, Some(_)) => format!("{k} now mounted"),
                    (Some(_), None) => format!("{k} no longer mounted"),
                    _ => format!("{k} changed"),
                };
                reasons.push(Reason::Field {
                    field: "config file".into(),
                    detail,
                });
            }
        } else if KEYED_FIELDS.contains(&key.as_str()) {
            let hidden = HIDDEN_FIELDS.contains(&key.as_str());
            let (om, nm) = (
                o.and_then(Value::as_object).unwrap_or(&empty),
                n.and_then(Value::as_object).unwrap_or(&empty),
            );
            let inner: BTreeSet<&String> = om.keys().chain(nm.keys()).collect();
            for k in inner {
                let detail = match (om.get(k), nm.get(k)) {
                    (a, b) if a == b => continue,
                    (None, Some(v)) if !hidden => format!("{k} added ({})", compact(v)),
                    (None, Some(_)) => format!("{k} added (value hidden)"),
                    (Some(_), None) => format!("{k} removed"),
                    (Some(a), Some(b)) if !hidden => {
                        let (a, b) = cut_pair(&flat(a), &flat(b));
                        format!("{k} changed: {a} → {b}")
                    }
                    _ => format!("{k} changed (value hidden)"),
                };
                reasons.push(Reason::Field {
                    field: field.clone(),
                    detail,
                });
            }
        } else if key == "mounts" {
            reasons.extend(diff_mounts(o, n));
        } else if key == "ports" {
            let show = |v: Option<&Value>| {
                let ports: Vec<crate::model::PortSpec> = v
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                if ports.is_empty() {
                    return "(none)".to_string();
                }
                ports
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            reasons.push(Reason::Field {
                field,
                detail: format!("{} → {}", show(o), show(n)),
            });
        } else if let (Some(Value::Object(om)), Some(Value::Object(nm))) = (o, n) {
            // Nested settings (healthcheck, logging, blkio …) are shown key by key.
            let inner: BTreeSet<&String> = om.keys().chain(nm.keys()).collect();
            for k in inner {
                let (a, b) = (om.get(k), nm.get(k));
                if a == b {
                    continue;
                }
                let (a, b) = show_pair(&field, k, a, b);
                reasons.push(Reason::Field {
                    field: format!("{field}.{k}"),
                    detail: format!("{a} → {b}"),
                });
            }
        } else {
            let (a, b) = show_pair("", &field, o, n);
            reasons.push(Reason::Field {
                field,
                detail: format!("{a} → {b}"),
            });
        }
    }
    reasons
}

/// Nanosecond durations in the spec (the Engine's unit), by `parent.key`.
const NANOS: &[&str] = &[
    "healthcheck.interval",
    "healthcheck.timeout",
    "healthcheck.start_period",
    "healthcheck.start_interval",
];

/// Both sides of a changed value, readable: durations as `1m30s`, and long values cut around
/// where they differ (so two long values that share a prefix do not look the same).
fn show_pair(
    parent: &str,
    key: &str,
    old: Option<&serde_json::Value>,
    new: Option<&serde_json::Value>,
) -> (String, String) {
    let path = if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    };
    let render = |v: Option<&serde_json::Value>| match v {
        None => "(unset)".to_string(),
        Some(v) if NANOS.contains(&path.as_str()) => match v.as_i64() {
            Some(n) => human_nanos(n),
            None => flat(v),
        },
        Some(v) if path == "stop_grace_period" => match v.as_i64() {
            Some(s) => human_nanos(s.saturating_mul(1_000_000_000)),
            None => flat(v),
        },
        Some(v) => flat(v),
    };
    cut_pair(&render(old), &render(new))
}

/// `90_000_000_000` → `1m30s`; `500_000_000` → `500ms`.
pub(crate) fn human_nanos(n: i64) -> String {
    if n <= 0 {
        return "0s".into();
    }
    let ms = n / 1_000_000;
    if ms < 1000 {
        return if ms == 0 {
            format!("{n}ns")
        } else {
            format!("{ms}ms")
        };
    }
    let (h, m, s, rest_ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || rest_ms > 0 {
        if rest_ms > 0 {
            out.push_str(format!("{s}.{:03}", rest_ms).trim_end_matches('0'));
            out.push('s');
        } else {
            out.push_str(&format!("{s}s"));
        }
    }
    out
}

fn flat(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The longest a value is shown.
const SHOWN: usize = 80;

/// Cuts two values for display around the first place they differ, each to at most [`SHOWN`]
/// characters, so the difference is always visible.
pub(crate) fn cut_pair(a: &str, b: &str) -> (String, String) {
    let (ac, bc): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if ac.len() <= SHOWN && bc.len() <= SHOWN {
        return (a.to_string(), b.to_string());
    }
    let common = ac.iter().zip(&bc).take_while(|(x, y)| x == y).count();
    // Keep a little context before the first difference.
    let start = common.saturating_sub(20);
    let window = |c: &[char]| -> String {
        let mut s = String::new();
        if start > 0 {
            s.push('…');
        }
        let end = (start + SHOWN - 2).min(c.len());
        s.extend(&c[start.min(c.len())..end]);
        if end < c.len() {
            s.push('…');
        }
        s
    };
    (window(&ac), window(&bc))
}

/// Mounts compared by target, so a changed secret file says which mount, never its content.
fn diff_mounts(old: Option<&serde_json::Value>, new: Option<&serde_json::Value>) -> Vec<Reason> {
    let by_target = |v: Option<&serde_json::Value>| -> BTreeMap<String, serde_json::Value> {
        v.and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .map(|m| {
                let target = m.get("target").and_then(|t| t.as_str()).unwrap_or("?");
                (target.to_string(), m.clone())
            })
            .collect()
    };
    let (o, n) = (by_target(old), by_target(new));
    let targets: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    let mut reasons = Vec::new();
    for t in targets {
        let detail = match (o.get(t), n.get(t)) {
            (a, b) if a == b => continue,
            (None, Some(m)) => format!("{t} added ({})", describe_mount(m)),
            (Some(_), None) => format!("{t} removed"),
            (Some(a), Some(b)) => {
                let file = |m: &serde_json::Value| m["source"]["type"] == "file";
                if file(a) && file(b) && a["source"]["file"] == b["source"]["file"] {
                    format!("{t} content changed (content hidden)")
                } else {
                    format!("{t}: {} → {}", describe_mount(a), describe_mount(b))
                }
            }
            _ => continue,
        };
        reasons.push(Reason::Field {
            field: "mounts".into(),
            detail,
        });
    }
    reasons
}

fn describe_mount(m: &serde_json::Value) -> String {
    let src = &m["source"];
    let ro = if m["read_only"] == true {
        ", read-only"
    } else {
        ""
    };
    let what = match src["type"].as_str().unwrap_or("?") {
        "volume" => format!("volume {}", src["name"].as_str().unwrap_or("?")),
        "bind" => format!("bind {}", src["path"].as_str().unwrap_or("?")),
        "file" => format!("file {}", src["file"].as_str().unwrap_or("?")),
        other => other.to_string(),
    };
    format!("{what}{ro}")
}

/// One-line JSON for a value, strings unquoted, cut at 80 characters.
fn compact(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}
