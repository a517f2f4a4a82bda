//! Why a change is needed. Rendered for people by `Display`; never holds a secret value.

use std::fmt;

use serde::Serialize;

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
