//! What the executor reports: [`ApplyEvent`]s as they happen, an [`ApplyReport`] at the end,
//! and typed errors — [`StepError`] for one change, [`ApplyError`] for the apply.

use std::fmt;
use std::time::Duration;

use crate::docker::DockerError;
use crate::plan::{Addr, Group, PlanError, Wait};

/// One step as it happens, for the CLI to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyEvent {
    Pulling {
        image: String,
    },
    PullProgress {
        image: String,
        line: String,
    },
    Pulled {
        image: String,
    },
    NetworkCreated {
        stack: String,
        name: String,
    },
    VolumeCreated {
        stack: String,
        name: String,
    },
    /// Waiting for `stack/service` (a dependency, or a new container) to reach a condition.
    Waiting {
        stack: String,
        service: String,
        container: String,
        until: Wait,
        elapsed: Duration,
    },
    /// A new container was created and started.
    Created {
        stack: String,
        service: String,
        name: String,
    },
    Replacing {
        stack: String,
        service: String,
        name: String,
    },
    Replaced {
        stack: String,
        service: String,
        name: String,
    },
    Started {
        stack: String,
        service: String,
        name: String,
    },
    /// A container took its changed config files (signal or command), without a recreate.
    Reloaded {
        stack: String,
        service: String,
        name: String,
    },
    Removed {
        stack: String,
        service: String,
        name: String,
    },
    NetworkRemoved {
        stack: String,
        name: String,
    },
    VolumeRemoved {
        stack: String,
        name: String,
    },
    /// A replacement failed and the old container was put back.
    Restored {
        stack: String,
        service: String,
        name: String,
        detail: String,
    },
    /// Something went wrong that does not stop the apply (e.g. an old container could not be
    /// removed after its replacement is up; the next plan removes it).
    Warning {
        message: String,
    },
    /// One step of a host change: `wrote /etc/x`, `restarted hello.service`.
    Host {
        addr: String,
        did: String,
    },
    /// A host change failed and what it replaced was put back.
    HostReverted {
        addr: String,
        detail: String,
    },
}

impl fmt::Display for ApplyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyEvent::Pulling { image } => write!(f, "pulling {image} …"),
            ApplyEvent::PullProgress { image, line } => write!(f, "  {image}: {line}"),
            ApplyEvent::Pulled { image } => write!(f, "pulled {image}"),
            ApplyEvent::NetworkCreated { name, .. } => write!(f, "created network {name}"),
            ApplyEvent::VolumeCreated { name, .. } => write!(f, "created volume {name}"),
            ApplyEvent::Waiting {
                stack,
                service,
                until,
                elapsed,
                ..
            } => write!(
                f,
                "waiting for {stack}/{service} to {until} ({}s)",
                elapsed.as_secs()
            ),
            ApplyEvent::Created { name, .. } => write!(f, "created {name}"),
            ApplyEvent::Replacing { name, .. } => write!(f, "replacing {name} …"),
            ApplyEvent::Replaced { name, .. } => write!(f, "replaced {name}"),
            ApplyEvent::Started { name, .. } => write!(f, "started {name}"),
            ApplyEvent::Reloaded { name, .. } => write!(f, "reloaded {name}"),
            ApplyEvent::Removed { name, .. } => write!(f, "removed {name}"),
            ApplyEvent::NetworkRemoved { name, .. } => write!(f, "removed network {name}"),
            ApplyEvent::VolumeRemoved { name, .. } => write!(f, "removed volume {name}"),
            ApplyEvent::Restored { name, detail, .. } => write!(f, "restored {name}: {detail}"),
            ApplyEvent::Warning { message } => write!(f, "warning: {message}"),
            ApplyEvent::Host { addr, did } => write!(f, "{addr}: {did}"),
            ApplyEvent::HostReverted { addr, detail } => write!(f, "{addr}: reverted: {detail}"),
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub pulled: usize,
    pub networks_created: usize,
    pub volumes_created: usize,
    pub created: usize,
    pub replaced: usize,
    pub started: usize,
    pub reloaded: usize,
    pub removed: usize,
    pub networks_removed: usize,
    pub volumes_removed: usize,
    /// Host changes carried out (files, directories, sysctls, units, the firewall).
    pub host: usize,
    /// Caddy config loads.
    pub proxy: usize,
    /// Job table records.
    pub jobs: usize,
    /// Containers reloaded: (container ID, the config digest they now hold).
    pub reloads: Vec<(String, String)>,
    /// The routes of the last config Caddy took in this apply (`@id` → the address dialled),
    /// `None` when none was loaded: what the next plan tells drift by.
    pub proxy_loaded: Option<std::collections::BTreeMap<String, String>>,
    /// Changes that failed, in the order they failed.
    pub failed: Vec<Failure>,
    /// Changes not attempted because a change they need failed.
    pub not_attempted: Vec<Addr>,
}

