//! The unit of a plan: a [`Change`] to one addressed object, with the verb, the reasons, the
//! edges to what it needs first, and a self-contained payload for the executor.
//!
//! The executor's only ordering input is [`Change::needs`]: a change starts when every change it
//! needs has reached the [`Wait`] named on the edge. The planner orders [`Plan::changes`]
//! topologically along the same edges, so the order a plan is printed in is an order it can run in.
//!
//! [`Plan::changes`]: super::Plan::changes

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

pub use super::firewall_change::{Allowed, FirewallApplied, FirewallPayload};
pub use super::host_change::{
    AfterChange, Bytes, DirPayload, FilePayload, FileState, Record, SysctlPayload, UnitPayload,
    UnitVerb,
};
pub use super::proxy_change::{AdminTarget, Dial, PlannedSite, ProxyPayload};
use super::reason::{PullReason, Reason};
use crate::model::{NetworkSpec, ServiceSpec, StackSpec, VolumeSpec};

/// The kinds of object berth manages: one closed list. A new kind is a new variant here, a
/// planner in `kinds/`, a [`Payload`] variant and an arm in the executor's one dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Image,
    Network,
    Volume,
    Container,
    File,
    Directory,
    Sysctl,
    Unit,
    /// The host's inbound firewall (`firewall:inbound`).
    Firewall,
    /// The Caddy config: every route at once (`proxy:caddy`).
    Proxy,
    /// The job table berth's scheduler runs (`jobs:schedule`): every job at once.
    Jobs,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Network => "network",
            Kind::Volume => "volume",
            Kind::Container => "container",
            Kind::File => "file",
            Kind::Directory => "directory",
            Kind::Sysctl => "sysctl",
            Kind::Unit => "unit",
            Kind::Firewall => "firewall",
            Kind::Proxy => "proxy",
            Kind::Jobs => "jobs",
        }
    }
}

/// Where an object belongs: a stack (its status context, its ownership label), or the host as a
/// whole (images are shared by every stack that uses them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Host,
    Stack(String),
}

impl Scope {
    pub fn stack(&self) -> Option<&str> {
        match self {
            Scope::Stack(s) => Some(s),
            Scope::Host => None,
        }
    }
}

/// The address of one object: `container:app/app-web-1`, `network:app/app_default`,
/// `image:nginx:1.27`. Unique within a plan; the name is the object's name on its system
/// (the Docker name for Engine objects).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Addr {
    pub kind: Kind,
    pub scope: Scope,
    pub name: String,
}

impl Addr {
    pub fn new(kind: Kind, scope: Scope, name: impl Into<String>) -> Addr {
        Addr {
            kind,
            scope,
            name: name.into(),
        }
    }

    pub fn in_stack(kind: Kind, stack: &str, name: impl Into<String>) -> Addr {
        Addr::new(kind, Scope::Stack(stack.to_string()), name)
    }

    pub fn image(image: &str) -> Addr {
        Addr::new(Kind::Image, Scope::Host, image)
    }

    pub fn stack(&self) -> Option<&str> {
        self.scope.stack()
    }

    /// A host setting's address (`file:/etc/x`, `unit:hello.service`).
    pub fn host(kind: Kind, name: impl Into<String>) -> Addr {
        Addr::new(kind, Scope::Host, name)
    }

    /// The group it reports under and is withheld with: its stack, or one of berth's own
    /// groups (host settings, the proxy, the job table). Images belong to the stacks that use
    /// them: `None`.
    pub fn group(&self) -> Option<Group> {
        match (&self.scope, self.kind) {
            (Scope::Stack(s), _) => Some(Group::Stack(s.clone())),
            (Scope::Host, Kind::Image) => None,
            (Scope::Host, Kind::Proxy) => Some(Group::Proxy),
            (Scope::Host, Kind::Jobs) => Some(Group::Jobs),
            (Scope::Host, _) => Some(Group::Host),
        }
    }
}

