//! The complete Caddy JSON config berth loads (`POST /load`), from the resolved routes. Pure.
//!
//! - `srv443` listens on `:443` with one route per host (host matcher, `terminal`), holding a
//!   subroute: the security headers, then the host's paths longest first (a route without a
//!   path last). Each path is two routes: a `remote_ip` deny (403) for everyone outside the
//!   route's access set (none for `public`), then the `reverse_proxy` to the upstream. Every
//!   berth route has an `@id` (`berth:<host><path>`, the deny `…#deny`), so observation can
//!   attribute what Caddy runs.
//! - `srv80` listens on `:80` and redirects everything to HTTPS (308). Caddy answers ACME
//!   HTTP-01 challenges on it before any route.
//! - TLS: one automation policy for every host, with the ACME issuer (email, another CA such as
//!   a local pebble, and roots to trust for it).
//! - `admin.listen` is the address berth talks to, so a load never moves the admin API away.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::model::edge::Headers;

/// One route, ready to render.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Site {
    pub host: String,
    pub path: Option<String>,
    /// `ip:port` Caddy dials.
    pub dial: String,
    /// `None`: public; else the only client addresses let through.
    pub allow: Option<Vec<IpNet>>,
}

impl Site {
    /// The `@id` of its proxy route.
    pub fn id(&self) -> String {
        route_id(&self.host, self.path.as_deref())
    }
}

/// `berth:app.example.org` or `berth:app.example.org/admin/*`.
pub fn route_id(host: &str, path: Option<&str>) -> String {
    format!("berth:{host}{}", path.unwrap_or(""))
}

/// Everything but the routes: from `kind: Proxy`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Settings {
    /// `host:port` of the admin API (what berth dials).
    pub admin_listen: String,
    pub email: Option<String>,
    pub acme_ca: Option<String>,
    pub acme_ca_root: Option<String>,
    pub headers: Headers,
}

/// The security headers `headers: default` sets on every response.
pub fn default_headers() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "Strict-Transport-Security".to_string(),
            "max-age=31536000; includeSubDomains".to_string(),
        ),
        ("X-Content-Type-Options".to_string(), "nosniff".to_string()),
        (
            "Referrer-Policy".to_string(),
            "strict-origin-when-cross-origin".to_string(),
        ),
        ("X-Frame-Options".to_string(), "SAMEORIGIN".to_string()),
    ])
}

