//! What the host planners (file, directory, sysctl, unit) share: owners resolved to numbers,
//! the parent-folder check, readable diffs, and the edges between host changes and to the
//! containers that use them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use similar::TextDiff;

use crate::model::host::{Entry, Meta, ObservedHost, Origin, Ownership, PathState};
use crate::model::{Desired, MountSource};
use crate::plan::{AfterChange, Change, Kind, Need, Op, Payload, PlanError, Reason, Wait};

/// The numeric mode and owner a declaration means on this host, or the error naming what is
/// missing.
pub(super) fn meta(
    host: &ObservedHost,
    own: &Ownership,
    addr: &str,
    origin: &Origin,
) -> Result<Meta, PlanError> {
    let refuse = |reason: String| PlanError::HostRefused {
        addr: addr.to_string(),
        origin: origin.to_string(),
        reason,
    };
    let uid = host
        .uid(&own.owner)
        .ok_or_else(|| refuse(format!("owner `{}` is not a user on this host", own.owner)))?;
    let gid = host
        .gid(&own.group)
        .ok_or_else(|| refuse(format!("group `{}` is not a group on this host", own.group)))?;
    Ok(Meta {
        mode: own.mode,
        uid,
        gid,
    })
}

/// The parent folder must exist, or be declared as a `Directory` (created first).
pub(super) fn check_parent(
    desired: &Desired,
    host: &ObservedHost,
    path: &Path,
    addr: &str,
    origin: &Origin,
) -> Result<(), PlanError> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let refuse = |reason: String| PlanError::HostRefused {
        addr: addr.to_string(),
        origin: origin.to_string(),
        reason,
    };
    match host.path(parent) {
        PathState::Dir { .. } => Ok(()),
        PathState::Absent if desired.host.dirs.contains_key(parent) => Ok(()),
        PathState::Absent => Err(refuse(format!(
            "its folder {} does not exist; declare it as a Directory (berth does not create folders it was not asked to)",
            parent.display()
        ))),
        PathState::Refused { reason } => Err(refuse(reason.clone())),
        PathState::File { .. } => Err(refuse(format!(
            "{} is a file, not a folder",
            parent.display()
        ))),
        PathState::Other { what } => Err(refuse(format!("{} is {what}", parent.display()))),
    }
}

/// Mode and owner reasons between what is there and what is wanted.
pub(super) fn meta_reasons(from: &Meta, to: &Meta, reasons: &mut Vec<Reason>) {
    if from.mode != to.mode {
        reasons.push(Reason::Mode {
            from: format!("{:04o}", from.mode),
            to: format!("{:04o}", to.mode),
        });
    }
    if (from.uid, from.gid) != (to.uid, to.gid) {
        reasons.push(Reason::Owner {
            from: format!("{}:{}", from.uid, from.gid),
            to: format!("{}:{}", to.uid, to.gid),
        });
    }
}

/// A unified diff (3 lines of context) of two texts, or a one-line note for binary content.
pub(crate) fn unified_diff(path: &str, from: &[u8], to: &[u8]) -> String {
    match (std::str::from_utf8(from), std::str::from_utf8(to)) {
        (Ok(a), Ok(b)) => {
            let diff = TextDiff::from_lines(a, b);
            let text = diff
                .unified_diff()
                .context_radius(3)
                .header(&format!("{path} (now)"), &format!("{path} (config)"))
                .to_string();
            text.trim_end().to_string()
        }
        _ => format!("binary content: {} bytes → {} bytes", from.len(), to.len()),
    }
}

/// `sha256:` of what berth writes, recorded as [`Entry::applied`].
pub(super) fn applied(content: &[u8]) -> Option<String> {
    Some(crate::model::sha256_hex(content))
}

/// The entry to record: the one there is (its `before` kept), or a new one.
pub(super) fn entry(
    current: Option<&Entry>,
    before: impl FnOnce() -> crate::model::host::Before,
    applied: Option<String>,
) -> Entry {
    Entry {
        before: current.map_or_else(before, |e| e.before.clone()),
        applied,
    }
}

/// The inventory entries of one kind (`file:`) that the config no longer declares.
pub(super) fn leftovers(
    host: &ObservedHost,
    kind: Kind,
    declared: impl Fn(&str) -> bool,
) -> impl Iterator<Item = (&str, &Entry)> {
    let prefix = format!("{}:", kind.as_str());
    host.inventory
        .entries
        .iter()
        .filter_map(move |(k, e)| k.strip_prefix(&prefix).map(|name| (name, e)))
        .filter(move |(name, _)| !declared(name))
}

/// The path a host change writes (files and directories).
fn host_path(c: &Change) -> Option<&Path> {
    match &c.payload {
        Payload::File(p) => Some(&p.path),
        Payload::Directory(p) => Some(&p.path),
        _ => None,
    }
}

