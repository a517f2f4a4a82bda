//! The jobs state file, `<state_dir>/jobs-<instance>.json` (0600 in the 0700 state dir): the job
//! table of the last applied config (secrets kept aside by digest, since runs need their
//! values), the commit it came from, and per job the last scheduled slot dispatched, the next
//! run, the runs going on (and which berth process runs them) and a bounded history.
//!
//! Every change goes through [`update`]: an exclusive `flock` on `jobs-<instance>.lock`, read,
//! change, write to a temporary file and rename — so `berth serve` and `berth jobs run` never
//! lose each other's records.

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::host::process;
use crate::model::Secret;
use crate::model::jobs::{JobSpec, JobsSpec, RunOutcome};

/// What went wrong with the state file (all permanent: a person has to look).
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("jobs state {}: {cause}", path.display())]
    Io { path: PathBuf, cause: String },
    #[error("jobs state {} is not valid: {cause} (move it away to start over)", path.display())]
    Corrupt { path: PathBuf, cause: String },
}

impl JobsError {
    /// Never: a state file problem does not go away by retrying.
    pub fn is_transient(&self) -> bool {
        false
    }
}

const VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobsState {
    /// The jobs of the last applied config, by name.
    pub table: BTreeMap<String, JobSpec>,
    /// The commit that config came from (`None`: a folder applied by `berth apply`).
    pub commit: Option<String>,
    pub recorded_at: Option<DateTime<Utc>>,
    pub jobs: BTreeMap<String, JobState>,
    /// The id the next run gets.
    pub next_run_id: u64,
}

/// One job's schedule bookkeeping and runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// The schedule and zone `last_slot`/`next_run` were computed from: a change starts over
    /// from now (no catch-up storm).
    pub schedule: String,
    #[serde(default)]
    pub timezone: Option<String>,
    /// The last scheduled slot that was dispatched (or recorded missed/skipped): written
    /// before its run starts, so a restart neither repeats nor loses it.
    pub last_slot: Option<DateTime<Utc>>,
    pub next_run: Option<DateTime<Utc>>,
    #[serde(default)]
    pub running: Vec<Running>,
    /// Oldest first, at most the job's `history`.
    #[serde(default)]
    pub history: VecDeque<RunRecord>,
}

impl JobState {
    /// The most recent finished run (or record).
    pub fn last(&self) -> Option<&RunRecord> {
        self.history.back()
    }

    /// The most recent successful run.
    pub fn last_success(&self) -> Option<&RunRecord> {
        self.history
            .iter()
            .rev()
            .find(|r| r.outcome.result.is_success())
    }
}

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Its scheduled time.
    Schedule,
    /// `missed: run_once` after a missed slot.
    CatchUp,
    /// `berth jobs run`.
    Manual,
}

/// A run going on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub id: u64,
    pub trigger: Trigger,
    pub slot: Option<DateTime<Utc>>,
    pub started: DateTime<Utc>,
    pub owner: Owner,
    /// An exec's host pid, once it runs: another berth process can stop it (`replace`). A
    /// container run needs none: its container's name says which it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_pid: Option<i64>,
}

/// A finished run, or a run that did not happen (skipped, missed, interrupted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: u64,
    pub trigger: Trigger,
    pub slot: Option<DateTime<Utc>>,
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
    #[serde(default = "one")]
    pub attempts: u32,
    pub outcome: RunOutcome,
}

fn one() -> u32 {
    1
}

impl RunRecord {
    pub fn duration(&self) -> chrono::Duration {
        self.ended - self.started
    }
}

/// The berth process that runs something: its pid and the kernel's start time of that pid
/// (so a reused pid is not taken for the same process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub start: u64,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        let pid = process::current_pid();
        Owner {
            pid,
            start: process::start_time(pid).unwrap_or(0),
        }
    }

    /// Whether that process still runs.
    pub fn is_alive(&self) -> bool {
        process::start_time(self.pid).is_some_and(|s| s == self.start)
    }
}

/// The file's shape on disk.
#[derive(Serialize, Deserialize)]
struct File1 {
    version: u32,
    #[serde(default)]
    commit: Option<String>,
    #[serde(default)]
    recorded_at: Option<DateTime<Utc>>,
    /// Secrets as digests (`Secret`'s serialisation) ...
    #[serde(default)]
    table: BTreeMap<String, JobSpec>,
    /// ... and their values by digest.
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    #[serde(default)]
    jobs: BTreeMap<String, JobState>,
    #[serde(default)]
    next_run_id: u64,
}

/// `jobs-<instance>.json` in the state dir.
pub fn path(state_dir: &Path, instance: &str) -> PathBuf {
    state_dir.join(format!("jobs-{instance}.json"))
}

fn lock_path(state_dir: &Path, instance: &str) -> PathBuf {
    state_dir.join(format!("jobs-{instance}.lock"))
}

