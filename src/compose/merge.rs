//! Compose's merge rules for one service over another (`extends`, override documents) and for
//! whole files (several YAML documents in one file), plus a position-blind equality for
//! `include` conflicts. The local side is the override, the base the default:
//! - scalars, `command`, `entrypoint`, `healthcheck.test` and `profiles`: the local value
//!   replaces the base's;
//! - mappings: merged key by key, recursively;
//! - keys written either as a list or a mapping (`environment`, `labels`, ...): merged by key;
//! - `volumes`, `tmpfs`, `secrets`, `configs`, `devices`: by container path;
//! - other sequences: concatenated, exact duplicates removed;
//! - `key: !reset ...` removes the base's `key`; `key: !override ...` replaces it unmerged.

use super::yaml::{Key, MergeTag, Node, Value};

/// Merge a file's YAML documents in order (each later one overrides, as Compose does): the
/// services by [`merge_service`], the other top-level mappings key by key.
pub(crate) fn merge_documents(docs: Vec<Node>) -> Option<Node> {
    let mut it = docs.into_iter();
    let first = it.next()?;
    Some(it.fold(first, |base, local| {
        let (Value::Map(bm), Value::Map(lm)) = (&base.value, &local.value) else {
            return local;
        };
        let mut out = bm.clone();
        for (lk, lv) in lm {
            if lk.merge == MergeTag::Reset {
                out.retain(|(k, _)| k.name != lk.name);
                continue;
            }
            let Some(slot) = out.iter_mut().find(|(k, _)| k.name == lk.name) else {
                out.push((lk.clone(), lv.clone()));
                continue;
            };
            let merged = match (lk.name.as_str(), &slot.1.value, &lv.value) {
                _ if lk.merge == MergeTag::Override => lv.clone(),
                ("services", Value::Map(bs), Value::Map(ls)) => {
                    let mut svcs = bs.clone();
                    for (sk, sv) in ls {
                        if sk.merge == MergeTag::Reset {
                            svcs.retain(|(k, _)| k.name != sk.name);
                            continue;
                        }
                        match svcs.iter_mut().find(|(k, _)| k.name == sk.name) {
                            Some(s) if sk.merge == MergeTag::Override => {
                                *s = (sk.clone(), sv.clone())
                            }
                            Some(s) => *s = (sk.clone(), merge_service(s.1.clone(), sv.clone())),
                            None => svcs.push((sk.clone(), sv.clone())),
                        }
                    }
                    Node {
                        value: Value::Map(svcs),
                        pos: lv.pos,
                    }
                }
                _ => merge_value(&slot.1, lv),
            };
            *slot = (lk.clone(), merged);
        }
        Node {
            value: Value::Map(out),
            pos: base.pos,
        }
    }))
}

/// The same YAML content, wherever it was written.
pub(crate) fn same(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Seq(x), Value::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.iter()
                        .find(|(k2, _)| k2.name == k.name)
                        .is_some_and(|(_, v2)| same(v, v2))
                })
        }
        (x, y) => x == y,
    }
}

/// Keys whose local value replaces the base's outright.
const REPLACED: &[&str] = &["command", "entrypoint", "profiles"];
/// Keys written as a list (`K=V` / `K:V` / `K`) or a mapping: merged by key.
const BY_KEY: &[(&str, char)] = &[
    ("environment", '='),
    ("labels", '='),
    ("annotations", '='),
    ("sysctls", '='),
    ("extra_hosts", '='),
    ("networks", '\0'),
    ("depends_on", '\0'),
];
/// Sequences whose entries are identified by the container path they mount.
const BY_TARGET: &[&str] = &["volumes", "tmpfs", "secrets", "configs", "devices"];

/// `local` over `base` (both service mappings).
pub(crate) fn merge_service(base: Node, local: Node) -> Node {
    let (Value::Map(bm), Value::Map(lm)) = (&base.value, &local.value) else {
        return local;
    };
    let mut out: Vec<(Key, Node)> = bm.clone();
    for (lk, lv) in lm {
        if lk.merge == MergeTag::Reset {
            out.retain(|(k, _)| k.name != lk.name);
            continue;
        }
        let Some(slot) = out.iter_mut().find(|(k, _)| k.name == lk.name) else {
            out.push((lk.clone(), lv.clone()));
            continue;
        };
        let name = lk.name.as_str();
        let merged = if REPLACED.contains(&name)
            || lv.value == Value::Null
            || lk.merge == MergeTag::Override
        {
            lv.clone()
        } else if let Some((_, sep)) = BY_KEY.iter().find(|(k, _)| *k == name) {
            merge_by_key(&slot.1, lv, *sep, name == "extra_hosts")
        } else if BY_TARGET.contains(&name) {
            merge_by_target(&slot.1, lv, name)
        } else if name == "healthcheck" {
            merge_map(&slot.1, lv, &["test"])
        } else {
            merge_value(&slot.1, lv)
        };
        *slot = (lk.clone(), merged);
    }
    Node {
        value: Value::Map(out),
        pos: local.pos,
    }
}

/// Generic merge: mappings recursively, sequences concatenated without exact duplicates,
/// anything else replaced.
fn merge_value(base: &Node, local: &Node) -> Node {
    match (&base.value, &local.value) {
        (Value::Map(_), Value::Map(_)) => merge_map(base, local, &[]),
        (Value::Seq(b), Value::Seq(l)) => {
            let mut items = b.clone();
            for it in l {
                items.retain(|x| x.value != it.value);
                items.push(it.clone());
            }
            Node {
                value: Value::Seq(items),
                pos: local.pos,
            }
        }
        _ => local.clone(),
    }
}

