//! `plan()`: the dispatch over the kinds' planners, and what is common to them — the empty-config
//! guard, ownership, the edges between kinds ([`link`]) and the order ([`order`]). No kind
//! imports this file.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::kinds::{self, Context, Planned};
use crate::model::{Desired, MountSource, Observed, PortSpec, ServiceSpec};

/// The errors `plan` gives whatever runs: those the files alone decide (a `build:`, a reload
/// that cannot reach a single mounted file, a `depends_on` cycle, a port the Firewall does not
/// allow, a lockout, a bad route or Proxy). `berth validate` reports them without an Engine.
pub fn config_errors(desired: &Desired) -> Vec<PlanError> {
    let opts = PlanOptions {
        allow_empty: true,
        ..PlanOptions::default()
    };
    plan(desired, &Observed::default(), &opts)
        .errors
        .into_iter()
        .filter(PlanError::is_from_config)
        .collect()
}

/// Decide everything. Pure: the same inputs always give the same plan.
pub fn plan(desired: &Desired, observed: &Observed, opts: &PlanOptions) -> Plan {
    let owned: Vec<_> = observed
        .containers
        .iter()
        .filter(|c| c.owned_by(&opts.instance))
        .collect();
    if desired.stacks.is_empty() && !owned.is_empty() && !opts.allow_empty {
        let mut plan = Plan::default();
        plan.errors.push(PlanError::EmptyDesired {
            owned_containers: owned.len(),
        });
        return plan;
    }
    let ctx = Context {
        desired,
        observed,
        opts,
        owned,
    };
    let mut out = Planned::default();
    kinds::image::plan(&ctx, &mut out);
    kinds::network::plan(&ctx, &mut out);
    kinds::volume::plan(&ctx, &mut out);
    kinds::container::plan(&ctx, &mut out);
    // The firewall has its own document and its own restore: it does not count here.
    let host_owned = observed
        .host
        .inventory
        .entries
        .keys()
        .filter(|a| !a.starts_with("firewall:"))
        .count();
    kinds::firewall::plan(&ctx, &mut out);
    if desired.host.is_empty() && host_owned > 0 && !opts.allow_empty {
        out.plan
            .errors
            .push(PlanError::EmptyHost { owned: host_owned });
    } else {
        kinds::directory::plan(&ctx, &mut out);
        kinds::file::plan(&ctx, &mut out);
        kinds::sysctl::plan(&ctx, &mut out);
        kinds::unit::plan(&ctx, &mut out);
    }
    kinds::route::plan(&ctx, &mut out);
    kinds::job::plan(&ctx, &mut out);
    let Planned {
        mut changes,
        mut plan,
    } = out;
    unique_addrs(&mut changes);
    link(&mut changes);
    kinds::host::link(&mut changes);
    match order(changes) {
        Ok(changes) => plan.changes = changes,
        Err(cycle) => plan.errors.push(PlanError::Cycle { addrs: cycle }),
    }
    plan
}

/// A delete and a create can name the same container (a fixed `container_name` that moves to
/// another service): the delete is then addressed by the container's ID as well.
fn unique_addrs(changes: &mut [Change]) {
    let wanted: BTreeSet<Addr> = changes
        .iter()
        .filter(|c| c.op != Op::Delete)
        .map(|c| c.addr.clone())
        .collect();
    for c in changes.iter_mut().filter(|c| c.op == Op::Delete) {
        if let (true, Payload::Container(p)) = (wanted.contains(&c.addr), &c.payload)
            && let Some(cur) = &p.current
        {
            c.addr.name = format!("{}@{}", c.addr.name, short_id(&cur.id));
        }
    }
}

