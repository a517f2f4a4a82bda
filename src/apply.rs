//! The executor: carries out a [`Plan`] on the Engine, step by step, reporting each step as an
//! [`ApplyEvent`]. It decides nothing the planner did not; it only adds the safety around each
//! step (dependency conditions, health waits, restoring the old container when a replacement
//! fails).
//!
//! Order: every pull first (a failed pull changes nothing), then networks and volumes, then the
//! container actions in plan order (the planner orders them by `depends_on`), removals last.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use crate::docker::{DockerError, Engine, OLD_SUFFIX};
use crate::model::{ContainerState, DependsCondition, Desired, Health, ServiceSpec, StackSpec};
use crate::plan::{Action, Plan, PlanError, container_name, short_id};

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
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            health_timeout: Duration::from_secs(60),
            completion_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// What the executor waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    Running,
    Healthy,
    Completed,
}

impl From<DependsCondition> for WaitFor {
    fn from(c: DependsCondition) -> Self {
        match c {
            DependsCondition::ServiceStarted => WaitFor::Running,
            DependsCondition::ServiceHealthy => WaitFor::Healthy,
            DependsCondition::ServiceCompletedSuccessfully => WaitFor::Completed,
        }
    }
}

impl fmt::Display for WaitFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitFor::Running => "be running",
            WaitFor::Healthy => "be healthy",
            WaitFor::Completed => "complete successfully",
        })
    }
}

/// One step as it happens, for the CLI to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyEvent {
    Pulling {
        image: String,
    },
    PullProgress {
        image: String,
        line: String,
    },
    Pulled {
        image: String,
    },
    NetworkCreated {
        stack: String,
        name: String,
    },
    VolumeCreated {
        stack: String,
        name: String,
    },
    /// Waiting for `stack/service` (a dependency, or a new container) to reach a condition.
    Waiting {
        stack: String,
        service: String,
        container: String,
        until: WaitFor,
        elapsed: Duration,
    },
    /// A new container was created and started.
    Created {
        stack: String,
        service: String,
        name: String,
    },
    Replacing {
        stack: String,
        service: String,
        name: String,
    },
    Replaced {
        stack: String,
        service: String,
        name: String,
    },
    Started {
        stack: String,
        service: String,
        name: String,
    },
    Removed {
        stack: String,
        service: String,
        name: String,
    },
    NetworkRemoved {
        stack: String,
        name: String,
    },
    VolumeRemoved {
        stack: String,
        name: String,
    },
    /// A replacement failed and the old container was put back.
    Restored {
        stack: String,
        service: String,
        name: String,
        detail: String,
    },
    /// Something went wrong that does not stop the apply (e.g. an old container could not be
    /// removed after its replacement is up; the next plan removes it).
    Warning {
        message: String,
    },
}

impl fmt::Display for ApplyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyEvent::Pulling { image } => write!(f, "pulling {image} …"),
            ApplyEvent::PullProgress { image, line } => write!(f, "  {image}: {line}"),
            ApplyEvent::Pulled { image } => write!(f, "pulled {image}"),
            ApplyEvent::NetworkCreated { name, .. } => write!(f, "created network {name}"),
            ApplyEvent::VolumeCreated { name, .. } => write!(f, "created volume {name}"),
            ApplyEvent::Waiting {
                stack,
                service,
                until,
                elapsed,
                ..
            } => write!(
                f,
                "waiting for {stack}/{service} to {until} ({}s)",
                elapsed.as_secs()
            ),
            ApplyEvent::Created { name, .. } => write!(f, "created {name}"),
            ApplyEvent::Replacing { name, .. } => write!(f, "replacing {name} …"),
            ApplyEvent::Replaced { name, .. } => write!(f, "replaced {name}"),
            ApplyEvent::Started { name, .. } => write!(f, "started {name}"),
            ApplyEvent::Removed { name, .. } => write!(f, "removed {name}"),
            ApplyEvent::NetworkRemoved { name, .. } => write!(f, "removed network {name}"),
            ApplyEvent::VolumeRemoved { name, .. } => write!(f, "removed volume {name}"),
            ApplyEvent::Restored { name, detail, .. } => write!(f, "restored {name}: {detail}"),
            ApplyEvent::Warning { message } => write!(f, "warning: {message}"),
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub pulled: usize,
    pub networks_created: usize,
    pub volumes_created: usize,
    pub created: usize,
    pub replaced: usize,
    pub started: usize,
    pub removed: usize,
    pub networks_removed: usize,
    pub volumes_removed: usize,
}

