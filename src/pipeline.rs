//! The one reconcile path, for the CLI and for `berth serve`: observe → plan → apply → observe.
//! Callers differ only in what they do at the seams ([`Hooks`]): the CLI prints, serve posts
//! statuses, records state and decides whether a failed commit is worth another try.
//!
//! Loading the config is not part of it: the CLI reads a folder, serve a git commit (cached per
//! commit), and both hand over a [`Desired`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::apply::{self, ApplyError, ApplyEvent, ApplyOptions, ApplyReport};
use crate::docker::{DockerError, Engine};
use crate::host::{Host, HostError};
use crate::model::edge::{ObservedProxy, ProxyAdmin};
use crate::model::host::ObservedHost;
use crate::model::{Desired, Observed};
use crate::plan::{self, Plan, PlanOptions};

/// Why a pass could not observe: the Engine or the host did not answer (or the inventory
/// cannot be read). Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Host(#[from] HostError),
}

impl ReconcileError {
    pub fn is_transient(&self) -> bool {
        match self {
            ReconcileError::Docker(e) => e.is_transient(),
            ReconcileError::Host(e) => e.is_transient(),
        }
    }
}

/// How far to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Observe and plan; change nothing.
    Plan,
    /// Apply the plan; a plan with any error is refused whole (nothing half-applied).
    Apply,
    /// Apply every stack whose own plan has no error; the others keep running as they are
    /// (serve: one stack's bad manifest does not hold the others back).
    ApplyHealthyStacks,
}

/// Whether to go on at a seam.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// What a caller does at the seams. Every method has a default that goes on.
pub trait Hooks: Send {
    /// The Engine's state, before planning.
    fn observed(&mut self, _observed: &Observed) -> Flow {
        Flow::Continue
    }
    /// The plan, before anything is applied.
    fn planned(&mut self, _plan: &Plan) -> Flow {
        Flow::Continue
    }
    /// One step of the apply, as it happens.
    fn event(&mut self, _event: ApplyEvent) {}
}

/// Hooks that do nothing.
pub struct Quiet;
impl Hooks for Quiet {}

/// Everything one pass decided and did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub observed: Observed,
    /// The whole plan (absent when a hook stopped before planning).
    pub plan: Option<Plan>,
    /// What was handed to the executor (with [`Mode::ApplyHealthyStacks`], the plan less the
    /// stacks with errors), and how it went.
    pub applied: Option<(Plan, Result<ApplyReport, ApplyError>)>,
    /// The Engine after the apply (absent when nothing was applied or it could not be read).
    pub after: Option<Observed>,
}

/// What one pass is run with.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub plan: PlanOptions,
    pub apply: ApplyOptions,
    /// Where berth keeps what the Engine cannot hold: `reloads-<instance>.json` (which
    /// containers were reloaded with which config files) and `inventory-<instance>.json` (the
    /// host objects berth created or took over). `None`: nothing is kept (a reload is then
    /// redone by every pass) and host settings cannot be applied.
    pub state_dir: Option<PathBuf>,
    /// The config commit being applied (serve), recorded with the job table: backups tag their
    /// snapshots with it. `None` for a folder (`berth apply DIR`).
    pub commit: Option<String>,
}

/// The plan options of a run now: the CLI's and serve's switches, with the clock and the host's
/// zone read here (the planner reads neither).
pub fn plan_options(instance: &str, allow_empty: bool, prune_volumes: bool) -> PlanOptions {
    PlanOptions {
        instance: instance.to_string(),
        allow_empty,
        prune_volumes,
        clock: Some(plan_clock()),
    }
}

/// Now, in the host's zone (UTC when it cannot be told): the clock and zone a plan is made
/// with, read here so that the planner reads neither.
fn plan_clock() -> plan::PlanClock {
    plan::PlanClock {
        now: chrono::Utc::now(),
        host_zone: crate::jobs::schedule::host_zone().unwrap_or(chrono_tz::UTC),
    }
}

