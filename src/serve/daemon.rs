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

use tokio::sync::watch;

use super::config::{GitHubAuth, ServeConfig};
pub use super::error::ServeError;
use super::http::{HttpState, Readiness};
use super::metrics::Metrics;
use super::queue::{Batch, Cause, PreviewWork, Queue, Work};
use super::report::{self, Status};
use super::state::{Found, Shared, StateStore};
use super::writeback::Writeback;
use crate::docker::Engine;
use crate::git::{Mirror, MirrorOptions};
use crate::model::{Desired, Observed};
use crate::plan::PlanOptions;

/// Run `berth serve` until `shutdown` fires. Returns after the current reconcile finished.
pub async fn run(config: ServeConfig, shutdown: watch::Receiver<bool>) -> Result<(), ServeError> {
    std::fs::create_dir_all(&config.state_dir).map_err(ServeError::io(
        "cannot create the state folder",
        &config.state_dir,
    ))?;
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
    let listener = super::server::bind(config.listen)?;
    let io = |what| ServeError::io(what, config.state_dir.clone());
    listener
        .set_nonblocking(true)
        .map_err(io("cannot set up the listening socket"))?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(io("cannot set up the listening socket"))?;
    let local = listener
        .local_addr()
        .map_err(io("cannot set up the listening socket"))?;
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

    let (jobs, jobs_task) = super::jobs::spawn(
        config.state_dir.clone(),
        config.instance.clone(),
        super::jobs::Reporter {
            writeback: writeback.clone(),
            name: config.name.clone(),
        },
        metrics.clone(),
        shutdown.clone(),
    );
    let mut daemon = Daemon {
        jobs,
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
        preview_retries: BTreeMap::new(),
        last_permanent: None,
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
    // systemd (`Type=notify`): ready once bound and the startup reconcile is queued (not after
    // it: that can take minutes); STOPPING=1 as soon as shutdown begins; watchdog pings.
    let watchdog = super::systemd::Watchdog::start(http.abort_handle(), shutdown.clone());
    let mut stop_signal = shutdown.clone();
    let stopping = tokio::spawn(async move {
        if stop_signal.wait_for(|s| *s).await.is_ok() {
            super::systemd::stopping();
        }
    });
    super::systemd::ready(local);
    daemon.run_loop(shutdown).await;
    drop(watchdog);
    stopping.abort();
    timers.abort();
    let _ = jobs_task.await;
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

pub(super) struct Daemon {
    pub(super) config: ServeConfig,
    /// The job scheduler: poke it after recording a new job table.
    pub(super) jobs: super::jobs::JobsHandle,
    /// The stable folder every applied commit is loaded from (bind mounts point into it).
    pub(super) worktree: PathBuf,
    pub(super) state: Arc<Shared>,
    pub(super) queue: Arc<Queue>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) readiness: Arc<Readiness>,
    pub(super) writeback: Writeback,
    pub(super) mirror: Option<Arc<Mirror>>,
    pub(super) engine: Option<Engine>,
    /// The branch head the last reconcile looked at (an idle poll compares against it).
    pub(super) last_seen: Option<String>,
    /// Transient-failure backoff in progress.
    pub(super) retry: Option<Retry>,
    /// How the state file was found at startup (lost state is logged once the Engine answers).
    pub(super) found: Found,
    /// The last commit loaded, and what it declares (commits are immutable).
    pub(super) loaded: Option<(String, Desired, PathBuf)>,
    /// The commit whose `pending` statuses were posted: retries do not post them again.
    pub(super) pending_posted: Option<String>,
    /// Pull request → the backoff of its failed previews in a row (gone once one succeeds).
    pub(super) preview_retries: BTreeMap<u64, backon::ExponentialBackoff>,
    /// The permanent failure last logged, with the head it was met at: the same one again
    /// (the next poll finds the repository still missing) is not logged again; a new commit
    /// failing the same way is.
    pub(super) last_permanent: Option<(Option<String>, String)>,
}

/// What a branch reconcile did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reconciled {
    /// The head had not moved and nothing asked for a re-check: one ref look-up.
    Idle,
    /// Planned against the Engine; nothing needed changing.
    Unchanged,
    /// Changes were applied.
    Applied,
}