/// The whole config.
pub fn render(settings: &Settings, sites: &[Site]) -> Value {
    let headers = match &settings.headers {
        Headers::Default => default_headers(),
        Headers::None => BTreeMap::new(),
        Headers::Map(m) => m.clone(),
    };
    let mut by_host: BTreeMap<&str, Vec<&Site>> = BTreeMap::new();
    for s in sites {
        by_host.entry(&s.host).or_default().push(s);
    }
    // Exact hosts before wildcards, and a narrower wildcard before a wider one: the host routes
    // are terminal, so `*.example.org` first would take every site under it.
    let mut by_host: Vec<(&str, Vec<&Site>)> = by_host.into_iter().collect();
    by_host.sort_by_key(|(h, _)| {
        let wild = h.contains('*');
        (
            wild,
            std::cmp::Reverse(h.matches('.').count()),
            h.to_string(),
        )
    });
    let mut routes = Vec::new();
    for (host, mut paths) in by_host {
        // Longest path first; the whole host (no path) last.
        paths.sort_by(|a, b| {
            let len = |s: &Site| s.path.as_ref().map_or(0, |p| p.len() + 1);
            len(b).cmp(&len(a)).then(a.path.cmp(&b.path))
        });
        let mut inner = Vec::new();
        if !headers.is_empty() {
            let set: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.clone(), json!([v])))
                .collect();
            inner.push(json!({"handle": [{"handler": "headers", "response": {"set": set}}]}));
        }
        for s in paths {
            let mut m = serde_json::Map::new();
            if let Some(p) = &s.path {
                // `/admin/*` does not match `/admin` itself in Caddy: the route (and its access
                // rule) covers both, so the bare path is not left to the host's other routes.
                match p.strip_suffix("/*") {
                    Some(base) if !base.is_empty() => m.insert("path".into(), json!([p, base])),
                    _ => m.insert("path".into(), json!([p])),
                };
            }
            if let Some(allow) = &s.allow {
                let ranges: Vec<String> = allow.iter().map(ToString::to_string).collect();
                let mut deny = m.clone();
                deny.insert("not".into(), json!([{"remote_ip": {"ranges": ranges}}]));
                inner.push(json!({
                    "@id": format!("{}#deny", s.id()),
                    "match": [deny],
                    "handle": [{"handler": "static_response", "status_code": 403, "body": "Forbidden\n"}],
                    "terminal": true,
                }));
            }
            let mut r = json!({
                "@id": s.id(),
                "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": s.dial}]}],
                "terminal": true,
            });
            if !m.is_empty() {
                r["match"] = json!([m]);
            }
            inner.push(r);
        }
        routes.push(json!({
            "match": [{"host": [host]}],
            "handle": [{"handler": "subroute", "routes": inner}],
            "terminal": true,
        }));
    }
    let hosts: Vec<&str> = {
        let mut h: Vec<&str> = sites.iter().map(|s| s.host.as_str()).collect();
        h.sort();
        h.dedup();
        h
    };
    let mut issuer = json!({"module": "acme"});
    if let Some(e) = &settings.email {
        issuer["email"] = json!(e);
    }
    if let Some(ca) = &settings.acme_ca {
        issuer["ca"] = json!(ca);
    }
    if let Some(root) = &settings.acme_ca_root {
        issuer["trusted_roots_pem_files"] = json!([root]);
    }
    let mut cfg = json!({
        "admin": {"listen": settings.admin_listen},
        "apps": {
            "http": {
                "servers": {
                    "srv443": {
                        "listen": [":443"],
                        "routes": routes,
                        "automatic_https": {"disable_redirects": true},
                    },
                    "srv80": {
                        "listen": [":80"],
                        "routes": [{
                            "@id": "berth:redirect",
                            "handle": [{
                                "handler": "static_response",
                                "status_code": 308,
                                "headers": {"Location": ["https://{http.request.host}{http.request.uri}"]},
                            }],
                        }],
                    },
                },
            },
        },
    });
    if !hosts.is_empty() {
        cfg["apps"]["tls"] = json!({
            "automation": {"policies": [{"subjects": hosts, "issuers": [issuer]}]},
        });
    }
    cfg
}

/// What Caddy runs of berth's routes, by `@id`: the dial of each proxy route and the ranges of
/// its deny (none: public). Routes without a berth `@id` are not listed.
pub fn live_sites(cfg: &Value) -> BTreeMap<String, (String, Option<Vec<String>>)> {
    let mut out = BTreeMap::new();
    let mut denies: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut visit = |r: &Value, out: &mut BTreeMap<String, (String, Option<Vec<String>>)>| {
        let Some(id) = r.get("@id").and_then(Value::as_str) else {
            return;
        };
        if let Some(base) = id.strip_suffix("#deny") {
            let ranges = r
                .pointer("/match/0/not/0/remote_ip/ranges")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            denies.insert(base.to_string(), ranges);
        } else if id.starts_with("berth:") && id != "berth:redirect" {
            let dial = r
                .pointer("/handle/0/upstreams/0/dial")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            out.insert(id.to_string(), (dial, None));
        }
    };
    for r in server_routes(cfg) {
        visit(r, &mut out);
        for h in items(r, "handle") {
            for sub in items(h, "routes") {
                visit(sub, &mut out);
            }
        }
    }
    for (id, ranges) in denies {
        if let Some(e) = out.get_mut(&id) {
            e.1 = Some(ranges);
        }
    }
    out
}

/// The hosts Caddy serves with routes berth did not load (no `berth:` `@id`: a hand edit, or
/// Caddy's own Caddyfile after a restart), each with what those routes do
/// (`static_response`, `reverse_proxy to 10.0.0.9:80`).
pub fn foreign_hosts(cfg: &Value) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for r in server_routes(cfg) {
        let berths = r
            .get("@id")
            .and_then(Value::as_str)
            .is_some_and(|id| id.starts_with("berth:"));
        if berths {
            continue;
        }
        let what: Vec<String> = items(r, "handle")
            .filter_map(|h| {
                let name = h.get("handler")?.as_str()?;
                Some(
                    match h.pointer("/upstreams/0/dial").and_then(Value::as_str) {
                        Some(dial) => format!("{name} to {dial}"),
                        None => name.to_string(),
                    },
                )
            })
            .collect();
        let what = if what.is_empty() {
            "no handler".to_string()
        } else {
            what.join(", ")
        };
        for m in items(r, "match") {
            for h in items(m, "host").filter_map(Value::as_str) {
                out.entry(h.to_string()).or_insert_with(|| what.clone());
            }
        }
    }
    out
}

