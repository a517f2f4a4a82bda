//! What a plan is made of, shared by the core and every kind's planner: `Plan`, `PlanOptions`,
//! `PlanError` (with its group and what it withholds), `PlanWarning`, `Summary`, `ServiceRef`,
//! `Skipped`.

use std::fmt;

use serde::Serialize;

use super::*;

/// Switches that widen what a plan may do. Defaults are the safe ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// This berth instance's name: only objects labelled with it are berth's to change.
    pub instance: String,
    /// Allow removing every berth-owned object when the config declares no stack at all.
    pub allow_empty: bool,
    /// Remove berth-owned named volumes that left the config (data loss: off by default).
    pub prune_volumes: bool,
    /// The time and the host's zone, for the jobs' next runs in the plan (`None`: not shown).
    /// Given by the caller, so planning stays a pure function.
    pub clock: Option<PlanClock>,
}

/// When a plan is made, and the host's time zone (for jobs without `timezone:`): inputs, read
/// by the caller ([`crate::pipeline::plan_options`]), so that planning stays pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanClock {
    pub now: chrono::DateTime<chrono::Utc>,
    pub host_zone: chrono_tz::Tz,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            instance: crate::model::DEFAULT_INSTANCE.to_string(),
            allow_empty: false,
            prune_volumes: false,
            clock: None,
        }
    }
}

/// What berth will do, in execution order, and what it will not do and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Every change, in an order that respects their edges (the one they are printed in): pulls,
    /// container deletes, networks and volumes, containers in dependency order, network and
    /// volume deletes. The executor runs them by their edges, independent ones side by side.
    pub changes: Vec<Change>,
    /// Services that need nothing.
    pub unchanged: Vec<ServiceRef>,
    /// Host settings already as declared.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unchanged_host: Vec<Addr>,
    /// Declared services that are not deployed, and why (e.g. inactive profile).
    pub skipped: Vec<Skipped>,
    /// Problems that stop `apply` before it changes anything.
    pub errors: Vec<PlanError>,
    /// Changes left out of this apply (a group with a plan error, in serve): a change that
    /// needs one of them is not attempted either.
    #[serde(skip)]
    pub withheld: Vec<Addr>,
    /// What is allowed but probably not meant (a port published on all addresses with no
    /// Firewall declared): shown, never an error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<PlanWarning>,
}

/// Something a plan shows as a warning: it does not stop the apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "warning", rename_all = "snake_case")]
pub enum PlanWarning {
    /// A port published on all addresses while no Firewall is declared: reachable from
    /// everywhere the host is.
    Exposed {
        stack: String,
        service: String,
        port: String,
        origin: String,
    },
    /// A route whose container neither runs nor is started by this plan: it is left out of
    /// Caddy's config (the executor could not dial it), not loaded again on every plan.
    RouteDown { route: String, upstream: String },
}

impl fmt::Display for PlanWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanWarning::Exposed {
                stack,
                service,
                port,
                origin,
            } => write!(
                f,
                "{origin}: {stack}/{service} publishes {port} on all addresses and no Firewall is declared: it is reachable from everywhere; bind it to 127.0.0.1, or declare a Firewall"
            ),
            PlanWarning::RouteDown { route, upstream } => write!(
                f,
                "route {route} → {upstream} is left out of Caddy's config: its container is not running and this plan does not start it"
            ),
        }
    }
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
        /// The berth instance that owns it, when another berth instance made it.
        #[serde(skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
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
    /// `on_config_change` on a service that bind-mounts a single config file: git replaces the
    /// file (a new inode), the container keeps the old one, so a reload cannot reach it.
    ReloadNeedsFolder {
        stack: String,
        service: String,
        path: String,
    },
    /// Changes that need each other (a `depends_on` cycle the loader did not catch).
    Cycle { addrs: Vec<String> },
    /// A host path or unit exists and berth did not create it: never touched without
    /// `adopt: true`.
    HostNotOwned { addr: String, origin: String },
    /// A host setting berth cannot apply as declared (a path through a symlink, a directory
    /// where a file is declared, an unknown sysctl or user, a unit that does not exist).
    HostRefused {
        addr: String,
        origin: String,
        reason: String,
    },
    /// The config declares no host setting and the inventory holds some: refusing to remove
    /// them all.
    EmptyHost { owned: usize },
    /// A container port published on all addresses whose host port the Firewall does not
    /// allow from everywhere (the exposure guard); `x-berth: {expose_publicly: true}` on the
    /// service is the override.
    Exposed {
        stack: String,
        service: String,
        /// `5432/tcp`.
        host_port: String,
        origin: String,
    },
    /// The Firewall lets no one reach SSH and `allow_no_ssh: true` is not set.
    Lockout { origin: String, ssh_port: u16 },
    /// The Firewall cannot be applied as declared (the backend is not there, the table cannot
    /// be read).
    FirewallRefused { origin: String, reason: String },
    /// A route that cannot be served. It is left out of Caddy's config (the other routes are
    /// loaded) and reported on `group`: the stack of its service, or [`Group::Proxy`] for a
    /// route to a fixed address.
    Route {
        group: Group,
        origin: String,
        route: String,
        reason: String,
    },
    /// `kind: Proxy` cannot be used as declared (its `service:` does not exist).
    Proxy { origin: String, reason: String },
}

