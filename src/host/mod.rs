//! The host adapter: files, directories, sysctls, systemd units and the inventory. The only
//! place that reads or changes host settings; the executor reaches it through
//! [`crate::apply::HostDriver`].
//!
//! [`Host`] holds the inventory (loaded once, then kept in step with every save), the
//! single-flight state of `daemon-reload` and a counter for temp-file names: nothing global.

mod command;
mod error;
mod firewall;
mod firewall_boot;
mod firewalld;
pub(crate) use firewall::remote_is_local;
pub(crate) use inventory::path as inventory_path;
mod fs;
mod inventory;
mod observe;
#[cfg(test)]
mod observe_tests;
pub mod process;
mod sysctl;
mod systemd;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

pub use error::HostError;

use crate::apply::HostDriver;
use crate::model::host::{Entry, HostSpec, Inventory, Meta, ObservedHost};
use command::SYSTEMCTL_TIMEOUT;

/// The host this berth runs on.
#[derive(Debug)]
pub struct Host {
    inventory_path: PathBuf,
    /// `None` until loaded; then what the file holds (updated only after a successful save).
    inventory: Arc<Mutex<Option<Inventory>>>,
    reloads: systemd::Reloads,
    /// Numbers temp files (`.<name>.berth-<pid>-<n>.tmp`).
    temp: Arc<AtomicU64>,
    /// `/proc/sys`; the tools by name (looked up on `PATH`). Tests point them elsewhere.
    proc_sys: PathBuf,
    systemctl: PathBuf,
    journalctl: PathBuf,
    nft: PathBuf,
    /// Where berth's own boot unit goes ([`crate::model::host::UNIT_DIR`]).
    unit_dir: PathBuf,
    /// Records the job table (`crate::jobs::record_table`, given by the pipeline: the host
    /// adapter does not depend on the scheduler).
    jobs_recorder: Option<JobsRecorder>,
}

/// What recording the job table returns: `Err((message, transient))`.
pub type RecordResult = Result<(), (String, bool)>;

/// Writes the job table.
#[derive(Clone)]
pub struct JobsRecorder(
    pub Arc<dyn Fn(&crate::model::jobs::JobsSpec) -> RecordResult + Send + Sync>,
);

impl std::fmt::Debug for JobsRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobsRecorder")
    }
}

impl Host {
    pub fn new(state_dir: &Path, instance: &str) -> Host {
        Host {
            inventory_path: inventory::path(state_dir, instance),
            inventory: Arc::default(),
            reloads: systemd::Reloads::default(),
            temp: Arc::default(),
            proc_sys: PathBuf::from("/proc/sys"),
            systemctl: PathBuf::from("systemctl"),
            journalctl: PathBuf::from("journalctl"),
            nft: PathBuf::from("nft"),
            unit_dir: PathBuf::from(crate::model::host::UNIT_DIR),
            jobs_recorder: None,
        }
    }

    /// Job table changes are recorded with `recorder`; without one they are refused.
    pub fn with_jobs_recorder(mut self, recorder: JobsRecorder) -> Host {
        self.jobs_recorder = Some(recorder);
        self
    }

    /// Reads `<state dir>/inventory-<instance>.json` (missing: empty) and keeps it for
    /// [`record`](crate::apply::HostDriver::record). One that cannot be read or parsed is
    /// [`HostError::Inventory`], never an empty inventory.
    pub fn load_inventory(&self) -> Result<Inventory, HostError> {
        let mut held = self
            .inventory
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let inv = inventory::load(&self.inventory_path)?;
        *held = Some(inv.clone());
        Ok(inv)
    }

    /// Every path, sysctl, unit, user and group `spec` declares or `inventory` holds, as it is
    /// now. Runs `systemctl` once, and only when there are units.
    pub async fn observe(
        &self,
        spec: &HostSpec,
        inventory: &Inventory,
    ) -> Result<ObservedHost, HostError> {
        observe::observe(self, spec, inventory).await
    }

    async fn systemctl_out(&self, args: &[&str]) -> Result<Vec<u8>, HostError> {
        command::tool(&self.systemctl, "systemctl", args, SYSTEMCTL_TIMEOUT).await
    }
}

