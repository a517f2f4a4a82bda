//! One Compose service, normalised: [`ServiceSpec`] and the shapes it is made of. Its canonical
//! JSON is what berth hashes to decide "changed".

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::*;

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