impl ApplyReport {
    /// Whether anything changed on the Engine.
    pub fn changed(&self) -> bool {
        *self != ApplyReport::default()
    }
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} created, {} replaced, {} started, {} removed",
            self.created, self.replaced, self.started, self.removed
        )?;
        if self.pulled > 0 {
            write!(f, ", {} pulled", self.pulled)?;
        }
        Ok(())
    }
}

/// Why an apply stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The plan has errors: nothing was done.
    #[error("the plan has errors, nothing was changed:\n{}", list(errors))]
    PlanHasErrors { errors: Vec<PlanError> },
    /// A pull failed. Pulls come first, so nothing was changed.
    #[error("{}; nothing was changed", pull_message(image, services, error))]
    Pull {
        image: String,
        /// The services that need it (`stack/service`).
        services: Vec<String>,
        error: DockerError,
    },
    /// A network or volume step failed.
    #[error("{stack}: {error}")]
    Object { stack: String, error: DockerError },
    /// A service step failed (the message says what, and what was restored).
    #[error("{stack}/{service}: {message}")]
    Service {
        stack: String,
        service: String,
        message: String,
        /// Whether retrying later may help (the Engine was unreachable, timed out, ...).
        transient: bool,
    },
    /// A dependency did not reach its condition; the dependent was not changed.
    #[error("{message}")]
    Dependency {
        stack: String,
        service: String,
        message: String,
    },
    /// The plan refers to a stack or service the desired state does not declare.
    #[error("{0}")]
    Inconsistent(String),
}

impl ApplyError {
    /// Whether retrying the apply later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ApplyError::Pull { error, .. } | ApplyError::Object { error, .. } => {
                error.is_transient()
            }
            ApplyError::Service { transient, .. } => *transient,
            ApplyError::PlanHasErrors { .. }
            | ApplyError::Dependency { .. }
            | ApplyError::Inconsistent(_) => false,
        }
    }
}

fn pull_message(image: &str, services: &[String], error: &DockerError) -> String {
    let needed = if services.is_empty() {
        String::new()
    } else {
        format!(" (needed by {})", services.join(", "))
    };
    match error {
        DockerError::Pull { cause, .. } => format!("cannot pull image {image}{needed}: {cause}"),
        other => format!("pulling {image}{needed}: {other}"),
    }
}

fn list(errors: &[PlanError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Carries out `plan`. Refuses (doing nothing) when the plan has errors. Stops at the first
/// failed step with an error naming the stack/service and the cause; containers that were
/// running and unchanged keep running.
pub async fn apply(
    engine: &Engine,
    desired: &Desired,
    plan: &Plan,
    opts: &ApplyOptions,
    progress: &mut dyn FnMut(ApplyEvent),
) -> Result<ApplyReport, ApplyError> {
    if !plan.errors.is_empty() {
        return Err(ApplyError::PlanHasErrors {
            errors: plan.errors.clone(),
        });
    }
    let mut ex = Executor {
        engine,
        desired,
        opts,
        progress,
        report: ApplyReport::default(),
        satisfied: BTreeSet::new(),
    };
    let phase = |a: &Action| match a {
        Action::PullImage { .. } => 0,
        Action::CreateNetwork { .. } | Action::CreateVolume { .. } => 1,
        Action::CreateContainer { .. }
        | Action::ReplaceContainer { .. }
        | Action::StartContainer { .. } => 2,
        Action::RemoveContainer { .. } => 3,
        Action::RemoveNetwork { .. } | Action::RemoveVolume { .. } => 4,
    };
    for p in 0..=4 {
        for action in plan.actions.iter().filter(|a| phase(a) == p) {
            ex.run(action).await?;
        }
    }
    Ok(ex.report)
}

struct Executor<'a> {
    engine: &'a Engine,
    desired: &'a Desired,
    opts: &'a ApplyOptions,
    progress: &'a mut dyn FnMut(ApplyEvent),
    report: ApplyReport,
    /// Dependency conditions already met in this apply: (stack, service, condition).
    satisfied: BTreeSet<(String, String, DependsCondition)>,
}

/// A container to restore when a replacement fails.
struct Old<'s> {
    id: &'s str,
    name: &'s str,
    renamed: bool,
    was_running: bool,
}

