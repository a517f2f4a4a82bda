//! The Docker adapter: the only module that talks to the Engine (and the only one that imports
//! bollard). Everything else works on [`crate::model`] types.
//!
//! Every method makes a known number of HTTP requests (documented on each method) and counts
//! them, so that tests and benchmarks can assert that a no-op reconcile costs exactly two
//! requests (one container list, one image list). See [`Engine::requests`].
//!
//! Layout: `client` (connect, `/_ping`, request accounting), `error` ([`DockerError`]),
//! `observe` (list and parse what runs), `pull`, `ops` (network/volume/container operations),
//! `create` (the request bodies, pure), `archive` (files copied into a container), `exec`
//! (commands in a service's running container), `oneoff` (one-off containers: restic runs).

mod archive;
mod client;
mod create;
mod error;
mod exec;
mod job;
mod observe;
mod oneoff;
mod ops;
mod prune;
mod pull;
mod reload;

#[cfg(test)]
mod fixtures;

pub use crate::model::normalize_image_ref;
pub use client::{Engine, RequestCounts};
pub use create::{
    CreateBody, container_create_body, container_labels, network_create_request,
    volume_create_request,
};
pub use error::DockerError;
pub use exec::{ExecOutput, ExecStream, STDERR_TAIL, ServiceContainer};
pub use job::{Finished, JOB_LABEL, Tail, job_container_name};
pub use observe::{parse_health, parse_state};
pub use oneoff::{Chunk, ONEOFF_LABEL, OneOff, OneOffMount, OneOffRun};
pub use ops::ContainerInfo;
pub use prune::Pruned;
pub use pull::PullFailure;

/// Where the Engine is when `DOCKER_HOST` is not set.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Suffix of the name an old container carries while its replacement starts.
pub const OLD_SUFFIX: &str = "-berth-old";
