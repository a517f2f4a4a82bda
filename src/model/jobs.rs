//! Scheduled work as berth kinds: `kind: Job`, `kind: Backup` (restic), `kind: Prune` and the
//! `kind: Defaults` that services without their own `logging` get. Plain data: the loader is
//! `crate::berthfile::jobs`, schedules are computed by `crate::jobs::schedule`, runs are made
//! by `crate::jobs` (and `crate::restic` for backups).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::host::Origin;
use super::{Logging, Secret};

/// Every scheduled thing the config declares, by job name (a Backup is a job; its weekly
/// check is the job `<backup>/check`), and the defaults for services.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobsSpec {
    pub jobs: BTreeMap<String, JobSpec>,
    /// `kind: Defaults` (at most one document).
    pub defaults: Option<Defaults>,
}

impl JobsSpec {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.defaults.is_none()
    }

    /// The backups, by name.
    pub fn backups(&self) -> impl Iterator<Item = (&str, &BackupSpec)> {
        self.jobs.iter().filter_map(|(n, j)| match &j.task {
            Task::Backup(b) => Some((n.as_str(), &**b)),
            _ => None,
        })
    }
}

/// One job: when it runs and what it does. Serialises with secrets as digests (like every
/// `Secret`); `crate::jobs::state` keeps their values aside in the 0600 state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Unique among jobs (`vacuum`, `nightly`, `nightly/check`).
    pub name: String,
    /// The schedule as written: 5-field cron or `@hourly` / `@daily` / `@weekly` / `@monthly`
    /// / `@yearly` (checked by the loader with `crate::jobs::schedule`).
    pub schedule: String,
    /// An IANA zone (`Europe/Paris`); `None`: the host's zone.
    pub timezone: Option<String>,
    pub task: Task,
    pub concurrency: Concurrency,
    /// A run longer than this is stopped and failed.
    pub timeout: Duration,
    /// Further attempts after a failed one (same scheduled slot).
    pub retries: u32,
    pub missed: Missed,
    /// How far back a missed run still counts for `missed: run_once`.
    pub catch_up: Duration,
    /// Runs kept in the history.
    pub history: usize,
    pub origin: Origin,
}

impl JobSpec {
    /// Every secret the job holds (a container's environment, a backup's repository, password
    /// and environment): what a run's log tail hides, what the state file keeps aside.
    pub fn secrets(&self) -> Vec<&Secret> {
        match &self.task {
            Task::Container(c) => c.environment.values().collect(),
            Task::Backup(b) => {
                let mut out = vec![&b.repository, &b.password];
                out.extend(b.environment.values());
                out
            }
            Task::Exec(_) | Task::Check { .. } | Task::Prune(_) => Vec::new(),
        }
    }

    /// The same, to put values back (the state file stores digests in the table).
    pub fn secrets_mut(&mut self) -> Vec<&mut Secret> {
        match &mut self.task {
            Task::Container(c) => c.environment.values_mut().collect(),
            Task::Backup(b) => {
                let BackupSpec {
                    repository,
                    password,
                    environment,
                    ..
                } = &mut **b;
                let mut out = vec![repository, password];
                out.extend(environment.values_mut());
                out
            }
            Task::Exec(_) | Task::Check { .. } | Task::Prune(_) => Vec::new(),
        }
    }

    /// `sha256:<hex>` of the job as planned (secrets as their digests): what the plan compares
    /// with the recorded table.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        super::sha256_hex(&json)
    }
}

/// What the state dir says about one job of the last applied config (observed beside the
/// Engine): what the plan compares and describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RecordedJob {
    pub digest: String,
    pub schedule: String,
    pub timezone: Option<String>,
    /// `Task::kind`: exec, container, backup, check, prune.
    pub task: String,
}

/// The recorded job table, as observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedJobs {
    pub recorded: BTreeMap<String, RecordedJob>,
    /// The table could not be read: the plan refuses to change it.
    pub error: Option<String>,
}

/// Defaults of a job's keys.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_CATCH_UP: Duration = Duration::from_secs(6 * 3600);
pub const DEFAULT_HISTORY: usize = 10;

