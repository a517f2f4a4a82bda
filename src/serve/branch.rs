//! Reconciling the tracked branch: git (ref look-up, fetch only if moved, force-push guard),
//! the per-commit config cache, then the one pipeline ([`crate::pipeline`]) with serve's seams —
//! pending statuses, the worktree, drift accounting, the state file and per-stack statuses.

use std::collections::BTreeMap;
use std::path::Path;

use super::daemon::{Daemon, Reconciled, blocking, observed_fingerprint, unix_now};
use super::error::ServeError;
use super::metrics::Metrics;
use super::queue::Cause;
use super::report::{self, StackOutcome, Status};
use super::state::{Failure, Found, InProgress, Shared, StackRecord};
use super::writeback::Writeback;
use crate::apply::{ApplyError, ApplyEvent, ApplyOptions};
use crate::model::{Desired, Observed};
use crate::pipeline::{self, Flow, Hooks, Mode};
use crate::plan::{Group, Plan};

/// serve's seams in the pipeline.
struct BranchHooks<'a> {
    head: &'a str,
    cause: Cause,
    new_commit: bool,
    retrying: bool,
    instance: &'a str,
    desired: &'a Desired,
    state: &'a Shared,
    writeback: &'a Writeback,
    metrics: &'a Metrics,
    found: &'a mut Found,
    state_dir: &'a Path,
    pending_posted: &'a mut Option<String>,
    context_name: &'a str,
    /// The failure recorded for this commit and config, if any.
    failed_here: Option<Failure>,
    /// Set when nothing changed since that failure: the reconcile stops before planning.
    unchanged_since_failure: bool,
    observed_fp: String,
    worktree: &'a Path,
    export: &'a Path,
    worktree_error: Option<ServeError>,
    log: Vec<String>,
}

impl Hooks for BranchHooks<'_> {
    fn observed(&mut self, observed: &Observed) -> Flow {
        if *self.found != Found::Existing {
            let owned = observed
                .containers
                .iter()
                .filter(|c| c.owned_by(self.instance))
                .count();
            if owned > 0 {
                tracing::warn!(
                    owned,
                    state = %self.state_dir.display(),
                    "berth's state was lost (no readable state.json) but the Engine holds containers it owns: re-deriving what it owns from their labels"
                );
            }
            *self.found = Found::Existing;
        }
        self.observed_fp = observed_fingerprint(observed, self.desired, self.instance);
        if self
            .failed_here
            .as_ref()
            .is_some_and(|f| f.observed == self.observed_fp)
        {
            tracing::debug!(
                commit = report::short(self.head),
                "failed before and nothing changed since"
            );
            self.unchanged_since_failure = true;
            return Flow::Stop;
        }
        Flow::Continue
    }

    fn planned(&mut self, plan: &Plan) -> Flow {
        if plan.errors.iter().any(|e| e.group().is_none()) {
            return Flow::Stop;
        }
        if let Err(e) = install_worktree(self.worktree, self.export, self.state_dir) {
            self.worktree_error = Some(e);
            return Flow::Stop;
        }
        if !plan.has_changes() {
            return Flow::Stop;
        }
        if plan
            .changes
            .iter()
            .flat_map(|c| &c.reasons)
            .any(|r| matches!(r, crate::plan::Reason::FirewallDrift { .. }))
        {
            self.metrics.firewall_drift_repaired();
        }
        let head = report::short(self.head);
        if self.retrying {
            // The plan was logged in full on the first attempt.
            tracing::debug!(commit = head, "retrying the apply: {}", plan.summary());
        } else if self.cause == Cause::Resync && !self.new_commit {
            self.metrics.drift_repaired(plan.changes.len() as u64);
            tracing::warn!(
                commit = head,
                "drift: the running state differs from the applied commit; repairing"
            );
            tracing::warn!("{}", crate::render::plan_text_by_group(plan).trim_end());
        } else {
            tracing::info!(commit = head, cause = self.cause.as_str(), "applying");
            tracing::info!("{}", crate::render::plan_text_by_group(plan).trim_end());
        }
        if self.new_commit && self.pending_posted.as_deref() != Some(self.head) {
            *self.pending_posted = Some(self.head.to_string());
            let by_group = report::split_by_group(plan);
            // Withheld groups are not applied: their status is the failure.
            let held = plan.withheld_groups().unwrap_or_default();
            let changing = by_group
                .iter()
                .filter(|(g, sub)| sub.has_changes() && !held.contains_key(*g));
            for (group, _) in changing {
                self.writeback.status(
                    self.head,
                    Status {
                        context: report::context(self.context_name, Some(group)),
                        state: report::State::Pending,
                        description: format!("applying {head}"),
                        markdown: None,
                    },
                );
            }
        }
        let commit = self.head.to_string();
        self.state.update(|s| {
            s.in_progress = Some(InProgress {
                commit,
                started_at: unix_now(),
            })
        });
        Flow::Continue
    }

    fn event(&mut self, event: ApplyEvent) {
        if self.retrying {
            tracing::debug!("{event}");
        } else {
            tracing::info!("{event}");
        }
        self.log.push(event.to_string());
    }
}

