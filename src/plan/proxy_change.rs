//! The proxy's payload: the whole Caddy config to load, with the upstreams still to resolve
//! (a container created by the same apply has no address at plan time).

use serde::Serialize;

use crate::caddy::render::{Settings, Site};
use ipnet::IpNet;

/// Where Caddy's admin API is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminTarget {
    /// `admin: http://127.0.0.1:2019`.
    Url(String),
    /// The Caddy container of `service:`: its address on `network` (any network when `None`)
    /// at apply time, port 2019.
    Container {
        name: String,
        network: Option<String>,
    },
}

/// Where a route's requests go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dial {
    /// `kind: Route`'s `to:`, as written.
    Fixed(String),
    /// A stack service's container: its IPv4 address on `network`, and the container port.
    Container {
        name: String,
        network: String,
        port: u16,
    },
}

/// One route to render once its upstream is resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedSite {
    pub host: String,
    pub path: Option<String>,
    pub dial: Dial,
    pub allow: Option<Vec<IpNet>>,
    /// The stack whose service it reaches (`None` for `kind: Route`).
    pub stack: Option<String>,
    /// `stack/service:port` or the address, for messages.
    pub upstream: String,
    /// `public`, the set's name or the CIDRs, for messages.
    pub upstream_access: String,
}

impl PlannedSite {
    /// The site with `dial` resolved.
    pub fn site(&self, dial: String) -> Site {
        Site {
            host: self.host.clone(),
            path: self.path.clone(),
            dial,
            allow: self.allow.clone(),
        }
    }
}

/// Load this config into Caddy (op `update`: always the whole config, never a patch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyPayload {
    pub admin: AdminTarget,
    pub settings: Settings,
    pub sites: Vec<PlannedSite>,
}
