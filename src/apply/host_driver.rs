//! The executor's view of the host: files, sysctls, systemd and the inventory, as a trait, so
//! that tests can put a fake in its place and unit-test the revert paths. The real one is
//! [`crate::host::Host`].

use std::future::Future;
use std::path::Path;

use crate::host::HostError;
use crate::model::host::{Entry, Meta};

type R<T> = Result<T, HostError>;

/// What the executor asks of the host.
pub trait HostDriver: Sync {
    /// Writes `content` atomically: a temp file in the same directory, fsync, mode and owner
    /// set, then `validate` (its `%s` is the temp file's path) when given, then the rename.
    /// A failed validate leaves the old file in place ([`HostError::Validate`]).
    fn write_file(
        &self,
        path: &Path,
        content: &[u8],
        meta: Meta,
        validate: Option<&str>,
    ) -> impl Future<Output = R<()>> + Send;
    /// Removes a file; one that is already gone is fine.
    fn remove_file(&self, path: &Path) -> impl Future<Output = R<()>> + Send;
    /// Makes a directory (its parent must exist) or, when it exists, sets its metadata.
    fn make_dir(&self, path: &Path, meta: Meta) -> impl Future<Output = R<()>> + Send;
    /// Sets mode and owner.
    fn set_meta(&self, path: &Path, meta: Meta) -> impl Future<Output = R<()>> + Send;
    /// Removes an empty directory: `false` when it is not empty (it is kept).
    fn remove_dir(&self, path: &Path) -> impl Future<Output = R<bool>> + Send;
    /// Writes a sysctl's value (`/proc/sys/...`).
    fn write_sysctl(&self, key: &str, value: &str) -> impl Future<Output = R<()>> + Send;
    /// `systemctl VERB UNIT...` (`daemon-reload` takes none).
    fn systemctl(&self, verb: &str, units: &[&str]) -> impl Future<Output = R<()>> + Send;
    /// One `daemon-reload` for every unit file written before this call started: calls that
    /// overlap one in progress share the next.
    fn daemon_reload(&self) -> impl Future<Output = R<()>> + Send;
    /// A unit's `ActiveState` (`active`, `failed`, …).
    fn unit_state(&self, unit: &str) -> impl Future<Output = R<String>> + Send;
    /// A unit's last journal lines (for failure reports).
    fn journal(&self, unit: &str, lines: usize) -> impl Future<Output = R<String>> + Send;
    /// Records the job table in the state dir, for the scheduler and `berth jobs`.
    fn record_jobs(
        &self,
        _table: &crate::model::jobs::JobsSpec,
    ) -> impl Future<Output = R<()>> + Send {
        async { no_host() }
    }
    /// Replaces berth's firewall table (or removes it: `remove`), confirmed or rolled back
    /// (`crate::host` says how); the live table's digest afterwards. Hosts without a firewall
    /// adapter refuse.
    fn firewall(
        &self,
        _change: &crate::plan::FirewallPayload,
        _remove: bool,
        _confirm: &super::FirewallConfirm,
    ) -> impl Future<Output = R<crate::plan::FirewallApplied>> + Send {
        async { no_host() }
    }
    /// Records (`Some`) or forgets (`None`) an address in the inventory, saved atomically
    /// before this returns.
    fn record(&self, addr: &str, entry: Option<&Entry>) -> impl Future<Output = R<()>> + Send;
}

/// A host driver for runs that change only the Engine (tests, embedders): every call fails,
/// so a plan with host changes reports them failed instead of touching the host.
pub struct NoHost;

fn no_host<T>() -> R<T> {
    Err(HostError::Inventory {
        path: std::path::PathBuf::new(),
        message: "this run has no host driver".into(),
        transient: false,
    })
}

impl HostDriver for NoHost {
    async fn write_file(&self, _: &Path, _: &[u8], _: Meta, _: Option<&str>) -> R<()> {
        no_host()
    }
    async fn remove_file(&self, _: &Path) -> R<()> {
        no_host()
    }
    async fn make_dir(&self, _: &Path, _: Meta) -> R<()> {
        no_host()
    }
    async fn set_meta(&self, _: &Path, _: Meta) -> R<()> {
        no_host()
    }
    async fn remove_dir(&self, _: &Path) -> R<bool> {
        no_host()
    }
    async fn write_sysctl(&self, _: &str, _: &str) -> R<()> {
        no_host()
    }
    async fn systemctl(&self, _: &str, _: &[&str]) -> R<()> {
        no_host()
    }
    async fn daemon_reload(&self) -> R<()> {
        no_host()
    }
    async fn unit_state(&self, _: &str) -> R<String> {
        no_host()
    }
    async fn journal(&self, _: &str, _: usize) -> R<String> {
        no_host()
    }
    async fn record(&self, _: &str, _: Option<&Entry>) -> R<()> {
        no_host()
    }
}
