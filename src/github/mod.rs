//! The GitHub adapter: commit statuses, check runs, berth's own pull-request comment and
//! pull-request lookups, over GitHub's REST API (`api.github.com` or GitHub Enterprise's
//! `https://host/api/v3`).
//!
//! Authentication is either a token (PAT / fine-grained token) or a GitHub App: an RS256 JWT
//! signed with the App's private key is exchanged for an installation token of the repository,
//! which is cached until five minutes before it expires.
//!
//! **Retries.** Every method makes a single attempt and classifies failures with
//! [`GitHubError::is_transient`]. Retrying is the caller's decision (the write-back queue
//! retries transient failures on its own schedule); [`with_retry`] is offered for callers that
//! want an in-place capped, jittered exponential backoff. Retry whole operations, not single
//! requests: [`GitHub::upsert_comment`] re-lists before it creates, so retrying it after a
//! create whose response was lost still leaves exactly one comment.
//!
//! Tokens never appear in errors: `Debug` of [`Auth`]/[`Secret`] prints `(hidden)`, and every
//! error message is scrubbed of the bearer token used for the request.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod api;
mod app;
mod jwt;

use app::*;

pub use jwt::install as install_jwt_provider;

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::model::Secret;

/// GitHub.com's API root. GitHub Enterprise Server: `https://HOST/api/v3`.
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// The REST API version berth is written against (`X-GitHub-Api-Version`).
pub const API_VERSION: &str = "2022-11-28";
/// GitHub rejects commit-status descriptions longer than this (characters).
pub const STATUS_DESCRIPTION_MAX_CHARS: usize = 140;
/// Maximum length of a check run's `output.summary` and `output.text`.
pub const CHECK_OUTPUT_MAX: usize = 65_535;
/// Maximum length of an issue / pull-request comment body.
pub const COMMENT_BODY_MAX: usize = 65_536;
/// An installation token is replaced this long before its `expires_at`.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

const COMMENTS_PER_PAGE: usize = 100;
/// 100 pages of 100 comments; a PR with more than that is not one berth comments on sanely.
const MAX_COMMENT_PAGES: usize = 100;
const ERROR_MESSAGE_MAX_CHARS: usize = 500;

