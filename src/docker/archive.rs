//! The tar archive that copies secrets and configs given by content into a container.
//!
//! Written with the `tar` crate (ustar headers, long paths split into prefix/name, checksums)
//! rather than by hand.

use std::collections::BTreeSet;
use std::io;

use super::create::CopiedFile;

/// A tar archive (ustar) holding `files` (absolute paths in the container, with their owner
/// and mode) and their parent directories (root, 0755), to extract at `/`. mtime 0, so the same
/// files always give the same bytes. Fails on a path tar cannot hold (e.g. a `..` component).
pub(super) fn tar_archive(files: &[CopiedFile]) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs = BTreeSet::new();
    for f in files {
        let rel = f.path.trim_start_matches('/');
        let parts: Vec<&str> = rel.split('/').collect();
        let mut acc = String::new();
        for part in &parts[..parts.len().saturating_sub(1)] {
            acc.push_str(part);
            acc.push('/');
            if dirs.insert(acc.clone()) {
                let mut header = header(tar::EntryType::Directory, 0o755, 0, (0, 0));
                builder.append_data(&mut header, &acc, io::empty())?;
            }
        }
    }
    for f in files {
        let data = f.content.expose().as_bytes();
        let mut header = header(
            tar::EntryType::Regular,
            f.mode,
            data.len() as u64,
            (f.uid, f.gid),
        );
        builder.append_data(&mut header, f.path.trim_start_matches('/'), data)?;
    }
    builder.into_inner()
}

fn header(kind: tar::EntryType, mode: u32, size: u64, (uid, gid): (u32, u32)) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mtime(0);
    h
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::model::Secret;

    fn file(path: &str, content: &str) -> CopiedFile {
        CopiedFile {
            path: path.into(),
            content: Secret::new(content),
            uid: 0,
            gid: 0,
            mode: 0o444,
        }
    }

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
            file("/run/secrets/token", "s3cret"),
            file("/run/secrets/other", ""),
            file(&format!("{long_dir}/config.json"), "{}"),
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
        let files = vec![file("/run/../etc/passwd", "x")];
        assert!(tar_archive(&files).is_err());
    }

    #[test]
    fn owner_and_mode_reach_the_header() {
        let mut f = file("/run/secrets/key", "k");
        (f.uid, f.gid, f.mode) = (999, 998, 0o400);
        let archive = tar_archive(&[f]).unwrap();
        let mut a = tar::Archive::new(archive.as_slice());
        let entry = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.header().entry_type().is_file())
            .unwrap();
        let h = entry.header();
        assert_eq!(
            (h.uid().unwrap(), h.gid().unwrap(), h.mode().unwrap()),
            (999, 998, 0o400)
        );
    }
}
