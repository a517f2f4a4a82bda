//! `kind: Directory`: a host folder with its mode and owner. Created folders are removed when
//! they leave the config and are empty (never their content); adopted ones get their original
//! mode and owner back and stay.

use super::host::{check_parent, entry, leftovers, meta, meta_reasons};
use super::{Context, Planned};
use crate::model::host::{Before, PathState};
use crate::plan::{Addr, Change, DirPayload, Kind, Op, Payload, PlanError, Reason, Record};

pub fn plan(ctx: &Context, out: &mut Planned) {
    let host = &ctx.observed.host;
    for (path, spec) in &ctx.desired.host.dirs {
        let addr = Addr::host(Kind::Directory, path.display().to_string());
        let key = addr.to_string();
        let origin = spec.origin.to_string();
        let refuse = |reason: String| PlanError::HostRefused {
            addr: key.clone(),
            origin: origin.clone(),
            reason,
        };
        let want = match meta(host, &spec.owner, &key, &spec.origin)
            .and_then(|m| check_parent(ctx.desired, host, path, &key, &spec.origin).map(|()| m))
        {
            Ok(m) => m,
            Err(e) => {
                out.plan.errors.push(e);
                continue;
            }
        };
        let current = host.inventory.entries.get(&key);
        let mut reasons = Vec::new();
        let (op, before) = match host.path(path) {
            PathState::Refused { reason } => {
                out.plan.errors.push(refuse(reason.clone()));
                continue;
            }
            PathState::Other { what } => {
                out.plan.errors.push(refuse(format!(
                    "the path is {what}, not a folder; berth never touches it"
                )));
                continue;
            }
            PathState::File { .. } => {
                out.plan
                    .errors
                    .push(refuse("the path is a file, not a folder".into()));
                continue;
            }
            PathState::Absent => {
                reasons.push(if current.is_some() {
                    Reason::HostState {
                        detail: "deleted on the host since berth made it (drift)".into(),
                    }
                } else {
                    Reason::HostNew
                });
                (Op::Create, Before::Absent)
            }
            PathState::Dir { meta: now } => {
                if current.is_none() && !spec.adopt {
                    out.plan
                        .errors
                        .push(PlanError::HostNotOwned { addr: key, origin });
                    continue;
                }
                if current.is_none() {
                    reasons.push(Reason::Adopted);
                } else if *now == want {
                    out.plan.unchanged_host.push(addr);
                    continue;
                }
                meta_reasons(now, &want, &mut reasons);
                (Op::Update, Before::Dir { meta: *now })
            }
        };
        out.changes.push(Change {
            addr,
            op,
            reasons,
            needs: Vec::new(),
            payload: Payload::Directory(DirPayload {
                path: path.clone(),
                meta: Some(want),
                adopted: false,
                record: Record {
                    before: current.cloned(),
                    after: Some(entry(current, || before, None)),
                },
            }),
        });
    }
    let declared = |p: &str| ctx.desired.host.dirs.contains_key(std::path::Path::new(p));
    for (path, e) in leftovers(host, Kind::Directory, declared) {
        let path = std::path::PathBuf::from(path);
        let (meta, adopted, reason) = match (&e.before, host.path(&path)) {
            (_, PathState::Absent) => (None, false, Reason::Forgotten),
            (Before::Dir { meta }, _) => (Some(*meta), true, Reason::HostRemoved { restore: true }),
            _ => (None, false, Reason::HostRemoved { restore: false }),
        };
        out.changes.push(Change {
            addr: Addr::host(Kind::Directory, path.display().to_string()),
            op: Op::Delete,
            reasons: vec![reason],
            needs: Vec::new(),
            payload: Payload::Directory(DirPayload {
                path,
                meta,
                adopted,
                record: Record {
                    before: Some(e.clone()),
                    after: None,
                },
            }),
        });
    }
}
