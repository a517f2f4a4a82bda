//! Per-kind planners. Each is pure: typed desired spec + typed observation → changes, errors,
//! and the reasons for each. The edges *between* kinds (pull before create, network before the
//! containers that join it, a delete before the create that takes its name or port) are added
//! in one place, [`crate::plan`], which also orders the result.
//!
//! The closed list of kinds is [`crate::plan::Kind`]; the executor dispatches on
//! [`crate::plan::Payload`] in one `match` (`apply::run_change`).

pub mod container;
pub mod directory;
pub mod file;
pub mod firewall;
pub mod firewall_render;
pub mod host;
pub mod image;
pub mod job;
pub mod network;
mod objects;
pub mod route;
pub mod sysctl;
pub mod unit;
pub mod volume;

use crate::model::{Desired, Observed, ObservedContainer};
use crate::plan::{Change, Plan, PlanOptions};

/// What every planner reads.
pub struct Context<'a> {
    pub desired: &'a Desired,
    pub observed: &'a Observed,
    pub opts: &'a PlanOptions,
    /// The containers this instance owns.
    pub owned: Vec<&'a ObservedContainer>,
}

/// What the planners produce, before the core links and orders it.
#[derive(Default)]
pub struct Planned {
    pub changes: Vec<Change>,
    pub plan: Plan,
}
