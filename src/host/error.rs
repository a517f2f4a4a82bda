//! `HostError`: what can go wrong on the host. Typed, each transient or permanent.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A file-system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A command (systemctl, journalctl) could not run or exited non-zero. `output` is its
    /// stderr/stdout tail.
    #[error("`{command}` failed ({status}){}", tail(output))]
    Command {
        command: String,
        status: String,
        output: String,
    },
    /// The `validate` command refused the staged file: nothing was replaced.
    #[error(
        "validate `{command}` refused the new file ({status}); nothing was replaced{}",
        tail(output)
    )]
    Validate {
        command: String,
        status: String,
        output: String,
    },
    /// A unit did not become or stay active after a start, restart or reload.
    #[error(
        "{unit} did not stay active after {verb} (now {state}){}",
        tail(journal)
    )]
    UnitFailed {
        unit: String,
        verb: String,
        state: String,
        /// Its last journal lines.
        journal: String,
    },
    /// The inventory in the state dir cannot be read or written.
    #[error("inventory {}: {message}", path.display())]
    Inventory {
        path: PathBuf,
        message: String,
        /// A read or write that may work later (a full disk); a file that cannot be parsed
        /// stays broken until someone fixes it.
        transient: bool,
    },
    /// A command took longer than berth waits.
    #[error("`{command}` timed out after {seconds}s")]
    Timeout { command: String, seconds: u64 },
    /// The path leaves where it says (a symlinked ancestor, `..`, not absolute) or is not what
    /// the call changes (a socket, a symlink at the leaf): nothing was touched.
    #[error("{}: {reason}", path.display())]
    Refused { path: PathBuf, reason: String },
    /// A sysctl could not be written (or its key is not one).
    #[error("sysctl {key}: {message}")]
    Sysctl { key: String, message: String },
    /// The job table could not be recorded in the state dir.
    #[error("{message}")]
    Jobs { message: String, transient: bool },
    /// A firewall change was refused or not confirmed (the previous ruleset is back).
    #[error("{message}")]
    Firewall { message: String },
    /// The user or group database could not be read (a name that does not exist is not an
    /// error: it is `None` in `ObservedHost`).
    #[error("look up {what} {name}: {source}")]
    Lookup {
        what: &'static str,
        name: String,
        #[source]
        source: std::io::Error,
    },
}

fn tail(output: &str) -> String {
    let t = output.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!(":\n{t}")
    }
}

impl HostError {
    /// Worth retrying without a new commit: a timeout, an inventory that could not be
    /// written (a full disk), a user database that could not be read (a directory service
    /// down). A refused file or a failing unit stays failed until the config changes.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HostError::Timeout { .. }
                | HostError::Inventory {
                    transient: true,
                    ..
                }
                | HostError::Lookup { .. }
                | HostError::Jobs {
                    transient: true,
                    ..
                }
        )
    }
}
