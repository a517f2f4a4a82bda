//! The one queue every trigger feeds: startup, poll, webhook and resync all push [`Work`]; the
//! reconcile loop takes it out one batch at a time. Bursts coalesce: however many pushes arrive
//! while a reconcile runs, the next batch holds at most one branch reconcile (the newest commit
//! wins) and one preview per pull request (its newest head wins).

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Why the tracked branch is being reconciled (for logs, metrics and statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    Startup,
    Poll,
    Webhook,
    /// The periodic resync: re-check the running state even if git did not move (drift repair).
    Resync,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Startup => "startup",
            Cause::Poll => "poll",
            Cause::Webhook => "webhook",
            Cause::Resync => "resync",
        }
    }
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Reconcile the tracked branch. `commit` is the commit a webhook announced (the loop still
    /// fetches and checks it is the branch head); `None` means "whatever the head is now".
    Branch {
        cause: Cause,
        commit: Option<String>,
    },
    /// Plan a pull request's head against what runs now and post the preview. `branch` is the
    /// PR's head branch, used when the remote has no `refs/pull/<number>/head` (a plain git
    /// server rather than GitHub) and only if that branch points at `head`.
    Preview {
        number: u64,
        head: String,
        branch: Option<String>,
    },
    /// The pull request was closed: finalise its preview status.
    PreviewClosed { number: u64, head: String },
}

/// What the loop takes out in one go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The strongest cause and the newest announced commit, if any branch work was pushed.
    pub branch: Option<(Cause, Option<String>)>,
    /// Pull request number → its newest state.
    pub previews: BTreeMap<u64, PreviewWork>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.branch.is_none() && self.previews.is_empty()
    }
}

/// The newest thing known about one pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewWork {
    pub head: String,
    pub branch: Option<String>,
    pub closed: bool,
}

/// A coalescing queue: push never blocks and never grows beyond one branch entry and one entry
/// per open pull request.
#[derive(Debug, Default)]
pub struct Queue {
    pending: Mutex<Batch>,
    notify: Notify,
}

impl Queue {
    pub fn new() -> Queue {
        Queue::default()
    }

    /// Add work; returns at once.
    pub fn push(&self, work: Work) {
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match work {
                Work::Branch { cause, commit } => {
                    let (old_cause, old_commit) = p.branch.take().unwrap_or((cause, None));
                    // A webhook/poll commit is newer than whatever was queued before it.
                    let commit = commit.or(old_commit);
                    p.branch = Some((old_cause.max(cause), commit));
                }
                Work::Preview {
                    number,
                    head,
                    branch,
                } => {
                    let closed = false;
                    p.previews.insert(
                        number,
                        PreviewWork {
                            head,
                            branch,
                            closed,
                        },
                    );
                }
                Work::PreviewClosed { number, head } => {
                    let (branch, closed) = (None, true);
                    p.previews.insert(
                        number,
                        PreviewWork {
                            head,
                            branch,
                            closed,
                        },
                    );
                }
            }
        }
        self.notify.notify_one();
    }

    /// Wait for work and take all of it.
    pub async fn next(&self) -> Batch {
        loop {
            let notified = self.notify.notified();
            {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if !p.is_empty() {
                    return std::mem::take(&mut *p);
                }
            }
            notified.await;
        }
    }

    /// Take whatever is pending without waiting (empty when nothing is).
    pub fn take(&self) -> Batch {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_pushes_coalesces_into_one_batch_newest_commit_wins() {
        let q = Queue::new();
        for i in 0..100 {
            q.push(Work::Branch {
                cause: Cause::Webhook,
                commit: Some(format!("c{i}")),
            });
        }
        q.push(Work::Preview {
            number: 7,
            head: "a".into(),
            branch: None,
        });
        q.push(Work::Preview {
            number: 7,
            head: "b".into(),
            branch: Some("feature".into()),
        });
        let batch = q.next().await;
        assert_eq!(batch.branch, Some((Cause::Webhook, Some("c99".into()))));
        let newest = &batch.previews[&7];
        assert_eq!((newest.head.as_str(), newest.closed), ("b", false));
        assert_eq!(newest.branch.as_deref(), Some("feature"));
        assert!(q.take().is_empty());
    }

    #[tokio::test]
    async fn next_waits_for_a_push() {
        let q = std::sync::Arc::new(Queue::new());
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.next().await });
        tokio::task::yield_now().await;
        q.push(Work::Branch {
            cause: Cause::Poll,
            commit: None,
        });
        let batch = waiter.await.unwrap();
        assert_eq!(batch.branch, Some((Cause::Poll, None)));
    }
}
