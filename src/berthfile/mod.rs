//! The loader of berth's own manifests: `berth.yaml` and `*.berth.yaml` files anywhere in the
//! config tree → [`Loaded`]: host settings (files, directories, sysctls, units), the edge
//! (address sets, firewall, routes, proxy) and scheduled work (jobs, backups, prunes, defaults). [`crate::compose::load_dir`]
//! calls [`load`] after the stacks, so `validate`, `plan`, `apply` and `serve` see one
//! [`crate::model::Desired`].
//!
//! - Discovery walks the tree like the stack discovery: depth-first, sorted, hidden folders
//!   (and hidden files, as a shell glob would) skipped; a `berth.yaml` may sit in a stack's
//!   folder. `berth.yml` names are refused rather than ignored.
//! - A file holds one or more YAML documents (`---`), each with a `kind:`; an empty document is
//!   skipped. [`document`] dispatches on the kind name in one `match`: an unknown kind is an error
//!   with a did-you-mean, never ignored.
//! - Every key is checked (an unknown one gets a did-you-mean) and every problem is located
//!   (`file:line:col`, the file relative to the config root), as in Compose files. A document
//!   with a problem declares nothing, so one mistake is not reported twice.
//! - Interpolation: `${VAR}` (the Compose rules of [`crate::compose::interp`], variables from
//!   the process environment only) applies to every scalar value except the texts of
//!   `content:` and `dropins:`. Those are literal, like a file in git: unit files use `$VAR`
//!   themselves, and a secret's text is never parsed (nor echoed by an interpolation error).
//! - Secrets: no message ever quotes a `content:` text or a `source:` file's bytes (only their
//!   type), so a `secret: true` File's content cannot reach a diagnostic.
//! - Addresses (`file:<path>`, `directory:<path>`, `sysctl:<key>`, `unit:<name>`) are unique
//!   across the config, and no two declarations may manage one host path: a File and a
//!   Directory on one path, or a File on the path berth writes for a Sysctl
//!   (`/etc/sysctl.d/99-zz-berth-<key>.conf`) or a Unit (its unit file when it has content, its
//!   drop-ins). Both places are named.
//! - `on_change: {restart_service: STACK/SERVICE}` must name a deployed service of a stack of
//!   the same config.

mod edge;
mod jobs;
mod kinds;
mod proxy;
mod read;
mod refs;
mod values;

#[cfg(test)]
mod edge_tests;
#[cfg(test)]
mod jobs_tests;
#[cfg(test)]
mod proxy_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::compose::read::{Cx, interpolate_tree, suggest};
use crate::compose::yaml::{self, Pos, Value};
use crate::diag::Diagnostic;
use crate::model::StackSpec;
use crate::model::edge::{AddressSet, EdgeSpec, FirewallSpec, ProxySpec, RouteSpec};
use crate::model::host::{
    DirSpec, FileSpec, HostSpec, Origin, SysctlSpec, UnitSpec, sysctl_conf_path,
};
use crate::model::jobs::{Defaults, JobSpec, JobsSpec};

use kinds::{Doc, ServiceRef};
use read::{Map, Source, get, key_pos};

pub use edge::{ADDRESS_SET_KEYS, ALLOW_KEYS, FIREWALL_KEYS, parse_cidr, parse_port_range};
pub use jobs::{BACKUP_KEYS, DEFAULT_RESTIC_IMAGE, JOB_COMMON, JOB_KEYS, PRUNE_KEYS};
pub use kinds::{DIRECTORY_KEYS, FILE_KEYS, ON_CHANGE_KEYS, SYSCTL_KEYS, UNIT_KEYS};
pub use proxy::{PROXY_KEYS, ROUTE_KEYS};
pub use read::{MAX_SOURCE_BYTES, UNIT_TYPES, unit_name_problem};

/// The kinds berth implements, in the order messages list them.
pub const KINDS: &[&str] = &[
    "File",
    "Directory",
    "Sysctl",
    "Unit",
    "AddressSet",
    "Firewall",
    "Route",
    "Proxy",
    "Job",
    "Backup",
    "Prune",
    "Defaults",
];

/// Keys whose texts are never interpolated.
const LITERAL_KEYS: &[&str] = &["content", "dropins"];

/// Whether a file name is a berth manifest.
pub fn is_manifest(name: &str) -> bool {
    name == "berth.yaml" || (name.ends_with(".berth.yaml") && !name.starts_with('.'))
}

/// A near miss of a manifest name (`berth.yml`), refused so it is not silently ignored.
fn is_misnamed(name: &str) -> bool {
    name == "berth.yml" || (name.ends_with(".berth.yml") && !name.starts_with('.'))
}