/// How berth authenticates to GitHub. `Debug` never shows the secrets.
#[derive(Clone)]
pub enum Auth {
    /// A personal access token or fine-grained token (sent as `Bearer`).
    Token(Secret),
    /// A GitHub App installed on the repository: its numeric App id and PEM private key
    /// (PKCS#1 as GitHub hands it out, or PKCS#8).
    App {
        app_id: u64,
        private_key_pem: Secret,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Token((hidden))"),
            Auth::App { app_id, .. } => {
                write!(f, "App {{ app_id: {app_id}, private_key_pem: (hidden) }}")
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct GitHubOptions {
    /// API root, default [`DEFAULT_API_URL`]; GitHub Enterprise: `https://HOST/api/v3`.
    pub api_url: String,
    /// `owner/name`.
    pub repo: String,
    pub auth: Auth,
    /// Per-request timeout (connect + response).
    pub timeout: Duration,
}

impl GitHubOptions {
    /// Options for github.com with a 30 s timeout.
    pub fn new(repo: impl Into<String>, auth: Auth) -> GitHubOptions {
        GitHubOptions {
            api_url: DEFAULT_API_URL.to_string(),
            repo: repo.into(),
            auth,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A failed GitHub call. Messages never contain a token.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("invalid GitHub configuration: {0}")]
    Config(String),
    #[error("GitHub request {method} {path} timed out")]
    Timeout { method: String, path: String },
    #[error("GitHub request {method} {path} failed: {message}")]
    Network {
        method: String,
        path: String,
        message: String,
    },
    #[error("GitHub API {method} {path} returned {status}: {message}")]
    Api {
        method: String,
        path: String,
        status: u16,
        message: String,
        /// From `Retry-After`, or `X-RateLimit-Reset` when the rate limit is exhausted.
        retry_after: Option<Duration>,
        /// A primary or secondary rate limit (403/429 with rate-limit signals).
        rate_limited: bool,
    },
    #[error("GitHub API {method} {path}: unexpected response: {message}")]
    Decode {
        method: String,
        path: String,
        message: String,
    },
    #[error("GitHub App authentication failed: {0}")]
    AppAuth(String),
}

impl GitHubError {
    /// Worth retrying later: network errors, timeouts, 5xx, 408, 429 and rate-limited 403s.
    /// 401 (bad credentials), 404, 422 and the rest are permanent: retrying cannot help.
    pub fn is_transient(&self) -> bool {
        match self {
            GitHubError::Timeout { .. } | GitHubError::Network { .. } => true,
            GitHubError::Api {
                status,
                rate_limited,
                ..
            } => {
                *status >= 500
                    || *status == 408
                    || *status == 429
                    || (*status == 403 && *rate_limited)
            }
            GitHubError::Config(_) | GitHubError::Decode { .. } | GitHubError::AppAuth(_) => false,
        }
    }

    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long GitHub asked us to wait, if it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GitHubError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Removes `secret` from every message (defence in depth; GitHub does not echo tokens).
    fn scrub(self, secret: &str) -> GitHubError {
        if secret.is_empty() {
            return self;
        }
        let s = |m: String| {
            if m.contains(secret) {
                m.replace(secret, "(hidden)")
            } else {
                m
            }
        };
        match self {
            GitHubError::Config(m) => GitHubError::Config(s(m)),
            GitHubError::AppAuth(m) => GitHubError::AppAuth(s(m)),
            GitHubError::Timeout { method, path } => GitHubError::Timeout {
                method,
                path: s(path),
            },
            GitHubError::Network {
                method,
                path,
                message,
            } => GitHubError::Network {
                method,
                path: s(path),
                message: s(message),
            },
            GitHubError::Decode {
                method,
                path,
                message,
            } => GitHubError::Decode {
                method,
                path: s(path),
                message: s(message),
            },
            GitHubError::Api {
                method,
                path,
                status,
                message,
                retry_after,
                rate_limited,
            } => GitHubError::Api {
                method,
                path: s(path),
                status,
                message: s(message),
                retry_after,
                rate_limited,
            },
        }
    }
}

/// Backoff for [`with_retry`].
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Retries after the first attempt.
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_retries: 4,
        }
    }
}

/// Runs `op` again while it fails with a transient error, with capped, jittered exponential
/// backoff. A `Retry-After` longer than the backoff is honoured; one longer than
/// `policy.max_delay` ends the retries (the error is returned, still transient, for a queue to
/// reschedule). Permanent errors are returned at once.
pub async fn with_retry<T, F, Fut>(policy: &RetryPolicy, op: F) -> Result<T, GitHubError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, GitHubError>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.max_retries)
        .with_jitter();
    let max = policy.max_delay;
    op.retry(backoff)
        .when(GitHubError::is_transient)
        .adjust(move |e, delay| {
            let delay = delay?;
            match e.retry_after() {
                Some(ra) if ra > max => None,
                Some(ra) => Some(ra.max(delay)),
                None => Some(delay),
            }
        })
        .notify(|e, delay| tracing::debug!(error = %e, ?delay, "retrying GitHub call"))
        .await
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

/// A commit status (`POST /repos/{owner}/{repo}/statuses/{sha}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusUpdate {
    pub state: StatusState,
    /// e.g. `berth/plan`; one status per context is shown.
    pub context: String,
    /// Truncated to 140 characters.
    pub description: String,
    pub target_url: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Queued,
    InProgress,
    Completed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckConclusion {
    ActionRequired,
    Cancelled,
    Failure,
    Neutral,
    Success,
    Skipped,
    TimedOut,
}

/// A check run (GitHub App mode only: GitHub refuses check runs from tokens that are not an
/// App's). `Completed` without a conclusion is sent as `neutral`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRun {
    pub name: String,
    pub status: CheckStatus,
    pub conclusion: Option<CheckConclusion>,
    pub title: String,
    /// Markdown; cut below 65,535 characters with a note.
    pub summary: String,
    /// Markdown; cut below 65,535 characters with a note.
    pub text: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullState {
    Open,
    Closed,
}

