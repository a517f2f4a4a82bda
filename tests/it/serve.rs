//! `berth serve` end to end: the real binary, real git (file:// and `git daemon` on loopback),
//! the real Docker Engine, signed webhooks built from GitHub's example payloads, and the GitHub
//! stand-in that checks every request against GitHub's OpenAPI description.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::github_fake::{FAKE_APP_ID, FAKE_REPO, FAKE_TOKEN, GitHubFake};
use crate::support::{GitDaemon, GitRepo, World, docker, free_port, inspect};

pub(crate) const SECRET: &str = "test-webhook-secret";

/// A running `berth serve` with its repository, state dir and (optionally) GitHub stand-in.
/// Shared with the other serve tests (`defects.rs`).
pub(crate) struct Serve {
    pub(crate) world: World,
    pub(crate) repo: GitRepo,
    state: tempfile::TempDir,
    pub(crate) port: u16,
    url: String,
    pub(crate) args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    name: String,
    /// Authenticate as a GitHub App with this private key instead of a token.
    app_key: Option<String>,
    /// Extra environment for the daemon.
    pub(crate) env: Vec<(String, String)>,
}

impl Serve {
    pub(crate) fn new(test: &str) -> Serve {
        let world = World::new(test);
        let repo = GitRepo::new();
        let url = repo.file_url();
        Serve {
            name: "it".into(),
            log: world.path().join("serve.log"),
            world,
            repo,
            state: tempfile::tempdir().unwrap(),
            port: free_port(),
            url,
            args: vec![],
            child: None,
            app_key: None,
            env: vec![],
        }
    }

    pub(crate) fn stack(&self, name: &str) -> String {
        self.world.stack(name)
    }

    /// The daemon's `--state-dir`.
    pub(crate) fn state_dir(&self) -> &std::path::Path {
        self.state.path()
    }

