//! The data the planner works on: what the config repository declares ([`Desired`]) and what the
//! Docker Engine runs ([`Observed`]). Both are plain data: no IO happens here.
//!
//! A [`ServiceSpec`] is the *normalised* form of one Compose service: short and long syntax have
//! been folded into one shape, defaults are filled in, unordered lists are sorted. Its canonical
//! JSON (see [`ServiceSpec::canonical_json`]) is what berth hashes to decide "changed", and what it
//! stores in the container's `io.berth.spec` label so that the next plan can say *which* field
//! changed. Secret values never appear in that JSON: [`Secret`] serialises as a digest.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod desired;
pub mod edge;
pub mod host;
pub mod jobs;
mod observed;
mod service;

pub use desired::*;
pub use observed::*;
pub use service::*;

/// Label keys berth writes on every object it creates. The ownership label is the only thing
/// that lets berth remove an object.
pub mod labels {
    /// `"true"` on every container, network and volume berth created. Nothing else is pruned.
    pub const MANAGED: &str = "io.berth.managed";
    /// The berth instance that owns the object (`--instance`, default `default`). Two berth
    /// instances on one Engine never touch each other's objects.
    pub const INSTANCE: &str = "io.berth.instance";
    /// The stack (Compose project) name.
    pub const STACK: &str = "io.berth.stack";
    /// The service name within the stack.
    pub const SERVICE: &str = "io.berth.service";
    /// `sha256:<hex>` of the service's canonical spec.
    pub const SPEC_HASH: &str = "io.berth.spec-hash";
    /// The canonical spec itself (JSON, secrets as digests), for field-by-field reasons.
    pub const SPEC: &str = "io.berth.spec";
    /// Compose's own labels, so `docker compose ls` / `docker ps --filter` group berth's stacks.
    pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
    pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
    pub const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";
    pub const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";
    pub const COMPOSE_CONFIG_FILES: &str = "com.docker.compose.project.config_files";
    pub const COMPOSE_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
    pub const COMPOSE_NETWORK: &str = "com.docker.compose.network";
    pub const COMPOSE_VOLUME: &str = "com.docker.compose.volume";
}

/// A string whose value must never be shown: environment values, secret file contents.
///
/// `Debug` and `Display` print `(hidden)`; `Serialize` writes `sha256:<hex>` of the value, so
/// that canonical JSON, hashes and labels can tell "changed" without carrying the value.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value itself. Call only where it is handed to the Engine.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// `sha256:<hex>` of the value: what plans compare and labels store.
    pub fn digest(&self) -> String {
        sha256_hex(self.0.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(hidden)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(hidden)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.digest())
    }
}

/// A secret read back from berth's own state file (`crate::jobs::state`): the string as it is.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The container name of a replica: `container_name`, else `<stack>-<service>-<n>` as Compose.
pub fn container_name(stack: &str, service: &str, spec: &ServiceSpec, number: u32) -> String {
    match &spec.container_name {
        Some(name) => name.clone(),
        None => format!("{stack}-{service}-{number}"),
    }
}

/// The userinfo (`user[:password]`) of a `scheme://userinfo@host/…` URL.
pub fn url_userinfo(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.rsplit_once('@').map(|(userinfo, _)| userinfo)
}

/// `url` without credentials — the one scrubber for every URL berth shows (git remotes, restic
/// repositories): the userinfo of `scheme://userinfo@host/…` becomes `***` (for
/// ssh:// only a password is removed: the user name is no secret there).
pub fn redact_url(url: &str) -> String {
    let Some(userinfo) = url_userinfo(url) else {
        return url.to_owned();
    };
    let (scheme, rest) = url.split_once("://").unwrap_or((url, ""));
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

/// Where a document was declared: `file:line:col` of its `kind:` key (or of the key at fault),
/// relative to the config root. Shared by host settings, the edge and jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Origin {
    pub file: std::path::PathBuf,
    pub line: u64,
    pub col: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// The status context of host settings (`berth/<instance>/host`), and so a stack name the
/// loader refuses.
pub const HOST_GROUP: &str = "host";

/// The instance name when none is given.
pub const DEFAULT_INSTANCE: &str = "default";

pub(super) fn is_false(b: &bool) -> bool {
    !*b
}
pub(super) fn is_true(b: &bool) -> bool {
    *b
}
pub(super) fn yes() -> bool {
    true
}
pub(super) fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// The form in which the Engine lists an image reference (`RepoTags`), so that desired and
/// observed references compare equal: `busybox` → `busybox:latest`,
/// `docker.io/library/redis:7` → `redis:7`, `docker.io/grafana/grafana` → `grafana/grafana:latest`.
/// References by digest (`name@sha256:…`) keep their digest and get no tag.
pub fn normalize_image_ref(image: &str) -> String {
    let mut name = image.trim();
    for prefix in ["docker.io/library/", "index.docker.io/library/"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            name = rest;
        }
    }
    for prefix in ["docker.io/", "index.docker.io/"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            name = rest;
        }
    }
    if name.contains('@') {
        return name.to_string();
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_normalise_like_repo_tags() {
        assert_eq!(normalize_image_ref("busybox"), "busybox:latest");
        assert_eq!(normalize_image_ref("docker.io/library/redis:7"), "redis:7");
        assert_eq!(
            normalize_image_ref("docker.io/grafana/grafana"),
            "grafana/grafana:latest"
        );
        assert_eq!(
            normalize_image_ref("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(normalize_image_ref("ghcr.io/a/b:1.2"), "ghcr.io/a/b:1.2");
        assert_eq!(normalize_image_ref("x@sha256:abc"), "x@sha256:abc");
    }

    #[test]
    fn credentials_are_redacted_from_urls() {
        assert_eq!(
            redact_url("https://x-access-token:ghs_abc@github.com/a/b.git"),
            "https://***@github.com/a/b.git"
        );
        assert_eq!(
            redact_url("rest:https://u:p@backup.example:8000/x"),
            "rest:https://***@backup.example:8000/x"
        );
        assert_eq!(redact_url("file:///srv/repo.git"), "file:///srv/repo.git");
        assert_eq!(redact_url("git://127.0.0.1/repo"), "git://127.0.0.1/repo");
        assert_eq!(redact_url("/srv/restic"), "/srv/restic");
    }

    #[test]
    fn secrets_never_show_their_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "(hidden) (hidden)");
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("hunter2"));
        assert!(json.starts_with("\"sha256:"));
    }

    #[test]
    fn spec_hash_ignores_defaults_and_is_stable() {
        let a = ServiceSpec {
            image: "x:1".into(),
            replicas: 1,
            ..Default::default()
        };
        let b = ServiceSpec {
            replicas: 3,
            ..a.clone()
        };
        assert_eq!(a.canonical_json(), r#"{"image":"x:1"}"#);
        assert_eq!(a.spec_hash(), b.spec_hash());
        // Pinned: changing this hash redeploys every user's containers. Only change it when the
        // meaning of the spec changes.
        assert_eq!(a.spec_hash(), sha256_hex(br#"{"image":"x:1"}"#));
    }
}
