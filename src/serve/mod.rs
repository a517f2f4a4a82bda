//! `berth serve`: the GitOps loop. See ARCHITECTURE.md.

pub mod config;
pub mod daemon;
pub mod http;
pub mod metrics;
pub mod queue;
pub mod redact;
pub mod report;
pub mod server;
pub mod state;
pub mod webhook;
pub mod worktree;
pub mod writeback;

pub use daemon::run;