    /// Commit `files` and push to main; the new commit id.
    pub(crate) fn push(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            self.repo.write(path, content);
        }
        let c = self.repo.commit(message);
        self.repo.push();
        c
    }

    pub(crate) fn start(&mut self, fake: Option<&GitHubFake>) {
        self.spawn(fake);
        self.wait_until("berth serve is ready", Duration::from_secs(60), || {
            reqwest::blocking_get(&format!("http://127.0.0.1:{}/readyz", self.port))
                .is_some_and(|(code, _)| code == 200)
        });
    }

    /// Follow `url` instead of the test's repository.
    pub(crate) fn set_url(&mut self, url: &str) {
        self.url = url.to_string();
    }

    /// Start the daemon without waiting for it to be ready.
    pub(crate) fn spawn(&mut self, fake: Option<&GitHubFake>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("serve")
            .args(["--repo", &self.url])
            .args(["--state-dir", self.state.path().to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--name", &self.name])
            .args(["--health-timeout", "20s"])
            .args(&self.args)
            .env("BERTH_INSTANCE", &self.world.instance)
            .env("BERTH_WEBHOOK_SECRET", SECRET)
            .env("BERTH_LOG", "berth=debug")
            .env_remove("BERTH_GITHUB_TOKEN")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(fake) = fake {
            cmd.args(["--github-api-url", &fake.url])
                .args(["--github-repo", FAKE_REPO]);
            match &self.app_key {
                Some(pem) => {
                    let key = self.world.write("app-key.pem", pem);
                    cmd.args(["--github-app-id", &FAKE_APP_ID.to_string()])
                        .arg("--github-app-key-file")
                        .arg(key);
                }
                None => {
                    cmd.env("BERTH_GITHUB_TOKEN", FAKE_TOKEN);
                }
            }
        }
        self.child = Some(cmd.spawn().expect("spawn berth serve"));
    }

    /// The common opening: stack `a` with one service (`berth-test/app:1`) pushed as v1,
    /// berth started, and v1 running. Returns the stack name and the container name.
    pub(crate) fn start_with_v1(&mut self, fake: Option<&GitHubFake>) -> (String, String) {
        let a = self.stack("a");
        self.push(
            &[("a/compose.yaml", &one_service(&a, "berth-test/app:1"))],
            "v1",
        );
        self.start(fake);
        let web = format!("{a}-web-1");
        self.wait_until("v1 running", Duration::from_secs(60), || {
            running_image(&web).as_deref() == Some("berth-test/app:1")
        });
        (a, web)
    }

    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for a clean exit.
    pub(crate) fn stop(&mut self) -> i32 {
        let c = self.child.take().expect("running");
        let pid = c.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let mut c = c;
        c.wait().unwrap().code().unwrap_or(-1)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Poll `cond` (a readiness check, not a sleep) until it holds or `timeout` passes.
    #[track_caller]
    pub(crate) fn wait_until(&self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for: {what}\n--- berth log\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// POST a webhook signed with `secret` (None: unsigned).
    pub(crate) fn webhook(
        &self,
        event: &str,
        body: &Value,
        delivery: &str,
        secret: Option<&str>,
    ) -> (u16, String) {
        let body = serde_json::to_vec(body).unwrap();
        let mut headers = vec![
            ("X-GitHub-Event".to_string(), event.to_string()),
            ("X-GitHub-Delivery".to_string(), delivery.to_string()),
            ("Content-Type".to_string(), "application/json".to_string()),
        ];
        if let Some(secret) = secret {
            headers.push(("X-Hub-Signature-256".into(), sign(secret, &body)));
        }
        reqwest::blocking_post(
            &format!("http://127.0.0.1:{}/hooks/github", self.port),
            &headers,
            body,
        )
    }

    pub(crate) fn metrics(&self) -> String {
        reqwest::blocking_get(&format!("http://127.0.0.1:{}/metrics", self.port))
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The value of a counter series, summed over every series whose line contains `filter`.
    pub(crate) fn metric(&self, name: &str, filter: &str) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Blocking HTTP for the tests' thread (the daemon is another process).
mod reqwest {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn request(
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Option<(u16, String)> {
        let rest = url.strip_prefix("http://")?;
        let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
        let mut s = TcpStream::connect(host).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .ok()?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).ok()?;
        s.write_all(body).ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let code = text.split(' ').nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((code, body))
    }

    pub fn blocking_get(url: &str) -> Option<(u16, String)> {
        request("GET", url, &[], b"")
    }

    pub fn blocking_post(url: &str, headers: &[(String, String)], body: Vec<u8>) -> (u16, String) {
        request("POST", url, headers, &body).expect("webhook request")
    }
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/github/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// GitHub's real push example, pointed at our branch and commit.
pub(crate) fn push_event(commit: &str) -> Value {
    let mut v = fixture("push.1.json");
    v["ref"] = "refs/heads/main".into();
    v["after"] = commit.into();
    v["deleted"] = false.into();
    v
}

/// GitHub's real pull_request example, as PR `number` with head `head` against main.
fn pr_event(action: &str, number: u64, head: &str) -> Value {
    let mut v = fixture("pull_request.opened.1.json");
    v["action"] = action.into();
    v["number"] = number.into();
    v["pull_request"]["number"] = number.into();
    v["pull_request"]["head"]["sha"] = head.into();
    v["pull_request"]["head"]["ref"] = "feature".into();
    v["pull_request"]["base"]["ref"] = "main".into();
    v
}

fn one_service(stack: &str, image: &str) -> String {
    format!(
        "name: {stack}\nservices:\n  web:\n    image: {image}\n    environment:\n      TOKEN: ${{TOKEN:-s3cr3t-value}}\n    volumes:\n      - data:/data\nvolumes:\n  data: {{}}\n"
    )
}

fn running_image(container: &str) -> Option<String> {
    let out = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.State.Running}} {{.Config.Image}}",
            container,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    text.strip_prefix("true ").map(str::to_string)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn push_applies_and_reports_per_stack_statuses() {
    let rt = runtime();
    let fake = rt.block_on(GitHubFake::start());
    let mut s = Serve::new("push");
    s.args = vec!["--poll-interval".into(), "1h".into()];
    let (a, b) = (s.stack("a"), s.stack("b"));
    let c1 = s.push(
        &[
            ("a/compose.yaml", &one_service(&a, "berth-test/app:1")),
            ("b/compose.yaml", &one_service(&b, "berth-test/app:1")),
        ],
        "v1",
    );
    s.start(Some(&fake));
    let web_a = format!("{a}-web-1");
    s.wait_until("v1 applied", Duration::from_secs(60), || {
        running_image(&web_a).as_deref() == Some("berth-test/app:1")
    });
    // A push announced by webhook: only stack a changes.
    let c2 = s.push(
        &[("a/compose.yaml", &one_service(&a, "berth-test/app:2"))],
        "v2",
    );
    let (code, body) = s.webhook("push", &push_event(&c2), "d-1", Some(SECRET));
    assert_eq!(code, 202, "{body}");
    s.wait_until("v2 applied to a", Duration::from_secs(60), || {
        running_image(&web_a).as_deref() == Some("berth-test/app:2")
    });
    let ctx = |stack: Option<&str>| match stack {
        Some(st) => format!("berth/it/{st}"),
        None => "berth/it".to_string(),
    };
    s.wait_until(
        "final statuses posted for c2",
        Duration::from_secs(30),
        || {
            let st = fake.statuses_for(&c2);
            st.iter()
                .any(|x| x.context == ctx(None) && x.state == "success")
        },
    );
    let st = fake.statuses_for(&c2);
    let last = |context: &str| st.iter().rfind(|x| x.context == context).cloned().unwrap();
    assert_eq!(last(&ctx(Some(&a))).state, "success");
    assert_eq!(
        last(&ctx(Some(&a))).description.as_deref(),
        Some("1 replaced, 0 created, 0 removed")
    );
    assert_eq!(last(&ctx(Some(&b))).state, "success");
    assert!(
        st.iter()
            .any(|x| x.context == ctx(Some(&a)) && x.state == "pending")
    );
    // Never the same status twice for one commit and context.
    let mut seen = std::collections::BTreeSet::new();
    for x in &st {
        assert!(
            seen.insert((x.context.clone(), x.state.clone(), x.description.clone())),
            "duplicate status {x:?}"
        );
    }
    assert!(!fake.statuses_for(&c1).is_empty());
    // Secrets never reach GitHub.
    for r in fake.requests() {
        assert!(!format!("{:?}", r.body).contains("s3cr3t-value"));
    }
    assert!(!s.log().contains("s3cr3t-value"));
    // The reconcile is counted when it returns, a moment after its statuses are queued.
    s.wait_until(
        "two successful reconciles counted",
        Duration::from_secs(30),
        || s.metric("berth_reconciles_total", "result=\"success\"") >= 2.0,
    );
    assert!(s.metrics().contains(&format!(
        "berth_last_applied_commit_info{{commit=\"{c2}\"}}"
    )));
    assert_eq!(s.stop(), 0);
    fake.assert_no_violations();
}

#[test]
fn bad_signature_and_replays_do_nothing() {
    let mut s = Serve::new("sig");
    s.args = vec!["--poll-interval".into(), "1h".into()];
    let (a, web) = s.start_with_v1(None);
    let c2 = s.push(
        &[("a/compose.yaml", &one_service(&a, "berth-test/app:2"))],
        "v2",
    );
    let event = push_event(&c2);
    assert_eq!(
        s.webhook("push", &event, "d-bad", Some("wrong secret")).0,
        401
    );
    assert_eq!(s.webhook("push", &event, "d-none", None).0, 401);
    // Nothing was reconciled: the startup one only.
    let reconciles = || s.metric("berth_reconciles_total", "");
    assert_eq!(reconciles(), 1.0, "{}", s.metrics());
    assert_eq!(running_image(&web).as_deref(), Some("berth-test/app:1"));
    // A good one applies; its replay is ignored.
    let (code, _) = s.webhook("push", &event, "d-good", Some(SECRET));
    assert_eq!(code, 202);
    s.wait_until("v2 applied", Duration::from_secs(60), || {
        running_image(&web).as_deref() == Some("berth-test/app:2")
    });
    let (code, body) = s.webhook("push", &event, "d-good", Some(SECRET));
    assert_eq!(code, 202);
    assert!(body.contains("duplicate"), "{body}");
    assert_eq!(
        s.webhook("ping", &fixture("ping.1.json"), "d-ping", Some(SECRET))
            .0,
        200
    );
}

#[test]
fn pull_request_preview_posts_plan_applies_nothing_and_updates_one_comment() {
    let rt = runtime();
    let fake = rt.block_on(GitHubFake::start());
    let mut s = Serve::new("preview");
    s.args = vec!["--poll-interval".into(), "1h".into()];
    let (a, web) = s.start_with_v1(Some(&fake));
    let main = s.repo.git(&["rev-parse", "HEAD"]);
    let id_before = inspect(&web, "{{.Id}}");
    // A PR branch changing the image, published as refs/pull/7/head like GitHub does.
    s.repo
        .write("a/compose.yaml", &one_service(&a, "berth-test/app:2"));
    // And a job: the preview lists it; nothing records it.
    s.repo.write(
        "berth.yaml",
        &format!("kind: Job\nname: vacuum\nschedule: \"0 2 * * 0\"\ntimezone: Europe/Paris\nrun:\n  exec: {{service: {a}/web, command: [vacuumdb, -az]}}\n"),
    );
    let head1 = s.repo.commit("pr v2");
    s.repo.push_ref("refs/pull/7/head");
    let (code, body) = s.webhook(
        "pull_request",
        &pr_event("opened", 7, &head1),
        "p-1",
        Some(SECRET),
    );
    assert_eq!(code, 202, "{body}");
    s.wait_until("preview comment", Duration::from_secs(60), || {
        !fake.comments(7).is_empty()
    });
    let comments = fake.comments(7);
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0]
            .body
            .contains("image berth-test/app:1 → berth-test/app:2"),
        "{}",
        comments[0].body
    );
    assert!(!comments[0].body.contains("s3cr3t-value"));
    assert!(
        comments[0]
            .body
            .contains("+ job vacuum: exec at \"0 2 * * 0\" (Europe/Paris); next run "),
        "{}",
        comments[0].body
    );
    let jobs = berth::jobs::load(s.state_dir(), &s.world.instance).unwrap();
    assert!(jobs.table.is_empty(), "a preview recorded jobs");
    let preview = fake
        .statuses_for(&head1)
        .into_iter()
        .rfind(|x| x.context == "berth/it/preview")
        .expect("preview status");
    assert_eq!(preview.state, "success");
    // Second push to the PR: the same comment is updated.
    s.repo
        .write("a/compose.yaml", &one_service(&a, "berth-test/busybox:1"));
    let head2 = s.repo.commit("pr v3");
    s.repo.push_ref("refs/pull/7/head");
    s.webhook(
        "pull_request",
        &pr_event("synchronize", 7, &head2),
        "p-2",
        Some(SECRET),
    );
    s.wait_until("comment updated", Duration::from_secs(60), || {
        fake.comments(7)
            .iter()
            .any(|c| c.body.contains("berth-test/busybox:1"))
    });
    assert_eq!(fake.comments(7).len(), 1, "a second comment was created");
    // Nothing from the PR was applied.
    assert_eq!(inspect(&web, "{{.Id}}"), id_before);
    assert_eq!(running_image(&web).as_deref(), Some("berth-test/app:1"));
    assert!(
        fake.statuses_for(&main)
            .iter()
            .all(|x| x.context != "berth/it/preview")
    );
    // Closing the PR finalises its preview status.
    s.webhook(
        "pull_request",
        &pr_event("closed", 7, &head2),
        "p-3",
        Some(SECRET),
    );
    s.wait_until("preview finalised", Duration::from_secs(30), || {
        fake.statuses_for(&head2).iter().any(|x| {
            x.context == "berth/it/preview"
                && x.description.as_deref().unwrap_or("").contains("closed")
        })
    });
    fake.assert_no_violations();
}

#[test]
fn invalid_manifests_fail_the_commit_and_touch_nothing() {
    let rt = runtime();
    let fake = rt.block_on(GitHubFake::start());
    let mut s = Serve::new("invalid");
    s.args = vec!["--poll-interval".into(), "1s".into()];
    let (a, web) = s.start_with_v1(Some(&fake));
    let id = inspect(&web, "{{.Id}}");
    let bad = s.push(
        &[(
            "a/compose.yaml",
            &format!(
                "name: {a}\nservices:\n  web:\n    image: berth-test/app:2\n    imagee: typo\n"
            ),
        )],
        "broken",
    );
    s.wait_until("failure status", Duration::from_secs(60), || {
        fake.statuses_for(&bad)
            .iter()
            .any(|x| x.context == "berth/it" && x.state == "failure")
    });
    let st = fake.statuses_for(&bad);
    let failure = st.iter().find(|x| x.state == "failure").unwrap();
    let d = failure.description.clone().unwrap_or_default();
    assert!(
        d.contains("a/compose.yaml:5:5") && d.contains("imagee"),
        "{d}"
    );
    // Polls keep coming (1s) but the failure is reported once: no redeploy loop.
    let reconciles = s.metric("berth_reconciles_total", "failure_permanent");
    let idle = s.metric("berth_idle_checks_total", "");
    let fetches = s.metric("berth_git_fetch_duration_seconds_count", "");
    s.wait_until("three more polls", Duration::from_secs(20), || {
        s.metric("berth_idle_checks_total", "") >= idle + 3.0
    });
    assert_eq!(
        s.metric("berth_reconciles_total", "failure_permanent"),
        reconciles
    );
    assert_eq!(st.iter().filter(|x| x.state == "failure").count(), 1);
    assert_eq!(inspect(&web, "{{.Id}}"), id);
    // An idle poll is one ref look-up: no fetch.
    assert_eq!(
        s.metric("berth_git_fetch_duration_seconds_count", ""),
        fetches
    );
    // Logged once; a new commit that fails the same way is logged again.
    assert_eq!(s.log().matches("failed permanently").count(), 1);
    s.push(&[("README.md", "still broken\n")], "broken again");
    s.wait_until(
        "the new commit's failure logged",
        Duration::from_secs(60),
        || s.log().matches("failed permanently").count() >= 2,
    );
    fake.assert_no_violations();
}

#[test]
fn revert_rolls_back_and_volume_data_survives() {
    let mut s = Serve::new("revert");
    s.args = vec!["--poll-interval".into(), "1s".into()];
    let (a, web) = s.start_with_v1(None);
    docker(&["exec", &web, "sh", "-c", "echo precious > /data/file"]);
    s.push(
        &[("a/compose.yaml", &one_service(&a, "berth-test/app:2"))],
        "v2",
    );
    s.wait_until("v2", Duration::from_secs(60), || {
        running_image(&web).as_deref() == Some("berth-test/app:2")
    });
    assert_eq!(
        docker(&["exec", &web, "cat", "/data/file"]).trim(),
        "precious"
    );
    s.repo.git(&["revert", "--no-edit", "HEAD"]);
    s.repo.push();
    s.wait_until("v1 again", Duration::from_secs(60), || {
        running_image(&web).as_deref() == Some("berth-test/app:1")
    });
    assert_eq!(
        docker(&["exec", &web, "cat", "/data/file"]).trim(),
        "precious"
    );
    assert_eq!(s.world.containers().len(), 1);
}

#[test]
fn kill_9_mid_apply_converges_after_restart_without_duplicates() {
    let mut s = Serve::new("kill9");
    s.args = vec!["--poll-interval".into(), "1s".into()];
    let a = s.stack("a");
    // Five services that each need a few health checks: the apply takes seconds.
    let mut compose = format!("name: {a}\nservices:\n");
    for i in 0..5 {
        compose.push_str(&format!(
            "  s{i}:\n    image: berth-test/app:1\n    healthcheck:\n      test: [\"CMD\", \"wget\", \"-q\", \"-O-\", \"http://127.0.0.1:8080/\"]\n      interval: 1s\n      retries: 30\n"
        ));
    }
    s.push(&[("a/compose.yaml", &compose)], "v1");
    s.start(None);
    // Kill as soon as the apply has visibly started (a container exists), not at a fixed time.
    s.wait_until("apply started", Duration::from_secs(60), || {
        !s.world.containers().is_empty()
    });
    s.kill9();
    // The five are created side by side; their health waits take seconds: the kill lands
    // before all of them are healthy, i.e. mid-apply.
    let healthy = (0..5)
        .filter(|i| {
            // A container the kill came before does not exist: not healthy.
            std::process::Command::new("docker")
                .args(["inspect", "-f", "{{.State.Health.Status}}"])
                .arg(format!("{a}-s{i}-1"))
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "healthy")
        })
        .count();
    assert!(
        healthy < 5,
        "the apply finished before the kill ({healthy} healthy containers)"
    );
    s.start(None);
    s.wait_until("converged", Duration::from_secs(120), || {
        (0..5).all(|i| running_image(&format!("{a}-s{i}-1")).is_some())
    });
    assert_eq!(s.world.containers().len(), 5, "{:?}", s.world.containers());
    assert!(s.log().contains("stopped during an apply"), "{}", s.log());
}

#[test]
fn container_stopped_by_hand_is_repaired_by_resync() {
    let mut s = Serve::new("drift");
    s.args = vec![
        "--poll-interval".into(),
        "1h".into(),
        "--resync-interval".into(),
        "1s".into(),
        "--path".into(),
        "stacks".into(),
    ];
    let a = s.stack("a");
    s.push(
        &[(
            "stacks/a/compose.yaml",
            &one_service(&a, "berth-test/app:1"),
        )],
        "v1",
    );
    s.start(None);
    let web = format!("{a}-web-1");
    s.wait_until("v1", Duration::from_secs(60), || {
        running_image(&web).is_some()
    });
    docker(&["stop", &web]);
    s.wait_until("repaired", Duration::from_secs(60), || {
        running_image(&web).is_some()
    });
    s.wait_until("drift metric", Duration::from_secs(10), || {
        s.metric("berth_drift_repairs_total", "") >= 1.0
    });
    assert!(s.log().contains("drift"), "{}", s.log());
}

#[test]
fn force_push_is_refused_over_git_daemon() {
    let rt = runtime();
    let fake = rt.block_on(GitHubFake::start());
    let mut s = Serve::new("force");
    let daemon = GitDaemon::start(&s.repo.srv());
    s.url = daemon.url("origin.git");
    s.args = vec!["--poll-interval".into(), "1s".into()];
    let a = s.stack("a");
    s.push(
        &[("a/compose.yaml", &one_service(&a, "berth-test/app:1"))],
        "v1",
    );
    let c2 = s.push(
        &[("a/compose.yaml", &one_service(&a, "berth-test/app:2"))],
        "v2",
    );
    s.start(Some(&fake));
    let web = format!("{a}-web-1");
    s.wait_until("v2", Duration::from_secs(60), || {
        running_image(&web).as_deref() == Some("berth-test/app:2")
    });
    assert!(!fake.statuses_for(&c2).is_empty());
    // Rewrite history: drop v2, commit something else, force-push.
    s.repo.git(&["reset", "--hard", "HEAD~1"]);
    s.repo
        .write("a/compose.yaml", &one_service(&a, "berth-test/busybox:1"));
    let forced = s.repo.commit("rewritten");
    s.repo.force_push();
    s.wait_until("refusal status", Duration::from_secs(60), || {
        fake.statuses_for(&forced)
            .iter()
            .any(|x| x.state == "failure")
    });
    let d = fake.statuses_for(&forced)[0]
        .description
        .clone()
        .unwrap_or_default();
    assert!(d.contains("non-fast-forward"), "{d}");
    assert_eq!(running_image(&web).as_deref(), Some("berth-test/app:2"));
    fake.assert_no_violations();
}

#[test]
fn a_burst_of_webhooks_coalesces() {
    let mut s = Serve::new("burst");
    s.args = vec!["--poll-interval".into(), "1h".into()];
    let a = s.stack("a");
    s.push(
        &[("a/compose.yaml", &one_service(&a, "berth-test/app:1"))],
        "v1",
    );
    s.start(None);
    s.wait_until("startup reconcile", Duration::from_secs(60), || {
        s.metric("berth_reconciles_total", "") >= 1.0
    });
    let before = s.metric("berth_reconciles_total", "");
    // 100 pushes, each announced by its own webhook, as fast as they come.
    let mut commits = Vec::new();
    for i in 0..100 {
        s.repo.write("a/notes.txt", &format!("change {i}\n"));
        commits.push(s.repo.commit(&format!("change {i}")));
    }
    s.repo.push();
    for (i, c) in commits.iter().enumerate() {
        let (code, _) = s.webhook("push", &push_event(c), &format!("burst-{i}"), Some(SECRET));
        assert_eq!(code, 202);
    }
    // The loop takes work in order: once a later push is applied, the burst is behind it.
    let c2 = s.push(
        &[("a/compose.yaml", &one_service(&a, "berth-test/app:2"))],
        "v2",
    );
    s.webhook("push", &push_event(&c2), "after-burst", Some(SECRET));
    let web = format!("{a}-web-1");
    s.wait_until("v2", Duration::from_secs(60), || {
        running_image(&web).as_deref() == Some("berth-test/app:2")
    });
    let after = s.metric("berth_reconciles_total", "");
    // At most two for the burst (one running, one coalesced), one for v2.
    assert!(
        after - before <= 3.0,
        "{} reconciles for 101 pushes",
        after - before
    );
    assert!(s.metric("berth_webhook_deliveries_total", "") >= 101.0);
}

#[test]
fn github_app_mode_posts_check_runs_with_the_plan() {
    let rt = runtime();
    let fake = rt.block_on(GitHubFake::start());
    let berth::github::Auth::App {
        private_key_pem, ..
    } = fake.enable_app()
    else {
        unreachable!()
    };
    let mut s = Serve::new("app");
    s.app_key = Some(private_key_pem.expose().to_string());
    s.args = vec!["--poll-interval".into(), "1s".into()];
    let a = s.stack("a");
    let c1 = s.push(
        &[("a/compose.yaml", &one_service(&a, "berth-test/app:1"))],
        "v1",
    );
    s.start(Some(&fake));
    s.wait_until("completed check runs", Duration::from_secs(60), || {
        fake.check_runs()
            .iter()
            .filter(|r| r["head_sha"] == c1.as_str() && r["status"] == "completed")
            .count()
            >= 2
    });
    let runs = fake.check_runs();
    let stack_run = runs
        .iter()
        .find(|r| r["name"] == format!("berth/it/{a}").as_str())
        .expect("a check run for the stack");
    assert_eq!(stack_run["conclusion"], "success");
    let text = stack_run["output"]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains(&format!("create container {a}-web-1")),
        "{text}"
    );
    assert!(!text.contains("s3cr3t-value"));
    // One check run per context, updated from in_progress to completed: never a second one.
    let names: Vec<&str> = runs
        .iter()
        .filter(|r| r["head_sha"] == c1.as_str())
        .filter_map(|r| r["name"].as_str())
        .collect();
    let unique: std::collections::BTreeSet<&&str> = names.iter().collect();
    assert_eq!(names.len(), unique.len(), "{names:?}");
    fake.assert_no_violations();
}

#[test]
fn unreachable_remote_is_retried_with_backoff_until_it_returns() {
    let mut s = Serve::new("transient");
    let daemon = GitDaemon::start(&s.repo.srv());
    let port = daemon.port();
    s.url = daemon.url("origin.git");
    s.args = vec![
        "--poll-interval".into(),
        "1h".into(),
        "--git-timeout".into(),
        "3s".into(),
    ];
    let (a, web) = s.start_with_v1(None);
    // The remote goes away; a push announced by webhook cannot be fetched.
    drop(daemon);
    let c2 = s.push(
        &[("a/compose.yaml", &one_service(&a, "berth-test/app:2"))],
        "v2",
    );
    s.webhook("push", &push_event(&c2), "t-1", Some(SECRET));
    s.wait_until("a transient failure", Duration::from_secs(30), || {
        s.metric("berth_reconciles_total", "failure_transient") >= 1.0
    });
    assert!(s.log().contains("retry scheduled"), "{}", s.log());
    // Still ready: a short outage is not a reason to be taken out of rotation.
    assert_eq!(
        reqwest::blocking_get(&format!("http://127.0.0.1:{}/readyz", s.port)).map(|r| r.0),
        Some(200)
    );
    // The remote comes back: the backoff retry applies v2 without any new trigger.
    let _back = GitDaemon::start_on(&s.repo.srv(), port);
    s.wait_until("v2 after the outage", Duration::from_secs(90), || {
        running_image(&web).as_deref() == Some("berth-test/app:2")
    });
}

#[test]
fn github_outage_never_blocks_the_apply_and_statuses_follow() {
    let rt = runtime();
    let fake = rt.block_on(GitHubFake::start());
    let mut s = Serve::new("ghdown");
    s.args = vec!["--poll-interval".into(), "1h".into()];
    let a = s.stack("a");
    // Every GitHub request fails for a while (502s), from the first status on.
    fake.fail_next(4, 502);
    let c1 = s.push(
        &[("a/compose.yaml", &one_service(&a, "berth-test/app:1"))],
        "v1",
    );
    s.start(Some(&fake));
    let web = format!("{a}-web-1");
    s.wait_until(
        "applied despite GitHub failing",
        Duration::from_secs(60),
        || running_image(&web).as_deref() == Some("berth-test/app:1"),
    );
    s.wait_until(
        "statuses posted after retries",
        Duration::from_secs(90),
        || {
            fake.statuses_for(&c1)
                .iter()
                .any(|x| x.context == "berth/it" && x.state == "success")
        },
    );
    assert!(s.log().contains("retrying"), "{}", s.log());
    fake.assert_no_violations();
}

#[test]
fn lost_state_dir_is_detected_and_nothing_is_duplicated() {
    let mut s = Serve::new("lost");
    s.args = vec![
        "--poll-interval".into(),
        "1h".into(),
        "--log-format".into(),
        "json".into(),
    ];
    let _ = s.start_with_v1(None);
    let before = s.world.containers();
    assert_eq!(s.stop(), 0);
    std::fs::remove_dir_all(s.state.path()).unwrap();
    s.start(None);
    s.wait_until("startup reconcile", Duration::from_secs(60), || {
        s.metric("berth_reconciles_total", "cause=\"startup\"") >= 1.0
    });
    assert!(s.log().contains("state was lost"), "{}", s.log());
    assert_eq!(
        s.world.containers(),
        before,
        "re-derived from labels: nothing re-created"
    );
    // Structured logs: every line is a JSON object.
    for line in s.log().lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line).expect("JSON log line");
        assert!(
            v.get("level").is_some() && v.get("fields").is_some(),
            "{line}"
        );
    }
    assert!(s.log().lines().any(|l| l.starts_with('{')));
}

