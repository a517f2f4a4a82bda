//! The keys berth understands, and the Compose keys it knowingly does not support. A test checks
//! these lists against the Compose JSON schema (tests/fixtures/compose-spec) so they cannot drift.

pub const TOP: &[&str] = &[
    "version", "name", "include", "services", "networks", "volumes", "secrets", "configs",
];
pub const TOP_UNSUPPORTED: &[&str] = &["models"];

pub const SERVICE: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "depends_on",
    "deploy",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "label_file",
    "labels",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "privileged",
    "profiles",
    "pull_policy",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "user",
    "userns_mode",
    "uts",
    "volumes",
    "volumes_from",
    "working_dir",
];
pub const SERVICE_UNSUPPORTED: &[&str] = &[
    "cpu_percent",
    "credential_spec",
    "isolation",
    "models",
    "post_start",
    "pre_stop",
    "provider",
    "pull_refresh_after",
    "use_api_socket",
];

pub const DEPLOY: &[&str] = &["mode", "replicas", "resources", "restart_policy"];
pub const DEPLOY_UNSUPPORTED: &[&str] = &[
    "endpoint_mode",
    "labels",
    "placement",
    "rollback_config",
    "update_config",
];

/// Why a refused key is refused, when the answer is not "not implemented": (the mapping it is
/// in, key, reason). The reason is appended to the "is not supported by berth" error.
pub const WHY: &[(&str, &str, &str)] = &[
    (
        "service",
        "cpu_percent",
        "it applies to Windows containers only (a Linux Engine discards it); use `cpus`",
    ),
    (
        "deploy",
        "placement",
        "Swarm-only: placement chooses among Swarm nodes, and has no effect on a single Docker \
         Engine; remove it",
    ),
    (
        "deploy",
        "update_config",
        "Swarm-only: it has no effect on a single Docker Engine (berth replaces a changed \
         container itself); remove it",
    ),
    (
        "deploy",
        "rollback_config",
        "Swarm-only: it has no effect on a single Docker Engine; remove it",
    ),
    (
        "deploy",
        "endpoint_mode",
        "Swarm-only: it has no effect on a single Docker Engine (service discovery is by DNS \
         name on the stack's networks); remove it",
    ),
    (
        "deploy",
        "labels",
        "Swarm-only: they label the Swarm service, which does not exist on a single Docker \
         Engine; use the service's `labels` for container labels",
    ),
    (
        "reservations",
        "cpus",
        "a CPU reservation has no effect on a single Docker Engine (only Swarm schedules by \
         it); remove it or use `cpus` / `cpu_shares`",
    ),
    (
        "reservations",
        "generic_resources",
        "Swarm-only: generic resources are advertised by Swarm nodes; remove it, or use \
         `devices` for hardware devices",
    ),
    (
        "restart_policy",
        "delay",
        "Swarm-only: the Docker Engine's restart policy has no delay (it backs off by itself); \
         remove it",
    ),
    (
        "restart_policy",
        "window",
        "Swarm-only: the Docker Engine's restart policy has no window; remove it",
    ),
];

/// The reason for refusing `key` in a mapping of kind `context`, if there is one.
pub fn why(context: &str, key: &str) -> Option<&'static str> {
    WHY.iter()
        .find(|(c, k, _)| *c == context && *k == key)
        .map(|(_, _, r)| *r)
}

pub const NETWORK: &[&str] = &[
    "name",
    "external",
    "driver",
    "driver_opts",
    "internal",
    "attachable",
    "enable_ipv6",
    "ipam",
    "labels",
];
pub const NETWORK_UNSUPPORTED: &[&str] = &["enable_ipv4"];

pub const VOLUME: &[&str] = &["name", "external", "driver", "driver_opts", "labels"];

