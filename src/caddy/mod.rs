//! The Caddy adapter: the config berth renders ([`render`], pure: the planner uses it) and the
//! admin API client ([`client`], the only code that talks to Caddy).

pub mod client;
pub mod render;

pub use client::{Caddy, CaddyError};
