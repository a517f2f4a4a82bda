//! Snapshot tests of the route planner (`proxy:caddy`) through the same [`check`] helper.

use super::tests::{check, converged, stack, svc};
use super::*;
use crate::caddy::render;
use crate::model::edge::*;
use crate::model::host::Origin;
use crate::model::{Desired, Healthcheck, Observed, PortSpec, ServiceSpec};

fn origin(file: &str, line: u64) -> Origin {
    Origin {
        file: file.into(),
        line,
        col: 9,
    }
}

fn route(host: &str, path: Option<&str>, service: &str, port: u16, access: Source) -> RouteSpec {
    RouteSpec {
        host: host.into(),
        path: path.map(String::from),
        to: Upstream::Service {
            stack: "apps".into(),
            service: service.into(),
            port,
        },
        access,
        origin: origin("apps/compose.yaml", 7),
        keys: Default::default(),
    }
}

fn app(image: &str) -> ServiceSpec {
    let mut s = svc(image);
    s.expose = vec!["3000".into()];
    s.networks.insert("edge".into(), Default::default());
    s.healthcheck = Some(Healthcheck {
        test: vec!["CMD".into(), "true".into()],
        ..Default::default()
    });
    s
}

fn proxy() -> ProxySpec {
    ProxySpec {
        admin: ProxyAdmin::Url("http://127.0.0.1:2019".into()),
        network: Some("edge".into()),
        email: Some("admin@example.org".into()),
        acme_ca: None,
        acme_ca_root: None,
        headers: Headers::Default,
        origin: origin("proxy/berth.yaml", 1),
    }
}

/// apps/app with a public route on the host and a tailnet one on /admin/*.
fn desired(image: &str) -> Desired {
    let mut st = stack("apps", &[("app", app(image))]);
    st.routes = vec![
        route("app1.example.org", None, "app", 3000, Source::Anywhere),
        route(
            "app1.example.org",
            Some("/admin/*"),
            "app",
            3000,
            Source::Set(TAILNET.into()),
        ),
    ];
    let mut d = Desired {
        stacks: [("apps".to_string(), st)].into(),
        ..Default::default()
    };
    d.edge.proxy = Some(proxy());
    d
}

/// The Engine runs `d` (app at 172.18.0.5 on edge) and Caddy runs `cfg`.
fn observed(d: &Desired, cfg: serde_json::Value) -> Observed {
    let mut o = converged(d);
    for c in &mut o.containers {
        c.addresses.insert("edge".into(), "172.18.0.5".into());
    }
    o.proxy = Some(ObservedProxy::Config(cfg));
    o
}

/// What berth loads for `d` when every container of it runs at 172.18.0.5.
fn loaded(d: &Desired) -> serde_json::Value {
    let o = observed(d, serde_json::Value::Null);
    let p = plan(d, &o, &PlanOptions::default());
    let c = p
        .changes
        .iter()
        .find(|c| c.payload.kind() == Kind::Proxy)
        .expect("a proxy change");
    let Payload::Proxy(pp) = &c.payload else {
        unreachable!()
    };
    let sites: Vec<render::Site> = pp
        .sites
        .iter()
        .map(|s| match &s.dial {
            Dial::Fixed(a) => s.site(a.clone()),
            Dial::Container { port, .. } => s.site(format!("172.18.0.5:{port}")),
        })
        .collect();
    render::render(&pp.settings, &sites)
}

#[test]
fn routes_of_a_new_service_wait_for_its_health() {
    let d = desired("test/app:1");
    let mut o = Observed {
        images: super::tests::images_for(&d),
        ..Default::default()
    };
    o.proxy = Some(ObservedProxy::Config(serde_json::Value::Null));
    check("proxy_fresh", &d, &o, PlanOptions::default());
}

#[test]
fn converged_routes_plan_nothing() {
    let d = desired("test/app:1");
    let o = observed(&d, loaded(&d));
    let p = check("proxy_converged", &d, &o, PlanOptions::default());
    assert!(!p.has_changes());
}

