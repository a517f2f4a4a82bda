//! The HTTP edge under slow clients: the real `berth serve` binary started at systemd's usual soft
//! open-file limit (1,024), 1,100 connections that send half a request and stall, and the probes
//! and webhooks that must keep being answered meanwhile.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::support::{GitRepo, free_port};

const SECRET: &str = "slow-clients-secret";
const STALLED: usize = 1_100;
// Long enough that opening 1,100 connections on a loaded 2-core CI machine (3 s measured) stays
// well inside it.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a probe may take while the stalled connections are open.
const ANSWER_BOUND: Duration = Duration::from_secs(2);

/// `berth serve` started through `sh -c 'ulimit -Sn 1024; exec berth serve …'`.
struct Daemon {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _repo: GitRepo,
    _state: tempfile::TempDir,
}

impl Daemon {
    fn start(test: &str) -> Daemon {
        let repo = GitRepo::new();
        repo.write("README.md", "no stacks\n");
        repo.commit("empty");
        repo.push();
        let state = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = state.path().join("serve.log");
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"ulimit -Sn 1024 && exec "$0" "$@""#)
            .arg(env!("CARGO_BIN_EXE_berth"))
            .arg("serve")
            .args(["--repo", &repo.file_url()])
            .args(["--state-dir", state.path().to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg(format!(
                "--http-header-timeout={}s",
                HEADER_TIMEOUT.as_secs()
            ))
            .arg(format!(
                "--http-request-timeout={}s",
                REQUEST_TIMEOUT.as_secs()
            ))
            .args(["--allow-empty", "--poll-interval", "1h"])
            .env(
                "BERTH_INSTANCE",
                format!("it-{test}-{}", std::process::id()),
            )
            .env("BERTH_WEBHOOK_SECRET", SECRET)
            .env("BERTH_LOG", "berth=debug")
            .env_remove("BERTH_GITHUB_TOKEN")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn berth serve");
        let d = Daemon {
            child,
            port,
            log,
            _repo: repo,
            _state: state,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(port, "/healthz").map(|r| r.0) != Some(200) {
            assert!(Instant::now() < deadline, "no /healthz\n{}", d.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// (soft, hard) "Max open files" of the daemon.
    fn fd_limits(&self) -> (String, String) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let mut cols = line["Max open files".len()..].split_whitespace();
        (
            cols.next().unwrap().to_string(),
            cols.next().unwrap().to_string(),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on a fresh connection; (status, body), `None` when it fails or takes over 10 s.
fn request(port: u16, head: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n"),
        b"",
    )
}

fn signed_ping(port: u16, n: usize) -> Option<(u16, String)> {
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let sig = hex::encode(mac.finalize().into_bytes());
    let head = format!(
        "POST /hooks/github HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\
         X-GitHub-Event: ping\r\nX-GitHub-Delivery: slow-{}-{n}\r\n\
         X-Hub-Signature-256: sha256={sig}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        std::process::id(),
        body.len()
    );
    request(port, &head, body)
}

/// Wait until the server closes `s` (EOF or reset) or `deadline` passes; true when closed.
fn closed_by(mut s: &TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an error response before the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true, // reset
        }
    }
}

/// Is `s` still open (no EOF, no reset) right now?
fn still_open(mut s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let open = matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    open
}

#[test]
fn stalled_clients_at_the_fd_limit_do_not_lock_the_endpoint() {
    // This process holds the client side of every connection.
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let d = Daemon::start("slow-clients");
    let (soft, hard) = d.fd_limits();
    assert_eq!(
        soft, hard,
        "the soft open-file limit is raised to the hard one"
    );

    let stalled_at = Instant::now();
    let stalled: Vec<TcpStream> = (0..STALLED)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
            s.write_all(format!("GET /healthz?{i} HTTP/1.1\r\nHost: berth\r\nX-Half: ").as_bytes())
                .unwrap();
            s
        })
        .collect();
    let opened = stalled_at.elapsed();

    // Younger than the stalled ones (so not the first to make room): a keep-alive connection
    // that was answered once and then idles, and a webhook whose body never finishes.
    let mut idle = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: berth\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 64];
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(idle.read(&mut first).unwrap() > 0);
    let idle_since = Instant::now();
    let mut dripping = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    dripping
        .write_all(
            b"POST /hooks/github HTTP/1.1\r\nHost: berth\r\nX-GitHub-Event: ping\r\n\
              Content-Length: 1000\r\n\r\n{\"zen\":",
        )
        .unwrap();

    // While they stall: the probe and a signed webhook are answered, within the bound.
    for n in 0..3 {
        let t = Instant::now();
        assert_eq!(
            get(d.port, "/healthz"),
            Some((200, "ok\n".into())),
            "{}",
            d.log()
        );
        assert!(
            t.elapsed() < ANSWER_BOUND,
            "/healthz took {:?}",
            t.elapsed()
        );
        let t = Instant::now();
        assert_eq!(signed_ping(d.port, n), Some((200, "pong\n".into())));
        assert!(t.elapsed() < ANSWER_BOUND, "ping took {:?}", t.elapsed());
    }
    // Only the oldest idle connections made room (at the 1,024 cap): most are still open, so
    // the answers above came while they stalled.
    let open_now = stalled.iter().filter(|s| still_open(s)).count();
    assert!(
        stalled_at.elapsed() < HEADER_TIMEOUT,
        "the checks took longer than the header timeout (opening took {opened:?})"
    );
    assert!(
        open_now >= 1024 - 64,
        "only {open_now} of {STALLED} stalled connections still open"
    );

    // The dripping body gets 408 after the request timeout.
    let mut reply = Vec::new();
    dripping
        .set_read_timeout(Some(REQUEST_TIMEOUT + Duration::from_secs(5)))
        .unwrap();
    let _ = dripping.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");

    // And the server closes every stalled connection, and the idle keep-alive one, after the
    // header timeout.
    let deadline = stalled_at + HEADER_TIMEOUT + Duration::from_secs(5);
    let still: usize = stalled.iter().filter(|s| !closed_by(s, deadline)).count();
    assert_eq!(
        still, 0,
        "{still} stalled connections outlived the header timeout"
    );
    assert!(
        closed_by(&idle, deadline),
        "the idle keep-alive connection stayed open"
    );
    let idled = idle_since.elapsed();
    assert!(
        idled >= HEADER_TIMEOUT - Duration::from_millis(500),
        "the idle keep-alive connection was closed after {idled:?}, before the header timeout"
    );

    // SIGTERM with a client stalled mid-head: berth exits at once, it does not wait for it.
    let mut late = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    late.write_all(b"GET /healthz HTTP/1.1\r\nHost: berth\r\n")
        .unwrap();
    assert_eq!(signed_ping(d.port, 99), Some((200, "pong\n".into())));
    let mut d = d;
    let t = Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &d.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let code = d.child.wait().unwrap().code();
    assert_eq!(code, Some(0), "{}", d.log());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
    assert!(closed_by(&late, Instant::now() + Duration::from_secs(1)));
}
