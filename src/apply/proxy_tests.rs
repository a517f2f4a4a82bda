//! Executor tests of the proxy change and the route-only handover, against the fake Engine
//! driver and a fake proxy that records loads (in the same call log) and injects refusals.

use std::sync::Mutex as StdMutex;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::tests::{Fake, fast, healthy_svc, one_stack, present, running_web};
use super::*;
use crate::caddy::CaddyError;
use crate::model::edge::{Headers, ProxyAdmin, ProxySpec, RouteSpec, Source, Upstream};
use crate::model::host::Origin;
use crate::model::{ContainerState, Desired, ServiceSpec};
use crate::plan::{PlanOptions, plan};

/// Records every load in the Engine fake's call log; refuses when `refuse` is set.
struct FakeProxy {
    engine: Fake,
    refuse: bool,
    loads: StdMutex<Vec<Value>>,
}

impl ProxyDriver for FakeProxy {
    fn load<'a>(
        &'a self,
        admin: &'a str,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<(), CaddyError>> {
        Box::pin(async move {
            let dials: Vec<String> = crate::caddy::render::live_sites(config)
                .into_values()
                .map(|(d, _)| d)
                .collect();
            self.engine.log(format!("load {admin} {}", dials.join(",")));
            self.loads.lock().unwrap().push(config.clone());
            if self.refuse {
                Err(CaddyError::Refused {
                    message: "loading new config: http app module: injected".into(),
                })
            } else {
                Ok(())
            }
        })
    }
}

fn web() -> ServiceSpec {
    let mut s = healthy_svc();
    s.expose = vec!["3000".into()];
    s.networks.insert("edge".into(), Default::default());
    s
}

/// Stack `s` with `web` (image `image`) routed at web.example.org.
fn routed(image: &str) -> Desired {
    let mut spec = web();
    spec.image = image.into();
    let mut d = one_stack(vec![("web", spec)]);
    let o = Origin {
        file: "s/compose.yaml".into(),
        line: 1,
        col: 1,
    };
    d.stacks.get_mut("s").unwrap().routes = vec![RouteSpec {
        host: "web.example.org".into(),
        path: None,
        to: Upstream::Service {
            stack: "s".into(),
            service: "web".into(),
            port: 3000,
        },
        access: Source::Anywhere,
        origin: o.clone(),
        keys: Default::default(),
    }];
    d.edge.proxy = Some(ProxySpec {
        admin: ProxyAdmin::Url("http://127.0.0.1:2019".into()),
        network: Some("edge".into()),
        email: None,
        acme_ca: None,
        acme_ca_root: None,
        headers: Headers::None,
        origin: o,
    });
    d
}

fn proxy(engine: &Fake, refuse: bool) -> FakeProxy {
    FakeProxy {
        engine: engine.clone(),
        refuse,
        loads: Default::default(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_load_is_the_changes_error() {
    let d = routed("test/app:1");
    let fake = Fake::default();
    let id = fake.running("s-web-1");
    let mut o = present(&d);
    o.containers
        .push(running_web(&id, &d.stacks["s"].services["web"]));
    // Observed on its network (at another address than it has now).
    o.containers
        .last_mut()
        .unwrap()
        .addresses
        .insert("edge".into(), "10.0.0.9".into());
    o.proxy = Some(crate::model::edge::ObservedProxy::Config(Value::Null));
    let p = plan(&d, &o, &PlanOptions::default());
    assert_eq!(p.changes.len(), 1, "{p:?}");
    let px = proxy(&fake, true);
    let err = apply_with_proxy(&fake, &NoHost, &px, &p, &fast(), &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Caddy refused the config (it keeps the previous one)"),
        "{err}"
    );
    // The upstream was resolved from the container as it is now.
    assert_eq!(fake.calls(), ["load http://127.0.0.1:2019 10.0.0.1:3000"]);
}

/// The old container serves until the proxy points at the new one; only then it goes.
#[tokio::test(start_paused = true)]
async fn a_route_only_replace_switches_the_proxy_before_the_old_container_goes() {
    let before = routed("test/app:1");
    let after = routed("test/app:2");
    let fake = Fake::default();
    let old = fake.running("s-web-1");
    let mut o = present(&after);
    o.containers
        .push(running_web(&old, &before.stacks["s"].services["web"]));
    let p = plan(&after, &o, &PlanOptions::default());
    let px = proxy(&fake, false);
    assert_eq!(px.loads.lock().unwrap().len(), 0);
    apply_with_proxy(&fake, &NoHost, &px, &p, &fast(), &mut |_| {})
        .await
        .unwrap();
    let calls: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| !c.starts_with("healthy"))
        .collect();
    assert_eq!(
        calls,
        [
            // A leftover `-berth-next` of an interrupted handover would be removed first.
            "remove ",
            "create s-web-1-berth-next",
            "start s-web-1-berth-next",
            // The routes go to the new container (10.0.0.2) while the old one still runs…
            "load http://127.0.0.1:2019 10.0.0.2:3000",
            // …then the old one goes and the new one takes the name.
            "stop s-web-1",
            "remove s-web-1",
            "rename s-web-1",
            // The proxy change after the replace loads the same config again.
            "load http://127.0.0.1:2019 10.0.0.2:3000",
        ]
    );
    let left: Vec<(String, ContainerState)> = fake.containers().into_values().collect();
    assert_eq!(left, [("s-web-1".to_string(), ContainerState::Running)]);
}

#[tokio::test(start_paused = true)]
async fn a_handover_that_cannot_switch_leaves_the_old_container_serving() {
    let before = routed("test/app:1");
    let after = routed("test/app:2");
    for refuse_load in [true, false] {
        let fake = Fake::default();
        let old = fake.running("s-web-1");
        let mut o = present(&after);
        o.containers
            .push(running_web(&old, &before.stacks["s"].services["web"]));
        let p = plan(&after, &o, &PlanOptions::default());
        if !refuse_load {
            fake.fail_start("s-web-1-berth-next");
        }
        let px = proxy(&fake, refuse_load);
        let err = apply_with_proxy(&fake, &NoHost, &px, &p, &fast(), &mut |_| {})
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("the old container kept serving and was not touched"),
            "{err}"
        );
        // Only the old container is left, running under its name; it was never stopped.
        let left: Vec<(String, ContainerState)> = fake.containers().into_values().collect();
        assert_eq!(left, [("s-web-1".to_string(), ContainerState::Running)]);
        assert!(
            !fake.calls().iter().any(|c| c == "stop s-web-1"),
            "{:?}",
            fake.calls()
        );
    }
}
