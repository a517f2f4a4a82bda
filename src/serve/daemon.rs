//! The GitOps loop. Startup, poll, webhook and resync all push work onto one [`Queue`]; one task
//! takes it out and runs [`Daemon::reconcile_branch`] / [`Daemon::preview`], one at a time.
//!
//! ```text
//!  poll timer ──┐
//!  resync timer ┼─▶ Queue (coalescing) ─▶ loop ─▶ git: ref look-up, fetch if moved
//!  webhooks ────┘                                  load + rebase ─▶ observe ─▶ plan ─▶ apply per stack
//!                                                   └─▶ state file, metrics, write-back (async)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;

use super::config::{GitHubAuth, ServeConfig};
use super::http::{HttpState, Readiness};
use super::metrics::Metrics;
use super::queue::{Batch, Cause, PreviewWork, Queue, Work};
use super::report::{self, StackOutcome, Status};
use super::state::{Failure, Found, InProgress, Shared, StackRecord, StateStore};
use super::writeback::{Post, Writeback};
use crate::apply::{ApplyOptions, apply};
use crate::docker::Engine;
use crate::git::{Mirror, MirrorOptions};
use crate::model::{Desired, Observed};
use crate::plan::{Plan, PlanOptions, plan};

/// Why a reconcile did not complete. Transient failures are retried with backoff; permanent ones
/// are reported once per (commit, config) and not retried until something changes.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

impl ServeError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ServeError::Transient(_))
    }
}

fn classify<E: std::fmt::Display>(transient: bool) -> impl Fn(E) -> ServeError {
    move |e| {
        if transient {
            ServeError::Transient(e.to_string())
        } else {
            ServeError::Permanent(e.to_string())
        }
    }
}

/// Run `berth serve` until `shutdown` fires. Returns after the current reconcile finished.
pub async fn run(config: ServeConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)?;
    let store = StateStore::new(&config.state_dir);
    let (state, found) = store.load()?;
    let state = Arc::new(Shared::new(state, store));
    let queue = Arc::new(Queue::new());
    let metrics = Arc::new(Metrics::new());
    // Unready when reconciles have failed transiently for this long.
    let readiness = Arc::new(Readiness::new(Duration::from_secs(300)));

    let http_state = HttpState::new(
        queue.clone(),
        metrics.clone(),
        readiness.clone(),
        config.branch.clone(),
        config.webhook_secret.clone(),
        config.insecure_no_webhook_secret,
    )?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, "serving /hooks/github, /healthz, /readyz, /metrics");
    let mut http_shutdown = shutdown.clone();
    let http = tokio::spawn(super::http::serve(
        listener,
        super::http::router(http_state),
        async move {
            let _ = http_shutdown.wait_for(|s| *s).await;
        },
    ));

    let (writeback, writer) = match &config.github {
        Some(gh) => {
            let github = crate::github::GitHub::new(crate::github::GitHubOptions {
                api_url: gh.api_url.clone(),
                repo: gh.repo.clone(),
                auth: match &gh.auth {
                    GitHubAuth::Token(t) => crate::github::Auth::Token(t.clone()),
                    GitHubAuth::App {
                        app_id,
                        private_key_pem,
                    } => crate::github::Auth::App {
                        app_id: *app_id,
                        private_key_pem: private_key_pem.clone(),
                    },
                },
                timeout: Duration::from_secs(30),
            })?;
            let env: BTreeMap<String, String> = std::env::vars().collect();
            let mut secrets: Vec<&crate::model::Secret> = Vec::new();
            secrets.extend(config.webhook_secret.as_ref());
            secrets.extend(config.git_token.as_ref());
            if let GitHubAuth::App {
                private_key_pem, ..
            } = &gh.auth
            {
                secrets.push(private_key_pem);
            }
            let redactor = super::redact::Redactor::new(&env, &secrets);
            let (w, h) = Writeback::start(
                github,
                config.name.clone(),
                config.public_url.clone(),
                state.clone(),
                redactor,
            );
            (w, Some(h))
        }
        None => {
            tracing::info!("no GitHub settings: statuses and previews go to the log only");
            (Writeback::disabled(), None)
        }
    };

    let mut daemon = Daemon {
        worktree: config.state_dir.join("worktree"),
        config,
        state,
        queue: queue.clone(),
        metrics,
        readiness,
        writeback,
        mirror: None,
        engine: None,
        last_seen: None,
        retry: None,
        found,
        loaded: None,
        pending_posted: None,
        preview_attempts: BTreeMap::new(),
    };
    daemon.queue.push(Work::Branch {
        cause: Cause::Startup,
        commit: None,
    });
    let timers = spawn_timers(
        queue.clone(),
        daemon.config.poll_interval,
        daemon.config.resync_interval,
        shutdown.clone(),
    );
    daemon.run_loop(shutdown).await;
    timers.abort();
    drop(daemon);
    let _ = http.await;
    if let Some(w) = writer {
        // Let queued posts go out, within reason.
        let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
    }
    Ok(())
}

