//! The confirmed firewall at boot: after a change is confirmed, the script berth loaded (without
//! Fail2Ban's ban elements: fail2ban re-bans from its own database when it starts, and a
//! timeout written into a file would restart at every boot) is kept atomically as
//! `<state dir>/firewall-<instance>.nft`, and the unit `berth-firewall-<instance>.service`
//! (`Type=oneshot`, `DefaultDependencies=no`, `Before=network-pre.target docker.service`,
//! `WantedBy=sysinit.target`) loads it with `nft -f` early at boot, so table `inet berth` is
//! back before Docker starts containers with `restart:` policies. The script only replaces
//! `inet berth` (never `flush ruleset`, never Debian's /etc/nftables.conf).
//!
//! Both are part of the Firewall's inventory entry: removing the Firewall disables and removes
//! the unit and removes the file. [`Host::firewall_boot_problem`] tells the planner when either
//! is missing or different (drift, repaired by applying the Firewall again).

use std::path::{Path, PathBuf};

use super::{Host, HostError, blocking, fs};
use crate::apply::HostDriver;

/// The boot unit's name.
pub(crate) fn unit_name(instance: &str) -> String {
    format!("berth-firewall-{instance}.service")
}

/// The boot unit's text: `nft` and the script by absolute path.
pub(crate) fn render_unit(instance: &str, nft: &Path, script: &Path) -> String {
    let (nft, script) = (nft.display(), script.display());
    format!(
        "# Written by berth (instance {instance}): the confirmed firewall, loaded at boot.\n\
         # Removed when the Firewall document is; do not edit (berth puts it back).\n\
         [Unit]\n\
         Description=berth firewall (table inet berth, instance {instance})\n\
         DefaultDependencies=no\n\
         Wants=network-pre.target\n\
         Before=network-pre.target docker.service containerd.service shutdown.target\n\
         Conflicts=shutdown.target\n\
         RequiresMountsFor={script}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         StandardInput=null\n\
         ExecStart={nft} -f {script}\n\
         \n\
         [Install]\n\
         WantedBy=sysinit.target\n"
    )
}

