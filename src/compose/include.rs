//! Top-level `include:`: other Compose files whose services, networks, volumes, secrets and
//! configs join the stack, as compose-go's `loader/include.go` and Docker Compose v2 do:
//! - short form `include: [path, ...]`, long form `{path, project_directory, env_file}`
//!   (`path` may be a list: the first file and override files merged onto it);
//! - paths resolve against the including file's project folder; an included file's relative
//!   paths (bind sources, `env_file`, secret/config files, its own `include` and `extends`)
//!   resolve against its project directory (its own folder unless `project_directory` says);
//! - it is interpolated with the including file's variables, plus those of its env files
//!   (default: `.env` in its project directory) for names not already set;
//! - a resource defined twice (by the including file and an included one, or by two included
//!   ones) is an error unless both definitions are the same (Docker Compose: "services.web
//!   conflicts with imported resource"); an include cycle is an error.
//!
//! Resolved on the located tree before conversion, so every problem in an included file is
//! reported at its own `file:line:col`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::dotenv;
use super::extends::{Resolver, rebase_paths};
use super::merge::{merge_documents, same};
use super::read::*;
use super::yaml::{self, Key, Node, Pos, Value};

/// The resource kinds an included file contributes.
const IMPORTED: [&str; 5] = ["services", "volumes", "networks", "secrets", "configs"];

/// Deeper nesting than this is refused (a cycle is reported before it).
const MAX_DEPTH: usize = 32;

/// The file whose `include:` is being applied.
pub(super) struct Including<'a> {
    /// Absolute path of the file (cycle detection).
    pub file: PathBuf,
    /// Its project folder: relative include paths resolve against it.
    pub dir: PathBuf,
    pub vars: &'a BTreeMap<String, String>,
    /// The files including this one, outermost first.
    pub chain: Vec<PathBuf>,
    /// The config root, absolute: messages name files relative to it.
    pub root: PathBuf,
}

/// Apply and remove `root`'s `include:`.
pub(super) fn apply(cx: &mut Cx, root: &mut Node, at: &Including) {
    let Value::Map(top) = &mut root.value else {
        return;
    };
    let Some(i) = top.iter().position(|(k, _)| k.name == "include") else {
        return;
    };
    let (_, inc) = top.remove(i);
    let items = match &inc.value {
        Value::Seq(items) => items.clone(),
        Value::Null => Vec::new(),
        other => {
            cx.err(
                inc.pos,
                "include",
                format!("must be a list, found {}", other.kind()),
            );
            return;
        }
    };
    for (i, it) in items.iter().enumerate() {
        let ip = idx("include", i);
        let Some(entry) = entry(cx, it, &ip) else {
            continue;
        };
        if let Some(imported) = load(cx, at, &entry, &ip) {
            import(cx, root, imported, &entry.display);
        }
    }
}

/// One `include:` entry, read.
struct Entry {
    /// The files: the first is the main one, the others override it. With where.
    paths: Vec<(String, Pos)>,
    project_directory: Option<String>,
    env_files: Vec<(String, Pos)>,
    pos: Pos,
    /// How messages name it (the first path as written).
    display: String,
}

fn entry(cx: &mut Cx, it: &Node, ip: &str) -> Option<Entry> {
    match &it.value {
        Value::Str(s) => Some(Entry {
            paths: vec![(s.clone(), it.pos)],
            project_directory: None,
            env_files: Vec::new(),
            pos: it.pos,
            display: s.clone(),
        }),
        Value::Map(m) => {
            check_keys(cx, m, ip, &["path", "project_directory", "env_file"], &[]);
            let Some(pn) = get(m, "path") else {
                cx.err(it.pos, ip, "`path` is required");
                return None;
            };
            let paths = string_or_list(cx, pn, &child(ip, "path"));
            let Some((first, _)) = paths.first().cloned() else {
                cx.err(pn.pos, &child(ip, "path"), "must name at least one file");
                return None;
            };
            Some(Entry {
                paths,
                project_directory: opt_string(cx, m, "project_directory", ip),
                env_files: get(m, "env_file")
                    .map(|n| string_or_list(cx, n, &child(ip, "env_file")))
                    .unwrap_or_default(),
                pos: it.pos,
                display: first,
            })
        }
        other => {
            cx.err(
                it.pos,
                ip,
                format!(
                    "must be a path or a mapping with `path`, found {}",
                    other.kind()
                ),
            );
            None
        }
    }
}

