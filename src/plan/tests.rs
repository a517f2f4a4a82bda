//! Planner snapshot tests. Every case goes through [`check`]: build a Desired and an Observed by
//! hand, plan, and compare the rendered plan with its snapshot (`cargo insta review` to update).

use std::collections::BTreeMap;

use super::*;
use crate::model::{
    ContainerState, DependsOn, Desired, MountSource, MountSpec, NetworkSpec, Observed,
    ObservedContainer, ObservedMount, ObservedObject, Secret, ServiceSpec, StackSpec, VolumeSpec,
    labels,
};
use crate::render::plan_text;

/// Plan `desired` against `observed` and compare the human rendering with the snapshot `name`.
/// Also checks the invariants every plan must keep, whatever the case.
pub(super) fn check(name: &str, desired: &Desired, observed: &Observed, opts: PlanOptions) -> Plan {
    let plan = plan(desired, observed, &opts);
    let opts = &opts;
    let text = plan_text(&plan);
    // Invariant: never touch a container berth does not own.
    for c in &plan.changes {
        if let Payload::Container(p) = &c.payload
            && let Some(cur) = &p.current
        {
            let o = observed.containers.iter().find(|o| o.id == cur.id).unwrap();
            assert!(
                o.owned_by(&opts.instance),
                "{name}: plan touches unowned container {}",
                o.name
            );
        }
    }
    // Invariant: addresses are unique, and the printed order is one the edges allow.
    let mut seen = std::collections::BTreeSet::new();
    for c in &plan.changes {
        assert!(seen.insert(&c.addr), "{name}: {} twice", c.addr);
        for n in &c.needs {
            if plan.changes.iter().any(|d| d.addr == n.addr) {
                assert!(
                    seen.contains(&n.addr),
                    "{name}: {} is listed before {} which it needs",
                    c.addr,
                    n.addr
                );
            }
        }
    }
    // Invariant: secret values never reach the text or the JSON.
    let json = serde_json::to_string(&plan).unwrap();
    for stack in desired.stacks.values() {
        for spec in stack.services.values() {
            for v in spec.environment.values() {
                if v.expose().len() >= 4 {
                    assert!(!text.contains(v.expose()), "{name}: secret in plan text");
                    assert!(!json.contains(v.expose()), "{name}: secret in plan JSON");
                }
            }
        }
    }
    // Invariant: a backup's password, credentials and repository never reach the text or
    // the JSON.
    for (_, b) in desired.jobs.backups() {
        let env = b.environment.values().map(|v| v.expose());
        for v in env.chain([b.password.expose(), b.repository.expose()]) {
            if v.len() >= 4 {
                assert!(!text.contains(v), "{name}: backup secret in plan text");
                assert!(!json.contains(v), "{name}: backup secret in plan JSON");
            }
        }
    }
    // Invariant: a secret file's content never reaches the text or the JSON.
    for f in desired.host.files.values().filter(|f| f.secret) {
        if f.content.len() >= 4 {
            let c = String::from_utf8_lossy(&f.content);
            assert!(
                !text.contains(c.as_ref()),
                "{name}: secret file in plan text"
            );
            assert!(
                !json.contains(c.as_ref()),
                "{name}: secret file in plan JSON"
            );
        }
    }
    // Invariant: a host path berth did not record is changed only when the spec adopts it.
    for c in &plan.changes {
        let (path, adopt) = match &c.payload {
            Payload::File(p) => (
                &p.path,
                desired.host.files.get(&p.path).is_some_and(|f| f.adopt),
            ),
            Payload::Directory(p) => (
                &p.path,
                desired.host.dirs.get(&p.path).is_some_and(|d| d.adopt),
            ),
            _ => continue,
        };
        let recorded = observed
            .host
            .inventory
            .entries
            .contains_key(&c.addr.to_string());
        let exists = !matches!(
            observed.host.path(path),
            crate::model::host::PathState::Absent
        );
        assert!(
            recorded || adopt || !exists,
            "{name}: {} changes an unowned path",
            c.addr
        );
    }
    // Planning is deterministic.
    assert_eq!(plan, super::plan(desired, observed, opts));
    // With errors, also the text serve logs: each withheld group named, the rest going ahead.
    let by_group = crate::render::plan_text_by_group(&plan);
    let serve = if plan.errors.is_empty() || by_group == text {
        String::new()
    } else {
        format!("--- applied group by group (serve) ---\n{by_group}")
    };
    insta::assert_snapshot!(name, format!("{text}{serve}{}", edges(&plan)));
    plan
}

