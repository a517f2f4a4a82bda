//! [`DockerError`]: what can go wrong talking to the Engine, and whether retrying may help.

use bollard::errors::Error as BollardError;

use super::pull::PullFailure;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// An Engine operation failed. Each variant knows whether retrying later may help
/// ([`DockerError::is_transient`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerError {
    /// The Engine cannot be reached at all (socket missing, connection refused, ...).
    #[error(
        "cannot reach the Docker Engine at {host}: {cause}. Is dockerd running? Set DOCKER_HOST to reach another engine."
    )]
    Unreachable { host: String, cause: String },
    /// The Engine did not answer in time.
    #[error("{op}: the Docker Engine did not answer in time")]
    Timeout { op: String },
    /// An image is missing and could not be pulled.
    #[error("cannot pull image {image}: {cause} ({kind})")]
    Pull {
        image: String,
        cause: String,
        /// Whether the registry was unavailable (retry) or the image cannot be pulled as asked.
        kind: PullFailure,
    },
    /// 404: the object does not exist.
    #[error("{op}: not found: {message}")]
    NotFound { op: String, message: String },
    /// 409: e.g. the name is already taken.
    #[error("{op}: conflict: {message}")]
    Conflict { op: String, message: String },
    /// 4xx: the Engine rejected the request (invalid config, ...). Retrying does not help.
    #[error("{op}: the Docker Engine rejected the request ({status}): {message}")]
    Rejected {
        op: String,
        status: u16,
        message: String,
    },
    /// 5xx: the Engine failed. Usually transient; some 5xx are known to be permanent (e.g. a
    /// host port already allocated), see `transient`.
    #[error("{op}: the Docker Engine failed ({status}): {message}")]
    Server {
        op: String,
        status: u16,
        message: String,
        transient: bool,
    },
    /// The spec asks for something this Engine (API version) cannot do, or is invalid.
    #[error("{op}: {message}")]
    Invalid { op: String, message: String },
    /// Anything else (unexpected response, ...).
    #[error("{op}: {cause}")]
    Other { op: String, cause: String },
}

impl DockerError {
    /// Whether retrying the same operation later may succeed (engine down, timeout, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            DockerError::Unreachable { .. } | DockerError::Timeout { .. } => true,
            DockerError::Pull { kind, .. } => kind.is_transient(),
            DockerError::Server { transient, .. } => *transient,
            DockerError::NotFound { .. }
            | DockerError::Conflict { .. }
            | DockerError::Rejected { .. }
            | DockerError::Invalid { .. }
            | DockerError::Other { .. } => false,
        }
    }

    /// A 404 from the Engine.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DockerError::NotFound { .. })
    }

    /// A 409 from the Engine.
    pub fn is_conflict(&self) -> bool {
        matches!(self, DockerError::Conflict { .. })
    }

    pub(super) fn from_bollard(
        host: &str,
        op: impl Into<String>,
        err: BollardError,
    ) -> DockerError {
        let op = op.into();
        match err {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => {
                let message = message.trim().to_string();
                match status_code {
                    404 => DockerError::NotFound { op, message },
                    409 => DockerError::Conflict { op, message },
                    500..=599 => {
                        let transient = !permanent_server_message(&message);
                        DockerError::Server {
                            op,
                            status: status_code,
                            message,
                            transient,
                        }
                    }
                    _ => DockerError::Rejected {
                        op,
                        status: status_code,
                        message,
                    },
                }
            }
            BollardError::RequestTimeoutError => DockerError::Timeout { op },
            e @ (BollardError::HyperLegacyError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. }
            | BollardError::SocketNotFoundError(_)) => DockerError::Unreachable {
                host: host.to_string(),
                cause: error_chain(&e),
            },
            e => DockerError::Other {
                op,
                cause: error_chain(&e),
            },
        }
    }
}

/// 5xx messages that will not go away by retrying.
fn permanent_server_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "port is already allocated",
        "address already in use",
        "invalid",
        "no such",
        "not found",
        "conflict",
        "is not a valid",
        "executable file not found",
        "permission denied",
        "oci runtime create failed",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// `err: source: source...`, without repeating identical messages.
pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_know_whether_they_are_transient() {
        let e = |status: u16, msg: &str| {
            DockerError::from_bollard(
                "unix:///x",
                "op",
                BollardError::DockerResponseServerError {
                    status_code: status,
                    message: msg.into(),
                },
            )
        };
        assert!(!e(404, "No such image").is_transient());
        assert!(!e(409, "name in use").is_transient());
        assert!(!e(400, "invalid mount").is_transient());
        assert!(e(500, "context deadline exceeded").is_transient());
        assert!(!e(500, "driver failed programming external connectivity: Bind for 0.0.0.0:8080 failed: port is already allocated").is_transient());
        assert!(
            DockerError::from_bollard("unix:///x", "op", BollardError::RequestTimeoutError)
                .is_transient()
        );
        let unreachable = DockerError::from_bollard(
            "unix:///var/run/docker.sock",
            "op",
            BollardError::SocketNotFoundError("/var/run/docker.sock".into()),
        );
        assert!(unreachable.is_transient());
        assert!(
            unreachable
                .to_string()
                .starts_with("cannot reach the Docker Engine at unix:///var/run/docker.sock: ")
        );
        assert!(unreachable.to_string().contains("Is dockerd running?"));
    }
}
