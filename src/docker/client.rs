//! The connection to the Engine: connect (API version from `/_ping`), request accounting.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;

use super::DEFAULT_DOCKER_HOST;
use super::error::{DockerError, error_chain};
use crate::model::DEFAULT_INSTANCE;

/// HTTP requests made through an [`Engine`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Every request.
    pub total: u64,
    /// Requests that may change something (anything but GET/HEAD).
    pub mutating: u64,
}

impl std::ops::Sub for RequestCounts {
    type Output = RequestCounts;
    fn sub(self, rhs: RequestCounts) -> RequestCounts {
        RequestCounts {
            total: self.total.saturating_sub(rhs.total),
            mutating: self.mutating.saturating_sub(rhs.mutating),
        }
    }
}

impl fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} requests ({} mutating)", self.total, self.mutating)
    }
}

const LOG_CAPACITY: usize = 512;

#[derive(Default)]
struct Counters {
    total: AtomicU64,
    mutating: AtomicU64,
    /// `METHOD /path` of the most recent requests (without the version prefix and query).
    log: Mutex<VecDeque<String>>,
}

impl Counters {
    fn snapshot(&self) -> RequestCounts {
        RequestCounts {
            total: self.total.load(Ordering::SeqCst),
            mutating: self.mutating.load(Ordering::SeqCst),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Engine
// ---------------------------------------------------------------------------------------------

/// bollard's default request timeout (seconds), kept for connections made by hand.
const DEFAULT_TIMEOUT_SECS: u64 = 120;

/// `GET /_ping` on a unix socket; the Engine's API version from its `API-Version` header.
async fn ping_api_version(path: &str) -> Result<bollard::ClientVersion, String> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client: Client<_, Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build(hyperlocal::UnixConnector);
    let uri: hyper::Uri = hyperlocal::Uri::new(path, "/_ping").into();
    let response = tokio::time::timeout(Duration::from_secs(15), client.get(uri))
        .await
        .map_err(|_| "no answer in time".to_string())?
        .map_err(|e| error_chain(&e))?;
    let header = response
        .headers()
        .get("api-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Drain the tiny body so the connection closes cleanly.
    let _ = response.into_body().collect().await;
    let header =
        header.ok_or_else(|| "the Engine sent no API-Version header on /_ping".to_string())?;
    let (major, minor) = header
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| format!("unreadable API-Version {header:?}"))?;
    Ok(bollard::ClientVersion {
        major_version: major,
        minor_version: minor,
    })
}

/// A connection to one Docker Engine, with request accounting.
#[derive(Clone)]
pub struct Engine {
    pub(super) docker: Docker,
    pub(super) host: String,
    api: (usize, usize),
    /// This berth instance: written as `io.berth.instance` on everything created.
    pub(super) instance: String,
    counters: Arc<Counters>,
    /// Requests made while connecting (version negotiation), not part of [`Engine::requests`].
    setup: RequestCounts,
    /// Clean-ups spawned by drop guards (a one-off container's removal): [`Engine::settle`]
    /// waits for them, so that a one-shot command does not exit before they are done.
    cleanups: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("host", &self.host)
            .field("api", &self.api_version())
            .finish()
    }
}

impl Engine {
    /// Connects to `DOCKER_HOST` (or the default socket) and negotiates the API version, so that
    /// both old (API 1.41) and new Engines work. Requests: 1 (setup, not counted in
    /// [`Engine::requests`]).
    pub async fn connect() -> Result<Engine, DockerError> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string());
        Engine::connect_to(&host).await
    }

    /// Connects to the Engine at `host` (`unix:///path`, `tcp://host:port`, `http://...`).
    /// Requests: 1 (setup).
    pub async fn connect_to(host: &str) -> Result<Engine, DockerError> {
        let host = host.to_string();
        let unreachable = |cause: String| DockerError::Unreachable {
            host: host.clone(),
            cause,
        };
        let counters = Arc::new(Counters::default());
        // On a unix socket, negotiate with one `GET /_ping` (its `API-Version` header): the
        // Engine answers it in well under a millisecond, where `GET /version` (bollard's
        // negotiation) takes 5-15 ms and dominated a no-op `berth plan`.
        let pinged = match host.strip_prefix("unix://") {
            Some(path) => {
                let version = ping_api_version(path).await.map_err(unreachable)?;
                counters.total.fetch_add(1, Ordering::SeqCst);
                let default = bollard::API_DEFAULT_VERSION;
                let version = if version < *default {
                    version
                } else {
                    *default
                };
                let docker = Docker::connect_with_unix(path, DEFAULT_TIMEOUT_SECS, &version)
                    .map_err(|e| unreachable(error_chain(&e)))?;
                Some(docker)
            }
            None => None,
        };
        let negotiate = pinged.is_none();
        let docker = match pinged {
            Some(docker) => docker,
            None => Docker::connect_with_host(&host).map_err(|e| unreachable(error_chain(&e)))?,
        };
        let c = counters.clone();
        let docker = docker.with_request_modifier(move |req| {
            let method = req.method().as_str().to_string();
            c.total.fetch_add(1, Ordering::SeqCst);
            if method != "GET" && method != "HEAD" {
                c.mutating.fetch_add(1, Ordering::SeqCst);
            }
            if let Ok(mut log) = c.log.lock() {
                if log.len() >= LOG_CAPACITY {
                    log.pop_front();
                }
                log.push_back(format!("{} {}", method, strip_version(req.uri().path())));
            }
            req
        });
        // A short timeout for the first contact, so that an unreachable TCP host fails fast.
        // The negotiated version is shared with `docker` (bollard keeps it behind an Arc).
        if negotiate {
            docker
                .clone()
                .with_timeout(Duration::from_secs(15))
                .negotiate_version()
                .await
                .map_err(|e| {
                    match DockerError::from_bollard(&host, "negotiate API version", e) {
                        DockerError::Unreachable { host, cause } => {
                            DockerError::Unreachable { host, cause }
                        }
                        DockerError::Timeout { .. } => unreachable("no answer in time".to_string()),
                        other => unreachable(other.to_string()),
                    }
                })?;
        }
        let v = docker.client_version();
        let setup = counters.snapshot();
        Ok(Engine {
            docker,
            host,
            api: (v.major_version, v.minor_version),
            instance: DEFAULT_INSTANCE.to_string(),
            counters,
            setup,
            cleanups: Arc::default(),
        })
    }

    /// Spawns a clean-up on the current runtime (none: it cannot run, and is logged), for
    /// [`Engine::settle`] to wait for.
    pub(crate) fn spawn_cleanup(
        &self,
        what: &str,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let h = handle.spawn(task);
                if let Ok(mut list) = self.cleanups.lock() {
                    list.retain(|h| !h.is_finished());
                    list.push(h);
                }
            }
            Err(_) => tracing::error!("cannot {what}: no async runtime left to do it"),
        }
    }

    /// Waits for the clean-ups spawned so far (see [`Engine::spawn_cleanup`]).
    pub async fn settle(&self) {
        loop {
            let pending: Vec<_> = match self.cleanups.lock() {
                Ok(mut list) => std::mem::take(&mut *list),
                Err(_) => return,
            };
            if pending.is_empty() {
                return;
            }
            for h in pending {
                let _ = h.await;
            }
        }
    }

    /// Sets this berth instance's name (default [`DEFAULT_INSTANCE`]): written as
    /// `io.berth.instance` on every object created, and used by `observe` to tell which
    /// stacks left the config.
    pub fn with_instance(mut self, instance: impl Into<String>) -> Engine {
        self.instance = instance.into();
        self
    }

    /// This berth instance's name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Where the Engine is (`unix:///var/run/docker.sock`, `tcp://...`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The negotiated API version, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        format!("{}.{}", self.api.0, self.api.1)
    }

    pub(super) fn api_at_least(&self, major: usize, minor: usize) -> bool {
        self.api >= (major, minor)
    }

    /// Requests made since [`Engine::connect`] returned (setup excluded). Clones of an Engine
    /// share the counters.
    pub fn requests(&self) -> RequestCounts {
        self.counters.snapshot() - self.setup
    }

    /// Requests made while connecting (version negotiation).
    pub fn setup_requests(&self) -> RequestCounts {
        self.setup
    }

    /// `METHOD /path` of the most recent requests (up to 512), oldest first, setup included.
    pub fn request_log(&self) -> Vec<String> {
        self.counters
            .log
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn err(&self, op: impl Into<String>, e: BollardError) -> DockerError {
        DockerError::from_bollard(&self.host, op, e)
    }
}

/// `/v1.41/containers/json` → `/containers/json`.
fn strip_version(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(i) = rest.find('/')
        && rest[..i].chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        return &rest[i..];
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths() {
        assert_eq!(strip_version("/v1.41/containers/json"), "/containers/json");
        assert_eq!(strip_version("/version"), "/version");
    }
}
