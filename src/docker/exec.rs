//! Commands in a stack's running service (`docker exec`): find the service's container by
//! berth's labels, run a command with its output captured (bounded, with a timeout), or with
//! its standard output streamed as bytes (a database dump piped into restic).
//!
//! Used by backups (`crate::restic`: dumps, `stop:`) and by `kind: Job` exec tasks.

use std::collections::HashMap;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::ListContainersOptions;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::ops::short;

/// An exec's attached output.
pub(super) type ExecOutputStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;
use super::{DockerError, Engine, OLD_SUFFIX};
use crate::model::jobs::ServiceRef;
use crate::model::labels;

/// How much of a command's standard error [`ExecStream`] keeps (the end of it).
pub const STDERR_TAIL: usize = 8 * 1024;

/// One container of a stack's service, as [`Engine::service_containers`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceContainer {
    pub id: String,
    pub name: String,
    pub running: bool,
}

/// What a command run by [`Engine::exec_capture`] printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    /// Standard output, at most the `limit` given (the start of it).
    pub stdout: Vec<u8>,
    /// Standard error, at most the `limit` given (the end of it).
    pub stderr: Vec<u8>,
    /// Whether output was cut to the limit.
    pub truncated: bool,
}

/// A command whose standard output is read as a stream ([`Engine::exec_stream`]): read chunks
/// with [`ExecStream::next_stdout`] until `None`, then [`ExecStream::finish`] for the exit code.
/// Standard error is kept on the side (the last [`STDERR_TAIL`] bytes).
pub struct ExecStream {
    engine: Engine,
    exec_id: String,
    op: String,
    output: std::pin::Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
    stderr: Vec<u8>,
    /// Bytes of standard output read so far.
    pub stdout_bytes: u64,
}

impl std::fmt::Debug for ExecStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecStream")
            .field("op", &self.op)
            .field("stdout_bytes", &self.stdout_bytes)
            .finish()
    }
}

impl ExecStream {
    /// The next chunk of standard output; `None` when the command closed its output (it has
    /// usually exited then). Standard error seen on the way is kept for [`ExecStream::stderr`].
    pub async fn next_stdout(&mut self) -> Option<Result<Bytes, DockerError>> {
        loop {
            match self.output.next().await? {
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    self.stdout_bytes += message.len() as u64;
                    return Some(Ok(message));
                }
                Ok(LogOutput::StdErr { message }) => push_tail(&mut self.stderr, &message),
                Ok(LogOutput::StdIn { .. }) => {}
                Err(e) => return Some(Err(self.engine.err(self.op.clone(), e))),
            }
        }
    }

    /// The end of standard error so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Reads what is left of the output (discarding standard output) and returns the exit
    /// code. Requests: 1 (inspect), plus polls while the Engine still reports it running.
    pub async fn finish(mut self) -> Result<i64, DockerError> {
        while let Some(chunk) = self.next_stdout().await {
            chunk?;
        }
        exit_code(&self.engine, &self.exec_id, &self.op).await
    }
}

/// Appends `chunk` to `buf`, keeping the last [`STDERR_TAIL`] bytes.
fn push_tail(buf: &mut Vec<u8>, chunk: &[u8]) {
    buf.extend_from_slice(chunk);
    if buf.len() > STDERR_TAIL {
        let cut = buf.len() - STDERR_TAIL;
        buf.drain(..cut);
    }
}