/// What berth needs to know about a pull request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullInfo {
    pub number: u64,
    pub state: PullState,
    pub merged: bool,
    pub draft: bool,
    /// The branch the PR targets (`main`).
    pub base_ref: String,
    pub base_sha: String,
    pub head_ref: String,
    pub head_sha: String,
}

/// The GitHub client for one repository. Cheap to clone.
#[derive(Clone)]
pub struct GitHub {
    inner: Arc<Inner>,
}

impl fmt::Debug for GitHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHub")
            .field("api", &self.inner.api.as_str())
            .field(
                "repo",
                &format_args!("{}/{}", self.inner.owner, self.inner.name),
            )
            .field("app", &self.is_app())
            .finish()
    }
}

struct Inner {
    http: reqwest::Client,
    api: Url,
    owner: String,
    name: String,
    auth: AuthState,
}

enum AuthState {
    Token(Secret),
    App(AppAuth),
}

#[derive(Deserialize)]
struct Id {
    id: u64,
}

impl GitHub {
    pub fn new(opts: GitHubOptions) -> Result<GitHub, GitHubError> {
        let (owner, name) = split_repo(&opts.repo)?;
        let mut api = Url::parse(opts.api_url.trim_end_matches('/'))
            .map_err(|e| GitHubError::Config(format!("api url {:?}: {e}", opts.api_url)))?;
        if !matches!(api.scheme(), "http" | "https") || api.cannot_be_a_base() {
            return Err(GitHubError::Config(format!(
                "api url {:?} is not an http(s) URL",
                opts.api_url
            )));
        }
        api.set_query(None);
        api.set_fragment(None);
        let auth = match opts.auth {
            Auth::Token(t) => {
                if t.expose().trim().is_empty() {
                    return Err(GitHubError::Config("the GitHub token is empty".into()));
                }
                AuthState::Token(Secret::new(t.expose().trim()))
            }
            Auth::App {
                app_id,
                private_key_pem,
            } => {
                jwt::install();
                let key =
                    jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.expose().as_bytes())
                        .map_err(|e| {
                            GitHubError::Config(format!(
                                "GitHub App private key is not an RSA PEM key: {e}"
                            ))
                        })?;
                AuthState::App(AppAuth {
                    app_id,
                    key,
                    cache: Mutex::new(AppCache::default()),
                })
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static(API_VERSION),
        );
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| GitHubError::Config(format!("HTTP client: {e}")))?;
        Ok(GitHub {
            inner: Arc::new(Inner {
                http,
                api,
                owner,
                name,
                auth,
            }),
        })
    }

    /// True when authenticating as a GitHub App (check runs are available).
    pub fn is_app(&self) -> bool {
        matches!(self.inner.auth, AuthState::App(_))
    }

    /// `owner/name`.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.inner.owner, self.inner.name)
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.api.clone();
        url.path_segments_mut()
            .expect("checked in new()")
            .pop_if_empty()
            .extend(segments);
        url
    }

    fn repo_url(&self, rest: &[&str]) -> Url {
        let mut segs = vec!["repos", self.inner.owner.as_str(), self.inner.name.as_str()];
        segs.extend_from_slice(rest);
        self.url(&segs)
    }

    /// One authenticated API request. In App mode a 401 drops the cached installation token so
    /// that the next call mints a fresh one.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<T, GitHubError> {
        let token = self.bearer().await?;
        let result = self.send(method, url, body, &token).await;
        if let (Err(e), AuthState::App(app)) = (&result, &self.inner.auth) {
            if e.status() == Some(401) {
                app.cache.lock().await.token = None;
            }
        }
        result
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        bearer: &Secret,
    ) -> Result<T, GitHubError> {
        let m = method.to_string();
        let path = url.path().to_string();
        let mut req = self
            .inner
            .http
            .request(method, url)
            .header(AUTHORIZATION, format!("Bearer {}", bearer.expose()));
        if let Some(b) = body {
            req = req.json(b);
        }
        let result = async {
            let resp = req
                .send()
                .await
                .map_err(|e| transport_error(&m, &path, e))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| transport_error(&m, &path, e))?;
            if !status.is_success() {
                return Err(api_error(&m, &path, status.as_u16(), &headers, &bytes));
            }
            serde_json::from_slice(&bytes).map_err(|e| GitHubError::Decode {
                method: m.clone(),
                path: path.clone(),
                message: e.to_string(),
            })
        }
        .await;
        result.map_err(|e| e.scrub(bearer.expose()))
    }
}

