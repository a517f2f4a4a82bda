//! The data the planner works on: what the config repository declares ([`Desired`]) and what the
//! Docker Engine runs ([`Observed`]). Both are plain data: no IO happens here.
//!
//! A [`ServiceSpec`] is the *normalised* form of one Compose service: short and long syntax have
//! been folded into one shape, defaults are filled in, unordered lists are sorted. Its canonical
//! JSON (see [`ServiceSpec::canonical_json`]) is what berth hashes to decide "changed", and what it
//! stores in the container's `io.berth.spec` label so that the next plan can say *which* field
//! changed. Secret values never appear in that JSON: [`Secret`] serialises as a digest.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod edge;
pub mod host;
pub mod jobs;

/// Label keys berth writes on every object it creates. The ownership label is the only thing
/// that lets berth remove an object.
pub mod labels {
    /// `"true"` on every container, network and volume berth created. Nothing else is pruned.
    pub const MANAGED: &str = "io.berth.managed";
    /// The berth instance that owns the object (`--instance`, default `default`). Two berth
    /// instances on one Engine never touch each other's objects.
    pub const INSTANCE: &str = "io.berth.instance";
    /// The stack (Compose project) name.
    pub const STACK: &str = "io.berth.stack";
    /// The service name within the stack.
    pub const SERVICE: &str = "io.berth.service";
    /// `sha256:<hex>` of the service's canonical spec.
    pub const SPEC_HASH: &str = "io.berth.spec-hash";
    /// The canonical spec itself (JSON, secrets as digests), for field-by-field reasons.
    pub const SPEC: &str = "io.berth.spec";
    /// Compose's own labels, so `docker compose ls` / `docker ps --filter` group berth's stacks.
    pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
    pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
    pub const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";
    pub const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";
    pub const COMPOSE_CONFIG_FILES: &str = "com.docker.compose.project.config_files";
    pub const COMPOSE_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
    pub const COMPOSE_NETWORK: &str = "com.docker.compose.network";
    pub const COMPOSE_VOLUME: &str = "com.docker.compose.volume";
}

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

/// A string whose value must never be shown: environment values, secret file contents.
///
/// `Debug` and `Display` print `(hidden)`; `Serialize` writes `sha256:<hex>` of the value, so
/// that canonical JSON, hashes and labels can tell "changed" without carrying the value.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value itself. Call only where it is handed to the Engine.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// `sha256:<hex>` of the value: what plans compare and labels store.
    pub fn digest(&self) -> String {
        sha256_hex(self.0.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(hidden)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(hidden)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.digest())
    }
}

/// A secret read back from berth's own state file (`crate::jobs::state`): the string as it is.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// When to pull the image. Compose's `pull_policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Pull only when the engine does not have the image (Compose default; also `if_not_present`).
    #[default]
    Missing,
    /// Pull on every apply.
    Always,
    /// Never pull; a missing image is an error.
    Never,
    /// Build the image (not supported yet: plan reports it).
    Build,
}

/// Which condition a dependency must reach before the dependent starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependsCondition {
    #[default]
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependsOn {
    pub condition: DependsCondition,
    /// `required: false` lets the dependent start when the dependency is not declared/deployed.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub required: bool,
    /// `restart: true`: restart the dependent when the dependency is replaced.
    #[serde(default, skip_serializing_if = "is_false")]
    pub restart: bool,
}

/// One published port, normalised from short (`127.0.0.1:8080-8081:80-81/udp`) or long syntax.
/// Ranges are expanded to one entry per port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortSpec {
    /// Container port.
    pub target: u16,
    /// Host port; `None` publishes on a random host port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<u16>,
    /// Host IP to bind (e.g. `127.0.0.1`); `None` for all addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// `tcp` (default), `udp` or `sctp`.
    pub protocol: String,
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = &self.host_ip {
            write!(f, "{ip}:")?;
        }
        match self.published {
            Some(p) => write!(f, "{p}:{}", self.target)?,
            None => write!(f, "{}", self.target)?,
        }
        if self.protocol != "tcp" {
            write!(f, "/{}", self.protocol)?;
        }
        Ok(())
    }
}

