//! The Docker adapter and the executor against the real Engine (`berth::docker`,
//! `berth::apply`). Each test uses its own berth instance and stack names (test name + pid) and
//! removes everything labelled with that instance on drop, even when it fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use berth::apply::{ApplyError, ApplyEvent, ApplyOptions, ApplyReport, apply};
use berth::docker::{DockerError, Engine, PullFailure};
use berth::model::{
    ContainerState, DependsCondition, DependsOn, Desired, Health, Healthcheck, MountSource,
    MountSpec, NetworkAttachment, NetworkSpec, PortSpec, Secret, ServiceSpec, StackSpec,
    VolumeSpec, labels,
};
use berth::plan::{
    Addr, Change, ContainerPayload, Current, ImagePayload, Kind, NetworkPayload, Op, Payload, Plan,
    PullReason, Reason, ServiceRef, VolumePayload,
};

use crate::support::{World, docker, docker_run, free_port};

const APP1: &str = "berth-test/app:1";
const APP2: &str = "berth-test/app:2";
const BUSYBOX: &str = "berth-test/busybox:1";
const SEC: i64 = 1_000_000_000;

fn docker_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&docker(args)).expect("docker prints JSON")
}

fn inspect(name: &str) -> serde_json::Value {
    docker_json(&["inspect", "--type", "container", name])[0].clone()
}

/// Engine-test helpers on the shared [`World`].
impl World {
    async fn engine(&self) -> Engine {
        Engine::connect()
            .await
            .expect("the Docker Engine is reachable")
            .with_instance(&self.instance)
    }

    fn stack_spec(&self, name: &str, services: Vec<(&str, ServiceSpec)>) -> StackSpec {
        StackSpec {
            name: self.stack(name),
            file: PathBuf::from(format!("{name}/compose.yaml")),
            dir: self.path().to_path_buf(),
            services: services
                .into_iter()
                .map(|(n, s)| (n.to_string(), s))
                .collect(),
            ..Default::default()
        }
    }
}

fn desired(stacks: Vec<StackSpec>) -> Desired {
    Desired {
        stacks: stacks.into_iter().map(|s| (s.name.clone(), s)).collect(),
        ..Default::default()
    }
}

fn opts() -> ApplyOptions {
    ApplyOptions {
        health_timeout: Duration::from_secs(20),
        completion_timeout: Duration::from_secs(20),
        poll_interval: Duration::from_millis(200),
        ..ApplyOptions::default()
    }
}

async fn run(
    engine: &Engine,
    _desired: &Desired,
    mut changes: Vec<Change>,
    o: &ApplyOptions,
) -> (Result<ApplyReport, ApplyError>, Vec<ApplyEvent>) {
    // Hand-built changes get the edges the planner would add, and its order.
    berth::plan::link(&mut changes);
    let plan = Plan {
        changes: berth::plan::order(changes).expect("no cycle"),
        ..Default::default()
    };
    let mut events = Vec::new();
    let r = apply(engine, &berth::apply::NoHost, &plan, o, &mut |e| {
        events.push(e)
    })
    .await;
    (r, events)
}

fn container(
    stack: &StackSpec,
    service: &str,
    op: Op,
    current: Option<Current>,
    reasons: Vec<Reason>,
) -> Change {
    let name = format!("{}-{service}-1", stack.name);
    let spec = &stack.services[service];
    Change {
        addr: Addr::in_stack(Kind::Container, &stack.name, &name),
        op,
        reasons,
        needs: berth::kinds::container::service_needs(stack, spec),
        payload: Payload::Container(ContainerPayload {
            stack: stack.name.clone(),
            service: service.to_string(),
            number: 1,
            name,
            current,
            spec: Some(Arc::new(stack.clone())),
            current_ports: vec![],
            reload: None,
            stop_grace_period: None,
            handover: None,
        }),
    }
}

fn create(stack: &StackSpec, service: &str) -> Change {
    container(stack, service, Op::Create, None, vec![Reason::NewService])
}

fn replace(stack: &StackSpec, service: &str, old_id: &str) -> Change {
    let current = Current {
        id: old_id.to_string(),
        name: format!("{}-{service}-1", stack.name),
    };
    container(
        stack,
        service,
        Op::Replace,
        Some(current),
        vec![Reason::Field {
            field: "image".into(),
            detail: "changed".into(),
        }],
    )
}

fn existing(
    stack: &str,
    service: &str,
    name: &str,
    id: &str,
    op: Op,
    spec: Option<Arc<StackSpec>>,
) -> Change {
    Change {
        addr: Addr::in_stack(Kind::Container, stack, name),
        op,
        reasons: vec![],
        needs: vec![],
        payload: Payload::Container(ContainerPayload {
            stack: stack.to_string(),
            service: service.to_string(),
            number: 1,
            name: name.to_string(),
            current: Some(Current {
                id: id.to_string(),
                name: name.to_string(),
            }),
            spec,
            current_ports: vec![],
            reload: None,
            stop_grace_period: None,
            handover: None,
        }),
    }
}

fn start_change(stack: &str, service: &str, name: &str, id: &str) -> Change {
    existing(stack, service, name, id, Op::Start, None)
}

fn remove_change(stack: &str, service: &str, name: &str, id: &str) -> Change {
    existing(stack, service, name, id, Op::Delete, None)
}

