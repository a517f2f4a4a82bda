//! The Compose loader: a folder tree of Compose files → [`Desired`].
//!
//! A *stack* is a folder holding a Compose file. Every problem in every file is collected and
//! reported with `file:line:column` (see [`crate::diag`]); keys berth does not support are errors,
//! never silently dropped.
//!
//! The pipeline for one file:
//! 1. [`yaml`]: parse into a tree where every node and key carries its position (anchors,
//!    aliases and `<<` merge keys resolved; duplicate keys and alias bombs refused). YAML 1.2
//!    scalars, with two Compose (go-yaml) habits: `0755` is octal, and `yes`/`no`/`on`/`off`
//!    stay strings.
//! 2. [`interp`]: interpolate `${VAR...}` in every string value (never in keys). Variables come
//!    from the process environment, then the `.env` file beside the Compose file.
//! 3. `stack` and `service` (with `ports`, `mounts`, `networks`, `env`, `resources`; all
//!    reading the tree through `read`): check every mapping against the keys berth supports (`keys`, kept in step
//!    with the Compose JSON schema by a test), then fold short and long syntax into
//!    [`crate::model::ServiceSpec`] & co. Secrets and configs are read here, to hash them.
//!
//! A key position points at where the text is written: for a value that came through an alias
//! or a merge key, that is the anchored definition.

mod config_files;
mod decls;
pub mod dotenv;
mod env;
mod extends;
mod include;
pub mod interp;
mod keys;
mod merge;
mod mounts;
mod networks;
mod ports;
pub(crate) mod read;
mod resources;
pub(crate) mod routes;
mod service;
mod stack;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Diagnostics};
use crate::model::HOST_GROUP;
use crate::model::{Desired, StackSpec};

use read::{Cx, interpolate_tree};
use yaml::{Node, Value};

/// The file names that make a folder a stack, in Compose's order of preference.
pub const COMPOSE_FILE_NAMES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The override file Compose merges onto the Compose file of the same folder, in its order of
/// preference (compose-go's `DefaultOverrideFileNames`).
pub const OVERRIDE_FILE_NAMES: &[&str] = &[
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// Load every stack below `root`, and the host settings of its `berth.yaml` manifests
/// ([`crate::berthfile`]). `env` holds the variables for interpolation (the caller
/// passes the process environment); the `.env` file beside each Compose file fills in what
/// `env` does not set.
pub fn load_dir(root: &Path, env: &BTreeMap<String, String>) -> Result<Desired, Diagnostics> {
    let mut diags = Vec::new();
    let root_abs = match root.canonicalize() {
        Ok(p) => p,
        Err(e) => {
            return Err(Diagnostics(vec![Diagnostic::new(
                root,
                0,
                0,
                format!("cannot open the config folder: {e}"),
            )]));
        }
    };
    let mut found: Vec<PathBuf> = Vec::new();
    find_stacks(&root_abs, &root_abs, &mut found, &mut diags);

    let mut desired = Desired::default();
    let mut files_by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in found {
        let rel = file.strip_prefix(&root_abs).unwrap_or(&file).to_path_buf();
        let (stack, mut d) = load_file(&file, &rel, &root_abs, env);
        diags.append(&mut d);
        let Some(stack) = stack else { continue };
        // Host settings report under this name (`berth/<instance>/host`): no stack may take it.
        if stack.name == HOST_GROUP {
            diags.push(Diagnostic::new(
                &rel,
                0,
                0,
                format!(
                    "stack name `{HOST_GROUP}` is reserved for host settings' commit status \
                     (berth/<instance>/{HOST_GROUP}); set a different top-level `name:`"
                ),
            ));
            continue;
        }
        if let Some(other) = files_by_name.get(&stack.name) {
            diags.push(Diagnostic::new(
                &rel,
                0,
                0,
                format!(
                    "stack name `{}` is already used by {}; set a different top-level `name:`",
                    stack.name,
                    other.display()
                ),
            ));
            continue;
        }
        files_by_name.insert(stack.name.clone(), rel);
        desired.stacks.insert(stack.name.clone(), stack);
    }
    // Fixed container names must be unique on the Engine.
    let mut container_names: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for (stack_name, stack) in &desired.stacks {
        for (svc_name, svc) in &stack.services {
            let Some(cn) = svc.container_name.as_deref() else {
                continue;
            };
            if let Some((other_stack, other_svc)) = container_names.get(cn) {
                diags.push(Diagnostic::new(
                    &stack.file,
                    0,
                    0,
                    format!(
                        "services.{svc_name}: container_name `{cn}` is already used by service \
                         `{other_svc}` of stack `{other_stack}`"
                    ),
                ));
            } else {
                container_names.insert(cn, (stack_name, svc_name));
            }
        }
    }
    // berth's own manifests (`berth.yaml`): host settings, checked against the stacks.
    let (loaded, mut d) = crate::berthfile::load(&root_abs, env, &desired.stacks);
    diags.append(&mut d);
    desired.host = loaded.host;
    desired.edge = loaded.edge;
    desired.jobs = loaded.jobs;
    desired.apply_defaults();
    if diags.is_empty() {
        Ok(desired)
    } else {
        diags.sort();
        diags.dedup();
        Err(Diagnostics(diags))
    }
}

/// One folder of the config tree, sorted: its files and its sub-folders, hidden folders
/// skipped. `None` (with a diagnostic) when it cannot be read. The one walk stack discovery
/// and `berthfile` share.
pub(crate) fn list_folder(
    root: &Path,
    dir: &Path,
    diags: &mut Vec<Diagnostic>,
) -> Option<(BTreeSet<String>, BTreeSet<String>)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(Diagnostic::new(
                dir.strip_prefix(root).unwrap_or(dir),
                0,
                0,
                format!("cannot read folder: {e}"),
            ));
            return None;
        }
    };
    let mut files = BTreeSet::new();
    let mut dirs = BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                if !name.starts_with('.') {
                    dirs.insert(name);
                }
            }
            Ok(_) => {
                files.insert(name);
            }
            Err(_) => {}
        }
    }
    Some((files, dirs))
}

