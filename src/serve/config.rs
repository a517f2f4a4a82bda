//! `berth serve` settings. Each setting is declared once, in the [`settings!`] table below: its
//! flag, environment variable, config-file key, default and help text. From that one table come
//! the clap arguments ([`ServeArgs`], hence `--help`), the `--config` YAML keys, the defaults used
//! by [`ServeConfig::resolve`], and the README's settings table ([`settings_markdown`], checked
//! by a test). Precedence: a flag or its environment variable, then the file, then the default.
//! Secrets (webhook secret, GitHub token or App key) are read from the environment or from files,
//! never from a flag's value ([`ENV_ONLY`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::server::HttpLimits;
use crate::model::Secret;

/// A setting's value when neither a flag, its environment variable nor the file sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// No value (the setting is optional, or required).
    None,
    /// This text, parsed like a flag's value.
    Value(&'static str),
    /// Computed at start; the text says how (for `--help` and the README).
    Computed(&'static str),
}

impl Fallback {
    fn shown(&self) -> Option<&'static str> {
        match self {
            Fallback::None => None,
            Fallback::Value(v) | Fallback::Computed(v) => Some(v),
        }
    }
}

/// One row of the settings table.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The flag without `--`, also the config-file key.
    pub key: &'static str,
    pub env: &'static str,
    pub fallback: Fallback,
    pub help: &'static str,
    /// An on/off setting: `--key` alone means true, `--key=false` is accepted.
    pub switch: bool,
}

/// A setting that only comes from the environment (secrets, the log filter).
#[derive(Debug, Clone, Copy)]
pub struct EnvOnly {
    pub env: &'static str,
    pub fallback: Fallback,
    pub help: &'static str,
}

/// `BERTH_LOG`'s default for `berth serve` (the one-shot commands use `warn`).
pub const SERVE_LOG_DEFAULT: &str = "info";

/// Settings read only from the environment: secrets never go through a flag (process listings,
/// shell history), and the log filter applies before the flags are parsed.
pub const ENV_ONLY: &[EnvOnly] = &[
    EnvOnly {
        env: "BERTH_WEBHOOK_SECRET",
        fallback: Fallback::None,
        help: "The webhook secret itself (else --webhook-secret-file; one of them, or \
               --insecure-no-webhook-secret, is required).",
    },
    EnvOnly {
        env: "BERTH_GITHUB_TOKEN",
        fallback: Fallback::None,
        help: "A GitHub token: commit statuses, PR previews, and https:// git remotes.",
    },
    EnvOnly {
        env: "BERTH_LOG",
        fallback: Fallback::Value(SERVE_LOG_DEFAULT),
        help: "Log filter (tracing EnvFilter syntax, e.g. `berth=debug`).",
    },
];

/// How a setting's text becomes its value (flag, environment variable, file, default alike).
pub trait SettingValue: Sized + Clone + Send + Sync + 'static {
    /// An on/off setting (see [`Setting::switch`]).
    const SWITCH: bool = false;
    /// The value's placeholder in `--help`.
    const VALUE_NAME: &'static str;
    fn parse(s: &str) -> Result<Self, String>;
}

impl SettingValue for String {
    const VALUE_NAME: &'static str = "TEXT";
    fn parse(s: &str) -> Result<Self, String> {
        Ok(s.to_string())
    }
}

impl SettingValue for PathBuf {
    const VALUE_NAME: &'static str = "PATH";
    fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty path".into());
        }
        Ok(PathBuf::from(s))
    }
}

impl SettingValue for Duration {
    const VALUE_NAME: &'static str = "DURATION";
    fn parse(s: &str) -> Result<Self, String> {
        crate::compose::parse_duration(s)
    }
}

impl SettingValue for SocketAddr {
    const VALUE_NAME: &'static str = "ADDR";
    fn parse(s: &str) -> Result<Self, String> {
        s.parse()
            .map_err(|_| format!("{s:?} is not an IP address and port (e.g. 127.0.0.1:9470)"))
    }
}

impl SettingValue for u64 {
    const VALUE_NAME: &'static str = "N";
    fn parse(s: &str) -> Result<Self, String> {
        s.parse()
            .map_err(|_| format!("{s:?} is not a non-negative integer"))
    }
}

impl SettingValue for usize {
    const VALUE_NAME: &'static str = "N";
    fn parse(s: &str) -> Result<Self, String> {
        match s.parse() {
            Ok(0) | Err(_) => Err(format!("{s:?} is not a positive integer")),
            Ok(n) => Ok(n),
        }
    }
}

