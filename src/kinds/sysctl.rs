//! `kind: Sysctl`: a kernel setting, compared in the kernel's normalised form and persisted in
//! `/etc/sysctl.d/99-zz-berth-<key>.conf`. When it leaves the config the value berth found is
//! written back and the persisted file goes (or gets its old content back).

use super::host::{entry, leftovers};
use super::{Context, Planned};
use crate::model::host::{Before, PathState, sysctl_conf, sysctl_conf_path};
use crate::plan::{Addr, Change, Kind, Op, Payload, PlanError, Reason, Record, SysctlPayload};

pub fn plan(ctx: &Context, out: &mut Planned) {
    let host = &ctx.observed.host;
    for (key, spec) in &ctx.desired.host.sysctls {
        let addr = Addr::host(Kind::Sysctl, key.clone());
        let now = match host.sysctls.get(key) {
            Some(Ok(v)) => v.clone(),
            Some(Err(reason)) => {
                out.plan.errors.push(PlanError::HostRefused {
                    addr: addr.to_string(),
                    origin: spec.origin.to_string(),
                    reason: reason.clone(),
                });
                continue;
            }
            None => {
                out.plan.errors.push(PlanError::HostRefused {
                    addr: addr.to_string(),
                    origin: spec.origin.to_string(),
                    reason: "was not read from the host".into(),
                });
                continue;
            }
        };
        let conf_path = sysctl_conf_path(key);
        let conf_now = conf_text(host.path(&conf_path));
        let conf = sysctl_conf(key, &spec.value);
        let mut reasons = Vec::new();
        if now != spec.value {
            reasons.push(Reason::Value {
                key: key.clone(),
                from: now.clone(),
                to: spec.value.clone(),
            });
        }
        if conf_now.as_deref() != Some(conf.as_str()) {
            reasons.push(Reason::NotPersisted {
                path: conf_path.display().to_string(),
            });
        }
        if reasons.is_empty() {
            out.plan.unchanged_host.push(addr);
            continue;
        }
        let current = host.inventory.entries.get(&addr.to_string());
        let before = Before::Sysctl {
            value: now.clone(),
            conf: conf_now,
        };
        out.changes.push(Change {
            addr,
            op: Op::Update,
            reasons,
            needs: Vec::new(),
            payload: Payload::Sysctl(SysctlPayload {
                key: key.clone(),
                value: spec.value.clone(),
                conf: Some(conf),
                from: now,
                record: Record {
                    before: current.cloned(),
                    after: Some(entry(current, || before, None)),
                },
            }),
        });
    }
    let declared = |k: &str| ctx.desired.host.sysctls.contains_key(k);
    for (key, e) in leftovers(host, Kind::Sysctl, declared) {
        let Before::Sysctl { value, conf } = &e.before else {
            continue;
        };
        let now = host
            .sysctls
            .get(key)
            .and_then(|r| r.as_ref().ok())
            .cloned()
            .unwrap_or_default();
        out.changes.push(Change {
            addr: Addr::host(Kind::Sysctl, key),
            op: Op::Delete,
            reasons: vec![Reason::HostRemoved { restore: true }],
            needs: Vec::new(),
            payload: Payload::Sysctl(SysctlPayload {
                key: key.to_string(),
                value: value.clone(),
                conf: conf.clone(),
                from: now,
                record: Record {
                    before: Some(e.clone()),
                    after: None,
                },
            }),
        });
    }
}

fn conf_text(p: &PathState) -> Option<String> {
    match p {
        PathState::File { content, .. } => Some(String::from_utf8_lossy(content).into_owned()),
        _ => None,
    }
}