/// What a change or a plan error belongs to: the commit status it is reported under, and what
/// an error holds back in serve (a stack with an error is left as it runs, the others go on).
/// berth's own groups are variants, never strings, so no stack name can stand for one of them
/// (a stack may be called `edge` or `proxy`); the one name they share with stacks on GitHub,
/// `host`, is refused as a stack name by the loader.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// A stack: its containers, networks and volumes (`berth/<instance>/<stack>`).
    Stack(String),
    /// Host settings: files, directories, sysctls, units, the firewall
    /// (`berth/<instance>/host`).
    Host,
    /// Caddy's config: every route, `kind: Proxy`, routes to fixed addresses
    /// (`berth/<instance>/host/proxy`).
    Proxy,
    /// The job table berth's scheduler runs (`berth/<instance>/host/jobs`).
    Jobs,
}

impl Group {
    pub fn stack(name: impl Into<String>) -> Group {
        Group::Stack(name.into())
    }

    /// The stack's name, for a stack.
    pub fn as_stack(&self) -> Option<&str> {
        match self {
            Group::Stack(s) => Some(s),
            _ => None,
        }
    }

    /// What follows `berth/<instance>/` in the group's commit status context. Stack names are
    /// one path segment and never `host`: the others cannot collide with them.
    pub fn context_suffix(&self) -> String {
        match self {
            Group::Stack(s) => s.clone(),
            Group::Host => HOST_GROUP.to_string(),
            Group::Proxy => format!("{HOST_GROUP}/proxy"),
            Group::Jobs => format!("{HOST_GROUP}/jobs"),
        }
    }
}

/// In `plan --json`: its status context's suffix (`web`, `host`, `host/proxy`, `host/jobs`).
impl Serialize for Group {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.context_suffix())
    }
}

/// For people: `stack web`, `host settings`, `the proxy config`, `the job table`.
impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::Stack(s) => write!(f, "stack {s}"),
            Group::Host => f.write_str("host settings"),
            Group::Proxy => f.write_str("the proxy config"),
            Group::Jobs => f.write_str("the job table"),
        }
    }
}

pub use crate::model::HOST_GROUP;

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Scope::Host => write!(f, "{}:{}", self.kind.as_str(), self.name),
            Scope::Stack(s) => write!(f, "{}:{s}/{}", self.kind.as_str(), self.name),
        }
    }
}

/// The verb. The core owns the verbs; a kind's planner picks one per change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Fetch from outside (an image pull).
    Pull,
    Create,
    /// Put a new object in place of the old one, the old one kept until the new one is up.
    Replace,
    /// Start what exists but is not running (self-heal).
    Start,
    /// Change an existing object in place (a file's content or mode, a sysctl's value, a
    /// unit's file, enablement or state).
    Update,
    /// Stop what runs (a unit declared `state: stopped`).
    Stop,
    /// Tell a running object its configuration changed (a signal or an exec), no recreate.
    Reload,
    Delete,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Pull => "pull",
            Op::Create => "create",
            Op::Replace => "replace",
            Op::Start => "start",
            Op::Update => "update",
            Op::Stop => "stop",
            Op::Reload => "reload",
            Op::Delete => "delete",
        }
    }
}

/// How far a needed object must have got before a dependent change starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// The change on it has been carried out (created, pulled, deleted …).
    Applied,
    /// The container runs (`service_started`).
    Running,
    /// The container's health check passes (`service_healthy`).
    Healthy,
    /// The container is up: healthy when it has a health check — its Compose file's or its
    /// image's `HEALTHCHECK`, whichever declared it — else running (what a route waits for).
    Ready,
    /// The container exited 0 (`service_completed_successfully`).
    Completed,
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Wait::Applied => "be applied",
            Wait::Running => "be running",
            Wait::Healthy => "be healthy",
            Wait::Ready => "be up (healthy, if it has a health check)",
            Wait::Completed => "complete successfully",
        })
    }
}

