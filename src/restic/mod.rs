//! Backups with restic (`kind: Backup`): restic runs in a one-off container from the Backup's
//! `image`, so the host needs nothing but Docker.
//!
//! - [`backup`]: one run — init the repository when it does not exist yet (never over a wrong
//!   password), stop the `stop:` services, one snapshot per volume (mounted read-only at
//!   `/backup/volumes/<stack>/<volume>`), per host path (read-only at `/backup/paths/<path>`)
//!   and per dump (a command's standard output in the service's container, streamed into
//!   `restic backup --stdin`: no dump file on disk), start the services again (always), then
//!   `forget --prune` with the retention. Every snapshot is tagged `berth-backup=<name>`,
//!   `berth-source=<source>` and `berth-commit=<sha>`, host `berth-<instance>`.
//! - [`check`]: `restic check [--read-data-subset]`.
//! - `restore` / `cli`: `berth restore` and `berth backups`.
//!
//! Every failure is a failed [`RunOutcome`] with a one-line reason; secrets (password,
//! repository URL, `environment` values) are replaced by `***` in the log tail.

mod backup;
pub mod cli;
mod json;
pub mod restore;
mod run;

use crate::docker::Engine;
use crate::model::jobs::{BackupSpec, RunOutcome, RunResult};

pub use backup::{Cancelled, backup, backup_until};
pub use json::Snapshot;

/// Snapshot tags.
pub const TAG_BACKUP: &str = "berth-backup";
pub const TAG_SOURCE: &str = "berth-source";
pub const TAG_COMMIT: &str = "berth-commit";
/// Where sources are mounted in the restic container.
pub const VOLUMES_MOUNT: &str = "/backup/volumes";
pub const PATHS_MOUNT: &str = "/backup/paths";

/// How backups run on this host.
#[derive(Debug, Clone)]
pub struct Context {
    pub engine: Engine,
    /// The restic container's network: `host` by default, so that the repository is reached
    /// as the host reaches it (`rest:http://127.0.0.1:8000/` means this host).
    pub network_mode: String,
    /// The restic container's user (`uid:gid`); `None`: the image's (root, which reads every
    /// file).
    pub user: Option<String>,
}

impl Context {
    pub fn new(engine: Engine) -> Context {
        Context {
            engine,
            network_mode: "host".to_string(),
            user: None,
        }
    }

    /// The `--host` of this instance's snapshots: stable across runs and containers.
    pub fn host_name(&self) -> String {
        format!("berth-{}", self.engine.instance())
    }
}

/// One run's log: lines with secrets replaced by `***`, the last [`Log::KEEP`] kept.
#[derive(Debug, Clone)]
pub struct Log {
    secrets: Vec<String>,
    lines: std::collections::VecDeque<String>,
}

impl Log {
    pub const KEEP: usize = 40;

    pub fn new(spec: &BackupSpec) -> Log {
        let mut secrets: Vec<String> = [spec.password.expose(), spec.repository.expose()]
            .into_iter()
            .chain(spec.environment.values().map(|v| v.expose()))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if spec.repository_is_path() {
            // A host path is not a secret (and is shown everywhere else).
            secrets.retain(|s| s != spec.repository.expose());
        }
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Log {
            secrets,
            lines: Default::default(),
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "***");
        }
        out
    }

    pub fn line(&mut self, line: &str) {
        let line = self.redact(line.trim_end());
        if line.is_empty() {
            return;
        }
        if self.lines.len() == Log::KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    pub fn tail(&self) -> String {
        let mut s = self.lines.iter().cloned().collect::<Vec<_>>().join("\n");
        if !s.is_empty() {
            s.push('\n');
        }
        s
    }

    /// A failed outcome with `reason` (redacted too).
    pub(crate) fn failed(&self, reason: &str, exit_code: Option<i64>) -> RunOutcome {
        RunOutcome {
            result: RunResult::Failed,
            exit_code,
            reason: Some(self.redact(reason)),
            log_tail: self.tail(),
            snapshots: Vec::new(),
        }
    }
}

/// `restic check` of the Backup's repository, with `--read-data-subset` when given (`5%`,
/// `1/7`). Succeeded only when restic says the repository has no errors; a locked, missing or
/// unreachable repository and a wrong password are failures with that reason.
pub async fn check(cx: &Context, spec: &BackupSpec, read_data_subset: Option<&str>) -> RunOutcome {
    let mut log = Log::new(spec);
    let mut args = vec!["check".to_string()];
    if let Some(subset) = read_data_subset {
        args.push(format!("--read-data-subset={subset}"));
    }
    let done = match run::restic(
        cx,
        spec,
        &args,
        Vec::new(),
        run::Stdin::None,
        run::Stdout::Keep,
        &mut log,
    )
    .await
    {
        Ok(d) => d,
        Err(e) => return log.failed(&format!("cannot run restic: {e}"), None),
    };
    for l in done.stdout_text().lines() {
        log.line(l);
    }
    if done.exit_code == 0 {
        return RunOutcome {
            result: RunResult::Succeeded,
            exit_code: Some(0),
            reason: None,
            log_tail: log.tail(),
            snapshots: Vec::new(),
        };
    }
    let reason = match run::classify(done.exit_code, &done.stderr) {
        Some(f) => f.reason(),
        None => format!(
            "restic check exited {}: {}",
            done.exit_code,
            run::fatal_line(&done.stderr)
        ),
    };
    log.failed(&reason, Some(done.exit_code))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Secret;
    use crate::model::jobs::Retention;

    pub(crate) fn spec(repo: &str) -> BackupSpec {
        BackupSpec {
            name: "nightly".into(),
            repository: Secret::new(repo.to_string()),
            password: Secret::new("hunter2-pw".to_string()),
            environment: [("AWS_SECRET".to_string(), Secret::new("k3y-val".to_string()))].into(),
            volumes: vec![],
            paths: vec![],
            dumps: vec![],
            stop: vec![],
            retention: Retention::default(),
            check: None,
            image: "restic".into(),
            min_size_ratio: 0.5,
        }
    }

    #[test]
    fn the_log_hides_secrets() {
        let mut log = Log::new(&spec("rest:https://u:p4ss@h:8000/r"));
        log.line("Fatal: rest:https://u:p4ss@h:8000/r: hunter2-pw k3y-val");
        assert_eq!(log.tail(), "Fatal: ***: *** ***\n");
        let log = Log::new(&spec("/srv/restic"));
        assert_eq!(log.redact("at /srv/restic"), "at /srv/restic");
        let mut log = Log::new(&spec("/srv/restic"));
        for i in 0..100 {
            log.line(&format!("{i}"));
        }
        assert_eq!(log.tail().lines().count(), Log::KEEP);
        assert!(log.tail().starts_with("60\n"));
    }
}