fn create_network(stack: &str, spec: &NetworkSpec) -> Change {
    Change {
        addr: Addr::in_stack(Kind::Network, stack, &spec.name),
        op: Op::Create,
        reasons: vec![],
        needs: vec![],
        payload: Payload::Network(NetworkPayload {
            stack: stack.to_string(),
            name: spec.name.clone(),
            spec: Some(spec.clone()),
        }),
    }
}

fn create_volume(stack: &str, spec: &VolumeSpec) -> Change {
    Change {
        addr: Addr::in_stack(Kind::Volume, stack, &spec.name),
        op: Op::Create,
        reasons: vec![],
        needs: vec![],
        payload: Payload::Volume(VolumePayload {
            stack: stack.to_string(),
            name: spec.name.clone(),
            spec: Some(spec.clone()),
        }),
    }
}

fn pull(image: &str, reason: PullReason, services: Vec<ServiceRef>) -> Change {
    Change {
        addr: Addr::image(image),
        op: Op::Pull,
        reasons: vec![],
        needs: vec![],
        payload: Payload::Image(ImagePayload {
            image: image.to_string(),
            reason,
            services,
        }),
    }
}

fn http_healthcheck() -> Healthcheck {
    Healthcheck {
        test: vec![
            "CMD".into(),
            "wget".into(),
            "-q".into(),
            "-O-".into(),
            "http://127.0.0.1:8080/".into(),
        ],
        interval: Some(SEC / 2),
        timeout: Some(SEC),
        retries: Some(3),
        ..Default::default()
    }
}

fn app(image: &str) -> ServiceSpec {
    ServiceSpec {
        image: image.into(),
        replicas: 1,
        stop_grace_period: Some(1),
        ..Default::default()
    }
}

fn sleeper() -> ServiceSpec {
    ServiceSpec {
        image: BUSYBOX.into(),
        replicas: 1,
        stop_grace_period: Some(0),
        ..Default::default()
    }
}

fn container_ids_by_name(prefix: &str) -> Vec<(String, String)> {
    docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={prefix}"),
        "--format",
        "{{.Names}} {{.ID}}",
    ])
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(n, i)| (n.to_string(), i.to_string()))
    .collect()
}

