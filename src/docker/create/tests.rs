//! Unit tests of the create requests: every model field reaches the Engine's body.

use std::collections::BTreeMap;

use super::*;
use crate::docker::fixtures::stack;
use crate::model::{DependsOn, DeviceMapping, Healthcheck, Logging, PortSpec, Secret, Ulimit};

fn full_spec() -> ServiceSpec {
    ServiceSpec {
        image: "berth-test/app:1".into(),
        command: Some(vec!["httpd".into(), "-f".into()]),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        environment: BTreeMap::from([
            ("A".to_string(), Secret::new("1")),
            ("PASSWORD".to_string(), Secret::new("s3cret")),
        ]),
        ports: vec![
            PortSpec {
                target: 80,
                published: Some(8080),
                host_ip: Some("127.0.0.1".into()),
                protocol: "tcp".into(),
            },
            PortSpec {
                target: 53,
                published: None,
                host_ip: None,
                protocol: "udp".into(),
            },
        ],
        mounts: vec![
            MountSpec {
                target: "/data".into(),
                source: MountSource::Volume {
                    name: "web_data".into(),
                    nocopy: true,
                    subpath: None,
                    selinux: None,
                },
                read_only: false,
            },
            MountSpec {
                target: "/cache".into(),
                source: MountSource::Anonymous,
                read_only: false,
            },
            MountSpec {
                target: "/etc/app".into(),
                source: MountSource::Bind {
                    path: "/srv/config/web/etc".into(),
                    selinux: Some("z".into()),
                    propagation: None,
                    create_host_path: true,
                },
                read_only: true,
            },
            MountSpec {
                target: "/strict".into(),
                source: MountSource::Bind {
                    path: "/srv/strict".into(),
                    selinux: None,
                    propagation: Some("rshared".into()),
                    create_host_path: false,
                },
                read_only: false,
            },
            MountSpec {
                target: "/tmp".into(),
                source: MountSource::Tmpfs {
                    size: Some(1 << 20),
                    mode: Some(0o1777),
                },
                read_only: false,
            },
            MountSpec {
                target: "/run/secrets/db".into(),
                source: MountSource::File {
                    file: "/srv/config/web/db.txt".into(),
                    digest: "sha256:x".into(),
                    content: None,
                    uid: None,
                    gid: None,
                    mode: None,
                },
                read_only: false,
            },
        ],
        networks: BTreeMap::from([
            (
                "web_back".to_string(),
                NetworkAttachment {
                    aliases: vec!["api".into()],
                    ipv4_address: Some("10.5.0.9".into()),
                    ..Default::default()
                },
            ),
            (
                "web_front".to_string(),
                NetworkAttachment {
                    priority: Some(10),
                    ..Default::default()
                },
            ),
        ]),
        labels: BTreeMap::from([("team".to_string(), "ops".to_string())]),
        restart: Some("on-failure:3".into()),
        healthcheck: Some(Healthcheck {
            test: vec!["CMD".into(), "true".into()],
            interval: Some(1_000_000_000),
            retries: Some(3),
            ..Default::default()
        }),
        depends_on: BTreeMap::from([(
            "db".to_string(),
            DependsOn {
                condition: Default::default(),
                required: true,
                restart: false,
            },
        )]),
        user: Some("nobody".into()),
        working_dir: Some("/www".into()),
        hostname: Some("h".into()),
        cap_add: vec!["NET_ADMIN".into()],
        cap_drop: vec!["ALL".into()],
        read_only: true,
        extra_hosts: vec!["db:10.0.0.1".into()],
        dns: vec!["1.1.1.1".into()],
        shm_size: Some(64 << 20),
        mem_limit: Some(256 << 20),
        nano_cpus: Some(500_000_000),
        pids_limit: Some(100),
        logging: Some(Logging {
            driver: Some("json-file".into()),
            options: BTreeMap::from([("max-size".to_string(), "1m".to_string())]),
        }),
        stop_signal: Some("SIGINT".into()),
        stop_grace_period: Some(20),
        init: Some(true),
        sysctls: BTreeMap::from([("net.core.somaxconn".to_string(), "1024".to_string())]),
        ulimits: BTreeMap::from([(
            "nofile".to_string(),
            Ulimit {
                soft: 1024,
                hard: 2048,
            },
        )]),
        devices: vec![DeviceMapping {
            host: "/dev/null".into(),
            container: "/dev/xnull".into(),
            permissions: "rwm".into(),
        }],
        expose: vec!["9000".into()],
        links: vec!["db:database".into()],
        tty: true,
        replicas: 1,
        ..Default::default()
    }
}

