//! Container changes: create (start, health-gate, remove again if it never comes up), replace
//! (start-first and health-gated, the old one restored on failure), start, delete, and the
//! waits on container conditions.

use std::fmt;
use std::time::{Duration, Instant};

use super::{ApplyEvent, Driver, Exec, HostDriver, StepError};
use crate::docker::{DockerError, OLD_SUFFIX};
use crate::model::{ConfigChangeAction, ContainerState, Health, ServiceSpec, StackSpec};
use crate::plan::{ContainerPayload, Op, Reload, Wait, short_id};

/// The longest a health wait holds off its first look at a new container.
const FIRST_LOOK_MAX: Duration = Duration::from_secs(2);

/// Why a wait on a container ended without its condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WaitError {
    /// The container does not exist.
    Gone,
    /// It cannot reach the condition any more (exited, unhealthy, timed out).
    Failed(String),
    /// The Engine did not answer.
    Docker(DockerError),
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Gone => f.write_str("container not found"),
            WaitError::Failed(m) => f.write_str(m),
            WaitError::Docker(e) => write!(f, "{e}"),
        }
    }
}

/// A container to restore when a replacement fails.
struct Old<'s> {
    id: &'s str,
    name: &'s str,
    renamed: bool,
    was_running: bool,
}

fn service_err(stack: &str, service: &str, e: DockerError) -> StepError {
    StepError::Service {
        stack: stack.to_string(),
        service: service.to_string(),
        transient: e.is_transient(),
        message: e.to_string(),
    }
}

fn wait_err(stack: &str, service: &str, e: WaitError) -> StepError {
    match e {
        WaitError::Docker(e) => service_err(stack, service, e),
        other => StepError::Service {
            stack: stack.to_string(),
            service: service.to_string(),
            message: other.to_string(),
            transient: false,
        },
    }
}

fn inconsistent(p: &ContainerPayload) -> StepError {
    StepError::Service {
        stack: p.stack.clone(),
        service: p.service.clone(),
        message: "the change carries no service spec (a plan built by hand?)".into(),
        transient: false,
    }
}

