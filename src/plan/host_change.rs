//! The payloads of host changes: files, directories, sysctls and units. Each carries everything
//! the executor needs, including what to put back when the change fails (revert) and what the
//! inventory says before and after. File contents are never serialised: a plan's JSON carries
//! digests only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::model::host::{Entry, Meta};

/// What the inventory holds for an address before and after the change. The executor records
/// `after` before it acts (so a crash never leaves an object berth made without a record), and
/// puts `before` back when it reverts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Record {
    #[serde(skip)]
    pub before: Option<Entry>,
    /// `None`: forgotten once the change succeeded.
    #[serde(skip)]
    pub after: Option<Entry>,
}

/// Bytes with their digest; `Debug` and JSON show the digest only.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Bytes {
    #[serde(skip)]
    pub data: Vec<u8>,
    pub digest: String,
}

impl Bytes {
    pub fn new(data: Vec<u8>) -> Bytes {
        let digest = crate::model::sha256_hex(&data);
        Bytes { data, digest }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({})", self.digest)
    }
}

/// A file as it is to be (or was): content and metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileState {
    pub content: Bytes,
    pub meta: Meta,
}

/// What runs after a file changed (`on_change`), and again after a revert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum AfterChange {
    /// `systemctl reload|restart UNIT`, then the unit must stay active.
    Unit { verb: UnitVerb, unit: String },
    /// Restart these containers of a Compose service.
    Containers {
        stack: String,
        service: String,
        names: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitVerb {
    Start,
    Stop,
    Restart,
    Reload,
}

impl UnitVerb {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitVerb::Start => "start",
            UnitVerb::Stop => "stop",
            UnitVerb::Restart => "restart",
            UnitVerb::Reload => "reload",
        }
    }
}

/// A `File` change. Create/Update write `to`; Delete puts `to` back (an adopted file's original)
/// or removes the file (`to: None`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilePayload {
    pub path: PathBuf,
    pub to: Option<FileState>,
    /// What is there now: put back when `validate` or the `after` action fails.
    #[serde(skip)]
    pub from: Option<FileState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validate: Option<String>,
    pub secret: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<AfterChange>,
    pub record: Record,
}

/// A `Directory` change. Create makes it (or takes it over) with `meta`; Update sets `meta`;
/// Delete removes it when berth created it and it is empty, or sets an adopted one's `meta` back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirPayload {
    pub path: PathBuf,
    pub meta: Option<Meta>,
    /// Delete: the directory existed before berth (it is kept, its metadata restored).
    pub adopted: bool,
    pub record: Record,
}

/// A `Sysctl` change: write `value` now and `conf` (persisted in /etc/sysctl.d; `None`: remove
/// the file). Delete writes the previous value back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysctlPayload {
    pub key: String,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conf: Option<String>,
    /// The value now, put back when the write of the persisted file fails.
    pub from: String,
    pub record: Record,
}

/// A `Unit` change: write or remove its files, `daemon-reload` when any changed, enable or
/// disable, then start, stop, restart or reload. When the unit does not stay active, the
/// previous files are put back and the previous version restarted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitPayload {
    pub name: String,
    /// Files to write (`Some`) or remove (`None`): the unit file and drop-ins. Units are never
    /// secret, so the content is in the plan.
    pub files: BTreeMap<PathBuf, Option<String>>,
    /// The same files as they are now.
    #[serde(skip)]
    pub from: BTreeMap<PathBuf, Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<UnitVerb>,
    /// It ran before the change: a revert restarts the previous version.
    pub was_active: bool,
    /// It was enabled before: a revert puts that back.
    pub was_enabled: bool,
    pub record: Record,
}