/// What a job does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// A command in a running container of a stack's service (`docker exec`).
    Exec(ExecTask),
    /// A one-off container, removed afterwards.
    Container(ContainerTask),
    /// A restic backup run.
    Backup(Box<BackupSpec>),
    /// `restic check` of a Backup's repository (the job `<backup>/check`).
    Check {
        backup: String,
        read_data_subset: Option<String>,
    },
    /// Remove images no container uses and no recent commit references.
    Prune(PruneSpec),
}

impl Task {
    pub fn kind(&self) -> &'static str {
        match self {
            Task::Exec(_) => "exec",
            Task::Container(_) => "container",
            Task::Backup(_) => "backup",
            Task::Check { .. } => "check",
            Task::Prune(_) => "prune",
        }
    }
}

/// A stack's service, written `STACK/SERVICE`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceRef {
    pub stack: String,
    pub service: String,
}

impl std::fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.stack, self.service)
    }
}

/// A stack's named volume, written `STACK/VOLUME` (the key under the stack's `volumes:`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VolumeRef {
    pub stack: String,
    pub volume: String,
    /// The volume's name on the Engine (`<stack>_<volume>` unless `name:` says otherwise),
    /// resolved by the loader.
    pub engine_name: String,
    /// The stack's folder relative to the config root (`apps/blog`): a volume may be named
    /// `apps/blog/dbdata` as well as `blog/dbdata`.
    #[serde(default)]
    pub folder: String,
}

impl VolumeRef {
    /// Whether `written` names this volume: `STACK/VOLUME` by the stack's name or its folder.
    pub fn is(&self, written: &str) -> bool {
        written == self.to_string()
            || (!self.folder.is_empty() && written == format!("{}/{}", self.folder, self.volume))
    }
}

impl std::fmt::Display for VolumeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.stack, self.volume)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecTask {
    pub service: ServiceRef,
    pub command: Vec<String>,
}

/// `run: {container: ...}`: the Compose service keys a one-off run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerTask {
    pub image: String,
    pub command: Vec<String>,
    /// `SOURCE:TARGET[:ro]`: SOURCE a host path, or `STACK/VOLUME` (resolved to its Engine name).
    pub volumes: Vec<Mount>,
    pub environment: BTreeMap<String, Secret>,
    /// Engine network names (`STACK/NETWORK` resolved, or an external name).
    pub networks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub source: MountSource,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountSource {
    Volume(VolumeRef),
    Host(PathBuf),
}

/// `kind: Backup`: a restic run over volumes, host paths and streamed dumps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupSpec {
    pub name: String,
    /// A host path (mounted into the restic container) or a restic URL (`rest:`, `s3:`, `sftp:`,
    /// `b2:` ...). May hold credentials: shown only through [`BackupSpec::repository_display`].
    pub repository: Secret,
    pub password: Secret,
    /// Extra environment for restic (credentials): never printed.
    pub environment: BTreeMap<String, Secret>,
    pub volumes: Vec<VolumeRef>,
    /// Absolute host paths.
    pub paths: Vec<PathBuf>,
    pub dumps: Vec<Dump>,
    /// Stopped during the backup and always started again.
    pub stop: Vec<ServiceRef>,
    pub retention: Retention,
    pub check: Option<CheckSpec>,
    /// The image that runs restic.
    pub image: String,
    /// A snapshot smaller than this fraction of the previous one's size fails the run.
    pub min_size_ratio: f64,
}

/// The default `min_size_ratio`.
pub const DEFAULT_MIN_SIZE_RATIO: f64 = 0.5;

impl BackupSpec {
    /// The repository with any `user:password@` taken out: what plans and logs may show.
    pub fn repository_display(&self) -> String {
        crate::model::redact_url(self.repository.expose())
    }

    /// Whether the repository is a host path (mounted into the restic container).
    pub fn repository_is_path(&self) -> bool {
        self.repository.expose().starts_with('/')
    }
}

/// A command in a running service whose standard output is streamed into restic as `file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dump {
    pub service: ServiceRef,
    pub command: Vec<String>,
    /// The file name in the snapshot (unique within the backup).
    pub file: String,
}

