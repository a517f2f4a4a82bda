//! Networks: created when a stack declares one the Engine lacks; removed when berth owns it and
//! no declared stack uses it any more. An `external` network must exist — or be created by
//! another stack of the same config, in which case the plan orders that stack's create first.

use std::collections::BTreeSet;

use super::{Context, Planned};
use crate::plan::{Addr, Change, Kind, NetworkPayload, Op, Payload, PlanError};

pub fn plan(ctx: &Context, out: &mut Planned) {
    let attached: BTreeSet<&str> = ctx
        .observed
        .containers
        .iter()
        .flat_map(|c| c.networks.iter().map(String::as_str))
        .collect();
    let listed = ctx.observed.networks.as_ref();
    let exists =
        |name: &str| attached.contains(name) || listed.is_some_and(|n| n.contains_key(name));
    // Engine names some stack of this config creates.
    let created: BTreeSet<&str> = ctx
        .desired
        .stacks
        .values()
        .flat_map(|s| s.networks.values())
        .filter(|n| !n.external)
        .map(|n| n.name.as_str())
        .collect();
    let mut planned: BTreeSet<&str> = BTreeSet::new();
    for stack in ctx.desired.stacks.values() {
        for spec in stack.networks.values() {
            if exists(&spec.name) {
                continue;
            }
            if spec.external {
                // Missing only when the Engine was asked and nothing in this plan makes it.
                if listed.is_some() && !created.contains(spec.name.as_str()) {
                    out.plan.errors.push(PlanError::ExternalMissing {
                        stack: stack.name.clone(),
                        kind: "network",
                        name: spec.name.clone(),
                    });
                }
                continue;
            }
            // Two stacks declaring the same Engine name: the first (by stack name) creates it.
            if !planned.insert(spec.name.as_str()) {
                continue;
            }
            out.changes.push(Change {
                addr: Addr::in_stack(Kind::Network, &stack.name, &spec.name),
                op: Op::Create,
                reasons: Vec::new(),
                needs: Vec::new(),
                payload: Payload::Network(NetworkPayload {
                    stack: stack.name.clone(),
                    name: spec.name.clone(),
                    spec: Some(spec.clone()),
                }),
            });
        }
    }
    // Owned networks no declared stack uses.
    let Some(listed) = listed else { return };
    let declared: BTreeSet<&str> = ctx
        .desired
        .stacks
        .values()
        .flat_map(|s| s.networks.values().map(|n| n.name.as_str()))
        .collect();
    for (name, o) in listed {
        if let (true, Some(stack)) = (o.owned_by(&ctx.opts.instance), &o.stack)
            && !declared.contains(name.as_str())
        {
            out.changes.push(Change {
                addr: Addr::in_stack(Kind::Network, stack, name),
                op: Op::Delete,
                reasons: Vec::new(),
                needs: Vec::new(),
                payload: Payload::Network(NetworkPayload {
                    stack: stack.clone(),
                    name: name.clone(),
                    spec: None,
                }),
            });
        }
    }
}
