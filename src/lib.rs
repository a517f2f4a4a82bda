//! berth: a GitOps controller for self-hosted servers. See ARCHITECTURE.md for the map.

pub mod diag;
pub mod model;
pub mod plan;
pub mod render;