/// `nft` by absolute path: as configured when absolute, else the first on `PATH`, else
/// Debian's `/usr/sbin/nft` (a unit at boot has no `PATH` to look it up in).
fn absolute(tool: &Path) -> PathBuf {
    if tool.is_absolute() {
        return tool.to_path_buf();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nft"))
}

impl Host {
    fn boot_unit_path(&self, instance: &str) -> PathBuf {
        self.unit_dir.join(unit_name(instance))
    }

    fn boot_unit_text(&self, instance: &str, script: &Path) -> String {
        render_unit(instance, &absolute(&self.nft), script)
    }

    /// Persists a confirmed ruleset (`Some(script)`) for boot, or forgets it (`None`: the
    /// Firewall was removed). The script file is written before the unit exists, and goes
    /// after it is disabled.
    pub(super) async fn persist_firewall(
        &self,
        instance: &str,
        script_path: &Path,
        script: Option<String>,
    ) -> Result<(), HostError> {
        let unit_path = self.boot_unit_path(instance);
        let name = unit_name(instance);
        match script {
            Some(text) => {
                self.write_own(script_path, text.into_bytes(), 0o600)
                    .await?;
                let want = self.boot_unit_text(instance, script_path);
                let now = std::fs::read_to_string(&unit_path).ok();
                if now.as_deref() != Some(want.as_str()) {
                    self.write_own(&unit_path, want.into_bytes(), 0o644).await?;
                    self.daemon_reload().await?;
                }
                if self.unit_file_state(&name).await? != "enabled" {
                    // Enabled, not started: starting it would load the file again and drop
                    // the live bans.
                    self.systemctl("enable", &[&name]).await?;
                }
                Ok(())
            }
            None => {
                if unit_path.exists() {
                    self.systemctl("disable", &[&name]).await?;
                    let p = unit_path.clone();
                    blocking(move || fs::remove_file(&p)).await?;
                    self.daemon_reload().await?;
                }
                let p = script_path.to_path_buf();
                blocking(move || match std::fs::remove_file(&p) {
                    Ok(()) => fs::sync_parent(&p),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(source) => Err(HostError::Io {
                        op: "remove",
                        path: p,
                        source,
                    }),
                })
                .await
            }
        }
    }

    /// Why the ruleset in `script_path` would not be loaded at boot; `None`: it would, or
    /// there is none (berth has no confirmed firewall).
    pub(super) async fn firewall_boot_problem(
        &self,
        instance: &str,
        script_path: &Path,
    ) -> Option<String> {
        let unit_path = self.boot_unit_path(instance);
        let name = unit_name(instance);
        if !script_path.exists() {
            return unit_path
                .exists()
                .then(|| format!("{} has no script to load", unit_path.display()));
        }
        let want = self.boot_unit_text(instance, script_path);
        match std::fs::read_to_string(&unit_path) {
            Ok(now) if now == want => {}
            Ok(_) => return Some(format!("{} was changed on the host", unit_path.display())),
            Err(_) => {
                return Some(format!(
                    "{} is missing, so the table would not come back at boot",
                    unit_path.display()
                ));
            }
        }
        match self.unit_file_state(&name).await {
            Ok(s) if s == "enabled" => None,
            Ok(s) => Some(format!(
                "{name} is {}, so the table would not come back at boot",
                if s.is_empty() { "unknown" } else { &s }
            )),
            Err(e) => Some(format!("cannot ask systemd about {name}: {e}")),
        }
    }

    async fn unit_file_state(&self, unit: &str) -> Result<String, HostError> {
        let out = self
            .systemctl_out(&["show", "--property=UnitFileState", "--value", "--", unit])
            .await?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// An atomic write of one of berth's own files (temp beside it, fsync, rename, fsync).
    async fn write_own(&self, path: &Path, content: Vec<u8>, mode: u32) -> Result<(), HostError> {
        let (path, counter) = (path.to_path_buf(), self.temp.clone());
        blocking(move || fs::stage_unchecked(&path, &content, mode, None, &counter)?.commit()).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{host, script};
    use super::*;

    #[test]
    fn the_unit_loads_the_script_before_docker_early_at_boot() {
        let u = render_unit(
            "prod",
            Path::new("/usr/sbin/nft"),
            Path::new("/var/lib/berth/firewall-prod.nft"),
        );
        for line in [
            "DefaultDependencies=no",
            "Wants=network-pre.target",
            "Before=network-pre.target docker.service containerd.service shutdown.target",
            "RequiresMountsFor=/var/lib/berth/firewall-prod.nft",
            "Type=oneshot",
            "RemainAfterExit=yes",
            "ExecStart=/usr/sbin/nft -f /var/lib/berth/firewall-prod.nft",
            "WantedBy=sysinit.target",
        ] {
            assert!(u.lines().any(|l| l == line), "{line} missing:\n{u}");
        }
        assert!(!u.contains("flush") && !u.contains("ExecStop"), "{u}");
        assert_eq!(unit_name("prod"), "berth-firewall-prod.service");
    }

    #[tokio::test]
    async fn persists_enables_and_removes() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("log");
        let enabled = t.path().join("enabled");
        let mut h = host(t.path());
        h.unit_dir = t.path().join("units");
        std::fs::create_dir(&h.unit_dir).unwrap();
        h.nft = PathBuf::from("/usr/sbin/nft");
        h.systemctl = script(
            t.path(),
            "systemctl",
            &format!(
                "echo \"$@\" >> '{log}'\ncase \"$1\" in\n  enable) touch '{en}';;\n  disable) rm -f '{en}';;\n  show) if [ -e '{en}' ]; then echo enabled; else echo disabled; fi;;\nesac",
                log = log.display(),
                en = enabled.display()
            ),
        );
        let file = t.path().join("firewall-test.nft");
        assert_eq!(h.firewall_boot_problem("test", &file).await, None);
        h.persist_firewall("test", &file, Some("table inet berth {}\n".into()))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "table inet berth {}\n"
        );
        let unit = h.unit_dir.join("berth-firewall-test.service");
        assert!(
            std::fs::read_to_string(&unit)
                .unwrap()
                .contains(&format!("ExecStart=/usr/sbin/nft -f {}", file.display()))
        );
        assert_eq!(h.firewall_boot_problem("test", &file).await, None);
        // The same again: no reload, no enable.
        h.persist_firewall("test", &file, Some("table inet berth {}\n".into()))
            .await
            .unwrap();
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(calls.matches("daemon-reload").count(), 1, "{calls}");
        assert_eq!(calls.matches("enable --").count(), 1, "{calls}");
        // Drift: disabled by hand, the unit edited.
        std::fs::remove_file(&enabled).unwrap();
        assert!(
            h.firewall_boot_problem("test", &file)
                .await
                .unwrap()
                .contains("is disabled")
        );
        std::fs::write(&unit, "[Unit]\n").unwrap();
        assert!(
            h.firewall_boot_problem("test", &file)
                .await
                .unwrap()
                .contains("changed on the host")
        );
        h.persist_firewall("test", &file, Some("table inet berth {}\n".into()))
            .await
            .unwrap();
        assert_eq!(h.firewall_boot_problem("test", &file).await, None);
        // Removal: disabled, then both files gone.
        h.persist_firewall("test", &file, None).await.unwrap();
        assert!(!unit.exists() && !file.exists() && !enabled.exists());
        assert_eq!(h.firewall_boot_problem("test", &file).await, None);
        let calls = std::fs::read_to_string(&log).unwrap();
        assert!(
            calls.contains("disable -- berth-firewall-test.service"),
            "{calls}"
        );
    }
}
