//! The firewall on the host, nftables backend: berth's one table `inet berth`, read with
//! `nft -j list table inet berth` and replaced with `nft -f` (one transaction; no other table
//! is ever flushed or touched).
//!
//! A change is *commit-confirmed*: before it, the previous ruleset (berth's last script, or
//! "no table") is written to the state dir and a transient systemd timer
//! (`berth-firewall-rollback-<instance>`, `systemd-run --on-active=<confirm_timeout>`) is armed
//! to load it, so the host goes back even when berth dies; then the new table is loaded, and
//! confirmed: every port sshd listens on (`ss -Htlnp`) is allowed from somewhere by the new
//! rules, berth's own HTTP port answers locally, the git remote answers a ref listing (through
//! the git layer, bounded; a local `file://` remote is not checked).
//! On success the timer is stopped; on failure the previous ruleset is loaded at once.
//!
//! Fail2Ban's bans (elements of `banned4`/`banned6`) are read before a replace and re-added in
//! the same transaction with their remaining timeouts; they are not part of the drift digest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::command::{RunError, output_tail, run};
use super::{Host, HostError, blocking};
use crate::apply::FirewallConfirm;
use crate::model::edge::{BAN_SETS, ObservedFirewall};
use crate::plan::{FirewallApplied, FirewallPayload};

const NFT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REMOTE_TIMEOUT: Duration = Duration::from_secs(20);

fn unit(instance: &str) -> String {
    format!("berth-firewall-rollback-{instance}")
}

impl Host {
    fn state_dir(&self) -> PathBuf {
        self.inventory_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    fn instance(&self) -> String {
        self.inventory_path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("inventory-"))
            .unwrap_or("default")
            .to_string()
    }

