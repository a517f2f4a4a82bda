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