/// Poll and resync timers: they only push work; the loop decides what it costs.
fn spawn_timers(
    queue: Arc<Queue>,
    poll: Duration,
    resync: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut poll_tick = tokio::time::interval(poll);
        let mut resync_tick = tokio::time::interval(resync);
        poll_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Both fire at once on the first tick; startup already queued a reconcile.
        poll_tick.tick().await;
        resync_tick.tick().await;
        loop {
            tokio::select! {
                _ = poll_tick.tick() => queue.push(Work::Branch { cause: Cause::Poll, commit: None }),
                _ = resync_tick.tick() => queue.push(Work::Branch { cause: Cause::Resync, commit: None }),
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    })
}

struct Daemon {
    config: ServeConfig,
    /// The stable folder every applied commit is loaded from (bind mounts point into it).
    worktree: PathBuf,
    state: Arc<Shared>,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    writeback: Writeback,
    mirror: Option<Arc<Mirror>>,
    engine: Option<Engine>,
    /// The branch head the last reconcile looked at (an idle poll compares against it).
    last_seen: Option<String>,
    /// Transient-failure backoff in progress.
    retry: Option<Retry>,
    /// How the state file was found at startup (lost state is logged once the Engine answers).
    found: Found,
    /// The last commit loaded, and what it declares (commits are immutable).
    loaded: Option<(String, Desired, PathBuf)>,
    /// The commit whose `pending` statuses were posted: retries do not post them again.
    pending_posted: Option<String>,
    /// Pull request → failed preview attempts in a row.
    preview_attempts: BTreeMap<u64, u32>,
}

/// What a branch reconcile did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reconciled {
    /// The head had not moved and nothing asked for a re-check: one ref look-up.
    Idle,
    /// Planned against the Engine; nothing needed changing.
    Unchanged,
    /// Changes were applied.
    Applied,
}

struct Retry {
    delays: backon::ExponentialBackoff,
    timer: tokio::task::JoinHandle<()>,
}

impl Daemon {
    async fn run_loop(&mut self, mut shutdown: watch::Receiver<bool>) {
        if let Some(p) = &self.state.get().in_progress {
            tracing::warn!(
                commit = report::short(&p.commit),
                "the previous berth process stopped during an apply; re-planning converges it"
            );
        }
        loop {
            let batch: Batch = tokio::select! {
                b = self.queue.next() => b,
                _ = shutdown.wait_for(|s| *s) => {
                    tracing::info!("shutting down: no reconcile in progress");
                    return;
                }
            };
            // A reconcile, once started, runs to its end: shutdown is checked between batches.
            self.handle(batch).await;
            if *shutdown.borrow() {
                tracing::info!("shutting down after the reconcile in progress finished");
                return;
            }
        }
    }

    async fn handle(&mut self, batch: Batch) {
        if let Some((cause, commit)) = batch.branch {
            let started = Instant::now();
            let result = self.reconcile_branch(cause, commit).await;
            let label = match &result {
                Ok(Reconciled::Idle) => None,
                Ok(Reconciled::Applied) => Some("success"),
                Ok(Reconciled::Unchanged) => Some("noop"),
                Err(e) if e.is_transient() => Some("failure_transient"),
                Err(_) => Some("failure_permanent"),
            };
            // An idle check (one ref look-up) is not a reconcile.
            match label {
                Some(label) => {
                    self.metrics
                        .reconcile_finished(label, cause.as_str(), started.elapsed())
                }
                None => self.metrics.idle_check(),
            }
            match result {
                // An idle check says nothing about the Engine: readiness and a running backoff
                // are left as they are.
                Ok(Reconciled::Idle) => {}
                Ok(_) => {
                    self.readiness.reconcile_ok();
                    self.retry = None;
                }
                Err(ServeError::Transient(reason)) => {
                    // Retries come from the backoff timer; polls of the same head stay idle.
                    tracing::warn!(%reason, "reconcile failed transiently; will retry");
                    self.readiness.reconcile_transient_failure(&reason);
                    self.schedule_retry();
                }
                Err(ServeError::Permanent(reason)) => {
                    tracing::error!(%reason, "reconcile failed; not retried until something changes");
                    self.readiness.reconcile_permanent_failure(&reason);
                    self.retry = None;
                }
            }
        }
        for (number, work) in batch.previews {
            match self.preview(number, &work).await {
                Ok(()) => {
                    self.preview_attempts.remove(&number);
                }
                Err(e) => self.preview_failed(number, &work, &e),
            }
        }
    }