impl SettingValue for bool {
    const SWITCH: bool = true;
    const VALUE_NAME: &'static str = "true|false";
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(format!("{s:?} is not true or false")),
        }
    }
}

/// The help line of a setting: its text and its default.
fn help_line(help: &str, fallback: Fallback) -> String {
    match fallback.shown() {
        Some(d) => format!("{help} [default: {d}]"),
        None => help.to_string(),
    }
}

/// Declares every setting once; generates [`ServeArgs`] (clap), the file's keys, [`SETTINGS`]
/// and the merge of the three sources.
macro_rules! settings {
    ($( $key:literal => $field:ident : $ty:ty, $env:literal, $fallback:expr, $help:literal; )*) => {
        /// The flags of `berth serve` (each with its environment variable). Every field is
        /// optional so that the config file and then the default can fill what is not given.
        #[derive(Debug, Clone, Default, clap::Args)]
        #[command(after_help = env_only_help())]
        pub struct ServeArgs {
            $(
                #[arg(
                    long = $key,
                    env = $env,
                    help = help_line($help, $fallback),
                    value_parser = <$ty as SettingValue>::parse,
                    value_name = <$ty as SettingValue>::VALUE_NAME,
                    num_args = if <$ty as SettingValue>::SWITCH { 0..=1 } else { 1..=1 },
                    require_equals = <$ty as SettingValue>::SWITCH,
                    default_missing_value = if <$ty as SettingValue>::SWITCH { Some("true") } else { None },
                )]
                pub $field: Option<$ty>,
            )*
        }

        /// Every setting, in `--help` order.
        pub const SETTINGS: &[Setting] = &[
            $( Setting {
                key: $key,
                env: $env,
                fallback: $fallback,
                help: $help,
                switch: <$ty as SettingValue>::SWITCH,
            }, )*
        ];

        /// The settings as a YAML file: the same keys, each value with where it was written.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileSettings {
            $( #[serde(rename = $key, default)] $field: Option<Spanned<String>>, )*
        }

        /// Each setting from the first source that has it (`None`: no source and no default).
        #[derive(Debug, Clone)]
        #[allow(dead_code)] // `config` itself is used before the merge.
        struct Merged {
            $( $field: Option<$ty>, )*
        }

        fn merge(args: &ServeArgs, file: FileSettings, origin: &str) -> Result<Merged, ConfigError> {
            Ok(Merged {
                $( $field: pick(args.$field.clone(), file.$field, $key, $fallback, origin)?, )*
            })
        }

        /// Every `Fallback::Value` parses as its setting's type (a unit test calls this).
        #[cfg(test)]
        fn check_fallbacks() -> Result<(), String> {
            $( if let Fallback::Value(v) = $fallback {
                <$ty as SettingValue>::parse(v).map_err(|e| format!("{}: {e}", $key))?;
            } )*
            Ok(())
        }
    };
}

