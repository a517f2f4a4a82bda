//! Observe: what runs on the Engine, read from as few list requests as possible, and the
//! parsing of what the Engine reports.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    ListContainersOptions, ListImagesOptions, ListNetworksOptions, ListVolumesOptions,
};

use super::{DockerError, Engine, normalize_image_ref};
use crate::model::edge::Upstream;
use crate::model::{
    ContainerState, Desired, Health, Observed, ObservedContainer, ObservedMount, ObservedObject,
    labels,
};

impl Engine {
    /// What runs on the Engine. Requests: 2 (berth's containers, images); plus 1 to look up, by
    /// exact name, containers that might hold a name berth is about to create; plus 1 network
    /// list and/or 1 volume list only when the container list cannot prove that every desired
    /// network / volume exists, or when a stack berth owns left the config; plus 1 image
    /// inspect per image of a routed service whose Compose file does not expose the route's
    /// port (its `EXPOSE` decides). Never mutates. A no-op reconcile without such routes is
    /// exactly the first 2.
    pub async fn observe(&self, desired: &Desired) -> Result<Observed, DockerError> {
        // Only berth's containers (any instance's: another instance holding a name is a
        // conflict too). The Engine's cost grows with every container it lists, so a host full
        // of unrelated containers would slow every reconcile down.
        let list_containers = self.docker.list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(std::collections::HashMap::from([(
                "label".to_string(),
                vec![format!("{}=true", labels::MANAGED)],
            )])),
            ..Default::default()
        }));
        let list_images = self.docker.list_images(Some(ListImagesOptions {
            all: false,
            ..Default::default()
        }));
        let (containers, images) = tokio::join!(list_containers, list_images);
        let containers = containers.map_err(|e| self.err("list containers", e))?;
        let images = images.map_err(|e| self.err("list images", e))?;

        let mut containers: Vec<ObservedContainer> = containers
            .into_iter()
            .filter_map(observed_container)
            .collect();
        // A name berth is about to create may be held by a container it does not own: ask for
        // exactly those names (one more request, only when something is to be created).
        let missing = names_to_create(desired, &containers);
        if !missing.is_empty() {
            containers.extend(self.containers_named(&missing).await?);
        }

        let mut image_map = BTreeMap::new();
        for img in images {
            for r in img.repo_tags.iter().chain(img.repo_digests.iter()) {
                if r.starts_with("<none>") {
                    continue;
                }
                image_map.insert(normalize_image_ref(r), img.id.clone());
            }
        }

        let image_ports = self.image_ports(desired, &image_map).await?;
        let (need_networks, need_volumes) = needs_listing(desired, &containers, &self.instance);
        let networks = if need_networks {
            Some(self.list_networks().await?)
        } else {
            None
        };
        let volumes = if need_volumes {
            Some(self.list_volumes().await?)
        } else {
            None
        };
        Ok(Observed {
            containers,
            images: image_map,
            image_ports,
            networks,
            volumes,
            reloaded: Default::default(),
            host: Default::default(),
            proxy: None,
            proxy_loaded: Default::default(),
            jobs: Default::default(),
        })
    }

    /// Containers whose name is exactly one of `names`. Requests: 1.
    /// The TCP ports the images of routed services expose, for the routes whose port the
    /// Compose file does not name: one inspect per such image on the Engine.
    async fn image_ports(
        &self,
        desired: &Desired,
        images: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, BTreeSet<u16>>, DockerError> {
        let mut ids = BTreeSet::new();
        for r in desired.routes() {
            let Upstream::Service {
                stack,
                service,
                port,
            } = &r.to
            else {
                continue;
            };
            let Some(sv) = desired
                .stacks
                .get(stack)
                .and_then(|s| s.services.get(service))
            else {
                continue;
            };
            if !sv.exposes(*port)
                && let Some(id) = images.get(&normalize_image_ref(&sv.image))
            {
                ids.insert(id.clone());
            }
        }
        let mut out = BTreeMap::new();
        for id in ids {
            let img = self
                .docker
                .inspect_image(&id)
                .await
                .map_err(|e| self.err("inspect image", e))?;
            let ports = img
                .config
                .and_then(|c| c.exposed_ports)
                .unwrap_or_default()
                .iter()
                .filter_map(|p| match p.split_once('/') {
                    Some((n, "tcp")) => n.parse().ok(),
                    Some(_) => None,
                    None => p.parse().ok(),
                })
                .collect();
            out.insert(id, ports);
        }
        Ok(out)
    }

    async fn containers_named(
        &self,
        names: &[String],
    ) -> Result<Vec<ObservedContainer>, DockerError> {
        // The Engine matches `name` filters as regular expressions against `/<name>`.
        let patterns = names
            .iter()
            .map(|n| format!("^/{}$", regex_escape(n)))
            .collect();
        let found = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(std::collections::HashMap::from([(
                    "name".to_string(),
                    patterns,
                )])),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.err("list containers by name", e))?;
        Ok(found
            .into_iter()
            .filter_map(observed_container)
            .filter(|c| !c.managed() && names.contains(&c.name))
            .collect())
    }

    /// Every network, by name. Requests: 1.
    pub async fn list_networks(&self) -> Result<BTreeMap<String, ObservedObject>, DockerError> {
        let nets = self
            .docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(|e| self.err("list networks", e))?;
        Ok(nets
            .into_iter()
            .filter_map(|n| {
                let name = n.name?;
                let labels = n.labels.unwrap_or_default();
                Some((name.clone(), observed_object(name, &labels)))
            })
            .collect())
    }

    /// Every volume, by name. Requests: 1.
    pub async fn list_volumes(&self) -> Result<BTreeMap<String, ObservedObject>, DockerError> {
        let vols = self
            .docker
            .list_volumes(None::<ListVolumesOptions>)
            .await
            .map_err(|e| self.err("list volumes", e))?;
        Ok(vols
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name.clone(), observed_object(v.name, &v.labels)))
            .collect())
    }
}

