//! Unit tests of the executor: the container conditions, and the graph run against a fake
//! driver that records calls and injects failures.

use std::time::Duration;

use super::container::{Check, check, has_healthcheck, healthcheck_disabled, human_duration};
use super::*;
use crate::model::Healthcheck;
use crate::model::{ContainerState, Health, ServiceSpec};

#[test]
fn health_checks() {
    use ContainerState as S;
    assert!(matches!(
        check(Wait::Healthy, &S::Running, Some(Health::Healthy)),
        Check::Done
    ));
    assert!(matches!(
        check(Wait::Healthy, &S::Running, Some(Health::Starting)),
        Check::Wait
    ));
    assert!(matches!(
        check(Wait::Healthy, &S::Running, Some(Health::Unhealthy)),
        Check::Failed(m) if m == "unhealthy"
    ));
    assert!(matches!(
        check(Wait::Healthy, &S::Exited(3), Some(Health::Starting)),
        Check::Failed(m) if m.contains("code 3")
    ));
    assert!(matches!(
        check(Wait::Healthy, &S::Running, None),
        Check::Failed(m) if m.contains("no healthcheck")
    ));
    assert!(matches!(
        check(Wait::Completed, &S::Exited(0), None),
        Check::Done
    ));
    assert!(matches!(
        check(Wait::Completed, &S::Exited(2), None),
        Check::Failed(m) if m == "exited with code 2"
    ));
    assert!(matches!(
        check(Wait::Completed, &S::Running, None),
        Check::Wait
    ));
    assert!(matches!(
        check(Wait::Running, &S::Running, None),
        Check::Done
    ));
    // Up: healthy with a health check (whoever declared it), else running.
    assert!(matches!(
        check(Wait::Ready, &S::Running, Some(Health::Starting)),
        Check::Wait
    ));
    assert!(matches!(
        check(Wait::Ready, &S::Running, Some(Health::Healthy)),
        Check::Done
    ));
    assert!(matches!(check(Wait::Ready, &S::Running, None), Check::Done));
    assert!(matches!(
        check(Wait::Ready, &S::Running, Some(Health::Unhealthy)),
        Check::Failed(_)
    ));
    // A one-shot from an image with a HEALTHCHECK: exit 0 is done, another exit is not.
    assert!(matches!(
        check(Wait::Ready, &S::Exited(0), Some(Health::Starting)),
        Check::Done
    ));
    assert!(matches!(
        check(Wait::Ready, &S::Exited(1), Some(Health::Starting)),
        Check::Failed(m) if m.contains("code 1")
    ));
    assert!(matches!(
        check(Wait::Ready, &S::Exited(0), None),
        Check::Done
    ));
    assert!(matches!(
        check(Wait::Ready, &S::Dead, Some(Health::Starting)),
        Check::Failed(_)
    ));
    assert!(matches!(
        check(Wait::Running, &S::Created, None),
        Check::Failed(_)
    ));
}

#[test]
fn healthcheck_none_is_no_healthcheck() {
    let mut spec = ServiceSpec::default();
    assert!(!has_healthcheck(&spec));
    spec.healthcheck = Some(Healthcheck {
        test: vec!["NONE".into()],
        ..Default::default()
    });
    assert!(!has_healthcheck(&spec));
    spec.healthcheck = Some(Healthcheck {
        test: vec!["CMD".into(), "true".into()],
        ..Default::default()
    });
    assert!(has_healthcheck(&spec));
}

#[test]
fn event_text() {
    let e = ApplyEvent::Waiting {
        stack: "web".into(),
        service: "db".into(),
        container: "web-db-1".into(),
        until: Wait::Healthy,
        elapsed: Duration::from_millis(12_300),
    };
    assert_eq!(e.to_string(), "waiting for web/db to be healthy (12s)");
    assert_eq!(human_duration(Duration::from_secs(60)), "60s");
}

// ---------------------------------------------------------------------------------------------
// The graph run, against a fake driver.

use std::collections::BTreeMap as Map;
use std::sync::{Arc, Mutex as StdMutex};

use crate::docker::{ContainerInfo, DockerError};
use crate::model::{
    DependsCondition, DependsOn, Desired, NetworkSpec, Observed, ObservedMount, StackSpec,
    VolumeSpec,
};
use crate::plan::{PlanOptions, plan};