impl ApplyReport {
    /// Whether anything changed on the Engine.
    pub fn changed(&self) -> bool {
        self.pulled
            + self.networks_created
            + self.volumes_created
            + self.created
            + self.replaced
            + self.started
            + self.reloaded
            + self.removed
            + self.host
            + self.proxy
            + self.jobs
            + self.networks_removed
            + self.volumes_removed
            > 0
    }
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} created, {} replaced, {} started, {} removed",
            self.created, self.replaced, self.started, self.removed
        )?;
        if self.reloaded > 0 {
            write!(f, ", {} reloaded", self.reloaded)?;
        }
        if self.pulled > 0 {
            write!(f, ", {} pulled", self.pulled)?;
        }
        if self.host > 0 {
            write!(f, ", {} host changes", self.host)?;
        }
        if self.proxy > 0 {
            write!(f, ", Caddy config loaded")?;
        }
        if self.jobs > 0 {
            write!(f, ", job table recorded")?;
        }
        Ok(())
    }
}

/// One change that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub addr: Addr,
    pub error: StepError,
}

/// Why one change failed. Each knows whether retrying later may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// A pull failed; the changes that need the image were not made.
    #[error("{}", pull_message(image, services, error))]
    Pull {
        image: String,
        /// The services that need it (`stack/service`).
        services: Vec<String>,
        error: DockerError,
    },
    /// A network or volume step failed.
    #[error("{stack}: {error}")]
    Object { stack: String, error: DockerError },
    /// A container step failed (the message says what, and what was restored).
    #[error("{stack}/{service}: {message}")]
    Service {
        stack: String,
        service: String,
        message: String,
        /// Whether retrying later may help (the Engine was unreachable, timed out, ...).
        transient: bool,
    },
    /// A dependency did not reach its condition; the dependent was not changed.
    #[error("{message}")]
    Dependency {
        stack: String,
        service: String,
        message: String,
    },
    /// A host change failed; `message` says what, and what was put back (never a secret).
    #[error("{addr}: {message}")]
    Host {
        addr: Addr,
        message: String,
        transient: bool,
    },
}

impl StepError {
    /// Whether retrying the apply later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StepError::Pull { error, .. } | StepError::Object { error, .. } => error.is_transient(),
            StepError::Service { transient, .. } => *transient,
            StepError::Dependency { .. } => false,
            StepError::Host { transient, .. } => *transient,
        }
    }

    /// The groups this failure belongs to (a shared pull: every stack that needed it).
    pub fn groups(&self) -> Vec<Group> {
        match self {
            StepError::Pull { services, .. } => {
                let mut s: Vec<Group> = services
                    .iter()
                    .map(|s| Group::stack(s.split('/').next().unwrap_or(s)))
                    .collect();
                s.dedup();
                s
            }
            StepError::Object { stack, .. }
            | StepError::Service { stack, .. }
            | StepError::Dependency { stack, .. } => vec![Group::stack(stack)],
            StepError::Host { addr, .. } => addr.group().into_iter().collect(),
        }
    }
}

/// Why an apply did not fully succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The plan has errors: nothing was done.
    #[error("the plan has errors, nothing was changed:\n{}", list(errors))]
    PlanHasErrors { errors: Vec<PlanError> },
    /// Some changes failed. Changes that needed them were not attempted; independent ones
    /// were carried out (see the report).
    #[error("{}", failed_message(report))]
    Failed { report: ApplyReport },
}

impl ApplyError {
    /// Whether retrying the apply later may succeed: every failure was transient.
    pub fn is_transient(&self) -> bool {
        match self {
            ApplyError::PlanHasErrors { .. } => false,
            ApplyError::Failed { report } => {
                !report.failed.is_empty() && report.failed.iter().all(|f| f.error.is_transient())
            }
        }
    }

    /// The failures, when changes were attempted.
    pub fn failures(&self) -> &[Failure] {
        match self {
            ApplyError::Failed { report } => &report.failed,
            ApplyError::PlanHasErrors { .. } => &[],
        }
    }
}

fn failed_message(report: &ApplyReport) -> String {
    let mut lines: Vec<String> = report.failed.iter().map(|f| f.error.to_string()).collect();
    if !report.not_attempted.is_empty() {
        let names: Vec<String> = report
            .not_attempted
            .iter()
            .map(ToString::to_string)
            .collect();
        lines.push(format!(
            "not attempted (they need what failed): {}",
            names.join(", ")
        ));
    }
    lines.join("; ")
}

fn pull_message(image: &str, services: &[String], error: &DockerError) -> String {
    let needed = if services.is_empty() {
        String::new()
    } else {
        format!(" (needed by {})", services.join(", "))
    };
    let nothing = "; nothing that needs it was changed";
    match error {
        DockerError::Pull { cause, .. } => {
            format!("cannot pull image {image}{needed}: {cause}{nothing}")
        }
        other => format!("pulling {image}{needed}: {other}{nothing}"),
    }
}

fn list(errors: &[PlanError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}