settings! {
    "config" => config: PathBuf, "BERTH_CONFIG", Fallback::None,
        "A YAML file with any of these settings, keyed like the flags (`poll-interval: 30s`); a flag or its environment variable wins over the file.";
    "repo" => repo: String, "BERTH_REPO", Fallback::None,
        "The config repository (required): file://, git://, https:// (token from BERTH_GITHUB_TOKEN), ssh://.";
    "branch" => branch: String, "BERTH_BRANCH", Fallback::Value("main"),
        "The tracked branch.";
    "path" => path: String, "BERTH_PATH", Fallback::Computed("the repository root"),
        "The sub-folder of the repository that holds the stacks.";
    "poll-interval" => poll_interval: Duration, "BERTH_POLL_INTERVAL", Fallback::Value("60s"),
        "How often to look at the remote branch (one ref look-up when nothing moved).";
    "resync-interval" => resync_interval: Duration, "BERTH_RESYNC_INTERVAL", Fallback::Value("5m"),
        "How often to re-check the running containers against the applied commit and repair drift.";
    "listen" => listen: SocketAddr, "BERTH_LISTEN", Fallback::Value("127.0.0.1:9470"),
        "Address of the webhook, health and metrics endpoints.";
    "state-dir" => state_dir: PathBuf, "BERTH_STATE_DIR", Fallback::Value("/var/lib/berth"),
        "Where berth keeps its git mirror, exported trees and state.";
    "name" => name: String, "BERTH_NAME", Fallback::Computed("the host name"),
        "This instance's name in status contexts (`berth/<name>/<stack>`).";
    "webhook-secret-file" => webhook_secret_file: PathBuf, "BERTH_WEBHOOK_SECRET_FILE", Fallback::None,
        "A file holding the webhook secret (BERTH_WEBHOOK_SECRET, the secret itself, wins).";
    "insecure-no-webhook-secret" => insecure_no_webhook_secret: bool, "BERTH_INSECURE_NO_WEBHOOK_SECRET", Fallback::Value("false"),
        "Accept unsigned webhooks when no secret is configured (never in production).";
    "github-api-url" => github_api_url: String, "BERTH_GITHUB_API_URL", Fallback::Value("https://api.github.com"),
        "GitHub API base URL (GitHub Enterprise: https://HOST/api/v3).";
    "github-repo" => github_repo: String, "BERTH_GITHUB_REPO", Fallback::Computed("derived from a GitHub --repo URL"),
        "`owner/name` for statuses and previews.";
    "github-app-id" => github_app_id: u64, "BERTH_GITHUB_APP_ID", Fallback::None,
        "GitHub App id (with --github-app-key-file) instead of BERTH_GITHUB_TOKEN: check runs with the full plan.";
    "github-app-key-file" => github_app_key_file: PathBuf, "BERTH_GITHUB_APP_KEY_FILE", Fallback::None,
        "The GitHub App's private key (PEM).";
    "allow-non-fast-forward" => allow_non_fast_forward: bool, "BERTH_ALLOW_NON_FAST_FORWARD", Fallback::Value("false"),
        "Apply a branch that moved in a non-fast-forward way (force push).";
    "public-url" => public_url: String, "BERTH_PUBLIC_URL", Fallback::None,
        "A URL for the statuses' Details link.";
    "git-timeout" => git_timeout: Duration, "BERTH_GIT_TIMEOUT", Fallback::Value("60s"),
        "Timeout of every git network operation.";
    "health-timeout" => health_timeout: Duration, "BERTH_HEALTH_TIMEOUT", Fallback::Value("60s"),
        "How long apply waits for a container to become healthy.";
    "allow-empty" => allow_empty: bool, "BERTH_ALLOW_EMPTY", Fallback::Value("false"),
        "Allow removing everything when the repository declares no stack.";
    "prune-volumes" => prune_volumes: bool, "BERTH_PRUNE_VOLUMES", Fallback::Value("false"),
        "Remove owned named volumes that left the config (deletes their data).";
    "http-header-timeout" => http_header_timeout: Duration, "BERTH_HTTP_HEADER_TIMEOUT", Fallback::Value("10s"),
        "A request's headers must arrive within this, else the connection is closed; also how long an idle keep-alive connection stays open.";
    "http-request-timeout" => http_request_timeout: Duration, "BERTH_HTTP_REQUEST_TIMEOUT", Fallback::Value("30s"),
        "Reading a request's body and answering must finish within this, else 408 and the connection is closed.";
    "http-max-connections" => http_max_connections: usize, "BERTH_HTTP_MAX_CONNECTIONS", Fallback::Value("1024"),
        "Open HTTP connections at most (lowered to fit the open-file limit); at the cap a new connection closes the oldest idle one.";
}

fn pick<T: SettingValue>(
    flag: Option<T>,
    file: Option<Spanned<String>>,
    key: &str,
    fallback: Fallback,
    origin: &str,
) -> Result<Option<T>, ConfigError> {
    if let Some(v) = flag {
        return Ok(Some(v));
    }
    if let Some(s) = file {
        let at = &s.referenced;
        return T::parse(&s.value).map(Some).map_err(|e| {
            ConfigError::Invalid(format!(
                "{origin}:{}:{}: {key}: {e}",
                at.line(),
                at.column()
            ))
        });
    }
    match fallback {
        Fallback::Value(d) => T::parse(d)
            .map(Some)
            .map_err(|e| ConfigError::Invalid(format!("the default of {key}: {e}"))),
        Fallback::None | Fallback::Computed(_) => Ok(None),
    }
}

/// The text after `berth serve --help`'s options: the environment-only settings.
fn env_only_help() -> String {
    let mut out = String::from("Environment only (never flags):\n");
    for e in ENV_ONLY {
        out.push_str(&format!("  {}  {}\n", e.env, help_line(e.help, e.fallback)));
    }
    out.push_str("Exit codes: 0 after SIGTERM/SIGINT; 1 when it cannot start (bad settings, --listen taken).");
    out
}

