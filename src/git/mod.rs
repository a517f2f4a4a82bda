//! The git adapter: a bare mirror of the config repository in a state dir, kept up to date over
//! the network with gix. This is the only module that talks to gix (no `git` CLI is spawned by
//! berth itself; gix spawns `git-upload-pack` for `file://` and `ssh` for `ssh://` URLs).
//!
//! Everything here is blocking: call it from `tokio::task::spawn_blocking`.
//!
//! Every network operation (`open_or_clone` when it clones, `remote_ref`, `fetch`) runs on a
//! worker thread with a deadline of [`MirrorOptions::timeout`]: when it passes, gix's interrupt
//! flag is raised and the call returns [`GitError::Timeout`] without waiting for the worker any
//! longer than a short grace period. Blocking reads are bounded too, so that a timed-out worker
//! does not linger: `git://` sockets get read/write timeouts, the HTTP client gets connect and
//! total timeouts, and `ssh` gets `ConnectTimeout`/`ServerAliveInterval` (unless the operator
//! configured their own ssh command).
//!
//! Credentials: the token is sent as an HTTP `Authorization` header (in-memory config
//! `http.extraHeader`, never written to disk) and is scrubbed, together with any userinfo of the
//! URL, from every error message.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::model::Secret;

mod export;
mod mirror;
mod remote;

pub use crate::model::redact_url;
use export::*;
use mirror::*;
use remote::*;

/// The refspec that mirrors every branch, forced (the caller decides about force pushes).
pub const BRANCHES_REFSPEC: &str = "+refs/heads/*:refs/heads/*";

/// How long a timed-out worker gets to wind down after its interrupt flag was raised.
const INTERRUPT_GRACE: Duration = Duration::from_millis(200);

/// Where and how to reach the remote.
#[derive(Clone)]
pub struct MirrorOptions {
    pub url: String,
    /// Sent as `Authorization: Basic base64("x-access-token:<token>")` over http(s) (what GitHub,
    /// Gitea/Forgejo and GitLab accept for personal access and app installation tokens).
    pub token: Option<Secret>,
    /// Deadline of each network operation.
    pub timeout: Duration,
}

impl MirrorOptions {
    pub fn new(url: impl Into<String>) -> Self {
        MirrorOptions {
            url: url.into(),
            token: None,
            timeout: Duration::from_secs(60),
        }
    }
}

impl fmt::Debug for MirrorOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorOptions")
            .field("url", &redact_url(&self.url))
            .field("token", &self.token)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What went wrong, with the URL redacted of credentials and the token scrubbed from every
/// message (gix's own texts included).
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The operation did not finish within the configured timeout. Transient.
    #[error("git {op} from {url} timed out after {after:?}")]
    Timeout {
        op: &'static str,
        url: String,
        after: Duration,
    },
    /// The remote could not be reached or the connection broke. Transient.
    #[error("git {op} from {url} failed: {message}")]
    Network {
        op: &'static str,
        url: String,
        message: String,
    },
    /// The remote answered but refused: repository missing or not exported, authentication or
    /// authorisation failed, unsupported URL. Permanent until the configuration changes.
    #[error("git {op} from {url} was refused: {message}")]
    Remote {
        op: &'static str,
        url: String,
        message: String,
    },
    /// The mirror could not be created or opened. Permanent.
    #[error("git mirror at {path}: {message}")]
    Mirror { path: PathBuf, message: String },
    /// A commit, object or path that is not in the mirror. Permanent (for that input).
    #[error("git: {what} not found{}", detail_suffix(.detail))]
    NotFound { what: String, detail: String },
    /// Bad input: not a commit id, a tree path that is no folder, an unsafe symlink target, an
    /// export destination that already exists. Permanent.
    #[error("git: {0}")]
    Invalid(String),
    /// A local filesystem error (disk full, permissions). Transient: the condition may clear.
    #[error("git: {path}: {message}")]
    Io { path: PathBuf, message: String },
    /// An unexpected failure inside gix. Permanent.
    #[error("git {op}: {message}")]
    Internal { op: &'static str, message: String },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl GitError {
    /// Worth retrying later without a configuration change: timeouts, network failures and
    /// local I/O errors.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GitError::Timeout { .. } | GitError::Network { .. } | GitError::Io { .. }
        )
    }

    fn io(path: &Path, err: std::io::Error) -> Self {
        GitError::Io {
            path: path.to_owned(),
            message: err.to_string(),
        }
    }
}

/// A bare mirror of one remote repository. Cheap to share: `Send + Sync`, every call opens a
/// thread-local handle on the shared repository.
pub struct Mirror {
    dir: PathBuf,
    repo: gix::ThreadSafeRepository,
    remote: Arc<Remote>,
}

impl fmt::Debug for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirror")
            .field("dir", &self.dir)
            .field("url", &self.remote.url_redacted)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Mirror>();
        assert_send_sync::<GitError>();
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("https://tok@github.com/a/b"),
            "https://***@github.com/a/b"
        );
        assert_eq!(redact_url("https://u:p@h/x@y"), "https://***@h/x@y");
        assert_eq!(redact_url("ssh://git:pw@h/r"), "ssh://git:***@h/r");
        assert_eq!(redact_url("ssh://git@h/r"), "ssh://git@h/r");
        assert_eq!(redact_url("git@github.com:a/b"), "git@github.com:a/b");
        assert_eq!(redact_url("file:///srv/repo"), "file:///srv/repo");
    }

    #[test]
    fn refusals_are_told_from_outages() {
        assert!(
            local_remote_missing("file:///nonexistent/berth/origin.git").is_some_and(
                |m| m.contains("no such repository folder /nonexistent/berth/origin.git")
            )
        );
        assert!(local_remote_missing("file://localhost/nonexistent/x.git").is_some());
        assert_eq!(local_remote_missing("file:///"), None);
        assert_eq!(local_remote_missing("file:///srv/my%20repo.git"), None);
        assert_eq!(local_remote_missing("https://github.com/a/b.git"), None);
        assert!(remote_refused("handshake failed: Received HTTP status 404"));
        assert!(remote_refused("Received HTTP status 403"));
        assert!(!remote_refused("Received HTTP status 429"));
        assert!(!remote_refused("Received HTTP status 503"));
        assert!(!remote_refused(
            "error sending request for url (https://h:40401/x): Connection refused"
        ));
        assert!(remote_refused(
            "access denied or repository not exported: /x.git"
        ));
        assert!(remote_refused("git@h: Permission denied (publickey)."));
        assert!(!remote_refused(
            "ssh: Could not resolve hostname h: Name or service not known"
        ));
    }

    #[test]
    fn symlinks_must_stay_inside() {
        assert!(check_symlink(Path::new("a"), "b").is_ok());
        assert!(check_symlink(Path::new("d/a"), "../b").is_ok());
        assert!(check_symlink(Path::new("d/a"), "./x/../../b").is_ok());
        assert!(check_symlink(Path::new("a"), "../b").is_err());
        assert!(check_symlink(Path::new("d/a"), "../../b").is_err());
        assert!(check_symlink(Path::new("a"), "/etc/passwd").is_err());
        assert!(check_symlink(Path::new("a"), "").is_err());
    }
}
