//! The routes and the Caddy that serves them: one change, `proxy:caddy`, that loads the whole
//! rendered config ([`crate::caddy::render`]) when it differs from what Caddy runs, or when a
//! routed container is created, replaced or started by this plan (its address may change).
//!
//! - Every route is checked on its own: unknown address set, unknown stack or service, a port
//!   the service neither publishes nor exposes, a host+path an earlier route claims, a
//!   restricted route Caddy cannot enforce (client addresses not real). A bad route is a
//!   [`PlanError::Route`] on its stack and is left out of the config; the others are rendered.
//! - Upstreams of stack services are container addresses: with `service:` the address on a
//!   network Caddy's container shares with the upstream, with `admin:` (Caddy on the host) the
//!   address on `network:` of the Proxy, else the upstream's first network. They are resolved
//!   from the observation here (to compare with what Caddy runs) and again by the executor.
//! - Edges: the load needs the routed containers' changes (healthy when they have a health
//!   check, else running); the delete of a container that loses its route needs the load.
//! - A replace of a service reached only through routes (no published port, one replica) gets a
//!   handover: the executor starts the new container beside the old one and switches the proxy
//!   before the old one goes.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::{Context, Planned};
use crate::caddy::render::{self, Settings, Site};
use crate::model::edge::{
    ObservedProxy, ProxyAdmin, ProxySpec, RouteKey, RouteSpec, Source, TAILNET, Upstream,
    tailnet_default,
};
use crate::model::{ServiceSpec, StackSpec, container_name};
use crate::plan::{
    Addr, AdminTarget, Change, Dial, Group, Kind, Need, Op, Payload, PlanError, PlanWarning,
    PlannedSite, ProxyPayload, Reason, Wait,
};

/// The proxy's address: `proxy:caddy`.
pub fn addr() -> Addr {
    Addr::host(Kind::Proxy, "caddy")
}

/// Caddy's admin port inside its container (`service:`).
pub const CONTAINER_ADMIN_PORT: u16 = 2019;