/// An edge: this change needs `addr` to reach `wait` first. When no change in the plan has that
/// address, the object is expected to exist already (e.g. an unchanged dependency), and only
/// container conditions beyond [`Wait::Applied`] are checked, on the running object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Need {
    pub addr: Addr,
    pub wait: Wait,
    /// `depends_on: {required: false}`: a missing or failed dependency does not stop this change.
    #[serde(skip_serializing_if = "is_true")]
    pub required: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Need {
    pub fn on(addr: Addr, wait: Wait) -> Need {
        Need {
            addr,
            wait,
            required: true,
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub addr: Addr,
    pub op: Op,
    /// Why; never carries a secret value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    /// The executor's only ordering input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<Need>,
    /// Everything the executor needs to carry the change out.
    pub payload: Payload,
}

/// What a change carries, one variant per [`Kind`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    Image(ImagePayload),
    Network(NetworkPayload),
    Volume(VolumePayload),
    Container(ContainerPayload),
    File(FilePayload),
    Directory(DirPayload),
    Sysctl(SysctlPayload),
    Unit(UnitPayload),
    Firewall(FirewallPayload),
    Proxy(Box<ProxyPayload>),
    Jobs(JobsPayload),
}

/// The whole job table of the config, recorded in the state dir for the scheduler
/// (`berth serve`) and `berth jobs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobsPayload {
    pub table: crate::model::jobs::JobsSpec,
}

impl Payload {
    pub fn kind(&self) -> Kind {
        match self {
            Payload::File(_) => Kind::File,
            Payload::Directory(_) => Kind::Directory,
            Payload::Sysctl(_) => Kind::Sysctl,
            Payload::Unit(_) => Kind::Unit,
            Payload::Firewall(_) => Kind::Firewall,
            Payload::Image(_) => Kind::Image,
            Payload::Network(_) => Kind::Network,
            Payload::Volume(_) => Kind::Volume,
            Payload::Container(_) => Kind::Container,
            Payload::Proxy(_) => Kind::Proxy,
            Payload::Jobs(_) => Kind::Jobs,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImagePayload {
    pub image: String,
    pub reason: PullReason,
    /// The services that need it (`stack/service`).
    pub services: Vec<super::ServiceRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkPayload {
    pub stack: String,
    pub name: String,
    /// For a create: the network to make.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<NetworkSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumePayload {
    pub stack: String,
    pub name: String,
    /// For a create: the volume to make.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<VolumeSpec>,
}

/// A container change. For create, replace, start and reload the stack it belongs to rides
/// along (shared, not copied): creating a container needs its siblings' names and the stack's
/// networks and volumes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerPayload {
    pub stack: String,
    pub service: String,
    /// Replica number (1-based), the `<n>` in `<stack>-<service>-<n>`.
    pub number: u32,
    /// The container's name after the change (for a delete: its current name).
    pub name: String,
    /// The container there now (replace, start, reload, delete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<Current>,
    /// The desired stack (create, replace, start, reload); not part of the JSON plan.
    #[serde(skip)]
    pub spec: Option<Arc<StackSpec>>,
    /// The host ports the current container publishes (from its spec label): a create that
    /// takes one of them waits for this container to go.
    #[serde(skip)]
    pub current_ports: Vec<crate::model::PortSpec>,
    /// How to reload (op `reload`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload: Option<Reload>,
    /// Seconds to wait after the stop signal before killing (delete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<i64>,
    /// A replace of a service reached only through routes: the new container starts beside
    /// the old one, the proxy is switched to it, then the old one goes (zero downtime).
    #[serde(skip)]
    pub handover: Option<Box<ProxyPayload>>,
}

/// A reload: the signal or command that makes the container read its (bind-mounted) config
/// folder again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reload {
    pub action: crate::model::ConfigChangeAction,
    /// [`crate::model::ServiceSpec::config_digest`] after the reload.
    pub digest: String,
}

/// The container a change starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Current {
    pub id: String,
    pub name: String,
}

impl ContainerPayload {
    /// The desired service spec, for changes that have one.
    pub fn service_spec(&self) -> Option<(&StackSpec, &ServiceSpec)> {
        let stack = self.spec.as_deref()?;
        Some((stack, stack.services.get(&self.service)?))
    }
}
