//! The proxy change: wait for the routed containers, resolve every upstream to the address it
//! has now, render the whole Caddy config and load it (`POST /load`). Caddy validates a config
//! before it switches, so a refused load leaves the previous one serving; the refusal is the
//! change's error. Also the handover of a zero-downtime replace ([`Exec::replace_handover`]).

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::future::BoxFuture;
use serde_json::Value;

use super::container::WaitError;
use super::{ApplyEvent, Driver, Exec, HostDriver, StepError};
use crate::caddy::render::{self, Site};
use crate::caddy::{Caddy, CaddyError};
use crate::kinds::route::CONTAINER_ADMIN_PORT;
use crate::model::{ServiceSpec, StackSpec};
use crate::plan::{AdminTarget, Change, Dial, Kind, ProxyPayload, Wait, short_id};

/// What the executor asks of a proxy: load a whole config.
pub trait ProxyDriver: Send + Sync {
    fn load<'a>(
        &'a self,
        admin: &'a str,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<(), CaddyError>>;
}

impl ProxyDriver for Caddy {
    fn load<'a>(
        &'a self,
        admin: &'a str,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<(), CaddyError>> {
        Box::pin(Caddy::load(self, admin, config))
    }
}

/// A proxy driver that cannot load (the HTTP client could not be built).
pub struct NoProxy(pub String);

impl ProxyDriver for NoProxy {
    fn load<'a>(&'a self, _: &'a str, _: &'a Value) -> BoxFuture<'a, Result<(), CaddyError>> {
        let e = CaddyError::Client(self.0.clone());
        Box::pin(async move { Err(e) })
    }
}

fn fail(message: String, transient: bool) -> StepError {
    StepError::Host {
        addr: crate::kinds::route::addr(),
        message,
        transient,
    }
}