/// Reads the state (a missing file is an empty state). Takes no lock: a reader sees the last
/// complete write (writes are renames).
pub fn load(state_dir: &Path, instance: &str) -> Result<JobsState, JobsError> {
    let path = path(state_dir, instance);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(JobsState::default()),
        Err(e) => {
            return Err(JobsError::Io {
                path,
                cause: e.to_string(),
            });
        }
    };
    let file: File1 = serde_json::from_slice(&text).map_err(|e| JobsError::Corrupt {
        path: path.clone(),
        cause: e.to_string(),
    })?;
    if file.version != VERSION {
        return Err(JobsError::Corrupt {
            path,
            cause: format!("version {} (this berth reads {VERSION})", file.version),
        });
    }
    let mut table = file.table;
    for job in table.values_mut() {
        let name = job.name.clone();
        for secret in job.secrets_mut() {
            let digest = secret.expose().to_string();
            let value = file
                .secrets
                .get(&digest)
                .ok_or_else(|| JobsError::Corrupt {
                    path: path.clone(),
                    cause: format!("job {name:?} names a secret it does not hold"),
                })?;
            *secret = Secret::new(value.clone());
        }
    }
    Ok(JobsState {
        table,
        commit: file.commit,
        recorded_at: file.recorded_at,
        jobs: file.jobs,
        next_run_id: file.next_run_id,
    })
}

fn save(state_dir: &Path, instance: &str, state: &JobsState) -> Result<(), JobsError> {
    let path = path(state_dir, instance);
    let io = |e: std::io::Error| JobsError::Io {
        path: path.clone(),
        cause: e.to_string(),
    };
    let mut secrets = BTreeMap::new();
    for job in state.table.values() {
        for s in job.secrets() {
            secrets.insert(s.digest(), s.expose().to_string());
        }
    }
    let file = File1 {
        version: VERSION,
        commit: state.commit.clone(),
        recorded_at: state.recorded_at,
        table: state.table.clone(),
        secrets,
        jobs: state.jobs.clone(),
        next_run_id: state.next_run_id,
    };
    crate::statefile::write_json(&path, &file).map_err(io)
}

fn ensure_dir(state_dir: &Path) -> Result<(), JobsError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(|e| JobsError::Io {
            path: state_dir.to_path_buf(),
            cause: e.to_string(),
        })
}

fn lock(state_dir: &Path, instance: &str) -> Result<process::FileLock, JobsError> {
    ensure_dir(state_dir)?;
    let path = lock_path(state_dir, instance);
    process::lock_exclusive(&path).map_err(|e| JobsError::Io {
        path,
        cause: format!("lock: {e}"),
    })
}

/// Reads, changes and writes the state under its lock; `change`'s answer is returned.
pub fn update<T>(
    state_dir: &Path,
    instance: &str,
    change: impl FnOnce(&mut JobsState) -> T,
) -> Result<T, JobsError> {
    let _lock = lock(state_dir, instance)?;
    let mut state = load(state_dir, instance)?;
    let before = state.clone();
    let answer = change(&mut state);
    if state != before {
        save(state_dir, instance, &state)?;
    }
    Ok(answer)
}

/// Records the jobs of the config just applied (`apply` and `serve` call this): the table,
/// its commit, and forgets the bookkeeping of jobs that left it.
pub fn record_table(
    state_dir: &Path,
    instance: &str,
    jobs: &JobsSpec,
    commit: Option<&str>,
) -> Result<(), JobsError> {
    update(state_dir, instance, |state| {
        if state.table != jobs.jobs || state.commit.as_deref() != commit {
            state.recorded_at = Some(Utc::now());
        }
        state.table = jobs.jobs.clone();
        state.commit = commit.map(str::to_string);
        state.jobs.retain(|name, _| jobs.jobs.contains_key(name));
    })
}

impl JobsState {
    /// A new run id.
    pub fn take_id(&mut self) -> u64 {
        self.next_run_id += 1;
        self.next_run_id
    }

    /// Appends a record to the job's history, keeping at most `keep` (at least one).
    pub fn push_record(&mut self, job: &str, record: RunRecord) {
        let keep = self.table.get(job).map_or(1, |j| j.history.max(1));
        let js = self.jobs.entry(job.to_string()).or_default();
        js.history.push_back(record);
        while js.history.len() > keep {
            js.history.pop_front();
        }
    }

    /// Notes the host pid of a running exec.
    pub fn set_exec_pid(&mut self, job: &str, run: u64, pid: i64) {
        if let Some(r) = self
            .jobs
            .get_mut(job)
            .and_then(|j| j.running.iter_mut().find(|r| r.id == run))
        {
            r.exec_pid = Some(pid);
        }
    }

    /// Ends a running run with its outcome (no-op when it is not running any more).
    pub fn finish(
        &mut self,
        job: &str,
        run: u64,
        ended: DateTime<Utc>,
        attempts: u32,
        outcome: RunOutcome,
    ) -> Option<RunRecord> {
        let js = self.jobs.get_mut(job)?;
        let i = js.running.iter().position(|r| r.id == run)?;
        let r = js.running.remove(i);
        let record = RunRecord {
            id: r.id,
            trigger: r.trigger,
            slot: r.slot,
            started: r.started,
            ended,
            attempts,
            outcome,
        };
        self.push_record(job, record.clone());
        Some(record)
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