/// The edges of a plan, one line per change that needs something, for the snapshots.
fn edges(plan: &Plan) -> String {
    let mut out = String::new();
    for c in plan.changes.iter().filter(|c| !c.needs.is_empty()) {
        let needs: Vec<String> = c
            .needs
            .iter()
            .map(|n| {
                let opt = if n.required { "" } else { ", optional" };
                format!("{} ({:?}{opt})", n.addr, n.wait)
            })
            .collect();
        out.push_str(&format!(
            "{} {} needs {}\n",
            c.op.as_str(),
            c.addr,
            needs.join(", ")
        ));
    }
    if out.is_empty() {
        out
    } else {
        format!("--- edges ---\n{out}")
    }
}

pub(super) fn svc(image: &str) -> ServiceSpec {
    ServiceSpec {
        image: image.into(),
        replicas: 1,
        ..Default::default()
    }
}

pub(super) fn stack(name: &str, services: &[(&str, ServiceSpec)]) -> StackSpec {
    StackSpec {
        name: name.into(),
        file: format!("{name}/compose.yaml").into(),
        dir: format!("/srv/config/{name}").into(),
        services: services
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect(),
        ..Default::default()
    }
}

fn desired(stacks: &[StackSpec]) -> Desired {
    Desired {
        stacks: stacks.iter().map(|s| (s.name.clone(), s.clone())).collect(),
        ..Default::default()
    }
}

fn image_id(image: &str) -> String {
    crate::model::sha256_hex(image.as_bytes())
}

/// The Engine holds every image the desired state names.
pub(super) fn images_for(d: &Desired) -> BTreeMap<String, String> {
    d.stacks
        .values()
        .flat_map(|s| s.services.values())
        .map(|s| {
            let r = crate::model::normalize_image_ref(&s.image);
            (r.clone(), image_id(&r))
        })
        .collect()
}

/// A container berth created for `spec`, in `state`.
fn container(
    stack: &str,
    service: &str,
    n: u32,
    spec: &ServiceSpec,
    state: ContainerState,
) -> ObservedContainer {
    let name = container_name(stack, service, spec, n);
    let labels = BTreeMap::from([
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::STACK.to_string(), stack.to_string()),
        (labels::SERVICE.to_string(), service.to_string()),
        (labels::COMPOSE_NUMBER.to_string(), n.to_string()),
        (labels::SPEC_HASH.to_string(), spec.spec_hash()),
        (labels::SPEC.to_string(), spec.canonical_json()),
    ]);
    ObservedContainer {
        id: format!("{:0>64}", name.len() * 1000 + n as usize),
        name,
        labels,
        state,
        health: None,
        image_id: image_id(&crate::model::normalize_image_ref(&spec.image)),
        networks: vec![],
        volumes: vec![],
        addresses: Default::default(),
    }
}

/// What the Engine shows after berth applied `d` successfully.
pub(super) fn converged(d: &Desired) -> Observed {
    let mut containers = Vec::new();
    for s in d.stacks.values() {
        for (name, spec) in &s.services {
            for n in 1..=spec.replicas.max(1) {
                let mut c = container(&s.name, name, n, spec, ContainerState::Running);
                c.networks = spec.networks.keys().cloned().collect();
                c.volumes = spec
                    .mounts
                    .iter()
                    .filter_map(|m| match &m.source {
                        MountSource::Volume { name, .. } => Some(ObservedMount {
                            name: name.clone(),
                            destination: m.target.clone(),
                        }),
                        _ => None,
                    })
                    .collect();
                containers.push(c);
            }
        }
    }
    Observed {
        containers,
        images: images_for(d),
        networks: None,
        volumes: None,
        ..Default::default()
    }
}