fn split_repo(repo: &str) -> Result<(String, String), GitHubError> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repo.trim().split_once('/') {
        Some((o, n)) if ok(o) && ok(n) && n != "." && n != ".." => {
            Ok((o.to_string(), n.trim_end_matches(".git").to_string()))
        }
        _ => Err(GitHubError::Config(format!(
            "repository {repo:?} is not owner/name"
        ))),
    }
}

fn transport_error(method: &str, path: &str, e: reqwest::Error) -> GitHubError {
    if e.is_timeout() {
        return GitHubError::Timeout {
            method: method.into(),
            path: path.into(),
        };
    }
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    GitHubError::Network {
        method: method.into(),
        path: path.into(),
        message,
    }
}

fn api_error(
    method: &str,
    path: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> GitHubError {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let message = if message.is_empty() {
        "(no message)".to_string()
    } else {
        message
    };
    let retry_after_header = header(RETRY_AFTER.as_str())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let exhausted = header("x-ratelimit-remaining") == Some("0");
    let reset = header("x-ratelimit-reset")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|reset| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            Duration::from_secs(reset.saturating_sub(now).max(1))
        });
    let rate_limited = matches!(status, 403 | 429)
        && (retry_after_header.is_some()
            || exhausted
            || message.to_ascii_lowercase().contains("rate limit"));
    let retry_after = retry_after_header.or(if exhausted { reset } else { None });
    GitHubError::Api {
        method: method.into(),
        path: path.into(),
        status,
        message: truncate_chars(&message, ERROR_MESSAGE_MAX_CHARS).into_owned(),
        retry_after,
        rate_limited,
    }
}

/// Cuts `s` to at most `max` characters, ending with `…` when cut (on a char boundary).
pub fn truncate_chars(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max {
        return Cow::Borrowed(s);
    }
    let keep = max.saturating_sub(1);
    let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
    Cow::Owned(format!("{}…", &s[..end]))
}

/// Cuts `s` so that its UTF-8 length (and so its character count) is at most `max`, ending
/// with a note that says it was cut. Never splits a character.
pub fn truncate_with_note(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let note = format!(
        "\n\n…\n\n_(truncated by berth: the full text is {} characters, over GitHub's limit of {max})_",
        s.chars().count()
    );
    let mut end = max.saturating_sub(note.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{note}", &s[..end]))
}

#[cfg(test)]
mod tests {
    use super::api::normalize_marker;
    use super::*;

    #[test]
    fn truncation_respects_limits_and_char_boundaries() {
        let d = "é".repeat(200);
        let t = truncate_chars(&d, 140);
        assert_eq!(t.chars().count(), 140);
        assert!(t.ends_with('…'));
        assert_eq!(truncate_chars("short", 140), "short");

        let long = "ü".repeat(70_000);
        let t = truncate_with_note(&long, CHECK_OUTPUT_MAX);
        assert!(t.len() <= CHECK_OUTPUT_MAX);
        assert!(t.contains("truncated by berth"));
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_rfc3339("2016-07-11T22:14:10Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_468_275_250))
        );
        assert_eq!(
            parse_rfc3339("2016-07-12T00:14:10.123+02:00"),
            Some(UNIX_EPOCH + Duration::from_secs(1_468_275_250))
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn markers_and_repos() {
        assert_eq!(
            normalize_marker("berth:preview:x").unwrap(),
            "<!-- berth:preview:x -->"
        );
        assert_eq!(
            normalize_marker("<!-- berth:preview:x -->").unwrap(),
            "<!-- berth:preview:x -->"
        );
        assert!(normalize_marker("a -- b").is_err());
        assert!(split_repo("owner/name").is_ok());
        assert!(split_repo("owner").is_err());
        assert!(split_repo("a/b/c").is_err());
    }
}
