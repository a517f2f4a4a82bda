//! The integration tests: one binary (`autotests = false`), real Docker Engine, real git.

mod support;

mod alerts;
mod backup;
mod backup_e2e;
mod cli;
mod config_files;
mod defects;
mod engine;
mod firewall;
mod firewall_boot;
mod git;
mod github;
mod github_fake;
mod host;
mod host_kinds;
mod jobs;
mod proxy;
mod proxy_container;
mod prune;
mod serve;
mod serve_cli;
mod slow_clients;
mod tls;
mod webhooks;
