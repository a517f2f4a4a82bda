//! The git adapter: a bare mirror of the config repository in a state dir, kept up to date over
//! the network with gix. This is the only module that talks to gix (no `git` CLI is spawned by
//! berth itself; gix spawns `git-upload-pack` for `file://` and `ssh` for `ssh://` URLs).
//!
//! Everything here is blocking: call it from `tokio::task::spawn_blocking`.
//!
//! Every network operation (`open_or_clone` when it clones, `remote_ref`, `fetch`) runs on a
//! worker thread with a deadline of [`MirrorOptions::timeout`]: when it passes, gix's interrupt
//! flag is raised and the call returns [`GitError::Timeout`] without waiting for the worker any
//! longer than a short grace period. Blocking reads are bounded too, so that a timed-out worker
//! does not linger: `git://` sockets get read/write timeouts, the HTTP client gets connect and
//! total timeouts, and `ssh` gets `ConnectTimeout`/`ServerAliveInterval` (unless the operator
//! configured their own ssh command).
//!
//! Credentials: the token is sent as an HTTP `Authorization` header (in-memory config
//! `http.extraHeader`, never written to disk) and is scrubbed, together with any userinfo of the
//! URL, from every error message.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use gix::bstr::ByteSlice;
use gix::protocol::transport::client::blocking_io::Transport;
use gix::remote::Direction;

use crate::model::Secret;

/// The refspec that mirrors every branch, forced (the caller decides about force pushes).
pub const BRANCHES_REFSPEC: &str = "+refs/heads/*:refs/heads/*";

/// How long a timed-out worker gets to wind down after its interrupt flag was raised.
const INTERRUPT_GRACE: Duration = Duration::from_millis(200);

/// Where and how to reach the remote.
#[derive(Clone)]
pub struct MirrorOptions {
    pub url: String,
    /// Sent as `Authorization: Basic base64("x-access-token:<token>")` over http(s) (what GitHub,
    /// Gitea/Forgejo and GitLab accept for personal access and app installation tokens).
    pub token: Option<Secret>,
    /// Deadline of each network operation.
    pub timeout: Duration,
}

impl MirrorOptions {
    pub fn new(url: impl Into<String>) -> Self {
        MirrorOptions {
            url: url.into(),
            token: None,
            timeout: Duration::from_secs(60),
        }
    }
}

impl fmt::Debug for MirrorOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorOptions")
            .field("url", &redact_url(&self.url))
            .field("token", &self.token)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What went wrong, with the URL redacted of credentials and the token scrubbed from every
/// message (gix's own texts included).
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The operation did not finish within the configured timeout. Transient.
    #[error("git {op} from {url} timed out after {after:?}")]
    Timeout {
        op: &'static str,
        url: String,
        after: Duration,
    },
    /// The remote could not be reached or the connection broke. Transient.
    #[error("git {op} from {url} failed: {message}")]
    Network {
        op: &'static str,
        url: String,
        message: String,
    },
    /// The remote answered but refused: repository missing or not exported, authentication or
    /// authorisation failed, unsupported URL. Permanent until the configuration changes.
    #[error("git {op} from {url} was refused: {message}")]
    Remote {
        op: &'static str,
        url: String,
        message: String,
    },
    /// The mirror could not be created or opened. Permanent.
    #[error("git mirror at {path}: {message}")]
    Mirror { path: PathBuf, message: String },
    /// A commit, object or path that is not in the mirror. Permanent (for that input).
    #[error("git: {what} not found{}", detail_suffix(.detail))]
    NotFound { what: String, detail: String },
    /// Bad input: not a commit id, a tree path that is no folder, an unsafe symlink target, an
    /// export destination that already exists. Permanent.
    #[error("git: {0}")]
    Invalid(String),
    /// A local filesystem error (disk full, permissions). Transient: the condition may clear.
    #[error("git: {path}: {message}")]
    Io { path: PathBuf, message: String },
    /// An unexpected failure inside gix. Permanent.
    #[error("git {op}: {message}")]
    Internal { op: &'static str, message: String },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl GitError {
    /// Worth retrying later without a configuration change: timeouts, network failures and
    /// local I/O errors.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GitError::Timeout { .. } | GitError::Network { .. } | GitError::Io { .. }
        )
    }

    fn io(path: &Path, err: std::io::Error) -> Self {
        GitError::Io {
            path: path.to_owned(),
            message: err.to_string(),
        }
    }
}

