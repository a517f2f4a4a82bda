//! Containers: one per replica. Created when missing, replaced when the spec hash, the image the
//! tag resolves to, or a `restart: true` dependency changed, started when stopped, deleted when
//! the service, the replica or the stack left the config. Only containers this instance owns are
//! ever changed; one that holds a wanted name and is not ours is a [`PlanError::NameConflict`].

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Context, Planned};
use crate::model::{
    ContainerState, DependsCondition, ObservedContainer, PortSpec, ServiceSpec, StackSpec, labels,
    normalize_image_ref,
};
use crate::plan::diff::spec_reasons;
use crate::plan::{
    Addr, Change, ContainerPayload, Current, Kind, Need, Op, Payload, PlanError, Reason, Reload,
    ServiceRef, Skipped, Wait, container_name,
};

pub fn plan(ctx: &Context, out: &mut Planned) {
    for stack in ctx.desired.stacks.values() {
        for (service, reason) in &stack.skipped {
            out.plan.skipped.push(Skipped {
                stack: stack.name.clone(),
                service: service.clone(),
                reason: reason.clone(),
            });
        }
        plan_stack(ctx, &Arc::new(stack.clone()), out);
    }
    // Containers of stacks that left the config.
    for c in &ctx.owned {
        let Some(stack) = c.stack() else { continue };
        if !ctx.desired.stacks.contains_key(stack) {
            out.changes
                .push(delete(c, stack, Reason::StackRemoved, None));
        }
    }
}

/// The address of a replica's container.
pub fn addr(stack: &str, name: &str) -> Addr {
    Addr::in_stack(Kind::Container, stack, name)
}

fn delete(c: &ObservedContainer, stack: &str, reason: Reason, grace: Option<i64>) -> Change {
    Change {
        addr: addr(stack, &c.name),
        op: Op::Delete,
        reasons: vec![reason],
        needs: Vec::new(),
        payload: Payload::Container(ContainerPayload {
            stack: stack.to_string(),
            service: c.service().unwrap_or_default().to_string(),
            number: c.number(),
            name: c.name.clone(),
            current: Some(Current {
                id: c.id.clone(),
                name: c.name.clone(),
            }),
            spec: None,
            current_ports: published(c),
            reload: None,
            stop_grace_period: grace,
            handover: None,
        }),
    }
}

/// The bind mounts whose source is one of the config repository's files (not a folder), as
/// host paths.
fn config_file_mounts(spec: &ServiceSpec) -> Vec<String> {
    spec.mounts
        .iter()
        .filter_map(|m| match &m.source {
            crate::model::MountSource::Bind { path, .. }
                if spec
                    .config_files
                    .keys()
                    .filter(|k| !k.ends_with('/'))
                    .any(|k| std::path::Path::new(path).ends_with(k)) =>
            {
                Some(path.clone())
            }
            _ => None,
        })
        .collect()
}

/// The host ports a container publishes, read from the spec it was created from.
fn published(c: &ObservedContainer) -> Vec<PortSpec> {
    c.spec_json()
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .and_then(|v| serde_json::from_value(v.get("ports")?.clone()).ok())
        .unwrap_or_default()
}

/// The services `spec` must wait for, with the condition, from `depends_on`, and the ones whose
/// container it refers to at create time (`network_mode: service:x`, `volumes_from`, `links`).
pub fn service_needs(stack: &StackSpec, spec: &ServiceSpec) -> Vec<Need> {
    let mut needs = Vec::new();
    let replicas = |dep: &str, wait: Wait, required: bool, needs: &mut Vec<Need>| {
        let Some(dep_spec) = stack.services.get(dep) else {
            return;
        };
        for n in 1..=dep_spec.replicas.max(1) {
            needs.push(Need {
                addr: addr(&stack.name, &container_name(&stack.name, dep, dep_spec, n)),
                wait,
                required,
            });
        }
    };
    for (dep, d) in &spec.depends_on {
        let wait = match d.condition {
            DependsCondition::ServiceStarted => Wait::Running,
            DependsCondition::ServiceHealthy => Wait::Healthy,
            DependsCondition::ServiceCompletedSuccessfully => Wait::Completed,
        };
        replicas(dep, wait, d.required, &mut needs);
    }
    let referenced = spec
        .network_mode
        .as_deref()
        .and_then(|m| m.strip_prefix("service:"))
        .into_iter()
        .chain(
            spec.volumes_from
                .iter()
                .filter(|v| !v.starts_with("container:"))
                .map(|v| v.split(':').next().unwrap_or(v)),
        )
        .chain(spec.links.iter().map(|l| l.split(':').next().unwrap_or(l)));
    let referenced: BTreeSet<&str> = referenced.collect();
    for dep in referenced {
        if !spec.depends_on.contains_key(dep) {
            replicas(dep, Wait::Running, true, &mut needs);
        }
    }
    needs
}