#[test]
fn a_hand_edit_in_caddy_is_drift() {
    let d = desired("test/app:1");
    let mut cfg = loaded(&d);
    // Someone POSTed another header set to the admin API.
    cfg["apps"]["http"]["servers"]["srv443"]["routes"][0]["handle"][0]["routes"][0] = serde_json::json!({"handle": [{"handler": "headers", "response": {"set": {"X-Hand": ["1"]}}}]});
    let o = observed(&d, cfg);
    check("proxy_drift", &d, &o, PlanOptions::default());
}

/// Caddy's config replaced by hand (or its Caddyfile after a restart): each route berth had
/// loaded is shown as drift, with what Caddy has instead — not as a new route.
#[test]
fn routes_berth_loaded_and_caddy_lost_are_drift_with_what_was_found() {
    let d = desired("test/app:1");
    let loaded_before = loaded(&d);
    let cfg = serde_json::json!({"apps": {"http": {"servers": {"mine": {"listen": [":443"], "routes": [
        {"match": [{"host": ["app1.example.org"]}], "handle": [{"handler": "static_response", "body": "hand-made"}]}
    ]}}}}});
    let mut o = observed(&d, cfg);
    o.proxy_loaded = crate::caddy::render::live_sites(&loaded_before)
        .into_iter()
        .map(|(id, (dial, _))| (id, dial))
        .collect();
    let p = check("proxy_hand_replaced", &d, &o, PlanOptions::default());
    let text = crate::render::plan_text(&p);
    assert!(
        text.contains("berth loaded it, Caddy no longer serves it (changed by hand or by a restart: drift); found a route berth did not load for this host (static_response)"),
        "{text}"
    );
    // A route berth loaded to 172.18.0.5 that Caddy now sends elsewhere: changed by hand.
    let moved = loaded_before
        .to_string()
        .replace("172.18.0.5", "172.18.0.9");
    let mut o = observed(&d, serde_json::from_str(&moved).unwrap());
    o.proxy_loaded = crate::caddy::render::live_sites(&loaded_before)
        .into_iter()
        .map(|(id, (dial, _))| (id, dial))
        .collect();
    let text = crate::render::plan_text(&plan(&d, &o, &PlanOptions::default()));
    assert!(
        text.contains("Caddy sends it to 172.18.0.9:3000, not to 172.18.0.5:3000 as berth loaded it (changed by hand: drift)"),
        "{text}"
    );
}

#[test]
fn a_moved_or_removed_route_and_an_unreachable_caddy() {
    let d = desired("test/app:1");
    let mut cfg = loaded(&d);
    let s = cfg.to_string().replace("172.18.0.5", "172.18.0.9");
    cfg = serde_json::from_str(&s).unwrap();
    // A route berth loaded earlier and that left the config.
    let mut old = desired("test/app:1");
    old.stacks.get_mut("apps").unwrap().routes.push(route(
        "old.example.org",
        None,
        "app",
        3000,
        Source::Anywhere,
    ));
    let with_old = loaded(&old);
    let extra = with_old["apps"]["http"]["servers"]["srv443"]["routes"][1].clone();
    cfg["apps"]["http"]["servers"]["srv443"]["routes"]
        .as_array_mut()
        .unwrap()
        .push(extra);
    let o = observed(&d, cfg);
    check("proxy_moved_removed", &d, &o, PlanOptions::default());

    let mut o = observed(&d, serde_json::Value::Null);
    o.proxy = Some(ObservedProxy::Unreachable(
        "Caddy's admin API at http://127.0.0.1:2019/config/ does not answer: connection failed"
            .into(),
    ));
    check("proxy_unreachable", &d, &o, PlanOptions::default());
}

