//! What a reconcile tells GitHub, decided without IO: one status per stack
//! (`berth/<instance>/<stack>`), one overall (`berth/<instance>`), one per preview
//! (`berth/<instance>/preview`), each with a description under 140 characters, and the Markdown
//! of the full plan and apply log for check runs and PR comments. Each stack gets its own status,
//! so one stack's success can never hide another's failure.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::plan::{Group, Payload, Plan};

/// GitHub's limit on a status description.
pub const DESCRIPTION_MAX: usize = 140;
/// GitHub's limit on check-run output text and comment bodies is 65,535 characters; stay under
/// it with room for the truncation note.
pub const MARKDOWN_MAX: usize = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Pending,
    Success,
    Failure,
    Error,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Success => "success",
            State::Failure => "failure",
            State::Error => "error",
        }
    }
}

/// One status to post on one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub context: String,
    pub state: State,
    pub description: String,
    /// One line; may be longer than GitHub's 140 characters: the write-back task scrubs
    /// secrets from it and then cuts it.
    ///
    /// Full Markdown (check-run output in App mode; the PR comment for previews).
    pub markdown: Option<String>,
}

/// How one stack fared in a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackOutcome {
    /// Nothing needed changing.
    UpToDate,
    /// Changes were applied: what changed, in the group's own words (`2 replaced, 1 created, 0
    /// removed`, `3 host settings changed`, `Caddy config loaded (4 routes)`).
    Applied { summary: String },
    /// The plan or an apply step failed; the message says which service and why.
    Failed { message: String },
    /// Not attempted because the reconcile stopped before it (e.g. the Engine went away).
    NotAttempted { reason: String },
    /// Failed for a reason outside the commit (registry or Engine unreachable): retried with
    /// backoff, so it is an `error`, not a `failure` of the commit.
    Retrying { message: String },
}

/// The commit status context of a group (`berth/<instance>/<stack>`, `berth/<instance>/host`),
/// or the overall one (`berth/<instance>`).
pub fn context(instance: &str, group: Option<&Group>) -> String {
    match group {
        Some(g) => format!("berth/{instance}/{}", g.context_suffix()),
        None => format!("berth/{instance}"),
    }
}

pub fn preview_context(instance: &str) -> String {
    format!("berth/{instance}/preview")
}

/// `text` cut to at most `max` characters (not bytes), with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut s: String = one_line.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Markdown cut under GitHub's limit, on a line boundary, saying it was cut.
pub fn truncate_markdown(text: &str) -> String {
    if text.len() <= MARKDOWN_MAX {
        return text.to_string();
    }
    let mut cut = MARKDOWN_MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let cut = text[..cut].rfind('\n').unwrap_or(cut);
    let mut out = text[..cut].to_string();
    // Close an open code fence so the note renders.
    if out.matches("```").count() % 2 == 1 {
        out.push_str("\n```");
    }
    let _ = write!(
        out,
        "\n\n_(truncated: {} of {} characters shown; the full plan is in berth's log)_\n",
        cut,
        text.len()
    );
    out
}

impl StackOutcome {
    pub fn state(&self) -> State {
        match self {
            StackOutcome::UpToDate | StackOutcome::Applied { .. } => State::Success,
            StackOutcome::Failed { .. } => State::Failure,
            StackOutcome::NotAttempted { .. } | StackOutcome::Retrying { .. } => State::Error,
        }
    }

    pub fn description(&self) -> String {
        let text = match self {
            StackOutcome::UpToDate => "up to date".to_string(),
            StackOutcome::Applied { summary } => summary.clone(),
            StackOutcome::Failed { message } => message.clone(),
            StackOutcome::NotAttempted { reason } => format!("not applied: {reason}"),
            StackOutcome::Retrying { message } => format!("will retry: {message}"),
        };
        // Not cut here: the write-back task scrubs secrets first, then cuts to 140.
        text
    }
}

/// The outcome `group`'s part of a plan has when applied without error.
pub fn planned_outcome(group: &Group, plan: &Plan) -> StackOutcome {
    if !plan.has_changes() {
        return StackOutcome::UpToDate;
    }
    let s = plan.summary();
    let summary = match group {
        Group::Stack(_) => {
            let mut text = format!(
                "{} replaced, {} created, {} removed",
                s.replaced, s.created, s.removed
            );
            if s.started > 0 {
                let _ = write!(text, ", {} started", s.started);
            }
            if s.reloaded > 0 {
                let _ = write!(text, ", {} reloaded", s.reloaded);
            }
            text
        }
        Group::Host => format!("{} host settings changed", s.host),
        Group::Proxy => {
            let routes: usize = plan
                .changes
                .iter()
                .map(|c| match &c.payload {
                    Payload::Proxy(p) => p.sites.len(),
                    _ => 0,
                })
                .sum();
            format!("Caddy config loaded ({routes} route{})", plural(routes))
        }
        Group::Jobs => {
            let jobs: usize = plan
                .changes
                .iter()
                .map(|c| match &c.payload {
                    Payload::Jobs(p) => p.table.jobs.len(),
                    _ => 0,
                })
                .sum();
            format!("job table recorded ({jobs} job{})", plural(jobs))
        }
    };
    StackOutcome::Applied { summary }
}

