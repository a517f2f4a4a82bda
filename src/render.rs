//! Plans for people: one line per action, its reasons indented below. Never prints a secret:
//! everything shown comes from [`Reason`]'s `Display`, which only names secret keys.

use std::fmt::Write;

use crate::plan::{Action, Plan, PullReason, Reason, short_id};

/// The whole plan as text, ending with the summary line.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    for a in &plan.actions {
        let (line, reasons): (String, Vec<&Reason>) = match a {
            Action::PullImage {
                image,
                reason,
                services,
            } => {
                let why = match reason {
                    PullReason::Missing => "not on the engine",
                    PullReason::Always => "pull_policy: always",
                };
                let users: Vec<String> = services.iter().map(ToString::to_string).collect();
                (
                    format!("↓ pull image {image} ({why}; for {})", users.join(", ")),
                    vec![],
                )
            }
            Action::CreateNetwork { stack, spec } => {
                (format!("+ {stack}: create network {}", spec.name), vec![])
            }
            Action::CreateVolume { stack, spec } => {
                (format!("+ {stack}: create volume {}", spec.name), vec![])
            }
            Action::CreateContainer {
                stack,
                service,
                name,
                reasons,
                ..
            } => (
                format!("+ {stack}/{service}: create container {name}"),
                reasons.iter().collect(),
            ),
            Action::ReplaceContainer {
                stack,
                service,
                name,
                old_id,
                reasons,
                ..
            } => (
                format!(
                    "~ {stack}/{service}: replace container {name} ({})",
                    short_id(old_id)
                ),
                reasons.iter().collect(),
            ),
            Action::StartContainer {
                stack,
                service,
                name,
                reason,
                ..
            } => (
                format!("> {stack}/{service}: start container {name}"),
                vec![reason],
            ),
            Action::RemoveContainer {
                stack,
                service,
                name,
                reason,
                ..
            } => (
                format!("- {stack}/{service}: remove container {name} (volumes kept)"),
                vec![reason],
            ),
            Action::RemoveNetwork { stack, name } => {
                (format!("- {stack}: remove network {name}"), vec![])
            }
            Action::RemoveVolume { stack, name } => (
                format!("- {stack}: remove volume {name} (--prune-volumes: its data is deleted)"),
                vec![],
            ),
        };
        let _ = writeln!(out, "{line}");
        for r in reasons {
            let _ = writeln!(out, "    {r}");
        }
    }
    for s in &plan.skipped {
        let _ = writeln!(
            out,
            "  {}/{}: not deployed: {}",
            s.stack, s.service, s.reason
        );
    }
    for e in &plan.errors {
        let _ = writeln!(out, "! {e}");
    }
    let summary = plan.summary();
    if plan.errors.is_empty() {
        if plan.has_changes() {
            let _ = writeln!(out, "Plan: {summary}.");
        } else {
            let _ = writeln!(
                out,
                "No changes: {} services up to date.",
                summary.unchanged
            );
        }
    } else {
        let _ = writeln!(
            out,
            "Plan cannot be applied: {} error(s). Nothing will be changed.",
            plan.errors.len()
        );
    }
    out
}
