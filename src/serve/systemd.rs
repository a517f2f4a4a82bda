//! The service manager's side of `berth serve` (`Type=notify` in `dist/berth.service`):
//! `READY=1` once the listener is bound and the startup reconcile is queued, `STOPPING=1` when
//! shutdown begins, and `WATCHDOG=1` pings. Every call is a no-op without `NOTIFY_SOCKET`.
//!
//! What the watchdog proves: a task on the async runtime pings at half of `WATCHDOG_USEC` while
//! the HTTP edge's task is alive, until the loop ends (once shutdown has begun the edge closes
//! on purpose, and the pings go on while the reconcile in progress finishes). A wedged runtime
//! (every worker thread blocked) or a dead HTTP edge stops the pings, and systemd restarts berth. It deliberately does
//! not time reconciles: an apply that waits for health checks may take minutes, each of its steps
//! has its own timeout (git, Engine requests, health waits), and killing berth mid-apply would
//! cost more than it saves. A panic of the loop ends the process itself.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

/// Tell systemd that serve is up (bound, startup reconcile queued).
pub(super) fn ready(listen: std::net::SocketAddr) {
    let status = format!("listening on {listen}");
    notify(
        "READY=1",
        &[NotifyState::Ready, NotifyState::Status(&status)],
    );
}

/// Tell systemd that shutdown has begun (the reconcile in progress still finishes).
pub(super) fn stopping() {
    notify(
        "STOPPING=1",
        &[
            NotifyState::Stopping,
            NotifyState::Status("finishing the reconcile in progress"),
        ],
    );
}

fn notify(what: &str, states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        // Not fatal for berth; systemd acts on the missing message (start timeout, watchdog).
        tracing::warn!(error = %e, "cannot notify systemd ({what})");
    }
}

/// The watchdog pinger; stops when dropped (at the end of the loop).
pub(super) struct Watchdog {
    task: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Start pinging at half the watchdog period while `edge` (the HTTP server's task) runs or
    /// `shutdown` has begun. Does nothing when systemd set no watchdog for this process.
    pub(super) fn start(edge: AbortHandle, shutdown: watch::Receiver<bool>) -> Watchdog {
        let Some(period) = sd_notify::watchdog_enabled() else {
            return Watchdog { task: None };
        };
        let every = (period / 2).max(Duration::from_millis(100));
        tracing::info!(
            period_ms = period.as_millis() as u64,
            "systemd watchdog enabled: pinging every half period"
        );
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if edge.is_finished() && !*shutdown.borrow() {
                    tracing::error!("the HTTP endpoint stopped: no more watchdog pings");
                    return;
                }
                notify("WATCHDOG=1", &[NotifyState::Watchdog]);
            }
        });
        Watchdog { task: Some(task) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