#[tokio::test]
async fn create_container_round_trip() {
    let w = World::new("create");
    let engine = w.engine().await;
    let mut st = w.stack_spec("s", vec![]);
    let front = NetworkSpec {
        name: format!("{}_front", st.name),
        ..Default::default()
    };
    let back = NetworkSpec {
        name: format!("{}_back", st.name),
        ..Default::default()
    };
    let data = VolumeSpec {
        name: format!("{}_data", st.name),
        ..Default::default()
    };
    let secret_file = w.path().join("token.txt");
    std::fs::write(&secret_file, "tok").unwrap();
    let spec = ServiceSpec {
        environment: BTreeMap::from([
            ("GREETING".to_string(), Secret::new("hello")),
            ("PASSWORD".to_string(), Secret::new("s3cret")),
        ]),
        ports: vec![PortSpec {
            target: 8080,
            published: None,
            host_ip: Some("127.0.0.1".into()),
            protocol: "tcp".into(),
        }],
        mounts: vec![
            MountSpec {
                target: "/data".into(),
                source: MountSource::Volume {
                    name: data.name.clone(),
                    nocopy: false,
                    subpath: None,
                    selinux: None,
                },
                read_only: false,
            },
            MountSpec {
                target: "/scratch".into(),
                source: MountSource::Tmpfs {
                    size: Some(1 << 20),
                    mode: None,
                },
                read_only: false,
            },
            MountSpec {
                target: "/run/secrets/token".into(),
                source: MountSource::File {
                    file: secret_file.display().to_string(),
                    digest: "sha256:x".into(),
                    content: None,
                    uid: None,
                    gid: None,
                    mode: None,
                },
                read_only: false,
            },
            MountSpec {
                target: "/run/secrets/inline".into(),
                source: MountSource::File {
                    file: String::new(),
                    digest: "sha256:y".into(),
                    content: Some(Secret::new("inline-value")),
                    uid: None,
                    gid: None,
                    mode: None,
                },
                read_only: false,
            },
        ],
        networks: BTreeMap::from([
            (front.name.clone(), NetworkAttachment::default()),
            (
                back.name.clone(),
                NetworkAttachment {
                    aliases: vec!["api".into()],
                    ..Default::default()
                },
            ),
        ]),
        labels: BTreeMap::from([("team".to_string(), "ops".to_string())]),
        healthcheck: Some(http_healthcheck()),
        restart: Some("unless-stopped".into()),
        ..app(APP1)
    };
    st.services.insert("web".into(), spec.clone());
    st.networks.insert("front".into(), front.clone());
    st.networks.insert("back".into(), back.clone());
    st.volumes.insert("data".into(), data.clone());
    let d = desired(vec![st.clone()]);

    let before = engine.requests();
    let (r, events) = run(
        &engine,
        &d,
        vec![
            create_network(&st.name.clone(), &front.clone()),
            create_network(&st.name.clone(), &back.clone()),
            create_volume(&st.name.clone(), &data.clone()),
            create(&st, "web"),
        ],
        &opts(),
    )
    .await;
    let report = r.expect("apply succeeds");
    assert_eq!(report.created, 1);
    assert_eq!(report.networks_created, 2);
    assert_eq!(report.volumes_created, 1);
    assert!(events.iter().any(
        |e| matches!(e, ApplyEvent::Created { name, .. } if *name == format!("{}-web-1", st.name))
    ));
    let used = engine.requests() - before;
    // 2 networks + 1 volume + create + 1 extra network connect + 1 upload + start + polls.
    assert!(used.mutating >= 7, "{used}");

    let name = format!("{}-web-1", st.name);
    let c = inspect(&name);
    assert_eq!(c["State"]["Running"], true);
    assert_eq!(c["State"]["Health"]["Status"], "healthy");
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels["team"], "ops");
    assert_eq!(labels[labels::MANAGED], "true");
    assert_eq!(labels[labels::INSTANCE], w.instance.as_str());
    assert_eq!(labels[labels::STACK], st.name.as_str());
    assert_eq!(labels[labels::SERVICE], "web");
    assert_eq!(labels[labels::SPEC_HASH], spec.spec_hash().as_str());
    assert_eq!(labels[labels::SPEC], spec.canonical_json().as_str());
    assert_eq!(labels[labels::COMPOSE_PROJECT], st.name.as_str());
    assert_eq!(labels[labels::COMPOSE_SERVICE], "web");
    assert_eq!(labels[labels::COMPOSE_NUMBER], "1");
    assert_eq!(labels[labels::COMPOSE_ONEOFF], "False");
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(env.contains(&"GREETING=hello"), "{env:?}");
    assert!(env.contains(&"PASSWORD=s3cret"), "{env:?}");
    let pb = &c["HostConfig"]["PortBindings"]["8080/tcp"][0];
    assert_eq!(pb["HostIp"], "127.0.0.1");
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(
        c["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"])
    );
    let mounts = c["Mounts"].as_array().unwrap();
    let find = |dest: &str| {
        mounts
            .iter()
            .find(|m| m["Destination"] == dest)
            .unwrap_or_else(|| panic!("mount {dest} in {mounts:?}"))
    };
    assert_eq!(find("/data")["Type"], "volume");
    assert_eq!(find("/data")["Name"], data.name.as_str());
    assert_eq!(find("/run/secrets/token")["Type"], "bind");
    assert_eq!(find("/run/secrets/token")["RW"], false);
    assert!(
        c["HostConfig"]["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Type"] == "tmpfs" && m["Target"] == "/scratch")
    );
    let nets = &c["NetworkSettings"]["Networks"];
    assert!(nets[&front.name].is_object(), "{nets}");
    assert!(nets[&back.name].is_object(), "{nets}");
    let aliases = nets[&back.name]["Aliases"].to_string();
    assert!(
        aliases.contains("\"web\"") && aliases.contains("\"api\""),
        "{aliases}"
    );
    // Files: the bind-mounted one and the one copied in by content.
    assert_eq!(docker(&["exec", &name, "cat", "/run/secrets/token"]), "tok");
    assert_eq!(
        docker(&["exec", &name, "cat", "/run/secrets/inline"]),
        "inline-value"
    );
    // The network and volume carry berth's and Compose's labels.
    let n = docker_json(&["network", "inspect", &back.name])[0].clone();
    assert_eq!(n["Labels"][labels::MANAGED], "true");
    assert_eq!(n["Labels"][labels::COMPOSE_NETWORK], "back");
    let v = docker_json(&["volume", "inspect", &data.name])[0].clone();
    assert_eq!(v["Labels"][labels::STACK], st.name.as_str());
    assert_eq!(v["Labels"][labels::COMPOSE_VOLUME], "data");

    // inspect_state agrees.
    let (state, health) = engine.inspect_state(&name).await.unwrap();
    assert_eq!(state, ContainerState::Running);
    assert_eq!(health, Some(Health::Healthy));
}