/// The README's settings table, generated from [`SETTINGS`] and [`ENV_ONLY`].
pub fn settings_markdown() -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = String::from(
        "| flag | env | config key | default | meaning |\n| --- | --- | --- | --- | --- |\n",
    );
    for s in SETTINGS {
        let flag = if s.switch {
            format!("`--{}`", s.key)
        } else {
            format!("`--{} …`", s.key)
        };
        let key = if s.key == "config" {
            "—".to_string()
        } else {
            format!("`{}`", s.key)
        };
        out.push_str(&format!(
            "| {flag} | `{}` | {key} | {} | {} |\n",
            s.env,
            fallback_cell(s.fallback),
            cell(s.help)
        ));
    }
    for e in ENV_ONLY {
        out.push_str(&format!(
            "| — | `{}` | — | {} | {} |\n",
            e.env,
            fallback_cell(e.fallback),
            cell(e.help)
        ));
    }
    out
}

fn fallback_cell(f: Fallback) -> String {
    match f {
        Fallback::None => "—".into(),
        Fallback::Value(v) => format!("`{v}`"),
        Fallback::Computed(how) => how.into(),
    }
}

static HTTP_LIMITS: OnceLock<HttpLimits> = OnceLock::new();

/// Make `limits` the ones [`super::http::serve`] uses in this process (once, at start, from the
/// resolved settings). False when limits were already installed.
pub fn install_http_limits(limits: HttpLimits) -> bool {
    HTTP_LIMITS.set(limits).is_ok()
}

/// The installed HTTP limits, else the settings' defaults.
pub fn http_limits() -> HttpLimits {
    *HTTP_LIMITS.get_or_init(|| {
        let none = ServeArgs::default();
        match merge(&none, FileSettings::default(), "").and_then(|m| http_limits_of(&m)) {
            Ok(limits) => limits,
            // Unreachable: `fallbacks_parse` checks every default.
            Err(e) => unreachable!("{e}"),
        }
    })
}

fn http_limits_of(m: &Merged) -> Result<HttpLimits, ConfigError> {
    Ok(HttpLimits {
        header_timeout: required(m.http_header_timeout, "http-header-timeout")?,
        request_timeout: required(m.http_request_timeout, "http-request-timeout")?,
        max_connections: required(m.http_max_connections, "http-max-connections")?,
    })
}

fn required<T>(v: Option<T>, key: &str) -> Result<T, ConfigError> {
    v.ok_or_else(|| ConfigError::Invalid(format!("{key}: no value")))
}

/// How berth authenticates to GitHub.
#[derive(Debug, Clone)]
pub enum GitHubAuth {
    Token(Secret),
    App {
        app_id: u64,
        private_key_pem: Secret,
    },
}

#[derive(Debug, Clone)]
pub struct GitHubSettings {
    pub api_url: String,
    /// `owner/name`.
    pub repo: String,
    pub auth: GitHubAuth,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub repo: String,
    pub branch: String,
    pub path: String,
    pub poll_interval: Duration,
    pub resync_interval: Duration,
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub name: String,
    /// Ownership scope (the global `--instance`).
    pub instance: String,
    pub webhook_secret: Option<Secret>,
    pub insecure_no_webhook_secret: bool,
    /// `None`: no write-back (a local repository, or no credentials).
    pub github: Option<GitHubSettings>,
    /// A token for https:// git remotes (the GitHub token when set).
    pub git_token: Option<Secret>,
    pub allow_non_fast_forward: bool,
    pub public_url: Option<String>,
    pub git_timeout: Duration,
    pub health_timeout: Duration,
    pub allow_empty: bool,
    pub prune_volumes: bool,
    /// Timeouts and limits of the HTTP endpoint.
    pub http: HttpLimits,
}

