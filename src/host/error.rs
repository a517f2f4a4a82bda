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
    Inventory { path: PathBuf, message: String },
    /// A command took longer than berth waits.
    #[error("`{command}` timed out after {seconds}s")]
    Timeout { command: String, seconds: u64 },
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
    /// Worth retrying without a new commit: a timeout, or an inventory that could not be
    /// written (a full disk). A refused file or a failing unit stays failed until the config
    /// changes.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HostError::Timeout { .. } | HostError::Inventory { .. }
        )
    }
}
