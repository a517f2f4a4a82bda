//! The Engine requests that create networks, volumes and containers, built from the model
//! (pure: no Engine needed).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{
    ContainerCreateBody, DeviceMapping as EngineDevice, DeviceRequest as EngineDeviceRequest,
    EndpointIpamConfig, EndpointSettings, HealthConfig, HostConfig, HostConfigCgroupnsModeEnum,
    HostConfigLogConfig, Ipam as EngineIpam, IpamConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType, MountVolumeOptions,
    NetworkCreateRequest, NetworkingConfig, PortBinding, ResourcesBlkioWeightDevice,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum, ThrottleDevice, VolumeCreateRequest,
};

use crate::model::{
    MountSource, MountSpec, NetworkAttachment, NetworkSpec, Secret, ServiceSpec, StackSpec,
    VolumeSpec, labels,
};

/// The name of replica `number` of `service` (see [`crate::model::container_name`]); a service
/// that is not declared gets Compose's default name.
fn service_container_name(stack: &StackSpec, service: &str, number: u32) -> String {
    match stack.services.get(service) {
        Some(spec) => crate::model::container_name(&stack.name, service, spec, number),
        None => format!("{}-{}-{}", stack.name, service, number),
    }
}

/// The key of a network/volume in the Compose file, from its Engine-side name.
fn compose_key<'a>(stack: &str, name: &'a str) -> &'a str {
    name.strip_prefix(stack)
        .and_then(|r| r.strip_prefix('_'))
        .unwrap_or(name)
}

fn object_labels(
    instance: &str,
    stack: &str,
    user: &BTreeMap<String, String>,
    compose_label: &str,
    key: &str,
) -> HashMap<String, String> {
    let mut l: HashMap<String, String> = user.clone().into_iter().collect();
    l.insert(labels::MANAGED.into(), "true".into());
    l.insert(labels::INSTANCE.into(), instance.into());
    l.insert(labels::STACK.into(), stack.into());
    l.insert(labels::COMPOSE_PROJECT.into(), stack.into());
    l.insert(compose_label.into(), key.into());
    l
}

/// The Engine request that creates `spec`'s network.
pub fn network_create_request(
    instance: &str,
    stack: &str,
    spec: &NetworkSpec,
) -> NetworkCreateRequest {
    let labels = object_labels(
        instance,
        stack,
        &spec.labels,
        labels::COMPOSE_NETWORK,
        compose_key(stack, &spec.name),
    );
    NetworkCreateRequest {
        name: spec.name.clone(),
        driver: spec.driver.clone(),
        internal: spec.internal.then_some(true),
        attachable: spec.attachable.then_some(true),
        enable_ipv6: spec.enable_ipv6.then_some(true),
        ipam: spec.ipam.as_ref().map(|i| EngineIpam {
            driver: i.driver.clone(),
            config: Some(
                i.config
                    .iter()
                    .map(|p| IpamConfig {
                        subnet: p.subnet.clone(),
                        ip_range: p.ip_range.clone(),
                        gateway: p.gateway.clone(),
                        auxiliary_addresses: (!p.aux_addresses.is_empty())
                            .then(|| p.aux_addresses.clone().into_iter().collect()),
                    })
                    .collect(),
            ),
            options: (!i.options.is_empty()).then(|| i.options.clone().into_iter().collect()),
        }),
        options: (!spec.driver_opts.is_empty())
            .then(|| spec.driver_opts.clone().into_iter().collect()),
        labels: Some(labels),
        ..Default::default()
    }
}

/// The Engine request that creates `spec`'s volume.
pub fn volume_create_request(
    instance: &str,
    stack: &str,
    spec: &VolumeSpec,
) -> VolumeCreateRequest {
    let labels = object_labels(
        instance,
        stack,
        &spec.labels,
        labels::COMPOSE_VOLUME,
        compose_key(stack, &spec.name),
    );
    VolumeCreateRequest {
        name: Some(spec.name.clone()),
        driver: spec.driver.clone(),
        driver_opts: (!spec.driver_opts.is_empty())
            .then(|| spec.driver_opts.clone().into_iter().collect()),
        labels: Some(labels),
        ..Default::default()
    }
}