/// A setting that cannot be used. Always permanent: the process exits with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ServeConfig {
    /// Resolve flags (with their env vars), the config file and defaults. `env` is the process
    /// environment, for the secrets that only come from there.
    pub fn resolve(
        args: &ServeArgs,
        instance: &str,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<ServeConfig, ConfigError> {
        let (file, origin) = match &args.config {
            Some(path) => (read_file_settings(path)?, path.display().to_string()),
            None => (FileSettings::default(), String::new()),
        };
        if let Some(c) = &file.config {
            return Err(ConfigError::Invalid(format!(
                "{origin}:{}:{}: config: a config file cannot name another one",
                c.referenced.line(),
                c.referenced.column()
            )));
        }
        let m = merge(args, file, &origin)?;
        let repo = m.repo.clone().ok_or_else(|| {
            ConfigError::Invalid(
                "no config repository: pass --repo URL (or BERTH_REPO, or `repo:` in --config)"
                    .into(),
            )
        })?;
        let webhook_secret = match (
            env.get("BERTH_WEBHOOK_SECRET").filter(|s| !s.is_empty()),
            &m.webhook_secret_file,
        ) {
            (Some(s), _) => Some(Secret::new(s.clone())),
            (None, Some(path)) => Some(Secret::new(read_secret(path)?)),
            (None, None) => None,
        };
        let insecure = m.insecure_no_webhook_secret.unwrap_or(false);
        if webhook_secret.is_none() && !insecure {
            return Err(ConfigError::Invalid(
                "no webhook secret: set BERTH_WEBHOOK_SECRET or --webhook-secret-file \
                 (or pass --insecure-no-webhook-secret to accept unsigned webhooks)"
                    .into(),
            ));
        }
        let token = env
            .get("BERTH_GITHUB_TOKEN")
            .filter(|s| !s.is_empty())
            .map(|t| Secret::new(t.clone()));
        let auth = match (m.github_app_id, &m.github_app_key_file, &token) {
            (Some(app_id), Some(key), _) => Some(GitHubAuth::App {
                app_id,
                private_key_pem: Secret::new(read_secret(key)?),
            }),
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(ConfigError::Invalid(
                    "a GitHub App needs both --github-app-id and --github-app-key-file".into(),
                ));
            }
            (None, None, Some(t)) => Some(GitHubAuth::Token(t.clone())),
            (None, None, None) => None,
        };
        let github_repo = m
            .github_repo
            .clone()
            .or_else(|| github_repo_from_url(&repo));
        let github = match (auth, github_repo) {
            (Some(auth), Some(repo)) => {
                if !repo.contains('/') {
                    return Err(ConfigError::Invalid(format!(
                        "--github-repo must be owner/name, not {repo:?}"
                    )));
                }
                Some(GitHubSettings {
                    api_url: required(m.github_api_url.clone(), "github-api-url")?
                        .trim_end_matches('/')
                        .to_string(),
                    repo,
                    auth,
                })
            }
            (Some(_), None) => {
                return Err(ConfigError::Invalid(
                    "GitHub credentials are set but the repository is unknown: pass \
                     --github-repo owner/name (it is derived only from GitHub remote URLs)"
                        .into(),
                ));
            }
            (None, _) => None,
        };
        Ok(ServeConfig {
            repo,
            branch: required(m.branch.clone(), "branch")?,
            path: m
                .path
                .clone()
                .unwrap_or_default()
                .trim_matches('/')
                .to_string(),
            poll_interval: required(m.poll_interval, "poll-interval")?,
            resync_interval: required(m.resync_interval, "resync-interval")?,
            listen: required(m.listen, "listen")?,
            state_dir: required(m.state_dir.clone(), "state-dir")?,
            name: m.name.clone().unwrap_or_else(host_name),
            instance: instance.to_string(),
            webhook_secret,
            insecure_no_webhook_secret: insecure,
            github,
            git_token: token,
            allow_non_fast_forward: m.allow_non_fast_forward.unwrap_or(false),
            public_url: m.public_url.clone(),
            git_timeout: required(m.git_timeout, "git-timeout")?,
            health_timeout: required(m.health_timeout, "health-timeout")?,
            allow_empty: m.allow_empty.unwrap_or(false),
            prune_volumes: m.prune_volumes.unwrap_or(false),
            http: http_limits_of(&m)?,
        })
    }

    /// A fingerprint of the settings that change what a reconcile does, with berth's version:
    /// a permanent failure is retried when these change.
    pub fn fingerprint(&self) -> String {
        let text = format!(
            "{}|{}|{}|{}|{}|{}|{}|{}",
            env!("CARGO_PKG_VERSION"),
            self.repo,
            self.branch,
            self.path,
            self.instance,
            self.allow_empty,
            self.prune_volumes,
            self.health_timeout.as_secs()
        );
        crate::model::sha256_hex(text.as_bytes())
    }
}

fn read_file_settings(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_saphyr::from_str(&text)
        .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))
}