    /// `nft -j list table inet berth`: `Ok(None)` when there is no such table.
    async fn nft_table(&self) -> Result<Option<Value>, HostError> {
        let args = ["-j", "list", "table", "inet", "berth"];
        match run(&self.nft, &args, NFT_TIMEOUT).await {
            Ok(out) if out.status.success() => serde_json::from_slice(&out.stdout)
                .map(Some)
                .map_err(|e| HostError::Firewall {
                    message: format!("`nft -j list table inet berth` printed no JSON: {e}"),
                }),
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr);
                if err.contains("No such file or directory") || err.contains("does not exist") {
                    Ok(None)
                } else {
                    Err(HostError::Command {
                        command: "nft -j list table inet berth".into(),
                        status: out.status.to_string(),
                        output: output_tail(&out.stderr),
                    })
                }
            }
            Err(e) => Err(run_error("nft -j list table inet berth", e)),
        }
    }

    /// The firewall as the planner sees it.
    pub async fn observe_firewall(&self) -> ObservedFirewall {
        let firewalld_running = matches!(
            run(Path::new("firewall-cmd"), &["--state"], NFT_TIMEOUT).await,
            Ok(out) if out.status.success()
        );
        let zone = if firewalld_running {
            super::firewalld::read_zone().await.ok()
        } else {
            None
        };
        let applied = self
            .state_dir()
            .join(format!("firewall-{}.nft", self.instance()));
        let boot = self.firewall_boot_problem(&self.instance(), &applied).await;
        match self.nft_table().await {
            Ok(t) => ObservedFirewall {
                table: t.as_ref().map(digest),
                firewalld_running,
                error: None,
                zone,
                boot,
            },
            Err(e) => ObservedFirewall {
                table: None,
                firewalld_running,
                error: Some(e.to_string()),
                zone,
                boot,
            },
        }
    }

    /// Carries out a firewall change (`remove`: the table goes); returns the live table's
    /// digest afterwards (`None` when it was removed).
    pub(super) async fn apply_firewall(
        &self,
        p: &FirewallPayload,
        remove: bool,
        confirm: &FirewallConfirm,
    ) -> Result<FirewallApplied, HostError> {
        use super::firewalld;
        let dir = self.state_dir();
        // firewalld: what to change in the zone, and how to undo it.
        // The zone as it was before berth is in the inventory already (the planner's record,
        // written before this runs); the host only carries the change out.
        let (zone_cmds, zone_record, zone_undo) = match (&p.zone, &p.zone_record, remove) {
            (Some(want), rec, false) => {
                let now = firewalld::read_zone().await?;
                let (c, u) = firewalld::diff(want, &now);
                (c, rec.clone(), u)
            }
            (_, Some(rec), true) => {
                let now = firewalld::read_zone().await?;
                (firewalld::removal(rec, &now), None, Vec::new())
            }
            _ => (Vec::new(), None, Vec::new()),
        };
        let instance = self.instance();
        let current = self.nft_table().await?;
        let bans = current.as_ref().map(ban_lines).unwrap_or_default();
        let applied_path = dir.join(format!("firewall-{instance}.nft"));
        let rollback_path = dir.join(format!("firewall-rollback-{instance}.nft"));
        let new_path = dir.join(format!("firewall-{instance}.nft.new"));
        let previous = match (&current, std::fs::read_to_string(&applied_path)) {
            (Some(_), Ok(s)) => s,
            _ => crate::model::edge::nft_delete_script(),
        };
        let rollback = format!("{previous}{bans}");
        let next = if remove {
            p.script.clone()
        } else {
            format!("{}{bans}", p.script)
        };
        {
            let (rb, rbp, nx, nxp) = (
                rollback.clone(),
                rollback_path.clone(),
                next,
                new_path.clone(),
            );
            blocking(move || {
                write(&rbp, &rb)?;
                write(&nxp, &nx)
            })
            .await?;
        }
        let unit = unit(&instance);
        let armed = !remove;
        if armed {
            // A timer left by a berth that died mid-apply would undo this change later.
            self.disarm(&unit).await;
            let on = format!("--on-active={}s", p.confirm_timeout.max(1));
            let rb = rollback_path.to_string_lossy().into_owned();
            let nft = self.nft.to_string_lossy().into_owned();
            let sh_path = dir.join(format!("firewall-rollback-{instance}.sh"));
            let sh = sh_path.to_string_lossy().into_owned();
            if !zone_undo.is_empty() {
                let text = format!(
                    "#!/bin/sh\n# berth: the firewall before the last unconfirmed change.\n{} -f {}\n{}",
                    shlex::try_quote(&nft).unwrap_or_default(),
                    shlex::try_quote(&rb).unwrap_or_default(),
                    firewalld::script(&zone_undo)
                );
                let path = sh_path.clone();
                blocking(move || write(&path, &text)).await?;
            }
            let command: Vec<&str> = if zone_undo.is_empty() {
                vec![nft.as_str(), "-f", rb.as_str()]
            } else {
                vec!["/bin/sh", sh.as_str()]
            };
            let unit_arg = format!("--unit={unit}");
            let mut args = vec![
                "--quiet",
                "--collect",
                unit_arg.as_str(),
                &on,
                "--timer-property=AccuracySec=100ms",
            ];
            args.extend(command);
            super::command::tool(Path::new("systemd-run"), "systemd-run", &args, NFT_TIMEOUT)
                .await
                .map_err(|e| HostError::Firewall {
                    message: format!(
                        "cannot arm the rollback timer, so the firewall was not changed: {e}"
                    ),
                })?;
        }
        if let Err(e) = self.nft_load(&new_path).await {
            if armed {
                self.disarm(&unit).await;
            }
            return Err(e);
        }
        // Always with a reload: it also brings back runtime rules that only the runtime lost.
        let zoned = p.zone.is_some() || (remove && p.zone_record.is_some());
        if zoned && let Err(e) = firewalld::run_all(&zone_cmds).await {
            let _ = firewalld::run_all(&zone_undo).await;
            let _ = self.nft_load(&rollback_path).await;
            if armed {
                self.disarm(&unit).await;
            }
            return Err(HostError::Firewall {
                message: format!(
                    "firewalld refused the zone change ({e}); the previous ruleset was restored"
                ),
            });
        }
        // The checks must finish before the timer fires, or a success could be reported (and
        // recorded) for rules the timer has just taken back: they get the timeout minus a margin.
        let checked = if armed {
            confirm_within(p, confirm).await
        } else {
            Ok(())
        };
        if let Err(why) = checked {
            let zone_back = if zone_undo.is_empty() {
                Ok(())
            } else {
                firewalld::run_all(&zone_undo).await
            };
            let restored = self.nft_load(&rollback_path).await.and(zone_back);
            self.disarm(&unit).await;
            let back = match restored {
                Ok(()) => "the previous ruleset was restored".to_string(),
                Err(e) => format!(
                    "restoring the previous ruleset failed ({e}); the rollback timer was stopped"
                ),
            };
            return Err(HostError::Firewall {
                message: format!("the new firewall was not confirmed: {why}; {back}"),
            });
        }
        if armed {
            self.disarm(&unit).await;
        }
        // Confirmed (or removed): the boot copy and its unit follow (firewall_boot.rs).
        let loaded = if remove {
            None
        } else {
            let np = new_path.clone();
            Some(blocking(move || read(&np)).await.map(|s| strip_bans(&s))?)
        };
        self.persist_firewall(&instance, &applied_path, loaded)
            .await
            .map_err(|e| HostError::Firewall {
                message: format!(
                    "the new firewall is live, but it is not kept for boot ({e}); the next apply tries again"
                ),
            })?;
        let np = new_path;
        let _ = blocking(move || {
            let _ = std::fs::remove_file(&np);
            Ok(())
        })
        .await;
        Ok(FirewallApplied {
            live: self.nft_table().await?.as_ref().map(digest),
            zone: zone_record,
        })
    }

    async fn nft_load(&self, script: &Path) -> Result<(), HostError> {
        let s = script.to_string_lossy().into_owned();
        super::command::tool(&self.nft, "nft", &["-f", &s], NFT_TIMEOUT)
            .await
            .map(drop)
    }

    /// Stops the rollback timer (and forgets its service); one that is not there is fine.
    async fn disarm(&self, unit: &str) {
        let timer = format!("{unit}.timer");
        let _ = run(&self.systemctl, &["stop", &timer], NFT_TIMEOUT).await;
        let service = format!("{unit}.service");
        let _ = run(
            &self.systemctl,
            &["reset-failed", &timer, &service],
            NFT_TIMEOUT,
        )
        .await;
    }
}