/// Each group a plan touches or declares, with its own sub-plan (for statuses: what each group
/// will see). A pull that serves several stacks appears in each; a config-wide error (no group)
/// is not in any: the caller reports it on the overall status.
pub fn split_by_group(plan: &Plan) -> BTreeMap<Group, Plan> {
    let mut out: BTreeMap<Group, Plan> = BTreeMap::new();
    for c in &plan.changes {
        if let Payload::Image(img) = &c.payload {
            let mut by_stack: BTreeMap<&str, Vec<crate::plan::ServiceRef>> = BTreeMap::new();
            for s in &img.services {
                by_stack.entry(&s.stack).or_default().push(s.clone());
            }
            for (stack, services) in by_stack {
                let mut c = c.clone();
                if let Payload::Image(i) = &mut c.payload {
                    i.services = services;
                }
                out.entry(Group::stack(stack)).or_default().changes.push(c);
            }
            continue;
        }
        if let Some(g) = c.addr.group() {
            out.entry(g).or_default().changes.push(c.clone());
        }
    }
    for u in &plan.unchanged {
        out.entry(Group::stack(&u.stack))
            .or_default()
            .unchanged
            .push(u.clone());
    }
    for a in &plan.unchanged_host {
        if let Some(g) = a.group() {
            out.entry(g).or_default().unchanged_host.push(a.clone());
        }
    }
    for s in &plan.skipped {
        out.entry(Group::stack(&s.stack))
            .or_default()
            .skipped
            .push(s.clone());
    }
    for e in &plan.errors {
        if let Some(g) = e.group() {
            out.entry(g).or_default().errors.push(e.clone());
        }
    }
    out
}

