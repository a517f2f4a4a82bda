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
    ScaledUp {
        replicas: u32,
    },
    /// The replica count went down.
    ScaledDown {
        replicas: u32,
    },
    /// A field of the normalised spec changed. `detail` is already rendered safely, e.g.
    /// `test/app:1 → test/app:2` or `DB_PASSWORD changed (value hidden)`.
    Field {
        field: String,
        detail: String,
    },
    /// The image tag now resolves to another image ID than the container runs.
    ImageUpdated {
        image: String,
        running: String,
        current: String,
    },
    /// The image is not on the Engine: it will be pulled and the container recreated from it.
    ImageNotPresent {
        image: String,
    },
    /// The container carries no spec label (created by an older berth or by hand with our labels).
    UnknownSpec,
    /// The container is not running.
    State {
        state: String,
    },
    /// A `depends_on` with `restart: true` points at a service that is being replaced.
    DependencyReplaced {
        dependency: String,
    },
    /// The service left the config.
    ServiceRemoved,
    /// The whole stack left the config.
    StackRemoved,
    /// A second container for the same replica slot (e.g. left behind by an interrupted apply).
    Duplicate,
    /// A host object that does not exist yet.
    HostNew,
    /// It exists and `adopt: true` takes it over; the original is kept and restored on removal.
    Adopted,
    /// The content differs. `diff` is a unified diff, `None` for a secret file.
    Content {
        diff: Option<String>,
    },
    /// The content differs from a file berth takes over now (`adopt`): not shown, since berth
    /// never prints a file it does not own (a pull request's preview could name any path).
    ContentNotOwned,
    /// Changed on the host since berth wrote it (drift), not by the config.
    HandEdited,
    Mode {
        from: String,
        to: String,
    },
    Owner {
        from: String,
        to: String,
    },
    /// A sysctl's value.
    Value {
        key: String,
        from: String,
        to: String,
    },
    /// A sysctl is set but not persisted in /etc/sysctl.d (a reboot would lose it).
    NotPersisted {
        path: String,
    },
    /// A unit's enablement or run state: `not enabled`, `inactive (state: started)`.
    HostState {
        detail: String,
    },
    /// What runs after the change (`on_change`, or the restart a changed unit file needs).
    Then {
        action: String,
    },
    /// Left the config: berth created it (removed) or took it over (the original is put back).
    HostRemoved {
        restore: bool,
    },
    /// Left the config and is already gone from the host: only the record is dropped.
    Forgotten,
    /// The firewall's rules changed: `+ allow 9090/tcp from tailnet`, `- allow …`.
    Rules {
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// The live firewall is not what berth applied last (a reload, a restart or a hand edit).
    FirewallDrift {
        detail: String,
    },
    /// A route added, changed or removed: `+ route app1.example.org → apps/app:3000 (public)`.
    Route {
        line: String,
    },
    /// A job added, changed or removed: `+ job nightly: backup at "0 3 * * *" (Europe/Paris)`.
    Job {
        line: String,
    },
    /// Caddy runs another config than berth's (a hand edit through the admin API, a restart
    /// that loaded its Caddyfile): the whole config is loaded again.
    ProxyDrift,
    /// Caddy's admin API did not answer when observed.
    ProxyUnreachable {
        message: String,
    },
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
            Reason::HostNew => f.write_str("new"),
            Reason::Adopted => f.write_str(
                "exists and adopt: true takes it over (the original is kept, and restored when it leaves the config)",
            ),
            Reason::Content { diff: None } => f.write_str("content changed (secret: not shown)"),
            Reason::Content { diff: Some(diff) } => write!(f, "content changed:\n{diff}"),
            Reason::ContentNotOwned => f.write_str(
                "content differs from the file there now (not shown: berth does not own it yet)",
            ),
            Reason::HandEdited => f.write_str("changed on the host since berth wrote it (drift)"),
            Reason::Route { line } | Reason::Job { line } => f.write_str(line),
            Reason::ProxyDrift => f.write_str(
                "Caddy runs another config than berth's (changed by hand or by a restart: drift); loading berth's again",
            ),
            Reason::ProxyUnreachable { message } => write!(f, "{message}"),
            Reason::Mode { from, to } => write!(f, "mode {from} → {to}"),
            Reason::Owner { from, to } => write!(f, "owner {from} → {to}"),
            Reason::Value { key, from, to } => {
                write!(f, "sysctl {key} {} → {}", from.replace('\t', " "), to.replace('\t', " "))
            }
            Reason::NotPersisted { path } => write!(f, "not persisted in {path}"),
            Reason::HostState { detail } => f.write_str(detail),
            Reason::Then { action } => write!(f, "then {action}"),
            Reason::HostRemoved { restore: false } => {
                f.write_str("removed from config (berth created it)")
            }
            Reason::HostRemoved { restore: true } => {
                f.write_str("removed from config: what was there before berth is put back")
            }
            Reason::Forgotten => {
                f.write_str("removed from config and already gone from the host (record dropped)")
            }
            Reason::Rules { added, removed } => {
                f.write_str("rules changed:")?;
                for r in removed {
                    write!(f, "\n- {r}")?;
                }
                for a in added {
                    write!(f, "\n+ {a}")?;
                }
                Ok(())
            }
            Reason::FirewallDrift { detail } => write!(f, "drift: {detail}"),
        }
    }
}

/// `sha256:0123456789ab…` → `0123456789ab`.
pub fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}