fn run_error(command: &str, e: RunError) -> HostError {
    match e {
        RunError::Timeout => HostError::Timeout {
            command: command.into(),
            seconds: NFT_TIMEOUT.as_secs(),
        },
        RunError::Spawn(e) | RunError::Wait(e) => HostError::Command {
            command: command.into(),
            status: format!("could not run: {e} (is nftables installed?)"),
            output: String::new(),
        },
    }
}

fn read(path: &Path) -> Result<String, HostError> {
    std::fs::read_to_string(path).map_err(|source| HostError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<(), HostError> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))
        .and_then(|()| {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)?;
            std::io::Write::write_all(&mut f, text.as_bytes())?;
            f.sync_all()
        })
        .map_err(|source| HostError::Io {
            op: "write",
            path: path.to_path_buf(),
            source,
        })
}

/// The script without the re-added bans (what berth keeps as "applied").
fn strip_bans(script: &str) -> String {
    script
        .lines()
        .filter(|l| !l.starts_with("add element inet berth banned"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The drift digest: the table's JSON without handles, metainfo and ban-set elements.
pub(crate) fn digest(table: &Value) -> String {
    let mut items: Vec<Value> = table
        .get("nftables")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    items.retain(|i| i.get("metainfo").is_none());
    for i in &mut items {
        strip_handles(i);
        if let Some(set) = i.get_mut("set").and_then(Value::as_object_mut)
            && set
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| BAN_SETS.contains(&n))
        {
            set.remove("elem");
        }
    }
    let canonical = serde_json::to_vec(&items).unwrap_or_default();
    crate::model::sha256_hex(&canonical)
}

fn strip_handles(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("handle");
            for (_, x) in m.iter_mut() {
                strip_handles(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_handles),
        _ => {}
    }
}

/// `add element` lines that put the live bans back with their remaining time.
pub(crate) fn ban_lines(table: &Value) -> String {
    let mut out = String::new();
    let items = table
        .get("nftables")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for i in items {
        let Some(set) = i.get("set") else { continue };
        let Some(name) = set.get("name").and_then(Value::as_str) else {
            continue;
        };
        if !BAN_SETS.contains(&name) {
            continue;
        }
        for e in set
            .get("elem")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (val, expires) = match e.get("elem") {
                Some(inner) => (
                    inner.get("val").and_then(Value::as_str),
                    inner.get("expires").and_then(Value::as_u64),
                ),
                None => (e.as_str(), None),
            };
            let Some(val) = val else { continue };
            if val.contains(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':')) {
                continue;
            }
            match expires {
                Some(s) if s > 0 => out.push_str(&format!(
                    "add element inet berth {name} {{ {val} timeout {s}s }}\n"
                )),
                Some(_) => {}
                None => out.push_str(&format!("add element inet berth {name} {{ {val} }}\n")),
            }
        }
    }
    out
}

/// Time kept between the end of the confirm checks and the rollback timer.
const CONFIRM_MARGIN: Duration = Duration::from_secs(3);

