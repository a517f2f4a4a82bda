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
                Op::Pull | Op::Update | Op::Stop => format!("? {stack}/{service}: {name}"),
            }
        }
        Payload::File(_)
        | Payload::Directory(_)
        | Payload::Sysctl(_)
        | Payload::Unit(_)
        | Payload::Firewall(_) => host_line(c),
        Payload::Jobs(_) if c.op == Op::Delete => {
            format!("- {}: no jobs left: the scheduler runs none", c.addr)
        }
        Payload::Jobs(p) => {
            let n = p.table.jobs.len();
            format!(
                "~ {}: record the job table in the state dir ({n} job{})",
                c.addr,
                if n == 1 { "" } else { "s" }
            )
        }
        Payload::Proxy(p) => {
            let at = match &p.admin {
                crate::plan::AdminTarget::Url(u) => u.clone(),
                crate::plan::AdminTarget::Container { name, .. } => format!("container {name}"),
            };
            let n = p.sites.len();
            format!(
                "~ {}: load the whole config into Caddy at {at} ({n} route{})",
                c.addr,
                if n == 1 { "" } else { "s" }
            )
        }
    }
}

/// The headline of a host change: a sign, the address, and for units what will be run.
fn host_line(c: &Change) -> String {
    let sign = match c.op {
        Op::Create => "+",
        Op::Update | Op::Replace => "~",
        Op::Start | Op::Reload => ">",
        Op::Stop => "■",
        Op::Delete => "-",
        Op::Pull => "?",
    };
    let what = match &c.payload {
        Payload::File(p) => match (c.op, &p.to) {
            (Op::Delete, Some(_)) => "put the original back".to_string(),
            (Op::Delete, None) => "remove".to_string(),
            (_, Some(to)) => format!("write ({})", meta_text(&to.meta)),
            (_, None) => String::new(),
        },
        Payload::Directory(p) => match (c.op, p.adopted, &p.meta) {
            (Op::Delete, true, _) => "put the original mode and owner back (kept)".to_string(),
            (Op::Delete, false, _) => "remove (when empty)".to_string(),
            (_, _, Some(m)) => meta_text(m),
            (_, _, None) => String::new(),
        },
        Payload::Sysctl(p) if c.op == Op::Delete => {
            format!(
                "put the previous value back: {}",
                p.value.replace('\t', " ")
            )
        }
        Payload::Sysctl(p) => format!("= {}", p.value.replace('\t', " ")),
        Payload::Firewall(p) if c.op == Op::Delete => {
            format!("remove table inet berth ({})", p.backend)
        }
        Payload::Firewall(p) => format!(
            "replace table inet berth ({}, confirmed within {}s or rolled back)",
            p.backend, p.confirm_timeout
        ),
        Payload::Unit(p) => {
            let mut steps: Vec<&str> = Vec::new();
            if p.files.values().any(Option::is_some) {
                steps.push("write unit files");
            }
            if p.files.values().any(Option::is_none) {
                steps.push("remove unit files");
            }
            if !p.files.is_empty() {
                steps.push("daemon-reload");
            }
            match p.enable {
                Some(true) => steps.push("enable"),
                Some(false) => steps.push("disable"),
                None => {}
            }
            if let Some(v) = p.run {
                steps.push(v.as_str());
            }
            steps.join(", ")
        }
        _ => String::new(),
    };
    if what.is_empty() {
        format!("{sign} {}", c.addr)
    } else {
        format!("{sign} {}: {what}", c.addr)
    }
}

fn meta_text(m: &crate::model::host::Meta) -> String {
    format!("mode {:04o}, owner {}:{}", m.mode, m.uid, m.gid)
}

/// The whole plan as text, ending with the summary line, as `berth apply` would carry it out:
/// refused whole when it has an error that is not a bad route, else without the stacks that
/// bad routes hold back.
pub fn plan_text(plan: &Plan) -> String {
    text(plan, false)
}

/// The plan as text as `berth serve` carries it out: each group with an error is withheld
/// (named, with why) and the others go ahead.
pub fn plan_text_by_group(plan: &Plan) -> String {
    text(plan, true)
}

fn text(plan: &Plan, by_group: bool) -> String {
    let held = plan.withheld_groups();
    let refused_whole = if by_group {
        held.is_none()
    } else {
        !plan.errors.iter().all(crate::plan::PlanError::is_contained)
    };
    // What goes ahead; what it leaves out is marked below (a refused plan says so once, at the
    // end).
    let rest = plan.without_withheld();
    let mut out = String::new();
    for c in &plan.changes {
        let mark = if !refused_whole && rest.withheld.contains(&c.addr) {
            "(withheld) "
        } else {
            ""
        };
        let _ = writeln!(out, "{mark}{}", change_line(c));
        let reasons: &[Reason] = &c.reasons;
        for r in reasons {
            // A diff is a block of its own lines, indented under its reason.
            let text = r.to_string();
            let mut lines = text.lines();
            if let Some(first) = lines.next() {
                let _ = writeln!(out, "    {first}");
            }
            for l in lines {
                let _ = writeln!(out, "      {l}");
            }
        }
    }
    for s in &plan.skipped {
        let _ = writeln!(
            out,
            "  {}/{}: not deployed: {}",
            s.stack, s.service, s.reason
        );
    }
    for w in &plan.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    for e in &plan.errors {
        let _ = writeln!(out, "! {e}");
    }
    if plan.errors.is_empty() {
        let summary = plan.summary();
        if plan.has_changes() {
            let _ = writeln!(out, "Plan: {summary}.");
        } else {
            let _ = write!(out, "No changes: {} services", summary.unchanged);
            if summary.host_unchanged > 0 {
                let _ = write!(out, " and {} host settings", summary.host_unchanged);
            }
            let _ = writeln!(out, " up to date.");
        }
        return out;
    }
    let (Some(held), false) = (held, refused_whole) else {
        if by_group {
            let whole = plan
                .errors
                .iter()
                .filter(|e| e.withholds() == crate::plan::Withholds::Everything)
                .count();
            let _ = writeln!(
                out,
                "Plan cannot be applied: {whole} error(s) concern the whole config. Nothing will be changed."
            );
        } else {
            let _ = writeln!(
                out,
                "Plan cannot be applied: {} error(s). Nothing will be changed.",
                plan.errors.len()
            );
        }
        return out;
    };
    if rest.has_changes() {
        let _ = writeln!(out, "Plan: {}.", rest.summary());
    } else {
        let _ = writeln!(out, "No other changes.");
    }
    if !held.is_empty() {
        let groups: Vec<String> = held
            .iter()
            .map(|(g, errors)| match errors.len() {
                1 => format!("{g} (1 error)"),
                n => format!("{g} ({n} errors)"),
            })
            .collect();
        let _ = writeln!(
            out,
            "Withheld, left as they run: {}; everything else goes ahead.",
            groups.join(", ")
        );
    }
    let left_out = plan
        .errors
        .iter()
        .filter(|e| e.withholds() == crate::plan::Withholds::Nothing)
        .count();
    if left_out > 0 {
        let _ = writeln!(
            out,
            "{left_out} route(s) to a fixed address cannot be served: left out of Caddy's config."
        );
    }
    out
}
