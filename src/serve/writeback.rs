//! Posting to GitHub, off the reconcile path: the loop hands statuses and comments to this task
//! through an unbounded channel and never waits. Identical statuses are never posted twice (per
//! commit and context, remembered in the state file); transient failures are retried with capped
//! exponential backoff; permanent ones are logged. A GitHub outage never blocks or fails an apply.

use std::sync::Arc;

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::mpsc;

use super::redact::Redactor;
use super::report::{self, Status};
use super::state::Shared;
use crate::github::{CheckConclusion, CheckRun, CheckStatus, GitHub, StatusState, StatusUpdate};

/// One thing to post.
#[derive(Debug, Clone)]
pub enum Post {
    Status {
        commit: String,
        status: Status,
    },
    /// The preview comment on a pull request (updated in place).
    Comment {
        pr: u64,
        body: String,
    },
}

/// The handle the loop posts through. Without GitHub settings, posts are only logged.
#[derive(Clone)]
pub struct Writeback {
    tx: Option<mpsc::UnboundedSender<Post>>,
}

impl Writeback {
    /// No write-back (a local repository): posts go to the log only.
    pub fn disabled() -> Writeback {
        Writeback { tx: None }
    }

    /// Start the posting task.
    pub fn start(
        github: GitHub,
        instance_name: String,
        target_url: Option<String>,
        state: Arc<Shared>,
        redactor: Redactor,
    ) -> (Writeback, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let worker = Worker {
            github,
            marker: report::comment_marker(&instance_name),
            target_url,
            state,
            redactor,
        };
        let handle = tokio::spawn(worker.run(rx));
        (Writeback { tx: Some(tx) }, handle)
    }

    pub fn post(&self, post: Post) {
        match (&self.tx, &post) {
            (Some(tx), _) => {
                // The receiver only goes away at shutdown; a post then is lost by design.
                let _ = tx.send(post);
            }
            (None, Post::Status { commit, status }) => tracing::info!(
                commit = report::short(commit),
                context = %status.context,
                state = status.state.as_str(),
                description = %status.description,
                "status (no GitHub write-back configured)"
            ),
            (None, Post::Comment { pr, .. }) => {
                tracing::info!(pr, "preview ready (no GitHub write-back configured)")
            }
        }
    }

    pub fn status(&self, commit: &str, status: Status) {
        self.post(Post::Status {
            commit: commit.to_string(),
            status,
        });
    }
}

struct Worker {
    github: GitHub,
    marker: String,
    target_url: Option<String>,
    state: Arc<Shared>,
    /// Applied to every text before it leaves for GitHub.
    redactor: Redactor,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Post>) {
        while let Some(post) = rx.recv().await {
            match post {
                // Scrub first, then cut: a secret straddling the cut would otherwise survive in
                // part, and a scrubbed text may have grown.
                Post::Status { commit, mut status } => {
                    status.description = report::truncate(
                        &self.redactor.scrub(&status.description),
                        report::DESCRIPTION_MAX,
                    );
                    status.markdown = status
                        .markdown
                        .map(|m| report::truncate_markdown(&self.redactor.scrub(&m)));
                    self.status(&commit, &status).await
                }
                Post::Comment { pr, body } => {
                    let body = report::truncate_markdown(&self.redactor.scrub(&body));
                    self.comment(pr, &body).await
                }
            }
        }
    }

    async fn status(&mut self, commit: &str, status: &Status) {
        let value = format!("{}: {}", status.state.as_str(), status.description);
        let fresh = self
            .state
            .update(|s| s.record_posted(commit, &status.context, &value));
        if !fresh {
            tracing::debug!(context = %status.context, "status unchanged: not posted again");
            return;
        }
        let result = if self.github.is_app() {
            self.check_run(commit, status).await
        } else {
            let update = StatusUpdate {
                state: match status.state {
                    report::State::Pending => StatusState::Pending,
                    report::State::Success => StatusState::Success,
                    report::State::Failure => StatusState::Failure,
                    report::State::Error => StatusState::Error,
                },
                context: status.context.clone(),
                description: status.description.clone(),
                target_url: self.target_url.clone(),
            };
            let gh = &self.github;
            (|| gh.create_status(commit, &update))
                .retry(backoff())
                .when(|e| e.is_transient())
                .notify(|e, after| {
                    tracing::warn!(error = %e, retry_in = ?after, "posting a status failed; retrying")
                })
                .await
        };
        match result {
            Ok(()) => {
                tracing::info!(
                    commit = report::short(commit),
                    context = %status.context,
                    state = status.state.as_str(),
                    "status posted"
                );
            }
            Err(e) => {
                // Forget it, so that the next identical status is tried again.
                self.state.update(|s| {
                    if let Some(m) = s.posted.get_mut(commit) {
                        m.remove(&status.context);
                    }
                });
                tracing::error!(error = %e, context = %status.context, "posting a status failed");
            }
        }
    }

    async fn check_run(
        &mut self,
        commit: &str,
        status: &Status,
    ) -> Result<(), crate::github::GitHubError> {
        let run = CheckRun {
            name: status.context.clone(),
            status: if status.state == report::State::Pending {
                CheckStatus::InProgress
            } else {
                CheckStatus::Completed
            },
            conclusion: match status.state {
                report::State::Pending => None,
                report::State::Success => Some(CheckConclusion::Success),
                report::State::Failure => Some(CheckConclusion::Failure),
                report::State::Error => Some(CheckConclusion::ActionRequired),
            },
            title: status.description.clone(),
            summary: status.description.clone(),
            text: status.markdown.clone(),
        };
        let known = self
            .state
            .get()
            .check_runs
            .get(commit)
            .and_then(|runs| runs.get(&status.context))
            .copied();
        let gh = &self.github;
        match known {
            Some(id) => {
                (|| gh.update_check_run(id, &run))
                    .retry(backoff())
                    .when(|e| e.is_transient())
                    .await
            }
            None => {
                let id = (|| gh.create_check_run(commit, &run))
                    .retry(backoff())
                    .when(|e| e.is_transient())
                    .await?;
                self.state.update(|s| {
                    s.check_runs
                        .entry(commit.to_string())
                        .or_default()
                        .insert(status.context.clone(), id);
                });
                Ok(())
            }
        }
    }

    async fn comment(&mut self, pr: u64, body: &str) {
        if self.github.is_app() {
            // A GitHub App shows the preview as the check run's output instead.
            tracing::debug!(pr, "App mode: the preview is the check run's output");
            return;
        }
        let body = format!("{}\n{body}", self.marker);
        let gh = &self.github;
        let marker = &self.marker;
        let result = (|| gh.upsert_comment(pr, marker, &body))
            .retry(backoff())
            .when(|e| e.is_transient())
            .await;
        match result {
            Ok(id) => {
                self.state
                    .update(|s| s.previews.entry(pr).or_default().comment_id = Some(id));
                tracing::info!(pr, comment = id, "preview comment posted");
            }
            Err(e) => tracing::error!(pr, error = %e, "posting the preview comment failed"),
        }
    }
}

fn backoff() -> ExponentialBuilder {
    super::retry::writeback()
}
