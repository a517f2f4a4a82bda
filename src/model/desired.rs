//! What the config repository declares: [`Desired`], its stacks, networks and volumes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::*;

/// Everything the config repository declares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// Stacks by name. Two stacks with the same name are a validation error, so this is a map.
    pub stacks: BTreeMap<String, StackSpec>,
    /// Host settings (`berth.yaml` documents): files, directories, sysctls, units.
    pub host: host::HostSpec,
    /// The network edge (`berth.yaml` documents): address sets, firewall, `kind: Route`, proxy.
    /// Routes of services live on their stack ([`StackSpec::routes`]); see [`Desired::routes`].
    pub edge: edge::EdgeSpec,
    /// Scheduled work (`berth.yaml` documents): jobs, backups, prunes, and the service defaults.
    pub jobs: jobs::JobsSpec,
}

impl Desired {
    /// `kind: Defaults`: services that set no `logging` get the default one.
    pub fn apply_defaults(&mut self) {
        let Some(logging) = self.jobs.defaults.as_ref().and_then(|d| d.logging.clone()) else {
            return;
        };
        for svc in self
            .stacks
            .values_mut()
            .flat_map(|s| s.services.values_mut())
        {
            if svc.logging.is_none() {
                svc.logging = Some(logging.clone());
            }
        }
    }

    /// Every route: the stacks' `x-berth.routes` (by stack name), then the `kind: Route` documents.
    pub fn routes(&self) -> impl Iterator<Item = &edge::RouteSpec> {
        self.stacks
            .values()
            .flat_map(|s| s.routes.iter())
            .chain(self.edge.routes.iter())
    }
}

/// One Compose project: a folder with a Compose file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StackSpec {
    /// The Compose project name (top-level `name:`, else the folder name, normalised the way
    /// Compose does: lower case, only `[a-z0-9_-]`).
    pub name: String,
    /// The Compose file, relative to the config root (for messages and the config_files label).
    pub file: PathBuf,
    /// The folder holding the Compose file, absolute (relative bind mounts resolve against it).
    pub dir: PathBuf,
    pub services: BTreeMap<String, ServiceSpec>,
    /// Networks by their key in the Compose file.
    pub networks: BTreeMap<String, NetworkSpec>,
    /// Volumes by their key in the Compose file.
    pub volumes: BTreeMap<String, VolumeSpec>,
    /// Services declared but not deployed, with the reason (e.g. an inactive profile). Shown in
    /// every plan so that nothing the user wrote disappears silently.
    pub skipped: BTreeMap<String, String>,
    /// What the loader accepted but does not apply, or accepted in a deprecated form (e.g.
    /// `develop:`, `external: {name: ...}`), located; sorted. Printed as notes, never errors.
    pub notes: Vec<crate::diag::Diagnostic>,
    /// `x-berth.routes` of the services, in service then declaration order.
    pub routes: Vec<edge::RouteSpec>,
}

/// A network as the Engine will know it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// The Engine-side name (`<stack>_<key>` unless `name:` or external).
    pub name: String,
    /// External networks are never created or removed; they must exist.
    #[serde(default, skip_serializing_if = "is_false")]
    pub external: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub internal: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub attachable: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_ipv6: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipam {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamPool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, String>,
}

/// A named volume as the Engine will know it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// The Engine-side name (`<stack>_<key>` unless `name:` or external).
    pub name: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub external: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Desired {
    /// Every stack's notes, in stack order.
    pub fn notes(&self) -> impl Iterator<Item = &crate::diag::Diagnostic> {
        self.stacks.values().flat_map(|s| s.notes.iter())
    }

    /// Re-root every host path that was resolved under `from` onto `to`: stack folders, bind
    /// sources, secret/config files. `berth serve` loads a commit from its own exported tree but
    /// applies it from one stable folder, so a bind mount's source does not change (and replace
    /// the container) just because the commit did.
    pub fn rebase(&mut self, from: &std::path::Path, to: &std::path::Path) {
        let move_path = |p: &str| -> Option<String> {
            std::path::Path::new(p)
                .strip_prefix(from)
                .ok()
                .map(|rest| to.join(rest).to_string_lossy().into_owned())
        };
        for stack in self.stacks.values_mut() {
            if let Ok(rest) = stack.dir.strip_prefix(from) {
                stack.dir = to.join(rest);
            }
            for spec in stack.services.values_mut() {
                for m in &mut spec.mounts {
                    match &mut m.source {
                        MountSource::Bind { path, .. } => {
                            if let Some(p) = move_path(path) {
                                *path = p;
                            }
                        }
                        MountSource::File { file, .. } if !file.is_empty() => {
                            if let Some(p) = move_path(file) {
                                *file = p;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod rebase_tests {
    use super::*;

    #[test]
    fn rebase_moves_only_paths_under_the_old_root() {
        let mut spec = ServiceSpec::default();
        for (target, path) in [("/a", "/state/trees/abc/web/conf"), ("/b", "/etc/hosts")] {
            spec.mounts.push(MountSpec {
                target: target.into(),
                source: MountSource::Bind {
                    path: path.into(),
                    selinux: None,
                    propagation: None,
                    create_host_path: true,
                },
                read_only: false,
            });
        }
        let mut d = Desired::default();
        d.stacks.insert(
            "web".into(),
            StackSpec {
                name: "web".into(),
                dir: "/state/trees/abc/web".into(),
                services: BTreeMap::from([("app".into(), spec)]),
                ..Default::default()
            },
        );
        d.rebase(
            std::path::Path::new("/state/trees/abc"),
            std::path::Path::new("/state/worktree"),
        );
        let stack = &d.stacks["web"];
        assert_eq!(stack.dir, std::path::Path::new("/state/worktree/web"));
        let paths: Vec<_> = stack.services["app"]
            .mounts
            .iter()
            .map(|m| match &m.source {
                MountSource::Bind { path, .. } => path.clone(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(paths, ["/state/worktree/web/conf", "/etc/hosts"]);
    }
}