impl PlanError {
    /// A problem confined to what it names (a bad route): the rest of the plan can be applied.
    pub fn is_contained(&self) -> bool {
        matches!(self, PlanError::Route { .. })
    }

    /// Whether the config files alone decide it (not what the Engine or the host holds).
    pub fn is_from_config(&self) -> bool {
        use PlanError::*;
        match self {
            BuildNotSupported { .. }
            | ReloadNeedsFolder { .. }
            | Cycle { .. }
            | Exposed { .. }
            | Lockout { .. }
            | Route { .. }
            | Proxy { .. } => true,
            NameConflict { .. }
            | ImageMissing { .. }
            | ExternalMissing { .. }
            | EmptyDesired { .. }
            | HostNotOwned { .. }
            | HostRefused { .. }
            | EmptyHost { .. }
            | FirewallRefused { .. } => false,
        }
    }

    /// The group the error is reported under (`None`: the whole config, e.g. the empty-config
    /// guard or a cycle).
    pub fn group(&self) -> Option<Group> {
        use PlanError::*;
        match self {
            NameConflict { stack, .. }
            | BuildNotSupported { stack, .. }
            | ImageMissing { stack, .. }
            | ExternalMissing { stack, .. }
            | ReloadNeedsFolder { stack, .. }
            | Exposed { stack, .. } => Some(Group::stack(stack)),
            HostNotOwned { .. }
            | HostRefused { .. }
            | EmptyHost { .. }
            | Lockout { .. }
            | FirewallRefused { .. } => Some(Group::Host),
            Route { group, .. } => Some(group.clone()),
            Proxy { .. } => Some(Group::Proxy),
            EmptyDesired { .. } | Cycle { .. } => None,
        }
    }

    /// What the error holds back when the plan is applied group by group (serve, and the CLI
    /// when every error is contained): its group — a bad route its stack, whose containers
    /// would lose their route — except that a bad route to a fixed address holds back nothing
    /// (it is only left out of Caddy's config).
    pub fn withholds(&self) -> Withholds {
        match (self, self.group()) {
            (_, None) => Withholds::Everything,
            (PlanError::Route { .. }, Some(Group::Proxy)) => Withholds::Nothing,
            (_, Some(g)) => Withholds::Group(g),
        }
    }
}

/// What a plan error holds back of a group-by-group apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withholds {
    /// The whole config: nothing is applied.
    Everything,
    /// Every change of the group.
    Group(Group),
    /// Nothing beyond what the error itself leaves out.
    Nothing,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::NameConflict {
                stack,
                service,
                name,
                container_id,
                owner: None,
            } => write!(
                f,
                "{stack}/{service}: container name {name} is taken by container {} that berth does not own; remove or rename it (berth never touches it)",
                short_id(container_id)
            ),
            PlanError::NameConflict {
                stack,
                service,
                name,
                container_id,
                owner: Some(owner),
            } => write!(
                f,
                "{stack}/{service}: container name {name} is taken by container {} of berth instance \"{owner}\" (not this one); remove it from that instance's config or give one of them another name",
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
            PlanError::ReloadNeedsFolder {
                stack,
                service,
                path,
            } => write!(
                f,
                "{stack}/{service}: x-berth.on_config_change cannot reach the single bind-mounted file {path}: git replaces the file on every change and the container keeps the old one; mount its folder instead (e.g. ./caddy:/etc/caddy), or drop on_config_change to recreate the container"
            ),
            PlanError::Cycle { addrs } => {
                write!(f, "these changes need each other: {}", addrs.join(", "))
            }
            PlanError::HostNotOwned { addr, origin } => write!(
                f,
                "{origin}: {addr} exists and berth did not create it; berth never touches it unless the document says `adopt: true` (its content is then kept, and restored when it leaves the config)"
            ),
            PlanError::HostRefused {
                addr,
                origin,
                reason,
            } => write!(f, "{origin}: {addr}: {reason}"),
            PlanError::Route {
                origin,
                route,
                reason,
                ..
            } => write!(
                f,
                "{origin}: route {route}: {reason} (left out of Caddy's config; the other routes are served)"
            ),
            PlanError::Proxy { origin, reason } => write!(f, "{origin}: kind: Proxy: {reason}"),
            PlanError::EmptyHost { owned } => write!(
                f,
                "the config declares no host setting, which would remove or restore all {owned} host objects berth owns; pass --allow-empty if that is what you want"
            ),
            PlanError::Exposed {
                stack,
                service,
                host_port,
                origin,
            } => {
                let n = host_port.split('/').next().unwrap_or(host_port);
                write!(
                    f,
                    "{origin}: {stack}/{service} publishes {host_port} on all addresses, but the Firewall does not allow {host_port} from everywhere: bind it to 127.0.0.1 (`127.0.0.1:{n}:…`), or allow {host_port} in the Firewall (or set `x-berth: {{expose_publicly: true}}` on the service to publish it as the Firewall allows)"
                )
            }
            PlanError::Lockout { origin, ssh_port } => write!(
                f,
                "{origin}: this Firewall lets no one reach SSH ({ssh_port}/tcp), which would lock everyone out; allow {ssh_port}/tcp from a set (e.g. `from: tailnet`), set `ssh_port:` to the port sshd listens on, or say `allow_no_ssh: true`"
            ),
            PlanError::FirewallRefused { origin, reason } => {
                write!(f, "{origin}: firewall:inbound: {reason}")
            }
        }
    }
}

