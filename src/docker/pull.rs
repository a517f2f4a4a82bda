//! Pulling images, and telling a registry that is unavailable for now (retry later) from an
//! image that cannot be pulled as asked (not found, access denied, invalid reference).

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;

use super::{DockerError, Engine, normalize_image_ref};

/// Why a pull failed, from the Engine's answer ([`classify_pull_failure`]). Only
/// [`PullFailure::Unavailable`] is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullFailure {
    /// The registry could not be reached or did not answer properly for now: DNS, connection
    /// refused, timeout, TLS handshake timeout, 5xx, rate limit. Transient.
    Unavailable,
    /// No such repository, tag or digest (`manifest unknown`, `name unknown`), or none for
    /// this platform. Permanent.
    NotFound,
    /// The registry refused access: `unauthorized`, `pull access denied` (Docker Hub's answer
    /// for a repository that does not exist or is private), missing credentials. Permanent.
    Denied,
    /// The Engine refused the reference itself (`invalid reference format`, an upper-case
    /// repository name, ...). Permanent.
    InvalidReference,
}

impl PullFailure {
    /// Whether pulling again later may succeed.
    pub fn is_transient(self) -> bool {
        self == PullFailure::Unavailable
    }
}

impl std::fmt::Display for PullFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PullFailure::Unavailable => "registry unavailable, will retry",
            PullFailure::NotFound => "image not found",
            PullFailure::Denied => "access denied",
            PullFailure::InvalidReference => "invalid image reference",
        })
    }
}

/// Classifies a failed pull from the Engine's HTTP status (`None` for an error reported in the
/// middle of the progress stream) and its message. The one place that reads pull error texts:
/// Engine 20.10 wraps the registry's answer in a few fixed forms (moby's
/// `distribution/errors.go`, docker/distribution's `errcode` and `reference` errors), e.g.
/// `manifest for x:1 not found: manifest unknown: manifest unknown` (404),
/// `Head "https://r/v2/x/manifests/1": unauthorized: authentication required` (500),
/// `Get "https://r/v2/": dial tcp: lookup r on 10.0.0.53:53: no such host` (500).
/// Anything not recognised as permanent is [`PullFailure::Unavailable`] when the Engine calls
/// it a server error (5xx, or a stream error), so that a registry outage is never given up on.
fn classify_pull_failure(status: Option<u16>, message: &str) -> PullFailure {
    const INVALID: &[&str] = &[
        "invalid reference format",
        "repository name must",
        "invalid tag format",
        "invalid digest format",
        "invalid repository name",
    ];
    const DENIED: &[&str] = &[
        "pull access denied",
        "unauthorized",
        "denied: ",
        "no basic auth credentials",
        "authentication required",
        "incorrect username or password",
    ];
    const NOT_FOUND: &[&str] = &[
        "manifest unknown",
        "name unknown",
        "not found",
        "repository does not exist",
        "no matching manifest for",
        "cannot download image with operating system",
        "unsupported manifest format",
    ];
    let m = message.to_ascii_lowercase();
    let has = |patterns: &[&str]| patterns.iter().any(|p| m.contains(p));
    if has(INVALID) {
        PullFailure::InvalidReference
    } else if has(DENIED) {
        PullFailure::Denied
    } else if has(NOT_FOUND) {
        PullFailure::NotFound
    } else {
        match status {
            None | Some(500..=599) => PullFailure::Unavailable,
            Some(401 | 403) => PullFailure::Denied,
            Some(404) => PullFailure::NotFound,
            Some(_) => PullFailure::InvalidReference,
        }
    }
}

