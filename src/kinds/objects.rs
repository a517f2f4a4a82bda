//! What networks and volumes share: created when a stack declares one the Engine lacks;
//! `external` ones must exist — or be created by another stack of the same config, in which case
//! the plan orders that stack's create first; owned ones no declared stack uses are deleted
//! (volumes only with `--prune-volumes`, see [`super::volume`]).

use std::collections::{BTreeMap, BTreeSet};

use super::{Context, Planned};
use crate::model::{NetworkSpec, ObservedObject, StackSpec, VolumeSpec};
use crate::plan::{Addr, Change, Kind, Op, PlanError};

/// A declared network or volume, as the shared planner sees it.
pub(super) trait Object: Clone {
    const KIND: Kind;
    fn name(&self) -> &str;
    fn external(&self) -> bool;
    /// This kind's declarations in a stack.
    fn declared(stack: &StackSpec) -> &BTreeMap<String, Self>;
    /// Engine names the observed containers prove exist.
    fn in_use(ctx: &Context) -> BTreeSet<String>;
    /// The Engine's list, when it was asked.
    fn listed<'a>(ctx: &Context<'a>) -> Option<&'a BTreeMap<String, ObservedObject>>;
    /// The payload of a create (`Some(spec)`) or a delete (`None`).
    fn payload(stack: &str, name: &str, spec: Option<Self>) -> crate::plan::Payload;
}

impl Object for NetworkSpec {
    const KIND: Kind = Kind::Network;
    fn name(&self) -> &str {
        &self.name
    }
    fn external(&self) -> bool {
        self.external
    }
    fn declared(stack: &StackSpec) -> &BTreeMap<String, Self> {
        &stack.networks
    }
    fn in_use(ctx: &Context) -> BTreeSet<String> {
        let c = &ctx.observed.containers;
        c.iter().flat_map(|c| c.networks.iter().cloned()).collect()
    }
    fn listed<'a>(ctx: &Context<'a>) -> Option<&'a BTreeMap<String, ObservedObject>> {
        ctx.observed.networks.as_ref()
    }
    fn payload(stack: &str, name: &str, spec: Option<Self>) -> crate::plan::Payload {
        crate::plan::Payload::Network(crate::plan::NetworkPayload {
            stack: stack.to_string(),
            name: name.to_string(),
            spec,
        })
    }
}

impl Object for VolumeSpec {
    const KIND: Kind = Kind::Volume;
    fn name(&self) -> &str {
        &self.name
    }
    fn external(&self) -> bool {
        self.external
    }
    fn declared(stack: &StackSpec) -> &BTreeMap<String, Self> {
        &stack.volumes
    }
    fn in_use(ctx: &Context) -> BTreeSet<String> {
        let c = &ctx.observed.containers;
        c.iter()
            .flat_map(|c| c.volumes.iter().map(|m| m.name.clone()))
            .collect()
    }
    fn listed<'a>(ctx: &Context<'a>) -> Option<&'a BTreeMap<String, ObservedObject>> {
        ctx.observed.volumes.as_ref()
    }
    fn payload(stack: &str, name: &str, spec: Option<Self>) -> crate::plan::Payload {
        crate::plan::Payload::Volume(crate::plan::VolumePayload {
            stack: stack.to_string(),
            name: name.to_string(),
            spec,
        })
    }
}

fn change<T: Object>(op: Op, stack: &str, name: &str, spec: Option<T>) -> Change {
    Change {
        addr: Addr::in_stack(T::KIND, stack, name),
        op,
        reasons: Vec::new(),
        needs: Vec::new(),
        payload: T::payload(stack, name, spec),
    }
}

/// Creates (and external-missing errors) for every declared object the Engine lacks.
pub(super) fn plan_creates<T: Object>(ctx: &Context, out: &mut Planned) {
    let in_use = T::in_use(ctx);
    let listed = T::listed(ctx);
    let exists = |name: &str| in_use.contains(name) || listed.is_some_and(|l| l.contains_key(name));
    let all = || {
        ctx.desired
            .stacks
            .values()
            .flat_map(|s| T::declared(s).values())
    };
    // Engine names some stack of this config creates.
    let created: BTreeSet<&str> = all().filter(|o| !o.external()).map(T::name).collect();
    let mut planned: BTreeSet<&str> = BTreeSet::new();
    for stack in ctx.desired.stacks.values() {
        for spec in T::declared(stack).values() {
            if exists(spec.name()) {
                continue;
            }
            if spec.external() {
                // Missing only when the Engine was asked and nothing in this plan makes it.
                if listed.is_some() && !created.contains(spec.name()) {
                    out.plan.errors.push(PlanError::ExternalMissing {
                        stack: stack.name.clone(),
                        kind: T::KIND.as_str(),
                        name: spec.name().to_string(),
                    });
                }
                continue;
            }
            // Two stacks declaring the same Engine name: the first (by stack name) creates it.
            if planned.insert(spec.name()) {
                out.changes.push(change(
                    Op::Create,
                    &stack.name,
                    spec.name(),
                    Some(spec.clone()),
                ));
            }
        }
    }
}

/// Deletes of owned objects that no declared stack uses any more.
pub(super) fn plan_deletes<T: Object>(ctx: &Context, out: &mut Planned) {
    let Some(listed) = T::listed(ctx) else { return };
    let declared: BTreeSet<&str> = ctx
        .desired
        .stacks
        .values()
        .flat_map(|s| T::declared(s).values().map(T::name))
        .collect();
    for (name, o) in listed {
        if let (true, Some(stack)) = (o.owned_by(&ctx.opts.instance), &o.stack)
            && !declared.contains(name.as_str())
        {
            out.changes.push(change::<T>(Op::Delete, stack, name, None));
        }
    }
}
