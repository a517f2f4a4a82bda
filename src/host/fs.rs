//! Files and directories: the path check shared by every read and write (absolute, no `..`, no
//! symlinked ancestor), lstat-based observation, the atomic write (a temp file in the same
//! directory, renamed over the path) and metadata changes that never follow a symlink.
//!
//! Everything here blocks: the adapter calls it through `spawn_blocking`.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::libc;

use super::HostError;
use crate::model::host::{Meta, PathState};

/// Why berth will not use `path`, or `Ok` when it may: the path must be absolute, have no `..`,
/// and no existing ancestor may be a symlink (or anything but a directory). A missing ancestor
/// is fine (the path is then absent).
pub(crate) fn check_path(path: &Path) -> Result<(), String> {
    Ancestors::default().check(path)
}

/// [`check_path`] for many paths: each ancestor is looked at once.
#[derive(Debug, Default)]
pub(crate) struct Ancestors {
    /// Directory → `Ok(true)`: a directory, `Ok(false)`: missing, `Err`: refused.
    seen: std::collections::HashMap<PathBuf, Result<bool, String>>,
}

impl Ancestors {
    pub(crate) fn check(&mut self, path: &Path) -> Result<(), String> {
        if !path.is_absolute() {
            return Err("not an absolute path: berth refuses relative paths".into());
        }
        if path.components().any(|c| c == Component::ParentDir) {
            return Err("has `..`: berth refuses paths that leave where they say".into());
        }
        let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
        ancestors.pop(); // `/`
        for dir in ancestors.into_iter().rev() {
            let verdict = match self.seen.get(dir) {
                Some(v) => v.clone(),
                None => {
                    let v = look_at_ancestor(dir);
                    self.seen.insert(dir.to_owned(), v.clone());
                    v
                }
            };
            match verdict {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(reason) => return Err(reason),
            }
        }
        Ok(())
    }
}

fn look_at_ancestor(dir: &Path) -> Result<bool, String> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = fs::read_link(dir)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "somewhere".into());
            Err(format!(
                "{} is a symlink to {target}: berth refuses paths through symlinks",
                dir.display()
            ))
        }
        Ok(m) if !m.is_dir() => Err(format!(
            "{} is {}, not a directory",
            dir.display(),
            what(&m.file_type())
        )),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("cannot look at {}: {e}", dir.display())),
    }
}