/// A bare mirror of one remote repository. Cheap to share: `Send + Sync`, every call opens a
/// thread-local handle on the shared repository.
pub struct Mirror {
    dir: PathBuf,
    repo: gix::ThreadSafeRepository,
    remote: Arc<Remote>,
}

impl fmt::Debug for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirror")
            .field("dir", &self.dir)
            .field("url", &self.remote.url_redacted)
            .finish()
    }
}

/// The remote's URL and credentials, and the in-memory config that carries them to gix.
struct Remote {
    url: String,
    url_redacted: String,
    timeout: Duration,
    /// Strings scrubbed from every message: the token, its header form, the URL's userinfo.
    secrets: Vec<String>,
    config_overrides: Vec<String>,
}

impl Remote {
    fn new(opts: &MirrorOptions) -> Self {
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
    fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.url, &self.url_redacted);
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), "***");
        }
        out
    }

    fn open_options(&self) -> gix::open::Options {
        gix::open::Options::default()
            .strict_config(false)
            .config_overrides(self.config_overrides.iter().map(String::as_str))
    }

    /// A network failure of `op`, classified.
    fn net_error(&self, op: &'static str, err: &gix::Error) -> GitError {
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
    fn with_deadline<T: Send + 'static>(
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
    fn connect<'r>(
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
    fn connect_git_daemon(
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
    fn http_transport_options(
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

impl Mirror {
    /// Open the bare mirror at `dir`, or clone it from `opts.url` when it is missing, broken,
    /// unfinished, or a mirror of another URL (the folder is removed first; a warning says why).
    pub fn open_or_clone(dir: &Path, opts: &MirrorOptions) -> Result<Mirror, GitError> {
        let remote = Arc::new(Remote::new(opts));
        if dir.exists() {
            match Self::open_existing(dir, &remote) {
                Ok(mirror) => return Ok(mirror),
                Err(reason) => {
                    tracing::warn!(
                        dir = %dir.display(),
                        url = %remote.url_redacted,
                        "removing the git mirror and cloning it again: {reason}"
                    );
                    std::fs::remove_dir_all(dir).map_err(|e| GitError::io(dir, e))?;
                }
            }
        }
        Self::clone(dir, remote)
    }

    /// The mirror at `dir` if it is a finished mirror of the remote's URL, else why not.
    fn open_existing(dir: &Path, remote: &Arc<Remote>) -> Result<Mirror, String> {
        let repo =
            gix::ThreadSafeRepository::open_opts(dir, remote.open_options()).map_err(|e| {
                format!(
                    "it is not a git repository ({})",
                    remote.scrub(&error_text(&e))
                )
            })?;
        let local = repo.to_thread_local();
        if !local.is_bare() {
            return Err("it is not a bare repository".to_owned());
        }
        let url = local
            .config_snapshot()
            .string("remote.origin.url")
            .map(|u| u.to_string());
        match url {
            Some(url) if url == remote.url => Ok(Mirror {
                dir: dir.to_owned(),
                repo,
                remote: remote.clone(),
            }),
            Some(url) => Err(format!(
                "it mirrors {} instead of {}",
                redact_url(&url),
                remote.url_redacted
            )),
            None => Err("an earlier clone did not finish".to_owned()),
        }
    }

    fn clone(dir: &Path, remote: Arc<Remote>) -> Result<Mirror, GitError> {
        let mirror_err = |e: gix::Error| GitError::Mirror {
            path: dir.to_owned(),
            message: remote.scrub(&error_text(&e)),
        };
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| GitError::io(parent, e))?;
        }
        let started = std::time::Instant::now();
        let repo = gix::ThreadSafeRepository::init_opts(
            dir,
            gix::create::Kind::Bare,
            gix::create::Options::default(),
            remote.open_options(),
        )
        .map_err(mirror_err)?;
        let mirror = Mirror {
            dir: dir.to_owned(),
            repo,
            remote: remote.clone(),
        };
        let result = mirror
            .fetch_op("clone", vec![BRANCHES_REFSPEC.to_owned()])
            .and_then(|()| mirror.save_remote_config());
        match result {
            Ok(()) => {
                tracing::info!(
                    dir = %dir.display(),
                    url = %remote.url_redacted,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "cloned git mirror"
                );
                Ok(mirror)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(dir);
                Err(e)
            }
        }
    }

    /// Persist `remote.origin` (URL and branch refspec): marks the clone as finished and lets a
    /// human run `git fetch` in the mirror. No credentials are written.
    fn save_remote_config(&self) -> Result<(), GitError> {
        let path = self.dir.join("config");
        let err = |message: String| GitError::Mirror {
            path: path.clone(),
            message,
        };
        let mut file =
            gix::config::File::from_path_no_includes(path.clone(), gix::config::Source::Local)
                .map_err(|e| err(error_text(&e)))?;
        file.set_raw_value_by("remote", Some("origin".into()), "fetch", BRANCHES_REFSPEC)
            .map_err(|e| err(error_text(&e)))?;
        file.set_raw_value_by(
            "remote",
            Some("origin".into()),
            "url",
            self.remote.url.as_str(),
        )
        .map_err(|e| err(error_text(&e)))?;
        let mut buf = Vec::new();
        file.write_to(&mut buf).map_err(|e| err(e.to_string()))?;
        let tmp = self.dir.join("config.berth-tmp");
        std::fs::write(&tmp, &buf).map_err(|e| GitError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| GitError::io(&path, e))?;
        Ok(())
    }

    /// The folder of the bare repository.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The remote's URL with credentials redacted (for logs).
    pub fn url_redacted(&self) -> &str {
        &self.remote.url_redacted
    }

    /// The remote's current commit for `refname` (e.g. `refs/heads/main`) from one ref
    /// advertisement, without fetching objects. `Ok(None)` when the remote has no such ref.
    /// Annotated tags are peeled to their commit.
    pub fn remote_ref(&self, refname: &str) -> Result<Option<String>, GitError> {
        let repo = self.repo.clone();
        let remote = self.remote.clone();
        let refname = refname.to_owned();
        self.remote.with_deadline("ls-refs", move |_interrupt| {
            let op = "ls-refs";
            let repo = repo.to_thread_local();
            let net = |e: gix::Error| remote.net_error(op, &e);
            let spec = repo
                .remote_at(remote.url.as_str())
                .map_err(net)?
                .with_refspecs([refname.as_str()], Direction::Fetch)
                .map_err(|e| {
                    GitError::Invalid(format!("bad ref name {refname:?}: {}", error_text(&e)))
                })?
                .with_fetch_tags(gix::remote::fetch::Tags::None);
            let connection = remote.connect(&repo, &spec, op)?;
            let (ref_map, _handshake) = connection
                .ref_map(gix::progress::Discard, Default::default())
                .map_err(net)?;
            Ok(ref_map.remote_refs.iter().find_map(|r| {
                let (name, target, peeled) = r.unpack();
                (name == refname.as_bytes())
                    .then(|| peeled.or(target).map(|id| id.to_hex().to_string()))
                    .flatten()
            }))
        })
    }

    /// The mirror's value of `refname`, peeled to an object id.
    pub fn local_ref(&self, refname: &str) -> Result<Option<String>, GitError> {
        let repo = self.repo.to_thread_local();
        let reference = repo.try_find_reference(refname).map_err(|e| {
            GitError::Invalid(format!("bad ref name {refname:?}: {}", error_text(&e)))
        })?;
        match reference {
            None => Ok(None),
            Some(mut r) => {
                let id = r.peel_to_id().map_err(|e| GitError::NotFound {
                    what: format!("the object of {refname}"),
                    detail: error_text(&e),
                })?;
                Ok(Some(id.to_hex().to_string()))
            }
        }
    }

    /// Fetch `refspecs` (e.g. [`BRANCHES_REFSPEC`], `+refs/pull/1/head:refs/pull/1/head`),
    /// transferring only missing objects and updating local refs (forced updates included when
    /// the refspec says `+`). A source ref the remote does not have is no error: its local ref
    /// is left alone. An empty list fetches all branches.
    pub fn fetch(&self, refspecs: &[String]) -> Result<(), GitError> {
        let refspecs = if refspecs.is_empty() {
            vec![BRANCHES_REFSPEC.to_owned()]
        } else {
            refspecs.to_vec()
        };
        self.fetch_op("fetch", refspecs)
    }

    fn fetch_op(&self, op: &'static str, refspecs: Vec<String>) -> Result<(), GitError> {
        let repo = self.repo.clone();
        let remote = self.remote.clone();
        let started = std::time::Instant::now();
        self.remote.with_deadline(op, move |interrupt| {
            let repo = repo.to_thread_local();
            let net = |e: gix::Error| remote.net_error(op, &e);
            let spec = repo
                .remote_at(remote.url.as_str())
                .map_err(net)?
                .with_refspecs(refspecs.iter().map(String::as_str), Direction::Fetch)
                .map_err(|e| {
                    GitError::Invalid(format!("bad refspec in {refspecs:?}: {}", error_text(&e)))
                })?
                .with_fetch_tags(gix::remote::fetch::Tags::None);
            let connection = remote.connect(&repo, &spec, op)?;
            let outcome = connection
                .prepare_fetch(gix::progress::Discard, Default::default())
                .map_err(net)?
                .with_reflog_message(gix::remote::fetch::RefLogMessage::Override {
                    message: format!("berth: {op}").into(),
                })
                .receive(gix::progress::Discard, interrupt)
                .map_err(net)?;
            let updates = match &outcome.status {
                gix::remote::fetch::Status::NoPackReceived { update_refs, .. }
                | gix::remote::fetch::Status::Change { update_refs, .. } => update_refs,
            };
            let rejected: Vec<String> = updates
                .updates
                .iter()
                .zip(outcome.ref_map.mappings.iter())
                .filter(|(u, _)| {
                    use gix::remote::fetch::refs::update::Mode;
                    !matches!(
                        u.mode,
                        Mode::NoChangeNeeded
                            | Mode::FastForward
                            | Mode::Forced
                            | Mode::New
                            | Mode::ImplicitTagNotSentByRemote
                    )
                })
                .map(|(u, m)| format!("{:?}: {}", m.remote, u.mode))
                .collect();
            if !rejected.is_empty() {
                return Err(GitError::Internal {
                    op,
                    message: format!("ref updates rejected: {}", rejected.join(", ")),
                });
            }
            tracing::debug!(
                op,
                url = %remote.url_redacted,
                elapsed_ms = started.elapsed().as_millis() as u64,
                refs = updates.edits.len(),
                "fetched"
            );
            Ok(())
        })
    }

    /// Whether `ancestor` is an ancestor of, or equal to, `descendant` (both commits present
    /// locally).
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool, GitError> {
        let repo = self.repo.to_thread_local();
        let a = self.commit_id(&repo, ancestor)?;
        let d = self.commit_id(&repo, descendant)?;
        if a == d {
            return Ok(true);
        }
        match repo.merge_base(a, d) {
            Ok(base) => Ok(base.is_some_and(|b| b.detach() == a)),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(GitError::Internal {
                op: "merge-base",
                message: error_text(&e),
            }),
        }
    }

    /// Whether a commit object `commit` is present locally.
    pub fn has_commit(&self, commit: &str) -> bool {
        let repo = self.repo.to_thread_local();
        self.commit_id(&repo, commit).is_ok()
    }

    /// `<summary> (<author name>)` of a commit, for logs and status texts.
    pub fn commit_summary(&self, commit: &str) -> Result<String, GitError> {
        let repo = self.repo.to_thread_local();
        let id = self.commit_id(&repo, commit)?;
        let commit = repo
            .find_commit(id)
            .map_err(|e| not_found(commit_what(&id), &e))?;
        let corrupt = |e: gix::Error| GitError::Internal {
            op: "read commit",
            message: error_text(&e),
        };
        let summary = commit.message().map_err(corrupt)?.summary().to_string();
        let author = commit.author().map_err(corrupt)?.name.to_string();
        Ok(format!("{summary} ({author})"))
    }

    /// Write the files of `commit`'s tree under `subpath` (`""` = the root) into `dest`, which is
    /// created and must not exist. Executable bits are kept; symlinks are written as symlinks
    /// unless their target is absolute or leaves `dest` (an error); submodules are skipped with
    /// a warning. On error `dest` is removed again.
    pub fn export_tree(&self, commit: &str, subpath: &str, dest: &Path) -> Result<(), GitError> {
        let repo = self.repo.to_thread_local();
        let id = self.commit_id(&repo, commit)?;
        let tree = repo
            .find_commit(id)
            .and_then(|c| c.tree())
            .map_err(|e| not_found(format!("the tree of commit {id}"), &e))?;
        let subpath = subpath.trim_matches('/');
        let tree = if subpath.is_empty() {
            tree
        } else {
            let rel = validate_rel_path(subpath)?;
            let entry = tree
                .lookup_entry_by_path(&rel)
                .map_err(|e| not_found(format!("{subpath:?} in commit {id}"), &e))?
                .ok_or_else(|| GitError::NotFound {
                    what: format!("folder {subpath:?} in commit {id}"),
                    detail: String::new(),
                })?;
            if !entry.mode().is_tree() {
                return Err(GitError::Invalid(format!(
                    "{subpath:?} in commit {id} is not a folder"
                )));
            }
            entry
                .object()
                .map_err(|e| not_found(format!("the tree {subpath:?} in commit {id}"), &e))?
                .into_tree()
        };
        if dest.symlink_metadata().is_ok() {
            return Err(GitError::Invalid(format!(
                "export destination {} already exists",
                dest.display()
            )));
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| GitError::io(parent, e))?;
        }
        std::fs::create_dir(dest).map_err(|e| GitError::io(dest, e))?;
        let result =
            set_folder_mode(dest).and_then(|()| write_tree(&repo, &tree, dest, Path::new("")));
        if result.is_err() {
            let _ = std::fs::remove_dir_all(dest);
        }
        result
    }

    /// `commit` as the id of a commit present in the mirror.
    fn commit_id(&self, repo: &gix::Repository, commit: &str) -> Result<gix::ObjectId, GitError> {
        let id = gix::ObjectId::from_hex(commit.as_bytes())
            .map_err(|_| GitError::Invalid(format!("{commit:?} is not a full commit id")))?;
        match repo.find_header(id) {
            Ok(header) if header.kind() == gix::object::Kind::Commit => Ok(id),
            Ok(header) => Err(GitError::Invalid(format!(
                "{id} is a {} and not a commit",
                header.kind()
            ))),
            Err(e) => Err(not_found(commit_what(&id), &e)),
        }
    }
}