#[test]
fn create_body_maps_every_field() {
    let spec = full_spec();
    let CreateBody {
        body,
        extra_networks,
        ..
    } = container_create_body("default", &stack(), "app", &spec, 2, "web-app-2").unwrap();
    assert_eq!(body.image.as_deref(), Some("berth-test/app:1"));
    assert_eq!(body.cmd, spec.command);
    assert_eq!(body.entrypoint, spec.entrypoint);
    assert_eq!(
        body.env,
        Some(vec!["A=1".to_string(), "PASSWORD=s3cret".to_string()])
    );
    assert_eq!(
        body.exposed_ports,
        Some(vec![
            "53/udp".to_string(),
            "80/tcp".to_string(),
            "9000/tcp".to_string()
        ])
    );
    assert_eq!(body.user.as_deref(), Some("nobody"));
    assert_eq!(body.working_dir.as_deref(), Some("/www"));
    assert_eq!(body.hostname.as_deref(), Some("h"));
    assert_eq!(body.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(body.stop_timeout, Some(20));
    assert_eq!(body.tty, Some(true));
    let hc = body.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, Some(vec!["CMD".to_string(), "true".to_string()]));
    assert_eq!(hc.interval, Some(1_000_000_000));
    assert_eq!(hc.retries, Some(3));

    let labels = body.labels.as_ref().unwrap();
    assert_eq!(labels["team"], "ops");
    assert_eq!(labels[labels::MANAGED], "true");
    assert_eq!(labels[labels::INSTANCE], "default");
    assert_eq!(labels[labels::STACK], "web");
    assert_eq!(labels[labels::SERVICE], "app");
    assert_eq!(labels[labels::SPEC_HASH], spec.spec_hash());
    assert_eq!(labels[labels::SPEC], spec.canonical_json());
    assert!(!labels[labels::SPEC].contains("s3cret"));
    assert_eq!(labels[labels::COMPOSE_PROJECT], "web");
    assert_eq!(labels[labels::COMPOSE_SERVICE], "app");
    assert_eq!(labels[labels::COMPOSE_NUMBER], "2");
    assert_eq!(labels[labels::COMPOSE_ONEOFF], "False");
    assert_eq!(
        labels[labels::COMPOSE_CONFIG_FILES],
        "/srv/config/web/compose.yaml"
    );
    assert_eq!(labels[labels::COMPOSE_WORKING_DIR], "/srv/config/web");

    let hcfg = body.host_config.as_ref().unwrap();
    let pb = hcfg.port_bindings.as_ref().unwrap();
    assert_eq!(
        pb["80/tcp"],
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some("8080".into())
        }])
    );
    assert_eq!(
        pb["53/udp"],
        Some(vec![PortBinding {
            host_ip: None,
            host_port: Some(String::new())
        }])
    );
    let mounts = hcfg.mounts.as_ref().unwrap();
    assert_eq!(mounts.len(), 5);
    let data = mounts
        .iter()
        .find(|m| m.target.as_deref() == Some("/data"))
        .unwrap();
    assert_eq!(data.typ, Some(MountType::VOLUME));
    assert_eq!(data.source.as_deref(), Some("web_data"));
    assert_eq!(data.volume_options.as_ref().unwrap().no_copy, Some(true));
    let cache = mounts
        .iter()
        .find(|m| m.target.as_deref() == Some("/cache"))
        .unwrap();
    assert_eq!(
        (cache.typ, cache.source.clone()),
        (Some(MountType::VOLUME), None)
    );
    let strict = mounts
        .iter()
        .find(|m| m.target.as_deref() == Some("/strict"))
        .unwrap();
    assert_eq!(strict.typ, Some(MountType::BIND));
    assert_eq!(
        strict.bind_options.as_ref().unwrap().propagation,
        Some(MountBindOptionsPropagationEnum::RSHARED)
    );
    let tmp = mounts
        .iter()
        .find(|m| m.target.as_deref() == Some("/tmp"))
        .unwrap();
    assert_eq!(tmp.typ, Some(MountType::TMPFS));
    assert_eq!(
        tmp.tmpfs_options.as_ref().unwrap().size_bytes,
        Some(1 << 20)
    );
    assert_eq!(tmp.tmpfs_options.as_ref().unwrap().mode, Some(0o1777));
    let secret = mounts
        .iter()
        .find(|m| m.target.as_deref() == Some("/run/secrets/db"))
        .unwrap();
    assert_eq!(secret.typ, Some(MountType::BIND));
    assert_eq!(secret.read_only, Some(true));
    assert_eq!(secret.source.as_deref(), Some("/srv/config/web/db.txt"));
    assert_eq!(
        hcfg.binds,
        Some(vec!["/srv/config/web/etc:/etc/app:ro,z".to_string()])
    );

    // Networks: the highest priority first at create, the other connected after.
    assert_eq!(hcfg.network_mode.as_deref(), Some("web_front"));
    let eps = body
        .networking_config
        .as_ref()
        .unwrap()
        .endpoints_config
        .as_ref()
        .unwrap();
    assert_eq!(eps.len(), 1);
    assert_eq!(eps["web_front"].aliases, Some(vec!["app".to_string()]));
    assert_eq!(extra_networks.len(), 1);
    let (net, ep) = &extra_networks[0];
    assert_eq!(net, "web_back");
    assert_eq!(ep.aliases, Some(vec!["app".to_string(), "api".to_string()]));
    assert_eq!(
        ep.ipam_config.as_ref().unwrap().ipv4_address.as_deref(),
        Some("10.5.0.9")
    );

    let rp = hcfg.restart_policy.as_ref().unwrap();
    assert_eq!(rp.name, Some(RestartPolicyNameEnum::ON_FAILURE));
    assert_eq!(rp.maximum_retry_count, Some(3));
    assert_eq!(
        hcfg.log_config.as_ref().unwrap().typ.as_deref(),
        Some("json-file")
    );
    assert_eq!(
        hcfg.ulimits,
        Some(vec![ResourcesUlimits {
            name: Some("nofile".into()),
            soft: Some(1024),
            hard: Some(2048)
        }])
    );
    assert_eq!(
        hcfg.devices.as_ref().unwrap()[0]
            .path_in_container
            .as_deref(),
        Some("/dev/xnull")
    );
    assert_eq!(hcfg.sysctls.as_ref().unwrap()["net.core.somaxconn"], "1024");
    assert_eq!(hcfg.cap_add, Some(vec!["NET_ADMIN".to_string()]));
    assert_eq!(hcfg.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(hcfg.readonly_rootfs, Some(true));
    assert_eq!(hcfg.extra_hosts, Some(vec!["db:10.0.0.1".to_string()]));
    assert_eq!(hcfg.dns, Some(vec!["1.1.1.1".to_string()]));
    assert_eq!(hcfg.shm_size, Some(64 << 20));
    assert_eq!(hcfg.memory, Some(256 << 20));
    assert_eq!(hcfg.nano_cpus, Some(500_000_000));
    assert_eq!(hcfg.pids_limit, Some(100));
    assert_eq!(hcfg.init, Some(true));
    assert_eq!(hcfg.links, Some(vec!["web-db-1:database".to_string()]));
}

