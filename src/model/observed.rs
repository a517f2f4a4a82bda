//! What the Engine runs, as berth sees it: [`Observed`] and its containers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::*;

/// What berth sees on the Engine: one list of containers, one list of images, and, only when
/// the container list cannot prove them, networks and volumes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Every container on the Engine, owned or not (unowned ones matter for name conflicts).
    pub containers: Vec<ObservedContainer>,
    /// Image reference (as in `RepoTags`, e.g. `test/app:1`) → image ID (`sha256:...`).
    pub images: BTreeMap<String, String>,
    /// Image ID → the TCP ports its config exposes (`EXPOSE 3000`). Inspected only for the
    /// images of routed services whose Compose file does not expose the route's port.
    pub image_ports: BTreeMap<String, BTreeSet<u16>>,
    /// Network name → whether berth owns it. `None` when not listed (not needed for this plan).
    pub networks: Option<BTreeMap<String, ObservedObject>>,
    /// Volume name → whether berth owns it. `None` when not listed.
    pub volumes: Option<BTreeMap<String, ObservedObject>>,
    /// Container ID → the [`ServiceSpec::config_digest`] it was last reloaded with
    /// (`on_config_change`): its labels still name the config it was created with. Kept in the
    /// state dir (`reloads.json`), not on the Engine.
    pub reloaded: BTreeMap<String, String>,
    /// The host's files, sysctls and units berth declares or owns, and the inventory.
    pub host: host::ObservedHost,
    /// Caddy's config as its admin API returns it (`GET /config/`), when the config declares a
    /// `kind: Proxy`; `None` otherwise.
    pub proxy: Option<edge::ObservedProxy>,
    /// The routes berth last loaded into Caddy successfully (`@id` → the address dialled), from
    /// the state dir (`proxy-<instance>.json`): a route berth loaded that Caddy no longer
    /// serves, or sends elsewhere, is drift.
    pub proxy_loaded: BTreeMap<String, String>,
    /// The job table recorded by the last apply (the state dir), when the config declares
    /// jobs or the state dir holds some.
    pub jobs: jobs::ObservedJobs,
}

/// A network or volume on the Engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedObject {
    pub name: String,
    /// Carries `io.berth.managed=true`.
    pub managed: bool,
    /// The `io.berth.stack` label, if any.
    pub stack: Option<String>,
    /// The `io.berth.instance` label, if any (absent means [`DEFAULT_INSTANCE`]).
    pub instance: Option<String>,
}

impl ObservedObject {
    /// Created by this berth instance: the only networks/volumes it may remove.
    pub fn owned_by(&self, instance: &str) -> bool {
        self.managed && self.instance.as_deref().unwrap_or(DEFAULT_INSTANCE) == instance
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    /// Exited with this code.
    Exited(i64),
    Dead,
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContainerState::Created => f.write_str("created (never started)"),
            ContainerState::Running => f.write_str("running"),
            ContainerState::Paused => f.write_str("paused"),
            ContainerState::Restarting => f.write_str("restarting"),
            ContainerState::Removing => f.write_str("being removed"),
            ContainerState::Exited(code) => write!(f, "exited (code {code})"),
            ContainerState::Dead => f.write_str("dead"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// One container as listed by the Engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedContainer {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
    pub health: Option<Health>,
    /// The image ID the container was created from (`sha256:...`).
    pub image_id: String,
    /// Engine-side names of the networks it is attached to.
    pub networks: Vec<String>,
    /// The volumes it mounts (named and anonymous), with where.
    pub volumes: Vec<ObservedMount>,
    /// Engine-side network name → its IPv4 address there (what a proxy dials).
    pub addresses: BTreeMap<String, String>,
}

/// A volume mounted into an observed container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedMount {
    /// The Engine-side volume name (a hash for anonymous volumes).
    pub name: String,
    /// The path inside the container.
    pub destination: String,
}

impl ObservedContainer {
    /// Created by some berth instance.
    pub fn managed(&self) -> bool {
        self.labels.get(labels::MANAGED).map(String::as_str) == Some("true")
    }
    /// Created by this berth instance: the only containers it may stop, replace or remove.
    pub fn owned_by(&self, instance: &str) -> bool {
        self.managed()
            && self
                .labels
                .get(labels::INSTANCE)
                .map_or(DEFAULT_INSTANCE, String::as_str)
                == instance
    }
    pub fn stack(&self) -> Option<&str> {
        self.labels.get(labels::STACK).map(String::as_str)
    }
    pub fn service(&self) -> Option<&str> {
        self.labels.get(labels::SERVICE).map(String::as_str)
    }
    /// The replica number from the Compose container-number label (1 when absent).
    pub fn number(&self) -> u32 {
        self.labels
            .get(labels::COMPOSE_NUMBER)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1)
    }
    pub fn spec_hash(&self) -> Option<&str> {
        self.labels.get(labels::SPEC_HASH).map(String::as_str)
    }
    pub fn spec_json(&self) -> Option<&str> {
        self.labels.get(labels::SPEC).map(String::as_str)
    }
}