    /// A preview that failed is reported on its head (never left pending); a transient failure is
    /// retried through the queue with capped backoff (5s … 5min, at most 8 attempts).
    fn preview_failed(&mut self, number: u64, work: &PreviewWork, e: &ServeError) {
        let attempt = self.preview_attempts.entry(number).or_insert(0);
        *attempt += 1;
        let retry = e.is_transient() && *attempt <= 8;
        tracing::warn!(pr = number, error = %e, retry, "preview failed");
        let description = if retry {
            format!("preview failed, retrying: {e}")
        } else {
            format!("preview failed: {e}")
        };
        self.writeback.status(
            &work.head,
            Status {
                context: report::preview_context(&self.config.name),
                state: report::State::Error,
                description,
                markdown: None,
            },
        );
        if retry {
            let delay =
                Duration::from_secs(5 << (*attempt - 1).min(6)).min(Duration::from_secs(300));
            let queue = self.queue.clone();
            let again = Work::Preview {
                number,
                head: work.head.clone(),
                branch: work.branch.clone(),
            };
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                queue.push(again);
            });
        } else {
            self.preview_attempts.remove(&number);
        }
    }

    /// Capped exponential backoff (1s … 5min, jittered): the retry comes back through the queue.
    fn schedule_retry(&mut self) {
        let mut retry = self.retry.take().unwrap_or_else(|| Retry {
            delays: ExponentialBuilder::default()
                .with_min_delay(Duration::from_secs(1))
                .with_max_delay(Duration::from_secs(300))
                .without_max_times()
                .with_jitter()
                .build(),
            timer: tokio::spawn(async {}),
        });
        let delay = retry.delays.next().unwrap_or(Duration::from_secs(300));
        retry.timer.abort();
        let queue = self.queue.clone();
        retry.timer = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.push(Work::Branch {
                cause: Cause::Resync,
                commit: None,
            });
        });
        tracing::info!(retry_in = ?delay, "retry scheduled");
        self.retry = Some(retry);
    }

    async fn mirror(&mut self) -> Result<Arc<Mirror>, ServeError> {
        if let Some(m) = &self.mirror {
            return Ok(m.clone());
        }
        let dir = self.config.state_dir.join("mirror.git");
        let opts = MirrorOptions {
            url: self.config.repo.clone(),
            token: self.config.git_token.clone(),
            timeout: self.config.git_timeout,
        };
        let mirror = blocking(move || Mirror::open_or_clone(&dir, &opts)).await?;
        let mirror = Arc::new(mirror);
        self.readiness.set_cloned();
        self.mirror = Some(mirror.clone());
        Ok(mirror)
    }

    async fn engine(&mut self) -> Result<Engine, ServeError> {
        if let Some(e) = &self.engine {
            return Ok(e.clone());
        }
        let engine = Engine::connect()
            .await
            .map_err(|e| {
                if e.is_transient() {
                    ServeError::Transient(e.to_string())
                } else {
                    ServeError::Permanent(e.to_string())
                }
            })?
            .with_instance(&self.config.instance);
        self.engine = Some(engine.clone());
        Ok(engine)
    }

    /// Fetch `refname` when the remote moved; the remote's commit.
    async fn sync_ref(&mut self, refname: &str) -> Result<Option<String>, ServeError> {
        let mirror = self.mirror().await?;
        let name = refname.to_string();
        let m = mirror.clone();
        let remote = blocking(move || m.remote_ref(&name)).await?;
        let Some(remote) = remote else {
            return Ok(None);
        };
        let m = mirror.clone();
        let name = refname.to_string();
        let local = blocking(move || m.local_ref(&name)).await?;
        if local.as_deref() != Some(remote.as_str()) || !mirror.has_commit(&remote) {
            let started = Instant::now();
            let m = mirror.clone();
            let spec = vec![format!("+{refname}:{refname}")];
            blocking(move || m.fetch(&spec)).await?;
            self.metrics.git_fetch(started.elapsed());
            tracing::info!(%refname, commit = report::short(&remote), "fetched");
        }
        Ok(Some(remote))
    }

    /// Reconcile the tracked branch.
    async fn reconcile_branch(
        &mut self,
        cause: Cause,
        announced: Option<String>,
    ) -> Result<Reconciled, ServeError> {
        let refname = format!("refs/heads/{}", self.config.branch);
        let head = self.sync_ref(&refname).await?.ok_or_else(|| {
            ServeError::Permanent(format!(
                "branch {} does not exist in {}",
                self.config.branch,
                redact(&self.config.repo)
            ))
        })?;
        if let Some(a) = &announced {
            if *a != head {
                tracing::info!(
                    announced = report::short(a),
                    head = report::short(&head),
                    "the branch moved past the announced commit: reconciling the head"
                );
            }
        }
        // Idle: the head is what the last reconcile looked at, and nobody asked to re-check the
        // running state (a resync or a retry does). One ref look-up, nothing else — so a burst
        // of webhooks for commits already behind the head costs nothing.
        if matches!(cause, Cause::Poll | Cause::Webhook)
            && self.last_seen.as_deref() == Some(head.as_str())
        {
            return Ok(Reconciled::Idle);
        }
        self.last_seen = Some(head.clone());
        let fingerprint = self.config.fingerprint();
        let state = self.state.get();

        // A commit that failed permanently with this config is not retried by a poll or a
        // webhook (no redeploy loop); a resync retries only if the Engine's state moved.
        let failed_here = state
            .failed
            .as_ref()
            .filter(|f| f.commit == head && f.config == fingerprint)
            .cloned();
        if failed_here.is_some() && cause != Cause::Resync && cause != Cause::Startup {
            tracing::debug!(
                commit = report::short(&head),
                "failed before; waiting for a change"
            );
            return Ok(Reconciled::Idle);
        }

        // Force pushes are refused unless allowed.
        if let Some(applied) = &state.applied_commit {
            if *applied != head && !self.config.allow_non_fast_forward {
                let mirror = self.mirror().await?;
                let (a, h) = (applied.clone(), head.clone());
                let m = mirror.clone();
                let known = mirror.has_commit(applied);
                let fast_forward = !known || blocking(move || m.is_ancestor(&a, &h)).await?;
                if !fast_forward {
                    let reason = format!(
                        "refused: {} moved from {} to {} in a non-fast-forward way (force push); \
                         push a fix on top, or restart berth with --allow-non-fast-forward",
                        self.config.branch,
                        report::short(applied),
                        report::short(&head)
                    );
                    return Err(self.fail_commit(&head, &fingerprint, "", &reason, &[]));
                }
            }
        }

        let new_commit = state.applied_commit.as_deref() != Some(head.as_str());
        let (desired, export) = match self.load_commit(&head).await? {
            Ok(d) => d,
            Err(diags) => {
                let first = diags.first().cloned().unwrap_or_default();
                let reason = format!("invalid manifests: {first}");
                tracing::error!(
                    commit = report::short(&head),
                    "invalid manifests:\n{}",
                    diags.join("\n")
                );
                return Err(self.fail_commit(&head, &fingerprint, "", &reason, &diags));
            }
        };
        let engine = self.engine().await?;
        let observed = engine
            .observe(&desired)
            .await
            .map_err(|e| classify(e.is_transient())(e))?;
        if self.found != Found::Existing {
            let owned = observed
                .containers
                .iter()
                .filter(|c| c.owned_by(&self.config.instance))
                .count();
            if owned > 0 {
                tracing::warn!(
                    owned,
                    state = %self.config.state_dir.display(),
                    "berth's state was lost (no readable state.json) but the Engine holds containers it owns: re-deriving what it owns from their labels"
                );
            }
            self.found = Found::Existing;
        }
        let observed_fp = observed_fingerprint(&observed, &desired, &self.config.instance);
        if let Some(f) = &failed_here {
            if f.observed == observed_fp {
                tracing::debug!(
                    commit = report::short(&head),
                    "failed before and nothing changed since"
                );
                return Ok(Reconciled::Unchanged);
            }
        }
        let the_plan = plan(&desired, &observed, &self.plan_options());
        let by_stack = report::split_by_stack(&the_plan);
        let mut stacks: Vec<String> = desired.stacks.keys().cloned().collect();
        for s in by_stack.keys() {
            if !stacks.contains(s) && s != "*" {
                stacks.push(s.clone());
            }
        }

        if the_plan
            .errors
            .iter()
            .any(|e| matches!(e, crate::plan::PlanError::EmptyDesired { .. }))
        {
            let reason = the_plan.errors[0].to_string();
            return Err(self.fail_commit(&head, &fingerprint, &observed_fp, &reason, &[]));
        }

        if !the_plan.has_changes() && the_plan.errors.is_empty() {
            self.install_worktree(&export)?;
            let outcomes: BTreeMap<String, StackOutcome> = stacks
                .iter()
                .map(|s| (s.clone(), StackOutcome::UpToDate))
                .collect();
            self.post_outcomes(&head, &outcomes, &the_plan, &[]);
            self.record_success(&head);
            return Ok(Reconciled::Unchanged);
        }

        if cause == Cause::Resync && !new_commit {
            let repairs = the_plan.actions.len() as u64;
            self.metrics.drift_repaired(repairs);
            tracing::warn!(
                commit = report::short(&head),
                "drift: the running state differs from the applied commit; repairing:\n{}",
                crate::render::plan_text(&the_plan)
            );
        } else {
            tracing::info!(
                commit = report::short(&head),
                cause = cause.as_str(),
                "applying:\n{}",
                crate::render::plan_text(&the_plan)
            );
        }
        if new_commit && self.pending_posted.as_deref() != Some(head.as_str()) {
            self.pending_posted = Some(head.clone());
            let changing = stacks
                .iter()
                .filter(|st| by_stack.get(*st).is_some_and(Plan::has_changes));
            for stack in changing {
                self.writeback.status(
                    &head,
                    Status {
                        context: report::context(&self.config.name, Some(stack)),
                        state: report::State::Pending,
                        description: format!("applying {}", report::short(&head)),
                        markdown: None,
                    },
                );
            }
        }

        self.install_worktree(&export)?;
        self.state.update(|s| {
            s.in_progress = Some(InProgress {
                commit: head.clone(),
                started_at: unix_now(),
            })
        });
        let apply_opts = ApplyOptions {
            health_timeout: self.config.health_timeout,
            ..ApplyOptions::default()
        };
        let mut outcomes = BTreeMap::new();
        let mut log = Vec::new();
        let mut transient: Option<String> = None;
        let mut changed = false;
        for stack in &stacks {
            let Some(sub) = by_stack.get(stack) else {
                outcomes.insert(stack.clone(), StackOutcome::UpToDate);
                continue;
            };
            if let Some(e) = sub.errors.first() {
                outcomes.insert(
                    stack.clone(),
                    StackOutcome::Failed {
                        message: e.to_string(),
                    },
                );
                continue;
            }
            if !sub.has_changes() {
                outcomes.insert(stack.clone(), StackOutcome::UpToDate);
                continue;
            }
            if let Some(reason) = &transient {
                outcomes.insert(
                    stack.clone(),
                    StackOutcome::NotAttempted {
                        reason: reason.clone(),
                    },
                );
                continue;
            }
            let result = apply(&engine, &desired, sub, &apply_opts, &mut |event| {
                tracing::info!(stack = %stack, "{event}");
                log.push(format!("{stack}: {event}"));
            })
            .await;
            match result {
                Ok(_) => {
                    changed = true;
                    outcomes.insert(stack.clone(), report::planned_outcome(sub));
                }
                Err(e) => {
                    tracing::error!(stack = %stack, error = %e, "apply failed");
                    log.push(format!("{stack}: FAILED: {e}"));
                    if e.is_transient() {
                        transient = Some(e.to_string());
                    }
                    outcomes.insert(
                        stack.clone(),
                        StackOutcome::Failed {
                            message: e.to_string(),
                        },
                    );
                }
            }
        }
        // What runs now, for the state file and the failure fingerprint.
        let after = engine.observe(&desired).await.ok();
        self.state.update(|s| {
            s.in_progress = None;
            if let Some(after) = &after {
                for stack in &stacks {
                    if outcomes.get(stack).map(StackOutcome::state) == Some(report::State::Success)
                    {
                        let containers = after
                            .containers
                            .iter()
                            .filter(|c| {
                                c.owned_by(&self.config.instance) && c.stack() == Some(stack)
                            })
                            .map(|c| c.name.clone())
                            .collect();
                        s.stacks.insert(
                            stack.clone(),
                            StackRecord {
                                commit: head.clone(),
                                containers,
                            },
                        );
                    }
                }
            }
        });
        self.post_outcomes(&head, &outcomes, &the_plan, &log);
        let failures: Vec<String> = outcomes
            .iter()
            .filter(|(_, o)| o.state() != report::State::Success)
            .map(|(s, o)| format!("{s}: {}", o.description()))
            .collect();
        if failures.is_empty() {
            self.record_success(&head);
            return Ok(if changed {
                Reconciled::Applied
            } else {
                Reconciled::Unchanged
            });
        }
        let reason = failures.join("; ");
        if let Some(t) = transient {
            return Err(ServeError::Transient(t));
        }
        let fp = after
            .as_ref()
            .map(|a| observed_fingerprint(a, &desired, &self.config.instance))
            .unwrap_or_default();
        self.state.update(|s| {
            s.failed = Some(Failure {
                commit: head.clone(),
                config: fingerprint.clone(),
                observed: fp,
                reason: reason.clone(),
            })
        });
        Err(ServeError::Permanent(reason))
    }

    fn record_success(&self, head: &str) {
        self.metrics.set_last_applied(head);
        self.state.update(|s| {
            s.applied_commit = Some(head.to_string());
            s.failed = None;
            s.in_progress = None;
            for stack in s.stacks.values_mut() {
                stack.commit = head.to_string();
            }
        });
    }

    /// Record a permanent failure of a whole commit and post it.
    fn fail_commit(
        &self,
        head: &str,
        config: &str,
        observed: &str,
        reason: &str,
        details: &[String],
    ) -> ServeError {
        self.state.update(|s| {
            s.failed = Some(Failure {
                commit: head.to_string(),
                config: config.to_string(),
                observed: observed.to_string(),
                reason: reason.to_string(),
            })
        });
        let markdown = (!details.is_empty()).then(|| {
            report::markdown(
                &format!("berth could not apply {}", report::short(head)),
                reason,
                &format!("{}\n", details.join("\n")),
                &[],
            )
        });
        self.writeback.status(
            head,
            Status {
                context: report::context(&self.config.name, None),
                state: report::State::Failure,
                description: reason.to_string(),
                markdown,
            },
        );
        ServeError::Permanent(reason.to_string())
    }

    fn post_outcomes(
        &self,
        head: &str,
        outcomes: &BTreeMap<String, StackOutcome>,
        the_plan: &Plan,
        log: &[String],
    ) {
        let markdown = report::markdown(
            &format!("berth applied {}", report::short(head)),
            &the_plan.summary().to_string(),
            &crate::render::plan_text(the_plan),
            log,
        );
        for (stack, outcome) in outcomes {
            self.writeback.status(
                head,
                Status {
                    context: report::context(&self.config.name, Some(stack)),
                    state: outcome.state(),
                    description: outcome.description(),
                    markdown: Some(markdown.clone()),
                },
            );
        }
        let mut overall = report::overall(&self.config.name, head, outcomes);
        overall.markdown = Some(markdown);
        self.writeback.status(head, overall);
    }

    /// Export `commit` (once) and load it, rebased onto the stable worktree path.
    /// `Ok(Err(diagnostics))` when the manifests are invalid.
    async fn load_commit(
        &mut self,
        commit: &str,
    ) -> Result<Result<(Desired, PathBuf), Vec<String>>, ServeError> {
        // A commit's tree never changes: a resync of the same commit reuses what was loaded.
        if let Some((c, desired, export)) = &self.loaded {
            if c == commit {
                return Ok(Ok((desired.clone(), export.clone())));
            }
        }
        let loaded = self.load_commit_uncached(commit).await?;
        if let Ok((desired, export)) = &loaded {
            self.loaded = Some((commit.to_string(), desired.clone(), export.clone()));
        }
        Ok(loaded)
    }

    async fn load_commit_uncached(
        &mut self,
        commit: &str,
    ) -> Result<Result<(Desired, PathBuf), Vec<String>>, ServeError> {
        let export = self.export(commit, "trees").await?;
        Ok(self.load_export(&export).await?.map(|d| (d, export)))
    }

    /// Load the stacks of an exported tree, rebased onto the stable worktree.
    /// `Ok(Err(diagnostics))` when the manifests are invalid.
    async fn load_export(&self, export: &Path) -> Result<Result<Desired, Vec<String>>, ServeError> {
        let root = export.join(&self.config.path);
        let worktree_root = self.worktree.join(&self.config.path);
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let loaded = tokio::task::spawn_blocking(move || {
            crate::compose::load_dir(&root, &env).map(|d| (d, root))
        })
        .await
        .map_err(|e| ServeError::Permanent(format!("config loader crashed: {e}")))?;
        Ok(match loaded {
            Ok((mut desired, root)) => {
                let from = root.canonicalize().unwrap_or(root);
                desired.rebase(&from, &worktree_root);
                Ok(desired)
            }
            Err(diags) => Err(diags.0.iter().map(ToString::to_string).collect()),
        })
    }

    fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            instance: self.config.instance.clone(),
            allow_empty: self.config.allow_empty,
            prune_volumes: self.config.prune_volumes,
        }
    }

    /// `<state>/<kind>/<commit>`: the commit's files, exported once (via a temp folder and a
    /// rename, so a crash never leaves half a tree under the final name).
    async fn export(&mut self, commit: &str, kind: &str) -> Result<PathBuf, ServeError> {
        let dest = self.config.state_dir.join(kind).join(commit);
        if dest.is_dir() {
            return Ok(dest);
        }
        let mirror = self.mirror().await?;
        let tmp = self
            .config
            .state_dir
            .join(kind)
            .join(format!(".{commit}.partial"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.parent().unwrap_or(Path::new(".")))
            .map_err(|e| ServeError::Permanent(format!("cannot create {}: {e}", tmp.display())))?;
        let (c, t) = (commit.to_string(), tmp.clone());
        blocking(move || mirror.export_tree(&c, "", &t)).await?;
        std::fs::rename(&tmp, &dest)
            .map_err(|e| ServeError::Permanent(format!("cannot move {}: {e}", dest.display())))?;
        Ok(dest)
    }

    /// Make the stable worktree hold `export`'s files (synced in place: bind mounts of running
    /// containers keep working). Old exports beyond the last few are removed.
    fn install_worktree(&self, export: &Path) -> Result<(), ServeError> {
        let marker = self.worktree.join(super::worktree::MARKER);
        let commit = export.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if std::fs::read_to_string(&marker).ok().as_deref() == Some(commit) {
            return Ok(());
        }
        super::worktree::sync_tree(export, &self.worktree)
            .and_then(|()| std::fs::write(&marker, commit))
            .map_err(|e| {
                ServeError::Permanent(format!(
                    "cannot update the worktree {}: {e}",
                    self.worktree.display()
                ))
            })?;
        prune_exports(&self.config.state_dir.join("trees"), commit, 5);
        Ok(())
    }

    /// The commit to preview: GitHub's `refs/pull/<n>/head` (its newest head), else — on a git
    /// server without pull refs — the PR's head branch, but only while it points at the
    /// announced head (a fork's branch of the same name must not be mistaken for it).
    async fn fetch_pull(
        &mut self,
        number: u64,
        head: &str,
        branch: Option<&str>,
    ) -> Result<String, ServeError> {
        let pull_ref = format!("refs/pull/{number}/head");
        if let Some(c) = self.sync_ref(&pull_ref).await? {
            if c != head {
                tracing::info!(
                    pr = number,
                    announced = report::short(head),
                    head = report::short(&c),
                    "the pull request moved on: previewing its newest head"
                );
            }
            return Ok(c);
        }
        if let Some(branch) = branch {
            let branch_ref = format!("refs/heads/{branch}");
            if let Some(c) = self.sync_ref(&branch_ref).await? {
                if c == head {
                    return Ok(c);
                }
                return Err(ServeError::Permanent(format!(
                    "{pull_ref} does not exist and {branch_ref} is at {}, not the announced head {}",
                    report::short(&c),
                    report::short(head)
                )));
            }
        }
        Err(ServeError::Permanent(format!(
            "neither {pull_ref} nor the head branch exists on the remote"
        )))
    }

    /// Plan a pull request's head against what runs now; post the result. Nothing is applied.
    async fn preview(&mut self, number: u64, work: &PreviewWork) -> Result<(), ServeError> {
        let (head, closed) = (work.head.as_str(), work.closed);
        let context = report::preview_context(&self.config.name);
        if closed {
            let last = self.state.get().previews.get(&number).cloned();
            let head = last.map(|l| l.head).unwrap_or_else(|| head.to_string());
            self.writeback.status(
                &head,
                Status {
                    context,
                    state: report::State::Success,
                    description: format!(
                        "pull request #{number} closed; nothing was applied from it"
                    ),
                    markdown: None,
                },
            );
            self.state.update(|s| {
                s.previews.remove(&number);
            });
            return Ok(());
        }
        self.writeback.status(
            head,
            Status {
                context: context.clone(),
                state: report::State::Pending,
                description: format!("planning #{number} at {}", report::short(head)),
                markdown: None,
            },
        );
        self.state
            .update(|s| s.previews.entry(number).or_default().head = head.to_string());
        let commit = self
            .fetch_pull(number, head, work.branch.as_deref())
            .await?;
        let export = self.export(&commit, "previews").await?;
        let loaded = self.load_export(&export).await?;
        let title = format!("berth preview of #{number} at {}", report::short(&commit));
        let (status, body) = match loaded {
            Err(lines) => {
                let first = lines.first().cloned().unwrap_or_default();
                (
                    Status {
                        context: context.clone(),
                        state: report::State::Failure,
                        description: format!("invalid: {first}"),
                        markdown: None,
                    },
                    report::markdown(
                        &title,
                        &format!(
                            "{} problem(s) in the manifests; nothing would be applied.",
                            lines.len()
                        ),
                        &format!("{}\n", lines.join("\n")),
                        &[],
                    ),
                )
            }
            Ok(desired) => {
                let engine = self.engine().await?;
                let observed = engine
                    .observe(&desired)
                    .await
                    .map_err(|e| classify(e.is_transient())(e))?;
                let p = plan(&desired, &observed, &self.plan_options());
                let text = crate::render::plan_text(&p);
                let summary = if p.errors.is_empty() {
                    if p.has_changes() {
                        format!("would apply: {}", p.summary())
                    } else {
                        "no changes".to_string()
                    }
                } else {
                    format!("cannot be applied: {}", p.errors[0])
                };
                let state = if p.errors.is_empty() {
                    report::State::Success
                } else {
                    report::State::Failure
                };
                (
                    Status {
                        context: context.clone(),
                        state,
                        description: summary.clone(),
                        markdown: None,
                    },
                    report::markdown(
                        &title,
                        &format!("{summary}. Nothing is applied from a pull request."),
                        &text,
                        &[],
                    ),
                )
            }
        };
        // A PR is untrusted: hide every value of berth's environment it may have interpolated.
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let strict = super::redact::Redactor::every_value(&env);
        let body = strict.scrub(&body);
        let status = Status {
            description: strict.scrub(&status.description),
            markdown: Some(body.clone()),
            ..status
        };
        self.writeback.status(&commit, status);
        self.writeback.post(Post::Comment { pr: number, body });
        prune_exports(&self.config.state_dir.join("previews"), &commit, 10);
        Ok(())
    }
}

