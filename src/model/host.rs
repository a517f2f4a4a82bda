//! Host settings as berth kinds: what `berth.yaml` documents declare ([`HostSpec`]), what the
//! host has now ([`ObservedHost`]), and what berth created or took over ([`Inventory`]). Plain
//! data: the loader is `crate::berthfile`, the observer and the writer are `crate::host`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use super::Origin;

/// Every host resource the config declares, by address name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSpec {
    /// By absolute path.
    pub files: BTreeMap<PathBuf, FileSpec>,
    /// By absolute path.
    pub dirs: BTreeMap<PathBuf, DirSpec>,
    /// By key (`net.ipv4.ip_forward`).
    pub sysctls: BTreeMap<String, SysctlSpec>,
    /// By unit name (`hello.service`).
    pub units: BTreeMap<String, UnitSpec>,
}

impl HostSpec {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.dirs.is_empty()
            && self.sysctls.is_empty()
            && self.units.is_empty()
    }

    pub fn len(&self) -> usize {
        self.files.len() + self.dirs.len() + self.sysctls.len() + self.units.len()
    }

    /// Every user and group name the declared owners use.
    pub fn owners(&self) -> impl Iterator<Item = &Ownership> {
        self.files
            .values()
            .map(|f| &f.owner)
            .chain(self.dirs.values().map(|d| &d.owner))
    }
}

/// Owner and group, by name or number, with the mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ownership {
    /// Permission bits (`0o644`).
    pub mode: u32,
    /// A user name or a numeric uid.
    pub owner: String,
    /// A group name or a numeric gid.
    pub group: String,
}

impl Ownership {
    pub fn new(mode: u32) -> Ownership {
        Ownership {
            mode,
            owner: "root".into(),
            group: "root".into(),
        }
    }
}

/// `kind: File`.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSpec {
    pub path: PathBuf,
    /// The bytes to write (`content:` as written, or the `source:` file).
    pub content: Vec<u8>,
    pub owner: Ownership,
    /// Never printed: no diff, no content in plans, logs, statuses or PR text.
    pub secret: bool,
    /// A command run on the staged file (`%s` is its path); non-zero: nothing is replaced.
    pub validate: Option<String>,
    /// Take over a path berth did not create (its content is kept and restored on removal).
    pub adopt: bool,
    pub on_change: Option<OnChange>,
    pub origin: Origin,
}

/// What to do when a file's content changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnChange {
    /// `systemctl reload UNIT`.
    Reload(String),
    /// `systemctl restart UNIT`.
    Restart(String),
    /// Restart the containers of a Compose service.
    RestartService { stack: String, service: String },
}

impl OnChange {
    /// The unit it acts on, for a systemd action.
    pub fn unit(&self) -> Option<&str> {
        match self {
            OnChange::Reload(u) | OnChange::Restart(u) => Some(u),
            OnChange::RestartService { .. } => None,
        }
    }
}

impl fmt::Display for OnChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OnChange::Reload(u) => write!(f, "reload {u}"),
            OnChange::Restart(u) => write!(f, "restart {u}"),
            OnChange::RestartService { stack, service } => {
                write!(f, "restart service {stack}/{service}")
            }
        }
    }
}

/// `kind: Directory`.
#[derive(Debug, Clone, PartialEq)]
pub struct DirSpec {
    pub path: PathBuf,
    pub owner: Ownership,
    pub adopt: bool,
    pub origin: Origin,
}

/// `kind: Sysctl`.
#[derive(Debug, Clone, PartialEq)]
pub struct SysctlSpec {
    pub key: String,
    /// In the kernel's normalised form ([`normalize_sysctl`]).
    pub value: String,
    pub origin: Origin,
}

/// The kernel prints multi-value sysctls separated by tabs (`32768\t60999`): compare in that
/// form, whatever whitespace the manifest used.
pub fn normalize_sysctl(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join("\t")
}

/// `/proc/sys/...` for a key (`net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`).
pub fn sysctl_proc_path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// Where a sysctl berth sets is persisted, so a reboot keeps it. Named to sort after Debian's
/// `99-sysctl.conf` (→ /etc/sysctl.conf), which would otherwise win at boot.
pub fn sysctl_conf_path(key: &str) -> PathBuf {
    PathBuf::from(format!("/etc/sysctl.d/99-zz-berth-{key}.conf"))
}

/// The persisted file's content.
pub fn sysctl_conf(key: &str, value: &str) -> String {
    format!(
        "# Written by berth; removed when the Sysctl leaves the config.\n{key} = {}\n",
        value.replace('\t', " ")
    )
}

/// Where unit files berth writes live.
pub const UNIT_DIR: &str = "/etc/systemd/system";

pub fn unit_path(name: &str) -> PathBuf {
    PathBuf::from(UNIT_DIR).join(name)
}

pub fn dropin_path(unit: &str, dropin: &str) -> PathBuf {
    PathBuf::from(UNIT_DIR)
        .join(format!("{unit}.d"))
        .join(dropin)
}