/// Runs blocking file-system work off the async threads. A panic there is a bug and stays one.
async fn blocking<T, F>(f: F) -> Result<T, HostError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, HostError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(HostError::Io {
            op: "run",
            path: PathBuf::from("a blocking task"),
            source: std::io::Error::other(e),
        }),
    }
}

impl HostDriver for Host {
    async fn record_jobs(&self, table: &crate::model::jobs::JobsSpec) -> Result<(), HostError> {
        let Some(record) = self.jobs_recorder.clone() else {
            return Err(HostError::Jobs {
                message: "this host adapter records no job table".into(),
                transient: false,
            });
        };
        let table = table.clone();
        blocking(move || {
            (record.0)(&table)
                .map_err(|(message, transient)| HostError::Jobs { message, transient })
        })
        .await
    }

    async fn write_file(
        &self,
        path: &Path,
        content: &[u8],
        meta: Meta,
        validate: Option<&str>,
    ) -> Result<(), HostError> {
        let (dest, content, counter) = (path.to_owned(), content.to_vec(), self.temp.clone());
        let staged = blocking(move || fs::stage(&dest, &content, meta, &counter)).await?;
        if let Some(template) = validate {
            // On error `staged` is dropped here, which removes the temp file.
            command::validate(template, staged.temp(), command::VALIDATE_TIMEOUT).await?;
        }
        blocking(move || staged.commit()).await
    }

    async fn remove_file(&self, path: &Path) -> Result<(), HostError> {
        let path = path.to_owned();
        blocking(move || fs::remove_file(&path)).await
    }

    async fn make_dir(&self, path: &Path, meta: Meta) -> Result<(), HostError> {
        let path = path.to_owned();
        blocking(move || fs::make_dir(&path, meta)).await
    }

    async fn set_meta(&self, path: &Path, meta: Meta) -> Result<(), HostError> {
        let path = path.to_owned();
        blocking(move || fs::set_meta(&path, meta)).await
    }

    async fn remove_dir(&self, path: &Path) -> Result<bool, HostError> {
        let path = path.to_owned();
        blocking(move || fs::remove_dir(&path)).await
    }

    async fn write_sysctl(&self, key: &str, value: &str) -> Result<(), HostError> {
        let (root, key, value) = (self.proc_sys.clone(), key.to_owned(), value.to_owned());
        blocking(move || sysctl::write(&root, &key, &value)).await
    }

    async fn systemctl(&self, verb: &str, units: &[&str]) -> Result<(), HostError> {
        let mut args = vec![verb];
        if !units.is_empty() {
            args.push("--");
            args.extend_from_slice(units);
        }
        self.systemctl_out(&args).await.map(drop)
    }

    async fn daemon_reload(&self) -> Result<(), HostError> {
        self.reloads
            .run(|| self.systemctl("daemon-reload", &[]))
            .await
    }

    async fn unit_state(&self, unit: &str) -> Result<String, HostError> {
        let out = self
            .systemctl_out(&["show", "--property=ActiveState", "--value", "--", unit])
            .await?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    async fn journal(&self, unit: &str, lines: usize) -> Result<String, HostError> {
        let (unit, lines) = (format!("--unit={unit}"), lines.to_string());
        let args = ["--no-pager", "--output=cat", "--lines", &lines, &unit];
        let out = command::tool(&self.journalctl, "journalctl", &args, SYSTEMCTL_TIMEOUT).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    async fn firewall(
        &self,
        change: &crate::plan::FirewallPayload,
        remove: bool,
        confirm: &crate::apply::FirewallConfirm,
    ) -> Result<crate::plan::FirewallApplied, HostError> {
        self.apply_firewall(change, remove, confirm).await
    }

    async fn record(&self, addr: &str, entry: Option<&Entry>) -> Result<(), HostError> {
        let (held, path, counter) = (
            self.inventory.clone(),
            self.inventory_path.clone(),
            self.temp.clone(),
        );
        let (addr, entry) = (addr.to_owned(), entry.cloned());
        blocking(move || {
            // Held across the save: records are saved one at a time, each on top of the last.
            let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
            let mut next = match &*held {
                Some(inv) => inv.clone(),
                None => inventory::load(&path)?,
            };
            match entry {
                Some(e) => next.entries.insert(addr, e),
                None => next.entries.remove(&addr),
            };
            inventory::save(&path, &next, &counter)?;
            *held = Some(next);
            Ok(())
        })
        .await
    }
}
