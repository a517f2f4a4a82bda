//! Pull-request previews: the PR's head is loaded and planned through the same pipeline as the
//! branch, and stops there. The plan is posted (status + one updated comment) with every value
//! of berth's environment hidden: a PR is untrusted input.

use std::collections::BTreeMap;

use super::daemon::{Daemon, prune_exports};
use super::error::ServeError;
use super::queue::PreviewWork;
use super::report::{self, Status};
use super::writeback::Post;
use crate::apply::ApplyOptions;
use crate::pipeline::{self, Mode};

impl Daemon {
    /// The commit to preview: GitHub's `refs/pull/<n>/head` (its newest head), else — on a git
    /// server without pull refs — the PR's head branch, but only while it points at the
    /// announced head (a fork's branch of the same name must not be mistaken for it).
    async fn fetch_pull(
        &mut self,
        number: u64,
        head: &str,
        branch: Option<&str>,
    ) -> Result<String, ServeError> {
        let pull_ref = format!("refs/pull/{number}/head");
        if let Some(c) = self.sync_ref(&pull_ref).await? {
            if c != head {
                tracing::info!(
                    pr = number,
                    announced = report::short(head),
                    head = report::short(&c),
                    "the pull request moved on: previewing its newest head"
                );
            }
            return Ok(c);
        }
        if let Some(branch) = branch {
            let branch_ref = format!("refs/heads/{branch}");
            if let Some(c) = self.sync_ref(&branch_ref).await? {
                if c == head {
                    return Ok(c);
                }
                return Err(ServeError::PullRef {
                    number,
                    detail: format!(
                        "{pull_ref} does not exist and {branch_ref} is at {}, not the announced head {}",
                        report::short(&c),
                        report::short(head)
                    ),
                });
            }
        }
        Err(ServeError::PullRef {
            number,
            detail: format!("neither {pull_ref} nor the head branch exists on the remote"),
        })
    }

    /// Plan a pull request's head against what runs now; post the result. Nothing is applied.
    pub(super) async fn preview(
        &mut self,
        number: u64,
        work: &PreviewWork,
    ) -> Result<(), ServeError> {
        let (head, closed) = (work.head.as_str(), work.closed);
        let context = report::preview_context(&self.config.name);
        if closed {
            let last = self.state.get().previews.get(&number).cloned();
            let head = last.map(|l| l.head).unwrap_or_else(|| head.to_string());
            self.writeback.status(
                &head,
                Status {
                    context,
                    state: report::State::Success,
                    description: format!(
                        "pull request #{number} closed; nothing was applied from it"
                    ),
                    markdown: None,
                },
            );
            self.state.update(|s| {
                s.previews.remove(&number);
            });
            return Ok(());
        }
        self.writeback.status(
            head,
            Status {
                context: context.clone(),
                state: report::State::Pending,
                description: format!("planning #{number} at {}", report::short(head)),
                markdown: None,
            },
        );
        self.state
            .update(|s| s.previews.entry(number).or_default().head = head.to_string());
        let commit = self
            .fetch_pull(number, head, work.branch.as_deref())
            .await?;
        let export = self.export(&commit, "previews").await?;
        let loaded = self.load_export(&export).await?;
        let title = format!("berth preview of #{number} at {}", report::short(&commit));
        let (status, body) = match loaded {
            Err(lines) => {
                let first = lines.first().cloned().unwrap_or_default();
                (
                    Status {
                        context: context.clone(),
                        state: report::State::Failure,
                        description: format!("invalid: {first}"),
                        markdown: None,
                    },
                    report::markdown(
                        &title,
                        &format!(
                            "{} problem(s) in the manifests; nothing would be applied.",
                            lines.len()
                        ),
                        &format!("{}\n", lines.join("\n")),
                        &[],
                    ),
                )
            }
            Ok(desired) => {
                let engine = self.engine().await?;
                // The one pipeline, stopped after the plan: nothing from a PR is applied.
                let settings = pipeline::Options {
                    plan: self.plan_options(),
                    apply: ApplyOptions::default(),
                    state_dir: Some(self.config.state_dir.clone()),
                    commit: None,
                };
                let outcome = pipeline::reconcile(
                    &engine,
                    &desired,
                    &settings,
                    Mode::Plan,
                    &mut pipeline::Quiet,
                )
                .await?;
                let p = outcome.plan.unwrap_or_default();
                let text = crate::render::plan_text_by_group(&p);
                let summary = if p.errors.is_empty() {
                    if p.has_changes() {
                        format!("would apply: {}", p.summary())
                    } else {
                        "no changes".to_string()
                    }
                } else {
                    match p.withheld_groups() {
                        // Serve would apply the rest: say what it would hold back, and why.
                        Some(held) if !held.is_empty() => {
                            let groups: Vec<String> =
                                held.keys().map(ToString::to_string).collect();
                            format!(
                                "would withhold {} and apply the rest: {}",
                                groups.join(", "),
                                p.errors[0]
                            )
                        }
                        Some(_) => format!("would apply the rest: {}", p.errors[0]),
                        None => format!("cannot be applied: {}", p.errors[0]),
                    }
                };
                let state = if p.errors.is_empty() {
                    report::State::Success
                } else {
                    report::State::Failure
                };
                (
                    Status {
                        context: context.clone(),
                        state,
                        description: summary.clone(),
                        markdown: None,
                    },
                    report::markdown(
                        &title,
                        &format!("{summary}. Nothing is applied from a pull request."),
                        &text,
                        &[],
                    ),
                )
            }
        };
        // A PR is untrusted: hide every value of berth's environment it may have interpolated.
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let strict = super::redact::Redactor::every_value(&env);
        let body = strict.scrub(&body);
        let status = Status {
            description: strict.scrub(&status.description),
            markdown: Some(body.clone()),
            ..status
        };
        self.writeback.status(&commit, status);
        self.writeback.post(Post::Comment { pr: number, body });
        prune_exports(&self.config.state_dir.join("previews"), &commit, 10);
        Ok(())
    }
}