pub fn plan(ctx: &Context, out: &mut Planned) {
    let d = ctx.desired;
    let routes: Vec<&RouteSpec> = d.routes().collect();
    let Some(proxy) = &d.edge.proxy else {
        for r in routes {
            out.plan.errors.push(route_error(
                r,
                None,
                "no `kind: Proxy` in the config declares the Caddy that would serve it".into(),
            ));
        }
        return;
    };
    let Some(caddy) = locate_caddy(ctx, proxy, out) else {
        return;
    };

    // What Caddy serves now, by route id → upstream address: of two routes claiming one
    // host+path, the one Caddy serves keeps it, so a newcomer cannot take a live site over.
    let live_dials: BTreeMap<String, String> = match &ctx.observed.proxy {
        Some(ObservedProxy::Config(v)) => render::live_sites(v)
            .into_iter()
            .map(|(id, (dial, _))| (id, dial))
            .collect(),
        _ => BTreeMap::new(),
    };
    let serves_now = |s: &PlannedSite| {
        let id = render::route_id(&s.host, s.path.as_deref());
        matches!((live_dials.get(&id), observed_dial(ctx, &s.dial)), (Some(l), Some(d)) if *l == d)
    };
    let mut seen: BTreeMap<(String, Option<String>), (&RouteSpec, usize)> = BTreeMap::new();
    let mut sites: Vec<PlannedSite> = Vec::new();
    for r in &routes {
        match check(ctx, &caddy, r) {
            Err((key, reason)) => out.plan.errors.push(route_error(r, Some(key), reason)),
            Ok(site) => {
                let key = (r.host.clone(), r.path.clone());
                if let Some(&(first, at)) = seen.get(&key) {
                    let (keeper, loser) = if serves_now(&site) && !serves_now(&sites[at]) {
                        sites[at] = site;
                        seen.insert(key, (r, at));
                        (*r, first)
                    } else {
                        (first, *r)
                    };
                    out.plan.errors.push(route_error(
                        loser,
                        Some(RouteKey::Host),
                        format!(
                            "{} is already routed by {} (to {})",
                            loser.name(),
                            keeper.origin,
                            keeper.to
                        ),
                    ));
                    continue;
                }
                seen.insert(key, (r, sites.len()));
                sites.push(site);
            }
        }
    }

    // The containers this plan creates, replaces or starts (their address may change), and
    // the ones it deletes.
    let mut changing: BTreeMap<String, (Addr, Wait)> = BTreeMap::new();
    let mut deleting: Vec<(usize, String, String)> = Vec::new();
    for (i, c) in out.changes.iter().enumerate() {
        if let Payload::Container(p) = &c.payload {
            match c.op {
                Op::Create | Op::Replace | Op::Start => {
                    // Healthy when it has a health check, the Compose file's or the image's:
                    // the image's is known only once the container runs.
                    changing.insert(p.name.clone(), (c.addr.clone(), Wait::Ready));
                }
                Op::Delete => {
                    let name = p.current.as_ref().map_or(&p.name, |c| &c.name);
                    deleting.push((i, p.stack.clone(), name.clone()));
                }
                _ => {}
            }
        }
    }

    // A route whose container neither runs (no address) nor is (re)started by this plan cannot
    // be dialled: the executor leaves it out, so the wanted config does too — else every plan
    // would load Caddy again.
    sites.retain(|s| match &s.dial {
        Dial::Container { name, .. }
            if !changing.contains_key(name) && observed_dial(ctx, &s.dial).is_none() =>
        {
            out.plan.warnings.push(PlanWarning::RouteDown {
                route: format!("{}{}", s.host, s.path.as_deref().unwrap_or("")),
                upstream: s.upstream.clone(),
            });
            false
        }
        _ => true,
    });

    let settings = Settings {
        admin_listen: caddy.listen.clone(),
        email: proxy.email.clone(),
        acme_ca: proxy.acme_ca.clone(),
        acme_ca_root: proxy.acme_ca_root.clone(),
        headers: proxy.headers.clone(),
    };
    // The config as it would be rendered now, upstreams from the observation.
    let resolved: Vec<Site> = sites
        .iter()
        .map(|s| s.site(observed_dial(ctx, &s.dial).unwrap_or_else(|| "(new)".into())))
        .collect();
    let wanted = render::render(&settings, &resolved);

    let mut reasons = Vec::new();
    let live = match &ctx.observed.proxy {
        Some(ObservedProxy::Config(v)) => Some(v),
        Some(ObservedProxy::Unreachable(m)) => {
            reasons.push(Reason::ProxyUnreachable { message: m.clone() });
            None
        }
        None => None,
    };
    let live_sites = live.map(render::live_sites).unwrap_or_default();
    let foreign_hosts = live.map(render::foreign_hosts).unwrap_or_default();
    let mut moved = false;
    for (s, r) in sites.iter().zip(&resolved) {
        let access = access_text(s);
        let id = r.id();
        let renewed = match &s.dial {
            Dial::Container { name, .. } => changing.contains_key(name),
            Dial::Fixed(_) => false,
        };
        match live_sites.get(&id) {
            // Loaded before and gone from Caddy: drift, with what Caddy has instead.
            None if live.is_some() && ctx.observed.proxy_loaded.contains_key(&id) => {
                let found = match foreign_hosts.get(&s.host) {
                    Some(what) => format!("a route berth did not load for this host ({what})"),
                    None => "nothing for it".to_string(),
                };
                reasons.push(Reason::Route {
                    line: format!(
                        "+ route {} → {} ({access}): berth loaded it, Caddy no longer serves it (changed by hand or by a restart: drift); found {found}",
                        r_name(s),
                        s.upstream
                    ),
                })
            }
            None => reasons.push(Reason::Route {
                line: format!("+ route {} → {} ({access})", r_name(s), s.upstream),
            }),
            Some((dial, ranges)) => {
                let want_ranges = s
                    .allow
                    .as_ref()
                    .map(|a| a.iter().map(ToString::to_string).collect::<Vec<_>>());
                if *ranges != want_ranges {
                    reasons.push(Reason::Route {
                        line: format!("~ route {} → {} ({access})", r_name(s), s.upstream),
                    });
                } else if renewed || *dial != r.dial {
                    moved = true;
                    reasons.push(Reason::Route {
                        line: format!(
                            "~ route {} → {} ({access}): {}",
                            r_name(s),
                            s.upstream,
                            if renewed {
                                "its container changes".to_string()
                            } else if ctx.observed.proxy_loaded.get(&id) == Some(&r.dial) {
                                // berth loaded the address it wants now: someone changed it.
                                format!(
                                    "Caddy sends it to {dial}, not to {} as berth loaded it (changed by hand: drift)",
                                    r.dial
                                )
                            } else {
                                format!("its upstream moved: Caddy sends it to {dial}, now {}", r.dial)
                            }
                        ),
                    });
                }
            }
        }
    }
    let wanted_ids: BTreeSet<String> = resolved.iter().map(Site::id).collect();
    let mut gone_dials = BTreeSet::new();
    for (id, (dial, _)) in &live_sites {
        if !wanted_ids.contains(id) {
            gone_dials.insert(dial.clone());
            reasons.push(Reason::Route {
                line: format!(
                    "- route {} (was → {dial})",
                    id.strip_prefix("berth:").unwrap_or(id)
                ),
            });
        }
    }
    let route_lines = reasons
        .iter()
        .filter(|r| matches!(r, Reason::Route { .. }))
        .count();
    let differs = live != Some(&wanted);
    let caddy_changes = caddy
        .container
        .as_ref()
        .and_then(|n| changing.get(n))
        .cloned();
    if !differs && !moved && caddy_changes.is_none() {
        return;
    }
    if differs && route_lines == 0 && live.is_some() {
        reasons.push(Reason::ProxyDrift);
    }
    let mut needs: Vec<Need> = Vec::new();
    for s in &sites {
        if let Dial::Container { name, .. } = &s.dial
            && let Some((a, w)) = changing.get(name)
            && !needs.iter().any(|n| &n.addr == a)
        {
            needs.push(Need::on(a.clone(), *w));
        }
    }
    if let Some((a, _)) = caddy_changes {
        needs.push(Need::on(a, Wait::Running));
    }
    needs.sort();
    let payload = ProxyPayload {
        admin: caddy.admin.clone(),
        settings,
        sites: sites.clone(),
    };

    // A container that loses its route goes after the config without it is loaded — unless
    // the load waits for a container of the same stack (whose create waits for the delete).
    let proxy_addr = addr();
    let routed: BTreeSet<&str> = sites
        .iter()
        .filter_map(|s| match &s.dial {
            Dial::Container { name, .. } => Some(name.as_str()),
            Dial::Fixed(_) => None,
        })
        .collect();
    for (i, stack, name) in &deleting {
        let ip_routed = ctx
            .observed
            .containers
            .iter()
            .find(|c| &c.name == name)
            .is_some_and(|c| {
                c.addresses
                    .values()
                    .any(|ip| gone_dials.iter().any(|d| d.starts_with(&format!("{ip}:"))))
            });
        let cycle = needs.iter().any(|n| n.addr.stack() == Some(stack.as_str()));
        if ip_routed && !routed.contains(name.as_str()) && !cycle {
            out.changes[*i]
                .needs
                .push(Need::on(proxy_addr.clone(), Wait::Applied));
        }
    }

    // Handover: a replaced route-only service switches the proxy before the old one goes.
    for c in out.changes.iter_mut() {
        if c.op != Op::Replace {
            continue;
        }
        let Payload::Container(p) = &mut c.payload else {
            continue;
        };
        let route_only = p
            .service_spec()
            .is_some_and(|(_, s)| s.ports.is_empty() && s.replicas <= 1);
        if route_only && routed.contains(p.name.as_str()) {
            p.handover = Some(Box::new(payload.clone()));
            c.reasons.push(Reason::Route {
                line: "zero-downtime: the new container starts beside the old one; the route switches to it once it is up, then the old one is removed".into(),
            });
        }
    }

    out.changes.push(Change {
        addr: proxy_addr,
        op: Op::Update,
        reasons,
        needs,
        payload: Payload::Proxy(Box::new(payload)),
    });
}