impl<D: Driver, H: HostDriver> Exec<'_, D, H> {
    /// The `proxy:caddy` change.
    pub(super) async fn proxy(&self, c: &Change, p: &ProxyPayload) -> Result<(), StepError> {
        for need in &c.needs {
            if need.addr.kind != Kind::Container || need.wait == Wait::Applied {
                continue;
            }
            let stack = need.addr.stack().unwrap_or_default();
            match self
                .wait_for(stack, &need.addr.name, &need.addr.name, need.wait)
                .await
            {
                Ok(()) => {}
                Err(WaitError::Gone) if !need.required => {}
                Err(e) => {
                    return Err(fail(
                        format!(
                            "{stack}/{}: {e}; Caddy's config was not changed",
                            need.addr.name
                        ),
                        false,
                    ));
                }
            }
        }
        let n = self.load_config(p, &BTreeMap::new()).await?.len();
        self.emit(ApplyEvent::Host {
            addr: crate::kinds::route::addr().to_string(),
            did: format!("config loaded ({n} routes)"),
        });
        Ok(())
    }

    /// Resolve, render and load. `overrides`: container name → the address to dial instead
    /// (the new container of a handover). Returns the routes loaded (`@id` → dial), also kept
    /// for the apply's report.
    async fn load_config(
        &self,
        p: &ProxyPayload,
        overrides: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, StepError> {
        let admin = match &p.admin {
            AdminTarget::Url(u) => u.clone(),
            AdminTarget::Container { name, network } => {
                let ip = self
                    .address_of(name, network.as_deref())
                    .await
                    .ok_or_else(|| {
                        fail(
                            format!("the Caddy container {name} has no address berth can reach"),
                            true,
                        )
                    })?;
                format!("http://{ip}:{CONTAINER_ADMIN_PORT}")
            }
        };
        let mut sites: Vec<Site> = Vec::new();
        for s in &p.sites {
            let dial = match &s.dial {
                Dial::Fixed(a) => Some(a.clone()),
                Dial::Container {
                    name,
                    network,
                    port,
                } => match overrides.get(name) {
                    Some(ip) => Some(format!("{ip}:{port}")),
                    None => self
                        .address_of(name, Some(network))
                        .await
                        .map(|ip| format!("{ip}:{port}")),
                },
            };
            match dial {
                Some(d) => sites.push(s.site(d)),
                None => self.emit(ApplyEvent::Warning {
                    message: format!(
                        "route {}{} → {} left out: its container has no address on its network (not running?)",
                        s.host,
                        s.path.as_deref().unwrap_or(""),
                        s.upstream
                    ),
                }),
            }
        }
        let config = render::render(&p.settings, &sites);
        // A Caddy that was just started (by this apply, or a moment ago) does not answer at
        // once: an unreachable admin API is tried again for about 10 s. A refusal is final.
        let patience = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(8);
        (|| self.proxy.load(&admin, &config))
            .retry(patience)
            .when(|e| matches!(e, CaddyError::Unreachable { .. }))
            .await
            .map_err(|e| fail(e.to_string(), e.is_transient()))?;
        let loaded: BTreeMap<String, String> =
            sites.iter().map(|s| (s.id(), s.dial.clone())).collect();
        *self.proxy_loaded.lock().unwrap_or_else(|e| e.into_inner()) = Some(loaded.clone());
        Ok(loaded)
    }

    /// A container's IPv4 address on `network` (any, when `None`), by inspecting it now.
    async fn address_of(&self, name: &str, network: Option<&str>) -> Option<String> {
        let info = self.driver.inspect(name).await.ok()?;
        if !info.running() {
            return None;
        }
        match network {
            Some(n) => info.addresses.get(n).cloned(),
            None => info.addresses.values().next().cloned(),
        }
    }

    /// Zero-downtime replace of a service reached only through routes: create the new
    /// container under a temporary name beside the old one, start it, wait until healthy (or
    /// running), load the proxy config that sends the routes to it, then stop and remove the
    /// old one and give the new one the real name. Until the load succeeds the old container
    /// serves and is never touched; a failure before then removes the new one again.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn replace_handover(
        &self,
        stack_spec: &StackSpec,
        service: &str,
        spec: &ServiceSpec,
        number: u32,
        real_name: &str,
        old_id: &str,
        handover: &ProxyPayload,
    ) -> Result<(), StepError> {
        let d = self.driver;
        let stack = stack_spec.name.as_str();
        let svc_err = |message: String, transient: bool| StepError::Service {
            stack: stack.into(),
            service: service.into(),
            message,
            transient,
        };
        self.emit(ApplyEvent::Replacing {
            stack: stack.into(),
            service: service.into(),
            name: real_name.into(),
        });
        let old = match d.inspect(old_id).await {
            Ok(info) => info,
            Err(e) if e.is_not_found() => {
                return self
                    .create(stack_spec, service, spec, number, real_name)
                    .await;
            }
            Err(e) => return Err(svc_err(e.to_string(), e.is_transient())),
        };
        let temp = format!("{real_name}-berth-next");
        // A leftover of an interrupted handover holds the name: it never served.
        match d.remove(&temp).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(svc_err(e.to_string(), e.is_transient())),
        }
        let reuse = old.anonymous_volumes(spec);
        let new_id = d
            .create_container(stack_spec, service, spec, number, &temp, &reuse)
            .await
            .map_err(|e| svc_err(e.to_string(), e.is_transient()))?;
        let new_ref = new_id.as_str();
        let cleanup = |why: String| async move {
            if let Err(e) = d.remove(new_ref).await {
                self.emit(ApplyEvent::Warning {
                    message: format!(
                        "{stack}/{service}: could not remove the new container {temp_name} ({e})",
                        temp_name = short_id(new_ref)
                    ),
                });
            }
            svc_err(
                format!(
                    "replacing {real_name} failed: {why}; the old container kept serving and was not touched"
                ),
                false,
            )
        };
        if let Err(e) = d.start(&new_id).await {
            return Err(cleanup(e.to_string()).await);
        }
        let up = self.wait_ready(stack, service, &new_id, spec).await;
        if let Err(e) = up {
            return Err(cleanup(e.to_string()).await);
        }
        // The new container's address on each network a route dials it on.
        let info = match d.inspect(&new_id).await {
            Ok(i) => i,
            Err(e) => return Err(cleanup(e.to_string()).await),
        };
        let mut overrides = BTreeMap::new();
        for s in &handover.sites {
            if let Dial::Container { name, network, .. } = &s.dial
                && name == real_name
            {
                match info.addresses.get(network) {
                    Some(ip) => {
                        overrides.insert(name.clone(), ip.clone());
                    }
                    None => {
                        return Err(cleanup(format!("the new container is not on {network}")).await);
                    }
                }
            }
        }
        if let Err(e) = self.load_config(handover, &overrides).await {
            return Err(cleanup(format!("switching the proxy: {e}")).await);
        }
        self.emit(ApplyEvent::Host {
            addr: crate::kinds::route::addr().to_string(),
            did: format!("routes switched to the new {real_name}"),
        });
        // The proxy sends nothing to the old one any more.
        if let Err(e) = d.stop(old_id, old.stop_timeout).await
            && !e.is_not_found()
        {
            self.emit(ApplyEvent::Warning {
                message: format!("{stack}/{service}: stopping the old container: {e}"),
            });
        }
        if let Err(e) = d.remove(old_id).await
            && !e.is_not_found()
        {
            return Err(svc_err(
                format!(
                    "the new container serves as {temp}, but the old one could not be removed ({e}); the next apply finishes"
                ),
                e.is_transient(),
            ));
        }
        d.rename(&new_id, real_name).await.map_err(|e| {
            svc_err(
                format!("renaming {temp} to {real_name}: {e}"),
                e.is_transient(),
            )
        })?;
        self.emit(ApplyEvent::Replaced {
            stack: stack.into(),
            service: service.into(),
            name: real_name.into(),
        });
        Ok(())
    }
}