/// Depth-first, sorted, skipping hidden folders. Stacks may nest.
fn find_stacks(root: &Path, dir: &Path, found: &mut Vec<PathBuf>, diags: &mut Vec<Diagnostic>) {
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).to_path_buf();
    let Some((files, dirs)) = list_folder(root, dir, diags) else {
        return;
    };
    let here: Vec<&str> = COMPOSE_FILE_NAMES
        .iter()
        .copied()
        .filter(|n| files.contains(*n))
        .collect();
    match here.as_slice() {
        [] => {}
        [one] => found.push(dir.join(one)),
        [first, rest @ ..] => diags.push(Diagnostic::new(
            rel(&dir.join(first)),
            0,
            0,
            format!(
                "the folder holds more than one Compose file: {} and {}; keep one",
                first,
                rest.join(" and ")
            ),
        )),
    }
    for d in dirs {
        find_stacks(root, &dir.join(d), found, diags);
    }
}

/// Load one Compose file. `rel` is the file relative to the config root (used in messages).
fn load_file(
    file: &Path,
    rel: &Path,
    root: &Path,
    env: &BTreeMap<String, String>,
) -> (Option<StackSpec>, Vec<Diagnostic>) {
    let mut cx = Cx::new(rel.to_path_buf());
    let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            cx.diags
                .push(Diagnostic::new(rel, 0, 0, format!("cannot read: {e}")));
            return (None, cx.diags);
        }
    };

    // Variables: `.env` beside the file, overlaid by the process environment.
    let mut vars = BTreeMap::new();
    let dotenv_file = dir.join(".env");
    if dotenv_file.is_file() {
        let rel_env = rel.with_file_name(".env");
        match std::fs::read_to_string(&dotenv_file) {
            // Values may use the process environment, then earlier values.
            Ok(t) => match dotenv::parse(&t, dotenv::Format::DotEnv, &|k| env.get(k).cloned()) {
                Ok(entries) => {
                    for e in entries {
                        vars.insert(e.key, e.value);
                    }
                }
                Err(e) => cx
                    .diags
                    .push(Diagnostic::new(rel_env, e.line, 1, e.kind.to_string())),
            },
            Err(e) => cx
                .diags
                .push(Diagnostic::new(rel_env, 0, 0, format!("cannot read: {e}"))),
        }
    }
    for (k, v) in env {
        vars.insert(k.clone(), v.clone());
    }
    // `compose.override.yaml` & co.: Docker Compose merges it onto the file (one, not several:
    // like two Compose files in a folder, two override files are refused rather than guessed).
    let present: Vec<&str> = OVERRIDE_FILE_NAMES
        .iter()
        .copied()
        .filter(|n| dir.join(n).is_file())
        .collect();
    let mut overrides = Vec::new();
    match present.as_slice() {
        [] => {}
        [one] => match std::fs::read_to_string(dir.join(one)) {
            Ok(t) => overrides.push((rel.with_file_name(one), t)),
            Err(e) => {
                cx.diags.push(Diagnostic::new(
                    rel.with_file_name(one),
                    0,
                    0,
                    format!("cannot read: {e}"),
                ));
                return (None, cx.diags);
            }
        },
        [first, rest @ ..] => {
            cx.diags.push(Diagnostic::new(
                rel.with_file_name(first),
                0,
                0,
                format!(
                    "the folder holds more than one override file: {first} and {}; keep one",
                    rest.join(" and ")
                ),
            ));
            return (None, cx.diags);
        }
    }
    let mut stack = load_text(&mut cx, &text, &overrides, dir, Some(root), &vars);
    if let Some(s) = &mut stack {
        cx.notes.sort();
        cx.notes.dedup();
        s.notes = cx.notes;
    }
    (stack, cx.diags)
}

