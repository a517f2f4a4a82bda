//! berth's HTTP server: GitHub webhooks in, health and metrics out.
//!
//! - `POST /hooks/github`: at most [`MAX_WEBHOOKS_IN_FLIGHT`] at once (else 503), size limit,
//!   then signature, then de-duplication, then
//!   [`webhook::route`]; work goes to the [`Queue`] and the answer (202) leaves at once — the
//!   reconcile happens later, in the loop.
//! - `GET /healthz`: the process answers.
//! - `GET /readyz`: the repository is cloned and reconciles are not failing transiently for long.
//! - `GET /metrics`: [`Metrics`] as OpenMetrics text.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tracing::{info, warn};

use super::config;
use super::metrics::{self, Metrics};
use super::queue::Queue;
use super::server;
use super::webhook::{self, Decision};
use crate::model::Secret;

/// Default `max_body`: GitHub caps payloads at 25 MB but pushes and pull requests are far
/// smaller; anything bigger is refused unread.
pub const DEFAULT_MAX_BODY: usize = 5 * 1024 * 1024;
/// Webhook requests with a large body ([`SMALL_BODY`]) read and handled at once; more get 503
/// at once. With [`DEFAULT_MAX_BODY`] this bounds the memory unauthenticated senders can make
/// berth hold for bodies: 80 MiB, plus at most [`SMALL_BODY`] per open connection.
pub const MAX_WEBHOOKS_IN_FLIGHT: usize = 16;
/// A webhook body of at most this many bytes (by `Content-Length`) needs no permit.
pub const SMALL_BODY: u64 = 64 * 1024;
/// How many delivery ids are remembered for de-duplication.
pub const DELIVERY_MEMORY: usize = 4096;
/// How long reconciles may keep failing transiently before `/readyz` says 503.
pub const DEFAULT_UNREADY_AFTER: Duration = Duration::from_secs(5 * 60);

/// The server cannot be configured like this.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no webhook secret configured: set one (the same as in GitHub's webhook settings), \
         or explicitly allow unsigned webhooks with the insecure no-webhook-secret flag"
    )]
    MissingWebhookSecret,
    #[error("the webhook secret is empty")]
    EmptyWebhookSecret,
}

/// What `/readyz` reports. The loop calls the setters; the server only reads.
#[derive(Debug)]
pub struct Readiness {
    cloned: AtomicBool,
    state: Mutex<ReconcileState>,
    unready_after: Duration,
}

#[derive(Debug, Clone, Default)]
enum ReconcileState {
    #[default]
    NotYet,
    Ok,
    /// Failing transiently since this instant (the first failure of the current streak).
    Transient {
        since: Instant,
        reason: String,
    },
    /// The last reconcile failed in a way only a new commit fixes. Still ready: restarting
    /// berth or routing around it would not help.
    Permanent(String),
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new(DEFAULT_UNREADY_AFTER)
    }
}

impl Readiness {
    /// Not ready until [`Readiness::set_cloned`]; unready again when reconciles fail
    /// transiently for longer than `unready_after`.
    pub fn new(unready_after: Duration) -> Readiness {
        Readiness {
            cloned: AtomicBool::new(false),
            state: Mutex::new(ReconcileState::NotYet),
            unready_after,
        }
    }

    /// The repository is cloned (or opened) and readable.
    pub fn set_cloned(&self) {
        self.cloned.store(true, Ordering::SeqCst);
    }

    pub fn reconcile_ok(&self) {
        *self.lock() = ReconcileState::Ok;
    }

    /// A reconcile failed in a way a retry may fix (Engine or network down, …).
    pub fn reconcile_transient_failure(&self, reason: impl Into<String>) {
        let reason = reason.into();
        let mut state = self.lock();
        let since = match &*state {
            ReconcileState::Transient { since, .. } => *since,
            _ => Instant::now(),
        };
        *state = ReconcileState::Transient { since, reason };
    }

    /// A reconcile failed in a way only a new commit fixes (invalid Compose file, …).
    pub fn reconcile_permanent_failure(&self, reason: impl Into<String>) {
        *self.lock() = ReconcileState::Permanent(reason.into());
    }