/// What backs a mount.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountSource {
    /// A named volume; `name` is the Engine-side name (`<stack>_<key>` or as declared).
    Volume {
        name: String,
        #[serde(default, skip_serializing_if = "is_false")]
        nocopy: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subpath: Option<String>,
        /// `z` / `Z`: the Engine relabels the volume's data for SELinux (short syntax
        /// `data:/data:z`). Only the legacy `Binds` form carries it: `name:target:rw,z`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        selinux: Option<String>,
    },
    /// An anonymous volume (Compose `- /data`): the Engine names it.
    Anonymous,
    /// A host path, absolute (relative paths were resolved against the stack folder).
    Bind {
        path: String,
        /// `z` / `Z` SELinux relabelling.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        selinux: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        propagation: Option<String>,
        /// Compose's `bind.create_host_path` (default true).
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        create_host_path: bool,
    },
    Tmpfs {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
    },
    /// A Compose secret or config (file-based): `file` is the absolute host path, `digest` the
    /// content hash so that a changed file replaces the container, without showing the content.
    File {
        file: String,
        digest: String,
        /// The content, when it does not come from a host file (a Compose secret/config with
        /// `environment:` or `content:`); then `file` is empty and the content must be copied
        /// into the container. Never serialised (the digest stands for it).
        #[serde(skip)]
        content: Option<Secret>,
        /// Owner and permissions of a copied file (`content`/`environment` secrets and configs:
        /// the service's `uid`, `gid`, `mode`; Compose writes them into the copy's tar header,
        /// default 0:0 and 0444). A bind-mounted host file keeps the host's (Compose ignores
        /// them there, and so does berth, with a note).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MountSpec {
    /// Path inside the container.
    pub target: String,
    pub source: MountSource,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
}

/// How a service joins one network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// `link_local_ips` (`EndpointSettings.IPAMConfig.LinkLocalIPs`), in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<String>,
    /// Endpoint driver options (`EndpointSettings.DriverOpts`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["NONE"]` when disabled, else `["CMD", ...]` / `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    /// Durations in nanoseconds, as the Engine takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceMapping {
    pub host: String,
    pub container: String,
    pub permissions: String,
}

/// A request for devices from a device driver (`gpus`, `deploy.resources.reservations.devices`):
/// the Engine's `DeviceRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Number of devices; `-1` = all. `None` when `device_ids` are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_ids: Vec<String>,
    /// Capabilities a device must all have (sorted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// `blkio_config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioConfig {
    /// 10..=1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    /// Device path → weight.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weight_device: BTreeMap<String, u16>,
    /// Device path → bytes per second.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub device_read_bps: BTreeMap<String, i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub device_write_bps: BTreeMap<String, i64>,
    /// Device path → operations per second.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub device_read_iops: BTreeMap<String, i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub device_write_iops: BTreeMap<String, i64>,
}