#[test]
fn preview_works_from_the_head_branch_on_a_server_without_pull_refs() {
    let rt = runtime();
    let fake = rt.block_on(GitHubFake::start());
    let mut s = Serve::new("prbranch");
    s.args = vec!["--poll-interval".into(), "1h".into()];
    // Not secret-named, but a PR must not be able to read it either.
    s.env = vec![("DATABASE_URL".into(), "postgres://u:pw@db/app".into())];
    let (a, web) = s.start_with_v1(Some(&fake));
    // A plain branch, as a self-hosted git server has it: no refs/pull/*. The PR is hostile:
    // it tries to exfiltrate berth's GitHub token through a label (labels show in plans).
    let hostile = one_service(&a, "berth-test/app:2").replace(
        "    volumes:\n",
        "    labels:\n      leak: ${BERTH_GITHUB_TOKEN}\n      url: ${DATABASE_URL}\n    volumes:\n",
    );
    s.repo.write("a/compose.yaml", &hostile);
    let head = s.repo.commit("feature");
    s.repo.push_ref("refs/heads/feature");
    s.webhook(
        "pull_request",
        &pr_event("opened", 9, &head),
        "b-1",
        Some(SECRET),
    );
    s.wait_until("preview status", Duration::from_secs(60), || {
        fake.statuses_for(&head)
            .iter()
            .any(|x| x.context == "berth/it/preview" && x.state == "success")
    });
    let comments = fake.comments(9);
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].body.contains("labels leak added"),
        "{}",
        comments[0].body
    );
    for r in fake.requests() {
        let body = r.body.map(|b| b.to_string()).unwrap_or_default();
        assert!(
            !body.contains(FAKE_TOKEN),
            "the token reached GitHub: {body}"
        );
        assert!(
            !body.contains("pw@db"),
            "an env value reached GitHub: {body}"
        );
    }
    assert_eq!(running_image(&web).as_deref(), Some("berth-test/app:1"));
    fake.assert_no_violations();
}

