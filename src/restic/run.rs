//! One restic command in a one-off container from the Backup's `image`: the repository (a host
//! path bind-mounted at `/repo`, else the URL as it is), the password and the `environment` as
//! variables, the sources mounted read-only; its output read back, a dump fed to its standard
//! input, and what went wrong classified ([`Failure`]). The container is always removed.

use std::path::Path;

use tokio::io::AsyncWriteExt;

use super::{Context, Log};
use crate::docker::{Chunk, DockerError, ExecStream, OneOff, OneOffMount};
use crate::model::jobs::BackupSpec;

/// Where a host-path repository is mounted in the restic container.
pub const REPO_MOUNT: &str = "/repo";
/// At most this much of a command's standard output is kept (a `snapshots --json` of a large
/// repository is a few MB).
const STDOUT_MAX: usize = 64 * 1024 * 1024;

/// What a restic command's standard input is fed from.
pub(crate) enum Stdin<'a> {
    None,
    /// The standard output of a command in a service's container.
    Exec(&'a mut ExecStream),
}

/// Where its standard output goes.
pub(crate) enum Stdout<'a> {
    /// Kept (up to 64 MB), restic's JSON `status` lines left out.
    Keep,
    /// Written to a file (a restored dump).
    File(&'a mut tokio::fs::File),
}

/// How a restic command ended.
#[derive(Debug)]
pub(crate) struct Finished {
    pub exit_code: i64,
    pub stdout: Vec<u8>,
    /// The end of standard error (up to 16 KiB), secrets not yet redacted.
    pub stderr: String,
    /// What feeding standard input from a dump found: bytes, or the error that cut it.
    pub fed: Option<Result<u64, DockerError>>,
}