impl Engine {
    /// Pulls `image`, reporting progress lines. Requests: 1 (streamed). A registry failure is
    /// a [`DockerError::Pull`] naming the image, the Engine's cause and its [`PullFailure`]
    /// (only an unavailable registry is transient); an Engine that cannot be reached or does
    /// not answer gives [`DockerError::Unreachable`] / [`DockerError::Timeout`].
    pub async fn pull(
        &self,
        image: &str,
        mut progress: impl FnMut(&str),
    ) -> Result<(), DockerError> {
        let reference = normalize_image_ref(image);
        let pull_err = |status: Option<u16>, cause: String| DockerError::Pull {
            image: image.to_string(),
            kind: classify_pull_failure(status, &cause),
            cause,
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
                    return Err(pull_err(None, error));
                }
                Err(BollardError::DockerResponseServerError {
                    status_code,
                    message,
                }) => return Err(pull_err(Some(status_code), message.trim().to_string())),
                // The Engine itself is unreachable, timed out or answered nonsense: not a
                // registry problem, the error says what happened and whether to retry.
                Err(e) => return Err(self.err(format!("pull {reference}"), e)),
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use PullFailure::*;

    /// Engine 20.10 answers, as the API returns them (HTTP status, `message`). Those marked
    /// "here" were provoked on this machine (no registry is reachable); the others are the
    /// forms moby 20.10 and docker/distribution build (see [`classify_pull_failure`]).
    const CASES: &[(Option<u16>, &str, PullFailure)] = &[
        // here: no DNS for the registry
        (
            Some(500),
            r#"Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no such host"#,
            Unavailable,
        ),
        // here: nothing listens
        (
            Some(500),
            r#"Get "http://localhost:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused"#,
            Unavailable,
        ),
        // here: UPPER/case:1, berth-test/app:-bad, a tag with a space
        (
            Some(400),
            "invalid reference format: repository name must be lowercase",
            InvalidReference,
        ),
        (Some(400), "invalid reference format", InvalidReference),
        (Some(400), "invalid tag format", InvalidReference),
        // timeouts, registry 5xx, rate limit
        (
            Some(500),
            r#"Get "https://registry-1.docker.io/v2/": net/http: request canceled while waiting for connection (Client.Timeout exceeded while awaiting headers)"#,
            Unavailable,
        ),
        (
            Some(500),
            r#"Get "https://registry.example.com/v2/": net/http: TLS handshake timeout"#,
            Unavailable,
        ),
        (
            Some(500),
            "received unexpected HTTP status: 503 Service Unavailable",
            Unavailable,
        ),
        (
            Some(500),
            "toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit",
            Unavailable,
        ),
        // a layer download broken in the middle of the stream
        (
            None,
            "read tcp 172.17.0.2:45678->104.18.124.25:443: read: connection reset by peer",
            Unavailable,
        ),
        (
            None,
            "filesystem layer verification failed for digest sha256:0e03bdcc26d7a9a57ef3b6f1bf1a210cff6239bff7c8cac72435984032851689",
            Unavailable,
        ),
        // notFoundError (404)
        (
            Some(404),
            "manifest for berth-test/app:9 not found: manifest unknown: manifest unknown",
            NotFound,
        ),
        (
            Some(404),
            "repository registry.example.com/team/app not found: name unknown: repository name not known to registry",
            NotFound,
        ),
        (
            Some(404),
            "pull access denied for nonexistent-xyz, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
            Denied,
        ),
        // no image for this platform
        (
            Some(500),
            "no matching manifest for linux/amd64 in the manifest list entries",
            NotFound,
        ),
        // errcode.ErrorCodeUnauthorized is not translated: 500
        (
            Some(500),
            r#"Head "https://registry.example.com/v2/team/app/manifests/1": unauthorized: authentication required"#,
            Denied,
        ),
        (
            Some(500),
            r#"Get "https://registry.example.com/v2/team/app/manifests/1": no basic auth credentials"#,
            Denied,
        ),
        (
            Some(500),
            r#"Get "https://registry-1.docker.io/v2/": unauthorized: incorrect username or password"#,
            Denied,
        ),
        // an unknown text: the status decides
        (Some(500), "something unexpected", Unavailable),
        (None, "something unexpected", Unavailable),
        (Some(404), "something unexpected", NotFound),
        (Some(403), "something unexpected", Denied),
        (Some(400), "something unexpected", InvalidReference),
    ];

    #[test]
    fn pull_failures_are_classified_from_engine_texts() {
        for (status, message, want) in CASES {
            assert_eq!(
                classify_pull_failure(*status, message),
                *want,
                "{status:?} {message}"
            );
        }
    }

    #[test]
    fn only_an_unavailable_registry_is_transient() {
        let pull = |kind| DockerError::Pull {
            image: "x:1".into(),
            cause: "c".into(),
            kind,
        };
        assert!(pull(Unavailable).is_transient());
        for kind in [NotFound, Denied, InvalidReference] {
            assert!(!pull(kind).is_transient(), "{kind:?}");
        }
        assert_eq!(
            pull(NotFound).to_string(),
            "cannot pull image x:1: c (image not found)"
        );
    }
}