#[test]
fn a_bind_mounted_repo_folder_replaces_its_container_only_when_its_content_changes() {
    let mut s = Serve::new("bind");
    s.args = vec!["--poll-interval".into(), "1s".into()];
    let (site, other) = (s.stack("site"), s.stack("other"));
    let site_compose = format!(
        "name: {site}\nservices:\n  web:\n    image: berth-test/app:1\n    volumes:\n      - ./html:/data:ro\n"
    );
    s.push(
        &[
            ("site/compose.yaml", &site_compose),
            ("site/html/index.txt", "hello v1\n"),
            (
                "other/compose.yaml",
                &one_service(&other, "berth-test/app:1"),
            ),
        ],
        "v1",
    );
    s.start(None);
    let web = format!("{site}-web-1");
    s.wait_until("site up", Duration::from_secs(60), || {
        running_image(&web).is_some()
    });
    let id = inspect(&web, "{{.Id}}");
    assert_eq!(
        docker(&["exec", &web, "cat", "/data/index.txt"]),
        "hello v1"
    );
    // A commit that changes another stack only: the site is not replaced, and its
    // bind-mounted folder is intact.
    s.push(
        &[(
            "other/compose.yaml",
            &one_service(&other, "berth-test/app:2"),
        )],
        "v2",
    );
    let other_web = format!("{other}-web-1");
    s.wait_until("other replaced", Duration::from_secs(60), || {
        running_image(&other_web).as_deref() == Some("berth-test/app:2")
    });
    assert_eq!(inspect(&web, "{{.Id}}"), id);
    assert_eq!(
        docker(&["exec", &web, "cat", "/data/index.txt"]),
        "hello v1"
    );
    // A commit that changes a file the site bind-mounts from the repository: its digest is
    // part of the spec, so the site is replaced and serves the new content.
    s.push(&[("site/html/index.txt", "hello v2\n")], "v3");
    let running_id = || {
        let out = std::process::Command::new("docker")
            .args(["inspect", "-f", "{{.State.Running}} {{.Id}}", &web])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        text.strip_prefix("true ").map(str::to_string)
    };
    s.wait_until("site replaced", Duration::from_secs(60), || {
        running_id().is_some_and(|now| now != id)
    });
    assert_eq!(
        docker(&["exec", &web, "cat", "/data/index.txt"]),
        "hello v2"
    );
}

