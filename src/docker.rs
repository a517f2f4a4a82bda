//! The Docker adapter: the only module that talks to the Engine (and the only one that imports
//! bollard). Everything else works on [`crate::model`] types.
//!
//! Every method makes a known number of HTTP requests (documented on each method) and counts
//! them, so that tests and benchmarks can assert that a no-op reconcile costs exactly two
//! requests (one container list, one image list). See [`Engine::requests`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum,
    DeviceMapping as EngineDevice, DeviceRequest as EngineDeviceRequest, EndpointIpamConfig,
    EndpointSettings, HealthConfig, HealthStatusEnum, HostConfig, HostConfigCgroupnsModeEnum,
    HostConfigLogConfig, Ipam as EngineIpam, IpamConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType, MountVolumeOptions,
    NetworkConnectRequest, NetworkCreateRequest, NetworkingConfig, PortBinding,
    ResourcesBlkioWeightDevice, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
    ThrottleDevice, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions,
    ListImagesOptions, ListNetworksOptions, ListVolumesOptions, RemoveContainerOptions,
    RemoveVolumeOptions, RenameContainerOptions, StartContainerOptions, StopContainerOptions,
    UploadToContainerOptions,
};
use futures_util::StreamExt;

pub use crate::model::normalize_image_ref;
use crate::model::{
    ContainerState, DEFAULT_INSTANCE, Desired, Health, MountSource, MountSpec, NetworkAttachment,
    NetworkSpec, Observed, ObservedContainer, ObservedMount, ObservedObject, Secret, ServiceSpec,
    StackSpec, VolumeSpec, labels,
};

/// Where the Engine is when `DOCKER_HOST` is not set.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Suffix of the name an old container carries while its replacement starts.
pub const OLD_SUFFIX: &str = "-berth-old";

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// An Engine operation failed. Each variant knows whether retrying later may help
/// ([`DockerError::is_transient`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerError {
    /// The Engine cannot be reached at all (socket missing, connection refused, ...).
    #[error(
        "cannot reach the Docker Engine at {host}: {cause}. Is dockerd running? Set DOCKER_HOST to reach another engine."
    )]
    Unreachable { host: String, cause: String },
    /// The Engine did not answer in time.
    #[error("{op}: the Docker Engine did not answer in time")]
    Timeout { op: String },
    /// An image is missing and could not be pulled.
    #[error("cannot pull image {image}: {cause}")]
    Pull {
        image: String,
        cause: String,
        transient: bool,
    },
    /// 404: the object does not exist.
    #[error("{op}: not found: {message}")]
    NotFound { op: String, message: String },
    /// 409: e.g. the name is already taken.
    #[error("{op}: conflict: {message}")]
    Conflict { op: String, message: String },
    /// 4xx: the Engine rejected the request (invalid config, ...). Retrying does not help.
    #[error("{op}: the Docker Engine rejected the request ({status}): {message}")]
    Rejected {
        op: String,
        status: u16,
        message: String,
    },
    /// 5xx: the Engine failed. Usually transient; some 5xx are known to be permanent (e.g. a
    /// host port already allocated), see `transient`.
    #[error("{op}: the Docker Engine failed ({status}): {message}")]
    Server {
        op: String,
        status: u16,
        message: String,
        transient: bool,
    },
    /// The spec asks for something this Engine (API version) cannot do, or is invalid.
    #[error("{op}: {message}")]
    Invalid { op: String, message: String },
    /// Anything else (unexpected response, ...).
    #[error("{op}: {cause}")]
    Other { op: String, cause: String },
}

impl DockerError {
    /// Whether retrying the same operation later may succeed (engine down, timeout, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            DockerError::Unreachable { .. } | DockerError::Timeout { .. } => true,
            DockerError::Pull { transient, .. } | DockerError::Server { transient, .. } => {
                *transient
            }
            DockerError::NotFound { .. }
            | DockerError::Conflict { .. }
            | DockerError::Rejected { .. }
            | DockerError::Invalid { .. }
            | DockerError::Other { .. } => false,
        }
    }

    /// A 404 from the Engine.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DockerError::NotFound { .. })
    }

    /// A 409 from the Engine.
    pub fn is_conflict(&self) -> bool {
        matches!(self, DockerError::Conflict { .. })
    }

    fn from_bollard(host: &str, op: impl Into<String>, err: BollardError) -> DockerError {
        let op = op.into();
        match err {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => {
                let message = message.trim().to_string();
                match status_code {
                    404 => DockerError::NotFound { op, message },
                    409 => DockerError::Conflict { op, message },
                    500..=599 => {
                        let transient = !permanent_server_message(&message);
                        DockerError::Server {
                            op,
                            status: status_code,
                            message,
                            transient,
                        }
                    }
                    _ => DockerError::Rejected {
                        op,
                        status: status_code,
                        message,
                    },
                }
            }
            BollardError::RequestTimeoutError => DockerError::Timeout { op },
            e @ (BollardError::HyperLegacyError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. }
            | BollardError::SocketNotFoundError(_)) => DockerError::Unreachable {
                host: host.to_string(),
                cause: error_chain(&e),
            },
            e => DockerError::Other {
                op,
                cause: error_chain(&e),
            },
        }
    }
}

/// 5xx messages that will not go away by retrying.
fn permanent_server_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "port is already allocated",
        "address already in use",
        "invalid",
        "no such",
        "not found",
        "conflict",
        "is not a valid",
        "executable file not found",
        "permission denied",
        "oci runtime create failed",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// `err: source: source...`, without repeating identical messages.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Request accounting