    /// `Ok(message)` when ready, `Err(reason)` when not.
    pub fn check(&self) -> Result<String, String> {
        if !self.cloned.load(Ordering::SeqCst) {
            return Err("repository not cloned yet".into());
        }
        match &*self.lock() {
            ReconcileState::NotYet | ReconcileState::Ok => Ok("ok".into()),
            ReconcileState::Permanent(reason) => {
                Ok(format!("ok (last reconcile failed permanently: {reason})"))
            }
            ReconcileState::Transient { since, reason } => {
                let for_ = since.elapsed();
                if for_ >= self.unready_after {
                    Err(format!(
                        "reconciles failing for {}s: {reason}",
                        for_.as_secs()
                    ))
                } else {
                    Ok(format!(
                        "ok (reconciles failing for {}s: {reason})",
                        for_.as_secs()
                    ))
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReconcileState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The last [`DELIVERY_MEMORY`] delivery ids, oldest forgotten first.
#[derive(Debug, Default)]
struct Deliveries {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl Deliveries {
    /// Remember `id`; false when it was already remembered.
    fn insert(&mut self, id: &str, cap: usize) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() >= cap
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(id.to_string());
        self.order.push_back(id.to_string());
        true
    }

    /// Forget `id`: a delivery berth could not use may be redelivered (same id) and must count.
    fn forget(&mut self, id: &str) {
        if self.seen.remove(id) {
            self.order.retain(|o| o != id);
        }
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct HttpState {
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    webhook_secret: Option<Secret>,
    branch: String,
    readiness: Arc<Readiness>,
    max_body: usize,
    deliveries: Mutex<Deliveries>,
    /// Permits for webhook requests in progress ([`MAX_WEBHOOKS_IN_FLIGHT`]).
    webhook_slots: Arc<tokio::sync::Semaphore>,
}

impl HttpState {
    /// Refuses to build without a webhook secret unless `insecure_no_webhook_secret` is set;
    /// then webhooks are accepted unsigned (and a warning is logged now).
    pub fn new(
        queue: Arc<Queue>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        branch: impl Into<String>,
        webhook_secret: Option<Secret>,
        insecure_no_webhook_secret: bool,
    ) -> Result<HttpState, ConfigError> {
        match &webhook_secret {
            Some(s) if s.expose().is_empty() => return Err(ConfigError::EmptyWebhookSecret),
            Some(_) => {}
            None if insecure_no_webhook_secret => warn!(
                "no webhook secret: accepting UNSIGNED webhooks; anyone who can reach this \
                 port can trigger reconciles"
            ),
            None => return Err(ConfigError::MissingWebhookSecret),
        }
        let branch = branch.into();
        let branch = branch
            .strip_prefix("refs/heads/")
            .map(str::to_string)
            .unwrap_or(branch);
        Ok(HttpState {
            queue,
            metrics,
            webhook_secret,
            branch,
            readiness,
            max_body: DEFAULT_MAX_BODY,
            deliveries: Mutex::new(Deliveries::default()),
            webhook_slots: Arc::new(tokio::sync::Semaphore::new(MAX_WEBHOOKS_IN_FLIGHT)),
        })
    }

    /// Change the webhook body limit (default [`DEFAULT_MAX_BODY`]).
    pub fn with_max_body(mut self, max_body: usize) -> HttpState {
        self.max_body = max_body;
        self
    }
}

/// The routes, ready for [`serve`].
pub fn router(state: HttpState) -> Router {
    let max_body = state.max_body;
    let state = Arc::new(state);
    Router::new()
        .route(
            "/hooks/github",
            post(github_webhook)
                .layer(DefaultBodyLimit::max(max_body))
                .layer(middleware::from_fn_with_state(state.clone(), webhook_slot)),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// Serve `router` on `listener` until `shutdown` completes, then finish in-flight requests, with
/// the process's [`config::http_limits`] (header and request timeouts, connection cap).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router, config::http_limits(), shutdown).await
}

/// A webhook with a large body (or one of unknown length) holds one of the
/// [`MAX_WEBHOOKS_IN_FLIGHT`] permits while it is read and handled; without one, 503 before
/// reading anything.
async fn webhook_slot(State(st): State<Arc<HttpState>>, req: Request, next: Next) -> Response {
    let small = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n <= SMALL_BODY);
    if small {
        return next.run(req).await;
    }
    let Ok(_permit) = st.webhook_slots.clone().try_acquire_owned() else {
        st.metrics.webhook("unverified", "busy");
        warn!(
            limit = MAX_WEBHOOKS_IN_FLIGHT,
            "webhook refused: too many webhooks in progress"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "too many webhooks in progress; retry\n",
        )
            .into_response();
    };
    next.run(req).await
}

async fn readyz(State(st): State<Arc<HttpState>>) -> Response {
    match st.readiness.check() {
        Ok(msg) => (StatusCode::OK, format!("{msg}\n")).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn metrics_text(State(st): State<Arc<HttpState>>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        st.metrics.encode(),
    )
        .into_response()
}

/// A header as text, cut short so an unauthenticated client cannot flood the logs.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let v = headers.get(name)?.to_str().ok()?.trim();
    Some(match v.char_indices().nth(100) {
        Some((i, _)) => &v[..i],
        None => v,
    })
}

/// The `event` metric label: only what a verified sender said, and only event-shaped names,
/// so that unsigned requests cannot grow the number of series.
fn event_label(event: Option<&str>, verified: bool) -> &str {
    match event {
        _ if !verified => "unverified",
        None => "none",
        Some(e)
            if !e.is_empty()
                && e.len() <= 64
                && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
        {
            e
        }
        Some(_) => "other",
    }
}

async fn github_webhook(
    State(st): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let delivery = header_text(&headers, "x-github-delivery").unwrap_or("-");
    let event = header_text(&headers, "x-github-event");
    let event_log = event.unwrap_or("-");
    let reply = |status: StatusCode, result: &str, event_label: &str, body: String| {
        st.metrics.webhook(event_label, result);
        let mut resp = (status, format!("{body}\n")).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    };

    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let result = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "bad_body"
            };
            warn!(delivery, event = event_log, %status, "webhook refused: {}", rejection.body_text());
            return reply(
                status,
                result,
                event_label(event, false),
                rejection.body_text(),
            );
        }
    };

    // Authenticate before looking at anything the sender wrote.
    if let Some(secret) = &st.webhook_secret {
        let sig = header_text(&headers, "x-hub-signature-256");
        if let Err(e) = webhook::verify_signature(secret.expose().as_bytes(), &body, sig) {
            warn!(delivery, event = event_log, "webhook refused: {e}");
            return reply(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                event_label(event, false),
                format!("unauthorized: {e}"),
            );
        }
    }
    let label = event_label(event, true);

    let Some(event) = event else {
        warn!(delivery, "webhook refused: no X-GitHub-Event header");
        return reply(
            StatusCode::BAD_REQUEST,
            "invalid",
            label,
            "missing X-GitHub-Event header".into(),
        );
    };

    if delivery != "-" {
        let new = st
            .deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(delivery, DELIVERY_MEMORY);
        if !new {
            info!(delivery, event, "webhook ignored: duplicate delivery");
            return reply(
                StatusCode::ACCEPTED,
                "duplicate",
                label,
                format!("duplicate delivery {delivery}: ignored"),
            );
        }
    }

    match webhook::route(event, &body, &st.branch) {
        Decision::Ping => {
            info!(delivery, event, "webhook ping");
            reply(StatusCode::OK, "ping", label, "pong".into())
        }
        Decision::Enqueue(work, reason) => {
            st.queue.push(work);
            info!(
                delivery,
                event,
                elapsed_us = started.elapsed().as_micros() as u64,
                "webhook enqueued: {reason}"
            );
            reply(StatusCode::ACCEPTED, "enqueued", label, reason)
        }
        Decision::Ignore(reason) => {
            info!(delivery, event, "webhook ignored: {reason}");
            reply(
                StatusCode::ACCEPTED,
                "ignored",
                label,
                format!("ignored: {reason}"),
            )
        }
        Decision::Invalid(reason) => {
            warn!(delivery, event, "webhook refused: {reason}");
            st.deliveries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .forget(delivery);
            reply(
                StatusCode::BAD_REQUEST,
                "invalid",
                label,
                format!("invalid payload: {reason}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_remembered_up_to_the_cap() {
        let mut d = Deliveries::default();
        assert!(d.insert("a", 2));
        assert!(!d.insert("a", 2));
        assert!(d.insert("b", 2));
        assert!(d.insert("c", 2)); // forgets "a"
        assert_eq!(d.seen.len(), 2);
        assert_eq!(d.order.len(), 2);
        assert!(!d.insert("b", 2));
        assert!(d.insert("a", 2));
    }

    #[test]
    fn readiness_needs_a_clone_and_no_long_transient_streak() {
        let r = Readiness::new(Duration::from_secs(300));
        assert!(r.check().is_err());
        r.set_cloned();
        assert_eq!(r.check(), Ok("ok".into()));
        r.reconcile_transient_failure("engine down");
        assert!(r.check().unwrap().contains("engine down"));
        r.reconcile_permanent_failure("bad compose file");
        assert!(r.check().unwrap().contains("bad compose file"));

        let r = Readiness::new(Duration::ZERO);
        r.set_cloned();
        r.reconcile_transient_failure("engine down");
        assert!(r.check().unwrap_err().contains("engine down"));
        r.reconcile_ok();
        assert_eq!(r.check(), Ok("ok".into()));
    }

    #[test]
    fn the_streak_starts_at_the_first_transient_failure() {
        let r = Readiness::new(Duration::from_secs(300));
        r.reconcile_transient_failure("one");
        let first = match &*r.lock() {
            ReconcileState::Transient { since, .. } => *since,
            s => panic!("{s:?}"),
        };
        r.reconcile_transient_failure("two");
        match &*r.lock() {
            ReconcileState::Transient { since, reason } => {
                assert_eq!(*since, first);
                assert_eq!(reason, "two");
            }
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn no_secret_needs_the_insecure_flag() {
        let q = Arc::new(Queue::new());
        let m = Arc::new(Metrics::new());
        let r = Arc::new(Readiness::default());
        let new = |secret: Option<&str>, insecure| {
            HttpState::new(
                q.clone(),
                m.clone(),
                r.clone(),
                "refs/heads/main",
                secret.map(Secret::new),
                insecure,
            )
        };
        assert!(matches!(
            new(None, false),
            Err(ConfigError::MissingWebhookSecret)
        ));
        assert!(matches!(
            new(Some(""), true),
            Err(ConfigError::EmptyWebhookSecret)
        ));
        let st = new(None, true).unwrap();
        assert!(st.webhook_secret.is_none());
        assert_eq!(st.branch, "main");
        assert_eq!(st.max_body, DEFAULT_MAX_BODY);
        assert!(new(Some("s"), false).is_ok());
    }

    #[tokio::test]
    async fn webhooks_in_progress_are_capped() {
        use tower::ServiceExt;
        let st = HttpState::new(
            Arc::new(Queue::new()),
            Arc::new(Metrics::new()),
            Arc::new(Readiness::default()),
            "main",
            Some(Secret::new("s")),
            false,
        )
        .unwrap();
        let app = router(st);
        let post = |body: axum::body::Body| {
            axum::http::Request::post("/hooks/github")
                .header("x-github-event", "ping")
                .body(body)
                .unwrap()
        };
        // Of unknown length, like the stalled ones below.
        let unknown_length = || {
            post(axum::body::Body::from_stream(futures_util::stream::iter([
                Ok::<_, std::io::Error>(Bytes::from_static(b"{}")),
            ])))
        };
        let small = || {
            let mut r = post("{}".into());
            r.headers_mut().insert(
                header::CONTENT_LENGTH,
                header::HeaderValue::from_static("2"),
            );
            r
        };
        // Bodies that never end: each request holds its permit.
        let mut senders = Vec::new();
        let mut pending = Vec::new();
        for _ in 0..MAX_WEBHOOKS_IN_FLIGHT {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
            let body =
                axum::body::Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async {
                    rx.recv().await.map(|chunk| (chunk, rx))
                }));
            tx.send(Ok(Bytes::from_static(b"{"))).await.unwrap();
            senders.push(tx);
            pending.push(tokio::spawn(app.clone().oneshot(post(body))));
        }
        // Each holds its permit once its body is being read; then the next one is refused.
        let mut tries = 0;
        while app
            .clone()
            .oneshot(unknown_length())
            .await
            .unwrap()
            .status()
            != StatusCode::SERVICE_UNAVAILABLE
        {
            tries += 1;
            assert!(tries < 10_000, "never refused");
            tokio::task::yield_now().await;
        }
        // A small body with its length needs no permit: still served.
        let r = app.clone().oneshot(small()).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        drop(senders);
        for p in pending {
            // The bodies end (unsigned): 401, and the permits are back.
            assert_eq!(p.await.unwrap().unwrap().status(), StatusCode::UNAUTHORIZED);
        }
        let r = app.oneshot(unknown_length()).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn event_labels_are_bounded() {
        assert_eq!(event_label(Some("push"), true), "push");
        assert_eq!(event_label(Some("push"), false), "unverified");
        assert_eq!(event_label(Some("Robert'); DROP"), true), "other");
        assert_eq!(event_label(None, true), "none");
    }
}
