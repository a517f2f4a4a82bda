//! `extends`: a service built on another service, of this file or of another file.
//!
//! Resolved on the located YAML tree, before conversion, so that every later check sees one
//! merged service and every node keeps where it was written (a base from another file keeps
//! that file's positions: its problems are reported in that file).
//!
//! Merge rules (the Compose specification's "merging service definitions"; the local service is
//! the override, the base the default):
//! - scalars, `command`, `entrypoint`, `healthcheck.test` and `profiles`: the local value
//!   replaces the base's;
//! - mappings (`deploy`, `logging`, `healthcheck`, `build`, `blkio_config`, `storage_opt`,
//!   `ulimits`, ...): merged key by key, recursively;
//! - keys written either as a list or a mapping (`environment`, `labels`, `annotations`,
//!   `sysctls`, `extra_hosts`, `networks`, `depends_on`): both sides are read as mappings and
//!   merged by key;
//! - `volumes`, `tmpfs`, `secrets`, `configs`, `devices`: concatenated, an entry of the local
//!   service replacing the base's entry for the same container path;
//! - other sequences (`ports`, `expose`, `cap_add`, `dns`, `env_file`, ...): concatenated,
//!   exact duplicates removed.
//!
//! Everything is inherited, including keys that name other services (`depends_on`, `links`,
//! `volumes_from`, `network_mode: service:x`): as the specification says, those services (and
//! the networks, volumes, secrets and configs a base uses) must be declared in this file.
//! `file:` is relative to the folder of the file that declares the `extends`; from another
//! folder, relative bind-mount sources and `env_file` paths of the base are made absolute
//! against the base's folder. Only the named service of another file is read; its top-level
//! declarations are not imported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::merge::merge_service;
use super::read::{Cx, StackCtx, check_keys, clean_path, interpolate_tree};
use super::yaml::{self, Key, Node, Pos, Value};

/// A file holding bases: its services and folder.
struct Source {
    /// Absolute file path (identity, for cycle detection).
    abs: PathBuf,
    dir: PathBuf,
    services: Vec<(Key, Node)>,
}

pub(crate) struct Resolver<'a> {
    st: &'a StackCtx<'a>,
    /// The stack's own file is `sources[0]`; other files are read once.
    sources: Vec<Source>,
    /// Absolute path → index in `sources` (`None`: could not be read).
    loaded: BTreeMap<PathBuf, Option<usize>>,
    /// Cycles already reported (their members, sorted), so each is reported once.
    cycles: BTreeSet<Vec<(usize, String)>>,
}

impl<'a> Resolver<'a> {
    pub fn new(st: &'a StackCtx<'a>, main_file: &Path, services: &[(Key, Node)]) -> Self {
        let abs = st.dir.join(main_file.file_name().unwrap_or_default());
        let mut loaded = BTreeMap::new();
        loaded.insert(abs.clone(), Some(0));
        Resolver {
            st,
            sources: vec![Source {
                abs,
                dir: st.dir.clone(),
                services: services.to_vec(),
            }],
            loaded,
            cycles: BTreeSet::new(),
        }
    }

    /// The service `name` of the stack's own file with its `extends` resolved; `None` when it
    /// has no `extends` (use the node as written) or when resolving failed (reported).
    pub fn resolve_main(&mut self, cx: &mut Cx, name: &str) -> Option<Node> {
        let node = find(&self.sources[0].services, name)?.clone();
        let Value::Map(m) = &node.value else {
            return None;
        };
        m.iter().find(|(k, _)| k.name == "extends")?;
        let mut chain = Vec::new();
        self.resolve(cx, 0, name, &mut chain)
    }

