//! One-off containers (a restic run, a `kind: Job` container task): created, attached (output,
//! optionally standard input), started, waited for and always removed.
//!
//! They carry `io.berth.instance` and [`ONEOFF_LABEL`] but not `io.berth.managed`: the
//! planner never sees them as a stack's containers.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, RemoveContainerOptions, StartContainerOptions,
    WaitContainerOptions,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::ops::short;
use super::{DockerError, Engine};
use crate::model::labels;

/// The label on one-off containers: what runs in them (`backup/nightly`, `job/vacuum`).
pub const ONEOFF_LABEL: &str = "io.berth.oneoff";

/// A mount of a one-off container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOffMount {
    /// A host path (bind) or a named volume's Engine name.
    pub source: String,
    pub target: String,
    pub read_only: bool,
    /// `source` is a named volume (else a host path, which must exist).
    pub volume: bool,
}

/// What to run.
#[derive(Clone, Default)]
pub struct OneOff {
    pub image: String,
    /// Arguments after the image's entrypoint.
    pub cmd: Vec<String>,
    /// `KEY=VALUE`: may hold secrets; never logged here.
    pub env: Vec<String>,
    pub mounts: Vec<OneOffMount>,
    /// The value of [`ONEOFF_LABEL`].
    pub what: String,
    /// `host`, `none`, a network name; `None`: the Engine's default bridge.
    pub network_mode: Option<String>,
    /// `uid[:gid]` or a name; `None`: the image's user.
    pub user: Option<String>,
    /// Keep standard input open (write it with [`OneOffRun::stdin`]).
    pub stdin: bool,
}

impl std::fmt::Debug for OneOff {
    /// Without `env` (secrets).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneOff")
            .field("image", &self.image)
            .field("cmd", &self.cmd)
            .field("mounts", &self.mounts)
            .field("what", &self.what)
            .finish()
    }
}

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// A started one-off container. Read its output with [`OneOffRun::next_output`], feed its
/// input with [`OneOffRun::stdin`], then [`OneOffRun::wait`]. [`OneOffRun::remove`] removes it;
/// if the run is dropped first (a timeout, a panic), removal is spawned on the runtime.
pub struct OneOffRun {
    engine: Engine,
    pub id: String,
    output: Option<Output>,
    input: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    removed: bool,
}

/// One piece of a one-off container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Stdout(Bytes),
    Stderr(Bytes),
}