#[tokio::test]
async fn observe_is_two_requests_when_nothing_needs_listing() {
    let w = World::new("observe");
    let engine = w.engine().await;
    let mut st = w.stack_spec("s", vec![]);
    let net = NetworkSpec {
        name: format!("{}_default", st.name),
        ..Default::default()
    };
    let vol = VolumeSpec {
        name: format!("{}_data", st.name),
        ..Default::default()
    };
    let spec = ServiceSpec {
        networks: BTreeMap::from([(net.name.clone(), NetworkAttachment::default())]),
        mounts: vec![MountSpec {
            target: "/data".into(),
            source: MountSource::Volume {
                name: vol.name.clone(),
                nocopy: false,
                subpath: None,
                selinux: None,
            },
            read_only: false,
        }],
        ..sleeper()
    };
    st.services.insert("app".into(), spec);
    st.networks.insert("default".into(), net.clone());
    st.volumes.insert("data".into(), vol.clone());
    let d = desired(vec![st.clone()]);

    // Before anything exists the container list proves nothing: networks and volumes listed,
    // and the name to be created is looked up among containers berth does not own.
    let before = engine.requests();
    let o = engine.observe(&d).await.unwrap();
    let used = engine.requests() - before;
    assert_eq!(used.total, 5, "{:?}", engine.request_log());
    assert_eq!(used.mutating, 0);
    assert!(!o.networks.as_ref().unwrap().contains_key(&net.name));

    let (r, _) = run(
        &engine,
        &d,
        vec![
            create_network(&st.name.clone(), &net.clone()),
            create_volume(&st.name.clone(), &vol.clone()),
            create(&st, "app"),
        ],
        &opts(),
    )
    .await;
    r.unwrap();

    let before = engine.requests();
    let o = engine.observe(&d).await.unwrap();
    let used = engine.requests() - before;
    assert_eq!(used.total, 2, "{:?}", engine.request_log());
    assert_eq!(used.mutating, 0);
    let log = engine.request_log();
    let last2 = &log[log.len() - 2..];
    assert!(
        last2.contains(&"GET /containers/json".to_string()),
        "{log:?}"
    );
    assert!(last2.contains(&"GET /images/json".to_string()), "{log:?}");
    assert_eq!(o.networks, None);
    assert_eq!(o.volumes, None);
    let name = format!("{}-app-1", st.name);
    let c = o
        .containers
        .iter()
        .find(|c| c.name == name)
        .expect("our container is observed");
    assert_eq!(c.state, ContainerState::Running);
    assert!(c.owned_by(&w.instance));
    assert_eq!(c.stack(), Some(st.name.as_str()));
    assert_eq!(c.service(), Some("app"));
    assert_eq!(c.networks, vec![net.name.clone()]);
    assert_eq!(c.volumes.len(), 1);
    assert_eq!(c.volumes[0].name, vol.name);
    assert_eq!(c.volumes[0].destination, "/data");
    assert_eq!(Some(&c.image_id), o.images.get(BUSYBOX));
    // Normalised image keys.
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", BUSYBOX]);
    assert_eq!(o.images.get(BUSYBOX), Some(&id));

    // An exited container's code comes from the list's status text.
    docker(&["stop", "-t", "0", &name]);
    let o = engine.observe(&d).await.unwrap();
    let c = o.containers.iter().find(|c| c.name == name).unwrap();
    // The Engine usually reports 137 (SIGKILL) here, but under load it can record 255; what
    // matters is that the list's status text gives the code the Engine recorded.
    let code: i64 = docker(&["inspect", "--format", "{{.State.ExitCode}}", &name])
        .parse()
        .unwrap();
    assert_ne!(code, 0);
    assert_eq!(c.state, ContainerState::Exited(code));

    // A stack of this instance that left the config: networks and volumes must be listed.
    let before = engine.requests();
    let o = engine.observe(&desired(vec![])).await.unwrap();
    assert_eq!((engine.requests() - before).total, 4);
    let n = &o.networks.as_ref().unwrap()[&net.name];
    assert!(n.owned_by(&w.instance));
    assert_eq!(n.stack.as_deref(), Some(st.name.as_str()));
    assert!(o.volumes.as_ref().unwrap()[&vol.name].owned_by(&w.instance));
}

#[tokio::test]
async fn replace_keeps_volume_data_and_is_observably_safe() {
    let w = World::new("replace");
    let engine = w.engine().await;
    let mut st = w.stack_spec("s", vec![]);
    let vol = VolumeSpec {
        name: format!("{}_data", st.name),
        ..Default::default()
    };
    let with_volume = |image: &str| ServiceSpec {
        mounts: vec![MountSpec {
            target: "/data".into(),
            source: MountSource::Volume {
                name: vol.name.clone(),
                nocopy: false,
                subpath: None,
                selinux: None,
            },
            read_only: false,
        }],
        healthcheck: Some(http_healthcheck()),
        ..app(image)
    };
    st.services.insert("app".into(), with_volume(APP1));
    st.volumes.insert("data".into(), vol.clone());
    let d1 = desired(vec![st.clone()]);
    let (r, _) = run(
        &engine,
        &d1,
        vec![
            create_volume(&st.name.clone(), &vol.clone()),
            create(&st, "app"),
        ],
        &opts(),
    )
    .await;
    r.unwrap();
    let name = format!("{}-app-1", st.name);
    let old_id = inspect(&name)["Id"].as_str().unwrap().to_string();
    docker(&["exec", &name, "sh", "-c", "echo precious > /data/file"]);

    st.services.insert("app".into(), with_volume(APP2));
    let d2 = desired(vec![st.clone()]);
    let (r, events) = run(&engine, &d2, vec![replace(&st, "app", &old_id)], &opts()).await;
    let report = r.unwrap();
    assert_eq!(report.replaced, 1);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ApplyEvent::Replaced { name: n, .. } if *n == name)),
        "{events:?}"
    );
    let c = inspect(&name);
    assert_ne!(c["Id"].as_str().unwrap(), old_id);
    assert_eq!(c["State"]["Running"], true);
    assert_eq!(c["Config"]["Image"], APP2);
    assert_eq!(docker(&["exec", &name, "cat", "/data/file"]), "precious");
    assert_eq!(
        docker(&["exec", &name, "wget", "-q", "-O-", "http://127.0.0.1:8080/"]),
        "app v2"
    );
    // The old one is gone, nothing is left aside.
    let all = container_ids_by_name(&st.name);
    assert_eq!(all.len(), 1, "{all:?}");
    // The volume survived (remove never takes volumes).
    docker(&["volume", "inspect", &vol.name]);
}

