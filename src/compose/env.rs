//! `env_file`: variables read from files into a service's environment.

use std::collections::BTreeMap;

use super::interp;
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