// ---------------------------------------------------------------------------------------------

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
    docker: Docker,
    host: String,
    api: (usize, usize),
    /// This berth instance: written as `io.berth.instance` on everything created.
    instance: String,
    counters: Arc<Counters>,
    /// Requests made while connecting (version negotiation), not part of [`Engine::requests`].
    setup: RequestCounts,
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
        })
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

    fn api_at_least(&self, major: usize, minor: usize) -> bool {
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

    fn err(&self, op: impl Into<String>, e: BollardError) -> DockerError {
        DockerError::from_bollard(&self.host, op, e)
    }

    // -----------------------------------------------------------------------------------------
    // Observe
    // -----------------------------------------------------------------------------------------

    /// What runs on the Engine. Requests: 2 (berth's containers, images); plus 1 to look up, by
    /// exact name, containers that might hold a name berth is about to create; plus 1 network
    /// list and/or 1 volume list only when the container list cannot prove that every desired
    /// network / volume exists, or when a stack berth owns left the config. Never mutates. A
    /// no-op reconcile is exactly the first 2.
    pub async fn observe(&self, desired: &Desired) -> Result<Observed, DockerError> {
        // Only berth's containers (any instance's: another instance holding a name is a
        // conflict too). The Engine's cost grows with every container it lists, so a host full
        // of unrelated containers would slow every reconcile down.
        let list_containers = self.docker.list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(std::collections::HashMap::from([(
                "label".to_string(),
                vec![format!("{}=true", labels::MANAGED)],
            )])),
            ..Default::default()
        }));
        let list_images = self.docker.list_images(Some(ListImagesOptions {
            all: false,
            ..Default::default()
        }));
        let (containers, images) = tokio::join!(list_containers, list_images);
        let containers = containers.map_err(|e| self.err("list containers", e))?;
        let images = images.map_err(|e| self.err("list images", e))?;

        let mut containers: Vec<ObservedContainer> = containers
            .into_iter()
            .filter_map(observed_container)
            .collect();
        // A name berth is about to create may be held by a container it does not own: ask for
        // exactly those names (one more request, only when something is to be created).
        let missing = names_to_create(desired, &containers);
        if !missing.is_empty() {
            containers.extend(self.containers_named(&missing).await?);
        }

        let mut image_map = BTreeMap::new();
        for img in images {
            for r in img.repo_tags.iter().chain(img.repo_digests.iter()) {
                if r.starts_with("<none>") {
                    continue;
                }
                image_map.insert(normalize_image_ref(r), img.id.clone());
            }
        }

        let (need_networks, need_volumes) = needs_listing(desired, &containers, &self.instance);
        let networks = if need_networks {
            Some(self.list_networks().await?)
        } else {
            None
        };
        let volumes = if need_volumes {
            Some(self.list_volumes().await?)
        } else {
            None
        };
        Ok(Observed {
            containers,
            images: image_map,
            networks,
            volumes,
        })
    }

    /// Containers whose name is exactly one of `names`. Requests: 1.
    async fn containers_named(
        &self,
        names: &[String],
    ) -> Result<Vec<ObservedContainer>, DockerError> {
        // The Engine matches `name` filters as regular expressions against `/<name>`.
        let patterns = names
            .iter()
            .map(|n| format!("^/{}$", regex_escape(n)))
            .collect();
        let found = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(std::collections::HashMap::from([(
                    "name".to_string(),
                    patterns,
                )])),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.err("list containers by name", e))?;
        Ok(found
            .into_iter()
            .filter_map(observed_container)
            .filter(|c| !c.managed() && names.contains(&c.name))
            .collect())
    }

    /// Every network, by name. Requests: 1.
    pub async fn list_networks(&self) -> Result<BTreeMap<String, ObservedObject>, DockerError> {
        let nets = self
            .docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(|e| self.err("list networks", e))?;
        Ok(nets
            .into_iter()
            .filter_map(|n| {
                let name = n.name?;
                let labels = n.labels.unwrap_or_default();
                Some((name.clone(), observed_object(name, &labels)))
            })
            .collect())
    }

    /// Every volume, by name. Requests: 1.
    pub async fn list_volumes(&self) -> Result<BTreeMap<String, ObservedObject>, DockerError> {
        let vols = self
            .docker
            .list_volumes(None::<ListVolumesOptions>)
            .await
            .map_err(|e| self.err("list volumes", e))?;
        Ok(vols
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name.clone(), observed_object(v.name, &v.labels)))
            .collect())
    }

    // -----------------------------------------------------------------------------------------
    // Images
    // -----------------------------------------------------------------------------------------

    /// Pulls `image`, reporting progress lines. Requests: 1 (streamed). A failure names the
    /// image and the cause ([`DockerError::Pull`]).
    pub async fn pull(
        &self,
        image: &str,
        mut progress: impl FnMut(&str),
    ) -> Result<(), DockerError> {
        let reference = normalize_image_ref(image);
        let pull_err = |cause: String, transient: bool| DockerError::Pull {
            image: image.to_string(),
            cause,
            transient,
        };
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(reference.clone()),
                ..Default::default()
            }),
            None,
            None,
        );
        let mut last: HashMap<String, (String, i64)> = HashMap::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    let status = info.status.unwrap_or_default();
                    let id = info.id.unwrap_or_default();
                    let (cur, total) = info
                        .progress_detail
                        .map(|p| (p.current.unwrap_or(0), p.total.unwrap_or(0)))
                        .unwrap_or((0, 0));
                    // Report each status change per layer, and progress in 10% steps.
                    let bucket = if total > 0 { cur * 10 / total } else { -1 };
                    let key = (status.clone(), bucket);
                    if last.get(&id) == Some(&key) {
                        continue;
                    }
                    last.insert(id.clone(), key);
                    let mut line = String::new();
                    if !id.is_empty() {
                        line.push_str(&id);
                        line.push_str(": ");
                    }
                    line.push_str(&status);
                    if total > 0 {
                        line.push_str(&format!(" {}/{}", human_bytes(cur), human_bytes(total)));
                    }
                    if !line.is_empty() {
                        progress(&line);
                    }
                }
                Err(BollardError::DockerStreamError { error }) => {
                    let transient = pull_cause_transient(&error);
                    return Err(pull_err(error, transient));
                }
                Err(e) => {
                    let e = self.err(format!("pull {reference}"), e);
                    let (cause, transient) = match &e {
                        DockerError::NotFound { message, .. }
                        | DockerError::Rejected { message, .. }
                        | DockerError::Conflict { message, .. } => (message.clone(), false),
                        DockerError::Server { message, .. } => {
                            (message.clone(), pull_cause_transient(message))
                        }
                        DockerError::Unreachable { .. } => return Err(e),
                        other => (other.to_string(), other.is_transient()),
                    };
                    return Err(pull_err(cause, transient));
                }
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Networks and volumes
    // -----------------------------------------------------------------------------------------

    /// Creates a network labelled as berth's (and Compose's). Returns its ID. Requests: 1.
    pub async fn create_network(
        &self,
        stack: &str,
        spec: &NetworkSpec,
    ) -> Result<String, DockerError> {
        let req = network_create_request(&self.instance, stack, spec);
        let resp = self
            .docker
            .create_network(req)
            .await
            .map_err(|e| self.err(format!("create network {}", spec.name), e))?;
        Ok(resp.id)
    }

    /// Creates a named volume labelled as berth's (and Compose's). Requests: 1.
    pub async fn create_volume(&self, stack: &str, spec: &VolumeSpec) -> Result<(), DockerError> {
        let req = volume_create_request(&self.instance, stack, spec);
        self.docker
            .create_volume(req)
            .await
            .map_err(|e| self.err(format!("create volume {}", spec.name), e))?;
        Ok(())
    }

    /// Removes a network. Already gone is success. Requests: 1.
    pub async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) => match self.err(format!("remove network {name}"), e) {
                DockerError::NotFound { .. } => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Removes a volume (and its data). Already gone is success. Requests: 1.
    pub async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        match self
            .docker
            .remove_volume(name, Some(RemoveVolumeOptions { force: false }))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match self.err(format!("remove volume {name}"), e) {
                DockerError::NotFound { .. } => Ok(()),
                e => Err(e),
            },
        }
    }

    // -----------------------------------------------------------------------------------------
    // Containers
    // -----------------------------------------------------------------------------------------

    /// Creates (does not start) the container `name` for replica `number` of `service`. Returns
    /// its ID. Requests: 1, plus 1 per network beyond the first (API 1.41 accepts one network
    /// at create; the others are connected before the container starts), plus 1 when secrets
    /// or configs given by content are copied in. If a step after create fails, the half-made
    /// container is removed (1 more request).
    pub async fn create_container(
        &self,
        stack: &StackSpec,
        service: &str,
        spec: &ServiceSpec,
        number: u32,
        name: &str,
    ) -> Result<String, DockerError> {
        self.create_container_reusing(stack, service, spec, number, name, &[])
            .await
    }

    /// [`Engine::create_container`] for a replacement: the old container's anonymous volumes
    /// (`reuse`, see [`ContainerInfo::anonymous_volumes`]) are mounted again at the same paths,
    /// as Compose does, so that data in an image's `VOLUME` or a `- /path` mount survives.
    pub async fn create_container_reusing(
        &self,
        stack: &StackSpec,
        service: &str,
        spec: &ServiceSpec,
        number: u32,
        name: &str,
        reuse: &[ObservedMount],
    ) -> Result<String, DockerError> {
        let op = format!("create container {name}");
        self.check_supported(&op, spec)?;
        let CreateBody {
            mut body,
            extra_networks,
            files,
        } = container_create_body(&self.instance, stack, service, spec, number, name).map_err(
            |message| DockerError::Invalid {
                op: op.clone(),
                message,
            },
        )?;
        reuse_anonymous_volumes(&mut body, reuse);
        let resp = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_string()),
                    platform: spec.platform.clone().unwrap_or_default(),
                }),
                body,
            )
            .await
            .map_err(|e| self.err(&op, e))?;
        let id = resp.id;
        // The Engine drops options the host cannot honour (no swap accounting, cgroup v2
        // without an OOM-killer switch, a Windows-only option on Linux...) with a warning only.
        // Nothing berth was asked for may be dropped silently: refuse the container.
        let discarded = discarded_warnings(&resp.warnings);
        if !discarded.is_empty() {
            let _ = self.remove(&id).await;
            return Err(DockerError::Invalid {
                op,
                message: format!(
                    "the Engine would ignore part of this service: {}; remove the option or \
                     run on a host that supports it",
                    discarded.join("; ")
                ),
            });
        }
        for (network, endpoint) in extra_networks {
            let connect = self
                .docker
                .connect_network(
                    &network,
                    NetworkConnectRequest {
                        container: id.clone(),
                        endpoint_config: Some(endpoint),
                    },
                )
                .await;
            if let Err(e) = connect {
                let e = self.err(format!("connect {name} to network {network}"), e);
                let _ = self.remove(&id).await;
                return Err(e);
            }
        }
        if !files.is_empty() {
            let archive = tar_archive(&files);
            let upload = self
                .docker
                .upload_to_container(
                    &id,
                    Some(UploadToContainerOptions {
                        path: "/".into(),
                        ..Default::default()
                    }),
                    bollard::body_full(archive.into()),
                )
                .await;
            if let Err(e) = upload {
                let e = self.err(format!("copy secrets/configs into {name}"), e);
                let _ = self.remove(&id).await;
                return Err(e);
            }
        }
        Ok(id)
    }

    /// Refuses spec fields this Engine's API version would silently ignore.
    fn check_supported(&self, op: &str, spec: &ServiceSpec) -> Result<(), DockerError> {
        let unsupported = |what: &str, need: &str| DockerError::Invalid {
            op: op.to_string(),
            message: format!(
                "{what} needs Docker API {need}, the Engine speaks {}; upgrade Docker or remove it",
                self.api_version()
            ),
        };
        let subpath = spec.mounts.iter().any(|m| {
            matches!(
                m.source,
                MountSource::Volume {
                    subpath: Some(_),
                    ..
                }
            )
        });
        if subpath && !self.api_at_least(1, 45) {
            return Err(unsupported("volume subpath", "1.45"));
        }
        let mac =
            spec.mac_address.is_some() || spec.networks.values().any(|a| a.mac_address.is_some());
        if mac && !self.api_at_least(1, 44) {
            return Err(unsupported("mac_address", "1.44"));
        }
        if !spec.annotations.is_empty() && !self.api_at_least(1, 43) {
            return Err(unsupported("annotations", "1.43"));
        }
        Ok(())
    }

    /// Starts a container. Already running is success. Requests: 1.
    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(|e| self.err(format!("start container {}", short(id)), e))
    }

    /// Stops a container, giving it `grace` seconds (else its own stop timeout) before SIGKILL.
    /// Already stopped is success. Requests: 1.
    pub async fn stop(&self, id: &str, grace: Option<i64>) -> Result<(), DockerError> {
        // The Engine answers only once the container stopped: allow for the grace period.
        let wait = grace.unwrap_or(10).max(0) as u64 + 60;
        let docker = self
            .docker
            .clone()
            .with_timeout(Duration::from_secs(wait.max(120)));
        match docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    signal: None,
                    t: grace.map(|g| g.clamp(0, i32::MAX as i64) as i32),
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => Err(self.err(format!("stop container {}", short(id)), e)),
        }
    }

    /// Renames a container. Requests: 1.
    pub async fn rename(&self, id: &str, new_name: &str) -> Result<(), DockerError> {
        self.docker
            .rename_container(
                id,
                RenameContainerOptions {
                    name: new_name.to_string(),
                },
            )
            .await
            .map_err(|e| self.err(format!("rename container {} to {new_name}", short(id)), e))
    }

    /// Removes a container (killing it if it still runs: stop it first for a graceful end).
    /// Its volumes are kept (never `v=true`). Already gone is success. Requests: 1.
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        match self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    v: false,
                    force: true,
                    link: false,
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match self.err(format!("remove container {}", short(id)), e) {
                DockerError::NotFound { .. } => Ok(()),
                e => Err(e),
            },
        }
    }

    /// The state and health of a container (by ID or name). Requests: 1.
    pub async fn inspect_state(
        &self,
        id_or_name: &str,
    ) -> Result<(ContainerState, Option<Health>), DockerError> {
        let info = self.inspect(id_or_name).await?;
        Ok((info.state, info.health))
    }

    /// State, health and volumes of a container (by ID or name). Requests: 1.
    pub async fn inspect(&self, id_or_name: &str) -> Result<ContainerInfo, DockerError> {
        let resp = self
            .docker
            .inspect_container(id_or_name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.err(format!("inspect container {}", short(id_or_name)), e))?;
        let state = resp.state.unwrap_or_default();
        use bollard::models::ContainerStateStatusEnum as S;
        let cs = match state.status {
            Some(S::RUNNING) => ContainerState::Running,
            Some(S::PAUSED) => ContainerState::Paused,
            Some(S::RESTARTING) => ContainerState::Restarting,
            Some(S::REMOVING) => ContainerState::Removing,
            Some(S::EXITED) => ContainerState::Exited(state.exit_code.unwrap_or(0)),
            Some(S::DEAD) => ContainerState::Dead,
            Some(S::CREATED) => ContainerState::Created,
            Some(S::STOPPING) => ContainerState::Running,
            Some(S::EMPTY) | None => {
                if state.running == Some(true) {
                    ContainerState::Running
                } else {
                    ContainerState::Exited(state.exit_code.unwrap_or(0))
                }
            }
        };
        let health = state.health.and_then(|h| h.status).and_then(|s| match s {
            HealthStatusEnum::STARTING => Some(Health::Starting),
            HealthStatusEnum::HEALTHY => Some(Health::Healthy),
            HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
            HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
        });
        let volumes = resp
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.typ.as_deref() == Some("volume"))
            .filter_map(|m| {
                Some(ObservedMount {
                    name: m.name?,
                    destination: m.destination.unwrap_or_default(),
                })
            })
            .collect();
        Ok(ContainerInfo {
            id: resp.id.unwrap_or_default(),
            name: resp
                .name
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            state: cs,
            health,
            volumes,
            stop_timeout: resp.config.and_then(|c| c.stop_timeout),
        })
    }
}