fn commit_what(id: &gix::ObjectId) -> String {
    format!("commit {id}")
}

fn not_found(what: String, err: &gix::Error) -> GitError {
    GitError::NotFound {
        what,
        detail: error_text(err),
    }
}

/// Write `tree` into `dir` (which exists); `rel` is `dir` relative to the export root.
fn write_tree(
    repo: &gix::Repository,
    tree: &gix::Tree<'_>,
    dir: &Path,
    rel: &Path,
) -> Result<(), GitError> {
    use gix::object::tree::EntryKind;
    let internal = |e: gix::Error| GitError::Internal {
        op: "export",
        message: error_text(&e),
    };
    for entry in tree.iter() {
        let entry = entry.map_err(internal)?;
        let name = entry.filename().to_str().map_err(|_| {
            GitError::Invalid(format!(
                "{}: file name {:?} is not UTF-8",
                rel.display(),
                entry.filename()
            ))
        })?;
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(GitError::Invalid(format!(
                "{}: unsafe file name {name:?} in tree",
                rel.display()
            )));
        }
        let path = dir.join(name);
        let rel_path = rel.join(name);
        let oid = entry.oid().to_owned();
        match entry.mode().kind() {
            EntryKind::Tree => {
                let sub = repo
                    .find_tree(oid)
                    .map_err(|e| not_found(format!("tree {}", rel_path.display()), &e))?;
                std::fs::create_dir(&path).map_err(|e| GitError::io(&path, e))?;
                set_folder_mode(&path)?;
                write_tree(repo, &sub, &path, &rel_path)?;
            }
            kind @ (EntryKind::Blob | EntryKind::BlobExecutable) => {
                let blob = repo
                    .find_blob(oid)
                    .map_err(|e| not_found(format!("file {}", rel_path.display()), &e))?;
                std::fs::write(&path, &blob.data).map_err(|e| GitError::io(&path, e))?;
                set_executable(&path, kind == EntryKind::BlobExecutable)?;
            }
            EntryKind::Link => {
                let blob = repo
                    .find_blob(oid)
                    .map_err(|e| not_found(format!("symlink {}", rel_path.display()), &e))?;
                let target = blob.data.to_str().map_err(|_| {
                    GitError::Invalid(format!(
                        "symlink {} has a non-UTF-8 target",
                        rel_path.display()
                    ))
                })?;
                check_symlink(&rel_path, target)?;
                symlink(target, &path)?;
            }
            EntryKind::Commit => {
                tracing::warn!(path = %rel_path.display(), commit = %oid, "skipping git submodule in export");
            }
        }
    }
    Ok(())
}