/// A typical small stack: web depends on a healthy db; db has a data volume and a password.
fn webapp(web_image: &str, password: &str) -> StackSpec {
    let mut db = svc("postgres:16");
    db.environment
        .insert("POSTGRES_PASSWORD".into(), Secret::new(password));
    db.mounts.push(MountSpec {
        target: "/var/lib/postgresql/data".into(),
        source: MountSource::Volume {
            name: "webapp_data".into(),
            nocopy: false,
            subpath: None,
            selinux: None,
        },
        read_only: false,
    });
    db.networks
        .insert("webapp_default".into(), Default::default());
    let mut web = svc(web_image);
    web.depends_on.insert(
        "db".into(),
        DependsOn {
            condition: crate::model::DependsCondition::ServiceHealthy,
            required: true,
            restart: false,
        },
    );
    web.networks
        .insert("webapp_default".into(), Default::default());
    // "a-web" sorts before "db": the plan must still start db first.
    let mut s = stack("webapp", &[("a-web", web), ("db", db)]);
    s.networks.insert(
        "default".into(),
        NetworkSpec {
            name: "webapp_default".into(),
            ..Default::default()
        },
    );
    s.volumes.insert(
        "data".into(),
        VolumeSpec {
            name: "webapp_data".into(),
            ..Default::default()
        },
    );
    s
}