#[tokio::test]
async fn failing_replace_restores_the_old_container() {
    let w = World::new("restore");
    let engine = w.engine().await;
    let mut st = w.stack_spec("s", vec![]);
    let good = ServiceSpec {
        healthcheck: Some(http_healthcheck()),
        ..app(APP1)
    };
    st.services.insert("app".into(), good.clone());
    let d1 = desired(vec![st.clone()]);
    let (r, _) = run(&engine, &d1, vec![create(&st, "app")], &opts()).await;
    r.unwrap();
    let name = format!("{}-app-1", st.name);
    let old_id = inspect(&name)["Id"].as_str().unwrap().to_string();

    // 1. The new container exits at once while a healthcheck is required.
    st.services.insert(
        "app".into(),
        ServiceSpec {
            command: Some(vec!["sh".into(), "-c".into(), "exit 3".into()]),
            ..good.clone()
        },
    );
    let d2 = desired(vec![st.clone()]);
    let (r, events) = run(&engine, &d2, vec![replace(&st, "app", &old_id)], &opts()).await;
    let err = r.expect_err("the replacement fails");
    let msg = err.to_string();
    assert!(msg.contains(&format!("{}/app", st.name)), "{msg}");
    assert!(msg.contains("exited (code 3)"), "{msg}");
    assert!(msg.contains("restored the old container"), "{msg}");
    assert!(!err.is_transient());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ApplyEvent::Restored { .. })),
        "{events:?}"
    );
    let c = inspect(&name);
    assert_eq!(
        c["Id"].as_str().unwrap(),
        old_id,
        "the old container is back"
    );
    assert_eq!(c["State"]["Running"], true);
    assert_eq!(container_ids_by_name(&st.name).len(), 1);

    // 2. The new container cannot start: its host port is taken by someone else.
    let port = free_port();
    let blocker = docker_run(&["-d", "-p", &format!("127.0.0.1:{port}:8080"), APP1]);
    w.adopt(&blocker);
    st.services.insert(
        "app".into(),
        ServiceSpec {
            ports: vec![PortSpec {
                target: 8080,
                published: Some(port),
                host_ip: Some("127.0.0.1".into()),
                protocol: "tcp".into(),
            }],
            ..good.clone()
        },
    );
    let d3 = desired(vec![st.clone()]);
    let (r, _) = run(&engine, &d3, vec![replace(&st, "app", &old_id)], &opts()).await;
    let msg = r.expect_err("port conflict").to_string();
    assert!(msg.contains("restored the old container"), "{msg}");
    let c = inspect(&name);
    assert_eq!(c["Id"].as_str().unwrap(), old_id);
    assert_eq!(c["State"]["Running"], true);
    assert_eq!(container_ids_by_name(&st.name).len(), 1);
}

#[tokio::test]
async fn depends_on_service_healthy_waits_and_times_out() {
    let w = World::new("depends");
    let engine = w.engine().await;
    let db = ServiceSpec {
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            "sleep 2; touch /tmp/ready; exec sleep 3600".into(),
        ]),
        healthcheck: Some(Healthcheck {
            test: vec!["CMD-SHELL".into(), "test -f /tmp/ready".into()],
            interval: Some(SEC / 4),
            retries: Some(100),
            ..Default::default()
        }),
        ..sleeper()
    };
    let web = ServiceSpec {
        depends_on: BTreeMap::from([(
            "db".to_string(),
            DependsOn {
                condition: DependsCondition::ServiceHealthy,
                required: true,
                restart: false,
            },
        )]),
        ..sleeper()
    };
    let st = w.stack_spec("s", vec![("db", db.clone()), ("web", web.clone())]);
    let d = desired(vec![st.clone()]);
    // db is created by hand (not waited for): web's create must wait for it.
    let db_id = engine
        .create_container(&st, "db", &db, 1, &format!("{}-db-1", st.name))
        .await
        .unwrap();
    engine.start(&db_id).await.unwrap();
    let (r, events) = run(&engine, &d, vec![create(&st, "web")], &opts()).await;
    r.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ApplyEvent::Waiting { service, .. } if service == "db")),
        "{events:?}"
    );
    let db_c = inspect(&format!("{}-db-1", st.name));
    let web_c = inspect(&format!("{}-web-1", st.name));
    assert_eq!(db_c["State"]["Health"]["Status"], "healthy");
    // web was created only once db was healthy (db's ready file appears after 2s).
    let created = |c: &serde_json::Value| c["Created"].as_str().unwrap().to_string();
    assert!(created(&web_c) > created(&db_c));

    // A dependency that never becomes healthy: a clear error, the dependent is not created.
    let never = ServiceSpec {
        healthcheck: Some(Healthcheck {
            test: vec!["CMD-SHELL".into(), "test -f /nope".into()],
            interval: Some(SEC),
            retries: Some(100),
            ..Default::default()
        }),
        ..sleeper()
    };
    let st2 = w.stack_spec("t", vec![("db", never.clone()), ("web", web.clone())]);
    let d2 = desired(vec![st2.clone()]);
    let id = engine
        .create_container(&st2, "db", &never, 1, &format!("{}-db-1", st2.name))
        .await
        .unwrap();
    engine.start(&id).await.unwrap();
    let short = ApplyOptions {
        health_timeout: Duration::from_secs(2),
        ..opts()
    };
    let (r, _) = run(&engine, &d2, vec![create(&st2, "web")], &short).await;
    let msg = r.expect_err("db never healthy").to_string();
    assert!(
        msg.starts_with(&format!("{}/db: health check failed after 2s", st2.name)),
        "{msg}"
    );
    assert!(msg.contains("/web depends on it"), "{msg}");
    assert!(
        Command::new("docker")
            .args(["inspect", &format!("{}-web-1", st2.name)])
            .output()
            .map(|o| !o.status.success())
            .unwrap()
    );

    // service_completed_successfully: a non-zero exit names the code.
    let job = ServiceSpec {
        command: Some(vec!["sh".into(), "-c".into(), "exit 4".into()]),
        ..sleeper()
    };
    let after_job = ServiceSpec {
        depends_on: BTreeMap::from([(
            "job".to_string(),
            DependsOn {
                condition: DependsCondition::ServiceCompletedSuccessfully,
                required: true,
                restart: false,
            },
        )]),
        ..sleeper()
    };
    let st3 = w.stack_spec("u", vec![("job", job), ("web", after_job)]);
    let d3 = desired(vec![st3.clone()]);
    let (r, _) = run(
        &engine,
        &d3,
        vec![create(&st3, "job"), create(&st3, "web")],
        &opts(),
    )
    .await;
    let msg = r.expect_err("job fails").to_string();
    assert!(msg.contains("exited with code 4"), "{msg}");
}

