//! The planner: `plan(&Desired, &Observed, &PlanOptions) -> Plan`. Pure: no IO, no clock, no
//! randomness. This file only lists the modules: the shared vocabulary (`change`, `types`) that
//! the kinds' planners import, and `planner` (the dispatch over the kinds), which no kind imports. Everything berth will do, and why, is decided here; the executor (`apply`) only
//! carries the plan out.
//!
//! The core keeps what is common to every kind: the empty-config guard, ownership, the edges
//! between kinds ([`link`]) and the order ([`order`]). Each kind's own decisions are in
//! [`crate::kinds`].

mod change;
pub(crate) mod diff;
mod firewall_change;
mod host_change;
mod planner;
mod proxy_change;
mod reason;
mod types;
mod withhold;

pub use change::{
    Addr, AdminTarget, AfterChange, Allowed, Bytes, Change, ContainerPayload, Current, Dial,
    DirPayload, FilePayload, FileState, FirewallApplied, FirewallPayload, Group, HOST_GROUP,
    ImagePayload, JobsPayload, Kind, Need, NetworkPayload, Op, Payload, PlannedSite, ProxyPayload,
    Record, Reload, Scope, SysctlPayload, UnitPayload, UnitVerb, VolumePayload, Wait,
};
pub use planner::{config_errors, link, order, plan};
pub use reason::{PullReason, Reason, short_id};
pub use types::*;

pub use crate::model::container_name;

#[cfg(test)]
mod firewall_tests;
#[cfg(test)]
mod host_tests;
#[cfg(test)]
mod jobs_tests;
#[cfg(test)]
pub(crate) mod proxy_tests;
#[cfg(test)]
mod tests;