/// Runs one pass.
pub async fn reconcile(
    engine: &Engine,
    desired: &Desired,
    opts: &Options,
    mode: Mode,
    hooks: &mut dyn Hooks,
) -> Result<Outcome, ReconcileError> {
    let (plan_opts, apply_opts) = (&opts.plan, &opts.apply);
    let host = opts.state_dir.as_deref().map(|d| {
        let (dir, instance, commit) = (
            d.to_path_buf(),
            plan_opts.instance.clone(),
            opts.commit.clone(),
        );
        let record = crate::host::JobsRecorder(std::sync::Arc::new(move |table| {
            crate::jobs::record_table(&dir, &instance, table, commit.as_deref())
                .map_err(|e| (e.to_string(), e.is_transient()))
        }));
        Host::new(d, &plan_opts.instance).with_jobs_recorder(record)
    });
    // The Engine and the host are observed side by side.
    let (observed, host_observed) = tokio::join!(
        observe(engine, desired, plan_opts),
        observe_host(host.as_ref(), desired)
    );
    let mut observed = observed?;
    observed.host = host_observed?;
    let reloads = opts
        .state_dir
        .as_deref()
        .map(|d| Reloads::load(d, &plan_opts.instance));
    if let Some(r) = &reloads {
        observed.reloaded = r.0.clone();
    }
    if let Some(dir) = opts.state_dir.as_deref() {
        observed.jobs = observe_jobs(dir, &plan_opts.instance);
        if desired.edge.proxy.is_some() {
            observed.proxy_loaded = ProxyLoaded::load(dir, &plan_opts.instance).0;
        }
    }
    let mut outcome = Outcome {
        observed,
        plan: None,
        applied: None,
        after: None,
    };
    if hooks.observed(&outcome.observed) == Flow::Stop {
        return Ok(outcome);
    }
    let the_plan = plan::plan(desired, &outcome.observed, plan_opts);
    let flow = hooks.planned(&the_plan);
    let to_apply = match mode {
        Mode::Plan => None,
        // A bad route is left out of Caddy's config and reported; the rest is applied.
        Mode::Apply if the_plan.errors.iter().all(plan::PlanError::is_contained) => {
            Some(the_plan.without_withheld())
        }
        Mode::Apply => Some(the_plan.clone()),
        Mode::ApplyHealthyStacks => Some(the_plan.without_withheld()),
    };
    outcome.plan = Some(the_plan);
    let Some(to_apply) = to_apply.filter(|p| flow == Flow::Continue && p.has_changes()) else {
        return Ok(outcome);
    };
    let mut progress = |e| hooks.event(e);
    let result = match &host {
        Some(h) => apply::apply(engine, h, &to_apply, apply_opts, &mut progress).await,
        None => apply::apply(engine, &apply::NoHost, &to_apply, apply_opts, &mut progress).await,
    };
    outcome.after = observe(engine, desired, plan_opts).await.ok();
    if let (Some(dir), Some(mut reloads)) = (opts.state_dir.as_deref(), reloads) {
        let report = match &result {
            Ok(r) => Some(r),
            Err(ApplyError::Failed { report }) => Some(report),
            Err(_) => None,
        };
        let before = reloads.0.clone();
        reloads
            .0
            .extend(report.into_iter().flat_map(|r| r.reloads.iter().cloned()));
        // Containers that are gone (replaced, removed) take their entry with them.
        if let Some(after) = &outcome.after {
            reloads
                .0
                .retain(|id, _| after.containers.iter().any(|c| &c.id == id));
        }
        // Written only when it changed: most passes reload nothing.
        if reloads.0 != before
            && let Err(e) = reloads.save(dir, &plan_opts.instance)
        {
            tracing::warn!(error = %e, "cannot record reloads in the state dir; the next pass reloads again");
        }
    }
    // The routes Caddy was given, when it took them: the next plan tells drift from new.
    if let (Some(dir), Some(loaded)) = (opts.state_dir.as_deref(), proxy_loaded(&result))
        && let Err(e) = loaded.save(dir, &plan_opts.instance)
    {
        tracing::warn!(error = %e, "cannot record the loaded routes in the state dir");
    }
    // The images of what was applied, for `kind: Prune` (never an image of a recent config).
    if let Some(dir) = opts.state_dir.as_deref()
        && !matches!(result, Err(ApplyError::PlanHasErrors { .. }))
    {
        record_applied(dir, &plan_opts.instance, desired, outcome.after.as_ref());
    }
    outcome.applied = Some((to_apply, result));
    Ok(outcome)
}

