//! `kind: Unit`: a systemd unit's file (when berth owns it), drop-ins, enablement and run
//! state. A changed unit file means daemon-reload and a restart when the unit runs; a unit that
//! leaves the config is stopped and removed when berth created it, or gets its files,
//! enablement and run state back when berth only took it over.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::host::{leftovers, unified_diff};
use super::{Context, Planned};
use crate::model::host::{
    Before, Entry, ObservedUnit, UnitRunState, UnitSpec, dropin_path, unit_path,
};
use crate::plan::{
    Addr, Change, Kind, Op, Payload, PlanError, Reason, Record, UnitPayload, UnitVerb,
};

pub fn plan(ctx: &Context, out: &mut Planned) {
    let host = &ctx.observed.host;
    let missing = ObservedUnit {
        load: "not-found".into(),
        active: "inactive".into(),
        ..Default::default()
    };
    for (name, spec) in &ctx.desired.host.units {
        let addr = Addr::host(Kind::Unit, name.clone());
        let obs = host.units.get(name).unwrap_or(&missing);
        match unit(
            spec,
            obs,
            host.inventory.entries.get(&addr.to_string()),
            &addr,
        ) {
            Ok(Some(c)) => out.changes.push(c),
            Ok(None) => out.plan.unchanged_host.push(addr),
            Err(e) => out.plan.errors.push(e),
        }
    }
    let declared = |n: &str| ctx.desired.host.units.contains_key(n);
    for (name, e) in leftovers(host, Kind::Unit, declared) {
        let obs = host.units.get(name).unwrap_or(&missing);
        if let Some(c) = removed(name, e, obs) {
            out.changes.push(c);
        }
    }
}

