//! Running a command with a deadline (systemctl, journalctl, a file's `validate`): its own
//! process group, killed whole when it runs too long; output tails for error messages.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::HostError;

/// How long a file's `validate` may take.
pub(crate) const VALIDATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a systemctl or journalctl call may take (a start waits for the unit).
pub(crate) const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a command gave no output.
#[derive(Debug)]
pub(crate) enum RunError {
    /// It could not be started (not installed, not executable).
    Spawn(io::Error),
    /// Waiting for it failed.
    Wait(io::Error),
    /// It ran longer than allowed (its process group was killed).
    Timeout,
}

/// Runs `program args...` with no stdin and captured output, in a process group of its own
/// that is killed when `timeout` passes.
pub(crate) async fn run<S: AsRef<OsStr>>(
    program: &Path,
    args: &[S],
    timeout: Duration,
) -> Result<Output, RunError> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(RunError::Spawn)?;
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.map_err(RunError::Wait),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // The group too: a shell's children would keep the pipes open. It may be gone.
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            Err(RunError::Timeout)
        }
    }
}

/// The last lines of a command's output, for an error message: at most 20 lines and 2 KiB.
pub(crate) fn output_tail(bytes: &[u8]) -> String {
    const LINES: usize = 20;
    const BYTES: usize = 2048;
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let mut tail = lines[lines.len().saturating_sub(LINES)..].join("\n");
    if tail.len() > BYTES {
        let mut cut = tail.len() - BYTES;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = format!("…{}", &tail[cut..]);
    }
    tail
}

/// `command` as people read it (`systemctl restart -- a.service`).
pub(crate) fn display(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a systemd tool (`program`, shown as `name`) and returns its stdout: a tool that is
/// missing, fails or times out is a typed error naming the command.
pub(crate) async fn tool(
    program: &Path,
    name: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<Vec<u8>, HostError> {
    let command = display(name, args);
    match run(program, args, timeout).await {
        Ok(out) if out.status.success() => Ok(out.stdout),
        Ok(out) => {
            let output = if out.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
                output_tail(&out.stderr)
            } else {
                output_tail(&out.stdout)
            };
            Err(HostError::Command {
                command,
                status: out.status.to_string(),
                output,
            })
        }
        Err(RunError::Spawn(e)) if e.kind() == io::ErrorKind::NotFound => Err(HostError::Command {
            command,
            status: format!("{name} not found: is systemd installed?"),
            output: String::new(),
        }),
        Err(RunError::Spawn(e)) => Err(HostError::Command {
            command,
            status: format!("could not start {name}: {e}"),
            output: String::new(),
        }),
        Err(RunError::Wait(e)) => Err(HostError::Command {
            command,
            status: format!("waiting for it failed: {e}"),
            output: String::new(),
        }),
        Err(RunError::Timeout) => Err(HostError::Timeout {
            command,
            seconds: timeout.as_secs(),
        }),
    }
}

/// Runs a file's `validate` command through `sh -c`, each `%s` replaced by the shell-quoted
/// path of the staged file. Non-zero: [`HostError::Validate`] with the output's tail.
pub(crate) async fn validate(
    template: &str,
    staged: &Path,
    timeout: Duration,
) -> Result<(), HostError> {
    let refused = |status: String, output: String| HostError::Validate {
        command: template.to_string(),
        status,
        output,
    };
    let path = staged
        .to_str()
        .ok_or_else(|| refused("not run: the path is not UTF-8".into(), String::new()))?;
    let quoted =
        shlex::try_quote(path).map_err(|e| refused(format!("not run: {e}"), String::new()))?;
    let script = template.replace("%s", &quoted);
    match run(Path::new("sh"), &["-c", &script], timeout).await {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => {
            let mut all = out.stdout;
            all.extend_from_slice(&out.stderr);
            Err(refused(out.status.to_string(), output_tail(&all)))
        }
        Err(RunError::Spawn(e) | RunError::Wait(e)) => {
            Err(refused(format!("could not run sh: {e}"), String::new()))
        }
        Err(RunError::Timeout) => Err(HostError::Timeout {
            command: format!("validate {template}"),
            seconds: timeout.as_secs(),
        }),
    }
}
