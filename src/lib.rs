//! berth: a GitOps controller for self-hosted servers. See ARCHITECTURE.md for the map.

pub mod applied;
pub mod apply;
pub mod berthfile;
pub mod caddy;
pub mod compose;
pub mod diag;
pub mod docker;
pub mod git;
pub mod github;
pub mod host;
pub mod jobs;
pub mod kinds;
pub mod model;
pub mod pipeline;
pub mod plan;
pub mod render;
pub mod restic;
pub mod serve;
pub mod statefile;
pub mod tls;

#[cfg(test)]
mod invariants_tests;