/// The change one declared unit needs, if any.
fn unit(
    spec: &UnitSpec,
    obs: &ObservedUnit,
    current: Option<&Entry>,
    addr: &Addr,
) -> Result<Option<Change>, PlanError> {
    let key = addr.to_string();
    let origin = spec.origin.to_string();
    let refuse = |reason: String| PlanError::HostRefused {
        addr: key.clone(),
        origin: origin.clone(),
        reason,
    };
    let (owns_before, file_before, mut dropins_before) = match current.map(|e| &e.before) {
        Some(Before::Unit {
            owns_file,
            file,
            dropins,
            ..
        }) => (*owns_file, file.clone(), dropins.clone()),
        _ => (false, None, BTreeMap::new()),
    };
    let mut reasons = Vec::new();
    let mut files: BTreeMap<PathBuf, Option<String>> = BTreeMap::new();
    let mut from: BTreeMap<PathBuf, Option<String>> = BTreeMap::new();
    let mut adopted = false;
    let mut file_before = file_before;
    let mut diff =
        |path: PathBuf, now: Option<&String>, want: Option<&String>, reasons: &mut Vec<Reason>| {
            if now == want {
                return;
            }
            let p = path.display().to_string();
            reasons.push(match (now, want) {
                (None, Some(_)) => Reason::HostState {
                    detail: format!("new file {p}"),
                },
                (Some(_), None) => Reason::HostState {
                    detail: format!("file {p} goes"),
                },
                (n, w) => Reason::Content {
                    diff: Some(unified_diff(
                        &p,
                        n.map_or(&[][..], |s| s.as_bytes()),
                        w.map_or(&[][..], |s| s.as_bytes()),
                    )),
                },
            });
            files.insert(path.clone(), want.cloned());
            from.insert(path, now.cloned());
        };
    // The unit file.
    let path = unit_path(&spec.name);
    match &spec.content {
        Some(content) => {
            if let Some(now) = &obs.file
                && !owns_before
            {
                if !spec.adopt {
                    return Err(PlanError::HostNotOwned { addr: key, origin });
                }
                adopted = true;
                file_before = Some(now.clone());
            }
            let n = reasons.len();
            diff(path, obs.file.as_ref(), Some(content), &mut reasons);
            if adopted {
                not_owned(&mut reasons, n);
            }
        }
        None if owns_before && file_before.is_none() => {
            return Err(refuse(
                "berth created this unit's file, and the document no longer gives `content:`: remove the whole document to remove the unit (it is then stopped, disabled and deleted), or give the content back".into(),
            ));
        }
        None if owns_before => {
            // No longer declared: the original berth took over comes back (not printed).
            let n = reasons.len();
            diff(path, obs.file.as_ref(), file_before.as_ref(), &mut reasons);
            not_owned(&mut reasons, n);
        }
        None => {}
    }
    // Drop-ins.
    for (dname, text) in &spec.dropins {
        let now = obs.dropins.get(dname).cloned().flatten();
        let taking_over = now.is_some() && !dropins_before.contains_key(dname);
        if !dropins_before.contains_key(dname) {
            if now.is_some() && !spec.adopt {
                return Err(PlanError::HostNotOwned {
                    addr: format!("{key} drop-in {dname}"),
                    origin,
                });
            }
            adopted |= now.is_some();
            dropins_before.insert(dname.clone(), now.clone());
        }
        let n = reasons.len();
        diff(
            dropin_path(&spec.name, dname),
            now.as_ref(),
            Some(text),
            &mut reasons,
        );
        if taking_over {
            not_owned(&mut reasons, n);
        }
    }
    let gone: Vec<(String, Option<String>)> = dropins_before
        .iter()
        .filter(|(d, _)| !spec.dropins.contains_key(*d))
        .map(|(d, b)| (d.clone(), b.clone()))
        .collect();
    for (dname, before) in &gone {
        let now = obs.dropins.get(dname).cloned().flatten();
        let n = reasons.len();
        diff(
            dropin_path(&spec.name, dname),
            now.as_ref(),
            before.as_ref(),
            &mut reasons,
        );
        not_owned(&mut reasons, n);
        dropins_before.remove(dname);
    }
    if adopted {
        reasons.insert(0, Reason::Adopted);
    }
    let exists_after = spec.content.is_some() || obs.load != "not-found";
    if !exists_after {
        return Err(refuse(
            "no such unit on the host; give it `content:` (or `source:`) to create it".into(),
        ));
    }
    if spec.enabled == Some(true) {
        let no_install = match &spec.content {
            Some(c) => !c.contains("[Install]"),
            None => obs.file_state == "static",
        };
        if no_install {
            return Err(refuse(
                "`enabled: true` but the unit has no [Install] section, so systemd cannot enable it; add one (e.g. WantedBy=multi-user.target) or drop `enabled:`".into(),
            ));
        }
    }
    // Unit file states systemd does not let berth change, or that never read as enabled.
    let fixed = match (spec.enabled, obs.file_state.as_str()) {
        (_, "masked" | "masked-runtime") => Some("masked"),
        (Some(_), st @ ("generated" | "transient" | "indirect" | "linked" | "linked-runtime")) => {
            Some(st)
        }
        (Some(false), "enabled-runtime") => Some("enabled-runtime"),
        _ => None,
    };
    if obs.load == "masked" || fixed.is_some() {
        return Err(refuse(format!(
            "systemd reports the unit as {}: berth does not unmask, enable or disable it; unmask it by hand, or drop `enabled:`",
            fixed.unwrap_or("masked")
        )));
    }
    // Enablement.
    let enable = match spec.enabled {
        Some(want) if want != obs.is_enabled() => {
            reasons.push(Reason::HostState {
                detail: format!(
                    "{} (enabled: {want})",
                    if obs.file_state.is_empty() {
                        "not installed"
                    } else {
                        obs.file_state.as_str()
                    }
                ),
            });
            Some(want)
        }
        _ => None,
    };
    // Run state: a changed file restarts what runs; `state:` starts or stops.
    let active = obs.is_active();
    let files_changed = !files.is_empty();
    let run = match (spec.state, active) {
        (Some(UnitRunState::Stopped), true) => Some(UnitVerb::Stop),
        (Some(UnitRunState::Stopped), false) => None,
        (Some(UnitRunState::Started), false) => Some(UnitVerb::Start),
        (_, true) if files_changed => Some(UnitVerb::Restart),
        _ => None,
    };
    match run {
        Some(UnitVerb::Stop) | Some(UnitVerb::Start) if !files_changed => {
            reasons.push(Reason::HostState {
                detail: format!("{} (state: {})", obs.active, state_word(spec.state)),
            })
        }
        Some(UnitVerb::Restart) => reasons.push(Reason::Then {
            action: format!("restart {} (its unit files changed)", spec.name),
        }),
        _ => {}
    }
    if !files_changed && enable.is_none() && run.is_none() {
        return Ok(None);
    }
    let op = match (files_changed, obs.load.as_str(), run) {
        (true, "not-found", _) if current.is_none() => Op::Create,
        (true, _, _) => Op::Update,
        (false, _, Some(UnitVerb::Start)) => Op::Start,
        (false, _, Some(UnitVerb::Stop)) => Op::Stop,
        _ => Op::Update,
    };
    let before = match current.map(|e| &e.before) {
        Some(Before::Unit {
            enabled, active, ..
        }) => (*enabled, *active),
        _ => (obs.is_enabled(), active),
    };
    let entry = Entry {
        before: Before::Unit {
            owns_file: spec.content.is_some() || owns_before,
            file: file_before,
            enabled: before.0,
            active: before.1,
            dropins: dropins_before,
        },
        applied: None,
    };
    Ok(Some(Change {
        addr: addr.clone(),
        op,
        reasons,
        needs: Vec::new(),
        payload: Payload::Unit(UnitPayload {
            name: spec.name.clone(),
            files,
            from,
            enable,
            run,
            was_active: active,
            was_enabled: obs.is_enabled(),
            record: Record {
                before: current.cloned(),
                after: Some(entry),
            },
        }),
    }))
}