#[tokio::test]
async fn pull_failure_changes_nothing() {
    let w = World::new("pull");
    let engine = w.engine().await;
    let missing = format!("berth-test/does-not-exist:{}", std::process::id());
    let mut st = w.stack_spec("s", vec![("app", app(&missing))]);
    let net = NetworkSpec {
        name: format!("{}_default", st.name),
        ..Default::default()
    };
    st.networks.insert("default".into(), net.clone());
    let d = desired(vec![st.clone()]);
    let before = engine.requests();
    let (r, events) = run(
        &engine,
        &d,
        vec![
            pull(
                &missing.clone(),
                PullReason::Missing,
                vec![ServiceRef {
                    stack: st.name.clone(),
                    service: "app".into(),
                }],
            ),
            create_network(&st.name.clone(), &net.clone()),
            create(&st, "app"),
        ],
        &opts(),
    )
    .await;
    let err = r.expect_err("the pull fails");
    let msg = err.to_string();
    assert!(msg.contains(&missing), "{msg}");
    assert!(msg.contains("nothing that needs it was changed"), "{msg}");
    assert!(
        msg.contains(&format!("(needed by {}/app)", st.name)),
        "{msg}"
    );
    eprintln!("pull error: {msg}");
    assert!(matches!(
        err.failures(),
        [berth::apply::Failure {
            error: berth::apply::StepError::Pull { .. },
            ..
        }]
    ));
    assert!(matches!(&events[0], ApplyEvent::Pulling { image } if *image == missing));
    // Exactly one request: the pull. No network, no container.
    assert_eq!((engine.requests() - before).total, 1);
    assert_eq!(docker(&["network", "ls", "-q", "--filter", &w.label()]), "");
    assert_eq!(docker(&["ps", "-aq", "--filter", &w.label()]), "");
}

#[tokio::test]
async fn plan_with_errors_is_refused() {
    let w = World::new("refuse");
    let engine = w.engine().await;
    let st = w.stack_spec("s", vec![("app", sleeper())]);
    let plan = Plan {
        changes: vec![create(&st, "app")],
        errors: vec![berth::plan::PlanError::BuildNotSupported {
            stack: st.name.clone(),
            service: "app".into(),
        }],
        ..Default::default()
    };
    let before = engine.requests();
    let r = apply(&engine, &berth::apply::NoHost, &plan, &opts(), &mut |_| {}).await;
    assert!(matches!(r, Err(ApplyError::PlanHasErrors { .. })));
    assert_eq!((engine.requests() - before).total, 0);
}

#[tokio::test]
async fn remove_keeps_volumes_and_start_self_heals() {
    let w = World::new("remove");
    let engine = w.engine().await;
    let mut st = w.stack_spec("s", vec![]);
    let vol = VolumeSpec {
        name: format!("{}_data", st.name),
        ..Default::default()
    };
    st.services.insert(
        "app".into(),
        ServiceSpec {
            mounts: vec![MountSpec {
                target: "/data".into(),
                source: MountSource::Volume {
                    name: vol.name.clone(),
                    nocopy: false,
                    subpath: None,
                    selinux: None,
                },
                read_only: false,
            }],
            ..sleeper()
        },
    );
    st.volumes.insert("data".into(), vol.clone());
    let d = desired(vec![st.clone()]);
    let (r, _) = run(
        &engine,
        &d,
        vec![
            create_volume(&st.name.clone(), &vol.clone()),
            create(&st, "app"),
        ],
        &opts(),
    )
    .await;
    r.unwrap();
    let name = format!("{}-app-1", st.name);
    let id = inspect(&name)["Id"].as_str().unwrap().to_string();
    docker(&["stop", "-t", "0", &name]);
    let (r, _) = run(
        &engine,
        &d,
        vec![start_change(
            &st.name.clone(),
            "app",
            &name.clone(),
            &id.clone(),
        )],
        &opts(),
    )
    .await;
    assert_eq!(r.unwrap().started, 1);
    assert_eq!(inspect(&name)["State"]["Running"], true);

    let (r, _) = run(
        &engine,
        &desired(vec![]),
        vec![remove_change(&st.name.clone(), "app", &name.clone(), &id)],
        &opts(),
    )
    .await;
    assert_eq!(r.unwrap().removed, 1);
    assert_eq!(docker(&["ps", "-aq", "--filter", &w.label()]), "");
    docker(&["volume", "inspect", &vol.name]);
}

#[tokio::test]
async fn unreachable_engine_says_how_to_fix_it() {
    let err = Engine::connect_to("unix:///nonexistent/berth-docker.sock")
        .await
        .expect_err("no engine there");
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "cannot reach the Docker Engine at unix:///nonexistent/berth-docker.sock: "
        ),
        "{msg}"
    );
    assert!(msg.contains("Is dockerd running? Set DOCKER_HOST"), "{msg}");
    assert!(err.is_transient());
}