/// What the manifests declare.
#[derive(Debug, Default)]
pub struct Loaded {
    pub host: HostSpec,
    /// Always holds `tailnet` among its address sets.
    pub edge: EdgeSpec,
    pub jobs: JobsSpec,
}

/// Load every manifest below `root` (canonical). `env` holds the variables for interpolation;
/// `stacks` are the loaded stacks, for references to their services, volumes and networks.
pub fn load(
    root: &Path,
    env: &BTreeMap<String, String>,
    stacks: &BTreeMap<String, StackSpec>,
) -> (Loaded, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut files = Vec::new();
    find_manifests(root, root, &mut files, &mut diags);
    let mut decls = Vec::new();
    let mut set_refs = Vec::new();
    let refs = refs::Refs { stacks };
    for file in files {
        load_manifest(
            root,
            &file,
            env,
            &refs,
            &mut decls,
            &mut set_refs,
            &mut diags,
        );
    }
    let mut out = Loaded::default();
    let mut srefs = Vec::new();
    let mut sets = Vec::new();
    register(decls, &mut out, &mut sets, &mut srefs, &mut diags);
    out.edge.address_sets = edge::register_sets(sets, &mut diags);
    edge::check_sets(&set_refs, &out.edge.address_sets, &mut diags);
    check_services(&srefs, stacks, &mut diags);
    (out, diags)
}

/// Depth-first, sorted, skipping hidden folders and files (the walk of the stack discovery).
fn find_manifests(root: &Path, dir: &Path, found: &mut Vec<PathBuf>, diags: &mut Vec<Diagnostic>) {
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).to_path_buf();
    let Some((all, dirs)) = crate::compose::list_folder(root, dir, diags) else {
        return;
    };
    let mut files = BTreeSet::new();
    for name in all.into_iter().filter(|n| !n.starts_with('.')) {
        if is_manifest(&name) {
            files.insert(name);
        } else if is_misnamed(&name) {
            diags.push(Diagnostic::new(
                rel(&dir.join(&name)),
                0,
                0,
                "berth manifests are named `berth.yaml` or `*.berth.yaml`; rename it",
            ));
        }
    }
    found.extend(files.into_iter().map(|f| dir.join(f)));
    for d in dirs {
        find_manifests(root, &dir.join(d), found, diags);
    }
}

/// What one document declares.
enum Decl {
    File(FileSpec, Option<ServiceRef>),
    Dir(DirSpec),
    Sysctl(SysctlSpec),
    Unit(UnitSpec),
    AddressSet(AddressSet),
    Firewall(FirewallSpec),
    Route(RouteSpec),
    Proxy(ProxySpec),
    Job(Box<JobSpec>),
    /// A backup and its check job.
    Backup(Box<JobSpec>, Option<Box<JobSpec>>),
    Defaults(Defaults),
}

impl Decl {
    fn address(&self) -> String {
        match self {
            Decl::File(f, _) => format!("file:{}", f.path.display()),
            Decl::Dir(d) => format!("directory:{}", d.path.display()),
            Decl::Sysctl(s) => format!("sysctl:{}", s.key),
            Decl::Unit(u) => format!("unit:{}", u.name),
            Decl::AddressSet(a) => format!("AddressSet `{}`", a.name),
            Decl::Firewall(_) => "a Firewall (at most one per config)".to_string(),
            // Two routes on one host and path are the planner's error (on their stacks).
            Decl::Route(r) => format!("route:{}@{}", r.name(), r.origin),
            Decl::Proxy(_) => "kind: Proxy".to_string(),
            Decl::Job(j) | Decl::Backup(j, _) => format!("job:{}", j.name),
            Decl::Defaults(_) => "kind: Defaults (at most one per config)".to_string(),
        }
    }

    fn origin(&self) -> &Origin {
        match self {
            Decl::File(f, _) => &f.origin,
            Decl::Dir(d) => &d.origin,
            Decl::Sysctl(s) => &s.origin,
            Decl::Unit(u) => &u.origin,
            Decl::AddressSet(a) => a.origin.as_ref().expect("declared sets have an origin"),
            Decl::Firewall(f) => &f.origin,
            Decl::Route(r) => &r.origin,
            Decl::Proxy(p) => &p.origin,
            Decl::Job(j) | Decl::Backup(j, _) => &j.origin,
            Decl::Defaults(d) => &d.origin,
        }
    }