#[test]
fn polls_during_an_outage_do_not_reset_the_backoff() {
    let mut s = Serve::new("backoff");
    s.args = vec!["--poll-interval".into(), "1s".into()];
    s.env = vec![(
        "DOCKER_HOST".into(),
        "unix:///nonexistent/docker.sock".into(),
    )];
    let a = s.stack("a");
    s.push(
        &[("a/compose.yaml", &one_service(&a, "berth-test/app:1"))],
        "v1",
    );
    s.start(None);
    let delays = |log: &str| -> Vec<f64> {
        log.lines()
            .filter(|l| l.contains("retry scheduled"))
            .filter_map(|l| {
                let rest = &l[l.find("retry_in=")? + "retry_in=".len()..];
                let num: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                let secs = num.parse::<f64>().ok()?;
                Some(if rest[num.len()..].starts_with("ms") {
                    secs / 1000.0
                } else {
                    secs
                })
            })
            .collect()
    };
    // Polls come every second; the retries must still back off (1s, 2s, 4s … with jitter).
    s.wait_until("three retries", Duration::from_secs(60), || {
        delays(&s.log()).len() >= 3
    });
    let d = delays(&s.log());
    assert!(d[2] > d[0] && d[2] >= 3.0, "backoff did not grow: {d:?}");
    // Polls in between are idle checks: they neither retry nor reset the backoff.
    assert!(s.metric("berth_idle_checks_total", "") >= 1.0);
    assert!(!s.log().contains("\u{1b}["), "colour codes in a log file");
}