impl Engine {
    /// Creates, attaches to and starts a one-off container (pulling its image first when the
    /// Engine does not have it). On a failure after create, the container is removed.
    /// Requests: 3 (create, attach, start), 2 more for a pull.
    pub async fn run_oneoff(&self, spec: &OneOff) -> Result<OneOffRun, DockerError> {
        let op = format!("run {} ({})", spec.image, spec.what);
        let mounts = spec
            .mounts
            .iter()
            .map(|m| Mount {
                target: Some(m.target.clone()),
                source: Some(m.source.clone()),
                typ: Some(if m.volume {
                    MountType::VOLUME
                } else {
                    MountType::BIND
                }),
                read_only: Some(m.read_only),
                ..Default::default()
            })
            .collect();
        let labels = BTreeMap::from([
            (labels::INSTANCE.to_string(), self.instance.clone()),
            (ONEOFF_LABEL.to_string(), spec.what.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(spec.cmd.clone()),
            env: Some(spec.env.clone()),
            user: spec.user.clone(),
            labels: Some(labels.into_iter().collect()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            attach_stdin: Some(spec.stdin),
            open_stdin: Some(spec.stdin),
            stdin_once: Some(spec.stdin),
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                network_mode: spec.network_mode.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = match self
            .docker
            .create_container(None::<CreateContainerOptions>, body.clone())
            .await
        {
            Ok(c) => c,
            // The image is not here yet: pull it once, then create again.
            Err(e) => match self.err(op.clone(), e) {
                DockerError::NotFound { .. } => {
                    self.pull(&spec.image, |_| {}).await?;
                    self.docker
                        .create_container(None::<CreateContainerOptions>, body)
                        .await
                        .map_err(|e| self.err(op.clone(), e))?
                }
                e => return Err(e),
            },
        };
        let mut run = OneOffRun {
            engine: self.clone(),
            id: created.id,
            output: None,
            input: None,
            removed: false,
        };
        let attached = self
            .docker
            .attach_container(
                &run.id,
                Some(AttachContainerOptions {
                    stream: true,
                    stdin: spec.stdin,
                    stdout: true,
                    stderr: true,
                    logs: false,
                    detach_keys: None,
                }),
            )
            .await;
        let attached = match attached {
            Ok(a) => a,
            Err(e) => {
                let err = self.err(op, e);
                run.remove().await;
                return Err(err);
            }
        };
        run.output = Some(attached.output);
        if spec.stdin {
            run.input = Some(attached.input);
        }
        if let Err(e) = self
            .docker
            .start_container(&run.id, None::<StartContainerOptions>)
            .await
        {
            let err = self.err(op, e);
            run.remove().await;
            return Err(err);
        }
        Ok(run)
    }
}

impl OneOffRun {
    /// The next piece of output; `None` once the container closed its output.
    pub async fn next_output(&mut self) -> Option<Result<Chunk, DockerError>> {
        let output = self.output.as_mut()?;
        loop {
            match output.next().await? {
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    return Some(Ok(Chunk::Stdout(message)));
                }
                Ok(LogOutput::StdErr { message }) => return Some(Ok(Chunk::Stderr(message))),
                Ok(LogOutput::StdIn { .. }) => {}
                Err(e) => {
                    let op = format!("read the output of {}", short(&self.id));
                    return Some(Err(self.engine.err(op, e)));
                }
            }
        }
    }

    /// Takes the container's standard input (when it was asked for), to write it beside
    /// reading the output. Shutting it down is end of file for the container.
    pub fn take_stdin(&mut self) -> Option<Pin<Box<dyn AsyncWrite + Send>>> {
        self.input.take()
    }

    /// Writes to the container's standard input (when it was asked for).
    pub async fn write_stdin(&mut self, data: &[u8]) -> Result<(), DockerError> {
        let Some(input) = self.input.as_mut() else {
            return Err(DockerError::Invalid {
                op: format!("write to {}", short(&self.id)),
                message: "the container's standard input is not open".into(),
            });
        };
        input.write_all(data).await.map_err(|e| DockerError::Other {
            op: format!("write to the standard input of {}", short(&self.id)),
            cause: e.to_string(),
        })
    }

    /// Closes standard input (the container reads end of file).
    pub async fn close_stdin(&mut self) -> Result<(), DockerError> {
        if let Some(mut input) = self.input.take() {
            input.flush().await.ok();
            input.shutdown().await.map_err(|e| DockerError::Other {
                op: format!("close the standard input of {}", short(&self.id)),
                cause: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Waits for the container to exit: its exit code. Requests: 1.
    pub async fn wait(&mut self) -> Result<i64, DockerError> {
        let op = format!("wait for {}", short(&self.id));
        let docker = self
            .engine
            .docker
            .clone()
            .with_timeout(Duration::from_secs(120));
        let mut s = docker.wait_container(
            &self.id,
            Some(WaitContainerOptions {
                condition: "not-running".to_string(),
            }),
        );
        match s.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(self.engine.err(op, e)),
            None => Err(DockerError::Other {
                op,
                cause: "the Engine ended the wait without an exit code".into(),
            }),
        }
    }

    /// Kills the container (it is removed by [`OneOffRun::remove`] or on drop). Requests: 1.
    pub async fn kill(&self) {
        let _ = self.engine.signal(&self.id, "KILL").await;
    }

    /// Removes the container (killing it if it still runs). Best effort: a failure is logged.
    /// Requests: 1.
    pub async fn remove(&mut self) {
        self.removed = true;
        remove(&self.engine, &self.id).await;
    }
}

async fn remove(engine: &Engine, id: &str) {
    let r = engine
        .docker
        .remove_container(
            id,
            Some(RemoveContainerOptions {
                v: true,
                force: true,
                link: false,
            }),
        )
        .await;
    if let Err(e) = r {
        let e = engine.err(format!("remove one-off container {}", short(id)), e);
        if !e.is_not_found() {
            tracing::warn!("{e}");
        }
    }
}

impl Drop for OneOffRun {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let engine = self.engine.clone();
        let id = std::mem::take(&mut self.id);
        self.engine
            .spawn_cleanup("remove a one-off container", async move {
                remove(&engine, &id).await
            });
    }
}
