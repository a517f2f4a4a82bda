//! `berth serve` settings: flags, their environment variables, and an optional `--config` YAML
//! file with the same keys (flag names, e.g. `poll-interval: 30s`). Precedence: a flag or its
//! environment variable, then the file, then the default. Secrets (webhook secret, GitHub token
//! or App key) are read from the environment or from files, never from a flag's value.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::model::Secret;

/// The flags of `berth serve`. Every field is optional here so that the config file can fill
/// what the command line does not say.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// A YAML file with any of these settings (keys are the flag names).
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// The config repository: file://, git://, https:// (token from BERTH_GITHUB_TOKEN), ssh://.
    #[arg(long, env = "BERTH_REPO")]
    pub repo: Option<String>,
    /// The tracked branch [default: main].
    #[arg(long, env = "BERTH_BRANCH")]
    pub branch: Option<String>,
    /// The sub-folder of the repository that holds the stacks [default: the root].
    #[arg(long, env = "BERTH_PATH")]
    pub path: Option<String>,
    /// How often to look at the remote branch (one ref look-up when idle) [default: 60s].
    #[arg(long, env = "BERTH_POLL_INTERVAL", value_parser = parse_duration)]
    pub poll_interval: Option<Duration>,
    /// How often to re-check the running containers against the applied commit and repair
    /// drift [default: 5m].
    #[arg(long, env = "BERTH_RESYNC_INTERVAL", value_parser = parse_duration)]
    pub resync_interval: Option<Duration>,
    /// Address of the webhook, health and metrics endpoints [default: 127.0.0.1:9470].
    #[arg(long, env = "BERTH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where berth keeps its git mirror, exported trees and state [default: /var/lib/berth].
    #[arg(long, env = "BERTH_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// This instance's name in status contexts (`berth/<name>/<stack>`) [default: host name].
    #[arg(long, env = "BERTH_NAME")]
    pub name: Option<String>,
    /// A file holding the webhook secret (or set BERTH_WEBHOOK_SECRET).
    #[arg(long, env = "BERTH_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Accept unsigned webhooks when no secret is configured (never in production).
    #[arg(long)]
    pub insecure_no_webhook_secret: bool,
    /// GitHub API base URL [default: https://api.github.com; GitHub Enterprise: https://HOST/api/v3].
    #[arg(long, env = "BERTH_GITHUB_API_URL")]
    pub github_api_url: Option<String>,
    /// `owner/name` for statuses and previews [default: derived from a GitHub --repo URL].
    #[arg(long, env = "BERTH_GITHUB_REPO")]
    pub github_repo: Option<String>,
    /// GitHub App id (with --github-app-key-file) instead of a token.
    #[arg(long, env = "BERTH_GITHUB_APP_ID")]
    pub github_app_id: Option<u64>,
    /// The GitHub App's private key (PEM).
    #[arg(long, env = "BERTH_GITHUB_APP_KEY_FILE")]
    pub github_app_key_file: Option<PathBuf>,
    /// Apply a branch that moved in a non-fast-forward way (force push).
    #[arg(long)]
    pub allow_non_fast_forward: bool,
    /// A URL for the statuses' "Details" link.
    #[arg(long, env = "BERTH_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Timeout of every git network operation [default: 60s].
    #[arg(long, env = "BERTH_GIT_TIMEOUT", value_parser = parse_duration)]
    pub git_timeout: Option<Duration>,
    /// How long apply waits for a container to become healthy [default: 60s].
    #[arg(long, value_parser = parse_duration)]
    pub health_timeout: Option<Duration>,
    /// Allow removing everything when the repository declares no stack.
    #[arg(long)]
    pub allow_empty: bool,
    /// Remove owned named volumes that left the config (deletes their data).
    #[arg(long)]
    pub prune_volumes: bool,
}

/// The same settings as a YAML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileSettings {
    repo: Option<String>,
    branch: Option<String>,
    path: Option<String>,
    poll_interval: Option<String>,
    resync_interval: Option<String>,
    listen: Option<SocketAddr>,
    state_dir: Option<PathBuf>,
    name: Option<String>,
    webhook_secret_file: Option<PathBuf>,
    insecure_no_webhook_secret: Option<bool>,
    github_api_url: Option<String>,
    github_repo: Option<String>,
    github_app_id: Option<u64>,
    github_app_key_file: Option<PathBuf>,
    allow_non_fast_forward: Option<bool>,
    public_url: Option<String>,
    git_timeout: Option<String>,
    health_timeout: Option<String>,
    allow_empty: Option<bool>,
    prune_volumes: Option<bool>,
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

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::compose::parse_duration(s)
}