#[test]
fn create_body_maps_devices_volumes_from_and_resource_options() {
    use crate::model::{BlkioConfig, DeviceRequest};
    let mut st = stack();
    st.services.insert(
        "data".into(),
        ServiceSpec {
            image: "x".into(),
            container_name: Some("the-data".into()),
            ..Default::default()
        },
    );
    st.services.insert("cache".into(), ServiceSpec::default());
    let spec = ServiceSpec {
        image: "x".into(),
        device_requests: vec![
            DeviceRequest {
                count: Some(-1),
                capabilities: vec!["gpu".into()],
                ..Default::default()
            },
            DeviceRequest {
                driver: Some("nvidia".into()),
                device_ids: vec!["0".into(), "2".into()],
                capabilities: vec!["gpu".into(), "utility".into()],
                options: BTreeMap::from([("k".into(), "v".into())]),
                ..Default::default()
            },
        ],
        volumes_from: vec![
            "data".into(),
            "cache:ro".into(),
            "container:legacy".into(),
            "container:old:ro".into(),
        ],
        mem_swappiness: Some(0),
        oom_kill_disable: true,
        cpu_period: Some(100_000),
        cpu_quota: Some(50_000),
        cpu_rt_period: Some(1_000_000),
        cpu_rt_runtime: Some(950_000),
        blkio: Some(BlkioConfig {
            weight: Some(300),
            weight_device: BTreeMap::from([("/dev/sda".into(), 400)]),
            device_read_bps: BTreeMap::from([("/dev/sda".into(), 1 << 20)]),
            device_write_bps: BTreeMap::from([("/dev/sda".into(), 2 << 20)]),
            device_read_iops: BTreeMap::from([("/dev/sdb".into(), 100)]),
            device_write_iops: BTreeMap::from([("/dev/sdb".into(), 50)]),
        }),
        storage_opt: BTreeMap::from([("size".into(), "20G".into())]),
        uts: Some("host".into()),
        cgroup: Some("host".into()),
        links: vec!["data".into()],
        external_links: vec!["db:database".into(), "redis_1".into()],
        annotations: BTreeMap::from([("com.example.a".into(), "1".into())]),
        ..Default::default()
    };
    let CreateBody { body, .. } =
        container_create_body("default", &st, "app", &spec, 1, "web-app-1").unwrap();
    let h = body.host_config.unwrap();
    assert_eq!(
        h.device_requests,
        Some(vec![
            EngineDeviceRequest {
                count: Some(-1),
                capabilities: Some(vec![vec!["gpu".to_string()]]),
                ..Default::default()
            },
            EngineDeviceRequest {
                driver: Some("nvidia".into()),
                count: None,
                device_ids: Some(vec!["0".into(), "2".into()]),
                capabilities: Some(vec![vec!["gpu".to_string(), "utility".to_string()]]),
                options: Some(HashMap::from([("k".to_string(), "v".to_string())])),
            },
        ])
    );
    assert_eq!(
        h.volumes_from,
        Some(vec![
            "the-data".to_string(),
            "web-cache-1:ro".to_string(),
            "legacy".to_string(),
            "old:ro".to_string(),
        ])
    );
    assert_eq!(h.memory_swappiness, Some(0));
    assert_eq!(h.oom_kill_disable, Some(true));
    assert_eq!(h.cpu_period, Some(100_000));
    assert_eq!(h.cpu_quota, Some(50_000));
    assert_eq!(h.cpu_realtime_period, Some(1_000_000));
    assert_eq!(h.cpu_realtime_runtime, Some(950_000));
    assert_eq!(h.blkio_weight, Some(300));
    assert_eq!(
        h.blkio_weight_device,
        Some(vec![ResourcesBlkioWeightDevice {
            path: Some("/dev/sda".into()),
            weight: Some(400)
        }])
    );
    let td = |path: &str, rate: i64| {
        Some(vec![ThrottleDevice {
            path: Some(path.into()),
            rate: Some(rate),
        }])
    };
    assert_eq!(h.blkio_device_read_bps, td("/dev/sda", 1 << 20));
    assert_eq!(h.blkio_device_write_bps, td("/dev/sda", 2 << 20));
    assert_eq!(h.blkio_device_read_iops, td("/dev/sdb", 100));
    assert_eq!(h.blkio_device_write_iops, td("/dev/sdb", 50));
    assert_eq!(h.storage_opt.unwrap()["size"], "20G");
    assert_eq!(h.uts_mode.as_deref(), Some("host"));
    assert_eq!(h.cgroupns_mode, Some(HostConfigCgroupnsModeEnum::HOST));
    assert_eq!(
        h.links,
        Some(vec![
            "the-data:data".to_string(),
            "db:database".to_string(),
            "redis_1:redis_1".to_string(),
        ])
    );
    assert_eq!(h.annotations.unwrap()["com.example.a"], "1");

    // Nothing set, nothing sent.
    let plain = ServiceSpec {
        image: "x".into(),
        ..Default::default()
    };
    let h = container_create_body("default", &st, "app", &plain, 1, "web-app-1")
        .unwrap()
        .body
        .host_config
        .unwrap();
    assert_eq!(
        (
            h.device_requests,
            h.volumes_from,
            h.annotations,
            h.cgroupns_mode
        ),
        (None, None, None, None)
    );
    assert_eq!(
        (h.blkio_weight, h.blkio_device_read_bps, h.oom_kill_disable),
        (None, None, None)
    );
}

