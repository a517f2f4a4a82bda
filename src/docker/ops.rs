//! Operations on networks, volumes and containers (create, start, stop, rename, remove,
//! inspect).

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, HealthStatusEnum, Mount, MountType, NetworkConnectRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions, RemoveVolumeOptions,
    RenameContainerOptions, StartContainerOptions, StopContainerOptions, UploadToContainerOptions,
};

use super::archive::tar_archive;
use super::create::{
    CreateBody, container_create_body, network_create_request, volume_create_request,
};
use super::{DockerError, Engine};
use crate::model::{
    ContainerState, Health, MountSource, NetworkSpec, ObservedMount, ServiceSpec, StackSpec,
    VolumeSpec,
};

impl Engine {
    // -----------------------------------------------------------------------------------------
    // Networks and volumes
    // -----------------------------------------------------------------------------------------

    /// Creates a network labelled as berth's (and Compose's). Returns its ID. Requests: 1.
    pub async fn create_network(
        &self,
        stack: &str,
        spec: &NetworkSpec,
    ) -> Result<String, DockerError> {
        let req = network_create_request(&self.instance, stack, spec);
        let resp = self
            .docker
            .create_network(req)
            .await
            .map_err(|e| self.err(format!("create network {}", spec.name), e))?;
        Ok(resp.id)
    }

    /// Creates a named volume labelled as berth's (and Compose's). Requests: 1.
    pub async fn create_volume(&self, stack: &str, spec: &VolumeSpec) -> Result<(), DockerError> {
        let req = volume_create_request(&self.instance, stack, spec);
        self.docker
            .create_volume(req)
            .await
            .map_err(|e| self.err(format!("create volume {}", spec.name), e))?;
        Ok(())
    }