impl Finished {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `restic --no-cache <args>` for `spec`'s repository with `mounts` beside it.
pub(crate) async fn restic(
    cx: &Context,
    spec: &BackupSpec,
    args: &[String],
    mounts: Vec<OneOffMount>,
    stdin: Stdin<'_>,
    stdout: Stdout<'_>,
    log: &mut Log,
) -> Result<Finished, DockerError> {
    let mut env = vec![format!("RESTIC_PASSWORD={}", spec.password.expose())];
    let mut all_mounts = Vec::new();
    if spec.repository_is_path() {
        let path = Path::new(spec.repository.expose());
        std::fs::create_dir_all(path).map_err(|e| DockerError::Invalid {
            op: "prepare the repository folder".into(),
            message: format!("cannot create {}: {e}", path.display()),
        })?;
        all_mounts.push(OneOffMount {
            source: path.display().to_string(),
            target: REPO_MOUNT.to_string(),
            read_only: false,
            volume: false,
        });
        env.push(format!("RESTIC_REPOSITORY={REPO_MOUNT}"));
    } else {
        env.push(format!("RESTIC_REPOSITORY={}", spec.repository.expose()));
    }
    for (k, v) in &spec.environment {
        env.push(format!("{k}={}", v.expose()));
    }
    all_mounts.extend(mounts);
    let mut cmd = vec!["--no-cache".to_string()];
    cmd.extend(args.iter().cloned());
    let one = OneOff {
        image: spec.image.clone(),
        cmd,
        env,
        mounts: all_mounts,
        what: format!("backup/{}", spec.name),
        network_mode: Some(cx.network_mode.clone()),
        user: cx.user.clone(),
        stdin: matches!(stdin, Stdin::Exec(_)),
    };
    log.line(&format!("$ restic {}", args.join(" ")));
    let mut run = cx.engine.run_oneoff(&one).await?;
    let input = run.take_stdin();

    // Feed standard input and read the output side by side: restic blocks on a full output
    // pipe as much as a dump blocks on a full input one.
    let feed = async {
        let (Stdin::Exec(dump), Some(mut input)) = (stdin, input) else {
            return None;
        };
        let mut result = Ok(());
        while let Some(chunk) = dump.next_stdout().await {
            match chunk {
                Ok(bytes) => {
                    if let Err(e) = input.write_all(&bytes).await {
                        result = Err(DockerError::Other {
                            op: "write the dump into restic".into(),
                            cause: e.to_string(),
                        });
                        break;
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // End of file for restic, also after an error: it then saves what it got, and the
        // caller forgets that snapshot.
        let _ = input.flush().await;
        let _ = input.shutdown().await;
        Some(result.map(|()| dump.stdout_bytes))
    };
    let read = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut pending = Vec::new();
        let mut sink = stdout;
        while let Some(chunk) = run.next_output().await {
            match chunk? {
                Chunk::Stdout(bytes) => match &mut sink {
                    Stdout::Keep => {
                        pending.extend_from_slice(&bytes);
                        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = pending.drain(..=nl).collect();
                            keep_line(&mut out, &line);
                        }
                    }
                    Stdout::File(f) => {
                        f.write_all(&bytes).await.map_err(|e| DockerError::Other {
                            op: "write restic's output to the file".into(),
                            cause: e.to_string(),
                        })?
                    }
                },
                Chunk::Stderr(bytes) => {
                    err.extend_from_slice(&bytes);
                    if err.len() > 16 * 1024 {
                        err.drain(..err.len() - 16 * 1024);
                    }
                }
            }
        }
        keep_line(&mut out, &pending);
        Ok::<_, DockerError>((out, err))
    };
    let (fed, read) = tokio::join!(feed, read);
    let (out, err) = match read {
        Ok(v) => v,
        Err(e) => {
            run.remove().await;
            return Err(e);
        }
    };
    let exit = run.wait().await;
    run.remove().await;
    let exit_code = exit?;
    let stderr = String::from_utf8_lossy(&err).into_owned();
    for l in stderr.lines() {
        log.line(l);
    }
    Ok(Finished {
        exit_code,
        stdout: out,
        stderr,
        fed,
    })
}

/// Keeps a line of standard output unless it is a JSON progress line.
fn keep_line(out: &mut Vec<u8>, line: &[u8]) {
    if line.is_empty() || out.len() + line.len() > STDOUT_MAX {
        return;
    }
    if line.starts_with(b"{\"message_type\":\"status\"") {
        return;
    }
    out.extend_from_slice(line);
}

/// Why restic could not work with the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// `repository is locked by PID 1 on host by root ...`.
    Locked(String),
    WrongPassword,
    /// The repository does not exist (yet).
    NoRepository,
    /// The repository cannot be reached (connection refused, no such host, timeout, TLS).
    Unreachable(String),
}

impl Failure {
    /// The one-line reason of a failed run.
    pub fn reason(&self) -> String {
        match self {
            Failure::Locked(by) => by.clone(),
            Failure::WrongPassword => {
                "wrong repository password (restic: wrong password or no key found)".into()
            }
            Failure::NoRepository => "the repository does not exist".into(),
            Failure::Unreachable(why) => format!("repository unreachable: {why}"),
        }
    }
}

/// What restic's exit code and standard error say about the repository (restic 0.14's
/// messages; 0.17's exit codes 10, 11, 12).
pub(crate) fn classify(exit_code: i64, stderr: &str) -> Option<Failure> {
    if exit_code == 0 {
        return None;
    }
    let lower = stderr.to_ascii_lowercase();
    if exit_code == 11 || lower.contains("repository is already locked") {
        return Some(Failure::Locked(locked_by(stderr)));
    }
    if exit_code == 12 || lower.contains("wrong password or no key found") {
        return Some(Failure::WrongPassword);
    }
    const UNREACHABLE: &[&str] = &[
        "connection refused",
        "no such host",
        "i/o timeout",
        "network is unreachable",
        "no route to host",
        "tls: ",
        "x509: ",
        "server misbehaving",
        "context deadline exceeded",
        "connection reset",
    ];
    if UNREACHABLE.iter().any(|p| lower.contains(p)) {
        return Some(Failure::Unreachable(fatal_line(stderr)));
    }
    if exit_code == 10
        || lower.contains("is there a repository at the following location")
        || lower.contains("repository does not exist")
    {
        return Some(Failure::NoRepository);
    }
    None
}

/// `repository is locked by PID 1 on 5e1f by root (UID 0, GID 0), since 2026-...`.
fn locked_by(stderr: &str) -> String {
    let mut out = String::from("repository is locked");
    if let Some(line) = stderr.lines().find(|l| l.contains("locked by")) {
        if let Some(i) = line.find("locked by") {
            out = format!("repository is {}", line[i..].trim());
        }
    }
    if let Some(line) = stderr.lines().find(|l| l.contains("lock was created at")) {
        if let Some(i) = line.find("created at") {
            out.push_str(&format!(", lock {}", line[i..].trim()));
        }
    }
    out
}

/// The first `Fatal:` line (or the first line), without the prefix.
pub(crate) fn fatal_line(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("Fatal:"))
        .or_else(|| stderr.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("");
    line.trim_start_matches("Fatal:").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_failures_are_told_apart() {
        let missing = "Fatal: unable to open config file: stat /repo/config: no such file or directory\nIs there a repository at the following location?\n/repo\n";
        assert_eq!(classify(1, missing), Some(Failure::NoRepository));
        let rest_missing = "Fatal: unable to open config file: <config/> does not exist\nIs there a repository at the following location?\nrest:http://127.0.0.1:1/\n";
        assert_eq!(classify(1, rest_missing), Some(Failure::NoRepository));
        let refused = "Fatal: unable to open config file: client.Head: Head \"http://127.0.0.1:18124/config\": dial tcp 127.0.0.1:18124: connect: connection refused\nIs there a repository at the following location?\n";
        assert!(
            matches!(classify(1, refused), Some(Failure::Unreachable(w)) if w.contains("connection refused"))
        );
        assert_eq!(
            classify(1, "Fatal: wrong password or no key found\n"),
            Some(Failure::WrongPassword)
        );
        assert_eq!(classify(12, ""), Some(Failure::WrongPassword));
        assert_eq!(classify(10, ""), Some(Failure::NoRepository));
        let locked = "unable to create lock in backend: repository is already locked by PID 1 on 4f3c2a1b by root (UID 0, GID 0)\nlock was created at 2026-12-01 21:00:00 (12.5s ago)\nstorage ID 1a2b3c4d\nthe `unlock` command can be used to remove stale locks\n";
        assert_eq!(
            classify(1, locked),
            Some(Failure::Locked(
                "repository is locked by PID 1 on 4f3c2a1b by root (UID 0, GID 0), lock created at 2026-12-01 21:00:00 (12.5s ago)".into()
            ))
        );
        assert_eq!(classify(3, "error: open x: permission denied\n"), None);
        assert_eq!(classify(0, missing), None);
    }
}
