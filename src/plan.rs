//! The planner: `plan(&Desired, &Observed, &PlanOptions) -> Plan`. Pure: no IO, no clock, no
//! randomness. Everything berth will do, and why, is decided here; the executor (`apply`) only
//! carries the plan out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::model::{
    ContainerState, Desired, NetworkSpec, Observed, ObservedContainer, PullPolicy, ServiceSpec,
    StackSpec, VolumeSpec,
};

/// Switches that widen what a plan may do. Defaults are the safe ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// This berth instance's name: only objects labelled with it are berth's to change.
    pub instance: String,
    /// Allow removing every berth-owned object when the config declares no stack at all.
    pub allow_empty: bool,
    /// Remove berth-owned named volumes that left the config (data loss: off by default).
    pub prune_volumes: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            instance: crate::model::DEFAULT_INSTANCE.to_string(),
            allow_empty: false,
            prune_volumes: false,
        }
    }
}

/// What berth will do, in execution order, and what it will not do and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// In execution order: pulls, container removals, networks and volumes, services in
    /// dependency order, network/volume removals.
    pub actions: Vec<Action>,
    /// Services that need nothing.
    pub unchanged: Vec<ServiceRef>,
    /// Declared services that are not deployed, and why (e.g. inactive profile).
    pub skipped: Vec<Skipped>,
    /// Problems that stop `apply` before it changes anything.
    pub errors: Vec<PlanError>,
}

/// A stack/service pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ServiceRef {
    pub stack: String,
    pub service: String,
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.stack, self.service)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub stack: String,
    pub service: String,
    pub reason: String,
}

/// A problem that makes the plan impossible to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum PlanError {
    /// A container berth does not own holds a name berth needs. It is never touched.
    NameConflict {
        stack: String,
        service: String,
        name: String,
        container_id: String,
    },
    /// The service needs `build:`; berth cannot build images yet.
    BuildNotSupported { stack: String, service: String },
    /// `pull_policy: never` and the image is not on the Engine.
    ImageMissing {
        stack: String,
        service: String,
        image: String,
    },
    /// An external network or volume does not exist.
    ExternalMissing {
        stack: String,
        kind: &'static str,
        name: String,
    },
    /// The config declares nothing and berth owns something: refusing to prune everything.
    EmptyDesired { owned_containers: usize },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::NameConflict {
                stack,
                service,
                name,
                container_id,
            } => write!(
                f,
                "{stack}/{service}: container name {name} is taken by container {} that berth does not own; remove or rename it (berth never touches it)",
                short_id(container_id)
            ),
            PlanError::BuildNotSupported { stack, service } => {
                write!(
                    f,
                    "{stack}/{service}: build not supported yet (set `image:` to a pre-built image)"
                )
            }
            PlanError::ImageMissing {
                stack,
                service,
                image,
            } => write!(
                f,
                "{stack}/{service}: image {image} is not on the engine and pull_policy is never"
            ),
            PlanError::ExternalMissing { stack, kind, name } => {
                write!(f, "{stack}: external {kind} {name} does not exist")
            }
            PlanError::EmptyDesired { owned_containers } => write!(
                f,
                "the config declares no stack, which would remove all {owned_containers} containers berth owns; pass --allow-empty if that is what you want"
            ),
        }
    }
}