pub const SECRET: &[&str] = &["file", "environment", "name", "external", "labels"];
pub const SECRET_UNSUPPORTED: &[&str] = &["driver", "driver_opts", "template_driver"];
pub const CONFIG: &[&str] = &[
    "file",
    "environment",
    "content",
    "name",
    "external",
    "labels",
];
pub const CONFIG_UNSUPPORTED: &[&str] = &["template_driver"];

pub const PORT: &[&str] = &["target", "published", "host_ip", "protocol", "mode", "name"];
pub const PORT_UNSUPPORTED: &[&str] = &["app_protocol"];

pub const MOUNT: &[&str] = &[
    "type",
    "source",
    "target",
    "read_only",
    "consistency",
    "bind",
    "volume",
    "tmpfs",
];
pub const MOUNT_UNSUPPORTED: &[&str] = &["image"];

pub const ATTACHMENT: &[&str] = &[
    "aliases",
    "ipv4_address",
    "ipv6_address",
    "mac_address",
    "priority",
    "driver_opts",
    "link_local_ips",
];
pub const ATTACHMENT_UNSUPPORTED: &[&str] = &["interface_name", "gw_priority"];

pub const HEALTHCHECK: &[&str] = &[
    "test",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "start_interval",
    "disable",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn schema() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/compose-spec/compose-spec.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn props(v: &serde_json::Value) -> BTreeSet<String> {
        v["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .cloned()
            .collect()
    }

    #[track_caller]
    fn same(what: &str, schema: BTreeSet<String>, supported: &[&str], unsupported: &[&str]) {
        let ours: BTreeSet<String> = supported
            .iter()
            .chain(unsupported)
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            ours.len(),
            supported.len() + unsupported.len(),
            "{what}: a key is both supported and unsupported"
        );
        let missing: Vec<_> = schema.difference(&ours).collect();
        let extra: Vec<_> = ours.difference(&schema).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{what}: in schema only {missing:?}, in berth only {extra:?}"
        );
    }

    #[test]
    fn key_lists_match_the_compose_schema() {
        let s = schema();
        let d = &s["definitions"];
        same("top level", props(&s), TOP, TOP_UNSUPPORTED);
        same(
            "service",
            props(&d["service"]),
            SERVICE,
            SERVICE_UNSUPPORTED,
        );
        same(
            "deploy",
            props(&d["deployment"]),
            DEPLOY,
            DEPLOY_UNSUPPORTED,
        );
        same(
            "network",
            props(&d["network"]),
            NETWORK,
            NETWORK_UNSUPPORTED,
        );
        same("volume", props(&d["volume"]), VOLUME, &[]);
        same("secret", props(&d["secret"]), SECRET, SECRET_UNSUPPORTED);
        same("config", props(&d["config"]), CONFIG, CONFIG_UNSUPPORTED);
        let sv = &d["service"]["properties"];
        same(
            "service port",
            props(&sv["ports"]["items"]["oneOf"][2]),
            PORT,
            PORT_UNSUPPORTED,
        );
        same(
            "service volume",
            props(&sv["volumes"]["items"]["oneOf"][1]),
            MOUNT,
            MOUNT_UNSUPPORTED,
        );
        same(
            "service network",
            props(
                &sv["networks"]["oneOf"][1]["patternProperties"]["^[a-zA-Z0-9._-]+$"]["oneOf"][0],
            ),
            ATTACHMENT,
            ATTACHMENT_UNSUPPORTED,
        );
        same("healthcheck", props(&d["healthcheck"]), HEALTHCHECK, &[]);
    }

    #[test]
    fn every_reason_is_for_a_refused_key() {
        for (context, key, _) in WHY {
            let refused: &[&str] = match *context {
                "service" => SERVICE_UNSUPPORTED,
                "deploy" => DEPLOY_UNSUPPORTED,
                "reservations" => &["cpus", "generic_resources"],
                "restart_policy" => &["delay", "window"],
                other => panic!("unknown context {other}"),
            };
            assert!(refused.contains(key), "{context}.{key} is not refused");
        }
    }
}