/// The exit code of a finished exec. The output can close a moment before the Engine records
/// the exit: poll briefly (up to 5 s) while it says running.
async fn exit_code(engine: &Engine, exec_id: &str, op: &str) -> Result<i64, DockerError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let inspected = engine
            .docker
            .inspect_exec(exec_id)
            .await
            .map_err(|e| engine.err(op.to_string(), e))?;
        if inspected.running != Some(true) || tokio::time::Instant::now() >= deadline {
            return Ok(inspected.exit_code.unwrap_or(-1));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Engine {
    /// Every container of this instance's `stack/service` (replicas, stopped ones too), by
    /// name; a replacement's old container (`-berth-old`) is left out. Requests: 1.
    pub async fn service_containers(
        &self,
        service: &ServiceRef,
    ) -> Result<Vec<ServiceContainer>, DockerError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{}=true", labels::MANAGED),
                format!("{}={}", labels::INSTANCE, self.instance),
                format!("{}={}", labels::STACK, service.stack),
                format!("{}={}", labels::SERVICE, service.service),
            ],
        )]);
        self.list_containers_filtered(filters, &format!("list the containers of {service}"))
            .await
    }

    /// The running container of this instance's `stack/service` (the first replica by name
    /// when there are several), by its labels. Not running or not there is
    /// [`DockerError::NotFound`] naming the service. Requests: 1.
    pub async fn service_container(&self, service: &ServiceRef) -> Result<String, DockerError> {
        let all = self.service_containers(service).await?;
        match all.iter().find(|c| c.running) {
            Some(c) => Ok(c.id.clone()),
            None => Err(DockerError::NotFound {
                op: format!("find the container of {service}"),
                message: if all.is_empty() {
                    "the service has no container (is its stack applied?)".to_string()
                } else {
                    "the service's container is not running".to_string()
                },
            }),
        }
    }

    /// Every container (any owner) that mounts the named volume `name`. Requests: 1.
    pub async fn volume_users(&self, name: &str) -> Result<Vec<ServiceContainer>, DockerError> {
        let filters = HashMap::from([("volume".to_string(), vec![name.to_string()])]);
        self.list_containers_filtered(filters, &format!("list the users of volume {name}"))
            .await
    }

    /// Whether the named volume exists. Requests: 1.
    pub async fn volume_exists(&self, name: &str) -> Result<bool, DockerError> {
        Ok(self.volume_mountpoint(name).await?.is_some())
    }

    /// Where the named volume's data is on the Engine's host (`/var/lib/docker/volumes/x/_data`
    /// for the local driver); `None` when the volume does not exist. Requests: 1.
    pub async fn volume_mountpoint(&self, name: &str) -> Result<Option<String>, DockerError> {
        match self.docker.inspect_volume(name).await {
            Ok(v) => Ok(Some(v.mountpoint)),
            Err(e) => match self.err(format!("inspect volume {name}"), e) {
                DockerError::NotFound { .. } => Ok(None),
                e => Err(e),
            },
        }
    }

    async fn list_containers_filtered(
        &self,
        filters: HashMap<String, Vec<String>>,
        op: &str,
    ) -> Result<Vec<ServiceContainer>, DockerError> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.err(op.to_string(), e))?;
        let mut out: Vec<ServiceContainer> = list
            .into_iter()
            .filter_map(|c| {
                let name = c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default();
                let running = matches!(
                    c.state,
                    Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                );
                Some(ServiceContainer {
                    id: c.id?,
                    name,
                    running,
                })
            })
            .filter(|c| !c.name.ends_with(OLD_SUFFIX))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Runs `cmd` in the running container `id` and waits for it, at most `timeout`: its exit
    /// code and output (each stream kept up to `limit` bytes). A command still running at the
    /// timeout is [`DockerError::Timeout`] (the Engine offers no way to stop an exec: the
    /// process is left to finish in the container). Requests: 3.
    pub async fn exec_capture(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
        limit: usize,
    ) -> Result<ExecOutput, DockerError> {
        let op = format!("exec {:?} in {}", cmd, short(id));
        let run = async {
            let mut stream = self.exec_stream(id, cmd).await?;
            let mut stdout = Vec::new();
            let mut truncated = false;
            while let Some(chunk) = stream.next_stdout().await {
                let chunk = chunk?;
                let room = limit.saturating_sub(stdout.len());
                truncated |= chunk.len() > room;
                stdout.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            let mut stderr = std::mem::take(&mut stream.stderr);
            if stderr.len() > limit {
                truncated = true;
                stderr.drain(..stderr.len() - limit);
            }
            let exit_code = stream.finish().await?;
            Ok(ExecOutput {
                exit_code,
                stdout,
                stderr,
                truncated,
            })
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| DockerError::Timeout { op: op.clone() })?
    }

    /// Creates and starts `cmd` in the running container `id` through `docker` (the Engine's
    /// client, or a clone with a longer timeout), standard output and error attached: the
    /// exec's id and its output. Requests: 2.
    pub(super) async fn attach_exec(
        &self,
        docker: &bollard::Docker,
        id: &str,
        cmd: &[String],
        op: &str,
    ) -> Result<(String, ExecOutputStream), DockerError> {
        let created = docker
            .create_exec(
                id,
                CreateExecOptions {
                    cmd: Some(cmd.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.err(op, e))?;
        let output: ExecOutputStream = match docker
            .start_exec(&created.id, None)
            .await
            .map_err(|e| self.err(op, e))?
        {
            StartExecResults::Attached { output, .. } => output,
            StartExecResults::Detached => Box::pin(futures_util::stream::empty()),
        };
        Ok((created.id, output))
    }

    /// Starts `cmd` in the running container `id` with its standard output as a stream of
    /// bytes (binary safe; nothing is buffered beyond a chunk). No timeout: the caller bounds
    /// it. Requests: 2 now, 1 more in [`ExecStream::finish`].
    pub async fn exec_stream(&self, id: &str, cmd: &[String]) -> Result<ExecStream, DockerError> {
        let op = format!("exec {:?} in {}", cmd, short(id));
        let (exec_id, output) = self.attach_exec(&self.docker, id, cmd, &op).await?;
        Ok(ExecStream {
            engine: self.clone(),
            exec_id,
            op,
            output,
            stderr: Vec::new(),
            stdout_bytes: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_keeps_the_tail() {
        let mut buf = Vec::new();
        push_tail(&mut buf, &vec![b'a'; STDERR_TAIL]);
        push_tail(&mut buf, b"end");
        assert_eq!(buf.len(), STDERR_TAIL);
        assert!(buf.ends_with(b"aend"));
    }
}