#[test]
fn empty_engine_creates_everything_in_dependency_order() {
    let d = desired(&[webapp("test/app:1", "s3cret-pw")]);
    let plan = check(
        "from_empty",
        &d,
        &Observed::default(),
        PlanOptions::default(),
    );
    let order: Vec<&str> = plan
        .changes
        .iter()
        .filter_map(|c| match (&c.payload, c.op) {
            (Payload::Container(p), Op::Create) => Some(p.service.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["db", "a-web"]);
}

#[test]
fn converged_state_is_a_no_op() {
    let d = desired(&[webapp("test/app:1", "s3cret-pw")]);
    let plan = check("no_op", &d, &converged(&d), PlanOptions::default());
    assert!(!plan.has_changes());
    assert_eq!(plan.unchanged.len(), 2);
}

#[test]
fn image_change_replaces_only_that_service() {
    let before = desired(&[webapp("test/app:1", "s3cret-pw")]);
    let after = desired(&[webapp("test/app:2", "s3cret-pw")]);
    let mut observed = converged(&before);
    observed.images = images_for(&after);
    let plan = check("image_change", &after, &observed, PlanOptions::default());
    assert_eq!(plan.summary().replaced, 1);
    assert_eq!(plan.unchanged.len(), 1);
}

#[test]
fn secret_change_names_the_key_not_the_value() {
    let before = desired(&[webapp("test/app:1", "old-password-1")]);
    let after = desired(&[webapp("test/app:1", "new-password-2")]);
    let plan = check(
        "secret_change",
        &after,
        &converged(&before),
        PlanOptions::default(),
    );
    let text = plan_text(&plan);
    assert!(text.contains("environment POSTGRES_PASSWORD changed (value hidden)"));
    assert!(!text.contains("old-password-1"));
}

#[test]
fn exited_container_is_started_again() {
    let d = desired(&[webapp("test/app:1", "s3cret-pw")]);
    let mut observed = converged(&d);
    observed.containers[0].state = ContainerState::Exited(137);
    let plan = check("exited", &d, &observed, PlanOptions::default());
    assert_eq!(plan.summary().started, 1);
}

#[test]
fn tag_that_moved_to_a_new_image_replaces() {
    let d = desired(&[webapp("test/app:1", "s3cret-pw")]);
    let mut observed = converged(&d);
    observed
        .images
        .insert("test/app:1".into(), image_id("rebuilt"));
    check("image_moved", &d, &observed, PlanOptions::default());
}

#[test]
fn removed_service_and_stack_are_pruned_volumes_kept() {
    let other = stack("other", &[("job", svc("busybox"))]);
    let before = desired(&[webapp("test/app:1", "pw-123456"), other]);
    let mut s = webapp("test/app:1", "pw-123456");
    s.services.remove("a-web");
    let after = desired(&[s]);
    let mut observed = converged(&before);
    observed.volumes = Some(BTreeMap::from([(
        "webapp_data".into(),
        ObservedObject {
            name: "webapp_data".into(),
            managed: true,
            stack: Some("webapp".into()),
            instance: None,
        },
    )]));
    observed.networks = Some(BTreeMap::from([(
        "other_default".into(),
        ObservedObject {
            name: "other_default".into(),
            managed: true,
            stack: Some("other".into()),
            instance: None,
        },
    )]));
    let plan = check("prune", &after, &observed, PlanOptions::default());
    assert!(
        !plan
            .changes
            .iter()
            .any(|c| c.addr.kind == Kind::Volume && c.op == Op::Delete)
    );
}

#[test]
fn prune_volumes_only_when_asked_and_only_owned() {
    let before = desired(&[webapp("test/app:1", "pw-123456")]);
    let mut observed = converged(&before);
    observed.volumes = Some(BTreeMap::from([
        (
            "webapp_data".into(),
            ObservedObject {
                name: "webapp_data".into(),
                managed: true,
                stack: Some("webapp".into()),
                instance: None,
            },
        ),
        (
            "precious".into(),
            ObservedObject {
                name: "precious".into(),
                managed: false,
                stack: None,
                instance: None,
            },
        ),
    ]));
    let opts = PlanOptions {
        allow_empty: true,
        prune_volumes: true,
        ..Default::default()
    };
    check("prune_volumes", &desired(&[]), &observed, opts);
}

#[test]
fn empty_config_refuses_to_prune_everything() {
    let before = desired(&[webapp("test/app:1", "pw-123456")]);
    let plan = check(
        "empty_refused",
        &desired(&[]),
        &converged(&before),
        PlanOptions::default(),
    );
    assert!(plan.changes.is_empty());
    let allowed = PlanOptions {
        allow_empty: true,
        ..Default::default()
    };
    check("empty_allowed", &desired(&[]), &converged(&before), allowed);
}

#[test]
fn unowned_container_holding_a_name_is_a_conflict() {
    let d = desired(&[stack("blog", &[("web", svc("test/app:1"))])]);
    let mut observed = converged(&desired(&[]));
    observed.images = images_for(&d);
    let mut stranger = container("blog", "web", 1, &svc("nginx"), ContainerState::Running);
    stranger.labels.clear();
    observed.containers.push(stranger);
    let plan = check("conflict", &d, &observed, PlanOptions::default());
    assert!(plan.changes.is_empty());
}

#[test]
fn another_instances_containers_are_not_ours() {
    let d = desired(&[stack("blog", &[("web", svc("test/app:1"))])]);
    let mut observed = converged(&d);
    for c in &mut observed.containers {
        c.labels.insert(labels::INSTANCE.into(), "staging".into());
    }
    // Not pruned although its stack is not in "prod"'s config, and its name is a conflict.
    let prod = PlanOptions {
        instance: "prod".into(),
        allow_empty: true,
        ..Default::default()
    };
    check("other_instance", &desired(&[]), &observed, prod.clone());
    check("other_instance_conflict", &d, &observed, prod);
}

#[test]
fn a_stack_with_an_error_is_withheld_by_name_and_the_others_go_ahead() {
    let mut s = svc("blog-web");
    s.build = true;
    let d = desired(&[
        stack("blog", &[("web", s), ("cache", svc("test/redis:7"))]),
        stack("app", &[("web", svc("test/app:1"))]),
    ]);
    let p = check(
        "withheld_stack",
        &d,
        &Observed::default(),
        PlanOptions::default(),
    );
    let text = crate::render::plan_text_by_group(&p);
    assert!(
        text.contains("(withheld) + blog/cache: create container"),
        "{text}"
    );
    assert!(text.contains("\n+ app/web: create container"), "{text}");
    // Counted: only what goes ahead.
    assert!(text.contains("Plan: 1 created,"), "{text}");
    assert!(
        text.contains("Withheld, left as they run: stack blog (1 error)"),
        "{text}"
    );
    assert!(!text.contains("Nothing will be changed"), "{text}");
}

#[test]
fn build_is_reported_not_applied() {
    let mut s = svc("blog-web");
    s.build = true;
    let d = desired(&[stack("blog", &[("web", s)])]);
    check("build", &d, &Observed::default(), PlanOptions::default());
}

#[test]
fn scale_down_removes_the_highest_replicas() {
    let mut s = svc("test/app:1");
    s.replicas = 3;
    let before = desired(&[stack("w", &[("worker", s.clone())])]);
    s.replicas = 1;
    let after = desired(&[stack("w", &[("worker", s)])]);
    check(
        "scale_down",
        &after,
        &converged(&before),
        PlanOptions::default(),
    );
}

#[test]
fn restart_true_follows_a_replaced_dependency() {
    let mut web = svc("test/app:1");
    web.depends_on.insert(
        "db".into(),
        DependsOn {
            condition: Default::default(),
            required: true,
            restart: true,
        },
    );
    let before = desired(&[stack(
        "s",
        &[("web", web.clone()), ("db", svc("postgres:15"))],
    )]);
    let after = desired(&[stack("s", &[("web", web), ("db", svc("postgres:16"))])]);
    let mut observed = converged(&before);
    observed.images = images_for(&after);
    check(
        "restart_dependency",
        &after,
        &observed,
        PlanOptions::default(),
    );
}

#[test]
fn leftover_of_an_interrupted_replace_is_removed() {
    let d = desired(&[stack("s", &[("web", svc("test/app:1"))])]);
    let mut observed = converged(&d);
    let mut old = observed.containers[0].clone();
    old.id = "f".repeat(64);
    old.name = "s-web-1-berth-old".into();
    old.state = ContainerState::Exited(0);
    observed.containers.push(old);
    check("leftover", &d, &observed, PlanOptions::default());
}

#[test]
fn changed_fields_are_named_one_by_one() {
    let mut a = svc("test/app:1");
    a.labels.insert("tier".into(), "front".into());
    a.ports.push(crate::model::PortSpec {
        target: 80,
        published: Some(8080),
        host_ip: Some("127.0.0.1".into()),
        protocol: "tcp".into(),
    });
    let mut b = a.clone();
    b.labels.insert("tier".into(), "back".into());
    b.ports[0].published = Some(8081);
    b.command = Some(vec!["httpd".into(), "-f".into()]);
    b.mounts.push(MountSpec {
        target: "/run/secrets/token".into(),
        source: MountSource::File {
            file: "/srv/config/s/token.txt".into(),
            digest: image_id("token"),
            content: None,
            uid: None,
            gid: None,
            mode: None,
        },
        read_only: true,
    });
    let before = desired(&[stack("s", &[("web", a)])]);
    let after = desired(&[stack("s", &[("web", b)])]);
    check(
        "fields",
        &after,
        &converged(&before),
        PlanOptions::default(),
    );
}

#[test]
fn renamed_stack_frees_its_names_and_ports_before_creating() {
    let before = desired(&[stack("old", &[("web", svc("test/app:1"))])]);
    let after = desired(&[stack("new", &[("web", svc("test/app:1"))])]);
    let plan = check(
        "renamed_stack",
        &after,
        &converged(&before),
        PlanOptions::default(),
    );
    assert_eq!(
        (plan.changes[0].addr.kind, plan.changes[0].op),
        (Kind::Container, Op::Delete)
    );
}

#[test]
fn old_container_left_aside_by_a_crash_is_moved_back() {
    let d = desired(&[stack("s", &[("web", svc("test/app:1"))])]);
    let mut observed = converged(&d);
    // Killed after "rename old aside", before the new container was created.
    observed.containers[0].name = "s-web-1-berth-old".into();
    observed.containers[0].state = ContainerState::Exited(143);
    let plan = check("crash_left_aside", &d, &observed, PlanOptions::default());
    assert!(
        matches!(&plan.changes[0].payload, Payload::Container(p) if p.name == "s-web-1")
            && plan.changes[0].op == Op::Replace
    );
}

#[test]
fn volumes_from_orders_the_source_first() {
    let mut reader = svc("test/app:1");
    reader.volumes_from = vec!["writer:ro".into()];
    let d = desired(&[stack(
        "s",
        &[("a-reader", reader), ("writer", svc("test/app:1"))],
    )]);
    assert_eq!(
        crate::kinds::container::dependency_order(&d.stacks["s"]),
        ["writer", "a-reader"]
    );
}

fn published(port: u16) -> crate::model::PortSpec {
    crate::model::PortSpec {
        target: 8080,
        published: Some(port),
        host_ip: Some("127.0.0.1".into()),
        protocol: "tcp".into(),
    }
}

#[test]
fn renamed_service_keeping_its_port_deletes_the_old_container_first() {
    let mut web = svc("test/app:1");
    web.ports = vec![published(18080)];
    let before = desired(&[stack("s", &[("web", web.clone())])]);
    let after = desired(&[stack("s", &[("site", web)])]);
    let plan = check(
        "renamed_service_port",
        &after,
        &converged(&before),
        PlanOptions::default(),
    );
    let create = plan
        .changes
        .iter()
        .find(|c| c.op == Op::Create)
        .expect("a create");
    assert!(
        create
            .needs
            .iter()
            .any(|n| n.addr.name == "s-web-1" && n.wait == Wait::Applied),
        "{:?}",
        create.needs
    );
}

#[test]
fn a_port_moving_to_another_stack_waits_for_its_old_holder() {
    let mut web = svc("test/app:1");
    web.ports = vec![published(18081)];
    let before = desired(&[stack("old", &[("web", web.clone())]), stack("keep", &[])]);
    let after = desired(&[stack("keep", &[]), stack("new", &[("web", web)])]);
    let plan = check(
        "port_moves_stack",
        &after,
        &converged(&before),
        PlanOptions::default(),
    );
    let create = plan.changes.iter().find(|c| c.op == Op::Create).unwrap();
    assert!(create.needs.iter().any(|n| n.addr.name == "old-web-1"));
}

#[test]
fn unrelated_services_do_not_wait_for_each_other() {
    let mut s = Vec::new();
    for name in ["a", "b", "c"] {
        let mut spec = svc("test/app:1");
        spec.healthcheck = Some(crate::model::Healthcheck {
            test: vec!["CMD".into(), "true".into()],
            ..Default::default()
        });
        s.push((name, spec));
    }
    let d = desired(&[stack("s", &s)]);
    let mut observed = Observed {
        images: images_for(&d),
        ..Default::default()
    };
    observed.networks = Some(BTreeMap::new());
    let plan = check("independent", &d, &observed, PlanOptions::default());
    assert_eq!(plan.changes.len(), 3);
    assert!(plan.changes.iter().all(|c| c.needs.is_empty()));
}

#[test]
fn a_network_another_stack_creates_is_not_missing() {
    let mut edge = stack("edge", &[("proxy", svc("test/app:1"))]);
    edge.networks.insert(
        "edge".into(),
        NetworkSpec {
            name: "shared-edge".into(),
            ..Default::default()
        },
    );
    let mut app_svc = svc("test/app:1");
    app_svc
        .networks
        .insert("shared-edge".into(), Default::default());
    let mut app = stack("app", &[("web", app_svc)]);
    app.networks.insert(
        "edge".into(),
        NetworkSpec {
            name: "shared-edge".into(),
            external: true,
            ..Default::default()
        },
    );
    let d = desired(&[app.clone(), edge]);
    let observed = Observed {
        images: images_for(&d),
        networks: Some(BTreeMap::new()),
        ..Default::default()
    };
    let plan = check("cross_stack_network", &d, &observed, PlanOptions::default());
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    let web = plan
        .changes
        .iter()
        .find(|c| c.addr.name == "app-web-1")
        .unwrap();
    assert!(
        web.needs
            .iter()
            .any(|n| n.addr.to_string() == "network:edge/shared-edge")
    );

    // Nothing creates it: then it is missing.
    let alone = desired(&[app]);
    let observed = Observed {
        images: images_for(&alone),
        networks: Some(BTreeMap::new()),
        ..Default::default()
    };
    let plan = check(
        "external_missing",
        &alone,
        &observed,
        PlanOptions::default(),
    );
    assert!(matches!(
        &plan.errors[..],
        [PlanError::ExternalMissing { name, .. }] if name == "shared-edge"
    ));
}

#[test]
fn a_fixed_container_name_moving_to_another_service_is_freed_first() {
    let mut web = svc("test/app:1");
    web.container_name = Some("the-site".into());
    let before = desired(&[stack("s", &[("web", web.clone())])]);
    let after = desired(&[stack("s", &[("site", web)])]);
    let plan = check(
        "container_name_moves",
        &after,
        &converged(&before),
        PlanOptions::default(),
    );
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    let delete = plan.changes.iter().find(|c| c.op == Op::Delete).unwrap();
    assert!(delete.addr.name.starts_with("the-site@"));
    let create = plan.changes.iter().find(|c| c.op == Op::Create).unwrap();
    assert!(create.needs.iter().any(|n| n.addr == delete.addr));
}

#[test]
fn long_values_are_cut_where_they_differ_and_durations_are_readable() {
    let long = |tail: &str| {
        let mut spec = svc("test/app:1");
        spec.healthcheck = Some(crate::model::Healthcheck {
            test: vec![
                "CMD-SHELL".into(),
                format!("wget -q -O- http://127.0.0.1:8080/health/with/a/very/long/path/{tail}"),
            ],
            interval: Some(30_000_000_000),
            ..Default::default()
        });
        spec
    };
    let before = desired(&[stack("s", &[("web", long("one"))])]);
    let mut changed = long("two");
    if let Some(h) = &mut changed.healthcheck {
        h.interval = Some(1_500_000_000);
    }
    let after = desired(&[stack("s", &[("web", changed)])]);
    let plan = check(
        "long_diff",
        &after,
        &converged(&before),
        PlanOptions::default(),
    );
    let text = crate::render::plan_text(&plan);
    assert!(text.contains("healthcheck.interval 30s → 1.5s"), "{text}");
    assert!(text.contains("one") && text.contains("two"), "{text}");
}

#[test]
fn human_durations() {
    use super::diff::human_nanos;
    assert_eq!(human_nanos(500_000_000), "500ms");
    assert_eq!(human_nanos(90_000_000_000), "1m30s");
    assert_eq!(human_nanos(3_600_000_000_000), "1h");
    assert_eq!(human_nanos(1_250_000_000), "1.25s");
}

#[test]
fn a_changed_config_folder_reloads_once_when_the_service_asks() {
    let mut web = svc("test/app:1");
    web.mounts.push(MountSpec {
        target: "/etc/caddy".into(),
        source: MountSource::Bind {
            path: "/srv/config/s/caddy".into(),
            selinux: None,
            propagation: None,
            create_host_path: true,
        },
        read_only: true,
    });
    web.config_files
        .insert("s/caddy/".into(), "sha256:old".into());
    web.on_config_change = Some(crate::model::ConfigChangeAction::Exec(vec![
        "caddy".into(),
        "reload".into(),
    ]));
    let before = desired(&[stack("s", &[("web", web.clone())])]);
    web.config_files
        .insert("s/caddy/".into(), "sha256:new".into());
    let after = desired(&[stack("s", &[("web", web.clone())])]);
    let mut observed = converged(&before);
    let plan = check("reload", &after, &observed, PlanOptions::default());
    assert_eq!(plan.changes.len(), 1);
    assert_eq!(plan.changes[0].op, Op::Reload);

    // Once reloaded with these files (recorded in the state dir), nothing is left to do.
    let id = observed.containers[0].id.clone();
    observed.reloaded.insert(id, web.config_digest());
    let plan = check("reloaded", &after, &observed, PlanOptions::default());
    assert!(plan.changes.is_empty());

    // Any other change is a replace, as always.
    web.image = "test/app:2".into();
    let changed = desired(&[stack("s", &[("web", web)])]);
    let plan = check(
        "reload_and_more",
        &changed,
        &observed,
        PlanOptions::default(),
    );
    assert!(plan.changes.iter().any(|c| c.op == Op::Replace));
}