/// apps/app's two good routes, a `kind: Route`, and three bad routes of stack `other`.
pub(crate) fn bad_routes() -> (Desired, Observed) {
    let mut d = desired("test/app:1");
    let mut other = stack("other", &[("web", app("test/app:1"))]);
    other.routes = vec![
        // Port not exposed.
        RouteSpec {
            host: "web.example.org".into(),
            path: None,
            to: Upstream::Service {
                stack: "other".into(),
                service: "web".into(),
                port: 8080,
            },
            access: Source::Anywhere,
            origin: origin("other/compose.yaml", 9),
            keys: Default::default(),
        },
        // The host and path apps/app has.
        RouteSpec {
            host: "app1.example.org".into(),
            path: None,
            to: Upstream::Service {
                stack: "other".into(),
                service: "web".into(),
                port: 3000,
            },
            access: Source::Anywhere,
            origin: origin("other/compose.yaml", 13),
            keys: Default::default(),
        },
        // An unknown address set.
        RouteSpec {
            host: "web.example.org".into(),
            path: Some("/admin/*".into()),
            to: Upstream::Service {
                stack: "other".into(),
                service: "web".into(),
                port: 3000,
            },
            access: Source::Set("office".into()),
            origin: origin("other/compose.yaml", 17),
            keys: Default::default(),
        },
    ];
    d.stacks.insert("other".into(), other);
    d.edge.routes.push(RouteSpec {
        host: "coolify.example.org".into(),
        path: None,
        to: Upstream::Address("127.0.0.1:8000".into()),
        access: Source::Cidrs(vec!["100.64.0.0/10".parse().unwrap()]),
        origin: origin("proxy/berth.yaml", 12),
        keys: Default::default(),
    });
    let mut o = observed(&d, serde_json::Value::Null);
    // What observe inspects for other/web's 8080: its image exposes nothing.
    let id = o.images["test/app:1"].clone();
    o.image_ports.insert(id, Default::default());
    (d, o)
}

#[test]
fn bad_routes_are_left_out_and_reported_on_their_stack() {
    let (d, o) = bad_routes();
    let p = check("proxy_bad_routes", &d, &o, PlanOptions::default());
    // The good routes are loaded; the bad ones only reported (on stack `other`: see
    // `pipeline::tests::a_bad_route_withholds_only_its_stack`).
    let Payload::Proxy(pp) = &p.change(&crate::kinds::route::addr()).unwrap().payload else {
        unreachable!()
    };
    assert_eq!(pp.sites.len(), 3);
    assert!(p.errors.iter().all(PlanError::is_contained));
}

#[test]
fn routes_without_a_proxy_are_errors() {
    let mut d = desired("test/app:1");
    d.edge.proxy = None;
    let o = converged(&d);
    check("proxy_missing", &d, &o, PlanOptions::default());
}

#[test]
fn a_route_goes_before_its_container_and_a_route_only_replace_hands_over() {
    // apps/app left the config with its route; apps/api replaces with a new image.
    let old = desired("test/app:1");
    let mut cfg = loaded(&old);
    let mut d = desired("test/app:1");
    let st = d.stacks.get_mut("apps").unwrap();
    st.services.clear();
    st.routes.clear();
    d.stacks
        .insert("api".into(), stack("api", &[("api", app("test/app:2"))]));
    d.stacks.get_mut("api").unwrap().routes = vec![RouteSpec {
        host: "api.example.org".into(),
        path: None,
        to: Upstream::Service {
            stack: "api".into(),
            service: "api".into(),
            port: 3000,
        },
        access: Source::Anywhere,
        origin: origin("api/compose.yaml", 7),
        keys: Default::default(),
    }];
    // The Engine runs apps/app and api/api (test/app:1); Caddy routes both.
    let mut was = old.clone();
    was.stacks
        .insert("api".into(), stack("api", &[("api", app("test/app:1"))]));
    was.stacks.get_mut("api").unwrap().routes = d.stacks["api"].routes.clone();
    cfg = {
        let _ = cfg;
        loaded(&was)
    };
    let mut o = observed(&was, cfg);
    o.images = super::tests::images_for(&d);
    let p = check("proxy_handover", &d, &o, PlanOptions::default());
    let replace = p
        .changes
        .iter()
        .find(|c| c.op == Op::Replace)
        .expect("a replace");
    let Payload::Container(cp) = &replace.payload else {
        unreachable!()
    };
    assert!(cp.handover.is_some(), "a route-only service hands over");

    // With a published port it is an ordinary replace.
    let mut d2 = d.clone();
    d2.stacks
        .get_mut("api")
        .unwrap()
        .services
        .get_mut("api")
        .unwrap()
        .ports
        .push(PortSpec {
            target: 3000,
            published: Some(3000),
            host_ip: Some("127.0.0.1".into()),
            protocol: "tcp".into(),
        });
    let p2 = plan(&d2, &o, &PlanOptions::default());
    let Payload::Container(cp) = &p2
        .changes
        .iter()
        .find(|c| c.op == Op::Replace)
        .unwrap()
        .payload
    else {
        unreachable!()
    };
    assert!(cp.handover.is_none());
}