pub(super) struct Retry {
    delays: backon::ExponentialBackoff,
    timer: tokio::task::JoinHandle<()>,
    /// Failed attempts so far.
    attempts: u32,
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
                    self.last_permanent = None;
                    // The reconcile may have recorded a new job table: decide again now.
                    self.jobs.poke();
                }
                Err(e) if e.is_transient() => {
                    let reason = e.to_string();
                    // Retries come from the backoff timer; polls of the same head stay idle.
                    self.readiness.reconcile_transient_failure(&reason);
                    self.schedule_retry(&reason);
                    self.last_permanent = None;
                }
                Err(e) => {
                    let reason = e.to_string();
                    // Logged once: the same failure found again (a poll that still finds the
                    // repository missing) is not news. A new commit, a config change, or a
                    // resync that finds the Engine changed tries again; so does the next poll
                    // while no commit could be read at all.
                    let key = (self.last_seen.clone(), reason.clone());
                    if self.last_permanent.as_ref() == Some(&key) {
                        tracing::debug!(%reason, "reconcile failed again, the same way");
                    } else {
                        tracing::error!(
                            %reason,
                            "reconcile failed permanently (logged once; tried again on a new commit, a config change, or a changed Engine)"
                        );
                    }
                    self.last_permanent = Some(key);
                    self.readiness.reconcile_permanent_failure(&reason);
                    self.retry = None;
                }
            }
        }
        for (number, work) in batch.previews {
            match self.preview(number, &work).await {
                Ok(()) => {
                    self.preview_retries.remove(&number);
                }
                Err(e) => self.preview_failed(number, &work, &e),
            }
        }
    }

    /// A preview that failed is reported on its head (never left pending); a transient failure is
    /// retried through the queue with capped backoff (5s … 5min, at most 8 attempts).
    fn preview_failed(&mut self, number: u64, work: &PreviewWork, e: &ServeError) {
        let delays = self
            .preview_retries
            .entry(number)
            .or_insert_with(super::retry::preview);
        let delay = if e.is_transient() {
            delays.next()
        } else {
            None
        };
        let retry = delay.is_some();
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
        if let Some(delay) = delay {
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
            self.preview_retries.remove(&number);
        }
    }

    /// Capped exponential backoff (1s … 5min, jittered): the retry comes back through the queue.
    /// One log line per failed attempt: the reason and when the next one comes.
    fn schedule_retry(&mut self, reason: &str) {
        let mut retry = self.retry.take().unwrap_or_else(|| Retry {
            delays: super::retry::reconcile(),
            timer: tokio::spawn(async {}),
            attempts: 0,
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
        retry.attempts += 1;
        tracing::warn!(
            retry_in = ?delay,
            attempt = retry.attempts,
            %reason,
            "reconcile failed transiently; retry scheduled"
        );
        self.retry = Some(retry);
    }

    pub(super) async fn mirror(&mut self) -> Result<Arc<Mirror>, ServeError> {
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

    pub(super) async fn engine(&mut self) -> Result<Engine, ServeError> {
        if let Some(e) = &self.engine {
            return Ok(e.clone());
        }
        let engine = Engine::connect()
            .await?
            .with_instance(&self.config.instance);
        self.engine = Some(engine.clone());
        Ok(engine)
    }

    /// Fetch `refname` when the remote moved; the remote's commit.
    pub(super) async fn sync_ref(&mut self, refname: &str) -> Result<Option<String>, ServeError> {
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

    /// Export `commit` (once) and load it, rebased onto the stable worktree path.
    /// `Ok(Err(diagnostics))` when the manifests are invalid.
    pub(super) async fn load_commit(
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

    pub(super) async fn load_commit_uncached(
        &mut self,
        commit: &str,
    ) -> Result<Result<(Desired, PathBuf), Vec<String>>, ServeError> {
        let export = self.export(commit, "trees").await?;
        Ok(self.load_export(&export).await?.map(|d| (d, export)))
    }

    /// Load the stacks of an exported tree, rebased onto the stable worktree.
    /// `Ok(Err(diagnostics))` when the manifests are invalid.
    pub(super) async fn load_export(
        &self,
        export: &Path,
    ) -> Result<Result<Desired, Vec<String>>, ServeError> {
        let root = export.join(&self.config.path);
        let worktree_root = self.worktree.join(&self.config.path);
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let loaded = tokio::task::spawn_blocking(move || {
            crate::compose::load_dir(&root, &env).map(|d| (d, root))
        })
        .await
        .map_err(|e| ServeError::Task {
            what: "the config loader",
            detail: e.to_string(),
        })?;
        Ok(match loaded {
            Ok((mut desired, root)) => {
                // Accepted but not applied (`develop:`, deprecated forms): said once per
                // commit (loads are cached per commit), as the CLI prints them.
                for note in desired.notes() {
                    tracing::info!("note: {note}");
                }
                let from = root.canonicalize().unwrap_or(root);
                desired.rebase(&from, &worktree_root);
                Ok(desired)
            }
            Err(diags) => Err(diags.0.iter().map(ToString::to_string).collect()),
        })
    }

    pub(super) fn plan_options(&self) -> PlanOptions {
        crate::pipeline::plan_options(
            &self.config.instance,
            self.config.allow_empty,
            self.config.prune_volumes,
        )
    }

    /// `<state>/<kind>/<commit>`: the commit's files, exported once (via a temp folder and a
    /// rename, so a crash never leaves half a tree under the final name).
    pub(super) async fn export(&mut self, commit: &str, kind: &str) -> Result<PathBuf, ServeError> {
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
            .map_err(ServeError::io("cannot create", &tmp))?;
        let (c, t) = (commit.to_string(), tmp.clone());
        blocking(move || mirror.export_tree(&c, "", &t)).await?;
        std::fs::rename(&tmp, &dest).map_err(ServeError::io("cannot move the export to", &dest))?;
        Ok(dest)
    }
}

/// Run blocking git work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::git::GitError> + Send + 'static,
) -> Result<T, ServeError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(ServeError::Task {
            what: "a git task",
            detail: e.to_string(),
        }),
    }
}

/// What this config's reconcile depends on, in one string: this instance's containers (ids,
/// states, images) and the image IDs the desired references resolve to. Other instances'
/// containers and unrelated images do not count, so their churn cannot re-trigger a failed
/// commit.
pub(super) fn observed_fingerprint(o: &Observed, desired: &Desired, instance: &str) -> String {
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
    // The host settings as they are: a failed unit or file is tried again once someone
    // changed the host (or the commit), not before.
    let h = &o.host;
    parts.push(format!(
        "host {:?} {:?} {:?} {:?}",
        h.paths, h.sysctls, h.units, h.inventory
    ));
    crate::model::sha256_hex(parts.join("\n").as_bytes())
}

/// Keep the `keep` most recent exports (and `current`) in `dir`.
pub(super) fn prune_exports(dir: &Path, current: &str, keep: usize) {
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

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