    /// Removes a network. Already gone is success. Requests: 1.
    pub async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) => match self.err(format!("remove network {name}"), e) {
                DockerError::NotFound { .. } => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Removes a volume (and its data). Already gone is success. Requests: 1.
    pub async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        match self
            .docker
            .remove_volume(name, Some(RemoveVolumeOptions { force: false }))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match self.err(format!("remove volume {name}"), e) {
                DockerError::NotFound { .. } => Ok(()),
                e => Err(e),
            },
        }
    }

    // -----------------------------------------------------------------------------------------
    // Containers
    // -----------------------------------------------------------------------------------------

    /// Creates (does not start) the container `name` for replica `number` of `service`. Returns
    /// its ID. Requests: 1, plus 1 per network beyond the first (API 1.41 accepts one network
    /// at create; the others are connected before the container starts), plus 1 when secrets
    /// or configs given by content are copied in. If a step after create fails, the half-made
    /// container is removed (1 more request).
    pub async fn create_container(
        &self,
        stack: &StackSpec,
        service: &str,
        spec: &ServiceSpec,
        number: u32,
        name: &str,
    ) -> Result<String, DockerError> {
        self.create_container_reusing(stack, service, spec, number, name, &[])
            .await
    }

    /// [`Engine::create_container`] for a replacement: the old container's anonymous volumes
    /// (`reuse`, see [`ContainerInfo::anonymous_volumes`]) are mounted again at the same paths,
    /// as Compose does, so that data in an image's `VOLUME` or a `- /path` mount survives.
    pub async fn create_container_reusing(
        &self,
        stack: &StackSpec,
        service: &str,
        spec: &ServiceSpec,
        number: u32,
        name: &str,
        reuse: &[ObservedMount],
    ) -> Result<String, DockerError> {
        let op = format!("create container {name}");
        self.check_supported(&op, spec)?;
        let CreateBody {
            mut body,
            extra_networks,
            files,
        } = container_create_body(&self.instance, stack, service, spec, number, name).map_err(
            |message| DockerError::Invalid {
                op: op.clone(),
                message,
            },
        )?;
        reuse_anonymous_volumes(&mut body, reuse);
        // Built before the container exists: a path tar cannot hold leaves nothing behind.
        let archive = if files.is_empty() {
            None
        } else {
            Some(tar_archive(&files).map_err(|e| DockerError::Invalid {
                op: op.clone(),
                message: format!("cannot archive the secrets/configs to copy in: {e}"),
            })?)
        };
        let resp = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_string()),
                    platform: spec.platform.clone().unwrap_or_default(),
                }),
                body,
            )
            .await
            .map_err(|e| self.err(&op, e))?;
        let id = resp.id;
        // The Engine drops options the host cannot honour (no swap accounting, cgroup v2
        // without an OOM-killer switch, a Windows-only option on Linux...) with a warning only.
        // Nothing berth was asked for may be dropped silently: refuse the container.
        let discarded = discarded_warnings(&resp.warnings);
        if !discarded.is_empty() {
            let _ = self.remove(&id).await;
            return Err(DockerError::Invalid {
                op,
                message: format!(
                    "the Engine would ignore part of this service: {}; remove the option or \
                     run on a host that supports it",
                    discarded.join("; ")
                ),
            });
        }
        for (network, endpoint) in extra_networks {
            let connect = self
                .docker
                .connect_network(
                    &network,
                    NetworkConnectRequest {
                        container: id.clone(),
                        endpoint_config: Some(endpoint),
                    },
                )
                .await;
            if let Err(e) = connect {
                let e = self.err(format!("connect {name} to network {network}"), e);
                let _ = self.remove(&id).await;
                return Err(e);
            }
        }
        if let Some(archive) = archive {
            let upload = self
                .docker
                .upload_to_container(
                    &id,
                    Some(UploadToContainerOptions {
                        path: "/".into(),
                        ..Default::default()
                    }),
                    bollard::body_full(archive.into()),
                )
                .await;
            if let Err(e) = upload {
                let e = self.err(format!("copy secrets/configs into {name}"), e);
                let _ = self.remove(&id).await;
                return Err(e);
            }
        }
        Ok(id)
    }

    /// Refuses spec fields this Engine's API version would silently ignore.
    fn check_supported(&self, op: &str, spec: &ServiceSpec) -> Result<(), DockerError> {
        let unsupported = |what: &str, need: &str| DockerError::Invalid {
            op: op.to_string(),
            message: format!(
                "{what} needs Docker API {need}, the Engine speaks {}; upgrade Docker or remove it",
                self.api_version()
            ),
        };
        let subpath = spec.mounts.iter().any(|m| {
            matches!(
                m.source,
                MountSource::Volume {
                    subpath: Some(_),
                    ..
                }
            )
        });
        if subpath && !self.api_at_least(1, 45) {
            return Err(unsupported("volume subpath", "1.45"));
        }
        let mac =
            spec.mac_address.is_some() || spec.networks.values().any(|a| a.mac_address.is_some());
        if mac && !self.api_at_least(1, 44) {
            return Err(unsupported("mac_address", "1.44"));
        }
        if !spec.annotations.is_empty() && !self.api_at_least(1, 43) {
            return Err(unsupported("annotations", "1.43"));
        }
        Ok(())
    }

    /// Starts a container. Already running is success. Requests: 1.
    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(|e| self.err(format!("start container {}", short(id)), e))
    }

    /// Stops a container, giving it `grace` seconds (else its own stop timeout) before SIGKILL.
    /// Already stopped is success. Requests: 1.
    pub async fn stop(&self, id: &str, grace: Option<i64>) -> Result<(), DockerError> {
        // The Engine answers only once the container stopped: allow for the grace period.
        let wait = grace.unwrap_or(10).max(0) as u64 + 60;
        let docker = self
            .docker
            .clone()
            .with_timeout(Duration::from_secs(wait.max(120)));
        match docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    signal: None,
                    t: grace.map(|g| g.clamp(0, i32::MAX as i64) as i32),
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => Err(self.err(format!("stop container {}", short(id)), e)),
        }
    }

    /// Renames a container. Requests: 1.
    pub async fn rename(&self, id: &str, new_name: &str) -> Result<(), DockerError> {
        self.docker
            .rename_container(
                id,
                RenameContainerOptions {
                    name: new_name.to_string(),
                },
            )
            .await
            .map_err(|e| self.err(format!("rename container {} to {new_name}", short(id)), e))
    }

    /// Removes a container (killing it if it still runs: stop it first for a graceful end).
    /// Its volumes are kept (never `v=true`). Already gone is success. Requests: 1.
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        match self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    v: false,
                    force: true,
                    link: false,
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match self.err(format!("remove container {}", short(id)), e) {
                DockerError::NotFound { .. } => Ok(()),
                e => Err(e),
            },
        }
    }

    /// The state and health of a container (by ID or name). Requests: 1.
    pub async fn inspect_state(
        &self,
        id_or_name: &str,
    ) -> Result<(ContainerState, Option<Health>), DockerError> {
        let info = self.inspect(id_or_name).await?;
        Ok((info.state, info.health))
    }

    /// State, health and volumes of a container (by ID or name). Requests: 1.
    pub async fn inspect(&self, id_or_name: &str) -> Result<ContainerInfo, DockerError> {
        let resp = self
            .docker
            .inspect_container(id_or_name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.err(format!("inspect container {}", short(id_or_name)), e))?;
        let state = resp.state.unwrap_or_default();
        use bollard::models::ContainerStateStatusEnum as S;
        let cs = match state.status {
            Some(S::RUNNING) => ContainerState::Running,
            Some(S::PAUSED) => ContainerState::Paused,
            Some(S::RESTARTING) => ContainerState::Restarting,
            Some(S::REMOVING) => ContainerState::Removing,
            Some(S::EXITED) => ContainerState::Exited(state.exit_code.unwrap_or(0)),
            Some(S::DEAD) => ContainerState::Dead,
            Some(S::CREATED) => ContainerState::Created,
            Some(S::STOPPING) => ContainerState::Running,
            Some(S::EMPTY) | None => {
                if state.running == Some(true) {
                    ContainerState::Running
                } else {
                    ContainerState::Exited(state.exit_code.unwrap_or(0))
                }
            }
        };
        let health = state.health.and_then(|h| h.status).and_then(|s| match s {
            HealthStatusEnum::STARTING => Some(Health::Starting),
            HealthStatusEnum::HEALTHY => Some(Health::Healthy),
            HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
            HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
        });
        let volumes = resp
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.typ.as_deref() == Some("volume"))
            .filter_map(|m| {
                Some(ObservedMount {
                    name: m.name?,
                    destination: m.destination.unwrap_or_default(),
                })
            })
            .collect();
        let addresses = resp
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(net, e)| Some((net, e.ip_address.filter(|ip| !ip.is_empty())?)))
            .collect();
        Ok(ContainerInfo {
            id: resp.id.unwrap_or_default(),
            name: resp
                .name
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            state: cs,
            health,
            volumes,
            health_budget: resp
                .config
                .as_ref()
                .and_then(|c| c.healthcheck.as_ref())
                .and_then(health_budget),
            stop_timeout: resp.config.and_then(|c| c.stop_timeout),
            addresses,
        })
    }
}