/// Every label a service container carries: the user's, berth's and Compose's.
pub fn container_labels(
    instance: &str,
    stack: &StackSpec,
    service: &str,
    spec: &ServiceSpec,
    number: u32,
) -> BTreeMap<String, String> {
    let mut l = spec.labels.clone();
    let config_file = match stack.file.file_name() {
        Some(f) => stack.dir.join(f),
        None => stack.dir.join(&stack.file),
    };
    for (k, v) in [
        (labels::MANAGED, "true".to_string()),
        (labels::INSTANCE, instance.to_string()),
        (labels::STACK, stack.name.clone()),
        (labels::SERVICE, service.to_string()),
        (labels::SPEC_HASH, spec.spec_hash()),
        (labels::SPEC, spec.canonical_json()),
        (labels::COMPOSE_PROJECT, stack.name.clone()),
        (labels::COMPOSE_SERVICE, service.to_string()),
        (labels::COMPOSE_NUMBER, number.to_string()),
        (labels::COMPOSE_ONEOFF, "False".to_string()),
        (
            labels::COMPOSE_CONFIG_FILES,
            config_file.display().to_string(),
        ),
        (labels::COMPOSE_WORKING_DIR, stack.dir.display().to_string()),
    ] {
        l.insert(k.to_string(), v);
    }
    l
}

/// A container create request, and the networks to connect after create (API 1.41 takes one
/// network at create).
#[derive(Debug, Clone)]
pub struct CreateBody {
    pub body: ContainerCreateBody,
    pub extra_networks: Vec<(String, EndpointSettings)>,
    /// Secrets/configs given by content (not a host file): copied into the container after
    /// create, before start (as Compose does), as (path in the container, content).
    pub files: Vec<CopiedFile>,
}

/// `service:x` / `container:x` → `container:<name>`; others unchanged.
fn container_ref_mode(stack: &StackSpec, mode: &str) -> String {
    match mode.strip_prefix("service:") {
        Some(svc) => format!("container:{}", service_container_name(stack, svc, 1)),
        None => mode.to_string(),
    }
}

fn endpoint(service: &str, a: &NetworkAttachment, mac: Option<&String>) -> EndpointSettings {
    let mut aliases = vec![service.to_string()];
    for al in &a.aliases {
        if !aliases.contains(al) {
            aliases.push(al.clone());
        }
    }
    let ipam =
        (a.ipv4_address.is_some() || a.ipv6_address.is_some() || !a.link_local_ips.is_empty())
            .then(|| EndpointIpamConfig {
                ipv4_address: a.ipv4_address.clone(),
                ipv6_address: a.ipv6_address.clone(),
                link_local_ips: (!a.link_local_ips.is_empty()).then(|| a.link_local_ips.clone()),
            });
    EndpointSettings {
        aliases: Some(aliases),
        ipam_config: ipam,
        mac_address: a.mac_address.clone().or_else(|| mac.cloned()),
        driver_opts: (!a.driver_opts.is_empty()).then(|| {
            a.driver_opts
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
        ..Default::default()
    }
}

fn restart_policy(restart: &str) -> Result<RestartPolicy, String> {
    let (name, count) = match restart.split_once(':') {
        Some((n, c)) => (
            n,
            Some(
                c.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("restart: invalid retry count in {restart:?}"))?,
            ),
        ),
        None => (restart, None),
    };
    let name = match name.trim() {
        "no" | "" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        other => return Err(format!("restart: unknown policy {other:?}")),
    };
    if count.is_some() && name != RestartPolicyNameEnum::ON_FAILURE {
        return Err(format!(
            "restart: only on-failure takes a retry count ({restart:?})"
        ));
    }
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count: count,
    })
}

fn port_key(p: &str) -> String {
    if p.contains('/') {
        p.to_string()
    } else {
        format!("{p}/tcp")
    }
}