    /// Service `name` of `sources[src]`, fully resolved.
    fn resolve(
        &mut self,
        cx: &mut Cx,
        src: usize,
        name: &str,
        chain: &mut Vec<(usize, String)>,
    ) -> Option<Node> {
        let node = find(&self.sources[src].services, name)?.clone();
        let Value::Map(m) = &node.value else {
            return Some(node);
        };
        let Some((ext_key, ext)) = m.iter().find(|(k, _)| k.name == "extends") else {
            return Some(node);
        };
        let (ext_key, ext) = (ext_key.clone(), ext.clone());
        let path = format!("services.{name}.extends");
        // `extends: base` or `extends: {service: base, file: other.yaml}`.
        let (base_name, base_pos, file) = match &ext.value {
            Value::Str(s) => (s.clone(), ext.pos, None),
            Value::Map(em) => {
                check_keys(cx, em, &path, &["service", "file"], &[]);
                let Some((_, svc)) = em.iter().find(|(k, _)| k.name == "service") else {
                    cx.err(ext.pos, &path, "`service` is required");
                    return None;
                };
                let Some(svc_name) = svc.scalar_text() else {
                    cx.err(svc.pos, &format!("{path}.service"), "must be a string");
                    return None;
                };
                let file = match em.iter().find(|(k, _)| k.name == "file") {
                    None => None,
                    Some((_, f)) => match &f.value {
                        Value::Str(s) => Some((s.clone(), f.pos)),
                        other => {
                            cx.err(
                                f.pos,
                                &format!("{path}.file"),
                                format!("must be a string, found {}", other.kind()),
                            );
                            return None;
                        }
                    },
                };
                (svc_name, svc.pos, file)
            }
            other => {
                cx.err(
                    ext.pos,
                    &path,
                    format!(
                        "must be a service name or a mapping with `service` (and `file`), found {}",
                        other.kind()
                    ),
                );
                return None;
            }
        };
        let base_src = match &file {
            None => src,
            Some((f, fpos)) => self.load(cx, src, f, *fpos, &format!("{path}.file"))?,
        };
        chain.push((src, name.to_string()));
        if let Some(i) = chain
            .iter()
            .position(|(s, n)| *s == base_src && *n == base_name)
        {
            let mut members = chain[i..].to_vec();
            members.sort();
            if !self.cycles.insert(members) {
                chain.pop();
                return None;
            }
            let names: Vec<String> = chain[i..]
                .iter()
                .chain(std::iter::once(&(base_src, base_name.clone())))
                .map(|(s, n)| self.display(*s, n))
                .collect();
            cx.err(
                ext_key.pos,
                &format!("services.{name}"),
                format!("`extends` cycle: {}", names.join(" -> ")),
            );
            chain.pop();
            return None;
        }
        if find(&self.sources[base_src].services, &base_name).is_none() {
            let where_ = match &file {
                Some((f, _)) => format!(" in {f}"),
                None => String::new(),
            };
            cx.err(
                base_pos,
                &path,
                format!("extends undefined service `{base_name}`{where_}"),
            );
            chain.pop();
            return None;
        }
        let base = self.resolve(cx, base_src, &base_name, chain);
        chain.pop();
        let mut base = base?;
        if self.sources[base_src].dir != self.st.dir {
            let dir = self.sources[base_src].dir.clone();
            rebase_paths(&mut base, &dir);
        }
        let mut local = node;
        if let Value::Map(m) = &mut local.value {
            m.retain(|(k, _)| k.name != "extends");
        }
        Some(merge_service(base, local))
    }

    fn display(&self, src: usize, name: &str) -> String {
        if src == 0 {
            name.to_string()
        } else {
            let f = self.sources[src]
                .abs
                .strip_prefix(&self.st.dir)
                .map_or_else(
                    |_| self.sources[src].abs.display().to_string(),
                    |p| p.display().to_string(),
                );
            format!("{f}:{name}")
        }
    }