impl ServeConfig {
    /// Resolve flags (with their env vars), the config file and defaults. `env` is the process
    /// environment, for the secrets that only come from there.
    pub fn resolve(
        args: &ServeArgs,
        instance: &str,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<ServeConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file_settings(path)?,
            None => FileSettings::default(),
        };
        let dur = |flag: Option<Duration>, file: &Option<String>, key: &str, default: &str| match (
            flag, file,
        ) {
            (Some(d), _) => Ok(d),
            (None, Some(s)) => parse_duration(s)
                .map_err(|e| ConfigError::Invalid(format!("config file: {key}: {e}"))),
            (None, None) => Ok(parse_duration(default).expect("valid default")),
        };
        let repo = args.repo.clone().or(file.repo).ok_or_else(|| {
            ConfigError::Invalid(
                "no config repository: pass --repo URL (or BERTH_REPO, or `repo:` in --config)"
                    .into(),
            )
        })?;
        let webhook_secret = match (
            env.get("BERTH_WEBHOOK_SECRET").filter(|s| !s.is_empty()),
            args.webhook_secret_file
                .clone()
                .or(file.webhook_secret_file),
        ) {
            (Some(s), _) => Some(Secret::new(s.clone())),
            (None, Some(path)) => Some(Secret::new(read_secret(&path)?)),
            (None, None) => None,
        };
        let insecure =
            args.insecure_no_webhook_secret || file.insecure_no_webhook_secret.unwrap_or(false);
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
        let app_id = args.github_app_id.or(file.github_app_id);
        let app_key = args
            .github_app_key_file
            .clone()
            .or(file.github_app_key_file);
        let auth = match (app_id, app_key, &token) {
            (Some(app_id), Some(key), _) => Some(GitHubAuth::App {
                app_id,
                private_key_pem: Secret::new(read_secret(&key)?),
            }),
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(ConfigError::Invalid(
                    "a GitHub App needs both --github-app-id and --github-app-key-file".into(),
                ));
            }
            (None, None, Some(t)) => Some(GitHubAuth::Token(t.clone())),
            (None, None, None) => None,
        };
        let github_repo = args
            .github_repo
            .clone()
            .or(file.github_repo)
            .or_else(|| github_repo_from_url(&repo));
        let github = match (auth, github_repo) {
            (Some(auth), Some(repo)) => {
                if !repo.contains('/') {
                    return Err(ConfigError::Invalid(format!(
                        "--github-repo must be owner/name, not {repo:?}"
                    )));
                }
                Some(GitHubSettings {
                    api_url: args
                        .github_api_url
                        .clone()
                        .or(file.github_api_url)
                        .unwrap_or_else(|| "https://api.github.com".into())
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
            branch: args
                .branch
                .clone()
                .or(file.branch)
                .unwrap_or_else(|| "main".into()),
            path: args
                .path
                .clone()
                .or(file.path)
                .unwrap_or_default()
                .trim_matches('/')
                .to_string(),
            poll_interval: dur(
                args.poll_interval,
                &file.poll_interval,
                "poll-interval",
                "60s",
            )?,
            resync_interval: dur(
                args.resync_interval,
                &file.resync_interval,
                "resync-interval",
                "5m",
            )?,
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9470))),
            state_dir: args
                .state_dir
                .clone()
                .or(file.state_dir)
                .unwrap_or_else(|| "/var/lib/berth".into()),
            name: args.name.clone().or(file.name).unwrap_or_else(host_name),
            instance: instance.to_string(),
            webhook_secret,
            insecure_no_webhook_secret: insecure,
            github,
            git_token: token,
            allow_non_fast_forward: args.allow_non_fast_forward
                || file.allow_non_fast_forward.unwrap_or(false),
            public_url: args.public_url.clone().or(file.public_url),
            git_timeout: dur(args.git_timeout, &file.git_timeout, "git-timeout", "60s")?,
            health_timeout: dur(
                args.health_timeout,
                &file.health_timeout,
                "health-timeout",
                "60s",
            )?,
            allow_empty: args.allow_empty || file.allow_empty.unwrap_or(false),
            prune_volumes: args.prune_volumes || file.prune_volumes.unwrap_or(false),
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
            insecure_no_webhook_secret: true,
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
            insecure_no_webhook_secret: true,
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