/// Every top-level route of every HTTP server of a Caddy config.
fn server_routes(cfg: &Value) -> impl Iterator<Item = &Value> {
    cfg.pointer("/apps/http/servers")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|servers| servers.values())
        .flat_map(|srv| items(srv, "routes"))
}

/// The items of the array at `key` (none when it is missing or not an array).
fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            admin_listen: "127.0.0.1:2019".into(),
            email: Some("admin@example.org".into()),
            acme_ca: Some("https://127.0.0.1:14000/dir".into()),
            acme_ca_root: Some("/etc/pebble/root.pem".into()),
            headers: Headers::Default,
        }
    }

    fn sites() -> Vec<Site> {
        vec![
            Site {
                host: "app1.example.org".into(),
                path: None,
                dial: "172.18.0.5:3000".into(),
                allow: None,
            },
            Site {
                host: "app1.example.org".into(),
                path: Some("/admin/*".into()),
                dial: "172.18.0.5:3000".into(),
                allow: Some(vec!["100.64.0.0/10".parse().unwrap()]),
            },
            Site {
                host: "coolify.example.org".into(),
                path: None,
                dial: "127.0.0.1:8000".into(),
                allow: Some(vec!["100.64.0.0/10".parse().unwrap()]),
            },
        ]
    }

    #[test]
    fn the_whole_config() {
        let cfg = render(&settings(), &sites());
        insta::assert_snapshot!(serde_json::to_string_pretty(&cfg).unwrap());
    }

    #[test]
    fn exact_hosts_before_wildcards_narrow_before_wide() {
        let site = |host: &str| Site {
            host: host.into(),
            path: None,
            dial: "127.0.0.1:1".into(),
            allow: None,
        };
        let sites = [
            site("*.example.org"),
            site("*.a.example.org"),
            site("b.example.org"),
            site("0.example.org"),
        ];
        let cfg = render(&settings(), &sites);
        let hosts: Vec<&str> = cfg
            .pointer("/apps/http/servers/srv443/routes")
            .and_then(Value::as_array)
            .unwrap()
            .iter()
            .filter_map(|r| r.pointer("/match/0/host/0").and_then(Value::as_str))
            .collect();
        assert_eq!(
            hosts,
            [
                "0.example.org",
                "b.example.org",
                "*.a.example.org",
                "*.example.org"
            ]
        );
    }

    #[test]
    fn longest_path_first_and_live_sites_read_back() {
        let cfg = render(&settings(), &sites());
        let inner = cfg
            .pointer("/apps/http/servers/srv443/routes/0/handle/0/routes")
            .unwrap()
            .as_array()
            .unwrap();
        let ids: Vec<&str> = inner
            .iter()
            .filter_map(|r| r.get("@id").and_then(Value::as_str))
            .collect();
        assert_eq!(
            ids,
            [
                "berth:app1.example.org/admin/*#deny",
                "berth:app1.example.org/admin/*",
                "berth:app1.example.org"
            ]
        );
        let live = live_sites(&cfg);
        assert_eq!(live.len(), 3);
        assert_eq!(
            live["berth:app1.example.org/admin/*"],
            (
                "172.18.0.5:3000".to_string(),
                Some(vec!["100.64.0.0/10".to_string()])
            )
        );
        assert_eq!(
            live["berth:app1.example.org"],
            ("172.18.0.5:3000".to_string(), None)
        );
    }

    #[test]
    fn headers_none_and_no_routes() {
        let mut s = settings();
        s.headers = Headers::None;
        let cfg = render(&s, &sites()[..1]);
        assert!(!cfg.to_string().contains("nosniff"));
        let empty = render(&s, &[]);
        assert!(empty.pointer("/apps/tls").is_none());
        assert!(live_sites(&empty).is_empty());
    }
}
