//! The network edge as berth kinds: named address sets, the inbound firewall, routes and the
//! Caddy proxy they are served by ([`EdgeSpec`]). Plain data: the loader is `crate::berthfile`
//! (and `crate::compose` for `x-berth.routes`), the planners are `crate::kinds::{firewall,route}`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use super::Origin;

/// The name of the address set that is defined without being declared.
pub const TAILNET: &str = "tailnet";

/// Tailscale's IPv4 CGNAT range and its IPv6 ULA prefix: what `tailnet` means unless redefined.
pub fn tailnet_default() -> Vec<IpNet> {
    vec![
        "100.64.0.0/10".parse().expect("valid CIDR"),
        "fd7a:115c:a1e0::/48".parse().expect("valid CIDR"),
    ]
}

/// Everything at the network edge the config declares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeSpec {
    /// `kind: AddressSet` by name; `tailnet` is always present (predefined or redefined).
    pub address_sets: BTreeMap<String, AddressSet>,
    /// `kind: Firewall`: at most one per config.
    pub firewall: Option<FirewallSpec>,
    /// `kind: Route` documents and `x-berth.routes` of services, in declaration order.
    pub routes: Vec<RouteSpec>,
    /// `kind: Proxy`: at most one per config; routes without it are an error.
    pub proxy: Option<ProxySpec>,
}

impl EdgeSpec {
    /// The addresses a source names: a set's addresses, or the CIDRs themselves.
    /// `None` for an unknown set name (the loader reports those, so planners may `expect`).
    pub fn resolve(&self, source: &Source) -> Option<Vec<IpNet>> {
        match source {
            Source::Anywhere => None,
            Source::Set(name) => self.address_sets.get(name).map(|s| s.addresses.clone()),
            Source::Cidrs(c) => Some(c.clone()),
        }
    }
}

/// `kind: AddressSet`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AddressSet {
    pub name: String,
    pub addresses: Vec<IpNet>,
    /// `None` for the predefined `tailnet`.
    pub origin: Option<Origin>,
}

/// Who may connect: `from:` of a firewall rule, `access:` of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// No `from:` / `access: public`.
    Anywhere,
    /// An address set by name.
    Set(String),
    /// CIDRs written in place.
    Cidrs(Vec<IpNet>),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Anywhere => f.write_str("public"),
            Source::Set(n) => f.write_str(n),
            Source::Cidrs(c) => {
                let s: Vec<String> = c.iter().map(ToString::to_string).collect();
                f.write_str(&s.join(", "))
            }
        }
    }
}

/// `tcp` or `udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// `443/tcp`, `60000-61000/udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PortRange {
    pub start: u16,
    /// Equal to `start` for a single port.
    pub end: u16,
    pub proto: Proto,
}

impl PortRange {
    pub fn contains(&self, port: u16, proto: Proto) -> bool {
        self.proto == proto && self.start <= port && port <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}/{}", self.start, self.proto)
        } else {
            write!(f, "{}-{}/{}", self.start, self.end, self.proto)
        }
    }
}

/// `backend:` of `kind: Firewall`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// firewalld when it is running, else nftables.
    #[default]
    Auto,
    Firewalld,
    Nftables,
}

/// `inbound:` of `kind: Firewall`: what happens to everything not allowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Inbound {
    #[default]
    Drop,
    Reject,
}

/// One entry of `allow:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllowRule {
    pub ports: Vec<PortRange>,
    pub from: Source,
    pub origin: Origin,
}

/// `kind: Firewall`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FirewallSpec {
    pub backend: Backend,
    pub inbound: Inbound,
    pub allow: Vec<AllowRule>,
    /// `allow_no_ssh: true`: a ruleset that lets no one reach SSH is what the user wants.
    pub allow_no_ssh: bool,
    /// `ssh_port:` (default 22): the port the lockout guard keeps reachable.
    pub ssh_port: u16,
    /// `confirm_timeout:` (default and maximum 60 s): how long a change may stay unconfirmed
    /// before the previous ruleset is restored.
    pub confirm_timeout: Duration,
    pub origin: Origin,
}

