//! Sysctls through `/proc/sys` (the root is a parameter so that tests use a temp folder).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::HostError;
use crate::model::host::normalize_sysctl;

/// A key berth reads and writes: dot-separated names of letters, digits, `_` and `-` (no `/`,
/// no empty part), so its path stays under `/proc/sys`.
pub(crate) fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// `<root>/net/ipv4/ip_forward` for `net.ipv4.ip_forward` (`root` is `/proc/sys`).
pub(crate) fn key_path(root: &Path, key: &str) -> PathBuf {
    root.join(key.replace('.', "/"))
}

/// The value now, normalised ([`normalize_sysctl`]), or why it cannot be read.
pub(crate) fn read(root: &Path, key: &str) -> Result<String, String> {
    if !valid_key(key) {
        return Err("not a sysctl key".into());
    }
    match std::fs::read_to_string(key_path(root, key)) {
        Ok(v) => Ok(normalize_sysctl(v.trim_end_matches('\n'))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err("no such sysctl".into()),
        Err(e) if e.kind() == io::ErrorKind::IsADirectory => {
            Err("no such sysctl (that is a group of keys)".into())
        }
        Err(e) => Err(format!("cannot read it: {e}")),
    }
}

/// Writes `value` (tabs as spaces: the kernel takes either).
pub(crate) fn write(root: &Path, key: &str, value: &str) -> Result<(), HostError> {
    let err = |message: String| HostError::Sysctl {
        key: key.to_string(),
        message,
    };
    if !valid_key(key) {
        return Err(err("not a sysctl key".into()));
    }
    let path = key_path(root, key);
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                err("no such sysctl".into())
            } else {
                err(format!("cannot open {}: {e}", path.display()))
            }
        })?;
    f.write_all(value.replace('\t', " ").as_bytes())
        .map_err(|e| err(format!("the kernel refused {value:?}: {e}")))
}