/// The dependency a `restart: true` or `network_mode: service:x` edge ties this service to.
fn restart_dependencies(spec: &ServiceSpec) -> impl Iterator<Item = &str> {
    spec.depends_on
        .iter()
        .filter(|(_, d)| d.restart)
        .map(|(name, _)| name.as_str())
        .chain(
            spec.network_mode
                .as_deref()
                .and_then(|m| m.strip_prefix("service:")),
        )
}

fn plan_stack(ctx: &Context, stack_arc: &Arc<StackSpec>, out: &mut Planned) {
    let stack_spec: &StackSpec = stack_arc;
    let stack = &stack_spec.name;
    let payload =
        |service: &str, number: u32, name: String, current: Option<&ObservedContainer>| {
            Payload::Container(ContainerPayload {
                stack: stack.clone(),
                service: service.to_string(),
                number,
                name,
                current: current.map(|c| Current {
                    id: c.id.clone(),
                    name: c.name.clone(),
                }),
                spec: Some(stack_arc.clone()),
                current_ports: current.map(published).unwrap_or_default(),
                reload: None,
                stop_grace_period: None,
                handover: None,
            })
        };
    // Services being replaced or created, for `restart: true` and `network_mode: service:x`.
    let mut replaced: BTreeSet<&str> = BTreeSet::new();
    for service in dependency_order(stack_spec) {
        let spec = &stack_spec.services[service];
        let sref = ServiceRef {
            stack: stack.clone(),
            service: service.to_string(),
        };
        if super::image::usable(stack, service, spec, ctx).is_err() {
            continue; // the image planner reports it
        }
        // A single bind-mounted file keeps its old inode in the container once git (or
        // berth's worktree) replaces it: a reload could never reach it.
        if spec.on_config_change.is_some()
            && let Some(path) = config_file_mounts(spec).into_iter().next()
        {
            out.plan.errors.push(PlanError::ReloadNeedsFolder {
                stack: stack.clone(),
                service: service.to_string(),
                path,
            });
            continue;
        }
        let image_id = ctx.observed.images.get(&normalize_image_ref(&spec.image));
        let needs = service_needs(stack_spec, spec);
        let mut existing: Vec<&ObservedContainer> = ctx
            .owned
            .iter()
            .copied()
            .filter(|c| c.stack() == Some(stack) && c.service() == Some(service))
            .collect();
        let dependency_changed = restart_dependencies(spec).find(|dep| replaced.contains(dep));

        let replicas = spec.replicas.max(1);
        let mut touched = false;
        for number in 1..=replicas {
            let name = container_name(stack, service, spec, number);
            let pos = existing
                .iter()
                .position(|c| c.name == name)
                .or_else(|| existing.iter().position(|c| c.number() == number));
            let Some(pos) = pos else {
                // A container of ours that leaves the config may hold the name: the create
                // waits for its delete (see `plan::link`). Anyone else's is a conflict.
                let holder = ctx.observed.containers.iter().find(|c| c.name == name);
                if let Some(holder) = holder.filter(|h| !h.owned_by(&ctx.opts.instance)) {
                    out.plan.errors.push(PlanError::NameConflict {
                        stack: stack.clone(),
                        service: service.to_string(),
                        name,
                        container_id: holder.id.clone(),
                        owner: holder
                            .managed()
                            .then(|| holder.labels.get(labels::INSTANCE).cloned())
                            .map(|i| i.unwrap_or_else(|| crate::model::DEFAULT_INSTANCE.into())),
                    });
                    continue;
                }
                let reason = if number > 1 && !existing.is_empty() {
                    Reason::ScaledUp { replicas }
                } else {
                    Reason::NewService
                };
                touched = true;
                replaced.insert(service);
                out.changes.push(Change {
                    addr: addr(stack, &name),
                    op: Op::Create,
                    reasons: vec![reason],
                    needs: needs.clone(),
                    payload: payload(service, number, name, None),
                });
                continue;
            };
            let current = existing.remove(pos);
            let mut reasons = spec_reasons(spec, current);
            if current.name != name {
                // E.g. an apply was killed after renaming the old container aside.
                reasons.push(Reason::Field {
                    field: "container name".into(),
                    detail: format!("{} → {name}", current.name),
                });
            }
            match image_id {
                Some(id) if *id != current.image_id && reasons.is_empty() => {
                    reasons.push(Reason::ImageUpdated {
                        image: spec.image.clone(),
                        running: current.image_id.clone(),
                        current: id.clone(),
                    })
                }
                None if reasons.is_empty() => reasons.push(Reason::ImageNotPresent {
                    image: spec.image.clone(),
                }),
                _ => {}
            }
            if let (true, Some(dep)) = (reasons.is_empty(), dependency_changed) {
                reasons.push(Reason::DependencyReplaced {
                    dependency: dep.to_string(),
                });
            }
            let cur = Some(current);
            // Only bind-mounted config files changed and the service asks for a reload.
            // The Caddyfile default only when no single config file is mounted beside it
            // (a reload could not reach that one).
            let action = spec
                .config_change_action()
                .filter(|_| spec.on_config_change.is_some() || config_file_mounts(spec).is_empty());
            if let Some(action) = &action
                && !reasons.is_empty()
                && reasons
                    .iter()
                    .all(|r| matches!(r, Reason::Field { field, .. } if field == "config file"))
            {
                let digest = spec.config_digest();
                if ctx.observed.reloaded.get(&current.id) == Some(&digest) {
                    continue; // reloaded with exactly these files already
                }
                touched = true;
                let mut p = payload(service, number, current.name.clone(), cur);
                if let Payload::Container(p) = &mut p {
                    p.reload = Some(Reload {
                        action: action.clone(),
                        digest,
                    });
                }
                let mut reasons = reasons;
                if spec.on_config_change.is_none()
                    && let Some(path) = &spec.caddyfile
                {
                    reasons.push(Reason::Field {
                        field: "Caddyfile".into(),
                        detail: format!(
                            "{path}: validated with `caddy adapt`, then `caddy reload` (no recreate)"
                        ),
                    });
                }
                out.changes.push(Change {
                    addr: addr(stack, &name),
                    op: Op::Reload,
                    reasons,
                    needs: needs.clone(),
                    payload: p,
                });
                continue;
            }
            if !reasons.is_empty() {
                touched = true;
                replaced.insert(service);
                out.changes.push(Change {
                    addr: addr(stack, &name),
                    op: Op::Replace,
                    reasons,
                    needs: needs.clone(),
                    payload: payload(service, number, name, cur),
                });
            } else if !matches!(
                current.state,
                ContainerState::Running | ContainerState::Restarting
            ) {
                touched = true;
                out.changes.push(Change {
                    addr: addr(stack, &name),
                    op: Op::Start,
                    reasons: vec![Reason::State {
                        state: current.state.to_string(),
                    }],
                    needs: needs.clone(),
                    payload: payload(service, number, current.name.clone(), cur),
                });
            }
        }
        if !touched {
            out.plan.unchanged.push(sref);
        }
        // Whatever is left is surplus: scaled down, or a leftover of an interrupted apply.
        for c in existing {
            let reason = if c.number() > replicas {
                Reason::ScaledDown { replicas }
            } else {
                Reason::Duplicate
            };
            out.changes
                .push(delete(c, stack, reason, spec.stop_grace_period));
        }
    }
    // Services that left this stack's config.
    for c in &ctx.owned {
        if c.stack() != Some(stack) {
            continue;
        }
        let service = c.service().unwrap_or_default();
        if !stack_spec.services.contains_key(service) {
            out.changes
                .push(delete(c, stack, Reason::ServiceRemoved, None));
        }
    }
}

