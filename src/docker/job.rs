//! Jobs on the Engine: the running container of a stack's service (by berth's labels), a
//! command run in it with its output captured and a timeout, and one-off job containers.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{CreateContainerOptions, LogsOptions, StartContainerOptions};
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::ops::short;
use super::{DockerError, Engine};
use crate::model::jobs::{ContainerTask, MountSource};
use crate::model::{ContainerState, labels};

/// The label on a job's one-off container (the job's name). Such a container carries
/// `io.berth.instance` but not `io.berth.managed`: it is no stack's, and the planner leaves it
/// alone; the runner removes it.
pub const JOB_LABEL: &str = "io.berth.job";

/// The last bytes of a command's output (stdout and stderr as they came).
#[derive(Debug, Clone, Default)]
pub struct Tail {
    max: usize,
    buf: Vec<u8>,
    /// Bytes dropped from the front.
    pub dropped: u64,
}

impl Tail {
    pub fn new(max: usize) -> Tail {
        Tail {
            max,
            buf: Vec::new(),
            dropped: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.max {
            let cut = self.buf.len() - self.max;
            self.buf.drain(..cut);
            self.dropped += cut as u64;
        }
    }

    /// The text, starting at a line when bytes were dropped.
    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        if self.dropped > 0 {
            match text.find('\n') {
                Some(i) => text[i + 1..].to_string(),
                None => text,
            }
        } else {
            text
        }
    }
}

/// How a command or job container ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// `None` when it was killed at the timeout or stopped.
    pub exit_code: Option<i64>,
    pub timed_out: bool,
    /// Stopped through `stop` (`concurrency: replace`).
    pub stopped: bool,
    pub output: Tail,
}