/// How long Docker may take to call a container with this health check healthy or
/// unhealthy: start period + (interval + timeout) × retries, with Docker's defaults (30 s, 30 s,
/// 3, 0). `None` for no health check (`NONE`, or no test).
fn health_budget(h: &bollard::models::HealthConfig) -> Option<std::time::Duration> {
    let test = h.test.as_deref().unwrap_or_default();
    if test.first().map(String::as_str) == Some("NONE") {
        return None;
    }
    let ns = |v: Option<i64>, default: u64| {
        std::time::Duration::from_nanos(
            v.and_then(|n| u64::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or(default * 1_000_000_000),
        )
    };
    let retries = h
        .retries
        .and_then(|r| u32::try_from(r).ok())
        .filter(|r| *r > 0)
        .unwrap_or(3);
    Some(ns(h.start_period, 0) + (ns(h.interval, 30) + ns(h.timeout, 30)) * retries)
}

/// One container, inspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub state: ContainerState,
    pub health: Option<Health>,
    /// Every volume it mounts (named and anonymous).
    pub volumes: Vec<ObservedMount>,
    /// Its own stop timeout in seconds (`stop_grace_period` when it was created).
    pub stop_timeout: Option<i64>,
    /// Engine-side network name → its IPv4 address there.
    pub addresses: BTreeMap<String, String>,
    /// How long its health check (the Compose file's or the image's) may take to decide:
    /// start period + (interval + timeout) × retries, Docker's defaults where unset. `None`:
    /// it has none.
    pub health_budget: Option<std::time::Duration>,
}

impl ContainerInfo {
    /// Whether it runs (or will run again by itself).
    pub fn running(&self) -> bool {
        matches!(
            self.state,
            ContainerState::Running | ContainerState::Restarting | ContainerState::Paused
        )
    }

    /// The anonymous volumes it mounts (Engine-named: 64 hex digits) at paths where `spec`
    /// mounts no named volume, bind or tmpfs: what a replacement should mount again.
    pub fn anonymous_volumes(&self, spec: &ServiceSpec) -> Vec<ObservedMount> {
        self.volumes
            .iter()
            .filter(|v| v.name.len() == 64 && v.name.chars().all(|c| c.is_ascii_hexdigit()))
            .filter(|v| {
                !spec.mounts.iter().any(|m| {
                    m.target == v.destination && !matches!(m.source, MountSource::Anonymous)
                })
            })
            .cloned()
            .collect()
    }
}