impl<'a> Executor<'a> {
    fn emit(&mut self, e: ApplyEvent) {
        (self.progress)(e)
    }

    fn service(
        &self,
        stack: &str,
        service: &str,
    ) -> Result<(&'a StackSpec, &'a ServiceSpec), ApplyError> {
        let desired: &'a Desired = self.desired;
        let s = desired.stacks.get(stack).ok_or_else(|| {
            ApplyError::Inconsistent(format!(
                "the plan names stack {stack}, which the config does not declare"
            ))
        })?;
        let spec = s.services.get(service).ok_or_else(|| {
            ApplyError::Inconsistent(format!(
                "the plan names service {stack}/{service}, which the config does not declare"
            ))
        })?;
        Ok((s, spec))
    }

    fn service_err(stack: &str, service: &str, e: DockerError) -> ApplyError {
        ApplyError::Service {
            stack: stack.to_string(),
            service: service.to_string(),
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }

    async fn run(&mut self, action: &Action) -> Result<(), ApplyError> {
        let engine = self.engine;
        match action {
            Action::PullImage {
                image, services, ..
            } => {
                self.emit(ApplyEvent::Pulling {
                    image: image.clone(),
                });
                let progress = &mut *self.progress;
                engine
                    .pull(image, |line| {
                        progress(ApplyEvent::PullProgress {
                            image: image.clone(),
                            line: line.to_string(),
                        })
                    })
                    .await
                    .map_err(|error| ApplyError::Pull {
                        image: image.clone(),
                        services: services.iter().map(ToString::to_string).collect(),
                        error,
                    })?;
                self.report.pulled += 1;
                self.emit(ApplyEvent::Pulled {
                    image: image.clone(),
                });
            }
            Action::CreateNetwork { stack, spec } => {
                engine
                    .create_network(stack, spec)
                    .await
                    .map_err(|error| ApplyError::Object {
                        stack: stack.clone(),
                        error,
                    })?;
                self.report.networks_created += 1;
                self.emit(ApplyEvent::NetworkCreated {
                    stack: stack.clone(),
                    name: spec.name.clone(),
                });
            }
            Action::CreateVolume { stack, spec } => {
                engine
                    .create_volume(stack, spec)
                    .await
                    .map_err(|error| ApplyError::Object {
                        stack: stack.clone(),
                        error,
                    })?;
                self.report.volumes_created += 1;
                self.emit(ApplyEvent::VolumeCreated {
                    stack: stack.clone(),
                    name: spec.name.clone(),
                });
            }
            Action::CreateContainer {
                stack,
                service,
                number,
                name,
                ..
            } => {
                let (stack_spec, spec) = self.service(stack, service)?;
                self.wait_dependencies(stack_spec, service, spec).await?;
                let err = |e| Self::service_err(stack, service, e);
                let id = engine
                    .create_container(stack_spec, service, spec, *number, name)
                    .await
                    .map_err(err)?;
                // A new container that does not come up is removed again: left in place it
                // would look converged to the next plan, and its failure would be forgotten.
                let started = match engine.start(&id).await.map_err(err) {
                    Ok(()) if has_healthcheck(spec) => {
                        self.wait_for(stack, service, &id, WaitFor::Healthy).await
                    }
                    other => other,
                };
                if let Err(e) = started {
                    if let Err(cleanup) = engine.remove(&id).await {
                        self.emit(ApplyEvent::Warning {
                            message: format!(
                                "{stack}/{service}: could not remove the failed new container {name}: {cleanup}"
                            ),
                        });
                    }
                    return Err(e);
                }
                self.report.created += 1;
                self.emit(ApplyEvent::Created {
                    stack: stack.clone(),
                    service: service.clone(),
                    name: name.clone(),
                });
            }
            Action::ReplaceContainer {
                stack,
                service,
                number,
                name,
                old_id,
                ..
            } => self.replace(stack, service, *number, name, old_id).await?,
            Action::StartContainer {
                stack,
                service,
                name,
                id,
                ..
            } => {
                let (stack_spec, spec) = self.service(stack, service)?;
                self.wait_dependencies(stack_spec, service, spec).await?;
                engine
                    .start(id)
                    .await
                    .map_err(|e| Self::service_err(stack, service, e))?;
                self.report.started += 1;
                self.emit(ApplyEvent::Started {
                    stack: stack.clone(),
                    service: service.clone(),
                    name: name.clone(),
                });
            }
            Action::RemoveContainer {
                stack,
                service,
                name,
                id,
                ..
            } => {
                let grace = self
                    .desired
                    .stacks
                    .get(stack)
                    .and_then(|s| s.services.get(service))
                    .and_then(|s| s.stop_grace_period);
                let err = |e| Self::service_err(stack, service, e);
                match engine.stop(id, grace).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(err(e)),
                }
                engine.remove(id).await.map_err(err)?;
                self.report.removed += 1;
                self.emit(ApplyEvent::Removed {
                    stack: stack.clone(),
                    service: service.clone(),
                    name: name.clone(),
                });
            }
            Action::RemoveNetwork { stack, name } => {
                engine
                    .remove_network(name)
                    .await
                    .map_err(|error| ApplyError::Object {
                        stack: stack.clone(),
                        error,
                    })?;
                self.report.networks_removed += 1;
                self.emit(ApplyEvent::NetworkRemoved {
                    stack: stack.clone(),
                    name: name.clone(),
                });
            }
            Action::RemoveVolume { stack, name } => {
                engine
                    .remove_volume(name)
                    .await
                    .map_err(|error| ApplyError::Object {
                        stack: stack.clone(),
                        error,
                    })?;
                self.report.volumes_removed += 1;
                self.emit(ApplyEvent::VolumeRemoved {
                    stack: stack.clone(),
                    name: name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Stop old → rename it aside → create new with the real name → start → wait healthy (if
    /// it has a healthcheck) → remove old. When a step after the stop fails, the new container
    /// is removed and the old one renamed back and started again (if it was running).
    async fn replace(
        &mut self,
        stack: &str,
        service: &str,
        number: u32,
        name: &str,
        old_id: &str,
    ) -> Result<(), ApplyError> {
        let engine = self.engine;
        let (stack_spec, spec) = self.service(stack, service)?;
        // The planner may name a leftover `*-berth-old` container as the one to replace: the
        // new container always gets the real name.
        let real_name = container_name(stack, service, spec, number);
        self.wait_dependencies(stack_spec, service, spec).await?;
        self.emit(ApplyEvent::Replacing {
            stack: stack.to_string(),
            service: service.to_string(),
            name: real_name.clone(),
        });
        let err = |e| Self::service_err(stack, service, e);

        let (was_running, reuse, grace) = match engine.inspect(old_id).await {
            Ok(info) => (
                info.running(),
                info.anonymous_volumes(spec),
                info.stop_timeout,
            ),
            Err(e) if e.is_not_found() => {
                // The old container is already gone: this is a plain create.
                self.emit(ApplyEvent::Warning {
                    message: format!(
                        "{stack}/{service}: container {} to replace is gone; creating {real_name}",
                        short_id(old_id)
                    ),
                });
                let id = engine
                    .create_container(stack_spec, service, spec, number, &real_name)
                    .await
                    .map_err(err)?;
                engine.start(&id).await.map_err(err)?;
                if has_healthcheck(spec) {
                    self.wait_for(stack, service, &id, WaitFor::Healthy).await?;
                }
                self.report.created += 1;
                self.emit(ApplyEvent::Created {
                    stack: stack.to_string(),
                    service: service.to_string(),
                    name: real_name,
                });
                return Ok(());
            }
            Err(e) => return Err(err(e)),
        };
        let mut old = Old {
            id: old_id,
            name,
            renamed: false,
            was_running,
        };

        // 1. Stop the old container.
        // (With its own grace period: the one it was created with.)
        if let Err(e) = engine.stop(old_id, grace).await {
            return Err(self
                .restore(stack, service, &old, None, e.to_string())
                .await);
        }

        // 2. Rename it aside, so that the new one can take the real name.
        let mut aside = format!("{real_name}{OLD_SUFFIX}");
        if name != aside {
            let mut renamed = engine.rename(old_id, &aside).await;
            if matches!(&renamed, Err(e) if e.is_conflict()) {
                // A leftover of an interrupted apply holds the name; the next plan removes it.
                aside = format!("{real_name}{OLD_SUFFIX}-{}", short_id(old_id));
                renamed = engine.rename(old_id, &aside).await;
            }
            if let Err(e) = renamed {
                return Err(self
                    .restore(stack, service, &old, None, e.to_string())
                    .await);
            }
            old.renamed = true;
        }

        // 3. Create the new container under the real name.
        let new_id = match engine
            .create_container_reusing(stack_spec, service, spec, number, &real_name, &reuse)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                return Err(self
                    .restore(stack, service, &old, None, e.to_string())
                    .await);
            }
        };

        // 4. Start it, 5. wait until healthy.
        if let Err(e) = engine.start(&new_id).await {
            return Err(self
                .restore(stack, service, &old, Some(&new_id), e.to_string())
                .await);
        }
        if has_healthcheck(spec)
            && let Err(e) = self
                .wait_for(stack, service, &new_id, WaitFor::Healthy)
                .await
        {
            return Err(self
                .restore(stack, service, &old, Some(&new_id), e.to_string())
                .await);
        }

        // 6. Remove the old one. The service is up: a failure here only leaves a stopped
        // `*-berth-old` container that the next plan removes.
        if let Err(e) = engine.remove(old_id).await {
            self.emit(ApplyEvent::Warning {
                message: format!(
                    "{stack}/{service}: the old container {aside} could not be removed ({e}); the next apply removes it"
                ),
            });
        }
        self.report.replaced += 1;
        self.emit(ApplyEvent::Replaced {
            stack: stack.to_string(),
            service: service.to_string(),
            name: real_name,
        });
        Ok(())
    }

    /// Puts the old container back after a failed replacement and returns the error to report.
    async fn restore(
        &mut self,
        stack: &str,
        service: &str,
        old: &Old<'_>,
        new_id: Option<&str>,
        cause: String,
    ) -> ApplyError {
        let engine = self.engine;
        // `cause` may already carry the `stack/service: ` prefix (health failures).
        let prefix = format!("{stack}/{service}: ");
        let cause = cause.strip_prefix(&prefix).unwrap_or(&cause).to_string();
        let mut problems = Vec::new();
        if let Some(id) = new_id
            && let Err(e) = engine.remove(id).await
        {
            problems.push(format!(
                "could not remove the new container {} ({e})",
                short_id(id)
            ));
        }
        let mut renamed_back = !old.renamed;
        if old.renamed {
            match engine.rename(old.id, old.name).await {
                Ok(()) => renamed_back = true,
                Err(e) => problems.push(format!("could not rename it back to {} ({e})", old.name)),
            }
        }
        let mut started = false;
        if old.was_running {
            match engine.start(old.id).await {
                Ok(()) => started = true,
                Err(e) => problems.push(format!("could not start it again ({e})")),
            }
        }
        let what = if problems.is_empty() {
            format!(
                "restored the old container {} ({}){}",
                old.name,
                short_id(old.id),
                if started { ", running again" } else { "" }
            )
        } else {
            format!(
                "restoring the old container {} ({}) failed: {}",
                if renamed_back {
                    old.name
                } else {
                    "(renamed aside)"
                },
                short_id(old.id),
                problems.join("; ")
            )
        };
        self.emit(ApplyEvent::Restored {
            stack: stack.to_string(),
            service: service.to_string(),
            name: old.name.to_string(),
            detail: what.clone(),
        });
        ApplyError::Service {
            stack: stack.to_string(),
            service: service.to_string(),
            message: format!("replacing {} failed: {cause}; {what}", old.name),
            transient: false,
        }
    }

    /// Honours `service`'s `depends_on` on the dependencies' containers (found by name).
    async fn wait_dependencies(
        &mut self,
        stack: &StackSpec,
        service: &str,
        spec: &ServiceSpec,
    ) -> Result<(), ApplyError> {
        for (dep, d) in &spec.depends_on {
            let key = (stack.name.clone(), dep.clone(), d.condition);
            if self.satisfied.contains(&key) {
                continue;
            }
            let Some(dep_spec) = stack.services.get(dep) else {
                if d.required {
                    return Err(ApplyError::Dependency {
                        stack: stack.name.clone(),
                        service: service.to_string(),
                        message: format!(
                            "{}/{service} depends on {dep}, which is not deployed",
                            stack.name
                        ),
                    });
                }
                continue;
            };
            for number in 1..=dep_spec.replicas.max(1) {
                let cname = container_name(&stack.name, dep, dep_spec, number);
                match self
                    .wait_for(&stack.name, dep, &cname, d.condition.into())
                    .await
                {
                    Ok(()) => {}
                    Err(ApplyError::Service { message, .. })
                        if !d.required && message.contains("not found") => {}
                    Err(ApplyError::Service { message, .. }) => {
                        return Err(ApplyError::Dependency {
                            stack: stack.name.clone(),
                            service: service.to_string(),
                            message: format!(
                                "{}/{dep}: {message} ({}/{service} depends on it, not changed)",
                                stack.name, stack.name
                            ),
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            self.satisfied.insert(key);
        }
        Ok(())
    }

    /// Polls `container` (ID or name) until it reaches `until`. Errors are
    /// [`ApplyError::Service`] for `stack/service`.
    async fn wait_for(
        &mut self,
        stack: &str,
        service: &str,
        container: &str,
        until: WaitFor,
    ) -> Result<(), ApplyError> {
        let engine = self.engine;
        let timeout = match until {
            WaitFor::Completed => self.opts.completion_timeout,
            _ => self.opts.health_timeout,
        };
        let fail = |message: String| ApplyError::Service {
            stack: stack.to_string(),
            service: service.to_string(),
            message,
            transient: false,
        };
        let start = Instant::now();
        let mut next_event = Duration::ZERO;
        loop {
            let (state, health) = engine
                .inspect_state(container)
                .await
                .map_err(|e| Self::service_err(stack, service, e))?;
            match check(until, &state, health) {
                Check::Done => return Ok(()),
                Check::Failed(why) => return Err(fail(why)),
                Check::Wait => {}
            }
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                let t = human_duration(timeout);
                return Err(fail(match until {
                    WaitFor::Healthy => format!("health check failed after {t}"),
                    WaitFor::Completed => format!("did not complete within {t}"),
                    WaitFor::Running => format!("not running after {t}"),
                }));
            }
            if elapsed >= next_event {
                self.emit(ApplyEvent::Waiting {
                    stack: stack.to_string(),
                    service: service.to_string(),
                    container: container.to_string(),
                    until,
                    elapsed,
                });
                next_event = elapsed + Duration::from_secs(5);
            }
            tokio::time::sleep(self.opts.poll_interval.min(timeout - elapsed)).await;
        }
    }
}

enum Check {
    Done,
    Wait,
    Failed(String),
}

/// Whether a container in `state`/`health` has reached `until`, may still, or never will.
fn check(until: WaitFor, state: &ContainerState, health: Option<Health>) -> Check {
    use ContainerState as S;
    match until {
        WaitFor::Running => match state {
            S::Running | S::Restarting | S::Paused | S::Exited(_) => Check::Done,
            other => Check::Failed(format!("is not running ({other})")),
        },
        WaitFor::Healthy => match (state, health) {
            // An exited container may still show its last health status: the exit says more.
            (S::Exited(code), _) => {
                Check::Failed(format!("exited (code {code}) before becoming healthy"))
            }
            (_, Some(Health::Healthy)) => Check::Done,
            (_, Some(Health::Unhealthy)) => Check::Failed("unhealthy".into()),
            (S::Dead | S::Removing | S::Created, _) => {
                Check::Failed(format!("is not running ({state})"))
            }
            (S::Running | S::Paused, None) => Check::Failed(
                "has no healthcheck, so it can never become healthy (condition service_healthy)"
                    .into(),
            ),
            (_, Some(Health::Starting)) | (S::Restarting, None) => Check::Wait,
        },
        WaitFor::Completed => match state {
            S::Exited(0) => Check::Done,
            S::Exited(code) => Check::Failed(format!("exited with code {code}")),
            S::Running | S::Restarting | S::Paused => Check::Wait,
            S::Created => Check::Failed("was never started".into()),
            other => Check::Failed(format!("is {other}")),
        },
    }
}

/// A healthcheck that is not disabled.
fn has_healthcheck(spec: &ServiceSpec) -> bool {
    spec.healthcheck
        .as_ref()
        .is_some_and(|h| !h.test.is_empty() && h.test.first().map(String::as_str) != Some("NONE"))
}

fn human_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Healthcheck;

    #[test]
    fn health_checks() {
        use ContainerState as S;
        assert!(matches!(
            check(WaitFor::Healthy, &S::Running, Some(Health::Healthy)),
            Check::Done
        ));
        assert!(matches!(
            check(WaitFor::Healthy, &S::Running, Some(Health::Starting)),
            Check::Wait
        ));
        assert!(matches!(
            check(WaitFor::Healthy, &S::Running, Some(Health::Unhealthy)),
            Check::Failed(m) if m == "unhealthy"
        ));
        assert!(matches!(
            check(WaitFor::Healthy, &S::Exited(3), Some(Health::Starting)),
            Check::Failed(m) if m.contains("code 3")
        ));
        assert!(matches!(
            check(WaitFor::Healthy, &S::Running, None),
            Check::Failed(m) if m.contains("no healthcheck")
        ));
        assert!(matches!(
            check(WaitFor::Completed, &S::Exited(0), None),
            Check::Done
        ));
        assert!(matches!(
            check(WaitFor::Completed, &S::Exited(2), None),
            Check::Failed(m) if m == "exited with code 2"
        ));
        assert!(matches!(
            check(WaitFor::Completed, &S::Running, None),
            Check::Wait
        ));
        assert!(matches!(
            check(WaitFor::Running, &S::Running, None),
            Check::Done
        ));
        assert!(matches!(
            check(WaitFor::Running, &S::Created, None),
            Check::Failed(_)
        ));
    }

    #[test]
    fn healthcheck_none_is_no_healthcheck() {
        let mut spec = ServiceSpec::default();
        assert!(!has_healthcheck(&spec));
        spec.healthcheck = Some(Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        });
        assert!(!has_healthcheck(&spec));
        spec.healthcheck = Some(Healthcheck {
            test: vec!["CMD".into(), "true".into()],
            ..Default::default()
        });
        assert!(has_healthcheck(&spec));
    }

    #[test]
    fn event_text() {
        let e = ApplyEvent::Waiting {
            stack: "web".into(),
            service: "db".into(),
            container: "web-db-1".into(),
            until: WaitFor::Healthy,
            elapsed: Duration::from_millis(12_300),
        };
        assert_eq!(e.to_string(), "waiting for web/db to be healthy (12s)");
        assert_eq!(human_duration(Duration::from_secs(60)), "60s");
    }
}
