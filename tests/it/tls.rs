//! https through rustls on ring (berth compiles no aws-lc-rs): real TLS handshakes with a local
//! `openssl s_server` whose self-signed certificate nobody trusts. Both https clients (the git
//! mirror's, through gix's reqwest transport, and the GitHub adapter's) must get through the
//! key exchange and refuse the certificate with an error that says so, not panic (reqwest
//! panics when no crypto provider is installed).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::git::{Mirror, MirrorOptions};
use berth::github::{Auth, GitHub, GitHubOptions};
use berth::model::Secret;

use crate::support::free_port;

/// `openssl s_server` on 127.0.0.1 with a fresh self-signed certificate; killed on drop.
struct TlsServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    fn start() -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &port.to_string()])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        let server = TlsServer {
            child,
            port,
            _dir: dir,
        };
        // Ready when it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn says_certificate(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("certificate") || m.contains("unknownissuer")
}

#[test]
fn https_git_remote_gets_a_tls_handshake_and_refuses_an_untrusted_certificate() {
    let server = TlsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let opts = MirrorOptions {
        url: format!("https://127.0.0.1:{}/org/repo.git", server.port),
        token: None,
        timeout: Duration::from_secs(10),
    };
    let err = Mirror::open_or_clone(&tmp.path().join("m"), &opts).expect_err("untrusted");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(says_certificate(&msg), "{msg}");
}

#[tokio::test]
async fn https_github_api_gets_a_tls_handshake_and_refuses_an_untrusted_certificate() {
    let server = TlsServer::start();
    let github = GitHub::new(GitHubOptions {
        api_url: format!("https://127.0.0.1:{}", server.port),
        repo: "org/repo".into(),
        auth: Auth::Token(Secret::new("t0ken")),
        timeout: Duration::from_secs(10),
    })
    .expect("a client");
    let err = github.pull_request(1).await.expect_err("untrusted");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(says_certificate(&msg), "{msg}");
    assert!(!msg.contains("t0ken"), "{msg}");
}