/// Real Engine answers: no registry is reachable here, so a pull is "registry unavailable"
/// (transient: retry later); a reference the Engine refuses is permanent at once. One request
/// each.
#[tokio::test]
async fn pull_failures_say_whether_retrying_may_help() {
    let engine = Engine::connect()
        .await
        .expect("the Docker Engine is reachable");
    let cases = [
        (
            "docker.io/library/nonexistent-xyz:1",
            PullFailure::Unavailable,
        ),
        ("UPPER/case:1", PullFailure::InvalidReference),
        ("berth-test/app:-bad", PullFailure::InvalidReference),
    ];
    for (image, want) in cases {
        let before = engine.requests();
        let err = engine
            .pull(image, |_| {})
            .await
            .expect_err("cannot be pulled here");
        assert_eq!((engine.requests() - before).total, 1, "{image}");
        match &err {
            DockerError::Pull { kind, .. } => assert_eq!(*kind, want, "{image}: {err}"),
            other => panic!("{image}: not a pull error: {other:?}"),
        }
        assert_eq!(
            err.is_transient(),
            want == PullFailure::Unavailable,
            "{err}"
        );
        assert!(err.to_string().contains(image), "{err}");
        eprintln!("{err}");
    }
}

/// observe → plan → apply → observe → plan: the second plan is empty and its observe costs
/// exactly two requests, no mutation.
#[tokio::test]
async fn converges_with_the_planner_and_noop_costs_two_requests() {
    let w = World::new("converge");
    let engine = w.engine().await;
    let mut st = w.stack_spec("s", vec![]);
    let net = NetworkSpec {
        name: format!("{}_default", st.name),
        ..Default::default()
    };
    let vol = VolumeSpec {
        name: format!("{}_data", st.name),
        ..Default::default()
    };
    let on_net = |s: ServiceSpec| ServiceSpec {
        networks: BTreeMap::from([(net.name.clone(), NetworkAttachment::default())]),
        ..s
    };
    st.services.insert(
        "db".into(),
        on_net(ServiceSpec {
            mounts: vec![MountSpec {
                target: "/data".into(),
                source: MountSource::Volume {
                    name: vol.name.clone(),
                    nocopy: false,
                    subpath: None,
                    selinux: None,
                },
                read_only: false,
            }],
            healthcheck: Some(Healthcheck {
                test: vec!["CMD".into(), "true".into()],
                interval: Some(SEC / 4),
                ..Default::default()
            }),
            ..sleeper()
        }),
    );
    st.services.insert(
        "web".into(),
        on_net(ServiceSpec {
            depends_on: BTreeMap::from([(
                "db".to_string(),
                DependsOn {
                    condition: DependsCondition::ServiceHealthy,
                    required: true,
                    restart: false,
                },
            )]),
            healthcheck: Some(http_healthcheck()),
            replicas: 2,
            ..app(APP1)
        }),
    );
    st.networks.insert("default".into(), net.clone());
    st.volumes.insert("data".into(), vol.clone());
    let d = desired(vec![st.clone()]);
    let popts = berth::plan::PlanOptions {
        instance: w.instance.clone(),
        ..Default::default()
    };

    let observed = engine.observe(&d).await.unwrap();
    let plan = berth::plan::plan(&d, &observed, &popts);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    let mut events = Vec::new();
    let report = apply(&engine, &berth::apply::NoHost, &plan, &opts(), &mut |e| {
        events.push(e)
    })
    .await
    .unwrap_or_else(|e| panic!("apply: {e}\nplan: {plan:#?}"));
    assert_eq!(report.created, 3, "{plan:#?}");

    let before = engine.requests();
    let observed = engine.observe(&d).await.unwrap();
    let used = engine.requests() - before;
    assert_eq!(used.total, 2, "{:?}", engine.request_log());
    assert_eq!(used.mutating, 0);
    let plan = berth::plan::plan(&d, &observed, &popts);
    assert!(plan.changes.is_empty(), "{:#?}", plan.changes);

    // Change web's image: the planner replaces both replicas, the executor does it safely.
    let mut st2 = st.clone();
    st2.services.get_mut("web").unwrap().image = APP2.into();
    let d2 = desired(vec![st2]);
    let plan = berth::plan::plan(&d2, &observed, &popts);
    let report = apply(&engine, &berth::apply::NoHost, &plan, &opts(), &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("apply: {e}\nplan: {plan:#?}"));
    assert_eq!(report.replaced, 2, "{plan:#?}");
    for n in 1..=2 {
        let name = format!("{}-web-{n}", st.name);
        assert_eq!(
            docker(&["exec", &name, "wget", "-q", "-O-", "http://127.0.0.1:8080/"]),
            "app v2"
        );
    }
    let observed = engine.observe(&d2).await.unwrap();
    let plan = berth::plan::plan(&d2, &observed, &popts);
    assert!(plan.changes.is_empty(), "{:#?}", plan.changes);

    // The stack leaves the config (allowed explicitly): everything but the volume goes.
    let empty = desired(vec![]);
    let observed = engine.observe(&empty).await.unwrap();
    let plan = berth::plan::plan(
        &empty,
        &observed,
        &berth::plan::PlanOptions {
            allow_empty: true,
            ..popts.clone()
        },
    );
    let report = apply(&engine, &berth::apply::NoHost, &plan, &opts(), &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("apply: {e}\nplan: {plan:#?}"));
    assert_eq!(report.removed, 3, "{plan:#?}");
    assert_eq!(report.networks_removed, 1, "{plan:#?}");
    assert_eq!(docker(&["ps", "-aq", "--filter", &w.label()]), "");
    docker(&["volume", "inspect", &vol.name]);
}