/// One step. The executor carries these out in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Pull an image before anything else changes.
    PullImage {
        image: String,
        reason: PullReason,
        /// The services that need it.
        services: Vec<ServiceRef>,
    },
    CreateNetwork {
        stack: String,
        spec: NetworkSpec,
    },
    CreateVolume {
        stack: String,
        spec: VolumeSpec,
    },
    /// Create and start a new container.
    CreateContainer {
        stack: String,
        service: String,
        /// Replica number (1-based), the `<n>` in `<stack>-<service>-<n>`.
        number: u32,
        name: String,
        reasons: Vec<Reason>,
    },
    /// Replace a container: the old one keeps running until the new one is created; the old one
    /// is stopped and renamed aside, the new one started, and only when it is up the old one is
    /// removed. If the new one fails, the old one is restored.
    ReplaceContainer {
        stack: String,
        service: String,
        number: u32,
        /// The name the new container gets (the old one may carry another, e.g. after a crash).
        name: String,
        old_id: String,
        reasons: Vec<Reason>,
    },
    /// Start a container that is up to date but not running (self-heal).
    StartContainer {
        stack: String,
        service: String,
        name: String,
        id: String,
        reason: Reason,
    },
    /// Stop and remove a berth-owned container. Its volumes are kept.
    RemoveContainer {
        stack: String,
        service: String,
        name: String,
        id: String,
        reason: Reason,
    },
    /// Remove a berth-owned network of a stack that left the config.
    RemoveNetwork {
        stack: String,
        name: String,
    },
    /// Remove a berth-owned volume (only with `--prune-volumes`).
    RemoveVolume {
        stack: String,
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullReason {
    /// Not on the Engine.
    Missing,
    /// `pull_policy: always`.
    Always,
}

/// Why an action is needed. Rendered for humans by `Display`; never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// No container exists for this service (or replica) yet.
    NewService,
    /// The replica count went up.
    ScaledUp { replicas: u32 },
    /// The replica count went down.
    ScaledDown { replicas: u32 },
    /// A field of the normalised spec changed. `detail` is already rendered safely, e.g.
    /// `test/app:1 → test/app:2` or `DB_PASSWORD changed (value hidden)`.
    Field { field: String, detail: String },
    /// The image tag now resolves to another image ID than the container runs.
    ImageUpdated {
        image: String,
        running: String,
        current: String,
    },
    /// The image is not on the Engine: it will be pulled and the container recreated from it.
    ImageNotPresent { image: String },
    /// The container carries no spec label (created by an older berth or by hand with our labels).
    UnknownSpec,
    /// The container is not running.
    State { state: String },
    /// A `depends_on` with `restart: true` points at a service that is being replaced.
    DependencyReplaced { dependency: String },
    /// The service left the config.
    ServiceRemoved,
    /// The whole stack left the config.
    StackRemoved,
    /// A second container for the same replica slot (e.g. left behind by an interrupted apply).
    Duplicate,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NewService => f.write_str("new service"),
            Reason::ScaledUp { replicas } => write!(f, "scaled up to {replicas}"),
            Reason::ScaledDown { replicas } => write!(f, "scaled down to {replicas}"),
            Reason::Field { field, detail } => write!(f, "{field} {detail}"),
            Reason::ImageUpdated {
                image,
                running,
                current,
            } => write!(
                f,
                "image {image} now resolves to {} (container runs {})",
                short_id(current),
                short_id(running)
            ),
            Reason::ImageNotPresent { image } => {
                write!(f, "image {image} is not on the engine (will be pulled)")
            }
            Reason::UnknownSpec => f.write_str("container has no berth spec label"),
            Reason::State { state } => write!(f, "container {state}"),
            Reason::DependencyReplaced { dependency } => {
                write!(
                    f,
                    "dependency {dependency} is replaced (depends_on restart: true)"
                )
            }
            Reason::ServiceRemoved => f.write_str("service removed from config"),
            Reason::StackRemoved => f.write_str("stack removed from config"),
            Reason::Duplicate => f.write_str("duplicate container for the same replica"),
        }
    }
}

/// `sha256:0123456789ab…` → `0123456789ab`.
pub fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

impl Plan {
    /// Whether applying would change anything (the `plan` exit code 2).
    pub fn has_changes(&self) -> bool {
        !self.actions.is_empty()
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for a in &self.actions {
            match a {
                Action::PullImage { .. } => s.pulled += 1,
                Action::CreateNetwork { .. } | Action::CreateVolume { .. } => {
                    s.objects_created += 1
                }
                Action::CreateContainer { .. } => s.created += 1,
                Action::ReplaceContainer { .. } => s.replaced += 1,
                Action::StartContainer { .. } => s.started += 1,
                Action::RemoveContainer { .. } => s.removed += 1,
                Action::RemoveNetwork { .. } | Action::RemoveVolume { .. } => {
                    s.objects_removed += 1
                }
            }
        }
        s.unchanged = self.unchanged.len();
        s
    }
}