impl FirewallSpec {
    /// Whether `port/proto` is allowed from everywhere.
    pub fn allows_publicly(&self, port: u16, proto: Proto) -> bool {
        self.allow
            .iter()
            .any(|r| r.from == Source::Anywhere && r.ports.iter().any(|p| p.contains(port, proto)))
    }

    /// The sources `port/proto` is allowed from (empty: from nowhere).
    pub fn sources_of(&self, port: u16, proto: Proto) -> Vec<&Source> {
        self.allow
            .iter()
            .filter(|r| r.ports.iter().any(|p| p.contains(port, proto)))
            .map(|r| &r.from)
            .collect()
    }
}

/// Where a route's requests go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Upstream {
    /// A container port of a stack's service (`x-berth.routes`).
    Service {
        stack: String,
        service: String,
        port: u16,
    },
    /// `to: 127.0.0.1:8000` of `kind: Route`: an address Caddy dials as written.
    Address(String),
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Service {
                stack,
                service,
                port,
            } => write!(f, "{stack}/{service}:{port}"),
            Upstream::Address(a) => f.write_str(a),
        }
    }
}

/// One route: `host` (+ `path`) → upstream, for whom.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteSpec {
    pub host: String,
    /// A Caddy path matcher (`/admin/*`); `None` for the whole host.
    pub path: Option<String>,
    pub to: Upstream,
    pub access: Source,
    /// The route: its `kind: Route` document's `kind:` key, or its `x-berth.routes` entry.
    pub origin: Origin,
    /// Where each of its keys was written, for errors about one of them.
    pub keys: RouteKeys,
}

/// Where a route's keys were written (`None`: not written, or not known): an error about the
/// upstream or the access points at that key rather than at the route.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteKeys {
    pub host: Option<Origin>,
    /// `to:` of a `kind: Route`, `port:` of an `x-berth.routes` entry.
    pub to: Option<Origin>,
    pub access: Option<Origin>,
}

/// Which of a route's keys a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKey {
    Host,
    To,
    Access,
}

impl RouteSpec {
    /// Where `key` was written, else where the route was.
    pub fn origin_of(&self, key: RouteKey) -> &Origin {
        let at = match key {
            RouteKey::Host => &self.keys.host,
            RouteKey::To => &self.keys.to,
            RouteKey::Access => &self.keys.access,
        };
        at.as_ref().unwrap_or(&self.origin)
    }

    /// The route's address name: `app1.example.org` or `app1.example.org/admin/*`.
    pub fn name(&self) -> String {
        match &self.path {
            Some(p) => format!("{}{}", self.host, p),
            None => self.host.clone(),
        }
    }
}

/// How berth reaches Caddy's admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyAdmin {
    /// `admin: http://127.0.0.1:2019`.
    Url(String),
    /// `service: proxy/caddy`: a berth-managed container; its admin API on port 2019.
    Service { stack: String, service: String },
}

/// `headers:` of `kind: Proxy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Headers {
    /// HSTS, X-Content-Type-Options, Referrer-Policy, X-Frame-Options, CSP frame-ancestors.
    Default,
    /// `headers: none`.
    None,
    /// A map of header → value, set on every response.
    Map(BTreeMap<String, String>),
}

/// What berth sees of Caddy.
#[derive(Debug, Clone, PartialEq)]
pub enum ObservedProxy {
    /// The admin API answered with this config (`null` when Caddy runs without one).
    Config(serde_json::Value),
    /// It did not answer (or the Caddy container is not there yet): the reason.
    Unreachable(String),
}

/// `kind: Proxy`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxySpec {
    pub admin: ProxyAdmin,
    /// `network:`: the Docker network whose addresses Caddy dials for a stack's service (Caddy
    /// on the host that is attached to one network; with `service:` the network it shares with
    /// the upstream). `None`: the first network the two share, else the upstream's first.
    pub network: Option<String>,
    /// The ACME account's email.
    pub email: Option<String>,
    /// Another ACME directory (a local pebble in tests).
    pub acme_ca: Option<String>,
    /// A PEM file of roots the ACME client trusts for `acme_ca` (pebble's own certificate).
    pub acme_ca_root: Option<String>,
    pub headers: Headers,
    pub origin: Origin,
}