/// One container, inspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub state: ContainerState,
    pub health: Option<Health>,
    /// Every volume it mounts (named and anonymous).
    pub volumes: Vec<ObservedMount>,
    /// Its own stop timeout in seconds (`stop_grace_period` when it was created).
    pub stop_timeout: Option<i64>,
}

impl ContainerInfo {
    /// Whether it runs (or will run again by itself).
    pub fn running(&self) -> bool {
        matches!(
            self.state,
            ContainerState::Running | ContainerState::Restarting | ContainerState::Paused
        )
    }

    /// The anonymous volumes it mounts (Engine-named: 64 hex digits) at paths where `spec`
    /// mounts no named volume, bind or tmpfs: what a replacement should mount again.
    pub fn anonymous_volumes(&self, spec: &ServiceSpec) -> Vec<ObservedMount> {
        self.volumes
            .iter()
            .filter(|v| v.name.len() == 64 && v.name.chars().all(|c| c.is_ascii_hexdigit()))
            .filter(|v| {
                !spec.mounts.iter().any(|m| {
                    m.target == v.destination && !matches!(m.source, MountSource::Anonymous)
                })
            })
            .cloned()
            .collect()
    }
}

/// Mounts the old container's anonymous volumes again: an anonymous mount at the same path
/// becomes that volume; other paths (an image's `VOLUME`) get an explicit volume mount.
fn reuse_anonymous_volumes(body: &mut ContainerCreateBody, reuse: &[ObservedMount]) {
    if reuse.is_empty() {
        return;
    }
    let host = body.host_config.get_or_insert_with(Default::default);
    let mounts = host.mounts.get_or_insert_with(Vec::new);
    for v in reuse {
        match mounts
            .iter_mut()
            .find(|m| m.target.as_deref() == Some(v.destination.as_str()))
        {
            Some(m) if m.typ == Some(MountType::VOLUME) && m.source.is_none() => {
                m.source = Some(v.name.clone());
            }
            Some(_) => {}
            None => mounts.push(Mount {
                target: Some(v.destination.clone()),
                source: Some(v.name.clone()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }),
        }
    }
}

/// The container names the desired state needs that no listed (berth) container holds.
fn names_to_create(desired: &Desired, listed: &[ObservedContainer]) -> Vec<String> {
    let mut names = Vec::new();
    for stack in desired.stacks.values() {
        for (service, spec) in &stack.services {
            for n in 1..=spec.replicas.max(1) {
                let name = crate::plan::container_name(&stack.name, service, spec, n);
                if !listed.iter().any(|c| c.name == name) {
                    names.push(name);
                }
            }
        }
    }
    names
}

/// `s` with regular-expression metacharacters escaped (container names allow `.` and `-`).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$-".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The create warnings that say the Engine dropped a requested option ("... discarded.").
fn discarded_warnings(warnings: &[String]) -> Vec<String> {
    warnings
        .iter()
        .filter(|w| w.to_ascii_lowercase().contains("discarded"))
        .map(|w| w.trim().trim_end_matches('.').to_string())
        .collect()
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

fn short(id: &str) -> &str {
    if id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    }
}

fn human_bytes(n: i64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1}GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1}MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}kB", n / 1e3)
    } else {
        format!("{n}B")
    }
}

/// Pull failures that may go away (network trouble) vs those that will not (no such image,
/// access denied).
fn pull_cause_transient(cause: &str) -> bool {
    let c = cause.to_ascii_lowercase();
    let permanent = [
        "not found",
        "manifest unknown",
        "pull access denied",
        "repository does not exist",
        "unauthorized",
        "invalid reference",
        "denied",
    ];
    !permanent.iter().any(|p| c.contains(p))
}

// ---------------------------------------------------------------------------------------------
// Observation helpers (pure)
// ---------------------------------------------------------------------------------------------

fn observed_object(name: String, labels: &HashMap<String, String>) -> ObservedObject {
    ObservedObject {
        name,
        managed: labels.get(labels::MANAGED).map(String::as_str) == Some("true"),
        stack: labels.get(labels::STACK).cloned(),
        instance: labels.get(labels::INSTANCE).cloned(),
    }
}

/// One list entry → [`ObservedContainer`]. Entries without an ID are skipped.
fn observed_container(c: ContainerSummary) -> Option<ObservedContainer> {
    let id = c.id?;
    let names = c.names.unwrap_or_default();
    // Legacy links add `/other/alias` names; the container's own name has a single `/`.
    let name = names
        .iter()
        .find(|n| n.trim_start_matches('/').find('/').is_none())
        .or(names.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    let status = c.status.unwrap_or_default();
    let state = parse_state(c.state, &status);
    let health = parse_health(&status);
    let mut networks: Vec<String> = c
        .network_settings
        .and_then(|n| n.networks)
        .map(|n| n.into_keys().collect())
        .unwrap_or_default();
    networks.sort();
    let mut volumes: Vec<ObservedMount> = c
        .mounts
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.typ.as_deref() == Some("volume"))
        .filter_map(|m| {
            Some(ObservedMount {
                name: m.name?,
                destination: m.destination.unwrap_or_default(),
            })
        })
        .collect();
    volumes.sort_by(|a, b| a.destination.cmp(&b.destination));
    Some(ObservedContainer {
        id,
        name,
        labels: c.labels.unwrap_or_default().into_iter().collect(),
        state,
        health,
        image_id: c.image_id.unwrap_or_default(),
        networks,
        volumes,
    })
}

/// The container list's `State` (`running`, `exited`, ...) and `Status`
/// (`Exited (137) 2 minutes ago`) → [`ContainerState`] with the exit code.
pub fn parse_state(state: Option<ContainerSummaryStateEnum>, status: &str) -> ContainerState {
    use ContainerSummaryStateEnum as S;
    match state {
        Some(S::RUNNING) | Some(S::STOPPING) => ContainerState::Running,
        Some(S::PAUSED) => ContainerState::Paused,
        Some(S::RESTARTING) => ContainerState::Restarting,
        Some(S::REMOVING) => ContainerState::Removing,
        Some(S::DEAD) => ContainerState::Dead,
        Some(S::CREATED) => ContainerState::Created,
        Some(S::EXITED) => ContainerState::Exited(parse_exit_code(status).unwrap_or(0)),
        Some(S::EMPTY) | None => {
            // Fall back on the status text.
            let s = status.trim_start();
            if s.starts_with("Up") {
                if s.contains("(Paused)") {
                    ContainerState::Paused
                } else {
                    ContainerState::Running
                }
            } else if s.starts_with("Restarting") {
                ContainerState::Restarting
            } else if s.starts_with("Exited") {
                ContainerState::Exited(parse_exit_code(s).unwrap_or(0))
            } else if s.starts_with("Dead") {
                ContainerState::Dead
            } else if s.starts_with("Removal") {
                ContainerState::Removing
            } else {
                ContainerState::Created
            }
        }
    }
}

/// `Exited (137) 2 minutes ago` → 137.
fn parse_exit_code(status: &str) -> Option<i64> {
    let start = status.find('(')?;
    let end = status[start..].find(')')? + start;
    status[start + 1..end].trim().parse().ok()
}

/// `Up 3 minutes (healthy)` → Healthy; `(unhealthy)`, `(health: starting)`; else `None`.
pub fn parse_health(status: &str) -> Option<Health> {
    if status.contains("(healthy)") {
        Some(Health::Healthy)
    } else if status.contains("(unhealthy)") {
        Some(Health::Unhealthy)
    } else if status.contains("(health: starting)") {
        Some(Health::Starting)
    } else {
        None
    }
}