/// [`check`] within `confirm_timeout` less [`CONFIRM_MARGIN`] (at least 1 s).
async fn confirm_within(p: &FirewallPayload, confirm: &FirewallConfirm) -> Result<(), String> {
    let budget = Duration::from_secs(p.confirm_timeout)
        .saturating_sub(CONFIRM_MARGIN)
        .max(Duration::from_secs(1));
    match tokio::time::timeout(budget, check(p, confirm)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the checks did not finish within {}s, before the {}s confirm timeout",
            budget.as_secs(),
            p.confirm_timeout
        )),
    }
}

/// The confirm checks; `Err` says what failed.
async fn check(p: &FirewallPayload, confirm: &FirewallConfirm) -> Result<(), String> {
    // `allow_no_ssh: true` says no one is meant to reach sshd: nothing to confirm there.
    let ssh = if p.allow_no_ssh {
        Vec::new()
    } else {
        sshd_ports().await?
    };
    for port in ssh {
        if !p.allows_tcp(port) {
            return Err(format!(
                "sshd listens on {port}/tcp and the new rules let no one reach it"
            ));
        }
    }
    if let Some(mut listen) = confirm.listen {
        if listen.ip().is_unspecified() {
            listen.set_ip(if listen.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        connect(&listen.to_string())
            .await
            .map_err(|e| format!("berth's own HTTP port {listen} does not answer: {e}"))?;
    }
    if let Some(remote) = &confirm.remote {
        probe_remote(remote, REMOTE_TIMEOUT).await?;
    }
    Ok(())
}

/// The git remote answers a ref listing within `within` (the git layer has its own deadline;
/// this one keeps the confirmation well inside the rollback timer).
async fn probe_remote(remote: &crate::apply::RemoteProbe, within: Duration) -> Result<(), String> {
    let probe = remote.0.clone();
    match tokio::time::timeout(within, tokio::task::spawn_blocking(move || probe())).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(format!("the git remote does not answer: {e}")),
        Ok(Err(e)) => Err(format!("the git remote check failed: {e}")),
        Err(_) => Err(format!("the git remote does not answer within {within:?}")),
    }
}

/// A remote no firewall stands between (`file://`, a path): the confirm step skips it.
pub(crate) fn remote_is_local(url: &str) -> bool {
    remote_host_port(url).is_none()
}

async fn connect(addr: &str) -> Result<(), String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// The TCP ports sshd listens on, from `ss -Htlnp`.
async fn sshd_ports() -> Result<Vec<u16>, String> {
    let out = run(Path::new("ss"), &["-Htlnp"], NFT_TIMEOUT)
        .await
        .map_err(|e| format!("cannot list listening sockets (`ss -Htlnp`): {e:?}"))?;
    Ok(parse_ss(&String::from_utf8_lossy(&out.stdout)))
}

pub(crate) fn parse_ss(text: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    for line in text.lines().filter(|l| l.contains("\"sshd\"")) {
        let Some(local) = line.split_whitespace().nth(3) else {
            continue;
        };
        if let Some(port) = local.rsplit(':').next().and_then(|p| p.parse().ok())
            && !ports.contains(&port)
        {
            ports.push(port);
        }
    }
    ports.sort_unstable();
    ports
}

/// `host:port` of a git remote (`None`: a local remote, nothing to check).
pub(crate) fn remote_host_port(url: &str) -> Option<String> {
    let (default, rest) = if let Some(r) = url.strip_prefix("https://") {
        (443, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (80, r)
    } else if let Some(r) = url.strip_prefix("ssh://") {
        (22, r)
    } else if let Some(r) = url.strip_prefix("git://") {
        (9418, r)
    } else if url.contains("://") {
        return None;
    } else if let Some((host, _)) = url.split_once(':') {
        // scp-like `git@github.com:org/repo.git`.
        let host = host.rsplit('@').next()?;
        return (!host.is_empty() && !host.contains('/')).then(|| format!("{host}:22"));
    } else {
        return None;
    };
    let authority = rest.split('/').next()?;
    let hostport = authority.rsplit('@').next()?;
    if hostport.is_empty() {
        return None;
    }
    if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !hostport.ends_with(']')
    {
        Some(hostport.to_string())
    } else {
        Some(format!("{hostport}:{default}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sshd_ports_from_ss() {
        let ss = "LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:((\"sshd\",pid=80,fd=3))\n\
                  LISTEN 0      4096       127.0.0.1:8080      0.0.0.0:*    users:((\"berth\",pid=9,fd=7))\n\
                  LISTEN 0      128             [::]:22           [::]:*    users:((\"sshd\",pid=80,fd=4))\n\
                  LISTEN 0      128             [::]:2222         [::]:*    users:((\"sshd\",pid=80,fd=5))\n";
        assert_eq!(parse_ss(ss), [22, 2222]);
    }

    #[test]
    fn remote_hosts() {
        assert_eq!(
            remote_host_port("https://github.com/a/b.git").as_deref(),
            Some("github.com:443")
        );
        assert_eq!(
            remote_host_port("https://x:tok@git.example.org:8443/a").as_deref(),
            Some("git.example.org:8443")
        );
        assert_eq!(
            remote_host_port("git@github.com:a/b.git").as_deref(),
            Some("github.com:22")
        );
        assert_eq!(
            remote_host_port("ssh://git@h.example/a").as_deref(),
            Some("h.example:22")
        );
        assert_eq!(remote_host_port("file:///srv/repo.git"), None);
        assert_eq!(remote_host_port("/srv/repo.git"), None);
    }

    #[test]
    fn digest_ignores_handles_and_bans() {
        let a: Value = serde_json::from_str(r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},{"table":{"family":"inet","name":"berth","handle":2}},{"set":{"family":"inet","name":"banned4","table":"berth","type":"ipv4_addr","handle":4,"flags":["timeout"],"elem":[{"elem":{"val":"1.2.3.4","timeout":600,"expires":599}}]}}]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},{"table":{"family":"inet","name":"berth","handle":7}},{"set":{"family":"inet","name":"banned4","table":"berth","type":"ipv4_addr","handle":9,"flags":["timeout"]}}]}"#).unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert_eq!(
            ban_lines(&a),
            "add element inet berth banned4 { 1.2.3.4 timeout 599s }\n"
        );
        assert_eq!(ban_lines(&b), "");
    }

    #[test]
    fn permanent_bans_are_kept_without_a_timeout() {
        // A permanent ban (Fail2Ban `bantime = -1`): an element without timeout/expires, in
        // either JSON form nft prints.
        let t: Value = serde_json::from_str(r#"{"nftables":[{"set":{"family":"inet","name":"banned4","table":"berth","type":"ipv4_addr","flags":["timeout"],"elem":["5.6.7.8",{"elem":{"val":"9.9.9.9"}},{"elem":{"val":"1.2.3.4","timeout":600,"expires":30}}]}}]}"#).unwrap();
        assert_eq!(
            ban_lines(&t),
            "add element inet berth banned4 { 5.6.7.8 }\n\
             add element inet berth banned4 { 9.9.9.9 }\n\
             add element inet berth banned4 { 1.2.3.4 timeout 30s }\n"
        );
    }

    /// The Fail2Ban action in manifests/ run by a shell (as Fail2Ban does) with a stand-in
    /// `nft`: a permanent ban adds the address without a timeout, never `timeout -1s`.
    #[test]
    fn fail2ban_action_handles_permanent_bans() {
        let conf = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/manifests/host/fail2ban-berth-action.conf"
        ))
        .unwrap();
        let ban = conf
            .lines()
            .find_map(|l| l.strip_prefix("actionban = "))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let nft = dir.path().join("nft");
        std::fs::write(&nft, "#!/bin/sh\necho \"$@\"\n").unwrap();
        std::fs::set_permissions(&nft, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let run = |bantime: &str| {
            let cmd = ban
                .replace("<set>", "banned4")
                .replace("<ip>", "1.2.3.4")
                .replace("<bantime>", bantime);
            let out = std::process::Command::new("sh")
                .args(["-c", &cmd])
                .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(run("-1"), "add element inet berth banned4 { 1.2.3.4 }\n");
        assert_eq!(
            run("3600"),
            "add element inet berth banned4 { 1.2.3.4 timeout 3600s }\n"
        );
    }

    #[tokio::test]
    async fn remote_probe_failures_and_timeouts_fail_the_confirmation() {
        use crate::apply::RemoteProbe;
        use std::sync::Arc;
        let ok = RemoteProbe(Arc::new(|| Ok(())));
        assert_eq!(probe_remote(&ok, Duration::from_secs(5)).await, Ok(()));
        let refused = RemoteProbe(Arc::new(|| Err("connection refused".into())));
        assert_eq!(
            probe_remote(&refused, Duration::from_secs(5)).await,
            Err("the git remote does not answer: connection refused".into())
        );
        let hangs = RemoteProbe(Arc::new(|| {
            std::thread::sleep(Duration::from_secs(3));
            Ok(())
        }));
        assert_eq!(
            probe_remote(&hangs, Duration::from_millis(200)).await,
            Err("the git remote does not answer within 200ms".into())
        );
        assert!(remote_is_local("file:///srv/repo.git") && remote_is_local("/srv/repo.git"));
        assert!(!remote_is_local("https://github.com/a/b.git"));
    }
}