/// A file berth takes over now is not printed (a pull request's preview could name any
/// unit): its diff, pushed from `from` on, becomes "content differs".
fn not_owned(reasons: &mut [Reason], from: usize) {
    for r in &mut reasons[from..] {
        if matches!(r, Reason::Content { .. }) {
            *r = Reason::ContentNotOwned;
        }
    }
}

fn state_word(s: Option<UnitRunState>) -> &'static str {
    match s {
        Some(UnitRunState::Started) => "started",
        Some(UnitRunState::Stopped) => "stopped",
        None => "unmanaged",
    }
}

/// A unit that left the config: removed when berth created it, else its files, enablement and
/// run state put back.
fn removed(name: &str, e: &Entry, obs: &ObservedUnit) -> Option<Change> {
    let Before::Unit {
        owns_file,
        file,
        enabled,
        active,
        dropins,
    } = &e.before
    else {
        return None;
    };
    let mut files = BTreeMap::new();
    let mut from = BTreeMap::new();
    if *owns_file && obs.file != *file {
        files.insert(unit_path(name), file.clone());
        from.insert(unit_path(name), obs.file.clone());
    }
    for (d, before) in dropins {
        let now = obs.dropins.get(d).cloned().flatten();
        if now != *before {
            files.insert(dropin_path(name, d), before.clone());
            from.insert(dropin_path(name, d), now);
        }
    }
    let created = *owns_file && file.is_none();
    let (want_enabled, want_active) = if created {
        (false, false)
    } else {
        (*enabled, *active)
    };
    let enable =
        (obs.load != "not-found" && obs.is_enabled() != want_enabled).then_some(want_enabled);
    let run = match (want_active, obs.is_active()) {
        (false, true) => Some(UnitVerb::Stop),
        (true, false) => Some(UnitVerb::Start),
        (true, true) if !files.is_empty() => Some(UnitVerb::Restart),
        _ => None,
    };
    let reason = if files.is_empty() && enable.is_none() && run.is_none() {
        Reason::Forgotten
    } else {
        Reason::HostRemoved { restore: !created }
    };
    Some(Change {
        addr: Addr::host(Kind::Unit, name),
        op: Op::Delete,
        reasons: vec![reason],
        needs: Vec::new(),
        payload: Payload::Unit(UnitPayload {
            name: name.to_string(),
            files,
            from,
            enable,
            run,
            was_active: obs.is_active(),
            was_enabled: obs.is_enabled(),
            record: Record {
                before: Some(e.clone()),
                after: None,
            },
        }),
    })
}
