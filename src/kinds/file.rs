//! `kind: File`: content, mode and owner of one host file; taken over only with `adopt: true`;
//! removed (or its original put back) when it leaves the config.

use base64::Engine as _;

use super::host::{applied, check_parent, entry, leftovers, meta, meta_reasons, unified_diff};
use super::{Context, Planned};
use crate::model::host::{Before, FileSpec, OnChange, PathState};
use crate::plan::{
    Addr, AfterChange, Bytes, Change, FilePayload, FileState, Kind, Op, Payload, PlanError, Reason,
    Record, UnitVerb,
};

pub fn plan(ctx: &Context, out: &mut Planned) {
    let host = &ctx.observed.host;
    for (path, spec) in &ctx.desired.host.files {
        let addr = Addr::host(Kind::File, path.display().to_string());
        match file(ctx, spec, &addr) {
            Ok(Some(c)) => out.changes.push(c),
            Ok(None) => out.plan.unchanged_host.push(addr),
            Err(e) => out.plan.errors.push(e),
        }
    }
    let declared = |p: &str| ctx.desired.host.files.contains_key(std::path::Path::new(p));
    for (path, e) in leftovers(host, Kind::File, declared) {
        let addr = Addr::host(Kind::File, path);
        let record = Record {
            before: Some(e.clone()),
            after: None,
        };
        let path = std::path::PathBuf::from(path);
        let now = host.path(&path);
        let (to, reason) = match (&e.before, now) {
            (Before::File { content, meta }, _) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(content)
                    .unwrap_or_default();
                (
                    Some(FileState {
                        content: Bytes::new(bytes),
                        meta: *meta,
                    }),
                    Reason::HostRemoved { restore: true },
                )
            }
            (_, PathState::Absent) => (None, Reason::Forgotten),
            (_, PathState::File { .. }) => (None, Reason::HostRemoved { restore: false }),
            (_, PathState::Dir { .. }) => {
                out.plan.errors.push(refused(&addr, "", "berth's file is now a folder: berth leaves it; remove it by hand or declare it again"));
                continue;
            }
            (_, PathState::Other { what }) | (_, PathState::Refused { reason: what }) => {
                out.plan.errors.push(refused(
                    &addr,
                    "",
                    &format!("berth's file is now {what}: berth leaves it"),
                ));
                continue;
            }
        };
        out.changes.push(Change {
            addr,
            op: Op::Delete,
            reasons: vec![reason],
            needs: Vec::new(),
            payload: Payload::File(FilePayload {
                path,
                to,
                from: None,
                validate: None,
                secret: false,
                after: None,
                record,
            }),
        });
    }
}

fn refused(addr: &Addr, origin: &str, reason: &str) -> PlanError {
    PlanError::HostRefused {
        addr: addr.to_string(),
        origin: if origin.is_empty() {
            "inventory".into()
        } else {
            origin.into()
        },
        reason: reason.into(),
    }
}

/// The change one declared file needs, if any.
fn file(ctx: &Context, spec: &FileSpec, addr: &Addr) -> Result<Option<Change>, PlanError> {
    let host = &ctx.observed.host;
    let key = addr.to_string();
    let origin = spec.origin.to_string();
    let current = host.inventory.entries.get(&key);
    let want = meta(host, &spec.owner, &key, &spec.origin)?;
    check_parent(ctx.desired, host, &spec.path, &key, &spec.origin)?;
    let to = FileState {
        content: Bytes::new(spec.content.clone()),
        meta: want,
    };
    let mut reasons = Vec::new();
    let (op, from, before) = match host.path(&spec.path) {
        PathState::Refused { reason } => return Err(refused(addr, &origin, reason)),
        PathState::Other { what } => {
            return Err(refused(
                addr,
                &origin,
                &format!("the path is {what}, not a file; berth never touches it"),
            ));
        }
        PathState::Dir { .. } => {
            return Err(refused(addr, &origin, "the path is a folder, not a file"));
        }
        PathState::Absent => {
            reasons.push(if current.is_some() {
                Reason::HostState {
                    detail: "deleted on the host since berth wrote it (drift)".into(),
                }
            } else {
                Reason::HostNew
            });
            (Op::Create, None, Before::Absent)
        }
        PathState::File { content, meta: now } => {
            if current.is_none() && !spec.adopt {
                return Err(PlanError::HostNotOwned { addr: key, origin });
            }
            let same = content.as_slice() == spec.content.as_slice();
            if current.is_none() {
                reasons.push(Reason::Adopted);
            } else if same && *now == want {
                return Ok(None);
            } else if current.and_then(|e| e.applied.as_deref())
                == applied(&spec.content).as_deref()
            {
                // What berth wrote last is still what the config says: the host moved.
                reasons.push(Reason::HandEdited);
            }
            if !same && current.is_none() {
                reasons.push(Reason::ContentNotOwned);
            } else if !same {
                reasons.push(Reason::Content {
                    diff: (!spec.secret)
                        .then(|| unified_diff(&key_path(spec), content, &spec.content)),
                });
            }
            meta_reasons(now, &want, &mut reasons);
            let before = Before::File {
                content: base64::engine::general_purpose::STANDARD.encode(content),
                meta: *now,
            };
            let from = FileState {
                content: Bytes::new(content.clone()),
                meta: *now,
            };
            (Op::Update, Some(from), before)
        }
    };
    let content_changes = from.as_ref().is_none_or(|f| f.content.data != spec.content);
    let after = match (&spec.on_change, content_changes) {
        (Some(action), true) => {
            reasons.push(Reason::Then {
                action: action.to_string(),
            });
            Some(after_change(ctx, action))
        }
        _ => None,
    };
    let record = Record {
        before: current.cloned(),
        after: Some(entry(current, || before, applied(&spec.content))),
    };
    Ok(Some(Change {
        addr: addr.clone(),
        op,
        reasons,
        needs: Vec::new(),
        payload: Payload::File(FilePayload {
            path: spec.path.clone(),
            to: Some(to),
            from,
            validate: spec.validate.clone(),
            secret: spec.secret,
            after,
            record,
        }),
    }))
}

fn key_path(spec: &FileSpec) -> String {
    spec.path.display().to_string()
}

/// `on_change` as the executor's action: containers resolved to their names.
fn after_change(ctx: &Context, action: &OnChange) -> AfterChange {
    match action {
        OnChange::Reload(u) => AfterChange::Unit {
            verb: UnitVerb::Reload,
            unit: u.clone(),
        },
        OnChange::Restart(u) => AfterChange::Unit {
            verb: UnitVerb::Restart,
            unit: u.clone(),
        },
        OnChange::RestartService { stack, service } => {
            let names = ctx
                .desired
                .stacks
                .get(stack)
                .and_then(|s| s.services.get(service).map(|spec| (s, spec)))
                .map(|(s, spec)| {
                    (1..=spec.replicas.max(1))
                        .map(|n| crate::model::container_name(&s.name, service, spec, n))
                        .collect()
                })
                .unwrap_or_default();
            AfterChange::Containers {
                stack: stack.clone(),
                service: service.clone(),
                names,
            }
        }
    }
}
