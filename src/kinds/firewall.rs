//! `kind: Firewall` (`firewall:inbound`, host group): the whole rendered ruleset is one
//! change. Pure: the declared firewall, the observed table (a digest) and the inventory →
//! create / update (rule diff) / drift repair / delete (restore), and two guards:
//!
//! - **exposure**: a container port published on all addresses whose host port the Firewall
//!   does not allow from everywhere is a [`PlanError::Exposed`] at its `ports:` entry, unless
//!   the service says `x-berth: {expose_publicly: true}`; with no Firewall it is a warning.
//! - **lockout**: a ruleset that lets no one reach `ssh_port/tcp` is a [`PlanError::Lockout`]
//!   unless `allow_no_ssh: true`.
//!
//! No change when berth applied this ruleset last (`applied` digest) and the live table is the
//! one it saw right after (`live` digest).

use super::firewall_render::{
    nft_delete_script, nft_script, nft_script_beside_firewalld, rule_lines, zone_wanted,
};
use super::{Context, Planned};
use crate::model::edge::{Backend, EdgeSpec, FirewallSpec, Proto, Source, ZoneAllow, ZoneRecord};
use crate::model::host::{Before, Entry};
use crate::plan::{
    Addr, Allowed, Change, FirewallPayload, Kind, Op, Payload, PlanError, PlanWarning, Reason,
    Record,
};

/// The one firewall's address name.
pub const NAME: &str = "inbound";

pub fn addr() -> Addr {
    Addr::host(Kind::Firewall, NAME)
}

pub fn plan(ctx: &Context, out: &mut Planned) {
    let edge = &ctx.desired.edge;
    exposure(ctx, edge.firewall.as_ref(), out);
    let key = addr().to_string();
    let entry = ctx.observed.host.inventory.entries.get(&key);
    match &edge.firewall {
        Some(fw) => declared(ctx, fw, edge, entry, out),
        None => {
            if let Some(e) = entry {
                removed(e, out);
            }
        }
    }
}

/// The exposure guard over every deployed service's published ports.
fn exposure(ctx: &Context, fw: Option<&FirewallSpec>, out: &mut Planned) {
    for (stack_name, stack) in &ctx.desired.stacks {
        for (svc_name, svc) in &stack.services {
            for p in &svc.ports {
                let all = match p.host_ip.as_deref() {
                    None | Some("") | Some("0.0.0.0") | Some("::") | Some("[::]") => true,
                    Some(_) => false,
                };
                let proto = match p.protocol.as_str() {
                    "udp" => Proto::Udp,
                    "tcp" => Proto::Tcp,
                    _ => continue,
                };
                if !all {
                    continue;
                }
                let shown = p.to_string();
                let origin = match svc.ports_at.get(&shown) {
                    Some((line, col)) => format!("{}:{line}:{col}", stack.file.display()),
                    None => stack.file.display().to_string(),
                };
                match fw {
                    None => out.plan.warnings.push(PlanWarning::Exposed {
                        stack: stack_name.clone(),
                        service: svc_name.clone(),
                        port: shown,
                        origin,
                    }),
                    Some(_) if svc.expose_publicly => {}
                    Some(fw) => {
                        let public = p.published.is_some_and(|n| fw.allows_publicly(n, proto));
                        if !public {
                            let host_port = match p.published {
                                Some(n) => format!("{n}/{proto}"),
                                None => format!("a random host port/{proto}"),
                            };
                            out.plan.errors.push(PlanError::Exposed {
                                stack: stack_name.clone(),
                                service: svc_name.clone(),
                                host_port,
                                origin,
                            });
                        }
                    }
                }
            }
        }
    }
}

/// What the rules allow, resolved (for the confirm step and the lockout guard).
fn allowed(fw: &FirewallSpec, edge: &EdgeSpec) -> Vec<Allowed> {
    let mut out = Vec::new();
    for r in &fw.allow {
        let from = match &r.from {
            Source::Anywhere => None,
            other => Some(edge.resolve(other).unwrap_or_default()),
        };
        for p in &r.ports {
            out.push(Allowed {
                ports: *p,
                from: from.clone(),
            });
        }
    }
    out
}