/// Counts of a plan's actions, for one-line summaries (CLI, commit statuses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub created: usize,
    pub replaced: usize,
    pub started: usize,
    pub removed: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub reloaded: usize,
    pub unchanged: usize,
    pub pulled: usize,
    pub objects_created: usize,
    pub objects_removed: usize,
    /// Host changes (files, directories, sysctls, units).
    #[serde(skip_serializing_if = "is_zero")]
    pub host: usize,
    /// Host settings already as declared.
    #[serde(skip_serializing_if = "is_zero")]
    pub host_unchanged: usize,
    /// Caddy config loads.
    #[serde(skip_serializing_if = "is_zero")]
    pub proxy: usize,
    /// Job table records.
    #[serde(skip_serializing_if = "is_zero")]
    pub jobs: usize,
}

impl Summary {
    fn count(&mut self, c: &Change) {
        match (c.payload.kind(), c.op) {
            (Kind::Image, _) => self.pulled += 1,
            (Kind::Container, Op::Create) => self.created += 1,
            (Kind::Container, Op::Replace) => self.replaced += 1,
            (Kind::Container, Op::Start) => self.started += 1,
            (Kind::Container, Op::Reload) => self.reloaded += 1,
            (Kind::Container, Op::Delete) => self.removed += 1,
            (Kind::Container, Op::Pull | Op::Update | Op::Stop) => {}
            (Kind::Network | Kind::Volume, Op::Delete) => self.objects_removed += 1,
            (Kind::Network | Kind::Volume, _) => self.objects_created += 1,
            (Kind::File | Kind::Directory | Kind::Sysctl | Kind::Unit | Kind::Firewall, _) => {
                self.host += 1
            }
            (Kind::Proxy, _) => self.proxy += 1,
            (Kind::Jobs, _) => self.jobs += 1,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let containers =
            self.created + self.replaced + self.started + self.removed + self.unchanged;
        if containers > 0 || (self.host == 0 && self.proxy == 0 && self.jobs == 0) {
            write!(
                f,
                "{} created, {} replaced, {} started, {} removed, {} unchanged",
                self.created, self.replaced, self.started, self.removed, self.unchanged
            )?;
            if self.reloaded > 0 {
                write!(f, ", {} reloaded", self.reloaded)?;
            }
        }
        if self.host > 0 {
            let sep = if containers > 0 { "; " } else { "" };
            write!(f, "{sep}{} host changes", self.host)?;
            if self.host_unchanged > 0 {
                write!(f, ", {} host settings unchanged", self.host_unchanged)?;
            }
        }
        if self.proxy > 0 {
            let sep = if containers > 0 || self.host > 0 {
                "; "
            } else {
                ""
            };
            write!(f, "{sep}Caddy config to load")?;
        }
        if self.jobs > 0 {
            let sep = if containers > 0 || self.host > 0 || self.proxy > 0 {
                "; "
            } else {
                ""
            };
            write!(f, "{sep}job table to record")?;
        }
        Ok(())
    }
}

impl Plan {
    /// Whether applying would change anything (the `plan` exit code 2).
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            s.count(c);
        }
        s.unchanged = self.unchanged.len();
        s.host_unchanged = self.unchanged_host.len();
        s
    }

    /// The change at `addr`, if the plan has one.
    pub fn change(&self, addr: &Addr) -> Option<&Change> {
        self.changes.iter().find(|c| &c.addr == addr)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