/// One service, normalised. Every field that changes the container is here; nothing else is.
///
/// Field rules that keep the hash stable across berth versions: every field is skipped when at
/// its default, so adding a new optional field does not change existing hashes; unordered
/// collections are `BTreeMap`s or sorted `Vec`s.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceSpec {
    /// The image reference as written (after interpolation).
    pub image: String,
    /// The service has a `build:` section. Planning it reports "build not supported yet".
    #[serde(skip_serializing_if = "is_false")]
    pub build: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub pull_policy: PullPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Environment after env_file and `environment` were merged. A variable listed without a
    /// value and not set in the environment is left out, as Compose does.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, Secret>,
    /// Sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// Sorted by target. Named/anonymous volumes, binds, tmpfs mounts, secrets and configs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
    /// Engine-side network name → attachment. Empty with `network_mode` set.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, NetworkAttachment>,
    /// `host`, `none`, `bridge`, `service:<name>` or `container:<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// User labels only (berth's and Compose's are added when the container is created).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `no` (default), `always`, `on-failure[:N]`, `unless-stopped`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, DependsOn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// Sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// `host:ip` entries, sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_opt: Vec<String>,
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    /// Bytes (`mem_limit` or `deploy.resources.limits.memory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_limit: Option<i64>,
    /// Bytes (`mem_reservation` or `deploy.resources.reservations.memory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_reservation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memswap_limit: Option<i64>,
    /// CPUs × 10⁹ (`cpus` or `deploy.resources.limits.cpus`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(skip_serializing_if = "is_false")]
    pub privileged: bool,
    /// Sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceMapping>,
    /// Sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// `container_name`: the one container's fixed name (then `replicas` must be 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// `scale` / `deploy.replicas`; default 1. Not part of the hash of one container: a
    /// scale change adds or removes containers without replacing the others.
    #[serde(skip)]
    pub replicas: u32,
    /// `expose`: container ports, as `80/tcp`, sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// `links` (`service` or `service:alias`), sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub stdin_open: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tty: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    /// Compose `deploy.mode` (`replicated` default, `global` = one per node = one here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_mode: Option<String>,
    /// `gpus` and `deploy.resources.reservations.devices`, in that order of the Compose file
    /// (reservations first, then `gpus`, as Compose does).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_requests: Vec<DeviceRequest>,
    /// `volumes_from`, normalised: `<service>` or `container:<name>`, then `:ro` when read-only
    /// (`:rw`, the default, is dropped). In the order written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    /// 0..=100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_swappiness: Option<i64>,
    #[serde(skip_serializing_if = "is_false")]
    pub oom_kill_disable: bool,
    /// Microseconds (CFS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<i64>,
    /// Microseconds (CFS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    /// Microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_rt_period: Option<i64>,
    /// Microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_rt_runtime: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio: Option<BlkioConfig>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_opt: BTreeMap<String, String>,
    /// UTS namespace (`host`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    /// Cgroup namespace: `host` or `private`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// `external_links` (`container[:alias]`), sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_links: Vec<String>,
    /// OCI annotations (Engine API 1.43+).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// `device_cgroup_rules` (`HostConfig.DeviceCgroupRules`), in the order written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    /// `cpu_count` (`HostConfig.CpuCount`; a Linux Engine ignores it, as with Compose).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<i64>,
    /// Files of the config repository that the service bind-mounts (a file, or a folder's
    /// files): repository-relative source path → content digest (`sha256:<hex>`). In the hash,
    /// so a changed Caddyfile reaches its container; empty (and omitted) without such mounts.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub config_files: BTreeMap<String, String>,
    /// `x-berth: {on_config_change: ...}`: what to do when only `config_files` changed.
    /// `None` = replace the container (the default). In the hash: changing it is a spec change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_config_change: Option<ConfigChangeAction>,
    /// `x-berth: {expose_publicly: true}`: ports published on all addresses are meant to be
    /// reachable from everywhere (the exposure guard's override). Not in the hash.
    #[serde(skip)]
    pub expose_publicly: bool,
    /// Where each published port is written in the Compose file (`PortSpec` as displayed →
    /// line, column of its `ports:` entry), for the exposure guard's messages. Not in the hash.
    #[serde(skip)]
    pub ports_at: BTreeMap<String, (u64, u64)>,
    /// The container path of a `Caddyfile` in a bind-mounted folder of the config repository
    /// (`./caddy:/etc/caddy:ro`): without `on_config_change`, a change to that folder is
    /// validated (`caddy adapt`) and reloaded (`caddy reload`) instead of recreating. Not in the
    /// hash (derived from the mounts, which are).
    #[serde(skip)]
    pub caddyfile: Option<String>,
}

impl ServiceSpec {
    /// What a change of only its bind-mounted config files does: `on_config_change`, else a
    /// Caddyfile's validate-and-reload, else `None` (the container is recreated).
    pub fn config_change_action(&self) -> Option<ConfigChangeAction> {
        self.on_config_change.clone().or_else(|| {
            self.caddyfile.as_ref().map(|path| {
                ConfigChangeAction::Exec(vec![
                    "sh".into(),
                    "-c".into(),
                    "caddy adapt --config \"$0\" --validate >/dev/null && caddy reload --config \"$0\"".into(),
                    path.clone(),
                ])
            })
        })
    }
}

/// How a service takes a changed config file without being replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigChangeAction {
    /// Send this signal to the container (`SIGHUP`, or a number).
    Signal(String),
    /// Run this command in the container (`["caddy", "reload", "--config", ...]`).
    Exec(Vec<String>),
}

impl ServiceSpec {
    /// The canonical JSON berth hashes and stores in the `io.berth.spec` label. Keys are sorted
    /// (serde_json's map is a BTreeMap), defaults are omitted, secrets are digests.
    pub fn canonical_json(&self) -> String {
        // Serialising through Value sorts every object's keys.
        let value = serde_json::to_value(self).expect("ServiceSpec always serialises");
        serde_json::to_string(&value).expect("Value always serialises")
    }

