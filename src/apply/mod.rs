//! The executor: carries out a [`Plan`] by its edges. A change starts when every change it
//! needs has reached the [`Wait`] on the edge; independent changes run side by side, with at
//! most [`ApplyOptions::parallel`] Engine requests in flight, so a cold deploy waits for many
//! health checks at the same time. It decides nothing the planner did not; it only adds the safety around each step
//! (dependency conditions, health waits, restoring the old container when a replacement fails).
//!
//! When a change fails, the changes that need it are not attempted; changes that do not need
//! it go on. Every outcome is in the [`ApplyReport`].

mod container;
pub mod driver;
mod events;
mod firewall;
mod host;
pub mod host_driver;
mod proxy;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

pub use driver::Driver;
pub use events::{ApplyError, ApplyEvent, ApplyReport, Failure, StepError};
pub use host_driver::{HostDriver, NoHost};
pub use proxy::{NoProxy, ProxyDriver};

use crate::plan::{Addr, Change, Kind, Op, Payload, Plan, Wait};

/// Knobs of the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// How long to wait for a container to become healthy (a dependency with
    /// `condition: service_healthy`, or a new container that has a healthcheck).
    pub health_timeout: Duration,
    /// How long to wait for a dependency with `condition: service_completed_successfully`.
    pub completion_timeout: Duration,
    /// How often to look at a container's state while waiting.
    pub poll_interval: Duration,
    /// How many changing Engine requests may be in flight at once (pulls, creates, starts,
    /// stops, removes). Reads (health polls) and changes that only wait hold none.
    pub parallel: usize,
    /// How long a unit must stay active after a start, restart or reload to count as started
    /// (a `Type=simple` service that exits at once is active for a moment).
    pub unit_settle: Duration,
    /// What a firewall change must still reach before it is confirmed.
    pub firewall_confirm: FirewallConfirm,
}

/// What the confirm step of a firewall change checks beyond SSH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallConfirm {
    /// berth serve's own listen address: it must still answer (checked from the host itself;
    /// an unspecified address is checked on loopback).
    pub listen: Option<std::net::SocketAddr>,
    /// The git remote: it must answer a ref listing through the git layer (`None` for a local
    /// `file://` or path remote, which no firewall stands between).
    pub remote: Option<RemoteProbe>,
}

/// Asks the git remote to list a ref (blocking, bounded by the git layer's deadline; the
/// confirm step bounds it again).
#[derive(Clone)]
pub struct RemoteProbe(pub std::sync::Arc<dyn Fn() -> Result<(), String> + Send + Sync>);

impl std::fmt::Debug for RemoteProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteProbe")
    }
}

impl PartialEq for RemoteProbe {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for RemoteProbe {}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            health_timeout: Duration::from_secs(60),
            completion_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_millis(250),
            parallel: 32,
            unit_settle: Duration::from_secs(2),
            firewall_confirm: FirewallConfirm::default(),
        }
    }
}

/// At most this many changes in progress at once (most of them waiting for health).
const MAX_IN_FLIGHT: usize = 256;

/// The state of one change while the graph runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Running,
    Done,
    Failed,
    NotAttempted,
}

/// How long one request to Caddy's admin API may take (a load provisions the whole config).
pub const PROXY_TIMEOUT: Duration = Duration::from_secs(30);

/// Carries out `plan`. Refuses (doing nothing) when the plan has errors. Returns the report
/// when every change succeeded, else [`ApplyError::Failed`] with the same report. The proxy
/// changes go to Caddy's admin API through [`crate::caddy::Caddy`].
pub async fn apply<D: Driver, H: HostDriver>(
    driver: &D,
    host: &H,
    plan: &Plan,
    opts: &ApplyOptions,
    progress: &mut (dyn FnMut(ApplyEvent) + Send),
) -> Result<ApplyReport, ApplyError> {
    let proxied = plan.changes.iter().any(|c| match &c.payload {
        Payload::Proxy(_) => true,
        Payload::Container(p) => p.handover.is_some(),
        _ => false,
    });
    if !proxied {
        let none = NoProxy("this plan changes no proxy".into());
        return apply_with_proxy(driver, host, &none, plan, opts, progress).await;
    }
    match crate::caddy::Caddy::new(PROXY_TIMEOUT) {
        Ok(caddy) => apply_with_proxy(driver, host, &caddy, plan, opts, progress).await,
        Err(e) => {
            let none = NoProxy(e.to_string());
            apply_with_proxy(driver, host, &none, plan, opts, progress).await
        }
    }
}