#[test]
fn a_preview_during_a_remote_outage_reports_an_error_and_recovers() {
    let rt = runtime();
    let fake = rt.block_on(GitHubFake::start());
    let mut s = Serve::new("prdown");
    let daemon = GitDaemon::start(&s.repo.srv());
    let port = daemon.port();
    s.url = daemon.url("origin.git");
    s.args = vec![
        "--poll-interval".into(),
        "1h".into(),
        "--git-timeout".into(),
        "3s".into(),
    ];
    let (a, _) = s.start_with_v1(Some(&fake));
    s.repo
        .write("a/compose.yaml", &one_service(&a, "berth-test/app:2"));
    let head = s.repo.commit("pr");
    s.repo.push_ref("refs/pull/3/head");
    drop(daemon);
    s.webhook(
        "pull_request",
        &pr_event("opened", 3, &head),
        "o-1",
        Some(SECRET),
    );
    s.wait_until(
        "error status, not pending forever",
        Duration::from_secs(60),
        || {
            fake.statuses_for(&head)
                .iter()
                .any(|x| x.context == "berth/it/preview" && x.state == "error")
        },
    );
    let _back = GitDaemon::start_on(&s.repo.srv(), port);
    s.wait_until("preview after the outage", Duration::from_secs(90), || {
        fake.statuses_for(&head)
            .iter()
            .any(|x| x.context == "berth/it/preview" && x.state == "success")
    });
    // The comment is posted after the status, by the same write-back task.
    s.wait_until("the preview comment", Duration::from_secs(30), || {
        !fake.comments(3).is_empty()
    });
    assert_eq!(fake.comments(3).len(), 1);
    fake.assert_no_violations();
}