/// Refuse a symlink at `link` (relative to the export root) whose `target` is absolute or
/// resolves outside the export root.
fn check_symlink(link: &Path, target: &str) -> Result<(), GitError> {
    let refuse = |why: &str| {
        GitError::Invalid(format!(
            "symlink {} -> {target:?} {why}; refusing to export it",
            link.display()
        ))
    };
    let target_path = Path::new(target);
    if target.is_empty() {
        return Err(refuse("has an empty target"));
    }
    if target_path.is_absolute() || target.starts_with('\\') || target.contains('\0') {
        return Err(refuse("is absolute"));
    }
    let mut depth = link.components().count() as isize - 1; // the link's folder
    for component in target_path.components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(refuse("is absolute")),
        }
        if depth < 0 {
            return Err(refuse("points outside the exported tree"));
        }
    }
    Ok(())
}

/// `subpath` as a relative path without `.`/`..` components.
fn validate_rel_path(subpath: &str) -> Result<PathBuf, GitError> {
    let path = Path::new(subpath);
    if path.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(path.to_owned())
    } else {
        Err(GitError::Invalid(format!(
            "tree path {subpath:?} must be relative without '.' or '..'"
        )))
    }
}

#[cfg(unix)]
fn set_executable(path: &Path, executable: bool) -> Result<(), GitError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| GitError::io(path, e))
}