/// Read, merge, interpolate and resolve one entry's files; the included tree.
fn load(cx: &mut Cx, at: &Including, e: &Entry, ip: &str) -> Option<Node> {
    let first = clean_path(&at.dir.join(&e.paths[0].0));
    if at.chain.len() >= MAX_DEPTH {
        cx.err(
            e.pos,
            ip,
            format!("includes nest more than {MAX_DEPTH} deep"),
        );
        return None;
    }
    if first == at.file || at.chain.contains(&first) {
        let show = |p: &Path| rel_name(&at.root, p).display().to_string();
        let mut names: Vec<String> = at.chain.iter().map(|p| show(p)).collect();
        names.push(show(&at.file));
        names.push(show(&first));
        cx.err(
            e.paths[0].1,
            ip,
            format!("include cycle: {}", names.join(" -> ")),
        );
        return None;
    }
    let project_dir = match &e.project_directory {
        Some(d) => clean_path(&at.dir.join(d)),
        None => first.parent().unwrap_or(Path::new("/")).to_path_buf(),
    };
    let vars = include_vars(cx, at, e, &project_dir, ip)?;

    let mut docs = Vec::new();
    for (k, (p, pos)) in e.paths.iter().enumerate() {
        let abs = if k == 0 {
            first.clone()
        } else {
            clean_path(&at.dir.join(p))
        };
        docs.extend(read_file(cx, &at.root, &abs, p, *pos, ip)?);
    }
    let mut tree = merge_documents(docs)?;
    interpolate_tree(cx, &mut tree, "", &vars);

    // Its own includes, then its own `extends`, in its own context.
    let mut chain = at.chain.clone();
    chain.push(at.file.clone());
    apply(
        cx,
        &mut tree,
        &Including {
            file: first.clone(),
            dir: project_dir.clone(),
            vars: &vars,
            chain,
            root: at.root.clone(),
        },
    );
    resolve_extends(cx, &mut tree, &first, &project_dir, &vars);
    rebase(&mut tree, &project_dir);
    Some(tree)
}

/// The including file's variables, plus the included one's env files for names not set.
fn include_vars(
    cx: &mut Cx,
    at: &Including,
    e: &Entry,
    project_dir: &Path,
    ip: &str,
) -> Option<BTreeMap<String, String>> {
    let mut files: Vec<(PathBuf, Pos)> = Vec::new();
    if e.env_files.is_empty() {
        let f = project_dir.join(".env");
        if f.is_file() {
            files.push((f, e.pos));
        }
    } else {
        for (f, pos) in &e.env_files {
            if f != "/dev/null" {
                files.push((clean_path(&at.dir.join(f)), *pos));
            }
        }
    }
    let mut from_files: BTreeMap<String, String> = BTreeMap::new();
    for (f, pos) in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(err) => {
                cx.err(
                    pos,
                    &child(ip, "env_file"),
                    format!("cannot read env file {}: {err}", f.display()),
                );
                return None;
            }
        };
        let lookup = |k: &str| at.vars.get(k).or_else(|| from_files.get(k)).cloned();
        match dotenv::parse(&text, dotenv::Format::DotEnv, &lookup) {
            Ok(entries) => {
                for en in entries {
                    from_files.insert(en.key, en.value);
                }
            }
            Err(err) => {
                cx.err(
                    pos,
                    &child(ip, "env_file"),
                    format!("{}:{}: {}", f.display(), err.line, err.kind),
                );
                return None;
            }
        }
    }
    let mut vars = at.vars.clone();
    for (k, v) in from_files {
        vars.entry(k).or_insert(v);
    }
    Some(vars)
}

/// A file's documents, positioned in a file of their own (see [`Cx::others`]).
fn read_file(
    cx: &mut Cx,
    root: &Path,
    abs: &Path,
    written: &str,
    pos: Pos,
    ip: &str,
) -> Option<Vec<Node>> {
    let text = match std::fs::read_to_string(abs) {
        Ok(t) => t,
        Err(e) => {
            cx.err(
                pos,
                ip,
                format!("cannot read {written:?} ({}): {e}", abs.display()),
            );
            return None;
        }
    };
    let index = match u16::try_from(cx.others.len() + 1) {
        Ok(i) => i,
        Err(_) => {
            cx.err(pos, ip, "too many files");
            return None;
        }
    };
    cx.others.push(rel_name(root, abs));
    match yaml::parse_documents(&text) {
        Ok(mut docs) => {
            for d in &mut docs {
                yaml::set_file(d, index);
            }
            Some(docs)
        }
        Err(e) => {
            let p = Pos {
                line: e.pos.line.max(1),
                col: e.pos.col.max(1),
                file: index,
            };
            cx.err(p, "", format!("invalid YAML: {}", e.message));
            None
        }
    }
}

