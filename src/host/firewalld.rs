//! The firewalld backend's zone part, through `firewall-cmd`: read the default zone (runtime and
//! permanent, `--list-all`), change it permanently and `--reload` (so runtime = permanent).
//! berth takes the zone over: its target and allowances become exactly the manifest's (the
//! services, ports, rich rules and sources it had before are removed, after the planner
//! recorded them in the inventory), and removing the Firewall puts the recorded zone back.
//! The undo commands of a change are what the rollback timer and a failed confirmation run.

use std::path::Path;
use std::time::Duration;

use super::HostError;
use super::command::{output_tail, run};
use crate::model::edge::{ZoneAllow, ZoneRecord, ZoneState, ZoneWanted};

const FIREWALL_CMD: &str = "firewall-cmd";
const TIMEOUT: Duration = Duration::from_secs(60);

/// `firewall-cmd args…` → stdout.
pub(super) async fn cmd(args: &[String]) -> Result<String, HostError> {
    let command = format!("{FIREWALL_CMD} {}", args.join(" "));
    match run(Path::new(FIREWALL_CMD), args, TIMEOUT).await {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(HostError::Command {
            command,
            status: out.status.to_string(),
            output: output_tail(&[out.stderr, out.stdout].concat()),
        }),
        Err(_) => Err(HostError::Command {
            command,
            status: "could not run (is firewalld installed?)".into(),
            output: String::new(),
        }),
    }
}

/// Parses `firewall-cmd --list-all`: `key: values` lines, rich rules one per line after
/// `rich rules:`. Returns the target (when listed) and the allowances.
pub(super) fn parse_list_all(text: &str) -> (Option<String>, ZoneAllow) {
    let mut a = ZoneAllow::default();
    let mut target = None;
    let words = |v: &str| v.split_whitespace().map(String::from).collect::<Vec<_>>();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("rule ") {
            a.rich.push(line.to_string());
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "target" => target = Some(value.trim().to_string()),
            "services" => a.services = words(value),
            "ports" => a.ports = words(value),
            "protocols" => a.protocols = words(value),
            "source-ports" => a.source_ports = words(value),
            "sources" => a.sources = words(value),
            "rich rules" if !value.trim().is_empty() => a.rich.push(value.trim().to_string()),
            _ => {}
        }
    }
    (target, a)
}

/// The default zone, runtime and permanent.
pub(super) async fn read_zone() -> Result<ZoneState, HostError> {
    let name = cmd(&["--get-default-zone".into()])
        .await?
        .trim()
        .to_string();
    let z = format!("--zone={name}");
    let (_, runtime) = parse_list_all(&cmd(&[z.clone(), "--list-all".into()]).await?);
    let (target, permanent) =
        parse_list_all(&cmd(&["--permanent".into(), z.clone(), "--list-all".into()]).await?);
    let target = match target {
        Some(t) => t,
        None => cmd(&["--permanent".into(), z, "--get-target".into()])
            .await?
            .trim()
            .to_string(),
    };
    Ok(ZoneState {
        name,
        target,
        runtime,
        permanent,
    })
}

/// The permanent commands that take the zone from `now` (target `now_target`) to exactly
/// `want` (target `want_target`).
fn towards(
    zone: &str,
    now_target: &str,
    now: &ZoneAllow,
    want_target: &str,
    want: &ZoneAllow,
) -> Vec<Vec<String>> {
    let z = format!("--zone={zone}");
    let base = vec!["--permanent".to_string(), z];
    let mut out = Vec::new();
    if now_target != want_target {
        let mut c = base.clone();
        c.push(format!("--set-target={want_target}"));
        out.push(c);
    }
    let mut opts = Vec::new();
    for (stem, _, v) in now.minus(want) {
        opts.push(format!("--remove-{stem}={v}"));
    }
    for (stem, _, v) in want.minus(now) {
        opts.push(format!("--add-{stem}={v}"));
    }
    out.extend(grouped(&base, &opts));
    out
}

/// The permanent changes that make the zone exactly `want` (everything else it allowed is
/// removed), and the commands that undo them.
pub(super) fn diff(want: &ZoneWanted, now: &ZoneState) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let w = want.allow();
    (
        towards(&want.zone, &now.target, &now.permanent, &want.target, &w),
        towards(&want.zone, &want.target, &w, &now.target, &now.permanent),
    )
}

/// The commands that put the zone back as it was before berth took it over.
pub(super) fn removal(rec: &ZoneRecord, now: &ZoneState) -> Vec<Vec<String>> {
    towards(
        &rec.zone,
        &now.target,
        &now.permanent,
        &rec.target_before,
        &rec.original,
    )
}