/// Counts of a plan's actions, for one-line summaries (CLI, commit statuses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub created: usize,
    pub replaced: usize,
    pub started: usize,
    pub removed: usize,
    pub unchanged: usize,
    pub pulled: usize,
    pub objects_created: usize,
    pub objects_removed: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} created, {} replaced, {} started, {} removed, {} unchanged",
            self.created, self.replaced, self.started, self.removed, self.unchanged
        )
    }
}

pub use crate::model::container_name;

/// Decide everything. Pure: the same inputs always give the same plan.
pub fn plan(desired: &Desired, observed: &Observed, opts: &PlanOptions) -> Plan {
    let mut plan = Plan::default();
    let owned: Vec<&ObservedContainer> = observed
        .containers
        .iter()
        .filter(|c| c.owned_by(&opts.instance))
        .collect();

    if desired.stacks.is_empty() && !owned.is_empty() && !opts.allow_empty {
        plan.errors.push(PlanError::EmptyDesired {
            owned_containers: owned.len(),
        });
        return plan;
    }

    let mut pulls: BTreeMap<String, (PullReason, Vec<ServiceRef>)> = BTreeMap::new();
    let mut objects = Vec::new();
    let mut containers = Vec::new();
    let mut removals = Vec::new();

    for stack in desired.stacks.values() {
        for (service, reason) in &stack.skipped {
            plan.skipped.push(Skipped {
                stack: stack.name.clone(),
                service: service.clone(),
                reason: reason.clone(),
            });
        }
        plan_objects(stack, observed, &mut objects, &mut plan.errors);
        StackPlanner {
            stack,
            observed,
            owned: &owned,
        }
        .plan(&mut containers, &mut removals, &mut pulls, &mut plan);
    }

    // Containers of stacks that left the config.
    for c in &owned {
        let Some(stack) = c.stack() else { continue };
        if !desired.stacks.contains_key(stack) {
            removals.push(Action::RemoveContainer {
                stack: stack.to_string(),
                service: c.service().unwrap_or_default().to_string(),
                name: c.name.clone(),
                id: c.id.clone(),
                reason: Reason::StackRemoved,
            });
        }
    }
    plan_object_removals(desired, observed, opts, &mut removals);

    plan.actions.extend(
        pulls
            .into_iter()
            .map(|(image, (reason, services))| Action::PullImage {
                image,
                reason,
                services,
            }),
    );
    // Containers that leave go first: they may hold a port or a name a new one needs, and the
    // config no longer wants them whatever happens next. Network and volume removals go last,
    // once no container of ours uses them.
    let (gone, objects_gone): (Vec<Action>, Vec<Action>) = removals
        .into_iter()
        .partition(|a| matches!(a, Action::RemoveContainer { .. }));
    plan.actions.extend(gone);
    plan.actions.extend(objects);
    plan.actions.extend(containers);
    plan.actions.extend(objects_gone);
    plan
}

/// Networks and volumes a stack needs that the Engine does not have.
fn plan_objects(
    stack: &StackSpec,
    observed: &Observed,
    actions: &mut Vec<Action>,
    errors: &mut Vec<PlanError>,
) {
    let attached: BTreeSet<&str> = observed
        .containers
        .iter()
        .flat_map(|c| c.networks.iter().map(String::as_str))
        .collect();
    let mounted: BTreeSet<&str> = observed
        .containers
        .iter()
        .flat_map(|c| c.volumes.iter().map(|m| m.name.as_str()))
        .collect();
    for spec in stack.networks.values() {
        let exists = attached.contains(spec.name.as_str())
            || observed
                .networks
                .as_ref()
                .is_some_and(|n| n.contains_key(&spec.name));
        if exists {
            continue;
        }
        if spec.external {
            // Only claim it is missing when the Engine was asked.
            if observed.networks.is_some() {
                errors.push(PlanError::ExternalMissing {
                    stack: stack.name.clone(),
                    kind: "network",
                    name: spec.name.clone(),
                });
            }
        } else {
            actions.push(Action::CreateNetwork {
                stack: stack.name.clone(),
                spec: spec.clone(),
            });
        }
    }
    for spec in stack.volumes.values() {
        let exists = mounted.contains(spec.name.as_str())
            || observed
                .volumes
                .as_ref()
                .is_some_and(|v| v.contains_key(&spec.name));
        if exists {
            continue;
        }
        if spec.external {
            if observed.volumes.is_some() {
                errors.push(PlanError::ExternalMissing {
                    stack: stack.name.clone(),
                    kind: "volume",
                    name: spec.name.clone(),
                });
            }
        } else {
            actions.push(Action::CreateVolume {
                stack: stack.name.clone(),
                spec: spec.clone(),
            });
        }
    }
}