/// restic `forget --keep-*` (counts; 0: that rule is not used).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

impl Retention {
    pub fn is_empty(&self) -> bool {
        *self == Retention::default()
    }

    /// The `forget` flags (`--keep-daily 7 ...`), rules with a count only.
    pub fn flags(&self) -> Vec<String> {
        [
            ("--keep-last", self.last),
            ("--keep-hourly", self.hourly),
            ("--keep-daily", self.daily),
            ("--keep-weekly", self.weekly),
            ("--keep-monthly", self.monthly),
            ("--keep-yearly", self.yearly),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .flat_map(|(f, n)| [f.to_string(), n.to_string()])
        .collect()
    }
}

/// `check: {schedule, read_data_subset}`: the job `<backup>/check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckSpec {
    pub schedule: String,
    /// restic's `--read-data-subset` (`5%`, `1/7`, `100M`).
    pub read_data_subset: Option<String>,
}

/// `kind: Prune`: unused images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneSpec {
    /// Images referenced by the current commit or the last `keep_commits` applied ones stay.
    pub keep_commits: usize,
}

pub const DEFAULT_KEEP_COMMITS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// A run due while one is running is skipped (and recorded so).
    #[default]
    Forbid,
    /// The running one is stopped and the new one starts.
    Replace,
    /// Both run.
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// After downtime, one run if a scheduled time was missed within `catch_up`.
    #[default]
    RunOnce,
    Skip,
}

/// `kind: Defaults`: what services get when they say nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Defaults {
    /// `logging:` for services that set none (Compose's `logging` keys).
    pub logging: Option<Logging>,
    pub origin: Origin,
}

/// How one run of a job ended: what `berth jobs`, the history, the metrics and the commit
/// statuses report. Stored in the state dir.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RunOutcome {
    pub result: RunResult,
    /// The command's (or restic's) exit code, when there was one.
    pub exit_code: Option<i64>,
    /// Why it failed, one line (`restic exit 3: some files could not be read`, `dump blog.sql
    /// wrote 0 bytes`); `None` on success.
    pub reason: Option<String>,
    /// The last lines of its output, secrets replaced by `***`.
    pub log_tail: String,
    /// A backup's snapshots, one per source.
    pub snapshots: Vec<SnapshotRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    Succeeded,
    Failed,
    TimedOut,
    /// Not started: `concurrency: forbid` and a run was still going.
    Skipped,
    /// A scheduled time passed while berth was not running.
    Missed,
    /// berth stopped (or was killed) while it ran.
    Interrupted,
}

impl RunResult {
    pub fn is_success(self) -> bool {
        self == RunResult::Succeeded
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Succeeded => "succeeded",
            RunResult::Failed => "failed",
            RunResult::TimedOut => "timed_out",
            RunResult::Skipped => "skipped",
            RunResult::Missed => "missed",
            RunResult::Interrupted => "interrupted",
        }
    }
}

/// One restic snapshot a backup run made.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SnapshotRecord {
    /// restic's snapshot id (full).
    pub id: String,
    /// What it holds: `volume:apps/dbdata`, `path:/etc/berth`, `dump:blog.sql`.
    pub source: String,
    /// Bytes processed (restic's `total_bytes_processed`): what the size check compares.
    pub bytes: u64,
    /// Bytes added to the repository.
    pub added: u64,
    pub files: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(
            crate::model::redact_url("rest:https://u:p@backup.example:8000/x"),
            "rest:https://***@backup.example:8000/x"
        );
        assert_eq!(crate::model::redact_url("/srv/restic"), "/srv/restic");
        assert_eq!(
            crate::model::redact_url("s3:https://s3.example/bucket"),
            "s3:https://s3.example/bucket"
        );
    }

    #[test]
    fn retention_flags_skip_unused_rules() {
        let r = Retention {
            daily: 7,
            weekly: 4,
            monthly: 6,
            ..Retention::default()
        };
        assert_eq!(
            r.flags().join(" "),
            "--keep-daily 7 --keep-weekly 4 --keep-monthly 6"
        );
    }
}