/// The container names the desired state needs that no listed (berth) container holds.
fn names_to_create(desired: &Desired, listed: &[ObservedContainer]) -> Vec<String> {
    let mut names = Vec::new();
    for stack in desired.stacks.values() {
        for (service, spec) in &stack.services {
            for n in 1..=spec.replicas.max(1) {
                let name = crate::model::container_name(&stack.name, service, spec, n);
                if !listed.iter().any(|c| c.name == name) {
                    names.push(name);
                }
            }
        }
    }
    names
}

/// `s` with regular-expression metacharacters escaped (container names allow `.` and `-`).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$-".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn observed_object(name: String, labels: &HashMap<String, String>) -> ObservedObject {
    ObservedObject {
        name,
        managed: labels.get(labels::MANAGED).map(String::as_str) == Some("true"),
        stack: labels.get(labels::STACK).cloned(),
        instance: labels.get(labels::INSTANCE).cloned(),
    }
}

/// One list entry → [`ObservedContainer`]. Entries without an ID are skipped.
fn observed_container(c: ContainerSummary) -> Option<ObservedContainer> {
    let id = c.id?;
    let names = c.names.unwrap_or_default();
    // Legacy links add `/other/alias` names; the container's own name has a single `/`.
    let name = names
        .iter()
        .find(|n| n.trim_start_matches('/').find('/').is_none())
        .or(names.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    let status = c.status.unwrap_or_default();
    let state = parse_state(c.state, &status);
    let health = parse_health(&status);
    let nets = c
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    let addresses = nets
        .iter()
        .filter_map(|(net, e)| {
            let ip = e.ip_address.as_deref().filter(|ip| !ip.is_empty())?;
            Some((net.clone(), ip.to_string()))
        })
        .collect();
    let mut networks: Vec<String> = nets.into_keys().collect();
    networks.sort();
    let mut volumes: Vec<ObservedMount> = c
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
    volumes.sort_by(|a, b| a.destination.cmp(&b.destination));
    Some(ObservedContainer {
        id,
        name,
        labels: c.labels.unwrap_or_default().into_iter().collect(),
        state,
        health,
        image_id: c.image_id.unwrap_or_default(),
        networks,
        volumes,
        addresses,
    })
}

/// The container list's `State` (`running`, `exited`, ...) and `Status`
/// (`Exited (137) 2 minutes ago`) → [`ContainerState`] with the exit code.
pub fn parse_state(state: Option<ContainerSummaryStateEnum>, status: &str) -> ContainerState {
    use ContainerSummaryStateEnum as S;
    match state {
        Some(S::RUNNING) | Some(S::STOPPING) => ContainerState::Running,
        Some(S::PAUSED) => ContainerState::Paused,
        Some(S::RESTARTING) => ContainerState::Restarting,
        Some(S::REMOVING) => ContainerState::Removing,
        Some(S::DEAD) => ContainerState::Dead,
        Some(S::CREATED) => ContainerState::Created,
        Some(S::EXITED) => ContainerState::Exited(parse_exit_code(status).unwrap_or(0)),
        Some(S::EMPTY) | None => {
            // Fall back on the status text.
            let s = status.trim_start();
            if s.starts_with("Up") {
                if s.contains("(Paused)") {
                    ContainerState::Paused
                } else {
                    ContainerState::Running
                }
            } else if s.starts_with("Restarting") {
                ContainerState::Restarting
            } else if s.starts_with("Exited") {
                ContainerState::Exited(parse_exit_code(s).unwrap_or(0))
            } else if s.starts_with("Dead") {
                ContainerState::Dead
            } else if s.starts_with("Removal") {
                ContainerState::Removing
            } else {
                ContainerState::Created
            }
        }
    }
}

/// `Exited (137) 2 minutes ago` → 137.
fn parse_exit_code(status: &str) -> Option<i64> {
    let start = status.find('(')?;
    let end = status[start..].find(')')? + start;
    status[start + 1..end].trim().parse().ok()
}

/// `Up 3 minutes (healthy)` → Healthy; `(unhealthy)`, `(health: starting)`; else `None`.
pub fn parse_health(status: &str) -> Option<Health> {
    if status.contains("(healthy)") {
        Some(Health::Healthy)
    } else if status.contains("(unhealthy)") {
        Some(Health::Unhealthy)
    } else if status.contains("(health: starting)") {
        Some(Health::Starting)
    } else {
        None
    }
}

/// Whether `observe` must list networks and volumes: a desired network / volume is not
/// proven to exist by the container list (a berth container attached to it / mounting it; for
/// external ones any container), or a stack berth owns left the config (its networks and
/// volumes must be found for removal).
fn needs_listing(
    desired: &Desired,
    containers: &[ObservedContainer],
    instance: &str,
) -> (bool, bool) {
    let mut attached_managed = BTreeSet::new();
    let mut attached_any = BTreeSet::new();
    let mut mounted_managed = BTreeSet::new();
    let mut mounted_any = BTreeSet::new();
    let mut stack_left = false;
    for c in containers {
        for n in &c.networks {
            attached_any.insert(n.as_str());
        }
        for v in &c.volumes {
            mounted_any.insert(v.name.as_str());
        }
        if c.managed() {
            attached_managed.extend(c.networks.iter().map(String::as_str));
            mounted_managed.extend(c.volumes.iter().map(|v| v.name.as_str()));
            if let Some(stack) = c.stack()
                && c.owned_by(instance)
                && !desired.stacks.contains_key(stack)
            {
                stack_left = true;
            }
        }
    }
    let mut need_networks = stack_left;
    let mut need_volumes = stack_left;
    for stack in desired.stacks.values() {
        for n in stack.networks.values() {
            let proven = if n.external {
                attached_any.contains(n.name.as_str())
            } else {
                attached_managed.contains(n.name.as_str())
            };
            need_networks |= !proven;
        }
        for v in stack.volumes.values() {
            let proven = if v.external {
                mounted_any.contains(v.name.as_str())
            } else {
                mounted_managed.contains(v.name.as_str())
            };
            need_volumes |= !proven;
        }
    }
    (need_networks, need_volumes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::docker::fixtures::stack;
    use crate::model::{NetworkSpec, VolumeSpec};

    #[test]
    fn states_from_the_list() {
        use ContainerSummaryStateEnum as S;
        assert_eq!(
            parse_state(Some(S::EXITED), "Exited (137) 2 minutes ago"),
            ContainerState::Exited(137)
        );
        assert_eq!(
            parse_state(Some(S::EXITED), "Exited (0) 1 second ago"),
            ContainerState::Exited(0)
        );
        assert_eq!(
            parse_state(Some(S::RUNNING), "Up 3 seconds (healthy)"),
            ContainerState::Running
        );
        assert_eq!(
            parse_state(Some(S::CREATED), "Created"),
            ContainerState::Created
        );
        assert_eq!(
            parse_state(None, "Exited (2) 5 hours ago"),
            ContainerState::Exited(2)
        );
        assert_eq!(
            parse_state(None, "Up 2 hours (Paused)"),
            ContainerState::Paused
        );
        assert_eq!(
            parse_health("Up 3 seconds (healthy)"),
            Some(Health::Healthy)
        );
        assert_eq!(
            parse_health("Up 3 minutes (unhealthy)"),
            Some(Health::Unhealthy)
        );
        assert_eq!(
            parse_health("Up 1 second (health: starting)"),
            Some(Health::Starting)
        );
        assert_eq!(parse_health("Up 1 second"), None);
    }

    fn container(
        name: &str,
        stack: &str,
        networks: &[&str],
        volumes: &[&str],
    ) -> ObservedContainer {
        ObservedContainer {
            id: name.into(),
            name: name.into(),
            labels: BTreeMap::from([
                (labels::MANAGED.to_string(), "true".to_string()),
                (labels::STACK.to_string(), stack.to_string()),
            ]),
            state: ContainerState::Running,
            health: None,
            image_id: String::new(),
            networks: networks.iter().map(|s| s.to_string()).collect(),
            volumes: volumes
                .iter()
                .map(|v| ObservedMount {
                    name: v.to_string(),
                    destination: "/d".into(),
                })
                .collect(),
            addresses: Default::default(),
        }
    }

    #[test]
    fn networks_and_volumes_are_listed_only_when_needed() {
        let mut st = stack();
        st.networks.insert(
            "default".into(),
            NetworkSpec {
                name: "web_default".into(),
                ..Default::default()
            },
        );
        st.volumes.insert(
            "data".into(),
            VolumeSpec {
                name: "web_data".into(),
                ..Default::default()
            },
        );
        let desired = Desired {
            stacks: BTreeMap::from([("web".to_string(), st)]),
            ..Default::default()
        };
        let c = container("web-app-1", "web", &["web_default"], &["web_data"]);
        assert_eq!(
            needs_listing(&desired, std::slice::from_ref(&c), "default"),
            (false, false)
        );
        // Not yet attached: cannot prove the network exists.
        let bare = container("web-app-1", "web", &[], &["web_data"]);
        assert_eq!(needs_listing(&desired, &[bare], "default"), (true, false));
        // An unowned container's attachment proves nothing for a non-external network.
        let mut unowned = c.clone();
        unowned.labels.clear();
        assert_eq!(needs_listing(&desired, &[unowned], "default"), (true, true));
        // A stack left the config.
        let gone = container("old-app-1", "old", &[], &[]);
        assert_eq!(
            needs_listing(&desired, &[c.clone(), gone.clone()], "default"),
            (true, true)
        );
        // ... but another instance's stack is not ours to clean up.
        assert_eq!(needs_listing(&desired, &[c, gone], "prod"), (false, false));
    }
}