#[derive(Default)]
struct FakeState {
    /// id → (name, state, health, inspections until healthy)
    containers: Map<String, (String, ContainerState, Option<Health>, u32)>,
    calls: Vec<String>,
    next_id: u32,
    /// Container names whose create fails.
    fail_create: Vec<String>,
    /// Container names whose next start fails (once per entry).
    fail_start: Vec<String>,
    /// Images that declare a `HEALTHCHECK` of their own.
    image_healthcheck: Vec<String>,
}

#[derive(Clone, Default)]
pub(super) struct Fake(Arc<StdMutex<FakeState>>, Arc<InFlight>);

/// Engine calls in progress now, and the most there ever were.
#[derive(Default)]
struct InFlight {
    now: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
}

impl Fake {
    /// A call that takes a scheduler turn, so concurrent calls can overlap.
    async fn busy(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.1.now.fetch_add(1, SeqCst) + 1;
        self.1.max.fetch_max(now, SeqCst);
        tokio::task::yield_now().await;
        self.1.now.fetch_sub(1, SeqCst);
    }
    fn max_in_flight(&self) -> usize {
        self.1.max.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn engine_err(op: &str) -> DockerError {
    DockerError::Server {
        op: op.to_string(),
        status: 500,
        message: "injected".into(),
        transient: false,
    }
}

impl Fake {
    /// A running container `name`, healthy at once.
    pub(super) fn running(&self, name: &str) -> String {
        let id = self.add(name, 0);
        self.0.lock().unwrap().containers.get_mut(&id).unwrap().1 = ContainerState::Running;
        id
    }
    /// Every container: name and state, by ID.
    pub(super) fn containers(&self) -> Map<String, (String, ContainerState)> {
        self.0
            .lock()
            .unwrap()
            .containers
            .iter()
            .map(|(id, c)| (id.clone(), (c.0.clone(), c.1.clone())))
            .collect()
    }
    pub(super) fn fail_start(&self, name: &str) {
        self.0.lock().unwrap().fail_start.push(name.into());
    }
    pub(super) fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap().calls.clone()
    }
    pub(super) fn log(&self, call: String) {
        self.0.lock().unwrap().calls.push(call);
    }
    fn find(&self, id_or_name: &str) -> Option<String> {
        let s = self.0.lock().unwrap();
        s.containers
            .iter()
            .find(|(id, (name, ..))| *id == id_or_name || name == id_or_name)
            .map(|(id, _)| id.clone())
    }
    fn add(&self, name: &str, healthy_after: u32) -> String {
        let mut s = self.0.lock().unwrap();
        s.next_id += 1;
        let id = format!("{:064}", s.next_id);
        let health = (healthy_after > 0).then_some(Health::Starting);
        s.containers.insert(
            id.clone(),
            (
                name.to_string(),
                ContainerState::Created,
                health,
                healthy_after,
            ),
        );
        id
    }
}

impl Driver for Fake {
    async fn pull(&self, image: &str, _: &mut (dyn FnMut(&str) + Send)) -> Result<(), DockerError> {
        self.log(format!("pull {image}"));
        Ok(())
    }
    async fn create_network(&self, _: &str, spec: &NetworkSpec) -> Result<(), DockerError> {
        self.log(format!("create network {}", spec.name));
        Ok(())
    }
    async fn create_volume(&self, _: &str, spec: &VolumeSpec) -> Result<(), DockerError> {
        self.log(format!("create volume {}", spec.name));
        Ok(())
    }
    async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        self.log(format!("remove network {name}"));
        Ok(())
    }
    async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        self.log(format!("remove volume {name}"));
        Ok(())
    }
    async fn create_container(
        &self,
        _: &StackSpec,
        _: &str,
        spec: &ServiceSpec,
        _: u32,
        name: &str,
        _: &[ObservedMount],
    ) -> Result<String, DockerError> {
        self.busy().await;
        self.log(format!("create {name}"));
        if self.0.lock().unwrap().fail_create.iter().any(|n| n == name) {
            return Err(engine_err("create"));
        }
        let disabled = healthcheck_disabled(spec);
        let image_has = self
            .0
            .lock()
            .unwrap()
            .image_healthcheck
            .contains(&spec.image);
        let checks = if has_healthcheck(spec) || (image_has && !disabled) {
            3
        } else {
            0
        };
        Ok(self.add(name, checks))
    }
    async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.busy().await;
        let name = {
            let s = self.0.lock().unwrap();
            s.containers
                .get(id)
                .map(|c| c.0.clone())
                .unwrap_or_default()
        };
        self.log(format!("start {name}"));
        {
            // Each entry fails one start.
            let mut st = self.0.lock().unwrap();
            if let Some(i) = st.fail_start.iter().position(|n| *n == name) {
                st.fail_start.remove(i);
                return Err(engine_err("start"));
            }
        }
        if let Some(c) = self.0.lock().unwrap().containers.get_mut(id) {
            c.1 = ContainerState::Running;
        }
        Ok(())
    }
    async fn stop(&self, id: &str, _: Option<i64>) -> Result<(), DockerError> {
        let mut s = self.0.lock().unwrap();
        let Some(c) = s.containers.get_mut(id) else {
            return Err(DockerError::NotFound {
                op: "stop".into(),
                message: "no such container".into(),
            });
        };
        c.1 = ContainerState::Exited(0);
        let name = c.0.clone();
        s.calls.push(format!("stop {name}"));
        Ok(())
    }
    async fn rename(&self, id: &str, name: &str) -> Result<(), DockerError> {
        let mut s = self.0.lock().unwrap();
        if let Some(c) = s.containers.get_mut(id) {
            c.0 = name.to_string();
        }
        s.calls.push(format!("rename {name}"));
        Ok(())
    }
    async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let mut s = self.0.lock().unwrap();
        let name = s.containers.remove(id).map(|c| c.0).unwrap_or_default();
        s.calls.push(format!("remove {name}"));
        Ok(())
    }
    async fn signal(&self, id: &str, signal: &str) -> Result<(), DockerError> {
        let name = self
            .0
            .lock()
            .unwrap()
            .containers
            .get(id)
            .map(|c| c.0.clone())
            .unwrap_or_default();
        self.log(format!("signal {signal} {name}"));
        Ok(())
    }
    async fn exec(&self, id: &str, cmd: &[String]) -> Result<(i64, String), DockerError> {
        let name = self
            .0
            .lock()
            .unwrap()
            .containers
            .get(id)
            .map(|c| c.0.clone())
            .unwrap_or_default();
        self.log(format!("exec {} {name}", cmd.join(" ")));
        Ok((0, String::new()))
    }
    async fn inspect(&self, id_or_name: &str) -> Result<ContainerInfo, DockerError> {
        let Some(id) = self.find(id_or_name) else {
            return Err(DockerError::NotFound {
                op: "inspect".into(),
                message: "no such container".into(),
            });
        };
        let mut s = self.0.lock().unwrap();
        let c = s.containers.get_mut(&id).unwrap();
        if c.1 == ContainerState::Running && c.2 == Some(Health::Starting) {
            c.3 = c.3.saturating_sub(1);
            if c.3 == 0 {
                c.2 = Some(Health::Healthy);
                let name = c.0.clone();
                s.calls.push(format!("healthy {name}"));
            }
        }
        let c = &s.containers[&id];
        // Every container is on network `edge`, at an address from its ID.
        let n = id.trim_start_matches('0');
        Ok(ContainerInfo {
            id: id.clone(),
            name: c.0.clone(),
            state: c.1.clone(),
            health: c.2,
            health_budget: c.2.map(|_| Duration::from_secs(5)),
            volumes: vec![],
            stop_timeout: None,
            addresses: [("edge".to_string(), format!("10.0.0.{n}"))].into(),
        })
    }
}