#[test]
fn caddy_in_a_container_must_see_real_client_addresses() {
    let mut d = desired("test/app:1");
    let mut caddy = svc("caddy:2.6");
    caddy.networks.insert("edge".into(), Default::default());
    caddy.ports.push(PortSpec {
        target: 443,
        published: Some(443),
        host_ip: None,
        protocol: "tcp".into(),
    });
    d.stacks
        .insert("proxy".into(), stack("proxy", &[("caddy", caddy.clone())]));
    let p = d.edge.proxy.as_mut().unwrap();
    p.admin = ProxyAdmin::Service {
        stack: "proxy".into(),
        service: "caddy".into(),
    };
    p.network = None;
    let o = observed(&d, serde_json::Value::Null);
    check("proxy_client_addresses", &d, &o, PlanOptions::default());

    // Published on IPv4 only, the tailnet route is served.
    caddy.ports[0].host_ip = Some("0.0.0.0".into());
    d.stacks
        .insert("proxy".into(), stack("proxy", &[("caddy", caddy)]));
    let p = plan(&d, &o, &PlanOptions::default());
    assert!(p.errors.is_empty(), "{:?}", p.errors);
}

#[test]
fn a_route_port_is_exposed_by_the_compose_file_or_by_the_image() {
    let mut d = desired("test/app:1");
    d.stacks
        .get_mut("apps")
        .unwrap()
        .services
        .get_mut("app")
        .unwrap()
        .expose = Vec::new();
    let route_errors = |o: &Observed| -> Vec<String> {
        plan(&d, o, &PlanOptions::default())
            .errors
            .iter()
            .filter(|e| matches!(e, PlanError::Route { .. }))
            .map(ToString::to_string)
            .collect()
    };
    let mut o = observed(&d, serde_json::Value::Null);
    let id = o.images["test/app:1"].clone();
    // The image says `EXPOSE 3000`: the example, without `expose:`, is served.
    o.image_ports.insert(id.clone(), [3000].into());
    assert!(route_errors(&o).is_empty(), "{:?}", route_errors(&o));
    // It exposes another port: both routes are refused, naming the fix.
    o.image_ports.insert(id, [8080].into());
    let e = route_errors(&o);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains(
            "apps/app does not expose port 3000 (neither its image nor its Compose file)"
        ),
        "{e:?}"
    );
    // Not on the Engine yet (pulled by this plan): taken as written.
    let o = Observed {
        images: Default::default(),
        proxy: Some(ObservedProxy::Config(serde_json::Value::Null)),
        ..Default::default()
    };
    assert!(route_errors(&o).is_empty(), "{:?}", route_errors(&o));
}