#[cfg(not(unix))]
fn set_executable(_path: &Path, _executable: bool) -> Result<(), GitError> {
    Ok(())
}

/// Folders are 0755 whatever the umask, as files get git's 0644/0755: a container that runs as
/// another user must read a bind-mounted folder even when berth runs with `UMask=0077`
/// (dist/berth.service).
#[cfg(unix)]
fn set_folder_mode(path: &Path) -> Result<(), GitError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| GitError::io(path, e))
}

#[cfg(not(unix))]
fn set_folder_mode(_path: &Path) -> Result<(), GitError> {
    Ok(())
}

#[cfg(unix)]
fn symlink(target: &str, path: &Path) -> Result<(), GitError> {
    std::os::unix::fs::symlink(target, path).map_err(|e| GitError::io(path, e))
}

#[cfg(not(unix))]
fn symlink(_target: &str, path: &Path) -> Result<(), GitError> {
    Err(GitError::Invalid(format!(
        "{}: symlinks are not supported on this platform",
        path.display()
    )))
}

/// A gix error as one line: each cause once, outermost first.
fn error_text(err: &(dyn std::error::Error + 'static)) -> String {
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
fn local_remote_missing(url: &str) -> Option<String> {
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
fn own_mount_namespace() -> bool {
    match (
        std::fs::read_link("/proc/self/ns/mnt"),
        std::fs::read_link("/proc/1/ns/mnt"),
    ) {
        (Ok(mine), Ok(init)) => mine != init,
        _ => false,
    }
}

/// Whether a message says the remote refused (as opposed to being unreachable or overloaded).
fn remote_refused(message: &str) -> bool {
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

/// The userinfo (`user[:password]`) of a `scheme://userinfo@host/…` URL.
fn url_userinfo(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.rsplit_once('@').map(|(userinfo, _)| userinfo)
}

/// `url` without credentials: the userinfo of `scheme://userinfo@host/…` becomes `***` (for
/// ssh:// only a password is removed: the user name is no secret there).
pub fn redact_url(url: &str) -> String {
    let Some(userinfo) = url_userinfo(url) else {
        return url.to_owned();
    };
    let (scheme, rest) = url.split_once("://").expect("url_userinfo found ://");
    let host_and_path = &rest[userinfo.len() + 1..];
    let kept = if scheme.eq_ignore_ascii_case("ssh") {
        match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***"),
            None => userinfo.to_owned(),
        }
    } else {
        "***".to_owned()
    };
    format!("{scheme}://{kept}@{host_and_path}")
}

/// Standard base64 (RFC 4648, padded), as HTTP Basic authentication wants.
fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Mirror>();
        assert_send_sync::<GitError>();
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("https://tok@github.com/a/b"),
            "https://***@github.com/a/b"
        );
        assert_eq!(redact_url("https://u:p@h/x@y"), "https://***@h/x@y");
        assert_eq!(redact_url("ssh://git:pw@h/r"), "ssh://git:***@h/r");
        assert_eq!(redact_url("ssh://git@h/r"), "ssh://git@h/r");
        assert_eq!(redact_url("git@github.com:a/b"), "git@github.com:a/b");
        assert_eq!(redact_url("file:///srv/repo"), "file:///srv/repo");
    }

    #[test]
    fn refusals_are_told_from_outages() {
        assert!(
            local_remote_missing("file:///nonexistent/berth/origin.git").is_some_and(
                |m| m.contains("no such repository folder /nonexistent/berth/origin.git")
            )
        );
        assert!(local_remote_missing("file://localhost/nonexistent/x.git").is_some());
        assert_eq!(local_remote_missing("file:///"), None);
        assert_eq!(local_remote_missing("file:///srv/my%20repo.git"), None);
        assert_eq!(local_remote_missing("https://github.com/a/b.git"), None);
        assert!(remote_refused("handshake failed: Received HTTP status 404"));
        assert!(remote_refused("Received HTTP status 403"));
        assert!(!remote_refused("Received HTTP status 429"));
        assert!(!remote_refused("Received HTTP status 503"));
        assert!(!remote_refused(
            "error sending request for url (https://h:40401/x): Connection refused"
        ));
        assert!(remote_refused(
            "access denied or repository not exported: /x.git"
        ));
        assert!(remote_refused("git@h: Permission denied (publickey)."));
        assert!(!remote_refused(
            "ssh: Could not resolve hostname h: Name or service not known"
        ));
    }

    #[test]
    fn symlinks_must_stay_inside() {
        assert!(check_symlink(Path::new("a"), "b").is_ok());
        assert!(check_symlink(Path::new("d/a"), "../b").is_ok());
        assert!(check_symlink(Path::new("d/a"), "./x/../../b").is_ok());
        assert!(check_symlink(Path::new("a"), "../b").is_err());
        assert!(check_symlink(Path::new("d/a"), "../../b").is_err());
        assert!(check_symlink(Path::new("a"), "/etc/passwd").is_err());
        assert!(check_symlink(Path::new("a"), "").is_err());
    }
}