impl<D: Driver, H: HostDriver> Exec<'_, D, H> {
    pub(super) async fn container(&self, op: Op, p: &ContainerPayload) -> Result<(), StepError> {
        let (stack, service) = (p.stack.as_str(), p.service.as_str());
        let d = self.driver;
        match op {
            Op::Delete => {
                let Some(cur) = &p.current else {
                    return Ok(());
                };
                let err = |e| service_err(stack, service, e);
                match d.stop(&cur.id, p.stop_grace_period).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(err(e)),
                }
                match d.remove(&cur.id).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(err(e)),
                }
                self.emit(ApplyEvent::Removed {
                    stack: stack.into(),
                    service: service.into(),
                    name: cur.name.clone(),
                });
                Ok(())
            }
            Op::Start => {
                let cur = p.current.as_ref().ok_or_else(|| inconsistent(p))?;
                d.start(&cur.id)
                    .await
                    .map_err(|e| service_err(stack, service, e))?;
                self.emit(ApplyEvent::Started {
                    stack: stack.into(),
                    service: service.into(),
                    name: cur.name.clone(),
                });
                Ok(())
            }
            Op::Create => {
                let (stack_spec, spec) = p.service_spec().ok_or_else(|| inconsistent(p))?;
                self.create(stack_spec, service, spec, p.number, &p.name)
                    .await
            }
            Op::Replace => {
                let (stack_spec, spec) = p.service_spec().ok_or_else(|| inconsistent(p))?;
                let cur = p.current.as_ref().ok_or_else(|| inconsistent(p))?;
                if let Some(h) = &p.handover {
                    return self
                        .replace_handover(stack_spec, service, spec, p.number, &p.name, &cur.id, h)
                        .await;
                }
                self.replace(
                    stack_spec, service, spec, p.number, &p.name, &cur.id, &cur.name,
                )
                .await
            }
            Op::Reload => {
                let cur = p.current.as_ref().ok_or_else(|| inconsistent(p))?;
                let reload = p.reload.as_ref().ok_or_else(|| inconsistent(p))?;
                self.reload(stack, service, &cur.id, &cur.name, reload)
                    .await
            }
            Op::Pull | Op::Update | Op::Stop => Err(StepError::Service {
                stack: stack.into(),
                service: service.into(),
                message: format!("a container cannot be {}ed", op.as_str()),
                transient: false,
            }),
        }
    }

    /// Signal the running container or run its reload command: its bind-mounted config folder
    /// already shows the new files. A failed command is a failed change; the container keeps
    /// running.
    async fn reload(
        &self,
        stack: &str,
        service: &str,
        id: &str,
        name: &str,
        reload: &Reload,
    ) -> Result<(), StepError> {
        let d = self.driver;
        let fail = |message: String| StepError::Service {
            stack: stack.into(),
            service: service.into(),
            message,
            transient: false,
        };
        match &reload.action {
            ConfigChangeAction::Signal(sig) => d
                .signal(id, sig)
                .await
                .map_err(|e| service_err(stack, service, e))?,
            ConfigChangeAction::Exec(cmd) => {
                let (code, output) = d
                    .exec(id, cmd)
                    .await
                    .map_err(|e| service_err(stack, service, e))?;
                if code != 0 {
                    return Err(fail(format!(
                        "reload command {cmd:?} exited with code {code}: {}",
                        output.trim()
                    )));
                }
            }
        }
        self.emit(ApplyEvent::Reloaded {
            stack: stack.into(),
            service: service.into(),
            name: name.into(),
        });
        Ok(())
    }

    /// Create, start, and wait until healthy (when it has a healthcheck). A new container that
    /// does not come up is removed again: left in place it would look converged to the next
    /// plan, and its failure would be forgotten.
    pub(super) async fn create(
        &self,
        stack: &StackSpec,
        service: &str,
        spec: &ServiceSpec,
        number: u32,
        name: &str,
    ) -> Result<(), StepError> {
        let d = self.driver;
        let st = stack.name.as_str();
        let err = |e| service_err(st, service, e);
        let id = d
            .create_container(stack, service, spec, number, name, &[])
            .await
            .map_err(err)?;
        let started = match d.start(&id).await.map_err(err) {
            Ok(()) => self
                .wait_ready(st, service, &id, spec)
                .await
                .map_err(|e| wait_err(st, service, e)),
            other => other,
        };
        if let Err(e) = started {
            if let Err(cleanup) = d.remove(&id).await {
                self.emit(ApplyEvent::Warning {
                    message: format!(
                        "{st}/{service}: could not remove the failed new container {name}: {cleanup}"
                    ),
                });
            }
            return Err(e);
        }
        self.emit(ApplyEvent::Created {
            stack: st.into(),
            service: service.into(),
            name: name.into(),
        });
        Ok(())
    }

    /// Stop old → rename it aside → create new with the real name → start → wait healthy (if
    /// it has a healthcheck) → remove old. When a step after the stop fails, the new container
    /// is removed and the old one renamed back and started again (if it was running).
    #[allow(clippy::too_many_arguments)]
    async fn replace(
        &self,
        stack_spec: &StackSpec,
        service: &str,
        spec: &ServiceSpec,
        number: u32,
        real_name: &str,
        old_id: &str,
        name: &str,
    ) -> Result<(), StepError> {
        let d = self.driver;
        let stack = stack_spec.name.as_str();
        self.emit(ApplyEvent::Replacing {
            stack: stack.into(),
            service: service.into(),
            name: real_name.into(),
        });
        let err = |e| service_err(stack, service, e);

        let (was_running, reuse, grace) = match d.inspect(old_id).await {
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
                return self
                    .create(stack_spec, service, spec, number, real_name)
                    .await;
            }
            Err(e) => return Err(err(e)),
        };
        let mut old = Old {
            id: old_id,
            name,
            renamed: false,
            was_running,
        };

        // 1. Stop the old container (with the grace period it was created with).
        if let Err(e) = d.stop(old_id, grace).await {
            return Err(self
                .restore(stack, service, &old, None, e.to_string())
                .await);
        }

        // 2. Rename it aside, so that the new one can take the real name.
        let mut aside = format!("{real_name}{OLD_SUFFIX}");
        if name != aside {
            let mut renamed = d.rename(old_id, &aside).await;
            if matches!(&renamed, Err(e) if e.is_conflict()) {
                // A leftover of an interrupted apply holds the name; the next plan removes it.
                aside = format!("{real_name}{OLD_SUFFIX}-{}", short_id(old_id));
                renamed = d.rename(old_id, &aside).await;
            }
            if let Err(e) = renamed {
                return Err(self
                    .restore(stack, service, &old, None, e.to_string())
                    .await);
            }
            old.renamed = true;
        }

        // 3. Create the new container under the real name.
        let new_id = match d
            .create_container(stack_spec, service, spec, number, real_name, &reuse)
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
        if let Err(e) = d.start(&new_id).await {
            return Err(self
                .restore(stack, service, &old, Some(&new_id), e.to_string())
                .await);
        }
        if let Err(e) = self.wait_ready(stack, service, &new_id, spec).await {
            return Err(self
                .restore(stack, service, &old, Some(&new_id), e.to_string())
                .await);
        }

        // 6. Remove the old one. The service is up: a failure here only leaves a stopped
        // `*-berth-old` container that the next plan removes.
        if let Err(e) = d.remove(old_id).await {
            self.emit(ApplyEvent::Warning {
                message: format!(
                    "{stack}/{service}: the old container {aside} could not be removed ({e}); the next apply removes it"
                ),
            });
        }
        self.emit(ApplyEvent::Replaced {
            stack: stack.into(),
            service: service.into(),
            name: real_name.into(),
        });
        Ok(())
    }

    /// Puts the old container back after a failed replacement and returns the error to report.
    async fn restore(
        &self,
        stack: &str,
        service: &str,
        old: &Old<'_>,
        new_id: Option<&str>,
        cause: String,
    ) -> StepError {
        let d = self.driver;
        let mut problems = Vec::new();
        if let Some(id) = new_id
            && let Err(e) = d.remove(id).await
        {
            problems.push(format!(
                "could not remove the new container {} ({e})",
                short_id(id)
            ));
        }
        let mut renamed_back = !old.renamed;
        if old.renamed {
            match d.rename(old.id, old.name).await {
                Ok(()) => renamed_back = true,
                Err(e) => problems.push(format!("could not rename it back to {} ({e})", old.name)),
            }
        }
        let mut started = false;
        if old.was_running {
            match d.start(old.id).await {
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
            stack: stack.into(),
            service: service.into(),
            name: old.name.into(),
            detail: what.clone(),
        });
        StepError::Service {
            stack: stack.into(),
            service: service.into(),
            message: format!("replacing {} failed: {cause}; {what}", old.name),
            transient: false,
        }
    }

    /// Waits for a container just started to be up: to pass its health check when it has one —
    /// declared in the Compose file or by its image's `HEALTHCHECK` (the Engine reports a
    /// health status for either) — else nothing more. A health check the Compose file disables
    /// (`test: [NONE]`) is not waited for.
    pub(super) async fn wait_ready(
        &self,
        stack: &str,
        service: &str,
        id: &str,
        spec: &ServiceSpec,
    ) -> Result<(), WaitError> {
        if has_healthcheck(spec) {
            return self.wait_healthy(stack, service, id, spec).await;
        }
        if healthcheck_disabled(spec) {
            return Ok(());
        }
        let info = match self.driver.inspect(id).await {
            Ok(i) => i,
            Err(e) if e.is_not_found() => return Err(WaitError::Gone),
            Err(e) => return Err(WaitError::Docker(e)),
        };
        match check(Wait::Ready, &info.state, info.health) {
            Check::Done => Ok(()),
            Check::Failed(why) => Err(WaitError::Failed(why)),
            // The image's health check, which the Compose file did not choose: it gets the
            // time it needs to decide (its start period, interval and retries), at least
            // --health-timeout. The first look comes after at most FIRST_LOOK_MAX.
            Check::Wait => {
                let timeout = info.health_budget.map_or(self.opts.health_timeout, |b| {
                    b.max(self.opts.health_timeout)
                });
                tokio::time::sleep(FIRST_LOOK_MAX).await;
                self.wait_within(stack, service, id, Wait::Ready, timeout)
                    .await
            }
        }
    }

    /// Waits for a container just started to pass its health check. Its first probe runs one
    /// `interval` after the start (Docker's default: 30 s), so polling before then only loads the
    /// Engine while other containers are still being created: the first look comes after the
    /// interval (at most 2 s, so an early exit is still noticed soon).
    pub(super) async fn wait_healthy(
        &self,
        stack: &str,
        service: &str,
        id: &str,
        spec: &ServiceSpec,
    ) -> Result<(), WaitError> {
        let interval = spec
            .healthcheck
            .as_ref()
            .and_then(|h| h.interval)
            .and_then(|n| u64::try_from(n).ok())
            .map_or(Duration::from_secs(30), Duration::from_nanos);
        tokio::time::sleep(interval.min(FIRST_LOOK_MAX)).await;
        self.wait_for(stack, service, id, Wait::Healthy).await
    }

    /// Polls `container` (ID or name) until it reaches `until`.
    pub(super) async fn wait_for(
        &self,
        stack: &str,
        service: &str,
        container: &str,
        until: Wait,
    ) -> Result<(), WaitError> {
        let timeout = match until {
            Wait::Completed => self.opts.completion_timeout,
            _ => self.opts.health_timeout,
        };
        self.wait_within(stack, service, container, until, timeout)
            .await
    }

    /// [`Self::wait_for`] with its own deadline.
    async fn wait_within(
        &self,
        stack: &str,
        service: &str,
        container: &str,
        until: Wait,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        let start = Instant::now();
        let mut next_event = Duration::ZERO;
        loop {
            let (state, health) = match self.driver.inspect_state(container).await {
                Ok(s) => s,
                Err(e) if e.is_not_found() => return Err(WaitError::Gone),
                Err(e) => return Err(WaitError::Docker(e)),
            };
            match check(until, &state, health) {
                Check::Done => return Ok(()),
                Check::Failed(why) => return Err(WaitError::Failed(why)),
                Check::Wait => {}
            }
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                let t = human_duration(timeout);
                return Err(WaitError::Failed(match until {
                    Wait::Healthy | Wait::Ready => format!("health check failed after {t}"),
                    Wait::Completed => format!("did not complete within {t}"),
                    Wait::Running | Wait::Applied => format!("not running after {t}"),
                }));
            }
            if elapsed >= next_event {
                self.emit(ApplyEvent::Waiting {
                    stack: stack.into(),
                    service: service.into(),
                    container: container.into(),
                    until,
                    elapsed,
                });
                next_event = elapsed + Duration::from_secs(5);
            }
            tokio::time::sleep(self.opts.poll_interval.min(timeout - elapsed)).await;
        }
    }
}

