//! `berth serve`: the GitOps loop. See ARCHITECTURE.md.

mod branch;
pub mod config;
pub mod daemon;
pub mod error;
pub mod http;
pub mod jobs;
pub mod metrics;
mod preview;
pub mod queue;
pub mod redact;
pub mod report;
mod retry;
pub mod server;
pub mod state;
mod systemd;
pub mod webhook;
pub mod worktree;
pub mod writeback;

pub use daemon::run;
