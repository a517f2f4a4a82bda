//! `applied-<instance>.json` in the state dir: the images of the configs berth applied, newest
//! last. `kind: Prune` keeps every image the current and the last `keep_commits` applied
//! configs name (their references and the IDs those resolved to), so a `git revert` always
//! finds its image on the Engine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Desired, Observed, normalize_image_ref};

/// How many applied configs are kept (at least any `keep_commits` a Prune may ask for).
pub const MAX_ENTRIES: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum AppliedError {
    #[error("cannot read {path}: {cause}")]
    Read { path: PathBuf, cause: String },
    #[error("cannot write {path}: {cause}")]
    Write { path: PathBuf, cause: String },
}

impl AppliedError {
    /// A corrupt file stays corrupt; an I/O failure may pass.
    pub fn is_transient(&self) -> bool {
        matches!(self, AppliedError::Write { .. })
    }
}

/// One applied config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Unix seconds of the apply.
    pub at: i64,
    /// Normalised references (`docker.io/library/redis:7`).
    pub images: BTreeSet<String>,
    /// The image IDs those references resolved to after the apply.
    pub ids: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Oldest first.
    pub entries: Vec<Entry>,
}

impl Applied {
    pub fn path(state_dir: &Path, instance: &str) -> PathBuf {
        state_dir.join(format!("applied-{instance}.json"))
    }

    /// A missing file is an empty record; an unreadable one is an error (a prune must not
    /// guess what is recent).
    pub fn load(state_dir: &Path, instance: &str) -> Result<Applied, AppliedError> {
        let path = Self::path(state_dir, instance);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| AppliedError::Read {
                path,
                cause: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Applied::default()),
            Err(e) => Err(AppliedError::Read {
                path,
                cause: e.to_string(),
            }),
        }
    }

    /// Written beside and renamed over: a crash never leaves half a file.
    pub fn save(&self, state_dir: &Path, instance: &str) -> Result<(), AppliedError> {
        let path = Self::path(state_dir, instance);
        crate::statefile::write_json(&path, self).map_err(|e| AppliedError::Write {
            path: path.clone(),
            cause: e.to_string(),
        })
    }

    /// Adds an applied config; the same images as the newest entry only refresh its IDs (a
    /// resync that changed nothing is not a new config).
    pub fn push(&mut self, entry: Entry) {
        match self.entries.last_mut() {
            Some(last) if last.images == entry.images => {
                last.ids.extend(entry.ids);
                last.at = entry.at;
            }
            _ => self.entries.push(entry),
        }
        let extra = self.entries.len().saturating_sub(MAX_ENTRIES);
        self.entries.drain(..extra);
    }

    /// What the current config and the `previous` applied before it name: references and IDs.
    pub fn keep(&self, previous: usize) -> BTreeSet<String> {
        self.entries
            .iter()
            .rev()
            .take(previous + 1)
            .flat_map(|e| e.images.iter().chain(e.ids.iter()).cloned())
            .collect()
    }
}

/// The entry for `desired` as applied: its services' images, and the IDs `after` (the Engine
/// after the apply) resolves them to.
pub fn entry(desired: &Desired, after: Option<&Observed>, at: i64) -> Entry {
    let images: BTreeSet<String> = desired
        .stacks
        .values()
        .flat_map(|s| s.services.values())
        .filter(|s| !s.image.is_empty())
        .map(|s| normalize_image_ref(&s.image))
        .collect();
    let ids = after
        .map(|o| {
            images
                .iter()
                .filter_map(|i| o.images.get(i).cloned())
                .collect()
        })
        .unwrap_or_default();
    Entry { at, images, ids }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(at: i64, images: &[&str]) -> Entry {
        Entry {
            at,
            images: images.iter().map(|s| s.to_string()).collect(),
            ids: BTreeSet::new(),
        }
    }

    #[test]
    fn keep_takes_the_current_and_the_previous_n() {
        let mut a = Applied::default();
        for (t, i) in [(1, "a"), (2, "b"), (3, "c")] {
            a.push(e(t, &[i]));
        }
        let keep: Vec<String> = a.keep(1).into_iter().collect();
        assert_eq!(keep, ["b", "c"]);
        assert_eq!(a.keep(0).into_iter().collect::<Vec<_>>(), ["c"]);
        assert_eq!(a.keep(10).len(), 3);
    }

    #[test]
    fn the_same_config_again_is_not_a_new_entry() {
        let mut a = Applied::default();
        a.push(e(1, &["a"]));
        a.push(e(2, &["a"]));
        assert_eq!(a.entries.len(), 1);
        assert_eq!(a.entries[0].at, 2);
        for t in 0..(MAX_ENTRIES as i64 + 5) {
            a.push(e(t, &[&t.to_string()]));
        }
        assert_eq!(a.entries.len(), MAX_ENTRIES);
    }

    #[test]
    fn a_corrupt_file_is_an_error_and_a_missing_one_empty() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Applied::load(d.path(), "x").unwrap(), Applied::default());
        std::fs::write(Applied::path(d.path(), "x"), "{").unwrap();
        assert!(Applied::load(d.path(), "x").is_err());
        let mut a = Applied::default();
        a.push(e(1, &["a"]));
        a.save(d.path(), "y").unwrap();
        assert_eq!(Applied::load(d.path(), "y").unwrap(), a);
    }
}
