//! `env_file`: variables read from files into a service's environment.

use std::collections::BTreeMap;

use super::dotenv::{self, Format};
use super::read::*;
use super::yaml::{Node, Pos, Value};
use crate::model::*;

pub(super) fn env_files(
    cx: &mut Cx,
    st: &StackCtx,
    n: &Node,
    path: &str,
    env: &mut BTreeMap<String, Secret>,
) {
    let mut files: Vec<(String, bool, Format, Pos, String)> = Vec::new();
    match &n.value {
        Value::Seq(items) => {
            for (i, it) in items.iter().enumerate() {
                let ip = idx(path, i);
                if let Value::Map(m) = &it.value {
                    check_keys(cx, m, &ip, &["path", "required", "format"], &[]);
                    let Some(pn) = get(m, "path") else {
                        cx.err(it.pos, &ip, "`path` is required");
                        continue;
                    };
                    let Some(fp) = string(cx, pn, &child(&ip, "path")) else {
                        continue;
                    };
                    let required = opt_bool(cx, m, "required", &ip).unwrap_or(true);
                    // compose-go's formats: `.env` (default); Docker Compose adds `raw`.
                    let format = match get(m, "format") {
                        None => Format::DotEnv,
                        Some(f) => {
                            match string(cx, f, &child(&ip, "format")).as_deref() {
                                Some(".env") | None => Format::DotEnv,
                                Some("raw") => Format::Raw,
                                Some(other) => {
                                    cx.err(
                                    f.pos,
                                    &child(&ip, "format"),
                                    format!("unsupported env_file format {other:?} (use .env or raw)"),
                                );
                                    continue;
                                }
                            }
                        }
                    };
                    files.push((fp, required, format, pn.pos, child(&ip, "path")));
                } else if let Some(fp) = string(cx, it, &ip) {
                    files.push((fp, true, Format::DotEnv, it.pos, ip));
                }
            }
        }
        _ => {
            if let Some(fp) = string(cx, n, path) {
                files.push((fp, true, Format::DotEnv, n.pos, path.to_string()));
            }
        }
    }
    for (rel, required, format, pos, p) in files {
        let abs = clean_path(&st.dir.join(&rel));
        match std::fs::read_to_string(&abs) {
            // Interpolated with the project's variables, then the file's earlier entries.
            Ok(text) => match dotenv::parse(&text, format, &|k| st.vars.get(k).cloned()) {
                Ok(entries) => {
                    for e in entries {
                        env.insert(e.key, Secret::new(e.value));
                    }
                }
                Err(e) => cx.err(pos, &p, format!("{rel}:{}: {}", e.line, e.kind)),
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

/// `label_file`: labels read from `.env`-syntax files (compose-go), in order; a file's values
/// may use the labels of earlier files. The service's `labels` override them (the caller
/// applies those after).
pub(super) fn label_files(
    cx: &mut Cx,
    st: &StackCtx,
    n: &Node,
    path: &str,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let files = string_or_list(cx, n, path);
    for (i, (rel, pos)) in files.into_iter().enumerate() {
        let p = if matches!(n.value, Value::Seq(_)) {
            idx(path, i)
        } else {
            path.to_string()
        };
        let abs = clean_path(&st.dir.join(&rel));
        let text = match std::fs::read_to_string(&abs) {
            Ok(t) => t,
            Err(e) => {
                cx.err(
                    pos,
                    &p,
                    format!("cannot read label file {rel:?} ({}): {e}", abs.display()),
                );
                continue;
            }
        };
        let earlier = out.clone();
        match dotenv::parse(&text, Format::DotEnv, &|k| earlier.get(k).cloned()) {
            Ok(entries) => {
                for e in entries {
                    if let Some(prefix) = RESERVED_LABEL_PREFIXES
                        .iter()
                        .find(|p| e.key.starts_with(*p))
                    {
                        cx.err(
                            pos,
                            &p,
                            format!(
                                "{rel}:{}: label `{}` is reserved (`{prefix}*` labels are set by berth)",
                                e.line, e.key
                            ),
                        );
                        continue;
                    }
                    out.insert(e.key, e.value);
                }
            }
            Err(e) => cx.err(pos, &p, format!("{rel}:{}: {}", e.line, e.kind)),
        }
    }
    out
}

/// `develop:` is accepted but not applied; its shape is still checked as compose-go's schema
/// does (a `watch` rule needs `path` and a known `action`), so a typo is not waved through.
pub(super) fn check_develop(cx: &mut Cx, n: &Node, path: &str) {
    let Some(m) = as_map(cx, n, path) else {
        return;
    };
    check_keys(cx, m, path, &["watch"], &[]);
    let Some(w) = get(m, "watch") else {
        return;
    };
    let wp = child(path, "watch");
    let Value::Seq(items) = &w.value else {
        cx.err(
            w.pos,
            &wp,
            format!("must be a list, found {}", w.value.kind()),
        );
        return;
    };
    const ACTIONS: &[&str] = &["rebuild", "restart", "sync", "sync+restart", "sync+exec"];
    for (i, it) in items.iter().enumerate() {
        let ip = idx(&wp, i);
        let Some(rm) = as_map(cx, it, &ip) else {
            continue;
        };
        check_keys(
            cx,
            rm,
            &ip,
            &[
                "path",
                "action",
                "target",
                "ignore",
                "include",
                "exec",
                "initial_sync",
            ],
            &[],
        );
        for k in ["path", "action"] {
            if get(rm, k).is_none() {
                cx.err(it.pos, &ip, format!("missing property `{k}`"));
            }
        }
        if let Some(a) = get(rm, "action")
            && let Some(v) = string(cx, a, &child(&ip, "action"))
            && !ACTIONS.contains(&v.as_str())
        {
            cx.err(
                a.pos,
                &child(&ip, "action"),
                format!("invalid action {v:?} (use {})", ACTIONS.join(", ")),
            );
        }
    }
}
