//! The remote and its transport: credentials carried to gix and scrubbed from every message,
//! deadlines, the classification of failures (timeout, network, refused), URL redaction.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use gix::protocol::transport::client::blocking_io::Transport;
use gix::remote::Direction;

use super::*;

/// The remote's URL and credentials, and the in-memory config that carries them to gix.
pub(super) struct Remote {
    pub(super) url: String,
    pub(super) url_redacted: String,
    pub(super) timeout: Duration,
    /// Strings scrubbed from every message: the token, its header form, the URL's userinfo.
    pub(super) secrets: Vec<String>,
    pub(super) config_overrides: Vec<String>,
}

impl Remote {
    pub(super) fn new(opts: &MirrorOptions) -> Self {
        // gix builds a reqwest client (rustls) for http(s) remotes.
        crate::tls::install_crypto_provider();
        let mut secrets = Vec::new();
        let mut config_overrides = Vec::new();
        if let Some(token) = &opts.token {
            let basic = base64(format!("x-access-token:{}", token.expose()).as_bytes());
            config_overrides.push(format!("http.extraHeader=Authorization: Basic {basic}"));
            secrets.push(token.expose().to_owned());
            secrets.push(basic);
        }
        if let Some(userinfo) = url_userinfo(&opts.url) {
            secrets.push(userinfo.to_owned());
            if let Some((_, password)) = userinfo.split_once(':') {
                secrets.push(password.to_owned());
            }
        }
        secrets.retain(|s| s.len() >= 4);
        // The longest first, so that a secret containing another one is scrubbed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));

        let secs = opts.timeout.as_secs().max(1);
        // Honoured by the curl backend; the reqwest backend gets the same limits through its
        // client builder (see `http_transport_options`).
        config_overrides.push(format!(
            "gitoxide.http.connectTimeout={}",
            opts.timeout.as_millis()
        ));
        config_overrides.push("http.lowSpeedLimit=1".to_owned());
        config_overrides.push(format!("http.lowSpeedTime={secs}"));
        if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
            config_overrides.push(format!(
                "core.sshCommand=ssh -o BatchMode=yes -o ConnectTimeout={secs} \
                 -o ServerAliveInterval={} -o ServerAliveCountMax=3",
                (secs / 3).max(1)
            ));
            config_overrides.push("ssh.variant=ssh".to_owned());
        }
        Remote {
            url: opts.url.clone(),
            url_redacted: redact_url(&opts.url),
            timeout: opts.timeout,
            secrets,
            config_overrides,
        }
    }

    /// `text` without any secret and with the URL redacted.
    pub(super) fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.url, &self.url_redacted);
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), "***");
        }
        out
    }

    pub(super) fn open_options(&self) -> gix::open::Options {
        gix::open::Options::default()
            .strict_config(false)
            .config_overrides(self.config_overrides.iter().map(String::as_str))
    }

    /// A network failure of `op`, classified.
    pub(super) fn net_error(&self, op: &'static str, err: &gix::Error) -> GitError {
        if let Some(message) = local_remote_missing(&self.url) {
            return GitError::Remote {
                op,
                url: self.url_redacted.clone(),
                message: self.scrub(&message),
            };
        }
        let message = self.scrub(&error_text(err));
        let timed_out = err.is_cancelled()
            || err.iter_errors().any(|e| {
                e.downcast_ref::<std::io::Error>().is_some_and(|io| {
                    matches!(
                        io.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    )
                })
            });
        if timed_out {
            return GitError::Timeout {
                op,
                url: self.url_redacted.clone(),
                after: self.timeout,
            };
        }
        let refused = err.is_unauthenticated()
            || err.is_permission_denied()
            || err.is_unsupported()
            || err.is_validation()
            || err.is_not_found()
            || remote_refused(&message);
        if refused && !err.is_retryable() {
            GitError::Remote {
                op,
                url: self.url_redacted.clone(),
                message,
            }
        } else {
            GitError::Network {
                op,
                url: self.url_redacted.clone(),
                message,
            }
        }
    }

    /// Run the network operation `f` on a worker thread with this remote's deadline.
    pub(super) fn with_deadline<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&AtomicBool) -> Result<T, GitError> + Send + 'static,
    ) -> Result<T, GitError> {
        let interrupt = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel(1);
        let flag = interrupt.clone();
        std::thread::Builder::new()
            .name(format!("git-{op}"))
            .spawn(move || {
                let _ = tx.send(f(&flag));
            })
            .map_err(|e| GitError::Internal {
                op,
                message: format!("cannot spawn a worker thread: {e}"),
            })?;
        let timeout = || GitError::Timeout {
            op,
            url: self.url_redacted.clone(),
            after: self.timeout,
        };
        let gone = || GitError::Internal {
            op,
            message: "the git worker thread panicked".to_owned(),
        };
        match rx.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(gone()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                interrupt.store(true, Ordering::SeqCst);
                tracing::debug!(op, url = %self.url_redacted, "git operation timed out, interrupting it");
                match rx.recv_timeout(INTERRUPT_GRACE) {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Timeout) => Err(timeout()),
                    Err(mpsc::RecvTimeoutError::Disconnected) => Err(gone()),
                }
            }
        }
    }

    /// A connection to the remote for fetching with `refspecs`, with timeouts on the transport
    /// and without interactive credential prompts.
    pub(super) fn connect<'r>(
        &self,
        repo: &'r gix::Repository,
        remote: &'r gix::Remote<'r>,
        op: &'static str,
    ) -> Result<gix::remote::Connection<'r, 'static, 'r, Box<dyn Transport + Send>>, GitError> {
        let net = |e: gix::Error| self.net_error(op, &e);
        let scheme = remote
            .url(Direction::Fetch)
            .map(|u| u.scheme.clone())
            .ok_or_else(|| GitError::Invalid("the remote has no URL".to_owned()))?;
        let mut connection = if scheme == gix::url::Scheme::Git {
            let (url, version) = remote
                .sanitized_url_and_version(Direction::Fetch)
                .map_err(net)?;
            let transport = self.connect_git_daemon(
                url,
                version,
                repo.config_snapshot()
                    .boolean("gitoxide.tracePacket")
                    .unwrap_or(false),
                op,
            )?;
            remote.to_connection_with_transport(Box::new(transport) as Box<dyn Transport + Send>)
        } else {
            remote.connect(Direction::Fetch).map_err(net)?
        };
        if matches!(scheme, gix::url::Scheme::Http | gix::url::Scheme::Https) {
            let options = self.http_transport_options(repo).map_err(net)?;
            connection.set_transport_options(options);
        }
        // No credential helpers or prompts: the token (if any) travels in a header.
        Ok(connection.with_credentials(|_action| Ok(None)))
    }

    /// `git://` with socket timeouts (gix's own connector only bounds the TCP connect, so a
    /// daemon that accepts and never answers would block a worker forever).
    pub(super) fn connect_git_daemon(
        &self,
        url: gix::Url,
        version: gix::protocol::transport::Protocol,
        trace: bool,
        op: &'static str,
    ) -> Result<
        gix::protocol::transport::client::git::blocking_io::Connection<
            std::net::TcpStream,
            std::net::TcpStream,
        >,
        GitError,
    > {
        use std::net::ToSocketAddrs;
        let network = |message: String| GitError::Network {
            op,
            url: self.url_redacted.clone(),
            message,
        };
        let host = url
            .host()
            .ok_or_else(|| GitError::Invalid(format!("{} has no host", self.url_redacted)))?
            .to_owned();
        let port = url.port;
        let addrs: Vec<_> = (host.as_str(), port.unwrap_or(9418))
            .to_socket_addrs()
            .map_err(|e| network(format!("cannot resolve {host}: {e}")))?
            .collect();
        let mut last_err = None;
        let mut stream = None;
        for addr in addrs {
            match std::net::TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let read = match (stream, last_err) {
            (Some(s), _) => s,
            (None, Some(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(GitError::Timeout {
                    op,
                    url: self.url_redacted.clone(),
                    after: self.timeout,
                });
            }
            (None, e) => {
                return Err(network(format!(
                    "cannot connect to {host}: {}",
                    e.map(|e| e.to_string())
                        .unwrap_or_else(|| "no address".to_owned())
                )));
            }
        };
        let io = |e: std::io::Error| network(format!("socket setup failed: {e}"));
        read.set_read_timeout(Some(self.timeout)).map_err(io)?;
        read.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let write = read.try_clone().map_err(io)?;
        Ok(
            gix::protocol::transport::client::git::blocking_io::Connection::new(
                read,
                write,
                version,
                url.path.clone(),
                Some((host, port)),
                gix::protocol::transport::client::git::ConnectMode::Daemon,
                trace,
            ),
        )
    }

    /// gix's HTTP options from config, plus connect and total timeouts for the reqwest client
    /// (which ignores `http.connectTimeout`/`http.lowSpeed*`).
    pub(super) fn http_transport_options(
        &self,
        repo: &gix::Repository,
    ) -> gix::Result<Box<dyn std::any::Any>> {
        use gix::protocol::transport::client::blocking_io::http;
        let mut options = repo
            .transport_options(self.url.as_str(), None)?
            .and_then(|o| o.downcast::<http::Options>().ok())
            .map(|o| *o)
            .unwrap_or_default();
        let timeout = self.timeout;
        let backend = http::reqwest::Options {
            configure_client: Some(Box::new(move |builder| {
                Ok(builder.connect_timeout(timeout).timeout(timeout))
            })),
            configure_request: None,
        };
        options.backend = Some(Arc::new(std::sync::Mutex::new(backend)));
        Ok(Box::new(options))
    }
}

/// A gix error as one line: each cause once, outermost first.
pub(super) fn error_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// Why a local remote (`file://…` or a path) cannot be read when its folder is not there as
/// berth sees it: it does not exist, or berth's sandbox hides it (the unit's `PrivateTmp=yes`
/// gives berth a /tmp and /var/tmp of its own). `None` for other remotes, or when it is there.
pub(super) fn local_remote_missing(url: &str) -> Option<String> {
    let path = match url.strip_prefix("file://") {
        Some(p) => Path::new(p.strip_prefix("localhost").unwrap_or(p)),
        None if url.starts_with('/') => Path::new(url),
        None => return None,
    };
    // A percent-encoded or relative path is not guessed at: gix's own error stands.
    if path.exists() || !path.is_absolute() || path.as_os_str().as_encoded_bytes().contains(&b'%') {
        return None;
    }
    let sandboxed = own_mount_namespace();
    let in_tmp = path.starts_with("/tmp") || path.starts_with("/var/tmp");
    Some(match (sandboxed, in_tmp) {
        (true, true) => format!(
            "no such repository folder {} as berth sees it: berth runs with a /tmp and /var/tmp of its own (berth.service has PrivateTmp=yes), which hides a repository under them; keep it elsewhere (e.g. under /srv)",
            path.display()
        ),
        (true, false) => format!(
            "no such repository folder {} as berth sees it (berth runs in a mount namespace of its own: does a sandbox option of its unit hide the path?)",
            path.display()
        ),
        (false, _) => format!("no such repository folder {}", path.display()),
    })
}

/// Whether berth runs in another mount namespace than PID 1 (a systemd unit's sandbox).
pub(super) fn own_mount_namespace() -> bool {
    match (
        std::fs::read_link("/proc/self/ns/mnt"),
        std::fs::read_link("/proc/1/ns/mnt"),
    ) {
        (Ok(mine), Ok(init)) => mine != init,
        _ => false,
    }
}

/// Whether a message says the remote refused (as opposed to being unreachable or overloaded).
pub(super) fn remote_refused(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    if let Some(pos) = m.find("http status ") {
        let code: String = m[pos + "http status ".len()..].chars().take(3).collect();
        return code.starts_with('4') && code != "408" && code != "429";
    }
    [
        "does not exist",
        "not a git repository",
        "does not appear to be a git repository",
        "not a valid git directory",
        "is a valid git directory",
        "repository not exported",
        "repository not found",
        "access denied",
        "permission denied",
        "authentication",
        "unauthorized",
        "forbidden",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

pub(super) use crate::model::{redact_url, url_userinfo};

/// Standard base64 (RFC 4648, padded), as HTTP Basic authentication wants.
pub(super) fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}