fn r_name(s: &PlannedSite) -> String {
    match &s.path {
        Some(p) => format!("{}{p}", s.host),
        None => s.host.clone(),
    }
}

fn access_text(s: &PlannedSite) -> String {
    match &s.allow {
        None => "public".into(),
        Some(_) => s.upstream_access.clone(),
    }
}

/// A route's error, located at the key it is about (else at the route).
fn route_error(r: &RouteSpec, key: Option<RouteKey>, reason: String) -> PlanError {
    let group = match &r.to {
        Upstream::Service { stack, .. } => Group::stack(stack),
        Upstream::Address(_) => Group::Proxy,
    };
    PlanError::Route {
        group,
        origin: key.map_or(&r.origin, |k| r.origin_of(k)).to_string(),
        route: r.name(),
        reason,
    }
}

/// Where Caddy is and how berth reaches it.
struct Caddy<'a> {
    admin: AdminTarget,
    /// `admin.listen` of the rendered config.
    listen: String,
    /// The Caddy container (`service:`), with its stack and spec.
    container: Option<String>,
    service: Option<(&'a StackSpec, &'a ServiceSpec)>,
    network: Option<&'a str>,
}

fn locate_caddy<'a>(
    ctx: &'a Context,
    proxy: &'a ProxySpec,
    out: &mut Planned,
) -> Option<Caddy<'a>> {
    match &proxy.admin {
        ProxyAdmin::Url(u) => {
            let listen = u
                .strip_prefix("http://")
                .unwrap_or(u)
                .trim_end_matches('/')
                .to_string();
            Some(Caddy {
                admin: AdminTarget::Url(u.clone()),
                listen,
                container: None,
                service: None,
                network: proxy.network.as_deref(),
            })
        }
        ProxyAdmin::Service { stack, service } => {
            let found = ctx
                .desired
                .stacks
                .get(stack)
                .and_then(|st| st.services.get(service).map(|sv| (st, sv)));
            let Some((st, sv)) = found else {
                out.plan.errors.push(PlanError::Proxy {
                    origin: proxy.origin.to_string(),
                    reason: format!(
                        "service: {stack}/{service} is not a deployed service of the config"
                    ),
                });
                return None;
            };
            let name = container_name(stack, service, sv, 1);
            Some(Caddy {
                admin: AdminTarget::Container {
                    name: name.clone(),
                    network: proxy.network.clone(),
                },
                listen: format!(":{CONTAINER_ADMIN_PORT}"),
                container: Some(name),
                service: Some((st, sv)),
                network: proxy.network.as_deref(),
            })
        }
    }
}