/// How messages name a file: relative to the config root when inside it.
fn rel_name(root: &Path, abs: &Path) -> PathBuf {
    abs.strip_prefix(root).unwrap_or(abs).to_path_buf()
}

/// Resolve the `extends` of the included file's services against its own folder.
fn resolve_extends(
    cx: &mut Cx,
    tree: &mut Node,
    file: &Path,
    project_dir: &Path,
    vars: &BTreeMap<String, String>,
) {
    let Value::Map(top) = &mut tree.value else {
        return;
    };
    let Some((_, services)) = top.iter_mut().find(|(k, _)| k.name == "services") else {
        return;
    };
    let Value::Map(svcs) = &mut services.value else {
        return;
    };
    let st = StackCtx {
        name: String::new(),
        dir: project_dir.to_path_buf(),
        vars,
        profiles: Default::default(),
        root: None,
    };
    let snapshot = svcs.clone();
    let mut resolver = Resolver::new(&st, file, &snapshot);
    for (k, v) in svcs.iter_mut() {
        if matches!(&v.value, Value::Map(m) if m.iter().any(|(k, _)| k.name == "extends")) {
            match resolver.resolve_main(cx, &k.name) {
                Some(r) => *v = r,
                // Reported; drop the `extends` so the stack does not resolve it again.
                None => {
                    if let Value::Map(m) = &mut v.value {
                        m.retain(|(k, _)| k.name != "extends");
                    }
                }
            }
        }
    }
}

/// Make the included file's relative host paths absolute against its project directory.
fn rebase(tree: &mut Node, dir: &Path) {
    let Value::Map(top) = &mut tree.value else {
        return;
    };
    for (k, v) in top.iter_mut() {
        match (k.name.as_str(), &mut v.value) {
            ("services", Value::Map(svcs)) => {
                for (_, s) in svcs.iter_mut() {
                    rebase_paths(s, dir);
                }
            }
            ("secrets" | "configs", Value::Map(objs)) => {
                for (_, o) in objs.iter_mut() {
                    if let Value::Map(om) = &mut o.value {
                        for (ok, ov) in om.iter_mut() {
                            if ok.name == "file"
                                && let Value::Str(s) = &mut ov.value
                                && !s.starts_with('/')
                            {
                                *s = clean_path(&dir.join(&*s)).to_string_lossy().into_owned();
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Add the included resources to `root`; a different definition of the same name is an error.
fn import(cx: &mut Cx, root: &mut Node, imported: Node, display: &str) {
    let Value::Map(from) = imported.value else {
        return;
    };
    let Value::Map(top) = &mut root.value else {
        return;
    };
    for (kind_key, node) in from {
        if !IMPORTED.contains(&kind_key.name.as_str()) {
            continue;
        }
        let Value::Map(entries) = node.value else {
            continue;
        };
        let slot = match top.iter().position(|(k, _)| k.name == kind_key.name) {
            Some(i) => i,
            None => {
                top.push((
                    Key::new(kind_key.name.clone(), kind_key.pos),
                    Node {
                        value: Value::Map(Vec::new()),
                        pos: node.pos,
                    },
                ));
                top.len() - 1
            }
        };
        let target = &mut top[slot].1;
        if matches!(target.value, Value::Null) {
            target.value = Value::Map(Vec::new());
        }
        let Value::Map(to) = &mut target.value else {
            continue; // the including file's own shape error is reported by conversion
        };
        for (name, def) in entries {
            if name.name.starts_with("x-") {
                continue;
            }
            match to.iter().find(|(k, _)| k.name == name.name) {
                Some((_, existing)) if same(existing, &def) => {}
                Some((k, _)) => cx.err(
                    k.pos,
                    &child(&kind_key.name, &name.name),
                    format!("conflicts with imported resource (from {display})"),
                ),
                None => to.push((name, def)),
            }
        }
    }
}
