//! What `berth serve` must remember across restarts, in `<state-dir>/state.json`, written
//! atomically (temp file, fsync, rename, fsync of the folder): a crash leaves the old file or the
//! new one, never half of one. Containers themselves are the truth about what runs (labels); this
//! file only remembers what git and GitHub cannot tell again: which commit was applied, which
//! failed permanently, what was posted where.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bump when the file's meaning changes; an unknown version is read as "state lost".
const VERSION: u32 = 1;
/// How many commits' posted statuses are remembered (older ones are dropped).
const POSTED_COMMITS: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// The last commit of the tracked branch that was applied completely.
    pub applied_commit: Option<String>,
    /// Per stack: the last commit applied to it and the containers it then had.
    pub stacks: BTreeMap<String, StackRecord>,
    /// Set before an apply starts, cleared when it ends: found set at startup, the previous
    /// process died mid-apply (the next plan repairs it; this is for the log).
    pub in_progress: Option<InProgress>,
    /// The last permanent failure: not retried until a new commit, a config change, or a resync
    /// that finds the running state changed.
    pub failed: Option<Failure>,
    /// Commit → context → the last status posted (`state: description`): never post the same
    /// status twice.
    pub posted: BTreeMap<String, BTreeMap<String, String>>,
    /// Order in which commits entered `posted`, to bound it.
    pub posted_order: Vec<String>,
    /// Commit → context → check run id (GitHub App mode): a restart updates the same check run
    /// instead of leaving one "in progress" forever. Bounded with `posted`.
    #[serde(default)]
    pub check_runs: BTreeMap<String, BTreeMap<String, u64>>,
    /// Pull request → its preview comment (so that it is updated, never duplicated).
    pub previews: BTreeMap<u64, PreviewRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackRecord {
    pub commit: String,
    pub containers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InProgress {
    pub commit: String,
    /// Unix seconds.
    pub started_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub commit: String,
    /// berth's own settings and version, hashed: a new config deserves a new attempt.
    pub config: String,
    /// A fingerprint of the Engine's state when it failed: a resync retries only when it moved.
    pub observed: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewRecord {
    pub head: String,
    pub comment_id: Option<u64>,
}

impl State {
    /// Remember a posted status; false when the very same one was already posted.
    pub fn record_posted(&mut self, commit: &str, context: &str, value: &str) -> bool {
        let entry = self.posted.entry(commit.to_string()).or_default();
        if entry.get(context).map(String::as_str) == Some(value) {
            return false;
        }
        entry.insert(context.to_string(), value.to_string());
        if !self.posted_order.iter().any(|c| c == commit) {
            self.posted_order.push(commit.to_string());
        }
        while self.posted_order.len() > POSTED_COMMITS {
            let old = self.posted_order.remove(0);
            self.posted.remove(&old);
            self.check_runs.remove(&old);
        }
        true
    }
}

/// Errors reading or writing the state file. All are permanent for the operation (a disk that
/// refuses writes will not accept them on retry within the same reconcile).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How the state file was found at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Read normally.
    Existing,
    /// No state file: a first start, or a lost state dir (the caller tells them apart by asking
    /// the Engine whether it already owns containers).
    Missing,
    /// Present but unreadable (corrupt or from an unknown version): treated as lost.
    Unreadable,
}

/// The state file in a state dir.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    pub fn new(state_dir: &Path) -> StateStore {
        StateStore {
            path: state_dir.join("state.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the state; a missing or unreadable file gives a fresh state and says so.
    pub fn load(&self) -> Result<(State, Found), StateError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((fresh(), Found::Missing));
            }
            Err(source) => {
                return Err(StateError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        match serde_json::from_str::<State>(&text) {
            Ok(s) if s.version == VERSION => Ok((s, Found::Existing)),
            _ => Ok((fresh(), Found::Unreadable)),
        }
    }

    /// Write atomically: temp file in the same folder, fsync, rename over, fsync the folder.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        crate::statefile::write_json(&self.path, state).map_err(|source| StateError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

fn fresh() -> State {
    State {
        version: VERSION,
        ..State::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        let (mut s, found) = store.load().unwrap();
        assert_eq!(found, Found::Missing);
        s.applied_commit = Some("abc".into());
        store.save(&s).unwrap();
        let (back, found) = store.load().unwrap();
        assert_eq!((back, found), (s, Found::Existing));
        assert!(!store.path().with_extension("json.tmp").exists());
        std::fs::write(store.path(), "{ half a fi").unwrap();
        assert_eq!(store.load().unwrap().1, Found::Unreadable);
    }

    #[test]
    fn identical_status_is_recorded_once_and_memory_is_bounded() {
        let mut s = State::default();
        assert!(s.record_posted("c1", "berth/x", "success: ok"));
        assert!(!s.record_posted("c1", "berth/x", "success: ok"));
        assert!(s.record_posted("c1", "berth/x", "failure: no"));
        for i in 0..200 {
            s.record_posted(&format!("c{i}"), "berth/x", "pending");
        }
        assert_eq!(s.posted.len(), POSTED_COMMITS);
        assert_eq!(s.posted_order.len(), POSTED_COMMITS);
    }
}

/// The state, shared by the reconcile loop and the write-back task; every change is saved while
/// the lock is held, so the file always holds one consistent state.
#[derive(Debug)]
pub struct Shared {
    state: std::sync::Mutex<State>,
    store: StateStore,
}

impl Shared {
    pub fn new(state: State, store: StateStore) -> Shared {
        Shared {
            state: std::sync::Mutex::new(state),
            store,
        }
    }

    /// A copy of the current state.
    pub fn get(&self) -> State {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Change the state and save it; returns what `f` returned. A failed save is logged and the
    /// change kept in memory (the next save writes it).
    pub fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut s);
        if let Err(e) = self.store.save(&s) {
            tracing::error!(error = %e, "cannot save berth's state");
        }
        out
    }
}
