//! Pulling images.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;

use super::error::pull_cause_transient;
use super::{DockerError, Engine, normalize_image_ref};

impl Engine {
    /// Pulls `image`, reporting progress lines. Requests: 1 (streamed). A failure names the
    /// image and the cause ([`DockerError::Pull`]).
    pub async fn pull(
        &self,
        image: &str,
        mut progress: impl FnMut(&str),
    ) -> Result<(), DockerError> {
        let reference = normalize_image_ref(image);
        let pull_err = |cause: String, transient: bool| DockerError::Pull {
            image: image.to_string(),
            cause,
            transient,
        };
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(reference.clone()),
                ..Default::default()
            }),
            None,
            None,
        );
        let mut last: HashMap<String, (String, i64)> = HashMap::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    let status = info.status.unwrap_or_default();
                    let id = info.id.unwrap_or_default();
                    let (cur, total) = info
                        .progress_detail
                        .map(|p| (p.current.unwrap_or(0), p.total.unwrap_or(0)))
                        .unwrap_or((0, 0));
                    // Report each status change per layer, and progress in 10% steps.
                    let bucket = if total > 0 { cur * 10 / total } else { -1 };
                    let key = (status.clone(), bucket);
                    if last.get(&id) == Some(&key) {
                        continue;
                    }
                    last.insert(id.clone(), key);
                    let mut line = String::new();
                    if !id.is_empty() {
                        line.push_str(&id);
                        line.push_str(": ");
                    }
                    line.push_str(&status);
                    if total > 0 {
                        line.push_str(&format!(" {}/{}", human_bytes(cur), human_bytes(total)));
                    }
                    if !line.is_empty() {
                        progress(&line);
                    }
                }
                Err(BollardError::DockerStreamError { error }) => {
                    let transient = pull_cause_transient(&error);
                    return Err(pull_err(error, transient));
                }
                Err(e) => {
                    let e = self.err(format!("pull {reference}"), e);
                    let (cause, transient) = match &e {
                        DockerError::NotFound { message, .. }
                        | DockerError::Rejected { message, .. }
                        | DockerError::Conflict { message, .. } => (message.clone(), false),
                        DockerError::Server { message, .. } => {
                            (message.clone(), pull_cause_transient(message))
                        }
                        DockerError::Unreachable { .. } => return Err(e),
                        other => (other.to_string(), other.is_transient()),
                    };
                    return Err(pull_err(cause, transient));
                }
            }
        }
        Ok(())
    }
}

fn human_bytes(n: i64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1}GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1}MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}kB", n / 1e3)
    } else {
        format!("{n}B")
    }
}