/// Maps every field of `spec` to the Engine's create request. Pure; errors are invalid values.
pub fn container_create_body(
    instance: &str,
    stack: &StackSpec,
    service: &str,
    spec: &ServiceSpec,
    number: u32,
    _name: &str,
) -> Result<CreateBody, String> {
    let some_vec = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());

    // Ports.
    let mut exposed: BTreeSet<String> = spec.expose.iter().map(|p| port_key(p)).collect();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.target, p.protocol);
        exposed.insert(key.clone());
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: p.host_ip.clone(),
                host_port: Some(p.published.map(|x| x.to_string()).unwrap_or_default()),
            });
    }

    // Mounts.
    let mut mounts = Vec::new();
    let mut binds = Vec::new();
    let mut files = Vec::new();
    for m in &spec.mounts {
        mount(m, &mut mounts, &mut binds, &mut files)?;
    }

    // Networks: the highest priority first (Compose's order), then by name.
    let mut nets: Vec<(&String, &NetworkAttachment)> = spec.networks.iter().collect();
    nets.sort_by(|a, b| {
        b.1.priority
            .unwrap_or(0)
            .cmp(&a.1.priority.unwrap_or(0))
            .then(a.0.cmp(b.0))
    });
    let mut endpoints = nets.iter().map(|(n, a)| {
        (
            (*n).clone(),
            endpoint(service, a, spec.mac_address.as_ref()),
        )
    });
    let first = endpoints.next();
    let extra_networks: Vec<(String, EndpointSettings)> = endpoints.collect();
    let network_mode = match (&spec.network_mode, &first) {
        (Some(mode), _) => Some(container_ref_mode(stack, mode)),
        (None, Some((n, _))) => Some(n.clone()),
        (None, None) => None,
    };
    if spec.network_mode.is_some() && first.is_some() {
        return Err("network_mode and networks cannot be combined".into());
    }
    let networking_config = first.map(|(n, e)| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(n, e)])),
    });

    let mut links: Vec<String> = spec
        .links
        .iter()
        .map(|l| {
            let (svc, alias) = l.split_once(':').unwrap_or((l, l));
            format!("{}:{}", service_container_name(stack, svc, 1), alias)
        })
        .collect();

    // `external_links` name containers outside the stack: `name[:alias]`.
    links.extend(spec.external_links.iter().map(|l| match l.split_once(':') {
        Some(_) => l.clone(),
        None => format!("{l}:{l}"),
    }));

    // `volumes_from`: a service of this stack means its (first) container.
    let volumes_from: Vec<String> = spec
        .volumes_from
        .iter()
        .map(|v| {
            let (target, mode) = match v.rsplit_once(':') {
                Some((t, m)) if m == "ro" || m == "rw" => (t, Some(m)),
                _ => (v.as_str(), None),
            };
            let name = match target.strip_prefix("container:") {
                Some(c) => c.to_string(),
                None => service_container_name(stack, target, 1),
            };
            match mode {
                Some(m) => format!("{name}:{m}"),
                None => name,
            }
        })
        .collect();

    let device_requests: Vec<EngineDeviceRequest> = spec
        .device_requests
        .iter()
        .map(|d| EngineDeviceRequest {
            driver: d.driver.clone(),
            count: d.count,
            device_ids: (!d.device_ids.is_empty()).then(|| d.device_ids.clone()),
            capabilities: (!d.capabilities.is_empty()).then(|| vec![d.capabilities.clone()]),
            options: (!d.options.is_empty()).then(|| d.options.clone().into_iter().collect()),
        })
        .collect();

    let throttle = |m: &BTreeMap<String, i64>| {
        (!m.is_empty()).then(|| {
            m.iter()
                .map(|(path, rate)| ThrottleDevice {
                    path: Some(path.clone()),
                    rate: Some(*rate),
                })
                .collect::<Vec<_>>()
        })
    };
    let blkio = spec.blkio.clone().unwrap_or_default();

    let cgroupns_mode = match spec.cgroup.as_deref() {
        None => None,
        Some("host") => Some(HostConfigCgroupnsModeEnum::HOST),
        Some("private") => Some(HostConfigCgroupnsModeEnum::PRIVATE),
        Some(other) => {
            return Err(format!(
                "cgroup: unknown mode {other:?} (use host or private)"
            ));
        }
    };

    let healthcheck = spec.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: h.interval,
        timeout: h.timeout,
        retries: h.retries,
        start_period: h.start_period,
        start_interval: h.start_interval,
    });

    let host_config = HostConfig {
        binds: some_vec(&binds),
        mounts: (!mounts.is_empty()).then_some(mounts),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        network_mode,
        restart_policy: spec.restart.as_deref().map(restart_policy).transpose()?,
        log_config: spec.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: l.driver.clone(),
            config: (!l.options.is_empty()).then(|| l.options.clone().into_iter().collect()),
        }),
        ulimits: (!spec.ulimits.is_empty()).then(|| {
            spec.ulimits
                .iter()
                .map(|(name, u)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        devices: (!spec.devices.is_empty()).then(|| {
            spec.devices
                .iter()
                .map(|d| EngineDevice {
                    path_on_host: Some(d.host.clone()),
                    path_in_container: Some(d.container.clone()),
                    cgroup_permissions: Some(d.permissions.clone()),
                })
                .collect()
        }),
        sysctls: (!spec.sysctls.is_empty()).then(|| spec.sysctls.clone().into_iter().collect()),
        cap_add: some_vec(&spec.cap_add),
        cap_drop: some_vec(&spec.cap_drop),
        readonly_rootfs: spec.read_only.then_some(true),
        extra_hosts: some_vec(&spec.extra_hosts),
        dns: some_vec(&spec.dns),
        dns_search: some_vec(&spec.dns_search),
        dns_options: some_vec(&spec.dns_opt),
        shm_size: spec.shm_size,
        memory: spec.mem_limit,
        memory_reservation: spec.mem_reservation,
        memory_swap: spec.memswap_limit,
        nano_cpus: spec.nano_cpus,
        cpu_shares: spec.cpu_shares,
        cpu_count: spec.cpu_count,
        device_cgroup_rules: some_vec(&spec.device_cgroup_rules),
        cpuset_cpus: spec.cpuset.clone(),
        pids_limit: spec.pids_limit,
        init: spec.init,
        privileged: spec.privileged.then_some(true),
        security_opt: some_vec(&spec.security_opt),
        group_add: some_vec(&spec.group_add),
        links: some_vec(&links),
        pid_mode: spec.pid.as_deref().map(|m| container_ref_mode(stack, m)),
        ipc_mode: spec.ipc.as_deref().map(|m| container_ref_mode(stack, m)),
        runtime: spec.runtime.clone(),
        cgroup_parent: spec.cgroup_parent.clone(),
        userns_mode: spec.userns_mode.clone(),
        oom_score_adj: spec.oom_score_adj,
        device_requests: (!device_requests.is_empty()).then_some(device_requests),
        volumes_from: some_vec(&volumes_from),
        memory_swappiness: spec.mem_swappiness,
        oom_kill_disable: spec.oom_kill_disable.then_some(true),
        cpu_period: spec.cpu_period,
        cpu_quota: spec.cpu_quota,
        cpu_realtime_period: spec.cpu_rt_period,
        cpu_realtime_runtime: spec.cpu_rt_runtime,
        blkio_weight: blkio.weight,
        blkio_weight_device: (!blkio.weight_device.is_empty()).then(|| {
            blkio
                .weight_device
                .iter()
                .map(|(path, w)| ResourcesBlkioWeightDevice {
                    path: Some(path.clone()),
                    weight: Some(usize::from(*w)),
                })
                .collect()
        }),
        blkio_device_read_bps: throttle(&blkio.device_read_bps),
        blkio_device_write_bps: throttle(&blkio.device_write_bps),
        blkio_device_read_iops: throttle(&blkio.device_read_iops),
        blkio_device_write_iops: throttle(&blkio.device_write_iops),
        storage_opt: (!spec.storage_opt.is_empty())
            .then(|| spec.storage_opt.clone().into_iter().collect()),
        uts_mode: spec.uts.clone(),
        cgroupns_mode,
        annotations: (!spec.annotations.is_empty())
            .then(|| spec.annotations.clone().into_iter().collect()),
        ..Default::default()
    };

    let env: Vec<String> = spec
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={}", v.expose()))
        .collect();

    let labels = container_labels(instance, stack, service, spec, number);
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: Some(env),
        exposed_ports: (!exposed.is_empty()).then(|| exposed.into_iter().collect()),
        labels: Some(labels.into_iter().collect()),
        healthcheck,
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        hostname: spec.hostname.clone(),
        domainname: spec.domainname.clone(),
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec.stop_grace_period,
        open_stdin: spec.stdin_open.then_some(true),
        tty: spec.tty.then_some(true),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    };
    Ok(CreateBody {
        body,
        extra_networks,
        files,
    })
}