/// [`apply`] with the proxy driver given (a fake in unit tests).
pub async fn apply_with_proxy<D: Driver, H: HostDriver>(
    driver: &D,
    host: &H,
    proxy: &dyn ProxyDriver,
    plan: &Plan,
    opts: &ApplyOptions,
    progress: &mut (dyn FnMut(ApplyEvent) + Send),
) -> Result<ApplyReport, ApplyError> {
    if !plan.errors.is_empty() {
        return Err(ApplyError::PlanHasErrors {
            errors: plan.errors.clone(),
        });
    }
    let throttled = driver::Throttled {
        inner: driver,
        permits: tokio::sync::Semaphore::new(opts.parallel.max(1)),
    };
    let ex = Exec {
        driver: &throttled,
        host,
        proxy,
        opts,
        progress: Mutex::new(progress),
        proxy_loaded: Mutex::new(None),
    };
    let changes = &plan.changes;
    let index: BTreeMap<&Addr, usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (&c.addr, i))
        .collect();
    let index = &index;
    let mut status = vec![Status::Pending; changes.len()];
    let mut report = ApplyReport::default();
    let mut running = FuturesUnordered::new();
    // Changes in progress at once: a bound on memory, not on the Engine (see `parallel`).
    let in_flight = MAX_IN_FLIGHT;
    loop {
        // Start what is ready, in plan order; mark what can no longer run.
        for (i, c) in changes.iter().enumerate() {
            if status[i] != Status::Pending {
                continue;
            }
            let mut ready = true;
            for need in &c.needs {
                let Some(&j) = index.get(&need.addr) else {
                    // Left out of this apply (its group has a plan error): what needs it waits.
                    if need.required && plan.withheld.contains(&need.addr) {
                        status[i] = Status::NotAttempted;
                        report.not_attempted.push(c.addr.clone());
                        ready = false;
                        break;
                    }
                    continue;
                };
                match status[j] {
                    Status::Done => {}
                    Status::Failed | Status::NotAttempted if !need.required => {}
                    Status::Failed | Status::NotAttempted => {
                        status[i] = Status::NotAttempted;
                        report.not_attempted.push(c.addr.clone());
                        ready = false;
                        break;
                    }
                    Status::Pending | Status::Running => ready = false,
                }
            }
            if ready && status[i] == Status::Pending && running.len() < in_flight {
                status[i] = Status::Running;
                let ex = &ex;
                running.push(async move { (i, ex.run_change(c).await) });
            }
        }
        let Some((i, result)) = running.next().await else {
            break;
        };
        match result {
            Ok(()) => {
                status[i] = Status::Done;
                count(&mut report, &changes[i]);
            }
            Err(error) => {
                status[i] = Status::Failed;
                report.failed.push(Failure {
                    addr: changes[i].addr.clone(),
                    error,
                });
            }
        }
    }
    drop(running);
    report.proxy_loaded = ex
        .proxy_loaded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    // Only a plan built by hand with a cycle can leave changes waiting on each other.
    for (i, c) in changes.iter().enumerate() {
        if status[i] == Status::Pending {
            report.not_attempted.push(c.addr.clone());
        }
    }
    if report.failed.is_empty() && report.not_attempted.is_empty() {
        Ok(report)
    } else {
        Err(ApplyError::Failed { report })
    }
}

fn count(r: &mut ApplyReport, c: &Change) {
    if let (Payload::Container(p), Op::Reload) = (&c.payload, c.op)
        && let (Some(cur), Some(reload)) = (&p.current, &p.reload)
    {
        r.reloads.push((cur.id.clone(), reload.digest.clone()));
    }
    let n = match (c.payload.kind(), c.op) {
        (Kind::Image, _) => &mut r.pulled,
        (Kind::Network, Op::Delete) => &mut r.networks_removed,
        (Kind::Network, _) => &mut r.networks_created,
        (Kind::Volume, Op::Delete) => &mut r.volumes_removed,
        (Kind::Volume, _) => &mut r.volumes_created,
        (Kind::Container, Op::Create) => &mut r.created,
        (Kind::Container, Op::Replace) => &mut r.replaced,
        (Kind::Container, Op::Start) => &mut r.started,
        (Kind::Container, Op::Reload) => &mut r.reloaded,
        (Kind::Container, Op::Delete | Op::Pull | Op::Update | Op::Stop) => &mut r.removed,
        (Kind::File | Kind::Directory | Kind::Sysctl | Kind::Unit | Kind::Firewall, _) => {
            &mut r.host
        }
        (Kind::Proxy, _) => &mut r.proxy,
        (Kind::Jobs, _) => &mut r.jobs,
    };
    *n += 1;
}

/// What every running change shares.
struct Exec<'a, D, H> {
    driver: &'a D,
    host: &'a H,
    proxy: &'a dyn ProxyDriver,
    opts: &'a ApplyOptions,
    progress: Mutex<&'a mut (dyn FnMut(ApplyEvent) + Send)>,
    /// The routes of the last config Caddy took (`@id` → dial), for the report.
    proxy_loaded: Mutex<Option<BTreeMap<String, String>>>,
}