/// One route, checked: the site to render, or why it cannot be served.
fn check(ctx: &Context, caddy: &Caddy, r: &RouteSpec) -> Result<PlannedSite, (RouteKey, String)> {
    let edge = &ctx.desired.edge;
    let allow: Option<Vec<IpNet>> = match &r.access {
        Source::Anywhere => None,
        Source::Cidrs(c) => Some(c.clone()),
        Source::Set(name) => match edge.address_sets.get(name) {
            Some(s) => Some(s.addresses.clone()),
            None if name == TAILNET => Some(tailnet_default()),
            None => {
                let mut known: Vec<&str> = edge.address_sets.keys().map(String::as_str).collect();
                if !known.contains(&TAILNET) {
                    known.push(TAILNET);
                }
                known.sort();
                return Err((
                    RouteKey::Access,
                    format!(
                        "access: unknown address set `{name}` (known: {}; or write CIDRs)",
                        known.join(", ")
                    ),
                ));
            }
        },
    };
    if allow.is_some()
        && let Some(problem) = caddy
            .service
            .and_then(|(st, sv)| client_address_problem(st, sv))
    {
        return Err((
            RouteKey::Access,
            format!("access: {} cannot be enforced: {problem}", r.access),
        ));
    }
    let (dial, stack) = match &r.to {
        Upstream::Address(a) => {
            // Caddy in a container (not on the host's network) dials its own loopback.
            let in_container = caddy
                .service
                .is_some_and(|(_, sv)| sv.network_mode.as_deref() != Some("host"));
            if in_container && is_loopback(a) {
                return Err((
                    RouteKey::To,
                    format!(
                        "to: {a} is the Caddy container itself, not the host: Caddy runs in a container; use an address it can reach (the host's address on a Docker network, e.g. the bridge gateway), or run Caddy on the host (`admin:`) or with network_mode: host"
                    ),
                ));
            }
            (Dial::Fixed(a.clone()), None)
        }
        Upstream::Service {
            stack,
            service,
            port,
        } => {
            let st = ctx
                .desired
                .stacks
                .get(stack)
                .ok_or_else(|| (RouteKey::To, format!("no stack `{stack}` in the config")))?;
            let sv = st.services.get(service).ok_or_else(|| {
                (
                    RouteKey::To,
                    format!("stack `{stack}` has no deployed service `{service}`"),
                )
            })?;
            if !exposes(ctx, sv, *port) {
                return Err((
                    RouteKey::To,
                    format!(
                        "{stack}/{service} does not expose port {port} (neither its image nor its Compose file): add it to the service's `expose:` (or `ports:`)"
                    ),
                ));
            }
            if sv.network_mode.is_some() {
                return Err((
                    RouteKey::To,
                    format!(
                        "{stack}/{service} uses network_mode: Caddy can only reach it on a Docker network of its own"
                    ),
                ));
            }
            let nets: Vec<&str> = sv.networks.keys().map(String::as_str).collect();
            let network = match (caddy.service, caddy.network) {
                (_, Some(n)) if nets.contains(&n) => n.to_string(),
                (_, Some(n)) => {
                    return Err((RouteKey::To, format!(
                        "{stack}/{service} is not on network {n} (the Proxy's `network:`), so Caddy cannot reach it"
                    )));
                }
                (Some((_, caddy_sv)), None) => nets
                    .iter()
                    .find(|n| caddy_sv.networks.contains_key(**n))
                    .map(|n| n.to_string())
                    .ok_or_else(|| {
                        (RouteKey::To, format!(
                            "{stack}/{service} shares no network with the Caddy container: put both on one network"
                        ))
                    })?,
                (None, None) => nets
                    .first()
                    .map(|n| n.to_string())
                    .ok_or_else(|| (RouteKey::To, format!("{stack}/{service} is on no network")))?,
            };
            (
                Dial::Container {
                    name: container_name(stack, service, sv, 1),
                    network,
                    port: *port,
                },
                Some(stack.clone()),
            )
        }
    };
    Ok(PlannedSite {
        host: r.host.clone(),
        path: r.path.clone(),
        dial,
        allow,
        stack,
        upstream: r.to.to_string(),
        upstream_access: r.access.to_string(),
    })
}

