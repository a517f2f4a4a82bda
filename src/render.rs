//! Plans for people: one line per change, its reasons indented below. Never prints a secret:
//! everything shown comes from [`Reason`]'s `Display`, which only names secret keys.

use std::fmt::Write;

use crate::plan::{Change, Op, Payload, Plan, PullReason, Reason, short_id};

/// The headline of one change.
pub fn change_line(c: &Change) -> String {
    match &c.payload {
        Payload::Image(p) => {
            let why = match p.reason {
                PullReason::Missing => "not on the engine",
                PullReason::Always => "pull_policy: always",
            };
            let users: Vec<String> = p.services.iter().map(ToString::to_string).collect();
            format!("↓ pull image {} ({why}; for {})", p.image, users.join(", "))
        }
        Payload::Network(p) if c.op == Op::Delete => {
            format!("- {}: remove network {}", p.stack, p.name)
        }
        Payload::Network(p) => format!("+ {}: create network {}", p.stack, p.name),
        Payload::Volume(p) if c.op == Op::Delete => format!(
            "- {}: remove volume {} (--prune-volumes: its data is deleted)",
            p.stack, p.name
        ),
        Payload::Volume(p) => format!("+ {}: create volume {}", p.stack, p.name),
        Payload::Container(p) => {
            let (stack, service, name) = (&p.stack, &p.service, &p.name);
            match c.op {
                Op::Create => format!("+ {stack}/{service}: create container {name}"),
                Op::Replace => format!(
                    "~ {stack}/{service}: replace container {name} ({})",
                    p.current.as_ref().map_or("?", |c| short_id(&c.id))
                ),
                Op::Start => format!("> {stack}/{service}: start container {name}"),
                Op::Reload => format!("↻ {stack}/{service}: reload container {name}"),
                Op::Delete => {
                    format!("- {stack}/{service}: remove container {name} (volumes kept)")
                }
                Op::Pull => format!("? {stack}/{service}: {name}"),
            }
        }
    }
}

/// The whole plan as text, ending with the summary line.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    for c in &plan.changes {
        let _ = writeln!(out, "{}", change_line(c));
        let reasons: &[Reason] = &c.reasons;
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
