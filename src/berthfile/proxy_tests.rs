//! Loader tests of the edge's route side: `x-berth.routes` / `expose_publicly` on services,
//! `kind: Route` and `kind: Proxy`, through `compose::load_dir` on temporary trees.

use std::collections::BTreeMap;
use std::fs;

use crate::compose::load_dir;
use crate::model::Desired;
use crate::model::edge::*;

fn load(files: &[(&str, &str)]) -> Result<Desired, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    load_dir(dir.path(), &BTreeMap::new())
        .map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

const APP: &str = "services:
  app:
    image: test/app:1
    expose: [3000]
    x-berth:
      expose_publicly: true
      routes:
        - host: App1.example.org
          port: 3000
        - host: app1.example.org
          path: /admin/*
          port: 3000
          access: tailnet
        - host: app2.example.org
          port: 3000
          access: [100.64.0.0/10, 10.1.2.3]
";

const PROXY: &str = "kind: Proxy
admin: http://127.0.0.1:2019
network: apps_default
email: admin@example.org
acme_ca: https://127.0.0.1:14000/dir
acme_ca_root: /etc/pebble/root.pem
headers:
  X-Test: yes
---
kind: Route
host: coolify.example.org
to: 127.0.0.1:8000
access: tailnet
";

#[test]
fn service_routes_route_and_proxy_load() {
    let d = load(&[("apps/compose.yaml", APP), ("proxy/berth.yaml", PROXY)]).unwrap();
    let st = &d.stacks["apps"];
    assert!(st.services["app"].expose_publicly);
    let r: Vec<String> = d
        .routes()
        .map(|r| format!("{} → {} ({}) @{}", r.name(), r.to, r.access, r.origin))
        .collect();
    assert_eq!(
        r,
        [
            "app1.example.org → apps/app:3000 (public) @apps/compose.yaml:8:11",
            "app1.example.org/admin/* → apps/app:3000 (tailnet) @apps/compose.yaml:10:11",
            "app2.example.org → apps/app:3000 (100.64.0.0/10, 10.1.2.3/32) @apps/compose.yaml:14:11",
            "coolify.example.org → 127.0.0.1:8000 (tailnet) @proxy/berth.yaml:10:1",
        ]
    );
    let p = d.edge.proxy.as_ref().unwrap();
    assert_eq!(p.admin, ProxyAdmin::Url("http://127.0.0.1:2019".into()));
    assert_eq!(p.network.as_deref(), Some("apps_default"));
    assert_eq!(p.acme_ca_root.as_deref(), Some("/etc/pebble/root.pem"));
    assert_eq!(
        p.headers,
        Headers::Map([("X-Test".to_string(), "yes".to_string())].into())
    );
}

#[test]
fn route_and_proxy_errors_are_located() {
    let errs = load(&[(
        "apps/compose.yaml",
        "services:
  app:
    image: x
    x-berth:
      routes:
        - host: bad_host!
          port: 70000
          paht: /x
        - port: 3000
          path: admin
          access: 100.64.0.0/33
      expose_publically: true
",
    )])
    .unwrap_err();
    assert_eq!(
        errs,
        [
            "apps/compose.yaml:6:17: services.app.x-berth.routes[0].host: invalid host name \"bad_host!\" (a DNS name such as app.example.org)",
            "apps/compose.yaml:7:17: services.app.x-berth.routes[0].port: invalid port 70000 (1 to 65535)",
            "apps/compose.yaml:8:11: services.app.x-berth.routes[0]: unknown key `paht` (a route takes `host`, `path`, `port`, `access`); did you mean `path`?",
            "apps/compose.yaml:9:11: services.app.x-berth.routes[1]: a route needs `host`",
            "apps/compose.yaml:10:17: services.app.x-berth.routes[1].path: invalid path \"admin\" (a path such as /admin or /admin/*: starts with `/`, `*` only at the end)",
            "apps/compose.yaml:11:19: services.app.x-berth.routes[1].access: invalid access \"100.64.0.0/33\" (use public, an address set's name such as tailnet, or CIDRs)",
            "apps/compose.yaml:12:7: services.app.x-berth: unknown key `expose_publically` (x-berth takes `on_config_change`, `routes`, `expose_publicly`); did you mean `expose_publicly`?",
        ]
    );
    let errs = load(&[(
        "berth.yaml",
        "kind: Proxy
admin: https://0.0.0.0:2019
emial: x
---
kind: Proxy
service: caddy
headers: strict
---
kind: Route
host: a.example.org
to: localhost
",
    )])
    .unwrap_err();
    assert_eq!(
        errs,
        [
            "berth.yaml:2:8: admin: invalid admin URL \"https://0.0.0.0:2019\" (http://HOST:PORT, e.g. http://127.0.0.1:2019; keep Caddy's admin API off public addresses)",
            "berth.yaml:3:1: unknown key `emial` in Proxy; did you mean `email`?",
            "berth.yaml:6:10: service: invalid service \"caddy\" (STACK/SERVICE, e.g. proxy/caddy)",
            "berth.yaml:7:10: headers: must be `default`, `none` or a map of header: value, found a string",
            "berth.yaml:11:5: to: invalid upstream \"localhost\" (an address and port such as 127.0.0.1:8000 or [::1]:8000)",
        ]
    );
    let errs = load(&[(
        "berth.yaml",
        "kind: Proxy\nadmin: http://127.0.0.1:2019\n---\nkind: Proxy\nadmin: http://127.0.0.1:2020\n",
    )])
    .unwrap_err();
    assert_eq!(
        errs,
        ["berth.yaml:4:1: `kind: Proxy` is already declared at berth.yaml:1:1"]
    );
}

#[test]
fn access_with_host_bits_and_an_admin_url_with_a_password_are_refused() {
    let errs = load(&[(
        "apps/compose.yaml",
        "services:
  app:
    image: x
    expose: [3000]
    x-berth:
      routes:
        - host: a.example.org
          port: 3000
          access: 100.64.1.2/10
        - host: b.example.org
          port: 3000
          access: [10.0.0.0/8, 192.168.1.1/16]
",
    )])
    .unwrap_err();
    assert_eq!(
        errs,
        [
            "apps/compose.yaml:9:19: services.app.x-berth.routes[0].access: \"100.64.1.2/10\" has host bits set; did you mean `100.64.0.0/10`?",
            "apps/compose.yaml:12:32: services.app.x-berth.routes[1].access[1]: \"192.168.1.1/16\" has host bits set; did you mean `192.168.0.0/16`?",
        ]
    );
    let errs = load(&[(
        "berth.yaml",
        "kind: Proxy\nadmin: http://admin:secret@127.0.0.1:2019\n",
    )])
    .unwrap_err();
    assert_eq!(
        errs,
        [
            "berth.yaml:2:8: admin: the admin URL must not carry a user or password (it would be printed in every plan; Caddy's admin API belongs on loopback)"
        ]
    );
}

/// A route's plan error points at the key it is about, not at the route's document.
#[test]
fn route_errors_point_at_the_offending_key() {
    let d = load(&[
        ("apps/compose.yaml", APP),
        (
            "proxy/berth.yaml",
            "kind: Proxy\nadmin: http://127.0.0.1:2019\n---\nkind: Route\nhost: old.example.org\nto: 127.0.0.1:8001\naccess: office\n",
        ),
        (
            "other/compose.yaml",
            "services:\n  web:\n    image: test/app:1\n    x-berth:\n      routes:\n        - host: app2.example.org\n          port: 3000\n",
        ),
    ])
    .unwrap();
    let errors: Vec<String> = crate::plan::config_errors(&d)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        errors.iter().any(|e| e.starts_with(
            "proxy/berth.yaml:7:9: route old.example.org: access: unknown address set `office`"
        )),
        "{errors:?}"
    );
    // other/web exposes no 3000 (its image is unknown here, so only the taken host counts).
    assert!(
        errors.iter().any(|e| e.starts_with(
            "other/compose.yaml:6:17: route app2.example.org: app2.example.org is already routed"
        )),
        "{errors:?}"
    );
}
