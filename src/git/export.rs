//! A commit's tree written out as files (modes, symlinks kept inside the tree).

use std::path::{Component, Path, PathBuf};

use gix::bstr::ByteSlice;

use super::*;

/// Write `tree` into `dir` (which exists); `rel` is `dir` relative to the export root.
pub(super) fn write_tree(
    repo: &gix::Repository,
    tree: &gix::Tree<'_>,
    dir: &Path,
    rel: &Path,
) -> Result<(), GitError> {
    use gix::object::tree::EntryKind;
    let internal = |e: gix::Error| GitError::Internal {
        op: "export",
        message: error_text(&e),
    };
    for entry in tree.iter() {
        let entry = entry.map_err(internal)?;
        let name = entry.filename().to_str().map_err(|_| {
            GitError::Invalid(format!(
                "{}: file name {:?} is not UTF-8",
                rel.display(),
                entry.filename()
            ))
        })?;
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(GitError::Invalid(format!(
                "{}: unsafe file name {name:?} in tree",
                rel.display()
            )));
        }
        let path = dir.join(name);
        let rel_path = rel.join(name);
        let oid = entry.oid().to_owned();
        match entry.mode().kind() {
            EntryKind::Tree => {
                let sub = repo
                    .find_tree(oid)
                    .map_err(|e| not_found(format!("tree {}", rel_path.display()), &e))?;
                std::fs::create_dir(&path).map_err(|e| GitError::io(&path, e))?;
                set_folder_mode(&path)?;
                write_tree(repo, &sub, &path, &rel_path)?;
            }
            kind @ (EntryKind::Blob | EntryKind::BlobExecutable) => {
                let blob = repo
                    .find_blob(oid)
                    .map_err(|e| not_found(format!("file {}", rel_path.display()), &e))?;
                std::fs::write(&path, &blob.data).map_err(|e| GitError::io(&path, e))?;
                set_executable(&path, kind == EntryKind::BlobExecutable)?;
            }
            EntryKind::Link => {
                let blob = repo
                    .find_blob(oid)
                    .map_err(|e| not_found(format!("symlink {}", rel_path.display()), &e))?;
                let target = blob.data.to_str().map_err(|_| {
                    GitError::Invalid(format!(
                        "symlink {} has a non-UTF-8 target",
                        rel_path.display()
                    ))
                })?;
                check_symlink(&rel_path, target)?;
                symlink(target, &path)?;
            }
            EntryKind::Commit => {
                tracing::warn!(path = %rel_path.display(), commit = %oid, "skipping git submodule in export");
            }
        }
    }
    Ok(())
}

/// Refuse a symlink at `link` (relative to the export root) whose `target` is absolute or
/// resolves outside the export root.
pub(super) fn check_symlink(link: &Path, target: &str) -> Result<(), GitError> {
    let refuse = |why: &str| {
        GitError::Invalid(format!(
            "symlink {} -> {target:?} {why}; refusing to export it",
            link.display()
        ))
    };
    let target_path = Path::new(target);
    if target.is_empty() {
        return Err(refuse("has an empty target"));
    }
    if target_path.is_absolute() || target.starts_with('\\') || target.contains('\0') {
        return Err(refuse("is absolute"));
    }
    let mut depth = link.components().count() as isize - 1; // the link's folder
    for component in target_path.components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(refuse("is absolute")),
        }
        if depth < 0 {
            return Err(refuse("points outside the exported tree"));
        }
    }
    Ok(())
}

/// `subpath` as a relative path without `.`/`..` components.
pub(super) fn validate_rel_path(subpath: &str) -> Result<PathBuf, GitError> {
    let path = Path::new(subpath);
    if path.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(path.to_owned())
    } else {
        Err(GitError::Invalid(format!(
            "tree path {subpath:?} must be relative without '.' or '..'"
        )))
    }
}

#[cfg(unix)]
pub(super) fn set_executable(path: &Path, executable: bool) -> Result<(), GitError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| GitError::io(path, e))
}

#[cfg(not(unix))]
pub(super) fn set_executable(_path: &Path, _executable: bool) -> Result<(), GitError> {
    Ok(())
}

/// Folders are 0755 whatever the umask, as files get git's 0644/0755: a container that runs as
/// another user must read a bind-mounted folder even when berth runs with `UMask=0077`
/// (dist/berth.service).
#[cfg(unix)]
pub(super) fn set_folder_mode(path: &Path) -> Result<(), GitError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| GitError::io(path, e))
}

#[cfg(not(unix))]
pub(super) fn set_folder_mode(_path: &Path) -> Result<(), GitError> {
    Ok(())
}

#[cfg(unix)]
pub(super) fn symlink(target: &str, path: &Path) -> Result<(), GitError> {
    std::os::unix::fs::symlink(target, path).map_err(|e| GitError::io(path, e))
}

#[cfg(not(unix))]
pub(super) fn symlink(_target: &str, path: &Path) -> Result<(), GitError> {
    Err(GitError::Invalid(format!(
        "{}: symlinks are not supported on this platform",
        path.display()
    )))
}