fn declared(
    ctx: &Context,
    fw: &FirewallSpec,
    edge: &EdgeSpec,
    entry: Option<&Entry>,
    out: &mut Planned,
) {
    let origin = fw.origin.to_string();
    // The lockout guard is the files' alone: checked before the host is looked at (so that
    // `validate` finds it too).
    let allowed = allowed(fw, edge);
    let payload_probe = FirewallPayload {
        backend: String::new(),
        script: String::new(),
        digest: String::new(),
        rules: Vec::new(),
        allowed: allowed.clone(),
        confirm_timeout: 0,
        allow_no_ssh: fw.allow_no_ssh,
        zone: None,
        zone_record: None,
        record: Record::default(),
    };
    if !fw.allow_no_ssh && !payload_probe.allows_tcp(fw.ssh_port) {
        out.plan.errors.push(PlanError::Lockout {
            origin: origin.clone(),
            ssh_port: fw.ssh_port,
        });
        return;
    }
    let observed = ctx.observed.host.firewall.clone().unwrap_or_default();
    if let Some(e) = &observed.error {
        out.plan.errors.push(PlanError::FirewallRefused {
            origin,
            reason: format!("cannot read the firewall: {e}"),
        });
        return;
    }
    let firewalld = match fw.backend {
        Backend::Nftables => false,
        Backend::Auto => observed.firewalld_running,
        Backend::Firewalld if observed.firewalld_running && observed.zone.is_some() => true,
        Backend::Firewalld => {
            out.plan.errors.push(PlanError::FirewallRefused {
                origin,
                reason: "`backend: firewalld`, but firewalld is not running (`systemctl enable --now firewalld`, or `backend: nftables`)".into(),
            });
            return;
        }
    };
    if firewalld && observed.zone.is_none() {
        out.plan.errors.push(PlanError::FirewallRefused {
            origin,
            reason: "firewalld runs but its default zone could not be read".into(),
        });
        return;
    }
    let zone = observed
        .zone
        .as_ref()
        .filter(|_| firewalld)
        .map(|z| zone_wanted(fw, edge, &z.name));
    let script = if firewalld {
        nft_script_beside_firewalld(fw, edge)
    } else {
        nft_script(fw, edge)
    };
    let mut digested = script.clone();
    if let Some(z) = &zone {
        digested.push_str(&serde_json::to_string(z).unwrap_or_default());
    }
    let digest = crate::model::sha256_hex(digested.as_bytes());
    let rules = rule_lines(fw, edge);
    let (last_rules, live, zone_record) = match entry.map(|e| &e.before) {
        Some(Before::Firewall {
            rules, live, zone, ..
        }) => (Some(rules.clone()), live.clone(), zone.clone()),
        _ => (None, None, None),
    };
    // berth takes the zone over: recorded (as it was before berth) before the first change.
    let zone_record = match (&zone, zone_record, &observed.zone) {
        (Some(w), None, Some(now)) => Some(ZoneRecord {
            zone: w.zone.clone(),
            target_before: now.target.clone(),
            original: now.permanent.clone(),
        }),
        (_, rec, _) => rec,
    };
    // What the zone allows beyond the manifest (runtime or permanent): removed.
    let extras: Vec<String> = match (&zone, &observed.zone) {
        (Some(w), Some(now)) => {
            let want = w.allow();
            let mut v: Vec<String> = Vec::new();
            for a in [&now.permanent, &now.runtime] {
                for (_, noun, val) in a.minus(&want) {
                    let line = format!("{noun} {val} (firewalld, not in the manifest)");
                    if !v.contains(&line) {
                        v.push(line);
                    }
                }
            }
            v
        }
        _ => Vec::new(),
    };
    let zone_lost = match (&zone, &observed.zone) {
        (Some(w), Some(now)) => {
            let want = w.allow();
            let missing = want
                .minus(&now.runtime)
                .len()
                .max(want.minus(&now.permanent).len());
            let mut parts = Vec::new();
            if missing > 0 {
                parts.push(format!("lost {missing} of berth's ports and rich rules"));
            }
            if !extras.is_empty() {
                parts.push(format!(
                    "allows {} not in the manifest ({})",
                    extras.len(),
                    extras
                        .iter()
                        .map(|e| e.trim_end_matches(" (firewalld, not in the manifest)"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if now.target != w.target {
                parts.push(format!("has target {} instead of {}", now.target, w.target));
            }
            (!parts.is_empty()).then(|| {
                format!(
                    "firewalld zone {} {} (a hand edit or `--reload` of unsaved rules); the zone is made the manifest's again",
                    w.zone,
                    parts.join(", ")
                )
            })
        }
        _ => None,
    };
    let same_rules = entry.and_then(|e| e.applied.as_deref()) == Some(digest.as_str());
    let mut reasons = Vec::new();
    let op = match (&last_rules, same_rules) {
        (None, _) => {
            reasons.push(Reason::Rules {
                added: rules.clone(),
                removed: extras.clone(),
            });
            Op::Create
        }
        (Some(last), false) => {
            let added: Vec<String> = rules
                .iter()
                .filter(|r| !last.contains(r))
                .cloned()
                .collect();
            let removed: Vec<String> = last
                .iter()
                .filter(|r| !rules.contains(r))
                .cloned()
                .chain(extras.iter().cloned())
                .collect();
            reasons.push(Reason::Rules { added, removed });
            Op::Update
        }
        (Some(_), true) => {
            let detail = match (&observed.table, &live) {
                _ if zone_lost.is_some() => zone_lost.clone().unwrap_or_default(),
                (a, b) if a.is_some() && a == b && observed.boot.is_none() => {
                    out.plan.unchanged_host.push(addr());
                    return;
                }
                (a, b) if a.is_some() && a == b => format!(
                    "{}; the confirmed ruleset is applied again and kept for boot",
                    observed.boot.clone().unwrap_or_default()
                ),
                (None, _) => "table inet berth is gone (a firewall reload, a reboot or `nft flush ruleset`); it is put back".to_string(),
                (Some(_), None) => "berth's last apply was not confirmed; it is applied again".to_string(),
                (Some(_), Some(_)) => "table inet berth was changed on the host since berth applied it; berth's rules are put back".to_string(),
            };
            reasons.push(Reason::FirewallDrift { detail });
            Op::Update
        }
    };
    let backend = if firewalld { "firewalld" } else { "nftables" }.to_string();
    let after = Entry {
        before: Before::Firewall {
            backend: backend.clone(),
            rules: rules.clone(),
            live: None,
            zone: zone_record.clone(),
        },
        applied: Some(digest.clone()),
    };
    out.changes.push(Change {
        addr: addr(),
        op,
        reasons,
        needs: Vec::new(),
        payload: Payload::Firewall(FirewallPayload {
            backend,
            script,
            digest,
            rules,
            allowed,
            confirm_timeout: fw.confirm_timeout.as_secs(),
            allow_no_ssh: fw.allow_no_ssh,
            zone,
            zone_record,
            record: Record {
                before: entry.cloned(),
                after: Some(after),
            },
        }),
    });
}

/// The lines a removal shows for the firewalld zone it puts back as it was before berth.
fn restored(rec: Option<&ZoneRecord>) -> Vec<String> {
    let Some(rec) = rec else { return Vec::new() };
    let mut out = vec![format!(
        "zone {} target {} (firewalld, as before berth)",
        rec.zone, rec.target_before
    )];
    for (_, noun, v) in rec.original.minus(&ZoneAllow::default()) {
        out.push(format!("{noun} {v} (firewalld, as before berth)"));
    }
    out
}

/// The Firewall left the config: berth's table goes (there was none before berth).
fn removed(e: &Entry, out: &mut Planned) {
    let (backend, last, zone_record) = match &e.before {
        Before::Firewall {
            backend,
            rules,
            zone,
            ..
        } => (backend.clone(), rules.clone(), zone.clone()),
        _ => ("nftables".to_string(), Vec::new(), None),
    };
    let script = nft_delete_script();
    out.changes.push(Change {
        addr: addr(),
        op: Op::Delete,
        reasons: vec![
            Reason::HostRemoved { restore: false },
            Reason::Rules {
                added: restored(zone_record.as_ref()),
                removed: last,
            },
        ],
        needs: Vec::new(),
        payload: Payload::Firewall(FirewallPayload {
            backend,
            digest: crate::model::sha256_hex(script.as_bytes()),
            script,
            rules: Vec::new(),
            allowed: Vec::new(),
            confirm_timeout: 0,
            allow_no_ssh: true,
            zone: None,
            zone_record,
            record: Record {
                before: Some(e.clone()),
                after: None,
            },
        }),
    });
}
