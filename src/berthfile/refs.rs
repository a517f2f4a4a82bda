//! `STACK/NAME` references of the job kinds to the loaded stacks' services, volumes and
//! networks. STACK is a stack's name or its folder relative to the config root (`apps/blog/db`
//! for the service `db` of `apps/blog/compose.yaml`); a typo is an error at the reference, with
//! a did-you-mean.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::compose::read::{Cx, suggest};

use crate::compose::yaml::Pos;
use crate::model::StackSpec;
use crate::model::jobs::{Mount, MountSource, ServiceRef, VolumeRef};

/// What the readers need besides the document: the loaded stacks.
pub(super) struct Refs<'a> {
    pub stacks: &'a BTreeMap<String, StackSpec>,
}

/// `STACK/NAME` → the stack and the name. STACK is a stack's name or its folder relative to
/// the config root (`apps/blog` for `apps/blog/compose.yaml`).
pub(super) fn split_ref<'s>(
    cx: &mut Cx,
    r: &'s Refs,
    s: &str,
    pos: Pos,
    path: &str,
    what: &str,
) -> Option<(&'s StackSpec, String)> {
    let Some((prefix, name)) = s
        .rsplit_once('/')
        .filter(|(p, n)| !p.is_empty() && !n.is_empty())
    else {
        cx.err(pos, path, format!("must be STACK/{what}, found {s:?}"));
        return None;
    };
    let found = r.stacks.get(prefix).or_else(|| {
        r.stacks.values().find(|st| {
            st.file
                .parent()
                .is_some_and(|d| d == std::path::Path::new(prefix))
        })
    });
    match found {
        Some(st) => Some((st, name.to_string())),
        None => {
            let hint = did_you_mean(prefix, r.stacks.keys());
            cx.err(
                pos,
                path,
                format!("no stack `{prefix}` in the config (a stack's name or its folder){hint}"),
            );
            None
        }
    }
}

pub(super) fn service_ref(
    cx: &mut Cx,
    r: &Refs,
    s: &str,
    pos: Pos,
    path: &str,
) -> Option<ServiceRef> {
    let (st, name) = split_ref(cx, r, s, pos, path, "SERVICE")?;
    if st.services.contains_key(&name) {
        return Some(ServiceRef {
            stack: st.name.clone(),
            service: name,
        });
    }
    let msg = match st.skipped.get(&name) {
        Some(why) => format!(
            "service `{name}` of stack `{}` is not deployed ({why})",
            st.name
        ),
        None => {
            let hint = did_you_mean(&name, st.services.keys());
            format!("stack `{}` has no service `{name}`{hint}", st.name)
        }
    };
    cx.err(pos, path, msg);
    None
}

pub(super) fn volume_ref(
    cx: &mut Cx,
    r: &Refs,
    s: &str,
    pos: Pos,
    path: &str,
) -> Option<VolumeRef> {
    let (st, name) = split_ref(cx, r, s, pos, path, "VOLUME")?;
    match st.volumes.get(&name) {
        Some(v) => Some(VolumeRef {
            stack: st.name.clone(),
            volume: name,
            engine_name: v.name.clone(),
            folder: st
                .file
                .parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        }),
        None => {
            let hint = did_you_mean(&name, st.volumes.keys());
            cx.err(pos, path, format!("stack `{}` has no named volume `{name}` (under its top-level `volumes:`){hint}", st.name));
            None
        }
    }
}

/// `SOURCE:TARGET[:ro|:rw]` of a one-off container.
pub(super) fn mount(cx: &mut Cx, r: &Refs, s: &str, pos: Pos) -> Option<Mount> {
    let path = "run.container.volumes";
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        _ => {
            cx.err(
                pos,
                path,
                format!("must be SOURCE:TARGET[:ro], found {s:?}"),
            );
            return None;
        }
    };
    if !target.starts_with('/') {
        cx.err(
            pos,
            path,
            format!("the target must be an absolute path, found {target:?}"),
        );
        return None;
    }
    let source = if source.starts_with('/') {
        MountSource::Host(PathBuf::from(source))
    } else {
        MountSource::Volume(volume_ref(cx, r, source, pos, path)?)
    };
    Some(Mount {
        source,
        target: target.to_string(),
        read_only,
    })
}

/// `STACK/NETWORK` → its Engine name; a plain name is an existing (external) network.
pub(super) fn network(cx: &mut Cx, r: &Refs, s: &str, pos: Pos) -> Option<String> {
    if !s.contains('/') {
        return Some(s.to_string());
    }
    let path = "run.container.networks";
    let (st, name) = split_ref(cx, r, s, pos, path, "NETWORK")?;
    match st.networks.get(&name) {
        Some(n) => Some(n.name.clone()),
        None => {
            cx.err(
                pos,
                path,
                format!("stack `{}` has no network `{name}`", st.name),
            );
            None
        }
    }
}

/// `; did you mean `x`?` for the nearest of `known`, or nothing.
fn did_you_mean<'k>(name: &str, known: impl Iterator<Item = &'k String>) -> String {
    let known: Vec<&str> = known.map(String::as_str).collect();
    suggest(name, known.iter())
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default()
}