/// Berth-owned networks (and, with `--prune-volumes`, volumes) no declared stack uses any more.
fn plan_object_removals(
    desired: &Desired,
    observed: &Observed,
    opts: &PlanOptions,
    removals: &mut Vec<Action>,
) {
    let declared = |stack: &str, name: &str, volumes: bool| {
        desired.stacks.get(stack).is_some_and(|s| {
            if volumes {
                s.volumes.values().any(|v| v.name == name)
            } else {
                s.networks.values().any(|n| n.name == name)
            }
        })
    };
    if let Some(networks) = &observed.networks {
        for (name, o) in networks {
            if let (true, Some(stack)) = (o.owned_by(&opts.instance), &o.stack) {
                if !declared(stack, name, false) {
                    removals.push(Action::RemoveNetwork {
                        stack: stack.clone(),
                        name: name.clone(),
                    });
                }
            }
        }
    }
    if !opts.prune_volumes {
        return;
    }
    if let Some(volumes) = &observed.volumes {
        for (name, o) in volumes {
            if let (true, Some(stack)) = (o.owned_by(&opts.instance), &o.stack) {
                if !declared(stack, name, true) {
                    removals.push(Action::RemoveVolume {
                        stack: stack.clone(),
                        name: name.clone(),
                    });
                }
            }
        }
    }
}

struct StackPlanner<'a> {
    stack: &'a StackSpec,
    observed: &'a Observed,
    owned: &'a [&'a ObservedContainer],
}