/// Whether `observe` must list networks and volumes: a desired network / volume is not
/// proven to exist by the container list (a berth container attached to it / mounting it; for
/// external ones any container), or a stack berth owns left the config (its networks and
/// volumes must be found for removal).
fn needs_listing(
    desired: &Desired,
    containers: &[ObservedContainer],
    instance: &str,
) -> (bool, bool) {
    let mut attached_managed = BTreeSet::new();
    let mut attached_any = BTreeSet::new();
    let mut mounted_managed = BTreeSet::new();
    let mut mounted_any = BTreeSet::new();
    let mut stack_left = false;
    for c in containers {
        for n in &c.networks {
            attached_any.insert(n.as_str());
        }
        for v in &c.volumes {
            mounted_any.insert(v.name.as_str());
        }
        if c.managed() {
            attached_managed.extend(c.networks.iter().map(String::as_str));
            mounted_managed.extend(c.volumes.iter().map(|v| v.name.as_str()));
            if let Some(stack) = c.stack()
                && c.owned_by(instance)
                && !desired.stacks.contains_key(stack)
            {
                stack_left = true;
            }
        }
    }
    let mut need_networks = stack_left;
    let mut need_volumes = stack_left;
    for stack in desired.stacks.values() {
        for n in stack.networks.values() {
            let proven = if n.external {
                attached_any.contains(n.name.as_str())
            } else {
                attached_managed.contains(n.name.as_str())
            };
            need_networks |= !proven;
        }
        for v in stack.volumes.values() {
            let proven = if v.external {
                mounted_any.contains(v.name.as_str())
            } else {
                mounted_managed.contains(v.name.as_str())
            };
            need_volumes |= !proven;
        }
    }
    (need_networks, need_volumes)
}

// ---------------------------------------------------------------------------------------------
// Create requests (pure)
// ---------------------------------------------------------------------------------------------

/// The name of replica `number` of `service` (see [`crate::plan::container_name`]); a service
/// that is not declared gets Compose's default name.
fn service_container_name(stack: &StackSpec, service: &str, number: u32) -> String {
    match stack.services.get(service) {
        Some(spec) => crate::plan::container_name(&stack.name, service, spec, number),
        None => format!("{}-{}-{}", stack.name, service, number),
    }
}

/// The key of a network/volume in the Compose file, from its Engine-side name.
fn compose_key<'a>(stack: &str, name: &'a str) -> &'a str {
    name.strip_prefix(stack)
        .and_then(|r| r.strip_prefix('_'))
        .unwrap_or(name)
}

fn object_labels(
    instance: &str,
    stack: &str,
    user: &BTreeMap<String, String>,
    compose_label: &str,
    key: &str,
) -> HashMap<String, String> {
    let mut l: HashMap<String, String> = user.clone().into_iter().collect();
    l.insert(labels::MANAGED.into(), "true".into());
    l.insert(labels::INSTANCE.into(), instance.into());
    l.insert(labels::STACK.into(), stack.into());
    l.insert(labels::COMPOSE_PROJECT.into(), stack.into());
    l.insert(compose_label.into(), key.into());
    l
}

/// The Engine request that creates `spec`'s network.
pub fn network_create_request(
    instance: &str,
    stack: &str,
    spec: &NetworkSpec,
) -> NetworkCreateRequest {
    let labels = object_labels(
        instance,
        stack,
        &spec.labels,
        labels::COMPOSE_NETWORK,
        compose_key(stack, &spec.name),
    );
    NetworkCreateRequest {
        name: spec.name.clone(),
        driver: spec.driver.clone(),
        internal: spec.internal.then_some(true),
        attachable: spec.attachable.then_some(true),
        enable_ipv6: spec.enable_ipv6.then_some(true),
        ipam: spec.ipam.as_ref().map(|i| EngineIpam {
            driver: i.driver.clone(),
            config: Some(
                i.config
                    .iter()
                    .map(|p| IpamConfig {
                        subnet: p.subnet.clone(),
                        ip_range: p.ip_range.clone(),
                        gateway: p.gateway.clone(),
                        auxiliary_addresses: (!p.aux_addresses.is_empty())
                            .then(|| p.aux_addresses.clone().into_iter().collect()),
                    })
                    .collect(),
            ),
            options: (!i.options.is_empty()).then(|| i.options.clone().into_iter().collect()),
        }),
        options: (!spec.driver_opts.is_empty())
            .then(|| spec.driver_opts.clone().into_iter().collect()),
        labels: Some(labels),
        ..Default::default()
    }
}

/// The Engine request that creates `spec`'s volume.
pub fn volume_create_request(
    instance: &str,
    stack: &str,
    spec: &VolumeSpec,
) -> VolumeCreateRequest {
    let labels = object_labels(
        instance,
        stack,
        &spec.labels,
        labels::COMPOSE_VOLUME,
        compose_key(stack, &spec.name),
    );
    VolumeCreateRequest {
        name: Some(spec.name.clone()),
        driver: spec.driver.clone(),
        driver_opts: (!spec.driver_opts.is_empty())
            .then(|| spec.driver_opts.clone().into_iter().collect()),
        labels: Some(labels),
        ..Default::default()
    }
}

/// Every label a service container carries: the user's, berth's and Compose's.
pub fn container_labels(
    instance: &str,
    stack: &StackSpec,
    service: &str,
    spec: &ServiceSpec,
    number: u32,
) -> BTreeMap<String, String> {
    let mut l = spec.labels.clone();
    let config_file = match stack.file.file_name() {
        Some(f) => stack.dir.join(f),
        None => stack.dir.join(&stack.file),
    };
    for (k, v) in [
        (labels::MANAGED, "true".to_string()),
        (labels::INSTANCE, instance.to_string()),
        (labels::STACK, stack.name.clone()),
        (labels::SERVICE, service.to_string()),
        (labels::SPEC_HASH, spec.spec_hash()),
        (labels::SPEC, spec.canonical_json()),
        (labels::COMPOSE_PROJECT, stack.name.clone()),
        (labels::COMPOSE_SERVICE, service.to_string()),
        (labels::COMPOSE_NUMBER, number.to_string()),
        (labels::COMPOSE_ONEOFF, "False".to_string()),
        (
            labels::COMPOSE_CONFIG_FILES,
            config_file.display().to_string(),
        ),
        (labels::COMPOSE_WORKING_DIR, stack.dir.display().to_string()),
    ] {
        l.insert(k.to_string(), v);
    }
    l
}

/// A container create request, and the networks to connect after create (API 1.41 takes one
/// network at create).
#[derive(Debug, Clone)]
pub struct CreateBody {
    pub body: ContainerCreateBody,
    pub extra_networks: Vec<(String, EndpointSettings)>,
    /// Secrets/configs given by content (not a host file): copied into the container after
    /// create, before start (as Compose does), as (path in the container, content).
    pub files: Vec<(String, Secret)>,
}

/// `service:x` / `container:x` → `container:<name>`; others unchanged.
fn container_ref_mode(stack: &StackSpec, mode: &str) -> String {
    match mode.strip_prefix("service:") {
        Some(svc) => format!("container:{}", service_container_name(stack, svc, 1)),
        None => mode.to_string(),
    }
}

fn endpoint(service: &str, a: &NetworkAttachment, mac: Option<&String>) -> EndpointSettings {
    let mut aliases = vec![service.to_string()];
    for al in &a.aliases {
        if !aliases.contains(al) {
            aliases.push(al.clone());
        }
    }
    let ipam = (a.ipv4_address.is_some() || a.ipv6_address.is_some()).then(|| EndpointIpamConfig {
        ipv4_address: a.ipv4_address.clone(),
        ipv6_address: a.ipv6_address.clone(),
        ..Default::default()
    });
    EndpointSettings {
        aliases: Some(aliases),
        ipam_config: ipam,
        mac_address: a.mac_address.clone().or_else(|| mac.cloned()),
        ..Default::default()
    }
}

fn restart_policy(restart: &str) -> Result<RestartPolicy, String> {
    let (name, count) = match restart.split_once(':') {
        Some((n, c)) => (
            n,
            Some(
                c.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("restart: invalid retry count in {restart:?}"))?,
            ),
        ),
        None => (restart, None),
    };
    let name = match name.trim() {
        "no" | "" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        other => return Err(format!("restart: unknown policy {other:?}")),
    };
    if count.is_some() && name != RestartPolicyNameEnum::ON_FAILURE {
        return Err(format!(
            "restart: only on-failure takes a retry count ({restart:?})"
        ));
    }
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count: count,
    })
}

fn port_key(p: &str) -> String {
    if p.contains('/') {
        p.to_string()
    } else {
        format!("{p}/tcp")
    }
}

