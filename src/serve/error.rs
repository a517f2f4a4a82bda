//! Why a reconcile, a preview or `berth serve` itself did not complete. Typed to the edge: the
//! loop decides retry-or-not from [`ServeError::is_transient`], never from message text.

use std::path::PathBuf;

use crate::docker::DockerError;
use crate::git::GitError;
use crate::github::GitHubError;
use crate::plan::PlanError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    #[error(transparent)]
    State(#[from] super::state::StateError),
    #[error(transparent)]
    Http(#[from] super::http::ConfigError),
    #[error("branch {branch} does not exist in {repo}")]
    NoBranch { branch: String, repo: String },
    #[error(
        "refused: {branch} moved from {from} to {to} in a non-fast-forward way (force push); push a fix on top, or restart berth with --allow-non-fast-forward"
    )]
    ForcePush {
        branch: String,
        from: String,
        to: String,
    },
    #[error("invalid manifests: {first}")]
    InvalidManifests {
        first: String,
        /// Every diagnostic, `path:line:col: message`.
        all: Vec<String>,
    },
    /// A plan error that concerns the whole config (the empty-config guard).
    #[error("{0}")]
    Plan(PlanError),
    /// One or more stacks failed; each has its own status.
    #[error("{}", failures.join("; "))]
    Stacks {
        failures: Vec<String>,
        /// Every failure was transient: retry later.
        transient: bool,
    },
    #[error("pull request #{number}: {detail}")]
    PullRef { number: u64, detail: String },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Listen(#[from] super::server::ListenError),
    /// A blocking task (git, the config loader) panicked or was cancelled.
    #[error("{what} stopped unexpectedly: {detail}")]
    Task { what: &'static str, detail: String },
}

impl From<crate::pipeline::ReconcileError> for ServeError {
    fn from(e: crate::pipeline::ReconcileError) -> ServeError {
        match e {
            crate::pipeline::ReconcileError::Docker(e) => ServeError::Docker(e),
            crate::pipeline::ReconcileError::Host(e) => ServeError::Host(e),
        }
    }
}

impl ServeError {
    /// Whether retrying later, without a change to the config or the commit, may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ServeError::Git(e) => e.is_transient(),
            ServeError::Docker(e) => e.is_transient(),
            ServeError::Host(e) => e.is_transient(),
            ServeError::GitHub(e) => e.is_transient(),
            ServeError::Stacks { transient, .. } => *transient,
            // The disk may fill up or come back; a task crash is worth one more try.
            ServeError::Io { .. } | ServeError::Task { .. } => true,
            ServeError::Config(_)
            | ServeError::State(_)
            | ServeError::Http(_)
            | ServeError::NoBranch { .. }
            | ServeError::ForcePush { .. }
            | ServeError::InvalidManifests { .. }
            | ServeError::Plan(_)
            | ServeError::PullRef { .. }
            | ServeError::Listen(_) => false,
        }
    }

    pub(super) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ServeError {
        let path = path.into();
        move |source| ServeError::Io { what, path, source }
    }
}
