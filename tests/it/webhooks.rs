//! The HTTP server over a real TCP socket: GitHub's recorded payloads, signed here, go in; work
//! comes out of a real queue. No Docker or git needed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::serve::http::{self, HttpState, Readiness};
use berth::serve::metrics::Metrics;
use berth::serve::queue::{Cause, Queue};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::oneshot;

const SECRET: &str = "It's a Secret to Everybody";
const PUSH_SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const PR_HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

fn fixture(name: &str) -> Vec<u8> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/github/webhooks"
    );
    std::fs::read(format!("{dir}/{name}")).unwrap()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A server on 127.0.0.1:<random> tracking `branch`, stopped (gracefully) on drop.
struct Server {
    addr: SocketAddr,
    queue: Arc<Queue>,
    readiness: Arc<Readiness>,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start(branch: &str, secret: Option<&str>, readiness: Readiness) -> Server {
        let queue = Arc::new(Queue::new());
        let readiness = Arc::new(readiness);
        let state = HttpState::new(
            queue.clone(),
            Arc::new(Metrics::new()),
            readiness.clone(),
            branch,
            secret.map(berth::model::Secret::new),
            secret.is_none(),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(http::serve(listener, http::router(state), async move {
            let _ = rx.await;
        }));
        Server {
            addr,
            queue,
            readiness,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    async fn signed(branch: &str) -> Server {
        let r = Readiness::default();
        r.set_cloned();
        Server::start(branch, Some(SECRET), r).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POST a delivery; `signature: None` sends no signature header.
    async fn deliver(
        &self,
        event: Option<&str>,
        delivery: &str,
        body: Vec<u8>,
        signature: Option<String>,
    ) -> (u16, String, Duration) {
        let mut req = self
            .client
            .post(self.url("/hooks/github"))
            .header("content-type", "application/json")
            .header("x-github-delivery", delivery)
            .header("user-agent", "GitHub-Hookshot/test");
        if let Some(event) = event {
            req = req.header("x-github-event", event);
        }
        if let Some(sig) = signature {
            req = req.header("x-hub-signature-256", sig);
        }
        let started = Instant::now();
        let resp = req.body(body).send().await.expect("send");
        let elapsed = started.elapsed();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap(), elapsed)
    }

    /// A correctly signed delivery of fixture `name`.
    async fn deliver_fixture(
        &self,
        event: &str,
        delivery: &str,
        name: &str,
    ) -> (u16, String, Duration) {
        let body = fixture(name);
        let sig = sign(SECRET, &body);
        self.deliver(Some(event), delivery, body, Some(sig)).await
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let resp = self.client.get(self.url(path)).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn stop(mut self) {
        self.shutdown.take().unwrap().send(()).unwrap();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("graceful shutdown within 10s")
            .unwrap()
            .unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[tokio::test]
async fn a_signed_push_to_the_tracked_branch_is_enqueued_at_once() {
    let s = Server::signed("master").await;
    let (status, body, elapsed) = s.deliver_fixture("push", "d-push-1", "push.5.json").await;
    println!("push delivery answered {status} in {elapsed:?}");
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body.trim(),
        format!("push to refs/heads/master at {PUSH_SHA}")
    );
    let batch = s.queue.take();
    assert_eq!(
        batch.branch,
        Some((Cause::Webhook, Some(PUSH_SHA.to_string())))
    );
    assert!(batch.previews.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_signatures_are_refused_and_nothing_is_enqueued() {
    let s = Server::signed("master").await;
    let body = fixture("push.5.json");
    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace(PUSH_SHA, "0123456789abcdef0123456789abcdef01234567")
        .into_bytes();
    for (name, body, sig) in [
        ("missing", body.clone(), None),
        ("malformed", body.clone(), Some("sha256=nothex".to_string())),
        ("sha1 only", body.clone(), Some("sha1=0000".to_string())),
        ("wrong secret", body.clone(), Some(sign("guess", &body))),
        ("tampered body", tampered, Some(sign(SECRET, &body))),
    ] {
        let (status, text, _) = s.deliver(Some("push"), name, body, sig).await;
        assert_eq!(status, 401, "{name}: {text}");
        assert!(s.queue.take().is_empty(), "{name}");
    }
    // A refused delivery id is not remembered: the genuine delivery still goes through.
    let (status, text, _) = s.deliver_fixture("push", "missing", "push.5.json").await;
    assert_eq!(status, 202, "{text}");
    assert!(!s.queue.take().is_empty());
    let (_, metrics) = s.get("/metrics").await;
    assert!(
        metrics.contains(
            r#"berth_webhook_deliveries_total{event="unverified",result="unauthorized"} 5"#
        ),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_replayed_delivery_is_ignored() {
    let s = Server::signed("master").await;
    let (status, _, _) = s.deliver_fixture("push", "d-replay", "push.5.json").await;
    assert_eq!(status, 202);
    assert!(!s.queue.take().is_empty());
    let (status, body, _) = s.deliver_fixture("push", "d-replay", "push.5.json").await;
    assert_eq!(status, 202);
    assert_eq!(body.trim(), "duplicate delivery d-replay: ignored");
    assert!(s.queue.take().is_empty());
    // Another id with the same payload is a new delivery.
    let (status, _, _) = s.deliver_fixture("push", "d-replay-2", "push.5.json").await;
    assert_eq!(status, 202);
    assert!(!s.queue.take().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let s = Server::signed("master").await;
    let body = vec![b' '; 6 * 1024 * 1024];
    let sig = sign(SECRET, &body);
    let (status, text, _) = s.deliver(Some("push"), "d-big", body, Some(sig)).await;
    assert_eq!(status, 413, "{text}");
    assert!(s.queue.take().is_empty());
    // The server is still fine.
    let (status, _, _) = s
        .deliver_fixture("ping", "d-after-big", "ping.1.json")
        .await;
    assert_eq!(status, 200);
    s.stop().await;
}

#[tokio::test]
async fn ping_answers_pong() {
    let s = Server::signed("master").await;
    let (status, body, _) = s.deliver_fixture("ping", "d-ping", "ping.1.json").await;
    assert_eq!((status, body.trim()), (200, "pong"));
    assert!(s.queue.take().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn pushes_elsewhere_are_accepted_with_a_reason_and_nothing_enqueued() {
    let s = Server::signed("main").await;
    let (status, body, _) = s.deliver_fixture("push", "d-other", "push.5.json").await;
    assert_eq!(status, 202);
    assert_eq!(
        body.trim(),
        "ignored: push to refs/heads/master, tracking main"
    );
    let (status, body, _) = s.deliver_fixture("push", "d-tag", "push.1.json").await;
    assert_eq!(status, 202);
    assert_eq!(body.trim(), "ignored: tag push refs/tags/simple-tag");
    let (status, body, _) = s
        .deliver_fixture("check_run", "d-check", "check_run.completed.1.json")
        .await;
    assert_eq!(status, 202);
    assert_eq!(body.trim(), "ignored: check_run");
    assert!(s.queue.take().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn pull_requests_enqueue_previews() {
    let s = Server::signed("master").await;
    let (status, body, elapsed) = s
        .deliver_fixture("pull_request", "d-pr-open", "pull_request.opened.1.json")
        .await;
    println!("pull_request delivery answered {status} in {elapsed:?}");
    assert_eq!(status, 202, "{body}");
    let batch = s.queue.take();
    assert!(batch.branch.is_none());
    let preview = &batch.previews[&2];
    assert_eq!((preview.head.as_str(), preview.closed), (PR_HEAD, false));
    assert_eq!(preview.branch.as_deref(), Some("changes"));

    let (status, _, _) = s
        .deliver_fixture("pull_request", "d-pr-close", "pull_request.closed.1.json")
        .await;
    assert_eq!(status, 202);
    let closed = &s.queue.take().previews[&2];
    assert_eq!((closed.head.as_str(), closed.closed), (PR_HEAD, true));
    s.stop().await;
}

#[tokio::test]
async fn signed_garbage_and_a_missing_event_are_bad_requests() {
    let s = Server::signed("master").await;
    let body = b"{not json".to_vec();
    let sig = sign(SECRET, &body);
    let (status, text, _) = s.deliver(Some("push"), "d-garbage", body, Some(sig)).await;
    assert_eq!(status, 400, "{text}");
    let body = fixture("push.5.json");
    let sig = sign(SECRET, &body);
    let (status, text, _) = s
        .deliver(None, "d-no-event", body.clone(), Some(sig.clone()))
        .await;
    assert_eq!(status, 400, "{text}");
    assert!(s.queue.take().is_empty());
    // Redelivered (same id) with a usable body: not taken for a duplicate of the refused one.
    let (status, text, _) = s.deliver(Some("push"), "d-garbage", body, Some(sig)).await;
    assert_eq!(status, 202, "{text}");
    assert!(!text.contains("duplicate"), "{text}");
    s.stop().await;
}

#[tokio::test]
async fn without_a_secret_only_the_insecure_flag_allows_unsigned_webhooks() {
    let refused = HttpState::new(
        Arc::new(Queue::new()),
        Arc::new(Metrics::new()),
        Arc::new(Readiness::default()),
        "master",
        None,
        false,
    );
    assert!(refused.is_err());
    let s = Server::start("master", None, Readiness::default()).await;
    let (status, body, _) = s
        .deliver(Some("push"), "d-unsigned", fixture("push.5.json"), None)
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(!s.queue.take().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = Server::start("master", Some(SECRET), Readiness::default()).await;
    assert_eq!(s.get("/healthz").await.0, 200);
    let (status, body) = s.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not cloned"), "{body}");
    s.readiness.set_cloned();
    s.readiness
        .reconcile_transient_failure("engine unreachable");
    let (status, body) = s.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("engine unreachable"), "{body}");
    s.readiness.reconcile_ok();
    assert_eq!(s.get("/readyz").await, (200, "ok\n".to_string()));

    // Failing transiently for longer than the threshold: not ready.
    let impatient = Readiness::new(Duration::ZERO);
    impatient.set_cloned();
    impatient.reconcile_transient_failure("engine unreachable");
    let s2 = Server::start("master", Some(SECRET), impatient).await;
    let (status, body) = s2.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("engine unreachable"), "{body}");
    s2.stop().await;

    s.deliver_fixture("ping", "d-m-ping", "ping.1.json").await;
    s.deliver_fixture("push", "d-m-push", "push.5.json").await;
    let resp = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let text = resp.text().await.unwrap();
    for want in [
        r#"berth_webhook_deliveries_total{event="ping",result="ping"} 1"#,
        r#"berth_webhook_deliveries_total{event="push",result="enqueued"} 1"#,
        "# EOF",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    s.stop().await;
}