/// The files `dir` holds for `instance` (its job table, host inventory, applied images,
/// reloads): what a plan compares with beyond the Engine. None: nothing was recorded there for
/// this instance (another `--state-dir` or `--instance` than the one that applied).
pub fn recorded_state(dir: &Path, instance: &str) -> Vec<PathBuf> {
    [
        crate::jobs::state::path(dir, instance),
        crate::host::inventory_path(dir, instance),
        crate::applied::Applied::path(dir, instance),
        dir.join(Reloads::file(instance)),
        dir.join(ProxyLoaded::file(instance)),
    ]
    .into_iter()
    .filter(|p| p.exists())
    .collect()
}

/// The job table the last apply recorded (`jobs-<instance>.json`), as the planner compares it.
fn observe_jobs(dir: &Path, instance: &str) -> crate::model::jobs::ObservedJobs {
    match crate::jobs::load(dir, instance) {
        Ok(state) => crate::model::jobs::ObservedJobs {
            recorded: state
                .table
                .iter()
                .map(|(name, job)| (name.clone(), crate::kinds::job::recorded(job)))
                .collect(),
            error: None,
        },
        Err(e) => crate::model::jobs::ObservedJobs {
            recorded: Default::default(),
            error: Some(e.to_string()),
        },
    }
}