/// `kind: Unit`.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitSpec {
    pub name: String,
    /// The unit file berth owns (`content:` or `source:`); `None` for a unit berth only
    /// configures (drop-ins, enablement, state).
    pub content: Option<String>,
    /// Drop-ins by file name (`NAME.conf`), written to `/etc/systemd/system/NAME.d/`.
    pub dropins: BTreeMap<String, String>,
    /// `None`: enablement is not managed.
    pub enabled: Option<bool>,
    /// `None`: whether it runs is not managed.
    pub state: Option<UnitRunState>,
    pub adopt: bool,
    pub origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitRunState {
    Started,
    Stopped,
}

/// What the host has now, for every path, key and unit the config declares or the inventory
/// holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedHost {
    pub paths: BTreeMap<PathBuf, PathState>,
    /// Key → the value now (normalised), or why it cannot be read.
    pub sysctls: BTreeMap<String, Result<String, String>>,
    pub units: BTreeMap<String, ObservedUnit>,
    /// User and group names → their ids (`None`: no such user/group on the host).
    pub users: BTreeMap<String, Option<u32>>,
    pub groups: BTreeMap<String, Option<u32>>,
    pub inventory: Inventory,
    /// The firewall as it is now: read when the config declares one or the inventory holds one.
    pub firewall: Option<super::edge::ObservedFirewall>,
}

impl ObservedHost {
    /// The uid/gid a declared owner means on this host (numbers are taken as they are).
    pub fn uid(&self, owner: &str) -> Option<u32> {
        owner
            .parse()
            .ok()
            .or_else(|| self.users.get(owner).copied().flatten())
    }

    pub fn gid(&self, group: &str) -> Option<u32> {
        group
            .parse()
            .ok()
            .or_else(|| self.groups.get(group).copied().flatten())
    }

    pub fn path(&self, p: &std::path::Path) -> &PathState {
        self.paths.get(p).unwrap_or(&PathState::Absent)
    }
}

/// One path on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathState {
    Absent,
    File {
        content: Vec<u8>,
        meta: Meta,
    },
    Dir {
        meta: Meta,
    },
    /// Something else (a symlink, a socket, a device): never touched.
    Other {
        what: String,
    },
    /// The path leaves where it says (a symlinked parent, `..`), or cannot be read.
    Refused {
        reason: String,
    },
}

/// Mode and numeric owner of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A unit as systemd reports it (`systemctl show`), plus the files berth may write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedUnit {
    /// `loaded`, `not-found`, `masked`, …
    pub load: String,
    /// `active`, `inactive`, `failed`, `activating`, …
    pub active: String,
    /// `enabled`, `disabled`, `static`, `masked`, … (empty when unknown).
    pub file_state: String,
    /// `/etc/systemd/system/NAME` now (`None`: absent).
    pub file: Option<String>,
    /// Drop-ins berth declares or recorded, by file name → content now.
    pub dropins: BTreeMap<String, Option<String>>,
}

impl ObservedUnit {
    pub fn is_active(&self) -> bool {
        matches!(self.active.as_str(), "active" | "reloading" | "activating")
    }

    pub fn is_enabled(&self) -> bool {
        matches!(
            self.file_state.as_str(),
            "enabled" | "enabled-runtime" | "alias"
        )
    }
}

/// What berth created or took over on the host, and what was there before: kept in the state
/// dir (`inventory-<instance>.json`), written atomically before each change it records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Address (`file:/etc/x`, `unit:hello.service`) → entry.
    pub entries: BTreeMap<String, Entry>,
}

/// One host object berth owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What was there before berth: restored when the resource leaves the config.
    pub before: Before,
    /// `sha256:` of what berth last wrote (content and mode), to tell a hand edit from a
    /// config change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<String>,
}

/// The state berth found before it took an object over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// The firewalld zone record makes `Firewall` the largest variant; there is one such entry.
#[allow(clippy::large_enum_variant)]
pub enum Before {
    /// Nothing: berth created it, and removes it.
    Absent,
    File {
        /// base64 of the original bytes (the state dir is 0700: a taken-over secret stays
        /// as private as it was).
        content: String,
        meta: Meta,
    },
    Dir {
        meta: Meta,
    },
    Sysctl {
        value: String,
        /// The persisted file as it was (`None`: absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conf: Option<String>,
    },
    Unit {
        /// berth writes the unit file (`content:`/`source:`).
        #[serde(default)]
        owns_file: bool,
        /// The unit file as it was before berth wrote it (`None`: there was none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
        /// Whether it was enabled.
        enabled: bool,
        /// Whether it ran.
        active: bool,
        /// Drop-ins berth writes → what was there (`None`: absent).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        dropins: BTreeMap<String, Option<String>>,
    },
    /// The firewall (`firewall:inbound`). berth owns the nftables table `inet berth`; `table`
    /// is whether one was there before (it is then put back, else deleted).
    Firewall {
        /// The backend berth applied with (`nftables`).
        backend: String,
        /// The readable allow lines berth applied last (for the plan's rule diff).
        #[serde(default)]
        rules: Vec<String>,
        /// Digest of the live table right after berth applied it (`None`: not confirmed yet,
        /// e.g. berth died mid-apply): anything else on the host is drift.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        live: Option<String>,
        /// firewalld backend: the default zone as it was before berth took it over.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        zone: Option<super::edge::ZoneRecord>,
    },
}