    /// The host paths it manages: two declarations must not share one.
    fn paths(&self) -> Vec<PathBuf> {
        match self {
            Decl::File(f, _) => vec![f.path.clone()],
            Decl::Dir(d) => vec![d.path.clone()],
            Decl::Sysctl(s) => vec![sysctl_conf_path(&s.key)],
            Decl::Unit(u) => kinds::unit_paths(u),
            Decl::AddressSet(_)
            | Decl::Firewall(_)
            | Decl::Route(_)
            | Decl::Proxy(_)
            | Decl::Job(_)
            | Decl::Backup(..)
            | Decl::Defaults(_) => Vec::new(),
        }
    }
}

fn load_manifest(
    root: &Path,
    file: &Path,
    env: &BTreeMap<String, String>,
    refs: &refs::Refs,
    out: &mut Vec<Decl>,
    set_refs: &mut Vec<edge::SetRef>,
    diags: &mut Vec<Diagnostic>,
) {
    let rel = file.strip_prefix(root).unwrap_or(file).to_path_buf();
    let mut cx = Cx::new(rel.clone());
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            diags.push(Diagnostic::new(rel, 0, 0, format!("cannot read: {e}")));
            return;
        }
    };
    let docs = match yaml::parse_documents(&text) {
        Ok(d) => d,
        Err(e) => {
            diags.push(Diagnostic::new(
                rel,
                e.pos.line.max(1),
                e.pos.col.max(1),
                format!("invalid YAML: {}", e.message),
            ));
            return;
        }
    };
    let src = Source {
        root,
        dir: file.parent().unwrap_or(root),
        text: &text,
    };
    for mut doc in docs {
        let before = cx.diags.len();
        let decl = match &mut doc.value {
            Value::Null => continue,
            Value::Map(m) => {
                for (k, v) in m.iter_mut() {
                    if !LITERAL_KEYS.contains(&k.name.as_str()) {
                        interpolate_tree(&mut cx, v, &k.name, env);
                    }
                }
                // An uninterpolated value would only bring a second, misleading error.
                if cx.diags.len() > before {
                    continue;
                }
                document(&mut cx, m, doc.pos, &src, refs, set_refs)
            }
            v => {
                cx.err(
                    doc.pos,
                    "",
                    format!(
                        "a berth document must be a mapping with `kind:`, found {}",
                        v.kind()
                    ),
                );
                None
            }
        };
        if cx.diags.len() == before
            && let Some(d) = decl
        {
            out.push(d);
        }
    }
    diags.append(&mut cx.diags);
}

/// One document: dispatch on its `kind:`.
fn document(
    cx: &mut Cx,
    m: &Map,
    doc_pos: Pos,
    src: &Source,
    refs: &refs::Refs,
    set_refs: &mut Vec<edge::SetRef>,
) -> Option<Decl> {
    let pos = key_pos(m, "kind").unwrap_or(doc_pos);
    let known = KINDS.join(", ");
    let Some(kind_node) = get(m, "kind") else {
        cx.err(pos, "", format!("missing `kind:` (one of {known})"));
        return None;
    };
    let Value::Str(kind) = &kind_node.value else {
        cx.err(
            kind_node.pos,
            "kind",
            format!("must be a string, found {}", kind_node.value.kind()),
        );
        return None;
    };
    let d = Doc {
        m,
        origin: Origin {
            file: cx.file.clone(),
            line: pos.line,
            col: pos.col,
        },
        pos,
        src,
    };
    match kind.as_str() {
        "File" => kinds::file(cx, &d).map(|(f, r)| Decl::File(f, r)),
        "Directory" => kinds::directory(cx, &d).map(Decl::Dir),
        "Sysctl" => kinds::sysctl(cx, &d).map(Decl::Sysctl),
        "Unit" => kinds::unit(cx, &d).map(Decl::Unit),
        "AddressSet" => edge::address_set(cx, &d).map(Decl::AddressSet),
        "Firewall" => {
            // The document's set references count only when the document is accepted.
            let mut refs = Vec::new();
            let fw = edge::firewall(cx, &d, &mut refs).map(Decl::Firewall);
            if fw.is_some() {
                set_refs.append(&mut refs);
            }
            fw
        }
        "Route" => proxy::route(cx, &d).map(Decl::Route),
        "Proxy" => proxy::proxy(cx, &d).map(Decl::Proxy),
        "Job" => jobs::job(cx, &d, refs).map(|j| Decl::Job(Box::new(j))),
        "Backup" => {
            jobs::backup(cx, &d, refs).map(|(b, c)| Decl::Backup(Box::new(b), c.map(Box::new)))
        }
        "Prune" => jobs::prune(cx, &d).map(|j| Decl::Job(Box::new(j))),
        "Defaults" => jobs::defaults(cx, &d).map(Decl::Defaults),
        other => {
            let hint = suggest(other, KINDS.iter())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            cx.err(
                kind_node.pos,
                "",
                format!("unknown kind `{other}` (known kinds: {known}){hint}"),
            );
            None
        }
    }
}