#[test]
fn a_restart_mid_apply_completes_the_same_check_run() {
    let rt = runtime();
    let fake = rt.block_on(GitHubFake::start());
    let berth::github::Auth::App {
        private_key_pem, ..
    } = fake.enable_app()
    else {
        unreachable!()
    };
    let mut s = Serve::new("apprestart");
    s.app_key = Some(private_key_pem.expose().to_string());
    s.args = vec!["--poll-interval".into(), "1s".into()];
    let a = s.stack("a");
    let mut compose = format!("name: {a}\nservices:\n");
    for i in 0..4 {
        compose.push_str(&format!(
            "  s{i}:\n    image: berth-test/app:1\n    healthcheck:\n      test: [\"CMD\", \"wget\", \"-q\", \"-O-\", \"http://127.0.0.1:8080/\"]\n      interval: 1s\n      retries: 30\n"
        ));
    }
    let c1 = s.push(&[("a/compose.yaml", &compose)], "v1");
    let name = format!("berth/it/{a}");
    let runs_for = |status: &str| {
        fake.check_runs()
            .into_iter()
            .filter(|r| r["head_sha"] == c1.as_str() && r["name"] == name.as_str())
            .filter(|r| status.is_empty() || r["status"] == status)
            .count()
    };
    s.start(Some(&fake));
    // Killed once berth has recorded the run's id (state.json): the fake sees the run a moment
    // before berth has the answer, and a kill in that moment cannot know the id.
    let state = s.state_dir().join("state.json");
    s.wait_until(
        "check run in progress and recorded",
        Duration::from_secs(60),
        || {
            runs_for("in_progress") == 1
                && std::fs::read_to_string(&state)
                    .is_ok_and(|t| t.contains(&c1) && t.contains("check_runs") && t.contains(&name))
        },
    );
    s.kill9();
    s.start(Some(&fake));
    s.wait_until("check run completed", Duration::from_secs(120), || {
        runs_for("completed") == 1
    });
    assert_eq!(runs_for(""), 1, "a second check run was created");
    fake.assert_no_violations();
}