/// Run blocking git work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::git::GitError> + Send + 'static,
) -> Result<T, ServeError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(e.is_transient())(e)),
        Err(e) => Err(ServeError::Permanent(format!("git task crashed: {e}"))),
    }
}

/// What this config's reconcile depends on, in one string: this instance's containers (ids,
/// states, images) and the image IDs the desired references resolve to. Other instances'
/// containers and unrelated images do not count, so their churn cannot re-trigger a failed
/// commit.
fn observed_fingerprint(o: &Observed, desired: &Desired, instance: &str) -> String {
    let mut parts: Vec<String> = o
        .containers
        .iter()
        .filter(|c| c.owned_by(instance))
        .map(|c| format!("{} {} {} {:?}", c.name, c.id, c.image_id, c.state))
        .collect();
    parts.sort();
    let images: std::collections::BTreeSet<String> = desired
        .stacks
        .values()
        .flat_map(|s| s.services.values())
        .map(|s| crate::model::normalize_image_ref(&s.image))
        .collect();
    for image in images {
        let id = o.images.get(&image).map(String::as_str).unwrap_or("-");
        parts.push(format!("{image}={id}"));
    }
    crate::model::sha256_hex(parts.join("\n").as_bytes())
}

/// Keep the `keep` most recent exports (and `current`) in `dir`.
fn prune_exports(dir: &Path, current: &str, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str() != Some(current))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    dirs.sort();
    let excess = dirs.len().saturating_sub(keep.saturating_sub(1));
    for (_, path) in dirs.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(path);
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A URL without credentials, for logs and statuses.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host))
                if !rest[..rest.find('/').unwrap_or(rest.len())].is_empty()
                    && rest.find('@') < rest.find('/') =>
            {
                format!("{scheme}://***@{host}")
            }
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_from_urls() {
        assert_eq!(
            redact("https://x-access-token:ghs_abc@github.com/a/b.git"),
            "https://***@github.com/a/b.git"
        );
        assert_eq!(redact("file:///srv/repo.git"), "file:///srv/repo.git");
        assert_eq!(redact("git://127.0.0.1/repo"), "git://127.0.0.1/repo");
    }
}