fn at(o: &Origin, msg: String) -> Diagnostic {
    Diagnostic::new(&o.file, o.line, o.col, msg)
}

/// Put the declarations into `host`, in load order: a repeated address or a host path that an
/// earlier declaration manages is an error at the later one, naming the earlier.
fn register(
    decls: Vec<Decl>,
    out: &mut Loaded,
    sets: &mut Vec<AddressSet>,
    refs: &mut Vec<(PathBuf, ServiceRef)>,
    diags: &mut Vec<Diagnostic>,
) {
    let Loaded { host, edge, jobs } = out;
    let mut addresses: BTreeMap<String, Origin> = BTreeMap::new();
    let mut paths: BTreeMap<PathBuf, (String, Origin)> = BTreeMap::new();
    for decl in decls {
        let addr = decl.address();
        let origin = decl.origin().clone();
        if let Some(first) = addresses.get(&addr) {
            diags.push(at(
                &origin,
                match &decl {
                    Decl::AddressSet(_) | Decl::Firewall(_) => {
                        format!("{addr} is already declared at {first}")
                    }
                    _ => format!("`{addr}` is already declared at {first}"),
                },
            ));
            continue;
        }
        addresses.insert(addr.clone(), origin.clone());
        let mut clash = false;
        for p in decl.paths() {
            match paths.get(&p) {
                Some((other, first)) => {
                    diags.push(at(
                        &origin,
                        format!(
                            "`{addr}` conflicts with `{other}` declared at {first}: both manage {}",
                            p.display()
                        ),
                    ));
                    clash = true;
                }
                None => {
                    paths.insert(p, (addr.clone(), origin.clone()));
                }
            }
        }
        if clash {
            continue;
        }
        match decl {
            Decl::File(f, r) => {
                if let Some(r) = r {
                    refs.push((f.origin.file.clone(), r));
                }
                host.files.insert(f.path.clone(), f);
            }
            Decl::Dir(d) => {
                host.dirs.insert(d.path.clone(), d);
            }
            Decl::Sysctl(s) => {
                host.sysctls.insert(s.key.clone(), s);
            }
            Decl::Unit(u) => {
                host.units.insert(u.name.clone(), u);
            }
            Decl::AddressSet(a) => sets.push(a),
            Decl::Firewall(f) => edge.firewall = Some(f),
            Decl::Route(r) => edge.routes.push(r),
            Decl::Proxy(p) => edge.proxy = Some(p),
            Decl::Job(j) => {
                jobs.jobs.insert(j.name.clone(), *j);
            }
            Decl::Backup(b, check) => {
                if let Some(c) = check {
                    if let Some(first) = addresses.get(&format!("job:{}", c.name)) {
                        diags.push(at(
                            &origin,
                            format!(
                                "`job:{}` (this backup's check) is already declared at {first}",
                                c.name
                            ),
                        ));
                        continue;
                    }
                    addresses.insert(format!("job:{}", c.name), origin.clone());
                    jobs.jobs.insert(c.name.clone(), *c);
                }
                jobs.jobs.insert(b.name.clone(), *b);
            }
            Decl::Defaults(d) => jobs.defaults = Some(d),
        }
    }
}

/// Every `restart_service: STACK/SERVICE` names a deployed service of a loaded stack.
fn check_services(
    refs: &[(PathBuf, ServiceRef)],
    stacks: &BTreeMap<String, StackSpec>,
    diags: &mut Vec<Diagnostic>,
) {
    for (file, r) in refs {
        let hint = |name: &str, known: Vec<&str>| {
            suggest(name, known.iter())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default()
        };
        let problem = match stacks.get(&r.stack) {
            None => Some(format!(
                "no stack `{}` in the config{}",
                r.stack,
                hint(&r.stack, stacks.keys().map(String::as_str).collect())
            )),
            Some(s) if s.services.contains_key(&r.service) => None,
            Some(s) => match s.skipped.get(&r.service) {
                Some(why) => Some(format!(
                    "service `{}` of stack `{}` is not deployed ({why})",
                    r.service, r.stack
                )),
                None => Some(format!(
                    "stack `{}` has no service `{}`{}",
                    r.stack,
                    r.service,
                    hint(&r.service, s.services.keys().map(String::as_str).collect())
                )),
            },
        };
        if let Some(p) = problem {
            diags.push(Diagnostic::new(
                file,
                r.pos.line,
                r.pos.col,
                format!("on_change.restart_service: {p}"),
            ));
        }
    }
}