/// Edges of host changes, and from containers to the host files they mount:
/// - a file or directory that is written needs the directories above it that are written;
/// - a directory that is removed needs the removal of what is inside it;
/// - a unit needs the files and directories its unit files name, and the files whose
///   `on_change` acts on it (whose action is then dropped when the unit restarts anyway);
/// - a container create/replace/start needs the host files and folders it bind-mounts, and a
///   file's `restart_service` is dropped when the service's containers are recreated anyway;
/// - a container create/replace/start that publishes ports needs the firewall change that puts
///   rules in place, so no port is open before the firewall governs it.
pub fn link(changes: &mut [Change]) {
    struct Written {
        i: usize,
        path: PathBuf,
        delete: bool,
    }
    let written: Vec<Written> = changes
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            host_path(c).map(|p| Written {
                i,
                path: p.to_path_buf(),
                delete: c.op == Op::Delete,
            })
        })
        .collect();
    // Units that a change restarts, starts or creates.
    let restarted: BTreeSet<String> = changes
        .iter()
        .filter_map(|c| match &c.payload {
            Payload::Unit(u) if u.run.is_some() && c.op != Op::Delete => Some(u.name.clone()),
            _ => None,
        })
        .collect();
    // Services whose containers are (re)created.
    let recreated: BTreeSet<(String, String)> = changes
        .iter()
        .filter_map(|c| match (&c.payload, c.op) {
            (Payload::Container(p), Op::Create | Op::Replace) => {
                Some((p.stack.clone(), p.service.clone()))
            }
            _ => None,
        })
        .collect();
    // A firewall change that puts rules in place (not its removal).
    let firewall = changes
        .iter()
        .position(|c| matches!(c.payload, Payload::Firewall(_)) && c.op != Op::Delete);
    let mut extra: Vec<Vec<usize>> = vec![Vec::new(); changes.len()];
    for (i, c) in changes.iter().enumerate() {
        match &c.payload {
            Payload::File(_) | Payload::Directory(_) => {
                let Some(me) = host_path(c) else { continue };
                for w in &written {
                    if w.i == i || w.path == me {
                        continue;
                    }
                    let is_dir = changes[w.i].payload.kind() == Kind::Directory;
                    match (c.op == Op::Delete, w.delete) {
                        // Written below a directory that is written first.
                        (false, false) if is_dir && me.starts_with(&w.path) => extra[i].push(w.i),
                        // A removed directory waits for what is removed inside it.
                        (true, true)
                            if c.payload.kind() == Kind::Directory && w.path.starts_with(me) =>
                        {
                            extra[i].push(w.i)
                        }
                        _ => {}
                    }
                }
            }
            Payload::Unit(u) if c.op != Op::Delete => {
                let texts: Vec<&str> = u.files.values().flatten().map(String::as_str).collect();
                for w in written.iter().filter(|w| !w.delete) {
                    let p = w.path.to_string_lossy();
                    let named = texts.iter().any(|t| t.contains(p.as_ref()));
                    let acts = matches!(&changes[w.i].payload, Payload::File(f)
                        if matches!(&f.after, Some(AfterChange::Unit { unit, .. }) if unit == &u.name));
                    if named || acts {
                        extra[i].push(w.i);
                    }
                }
            }
            Payload::Container(p) if matches!(c.op, Op::Create | Op::Replace | Op::Start) => {
                let Some((_, spec)) = p.service_spec() else {
                    continue;
                };
                // A published port opens only once the firewall governs it.
                if let Some(f) = firewall.filter(|_| !spec.ports.is_empty()) {
                    extra[i].push(f);
                }
                let sources: Vec<&Path> = spec
                    .mounts
                    .iter()
                    .filter_map(|m| match &m.source {
                        MountSource::Bind { path, .. } => Some(Path::new(path.as_str())),
                        _ => None,
                    })
                    .collect();
                for w in written.iter().filter(|w| !w.delete) {
                    let restarts_me = matches!(&changes[w.i].payload, Payload::File(f)
                        if matches!(&f.after, Some(AfterChange::Containers { stack, service, .. })
                            if stack == &p.stack && service == &p.service));
                    if restarts_me
                        || sources
                            .iter()
                            .any(|s| s.starts_with(&w.path) || w.path.starts_with(s))
                    {
                        extra[i].push(w.i);
                    }
                }
            }
            _ => {}
        }
    }
    let addrs: Vec<_> = changes.iter().map(|c| c.addr.clone()).collect();
    for (c, extra) in changes.iter_mut().zip(extra) {
        for j in extra {
            if !c.needs.iter().any(|n| n.addr == addrs[j]) {
                c.needs.push(Need::on(addrs[j].clone(), Wait::Applied));
            }
        }
        c.needs.sort();
        // An action another change already carries out.
        if let Payload::File(f) = &mut c.payload {
            let covered = match &f.after {
                Some(AfterChange::Unit { unit, .. }) => restarted.contains(unit),
                Some(AfterChange::Containers { stack, service, .. }) => {
                    recreated.contains(&(stack.clone(), service.clone()))
                }
                None => false,
            };
            if covered {
                f.after = None;
                c.reasons.retain(|r| !matches!(r, Reason::Then { .. }));
            }
        }
    }
}
