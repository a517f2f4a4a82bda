//! The payload of a firewall change (`firewall:inbound`): the whole rendered ruleset, what the
//! confirm step checks, and the inventory record. The script is not secret; the JSON plan
//! carries its digest and the readable rule lines.

use ipnet::IpNet;
use serde::Serialize;

use super::host_change::Record;
use crate::model::edge::{PortRange, ZoneRecord, ZoneWanted};

/// A port range and who may reach it (`from: None`: anywhere), for the confirm step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allowed {
    pub ports: PortRange,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<IpNet>>,
}

/// A `Firewall` change: replace berth's table with `script` (create, update, drift repair) or
/// put back what was there before (delete: `script` removes the table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirewallPayload {
    /// `nftables`.
    pub backend: String,
    #[serde(skip)]
    pub script: String,
    /// `sha256:` of `script`: what the inventory records as applied.
    pub digest: String,
    /// The readable rules after the change (empty for a delete).
    pub rules: Vec<String>,
    /// What the new rules allow (the confirm step checks SSH against it).
    #[serde(skip)]
    pub allowed: Vec<Allowed>,
    /// Seconds the change may stay unconfirmed before the previous ruleset is restored.
    pub confirm_timeout: u64,
    /// `allow_no_ssh: true`: the confirm step does not ask that sshd stays reachable.
    #[serde(skip)]
    pub allow_no_ssh: bool,
    /// firewalld backend: what the default zone must hold (`None`: nftables only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<ZoneWanted>,
    /// The zone as it was before berth took it over (recorded before the first change): a
    /// removal puts it back.
    #[serde(skip)]
    pub zone_record: Option<ZoneRecord>,
    pub record: Record,
}

/// What a firewall change left on the host, for the inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallApplied {
    /// The live table's digest (`None`: removed).
    pub live: Option<String>,
    /// The record of the zone before berth (unchanged by the apply).
    pub zone: Option<ZoneRecord>,
}

impl FirewallPayload {
    /// Whether `port/tcp` is allowed from at least one address.
    pub fn allows_tcp(&self, port: u16) -> bool {
        self.allowed.iter().any(|a| {
            a.ports.contains(port, crate::model::edge::Proto::Tcp)
                && a.from.as_ref().is_none_or(|f| !f.is_empty())
        })
    }
}
