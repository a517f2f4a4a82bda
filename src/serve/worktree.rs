//! The stable worktree: the folder every applied commit's files live in, so that bind mounts
//! (`./html:/usr/share/nginx/html`) keep one host path across commits. A new commit is *synced
//! into* it rather than swapped in: folders keep their inodes, so a container that was not
//! replaced still sees its bind-mounted folder (with the new commit's files); a changed file is
//! written beside the old one and renamed over it, so no process ever reads half a file.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The file in the worktree that names the commit it holds.
pub const MARKER: &str = ".berth-commit";

/// Make `to` hold exactly the files of `from` (plus [`MARKER`]), changing only what differs.
pub fn sync_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    same_mode(&std::fs::metadata(from)?, to)?;
    copy_changed(from, to)?;
    remove_extra(from, to, true)
}

fn copy_changed(from: &Path, to: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let src = entry.path();
        let dest = to.join(entry.file_name());
        let existing = std::fs::symlink_metadata(&dest).ok();
        if kind.is_dir() {
            if existing.as_ref().is_some_and(|m| !m.is_dir()) {
                std::fs::remove_file(&dest)?;
            }
            std::fs::create_dir_all(&dest)?;
            same_mode(&entry.metadata()?, &dest)?;
            copy_changed(&src, &dest)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&src)?;
            if std::fs::read_link(&dest).ok().as_ref() != Some(&target) {
                remove_any(&dest, existing.as_ref())?;
                std::os::unix::fs::symlink(&target, &dest)?;
            }
        } else {
            let content = std::fs::read(&src)?;
            let mode = entry.metadata()?.permissions().mode();
            let same = existing.as_ref().is_some_and(|m| {
                m.is_file()
                    && m.permissions().mode() == mode
                    && std::fs::read(&dest).ok().as_deref() == Some(content.as_slice())
            });
            if !same {
                if existing.as_ref().is_some_and(|m| m.is_dir()) {
                    std::fs::remove_dir_all(&dest)?;
                }
                let tmp = to.join(format!(
                    ".{}.berth-tmp",
                    entry.file_name().to_string_lossy()
                ));
                std::fs::write(&tmp, &content)?;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
                std::fs::rename(&tmp, &dest)?;
            }
        }
    }
    Ok(())
}

/// Give the folder `dest` the mode of `src` (the export's 0755, not what the umask made).
fn same_mode(src: &std::fs::Metadata, dest: &Path) -> io::Result<()> {
    let mode = src.permissions().mode() & 0o7777;
    if std::fs::metadata(dest)?.permissions().mode() & 0o7777 != mode {
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Remove what is in `to` but not in `from` (keeping the marker at the top).
fn remove_extra(from: &Path, to: &Path, top: bool) -> io::Result<()> {
    for entry in std::fs::read_dir(to)? {
        let entry = entry?;
        let name = entry.file_name();
        if top && name == MARKER {
            continue;
        }
        let src = from.join(&name);
        let kind = entry.file_type()?;
        match std::fs::symlink_metadata(&src) {
            Err(_) => remove_any(&entry.path(), Some(&entry.metadata()?))?,
            Ok(m) if m.is_dir() && kind.is_dir() => remove_extra(&src, &entry.path(), false)?,
            Ok(_) => {}
        }
    }
    Ok(())
}

fn remove_any(path: &Path, meta: Option<&std::fs::Metadata>) -> io::Result<()> {
    match meta {
        None => Ok(()),
        Some(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Some(_) => std::fs::remove_file(path),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn folders_get_the_exported_mode_not_the_umasks() {
        let (from, wt) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(from.path(), "app/conf/a.txt", "a");
        for dir in ["", "app", "app/conf"] {
            let p = from.path().join(dir);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // As a umask of 077 leaves them, or as an older berth made them.
        std::fs::create_dir_all(wt.path().join("app/conf")).unwrap();
        for dir in ["", "app", "app/conf"] {
            let p = wt.path().join(dir);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        sync_tree(from.path(), wt.path()).unwrap();
        for dir in ["", "app", "app/conf"] {
            let mode = std::fs::metadata(wt.path().join(dir)).unwrap().mode() & 0o7777;
            assert_eq!(mode, 0o755, "{dir:?}");
        }
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn syncing_keeps_folders_replaces_changed_files_and_removes_the_rest() {
        let (a, b, wt) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        write(a.path(), "web/html/index.txt", "v1");
        write(a.path(), "web/html/old.txt", "gone later");
        write(a.path(), "web/compose.yaml", "x");
        write(b.path(), "web/html/index.txt", "v2");
        write(b.path(), "web/compose.yaml", "x");
        write(b.path(), "new/compose.yaml", "y");
        sync_tree(a.path(), wt.path()).unwrap();
        std::fs::write(wt.path().join(MARKER), "c1").unwrap();
        let html = wt.path().join("web/html");
        let dir_inode = std::fs::metadata(&html).unwrap().ino();
        let same_file_inode = std::fs::metadata(wt.path().join("web/compose.yaml"))
            .unwrap()
            .ino();

        sync_tree(b.path(), wt.path()).unwrap();
        // A container bind-mounting web/html still has the same folder, with the new files.
        assert_eq!(std::fs::metadata(&html).unwrap().ino(), dir_inode);
        assert_eq!(
            std::fs::read_to_string(html.join("index.txt")).unwrap(),
            "v2"
        );
        assert!(!html.join("old.txt").exists());
        // Unchanged files are not rewritten.
        assert_eq!(
            std::fs::metadata(wt.path().join("web/compose.yaml"))
                .unwrap()
                .ino(),
            same_file_inode
        );
        assert!(wt.path().join("new/compose.yaml").is_file());
        assert!(wt.path().join(MARKER).is_file(), "the marker is kept");
        let leftovers: Vec<_> = walk(wt.path())
            .into_iter()
            .filter(|p| p.contains("berth-tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    fn walk(p: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            out.push(e.path().display().to_string());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
        out
    }
}