/// Parse, interpolate and convert one Compose file's text. `dir` is its absolute folder.
fn load_text(
    cx: &mut Cx,
    text: &str,
    overrides: &[(PathBuf, String)],
    dir: PathBuf,
    config_root: Option<&Path>,
    vars: &BTreeMap<String, String>,
) -> Option<StackSpec> {
    let rel = cx.file.clone();
    // Several documents in one file merge in order, as override files do (compose-go); then
    // the override file's.
    let mut docs = yaml::parse_documents(text);
    for (orel, otext) in overrides {
        let Ok(ds) = &mut docs else { break };
        let index = u16::try_from(cx.others.len() + 1).unwrap_or(u16::MAX);
        cx.others.push(orel.clone());
        match yaml::parse_documents(otext) {
            Ok(mut more) => {
                for d in &mut more {
                    yaml::set_file(d, index);
                }
                ds.extend(more);
            }
            Err(e) => {
                let p = yaml::Pos {
                    line: e.pos.line.max(1),
                    col: e.pos.col.max(1),
                    file: index,
                };
                cx.err(p, "", format!("invalid YAML: {}", e.message));
                return None;
            }
        }
    }
    let docs = docs.map(merge::merge_documents);
    let mut root = match docs {
        Ok(Some(n)) => n,
        Ok(None) => Node {
            value: Value::Null,
            pos: yaml::Pos::default(),
        },
        Err(e) => {
            cx.diags.push(Diagnostic::new(
                rel,
                e.pos.line.max(1),
                e.pos.col.max(1),
                format!("invalid YAML: {}", e.message),
            ));
            return None;
        }
    };
    // Compose refuses a file without any content (`empty compose file`).
    if matches!(&root.value, Value::Null) || matches!(&root.value, Value::Map(m) if m.is_empty()) {
        cx.err(
            yaml::Pos::default(),
            "",
            "empty compose file: declare at least `services:`",
        );
        return None;
    }
    interpolate_tree(cx, &mut root, "", vars);
    // The config root, for naming included files: `cx.file` is relative to it.
    let depth = cx.file.parent().map_or(0, |p| p.components().count());
    let names_root = dir.ancestors().nth(depth).unwrap_or(&dir).to_path_buf();
    let file_abs = dir.join(cx.file.file_name().unwrap_or_default());
    include::apply(
        cx,
        &mut root,
        &include::Including {
            file: file_abs,
            dir: dir.clone(),
            vars,
            chain: Vec::new(),
            root: names_root,
        },
    );

    // `!reset` outside services (those are merged by `extends` first, see `stack`).
    if let Value::Map(top) = &mut root.value {
        top.retain(|(k, _)| k.merge != yaml::MergeTag::Reset);
        for (k, v) in top.iter_mut() {
            if k.name != "services" {
                yaml::drop_resets(v);
            }
        }
    }

    let name = stack_name(cx, &root, &dir);
    let profiles = vars
        .get("COMPOSE_PROFILES")
        .map(|p| {
            p.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let st = read::StackCtx {
        name: name.clone().unwrap_or_default(),
        dir,
        vars,
        profiles,
        root: config_root.map(Path::to_path_buf),
    };
    let spec = stack::convert_stack(cx, &root, &st);
    name.map(|_| spec)
}

/// Top-level `name:` (validated) or the folder name (normalised like Compose).
fn stack_name(cx: &mut Cx, root: &Node, dir: &Path) -> Option<String> {
    if let Value::Map(m) = &root.value
        && let Some((_, n)) = m.iter().find(|(k, _)| k.name == "name")
        && n.value != Value::Null
    {
        // Compose's schema wants a string: `name: 123` is refused, not read as "123".
        let Value::Str(name) = &n.value else {
            cx.err(
                n.pos,
                "name",
                format!("must be a string, found {}", n.value.kind()),
            );
            return None;
        };
        let name = name.clone();
        if normalise_name(&name) != name || name.is_empty() {
            cx.err(
                n.pos,
                "name",
                format!(
                    "invalid project name {name:?}: use lowercase letters, digits, `-` and `_`, starting with a letter or digit"
                ),
            );
            return None;
        }
        return Some(name);
    }
    let folder = dir
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = normalise_name(&folder);
    if name.is_empty() {
        cx.err(
            yaml::Pos::default(),
            "",
            format!("cannot derive a project name from the folder name {folder:?}; set a top-level `name:`"),
        );
        return None;
    }
    Some(name)
}

/// Parse a duration in Compose's (Go's) syntax: `1m30s`, `10s`, `500ms`, `1.5h`, `0`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let ns = read::parse_duration(s)?;
    Ok(std::time::Duration::from_nanos(ns.max(0) as u64))
}

/// Compose's project-name normalisation: lower case, keep `[a-z0-9_-]`, no leading `_`/`-`.
pub fn normalise_name(s: &str) -> String {
    let lower: String = s
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    lower.trim_start_matches(['_', '-']).to_string()
}

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod merge_tests;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod tests;