/// Mounts the old container's anonymous volumes again: an anonymous mount at the same path
/// becomes that volume; other paths (an image's `VOLUME`) get an explicit volume mount.
fn reuse_anonymous_volumes(body: &mut ContainerCreateBody, reuse: &[ObservedMount]) {
    if reuse.is_empty() {
        return;
    }
    let host = body.host_config.get_or_insert_with(Default::default);
    let mounts = host.mounts.get_or_insert_with(Vec::new);
    for v in reuse {
        match mounts
            .iter_mut()
            .find(|m| m.target.as_deref() == Some(v.destination.as_str()))
        {
            Some(m) if m.typ == Some(MountType::VOLUME) && m.source.is_none() => {
                m.source = Some(v.name.clone());
            }
            Some(_) => {}
            None => mounts.push(Mount {
                target: Some(v.destination.clone()),
                source: Some(v.name.clone()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }),
        }
    }
}

/// The create warnings that say the Engine dropped a requested option ("... discarded.").
fn discarded_warnings(warnings: &[String]) -> Vec<String> {
    warnings
        .iter()
        .filter(|w| w.to_ascii_lowercase().contains("discarded"))
        .map(|w| w.trim().trim_end_matches('.').to_string())
        .collect()
}

pub(super) fn short(id: &str) -> &str {
    if id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::fixtures::stack;
    use crate::model::MountSpec;

    #[test]
    fn discarded_options_are_found_in_create_warnings() {
        let w = vec![
            "Your kernel does not support memory swappiness capabilities or the cgroup is not \
             mounted. Memory swappiness discarded."
                .to_string(),
            "Your kernel does not support swap limit capabilities or the cgroup is not mounted. \
             Memory limited without swap."
                .to_string(),
            "linux does not support CPU percent. Percent discarded.".to_string(),
        ];
        assert_eq!(
            discarded_warnings(&w),
            [
                "Your kernel does not support memory swappiness capabilities or the cgroup is \
                 not mounted. Memory swappiness discarded",
                "linux does not support CPU percent. Percent discarded",
            ]
        );
        assert!(discarded_warnings(&[]).is_empty());
    }

    /// The time an image's own health check may take: what berth waits for beyond
    /// --health-timeout (vaultwarden's 60 s interval must not time out at 60 s).
    #[test]
    fn a_health_checks_budget_follows_its_interval_retries_and_start_period() {
        use bollard::models::HealthConfig;
        let s = |n: i64| n * 1_000_000_000;
        let vaultwarden = HealthConfig {
            test: Some(vec!["CMD".into(), "/healthcheck.sh".into()]),
            interval: Some(s(60)),
            timeout: Some(s(10)),
            ..Default::default()
        };
        assert_eq!(health_budget(&vaultwarden), Some(Duration::from_secs(210)));
        let started = HealthConfig {
            test: Some(vec!["CMD".into(), "true".into()]),
            start_period: Some(s(40)),
            retries: Some(5),
            ..Default::default()
        };
        assert_eq!(
            health_budget(&started),
            Some(Duration::from_secs(40 + 60 * 5))
        );
        let none = HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        };
        assert_eq!(health_budget(&none), None);
    }

    #[test]
    fn anonymous_volumes_are_reused_at_the_same_path() {
        let spec = ServiceSpec {
            mounts: vec![
                MountSpec {
                    target: "/cache".into(),
                    source: MountSource::Anonymous,
                    read_only: false,
                },
                MountSpec {
                    target: "/data".into(),
                    source: MountSource::Volume {
                        name: "web_data".into(),
                        nocopy: false,
                        subpath: None,
                        selinux: None,
                    },
                    read_only: false,
                },
            ],
            ..Default::default()
        };
        let anon = |n: char| n.to_string().repeat(64);
        let info = ContainerInfo {
            id: "x".into(),
            name: "web-app-1".into(),
            state: ContainerState::Running,
            health: None,
            health_budget: None,
            stop_timeout: None,
            addresses: Default::default(),
            volumes: vec![
                ObservedMount {
                    name: anon('a'),
                    destination: "/cache".into(),
                },
                ObservedMount {
                    name: "web_data".into(),
                    destination: "/data".into(),
                },
                ObservedMount {
                    name: anon('b'),
                    destination: "/var/lib/db".into(),
                },
            ],
        };
        let reuse = info.anonymous_volumes(&spec);
        assert_eq!(reuse.len(), 2);
        let mut body = container_create_body("default", &stack(), "app", &spec, 1, "web-app-1")
            .unwrap()
            .body;
        reuse_anonymous_volumes(&mut body, &reuse);
        let mounts = body.host_config.unwrap().mounts.unwrap();
        let at = |t: &str| {
            mounts
                .iter()
                .find(|m| m.target.as_deref() == Some(t))
                .unwrap()
        };
        assert_eq!(at("/cache").source, Some(anon('a')));
        assert_eq!(at("/data").source.as_deref(), Some("web_data"));
        assert_eq!(at("/var/lib/db").source, Some(anon('b')));
        assert_eq!(at("/var/lib/db").typ, Some(MountType::VOLUME));
    }
}