pub(super) fn healthy_svc() -> ServiceSpec {
    ServiceSpec {
        image: "test/app:1".into(),
        replicas: 1,
        healthcheck: Some(Healthcheck {
            test: vec!["CMD".into(), "true".into()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn one_stack(services: Vec<(&str, ServiceSpec)>) -> Desired {
    let stack = StackSpec {
        name: "s".into(),
        services: services
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect(),
        ..Default::default()
    };
    Desired {
        stacks: [("s".to_string(), stack)].into(),
        ..Default::default()
    }
}

pub(super) fn present(d: &Desired) -> Observed {
    Observed {
        images: d
            .stacks
            .values()
            .flat_map(|s| s.services.values())
            .map(|s| {
                (
                    crate::model::normalize_image_ref(&s.image),
                    "sha256:1".into(),
                )
            })
            .collect(),
        ..Default::default()
    }
}

/// What the Engine shows for `s/web` running container `id`, created from `spec`.
pub(super) fn running_web(id: &str, spec: &ServiceSpec) -> crate::model::ObservedContainer {
    use crate::model::labels;
    crate::model::ObservedContainer {
        id: id.to_string(),
        name: "s-web-1".into(),
        labels: [
            (labels::MANAGED, "true".to_string()),
            (labels::STACK, "s".into()),
            (labels::SERVICE, "web".into()),
            (labels::SPEC_HASH, spec.spec_hash()),
            (labels::SPEC, spec.canonical_json()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        state: ContainerState::Running,
        health: None,
        image_id: "sha256:1".into(),
        networks: vec![],
        volumes: vec![],
        addresses: Default::default(),
    }
}

pub(super) fn fast() -> ApplyOptions {
    ApplyOptions {
        poll_interval: Duration::from_millis(10),
        ..ApplyOptions::default()
    }
}

#[tokio::test(start_paused = true)]
async fn independent_creates_wait_for_health_side_by_side() {
    let d = one_stack(vec![
        ("a", healthy_svc()),
        ("b", healthy_svc()),
        ("c", healthy_svc()),
    ]);
    let p = plan(&d, &present(&d), &PlanOptions::default());
    let fake = Fake::default();
    let report = apply(&fake, &NoHost, &p, &fast(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(report.created, 3);
    let calls = fake.calls();
    let last_start = calls.iter().rposition(|c| c.starts_with("start")).unwrap();
    let first_healthy = calls.iter().position(|c| c.starts_with("healthy")).unwrap();
    assert!(
        last_start < first_healthy,
        "all three started before the first became healthy: {calls:?}"
    );
}

/// Health is the container's, whichever declared it: a new container whose *image* has a
/// `HEALTHCHECK` is created only once healthy (what routes and dependents then see), unless the
/// Compose file disables it.
#[tokio::test(start_paused = true)]
async fn a_new_container_waits_for_its_images_health_check_too() {
    for (healthcheck, waits) in [
        (None, true),
        (
            Some(Healthcheck {
                test: vec!["NONE".into()],
                ..Default::default()
            }),
            false,
        ),
    ] {
        let spec = ServiceSpec {
            image: "test/with-healthcheck:1".into(),
            replicas: 1,
            healthcheck: healthcheck.clone(),
            ..Default::default()
        };
        let d = one_stack(vec![("web", spec)]);
        let p = plan(&d, &present(&d), &PlanOptions::default());
        let fake = Fake::default();
        fake.0
            .lock()
            .unwrap()
            .image_healthcheck
            .push("test/with-healthcheck:1".into());
        let mut events = Vec::new();
        apply(&fake, &NoHost, &p, &fast(), &mut |e| {
            events.push(e.to_string())
        })
        .await
        .unwrap();
        let calls = fake.calls();
        assert_eq!(
            calls.iter().any(|c| c.starts_with("healthy")),
            waits,
            "{healthcheck:?}: {calls:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn parallel_bounds_the_engine_requests_in_flight() {
    let services: Vec<(&str, ServiceSpec)> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| (*n, healthy_svc()))
        .collect();
    let d = one_stack(services);
    let p = plan(&d, &present(&d), &PlanOptions::default());
    for (parallel, most) in [(1, 1), (8, 4)] {
        let fake = Fake::default();
        let opts = ApplyOptions { parallel, ..fast() };
        let report = apply(&fake, &NoHost, &p, &opts, &mut |_| {}).await.unwrap();
        assert_eq!(report.created, 4);
        assert!(
            fake.max_in_flight() <= parallel,
            "parallel {parallel}: {} calls at once",
            fake.max_in_flight()
        );
        assert!(
            fake.max_in_flight() >= most.min(parallel),
            "parallel {parallel}: no overlap"
        );
        // Waiting for health holds no permit: even one at a time, all four start before the
        // first is healthy.
        let calls = fake.calls();
        let last_start = calls.iter().rposition(|c| c.starts_with("start")).unwrap();
        let first_healthy = calls.iter().position(|c| c.starts_with("healthy")).unwrap();
        assert!(last_start < first_healthy, "parallel {parallel}: {calls:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_stops_its_dependents_only() {
    let mut web = healthy_svc();
    web.depends_on.insert(
        "db".into(),
        DependsOn {
            condition: DependsCondition::ServiceHealthy,
            required: true,
            restart: false,
        },
    );
    let d = one_stack(vec![
        ("db", healthy_svc()),
        ("web", web),
        ("other", healthy_svc()),
    ]);
    let p = plan(&d, &present(&d), &PlanOptions::default());
    let fake = Fake::default();
    fake.0.lock().unwrap().fail_create.push("s-db-1".into());
    let err = apply(&fake, &NoHost, &p, &fast(), &mut |_| {})
        .await
        .unwrap_err();
    let ApplyError::Failed { report } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(report.created, 1, "other is created");
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].addr.name, "s-db-1");
    assert_eq!(
        report
            .not_attempted
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>(),
        ["s-web-1"]
    );
    assert!(!fake.calls().iter().any(|c| c == "create s-web-1"));
    assert!(!err.is_transient());
}

#[tokio::test(start_paused = true)]
async fn a_replacement_that_cannot_start_restores_the_old_container() {
    let before = one_stack(vec![(
        "web",
        ServiceSpec {
            image: "test/app:1".into(),
            replicas: 1,
            ..Default::default()
        },
    )]);
    let after = one_stack(vec![(
        "web",
        ServiceSpec {
            image: "test/app:2".into(),
            replicas: 1,
            ..Default::default()
        },
    )]);
    let fake = Fake::default();
    let old = fake.add("s-web-1", 0);
    fake.0.lock().unwrap().containers.get_mut(&old).unwrap().1 = ContainerState::Running;
    // What the Engine shows: the old container, created from `before`.
    let spec = &before.stacks["s"].services["web"];
    let mut observed = present(&after);
    observed.containers.push(running_web(&old, spec));
    let p = plan(&after, &observed, &PlanOptions::default());
    assert_eq!(p.changes.len(), 1, "{p:?}");
    fake.0.lock().unwrap().fail_start.push("s-web-1".into());
    // The *new* container gets the real name, so its start fails; the old one is renamed
    // aside by then, so its restart succeeds.
    let err = apply(&fake, &NoHost, &p, &fast(), &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("restored the old container"),
        "{err}"
    );
    let s = fake.0.lock().unwrap();
    let (name, state, ..) = &s.containers[&old];
    assert_eq!(name, "s-web-1");
    assert_eq!(*state, ContainerState::Running);
    assert_eq!(s.containers.len(), 1, "the new container is gone");
}

#[tokio::test(start_paused = true)]
async fn a_renamed_service_gives_up_its_port_before_the_new_one_takes_it() {
    let mut web = ServiceSpec {
        image: "test/app:1".into(),
        replicas: 1,
        ..Default::default()
    };
    web.ports = vec![crate::model::PortSpec {
        target: 8080,
        published: Some(18080),
        host_ip: None,
        protocol: "tcp".into(),
    }];
    let before = one_stack(vec![("web", web.clone())]);
    let after = one_stack(vec![("site", web)]);
    let fake = Fake::default();
    let old = fake.add("s-web-1", 0);
    let spec = &before.stacks["s"].services["web"];
    let mut observed = present(&after);
    observed.containers.push(running_web(&old, spec));
    let p = plan(&after, &observed, &PlanOptions::default());
    apply(&fake, &NoHost, &p, &fast(), &mut |_| {})
        .await
        .unwrap();
    let calls = fake.calls();
    let removed = calls.iter().position(|c| c == "remove s-web-1").unwrap();
    let created = calls.iter().position(|c| c == "create s-site-1").unwrap();
    assert!(removed < created, "{calls:?}");
}