fn refused(path: &Path, reason: String) -> HostError {
    HostError::Refused {
        path: path.to_owned(),
        reason,
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> HostError + 'a {
    move |source| HostError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// What a file type is, for people.
pub(crate) fn what(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_symlink() {
        "a symlink"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a file"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_char_device() {
        "a character device"
    } else {
        "something else"
    }
}

fn meta_of(m: &fs::Metadata) -> Meta {
    Meta {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
    }
}

/// Opens the leaf itself, never a symlink's target (`O_NOFOLLOW`), without blocking on a named
/// pipe.
fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// One path as it is now (lstat: a symlink at the leaf is `Other`, never followed).
#[cfg(test)]
pub(crate) fn observe_path(path: &Path) -> PathState {
    observe_path_with(path, &mut Ancestors::default())
}

/// [`observe_path`], sharing the ancestor checks of earlier paths.
pub(crate) fn observe_path_with(path: &Path, ancestors: &mut Ancestors) -> PathState {
    if let Err(reason) = ancestors.check(path) {
        return PathState::Refused { reason };
    }
    let m = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return PathState::Absent,
        Err(e) => {
            return PathState::Refused {
                reason: format!("cannot look at it: {e}"),
            };
        }
    };
    if m.is_dir() {
        return PathState::Dir { meta: meta_of(&m) };
    }
    if !m.is_file() {
        return PathState::Other {
            what: what(&m.file_type()).into(),
        };
    }
    let read = || -> io::Result<PathState> {
        let mut f = open_nofollow(path)?;
        let m = f.metadata()?;
        if !m.is_file() {
            // Swapped between the lstat and the open.
            return Ok(PathState::Other {
                what: what(&m.file_type()).into(),
            });
        }
        let mut content = Vec::with_capacity(m.len() as usize);
        f.read_to_end(&mut content)?;
        Ok(PathState::File {
            content,
            meta: meta_of(&m),
        })
    };
    match read() {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => PathState::Absent,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => PathState::Other {
            what: "a symlink".into(),
        },
        Err(e) => PathState::Refused {
            reason: format!("cannot read it: {e}"),
        },
    }
}

/// A staged file: removed again when dropped before [`Staged::commit`].
#[derive(Debug)]
pub(crate) struct Staged {
    temp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl Staged {
    pub(crate) fn temp(&self) -> &Path {
        &self.temp
    }

    /// Renames the staged file over the destination (a symlink there is replaced, not
    /// followed), then fsyncs the directory.
    pub(crate) fn commit(mut self) -> Result<(), HostError> {
        fs::rename(&self.temp, &self.dest).map_err(io_err("rename over", &self.dest))?;
        self.committed = true;
        sync_parent(&self.dest)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: an error here would hide the one that made us drop it.
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// The name of a temp file beside `name`: `.<name>.berth-<pid>-<n>.tmp`.
pub(crate) fn temp_name(name: &std::ffi::OsStr, n: u64) -> OsString {
    let mut t = OsString::from(".");
    t.push(name);
    t.push(format!(".berth-{}-{n}.tmp", std::process::id()));
    t
}

/// Temp files of `name` that a berth process left behind when it was killed mid-write
/// (`kill -9`, a crash, a power cut): removed before the next write, so a rerun leaves no
/// half-written file anywhere. Only those of processes that are gone; best effort.
fn remove_stale_temps(dir: &Path, name: &std::ffi::OsStr) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{}.berth-", name.to_string_lossy());
    for entry in entries.flatten() {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        let Some(rest) = file
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".tmp"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if gone && pid != std::process::id() as i32 {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Writes `content` to a new temp file beside `dest` (created `O_EXCL`, mode 0600), sets its
/// owner and mode, fsyncs it. The parent must exist; `dest` must pass [`check_path`].
pub(crate) fn stage(
    dest: &Path,
    content: &[u8],
    meta: Meta,
    counter: &AtomicU64,
) -> Result<Staged, HostError> {
    check_path(dest).map_err(|r| refused(dest, r))?;
    stage_unchecked(
        dest,
        content,
        meta.mode,
        Some((meta.uid, meta.gid)),
        counter,
    )
}

/// [`stage`] without the path check and, with `owner: None`, without a chown: for berth's own
/// state files, wherever the state dir is.
pub(crate) fn stage_unchecked(
    dest: &Path,
    content: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
    counter: &AtomicU64,
) -> Result<Staged, HostError> {
    let (Some(dir), Some(name)) = (parent_dir(dest), dest.file_name()) else {
        return Err(refused(dest, "has no file name".into()));
    };
    remove_stale_temps(dir, name);
    let (mut file, temp) = loop {
        let temp = dir.join(temp_name(name, counter.fetch_add(1, Ordering::Relaxed)));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)
        {
            Ok(f) => break (f, temp),
            // Another berth process with a reused pid left one behind: take the next number.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("create a temp file in", dir)(e)),
        }
    };
    let staged = Staged {
        temp,
        dest: dest.to_owned(),
        committed: false,
    };
    let t = staged.temp.as_path();
    file.write_all(content).map_err(io_err("write", t))?;
    // Owner first: a chown clears the set-id bits the mode may set.
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(io_err("chown", t))?;
    }
    file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
        .map_err(io_err("chmod", t))?;
    file.sync_all().map_err(io_err("fsync", t))?;
    Ok(staged)
}

/// The directory holding `path` (`.` for a bare relative name).
fn parent_dir(path: &Path) -> Option<&Path> {
    path.parent().map(|d| {
        if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        }
    })
}

/// fsyncs the directory holding `path`, so a rename, create or unlink there is durable.
pub(crate) fn sync_parent(path: &Path) -> Result<(), HostError> {
    let Some(dir) = parent_dir(path) else {
        return Ok(());
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

/// Removes a file (a symlink there is removed itself); one already gone is fine.
pub(crate) fn remove_file(path: &Path) -> Result<(), HostError> {
    check_path(path).map_err(|r| refused(path, r))?;
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// Makes a directory with `meta` (mode set after the mkdir: the umask does not apply), or sets
/// the metadata of the directory already there.
pub(crate) fn make_dir(path: &Path, meta: Meta) -> Result<(), HostError> {
    check_path(path).map_err(|r| refused(path, r))?;
    let made = match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(io_err("mkdir", path)(e)),
    };
    set_meta_of(path, meta, Some(true))?;
    if made {
        sync_parent(path)?;
    }
    Ok(())
}

/// Sets mode and owner of a file or directory, never through a symlink at the leaf.
pub(crate) fn set_meta(path: &Path, meta: Meta) -> Result<(), HostError> {
    check_path(path).map_err(|r| refused(path, r))?;
    set_meta_of(path, meta, None)
}

/// `dir`: `Some(true)` when it must be a directory, `None` for a file or a directory.
fn set_meta_of(path: &Path, meta: Meta, dir: Option<bool>) -> Result<(), HostError> {
    let f = match open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refused(
                path,
                "is a symlink: berth does not change what it points to".into(),
            ));
        }
        Err(e) => return Err(io_err("open", path)(e)),
    };
    let m = f.metadata().map_err(io_err("stat", path))?;
    let ok = match dir {
        Some(true) => m.is_dir(),
        _ => m.is_dir() || m.is_file(),
    };
    if !ok {
        return Err(refused(
            path,
            format!(
                "is {}: berth changes only {}",
                what(&m.file_type()),
                if dir == Some(true) {
                    "directories here"
                } else {
                    "files and directories"
                }
            ),
        ));
    }
    std::os::unix::fs::fchown(&f, Some(meta.uid), Some(meta.gid)).map_err(io_err("chown", path))?;
    f.set_permissions(fs::Permissions::from_mode(meta.mode & 0o7777))
        .map_err(io_err("chmod", path))
}

/// Removes an empty directory: `false` when it is not empty (it is kept); one already gone is
/// removed.
pub(crate) fn remove_dir(path: &Path) -> Result<bool, HostError> {
    check_path(path).map_err(|r| refused(path, r))?;
    match fs::remove_dir(path) {
        Ok(()) => sync_parent(path).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e)
            if e.kind() == io::ErrorKind::DirectoryNotEmpty
                || e.raw_os_error() == Some(libc::EEXIST) =>
        {
            Ok(false)
        }
        Err(e) => Err(io_err("rmdir", path)(e)),
    }
}