/// Whether the container port is published or exposed: by the Compose file, or by the image
/// (`EXPOSE`). An image that is not on the Engine yet (pulled by this plan) cannot say: the
/// port is taken as written, and an upstream that does not answer fails the container's
/// health check or Caddy's dial, not the other sites.
fn exposes(ctx: &Context, sv: &ServiceSpec, port: u16) -> bool {
    if sv.exposes(port) {
        return true;
    }
    let Some(id) = ctx
        .observed
        .images
        .get(&crate::model::normalize_image_ref(&sv.image))
    else {
        return true;
    };
    match ctx.observed.image_ports.get(id) {
        Some(ports) => ports.contains(&port),
        None => true,
    }
}

/// Why Caddy in this container would not see clients' real addresses, if it would not.
/// Published ports reach a container with the client's address through iptables DNAT; but a
/// port published on every address also listens on IPv6, and without an IPv6 network those
/// clients come through `docker-proxy` (the userland proxy) and look like the gateway.
fn client_address_problem(st: &StackSpec, sv: &ServiceSpec) -> Option<String> {
    if sv.network_mode.as_deref() == Some("host") {
        return None;
    }
    let ipv6 = sv.networks.keys().any(|n| {
        st.networks
            .values()
            .any(|spec| &spec.name == n && spec.enable_ipv6)
    });
    let all_addresses: Vec<String> = sv
        .ports
        .iter()
        .filter(|p| matches!(p.target, 80 | 443))
        .filter(|p| {
            p.host_ip
                .as_deref()
                .is_none_or(|ip| ip.is_empty() || ip == "::")
        })
        .map(|p| p.to_string())
        .collect();
    if !all_addresses.is_empty() && !ipv6 {
        return Some(format!(
            "the Caddy container publishes {} on IPv6 too, and its network has no IPv6: IPv6 clients reach it through docker-proxy and appear as the network's gateway, so Caddy cannot tell them apart. Publish on IPv4 only (0.0.0.0:443:443), give the network `enable_ipv6: true`, or use network_mode: host",
            all_addresses.join(", ")
        ));
    }
    None
}

/// Whether `host:port` names the loopback (`127.0.0.1:8000`, `[::1]:8000`, `localhost:8000`).
fn is_loopback(addr: &str) -> bool {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<core::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A container upstream's address from the observation.
fn observed_dial(ctx: &Context, dial: &Dial) -> Option<String> {
    match dial {
        Dial::Fixed(a) => Some(a.clone()),
        Dial::Container {
            name,
            network,
            port,
        } => ctx
            .observed
            .containers
            .iter()
            .find(|c| &c.name == name)
            .and_then(|c| c.addresses.get(network))
            .map(|ip| format!("{ip}:{port}")),
    }
}
