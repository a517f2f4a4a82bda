//! Telling a running container that its configuration changed, without recreating it: a
//! signal or a command (`x-berth: on_config_change`).

use bollard::query_parameters::KillContainerOptions;
use futures_util::StreamExt;

use super::ops::short;
use super::{DockerError, Engine};

/// At most this much of a reload command's output is kept for the error message.
const OUTPUT_MAX: usize = 4096;

impl Engine {
    /// Sends `signal` (`SIGHUP`, `HUP` or a number) to the container. Requests: 1.
    pub async fn signal(&self, id: &str, signal: &str) -> Result<(), DockerError> {
        self.docker
            .kill_container(
                id,
                Some(KillContainerOptions {
                    signal: signal.to_string(),
                }),
            )
            .await
            .map_err(|e| self.err(format!("send {signal} to {}", short(id)), e))
    }

    /// Runs `cmd` in the container and waits for it: its exit code and (the start of) its
    /// output. Requests: 3.
    pub async fn exec(&self, id: &str, cmd: &[String]) -> Result<(i64, String), DockerError> {
        let op = format!("exec {:?} in {}", cmd, short(id));
        let (exec_id, mut stream) = self.attach_exec(&self.docker, id, cmd, &op).await?;
        let mut output = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.err(op.clone(), e))?;
            if output.len() < OUTPUT_MAX {
                output.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        }
        let inspected = self
            .docker
            .inspect_exec(&exec_id)
            .await
            .map_err(|e| self.err(op, e))?;
        let mut cut = OUTPUT_MAX.min(output.len());
        while !output.is_char_boundary(cut) {
            cut -= 1;
        }
        output.truncate(cut);
        Ok((inspected.exit_code.unwrap_or(-1), output))
    }
}
