//! serve's job scheduler: one task that sleeps until the next run is due, the table changes
//! ([`JobsHandle::poke`], after an apply recorded a new table) or a minute passed (a table
//! recorded by `berth apply` from the CLI), then asks [`crate::jobs::scheduler::tick`] what is
//! due and runs each due job in its own task. Outcomes go to the state file and the metrics.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};

use super::metrics::Metrics;
use crate::docker::{Engine, job_container_name};
use crate::jobs::scheduler::{self, Action};
use crate::jobs::state::{self, Owner, RunRecord};
use crate::jobs::{RunContext, execute};
use crate::model::jobs::{JobSpec, Task};

/// The longest sleep: a table recorded by another process is seen within this.
const RECHECK: Duration = Duration::from_secs(60);

/// What the apply path holds: poke it after recording a new job table.
#[derive(Clone, Default)]
pub struct JobsHandle {
    poke: Arc<Notify>,
}

impl JobsHandle {
    /// The table changed: decide again now (a schedule change takes effect at once).
    pub fn poke(&self) {
        self.poke.notify_one();
    }
}

type Stops = Arc<Mutex<BTreeMap<u64, Arc<Notify>>>>;

/// Starts the scheduler; it ends when `shutdown` turns true (runs going on are left to be
/// recorded Interrupted by the next start).
pub fn spawn(
    state_dir: PathBuf,
    instance: String,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> (JobsHandle, tokio::task::JoinHandle<()>) {
    let handle = JobsHandle::default();
    let poke = handle.poke.clone();
    let task = tokio::spawn(run(state_dir, instance, metrics, poke, shutdown));
    (handle, task)
}

async fn run(
    state_dir: PathBuf,
    instance: String,
    metrics: Arc<Metrics>,
    poke: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let me = Owner::current();
    let stops: Stops = Arc::default();
    let mut engine: Option<Engine> = None;
    seed_metrics(&state_dir, &instance, &metrics);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = Utc::now();
        let ticked = state::update(&state_dir, &instance, |st| {
            let tick = scheduler::tick(st, now, &me, &|o| o.is_alive());
            let specs: BTreeMap<String, JobSpec> = st.table.clone();
            (tick, specs, st.commit.clone())
        });
        let mut wake = tokio::time::Instant::now() + RECHECK;
        match ticked {
            Err(e) => tracing::error!("jobs: {e}"),
            Ok((tick, specs, commit)) => {
                for (job, e) in &tick.errors {
                    tracing::error!(job = %job, "jobs: {e}");
                }
                for (job, record) in &tick.recorded {
                    note_record(&metrics, job, record, false);
                    let container =
                        matches!(specs.get(job).map(|s| &s.task), Some(Task::Container(_)));
                    if record.outcome.result == crate::model::jobs::RunResult::Interrupted
                        && container
                    {
                        // Its one-off container outlived the berth that ran it.
                        if let Some(e) = connect(&mut engine, &instance).await {
                            let _ = e
                                .remove(&job_container_name(&instance, job, record.id))
                                .await;
                        }
                    }
                }
                for action in tick.actions {
                    match action {
                        Action::Stop {
                            job,
                            run,
                            owner,
                            exec_pid,
                        } => {
                            let stop = stops
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get(&run)
                                .cloned();
                            match (stop, specs.get(&job)) {
                                (Some(n), _) if owner == me => n.notify_one(),
                                (_, Some(spec)) => {
                                    if let Some(e) = connect(&mut engine, &instance).await {
                                        crate::jobs::run::stop_foreign(&e, spec, run, exec_pid)
                                            .await;
                                    }
                                }
                                (_, None) => {}
                            }
                        }
                        Action::Start {
                            job,
                            run,
                            trigger,
                            slot,
                        } => {
                            let Some(spec) = specs.get(&job).cloned() else {
                                continue;
                            };
                            let Some(engine) = connect(&mut engine, &instance).await else {
                                // Recorded failed: the Engine is not there.
                                let outcome = crate::jobs::run::unreachable_outcome();
                                let _ = state::update(&state_dir, &instance, |st| {
                                    st.finish(&job, run, Utc::now(), 0, outcome)
                                });
                                continue;
                            };
                            tracing::info!(job = %job, run, trigger = ?trigger, slot = ?slot, "job started");
                            metrics
                                .job_started(&job, Utc::now().timestamp_millis() as f64 / 1000.0);
                            let stop = Arc::new(Notify::new());
                            stops
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(run, stop.clone());
                            let (dir, inst, m, st, commit) = (
                                state_dir.clone(),
                                instance.clone(),
                                metrics.clone(),
                                stops.clone(),
                                commit.clone(),
                            );
                            tokio::spawn(async move {
                                let cx = RunContext {
                                    engine: &engine,
                                    run,
                                    commit: commit.as_deref(),
                                    stop: &stop,
                                    state_dir: &dir,
                                    instance: &inst,
                                };
                                match execute(&spec, &cx).await {
                                    Ok(record) => note_record(&m, &spec.name, &record, true),
                                    Err(e) => tracing::error!(job = %spec.name, run, "jobs: {e}"),
                                }
                                st.lock().unwrap_or_else(|e| e.into_inner()).remove(&run);
                            });
                        }
                    }
                }
                if let Some(at) = tick.wake {
                    let wait = (at - Utc::now()).to_std().unwrap_or_default();
                    wake = wake.min(tokio::time::Instant::now() + wait);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = poke.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn connect(engine: &mut Option<Engine>, instance: &str) -> Option<Engine> {
    if engine.is_none() {
        match Engine::connect().await {
            Ok(e) => *engine = Some(e.with_instance(instance)),
            Err(e) => tracing::error!("jobs: {e}"),
        }
    }
    engine.clone()
}

fn note_record(metrics: &Metrics, job: &str, r: &RunRecord, ran: bool) {
    let ended = r.ended.timestamp_millis() as f64 / 1000.0;
    let duration = ran.then(|| r.duration().num_milliseconds() as f64 / 1000.0);
    metrics.job_finished(job, r.outcome.result.as_str(), ended, duration);
    let reason = r.outcome.reason.as_deref().unwrap_or("");
    if r.outcome.result.is_success() {
        tracing::info!(job = %job, run = r.id, "job succeeded");
    } else {
        tracing::warn!(job = %job, run = r.id, result = r.outcome.result.as_str(), "job {}: {reason}", r.outcome.result.as_str());
    }
}

/// The last success, start and duration from the history: a restart does not reset them.
fn seed_metrics(state_dir: &std::path::Path, instance: &str, metrics: &Metrics) {
    let Ok(st) = state::load(state_dir, instance) else {
        return;
    };
    for (job, js) in &st.jobs {
        if let Some(r) = js.last_success() {
            metrics.job_success(job, r.ended.timestamp_millis() as f64 / 1000.0);
        }
        if let Some(r) = js.history.iter().rev().find(|r| r.attempts > 0) {
            metrics.job_started(job, r.started.timestamp_millis() as f64 / 1000.0);
        }
    }
}