/// The edges between kinds, added in one place:
/// - every change of a stack needs the pulls of that stack's images (a failed pull changes
///   nothing in the stacks that need the image);
/// - a container create/replace/start needs the networks and volumes it uses, when the plan
///   creates them — in whichever stack;
/// - a container create/replace needs the container deletes of its stack, and those of other
///   stacks that free a name or a host port it takes (a renamed service keeps its port);
/// - a network or volume delete needs every container delete and replace (their users go first).
pub fn link(changes: &mut [Change]) {
    let pulls: Vec<(Addr, BTreeSet<String>)> = changes
        .iter()
        .filter_map(|c| match &c.payload {
            Payload::Image(p) => Some((
                c.addr.clone(),
                p.services.iter().map(|s| s.stack.clone()).collect(),
            )),
            _ => None,
        })
        .collect();
    let created: BTreeMap<(Kind, String), Addr> = changes
        .iter()
        .filter(|c| c.op == Op::Create)
        .filter_map(|c| match &c.payload {
            Payload::Network(p) => Some(((Kind::Network, p.name.clone()), c.addr.clone())),
            Payload::Volume(p) => Some(((Kind::Volume, p.name.clone()), c.addr.clone())),
            _ => None,
        })
        .collect();
    struct Leaving {
        addr: Addr,
        op: Op,
        stack: String,
        name: String,
        ports: Vec<HostPort>,
    }
    let leaving: Vec<Leaving> = changes
        .iter()
        .filter_map(|c| match (&c.payload, c.op) {
            (Payload::Container(p), Op::Delete | Op::Replace) => Some(Leaving {
                addr: c.addr.clone(),
                op: c.op,
                stack: p.stack.clone(),
                name: p
                    .current
                    .as_ref()
                    .map_or(p.name.clone(), |c| c.name.clone()),
                ports: p.current_ports.iter().map(HostPort::of).collect(),
            }),
            _ => None,
        })
        .collect();
    let deletes: Vec<&Leaving> = leaving.iter().filter(|l| l.op == Op::Delete).collect();

    let mut extra: Vec<Vec<Need>> = vec![Vec::new(); changes.len()];
    for (i, c) in changes.iter().enumerate() {
        let needs = &mut extra[i];
        let stack = c.addr.stack();
        if c.payload.kind() != Kind::Image {
            for (pull, stacks) in &pulls {
                if stack.is_some_and(|s| stacks.contains(s)) {
                    needs.push(Need::on(pull.clone(), Wait::Applied));
                }
            }
        }
        match (&c.payload, c.op) {
            (Payload::Container(p), Op::Create | Op::Replace | Op::Start | Op::Reload) => {
                let Some((_, spec)) = p.service_spec() else {
                    continue;
                };
                for (kind, name) in uses(spec) {
                    if let Some(a) = created.get(&(kind, name)) {
                        needs.push(Need::on(a.clone(), Wait::Applied));
                    }
                }
                if matches!(c.op, Op::Create | Op::Replace) {
                    let ports: Vec<HostPort> = spec.ports.iter().map(HostPort::of).collect();
                    for d in &deletes {
                        let frees = d.stack == p.stack
                            || d.name == p.name
                            || d.ports.iter().any(|h| ports.iter().any(|n| n.clashes(h)));
                        if frees && d.addr != c.addr {
                            needs.push(Need::on(d.addr.clone(), Wait::Applied));
                        }
                    }
                }
            }
            (Payload::Network(_) | Payload::Volume(_), Op::Delete) => {
                for l in &leaving {
                    needs.push(Need::on(l.addr.clone(), Wait::Applied));
                }
            }
            _ => {}
        }
    }
    for (c, extra) in changes.iter_mut().zip(extra) {
        for n in extra {
            if !c.needs.iter().any(|m| m.addr == n.addr) {
                c.needs.push(n);
            }
        }
        c.needs.sort();
    }
}

/// The Engine-side networks and volumes a service uses.
fn uses(spec: &ServiceSpec) -> Vec<(Kind, String)> {
    let mut out: Vec<(Kind, String)> = spec
        .networks
        .keys()
        .map(|n| (Kind::Network, n.clone()))
        .collect();
    for m in &spec.mounts {
        if let MountSource::Volume { name, .. } = &m.source {
            out.push((Kind::Volume, name.clone()));
        }
    }
    out
}

/// A published host port, for "does this container free the port that one takes".
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPort {
    ip: Option<String>,
    port: u16,
    protocol: String,
}

impl HostPort {
    fn of(p: &PortSpec) -> HostPort {
        HostPort {
            ip: p.host_ip.clone(),
            port: p.published.unwrap_or(0),
            protocol: p.protocol.clone(),
        }
    }

    /// Same port and protocol, on addresses that overlap (unset or 0.0.0.0 binds every one).
    fn clashes(&self, other: &HostPort) -> bool {
        let any = |ip: &Option<String>| {
            ip.as_deref()
                .is_none_or(|i| i.is_empty() || i == "0.0.0.0" || i == "::")
        };
        self.port != 0
            && self.port == other.port
            && self.protocol == other.protocol
            && (any(&self.ip) || any(&other.ip) || self.ip == other.ip)
    }
}

/// Orders changes along their edges (Kahn's algorithm); among the ready ones, by phase
/// (pulls, container deletes, network/volume creates, containers, network/volume deletes) and
/// then by the order the planners produced them. A cycle is returned as the addresses in it.
pub fn order(changes: Vec<Change>) -> Result<Vec<Change>, Vec<String>> {
    let phase = |c: &Change| match (c.payload.kind(), c.op) {
        (Kind::Image, _) => 0,
        (Kind::Container, Op::Delete) => 1,
        (Kind::Network | Kind::Volume, Op::Create) => 2,
        (Kind::Directory | Kind::File | Kind::Sysctl, op) if op != Op::Delete => 2,
        (Kind::Container, _) => 3,
        (Kind::Unit, op) if op != Op::Delete => 3,
        (Kind::Proxy, _) => 3,
        (_, _) => 4,
    };
    let index: BTreeMap<&Addr, usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (&c.addr, i))
        .collect();
    let deps: Vec<Vec<usize>> = changes
        .iter()
        .map(|c| {
            c.needs
                .iter()
                .filter_map(|n| index.get(&n.addr).copied())
                .collect()
        })
        .collect();
    let mut done = vec![false; changes.len()];
    let mut order = Vec::with_capacity(changes.len());
    while order.len() < changes.len() {
        let next = (0..changes.len())
            .filter(|&i| !done[i] && deps[i].iter().all(|&d| done[d]))
            .min_by_key(|&i| (phase(&changes[i]), i));
        let Some(i) = next else {
            let mut cycle: Vec<String> = (0..changes.len())
                .filter(|&i| !done[i])
                .map(|i| changes[i].addr.to_string())
                .collect();
            cycle.sort();
            return Err(cycle);
        };
        done[i] = true;
        order.push(i);
    }
    let mut slots: Vec<Option<Change>> = changes.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}
