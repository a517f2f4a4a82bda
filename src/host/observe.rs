//! `observe`: every path, sysctl, unit, user and group the config declares or the inventory
//! holds, as it is now. Files, sysctls and the user database are read in one blocking task
//! while one `systemctl show` call (only when there are units) asks systemd about every unit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::command::{SYSTEMCTL_TIMEOUT, tool};
use super::systemd::{SHOW_PROPERTIES, parse_show};
use super::{Host, HostError, blocking, fs, sysctl};
use crate::model::host::{
    Before, HostSpec, Inventory, ObservedHost, ObservedUnit, PathState, dropin_path,
    sysctl_conf_path, unit_path,
};

/// What to look at.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Wanted {
    pub paths: BTreeSet<PathBuf>,
    pub sysctls: BTreeSet<String>,
    /// Unit → the drop-ins (file names) to read.
    pub units: BTreeMap<String, BTreeSet<String>>,
    pub users: BTreeSet<String>,
    pub groups: BTreeSet<String>,
}

/// Declared files and directories with their parents (the planner checks the parent exists);
/// inventoried files and directories; each sysctl's persisted file; each unit's file, drop-in
/// folder and drop-ins. Owner and group names, not numbers.
pub(crate) fn wanted(spec: &HostSpec, inventory: &Inventory) -> Wanted {
    let mut w = Wanted::default();
    for p in spec.files.keys().chain(spec.dirs.keys()) {
        w.paths.insert(p.clone());
        if let Some(parent) = p.parent() {
            w.paths.insert(parent.to_owned());
        }
    }
    w.sysctls.extend(spec.sysctls.keys().cloned());
    for (name, unit) in &spec.units {
        w.units
            .entry(name.clone())
            .or_default()
            .extend(unit.dropins.keys().cloned());
    }
    for (addr, entry) in &inventory.entries {
        match addr.split_once(':') {
            Some(("file" | "directory", p)) => {
                w.paths.insert(PathBuf::from(p));
            }
            Some(("sysctl", key)) => {
                w.sysctls.insert(key.to_string());
            }
            Some(("unit", name)) => {
                let dropins = w.units.entry(name.to_string()).or_default();
                if let Before::Unit { dropins: d, .. } = &entry.before {
                    dropins.extend(d.keys().cloned());
                }
            }
            // A kind this berth does not know (a newer one wrote it): kept, not observed.
            _ => {}
        }
    }
    for key in &w.sysctls {
        w.paths.insert(sysctl_conf_path(key));
    }
    for (name, dropins) in &w.units {
        w.paths.insert(unit_path(name));
        for d in dropins {
            let p = dropin_path(name, d);
            if let Some(dir) = p.parent() {
                w.paths.insert(dir.to_owned());
            }
            w.paths.insert(p);
        }
    }
    for o in spec.owners() {
        if o.owner.parse::<u32>().is_err() {
            w.users.insert(o.owner.clone());
        }
        if o.group.parse::<u32>().is_err() {
            w.groups.insert(o.group.clone());
        }
    }
    w
}

/// What the blocking part reads.
#[derive(Debug, Default)]
pub(crate) struct Local {
    pub paths: BTreeMap<PathBuf, PathState>,
    pub sysctls: BTreeMap<String, Result<String, String>>,
    pub users: BTreeMap<String, Option<u32>>,
    pub groups: BTreeMap<String, Option<u32>>,
}

/// Reads the paths, sysctls (under `proc_sys`) and the user database.
pub(crate) fn read_local(w: &Wanted, proc_sys: &Path) -> Result<Local, HostError> {
    let lookup = |what: &'static str, name: &str, e: nix::errno::Errno| HostError::Lookup {
        what,
        name: name.to_string(),
        source: e.into(),
    };
    let mut users = BTreeMap::new();
    for name in &w.users {
        let user = nix::unistd::User::from_name(name).map_err(|e| lookup("user", name, e))?;
        users.insert(name.clone(), user.map(|u| u.uid.as_raw()));
    }
    let mut groups = BTreeMap::new();
    for name in &w.groups {
        let group = nix::unistd::Group::from_name(name).map_err(|e| lookup("group", name, e))?;
        groups.insert(name.clone(), group.map(|g| g.gid.as_raw()));
    }
    let mut ancestors = fs::Ancestors::default();
    Ok(Local {
        paths: w
            .paths
            .iter()
            .map(|p| (p.clone(), fs::observe_path_with(p, &mut ancestors)))
            .collect(),
        sysctls: w
            .sysctls
            .iter()
            .map(|k| (k.clone(), sysctl::read(proc_sys, k)))
            .collect(),
        users,
        groups,
    })
}

/// One `systemctl show` for all `units` (none: systemctl is not run).
async fn show(host: &Host, units: &[&str]) -> Result<Vec<ObservedUnit>, HostError> {
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["show", SHOW_PROPERTIES, "--"];
    args.extend_from_slice(units);
    let out = tool(&host.systemctl, "systemctl", &args, SYSTEMCTL_TIMEOUT).await?;
    parse_show(&String::from_utf8_lossy(&out), units).map_err(|message| HostError::Command {
        command: super::command::display("systemctl", &args),
        status: "unexpected output".into(),
        output: message,
    })
}

/// A regular file's content as text; anything else (absent, a symlink, unreadable) is `None`:
/// the path's own [`PathState`] in `paths` tells which.
fn text(state: Option<&PathState>) -> Option<String> {
    match state {
        Some(PathState::File { content, .. }) => {
            Some(String::from_utf8_lossy(content).into_owned())
        }
        _ => None,
    }
}

pub(crate) async fn observe(
    host: &Host,
    spec: &HostSpec,
    inventory: &Inventory,
) -> Result<ObservedHost, HostError> {
    let w = Arc::new(wanted(spec, inventory));
    let local = {
        let (w, root) = (w.clone(), host.proc_sys.clone());
        blocking(move || read_local(&w, &root))
    };
    let names: Vec<&str> = w.units.keys().map(String::as_str).collect();
    let (local, shown) = tokio::join!(local, show(host, &names));
    let (local, shown) = (local?, shown?);
    let units = w
        .units
        .iter()
        .zip(shown)
        .map(|((name, dropins), mut u)| {
            u.file = text(local.paths.get(&unit_path(name)));
            u.dropins = dropins
                .iter()
                .map(|d| (d.clone(), text(local.paths.get(&dropin_path(name, d)))))
                .collect();
            (name.clone(), u)
        })
        .collect();
    Ok(ObservedHost {
        paths: local.paths,
        sysctls: local.sysctls,
        units,
        users: local.users,
        groups: local.groups,
        inventory: inventory.clone(),
        firewall: None,
    })
}