/// Maps every field of `spec` to the Engine's create request. Pure; errors are invalid values.
pub fn container_create_body(
    instance: &str,
    stack: &StackSpec,
    service: &str,
    spec: &ServiceSpec,
    number: u32,
    _name: &str,
) -> Result<CreateBody, String> {
    let some_vec = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());

    // Ports.
    let mut exposed: BTreeSet<String> = spec.expose.iter().map(|p| port_key(p)).collect();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.target, p.protocol);
        exposed.insert(key.clone());
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: p.host_ip.clone(),
                host_port: Some(p.published.map(|x| x.to_string()).unwrap_or_default()),
            });
    }

    // Mounts.
    let mut mounts = Vec::new();
    let mut binds = Vec::new();
    let mut files = Vec::new();
    for m in &spec.mounts {
        mount(m, &mut mounts, &mut binds, &mut files)?;
    }

    // Networks: the highest priority first (Compose's order), then by name.
    let mut nets: Vec<(&String, &NetworkAttachment)> = spec.networks.iter().collect();
    nets.sort_by(|a, b| {
        b.1.priority
            .unwrap_or(0)
            .cmp(&a.1.priority.unwrap_or(0))
            .then(a.0.cmp(b.0))
    });
    let mut endpoints = nets.iter().map(|(n, a)| {
        (
            (*n).clone(),
            endpoint(service, a, spec.mac_address.as_ref()),
        )
    });
    let first = endpoints.next();
    let extra_networks: Vec<(String, EndpointSettings)> = endpoints.collect();
    let network_mode = match (&spec.network_mode, &first) {
        (Some(mode), _) => Some(container_ref_mode(stack, mode)),
        (None, Some((n, _))) => Some(n.clone()),
        (None, None) => None,
    };
    if spec.network_mode.is_some() && first.is_some() {
        return Err("network_mode and networks cannot be combined".into());
    }
    let networking_config = first.map(|(n, e)| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(n, e)])),
    });

    let mut links: Vec<String> = spec
        .links
        .iter()
        .map(|l| {
            let (svc, alias) = l.split_once(':').unwrap_or((l, l));
            format!("{}:{}", service_container_name(stack, svc, 1), alias)
        })
        .collect();

    // `external_links` name containers outside the stack: `name[:alias]`.
    links.extend(spec.external_links.iter().map(|l| match l.split_once(':') {
        Some(_) => l.clone(),
        None => format!("{l}:{l}"),
    }));

    // `volumes_from`: a service of this stack means its (first) container.
    let volumes_from: Vec<String> = spec
        .volumes_from
        .iter()
        .map(|v| {
            let (target, mode) = match v.rsplit_once(':') {
                Some((t, m)) if m == "ro" || m == "rw" => (t, Some(m)),
                _ => (v.as_str(), None),
            };
            let name = match target.strip_prefix("container:") {
                Some(c) => c.to_string(),
                None => service_container_name(stack, target, 1),
            };
            match mode {
                Some(m) => format!("{name}:{m}"),
                None => name,
            }
        })
        .collect();

    let device_requests: Vec<EngineDeviceRequest> = spec
        .device_requests
        .iter()
        .map(|d| EngineDeviceRequest {
            driver: d.driver.clone(),
            count: d.count,
            device_ids: (!d.device_ids.is_empty()).then(|| d.device_ids.clone()),
            capabilities: (!d.capabilities.is_empty()).then(|| vec![d.capabilities.clone()]),
            options: (!d.options.is_empty()).then(|| d.options.clone().into_iter().collect()),
        })
        .collect();

    let throttle = |m: &BTreeMap<String, i64>| {
        (!m.is_empty()).then(|| {
            m.iter()
                .map(|(path, rate)| ThrottleDevice {
                    path: Some(path.clone()),
                    rate: Some(*rate),
                })
                .collect::<Vec<_>>()
        })
    };
    let blkio = spec.blkio.clone().unwrap_or_default();

    let cgroupns_mode = match spec.cgroup.as_deref() {
        None => None,
        Some("host") => Some(HostConfigCgroupnsModeEnum::HOST),
        Some("private") => Some(HostConfigCgroupnsModeEnum::PRIVATE),
        Some(other) => {
            return Err(format!(
                "cgroup: unknown mode {other:?} (use host or private)"
            ));
        }
    };

    let healthcheck = spec.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: h.interval,
        timeout: h.timeout,
        retries: h.retries,
        start_period: h.start_period,
        start_interval: h.start_interval,
    });

    let host_config = HostConfig {
        binds: some_vec(&binds),
        mounts: (!mounts.is_empty()).then_some(mounts),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        network_mode,
        restart_policy: spec.restart.as_deref().map(restart_policy).transpose()?,
        log_config: spec.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: l.driver.clone(),
            config: (!l.options.is_empty()).then(|| l.options.clone().into_iter().collect()),
        }),
        ulimits: (!spec.ulimits.is_empty()).then(|| {
            spec.ulimits
                .iter()
                .map(|(name, u)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        devices: (!spec.devices.is_empty()).then(|| {
            spec.devices
                .iter()
                .map(|d| EngineDevice {
                    path_on_host: Some(d.host.clone()),
                    path_in_container: Some(d.container.clone()),
                    cgroup_permissions: Some(d.permissions.clone()),
                })
                .collect()
        }),
        sysctls: (!spec.sysctls.is_empty()).then(|| spec.sysctls.clone().into_iter().collect()),
        cap_add: some_vec(&spec.cap_add),
        cap_drop: some_vec(&spec.cap_drop),
        readonly_rootfs: spec.read_only.then_some(true),
        extra_hosts: some_vec(&spec.extra_hosts),
        dns: some_vec(&spec.dns),
        dns_search: some_vec(&spec.dns_search),
        dns_options: some_vec(&spec.dns_opt),
        shm_size: spec.shm_size,
        memory: spec.mem_limit,
        memory_reservation: spec.mem_reservation,
        memory_swap: spec.memswap_limit,
        nano_cpus: spec.nano_cpus,
        cpu_shares: spec.cpu_shares,
        cpuset_cpus: spec.cpuset.clone(),
        pids_limit: spec.pids_limit,
        init: spec.init,
        privileged: spec.privileged.then_some(true),
        security_opt: some_vec(&spec.security_opt),
        group_add: some_vec(&spec.group_add),
        links: some_vec(&links),
        pid_mode: spec.pid.as_deref().map(|m| container_ref_mode(stack, m)),
        ipc_mode: spec.ipc.as_deref().map(|m| container_ref_mode(stack, m)),
        runtime: spec.runtime.clone(),
        cgroup_parent: spec.cgroup_parent.clone(),
        userns_mode: spec.userns_mode.clone(),
        oom_score_adj: spec.oom_score_adj,
        device_requests: (!device_requests.is_empty()).then_some(device_requests),
        volumes_from: some_vec(&volumes_from),
        memory_swappiness: spec.mem_swappiness,
        oom_kill_disable: spec.oom_kill_disable.then_some(true),
        cpu_period: spec.cpu_period,
        cpu_quota: spec.cpu_quota,
        cpu_realtime_period: spec.cpu_rt_period,
        cpu_realtime_runtime: spec.cpu_rt_runtime,
        blkio_weight: blkio.weight,
        blkio_weight_device: (!blkio.weight_device.is_empty()).then(|| {
            blkio
                .weight_device
                .iter()
                .map(|(path, w)| ResourcesBlkioWeightDevice {
                    path: Some(path.clone()),
                    weight: Some(usize::from(*w)),
                })
                .collect()
        }),
        blkio_device_read_bps: throttle(&blkio.device_read_bps),
        blkio_device_write_bps: throttle(&blkio.device_write_bps),
        blkio_device_read_iops: throttle(&blkio.device_read_iops),
        blkio_device_write_iops: throttle(&blkio.device_write_iops),
        storage_opt: (!spec.storage_opt.is_empty())
            .then(|| spec.storage_opt.clone().into_iter().collect()),
        uts_mode: spec.uts.clone(),
        cgroupns_mode,
        annotations: (!spec.annotations.is_empty())
            .then(|| spec.annotations.clone().into_iter().collect()),
        ..Default::default()
    };

    let env: Vec<String> = spec
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={}", v.expose()))
        .collect();

    let labels = container_labels(instance, stack, service, spec, number);
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: Some(env),
        exposed_ports: (!exposed.is_empty()).then(|| exposed.into_iter().collect()),
        labels: Some(labels.into_iter().collect()),
        healthcheck,
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        hostname: spec.hostname.clone(),
        domainname: spec.domainname.clone(),
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec.stop_grace_period,
        open_stdin: spec.stdin_open.then_some(true),
        tty: spec.tty.then_some(true),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    };
    Ok(CreateBody {
        body,
        extra_networks,
        files,
    })
}