impl StackPlanner<'_> {
    fn plan(
        &self,
        containers: &mut Vec<Action>,
        removals: &mut Vec<Action>,
        pulls: &mut BTreeMap<String, (PullReason, Vec<ServiceRef>)>,
        plan: &mut Plan,
    ) {
        let stack = &self.stack.name;
        // Services being replaced or created, for `restart: true` and `network_mode: service:x`.
        let mut replaced: BTreeSet<&str> = BTreeSet::new();
        for service in dependency_order(self.stack) {
            let spec = &self.stack.services[service];
            let sref = ServiceRef {
                stack: stack.clone(),
                service: service.to_string(),
            };
            if spec.build {
                plan.errors.push(PlanError::BuildNotSupported {
                    stack: stack.clone(),
                    service: service.to_string(),
                });
                continue;
            }
            let image = crate::model::normalize_image_ref(&spec.image);
            let image_id = self.observed.images.get(&image);
            match (spec.pull_policy, image_id) {
                (PullPolicy::Never, None) => {
                    plan.errors.push(PlanError::ImageMissing {
                        stack: stack.clone(),
                        service: service.to_string(),
                        image: spec.image.clone(),
                    });
                    continue;
                }
                (PullPolicy::Always, _) => add_pull(pulls, &spec.image, PullReason::Always, &sref),
                (_, None) => add_pull(pulls, &spec.image, PullReason::Missing, &sref),
                _ => {}
            }

            let mut existing: Vec<&ObservedContainer> = self
                .owned
                .iter()
                .copied()
                .filter(|c| c.stack() == Some(stack) && c.service() == Some(service))
                .collect();
            let dependency_changed = spec
                .depends_on
                .iter()
                .filter(|(_, d)| d.restart)
                .map(|(name, _)| name.as_str())
                .chain(
                    spec.network_mode
                        .as_deref()
                        .and_then(|m| m.strip_prefix("service:")),
                )
                .find(|dep| replaced.contains(dep));

            let replicas = spec.replicas.max(1);
            let mut changed = false;
            for number in 1..=replicas {
                let name = container_name(stack, service, spec, number);
                let pos = existing
                    .iter()
                    .position(|c| c.name == name)
                    .or_else(|| existing.iter().position(|c| c.number() == number));
                let Some(pos) = pos else {
                    if let Some(holder) = self.observed.containers.iter().find(|c| c.name == name) {
                        plan.errors.push(PlanError::NameConflict {
                            stack: stack.clone(),
                            service: service.to_string(),
                            name,
                            container_id: holder.id.clone(),
                        });
                        continue;
                    }
                    let reason = if number > 1 && !existing.is_empty() {
                        Reason::ScaledUp { replicas }
                    } else {
                        Reason::NewService
                    };
                    changed = true;
                    containers.push(Action::CreateContainer {
                        stack: stack.clone(),
                        service: service.to_string(),
                        number,
                        name,
                        reasons: vec![reason],
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
                if !reasons.is_empty() {
                    changed = true;
                    containers.push(Action::ReplaceContainer {
                        stack: stack.clone(),
                        service: service.to_string(),
                        number,
                        name,
                        old_id: current.id.clone(),
                        reasons,
                    });
                } else if !matches!(
                    current.state,
                    ContainerState::Running | ContainerState::Restarting
                ) {
                    containers.push(Action::StartContainer {
                        stack: stack.clone(),
                        service: service.to_string(),
                        name: current.name.clone(),
                        id: current.id.clone(),
                        reason: Reason::State {
                            state: current.state.to_string(),
                        },
                    });
                }
            }
            if changed {
                replaced.insert(service);
            } else if !containers.iter().any(|a| action_is_for(a, stack, service)) {
                plan.unchanged.push(sref);
            }
            // Whatever is left is surplus: scaled down, or a leftover of an interrupted apply.
            for c in existing {
                let reason = if c.number() > replicas {
                    Reason::ScaledDown { replicas }
                } else {
                    Reason::Duplicate
                };
                removals.push(Action::RemoveContainer {
                    stack: stack.clone(),
                    service: service.to_string(),
                    name: c.name.clone(),
                    id: c.id.clone(),
                    reason,
                });
            }
        }
        // Services that left this stack's config.
        for c in self.owned {
            if c.stack() != Some(stack) {
                continue;
            }
            let service = c.service().unwrap_or_default();
            if !self.stack.services.contains_key(service) {
                removals.push(Action::RemoveContainer {
                    stack: stack.clone(),
                    service: service.to_string(),
                    name: c.name.clone(),
                    id: c.id.clone(),
                    reason: Reason::ServiceRemoved,
                });
            }
        }
    }
}

fn action_is_for(a: &Action, stack: &str, service: &str) -> bool {
    match a {
        Action::CreateContainer {
            stack: s,
            service: v,
            ..
        }
        | Action::ReplaceContainer {
            stack: s,
            service: v,
            ..
        }
        | Action::StartContainer {
            stack: s,
            service: v,
            ..
        } => s == stack && v == service,
        _ => false,
    }
}

fn add_pull(
    pulls: &mut BTreeMap<String, (PullReason, Vec<ServiceRef>)>,
    image: &str,
    reason: PullReason,
    sref: &ServiceRef,
) {
    let entry = pulls
        .entry(image.to_string())
        .or_insert_with(|| (reason, Vec::new()));
    if reason == PullReason::Missing {
        entry.0 = PullReason::Missing;
    }
    entry.1.push(sref.clone());
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

/// Why a running container's spec differs from the desired one, field by field.
fn spec_reasons(spec: &ServiceSpec, current: &ObservedContainer) -> Vec<Reason> {
    let desired_hash = spec.spec_hash();
    if current.spec_hash() == Some(desired_hash.as_str()) {
        return Vec::new();
    }
    let Some(old) = current
        .spec_json()
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
    else {
        return vec![Reason::UnknownSpec];
    };
    let new = serde_json::to_value(spec).unwrap_or_default();
    let reasons = diff_specs(&old, &new);
    if reasons.is_empty() {
        // The hash label disagrees with a spec label that matches: the labels were edited.
        return vec![Reason::UnknownSpec];
    }
    reasons
}

/// Fields whose values are secret: only key names are ever shown.
const HIDDEN_FIELDS: &[&str] = &["environment"];
/// Map fields shown key by key.
const KEYED_FIELDS: &[&str] = &[
    "environment",
    "labels",
    "sysctls",
    "ulimits",
    "networks",
    "depends_on",
];

fn diff_specs(old: &serde_json::Value, new: &serde_json::Value) -> Vec<Reason> {
    use serde_json::Value;
    let empty = serde_json::Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut reasons = Vec::new();
    for key in keys {
        let (o, n) = (old.get(key), new.get(key));
        if o == n {
            continue;
        }
        let field = key.clone();
        if KEYED_FIELDS.contains(&key.as_str()) {
            let hidden = HIDDEN_FIELDS.contains(&key.as_str());
            let (om, nm) = (
                o.and_then(Value::as_object).unwrap_or(&empty),
                n.and_then(Value::as_object).unwrap_or(&empty),
            );
            let inner: BTreeSet<&String> = om.keys().chain(nm.keys()).collect();
            for k in inner {
                let detail = match (om.get(k), nm.get(k)) {
                    (a, b) if a == b => continue,
                    (None, Some(v)) if !hidden => format!("{k} added ({})", compact(v)),
                    (None, Some(_)) => format!("{k} added (value hidden)"),
                    (Some(_), None) => format!("{k} removed"),
                    (Some(a), Some(b)) if !hidden => {
                        format!("{k} changed: {} → {}", compact(a), compact(b))
                    }
                    _ => format!("{k} changed (value hidden)"),
                };
                reasons.push(Reason::Field {
                    field: field.clone(),
                    detail,
                });
            }
        } else if key == "mounts" {
            reasons.extend(diff_mounts(o, n));
        } else if key == "ports" {
            let show = |v: Option<&Value>| {
                let ports: Vec<crate::model::PortSpec> = v
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                if ports.is_empty() {
                    return "(none)".to_string();
                }
                ports
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            reasons.push(Reason::Field {
                field,
                detail: format!("{} → {}", show(o), show(n)),
            });
        } else {
            let show = |v: Option<&Value>| v.map(compact).unwrap_or_else(|| "(unset)".into());
            reasons.push(Reason::Field {
                field,
                detail: format!("{} → {}", show(o), show(n)),
            });
        }
    }
    reasons
}

/// Mounts compared by target, so a changed secret file says which mount, never its content.
fn diff_mounts(old: Option<&serde_json::Value>, new: Option<&serde_json::Value>) -> Vec<Reason> {
    let by_target = |v: Option<&serde_json::Value>| -> BTreeMap<String, serde_json::Value> {
        v.and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .map(|m| {
                let target = m.get("target").and_then(|t| t.as_str()).unwrap_or("?");
                (target.to_string(), m.clone())
            })
            .collect()
    };
    let (o, n) = (by_target(old), by_target(new));
    let targets: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    let mut reasons = Vec::new();
    for t in targets {
        let detail = match (o.get(t), n.get(t)) {
            (a, b) if a == b => continue,
            (None, Some(m)) => format!("{t} added ({})", describe_mount(m)),
            (Some(_), None) => format!("{t} removed"),
            (Some(a), Some(b)) => {
                let file = |m: &serde_json::Value| m["source"]["type"] == "file";
                if file(a) && file(b) && a["source"]["file"] == b["source"]["file"] {
                    format!("{t} content changed (content hidden)")
                } else {
                    format!("{t}: {} → {}", describe_mount(a), describe_mount(b))
                }
            }
            _ => continue,
        };
        reasons.push(Reason::Field {
            field: "mounts".into(),
            detail,
        });
    }
    reasons
}

fn describe_mount(m: &serde_json::Value) -> String {
    let src = &m["source"];
    let ro = if m["read_only"] == true {
        ", read-only"
    } else {
        ""
    };
    let what = match src["type"].as_str().unwrap_or("?") {
        "volume" => format!("volume {}", src["name"].as_str().unwrap_or("?")),
        "bind" => format!("bind {}", src["path"].as_str().unwrap_or("?")),
        "file" => format!("file {}", src["file"].as_str().unwrap_or("?")),
        other => other.to_string(),
    };
    format!("{what}{ro}")
}

/// One-line JSON for a value, strings unquoted, cut at 80 characters.
fn compact(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

#[cfg(test)]
mod tests;
