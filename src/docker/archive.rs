//! The tar archive that copies secrets and configs given by content into a container.
//!
//! Written with the `tar` crate (ustar headers, long paths split into prefix/name, checksums)
//! rather than by hand.

use std::collections::BTreeSet;
use std::io;

use crate::model::Secret;

/// A tar archive (ustar) holding `files` (absolute paths in the container, mode 0444) and
/// their parent directories (0755), to extract at `/`. Owner root, mtime 0, so the same files
/// always give the same bytes. Fails on a path tar cannot hold (e.g. with a `..` component).
pub(super) fn tar_archive(files: &[(String, Secret)]) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs = BTreeSet::new();
    for (path, _) in files {
        let rel = path.trim_start_matches('/');
        let parts: Vec<&str> = rel.split('/').collect();
        let mut acc = String::new();
        for part in &parts[..parts.len().saturating_sub(1)] {
            acc.push_str(part);
            acc.push('/');
            if dirs.insert(acc.clone()) {
                let mut header = header(tar::EntryType::Directory, 0o755, 0);
                builder.append_data(&mut header, &acc, io::empty())?;
            }
        }
    }
    for (path, content) in files {
        let data = content.expose().as_bytes();
        let mut header = header(tar::EntryType::Regular, 0o444, data.len() as u64);
        builder.append_data(&mut header, path.trim_start_matches('/'), data)?;
    }
    builder.into_inner()
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Every entry: (path, is a directory, mode, content).
    fn entries(archive: &[u8]) -> Vec<(String, bool, u32, String)> {
        let mut out = Vec::new();
        for entry in tar::Archive::new(archive).entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header();
            let dir = header.entry_type().is_dir();
            let mode = header.mode().unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mut content = String::new();
            entry.read_to_string(&mut content).unwrap();
            out.push((path, dir, mode, content));
        }
        out
    }

    #[test]
    fn files_and_their_directories_are_archived() {
        let long_dir = format!("/run/{}", "d".repeat(120));
        let files = vec![
            ("/run/secrets/token".to_string(), Secret::new("s3cret")),
            ("/run/secrets/other".to_string(), Secret::new("")),
            (format!("{long_dir}/config.json"), Secret::new("{}")),
        ];
        let archive = tar_archive(&files).unwrap();
        assert_eq!(archive.len() % 512, 0);
        let got = entries(&archive);
        let long = long_dir.trim_start_matches('/');
        assert_eq!(
            got,
            [
                ("run/".to_string(), true, 0o755, String::new()),
                ("run/secrets/".to_string(), true, 0o755, String::new()),
                (format!("{long}/"), true, 0o755, String::new()),
                (
                    "run/secrets/token".to_string(),
                    false,
                    0o444,
                    "s3cret".into()
                ),
                ("run/secrets/other".to_string(), false, 0o444, String::new()),
                (format!("{long}/config.json"), false, 0o444, "{}".into()),
            ]
        );
        // Deterministic: the same files give the same bytes.
        assert_eq!(tar_archive(&files).unwrap(), archive);
    }

    #[test]
    fn a_path_tar_cannot_hold_is_an_error() {
        let files = vec![("/run/../etc/passwd".to_string(), Secret::new("x"))];
        assert!(tar_archive(&files).is_err());
    }
}