/// firewall-cmd refuses to mix kinds of options (`--add-port` with `--add-rich-rule`, a
/// removal with an addition) in one call: one call per kind, removals first.
fn grouped(base: &[String], opts: &[String]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for verb in ["--remove-", "--add-"] {
        for (stem, _, _) in ZoneAllow::default().kinds() {
            let kind = format!("{verb}{stem}=");
            let these: Vec<String> = opts
                .iter()
                .filter(|o| o.starts_with(&kind))
                .cloned()
                .collect();
            if !these.is_empty() {
                let mut c = base.to_vec();
                c.extend(these);
                out.push(c);
            }
        }
    }
    out
}

/// Runs the permanent commands, then `--reload` (runtime = permanent).
pub(super) async fn run_all(cmds: &[Vec<String>]) -> Result<(), HostError> {
    for c in cmds {
        cmd(c).await?;
    }
    cmd(&["--reload".into()]).await.map(drop)
}

/// The commands as a shell script (for the rollback timer).
pub(super) fn script(cmds: &[Vec<String>]) -> String {
    let mut s = String::new();
    for c in cmds {
        let quoted: Vec<String> = c
            .iter()
            .map(|a| {
                shlex::try_quote(a)
                    .map(|q| q.into_owned())
                    .unwrap_or_default()
            })
            .collect();
        s.push_str(&format!("{FIREWALL_CMD} {}\n", quoted.join(" ")));
    }
    s.push_str(&format!("{FIREWALL_CMD} --reload\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST_ALL: &str = "public (active)\n  target: default\n  icmp-block-inversion: no\n  interfaces: eth0\n  sources: 10.9.0.0/16\n  services: dhcpv6-client ssh\n  ports: 7777/tcp\n  protocols: \n  forward: yes\n  masquerade: no\n  forward-ports: \n  source-ports: \n  icmp-blocks: \n  rich rules: \n\trule family=\"ipv4\" source address=\"1.2.3.4\" accept\n";

    #[test]
    fn parses_list_all_and_takes_the_zone_over_exactly() {
        let (target, a) = parse_list_all(LIST_ALL);
        assert_eq!(target.as_deref(), Some("default"));
        assert_eq!(a.services, ["dhcpv6-client", "ssh"]);
        assert_eq!(a.ports, ["7777/tcp"]);
        assert_eq!(a.sources, ["10.9.0.0/16"]);
        assert_eq!(
            a.rich,
            [r#"rule family="ipv4" source address="1.2.3.4" accept"#]
        );
        let now = ZoneState {
            name: "public".into(),
            target: "default".into(),
            runtime: a.clone(),
            permanent: a.clone(),
        };
        let want = ZoneWanted {
            zone: "public".into(),
            target: "DROP".into(),
            ports: vec!["80/tcp".into()],
            rich: Vec::new(),
        };
        let (change, undo) = diff(&want, &now);
        let flat: Vec<String> = change.iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            flat,
            [
                "--permanent --zone=public --set-target=DROP",
                "--permanent --zone=public --remove-service=dhcpv6-client --remove-service=ssh",
                "--permanent --zone=public --remove-port=7777/tcp",
                r#"--permanent --zone=public --remove-rich-rule=rule family="ipv4" source address="1.2.3.4" accept"#,
                "--permanent --zone=public --remove-source=10.9.0.0/16",
                "--permanent --zone=public --add-port=80/tcp",
            ]
        );
        assert!(undo.iter().any(|c| {
            c.join(" ")
                .ends_with("--add-service=dhcpv6-client --add-service=ssh")
        }));
        // Removal from the taken-over zone puts every original allowance back.
        let after = ZoneState {
            name: "public".into(),
            target: "DROP".into(),
            runtime: want.allow(),
            permanent: want.allow(),
        };
        let rec = ZoneRecord {
            zone: "public".into(),
            target_before: "default".into(),
            original: a,
        };
        let back: Vec<String> = removal(&rec, &after).iter().map(|c| c.join(" ")).collect();
        assert_eq!(back[0], "--permanent --zone=public --set-target=default");
        assert!(back.contains(&"--permanent --zone=public --remove-port=80/tcp".to_string()));
        assert!(back.contains(&"--permanent --zone=public --add-port=7777/tcp".to_string()));
        assert!(back.contains(&"--permanent --zone=public --add-source=10.9.0.0/16".to_string()));
    }
}
