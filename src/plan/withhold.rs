//! What a group-by-group apply leaves out. Serve applies every stack whose own plan has no
//! error (and the CLI does so when every error is a bad route): a group with an error is
//! *withheld* — left as it runs, its changes not applied — and the others go ahead. Pure: the
//! pipeline applies [`Plan::without_withheld`], and the plan text marks the same changes.

use std::collections::BTreeMap;

use super::{Change, Group, Kind, Payload, Plan, PlanError, Withholds};

impl Plan {
    /// The groups a group-by-group apply leaves out, each with the errors that hold it back
    /// (`None`: everything, a config-wide error such as the empty-config guard).
    pub fn withheld_groups(&self) -> Option<BTreeMap<Group, Vec<&PlanError>>> {
        let mut held: BTreeMap<Group, Vec<&PlanError>> = BTreeMap::new();
        for e in &self.errors {
            match e.withholds() {
                Withholds::Everything => return None,
                Withholds::Group(g) => held.entry(g).or_default().push(e),
                Withholds::Nothing => {}
            }
        }
        Some(held)
    }

    /// The plan without what its errors withhold: those groups' changes go, pulls serve only
    /// the rest, and [`Plan::withheld`] lists what was left out. No errors are kept: what is
    /// left can be applied.
    pub fn without_withheld(&self) -> Plan {
        let Some(held) = self.withheld_groups() else {
            return Plan::default();
        };
        let mut out = Plan {
            unchanged: self.unchanged.clone(),
            unchanged_host: self.unchanged_host.clone(),
            skipped: self.skipped.clone(),
            warnings: self.warnings.clone(),
            ..Plan::default()
        };
        for c in &self.changes {
            if withheld_by(&held, c) {
                out.withheld.push(c.addr.clone());
                continue;
            }
            let mut c = c.clone();
            if let Payload::Image(img) = &mut c.payload {
                img.services
                    .retain(|s| !held.contains_key(&Group::stack(&s.stack)));
            }
            out.changes.push(c);
        }
        // The proxy serves every stack: it does not wait for a withheld stack's containers
        // (their routes keep the containers that run now, or are left out when there is none).
        let withheld = out.withheld.clone();
        for c in &mut out.changes {
            if c.payload.kind() == Kind::Proxy {
                c.needs.retain(|n| !withheld.contains(&n.addr));
            }
        }
        out
    }
}

fn withheld_by(held: &BTreeMap<Group, Vec<&PlanError>>, c: &Change) -> bool {
    match &c.payload {
        Payload::Image(img) => img
            .services
            .iter()
            .all(|s| held.contains_key(&Group::stack(&s.stack))),
        _ => c.addr.group().is_some_and(|g| held.contains_key(&g)),
    }
}