    /// Read the Compose file `file` (relative to the folder of `sources[from]`); its index.
    fn load(
        &mut self,
        cx: &mut Cx,
        from: usize,
        file: &str,
        pos: Pos,
        path: &str,
    ) -> Option<usize> {
        let abs = clean_path(&self.sources[from].dir.join(file));
        if let Some(i) = self.loaded.get(&abs) {
            return *i;
        }
        self.loaded.insert(abs.clone(), None);
        let text = match std::fs::read_to_string(&abs) {
            Ok(t) => t,
            Err(e) => {
                cx.err(
                    pos,
                    path,
                    format!("cannot read {file:?} ({}): {e}", abs.display()),
                );
                return None;
            }
        };
        // Messages name it relative to the config root, like the stack's own file.
        let main_rel_dir = cx.file.parent().unwrap_or(Path::new("")).to_path_buf();
        let rel = match abs.strip_prefix(&self.st.dir) {
            Ok(r) => main_rel_dir.join(r),
            Err(_) => abs.clone(),
        };
        let index = match u16::try_from(cx.others.len() + 1) {
            Ok(i) => i,
            Err(_) => {
                cx.err(pos, path, "too many files");
                return None;
            }
        };
        cx.others.push(rel);
        let mut root = match yaml::parse(&text) {
            Ok(n) => n,
            Err(e) => {
                let p = Pos {
                    line: e.pos.line.max(1),
                    col: e.pos.col.max(1),
                    file: index,
                };
                cx.err(p, "", format!("invalid YAML: {}", e.message));
                return None;
            }
        };
        yaml::set_file(&mut root, index);
        interpolate_tree(cx, &mut root, "", self.st.vars);
        let services = match &root.value {
            Value::Map(m) => match m.iter().find(|(k, _)| k.name == "services") {
                Some((
                    _,
                    Node {
                        value: Value::Map(s),
                        ..
                    },
                )) => s.clone(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let dir = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
        self.sources.push(Source {
            abs: abs.clone(),
            dir,
            services,
        });
        let i = self.sources.len() - 1;
        self.loaded.insert(abs, Some(i));
        Some(i)
    }
}

fn find<'n>(services: &'n [(Key, Node)], name: &str) -> Option<&'n Node> {
    services
        .iter()
        .find(|(k, _)| k.name == name)
        .map(|(_, v)| v)
}

/// Make the base's relative host paths absolute against its own folder.
pub(crate) fn rebase_paths(base: &mut Node, dir: &Path) {
    let Value::Map(m) = &mut base.value else {
        return;
    };
    let fix = |s: &mut String| {
        if s.starts_with("./") || s.starts_with("../") || s == "." || s == ".." {
            *s = clean_path(&dir.join(&*s)).to_string_lossy().into_owned();
        }
    };
    // An `env_file` entry is always a path, with or without `./`.
    let fix_file = |s: &mut String| {
        if !s.starts_with('/') && !s.is_empty() {
            *s = clean_path(&dir.join(&*s)).to_string_lossy().into_owned();
        }
    };
    for (k, v) in m.iter_mut() {
        match (k.name.as_str(), &mut v.value) {
            ("volumes", Value::Seq(items)) => {
                for it in items {
                    match &mut it.value {
                        Value::Str(s) => {
                            if let Some((src, rest)) = s.split_once(':') {
                                let mut src = src.to_string();
                                fix(&mut src);
                                *s = format!("{src}:{rest}");
                            }
                        }
                        Value::Map(vm) => {
                            for (vk, vv) in vm.iter_mut() {
                                if vk.name == "source"
                                    && let Value::Str(s) = &mut vv.value
                                {
                                    fix(s);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            ("env_file", Value::Str(s)) => fix_file(s),
            ("env_file", Value::Seq(items)) => {
                for it in items {
                    match &mut it.value {
                        Value::Str(s) => fix_file(s),
                        Value::Map(em) => {
                            for (ek, ev) in em.iter_mut() {
                                if ek.name == "path"
                                    && let Value::Str(s) = &mut ev.value
                                {
                                    fix_file(s);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}