impl Engine {
    /// Runs `cmd` in the container, its output into a tail of `max_output` bytes; at `timeout`
    /// the command's process is killed (SIGKILL, by its host pid) and the run is timed out.
    /// `on_pid` hears the command's host pid once it runs. Requests: 4 or more (the pid is polled
    /// for a moment), and 1 more at a timeout.
    pub async fn exec_job(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
        stop: &Notify,
        max_output: usize,
        on_pid: &(dyn Fn(i64) + Sync),
    ) -> Result<Finished, DockerError> {
        let op = format!(
            "exec {:?} in {}",
            cmd.first().map(String::as_str).unwrap_or(""),
            short(id)
        );
        let docker = self
            .docker
            .clone()
            .with_timeout(timeout + Duration::from_secs(60));
        let (exec_id, mut s) = self.attach_exec(&docker, id, cmd, &op).await?;
        let mut output = Tail::new(max_output);
        // Its host pid, for a stop from another berth process: asked beside the output until
        // the process runs (the Engine reports 0 for a moment) or has ended.
        let probe = async {
            for _ in 0..40 {
                match docker.inspect_exec(&exec_id).await {
                    Ok(i) => {
                        if let Some(pid) = i.pid.filter(|p| *p > 0) {
                            on_pid(pid);
                            return;
                        }
                        if i.running == Some(false) {
                            return;
                        }
                    }
                    Err(_) => return,
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let read = async {
            while let Some(chunk) = s.next().await {
                match chunk {
                    Ok(c) => output.push(&c.into_bytes()),
                    Err(e) => return Err(self.err(op.clone(), e)),
                }
            }
            Ok(())
        };
        let read = async { futures_util::future::join(read, probe).await.0 };
        let ended = until(read, timeout, stop).await?;
        if ended != End::Exited {
            let inspected = docker
                .inspect_exec(&exec_id)
                .await
                .map_err(|e| self.err(op.clone(), e))?;
            if let Some(pid) = inspected.pid.filter(|p| *p > 0) {
                crate::host::process::kill(pid);
            }
        }
        if ended != End::Exited {
            return Ok(Finished {
                exit_code: None,
                timed_out: ended == End::TimedOut,
                stopped: ended == End::Stopped,
                output,
            });
        }
        let inspected = docker
            .inspect_exec(&exec_id)
            .await
            .map_err(|e| self.err(op, e))?;
        Ok(Finished {
            exit_code: inspected.exit_code,
            timed_out: false,
            stopped: false,
            output,
        })
    }

    /// Runs a job's one-off container: create (`<instance>-job-<job>-<run>`, labelled
    /// [`JOB_LABEL`]), start, follow its output until it exits or `timeout` passes, remove it.
    /// The image must be present. Requests: 5 or so.
    pub async fn run_job_container(
        &self,
        job: &str,
        run: u64,
        task: &ContainerTask,
        timeout: Duration,
        stop: &Notify,
        max_output: usize,
    ) -> Result<Finished, DockerError> {
        let name = job_container_name(&self.instance, job, run);
        let op = format!("job container {name}");
        let mut labels = HashMap::from([
            (labels::INSTANCE.to_string(), self.instance.clone()),
            (JOB_LABEL.to_string(), job.to_string()),
        ]);
        labels.insert("io.berth.run".to_string(), run.to_string());
        let mounts = task
            .volumes
            .iter()
            .map(|m| Mount {
                target: Some(m.target.clone()),
                source: Some(match &m.source {
                    MountSource::Volume(v) => v.engine_name.clone(),
                    MountSource::Host(p) => p.display().to_string(),
                }),
                typ: Some(match &m.source {
                    MountSource::Volume(_) => MountType::VOLUME,
                    MountSource::Host(_) => MountType::BIND,
                }),
                read_only: Some(m.read_only),
                ..Default::default()
            })
            .collect();
        let env = task
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={}", v.expose()))
            .collect();
        let body = ContainerCreateBody {
            image: Some(task.image.clone()),
            cmd: (!task.command.is_empty()).then(|| task.command.clone()),
            env: Some(env),
            labels: Some(labels),
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                network_mode: task.networks.first().cloned(),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    platform: String::new(),
                }),
                body,
            )
            .await
            .map_err(|e| self.err(op.clone(), e))?;
        let result = self
            .follow_job_container(&name, task, timeout, stop, max_output)
            .await;
        // Always removed, whatever happened (force: kills it when it still runs).
        let removed = self.remove(&name).await;
        let finished = result?;
        removed?;
        Ok(finished)
    }

    async fn follow_job_container(
        &self,
        name: &str,
        task: &ContainerTask,
        timeout: Duration,
        stop: &Notify,
        max_output: usize,
    ) -> Result<Finished, DockerError> {
        let op = format!("job container {name}");
        for net in task.networks.iter().skip(1) {
            self.docker
                .connect_network(
                    net,
                    bollard::models::NetworkConnectRequest {
                        container: name.to_string(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| self.err(format!("{op}: connect to network {net}"), e))?;
        }
        self.docker
            .start_container(name, None::<StartContainerOptions>)
            .await
            .map_err(|e| self.err(op.clone(), e))?;
        let docker = self
            .docker
            .clone()
            .with_timeout(timeout + Duration::from_secs(60));
        let mut output = Tail::new(max_output);
        let mut logs = docker.logs(
            name,
            Some(LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        let read = async {
            while let Some(chunk) = logs.next().await {
                match chunk {
                    Ok(c) => output.push(&c.into_bytes()),
                    Err(e) => return Err(self.err(op.clone(), e)),
                }
            }
            Ok(())
        };
        let ended = until(read, timeout, stop).await?;
        if ended != End::Exited {
            return Ok(Finished {
                exit_code: None,
                timed_out: ended == End::TimedOut,
                stopped: ended == End::Stopped,
                output,
            });
        }
        // The log stream ends when the container stops; its exit code.
        let mut exit_code = None;
        for _ in 0..50 {
            match self.inspect_state(name).await?.0 {
                ContainerState::Exited(code) => {
                    exit_code = Some(code);
                    break;
                }
                ContainerState::Dead => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        Ok(Finished {
            exit_code,
            timed_out: false,
            stopped: false,
            output,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Exited,
    TimedOut,
    Stopped,
}

/// Waits for `read` (the output stream to its end), the timeout or `stop`, whichever first.
async fn until(
    read: impl std::future::Future<Output = Result<(), DockerError>>,
    timeout: Duration,
    stop: &Notify,
) -> Result<End, DockerError> {
    tokio::select! {
        r = read => r.map(|()| End::Exited),
        _ = tokio::time::sleep(timeout) => Ok(End::TimedOut),
        _ = stop.notified() => Ok(End::Stopped),
    }
}

/// `<instance>-job-<job>-<run>`, the job's `/` as `-`.
pub fn job_container_name(instance: &str, job: &str, run: u64) -> String {
    let job: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("berth-{instance}-job-{job}-{run}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_bytes_from_a_line_start() {
        let mut t = Tail::new(10);
        t.push(b"first line\nsecond\nthird\n");
        assert_eq!(t.text(), "third\n");
        let mut t = Tail::new(100);
        t.push(b"all\n");
        assert_eq!(t.text(), "all\n");
    }

    #[test]
    fn job_container_names_are_engine_names() {
        assert_eq!(
            job_container_name("default", "nightly/check", 7),
            "berth-default-job-nightly-check-7"
        );
    }
}