fn mount(
    m: &MountSpec,
    mounts: &mut Vec<Mount>,
    binds: &mut Vec<String>,
    files: &mut Vec<(String, Secret)>,
) -> Result<(), String> {
    let read_only = m.read_only.then_some(true);
    match &m.source {
        // SELinux relabelling of a named volume: only the legacy `Binds` form takes it.
        MountSource::Volume {
            name,
            nocopy,
            subpath: None,
            selinux: Some(z),
        } => {
            let mut opts = vec![if m.read_only { "ro" } else { "rw" }, z.as_str()];
            if *nocopy {
                opts.push("nocopy");
            }
            binds.push(format!("{name}:{}:{}", m.target, opts.join(",")));
        }
        MountSource::Volume {
            name,
            nocopy,
            subpath,
            ..
        } => mounts.push(Mount {
            target: Some(m.target.clone()),
            source: Some(name.clone()),
            typ: Some(MountType::VOLUME),
            read_only,
            volume_options: (*nocopy || subpath.is_some()).then(|| MountVolumeOptions {
                no_copy: nocopy.then_some(true),
                subpath: subpath.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        MountSource::Anonymous => mounts.push(Mount {
            target: Some(m.target.clone()),
            typ: Some(MountType::VOLUME),
            read_only,
            ..Default::default()
        }),
        MountSource::Bind {
            path,
            selinux,
            propagation,
            create_host_path,
        } => {
            if *create_host_path || selinux.is_some() {
                // The legacy `Binds` form creates a missing host path (Compose's default) and
                // is the only one that takes SELinux relabelling.
                let mut opts = vec![if m.read_only { "ro" } else { "rw" }.to_string()];
                if let Some(z) = selinux {
                    opts.push(z.clone());
                }
                if let Some(p) = propagation {
                    opts.push(p.clone());
                }
                binds.push(format!("{path}:{}:{}", m.target, opts.join(",")));
            } else {
                let propagation = propagation
                    .as_deref()
                    .map(|p| {
                        p.parse::<MountBindOptionsPropagationEnum>()
                            .map_err(|_| format!("bind propagation: unknown mode {p:?}"))
                    })
                    .transpose()?;
                mounts.push(Mount {
                    target: Some(m.target.clone()),
                    source: Some(path.clone()),
                    typ: Some(MountType::BIND),
                    read_only,
                    bind_options: propagation.map(|p| MountBindOptions {
                        propagation: Some(p),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
        MountSource::Tmpfs { size, mode } => mounts.push(Mount {
            target: Some(m.target.clone()),
            typ: Some(MountType::TMPFS),
            read_only,
            tmpfs_options: (size.is_some() || mode.is_some()).then(|| MountTmpfsOptions {
                size_bytes: *size,
                mode: mode.map(i64::from),
                ..Default::default()
            }),
            ..Default::default()
        }),
        MountSource::File {
            content: Some(content),
            ..
        } => files.push((m.target.clone(), content.clone())),
        MountSource::File { file, .. } => mounts.push(Mount {
            target: Some(m.target.clone()),
            source: Some(file.clone()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        }),
    }
    Ok(())
}

/// A tar archive (ustar) holding `files` (absolute paths in the container, mode 0444) and
/// their parent directories (0755), to extract at `/`.
fn tar_archive(files: &[(String, Secret)]) -> Vec<u8> {
    fn header(path: &str, mode: u32, size: usize, dir: bool) -> [u8; 512] {
        let mut h = [0u8; 512];
        // Paths longer than 100 bytes are split at a `/` into prefix (155) and name (100).
        let (prefix, name) = if path.len() > 100 {
            let from = path.len() - 100;
            match path[from..].find('/') {
                Some(i) => (&path[..from + i], &path[from + i + 1..]),
                None => ("", path),
            }
        } else {
            ("", path)
        };
        let put = |h: &mut [u8; 512], at: usize, len: usize, v: &[u8]| {
            let n = v.len().min(len);
            h[at..at + n].copy_from_slice(&v[..n]);
        };
        put(&mut h, 0, 100, name.as_bytes());
        put(&mut h, 100, 8, format!("{mode:07o}\0").as_bytes());
        put(&mut h, 108, 8, b"0000000\0");
        put(&mut h, 116, 8, b"0000000\0");
        put(&mut h, 124, 12, format!("{size:011o}\0").as_bytes());
        put(&mut h, 136, 12, b"00000000000\0");
        put(&mut h, 148, 8, b"        ");
        h[156] = if dir { b'5' } else { b'0' };
        put(&mut h, 257, 6, b"ustar\0");
        put(&mut h, 263, 2, b"00");
        put(&mut h, 345, 155, prefix.as_bytes());
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        put(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
        h
    }
    let mut out = Vec::new();
    let mut dirs = BTreeSet::new();
    for (path, _) in files {
        let rel = path.trim_start_matches('/');
        let parts: Vec<&str> = rel.split('/').collect();
        let mut acc = String::new();
        for part in &parts[..parts.len().saturating_sub(1)] {
            acc.push_str(part);
            acc.push('/');
            if dirs.insert(acc.clone()) {
                out.extend_from_slice(&header(&acc, 0o755, 0, true));
            }
        }
    }
    for (path, content) in files {
        let data = content.expose().as_bytes();
        out.extend_from_slice(&header(
            path.trim_start_matches('/'),
            0o444,
            data.len(),
            false,
        ));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DependsOn, DeviceMapping, Healthcheck, Logging, PortSpec, Secret, Ulimit};
    use std::path::PathBuf;

    fn stack() -> StackSpec {
        StackSpec {
            name: "web".into(),
            file: PathBuf::from("web/compose.yaml"),
            dir: PathBuf::from("/srv/config/web"),
            ..Default::default()
        }
    }

    fn full_spec() -> ServiceSpec {
        ServiceSpec {
            image: "berth-test/app:1".into(),
            command: Some(vec!["httpd".into(), "-f".into()]),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            environment: BTreeMap::from([
                ("A".to_string(), Secret::new("1")),
                ("PASSWORD".to_string(), Secret::new("s3cret")),
            ]),
            ports: vec![
                PortSpec {
                    target: 80,
                    published: Some(8080),
                    host_ip: Some("127.0.0.1".into()),
                    protocol: "tcp".into(),
                },
                PortSpec {
                    target: 53,
                    published: None,
                    host_ip: None,
                    protocol: "udp".into(),
                },
            ],
            mounts: vec![
                MountSpec {
                    target: "/data".into(),
                    source: MountSource::Volume {
                        name: "web_data".into(),
                        nocopy: true,
                        subpath: None,
                        selinux: None,
                    },
                    read_only: false,
                },
                MountSpec {
                    target: "/cache".into(),
                    source: MountSource::Anonymous,
                    read_only: false,
                },
                MountSpec {
                    target: "/etc/app".into(),
                    source: MountSource::Bind {
                        path: "/srv/config/web/etc".into(),
                        selinux: Some("z".into()),
                        propagation: None,
                        create_host_path: true,
                    },
                    read_only: true,
                },
                MountSpec {
                    target: "/strict".into(),
                    source: MountSource::Bind {
                        path: "/srv/strict".into(),
                        selinux: None,
                        propagation: Some("rshared".into()),
                        create_host_path: false,
                    },
                    read_only: false,
                },
                MountSpec {
                    target: "/tmp".into(),
                    source: MountSource::Tmpfs {
                        size: Some(1 << 20),
                        mode: Some(0o1777),
                    },
                    read_only: false,
                },
                MountSpec {
                    target: "/run/secrets/db".into(),
                    source: MountSource::File {
                        file: "/srv/config/web/db.txt".into(),
                        digest: "sha256:x".into(),
                        content: None,
                        uid: None,
                        gid: None,
                        mode: None,
                    },
                    read_only: false,
                },
            ],
            networks: BTreeMap::from([
                (
                    "web_back".to_string(),
                    NetworkAttachment {
                        aliases: vec!["api".into()],
                        ipv4_address: Some("10.5.0.9".into()),
                        ..Default::default()
                    },
                ),
                (
                    "web_front".to_string(),
                    NetworkAttachment {
                        priority: Some(10),
                        ..Default::default()
                    },
                ),
            ]),
            labels: BTreeMap::from([("team".to_string(), "ops".to_string())]),
            restart: Some("on-failure:3".into()),
            healthcheck: Some(Healthcheck {
                test: vec!["CMD".into(), "true".into()],
                interval: Some(1_000_000_000),
                retries: Some(3),
                ..Default::default()
            }),
            depends_on: BTreeMap::from([(
                "db".to_string(),
                DependsOn {
                    condition: Default::default(),
                    required: true,
                    restart: false,
                },
            )]),
            user: Some("nobody".into()),
            working_dir: Some("/www".into()),
            hostname: Some("h".into()),
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["ALL".into()],
            read_only: true,
            extra_hosts: vec!["db:10.0.0.1".into()],
            dns: vec!["1.1.1.1".into()],
            shm_size: Some(64 << 20),
            mem_limit: Some(256 << 20),
            nano_cpus: Some(500_000_000),
            pids_limit: Some(100),
            logging: Some(Logging {
                driver: Some("json-file".into()),
                options: BTreeMap::from([("max-size".to_string(), "1m".to_string())]),
            }),
            stop_signal: Some("SIGINT".into()),
            stop_grace_period: Some(20),
            init: Some(true),
            sysctls: BTreeMap::from([("net.core.somaxconn".to_string(), "1024".to_string())]),
            ulimits: BTreeMap::from([(
                "nofile".to_string(),
                Ulimit {
                    soft: 1024,
                    hard: 2048,
                },
            )]),
            devices: vec![DeviceMapping {
                host: "/dev/null".into(),
                container: "/dev/xnull".into(),
                permissions: "rwm".into(),
            }],
            expose: vec!["9000".into()],
            links: vec!["db:database".into()],
            tty: true,
            replicas: 1,
            ..Default::default()
        }
    }

    #[test]
    fn create_body_maps_every_field() {
        let spec = full_spec();
        let CreateBody {
            body,
            extra_networks,
            ..
        } = container_create_body("default", &stack(), "app", &spec, 2, "web-app-2").unwrap();
        assert_eq!(body.image.as_deref(), Some("berth-test/app:1"));
        assert_eq!(body.cmd, spec.command);
        assert_eq!(body.entrypoint, spec.entrypoint);
        assert_eq!(
            body.env,
            Some(vec!["A=1".to_string(), "PASSWORD=s3cret".to_string()])
        );
        assert_eq!(
            body.exposed_ports,
            Some(vec![
                "53/udp".to_string(),
                "80/tcp".to_string(),
                "9000/tcp".to_string()
            ])
        );
        assert_eq!(body.user.as_deref(), Some("nobody"));
        assert_eq!(body.working_dir.as_deref(), Some("/www"));
        assert_eq!(body.hostname.as_deref(), Some("h"));
        assert_eq!(body.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(body.stop_timeout, Some(20));
        assert_eq!(body.tty, Some(true));
        let hc = body.healthcheck.as_ref().unwrap();
        assert_eq!(hc.test, Some(vec!["CMD".to_string(), "true".to_string()]));
        assert_eq!(hc.interval, Some(1_000_000_000));
        assert_eq!(hc.retries, Some(3));

        let labels = body.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "ops");
        assert_eq!(labels[labels::MANAGED], "true");
        assert_eq!(labels[labels::INSTANCE], "default");
        assert_eq!(labels[labels::STACK], "web");
        assert_eq!(labels[labels::SERVICE], "app");
        assert_eq!(labels[labels::SPEC_HASH], spec.spec_hash());
        assert_eq!(labels[labels::SPEC], spec.canonical_json());
        assert!(!labels[labels::SPEC].contains("s3cret"));
        assert_eq!(labels[labels::COMPOSE_PROJECT], "web");
        assert_eq!(labels[labels::COMPOSE_SERVICE], "app");
        assert_eq!(labels[labels::COMPOSE_NUMBER], "2");
        assert_eq!(labels[labels::COMPOSE_ONEOFF], "False");
        assert_eq!(
            labels[labels::COMPOSE_CONFIG_FILES],
            "/srv/config/web/compose.yaml"
        );
        assert_eq!(labels[labels::COMPOSE_WORKING_DIR], "/srv/config/web");

        let hcfg = body.host_config.as_ref().unwrap();
        let pb = hcfg.port_bindings.as_ref().unwrap();
        assert_eq!(
            pb["80/tcp"],
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some("8080".into())
            }])
        );
        assert_eq!(
            pb["53/udp"],
            Some(vec![PortBinding {
                host_ip: None,
                host_port: Some(String::new())
            }])
        );
        let mounts = hcfg.mounts.as_ref().unwrap();
        assert_eq!(mounts.len(), 5);
        let data = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some("/data"))
            .unwrap();
        assert_eq!(data.typ, Some(MountType::VOLUME));
        assert_eq!(data.source.as_deref(), Some("web_data"));
        assert_eq!(data.volume_options.as_ref().unwrap().no_copy, Some(true));
        let cache = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some("/cache"))
            .unwrap();
        assert_eq!(
            (cache.typ, cache.source.clone()),
            (Some(MountType::VOLUME), None)
        );
        let strict = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some("/strict"))
            .unwrap();
        assert_eq!(strict.typ, Some(MountType::BIND));
        assert_eq!(
            strict.bind_options.as_ref().unwrap().propagation,
            Some(MountBindOptionsPropagationEnum::RSHARED)
        );
        let tmp = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some("/tmp"))
            .unwrap();
        assert_eq!(tmp.typ, Some(MountType::TMPFS));
        assert_eq!(
            tmp.tmpfs_options.as_ref().unwrap().size_bytes,
            Some(1 << 20)
        );
        assert_eq!(tmp.tmpfs_options.as_ref().unwrap().mode, Some(0o1777));
        let secret = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some("/run/secrets/db"))
            .unwrap();
        assert_eq!(secret.typ, Some(MountType::BIND));
        assert_eq!(secret.read_only, Some(true));
        assert_eq!(secret.source.as_deref(), Some("/srv/config/web/db.txt"));
        assert_eq!(
            hcfg.binds,
            Some(vec!["/srv/config/web/etc:/etc/app:ro,z".to_string()])
        );

        // Networks: the highest priority first at create, the other connected after.
        assert_eq!(hcfg.network_mode.as_deref(), Some("web_front"));
        let eps = body
            .networking_config
            .as_ref()
            .unwrap()
            .endpoints_config
            .as_ref()
            .unwrap();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps["web_front"].aliases, Some(vec!["app".to_string()]));
        assert_eq!(extra_networks.len(), 1);
        let (net, ep) = &extra_networks[0];
        assert_eq!(net, "web_back");
        assert_eq!(ep.aliases, Some(vec!["app".to_string(), "api".to_string()]));
        assert_eq!(
            ep.ipam_config.as_ref().unwrap().ipv4_address.as_deref(),
            Some("10.5.0.9")
        );

        let rp = hcfg.restart_policy.as_ref().unwrap();
        assert_eq!(rp.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(rp.maximum_retry_count, Some(3));
        assert_eq!(
            hcfg.log_config.as_ref().unwrap().typ.as_deref(),
            Some("json-file")
        );
        assert_eq!(
            hcfg.ulimits,
            Some(vec![ResourcesUlimits {
                name: Some("nofile".into()),
                soft: Some(1024),
                hard: Some(2048)
            }])
        );
        assert_eq!(
            hcfg.devices.as_ref().unwrap()[0]
                .path_in_container
                .as_deref(),
            Some("/dev/xnull")
        );
        assert_eq!(hcfg.sysctls.as_ref().unwrap()["net.core.somaxconn"], "1024");
        assert_eq!(hcfg.cap_add, Some(vec!["NET_ADMIN".to_string()]));
        assert_eq!(hcfg.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(hcfg.readonly_rootfs, Some(true));
        assert_eq!(hcfg.extra_hosts, Some(vec!["db:10.0.0.1".to_string()]));
        assert_eq!(hcfg.dns, Some(vec!["1.1.1.1".to_string()]));
        assert_eq!(hcfg.shm_size, Some(64 << 20));
        assert_eq!(hcfg.memory, Some(256 << 20));
        assert_eq!(hcfg.nano_cpus, Some(500_000_000));
        assert_eq!(hcfg.pids_limit, Some(100));
        assert_eq!(hcfg.init, Some(true));
        assert_eq!(hcfg.links, Some(vec!["web-db-1:database".to_string()]));
    }

    #[test]
    fn create_body_maps_devices_volumes_from_and_resource_options() {
        use crate::model::{BlkioConfig, DeviceRequest};
        let mut st = stack();
        st.services.insert(
            "data".into(),
            ServiceSpec {
                image: "x".into(),
                container_name: Some("the-data".into()),
                ..Default::default()
            },
        );
        st.services.insert("cache".into(), ServiceSpec::default());
        let spec = ServiceSpec {
            image: "x".into(),
            device_requests: vec![
                DeviceRequest {
                    count: Some(-1),
                    capabilities: vec!["gpu".into()],
                    ..Default::default()
                },
                DeviceRequest {
                    driver: Some("nvidia".into()),
                    device_ids: vec!["0".into(), "2".into()],
                    capabilities: vec!["gpu".into(), "utility".into()],
                    options: BTreeMap::from([("k".into(), "v".into())]),
                    ..Default::default()
                },
            ],
            volumes_from: vec![
                "data".into(),
                "cache:ro".into(),
                "container:legacy".into(),
                "container:old:ro".into(),
            ],
            mem_swappiness: Some(0),
            oom_kill_disable: true,
            cpu_period: Some(100_000),
            cpu_quota: Some(50_000),
            cpu_rt_period: Some(1_000_000),
            cpu_rt_runtime: Some(950_000),
            blkio: Some(BlkioConfig {
                weight: Some(300),
                weight_device: BTreeMap::from([("/dev/sda".into(), 400)]),
                device_read_bps: BTreeMap::from([("/dev/sda".into(), 1 << 20)]),
                device_write_bps: BTreeMap::from([("/dev/sda".into(), 2 << 20)]),
                device_read_iops: BTreeMap::from([("/dev/sdb".into(), 100)]),
                device_write_iops: BTreeMap::from([("/dev/sdb".into(), 50)]),
            }),
            storage_opt: BTreeMap::from([("size".into(), "20G".into())]),
            uts: Some("host".into()),
            cgroup: Some("host".into()),
            links: vec!["data".into()],
            external_links: vec!["db:database".into(), "redis_1".into()],
            annotations: BTreeMap::from([("com.example.a".into(), "1".into())]),
            ..Default::default()
        };
        let CreateBody { body, .. } =
            container_create_body("default", &st, "app", &spec, 1, "web-app-1").unwrap();
        let h = body.host_config.unwrap();
        assert_eq!(
            h.device_requests,
            Some(vec![
                EngineDeviceRequest {
                    count: Some(-1),
                    capabilities: Some(vec![vec!["gpu".to_string()]]),
                    ..Default::default()
                },
                EngineDeviceRequest {
                    driver: Some("nvidia".into()),
                    count: None,
                    device_ids: Some(vec!["0".into(), "2".into()]),
                    capabilities: Some(vec![vec!["gpu".to_string(), "utility".to_string()]]),
                    options: Some(HashMap::from([("k".to_string(), "v".to_string())])),
                },
            ])
        );
        assert_eq!(
            h.volumes_from,
            Some(vec![
                "the-data".to_string(),
                "web-cache-1:ro".to_string(),
                "legacy".to_string(),
                "old:ro".to_string(),
            ])
        );
        assert_eq!(h.memory_swappiness, Some(0));
        assert_eq!(h.oom_kill_disable, Some(true));
        assert_eq!(h.cpu_period, Some(100_000));
        assert_eq!(h.cpu_quota, Some(50_000));
        assert_eq!(h.cpu_realtime_period, Some(1_000_000));
        assert_eq!(h.cpu_realtime_runtime, Some(950_000));
        assert_eq!(h.blkio_weight, Some(300));
        assert_eq!(
            h.blkio_weight_device,
            Some(vec![ResourcesBlkioWeightDevice {
                path: Some("/dev/sda".into()),
                weight: Some(400)
            }])
        );
        let td = |path: &str, rate: i64| {
            Some(vec![ThrottleDevice {
                path: Some(path.into()),
                rate: Some(rate),
            }])
        };
        assert_eq!(h.blkio_device_read_bps, td("/dev/sda", 1 << 20));
        assert_eq!(h.blkio_device_write_bps, td("/dev/sda", 2 << 20));
        assert_eq!(h.blkio_device_read_iops, td("/dev/sdb", 100));
        assert_eq!(h.blkio_device_write_iops, td("/dev/sdb", 50));
        assert_eq!(h.storage_opt.unwrap()["size"], "20G");
        assert_eq!(h.uts_mode.as_deref(), Some("host"));
        assert_eq!(h.cgroupns_mode, Some(HostConfigCgroupnsModeEnum::HOST));
        assert_eq!(
            h.links,
            Some(vec![
                "the-data:data".to_string(),
                "db:database".to_string(),
                "redis_1:redis_1".to_string(),
            ])
        );
        assert_eq!(h.annotations.unwrap()["com.example.a"], "1");

        // Nothing set, nothing sent.
        let plain = ServiceSpec {
            image: "x".into(),
            ..Default::default()
        };
        let h = container_create_body("default", &st, "app", &plain, 1, "web-app-1")
            .unwrap()
            .body
            .host_config
            .unwrap();
        assert_eq!(
            (
                h.device_requests,
                h.volumes_from,
                h.annotations,
                h.cgroupns_mode
            ),
            (None, None, None, None)
        );
        assert_eq!(
            (h.blkio_weight, h.blkio_device_read_bps, h.oom_kill_disable),
            (None, None, None)
        );
    }

    #[test]
    fn network_mode_service_points_at_that_services_container() {
        let mut st = stack();
        st.services.insert(
            "vpn".into(),
            ServiceSpec {
                image: "x".into(),
                container_name: Some("the-vpn".into()),
                ..Default::default()
            },
        );
        let spec = ServiceSpec {
            image: "x".into(),
            network_mode: Some("service:vpn".into()),
            ..Default::default()
        };
        let b = container_create_body("default", &st, "app", &spec, 1, "web-app-1").unwrap();
        let hc = b.body.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("container:the-vpn"));
        assert!(b.body.networking_config.is_none());
        let spec = ServiceSpec {
            network_mode: Some("service:db".into()),
            ..spec
        };
        let b = container_create_body("default", &st, "app", &spec, 1, "web-app-1").unwrap();
        assert_eq!(
            b.body.host_config.unwrap().network_mode.as_deref(),
            Some("container:web-db-1")
        );
    }

    #[test]
    fn restart_policies() {
        assert_eq!(
            restart_policy("always").unwrap().name,
            Some(RestartPolicyNameEnum::ALWAYS)
        );
        assert_eq!(
            restart_policy("unless-stopped").unwrap().name,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        assert_eq!(
            restart_policy("no").unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        assert_eq!(
            restart_policy("on-failure").unwrap().maximum_retry_count,
            None
        );
        assert!(restart_policy("sometimes").is_err());
        assert!(restart_policy("always:3").is_err());
    }

    #[test]
    fn network_and_volume_labels() {
        let net = NetworkSpec {
            name: "web_back".into(),
            internal: true,
            labels: BTreeMap::from([("x".to_string(), "y".to_string())]),
            ..Default::default()
        };
        let r = network_create_request("prod", "web", &net);
        let l = r.labels.unwrap();
        assert_eq!(r.name, "web_back");
        assert_eq!(r.internal, Some(true));
        assert_eq!(l[labels::MANAGED], "true");
        assert_eq!(l[labels::INSTANCE], "prod");
        assert_eq!(l[labels::STACK], "web");
        assert_eq!(l[labels::COMPOSE_PROJECT], "web");
        assert_eq!(l[labels::COMPOSE_NETWORK], "back");
        assert_eq!(l["x"], "y");
        let vol = VolumeSpec {
            name: "shared-data".into(),
            ..Default::default()
        };
        let r = volume_create_request("default", "web", &vol);
        let l = r.labels.unwrap();
        assert_eq!(r.name.as_deref(), Some("shared-data"));
        assert_eq!(l[labels::COMPOSE_VOLUME], "shared-data");
        assert_eq!(l[labels::STACK], "web");
    }

    #[test]
    fn states_from_the_list() {
        use ContainerSummaryStateEnum as S;
        assert_eq!(
            parse_state(Some(S::EXITED), "Exited (137) 2 minutes ago"),
            ContainerState::Exited(137)
        );
        assert_eq!(
            parse_state(Some(S::EXITED), "Exited (0) 1 second ago"),
            ContainerState::Exited(0)
        );
        assert_eq!(
            parse_state(Some(S::RUNNING), "Up 3 seconds (healthy)"),
            ContainerState::Running
        );
        assert_eq!(
            parse_state(Some(S::CREATED), "Created"),
            ContainerState::Created
        );
        assert_eq!(
            parse_state(None, "Exited (2) 5 hours ago"),
            ContainerState::Exited(2)
        );
        assert_eq!(
            parse_state(None, "Up 2 hours (Paused)"),
            ContainerState::Paused
        );
        assert_eq!(
            parse_health("Up 3 seconds (healthy)"),
            Some(Health::Healthy)
        );
        assert_eq!(
            parse_health("Up 3 minutes (unhealthy)"),
            Some(Health::Unhealthy)
        );
        assert_eq!(
            parse_health("Up 1 second (health: starting)"),
            Some(Health::Starting)
        );
        assert_eq!(parse_health("Up 1 second"), None);
    }

    #[test]
    fn errors_know_whether_they_are_transient() {
        let e = |status: u16, msg: &str| {
            DockerError::from_bollard(
                "unix:///x",
                "op",
                BollardError::DockerResponseServerError {
                    status_code: status,
                    message: msg.into(),
                },
            )
        };
        assert!(!e(404, "No such image").is_transient());
        assert!(!e(409, "name in use").is_transient());
        assert!(!e(400, "invalid mount").is_transient());
        assert!(e(500, "context deadline exceeded").is_transient());
        assert!(!e(500, "driver failed programming external connectivity: Bind for 0.0.0.0:8080 failed: port is already allocated").is_transient());
        assert!(
            DockerError::from_bollard("unix:///x", "op", BollardError::RequestTimeoutError)
                .is_transient()
        );
        let unreachable = DockerError::from_bollard(
            "unix:///var/run/docker.sock",
            "op",
            BollardError::SocketNotFoundError("/var/run/docker.sock".into()),
        );
        assert!(unreachable.is_transient());
        assert!(
            unreachable
                .to_string()
                .starts_with("cannot reach the Docker Engine at unix:///var/run/docker.sock: ")
        );
        assert!(unreachable.to_string().contains("Is dockerd running?"));
        assert!(!pull_cause_transient(
            "pull access denied for x, repository does not exist"
        ));
        assert!(pull_cause_transient(
            "Get https://registry-1.docker.io/v2/: dial tcp: lookup registry-1.docker.io: no such host"
        ));
    }

    #[test]
    fn discarded_options_are_found_in_create_warnings() {
        let w = vec![
            "Your kernel does not support memory swappiness capabilities or the cgroup is not \
             mounted. Memory swappiness discarded."
                .to_string(),
            "Your kernel does not support swap limit capabilities or the cgroup is not mounted. \
             Memory limited without swap."
                .to_string(),
            "linux does not support CPU percent. Percent discarded.".to_string(),
        ];
        assert_eq!(
            discarded_warnings(&w),
            [
                "Your kernel does not support memory swappiness capabilities or the cgroup is \
                 not mounted. Memory swappiness discarded",
                "linux does not support CPU percent. Percent discarded",
            ]
        );
        assert!(discarded_warnings(&[]).is_empty());
    }

    #[test]
    fn request_paths() {
        assert_eq!(strip_version("/v1.41/containers/json"), "/containers/json");
        assert_eq!(strip_version("/version"), "/version");
    }

    fn container(
        name: &str,
        stack: &str,
        networks: &[&str],
        volumes: &[&str],
    ) -> ObservedContainer {
        ObservedContainer {
            id: name.into(),
            name: name.into(),
            labels: BTreeMap::from([
                (labels::MANAGED.to_string(), "true".to_string()),
                (labels::STACK.to_string(), stack.to_string()),
            ]),
            state: ContainerState::Running,
            health: None,
            image_id: String::new(),
            networks: networks.iter().map(|s| s.to_string()).collect(),
            volumes: volumes
                .iter()
                .map(|v| ObservedMount {
                    name: v.to_string(),
                    destination: "/d".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn networks_and_volumes_are_listed_only_when_needed() {
        let mut st = stack();
        st.networks.insert(
            "default".into(),
            NetworkSpec {
                name: "web_default".into(),
                ..Default::default()
            },
        );
        st.volumes.insert(
            "data".into(),
            VolumeSpec {
                name: "web_data".into(),
                ..Default::default()
            },
        );
        let desired = Desired {
            stacks: BTreeMap::from([("web".to_string(), st)]),
        };
        let c = container("web-app-1", "web", &["web_default"], &["web_data"]);
        assert_eq!(
            needs_listing(&desired, std::slice::from_ref(&c), "default"),
            (false, false)
        );
        // Not yet attached: cannot prove the network exists.
        let bare = container("web-app-1", "web", &[], &["web_data"]);
        assert_eq!(needs_listing(&desired, &[bare], "default"), (true, false));
        // An unowned container's attachment proves nothing for a non-external network.
        let mut unowned = c.clone();
        unowned.labels.clear();
        assert_eq!(needs_listing(&desired, &[unowned], "default"), (true, true));
        // A stack left the config.
        let gone = container("old-app-1", "old", &[], &[]);
        assert_eq!(
            needs_listing(&desired, &[c.clone(), gone.clone()], "default"),
            (true, true)
        );
        // ... but another instance's stack is not ours to clean up.
        assert_eq!(needs_listing(&desired, &[c, gone], "prod"), (false, false));
    }

    #[test]
    fn anonymous_volumes_are_reused_at_the_same_path() {
        let spec = ServiceSpec {
            mounts: vec![
                MountSpec {
                    target: "/cache".into(),
                    source: MountSource::Anonymous,
                    read_only: false,
                },
                MountSpec {
                    target: "/data".into(),
                    source: MountSource::Volume {
                        name: "web_data".into(),
                        nocopy: false,
                        subpath: None,
                        selinux: None,
                    },
                    read_only: false,
                },
            ],
            ..Default::default()
        };
        let anon = |n: char| n.to_string().repeat(64);
        let info = ContainerInfo {
            id: "x".into(),
            name: "web-app-1".into(),
            state: ContainerState::Running,
            health: None,
            stop_timeout: None,
            volumes: vec![
                ObservedMount {
                    name: anon('a'),
                    destination: "/cache".into(),
                },
                ObservedMount {
                    name: "web_data".into(),
                    destination: "/data".into(),
                },
                ObservedMount {
                    name: anon('b'),
                    destination: "/var/lib/db".into(),
                },
            ],
        };
        let reuse = info.anonymous_volumes(&spec);
        assert_eq!(reuse.len(), 2);
        let mut body = container_create_body("default", &stack(), "app", &spec, 1, "web-app-1")
            .unwrap()
            .body;
        reuse_anonymous_volumes(&mut body, &reuse);
        let mounts = body.host_config.unwrap().mounts.unwrap();
        let at = |t: &str| {
            mounts
                .iter()
                .find(|m| m.target.as_deref() == Some(t))
                .unwrap()
        };
        assert_eq!(at("/cache").source, Some(anon('a')));
        assert_eq!(at("/data").source.as_deref(), Some("web_data"));
        assert_eq!(at("/var/lib/db").source, Some(anon('b')));
        assert_eq!(at("/var/lib/db").typ, Some(MountType::VOLUME));
    }
}