    /// `sha256:<hex>` of [`ServiceSpec::canonical_json`].
    pub fn spec_hash(&self) -> String {
        sha256_hex(self.canonical_json().as_bytes())
    }

    /// Whether the Compose file publishes or exposes this container port (`ports:` targets,
    /// `expose: [3000, 3000/tcp, 3000-3005]`). The image's own `EXPOSE` is
    /// [`Observed::image_ports`].
    pub fn exposes(&self, port: u16) -> bool {
        self.ports.iter().any(|p| p.target == port)
            || self.expose.iter().any(|e| {
                let e = e.split('/').next().unwrap_or(e);
                match e.split_once('-') {
                    Some((a, b)) => match (a.parse::<u16>(), b.parse::<u16>()) {
                        (Ok(a), Ok(b)) => a <= port && port <= b,
                        _ => false,
                    },
                    None => e.parse::<u16>() == Ok(port),
                }
            })
    }

    /// One digest for all of [`ServiceSpec::config_files`]: what a reload brought the
    /// container to.
    pub fn config_digest(&self) -> String {
        let json = serde_json::to_string(&self.config_files).unwrap_or_default();
        sha256_hex(json.as_bytes())
    }
}

/// The container name of a replica: `container_name`, else `<stack>-<service>-<n>` as Compose.
pub fn container_name(stack: &str, service: &str, spec: &ServiceSpec, number: u32) -> String {
    match &spec.container_name {
        Some(name) => name.clone(),
        None => format!("{stack}-{service}-{number}"),
    }
}

/// What berth sees on the Engine: one list of containers, one list of images, and, only when
/// the container list cannot prove them, networks and volumes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Every container on the Engine, owned or not (unowned ones matter for name conflicts).
    pub containers: Vec<ObservedContainer>,
    /// Image reference (as in `RepoTags`, e.g. `test/app:1`) → image ID (`sha256:...`).
    pub images: BTreeMap<String, String>,
    /// Image ID → the TCP ports its config exposes (`EXPOSE 3000`). Inspected only for the
    /// images of routed services whose Compose file does not expose the route's port.
    pub image_ports: BTreeMap<String, BTreeSet<u16>>,
    /// Network name → whether berth owns it. `None` when not listed (not needed for this plan).
    pub networks: Option<BTreeMap<String, ObservedObject>>,
    /// Volume name → whether berth owns it. `None` when not listed.
    pub volumes: Option<BTreeMap<String, ObservedObject>>,
    /// Container ID → the [`ServiceSpec::config_digest`] it was last reloaded with
    /// (`on_config_change`): its labels still name the config it was created with. Kept in the
    /// state dir (`reloads.json`), not on the Engine.
    pub reloaded: BTreeMap<String, String>,
    /// The host's files, sysctls and units berth declares or owns, and the inventory.
    pub host: host::ObservedHost,
    /// Caddy's config as its admin API returns it (`GET /config/`), when the config declares a
    /// `kind: Proxy`; `None` otherwise.
    pub proxy: Option<edge::ObservedProxy>,
    /// The routes berth last loaded into Caddy successfully (`@id` → the address dialled), from
    /// the state dir (`proxy-<instance>.json`): a route berth loaded that Caddy no longer
    /// serves, or sends elsewhere, is drift.
    pub proxy_loaded: BTreeMap<String, String>,
    /// The job table recorded by the last apply (the state dir), when the config declares
    /// jobs or the state dir holds some.
    pub jobs: jobs::ObservedJobs,
}

/// A network or volume on the Engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedObject {
    pub name: String,
    /// Carries `io.berth.managed=true`.
    pub managed: bool,
    /// The `io.berth.stack` label, if any.
    pub stack: Option<String>,
    /// The `io.berth.instance` label, if any (absent means [`DEFAULT_INSTANCE`]).
    pub instance: Option<String>,
}

impl ObservedObject {
    /// Created by this berth instance: the only networks/volumes it may remove.
    pub fn owned_by(&self, instance: &str) -> bool {
        self.managed && self.instance.as_deref().unwrap_or(DEFAULT_INSTANCE) == instance
    }
}