fn merge_map(base: &Node, local: &Node, replaced: &[&str]) -> Node {
    let (Value::Map(bm), Value::Map(lm)) = (&base.value, &local.value) else {
        return local.clone();
    };
    let mut out = bm.clone();
    for (lk, lv) in lm {
        if lk.merge == MergeTag::Reset {
            out.retain(|(k, _)| k.name != lk.name);
            continue;
        }
        match out.iter_mut().find(|(k, _)| k.name == lk.name) {
            Some(slot) => {
                let v = if replaced.contains(&lk.name.as_str()) || lk.merge == MergeTag::Override {
                    lv.clone()
                } else {
                    merge_value(&slot.1, lv)
                };
                *slot = (lk.clone(), v);
            }
            None => out.push((lk.clone(), lv.clone())),
        }
    }
    Node {
        value: Value::Map(out),
        pos: local.pos,
    }
}

/// A list-or-mapping value as mapping entries. List items `K<sep>V` become `K: V`, a bare `K`
/// (or any item when `sep` is `\0`) becomes `K: null`.
fn as_entries(n: &Node, sep: char, hosts: bool) -> Option<Vec<(Key, Node)>> {
    match &n.value {
        Value::Map(m) => Some(m.clone()),
        Value::Null => Some(Vec::new()),
        Value::Seq(items) => {
            let mut out = Vec::new();
            for it in items {
                let text = it.scalar_text()?;
                let split = if sep == '\0' {
                    None
                } else if hosts {
                    // `host=ip` or `host:ip` (an IPv6 address has colons too).
                    text.split_once('=').or_else(|| text.split_once(':'))
                } else {
                    text.split_once(sep)
                };
                let (k, v) = match split {
                    Some((k, v)) => (k.to_string(), Value::Str(v.to_string())),
                    None => (text.clone(), Value::Null),
                };
                out.retain(|(ok, _): &(Key, Node)| ok.name != k);
                out.push((
                    Key::new(k, it.pos),
                    Node {
                        value: v,
                        pos: it.pos,
                    },
                ));
            }
            Some(out)
        }
        _ => None,
    }
}

fn merge_by_key(base: &Node, local: &Node, sep: char, hosts: bool) -> Node {
    match (as_entries(base, sep, hosts), as_entries(local, sep, hosts)) {
        (Some(b), Some(l)) => {
            let mut out = b;
            for (lk, lv) in l {
                if lk.merge == MergeTag::Reset {
                    out.retain(|(k, _)| k.name != lk.name);
                    continue;
                }
                match out.iter_mut().find(|(k, _)| k.name == lk.name) {
                    Some(slot) if lk.merge == MergeTag::Override => *slot = (lk, lv),
                    // `networks: {x: {aliases: ...}}` / `depends_on: {x: {condition: ...}}`.
                    Some(slot) if matches!(lv.value, Value::Map(_)) => {
                        let v = merge_value(&slot.1, &lv);
                        *slot = (lk, v);
                    }
                    Some(slot) if lv.value == Value::Null && sep == '\0' => {
                        slot.0 = lk;
                    }
                    Some(slot) => *slot = (lk, lv),
                    None => out.push((lk, lv)),
                }
            }
            Node {
                value: Value::Map(out),
                pos: local.pos,
            }
        }
        // A shape the converter will report; keep the local value.
        _ => local.clone(),
    }
}

/// The container path a `volumes` / `tmpfs` / `secrets` / `configs` / `devices` entry uses.
fn target_of(kind: &str, n: &Node) -> Option<String> {
    match &n.value {
        Value::Map(m) => {
            let get = |k: &str| {
                m.iter()
                    .find(|(key, _)| key.name == k)
                    .and_then(|(_, v)| v.scalar_text())
            };
            get("target").or_else(|| get("source"))
        }
        _ => {
            let s = n.scalar_text()?;
            let parts: Vec<&str> = s.split(':').collect();
            Some(match kind {
                "tmpfs" => parts[0].to_string(),
                "secrets" | "configs" => s,
                // `src:target[:mode]` / `host[:container[:perms]]` / `/anonymous`.
                _ => parts.get(1).unwrap_or(&parts[0]).to_string(),
            })
        }
    }
}

fn merge_by_target(base: &Node, local: &Node, kind: &str) -> Node {
    let (Value::Seq(b), Value::Seq(l)) = (&base.value, &local.value) else {
        // `tmpfs: /x` (a single string) and the like: generic rules.
        let as_seq = |n: &Node| match &n.value {
            Value::Seq(_) => n.clone(),
            Value::Null => Node {
                value: Value::Seq(Vec::new()),
                pos: n.pos,
            },
            _ => Node {
                value: Value::Seq(vec![n.clone()]),
                pos: n.pos,
            },
        };
        let (b, l) = (as_seq(base), as_seq(local));
        if matches!((&b.value, &l.value), (Value::Seq(_), Value::Seq(_)))
            && (b.value != base.value || l.value != local.value)
        {
            return merge_by_target(&b, &l, kind);
        }
        return local.clone();
    };
    let local_targets: Vec<Option<String>> = l.iter().map(|n| target_of(kind, n)).collect();
    let mut items: Vec<Node> = b
        .iter()
        .filter(|n| {
            let t = target_of(kind, n);
            t.is_none() || !local_targets.contains(&t)
        })
        .cloned()
        .collect();
    items.extend(l.iter().cloned());
    Node {
        value: Value::Seq(items),
        pos: local.pos,
    }
}