/// The firewall on the host now, as far as berth looks at it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedFirewall {
    /// Digest of `nft -j list table inet berth` without handles and without the elements of
    /// the ban sets (Fail2Ban's bans are not drift); `None`: there is no such table.
    pub table: Option<String>,
    /// `firewall-cmd --state` says running.
    pub firewalld_running: bool,
    /// Why the firewall could not be read (no `nft`, not root): the planner refuses to change it.
    pub error: Option<String>,
    /// firewalld's default zone now, when firewalld runs.
    pub zone: Option<ZoneState>,
    /// Why berth's confirmed ruleset would not be loaded at boot (its copy or the unit
    /// `berth-firewall-<instance>.service` missing, changed or disabled); `None`: it would,
    /// or berth has none.
    pub boot: Option<String>,
}

/// A firewalld zone as `firewall-cmd --list-all` shows it, runtime and permanent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneState {
    pub name: String,
    /// The permanent target (`default`, `DROP`, `%%REJECT%%`, `ACCEPT`).
    pub target: String,
    pub runtime: ZoneAllow,
    pub permanent: ZoneAllow,
}

/// What a firewalld zone lets in: the allowances berth governs (services, ports, protocols,
/// source ports, rich rules, sources). Interfaces, ICMP blocks, masquerade and forward ports
/// are not allowances and are left alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ZoneAllow {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rich: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
}

impl ZoneAllow {
    /// `(firewall-cmd option stem, plan noun, the values)` for each kind of allowance.
    pub fn kinds(&self) -> [(&'static str, &'static str, &Vec<String>); 6] {
        [
            ("service", "service", &self.services),
            ("port", "port", &self.ports),
            ("protocol", "protocol", &self.protocols),
            ("source-port", "source port", &self.source_ports),
            ("rich-rule", "rich rule", &self.rich),
            ("source", "source", &self.sources),
        ]
    }

    /// What `self` has that `other` has not, as `(option stem, plan noun, value)`.
    pub fn minus(&self, other: &ZoneAllow) -> Vec<(&'static str, &'static str, String)> {
        let mut out = Vec::new();
        for ((stem, noun, mine), (_, _, theirs)) in self.kinds().into_iter().zip(other.kinds()) {
            for v in mine.iter().filter(|v| !theirs.contains(v)) {
                out.push((stem, noun, v.clone()));
            }
        }
        out
    }
}

/// berth's takeover of a firewalld zone: the zone as it was before berth (target and
/// allowances, permanent), recorded before berth changed it; removing the Firewall puts it
/// back exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ZoneRecord {
    pub zone: String,
    /// The zone's permanent target before berth set it.
    pub target_before: String,
    /// The zone's permanent allowances before berth took it over.
    #[serde(default)]
    pub original: ZoneAllow,
}

/// What berth wants in the firewalld zone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ZoneWanted {
    pub zone: String,
    pub target: String,
    pub ports: Vec<String>,
    pub rich: Vec<String>,
}

impl ZoneWanted {
    /// The zone's allowances berth wants: exactly the manifest's.
    pub fn allow(&self) -> ZoneAllow {
        ZoneAllow {
            ports: self.ports.clone(),
            rich: self.rich.clone(),
            ..ZoneAllow::default()
        }
    }
}

/// The names of the timeout sets Fail2Ban bans into (dropped on input and forward).
pub const BAN_SETS: [&str; 2] = ["banned4", "banned6"];

/// The nft script that removes berth's table (the firewall left the config, or a rollback to
/// "no firewall"): shared by the planner and the host adapter.
pub fn nft_delete_script() -> String {
    "table inet berth {}\ndelete table inet berth\n".to_string()
}