/// Adds the applied config's images to `applied-<instance>.json`. A failure is logged: the
/// next prune then keeps less than it could (it refuses to run on an unreadable record).
fn record_applied(dir: &Path, instance: &str, desired: &Desired, after: Option<&Observed>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let result = crate::applied::Applied::load(dir, instance).and_then(|mut a| {
        a.push(crate::applied::entry(desired, after, now));
        a.save(dir, instance)
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot record the applied images in the state dir");
    }
}

/// `reloads-<instance>.json`: container ID → the config digest it was reloaded with.
#[derive(Debug, Default)]
struct Reloads(BTreeMap<String, String>);

impl Reloads {
    fn file(instance: &str) -> String {
        format!("reloads-{instance}.json")
    }

    /// A missing or unreadable file is an empty record: the worst case is one more reload.
    fn load(dir: &Path, instance: &str) -> Reloads {
        Reloads(load_record(dir, &Self::file(instance)))
    }

    fn save(&self, dir: &Path, instance: &str) -> std::io::Result<()> {
        save_record(dir, &Self::file(instance), &self.0)
    }
}

/// `proxy-<instance>.json`: the routes of the last config Caddy took (`@id` → the address
/// dialled).
#[derive(Debug, Default)]
struct ProxyLoaded(BTreeMap<String, String>);

impl ProxyLoaded {
    fn file(instance: &str) -> String {
        format!("proxy-{instance}.json")
    }

    /// A missing or unreadable file is an empty record: routes are then shown as new, not
    /// as drift.
    fn load(dir: &Path, instance: &str) -> ProxyLoaded {
        ProxyLoaded(load_record(dir, &Self::file(instance)))
    }

    fn save(&self, dir: &Path, instance: &str) -> std::io::Result<()> {
        save_record(dir, &Self::file(instance), &self.0)
    }
}

/// What Caddy took in this apply (its last successful load), from the report.
fn proxy_loaded(result: &Result<ApplyReport, ApplyError>) -> Option<ProxyLoaded> {
    let report = match result {
        Ok(r) => r,
        Err(ApplyError::Failed { report }) => report,
        Err(_) => return None,
    };
    report.proxy_loaded.clone().map(ProxyLoaded)
}

/// A record of the state dir; missing or unreadable is the default.
fn load_record<T: serde::de::DeserializeOwned + Default>(dir: &Path, file: &str) -> T {
    std::fs::read(dir.join(file))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_record<T: serde::Serialize>(dir: &Path, file: &str, value: &T) -> std::io::Result<()> {
    crate::statefile::write_json(&dir.join(file), value)
}

/// The host settings the config declares or the inventory holds. A config without host
/// settings and an empty inventory costs one missing-file check: no process, no other read.
pub async fn observe_host(
    host: Option<&Host>,
    desired: &Desired,
) -> Result<ObservedHost, HostError> {
    let Some(host) = host else {
        return Ok(ObservedHost::default());
    };
    let inventory = host.load_inventory()?;
    let is_fw = |k: &String| k.starts_with("firewall:");
    let firewall = if desired.edge.firewall.is_some() || inventory.entries.keys().any(is_fw) {
        Some(host.observe_firewall().await)
    } else {
        None
    };
    if desired.host.is_empty() && inventory.entries.keys().all(is_fw) {
        return Ok(ObservedHost {
            inventory,
            firewall,
            ..ObservedHost::default()
        });
    }
    let mut observed = host.observe(&desired.host, &inventory).await?;
    observed.firewall = firewall;
    Ok(observed)
}

/// What the Engine runs, with everything the plan options need listed (pruning volumes must
/// see volumes even when no container uses them any more).
pub async fn observe(
    engine: &Engine,
    desired: &Desired,
    opts: &PlanOptions,
) -> Result<Observed, DockerError> {
    let mut observed = engine.observe(desired).await?;
    if opts.prune_volumes && observed.volumes.is_none() {
        observed.volumes = Some(engine.list_volumes().await?);
    }
    observed.proxy = observe_proxy(desired, &observed).await;
    Ok(observed)
}

/// How long observing Caddy may take.
const PROXY_OBSERVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Caddy's running config (`GET /config/`), when the config declares a `kind: Proxy`. An
/// unreachable Caddy is observed as such (the plan says so and loads the config), not an error
/// of the pass: the other kinds go on.
pub async fn observe_proxy(desired: &Desired, observed: &Observed) -> Option<ObservedProxy> {
    let proxy = desired.edge.proxy.as_ref()?;
    let url = match &proxy.admin {
        ProxyAdmin::Url(u) => u.clone(),
        ProxyAdmin::Service { stack, service } => {
            let spec = desired.stacks.get(stack)?.services.get(service)?;
            let name = crate::model::container_name(stack, service, spec, 1);
            let ip = observed
                .containers
                .iter()
                .find(|c| c.name == name)
                .and_then(|c| match &proxy.network {
                    Some(n) => c.addresses.get(n),
                    None => c.addresses.values().next(),
                });
            match ip {
                Some(ip) => format!("http://{ip}:{}", crate::kinds::route::CONTAINER_ADMIN_PORT),
                None => {
                    return Some(ObservedProxy::Unreachable(format!(
                        "the Caddy container {name} does not run (yet)"
                    )));
                }
            }
        }
    };
    let caddy = match crate::caddy::Caddy::new(PROXY_OBSERVE_TIMEOUT) {
        Ok(c) => c,
        Err(e) => return Some(ObservedProxy::Unreachable(e.to_string())),
    };
    Some(match caddy.config(&url).await {
        Ok(v) => ObservedProxy::Config(v),
        Err(e) => ObservedProxy::Unreachable(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_route_withholds_only_its_stack() {
        let (d, o) = crate::plan::proxy_tests::bad_routes();
        let p = plan::plan(&d, &o, &PlanOptions::default());
        let groups: Vec<Option<plan::Group>> = p.errors.iter().map(|e| e.group()).collect();
        assert_eq!(groups, vec![Some(plan::Group::stack("other")); 3]);
        let rest = p.without_withheld();
        assert!(rest.change(&crate::kinds::route::addr()).is_some());
        assert!(rest.errors.is_empty());
    }

    /// A bad route to a fixed address is berth's own proxy group, never a stack's: a stack
    /// named `edge` (or `proxy`) goes ahead with it.
    #[test]
    fn a_bad_address_route_withholds_no_stack_whatever_its_name() {
        use crate::model::edge::{RouteSpec, Source, Upstream};
        for name in ["edge", "proxy", "host-proxy"] {
            let (mut d, mut o) = crate::plan::proxy_tests::bad_routes();
            let other = d.stacks.remove("other").unwrap();
            d.stacks.insert(
                name.into(),
                crate::model::StackSpec {
                    name: name.into(),
                    routes: vec![],
                    ..other
                },
            );
            d.edge.routes.push(RouteSpec {
                host: "old.example.org".into(),
                path: None,
                to: Upstream::Address("127.0.0.1:8001".into()),
                access: Source::Set("office".into()),
                origin: crate::model::host::Origin::default(),
                keys: Default::default(),
            });
            o.containers.retain(|c| c.stack() != Some("other"));
            let p = plan::plan(&d, &o, &PlanOptions::default());
            assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
            assert_eq!(p.errors[0].group(), Some(plan::Group::Proxy));
            let rest = p.without_withheld();
            assert!(rest.withheld.is_empty(), "{name}: {:?}", rest.withheld);
            assert!(
                rest.changes.iter().any(|c| c.addr.stack() == Some(name)),
                "{name}: its containers are created: {:?}",
                rest.changes
            );
        }
    }
}