#[test]
fn network_mode_service_points_at_that_services_container() {
    let mut st = stack();
    st.services.insert(
        "vpn".into(),
        ServiceSpec {
            image: "x".into(),
            container_name: Some("the-vpn".into()),
            ..Default::default()
        },
    );
    let spec = ServiceSpec {
        image: "x".into(),
        network_mode: Some("service:vpn".into()),
        ..Default::default()
    };
    let b = container_create_body("default", &st, "app", &spec, 1, "web-app-1").unwrap();
    let hc = b.body.host_config.unwrap();
    assert_eq!(hc.network_mode.as_deref(), Some("container:the-vpn"));
    assert!(b.body.networking_config.is_none());
    let spec = ServiceSpec {
        network_mode: Some("service:db".into()),
        ..spec
    };
    let b = container_create_body("default", &st, "app", &spec, 1, "web-app-1").unwrap();
    assert_eq!(
        b.body.host_config.unwrap().network_mode.as_deref(),
        Some("container:web-db-1")
    );
}

#[test]
fn restart_policies() {
    assert_eq!(
        restart_policy("always").unwrap().name,
        Some(RestartPolicyNameEnum::ALWAYS)
    );
    assert_eq!(
        restart_policy("unless-stopped").unwrap().name,
        Some(RestartPolicyNameEnum::UNLESS_STOPPED)
    );
    assert_eq!(
        restart_policy("no").unwrap().name,
        Some(RestartPolicyNameEnum::NO)
    );
    assert_eq!(
        restart_policy("on-failure").unwrap().maximum_retry_count,
        None
    );
    assert!(restart_policy("sometimes").is_err());
    assert!(restart_policy("always:3").is_err());
}

#[test]
fn network_and_volume_labels() {
    let net = NetworkSpec {
        name: "web_back".into(),
        internal: true,
        labels: BTreeMap::from([("x".to_string(), "y".to_string())]),
        ..Default::default()
    };
    let r = network_create_request("prod", "web", &net);
    let l = r.labels.unwrap();
    assert_eq!(r.name, "web_back");
    assert_eq!(r.internal, Some(true));
    assert_eq!(l[labels::MANAGED], "true");
    assert_eq!(l[labels::INSTANCE], "prod");
    assert_eq!(l[labels::STACK], "web");
    assert_eq!(l[labels::COMPOSE_PROJECT], "web");
    assert_eq!(l[labels::COMPOSE_NETWORK], "back");
    assert_eq!(l["x"], "y");
    let vol = VolumeSpec {
        name: "shared-data".into(),
        ..Default::default()
    };
    let r = volume_create_request("default", "web", &vol);
    let l = r.labels.unwrap();
    assert_eq!(r.name.as_deref(), Some("shared-data"));
    assert_eq!(l[labels::COMPOSE_VOLUME], "shared-data");
    assert_eq!(l[labels::STACK], "web");
}