impl<D: Driver, H: HostDriver> Exec<'_, D, H> {
    fn emit(&self, e: ApplyEvent) {
        // A poisoned lock only means another change's callback panicked; keep reporting.
        let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        (*p)(e)
    }

    /// The one dispatch over kinds: waits for the conditions the change needs, then carries it
    /// out.
    async fn run_change(&self, c: &Change) -> Result<(), StepError> {
        self.wait_needs(c).await?;
        let d = self.driver;
        match &c.payload {
            Payload::Image(p) => {
                self.emit(ApplyEvent::Pulling {
                    image: p.image.clone(),
                });
                let mut lines = |line: &str| {
                    self.emit(ApplyEvent::PullProgress {
                        image: p.image.clone(),
                        line: line.to_string(),
                    })
                };
                d.pull(&p.image, &mut lines)
                    .await
                    .map_err(|error| StepError::Pull {
                        image: p.image.clone(),
                        services: p.services.iter().map(ToString::to_string).collect(),
                        error,
                    })?;
                self.emit(ApplyEvent::Pulled {
                    image: p.image.clone(),
                });
            }
            Payload::Network(p) => {
                let object = |error| StepError::Object {
                    stack: p.stack.clone(),
                    error,
                };
                match (&p.spec, c.op) {
                    (Some(spec), Op::Create) => {
                        d.create_network(&p.stack, spec).await.map_err(object)?;
                        self.emit(ApplyEvent::NetworkCreated {
                            stack: p.stack.clone(),
                            name: p.name.clone(),
                        });
                    }
                    _ => {
                        d.remove_network(&p.name).await.map_err(object)?;
                        self.emit(ApplyEvent::NetworkRemoved {
                            stack: p.stack.clone(),
                            name: p.name.clone(),
                        });
                    }
                }
            }
            Payload::Volume(p) => {
                let object = |error| StepError::Object {
                    stack: p.stack.clone(),
                    error,
                };
                match (&p.spec, c.op) {
                    (Some(spec), Op::Create) => {
                        d.create_volume(&p.stack, spec).await.map_err(object)?;
                        self.emit(ApplyEvent::VolumeCreated {
                            stack: p.stack.clone(),
                            name: p.name.clone(),
                        });
                    }
                    _ => {
                        d.remove_volume(&p.name).await.map_err(object)?;
                        self.emit(ApplyEvent::VolumeRemoved {
                            stack: p.stack.clone(),
                            name: p.name.clone(),
                        });
                    }
                }
            }
            Payload::Container(p) => self.container(c.op, p).await?,
            Payload::File(_) | Payload::Directory(_) | Payload::Sysctl(_) | Payload::Unit(_) => {
                self.host(c).await?
            }
            Payload::Firewall(p) => self.firewall(c, p).await?,
            Payload::Proxy(p) => self.proxy(c, p).await?,
            Payload::Jobs(p) => {
                self.host
                    .record_jobs(&p.table)
                    .await
                    .map_err(|e| StepError::Host {
                        addr: c.addr.clone(),
                        transient: e.is_transient(),
                        message: format!("cannot record the job table: {e}"),
                    })?
            }
        }
        Ok(())
    }

    /// Container conditions on the edges (`depends_on`): the change on the dependency (if any)
    /// is done; now its container must be running, healthy or completed.
    async fn wait_needs(&self, c: &Change) -> Result<(), StepError> {
        let Payload::Container(me) = &c.payload else {
            return Ok(());
        };
        for need in &c.needs {
            if need.addr.kind != Kind::Container || need.wait == Wait::Applied {
                continue;
            }
            let dep_stack = need.addr.stack().unwrap_or_default();
            let dep_service = service_of(&need.addr, c);
            match self
                .wait_for(dep_stack, &dep_service, &need.addr.name, need.wait)
                .await
            {
                Ok(()) => {}
                Err(container::WaitError::Gone) if !need.required => {}
                Err(e) => {
                    return Err(StepError::Dependency {
                        stack: me.stack.clone(),
                        service: me.service.clone(),
                        message: format!(
                            "{dep_stack}/{dep_service}: {e} ({}/{} depends on it, not changed)",
                            me.stack, me.service
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The service name behind a container address, for messages: from the needing change's
/// stack spec, else the container name.
fn service_of(addr: &Addr, c: &Change) -> String {
    if let Payload::Container(p) = &c.payload
        && let Some(stack) = p.spec.as_deref()
    {
        for (name, spec) in &stack.services {
            for n in 1..=spec.replicas.max(1) {
                if crate::plan::container_name(&stack.name, name, spec, n) == addr.name {
                    return name.clone();
                }
            }
        }
    }
    addr.name.clone()
}

#[cfg(test)]
mod host_tests;
#[cfg(test)]
mod proxy_tests;
#[cfg(test)]
mod tests;