pub(super) enum Check {
    Done,
    Wait,
    Failed(String),
}

/// Whether a container in `state`/`health` has reached `until`, may still, or never will.
pub(super) fn check(until: Wait, state: &ContainerState, health: Option<Health>) -> Check {
    use ContainerState as S;
    match until {
        Wait::Running | Wait::Applied => match state {
            S::Running | S::Restarting | S::Paused | S::Exited(_) => Check::Done,
            other => Check::Failed(format!("is not running ({other})")),
        },
        Wait::Healthy => match (state, health) {
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
        Wait::Ready => match (state, health) {
            // A one-shot (a migration from the app's image) that finished is done, whatever
            // its image's health check last said.
            (S::Exited(0), _) => Check::Done,
            (S::Exited(code), Some(_)) => {
                Check::Failed(format!("exited (code {code}) before becoming healthy"))
            }
            (_, Some(Health::Healthy)) => Check::Done,
            (_, Some(Health::Unhealthy)) => Check::Failed("unhealthy".into()),
            (S::Dead | S::Removing | S::Created, Some(_)) => {
                Check::Failed(format!("is not running ({state})"))
            }
            (_, Some(Health::Starting)) => Check::Wait,
            // No health check: up is running (or done, for a one-shot).
            (_, None) => check(Wait::Running, state, None),
        },
        Wait::Completed => match state {
            S::Exited(0) => Check::Done,
            S::Exited(code) => Check::Failed(format!("exited with code {code}")),
            S::Running | S::Restarting | S::Paused => Check::Wait,
            S::Created => Check::Failed("was never started".into()),
            other => Check::Failed(format!("is {other}")),
        },
    }
}

/// A Compose file that turns the health check off (`test: [NONE]`, `disable: true`), the
/// image's included.
pub(super) fn healthcheck_disabled(spec: &ServiceSpec) -> bool {
    spec.healthcheck
        .as_ref()
        .is_some_and(|h| h.test.first().map(String::as_str) == Some("NONE"))
}

/// A healthcheck that is not disabled.
pub(super) fn has_healthcheck(spec: &ServiceSpec) -> bool {
    spec.healthcheck
        .as_ref()
        .is_some_and(|h| !h.test.is_empty() && h.test.first().map(String::as_str) != Some("NONE"))
}

pub(super) fn human_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