#[test]
fn a_route_whose_container_cannot_be_dialled_is_left_out_not_loaded_every_time() {
    let d = desired("test/app:1");
    // apps/app runs, but not on the network Caddy dials it on (no address there).
    let mut o = converged(&d);
    o.proxy = Some(ObservedProxy::Config(serde_json::Value::Null));
    let p = plan(&d, &o, &PlanOptions::default());
    let down: Vec<String> = p
        .warnings
        .iter()
        .filter(|w| matches!(w, PlanWarning::RouteDown { .. }))
        .map(ToString::to_string)
        .collect();
    assert_eq!(down.len(), 2, "{down:?}");
    assert!(
        down[0].ends_with("is left out of Caddy's config: its container is not running and this plan does not start it"),
        "{down:?}"
    );
    let Payload::Proxy(pp) = &p.change(&crate::kinds::route::addr()).unwrap().payload else {
        unreachable!()
    };
    assert!(pp.sites.is_empty());
    // What the executor loads for it is what the next plan wants: nothing to do.
    o.proxy = Some(ObservedProxy::Config(render::render(&pp.settings, &[])));
    assert!(!plan(&d, &o, &PlanOptions::default()).has_changes());
}

#[test]
fn a_route_to_loopback_is_refused_when_caddy_runs_in_a_container() {
    let mut d = desired("test/app:1");
    let mut caddy = svc("caddy:2.6");
    caddy.networks.insert("edge".into(), Default::default());
    d.stacks
        .insert("proxy".into(), stack("proxy", &[("caddy", caddy.clone())]));
    let p = d.edge.proxy.as_mut().unwrap();
    p.admin = ProxyAdmin::Service {
        stack: "proxy".into(),
        service: "caddy".into(),
    };
    d.edge.routes.push(RouteSpec {
        host: "coolify.example.org".into(),
        path: None,
        to: Upstream::Address("127.0.0.1:8000".into()),
        access: Source::Anywhere,
        origin: origin("berth.yaml", 3),
        keys: Default::default(),
    });
    let errors = |d: &Desired| -> Vec<String> {
        let o = observed(d, serde_json::Value::Null);
        plan(d, &o, &PlanOptions::default())
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let e = errors(&d);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("berth.yaml:3:9: route coolify.example.org: to: 127.0.0.1:8000 is the Caddy container itself"),
        "{e:?}"
    );
    // On the host's network, loopback is the host's.
    caddy.network_mode = Some("host".into());
    caddy.networks.clear();
    d.stacks
        .insert("proxy".into(), stack("proxy", &[("caddy", caddy)]));
    assert!(
        errors(&d).iter().all(|e| !e.contains("coolify")),
        "{:?}",
        errors(&d)
    );
}

#[test]
fn a_newcomer_cannot_take_a_live_site_over() {
    let before = desired("test/app:1");
    let live = loaded(&before);
    // A new stack `aaa` (sorted first) claims the host apps/app is served on.
    let mut d = before.clone();
    let mut aaa = stack("aaa", &[("x", app("test/app:1"))]);
    aaa.routes = vec![RouteSpec {
        host: "app1.example.org".into(),
        path: None,
        to: Upstream::Service {
            stack: "aaa".into(),
            service: "x".into(),
            port: 3000,
        },
        access: Source::Anywhere,
        origin: origin("aaa/compose.yaml", 7),
        keys: Default::default(),
    }];
    d.stacks.insert("aaa".into(), aaa);
    let mut o = observed(&d, live);
    for c in &mut o.containers {
        if c.name.starts_with("aaa-") {
            c.addresses.insert("edge".into(), "172.18.0.6".into());
        }
    }
    let p = plan(&d, &o, &PlanOptions::default());
    let routes: Vec<&PlanError> = p
        .errors
        .iter()
        .filter(|e| matches!(e, PlanError::Route { .. }))
        .collect();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert!(
        matches!(routes[0], PlanError::Route { group, .. } if *group == crate::plan::Group::stack("aaa")),
        "the newcomer is refused: {routes:?}"
    );
    assert!(
        routes[0].to_string().contains(
            "app1.example.org is already routed by apps/compose.yaml:7:9 (to apps/app:3000)"
        ),
        "{routes:?}"
    );
    // The live site is untouched: nothing to load.
    assert!(
        p.change(&crate::kinds::route::addr()).is_none(),
        "{:?}",
        p.changes
    );
}