/// Services in an order where every dependency (depends_on, links, volumes_from,
/// `network_mode: service:x`) comes before its dependents; ties by name. A cycle (refused by validation) cannot hang or
/// drop services: the rest follow in name order.
pub fn dependency_order(stack: &StackSpec) -> Vec<&str> {
    let deps = |spec: &ServiceSpec| -> Vec<String> {
        let mut d: Vec<String> = spec.depends_on.keys().cloned().collect();
        if let Some(s) = spec
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("service:"))
        {
            d.push(s.to_string());
        }
        for link in &spec.links {
            d.push(link.split(':').next().unwrap_or(link).to_string());
        }
        // `volumes_from: [svc]` mounts the other service's container: it must exist first.
        for from in spec
            .volumes_from
            .iter()
            .filter(|v| !v.starts_with("container:"))
        {
            d.push(from.split(':').next().unwrap_or(from).to_string());
        }
        d
    };
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::new();
    while order.len() < stack.services.len() {
        let ready = stack.services.iter().find(|(name, spec)| {
            !done.contains(name.as_str())
                && deps(spec)
                    .iter()
                    .all(|d| done.contains(d.as_str()) || !stack.services.contains_key(d))
        });
        let name = match ready {
            Some((name, _)) => name.as_str(),
            // A cycle: take the first remaining by name.
            None => match stack.services.keys().find(|n| !done.contains(n.as_str())) {
                Some(n) => n.as_str(),
                None => break,
            },
        };
        done.insert(name);
        order.push(name);
    }
    order
}
