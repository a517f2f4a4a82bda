//! Host changes: files, directories, sysctls and units, each applied whole or put back.
//!
//! Every change records its inventory entry *before* it acts (a crash then leaves a record of
//! an object that may not exist yet, which the next plan creates again — never an object
//! berth made without a record), and forgets it only after a removal succeeded. When a step
//! fails after something was written, the previous files are put back, the unit's previous
//! version restarted, and the record restored: a half-applied host change never stays.

use std::time::Duration;

use super::{ApplyEvent, Driver, Exec, HostDriver, StepError};
use crate::host::HostError;
use crate::model::host::{Meta, sysctl_conf_path, unit_path};
use crate::plan::{
    AfterChange, Change, DirPayload, FilePayload, Op, Payload, Record, SysctlPayload, UnitPayload,
    UnitVerb,
};

/// Journal lines in a failure report.
const JOURNAL_LINES: usize = 20;

/// Unit files and persisted sysctls: root's, world-readable.
const SYSTEM_FILE: Meta = Meta {
    mode: 0o644,
    uid: 0,
    gid: 0,
};

impl<D: Driver, H: HostDriver> Exec<'_, D, H> {
    /// The one entry for host kinds: carries the change out, or puts back what it changed.
    pub(super) async fn host(&self, c: &Change) -> Result<(), StepError> {
        let addr = c.addr.to_string();
        let secret = matches!(&c.payload, Payload::File(f) if f.secret);
        let fail = |e: HostError, restored: Option<String>| {
            let mut message = if secret {
                hide_output(&e)
            } else {
                e.to_string()
            };
            if let Some(r) = restored {
                message.push_str(&format!("; {r}"));
            }
            StepError::Host {
                addr: c.addr.clone(),
                transient: e.is_transient(),
                message,
            }
        };
        let record = match &c.payload {
            Payload::File(p) => &p.record,
            Payload::Directory(p) => &p.record,
            Payload::Sysctl(p) => &p.record,
            Payload::Unit(p) => &p.record,
            _ => return Ok(()),
        };
        if record.after.is_some() && record.after != record.before {
            self.host
                .record(&addr, record.after.as_ref())
                .await
                .map_err(|e| fail(e, None))?;
        }
        let done = match &c.payload {
            Payload::File(p) => self.file(c.op, &addr, p).await,
            Payload::Directory(p) => self.dir(c.op, &addr, p).await,
            Payload::Sysctl(p) => self.sysctl(c.op, &addr, p).await,
            Payload::Unit(p) => self.unit(c.op, &addr, p).await,
            _ => Ok(()),
        };
        match done {
            Ok(()) => {
                if record.after.is_none() {
                    self.host
                        .record(&addr, None)
                        .await
                        .map_err(|e| fail(e, None))?;
                }
                Ok(())
            }
            Err(Failed {
                error,
                restored,
                reverted,
            }) => {
                if reverted {
                    self.put_back_record(&addr, record).await;
                }
                Err(fail(error, restored))
            }
        }
    }

    async fn put_back_record(&self, addr: &str, record: &Record) {
        if record.after.is_some()
            && record.after != record.before
            && let Err(e) = self.host.record(addr, record.before.as_ref()).await
        {
            self.emit(ApplyEvent::Warning {
                message: format!("{addr}: cannot put the inventory record back: {e}"),
            });
        }
    }

    fn did(&self, addr: &str, did: impl Into<String>) {
        self.emit(ApplyEvent::Host {
            addr: addr.to_string(),
            did: did.into(),
        });
    }

    async fn file(&self, op: Op, addr: &str, p: &FilePayload) -> Result<(), Failed> {
        let h = self.host;
        if op == Op::Delete {
            match &p.to {
                Some(orig) => {
                    h.write_file(&p.path, &orig.content.data, orig.meta, None)
                        .await?;
                    self.did(addr, "put the original back");
                }
                None => {
                    h.remove_file(&p.path).await?;
                    self.did(addr, "removed");
                }
            }
            return Ok(());
        }
        let Some(to) = &p.to else { return Ok(()) };
        // A failed validate replaces nothing: the error says so.
        h.write_file(&p.path, &to.content.data, to.meta, p.validate.as_deref())
            .await?;
        self.did(addr, format!("wrote (mode {:04o})", to.meta.mode));
        let Some(after) = &p.after else {
            return Ok(());
        };
        let Err(error) = self.after_change(addr, after).await else {
            return Ok(());
        };
        // Put the previous file back and run the action again, so the previous version runs.
        let put_back = match &p.from {
            Some(from) => {
                h.write_file(&p.path, &from.content.data, from.meta, None)
                    .await
            }
            None => h.remove_file(&p.path).await,
        };
        let (restored, reverted) = match put_back {
            Ok(()) => match self.after_change(addr, after).await {
                Ok(()) => (
                    "put the previous file back; the previous version runs".to_string(),
                    true,
                ),
                Err(e) => (
                    format!(
                        "put the previous file back, but the previous version did not come back either: {e}"
                    ),
                    true,
                ),
            },
            Err(e) => (format!("could not put the previous file back: {e}"), false),
        };
        self.emit(ApplyEvent::HostReverted {
            addr: addr.to_string(),
            detail: restored.clone(),
        });
        Err(Failed {
            error,
            restored: Some(restored),
            reverted,
        })
    }

    /// `on_change`: reload or restart a unit (which must then stay active), or restart a
    /// service's containers.
    async fn after_change(&self, addr: &str, after: &AfterChange) -> Result<(), HostError> {
        match after {
            AfterChange::Unit { verb, unit } => {
                self.run_unit(unit, *verb).await?;
                self.did(addr, format!("{} {unit}", past(*verb)));
            }
            AfterChange::Containers { names, .. } => {
                for name in names {
                    let docker = |e: crate::docker::DockerError| HostError::Command {
                        command: format!("restart container {name}"),
                        status: "failed".into(),
                        output: e.to_string(),
                    };
                    self.driver.stop(name, None).await.map_err(docker)?;
                    self.driver.start(name).await.map_err(docker)?;
                    self.did(addr, format!("restarted container {name}"));
                }
            }
        }
        Ok(())
    }

    /// `systemctl VERB UNIT`; after a start, restart or reload the unit must stay active for
    /// the settle time.
    async fn run_unit(&self, unit: &str, verb: UnitVerb) -> Result<(), HostError> {
        let started = self.host.systemctl(verb.as_str(), &[unit]).await;
        if verb == UnitVerb::Stop {
            return started;
        }
        let settled = match started {
            Ok(()) => self.settle(unit).await,
            Err(e) => Err(e),
        };
        match settled {
            Ok(()) => Ok(()),
            Err(HostError::UnitFailed { .. }) | Err(HostError::Command { .. }) => {
                let state = self
                    .host
                    .unit_state(unit)
                    .await
                    .unwrap_or_else(|e| format!("unknown: {e}"));
                let journal = self
                    .host
                    .journal(unit, JOURNAL_LINES)
                    .await
                    .unwrap_or_else(|e| format!("(journal not readable: {e})"));
                Err(HostError::UnitFailed {
                    unit: unit.to_string(),
                    verb: verb.as_str().to_string(),
                    state,
                    journal,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Polls the unit's state until it has been active for the settle time.
    async fn settle(&self, unit: &str) -> Result<(), HostError> {
        let settle = self.opts.unit_settle;
        let step = self
            .opts
            .poll_interval
            .min(Duration::from_millis(200))
            .max(Duration::from_millis(10));
        let start = tokio::time::Instant::now();
        loop {
            let state = self.host.unit_state(unit).await?;
            match state.as_str() {
                "active" | "reloading" | "activating" | "deactivating" => {}
                other => {
                    return Err(HostError::UnitFailed {
                        unit: unit.to_string(),
                        verb: "start".into(),
                        state: other.to_string(),
                        journal: String::new(),
                    });
                }
            }
            if start.elapsed() >= settle {
                return if state == "active" {
                    Ok(())
                } else {
                    Err(HostError::UnitFailed {
                        unit: unit.to_string(),
                        verb: "start".into(),
                        state,
                        journal: String::new(),
                    })
                };
            }
            tokio::time::sleep(step).await;
        }
    }

    async fn dir(&self, op: Op, addr: &str, p: &DirPayload) -> Result<(), Failed> {
        let h = self.host;
        match (op, p.meta) {
            (Op::Delete, Some(meta)) if p.adopted => {
                h.set_meta(&p.path, meta).await?;
                self.did(addr, "put the original mode and owner back (kept)");
            }
            (Op::Delete, _) => {
                if h.remove_dir(&p.path).await? {
                    self.did(addr, "removed");
                } else {
                    self.emit(ApplyEvent::Warning {
                        message: format!(
                            "{addr}: not removed: it is not empty (berth never deletes what it did not write); dropped from the inventory"
                        ),
                    });
                }
            }
            (_, Some(meta)) => {
                h.make_dir(&p.path, meta).await?;
                self.did(addr, format!("made (mode {:04o})", meta.mode));
            }
            (_, None) => {}
        }
        Ok(())
    }

    async fn sysctl(&self, op: Op, addr: &str, p: &SysctlPayload) -> Result<(), Failed> {
        let h = self.host;
        h.write_sysctl(&p.key, &p.value).await?;
        let conf = sysctl_conf_path(&p.key);
        let persisted = match &p.conf {
            Some(text) => {
                h.write_file(&conf, text.as_bytes(), SYSTEM_FILE, None)
                    .await
            }
            None => h.remove_file(&conf).await,
        };
        if let Err(error) = persisted {
            // The value alone must not stay: put the one there was back.
            let (restored, reverted) = match h.write_sysctl(&p.key, &p.from).await {
                Ok(()) => (format!("put the previous value {} back", p.from), true),
                Err(e) => (format!("could not put the previous value back: {e}"), false),
            };
            return Err(Failed {
                error,
                restored: Some(restored),
                reverted,
            });
        }
        self.did(
            addr,
            if op == Op::Delete {
                format!(
                    "put the previous value back: {}",
                    p.value.replace('\t', " ")
                )
            } else {
                format!("set to {}", p.value.replace('\t', " "))
            },
        );
        Ok(())
    }

    async fn unit(&self, op: Op, addr: &str, p: &UnitPayload) -> Result<(), Failed> {
        let h = self.host;
        let name = p.name.as_str();
        // A unit that goes: stop and disable it while its file is still there.
        let removing = p.files.get(&unit_path(name)).is_some_and(Option::is_none);
        if removing {
            if p.run == Some(UnitVerb::Stop) {
                h.systemctl("stop", &[name]).await?;
                self.did(addr, "stopped");
            }
            if p.enable == Some(false) {
                h.systemctl("disable", &[name]).await?;
                self.did(addr, "disabled");
            }
        }
        match self.unit_files(addr, p, removing).await {
            Ok(()) => Ok(()),
            Err(error) if op == Op::Delete => Err(Failed {
                error,
                restored: None,
                reverted: false,
            }),
            Err(error) => {
                let (restored, reverted) = self.unit_put_back(addr, p).await;
                Err(Failed {
                    error,
                    restored: Some(restored),
                    reverted,
                })
            }
        }
    }

    /// Files, daemon-reload, enablement, run state.
    async fn unit_files(
        &self,
        addr: &str,
        p: &UnitPayload,
        removing: bool,
    ) -> Result<(), HostError> {
        let h = self.host;
        let name = p.name.as_str();
        write_files(h, &p.files).await?;
        if !p.files.is_empty() {
            h.daemon_reload().await?;
            self.did(addr, "wrote unit files, daemon-reload");
        }
        if removing {
            return Ok(());
        }
        match p.enable {
            Some(true) => {
                h.systemctl("enable", &[name]).await?;
                self.did(addr, "enabled");
            }
            Some(false) => {
                h.systemctl("disable", &[name]).await?;
                self.did(addr, "disabled");
            }
            None => {}
        }
        if let Some(verb) = p.run {
            self.run_unit(name, verb).await?;
            self.did(addr, past(verb));
        }
        Ok(())
    }

    /// After a failed unit change: the previous files, daemon-reload, the previous
    /// enablement, and the previous version running again (or stopped, as it was).
    async fn unit_put_back(&self, addr: &str, p: &UnitPayload) -> (String, bool) {
        let h = self.host;
        let name = p.name.as_str();
        let mut problems: Vec<String> = Vec::new();
        // A unit that did not exist before: stop and disable it while its file is still there
        // (systemd cannot disable a unit whose file is gone), then remove the file.
        let created = p.from.get(&unit_path(name)).is_some_and(Option::is_none);
        if created {
            for verb in ["stop", "disable"] {
                if let Err(e) = h.systemctl(verb, &[name]).await {
                    problems.push(format!("{verb}: {e}"));
                }
            }
        }
        if let Err(e) = write_files(h, &p.from).await {
            problems.push(format!("previous unit files: {e}"));
        }
        if !p.from.is_empty()
            && let Err(e) = h.daemon_reload().await
        {
            problems.push(format!("daemon-reload: {e}"));
        }
        if created {
            // Gone again, as it was.
        } else {
            if p.enable.is_some() {
                let verb = if p.was_enabled { "enable" } else { "disable" };
                if let Err(e) = h.systemctl(verb, &[name]).await {
                    problems.push(format!("{verb}: {e}"));
                }
            }
            // Restart only what changed files or run state; a failed enable alone leaves the
            // running service alone.
            let back = match (p.was_active, !p.from.is_empty() || p.run.is_some()) {
                (true, true) => self.run_unit(name, UnitVerb::Restart).await,
                (true, false) => Ok(()),
                (false, _) => h.systemctl("stop", &[name]).await,
            };
            if let Err(e) = back {
                problems.push(e.to_string());
            }
        }
        let detail = if problems.is_empty() {
            if p.was_active {
                "put the previous unit files back; the previous version runs again".to_string()
            } else {
                "put the previous unit files back; it is stopped, as it was".to_string()
            }
        } else {
            format!(
                "putting the previous version back failed too: {}",
                problems.join("; ")
            )
        };
        self.emit(ApplyEvent::HostReverted {
            addr: addr.to_string(),
            detail: detail.clone(),
        });
        (detail, problems.is_empty())
    }
}

/// A host step that failed, and what was put back.
struct Failed {
    error: HostError,
    restored: Option<String>,
    /// Everything the change did was put back: the inventory record may go back too. When
    /// not, the record keeps saying berth made (or took over) what is still there.
    reverted: bool,
}

impl From<HostError> for Failed {
    fn from(error: HostError) -> Failed {
        Failed {
            error,
            restored: None,
            reverted: true,
        }
    }
}

async fn write_files<H: HostDriver>(
    h: &H,
    files: &std::collections::BTreeMap<std::path::PathBuf, Option<String>>,
) -> Result<(), HostError> {
    for (path, text) in files {
        match text {
            Some(t) => {
                if let Some(parent) = path.parent()
                    && parent.extension().is_some_and(|e| e == "d")
                {
                    h.make_dir(
                        parent,
                        Meta {
                            mode: 0o755,
                            ..SYSTEM_FILE
                        },
                    )
                    .await?;
                }
                h.write_file(path, t.as_bytes(), SYSTEM_FILE, None).await?;
            }
            None => {
                h.remove_file(path).await?;
                if let Some(parent) = path.parent()
                    && parent.extension().is_some_and(|e| e == "d")
                {
                    // An empty drop-in folder berth made goes with its last file.
                    let _ = h.remove_dir(parent).await;
                }
            }
        }
    }
    Ok(())
}

fn past(verb: UnitVerb) -> &'static str {
    match verb {
        UnitVerb::Start => "started",
        UnitVerb::Stop => "stopped",
        UnitVerb::Restart => "restarted",
        UnitVerb::Reload => "reloaded",
    }
}

/// A secret file's validate output may quote it: say only that it failed.
fn hide_output(e: &HostError) -> String {
    match e {
        HostError::Validate {
            command, status, ..
        } => format!(
            "validate `{command}` refused the new file ({status}); its output is not shown (secret file); nothing was replaced"
        ),
        HostError::UnitFailed {
            unit, verb, state, ..
        } => format!(
            "{unit} did not stay active after {verb} (now {state}); its journal is not shown (the change was to a secret file)"
        ),
        other => other.to_string(),
    }
}