/// Host settings under serve: applied with their own status context (`berth/it/host`), and a
/// pull request's preview shows the host diff — a secret file only as changed — applying
/// nothing.
#[test]
fn host_settings_get_their_own_status_and_previews_hide_secrets() {
    let rt = runtime();
    let fake = rt.block_on(GitHubFake::start());
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("host.conf");
    let key = dir.path().join("app.key");
    let manifest = |conf_text: &str, secret: &str| {
        format!(
            "kind: File\npath: {}\ncontent: \"{conf_text}\\n\"\n---\nkind: File\npath: {}\ncontent: \"{secret}\\n\"\nmode: \"0600\"\nsecret: true\n",
            conf.display(),
            key.display()
        )
    };
    let mut s = Serve::new("hoststatus");
    s.args = vec!["--poll-interval".into(), "1h".into()];
    let c1 = s.push(
        &[("host/berth.yaml", &manifest("v1", "first-hidden-key-1"))],
        "v1",
    );
    s.start(Some(&fake));
    s.wait_until("host status", Duration::from_secs(60), || {
        fake.statuses_for(&c1)
            .iter()
            .any(|x| x.context == "berth/it/host" && x.state == "success")
    });
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "v1\n");
    let st = fake.statuses_for(&c1);
    let host = st.iter().rfind(|x| x.context == "berth/it/host").unwrap();
    assert_eq!(host.description.as_deref(), Some("2 host settings changed"));

    s.repo
        .write("host/berth.yaml", &manifest("v2", "second-hidden-key-2"));
    let head = s.repo.commit("pr: host");
    s.repo.push_ref("refs/pull/9/head");
    let (code, body) = s.webhook(
        "pull_request",
        &pr_event("opened", 9, &head),
        "h-1",
        Some(SECRET),
    );
    assert_eq!(code, 202, "{body}");
    s.wait_until("preview comment", Duration::from_secs(60), || {
        !fake.comments(9).is_empty()
    });
    let comment = &fake.comments(9)[0].body;
    assert!(comment.contains("+v2"), "{comment}");
    assert!(comment.contains("secret: not shown"), "{comment}");
    for r in fake.requests() {
        let b = format!("{:?}", r.body);
        assert!(!b.contains("hidden-key"), "a secret reached GitHub: {b}");
    }
    assert!(!s.log().contains("hidden-key"));
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        "v1\n",
        "a preview applies nothing"
    );
    assert_eq!(
        std::fs::read_to_string(&key).unwrap(),
        "first-hidden-key-1\n"
    );
    assert_eq!(s.stop(), 0);
    fake.assert_no_violations();
}