/// A secret or config given by content, copied into the container before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedFile {
    /// Absolute path in the container.
    pub path: String,
    pub content: Secret,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

fn mount(
    m: &MountSpec,
    mounts: &mut Vec<Mount>,
    binds: &mut Vec<String>,
    files: &mut Vec<CopiedFile>,
) -> Result<(), String> {
    let read_only = m.read_only.then_some(true);
    match &m.source {
        // SELinux relabelling of a named volume: only the legacy `Binds` form takes it.
        MountSource::Volume {
            name,
            nocopy,
            subpath: None,
            selinux: Some(z),
        } => {
            let mut opts = vec![if m.read_only { "ro" } else { "rw" }, z.as_str()];
            if *nocopy {
                opts.push("nocopy");
            }
            binds.push(format!("{name}:{}:{}", m.target, opts.join(",")));
        }
        MountSource::Volume {
            name,
            nocopy,
            subpath,
            ..
        } => mounts.push(Mount {
            target: Some(m.target.clone()),
            source: Some(name.clone()),
            typ: Some(MountType::VOLUME),
            read_only,
            volume_options: (*nocopy || subpath.is_some()).then(|| MountVolumeOptions {
                no_copy: nocopy.then_some(true),
                subpath: subpath.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        MountSource::Anonymous => mounts.push(Mount {
            target: Some(m.target.clone()),
            typ: Some(MountType::VOLUME),
            read_only,
            ..Default::default()
        }),
        MountSource::Bind {
            path,
            selinux,
            propagation,
            create_host_path,
        } => {
            if *create_host_path || selinux.is_some() {
                // The legacy `Binds` form creates a missing host path (Compose's default) and
                // is the only one that takes SELinux relabelling.
                let mut opts = vec![if m.read_only { "ro" } else { "rw" }.to_string()];
                if let Some(z) = selinux {
                    opts.push(z.clone());
                }
                if let Some(p) = propagation {
                    opts.push(p.clone());
                }
                binds.push(format!("{path}:{}:{}", m.target, opts.join(",")));
            } else {
                let propagation = propagation
                    .as_deref()
                    .map(|p| {
                        p.parse::<MountBindOptionsPropagationEnum>()
                            .map_err(|_| format!("bind propagation: unknown mode {p:?}"))
                    })
                    .transpose()?;
                mounts.push(Mount {
                    target: Some(m.target.clone()),
                    source: Some(path.clone()),
                    typ: Some(MountType::BIND),
                    read_only,
                    bind_options: propagation.map(|p| MountBindOptions {
                        propagation: Some(p),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
        MountSource::Tmpfs { size, mode } => mounts.push(Mount {
            target: Some(m.target.clone()),
            typ: Some(MountType::TMPFS),
            read_only,
            tmpfs_options: (size.is_some() || mode.is_some()).then(|| MountTmpfsOptions {
                size_bytes: *size,
                mode: mode.map(i64::from),
                ..Default::default()
            }),
            ..Default::default()
        }),
        MountSource::File {
            content: Some(content),
            uid,
            gid,
            mode,
            ..
        } => files.push(CopiedFile {
            path: m.target.clone(),
            content: content.clone(),
            uid: uid.unwrap_or(0),
            gid: gid.unwrap_or(0),
            mode: mode.unwrap_or(0o444),
        }),
        MountSource::File { file, .. } => mounts.push(Mount {
            target: Some(m.target.clone()),
            source: Some(file.clone()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        }),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