fn read_secret(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// `owner/name` from `https://github.com/owner/name(.git)` or `git@github.com:owner/name.git`.
pub fn github_repo_from_url(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://github.com/")
        .or_else(|| url.strip_prefix("http://github.com/"))
        .or_else(|| url.strip_prefix("ssh://git@github.com/"))
        .or_else(|| url.strip_prefix("git@github.com:"))
        .or_else(|| {
            // https://TOKEN@github.com/owner/name
            url.split_once("@github.com/").map(|(_, r)| r)
        })?;
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = rest.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(o), Some(n), None) if !o.is_empty() && !n.is_empty() => Some(format!("{o}/{n}")),
        _ => None,
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "berth".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fallbacks_parse() {
        check_fallbacks().unwrap();
        let limits = http_limits();
        assert_eq!(limits.header_timeout, Duration::from_secs(10));
        assert_eq!(limits.max_connections, 1024);
    }

    #[test]
    fn the_readme_settings_table_is_generated_from_the_settings() {
        let readme = include_str!("../../README.md");
        let table = settings_markdown();
        let begin = "<!-- serve-settings: generated by settings_markdown(); keep in sync -->\n";
        let found = readme
            .split_once(begin)
            .and_then(|(_, rest)| rest.split_once("\n\n"))
            .map(|(t, _)| format!("{t}\n"));
        assert_eq!(
            found.as_deref(),
            Some(table.as_str()),
            "README.md's serve settings table is stale; replace it with:\n{table}"
        );
    }

    #[test]
    fn file_values_are_parsed_like_flags_and_errors_name_the_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.yaml");
        std::fs::write(
            &file,
            "repo: x\ninsecure-no-webhook-secret: true\nhttp-max-connections: 7\nallow-empty: yes\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        };
        let c = ServeConfig::resolve(&args, "default", &env(&[])).unwrap();
        assert!(c.insecure_no_webhook_secret && c.allow_empty);
        assert_eq!(c.http.max_connections, 7);
        std::fs::write(&file, "repo: x\npoll-interval: soon\n").unwrap();
        let e = ServeConfig::resolve(&args, "default", &env(&[])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{}:2:16: poll-interval: ", file.display())),
            "{e}"
        );
    }

    #[test]
    fn github_repo_is_derived_from_github_urls_only() {
        for url in [
            "https://github.com/acme/infra.git",
            "git@github.com:acme/infra.git",
            "ssh://git@github.com/acme/infra",
            "https://x-access-token:abc@github.com/acme/infra",
        ] {
            assert_eq!(
                github_repo_from_url(url).as_deref(),
                Some("acme/infra"),
                "{url}"
            );
        }
        assert_eq!(github_repo_from_url("file:///srv/infra.git"), None);
        assert_eq!(github_repo_from_url("https://gitlab.com/a/b"), None);
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.yaml");
        std::fs::write(
            &file,
            "repo: file:///srv/a.git\nbranch: prod\npoll-interval: 30s\nname: box\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file),
            branch: Some("main".into()),
            insecure_no_webhook_secret: Some(true),
            ..Default::default()
        };
        let c = ServeConfig::resolve(&args, "default", &env(&[])).unwrap();
        assert_eq!(c.repo, "file:///srv/a.git");
        assert_eq!(c.branch, "main");
        assert_eq!(c.poll_interval, Duration::from_secs(30));
        assert_eq!(c.name, "box");
        assert_eq!(c.listen.to_string(), "127.0.0.1:9470");
        assert!(c.github.is_none());
    }

    #[test]
    fn refuses_to_run_without_a_webhook_secret_unless_told() {
        let args = ServeArgs {
            repo: Some("file:///x".into()),
            ..Default::default()
        };
        let e = ServeConfig::resolve(&args, "default", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("--insecure-no-webhook-secret"));
        let c =
            ServeConfig::resolve(&args, "default", &env(&[("BERTH_WEBHOOK_SECRET", "s")])).unwrap();
        assert_eq!(c.webhook_secret.unwrap().expose(), "s");
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.yaml");
        std::fs::write(&file, "repo: x\npol-interval: 3s\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..Default::default()
        };
        let e = ServeConfig::resolve(&args, "default", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("pol-interval"), "{e}");
    }

    #[test]
    fn token_and_derived_repo_enable_write_back() {
        let args = ServeArgs {
            repo: Some("https://github.com/acme/infra.git".into()),
            insecure_no_webhook_secret: Some(true),
            ..Default::default()
        };
        let c =
            ServeConfig::resolve(&args, "default", &env(&[("BERTH_GITHUB_TOKEN", "t0k")])).unwrap();
        let gh = c.github.unwrap();
        assert_eq!(gh.repo, "acme/infra");
        assert_eq!(gh.api_url, "https://api.github.com");
        assert!(!format!("{:?}", gh.auth).contains("t0k"));
    }
}
