//! The firewalld backend's zone part, through `firewall-cmd`: read the default zone (runtime and
//! permanent), change it permanently and `--reload` (so runtime = permanent), touching only
//! what berth adds: the target, ports and rich rules the zone did not have. The undo commands
//! of a change are what the rollback timer and a failed confirmation run.

use std::path::Path;
use std::time::Duration;

use super::HostError;
use super::command::{output_tail, run};
use crate::model::edge::{ZoneRecord, ZoneState, ZoneWanted};

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

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// The default zone, runtime and permanent.
pub(super) async fn read_zone() -> Result<ZoneState, HostError> {
    let name = cmd(&["--get-default-zone".into()])
        .await?
        .trim()
        .to_string();
    let z = format!("--zone={name}");
    let p = "--permanent".to_string();
    let ports = cmd(&[z.clone(), "--list-ports".into()]).await?;
    let ports_permanent = cmd(&[p.clone(), z.clone(), "--list-ports".into()]).await?;
    let rich = cmd(&[z.clone(), "--list-rich-rules".into()]).await?;
    let rich_permanent = cmd(&[p.clone(), z.clone(), "--list-rich-rules".into()]).await?;
    let target = cmd(&[p, z, "--get-target".into()]).await?;
    Ok(ZoneState {
        name,
        target: target.trim().to_string(),
        ports: words(&ports),
        ports_permanent: words(&ports_permanent),
        rich: lines(&rich),
        rich_permanent: lines(&rich_permanent),
    })
}

/// The permanent changes that take the zone from `now` to `want` (berth's earlier additions
/// in `prev`), the record afterwards, and the commands that undo them.
pub(super) fn diff(
    want: &ZoneWanted,
    now: &ZoneState,
    prev: Option<&ZoneRecord>,
) -> (Vec<Vec<String>>, ZoneRecord, Vec<Vec<String>>) {
    let prev = prev.cloned().unwrap_or_else(|| ZoneRecord {
        zone: want.zone.clone(),
        target_before: now.target.clone(),
        ..ZoneRecord::default()
    });
    let z = format!("--zone={}", want.zone);
    let base = || vec!["--permanent".to_string(), z.clone()];
    let (mut change, mut undo) = (Vec::new(), Vec::new());
    if now.target != want.target {
        let mut c = base();
        c.push(format!("--set-target={}", want.target));
        change.push(c);
        let mut u = base();
        u.push(format!("--set-target={}", now.target));
        undo.push(u);
    }
    let mut record = ZoneRecord {
        zone: want.zone.clone(),
        target_before: prev.target_before.clone(),
        ports: Vec::new(),
        rich: Vec::new(),
    };
    let (mut c, mut u) = (base(), base());
    for p in &want.ports {
        if !now.ports_permanent.contains(p) {
            c.push(format!("--add-port={p}"));
            u.push(format!("--remove-port={p}"));
            record.ports.push(p.clone());
        } else if prev.ports.contains(p) {
            record.ports.push(p.clone());
        }
    }
    for p in prev.ports.iter().filter(|p| !want.ports.contains(p)) {
        if now.ports_permanent.contains(p) {
            c.push(format!("--remove-port={p}"));
            u.push(format!("--add-port={p}"));
        }
    }
    for r in &want.rich {
        if !now.rich_permanent.contains(r) {
            c.push(format!("--add-rich-rule={r}"));
            u.push(format!("--remove-rich-rule={r}"));
            record.rich.push(r.clone());
        } else if prev.rich.contains(r) {
            record.rich.push(r.clone());
        }
    }
    for r in prev.rich.iter().filter(|r| !want.rich.contains(r)) {
        if now.rich_permanent.contains(r) {
            c.push(format!("--remove-rich-rule={r}"));
            u.push(format!("--add-rich-rule={r}"));
        }
    }
    change.extend(grouped(&base(), &c[2..]));
    undo.extend(grouped(&base(), &u[2..]));
    (change, record, undo)
}

/// The commands that take berth's additions out again and put the target back.
pub(super) fn removal(rec: &ZoneRecord, now: &ZoneState) -> Vec<Vec<String>> {
    let z = format!("--zone={}", rec.zone);
    let mut out = Vec::new();
    if now.target != rec.target_before {
        out.push(vec![
            "--permanent".into(),
            z.clone(),
            format!("--set-target={}", rec.target_before),
        ]);
    }
    let mut c = vec!["--permanent".to_string(), z];
    c.extend(
        rec.ports
            .iter()
            .filter(|p| now.ports_permanent.contains(p))
            .map(|p| format!("--remove-port={p}")),
    );
    c.extend(
        rec.rich
            .iter()
            .filter(|r| now.rich_permanent.contains(r))
            .map(|r| format!("--remove-rich-rule={r}")),
    );
    let base = c[..2].to_vec();
    out.extend(grouped(&base, &c[2..]));
    out
}

/// firewall-cmd refuses to mix `--add-port` and `--add-rich-rule` (and the removals) in one
/// call: one call per kind of option.
fn grouped(base: &[String], opts: &[String]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for kind in [
        "--add-port=",
        "--remove-port=",
        "--add-rich-rule=",
        "--remove-rich-rule=",
    ] {
        let these: Vec<String> = opts
            .iter()
            .filter(|o| o.starts_with(kind))
            .cloned()
            .collect();
        if !these.is_empty() {
            let mut c = base.to_vec();
            c.extend(these);
            out.push(c);
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
