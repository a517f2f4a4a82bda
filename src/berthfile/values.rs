//! Value readers the job kinds share: commands, counts, ratios, choices, durations, lists and
//! maps of (secret) strings. Each reports what is wrong where it is written.

use std::collections::BTreeMap;
use std::time::Duration;

use super::kinds::Doc;
use super::read::*;
use crate::compose::read::{Cx, describe, parse_duration};
use crate::compose::yaml::{Node, Pos, Value};
use crate::model::Secret;

/// A command: a list of strings, or one string split the way a shell would (as Compose does).
pub(super) fn command(cx: &mut Cx, n: &Node, path: &str) -> Option<Vec<String>> {
    let words = match &n.value {
        Value::Str(s) => match shlex::split(s) {
            Some(w) => w,
            None => {
                cx.err(n.pos, path, "unbalanced quotes in the command");
                return None;
            }
        },
        Value::Seq(items) => {
            let mut out = Vec::new();
            for i in items {
                match &i.value {
                    Value::Str(s) => out.push(s.clone()),
                    Value::Int(v) => out.push(v.to_string()),
                    v => {
                        cx.err(
                            i.pos,
                            path,
                            format!("items must be strings, found {}", v.kind()),
                        );
                        return None;
                    }
                }
            }
            out
        }
        v => {
            cx.err(
                n.pos,
                path,
                format!("must be a list of strings or a string, found {}", v.kind()),
            );
            return None;
        }
    };
    if words.is_empty() {
        cx.err(n.pos, path, "must not be empty");
        return None;
    }
    Some(words)
}

/// A non-negative integer (also as a string: what `${VAR}` gives).
pub(super) fn count(cx: &mut Cx, n: &Node, path: &str) -> Option<u32> {
    let v = match &n.value {
        Value::Int(i) => u32::try_from(*i).ok(),
        Value::Str(s) => s.trim().parse::<u32>().ok(),
        _ => None,
    };
    if v.is_none() {
        cx.err(
            n.pos,
            path,
            format!(
                "must be a whole number of 0 or more, found {}",
                describe(&n.value)
            ),
        );
    }
    v
}

/// A fraction in 0..=1 (`0.5`), or a percentage (`"50%"`).
pub(super) fn ratio(cx: &mut Cx, n: &Node, path: &str) -> Option<f64> {
    let v = match &n.value {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        Value::Str(s) => match s.trim().strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().ok().map(|p| p / 100.0),
            None => s.trim().parse::<f64>().ok(),
        },
        _ => None,
    };
    match v {
        Some(v) if (0.0..=1.0).contains(&v) => Some(v),
        _ => {
            cx.err(
                n.pos,
                path,
                format!(
                    "must be a fraction from 0 to 1 (0.5) or a percentage (\"50%\"), found {}",
                    describe(&n.value)
                ),
            );
            None
        }
    }
}

pub(super) fn choice<T: Copy>(
    cx: &mut Cx,
    n: &Node,
    path: &str,
    options: &[(&str, T)],
) -> Option<T> {
    let s = text(cx, n, path)?;
    match options.iter().find(|(k, _)| *k == s) {
        Some((_, v)) => Some(*v),
        None => {
            let known: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
            cx.err(
                n.pos,
                path,
                format!("must be one of {}, found {s:?}", known.join(", ")),
            );
            None
        }
    }
}

pub(super) fn opt_duration(cx: &mut Cx, d: &Doc, key: &str, default: Duration) -> Option<Duration> {
    let Some(n) = get(d.m, key) else {
        return Some(default);
    };
    let s = text(cx, n, key)?;
    match parse_duration(&s) {
        Ok(ns) if ns > 0 => Some(Duration::from_nanos(ns as u64)),
        Ok(_) => {
            cx.err(n.pos, key, "must be longer than 0");
            None
        }
        Err(e) => {
            cx.err(n.pos, key, e);
            None
        }
    }
}

pub(super) fn required_text(
    cx: &mut Cx,
    d: &Doc,
    kind: &str,
    key: &str,
    what: &str,
) -> Option<(String, Pos)> {
    match get(d.m, key) {
        Some(n) => {
            let s = text(cx, n, key)?;
            if s.is_empty() {
                cx.err(n.pos, key, "must not be empty");
                return None;
            }
            Some((s, n.pos))
        }
        None => {
            cx.err(d.pos, "", format!("a {kind} needs `{key}` ({what})"));
            None
        }
    }
}

pub(super) fn seq<'n>(cx: &mut Cx, n: &'n Node, path: &str) -> &'n [Node] {
    match &n.value {
        Value::Seq(items) => items,
        v => {
            cx.err(n.pos, path, format!("must be a list, found {}", v.kind()));
            &[]
        }
    }
}

/// A list of strings under `key`, each with its position.
pub(super) fn list(cx: &mut Cx, m: &Map, key: &str) -> Vec<(String, Pos)> {
    let Some(n) = get(m, key) else {
        return Vec::new();
    };
    seq(cx, n, key)
        .iter()
        .filter_map(|i| text(cx, i, key).map(|s| (s, i.pos)))
        .collect()
}

/// A mapping (or a `KEY=VALUE` list) of secret values.
pub(super) fn env_map(cx: &mut Cx, n: &Node, path: &str) -> BTreeMap<String, Secret> {
    let mut out = BTreeMap::new();
    match &n.value {
        Value::Seq(items) => {
            for i in items {
                let Some(s) = text(cx, i, path) else { continue };
                match s.split_once('=') {
                    Some((k, v)) if !k.is_empty() => {
                        out.insert(k.to_string(), Secret::new(v));
                    }
                    _ => cx.err(i.pos, path, "items must be KEY=VALUE"),
                }
            }
        }
        Value::Map(m) => {
            for (k, v) in m {
                let val = match &v.value {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    Value::Float(f) => f.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Null => String::new(),
                    other => {
                        cx.err(
                            v.pos,
                            &format!("{path}.{}", k.name),
                            format!("must be a string, found {}", other.kind()),
                        );
                        continue;
                    }
                };
                out.insert(k.name.clone(), Secret::new(val));
            }
        }
        v => cx.err(
            n.pos,
            path,
            format!(
                "must be a mapping or a list of KEY=VALUE, found {}",
                v.kind()
            ),
        ),
    }
    out
}

pub(super) fn str_map(cx: &mut Cx, n: &Node, path: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(m) = as_map(cx, n, path) else {
        return out;
    };
    for (k, v) in m {
        let val = match &v.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                cx.err(
                    v.pos,
                    &format!("{path}.{}", k.name),
                    format!("must be a string, found {}", other.kind()),
                );
                continue;
            }
        };
        out.insert(k.name.clone(), val);
    }
    out
}