/// The instance name when none is given.
pub const DEFAULT_INSTANCE: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    /// Exited with this code.
    Exited(i64),
    Dead,
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContainerState::Created => f.write_str("created (never started)"),
            ContainerState::Running => f.write_str("running"),
            ContainerState::Paused => f.write_str("paused"),
            ContainerState::Restarting => f.write_str("restarting"),
            ContainerState::Removing => f.write_str("being removed"),
            ContainerState::Exited(code) => write!(f, "exited (code {code})"),
            ContainerState::Dead => f.write_str("dead"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// One container as listed by the Engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedContainer {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
    pub health: Option<Health>,
    /// The image ID the container was created from (`sha256:...`).
    pub image_id: String,
    /// Engine-side names of the networks it is attached to.
    pub networks: Vec<String>,
    /// The volumes it mounts (named and anonymous), with where.
    pub volumes: Vec<ObservedMount>,
    /// Engine-side network name → its IPv4 address there (what a proxy dials).
    pub addresses: BTreeMap<String, String>,
}

/// A volume mounted into an observed container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedMount {
    /// The Engine-side volume name (a hash for anonymous volumes).
    pub name: String,
    /// The path inside the container.
    pub destination: String,
}

impl ObservedContainer {
    /// Created by some berth instance.
    pub fn managed(&self) -> bool {
        self.labels.get(labels::MANAGED).map(String::as_str) == Some("true")
    }
    /// Created by this berth instance: the only containers it may stop, replace or remove.
    pub fn owned_by(&self, instance: &str) -> bool {
        self.managed()
            && self
                .labels
                .get(labels::INSTANCE)
                .map_or(DEFAULT_INSTANCE, String::as_str)
                == instance
    }
    pub fn stack(&self) -> Option<&str> {
        self.labels.get(labels::STACK).map(String::as_str)
    }
    pub fn service(&self) -> Option<&str> {
        self.labels.get(labels::SERVICE).map(String::as_str)
    }
    /// The replica number from the Compose container-number label (1 when absent).
    pub fn number(&self) -> u32 {
        self.labels
            .get(labels::COMPOSE_NUMBER)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1)
    }
    pub fn spec_hash(&self) -> Option<&str> {
        self.labels.get(labels::SPEC_HASH).map(String::as_str)
    }
    pub fn spec_json(&self) -> Option<&str> {
        self.labels.get(labels::SPEC).map(String::as_str)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_true(b: &bool) -> bool {
    *b
}
fn yes() -> bool {
    true
}
fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// The form in which the Engine lists an image reference (`RepoTags`), so that desired and
/// observed references compare equal: `busybox` → `busybox:latest`,
/// `docker.io/library/redis:7` → `redis:7`, `docker.io/grafana/grafana` → `grafana/grafana:latest`.
/// References by digest (`name@sha256:…`) keep their digest and get no tag.
pub fn normalize_image_ref(image: &str) -> String {
    let mut name = image.trim();
    for prefix in ["docker.io/library/", "index.docker.io/library/"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            name = rest;
        }
    }
    for prefix in ["docker.io/", "index.docker.io/"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            name = rest;
        }
    }
    if name.contains('@') {
        return name.to_string();
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_normalise_like_repo_tags() {
        assert_eq!(normalize_image_ref("busybox"), "busybox:latest");
        assert_eq!(normalize_image_ref("docker.io/library/redis:7"), "redis:7");
        assert_eq!(
            normalize_image_ref("docker.io/grafana/grafana"),
            "grafana/grafana:latest"
        );
        assert_eq!(
            normalize_image_ref("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(normalize_image_ref("ghcr.io/a/b:1.2"), "ghcr.io/a/b:1.2");
        assert_eq!(normalize_image_ref("x@sha256:abc"), "x@sha256:abc");
    }

    #[test]
    fn secrets_never_show_their_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "(hidden) (hidden)");
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("hunter2"));
        assert!(json.starts_with("\"sha256:"));
    }

    #[test]
    fn spec_hash_ignores_defaults_and_is_stable() {
        let a = ServiceSpec {
            image: "x:1".into(),
            replicas: 1,
            ..Default::default()
        };
        let b = ServiceSpec {
            replicas: 3,
            ..a.clone()
        };
        assert_eq!(a.canonical_json(), r#"{"image":"x:1"}"#);
        assert_eq!(a.spec_hash(), b.spec_hash());
        // Pinned: changing this hash redeploys every user's containers. Only change it when the
        // meaning of the spec changes.
        assert_eq!(a.spec_hash(), sha256_hex(br#"{"image":"x:1"}"#));
    }
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
