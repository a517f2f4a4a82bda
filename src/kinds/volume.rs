//! Volumes: created when a stack declares one the Engine lacks. Removed only with
//! `--prune-volumes` (their data goes with them), when berth owns the volume and no declared
//! stack uses it — including the volumes of a stack that left the config.

use std::collections::BTreeSet;

use super::{Context, Planned};
use crate::plan::{Addr, Change, Kind, Op, Payload, PlanError, VolumePayload};

pub fn plan(ctx: &Context, out: &mut Planned) {
    let mounted: BTreeSet<&str> = ctx
        .observed
        .containers
        .iter()
        .flat_map(|c| c.volumes.iter().map(|m| m.name.as_str()))
        .collect();
    let listed = ctx.observed.volumes.as_ref();
    let exists =
        |name: &str| mounted.contains(name) || listed.is_some_and(|v| v.contains_key(name));
    let created: BTreeSet<&str> = ctx
        .desired
        .stacks
        .values()
        .flat_map(|s| s.volumes.values())
        .filter(|v| !v.external)
        .map(|v| v.name.as_str())
        .collect();
    let mut planned: BTreeSet<&str> = BTreeSet::new();
    for stack in ctx.desired.stacks.values() {
        for spec in stack.volumes.values() {
            if exists(&spec.name) {
                continue;
            }
            if spec.external {
                if listed.is_some() && !created.contains(spec.name.as_str()) {
                    out.plan.errors.push(PlanError::ExternalMissing {
                        stack: stack.name.clone(),
                        kind: "volume",
                        name: spec.name.clone(),
                    });
                }
                continue;
            }
            if !planned.insert(spec.name.as_str()) {
                continue;
            }
            out.changes.push(Change {
                addr: Addr::in_stack(Kind::Volume, &stack.name, &spec.name),
                op: Op::Create,
                reasons: Vec::new(),
                needs: Vec::new(),
                payload: Payload::Volume(VolumePayload {
                    stack: stack.name.clone(),
                    name: spec.name.clone(),
                    spec: Some(spec.clone()),
                }),
            });
        }
    }
    if !ctx.opts.prune_volumes {
        return;
    }
    let Some(listed) = listed else { return };
    let declared: BTreeSet<&str> = ctx
        .desired
        .stacks
        .values()
        .flat_map(|s| s.volumes.values().map(|v| v.name.as_str()))
        .collect();
    for (name, o) in listed {
        if let (true, Some(stack)) = (o.owned_by(&ctx.opts.instance), &o.stack)
            && !declared.contains(name.as_str())
        {
            out.changes.push(Change {
                addr: Addr::in_stack(Kind::Volume, stack, name),
                op: Op::Delete,
                reasons: Vec::new(),
                needs: Vec::new(),
                payload: Payload::Volume(VolumePayload {
                    stack: stack.clone(),
                    name: name.clone(),
                    spec: None,
                }),
            });
        }
    }
}