#[tokio::test]
async fn replace_keeps_anonymous_volumes() {
    let w = World::new("anon");
    let engine = w.engine().await;
    let mut st = w.stack_spec("s", vec![]);
    let spec = |image: &str| ServiceSpec {
        mounts: vec![MountSpec {
            target: "/cache".into(),
            source: MountSource::Anonymous,
            read_only: false,
        }],
        ..app(image)
    };
    st.services.insert("app".into(), spec(APP1));
    let (r, _) = run(
        &engine,
        &desired(vec![st.clone()]),
        vec![create(&st, "app")],
        &opts(),
    )
    .await;
    r.unwrap();
    let name = format!("{}-app-1", st.name);
    let old_id = inspect(&name)["Id"].as_str().unwrap().to_string();
    docker(&["exec", &name, "sh", "-c", "echo kept > /cache/f"]);
    st.services.insert("app".into(), spec(APP2));
    let (r, _) = run(
        &engine,
        &desired(vec![st.clone()]),
        vec![replace(&st, "app", &old_id)],
        &opts(),
    )
    .await;
    r.unwrap();
    assert_ne!(inspect(&name)["Id"].as_str().unwrap(), old_id);
    assert_eq!(docker(&["exec", &name, "cat", "/cache/f"]), "kept");
    // Clean up the anonymous volume (not labelled, so the World does not see it).
    let vols: Vec<String> = inspect(&name)["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["Name"].as_str().map(str::to_string))
        .collect();
    docker(&["rm", "-f", &name]);
    for v in vols {
        docker(&["volume", "rm", &v]);
    }
}

#[tokio::test]
async fn volumes_from_and_resource_options_reach_the_engine() {
    let w = World::new("volfrom");
    let engine = w.engine().await;
    let data = ServiceSpec {
        mounts: vec![MountSpec {
            target: "/shared".into(),
            source: MountSource::Anonymous,
            read_only: false,
        }],
        ..sleeper()
    };
    let app = ServiceSpec {
        volumes_from: vec!["data:ro".into()],
        cpu_period: Some(100_000),
        cpu_quota: Some(50_000),
        mem_swappiness: Some(10),
        cgroup: Some("private".into()),
        ..sleeper()
    };
    let st = w.stack_spec("s", vec![("data", data.clone()), ("app", app.clone())]);
    let data_name = format!("{}-data-1", st.name);
    let app_name = format!("{}-app-1", st.name);
    engine
        .create_container(&st, "data", &data, 1, &data_name)
        .await
        .unwrap();
    engine
        .create_container(&st, "app", &app, 1, &app_name)
        .await
        .unwrap();
    let info = inspect(&app_name);
    let hc = &info["HostConfig"];
    assert_eq!(
        hc["VolumesFrom"],
        serde_json::json!([format!("{data_name}:ro")])
    );
    assert_eq!(hc["CpuPeriod"], 100_000);
    assert_eq!(hc["CpuQuota"], 50_000);
    assert_eq!(hc["MemorySwappiness"], 10);
    assert_eq!(hc["CgroupnsMode"], "private");
    // The other service's volume, mounted read-only at the same path.
    let shared = info["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/shared")
        .expect("volumes_from mounts /shared")
        .clone();
    assert_eq!(shared["RW"], false);

    // Annotations need API 1.43: an older Engine refuses them with a clear error instead of
    // dropping them.
    let annotated = ServiceSpec {
        annotations: BTreeMap::from([("com.example.a".to_string(), "1".to_string())]),
        ..sleeper()
    };
    let name = format!("{}-annotated-1", st.name);
    let r = engine
        .create_container(&st, "annotated", &annotated, 1, &name)
        .await;
    let (major, minor) = engine
        .api_version()
        .split_once('.')
        .map(|(a, b)| (a.parse::<u32>().unwrap(), b.parse::<u32>().unwrap()))
        .unwrap();
    if (major, minor) < (1, 43) {
        let e = r.expect_err("annotations on an old Engine").to_string();
        assert!(e.contains("annotations needs Docker API 1.43"), "{e}");
        assert!(container_ids_by_name(&name).is_empty());
    } else {
        r.unwrap();
        assert_eq!(
            inspect(&name)["HostConfig"]["Annotations"]["com.example.a"],
            "1"
        );
    }
}

#[tokio::test]
async fn a_new_container_that_never_becomes_healthy_is_not_left_behind() {
    let w = World::new("unhealthy");
    let engine = w.engine().await;
    let spec = ServiceSpec {
        healthcheck: Some(Healthcheck {
            test: vec!["CMD-SHELL".into(), "exit 1".into()],
            interval: Some(SEC / 4),
            retries: Some(1),
            ..Default::default()
        }),
        ..sleeper()
    };
    let st = w.stack_spec("s", vec![("app", spec)]);
    let d = desired(vec![st.clone()]);
    let o = ApplyOptions {
        health_timeout: Duration::from_secs(5),
        ..opts()
    };
    let (r, _) = run(&engine, &d, vec![create(&st, "app")], &o).await;
    let e = r.expect_err("an unhealthy new container fails the apply");
    assert!(e.to_string().contains("app"), "{e}");
    // Removed again: the next plan sees it missing (and creates it), not "up to date".
    assert!(container_ids_by_name(&st.name).is_empty());
}
