//! Processes and locks for the jobs state (`crate::jobs::state`): this process's id and the
//! kernel's start time of a pid (a run's owner), killing a job's exec by its host pid, and an
//! exclusive `flock`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// This process's id.
pub fn current_pid() -> u32 {
    std::process::id()
}

/// Field 22 of `/proc/<pid>/stat` (after the parenthesised name, which may hold spaces): when
/// the process started, in clock ticks since boot. `None`: no such process.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// SIGKILL to a host pid (a job's exec at its timeout). Best effort: gone is fine.
pub fn kill(pid: i64) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    if let Some(pid) = i32::try_from(pid).ok().filter(|p| *p > 1) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// An exclusive `flock` on a file, held until dropped.
pub struct FileLock {
    _flock: nix::fcntl::Flock<File>,
}

/// Waits for an exclusive lock on `path` (created 0600 when missing).
pub fn lock_exclusive(path: &Path) -> std::io::Result<FileLock> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let flock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| std::io::Error::from(e))?;
    Ok(FileLock { _flock: flock })
}