/// Make the stable worktree hold `export`'s files (synced in place: bind mounts of running
/// containers keep working). Old exports beyond the last few are removed.
pub(super) fn install_worktree(
    worktree: &Path,
    export: &Path,
    state_dir: &Path,
) -> Result<(), ServeError> {
    let marker = worktree.join(super::worktree::MARKER);
    let commit = export.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(commit) {
        return Ok(());
    }
    super::worktree::sync_tree(export, worktree)
        .and_then(|()| std::fs::write(&marker, commit))
        .map_err(ServeError::io("cannot update the worktree", worktree))?;
    super::daemon::prune_exports(&state_dir.join("trees"), commit, 5);
    Ok(())
}

impl Daemon {
    /// Reconcile the tracked branch.
    pub(super) async fn reconcile_branch(
        &mut self,
        cause: Cause,
        announced: Option<String>,
    ) -> Result<Reconciled, ServeError> {
        let refname = format!("refs/heads/{}", self.config.branch);
        let head = self
            .sync_ref(&refname)
            .await?
            .ok_or_else(|| ServeError::NoBranch {
                branch: self.config.branch.clone(),
                repo: crate::model::redact_url(&self.config.repo),
            })?;
        if let Some(a) = &announced
            && *a != head
        {
            tracing::info!(
                announced = report::short(a),
                head = report::short(&head),
                "the branch moved past the announced commit: reconciling the head"
            );
        }
        // Idle: the head is what the last reconcile looked at, and nobody asked to re-check the
        // running state (a resync or a retry does). One ref look-up, nothing else — so a burst
        // of webhooks for commits already behind the head costs nothing.
        if matches!(cause, Cause::Poll | Cause::Webhook)
            && self.last_seen.as_deref() == Some(head.as_str())
        {
            return Ok(Reconciled::Idle);
        }
        self.last_seen = Some(head.clone());
        let fingerprint = self.config.fingerprint();
        let state = self.state.get();

        // A commit that failed permanently with this config is not retried by a poll or a
        // webhook (no redeploy loop); a resync retries only if the Engine's state moved.
        let failed_here = state
            .failed
            .as_ref()
            .filter(|f| f.commit == head && f.config == fingerprint)
            .cloned();
        if failed_here.is_some() && cause != Cause::Resync && cause != Cause::Startup {
            tracing::debug!(
                commit = report::short(&head),
                "failed before; waiting for a change"
            );
            return Ok(Reconciled::Idle);
        }

        // Force pushes are refused unless allowed.
        if let Some(applied) = &state.applied_commit
            && *applied != head
            && !self.config.allow_non_fast_forward
        {
            let mirror = self.mirror().await?;
            let (a, h) = (applied.clone(), head.clone());
            let m = mirror.clone();
            let known = mirror.has_commit(applied);
            let fast_forward = !known || blocking(move || m.is_ancestor(&a, &h)).await?;
            if !fast_forward {
                let e = ServeError::ForcePush {
                    branch: self.config.branch.clone(),
                    from: report::short(applied).to_string(),
                    to: report::short(&head).to_string(),
                };
                return Err(self.fail_commit(&head, &fingerprint, "", e, &[]));
            }
        }

        let new_commit = state.applied_commit.as_deref() != Some(head.as_str());
        let (desired, export) = match self.load_commit(&head).await? {
            Ok(d) => d,
            Err(diags) => {
                tracing::error!(
                    commit = report::short(&head),
                    "invalid manifests:\n{}",
                    diags.join("\n")
                );
                let e = ServeError::InvalidManifests {
                    first: diags.first().cloned().unwrap_or_default(),
                    all: diags.clone(),
                };
                return Err(self.fail_commit(&head, &fingerprint, "", e, &diags));
            }
        };
        let engine = self.engine().await?;
        // Every stack gets a status; berth's own groups only when the config declares them
        // (or the plan has a change or an error in them, added below).
        let mut groups: Vec<Group> = desired.stacks.keys().map(Group::stack).collect();
        if !desired.host.is_empty() || desired.edge.firewall.is_some() {
            groups.push(Group::Host);
        }
        if desired.edge.proxy.is_some() {
            groups.push(Group::Proxy);
        }
        // A firewall change must leave this server's own HTTP port and its git remote
        // answering, or it is rolled back: the remote is asked for a ref through the mirror's
        // own transport (auth, proxies, timeouts), the real test of "berth can still pull".
        // A local remote (`file://`, a path) has no firewall in between: not checked.
        let remote = if crate::host::remote_is_local(&self.config.repo) {
            None
        } else {
            let m = self.mirror().await?;
            let branch = format!("refs/heads/{}", self.config.branch);
            Some(crate::apply::RemoteProbe(std::sync::Arc::new(move || {
                m.remote_ref(&branch).map(drop).map_err(|e| e.to_string())
            })))
        };
        let apply_opts = ApplyOptions {
            health_timeout: self.config.health_timeout,
            firewall_confirm: crate::apply::FirewallConfirm {
                listen: Some(self.config.listen),
                remote,
            },
            ..ApplyOptions::default()
        };
        let plan_opts = self.plan_options();
        // A retry of the same head: the first attempt logged the plan; this one stays quiet
        // (its failure is the one "retry scheduled" line).
        let retrying = self.retry.is_some()
            && (!new_commit || self.pending_posted.as_deref() == Some(head.as_str()));
        let state_dir = self.config.state_dir.clone();
        let mut hooks = BranchHooks {
            head: &head,
            cause,
            new_commit,
            retrying,
            instance: &self.config.instance,
            desired: &desired,
            state: &self.state,
            writeback: &self.writeback,
            metrics: &self.metrics,
            found: &mut self.found,
            state_dir: &state_dir,
            pending_posted: &mut self.pending_posted,
            context_name: &self.config.name,
            failed_here,
            unchanged_since_failure: false,
            observed_fp: String::new(),
            worktree: &self.worktree,
            export: &export,
            worktree_error: None,
            log: Vec::new(),
        };
        let settings = pipeline::Options {
            plan: plan_opts,
            apply: apply_opts,
            state_dir: Some(state_dir.clone()),
            commit: Some(head.clone()),
        };
        let outcome = pipeline::reconcile(
            &engine,
            &desired,
            &settings,
            Mode::ApplyHealthyStacks,
            &mut hooks,
        )
        .await?;
        let BranchHooks {
            unchanged_since_failure,
            observed_fp,
            worktree_error,
            log,
            ..
        } = hooks;
        if unchanged_since_failure {
            return Ok(Reconciled::Unchanged);
        }
        let Some(the_plan) = outcome.plan else {
            return Ok(Reconciled::Unchanged);
        };
        if let Some(e) = the_plan.errors.iter().find(|e| e.group().is_none()) {
            let e = ServeError::Plan(e.clone());
            return Err(self.fail_commit(&head, &fingerprint, &observed_fp, e, &[]));
        }
        if let Some(e) = worktree_error {
            return Err(e);
        }
        let by_group = report::split_by_group(&the_plan);
        for g in by_group.keys() {
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        if !the_plan.has_changes() && the_plan.errors.is_empty() {
            let outcomes: BTreeMap<Group, StackOutcome> = groups
                .iter()
                .map(|g| (g.clone(), StackOutcome::UpToDate))
                .collect();
            self.post_outcomes(&head, &outcomes, &the_plan, &[]);
            self.record_success(&head);
            return Ok(Reconciled::Unchanged);
        }

        let (outcomes, changed, transient) =
            group_outcomes(&groups, &by_group, outcome.applied.as_ref().map(|(_, r)| r));
        for (group, o) in &outcomes {
            if let StackOutcome::Failed { message } | StackOutcome::Retrying { message } = o {
                if retrying {
                    tracing::debug!(group = %group, error = %message, "apply failed");
                } else {
                    tracing::error!(group = %group, error = %message, "apply failed");
                }
            }
        }
        // What runs now, for the state file and the failure fingerprint.
        let after = outcome.after;
        self.state.update(|s| {
            s.in_progress = None;
            if let Some(after) = &after {
                for stack in groups.iter().filter_map(Group::as_stack) {
                    if outcomes.get(&Group::stack(stack)).map(StackOutcome::state)
                        == Some(report::State::Success)
                    {
                        let containers = after
                            .containers
                            .iter()
                            .filter(|c| {
                                c.owned_by(&self.config.instance) && c.stack() == Some(stack)
                            })
                            .map(|c| c.name.clone())
                            .collect();
                        s.stacks.insert(
                            stack.to_string(),
                            StackRecord {
                                commit: head.clone(),
                                containers,
                            },
                        );
                    }
                }
            }
        });
        let mut log = log;
        for (group, o) in &outcomes {
            if let StackOutcome::Failed { message } | StackOutcome::Retrying { message } = o {
                log.push(format!("{group}: FAILED: {message}"));
            }
        }
        self.post_outcomes(&head, &outcomes, &the_plan, &log);
        let failures: Vec<String> = outcomes
            .iter()
            .filter(|(_, o)| o.state() != report::State::Success)
            .map(|(g, o)| format!("{g}: {}", o.description()))
            .collect();
        if failures.is_empty() {
            self.record_success(&head);
            return Ok(if changed {
                Reconciled::Applied
            } else {
                Reconciled::Unchanged
            });
        }
        if transient {
            return Err(ServeError::Stacks {
                failures,
                transient: true,
            });
        }
        let fp = after
            .as_ref()
            .map(|a| observed_fingerprint(a, &desired, &self.config.instance))
            .unwrap_or_default();
        let reason = failures.join("; ");
        self.state.update(|s| {
            s.failed = Some(Failure {
                commit: head.clone(),
                config: fingerprint.clone(),
                observed: fp,
                reason,
            })
        });
        Err(ServeError::Stacks {
            failures,
            transient: false,
        })
    }

    pub(super) fn record_success(&self, head: &str) {
        self.metrics.set_last_applied(head);
        self.state.update(|s| {
            s.applied_commit = Some(head.to_string());
            s.failed = None;
            s.in_progress = None;
            for stack in s.stacks.values_mut() {
                stack.commit = head.to_string();
            }
        });
    }

    /// Record a permanent failure of a whole commit and post it.
    fn fail_commit(
        &self,
        head: &str,
        config: &str,
        observed: &str,
        error: ServeError,
        details: &[String],
    ) -> ServeError {
        let reason = error.to_string();
        self.state.update(|s| {
            s.failed = Some(Failure {
                commit: head.to_string(),
                config: config.to_string(),
                observed: observed.to_string(),
                reason: reason.clone(),
            })
        });
        let markdown = (!details.is_empty()).then(|| {
            report::markdown(
                &format!("berth could not apply {}", report::short(head)),
                &reason,
                &format!("{}\n", details.join("\n")),
                &[],
            )
        });
        self.writeback.status(
            head,
            Status {
                context: report::context(&self.config.name, None),
                state: report::State::Failure,
                description: reason,
                markdown,
            },
        );
        error
    }

    fn post_outcomes(
        &self,
        head: &str,
        outcomes: &BTreeMap<Group, StackOutcome>,
        the_plan: &Plan,
        log: &[String],
    ) {
        let markdown = report::markdown(
            &format!("berth applied {}", report::short(head)),
            // What went ahead: withheld changes are marked in the plan text, not counted.
            &the_plan.without_withheld().summary().to_string(),
            &crate::render::plan_text_by_group(the_plan),
            log,
        );
        for (group, outcome) in outcomes {
            self.writeback.status(
                head,
                Status {
                    context: report::context(&self.config.name, Some(group)),
                    state: outcome.state(),
                    description: outcome.description(),
                    markdown: Some(markdown.clone()),
                },
            );
        }
        let mut overall = report::overall(&self.config.name, head, outcomes);
        overall.markdown = Some(markdown);
        self.writeback.status(head, overall);
    }
}

/// Each group's outcome from its part of the plan and the apply's result; whether anything
/// changed; whether a failure was transient (worth a retry).
fn group_outcomes(
    groups: &[Group],
    by_group: &BTreeMap<Group, Plan>,
    result: Option<&Result<crate::apply::ApplyReport, ApplyError>>,
) -> (BTreeMap<Group, StackOutcome>, bool, bool) {
    let failures = result.map(|r| r.as_ref().err()).unwrap_or(None);
    let (failed, not_attempted) = match failures {
        Some(ApplyError::Failed { report }) => (&report.failed[..], &report.not_attempted[..]),
        _ => (&[][..], &[][..]),
    };
    let mut transient = false;
    let mut changed = false;
    let mut outcomes = BTreeMap::new();
    for group in groups {
        let Some(sub) = by_group.get(group) else {
            outcomes.insert(group.clone(), StackOutcome::UpToDate);
            continue;
        };
        // A withheld group's status is its error; a group whose errors hold nothing back (a
        // bad route to an address) was applied: its own failures come first, then the error.
        let held = sub
            .errors
            .iter()
            .find(|e| e.withholds() != crate::plan::Withholds::Nothing);
        if let Some(e) = held {
            outcomes.insert(
                group.clone(),
                StackOutcome::Failed {
                    message: e.to_string(),
                },
            );
            continue;
        }
        let left_out = sub.errors.first().map(ToString::to_string);
        if !sub.has_changes() {
            let outcome = match left_out {
                Some(message) => StackOutcome::Failed { message },
                None => StackOutcome::UpToDate,
            };
            outcomes.insert(group.clone(), outcome);
            continue;
        }
        let mine: Vec<_> = failed
            .iter()
            .filter(|f| f.error.groups().contains(group))
            .collect();
        let skipped: Vec<String> = not_attempted
            .iter()
            .filter(|a| a.group().as_ref() == Some(group))
            .map(ToString::to_string)
            .collect();
        if !mine.is_empty() {
            let message = mine
                .iter()
                .map(|f| f.error.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            let outcome = if mine.iter().all(|f| f.error.is_transient()) {
                transient = true;
                StackOutcome::Retrying { message }
            } else {
                StackOutcome::Failed { message }
            };
            outcomes.insert(group.clone(), outcome);
        } else if !skipped.is_empty() {
            outcomes.insert(
                group.clone(),
                StackOutcome::NotAttempted {
                    reason: format!("{} need a change that failed", skipped.join(", ")),
                },
            );
        } else if let Some(message) = left_out {
            changed = true;
            outcomes.insert(group.clone(), StackOutcome::Failed { message });
        } else {
            changed = true;
            outcomes.insert(group.clone(), report::planned_outcome(group, sub));
        }
    }
    (outcomes, changed, transient)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{ApplyReport, Failure, StepError};
    use crate::model::edge::Headers;
    use crate::plan::{AdminTarget, Change, Op, Payload, PlanError, ProxyPayload};

    /// A bad route to an address holds nothing back, so the proxy change was applied: when that
    /// load fails transiently, the proxy's status says so and the reconcile is retried — the
    /// route's error does not hide it.
    #[test]
    fn a_left_out_route_does_not_hide_the_proxys_own_failure() {
        let addr = crate::kinds::route::addr();
        let plan = Plan {
            changes: vec![Change {
                addr: addr.clone(),
                op: Op::Update,
                reasons: vec![],
                needs: vec![],
                payload: Payload::Proxy(Box::new(ProxyPayload {
                    admin: AdminTarget::Url("http://127.0.0.1:2019".into()),
                    settings: crate::caddy::render::Settings {
                        admin_listen: "127.0.0.1:2019".into(),
                        email: None,
                        acme_ca: None,
                        acme_ca_root: None,
                        headers: Headers::None,
                    },
                    sites: vec![],
                })),
            }],
            errors: vec![PlanError::Route {
                group: Group::Proxy,
                origin: "proxy/berth.yaml:4:9".into(),
                route: "old.example.org".into(),
                reason: "access: unknown address set `office`".into(),
            }],
            ..Plan::default()
        };
        let by_group = report::split_by_group(&plan);
        let failed = Err(ApplyError::Failed {
            report: ApplyReport {
                failed: vec![Failure {
                    addr: addr.clone(),
                    error: StepError::Host {
                        addr,
                        message: "Caddy's admin API is unreachable".into(),
                        transient: true,
                    },
                }],
                ..ApplyReport::default()
            },
        });
        let (outcomes, _, transient) = group_outcomes(&[Group::Proxy], &by_group, Some(&failed));
        assert!(transient);
        assert!(
            matches!(&outcomes[&Group::Proxy], StackOutcome::Retrying { message } if message.contains("unreachable")),
            "{outcomes:?}"
        );
        // Loaded fine: the route that was left out is the group's failure.
        let (outcomes, changed, transient) = group_outcomes(
            &[Group::Proxy],
            &by_group,
            Some(&Ok(ApplyReport::default())),
        );
        assert!(changed && !transient);
        assert!(
            matches!(&outcomes[&Group::Proxy], StackOutcome::Failed { message } if message.contains("office")),
            "{outcomes:?}"
        );
    }
}