/// The overall status from the groups' outcomes. Stacks are counted as stacks; berth's own
/// groups (host settings, the proxy, the job table) are named when they changed or failed.
pub fn overall(instance: &str, commit: &str, outcomes: &BTreeMap<Group, StackOutcome>) -> Status {
    let failed: Vec<(&Group, &StackOutcome)> = outcomes
        .iter()
        .filter(|(_, o)| o.state() != State::Success)
        .collect();
    let stacks = outcomes.keys().filter(|g| g.as_stack().is_some()).count();
    let changed = outcomes
        .iter()
        .filter(|(g, o)| g.as_stack().is_some() && matches!(o, StackOutcome::Applied { .. }))
        .count();
    let (state, text) = if failed.is_empty() {
        let mut text = format!(
            "{stacks} stack{} at {}: {changed} changed, {} unchanged",
            plural(stacks),
            short(commit),
            stacks - changed
        );
        for (g, o) in outcomes {
            if g.as_stack().is_none()
                && let StackOutcome::Applied { summary } = o
            {
                let _ = write!(text, "; {g}: {summary}");
            }
        }
        (State::Success, text)
    } else {
        let (first, outcome) = failed[0];
        let state = if failed.iter().any(|(_, o)| o.state() == State::Failure) {
            State::Failure
        } else {
            State::Error
        };
        let total = outcomes.len();
        let counted = if stacks == total { "stacks" } else { "groups" };
        let name = first
            .as_stack()
            .map_or_else(|| first.to_string(), str::to_string);
        (
            state,
            format!(
                "{} of {total} {counted} failed; {name}: {}",
                failed.len(),
                outcome.description()
            ),
        )
    };
    Status {
        context: context(instance, None),
        state,
        description: text,
        markdown: None,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Markdown: a heading, the summary, the plan, and (for applies) the log.
pub fn markdown(title: &str, summary: &str, plan_text: &str, log: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### {title}\n\n{summary}\n");
    let _ = writeln!(
        out,
        "<details open><summary>Plan</summary>\n\n```\n{plan_text}```\n</details>"
    );
    if !log.is_empty() {
        let _ = writeln!(out, "\n<details><summary>Apply log</summary>\n\n```");
        for line in log {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "```\n</details>");
    }
    truncate_markdown(&out)
}

/// The hidden marker that identifies berth's preview comment on a pull request.
pub fn comment_marker(instance: &str) -> String {
    format!("<!-- berth:preview:{instance} -->")
}

pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(7)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_fit_github_and_cut_on_characters() {
        let long = "é".repeat(500);
        let d = truncate(
            &StackOutcome::Failed {
                message: long.clone(),
            }
            .description(),
            DESCRIPTION_MAX,
        );
        assert_eq!(d.chars().count(), DESCRIPTION_MAX);
        assert!(d.ends_with('…'));
    }

    #[test]
    fn each_group_says_what_changed_in_its_own_words() {
        use crate::plan::{Addr, Change, JobsPayload, Kind, Op};
        let change = |addr: Addr, payload| Change {
            addr,
            op: Op::Update,
            reasons: vec![],
            needs: vec![],
            payload,
        };
        let jobs = Plan {
            changes: vec![change(
                Addr::host(Kind::Jobs, "schedule"),
                Payload::Jobs(JobsPayload {
                    table: Default::default(),
                }),
            )],
            ..Plan::default()
        };
        let split = split_by_group(&jobs);
        assert_eq!(split.keys().collect::<Vec<_>>(), [&Group::Jobs]);
        assert_eq!(
            planned_outcome(&Group::Jobs, &split[&Group::Jobs]).description(),
            "job table recorded (0 jobs)"
        );
        let outcomes = BTreeMap::from([
            (Group::stack("web"), StackOutcome::UpToDate),
            (
                Group::Jobs,
                planned_outcome(&Group::Jobs, &split[&Group::Jobs]),
            ),
        ]);
        // A job is not a stack: one stack, and the job table named on its own.
        assert_eq!(
            overall("srv", "0123456789", &outcomes).description,
            "1 stack at 0123456: 0 changed, 1 unchanged; the job table: job table recorded (0 jobs)"
        );
    }

    #[test]
    fn berths_own_groups_never_share_a_context_with_a_stack() {
        let groups = [
            Group::stack("edge"),
            Group::stack("proxy"),
            Group::stack("jobs"),
            Group::Host,
            Group::Proxy,
            Group::Jobs,
        ];
        let contexts: std::collections::BTreeSet<String> =
            groups.iter().map(|g| context("srv", Some(g))).collect();
        assert_eq!(contexts.len(), groups.len(), "{contexts:?}");
        assert_eq!(context("srv", Some(&Group::Host)), "berth/srv/host");
        assert_eq!(context("srv", Some(&Group::Proxy)), "berth/srv/host/proxy");
    }

    #[test]
    fn one_failed_stack_fails_the_overall_status() {
        let outcomes = BTreeMap::from([
            (Group::stack("a"), StackOutcome::UpToDate),
            (
                Group::stack("web"),
                StackOutcome::Failed {
                    message: "web/app: health check failed after 60s".into(),
                },
            ),
        ]);
        let s = overall("srv", "0123456789", &outcomes);
        assert_eq!(s.state, State::Failure);
        assert_eq!(s.context, "berth/srv");
        assert_eq!(
            s.description,
            "1 of 2 stacks failed; web: web/app: health check failed after 60s"
        );
    }

    #[test]
    fn a_shared_pull_goes_to_every_stack_that_needs_it() {
        use crate::plan::{Addr, Change, ImagePayload, Op, PullReason, ServiceRef};
        let sref = |stack: &str| ServiceRef {
            stack: stack.into(),
            service: "web".into(),
        };
        let plan = Plan {
            changes: vec![Change {
                addr: Addr::image("x:1"),
                op: Op::Pull,
                reasons: vec![],
                needs: vec![],
                payload: Payload::Image(ImagePayload {
                    image: "x:1".into(),
                    reason: PullReason::Missing,
                    services: vec![sref("a"), sref("b")],
                }),
            }],
            ..Plan::default()
        };
        let split = split_by_group(&plan);
        for stack in ["a", "b"] {
            let g = Group::stack(stack);
            assert!(
                matches!(&split[&g].changes[..], [Change { payload: Payload::Image(i), .. }] if i.services == [sref(stack)]),
                "{stack}: {:?}",
                split[&g].changes
            );
        }
    }

    #[test]
    fn markdown_is_cut_under_the_limit_with_a_closed_fence() {
        let plan = "line\n".repeat(30_000);
        let md = markdown("t", "s", &plan, &[]);
        assert!(md.len() < 65_535);
        assert!(md.contains("truncated"));
        assert_eq!(md.matches("```").count() % 2, 0);
    }
}
